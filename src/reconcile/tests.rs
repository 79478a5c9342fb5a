//! `observe_for`: owned routes are enough when every wanted slot is ours; a wanted
//! slot held by someone else, or a desired state derived from foreign routes, gets
//! the full picture, so conflicts are still reported.

use super::*;
use crate::kernel::fake::FakeKernel;
use crate::model::{ObservedRoute, Route, RouteKind, RoutedPrefix, TABLE_MAIN, Wanted};

const OURS: u8 = 126;
const STATIC: u8 = 4;

fn route(dst: &str) -> Route {
    Route {
        table: TABLE_MAIN,
        dst: dst.parse().expect("dst"),
        metric: 1024,
        kind: RouteKind::Unicast,
        ifindex: Some(2),
        ifname: Some("eth0".into()),
    }
}

fn kernel_with(routes: Vec<(Route, u8)>) -> FakeKernel {
    let mut kernel = FakeKernel::new(OURS, &[("lo", 1), ("eth0", 2)]);
    kernel.state.routes = routes
        .into_iter()
        .map(|(route, protocol)| ObservedRoute { route, protocol })
        .collect();
    kernel
}

fn wanting(routes: Vec<Route>) -> impl Fn(&ObservedState) -> DesiredState {
    let origin = std::sync::Arc::new(RoutedPrefix {
        workload: None,
        prefix: "2001:db8:42:100::/64".parse().expect("prefix"),
        next_hop: None,
        origin: "test".into(),
    });
    move |_| DesiredState {
        routes: routes
            .iter()
            .map(|r| Wanted::new(r.clone(), &origin))
            .collect(),
        ..DesiredState::default()
    }
}

fn run<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(future)
}

#[test]
fn steady_state_looks_only_at_owned_routes() {
    let mut kernel = kernel_with(vec![
        (route("2001:db8:42:100::/64"), OURS),
        (route("2001:db8:99::/64"), STATIC),
    ]);
    let want = wanting(vec![route("2001:db8:42:100::/64")]);
    let (_, observed, plan) =
        run(observe_for(&mut kernel, &[], OURS, false, want)).expect("observe");
    assert_eq!(kernel.dumps, 1, "one look, no full dump");
    assert!(observed.routes.iter().all(|r| r.protocol == OURS));
    assert!(plan.is_empty() && plan.conflicts.is_empty(), "{plan}");
}

#[test]
fn a_foreign_route_in_a_wanted_slot_is_still_reported() {
    let mut kernel = kernel_with(vec![(route("2001:db8:42:100::/64"), STATIC)]);
    let mut other = route("2001:db8:42:100::/64");
    other.ifindex = Some(1);
    other.ifname = Some("lo".into());
    let want = wanting(vec![other]);
    let (_, _, plan) = run(observe_for(&mut kernel, &[], OURS, false, want)).expect("observe");
    assert_eq!(kernel.dumps, 2, "a missing slot needs the full dump");
    assert!(plan.is_empty(), "nothing to do: {plan}");
    assert_eq!(plan.conflicts.len(), 1, "the foreign route is reported");
}

#[test]
fn a_desired_state_derived_from_foreign_routes_sees_them() {
    let mut kernel = kernel_with(vec![(route("2001:db8:99::/64"), STATIC)]);
    let (_, observed, _) = run(observe_for(&mut kernel, &[], OURS, true, |_| {
        DesiredState::default()
    }))
    .expect("observe");
    assert_eq!(kernel.dumps, 1);
    assert_eq!(observed.routes.len(), 1, "the foreign route is there");
}

/// A HostUp config with one bridge workload, and an answer routing a /56.
fn workload_setup() -> (Config, Assignment) {
    let config = crate::desired::tests::config(
        "[[workload]]\nname = \"web\"\nkind = \"bridge\"\ninterface = \"br-web\"\nprefix_length = 64\n",
    );
    let assignment = Assignment {
        prefixes: vec![RoutedPrefix {
            workload: None,
            prefix: "2001:db8:42:100::/56".parse().expect("prefix"),
            next_hop: Some("2001:db8::10".parse().expect("hop")),
            origin: "ripv6_1".into(),
        }],
        ..Assignment::default()
    };
    (config, assignment)
}

