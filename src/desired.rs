//! Pure: what the kernel should hold for a configuration and an assignment
//! (docs/PROVIDERS.md §4). No I/O, no logging: the same inputs give the same state.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::sync::Arc;

use ipnet::Ipv6Net;

use crate::config::{Config, NextHopPolicy, PrefixMode, ProviderKind, WorkloadKind};
use crate::model::{
    Address, Assignment, Bridge, DesiredState, Link, ObservedState, Origin, Proxy, Route,
    RouteKind, RoutedPrefix, SysctlWant, TABLE_LOCAL, TABLE_MAIN, Wanted, workload_bridge_alias,
};
use crate::next_hop::Place;
use crate::workload;

/// The metric the kernel gives an IPv6 route when none is asked for (`ip -6 route`
/// prints it as 1024).
pub const DEFAULT_METRIC: u32 = 1024;

/// The unreachable route sits far behind anything else for the same prefix: an
/// operator's or routed6d's delegate route wins, and the unreachable route only
/// catches what nothing else claims — including the whole prefix if the delegate
/// interface goes away, instead of letting packets loop back to the provider.
pub const UNREACHABLE_METRIC: u32 = 2_147_483_647;

/// The sysctls routed6d may touch or follow for `config`, so one look reads them all.
pub fn sysctl_keys(config: &Config) -> Vec<String> {
    let uplink = &config.uplink.interface;
    let mut keys = Vec::new();
    if config.uplink.keep_accept_ra {
        keys.push(accept_ra_key(uplink));
        keys.push(conf_key(uplink, "forwarding"));
    }
    if config.prefix.mode == PrefixMode::Delegate || !config.workloads.is_empty() {
        keys.push(FORWARDING_KEY.to_string());
    }
    if on_link(config) {
        keys.push(conf_key(uplink, "proxy_ndp"));
    }
    keys
}

/// `kind = "onlink"`: the prefix is the uplink's own /64, not routed here.
fn on_link(config: &Config) -> bool {
    config.provider.kind() == ProviderKind::Onlink
}

const FORWARDING_KEY: &str = "net/ipv6/conf/all/forwarding";

fn conf_key(interface: &str, name: &str) -> String {
    // Interface names may contain dots (eth0.100); /proc/sys uses them as they are.
    format!("net/ipv6/conf/{interface}/{name}")
}

fn accept_ra_key(interface: &str) -> String {
    conf_key(interface, "accept_ra")
}

/// `outbound_source`: make the first address routed to this host's own address (a
/// DigitalOcean reserved IPv6) the source of the traffic it originates.
///
/// routed6d does not rewrite the host's default route — it is not routed6d's. It adds
/// its own copy of the best one (same gateway, same interface) with `src`, one metric
/// ahead, so the kernel prefers it; withdrawing that copy leaves the original exactly as
/// it was. The copy follows the original (a new gateway, another interface) and goes
/// when the original goes. An original at metric 1 leaves no room ahead of it: the copy
/// would take its slot, which the planner reports as a conflict instead.
pub fn add_outbound_source(
    state: &mut DesiredState,
    config: &Config,
    assignment: &Assignment,
    observed: &ObservedState,
    protocol: u8,
) {
    if !config.provider.outbound_source() {
        return;
    }
    let Some(source) = assignment.prefixes.iter().find(|p| p.next_hop.is_none()) else {
        return;
    };
    let best_default = observed
        .routes
        .iter()
        .filter(|r| r.protocol != protocol)
        .map(|r| &r.route)
        .filter(|r| r.table == TABLE_MAIN && r.dst.prefix_len() == 0 && r.ifindex.is_some())
        .filter(|r| matches!(r.kind, RouteKind::Via { .. }))
        .min_by_key(|r| r.metric);
    let Some(original) = best_default else {
        return;
    };
    let RouteKind::Via { gateway, .. } = original.kind else {
        return;
    };
    let route = Route {
        table: TABLE_MAIN,
        dst: original.dst,
        // Metric 0 would mean "the default" (1024) to the kernel.
        metric: original.metric.saturating_sub(1).max(1),
        kind: RouteKind::Via {
            gateway,
            src: Some(source.prefix.addr()),
        },
        ifindex: original.ifindex,
        ifname: original.ifname.clone(),
    };
    state.routes.push(Wanted {
        object: route,
        origin: Arc::new(source.clone()),
    });
}

