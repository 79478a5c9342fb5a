//! routed6d end to end on a real kernel: a provider router and a VPS in private
//! network namespaces, the simulated HostUp API on the VPS's loopback, and the real
//! `routed6d run` binary. Reachability is proven with iputils `ping` from the router.
//! Needs root; without it every test says SKIPPED loudly and passes nothing off as run.

use crate::common;

use std::net::Ipv6Addr;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use common::{HOP1, HOP2, Harness, TOKEN, VPS_ID, has_address, has_owned, host, prefix};
use routed6d::model::DEFAULT_PROTOCOL;
use routed6d_sim::api::{Fault, SimVps};
use routed6d_sim::demo::owned_lines;
use routed6d_sim::netns::{self, Namespace};

const CONVERGE: Duration = Duration::from_secs(10);

fn skip_unless_root(test: &str) -> bool {
    common::skip_unless_root("netns_e2e", test)
}

/// The shared harness on HostUp v2 with `prefix_section` as the `[prefix]` section
/// (empty: the defaults).
fn harness(tag: &str, prefix_section: &str) -> Harness {
    let h = Harness::hostup(tag);
    if !prefix_section.is_empty() {
        h.edit_config("[prefix]\n", prefix_section);
    }
    h
}

/// This file's shorthands: a ping is one echo reply from the router within 5 s; a
/// signal stops the daemon and returns how it exited.
trait E2e {
    fn ping5(&self, addr: Ipv6Addr) -> bool;
    fn signal(&mut self, signal: libc::c_int) -> ExitStatus;
}

impl E2e for Harness {
    fn ping5(&self, addr: Ipv6Addr) -> bool {
        self.ping(addr, Duration::from_secs(5))
    }
    fn signal(&mut self, signal: libc::c_int) -> ExitStatus {
        self.stop_with(signal)
    }
}

