//! HostUp API v2 (docs/PROVIDERS.md §1): the per-VPS routed-IPv6 state, read with GET,
//! changed with POST (allocate / refresh_next_hop) and DELETE (release), turned into an
//! `Assignment` by one pure, strict-where-it-matters function. With `source =
//! "account"` the poll reads the account view (`GET /api/v2/routed-ipv6`) instead: every
//! active route of every pool whose `vpsId` is this VPS, each with its own next hop,
//! and the writes go to the account API too: allocate is `POST /api/v2/routed-ipv6`
//! `create_route`, release is `DELETE /api/v2/routed-ipv6/routes/{id}`, each only when
//! the view's action gates (`canCreateRoute`, `canReceiveRoute`, `canDelete`) are open.
//! The per-VPS endpoints are never asked in account mode: HostUp documents them as the
//! wrong ones there.
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
    /// Account mode: routes are created when missing (`provider.allocate`).
    allocate: bool,
    /// Account mode: the configured pool and route length, when the account offers a
    /// choice.
    choice: RouteChoice,
    /// Oddities of the answers, each logged once.
    warned: WarnOnce,
}

/// What the config says about the route `create_route` asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteChoice {
    /// `provider.pool`: the pool id.
    pub pool: Option<String>,
    /// `provider.prefix_length`.
    pub prefix_length: Option<u8>,
}

