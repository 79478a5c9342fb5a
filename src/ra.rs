//! Router advertisements on the workloads' bridges (RFC 4861 §6.2), sent by routed6d
//! itself: what to advertise, when, and the packets (pure); `ra/sender.rs` holds the
//! socket. See issue 17.
//!
//! Why routed6d sends them rather than driving radvd: what is advertised is derived from
//! the same pass that puts the gateway and the route on the bridge, and has to change
//! with them in the same moment (a prefix change: the old prefix deprecated, the new one
//! fresh). Driving radvd would mean writing its configuration file, reloading it by
//! signal and watching it as a second process under a second owner, with its own
//! packaging dependency and its own view of when an interface is ready; the part of
//! RFC 4861 a router on a bridge needs (one Prefix Information option per prefix,
//! periodic advertisements, answers to solicitations, lifetimes that run out) is a few
//! hundred lines, tested here without a socket. What is left out: RDNSS/DNSSL (no DNS
//! server to name), MTU and source link-layer options (both optional).
//!
//! Lifetimes. A current /64 is advertised with the A (autonomous) and L (on-link) flags,
//! valid 1 day and preferred 4 hours (radvd's defaults). A prefix the provider no longer
//! routes is advertised with preferred lifetime 0, so hosts stop using it for new
//! connections at once, and valid lifetime 2 hours, counted down in every later
//! advertisement until it runs out: RFC 4862 §5.5.3(e) has hosts ignore a shorter valid
//! lifetime than 2 hours from an unauthenticated advertisement, so asking for less would
//! not make the address go sooner. A sub-prefix that is not a /64 cannot be used for
//! SLAAC: it is advertised on-link only (L, not A).

pub mod sender;

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::time::Duration;

use ipnet::Ipv6Net;
use tokio::time::Instant;

/// How long hosts may use routed6d as their default router after an advertisement.
pub const ROUTER_LIFETIME: Duration = Duration::from_secs(1800);
/// The longest time between unsolicited advertisements (RFC 4861 allows 4-1800 s).
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// After a change, a few advertisements this far apart: a host that missed the first
/// (its port not forwarding yet, the bridge's link-local address still tentative)
/// hears the next within seconds (RFC 4861 §6.2.4: MAX_INITIAL_RTR_ADVERTISEMENTS).
pub const FAST_INTERVAL: Duration = Duration::from_secs(4);
pub const FAST_COUNT: u8 = 3;
/// Multicast answers to solicitations at most this often (MIN_DELAY_BETWEEN_RAS).
pub const MIN_DELAY: Duration = Duration::from_secs(3);
/// A current prefix's lifetimes.
pub const VALID: Duration = Duration::from_secs(86_400);
pub const PREFERRED: Duration = Duration::from_secs(14_400);
/// How long a prefix no longer routed here stays advertised, deprecated.
pub const RETIRED_VALID: Duration = Duration::from_secs(7_200);

/// ICMPv6 types (RFC 4861 §4.1, §4.2).
pub const ROUTER_SOLICITATION: u8 = 133;
pub const ROUTER_ADVERTISEMENT: u8 = 134;
const OPTION_PREFIX_INFORMATION: u8 = 3;
const FLAG_ON_LINK: u8 = 0x80;
const FLAG_AUTONOMOUS: u8 = 0x40;
/// The hop limit hosts are told to use (0 would mean "unspecified").
const CUR_HOP_LIMIT: u8 = 64;

/// One Prefix Information option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixInfo {
    pub prefix: Ipv6Net,
    pub valid: Duration,
    pub preferred: Duration,
}

/// A router advertisement as the wire carries it, from the ICMPv6 type on (the kernel
/// fills in the checksum of a raw ICMPv6 socket). `router_lifetime` 0: "not a default
/// router" (nothing routed here any more).
pub fn advertisement(router_lifetime: Duration, prefixes: &[PrefixInfo]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(16 + 32 * prefixes.len());
    packet.extend_from_slice(&[ROUTER_ADVERTISEMENT, 0, 0, 0, CUR_HOP_LIMIT, 0]);
    packet.extend_from_slice(&seconds16(router_lifetime).to_be_bytes());
    // Reachable time and retransmission timer: 0, unspecified (the hosts' defaults).
    packet.extend_from_slice(&[0; 8]);
    for info in prefixes {
        let mut flags = FLAG_ON_LINK;
        if info.prefix.prefix_len() == 64 {
            flags |= FLAG_AUTONOMOUS;
        }
        // Type, length in units of 8 octets (4: 32 bytes), prefix length, flags.
        packet.extend_from_slice(&[
            OPTION_PREFIX_INFORMATION,
            4,
            info.prefix.prefix_len(),
            flags,
        ]);
        packet.extend_from_slice(&seconds32(info.valid).to_be_bytes());
        packet.extend_from_slice(&seconds32(info.preferred.min(info.valid)).to_be_bytes());
        packet.extend_from_slice(&[0; 4]);
        packet.extend_from_slice(&info.prefix.network().octets());
    }
    packet
}

