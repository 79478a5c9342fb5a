//! Pure: what routed6d may program. The one home of the safety rules that every
//! provider's answer, every configured route and every reserved address passes before
//! it can reach the kernel: a prefix is a network of at least /32 in a range that can
//! be routed to a host, its next hop a global address outside it. A leaf module: it
//! depends on nothing of routed6d's, and `config` and every provider use it.
//!
//! Messages name the field as the answer or the file writes it
//! (`allocation.nextHop`, `pools[0].routes[2].prefix`, `provider.routes[0].next_hop`),
//! so one line tells an operator which value was refused.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

/// The shortest prefix routed6d will route to one host: anything shorter is a
/// provider's error, not an allocation.
pub const MIN_PREFIX_LEN: u8 = 32;

/// The default of `provider.max_prefixes`, the most prefixes one answer may route to
/// one host. A VPS gets a handful (a /48, some /56s and /64s, a few reserved
/// addresses); thousands are a provider's fault or a hostile answer, and each costs
/// kernel objects and a line in every pass. An answer over it is refused as a whole,
/// so the kernel keeps its state. See issue 14, item 9.
pub const DEFAULT_MAX_PREFIXES: usize = 64;

/// The largest `provider.max_prefixes` accepted. Parsers stop at it while they read,
/// before the configured bound is applied to the whole answer, so the work an answer
/// costs stays bounded whatever the configuration (a 5 000-route account view is
/// refused as it is read).
pub const MAX_PREFIXES_LIMIT: usize = 1024;
const _: () = assert!(DEFAULT_MAX_PREFIXES <= MAX_PREFIXES_LIMIT);

/// The most distinct next hops one answer may route through. A host has one uplink
/// address, or a few where a provider routes each prefix to its own; every next hop
/// is an address routed6d may put on the uplink, so an answer with more is a
/// provider's fault or a hostile one. Refused as a whole, like too many prefixes.
pub const MAX_NEXT_HOPS: usize = 8;

/// `count` prefixes routed here by one answer (`what` names it) are within `max`
/// (`provider.max_prefixes`, or `MAX_PREFIXES_LIMIT` while a parser reads).
pub fn check_prefix_count(what: &str, count: usize, max: usize) -> Result<(), String> {
    if count > max {
        return Err(format!(
            "{what}: more than {max} prefixes routed to this host in one answer; refusing it"
        ));
    }
    Ok(())
}

/// The next hops of one answer (`what` names it) are at most `MAX_NEXT_HOPS`
/// distinct addresses. Stops counting as soon as there are too many.
pub fn check_next_hop_count(
    what: &str,
    next_hops: impl IntoIterator<Item = Ipv6Addr>,
) -> Result<(), String> {
    let mut distinct = std::collections::BTreeSet::new();
    for hop in next_hops {
        distinct.insert(hop);
        if distinct.len() > MAX_NEXT_HOPS {
            return Err(format!(
                "{what}: more than {MAX_NEXT_HOPS} distinct next hops; refusing it"
            ));
        }
    }
    Ok(())
}

/// What makes `addr` unusable as a next hop or a routed address, if anything: the
/// kinds of address that never leave a link or a host (`non_global_kind`), and the
/// IANA special-purpose ranges no provider routes to a host (`SPECIAL_PURPOSE`).
pub fn unroutable_kind(addr: Ipv6Addr) -> Option<&'static str> {
    non_global_kind(addr).or_else(|| special_purpose(addr))
}

/// The kinds of address that never leave a link or a host.
pub fn non_global_kind(addr: Ipv6Addr) -> Option<&'static str> {
    if addr.is_unicast_link_local() {
        Some("link-local")
    } else if addr.is_multicast() {
        Some("multicast")
    } else if addr.is_unspecified() {
        Some("the unspecified address")
    } else if addr.is_loopback() {
        Some("loopback")
    } else {
        None
    }
}