/// The README's first command: every step of the demo checks what it shows (the
/// prefix routed, a ping, the next-hop move, the repair, the withdrawal on stop).
#[test]
fn the_demo_runs_every_step() {
    if skip_unless_root("demo") {
        return;
    }
    let daemon = std::path::Path::new(env!("CARGO_BIN_EXE_routed6d"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(failure) = runtime.block_on(routed6d_sim::demo::run_with(daemon)) {
        panic!("the demo failed ({:?}): {}", failure.exit, failure.message);
    }
}

#[test]
fn addresses_mode_answers_through_the_next_hop_and_the_rest_is_unreachable() {
    if skip_unless_root("addresses_mode") {
        return;
    }
    let mut h = harness(
        "addr",
        "[prefix]\nmode = \"addresses\"\naddresses = [\"::1\", \"::53\"]\n",
    );
    assert!(
        !h.ping(host(1), Duration::from_secs(2)),
        "nothing answers before routed6d runs"
    );
    h.start();
    h.wait("prefix programmed", |s| {
        has_owned(s, host(1)) && has_owned(s, host(0x53)) && has_owned(s, HOP1)
    });
    assert!(
        h.ping5(host(1)),
        "ping ::1 through the next hop\n{}\n{}\n{}",
        h.testbed.router.ip(&["-6", "route"]).unwrap_or_default(),
        h.testbed.router.ip(&["-6", "neigh"]).unwrap_or_default(),
        h.log()
    );
    assert!(h.ping5(host(0x53)));
    let owned = h.owned();
    assert!(
        owned
            .iter()
            .any(|l| l == "route unreachable 2001:db8:42:100::/64 metric 2147483647"),
        "{owned:?}"
    );
    // An unused address is answered with unreachable instead of looping to the provider.
    let unused = h
        .testbed
        .ping_from_router(host(0x99), Duration::from_secs(2));
    match unused {
        Err(netns::NetnsError::Ping { source, .. }) => {
            assert_eq!(
                source.kind(),
                std::io::ErrorKind::HostUnreachable,
                "{source}"
            )
        }
        other => panic!("expected ICMPv6 unreachable, got {other:?}"),
    }
    // The change lines carry the journal fields.
    let log = h.log();
    assert!(
        log.contains("OP=\"add-address\"") || log.contains("OP=add-address"),
        "{log}"
    );
    assert!(log.contains("PREFIX=2001:db8:42:100::/64"), "{log}");
}

#[test]
fn anyip_mode_answers_on_every_address() {
    if skip_unless_root("anyip_mode") {
        return;
    }
    let mut h = harness("any", "[prefix]\nmode = \"anyip\"\n");
    h.start();
    h.wait("local route", |s| {
        has_owned(s, HOP1)
            && s.routes.iter().any(|r| {
                r.protocol == DEFAULT_PROTOCOL && r.route.kind == routed6d::model::RouteKind::Local
            })
    });
    assert!(h.ping5(host(1)), "{}", h.log());
    assert!(h.ping5(host(0xbeef)));
}

#[test]
fn delegate_mode_forwards_to_a_host_behind_the_vps() {
    if skip_unless_root("delegate_mode") {
        return;
    }
    let mut h = harness(
        "dlg",
        "[prefix]\nmode = \"delegate\"\ninterface = \"dl0\"\n",
    );
    // A container behind the VPS: its own namespace on a veth from the VPS.
    let lan = Namespace::create(&format!("r6d-lan-dlg-{}", std::process::id())).expect("lan");
    h.testbed
        .vps
        .ip(&[
            "link", "add", "dl0", "type", "veth", "peer", "name", "eth0", "netns", &lan.name,
        ])
        .expect("veth");
    h.testbed.vps.ip(&["link", "set", "dl0", "up"]).expect("up");
    lan.ip(&["link", "set", "eth0", "up"]).expect("up");
    lan.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{}/64", host(2)),
        "dev",
        "eth0",
        "nodad",
    ])
    .expect("addr");
    lan.ip(&["-6", "route", "add", "default", "via", &host(1).to_string()])
        .expect("route");
    h.testbed.vps.ip(&["link", "set", "lo", "up"]).expect("lo");
    let accept_ra = format!("net.ipv6.conf.{}.accept_ra=1", netns::VPS_UPLINK);
    h.testbed
        .vps
        .command("sysctl")
        .args(["-qw", &accept_ra])
        .status()
        .expect("sysctl");
    h.start();
    h.wait("delegated", |s| has_owned(s, host(1)) && has_owned(s, HOP1));
    assert!(
        h.ping5(host(2)),
        "ping the host behind the VPS\nvps routes:\n{}\nlan:\n{}\n{}",
        h.testbed
            .vps
            .ip(&["-6", "route", "show", "table", "all"])
            .unwrap_or_default(),
        lan.ip(&["-6", "addr"]).unwrap_or_default(),
        h.log()
    );
    let read = |key: &str| {
        h.testbed
            .vps
            .enter({
                let key = key.to_string();
                move || std::fs::read_to_string(format!("/proc/sys/{key}")).unwrap_or_default()
            })
            .expect("enter")
            .trim()
            .to_string()
    };
    assert_eq!(read("net/ipv6/conf/all/forwarding"), "1");
    assert_eq!(
        read("net/ipv6/conf/eth0/accept_ra"),
        "2",
        "accept_ra raised from 1 to 2"
    );
    assert!(h.log().contains("accept_ra"), "the log says so");
    drop(h);
    drop(lan);
}

#[test]
fn a_next_hop_change_at_the_provider_converges() {
    if skip_unless_root("next_hop_change") {
        return;
    }
    let mut h = harness("nh", "");
    h.start();
    h.wait("first next hop", |s| {
        has_owned(s, HOP1) && has_owned(s, host(1))
    });
    assert!(h.ping5(host(1)));
    let started = Instant::now();
    h.sim().set_next_hop(VPS_ID, HOP2).expect("next hop");
    h.wait("second next hop", |s| {
        has_owned(s, HOP2) && !has_address(s, HOP1)
    });
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "poll interval 1 s + jitter: took {took:?}"
    );
    assert!(
        h.ping5(host(1)),
        "reachable through the new next hop\n{}",
        h.log()
    );
}

