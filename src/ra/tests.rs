//! Router advertisements as bytes on the wire, and the book's schedule and lifetimes:
//! a prefix change deprecates the old prefix and advertises the new one fresh.

use super::*;

fn net(text: &str) -> Ipv6Net {
    text.parse().expect("prefix")
}

/// The Prefix Information options of an advertisement: (prefix, flags, valid,
/// preferred), read back from the bytes as a host reads them.
fn options(packet: &[u8]) -> Vec<(Ipv6Net, u8, u32, u32)> {
    let mut out = Vec::new();
    let mut rest = &packet[16..];
    while rest.len() >= 8 {
        let length = usize::from(rest[1]) * 8;
        assert!(length > 0 && length <= rest.len(), "malformed option");
        if rest[0] == 3 {
            let word = |at: usize| u32::from_be_bytes(rest[at..at + 4].try_into().unwrap());
            let octets: [u8; 16] = rest[16..32].try_into().unwrap();
            let prefix = Ipv6Net::new(Ipv6Addr::from(octets), rest[2]).unwrap();
            out.push((prefix, rest[3], word(4), word(8)));
        }
        rest = &rest[length..];
    }
    out
}

fn router_lifetime(packet: &[u8]) -> u16 {
    u16::from_be_bytes([packet[6], packet[7]])
}

#[test]
fn an_advertisement_is_rfc_4861_on_the_wire() {
    let packet = advertisement(
        ROUTER_LIFETIME,
        &[PrefixInfo {
            prefix: net("2001:db8:42:101::/64"),
            valid: VALID,
            preferred: PREFERRED,
        }],
    );
    assert_eq!(packet.len(), 16 + 32);
    assert_eq!(
        &packet[..6],
        &[134, 0, 0, 0, 64, 0],
        "type, code, checksum, hop limit, M/O off"
    );
    assert_eq!(router_lifetime(&packet), 1800);
    assert_eq!(
        &packet[8..16],
        &[0; 8],
        "reachable time and retrans timer unspecified"
    );
    assert_eq!(
        options(&packet),
        vec![(net("2001:db8:42:101::/64"), 0xc0, 86_400, 14_400)],
        "L and A set for a /64"
    );
    // A sub-prefix other than a /64 is on-link only: SLAAC needs 64 bits.
    let packet = advertisement(
        ROUTER_LIFETIME,
        &[PrefixInfo {
            prefix: net("2001:db8:42:101::/80"),
            valid: VALID,
            preferred: PREFERRED,
        }],
    );
    assert_eq!(options(&packet)[0].1, 0x80);
}

#[test]
fn a_solicitation_is_told_from_other_icmpv6() {
    assert!(is_solicitation(&[133, 0, 0, 0, 0, 0, 0, 0]));
    assert!(is_solicitation(&[
        133, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1
    ]));
    assert!(
        !is_solicitation(&[133, 1, 0, 0, 0, 0, 0, 0]),
        "code must be 0"
    );
    assert!(!is_solicitation(&[133, 0, 0, 0]), "too short");
    assert!(
        !is_solicitation(&[128, 0, 0, 0, 0, 0, 0, 0]),
        "an echo request"
    );
}

#[test]
fn a_prefix_change_deprecates_the_old_prefix_and_advertises_the_new_fresh() {
    let start = Instant::now();
    let mut book = Book::default();
    let old = net("2001:db8:42:101::/64");
    let new = net("2001:db8:99:ab01::/64");
    assert_eq!(
        book.update(&[(7, "br-web".into(), vec![old])], start),
        vec![7]
    );
    assert_eq!(book.due(start), vec![7], "at once");
    let first = book.packet(7, start).expect("packet");
    assert_eq!(options(&first), vec![(old, 0xc0, 86_400, 14_400)]);
    book.sent(7, start, true);
    // The same prefixes again: nothing changes, nothing is due now.
    assert!(
        book.update(&[(7, "br-web".into(), vec![old])], start)
            .is_empty()
    );
    assert!(book.due(start).is_empty());

    let change = start + Duration::from_secs(10);
    assert_eq!(
        book.update(&[(7, "br-web".into(), vec![new])], change),
        vec![7]
    );
    assert_eq!(book.due(change), vec![7], "a change goes out at once");
    let moved = book.packet(7, change).expect("packet");
    assert_eq!(router_lifetime(&moved), 1800);
    assert_eq!(
        options(&moved),
        vec![(new, 0xc0, 86_400, 14_400), (old, 0xc0, 7_200, 0)],
        "new fresh, old with preferred 0 and 2 h valid"
    );
    // An hour later the old prefix's valid lifetime has been counted down.
    let later = change + Duration::from_secs(3_600);
    let counted = book.packet(7, later).expect("packet");
    assert_eq!(options(&counted)[1], (old, 0xc0, 3_600, 0));
    // Once it ran out, it is no longer said.
    let gone = change + RETIRED_VALID;
    assert_eq!(
        options(&book.packet(7, gone).expect("packet")),
        vec![(new, 0xc0, 86_400, 14_400)]
    );
    // Back to the old prefix: fresh again, not deprecated.
    book.update(&[(7, "br-web".into(), vec![old])], gone);
    let back = book.packet(7, gone).expect("packet");
    assert_eq!(options(&back)[0], (old, 0xc0, 86_400, 14_400));
}

