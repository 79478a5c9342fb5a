use super::*;

fn lo_address() -> Object {
    Object::Address {
        ifindex: 1,
        addr: "2001:db8:42:100::1".parse().expect("addr"),
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn the_hold_doubles_after_the_free_repairs_up_to_the_cap() {
    assert!((1..=FREE_REPAIRS).all(|n| hold_for(n).is_zero()));
    let holds: Vec<Duration> = (FREE_REPAIRS + 1..=FREE_REPAIRS + 9)
        .map(hold_for)
        .collect();
    assert_eq!(
        holds,
        [
            ms(100),
            ms(200),
            ms(400),
            ms(800),
            ms(1600),
            ms(3200),
            ms(6400),
            MAX_HOLD,
            MAX_HOLD
        ]
    );
    assert_eq!(hold_for(u32::MAX), MAX_HOLD, "no overflow");
}

#[tokio::test(start_paused = true)]
async fn a_few_removals_are_repaired_at_once_then_held_with_one_warning() {
    let mut damper = Damper::new();
    let object = lo_address();
    let start = Instant::now();
    for _ in 0..FREE_REPAIRS {
        assert_eq!(damper.removed(object, Instant::now()), Verdict::Now);
        damper.put_back(object, Instant::now());
        tokio::time::advance(ms(10)).await;
    }
    let now = Instant::now();
    assert_eq!(
        damper.removed(object, now),
        Verdict::Hold {
            until: now + FIRST_HOLD,
            news: Some(Fight {
                removals: FREE_REPAIRS + 1,
                over: now - start,
                hold: FIRST_HOLD,
            }),
        }
    );
    assert!(damper.holds(&object, now));
    assert!(damper.holds(&object, now + FIRST_HOLD - ms(1)));
    assert!(!damper.holds(&object, now + FIRST_HOLD));
    assert_eq!(damper.next_wake(), Some(now + FIRST_HOLD));
    // Put back when the hold ends, removed again at once: twice the wait, no news.
    tokio::time::advance(FIRST_HOLD).await;
    damper.put_back(object, Instant::now());
    assert_eq!(
        damper.next_wake(),
        Some(Instant::now() + CALM),
        "woken when the fight would be over"
    );
    tokio::time::advance(ms(1)).await;
    let now = Instant::now();
    assert_eq!(
        damper.removed(object, now),
        Verdict::Hold {
            until: now + 2 * FIRST_HOLD,
            news: None
        }
    );
    // Another object is not part of this fight.
    let route = Object::Route {
        table: 254,
        dst: "2001:db8:42:100::/64".parse().expect("dst"),
    };
    assert_eq!(damper.removed(route, now), Verdict::Now);
}

#[tokio::test(start_paused = true)]
async fn an_object_that_stood_calm_after_its_repair_is_repaired_at_once_again() {
    let mut damper = Damper::new();
    let object = lo_address();
    for _ in 0..=FREE_REPAIRS + 3 {
        if let Verdict::Hold { until, .. } = damper.removed(object, Instant::now()) {
            tokio::time::advance(until - Instant::now()).await;
        }
        damper.put_back(object, Instant::now());
    }
    // Standing a little less than CALM is not enough.
    tokio::time::advance(CALM - ms(1)).await;
    assert!(damper.settle(Instant::now()).is_empty());
    assert!(matches!(
        damper.removed(object, Instant::now()),
        Verdict::Hold { news: None, .. }
    ));
    // Put back, then standing CALM: the fight is over, said once, and forgotten.
    tokio::time::advance(MAX_HOLD).await;
    damper.put_back(object, Instant::now());
    tokio::time::advance(CALM).await;
    assert_eq!(damper.settle(Instant::now()), [object]);
    assert!(damper.is_empty());
    assert!(damper.settle(Instant::now()).is_empty());
    assert_eq!(damper.removed(object, Instant::now()), Verdict::Now);
}

#[tokio::test(start_paused = true)]
async fn a_fight_at_the_pace_of_the_longest_hold_is_still_a_fight() {
    // Another damped routed6d removes the object only when its own hold ends: up to
    // MAX_HOLD after this one put it back. That is still the same fight.
    let mut damper = Damper::new();
    let object = lo_address();
    let mut warnings = 0;
    for _ in 0..FREE_REPAIRS + 20 {
        if let Verdict::Hold { until, news } = damper.removed(object, Instant::now()) {
            warnings += usize::from(news.is_some());
            tokio::time::advance(until - Instant::now()).await;
        }
        damper.put_back(object, Instant::now());
        tokio::time::advance(MAX_HOLD).await;
        assert!(damper.settle(Instant::now()).is_empty(), "calm too soon");
    }
    assert_eq!(warnings, 1);
    let now = Instant::now();
    assert_eq!(
        damper.removed(object, now),
        Verdict::Hold {
            until: now + MAX_HOLD,
            news: None
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_deleter_every_10ms_for_a_minute_gets_75_repairs() {
    // The deleter removes the object 10 ms after each repair (it finds nothing to
    // remove while the object is held back).
    let mut damper = Damper::new();
    let object = lo_address();
    let end = Instant::now() + Duration::from_secs(60);
    let mut repairs = 0;
    let mut warnings = 0;
    let mut next_removal = Instant::now();
    while next_removal < end {
        tokio::time::advance(next_removal - Instant::now()).await;
        let repair_at = match damper.removed(object, Instant::now()) {
            Verdict::Now => Instant::now(),
            Verdict::Hold { until, news } => {
                warnings += usize::from(news.is_some());
                until
            }
        };
        if repair_at >= end {
            break;
        }
        tokio::time::advance(repair_at - Instant::now()).await;
        damper.put_back(object, Instant::now());
        repairs += 1;
        next_removal = Instant::now() + ms(10);
    }
    // 64 at once (0.64 s), then after 0.1, 0.2, 0.4, … 6.4 s (by 13.3 s), then one
    // every 10 s.
    assert_eq!(repairs, 64 + 7 + 4);
    assert_eq!(warnings, 1);
}

#[tokio::test(start_paused = true)]
async fn a_plan_is_split_into_what_to_apply_and_the_adds_held_back() {
    let address = crate::model::Address {
        ifindex: 1,
        addr: "2001:db8:42:100::1".parse().expect("addr"),
        prefix_len: 128,
        ifname: "lo".into(),
        no_prefix_route: false,
    };
    let other = crate::model::Address {
        addr: "2001:db8:42:100::2".parse().expect("addr"),
        ..address.clone()
    };
    let plan = Plan {
        ops: [
            Op::AddAddress(address.clone()),
            Op::AddAddress(other.clone()),
            Op::DelAddress(address.clone()),
        ]
        .into_iter()
        .map(|op| Planned::new(op, None))
        .collect(),
        conflicts: Vec::new(),
    };
    let mut damper = Damper::new();
    assert_eq!(damper.withhold(plan.clone(), Instant::now()).0, plan);
    let object = Object::of_address(&address);
    let until = loop {
        if let Verdict::Hold { until, .. } = damper.removed(object, Instant::now()) {
            break until;
        }
    };
    let (apply, held) = damper.withhold(plan.clone(), Instant::now());
    assert_eq!(held, [Op::AddAddress(address.clone())]);
    let applied: Vec<Op> = apply.ops.into_iter().map(|p| p.op).collect();
    assert_eq!(
        applied,
        [Op::AddAddress(other), Op::DelAddress(address)],
        "only adds are held back"
    );
    tokio::time::advance(until - Instant::now()).await;
    assert_eq!(damper.withhold(plan.clone(), Instant::now()).0, plan);
    // A hold that ended without a repair (the object is no longer wanted) is cleared:
    // the loop wakes once more, when the fight would be over, to forget it.
    assert_eq!(damper.next_wake(), Some(until));
    let last_removed = until - hold_for(FREE_REPAIRS + 1);
    damper.settle(Instant::now());
    assert_eq!(damper.next_wake(), Some(last_removed + CALM));
    tokio::time::advance(last_removed + CALM - Instant::now()).await;
    assert!(
        damper.settle(Instant::now()).is_empty(),
        "never put back: no news"
    );
    assert_eq!(damper.next_wake(), None);
}

#[tokio::test(start_paused = true)]
async fn a_pass_that_races_the_removal_notice_leaves_the_repair_to_it() {
    let address = crate::model::Address {
        ifindex: 1,
        addr: "2001:db8:42:100::1".parse().expect("addr"),
        prefix_len: 128,
        ifname: "lo".into(),
        no_prefix_route: false,
    };
    let add = Plan {
        ops: vec![Planned::new(Op::AddAddress(address.clone()), None)],
        conflicts: Vec::new(),
    };
    let object = Object::of_address(&address);
    let mut damper = Damper::new();
    assert_eq!(damper.removed(object, Instant::now()), Verdict::Now);
    let repaired = Instant::now();
    damper.put_back(object, repaired);
    assert_eq!(damper.next_wake(), None, "one removal wakes nothing");
    // Gone again, and a pass sees it before the notice of the removal is read: the
    // pass leaves it (the notice counts the removal and decides), and says when to
    // look again should the notice never come.
    tokio::time::advance(ms(20)).await;
    let (apply, withheld) = damper.withhold(add.clone(), Instant::now());
    assert!(apply.ops.is_empty());
    assert_eq!(
        damper.notice_due(&withheld, Instant::now()),
        Some(repaired + NOTICE_WAIT)
    );
    assert_eq!(damper.removed(object, Instant::now()), Verdict::Now);
    assert_eq!(damper.withhold(add.clone(), Instant::now()).0, add);
    // A notice that never comes (lost in an overrun): put back by the pass after
    // NOTICE_WAIT.
    let repaired = Instant::now();
    damper.put_back(object, repaired);
    tokio::time::advance(NOTICE_WAIT - ms(1)).await;
    assert!(
        damper
            .withhold(add.clone(), Instant::now())
            .0
            .ops
            .is_empty()
    );
    tokio::time::advance(ms(1)).await;
    assert_eq!(damper.withhold(add.clone(), Instant::now()).0, add);
    assert_eq!(damper.notice_due(&[], Instant::now()), None);
}

#[test]
fn only_removals_of_objects_carrying_the_protocol_are_named() {
    let addr = "2001:db8:42:100::1".parse().expect("addr");
    let dst: Ipv6Net = "2001:db8:42:100::/64".parse().expect("dst");
    let address = |protocol, removed| KernelEvent::Address {
        ifindex: 1,
        addr,
        protocol,
        removed,
    };
    let route = |protocol, removed| KernelEvent::Route {
        dst,
        table: 254,
        protocol,
        removed,
    };
    assert_eq!(
        Object::removed_in(&address(126, true), 126),
        Some(Object::Address { ifindex: 1, addr })
    );
    assert_eq!(
        Object::removed_in(&route(126, true), 126),
        Some(Object::Route { table: 254, dst })
    );
    assert_eq!(Object::removed_in(&address(0, true), 126), None);
    assert_eq!(Object::removed_in(&route(4, true), 126), None);
    assert_eq!(Object::removed_in(&address(126, false), 126), None);
    assert_eq!(Object::removed_in(&KernelEvent::Resync, 126), None);
}
