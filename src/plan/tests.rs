use super::*;
use crate::model::{
    Address, Link, ObservedAddress, ObservedRoute, Origin, Route, RouteKind, RoutedPrefix,
    SysctlWant, TABLE_LOCAL, TABLE_MAIN, Wanted,
};

const OURS: u8 = 126;

fn addr(text: &str, ifindex: u32, ifname: &str) -> Address {
    let (ip, len) = text.split_once('/').expect("cidr");
    Address {
        ifindex,
        addr: ip.parse().expect("ip"),
        prefix_len: len.parse().expect("len"),
        ifname: ifname.into(),
        no_prefix_route: false,
    }
}

fn unreachable(dst: &str) -> Route {
    Route {
        table: TABLE_MAIN,
        dst: dst.parse().expect("dst"),
        metric: 2_147_483_647,
        kind: RouteKind::Unreachable,
        ifindex: None,
        ifname: None,
    }
}

fn via_dev(dst: &str, ifindex: u32, ifname: &str) -> Route {
    Route {
        table: TABLE_MAIN,
        dst: dst.parse().expect("dst"),
        metric: 1024,
        kind: RouteKind::Unicast,
        ifindex: Some(ifindex),
        ifname: Some(ifname.into()),
    }
}

fn owned_addr(a: Address) -> ObservedAddress {
    ObservedAddress {
        address: a,
        protocol: OURS,
    }
}
fn foreign_addr(a: Address) -> ObservedAddress {
    ObservedAddress {
        address: a,
        protocol: 0,
    }
}
fn owned_route(r: Route) -> ObservedRoute {
    ObservedRoute {
        route: r,
        protocol: OURS,
    }
}
fn foreign_route(r: Route, protocol: u8) -> ObservedRoute {
    ObservedRoute { route: r, protocol }
}

fn kernel(addresses: Vec<ObservedAddress>, routes: Vec<ObservedRoute>) -> ObservedState {
    ObservedState {
        links: vec![
            Link {
                alias: None,
                index: 1,
                name: "lo".into(),
                up: true,
                lower_up: true,
            },
            Link {
                alias: None,
                index: 2,
                name: "eth0".into(),
                up: true,
                lower_up: true,
            },
        ],
        addresses,
        routes,
        ..ObservedState::default()
    }
}

fn origin(name: &str) -> Origin {
    std::sync::Arc::new(RoutedPrefix {
        workload: None,
        prefix: "2001:db8:42:100::/64".parse().expect("prefix"),
        next_hop: None,
        origin: name.into(),
    })
}

fn want(addresses: Vec<Address>, routes: Vec<Route>) -> DesiredState {
    let origin = origin("test");
    DesiredState {
        addresses: addresses
            .into_iter()
            .map(|a| Wanted::new(a, &origin))
            .collect(),
        routes: routes
            .into_iter()
            .map(|r| Wanted::new(r, &origin))
            .collect(),
        ..DesiredState::default()
    }
}

fn text(plan: &Plan) -> Vec<String> {
    plan.to_string().lines().map(str::to_string).collect()
}

#[test]
fn empty_kernel_gets_everything_added() {
    let desired = want(
        vec![
            addr("2001:db8:42::1/128", 2, "eth0"),
            addr("2001:db8:42:100::1/128", 1, "lo"),
        ],
        vec![unreachable("2001:db8:42:100::/64")],
    );
    let plan = diff(&desired, &kernel(vec![], vec![]), OURS);
    assert_eq!(
        text(&plan),
        [
            "ip -6 addr add 2001:db8:42::1/128 dev eth0 nodad",
            "ip -6 addr add 2001:db8:42:100::1/128 dev lo nodad",
            "ip -6 route add unreachable 2001:db8:42:100::/64 metric 2147483647",
        ]
    );
}

#[test]
fn steady_state_is_an_empty_plan() {
    let a = addr("2001:db8:42:100::1/128", 1, "lo");
    let r = unreachable("2001:db8:42:100::/64");
    let plan = diff(
        &want(vec![a.clone()], vec![r.clone()]),
        &kernel(vec![owned_addr(a)], vec![owned_route(r)]),
        OURS,
    );
    assert!(plan.is_empty() && plan.conflicts.is_empty(), "{plan}");
}

