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
