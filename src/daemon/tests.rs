use super::*;
use std::collections::VecDeque;

use crate::kernel::fake::FakeKernel;
use crate::model::{
    Address, ObservedAddress, ObservedRoute, Planned, Route, RouteKind, RoutedPrefix, TABLE_MAIN,
    Wanted,
};
use crate::provider::Release;

const OURS: u8 = crate::model::DEFAULT_PROTOCOL;

/// A provider that answers from a script and counts what it was asked.
#[derive(Default)]
struct Scripted {
    answers: VecDeque<Result<Assignment, ProviderError>>,
    /// Answer when the script is exhausted.
    steady: Option<Assignment>,
    refresh_answer: Option<Assignment>,
    fetches: usize,
    refreshes: usize,
    allocations: usize,
    /// How long each fetch takes, on tokio's clock: the loop has a poll in flight
    /// meanwhile.
    latency: Duration,
    /// Called with each fetch's number (the first is 1) as its answer leaves, after
    /// `latency`: what it does reaches the loop together with the answer.
    on_answer: Option<Box<dyn FnMut(usize)>>,
}

impl Provider for Scripted {
    async fn fetch(&mut self) -> Result<Assignment, ProviderError> {
        self.fetches += 1;
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        if let Some(on_answer) = &mut self.on_answer {
            on_answer(self.fetches);
        }
        match self.answers.pop_front() {
            Some(answer) => answer,
            None => Ok(self.steady.clone().expect("script exhausted")),
        }
    }
    async fn refresh_next_hop(&mut self) -> Result<Assignment, ProviderError> {
        self.refreshes += 1;
        Ok(self.refresh_answer.clone().expect("no refresh answer"))
    }
    async fn allocate(&mut self) -> Result<Assignment, ProviderError> {
        self.allocations += 1;
        Ok(routed("2001:db8:42:100::/64", "2001:db8:42::1"))
    }
    async fn release(&mut self) -> Result<Release, ProviderError> {
        unreachable!("the daemon never releases")
    }
}

fn routed(prefix: &str, hop: &str) -> Assignment {
    Assignment {
        prefixes: vec![RoutedPrefix {
            workload: None,
            prefix: prefix.parse().expect("prefix"),
            next_hop: Some(hop.parse().expect("hop")),
            origin: "ripv6_1".into(),
        }],
        ..Assignment::default()
    }
}

fn status_error(status: u16, retry_after: Option<Duration>) -> ProviderError {
    ProviderError::Status {
        url: "http://sim/api".into(),
        status,
        code: Some("x".into()),
        request_id: Some("req_1".into()),
        detail: None,
        retry_after,
    }
}

fn transport() -> ProviderError {
    ProviderError::Transport {
        url: "http://sim/api".into(),
        message: "connection refused".into(),
    }
}

fn invalid() -> ProviderError {
    ProviderError::Invalid {
        url: "http://sim/api".into(),
        message: "allocation.prefixLength 56 disagrees with allocation.prefix".into(),
        request_id: None,
    }
}

/// An agent and its poller, polled together as the daemon does.
struct Rig {
    agent: Agent<FakeKernel>,
    poller: Poller<Scripted>,
}

impl Rig {
    async fn poll(&mut self) -> Duration {
        self.agent.poll(&mut self.poller).await
    }
}

impl std::ops::Deref for Rig {
    type Target = Agent<FakeKernel>;
    fn deref(&self) -> &Self::Target {
        &self.agent
    }
}

impl std::ops::DerefMut for Rig {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.agent
    }
}

fn agent(extra: &str, script: Scripted) -> Rig {
    let mut config = crate::desired::tests::config(extra);
    config.daemon.status_file =
        std::env::temp_dir().join(format!("routed6d-test-{}.json", rand::random::<u64>()));
    let mut agent = Agent::new(config, FakeKernel::new(OURS, &[("lo", 1), ("eth0", 2)]));
    agent.publish_status();
    Rig {
        agent,
        poller: Poller::new(script),
    }
}

fn script(answers: Vec<Result<Assignment, ProviderError>>) -> Scripted {
    Scripted {
        answers: answers.into(),
        ..Scripted::default()
    }
}

const FIRST: [&str; 3] = [
    "addr 2001:db8:42:100::1/128 dev lo",
    "addr 2001:db8:42::1/128 dev eth0",
    "route unreachable 2001:db8:42:100::/64 metric 2147483647",
];

#[tokio::test]
async fn a_good_answer_is_programmed_and_a_steady_state_costs_no_writes() {
    let mut a = agent(
        "",
        Scripted {
            steady: Some(routed("2001:db8:42:100::/64", "2001:db8:42::1")),
            ..Scripted::default()
        },
    );
    a.poll().await;
    assert_eq!(a.kernel.owned(), FIRST);
    assert_eq!(a.kernel.writes.len(), 3);
    let (dumps, requests) = (a.kernel.dumps, a.kernel.requests);
    for _ in 0..5 {
        a.poll().await;
    }
    assert_eq!(
        a.kernel.requests, requests,
        "no netlink writes in a steady state"
    );
    assert_eq!(a.kernel.dumps, dumps + 5, "one dump per poll");
    assert_eq!(a.poller.provider.fetches, 6, "one GET per poll");
}

#[tokio::test]
async fn every_kind_of_api_failure_keeps_the_last_good_state() {
    let good = routed("2001:db8:42:100::/64", "2001:db8:42::1");
    let mut a = agent(
        "",
        script(vec![
            Ok(good.clone()),
            Err(transport()),
            Err(status_error(500, None)),
            Err(status_error(503, None)),
            Err(status_error(401, None)),
            Err(status_error(403, None)),
            Err(status_error(429, Some(Duration::from_secs(120)))),
            Err(invalid()),
            Ok(good),
        ]),
    );
    a.poll().await;
    let programmed = a.kernel.owned();
    let writes = a.kernel.writes.len();
    let mut delays = Vec::new();
    for _ in 0..7 {
        delays.push(a.poll().await);
        assert_eq!(
            a.kernel.owned(),
            programmed,
            "state kept after {:?}",
            a.health.last_error
        );
        assert_eq!(
            a.kernel.writes.len(),
            writes,
            "nothing written during failures"
        );
        assert!(a.health.last_error.is_some());
    }
    assert_eq!(a.health.failures, 7);
    // Every retry at the poll's pace (the default minute, ±10 %), never sooner.
    let interval = a.config.provider.poll_interval;
    for delay in [0, 1, 2, 3, 4, 6].map(|i| delays[i]) {
        assert!(
            delay >= interval.mul_f64(0.9) && delay <= interval.mul_f64(1.1),
            "{delay:?}"
        );
    }
    // The 429's Retry-After wins over the poll's pace.
    assert!(delays[5] >= Duration::from_secs(120), "{:?}", delays[5]);
    a.poll().await;
    assert_eq!(a.health.failures, 0);
    assert_eq!(a.health.last_error, None);
    assert_eq!(a.kernel.owned(), programmed);
}

/// `n` /64s routed here, the i-th via `hop(i)`.
fn many(n: usize, hop: impl Fn(usize) -> String) -> Assignment {
    Assignment {
        prefixes: (0..n)
            .map(|i| RoutedPrefix {
                prefix: format!("2001:db8:43:{i:x}::/64").parse().expect("prefix"),
                next_hop: Some(hop(i).parse().expect("hop")),
                origin: format!("ripv6rt_{i}"),
                workload: None,
            })
            .collect(),
        ..Assignment::default()
    }
}

/// An answer over `provider.max_prefixes`, or through more than
/// `rules::MAX_NEXT_HOPS` distinct next hops, is refused whole: the kernel keeps the
/// last good state, the poll fails with one line naming the bound, and the next good
/// answer is applied (issue 14, item 9).
#[tokio::test]
async fn an_answer_over_the_bounds_keeps_the_kernel_as_it_was() {
    let good = routed("2001:db8:42:100::/64", "2001:db8:42::1");
    let mut a = agent(
        "",
        script(vec![
            Ok(good),
            Ok(many(3, |_| "2001:db8:42::1".into())),
            Ok(many(9, |i| format!("2001:db8:42::{:x}", 0x10 + i))),
            Ok(many(2, |_| "2001:db8:42::1".into())),
        ]),
    );
    a.config.provider.max_prefixes = 2;
    a.poll().await;
    let programmed = a.kernel.owned();
    assert_eq!(programmed, FIRST);
    let writes = a.kernel.writes.len();
    a.poll().await;
    assert_eq!(a.kernel.owned(), programmed);
    assert_eq!(a.kernel.writes.len(), writes, "nothing written");
    assert_eq!(
        a.health.last_error.as_deref(),
        Some(
            "provider.max_prefixes = 2: more than 2 prefixes routed to this host in one answer; refusing it"
        )
    );
    a.config.provider.max_prefixes = 64;
    a.poll().await;
    assert_eq!(a.kernel.owned(), programmed);
    assert_eq!(a.kernel.writes.len(), writes, "nothing written");
    assert_eq!(
        a.health.last_error.as_deref(),
        Some("the answer: more than 8 distinct next hops; refusing it")
    );
    a.poll().await;
    assert_eq!(a.health.last_error, None);
    assert!(
        a.kernel
            .owned()
            .contains(&"route unreachable 2001:db8:43:1::/64 metric 2147483647".to_string()),
        "{:?}",
        a.kernel.owned()
    );
}

