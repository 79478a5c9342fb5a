//! A simulated provider for tests, `routed6d-demo` and end-to-end runs: HostUp API v2
//! (docs/PROVIDERS.md §1, per-VPS and account view), HostUp's legacy API (§2,
//! `legacy.rs`) and DigitalOcean's Reserved IPv6 API with the droplet metadata service
//! (§3, `digitalocean.rs`), with their shapes, auth and error documents, plus controls
//! to change the provider's side (allocations, account routes, next hops, reserved IPv6
//! assignments, availability) and to inject faults (error statuses, 429s, broken bodies,
//! delays, hangs, dropped connections) into any of them alike.
//!
//! The caller binds the listener (the demo binds it inside another network namespace),
//! `serve` runs the accept loop on the current tokio runtime and returns a `SimHandle`.
//!
//! # API served (auth: `Authorization: Bearer <token>`)
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/api/v2/vps?primaryIp=<ip>&name=<name>` | `{"data":[{"id","name","primaryIp","status"}],"nextCursor":null}` |
//! | GET | `/api/v2/vps/{id}/routed-ipv6` | per-VPS state |
//! | POST | `/api/v2/vps/{id}/routed-ipv6` | no body, `{}` or `{"action":"allocate"}`: 201 + `created:true` when it allocated, 200 when one existed; `{"action":"refresh_next_hop"}`: `allocation.nextHop = suggestedNextHop`, 200 |
//! | DELETE | `/api/v2/vps/{id}/routed-ipv6` | `{"released","cooldownDays","cooldownUntil","allocation"}` (status `cooldown`); afterwards GET shows `allocation: null` |
//! | GET | `/api/v2/routed-ipv6` | account view: pool `ripv6_simpool` with a route per active allocation, plus the extra pools of `SimState::account_routes`; a destination per VPS |
//! | POST | `/api/v2/routed-ipv6` | `{"action":"create_route","poolId","vpsId","prefixLength"}` (optional `prefix`, `label`): carves the first free child of `prefixLength` from the pool (or takes `prefix`), routed to the destination's `nextHop`; 201 + the whole account view. `{"action":"allocate_pool"}`: 409 `pool_exists` (the sim's account always has its /48) |
//! | DELETE | `/api/v2/routed-ipv6/routes/{id}` | deletes one route of `SimState::account_routes` or one per-VPS allocation shown as a route; 200 + the whole account view |
//!
//! The legacy API (`X-API-Key`) and DigitalOcean (`Bearer`, same token) are documented
//! in `legacy.rs` and `digitalocean.rs`; their errors and 429s take their own shapes.
//!
//! Missing or wrong token: 401 `unauthorized`; unknown VPS: 404 `vps_not_found`; bad body
//! or action: 400 `invalid_request` with `errors[]`; unknown path: 404 `not_found`; other
//! methods: 405 `method_not_allowed`. Every problem document has type, title, status,
//! detail, code, instance, requestId and timestamp, content type
//! `application/problem+json`; every answer carries `X-Request-Id`.
//!
//! Inferred behaviour (the docs do not say): allocate on an unavailable VPS answers 200
//! with the state (allocation null); allocate with no suggested next hop uses the pool's
//! `::1`. Where two readings are as plausible, the sim serves both, switched in
//! `SimState`: DELETE without an active allocation answers 200 `released:false`, or
//! with `release_none_problem` a 404 `allocation_not_found` problem; the cooldown after
//! a release is reported and does not block a new allocation, or with
//! `cooldown_refuses_allocate` an allocate inside it answers a 409 `cooldown_active`
//! problem. The legacy API follows the same switches.
//!
//! Account writes, inferred where the docs are silent: a write the view's `actions`
//! forbid answers 409 `action_not_allowed` with the action's `reason` as `detail` (the
//! docs only say to gate on `actions`); an unknown pool 404 `pool_not_found`, an unknown
//! route 404 `route_not_found`, an unknown VPS 404 `vps_not_found`; a `prefixLength` not
//! in `allowedPrefixLengths`, a `prefix` outside the pool or of another length 400
//! `invalid_request` with `errors[]`; a pool with no free child (or a `prefix` already
//! routed) 409 `prefix_unavailable`; the DELETE of a route answers 200 with the whole
//! account view (documented only for the POST); the server's first free child skips a
//! child that would contain its own next hop; a route carved from `ripv6_simpool` is
//! listed in that pool. `SimState::create_route_denied` closes a pool's
//! `canCreateRoute`, `SimRoute::delete_denied` a route's `canDelete`, and a VPS that is
//! not `available` has `canReceiveRoute` closed with its `reason`.
//!
//! # Control API (no auth, JSON; for a sim in another process, e.g. driven by curl)
//!
//! | method | path | body |
//! |---|---|---|
//! | GET | `/_sim/state` | – (all VPSes, faults) |
//! | POST | `/_sim/vps` | `{"id","name","primaryIp","suggestedNextHop"?,"available"?,"reason"?}` add or replace a VPS |
//! | POST | `/_sim/vps/{id}/allocation` | `{"prefix":"2001:db8:42:100::/64","nextHop":"2001:db8:42::1"}` |
//! | DELETE | `/_sim/vps/{id}/allocation` | – |
//! | POST | `/_sim/vps/{id}/next-hop` | `{"nextHop":"…"}` (the provider changed its routing) |
//! | POST | `/_sim/vps/{id}/suggested-next-hop` | `{"suggestedNextHop":"…"|null}` |
//! | POST | `/_sim/vps/{id}/available` | `{"available":false,"reason":"…"}` |
//! | POST | `/_sim/fault` | `{"fault":F,"times":N}` (next N API requests) or `{"fault":F,"sticky":true}` |
//! | DELETE | `/_sim/fault` | – clear queued and sticky faults |
//! | GET | `/_sim/requests` | – `[{"method","path","query","atMs"}]` API requests so far |
//! | DELETE | `/_sim/requests` | – forget them |
//! | POST | `/_sim/account-routes` | `{"id","poolId","poolCidr","prefix","nextHop","label"?,"vpsId","status"?}` add or replace an account route |
//! | DELETE | `/_sim/account-routes/{id}` | – |
//! | POST | `/_sim/legacy-vms` | `{"vmid":10048,"vpsId":"vps_…"}` the legacy API's VM id for a VPS |
//! | POST | `/_sim/digitalocean/droplets` | `{"id":N,"name","publicIpv6"?}` |
//! | POST | `/_sim/digitalocean/reserved` | `{"ip","dropletId":N|null,"region"?}` add or (re)assign a reserved IPv6 |
//! | POST | `/_sim/digitalocean/metadata` | `{"dropletId":N|null}` the droplet the metadata service describes |
//!
//! A fault `F` is one of `{"kind":"status","status":503,"code":"service_unavailable"}`,
//! `{"kind":"rateLimited"}` (no Retry-After), `{"kind":"rateLimited","retryAfter":{"seconds":5}}`,
//! `{"kind":"rateLimited","retryAfter":{"dateIn":5}}` (HTTP date 5 s ahead),
//! `{"kind":"body","status":200,"body":"{\"avail"}`, `{"kind":"hugeBody","bytes":10485760}`,
//! `{"kind":"delay","ms":500}`, `{"kind":"hang"}`, `{"kind":"close"}`. Faults apply to
//! every API request (`/api/`, `/v2/`, `/metadata/`; not `/_sim/`), before
//! authentication, and a delay then answers normally. `SimHandle::push_write_fault`
//! queues faults for writes only (POST, DELETE), taken before the others: a poll's
//! read answers while the allocate after it fails.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;

mod digitalocean;
mod legacy;

pub use digitalocean::{
    ActionBody, ReserveBody, SimAction, SimDigitalOcean, SimDroplet, SimReserved, parse_action_body,
};

/// Largest request body the sim reads (control and API bodies are tiny).
const MAX_REQUEST_BODY: usize = 64 * 1024;
/// How long a "hang" fault holds a request: longer than any client timeout.
const HANG: Duration = Duration::from_secs(3600);

/// Errors of the sim's controls.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("no VPS {0} in the simulation")]
    UnknownVps(String),
    #[error("{0}")]
    Invalid(String),
    /// Not an error of the caller: makes hyper drop the connection without answering.
    #[error("connection closed on purpose (fault injection)")]
    Closed,
}

/// The simulated provider's data.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimState {
    /// The API key the sim accepts.
    #[serde(skip)]
    pub token: String,
    /// The account's /48 pool (`parentCidr`) allocations are carved from.
    pub pool: Ipv6Net,
    /// Length of the prefixes `allocate` hands out.
    pub prefix_length: u8,
    pub cooldown_days: u64,
    pub vpses: BTreeMap<String, SimVps>,
    /// Routes of the account view beyond the per-VPS allocations (other pools, /48s,
    /// /56s, labelled routes), as `GET /api/v2/routed-ipv6` shows them.
    pub account_routes: Vec<SimRoute>,
    /// Legacy API: VM id → the VPS it is (the legacy and v2 APIs share the data).
    pub legacy_vms: BTreeMap<u64, String>,
    /// Legacy API: write `prefix` with host bits set, as the documentation's example
    /// does (`2001:db8::1/48`).
    pub legacy_host_bits: bool,
    /// Legacy API: `refresh_next_hop` for a VM without an active allocation answers a
    /// 404 problem (the documented schema has no null allocation) instead of
    /// `allocation: null`. The documentation does not say which; both are served.
    pub legacy_refresh_problem: bool,
    /// Allocate during a release's cooldown (`SimVps::cooldown_until` set) is refused
    /// with a 409 `cooldown_active` (v2 problem, legacy error) instead of allocating.
    /// The documentation says a release "starts a cooldown before another allocation
    /// can be made" but not what an allocate inside it answers; both are served.
    pub cooldown_refuses_allocate: bool,
    /// A release with nothing allocated answers a 404 `allocation_not_found` (v2
    /// problem, legacy error) instead of 200 `released: false`. The documentation
    /// shows only the 200 of a release that released; both are served.
    pub release_none_problem: bool,
    /// DigitalOcean's side.
    pub digitalocean: SimDigitalOcean,
    /// Pools (by id) whose `actions.canCreateRoute` is closed, with the reason shown.
    pub create_route_denied: BTreeMap<String, String>,
}

/// The id of the account's own pool, `SimState::pool`.
pub const SIM_POOL: &str = "ripv6_simpool";

/// A route in the account view (`pools[].routes[]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimRoute {
    /// `ripv6rt_…`
    pub id: String,
    /// The pool it is carved from (`ripv6_…`) and that pool's /48.
    pub pool_id: String,
    pub pool_cidr: Ipv6Net,
    pub prefix: Ipv6Net,
    pub next_hop: Ipv6Addr,
    #[serde(default)]
    pub label: Option<String>,
    pub vps_id: String,
    /// "active" routes are routed by the provider's router.
    #[serde(default = "active")]
    pub status: String,
    /// Set: `actions.canDelete` is closed with this reason.
    #[serde(default)]
    pub delete_denied: Option<String>,
}

