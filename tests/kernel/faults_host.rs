//! Host-side faults against the real daemon on a real kernel (issue 5): the uplink
//! missing, replaced, bounced or flushed; routed6d's objects removed by hand; a host
//! busy with hundreds of objects that are not routed6d's; a route of another protocol
//! in routed6d's place; a burst of netlink events larger than any buffer; SIGKILL in
//! the middle of an apply; SIGTERM with either `on_stop`; a broken config on SIGHUP;
//! a second writer with routed6d's protocol (another routed6d, a deleter every 10 ms).
//! Each test asserts the kernel afterwards: what routed6d owns is as it should be, and
//! nothing else was touched. Needs root; without it each test says SKIPPED.

use crate::common;

use std::time::{Duration, Instant};

use common::{
    CONVERGE, FAILED, HOP1, Harness, RECOVERED, TOKEN, has_address, has_owned, has_owned_route,
    host, prefix, programmed,
};
use routed6d::model::{DEFAULT_PROTOCOL, ObservedState};
use routed6d_sim::netns::{self, ROUTER_ADDR, VPS_ADDR, VPS_UPLINK};

const POLL_PATH: &str = "/api/v2/vps/";
/// RTPROT_KERNEL.
const KERNEL: u8 = 2;

fn skip(test: &str) -> bool {
    common::skip_unless_root("faults_host", test)
}

/// The polls are an hour apart: whatever happens in a test is drift repair, never a
/// poll (the API count proves it).
fn hourly(h: &Harness) {
    h.edit_config("poll_interval = \"1s\"", "poll_interval = \"1h\"");
}

/// Remove the VPS's uplink (and with it the router's end of the veth).
fn delete_uplink(h: &Harness) {
    h.testbed
        .vps
        .ip(&["link", "del", VPS_UPLINK])
        .expect("del uplink");
}

/// Create the uplink again as the testbed did (a new veth: a new ifindex), and the
/// provider router's route to the prefix, which went with its end of the old one.
fn create_uplink(h: &Harness) {
    h.testbed.create_uplink().expect("uplink");
    h.testbed
        .route_prefix(prefix(), Some(HOP1))
        .expect("router route");
}

fn uplink_index(state: &ObservedState) -> Option<u32> {
    state
        .links
        .iter()
        .find(|l| l.name == VPS_UPLINK)
        .map(|l| l.index)
}

/// HOP1 owned on the uplink with this index.
fn hop_on(state: &ObservedState, index: u32) -> bool {
    state.addresses.iter().any(|a| {
        a.protocol == DEFAULT_PROTOCOL && a.address.addr == HOP1 && a.address.ifindex == index
    })
}

/// `ip -batch` in the VPS namespace (one process for thousands of changes).
fn batch(h: &Harness, name: &str, lines: &[String]) {
    let path = h.dir.path().join(name);
    std::fs::write(&path, lines.join("\n") + "\n").expect("batch file");
    h.testbed
        .vps
        .ip(&["-6", "-force", "-batch", path.to_str().expect("path")])
        .expect("ip -batch");
}

/// Every address and route that is not routed6d's, sorted: what "nothing foreign
/// touched" compares. The kernel's own routes (protocol 2: the prefix and local routes
/// it derives from addresses, routed6d's included) come and go with the addresses and
/// are left out.
fn foreign(h: &Harness) -> Vec<String> {
    let state = h.kernel();
    let mut lines: Vec<String> = state
        .addresses
        .iter()
        .filter(|a| a.protocol != DEFAULT_PROTOCOL)
        .map(|a| format!("addr {} proto {}", a.address, a.protocol))
        .chain(
            state
                .routes
                .iter()
                .filter(|r| r.protocol != DEFAULT_PROTOCOL && r.protocol != KERNEL)
                .map(|r| format!("route {} proto {}", r.route, r.protocol)),
        )
        .collect();
    lines.sort();
    lines
}

// ---- the uplink ----------------------------------------------------------------------

