//! HostUp API v2 (docs/PROVIDERS.md §1): the per-VPS routed-IPv6 state, read with GET,
//! changed with POST (allocate / refresh_next_hop) and DELETE (release), turned into an
//! `Assignment` by one pure, strict-where-it-matters function. With `source =
//! "account"` the poll reads the account view (`GET /api/v2/routed-ipv6`) instead: every
//! active route of every pool whose `vpsId` is this VPS, each with its own next hop.
//!
//! Parsing is lenient about shape (unknown fields, nulls, numbers sent as strings) and
//! strict about meaning: an active allocation whose prefix or next hop could misroute
//! traffic is refused as a whole, and a refused answer is an error, never "no prefixes".

use std::net::IpAddr;

use reqwest::{Method, Url};
use serde::{Deserialize, Deserializer, de};

use super::http::{HttpClient, HttpResponse};
use super::{Parsed, Provider, ProviderError, Release, WarnOnce};
use crate::config::{BaseUrl, HostupSettings, HostupSource, Secret};
use crate::model::{Assignment, RoutedPrefix};
use crate::rules::{self, Fields, Leniency};

/// `reason` is null but `available` is false: still say something in the log.
const NO_REASON: &str = "routed IPv6 is not available (HostUp gave no reason)";

/// A HostUp VPS, identified by its public id (once known), and the client to reach the API.
#[derive(Debug)]
pub struct HostUp {
    http: HttpClient,
    base: BaseUrl,
    token: Secret,
    /// `provider.vps_id`, or found by `identify` on the first poll.
    vps_id: Option<String>,
    source: HostupSource,
    /// Oddities of the answers, each logged once.
    warned: WarnOnce,
}

impl HostUp {
    /// Build the client. Makes no network call: without `provider.vps_id` the VPS is
    /// found later by `identify`.
    pub fn new(config: &HostupSettings, token: Secret) -> Result<Self, ProviderError> {
        Ok(Self::with_http(HttpClient::new()?, config, token))
    }

    /// `new` with a given HTTP client (tests use short timeouts).
    pub fn with_http(http: HttpClient, config: &HostupSettings, token: Secret) -> Self {
        HostUp {
            http,
            base: config.api.base_url.clone(),
            token,
            vps_id: config.vps_id.clone(),
            source: config.source,
            warned: WarnOnce::default(),
        }
    }

    /// `with_http`, then `identify` when the config names no VPS.
    pub async fn connect_with(
        http: HttpClient,
        config: &HostupSettings,
        token: Secret,
        uplink_ips: &[IpAddr],
    ) -> Result<Self, ProviderError> {
        let mut hostup = Self::with_http(http, config, token);
        if hostup.vps_id.is_none() {
            hostup.identify(uplink_ips).await?;
        }
        Ok(hostup)
    }

    /// The VPS's public id (`vps_…`), once known.
    pub fn vps_id(&self) -> Option<&str> {
        self.vps_id.as_deref()
    }

    /// Find the VPS whose primary IP is one of `uplink_ips` (tried in order; needs scope
    /// read:vm).
    pub async fn identify(&mut self, uplink_ips: &[IpAddr]) -> Result<(), ProviderError> {
        self.vps_id = Some(self.discover(uplink_ips).await?);
        Ok(())
    }

    /// GET the routed-IPv6 state (or the account view). Changes nothing at HostUp.
    pub async fn fetch(&mut self) -> Result<Assignment, ProviderError> {
        match self.source {
            HostupSource::Vps => self.state_call(Method::GET, None).await,
            HostupSource::Account => self.account().await,
        }
    }

    /// POST `{"action":"refresh_next_hop"}`: HostUp re-reads the VPS's address. With
    /// `source = "account"`, the account view is read again afterwards.
    pub async fn refresh_next_hop(&mut self) -> Result<Assignment, ProviderError> {
        let body = serde_json::json!({ "action": "refresh_next_hop" });
        let state = self.state_call(Method::POST, Some(body)).await?;
        match self.source {
            HostupSource::Vps => Ok(state),
            HostupSource::Account => self.account().await,
        }
    }

    /// POST `{"action":"allocate"}`: 201 when a prefix was allocated, 200 when one existed.
    pub async fn allocate(&mut self) -> Result<Assignment, ProviderError> {
        let body = serde_json::json!({ "action": "allocate" });
        let state = self.state_call(Method::POST, Some(body)).await?;
        match self.source {
            HostupSource::Vps => Ok(state),
            HostupSource::Account => self.account().await,
        }
    }

    /// GET /api/v2/routed-ipv6 and keep the routes to this VPS.
    async fn account(&self) -> Result<Assignment, ProviderError> {
        let id = self.vps_id.as_deref().ok_or_else(|| {
            ProviderError::NotFound("this VPS has not been identified at HostUp yet".into())
        })?;
        let response = self
            .http
            .request(
                Method::GET,
                self.base.join("/api/v2/routed-ipv6"),
                &self.token,
                None,
            )
            .await?;
        assignment_from_account(&response.body, id).map_err(|m| response.invalid(m))
    }

