//! Dumped and answered messages, read into routed6d's model. Dumps are parsed in
//! place, attribute by attribute, and only the attributes the model holds: a dump of
//! tens of thousands of routes would otherwise build as many attribute vectors to
//! throw them away. A message that does not parse is an error, never skipped: what it
//! held may have been routed6d's.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use ipnet::Ipv6Net;
use netlink_packet_core::{DecodeError, NlasIterator, Parseable, ParseableParametrized};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeader, AddressMessage,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteLwEnCapType, RouteMessage,
    RouteType,
};

use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};

use crate::damping::Object;
use crate::kernel::record::{Entry, Seen};
use crate::model::{
    Address, Link, Neighbour, ObservedAddress, ObservedProxy, ObservedRoute, Proxy, Route,
    RouteKind,
};

/// A link as routed6d models it, from a dump or an announcement.
pub(crate) fn link_of(message: &LinkMessage) -> Link {
    let name = message
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(name) => Some(name.clone()),
            _ => None,
        })
        .unwrap_or_default();
    Link {
        index: message.header.index,
        name,
        up: message.header.flags.contains(LinkFlags::Up),
        lower_up: message.header.flags.contains(LinkFlags::LowerUp),
        alias: message.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfAlias(alias) => Some(alias.clone()),
            _ => None,
        }),
    }
}

/// IFA_FLAGS (u32) when present, else the header's u8 flags.
pub(super) fn address_flags(message: &AddressMessage) -> AddressFlags {
    message
        .attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Flags(flags) => Some(*flags),
            _ => None,
        })
        .unwrap_or_else(|| AddressFlags::from_bits_retain(u32::from(message.header.flags.bits())))
}

/// The address itself: IFA_LOCAL when present (then IFA_ADDRESS is the peer, on
/// point-to-point links), else IFA_ADDRESS.
pub(crate) fn local_address(message: &AddressMessage) -> Option<IpAddr> {
    let mut address = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(local) => return Some(*local),
            AddressAttribute::Address(addr) => address = Some(*addr),
            _ => {}
        }
    }
    address
}

/// IFA_PROTO, 0 when the kernel set none (addresses added by `ip` or by kernels
/// older than 6.0).
pub(crate) fn address_protocol(message: &AddressMessage) -> u8 {
    message
        .attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Protocol(p) => Some(u8::from(*p)),
            _ => None,
        })
        .unwrap_or(0)
}

// Address attributes (linux/if_addr.h) `observed_address` reads.
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_CACHEINFO: u16 = 6;
const IFA_FLAGS: u16 = 8;
const IFA_PROTO: u16 = 11;
/// sizeof(struct ifaddrmsg).
const IFADDRMSG_LEN: usize = 8;
/// The message types of a link and of an address in a dump.
pub(super) const RTM_NEWLINK: u16 = 16;
pub(super) const RTM_NEWADDR: u16 = 20;
/// The message type of a neighbour (or proxy entry) in a dump.
pub(super) const RTM_NEWNEIGH: u16 = 28;

/// What a dumped neighbour message is: a cache entry or a proxy entry.
pub(super) enum Neighbourly {
    Cache(Neighbour),
    Proxy(ObservedProxy),
}

/// A dumped IPv6 neighbour or proxy message (the payload after the netlink header), or
/// None for another family, one without an address, or a proxy entry for no interface.
pub(super) fn observed_neighbour(
    payload: &[u8],
    names: &HashMap<u32, Arc<str>>,
) -> Result<Option<Neighbourly>, DecodeError> {
    let message = NeighbourMessage::parse(payload)?;
    if message.header.family != AddressFamily::Inet6 {
        return Ok(None);
    }
    let mut addr = None;
    let mut protocol = 0;
    for attribute in &message.attributes {
        match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => addr = Some(*a),
            NeighbourAttribute::Protocol(p) => protocol = u8::from(*p),
            _ => {}
        }
    }
    let Some(addr) = addr else {
        return Ok(None);
    };
    let ifindex = message.header.ifindex;
    if message.header.flags.contains(NeighbourFlags::Proxy) {
        if ifindex == 0 {
            return Ok(None);
        }
        return Ok(Some(Neighbourly::Proxy(ObservedProxy {
            proxy: Proxy {
                ifindex,
                addr,
                ifname: names
                    .get(&ifindex)
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
            },
            protocol,
        })));
    }
    Ok(Some(Neighbourly::Cache(Neighbour {
        ifindex,
        addr,
        state: u16::from(message.header.state),
    })))
}

