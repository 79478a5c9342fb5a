use super::*;
use crate::config::Config;
use crate::model::RoutedPrefix;
use std::path::Path;

/// A HostUp config with `extra` after `[uplink] interface = "eth0"`. Parsing reads no
/// file, so no token file is needed.
pub(crate) fn config(extra: &str) -> Config {
    let text = format!(
        "[provider]\nkind = \"hostup\"\nvps_id = \"vps_1\"\n[uplink]\ninterface = \"eth0\"\n{extra}"
    );
    Config::from_text(Path::new("t.toml"), &text, None).expect("config")
}

/// A DigitalOcean config, with or without `outbound_source`.
fn digitalocean(outbound_source: bool) -> Config {
    let text = format!(
        "[provider]\nkind = \"digitalocean\"\noutbound_source = {outbound_source}\n[uplink]\ninterface = \"eth0\"\n"
    );
    Config::from_text(Path::new("t.toml"), &text, None).expect("config")
}

/// `super::compute` as a first pass judges next hops on an uplink carrying traffic
/// with nothing there yet: every one is added as a /128.
pub(crate) fn compute(config: &Config, assignment: &Assignment, links: &[Link]) -> DesiredState {
    let places = assignment
        .prefixes
        .iter()
        .filter_map(|p| p.next_hop)
        .map(|hop| (hop, Place::Add(crate::next_hop::Form::HOST)))
        .collect();
    super::compute(config, assignment, links, &places)
}

/// The accept_ra want every uplink has by default (`keep_accept_ra`), as `lines` shows it.
const KEEP_ACCEPT_RA: &str =
    "sysctl net/ipv6/conf/eth0/accept_ra=2 if [\"1\"] while net/ipv6/conf/eth0/forwarding=1";

pub(crate) fn links() -> Vec<Link> {
    [("lo", 1), ("eth0", 2), ("br0", 3)]
        .iter()
        .map(|(n, i)| Link {
            alias: None,
            index: *i,
            name: n.to_string(),
            up: true,
            lower_up: true,
        })
        .collect()
}

pub(crate) fn assignment(prefix: &str, next_hop: &str) -> Assignment {
    Assignment {
        prefixes: vec![RoutedPrefix {
            workload: None,
            prefix: prefix.parse().expect("prefix"),
            next_hop: Some(next_hop.parse().expect("next hop")),
            origin: "ripv6_1".into(),
        }],
        ..Assignment::default()
    }
}

/// The provider object the desired address `text` (as `ip` prints it) is made for.
fn origin_of<'a>(state: &'a DesiredState, text: &str) -> Option<&'a str> {
    state
        .addresses
        .iter()
        .find(|a| a.to_string() == text)
        .map(|a| a.origin.origin.as_str())
}

fn lines(state: &DesiredState) -> Vec<String> {
    state
        .addresses
        .iter()
        .map(|a| format!("addr {a}"))
        .chain(state.routes.iter().map(|r| format!("route {r}")))
        .chain(state.sysctls.iter().map(|s| match &s.only_while {
            Some((key, value)) => format!(
                "sysctl {}={} if {:?} while {key}={value}",
                s.key, s.value, s.only_from
            ),
            None => format!("sysctl {}={} if {:?}", s.key, s.value, s.only_from),
        }))
        .collect()
}

#[test]
fn addresses_mode() {
    let state = compute(
        &config("[prefix]\naddresses = [\"::1\", \"::53\"]\n"),
        &assignment("2001:db8:42:100::/64", "2001:db8:42::1"),
        &links(),
    );
    assert_eq!(
        lines(&state),
        [
            "addr 2001:db8:42::1/128 dev eth0",
            "addr 2001:db8:42:100::1/128 dev lo",
            "addr 2001:db8:42:100::53/128 dev lo",
            "route unreachable 2001:db8:42:100::/64 metric 2147483647",
            KEEP_ACCEPT_RA,
        ]
    );
    assert_eq!(
        origin_of(&state, "2001:db8:42:100::1/128 dev lo"),
        Some("ripv6_1")
    );
    assert!(state.missing_interfaces.is_empty());
}

#[test]
fn anyip_mode_without_unreachable() {
    let state = compute(
        &config("[prefix]\nmode = \"anyip\"\nunreachable = false\n"),
        &assignment("2001:db8:42:100::/56", "2001:db8:42::1"),
        &links(),
    );
    assert_eq!(
        lines(&state),
        [
            "addr 2001:db8:42::1/128 dev eth0",
            "route local 2001:db8:42:100::/56 dev lo table local metric 1024",
            KEEP_ACCEPT_RA,
        ]
    );
}

