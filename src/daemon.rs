//! The daemon: one task owning all state, waiting on the poll timer, kernel events,
//! signals and the systemd watchdog.
//!
//! The provider side (`Poller`) and the kernel side (`Agent`) are separate so that a
//! slow or hanging API call runs concurrently with drift repair, signals and the
//! watchdog: the kernel is never left unrepaired because the provider is slow. Tests
//! drive both with a fake kernel and provider; `run` wires them to netlink, signals and
//! sd_notify.

use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::config::{Config, OnStop, ProviderConfig, RefreshNextHop};
use crate::damping::{self, Damper, Fight, Object, Verdict};
use crate::kernel::{Kernel, KernelEvent};
use crate::model::{
    Assignment, DesiredState, ObservedState, Op, Plan, Planned, RouteKind, RoutedPrefix,
};
use crate::next_hop::{Change, NextHopBook};
use crate::provider::allocation::AllocationGate;
use crate::provider::{Provider, ProviderError};
use crate::reconcile::{self, Moment, Outcome};

mod docker;
pub mod fleet;
pub mod memory;
pub mod proxy_look;
mod reflexes;
pub mod surroundings;
use fleet::Fleet;
use surroundings::{Clock, Control, Controls, Events, Signals, Surroundings};

/// How long to wait after a kernel event for more of the same burst before repairing.
pub const DEBOUNCE: Duration = Duration::from_millis(20);
/// A provider's Retry-After is honoured up to this long.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

/// Delay before the next poll. `unit` is a random number in [0, 1): polls are spread by
/// ±10 % so a fleet does not call the API in lockstep.
///
/// A failed poll is retried at the same pace as a good one, never faster: a quicker
/// retry multiplies the load on an API that is already failing, by every host at once
/// (the instance-metadata storm; see issue 16), and the next poll already finds a
/// recovered API within one interval. Only the provider's own `Retry-After` (or
/// rate-limit reset) makes the wait longer.
pub fn next_delay(interval: Duration, retry_after: Option<Duration>, unit: f64) -> Duration {
    let delay = interval.mul_f64(0.9 + 0.2 * unit);
    match retry_after {
        Some(wait) => delay.max(wait.min(RETRY_AFTER_MAX)),
        None => delay,
    }
}

/// What each workload bridge advertises, from a pass's desired state: the sub-prefixes
/// whose gateway is wanted on it (a bridge that does not exist yet has none).
pub fn advertised(desired: &DesiredState) -> Vec<(u32, String, Vec<Ipv6Net>)> {
    let mut out: Vec<(u32, String, Vec<Ipv6Net>)> = Vec::new();
    for address in &desired.addresses {
        let Some(placed) = &address.origin.workload else {
            continue;
        };
        match out.iter_mut().find(|(i, _, _)| *i == address.ifindex) {
            Some((_, _, prefixes)) => prefixes.push(placed.prefix),
            None => out.push((
                address.ifindex,
                placed.interface.clone(),
                vec![placed.prefix],
            )),
        }
    }
    out
}

/// Does this kernel event touch what routed6d keeps (so a repair is due)?
pub fn is_relevant(event: &KernelEvent, desired: &DesiredState, config: &Config) -> bool {
    let protocol = config.daemon.protocol;
    match event {
        KernelEvent::Resync => true,
        // The put back's own RTM_NEW* notification is what counts.
        KernelEvent::Reflex { .. } => false,
        KernelEvent::Netconf => config.uplink.keep_accept_ra,
        KernelEvent::Link { name, index, .. } => {
            config.interfaces().contains(&name.as_str())
                || desired.bridges.iter().any(|b| b.name == *name)
                || desired.addresses.iter().any(|a| a.ifindex == *index)
                || desired.routes.iter().any(|r| r.ifindex == Some(*index))
        }
        KernelEvent::Address {
            addr, protocol: p, ..
        } => {
            *p == protocol
                || desired
                    .addresses
                    .iter()
                    .chain(&desired.waiting)
                    .any(|a| a.addr == *addr)
        }
        KernelEvent::Route {
            dst, protocol: p, ..
        } => *p == protocol || desired.routes.iter().any(|r| r.dst == *dst),
        // A proxy entry routed6d wants that went, or a workload's neighbour whose coming
        // or going changes what is proxied (an on-link prefix's workloads only: the
        // caches change state all the time, and only that change matters).
        KernelEvent::Neighbour {
            ifindex,
            addr,
            state,
            proxy,
            removed,
        } => {
            if config.provider.kind() != crate::config::ProviderKind::Onlink {
                return false;
            }
            let proxied = || {
                desired
                    .proxies
                    .iter()
                    .any(|p| p.addr == *addr && (!*proxy || p.ifindex == *ifindex))
            };
            if *proxy {
                return *removed && proxied();
            }
            let behind_bridge = desired
                .caches
                .iter()
                .any(|(index, prefix)| index == ifindex && prefix.contains(addr));
            let in_use = !*removed && state & crate::model::NUD_IN_USE != 0;
            behind_bridge && in_use != proxied()
        }
    }
}

/// How many of routed6d's objects a burst of kernel events may put back one by one
/// before the debounced full pass; past it, the pass alone repairs (one dump, not
/// thousands of single writes racing a flush).
pub const FAST_RESTORES_PER_BURST: u32 = 32;

/// The object to put back at once when `event` says one of routed6d's own objects went
/// (`desired` is what the last pass wanted): keepalived's way, one write and no dump
/// (issue 16). Not the next hop on the uplink, whose place the OS may be about to take
/// back (`next_hop`), and not a route copied from someone else's (outbound_source),
/// which only a full look can judge: those wait for the full pass, which follows every
/// fast restore anyway and checks everything.
pub fn restore_for(
    event: &KernelEvent,
    desired: &DesiredState,
    config: &Config,
) -> Option<Planned> {
    let object = Object::removed_in(event, config.daemon.protocol)?;
    restorable(object, desired, config)
}

