//! One reconcile pass: observe the kernel, compute what it should hold, diff, apply.
//! Each kernel change is logged as one line with journal fields (PREFIX, NEXT_HOP,
//! IFACE, OP, ORIGIN); failed ops do not stop the others.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use serde::Serialize;
use tracing::{debug, error, info};

use crate::config::{Config, NextHopPolicy};
use crate::damping::Damper;
use crate::desired;
use crate::kernel::{Applied, Kernel, KernelError};
use crate::model::{Assignment, DesiredState, ObservedState, Op, Plan, Planned};
use crate::next_hop::{self, Judged, NextHopBook};
use crate::plan;

/// What a pass did.
#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    /// What the kernel should hold (the last pass's view; events are judged by it).
    pub desired: DesiredState,
    pub plan: Plan,
    pub applied: usize,
    /// Ops that failed, with their error text.
    pub failed: Vec<(String, String)>,
    /// How many of them the kernel refused for want of privilege (CAP_NET_ADMIN).
    pub denied: usize,
    /// With `uplink.next_hop = "check"`: next hops the provider routes to that no
    /// address of the uplink holds (routed6d reports them instead of adding them).
    pub missing_next_hops: Vec<Ipv6Addr>,
    /// Adds of objects being fought over, held back for now (`damping`).
    pub withheld: Vec<Op>,
    /// The ops that reached the kernel and changed it or failed, as (verb, succeeded),
    /// in order: what the metrics count.
    #[serde(skip)]
    pub writes: Vec<(&'static str, bool)>,
    /// Adds that found their object already in the kernel. In a full pass that is a
    /// harmless race; in `reconcile_from` it means the kernel held something the
    /// expected state did not know of, so a full pass must look.
    pub found_present: usize,
    /// What the kernel holds now, when every op succeeded and nothing was in the way:
    /// where the next pass may start from if no kernel event says otherwise.
    #[serde(skip)]
    pub expected: Option<ObservedState>,
    /// Who held each next hop's place on the uplink, and what the pass made of it.
    #[serde(skip)]
    pub next_hops: Judged,
}

/// What a pass knows besides the configuration and the answer: whose the next hops'
/// places were in earlier passes, which objects are being fought over, and the time
/// the pass judges them at.
#[derive(Clone, Copy, Debug)]
pub struct Moment<'a> {
    pub book: &'a NextHopBook,
    /// The pass holds back the adds this damper holds back at `now`.
    pub fights: &'a Damper,
    pub now: tokio::time::Instant,
    /// Addresses in use behind the workloads that no neighbour cache shows yet: what
    /// Docker gave its containers (`docker::engine::Report`).
    pub in_use: &'a [std::net::Ipv6Addr],
}

impl Moment<'static> {
    /// A one-off command's pass (`plan`, `once`, `refresh-next-hop`): nothing seen
    /// before, judged now.
    pub fn first() -> Self {
        static NOTHING_SEEN: NextHopBook = NextHopBook::new();
        static NO_FIGHTS: Damper = Damper::new();
        Moment {
            book: &NOTHING_SEEN,
            fights: &NO_FIGHTS,
            now: tokio::time::Instant::now(),
            in_use: &[],
        }
    }
}

/// One look at the kernel and what it calls for: the desired state, what the kernel
/// holds, and the plan between them.
#[derive(Debug)]
pub struct Pass {
    pub desired: DesiredState,
    pub observed: ObservedState,
    pub plan: Plan,
    pub next_hops: Judged,
}

/// Judge the next hops' places in `observed` (`next_hop = "ensure"` only: "check"
/// never adds one) and compute the desired state with them.
pub fn desired_for(
    config: &Config,
    assignment: &Assignment,
    observed: &ObservedState,
    moment: Moment<'_>,
) -> (DesiredState, Judged) {
    let uplink = observed.link_by_name(&config.uplink.interface);
    let judged = match (config.uplink.next_hop, uplink) {
        (NextHopPolicy::Ensure, Some(uplink)) => {
            let hops = assignment.prefixes.iter().filter_map(|p| p.next_hop);
            let sightings = next_hop::sight(hops, uplink, observed, config.daemon.protocol);
            moment
                .book
                .judge(sightings, moment.now, config.uplink.next_hop_grace)
        }
        _ => Judged::default(),
    };
    let mut desired = desired::compute(config, assignment, &observed.links, &judged.places);
    desired::add_on_link(&mut desired, config, assignment, observed, moment.in_use);
    (desired, judged)
}