#[tokio::test]
async fn failures_before_any_good_answer_leave_an_earlier_process_state_alone() {
    let mut a = agent(
        "",
        script(vec![Err(transport()), Err(status_error(502, None))]),
    );
    // What a previous routed6d left behind.
    a.kernel.state.addresses.push(ObservedAddress {
        address: Address {
            ifindex: 1,
            addr: "2001:db8:42:100::1".parse().expect("a"),
            prefix_len: 128,
            ifname: "lo".into(),
            no_prefix_route: false,
        },
        protocol: OURS,
    });
    a.poll().await;
    a.poll().await;
    assert!(
        a.repair().await.is_none(),
        "no repair without a good answer"
    );
    assert_eq!(a.kernel.requests, 0);
    assert_eq!(a.kernel.owned(), ["addr 2001:db8:42:100::1/128 dev lo"]);
}

#[tokio::test]
async fn a_well_formed_empty_answer_withdraws_what_is_owned() {
    let mut a = agent(
        "",
        script(vec![
            Ok(routed("2001:db8:42:100::/64", "2001:db8:42::1")),
            Ok(Assignment::default()),
        ]),
    );
    a.poll().await;
    a.kernel.state.routes.push(ObservedRoute {
        route: Route {
            table: TABLE_MAIN,
            dst: "2001:db8:99::/64".parse().expect("dst"),
            metric: 1024,
            kind: RouteKind::Unreachable,
            ifindex: None,
            ifname: None,
        },
        protocol: 4,
    });
    a.poll().await;
    assert!(a.kernel.owned().is_empty(), "{:?}", a.kernel.owned());
    assert_eq!(a.kernel.state.routes.len(), 1, "the foreign route stays");
}

#[tokio::test]
async fn a_next_hop_change_adds_the_new_one_then_removes_the_old() {
    let mut a = agent(
        "",
        script(vec![
            Ok(routed("2001:db8:42:100::/64", "2001:db8:42::1")),
            Ok(routed("2001:db8:42:100::/64", "2001:db8:42::2")),
        ]),
    );
    a.poll().await;
    let before = a.kernel.writes.len();
    a.poll().await;
    let changes: Vec<String> = a.kernel.writes[before..]
        .iter()
        .map(|o| o.to_string())
        .collect();
    assert_eq!(
        changes,
        [
            "ip -6 addr add 2001:db8:42::2/128 dev eth0 nodad",
            "ip -6 addr del 2001:db8:42::1/128 dev eth0",
        ]
    );
}

#[tokio::test]
async fn a_stale_next_hop_is_refreshed_once_when_auto() {
    let mut stale = routed("2001:db8:42:100::/64", "2001:db8:42::1");
    stale.suggested_next_hop = Some("2001:db8:42::9".parse().expect("a"));
    let mut fresh = routed("2001:db8:42:100::/64", "2001:db8:42::9");
    fresh.suggested_next_hop = Some("2001:db8:42::9".parse().expect("a"));
    let mut a = agent(
        "",
        Scripted {
            steady: Some(stale.clone()),
            refresh_answer: Some(fresh),
            ..Scripted::default()
        },
    );
    a.poll().await;
    assert_eq!(a.poller.provider.refreshes, 1);
    assert!(
        a.kernel
            .owned()
            .contains(&"addr 2001:db8:42::9/128 dev eth0".to_string())
    );
    // The provider keeps answering stale (say refresh could not help): no refresh storm.
    a.poll().await;
    a.poll().await;
    assert_eq!(a.poller.provider.refreshes, 1);

    let mut never = agent(
        "",
        Scripted {
            steady: Some(stale),
            ..Scripted::default()
        },
    );
    if let crate::config::ProviderSettings::Hostup(h) = &mut never.config.provider.settings {
        h.refresh_next_hop = RefreshNextHop::Never;
    }
    never.poll().await;
    assert_eq!(never.poller.provider.refreshes, 0);
}

#[tokio::test]
async fn allocate_is_asked_once_when_configured() {
    let mut a = agent(
        "",
        Scripted {
            steady: Some(Assignment::default()),
            ..Scripted::default()
        },
    );
    if let crate::config::ProviderSettings::Hostup(h) = &mut a.config.provider.settings {
        h.allocate = true;
    }
    a.poll().await;
    assert_eq!(a.poller.provider.allocations, 1);
    assert_eq!(a.kernel.owned(), FIRST);
    let mut off = agent(
        "",
        Scripted {
            steady: Some(Assignment::default()),
            ..Scripted::default()
        },
    );
    off.poll().await;
    assert_eq!(off.poller.provider.allocations, 0);
}

#[tokio::test]
async fn drift_is_repaired_without_asking_the_provider() {
    let mut a = agent(
        "",
        Scripted {
            steady: Some(routed("2001:db8:42:100::/64", "2001:db8:42::1")),
            ..Scripted::default()
        },
    );
    a.poll().await;
    a.kernel
        .state
        .addresses
        .retain(|o| o.address.ifname != "lo");
    a.kernel.state.routes.clear();
    let outcome = a.repair().await.expect("repaired");
    assert_eq!(outcome.applied, 2);
    assert_eq!(a.kernel.owned(), FIRST);
    assert_eq!(a.poller.provider.fetches, 1, "repair does not call the API");
}

#[tokio::test]
async fn a_restart_adopts_without_duplicates_and_drops_what_is_stale() {
    let mut first = agent(
        "",
        Scripted {
            steady: Some(routed("2001:db8:42:100::/64", "2001:db8:42::1")),
            ..Scripted::default()
        },
    );
    first.poll().await;
    let mut left_behind = first.kernel.state.clone();
    // An object of an older configuration, also owned.
    left_behind.routes.push(ObservedRoute {
        route: Route {
            table: TABLE_MAIN,
            dst: "2001:db8:77::/64".parse().expect("dst"),
            metric: 2_147_483_647,
            kind: RouteKind::Unreachable,
            ifindex: None,
            ifname: None,
        },
        protocol: OURS,
    });
    let mut second = agent(
        "",
        Scripted {
            steady: Some(routed("2001:db8:42:100::/64", "2001:db8:42::1")),
            ..Scripted::default()
        },
    );
    second.kernel.state = left_behind;
    second.poll().await;
    let ops: Vec<String> = second.kernel.writes.iter().map(|o| o.to_string()).collect();
    assert_eq!(
        ops,
        ["ip -6 route del unreachable 2001:db8:77::/64 metric 2147483647"]
    );
    assert_eq!(second.kernel.owned(), FIRST);
}

#[tokio::test]
async fn stop_keeps_or_withdraws_per_config() {
    let good = routed("2001:db8:42:100::/64", "2001:db8:42::1");
    let mut keep = agent(
        "",
        Scripted {
            steady: Some(good.clone()),
            ..Scripted::default()
        },
    );
    keep.poll().await;
    keep.stop().await;
    assert_eq!(keep.kernel.owned(), FIRST);

    let mut withdraw = agent(
        "[daemon]\non_stop = \"withdraw\"\n",
        Scripted {
            steady: Some(good),
            ..Scripted::default()
        },
    );
    withdraw.poll().await;
    withdraw.stop().await;
    assert!(withdraw.kernel.owned().is_empty());
}

#[tokio::test]
async fn a_failed_op_does_not_stop_the_others_and_is_retried() {
    let mut a = agent(
        "",
        Scripted {
            steady: Some(routed("2001:db8:42:100::/64", "2001:db8:42::1")),
            ..Scripted::default()
        },
    );
    a.kernel.failures.push_back("Permission denied".into());
    let outcome = {
        a.poll().await;
        a.repair().await.expect("second pass")
    };
    assert_eq!(
        outcome.applied, 1,
        "the failed op is retried on the next pass"
    );
    assert_eq!(a.kernel.owned(), FIRST);
}

#[tokio::test]
async fn an_unreadable_kernel_changes_nothing() {
    let mut a = agent(
        "",
        Scripted {
            steady: Some(routed("2001:db8:42:100::/64", "2001:db8:42::1")),
            ..Scripted::default()
        },
    );
    a.kernel.dump_error = Some("ENOBUFS".into());
    a.poll().await;
    assert_eq!(a.kernel.requests, 0);
    assert!(
        a.health
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("ENOBUFS"))
    );
}

/// The status file is the daemon's: an agent that does not publish (root's `once`)
/// writes none, and leaves one there as it was.
#[tokio::test]
async fn only_the_daemon_writes_the_status_file() {
    let answer = || Ok(routed("2001:db8:42:100::/64", "2001:db8:42::1"));
    let mut a = agent("", script(vec![answer(), answer()]));
    a.agent.health.publishes = false;
    a.poll().await;
    assert!(read_status(&a.config.daemon.status_file).is_none());
    std::fs::write(&a.config.daemon.status_file, "{\"pid\":1}").expect("the daemon's");
    a.poll().await;
    let kept = std::fs::read_to_string(&a.config.daemon.status_file).expect("kept");
    let _ = std::fs::remove_file(&a.config.daemon.status_file);
    assert_eq!(kept, "{\"pid\":1}");
}

