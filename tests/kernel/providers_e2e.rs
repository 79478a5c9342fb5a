//! Every provider kind end to end on a real kernel: a provider router and a VPS in
//! private network namespaces, the simulated provider (HostUp account view, HostUp
//! legacy, DigitalOcean + metadata service) on the VPS's loopback — or no API at all
//! for static routes — and the real `routed6d run` binary. For each kind: a ping from
//! the router reaches an address routed to the VPS, a change at the provider (or in the
//! config, for static) converges, and an outage changes nothing in the kernel.
//! Needs root; without it every test says SKIPPED loudly.

use crate::common;

use std::net::Ipv6Addr;
use std::time::Duration;

use common::{HOP1, HOP2, Harness, TOKEN, VPS_ID, has_address, has_owned};
use ipnet::Ipv6Net;
use routed6d::model::{DEFAULT_PROTOCOL, ObservedState};
use routed6d_sim::api::{Fault, SimDigitalOcean, SimRoute, SimState, SimVps};
use routed6d_sim::demo::owned_lines;
use routed6d_sim::netns;

const DROPLET: u64 = 3164444;
const CONVERGE: Duration = Duration::from_secs(10);

fn skip_unless_root(test: &str) -> bool {
    common::skip_unless_root("providers_e2e", test)
}

fn net(s: &str) -> Ipv6Net {
    s.parse().expect("prefix")
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().expect("address")
}

/// `::1` of `prefix`.
fn one(prefix: &str) -> Ipv6Addr {
    routed6d::desired::place_host(net(prefix), Ipv6Addr::LOCALHOST)
}

/// The shared harness with `[provider]` from `provider(base_url)`, polled every second.
fn harness(tag: &str, state: Option<SimState>, provider: impl Fn(&str) -> String) -> Harness {
    Harness::new(tag, state, |base| {
        format!("{}\npoll_interval = \"1s\"", provider(base))
    })
}

/// This file's shorthands on the shared harness.
trait E2e {
    /// One echo reply from the provider's router within 5 s.
    fn ping5(&self, addr: Ipv6Addr) -> bool;
    /// A routed6d command: (success, stdout, stderr); the token must not show.
    fn cli3(&self, args: &[&str]) -> (bool, String, String);
    fn hangup(&self);
    /// Hold a sticky fault for a few polls: nothing in the kernel may change.
    fn outage_changes_nothing(&self, fault: Fault);
}

impl E2e for Harness {
    fn ping5(&self, addr: Ipv6Addr) -> bool {
        self.ping(addr, Duration::from_secs(5))
    }