fn active() -> String {
    "active".into()
}

impl SimRoute {
    /// An active route of `vps_id` in pool `pool_id` (`pool_cidr`).
    pub fn new(
        id: &str,
        pool: (&str, Ipv6Net),
        prefix: Ipv6Net,
        next_hop: Ipv6Addr,
        label: Option<&str>,
        vps_id: &str,
    ) -> Self {
        SimRoute {
            id: id.into(),
            pool_id: pool.0.into(),
            pool_cidr: pool.1,
            prefix,
            next_hop,
            label: label.map(str::to_string),
            vps_id: vps_id.into(),
            status: "active".into(),
            delete_denied: None,
        }
    }
}

impl SimState {
    /// An account with pool 2001:db8:42::/48, /64 allocations, 30 days cooldown, no VPS.
    pub fn new(token: impl Into<String>) -> Self {
        SimState {
            token: token.into(),
            pool: "2001:db8:42::/48".parse().expect("constant prefix"),
            prefix_length: 64,
            cooldown_days: 30,
            vpses: BTreeMap::new(),
            account_routes: Vec::new(),
            legacy_vms: BTreeMap::new(),
            legacy_host_bits: false,
            legacy_refresh_problem: false,
            cooldown_refuses_allocate: false,
            release_none_problem: false,
            digitalocean: SimDigitalOcean::default(),
            create_route_denied: BTreeMap::new(),
        }
    }

    /// Every (prefix, next hop) the provider's router forwards: active allocations,
    /// active account routes, and reserved IPv6 addresses assigned to a droplet whose
    /// uplink address is known (routed to that address as a /128).
    pub fn router_table(&self) -> BTreeMap<Ipv6Net, Ipv6Addr> {
        let mut table: BTreeMap<Ipv6Net, Ipv6Addr> = self
            .vpses
            .values()
            .filter_map(SimVps::active_route)
            .collect();
        for route in self.account_routes.iter().filter(|r| r.status == "active") {
            table.insert(route.prefix, route.next_hop);
        }
        table.extend(self.digitalocean.routes());
        table
    }

    pub fn with_vps(mut self, vps: SimVps) -> Self {
        self.vpses.insert(vps.id.clone(), vps);
        self
    }
}

/// One VPS at the simulated provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimVps {
    pub id: String,
    pub name: String,
    pub primary_ip: IpAddr,
    pub available: bool,
    pub reason: Option<String>,
    pub suggested_next_hop: Option<Ipv6Addr>,
    pub allocation: Option<SimAllocation>,
    /// Set by a release.
    pub cooldown_until: Option<String>,
}

impl SimVps {
    /// An available VPS without allocation.
    pub fn new(id: impl Into<String>, name: impl Into<String>, primary_ip: IpAddr) -> Self {
        SimVps {
            id: id.into(),
            name: name.into(),
            primary_ip,
            available: true,
            reason: None,
            suggested_next_hop: None,
            allocation: None,
            cooldown_until: None,
        }
    }

    pub fn with_suggested_next_hop(mut self, next_hop: Ipv6Addr) -> Self {
        self.suggested_next_hop = Some(next_hop);
        self
    }

    /// The (prefix, next hop) the provider's router uses for this VPS now.
    pub fn active_route(&self) -> Option<(Ipv6Net, Ipv6Addr)> {
        self.allocation
            .as_ref()
            .filter(|a| a.status == "active")
            .map(|a| (a.prefix, a.next_hop))
    }
}

/// A routed prefix allocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimAllocation {
    pub id: String,
    pub prefix: Ipv6Net,
    pub prefix_length: u8,
    pub next_hop: Ipv6Addr,
    pub status: String,
    pub allocated_at: String,
    pub released_at: Option<String>,
    pub cooldown_until: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl SimAllocation {
    fn new(id: String, prefix: Ipv6Net, next_hop: Ipv6Addr) -> Self {
        let now = timestamp(SystemTime::now());
        SimAllocation {
            id,
            prefix,
            prefix_length: prefix.prefix_len(),
            next_hop,
            status: "active".into(),
            allocated_at: now.clone(),
            released_at: None,
            cooldown_until: None,
            created_at: now.clone(),
            updated_at: now,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "prefix": self.prefix.to_string(),
            "prefixLength": self.prefix_length,
            "nextHop": self.next_hop.to_string(),
            "status": self.status,
            "allocatedAt": self.allocated_at,
            "releasedAt": self.released_at,
            "cooldownUntil": self.cooldown_until,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        })
    }
}

/// What `Retry-After` a simulated 429 carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RetryAfter {
    /// `Retry-After: <n>`.
    Seconds(u64),
    /// `Retry-After: <HTTP date n seconds from now>`.
    DateIn(u64),
}

/// An injected fault, applied to one API request (or every one, when sticky).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Fault {
    /// An error status with a problem document carrying `code`.
    Status { status: u16, code: String },
    /// 429 `rate_limit_exceeded`, with or without `Retry-After`.
    #[serde(rename_all = "camelCase")]
    RateLimited {
        #[serde(default)]
        retry_after: Option<RetryAfter>,
    },
    /// A raw body instead of the real answer.
    #[serde(rename_all = "camelCase")]
    Body {
        #[serde(default = "status_ok")]
        status: u16,
        body: String,
        #[serde(default)]
        content_type: Option<String>,
    },
    /// A 200 whose body is `bytes` long (sent with Content-Length).
    HugeBody { bytes: usize },
    /// Wait, then answer normally.
    Delay { ms: u64 },
    /// Read the request, never answer.
    Hang,
    /// Read the request, close the connection without answering.
    Close,
}

fn status_ok() -> u16 {
    200
}

impl Fault {
    pub fn status(status: u16, code: &str) -> Self {
        Fault::Status {
            status,
            code: code.into(),
        }
    }
    pub fn rate_limited_seconds(seconds: u64) -> Self {
        Fault::RateLimited {
            retry_after: Some(RetryAfter::Seconds(seconds)),
        }
    }
    pub fn rate_limited_date(seconds_ahead: u64) -> Self {
        Fault::RateLimited {
            retry_after: Some(RetryAfter::DateIn(seconds_ahead)),
        }
    }
    pub fn rate_limited() -> Self {
        Fault::RateLimited { retry_after: None }
    }
    pub fn body(status: u16, body: &str) -> Self {
        Fault::Body {
            status,
            body: body.into(),
            content_type: None,
        }
    }
    /// A state cut off mid-way.
    pub fn truncated_json() -> Self {
        Fault::body(
            200,
            r#"{"available":true,"reason":null,"allocation":{"prefix":"2001:db8:4"#,
        )
    }
    /// Valid JSON, not a state.
    pub fn wrong_shape() -> Self {
        Fault::body(200, r#"[{"available":true,"allocation":null}]"#)
    }
    pub fn empty_ok() -> Self {
        Fault::body(200, "")
    }
    /// 10 MB of body.
    pub fn huge_body() -> Self {
        Fault::HugeBody {
            bytes: 10 * 1024 * 1024,
        }
    }
    pub fn delay(duration: Duration) -> Self {
        Fault::Delay {
            ms: duration.as_millis() as u64,
        }
    }
}

/// One API request the sim received.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    #[serde(skip)]
    pub at: Instant,
    /// Milliseconds since the sim started.
    pub at_ms: u64,
}