/// `prefix`'s network with `host`'s bits below the prefix length: `::1` in
/// 2001:db8:42:100::/64 is 2001:db8:42:100::1.
pub fn place_host(prefix: Ipv6Net, host: Ipv6Addr) -> Ipv6Addr {
    let network = u128::from(prefix.network());
    let hostmask = u128::from(prefix.hostmask());
    Ipv6Addr::from(network | (u128::from(host) & hostmask))
}

/// Compute the desired kernel state. `next_hops` says, per next hop, what the uplink's
/// place for it calls for in this pass (`next_hop::NextHopBook::judge`); a next hop
/// missing there is not added.
pub fn compute(
    config: &Config,
    assignment: &Assignment,
    links: &[Link],
    next_hops: &BTreeMap<Ipv6Addr, Place>,
) -> DesiredState {
    let mut state = DesiredState::default();
    let find = |name: &str| links.iter().find(|l| l.name == name);
    let uplink = find(&config.uplink.interface);
    let target = find(&config.prefix.interface);
    if !assignment.prefixes.is_empty() {
        for (name, link) in [
            (&config.uplink.interface, uplink),
            (&config.prefix.interface, target),
        ] {
            if link.is_none() && !state.missing_interfaces.contains(name) {
                state.missing_interfaces.push(name.clone());
            }
        }
    }

    // An on-link /64 is the uplink's own: the host holds its address there already, the
    // provider's router reaches it without a next hop, and the kernel's own prefix route
    // for the link covers the rest. None of a routed prefix's objects (addresses on lo, a
    // next hop, the unreachable route) belong to it; only the workloads are placed in it
    // (`add_workloads`, `add_on_link`).
    let routed_here: &[RoutedPrefix] = if on_link(config) {
        &[]
    } else {
        &assignment.prefixes
    };
    for routed in routed_here {
        let prefix = routed.prefix;
        // One for every object made for this prefix.
        let origin: Origin = Arc::new(routed.clone());

        let Some(hop) = routed.next_hop else {
            // A single address routed to the uplink's own address (DigitalOcean
            // reserved IPv6): the address goes on prefix.interface as a /128, scope
            // global; no next hop to keep, nothing to make unreachable.
            if let Some(target) = target {
                let address = Address {
                    ifindex: target.index,
                    addr: prefix.network(),
                    prefix_len: 128,
                    ifname: target.name.clone(),
                    no_prefix_route: false,
                };
                if !state.addresses.iter().any(|a| a.object == address) {
                    state.addresses.push(Wanted::new(address, &origin));
                }
            }
            continue;
        };

        if let (NextHopPolicy::Ensure, Some(up)) = (config.uplink.next_hop, uplink) {
            // A next hop the judgement left out (none of its own) is not planned.
            if let Some(place) = next_hops.get(&hop) {
                let (form, add_now) = match *place {
                    Place::Keep(form) | Place::Add(form) => (form, true),
                    Place::Wait { form, .. } => (form, false),
                };
                let next_hop = form.address(hop, up);
                let listed = |list: &[Wanted<Address>]| {
                    list.iter()
                        .any(|a| a.ifindex == next_hop.ifindex && a.addr == next_hop.addr)
                };
                if !listed(&state.addresses) && !listed(&state.waiting) {
                    let list = if add_now {
                        &mut state.addresses
                    } else {
                        &mut state.waiting
                    };
                    list.push(Wanted::new(next_hop, &origin));
                }
            }
        }

        if let Some(target) = target {
            match config.prefix.mode {
                PrefixMode::Addresses => {
                    for host in &config.prefix.addresses {
                        let address = Address {
                            ifindex: target.index,
                            addr: place_host(prefix, *host),
                            prefix_len: 128,
                            ifname: target.name.clone(),
                            no_prefix_route: false,
                        };
                        state.addresses.push(Wanted::new(address, &origin));
                    }
                }
                PrefixMode::Anyip => {
                    let route = Route {
                        table: TABLE_LOCAL,
                        dst: prefix,
                        metric: DEFAULT_METRIC,
                        kind: RouteKind::Local,
                        ifindex: Some(target.index),
                        ifname: Some(target.name.as_str().into()),
                    };
                    state.routes.push(Wanted::new(route, &origin));
                }
                PrefixMode::Delegate => {
                    // The address without its automatic prefix route: routed6d adds that
                    // route itself, so it carries routed6d's protocol and is repaired.
                    let address = Address {
                        ifindex: target.index,
                        addr: place_host(prefix, Ipv6Addr::LOCALHOST),
                        prefix_len: prefix.prefix_len(),
                        ifname: target.name.clone(),
                        no_prefix_route: true,
                    };
                    let route = Route {
                        table: TABLE_MAIN,
                        dst: prefix,
                        metric: DEFAULT_METRIC,
                        kind: RouteKind::Unicast,
                        ifindex: Some(target.index),
                        ifname: Some(target.name.as_str().into()),
                    };
                    state.addresses.push(Wanted::new(address, &origin));
                    state.routes.push(Wanted::new(route, &origin));
                }
            }
        }

        if config.prefix.unreachable {
            let route = Route {
                table: TABLE_MAIN,
                dst: prefix,
                metric: UNREACHABLE_METRIC,
                kind: RouteKind::Unreachable,
                ifindex: None,
                ifname: None,
            };
            state.routes.push(Wanted::new(route, &origin));
        }
    }

    add_workloads(&mut state, config, assignment, links);

    let delegating = (config.prefix.mode == PrefixMode::Delegate || !state.workloads.is_empty())
        && !assignment.prefixes.is_empty();
    if config.uplink.keep_accept_ra {
        // With forwarding on, the kernel takes router advertisements only with
        // accept_ra=2: at 1 they stop, and the default route they gave expires. Whoever
        // turns forwarding on (routed6d's delegate mode below, Docker, a VPN, an
        // operator), the uplink keeps its default route. An operator's 0 stays 0.
        let uplink = &config.uplink.interface;
        state.sysctls.push(SysctlWant {
            key: accept_ra_key(uplink),
            value: "2".into(),
            only_from: vec!["1".into()],
            only_while: (!delegating).then(|| (conf_key(uplink, "forwarding"), "1".into())),
            why: format!(
                "forwarding is on for {uplink}, which keeps accepting router advertisements (and the default route they give) only with accept_ra=2"
            ),
        });
    }
    if delegating {
        state.sysctls.push(SysctlWant {
            key: FORWARDING_KEY.into(),
            value: "1".into(),
            only_from: Vec::new(),
            only_while: None,
            why: if config.prefix.mode == PrefixMode::Delegate {
                "delegate mode forwards the routed prefix".into()
            } else {
                "the workloads' sub-prefixes are forwarded to their bridges".into()
            },
        });
    }

    state
}