    fn cli3(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.cli(args);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn hangup(&self) {
        self.kill(libc::SIGHUP);
    }

    fn outage_changes_nothing(&self, fault: Fault) {
        // The daemon asks again only after applying the last answer: once a new request
        // arrives, the kernel holds everything that answer called for.
        let asked = self.sim().requests().len();
        netns::wait_until(CONVERGE, || self.sim().requests().len() > asked)
            .expect("the daemon polls");
        let before = self.owned();
        let polls = self.sim().requests().len();
        let recoveries = self.log().matches("recovered").count();
        self.sim().set_sticky_fault(fault);
        netns::wait_until(CONVERGE, || self.sim().requests().len() >= polls + 3)
            .expect("the daemon kept polling during the outage");
        assert_eq!(self.owned(), before, "the outage changed the kernel");
        self.sim().clear_faults();
        assert!(
            netns::wait_until(CONVERGE, || self.log().matches("recovered").count()
                > recoveries)
            .is_some(),
            "{}",
            self.log()
        );
        assert_eq!(self.owned(), before);
    }
}

fn has_owned_route(state: &ObservedState, dst: &str) -> bool {
    state
        .routes
        .iter()
        .any(|r| r.protocol == DEFAULT_PROTOCOL && r.route.dst == net(dst))
}

// ---------------------------------------------------------------------------------------

#[test]
fn hostup_account_routes_are_all_routed_and_withdrawn_one_by_one() {
    if skip_unless_root("hostup_account") {
        return;
    }
    let mut state = SimState::new(TOKEN).with_vps(SimVps::new(
        VPS_ID,
        "e2e",
        netns::VPS_ADDR4.parse().expect("ip"),
    ));
    state.account_routes = vec![
        SimRoute::new(
            "ripv6rt_e2e56",
            ("ripv6_pool2", net("2001:db8:88::/48")),
            net("2001:db8:88:100::/56"),
            HOP2,
            Some("lab"),
            VPS_ID,
        ),
        SimRoute::new(
            "ripv6rt_e2eother",
            ("ripv6_pool2", net("2001:db8:88::/48")),
            net("2001:db8:88:200::/56"),
            v6("2001:db8:1::99"),
            None,
            "vps_someone_else",
        ),
    ];
    let mut h = harness("acct", Some(state), |base| {
        format!(
            "kind = \"hostup\"\nsource = \"account\"\nvps_id = \"{VPS_ID}\"\nbase_url = \"{base}\""
        )
    });
    h.sim()
        .set_allocation(VPS_ID, net("2001:db8:42:100::/64"), HOP1)
        .expect("allocation");
    h.start();
    h.wait("both routes programmed", |s| {
        has_owned(s, one("2001:db8:42:100::/64"))
            && has_owned(s, one("2001:db8:88:100::/56"))
            && has_owned(s, HOP1)
            && has_owned(s, HOP2)
    });
    assert!(
        !has_address(&h.kernel(), one("2001:db8:88:200::/56")),
        "not ours"
    );
    assert!(h.ping5(one("2001:db8:42:100::/64")), "{}", h.log());
    assert!(h.ping5(one("2001:db8:88:100::/56")), "{}", h.log());

    // status names the provider object of every kernel object.
    let (ok, status, stderr) = h.cli3(&["status"]);
    assert!(ok, "{stderr}");
    assert!(
        status
            .contains("routed:    2001:db8:88:100::/56 via 2001:db8:1::20 (ripv6rt_e2e56 \"lab\")"),
        "{status}"
    );
    assert!(
        status.contains(&format!(
            "addr {}/128 dev lo  # ripv6rt_e2e56 \"lab\"",
            one("2001:db8:88:100::/56")
        )),
        "{status}"
    );
    assert!(status.contains("# ripv6rt_sim"), "{status}");

    // A route that disappears is withdrawn; the others stay.
    h.sim()
        .update(|s| s.account_routes.retain(|r| r.id != "ripv6rt_e2e56"));
    h.wait("the /56 withdrawn", |s| {
        !has_address(s, one("2001:db8:88:100::/56"))
            && !has_owned_route(s, "2001:db8:88:100::/56")
            && !has_address(s, HOP2)
    });
    assert!(has_owned(&h.kernel(), one("2001:db8:42:100::/64")));
    assert!(h.ping5(one("2001:db8:42:100::/64")));
    // A new /48 arrives.
    h.sim().update(|s| {
        s.account_routes.push(SimRoute::new(
            "ripv6rt_e2e48",
            ("ripv6_pool3", net("2001:db8:99::/48")),
            net("2001:db8:99::/48"),
            HOP2,
            None,
            VPS_ID,
        ))
    });
    h.wait("the /48 programmed", |s| {
        has_owned(s, one("2001:db8:99::/48"))
    });
    assert!(h.ping5(one("2001:db8:99::/48")));

    h.outage_changes_nothing(Fault::status(503, "service_unavailable"));
    assert!(
        h.ping5(one("2001:db8:99::/48")),
        "reachable after the outage"
    );
}

#[test]
fn hostup_legacy_polls_by_refresh_and_follows_the_next_hop() {
    if skip_unless_root("hostup_legacy") {
        return;
    }
    let mut state = SimState::new(TOKEN).with_vps(
        SimVps::new(VPS_ID, "e2e", netns::VPS_ADDR4.parse().expect("ip"))
            .with_suggested_next_hop(HOP1),
    );
    state.legacy_vms.insert(10048, VPS_ID.into());
    let mut h = harness("lgcy", Some(state), |base| {
        format!("kind = \"hostup-legacy\"\nvmid = 10048\nbase_url = \"{base}\"")
    });
    h.sim()
        .set_allocation(VPS_ID, net("2001:db8:42:100::/64"), HOP1)
        .expect("allocation");
    // The documentation's trap: prefix written with host bits.
    h.sim().update(|s| s.legacy_host_bits = true);
    h.start();
    let prefix = "2001:db8:42:100::/64";
    h.wait("programmed", |s| {
        has_owned(s, one(prefix)) && has_owned(s, HOP1)
    });
    assert!(h.ping5(one(prefix)), "{}", h.log());
    assert_eq!(
        h.sim().count("GET", "/api/"),
        0,
        "the legacy API has no GET"
    );

    // The VPS's address changes at HostUp: the next refresh moves the next hop.
    h.sim()
        .set_suggested_next_hop(VPS_ID, Some(HOP2))
        .expect("suggest");
    h.wait("second next hop", |s| {
        has_owned(s, HOP2) && !has_address(s, HOP1)
    });
    assert!(h.ping5(one(prefix)), "through the new next hop");
    let log = h.log();
    assert_eq!(
        log.matches("has host bits set; using the network").count(),
        1,
        "the host-bits warning is logged once\n{log}"
    );

    h.outage_changes_nothing(Fault::rate_limited_seconds(1));

    // Released elsewhere: withdrawn, and the poll never allocates a new one.
    h.sim().clear_allocation(VPS_ID).expect("clear");
    h.wait("withdrawn", |s| owned_lines(s).is_empty());
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        h.sim().vps(VPS_ID).and_then(|v| v.allocation).is_none(),
        "refresh_next_hop polls never allocate"
    );
}