#[test]
fn an_address_deleted_by_hand_is_back_within_a_second() {
    if skip_unless_root("drift_repair") {
        return;
    }
    let mut h = harness("drift", "");
    h.start();
    h.wait("programmed", |s| has_owned(s, host(1)));
    let requests_before = h.sim().count("GET", "/api/v2/vps");
    let started = Instant::now();
    h.delete_address(host(1), "lo");
    h.wait("restored", |s| has_owned(s, host(1)));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "restored in {took:?}");
    // The route too.
    h.delete_unreachable_route(prefix());
    let started = Instant::now();
    h.wait("route restored", |s| {
        s.routes
            .iter()
            .any(|r| r.protocol == DEFAULT_PROTOCOL && r.route.dst == prefix())
    });
    assert!(started.elapsed() < Duration::from_secs(1));
    // Repairs do not call the API (polls may have happened meanwhile: at most 1/s).
    let polls = h.sim().count("GET", "/api/v2/vps") - requests_before;
    assert!(polls <= 3, "{polls} polls");
}

#[test]
fn an_api_outage_changes_nothing_in_the_kernel() {
    if skip_unless_root("api_outage") {
        return;
    }
    let mut h = harness("out", "");
    h.start();
    h.wait("programmed", common::programmed);
    let before = h.owned();
    h.sim()
        .set_sticky_fault(Fault::status(503, "service_unavailable"));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(h.owned(), before, "503s kept the state");
    h.sim().set_sticky_fault(Fault::Hang);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(h.owned(), before, "a hanging API kept the state");
    assert!(h.ping5(host(1)), "still reachable during the outage");
    h.sim().clear_faults();
    // The hung request ends at the client's 15 s timeout; the retry then succeeds.
    let recovery = Duration::from_secs(15) + CONVERGE;
    let log_has_recovered = netns::wait_until(recovery, || h.log().contains("recovered"));
    assert!(log_has_recovered.is_some(), "{}", h.log());
    assert_eq!(h.owned(), before);
    let log = h.log();
    assert_eq!(
        log.matches("provider poll failed, keeping").count(),
        1,
        "failure logged once per streak\n{log}"
    );
    assert!(!log.contains(TOKEN), "the token never shows in logs");
}

#[test]
fn a_next_hop_configured_by_the_os_is_used_and_never_removed() {
    if skip_unless_root("foreign_next_hop") {
        return;
    }
    let mut h = harness("fnh", "");
    h.testbed
        .vps
        .ip(&[
            "-6",
            "addr",
            "add",
            &format!("{HOP1}/64"),
            "dev",
            "eth0",
            "nodad",
        ])
        .expect("os next hop");
    h.add_key("daemon", "on_stop = \"withdraw\"");
    h.start();
    h.wait("programmed", |s| has_owned(s, host(1)));
    let state = h.kernel();
    assert!(
        has_address(&state, HOP1) && !has_owned(&state, HOP1),
        "the OS's next hop is used as it is"
    );
    assert!(h.ping5(host(1)));
    h.sim().set_next_hop(VPS_ID, HOP2).expect("next hop");
    h.wait("second next hop", |s| has_owned(s, HOP2));
    assert!(
        has_address(&h.kernel(), HOP1),
        "the old, foreign next hop stays"
    );
    let status = h.signal(libc::SIGTERM);
    assert!(status.success(), "{status}");
    let after = h.kernel();
    assert!(
        has_address(&after, HOP1),
        "withdraw leaves the foreign address"
    );
    assert!(
        owned_lines(&after).is_empty(),
        "withdraw removed what routed6d owned"
    );
}

