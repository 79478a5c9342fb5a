//! Slots and sub-prefixes: the same at every start and across prefix changes, refused
//! in one line when they do not fit, never on the host's own addresses.

use super::*;
use crate::config::{Config, WorkloadKind};
use std::path::Path;

fn config(extra: &str) -> Config {
    let text = format!(
        "[provider]\nkind = \"hostup\"\nvps_id = \"vps_1\"\n[uplink]\ninterface = \"eth0\"\n{extra}"
    );
    Config::from_text(Path::new("t.toml"), &text, None).expect("config")
}

fn bridge(name: &str, interface: &str, length: u8, slot: Option<u64>) -> String {
    let slot = slot.map(|s| format!("slot = {s}\n")).unwrap_or_default();
    format!(
        "[[workload]]\nname = \"{name}\"\nkind = \"bridge\"\ninterface = \"{interface}\"\nprefix_length = {length}\n{slot}"
    )
}

fn net(text: &str) -> Ipv6Net {
    text.parse().expect("prefix")
}

#[test]
fn slots_follow_config_order_from_one_around_pinned_ones() {
    let slots = assign_slots(&[
        ("a", 64, None),
        ("b", 64, Some(2)),
        ("c", 64, None),
        ("d", 64, None),
    ])
    .expect("slots");
    assert_eq!(slots, vec![1, 2, 3, 4]);
    // Mixed lengths never share addresses: a /64 at slot 1 covers the /80s of slots
    // 65536..131071, which the /80 skips.
    let slots = assign_slots(&[("wide", 64, None), ("narrow", 80, None)]).expect("slots");
    assert_eq!(slots, vec![1, 1]);
    let slots = assign_slots(&[("narrow", 80, Some(1)), ("wide", 64, None)]).expect("slots");
    assert_eq!(
        slots,
        vec![1, 1],
        "the /80 at slot 1 lies in the /64's slot 0"
    );
    let slots = assign_slots(&[("wide", 64, Some(1)), ("narrow", 80, Some(65_536))]);
    assert!(
        matches!(slots, Err(WorkloadError::Overlap { .. })),
        "{slots:?}"
    );
}

#[test]
fn slot_zero_and_overlapping_pins_are_refused() {
    assert_eq!(
        assign_slots(&[("web", 64, Some(0))]),
        Err(WorkloadError::HostSlot { name: "web".into() })
    );
    assert_eq!(
        assign_slots(&[("huge", 64, Some(u64::MAX))]),
        Err(WorkloadError::Beyond {
            name: "huge".into(),
            slot: u64::MAX,
            length: 64
        })
    );
    let e = assign_slots(&[("a", 64, Some(3)), ("b", 64, Some(3))]).expect_err("overlap");
    assert_eq!(
        e.to_string(),
        "workload \"b\" (slot 3, /64) overlaps workload \"a\""
    );
}

#[test]
fn the_same_config_gives_the_same_slots_at_every_start() {
    let text = format!(
        "{}{}{}",
        bridge("web", "br-web", 64, None),
        bridge("db", "br-db", 64, Some(7)),
        bridge("vm", "br-vm", 64, None)
    );
    let first = config(&text);
    let second = config(&text);
    let slots = |c: &Config| c.workloads.iter().map(|w| w.slot).collect::<Vec<_>>();
    assert_eq!(slots(&first), vec![1, 7, 2]);
    assert_eq!(slots(&first), slots(&second));
}

#[test]
fn a_prefix_change_keeps_each_workload_at_its_offset() {
    let c = config(&format!(
        "{}{}",
        bridge("web", "br-web", 64, None),
        bridge("db", "br-db", 64, Some(5))
    ));
    let before = place_all(&c, net("2001:db8:42:100::/56")).expect("fits");
    let after = place_all(&c, net("2001:db8:77:ff00::/56")).expect("fits");
    let prefixes = |p: &[Placed]| p.iter().map(|w| w.prefix.to_string()).collect::<Vec<_>>();
    assert_eq!(
        prefixes(&before),
        vec!["2001:db8:42:101::/64", "2001:db8:42:105::/64"]
    );
    assert_eq!(
        prefixes(&after),
        vec!["2001:db8:77:ff01::/64", "2001:db8:77:ff05::/64"]
    );
    assert_eq!(
        before[0].gateway,
        "2001:db8:42:101::1".parse::<Ipv6Addr>().unwrap()
    );
    let offset = |p: &Placed| u128::from(p.prefix.network()) - u128::from(p.routed.network());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!((b.slot, offset(b)), (a.slot, offset(a)), "{} moved", b.name);
    }
}

#[test]
fn a_workload_that_does_not_fit_is_refused_with_one_line() {
    let c = config(&bridge("web", "br-web", 64, None));
    let e = place_all(&c, net("2001:db8:42:100::/64")).expect_err("no room");
    assert_eq!(
        e.to_string(),
        "workload \"web\": prefix_length 64 is not longer than the routed prefix 2001:db8:42:100::/64: there is no room for the host's slot beside it"
    );
    let c = config(&bridge("web", "br-web", 64, Some(256)));
    let e = place_all(&c, net("2001:db8:42:100::/56")).expect_err("no room");
    assert_eq!(
        e.to_string(),
        "workload \"web\": slot 256 of /64 does not fit in the routed prefix 2001:db8:42:100::/56 (it has 256 slot(s) of that length, 1 to 255 free for workloads)"
    );
    assert!(!e.to_string().contains('\n'));
    // The last slot fits.
    let c = config(&bridge("web", "br-web", 64, Some(255)));
    let placed = place_all(&c, net("2001:db8:42:100::/56")).expect("fits");
    assert_eq!(placed[0].prefix, net("2001:db8:42:1ff::/64"));
}

#[test]
fn the_hosts_addresses_stay_out_of_every_workload() {
    // ::1 is in slot 0, never a workload's.
    let c = config(&bridge("web", "br-web", 64, None));
    let placed = place_all(&c, net("2001:db8:42:100::/56")).expect("fits");
    assert!(
        !placed[0]
            .prefix
            .contains(&place_host(placed[0].routed, Ipv6Addr::LOCALHOST))
    );
    // A host part written into slot 1 is refused.
    let c = config(&format!(
        "[prefix]\naddresses = [\"::1\", \"0:0:0:1::53\"]\n{}",
        bridge("web", "br-web", 64, None)
    ));
    let e = place_all(&c, net("2001:db8:42:100::/56")).expect_err("collides");
    assert!(matches!(e, WorkloadError::HostInside { .. }), "{e}");
    assert_eq!(c.workloads[0].kind, WorkloadKind::Bridge);
}

#[test]
fn the_parent_is_the_first_routed_prefix_with_a_next_hop() {
    let routed = |prefix: &str, hop: Option<&str>| RoutedPrefix {
        prefix: net(prefix),
        next_hop: hop.map(|h| h.parse().expect("hop")),
        origin: String::new(),
        workload: None,
    };
    let prefixes = vec![
        routed("2604:a880::1/128", None),
        routed("2001:db8:42:100::/56", Some("2001:db8::10")),
        routed("2001:db8:43::/48", Some("2001:db8::10")),
    ];
    assert_eq!(
        parent(&prefixes).map(|p| p.prefix),
        Some(net("2001:db8:42:100::/56"))
    );
    assert_eq!(parent(&prefixes[..1]), None);
}
