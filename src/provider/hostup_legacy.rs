//! HostUp's legacy API (docs/PROVIDERS.md §2): `POST /api/vm/{vmid}/routed-ipv6` with
//! `X-API-Key`, answers wrapped in `{success, timestamp, requestId, data}`, snake_case
//! allocation fields with an integer id and PostgreSQL timestamps.
//!
//! There is no GET. The poll is `POST {"action":"refresh_next_hop"}`, which reads the
//! allocation without creating one; `allocate` is sent only by `allocate()` (the daemon
//! calls it with `allocate = true` when nothing is allocated). Because every read is a
//! write-shaped call, the default poll interval is an hour.
//!
//! The documentation's own example has traps, handled here: `prefix` with host bits set
//! (`2001:db8::1/48` — normalised to the network, with a warning logged once),
//! `prefix_length` that may disagree with `prefix` (refused), and a next hop inside the
//! prefix (accepted with a warning: the example itself does it, which works when the
//! provider's router has a more specific on-link route to the next hop).

use std::net::IpAddr;

use reqwest::{Method, Url};
use serde::Deserialize;

pub use super::Parsed;
use super::hostup::{lenient_string, lenient_u64, object_or_null, parse_json};
use super::http::{Auth, HttpClient};
use super::{Provider, ProviderError, Release, WarnOnce};
use crate::config::{BaseUrl, LegacySettings, Secret};
use crate::model::{Assignment, RoutedPrefix};
use crate::rules::{self, Fields, Leniency};

/// A HostUp VM on the legacy API.
#[derive(Debug)]
pub struct HostUpLegacy {
    http: HttpClient,
    base: BaseUrl,
    token: Secret,
    vmid: u64,
    /// Warnings already logged (a trap in every answer is worth one line, not one an hour).
    warned: WarnOnce,
}

impl HostUpLegacy {
    pub fn new(config: &LegacySettings, token: Secret) -> Result<Self, ProviderError> {
        Ok(Self::with_http(HttpClient::new()?, config, token))
    }

    /// `new` with a given HTTP client (tests use short timeouts).
    pub fn with_http(http: HttpClient, config: &LegacySettings, token: Secret) -> Self {
        HostUpLegacy {
            http,
            base: config.api.base_url.clone(),
            token,
            vmid: config.vmid,
            warned: WarnOnce::default(),
        }
    }

    fn url(&self) -> Url {
        self.base
            .join(&format!("/api/vm/{}/routed-ipv6", self.vmid))
    }

    async fn post(&mut self, action: &str) -> Result<Assignment, ProviderError> {
        let body = serde_json::json!({ "action": action });
        let response = self
            .http
            .send(
                Method::POST,
                self.url(),
                Auth::ApiKey(&self.token),
                Some(&body),
            )
            .await?;
        let parsed = assignment_from_post(&response.body).map_err(|m| response.invalid(m))?;
        self.warned.warn("HostUp legacy API", parsed.warnings);
        Ok(parsed.value)
    }
}

impl Provider for HostUpLegacy {
    fn host_id(&self) -> Option<String> {
        Some(format!("vm {}", self.vmid))
    }
    async fn identify(&mut self, _uplink_ips: &[IpAddr]) -> Result<(), ProviderError> {
        Ok(())
    }
    /// The documented answer always holds an allocation, so for a VM without one the
    /// API may answer `refresh_next_hop` with a 4xx problem rather than
    /// `allocation: null`. Any 4xx but a key or rate problem may mean that: `allocate`
    /// is idempotent (200 with an existing allocation), so asking it costs nothing
    /// when the reading is wrong. See issue 14, item 4.
    fn fetch_failure_may_mean_unallocated(&self, error: &ProviderError) -> bool {
        matches!(
            error,
            ProviderError::Status { status, .. }
                if (400..500).contains(status) && !matches!(status, 401 | 403 | 429)
        )
    }
    /// `refresh_next_hop`: the legacy API's only way to read, and it never allocates.
    async fn fetch(&mut self) -> Result<Assignment, ProviderError> {
        self.post("refresh_next_hop").await
    }
    async fn refresh_next_hop(&mut self) -> Result<Assignment, ProviderError> {
        self.post("refresh_next_hop").await
    }
    async fn allocate(&mut self) -> Result<Assignment, ProviderError> {
        self.post("allocate").await
    }
    /// `DELETE /api/vm/{vmid}/routed-ipv6`.
    async fn release(&mut self) -> Result<Release, ProviderError> {
        let response = match self
            .http
            .send(Method::DELETE, self.url(), Auth::ApiKey(&self.token), None)
            .await
        {
            Ok(response) => response,
            Err(e) => return Release::from_failure(e),
        };
        release_from_delete(&response.body).map_err(|m| response.invalid(m))
    }
}

