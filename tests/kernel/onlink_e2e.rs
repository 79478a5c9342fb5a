//! An on-link provider end to end on a real kernel (issue 17, item 4): the provider's
//! router treats the VPS's whole /64 as on-link (it holds 2001:db8:1::1/64 on the link
//! and no route via the VPS), routed6d (`kind = "onlink"`, the /64 detected from the
//! uplink's address) carves a /80 for a bridge workload out of it, and the workload, in
//! its own namespace behind the bridge, uses a static address there. The router reaches
//! it only because routed6d adds a kernel proxy NDP entry on the uplink for that one
//! address, learned from the bridge's neighbour cache: none for an unused address,
//! none for the /64, withdrawn when the neighbour goes, put back when deleted by hand,
//! and removed on `on_stop = "withdraw"` while an operator's own entries stay. Needs
//! root; without it the test says SKIPPED.

use crate::common;

use std::net::Ipv6Addr;
use std::time::Duration;

use std::os::fd::{AsRawFd, OwnedFd};

use common::Harness;
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, recv, setsockopt, socket, sockopt,
};
use nix::sys::time::{TimeVal, TimeValLike as _};
use routed6d::daemon::proxy_look::LOOK_EVERY;
use routed6d::model::{DEFAULT_PROTOCOL, ObservedState};
use routed6d_sim::netns::{self, Namespace};

/// Slot 1 of /80 in the testbed's on-link 2001:db8:1::/64.
const SUB: &str = "2001:db8:1:0:1::/80";
const GATEWAY: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 1, 0, 0, 1);
const WORKLOAD: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 1, 0, 0, 0x100);
/// In the workload's /80, used by nobody.
const UNUSED: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 1, 0, 0, 0x200);
/// An operator's own proxy entries: one elsewhere in the /64, one in the workload's /80.
const OPERATOR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0xabcd);
const OPERATOR_IN_SUB: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 1, 0, 0, 0x150);

/// The proxy entries on the VPS's uplink, with their protocol, from a netlink dump.
pub(crate) fn proxies(state: &ObservedState) -> Vec<(Ipv6Addr, u8)> {
    let mut list: Vec<(Ipv6Addr, u8)> = state
        .proxies
        .iter()
        .filter(|p| p.proxy.ifname == "eth0")
        .map(|p| (p.proxy.addr, p.protocol))
        .collect();
    list.sort();
    list
}

pub(crate) fn owned_proxies(state: &ObservedState) -> Vec<Ipv6Addr> {
    proxies(state)
        .into_iter()
        .filter(|(_, p)| *p == DEFAULT_PROTOCOL)
        .map(|(a, _)| a)
        .collect()
}

/// A raw ICMPv6 socket in `ns` (the router's): it hears every ICMPv6 message there,
/// neighbour advertisements included.
pub(crate) fn listen(ns: &Namespace) -> OwnedFd {
    ns.enter(|| {
        socket(
            AddressFamily::Inet6,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::IcmpV6,
        )
        .expect("raw socket")
    })
    .expect("enter")
}

/// Did an unsolicited (S clear) neighbour advertisement for `target` arrive on `fd`?
pub(crate) fn heard_unsolicited(fd: &OwnedFd, target: Ipv6Addr, within: Duration) -> bool {
    setsockopt(fd, sockopt::ReceiveTimeout, &TimeVal::milliseconds(200)).expect("timeout");
    let deadline = std::time::Instant::now() + within;
    let mut buffer = [0u8; 1500];
    while std::time::Instant::now() < deadline {
        let Ok(n) = recv(fd.as_raw_fd(), &mut buffer, MsgFlags::empty()) else {
            continue;
        };
        // Type 136; flags R 0x80, S 0x40, O 0x20 in byte 4; the target at 8..24.
        if n >= 24 && buffer[0] == 136 && buffer[4] & 0x40 == 0 && buffer[8..24] == target.octets()
        {
            return true;
        }
    }
    false
}

/// The workload says something to its gateway, so that the bridge's neighbour cache
/// knows it (a silent host is in nobody's cache).
fn wake(h: &Harness, ws: &Namespace) {
    let answered = netns::wait_until(Duration::from_secs(10), || {
        ws.enter(|| netns::ping6(GATEWAY, Duration::from_secs(1)))
            .is_ok_and(|r| r.is_ok())
    });
    assert!(
        answered.is_some(),
        "workload → gateway {GATEWAY}: no answer\nvps:\n{}\n{}\nlog:\n{}",
        h.testbed.vps.ip(&["-6", "addr"]).unwrap_or_default(),
        h.testbed.vps.ip(&["-6", "route"]).unwrap_or_default(),
        h.log()
    );
}