#[test]
fn a_foreign_next_hop_is_used_and_never_removed() {
    // The OS configured the next hop (with its own /64): routed6d adds nothing.
    let os_hop = addr("2001:db8:42::1/64", 2, "eth0");
    let observed = kernel(vec![foreign_addr(os_hop)], vec![]);
    let plan = diff(
        &want(vec![addr("2001:db8:42::1/128", 2, "eth0")], vec![]),
        &observed,
        OURS,
    );
    assert!(plan.is_empty(), "{plan}");
    // And when nothing is wanted any more, it is still not touched.
    let plan = diff(&DesiredState::default(), &observed, OURS);
    assert!(plan.is_empty(), "{plan}");
}

#[test]
fn next_hop_change_adds_the_new_before_removing_the_old() {
    let old = addr("2001:db8:42::1/128", 2, "eth0");
    let new = addr("2001:db8:42::2/128", 2, "eth0");
    let plan = diff(
        &want(vec![new], vec![]),
        &kernel(vec![owned_addr(old)], vec![]),
        OURS,
    );
    assert_eq!(
        text(&plan),
        [
            "ip -6 addr add 2001:db8:42::2/128 dev eth0 nodad",
            "ip -6 addr del 2001:db8:42::1/128 dev eth0",
        ]
    );
}

#[test]
fn an_owned_route_with_other_attributes_is_replaced_in_place() {
    let plan = diff(
        &want(vec![], vec![via_dev("2001:db8:42:100::/64", 3, "br1")]),
        &kernel(
            vec![],
            vec![owned_route(via_dev("2001:db8:42:100::/64", 4, "br0"))],
        ),
        OURS,
    );
    assert_eq!(
        text(&plan),
        ["ip -6 route replace 2001:db8:42:100::/64 dev br1 metric 1024"]
    );
}

#[test]
fn a_foreign_route_in_the_way_is_reported_not_touched() {
    let plan = diff(
        &want(vec![], vec![via_dev("2001:db8:42:100::/64", 3, "br1")]),
        &kernel(
            vec![],
            vec![foreign_route(via_dev("2001:db8:42:100::/64", 4, "br0"), 4)],
        ),
        OURS,
    );
    assert!(plan.ops.is_empty(), "{plan}");
    assert_eq!(
        text(&plan),
        [
            "# not touched: want 2001:db8:42:100::/64 dev br1 metric 1024 but found 2001:db8:42:100::/64 dev br0 metric 1024 proto 4"
        ]
    );
}

#[test]
fn a_foreign_route_that_does_the_job_is_used() {
    let r = unreachable("2001:db8:42:100::/64");
    let plan = diff(
        &want(vec![], vec![r.clone()]),
        &kernel(vec![], vec![foreign_route(r, 4)]),
        OURS,
    );
    assert!(plan.is_empty() && plan.conflicts.is_empty(), "{plan}");
}

#[test]
fn a_route_with_the_same_prefix_in_another_slot_is_no_conflict() {
    // A foreign route to the prefix at another metric or table does not share the slot.
    let mut elsewhere = unreachable("2001:db8:42:100::/64");
    elsewhere.table = TABLE_LOCAL;
    let plan = diff(
        &want(vec![], vec![unreachable("2001:db8:42:100::/64")]),
        &kernel(vec![], vec![foreign_route(elsewhere, 4)]),
        OURS,
    );
    assert_eq!(
        text(&plan),
        ["ip -6 route add unreachable 2001:db8:42:100::/64 metric 2147483647"]
    );
}

#[test]
fn an_owned_address_with_another_length_is_swapped() {
    let plan = diff(
        &want(vec![addr("2001:db8:42:100::1/64", 3, "br0")], vec![]),
        &kernel(
            vec![owned_addr(addr("2001:db8:42:100::1/56", 3, "br0"))],
            vec![],
        ),
        OURS,
    );
    assert_eq!(
        text(&plan),
        [
            "ip -6 addr del 2001:db8:42:100::1/56 dev br0",
            "ip -6 addr add 2001:db8:42:100::1/64 dev br0 nodad",
        ]
    );
}