    /// DELETE: give the prefix back; HostUp starts a cooldown before the next one.
    pub async fn release(&mut self) -> Result<Release, ProviderError> {
        let response = self
            .http
            .request(Method::DELETE, self.state_url()?, &self.token, None)
            .await?;
        release_from_body(&response.body).map_err(|m| response.invalid(m))
    }

    fn state_url(&self) -> Result<Url, ProviderError> {
        let id = self.vps_id.as_deref().ok_or_else(|| {
            ProviderError::NotFound("this VPS has not been identified at HostUp yet".into())
        })?;
        Ok(self.base.join(&format!("/api/v2/vps/{id}/routed-ipv6")))
    }

    async fn state_call(
        &mut self,
        method: Method,
        body: Option<serde_json::Value>,
    ) -> Result<Assignment, ProviderError> {
        let response: HttpResponse = self
            .http
            .request(method, self.state_url()?, &self.token, body.as_ref())
            .await?;
        let parsed = assignment_from_state(&response.body).map_err(|m| response.invalid(m))?;
        self.warned.warn("HostUp", parsed.warnings);
        Ok(parsed.value)
    }

    /// GET /api/v2/vps?primaryIp=<ip> for each address until exactly one VPS matches.
    async fn discover(&self, uplink_ips: &[IpAddr]) -> Result<String, ProviderError> {
        if uplink_ips.is_empty() {
            return Err(ProviderError::NotFound(
                "provider.vps_id is not set and the uplink has no global address to look the VPS up by".into(),
            ));
        }
        for ip in uplink_ips {
            let mut url = self.base.join("/api/v2/vps");
            url.query_pairs_mut()
                .append_pair("primaryIp", &ip.to_string());
            let response = self
                .http
                .request(Method::GET, url, &self.token, None)
                .await?;
            let ids = vps_ids_from_list(&response.body, *ip).map_err(|m| response.invalid(m))?;
            match ids.as_slice() {
                [] => continue,
                [id] => {
                    tracing::info!(vps_id = %id, primary_ip = %ip, "found this VPS at HostUp by its primary IP");
                    return Ok(id.clone());
                }
                many => {
                    return Err(ProviderError::NotFound(format!(
                        "primary IP {ip} matches {} VPSes ({}); set provider.vps_id",
                        many.len(),
                        many.join(", ")
                    )));
                }
            }
        }
        let tried: Vec<String> = uplink_ips.iter().map(IpAddr::to_string).collect();
        Err(ProviderError::NotFound(format!(
            "no VPS has primary IP {}; set provider.vps_id (the key needs scope read:vm to look it up)",
            tried.join(" or ")
        )))
    }
}

impl Provider for HostUp {
    fn host_id(&self) -> Option<String> {
        self.vps_id.clone()
    }
    fn needs_identity(&self) -> bool {
        self.vps_id.is_none()
    }
    async fn identify(&mut self, uplink_ips: &[IpAddr]) -> Result<(), ProviderError> {
        HostUp::identify(self, uplink_ips).await
    }
    async fn fetch(&mut self) -> Result<Assignment, ProviderError> {
        HostUp::fetch(self).await
    }
    async fn refresh_next_hop(&mut self) -> Result<Assignment, ProviderError> {
        HostUp::refresh_next_hop(self).await
    }
    async fn allocate(&mut self) -> Result<Assignment, ProviderError> {
        HostUp::allocate(self).await
    }
    async fn release(&mut self) -> Result<Release, ProviderError> {
        HostUp::release(self).await
    }
}

// ---------------------------------------------------------------------------------------
// Wire shapes. Only the fields routed6d reads; everything else is ignored.

#[derive(Debug, Deserialize)]
struct RawState {
    /// Required: it is what makes this body a routed-IPv6 state at all.
    available: bool,
    #[serde(default)]
    reason: Option<String>,
    /// Advisory (it only decides whether to ask for a refresh), so any JSON is read
    /// and a bad value costs itself, not the answer.
    #[serde(default, rename = "suggestedNextHop")]
    suggested_next_hop: Option<serde_json::Value>,
    /// Required, but may be null. A body without it is not a state, and reading it as
    /// "nothing allocated" would remove working routes.
    #[serde(deserialize_with = "object_or_null")]
    allocation: Option<RawAllocation>,
}

#[derive(Debug, Deserialize)]
struct RawAllocation {
    #[serde(default, deserialize_with = "lenient_string")]
    id: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default, rename = "prefixLength", deserialize_with = "lenient_u64")]
    prefix_length: Option<u64>,
    #[serde(default, rename = "nextHop")]
    next_hop: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default, rename = "cooldownUntil")]
    cooldown_until: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawRelease {
    released: bool,
    #[serde(default, rename = "cooldownDays", deserialize_with = "lenient_u64")]
    cooldown_days: Option<u64>,
    #[serde(default, rename = "cooldownUntil")]
    cooldown_until: Option<String>,
    #[serde(default, deserialize_with = "object_or_null")]
    allocation: Option<RawAllocation>,
}