#[tokio::test]
async fn the_status_file_tells_the_last_poll_and_error() {
    let mut a = agent(
        "",
        script(vec![
            Ok(routed("2001:db8:42:100::/64", "2001:db8:42::1")),
            Err(status_error(503, None)),
            Err(status_error(503, None)),
        ]),
    );
    a.poll().await;
    a.poll().await;
    let status = read_status(&a.config.daemon.status_file).expect("status file");
    assert_eq!(status.prefixes, ["2001:db8:42:100::/64 (ripv6_1)"]);
    assert_eq!(status.consecutive_failures, 1);
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("HTTP 503") && e.contains("requestId=req_1"))
    );
    assert!(
        a.summary()
            .contains("2001:db8:42:100::/64 via 2001:db8:42::1; last poll failed")
    );
    let _ = std::fs::remove_file(&a.config.daemon.status_file);
    // Written through no link: one planted at the name a fixed temporary file would
    // have (status.tmp) leads nowhere, the file it points at stays as it was.
    let path = a.config.daemon.status_file.clone();
    let target = path.with_extension("target");
    std::fs::write(&target, "not yours").expect("target");
    std::os::unix::fs::symlink(&target, path.with_extension("tmp")).expect("symlink");
    a.poll().await;
    assert_eq!(
        std::fs::read_to_string(&target).expect("target"),
        "not yours"
    );
    // Read through no link either: a status file elsewhere, linked in, is not read.
    std::fs::rename(&path, &target).expect("move the status away");
    std::os::unix::fs::symlink(&target, &path).expect("symlink");
    assert!(read_status(&target).is_some());
    assert!(read_status(&path).is_none(), "read through a symlink");
    for leftover in [path.clone(), path.with_extension("tmp"), target] {
        let _ = std::fs::remove_file(leftover);
    }
}

#[test]
fn a_failed_poll_is_retried_at_the_poll_pace_never_faster() {
    let minute = Duration::from_secs(60);
    assert_eq!(next_delay(minute, None, 0.0), Duration::from_secs(54));
    assert_eq!(next_delay(minute, None, 1.0), Duration::from_secs(66));
    assert_eq!(
        next_delay(minute, Some(Duration::from_secs(90)), 0.0),
        Duration::from_secs(90)
    );
    assert_eq!(
        next_delay(minute, Some(Duration::from_secs(5)), 0.0),
        Duration::from_secs(54),
        "a short Retry-After never makes a poll come sooner"
    );
    assert_eq!(
        next_delay(minute, Some(Duration::from_secs(86400)), 0.0),
        RETRY_AFTER_MAX
    );
}

#[test]
fn only_events_touching_owned_state_are_relevant() {
    let config = crate::desired::tests::config("");
    let links = [
        crate::model::Link {
            alias: None,
            index: 1,
            name: "lo".into(),
            up: true,
            lower_up: true,
        },
        crate::model::Link {
            alias: None,
            index: 2,
            name: "eth0".into(),
            up: true,
            lower_up: true,
        },
    ];
    let hop: Ipv6Addr = "2001:db8:42::1".parse().expect("hop");
    let places = [(
        hop,
        crate::next_hop::Place::Add(crate::next_hop::Form::HOST),
    )]
    .into();
    let desired = crate::desired::compute(
        &config,
        &routed("2001:db8:42:100::/64", "2001:db8:42::1"),
        &links,
        &places,
    );
    let ip = |s: &str| s.parse().expect("ip");
    let relevant = |e: KernelEvent| is_relevant(&e, &desired, &config);
    assert!(relevant(KernelEvent::Resync));
    assert!(relevant(KernelEvent::Link {
        index: 9,
        name: "eth0".into(),
        up: true,
        removed: false
    }));
    assert!(!relevant(KernelEvent::Link {
        index: 9,
        name: "veth7".into(),
        up: true,
        removed: false
    }));
    assert!(relevant(KernelEvent::Address {
        ifindex: 1,
        addr: ip("2001:db8:42:100::1"),
        protocol: OURS,
        removed: true
    }));
    // A foreign next hop going away matters: routed6d must add its own.
    assert!(relevant(KernelEvent::Address {
        ifindex: 2,
        addr: ip("2001:db8:42::1"),
        protocol: 0,
        removed: true
    }));
    assert!(!relevant(KernelEvent::Address {
        ifindex: 2,
        addr: ip("2001:db8:5::1"),
        protocol: 0,
        removed: true
    }));
    assert!(relevant(KernelEvent::Route {
        dst: "2001:db8:42:100::/64".parse().expect("n"),
        table: 254,
        protocol: 4,
        removed: false
    }));
    assert!(!relevant(KernelEvent::Route {
        dst: "2001:db8:5::/64".parse().expect("n"),
        table: 254,
        protocol: 4,
        removed: true
    }));
    assert!(relevant(KernelEvent::Route {
        dst: "2001:db8:5::/64".parse().expect("n"),
        table: 254,
        protocol: OURS,
        removed: true
    }));
}

// A changed answer is applied from the state the last pass left (no dump), and only
// while nothing has said the kernel moved; the unchanged answer of every poll is
// still checked against a dump.

#[tokio::test]
async fn a_changed_answer_is_applied_from_the_expected_state_without_a_dump() {
    let mut a = agent(
        "",
        script(vec![
            Ok(routed("2001:db8:42:100::/64", "2001:db8:42::1")),
            Ok(routed("2001:db8:42:100::/64", "2001:db8:42::2")),
            Ok(routed("2001:db8:42:100::/64", "2001:db8:42::2")),
        ]),
    );
    a.poll().await;
    assert!(
        a.pass.expected.is_some(),
        "a clean pass leaves an expected state"
    );
    let (dumps, writes) = (a.kernel.dumps, a.kernel.writes.len());
    a.poll().await;
    assert_eq!(a.kernel.dumps, dumps, "the change needed no dump");
    assert_eq!(a.kernel.writes.len(), writes + 2, "one add, one delete");
    let second = a.kernel.owned();
    assert!(second.contains(&"addr 2001:db8:42::2/128 dev eth0".to_string()));
    assert!(!second.contains(&"addr 2001:db8:42::1/128 dev eth0".to_string()));
    // What the agent expects is what a dump shows.
    let seen = a.kernel.observe(&[]).await.expect("observe");
    let expected = a.pass.expected.clone().expect("still expected");
    assert_eq!(sorted_text(&expected), sorted_text(&seen));
    // The same answer again: a full look, no writes.
    a.poll().await;
    assert_eq!(
        a.kernel.dumps,
        dumps + 2,
        "an unchanged answer is checked by a dump"
    );
    assert_eq!(a.kernel.writes.len(), writes + 2);
}

#[tokio::test]
async fn a_kernel_change_since_the_last_pass_makes_the_next_change_dump() {
    let mut a = agent(
        "",
        script(vec![
            Ok(routed("2001:db8:42:100::/64", "2001:db8:42::1")),
            Ok(routed("2001:db8:42:100::/64", "2001:db8:42::2")),
        ]),
    );
    a.poll().await;
    // Someone removes the unreachable route; the daemon hears of it.
    a.kernel.state.routes.clear();
    a.forget_expected();
    let dumps = a.kernel.dumps;
    a.poll().await;
    assert!(a.kernel.dumps > dumps, "no expected state: a full pass");
    assert!(
        a.kernel
            .owned()
            .contains(&"route unreachable 2001:db8:42:100::/64 metric 2147483647".to_string()),
        "the full pass put the route back: {:?}",
        a.kernel.owned()
    );
}

#[tokio::test]
async fn an_object_the_expected_state_missed_sends_the_change_to_a_full_pass() {
    let mut a = agent(
        "",
        script(vec![
            Ok(routed("2001:db8:42:100::/64", "2001:db8:42::1")),
            Ok(routed("2001:db8:77:100::/64", "2001:db8:42::1")),
        ]),
    );
    a.poll().await;
    // A foreign route appears in the slot the next answer wants, unannounced.
    let foreign = Route {
        table: TABLE_MAIN,
        dst: "2001:db8:77:100::/64".parse().expect("dst"),
        metric: u32::MAX >> 1,
        kind: RouteKind::Unicast,
        ifindex: Some(2),
        ifname: Some("eth0".into()),
    };
    a.kernel.state.routes.push(ObservedRoute {
        route: foreign.clone(),
        protocol: 4,
    });
    let dumps = a.kernel.dumps;
    let outcome = {
        a.poll().await;
        a.status()
    };
    assert!(a.kernel.dumps > dumps, "the surprise was checked by a dump");
    assert_eq!(
        outcome.conflicts.len(),
        1,
        "and reported: {:?}",
        outcome.conflicts
    );
    assert!(
        a.kernel
            .state
            .routes
            .iter()
            .any(|o| o.protocol == 4 && o.route == foreign),
        "the foreign route is untouched"
    );
    assert!(
        a.pass.expected.is_none(),
        "a conflict leaves nothing to expect"
    );
}

