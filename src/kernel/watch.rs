//! Kernel change events: a netlink socket subscribed to link, IPv6 address, IPv6
//! route and neighbour notifications, turned into `KernelEvent`s, so the daemon repairs drift
//! within milliseconds instead of at the next poll.
//!
//! Lost events are the failure that matters: the kernel drops notifications when the
//! socket's receive buffer is full (recv then fails with ENOBUFS), and this module
//! drops them when the consumer falls behind. Either way the consumer gets one
//! `KernelEvent::Resync` and must dump everything. The socket is read here directly
//! (not through netlink-proto) so ENOBUFS is seen as an errno and no unbounded queue
//! sits between the kernel and the consumer.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::time::Duration;

use netlink_packet_core::{NetlinkBuffer, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};
use netlink_packet_route::route::{RouteFlags, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{AsyncSocket, AsyncSocketExt, TokioSocket, protocols::NETLINK_ROUTE};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::damping::Object;
use crate::kernel::netlink::{address_protocol, link_of, local_address, removed_object, route_key};
use crate::kernel::reflex::SharedReflexes;
use crate::kernel::{KernelError, KernelEvent};

/// Receive buffer asked for: a burst of route changes (another daemon flushing a
/// table, `ip -batch`) overruns the default ~200 KiB in milliseconds.
pub const RECV_BUFFER: usize = 4 << 20;
/// Events queued for the consumer before the watcher stops queueing and owes a Resync.
pub const EVENT_QUEUE: usize = 4096;

// Multicast groups (linux/rtnetlink.h, enum rtnetlink_groups).
const RTNLGRP_LINK: u32 = 1;
/// Neighbour caches (and, with family AF_BRIDGE, the bridges' forwarding databases,
/// which are dropped here): the workloads behind an on-link prefix come and go by them.
/// Proxy entries would be announced here too, but no Linux release announces them
/// (`daemon::proxy_look`).
const RTNLGRP_NEIGH: u32 = 3;
const RTNLGRP_IPV6_IFADDR: u32 = 9;
const RTNLGRP_IPV6_ROUTE: u32 = 11;
const RTNLGRP_IPV6_NETCONF: u32 = 25;
/// RTM_NEWNETCONF (linux/rtnetlink.h): netlink-packet-route does not parse it, and
/// its type alone says enough (a setting such as forwarding changed).
const RTM_NEWNETCONF: u16 = 80;
/// RTM_DELNETCONF: an interface's settings went with the interface (a container's
/// veth, say), which RTM_DELLINK announces already. Not an unreadable message: before
/// this was named, every veth Docker removed cost a warning and a resync.
const RTM_DELNETCONF: u16 = 81;
/// RTM_NEWNEIGH and RTM_DELNEIGH (linux/rtnetlink.h).
const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;

/// sizeof(struct nlmsghdr): a message's payload starts after it.
const NETLINK_HEADER_LEN: usize = 16;
/// Largest datagram read at once; kernel notifications are single messages of at
/// most a page or two.
const DATAGRAM: usize = 64 * 1024;
/// Pause before reopening a socket that failed with something other than ENOBUFS.
const REOPEN_DELAY: Duration = Duration::from_secs(1);

/// A running watcher. Dropping it stops the background task and closes the socket.
pub struct Watch {
    events: mpsc::Receiver<KernelEvent>,
    task: JoinHandle<()>,
    /// What the watcher puts back itself (`reflex`); kept for a restart.
    reflexes: SharedReflexes,
    /// Subscribed to the neighbour group too (`start_reflexive_with`).
    neighbours: bool,
}

impl Watch {
    /// Subscribe with the default receive buffer and queue. Needs a tokio runtime
    /// (current_thread is fine); the socket lives in the calling thread's network
    /// namespace.
    pub fn start() -> Result<Watch, KernelError> {
        Self::start_with(RECV_BUFFER, EVENT_QUEUE)
    }

    /// Like `start`, with a receive buffer of `bytes` (tests use a small one to force
    /// the kernel to drop events).
    pub fn start_with_buffer(bytes: usize) -> Result<Watch, KernelError> {
        Self::start_with(bytes, EVENT_QUEUE)
    }

    /// Like `start`, with both the receive buffer and the event queue chosen.
    pub fn start_with(recv_buffer: usize, queue: usize) -> Result<Watch, KernelError> {
        Self::start_reflexive(recv_buffer, queue, SharedReflexes::default())
    }

    /// Like `start_with`, putting back at once what `reflexes` has armed (the daemon
    /// passes its kernel's).
    pub fn start_reflexive(
        recv_buffer: usize,
        queue: usize,
        reflexes: SharedReflexes,
    ) -> Result<Watch, KernelError> {
        Self::start_reflexive_with(recv_buffer, queue, reflexes, false)
    }

    /// Like `start_reflexive`, with `neighbours`: subscribed to the neighbour caches
    /// and proxy entries too (RTNLGRP_NEIGH), which only an on-link prefix's workloads
    /// need. Not for everyone: the caches change state with every conversation, and a
    /// daemon at rest must not wake for them.
    pub fn start_reflexive_with(
        recv_buffer: usize,
        queue: usize,
        reflexes: SharedReflexes,
        neighbours: bool,
    ) -> Result<Watch, KernelError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| KernelError::Socket(io::Error::other(e)))?;
        let socket = open_socket(recv_buffer, neighbours).map_err(KernelError::Socket)?;
        let (sender, events) = mpsc::channel(queue.max(1));
        let task = runtime.spawn(run(
            socket,
            sender,
            (recv_buffer, neighbours),
            reflexes.clone(),
        ));
        Ok(Watch {
            events,
            task,
            reflexes,
            neighbours,
        })
    }

    /// A fresh watcher with the same reflexes and groups, after this one's stream ended.
    pub fn restarted(&self) -> Result<Watch, KernelError> {
        Self::start_reflexive_with(
            RECV_BUFFER,
            EVENT_QUEUE,
            self.reflexes.clone(),
            self.neighbours,
        )
    }

    /// The next event; None only if the background task is gone (it restarts its
    /// socket itself, so in practice never).
    pub async fn next(&mut self) -> Option<KernelEvent> {
        self.events.recv().await
    }

    /// An event already queued, without waiting.
    pub fn try_next(&mut self) -> Option<KernelEvent> {
        self.events.try_recv().ok()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A netlink socket bound to the four groups (five with `neighbours`), with the
/// receive buffer enlarged.
fn open_socket(recv_buffer: usize, neighbours: bool) -> io::Result<TokioSocket> {
    let mut socket = TokioSocket::new(NETLINK_ROUTE)?;
    let inner = socket.socket_mut();
    inner.bind_auto()?;
    for group in [
        RTNLGRP_LINK,
        RTNLGRP_IPV6_IFADDR,
        RTNLGRP_IPV6_ROUTE,
        RTNLGRP_IPV6_NETCONF,
    ] {
        inner.add_membership(group)?;
    }
    if neighbours {
        inner.add_membership(RTNLGRP_NEIGH)?;
    }
    set_recv_buffer(inner, recv_buffer)?;
    Ok(socket)
}

/// SO_RCVBUFFORCE ignores net.core.rmem_max but needs CAP_NET_ADMIN; without it,
/// SO_RCVBUF gets what rmem_max allows.
fn set_recv_buffer(socket: &impl AsFd, bytes: usize) -> io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    setsockopt(socket, sockopt::RcvBufForce, &bytes)
        .or_else(|_| setsockopt(socket, sockopt::RcvBuf, &bytes))
        .map_err(io::Error::from)
}

