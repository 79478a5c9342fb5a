//! Pure: the operations that take the kernel from what it holds to what it should hold.
//!
//! The rules: only objects carrying routed6d's protocol are ever changed or removed;
//! an object of someone else that already provides what is wanted is used as it is;
//! one that is in the way is reported, never touched. Additions come before removals,
//! so a changing next hop or prefix never leaves the host without one.

use std::collections::HashSet;

use ipnet::Ipv6Net;

use crate::model::{
    Address, Conflict, DesiredState, ObservedAddress, ObservedProxy, ObservedRoute, ObservedState,
    Op, Plan, Planned,
};

/// The plan as `routed6d plan` prints it: one `ip -6 …` line per op, each addition
/// followed by `# <provider object>`, each removal by `# no longer routed here`.
pub fn annotated(plan: &Plan) -> String {
    let mut out = String::new();
    for Planned { op, origin } in &plan.ops {
        let note = match origin {
            Some(origin) if !op.is_removal() => match &origin.workload {
                Some(w) => format!("  # {} workload {} slot {}", origin.origin, w.name, w.slot),
                None => format!("  # {}", origin.origin),
            },
            _ if op.is_removal() => "  # no longer routed here".to_string(),
            _ => String::new(),
        };
        out.push_str(&format!("{op}{note}\n"));
    }
    for c in &plan.conflicts {
        out.push_str(&format!(
            "# not touched: want {} but found {}\n",
            c.wanted, c.found
        ));
    }
    out
}

/// Name the routed prefix each removal served, from what the pass before wanted
/// (`previous`): the journal line of a withdrawn object says what it was for.
pub fn attribute_removals(plan: &mut Plan, previous: &DesiredState) {
    let mut removals = plan.ops.iter_mut().filter(|p| p.op.is_removal()).peekable();
    if removals.peek().is_none() {
        return;
    }
    let origins = previous.origins();
    for planned in removals {
        planned.origin = planned
            .op
            .identity()
            .and_then(|identity| origins.get(&identity).cloned());
    }
}

/// The plan that closes the gap between `desired` and `observed`.
pub fn diff(desired: &DesiredState, observed: &ObservedState, protocol: u8) -> Plan {
    let mut plan = Plan::default();
    let mut removals = Vec::new();

    for want in &desired.sysctls {
        let Some(current) = observed.sysctls.get(&want.key) else {
            continue;
        };
        let may_change = (want.only_from.is_empty() || want.only_from.contains(current))
            && want
                .only_while
                .as_ref()
                .is_none_or(|(key, value)| observed.sysctls.get(key) == Some(value));
        if *current != want.value && may_change {
            let op = Op::SetSysctl {
                key: want.key.clone(),
                value: want.value.clone(),
                was: current.clone(),
                why: want.why.clone(),
            };
            plan.ops.push(Planned::new(op, None));
        }
    }

    diff_bridges(desired, observed, protocol, &mut plan, &mut removals);
    diff_addresses(desired, observed, protocol, &mut plan, &mut removals);
    diff_routes(desired, observed, protocol, &mut plan, &mut removals);
    diff_proxies(desired, observed, protocol, &mut plan, &mut removals);

    // A bridge goes after its gateway and route: deleted first, it would take them
    // along, and their deletes would fail on an interface that is no longer there.
    removals.sort_by_key(|p| matches!(p.op, Op::DelBridge(_)));
    plan.ops.extend(removals);
    plan
}

/// The workloads' bridges: created when missing; a bridge routed6d created (its alias
/// says so) that no workload names any more is deleted, after everything on it. A link
/// of another kind or owner under a workload's name is used as it is.
fn diff_bridges(
    desired: &DesiredState,
    observed: &ObservedState,
    protocol: u8,
    plan: &mut Plan,
    removals: &mut Vec<Planned>,
) {
    for bridge in &desired.bridges {
        if observed.link_by_name(&bridge.name).is_none() {
            plan.ops
                .push(Planned::new(Op::AddBridge(bridge.clone()), None));
        }
    }
    for link in &observed.links {
        let owned = link
            .alias
            .as_deref()
            .is_some_and(|a| crate::model::is_owned_bridge_alias(a, protocol));
        if owned && !desired.bridges.iter().any(|b| b.name == link.name) {
            let bridge = crate::model::Bridge {
                name: link.name.clone(),
                alias: link.alias.clone().unwrap_or_default(),
            };
            removals.push(Planned::new(Op::DelBridge(bridge), None));
        }
    }
}