/// IANA's IPv6 special-purpose ranges (RFC 6890 and its registry) that a provider
/// never routes to one host: an answer naming one is a provider's error or a hostile
/// one, and programming it would shadow a range the host needs (NAT64, IPv4-mapped) or
/// leak into one it must not use. The documentation range 2001:db8::/32 is not here:
/// the tests and the demo use it, and a host gains nothing from refusing it.
const SPECIAL_PURPOSE: [(u128, u8, &str); 8] = [
    (0x0000_0000_0000_0000_0000_ffff_0000_0000, 96, "IPv4-mapped"),
    (
        0x0064_ff9b_0000_0000_0000_0000_0000_0000,
        96,
        "NAT64 (64:ff9b::/96)",
    ),
    (
        0x0064_ff9b_0001_0000_0000_0000_0000_0000,
        48,
        "local-use NAT64",
    ),
    (
        0x0100_0000_0000_0000_0000_0000_0000_0000,
        64,
        "discard-only",
    ),
    (0x2001_0000_0000_0000_0000_0000_0000_0000, 32, "Teredo"),
    (0x2002_0000_0000_0000_0000_0000_0000_0000, 16, "6to4"),
    (0xfc00_0000_0000_0000_0000_0000_0000_0000, 7, "unique local"),
    (0xfec0_0000_0000_0000_0000_0000_0000_0000, 10, "site-local"),
];

/// The special-purpose range `addr` is in, if any.
fn special_purpose(addr: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(addr);
    SPECIAL_PURPOSE
        .iter()
        .find(|(network, len, _)| bits & !(u128::MAX >> len) == *network)
        .map(|(_, _, name)| *name)
}

/// `text` as an IPv6 prefix (host bits allowed; `check_routed` decides what they mean).
pub fn parse_net(field: &str, text: &str) -> Result<Ipv6Net, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{field} {text:?} is not an IPv6 prefix such as 2001:db8:42:100::/64"))
}

/// A prefix a provider may route to one host: at least a /32 and not in a range that
/// can never be routed to a host.
pub fn check_routable(field: &str, net: Ipv6Net) -> Result<(), String> {
    if net.prefix_len() < MIN_PREFIX_LEN {
        return Err(format!(
            "{field} {net} is shorter than /{MIN_PREFIX_LEN}: refusing to route that much address space"
        ));
    }
    let network = net.network();
    let kind = if network.is_unicast_link_local() {
        Some("link-local")
    } else if network.is_multicast() {
        Some("multicast")
    } else if network.is_unspecified() {
        Some("unspecified-address")
    } else if net.contains(&Ipv6Addr::LOCALHOST) {
        Some("loopback")
    } else {
        None
    };
    if let Some(kind) = kind {
        return Err(format!("{field} {net} is a {kind} prefix"));
    }
    // In a special-purpose range, or holding one (a /32 around NAT64's /96).
    let special = special_purpose(network).or_else(|| {
        SPECIAL_PURPOSE
            .iter()
            .find(|(n, len, _)| *len >= net.prefix_len() && net.contains(&Ipv6Addr::from(*n)))
            .map(|(_, _, name)| *name)
    });
    match special {
        Some(range) => Err(format!(
            "{field} {net} is special-purpose ({range}): no provider routes it to a host"
        )),
        None => Ok(()),
    }
}

/// A next hop: an IPv6 address (`addr/128` accepted) a router can forward to.
pub fn parse_next_hop(field: &str, text: &str) -> Result<Ipv6Addr, String> {
    let trimmed = text.trim();
    let addr = match trimmed.split_once('/') {
        Some((addr, "128")) => addr.parse::<Ipv6Addr>().ok(),
        Some(_) => None,
        None => trimmed.parse::<Ipv6Addr>().ok(),
    }
    .ok_or_else(|| format!("{field} {text:?} is not an IPv6 address"))?;
    match unroutable_kind(addr) {
        Some(kind) => Err(format!(
            "{field} {addr} is {kind}, not usable as a next hop"
        )),
        None => Ok(addr),
    }
}