/// A dumped IPv6 address message (the payload after the netlink header) as routed6d
/// models it. Like `observed_route`, only the attributes the model holds are parsed.
///
/// `record_netns` Some (record mode, the dumped namespace): IFA_PROTO is not read (the
/// record decides), and the address comes with what the record judges it by.
pub(super) fn observed_address(
    payload: &[u8],
    names: &HashMap<u32, Arc<str>>,
    record_netns: Option<u64>,
) -> Result<Option<(ObservedAddress, Option<Seen>)>, DecodeError> {
    let header = AddressHeader::parse(payload)?;
    if header.family != AddressFamily::Inet6 {
        return Ok(None);
    }
    let mut local = None;
    let mut address = None;
    let mut flags = AddressFlags::from_bits_retain(u32::from(header.flags.bits()));
    let mut protocol = 0;
    let mut created = None;
    let wanted = if record_netns.is_some() {
        IFA_CACHEINFO
    } else {
        IFA_PROTO
    };
    let attributes = payload.get(IFADDRMSG_LEN..).unwrap_or_default();
    for nla in NlasIterator::new(attributes) {
        let nla = nla?;
        let kind = nla.kind();
        if !matches!(kind, IFA_ADDRESS | IFA_LOCAL | IFA_FLAGS) && kind != wanted {
            continue;
        }
        match AddressAttribute::parse(&nla)? {
            AddressAttribute::Local(IpAddr::V6(a)) => local = Some(a),
            AddressAttribute::Address(IpAddr::V6(a)) => address = Some(a),
            // IFA_FLAGS (u32) carries what the header's u8 cannot (NOPREFIXROUTE).
            AddressAttribute::Flags(f) => flags = f,
            AddressAttribute::Protocol(p) => protocol = u8::from(p),
            AddressAttribute::CacheInfo(info) => created = Some(info.cstamp),
            _ => {}
        }
    }
    // IFA_LOCAL when present (then IFA_ADDRESS is the peer, on point-to-point links).
    let Some(addr) = local.or(address) else {
        return Ok(None);
    };
    let index = header.index;
    let no_prefix_route = flags.contains(AddressFlags::Noprefixroute);
    let seen = record_netns.zip(created).map(|(netns, created)| Seen {
        entry: Entry {
            netns,
            ifindex: index,
            address: addr,
            prefix_len: header.prefix_len,
            no_prefix_route,
            created,
        },
        nodad: flags.contains(AddressFlags::Nodad),
    });
    Ok(Some((
        ObservedAddress {
            address: Address {
                ifindex: index,
                addr,
                prefix_len: header.prefix_len,
                ifname: names.get(&index).map(|n| n.to_string()).unwrap_or_default(),
                no_prefix_route,
            },
            protocol,
        },
        seen,
    )))
}

/// What the record judges an address by, from an RTM_GETADDR answer in `netns`.
pub(super) fn seen_of(message: &AddressMessage, netns: u64) -> Option<Seen> {
    let Some(IpAddr::V6(address)) = local_address(message) else {
        return None;
    };
    let created = message.attributes.iter().find_map(|a| match a {
        AddressAttribute::CacheInfo(info) => Some(info.cstamp),
        _ => None,
    })?;
    let flags = address_flags(message);
    Some(Seen {
        entry: Entry {
            netns,
            ifindex: message.header.index,
            address,
            prefix_len: message.header.prefix_len,
            no_prefix_route: flags.contains(AddressFlags::Noprefixroute),
            created,
        },
        nodad: flags.contains(AddressFlags::Nodad),
    })
}

/// The parts of a route message every consumer wants: (table, dst, protocol).
pub(crate) fn route_key(message: &RouteMessage) -> Option<(u32, Ipv6Net, u8)> {
    let mut table = u32::from(message.header.table);
    let mut dst = Ipv6Addr::UNSPECIFIED;
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet6(a)) => dst = *a,
            _ => {}
        }
    }
    let dst = Ipv6Net::new(dst, message.header.destination_prefix_length).ok()?;
    Some((table, dst, u8::from(message.header.protocol)))
}

/// RTM_DELADDR and RTM_DELROUTE (linux/rtnetlink.h).
const RTM_DELADDR: u16 = 21;
const RTM_DELROUTE: u16 = 25;