#[test]
fn withdrawing_removes_only_what_is_owned() {
    let observed = kernel(
        vec![
            owned_addr(addr("2001:db8:42:100::1/128", 1, "lo")),
            foreign_addr(addr("2001:db8:1::2/64", 2, "eth0")),
        ],
        vec![
            owned_route(unreachable("2001:db8:42:100::/64")),
            foreign_route(unreachable("2001:db8:99::/64"), 4),
            foreign_route(via_dev("2001:db8:1::/64", 2, "eth0"), 2),
        ],
    );
    let plan = diff(&DesiredState::default(), &observed, OURS);
    assert_eq!(
        text(&plan),
        [
            "ip -6 addr del 2001:db8:42:100::1/128 dev lo",
            "ip -6 route del unreachable 2001:db8:42:100::/64 metric 2147483647",
        ]
    );
    assert!(plan.ops.iter().all(|p| p.op.is_removal()));
}

#[test]
fn accept_ra_follows_forwarding_whoever_turned_it_on() {
    let desired = DesiredState {
        sysctls: vec![SysctlWant {
            key: "net/ipv6/conf/eth0/accept_ra".into(),
            value: "2".into(),
            only_from: vec!["1".into()],
            only_while: Some(("net/ipv6/conf/eth0/forwarding".into(), "1".into())),
            why: "w".into(),
        }],
        ..DesiredState::default()
    };
    let with = |accept_ra: &str, forwarding: &str| {
        let mut observed = kernel(vec![], vec![]);
        observed
            .sysctls
            .insert("net/ipv6/conf/eth0/accept_ra".into(), accept_ra.into());
        observed
            .sysctls
            .insert("net/ipv6/conf/eth0/forwarding".into(), forwarding.into());
        text(&diff(&desired, &observed, OURS))
    };
    assert!(with("1", "0").is_empty(), "no forwarding: nothing to keep");
    assert_eq!(
        with("1", "1"),
        ["sysctl -w net.ipv6.conf.eth0.accept_ra=2  # was 1"]
    );
    assert!(with("0", "1").is_empty(), "an operator's 0 stays");
    assert!(with("2", "1").is_empty());
}

#[test]
fn sysctls_change_only_from_the_allowed_values() {
    let desired = DesiredState {
        sysctls: vec![
            SysctlWant {
                key: "net/ipv6/conf/eth0/accept_ra".into(),
                value: "2".into(),
                only_from: vec!["1".into()],
                only_while: None,
                why: "w".into(),
            },
            SysctlWant {
                key: "net/ipv6/conf/all/forwarding".into(),
                value: "1".into(),
                only_from: vec![],
                only_while: None,
                why: "w".into(),
            },
        ],
        ..DesiredState::default()
    };
    let mut observed = kernel(vec![], vec![]);
    observed
        .sysctls
        .insert("net/ipv6/conf/eth0/accept_ra".into(), "1".into());
    observed
        .sysctls
        .insert("net/ipv6/conf/all/forwarding".into(), "0".into());
    assert_eq!(
        text(&diff(&desired, &observed, OURS)),
        [
            "sysctl -w net.ipv6.conf.eth0.accept_ra=2  # was 1",
            "sysctl -w net.ipv6.conf.all.forwarding=1  # was 0",
        ]
    );
    // An operator's accept_ra=0 is a choice: left alone. Unreadable keys are skipped.
    observed
        .sysctls
        .insert("net/ipv6/conf/eth0/accept_ra".into(), "0".into());
    observed.sysctls.remove("net/ipv6/conf/all/forwarding");
    assert!(diff(&desired, &observed, OURS).is_empty());
}

#[test]
fn plan_lines_name_the_provider_object() {
    let mut desired = DesiredState::default();
    let wanted = addr("2604:a880:800:14::42c3:d000/128", 1, "lo");
    let reserved = origin("reserved_ipv6 2604:a880:800:14::42c3:d000");
    desired.addresses.push(Wanted::new(wanted, &reserved));
    let observed = ObservedState {
        addresses: vec![ObservedAddress {
            address: addr("2001:db8:42:100::1/128", 1, "lo"),
            protocol: OURS,
        }],
        ..ObservedState::default()
    };
    let plan = diff(&desired, &observed, OURS);
    assert_eq!(
        annotated(&plan),
        "ip -6 addr add 2604:a880:800:14::42c3:d000/128 dev lo nodad  # reserved_ipv6 2604:a880:800:14::42c3:d000\n\
         ip -6 addr del 2001:db8:42:100::1/128 dev lo  # no longer routed here\n"
    );
}