#[tokio::test]
async fn a_change_with_a_failed_op_still_knows_which_next_hop_is_missing() {
    let mut a = agent(
        "next_hop = \"check\"\n",
        script(vec![
            Ok(routed("2001:db8:42:100::/64", "2001:db8:42::1")),
            Ok(routed("2001:db8:43:100::/64", "2001:db8:42::1")),
        ]),
    );
    let hop: Ipv6Addr = "2001:db8:42::1".parse().expect("hop");
    a.poll().await;
    assert_eq!(a.said.missing_next_hops, [hop]);
    assert!(a.pass.expected.is_some());
    a.kernel.failures.push_back("injected".into());
    a.poll().await;
    assert!(
        a.pass.expected.is_none(),
        "a failed op leaves nothing to expect"
    );
    assert_eq!(
        a.said.missing_next_hops,
        [hop],
        "still missing: a failed op does not make it look back"
    );
}

fn sorted_text(state: &ObservedState) -> Vec<String> {
    let mut lines: Vec<String> = state
        .addresses
        .iter()
        .map(|a| format!("{} {}", a.address, a.protocol))
        .chain(
            state
                .routes
                .iter()
                .map(|r| format!("{} {}", r.route, r.protocol)),
        )
        .collect();
    lines.sort();
    lines
}

/// The OS's own address at the next hop (networkd's `Address=…/64`), protocol 0.
fn os_next_hop(hop: &str) -> ObservedAddress {
    ObservedAddress {
        address: Address {
            ifindex: 2,
            addr: hop.parse().expect("hop"),
            prefix_len: 64,
            ifname: "eth0".into(),
            no_prefix_route: false,
        },
        protocol: 0,
    }
}

fn set_uplink(a: &mut Rig, up: bool) {
    let eth0 = a.kernel.state.links.iter_mut().find(|l| l.name == "eth0");
    let eth0 = eth0.expect("eth0");
    eth0.up = up;
    eth0.lower_up = up;
    if !up {
        // The kernel flushes a link's IPv6 addresses when it goes down.
        a.kernel.state.addresses.retain(|o| o.address.ifindex != 2);
    }
}

fn owns_on_eth0(a: &Rig) -> Vec<String> {
    a.kernel
        .owned()
        .into_iter()
        .filter(|l| l.ends_with("dev eth0"))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_os_next_hop_is_left_to_the_os_through_a_flap_and_stood_in_for_after_the_grace() {
    let hop = "2001:db8:42::10";
    let mut a = agent(
        "",
        Scripted {
            steady: Some(routed("2001:db8:42:100::/64", hop)),
            ..Scripted::default()
        },
    );
    a.kernel.state.addresses.push(os_next_hop(hop));
    a.poll().await;
    assert!(owns_on_eth0(&a).is_empty(), "{:?}", a.kernel.owned());
    assert_eq!(a.wake_at(), None);

    // Down: the OS's address is flushed; nothing is added to a link that is down.
    set_uplink(&mut a, false);
    a.repair().await;
    assert!(owns_on_eth0(&a).is_empty(), "{:?}", a.kernel.owned());
    assert_eq!(a.wake_at(), None, "a down link is waited for, not timed");

    // Up: the OS has the grace to put its address back.
    set_uplink(&mut a, true);
    a.repair().await;
    assert!(owns_on_eth0(&a).is_empty(), "{:?}", a.kernel.owned());
    let grace = a.config.uplink.next_hop_grace;
    assert_eq!(a.wake_at(), Some(Instant::now() + grace));

    // Back after 5 s (a slow manager): the OS's address, untouched.
    tokio::time::advance(Duration::from_secs(5)).await;
    a.kernel.state.addresses.push(os_next_hop(hop));
    let writes = a.kernel.writes.len();
    a.repair().await;
    assert_eq!(a.kernel.writes.len(), writes, "{:?}", a.kernel.writes);
    assert_eq!(a.wake_at(), None);

    // Gone for good (an operator's `ip addr del`): routed6d stands in once the grace
    // has passed, with the OS's prefix length so the on-link route comes back.
    a.kernel.state.addresses.retain(|o| o.address.ifindex != 2);
    a.repair().await;
    assert!(owns_on_eth0(&a).is_empty());
    tokio::time::advance(grace - Duration::from_millis(1)).await;
    a.repair().await;
    assert!(owns_on_eth0(&a).is_empty(), "added before the grace");
    tokio::time::advance(Duration::from_millis(1)).await;
    a.repair().await;
    assert_eq!(owns_on_eth0(&a), [format!("addr {hop}/64 dev eth0")]);
    assert_eq!(a.wake_at(), None);

    // The OS re-adds its address: the kernel merges it into routed6d's (same form),
    // and its protocol becomes the OS's. routed6d uses it and writes nothing.
    for o in &mut a.kernel.state.addresses {
        if o.address.ifindex == 2 {
            o.protocol = 0;
        }
    }
    let writes = a.kernel.writes.len();
    a.repair().await;
    assert_eq!(a.kernel.writes.len(), writes, "{:?}", a.kernel.writes);
    assert!(owns_on_eth0(&a).is_empty());
}

#[tokio::test(start_paused = true)]
async fn routed6d_own_next_hop_is_repaired_at_once_but_never_on_a_down_link() {
    let mut a = agent(
        "",
        Scripted {
            steady: Some(routed("2001:db8:42:100::/64", "2001:db8:42::1")),
            ..Scripted::default()
        },
    );
    a.poll().await;
    assert_eq!(a.kernel.owned(), FIRST);
    a.kernel.state.addresses.retain(|o| o.address.ifindex != 2);
    a.repair().await;
    assert_eq!(a.kernel.owned(), FIRST, "repaired without a grace");
    set_uplink(&mut a, false);
    a.repair().await;
    assert!(owns_on_eth0(&a).is_empty(), "{:?}", a.kernel.owned());
    set_uplink(&mut a, true);
    a.repair().await;
    assert_eq!(a.kernel.owned(), FIRST, "back as soon as the link is");
}

// The loop itself (`serve`), driven as the daemon runs but without root: a fake
// kernel shared with the test (which plays the OS and the operator), kernel events
// and controls through channels, and tokio's paused clock.

/// The fake kernel, shared between the agent inside the loop and the test.
#[derive(Clone, Default)]
struct SharedKernel(std::rc::Rc<std::cell::RefCell<FakeKernel>>);

impl SharedKernel {
    /// Run `op` on the fake kernel without holding the RefCell across an await.
    async fn with<T>(&self, op: impl AsyncFnOnce(&mut FakeKernel) -> T) -> T {
        let mut kernel = std::mem::take(&mut *self.0.borrow_mut());
        let result = op(&mut kernel).await;
        *self.0.borrow_mut() = kernel;
        result
    }
}

impl Kernel for SharedKernel {
    async fn observe(
        &mut self,
        keys: &[String],
    ) -> Result<ObservedState, crate::kernel::KernelError> {
        self.with(async |k| k.observe(keys).await).await
    }
    async fn apply_op(
        &mut self,
        op: &crate::model::Op,
    ) -> Result<crate::kernel::Applied, crate::kernel::KernelError> {
        self.with(async |k| k.apply_op(op).await).await
    }
    async fn interface_addresses(
        &mut self,
        name: &str,
    ) -> Result<Vec<IpAddr>, crate::kernel::KernelError> {
        self.with(async |k| k.interface_addresses(name).await).await
    }
}

/// Kernel events from the test; a restart takes the next channel, if the test left one.
struct ChannelEvents {
    events: tokio::sync::mpsc::UnboundedReceiver<KernelEvent>,
    after_restart: Option<tokio::sync::mpsc::UnboundedReceiver<KernelEvent>>,
    restarts: std::rc::Rc<std::cell::Cell<usize>>,
}

impl surroundings::Events for ChannelEvents {
    async fn next(&mut self) -> Option<KernelEvent> {
        self.events.recv().await
    }
    fn try_next(&mut self) -> Option<KernelEvent> {
        self.events.try_recv().ok()
    }
    fn restart(&mut self) -> Result<(), DaemonError> {
        self.restarts.set(self.restarts.get() + 1);
        let next = self.after_restart.take().expect("no second event stream");
        self.events = next;
        Ok(())
    }
}

/// The poll timer on tokio's (paused) clock, one-shot like the timerfd.
struct SleepClock(std::cell::Cell<Instant>);

impl surroundings::Clock for SleepClock {
    fn set(&mut self, deadline: Instant) -> Result<(), DaemonError> {
        self.0.set(deadline);
        Ok(())
    }
    async fn wait(&self) -> Result<(), DaemonError> {
        tokio::time::sleep_until(self.0.get()).await;
        self.0
            .set(Instant::now() + Duration::from_secs(86400 * 365));
        Ok(())
    }
}

struct ChannelControls(tokio::sync::mpsc::UnboundedReceiver<surroundings::Control>);

impl surroundings::Controls for ChannelControls {
    async fn next(&mut self) -> surroundings::Control {
        match self.0.recv().await {
            Some(control) => control,
            None => std::future::pending().await,
        }
    }
}

/// The test's side of a running loop.
struct Outside {
    kernel: SharedKernel,
    events: tokio::sync::mpsc::UnboundedSender<KernelEvent>,
    /// The event stream after a restart.
    events_after_restart: tokio::sync::mpsc::UnboundedSender<KernelEvent>,
    controls: tokio::sync::mpsc::UnboundedSender<surroundings::Control>,
    restarts: std::rc::Rc<std::cell::Cell<usize>>,
}

impl Outside {
    /// Ask the loop to stop, as SIGTERM does.
    fn stop(&self) {
        self.controls
            .send(surroundings::Control::Stop)
            .expect("stop");
    }

    fn owned(&self) -> Vec<String> {
        self.kernel.0.borrow().owned()
    }

    /// Change the kernel as the OS would, and say so as the kernel does.
    fn os_changes(&self, change: impl FnOnce(&mut FakeKernel), event: KernelEvent) {
        change(&mut self.kernel.0.borrow_mut());
        let _ = self.events.send(event);
    }
}

/// A loop ready to serve, and the test's side of it.
struct Looping {
    agent: Agent<SharedKernel>,
    provider: Scripted,
    surroundings: Surroundings<ChannelEvents, SleepClock, ChannelControls>,
    outside: Outside,
}

/// A loop whose kernel holds the OS's next hop `hop`, the provider routing the prefix
/// to it.
fn looping(extra: &str, hop: &str) -> Looping {
    let mut config = crate::desired::tests::config(extra);
    config.daemon.status_file =
        std::env::temp_dir().join(format!("routed6d-test-{}.json", rand::random::<u64>()));
    let kernel = SharedKernel::default();
    *kernel.0.borrow_mut() = FakeKernel::new(OURS, &[("lo", 1), ("eth0", 2)]);
    kernel.0.borrow_mut().state.addresses.push(os_next_hop(hop));
    let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
    let (after_tx, after) = tokio::sync::mpsc::unbounded_channel();
    let (controls_tx, controls) = tokio::sync::mpsc::unbounded_channel();
    let restarts = std::rc::Rc::new(std::cell::Cell::new(0));
    Looping {
        agent: Agent::new(config, kernel.clone()),
        provider: Scripted {
            steady: Some(routed("2001:db8:42:100::/64", hop)),
            ..Scripted::default()
        },
        surroundings: Surroundings {
            events: ChannelEvents {
                events,
                after_restart: Some(after),
                restarts: restarts.clone(),
            },
            clock: SleepClock(std::cell::Cell::new(Instant::now())),
            controls: ChannelControls(controls),
            watchdog: None,
        },
        outside: Outside {
            kernel,
            events: events_tx,
            events_after_restart: after_tx,
            controls: controls_tx,
            restarts,
        },
    }
}

fn no_reload(_: &Config) -> Result<(Config, Scripted), String> {
    Err("not in this test".into())
}

fn address_event(hop: &str, removed: bool) -> KernelEvent {
    KernelEvent::Address {
        ifindex: 2,
        addr: hop.parse().expect("hop"),
        protocol: 0,
        removed,
    }
}

#[tokio::test(start_paused = true)]
async fn the_loop_wakes_for_the_grace_deadline_without_any_event() {
    let hop = "2001:db8:42::10";
    let Looping {
        mut agent,
        provider,
        surroundings,
        outside,
    } = looping("next_hop_grace = \"3s\"\n", hop);
    let script = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            outside.owned().iter().any(|l| l.contains("dev lo")),
            "{:?}",
            outside.owned()
        );
        // An operator deletes the OS's address; the OS does not put it back.
        outside.os_changes(
            |k| k.state.addresses.retain(|o| o.address.ifindex != 2),
            address_event(hop, true),
        );
        tokio::time::sleep(Duration::from_millis(2900)).await;
        assert!(
            !outside.owned().iter().any(|l| l.ends_with("dev eth0")),
            "stood in before the grace: {:?}",
            outside.owned()
        );
        // No event from here on: only the loop's own wake-up can stand in.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            outside.owned().contains(&format!("addr {hop}/64 dev eth0")),
            "no stand-in after the grace: {:?}",
            outside.owned()
        );
        outside.stop();
    };
    let (served, ()) = tokio::join!(serve(&mut agent, provider, surroundings, no_reload), script);
    served.expect("served");
}