/// Called with the new (prefix, next hop) of a VPS whenever it changes (None: no
/// active allocation any more).
pub type RouteHook = Box<dyn Fn(Option<(Ipv6Net, Ipv6Addr)>) + Send + Sync>;

/// Called with the provider router's whole table (`SimState::router_table`) whenever
/// it changes, through any of the APIs or the controls.
pub type TableHook = Box<dyn Fn(&BTreeMap<Ipv6Net, Ipv6Addr>) + Send + Sync>;

struct Inner {
    state: SimState,
    faults: VecDeque<Fault>,
    /// Faults for the next writes (POST, DELETE) only.
    write_faults: VecDeque<Fault>,
    sticky: Option<Fault>,
    log: Vec<RequestRecord>,
    started: Instant,
    next_request: u64,
    next_subnet: u128,
    next_allocation: u64,
}

impl Inner {
    fn routes(&self) -> BTreeMap<String, Option<(Ipv6Net, Ipv6Addr)>> {
        self.state
            .vpses
            .iter()
            .map(|(id, v)| (id.clone(), v.active_route()))
            .collect()
    }

    fn vps_mut(&mut self, id: &str) -> Result<&mut SimVps, SimError> {
        self.state
            .vpses
            .get_mut(id)
            .ok_or_else(|| SimError::UnknownVps(id.to_string()))
    }

    fn request_id(&mut self) -> String {
        self.next_request += 1;
        format!("req_sim{:08}", self.next_request)
    }

    fn take_fault(&mut self, method: &Method) -> Option<Fault> {
        let write = matches!(*method, Method::POST | Method::DELETE);
        write
            .then(|| self.write_faults.pop_front())
            .flatten()
            .or_else(|| self.faults.pop_front())
            .or_else(|| self.sticky.clone())
    }
}

/// A handle on a running sim: cheap to clone, all controls go through it.
#[derive(Clone)]
pub struct SimHandle {
    inner: Arc<Mutex<Inner>>,
    hook: Arc<Mutex<Option<Arc<RouteHook>>>>,
    table_hook: Arc<Mutex<Option<Arc<TableHook>>>>,
    addr: SocketAddr,
    accept: Arc<tokio::task::AbortHandle>,
}

/// Serve the simulated API on `listener` (already bound), on the current tokio runtime.
pub async fn serve(listener: TcpListener, state: SimState) -> std::io::Result<SimHandle> {
    let addr = listener.local_addr()?;
    let inner = Arc::new(Mutex::new(Inner {
        state,
        faults: VecDeque::new(),
        write_faults: VecDeque::new(),
        sticky: None,
        log: Vec::new(),
        started: Instant::now(),
        next_request: 0,
        next_subnet: 0x100,
        next_allocation: 0,
    }));
    let hook = Arc::new(Mutex::new(None));
    let table_hook = Arc::new(Mutex::new(None));
    let sim = Sim {
        inner: inner.clone(),
        hook: hook.clone(),
        table_hook: table_hook.clone(),
    };
    let task = tokio::spawn(accept_loop(listener, sim));
    Ok(SimHandle {
        inner,
        hook,
        table_hook,
        addr,
        accept: Arc::new(task.abort_handle()),
    })
}

/// Bind `addr` (port 0 for any) and serve.
pub async fn start_on(addr: SocketAddr, state: SimState) -> std::io::Result<SimHandle> {
    serve(TcpListener::bind(addr).await?, state).await
}

async fn accept_loop(listener: TcpListener, sim: Sim) {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                let sim = sim.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let sim = sim.clone();
                        async move { sim.handle(req).await }
                    });
                    // Errors here are clients going away and the Close fault: nothing
                    // the sim needs to report.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("sim: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // A panicking test thread must not take every later request down with it.
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

/// Which API a path belongs to: it decides auth and the shape of errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavour {
    HostUp,
    Legacy,
    DigitalOcean,
    Metadata,
}

impl Flavour {
    fn of(path: &str) -> Self {
        if path.starts_with("/api/vm/") {
            Flavour::Legacy
        } else if path.starts_with("/v2/") {
            Flavour::DigitalOcean
        } else if path.starts_with("/metadata/") {
            Flavour::Metadata
        } else {
            Flavour::HostUp
        }
    }
}

/// What the connection tasks share.
#[derive(Clone)]
struct Sim {
    inner: Arc<Mutex<Inner>>,
    hook: Arc<Mutex<Option<Arc<RouteHook>>>>,
    table_hook: Arc<Mutex<Option<Arc<TableHook>>>>,
}