/// The body of a `create_route` the account view allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateRoute {
    pub pool_id: String,
    pub prefix_length: u8,
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
            allocate: config.allocate,
            choice: RouteChoice {
                pool: config.pool.clone(),
                prefix_length: config.prefix_length,
            },
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

    /// POST `{"action":"refresh_next_hop"}`: HostUp re-reads the VPS's address. The
    /// account API has no such action, and the per-VPS endpoint is not asked in account
    /// mode.
    pub async fn refresh_next_hop(&mut self) -> Result<Assignment, ProviderError> {
        if self.source == HostupSource::Account {
            return Err(ProviderError::Unsupported(
                "HostUp's account API has no refresh_next_hop (source = \"account\" never uses the per-VPS endpoint)".into(),
            ));
        }
        let body = serde_json::json!({ "action": "refresh_next_hop" });
        self.state_call(Method::POST, Some(body)).await
    }

    /// Per VPS: POST `{"action":"allocate"}` (201 when a prefix was allocated, 200 when
    /// one existed). Account mode: POST `create_route` from the configured pool, if the
    /// account view's gates allow it now.
    pub async fn allocate(&mut self) -> Result<Assignment, ProviderError> {
        match self.source {
            HostupSource::Vps => {
                let body = serde_json::json!({ "action": "allocate" });
                self.state_call(Method::POST, Some(body)).await
            }
            HostupSource::Account => self.create_route().await,
        }
    }

    /// Read the account view afresh (gates change), then POST `create_route` when it
    /// allows one for this VPS; the 201's body is the updated account view.
    async fn create_route(&mut self) -> Result<Assignment, ProviderError> {
        let id = self.require_id()?.to_string();
        let url = self.base.join("/api/v2/routed-ipv6");
        let view = self
            .http
            .request(Method::GET, url.clone(), &self.token, None)
            .await?;
        let plan = match plan_create_route(&view.body, &id, &self.choice) {
            Ok(plan) => plan,
            Err(Blocked::Invalid(m)) => return Err(view.invalid(m)),
            Err(Blocked::NotAllowed(m)) => return Err(ProviderError::NotAllowed(m)),
        };
        tracing::info!(
            POOL = %plan.pool_id,
            "asking HostUp for a /{} route from pool {}",
            plan.prefix_length,
            plan.pool_id
        );
        let body = serde_json::json!({
            "action": "create_route",
            "poolId": plan.pool_id,
            "vpsId": id,
            "prefixLength": plan.prefix_length,
        });
        let response = self
            .http
            .request(Method::POST, url, &self.token, Some(&body))
            .await?;
        assignment_from_account(&response.body, &id).map_err(|m| response.invalid(m))
    }

    /// The VPS's id, or why there is none yet.
    fn require_id(&self) -> Result<&str, ProviderError> {
        self.vps_id.as_deref().ok_or_else(|| {
            ProviderError::NotFound("this VPS has not been identified at HostUp yet".into())
        })
    }

    /// GET /api/v2/routed-ipv6 and keep the routes to this VPS. With `allocate`, when
    /// nothing is routed here and the gates say no route can be created now, the
    /// answer says why (`unavailable`): it is logged once, no POST is made, and a
    /// change of the gates changes the answer, which is when allocate is asked again.
    async fn account(&self) -> Result<Assignment, ProviderError> {
        let id = self.require_id()?;
        let response = self
            .http
            .request(
                Method::GET,
                self.base.join("/api/v2/routed-ipv6"),
                &self.token,
                None,
            )
            .await?;
        let mut assignment =
            assignment_from_account(&response.body, id).map_err(|m| response.invalid(m))?;
        if self.allocate
            && assignment.prefixes.is_empty()
            && assignment.unavailable.is_none()
            && let Err(Blocked::NotAllowed(m) | Blocked::Invalid(m)) =
                plan_create_route(&response.body, id, &self.choice)
        {
            assignment.unavailable = Some(m);
        }
        Ok(assignment)
    }

    /// Per VPS: DELETE, HostUp starts a cooldown before the next prefix. Account mode:
    /// DELETE each route routed to this VPS, only when every one of them may be deleted
    /// (`canDelete`): a refusal deletes nothing.
    pub async fn release(&mut self) -> Result<Release, ProviderError> {
        if self.source == HostupSource::Account {
            return self.delete_routes().await;
        }
        let response = match self
            .http
            .request(Method::DELETE, self.state_url()?, &self.token, None)
            .await
        {
            Ok(response) => response,
            Err(e) => return Release::from_failure(e),
        };
        release_from_body(&response.body).map_err(|m| response.invalid(m))
    }

    async fn delete_routes(&mut self) -> Result<Release, ProviderError> {
        let id = self.require_id()?.to_string();
        let view = self
            .http
            .request(
                Method::GET,
                self.base.join("/api/v2/routed-ipv6"),
                &self.token,
                None,
            )
            .await?;
        let routes = match plan_delete_routes(&view.body, &id) {
            Ok(routes) => routes,
            Err(Blocked::Invalid(m)) => return Err(view.invalid(m)),
            Err(Blocked::NotAllowed(m)) => return Err(ProviderError::NotAllowed(m)),
        };
        for route in &routes {
            tracing::info!(ROUTE = %route, "deleting HostUp route {route}");
            self.http
                .request(
                    Method::DELETE,
                    self.base
                        .join(&format!("/api/v2/routed-ipv6/routes/{route}")),
                    &self.token,
                    None,
                )
                .await?;
        }
        Ok(Release {
            released: !routes.is_empty(),
            cooldown_days: None,
            cooldown_until: None,
        })
    }

    fn state_url(&self) -> Result<Url, ProviderError> {
        let id = self.require_id()?;
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
        workload: None,
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
                workload: None,
                prefix,
                next_hop: Some(next_hop),
                origin,
            });
            // Checked as they come, which also bounds the duplicate search above.
            rules::check_prefix_count(
                "the account view",
                prefixes.len(),
                rules::MAX_PREFIXES_LIMIT,
            )?;
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

// ---------------------------------------------------------------------------------------
// Account writes: what the account view allows, decided by pure functions.

/// Why no account write is made.
#[derive(Debug, PartialEq, Eq)]
pub enum Blocked {
    /// The view says no (a gate is closed or missing), or leaves a choice the config
    /// must make. The provider's word: asked again only when the view changes.
    NotAllowed(String),
    /// The body is not an account view.
    Invalid(String),
}