#[tokio::test(start_paused = true)]
async fn the_loop_repairs_after_the_event_stream_ended_and_stops_on_request() {
    let hop = "2001:db8:42::10";
    let Looping {
        mut agent,
        provider,
        surroundings,
        outside,
    } = looping("[daemon]\non_stop = \"withdraw\"\n", hop);
    let Outside {
        kernel,
        events,
        events_after_restart,
        controls,
        restarts,
    } = outside;
    let script = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!kernel.0.borrow().owned().is_empty());
        // routed6d's objects go while the event stream ends (its only sender is
        // dropped): the loop starts a new stream and a resync repairs them, long
        // before the next poll (a minute away).
        {
            let mut k = kernel.0.borrow_mut();
            k.state.routes.clear();
            k.state.addresses.retain(|o| o.address.ifname != "lo");
        }
        drop(events);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(restarts.get(), 1);
        let repaired = kernel.0.borrow().owned();
        assert!(
            repaired.iter().any(|l| l.contains("dev lo"))
                && repaired.iter().any(|l| l.contains("unreachable")),
            "{repaired:?}"
        );
        controls.send(surroundings::Control::Stop).expect("stop");
    };
    let (served, ()) = tokio::join!(serve(&mut agent, provider, surroundings, no_reload), script);
    served.expect("served");
    drop(events_after_restart);
    assert!(kernel.0.borrow().owned().is_empty(), "on_stop = withdraw");
    assert!(
        kernel
            .0
            .borrow()
            .state
            .addresses
            .iter()
            .any(|o| o.protocol == 0),
        "the OS's next hop stays"
    );
}

/// Routed6d's own next hop `hop` leaves the uplink (an operator's `ip addr del`), with
/// the kernel's event: done from inside a `Scripted::on_answer`, the event is queued
/// when the loop gets the answer. Unlike the objects on lo, this one is not put back
/// at once on its event (the uplink's place), only by a full pass.
fn own_next_hop_deleted(outside: &Outside, hop: &str) -> impl Fn() + 'static {
    let kernel = outside.kernel.clone();
    let events = outside.events.clone();
    let addr: Ipv6Addr = hop.parse().expect("hop");
    move || {
        (kernel.0.borrow_mut().state.addresses).retain(|o| o.address.addr != addr);
        let _ = events.send(KernelEvent::Address {
            ifindex: 2,
            addr,
            protocol: OURS,
            removed: true,
        });
    }
}

#[tokio::test(start_paused = true)]
async fn an_event_queued_before_a_changed_answer_has_the_answer_applied_from_a_full_look() {
    let hop = "2001:db8:42::1";
    let Looping {
        mut agent,
        mut provider,
        surroundings,
        outside,
    } = looping("", hop);
    // No OS address at the next hop: routed6d adds and owns it (FIRST).
    outside.kernel.0.borrow_mut().state.addresses.clear();
    // The prefix is renumbered, same next hop; while the second poll is on its way,
    // the next hop is deleted by hand, and the loop gets that event with the answer.
    let renumbered = routed("2001:db8:42:200::/64", hop);
    provider.answers = [
        Ok(routed("2001:db8:42:100::/64", hop)),
        Ok(renumbered.clone()),
    ]
    .into();
    provider.steady = Some(renumbered);
    let answered = std::rc::Rc::new(tokio::sync::Notify::new());
    let delete = own_next_hop_deleted(&outside, hop);
    let told = answered.clone();
    provider.on_answer = Some(Box::new(move |fetch| {
        if fetch == 2 {
            delete();
            told.notify_one();
        }
    }));
    let script = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(outside.owned(), FIRST);
        answered.notified().await;
        // Well inside the event's 20 ms debounce, so only the answer's own pass can
        // have put the next hop back: what the last pass left said it was there, so
        // applying the answer from it would have left it missing until the debounce.
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(
            outside.owned(),
            [
                "addr 2001:db8:42:200::1/128 dev lo",
                "addr 2001:db8:42::1/128 dev eth0",
                "route unreachable 2001:db8:42:200::/64 metric 2147483647",
            ],
            "the answer was applied from what the last pass left"
        );
        outside.stop();
    };
    let (served, ()) = tokio::join!(serve(&mut agent, provider, surroundings, no_reload), script);
    served.expect("served");
}