/// The add that puts `object` back at once, if it is one that may be (`restore_for`).
pub fn restorable(object: Object, desired: &DesiredState, config: &Config) -> Option<Planned> {
    let wanted = match object {
        Object::Address { ifindex, addr } => desired
            .addresses
            .iter()
            .find(|a| a.ifindex == ifindex && a.addr == addr)
            .filter(|a| a.ifname != config.uplink.interface)
            .map(|a| (Op::AddAddress(a.object.clone()), &a.origin)),
        Object::Route { table, dst } => {
            let mut same = desired
                .routes
                .iter()
                .filter(|r| r.table == table && r.dst == dst);
            match (same.next(), same.next()) {
                (Some(route), None) if !matches!(route.kind, RouteKind::Via { .. }) => {
                    Some((Op::AddRoute(route.object.clone()), &route.origin))
                }
                _ => None,
            }
        }
    };
    wanted.map(|(op, origin)| Planned::new(op, Some(origin.clone())))
}

/// The object of routed6d's that `event` says was removed, if the last pass wanted it
/// (`desired`): a removal that counts towards a fight (`damping`). routed6d's own
/// deletes remove what it no longer wants, so they never count.
pub fn lost(event: &KernelEvent, desired: &DesiredState, protocol: u8) -> Option<Object> {
    let object = Object::removed_in(event, protocol)?;
    let wanted = match object {
        Object::Address { ifindex, addr } => desired
            .addresses
            .iter()
            .any(|a| a.ifindex == ifindex && a.addr == addr),
        Object::Route { table, dst } => desired
            .routes
            .iter()
            .any(|r| r.table == table && r.dst == dst),
    };
    wanted.then_some(object)
}

/// What `routed6d status` reads: the daemon's view, written after every poll and repair.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusFile {
    /// The last pass left every address and route of the routed prefixes in the
    /// kernel (`routed6d wait-online`, routed6d-online.target).
    pub online: bool,
    pub pid: u32,
    pub host_id: String,
    pub last_poll: Option<String>,
    pub last_success: Option<String>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    pub next_hops: Vec<String>,
    pub prefixes: Vec<String>,
    pub unavailable: Option<String>,
    pub missing_interfaces: Vec<String>,
    pub conflicts: Vec<String>,
    /// The workloads placed in the routed prefix, one line each (`workload::Placed`).
    pub workloads: Vec<String>,
    /// Why the workloads do not fit the routed prefix, when they do not.
    pub workload_error: Option<String>,
    /// The reachability probe's last verdict; None: no `[probe]`.
    pub probe: Option<crate::probe::ProbeStatus>,
    /// The docker workloads' networks as Docker last showed them, one line each.
    pub docker: Vec<String>,
}

/// The provider side of a poll: the provider, and what it remembers between polls so
/// that a refresh or an allocation is asked for once, not on every poll.
pub struct Poller<P> {
    pub provider: P,
    /// The (next hops, suggested) pair a refresh was already asked for.
    refreshed_for: Option<(Vec<Ipv6Addr>, Ipv6Addr)>,
    /// When allocate may be asked again (`provider::allocation`).
    allocation: AllocationGate,
}

impl<P: Provider> Poller<P> {
    pub fn new(provider: P) -> Self {
        Poller {
            provider,
            refreshed_for: None,
            allocation: AllocationGate::default(),
        }
    }

    /// Identify the host if needed, fetch, then refresh the next hop or allocate when
    /// `settings` ask for it. `uplink_ips` are only used to identify the host.
    pub async fn poll(
        &mut self,
        settings: &ProviderConfig,
        uplink_ips: &[IpAddr],
    ) -> Result<Assignment, ProviderError> {
        if self.provider.needs_identity() {
            self.provider.identify(uplink_ips).await?;
        }
        let mut assignment = match self.provider.fetch().await {
            Ok(assignment) => assignment,
            Err(e)
                if settings.allocate() && self.provider.fetch_failure_may_mean_unallocated(&e) =>
            {
                return self
                    .allocation
                    .allocate_after_failure(&mut self.provider, e)
                    .await;
            }
            Err(e) => return Err(e),
        };

        if settings.refresh_next_hop() == RefreshNextHop::Auto
            && assignment.next_hop_is_stale()
            && let Some(suggested) = assignment.suggested_next_hop
        {
            let current: Vec<Ipv6Addr> = assignment
                .prefixes
                .iter()
                .filter_map(|p| p.next_hop)
                .collect();
            let key = (current.clone(), suggested);
            if self.refreshed_for.as_ref() != Some(&key) {
                self.refreshed_for = Some(key);
                info!(
                    NEXT_HOP = %suggested,
                    "next hop {} is stale (provider suggests {suggested}): asking the provider to refresh it",
                    join(&current)
                );
                match self.provider.refresh_next_hop().await {
                    Ok(refreshed) => assignment = refreshed,
                    Err(e) => warn!("refresh_next_hop failed, using the current next hop: {e}"),
                }
            }
        }

        if settings.allocate() {
            assignment = (self.allocation)
                .allocate_if_missing(&mut self.provider, assignment)
                .await;
        }
        // Whichever request the answer came from, it is bounded before it is used.
        crate::provider::check_bounds(&assignment, settings.max_prefixes)?;
        Ok(assignment)
    }
}

