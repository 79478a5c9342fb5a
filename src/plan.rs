//! Pure: the operations that take the kernel from what it holds to what it should hold.
//!
//! The rules: only objects carrying routed6d's protocol are ever changed or removed;
//! an object of someone else that already provides what is wanted is used as it is;
//! one that is in the way is reported, never touched. Additions come before removals,
//! so a changing next hop or prefix never leaves the host without one.

use std::collections::HashMap;

use ipnet::Ipv6Net;

use crate::model::{
    Address, Conflict, DesiredState, ObservedAddress, ObservedRoute, ObservedState, Op, Plan,
};

/// The provider object an op serves, from the desired state's origins: what `routed6d
/// plan` prints after `#`. A removal serves nothing any more.
pub fn origin_of<'a>(op: &Op, desired: &'a DesiredState) -> Option<&'a str> {
    let key = match op {
        Op::AddAddress(a) => a.to_string(),
        Op::AddRoute(r) | Op::ReplaceRoute(r) => r.to_string(),
        Op::DelAddress(_) | Op::DelRoute(_) | Op::SetSysctl { .. } => return None,
    };
    desired.origins.get(&key).map(String::as_str)
}

/// The plan as `routed6d plan` prints it: one `ip -6 …` line per op, each addition
/// followed by `# <provider object>`, each removal by `# no longer routed here`.
pub fn annotated(plan: &Plan, desired: &DesiredState) -> String {
    let mut out = String::new();
    for op in &plan.ops {
        let note = match (origin_of(op, desired), op.is_removal()) {
            (Some(origin), _) => format!("  # {origin}"),
            (None, true) => "  # no longer routed here".to_string(),
            (None, false) => String::new(),
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

/// The plan that closes the gap between `desired` and `observed`.
pub fn diff(desired: &DesiredState, observed: &ObservedState, protocol: u8) -> Plan {
    let mut plan = Plan::default();
    let mut removals = Vec::new();

    for want in &desired.sysctls {
        let Some(current) = observed.sysctls.get(&want.key) else {
            continue;
        };
        let may_change = want.only_from.is_empty() || want.only_from.contains(current);
        if *current != want.value && may_change {
            plan.ops.push(Op::SetSysctl {
                key: want.key.clone(),
                value: want.value.clone(),
                was: current.clone(),
                why: want.why.clone(),
            });
        }
    }

    diff_addresses(desired, observed, protocol, &mut plan, &mut removals);
    diff_routes(desired, observed, protocol, &mut plan, &mut removals);

    plan.ops.extend(removals);
    plan
}

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
    removals: &mut Vec<Op>,
) {
    // First observed address per slot, as the scan it replaces found it, and whether
    // a desired address claimed the slot (so an owned one there stays).
    let mut by_slot: HashMap<(u32, std::net::Ipv6Addr), (&ObservedAddress, bool)> =
        HashMap::with_capacity(observed.addresses.len());
    for o in &observed.addresses {
        by_slot
            .entry(address_slot(&o.address))
            .or_insert((o, false));
    }
    for want in &desired.addresses {
        let Some((found, claimed)) = by_slot.get_mut(&address_slot(want)) else {
            plan.ops.push(Op::AddAddress(want.clone()));
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
            plan.ops.push(Op::DelAddress(found.address.clone()));
            plan.ops.push(Op::AddAddress(want.clone()));
        }
    }
    for o in observed.addresses.iter().filter(|o| o.protocol == protocol) {
        let claimed = by_slot
            .get(&address_slot(&o.address))
            .is_some_and(|(_, claimed)| *claimed);
        if !claimed {
            removals.push(Op::DelAddress(o.address.clone()));
        }
    }
}

/// What the observed routes hold in one (table, dst, metric) slot: the first owned
/// and the first foreign route there, and whether a desired route claimed the slot.
#[derive(Default)]
struct SlotHolders<'a> {
    owned: Option<&'a ObservedRoute>,
    foreign: Option<&'a ObservedRoute>,
    wanted: bool,
}

fn diff_routes(
    desired: &DesiredState,
    observed: &ObservedState,
    protocol: u8,
    plan: &mut Plan,
    removals: &mut Vec<Op>,
) {
    let mut slots: HashMap<(u32, Ipv6Net, u32), SlotHolders> =
        HashMap::with_capacity(observed.routes.len());
    for o in &observed.routes {
        let holders = slots.entry(o.route.slot()).or_default();
        let holder = if o.protocol == protocol {
            &mut holders.owned
        } else {
            &mut holders.foreign
        };
        holder.get_or_insert(o);
    }
    for want in &desired.routes {
        let (owned, foreign) = match slots.get_mut(&want.slot()) {
            Some(holders) => {
                holders.wanted = true;
                (holders.owned, holders.foreign)
            }
            None => (None, None),
        };
        match (owned, foreign) {
            (Some(o), _) if o.route.same_as(want) => {}
            (Some(_), _) => plan.ops.push(Op::ReplaceRoute(want.clone())),
            (None, Some(f)) if f.route.same_as(want) => {}
            (None, Some(f)) => plan.conflicts.push(Conflict {
                wanted: want.to_string(),
                found: format!("{} proto {}", f.route, f.protocol),
            }),
            (None, None) => plan.ops.push(Op::AddRoute(want.clone())),
        }
    }
    for o in observed.routes.iter().filter(|o| o.protocol == protocol) {
        let wanted = slots.get(&o.route.slot()).is_some_and(|h| h.wanted);
        if !wanted {
            removals.push(Op::DelRoute(o.route.clone()));
        }
    }
}

#[cfg(test)]
mod tests;