#[test]
fn a_missing_uplink_is_waited_for_and_programmed_when_it_appears() {
    if skip("uplink_missing") {
        return;
    }
    let mut h = Harness::hostup("upmiss");
    delete_uplink(&h);
    h.start();
    h.wait_log("interface eth0 does not exist: waiting for it", 1);
    // Several polls while it is missing: said once, and nothing on an uplink that
    // is not there.
    let seen = h.requests(POLL_PATH);
    h.wait_requests(POLL_PATH, seen + 2, CONVERGE);
    assert!(!has_address(&h.kernel(), HOP1));
    assert_eq!(h.log_count("does not exist"), 1, "{}", h.log());
    create_uplink(&h);
    h.wait("programmed on the new uplink", programmed);
    assert!(h.ping(host(1), Duration::from_secs(10)), "{}", h.log());
    h.assert_healthy();
}

#[test]
fn an_uplink_recreated_with_a_new_ifindex_is_programmed_again() {
    if skip("uplink_recreated") {
        return;
    }
    let mut h = Harness::hostup("uprecr");
    hourly(&h);
    h.start_programmed();
    let old = uplink_index(&h.kernel()).expect("uplink");
    let polls = h.requests(POLL_PATH);
    delete_uplink(&h);
    create_uplink(&h);
    let new = uplink_index(&h.kernel()).expect("uplink");
    assert_ne!(old, new, "a new link");
    h.wait("next hop on the new uplink", |s| {
        hop_on(s, new) && programmed(s)
    });
    assert!(h.ping(host(1), Duration::from_secs(10)), "{}", h.log());
    assert_eq!(h.requests(POLL_PATH), polls, "repaired without the API");
    h.assert_healthy();
}

#[test]
fn an_uplink_down_then_up_gets_its_next_hop_back() {
    if skip("uplink_down_up") {
        return;
    }
    let mut h = Harness::hostup("updown");
    hourly(&h);
    h.start_programmed();
    let before = h.owned();
    h.testbed
        .vps
        .ip(&["link", "set", VPS_UPLINK, "down"])
        .expect("down");
    h.testbed
        .vps
        .ip(&["link", "set", VPS_UPLINK, "up"])
        .expect("up");
    h.wait("all back", programmed);
    assert_eq!(h.owned(), before);
    // Going down flushed the OS's own address and default route too; putting those
    // back is the OS's job (networkd would), not routed6d's.
    assert!(
        !has_address(&h.kernel(), VPS_ADDR),
        "routed6d did not restore the OS's address"
    );
    h.testbed
        .vps
        .ip(&[
            "-6",
            "addr",
            "add",
            &format!("{VPS_ADDR}/64"),
            "dev",
            VPS_UPLINK,
            "nodad",
        ])
        .expect("os address");
    h.testbed
        .vps
        .ip(&[
            "-6",
            "route",
            "replace",
            "default",
            "via",
            &ROUTER_ADDR.to_string(),
        ])
        .expect("os default route");
    assert!(h.ping(host(1), Duration::from_secs(10)), "{}", h.log());
    h.assert_healthy();
}

// ---- routed6d's objects removed by hand ----------------------------------------------

#[test]
fn an_owned_address_deleted_by_hand_is_restored_within_a_second_without_the_api() {
    if skip("address_deleted") {
        return;
    }
    let mut h = Harness::hostup("adel");
    hourly(&h);
    h.start_programmed();
    let before = h.owned();
    let polls = h.requests(POLL_PATH);
    let started = Instant::now();
    h.delete_address(host(1), "lo");
    h.wait("restored", |s| has_owned(s, host(1)));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "restored in {took:?}");
    assert_eq!(h.owned(), before);
    assert_eq!(h.requests(POLL_PATH), polls, "repaired without the API");
    h.assert_healthy();
}

#[test]
fn an_owned_route_deleted_by_hand_is_restored_within_a_second_without_the_api() {
    if skip("route_deleted") {
        return;
    }
    let mut h = Harness::hostup("rdel");
    hourly(&h);
    h.start_programmed();
    let before = h.owned();
    let polls = h.requests(POLL_PATH);
    let started = Instant::now();
    h.delete_unreachable_route(prefix());
    h.wait("restored", |s| has_owned_route(s, prefix()));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "restored in {took:?}");
    assert_eq!(h.owned(), before);
    assert_eq!(h.requests(POLL_PATH), polls, "repaired without the API");
    h.assert_healthy();
}