/// The kernel side: the last good answer, what it means for the kernel, and the
/// daemon's health, independent of where events come from.
pub struct Agent<K> {
    pub config: Config,
    pub kernel: K,
    /// What the last pass left.
    pub pass: LastPass,
    /// How the provider has been answering: what `status` and STATUS= report.
    pub health: Health,
    /// What was last said about lasting conditions, so each is said once.
    said: SaidOnce,
    /// How fast routed6d's removed objects are put back.
    repairs: Repairs,
    /// Whose the next hops' places on the uplink were: routed6d waits for the OS to
    /// put its own address back instead of racing it (`next_hop`).
    hops: NextHops,
    /// When the proxy table is looked at between passes (`proxy_look`).
    proxy_look: proxy_look::ProxyLook,
    /// The metrics, the probe and the hooks (`fleet`).
    pub fleet: Fleet,
    /// Router advertisements on the workloads' bridges (`ra`); None: no workloads, or
    /// no socket for them (said at start).
    pub ra: Option<crate::ra::sender::Sender>,
    /// The keeper of the docker workloads' networks (`docker`); None: there are none.
    pub docker: Option<crate::docker::engine::Keeper>,
    /// What the keeper last reported: the containers' addresses, lines for `status`.
    docker_report: crate::docker::engine::Report,
}

/// What the last pass left: the answer it applied and the kernel state it aimed for.
#[derive(Default)]
pub struct LastPass {
    /// The last well-formed answer: what the kernel is kept at while the API fails.
    pub last_good: Option<Assignment>,
    /// The desired state of the last pass, for judging kernel events.
    pub desired: DesiredState,
    /// The assignment of the last pass: whether an answer changed.
    applied: Option<Assignment>,
    /// What the kernel holds as of the last pass, while no kernel event has touched
    /// routed6d's objects since: a changed provider answer is applied from it without
    /// a dump. Any relevant event, resync or reload forgets it.
    expected: Option<ObservedState>,
    /// The last pass left the routed prefixes' objects in the kernel.
    online: bool,
    /// The kernel changes the last pass could not make, with their errors, and how many
    /// of them the kernel refused for want of privilege.
    pub failed: Vec<(String, String)>,
    pub denied: usize,
}

/// How the provider has been answering.
#[derive(Default)]
pub struct Health {
    /// Polls that failed in a row.
    pub failures: u32,
    pub last_error: Option<String>,
    /// The provider's id for this host, once known.
    pub host_id: Option<String>,
    last_poll: Option<SystemTime>,
    last_success: Option<SystemTime>,
    /// Whether this agent is the daemon, which alone writes the status file: a one-off
    /// command (root's `once`) leaves the service's file to the service.
    publishes: bool,
}

/// Lasting conditions as last logged: each is logged when it starts and when it ends,
/// not on every pass.
#[derive(Default)]
struct SaidOnce {
    /// The provider's reason for "not available".
    unavailable: Option<String>,
    /// Foreign objects in routed6d's slots.
    conflicts: Vec<String>,
    /// The next hops reported missing (`next_hop = "check"`).
    missing_next_hops: Vec<Ipv6Addr>,
}

/// The pace of repairs.
#[derive(Default)]
struct Repairs {
    /// Objects put back one by one since the last full pass.
    fast_restores: u32,
    /// The objects something keeps removing, and when each may be put back.
    fights: Damper,
    /// When to look again for a removal notice the last pass waited for (`damping`).
    notice_wake: Option<Instant>,
    /// The reflexes must all be armed again after the next pass (`reflexes`): the
    /// configuration changed.
    rearm_all: bool,
}

/// The uplink's next hops: whose each place was, when to look again, where that is kept.
#[derive(Default)]
struct NextHops {
    book: NextHopBook,
    /// When a next hop held back for the OS is due another look.
    wake: Option<Instant>,
    /// Where the OS's next hop forms are kept for a restart (`memory`); None: not kept.
    memory: Option<PathBuf>,
}

impl<K: Kernel> Agent<K> {
    pub fn new(config: Config, mut kernel: K) -> Self {
        let fleet = Fleet::new(&config);
        kernel.observe_neighbours(config.provider.kind() == crate::config::ProviderKind::Onlink);
        Agent {
            config,
            kernel,
            pass: LastPass::default(),
            health: Health::default(),
            said: SaidOnce::default(),
            repairs: Repairs::default(),
            hops: NextHops::default(),
            proxy_look: proxy_look::ProxyLook::default(),
            fleet,
            ra: None,
            docker: None,
            docker_report: Default::default(),
        }
    }

    /// Open the router advertisement socket when workloads are configured and it is
    /// not open yet. Without it the workloads still get their gateway and route (hosts
    /// configured by hand keep working): an error line, not a refusal to start.
    pub fn start_advertising(&mut self) {
        if self.config.workloads.is_empty() || self.ra.is_some() {
            return;
        }
        match crate::ra::sender::Sender::open() {
            Ok(sender) => self.ra = Some(sender),
            Err(e) => error!("{e}; the workloads get no router advertisements"),
        }
    }

    /// Tell the advertiser what each bridge holds after a pass.
    fn advertise(&mut self) {
        if let Some(ra) = self.ra.as_mut() {
            ra.update(&advertised(&self.pass.desired));
        }
    }

    /// Keep the next hops the OS held in `path`, and start from what an earlier
    /// routed6d of this boot left there.
    pub fn remember_next_hops_in(&mut self, path: PathBuf) {
        let forms = memory::load(&path);
        if !forms.is_empty() {
            info!(
                "remembering {} next hop(s) the OS held before this start",
                forms.len()
            );
        }
        self.hops.book = NextHopBook::remembering(forms);
        self.hops.memory = Some(path);
    }

