use super::*;
use crate::model::{Address, Origin, Route, RoutedPrefix, TABLE_LOCAL, Wanted};

fn prefix(text: &str) -> Ipv6Net {
    text.parse().expect("prefix")
}

fn addr(text: &str) -> Ipv6Addr {
    text.parse().expect("address")
}

fn answer(prefixes: &[&str]) -> Assignment {
    Assignment {
        prefixes: prefixes
            .iter()
            .map(|p| RoutedPrefix {
                workload: None,
                prefix: prefix(p),
                next_hop: Some(addr("2001:db8:1::10")),
                origin: "ripv6_1".into(),
            })
            .collect(),
        ..Assignment::default()
    }
}

fn origin() -> Origin {
    std::sync::Arc::new(answer(&["2001:db8:42:100::/64"]).prefixes.remove(0))
}

fn address(text: &str, ifname: &str) -> Wanted<Address> {
    let address = Address {
        ifindex: 1,
        addr: addr(text),
        prefix_len: 128,
        ifname: ifname.into(),
        no_prefix_route: false,
    };
    Wanted::new(address, &origin())
}

#[test]
fn each_prefix_is_probed_from_an_address_of_its_own() {
    let desired = DesiredState {
        addresses: vec![
            // The next hop on the uplink lies outside every prefix: never a source.
            address("2001:db8:1::10", "eth0"),
            address("2001:db8:42:100::53", "lo"),
            address("2001:db8:42:100::1", "lo"),
            address("2001:db8:42:200::1", "lo"),
        ],
        ..DesiredState::default()
    };
    let sources = sources(
        &desired,
        Some(&answer(&[
            "2001:db8:42:100::/64",
            "2001:db8:42:200::/64",
            "2001:db8:42:300::/64",
        ])),
    );
    assert_eq!(
        sources,
        vec![
            Source {
                prefix: prefix("2001:db8:42:100::/64"),
                addr: addr("2001:db8:42:100::53"),
                freebind: false
            },
            Source {
                prefix: prefix("2001:db8:42:200::/64"),
                addr: addr("2001:db8:42:200::1"),
                freebind: false
            },
        ],
        "the /64 with nothing of routed6d's on this host is not probed"
    );
    assert!(super::sources(&desired, None).is_empty());
}

#[test]
fn an_anyip_prefix_is_probed_from_its_first_address() {
    let desired = DesiredState {
        routes: vec![Wanted::new(
            Route {
                table: TABLE_LOCAL,
                dst: prefix("2001:db8:42:100::/64"),
                metric: 1024,
                kind: RouteKind::Local,
                ifindex: Some(1),
                ifname: None,
            },
            &origin(),
        )],
        ..DesiredState::default()
    };
    assert_eq!(
        sources(&desired, Some(&answer(&["2001:db8:42:100::/64"]))),
        vec![Source {
            prefix: prefix("2001:db8:42:100::/64"),
            addr: addr("2001:db8:42:100::1"),
            freebind: true
        }]
    );
}

fn round(results: &[Result<u64, &str>]) -> Round {
    Round {
        at: SystemTime::UNIX_EPOCH,
        echoes: results
            .iter()
            .enumerate()
            .map(|(i, r)| Echo {
                prefix: prefix(&format!("2001:db8:42:{i}00::/64")),
                source: addr(&format!("2001:db8:42:{i}00::1")),
                result: r.map(Duration::from_millis).map_err(str::to_string),
            })
            .collect(),
    }
}

#[test]
fn the_journal_hears_once_when_a_streak_starts_and_once_when_it_ends() {
    let mut status = ProbeStatus::new(addr("2001:db8:ffff::1"));
    assert_eq!(status.summary(), None);
    assert_eq!(
        status.note(&round(&[Ok(3)])),
        None,
        "a first success is no news"
    );
    assert_eq!(status.reachable, Some(true));
    assert_eq!(
        status.note(&round(&[Ok(3), Err("no echo reply within 2s")])),
        Some(Turn::Unreachable),
        "one prefix without a reply is unreachable"
    );
    for _ in 0..5 {
        assert_eq!(status.note(&round(&[Err("timed out"), Err("x")])), None);
    }
    assert_eq!(status.failed_probes, 6);
    assert_eq!(status.unreachable.len(), 2);
    assert_eq!(
        status.summary().as_deref(),
        Some("probe: no reply from 2001:db8:ffff::1 (6 probe(s))")
    );
    // Nothing routed (any more): no verdict, and no streak ends or starts.
    assert_eq!(status.note(&round(&[])), None);
    assert_eq!(status.reachable, None);
    assert_eq!(
        status.note(&round(&[Ok(1), Ok(7)])),
        Some(Turn::Reachable { after: 6 })
    );
    assert_eq!(status.rtt_ms, Some(7.0));
    assert_eq!(status.failed_probes, 0);
    assert_eq!(status.note(&round(&[Ok(1), Ok(7)])), None);
    assert_eq!(
        status.summary().as_deref(),
        Some("probe: 2001:db8:ffff::1 answers")
    );
}

#[test]
fn a_first_probe_without_a_reply_starts_a_streak() {
    let mut status = ProbeStatus::new(addr("2001:db8:ffff::1"));
    assert_eq!(status.note(&round(&[Err("x")])), Some(Turn::Unreachable));
    assert!(!round(&[]).reachable());
}
