//! DigitalOcean Reserved IPv6 (docs/PROVIDERS.md §3). DigitalOcean routes a reserved
//! IPv6 to the droplet's own public address; nothing on the droplet is configured for
//! it. routed6d reads which reserved IPv6 addresses are assigned to this droplet and
//! places each as a /128 on `prefix.interface` (an `Assignment` entry without a next
//! hop). The droplet id comes from the config or the metadata service.
//!
//! Writes happen only with `claim = true`: an unassigned configured address is
//! assigned to this droplet (`POST …/actions {"type":"assign"}`, then the action is
//! polled until `completed` or `errored`), and `routed6d release` unassigns.
//!
//! Parsing follows what the OpenAPI spec and godo's tests send: `reserved_at` and
//! `region_slug` may be missing, `droplet` may be null or `{"id": N}` only, action
//! types come back as `assign_ip`/`unassign_ip`, metadata addresses come upper-case and
//! fully expanded, `droplet_id` is an integer or a string.
//!
//! The embedded `droplet` "requires droplet:read scope" (the spec): an answer without
//! the key does not say where the address is, which is not "unassigned". Such an
//! address is checked against the metadata service's `reserved_ip.ipv6` (the one
//! reserved IPv6 DigitalOcean reports for this droplet; routed6d already asks the
//! metadata service for the droplet id). One still unknown after that fails the poll
//! with the missing scope named: it is never withdrawn and never claimed (issue 14).

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::hostup::parse_json;
use super::http::{Auth, HttpClient, HttpResponse};
use super::{Provider, ProviderError, Release, WarnOnce};
use crate::config::{BaseUrl, DigitalOceanSettings, Secret};
use crate::model::{Assignment, RoutedPrefix};

/// DigitalOcean's largest page.
pub const PER_PAGE: u32 = 200;
/// A list longer than this many pages is a loop or a fault, not an account.
const MAX_PAGES: u64 = 50;
/// How often an action is polled, and for how long at most.
pub const ACTION_POLL: Duration = Duration::from_secs(2);
pub const ACTION_TIMEOUT: Duration = Duration::from_secs(120);

/// A droplet and its reserved IPv6 addresses at DigitalOcean.
#[derive(Debug)]
pub struct DigitalOcean {
    http: HttpClient,
    base: BaseUrl,
    metadata: BaseUrl,
    token: Secret,
    droplet_id: Option<u64>,
    /// `provider.reserved_ipv6`; empty: every address assigned to this droplet.
    configured: Vec<Ipv6Addr>,
    claim: bool,
    /// Configured addresses that were unassigned at the last fetch (claim candidates).
    unassigned: Vec<Ipv6Addr>,
    /// This droplet's region (from the metadata service), once read: a claim is only
    /// asked for an address reserved in it.
    region: Option<String>,
    /// How often and how long an action is polled (tests make these short).
    pub action_poll: Duration,
    pub action_timeout: Duration,
    /// Oddities of the answers, each logged once.
    warned: WarnOnce,
}

/// One reserved IPv6 as the API describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reserved {
    pub ip: Ipv6Addr,
    pub holder: Holder,
    pub region: Option<String>,
}

/// Which droplet holds a reserved IPv6, as far as the answer says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// `droplet: null`.
    Unassigned,
    /// `droplet: {"id": N, …}`.
    Droplet(u64),
    /// No `droplet` key: the token lacks droplet:read, and the answer does not say.
    Unknown,
}

/// The scope DigitalOcean needs to embed the droplet in a reserved IPv6.
pub const DROPLET_SCOPE: &str = "droplet:read";

/// One page of `GET /v2/reserved_ipv6`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<Reserved>,
    /// The `page` number `links.pages.next` points at.
    pub next_page: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionStatus {
    InProgress,
    Completed,
    Errored,
}

/// An action (`{action:{id, status, type, …}}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    pub id: u64,
    pub status: ActionStatus,
    /// `assign_ip`/`unassign_ip` (or `assign`/`unassign`), as sent.
    pub kind: String,
}

/// What `/metadata/v1.json` tells routed6d.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DropletMetadata {
    pub droplet_id: Option<u64>,
    /// `interfaces.public[0].ipv6.ip_address` when it is an IPv6 address.
    pub public_ipv6: Option<Ipv6Addr>,
    pub public_ipv6_gateway: Option<Ipv6Addr>,
    /// `reserved_ip.ipv6.ip_address` when `active` is true.
    pub reserved_ipv6: Option<Ipv6Addr>,
    /// `region`: the droplet's region slug.
    pub region: Option<String>,
}

