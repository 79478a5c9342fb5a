//! The real kernel behind `Kernel`: one netlink socket (`socket::RouteSocket`) that
//! dumps links, IPv6 addresses and the IPv6 routes of tables main and local, and
//! applies each `Op` as one idempotent request, stamped with routed6d's protocol number.
//!
//! Messages are built by hand (not with rtnetlink's request builders) because every
//! flag matters here: NLM_F_EXCL vs NLM_F_REPLACE, the protocol on deletes, IFA_PROTO.
//!
//! Addresses are told apart by IFA_PROTO where the kernel keeps it (Linux 5.18+; older
//! kernels ignore the attribute on add and never report it). `open` probes for it and
//! otherwise keeps ownership in an `AddressRecord`, mapping recorded addresses to
//! routed6d's protocol in every dump so that the plan works the same on both.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use ipnet::Ipv6Net;
use netlink_packet_core::{
    DecodeError, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NlasIterator, Parseable,
    ParseableParametrized,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeader, AddressHeaderFlags, AddressMessage,
    AddressProtocol, AddressScope,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteLwEnCapType, RouteMessage,
    RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use tracing::{info, warn};

use crate::config::{AddressOwnership, DaemonConfig};
use crate::kernel::record::{self, AddressRecord, Contents, Entry, Seen};
use crate::kernel::socket::RouteSocket;
use crate::kernel::{Applied, Kernel, KernelError};
use crate::model::{
    Address, Link, ObservedAddress, ObservedRoute, ObservedState, Op, Route, RouteKind,
    TABLE_LOCAL, TABLE_MAIN,
};

/// How often `observe` redoes a dump the kernel flagged as interrupted (NLM_F_DUMP_INTR:
/// the table changed while it was being dumped) before giving up.
const DUMP_ATTEMPTS: usize = 5;

/// The address `open` adds to `lo` for a moment to learn whether the kernel keeps
/// IFA_PROTO: a unique local address whose prefix fd72:6f75:7465:6436::/64 spells
/// "routed6" in ASCII, so nobody else has a reason to use it.
pub const PROBE_ADDRESS: Ipv6Addr = Ipv6Addr::new(0xfd72, 0x6f75, 0x7465, 0x6436, 0, 0, 0, 1);
/// `lo` has this index in every network namespace.
const LOOPBACK_IFINDEX: u32 = 1;

/// The netlink socket and the protocol number routed6d owns.
pub struct NetlinkKernel {
    /// Every request goes over this one socket, its answer read a datagram at a time
    /// (`socket`).
    socket: RouteSocket,
    protocol: u8,
    counts: RequestCounts,
    ownership: Ownership,
}

/// How routed6d's addresses are told from others.
enum Ownership {
    /// IFA_PROTO, stamped on add and reported in dumps.
    Kernel,
    /// No IFA_PROTO is sent or believed: the record names routed6d's addresses.
    Record(AddressRecord),
}

/// Netlink requests sent since the kernel was opened: what the benchmark counts to
/// prove that a reconcile with nothing to do writes nothing, and that a change writes
/// exactly the ops it needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Requests that change the kernel (RTM_NEW*/RTM_DEL*).
    pub writes: u64,
    /// Dump requests (RTM_GET* with NLM_F_DUMP).
    pub dumps: u64,
}

/// One request's outcome below the `Kernel` API: the errno is in `raw_os_error()`.
type NlResult<T> = Result<T, io::Error>;

impl NetlinkKernel {
    /// Open the socket on the current tokio runtime (current_thread is fine), in the
    /// network namespace of the calling thread.
    pub fn new(protocol: u8) -> Result<Self, KernelError> {
        let socket = RouteSocket::open().map_err(KernelError::Socket)?;
        Ok(Self {
            socket,
            protocol,
            counts: RequestCounts::default(),
            ownership: Ownership::Kernel,
        })
    }