/// The watcher: read datagrams, queue events, owe a Resync whenever one was lost.
/// `groups`: the receive buffer and whether the neighbour group is subscribed, for a
/// reopened socket.
async fn run(
    mut socket: TokioSocket,
    sender: mpsc::Sender<KernelEvent>,
    groups: (usize, bool),
    reflexes: SharedReflexes,
) {
    let mut buffer: Vec<u8> = Vec::with_capacity(DATAGRAM);
    let mut owe_resync = false;
    loop {
        buffer.clear();
        tokio::select! {
            // A Resync goes out as soon as the queue has room, even if the kernel
            // stays quiet.
            biased;
            permit = sender.reserve(), if owe_resync => match permit {
                Ok(permit) => {
                    permit.send(KernelEvent::Resync);
                    owe_resync = false;
                }
                Err(_) => return, // the Watch was dropped
            },
            received = socket.recv_from(&mut buffer) => match received {
                Ok(_) => {
                    let socket = socket.socket_ref();
                    let mut push = |event| {
                        if owe_resync {
                            // Covered by the Resync still owed.
                            return true;
                        }
                        match sender.try_send(event) {
                            Ok(()) => true,
                            Err(mpsc::error::TrySendError::Full(_)) => {
                                debug!("event queue full, dropping events until a resync");
                                owe_resync = true;
                                true
                            }
                            Err(mpsc::error::TrySendError::Closed(_)) => false,
                        }
                    };
                    let mut queue = |notice| match notice {
                        // The restore goes out before the removal is parsed whole.
                        Notice::Removed { object, protocol } => {
                            reflex(socket, &reflexes, object, protocol).is_none_or(&mut push)
                        }
                        Notice::Event(event) => push(event),
                        Notice::Answer { sequence, errno } => {
                            let answer = reflexes.lock().answered(sequence, errno);
                            answer.is_none_or(&mut push)
                        }
                    };
                    match parse_datagram(&buffer, &mut queue) {
                        // Let the daemon see the events before the rest of a burst is
                        // read: what no reflex covered (an object fought over, a burst
                        // past its share) it puts back at once, not after the socket
                        // is drained.
                        Ok(true) => tokio::task::yield_now().await,
                        Ok(false) => return,
                        Err(e) => {
                            // A message we cannot read may have been one we care about.
                            warn!("unreadable netlink notification, resyncing: {e}");
                            owe_resync = true;
                        }
                    }
                }
                // The kernel dropped notifications because the receive buffer was
                // full. The socket itself is fine. It reports ENOBUFS once per
                // congestion and clears that only when the socket is read empty, so
                // whatever the rest of the burst drops meanwhile goes unreported: the
                // Resync is owed only once the socket is empty, so that the dump it
                // brings sees everything the burst changed.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    debug!("netlink receive buffer overrun, resyncing");
                    drain(socket.socket_mut(), &mut buffer);
                    reflexes.lock().forget_in_flight();
                    owe_resync = true;
                }
                Err(e) => {
                    warn!("netlink event socket failed, reopening it: {e}");
                    reflexes.lock().forget_in_flight();
                    owe_resync = true;
                    match reopen(&sender, groups).await {
                        Some(fresh) => socket = fresh,
                        None => return,
                    }
                }
            },
        }
    }
}