#[test]
fn each_op_carries_the_routed_prefix_of_its_object() {
    let lo = addr("2001:db8:42:100::1/128", 1, "lo");
    let net = unreachable("2001:db8:42:100::/64");
    let reserved = origin("reserved_ipv6 2604:a880:800:14::42c3:d000");
    let desired = DesiredState {
        addresses: vec![Wanted::new(lo.clone(), &reserved)],
        routes: vec![Wanted::new(net.clone(), &origin("ripv6_1"))],
        ..DesiredState::default()
    };
    let plan = diff(&desired, &kernel(vec![], vec![]), OURS);
    let named: Vec<(Op, &str)> = plan
        .ops
        .iter()
        .map(|p| {
            (
                p.op.clone(),
                p.origin.as_ref().map_or("", |o| o.origin.as_str()),
            )
        })
        .collect();
    assert_eq!(
        named,
        vec![
            (
                Op::AddAddress(lo),
                "reserved_ipv6 2604:a880:800:14::42c3:d000"
            ),
            (Op::AddRoute(net), "ripv6_1"),
        ]
    );
}

#[test]
fn a_removal_is_named_by_what_the_pass_before_made_it_for() {
    let old = addr("2001:db8:42:100::1/128", 1, "lo");
    let old_net = unreachable("2001:db8:42:100::/64");
    let unknown = addr("2001:db8:77::1/128", 1, "lo");
    let before = origin("ripv6_old");
    let previous = DesiredState {
        addresses: vec![Wanted::new(old.clone(), &before)],
        routes: vec![Wanted::new(old_net.clone(), &before)],
        ..DesiredState::default()
    };
    let observed = kernel(
        vec![owned_addr(old.clone()), owned_addr(unknown.clone())],
        vec![owned_route(old_net.clone())],
    );
    let mut plan = diff(&DesiredState::default(), &observed, OURS);
    assert!(
        plan.ops.iter().all(|p| p.origin.is_none()),
        "the diff alone knows none"
    );
    attribute_removals(&mut plan, &previous);
    let named: Vec<(Op, Option<&str>)> = plan
        .ops
        .iter()
        .map(|p| (p.op.clone(), p.origin.as_ref().map(|o| o.origin.as_str())))
        .collect();
    assert_eq!(
        named,
        vec![
            (Op::DelAddress(old), Some("ripv6_old")),
            (Op::DelAddress(unknown), None),
            (Op::DelRoute(old_net), Some("ripv6_old")),
        ]
    );
}

fn proxy(addr: &str) -> crate::model::Proxy {
    crate::model::Proxy {
        ifindex: 2,
        addr: addr.parse().expect("ip"),
        ifname: "eth0".into(),
    }
}

#[test]
fn proxies_are_added_where_none_is_and_only_routed6ds_are_deleted() {
    use crate::model::ObservedProxy;
    let desired = DesiredState {
        proxies: vec![
            Wanted::new(proxy("2001:db8:1:0:1::100"), &origin("web")),
            Wanted::new(proxy("2001:db8:1:0:1::101"), &origin("web")),
        ],
        ..DesiredState::default()
    };
    let observed = ObservedState {
        proxies: vec![
            // An operator's entry for a wanted address does the job: never stamped.
            ObservedProxy {
                proxy: proxy("2001:db8:1:0:1::101"),
                protocol: 0,
            },
            // routed6d's entry for an address no longer in use goes.
            ObservedProxy {
                proxy: proxy("2001:db8:1:0:1::102"),
                protocol: OURS,
            },
            // An operator's entry nobody wants stays.
            ObservedProxy {
                proxy: proxy("2001:db8:1::abcd"),
                protocol: 0,
            },
        ],
        ..ObservedState::default()
    };
    let plan = diff(&desired, &observed, OURS);
    let text: Vec<String> = plan.ops.iter().map(|p| p.op.to_string()).collect();
    assert_eq!(
        text,
        [
            "ip -6 neigh add proxy 2001:db8:1:0:1::100 dev eth0",
            "ip -6 neigh del proxy 2001:db8:1:0:1::102 dev eth0",
        ]
    );
    // The state after is what the next diff starts from: nothing left to do.
    let after = expected_after(observed, &plan, OURS);
    assert!(diff(&desired, &after, OURS).is_empty());
    // Withdrawing wants nothing: only routed6d's entries go.
    let withdraw = diff(&DesiredState::default(), &after, OURS);
    let text: Vec<String> = withdraw.ops.iter().map(|p| p.op.to_string()).collect();
    assert_eq!(text, ["ip -6 neigh del proxy 2001:db8:1:0:1::100 dev eth0"]);
}