impl Sim {
    /// Run `f` on the state, then tell the hook about every VPS whose route changed.
    /// The hook runs after the lock is released: it may be slow (it runs `ip route`).
    fn mutate<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let (result, changes, table) = {
            let mut inner = lock(&self.inner);
            let before = inner.routes();
            let table_before = inner.state.router_table();
            let result = f(&mut inner);
            let after = inner.routes();
            let table_after = inner.state.router_table();
            let table = (table_after != table_before).then_some(table_after);
            let changes: Vec<Option<(Ipv6Net, Ipv6Addr)>> = after
                .iter()
                .filter(|(id, route)| before.get(*id).cloned().flatten() != **route)
                .map(|(_, route)| *route)
                .chain(
                    before
                        .iter()
                        .filter(|(id, route)| route.is_some() && !after.contains_key(*id))
                        .map(|_| None),
                )
                .collect();
            (result, changes, table)
        };
        if let Some(table) = table {
            let hook = self
                .table_hook
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some(hook) = hook {
                hook(&table);
            }
        }
        if !changes.is_empty() {
            let hook = self.hook.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(hook) = hook {
                for change in changes {
                    hook(change);
                }
            }
        }
        result
    }

    async fn handle(&self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, SimError> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = req.uri().query().map(str::to_string);
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let api_key = req
            .headers()
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = match Limited::new(req.into_body(), MAX_REQUEST_BODY)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                let request_id = lock(&self.inner).request_id();
                return Ok(problem(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "invalid_request",
                    "Request too large",
                    "The request body is too large.",
                    &path,
                    &request_id,
                    None,
                ));
            }
        };
        if let Some(rest) = path.strip_prefix("/_sim/") {
            return Ok(self.control(&method, rest, &body));
        }

        let fault = {
            let mut inner = lock(&self.inner);
            let at = Instant::now();
            let at_ms = at.duration_since(inner.started).as_millis() as u64;
            inner.log.push(RequestRecord {
                method: method.to_string(),
                path: path.clone(),
                query: query.clone(),
                at,
                at_ms,
            });
            inner.take_fault(&method)
        };
        let request_id = lock(&self.inner).request_id();
        let flavour = Flavour::of(&path);
        if let Some(fault) = fault {
            match fault {
                Fault::Delay { ms } => tokio::time::sleep(Duration::from_millis(ms)).await,
                Fault::Hang => {
                    tokio::time::sleep(HANG).await;
                    return Err(SimError::Closed);
                }
                Fault::Close => return Err(SimError::Closed),
                other => {
                    return Ok(match flavour {
                        Flavour::HostUp => fault_response(&other, &path, &request_id),
                        Flavour::Legacy => legacy::fault_response(&other, &request_id),
                        Flavour::DigitalOcean | Flavour::Metadata => {
                            digitalocean::fault_response(&other, &request_id)
                        }
                    });
                }
            }
        }

        let token = lock(&self.inner).state.token.clone();
        match flavour {
            Flavour::Metadata => Ok(self.metadata_api(&method, &path, &request_id)),
            Flavour::Legacy => {
                if api_key.as_deref() != Some(token.as_str()) {
                    return Ok(legacy::error(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "Invalid or missing API key",
                        &request_id,
                    ));
                }
                Ok(self.legacy_api(&method, &path, &body, &request_id))
            }
            Flavour::DigitalOcean => {
                let presented = auth.as_deref().and_then(|a| a.strip_prefix("Bearer "));
                if presented != Some(token.as_str()) {
                    return Ok(digitalocean::error(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "Unable to authenticate you.",
                        &request_id,
                    ));
                }
                Ok(self.do_api(&method, &path, query.as_deref(), &body, &request_id))
            }
            Flavour::HostUp => {
                let presented = auth.as_deref().and_then(|a| a.strip_prefix("Bearer "));
                if presented != Some(token.as_str()) {
                    return Ok(problem(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "Unauthorized",
                        "Authentication required.",
                        &path,
                        &request_id,
                        None,
                    ));
                }
                Ok(self.api(&method, &path, query.as_deref(), &body, &request_id))
            }
        }
    }

    fn api(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        body: &[u8],
        request_id: &str,
    ) -> Response<Full<Bytes>> {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        match segments.as_slice() {
            ["", "api", "v2", "vps"] if method == Method::GET => {
                let inner = lock(&self.inner);
                list_vpses(&inner.state, query, path, request_id)
            }
            ["", "api", "v2", "routed-ipv6"] if method == Method::GET => {
                let inner = lock(&self.inner);
                json_response(StatusCode::OK, &account_view(&inner.state), request_id)
            }
            ["", "api", "v2", "routed-ipv6"] if method == Method::POST => {
                match parse_account_write(body) {
                    Err(errors) => problem(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "Validation failed",
                        "The request body failed validation.",
                        path,
                        request_id,
                        Some(errors),
                    ),
                    Ok(AccountWrite::AllocatePool) => problem(
                        StatusCode::CONFLICT,
                        "pool_exists",
                        "Pool exists",
                        "This account already has a routed /48.",
                        path,
                        request_id,
                        None,
                    ),
                    Ok(AccountWrite::CreateRoute(create)) => {
                        self.mutate(|inner| match create_route(&mut inner.state, &create) {
                            Ok(()) => json_response(
                                StatusCode::CREATED,
                                &account_view(&inner.state),
                                request_id,
                            ),
                            Err(refusal) => refusal.response(path, request_id),
                        })
                    }
                }
            }
            ["", "api", "v2", "routed-ipv6", "routes", id] if method == Method::DELETE => {
                let id = id.to_string();
                self.mutate(|inner| match delete_route(&mut inner.state, &id) {
                    Ok(()) => {
                        json_response(StatusCode::OK, &account_view(&inner.state), request_id)
                    }
                    Err(refusal) => refusal.response(path, request_id),
                })
            }
            ["", "api", "v2", "vps", id, "routed-ipv6"] => {
                let id = id.to_string();
                if !lock(&self.inner).state.vpses.contains_key(&id) {
                    return problem(
                        StatusCode::NOT_FOUND,
                        "vps_not_found",
                        "VPS not found",
                        "No VPS matching the given ID was found.",
                        path,
                        request_id,
                        None,
                    );
                }
                match *method {
                    Method::GET => {
                        let inner = lock(&self.inner);
                        let vps = &inner.state.vpses[&id];
                        json_response(
                            StatusCode::OK,
                            &vps_state(&inner.state, vps, None),
                            request_id,
                        )
                    }
                    Method::POST => self.post_routed(&id, body, path, request_id),
                    Method::DELETE => self.release(&id, path, request_id),
                    _ => method_not_allowed(path, request_id),
                }
            }
            ["", "api", ..] => {
                if method == Method::GET {
                    not_found(path, request_id)
                } else {
                    method_not_allowed(path, request_id)
                }
            }
            _ => not_found(path, request_id),
        }
    }

    fn post_routed(
        &self,
        id: &str,
        body: &[u8],
        path: &str,
        request_id: &str,
    ) -> Response<Full<Bytes>> {
        let action = match parse_action(body) {
            Ok(action) => action,
            Err(errors) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Validation failed",
                    "The request body failed validation.",
                    path,
                    request_id,
                    Some(errors),
                );
            }
        };
        self.mutate(|inner| match routed_action(inner, id, action) {
            None => vps_not_found(id, request_id),
            Some(Routed::InCooldown(until)) => problem(
                StatusCode::CONFLICT,
                "cooldown_active",
                "Cooldown active",
                &format!("Routed IPv6 was released; a new allocation can be made after {until}."),
                path,
                request_id,
                None,
            ),
            Some(Routed::Done(status, created)) => {
                let vps = inner.state.vpses[id].clone();
                json_response(
                    status,
                    &vps_state(&inner.state, &vps, Some(created)),
                    request_id,
                )
            }
        })
    }

    fn release(&self, id: &str, path: &str, request_id: &str) -> Response<Full<Bytes>> {
        self.mutate(|inner| {
            let days = inner.state.cooldown_days;
            let body = match release_allocation(inner, id) {
                Err(()) => return vps_not_found(id, request_id),
                Ok(None) if inner.state.release_none_problem => {
                    return problem(
                        StatusCode::NOT_FOUND,
                        "allocation_not_found",
                        "Allocation not found",
                        "This VPS has no routed IPv6 allocation to release.",
                        path,
                        request_id,
                        None,
                    );
                }
                Ok(Some(allocation)) => json!({
                    "released": true,
                    "cooldownDays": days,
                    "cooldownUntil": allocation.cooldown_until,
                    "allocation": allocation.to_json(),
                }),
                Ok(None) => json!({
                    "released": false,
                    "cooldownDays": days,
                    "cooldownUntil": inner.state.vpses[id].cooldown_until,
                    "allocation": null,
                }),
            };
            json_response(StatusCode::OK, &body, request_id)
        })
    }

    /// The `/_sim/` control API.
    fn control(&self, method: &Method, rest: &str, body: &[u8]) -> Response<Full<Bytes>> {
        let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        let result: Result<Value, SimError> = match (method.clone(), segments.as_slice()) {
            (Method::GET, ["state"]) => {
                let inner = lock(&self.inner);
                Ok(json!({
                    "state": inner.state,
                    "faults": inner.faults,
                    "sticky": inner.sticky,
                }))
            }
            (Method::GET, ["requests"]) => Ok(json!(lock(&self.inner).log)),
            (Method::DELETE, ["requests"]) => {
                lock(&self.inner).log.clear();
                Ok(json!({}))
            }
            (Method::POST, ["fault"]) => control_fault(self, body),
            (Method::DELETE, ["fault"]) => {
                let mut inner = lock(&self.inner);
                inner.faults.clear();
                inner.write_faults.clear();
                inner.sticky = None;
                Ok(json!({}))
            }
            (Method::POST, ["vps"]) => control_add_vps(self, body),
            (Method::POST, ["account-routes"]) => parse_body::<SimRoute>(body).map(|route| {
                self.mutate(|inner| {
                    let routes = &mut inner.state.account_routes;
                    routes.retain(|r| r.id != route.id);
                    routes.push(route);
                });
                json!({})
            }),
            (Method::DELETE, ["account-routes", id]) => {
                self.mutate(|inner| inner.state.account_routes.retain(|r| r.id != *id));
                Ok(json!({}))
            }
            (Method::POST, ["legacy-vms"]) => {
                #[derive(Deserialize)]
                #[serde(rename_all = "camelCase")]
                struct Body {
                    vmid: u64,
                    vps_id: String,
                }
                parse_body::<Body>(body).map(|b| {
                    self.mutate(|inner| inner.state.legacy_vms.insert(b.vmid, b.vps_id));
                    json!({})
                })
            }
            (Method::POST, ["digitalocean", "droplets"]) => {
                #[derive(Deserialize)]
                #[serde(rename_all = "camelCase")]
                struct Body {
                    id: u64,
                    #[serde(default)]
                    name: Option<String>,
                    #[serde(default)]
                    public_ipv6: Option<Ipv6Addr>,
                }
                parse_body::<Body>(body).map(|b| {
                    self.mutate(|inner| {
                        let state = std::mem::take(&mut inner.state.digitalocean);
                        inner.state.digitalocean = state.with_droplet(
                            b.id,
                            b.name.as_deref().unwrap_or("droplet"),
                            b.public_ipv6,
                        );
                    });
                    json!({})
                })
            }
            (Method::POST, ["digitalocean", "reserved"]) => {
                #[derive(Deserialize)]
                #[serde(rename_all = "camelCase")]
                struct Body {
                    ip: Ipv6Addr,
                    #[serde(default)]
                    droplet_id: Option<u64>,
                    #[serde(default)]
                    region: Option<String>,
                }
                parse_body::<Body>(body).map(|b| {
                    self.mutate(|inner| {
                        inner.state.digitalocean.reserved.insert(
                            b.ip,
                            SimReserved {
                                ip: b.ip,
                                region: b.region.unwrap_or_else(|| "nyc3".into()),
                                droplet_id: b.droplet_id,
                            },
                        );
                    });
                    json!({})
                })
            }
            (Method::POST, ["digitalocean", "metadata"]) => {
                #[derive(Deserialize)]
                #[serde(rename_all = "camelCase")]
                struct Body {
                    droplet_id: Option<u64>,
                }
                parse_body::<Body>(body).map(|b| {
                    self.mutate(|inner| inner.state.digitalocean.metadata_droplet = b.droplet_id);
                    json!({})
                })
            }
            (Method::POST, ["vps", id, "allocation"]) => {
                #[derive(Deserialize)]
                #[serde(rename_all = "camelCase")]
                struct Body {
                    prefix: Ipv6Net,
                    next_hop: Ipv6Addr,
                }
                parse_body::<Body>(body)
                    .and_then(|b| set_allocation(self, id, b.prefix, b.next_hop))
                    .map(|()| json!({}))
            }
            (Method::DELETE, ["vps", id, "allocation"]) => {
                clear_allocation(self, id).map(|()| json!({}))
            }
            (Method::POST, ["vps", id, "next-hop"]) => {
                #[derive(Deserialize)]
                #[serde(rename_all = "camelCase")]
                struct Body {
                    next_hop: Ipv6Addr,
                }
                parse_body::<Body>(body)
                    .and_then(|b| set_next_hop(self, id, b.next_hop))
                    .map(|()| json!({}))
            }
            (Method::POST, ["vps", id, "suggested-next-hop"]) => {
                #[derive(Deserialize)]
                #[serde(rename_all = "camelCase")]
                struct Body {
                    suggested_next_hop: Option<Ipv6Addr>,
                }
                parse_body::<Body>(body)
                    .and_then(|b| set_suggested_next_hop(self, id, b.suggested_next_hop))
                    .map(|()| json!({}))
            }
            (Method::POST, ["vps", id, "available"]) => {
                #[derive(Deserialize)]
                struct Body {
                    available: bool,
                    #[serde(default)]
                    reason: Option<String>,
                }
                parse_body::<Body>(body)
                    .and_then(|b| set_available(self, id, b.available, b.reason))
                    .map(|()| json!({}))
            }
            _ => Err(SimError::Invalid(format!(
                "no control {method} /_sim/{rest}; see the sim module's documentation"
            ))),
        };
        match result {
            Ok(value) => json_response(StatusCode::OK, &value, "req_sim_control"),
            Err(e) => {
                let status = match e {
                    SimError::UnknownVps(_) => StatusCode::NOT_FOUND,
                    _ => StatusCode::BAD_REQUEST,
                };
                json_response(
                    status,
                    &json!({ "error": e.to_string() }),
                    "req_sim_control",
                )
            }
        }
    }
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, SimError> {
    serde_json::from_slice(body).map_err(|e| SimError::Invalid(format!("bad control body: {e}")))
}

