//! Pure: fight damping. routed6d puts its own objects back the moment something removes
//! them (`daemon::restore_for`, then the debounced full pass). An object that is removed
//! again each time it comes back is a fight, not drift — another routed6d with the same
//! protocol number whose lock this one cannot see, a script, a manager deleting foreign
//! routes on every event — and repairing it at full speed costs a write, a dump and a
//! log line every few milliseconds for as long as the other side keeps going. See
//! issue 15.
//!
//! Per object, as route flap damping (RFC 2439) keeps a penalty per prefix, but timed
//! like a restart backoff: the first `FREE_REPAIRS` removals in a row are repaired at
//! once; each one after that waits twice as long as the one before, from `FIRST_HOLD` up
//! to `MAX_HOLD`; an object that has stood `CALM` since routed6d last put it back has
//! won, and its next removal is repaired at once again. Only the time an object stands
//! counts as calm, never the time routed6d holds it back: in RFC 2439 the peer flaps
//! whatever the receiver does, so a penalty decaying while suppressed still grows; here
//! every removal answers a repair, holding back stops the removals, and a penalty that
//! decayed meanwhile would never let the hold grow.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::time::Duration;

use ipnet::Ipv6Net;
use tokio::time::Instant;

use crate::kernel::KernelEvent;
use crate::model::{Address, Op, Plan, Planned, Route};

/// Removals in a row repaired at once. A networkd restart, a link flap or an operator's
/// `ip addr del` removes an object once or twice; a person or a test deleting by hand to
/// watch the repair does it a few dozen times (the repair bench of issue 16 deletes one
/// object 50 times, milliseconds apart, and times each repair). A fight is what goes on
/// past that: at a removal every 10 ms, 0.64 s.
pub const FREE_REPAIRS: u32 = 64;
const _: () = assert!(
    FREE_REPAIRS >= 1,
    "a first removal is repaired at once (Damper::knows)"
);
/// The wait before the first repair held back; each removal after it doubles the wait.
pub const FIRST_HOLD: Duration = Duration::from_millis(100);
/// The longest wait: in a fight that never ends, one repair per object every 10 s.
pub const MAX_HOLD: Duration = Duration::from_secs(10);
/// How long after a repair a pass that finds the object missing again, with no removal
/// heard of, waits for the removal's notification (which comes within milliseconds)
/// before it puts the object back itself: see `Record::awaiting_news`.
pub const NOTICE_WAIT: Duration = Duration::from_secs(1);
/// How long an object must stand after routed6d put it back for its fight to be over:
/// twice the longest hold, because the other side may be damped too (a second routed6d
/// that cannot see this one's lock) and then removes the object only when its own hold
/// ends, up to `MAX_HOLD` apart; a fight at that pace is still a fight.
pub const CALM: Duration = Duration::from_secs(20);

/// One kernel object, as the kernel's notifications name it: an address by interface and
/// address, a route by table and destination (a notification names no metric, so the
/// routes of one destination, in delegate mode the prefix route and the unreachable
/// route, share their fight).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Object {
    Address { ifindex: u32, addr: Ipv6Addr },
    Route { table: u32, dst: Ipv6Net },
}

impl Object {
    pub fn of_address(address: &Address) -> Object {
        Object::Address {
            ifindex: address.ifindex,
            addr: address.addr,
        }
    }

    pub fn of_route(route: &Route) -> Object {
        Object::Route {
            table: route.table,
            dst: route.dst,
        }
    }

    /// The object an op adds, if it adds one.
    pub fn added_by(op: &Op) -> Option<Object> {
        match op {
            Op::AddAddress(a) => Some(Object::of_address(a)),
            Op::AddRoute(r) => Some(Object::of_route(r)),
            _ => None,
        }
    }