#[test]
fn delegate_mode_routes_on_and_sets_sysctls_accept_ra_first() {
    let state = compute(
        &config("[prefix]\nmode = \"delegate\"\ninterface = \"br0\"\n"),
        &assignment("2001:db8:42:100::/64", "2001:db8:42::1"),
        &links(),
    );
    assert_eq!(
        lines(&state),
        [
            "addr 2001:db8:42::1/128 dev eth0",
            "addr 2001:db8:42:100::1/64 dev br0 noprefixroute",
            "route 2001:db8:42:100::/64 dev br0 metric 1024",
            "route unreachable 2001:db8:42:100::/64 metric 2147483647",
            "sysctl net/ipv6/conf/eth0/accept_ra=2 if [\"1\"]",
            "sysctl net/ipv6/conf/all/forwarding=1 if []",
        ]
    );
    assert_eq!(
        sysctl_keys(&config(
            "[prefix]\nmode = \"delegate\"\ninterface = \"br0\"\n"
        )),
        [
            "net/ipv6/conf/eth0/accept_ra",
            "net/ipv6/conf/eth0/forwarding",
            "net/ipv6/conf/all/forwarding"
        ]
    );
}

#[test]
fn accept_ra_follows_forwarding_unless_turned_off() {
    let keep = compute(&config(""), &Assignment::default(), &links());
    assert_eq!(
        lines(&keep),
        [KEEP_ACCEPT_RA],
        "kept whatever is routed, whoever turns forwarding on"
    );
    let off = "keep_accept_ra = false\n";
    assert_eq!(
        compute(&config(off), &Assignment::default(), &links()),
        DesiredState::default()
    );
    assert!(sysctl_keys(&config(off)).is_empty());
    let delegate = compute(
        &config(&format!(
            "{off}[prefix]\nmode = \"delegate\"\ninterface = \"br0\"\n"
        )),
        &assignment("2001:db8:42:100::/64", "2001:db8:42::1"),
        &links(),
    );
    assert!(
        delegate
            .sysctls
            .iter()
            .all(|s| !s.key.ends_with("accept_ra")),
        "{:?}",
        lines(&delegate)
    );
}

#[test]
fn check_policy_never_adds_the_next_hop() {
    let state = compute(
        &config("next_hop = \"check\"\n"),
        &assignment("2001:db8:42:100::/64", "2001:db8:42::1"),
        &links(),
    );
    assert!(
        state.addresses.iter().all(|a| a.ifname != "eth0"),
        "{:?}",
        lines(&state)
    );
}

#[test]
fn nothing_routed_means_nothing_desired() {
    let state = compute(&config(""), &Assignment::default(), &links());
    assert!(state.addresses.is_empty() && state.routes.is_empty());
    let state = compute(
        &config("[prefix]\nmode = \"delegate\"\ninterface = \"br0\"\n"),
        &Assignment::default(),
        &links(),
    );
    assert_eq!(
        lines(&state),
        [KEEP_ACCEPT_RA],
        "no forwarding without a prefix"
    );
}

#[test]
fn missing_interfaces_are_reported_and_skipped() {
    let only_lo = vec![Link {
        alias: None,
        index: 1,
        name: "lo".into(),
        up: true,
        lower_up: true,
    }];
    let state = compute(
        &config(""),
        &assignment("2001:db8:42:100::/64", "2001:db8:42::1"),
        &only_lo,
    );
    assert_eq!(state.missing_interfaces, ["eth0"]);
    assert_eq!(
        lines(&state),
        [
            "addr 2001:db8:42:100::1/128 dev lo",
            "route unreachable 2001:db8:42:100::/64 metric 2147483647",
            KEEP_ACCEPT_RA,
        ]
    );
}

#[test]
fn several_prefixes_share_one_next_hop_address() {
    let mut two = assignment("2001:db8:42:100::/64", "2001:db8:42::1");
    two.prefixes.push(RoutedPrefix {
        workload: None,
        prefix: "2001:db8:42:200::/64".parse().expect("prefix"),
        next_hop: Some("2001:db8:42::1".parse().expect("hop")),
        origin: "ripv6rt_2".into(),
    });
    let state = compute(&config(""), &two, &links());
    assert_eq!(
        state
            .addresses
            .iter()
            .filter(|a| a.ifname == "eth0")
            .count(),
        1
    );
    assert_eq!(state.routes.len(), 2);
}