fn control_fault(sim: &Sim, body: &[u8]) -> Result<Value, SimError> {
    #[derive(Deserialize)]
    struct Body {
        fault: Fault,
        #[serde(default)]
        times: Option<usize>,
        #[serde(default)]
        sticky: bool,
    }
    let b: Body = parse_body(body)?;
    let mut inner = lock(&sim.inner);
    if b.sticky {
        inner.sticky = Some(b.fault);
    } else {
        for _ in 0..b.times.unwrap_or(1) {
            inner.faults.push_back(b.fault.clone());
        }
    }
    Ok(json!({ "queued": inner.faults.len(), "sticky": inner.sticky }))
}

fn control_add_vps(sim: &Sim, body: &[u8]) -> Result<Value, SimError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        id: String,
        name: Option<String>,
        primary_ip: IpAddr,
        #[serde(default)]
        suggested_next_hop: Option<Ipv6Addr>,
        #[serde(default)]
        available: Option<bool>,
        #[serde(default)]
        reason: Option<String>,
    }
    let b: Body = parse_body(body)?;
    let mut vps = SimVps::new(
        b.id.clone(),
        b.name.unwrap_or_else(|| b.id.clone()),
        b.primary_ip,
    );
    vps.suggested_next_hop = b.suggested_next_hop;
    vps.available = b.available.unwrap_or(true);
    vps.reason = b.reason;
    sim.mutate(|inner| inner.state.vpses.insert(vps.id.clone(), vps));
    Ok(json!({}))
}

fn set_allocation(
    sim: &Sim,
    id: &str,
    prefix: Ipv6Net,
    next_hop: Ipv6Addr,
) -> Result<(), SimError> {
    sim.mutate(|inner| {
        inner.next_allocation += 1;
        let number = inner.next_allocation;
        let vps = inner.vps_mut(id)?;
        vps.allocation = Some(SimAllocation::new(
            format!("ripv6_sim{number:06}"),
            prefix,
            next_hop,
        ));
        Ok(())
    })
}

fn clear_allocation(sim: &Sim, id: &str) -> Result<(), SimError> {
    sim.mutate(|inner| {
        inner.vps_mut(id)?.allocation = None;
        Ok(())
    })
}

fn set_next_hop(sim: &Sim, id: &str, next_hop: Ipv6Addr) -> Result<(), SimError> {
    sim.mutate(|inner| {
        let vps = inner.vps_mut(id)?;
        let allocation = vps
            .allocation
            .as_mut()
            .ok_or_else(|| SimError::Invalid(format!("VPS {id} has no allocation")))?;
        allocation.next_hop = next_hop;
        allocation.updated_at = timestamp(SystemTime::now());
        Ok(())
    })
}

fn set_suggested_next_hop(sim: &Sim, id: &str, next_hop: Option<Ipv6Addr>) -> Result<(), SimError> {
    sim.mutate(|inner| {
        inner.vps_mut(id)?.suggested_next_hop = next_hop;
        Ok(())
    })
}

fn set_available(
    sim: &Sim,
    id: &str,
    available: bool,
    reason: Option<String>,
) -> Result<(), SimError> {
    sim.mutate(|inner| {
        let vps = inner.vps_mut(id)?;
        vps.available = available;
        vps.reason = reason;
        Ok(())
    })
}

impl SimHandle {
    fn sim(&self) -> Sim {
        Sim {
            inner: self.inner.clone(),
            hook: self.hook.clone(),
            table_hook: self.table_hook.clone(),
        }
    }

    /// Call `hook` with the provider router's whole table whenever it changes (any
    /// API, any control). It runs on the sim's task, outside the sim's lock.
    pub fn on_router_table_change(&self, hook: TableHook) {
        *self.table_hook.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(hook));
    }

    /// Change the state with `f` (any part of it: account routes, legacy VMs,
    /// DigitalOcean); hooks are told about route changes as for any other control.
    pub fn update<R>(&self, f: impl FnOnce(&mut SimState) -> R) -> R {
        self.sim().mutate(|inner| f(&mut inner.state))
    }

    /// Where the sim listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, for `provider.base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop accepting connections (connections already open finish their requests).
    pub fn shutdown(&self) {
        self.accept.abort();
    }

    /// A copy of the whole state.
    pub fn state(&self) -> SimState {
        lock(&self.inner).state.clone()
    }

    /// A copy of one VPS.
    pub fn vps(&self, id: &str) -> Option<SimVps> {
        lock(&self.inner).state.vpses.get(id).cloned()
    }

    /// Add (or replace) a VPS.
    pub fn add_vps(&self, vps: SimVps) {
        self.sim()
            .mutate(|inner| inner.state.vpses.insert(vps.id.clone(), vps));
    }

    /// Give the VPS an active allocation (replacing any).
    pub fn set_allocation(
        &self,
        vps: &str,
        prefix: Ipv6Net,
        next_hop: Ipv6Addr,
    ) -> Result<(), SimError> {
        set_allocation(&self.sim(), vps, prefix, next_hop)
    }

    /// Remove the VPS's allocation without a release (no cooldown).
    pub fn clear_allocation(&self, vps: &str) -> Result<(), SimError> {
        clear_allocation(&self.sim(), vps)
    }

    /// The provider changed its routing: the allocation's next hop is now `next_hop`.
    pub fn set_next_hop(&self, vps: &str, next_hop: Ipv6Addr) -> Result<(), SimError> {
        set_next_hop(&self.sim(), vps, next_hop)
    }

    /// What `suggestedNextHop` says (and what refresh_next_hop will set).
    pub fn set_suggested_next_hop(
        &self,
        vps: &str,
        next_hop: Option<Ipv6Addr>,
    ) -> Result<(), SimError> {
        set_suggested_next_hop(&self.sim(), vps, next_hop)
    }

    /// `available` and `reason`.
    pub fn set_available(
        &self,
        vps: &str,
        available: bool,
        reason: Option<&str>,
    ) -> Result<(), SimError> {
        set_available(&self.sim(), vps, available, reason.map(str::to_string))
    }

    /// Apply `fault` to the next `times` API requests (after those already queued).
    pub fn push_fault(&self, fault: Fault, times: usize) {
        let mut inner = lock(&self.inner);
        for _ in 0..times {
            inner.faults.push_back(fault.clone());
        }
    }

    /// Apply `fault` to the next `times` writes (POST, DELETE) only.
    pub fn push_write_fault(&self, fault: Fault, times: usize) {
        let mut inner = lock(&self.inner);
        for _ in 0..times {
            inner.write_faults.push_back(fault.clone());
        }
    }

    /// Apply `fault` to every API request (once the queue is empty) until cleared.
    pub fn set_sticky_fault(&self, fault: Fault) {
        lock(&self.inner).sticky = Some(fault);
    }

    /// Drop queued and sticky faults.
    pub fn clear_faults(&self) {
        let mut inner = lock(&self.inner);
        inner.faults.clear();
        inner.write_faults.clear();
        inner.sticky = None;
    }

    /// Every API request so far (not the `/_sim/` ones), oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.inner).log.clone()
    }

    /// How many API requests had `method` and a path starting with `path_prefix`.
    pub fn count(&self, method: &str, path_prefix: &str) -> usize {
        lock(&self.inner)
            .log
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path.starts_with(path_prefix))
            .count()
    }

    pub fn clear_requests(&self) {
        lock(&self.inner).log.clear();
    }

    /// Call `hook` whenever a VPS's active (prefix, next hop) changes, through the API
    /// or the controls. It runs on the sim's task, outside the sim's lock.
    pub fn on_route_change(&self, hook: RouteHook) {
        *self.hook.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(hook));
    }
}

enum Action {
    Allocate,
    RefreshNextHop,
}

