//! A look at the proxy table between passes: how a proxy NDP entry of routed6d's that
//! someone deleted (`ip -6 neigh del proxy ADDR dev eth0`) is put back within seconds
//! instead of at the next poll.
//!
//! Addresses and routes need no such look: the kernel announces their removal
//! (RTM_DELADDR, RTM_DELROUTE) and the daemon repairs within milliseconds. Proxy
//! entries (`pneigh_entry`) are announced by no Linux release: `neigh_add` and
//! `neigh_delete` create or delete one and return without a notification (so in the
//! source from 2.6 to 6.19, whose `pneigh_create` and `pneigh_delete` notify nobody;
//! and on 6.18, watched with `ip monitor neigh` and a raw RTNLGRP_NEIGH listener:
//! ordinary neighbours are announced, proxy entries never).
//! Nor is their flush when the interface goes down, but that comes with the link's
//! own event, which already brings a full pass.
//!
//! So while proxy entries are wanted, and only then (an idle host, or one without an
//! on-link prefix, keeps no timer), the daemon dumps the proxy table alone every
//! `LOOK_EVERY` after the last pass, and runs a full pass when a wanted entry is
//! missing. One small dump (a few entries, one datagram) every few seconds.
//!
//! Should a kernel ever announce proxy entries, the look stops by itself: every proxy
//! entry routed6d adds is then announced back to the event watcher, which is subscribed
//! to RTNLGRP_NEIGH whenever the provider is on-link. The first proxy announcement
//! heard, of any entry, proves it, for the life of the process (the kernel does not
//! change under it); its removals are then relevant events like any other
//! (`is_relevant`), repaired after the debounce. Until one is heard (a restart that
//! adds nothing, a kernel that never announces) the look runs: its cost is small and
//! a missed removal is an outage for the workload.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::Agent;
use crate::kernel::{Kernel, KernelEvent};
use crate::model::{ObservedProxy, Proxy, Wanted};
use crate::reconcile::Outcome;

/// How long after a pass (or the last look) the proxy table is looked at again: the
/// longest a deleted entry of routed6d's stays away.
pub const LOOK_EVERY: Duration = Duration::from_secs(5);

/// When the proxy table is due a look, and whether the kernel was heard announcing
/// proxy entries (then it never is).
#[derive(Debug, Default)]
pub struct ProxyLook {
    /// A proxy entry's change was heard: the kernel announces them.
    announced: bool,
    /// When to look next; None: no entry wanted, or the kernel announces them.
    due: Option<Instant>,
}

impl ProxyLook {
    /// The kernel's proxy entries were seen (a pass, or a look) at `now`, with
    /// `wanted` entries wanted: the next look is `LOOK_EVERY` away, or none.
    pub fn seen(&mut self, wanted: usize, now: Instant) {
        self.due = (wanted > 0 && !self.announced).then(|| now + LOOK_EVERY);
    }

    /// Take in a kernel event: a proxy entry's announcement, of any entry (routed6d's
    /// own add echoed most likely), proves the kernel announces them. True when that
    /// was news.
    pub fn heard(&mut self, event: &KernelEvent) -> bool {
        let proxy = matches!(event, KernelEvent::Neighbour { proxy: true, .. });
        let news = proxy && !self.announced;
        if news {
            self.announced = true;
            self.due = None;
        }
        news
    }

    /// When the next look is due.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Is the look due at `now`?
    pub fn is_due(&self, now: Instant) -> bool {
        self.due.is_some_and(|at| at <= now)
    }
}

/// The wanted entries with none in `observed` at their (interface, address): an entry
/// of anyone's there does the job (`plan::diff_proxies` leaves it be).
pub fn missing<'a>(wanted: &'a [Wanted<Proxy>], observed: &[ObservedProxy]) -> Vec<&'a Proxy> {
    wanted
        .iter()
        .map(|w| &w.object)
        .filter(|w| {
            !observed
                .iter()
                .any(|o| (o.proxy.ifindex, o.proxy.addr) == (w.ifindex, w.addr))
        })
        .collect()
}

/// What the agent's own wake is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// A full pass: a next hop's grace, a fight's hold or a removal notice fell due.
    Pass,
    /// Only the proxy table's look.
    Look,
}

/// What to do when the agent's wake fires at `now`: `others` is the earliest of its
/// other deadlines (`Agent::wake_at`), `look` whether the proxy look is due. A full
/// pass covers the look, so any other deadline due wins; a wake with nothing due
/// (never expected) is a full pass, as it always was.
pub fn wake(now: Instant, others: Option<Instant>, look: bool) -> Wake {
    if look && others.is_none_or(|at| at > now) {
        Wake::Look
    } else {
        Wake::Pass
    }
}

impl<K: Kernel> Agent<K> {
    /// The agent's own wake (`wake_at`) fell due with no event waiting: a full pass,
    /// or only a look at the proxy table when that is all that is due.
    pub async fn woken(&mut self) -> Option<Outcome> {
        let now = Instant::now();
        match wake(now, self.other_wake_at(), self.proxy_look.is_due(now)) {
            Wake::Pass => self.repair().await,
            Wake::Look => self.look_at_proxies(now).await,
        }
    }