#[test]
fn host_parts_are_placed_inside_the_prefix() {
    let p: Ipv6Net = "2001:db8:42:100::/56".parse().expect("net");
    assert_eq!(
        place_host(p, "::1".parse().expect("a")),
        "2001:db8:42:100::1".parse::<Ipv6Addr>().expect("a")
    );
    // Bits above the prefix length in a host part are dropped, never leak outside.
    assert_eq!(
        place_host(p, "ffff::1".parse().expect("a")),
        "2001:db8:42:100::1".parse::<Ipv6Addr>().expect("a")
    );
    let p48: Ipv6Net = "2001:db8:42::/48".parse().expect("net");
    assert_eq!(
        place_host(p48, "0:0:0:7::1".parse().expect("a")),
        "2001:db8:42:7::1".parse::<Ipv6Addr>().expect("a")
    );
}

/// A DigitalOcean reserved IPv6: routed to the uplink's own address, so no next hop on
/// the uplink and no unreachable route; the address itself as a /128 on prefix.interface.
fn reserved(ip: &str) -> RoutedPrefix {
    RoutedPrefix {
        workload: None,
        prefix: format!("{ip}/128").parse().expect("ip"),
        next_hop: None,
        origin: format!("reserved_ipv6 {ip}"),
    }
}

#[test]
fn a_reserved_address_is_a_slash_128_on_the_prefix_interface() {
    let a = Assignment {
        prefixes: vec![reserved("2604:a880:800:14::42c3:d000")],
        ..Assignment::default()
    };
    let state = compute(&config(""), &a, &links());
    assert_eq!(
        lines(&state),
        [
            "addr 2604:a880:800:14::42c3:d000/128 dev lo",
            KEEP_ACCEPT_RA
        ]
    );
    assert_eq!(
        origin_of(&state, "2604:a880:800:14::42c3:d000/128 dev lo"),
        Some("reserved_ipv6 2604:a880:800:14::42c3:d000")
    );
    // Another interface when prefix.interface says so; routed prefixes beside it are
    // unaffected.
    let mut mixed = assignment("2001:db8:42:100::/64", "2001:db8:42::1");
    mixed.prefixes.push(reserved("2604:a880:800:14::42c3:d001"));
    let state = compute(&config("[prefix]\ninterface = \"br0\"\n"), &mixed, &links());
    assert_eq!(
        lines(&state),
        [
            "addr 2001:db8:42::1/128 dev eth0",
            "addr 2001:db8:42:100::1/128 dev br0",
            "addr 2604:a880:800:14::42c3:d001/128 dev br0",
            "route unreachable 2001:db8:42:100::/64 metric 2147483647",
            KEEP_ACCEPT_RA,
        ]
    );
    assert!(!mixed.next_hop_is_stale());
}

fn reserved_only(addr: &str) -> Assignment {
    Assignment {
        prefixes: vec![RoutedPrefix {
            workload: None,
            prefix: format!("{addr}/128").parse().expect("prefix"),
            next_hop: None,
            origin: format!("reserved_ipv6 {addr}"),
        }],
        ..Assignment::default()
    }
}

fn default_route(gateway: &str, metric: u32, protocol: u8) -> crate::model::ObservedRoute {
    crate::model::ObservedRoute {
        route: Route {
            table: TABLE_MAIN,
            dst: "::/0".parse().expect("dst"),
            metric,
            kind: RouteKind::Via {
                gateway: gateway.parse().expect("gateway"),
                src: None,
            },
            ifindex: Some(2),
            ifname: Some("eth0".into()),
        },
        protocol,
    }
}

fn outbound(observed_routes: Vec<crate::model::ObservedRoute>, enabled: bool) -> Vec<String> {
    let config = digitalocean(enabled);
    let observed = ObservedState {
        routes: observed_routes,
        ..ObservedState::default()
    };
    let assignment = reserved_only("2604:a880:800:14::42c3:d000");
    let mut state = compute(&config, &assignment, &links());
    add_outbound_source(&mut state, &config, &assignment, &observed, 126);
    state.routes.iter().map(|r| r.to_string()).collect()
}

