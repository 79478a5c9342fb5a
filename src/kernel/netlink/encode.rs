//! Requests as routed6d sends them: every flag and attribute chosen here (NODAD,
//! NOPREFIXROUTE, IFA_PROTO, the route's protocol, table and metric) is part of how
//! routed6d owns what it adds and never touches what it does not.

use std::net::IpAddr;

use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressProtocol,
    AddressScope,
};
use netlink_packet_route::link::{
    InfoBridge, InfoData, InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};

use crate::model::{Address, Proxy, Route, RouteKind};

/// An address request. `stamp` Some(p): an add carries IFA_PROTO p (Linux 5.18+;
/// older kernels ignore the attribute); None when the record owns addresses, as on
/// those kernels.
pub(super) fn address_message(address: &Address, add: bool, stamp: Option<u8>) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.family = AddressFamily::Inet6;
    message.header.prefix_len = address.prefix_len;
    message.header.index = address.ifindex;
    message.header.scope = AddressScope::Universe;
    let addr = IpAddr::V6(address.addr);
    // Like iproute2: IFA_LOCAL and IFA_ADDRESS equal means "no peer".
    message.attributes.push(AddressAttribute::Local(addr));
    message.attributes.push(AddressAttribute::Address(addr));
    if add {
        // NODAD: the provider routes the prefix here, nobody else may hold the
        // address, and a tentative address cannot be used for a second or two.
        let mut flags = AddressFlags::Nodad;
        if address.no_prefix_route {
            flags |= AddressFlags::Noprefixroute;
        }
        // The header's u8 carries the low flags for old kernels; IFA_FLAGS (u32)
        // is needed for NOPREFIXROUTE (0x200).
        message.header.flags = AddressHeaderFlags::Nodad;
        message.attributes.push(AddressAttribute::Flags(flags));
        if let Some(protocol) = stamp {
            message
                .attributes
                .push(AddressAttribute::Protocol(AddressProtocol::from(protocol)));
        }
    }
    message
}

/// A route request stamped with `protocol`: on a delete it makes the kernel match
/// only a route of that protocol.
pub(super) fn route_message(route: &Route, protocol: u8) -> RouteMessage {
    let mut message = RouteMessage::default();
    let header = &mut message.header;
    header.address_family = AddressFamily::Inet6;
    header.destination_prefix_length = route.dst.prefix_len();
    header.protocol = RouteProtocol::from(protocol);
    (header.kind, header.scope) = match route.kind {
        RouteKind::Unicast => (RouteType::Unicast, RouteScope::Universe),
        // `ip route add local` uses scope host; the kernel does not check it for
        // IPv6, but dumps and `ip` then agree.
        RouteKind::Local => (RouteType::Local, RouteScope::Host),
        RouteKind::Unreachable => (RouteType::Unreachable, RouteScope::Universe),
        RouteKind::Via { .. } => (RouteType::Unicast, RouteScope::Universe),
    };
    set_table(&mut message, route.table);
    if let RouteKind::Via { gateway, src } = route.kind {
        message
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet6(gateway)));
        if let Some(src) = src {
            message
                .attributes
                .push(RouteAttribute::PrefSource(RouteAddress::Inet6(src)));
        }
    }
    message
        .attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet6(
            // The kernel masks host bits off IPv6 destinations anyway.
            route.dst.network(),
        )));
    // Metric 0 means "the default" (1024) on add and "any metric" on delete.
    message
        .attributes
        .push(RouteAttribute::Priority(route.metric));
    if let Some(index) = route.ifindex {
        message.attributes.push(RouteAttribute::Oif(index));
    }
    message
}

/// The header's table is a u8; tables ≥ 256 only fit in RTA_TABLE, which overrides it.
pub(super) fn set_table(message: &mut RouteMessage, table: u32) {
    message.header.table = u8::try_from(table).unwrap_or(0);
    message.attributes.push(RouteAttribute::Table(table));
}

/// A workload's bridge, created up. Forward delay 0: the bridge runs no STP (the
/// kernel's default for a new bridge), and a port should forward as soon as a
/// container's veth is attached, not 15 s later, when its first router solicitations
/// are long gone.
pub(super) fn new_bridge_message(name: &str) -> LinkMessage {
    let mut message = LinkMessage::default();
    message.header.flags = LinkFlags::Up;
    message.header.change_mask = LinkFlags::Up;
    message
        .attributes
        .push(LinkAttribute::IfName(name.to_string()));
    message.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Bridge),
        LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::ForwardDelay(0)])),
    ]));
    message
}

/// Set the alias of link `name`. The kernel takes IFLA_IFALIAS only on a change to an
/// existing link, not in the request that creates it.
pub(super) fn alias_message(name: &str, alias: &str) -> LinkMessage {
    let mut message = LinkMessage::default();
    message
        .attributes
        .push(LinkAttribute::IfName(name.to_string()));
    message
        .attributes
        .push(LinkAttribute::IfAlias(alias.to_string()));
    message
}

/// Delete link `name`.
pub(super) fn del_link_message(name: &str) -> LinkMessage {
    let mut message = LinkMessage::default();
    message
        .attributes
        .push(LinkAttribute::IfName(name.to_string()));
    message
}

/// A proxy NDP entry request, as `ip -6 neigh add|del proxy ADDR dev IF` sends it.
/// `stamp` Some(p): an add carries NDA_PROTOCOL p, which the kernel keeps on the entry
/// and reports in dumps (Linux 5.2+); a delete matches no protocol (the kernel's
/// pneigh_delete takes none), so routed6d deletes only entries a dump showed its own.
pub(super) fn proxy_message(proxy: &Proxy, stamp: Option<u8>) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = AddressFamily::Inet6;
    message.header.ifindex = proxy.ifindex;
    message.header.flags = NeighbourFlags::Proxy;
    message.header.state = NeighbourState::Permanent;
    message
        .attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet6(
            proxy.addr,
        )));
    if let Some(protocol) = stamp {
        message
            .attributes
            .push(NeighbourAttribute::Protocol(RouteProtocol::from(protocol)));
    }
    message
}

/// A dump request of the IPv6 neighbour caches (`proxy` false) or of the proxy
/// entries (`proxy` true). Strict checking allows no state and no flag but NTF_PROXY.
pub(super) fn neighbour_dump(proxy: bool) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = AddressFamily::Inet6;
    if proxy {
        message.header.flags = NeighbourFlags::Proxy;
    }
    message
}