impl DigitalOcean {
    pub fn new(config: &DigitalOceanSettings, token: Secret) -> Result<Self, ProviderError> {
        Ok(Self::with_http(HttpClient::new()?, config, token))
    }

    pub fn with_http(http: HttpClient, config: &DigitalOceanSettings, token: Secret) -> Self {
        DigitalOcean {
            http,
            base: config.api.base_url.clone(),
            metadata: config.metadata_url.clone(),
            token,
            droplet_id: config.droplet_id,
            configured: config.reserved_ipv6.clone(),
            claim: config.claim,
            unassigned: Vec::new(),
            region: None,
            action_poll: ACTION_POLL,
            action_timeout: ACTION_TIMEOUT,
            warned: WarnOnce::default(),
        }
    }

    pub fn droplet_id(&self) -> Option<u64> {
        self.droplet_id
    }

    fn droplet(&self) -> Result<u64, ProviderError> {
        self.droplet_id
            .ok_or_else(|| ProviderError::NotFound("this droplet's id is not known yet".into()))
    }

    async fn get(&self, path_and_query: &str) -> Result<HttpResponse, ProviderError> {
        let mut url = self.base.join(path_and_query);
        if let Some((path, query)) = path_and_query.split_once('?') {
            url = self.base.join(path);
            url.set_query(Some(query));
        }
        self.http
            .send(Method::GET, url, Auth::Bearer(&self.token), None)
            .await
    }

    /// Every reserved IPv6 this poll looks at: the configured ones, or the account's.
    async fn read_all(&mut self) -> Result<Vec<Reserved>, ProviderError> {
        if !self.configured.is_empty() {
            let mut items = Vec::new();
            for ip in &self.configured {
                let response = match self.get(&format!("/v2/reserved_ipv6/{ip}")).await {
                    Ok(response) => response,
                    // DigitalOcean's own "no such reserved IPv6": this address is gone
                    // (released from the account) and is withdrawn, while the others
                    // go on (issue 14, item 6). Any other failure fails the poll.
                    Err(error) if is_not_found(&error) => {
                        self.warned.warn(
                            "DigitalOcean",
                            vec![format!(
                                "reserved IPv6 {ip} does not exist (HTTP 404 not_found): it is not routed here"
                            )],
                        );
                        continue;
                    }
                    Err(error) => return Err(error),
                };
                let item = reserved_from_get(&response.body).map_err(|m| response.invalid(m))?;
                if item.ip != *ip {
                    return Err(
                        response.invalid(format!("asked for reserved IPv6 {ip}, got {}", item.ip))
                    );
                }
                items.push(item);
            }
            return Ok(items);
        }
        let mut items = Vec::new();
        let mut page = 1u64;
        loop {
            let response = self
                .get(&format!(
                    "/v2/reserved_ipv6?page={page}&per_page={PER_PAGE}"
                ))
                .await?;
            let parsed = reserved_page(&response.body).map_err(|m| response.invalid(m))?;
            // DigitalOcean never answers more than it was asked for.
            if parsed.items.len() > PER_PAGE as usize {
                return Err(response.invalid(format!(
                    "page {page} holds {} reserved IPv6 addresses, more than the per_page={PER_PAGE} asked for",
                    parsed.items.len()
                )));
            }
            items.extend(parsed.items);
            match parsed.next_page {
                Some(next) if next > page && next <= MAX_PAGES => page = next,
                Some(next) if next <= page => {
                    return Err(response.invalid(format!(
                        "links.pages.next points back to page {next} from page {page}"
                    )));
                }
                Some(_) => {
                    return Err(response.invalid(format!(
                        "more than {MAX_PAGES} pages of reserved IPv6 addresses"
                    )));
                }
                None => return Ok(items),
            }
        }
    }

    /// `/metadata/v1.json`: this droplet as the metadata service describes it.
    async fn metadata(&self) -> Result<DropletMetadata, ProviderError> {
        let url = self.metadata.join("/metadata/v1.json");
        let response = self.http.send(Method::GET, url, Auth::None, None).await?;
        metadata_from_json(&response.body).map_err(|m| response.invalid(m))
    }