#[test]
fn outbound_source_copies_the_best_default_route_one_metric_ahead_with_src() {
    let routes = outbound(
        vec![
            default_route("fe80::2", 1024, 3),
            default_route("fe80::1", 100, 9),
            // routed6d's own copy from an earlier pass is not the original.
            default_route("fe80::9", 50, 126),
        ],
        true,
    );
    assert_eq!(
        routes,
        ["default via fe80::1 dev eth0 src 2604:a880:800:14::42c3:d000 metric 99"]
    );
}

#[test]
fn outbound_source_needs_the_option_an_original_and_a_reserved_address() {
    assert!(outbound(vec![default_route("fe80::1", 100, 9)], false).is_empty());
    assert!(
        outbound(vec![], true).is_empty(),
        "no default route: nothing to copy"
    );
    let config = digitalocean(true);
    let observed = ObservedState {
        routes: vec![default_route("fe80::1", 100, 9)],
        ..ObservedState::default()
    };
    let routed = assignment("2001:db8:42:100::/64", "2001:db8:42::1");
    let mut state = compute(&config, &routed, &links());
    let before = state.routes.len();
    add_outbound_source(&mut state, &config, &routed, &observed, 126);
    assert_eq!(
        state.routes.len(),
        before,
        "only a reserved IPv6 is a source"
    );
}

#[test]
fn outbound_source_at_metric_one_takes_the_same_slot_for_the_planner_to_refuse() {
    let routes = outbound(vec![default_route("fe80::1", 1, 9)], true);
    assert_eq!(
        routes,
        ["default via fe80::1 dev eth0 src 2604:a880:800:14::42c3:d000 metric 1"]
    );
}

const WEB: &str =
    "[[workload]]\nname = \"web\"\nkind = \"bridge\"\ninterface = \"br0\"\nprefix_length = 64\n";

#[test]
fn a_workload_gets_its_gateway_and_route_and_follows_a_prefix_change() {
    let config = config(WEB);
    let lines_for = |prefix: &str| {
        let desired = compute(&config, &assignment(prefix, "2001:db8::10"), &links());
        let mut lines: Vec<String> = desired
            .addresses
            .iter()
            .filter(|a| a.ifname == "br0")
            .map(|a| format!("addr {}", a.object))
            .chain(
                desired
                    .routes
                    .iter()
                    .filter(|r| r.ifname.as_deref() == Some("br0"))
                    .map(|r| format!("route {}", r.object)),
            )
            .collect();
        lines.sort();
        (lines, desired)
    };
    let (before, desired) = lines_for("2001:db8:42:100::/56");
    assert_eq!(
        before,
        vec![
            "addr 2001:db8:42:101::1/64 dev br0 noprefixroute",
            "route 2001:db8:42:101::/64 dev br0 metric 1024",
        ]
    );
    let origin = &desired
        .routes
        .iter()
        .find(|r| r.ifname.as_deref() == Some("br0"))
        .unwrap()
        .origin;
    assert_eq!(
        origin.workload.as_ref().map(|w| w.name.as_str()),
        Some("web")
    );
    assert_eq!(
        origin.prefix,
        "2001:db8:42:100::/56".parse::<Ipv6Net>().unwrap()
    );
    assert!(desired.sysctls.iter().any(|s| s.key == FORWARDING_KEY));
    assert_eq!(desired.bridges.len(), 1);
    let (after, _) = lines_for("2001:db8:99:ab00::/56");
    assert_eq!(
        after,
        vec![
            "addr 2001:db8:99:ab01::1/64 dev br0 noprefixroute",
            "route 2001:db8:99:ab01::/64 dev br0 metric 1024",
        ]
    );
}

#[test]
fn workloads_that_do_not_fit_get_nothing_and_say_why() {
    let config = config(WEB);
    let desired = compute(
        &config,
        &assignment("2001:db8:42:100::/64", "2001:db8::10"),
        &links(),
    );
    assert!(desired.workloads.is_empty());
    assert!(!desired.addresses.iter().any(|a| a.ifname == "br0"));
    assert_eq!(
        desired.workload_error.as_deref(),
        Some(
            "workload \"web\": prefix_length 64 is not longer than the routed prefix 2001:db8:42:100::/64: there is no room for the host's slot beside it"
        )
    );
    // The bridge itself is still wanted: it does not depend on the prefix.
    assert_eq!(desired.bridges[0].name, "br0");
}

mod on_link {
    use super::*;
    use crate::kernel::KernelEvent;
    use crate::model::{Neighbour, ObservedAddress, ObservedState};