/// Put back at once `object`, whose removal was just read, if it is armed: one `send`
/// of the request the daemon built in advance, before the notification is parsed
/// whole or queued. The kernel's answer
/// comes back on this socket (`Notice::Answer`); a request that could not be sent is
/// answered here, with the send's errno, for the daemon's full pass to repair.
fn reflex(
    socket: &netlink_sys::Socket,
    reflexes: &SharedReflexes,
    object: Object,
    protocol: u8,
) -> Option<KernelEvent> {
    let mut reflexes = reflexes.lock();
    let request = reflexes.fire(object, protocol)?;
    let Err(e) = socket.send(&request, 0) else {
        if matches!(object, Object::Address { .. }) {
            // The kernel finishes an address's setup (with NODAD too: the work that
            // completes "DAD" and announces the address) in a worker queued on this
            // CPU. Stepping aside lets it run now rather than after routed6d's own
            // bookkeeping of the event.
            drop(reflexes);
            std::thread::yield_now();
        }
        return None;
    };
    debug!("cannot send a reflex restore: {e}");
    reflexes.unsent(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Read the socket empty, throwing the datagrams away (a Resync covers them), with
/// plain non-blocking reads: tokio's cached readiness could call a socket empty that
/// the kernel has refilled, and only a read that finds it empty clears the kernel's
/// congestion, after which it reports the next loss again.
fn drain(socket: &mut netlink_sys::Socket, buffer: &mut Vec<u8>) {
    loop {
        buffer.clear();
        match socket.recv(buffer, 0) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
            // Empty (EAGAIN), or failing: the watch loop sees to the rest.
            Err(_) => return,
        }
    }
}

/// Reopen the socket until it works or the Watch is dropped.
async fn reopen(
    sender: &mpsc::Sender<KernelEvent>,
    (recv_buffer, neighbours): (usize, bool),
) -> Option<TokioSocket> {
    loop {
        tokio::time::sleep(REOPEN_DELAY).await;
        if sender.is_closed() {
            return None;
        }
        match open_socket(recv_buffer, neighbours) {
            Ok(socket) => return Some(socket),
            Err(e) => warn!("cannot reopen the netlink event socket: {e}"),
        }
    }
}

/// What one message of a datagram says.
enum Notice {
    /// A removal, as read in place ahead of the whole parse (`removed_object`): what a
    /// reflex needs.
    Removed {
        object: Object,
        protocol: u8,
    },
    Event(KernelEvent),
    /// The kernel's answer to a request sent on this socket (a reflex's): errno None
    /// for done.
    Answer {
        sequence: u32,
        errno: Option<i32>,
    },
}

/// Walk the netlink messages of one datagram, handing each notice to `queue`.
/// Ok(false) when `queue` says the consumer is gone.
fn parse_datagram(mut data: &[u8], queue: &mut impl FnMut(Notice) -> bool) -> Result<bool, String> {
    while !data.is_empty() {
        let header = NetlinkBuffer::new_checked(data).map_err(|e| e.to_string())?;
        let length = header.length() as usize;
        let payload = data.get(NETLINK_HEADER_LEN..length).unwrap_or_default();
        if let Some((object, protocol)) = removed_object(header.message_type(), payload)
            && !queue(Notice::Removed { object, protocol })
        {
            return Ok(false);
        }
        let neighbour = matches!(header.message_type(), RTM_NEWNEIGH | RTM_DELNEIGH);
        let notice = if header.message_type() == RTM_NEWNETCONF {
            Some(Notice::Event(KernelEvent::Netconf))
        } else if header.message_type() == RTM_DELNETCONF {
            None
        } else if neighbour && header.payload().first() != Some(&(libc::AF_INET6 as u8)) {
            // ARP and the bridges' forwarding databases share the group: skipped
            // unparsed (a bridge host's MAC learning is busy, and none of it matters).
            None
        } else {
            let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[..length])
                .map_err(|e| e.to_string())?;
            match message.payload {
                NetlinkPayload::InnerMessage(inner) => event_of(inner).map(Notice::Event),
                NetlinkPayload::Error(answer) => Some(Notice::Answer {
                    sequence: message.header.sequence_number,
                    // The kernel sends a negative errno.
                    errno: answer.code.map(|code| code.get().abs()),
                }),
                _ => None,
            }
        };
        if let Some(notice) = notice
            && !queue(notice)
        {
            return Ok(false);
        }
        // Messages are 4-byte aligned within a datagram.
        let aligned = (length + 3) & !3;
        data = data.get(aligned..).unwrap_or_default();
    }
    Ok(true)
}