    /// Settle the addresses whose holder the answer left unknown (no `droplet` key)
    /// with the metadata service, or fail the poll naming the missing scope.
    async fn resolve_unknown(
        &self,
        droplet: u64,
        items: &mut [Reserved],
    ) -> Result<(), ProviderError> {
        if items.iter().all(|r| r.holder != Holder::Unknown) {
            return Ok(());
        }
        let metadata = self.metadata().await;
        if let Err(e) = &metadata {
            tracing::debug!("the metadata service cannot settle unknown reserved IPv6: {e}");
        }
        let unknown = resolve_with_metadata(droplet, items, metadata.ok().as_ref());
        if unknown.is_empty() {
            return Ok(());
        }
        let ips: Vec<String> = unknown.iter().map(Ipv6Addr::to_string).collect();
        Err(ProviderError::Invalid {
            url: super::http::display_url(&self.base.join("/v2/reserved_ipv6")),
            message: format!(
                "DigitalOcean does not say which droplet holds reserved IPv6 {} (no droplet key: the token lacks the {DROPLET_SCOPE} scope); nothing is added, withdrawn or claimed until it does",
                ips.join(", ")
            ),
            request_id: None,
        })
    }

    /// The claim candidates among `items`: unassigned, and reserved in this droplet's
    /// region where both regions are known (DigitalOcean assigns an address only to a
    /// droplet of its region; asking anyway fails every poll).
    async fn claimable(&mut self, items: &[Reserved]) -> Vec<Ipv6Addr> {
        let unassigned: Vec<&Reserved> = items
            .iter()
            .filter(|r| r.holder == Holder::Unassigned)
            .collect();
        if unassigned.is_empty() {
            return Vec::new();
        }
        if self.region.is_none() {
            match self.metadata().await {
                Ok(m) => self.region = m.region,
                Err(e) => tracing::debug!("cannot read this droplet's region: {e}"),
            }
        }
        let (claim, refused) = split_by_region(&unassigned, self.region.as_deref());
        self.warned.warn("DigitalOcean", refused);
        claim
    }

    /// POST an action for `ip` and wait for it to finish.
    async fn act(&self, ip: Ipv6Addr, body: Value, what: &str) -> Result<(), ProviderError> {
        let url = self.base.join(&format!("/v2/reserved_ipv6/{ip}/actions"));
        let response = self
            .http
            .send(Method::POST, url, Auth::Bearer(&self.token), Some(&body))
            .await?;
        let mut action = action_from_body(&response.body).map_err(|m| response.invalid(m))?;
        tracing::info!(RESERVED_IP = %ip, ACTION = action.id, "DigitalOcean: {what} {ip} (action {})", action.id);
        let started = tokio::time::Instant::now();
        loop {
            match action.status {
                ActionStatus::Completed => return Ok(()),
                ActionStatus::Errored => {
                    return Err(ProviderError::ActionFailed(format!(
                        "DigitalOcean action {} ({what} {ip}) errored",
                        action.id
                    )));
                }
                ActionStatus::InProgress if started.elapsed() >= self.action_timeout => {
                    return Err(ProviderError::ActionFailed(format!(
                        "DigitalOcean action {} ({what} {ip}) still in progress after {}s",
                        action.id,
                        self.action_timeout.as_secs()
                    )));
                }
                ActionStatus::InProgress => {}
            }
            tokio::time::sleep(self.action_poll).await;
            let response = self.get(&format!("/v2/actions/{}", action.id)).await?;
            action = action_from_body(&response.body).map_err(|m| response.invalid(m))?;
        }
    }
}

impl Provider for DigitalOcean {
    fn host_id(&self) -> Option<String> {
        self.droplet_id.map(|id| format!("droplet {id}"))
    }
    fn needs_identity(&self) -> bool {
        self.droplet_id.is_none()
    }
    fn wants_allocation(&self, _assignment: &Assignment) -> bool {
        !self.unassigned.is_empty()
    }
    fn missing_what(&self) -> String {
        let ips: Vec<String> = self.unassigned.iter().map(Ipv6Addr::to_string).collect();
        format!("reserved IPv6 {} unassigned (claim = true)", ips.join(", "))
    }