    const REACHABLE: u16 = 0x02;
    const STALE: u16 = 0x04;
    const FAILED: u16 = 0x20;
    const INCOMPLETE: u16 = 0x01;

    fn config() -> Config {
        let text = "[provider]\nkind = \"onlink\"\n[uplink]\ninterface = \"eth0\"\n[[workload]]\nname = \"web\"\nkind = \"bridge\"\ninterface = \"br-web\"\nprefix_length = 80\n";
        Config::from_text(Path::new("t.toml"), text, None).expect("config")
    }

    fn assignment() -> Assignment {
        Assignment {
            prefixes: vec![RoutedPrefix {
                workload: None,
                prefix: "2001:db8:1::/64".parse().expect("prefix"),
                next_hop: None,
                origin: "on-link 2001:db8:1::/64 of eth0".into(),
            }],
            ..Assignment::default()
        }
    }

    fn ip(text: &str) -> std::net::Ipv6Addr {
        text.parse().expect("ip")
    }

    /// lo 1, eth0 2 holding `uplink_addr`, br-web 3 with the neighbours given.
    fn observed(uplink_addr: &str, neighbours: &[(u32, &str, u16)]) -> ObservedState {
        let links = [("lo", 1), ("eth0", 2), ("br-web", 3)]
            .iter()
            .map(|(n, i)| Link {
                alias: None,
                index: *i,
                name: n.to_string(),
                up: true,
                lower_up: true,
            })
            .collect();
        ObservedState {
            links,
            addresses: vec![ObservedAddress {
                address: Address {
                    ifindex: 2,
                    addr: ip(uplink_addr),
                    prefix_len: 64,
                    ifname: "eth0".into(),
                    no_prefix_route: false,
                },
                protocol: 0,
            }],
            neighbours: neighbours
                .iter()
                .map(|(ifindex, addr, state)| Neighbour {
                    ifindex: *ifindex,
                    addr: ip(addr),
                    state: *state,
                })
                .collect(),
            ..ObservedState::default()
        }
    }

    fn desired(observed: &ObservedState) -> DesiredState {
        let config = config();
        let mut state = compute(&config, &assignment(), &observed.links);
        add_on_link(&mut state, &config, &assignment(), observed, &[]);
        state
    }

