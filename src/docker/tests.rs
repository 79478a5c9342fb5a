use super::*;

fn net(text: &str) -> Ipv6Net {
    text.parse().expect("prefix")
}

fn want(subnet: Option<&str>) -> WantedNetwork {
    WantedNetwork {
        network: "web".into(),
        workload: "web".into(),
        bridge: "dk-web".into(),
        subnet: subnet.map(net),
    }
}

fn seen(protocol: Option<u8>, subnets: &[&str], bridge: &str) -> SeenNetwork {
    SeenNetwork {
        id: "abc".into(),
        name: "web".into(),
        labels: protocol.map_or_else(HashMap::new, |p| labels(p, "web")),
        ipv6_subnets: subnets.iter().map(|s| net(s)).collect(),
        ipv4_pools: vec![("172.18.0.0/16".into(), Some("172.18.0.1".into()))],
        bridge: Some(bridge.into()),
        containers: Vec::new(),
    }
}

#[test]
fn a_missing_network_is_made_once_the_workload_is_placed() {
    assert_eq!(
        step(&want(Some("2001:db8:0:0:1::/80")), None, 126),
        Step::Create
    );
    assert_eq!(step(&want(None), None, 126), Step::Wait);
}

#[test]
fn a_network_that_is_not_routeds_is_never_touched() {
    let sub = "2001:db8:0:0:1::/80";
    for other in [None, Some(127)] {
        let theirs = seen(other, &["2001:db8:ffff::/64"], "br-x");
        assert_eq!(step(&want(Some(sub)), Some(&theirs), 126), Step::Foreign);
        assert_eq!(step(&want(None), Some(&theirs), 126), Step::Foreign);
    }
}

#[test]
fn routeds_network_is_kept_as_it_is_or_made_again_when_the_prefix_moves() {
    let sub = "2001:db8:0:0:1::/80";
    let same = seen(Some(126), &[sub], "dk-web");
    assert_eq!(step(&want(Some(sub)), Some(&same), 126), Step::Keep);
    // Not placed now (no routed prefix): left as it is, containers and all.
    assert_eq!(step(&want(None), Some(&same), 126), Step::Keep);
    let moved = step(&want(Some("2001:db8:77:0:1::/80")), Some(&same), 126);
    assert_eq!(
        moved,
        Step::Recreate {
            why: "its subnet is 2001:db8:0:0:1::/80, the workload's sub-prefix is 2001:db8:77:0:1::/80".into()
        }
    );
    let v4_only = seen(Some(126), &[], "dk-web");
    assert!(matches!(
        step(&want(Some(sub)), Some(&v4_only), 126),
        Step::Recreate { why } if why.starts_with("its subnet is no IPv6 subnet")
    ));
    let renamed = seen(Some(126), &[sub], "br-old");
    assert_eq!(
        step(&want(Some(sub)), Some(&renamed), 126),
        Step::Recreate {
            why: "its bridge is br-old, the workload's is dk-web".into()
        }
    );
}

#[test]
fn a_container_keeps_its_offset_in_the_new_sub_prefix() {
    let from = net("2001:db8:42:101::/64");
    let to = net("2001:db8:77:ff01::/64");
    let addr: Ipv6Addr = "2001:db8:42:101::2".parse().expect("addr");
    assert_eq!(
        same_offset(addr, from, to),
        "2001:db8:77:ff01::2".parse::<Ipv6Addr>().expect("addr")
    );
    let addr: Ipv6Addr = "2001:db8:42:101:aaaa:bbbb:cccc:dddd".parse().expect("addr");
    assert_eq!(
        same_offset(addr, from, to),
        "2001:db8:77:ff01:aaaa:bbbb:cccc:dddd"
            .parse::<Ipv6Addr>()
            .expect("addr")
    );
    // A longer sub-prefix keeps what fits of the offset.
    let to80 = net("2001:db8:77:ff01:1::/80");
    assert_eq!(
        same_offset(addr, from, to80),
        "2001:db8:77:ff01:1:bbbb:cccc:dddd"
            .parse::<Ipv6Addr>()
            .expect("addr")
    );
}

#[test]
fn endpoints_are_the_containers_addresses_inside_the_wanted_sub_prefix() {
    let sub = "2001:db8:0:0:1::/80";
    let mut network = seen(Some(126), &[sub], "dk-web");
    let attach = |name: &str, v6: Option<&str>| Attached {
        id: format!("{name}-id"),
        name: name.into(),
        ipv4: None,
        ipv6: v6.map(|a| a.parse().expect("addr")),
    };
    network.containers = vec![
        attach("b", Some("2001:db8:0:0:1::3")),
        attach("a", Some("2001:db8:0:0:1::2")),
        attach("v4", None),
        // A fixed address outside the sub-prefix is not proxied on its behalf.
        attach("odd", Some("2001:db8:ffff::9")),
    ];
    let mut other = network.clone();
    other.name = "elsewhere".into();
    let got = endpoints([&network, &other], &[want(Some(sub))]);
    assert_eq!(
        got,
        vec![
            "2001:db8:0:0:1::2".parse::<Ipv6Addr>().expect("addr"),
            "2001:db8:0:0:1::3".parse().expect("addr"),
        ]
    );
    // Not placed: nothing is proxied for it.
    assert!(endpoints([&network], &[want(None)]).is_empty());
}

#[test]
fn networks_no_workload_names_are_the_unwanted_ones() {
    let kept = seen(Some(126), &[], "dk-web");
    let mut gone = kept.clone();
    gone.name = "old".into();
    let ours = [kept, gone];
    let names: Vec<&str> = unwanted(&ours, &[want(None)])
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(names, ["old"]);
}

#[test]
fn the_labels_say_whose_network_it_is() {
    let mine = seen(Some(126), &[], "dk-web");
    assert!(mine.is_ours(126));
    assert!(!mine.is_ours(127));
    assert_eq!(
        mine.labels.get(WORKLOAD_LABEL).map(String::as_str),
        Some("web")
    );
}