/// routed6d started on-link (`poll_interval` as given) with the bridge workload `web`,
/// the workload in its own namespace on the bridge, not heard from yet.
fn on_link_rig(tag: &str, poll: &str) -> (Harness, Namespace) {
    let mut h = Harness::new(tag, None, |_| {
        format!("kind = \"onlink\"\npoll_interval = \"{poll}\"")
    });
    let text = std::fs::read_to_string(&h.config).expect("config");
    std::fs::write(
        &h.config,
        text + "[[workload]]\nname = \"web\"\nkind = \"bridge\"\ninterface = \"br-web\"\nprefix_length = 80\n",
    )
    .expect("config");
    // The workload: its own namespace on a veth whose VPS end goes on the bridge, a
    // static address in the /80 (a /80 cannot SLAAC) and routed6d's gateway.
    let ws = Namespace::create(&format!("r6d-wl-{tag}-{}", std::process::id())).expect("ns");
    h.testbed
        .vps
        .ip(&[
            "link", "add", "web0", "type", "veth", "peer", "name", "eth0", "netns", &ws.name,
        ])
        .expect("veth");
    let cidr = format!("{WORKLOAD}/80");
    ws.ip(&["-6", "addr", "add", &cidr, "dev", "eth0", "nodad"])
        .expect("address");
    ws.ip(&["link", "set", "eth0", "up"]).expect("up");
    ws.ip(&[
        "-6",
        "route",
        "add",
        "default",
        "via",
        &GATEWAY.to_string(),
        "dev",
        "eth0",
        "metric",
        "100",
    ])
    .expect("default route");

    h.start();
    h.wait("the gateway is on the bridge", |s| {
        common::has_owned(s, GATEWAY)
    });
    h.wait("the /80 is routed to the bridge", |s| {
        common::has_owned_route(s, SUB.parse().expect("prefix"))
    });
    h.testbed
        .vps
        .ip(&["link", "set", "web0", "master", "br-web", "up"])
        .expect("attach");
    (h, ws)
}

#[test]
fn on_link_workloads_are_answered_for_by_proxy_ndp_only_while_in_use() {
    if common::skip_unless_root("onlink_e2e", "proxy_ndp") {
        return;
    }
    let (mut h, ws) = on_link_rig("onl", "2s");
    let sysctl = |key: &'static str| {
        h.testbed
            .vps
            .enter(move || std::fs::read_to_string(format!("/proc/sys/{key}")).unwrap_or_default())
            .expect("enter")
            .trim()
            .to_string()
    };
    assert_eq!(sysctl("net/ipv6/conf/eth0/proxy_ndp"), "1", "{}", h.log());
    assert_eq!(sysctl("net/ipv6/conf/all/forwarding"), "1");
    assert_eq!(
        sysctl("net/ipv6/conf/eth0/accept_ra"),
        "2",
        "the uplink keeps its router advertisements with forwarding on"
    );

    // No neighbour yet, no proxy: the router cannot reach the workload.
    assert!(owned_proxies(&h.kernel()).is_empty(), "{:?}", h.owned());

    let router_ears = listen(&h.testbed.router);
    wake(&h, &ws);
    h.wait("a proxy entry for the workload's address", |s| {
        owned_proxies(s) == [WORKLOAD]
    });
    assert!(
        heard_unsolicited(&router_ears, WORKLOAD, Duration::from_secs(5)),
        "the router heard no unsolicited advertisement for {WORKLOAD}\nlog:\n{}",
        h.log()
    );
    assert_eq!(
        proxies(&h.kernel()),
        [(WORKLOAD, DEFAULT_PROTOCOL)],
        "one entry on the uplink, for the address in use, and nothing else"
    );
    h.testbed
        .ping_from_router(WORKLOAD, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("router → workload {WORKLOAD}: {e}\nlog:\n{}", h.log()));
    // An address of the workload's /80 that nobody uses gets no answer.
    assert!(
        h.testbed
            .ping_from_router(UNUSED, Duration::from_secs(3))
            .is_err(),
        "the router reached {UNUSED}, which nobody uses"
    );
    assert_eq!(owned_proxies(&h.kernel()), [WORKLOAD]);

    // Drift: the entry deleted by hand is put back (Linux announces no change of a
    // proxy entry: the daemon's look at the proxy table, or the 2 s poll here, finds
    // it; `a_proxy_entry_deleted_by_hand_is_back_within_seconds` times it). The
    // neighbour steps below are followed by events.
    let workload = WORKLOAD.to_string();
    h.testbed
        .vps
        .ip(&["-6", "neigh", "del", "proxy", &workload, "dev", "eth0"])
        .expect("del proxy");
    h.wait("the proxy entry is put back", |s| {
        owned_proxies(s) == [WORKLOAD]
    });

    // The workload's neighbour entry goes: so does its proxy entry.
    let _ = h
        .testbed
        .vps
        .ip(&["-6", "neigh", "del", &workload, "dev", "br-web"]);
    h.wait("the proxy entry is withdrawn with the neighbour", |s| {
        owned_proxies(s).is_empty()
    });
    // It speaks again: it is answered for again.
    wake(&h, &ws);
    h.wait("the proxy entry is back with the neighbour", |s| {
        owned_proxies(s) == [WORKLOAD]
    });

    // An operator's own proxy entries, in the /64 and in the workload's /80: routed6d
    // neither claims nor removes them.
    for addr in [OPERATOR, OPERATOR_IN_SUB] {
        h.testbed
            .vps
            .ip(&[
                "-6",
                "neigh",
                "add",
                "proxy",
                &addr.to_string(),
                "dev",
                "eth0",
            ])
            .expect("operator's proxy");
    }
    h.add_key("daemon", "on_stop = \"withdraw\"");
    h.kill(libc::SIGHUP);
    h.wait_log("configuration reloaded", 1);
    h.assert_healthy();
    let errors_before = h.log_count("ERROR");
    h.stop_with(libc::SIGTERM);
    let state = h.kernel();
    assert_eq!(
        proxies(&state),
        [(OPERATOR, 0), (OPERATOR_IN_SUB, 0)],
        "routed6d's entry is withdrawn, the operator's stay as they were\nlog:\n{}",
        h.log()
    );
    assert!(h.owned().is_empty(), "{:?}", h.owned());
    assert_eq!(h.log_count("ERROR"), errors_before, "{}", h.log());
    drop(h);
    drop(ws);
}