#[test]
fn digitalocean_reserved_ipv6_follow_their_assignment() {
    if skip_unless_root("digitalocean") {
        return;
    }
    let r1 = v6("2001:db8:77::5");
    let r2 = v6("2001:db8:77::6");
    let mut state = SimState::new(TOKEN);
    state.digitalocean = SimDigitalOcean::default()
        .with_droplet(DROPLET, "e2e", Some(netns::VPS_ADDR))
        .with_droplet(42, "other", Some(v6("2001:db8:1::99")))
        .with_reserved(r1, Some(DROPLET))
        .with_reserved(r2, None);
    state.digitalocean.metadata_droplet = Some(DROPLET);
    state.digitalocean.page_size = 1;
    let mut h = harness("docn", Some(state), |base| {
        format!("kind = \"digitalocean\"\nbase_url = \"{base}\"\nmetadata_url = \"{base}\"")
    });
    h.start();
    h.wait("reserved IPv6 on lo", |s| has_owned(s, r1));
    let state = h.kernel();
    let on_lo = state
        .addresses
        .iter()
        .find(|a| a.address.addr == r1)
        .expect("r1");
    assert_eq!(
        (on_lo.address.ifname.as_str(), on_lo.address.prefix_len),
        ("lo", 128)
    );
    assert_eq!(
        owned_lines(&state).len(),
        1,
        "nothing else: {:?}",
        owned_lines(&state)
    );
    assert!(h.ping5(r1), "{}", h.log());
    assert!(
        h.log()
            .contains("found this droplet's id in the metadata service")
    );
    assert_eq!(h.sim().count("POST", "/v2/"), 0, "no writes without claim");

    let (ok, status, stderr) = h.cli3(&["status"]);
    assert!(ok, "{stderr}");
    assert!(
        status.contains(&format!("addr {r1}/128 dev lo  # reserved_ipv6 {r1}")),
        "{status}"
    );
    assert!(status.contains("droplet 3164444"), "{status}");

    // Assigned at DigitalOcean: appears; unassigned: goes (and the router stops routing it).
    h.sim()
        .update(|s| s.digitalocean.reserved.get_mut(&r2).expect("r2").droplet_id = Some(DROPLET));
    h.wait("r2 added", |s| has_owned(s, r2));
    assert!(h.ping5(r2));
    h.sim()
        .update(|s| s.digitalocean.reserved.get_mut(&r1).expect("r1").droplet_id = Some(42));
    h.wait("r1 withdrawn", |s| !has_address(s, r1) && has_owned(s, r2));

    // A burst 429 with retry-after (one without it waits for ratelimit-reset, a minute
    // here: tests/unprivileged/providers_sim.rs checks that wait).
    h.outage_changes_nothing(Fault::rate_limited_seconds(1));
    h.outage_changes_nothing(Fault::status(500, "server_error"));
    assert!(h.ping5(r2));
}

