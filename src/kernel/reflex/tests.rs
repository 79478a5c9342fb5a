use std::net::Ipv6Addr;

use super::*;

const PROTO: u8 = 126;

fn address(last: u16) -> Object {
    Object::Address {
        ifindex: 1,
        addr: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last),
    }
}

/// A netlink header's worth of bytes and a marker, standing for a request.
fn request(marker: u8) -> Vec<u8> {
    let mut bytes = vec![0; 16];
    bytes.push(marker);
    bytes
}

fn sequence_of(request: &[u8]) -> u32 {
    u32::from_ne_bytes(request[SEQUENCE_AT].try_into().expect("four bytes"))
}

fn armed(objects: &[Object]) -> Reflexes {
    let mut reflexes = Reflexes {
        protocol: PROTO,
        ..Reflexes::default()
    };
    for (n, object) in objects.iter().enumerate() {
        reflexes.arm(*object, request(n as u8));
    }
    reflexes.refill(32);
    reflexes
}

#[test]
fn an_armed_object_fires_once_with_its_own_request_and_a_fresh_sequence() {
    let mut reflexes = armed(&[address(1), address(2)]);
    let first = reflexes.fire(address(2), PROTO).expect("armed: fires");
    assert_eq!(first.last(), Some(&1), "the request armed for that object");
    assert_ne!(sequence_of(&first), 0, "stamped with a sequence number");
    assert!(reflexes.in_flight(&address(2)));
    assert!(!reflexes.is_armed(&address(2)), "fired once, then spent");
    assert_eq!(reflexes.fire(address(2), PROTO), None);

    let second = reflexes.fire(address(1), PROTO).expect("fires");
    assert_ne!(sequence_of(&first), sequence_of(&second));
}

#[test]
fn removals_of_others_and_of_unarmed_objects_never_fire() {
    let mut reflexes = armed(&[address(1)]);
    // Another protocol's object at the same place.
    assert_eq!(reflexes.fire(address(1), 4), None);
    assert_eq!(reflexes.fire(address(9), PROTO), None);
    assert!(reflexes.is_armed(&address(1)));
}

#[test]
fn a_disarmed_object_is_never_put_back() {
    let mut reflexes = armed(&[address(1)]);
    reflexes.disarm(&address(1));
    assert_eq!(reflexes.fire(address(1), PROTO), None);
    assert_eq!(reflexes.take_spent(), vec![address(1)]);
    let mut reflexes = armed(&[address(1), address(2)]);
    reflexes.disarm_all();
    assert_eq!(reflexes.fire(address(2), PROTO), None);
    assert!(reflexes.armed.is_empty());
}

#[test]
fn the_burst_budget_bounds_the_restores() {
    let objects: Vec<Object> = (1..=5).map(address).collect();
    let mut reflexes = armed(&objects);
    reflexes.refill(3);
    let fired = objects
        .iter()
        .filter(|o| reflexes.fire(**o, PROTO).is_some())
        .count();
    assert_eq!(fired, 3);
    assert_eq!(reflexes.armed.len(), 2, "the rest wait for the full pass");
}

#[test]
fn answers_name_the_object_and_only_a_reflex_is_answered() {
    let mut reflexes = armed(&[address(1)]);
    let sent = reflexes.fire(address(1), PROTO).expect("fires");
    assert_eq!(reflexes.answered(sequence_of(&sent) + 1, None), None);
    assert_eq!(
        reflexes.answered(sequence_of(&sent), Some(libc::ENODEV)),
        Some(KernelEvent::Reflex {
            object: address(1),
            errno: Some(libc::ENODEV)
        })
    );
    assert!(!reflexes.in_flight(&address(1)));
    assert_eq!(reflexes.answered(sequence_of(&sent), None), None, "once");
}

#[test]
fn a_request_that_cannot_be_sent_is_answered_with_the_errno() {
    let mut reflexes = armed(&[address(1)]);
    reflexes.fire(address(1), PROTO).expect("fires");
    assert_eq!(
        reflexes.unsent(libc::ENOBUFS),
        Some(KernelEvent::Reflex {
            object: address(1),
            errno: Some(libc::ENOBUFS)
        })
    );
}

#[test]
fn spent_objects_are_handed_back_and_lost_answers_given_up() {
    let mut reflexes = armed(&[address(1), address(2)]);
    reflexes.fire(address(1), PROTO).expect("fires");
    reflexes.disarm(&address(2));
    assert_eq!(reflexes.take_spent(), vec![address(1), address(2)]);
    assert!(reflexes.take_spent().is_empty());
    assert!(
        reflexes.in_flight(&address(1)),
        "its answer is still to come"
    );
    // The answer was thrown away with an overrun: no longer awaited.
    reflexes.forget_in_flight();
    assert!(!reflexes.in_flight(&address(1)));
}
