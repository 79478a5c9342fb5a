use netlink_packet_core::Emitable;

use super::*;
use crate::model::{Route, RouteKind};

/// A request's payload (the bytes after the netlink header), as a notification of the
/// same object carries it.
fn payload(message: RouteNetlinkMessage) -> Vec<u8> {
    let mut bytes = vec![0; message.buffer_len()];
    message.emit(&mut bytes);
    bytes
}

const RTM_DELADDR: u16 = 21;
const RTM_DELROUTE: u16 = 25;

#[test]
fn a_removal_is_read_in_place_as_the_object_and_its_protocol() {
    let address = Address {
        ifindex: 7,
        addr: "2001:db8:42:100::1".parse().expect("addr"),
        prefix_len: 128,
        ifname: "lo".into(),
        no_prefix_route: false,
    };
    let stamped = payload(RouteNetlinkMessage::DelAddress(encode::address_message(
        &address,
        true,
        Some(126),
    )));
    assert_eq!(
        removed_object(RTM_DELADDR, &stamped),
        Some((Object::of_address(&address), 126))
    );
    let unstamped = payload(RouteNetlinkMessage::DelAddress(encode::address_message(
        &address, false, None,
    )));
    assert_eq!(
        removed_object(RTM_DELADDR, &unstamped),
        Some((Object::of_address(&address), 0)),
        "no IFA_PROTO: nobody's"
    );

    let route = Route {
        table: 1000,
        dst: "2001:db8:42:100::/64".parse().expect("net"),
        metric: 1024,
        kind: RouteKind::Unreachable,
        ifindex: None,
        ifname: None,
    };
    let removed = payload(RouteNetlinkMessage::DelRoute(encode::route_message(
        &route, 126,
    )));
    assert_eq!(
        removed_object(RTM_DELROUTE, &removed),
        Some((Object::of_route(&route), 126)),
        "a table past 255 read from RTA_TABLE"
    );
    // Additions, and what does not parse, name nothing.
    assert_eq!(removed_object(RTM_NEWROUTE, &removed), None);
    assert_eq!(removed_object(RTM_DELROUTE, &removed[..4]), None);
}