impl Outcome {
    pub fn first_error(&self) -> Option<&str> {
        self.failed.first().map(|(_, e)| e.as_str())
    }
}

/// Observe, compute and diff, without changing anything (`routed6d plan`).
pub async fn plan<K: Kernel>(
    kernel: &mut K,
    config: &Config,
    assignment: &Assignment,
    moment: Moment<'_>,
) -> Result<Pass, KernelError> {
    let mut next_hops = Judged::default();
    let compute = |observed: &ObservedState| {
        let (mut desired, judged) = desired_for(config, assignment, observed, moment);
        next_hops = judged;
        desired::add_outbound_source(
            &mut desired,
            config,
            assignment,
            observed,
            config.daemon.protocol,
        );
        desired
    };
    let (desired, observed, plan) = observe_for(
        kernel,
        &desired::sysctl_keys(config),
        config.daemon.protocol,
        config.provider.outbound_source(),
        compute,
    )
    .await?;
    Ok(Pass {
        desired,
        observed,
        plan,
        next_hops,
    })
}

/// Observe as much of the kernel as the plan needs, compute the desired state from it
/// (`compute` may look at links and, with `needs_foreign`, foreign routes) and diff.
///
/// Routes of others only matter where they hold a slot routed6d wants (a conflict to
/// report, or a route that already does the job) or when `needs_foreign` says the
/// desired state is derived from them (outbound_source copies the default route). So
/// the usual pass dumps only routed6d's own routes (the kernel filters by protocol),
/// and everything only when the plan would add a route, i.e. a wanted slot is not
/// held by an owned route: a steady state with a full BGP table beside it costs the
/// dump of what routed6d owns.
pub async fn observe_for<K: Kernel>(
    kernel: &mut K,
    sysctl_keys: &[String],
    protocol: u8,
    needs_foreign: bool,
    mut compute: impl FnMut(&ObservedState) -> DesiredState,
) -> Result<(DesiredState, ObservedState, Plan), KernelError> {
    if !needs_foreign {
        let owned = kernel.observe_owned(sysctl_keys, protocol).await?;
        let desired = compute(&owned);
        let plan = plan::diff(&desired, &owned, protocol);
        if !plan.ops.iter().any(|p| matches!(p.op, Op::AddRoute(_))) {
            return Ok((desired, owned, plan));
        }
    }
    let observed = kernel.observe(sysctl_keys).await?;
    let desired = compute(&observed);
    let plan = plan::diff(&desired, &observed, protocol);
    Ok((desired, observed, plan))
}

/// Make the kernel hold what `assignment` calls for. `previous` (what the last pass
/// wanted) names the routed prefix of what is removed because it changed.
pub async fn reconcile<K: Kernel>(
    kernel: &mut K,
    config: &Config,
    assignment: &Assignment,
    previous: &DesiredState,
    moment: Moment<'_>,
) -> Result<Outcome, KernelError> {
    let first = reconcile_once(kernel, config, assignment, previous, moment).await?;
    let created = first
        .plan
        .ops
        .iter()
        .any(|p| matches!(p.op, Op::AddBridge(_)));
    if !created || !first.failed.is_empty() {
        return Ok(first);
    }
    // A bridge made in this pass has an index only now: its gateway and route are
    // planned by a second look, so one pass (`once`, a poll) leaves the workload whole.
    let mut second = reconcile_once(kernel, config, assignment, &first.desired, moment).await?;
    let mut ops = first.plan.ops;
    ops.append(&mut second.plan.ops);
    second.plan.ops = ops;
    second.applied += first.applied;
    let mut writes = first.writes;
    writes.append(&mut second.writes);
    second.writes = writes;
    second.found_present += first.found_present;
    Ok(second)
}

/// One look, one plan, one apply (`reconcile`).
async fn reconcile_once<K: Kernel>(
    kernel: &mut K,
    config: &Config,
    assignment: &Assignment,
    previous: &DesiredState,
    moment: Moment<'_>,
) -> Result<Outcome, KernelError> {
    let mut pass = plan(kernel, config, assignment, moment).await?;
    plan::attribute_removals(&mut pass.plan, previous);
    let (ops, withheld) = moment.fights.withhold(pass.plan, moment.now);
    let mut outcome = apply(kernel, ops).await;
    outcome.withheld = withheld;
    outcome.missing_next_hops = missing_next_hops(config, assignment, &pass.observed);
    outcome.expected = expect(pass.observed, &outcome, config.daemon.protocol);
    outcome.desired = pass.desired;
    outcome.next_hops = pass.next_hops;
    Ok(outcome)
}