    /// The object carrying `protocol` whose removal `event` announces.
    pub fn removed_in(event: &KernelEvent, protocol: u8) -> Option<Object> {
        match *event {
            KernelEvent::Address {
                ifindex,
                addr,
                protocol: p,
                removed: true,
            } if p == protocol => Some(Object::Address { ifindex, addr }),
            KernelEvent::Route {
                dst,
                table,
                protocol: p,
                removed: true,
            } if p == protocol => Some(Object::Route { table, dst }),
            _ => None,
        }
    }
}

/// When an object that was just removed may be put back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Now,
    /// Not before `until`. `news` is set on the removal that starts holding it back:
    /// the one time the fight is worth a warning.
    Hold {
        until: Instant,
        news: Option<Fight>,
    },
}

/// A fight, as the warning tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fight {
    /// Removals in a row, each before the object had stood `CALM`.
    pub removals: u32,
    /// From the first of them to this one.
    pub over: Duration,
    /// The wait before the next repair.
    pub hold: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Record {
    /// Removals in a row, each before the object had stood `CALM` since the last.
    strikes: u32,
    first: Instant,
    last_removed: Instant,
    put_back: Option<Instant>,
    hold_until: Option<Instant>,
    warned: bool,
}

impl Record {
    /// The fight is over: the object has stood `CALM` since routed6d last put it back
    /// (or, never put back since its last removal, nothing has happened to it for as
    /// long), and no hold is running.
    fn calm_at(&self, now: Instant) -> bool {
        let held = self.hold_until.is_some_and(|until| until > now);
        let quiet_since = self
            .put_back
            .map_or(self.last_removed, |at| at.max(self.last_removed));
        !held && now.saturating_duration_since(quiet_since) >= CALM
    }

    /// Put back less than `NOTICE_WAIT` ago, and no removal heard of since. A pass
    /// that finds it missing has raced the removal's notification (the dump sees the
    /// kernel before the event queue does), and the notification decides when it comes:
    /// re-adding it now would be a repair that no removal was counted for, and a
    /// fighter removing it at the pace of the passes would never be damped.
    fn awaiting_news(&self, now: Instant) -> bool {
        self.put_back
            .is_some_and(|at| at >= self.last_removed && now < at + NOTICE_WAIT)
    }

    /// When this record next calls for a pass: its hold ends, or its fight is over.
    fn next_moment(&self) -> Instant {
        self.hold_until.unwrap_or_else(|| {
            self.put_back
                .map_or(self.last_removed, |at| at.max(self.last_removed))
                + CALM
        })
    }

    fn fresh(now: Instant) -> Record {
        Record {
            strikes: 0,
            first: now,
            last_removed: now,
            put_back: None,
            hold_until: None,
            warned: false,
        }
    }
}

/// Hold after `strikes` removals in a row: none up to `FREE_REPAIRS`, then doubling.
pub fn hold_for(strikes: u32) -> Duration {
    match strikes.checked_sub(FREE_REPAIRS + 1) {
        None => Duration::ZERO,
        Some(doublings) => FIRST_HOLD
            .saturating_mul(1u32 << doublings.min(16))
            .min(MAX_HOLD),
    }
}

/// The fights in progress: only objects removed within `CALM` of their last repair
/// have a record, so it holds a few entries, or none.
#[derive(Clone, Debug, Default)]
pub struct Damper {
    records: BTreeMap<Object, Record>,
}

impl Damper {
    pub const fn new() -> Self {
        Damper {
            records: BTreeMap::new(),
        }
    }

    /// Something removed routed6d's `object` at `now`: when may it be put back?
    pub fn removed(&mut self, object: Object, now: Instant) -> Verdict {
        let record = self
            .records
            .entry(object)
            .or_insert_with(|| Record::fresh(now));
        if record.strikes > 0 && record.calm_at(now) {
            *record = Record::fresh(now);
        }
        record.strikes = record.strikes.saturating_add(1);
        record.last_removed = now;
        let hold = hold_for(record.strikes);
        if hold.is_zero() {
            return Verdict::Now;
        }
        let until = now + hold;
        record.hold_until = Some(until);
        let news = (!record.warned).then(|| Fight {
            removals: record.strikes,
            over: now.saturating_duration_since(record.first),
            hold,
        });
        record.warned = true;
        Verdict::Hold { until, news }
    }