/// Proxy NDP entries: one wanted where there is none is added; an entry of routed6d's
/// (its NDA_PROTOCOL) nobody wants is deleted. An entry of anyone else for a wanted
/// address does the job and is left as it is: never added over, because the kernel
/// would not refuse the add (proxy entries know no NLM_F_EXCL) but stamp routed6d's
/// protocol on the operator's entry, and a later withdrawal would take it.
fn diff_proxies(
    desired: &DesiredState,
    observed: &ObservedState,
    protocol: u8,
    plan: &mut Plan,
    removals: &mut Vec<Planned>,
) {
    let slot = |o: &ObservedProxy| (o.proxy.ifindex, o.proxy.addr);
    for want in &desired.proxies {
        if !observed
            .proxies
            .iter()
            .any(|o| slot(o) == (want.ifindex, want.addr))
        {
            plan.ops.push(Planned::new(
                Op::AddProxy(want.object.clone()),
                Some(want.origin.clone()),
            ));
        }
    }
    for o in observed.proxies.iter().filter(|o| o.protocol == protocol) {
        if !desired
            .proxies
            .iter()
            .any(|w| (w.ifindex, w.addr) == slot(o))
        {
            removals.push(Planned::new(Op::DelProxy(o.proxy.clone()), None));
        }
    }
}

/// What the kernel holds once every op of `plan` succeeded on top of `observed`: the
/// starting point of the next pass when no kernel event has said otherwise since
/// (`reconcile::reconcile_from`), so a provider change costs its writes, not a dump.
pub fn expected_after(mut observed: ObservedState, plan: &Plan, protocol: u8) -> ObservedState {
    let mut gone_addresses = HashSet::new();
    let mut gone_routes = HashSet::new();
    let mut added_addresses = Vec::new();
    let mut added_routes = Vec::new();
    for Planned { op, .. } in &plan.ops {
        match op {
            Op::AddAddress(a) => added_addresses.push(a),
            Op::DelAddress(a) => {
                gone_addresses.insert(address_slot(a));
            }
            // The kernel keeps one route per slot; an owned one there is swapped.
            Op::AddRoute(r) | Op::ReplaceRoute(r) => {
                gone_routes.insert(r.slot());
                added_routes.push(r);
            }
            Op::DelRoute(r) => {
                gone_routes.insert(r.slot());
            }
            Op::SetSysctl { key, value, .. } => {
                observed.sysctls.insert(key.clone(), value.clone());
            }
            // A new link's index is the kernel's to choose: `reconcile::expect` trusts
            // no expectation after a bridge was created.
            Op::AddBridge(_) => {}
            Op::DelBridge(b) => {
                if let Some(link) = observed.links.iter().find(|l| l.name == b.name) {
                    let index = link.index;
                    observed.addresses.retain(|a| a.address.ifindex != index);
                    observed.routes.retain(|r| r.route.ifindex != Some(index));
                    observed.neighbours.retain(|n| n.ifindex != index);
                }
                observed.links.retain(|l| l.name != b.name);
            }
            Op::AddProxy(p) => observed.proxies.push(ObservedProxy {
                proxy: p.clone(),
                protocol,
            }),
            Op::DelProxy(p) => observed
                .proxies
                .retain(|o| !(o.proxy.ifindex == p.ifindex && o.proxy.addr == p.addr)),
        }
    }
    // A delete names an owned object; a foreign one in the same place stays (the
    // route delete carries the protocol; the diff never deletes a foreign address).
    observed
        .addresses
        .retain(|o| o.protocol != protocol || !gone_addresses.contains(&address_slot(&o.address)));
    observed
        .routes
        .retain(|o| o.protocol != protocol || !gone_routes.contains(&o.route.slot()));
    observed
        .addresses
        .extend(added_addresses.into_iter().map(|a| ObservedAddress {
            address: a.clone(),
            protocol,
        }));
    observed
        .routes
        .extend(added_routes.into_iter().map(|r| ObservedRoute {
            route: r.clone(),
            protocol,
        }));
    observed
}

/// A map keyed by slots, hashed with foldhash (hashbrown's default hasher): fast on
/// these small keys and seeded per process. Not rustc-hash: (table, prefix, metric)
/// keys of consecutive prefixes collide under it, and the diff turns quadratic.
type SlotMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The kernel's key of an IPv6 address: (ifindex, addr).
fn address_slot(a: &Address) -> (u32, std::net::Ipv6Addr) {
    (a.ifindex, a.addr)
}

