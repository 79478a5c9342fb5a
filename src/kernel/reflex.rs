//! Reflexes: the event watcher puts back a removed object of routed6d's itself, in the
//! callback that reads the removal, as keepalived does (issue 16).
//!
//! Handing the removal to the daemon's loop first costs a task switch, the loop's
//! `select!` and the build of the request; here the request was built in advance and
//! is one `send` away. What may be put back this way is still the daemon's decision,
//! taken before the removal: it arms an object (`arm`) only if it wants it and would
//! put it back at once (no fight over it, see `damping`); the watcher fires an armed
//! object once and spends one of the burst's restores; the daemon hears the kernel's
//! answer as `KernelEvent::Reflex`, logs and counts it like any write, and arms the
//! object again if it still may. Objects routed6d deletes itself are disarmed by the
//! delete (`NetlinkKernel`), so a pass that withdraws an object never races a reflex
//! that puts it back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::damping::Object;
use crate::kernel::KernelEvent;

/// The reflexes shared by the kernel (which arms and disarms) and the watcher (which
/// fires). Both run on the daemon's one thread; the lock is never contended.
#[derive(Clone, Default)]
pub struct SharedReflexes(Arc<Mutex<Reflexes>>);

impl SharedReflexes {
    pub fn new(protocol: u8) -> Self {
        SharedReflexes(Arc::new(Mutex::new(Reflexes {
            protocol,
            ..Reflexes::default()
        })))
    }

    /// The reflexes, locked. A panic while they were held cannot leave them torn
    /// (every change is one map operation), so a poisoned lock is taken as is.
    pub fn lock(&self) -> MutexGuard<'_, Reflexes> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Armed requests, the restores left in this burst, and the requests in flight.
#[derive(Debug, Default)]
pub struct Reflexes {
    /// The protocol whose removals are answered: routed6d's.
    protocol: u8,
    /// Each object that may be put back at once, with its whole netlink request
    /// (header included, sequence number 0) ready to send.
    armed: HashMap<Object, Vec<u8>>,
    /// Restores the watcher may still make before the daemon's next full pass.
    budget: u32,
    /// Requests sent and not yet answered, by sequence number.
    in_flight: HashMap<u32, Object>,
    /// Objects fired or disarmed by a delete since they were armed: what the daemon
    /// arms again after its next pass if it still wants them.
    spent: Vec<Object>,
    sequence: u32,
}

/// Where the sequence number sits in a netlink header (after length, type, flags).
const SEQUENCE_AT: std::ops::Range<usize> = 8..12;

impl Reflexes {
    /// Put `object` back with `request` the moment its removal is read.
    pub fn arm(&mut self, object: Object, request: Vec<u8>) {
        self.armed.insert(object, request);
    }

    /// Never put `object` back (routed6d is about to delete it).
    pub fn disarm(&mut self, object: &Object) {
        if self.armed.remove(object).is_some() {
            self.spent.push(*object);
        }
    }

    /// Never put anything back until armed again one by one.
    pub fn disarm_all(&mut self) {
        self.armed.clear();
        self.spent.clear();
    }

    pub fn is_armed(&self, object: &Object) -> bool {
        self.armed.contains_key(object)
    }

    /// Allow `budget` restores until the next refill (`daemon::FAST_RESTORES_PER_BURST`).
    pub fn refill(&mut self, budget: u32) {
        self.budget = budget;
    }

    /// Is a restore of `object` on the wire, its answer not yet heard?
    pub fn in_flight(&self, object: &Object) -> bool {
        self.in_flight.values().any(|o| o == object)
    }

    /// The objects fired or disarmed since they were last armed.
    pub fn take_spent(&mut self) -> Vec<Object> {
        std::mem::take(&mut self.spent)
    }

    /// The answers to the requests in flight were thrown away with an overrun (or the
    /// socket was replaced): give them up. The Resync that follows repairs whatever
    /// they did not.
    pub fn forget_in_flight(&mut self) {
        self.in_flight.clear();
    }

    /// The watcher read the removal of `object`, which carried `protocol`: the request
    /// to send now, with its sequence number, if the object is armed and the burst has
    /// restores left.
    pub fn fire(&mut self, object: Object, protocol: u8) -> Option<Vec<u8>> {
        if protocol != self.protocol || self.budget == 0 {
            return None;
        }
        let mut request = self.armed.remove(&object)?;
        self.budget -= 1;
        self.spent.push(object);
        self.sequence = self.sequence.wrapping_add(1);
        request
            .get_mut(SEQUENCE_AT)?
            .copy_from_slice(&self.sequence.to_ne_bytes());
        self.in_flight.insert(self.sequence, object);
        Some(request)
    }

    /// The kernel answered request `sequence` (errno None: done): the event that tells
    /// the daemon, if the request was a reflex's.
    pub fn answered(&mut self, sequence: u32, errno: Option<i32>) -> Option<KernelEvent> {
        let object = self.in_flight.remove(&sequence)?;
        Some(KernelEvent::Reflex { object, errno })
    }

    /// The request could not be sent at all: answered with the send's errno.
    pub fn unsent(&mut self, errno: i32) -> Option<KernelEvent> {
        let sequence = self.sequence;
        self.answered(sequence, Some(errno))
    }
}

#[cfg(test)]
mod tests;
