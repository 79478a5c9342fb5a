use super::*;

const FIELDS: Fields<'static> = Fields {
    prefix: "routes[3].prefix",
    length: "routes[3].prefixLength",
    next_hop: "routes[3].next_hop",
};

fn strict(prefix: &str, length: Option<u64>, hop: &str) -> Result<Checked, String> {
    check_routed(FIELDS, prefix, length, hop, Leniency::default())
}

#[test]
fn a_routed_prefix_passes_every_rule_or_names_the_first_it_breaks() {
    let ok = strict("2001:db8:42:100::/64", Some(64), "2001:db8::10/128").expect("valid");
    assert_eq!(ok.prefix.to_string(), "2001:db8:42:100::/64");
    assert_eq!(ok.next_hop.to_string(), "2001:db8::10");
    assert!(ok.warnings.is_empty());
    for (prefix, length, hop, expect) in [
        (
            "2001:db8:42:100::1/64",
            None,
            "2001:db8::10",
            "routes[3].prefix 2001:db8:42:100::1/64 has host bits set (the network is 2001:db8:42:100::/64)",
        ),
        (
            "2001:db8:42:100::/64",
            Some(56),
            "2001:db8::10",
            "routes[3].prefixLength 56 disagrees with routes[3].prefix 2001:db8:42:100::/64",
        ),
        (
            "2001::/16",
            None,
            "2001:db8::10",
            "routes[3].prefix 2001::/16 is shorter than /32: refusing to route that much address space",
        ),
        (
            "fe80::/64",
            None,
            "2001:db8::10",
            "routes[3].prefix fe80::/64 is a link-local prefix",
        ),
        (
            "ff02::/64",
            None,
            "2001:db8::10",
            "routes[3].prefix ff02::/64 is a multicast prefix",
        ),
        (
            "::/127",
            None,
            "2001:db8::10",
            "routes[3].prefix ::/127 is a unspecified-address prefix",
        ),
        (
            "banana",
            None,
            "2001:db8::10",
            "routes[3].prefix \"banana\" is not an IPv6 prefix such as 2001:db8:42:100::/64",
        ),
        (
            "2001:db8:42:100::/64",
            None,
            "fe80::1",
            "routes[3].next_hop fe80::1 is link-local, not usable as a next hop",
        ),
        (
            "2001:db8:42:100::/64",
            None,
            "2001:db8::10/64",
            "routes[3].next_hop \"2001:db8::10/64\" is not an IPv6 address",
        ),
        (
            "2001:db8:42:100::/64",
            None,
            "192.0.2.1",
            "routes[3].next_hop \"192.0.2.1\" is not an IPv6 address",
        ),
        (
            "2001:db8:42:100::/64",
            None,
            "2001:db8:42:100::1",
            "routes[3].next_hop 2001:db8:42:100::1 lies inside routes[3].prefix 2001:db8:42:100::/64: the provider's router would send the prefix to itself",
        ),
    ] {
        assert_eq!(
            strict(prefix, length, hop),
            Err(expect.to_string()),
            "{prefix} {hop}"
        );
    }
}

#[test]
fn leniency_lets_through_what_it_names_with_a_warning_and_nothing_else() {
    let lenient = Leniency {
        host_bits: true,
        next_hop_inside: true,
    };
    let checked =
        check_routed(FIELDS, "2001:db8::1/48", Some(48), "2001:db8::2", lenient).expect("lenient");
    assert_eq!(checked.prefix.to_string(), "2001:db8::/48");
    assert_eq!(
        checked.warnings,
        [
            "routes[3].prefix 2001:db8::1/48 has host bits set; using the network 2001:db8::/48",
            "routes[3].next_hop 2001:db8::2 lies inside routes[3].prefix 2001:db8::/48; this works only if the provider's router has a more specific route to it",
        ]
    );
    // What is unsafe whatever the source stays refused.
    assert!(check_routed(FIELDS, "2001::1/16", None, "2001:db8::2", lenient).is_err());
    assert!(check_routed(FIELDS, "2001:db8::/48", None, "ff02::1", lenient).is_err());
    assert!(check_routed(FIELDS, "2001:db8::1/48", Some(56), "2001:db8:1::2", lenient).is_err());
}