/// The workloads (`[[workload]]`): every bridge is wanted whatever the provider says
/// (routed6d creates it once), and each workload placed in the routed prefix gets, on
/// its bridge, the gateway (`::1` of its sub-prefix) without the automatic prefix
/// route, and that route carrying routed6d's protocol — the delegate pattern, so both
/// are owned and repaired. Workloads that do not fit leave `workload_error` and no
/// objects: a half-placed set would give some workloads addresses the next prefix
/// cannot keep.
fn add_workloads(
    state: &mut DesiredState,
    config: &Config,
    assignment: &Assignment,
    links: &[Link],
) {
    for workload in &config.workloads {
        if workload.kind == WorkloadKind::Bridge {
            state.bridges.push(Bridge {
                name: workload.interface.clone(),
                alias: workload_bridge_alias(config.daemon.protocol, &workload.name),
            });
        }
    }
    let parent = if on_link(config) {
        assignment.prefixes.first()
    } else {
        workload::parent(&assignment.prefixes)
    };
    let Some(parent) = parent else {
        return;
    };
    let placed = match workload::place_all(config, parent.prefix) {
        Ok(placed) => placed,
        Err(e) => {
            state.workload_error = Some(e.to_string());
            return;
        }
    };
    for placed in placed {
        let origin: Origin = Arc::new(RoutedPrefix {
            workload: Some(placed.clone()),
            ..parent.clone()
        });
        // The bridge is made by the plan when missing; its objects follow in the pass
        // after, once the kernel has given it an index. A Docker network's bridge,
        // gateway and route are Docker's (`docker`): nothing of it is routed6d's here.
        let bridge = (placed.kind == WorkloadKind::Bridge.name())
            .then(|| links.iter().find(|l| l.name == placed.interface))
            .flatten();
        if let Some(link) = bridge {
            let address = Address {
                ifindex: link.index,
                addr: placed.gateway,
                prefix_len: placed.prefix.prefix_len(),
                ifname: link.name.clone(),
                no_prefix_route: true,
            };
            let route = Route {
                table: TABLE_MAIN,
                dst: placed.prefix,
                metric: DEFAULT_METRIC,
                kind: RouteKind::Unicast,
                ifindex: Some(link.index),
                ifname: Some(link.name.as_str().into()),
            };
            state.addresses.push(Wanted::new(address, &origin));
            state.routes.push(Wanted::new(route, &origin));
        }
        state.workloads.push(placed);
    }
}

