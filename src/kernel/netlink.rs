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

mod decode;
mod encode;
mod errno;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use ipnet::Ipv6Net;
use netlink_packet_core::{
    DecodeError, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, Parseable,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::{RouteMessage, RouteProtocol, RouteScope, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use nix::errno::Errno;
use tracing::{info, warn};

use crate::config::{AddressOwnership, DaemonConfig};
use crate::damping::Object;
use crate::kernel::record::{self, AddressRecord, Contents};
use crate::kernel::reflex::SharedReflexes;
use crate::kernel::socket::RouteSocket;
use crate::kernel::{Applied, Kernel, KernelError, sysctl};
use crate::model::{
    Address, Link, Neighbour, ObservedAddress, ObservedProxy, ObservedRoute, ObservedState, Op,
    TABLE_LOCAL, TABLE_MAIN,
};

use decode::{
    Neighbourly, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWNEIGH, RTM_NEWROUTE, address_flags,
    observed_address, observed_neighbour, observed_route, seen_of,
};
pub(crate) use decode::{address_protocol, link_of, local_address, removed_object, route_key};
use errno::{NlResult, ignore_errno, op_error};

/// What an add that the kernel answered with `errno` (None: done) did, as `apply_op`
/// would tell it: a reflex's answer (`reflex`), read by the event watcher.
pub fn add_answered(op: &Op, errno: Option<i32>) -> Result<Applied, KernelError> {
    match errno {
        None => Ok(Applied::Changed),
        Some(libc::EEXIST) => Ok(Applied::AlreadyThere),
        Some(errno) => Err(op_error(op, io::Error::from_raw_os_error(errno))),
    }
}

/// How often `observe` redoes a dump the kernel flagged as interrupted (NLM_F_DUMP_INTR:
/// the table changed while it was being dumped) before giving up.
const DUMP_ATTEMPTS: usize = 5;

/// Where `open` adds an address to `lo` for a moment to learn whether the kernel keeps
/// IFA_PROTO: a unique local prefix that spells "routed6" in ASCII, so nobody else has
/// a reason to use it.
pub const PROBE_PREFIX: Ipv6Net = match Ipv6Net::new(
    Ipv6Addr::new(0xfd72, 0x6f75, 0x7465, 0x6436, 0, 0, 0, 0),
    64,
) {
    Ok(net) => net,
    Err(_) => panic!("a /64 is a valid prefix length"),
};

/// This probe's own address in `PROBE_PREFIX`: the process id and a count of this
/// process's probes. Probes that run at once (the daemon starting while an operator
/// runs `routed6d status`) never add, read or delete each other's address.
fn probe_address() -> Ipv6Addr {
    static PROBES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let count = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let interface_id = u64::from(std::process::id()) << 32 | u64::from(count);
    Ipv6Addr::from(u128::from(PROBE_PREFIX.network()) | u128::from(interface_id))
}
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
    /// What the event watcher puts back itself (`reflex`): armed by the daemon, and
    /// disarmed here before routed6d deletes an object.
    reflexes: SharedReflexes,
    /// `observe` reads the neighbour caches too (`Kernel::observe_neighbours`).
    neighbours: bool,
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
            reflexes: SharedReflexes::new(protocol),
            neighbours: false,
        })
    }

    /// Open the connection as the daemon and the commands use it: addresses are owned
    /// through IFA_PROTO when the kernel keeps it (`address_ownership = "auto"` probes),
    /// else through the record in `state_dir`. Logs which, once.
    pub async fn open(daemon: &DaemonConfig) -> Result<Self, KernelError> {
        let mut kernel = Self::new(daemon.protocol)?;
        let why = match daemon.address_ownership {
            AddressOwnership::Record => "address_ownership = \"record\"",
            AddressOwnership::Auto => match kernel.keeps_address_protocols().await {
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

    /// Does an IPv6 address already carry IFA_PROTO? The kernel reports the attribute
    /// only when it keeps it and it is not zero: since Linux 6.3 its own `::1` and
    /// link-local addresses carry one (IFAPROT_KERNEL_LO, _LL), and an earlier
    /// routed6d's addresses carry its protocol. false proves nothing (a 5.18–6.2 kernel
    /// with no address of anyone's that has one): then only `probe_address_protocol`
    /// tells.
    async fn sees_address_protocols(&mut self) -> NlResult<bool> {
        let mut request = AddressMessage::default();
        request.header.family = AddressFamily::Inet6;
        let parse = |payload: &[u8]| AddressMessage::parse(payload).map(Some);
        let mut seen = false;
        self.dump_each(
            RouteNetlinkMessage::GetAddress(request),
            RTM_NEWADDR,
            parse,
            |address| seen |= address_protocol(&address) != 0,
        )
        .await?;
        Ok(seen)
    }

    /// Does the kernel keep IFA_PROTO? Seen on an address already there, no probe is
    /// written (a read-only command stays read-only, a running daemon sees no event).
    async fn keeps_address_protocols(&mut self) -> NlResult<bool> {
        match self.sees_address_protocols().await {
            Ok(true) => Ok(true),
            Ok(false) | Err(_) => self.probe_address_protocol().await,
        }
    }

    /// Does the kernel keep IFA_PROTO? Adds a probe address to `lo` with it, reads the
    /// address back and deletes it. Kernels before 5.18 parse RTM_NEWADDR leniently and
    /// drop the unknown attribute, so only reading it back tells; a doit RTM_GETADDR
    /// (not a dump) reads the one address.
    async fn probe_address_protocol(&mut self) -> NlResult<bool> {
        let probe = Address {
            ifindex: LOOPBACK_IFINDEX,
            addr: probe_address(),
            prefix_len: 128,
            ifname: "lo".into(),
            no_prefix_route: false,
        };
        // The probe is about IFA_PROTO: always stamped.
        let stamp = Some(self.protocol);
        let add = || RouteNetlinkMessage::NewAddress(encode::address_message(&probe, true, stamp));
        let delete =
            || RouteNetlinkMessage::DelAddress(encode::address_message(&probe, false, None));
        let mut added = self.ack(add(), NLM_F_CREATE | NLM_F_EXCL).await;
        if added
            .as_ref()
            .is_err_and(|e| e.raw_os_error() == Some(libc::EEXIST))
        {
            // Left by a probe of an earlier process with this pid that was cut short:
            // start from a clean slate.
            ignore_errno(self.ack(delete(), 0).await, &[libc::EADDRNOTAVAIL])?;
            added = self.ack(add(), NLM_F_CREATE | NLM_F_EXCL).await;
        }
        added?;
        let read = self.get_address(LOOPBACK_IFINDEX, probe.addr).await;
        let deleted = ignore_errno(self.ack(delete(), 0).await, &[libc::EADDRNOTAVAIL]);
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
                        errno: e.raw_os_error().map(Errno::from_raw),
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

    /// What an address add is stamped with: IFA_PROTO where the kernel keeps it, nothing
    /// when the record owns addresses.
    fn stamp(&self) -> Option<u8> {
        matches!(self.ownership, Ownership::Kernel).then_some(self.protocol)
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

    /// The proxy entries (`proxy`) or the neighbour caches, IPv6 only; None when the
    /// kernel flagged the dump as interrupted.
    async fn dump_neighbours(
        &mut self,
        proxy: bool,
        names: &HashMap<u32, Arc<str>>,
        proxies: &mut Vec<ObservedProxy>,
        neighbours: &mut Vec<Neighbour>,
    ) -> NlResult<bool> {
        self.dump_each(
            RouteNetlinkMessage::GetNeighbour(encode::neighbour_dump(proxy)),
            RTM_NEWNEIGH,
            |payload| observed_neighbour(payload, names),
            |found| match found {
                Neighbourly::Proxy(p) => proxies.push(p),
                Neighbourly::Cache(n) => neighbours.push(n),
            },
        )
        .await
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
        encode::set_table(&mut request, table);
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
                errno: e.raw_os_error().map(Errno::from_raw),
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
        // Proxy entries always (a withdrawal must find routed6d's whatever the
        // configuration says now); the caches only for an on-link prefix's workloads.
        let mut proxies = Vec::new();
        let mut neighbours = Vec::new();
        let caches = if self.neighbours {
            &[true, false][..]
        } else {
            &[true][..]
        };
        for &proxy in caches {
            let consistent = self
                .dump_neighbours(proxy, &names, &mut proxies, &mut neighbours)
                .await
                .map_err(dump_error("IPv6 neighbours"))?;
            if !consistent {
                return Ok(None);
            }
        }
        Ok(Some(ObservedState {
            links,
            addresses,
            routes,
            sysctls: BTreeMap::new(),
            proxies,
            neighbours,
        }))
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
                        errno: None,
                        message: format!(
                            "interrupted by concurrent changes {DUMP_ATTEMPTS} times in a row"
                        ),
                    });
                }
            }
        };
        for key in sysctl_keys {
            if let Some(value) = sysctl::read(key)? {
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
                return sysctl::write(key, value).map(|()| Applied::Changed);
            }
            Op::AddAddress(address) => {
                let message = encode::address_message(address, true, self.stamp());
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
                self.reflexes.lock().disarm(&Object::of_address(address));
                let message = encode::address_message(address, false, None);
                ignore_errno(
                    self.ack(RouteNetlinkMessage::DelAddress(message), 0).await,
                    &[libc::EADDRNOTAVAIL, libc::ENOENT, libc::ESRCH],
                )
            }
            Op::AddRoute(route) => {
                let message = encode::route_message(route, self.protocol);
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
                let message = encode::route_message(route, self.protocol);
                self.ack(
                    RouteNetlinkMessage::NewRoute(message),
                    NLM_F_CREATE | NLM_F_REPLACE,
                )
                .await
                .map(|()| Applied::Changed)
            }
            Op::AddBridge(bridge) => {
                // EEXIST: someone else made a link of that name meanwhile. It is not
                // routed6d's, so it gets no alias (and is never deleted).
                match self
                    .ack(
                        RouteNetlinkMessage::NewLink(encode::new_bridge_message(&bridge.name)),
                        NLM_F_CREATE | NLM_F_EXCL,
                    )
                    .await
                {
                    Ok(()) => self
                        .ack(
                            RouteNetlinkMessage::SetLink(encode::alias_message(
                                &bridge.name,
                                &bridge.alias,
                            )),
                            0,
                        )
                        .await
                        .map(|()| Applied::Changed),
                    Err(e) => ignore_errno(Err(e), &[libc::EEXIST]),
                }
            }
            Op::AddProxy(proxy) => {
                // The plan adds only where no entry is: the kernel would take this add
                // over anyone's entry (no NLM_F_EXCL for proxies) and stamp it ours.
                let message = encode::proxy_message(proxy, Some(self.protocol));
                self.ack(
                    RouteNetlinkMessage::NewNeighbour(message),
                    NLM_F_CREATE | NLM_F_EXCL,
                )
                .await
                .map(|()| Applied::Changed)
            }
            Op::DelProxy(proxy) => {
                let message = encode::proxy_message(proxy, None);
                ignore_errno(
                    self.ack(RouteNetlinkMessage::DelNeighbour(message), 0)
                        .await,
                    &[libc::ENOENT, libc::ESRCH],
                )
            }
            Op::DelBridge(bridge) => ignore_errno(
                self.ack(
                    RouteNetlinkMessage::DelLink(encode::del_link_message(&bridge.name)),
                    0,
                )
                .await,
                &[libc::ENODEV],
            ),
            Op::DelRoute(route) => {
                self.reflexes.lock().disarm(&Object::of_route(route));
                // The protocol in the request makes the kernel match only a route of
                // ours (ip6_route_del skips routes whose protocol differs), so a
                // foreign route that took the slot meanwhile is left alone: ESRCH.
                let message = encode::route_message(route, self.protocol);
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

    fn reflexes(&self) -> Option<SharedReflexes> {
        Some(self.reflexes.clone())
    }

    fn observe_neighbours(&mut self, on: bool) {
        self.neighbours = on;
    }

    async fn observe_proxies(&mut self) -> Result<Vec<ObservedProxy>, KernelError> {
        // Interface names are for humans and this look compares (ifindex, addr) only:
        // no links dump.
        let names = HashMap::new();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut proxies = Vec::new();
            let consistent = self
                .dump_neighbours(true, &names, &mut proxies, &mut Vec::new())
                .await
                .map_err(|e| KernelError::Dump {
                    what: "IPv6 proxy entries",
                    errno: e.raw_os_error().map(Errno::from_raw),
                    message: e.to_string(),
                })?;
            if consistent {
                return Ok(proxies);
            }
            if attempt >= DUMP_ATTEMPTS {
                return Err(KernelError::Dump {
                    what: "IPv6 proxy entries",
                    errno: None,
                    message: format!(
                        "interrupted by concurrent changes {DUMP_ATTEMPTS} times in a row"
                    ),
                });
            }
        }
    }

    fn reflex_request(&self, op: &Op) -> Option<Vec<u8>> {
        let request =
            match op {
                // Without IFA_PROTO an address's removal cannot be told routed6d's.
                Op::AddAddress(address) => RouteNetlinkMessage::NewAddress(
                    encode::address_message(address, true, Some(self.stamp()?)),
                ),
                Op::AddRoute(route) => {
                    RouteNetlinkMessage::NewRoute(encode::route_message(route, self.protocol))
                }
                _ => return None,
            };
        let mut message = NetlinkMessage::new(NetlinkHeader::default(), request.into());
        message.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        message.finalize();
        let mut bytes = vec![0; message.buffer_len()];
        message.serialize(&mut bytes);
        Some(bytes)
    }

    async fn interface_addresses(&mut self, name: &str) -> Result<Vec<IpAddr>, KernelError> {
        let dump_error = |e: io::Error| KernelError::Dump {
            what: "interface addresses",
            errno: e.raw_os_error().map(Errno::from_raw),
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

#[cfg(test)]
mod tests;