    /// Ask the metadata service which droplet this is: `/metadata/v1/id`, or
    /// `/metadata/v1.json` when that fails.
    async fn identify(&mut self, _uplink_ips: &[IpAddr]) -> Result<(), ProviderError> {
        let first = self
            .http
            .send(
                Method::GET,
                self.metadata.join("/metadata/v1/id"),
                Auth::None,
                None,
            )
            .await
            .and_then(|r| droplet_id_from_text(&r.body).map_err(|m| r.invalid(m)));
        let id = match first {
            Ok(id) => id,
            Err(error) => {
                let url = self.metadata.join("/metadata/v1.json");
                let response = self
                    .http
                    .send(Method::GET, url, Auth::None, None)
                    .await
                    .map_err(|_| error)?;
                let metadata =
                    metadata_from_json(&response.body).map_err(|m| response.invalid(m))?;
                metadata
                    .droplet_id
                    .ok_or_else(|| response.invalid("the metadata has no droplet_id"))?
            }
        };
        tracing::info!(
            droplet_id = id,
            "found this droplet's id in the metadata service"
        );
        self.droplet_id = Some(id);
        Ok(())
    }

    async fn fetch(&mut self) -> Result<Assignment, ProviderError> {
        let droplet = self.droplet()?;
        let mut items = self.read_all().await?;
        self.resolve_unknown(droplet, &mut items).await?;
        self.unassigned = if self.claim {
            self.claimable(&items).await
        } else {
            Vec::new()
        };
        for item in &items {
            if let Holder::Droplet(other) = item.holder
                && other != droplet
                && self.configured.contains(&item.ip)
            {
                tracing::debug!(
                    "reserved IPv6 {} is assigned to droplet {other}, not this one",
                    item.ip
                );
            }
        }
        assignment_for(droplet, &items).map_err(|message| ProviderError::Invalid {
            url: super::http::display_url(&self.base.join("/v2/reserved_ipv6")),
            message,
            request_id: None,
        })
    }

    async fn refresh_next_hop(&mut self) -> Result<Assignment, ProviderError> {
        Err(ProviderError::Unsupported(
            "DigitalOcean routes a reserved IPv6 to the droplet's own address: there is no next hop to refresh".into(),
        ))
    }

    /// Assign every configured, unassigned reserved IPv6 to this droplet, then read again.
    async fn allocate(&mut self) -> Result<Assignment, ProviderError> {
        let droplet = self.droplet()?;
        for ip in self.unassigned.clone() {
            let body = serde_json::json!({ "type": "assign", "droplet_id": droplet });
            self.act(ip, body, &format!("assigning to droplet {droplet}"))
                .await?;
        }
        self.fetch().await
    }

    /// Unassign every reserved IPv6 assigned to this droplet (only with `claim = true`).
    async fn release(&mut self) -> Result<Release, ProviderError> {
        if !self.claim {
            return Err(ProviderError::Unsupported(
                "routed6d writes to DigitalOcean only with provider.claim = true (the token then needs reserved_ip:update); unassign the address in the control panel, or set claim".into(),
            ));
        }
        let assigned = self.fetch().await?;
        let mut released = false;
        for routed in &assigned.prefixes {
            let ip = routed.prefix.network();
            self.act(ip, serde_json::json!({ "type": "unassign" }), "unassigning")
                .await?;
            released = true;
        }
        Ok(Release {
            released,
            ..Release::default()
        })
    }
}

/// The token scopes `settings` need, as `check-config` prints them: without
/// droplet:read DigitalOcean's answers leave out which droplet holds an address.
pub fn scopes_needed(settings: &DigitalOceanSettings) -> String {
    let mut scopes = vec!["reserved_ip:read", DROPLET_SCOPE];
    if settings.claim {
        scopes.extend(["reserved_ip:update", "actions:read"]);
    }
    format!(
        "the DigitalOcean token needs {} ({DROPLET_SCOPE}: without it the answers do not say which droplet holds a reserved IPv6, and routed6d changes nothing it cannot settle)",
        scopes.join(", ")
    )
}

/// DigitalOcean's 404 for a resource that does not exist: its error document's `id` is
/// `not_found`. A 404 without it (a proxy, a wrong base URL) is an ordinary failure.
fn is_not_found(error: &ProviderError) -> bool {
    matches!(
        error,
        ProviderError::Status { status: 404, code: Some(code), .. } if code == "not_found"
    )
}

// ---------------------------------------------------------------------------------------
// The pure part.

/// An address as DigitalOcean writes it (any case, fully expanded or not).
fn parse_ip(field: &str, value: Option<&Value>) -> Result<Ipv6Addr, String> {
    let text = value
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{field} is missing or not a string"))?;
    let addr: Ipv6Addr = text
        .trim()
        .parse()
        .map_err(|_| format!("{field} {text:?} is not an IPv6 address"))?;
    // Only what can never be an address at all is refused while reading the list: an
    // unusable one assigned elsewhere is not this droplet's business, and one assigned
    // here refuses the whole answer in `assignment_for`.
    if let Some(kind) = crate::rules::non_global_kind(addr) {
        return Err(format!("{field} {addr} is {kind}, not a reserved IPv6"));
    }
    Ok(addr)
}