#[test]
fn one_pass_creates_the_bridge_and_puts_the_workload_on_it() {
    let (config, assignment) = workload_setup();
    let mut kernel = FakeKernel::new(OURS, &[("lo", 1), ("eth0", 2)]);
    let outcome = run(reconcile(
        &mut kernel,
        &config,
        &assignment,
        &DesiredState::default(),
        Moment::first(),
    ))
    .expect("pass");
    assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    let bridge = kernel.state.link_by_name("br-web").expect("bridge made");
    assert_eq!(
        bridge.alias.as_deref(),
        Some("routed6d/126 workload web"),
        "marked as routed6d's"
    );
    let owned = kernel.owned();
    assert!(
        owned.contains(&"addr 2001:db8:42:101::1/64 dev br-web noprefixroute".to_string()),
        "{owned:?}"
    );
    assert!(
        owned.contains(&"route 2001:db8:42:101::/64 dev br-web metric 1024".to_string()),
        "{owned:?}"
    );
    assert!(
        outcome
            .desired
            .sysctls
            .iter()
            .any(|s| s.key == "net/ipv6/conf/all/forwarding" && s.value == "1"),
        "workloads are forwarded to"
    );
    // Withdrawing deletes the bridge routed6d made, and nothing of an operator's.
    kernel.state.links.push(crate::model::Link {
        index: 40,
        name: "br-ops".into(),
        up: true,
        lower_up: true,
        alias: Some("the operator's".into()),
    });
    run(withdraw(&mut kernel, &config, &outcome.desired)).expect("withdraw");
    assert!(
        kernel.state.link_by_name("br-web").is_none(),
        "owned bridge deleted"
    );
    assert!(
        kernel.state.link_by_name("br-ops").is_some(),
        "foreign bridge kept"
    );
    assert!(kernel.owned().is_empty(), "{:?}", kernel.owned());
}

#[test]
fn an_existing_bridge_is_used_and_never_deleted() {
    let (config, assignment) = workload_setup();
    let mut kernel = FakeKernel::new(OURS, &[("lo", 1), ("eth0", 2), ("br-web", 3)]);
    let outcome = run(reconcile(
        &mut kernel,
        &config,
        &assignment,
        &DesiredState::default(),
        Moment::first(),
    ))
    .expect("pass");
    assert!(
        !outcome
            .plan
            .ops
            .iter()
            .any(|p| matches!(p.op, Op::AddBridge(_))),
        "{}",
        outcome.plan
    );
    assert!(kernel.owned().iter().any(|o| o.contains("dev br-web")));
    run(withdraw(&mut kernel, &config, &outcome.desired)).expect("withdraw");
    assert!(
        kernel.state.link_by_name("br-web").is_some(),
        "not routed6d's bridge"
    );
}

#[test]
fn a_bridge_is_deleted_after_what_routed6d_put_on_it() {
    let (config, assignment) = workload_setup();
    let mut kernel = FakeKernel::new(OURS, &[("lo", 1), ("eth0", 2)]);
    let outcome = run(reconcile(
        &mut kernel,
        &config,
        &assignment,
        &DesiredState::default(),
        Moment::first(),
    ))
    .expect("pass");
    let plan = crate::plan::diff(&DesiredState::default(), &kernel.state, OURS);
    let verbs: Vec<&str> = plan.ops.iter().map(|p| p.op.verb()).collect();
    assert_eq!(verbs.last(), Some(&"del-bridge"), "{verbs:?}");
    assert!(
        verbs.contains(&"del-address") && verbs.contains(&"del-route"),
        "{verbs:?}"
    );
    assert!(!outcome.desired.workloads.is_empty());
}