/// `{allowed, reason}`. Only `allowed: true` opens it.
#[derive(Debug, Deserialize)]
struct RawGate {
    allowed: bool,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawActions {
    #[serde(default, rename = "canCreateRoute")]
    can_create_route: Option<RawGate>,
    #[serde(default, rename = "canReceiveRoute")]
    can_receive_route: Option<RawGate>,
    #[serde(default, rename = "canDelete")]
    can_delete: Option<RawGate>,
}

#[derive(Debug, Deserialize)]
struct RawWriteView {
    #[serde(default, rename = "allowedPrefixLengths")]
    allowed_prefix_lengths: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pools: Option<Vec<RawWritePool>>,
    #[serde(default)]
    destinations: Option<Vec<RawDestination>>,
    #[serde(default)]
    actions: Option<RawActions>,
}

#[derive(Debug, Deserialize)]
struct RawWritePool {
    #[serde(default, deserialize_with = "lenient_string")]
    id: Option<String>,
    #[serde(default)]
    routes: Option<Vec<RawWriteRoute>>,
    #[serde(default)]
    actions: Option<RawActions>,
}

#[derive(Debug, Deserialize)]
struct RawWriteRoute {
    #[serde(default, deserialize_with = "lenient_string")]
    id: Option<String>,
    #[serde(default, rename = "vpsId")]
    vps_id: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    actions: Option<RawActions>,
}

#[derive(Debug, Deserialize)]
struct RawDestination {
    #[serde(default, rename = "vpsId")]
    vps_id: Option<String>,
    #[serde(default)]
    actions: Option<RawActions>,
}

/// Open, or why not. A gate that is absent is closed: routed6d writes nothing the
/// provider did not say it allows.
fn gate_open(field: &str, gate: Option<&RawGate>) -> Result<(), Blocked> {
    match gate {
        Some(RawGate { allowed: true, .. }) => Ok(()),
        Some(RawGate { reason, .. }) => {
            let reason = reason
                .as_deref()
                .map(rules::provider_text)
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "HostUp gave no reason".into());
            Err(Blocked::NotAllowed(format!(
                "{field} is not allowed: {reason}"
            )))
        }
        None => Err(Blocked::NotAllowed(format!(
            "{field} is missing in the account view: routed6d writes nothing HostUp did not say it allows"
        ))),
    }
}

fn write_view(body: &[u8]) -> Result<RawWriteView, Blocked> {
    parse_json(body, "a HostUp routed-IPv6 account view").map_err(Blocked::Invalid)
}