#[tokio::test(start_paused = true)]
async fn a_reload_during_a_poll_drops_its_answer_and_polls_at_once_under_the_new_configuration() {
    let hop = "2001:db8:42::10";
    let Looping {
        mut agent,
        mut provider,
        surroundings,
        outside,
    } = looping("", hop);
    // The old provider takes 10 s to answer (2001:db8:42:100::/64): the first poll
    // is in flight until then.
    provider.latency = Duration::from_secs(10);
    // The new configuration puts ::2 of the prefix on lo, and the new provider routes
    // another prefix, at once: the kernel shows which configuration and which
    // provider a pass worked from.
    let reload = |_: &Config| {
        let config = crate::desired::tests::config("[prefix]\naddresses = [\"::2\"]\n");
        let provider = Scripted {
            steady: Some(routed("2001:db8:42:200::/64", hop)),
            ..Scripted::default()
        };
        Ok((config, provider))
    };
    let new = [
        "addr 2001:db8:42:200::2/128 dev lo",
        "route unreachable 2001:db8:42:200::/64 metric 2147483647",
    ];
    let script = async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(outside.owned().is_empty(), "{:?}", outside.owned());
        outside
            .controls
            .send(surroundings::Control::Reload)
            .expect("reload");
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(
            outside.owned(),
            new,
            "not polled at once under the new configuration"
        );
        // Past the moment the old poll would have answered: its answer never reaches
        // the kernel, under either configuration.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(outside.owned(), new);
        let old = (outside.kernel.0.borrow().writes.iter())
            .any(|op| op.to_string().contains("2001:db8:42:100:"));
        assert!(!old, "{:?}", outside.kernel.0.borrow().writes);
        outside.stop();
    };
    let (served, ()) = tokio::join!(serve(&mut agent, provider, surroundings, reload), script);
    served.expect("served");
}

#[tokio::test(start_paused = true)]
async fn a_refused_reload_keeps_the_running_configuration_and_the_poll_in_flight() {
    let hop = "2001:db8:42::10";
    let Looping {
        mut agent,
        mut provider,
        surroundings,
        outside,
    } = looping("", hop);
    provider.latency = Duration::from_secs(10);
    let asked = std::rc::Rc::new(std::cell::Cell::new(0));
    let count = asked.clone();
    provider.on_answer = Some(Box::new(move |fetch| count.set(fetch)));
    let refuse = |_: &Config| Err("t.toml:3: unknown key `prefixes`".to_string());
    let script = async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        outside
            .controls
            .send(surroundings::Control::Reload)
            .expect("reload");
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(outside.owned().is_empty(), "{:?}", outside.owned());
        // The poll asked before the reload answers when it would have, and its answer
        // is applied: the running configuration and provider are still the loop's.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            outside.owned(),
            [
                "addr 2001:db8:42:100::1/128 dev lo",
                "route unreachable 2001:db8:42:100::/64 metric 2147483647",
            ]
        );
        assert_eq!(asked.get(), 1, "asked again");
        outside.stop();
    };
    let (served, ()) = tokio::join!(serve(&mut agent, provider, surroundings, refuse), script);
    served.expect("served");
}

#[tokio::test(start_paused = true)]
async fn an_event_during_a_failing_poll_is_repaired_from_the_last_good_answer_at_the_poll_pace() {
    let hop = "2001:db8:42::1";
    let Looping {
        mut agent,
        mut provider,
        surroundings,
        outside,
    } = looping("", hop);
    // No OS address at the next hop: routed6d adds and owns it (FIRST).
    outside.kernel.0.borrow_mut().state.addresses.clear();
    let interval = agent.config.provider.poll_interval;
    // The second poll fails; the next hop is deleted by hand while it is on its way,
    // and the loop gets that event with the failure.
    provider.answers = [Ok(routed("2001:db8:42:100::/64", hop)), Err(transport())].into();
    let answers = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let failed = std::rc::Rc::new(tokio::sync::Notify::new());
    let delete = own_next_hop_deleted(&outside, hop);
    let (log, told) = (answers.clone(), failed.clone());
    provider.on_answer = Some(Box::new(move |fetch| {
        log.borrow_mut().push(Instant::now());
        if fetch == 2 {
            delete();
            told.notify_one();
        }
    }));
    let lo: Ipv6Addr = "2001:db8:42:100::1".parse().expect("addr");
    let script = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(outside.owned(), FIRST);
        let writes = outside.kernel.0.borrow().writes.len();
        failed.notified().await;
        let failed_at = Instant::now();
        // The failure does not cancel the repair the event asked for.
        tokio::time::sleep(DEBOUNCE + Duration::from_millis(1)).await;
        assert_eq!(outside.owned(), FIRST, "not repaired while the API fails");
        // Another removal between failed polls is put back at once, as ever.
        tokio::time::sleep(Duration::from_secs(10)).await;
        outside.os_changes(
            |k| k.state.addresses.retain(|o| o.address.addr != lo),
            KernelEvent::Address {
                ifindex: 1,
                addr: lo,
                protocol: OURS,
                removed: true,
            },
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(outside.owned(), FIRST);
        // Put back, nothing withdrawn: only adds since the good answer.
        let since: Vec<String> = outside.kernel.0.borrow().writes[writes..]
            .iter()
            .map(|op| op.to_string())
            .collect();
        assert_eq!(
            since,
            [
                "ip -6 addr add 2001:db8:42::1/128 dev eth0 nodad",
                "ip -6 addr add 2001:db8:42:100::1/128 dev lo nodad",
            ]
        );
        // The poll after the failure comes at the poll's pace (±10 %), the events and
        // their repairs notwithstanding.
        tokio::time::sleep_until(failed_at + interval.mul_f64(0.9) - Duration::from_millis(1))
            .await;
        assert_eq!(answers.borrow().len(), 2, "polled again too soon");
        tokio::time::sleep_until(failed_at + interval.mul_f64(1.1) + Duration::from_millis(1))
            .await;
        assert_eq!(answers.borrow().len(), 3, "not polled again");
        outside.stop();
    };
    let (served, ()) = tokio::join!(serve(&mut agent, provider, surroundings, no_reload), script);
    served.expect("served");
}

#[test]
fn only_routed6d_own_objects_away_from_the_uplink_are_put_back_at_once() {
    let config = crate::desired::tests::config("");
    let hop = "2001:db8:42::1";
    let lo = Address {
        ifindex: 1,
        addr: "2001:db8:42:100::1".parse().expect("addr"),
        prefix_len: 128,
        ifname: "lo".into(),
        no_prefix_route: false,
    };
    let next_hop = Address {
        ifindex: 2,
        addr: hop.parse().expect("hop"),
        prefix_len: 128,
        ifname: "eth0".into(),
        no_prefix_route: false,
    };
    let unreachable = Route {
        table: TABLE_MAIN,
        dst: "2001:db8:42:100::/64".parse().expect("net"),
        metric: crate::desired::UNREACHABLE_METRIC,
        kind: RouteKind::Unreachable,
        ifindex: None,
        ifname: None,
    };
    let copy = Route {
        table: TABLE_MAIN,
        dst: "::/0".parse().expect("net"),
        metric: 1023,
        kind: RouteKind::Via {
            gateway: "fe80::1".parse().expect("gw"),
            src: Some(lo.addr),
        },
        ifindex: Some(2),
        ifname: Some("eth0".into()),
    };
    let origin = std::sync::Arc::new(RoutedPrefix {
        workload: None,
        prefix: "2001:db8:42:100::/64".parse().expect("prefix"),
        next_hop: Some(next_hop.addr),
        origin: "ripv6_1".into(),
    });
    let wanted = |a: &Address| Wanted::new(a.clone(), &origin);
    let desired = DesiredState {
        addresses: vec![wanted(&lo), wanted(&next_hop)],
        routes: vec![
            Wanted::new(unreachable.clone(), &origin),
            Wanted::new(copy.clone(), &origin),
        ],
        ..DesiredState::default()
    };
    let gone = |a: &Address, protocol: u8| KernelEvent::Address {
        ifindex: a.ifindex,
        addr: a.addr,
        protocol,
        removed: true,
    };
    let route_gone = |r: &Route, protocol: u8| KernelEvent::Route {
        dst: r.dst,
        table: r.table,
        protocol,
        removed: true,
    };
    let restore = |e: KernelEvent| restore_for(&e, &desired, &config);
    // The restore carries the routed prefix its object is made for, for its log line.
    let made_for = |op| Some(Planned::new(op, Some(origin.clone())));
    assert_eq!(
        restore(gone(&lo, OURS)),
        made_for(Op::AddAddress(lo.clone()))
    );
    assert_eq!(
        restore(route_gone(&unreachable, OURS)),
        made_for(Op::AddRoute(unreachable.clone()))
    );
    assert_eq!(restore(gone(&lo, 0)), None, "someone else's");
    assert_eq!(restore(gone(&next_hop, OURS)), None, "the uplink's place");
    assert_eq!(
        restore(route_gone(&copy, OURS)),
        None,
        "derived from others'"
    );
    assert_eq!(
        restore(KernelEvent::Address {
            ifindex: 1,
            addr: lo.addr,
            protocol: OURS,
            removed: false
        }),
        None,
        "an addition"
    );
    assert_eq!(restore(KernelEvent::Resync), None);
}