fn event_of(message: RouteNetlinkMessage) -> Option<KernelEvent> {
    match message {
        RouteNetlinkMessage::NewLink(link) => link_event(&link, false),
        RouteNetlinkMessage::DelLink(link) => link_event(&link, true),
        RouteNetlinkMessage::NewAddress(address) => address_event(&address, false),
        RouteNetlinkMessage::DelAddress(address) => address_event(&address, true),
        RouteNetlinkMessage::NewRoute(route) => route_event(&route, false),
        RouteNetlinkMessage::DelRoute(route) => route_event(&route, true),
        RouteNetlinkMessage::NewNeighbour(neighbour) => neighbour_event(&neighbour, false),
        RouteNetlinkMessage::DelNeighbour(neighbour) => neighbour_event(&neighbour, true),
        _ => None,
    }
}

fn link_event(link: &LinkMessage, removed: bool) -> Option<KernelEvent> {
    // The bridge driver announces port changes on the same group with family
    // AF_BRIDGE; its RTM_DELLINK means "left the bridge", not "interface gone".
    if link.header.interface_family != AddressFamily::Unspec {
        return None;
    }
    let crate::model::Link {
        index, name, up, ..
    } = link_of(link);
    Some(KernelEvent::Link {
        index,
        name,
        up,
        removed,
    })
}

fn address_event(address: &AddressMessage, removed: bool) -> Option<KernelEvent> {
    if address.header.family != AddressFamily::Inet6 {
        return None;
    }
    let IpAddr::V6(addr) = local_address(address)? else {
        return None;
    };
    Some(KernelEvent::Address {
        ifindex: address.header.index,
        addr,
        protocol: address_protocol(address),
        removed,
    })
}

