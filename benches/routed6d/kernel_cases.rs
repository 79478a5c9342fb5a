//! Cases 1–3: routed6d's kernel side (observe → diff → apply, as `reconcile` runs
//! it) against `ip -6 -batch` doing the same operations, each in a fresh private
//! network namespace with a veth pair, so runs never see each other's routes.
//!
//! The desired state is built directly (N unicast /64 routes on v0 and N/5 /128
//! addresses) rather than from a provider answer: the cases measure the kernel side.
//! Netlink requests are counted by `NetlinkKernel::request_counts`.

use std::net::Ipv6Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use ipnet::Ipv6Net;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::route::{RouteMessage, RouteProtocol};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use routed6d::kernel::Kernel;
use routed6d::kernel::netlink::NetlinkKernel;
use routed6d::kernel::socket::RouteSocket;
use routed6d::model::{
    Address, DesiredState, ObservedState, Route, RouteKind, RoutedPrefix, TABLE_MAIN, Wanted,
};
use routed6d::{plan, reconcile};

use crate::report::{Row, ms};

/// Protocol number the bench's objects carry (routed6d's default).
const PROTO: u8 = routed6d::model::DEFAULT_PROTOCOL;
/// The foreign routes of case 2 carry RTPROT_STATIC.
const FOREIGN_PROTO: &str = "static";
/// Repetitions of the bulk case (fresh namespace each); the median is reported.
const BULK_RUNS: usize = 3;
/// Reconcile passes timed in the steady-state and incremental cases.
const PASSES: usize = 21;

/// Run `f` on a thread of its own in a new network namespace with `lo` and a veth
/// pair v0/v1 up. Children (`ip`) started from that thread inherit the namespace.
pub fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: unshare(CLONE_NEWNET) moves only this thread to a new namespace.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
        for args in [
            "link set lo up",
            "link add name v0 type veth peer name v1",
            "link set v0 up",
            "link set v1 up",
        ] {
            ip(args);
        }
        f()
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// `ip ARGS` in the calling thread's namespace; its stdout.
pub fn ip(args: &str) -> String {
    let args: Vec<&str> = args.split_whitespace().collect();
    routed6d_sim::netns::run("ip", &args).unwrap_or_else(|e| panic!("{e}"))
}

/// `ip -6 -batch FILE` with `lines`; the wall time of the whole process, as a
/// script would pay it.
fn ip_batch(lines: &str) -> Duration {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), lines).expect("write batch");
    let started = Instant::now();
    let status = Command::new("ip")
        .args(["-6", "-batch"])
        .arg(file.path())
        .status()
        .expect("run ip -batch");
    let took = started.elapsed();
    assert!(status.success(), "ip -6 -batch failed");
    took
}

