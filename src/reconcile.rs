//! One reconcile pass: observe the kernel, compute what it should hold, diff, apply.
//! Each kernel change is logged as one line with journal fields (PREFIX, NEXT_HOP,
//! IFACE, OP, ORIGIN); failed ops do not stop the others.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use serde::Serialize;
use tracing::{error, info};

use crate::config::{Config, NextHopPolicy};
use crate::desired;
use crate::kernel::{Kernel, KernelError};
use crate::model::{Assignment, DesiredState, ObservedState, Op, Plan, RoutedPrefix};
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
    /// With `uplink.next_hop = "check"`: next hops the provider routes to that no
    /// address of the uplink holds (routed6d reports them instead of adding them).
    pub missing_next_hops: Vec<Ipv6Addr>,
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
) -> Result<(DesiredState, ObservedState, Plan), KernelError> {
    let compute = |observed: &ObservedState| {
        let mut desired = desired::compute(config, assignment, &observed.links);
        desired::add_outbound_source(
            &mut desired,
            config,
            assignment,
            observed,
            config.daemon.protocol,
        );
        desired
    };
    let (desired, observed) = observe_for(
        kernel,
        &desired::sysctl_keys(config),
        config.daemon.protocol,
        config.provider.outbound_source,
        compute,
    )
    .await?;
    let plan = plan::diff(&desired, &observed, config.daemon.protocol);
    Ok((desired, observed, plan))
}

/// Observe as much of the kernel as the plan needs, and compute the desired state
/// from it (`compute` may look at links and, with `needs_foreign`, foreign routes).
///
/// Routes of others only matter where they hold a slot routed6d wants (a conflict to
/// report, or a route that already does the job) or when `needs_foreign` says the
/// desired state is derived from them (outbound_source copies the default route). So
/// the usual pass dumps only routed6d's own routes (the kernel filters by protocol),
/// and everything only when a wanted slot is not held by an owned route: a steady
/// state with a full BGP table beside it costs the dump of what routed6d owns.
pub async fn observe_for<K: Kernel>(
    kernel: &mut K,
    sysctl_keys: &[String],
    protocol: u8,
    needs_foreign: bool,
    compute: impl Fn(&ObservedState) -> DesiredState,
) -> Result<(DesiredState, ObservedState), KernelError> {
    if !needs_foreign {
        let owned = kernel.observe_owned(sysctl_keys, protocol).await?;
        let desired = compute(&owned);
        let held: std::collections::HashSet<_> =
            owned.routes.iter().map(|o| o.route.slot()).collect();
        if desired.routes.iter().all(|r| held.contains(&r.slot())) {
            return Ok((desired, owned));
        }
    }
    let observed = kernel.observe(sysctl_keys).await?;
    let desired = compute(&observed);
    Ok((desired, observed))
}

/// Make the kernel hold what `assignment` calls for. `previous` (the assignment of the
/// last pass) only names the prefix and next hop of what is removed because it changed.
pub async fn reconcile<K: Kernel>(
    kernel: &mut K,
    config: &Config,
    assignment: &Assignment,
    previous: Option<&Assignment>,
) -> Result<Outcome, KernelError> {
    let (desired, observed, plan) = plan(kernel, config, assignment).await?;
    let context: Vec<&Assignment> = std::iter::once(assignment).chain(previous).collect();
    let mut outcome = apply(kernel, plan, &context).await;
    outcome.missing_next_hops = missing_next_hops(config, assignment, &observed);
    outcome.desired = desired;
    Ok(outcome)
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

/// Remove everything routed6d owns (`on_stop = "withdraw"`, `release`).
pub async fn withdraw<K: Kernel>(
    kernel: &mut K,
    config: &Config,
    last: &Assignment,
) -> Result<Outcome, KernelError> {
    let observed = kernel.observe(&[]).await?;
    let plan = plan::diff(&DesiredState::default(), &observed, config.daemon.protocol);
    Ok(apply(kernel, plan, &[last]).await)
}

/// Apply every op of `plan`, logging each change; keep going after a failure. `context`
/// names the routed prefixes the ops serve (first match wins) for the journal fields.
/// Conflicts are not logged here: the caller knows which of them are news (a daemon
/// that repeated them on every poll would drown the journal).
pub async fn apply<K: Kernel>(kernel: &mut K, plan: Plan, context: &[&Assignment]) -> Outcome {
    let mut outcome = Outcome::default();
    for op in &plan.ops {
        let serves = op_context(op, context);
        let prefix = serves.prefix.map(|p| p.to_string()).unwrap_or_default();
        let next_hop = serves.next_hop.map(|a| a.to_string()).unwrap_or_default();
        let iface = op_interface(op).unwrap_or_default();
        match kernel.apply_op(op).await {
            Ok(()) => {
                outcome.applied += 1;
                info!(
                    OP = op.verb(),
                    PREFIX = %prefix,
                    NEXT_HOP = %next_hop,
                    IFACE = %iface,
                    ORIGIN = %serves.origin,
                    "{}", op_sentence(op)
                );
            }
            Err(e) => {
                error!(
                    OP = op.verb(),
                    PREFIX = %prefix,
                    NEXT_HOP = %next_hop,
                    IFACE = %iface,
                    "{e}"
                );
                outcome.failed.push((op.to_string(), e.to_string()));
            }
        }
    }
    outcome.plan = plan;
    outcome
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

/// Which routed prefix an op serves, for the PREFIX/NEXT_HOP/ORIGIN fields.
struct OpContext<'a> {
    prefix: Option<Ipv6Net>,
    next_hop: Option<std::net::Ipv6Addr>,
    origin: &'a str,
}

fn op_context<'a>(op: &Op, context: &[&'a Assignment]) -> OpContext<'a> {
    let from = |routed: &'a RoutedPrefix| OpContext {
        prefix: Some(routed.prefix),
        next_hop: routed.next_hop,
        origin: &routed.origin,
    };
    let matching = |pred: &dyn Fn(&RoutedPrefix) -> bool| {
        context
            .iter()
            .flat_map(|a| a.prefixes.iter())
            .find(|p| pred(p))
            .map(from)
    };
    let found = match op {
        Op::AddAddress(a) | Op::DelAddress(a) => {
            matching(&|p| p.next_hop == Some(a.addr) || p.prefix.contains(&a.addr))
        }
        Op::AddRoute(r) | Op::ReplaceRoute(r) | Op::DelRoute(r) => {
            matching(&|p| p.prefix == r.dst || p.prefix.contains(&r.dst))
        }
        Op::SetSysctl { .. } => None,
    };
    found.unwrap_or(match op {
        // Something no longer in the assignment: name the object itself.
        Op::AddAddress(a) | Op::DelAddress(a) => OpContext {
            prefix: Ipv6Net::new(a.addr, a.prefix_len).ok().map(|n| n.trunc()),
            next_hop: None,
            origin: "",
        },
        Op::AddRoute(r) | Op::ReplaceRoute(r) | Op::DelRoute(r) => OpContext {
            prefix: Some(r.dst),
            next_hop: None,
            origin: "",
        },
        Op::SetSysctl { .. } => OpContext {
            prefix: None,
            next_hop: None,
            origin: "",
        },
    })
}

fn op_interface(op: &Op) -> Option<String> {
    match op {
        Op::AddAddress(a) | Op::DelAddress(a) => Some(a.ifname.clone()),
        Op::AddRoute(r) | Op::ReplaceRoute(r) | Op::DelRoute(r) => r.ifname.clone(),
        Op::SetSysctl { key, .. } => key.split('/').nth(3).map(str::to_string),
    }
}

#[cfg(test)]
mod tests;