/// The race of issue 13 on a real kernel: a link flap flushes the OS's next hop, and a
/// network manager re-adds it the way systemd-networkd does (RTM_NEWADDR with
/// NLM_F_REPLACE, `ip addr replace`) a moment after the link is back. Had routed6d put
/// its /128 there first, the kernel would have kept that prefix length and the host
/// its on-link route no more.
#[test]
fn a_link_flap_leaves_the_os_next_hop_to_the_os() {
    if skip_unless_root("link_flap") {
        return;
    }
    let mut h = harness("linkflap", "");
    let os_address = format!("{HOP1}/64");
    h.testbed
        .vps
        .ip(&["-6", "addr", "add", &os_address, "dev", "eth0", "nodad"])
        .expect("os next hop");
    h.start();
    h.wait("programmed", |s| has_owned(s, host(1)));
    let vps = &h.testbed.vps;

    vps.ip(&["link", "set", "eth0", "down"]).expect("down");
    std::thread::sleep(Duration::from_millis(300));
    vps.ip(&["link", "set", "eth0", "up"]).expect("up");
    std::thread::sleep(Duration::from_millis(300));
    vps.ip(&["-6", "addr", "replace", &os_address, "dev", "eth0", "nodad"])
        .expect("the manager re-adds its address");
    std::thread::sleep(Duration::from_millis(500));

    let state = h.kernel();
    let next_hop: Vec<_> = state
        .addresses
        .iter()
        .filter(|a| a.address.addr == HOP1)
        .collect();
    assert_eq!(next_hop.len(), 1, "{next_hop:?}");
    assert_eq!(next_hop[0].address.prefix_len, 64, "{next_hop:?}");
    assert_ne!(next_hop[0].protocol, DEFAULT_PROTOCOL, "{next_hop:?}");
    let on_link = vps
        .ip(&["-6", "route", "show", "2001:db8:1::/64"])
        .expect("route");
    assert!(
        on_link.contains("dev eth0"),
        "no on-link route: {on_link:?}"
    );
    assert!(h.ping5(host(1)));
}

/// A sysctl of the VPS namespace, as the kernel holds it now.
fn sysctl(h: &Harness, key: &str) -> String {
    let output = h
        .testbed
        .vps
        .command("sysctl")
        .args(["-n", key])
        .output()
        .expect("sysctl");
    text(&output.stdout).trim().to_string()
}

fn set_sysctl(h: &Harness, setting: &str) {
    let output = h
        .testbed
        .vps
        .command("sysctl")
        .args(["-qw", setting])
        .output()
        .expect("sysctl");
    assert!(output.status.success(), "{}", text(&output.stderr));
}

/// Docker, a VPN or an operator turns forwarding on while routed6d runs: the uplink
/// keeps taking router advertisements (accept_ra 1 → 2) at once, from the kernel's
/// netconf event (the poll here is a minute away); with `keep_accept_ra = false` it is
/// left alone.
#[test]
fn forwarding_turned_on_from_outside_keeps_router_advertisements() {
    if skip_unless_root("keep_accept_ra") {
        return;
    }
    for keep in [true, false] {
        let mut h = harness(if keep { "kra" } else { "kra0" }, "");
        h.edit_config("poll_interval = \"1s\"", "poll_interval = \"60s\"");
        if !keep {
            h.add_key("uplink", "keep_accept_ra = false");
        }
        set_sysctl(&h, "net.ipv6.conf.eth0.accept_ra=1");
        h.start();
        h.wait("programmed", |s| has_owned(s, host(1)));
        assert_eq!(sysctl(&h, "net.ipv6.conf.eth0.accept_ra"), "1");
        set_sysctl(&h, "net.ipv6.conf.all.forwarding=1");
        let kept = netns::wait_until(Duration::from_secs(2), || {
            sysctl(&h, "net.ipv6.conf.eth0.accept_ra") == "2"
        });
        if keep {
            assert!(kept.is_some(), "accept_ra stayed 1:\n{}", h.log());
            assert_eq!(h.log_count("set net.ipv6.conf.eth0.accept_ra=2 (was 1)"), 1);
        } else {
            assert!(
                kept.is_none(),
                "accept_ra changed with keep_accept_ra = false"
            );
            assert_eq!(h.log_count("accept_ra"), 0, "{}", h.log());
        }
    }
}

