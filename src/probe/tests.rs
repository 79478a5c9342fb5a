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
                connect: None,
            })
            .collect(),
    }
}

#[test]
fn the_journal_hears_once_when_a_streak_starts_and_once_when_it_ends() {
    let mut status = ProbeStatus::new(addr("2001:db8:ffff::1"), None);
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
    let mut status = ProbeStatus::new(addr("2001:db8:ffff::1"), None);
    assert_eq!(status.note(&round(&[Err("x")])), Some(Turn::Unreachable));
    assert!(!round(&[]).reachable());
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// One prefix's echo and connect.
fn both(echo: Result<u64, &str>, connect: Connect) -> Echo {
    Echo {
        prefix: prefix("2001:db8:42:100::/64"),
        source: addr("2001:db8:42:100::1"),
        result: echo.map(ms).map_err(str::to_string),
        connect: Some(connect),
    }
}

#[test]
fn a_prefix_answers_when_either_method_does() {
    let timeout = || Connect::Failed("no TCP answer within 2s".into());
    // ICMP filtered on the way: the reset or the handshake still came back.
    assert_eq!(
        both(Err("no echo reply within 2s"), Connect::Refused(ms(4))).answer(),
        Some(ms(4))
    );
    assert_eq!(
        both(Err("no echo reply within 2s"), Connect::Established(ms(5))).answer(),
        Some(ms(5))
    );
    // TCP filtered (or its port silently dropped): the echo is enough.
    assert_eq!(both(Ok(3), timeout()).answer(), Some(ms(3)));
    // Both: the quicker one.
    assert_eq!(both(Ok(3), Connect::Refused(ms(2))).answer(), Some(ms(2)));
    // Neither: no answer, and both reasons told.
    let lost = both(Err("no echo reply within 2s"), timeout());
    assert_eq!(lost.answer(), None);
    assert_eq!(
        lost.why(),
        "no echo reply within 2s; no TCP answer within 2s"
    );
    let unreachable = both(
        Err("no echo reply within 2s"),
        Connect::Failed("TCP connect: Network is unreachable (os error 101)".into()),
    );
    assert_eq!(unreachable.answer(), None, "an unreachable is no answer");

    // The round: every prefix by either method.
    let mut other = both(Ok(1), timeout());
    other.prefix = prefix("2001:db8:42:200::/64");
    let round = Round {
        at: SystemTime::UNIX_EPOCH,
        echoes: vec![both(Err("x"), Connect::Refused(ms(7))), other.clone()],
    };
    assert!(round.reachable());
    assert_eq!(round.slowest(), Some(ms(7)));
    assert_eq!(round.failed().count(), 0);
    let round = Round {
        at: SystemTime::UNIX_EPOCH,
        echoes: vec![lost, other],
    };
    assert!(!round.reachable(), "one prefix answered neither way");
    assert_eq!(round.failed().count(), 1);
}

#[test]
fn each_connect_result_has_its_own_bounded_label() {
    let labels: Vec<_> = [
        Connect::Established(ms(1)),
        Connect::Refused(ms(1)),
        Connect::Failed("x".into()),
    ]
    .iter()
    .map(Connect::label)
    .collect();
    assert_eq!(labels, crate::metrics::CONNECT_RESULTS);
}

#[test]
fn status_shows_each_method_and_the_verdict_of_either() {
    let target = addr("2001:db8:ffff::1");
    let mut status = ProbeStatus::new(target, Some(443));
    assert_eq!(status.tcp.as_ref().and_then(|t| t.port), Some(443));
    assert_eq!(status.tcp.as_ref().and_then(|t| t.answered), None);
    let filtered = Round {
        at: SystemTime::UNIX_EPOCH,
        echoes: vec![both(
            Err("no echo reply within 2s"),
            Connect::Refused(ms(2)),
        )],
    };
    assert_eq!(status.note(&filtered), None, "a first success is no news");
    assert_eq!(status.reachable, Some(true));
    assert_eq!(status.icmp.answered, Some(false));
    assert_eq!(
        status.icmp.results,
        vec!["2001:db8:42:100::/64 from 2001:db8:42:100::1: no echo reply within 2s"]
    );
    let tcp = status.tcp.clone().expect("tcp");
    assert_eq!(tcp.answered, Some(true));
    assert_eq!(
        tcp.results,
        vec!["2001:db8:42:100::/64 from 2001:db8:42:100::1: refused (reset) in 2.0 ms"]
    );
    assert!(status.unreachable.is_empty());
    assert_eq!(
        status.summary().as_deref(),
        Some("probe: 2001:db8:ffff::1 answers (TCP only, no echo reply)")
    );

    // The route is gone: neither answers.
    let lost = Round {
        at: SystemTime::UNIX_EPOCH,
        echoes: vec![both(
            Err("no echo reply within 2s"),
            Connect::Failed("no TCP answer within 2s".into()),
        )],
    };
    assert_eq!(status.note(&lost), Some(Turn::Unreachable));
    assert_eq!(status.reachable, Some(false));
    assert_eq!(status.tcp.as_ref().and_then(|t| t.answered), Some(false));
    assert_eq!(
        status.unreachable,
        vec![
            "2001:db8:42:100::/64 from 2001:db8:42:100::1: no echo reply within 2s; no TCP answer within 2s"
        ]
    );

    // Both answer: the plain summary, and a status file without the new fields
    // (an older daemon's) still reads.
    let fine = Round {
        at: SystemTime::UNIX_EPOCH,
        echoes: vec![both(Ok(1), Connect::Established(ms(1)))],
    };
    assert_eq!(status.note(&fine), Some(Turn::Reachable { after: 1 }));
    assert_eq!(
        status.summary().as_deref(),
        Some("probe: 2001:db8:ffff::1 answers")
    );
    let old: ProbeStatus =
        serde_json::from_str(r#"{"target":"2001:db8:ffff::1","reachable":true}"#).expect("json");
    assert_eq!(old.tcp, None);
    assert_eq!(old.icmp, MethodStatus::default());
    let json = serde_json::to_value(&status).expect("json");
    assert_eq!(json["tcp"]["port"], 443);
    assert_eq!(json["tcp"]["answered"], true);
    assert_eq!(json["icmp"]["answered"], true);
    assert!(json["icmp"].get("port").is_none());
}

/// A connect on the loopback: a listener is `established`, a closed port `refused`
/// (the kernel's reset); neither needs privilege.
#[tokio::test]
async fn a_connect_counts_a_handshake_and_a_reset_alike() {
    let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
        eprintln!("SKIPPED: no IPv6 loopback here");
        return;
    };
    let port = listener.local_addr().expect("addr").port();
    let source = Source {
        prefix: prefix("::1/128"),
        addr: Ipv6Addr::LOCALHOST,
        freebind: false,
    };
    let timeout = Duration::from_secs(2);
    let open = tcp_connect(&source, Ipv6Addr::LOCALHOST, port, timeout).await;
    assert!(matches!(open, Connect::Established(_)), "{open:?}");
    // Closed at once, with nothing sent.
    let (mut accepted, from) = listener.accept().await.expect("accept");
    assert_eq!(from.ip(), std::net::IpAddr::V6(Ipv6Addr::LOCALHOST));
    let mut rest = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut accepted, &mut rest)
        .await
        .expect("read");
    assert!(rest.is_empty(), "the probe sent {rest:?}");
    drop(listener);
    let closed = tcp_connect(&source, Ipv6Addr::LOCALHOST, port, timeout).await;
    assert!(matches!(closed, Connect::Refused(_)), "{closed:?}");
    // A source that is not on this host: no connect, and why.
    let elsewhere = Source {
        addr: addr("2001:db8:42:100::1"),
        ..source
    };
    let refused = tcp_connect(&elsewhere, Ipv6Addr::LOCALHOST, port, timeout).await;
    assert!(
        matches!(&refused, Connect::Failed(why) if why.starts_with("cannot connect from 2001:db8:42:100::1: ")),
        "{refused:?}"
    );
}
