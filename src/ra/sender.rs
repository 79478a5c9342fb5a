//! The socket behind `ra`: one raw ICMPv6 socket for every bridge. Advertisements go to
//! ff02::1 with the bridge's index as the scope, so the kernel sends each out of its
//! bridge from the bridge's link-local address, as RFC 4861 requires of a router; hop
//! limit 255, which hosts check. Solicitations come in on the same socket, filtered to
//! type 133 by the kernel (ICMP6_FILTER); the interface they came in on is in their
//! IPV6_PKTINFO. routed6d need not join ff02::2: with forwarding on, the kernel has
//! every interface in that group already.
//!
//! A raw socket needs CAP_NET_RAW, which only a host with workloads needs: the shipped
//! unit does not grant it (README, Workloads, has the drop-in).

use std::net::SocketAddrV6;
use std::os::fd::{AsRawFd, OwnedFd};

use ipnet::Ipv6Net;
use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn6,
    recvmsg, sendto, setsockopt, socket, sockopt,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{ALL_NODES, Book, is_solicitation, neighbour_advertisement};
use crate::model::Proxy;

#[derive(Debug, thiserror::Error)]
pub enum RaError {
    #[error(
        "cannot open a raw ICMPv6 socket for router advertisements: permission denied: the workloads' router advertisements need CAP_NET_RAW (README, Workloads: the unit's drop-in)"
    )]
    Permission,
    #[error("cannot open a raw ICMPv6 socket for router advertisements: {0}")]
    Socket(nix::errno::Errno),
    #[error("cannot watch the router advertisement socket: {0}")]
    Reactor(std::io::Error),
}

/// linux/icmpv6.h: the per-socket filter of ICMPv6 types (a set bit blocks the type).
const ICMP6_FILTER: libc::c_int = 1;

/// The workloads' advertiser: the book of what to say and the socket to say it on.
pub struct Sender {
    socket: AsyncFd<OwnedFd>,
    book: Book,
    /// Bridges whose last send failed unexpectedly (said once).
    failing: std::collections::BTreeSet<u32>,
}

impl Sender {
    pub fn open() -> Result<Sender, RaError> {
        let fd = socket(
            AddressFamily::Inet6,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::IcmpV6,
        )
        .map_err(|e| match e {
            nix::errno::Errno::EPERM | nix::errno::Errno::EACCES => RaError::Permission,
            e => RaError::Socket(e),
        })?;
        // Hosts drop an advertisement whose hop limit is not 255 (RFC 4861 §6.1.2): it
        // proves the sender is on the link.
        set_int(&fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, 255)?;
        set_int(&fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, 255)?;
        // Our own advertisements are not looped back to us.
        set_int(&fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP, 0)?;
        setsockopt(&fd, sockopt::Ipv6RecvPacketInfo, &true).map_err(RaError::Socket)?;
        let mut filter = [u32::MAX; 8];
        let rs = usize::from(super::ROUTER_SOLICITATION);
        filter[rs >> 5] &= !(1u32 << (rs & 31));
        // SAFETY: a plain setsockopt on an fd we own, with a buffer of the size given.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_ICMPV6,
                ICMP6_FILTER,
                filter.as_ptr().cast(),
                std::mem::size_of_val(&filter) as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(RaError::Socket(nix::errno::Errno::last()));
        }
        // SAFETY: the socket stays open, and is the same fd, until the AsyncFd drops it.
        let socket = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| RaError::Reactor(e.into_parts().1))?;
        Ok(Sender {
            socket,
            book: Book::default(),
            failing: Default::default(),
        })
    }

    /// What each bridge should advertise now (`(ifindex, name, prefixes)`, from the
    /// pass's desired state); a change goes out at once.
    pub fn update(&mut self, wanted: &[(u32, String, Vec<Ipv6Net>)]) {
        let now = Instant::now();
        for index in self.book.update(wanted, now) {
            let (current, retired) = self.book.advertised(index);
            info!(
                IFACE = %self.book.name(index),
                "router advertisements on {}: {} fresh{}",
                self.book.name(index),
                list(&current),
                if retired.is_empty() {
                    String::new()
                } else {
                    format!(", {} deprecated", list(&retired))
                }
            );
        }
        self.send_due(now);
    }

    /// Wait for a solicitation or the next advertisement due, and handle it. For the
    /// daemon's `select!`: cancel-safe, since nothing is half done across an await.
    pub async fn step(&mut self) {
        let due = self.book.next_due();
        let far = Instant::now() + std::time::Duration::from_secs(3600);
        let readable = tokio::select! {
            _ = tokio::time::sleep_until(due.unwrap_or(far)) => false,
            guard = self.socket.readable() => {
                // Cleared before reading: `receive` reads until the socket is empty,
                // and anything arriving after that wakes the next wait.
                if let Ok(mut guard) = guard {
                    guard.clear_ready();
                }
                true
            }
        };
        if readable {
            self.receive();
        }
        self.send_due(Instant::now());
    }

    /// Read every waiting solicitation and note the bridge it came in on.
    fn receive(&mut self) {
        let mut buffer = [0u8; 1500];
        loop {
            let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo);
            let mut iov = [std::io::IoSliceMut::new(&mut buffer)];
            let received = recvmsg::<SockaddrIn6>(
                self.socket.get_ref().as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_DONTWAIT,
            );
            let Ok(message) = received else {
                return;
            };
            let ifindex = message.cmsgs().ok().and_then(|mut c| {
                c.find_map(|m| match m {
                    ControlMessageOwned::Ipv6PacketInfo(info) => Some(info.ipi6_ifindex),
                    _ => None,
                })
            });
            let length = message.bytes;
            // The socket hears solicitations on every interface (a Docker bridge's
            // containers, a VM's tap): only the workload bridges' are routed6d's to answer.
            if let Some(ifindex) = ifindex
                && is_solicitation(&buffer[..length])
                && !self.book.name(ifindex).is_empty()
            {
                debug!(IFACE = %self.book.name(ifindex), "router solicitation on {}", self.book.name(ifindex));
                self.book.solicited(ifindex, Instant::now());
            }
        }
    }

    fn send_due(&mut self, now: Instant) {
        for index in self.book.due(now) {
            let Some(packet) = self.book.packet(index, now) else {
                continue;
            };
            let to = SockaddrIn6::from(SocketAddrV6::new(ALL_NODES, 0, 0, index));
            let result = sendto(
                self.socket.get_ref().as_raw_fd(),
                &packet,
                &to,
                MsgFlags::empty(),
            );
            if let Err(e) = &result {
                // EADDRNOTAVAIL: no link-local address on the bridge yet (no port up,
                // or still tentative); the book tries again in a second.
                debug!(IFACE = %self.book.name(index), "router advertisement on {} not sent: {e}", self.book.name(index));
                if !matches!(
                    e,
                    nix::errno::Errno::EADDRNOTAVAIL
                        | nix::errno::Errno::ENETDOWN
                        | nix::errno::Errno::ENXIO
                        | nix::errno::Errno::ENODEV
                        | nix::errno::Errno::ENETUNREACH
                ) && self.failing.insert(index)
                {
                    // Once per bridge until a send succeeds: the book retries every
                    // second, and the journal should not.
                    warn!(IFACE = %self.book.name(index), "router advertisement on {}: {e}", self.book.name(index));
                }
            } else if self.failing.remove(&index) {
                info!(IFACE = %self.book.name(index), "router advertisements on {} go out again", self.book.name(index));
            }
            if matches!(
                result,
                Err(nix::errno::Errno::ENODEV
                    | nix::errno::Errno::ENXIO
                    | nix::errno::Errno::ENETUNREACH)
            ) {
                self.book.forget(index);
                continue;
            }
            self.book.sent(index, now, result.is_ok());
        }
    }
}