/// What routed6d-online.target waits for at boot: `wait-online` returns once the daemon
/// has programmed the prefix (a server can bind its address then), and says why not
/// (exit 69) when it has not within the timeout.
#[test]
fn wait_online_returns_once_the_prefix_is_programmed() {
    if skip_unless_root("wait_online") {
        return;
    }
    let mut h = harness("wol", "");
    let early = h.cli(&["wait-online", "--timeout", "300ms"]);
    assert_eq!(early.status.code(), Some(69), "{early:?}");
    assert!(
        text(&early.stderr).contains("the daemon is not running"),
        "{}",
        text(&early.stderr)
    );
    h.start();
    let online = h.cli(&["wait-online", "--timeout", "10s"]);
    assert!(online.status.success(), "{online:?}");
    // It returned only once the address was there: binding it works at once.
    let bound = h
        .testbed
        .vps
        .enter(|| std::net::TcpListener::bind((host(1), 8080)).map(drop))
        .expect("enter");
    assert!(bound.is_ok(), "{bound:?}");
    assert!(text(&online.stdout).starts_with("online: "), "{online:?}");
}

#[test]
fn a_restart_adopts_without_duplicates_and_keep_leaves_state() {
    if skip_unless_root("restart_adopts") {
        return;
    }
    let mut h = harness("rst", "");
    h.start();
    // Everything, the unreachable route included: a kill before the last add would
    // leave the second process something to add.
    h.wait("programmed", common::programmed);
    let before = h.owned();
    let status = h.signal(libc::SIGKILL);
    assert!(!status.success());
    assert_eq!(h.owned(), before, "state survives the crash");
    std::fs::write(h.log_path(), "").expect("truncate log");
    let polls = h.sim().count("GET", "/api/v2/vps");
    h.start();
    netns::wait_until(CONVERGE, || h.sim().count("GET", "/api/v2/vps") > polls)
        .expect("second daemon polled");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(h.owned(), before, "adopted, no duplicates");
    let log = h.log();
    assert!(
        !log.contains("add-address") && !log.contains("add-route"),
        "no writes on adoption\n{log}"
    );
    let status = h.signal(libc::SIGTERM);
    assert!(status.success());
    assert_eq!(h.owned(), before, "on_stop = keep leaves the state");
}

