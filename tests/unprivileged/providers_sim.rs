//! The HostUp account-view, HostUp legacy, DigitalOcean and static clients against the
//! simulated provider: the happy paths, the writes (and that there are none unless
//! asked), and injected faults mapped to the right `ProviderError`.

use std::net::Ipv6Addr;
use std::time::Duration;

use ipnet::Ipv6Net;
use routed6d::config::{
    Config, DigitalOceanSettings, HostupSettings, LegacySettings, ProviderConfig, ProviderSettings,
    Secret,
};
use routed6d::daemon::Poller;
use routed6d::provider::digitalocean::DigitalOcean;
use routed6d::provider::hostup::HostUp;
use routed6d::provider::hostup_legacy::HostUpLegacy;
use routed6d::provider::http::HttpClient;
use routed6d::provider::{AnyProvider, Provider, ProviderError};
use routed6d_sim::api::{self, Fault, SimDigitalOcean, SimHandle, SimRoute, SimState, SimVps};

const TOKEN: &str = "sim_SECRET_token_0123456789";
const VPS: &str = "vps_01hxa3b4c5d6e7f8g9h0j1k2m3";
const OTHER: &str = "vps_other000000000000000001";
const DROPLET: u64 = 3164444;

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn net(s: &str) -> Ipv6Net {
    s.parse().unwrap()
}

async fn start(state: SimState) -> SimHandle {
    api::start_on("127.0.0.1:0".parse().unwrap(), state)
        .await
        .unwrap()
}