/// Like `reconcile`, starting from `expected` (what the last pass left the kernel
/// holding, with no kernel event since saying otherwise) instead of a dump: a
/// provider change costs its own writes. Adds are exclusive in the kernel, so an
/// object `expected` missed shows up as `found_present` and the caller runs a full
/// pass. Not for `outbound_source`, whose desired route is derived from routes of
/// others that `expected` may not hold.
pub async fn reconcile_from<K: Kernel>(
    kernel: &mut K,
    config: &Config,
    assignment: &Assignment,
    previous: &DesiredState,
    expected: ObservedState,
    moment: Moment<'_>,
) -> Outcome {
    let (desired, next_hops) = desired_for(config, assignment, &expected, moment);
    // With `next_hop = "check"` routed6d adds no next hop, so what is missing is
    // known before the ops (whatever becomes of them).
    let missing = missing_next_hops(config, assignment, &expected);
    let protocol = config.daemon.protocol;
    let mut diff = plan::diff(&desired, &expected, protocol);
    plan::attribute_removals(&mut diff, previous);
    let (ops, withheld) = moment.fights.withhold(diff, moment.now);
    let mut outcome = apply(kernel, ops).await;
    outcome.expected = expect(expected, &outcome, protocol);
    outcome.withheld = withheld;
    outcome.missing_next_hops = missing;
    outcome.desired = desired;
    outcome.next_hops = next_hops;
    outcome
}

/// The kernel side of `reconcile_from`: diff `desired` against `expected`, apply.
/// `outcome.expected` is the state after, unless an op failed or found a surprise.
pub async fn apply_from<K: Kernel>(
    kernel: &mut K,
    desired: &DesiredState,
    expected: ObservedState,
    protocol: u8,
    previous: &DesiredState,
) -> Outcome {
    let mut plan = plan::diff(desired, &expected, protocol);
    plan::attribute_removals(&mut plan, previous);
    let mut outcome = apply(kernel, plan).await;
    outcome.expected = expect(expected, &outcome, protocol);
    outcome
}

/// The state after `outcome` on top of `observed`, when it can be trusted: every op
/// succeeded, changed what it was meant to, and nothing was in the way.
fn expect(observed: ObservedState, outcome: &Outcome, protocol: u8) -> Option<ObservedState> {
    let clean = outcome.failed.is_empty()
        && outcome.plan.conflicts.is_empty()
        && outcome.found_present == 0
        && !outcome
            .plan
            .ops
            .iter()
            .any(|p| matches!(p.op, Op::AddBridge(_)));
    clean.then(|| plan::expected_after(observed, &outcome.plan, protocol))
}

/// The next hops no address of the uplink holds, when routed6d only checks them
/// (`next_hop = "ensure"` adds them instead, so nothing is missing for long). A missing
/// uplink is reported as a missing interface, not here.
fn missing_next_hops(
    config: &Config,
    assignment: &Assignment,
    observed: &ObservedState,
) -> Vec<Ipv6Addr> {
    if config.uplink.next_hop != NextHopPolicy::Check {
        return Vec::new();
    }
    let Some(uplink) = observed
        .links
        .iter()
        .find(|l| l.name == config.uplink.interface)
    else {
        return Vec::new();
    };
    let mut missing: Vec<Ipv6Addr> = assignment
        .prefixes
        .iter()
        .filter_map(|p| p.next_hop)
        .filter(|hop| {
            !observed
                .addresses
                .iter()
                .any(|a| a.address.ifindex == uplink.index && a.address.addr == *hop)
        })
        .collect();
    missing.sort();
    missing.dedup();
    missing
}

/// Remove everything routed6d owns (`on_stop = "withdraw"`, `release`). `last` (what
/// the last pass wanted) names the routed prefix of each object removed.
pub async fn withdraw<K: Kernel>(
    kernel: &mut K,
    config: &Config,
    last: &DesiredState,
) -> Result<Outcome, KernelError> {
    let observed = kernel.observe(&[]).await?;
    let mut plan = plan::diff(&DesiredState::default(), &observed, config.daemon.protocol);
    plan::attribute_removals(&mut plan, last);
    Ok(apply(kernel, plan).await)
}