// Both diffs index the observed side by slot once, so a pass is linear in the number
// of objects: tens of thousands of routes (an account's worth, plus a full table of
// foreign ones) diff in about a millisecond instead of seconds of pairwise scans.

fn diff_addresses(
    desired: &DesiredState,
    observed: &ObservedState,
    protocol: u8,
    plan: &mut Plan,
    removals: &mut Vec<Planned>,
) {
    // First observed address per slot, as the scan it replaces found it, and whether
    // a desired address claimed the slot (so an owned one there stays).
    let mut by_slot: SlotMap<(u32, std::net::Ipv6Addr), (&ObservedAddress, bool)> =
        SlotMap::with_capacity_and_hasher(observed.addresses.len(), Default::default());
    for o in &observed.addresses {
        by_slot
            .entry(address_slot(&o.address))
            .or_insert((o, false));
    }
    for want in &desired.addresses {
        let add = || {
            Planned::new(
                Op::AddAddress(want.object.clone()),
                Some(want.origin.clone()),
            )
        };
        let Some((found, claimed)) = by_slot.get_mut(&address_slot(want)) else {
            plan.ops.push(add());
            continue;
        };
        *claimed = true;
        if found.protocol != protocol {
            // Someone else's address with this IP on this interface does the job
            // (e.g. the next hop configured by the OS): use it, never remove it.
            continue;
        }
        if found.address.prefix_len != want.prefix_len
            || found.address.no_prefix_route != want.no_prefix_route
        {
            // The kernel keys IPv6 addresses by (ifindex, addr) and cannot change
            // a prefix length in place: delete, then add at once.
            let replaced = Op::DelAddress(found.address.clone());
            plan.ops
                .push(Planned::new(replaced, Some(want.origin.clone())));
            plan.ops.push(add());
        }
    }
    for o in observed.addresses.iter().filter(|o| o.protocol == protocol) {
        let claimed = by_slot
            .get(&address_slot(&o.address))
            .is_some_and(|(_, claimed)| *claimed);
        if !claimed {
            removals.push(Planned::new(Op::DelAddress(o.address.clone()), None));
        }
    }
}

/// What the observed routes hold in one wanted (table, dst, metric) slot: the first
/// owned and the first foreign route there.
#[derive(Clone, Copy, Default)]
struct SlotHolders<'a> {
    owned: Option<&'a ObservedRoute>,
    foreign: Option<&'a ObservedRoute>,
}

fn diff_routes(
    desired: &DesiredState,
    observed: &ObservedState,
    protocol: u8,
    plan: &mut Plan,
    removals: &mut Vec<Planned>,
) {
    // Index the wanted slots (a slot wanted twice shares the first one's holders),
    // then one walk over the observed routes fills their holders and finds the owned
    // routes nobody wants: two hash operations per route.
    let mut wanted: SlotMap<(u32, Ipv6Net, u32), usize> =
        SlotMap::with_capacity_and_hasher(desired.routes.len(), Default::default());
    let slot_of: Vec<usize> = desired
        .routes
        .iter()
        .enumerate()
        .map(|(i, want)| *wanted.entry(want.slot()).or_insert(i))
        .collect();
    let mut holders = vec![SlotHolders::default(); desired.routes.len()];
    for o in &observed.routes {
        match wanted.get(&o.route.slot()) {
            Some(&i) => {
                let holder = if o.protocol == protocol {
                    &mut holders[i].owned
                } else {
                    &mut holders[i].foreign
                };
                holder.get_or_insert(o);
            }
            None if o.protocol == protocol => {
                removals.push(Planned::new(Op::DelRoute(o.route.clone()), None));
            }
            None => {}
        }
    }
    for (want, &i) in desired.routes.iter().zip(&slot_of) {
        match (holders[i].owned, holders[i].foreign) {
            (Some(o), _) if o.route.same_as(want) => {}
            (Some(_), _) => plan.ops.push(Planned::new(
                Op::ReplaceRoute(want.object.clone()),
                Some(want.origin.clone()),
            )),
            (None, Some(f)) if f.route.same_as(want) => {}
            (None, Some(f)) => plan.conflicts.push(Conflict {
                wanted: want.object.to_string(),
                found: format!("{} proto {}", f.route, f.protocol),
            }),
            (None, None) => plan.ops.push(Planned::new(
                Op::AddRoute(want.object.clone()),
                Some(want.origin.clone()),
            )),
        }
    }
}

#[cfg(test)]
mod tests;