    /// Put back at once the object of routed6d's that `event` says went, if it is one
    /// of those `restore_for` allows, the burst has not used up its share, and it is
    /// not being fought over (then it waits its turn, which a full pass takes: see
    /// `damping`). The debounced full pass follows as for any relevant event.
    pub async fn restore_at_once(&mut self, event: &KernelEvent) {
        let Some(object) = lost(event, &self.pass.desired, self.config.daemon.protocol) else {
            return;
        };
        if self.reflex_in_flight(&object) {
            // The watcher has put it back already: its answer tells the rest.
            return;
        }
        let now = Instant::now();
        // A fight that ended since the last pass is told before a new one can start.
        let ended = if self.repairs.fights.is_empty() {
            Vec::new()
        } else {
            self.repairs.fights.settle(now)
        };
        // An object with no fight on record is repaired at once (`FREE_REPAIRS`), and
        // its removal recorded after the write: before it, a clock read and a look-up.
        let fought = self.repairs.fights.knows(&object);
        let verdict = if fought {
            self.repairs.fights.removed(object, now)
        } else {
            Verdict::Now
        };
        if let Verdict::Hold { until, news } = verdict {
            self.note_fights_ended(&ended);
            let what = self.describe(object);
            let wait = humantime::format_duration(until - now);
            match news {
                Some(fight) => self.warn_fight(&what, fight),
                None => debug!(
                    OP = "fight",
                    "{what} removed again: putting it back in {wait}"
                ),
            }
            return;
        }
        let planned = restore_for(event, &self.pass.desired, &self.config)
            .filter(|_| self.repairs.fast_restores < FAST_RESTORES_PER_BURST);
        let restored = planned.is_some();
        if let Some(planned) = planned {
            self.repairs.fast_restores += 1;
            self.pass.expected = None;
            let plan = Plan {
                ops: vec![planned],
                conflicts: Vec::new(),
            };
            let outcome = reconcile::apply(&mut self.kernel, plan).await;
            self.restored(&outcome);
        }
        if !fought {
            self.repairs.fights.removed(object, now);
        }
        if restored {
            self.repairs.fights.put_back(object, now);
        }
        self.note_fights_ended(&ended);
    }

    /// One line for each fight that ended with the object in place.
    fn note_fights_ended(&self, ended: &[Object]) {
        for object in ended {
            info!(
                OP = "fight",
                "{} has stayed in place for {} since routed6d put it back: repairing it at once again",
                self.describe(*object),
                humantime::format_duration(damping::CALM)
            );
        }
    }

    /// The one warning of a fight: what, how often, and what routed6d does about it.
    fn warn_fight(&self, what: &str, fight: Fight) {
        warn!(
            OP = "fight",
            "{what} was removed {} times in {}, each time soon after routed6d put it back: something else on this host keeps deleting it (another routed6d with protocol {}, or a manager removing routes it did not add); putting it back after {}, twice as long after each removal, at most every {}",
            fight.removals,
            humantime::format_duration(round_ms(fight.over)),
            self.config.daemon.protocol,
            humantime::format_duration(fight.hold),
            humantime::format_duration(damping::MAX_HOLD)
        );
    }

    /// An object as `ip` shows it, from the last pass's desired state.
    fn describe(&self, object: Object) -> String {
        let found = match object {
            Object::Address { ifindex, addr } => self
                .pass
                .desired
                .addresses
                .iter()
                .find(|a| a.ifindex == ifindex && a.addr == addr)
                .map(|a| format!("address {a}")),
            Object::Route { table, dst } => self
                .pass
                .desired
                .routes
                .iter()
                .find(|r| r.table == table && r.dst == dst)
                .map(|r| format!("route {r}")),
        };
        found.unwrap_or_else(|| match object {
            Object::Address { ifindex, addr } => format!("address {addr} on if{ifindex}"),
            Object::Route { table, dst } => format!("route {dst} in table {table}"),
        })
    }

    /// When the agent is due without any event (`woken`): a next hop held back for
    /// the OS has waited long enough, or an object held back in a fight may be put
    /// back, or a fight is over, or the proxy table is due a look (`proxy_look`).
    pub fn wake_at(&self) -> Option<Instant> {
        earliest(self.other_wake_at(), self.proxy_look.due())
    }

    /// `wake_at` without the proxy look: the deadlines that need a full pass.
    fn other_wake_at(&self) -> Option<Instant> {
        let fights = earliest(self.repairs.fights.next_wake(), self.repairs.notice_wake);
        earliest(self.hops.wake, fights)
    }

    /// Something may have changed routed6d's objects in the kernel (an event about
    /// them, a resync, a new configuration): the next pass dumps.
    pub fn forget_expected(&mut self) {
        self.pass.expected = None;
    }

    /// One whole poll: ask the provider, then reconcile. Returns the delay until the
    /// next poll. (The daemon runs the two halves apart; `once` and tests use this.)
    pub async fn poll<P: Provider>(&mut self, poller: &mut Poller<P>) -> Duration {
        let result = match self.poll_input(poller).await {
            Ok(ips) => poller.poll(&self.config.provider, &ips).await,
            Err(e) => Err(e),
        };
        self.finish_poll(result, poller.provider.host_id()).await
    }

    /// Start a poll: the uplink's addresses while the provider still has to identify
    /// this host (nothing otherwise).
    pub async fn poll_input<P: Provider>(
        &mut self,
        poller: &Poller<P>,
    ) -> Result<Vec<IpAddr>, ProviderError> {
        self.health.last_poll = Some(SystemTime::now());
        if !poller.provider.needs_identity() {
            return Ok(Vec::new());
        }
        self.kernel
            .interface_addresses(&self.config.uplink.interface)
            .await
            .map_err(|e| {
                ProviderError::NotFound(format!("cannot read the uplink's addresses: {e}"))
            })
    }