#[test]
fn drift_is_repaired_while_the_api_is_down() {
    if skip("repair_during_outage") {
        return;
    }
    let mut h = Harness::hostup("drout");
    h.start_programmed();
    let before = h.owned();
    h.sim()
        .set_sticky_fault(routed6d_sim::api::Fault::status(503, "service_unavailable"));
    h.wait_log(FAILED, 1);
    h.delete_address(HOP1, VPS_UPLINK);
    h.wait("next hop restored from the last good answer", |s| {
        has_owned(s, HOP1)
    });
    assert_eq!(h.owned(), before);
    h.sim().clear_faults();
    h.wait_log(RECOVERED, 1);
    h.assert_healthy();
}

/// `ip -6 addr flush dev eth0`: routed6d's next hop comes back (it is routed6d's and
/// `next_hop = "ensure"`); the VPS's own address is not routed6d's and stays gone.
#[test]
fn a_flushed_uplink_gets_the_next_hop_back_and_nothing_else() {
    if skip("flush_ensure") {
        return;
    }
    let mut h = Harness::hostup("flush");
    hourly(&h);
    h.start_programmed();
    let before = h.owned();
    h.testbed
        .vps
        .ip(&["-6", "addr", "flush", "dev", VPS_UPLINK, "scope", "global"])
        .expect("flush");
    h.wait("next hop back", |s| has_owned(s, HOP1));
    assert_eq!(h.owned(), before);
    assert!(
        !has_address(&h.kernel(), VPS_ADDR),
        "the VPS's own address is not routed6d's to restore"
    );
    h.assert_healthy();
}

/// The OS configured the next hop and `next_hop = "check"`: a flush removes it and
/// routed6d reports that once (not on every poll) instead of adding it; when the OS
/// puts it back, that is reported once too.
#[test]
fn with_next_hop_check_a_flushed_next_hop_is_reported_once_not_added() {
    if skip("flush_check") {
        return;
    }
    let mut h = Harness::hostup("flchk");
    h.add_key("uplink", "next_hop = \"check\"");
    let os_hop = format!("{HOP1}/64");
    h.testbed
        .vps
        .ip(&["-6", "addr", "add", &os_hop, "dev", VPS_UPLINK, "nodad"])
        .expect("os next hop");
    h.start();
    h.wait("prefix programmed", |s| {
        has_owned(s, host(1)) && has_owned_route(s, prefix())
    });
    assert!(h.ping(host(1), Duration::from_secs(10)), "{}", h.log());
    const MISSING: &str = "is not on eth0 and uplink.next_hop = \"check\"";
    assert_eq!(h.log_count(MISSING), 0, "{}", h.log());
    h.testbed
        .vps
        .ip(&["-6", "addr", "flush", "dev", VPS_UPLINK, "scope", "global"])
        .expect("flush");
    h.wait_log(MISSING, 1);
    let seen = h.requests(POLL_PATH);
    h.wait_requests(POLL_PATH, seen + 3, CONVERGE);
    assert_eq!(h.log_count(MISSING), 1, "reported once\n{}", h.log());
    assert!(!has_address(&h.kernel(), HOP1), "check never adds it");
    h.testbed
        .vps
        .ip(&["-6", "addr", "add", &os_hop, "dev", VPS_UPLINK, "nodad"])
        .expect("os next hop");
    h.wait_log("is on eth0 again", 1);
    let seen = h.requests(POLL_PATH);
    h.wait_requests(POLL_PATH, seen + 2, CONVERGE);
    assert_eq!(h.log_count("is on eth0 again"), 1, "{}", h.log());
    assert_eq!(h.log_count(MISSING), 1, "{}", h.log());
    h.assert_healthy();
}

// ---- a busy host -----------------------------------------------------------------------