/// What an allocate or refresh came to.
enum Routed {
    /// The status to answer with and whether an allocation was created.
    Done(StatusCode, bool),
    /// Allocate refused: the VPS is in a release's cooldown until then
    /// (`SimState::cooldown_refuses_allocate`).
    InCooldown(String),
}

/// Allocate or refresh the next hop of VPS `id` (shared by the v2 and legacy APIs);
/// `None` for an unknown VPS.
fn routed_action(inner: &mut Inner, id: &str, action: Action) -> Option<Routed> {
    let refuse_in_cooldown = inner.state.cooldown_refuses_allocate;
    let pool = inner.state.pool;
    let length = inner.state.prefix_length;
    let subnet = inner.next_subnet;
    let allocation_number = inner.next_allocation + 1;
    let vps = inner.state.vpses.get_mut(id)?;
    let has_active = vps.active_route().is_some();
    let mut status = StatusCode::OK;
    let mut created = false;
    match action {
        Action::Allocate
            if vps.available
                && !has_active
                && refuse_in_cooldown
                && let Some(until) = &vps.cooldown_until =>
        {
            return Some(Routed::InCooldown(until.clone()));
        }
        Action::Allocate if vps.available && !has_active => {
            let prefix = carve(pool, length, subnet);
            let next_hop = vps
                .suggested_next_hop
                .unwrap_or_else(|| pool_first_host(pool));
            vps.allocation = Some(SimAllocation::new(
                format!("ripv6_sim{allocation_number:06}"),
                prefix,
                next_hop,
            ));
            vps.cooldown_until = None;
            created = true;
            status = StatusCode::CREATED;
        }
        Action::Allocate => {}
        Action::RefreshNextHop => {
            if let (Some(allocation), Some(suggested)) =
                (vps.allocation.as_mut(), vps.suggested_next_hop)
                && allocation.status == "active"
                && allocation.next_hop != suggested
            {
                allocation.next_hop = suggested;
                allocation.updated_at = timestamp(SystemTime::now());
            }
        }
    }
    if created {
        inner.next_subnet += 1;
        inner.next_allocation += 1;
    }
    Some(Routed::Done(status, created))
}

/// Release VPS `id`'s allocation: the released allocation (status cooldown), or
/// `None` when there was no active one. `Err(())` for an unknown VPS.
fn release_allocation(inner: &mut Inner, id: &str) -> Result<Option<SimAllocation>, ()> {
    let days = inner.state.cooldown_days;
    let vps = inner.state.vpses.get_mut(id).ok_or(())?;
    Ok(
        match vps.allocation.take().filter(|a| a.status == "active") {
            Some(mut allocation) => {
                let now = SystemTime::now();
                let until = timestamp(now + Duration::from_secs(days * 86_400));
                allocation.status = "cooldown".into();
                allocation.released_at = Some(timestamp(now));
                allocation.cooldown_until = Some(until.clone());
                allocation.updated_at = timestamp(now);
                vps.cooldown_until = Some(until);
                Some(allocation)
            }
            None => None,
        },
    )
}

/// The POST body: none or `{}` means allocate. Errors are `errors[]` entries.
fn parse_action(body: &[u8]) -> Result<Action, Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Action::Allocate);
    }
    let error = |pointer: &str, detail: &str, code: &str| json!([{ "pointer": pointer, "detail": detail, "code": code }]);
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| error("", "The request body is not valid JSON.", "invalid_json"))?;
    let Some(object) = value.as_object() else {
        return Err(error(
            "",
            "The request body must be an object.",
            "invalid_type",
        ));
    };
    if let Some(rack) = object.get("rackId") {
        match rack.as_str() {
            Some(r) if r.chars().count() <= 50 => {}
            Some(_) => {
                return Err(error(
                    "/rackId",
                    "`rackId` must be at most 50 characters.",
                    "too_long",
                ));
            }
            None => {
                return Err(error(
                    "/rackId",
                    "`rackId` must be a string.",
                    "invalid_type",
                ));
            }
        }
    }
    match object.get("action") {
        None | Some(Value::Null) => Ok(Action::Allocate),
        Some(Value::String(a)) if a == "allocate" => Ok(Action::Allocate),
        Some(Value::String(a)) if a == "refresh_next_hop" => Ok(Action::RefreshNextHop),
        Some(_) => Err(error(
            "/action",
            "`action` must be one of allocate, refresh_next_hop.",
            "invalid_enum",
        )),
    }
}

/// The `index`-th prefix of `length` inside `pool`.
fn carve(pool: Ipv6Net, length: u8, index: u128) -> Ipv6Net {
    let base = u128::from(pool.network());
    let shift = 128 - u32::from(length);
    let network = base | (index << shift);
    Ipv6Net::new(Ipv6Addr::from(network), length)
        .expect("length is at most 128")
        .trunc()
}

fn pool_first_host(pool: Ipv6Net) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(pool.network()) | 1)
}

/// ISO 8601 with milliseconds and `Z`, as HostUp writes timestamps.
fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// The per-VPS state body (GET, and POST's 200/201).
fn vps_state(state: &SimState, vps: &SimVps, created: Option<bool>) -> Value {
    json!({
        "available": vps.available,
        "reason": if vps.available { None } else { vps.reason.clone() },
        "parentCidr": state.pool.to_string(),
        "prefixLength": state.prefix_length,
        "cooldownDays": state.cooldown_days,
        "maxPerVm": 1,
        "suggestedNextHop": vps.suggested_next_hop.map(|a| a.to_string()),
        "created": created,
        "allocation": vps.allocation.as_ref().map(SimAllocation::to_json),
    })
}

fn list_vpses(
    state: &SimState,
    query: Option<&str>,
    path: &str,
    request_id: &str,
) -> Response<Full<Bytes>> {
    let mut primary_ip = None;
    let mut name = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "primaryIp" => match value.parse::<IpAddr>() {
                Ok(ip) => primary_ip = Some(ip),
                Err(_) => {
                    return problem(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "Validation failed",
                        "The query failed validation.",
                        path,
                        request_id,
                        Some(
                            json!([{ "pointer": "/primaryIp", "detail": "`primaryIp` must be an IP address.", "code": "invalid_format" }]),
                        ),
                    );
                }
            },
            "name" => name = Some(value.to_string()),
            _ => {}
        }
    }
    let data: Vec<Value> = state
        .vpses
        .values()
        .filter(|v| primary_ip.is_none_or(|ip| v.primary_ip == ip))
        .filter(|v| name.as_ref().is_none_or(|n| &v.name == n))
        .map(|v| {
            json!({
                "id": v.id,
                "name": v.name,
                "primaryIp": v.primary_ip.to_string(),
                "status": "active",
            })
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({ "data": data, "nextCursor": null }),
        request_id,
    )
}

/// GET /api/v2/routed-ipv6: the account's pool and every active allocation as a route.
fn account_view(state: &SimState) -> Value {
    let now = timestamp(SystemTime::now());
    let vps_name = |id: &str| {
        state
            .vpses
            .get(id)
            .map(|v| v.name.clone())
            .unwrap_or_default()
    };
    let route_json = |r: &SimRoute| {
        json!({
            "id": r.id,
            "prefix": r.prefix.to_string(),
            "prefixLength": r.prefix.prefix_len(),
            "nextHop": r.next_hop.to_string(),
            "label": r.label,
            "vpsId": r.vps_id,
            "vpsName": vps_name(&r.vps_id),
            "status": r.status,
            "allocatedAt": now,
            "updatedAt": now,
            "actions": { "canDelete": gate(r.delete_denied.as_deref()) },
        })
    };
    let mut routes: Vec<Value> = state
        .vpses
        .values()
        .filter_map(|v| {
            let a = v.allocation.as_ref().filter(|a| a.status == "active")?;
            Some(json!({
                "id": allocation_route_id(&a.id),
                "prefix": a.prefix.to_string(),
                "prefixLength": a.prefix_length,
                "nextHop": a.next_hop.to_string(),
                "label": null,
                "vpsId": v.id,
                "vpsName": v.name,
                "status": "active",
                "allocatedAt": a.allocated_at,
                "updatedAt": a.updated_at,
                "actions": { "canDelete": gate(None) },
            }))
        })
        .collect();
    let destinations: Vec<Value> = state
        .vpses
        .values()
        .map(|v| {
            json!({
                "vpsId": v.id,
                "name": v.name,
                "primaryIp": v.primary_ip.to_string(),
                "nextHop": v.suggested_next_hop.map(|a| a.to_string()),
                "serviceStatus": "active",
                "actions": { "canReceiveRoute": receive_gate(v) },
            })
        })
        .collect();
    let mut extra: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
    for r in &state.account_routes {
        if r.pool_id == SIM_POOL {
            routes.push(route_json(r));
        } else {
            extra
                .entry((r.pool_id.clone(), r.pool_cidr.to_string()))
                .or_default()
                .push(route_json(r));
        }
    }
    let pool_json = |id: &str, cidr: String, routes: Vec<Value>| {
        let can_release = if routes.is_empty() {
            gate(None)
        } else {
            gate(Some("Remove routed subnets before releasing this /48."))
        };
        json!({
            "id": id,
            "parentCidr": cidr,
            "prefixLength": 48,
            "status": "active",
            "allocatedAt": now,
            "updatedAt": now,
            "routes": routes,
            "actions": {
                "canCreateRoute": gate(state.create_route_denied.get(id).map(String::as_str)),
                "canRelease": can_release,
            },
        })
    };
    let mut pools = vec![pool_json(SIM_POOL, state.pool.to_string(), routes)];
    pools.extend(
        extra
            .into_iter()
            .map(|((id, cidr), routes)| pool_json(&id, cidr, routes)),
    );
    json!({
        "available": true,
        "reason": null,
        "allowedPrefixLengths": ALLOWED_LENGTHS,
        "pools": pools,
        "destinations": destinations,
        "actions": {
            "canAllocatePool": gate(Some("This account already has a routed /48.")),
            "canCreateRoute": gate(None),
        },
    })
}