/// Issue 17, item 5: a proxy entry of routed6d's deleted by hand is back, and answered
/// for, within seconds although the poll is an hour away: the kernel (6.18 included)
/// announces no change of a proxy entry, so the daemon looks at the proxy table every
/// `LOOK_EVERY` while entries are wanted (`daemon::proxy_look`).
#[test]
fn a_proxy_entry_deleted_by_hand_is_back_within_seconds() {
    if common::skip_unless_root("onlink_e2e", "proxy_deleted_by_hand") {
        return;
    }
    let (mut h, ws) = on_link_rig("onp", "1h");
    wake(&h, &ws);
    h.wait("a proxy entry for the workload's address", |s| {
        owned_proxies(s) == [WORKLOAD]
    });
    // The bridge's link-local address ends its DAD about a second after the bridge
    // gets a carrier, and the kernel announces that with an RTM_NEWLINK of the bridge,
    // which brings routed6d a full pass: a deletion before it would be repaired by
    // that pass, not by what this test is about.
    let settled = netns::wait_until(Duration::from_secs(10), || {
        let vps = &h.testbed.vps;
        let link_local = vps.ip(&["-6", "addr", "show", "dev", "br-web", "scope", "link"]);
        let tentative = vps.ip(&["-6", "addr", "show", "dev", "br-web", "tentative"]);
        link_local.is_ok_and(|a| a.contains("fe80")) && tentative.is_ok_and(|t| t.trim().is_empty())
    });
    assert!(
        settled.is_some(),
        "br-web's link-local address stays tentative"
    );
    h.testbed
        .ping_from_router(WORKLOAD, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("router → workload {WORKLOAD}: {e}\nlog:\n{}", h.log()));

    let router_ears = listen(&h.testbed.router);
    let workload = WORKLOAD.to_string();
    let deleted = std::time::Instant::now();
    h.testbed
        .vps
        .ip(&["-6", "neigh", "del", "proxy", &workload, "dev", "eth0"])
        .expect("del proxy");
    // The router forgets the workload's MAC: only an answer to a fresh solicitation,
    // which only the proxy entry gives, lets it reach the workload again.
    h.testbed
        .router
        .ip(&["-6", "neigh", "flush", "to", &workload])
        .expect("flush the router's entry");
    h.wait("the proxy entry is put back", |s| {
        owned_proxies(s) == [WORKLOAD]
    });
    let back = deleted.elapsed();
    // The look's period, and slack for a loaded 2-core CI machine.
    let bound = LOOK_EVERY + Duration::from_secs(2);
    assert!(
        back <= bound,
        "the proxy entry took {back:?} to come back (bound {bound:?})\nlog:\n{}",
        h.log()
    );
    assert!(
        heard_unsolicited(&router_ears, WORKLOAD, Duration::from_secs(2)),
        "the router heard no unsolicited advertisement for {WORKLOAD} after the repair\nlog:\n{}",
        h.log()
    );
    h.testbed
        .ping_from_router(WORKLOAD, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("router → workload after the repair: {e}\nlog:\n{}", h.log()));
    assert_eq!(
        h.log_count("is gone (the kernel does not announce that)"),
        1,
        "{}",
        h.log()
    );
    h.assert_healthy();
    drop(h);
    drop(ws);
}