/// 500 routes and 500 addresses that are not routed6d's come and go (three rounds)
/// while routed6d runs and polls: every one of them is exactly as the test left it,
/// and routed6d's own objects never changed.
#[test]
fn five_hundred_unrelated_routes_and_addresses_are_never_touched() {
    if skip("unrelated_churn") {
        return;
    }
    let mut h = Harness::hostup("churn");
    h.testbed
        .vps
        // A veth pair: the dummy driver is not in every kernel.
        .ip(&[
            "link", "add", "dummy0", "type", "veth", "peer", "name", "dummy1",
        ])
        .expect("veth");
    h.testbed
        .vps
        .ip(&["link", "set", "dummy0", "up"])
        .expect("up");
    h.start_programmed();
    let before = h.owned();
    let baseline = foreign(&h);
    let add: Vec<String> = (0..500)
        .flat_map(|n| {
            [
                format!("route add 2001:db8:77:{n:x}::/64 via {ROUTER_ADDR} dev {VPS_UPLINK} proto static"),
                format!("addr add 2001:db8:88::{n:x}/128 dev dummy0 nodad"),
            ]
        })
        .collect();
    let del: Vec<String> = (0..500)
        .flat_map(|n| {
            [
                format!("route del 2001:db8:77:{n:x}::/64 via {ROUTER_ADDR} dev {VPS_UPLINK}"),
                format!("addr del 2001:db8:88::{n:x}/128 dev dummy0"),
            ]
        })
        .collect();
    let polls = h.requests(POLL_PATH);
    for round in 0..3 {
        batch(&h, "add", &add);
        let with = foreign(&h);
        assert_eq!(
            with.len(),
            baseline.len() + 1000,
            "round {round}: all 1000 there"
        );
        if round < 2 {
            batch(&h, "del", &del);
        }
    }
    // Polls and repairs went on meanwhile; give them a few more.
    h.wait_requests(POLL_PATH, polls + 3, CONVERGE);
    let after = foreign(&h);
    assert_eq!(
        after.len(),
        baseline.len() + 1000,
        "none of the 1000 removed"
    );
    assert!(
        after
            .iter()
            .filter(|l| l.contains("2001:db8:77:") || l.contains("2001:db8:88::"))
            .all(|l| l.ends_with("proto 4") || l.ends_with("proto 0") || l.contains("dummy0")),
        "{after:?}"
    );
    assert_eq!(h.owned(), before, "routed6d's own objects unchanged");
    let log = h.log();
    assert!(
        !log.contains("2001:db8:77:") && !log.contains("2001:db8:88::"),
        "routed6d never acted on them\n{log}"
    );
    h.assert_healthy();
}