    #[test]
    fn a_docker_workload_has_no_kernel_objects_of_routeds_and_its_containers_are_proxied() {
        let text = "[provider]\nkind = \"onlink\"\n[uplink]\ninterface = \"eth0\"\n[[workload]]\nname = \"web\"\nkind = \"docker\"\ndocker_network = \"web\"\ninterface = \"br-web\"\nprefix_length = 80\n";
        let config = Config::from_text(Path::new("t.toml"), text, None).expect("config");
        // Two containers Docker knows of, one outside the sub-prefix, Docker's gateway;
        // and a neighbour in the cache Docker no longer knows of (a removed container's
        // entry lingers).
        let observed = observed("2001:db8:1::2", &[(3, "2001:db8:1:0:1::99", REACHABLE)]);
        let from_docker = [
            ip("2001:db8:1:0:1::2"),
            ip("2001:db8:1:0:1::100"),
            ip("2001:db8:1:0:2::5"),
            ip("2001:db8:1:0:1::1"),
        ];
        let mut state = compute(&config, &assignment(), &observed.links);
        add_on_link(&mut state, &config, &assignment(), &observed, &from_docker);
        assert!(state.bridges.is_empty(), "Docker makes the bridge");
        assert!(state.addresses.is_empty(), "Docker puts the gateway on it");
        assert!(
            state.routes.is_empty(),
            "the kernel routes the sub-prefix to it"
        );
        assert_eq!(state.workloads.len(), 1);
        let proxies: Vec<String> = state.proxies.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            proxies,
            [
                "proxy 2001:db8:1:0:1::2 dev eth0",
                "proxy 2001:db8:1:0:1::100 dev eth0",
            ]
        );
        // Docker's word alone counts: its bridge's neighbour cache calls for no pass.
        let neighbour = |addr: &str, removed| KernelEvent::Neighbour {
            ifindex: 3,
            addr: ip(addr),
            state: REACHABLE,
            proxy: false,
            removed,
        };
        let relevant = |e: KernelEvent| crate::daemon::is_relevant(&e, &state, &config);
        assert!(!relevant(neighbour("2001:db8:1:0:1::7", false)));
        assert!(!relevant(neighbour("2001:db8:1:0:1::100", true)));
    }

    #[test]
    fn only_the_workloads_objects_and_a_proxy_per_address_in_use() {
        let observed = observed(
            "2001:db8:1::2",
            &[
                (3, "2001:db8:1:0:1::100", REACHABLE),
                (3, "2001:db8:1:0:1::103", STALE),
                (3, "2001:db8:1:0:1::101", FAILED),
                (3, "2001:db8:1:0:1::104", INCOMPLETE),
                // Behind the bridge but outside its /80, and in the /80 on another link.
                (3, "2001:db8:1::9", REACHABLE),
                (2, "2001:db8:1:0:1::102", REACHABLE),
                (3, "fe80::5", REACHABLE),
            ],
        );
        let state = desired(&observed);
        assert_eq!(
            lines(&state)
                .into_iter()
                .filter(|l| !l.starts_with("sysctl"))
                .collect::<Vec<_>>(),
            [
                "addr 2001:db8:1:0:1::1/80 dev br-web noprefixroute",
                "route 2001:db8:1:0:1::/80 dev br-web metric 1024",
            ],
            "nothing on lo, no next hop, no unreachable route for the link's own /64"
        );
        let proxies: Vec<String> = state.proxies.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            proxies,
            [
                "proxy 2001:db8:1:0:1::100 dev eth0",
                "proxy 2001:db8:1:0:1::103 dev eth0",
            ]
        );
        assert!(state.proxies.iter().all(|p| p.ifindex == 2));
        assert!(
            state.proxies.iter().all(|p| p
                .origin
                .workload
                .as_ref()
                .is_some_and(|w| w.name == "web"))
        );
        assert!(
            state
                .sysctls
                .iter()
                .any(|s| s.key == "net/ipv6/conf/eth0/proxy_ndp" && s.value == "1")
        );
        assert!(sysctl_keys(&config()).contains(&"net/ipv6/conf/eth0/proxy_ndp".to_string()));
    }

    #[test]
    fn a_workload_over_the_uplinks_own_address_is_not_placed() {
        let observed = observed(
            "2001:db8:1:0:1:ff:fe00:5",
            &[(3, "2001:db8:1:0:1::100", REACHABLE)],
        );
        let state = desired(&observed);
        let error = state.workload_error.clone().expect("an error");
        assert!(
            error.contains("the uplink's own address 2001:db8:1:0:1:ff:fe00:5"),
            "{error}"
        );
        assert!(state.workloads.is_empty());
        assert!(state.proxies.is_empty());
        assert!(state.addresses.is_empty() && state.routes.is_empty());
    }

    #[test]
    fn neighbour_events_matter_when_they_change_what_is_proxied() {
        let config = config();
        let state = desired(&observed(
            "2001:db8:1::2",
            &[(3, "2001:db8:1:0:1::100", REACHABLE)],
        ));
        let event = |ifindex, addr: &str, state, proxy, removed| KernelEvent::Neighbour {
            ifindex,
            addr: ip(addr),
            state,
            proxy,
            removed,
        };
        let relevant = |e: KernelEvent| crate::daemon::is_relevant(&e, &state, &config);
        // A proxied neighbour going stale changes nothing; failing or going does.
        assert!(!relevant(event(
            3,
            "2001:db8:1:0:1::100",
            STALE,
            false,
            false
        )));
        assert!(relevant(event(
            3,
            "2001:db8:1:0:1::100",
            FAILED,
            false,
            false
        )));
        assert!(relevant(event(
            3,
            "2001:db8:1:0:1::100",
            REACHABLE,
            false,
            true
        )));
        // A new one behind the bridge matters; one elsewhere, or incomplete, does not.
        assert!(relevant(event(3, "2001:db8:1:0:1::7", STALE, false, false)));
        assert!(!relevant(event(
            3,
            "2001:db8:1:0:1::7",
            INCOMPLETE,
            false,
            false
        )));
        assert!(!relevant(event(
            2,
            "2001:db8:1:0:1::7",
            REACHABLE,
            false,
            false
        )));
        assert!(!relevant(event(
            3,
            "2001:db8:1::7",
            REACHABLE,
            false,
            false
        )));
        // routed6d's proxy entry deleted: repair; someone else's added: nothing.
        assert!(relevant(event(2, "2001:db8:1:0:1::100", 0, true, true)));
        assert!(!relevant(event(2, "2001:db8:1:0:1::150", 0, true, false)));
    }
}