/// A single address routed to this host's own address (a DigitalOcean reserved IPv6):
/// global unicast.
pub fn check_reserved(field: &str, addr: Ipv6Addr) -> Result<(), String> {
    match unroutable_kind(addr) {
        Some(kind) => Err(format!("{field} {addr} is {kind}, not a reserved IPv6")),
        None => Ok(()),
    }
}

/// The most of a provider's text (a reason, a message, an id, a label) routed6d
/// repeats anywhere.
pub const PROVIDER_TEXT_MAX: usize = 200;

/// A provider's text as data, never control: control characters (a newline would
/// start a new `STATUS=`/`WATCHDOG=` field of sd_notify, a new journal line, or a
/// terminal escape in `status`) become spaces, runs of white space one space, and the
/// whole is cut at `PROVIDER_TEXT_MAX` characters. Applied where answers are parsed,
/// so nothing downstream sees the raw text. See issue 14.
pub fn provider_text(text: &str) -> String {
    let spaced: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let joined = spaced.split_whitespace().collect::<Vec<_>>().join(" ");
    match joined.char_indices().nth(PROVIDER_TEXT_MAX) {
        Some((cut, _)) => format!("{}…", &joined[..cut]),
        None => joined,
    }
}

/// An id that goes into a URL path (a VPS id from the config or an answer):
/// letters, digits, `_` and `-`, at most 100 characters, so it can never change the
/// path or the host the token is sent to.
pub fn is_path_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The names the fields of one routed prefix have where it was written.
#[derive(Clone, Copy, Debug)]
pub struct Fields<'a> {
    pub prefix: &'a str,
    /// The separate prefix length, where the answer has one (`prefixLength`).
    pub length: &'a str,
    pub next_hop: &'a str,
}

/// What a source may get wrong and still be programmed, each with a warning.
#[derive(Clone, Copy, Debug, Default)]
pub struct Leniency {
    /// A prefix written with host bits is its network (HostUp's legacy documentation
    /// writes `2001:db8::1/48`).
    pub host_bits: bool,
    /// A next hop inside the prefix is kept (the legacy API's router may hold a more
    /// specific route to it).
    pub next_hop_inside: bool,
}

/// A routed prefix that passed every rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub prefix: Ipv6Net,
    pub next_hop: Ipv6Addr,
    /// What `leniency` let through, one line each.
    pub warnings: Vec<String>,
}

/// The rules for one routed prefix as a source wrote it: an IPv6 network (host bits
/// refused unless `leniency` says otherwise), agreeing with `length` where the source
/// gives one, routable, and a global next hop outside it (a next hop inside would make
/// the provider's router send the prefix to itself).
pub fn check_routed(
    fields: Fields<'_>,
    prefix: &str,
    length: Option<u64>,
    next_hop: &str,
    leniency: Leniency,
) -> Result<Checked, String> {
    let mut warnings = Vec::new();
    let written = parse_net(fields.prefix, prefix)?;
    let network = written.trunc();
    if network != written {
        let message = format!(
            "{} {written} has host bits set (the network is {network})",
            fields.prefix
        );
        if !leniency.host_bits {
            return Err(message);
        }
        warnings.push(format!(
            "{} {written} has host bits set; using the network {network}",
            fields.prefix
        ));
    }
    if let Some(length) = length
        && length != u64::from(network.prefix_len())
    {
        return Err(format!(
            "{} {length} disagrees with {} {written}",
            fields.length, fields.prefix
        ));
    }
    check_routable(fields.prefix, network)?;
    let hop = parse_next_hop(fields.next_hop, next_hop)?;
    if network.contains(&hop) {
        if !leniency.next_hop_inside {
            return Err(format!(
                "{} {hop} lies inside {} {network}: the provider's router would send the prefix to itself",
                fields.next_hop, fields.prefix
            ));
        }
        warnings.push(format!(
            "{} {hop} lies inside {} {network}; this works only if the provider's router has a more specific route to it",
            fields.next_hop, fields.prefix
        ));
    }
    Ok(Checked {
        prefix: network,
        next_hop: hop,
        warnings,
    })
}

#[cfg(test)]
mod tests;