/// Someone else's route sits in routed6d's slot (same prefix, table and metric, but
/// via a gateway instead of unreachable; protocol static): reported once — not on every poll — never deleted or replaced,
/// also not by `on_stop = "withdraw"`.
#[test]
fn a_route_of_another_protocol_in_our_place_is_reported_once_and_never_deleted() {
    if skip("foreign_same_prefix") {
        return;
    }
    let mut h = Harness::hostup("fsame");
    h.add_key("daemon", "on_stop = \"withdraw\"");
    let dst = prefix().to_string();
    h.testbed
        .vps
        .ip(&[
            "-6",
            "route",
            "add",
            &dst,
            "via",
            &ROUTER_ADDR.to_string(),
            "dev",
            VPS_UPLINK,
            "metric",
            "2147483647",
            "proto",
            "static",
        ])
        .expect("foreign route");
    h.start();
    h.wait("the rest programmed", |s| {
        has_owned(s, host(1)) && has_owned(s, HOP1)
    });
    h.wait_log("not touching", 1);
    let seen = h.requests(POLL_PATH);
    h.wait_requests(POLL_PATH, seen + 3, CONVERGE);
    assert_eq!(h.log_count("not touching"), 1, "reported once\n{}", h.log());
    let state = h.kernel();
    assert!(!has_owned_route(&state, prefix()), "not replaced");
    let theirs = |s: &ObservedState| {
        s.routes
            .iter()
            .any(|r| r.route.dst == prefix() && r.protocol == 4)
    };
    assert!(theirs(&state), "still there");
    let status = h.cli(&["status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("conflict"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    let exit = h.stop_with(libc::SIGTERM);
    assert!(exit.success(), "{exit}");
    let after = h.kernel();
    assert!(theirs(&after), "withdraw left it");
    assert!(
        routed6d_sim::demo::owned_lines(&after).is_empty(),
        "withdraw removed ours"
    );
}

/// 20 000 route events at once (10 000 foreign routes added and deleted by one
/// `ip -batch`), with routed6d's address deleted at the end of the burst: whether the
/// event socket kept up or overran (then a full resync), the address is back within
/// seconds, without the API, and nothing foreign was touched.
#[test]
fn a_burst_of_twenty_thousand_route_events_still_gets_drift_repaired() {
    if skip("event_burst") {
        return;
    }
    let mut h = Harness::hostup("burst");
    hourly(&h);
    h.start_programmed();
    let before = h.owned();
    let baseline = foreign(&h);
    let polls = h.requests(POLL_PATH);
    let mut lines: Vec<String> = (0..10_000u32)
        .map(|n| {
            format!(
                "route add 2001:db8:99:{:x}:{:x}::/80 dev lo proto static",
                n >> 8,
                n & 0xff
            )
        })
        .collect();
    lines.extend((0..10_000u32).map(|n| {
        format!(
            "route del 2001:db8:99:{:x}:{:x}::/80 dev lo",
            n >> 8,
            n & 0xff
        )
    }));
    lines.push(format!("addr del {}/128 dev lo", host(1)));
    batch(&h, "burst", &lines);
    // The deletion is the burst's last change: the clock starts when it is done.
    let started = Instant::now();
    h.wait("repaired after the burst", |s| has_owned(s, host(1)));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "repaired after {took:?}");
    assert_eq!(h.owned(), before);
    assert_eq!(
        foreign(&h),
        baseline,
        "the burst's routes are gone, nothing else changed"
    );
    assert_eq!(h.requests(POLL_PATH), polls, "repaired without the API");
    let log = h.log();
    let overran = log.contains("overrun") || log.contains("queue full") || log.contains("Resync");
    eprintln!("event burst: repaired in {took:?}; overrun and resync: {overran}");
    h.assert_healthy();
}

// ---- process lifecycle -------------------------------------------------------------------

/// SIGKILL while routed6d is adding 100 addresses, then a restart: it adopts what
/// the first process added, adds the rest, each exactly once, and the foreign address
/// and route next to them are untouched.
#[test]
fn sigkill_mid_apply_then_restart_converges_without_duplicates() {
    if skip("sigkill_mid_apply") {
        return;
    }
    let mut h = Harness::hostup("kill9");
    let parts: Vec<String> = (1..=100).map(|n| format!("\"::{n:x}\"")).collect();
    h.add_key("prefix", &format!("addresses = [{}]", parts.join(", ")));
    // Foreign neighbours inside the routed prefix: an address and a route.
    let foreign_addr = host(0x1000);
    h.testbed
        .vps
        .ip(&[
            "-6",
            "addr",
            "add",
            &format!("{foreign_addr}/128"),
            "dev",
            "lo",
        ])
        .expect("foreign addr");
    h.testbed
        .vps
        .ip(&[
            "-6",
            "route",
            "add",
            "2001:db8:42:100:1::/80",
            "dev",
            "lo",
            "proto",
            "static",
        ])
        .expect("foreign route");
    let baseline = foreign(&h);
    h.start();
    // Kill at the first sign of the apply.
    netns::wait_until(CONVERGE, || h.log_count("OP=\"add-address\"") >= 1)
        .unwrap_or_else(|| panic!("{}", h.log()));
    let status = h.stop_with(libc::SIGKILL);
    assert!(!status.success());
    let partial = h.owned().len();
    let wanted = 100 + 2; // 100 addresses, the next hop, the unreachable route
    eprintln!("SIGKILL left {partial} of {wanted} objects");
    h.start();
    h.wait("converged", |s| {
        (1..=100).all(|n| has_owned(s, host(n))) && programmed(s)
    });
    let owned = h.owned();
    assert_eq!(owned.len(), wanted, "{owned:#?}");
    let mut unique = owned.clone();
    unique.dedup();
    assert_eq!(unique, owned, "no duplicates");
    let state = h.kernel();
    assert!(has_address(&state, foreign_addr) && !has_owned(&state, foreign_addr));
    assert_eq!(foreign(&h), baseline, "nothing foreign removed");
    h.assert_healthy();
}

#[test]
fn sigterm_with_on_stop_keep_leaves_everything() {
    if skip("sigterm_keep") {
        return;
    }
    let mut h = Harness::hostup("tkeep");
    h.start_programmed();
    let before = h.owned();
    let baseline = foreign(&h);
    let status = h.stop_with(libc::SIGTERM);
    assert!(status.success(), "{status}");
    assert_eq!(h.owned(), before);
    assert_eq!(foreign(&h), baseline);
    assert!(
        h.log().contains("kernel state kept (on_stop = keep)"),
        "{}",
        h.log()
    );
    assert!(
        h.ping(host(1), Duration::from_secs(5)),
        "still reachable after stop"
    );
}

#[test]
fn sigterm_with_on_stop_withdraw_removes_exactly_what_it_owns() {
    if skip("sigterm_withdraw") {
        return;
    }
    let mut h = Harness::hostup("twdraw");
    h.add_key("daemon", "on_stop = \"withdraw\"");
    h.start_programmed();
    let baseline = foreign(&h);
    let count = h.owned().len();
    let status = h.stop_with(libc::SIGTERM);
    assert!(status.success(), "{status}");
    assert!(h.owned().is_empty(), "{:?}", h.owned());
    assert_eq!(foreign(&h), baseline, "nothing else removed");
    assert!(
        h.log().contains(&format!("withdrew {count} object(s)")),
        "{}",
        h.log()
    );
}

/// A config replaced by a broken one, then SIGHUP: refused with one line naming the
/// key, the running config and the kernel state stay, polling goes on; the fixed file
/// is taken on the next SIGHUP.
#[test]
fn a_broken_config_on_sighup_is_refused_and_the_running_one_kept() {
    if skip("sighup_broken") {
        return;
    }
    let mut h = Harness::hostup("hupbad");
    h.start_programmed();
    let before = h.owned();
    let good = std::fs::read_to_string(&h.config).expect("config");
    std::fs::write(
        &h.config,
        good.replace("[prefix]\n", "[prefix]\nunreachable = \"sometimes\"\n"),
    )
    .expect("config");
    h.kill(libc::SIGHUP);
    h.wait_log("refusing the new configuration", 1);
    let lines: Vec<String> = h
        .log()
        .lines()
        .filter(|l| l.contains("refusing the new configuration"))
        .map(str::to_string)
        .collect();
    assert!(
        lines[0].contains("prefix.unreachable") && lines[0].contains("ERROR"),
        "names the key, as an error: {}",
        lines[0]
    );
    let seen = h.requests(POLL_PATH);
    h.kept_until(&before, CONVERGE, || h.requests(POLL_PATH) >= seen + 3);
    std::fs::write(
        &h.config,
        good.replace("[prefix]\n", "[prefix]\naddresses = [\"::2\"]\n"),
    )
    .expect("config");
    h.kill(libc::SIGHUP);
    h.wait("new config applied", |s| {
        has_owned(s, host(2)) && !has_address(s, host(1))
    });
    assert_eq!(h.log_count("refusing the new configuration"), 1);
    assert!(!h.log().contains(TOKEN));
    h.assert_healthy();
}

// ---- fights: a second writer with routed6d's protocol ---------------------------------

/// A second configuration for the VPS namespace: static routes for another prefix
/// (`2001:db8:99::/64` via HOP1, `::1` of it on lo), the same protocol, its own files.
fn second_config(h: &Harness) -> std::path::PathBuf {
    let path = h.dir.path().join("second.toml");
    std::fs::write(
        &path,
        format!(
            "[provider]\nkind = \"static\"\nroutes = [ {{ prefix = \"2001:db8:99::/64\", next_hop = \"{HOP1}\" }} ]\npoll_interval = \"1h\"\n[uplink]\ninterface = \"eth0\"\n[daemon]\nstatus_file = \"{}\"\nstate_dir = \"{}\"\n",
            h.dir.path().join("second-status.json").display(),
            h.dir.path().join("second-state").display()
        ),
    )
    .expect("second config");
    path
}

/// `routed6d <args> --config <config>` in the VPS namespace, waited for (bounded).
fn routed6d_in_vps(h: &Harness, args: &[&str], config: &std::path::Path) -> std::process::Output {
    let mut child = h
        .testbed
        .vps
        .command(env!("CARGO_BIN_EXE_routed6d"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("NOTIFY_SOCKET")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let exited = netns::wait_until(CONVERGE, || child.try_wait().ok().flatten().is_some());
    if exited.is_none() {
        let _ = child.kill();
    }
    child.wait_with_output().expect("output")
}

/// Kernel changes and warnings in a daemon log (info and up, not the debug lines).
fn changes_and_warnings(log: &str) -> (usize, usize) {
    let change =
        |l: &str| l.contains(" INFO ") && (l.contains("ip -6 addr ") || l.contains("ip -6 route "));
    (
        log.lines().filter(|l| change(l)).count(),
        log.lines().filter(|l| l.contains(" WARN ")).count(),
    )
}

/// Two routed6d with one protocol in one network namespace: the second is refused
/// before it touches the kernel, with one line naming the first; a one-shot command
/// is refused too, the read-only ones are not; the first is left exactly as it was.
#[test]
fn a_second_routed6d_with_the_same_protocol_is_refused_and_the_first_left_alone() {
    if skip("second_instance") {
        return;
    }
    let mut h = Harness::hostup("second");
    hourly(&h);
    h.start_programmed();
    let before = h.owned();
    let first = h.pid();
    let (changes, warnings) = changes_and_warnings(&h.log());
    let second = second_config(&h);

    let run = routed6d_in_vps(&h, &["run"], &second);
    let stderr = String::from_utf8_lossy(&run.stderr).to_string();
    assert_eq!(run.status.code(), Some(78), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with(&format!(
            "routed6d: protocol 126 is already routed6d's in this network namespace: routed6d run (pid {first}) holds /run/routed6d/protocol-126.net-"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("give this configuration another daemon.protocol"),
        "{stderr}"
    );

    let once = routed6d_in_vps(&h, &["once"], &second);
    let stderr = String::from_utf8_lossy(&once.stderr).to_string();
    assert_eq!(once.status.code(), Some(75), "{stderr}");
    assert!(
        stderr.contains(&format!("routed6d run (pid {first})")),
        "{stderr}"
    );
    // Looking needs no lock.
    let plan = routed6d_in_vps(&h, &["plan"], &second);
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );

    // Nothing of the first one's was touched, and it said nothing about it.
    let watched = Instant::now() + Duration::from_secs(2);
    h.kept_until(&before, CONVERGE, || Instant::now() >= watched);
    assert_eq!(
        changes_and_warnings(&h.log()),
        (changes, warnings),
        "{}",
        h.log()
    );
    // The first still repairs at full speed.
    h.delete_address(host(1), "lo");
    h.wait("restored", |s| has_owned(s, host(1)));
    h.assert_healthy();
}

/// A daemon's CPU time so far (utime + stime), from /proc.
fn cpu_time(pid: libc::pid_t) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat format")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

/// `ip -6 -force -batch -` in the VPS namespace: one process that runs each line the
/// test writes as it arrives, errors ignored (a delete of what is not there).
struct Deleter {
    child: std::process::Child,
}

impl Deleter {
    fn start(h: &Harness) -> Deleter {
        let child = std::process::Command::new("ip")
            .args(["-n", &h.testbed.vps.name, "-6", "-force", "-batch", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ip -batch");
        Deleter { child }
    }

    /// Run `line` every 10 ms for `how_long`.
    fn every_10ms(&mut self, line: &str, how_long: Duration) {
        use std::io::Write as _;
        let stdin = self.child.stdin.as_mut().expect("stdin");
        let end = Instant::now() + how_long;
        while Instant::now() < end {
            stdin
                .write_all(format!("{line}\n").as_bytes())
                .expect("write to ip");
            stdin.flush().expect("flush");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Deleter {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Something deletes routed6d's address every 10 ms (issue 15): 64 repairs at once,
/// then each one waits twice as long as the last, one warning naming the object and
/// the fight, next to no CPU; once the deleter stops the address is back within the
/// running wait, and after standing calm a single deletion is repaired at once again.
/// 12 s of deleting: the waits have grown to 6.4 s by then (0.1, 0.2 … 6.4 s after the
/// free repairs), which is the whole schedule but its 10 s cap; the minute with the
/// cap is counted on the daemon's loop with a paused clock (daemon/tests.rs).
#[test]
fn a_deleter_every_10ms_gets_few_repairs_one_warning_then_full_speed_again() {
    if skip("fight_10ms") {
        return;
    }
    let mut h = Harness::hostup("fight");
    hourly(&h);
    h.start_programmed();
    let before = h.owned();
    let repair = format!("ip -6 addr add {}/128 dev lo", host(1));
    let repairs_before = h.log_count(&repair);
    let cpu = cpu_time(h.pid());

    let mut deleter = Deleter::start(&h);
    deleter.every_10ms(
        &format!("addr del {}/128 dev lo", host(1)),
        Duration::from_secs(12),
    );
    drop(deleter);
    let spent = cpu_time(h.pid()) - cpu;
    let repairs = h.log_count(&repair) - repairs_before;
    eprintln!("deleted every 10 ms for 12 s: {repairs} repairs, {spent:?} of CPU");
    // 64 at once, then after 0.1, 0.2, 0.4, 0.8, 1.6, 3.2 s (6.4 s more is past the
    // 12 s): 70 on this schedule; a loaded machine's slower deleter may shift the
    // last one out, or let one more through while a hold falls due.
    assert!(
        (64..=72).contains(&repairs),
        "{repairs} repairs\n{}",
        h.log()
    );
    assert_eq!(h.log_count("was removed"), 1, "{}", h.log());
    assert_eq!(
        h.log_count(&format!(
            "address {}/128 dev lo was removed 65 times in",
            host(1)
        )),
        1,
        "the warning names the object and the fight\n{}",
        h.log()
    );
    assert!(spent < Duration::from_millis(500), "CPU {spent:?}");

    // Stopped: back within the longest hold (the wait then running is at most 6.4 s).
    h.wait("back after the fight", |s| has_owned(s, host(1)));
    assert_eq!(h.owned(), before);
    // Calm: a deletion is repaired at once again.
    std::thread::sleep(routed6d::damping::CALM + Duration::from_millis(500));
    let started = Instant::now();
    h.delete_address(host(1), "lo");
    h.wait("restored", |s| has_owned(s, host(1)));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "restored in {took:?}");
    assert_eq!(h.log_count("has stayed in place for 20s"), 1, "{}", h.log());
    assert_eq!(h.log_count("was removed"), 1);
    h.assert_healthy();
}

/// Two routed6d with one protocol in one network namespace that cannot see each other's
/// lock (the second in a mount namespace of its own with its own /run/routed6d, as two
/// containers sharing the host's network would be): each removes the other's objects,
/// and each puts its own back, but damped on both sides, so the fight costs a bounded
/// number of writes and log lines and one warning per object and side. 30 s: the waits
/// reach their 10 s cap after about 13 s; after that each side adds at most one repair
/// and one removal per object every 10 s, which a longer run would only repeat.
#[test]
fn two_routed6d_that_cannot_see_each_others_lock_fight_only_boundedly() {
    if skip("fight_two_instances") {
        return;
    }
    let mut h = Harness::hostup("fight2");
    hourly(&h);
    h.start_programmed();
    let (changes_a, _) = changes_and_warnings(&h.log());
    let second = second_config(&h);
    let log_b = h.dir.path().join("second.log");
    let mut b = h
        .testbed
        .vps
        .command("sh")
        .args([
            "-c",
            // `ip netns exec` already runs this in a mount namespace of its own
            // (slave to the host's): the tmpfs stays there.
            "mkdir -p /run/routed6d && mount -t tmpfs routed6d-fight /run/routed6d && exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_routed6d"),
            "run",
            "--config",
        ])
        .arg(&second)
        .env("ROUTED6D_LOG", "debug")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_b).expect("log"))
        .spawn()
        .expect("second routed6d");
    let stopped = Instant::now() + Duration::from_secs(30);
    while Instant::now() < stopped {
        if let Some(status) = b.try_wait().expect("wait") {
            panic!(
                "the second routed6d exited: {status}\n{}",
                std::fs::read_to_string(&log_b).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = b.kill();
    let _ = b.wait();
    let log_b = std::fs::read_to_string(&log_b).unwrap_or_default();
    let log_a = h.log();
    let (changes_a, warnings_a) = {
        let (changes, warnings) = changes_and_warnings(&log_a);
        (changes - changes_a, warnings)
    };
    let (changes_b, warnings_b) = changes_and_warnings(&log_b);
    eprintln!("two instances for 30 s: {changes_a} and {changes_b} kernel changes logged");
    // Each side's two contested objects (::1 on lo, the unreachable route): per object
    // at most 64 repairs at once, 7 while the wait doubles to 10 s (by 14 s), and one
    // per 10 s after that, 74 in 30 s; and one removal of the other's objects for each
    // of the other's repairs and its first add, 75. 2 × 74 + 2 × 75 and the first
    // pass's 3: 301 lines each, against thousands undamped.
    assert!(
        changes_a <= 301,
        "{changes_a} changes by the first\n{log_a}"
    );
    assert!(
        changes_b <= 301,
        "{changes_b} changes by the second\n{log_b}"
    );
    assert!(changes_a >= 2 && changes_b >= 2, "they did fight");
    // One warning per object fought over, on each side.
    assert_eq!(warnings_a, 2, "{log_a}");
    assert_eq!(warnings_b, 2, "{log_b}");
    assert!(
        log_a.contains("another routed6d with protocol 126"),
        "{log_a}"
    );
    h.assert_healthy();
}