/// A JSON object or null. Without `default` the key must be present. (serde would
/// otherwise also build a struct from an array, `[]` included.)
pub(crate) fn object_or_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: de::DeserializeOwned,
{
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        value @ serde_json::Value::Object(_) => {
            T::deserialize(value).map(Some).map_err(de::Error::custom)
        }
        other => Err(de::Error::custom(format!(
            "expected an object or null, got {}",
            json_kind(&other)
        ))),
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A number, or a string holding one ("64"): HostUp's examples are not consistent.
pub(crate) fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(v), _) => Ok(Some(v)),
            (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f <= u32::MAX as f64 => {
                Ok(Some(f as u64))
            }
            _ => Err(de::Error::custom(format!(
                "{n} is not a non-negative whole number"
            ))),
        },
        serde_json::Value::String(s) => s
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| de::Error::custom(format!("{s:?} is not a non-negative whole number"))),
        other => Err(de::Error::custom(format!("expected a number, got {other}"))),
    }
}

/// An id as a string, or a number (the legacy API's ids are integers).
pub(crate) fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s)),
        serde_json::Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(de::Error::custom(format!("expected a string, got {other}"))),
    }
}

/// The body as a JSON object of type `T`: an array, a string or null is refused even
/// where serde would map it onto the struct.
pub(crate) fn parse_json<T: de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(format!("empty body where {what} was expected"));
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not {what}: bad JSON: {e}"))?;
    if !value.is_object() {
        return Err(format!("not {what}: got {}", json_kind(&value)));
    }
    T::deserialize(value).map_err(|e| format!("not {what}: {e}"))
}

// ---------------------------------------------------------------------------------------
// The pure part: body in, Assignment (or one clear reason) out.

/// Turn a per-VPS routed-IPv6 state (GET, or the 200/201 of POST) into an `Assignment`.
///
/// `available: false` and an allocation that is null or not `active` mean "nothing is
/// routed here"; an active allocation must be fully usable or the whole answer is refused.
pub fn assignment_from_state(body: &[u8]) -> Result<Parsed<Assignment>, String> {
    let state: RawState = parse_json(body, "a HostUp routed-IPv6 state object")?;
    let mut warnings = Vec::new();
    // Advisory: a bad suggestion means no refresh is asked for, never that the
    // allocation beside it goes unprogrammed (issue 14, item 6).
    let suggested_next_hop = match state.suggested_next_hop {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(text)) => {
            match rules::parse_next_hop("suggestedNextHop", &text) {
                Ok(hop) => Some(hop),
                Err(message) => {
                    warnings.push(format!(
                        "{message}; ignoring it (no next-hop refresh is asked for)"
                    ));
                    None
                }
            }
        }
        Some(other) => {
            warnings.push(format!(
                "suggestedNextHop is {}, not an address; ignoring it (no next-hop refresh is asked for)",
                json_kind(&other)
            ));
            None
        }
    };
    // `available: false` says a new allocation cannot be had now, not that an active
    // one is gone: an active allocation beside it stays programmed (issue 14).
    let unavailable = (!state.available).then(|| unavailable_reason(state.reason.as_deref()));
    let mut prefixes = Vec::new();
    if let Some(allocation) = &state.allocation
        && allocation.status.as_deref() == Some("active")
    {
        prefixes.push(routed_prefix(allocation)?);
    }
    Ok(Parsed {
        value: Assignment {
            prefixes,
            unavailable,
            suggested_next_hop,
        },
        warnings,
    })
}

/// The provider's reason for `available: false`, as data, or a sentence of ours when it
/// gave none.
fn unavailable_reason(reason: Option<&str>) -> String {
    reason
        .map(rules::provider_text)
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| NO_REASON.to_string())
}

/// An active allocation as a `RoutedPrefix`, or the first thing wrong with it.
fn routed_prefix(allocation: &RawAllocation) -> Result<RoutedPrefix, String> {
    let prefix_text = allocation
        .prefix
        .as_deref()
        .ok_or("allocation.prefix is missing in an active allocation")?;
    let next_hop_text = allocation
        .next_hop
        .as_deref()
        .ok_or("allocation.nextHop is missing in an active allocation")?;
    let fields = Fields {
        prefix: "allocation.prefix",
        length: "allocation.prefixLength",
        next_hop: "allocation.nextHop",
    };
    let rules::Checked {
        prefix, next_hop, ..
    } = rules::check_routed(
        fields,
        prefix_text,
        allocation.prefix_length,
        next_hop_text,
        Leniency::default(),
    )?;
    Ok(RoutedPrefix {
        prefix,
        next_hop: Some(next_hop),
        origin: allocation
            .id
            .as_deref()
            .map(rules::provider_text)
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| "allocation".to_string()),
    })
}

/// The account view's top level. Every key is optional in the docs, but a body without
/// `pools` says nothing about routes, and reading it as "none" would remove them.
#[derive(Debug, Deserialize)]
struct RawAccount {
    #[serde(default)]
    available: Option<bool>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    pools: Option<Vec<RawPool>>,
}