// ---------------------------------------------------------------------------------------
// Wire shapes.

#[derive(Debug, Deserialize)]
struct Envelope {
    success: bool,
    #[serde(default, rename = "requestId")]
    request_id: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    data: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct PostData {
    /// Required (may be null): a `data` without it says nothing about the allocation.
    #[serde(deserialize_with = "object_or_null")]
    allocation: Option<RawAllocation>,
}

#[derive(Debug, Deserialize)]
struct DeleteData {
    released: bool,
    #[serde(default, rename = "cooldownDays", deserialize_with = "lenient_u64")]
    cooldown_days: Option<u64>,
    #[serde(default, deserialize_with = "object_or_null")]
    allocation: Option<RawAllocation>,
}

#[derive(Debug, Deserialize)]
struct RawAllocation {
    #[serde(default, deserialize_with = "lenient_string")]
    id: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    prefix_length: Option<u64>,
    #[serde(default)]
    next_hop: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    cooldown_until: Option<String>,
}

/// The envelope's `data`, after checking `success`.
fn data<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, String> {
    let envelope: Envelope = parse_json(body, "a HostUp legacy answer ({success, data})")?;
    if !envelope.success {
        return Err(format!(
            "success is false{}{}",
            envelope
                .message
                .map(|m| format!(": {}", rules::provider_text(&m)))
                .unwrap_or_default(),
            envelope
                .request_id
                .map(|id| format!(" (requestId {})", rules::provider_text(&id)))
                .unwrap_or_default()
        ));
    }
    match envelope.data {
        Some(value @ serde_json::Value::Object(_)) => {
            T::deserialize(value).map_err(|e| format!("data is not {what}: {e}"))
        }
        Some(other) => Err(format!("data is not {what}: got {other}")),
        None => Err(format!("no data where {what} was expected")),
    }
}

// ---------------------------------------------------------------------------------------
// The pure part.

/// The POST answer (allocate or refresh_next_hop) as an `Assignment`, with warnings.
pub fn assignment_from_post(body: &[u8]) -> Result<Parsed<Assignment>, String> {
    let data: PostData = data(body, "an allocation answer")?;
    let mut warnings = Vec::new();
    let mut prefixes = Vec::new();
    if let Some(allocation) = &data.allocation
        && allocation.status.as_deref() == Some("active")
    {
        prefixes.push(routed_prefix(allocation, &mut warnings)?);
    }
    Ok(Parsed {
        value: Assignment {
            prefixes,
            unavailable: None,
            suggested_next_hop: None,
        },
        warnings,
    })
}

fn routed_prefix(
    allocation: &RawAllocation,
    warnings: &mut Vec<String>,
) -> Result<RoutedPrefix, String> {
    let text = allocation
        .prefix
        .as_deref()
        .ok_or("allocation.prefix is missing in an active allocation")?;
    let hop_text = allocation
        .next_hop
        .as_deref()
        .ok_or("allocation.next_hop is missing in an active allocation")?;
    let fields = Fields {
        prefix: "allocation.prefix",
        length: "allocation.prefix_length",
        next_hop: "allocation.next_hop",
    };
    // The legacy documentation writes its example prefix with host bits, and its router
    // may hold a more specific route to a next hop inside the prefix: both are
    // programmed, each with a warning.
    let leniency = Leniency {
        host_bits: true,
        next_hop_inside: true,
    };
    let checked = rules::check_routed(fields, text, allocation.prefix_length, hop_text, leniency)?;
    warnings.extend(checked.warnings);
    let (prefix, next_hop) = (checked.prefix, checked.next_hop);
    let id = allocation.id.as_deref().map(rules::provider_text);
    let origin = match id.filter(|id| !id.is_empty()) {
        Some(id) => format!("legacy allocation {id}"),
        None => "legacy allocation".to_string(),
    };
    Ok(RoutedPrefix {
        workload: None,
        prefix,
        next_hop: Some(next_hop),
        origin,
    })
}

/// The DELETE answer.
pub fn release_from_delete(body: &[u8]) -> Result<Release, String> {
    let data: DeleteData = data(body, "a release answer")?;
    Ok(Release {
        released: data.released,
        cooldown_days: data.cooldown_days,
        cooldown_until: data
            .allocation
            .and_then(|a| a.cooldown_until)
            .map(|t| normalise_timestamp(&t)),
    })
}

/// PostgreSQL's text form (`2026-02-10 00:00:00.658429+00`) as RFC 3339
/// (`2026-02-10T00:00:00.658429+00:00`); anything else is returned as it is.
pub fn normalise_timestamp(text: &str) -> String {
    let text = text.trim();
    let Some((date, rest)) = text.split_once(' ') else {
        return text.to_string();
    };
    let date_ok = date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-';
    if !date_ok {
        return text.to_string();
    }
    // The zone: "+00", "+05:30", "-07", or none.
    let (time, zone) = match rest.rfind(['+', '-']) {
        Some(at) => rest.split_at(at),
        None => (rest, "Z"),
    };
    let zone = match zone.len() {
        3 => format!("{zone}:00"),
        5 if !zone.contains(':') => format!("{}:{}", &zone[..3], &zone[3..]),
        _ => zone.to_string(),
    };
    format!("{date}T{time}{zone}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> Vec<u8> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/hostup-legacy")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn active_allocation() {
        let parsed = assignment_from_post(&fixture("refresh_active.json")).unwrap();
        let a = parsed.value;
        assert_eq!(a.prefixes.len(), 1);
        assert_eq!(a.prefixes[0].prefix.to_string(), "2001:db8:42:100::/64");
        assert_eq!(
            a.prefixes[0].next_hop,
            Some("2001:db8:1::10".parse().unwrap())
        );
        assert_eq!(a.prefixes[0].origin, "legacy allocation 17");
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    }

    #[test]
    fn host_bits_are_normalised_with_a_warning() {
        let parsed = assignment_from_post(&fixture("refresh_host_bits.json")).unwrap();
        assert_eq!(parsed.value.prefixes[0].prefix.to_string(), "2001:db8::/48");
        assert_eq!(parsed.value.prefixes[0].origin, "legacy allocation 3");
        assert!(
            parsed.warnings.iter().any(|w| w.contains(
                "allocation.prefix 2001:db8::1/48 has host bits set; using the network 2001:db8::/48"
            )),
            "{:?}",
            parsed.warnings
        );
        assert!(parsed.warnings.iter().any(|w| w.contains("lies inside")));
    }

    #[test]
    fn conflicting_length_is_refused() {
        let e = assignment_from_post(&fixture("refresh_length_conflict.json")).unwrap_err();
        assert_eq!(
            e,
            "allocation.prefix_length 56 disagrees with allocation.prefix 2001:db8:42:100::/64"
        );
    }

    #[test]
    fn no_allocation_and_inactive_route_nothing() {
        let parsed = assignment_from_post(&fixture("refresh_none.json")).unwrap();
        assert!(parsed.value.prefixes.is_empty());
        let body = br#"{"success":true,"data":{"created":false,"allocation":{"id":4,"prefix":"2001:db8:42:100::/64","prefix_length":64,"next_hop":"2001:db8:1::10","status":"cooldown"}}}"#;
        assert!(
            assignment_from_post(body)
                .unwrap()
                .value
                .prefixes
                .is_empty()
        );
    }

    #[test]
    fn bad_envelopes_are_errors() {
        for (body, expect) in [
            (
                &b"{\"success\":false,\"message\":\"nope\",\"requestId\":\"r1\"}"[..],
                "success is false: nope (requestId r1)",
            ),
            (b"{\"success\":true}", "no data"),
            (b"{\"success\":true,\"data\":[]}", "data is not"),
            (b"{\"success\":true,\"data\":{}}", "data is not"),
            (b"{\"data\":{\"allocation\":null}}", "success"),
            (b"", "empty body"),
            (b"[]", "got an array"),
        ] {
            let e = assignment_from_post(body).unwrap_err();
            assert!(e.contains(expect), "{}: {e}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn release_answer() {
        let r = release_from_delete(&fixture("delete_released.json")).unwrap();
        assert_eq!(
            r,
            Release {
                released: true,
                cooldown_days: Some(30),
                cooldown_until: Some("2026-03-12T00:00:00.658429+00:00".into()),
            }
        );
    }

    #[test]
    fn postgres_timestamps() {
        assert_eq!(
            normalise_timestamp("2026-02-10 00:00:00.658429+00"),
            "2026-02-10T00:00:00.658429+00:00"
        );
        assert_eq!(
            normalise_timestamp("2026-02-10 10:00:00-0530"),
            "2026-02-10T10:00:00-05:30"
        );
        assert_eq!(
            normalise_timestamp("2026-02-10T00:00:00.000Z"),
            "2026-02-10T00:00:00.000Z"
        );
        assert_eq!(normalise_timestamp("string"), "string");
        // The result is a timestamp humantime (and so routed6d) can read.
        assert!(
            humantime::parse_rfc3339_weak(
                normalise_timestamp("2026-02-10 00:00:00+00").trim_end_matches("+00:00")
            )
            .is_ok()
        );
    }
}