fn seconds16(d: Duration) -> u16 {
    u16::try_from(d.as_secs()).unwrap_or(u16::MAX)
}

fn seconds32(d: Duration) -> u32 {
    // 0xffffffff means "infinity": never sent, a provider's prefix can always change.
    u32::try_from(d.as_secs())
        .unwrap_or(u32::MAX - 1)
        .min(u32::MAX - 1)
}

/// A router solicitation (RFC 4861 §6.1.1: type 133, code 0, at least 8 octets).
pub fn is_solicitation(packet: &[u8]) -> bool {
    packet.len() >= 8 && packet[0] == ROUTER_SOLICITATION && packet[1] == 0
}

/// The prefixes of one bridge: what is routed to it now, and what was and is still
/// being deprecated, with when its valid lifetime runs out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Link {
    name: String,
    current: Vec<Ipv6Net>,
    retired: Vec<(Ipv6Net, Instant)>,
    /// When the next advertisement is due.
    due: Option<Instant>,
    last_sent: Option<Instant>,
    fast_left: u8,
}

/// What every bridge advertises and when, by interface index: pure, so the schedule and
/// the lifetimes are tested without a socket.
#[derive(Debug, Default)]
pub struct Book {
    links: BTreeMap<u32, Link>,
}

impl Book {
    /// The prefixes each bridge should advertise now, `(ifindex, name, prefixes)`.
    /// A prefix that is no longer there is retired; a bridge no longer named keeps
    /// advertising its prefixes deprecated (router lifetime 0) until they run out.
    /// Returns the bridges whose advertisement changed (an advertisement is due at once).
    pub fn update(&mut self, wanted: &[(u32, String, Vec<Ipv6Net>)], now: Instant) -> Vec<u32> {
        let mut changed = Vec::new();
        for (index, name, prefixes) in wanted {
            let link = self.links.entry(*index).or_default();
            link.name.clone_from(name);
            if link.current == *prefixes {
                continue;
            }
            for gone in link.current.iter().filter(|p| !prefixes.contains(p)) {
                if !link.retired.iter().any(|(p, _)| p == gone) {
                    link.retired.push((*gone, now + RETIRED_VALID));
                }
            }
            // A prefix routed here again is current again, not deprecated.
            link.retired.retain(|(p, _)| !prefixes.contains(p));
            link.current.clone_from(prefixes);
            changed.push(*index);
        }
        for (index, link) in &mut self.links {
            if wanted.iter().any(|(i, _, _)| i == index) || link.current.is_empty() {
                continue;
            }
            for gone in link.current.drain(..) {
                link.retired.push((gone, now + RETIRED_VALID));
            }
            changed.push(*index);
        }
        for index in &changed {
            if let Some(link) = self.links.get_mut(index) {
                link.due = Some(now);
                link.fast_left = FAST_COUNT;
            }
        }
        changed
    }

    /// A router solicitation arrived on `ifindex`: answer soon, but not more often
    /// than `MIN_DELAY` (an advertisement to all nodes answers every host at once).
    pub fn solicited(&mut self, ifindex: u32, now: Instant) {
        let Some(link) = self.links.get_mut(&ifindex) else {
            return;
        };
        if link.current.is_empty() && link.retired.is_empty() {
            return;
        }
        let earliest = link.last_sent.map_or(now, |t| (t + MIN_DELAY).max(now));
        link.due = Some(link.due.map_or(earliest, |d| d.min(earliest)));
    }

    /// The earliest time an advertisement is due on any bridge.
    pub fn next_due(&self) -> Option<Instant> {
        self.links.values().filter_map(|l| l.due).min()
    }

