use super::*;

const GRACE: Duration = Duration::from_secs(10);
const OS_64: Form = Form {
    prefix_len: 64,
    no_prefix_route: false,
};

fn hop() -> Ipv6Addr {
    "2001:db8:1::10".parse().expect("hop")
}

fn seen(holder: Holder, link_ready: bool) -> Sighting {
    Sighting {
        hop: hop(),
        holder,
        link_ready,
    }
}

/// Judge one sighting at `now` and learn from it, as a daemon pass does.
fn pass(book: &mut NextHopBook, sighting: Sighting, now: Instant) -> (Place, Vec<Change>) {
    let place = book.place(&sighting, now, GRACE);
    let changes = book.note(&[sighting], now, GRACE);
    (place, changes)
}

#[test]
fn the_os_address_is_used_never_added() {
    let mut book = NextHopBook::new();
    let t0 = Instant::now();
    let (place, changes) = pass(&mut book, seen(Holder::Os(OS_64), true), t0);
    assert_eq!(place, Place::Keep(OS_64));
    assert!(changes.is_empty(), "{changes:?}");
}

#[test]
fn the_os_gets_the_grace_then_routed6d_stands_in_with_the_os_form() {
    let mut book = NextHopBook::new();
    let t0 = Instant::now();
    pass(&mut book, seen(Holder::Os(OS_64), true), t0);

    let gone = t0 + Duration::from_secs(1);
    let (place, changes) = pass(&mut book, seen(Holder::Nobody, true), gone);
    assert_eq!(
        place,
        Place::Wait {
            form: OS_64,
            until: Some(gone + GRACE)
        }
    );
    assert_eq!(changes, [Change::OsGone { hop: hop() }]);

    // Another pass before the deadline (an unrelated event) still waits, for the
    // same deadline: the clock is not restarted by looking again.
    let (place, changes) = pass(
        &mut book,
        seen(Holder::Nobody, true),
        gone + Duration::from_secs(5),
    );
    assert_eq!(
        place,
        Place::Wait {
            form: OS_64,
            until: Some(gone + GRACE)
        }
    );
    assert!(changes.is_empty(), "{changes:?}");

    let (place, changes) = pass(&mut book, seen(Holder::Nobody, true), gone + GRACE);
    assert_eq!(place, Place::Add(OS_64));
    assert_eq!(
        changes,
        [Change::StandIn {
            hop: hop(),
            form: OS_64
        }]
    );
    // The add failed, say: the next pass adds again but says so only once.
    let (place, changes) = pass(
        &mut book,
        seen(Holder::Nobody, true),
        gone + GRACE + Duration::from_secs(1),
    );
    assert_eq!(place, Place::Add(OS_64));
    assert!(changes.is_empty(), "{changes:?}");

    // routed6d's stand-in is kept as it is; the OS re-adding its address (the kernel
    // merges it: the protocol becomes the OS's) makes it the OS's again.
    let later = gone + GRACE + Duration::from_secs(2);
    let (place, _) = pass(&mut book, seen(Holder::Routed6d(OS_64), true), later);
    assert_eq!(place, Place::Keep(OS_64));
    let (place, changes) = pass(&mut book, seen(Holder::Os(OS_64), true), later);
    assert_eq!(place, Place::Keep(OS_64));
    assert_eq!(
        changes,
        [Change::OsBack {
            hop: hop(),
            form: OS_64
        }]
    );
}

#[test]
fn nothing_is_added_while_the_link_is_down_and_the_grace_starts_when_it_is_back() {
    let mut book = NextHopBook::new();
    let t0 = Instant::now();
    pass(&mut book, seen(Holder::Os(OS_64), true), t0);
    // Down long past the grace: still nothing, whatever the time.
    for secs in [1, 30, 300] {
        let (place, changes) = pass(
            &mut book,
            seen(Holder::Nobody, false),
            t0 + Duration::from_secs(secs),
        );
        assert_eq!(
            place,
            Place::Wait {
                form: OS_64,
                until: None
            }
        );
        assert!(changes.is_empty(), "{changes:?}");
    }
    let up = t0 + Duration::from_secs(301);
    let (place, _) = pass(&mut book, seen(Holder::Nobody, true), up);
    assert_eq!(
        place,
        Place::Wait {
            form: OS_64,
            until: Some(up + GRACE)
        }
    );
}

