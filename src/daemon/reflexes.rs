//! The daemon's side of the reflexes (`kernel::reflex`): which of routed6d's objects
//! the event watcher may put back by itself, and what its answers mean.
//!
//! After every pass the daemon arms what `restore_for` would put back at once and no
//! fight holds (`Damper::free`), each with its request built in advance. The watcher
//! fires one on the removal's notification, before the daemon's loop hears of it;
//! the kernel's answer comes back as `KernelEvent::Reflex`, and from there on a reflex
//! is a restore like the loop's own: logged and counted as a write, counted towards a
//! fight, followed by the debounced full pass.

use std::collections::HashMap;

use ipnet::Ipv6Net;
use tokio::time::Instant;

use super::{Agent, FAST_RESTORES_PER_BURST, restorable};
use crate::config::Config;
use crate::damping::{Object, Verdict};
use crate::kernel::Kernel;
use crate::kernel::netlink::add_answered;
use crate::model::{DesiredState, Op, RouteKind};
use crate::reconcile::{self, Outcome};

/// Past this many objects to arm again one by one (each a walk of the desired state),
/// the whole set is armed again in one walk.
const REARM_ONE_BY_ONE: usize = 64;

/// Every object of `desired` that may be put back at once, with its add: what
/// `restorable` says of each, in one walk instead of one per object.
pub fn restorables(desired: &DesiredState, config: &Config) -> Vec<(Object, Op)> {
    let mut per_destination: HashMap<(u32, Ipv6Net), usize> = HashMap::new();
    for route in &desired.routes {
        *per_destination.entry((route.table, route.dst)).or_default() += 1;
    }
    let addresses = desired
        .addresses
        .iter()
        .filter(|a| a.ifname != config.uplink.interface)
        .map(|a| (Object::of_address(a), Op::AddAddress(a.object.clone())));
    let routes = desired
        .routes
        .iter()
        .filter(|r| per_destination[&(r.table, r.dst)] == 1)
        .filter(|r| !matches!(r.kind, RouteKind::Via { .. }))
        .map(|r| (Object::of_route(r), Op::AddRoute(r.object.clone())));
    addresses.chain(routes).collect()
}

impl<K: Kernel> Agent<K> {
    /// After a pass (`desired_changed`: it wants other objects than the one before):
    /// arm again what was fired or deleted since, or everything, and give the watcher
    /// a new burst's share of restores.
    pub(super) fn arm_reflexes(&mut self, desired_changed: bool) {
        let Some(shared) = self.kernel.reflexes() else {
            return;
        };
        let mut reflexes = shared.lock();
        reflexes.refill(FAST_RESTORES_PER_BURST);
        let spent = reflexes.take_spent();
        let fights = &self.repairs.fights;
        if desired_changed || self.repairs.rearm_all || spent.len() > REARM_ONE_BY_ONE {
            self.repairs.rearm_all = false;
            reflexes.disarm_all();
            for (object, op) in restorables(&self.pass.desired, &self.config) {
                if fights.free(&object)
                    && let Some(request) = self.kernel.reflex_request(&op)
                {
                    reflexes.arm(object, request);
                }
            }
            return;
        }
        for object in spent {
            if fights.free(&object)
                && let Some(planned) = restorable(object, &self.pass.desired, &self.config)
                && let Some(request) = self.kernel.reflex_request(&planned.op)
            {
                reflexes.arm(object, request);
            }
        }
    }

    /// Nothing is put back by the watcher until the next pass has armed it again under
    /// the new configuration (a reload), or ever again (a stop).
    pub(super) fn disarm_reflexes(&mut self) {
        if let Some(shared) = self.kernel.reflexes() {
            shared.lock().disarm_all();
        }
        self.repairs.rearm_all = true;
    }

    /// Is a reflex's restore of `object` on the wire, its answer not yet heard? Then the
    /// loop leaves the removal to it.
    pub(super) fn reflex_in_flight(&self, object: &Object) -> bool {
        self.kernel
            .reflexes()
            .is_some_and(|shared| shared.lock().in_flight(object))
    }

    /// The kernel answered the watcher's restore of `object` (errno None: done): log and
    /// count it as the loop's own restores are, count the removal towards a fight, and
    /// arm it again while it is free.
    pub fn reflexed(&mut self, object: Object, errno: Option<i32>) {
        let now = Instant::now();
        self.forget_expected();
        let Some(planned) = restorable(object, &self.pass.desired, &self.config) else {
            return;
        };
        let mut outcome = Outcome::default();
        reconcile::report(&mut outcome, &planned, add_answered(&planned.op, errno));
        self.restored(&outcome);
        // Armed only while free, but a pass may have armed it again before the answer
        // to its last reflex was heard: this removal can be the one that starts the
        // fight. It is back already (one repair early); its warning is still due, and
        // from here on the loop holds it back.
        if let Verdict::Hold {
            news: Some(fight), ..
        } = self.repairs.fights.removed(object, now)
        {
            let what = self.describe(object);
            self.warn_fight(&what, fight);
        }
        if !outcome.failed.is_empty() {
            // Left to the full pass, which arms it again if it puts it back.
            return;
        }
        self.repairs.fights.put_back(object, now);
        if self.repairs.fights.free(&object)
            && let Some(shared) = self.kernel.reflexes()
            && let Some(request) = self.kernel.reflex_request(&planned.op)
        {
            shared.lock().arm(object, request);
        }
    }
}

#[cfg(test)]
mod tests;