/// The route lengths the account view offers (`allowedPrefixLengths`).
const ALLOWED_LENGTHS: [u8; 3] = [48, 56, 64];

/// An action gate, `{allowed, reason}`: open without a reason, closed with one.
fn gate(denied: Option<&str>) -> Value {
    json!({ "allowed": denied.is_none(), "reason": denied })
}

/// A destination's `canReceiveRoute`: closed, with its reason, while it is unavailable.
fn receive_gate(vps: &SimVps) -> Value {
    if vps.available {
        gate(None)
    } else {
        gate(Some(
            vps.reason
                .as_deref()
                .unwrap_or("This VPS cannot receive a routed subnet."),
        ))
    }
}

/// The account view's route id for a per-VPS allocation `ripv6_…`.
fn allocation_route_id(allocation_id: &str) -> String {
    allocation_id.replacen("ripv6_", "ripv6rt_", 1)
}

/// A POST /api/v2/routed-ipv6 body, read by the sim's own code.
#[derive(Debug, PartialEq, Eq)]
enum AccountWrite {
    AllocatePool,
    CreateRoute(CreateRoute),
}

#[derive(Debug, PartialEq, Eq)]
struct CreateRoute {
    pool_id: String,
    vps_id: String,
    prefix_length: u8,
    prefix: Option<Ipv6Net>,
    label: Option<String>,
}

/// The account write's body; errors are `errors[]` entries.
fn parse_account_write(body: &[u8]) -> Result<AccountWrite, Value> {
    let error = |pointer: &str, detail: &str, code: &str| json!([{ "pointer": pointer, "detail": detail, "code": code }]);
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| error("", "The request body is not valid JSON.", "invalid_json"))?;
    let Some(object) = value.as_object() else {
        return Err(error(
            "",
            "The request body must be an object.",
            "invalid_type",
        ));
    };
    let text = |key: &str| -> Result<Option<String>, Value> {
        match object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(error(
                &format!("/{key}"),
                &format!("`{key}` must be a string."),
                "invalid_type",
            )),
        }
    };
    let required = |key: &str| -> Result<String, Value> {
        text(key)?.ok_or_else(|| {
            error(
                &format!("/{key}"),
                &format!("`{key}` is required for create_route."),
                "missing_required",
            )
        })
    };
    match object.get("action").and_then(Value::as_str) {
        Some("allocate_pool") => Ok(AccountWrite::AllocatePool),
        Some("create_route") => {
            let prefix_length = match object.get("prefixLength").and_then(Value::as_u64) {
                Some(n) if ALLOWED_LENGTHS.iter().any(|a| u64::from(*a) == n) => n as u8,
                Some(_) => {
                    return Err(error(
                        "/prefixLength",
                        "`prefixLength` must be one of 48, 56, 64.",
                        "invalid_enum",
                    ));
                }
                None => {
                    return Err(error(
                        "/prefixLength",
                        "`prefixLength` is required for create_route.",
                        "missing_required",
                    ));
                }
            };
            let prefix = match text("prefix")? {
                None => None,
                Some(p) => Some(p.parse::<Ipv6Net>().map_err(|_| {
                    error(
                        "/prefix",
                        "`prefix` must be an IPv6 CIDR.",
                        "invalid_format",
                    )
                })?),
            };
            Ok(AccountWrite::CreateRoute(CreateRoute {
                pool_id: required("poolId")?,
                vps_id: required("vpsId")?,
                prefix_length,
                prefix,
                label: text("label")?,
            }))
        }
        _ => Err(error(
            "/action",
            "`action` must be one of allocate_pool, create_route.",
            "invalid_enum",
        )),
    }
}

/// Why an account write was not done: a problem document to answer with.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: &'static str,
    detail: String,
    errors: Option<Value>,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Refusal {
            status,
            code,
            detail: detail.into(),
            errors: None,
        }
    }

    fn invalid(pointer: &str, detail: &str) -> Self {
        Refusal {
            errors: Some(
                json!([{ "pointer": pointer, "detail": detail, "code": "invalid_value" }]),
            ),
            ..Refusal::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The request body failed validation.",
            )
        }
    }

    fn response(self, path: &str, request_id: &str) -> Response<Full<Bytes>> {
        let title = self.status.canonical_reason().unwrap_or("Request refused");
        problem(
            self.status,
            self.code,
            title,
            &self.detail,
            path,
            request_id,
            self.errors,
        )
    }
}

fn overlaps(a: Ipv6Net, b: Ipv6Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// `create_route`: carve a route of `prefixLength` from the pool (or take `prefix`) and
/// route it to the destination's next hop, if the view's gates are open.
fn create_route(state: &mut SimState, create: &CreateRoute) -> Result<(), Refusal> {
    let pool = if create.pool_id == SIM_POOL {
        state.pool
    } else {
        state
            .account_routes
            .iter()
            .find(|r| r.pool_id == create.pool_id)
            .map(|r| r.pool_cidr)
            .ok_or_else(|| {
                Refusal::new(
                    StatusCode::NOT_FOUND,
                    "pool_not_found",
                    "No routed IPv6 pool matching the given ID was found.",
                )
            })?
    };
    if let Some(reason) = state.create_route_denied.get(&create.pool_id) {
        return Err(Refusal::new(
            StatusCode::CONFLICT,
            "action_not_allowed",
            reason.clone(),
        ));
    }
    let vps = state.vpses.get(&create.vps_id).ok_or_else(|| {
        Refusal::new(
            StatusCode::NOT_FOUND,
            "vps_not_found",
            "No VPS matching the given ID was found.",
        )
    })?;
    if !vps.available {
        let reason = receive_gate(vps)["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        return Err(Refusal::new(
            StatusCode::CONFLICT,
            "action_not_allowed",
            reason,
        ));
    }
    let next_hop = vps
        .suggested_next_hop
        .unwrap_or_else(|| pool_first_host(pool));
    let length = create.prefix_length;
    if length < pool.prefix_len() {
        return Err(Refusal::invalid(
            "/prefixLength",
            "`prefixLength` is shorter than the pool.",
        ));
    }
    let mut taken: Vec<Ipv6Net> = state
        .account_routes
        .iter()
        .filter(|r| r.pool_id == create.pool_id && r.status == "active")
        .map(|r| r.prefix)
        .collect();
    if create.pool_id == SIM_POOL {
        taken.extend(
            state
                .vpses
                .values()
                .filter_map(|v| v.active_route().map(|r| r.0)),
        );
    }
    let free = |p: Ipv6Net| !taken.iter().any(|t| overlaps(*t, p));
    let prefix = match create.prefix {
        Some(p) => {
            if p.trunc() != p || p.prefix_len() != length || !pool.contains(&p) {
                return Err(Refusal::invalid(
                    "/prefix",
                    "`prefix` must be a network of `prefixLength` inside the pool.",
                ));
            }
            if !free(p) {
                return Err(Refusal::new(
                    StatusCode::CONFLICT,
                    "prefix_unavailable",
                    "That prefix is already routed.",
                ));
            }
            p
        }
        None => (0..1u128 << (length - pool.prefix_len()))
            .map(|i| carve(pool, length, i))
            .find(|p| free(*p) && !p.contains(&next_hop))
            .ok_or_else(|| {
                Refusal::new(
                    StatusCode::CONFLICT,
                    "prefix_unavailable",
                    "The pool has no free subnet of that length.",
                )
            })?,
    };
    let id = (1..)
        .map(|n| format!("ripv6rt_new{n:06}"))
        .find(|id| state.account_routes.iter().all(|r| &r.id != id))
        .expect("an unused id exists");
    let route = SimRoute {
        label: create.label.clone(),
        ..SimRoute::new(
            &id,
            (&create.pool_id, pool),
            prefix,
            next_hop,
            None,
            &create.vps_id,
        )
    };
    state.account_routes.push(route);
    Ok(())
}

/// DELETE /api/v2/routed-ipv6/routes/{id}: one account route, or a per-VPS allocation
/// shown as a route, if its `canDelete` is open.
fn delete_route(state: &mut SimState, id: &str) -> Result<(), Refusal> {
    if let Some(index) = state.account_routes.iter().position(|r| r.id == id) {
        if let Some(reason) = &state.account_routes[index].delete_denied {
            return Err(Refusal::new(
                StatusCode::CONFLICT,
                "action_not_allowed",
                reason.clone(),
            ));
        }
        state.account_routes.remove(index);
        return Ok(());
    }
    let vps = state.vpses.values_mut().find(|v| {
        v.allocation
            .as_ref()
            .is_some_and(|a| a.status == "active" && allocation_route_id(&a.id) == id)
    });
    match vps {
        Some(vps) => {
            vps.allocation = None;
            Ok(())
        }
        None => Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "route_not_found",
            "No routed subnet matching the given ID was found.",
        )),
    }
}