impl Sender {
    /// Announce on the uplink that `proxy`'s address is answered for now: one
    /// unsolicited neighbour advertisement to all nodes, with the uplink's own MAC
    /// (`ra::neighbour_advertisement`). Best effort: the kernel's proxy entry answers
    /// the router's solicitations whether or not this goes out.
    pub fn announce(&self, proxy: &Proxy) {
        let fd = self.socket.get_ref();
        let Some(mac) = hardware_address(fd, &proxy.ifname) else {
            debug!(IFACE = %proxy.ifname, "no Ethernet address on {}: no unsolicited advertisement for {}", proxy.ifname, proxy.addr);
            return;
        };
        let packet = neighbour_advertisement(proxy.addr, mac);
        let to = SockaddrIn6::from(SocketAddrV6::new(ALL_NODES, 0, 0, proxy.ifindex));
        match sendto(fd.as_raw_fd(), &packet, &to, MsgFlags::empty()) {
            Ok(_) => debug!(
                IFACE = %proxy.ifname,
                "unsolicited neighbour advertisement for {} on {}", proxy.addr, proxy.ifname
            ),
            Err(e) => debug!(
                IFACE = %proxy.ifname,
                "unsolicited neighbour advertisement for {} on {} not sent: {e}", proxy.addr, proxy.ifname
            ),
        }
    }
}

/// The Ethernet address of interface `name` (SIOCGIFHWADDR on the socket, so in its
/// network namespace); None for a link without one.
fn hardware_address(fd: &OwnedFd, name: &str) -> Option<[u8; 6]> {
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= request.ifr_name.len() {
        return None;
    }
    for (to, from) in request.ifr_name.iter_mut().zip(bytes) {
        *to = *from as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads and writes one ifreq, which lives across the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut request) };
    if rc != 0 {
        return None;
    }
    // SAFETY: SIOCGIFHWADDR filled in the hardware address member of the union.
    let address = unsafe { request.ifr_ifru.ifru_hwaddr };
    if address.sa_family != libc::ARPHRD_ETHER {
        return None;
    }
    let mut mac = [0u8; 6];
    for (to, from) in mac.iter_mut().zip(address.sa_data.iter()) {
        *to = *from as u8;
    }
    Some(mac)
}

fn set_int(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> Result<(), RaError> {
    // SAFETY: a plain setsockopt on an fd we own, with an int as the option expects.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(RaError::Socket(nix::errno::Errno::last()))
    }
}

fn list(prefixes: &[Ipv6Net]) -> String {
    if prefixes.is_empty() {
        return "none".into();
    }
    prefixes
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The daemon's wait on the advertiser, when there is one.
pub async fn next(sender: Option<&mut Sender>) {
    match sender {
        Some(sender) => sender.step().await,
        None => std::future::pending().await,
    }
}
