//! Pure: the operations that take the kernel from what it holds to what it should hold.
//!
//! The rules: only objects carrying routed6d's protocol are ever changed or removed;
//! an object of someone else that already provides what is wanted is used as it is;
//! one that is in the way is reported, never touched. Additions come before removals,
//! so a changing next hop or prefix never leaves the host without one.

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

fn same_slot(a: &Address, b: &Address) -> bool {
    a.ifindex == b.ifindex && a.addr == b.addr
}

fn diff_addresses(
    desired: &DesiredState,
    observed: &ObservedState,
    protocol: u8,
    plan: &mut Plan,
    removals: &mut Vec<Op>,
) {
    for want in &desired.addresses {
        let present = observed
            .addresses
            .iter()
            .find(|o| same_slot(&o.address, want));
        match present {
            None => plan.ops.push(Op::AddAddress(want.clone())),
            // Someone else's address with this IP on this interface does the job
            // (e.g. the next hop configured by the OS): use it, never remove it.
            Some(found) if found.protocol != protocol => {}
            Some(found)
                if found.address.prefix_len != want.prefix_len
                    || found.address.no_prefix_route != want.no_prefix_route =>
            {
                // The kernel keys IPv6 addresses by (ifindex, addr) and cannot change
                // a prefix length in place: delete, then add at once.
                plan.ops.push(Op::DelAddress(found.address.clone()));
                plan.ops.push(Op::AddAddress(want.clone()));
            }
            Some(_) => {}
        }
    }
    let owned = observed.addresses.iter().filter(|o| o.protocol == protocol);
    for ObservedAddress { address, .. } in owned {
        if !desired.addresses.iter().any(|w| same_slot(w, address)) {
            removals.push(Op::DelAddress(address.clone()));
        }
    }
}

fn diff_routes(
    desired: &DesiredState,
    observed: &ObservedState,
    protocol: u8,
    plan: &mut Plan,
    removals: &mut Vec<Op>,
) {
    for want in &desired.routes {
        let in_slot: Vec<&ObservedRoute> = observed
            .routes
            .iter()
            .filter(|o| o.route.slot() == want.slot())
            .collect();
        let owned = in_slot.iter().find(|o| o.protocol == protocol);
        let foreign = in_slot.iter().find(|o| o.protocol != protocol);
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
    let owned = observed.routes.iter().filter(|o| o.protocol == protocol);
    for ObservedRoute { route, .. } in owned {
        if !desired.routes.iter().any(|w| w.slot() == route.slot()) {
            removals.push(Op::DelRoute(route.clone()));
        }
    }
}

#[cfg(test)]
mod tests;
