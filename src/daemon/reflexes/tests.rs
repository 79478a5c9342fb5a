use super::*;
use crate::daemon::restore_for;
use crate::desired::tests::{assignment, compute, config, links};
use crate::kernel::KernelEvent;

/// For every object of `desired`, the reflexes arm the add `restore_for` would make
/// of its removal, and nothing else.
fn assert_agrees_with_restore_for(desired: &DesiredState, config: &Config) {
    let armed = restorables(desired, config);
    let protocol = config.daemon.protocol;
    let removals = desired
        .addresses
        .iter()
        .map(|a| KernelEvent::Address {
            ifindex: a.ifindex,
            addr: a.addr,
            protocol,
            removed: true,
        })
        .chain(desired.routes.iter().map(|r| KernelEvent::Route {
            dst: r.dst,
            table: r.table,
            protocol,
            removed: true,
        }));
    let mut expected: Vec<(Object, Op)> = removals
        .filter_map(|event| {
            let object = Object::removed_in(&event, protocol)?;
            restore_for(&event, desired, config).map(|planned| (object, planned.op))
        })
        .collect();
    expected.dedup();
    assert_eq!(armed, expected);
}

#[test]
fn the_reflexes_arm_what_restore_for_would_put_back() {
    let routed = assignment("2001:db8:42:100::/64", "2001:db8:42::1");
    for extra in [
        "",
        "[prefix]\naddresses = [\"::1\", \"::2\"]\n",
        // The prefix route and the unreachable route share their destination: neither
        // is armed, the full pass judges them.
        "[prefix]\nmode = \"delegate\"\ninterface = \"br0\"\n",
        "next_hop = \"ensure\"\n",
    ] {
        let config = config(extra);
        let desired = compute(&config, &routed, &links());
        assert!(!desired.addresses.is_empty() || !desired.routes.is_empty());
        assert_agrees_with_restore_for(&desired, &config);
    }
}

#[test]
fn the_uplinks_place_and_shared_destinations_are_never_armed() {
    let config = config("[prefix]\nmode = \"delegate\"\ninterface = \"br0\"\n");
    let desired = compute(
        &config,
        &assignment("2001:db8:42:100::/64", "2001:db8:42::1"),
        &links(),
    );
    let armed = restorables(&desired, &config);
    assert!(
        armed.iter().all(|(_, op)| match op {
            Op::AddAddress(a) => a.ifname != "eth0",
            Op::AddRoute(r) => desired.routes.iter().filter(|o| o.dst == r.dst).count() == 1,
            _ => false,
        }),
        "{armed:?}"
    );
}