#[test]
fn digitalocean_outbound_source_sends_from_the_reserved_ipv6_and_withdraws_exactly() {
    if skip_unless_root("digitalocean_outbound") {
        return;
    }
    let r1 = v6("2001:db8:77::5");
    let mut state = SimState::new(TOKEN);
    state.digitalocean = SimDigitalOcean::default()
        .with_droplet(DROPLET, "e2e", Some(netns::VPS_ADDR))
        .with_reserved(r1, Some(DROPLET));
    let mut h = harness("dosrc", Some(state), |base| {
        format!(
            "kind = \"digitalocean\"\nbase_url = \"{base}\"\ndroplet_id = {DROPLET}\noutbound_source = true"
        )
    });
    h.edit_config("[daemon]\n", "[daemon]\non_stop = \"withdraw\"\n");
    // Somewhere beyond the router: only the default route leads there.
    let far = "2001:db8:ffff::1";
    h.testbed
        .router
        .ip(&["-6", "addr", "add", &format!("{far}/128"), "dev", "lo"])
        .expect("far address");
    let original = h
        .testbed
        .vps
        .ip(&["-6", "route", "show", "default"])
        .expect("default route");
    h.start();
    h.wait("reserved IPv6 and the default route copy", |s| {
        has_owned(s, r1) && has_owned_route(s, "::/0")
    });
    let chosen = h
        .testbed
        .vps
        .ip(&["-6", "route", "get", far])
        .expect("route get");
    assert!(chosen.contains(&format!("src {r1}")), "{chosen}");
    // Real traffic: the VPS pings out without naming a source; the reply can only come
    // back if the packet left from the reserved IPv6 (the router routes it to the VPS).
    common::ensure_tool("ping", "iputils-ping");
    let pinged = h
        .testbed
        .vps
        .command("ping")
        .args(["-6", "-n", "-q", "-c", "1", "-w", "5", far])
        .output()
        .expect("ping");
    assert!(
        pinged.status.success(),
        "{}",
        String::from_utf8_lossy(&pinged.stdout)
    );
    let ours = h
        .kernel()
        .routes
        .into_iter()
        .find(|r| r.protocol == routed6d::model::DEFAULT_PROTOCOL && r.route.dst.prefix_len() == 0)
        .expect("owned default route");
    assert_eq!(
        ours.route.to_string(),
        format!(
            "default via {} dev eth0 src {r1} metric 1023",
            netns::ROUTER_ADDR
        )
    );

    h.kill(libc::SIGTERM);
    let mut daemon = h.daemon.take().expect("daemon");
    assert!(daemon.wait().expect("wait").success());
    let after = h
        .testbed
        .vps
        .ip(&["-6", "route", "show", "default"])
        .expect("default route");
    assert_eq!(
        after, original,
        "the original default route is exactly as it was"
    );
    assert!(owned_lines(&h.kernel()).is_empty());
}