#[test]
fn a_bridge_no_longer_routed_stops_being_a_default_router() {
    let start = Instant::now();
    let mut book = Book::default();
    let prefix = net("2001:db8:42:101::/64");
    book.update(&[(7, "br-web".into(), vec![prefix])], start);
    assert_eq!(book.update(&[], start), vec![7]);
    let last = book.packet(7, start).expect("packet");
    assert_eq!(router_lifetime(&last), 0);
    assert_eq!(options(&last), vec![(prefix, 0xc0, 7_200, 0)]);
    assert!(
        book.packet(7, start + RETIRED_VALID).is_none(),
        "nothing left to say"
    );
    assert!(book.next_due().is_none(), "forgotten");
}

#[test]
fn solicitations_are_answered_but_not_more_than_every_three_seconds() {
    let start = Instant::now();
    let mut book = Book::default();
    book.update(
        &[(7, "br-web".into(), vec![net("2001:db8:42:101::/64")])],
        start,
    );
    book.sent(7, start, true);
    // The fast advertisements after a change run out; then one a minute.
    for n in 1..=u32::from(FAST_COUNT) {
        let at = start + FAST_INTERVAL * n;
        assert_eq!(book.next_due(), Some(at));
        book.sent(7, at, true);
    }
    let quiet = start + FAST_INTERVAL * u32::from(FAST_COUNT);
    assert_eq!(book.next_due(), Some(quiet + MAX_INTERVAL));
    // A solicitation right after an advertisement waits for MIN_DELAY.
    book.solicited(7, quiet + Duration::from_secs(1));
    assert_eq!(book.next_due(), Some(quiet + MIN_DELAY));
    book.sent(7, quiet + MIN_DELAY, true);
    // One long after is answered at once.
    let late = quiet + Duration::from_secs(30);
    book.solicited(7, late);
    assert_eq!(book.due(late), vec![7]);
    // A solicitation on a bridge routed6d does not advertise on is ignored.
    book.solicited(9, late);
    assert!(book.packet(9, late).is_none());
}

#[test]
fn a_failed_send_is_tried_again_within_a_second() {
    let start = Instant::now();
    let mut book = Book::default();
    book.update(
        &[(7, "br-web".into(), vec![net("2001:db8:42:101::/64")])],
        start,
    );
    for _ in 0..FAST_COUNT {
        book.sent(7, start, true);
    }
    book.sent(7, start, false);
    assert_eq!(book.next_due(), Some(start + Duration::from_secs(1)));
}

#[test]
fn a_bridge_that_is_gone_is_forgotten() {
    let start = Instant::now();
    let mut book = Book::default();
    book.update(
        &[(7, "br-web".into(), vec![net("2001:db8:42:101::/64")])],
        start,
    );
    book.forget(7);
    assert!(book.next_due().is_none());
    assert!(book.packet(7, start).is_none());
}

#[test]
fn an_unsolicited_neighbour_advertisement_names_the_target_and_the_uplinks_mac() {
    let target: Ipv6Addr = "2001:db8:1:0:1::100".parse().unwrap();
    let mac = [0x02, 0, 0, 0, 0, 0x0a];
    let packet = neighbour_advertisement(target, mac);
    assert_eq!(packet.len(), 32);
    assert_eq!(packet[0], 136);
    assert_eq!(
        packet[4] & 0xe0,
        0,
        "not a router, not solicited, no override"
    );
    assert_eq!(&packet[8..24], &target.octets());
    assert_eq!(&packet[24..26], &[2, 1]);
    assert_eq!(&packet[26..], &mac);
}