/// `[provider]` lines → a parsed `Config` (parsing reads no token file).
fn load(provider: &str) -> Config {
    let text = format!("[provider]\n{provider}\n[uplink]\ninterface = \"eth0\"\n");
    Config::from_text(std::path::Path::new("routed6d.toml"), &text, None)
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn provider_config(provider: &str) -> ProviderConfig {
    load(provider).provider
}

/// The key the sim accepts, as building the provider would read it.
fn key() -> Secret {
    Secret::new(TOKEN.into())
}

fn hostup(config: &ProviderConfig) -> &HostupSettings {
    match &config.settings {
        ProviderSettings::Hostup(settings) => settings,
        other => panic!("not hostup: {other:?}"),
    }
}

fn legacy_settings(config: &ProviderConfig) -> &LegacySettings {
    match &config.settings {
        ProviderSettings::HostupLegacy(settings) => settings,
        other => panic!("not hostup-legacy: {other:?}"),
    }
}

fn digitalocean(config: &ProviderConfig) -> &DigitalOceanSettings {
    match &config.settings {
        ProviderSettings::DigitalOcean(settings) => settings,
        other => panic!("not digitalocean: {other:?}"),
    }
}

fn fast_http() -> HttpClient {
    HttpClient::with_timeouts(Duration::from_millis(500), Duration::from_millis(800)).unwrap()
}

fn status_of(error: &ProviderError) -> (u16, Option<String>, Option<Duration>) {
    match error {
        ProviderError::Status {
            status,
            code,
            retry_after,
            ..
        } => (*status, code.clone(), *retry_after),
        other => panic!("expected a status error, got {other:?}"),
    }
}

fn no_token(error: &ProviderError) {
    assert!(!error.to_string().contains(TOKEN), "{error}");
    assert!(!format!("{error:?}").contains("SECRET"), "{error:?}");
}

// ----------------------------------------------------------------------------------------
// HostUp account routes

fn account_state() -> SimState {
    let pool2 = ("ripv6_pool2", net("2001:db8:77::/48"));
    let mut state = SimState::new(TOKEN)
        .with_vps(SimVps::new(VPS, "web-01", "192.0.2.10".parse().unwrap()))
        .with_vps(SimVps::new(OTHER, "db-01", "192.0.2.11".parse().unwrap()));
    state.account_routes = vec![
        SimRoute::new(
            "ripv6rt_48",
            pool2,
            net("2001:db8:77::/48"),
            v6("2001:db8:1::10"),
            Some("whole pool"),
            VPS,
        ),
        SimRoute::new(
            "ripv6rt_56",
            ("ripv6_pool3", net("2001:db8:88::/48")),
            net("2001:db8:88:100::/56"),
            v6("2001:db8:1::11"),
            None,
            VPS,
        ),
        SimRoute::new(
            "ripv6rt_other",
            ("ripv6_pool3", net("2001:db8:88::/48")),
            net("2001:db8:88:200::/56"),
            v6("2001:db8:1::99"),
            Some("not ours"),
            OTHER,
        ),
    ];
    let mut inactive = SimRoute::new(
        "ripv6rt_gone",
        ("ripv6_pool3", net("2001:db8:88::/48")),
        net("2001:db8:88:300::/56"),
        v6("2001:db8:1::12"),
        None,
        VPS,
    );
    inactive.status = "deleting".into();
    state.account_routes.push(inactive);
    state
}

#[tokio::test]
async fn account_routes_are_all_routed_here_each_with_its_next_hop() {
    let sim = start(account_state()).await;
    sim.set_allocation(VPS, net("2001:db8:42:100::/64"), v6("2001:db8:1::12"))
        .unwrap();
    let config = provider_config(&format!(
        "kind = \"hostup\"\nsource = \"account\"\nvps_id = \"{VPS}\"\nbase_url = \"{}\"",
        sim.base_url()
    ));
    let mut hostup = HostUp::with_http(fast_http(), hostup(&config), key());
    let a = hostup.fetch().await.unwrap();
    let mut got: Vec<(String, Option<Ipv6Addr>, String)> = a
        .prefixes
        .iter()
        .map(|p| (p.prefix.to_string(), p.next_hop, p.origin.clone()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (
                "2001:db8:42:100::/64".into(),
                Some(v6("2001:db8:1::12")),
                "ripv6rt_sim000001".into()
            ),
            (
                "2001:db8:77::/48".into(),
                Some(v6("2001:db8:1::10")),
                "ripv6rt_48 \"whole pool\"".into()
            ),
            (
                "2001:db8:88:100::/56".into(),
                Some(v6("2001:db8:1::11")),
                "ripv6rt_56".into()
            ),
        ]
    );
    assert_eq!(sim.count("GET", "/api/v2/routed-ipv6"), 1);
    assert_eq!(sim.count("GET", "/api/v2/vps"), 0, "the account view only");

    // A route that disappears is withdrawn; the others stay.
    sim.update(|s| s.account_routes.retain(|r| r.id != "ripv6rt_48"));
    let a = hostup.fetch().await.unwrap();
    assert_eq!(a.prefixes.len(), 2);
    assert!(
        a.prefixes
            .iter()
            .all(|p| p.prefix != net("2001:db8:77::/48"))
    );

    // Faults are errors, never "no routes".
    sim.push_fault(Fault::status(503, "service_unavailable"), 1);
    let e = hostup.fetch().await.unwrap_err();
    assert_eq!(status_of(&e).0, 503);
    sim.push_fault(Fault::body(200, r#"{"available":true}"#), 1);
    let e = hostup.fetch().await.unwrap_err();
    assert!(e.to_string().contains("no pools array"), "{e}");
    no_token(&e);
}

/// An account view routing `count` /64s of pool ripv6_big to this VPS, the i-th via
/// `hop(i)`.
fn many_routes(count: usize, hop: impl Fn(usize) -> Ipv6Addr) -> SimState {
    let mut state = account_state();
    state.account_routes.clear();
    let pool = ("ripv6_big", net("2001:db8:99::/48"));
    for i in 0..count {
        state.account_routes.push(SimRoute::new(
            &format!("ripv6rt_{i}"),
            pool,
            net(&format!("2001:db8:99:{i:x}::/64")),
            hop(i),
            None,
            VPS,
        ));
    }
    state
}

/// More routes to this VPS than `provider.max_prefixes` (default 64) refuse the
/// whole answer (issue 14, item 9): a provider's fault or a hostile answer, never a
/// VPS's allocation. At the bound, it is an answer like any other.
#[tokio::test]
async fn an_answer_over_max_prefixes_is_refused() {
    let sim = start(many_routes(65, |_| v6("2001:db8:1::10"))).await;
    let base = format!(
        "kind = \"hostup\"\nsource = \"account\"\nvps_id = \"{VPS}\"\nbase_url = \"{}\"",
        sim.base_url()
    );
    for (extra, max) in [("", 64), ("\nmax_prefixes = 10", 10)] {
        let config = provider_config(&format!("{base}{extra}"));
        assert_eq!(config.max_prefixes, max);
        let mut poller = Poller::new(HostUp::with_http(fast_http(), hostup(&config), key()));
        sim.update(|s| s.account_routes.truncate(max + 1));
        let e = poller.poll(&config, &[]).await.unwrap_err();
        assert!(matches!(e, ProviderError::Refused(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!(
                "provider.max_prefixes = {max}: more than {max} prefixes routed to this host in one answer; refusing it"
            )
        );
        sim.update(|s| {
            s.account_routes.pop();
        });
        assert_eq!(poller.poll(&config, &[]).await.unwrap().prefixes.len(), max);
    }
}

/// An answer routing through more than a handful (8) of distinct next hops is
/// refused whole (issue 14, item 9); eight are an answer like any other.
#[tokio::test]
async fn an_answer_with_too_many_next_hops_is_refused() {
    let sim = start(many_routes(9, |i| {
        v6(&format!("2001:db8:1::{:x}", 0x10 + i))
    }))
    .await;
    let config = provider_config(&format!(
        "kind = \"hostup\"\nsource = \"account\"\nvps_id = \"{VPS}\"\nbase_url = \"{}\"",
        sim.base_url()
    ));
    let mut poller = Poller::new(HostUp::with_http(fast_http(), hostup(&config), key()));
    let e = poller.poll(&config, &[]).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "the answer: more than 8 distinct next hops; refusing it"
    );
    sim.update(|s| {
        s.account_routes.pop();
    });
    assert_eq!(poller.poll(&config, &[]).await.unwrap().prefixes.len(), 8);
}

// ----------------------------------------------------------------------------------------
// HostUp account writes (issue 14, item 1)

const POOL3: (&str, &str) = ("ripv6_pool3", "2001:db8:88::/48");

/// This VPS (next hop 2001:db8:1::10) with nothing routed; OTHER has a /56 of pool 3,
/// so the account has two pools.
fn write_state() -> SimState {
    let mut state = SimState::new(TOKEN)
        .with_vps(
            SimVps::new(VPS, "web-01", "192.0.2.10".parse().unwrap())
                .with_suggested_next_hop(v6("2001:db8:1::10")),
        )
        .with_vps(SimVps::new(OTHER, "db-01", "192.0.2.11".parse().unwrap()));
    state.account_routes = vec![SimRoute::new(
        "ripv6rt_other",
        (POOL3.0, net(POOL3.1)),
        net("2001:db8:88:200::/56"),
        v6("2001:db8:1::99"),
        None,
        OTHER,
    )];
    state
}

fn account_writer(sim: &SimHandle, extra: &str) -> (ProviderConfig, HostUp) {
    let config = provider_config(&format!(
        "kind = \"hostup\"\nsource = \"account\"\nvps_id = \"{VPS}\"\nbase_url = \"{}\"\n{extra}",
        sim.base_url()
    ));
    let hostup = HostUp::with_http(fast_http(), hostup(&config), key());
    (config, hostup)
}

/// Account mode never asks a per-VPS endpoint, whatever the method.
fn no_per_vps_requests(sim: &SimHandle) {
    for method in ["GET", "POST", "DELETE"] {
        assert_eq!(sim.count(method, "/api/v2/vps"), 0, "{method} /api/v2/vps…");
    }
}

fn routes_of(a: &routed6d::model::Assignment) -> Vec<(String, Option<Ipv6Addr>)> {
    a.prefixes
        .iter()
        .map(|p| (p.prefix.to_string(), p.next_hop))
        .collect()
}

#[tokio::test]
async fn account_allocate_creates_a_route_from_the_configured_pool() {
    let sim = start(write_state()).await;
    let (settings, hostup) = account_writer(
        &sim,
        "allocate = true\npool = \"ripv6_pool3\"\nprefix_length = 56",
    );
    let mut poller = Poller::new(hostup);
    let a = poller.poll(&settings, &[]).await.unwrap();
    // The first free /56 of pool 3 (OTHER holds :200::/56), to this VPS's next hop.
    assert_eq!(
        routes_of(&a),
        vec![("2001:db8:88::/56".into(), Some(v6("2001:db8:1::10")))]
    );
    assert_eq!(sim.count("POST", "/api/v2/routed-ipv6"), 1);
    let created: Vec<SimRoute> = sim
        .state()
        .account_routes
        .into_iter()
        .filter(|r| r.vps_id == VPS)
        .collect();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].pool_id, POOL3.0, "the configured pool");
    assert_eq!(created[0].prefix.prefix_len(), 56, "the configured length");
    // Routed now: the next poll reads it and asks for nothing.
    let a = poller.poll(&settings, &[]).await.unwrap();
    assert_eq!(routes_of(&a).len(), 1);
    assert_eq!(sim.count("POST", "/api/v2/routed-ipv6"), 1);
    no_per_vps_requests(&sim);

    // Two pools and no provider.pool: no choice is made for the operator.
    let sim = start(write_state()).await;
    let (settings, hostup) = account_writer(&sim, "allocate = true\nprefix_length = 64");
    let mut poller = Poller::new(hostup);
    let a = poller.poll(&settings, &[]).await.unwrap();
    assert!(a.prefixes.is_empty());
    let why = a.unavailable.unwrap();
    assert!(why.contains("set provider.pool"), "{why}");
    assert_eq!(sim.count("POST", "/api/v2/routed-ipv6"), 0);
    no_per_vps_requests(&sim);
}

#[tokio::test]
async fn account_allocate_waits_for_closed_gates_and_says_why() {
    let mut state = write_state();
    state.account_routes.clear();
    state
        .create_route_denied
        .insert(api::SIM_POOL.into(), "Pool is being migrated.".into());
    let sim = start(state).await;
    let (settings, hostup) = account_writer(&sim, "allocate = true\nprefix_length = 64");
    let mut poller = Poller::new(hostup);
    for _ in 0..3 {
        let a = poller.poll(&settings, &[]).await.unwrap();
        assert!(a.prefixes.is_empty());
        let why = a.unavailable.unwrap();
        assert!(why.contains("canCreateRoute"), "{why}");
        assert!(why.contains("Pool is being migrated."), "{why}");
    }
    assert_eq!(
        sim.count("POST", "/api/v2/routed-ipv6"),
        0,
        "no POST while closed"
    );

    // The destination's gate closed too; the pool's opens: still no POST.
    sim.set_available(VPS, false, Some("Assign IPv6 to net0 first."))
        .unwrap();
    sim.update(|s| s.create_route_denied.clear());
    let a = poller.poll(&settings, &[]).await.unwrap();
    let why = a.unavailable.unwrap();
    assert!(why.contains("canReceiveRoute"), "{why}");
    assert!(why.contains("Assign IPv6 to net0 first."), "{why}");
    assert_eq!(sim.count("POST", "/api/v2/routed-ipv6"), 0);
    // Asked directly, allocate refuses the same way without writing.
    let mut direct = account_writer(&sim, "allocate = true\nprefix_length = 64").1;
    let e = direct.allocate().await.unwrap_err();
    assert!(matches!(e, ProviderError::NotAllowed(_)), "{e:?}");
    assert!(!e.is_transient());
    assert_eq!(sim.count("POST", "/api/v2/routed-ipv6"), 0);

    // Both open: the answer changed, the route is created and routed here.
    sim.set_available(VPS, true, None).unwrap();
    let a = poller.poll(&settings, &[]).await.unwrap();
    assert_eq!(
        routes_of(&a),
        vec![("2001:db8:42::/64".into(), Some(v6("2001:db8:1::10")))]
    );
    assert_eq!(sim.count("POST", "/api/v2/routed-ipv6"), 1);
    no_per_vps_requests(&sim);
}

#[tokio::test]
async fn account_release_deletes_only_this_vps_routes_when_allowed() {
    let mut state = write_state();
    state.account_routes.push(SimRoute::new(
        "ripv6rt_mine",
        (POOL3.0, net(POOL3.1)),
        net("2001:db8:88:100::/56"),
        v6("2001:db8:1::10"),
        None,
        VPS,
    ));
    let mut locked = SimRoute::new(
        "ripv6rt_locked",
        ("ripv6_pool4", net("2001:db8:99::/48")),
        net("2001:db8:99::/64"),
        v6("2001:db8:1::10"),
        None,
        VPS,
    );
    locked.delete_denied = Some("Route is in use by a load balancer.".into());
    state.account_routes.push(locked);
    let sim = start(state).await;
    let (_, mut hostup) = account_writer(&sim, "");

    // One of this VPS's routes may not be deleted: nothing is deleted.
    let e = hostup.release().await.unwrap_err();
    assert!(matches!(e, ProviderError::NotAllowed(_)), "{e:?}");
    assert!(e.to_string().contains("canDelete"), "{e}");
    assert!(
        e.to_string()
            .contains("Route is in use by a load balancer."),
        "{e}"
    );
    assert_eq!(sim.count("DELETE", "/api/v2/routed-ipv6"), 0);
    assert_eq!(sim.state().account_routes.len(), 3);

    // Allowed: this VPS's routes go, OTHER's stays.
    sim.update(|s| {
        for r in &mut s.account_routes {
            r.delete_denied = None;
        }
    });
    let released = hostup.release().await.unwrap();
    assert!(released.released);
    let left: Vec<String> = sim
        .state()
        .account_routes
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left, vec!["ripv6rt_other".to_string()]);
    assert_eq!(
        sim.count("DELETE", "/api/v2/routed-ipv6/routes/ripv6rt_mine"),
        1
    );
    assert_eq!(
        sim.count("DELETE", "/api/v2/routed-ipv6/routes/ripv6rt_locked"),
        1
    );
    assert_eq!(
        sim.count("DELETE", "/api/v2/routed-ipv6/routes/ripv6rt_other"),
        0
    );
    // Nothing left to release.
    assert!(!hostup.release().await.unwrap().released);
    // refresh_next_hop has no account endpoint, and never falls back to the per-VPS one.
    assert!(hostup.refresh_next_hop().await.is_err());
    no_per_vps_requests(&sim);
}

// ----------------------------------------------------------------------------------------
// HostUp legacy

fn legacy_state() -> SimState {
    let mut state = SimState::new(TOKEN).with_vps(
        SimVps::new(VPS, "web-01", "192.0.2.10".parse().unwrap())
            .with_suggested_next_hop(v6("2001:db8:1::10")),
    );
    state.legacy_vms.insert(10048, VPS.into());
    state
}

#[tokio::test]
async fn legacy_polls_with_refresh_and_never_allocates_by_itself() {
    let sim = start(legacy_state()).await;
    let config = provider_config(&format!(
        "kind = \"hostup-legacy\"\nvmid = 10048\nbase_url = \"{}\"",
        sim.base_url()
    ));
    assert_eq!(config.poll_interval, Duration::from_secs(3600));
    let mut legacy = HostUpLegacy::with_http(fast_http(), legacy_settings(&config), key());
    let empty = legacy.fetch().await.unwrap();
    assert!(empty.prefixes.is_empty());
    assert!(
        sim.vps(VPS).unwrap().allocation.is_none(),
        "the poll must not allocate"
    );
    assert_eq!(sim.count("POST", "/api/vm/10048/routed-ipv6"), 1);
    assert_eq!(sim.count("GET", "/api/"), 0, "the legacy API has no GET");

    let allocated = legacy.allocate().await.unwrap();
    assert_eq!(allocated.prefixes.len(), 1);
    let routed = &allocated.prefixes[0];
    assert_eq!(routed.next_hop, Some(v6("2001:db8:1::10")));
    assert_eq!(routed.origin, "legacy allocation 1");

    // The documentation's trap: host bits in `prefix`, normalised.
    sim.update(|s| s.legacy_host_bits = true);
    let again = legacy.fetch().await.unwrap();
    assert_eq!(again.prefixes[0].prefix, routed.prefix);

    // The VPS's address changes at the provider: the next poll (a refresh) moves the
    // next hop to it.
    sim.set_suggested_next_hop(VPS, Some(v6("2001:db8:1::20")))
        .unwrap();
    assert_eq!(
        legacy.fetch().await.unwrap().prefixes[0].next_hop,
        Some(v6("2001:db8:1::20"))
    );

    let release = legacy.release().await.unwrap();
    assert!(release.released);
    assert_eq!(release.cooldown_days, Some(30));
    assert!(release.cooldown_until.as_deref().unwrap().contains('T'));
    assert!(legacy.fetch().await.unwrap().prefixes.is_empty());
}

/// `allocate = true` on the legacy API allocates whichever way the API says "no
/// allocation" to `refresh_next_hop`: `allocation: null`, or a 4xx problem (the
/// documented schema has no null allocation). Without `allocate` the problem stays a
/// failed poll, and nothing is created (issue 14, item 4).
#[tokio::test]
async fn legacy_allocates_whether_no_allocation_is_null_or_a_problem() {
    for problem in [false, true] {
        let sim = start(legacy_state()).await;
        sim.update(|s| s.legacy_refresh_problem = problem);
        let base = format!(
            "kind = \"hostup-legacy\"\nvmid = 10048\nbase_url = \"{}\"",
            sim.base_url()
        );

        let readonly = provider_config(&base);
        let legacy = HostUpLegacy::with_http(fast_http(), legacy_settings(&readonly), key());
        let mut poller = Poller::new(legacy);
        let first = poller.poll(&readonly, &[]).await;
        if problem {
            let e = first.unwrap_err();
            assert_eq!(
                status_of(&e),
                (404, Some("allocation_not_found".into()), None)
            );
        } else {
            assert!(first.unwrap().prefixes.is_empty());
        }
        assert!(
            sim.vps(VPS).unwrap().allocation.is_none(),
            "nothing created"
        );

        let allocating = provider_config(&format!("{base}\nallocate = true"));
        let legacy = HostUpLegacy::with_http(fast_http(), legacy_settings(&allocating), key());
        let mut poller = Poller::new(legacy);
        let a = poller
            .poll(&allocating, &[])
            .await
            .unwrap_or_else(|e| panic!("problem = {problem}: {e}"));
        assert_eq!(a.prefixes.len(), 1, "problem = {problem}");
        assert_eq!(a.prefixes[0].next_hop, Some(v6("2001:db8:1::10")));
        // Once allocated, the poll is a plain refresh again.
        let again = poller.poll(&allocating, &[]).await.unwrap();
        assert_eq!(again.prefixes, a.prefixes);
        let allocates = sim.requests().iter().filter(|r| r.method == "POST").count();
        assert_eq!(
            allocates, 4,
            "problem = {problem}: refresh, refresh, allocate, refresh"
        );
    }
}

/// The legacy API serves the same open readings as v2 (issue 14, item 7): a release
/// with nothing allocated answers `released: false` or a 404 `allocation_not_found`,
/// both "nothing released"; an allocate in the cooldown allocates or is refused with a
/// 409. With `allocate = true` every poll succeeds either way, and a refusal is asked
/// once, not at every poll.
#[tokio::test]
async fn legacy_release_and_cooldown_in_either_reading() {
    for strict in [false, true] {
        let sim = start(legacy_state()).await;
        sim.update(|s| {
            s.release_none_problem = strict;
            s.cooldown_refuses_allocate = strict;
        });
        let config = provider_config(&format!(
            "kind = \"hostup-legacy\"\nvmid = 10048\nbase_url = \"{}\"\nallocate = true",
            sim.base_url()
        ));
        let legacy = HostUpLegacy::with_http(fast_http(), legacy_settings(&config), key());
        let mut poller = Poller::new(legacy);
        let nothing = poller
            .provider
            .release()
            .await
            .unwrap_or_else(|e| panic!("strict = {strict}: {e}"));
        assert!(!nothing.released);

        assert_eq!(poller.poll(&config, &[]).await.unwrap().prefixes.len(), 1);
        assert!(poller.provider.release().await.unwrap().released);
        for _ in 0..3 {
            let a = poller
                .poll(&config, &[])
                .await
                .unwrap_or_else(|e| panic!("strict = {strict}: {e}"));
            assert_eq!(a.prefixes.len(), usize::from(!strict), "strict = {strict}");
        }
        let posts = sim.requests().iter().filter(|r| r.method == "POST").count();
        assert_eq!(
            posts, 6,
            "strict = {strict}: refresh+allocate, refresh+allocate, refresh, refresh"
        );
    }
}

#[tokio::test]
async fn legacy_errors_and_rate_limits() {
    let sim = start(legacy_state()).await;
    let config = provider_config(&format!(
        "kind = \"hostup-legacy\"\nvmid = 999\nbase_url = \"{}\"",
        sim.base_url()
    ));
    let mut unknown = HostUpLegacy::with_http(fast_http(), legacy_settings(&config), key());
    let e = unknown.fetch().await.unwrap_err();
    assert_eq!(status_of(&e), (404, Some("vm_not_found".into()), None));

    let config = provider_config(&format!(
        "kind = \"hostup-legacy\"\nvmid = 10048\nbase_url = \"{}\"",
        sim.base_url()
    ));
    let mut legacy = HostUpLegacy::with_http(fast_http(), legacy_settings(&config), key());
    sim.push_fault(Fault::rate_limited_seconds(42), 1);
    let e = legacy.fetch().await.unwrap_err();
    assert_eq!(status_of(&e).0, 429);
    assert_eq!(
        e.retry_after(),
        Some(Duration::from_secs(42)),
        "retryAfter from the legacy body"
    );
    sim.push_fault(
        Fault::body(200, r#"{"success":true,"data":{"created":false}}"#),
        1,
    );
    let e = legacy.fetch().await.unwrap_err();
    assert!(matches!(e, ProviderError::Invalid { .. }), "{e:?}");
    sim.push_fault(Fault::Close, 1);
    assert!(matches!(
        legacy.fetch().await.unwrap_err(),
        ProviderError::Transport { .. }
    ));

    // A wrong key is refused with the legacy error shape.
    let mut wrong = HostUpLegacy::with_http(
        fast_http(),
        legacy_settings(&config),
        Secret::new("wrong-key".into()),
    );
    let e = wrong.fetch().await.unwrap_err();
    assert_eq!(status_of(&e).1.as_deref(), Some("unauthorized"));
}

// ----------------------------------------------------------------------------------------
// DigitalOcean

const MINE: &str = "2604:a880:800:14::42c3:d000";
const MINE2: &str = "2604:a880:800:14::42c3:d001";
const FREE: &str = "2604:a880:800:14::42c3:d002";
const THEIRS: &str = "2604:a880:800:14::42c3:d003";

fn do_state() -> SimState {
    let mut state = SimState::new(TOKEN);
    state.digitalocean = SimDigitalOcean::default()
        .with_droplet(DROPLET, "web", Some(v6("2001:db8:1::2")))
        .with_droplet(42, "other", Some(v6("2001:db8:1::3")))
        .with_reserved(v6(MINE), Some(DROPLET))
        .with_reserved(v6(MINE2), Some(DROPLET))
        .with_reserved(v6(FREE), None)
        .with_reserved(v6(THEIRS), Some(42));
    state.digitalocean.metadata_droplet = Some(DROPLET);
    state
}

fn do_config(sim: &SimHandle, extra: &str) -> ProviderConfig {
    provider_config(&format!(
        "kind = \"digitalocean\"\nbase_url = \"{0}\"\nmetadata_url = \"{0}\"\n{extra}",
        sim.base_url()
    ))
}

fn addresses(a: &routed6d::model::Assignment) -> Vec<String> {
    let mut v: Vec<String> = a.prefixes.iter().map(|p| p.prefix.to_string()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn digitalocean_finds_the_droplet_and_follows_pagination() {
    let sim = start(do_state()).await;
    sim.update(|s| s.digitalocean.page_size = 1);
    let config = do_config(&sim, "");
    let mut provider = DigitalOcean::with_http(fast_http(), digitalocean(&config), key());
    assert!(provider.needs_identity());
    provider.identify(&[]).await.unwrap();
    assert_eq!(provider.droplet_id(), Some(DROPLET));
    assert_eq!(provider.host_id().as_deref(), Some("droplet 3164444"));

    let a = provider.fetch().await.unwrap();
    assert_eq!(
        addresses(&a),
        vec![format!("{MINE}/128"), format!("{MINE2}/128")]
    );
    assert!(a.prefixes.iter().all(|p| p.next_hop.is_none()));
    assert_eq!(a.prefixes[0].origin, format!("reserved_ipv6 {MINE}"));
    assert_eq!(
        sim.count("GET", "/v2/reserved_ipv6"),
        4,
        "four pages of one, following links.pages.next"
    );
    assert_eq!(sim.count("POST", "/v2/"), 0, "no writes without claim");
    assert!(!provider.wants_allocation(&a));

    // The metadata's id endpoint failing: the JSON document is used instead.
    let config = do_config(&sim, "");
    let mut again = DigitalOcean::with_http(fast_http(), digitalocean(&config), key());
    sim.push_fault(Fault::status(404, "not_found"), 1);
    again.identify(&[]).await.unwrap();
    assert_eq!(again.droplet_id(), Some(DROPLET));
    assert!(sim.requests().iter().any(|r| r.path == "/metadata/v1.json"));

    // Unassigned elsewhere: withdrawn at the next poll.
    sim.update(|s| {
        s.digitalocean
            .reserved
            .get_mut(&v6(MINE2))
            .unwrap()
            .droplet_id = None
    });
    assert_eq!(
        addresses(&provider.fetch().await.unwrap()),
        vec![format!("{MINE}/128")]
    );
}

#[tokio::test]
async fn digitalocean_configured_addresses_and_claims() {
    let sim = start(do_state()).await;
    sim.update(|s| s.digitalocean.action_polls = 2);
    let config = do_config(
        &sim,
        &format!("droplet_id = {DROPLET}\nreserved_ipv6 = [\"{MINE}\", \"{FREE}\", \"{THEIRS}\"]"),
    );
    assert!(!config.allocate());
    let mut readonly = DigitalOcean::with_http(fast_http(), digitalocean(&config), key());
    let a = readonly.fetch().await.unwrap();
    assert_eq!(addresses(&a), vec![format!("{MINE}/128")]);
    assert!(
        !readonly.wants_allocation(&a),
        "no claim without claim = true"
    );
    assert!(matches!(
        readonly.release().await,
        Err(ProviderError::Unsupported(m)) if m.contains("claim")
    ));
    assert_eq!(sim.count("POST", "/v2/"), 0);
    assert_eq!(sim.count("GET", "/metadata/"), 0, "droplet_id was given");

    let config = do_config(
        &sim,
        &format!(
            "droplet_id = {DROPLET}\nreserved_ipv6 = [\"{MINE}\", \"{FREE}\", \"{THEIRS}\"]\nclaim = true"
        ),
    );
    assert!(config.allocate());
    let mut claiming = DigitalOcean::with_http(fast_http(), digitalocean(&config), key());
    claiming.action_poll = Duration::from_millis(10);
    let a = claiming.fetch().await.unwrap();
    assert!(claiming.wants_allocation(&a));
    assert!(claiming.missing_what().contains(FREE));
    let after = claiming.allocate().await.unwrap();
    assert_eq!(
        addresses(&after),
        vec![format!("{MINE}/128"), format!("{FREE}/128")],
        "the free address is claimed; another droplet's is never taken"
    );
    assert_eq!(sim.count("POST", "/v2/reserved_ipv6/"), 1);
    assert_eq!(
        sim.count("GET", "/v2/actions/"),
        2,
        "polled until completed"
    );
    assert!(!claiming.wants_allocation(&after));

    // A failing action is an error and changes nothing.
    sim.update(|s| {
        s.digitalocean
            .reserved
            .get_mut(&v6(FREE))
            .unwrap()
            .droplet_id = None;
        s.digitalocean.fail_actions = true;
    });
    claiming.fetch().await.unwrap();
    match claiming.allocate().await {
        Err(ProviderError::ActionFailed(m)) => assert!(m.contains("errored"), "{m}"),
        other => panic!("{other:?}"),
    }
    sim.update(|s| s.digitalocean.fail_actions = false);

    // release unassigns what is assigned here.
    let release = claiming.release().await.unwrap();
    assert!(release.released);
    let state = sim.state().digitalocean;
    assert_eq!(state.reserved[&v6(MINE)].droplet_id, None);
    assert_eq!(state.reserved[&v6(THEIRS)].droplet_id, Some(42));
}

/// A token without droplet:read: DigitalOcean leaves the `droplet` key out, which says
/// nothing about where the address is. The metadata service settles this droplet's one
/// reserved IPv6; anything still unknown fails the poll naming the scope, so it is
/// never withdrawn and never claimed (issue 14, item 5).
#[tokio::test]
async fn digitalocean_without_droplet_read_never_withdraws_or_claims() {
    let sim = start(do_state()).await;
    sim.update(|s| s.digitalocean.without_droplet_read = true);

    // The metadata service names MINE as this droplet's reserved IPv6: programmed.
    let config = do_config(
        &sim,
        &format!("droplet_id = {DROPLET}\nreserved_ipv6 = [\"{MINE}\"]"),
    );
    let mut one = DigitalOcean::with_http(fast_http(), digitalocean(&config), key());
    let a = one.fetch().await.unwrap();
    assert_eq!(addresses(&a), vec![format!("{MINE}/128")]);
    assert_eq!(sim.count("GET", "/metadata/v1.json"), 1, "the cross-check");

    // MINE2 is assigned here too, but nothing the token may read says so: the poll
    // fails (the kernel keeps what it has) and names the scope.
    let config = do_config(
        &sim,
        &format!("droplet_id = {DROPLET}\nreserved_ipv6 = [\"{MINE}\", \"{MINE2}\"]"),
    );
    let mut two = DigitalOcean::with_http(fast_http(), digitalocean(&config), key());
    let e = two.fetch().await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains(&format!("reserved IPv6 {MINE2} ")), "{text}");
    assert!(
        !text.contains(&format!("{MINE},")),
        "MINE is settled: {text}"
    );
    assert!(text.contains("lacks the droplet:read scope"), "{text}");
    no_token(&e);

    // The whole account listed: every other droplet's address is unknown too.
    let config = do_config(&sim, &format!("droplet_id = {DROPLET}"));
    let mut listing = DigitalOcean::with_http(fast_http(), digitalocean(&config), key());
    assert!(listing.fetch().await.is_err());

    // An unassigned address without droplet:read is unknown: never claimed.
    let config = do_config(
        &sim,
        &format!("droplet_id = {DROPLET}\nreserved_ipv6 = [\"{FREE}\"]\nclaim = true"),
    );
    let mut claiming = DigitalOcean::with_http(fast_http(), digitalocean(&config), key());
    assert!(claiming.fetch().await.is_err());
    assert!(!claiming.wants_allocation(&Default::default()));
    assert_eq!(sim.count("POST", "/v2/"), 0, "no claim");

    // With the scope back, the same configuration reads as before.
    sim.update(|s| s.digitalocean.without_droplet_read = false);
    assert_eq!(
        addresses(&two.fetch().await.unwrap()),
        vec![format!("{MINE}/128"), format!("{MINE2}/128")]
    );
}

/// DigitalOcean assigns a reserved IPv6 only to a droplet of its region: a claim for
/// one reserved elsewhere is refused here, with one line, and never sent.
#[tokio::test]
async fn digitalocean_claim_refuses_an_address_of_another_region() {
    let sim = start(do_state()).await;
    const AMS: &str = "2604:a880:900:14::1";
    sim.update(|s| {
        s.digitalocean.reserved.insert(
            v6(AMS),
            routed6d_sim::api::SimReserved {
                ip: v6(AMS),
                region: "ams3".into(),
                droplet_id: None,
            },
        )
    });
    let config = do_config(
        &sim,
        &format!("droplet_id = {DROPLET}\nreserved_ipv6 = [\"{AMS}\", \"{FREE}\"]\nclaim = true"),
    );
    let mut claiming = DigitalOcean::with_http(fast_http(), digitalocean(&config), key());
    claiming.action_poll = Duration::from_millis(10);
    let a = claiming.fetch().await.unwrap();
    assert!(claiming.wants_allocation(&a));
    assert!(claiming.missing_what().contains(FREE));
    assert!(
        !claiming.missing_what().contains(AMS),
        "{}",
        claiming.missing_what()
    );
    let after = claiming.allocate().await.unwrap();
    assert_eq!(addresses(&after), vec![format!("{FREE}/128")]);
    assert!(!claiming.wants_allocation(&after), "nothing left to claim");
    assert_eq!(
        sim.count("POST", &format!("/v2/reserved_ipv6/{AMS}/")),
        0,
        "the other region's address is never asked for"
    );
    assert_eq!(sim.state().digitalocean.reserved[&v6(AMS)].droplet_id, None);
}

/// One configured address that DigitalOcean answers 404 `not_found` for no longer
/// exists: it is withdrawn while the others go on (issue 14, item 6).
#[tokio::test]
async fn digitalocean_a_vanished_address_is_withdrawn_alone() {
    let sim = start(do_state()).await;
    let config = do_config(
        &sim,
        &format!("droplet_id = {DROPLET}\nreserved_ipv6 = [\"{MINE}\", \"{MINE2}\"]"),
    );
    let mut provider = DigitalOcean::with_http(fast_http(), digitalocean(&config), key());
    assert_eq!(
        addresses(&provider.fetch().await.unwrap()),
        vec![format!("{MINE}/128"), format!("{MINE2}/128")]
    );
    // Released from the account: DigitalOcean answers 404 {"id":"not_found"}.
    sim.update(|s| s.digitalocean.reserved.remove(&v6(MINE2)));
    let a = provider.fetch().await.unwrap();
    assert_eq!(addresses(&a), vec![format!("{MINE}/128")], "{a:?}");
    assert_eq!(sim.count("GET", &format!("/v2/reserved_ipv6/{MINE2}")), 2);
    // Every configured address gone: a well-formed "nothing here".
    sim.update(|s| s.digitalocean.reserved.remove(&v6(MINE)));
    assert!(provider.fetch().await.unwrap().prefixes.is_empty());
}

/// A page with more items than the `per_page` asked for is not DigitalOcean's: the
/// answer is refused and nothing of it is used (issue 14, item 9).
#[tokio::test]
async fn digitalocean_a_page_larger_than_asked_is_refused() {
    let sim = start(do_state()).await;
    let config = do_config(&sim, &format!("droplet_id = {DROPLET}"));
    let mut provider = DigitalOcean::with_http(fast_http(), digitalocean(&config), key());
    let items: Vec<String> = (0..=200)
        .map(|i| {
            format!(r#"{{"ip":"2604:a880:800:14::{i:x}","region_slug":"nyc3","droplet":null}}"#)
        })
        .collect();
    let body = format!(
        r#"{{"reserved_ipv6s":[{}],"links":{{}},"meta":{{"total":201}}}}"#,
        items.join(",")
    );
    sim.push_fault(Fault::body(200, &body), 1);
    let e = provider.fetch().await.unwrap_err();
    assert!(
        e.to_string()
            .contains("page 1 holds 201 reserved IPv6 addresses, more than the per_page=200"),
        "{e}"
    );
    assert_eq!(provider.fetch().await.unwrap().prefixes.len(), 2);
}

#[tokio::test]
async fn digitalocean_errors_and_rate_limits() {
    let sim = start(do_state()).await;
    // A 404 that is not DigitalOcean's "no such reserved IPv6" (a proxy's page) fails
    // the poll.
    let config = do_config(
        &sim,
        &format!("droplet_id = {DROPLET}\nreserved_ipv6 = [\"{MINE}\"]"),
    );
    let mut provider = DigitalOcean::with_http(fast_http(), digitalocean(&config), key());
    sim.push_fault(Fault::body(404, "<html>Not Found</html>"), 1);
    let e = provider.fetch().await.unwrap_err();
    assert_eq!(status_of(&e).0, 404);

    let config = do_config(&sim, &format!("droplet_id = {DROPLET}"));
    let mut provider = DigitalOcean::with_http(fast_http(), digitalocean(&config), key());
    sim.push_fault(Fault::rate_limited_seconds(9), 1);
    let e = provider.fetch().await.unwrap_err();
    assert_eq!(
        status_of(&e),
        (
            429,
            Some("too_many_requests".into()),
            Some(Duration::from_secs(9))
        )
    );
    // Without retry-after: until ratelimit-reset (epoch seconds, 60 s ahead in the sim).
    sim.push_fault(Fault::rate_limited(), 1);
    let e = provider.fetch().await.unwrap_err();
    let wait = e.retry_after().expect("a wait from ratelimit-reset");
    assert!(
        wait >= Duration::from_secs(58) && wait <= Duration::from_secs(60),
        "{wait:?}"
    );
    sim.push_fault(Fault::wrong_shape(), 1);
    assert!(matches!(
        provider.fetch().await.unwrap_err(),
        ProviderError::Invalid { .. }
    ));
    sim.push_fault(Fault::Hang, 1);
    assert!(matches!(
        provider.fetch().await.unwrap_err(),
        ProviderError::Transport { .. }
    ));
    no_token(&e);
    // The metadata service down and no droplet_id: the droplet cannot be found.
    sim.update(|s| s.digitalocean.metadata_droplet = None);
    let config = do_config(&sim, "");
    let mut provider = DigitalOcean::with_http(fast_http(), digitalocean(&config), key());
    assert!(provider.identify(&[]).await.is_err());
    assert!(provider.fetch().await.is_err(), "no droplet, no answer");
}

// ----------------------------------------------------------------------------------------
// Static

#[tokio::test]
async fn static_routes_come_from_the_config_alone() {
    let config = load(
        "kind = \"static\"\nroutes = [ { prefix = \"2001:db8:42:100::/64\", next_hop = \"2001:db8::10\" } ]",
    );
    assert!(config.provider.api().is_none(), "no API, no token file");
    let mut provider = AnyProvider::new(&config).unwrap();
    assert!(matches!(provider, AnyProvider::Static(_)), "no HTTP client");
    assert!(!provider.needs_identity());
    let a = provider.fetch().await.unwrap();
    assert_eq!(a.prefixes.len(), 1);
    assert_eq!(a.prefixes[0].origin, "static routes[0]");
    assert_eq!(a.prefixes[0].next_hop, Some(v6("2001:db8::10")));
    assert!(provider.release().await.is_err());
}

/// The new state can be driven over the HTTP control API too (a sim in another process).
#[tokio::test]
async fn http_controls_change_every_provider_side() {
    let sim = start(do_state()).await;
    routed6d::provider::http::install_crypto_provider();
    let client = reqwest::Client::new();
    let post = |path: &'static str, body: serde_json::Value| {
        let request = client
            .post(format!("{}/_sim/{path}", sim.base_url()))
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            assert!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
        }
    };
    post(
        "digitalocean/reserved",
        serde_json::json!({ "ip": FREE, "dropletId": DROPLET }),
    )
    .await;
    post(
        "account-routes",
        serde_json::json!({ "id": "ripv6rt_c", "poolId": "ripv6_p", "poolCidr": "2001:db8:99::/48",
            "prefix": "2001:db8:99:100::/56", "nextHop": "2001:db8:1::10", "vpsId": VPS }),
    )
    .await;
    post("legacy-vms", serde_json::json!({ "vmid": 7, "vpsId": VPS })).await;
    let state = sim.state();
    assert_eq!(
        state.digitalocean.reserved[&v6(FREE)].droplet_id,
        Some(DROPLET)
    );
    assert_eq!(state.account_routes[0].status, "active");
    assert_eq!(state.legacy_vms.get(&7).map(String::as_str), Some(VPS));
    assert_eq!(
        state.router_table().get(&net(&format!("{FREE}/128"))),
        Some(&v6("2001:db8:1::2")),
        "the router routes the reserved IPv6 to the droplet's address"
    );
    let response = client
        .delete(format!("{}/_sim/account-routes/ripv6rt_c", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    assert!(sim.state().account_routes.is_empty());
}