/// Wall time of `ip ARGS` with its output thrown away (a dump, say).
fn ip_timed(args: &str) -> Duration {
    let started = Instant::now();
    let status = Command::new("ip")
        .args(args.split_whitespace())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run ip");
    assert!(status.success(), "ip {args}");
    started.elapsed()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// v0's index in the calling thread's namespace (/sys/class/net shows the namespace
/// /sys was mounted in, not the thread's).
fn v0_index() -> u32 {
    let line = ip("-o link show v0");
    line.split(':')
        .next()
        .and_then(|i| i.trim().parse().ok())
        .expect("v0 ifindex")
}

/// Route number `i` of a set: `2001:<base>:<hi>:<lo>::/64`.
fn route_dst(base: u16, i: usize) -> Ipv6Net {
    let addr = Ipv6Addr::new(
        0x2001,
        base,
        (i >> 16) as u16,
        (i & 0xffff) as u16,
        0,
        0,
        0,
        0,
    );
    Ipv6Net::new(addr, 64).expect("prefix")
}

fn address(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(
        0x2001,
        0xdb9,
        0,
        0,
        0,
        0,
        (i >> 16) as u16,
        (i & 0xffff) as u16 + 1,
    )
}

/// N routes and N/5 addresses on v0, made for one routed prefix.
fn desired(n: usize, ifindex: u32) -> DesiredState {
    let origin = std::sync::Arc::new(RoutedPrefix {
        prefix: "2001:db8::/32".parse().expect("prefix"),
        next_hop: None,
        origin: "bench".into(),
        workload: None,
    });
    let routes = (0..n)
        .map(|i| Route {
            table: TABLE_MAIN,
            dst: route_dst(0xdb8, i),
            metric: 1024,
            kind: RouteKind::Unicast,
            ifindex: Some(ifindex),
            ifname: Some("v0".into()),
        })
        .map(|route| Wanted::new(route, &origin))
        .collect();
    let addresses = (0..n / 5)
        .map(|i| Address {
            ifindex,
            addr: address(i),
            prefix_len: 128,
            ifname: "v0".into(),
            no_prefix_route: true,
        })
        .map(|address| Wanted::new(address, &origin))
        .collect();
    DesiredState {
        routes,
        addresses,
        ..DesiredState::default()
    }
}

/// The same operations as `ip -6 -batch` lines (iproute2 6.1 cannot set IFA_PROTO, so
/// its addresses carry none).
fn batch_lines(n: usize) -> String {
    let mut lines = String::new();
    for i in 0..n / 5 {
        lines.push_str(&format!(
            "addr add {}/128 dev v0 nodad noprefixroute\n",
            address(i)
        ));
    }
    for i in 0..n {
        lines.push_str(&format!(
            "route add {} dev v0 proto {PROTO} metric 1024\n",
            route_dst(0xdb8, i)
        ));
    }
    lines
}

/// What one reconcile pass did.
struct Pass {
    took: Duration,
    ops: usize,
    writes: u64,
    dumps: u64,
}

/// One pass as `reconcile::reconcile` runs it: observe (what it needs), diff, apply.
async fn pass(kernel: &mut NetlinkKernel, want: &DesiredState) -> Pass {
    full_pass(kernel, want).await.0
}

/// `pass`, also returning the state the daemon would expect after it.
async fn full_pass(kernel: &mut NetlinkKernel, want: &DesiredState) -> (Pass, ObservedState) {
    let before = kernel.request_counts();
    let started = Instant::now();
    let (_, observed, plan) = reconcile::observe_for(kernel, &[], PROTO, false, |_| want.clone())
        .await
        .expect("observe");
    let ops = plan.ops.len();
    let outcome = reconcile::apply(kernel, plan).await;
    let took = started.elapsed();
    assert!(
        outcome.failed.is_empty(),
        "ops failed: {:?}",
        outcome.failed.first()
    );
    let expected = plan::expected_after(observed, &outcome.plan, PROTO);
    let after = kernel.request_counts();
    let pass = Pass {
        took,
        ops,
        writes: after.writes - before.writes,
        dumps: after.dumps - before.dumps,
    };
    (pass, expected)
}

/// A pass as the daemon runs it after a changed provider answer: from the state the
/// last pass left (`reconcile::apply_from`), no dump.
async fn pass_from(
    kernel: &mut NetlinkKernel,
    want: &DesiredState,
    expected: ObservedState,
) -> (Pass, ObservedState) {
    let before = kernel.request_counts();
    let started = Instant::now();
    let outcome =
        reconcile::apply_from(kernel, want, expected, PROTO, &DesiredState::default()).await;
    let took = started.elapsed();
    assert!(
        outcome.failed.is_empty() && outcome.found_present == 0,
        "ops failed or found surprises: {:?}",
        outcome.failed.first()
    );
    let after = kernel.request_counts();
    let pass = Pass {
        took,
        ops: outcome.plan.ops.len(),
        writes: after.writes - before.writes,
        dumps: after.dumps - before.dumps,
    };
    (
        pass,
        outcome
            .expected
            .expect("a clean pass leaves an expected state"),
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(mut values: Vec<f64>, p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[rank.min(values.len() - 1)]
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Owned routes in the calling thread's namespace, counted by iproute2.
fn owned_routes() -> usize {
    ip(&format!("-6 route show table main proto {PROTO}"))
        .lines()
        .count()
}

/// Case 1: an empty namespace to N routes and N/5 addresses.
pub fn bulk(n: usize, judged: bool) -> Vec<Row> {
    let mut ours = Vec::new();
    let mut writes = 0;
    for _ in 0..BULK_RUNS {
        let (took, w) = in_netns(move || {
            runtime().block_on(async move {
                let mut kernel = NetlinkKernel::new(PROTO).expect("netlink");
                let want = desired(n, v0_index());
                let done = pass(&mut kernel, &want).await;
                assert_eq!(owned_routes(), n, "routed6d left routes out");
                (done.took, done.writes)
            })
        });
        ours.push(millis(took));
        writes = w;
    }
    let lines = batch_lines(n);
    let mut theirs = Vec::new();
    for _ in 0..BULK_RUNS {
        let lines = lines.clone();
        theirs.push(millis(in_netns(move || {
            let took = ip_batch(&lines);
            assert_eq!(owned_routes(), n, "ip -batch left routes out");
            took
        })));
    }
    let (ours, theirs) = (median(ours), median(theirs));
    let row = Row::info(format!("1 bulk apply N={n}"), ms(ours), ours)
        .versus(theirs)
        .note(format!(
            "{n} routes + {} addresses; {writes} netlink writes; median of {BULK_RUNS}",
            n / 5
        ));
    let ratio = ours / theirs;
    vec![if judged {
        row.target("≤ 1.20× iproute2", ratio <= 1.2)
    } else {
        row
    }]
}

/// Cases 2 and 3 share a namespace: N owned routes (and N/5 addresses) plus N
/// foreign ones.
pub fn steady_and_incremental(n: usize, steady: bool, incremental: bool) -> Vec<Row> {
    in_netns(move || {
        let mut foreign = String::new();
        for i in 0..n {
            foreign.push_str(&format!(
                "route add {} dev v0 proto {FOREIGN_PROTO} metric 1024\n",
                route_dst(0xdba, i)
            ));
        }
        ip_batch(&foreign);
        runtime().block_on(async move {
            let mut kernel = NetlinkKernel::new(PROTO).expect("netlink");
            let want = desired(n, v0_index());
            pass(&mut kernel, &want).await;
            let mut rows = Vec::new();
            if steady {
                rows.push(steady_state(&mut kernel, &want, n).await);
            }
            if incremental {
                rows.push(incremental_change(&mut kernel, &want, n).await);
            }
            rows
        })
    })
}

/// Case 2: nothing changed; dump + diff, zero writes.
async fn steady_state(kernel: &mut NetlinkKernel, want: &DesiredState, n: usize) -> Row {
    // Each round times a pass, then its parts alone (the look at the kernel, the
    // diff) and the kernel's own share (the same dumps, unparsed), so all four see
    // the same machine: the kernel is still busy with the new addresses' MLD
    // reports for a while after the setup.
    let mut times = Vec::new();
    let mut looks = Vec::new();
    let mut diffs = Vec::new();
    let mut raws = Vec::new();
    let (mut writes, mut ops, mut dumps) = (0, 0, 0);
    for _ in 0..PASSES {
        let done = pass(kernel, want).await;
        times.push(millis(done.took));
        writes += done.writes;
        ops += done.ops;
        dumps = done.dumps;
        let started = Instant::now();
        let observed = kernel.observe_owned(&[], PROTO).await.expect("observe");
        looks.push(millis(started.elapsed()));
        let started = Instant::now();
        let plan = plan::diff(want, &observed, PROTO);
        diffs.push(millis(started.elapsed()));
        assert!(plan.is_empty());
        raws.push(raw_look().await);
    }
    let (look, diff, raw) = (median(looks), median(diffs), median(raws));
    // What the same look costs iproute2: a dump of the whole table (text thrown away).
    let dump_all = median(
        (0..5)
            .map(|_| millis(ip_timed("-6 route show table main")))
            .collect(),
    );
    let dump_owned = median(
        (0..5)
            .map(|_| millis(ip_timed(&format!("-6 route show table main proto {PROTO}"))))
            .collect(),
    );
    let p50 = median(times.clone());
    let p99 = percentile(times, 0.99);
    Row::info(format!("2 steady state N={n}+{n} foreign"), ms(p50), p50)
        .versus(dump_all)
        .target("≤ 25 ms, 0 writes", p50 <= 25.0 && writes == 0)
        .note(format!(
            "{writes} writes, {ops} ops in {PASSES} passes; {dumps} dumps/pass (links, addresses, \
             owned routes of main and local, proxy entries); look {look:.1} ms + diff {diff:.1} ms; the kernel alone \
             (the same dumps read, not parsed) {raw:.1} ms; max {p99:.1} ms; \
             iproute2 = `ip -6 route show` of all; its `proto {PROTO}` dump {dump_owned:.1} ms"
        ))
}

/// The kernel's own share of a look: the same dumps (links, IPv6 addresses, owned
/// routes of main and local) read off a socket and thrown away unparsed. No pass
/// that dumps can be faster than this.
async fn raw_look() -> f64 {
    let mut dumper = RouteSocket::open().expect("dump socket");
    let mut address = AddressMessage::default();
    address.header.family = AddressFamily::Inet6;
    let mut requests = vec![
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        RouteNetlinkMessage::GetAddress(address),
    ];
    for table in [TABLE_MAIN, routed6d::model::TABLE_LOCAL] {
        let mut route = RouteMessage::default();
        route.header.address_family = AddressFamily::Inet6;
        route.header.table = table as u8;
        route.header.protocol = RouteProtocol::from(PROTO);
        requests.push(RouteNetlinkMessage::GetRoute(route));
    }
    let started = Instant::now();
    for request in requests {
        dumper.dump(request, |_, _| {}).await.expect("raw dump");
    }
    millis(started.elapsed())
}

/// Case 3: one prefix changes among N: exactly one add and one delete, applied as
/// the daemon applies a changed answer: from the state its last pass left.
async fn incremental_change(kernel: &mut NetlinkKernel, want: &DesiredState, n: usize) -> Row {
    let mut changed = want.clone();
    changed.routes[0].object.dst = route_dst(0xdbb, 0);
    let mut times = Vec::new();
    let mut exact = true;
    let mut detail = String::new();
    let (_, mut expected) = full_pass(kernel, want).await;
    let target_of = |round: usize| {
        if round.is_multiple_of(2) {
            &changed
        } else {
            want
        }
    };
    for round in 0..PASSES {
        let target = target_of(round);
        let (done, after) = pass_from(kernel, target, expected).await;
        expected = after;
        times.push(millis(done.took));
        if done.ops != 2 || done.writes != 2 || done.dumps != 0 {
            exact = false;
            detail = format!(
                "; round {round}: {} ops, {} writes, {} dumps",
                done.ops, done.writes, done.dumps
            );
        }
    }
    // What the pass expected is what the kernel holds.
    let (check, _) = full_pass(kernel, target_of(PASSES - 1)).await;
    assert_eq!(check.ops, 0, "the expected state drifted from the kernel");
    // Back to the state case 2 measured, which the iproute2 script starts from.
    pass(kernel, want).await;
    // iproute2 told the change directly (no diff): one add, one delete.
    let old = route_dst(0xdb8, 0);
    let new = route_dst(0xdbb, 0);
    let script = median(
        (0..5)
            .map(|round| {
                let (add, del) = if round % 2 == 0 { (new, old) } else { (old, new) };
                millis(ip_batch(&format!(
                    "route add {add} dev v0 proto {PROTO} metric 1024\nroute del {del} dev v0 proto {PROTO} metric 1024\n"
                )))
            })
            .collect(),
    );
    let p50 = median(times.clone());
    let p99 = percentile(times, 0.99);
    Row::info(format!("3 incremental 1 of N={n}"), ms(p50), p50)
        .versus(script)
        .target("≤ 5 ms, 2 writes", p50 <= 5.0 && exact)
        .note(format!(
            "2 ops (add + del), {} writes and 0 dumps each pass{detail}; from the state the last pass left \
             (a full pass then checks it when the kernel announces the change); max {p99:.1} ms; \
             iproute2 = the 2 ops as a batch, no diff",
            if exact { "2" } else { "≠2" }
        ))
}