#[test]
fn digitalocean_claim_assigns_and_release_unassigns() {
    if skip_unless_root("digitalocean_claim") {
        return;
    }
    let r3 = v6("2001:db8:77::7");
    let mut state = SimState::new(TOKEN);
    state.digitalocean = SimDigitalOcean::default()
        .with_droplet(DROPLET, "e2e", Some(netns::VPS_ADDR))
        .with_reserved(r3, None);
    state.digitalocean.action_polls = 1;
    let h = harness("dclm", Some(state), |base| {
        format!(
            "kind = \"digitalocean\"\nbase_url = \"{base}\"\ndroplet_id = {DROPLET}\nreserved_ipv6 = [\"{r3}\"]\nclaim = true"
        )
    });
    let (ok, plan, stderr) = h.cli3(&["plan"]);
    assert!(ok, "{stderr}");
    assert!(
        plan.contains("nothing to change"),
        "unassigned: nothing yet\n{plan}"
    );
    assert_eq!(h.sim().count("POST", "/v2/"), 0, "plan never writes");

    let (ok, out, stderr) = h.cli3(&["once"]);
    assert!(ok, "{out}{stderr}");
    assert!(has_owned(&h.kernel(), r3), "{out}{stderr}");
    assert_eq!(h.sim().count("POST", "/v2/reserved_ipv6/"), 1);
    assert!(
        h.sim().count("GET", "/v2/actions/") >= 1,
        "the action was followed"
    );
    assert!(h.ping5(r3));

    let (ok, out, stderr) = h.cli3(&["release", "--yes"]);
    assert!(ok, "{out}{stderr}");
    assert!(out.contains("released: yes"), "{out}");
    assert!(h.owned().is_empty(), "release removes what routed6d owned");
    assert_eq!(h.sim().state().digitalocean.reserved[&r3].droplet_id, None);
}

#[test]
fn static_routes_need_no_api_and_follow_config_edits() {
    if skip_unless_root("static") {
        return;
    }
    let prefix = "2001:db8:42:100::/64";
    let mut h = harness("stat", None, |_| {
        format!(
            "kind = \"static\"\nroutes = [ {{ prefix = \"{prefix}\", next_hop = \"{HOP1}\" }} ]"
        )
    });
    // The provider's router, as the welcome e-mail says.
    h.testbed
        .route_prefix(net(prefix), Some(HOP1))
        .expect("router");
    let (ok, plan, stderr) = h.cli3(&["plan"]);
    assert!(ok, "{stderr}");
    assert!(
        plan.contains(&format!(
            "ip -6 addr add {}/128 dev lo nodad  # static routes[0]",
            one(prefix)
        )),
        "{plan}"
    );
    h.start();
    h.wait("programmed", |s| {
        has_owned(s, one(prefix)) && has_owned(s, HOP1)
    });
    assert!(h.ping5(one(prefix)), "{}", h.log());

    // Drift repair works as for every kind.
    h.delete_address(one(prefix), "lo");
    h.wait("restored", |s| has_owned(s, one(prefix)));

    // A new next hop in the config, then SIGHUP.
    h.testbed
        .route_prefix(net(prefix), Some(HOP2))
        .expect("router");
    h.edit_config(&HOP1.to_string(), &HOP2.to_string());
    h.hangup();
    h.wait("next hop moved", |s| {
        has_owned(s, HOP2) && !has_address(s, HOP1)
    });
    assert!(h.ping5(one(prefix)));

    // No network calls: after several polls the daemon holds no TCP or UDP socket
    // (only netlink), and the config has no URL to call.
    std::thread::sleep(Duration::from_secs(2));
    let pid = h.daemon.as_ref().expect("running").id();
    let inet = inet_socket_inodes(&h.testbed.vps);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("fds");
    let mut sockets = 0;
    for fd in fds.flatten() {
        let target = std::fs::read_link(fd.path()).unwrap_or_default();
        let target = target.to_string_lossy();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
        {
            sockets += 1;
            assert!(
                !inet.contains(&inode.to_string()),
                "an inet socket is open: {target}"
            );
        }
    }
    assert!(
        sockets > 0,
        "the netlink sockets are seen, so the check can fail"
    );
    assert!(!h.log().contains("provider poll failed"), "{}", h.log());
}

/// Inodes of every TCP/UDP socket in the namespace.
fn inet_socket_inodes(ns: &netns::Namespace) -> Vec<String> {
    ns.enter(|| {
        let mut inodes = Vec::new();
        for table in ["tcp", "tcp6", "udp", "udp6"] {
            let text = std::fs::read_to_string(format!("/proc/net/{table}")).unwrap_or_default();
            for line in text.lines().skip(1) {
                if let Some(inode) = line.split_whitespace().nth(9) {
                    inodes.push(inode.to_string());
                }
            }
        }
        inodes
    })
    .expect("enter")
}