    /// Open the connection as the daemon and the commands use it: addresses are owned
    /// through IFA_PROTO when the kernel keeps it (`address_ownership = "auto"` probes),
    /// else through the record in `state_dir`. Logs which, once.
    pub async fn open(daemon: &DaemonConfig) -> Result<Self, KernelError> {
        let mut kernel = Self::new(daemon.protocol)?;
        let why = match daemon.address_ownership {
            AddressOwnership::Record => "address_ownership = \"record\"",
            AddressOwnership::Auto => match kernel.probe_address_protocol().await {
                Ok(true) => {
                    info!(
                        "address ownership: kernel address protocols (IFA_PROTO {})",
                        daemon.protocol
                    );
                    return Ok(kernel);
                }
                Ok(false) => "this kernel does not keep address protocols (IFA_PROTO)",
                Err(e) => {
                    // Keeping a record is the safe side: it claims only what it saw
                    // routed6d add.
                    warn!("cannot probe the kernel for address protocols: {e}");
                    "the probe for address protocols failed"
                }
            },
        };
        let (record, contents) =
            AddressRecord::open(&daemon.state_dir).map_err(|source| KernelError::Record {
                op: "address ownership".into(),
                consequence: "",
                source,
            })?;
        let found = match contents {
            Contents::Missing => "none yet".to_string(),
            Contents::Current(entries) => format!("{} address(es) of this boot", entries.len()),
            Contents::OtherBoot(_) => {
                "written before the last reboot, so it claims nothing".to_string()
            }
            Contents::Unreadable(e) => {
                warn!(
                    "the address record {} is damaged and claims nothing: addresses it named stay until removed by hand ({e})",
                    record.path().display()
                );
                "damaged".to_string()
            }
        };
        info!(
            "address ownership: a record at {} ({why}; {found})",
            record.path().display()
        );
        kernel.ownership = Ownership::Record(record);
        Ok(kernel)
    }

    /// The record's path when addresses are owned through it (None: IFA_PROTO).
    pub fn record_path(&self) -> Option<&std::path::Path> {
        match &self.ownership {
            Ownership::Kernel => None,
            Ownership::Record(record) => Some(record.path()),
        }
    }

    /// Does the kernel keep IFA_PROTO? Adds `PROBE_ADDRESS` to `lo` with it, reads the
    /// address back and deletes it. Kernels before 5.18 parse RTM_NEWADDR leniently and
    /// drop the unknown attribute, so only reading it back tells; a doit RTM_GETADDR
    /// (not a dump) reads the one address.
    async fn probe_address_protocol(&mut self) -> NlResult<bool> {
        let probe = Address {
            ifindex: LOOPBACK_IFINDEX,
            addr: PROBE_ADDRESS,
            prefix_len: 128,
            ifname: "lo".into(),
            no_prefix_route: false,
        };
        let add =
            |kernel: &Self| RouteNetlinkMessage::NewAddress(kernel.address_message(&probe, true));
        let delete =
            |kernel: &Self| RouteNetlinkMessage::DelAddress(kernel.address_message(&probe, false));
        let mut added = self.ack(add(self), NLM_F_CREATE | NLM_F_EXCL).await;
        if added
            .as_ref()
            .is_err_and(|e| e.raw_os_error() == Some(libc::EEXIST))
        {
            // Left by a probe that was cut short: start from a clean slate.
            ignore_errno(self.ack(delete(self), 0).await, &[libc::EADDRNOTAVAIL])?;
            added = self.ack(add(self), NLM_F_CREATE | NLM_F_EXCL).await;
        }
        added?;
        let read = self.get_address(LOOPBACK_IFINDEX, PROBE_ADDRESS).await;
        let deleted = ignore_errno(self.ack(delete(self), 0).await, &[libc::EADDRNOTAVAIL]);
        let read = read?;
        deleted?;
        Ok(read.is_some_and(|m| address_protocol(&m) == self.protocol))
    }