/// Apply every op of `plan`, logging each change with the routed prefix it serves;
/// keep going after a failure. Conflicts are not logged here: the caller knows which
/// of them are news (a daemon that repeated them on every poll would drown the
/// journal).
pub async fn apply<K: Kernel>(kernel: &mut K, plan: Plan) -> Outcome {
    let mut outcome = Outcome::default();
    for planned in &plan.ops {
        // The write first, what the log line says after: a restore is on the wire
        // before any text is made for it.
        let result = kernel.apply_op(&planned.op).await;
        report(&mut outcome, planned, result);
    }
    outcome.plan = plan;
    outcome
}

/// Count and log what one write did: a line for each change and each failure, a
/// debug line for an op that found the kernel already so. `apply` and the event
/// watcher's reflexes (`kernel::reflex`) both report through here.
pub fn report(outcome: &mut Outcome, planned: &Planned, result: Result<Applied, KernelError>) {
    let Planned { op, origin } = planned;
    if !matches!(result, Ok(Applied::AlreadyThere)) {
        outcome.writes.push((op.verb(), result.is_ok()));
    }
    if let Ok(applied) = result {
        outcome.applied += 1;
        if applied == Applied::AlreadyThere {
            if matches!(op, Op::AddAddress(_) | Op::AddRoute(_)) {
                outcome.found_present += 1;
            }
            // No change to the kernel, so no change line (a race with another
            // writer, or a fast restore that a pass had already made).
            debug!(OP = op.verb(), "{op}: already so");
            return;
        }
    }
    let (prefix, next_hop, serves) = match origin {
        Some(routed) => (Some(routed.prefix), routed.next_hop, routed.origin.as_str()),
        // Nothing of this process's passes made it: name the object's own prefix.
        None => (op_prefix(op), None, ""),
    };
    let prefix = prefix.map(|p| p.to_string()).unwrap_or_default();
    let next_hop = next_hop.map(|a| a.to_string()).unwrap_or_default();
    let iface = op_interface(op).unwrap_or_default();
    // A workload's objects also name the workload and its sub-prefix, so that
    // `journalctl WORKLOAD=web` follows one workload across prefix changes.
    let placed = origin.as_ref().and_then(|o| o.workload.as_ref());
    let workload = placed.map(|w| w.name.as_str()).unwrap_or_default();
    let workload_prefix = placed.map(|w| w.prefix.to_string()).unwrap_or_default();
    match result {
        Ok(_) => info!(
            OP = op.verb(),
            PREFIX = %prefix,
            NEXT_HOP = %next_hop,
            IFACE = %iface,
            ORIGIN = %serves,
            WORKLOAD = %workload,
            WORKLOAD_PREFIX = %workload_prefix,
            "{}", op_sentence(op)
        ),
        Err(e) => {
            error!(
                OP = op.verb(),
                PREFIX = %prefix,
                NEXT_HOP = %next_hop,
                IFACE = %iface,
                WORKLOAD = %workload,
                WORKLOAD_PREFIX = %workload_prefix,
                "{e}"
            );
            if e.is_permission_denied() {
                outcome.denied += 1;
            }
            outcome.failed.push((op.to_string(), e.to_string()));
        }
    }
}

fn op_sentence(op: &Op) -> String {
    match op {
        Op::SetSysctl {
            key,
            value,
            was,
            why,
        } => {
            format!("set {}={value} (was {was}): {why}", key.replace('/', "."))
        }
        other => other.to_string(),
    }
}

/// The network an op's object is in, for an object no routed prefix names.
fn op_prefix(op: &Op) -> Option<Ipv6Net> {
    match op {
        Op::AddAddress(a) | Op::DelAddress(a) => {
            Ipv6Net::new(a.addr, a.prefix_len).ok().map(|n| n.trunc())
        }
        Op::AddRoute(r) | Op::ReplaceRoute(r) | Op::DelRoute(r) => Some(r.dst),
        Op::AddProxy(p) | Op::DelProxy(p) => Some(Ipv6Net::from(p.addr)),
        Op::SetSysctl { .. } | Op::AddBridge(_) | Op::DelBridge(_) => None,
    }
}

fn op_interface(op: &Op) -> Option<String> {
    match op {
        Op::AddAddress(a) | Op::DelAddress(a) => Some(a.ifname.clone()),
        Op::AddRoute(r) | Op::ReplaceRoute(r) | Op::DelRoute(r) => {
            r.ifname.as_deref().map(str::to_string)
        }
        Op::SetSysctl { key, .. } => key.split('/').nth(3).map(str::to_string),
        Op::AddBridge(b) | Op::DelBridge(b) => Some(b.name.clone()),
        Op::AddProxy(p) | Op::DelProxy(p) => Some(p.ifname.clone()),
    }
}

#[cfg(test)]
mod tests;