#[derive(Debug, Deserialize)]
struct RawPool {
    #[serde(default, deserialize_with = "lenient_string")]
    id: Option<String>,
    /// A pool without routes (null) has none; a pool is an object or the answer is bad.
    #[serde(default)]
    routes: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
struct RawRoute {
    #[serde(default, deserialize_with = "lenient_string")]
    id: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default, rename = "prefixLength", deserialize_with = "lenient_u64")]
    prefix_length: Option<u64>,
    #[serde(default, rename = "nextHop")]
    next_hop: Option<String>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default, rename = "vpsId")]
    vps_id: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

/// Turn the account view into this VPS's `Assignment`: every route whose `vpsId` is
/// `vps_id` and whose status is `active`, from every pool. A route of this VPS that
/// could misroute traffic refuses the whole answer; other VPSes' routes are not read
/// beyond their `vpsId` and `status`.
pub fn assignment_from_account(body: &[u8], vps_id: &str) -> Result<Assignment, String> {
    let account: RawAccount = parse_json(body, "a HostUp routed-IPv6 account view")?;
    // As for one VPS: `available: false` withdraws nothing that the pools list as
    // active; without pools it lists nothing, which is what it says.
    let unavailable =
        (account.available == Some(false)).then(|| unavailable_reason(account.reason.as_deref()));
    let pools = match (account.pools, &unavailable) {
        (Some(pools), _) => pools,
        (None, Some(_)) => Vec::new(),
        (None, None) => {
            return Err(
                "the account view has no pools array (and does not say routed IPv6 is unavailable)"
                    .into(),
            );
        }
    };
    let mut prefixes: Vec<RoutedPrefix> = Vec::new();
    for (p, pool) in pools.iter().enumerate() {
        for (r, value) in pool.routes.iter().flatten().enumerate() {
            let field = format!("pools[{p}].routes[{r}]");
            let route: RawRoute = match value {
                serde_json::Value::Object(_) => {
                    RawRoute::deserialize(value).map_err(|e| format!("{field}: {e}"))?
                }
                _ => return Err(format!("{field} is not an object")),
            };
            if route.vps_id.as_deref() != Some(vps_id) || route.status.as_deref() != Some("active")
            {
                continue;
            }
            let prefix_text = route
                .prefix
                .as_deref()
                .ok_or_else(|| format!("{field}.prefix is missing in an active route"))?;
            let hop_text = route
                .next_hop
                .as_deref()
                .ok_or_else(|| format!("{field}.nextHop is missing in an active route"))?;
            let (prefix_field, length_field, hop_field) = (
                format!("{field}.prefix"),
                format!("{field}.prefixLength"),
                format!("{field}.nextHop"),
            );
            let fields = Fields {
                prefix: &prefix_field,
                length: &length_field,
                next_hop: &hop_field,
            };
            let rules::Checked {
                prefix, next_hop, ..
            } = rules::check_routed(
                fields,
                prefix_text,
                route.prefix_length,
                hop_text,
                Leniency::default(),
            )?;
            let id = route
                .id
                .as_deref()
                .map(rules::provider_text)
                .filter(|id| !id.is_empty())
                .or_else(|| {
                    let pool = pool.id.as_deref().map(rules::provider_text)?;
                    Some(format!("{pool} route"))
                })
                .unwrap_or_else(|| field.clone());
            let label = route.label.as_deref().map(rules::provider_text);
            let origin = match label.as_deref() {
                Some(label) if !label.is_empty() => format!("{id} {label:?}"),
                _ => id,
            };
            if let Some(same) = prefixes.iter().find(|x| x.prefix == prefix) {
                if same.next_hop == Some(next_hop) {
                    continue;
                }
                return Err(format!(
                    "{field}.prefix {prefix} is routed twice to this VPS, via {} ({}) and via {next_hop} ({origin})",
                    same.next_hop.map(|h| h.to_string()).unwrap_or_default(),
                    same.origin
                ));
            }
            prefixes.push(RoutedPrefix {
                prefix,
                next_hop: Some(next_hop),
                origin,
            });
            // Checked as they come, which also bounds the duplicate search above.
            rules::check_prefix_count("the account view", prefixes.len())?;
        }
    }
    Ok(Assignment {
        prefixes,
        unavailable,
        suggested_next_hop: None,
    })
}

/// The DELETE answer.
pub fn release_from_body(body: &[u8]) -> Result<Release, String> {
    let raw: RawRelease = parse_json(body, "a HostUp release answer")?;
    let cooldown_until = raw
        .cooldown_until
        .or_else(|| raw.allocation.and_then(|a| a.cooldown_until));
    Ok(Release {
        released: raw.released,
        cooldown_days: raw.cooldown_days,
        cooldown_until,
    })
}