/// The object a removal announces, and the protocol it carried, read in place from a
/// notification's payload: only the header and the attributes that name it, before
/// (and without) the whole message's parse, so the event watcher can put it back first
/// (`reflex`). None for anything else, or a message that does not parse (the full
/// parse that follows tells that).
pub(crate) fn removed_object(message_type: u16, payload: &[u8]) -> Option<(Object, u8)> {
    match message_type {
        RTM_DELADDR => {
            let header = AddressHeader::parse(payload).ok()?;
            if header.family != AddressFamily::Inet6 {
                return None;
            }
            let (mut local, mut address, mut protocol) = (None, None, 0);
            let attributes = payload.get(IFADDRMSG_LEN..)?;
            for nla in NlasIterator::new(attributes) {
                let nla = nla.ok()?;
                if !matches!(nla.kind(), IFA_ADDRESS | IFA_LOCAL | IFA_PROTO) {
                    continue;
                }
                match AddressAttribute::parse(&nla).ok()? {
                    AddressAttribute::Local(IpAddr::V6(a)) => local = Some(a),
                    AddressAttribute::Address(IpAddr::V6(a)) => address = Some(a),
                    AddressAttribute::Protocol(p) => protocol = u8::from(p),
                    _ => {}
                }
            }
            let addr = local.or(address)?;
            Some((
                Object::Address {
                    ifindex: header.index,
                    addr,
                },
                protocol,
            ))
        }
        RTM_DELROUTE => {
            let header = RouteHeader::parse(payload).ok()?;
            if header.address_family != AddressFamily::Inet6
                || header.flags.contains(RouteFlags::Cloned)
            {
                return None;
            }
            let mut table = u32::from(header.table);
            let mut dst = Ipv6Addr::UNSPECIFIED;
            let attributes = payload.get(RTMSG_LEN..)?;
            for nla in NlasIterator::new(attributes) {
                let nla = nla.ok()?;
                if !matches!(nla.kind(), RTA_DST | RTA_TABLE) {
                    continue;
                }
                let param = (header.address_family, header.kind, RouteLwEnCapType::None);
                match RouteAttribute::parse_with_param(&nla, param).ok()? {
                    RouteAttribute::Table(t) => table = t,
                    RouteAttribute::Destination(RouteAddress::Inet6(a)) => dst = a,
                    _ => {}
                }
            }
            let dst = Ipv6Net::new(dst, header.destination_prefix_length).ok()?;
            Some((Object::Route { table, dst }, u8::from(header.protocol)))
        }
        _ => None,
    }
}

// Route attributes (linux/rtnetlink.h) `observed_route` reads; the rest (metrics,
// cache info, preference, expiry…) are skipped unparsed.
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_PREFSRC: u16 = 7;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;
const RTA_VIA: u16 = 18;
/// sizeof(struct rtmsg): the attributes start after it.
const RTMSG_LEN: usize = 12;
/// The message type of a route in a dump.
pub(super) const RTM_NEWROUTE: u16 = 24;

/// A dumped route message (the payload after the netlink header) as routed6d models
/// it, or None for the kinds it never installs. Only the attributes the model holds
/// are parsed: a dump of 10 000 routes would otherwise build 10 000 attribute vectors
/// (with the nested metrics) to throw them away.
pub(super) fn observed_route(
    payload: &[u8],
    names: &HashMap<u32, Arc<str>>,
) -> Result<Option<ObservedRoute>, DecodeError> {
    let header = RouteHeader::parse(payload)?;
    if header.address_family != AddressFamily::Inet6
        // Cached clones (PMTU exceptions, redirects) are not routes anyone installed.
        || header.flags.contains(RouteFlags::Cloned)
        // Source-specific routes (`from …`) live in another slot than ours.
        || header.source_prefix_length != 0
    {
        return Ok(None);
    }
    let mut kind = match header.kind {
        RouteType::Unicast => RouteKind::Unicast,
        RouteType::Local => RouteKind::Local,
        RouteType::Unreachable => RouteKind::Unreachable,
        _ => return Ok(None),
    };
    let mut table = u32::from(header.table);
    let mut dst = Ipv6Addr::UNSPECIFIED;
    let mut metric = 0;
    let mut oif = None;
    let mut gateway = None;
    let mut src = None;
    let attributes = payload.get(RTMSG_LEN..).unwrap_or_default();
    for nla in NlasIterator::new(attributes) {
        let nla = nla?;
        if !matches!(
            nla.kind(),
            RTA_DST | RTA_OIF | RTA_GATEWAY | RTA_PRIORITY | RTA_PREFSRC | RTA_TABLE
        ) {
            // Routes over several paths, or via an IPv4 gateway, are not routed6d's
            // and cannot be mirrored by it.
            if matches!(nla.kind(), RTA_VIA | RTA_MULTIPATH) {
                return Ok(None);
            }
            continue;
        }
        let param = (header.address_family, header.kind, RouteLwEnCapType::None);
        match RouteAttribute::parse_with_param(&nla, param)? {
            RouteAttribute::Table(t) => table = t,
            RouteAttribute::Destination(RouteAddress::Inet6(a)) => dst = a,
            RouteAttribute::Priority(p) => metric = p,
            RouteAttribute::Oif(i) => oif = Some(i),
            RouteAttribute::Gateway(RouteAddress::Inet6(g)) => gateway = Some(g),
            RouteAttribute::PrefSource(RouteAddress::Inet6(s)) => src = Some(s),
            _ => {}
        }
    }
    let Ok(dst) = Ipv6Net::new(dst, header.destination_prefix_length) else {
        return Ok(None);
    };
    if let (RouteKind::Unicast, Some(gateway)) = (kind, gateway) {
        kind = RouteKind::Via { gateway, src };
    }
    // The kernel hangs IPv6 reject routes on `lo` and reports RTA_OIF 1 for them;
    // the model says unreachable routes have no interface.
    let ifindex = match kind {
        RouteKind::Unreachable => None,
        _ => oif,
    };
    Ok(Some(ObservedRoute {
        route: Route {
            table,
            dst,
            metric,
            kind,
            ifindex,
            ifname: ifindex.and_then(|i| names.get(&i).cloned()),
        },
        protocol: u8::from(header.protocol),
    }))
}