#[test]
fn a_next_hop_routed6d_never_saw_the_os_hold_is_added_at_once_even_on_a_down_link_later() {
    let mut book = NextHopBook::new();
    let t0 = Instant::now();
    let (place, changes) = pass(&mut book, seen(Holder::Nobody, true), t0);
    assert_eq!(place, Place::Add(Form::HOST));
    assert!(changes.is_empty());
    // routed6d's own next hop deleted by hand: repaired at once, no grace.
    pass(&mut book, seen(Holder::Routed6d(Form::HOST), true), t0);
    let (place, changes) = pass(&mut book, seen(Holder::Nobody, true), t0);
    assert_eq!(place, Place::Add(Form::HOST));
    assert!(changes.is_empty());
    // A link without carrier gets nothing, not even routed6d's own.
    let (place, _) = pass(&mut book, seen(Holder::Nobody, false), t0);
    assert_eq!(
        place,
        Place::Wait {
            form: Form::HOST,
            until: None
        }
    );
}

#[test]
fn the_os_back_within_the_grace_is_used_and_logged_once() {
    let mut book = NextHopBook::new();
    let t0 = Instant::now();
    pass(&mut book, seen(Holder::Os(OS_64), true), t0);
    pass(&mut book, seen(Holder::Nobody, true), t0);
    let (place, changes) = pass(
        &mut book,
        seen(Holder::Os(OS_64), true),
        t0 + Duration::from_secs(5),
    );
    assert_eq!(place, Place::Keep(OS_64));
    assert_eq!(
        changes,
        [Change::OsBack {
            hop: hop(),
            form: OS_64
        }]
    );
    let (_, changes) = pass(
        &mut book,
        seen(Holder::Os(OS_64), true),
        t0 + Duration::from_secs(6),
    );
    assert!(changes.is_empty(), "{changes:?}");
    // And a later flap gets a fresh grace.
    let again = t0 + Duration::from_secs(100);
    let (place, _) = pass(&mut book, seen(Holder::Nobody, true), again);
    assert_eq!(
        place,
        Place::Wait {
            form: OS_64,
            until: Some(again + GRACE)
        }
    );
}

#[test]
fn a_zero_grace_stands_in_at_once() {
    let mut book = NextHopBook::new();
    let t0 = Instant::now();
    book.note(&[seen(Holder::Os(OS_64), true)], t0, Duration::ZERO);
    let sighting = seen(Holder::Nobody, true);
    assert_eq!(book.place(&sighting, t0, Duration::ZERO), Place::Add(OS_64));
    assert_eq!(
        book.note(&[sighting], t0, Duration::ZERO),
        [
            Change::OsGone { hop: hop() },
            Change::StandIn {
                hop: hop(),
                form: OS_64
            }
        ]
    );
}

#[test]
fn a_next_hop_no_longer_named_is_forgotten() {
    let mut book = NextHopBook::new();
    let t0 = Instant::now();
    pass(&mut book, seen(Holder::Os(OS_64), true), t0);
    book.note(&[], t0, GRACE);
    // Named again later, with nothing there: a next hop like any other.
    let (place, _) = pass(&mut book, seen(Holder::Nobody, true), t0);
    assert_eq!(place, Place::Add(Form::HOST));
}

#[test]
fn judge_wakes_at_the_earliest_deadline_and_sight_tells_owners_apart() {
    use crate::model::{Link, ObservedAddress};
    let uplink = Link {
        alias: None,
        index: 2,
        name: "eth0".into(),
        up: true,
        lower_up: true,
    };
    let other: Ipv6Addr = "2001:db8:1::20".parse().expect("hop");
    let os_address = OS_64.address(hop(), &uplink);
    let observed = ObservedState {
        links: vec![uplink.clone()],
        addresses: vec![ObservedAddress {
            address: os_address,
            protocol: 0,
        }],
        ..ObservedState::default()
    };
    let sightings = sight([hop(), other, hop()], &uplink, &observed, 126);
    assert_eq!(
        sightings,
        [
            seen(Holder::Os(OS_64), true),
            Sighting {
                hop: other,
                holder: Holder::Nobody,
                link_ready: true
            }
        ]
    );
    let t0 = Instant::now();
    let mut book = NextHopBook::new();
    book.note(&sightings, t0, GRACE);
    // Both held by the OS, then both gone at different times.
    let both_os = |book: &mut NextHopBook, at| {
        let s = [
            seen(Holder::Os(OS_64), true),
            Sighting {
                hop: other,
                holder: Holder::Os(OS_64),
                link_ready: true,
            },
        ];
        book.note(&s, at, GRACE);
    };
    both_os(&mut book, t0);
    let first_gone = [
        seen(Holder::Nobody, true),
        Sighting {
            hop: other,
            holder: Holder::Os(OS_64),
            link_ready: true,
        },
    ];
    book.note(&first_gone, t0, GRACE);
    let later = t0 + Duration::from_secs(3);
    let both_gone = [
        seen(Holder::Nobody, true),
        Sighting {
            hop: other,
            holder: Holder::Nobody,
            link_ready: true,
        },
    ];
    let judged = book.judge(both_gone.to_vec(), later, GRACE);
    assert_eq!(judged.wake_at, Some(t0 + GRACE));
    assert_eq!(judged.places.len(), 2);
}