    /// Dump the proxy table alone; a full pass if a wanted entry is missing from it.
    async fn look_at_proxies(&mut self, now: Instant) -> Option<Outcome> {
        // The next look is set before this one's outcome: a failing dump must not
        // make the loop spin.
        let wanted = &self.pass.desired.proxies;
        self.proxy_look.seen(wanted.len(), now);
        let observed = match self.kernel.observe_proxies().await {
            Ok(observed) => observed,
            Err(e) => {
                warn!("cannot read the proxy entries, looking again in {LOOK_EVERY:?}: {e}");
                return None;
            }
        };
        let wanted = &self.pass.desired.proxies;
        let gone = missing(wanted, &observed);
        if gone.is_empty() {
            debug!("{} proxy entries in place", wanted.len());
            return None;
        }
        for proxy in gone {
            info!("{proxy} is gone (the kernel does not announce that): putting it back");
        }
        self.repair().await
    }

    /// Take in a kernel event for the proxy look (`ProxyLook::heard`).
    pub(super) fn heard_for_proxies(&mut self, event: &KernelEvent) {
        if self.proxy_look.heard(event) {
            info!(
                "this kernel announces proxy entries: their removal is repaired on its announcement, no longer looked for every {LOOK_EVERY:?}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn proxy(addr: &str) -> Proxy {
        Proxy {
            ifindex: 2,
            addr: addr.parse().expect("ip"),
            ifname: "eth0".into(),
        }
    }

    fn wanted(addrs: &[&str]) -> Vec<Wanted<Proxy>> {
        let origin = Arc::new(crate::model::RoutedPrefix {
            prefix: "2001:db8:1::/64".parse().expect("prefix"),
            next_hop: None,
            origin: "on-link".into(),
            workload: None,
        });
        addrs
            .iter()
            .map(|a| Wanted::new(proxy(a), &origin))
            .collect()
    }

    fn observed(addr: &str, ifindex: u32, protocol: u8) -> ObservedProxy {
        ObservedProxy {
            proxy: Proxy {
                ifindex,
                ..proxy(addr)
            },
            protocol,
        }
    }

    fn announced(proxy: bool, removed: bool) -> KernelEvent {
        KernelEvent::Neighbour {
            ifindex: 2,
            addr: "2001:db8:1:0:1::100".parse().expect("ip"),
            state: 0,
            proxy,
            removed,
        }
    }

    #[test]
    fn a_wanted_entry_is_missing_unless_someone_holds_its_slot() {
        let want = wanted(&["2001:db8:1:0:1::100", "2001:db8:1:0:1::200"]);
        assert!(missing(&want, &[]).len() == 2);
        let held = [
            observed("2001:db8:1:0:1::100", 2, 126),
            // An operator's entry for the other does the job too.
            observed("2001:db8:1:0:1::200", 2, 0),
        ];
        assert!(missing(&want, &held).is_empty());
        // The same address on another interface is not the slot.
        let elsewhere = [
            observed("2001:db8:1:0:1::100", 2, 126),
            observed("2001:db8:1:0:1::200", 7, 126),
        ];
        assert_eq!(missing(&want, &elsewhere), [&want[1].object]);
        assert!(missing(&[], &held).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_look_runs_only_while_entries_are_wanted() {
        let mut look = ProxyLook::default();
        let now = Instant::now();
        look.seen(0, now);
        assert_eq!(look.due(), None, "nothing wanted: no timer at all");
        look.seen(3, now);
        assert_eq!(look.due(), Some(now + LOOK_EVERY));
        assert!(!look.is_due(now));
        assert!(look.is_due(now + LOOK_EVERY));
        // The last entry goes: so does the timer.
        look.seen(0, now + LOOK_EVERY);
        assert_eq!(look.due(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_proxy_announcement_heard_stops_the_look_for_good() {
        let mut look = ProxyLook::default();
        let now = Instant::now();
        look.seen(1, now);
        // A neighbour cache's change says nothing of proxy entries.
        assert!(!look.heard(&announced(false, false)));
        assert!(!look.heard(&KernelEvent::Resync));
        assert!(look.due().is_some());
        // routed6d's own add echoed back: the kernel announces them.
        assert!(look.heard(&announced(true, false)));
        assert_eq!(look.due(), None);
        assert!(!look.heard(&announced(true, true)), "news once");
        look.seen(5, now);
        assert_eq!(
            look.due(),
            None,
            "no look once the kernel is known to announce"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_pass_wins_over_the_look_when_both_are_due() {
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        assert_eq!(wake(now, None, true), Wake::Look);
        assert_eq!(wake(now, Some(later), true), Wake::Look);
        assert_eq!(wake(now, Some(now), true), Wake::Pass);
        assert_eq!(wake(now, Some(now), false), Wake::Pass);
        assert_eq!(wake(now, None, false), Wake::Pass, "as before the look");
    }
}