/// A positive integer, or a string holding one.
fn id_of(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|id| *id > 0)
}

/// One reserved IPv6 object.
fn reserved_from_value(value: &Value, field: &str) -> Result<Reserved, String> {
    let object = value
        .as_object()
        .ok_or_else(|| format!("{field} is not an object"))?;
    let ip = parse_ip(&format!("{field}.ip"), object.get("ip"))?;
    let holder = match object.get("droplet") {
        None => Holder::Unknown,
        Some(Value::Null) => Holder::Unassigned,
        Some(Value::Object(droplet)) => Holder::Droplet(
            droplet
                .get("id")
                .and_then(id_of)
                .ok_or_else(|| format!("{field}.droplet has no integer id"))?,
        ),
        Some(other) => {
            return Err(format!(
                "{field}.droplet is neither an object nor null: {other}"
            ));
        }
    };
    let region = object
        .get("region_slug")
        .and_then(Value::as_str)
        .or_else(|| object.get("region")?.get("slug")?.as_str())
        .map(crate::rules::provider_text);
    Ok(Reserved { ip, holder, region })
}

/// `GET /v2/reserved_ipv6/{ip}` (and the create answer): `{reserved_ipv6: {…}}`.
pub fn reserved_from_get(body: &[u8]) -> Result<Reserved, String> {
    let value: Value = parse_json(body, "a DigitalOcean reserved IPv6 answer")?;
    let item = value
        .get("reserved_ipv6")
        .ok_or("no reserved_ipv6 object in the answer")?;
    reserved_from_value(item, "reserved_ipv6")
}

/// `GET /v2/reserved_ipv6`: `{reserved_ipv6s: […], links: {pages: {next}}, meta}`.
pub fn reserved_page(body: &[u8]) -> Result<Page, String> {
    let value: Value = parse_json(body, "a DigitalOcean reserved IPv6 list")?;
    let list = value
        .get("reserved_ipv6s")
        .and_then(Value::as_array)
        .ok_or("no reserved_ipv6s array in the list")?;
    let items = list
        .iter()
        .enumerate()
        .map(|(i, item)| reserved_from_value(item, &format!("reserved_ipv6s[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let next_page = match value.pointer("/links/pages/next") {
        None | Some(Value::Null) => None,
        Some(Value::String(next)) => Some(page_number(next)?),
        Some(other) => return Err(format!("links.pages.next is not a URL: {other}")),
    };
    Ok(Page { items, next_page })
}

/// The `page` query parameter of a `links.pages.next` URL. Only the number is used:
/// the token never follows a URL from an answer to another host.
fn page_number(next: &str) -> Result<u64, String> {
    let url =
        reqwest::Url::parse(next).map_err(|_| format!("links.pages.next {next:?} is not a URL"))?;
    url.query_pairs()
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .filter(|p| *p >= 1)
        .ok_or_else(|| format!("links.pages.next {next:?} has no page number"))
}

/// An action answer (`POST …/actions` 201, `GET /v2/actions/{id}`).
pub fn action_from_body(body: &[u8]) -> Result<Action, String> {
    let value: Value = parse_json(body, "a DigitalOcean action")?;
    let action = value
        .get("action")
        .and_then(Value::as_object)
        .ok_or("no action object in the answer")?;
    let id = action
        .get("id")
        .and_then(id_of)
        .ok_or("action.id is missing or not a positive integer")?;
    let status = match action.get("status").and_then(Value::as_str) {
        Some("in-progress") => ActionStatus::InProgress,
        Some("completed") => ActionStatus::Completed,
        Some("errored") => ActionStatus::Errored,
        Some(other) => {
            return Err(format!(
                "action.status {other:?} is not in-progress, completed or errored"
            ));
        }
        None => return Err("action.status is missing".into()),
    };
    let kind = action
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !matches!(
        kind.as_str(),
        "assign" | "assign_ip" | "unassign" | "unassign_ip"
    ) {
        return Err(format!(
            "action.type {kind:?} is not an assign or unassign action"
        ));
    }
    Ok(Action { id, status, kind })
}

/// `/metadata/v1/id`: the droplet id as text.
pub fn droplet_id_from_text(body: &[u8]) -> Result<u64, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the droplet id is not text".to_string())?;
    let trimmed = text.trim();
    trimmed
        .parse::<u64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            let shown: String = trimmed.chars().take(40).collect();
            format!("{shown:?} is not a droplet id (a positive integer)")
        })
}