    /// Finish a poll with the provider's answer: reconcile on a good one, keep the last
    /// good state on a failure. Returns the delay until the next poll.
    pub async fn finish_poll(
        &mut self,
        result: Result<Assignment, ProviderError>,
        host_id: Option<String>,
    ) -> Duration {
        if host_id.is_some() {
            self.health.host_id = host_id;
        }
        let retry_after = match result {
            Ok(assignment) => {
                if self.health.failures > 0 {
                    info!(
                        FAILURES = self.health.failures,
                        "recovered: provider answered after {} failed poll(s)",
                        self.health.failures
                    );
                }
                self.health.failures = 0;
                self.health.last_error = None;
                let now = SystemTime::now();
                self.health.last_success = Some(now);
                self.polled(Ok(now));
                self.note_unavailable(&assignment);
                self.pass.last_good = Some(assignment);
                self.converge().await;
                None
            }
            Err(e) => {
                self.health.failures += 1;
                if self.health.failures == 1 {
                    let kept = if self.pass.last_good.is_some() {
                        "keeping the last good state"
                    } else {
                        "changing nothing until a good answer"
                    };
                    warn!("provider poll failed, {kept}; retrying at the poll interval: {e}");
                } else {
                    debug!(
                        FAILURES = self.health.failures,
                        "provider poll failed again: {e}"
                    );
                }
                self.polled(Err(&e));
                self.health.last_error = Some(e.to_string());
                self.write_status();
                e.retry_after()
            }
        };
        next_delay(
            self.config.provider.poll_interval,
            retry_after,
            rand::random::<f64>(),
        )
    }

    fn note_unavailable(&mut self, assignment: &Assignment) {
        if assignment.unavailable != self.said.unavailable {
            if let Some(reason) = &assignment.unavailable {
                warn!("provider says routed IPv6 is not available: {reason}");
            }
            self.said.unavailable = assignment.unavailable.clone();
        }
    }

    /// After a good answer: a changed answer is applied from the expected state when
    /// there is one (the writes it needs, no dump); an unchanged one is checked
    /// against a full dump, which is also the fallback whenever the kernel held
    /// something the expected state did not know of.
    pub async fn converge(&mut self) -> Option<Outcome> {
        let assignment = self.pass.last_good.clone()?;
        let changed = self.pass.applied.as_ref() != Some(&assignment);
        if changed
            && !self.config.provider.outbound_source()
            && let Some(expected) = self.pass.expected.take()
        {
            let now = Instant::now();
            let moment = Moment {
                book: &self.hops.book,
                fights: &self.repairs.fights,
                now,
                in_use: &self.docker_report.endpoints,
            };
            let outcome = reconcile::reconcile_from(
                &mut self.kernel,
                &self.config,
                &assignment,
                &self.pass.desired,
                expected,
                moment,
            )
            .await;
            if outcome.found_present == 0 {
                return Some(self.absorb(outcome, assignment, now));
            }
            debug!(
                "{} add(s) found the kernel already holding them: checking with a full dump",
                outcome.found_present
            );
        }
        self.repair().await
    }

    /// Make the kernel match the last good answer from a full look at it, without
    /// calling the API. Does nothing before the first good answer: an earlier
    /// process's state stays.
    pub async fn repair(&mut self) -> Option<Outcome> {
        let assignment = self.pass.last_good.clone()?;
        self.pass.expected = None;
        self.repairs.fast_restores = 0;
        let now = Instant::now();
        let moment = Moment {
            book: &self.hops.book,
            fights: &self.repairs.fights,
            now,
            in_use: &self.docker_report.endpoints,
        };
        let pass = reconcile::reconcile(
            &mut self.kernel,
            &self.config,
            &assignment,
            &self.pass.desired,
            moment,
        );
        match pass.await {
            Ok(outcome) => Some(self.absorb(outcome, assignment, now)),
            Err(e) => {
                error!("cannot read the kernel's state, changing nothing: {e}");
                self.health.last_error = Some(e.to_string());
                self.write_status();
                None
            }
        }
    }

    /// Take in what a pass judged at `now` and did: log what is news, remember the
    /// state it left.
    fn absorb(&mut self, mut outcome: Outcome, assignment: Assignment, now: Instant) -> Outcome {
        self.pass.expected = outcome.expected.take();
        self.repairs.notice_wake = self.repairs.fights.notice_due(&outcome.withheld, now);
        if !self.repairs.fights.is_empty() {
            let done = |op: &&Op| {
                !outcome
                    .failed
                    .iter()
                    .any(|(text, _)| *text == op.to_string())
            };
            for object in outcome
                .plan
                .ops
                .iter()
                .map(|p| &p.op)
                .filter(done)
                .filter_map(Object::added_by)
            {
                self.repairs.fights.put_back(object, now);
            }
            let ended = self.repairs.fights.settle(now);
            self.note_fights_ended(&ended);
        }
        let grace = self.config.uplink.next_hop_grace;
        let held_before = self.hops.book.os_forms();
        for change in self
            .hops
            .book
            .note(&outcome.next_hops.sightings, now, grace)
        {
            self.log_next_hop(change);
        }
        let held = self.hops.book.os_forms();
        if held != held_before
            && let Some(path) = &self.hops.memory
            && let Err(e) = memory::save(path, &held)
        {
            warn!("cannot keep the OS's next hops in {}: {e}", path.display());
        }
        self.hops.wake = outcome.next_hops.wake_at;
        self.proxy_look.seen(outcome.desired.proxies.len(), now);
        if outcome.desired.workload_error != self.pass.desired.workload_error {
            match &outcome.desired.workload_error {
                Some(e) => error!("workloads not placed: {e}"),
                None if self.pass.desired.workload_error.is_some() => {
                    info!("workloads placed again")
                }
                None => {}
            }
        }
        if outcome.desired.workloads != self.pass.desired.workloads {
            for placed in &outcome.desired.workloads {
                info!(
                    WORKLOAD = %placed.name,
                    WORKLOAD_PREFIX = %placed.prefix,
                    PREFIX = %placed.routed,
                    IFACE = %placed.interface,
                    "{placed}"
                );
            }
        }
        if outcome.desired.missing_interfaces != self.pass.desired.missing_interfaces {
            for name in &outcome.desired.missing_interfaces {
                warn!(IFACE = %name, "interface {name} does not exist: waiting for it");
            }
        }
        let conflicts: Vec<String> = outcome
            .plan
            .conflicts
            .iter()
            .map(|c| format!("want {} but found {}", c.wanted, c.found))
            .collect();
        // Reported when new, not on every pass: a foreign route in the way stays in
        // the way until its owner moves it, and one line says so.
        for (text, conflict) in conflicts.iter().zip(&outcome.plan.conflicts) {
            if !self.said.conflicts.contains(text) {
                warn!(
                    OP = "conflict",
                    "not touching {} (not routed6d's): wanted {}", conflict.found, conflict.wanted
                );
            }
        }
        self.said.conflicts = conflicts;
        self.note_next_hops(&outcome.missing_next_hops);
        self.pass.online = !assignment.prefixes.is_empty()
            && outcome.failed.is_empty()
            && outcome.withheld.is_empty()
            && outcome.desired.missing_interfaces.is_empty();
        self.passed(&outcome, &assignment);
        self.pass.failed = outcome.failed.clone();
        self.pass.denied = outcome.denied;
        let desired_changed = outcome.desired != self.pass.desired;
        self.pass.desired = outcome.desired.clone();
        self.arm_reflexes(desired_changed);
        self.pass.applied = Some(assignment);
        self.advertise();
        self.tell_docker();
        self.announce(&outcome);
        self.write_status();
        outcome
    }