/// The `create_route` the account view allows for `vps_id`, with the configured pool
/// and length (`choice`) or the only one offered; else why not, in one line.
pub fn plan_create_route(
    body: &[u8],
    vps_id: &str,
    choice: &RouteChoice,
) -> Result<CreateRoute, Blocked> {
    let view = write_view(body)?;
    if let Some(top) = view
        .actions
        .as_ref()
        .and_then(|a| a.can_create_route.as_ref())
    {
        gate_open("actions.canCreateRoute", Some(top))?;
    }
    let pools = view
        .pools
        .ok_or_else(|| Blocked::Invalid("the account view has no pools array".into()))?;
    let ids: Vec<String> = pools
        .iter()
        .map(|p| {
            p.id.as_deref()
                .map(rules::provider_text)
                .unwrap_or_default()
        })
        .collect();
    let index = match &choice.pool {
        Some(wanted) => ids.iter().position(|id| id == wanted).ok_or_else(|| {
            Blocked::NotAllowed(format!(
                "provider.pool {wanted} is not one of the account's pools ({})",
                ids.join(", ")
            ))
        })?,
        None => match ids.len() {
            0 => {
                return Err(Blocked::NotAllowed(
                    "the account has no routed /48 pool to create a route from (routed6d does not allocate one)".into(),
                ));
            }
            1 => 0,
            n => {
                return Err(Blocked::NotAllowed(format!(
                    "the account has {n} pools ({}); set provider.pool to choose one",
                    ids.join(", ")
                )));
            }
        },
    };
    let pool_id = &ids[index];
    if !rules::is_path_id(pool_id) {
        return Err(Blocked::Invalid(format!(
            "pools[{index}].id {pool_id:?} is not a pool id"
        )));
    }
    gate_open(
        &format!("pools[{index}].actions.canCreateRoute ({pool_id})"),
        pools[index]
            .actions
            .as_ref()
            .and_then(|a| a.can_create_route.as_ref()),
    )?;
    let destinations = view.destinations.unwrap_or_default();
    let (d, destination) = destinations
        .iter()
        .enumerate()
        .find(|(_, d)| d.vps_id.as_deref() == Some(vps_id))
        .ok_or_else(|| {
            Blocked::NotAllowed(format!(
                "this VPS ({vps_id}) is not among the account view's destinations"
            ))
        })?;
    gate_open(
        &format!("destinations[{d}].actions.canReceiveRoute"),
        destination
            .actions
            .as_ref()
            .and_then(|a| a.can_receive_route.as_ref()),
    )?;
    // Lengths routed6d can ask for: the documented ones the account allows.
    let allowed: Vec<u8> = match &view.allowed_prefix_lengths {
        Some(lengths) => crate::config::HOSTUP_ROUTE_LENGTHS
            .into_iter()
            .filter(|l| lengths.iter().any(|v| v.as_u64() == Some(u64::from(*l))))
            .collect(),
        None => crate::config::HOSTUP_ROUTE_LENGTHS.to_vec(),
    };
    let listed = || {
        allowed
            .iter()
            .map(|l| format!("/{l}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let prefix_length = match (choice.prefix_length, allowed.as_slice()) {
        (Some(length), _) if allowed.contains(&length) => length,
        (Some(length), _) => {
            return Err(Blocked::NotAllowed(format!(
                "provider.prefix_length {length} is not among the account's allowedPrefixLengths ({})",
                listed()
            )));
        }
        (None, [only]) => *only,
        (None, []) => {
            return Err(Blocked::NotAllowed(
                "the account's allowedPrefixLengths offers no length routed6d can ask for".into(),
            ));
        }
        (None, _) => {
            return Err(Blocked::NotAllowed(format!(
                "the account allows {} routes; set provider.prefix_length to choose one",
                listed()
            )));
        }
    };
    Ok(CreateRoute {
        pool_id: pool_id.clone(),
        prefix_length,
    })
}

/// The ids of the active routes routed to `vps_id`, to DELETE, when the view allows
/// deleting every one of them; else why not. Other VPSes' routes are never named.
pub fn plan_delete_routes(body: &[u8], vps_id: &str) -> Result<Vec<String>, Blocked> {
    let view = write_view(body)?;
    let pools = view
        .pools
        .ok_or_else(|| Blocked::Invalid("the account view has no pools array".into()))?;
    let mut ids = Vec::new();
    for (p, pool) in pools.iter().enumerate() {
        for (r, route) in pool.routes.iter().flatten().enumerate() {
            if route.vps_id.as_deref() != Some(vps_id) || route.status.as_deref() != Some("active")
            {
                continue;
            }
            let field = format!("pools[{p}].routes[{r}]");
            let id = route.id.as_deref().unwrap_or_default();
            if !rules::is_path_id(id) {
                return Err(Blocked::Invalid(format!(
                    "{field}.id {:?} is not a route id",
                    rules::provider_text(id)
                )));
            }
            gate_open(
                &format!("{field}.actions.canDelete ({id})"),
                route.actions.as_ref().and_then(|a| a.can_delete.as_ref()),
            )?;
            ids.push(id.to_string());
        }
    }
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
                workload: None,
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

    #[test]
    fn account_write_plans() {
        let view = |pool_gate: &str, receive: &str, lengths: &str| {
            format!(
                r#"{{"allowedPrefixLengths":{lengths},"pools":[{{"id":"ripv6_a","routes":[
                {{"id":"ripv6rt_1","vpsId":"vps_me","status":"active","actions":{{"canDelete":{{"allowed":true,"reason":null}}}}}},
                {{"id":"ripv6rt_2","vpsId":"vps_other","status":"active","actions":{{"canDelete":{{"allowed":false,"reason":"no"}}}}}}],
                "actions":{{"canCreateRoute":{pool_gate}}}}}],
                "destinations":[{{"vpsId":"vps_me","actions":{{"canReceiveRoute":{receive}}}}}]}}"#
            )
        };
        let open = r#"{"allowed":true,"reason":null}"#;
        let closed = r#"{"allowed":false,"reason":"Busy\nWATCHDOG=1"}"#;
        let none = RouteChoice::default();
        let plan = plan_create_route(view(open, open, "[64]").as_bytes(), "vps_me", &none);
        assert_eq!(
            plan,
            Ok(CreateRoute {
                pool_id: "ripv6_a".into(),
                prefix_length: 64
            })
        );
        let Err(Blocked::NotAllowed(m)) =
            plan_create_route(view(closed, open, "[64]").as_bytes(), "vps_me", &none)
        else {
            panic!()
        };
        assert_eq!(
            m,
            "pools[0].actions.canCreateRoute (ripv6_a) is not allowed: Busy WATCHDOG=1"
        );
        let Err(Blocked::NotAllowed(m)) =
            plan_create_route(view(open, closed, "[64]").as_bytes(), "vps_me", &none)
        else {
            panic!()
        };
        assert!(
            m.starts_with("destinations[0].actions.canReceiveRoute"),
            "{m}"
        );
        // A missing gate is a closed one.
        let Err(Blocked::NotAllowed(m)) =
            plan_create_route(view("null", open, "[64]").as_bytes(), "vps_me", &none)
        else {
            panic!()
        };
        assert!(m.contains("is missing"), "{m}");
        let Err(Blocked::NotAllowed(m)) =
            plan_create_route(view(open, open, "[48,56,64]").as_bytes(), "vps_me", &none)
        else {
            panic!()
        };
        assert!(m.contains("set provider.prefix_length"), "{m}");
        let choice = RouteChoice {
            pool: Some("ripv6_a".into()),
            prefix_length: Some(56),
        };
        let plan = plan_create_route(view(open, open, "[48,56,64]").as_bytes(), "vps_me", &choice);
        assert_eq!(plan.unwrap().prefix_length, 56);
        let other = RouteChoice {
            pool: Some("ripv6_b".into()),
            ..choice
        };
        assert!(matches!(
            plan_create_route(view(open, open, "[56]").as_bytes(), "vps_me", &other),
            Err(Blocked::NotAllowed(_))
        ));
        assert!(matches!(
            plan_create_route(view(open, open, "[64]").as_bytes(), "vps_nobody", &none),
            Err(Blocked::NotAllowed(_))
        ));
        assert!(matches!(
            plan_create_route(b"[]", "vps_me", &none),
            Err(Blocked::Invalid(_))
        ));
        // Release names only this VPS's route; the other's closed gate is not ours.
        assert_eq!(
            plan_delete_routes(view(open, open, "[64]").as_bytes(), "vps_me"),
            Ok(vec!["ripv6rt_1".to_string()])
        );
        let Err(Blocked::NotAllowed(m)) =
            plan_delete_routes(view(open, open, "[64]").as_bytes(), "vps_other")
        else {
            panic!()
        };
        assert_eq!(
            m,
            "pools[0].routes[1].actions.canDelete (ripv6rt_2) is not allowed: no"
        );
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