/// `/metadata/v1.json`. Addresses that are not IPv6 (the go-metadata sample puts IPv4
/// values in the ipv6 fields) are left out rather than refusing the document.
pub fn metadata_from_json(body: &[u8]) -> Result<DropletMetadata, String> {
    let value: Value = parse_json(body, "a droplet metadata document")?;
    let droplet_id = match value.get("droplet_id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(id_of(v).ok_or_else(|| format!("droplet_id {v} is not a droplet id"))?),
    };
    let ipv6 = |pointer: &str| {
        value
            .pointer(pointer)
            .and_then(Value::as_str)
            .and_then(|t| t.trim().parse::<Ipv6Addr>().ok())
    };
    let reserved_active = value
        .pointer("/reserved_ip/ipv6/active")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(DropletMetadata {
        droplet_id,
        public_ipv6: ipv6("/interfaces/public/0/ipv6/ip_address"),
        public_ipv6_gateway: ipv6("/interfaces/public/0/ipv6/gateway"),
        reserved_ipv6: ipv6("/reserved_ip/ipv6/ip_address").filter(|_| reserved_active),
        region: value
            .get("region")
            .and_then(Value::as_str)
            .map(crate::rules::provider_text)
            .filter(|r| !r.is_empty()),
    })
}

/// Settle unknown holders with the metadata service, which describes this droplet: the
/// address it names as this droplet's active reserved IPv6 is held here. Returns the
/// addresses still unknown. Metadata for another droplet (a `droplet_id` configured
/// for some other droplet) settles nothing.
pub fn resolve_with_metadata(
    droplet: u64,
    items: &mut [Reserved],
    metadata: Option<&DropletMetadata>,
) -> Vec<Ipv6Addr> {
    let here = metadata
        .filter(|m| m.droplet_id.is_none_or(|id| id == droplet))
        .and_then(|m| m.reserved_ipv6);
    let mut unknown = Vec::new();
    for item in items.iter_mut().filter(|r| r.holder == Holder::Unknown) {
        if Some(item.ip) == here {
            item.holder = Holder::Droplet(droplet);
        } else {
            unknown.push(item.ip);
        }
    }
    unknown
}

/// Unassigned addresses split into those a claim may ask for and one line for each
/// refused because it is reserved in another region than this droplet's. Unknown
/// regions refuse nothing: DigitalOcean itself has the last word.
pub fn split_by_region(
    unassigned: &[&Reserved],
    droplet_region: Option<&str>,
) -> (Vec<Ipv6Addr>, Vec<String>) {
    let mut claim = Vec::new();
    let mut refused = Vec::new();
    for item in unassigned {
        match (item.region.as_deref(), droplet_region) {
            (Some(theirs), Some(ours)) if theirs != ours => refused.push(format!(
                "not claiming reserved IPv6 {}: it is reserved in region {theirs} and this droplet is in {ours}",
                item.ip
            )),
            _ => claim.push(item.ip),
        }
    }
    (claim, refused)
}

/// The reserved IPv6 addresses assigned to `droplet`, as /128s without a next hop.
pub fn assignment_for(droplet: u64, items: &[Reserved]) -> Result<Assignment, String> {
    let mut prefixes: Vec<RoutedPrefix> = Vec::new();
    for item in items
        .iter()
        .filter(|r| r.holder == Holder::Droplet(droplet))
    {
        crate::rules::check_reserved("a reserved_ipv6 assigned to this droplet,", item.ip)?;
        let prefix = ipnet::Ipv6Net::new(item.ip, 128).expect("128 is a valid length");
        if prefixes.iter().any(|p| p.prefix == prefix) {
            continue;
        }
        prefixes.push(RoutedPrefix {
            workload: None,
            prefix,
            next_hop: None,
            origin: format!("reserved_ipv6 {}", item.ip),
        });
        // Checked as they come, which also bounds the duplicate search above.
        crate::rules::check_prefix_count(
            "the reserved IPv6 of this droplet",
            prefixes.len(),
            crate::rules::MAX_PREFIXES_LIMIT,
        )?;
    }
    Ok(Assignment {
        prefixes,
        unavailable: None,
        suggested_next_hop: None,
    })
}