    /// An unsolicited neighbour advertisement on the uplink for each proxy entry the
    /// pass added (an on-link prefix's workloads): the provider's router hears at once
    /// that the address is answered for.
    fn announce(&self, outcome: &Outcome) {
        let Some(ra) = self.ra.as_ref() else {
            return;
        };
        for planned in &outcome.plan.ops {
            if let Op::AddProxy(proxy) = &planned.op
                && !outcome
                    .failed
                    .iter()
                    .any(|(text, _)| *text == planned.op.to_string())
            {
                ra.announce(proxy);
            }
        }
    }

    fn log_next_hop(&self, change: Change) {
        let uplink = &self.config.uplink.interface;
        let grace = humantime::format_duration(self.config.uplink.next_hop_grace);
        match change {
            Change::OsGone { hop } => info!(
                NEXT_HOP = %hop,
                IFACE = %uplink,
                "next hop {hop} is gone from {uplink}, where the OS had it: leaving its place to the OS for {grace} before routed6d stands in"
            ),
            Change::StandIn { hop, form } => warn!(
                NEXT_HOP = %hop,
                IFACE = %uplink,
                "the OS did not put next hop {hop} back on {uplink} within {grace}: routed6d adds {hop}/{} as the OS had it, until the OS takes it back",
                form.prefix_len
            ),
            Change::OsBack { hop, form } => info!(
                NEXT_HOP = %hop,
                IFACE = %uplink,
                "next hop {hop}/{} is the OS's on {uplink} again", form.prefix_len
            ),
        }
    }

    /// Report next hops that went missing from the uplink, or came back, once each.
    fn note_next_hops(&mut self, missing: &[Ipv6Addr]) {
        let uplink = &self.config.uplink.interface;
        for hop in missing
            .iter()
            .filter(|h| !self.said.missing_next_hops.contains(h))
        {
            warn!(
                NEXT_HOP = %hop,
                IFACE = %uplink,
                "next hop {hop} is not on {uplink} and uplink.next_hop = \"check\": not adding it; the provider's router cannot reach the prefix until it is there (next_hop = \"ensure\" adds it)"
            );
        }
        // A next hop the provider no longer names is not "back": it is just gone.
        let still_named = |hop: &Ipv6Addr| {
            self.pass
                .last_good
                .iter()
                .flat_map(|a| &a.prefixes)
                .any(|p| p.next_hop == Some(*hop))
        };
        for hop in self
            .said
            .missing_next_hops
            .iter()
            .filter(|h| !missing.contains(h) && still_named(h))
        {
            info!(NEXT_HOP = %hop, IFACE = %uplink, "next hop {hop} is on {uplink} again");
        }
        self.said.missing_next_hops = missing.to_vec();
    }

    /// Leave per `on_stop`.
    pub async fn stop(&mut self) {
        self.disarm_reflexes();
        if self.config.daemon.on_stop == OnStop::Withdraw {
            self.withdraw_docker().await;
            // One last advertisement: not a default router any more, every prefix
            // deprecated, before the gateway goes.
            if let Some(ra) = self.ra.as_mut() {
                ra.update(&[]);
            }
            match reconcile::withdraw(&mut self.kernel, &self.config, &self.pass.desired).await {
                Ok(outcome) => info!(
                    "stopped: withdrew {} object(s) routed6d owned (on_stop = withdraw)",
                    outcome.applied
                ),
                Err(e) => error!("stopping: cannot withdraw: {e}"),
            }
        } else {
            info!("stopped: kernel state kept (on_stop = keep)");
        }
    }

    /// One line for systemd's STATUS=.
    pub fn summary(&self) -> String {
        let state = match &self.pass.last_good {
            None => "no answer from the provider yet".to_string(),
            Some(a) if a.prefixes.is_empty() => match &a.unavailable {
                Some(reason) => format!("not available: {reason}"),
                None => "nothing routed here".to_string(),
            },
            Some(a) => a
                .prefixes
                .iter()
                .map(RoutedPrefix::describe)
                .collect::<Vec<_>>()
                .join(", "),
        };
        let state = match self.fleet.probe_status().and_then(|p| p.summary()) {
            Some(probe) => format!("{state}; {probe}"),
            None => state,
        };
        match &self.health.last_error {
            Some(e) => format!("{state}; last poll failed: {e}"),
            None => state,
        }
    }