/// The ids in a `GET /api/v2/vps?primaryIp=…` answer that belong to `ip`. Entries that
/// name another primary IP are dropped (in case the filter was ignored); entries
/// without one are trusted to the filter.
pub fn vps_ids_from_list(body: &[u8], ip: IpAddr) -> Result<Vec<String>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("empty body where a VPS list was expected".into());
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not a VPS list: bad JSON: {e}"))?;
    let items = match &value {
        serde_json::Value::Object(map) => match map.get("data") {
            Some(serde_json::Value::Array(items)) => items,
            Some(serde_json::Value::Null) | None => {
                return Err("VPS list has no data array".into());
            }
            Some(_) => return Err("VPS list's data is not an array".into()),
        },
        serde_json::Value::Array(items) => items,
        _ => return Err("VPS list is neither an object nor an array".into()),
    };
    let mut ids = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let id = item
            .get("id")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| format!("data[{index}].id is missing or not a string"))?;
        if !crate::rules::is_path_id(id) {
            return Err(format!("data[{index}].id {id:?} is not a VPS id"));
        }
        let other_ip = item
            .get("primaryIp")
            .and_then(serde_json::Value::as_str)
            .and_then(|t| t.trim().parse::<IpAddr>().ok())
            .is_some_and(|p| p != ip);
        if !other_ip {
            ids.push(id.to_string());
        }
    }
    ids.dedup();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipnet::Ipv6Net;
    use std::net::Ipv6Addr;
    use std::path::PathBuf;

    fn fixture(name: &str) -> Vec<u8> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/hostup")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn net(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// A state body with one active allocation.
    fn active(prefix: &str, length: &str, next_hop: &str) -> String {
        format!(
            r#"{{"available":true,"reason":null,"suggestedNextHop":null,"allocation":{{"id":"ripv6_x","prefix":{prefix},"prefixLength":{length},"nextHop":{next_hop},"status":"active"}}}}"#
        )
    }

    /// The assignment of a per-VPS state, its warnings dropped.
    fn state(body: &[u8]) -> Result<Assignment, String> {
        assignment_from_state(body).map(|parsed| parsed.value)
    }

    fn refused(body: &str) -> String {
        match state(body.as_bytes()) {
            Ok(a) => panic!("accepted {body}: {a:?}"),
            Err(message) => message,
        }
    }

    #[test]
    fn unavailable_keeps_the_reason_verbatim() {
        let a = state(&fixture("state_unavailable.json")).unwrap();
        assert!(a.prefixes.is_empty());
        assert_eq!(
            a.unavailable.as_deref(),
            Some("Assign IPv6 to the net0 interface first to enable routed IPv6.")
        );
        assert_eq!(a.suggested_next_hop, None);
    }

    #[test]
    fn available_false_never_withdraws_an_active_allocation() {
        let a = state(
            br#"{"available":false,"reason":"Cooldown","allocation":{"id":"ripv6_1","prefix":"2001:db8:42:100::/64","prefixLength":64,"nextHop":"2001:db8::10","status":"active"}}"#,
        )
        .unwrap();
        assert_eq!(a.prefixes.len(), 1, "the active allocation stays");
        assert_eq!(a.unavailable.as_deref(), Some("Cooldown"));
        let account = br#"{"available":false,"reason":"Cooldown","pools":[{"id":"p","routes":[{"id":"rt","prefix":"2001:db8:42:100::/64","nextHop":"2001:db8::10","vpsId":"vps_1","status":"active"}]}]}"#;
        let a = assignment_from_account(account, "vps_1").unwrap();
        assert_eq!(a.prefixes.len(), 1, "the active route stays");
        assert_eq!(a.unavailable.as_deref(), Some("Cooldown"));
        // Without pools it lists nothing: that is what it says.
        let a = assignment_from_account(br#"{"available":false,"reason":null}"#, "vps_1").unwrap();
        assert!(a.prefixes.is_empty() && a.unavailable.is_some());
        assert!(assignment_from_account(br#"{"available":true}"#, "vps_1").is_err());
    }

    #[test]
    fn provider_text_reaches_nothing_as_control() {
        let a = state(br#"{"available":false,"reason":"x\nWATCHDOG=trigger","allocation":null}"#)
            .unwrap();
        assert_eq!(a.unavailable.as_deref(), Some("x WATCHDOG=trigger"));
        let account = br#"{"pools":[{"id":"pool\n1","routes":[{"id":"rt\u001b[2J","label":"web\r\nEVIL=1","prefix":"2001:db8:42:100::/64","nextHop":"2001:db8::10","vpsId":"vps_1","status":"active"}]}]}"#;
        let a = assignment_from_account(account, "vps_1").unwrap();
        let origin = &a.prefixes[0].origin;
        assert!(!origin.chars().any(char::is_control), "{origin:?}");
        assert_eq!(origin, "rt [2J \"web EVIL=1\"");
    }

    #[test]
    fn unavailable_without_reason_still_says_so() {
        let a = state(br#"{"available":false,"reason":null,"allocation":null}"#).unwrap();
        assert_eq!(a.unavailable.as_deref(), Some(NO_REASON));
    }

    #[test]
    fn allocated() {
        let a = state(&fixture("state_allocated.json")).unwrap();
        assert_eq!(
            a.prefixes,
            vec![RoutedPrefix {
                prefix: net("2001:db8:42:100::/64"),
                next_hop: Some(addr("2001:db8:42::1")),
                origin: "ripv6_01hxa3b4c5d6e7f8g9h0j1k2m3".into(),
            }]
        );
        assert_eq!(a.unavailable, None);
        assert_eq!(a.suggested_next_hop, Some(addr("2001:db8:42::1")));
        assert!(!a.next_hop_is_stale());
    }

    #[test]
    fn stale_next_hop_is_visible() {
        let a = state(&fixture("state_stale_next_hop.json")).unwrap();
        assert_eq!(a.prefixes[0].next_hop, Some(addr("2001:db8:42::1")));
        assert_eq!(a.suggested_next_hop, Some(addr("2001:db8:42::2")));
        assert!(a.next_hop_is_stale());
    }

    #[test]
    fn released_allocation_in_cooldown_routes_nothing() {
        // The doc's own example: prefix /64 but prefixLength 48. Not active, so its
        // inconsistency does not matter: nothing is routed.
        let a = state(&fixture("state_cooldown.json")).unwrap();
        assert!(a.prefixes.is_empty());
        assert_eq!(a.unavailable, None);
    }

    #[test]
    fn no_allocation_and_other_statuses_route_nothing() {
        let a = state(&fixture("state_no_allocation.json")).unwrap();
        assert_eq!(
            a,
            Assignment {
                suggested_next_hop: Some(addr("2001:db8:42::1")),
                ..Default::default()
            }
        );
        for status in ["\"cooldown\"", "\"pending\"", "\"ACTIVE\"", "null"] {
            let body = format!(
                r#"{{"available":true,"allocation":{{"prefix":"2001:db8:42:100::/64","nextHop":"2001:db8:42::1","status":{status}}}}}"#
            );
            assert!(
                state(body.as_bytes()).unwrap().prefixes.is_empty(),
                "{status}"
            );
        }
    }

    #[test]
    fn nulls_everywhere() {
        let a = state(&fixture("state_nulls.json")).unwrap();
        assert_eq!(a, Assignment::default());
        // An active allocation whose other fields are null: origin falls back, length
        // is taken from the prefix.
        let a = state(&fixture("state_active_sparse.json")).unwrap();
        assert_eq!(a.prefixes[0].origin, "allocation");
        assert_eq!(a.prefixes[0].prefix, net("2001:db8:42:200::/56"));
    }

    #[test]
    fn prefix_length_as_string_and_float() {
        let a = state(&fixture("state_prefix_length_string.json")).unwrap();
        assert_eq!(a.prefixes[0].prefix, net("2001:db8:42:100::/64"));
        let body = active("\"2001:db8:42:100::/64\"", "64.0", "\"2001:db8:42::1\"");
        assert_eq!(state(body.as_bytes()).unwrap().prefixes.len(), 1);
        let body = active(
            "\"2001:db8:42:100::/64\"",
            "\"sixty-four\"",
            "\"2001:db8:42::1\"",
        );
        assert!(refused(&body).contains("sixty-four"));
        let body = active("\"2001:db8:42:100::/64\"", "-64", "\"2001:db8:42::1\"");
        assert!(refused(&body).contains("-64"));
    }

    #[test]
    fn prefix_length_disagreeing_with_prefix_is_refused() {
        let message =
            refused(std::str::from_utf8(&fixture("state_inconsistent_length.json")).unwrap());
        assert_eq!(
            message,
            "allocation.prefixLength 56 disagrees with allocation.prefix 2001:db8:42:100::/64"
        );
        // The release example's numbers (prefix /64, prefixLength 48) in an active allocation.
        let body = active("\"2001:db8:42:100::/64\"", "48", "\"2001:db8::10\"");
        assert!(refused(&body).contains("allocation.prefixLength 48 disagrees"));
    }

    #[test]
    fn host_bits_are_refused() {
        let message = refused(std::str::from_utf8(&fixture("state_host_bits.json")).unwrap());
        assert!(
            message.contains("allocation.prefix 2001:db8::1/48 has host bits set"),
            "{message}"
        );
        assert!(message.contains("2001:db8::/48"), "{message}");
    }

    #[test]
    fn too_short_prefixes_are_refused() {
        for prefix in ["::/0", "2000::/3", "2001:db8::/31", "2001::/16"] {
            let body = active(&format!("\"{prefix}\""), "null", "\"2001:db8:42::1\"");
            let message = refused(&body);
            assert!(message.contains("shorter than /32"), "{prefix}: {message}");
        }
        // /32 and /128 are fine.
        for prefix in ["2001:db9::/32", "2001:db8:42:100::5/128"] {
            let body = active(&format!("\"{prefix}\""), "null", "\"2001:db8:42::1\"");
            assert_eq!(
                state(body.as_bytes()).unwrap().prefixes.len(),
                1,
                "{prefix}"
            );
        }
    }

    #[test]
    fn unroutable_prefixes_are_refused() {
        for (prefix, kind) in [
            ("fe80::/64", "link-local"),
            ("febf:1::/64", "link-local"),
            ("ff02::/64", "multicast"),
            ("::1/128", "loopback"),
            ("::/64", "unspecified"),
        ] {
            let body = active(&format!("\"{prefix}\""), "null", "\"2001:db8:42::1\"");
            let message = refused(&body);
            assert!(message.contains(kind), "{prefix}: {message}");
            assert!(message.starts_with("allocation.prefix "), "{message}");
        }
        for bad in [
            "\"2001:db8:42:100::\"",
            "\"192.0.2.0/24\"",
            "\"banana\"",
            "\"2001:db8::/129\"",
        ] {
            let body = active(bad, "null", "\"2001:db8:42::1\"");
            assert!(refused(&body).contains("is not an IPv6 prefix"), "{bad}");
        }
    }

    #[test]
    fn bad_next_hops_are_refused() {
        for (hop, kind) in [
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("::", "unspecified"),
            ("::1", "loopback"),
        ] {
            let body = active("\"2001:db8:42:100::/64\"", "64", &format!("\"{hop}\""));
            let message = refused(&body);
            assert!(message.starts_with("allocation.nextHop "), "{message}");
            assert!(message.contains(kind), "{hop}: {message}");
        }
        for hop in ["\"192.0.2.1\"", "\"2001:db8:42::1/64\"", "\"\"", "17"] {
            let body = active("\"2001:db8:42:100::/64\"", "64", hop);
            refused(&body);
        }
    }

    #[test]
    fn next_hop_as_slash_128_is_normalised() {
        let body = active("\"2001:db8:42:100::/64\"", "64", "\"2001:db8:42::1/128\"");
        let a = state(body.as_bytes()).unwrap();
        assert_eq!(a.prefixes[0].next_hop, Some(addr("2001:db8:42::1")));
    }

    #[test]
    fn next_hop_inside_the_prefix_would_loop() {
        let message = refused(std::str::from_utf8(&fixture("state_next_hop_inside.json")).unwrap());
        assert!(
            message.contains("lies inside allocation.prefix 2001:db8:42:100::/64"),
            "{message}"
        );
    }

    #[test]
    fn missing_prefix_or_next_hop_in_active_allocation() {
        let body =
            br#"{"available":true,"allocation":{"status":"active","nextHop":"2001:db8::1"}}"#;
        assert!(
            state(body)
                .unwrap_err()
                .contains("allocation.prefix is missing")
        );
        let body = br#"{"available":true,"allocation":{"status":"active","prefix":"2001:db8:42:100::/64","nextHop":null}}"#;
        assert!(
            state(body)
                .unwrap_err()
                .contains("allocation.nextHop is missing")
        );
    }

    #[test]
    fn a_bad_suggested_next_hop_is_ignored_with_a_warning() {
        // Advisory: the allocation beside it is programmed, no refresh is asked for.
        for (value, warning) in [
            (
                "\"fe80::1\"",
                "suggestedNextHop fe80::1 is link-local, not usable as a next hop; ignoring it",
            ),
            (
                "\"nope\"",
                "suggestedNextHop \"nope\" is not an IPv6 address; ignoring it",
            ),
            ("\"fd00::1\"", "suggestedNextHop fd00::1 is unique local"),
            (
                "17",
                "suggestedNextHop is a number, not an address; ignoring it",
            ),
            (
                "{}",
                "suggestedNextHop is an object, not an address; ignoring it",
            ),
        ] {
            let body = format!(
                r#"{{"available":true,"suggestedNextHop":{value},"allocation":{{"id":"ripv6_x","prefix":"2001:db8:42:100::/64","nextHop":"2001:db8:42::1","status":"active"}}}}"#
            );
            let parsed = assignment_from_state(body.as_bytes()).unwrap();
            assert_eq!(parsed.value.prefixes.len(), 1, "{value}");
            assert_eq!(parsed.value.suggested_next_hop, None, "{value}");
            assert!(!parsed.value.next_hop_is_stale());
            assert_eq!(parsed.warnings.len(), 1, "{value}");
            assert!(
                parsed.warnings[0].starts_with(warning),
                "{:?}",
                parsed.warnings
            );
        }
        let body = br#"{"available":false,"reason":"x","suggestedNextHop":"2001:db8::9/128","allocation":null}"#;
        let parsed = assignment_from_state(body).unwrap();
        assert_eq!(parsed.value.suggested_next_hop, Some(addr("2001:db8::9")));
        assert!(parsed.warnings.is_empty());
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let a = state(&fixture("state_unknown_fields.json")).unwrap();
        assert_eq!(a.prefixes.len(), 1);
        assert_eq!(a.prefixes[0].origin, "ripv6_01hxa3b4c5d6e7f8g9h0j1k2m3");
    }

    #[test]
    fn broken_bodies_are_errors_not_empty_assignments() {
        for body in [
            &b""[..],
            b"   \n",
            b"{\"available\":true,\"allocation\":{\"prefix\":\"2001:db8:42:100::/64\"",
            b"[]",
            b"[{\"available\":true,\"allocation\":null}]",
            b"{}",
            b"{\"available\":true}",
            b"{\"allocation\":null}",
            b"{\"available\":\"yes\",\"allocation\":null}",
            b"{\"available\":true,\"allocation\":[]}",
            b"null",
            b"\"available\"",
            b"<html>maintenance</html>",
            b"\xff\xfe",
        ] {
            let result = state(body);
            assert!(
                result.is_err(),
                "{:?} gave {result:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(state(b"").unwrap_err().starts_with("empty body"));
    }

    #[test]
    fn release_answer() {
        let r = release_from_body(&fixture("release_cooldown.json")).unwrap();
        assert_eq!(
            r,
            Release {
                released: true,
                cooldown_days: Some(30),
                cooldown_until: Some("2026-05-27T12:00:00.000Z".into()),
            }
        );
        let r = release_from_body(br#"{"released":false,"cooldownDays":"7","cooldownUntil":null,"allocation":{"cooldownUntil":"2026-05-04T00:00:00.000Z"}}"#).unwrap();
        assert_eq!(r.cooldown_days, Some(7));
        assert_eq!(
            r.cooldown_until.as_deref(),
            Some("2026-05-04T00:00:00.000Z")
        );
        assert!(release_from_body(b"{}").is_err());
        assert!(release_from_body(b"").is_err());
    }

    #[test]
    fn vps_list() {
        let ip: IpAddr = "192.0.2.10".parse().unwrap();
        assert_eq!(
            vps_ids_from_list(&fixture("vps_list.json"), ip).unwrap(),
            vec!["vps_01hxa3b4c5d6e7f8g9h0j1k2m5".to_string()]
        );
        let other: IpAddr = "198.51.100.7".parse().unwrap();
        // The fixture's only entry names 192.0.2.10: a server ignoring the filter must
        // not make us adopt someone else's VPS.
        assert!(
            vps_ids_from_list(&fixture("vps_list.json"), other)
                .unwrap()
                .is_empty()
        );
        assert!(vps_ids_from_list(br#"{"data":[]}"#, ip).unwrap().is_empty());
        assert_eq!(
            vps_ids_from_list(br#"[{"id":"vps_a"}]"#, ip).unwrap(),
            vec!["vps_a".to_string()]
        );
        assert!(vps_ids_from_list(br#"{"data":[{"id":"../x"}]}"#, ip).is_err());
        assert!(vps_ids_from_list(br#"{"data":[{"name":"x"}]}"#, ip).is_err());
        assert!(vps_ids_from_list(br#"{"items":[]}"#, ip).is_err());
        assert!(vps_ids_from_list(b"", ip).is_err());
    }

    #[test]
    fn problem_documents() {
        for (file, status, code, request_id) in [
            (
                "problem_unauthorized.json",
                401,
                "unauthorized",
                "req_abc123",
            ),
            (
                "problem_vps_not_found.json",
                404,
                "vps_not_found",
                "req_xyz789",
            ),
            (
                "problem_rate_limited.json",
                429,
                "rate_limited",
                "req_abc123",
            ),
            (
                "problem_rate_limit_exceeded.json",
                429,
                "rate_limit_exceeded",
                "req_abc123",
            ),
            (
                "problem_invalid_request.json",
                400,
                "invalid_request",
                "req_01hxa3b4c5d6e7f8g9h0j1k2m3",
            ),
        ] {
            let error =
                super::super::http::status_error("u".into(), status, None, None, &fixture(file));
            match &error {
                ProviderError::Status {
                    status: s,
                    code: c,
                    request_id: r,
                    detail,
                    ..
                } => {
                    assert_eq!(*s, status);
                    assert_eq!(c.as_deref(), Some(code), "{file}");
                    assert_eq!(r.as_deref(), Some(request_id), "{file}");
                    assert!(detail.is_some(), "{file}");
                }
                other => panic!("{other:?}"),
            }
            let text = error.to_string();
            assert!(text.contains(&format!("code={code}")), "{text}");
        }
    }

    /// The researcher's samples in /work/shared, when this checkout sits next to them.
    #[test]
    fn shared_fixtures_when_present() {
        let dir = std::env::var_os("ROUTED6D_SHARED_FIXTURES")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/hostup")
            });
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!("SKIPPED: no shared HostUp fixtures at {}", dir.display());
            return;
        };
        let mut seen = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let body = std::fs::read(&path).unwrap();
            if name.starts_with("ASSEMBLED_v2_") {
                if name.contains("delete") {
                    release_from_body(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
                } else {
                    state(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
                }
                seen += 1;
            } else if name.starts_with("problem_") {
                match super::super::http::status_error("u".into(), 400, None, None, &body) {
                    ProviderError::Status {
                        code: Some(_),
                        request_id: Some(_),
                        ..
                    } => {}
                    other => panic!("{name}: {other:?}"),
                }
                seen += 1;
            }
        }
        eprintln!("checked {seen} shared HostUp fixtures in {}", dir.display());
        assert!(seen > 0, "no v2 or problem fixtures in {}", dir.display());
    }
}