/// `kind = "onlink"`: the provider's router treats the whole /64 as on-link, so it asks
/// on the uplink (a neighbour solicitation) for every address of a workload before it
/// sends anything to it. The kernel answers, with the uplink's own MAC, for the proxy
/// entries routed6d adds there: one per address in use behind a workload's bridge (a
/// neighbour in the bridge's cache, in a state of `NUD_IN_USE`, inside the workload's
/// sub-prefix; for a Docker network, an address Docker gave a container there, `in_use`,
/// before any packet shows it) and never one for the whole /64, nor for an address
/// nobody uses (the
/// provider would see this host claim them all; Hetzner blocks hosts for less). A
/// neighbour that fails or is deleted takes its entry with it at the next pass.
///
/// A workload whose sub-prefix holds one of the uplink's own addresses (a SLAAC address
/// lies anywhere in the /64) cannot be placed there: `workload_error` says so, and no
/// workload's objects are wanted (as `add_workloads` does for one that does not fit).
pub fn add_on_link(
    state: &mut DesiredState,
    config: &Config,
    assignment: &Assignment,
    observed: &ObservedState,
    in_use: &[Ipv6Addr],
) {
    if !on_link(config) || state.workloads.is_empty() {
        return;
    }
    let (Some(uplink), Some(parent)) = (
        observed.link_by_name(&config.uplink.interface),
        assignment.prefixes.first(),
    ) else {
        return;
    };
    let own = observed
        .addresses
        .iter()
        .filter(|a| a.address.ifindex == uplink.index)
        .map(|a| a.address.addr);
    for addr in own {
        if let Some(placed) = state.workloads.iter().find(|w| w.prefix.contains(&addr)) {
            state.workload_error = Some(format!(
                "workload {:?}: the uplink's own address {addr} lies in its sub-prefix {}: give it another slot",
                placed.name, placed.prefix
            ));
            state.workloads.clear();
            state.addresses.retain(|a| a.origin.workload.is_none());
            state.routes.retain(|r| r.origin.workload.is_none());
            return;
        }
    }
    let uplink_name = &config.uplink.interface;
    state.sysctls.push(SysctlWant {
        key: conf_key(uplink_name, "proxy_ndp"),
        value: "1".into(),
        only_from: Vec::new(),
        only_while: None,
        why: format!(
            "the workloads' addresses are answered for on {uplink_name} by proxy entries, one per address in use"
        ),
    });
    for placed in &state.workloads {
        let used: Vec<Ipv6Addr> = if placed.kind == WorkloadKind::Docker.name() {
            // Docker gives every address on its network itself: its word is exact both
            // ways, where a removed container's neighbour entry stays for minutes.
            in_use.to_vec()
        } else {
            let Some(bridge) = observed.link_by_name(&placed.interface) else {
                continue;
            };
            state.caches.push((bridge.index, placed.prefix));
            observed
                .neighbours
                .iter()
                .filter(|n| n.ifindex == bridge.index && n.in_use())
                .map(|n| n.addr)
                .collect()
        };
        let origin: Origin = Arc::new(RoutedPrefix {
            workload: Some(placed.clone()),
            ..parent.clone()
        });
        let mut used: Vec<Ipv6Addr> = used
            .into_iter()
            .filter(|a| placed.prefix.contains(a) && *a != placed.gateway)
            .collect();
        used.sort();
        used.dedup();
        for addr in used {
            let proxy = Proxy {
                ifindex: uplink.index,
                addr,
                ifname: uplink.name.clone(),
            };
            state.proxies.push(Wanted::new(proxy, &origin));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