#[test]
fn sighup_reloads_a_good_config_and_refuses_a_broken_one() {
    if skip_unless_root("sighup_reload") {
        return;
    }
    let mut h = harness("hup", "[prefix]\naddresses = [\"::1\"]\n");
    h.start();
    h.wait("programmed", common::programmed);
    let good = std::fs::read_to_string(&h.config).expect("read");

    std::fs::write(&h.config, good.replace("[uplink]", "[uplink]\nbogus = 1")).expect("write");
    let before = h.owned();
    h.kill(libc::SIGHUP);
    netns::wait_until(CONVERGE, || {
        h.log().contains("refusing the new configuration")
    })
    .unwrap_or_else(|| panic!("{}", h.log()));
    assert!(h.log().contains("unknown field `bogus`"), "{}", h.log());
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        h.owned(),
        before,
        "the running configuration stays in force"
    );

    std::fs::write(
        &h.config,
        good.replace("addresses = [\"::1\"]", "addresses = [\"::2\"]"),
    )
    .expect("write");
    h.kill(libc::SIGHUP);
    h.wait("reconfigured", |s| {
        has_owned(s, host(2)) && !has_address(s, host(1))
    });
    assert!(h.ping5(host(2)));
    let status = h.signal(libc::SIGTERM);
    assert!(status.success());
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_operator_commands_work_against_the_provider() {
    if skip_unless_root("operator_commands") {
        return;
    }
    let h = harness("cli", "");

    // plan: prints what it would do and changes nothing.
    let plan = h.cli(&["plan"]);
    assert!(plan.status.success(), "{}", text(&plan.stderr));
    let printed = text(&plan.stdout);
    assert!(
        printed.contains(&format!("ip -6 addr add {}/128 dev lo", host(1)))
            && printed.contains(&format!("ip -6 addr add {HOP1}/128 dev eth0")),
        "{printed}"
    );
    assert!(h.owned().is_empty(), "plan changed the kernel");

    // A proxy in the environment is not taken silently: the token would go through
    // whatever it names. Nothing listens on the port named here.
    let proxied = h
        .testbed
        .vps
        .command(env!("CARGO_BIN_EXE_routed6d"))
        .args(["plan", "--config"])
        .arg(&h.config)
        .envs(
            [
                "HTTP_PROXY",
                "http_proxy",
                "HTTPS_PROXY",
                "https_proxy",
                "ALL_PROXY",
            ]
            .map(|k| (k, "http://127.0.0.1:9")),
        )
        .output()
        .expect("plan");
    assert!(proxied.status.success(), "{}", text(&proxied.stderr));

    // once: one reconcile, then exit.
    let once = h.cli(&["once"]);
    assert!(once.status.success(), "{}", text(&once.stderr));
    assert!(has_owned(&h.kernel(), host(1)) && has_owned(&h.kernel(), HOP1));
    assert!(h.ping5(host(1)));
    let programmed = h.owned();
    let again = h.cli(&["once"]);
    assert!(again.status.success());
    assert_eq!(h.owned(), programmed, "a second run changes nothing");

    // status --json: the provider's answer, what routed6d owns, nothing pending.
    let status = h.cli(&["status", "--json"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(report["provider"]["host_id"], VPS_ID);
    assert_eq!(
        report["provider"]["answer"]["prefixes"][0]["prefix"],
        prefix().to_string()
    );
    assert_eq!(
        report["owned"].as_array().map(Vec::len),
        Some(programmed.len())
    );
    // Each owned object names the allocation it serves.
    let allocation = h
        .sim()
        .vps(VPS_ID)
        .and_then(|v| v.allocation)
        .map(|a| a.id)
        .expect("an allocation");
    for owned in report["owned"].as_array().expect("owned") {
        assert_eq!(owned["origin"], allocation.as_str(), "{owned}");
    }
    assert_eq!(report["pending"], serde_json::json!([]));
    let human = h.cli(&["status"]);
    assert!(
        text(&human.stdout).contains("pending:   nothing"),
        "{}",
        text(&human.stdout)
    );
    // status --offline: what routed6d owns, without a request or the key.
    let asked = h.sim().count("GET", "/api/v2/vps");
    let offline = h.cli(&["status", "--offline"]);
    assert!(offline.status.success(), "{}", text(&offline.stderr));
    let offline_text = text(&offline.stdout);
    assert!(
        offline_text.contains(&format!("owned:     {} object(s)", programmed.len()))
            && offline_text.contains("routed:    unknown: not asked (--offline)")
            && offline_text.contains("pending:   unknown"),
        "{offline_text}"
    );
    assert_eq!(
        h.sim().count("GET", "/api/v2/vps"),
        asked,
        "asked the provider"
    );
    for output in [&status, &human, &plan, &once] {
        assert!(!text(&output.stdout).contains(TOKEN) && !text(&output.stderr).contains(TOKEN));
    }

    // refresh-next-hop: the provider moves the next hop; the kernel follows at once.
    h.sim()
        .set_suggested_next_hop(VPS_ID, Some(HOP2))
        .expect("suggest");
    let refresh = h.cli(&["refresh-next-hop"]);
    assert!(refresh.status.success(), "{}", text(&refresh.stderr));
    assert!(
        text(&refresh.stdout).contains(&format!("next hop: {HOP1} -> {HOP2}")),
        "{}",
        text(&refresh.stdout)
    );
    assert_eq!(h.sim().count("POST", "/api/v2/vps"), 1);
    let state = h.kernel();
    assert!(has_owned(&state, HOP2) && !has_address(&state, HOP1));
    assert!(h.ping5(host(1)), "reachable through the new next hop");

    // release: refused without --yes; with it, the prefix goes back and the kernel is clean.
    let refused = h.cli(&["release"]);
    assert_eq!(refused.status.code(), Some(64));
    assert_eq!(h.sim().count("DELETE", "/api/v2/vps"), 0);
    let release = h.cli(&["release", "--yes"]);
    assert!(release.status.success(), "{}", text(&release.stderr));
    assert!(
        text(&release.stdout).contains("released: yes; cooldown 30 days"),
        "{}",
        text(&release.stdout)
    );
    assert!(h.owned().is_empty(), "release removes what routed6d owned");
    assert!(h.sim().vps(VPS_ID).and_then(|v| v.allocation).is_none());
}

#[test]
fn the_vps_is_found_by_its_address_and_a_stale_next_hop_is_refreshed() {
    if skip_unless_root("discovery_refresh") {
        return;
    }
    let mut h = harness("dsc", "");
    h.edit_config(&format!("vps_id = \"{VPS_ID}\"\n"), "");
    // Another VPS in the account, so that discovery has to pick.
    let other: std::net::IpAddr = "192.0.2.99".parse().expect("ip");
    h.sim().add_vps(SimVps::new("vps_other", "other", other));
    h.sim()
        .set_suggested_next_hop(VPS_ID, Some(HOP2))
        .expect("suggest");
    h.start();
    h.wait("refreshed to the suggested next hop", |s| {
        has_owned(s, HOP2) && !has_address(s, HOP1) && has_owned(s, host(1))
    });
    assert!(h.ping5(host(1)));
    let requests = h.sim().requests();
    assert!(
        requests.iter().any(|r| r.path == "/api/v2/vps"
            && r.query
                .as_deref()
                .is_some_and(|q| q.contains(netns::VPS_ADDR4))),
        "looked up by primary IP: {requests:?}"
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        h.sim().count("POST", "/api/v2/vps"),
        1,
        "refresh asked for once, not on every poll"
    );
    let lookups = h
        .sim()
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v2/vps")
        .count();
    assert_eq!(lookups, 1, "the VPS is looked up once, then polled by id");
    let log = h.log();
    assert!(log.contains("found this VPS at HostUp"), "{log}");
    let status = h.signal(libc::SIGTERM);
    assert!(status.success());
}

/// Without CAP_NET_ADMIN the kernel refuses every change: `once` says so and exits 77
/// (it exited 0, as if the prefix had been programmed).
#[test]
fn once_without_cap_net_admin_says_so_and_exits_77() {
    if skip_unless_root("once_without_cap_net_admin") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("routed6d.toml");
    std::fs::write(
        &config,
        format!(
            "[provider]\nkind = \"static\"\n[[provider.routes]]\nprefix = \"2001:db8:42:100::/64\"\nnext_hop = \"2001:db8:1::10\"\n\n[uplink]\ninterface = \"lo\"\n\n[daemon]\nstate_dir = \"{}\"\n",
            dir.path().join("state").display()
        ),
    )
    .expect("config");
    // A network namespace of its own, and a /run of its own for the writer's lock.
    let out = std::process::Command::new("unshare")
        .args(["-n", "-m", "sh", "-c"])
        .arg(
            "mount -t tmpfs tmpfs /run && \
             exec setpriv --bounding-set=-net_admin --inh-caps=-net_admin \"$0\" once --config \"$1\"",
        )
        .arg(env!("CARGO_BIN_EXE_routed6d"))
        .arg(&config)
        .output()
        .expect("unshare");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(77), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("routed6d: 2 kernel change(s) failed") && last.contains("CAP_NET_ADMIN"),
        "{stderr}"
    );
}