    /// Is a fight over `object` on record? Without one, its next removal is repaired
    /// at once: `removed` starts a record at one removal, which `FREE_REPAIRS` allows.
    pub fn knows(&self, object: &Object) -> bool {
        self.records.contains_key(object)
    }

    /// Would the next removal of `object` be repaired at once, whenever it comes? No
    /// record, or one short of `FREE_REPAIRS` and not held (a record gone calm would
    /// start afresh, but that depends on when the removal comes: not free).
    pub fn free(&self, object: &Object) -> bool {
        self.records
            .get(object)
            .is_none_or(|r| r.strikes < FREE_REPAIRS && r.hold_until.is_none())
    }

    /// routed6d put `object` back at `now` (nothing to remember unless it is fought over).
    pub fn put_back(&mut self, object: Object, now: Instant) {
        if let Some(record) = self.records.get_mut(&object) {
            record.put_back = Some(now);
            record.hold_until = None;
        }
    }

    /// Is `object` held back at `now`: waiting out its hold, or put back and missing
    /// again, waiting for the notification of its removal?
    pub fn holds(&self, object: &Object, now: Instant) -> bool {
        self.records
            .get(object)
            .is_some_and(|r| r.hold_until.is_some_and(|until| until > now) || r.awaiting_news(now))
    }

    /// When a pass that withheld `withheld` at `now` must look again should a removal's
    /// notification it waits for never come (lost in an overrun): `NOTICE_WAIT` after
    /// the repair. None when it waits for none (a hold has its own wake).
    pub fn notice_due(&self, withheld: &[Op], now: Instant) -> Option<Instant> {
        withheld
            .iter()
            .filter_map(Object::added_by)
            .filter_map(|o| self.records.get(&o))
            .filter(|r| r.awaiting_news(now))
            .filter_map(|r| r.put_back)
            .map(|at| at + NOTICE_WAIT)
            .min()
    }

    /// When a pass is next due for a fight: a hold ends (the object may be put back),
    /// or a fight is over (to say so when it ends, rather than at the next event). A
    /// removal or two that were repaired at once call for nothing: their record is
    /// forgotten by whichever pass comes after `CALM`.
    pub fn next_wake(&self) -> Option<Instant> {
        self.records
            .values()
            .filter(|r| r.warned)
            .map(Record::next_moment)
            .min()
    }

    /// Split `plan` at `now`: the ops to apply, and the adds of objects held back.
    pub fn withhold(&self, plan: Plan, now: Instant) -> (Plan, Vec<Op>) {
        if self.records.is_empty() {
            return (plan, Vec::new());
        }
        let (held, ops): (Vec<Planned>, Vec<Planned>) = plan
            .ops
            .into_iter()
            .partition(|p| Object::added_by(&p.op).is_some_and(|o| self.holds(&o, now)));
        (
            Plan {
                ops,
                conflicts: plan.conflicts,
            },
            held.into_iter().map(|p| p.op).collect(),
        )
    }

    /// Forget the fights that are over at `now` (and holds whose time has come without
    /// a repair: the object is no longer wanted); returns the objects whose fight was
    /// warned about and has ended with the object in place.
    pub fn settle(&mut self, now: Instant) -> Vec<Object> {
        let mut ended = Vec::new();
        self.records.retain(|object, record| {
            if record.hold_until.is_some_and(|until| until <= now) {
                record.hold_until = None;
            }
            if !record.calm_at(now) {
                return true;
            }
            if record.warned && record.put_back.is_some() {
                ended.push(*object);
            }
            false
        });
        ended
    }

    /// Is anything being fought over?
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests;