fn route_event(route: &RouteMessage, removed: bool) -> Option<KernelEvent> {
    // Cached clones (PMTU exceptions) come and go with traffic; nobody installed them.
    if route.header.address_family != AddressFamily::Inet6
        || route.header.flags.contains(RouteFlags::Cloned)
    {
        return None;
    }
    let (table, dst, protocol) = route_key(route)?;
    Some(KernelEvent::Route {
        dst,
        table,
        protocol,
        removed,
    })
}

fn neighbour_event(neighbour: &NeighbourMessage, removed: bool) -> Option<KernelEvent> {
    // IPv4's ARP cache and the bridges' forwarding databases share the group.
    if neighbour.header.family != AddressFamily::Inet6 {
        return None;
    }
    let addr = neighbour.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(addr)) => Some(*addr),
        _ => None,
    })?;
    Some(KernelEvent::Neighbour {
        ifindex: neighbour.header.ifindex,
        addr,
        state: u16::from(neighbour.header.state),
        proxy: neighbour.header.flags.contains(NeighbourFlags::Proxy),
        removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::NetlinkHeader;
    use netlink_packet_route::neighbour::NeighbourState;

    /// One notification as the kernel sends it.
    fn datagram(message: RouteNetlinkMessage) -> Vec<u8> {
        let mut message = NetlinkMessage::new(NetlinkHeader::default(), message.into());
        message.finalize();
        let mut bytes = vec![0; message.buffer_len()];
        message.serialize(&mut bytes);
        bytes
    }

    #[test]
    fn an_interfaces_settings_going_with_it_is_no_event_and_no_error() {
        // struct netconfmsg { family } and one attribute, NETCONFA_IFINDEX = 7.
        let mut message = vec![0u8; 16];
        message.extend_from_slice(&[libc::AF_INET6 as u8, 0, 0, 0]);
        message.extend_from_slice(&[8, 0, 1, 0, 7, 0, 0, 0]);
        let length = message.len() as u32;
        message[0..4].copy_from_slice(&length.to_ne_bytes());
        message[4..6].copy_from_slice(&RTM_DELNETCONF.to_ne_bytes());
        assert_eq!(parse_datagram(&message, &mut |_| true), Ok(true));
        assert!(events(&message).is_empty());
    }

    fn events(data: &[u8]) -> Vec<KernelEvent> {
        let mut out = Vec::new();
        let mut queue = |notice| {
            if let Notice::Event(event) = notice {
                out.push(event);
            }
            true
        };
        parse_datagram(data, &mut queue).expect("parses");
        out
    }

    fn neighbour(family: AddressFamily, flags: NeighbourFlags) -> NeighbourMessage {
        let mut message = NeighbourMessage::default();
        message.header.family = family;
        message.header.ifindex = 3;
        message.header.state = NeighbourState::Reachable;
        message.header.flags = flags;
        if family == AddressFamily::Inet6 {
            message
                .attributes
                .push(NeighbourAttribute::Destination(NeighbourAddress::Inet6(
                    "2001:db8:1:0:1::100".parse().unwrap(),
                )));
        }
        message
    }

    #[test]
    fn ipv6_neighbours_and_proxies_are_events_and_the_rest_is_skipped() {
        let cache = neighbour(AddressFamily::Inet6, NeighbourFlags::empty());
        assert_eq!(
            events(&datagram(RouteNetlinkMessage::NewNeighbour(cache))),
            [KernelEvent::Neighbour {
                ifindex: 3,
                addr: "2001:db8:1:0:1::100".parse().unwrap(),
                state: 0x02,
                proxy: false,
                removed: false,
            }]
        );
        let proxy = neighbour(AddressFamily::Inet6, NeighbourFlags::Proxy);
        assert!(matches!(
            events(&datagram(RouteNetlinkMessage::DelNeighbour(proxy)))[..],
            [KernelEvent::Neighbour {
                proxy: true,
                removed: true,
                ..
            }]
        ));
        let fdb = neighbour(AddressFamily::Bridge, NeighbourFlags::Own);
        assert!(events(&datagram(RouteNetlinkMessage::NewNeighbour(fdb))).is_empty());
        let arp = neighbour(AddressFamily::Inet, NeighbourFlags::empty());
        assert!(events(&datagram(RouteNetlinkMessage::NewNeighbour(arp))).is_empty());
    }
}