    /// One address, read with a doit RTM_GETADDR; None when the kernel has none there.
    async fn get_address(
        &mut self,
        ifindex: u32,
        addr: Ipv6Addr,
    ) -> NlResult<Option<AddressMessage>> {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet6;
        message.header.index = ifindex;
        // Strict checking allows only IFA_ADDRESS and IFA_LOCAL in a get request.
        message
            .attributes
            .push(AddressAttribute::Address(IpAddr::V6(addr)));
        let mut found = None;
        let answer = self
            .socket
            .get(RouteNetlinkMessage::GetAddress(message), |kind, payload| {
                if kind == RTM_NEWADDR {
                    found = Some(AddressMessage::parse(payload));
                }
            })
            .await;
        match answer {
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(None),
            Err(e) => Err(e),
            Ok(()) => found
                .transpose()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        }
    }

    /// After an op succeeded, keep the record in step (record mode only): an address
    /// the kernel created for routed6d's add is recorded as the kernel reports it; one
    /// routed6d deleted, or found gone, is forgotten.
    async fn note_ownership(&mut self, op: &Op, applied: Applied) -> Result<(), KernelError> {
        let netns = match &self.ownership {
            Ownership::Kernel => return Ok(()),
            Ownership::Record(record) => record.netns(),
        };
        match op {
            // EEXIST: the address was there before routed6d's add, so it is not ours.
            Op::AddAddress(address) if applied == Applied::Changed => {
                let read = self
                    .get_address(address.ifindex, address.addr)
                    .await
                    .map_err(|e| KernelError::Op {
                        op: op.to_string(),
                        message: format!("added, but cannot read it back to record it: {e}"),
                        hint: " (routed6d will leave it in place)".into(),
                    })?;
                let Some(seen) = read.as_ref().and_then(|m| seen_of(m, netns)) else {
                    // Gone again already: nothing of routed6d's to remember.
                    return Ok(());
                };
                // Only the address as routed6d added it (a manager may have replaced it
                // in between).
                if seen.nodad
                    && seen.entry.prefix_len == address.prefix_len
                    && seen.entry.no_prefix_route == address.no_prefix_route
                    && let Ownership::Record(record) = &mut self.ownership
                {
                    record
                        .add(seen.entry)
                        .map_err(|e| record_error(op, ADDED_UNRECORDED, e))?;
                }
            }
            Op::DelAddress(address) => {
                if let Ownership::Record(record) = &mut self.ownership {
                    record
                        .remove(address.ifindex, address.addr)
                        .map_err(|e| record_error(op, DELETED_RECORDED, e))?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Requests sent so far (writes and dumps).
    pub fn request_counts(&self) -> RequestCounts {
        self.counts
    }

    /// The protocol number stamped on routes (rtm_protocol) and addresses (IFA_PROTO).
    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    /// Send one request that changes the kernel and wait for its ACK (or errno).
    async fn ack(&mut self, message: RouteNetlinkMessage, flags: u16) -> NlResult<()> {
        self.counts.writes += 1;
        self.socket.write(message, flags).await
    }

    /// Run one dump, handing each message of type `kind` to `parse` (its payload, read
    /// in place) and what it yields to `keep`. Returns false when the kernel flagged
    /// the dump as interrupted. A message that does not parse fails the dump: what it
    /// held may have been ours.
    async fn dump_each<T>(
        &mut self,
        request: RouteNetlinkMessage,
        kind: u16,
        parse: impl Fn(&[u8]) -> Result<Option<T>, DecodeError>,
        mut keep: impl FnMut(T),
    ) -> NlResult<bool> {
        self.counts.dumps += 1;
        let mut malformed = None;
        let consistent = self
            .socket
            .dump(request, |message_kind, payload| {
                if message_kind != kind {
                    return;
                }
                match parse(payload) {
                    Ok(Some(object)) => keep(object),
                    Ok(None) => {}
                    Err(e) => {
                        malformed.get_or_insert(e);
                    }
                }
            })
            .await?;
        match malformed {
            Some(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            None => Ok(consistent),
        }
    }

    async fn dump_links(&mut self) -> NlResult<Option<Vec<Link>>> {
        let mut links = Vec::new();
        let request = RouteNetlinkMessage::GetLink(LinkMessage::default());
        let consistent = self
            .dump_each(
                request,
                RTM_NEWLINK,
                |payload| LinkMessage::parse(payload).map(Some),
                |link| links.push(link_of(&link)),
            )
            .await?;
        Ok(consistent.then_some(links))
    }

    /// Every IPv6 address. With the record, IFA_PROTO is ignored and the addresses it
    /// names get routed6d's protocol instead (what the plan compares); recorded
    /// addresses the dump no longer shows are dropped from the record.
    async fn dump_addresses(
        &mut self,
        names: &HashMap<u32, Arc<str>>,
    ) -> NlResult<Option<Vec<ObservedAddress>>> {
        let mut addresses = Vec::new();
        let mut request = AddressMessage::default();
        request.header.family = AddressFamily::Inet6;
        // Read before the dump: an entry recorded later is not dropped by it.
        let (recorded, netns) = match &mut self.ownership {
            Ownership::Kernel => (None, None),
            Ownership::Record(record) => {
                record.refresh().map_err(io::Error::other)?;
                (Some(record.entries().clone()), Some(record.netns()))
            }
        };
        let protocol = self.protocol;
        let mut matched = std::collections::BTreeSet::new();
        let consistent = self
            .dump_each(
                RouteNetlinkMessage::GetAddress(request),
                RTM_NEWADDR,
                |payload| observed_address(payload, names, netns),
                |(mut observed, seen)| {
                    if let (Some(recorded), Some(seen)) = (&recorded, seen)
                        && record::claims(recorded, &seen)
                    {
                        observed.protocol = protocol;
                        matched.insert(seen.entry);
                    }
                    addresses.push(observed);
                },
            )
            .await?;
        if consistent
            && let (Some(recorded), Ownership::Record(record)) = (&recorded, &mut self.ownership)
            && let Err(e) = record.forget(&record::missing(recorded, &matched, record.netns()))
        {
            // A stale entry claims nothing (the kernel stamps a new address anew):
            // failing to drop it costs nothing but this line.
            warn!("cannot drop addresses gone from the kernel from the record: {e}");
        }
        Ok(consistent.then_some(addresses))
    }

    /// Routes of one table. With NETLINK_GET_STRICT_CHK the kernel filters the dump by
    /// family and table itself, so a full BGP table elsewhere costs nothing here.
    ///
    /// `protocol` Some(p): only routes of protocol p (the kernel filters on
    /// rtm_protocol since Linux 4.20; older kernels send all and they are dropped here).
    async fn dump_routes(
        &mut self,
        table: u32,
        protocol: Option<u8>,
        names: &HashMap<u32, Arc<str>>,
        routes: &mut Vec<ObservedRoute>,
    ) -> NlResult<bool> {
        let mut request = RouteMessage::default();
        request.header.address_family = AddressFamily::Inet6;
        set_table(&mut request, table);
        // Strict checking rejects a dump request with a non-zero scope. Protocol
        // "unspec" means no filter: the full dump must see foreign routes in our
        // slots. No filter on type either.
        request.header.scope = RouteScope::Universe;
        request.header.protocol = RouteProtocol::from(protocol.unwrap_or(0));
        request.header.kind = RouteType::Unspec;
        self.dump_each(
            RouteNetlinkMessage::GetRoute(request),
            RTM_NEWROUTE,
            |payload| observed_route(payload, names),
            |observed| {
                // Kernels without strict checking ignore the filters.
                if protocol.is_none_or(|p| observed.protocol == p) && observed.route.table == table
                {
                    routes.push(observed);
                }
            },
        )
        .await
    }

    /// One consistent dump of links, addresses and routes, or None when the kernel
    /// flagged one of them as interrupted.
    /// `protocol` Some(p): only the routes of protocol p.
    async fn observe_once(
        &mut self,
        protocol: Option<u8>,
    ) -> Result<Option<ObservedState>, KernelError> {
        let dump_error = |what: &'static str| {
            move |e: io::Error| KernelError::Dump {
                what,
                message: e.to_string(),
            }
        };
        let Some(links) = self.dump_links().await.map_err(dump_error("links"))? else {
            return Ok(None);
        };
        let names: HashMap<u32, Arc<str>> = links
            .iter()
            .map(|l| (l.index, Arc::from(l.name.as_str())))
            .collect();
        let Some(addresses) = self
            .dump_addresses(&names)
            .await
            .map_err(dump_error("IPv6 addresses"))?
        else {
            return Ok(None);
        };
        let mut routes = Vec::new();
        for table in [TABLE_MAIN, TABLE_LOCAL] {
            let consistent = self
                .dump_routes(table, protocol, &names, &mut routes)
                .await
                .map_err(dump_error("IPv6 routes"))?;
            if !consistent {
                return Ok(None);
            }
        }
        Ok(Some(ObservedState {
            links,
            addresses,
            routes,
            sysctls: BTreeMap::new(),
        }))
    }

    fn address_message(&self, address: &Address, add: bool) -> AddressMessage {
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
            // IFA_PROTO (Linux 5.18+); older kernels ignore the attribute. Not sent
            // when the record owns addresses, as on those kernels.
            if matches!(self.ownership, Ownership::Kernel) {
                message
                    .attributes
                    .push(AddressAttribute::Protocol(AddressProtocol::from(
                        self.protocol,
                    )));
            }
        }
        message
    }

    fn route_message(&self, route: &Route) -> RouteMessage {
        let mut message = RouteMessage::default();
        let header = &mut message.header;
        header.address_family = AddressFamily::Inet6;
        header.destination_prefix_length = route.dst.prefix_len();
        header.protocol = RouteProtocol::from(self.protocol);
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

    async fn interface_index(&mut self, name: &str) -> NlResult<Option<u32>> {
        // The kernel answers EINVAL, not ENODEV, for a name no interface can have.
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Ok(None);
        }
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        let mut index = None;
        let answer = self
            .socket
            .get(RouteNetlinkMessage::GetLink(message), |kind, payload| {
                if kind == RTM_NEWLINK {
                    index = LinkMessage::parse(payload).ok().map(|l| l.header.index);
                }
            })
            .await;
        match answer {
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
            Ok(()) => Ok(index),
        }
    }

    async fn global_addresses(
        &mut self,
        index: u32,
        family: AddressFamily,
        into: &mut Vec<IpAddr>,
    ) -> NlResult<()> {
        let mut request = AddressMessage::default();
        request.header.family = family;
        // Strict checking lets the kernel filter by interface.
        request.header.index = index;
        let parse = |payload: &[u8]| AddressMessage::parse(payload).map(Some);
        self.dump_each(
            RouteNetlinkMessage::GetAddress(request),
            RTM_NEWADDR,
            parse,
            |address| {
                if address.header.index != index || address.header.scope != AddressScope::Universe {
                    return;
                }
                let flags = address_flags(&address);
                // Secondary is also IPv6's "temporary" (privacy) flag.
                if flags.intersects(
                    AddressFlags::Secondary | AddressFlags::Deprecated | AddressFlags::Dadfailed,
                ) {
                    return;
                }
                if let Some(addr) = local_address(&address) {
                    into.push(addr);
                }
            },
        )
        .await
        .map(|_| ())
    }
}

impl NetlinkKernel {
    /// `observe`, with the routes limited to `protocol` when given.
    async fn observe_with(
        &mut self,
        sysctl_keys: &[String],
        protocol: Option<u8>,
    ) -> Result<ObservedState, KernelError> {
        let mut attempt = 0;
        let mut state = loop {
            attempt += 1;
            match self.observe_once(protocol).await? {
                Some(state) => break state,
                None if attempt < DUMP_ATTEMPTS => continue,
                None => {
                    return Err(KernelError::Dump {
                        what: "links, addresses and routes",
                        message: format!(
                            "interrupted by concurrent changes {DUMP_ATTEMPTS} times in a row"
                        ),
                    });
                }
            }
        };
        for key in sysctl_keys {
            if let Some(value) = read_sysctl(key)? {
                state.sysctls.insert(key.clone(), value);
            }
        }
        Ok(state)
    }
}

impl Kernel for NetlinkKernel {
    async fn observe(&mut self, sysctl_keys: &[String]) -> Result<ObservedState, KernelError> {
        self.observe_with(sysctl_keys, None).await
    }

    async fn observe_owned(
        &mut self,
        sysctl_keys: &[String],
        protocol: u8,
    ) -> Result<ObservedState, KernelError> {
        self.observe_with(sysctl_keys, Some(protocol)).await
    }

    async fn apply_op(&mut self, op: &Op) -> Result<Applied, KernelError> {
        let result: NlResult<Applied> = match op {
            Op::SetSysctl { key, value, .. } => {
                return write_sysctl(key, value).map(|()| Applied::Changed);
            }
            Op::AddAddress(address) => {
                let message = self.address_message(address, true);
                ignore_errno(
                    self.ack(
                        RouteNetlinkMessage::NewAddress(message),
                        NLM_F_CREATE | NLM_F_EXCL,
                    )
                    .await,
                    &[libc::EEXIST],
                )
            }
            Op::DelAddress(address) => {
                let message = self.address_message(address, false);
                ignore_errno(
                    self.ack(RouteNetlinkMessage::DelAddress(message), 0).await,
                    &[libc::EADDRNOTAVAIL, libc::ENOENT, libc::ESRCH],
                )
            }
            Op::AddRoute(route) => {
                let message = self.route_message(route);
                ignore_errno(
                    self.ack(
                        RouteNetlinkMessage::NewRoute(message),
                        NLM_F_CREATE | NLM_F_EXCL,
                    )
                    .await,
                    &[libc::EEXIST],
                )
            }
            Op::ReplaceRoute(route) => {
                let message = self.route_message(route);
                self.ack(
                    RouteNetlinkMessage::NewRoute(message),
                    NLM_F_CREATE | NLM_F_REPLACE,
                )
                .await
                .map(|()| Applied::Changed)
            }
            Op::DelRoute(route) => {
                // The protocol in the request makes the kernel match only a route of
                // ours (ip6_route_del skips routes whose protocol differs), so a
                // foreign route that took the slot meanwhile is left alone: ESRCH.
                let message = self.route_message(route);
                ignore_errno(
                    self.ack(RouteNetlinkMessage::DelRoute(message), 0).await,
                    &[libc::ESRCH, libc::ENOENT],
                )
            }
        };
        let applied = result.map_err(|e| op_error(op, e))?;
        self.note_ownership(op, applied).await?;
        Ok(applied)
    }

    async fn interface_addresses(&mut self, name: &str) -> Result<Vec<IpAddr>, KernelError> {
        let dump_error = |e: io::Error| KernelError::Dump {
            what: "interface addresses",
            message: e.to_string(),
        };
        let Some(index) = self.interface_index(name).await.map_err(dump_error)? else {
            return Ok(Vec::new());
        };
        let mut addresses = Vec::new();
        // IPv4 first: providers key a VPS by its primary IPv4 address.
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            self.global_addresses(index, family, &mut addresses)
                .await
                .map_err(dump_error)?;
        }
        Ok(addresses)
    }
}

/// What a failed record update after a successful add or delete means.
const ADDED_UNRECORDED: &str =
    " done, but not recorded as routed6d's, so routed6d will leave it in place";
const DELETED_RECORDED: &str =
    " done, but the record still names it (a stale entry claims nothing)";

fn record_error(op: &Op, consequence: &'static str, source: record::RecordError) -> KernelError {
    KernelError::Record {
        op: op.to_string(),
        consequence,
        source,
    }
}

/// Idempotency: the listed errnos mean the kernel already is where the op leads.
fn ignore_errno(result: NlResult<()>, errnos: &[i32]) -> NlResult<Applied> {
    match result {
        Ok(()) => Ok(Applied::Changed),
        Err(e)
            if e.raw_os_error()
                .is_some_and(|errno| errnos.contains(&errno)) =>
        {
            Ok(Applied::AlreadyThere)
        }
        Err(e) => Err(e),
    }
}

fn op_error(op: &Op, error: io::Error) -> KernelError {
    let hint = match error.raw_os_error() {
        // addrconf refuses addresses with EACCES when disable_ipv6 is set.
        Some(libc::EACCES) => match op {
            Op::AddAddress(a) => format!(
                " (is IPv6 disabled on {0}? check net.ipv6.conf.{0}.disable_ipv6)",
                a.ifname
            ),
            _ => " (routed6d needs CAP_NET_ADMIN)".to_string(),
        },
        Some(libc::EPERM) => " (routed6d needs CAP_NET_ADMIN)".to_string(),
        Some(libc::ENODEV) => " (interface gone)".to_string(),
        // fib6_nh_init refuses a route out of an interface that is administratively
        // down.
        Some(libc::ENETDOWN) => " (interface is down)".to_string(),
        Some(libc::ENETUNREACH) => {
            " (network unreachable: is the interface up with IPv6 enabled?)".to_string()
        }
        Some(libc::EEXIST) => match op {
            // REPLACE only fails with EEXIST if the slot is held by a route the kernel
            // will not swap (e.g. a different type in a multipath set).
            Op::ReplaceRoute(_) => " (another route holds this slot)".to_string(),
            _ => String::new(),
        },
        Some(libc::ESRCH) | Some(libc::ENOENT) => match op {
            Op::DelRoute(_) | Op::DelAddress(_) => String::new(),
            _ => " (table or interface missing)".to_string(),
        },
        Some(libc::ENOMEM) | Some(libc::ENOBUFS) => " (kernel out of memory)".to_string(),
        Some(libc::EOPNOTSUPP) => " (not supported by this kernel)".to_string(),
        _ => String::new(),
    };
    KernelError::Op {
        op: op.to_string(),
        message: error.to_string(),
        hint,
    }
}

fn link_of(message: &LinkMessage) -> Link {
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
    }
}

/// IFA_FLAGS (u32) when present, else the header's u8 flags.
fn address_flags(message: &AddressMessage) -> AddressFlags {
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
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;

/// A dumped IPv6 address message (the payload after the netlink header) as routed6d
/// models it. Like `observed_route`, only the attributes the model holds are parsed.
///
/// `record_netns` Some (record mode, the dumped namespace): IFA_PROTO is not read (the
/// record decides), and the address comes with what the record judges it by.
fn observed_address(
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
fn seen_of(message: &AddressMessage, netns: u64) -> Option<Seen> {
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

/// The header's table is a u8; tables ≥ 256 only fit in RTA_TABLE, which overrides it.
fn set_table(message: &mut RouteMessage, table: u32) {
    message.header.table = u8::try_from(table).unwrap_or(0);
    message.attributes.push(RouteAttribute::Table(table));
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
const RTM_NEWROUTE: u16 = 24;

/// A dumped route message (the payload after the netlink header) as routed6d models
/// it, or None for the kinds it never installs. Only the attributes the model holds
/// are parsed: a dump of 10 000 routes would otherwise build 10 000 attribute vectors
/// (with the nested metrics) to throw them away.
fn observed_route(
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

/// Reject keys that would leave /proc/sys.
fn sysctl_path(key: &str) -> Result<String, KernelError> {
    if key.is_empty() || key.starts_with('/') || key.split('/').any(|part| part == "..") {
        return Err(KernelError::Sysctl {
            key: key.to_string(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a path below /proc/sys"),
        });
    }
    Ok(format!("/proc/sys/{key}"))
}

/// The sysctl's value, trimmed; None when it does not exist (e.g. an interface's key
/// before the interface appears).
fn read_sysctl(key: &str) -> Result<Option<String>, KernelError> {
    match std::fs::read_to_string(sysctl_path(key)?) {
        Ok(value) => Ok(Some(value.trim().to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(KernelError::Sysctl {
            key: key.to_string(),
            source,
        }),
    }
}

fn write_sysctl(key: &str, value: &str) -> Result<(), KernelError> {
    std::fs::write(sysctl_path(key)?, value).map_err(|source| KernelError::Sysctl {
        key: key.to_string(),
        source,
    })
}