fn fault_response(fault: &Fault, path: &str, request_id: &str) -> Response<Full<Bytes>> {
    match fault {
        Fault::Status { status, code } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let title = status.canonical_reason().unwrap_or("Error");
            problem(
                status,
                code,
                title,
                "Simulated failure.",
                path,
                request_id,
                None,
            )
        }
        Fault::RateLimited { retry_after } => {
            let mut response = problem(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                "Too many requests",
                "Too many requests.",
                path,
                request_id,
                None,
            );
            let reset = timestamp(SystemTime::now() + Duration::from_secs(60));
            let headers = response.headers_mut();
            headers.insert("x-ratelimit-limit", HeaderValue::from_static("60"));
            headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            if let Ok(v) = HeaderValue::from_str(&reset) {
                headers.insert("x-ratelimit-reset", v);
            }
            let value = match retry_after {
                Some(RetryAfter::Seconds(s)) => Some(s.to_string()),
                Some(RetryAfter::DateIn(s)) => Some(httpdate::fmt_http_date(
                    SystemTime::now() + Duration::from_secs(*s),
                )),
                None => None,
            };
            if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                headers.insert(header::RETRY_AFTER, v);
            }
            response
        }
        Fault::Body {
            status,
            body,
            content_type,
        } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
            let content_type = content_type.as_deref().unwrap_or("application/json");
            raw_response(status, Bytes::from(body.clone()), content_type, request_id)
        }
        Fault::HugeBody { bytes } => {
            // Starts like a state so only the size is wrong.
            let mut body = br#"{"available":true,"allocation":null,"pad":""#.to_vec();
            body.resize((*bytes).max(body.len()), b'x');
            raw_response(
                StatusCode::OK,
                Bytes::from(body),
                "application/json",
                request_id,
            )
        }
        // Handled by the caller; answer something sane if one ever gets here.
        Fault::Delay { .. } | Fault::Hang | Fault::Close => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal error",
            "Simulated failure.",
            path,
            request_id,
            None,
        ),
    }
}

fn raw_response(
    status: StatusCode,
    body: Bytes,
    content_type: &str,
    request_id: &str,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", v);
    }
    response
}

fn json_response(status: StatusCode, body: &Value, request_id: &str) -> Response<Full<Bytes>> {
    raw_response(
        status,
        Bytes::from(body.to_string()),
        "application/json",
        request_id,
    )
}

/// An RFC 7807 problem document as HostUp writes them.
fn problem(
    status: StatusCode,
    code: &str,
    title: &str,
    detail: &str,
    instance: &str,
    request_id: &str,
    errors: Option<Value>,
) -> Response<Full<Bytes>> {
    let mut body = json!({
        "type": format!("https://developer.hostup.se/errors/{code}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
        "code": code,
        "instance": instance,
        "requestId": request_id,
        "timestamp": timestamp(SystemTime::now()),
    });
    if let Some(errors) = errors {
        body["errors"] = errors;
    }
    raw_response(
        status,
        Bytes::from(body.to_string()),
        "application/problem+json",
        request_id,
    )
}

fn vps_not_found(id: &str, request_id: &str) -> Response<Full<Bytes>> {
    problem(
        StatusCode::NOT_FOUND,
        "vps_not_found",
        "VPS not found",
        "No VPS matching the given ID was found.",
        &format!("/api/v2/vps/{id}/routed-ipv6"),
        request_id,
        None,
    )
}

fn not_found(path: &str, request_id: &str) -> Response<Full<Bytes>> {
    problem(
        StatusCode::NOT_FOUND,
        "not_found",
        "Not found",
        "No such endpoint.",
        path,
        request_id,
        None,
    )
}

fn method_not_allowed(path: &str, request_id: &str) -> Response<Full<Bytes>> {
    problem(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed",
        "This endpoint does not support that method.",
        path,
        request_id,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carving_prefixes() {
        let pool: Ipv6Net = "2001:db8:42::/48".parse().unwrap();
        assert_eq!(carve(pool, 64, 0x100).to_string(), "2001:db8:42:100::/64");
        assert_eq!(carve(pool, 56, 1).to_string(), "2001:db8:42:100::/56");
        assert_eq!(pool_first_host(pool).to_string(), "2001:db8:42::1");
    }

    #[test]
    fn post_bodies() {
        assert!(matches!(parse_action(b""), Ok(Action::Allocate)));
        assert!(matches!(parse_action(b"{}"), Ok(Action::Allocate)));
        assert!(matches!(
            parse_action(br#"{"action":"allocate","rackId":"stockholm-a"}"#),
            Ok(Action::Allocate)
        ));
        assert!(matches!(
            parse_action(br#"{"action":"refresh_next_hop"}"#),
            Ok(Action::RefreshNextHop)
        ));
        assert!(parse_action(br#"{"action":"explode"}"#).is_err());
        assert!(parse_action(b"{").is_err());
        assert!(parse_action(b"[]").is_err());
        let long = format!(r#"{{"rackId":"{}"}}"#, "x".repeat(51));
        assert!(parse_action(long.as_bytes()).is_err());
    }

    #[test]
    fn account_write_bodies() {
        assert_eq!(
            parse_account_write(br#"{"action":"allocate_pool"}"#),
            Ok(AccountWrite::AllocatePool)
        );
        assert_eq!(
            parse_account_write(
                br#"{"action":"create_route","poolId":"ripv6_a","vpsId":"vps_b","prefixLength":56,"label":"x"}"#
            ),
            Ok(AccountWrite::CreateRoute(CreateRoute {
                pool_id: "ripv6_a".into(),
                vps_id: "vps_b".into(),
                prefix_length: 56,
                prefix: None,
                label: Some("x".into()),
            }))
        );
        for bad in [
            &br#"{"action":"create_route","poolId":"p","vpsId":"v","prefixLength":60}"#[..],
            br#"{"action":"create_route","poolId":"p","prefixLength":64}"#,
            br#"{"action":"create_route","poolId":"p","vpsId":"v"}"#,
            br#"{"action":"create_route","poolId":"p","vpsId":"v","prefixLength":64,"prefix":"x"}"#,
            br#"{"action":"allocate"}"#,
            b"[]",
            b"",
        ] {
            assert!(
                parse_account_write(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn create_route_takes_the_first_free_child() {
        let mut state = SimState::new("t").with_vps(
            SimVps::new("vps_a", "a", "192.0.2.1".parse().unwrap())
                .with_suggested_next_hop("2001:db8::10".parse().unwrap()),
        );
        let create = |length| CreateRoute {
            pool_id: SIM_POOL.into(),
            vps_id: "vps_a".into(),
            prefix_length: length,
            prefix: None,
            label: None,
        };
        create_route(&mut state, &create(64)).unwrap();
        create_route(&mut state, &create(56)).unwrap();
        let got: Vec<String> = state
            .account_routes
            .iter()
            .map(|r| r.prefix.to_string())
            .collect();
        assert_eq!(got, ["2001:db8:42::/64", "2001:db8:42:100::/56"]);
        // The /48 overlaps both: nothing free.
        assert_eq!(
            create_route(&mut state, &create(48)).unwrap_err().code,
            "prefix_unavailable"
        );
        state
            .create_route_denied
            .insert(SIM_POOL.into(), "closed".into());
        let refusal = create_route(&mut state, &create(64)).unwrap_err();
        assert_eq!(
            (refusal.code, refusal.detail.as_str()),
            ("action_not_allowed", "closed")
        );
        let id = state.account_routes[0].id.clone();
        state.account_routes[0].delete_denied = Some("locked".into());
        assert_eq!(delete_route(&mut state, &id).unwrap_err().detail, "locked");
        state.account_routes[0].delete_denied = None;
        delete_route(&mut state, &id).unwrap();
        assert_eq!(
            delete_route(&mut state, &id).unwrap_err().code,
            "route_not_found"
        );
    }

    #[test]
    fn faults_as_json() {
        let f: Fault =
            serde_json::from_str(r#"{"kind":"rateLimited","retryAfter":{"dateIn":5}}"#).unwrap();
        assert_eq!(f, Fault::rate_limited_date(5));
        let f: Fault =
            serde_json::from_str(r#"{"kind":"status","status":503,"code":"service_unavailable"}"#)
                .unwrap();
        assert_eq!(f, Fault::status(503, "service_unavailable"));
        let f: Fault = serde_json::from_str(r#"{"kind":"body","body":"{"}"#).unwrap();
        assert_eq!(f, Fault::body(200, "{"));
        let f: Fault = serde_json::from_str(r#"{"kind":"hang"}"#).unwrap();
        assert_eq!(f, Fault::Hang);
    }
}