#[test]
fn reserved_addresses_and_next_hops_are_global_unicast() {
    for (addr, kind) in [
        ("fe80::1", Some("link-local")),
        ("ff02::1", Some("multicast")),
        ("::", Some("the unspecified address")),
        ("::1", Some("loopback")),
        ("2604:a880:800:14::42c3:d000", None),
    ] {
        let addr: Ipv6Addr = addr.parse().expect("addr");
        assert_eq!(non_global_kind(addr), kind, "{addr}");
        assert_eq!(check_reserved("r", addr).is_ok(), kind.is_none(), "{addr}");
    }
}

#[test]
fn provider_text_is_one_short_line_of_data() {
    assert_eq!(
        provider_text("Assign IPv6 to the net0 interface first."),
        "Assign IPv6 to the net0 interface first."
    );
    // A newline would start another sd_notify field (STATUS=…\nWATCHDOG=trigger), a
    // journal line or a terminal escape.
    assert_eq!(
        provider_text("x\nWATCHDOG=trigger\r\n\u{1b}[2Jgone\u{0}"),
        "x WATCHDOG=trigger [2Jgone"
    );
    assert_eq!(provider_text(" \t\n "), "");
    let long = "é".repeat(PROVIDER_TEXT_MAX + 50);
    let cut = provider_text(&long);
    assert_eq!(cut.chars().count(), PROVIDER_TEXT_MAX + 1);
    assert!(cut.ends_with('…'));
}

#[test]
fn special_purpose_ranges_are_refused_and_the_documentation_range_is_not() {
    for (prefix, range) in [
        ("fd00:1234::/48", "unique local"),
        ("fc00::/64", "unique local"),
        ("2002:c000:204::/48", "6to4"),
        ("2001::/32", "Teredo"),
        ("64:ff9b::/96", "NAT64 (64:ff9b::/96)"),
        ("64:ff9b::/32", "NAT64 (64:ff9b::/96)"),
        ("::ffff:0.0.0.0/96", "IPv4-mapped"),
        ("100::/64", "discard-only"),
        ("fec0::/48", "site-local"),
    ] {
        let e = strict(prefix, None, "2001:db8::10").unwrap_err();
        assert_eq!(
            e,
            format!(
                "routes[3].prefix {prefix} is special-purpose ({range}): no provider routes it to a host"
            )
        );
    }
    for hop in [
        "fd00::1",
        "2002:c000:204::1",
        "::ffff:192.0.2.1",
        "64:ff9b::c000:201",
    ] {
        let e = strict("2001:db8:42:100::/64", None, hop).unwrap_err();
        assert!(e.contains("not usable as a next hop"), "{hop}: {e}");
    }
    assert!(check_reserved("r", "fd00::1".parse().expect("addr")).is_err());
    assert!(strict("2001:db8:42:100::/64", None, "2001:db8::10").is_ok());
    assert!(strict("2001:db8::/32", None, "2001:db9::10").is_ok());
}

/// The bounds on one answer (issue 14, item 9): `max` prefixes, counted as a parser
/// adds them, and at most `MAX_NEXT_HOPS` distinct next hops, repeats counted once.
#[test]
fn an_answer_is_bounded_in_prefixes_and_distinct_next_hops() {
    assert_eq!(check_prefix_count("the answer", 3, 3), Ok(()));
    assert_eq!(
        check_prefix_count("the answer", 4, 3),
        Err(
            "the answer: more than 3 prefixes routed to this host in one answer; refusing it"
                .into()
        )
    );
    assert!(check_prefix_count("x", MAX_PREFIXES_LIMIT, MAX_PREFIXES_LIMIT).is_ok());

    let hop = |i: u16| Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10 + i);
    let eight: Vec<Ipv6Addr> = (0..8).map(hop).collect();
    assert_eq!(check_next_hop_count("the answer", eight.clone()), Ok(()));
    // Many prefixes through the same few next hops are fine.
    let repeated = eight.iter().cycle().take(500).copied();
    assert_eq!(check_next_hop_count("the answer", repeated), Ok(()));
    assert_eq!(
        check_next_hop_count("the answer", (0..9).map(hop)),
        Err("the answer: more than 8 distinct next hops; refusing it".into())
    );
}