    pub fn status(&self) -> StatusFile {
        let good = self.pass.last_good.clone().unwrap_or_default();
        StatusFile {
            online: self.pass.online,
            pid: std::process::id(),
            host_id: self.health.host_id.clone().unwrap_or_default(),
            last_poll: self.health.last_poll.map(rfc3339),
            last_success: self.health.last_success.map(rfc3339),
            last_error: self.health.last_error.clone(),
            consecutive_failures: self.health.failures,
            next_hops: good
                .prefixes
                .iter()
                .filter_map(|p| p.next_hop.map(|hop| hop.to_string()))
                .collect(),
            prefixes: good
                .prefixes
                .iter()
                .map(|p| format!("{} ({})", p.prefix, p.origin))
                .collect(),
            unavailable: good.unavailable.clone(),
            missing_interfaces: self.pass.desired.missing_interfaces.clone(),
            conflicts: self.said.conflicts.clone(),
            workloads: self
                .pass
                .desired
                .workloads
                .iter()
                .map(|w| w.to_string())
                .collect(),
            workload_error: self.pass.desired.workload_error.clone(),
            probe: self.fleet.probe_status(),
            docker: self.docker_report.lines.clone(),
        }
    }

    /// Write the status file (`routed6d status`, `wait-online`) and the metrics
    /// textfile after every poll and pass. Only the daemon's agent does.
    pub fn publish_status(&mut self) {
        self.health.publishes = true;
    }

    fn write_status(&self) {
        if !self.health.publishes {
            return;
        }
        let path = &self.config.daemon.status_file;
        if let Err(e) = write_atomically(path, &self.status()) {
            debug!("cannot write {}: {e}", path.display());
        }
        self.publish();
    }
}