    /// The bridges whose advertisement is due at `now`.
    pub fn due(&self, now: Instant) -> Vec<u32> {
        self.links
            .iter()
            .filter(|(_, l)| l.due.is_some_and(|d| d <= now))
            .map(|(i, _)| *i)
            .collect()
    }

    /// The advertisement for `ifindex` at `now`, or None when it has nothing left to
    /// say (then it is forgotten).
    pub fn packet(&mut self, ifindex: u32, now: Instant) -> Option<Vec<u8>> {
        let link = self.links.get_mut(&ifindex)?;
        link.retired.retain(|(_, until)| *until > now);
        if link.current.is_empty() && link.retired.is_empty() {
            self.links.remove(&ifindex);
            return None;
        }
        let mut infos: Vec<PrefixInfo> = link
            .current
            .iter()
            .map(|p| PrefixInfo {
                prefix: *p,
                valid: VALID,
                preferred: PREFERRED,
            })
            .collect();
        infos.extend(link.retired.iter().map(|(p, until)| PrefixInfo {
            prefix: *p,
            // Counted down, rounded up: never longer than first said.
            valid: Duration::from_secs((*until - now).as_secs_f64().ceil() as u64),
            preferred: Duration::ZERO,
        }));
        let lifetime = if link.current.is_empty() {
            Duration::ZERO
        } else {
            ROUTER_LIFETIME
        };
        Some(advertisement(lifetime, &infos))
    }

    /// An advertisement went out on `ifindex` (or failed: `ok` false, try again soon).
    pub fn sent(&mut self, ifindex: u32, now: Instant, ok: bool) {
        let Some(link) = self.links.get_mut(&ifindex) else {
            return;
        };
        if ok {
            link.last_sent = Some(now);
        }
        let next = if link.fast_left > 0 {
            link.fast_left -= 1;
            FAST_INTERVAL
        } else if ok {
            MAX_INTERVAL
        } else {
            // The bridge has no usable link-local address yet (no port up, or still
            // tentative): try again soon rather than in a minute.
            Duration::from_secs(1)
        };
        link.due = Some(now + next);
    }

    /// Bridge `ifindex` is gone (deleted, or made again under a new index): nothing
    /// can be said on it any more.
    pub fn forget(&mut self, ifindex: u32) {
        self.links.remove(&ifindex);
    }

    /// The name of bridge `ifindex`, for logs.
    pub fn name(&self, ifindex: u32) -> &str {
        self.links.get(&ifindex).map_or("", |l| l.name.as_str())
    }

    /// The prefixes advertised on `ifindex`: current, and deprecated ones still valid.
    pub fn advertised(&self, ifindex: u32) -> (Vec<Ipv6Net>, Vec<Ipv6Net>) {
        self.links.get(&ifindex).map_or_else(Default::default, |l| {
            (
                l.current.clone(),
                l.retired.iter().map(|(p, _)| *p).collect(),
            )
        })
    }
}

/// ICMPv6 Neighbor Advertisement (RFC 4861 §4.4) and its Target Link-Layer Address
/// option.
pub const NEIGHBOUR_ADVERTISEMENT: u8 = 136;
const OPTION_TARGET_LINK_LAYER: u8 = 2;

/// The unsolicited neighbour advertisement routed6d sends on the uplink when it starts
/// answering for a workload's address behind an on-link prefix (RFC 4861 §7.2.6): the
/// provider's router, which may hold the address as failed or incomplete from an
/// earlier try, learns at once that it is reachable again, at the uplink's own `mac`
/// (never the workload's). Flags as a proxy sends them (§7.2.8): not solicited, not a
/// router, override clear, so that a real owner of the address on the link, if there
/// were one, would not be overridden.
pub fn neighbour_advertisement(target: Ipv6Addr, mac: [u8; 6]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(32);
    // Type, code, checksum (the kernel's), then the R|S|O flags and reserved bits.
    packet.extend_from_slice(&[NEIGHBOUR_ADVERTISEMENT, 0, 0, 0, 0, 0, 0, 0]);
    packet.extend_from_slice(&target.octets());
    // Length in units of 8 octets: 1 (type, length, a 6-byte MAC).
    packet.extend_from_slice(&[OPTION_TARGET_LINK_LAYER, 1]);
    packet.extend_from_slice(&mac);
    packet
}

/// The all-nodes multicast address: every advertisement goes there (RFC 4861 §6.2.6
/// allows it for solicited ones too, and one packet answers every host on the bridge).
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

#[cfg(test)]
mod tests;