#[tokio::test(start_paused = true)]
async fn an_owned_address_is_back_before_the_debounce_and_a_burst_is_bounded() {
    // Forty host parts: forty owned addresses on lo.
    let parts: Vec<String> = (1..=40).map(|n| format!("\"::{n:x}\"")).collect();
    let Looping {
        mut agent,
        provider,
        surroundings,
        outside,
    } = looping(
        &format!("[prefix]\naddresses = [{}]\n", parts.join(", ")),
        "2001:db8:42::10",
    );
    let on_lo = |outside: &Outside| {
        outside
            .kernel
            .0
            .borrow()
            .state
            .addresses
            .iter()
            .filter(|o| o.protocol == OURS && o.address.ifname == "lo")
            .count()
    };
    let delete_on_lo = |outside: &Outside, how_many: usize| {
        let gone: Vec<Ipv6Addr> = {
            let mut kernel = outside.kernel.0.borrow_mut();
            let lo: Vec<Ipv6Addr> = kernel
                .state
                .addresses
                .iter()
                .filter(|o| o.address.ifname == "lo")
                .map(|o| o.address.addr)
                .take(how_many)
                .collect();
            kernel
                .state
                .addresses
                .retain(|o| !lo.contains(&o.address.addr));
            lo
        };
        for addr in gone {
            let _ = outside.events.send(KernelEvent::Address {
                ifindex: 1,
                addr,
                protocol: OURS,
                removed: true,
            });
        }
    };
    let script = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(on_lo(&outside), 40);
        let writes = outside.kernel.0.borrow().writes.len();
        delete_on_lo(&outside, 1);
        // Well inside the 20 ms debounce: already back, with one write.
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(on_lo(&outside), 40);
        assert_eq!(outside.kernel.0.borrow().writes.len(), writes + 1);
        // The debounced full pass that follows finds nothing left to do.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(outside.kernel.0.borrow().writes.len(), writes + 1);

        // All forty at once: a burst's share one by one, the rest by the full pass.
        delete_on_lo(&outside, 40);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(on_lo(&outside), FAST_RESTORES_PER_BURST as usize);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(on_lo(&outside), 40);
        assert_eq!(outside.kernel.0.borrow().writes.len(), writes + 41);
        outside.stop();
    };
    let (served, ()) = tokio::join!(serve(&mut agent, provider, surroundings, no_reload), script);
    served.expect("served");
}

#[tokio::test(start_paused = true)]
async fn a_restart_while_the_os_address_is_away_still_waits_for_the_os() {
    let hop = "2001:db8:42::10";
    let steady = || Scripted {
        steady: Some(routed("2001:db8:42:100::/64", hop)),
        ..Scripted::default()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let memory = dir.path().join("next-hops.json");
    let mut first = agent("", steady());
    first.remember_next_hops_in(memory.clone());
    first.kernel.state.addresses.push(os_next_hop(hop));
    first.poll().await;
    assert!(memory.exists(), "the OS's next hop is kept for a restart");

    // The OS's address goes, and routed6d restarts before the OS puts it back.
    let mut second = agent("", steady());
    second.remember_next_hops_in(memory.clone());
    second.poll().await;
    assert!(
        owns_on_eth0(&second).is_empty(),
        "raced the OS after a restart: {:?}",
        second.kernel.owned()
    );
    let grace = second.config.uplink.next_hop_grace;
    tokio::time::advance(grace).await;
    second.repair().await;
    assert_eq!(
        owns_on_eth0(&second),
        [format!("addr {hop}/64 dev eth0")],
        "stands in with the OS's form, remembered across the restart"
    );

    // Without the memory (another boot, or none kept), a first start adds the /128.
    let mut fresh = agent("", steady());
    fresh.poll().await;
    assert_eq!(owns_on_eth0(&fresh), [format!("addr {hop}/128 dev eth0")]);
}

/// The log lines of this thread's tracing events, as an operator reads them.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Lines at `level` (INFO, WARN, …) containing `needle`.
    fn count(&self, level: &str, needle: &str) -> usize {
        let text = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8_lossy(&text)
            .lines()
            .filter(|l| l.contains(level) && l.contains(needle))
            .count()
    }
}

/// Capture the log lines (info and up) of this thread until the guard is dropped.
fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .without_time()
        .with_max_level(tracing::Level::INFO)
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

#[tokio::test(start_paused = true)]
async fn a_deleter_every_10ms_for_a_minute_gets_bounded_repairs_then_full_speed_again() {
    let (logs, _guard) = capture_logs();
    let Looping {
        mut agent,
        provider,
        surroundings,
        outside,
    } = looping("", "2001:db8:42::10");
    // No poll after the first: every write below is a repair.
    agent.config.provider.poll_interval = Duration::from_secs(3600);
    let addr: Ipv6Addr = "2001:db8:42:100::1".parse().expect("addr");
    let present = |outside: &Outside| {
        outside
            .kernel
            .0
            .borrow()
            .state
            .addresses
            .iter()
            .any(|o| o.address.addr == addr && o.protocol == OURS)
    };
    let delete = |outside: &Outside| {
        outside.os_changes(
            |k| k.state.addresses.retain(|o| o.address.addr != addr),
            KernelEvent::Address {
                ifindex: 1,
                addr,
                protocol: OURS,
                removed: true,
            },
        );
    };
    let counts = |outside: &Outside| {
        let kernel = outside.kernel.0.borrow();
        (kernel.writes.len(), kernel.dumps)
    };
    let script = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(present(&outside), "{:?}", outside.owned());
        let (writes, dumps) = counts(&outside);

        // Whenever the address is there, it is gone 10 ms later, for a minute.
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if present(&outside) {
                delete(&outside);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let repairs: Vec<String> = outside.kernel.0.borrow().writes[writes..]
            .iter()
            .map(|o| o.to_string())
            .collect();
        let other = repairs
            .iter()
            .find(|r| *r != "ip -6 addr add 2001:db8:42:100::1/128 dev lo nodad");
        assert_eq!(other, None, "only the address was written");
        // 64 at once; then after 0.1, 0.2, 0.4 … 6.4 s; then one every 10 s.
        assert_eq!(repairs.len(), 64 + 7 + 4, "repairs in a minute of fighting");
        // A full pass (one dump) after each removal and at each hold's end, no more.
        let passes = counts(&outside).1 - dumps;
        assert!(passes <= 2 * repairs.len(), "{passes} passes");
        assert_eq!(logs.count("WARN", "was removed"), 1);
        assert_eq!(
            logs.count(
                "WARN",
                "address 2001:db8:42:100::1/128 dev lo was removed 65 times in 640ms, each time soon after routed6d put it back"
            ),
            1,
            "the warning names the object and the fight"
        );

        // The deleter stopped: back within the longest hold.
        tokio::time::sleep(damping::MAX_HOLD).await;
        assert!(present(&outside), "not back after the fight");
        // Once it has stood calm, a single removal is repaired at once again.
        tokio::time::sleep(damping::CALM).await;
        let (writes, _) = counts(&outside);
        delete(&outside);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(present(&outside), "not repaired at full speed");
        assert_eq!(counts(&outside).0, writes + 1);
        assert_eq!(logs.count("INFO", "has stayed in place for 20s"), 1);
        assert_eq!(logs.count("WARN", "was removed"), 1);
        outside.stop();
    };
    let (served, ()) = tokio::join!(serve(&mut agent, provider, surroundings, no_reload), script);
    served.expect("served");
}

#[tokio::test]
async fn a_workload_is_placed_shown_in_status_and_follows_a_prefix_change() {
    let mut a = agent(
        "[[workload]]\nname = \"web\"\nkind = \"bridge\"\ninterface = \"br-web\"\nprefix_length = 64\n",
        script(vec![
            Ok(routed("2001:db8:42:100::/56", "2001:db8:42::1")),
            Ok(routed("2001:db8:77:ff00::/56", "2001:db8:42::1")),
        ]),
    );
    a.poll().await;
    assert!(
        a.kernel
            .owned()
            .contains(&"addr 2001:db8:42:101::1/64 dev br-web noprefixroute".to_string()),
        "{:?}",
        a.kernel.owned()
    );
    let status = a.status();
    assert_eq!(
        status.workloads,
        vec![
            "workload web (bridge br-web): slot 1 = 2001:db8:42:101::/64 of 2001:db8:42:100::/56, gateway 2001:db8:42:101::1"
        ]
    );
    assert_eq!(status.workload_error, None);
    let bridge = a.kernel.state.link_by_name("br-web").expect("bridge").index;
    assert_eq!(
        advertised(&a.pass.desired),
        vec![(
            bridge,
            "br-web".to_string(),
            vec!["2001:db8:42:101::/64".parse().unwrap()]
        )]
    );

    a.poll().await;
    let owned = a.kernel.owned();
    assert!(
        owned.contains(&"route 2001:db8:77:ff01::/64 dev br-web metric 1024".to_string()),
        "{owned:?}"
    );
    assert!(
        !owned.iter().any(|o| o.contains("2001:db8:42:101")),
        "{owned:?}"
    );
    assert_eq!(
        advertised(&a.pass.desired),
        vec![(
            bridge,
            "br-web".to_string(),
            vec!["2001:db8:77:ff01::/64".parse().unwrap()]
        )]
    );
    let _ = std::fs::remove_file(&a.config.daemon.status_file);
}