fn join(addrs: &[Ipv6Addr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Write the status through a fresh temporary file (created exclusively under a random
/// name, never following a link planted in the directory) renamed into place: a
/// reader sees the old file or the new one, and nobody can make root's `routed6d once`
/// write through a symlink (issue 15).
fn write_atomically(path: &PathBuf, status: &StatusFile) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let text = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(&text)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The most of a status file `read_status` reads: a real one is a few hundred bytes.
const STATUS_FILE_MAX: u64 = 64 * 1024;

/// Read the daemon's status file, if there is one: not through a symlink, and not
/// more than `STATUS_FILE_MAX` bytes.
pub fn read_status(path: &PathBuf) -> Option<StatusFile> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let mut text = Vec::new();
    file.take(STATUS_FILE_MAX).read_to_end(&mut text).ok()?;
    serde_json::from_slice(&text).ok()
}

/// sd_notify, a no-op without NOTIFY_SOCKET.
fn notify(states: &[sd_notify::NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(states)
    {
        debug!("sd_notify failed: {e}");
    }
}

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot start: {0}")]
    Kernel(#[from] crate::kernel::KernelError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Timer(#[from] crate::timer::TimerError),
    #[error("cannot start: {0}")]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("cannot start the probe: {0}")]
    Probe(#[from] crate::probe::ProbeError),
}

/// Tell systemd how the poll went. Never block boot on the provider: ready after the
/// first poll, good or bad, with the last good state kept.
fn announce<K: Kernel>(agent: &Agent<K>, ready: &mut bool) {
    if !*ready {
        notify(&[sd_notify::NotifyState::Ready]);
        *ready = true;
    }
    notify(&[sd_notify::NotifyState::Status(&agent.summary())]);
}

/// A kernel event that touches routed6d's objects: what the last pass left is no
/// longer to be trusted, and a repair is due once the burst is over.
fn heed<K: Kernel>(event: &KernelEvent, agent: &mut Agent<K>, repair_at: &mut Option<Instant>) {
    agent.heard_for_proxies(event);
    if is_relevant(event, &agent.pass.desired, &agent.config) {
        debug!(?event, "kernel event touches routed6d's state");
        agent.forget_expected();
        repair_at.get_or_insert(Instant::now() + DEBOUNCE);
    }
}

/// A duration as a person reads it in a log line: to the millisecond.
fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A poll in flight: it owns the poller and gives it back with the answer.
type InFlight<P> = Pin<Box<dyn Future<Output = (Poller<P>, Result<Assignment, ProviderError>)>>>;

/// Start the provider half of a poll without waiting for it.
fn start_poll<P: Provider + 'static>(
    mut poller: Poller<P>,
    settings: ProviderConfig,
    uplink_ips: Vec<IpAddr>,
) -> InFlight<P> {
    Box::pin(async move {
        let result = poller.poll(&settings, &uplink_ips).await;
        (poller, result)
    })
}

/// The daemon: the real kernel, its events, a timerfd and Unix signals around `serve`.
/// `reload` reads the configuration again on SIGHUP.
pub async fn run<P: Provider + 'static>(
    config: Config,
    provider: P,
    reload: impl Fn(&Config) -> Result<(Config, P), String>,
) -> Result<(), DaemonError> {
    let kernel = crate::kernel::netlink::NetlinkKernel::open(&config.daemon).await?;
    let surroundings = Surroundings {
        events: {
            use crate::kernel::watch::{EVENT_QUEUE, RECV_BUFFER, Watch};
            let reflexes = kernel.reflexes().unwrap_or_default();
            // The neighbour caches only for an on-link prefix's workloads (chosen at
            // start: a reload to or from `kind = "onlink"` is followed at every poll,
            // and by events after a restart).
            let neighbours = config.provider.kind() == crate::config::ProviderKind::Onlink;
            Watch::start_reflexive_with(RECV_BUFFER, EVENT_QUEUE, reflexes, neighbours)?
        },
        controls: Signals::install()?,
        // The poll timer is a timerfd, not a tokio sleep: see `timer` for the wakeups
        // that saves at rest.
        clock: crate::timer::PollTimer::new()?,
        watchdog: sd_notify::watchdog_enabled().map(|period| period / 2),
    };
    let memory = config.daemon.state_dir.join("next-hops.json");
    let mut agent = Agent::new(config, kernel);
    agent.publish_status();
    agent.remember_next_hops_in(memory);
    agent.fleet.start(&agent.config).await?;
    agent.start_advertising();
    agent.start_docker();
    serve(&mut agent, provider, surroundings, reload).await
}

/// Where the provider half of the poll is: waiting for the timer with the poller, or
/// asking (the poller inside the request, given back with the answer).
enum Polling<P> {
    Idle(Poller<P>),
    Asking(InFlight<P>),
}

/// The daemon's loop: polls on the clock, repairs after kernel events and when a next
/// hop held back for the OS falls due, reloads and stops on the operator's word, and
/// pings the watchdog. Returns after `Control::Stop`, with the agent stopped.
pub async fn serve<K: Kernel, P: Provider + 'static>(
    agent: &mut Agent<K>,
    provider: P,
    surroundings: Surroundings<impl Events, impl Clock, impl Controls>,
    reload: impl Fn(&Config) -> Result<(Config, P), String>,
) -> Result<(), DaemonError> {
    let Surroundings {
        mut events,
        mut clock,
        mut controls,
        watchdog,
    } = surroundings;
    let mut polling = Polling::Idle(Poller::new(provider));
    info!(
        "routed6d {} started: interface {}, prefix mode {:?}, poll every {}",
        env!("CARGO_PKG_VERSION"),
        agent.config.uplink.interface,
        agent.config.prefix.mode,
        humantime::format_duration(agent.config.provider.poll_interval)
    );
    let mut ready = false;
    clock.set(Instant::now())?;
    let mut repair_at: Option<Instant> = None;
    let far = Duration::from_secs(86400 * 365);
    let mut next_watchdog = Instant::now() + watchdog.unwrap_or(far);

    loop {
        let idle = matches!(polling, Polling::Idle(_));
        let due = earliest(repair_at, agent.wake_at());
        tokio::select! {
            fired = clock.wait(), if idle => {
                fired?;
                polling = match polling {
                    Polling::Idle(poller) => match agent.poll_input(&poller).await {
                        Ok(ips) => Polling::Asking(start_poll(poller, agent.config.provider.clone(), ips)),
                        Err(e) => {
                            let host_id = poller.provider.host_id();
                            clock.set(Instant::now() + agent.finish_poll(Err(e), host_id).await)?;
                            announce(agent, &mut ready);
                            Polling::Idle(poller)
                        }
                    },
                    asking => asking,
                };
            }
            (done, result) = async {
                match &mut polling {
                    Polling::Asking(request) => request.await,
                    Polling::Idle(_) => std::future::pending().await,
                }
            }, if !idle => {
                // Events already queued are older than the answer: let them count
                // before it is applied from the expected state.
                while let Some(event) = events.try_next() {
                    match event {
                        KernelEvent::Reflex { object, errno } => agent.reflexed(object, errno),
                        event => heed(&event, agent, &mut repair_at),
                    }
                }
                let host_id = done.provider.host_id();
                polling = Polling::Idle(done);
                clock.set(Instant::now() + agent.finish_poll(result, host_id).await)?;
                if agent.health.failures == 0 {
                    // The good answer was just reconciled: a pending repair is done.
                    repair_at = None;
                }
                announce(agent, &mut ready);
            }
            event = events.next() => {
                match event {
                    Some(KernelEvent::Reflex { object, errno }) => agent.reflexed(object, errno),
                    Some(event) => {
                        agent.restore_at_once(&event).await;
                        heed(&event, agent, &mut repair_at);
                    }
                    None => {
                        warn!("kernel event stream ended; restarting it and resyncing");
                        agent.forget_expected();
                        events.restart()?;
                        repair_at.get_or_insert(Instant::now());
                    }
                }
            }
            // A repair after an event (a full pass), or the agent's own wake: a next
            // hop held back for the OS falling due, or the proxy table's look, which
            // may be all that is due (`proxy_look`).
            _ = tokio::time::sleep_until(due.unwrap_or(Instant::now() + far)), if due.is_some() => {
                if repair_at.take().is_some() {
                    agent.repair().await;
                } else {
                    agent.woken().await;
                }
            }
            control = controls.next() => match control {
                Control::Reload => {
                    notify(&[sd_notify::NotifyState::Reloading]);
                    match reload(&agent.config) {
                        Ok((config, provider)) => {
                            info!("configuration reloaded from {}", config.path.display());
                            agent.reconfigure(config);
                            agent.disarm_reflexes();
                            agent.start_advertising();
                            agent.start_docker();
                            agent.forget_expected();
                            // A poll in flight asked under the old configuration: drop it.
                            polling = Polling::Idle(Poller::new(provider));
                            clock.set(Instant::now())?;
                        }
                        Err(e) => error!("refusing the new configuration, keeping the running one: {e}"),
                    }
                    notify(&[sd_notify::NotifyState::Ready]);
                }
                Control::Stop => break,
            },
            () = crate::ra::sender::next(agent.ra.as_mut()) => {}
            report = crate::docker::engine::next(agent.docker.as_mut()) => {
                agent.docker_reported(report, &mut repair_at);
            }
            round = crate::probe::next(agent.fleet.prober.as_mut()) => {
                agent.probed(round);
                if ready {
                    notify(&[sd_notify::NotifyState::Status(&agent.summary())]);
                }
            }
            _ = tokio::time::sleep_until(next_watchdog), if watchdog.is_some() => {
                notify(&[sd_notify::NotifyState::Watchdog]);
                next_watchdog = Instant::now() + watchdog.unwrap_or(far);
            }
        }
    }
    notify(&[sd_notify::NotifyState::Stopping]);
    agent.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests;
