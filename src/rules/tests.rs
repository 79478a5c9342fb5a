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