/// `kind = "onlink"` through the agent: a proxy entry on the uplink for each address in
/// use behind the workload's bridge, none before, withdrawn when the neighbour fails,
/// and on stop only routed6d's go (an operator's entry stays). Issue 17, item 4.
#[tokio::test]
async fn on_link_workloads_are_proxied_while_in_use() {
    use crate::model::{Neighbour, ObservedProxy, Proxy};
    use crate::provider::onlink::OnLink;
    let text = "[provider]\nkind = \"onlink\"\nprefix = \"2001:db8:1::/64\"\n[uplink]\ninterface = \"eth0\"\n[daemon]\non_stop = \"withdraw\"\n[[workload]]\nname = \"web\"\nkind = \"bridge\"\ninterface = \"br-web\"\nprefix_length = 80\n";
    let config = Config::from_text(std::path::Path::new("t.toml"), text, None).expect("config");
    let prefix = match config.provider.settings {
        crate::config::ProviderSettings::Onlink(prefix) => prefix,
        _ => panic!("not onlink"),
    };
    let mut agent = Agent::new(config, FakeKernel::new(OURS, &[("lo", 1), ("eth0", 2)]));
    let mut poller = Poller::new(OnLink::new(prefix, "eth0", std::path::Path::new("t.toml")));
    agent.poll(&mut poller).await;
    let bridge = agent
        .kernel
        .state
        .link_by_name("br-web")
        .expect("the bridge")
        .index;
    assert_eq!(
        agent.kernel.owned(),
        [
            "addr 2001:db8:1:0:1::1/80 dev br-web noprefixroute",
            "route 2001:db8:1:0:1::/80 dev br-web metric 1024",
        ],
        "nothing for the uplink's own /64, no proxy while nobody is there"
    );
    let workload = "2001:db8:1:0:1::100".parse().expect("ip");
    let operator = ObservedProxy {
        proxy: Proxy {
            ifindex: 2,
            addr: "2001:db8:1::abcd".parse().expect("ip"),
            ifname: "eth0".into(),
        },
        protocol: 0,
    };
    agent.kernel.state.proxies.push(operator.clone());
    agent.kernel.state.neighbours.push(Neighbour {
        ifindex: bridge,
        addr: workload,
        state: 0x02,
    });
    agent.repair().await;
    assert!(
        agent
            .kernel
            .owned()
            .contains(&"proxy 2001:db8:1:0:1::100 dev eth0".to_string()),
        "{:?}",
        agent.kernel.owned()
    );
    // The neighbour fails: its entry goes, the operator's stays.
    agent.kernel.state.neighbours[0].state = 0x20;
    agent.repair().await;
    assert!(!agent.kernel.owned().iter().any(|l| l.starts_with("proxy")));
    assert_eq!(agent.kernel.state.proxies, std::slice::from_ref(&operator));
    // Back, then stop with on_stop = "withdraw".
    agent.kernel.state.neighbours[0].state = 0x04;
    agent.repair().await;
    assert_eq!(agent.kernel.state.proxies.len(), 2);
    agent.stop().await;
    assert!(
        agent.kernel.owned().is_empty(),
        "{:?}",
        agent.kernel.owned()
    );
    assert_eq!(agent.kernel.state.proxies, [operator]);
}

/// The watcher's reflexes put an object back before the loop hears of it, and a pass
/// may arm it again before the answer to its last reflex is heard: the removal that
/// starts a fight can then arrive as a reflex's answer. Its warning is still said,
/// once, and the object is no longer free to be put back at once.
#[tokio::test(start_paused = true)]
async fn a_fight_that_starts_among_reflexes_is_still_warned_about_once() {
    let (logs, _guard) = capture_logs();
    let mut a = agent(
        "",
        Scripted {
            steady: Some(routed("2001:db8:42:100::/64", "2001:db8:42::1")),
            ..Scripted::default()
        },
    );
    a.poll().await;
    let on_lo = a
        .pass
        .desired
        .addresses
        .iter()
        .find(|w| w.ifname == "lo")
        .map(|w| Object::of_address(w))
        .expect("an address on lo");
    let added = "ip -6 addr add 2001:db8:42:100::1/128 dev lo";
    let programmed = logs.count("INFO", added);
    for _ in 0..=damping::FREE_REPAIRS {
        tokio::time::advance(Duration::from_millis(10)).await;
        a.reflexed(on_lo, None);
    }
    assert_eq!(logs.count("WARN", "was removed"), 1);
    assert_eq!(
        logs.count("INFO", added) - programmed,
        usize::try_from(damping::FREE_REPAIRS).expect("small") + 1,
        "each reflex's write is told"
    );
    assert!(!a.repairs.fights.free(&on_lo));
}

/// Issue 17, item 5, through the agent: the kernel announces no proxy entry's removal,
/// so while entries are wanted the agent wakes every `LOOK_EVERY` for a look at the
/// proxy table alone (writing nothing while all is in place), puts a deleted entry
/// back with a full pass, and keeps no timer at all once none is wanted, or once the
/// kernel was heard announcing one.
#[tokio::test(start_paused = true)]
async fn a_deleted_proxy_entry_is_found_by_the_look_between_passes() {
    use crate::model::Neighbour;
    use crate::provider::onlink::OnLink;
    use proxy_look::LOOK_EVERY;
    let text = "[provider]\nkind = \"onlink\"\nprefix = \"2001:db8:1::/64\"\npoll_interval = \"1h\"\n[uplink]\ninterface = \"eth0\"\n[[workload]]\nname = \"web\"\nkind = \"bridge\"\ninterface = \"br-web\"\nprefix_length = 80\n";
    let config = Config::from_text(std::path::Path::new("t.toml"), text, None).expect("config");
    let prefix = match config.provider.settings {
        crate::config::ProviderSettings::Onlink(prefix) => prefix,
        _ => panic!("not onlink"),
    };
    let mut agent = Agent::new(config, FakeKernel::new(OURS, &[("lo", 1), ("eth0", 2)]));
    let mut poller = Poller::new(OnLink::new(prefix, "eth0", std::path::Path::new("t.toml")));
    agent.poll(&mut poller).await;
    assert_eq!(agent.wake_at(), None, "no entry wanted: no timer");
    let bridge = agent
        .kernel
        .state
        .link_by_name("br-web")
        .expect("the bridge")
        .index;
    agent.kernel.state.neighbours.push(Neighbour {
        ifindex: bridge,
        addr: "2001:db8:1:0:1::100".parse().expect("ip"),
        state: 0x02,
    });
    agent.repair().await;
    let entry = "proxy 2001:db8:1:0:1::100 dev eth0".to_string();
    assert!(agent.kernel.owned().contains(&entry));
    assert_eq!(agent.wake_at(), Some(Instant::now() + LOOK_EVERY));

    // All in place: the look dumps once and writes nothing.
    tokio::time::advance(LOOK_EVERY).await;
    let (dumps, writes) = (agent.kernel.dumps, agent.kernel.writes.len());
    assert!(
        agent.woken().await.is_none(),
        "no pass when all is in place"
    );
    assert_eq!(
        (agent.kernel.dumps, agent.kernel.writes.len()),
        (dumps + 1, writes)
    );
    assert_eq!(agent.wake_at(), Some(Instant::now() + LOOK_EVERY));

    // Deleted by hand, unannounced: the next look puts it back.
    agent.kernel.state.proxies.clear();
    tokio::time::advance(LOOK_EVERY).await;
    assert!(agent.woken().await.is_some(), "a full pass");
    assert!(agent.kernel.owned().contains(&entry));

    // A kernel heard announcing a proxy entry needs no look.
    let echo = KernelEvent::Neighbour {
        ifindex: 2,
        addr: "2001:db8:1:0:1::100".parse().expect("ip"),
        state: 0,
        proxy: true,
        removed: false,
    };
    let mut repair_at = None;
    heed(&echo, &mut agent, &mut repair_at);
    assert_eq!(repair_at, None, "its own add echoed is no drift");
    assert_eq!(agent.wake_at(), None);
    agent.repair().await;
    assert_eq!(agent.wake_at(), None, "for good");
    // Its removal announced is repaired after the debounce, as any other.
    let removed = KernelEvent::Neighbour {
        ifindex: 2,
        addr: "2001:db8:1:0:1::100".parse().expect("ip"),
        state: 0,
        proxy: true,
        removed: true,
    };
    heed(&removed, &mut agent, &mut repair_at);
    assert!(repair_at.is_some());

    // The workload goes: nothing wanted, no timer (a fresh agent, not yet told).
    let mut fresh = Agent::new(agent.config.clone(), std::mem::take(&mut agent.kernel));
    fresh.kernel.state.neighbours[0].state = 0x20;
    fresh.pass.last_good = agent.pass.last_good.clone();
    fresh.repair().await;
    assert!(!fresh.kernel.owned().iter().any(|l| l.starts_with("proxy")));
    assert_eq!(fresh.wake_at(), None);
}
