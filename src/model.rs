//! Provider-neutral data that flows through routed6d: what the provider routes here
//! (`Assignment`), what the kernel should hold (`DesiredState`), what it holds
//! (`ObservedState`), and the operations between the two (`Plan`, `Op`).
//!
//! Everything here is plain data; the logic lives in `desired` and `plan`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv6Addr;
use std::sync::Arc;

use ipnet::Ipv6Net;
use serde::Serialize;

/// Route protocol (and address protocol, IFA_PROTO) routed6d stamps on everything it
/// installs unless `[daemon] protocol` says otherwise. Unused by iproute2's
/// `rt_protos` and by the well-known daemons (bird 12, keepalived 18, babel 42,
/// bgp 186…); `ip route` prints it as `proto routed6d` once
/// `/etc/iproute2/rt_protos.d/routed6d.conf` names it.
pub const DEFAULT_PROTOCOL: u8 = 126;

/// The main routing table (RT_TABLE_MAIN).
pub const TABLE_MAIN: u32 = 254;
/// The local routing table (RT_TABLE_LOCAL): where `ip route add local …` puts routes.
pub const TABLE_LOCAL: u32 = 255;

/// One prefix the provider routes to this host, through `next_hop`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RoutedPrefix {
    /// Always a network address (host bits cleared).
    pub prefix: Ipv6Net,
    /// The address of this host the provider's router forwards `prefix` to.
    ///
    /// `None`: a single address (`prefix` is a /128) the provider routes to this host's
    /// own uplink address, as DigitalOcean does with a reserved IPv6. Nothing is needed
    /// on the uplink, and the address itself is placed on `prefix.interface`. Or, with
    /// `kind = "onlink"`, the uplink's own /64, not routed here at all: only workloads
    /// are placed in it (`desired::add_on_link`).
    pub next_hop: Option<Ipv6Addr>,
    /// The provider object this prefix came from, for logs (ORIGIN), status and plan:
    /// `ripv6_…` (HostUp allocation), `ripv6rt_… "label"` (HostUp account route),
    /// `legacy allocation 3`, `reserved_ipv6 2604:a880::1`, `static routes[0]`.
    pub origin: String,
    /// Set on the origin of a workload's objects: the workload and its sub-prefix of
    /// `prefix` (journal fields WORKLOAD, WORKLOAD_PREFIX). Providers leave it None.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<crate::workload::Placed>,
}

impl RoutedPrefix {
    /// `2001:db8:42:100::/64 via 2001:db8::10`, or the address alone.
    pub fn describe(&self) -> String {
        match self.next_hop {
            Some(hop) => format!("{} via {hop}", self.prefix),
            // `kind = "onlink"`: the uplink's own /64, not routed here at all.
            None if self.prefix.prefix_len() < 128 => format!("{} (on-link)", self.prefix),
            None => format!("{} (routed to this host's own address)", self.prefix),
        }
    }
}

/// The routed prefix an object is made for: the provider's prefix, its next hop and the
/// provider object, shared by every address and route made for it. It travels with
/// each desired object and each op, so logs, `plan` and `status` name it as they are.
pub type Origin = Arc<RoutedPrefix>;

/// An object routed6d wants in the kernel, with the routed prefix it is made for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Wanted<T> {
    pub object: T,
    pub origin: Origin,
}

impl<T> Wanted<T> {
    pub fn new(object: T, origin: &Origin) -> Self {
        Wanted {
            object,
            origin: origin.clone(),
        }
    }
}

impl<T: fmt::Display> fmt::Display for Wanted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.object.fmt(f)
    }
}

impl<T> std::ops::Deref for Wanted<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.object
    }
}

/// A well-formed provider answer, reduced to what the kernel needs.
///
/// Failures never become an `Assignment`: an empty `prefixes` means the provider said,
/// in a good answer, that nothing is routed here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Assignment {
    pub prefixes: Vec<RoutedPrefix>,
    /// The provider's verbatim reason when it says routed IPv6 is not available.
    pub unavailable: Option<String>,
    /// The next hop the provider would use now (HostUp `suggestedNextHop`); when it
    /// differs from a prefix's `next_hop`, the allocation is stale.
    pub suggested_next_hop: Option<Ipv6Addr>,
}

impl Assignment {
    /// True when the provider's routing uses a next hop other than the one it suggests
    /// now: `refresh_next_hop` would bring it up to date.
    pub fn next_hop_is_stale(&self) -> bool {
        match self.suggested_next_hop {
            Some(suggested) => self
                .prefixes
                .iter()
                .any(|p| p.next_hop.is_some_and(|hop| hop != suggested)),
            None => false,
        }
    }
}

/// An IPv6 address on an interface. Identity in the kernel is (ifindex, addr).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Address {
    pub ifindex: u32,
    pub addr: Ipv6Addr,
    pub prefix_len: u8,
    /// Interface name, for humans only (not part of the comparison that matters).
    pub ifname: String,
    /// IFA_F_NOPREFIXROUTE: routed6d installs the prefix route itself, so it is owned.
    pub no_prefix_route: bool,
}

/// The kind of a route routed6d installs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    /// Forward out of `ifindex` (delegate mode).
    Unicast,
    /// Deliver locally: every address in `dst` answers on this host (AnyIP).
    Local,
    /// Answer with ICMPv6 unreachable.
    Unreachable,
    /// Forward to `gateway` out of `ifindex`, preferring `src` as the source address
    /// of traffic this host originates (a default route; outbound_source).
    Via {
        gateway: Ipv6Addr,
        src: Option<Ipv6Addr>,
    },
}

/// A route. The kernel identifies an IPv6 route by (table, dst, metric); the other
/// fields are its attributes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Route {
    pub table: u32,
    pub dst: Ipv6Net,
    pub metric: u32,
    pub kind: RouteKind,
    /// Output interface; `None` for unreachable routes.
    pub ifindex: Option<u32>,
    /// Interface name, for humans only. Shared: one allocation per interface, not one
    /// per route, in a dump of tens of thousands of routes.
    pub ifname: Option<Arc<str>>,
}

impl Route {
    /// The (table, dst, metric) slot the kernel keys IPv6 routes by.
    pub fn slot(&self) -> (u32, Ipv6Net, u32) {
        (self.table, self.dst, self.metric)
    }

    /// Same route as far as the kernel is concerned (names are cosmetic).
    pub fn same_as(&self, other: &Route) -> bool {
        self.slot() == other.slot() && self.kind == other.kind && self.ifindex == other.ifindex
    }
}

/// A sysctl routed6d wants, e.g. `net/ipv6/conf/all/forwarding`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SysctlWant {
    /// Path below /proc/sys, with slashes.
    pub key: String,
    pub value: String,
    /// Only change it when the current value is one of these (accept_ra: only 1 → 2,
    /// never override an operator's 0). Empty: change any other value.
    pub only_from: Vec<String>,
    /// Only change it while this other sysctl (key, value) holds: accept_ra follows
    /// forwarding, whoever turned that on.
    pub only_while: Option<(String, String)>,
    /// Why, for the log line.
    pub why: String,
}

/// The alias routed6d gives a bridge it creates for a workload: the kernel keeps it
/// with the link, so a restarted routed6d still knows the bridge is its own to delete
/// (a bridge without it, an operator's or Docker's, is never deleted). The protocol
/// keeps two routed6d instances apart, as it does for routes.
pub fn workload_bridge_alias(protocol: u8, workload: &str) -> String {
    format!("{BRIDGE_ALIAS_PREFIX}{protocol} workload {workload}")
}

const BRIDGE_ALIAS_PREFIX: &str = "routed6d/";

/// True when `alias` marks a bridge created by routed6d with `protocol`.
pub fn is_owned_bridge_alias(alias: &str, protocol: u8) -> bool {
    alias
        .strip_prefix(BRIDGE_ALIAS_PREFIX)
        .and_then(|rest| rest.split_once(' '))
        .is_some_and(|(p, rest)| p == protocol.to_string() && rest.starts_with("workload "))
}

/// A bridge a workload needs (`kind = "bridge"`): created with `alias` when missing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Bridge {
    pub name: String,
    pub alias: String,
}

/// A kernel proxy NDP entry (`ip -6 neigh add proxy ADDR dev IF`): the kernel answers
/// neighbour solicitations for `addr` on interface `ifindex` with that interface's own
/// MAC (needs `proxy_ndp` and forwarding on it). routed6d adds one on the uplink for
/// each address a workload uses behind an on-link prefix (`kind = "onlink"`), stamped
/// with its protocol (NDA_PROTOCOL, which the kernel keeps on proxy entries since Linux
/// 5.2). Identity in the kernel is (ifindex, addr).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Proxy {
    pub ifindex: u32,
    pub addr: Ipv6Addr,
    /// Interface name, for humans only.
    pub ifname: String,
}

impl Proxy {
    pub fn identity(&self) -> Identity {
        Identity::Proxy(self.ifindex, self.addr)
    }
}

/// A proxy NDP entry as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ObservedProxy {
    pub proxy: Proxy,
    /// NDA_PROTOCOL; 0 when the entry has none (`ip neigh add proxy` sets none).
    pub protocol: u8,
}

/// An IPv6 neighbour the kernel knows on an interface (its neighbour cache), with its
/// NUD state bits (linux/neighbour.h).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Neighbour {
    pub ifindex: u32,
    pub addr: Ipv6Addr,
    pub state: u16,
}

/// NUD states (linux/neighbour.h) that mean a neighbour is there: it answered lately
/// (reachable), was heard from and not doubted yet (stale, delay, probe), or an
/// operator made it permanent. Incomplete (never answered) and failed (stopped
/// answering) mean it is not.
pub const NUD_IN_USE: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x80;

impl Neighbour {
    /// Is the neighbour in use (`NUD_IN_USE`)?
    pub fn in_use(&self) -> bool {
        self.state & NUD_IN_USE != 0
    }
}

/// What the kernel should hold, computed from config and assignment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DesiredState {
    pub addresses: Vec<Wanted<Address>>,
    pub routes: Vec<Wanted<Route>>,
    pub sysctls: Vec<SysctlWant>,
    /// Interfaces the config names that do not exist (yet): nothing is planned on them.
    pub missing_interfaces: Vec<String>,
    /// Next hops routed6d would add to the uplink but holds back for now: the uplink
    /// carries no traffic, or the OS's own address there went and the OS may put it
    /// back (`next_hop`). Not planned; kernel events about them still count.
    pub waiting: Vec<Wanted<Address>>,
    /// The bridges of the configured workloads: created when missing.
    pub bridges: Vec<Bridge>,
    /// The workloads placed in the routed prefix (`workload::place_all`).
    pub workloads: Vec<crate::workload::Placed>,
    /// Why the workloads could not be placed in the routed prefix (then none is).
    pub workload_error: Option<String>,
    /// Proxy NDP entries on the uplink, one per address in use behind a workload's
    /// bridge (`kind = "onlink"` only).
    pub proxies: Vec<Wanted<Proxy>>,
    /// The neighbour caches those entries are learned from: each workload bridge's
    /// index with its sub-prefix (`kind = "onlink"` only). A Docker network's bridge
    /// holds no address of routed6d's, so the addresses cannot say which they are.
    pub caches: Vec<(u32, ipnet::Ipv6Net)>,
}

/// What the kernel keys an object by: an address by (ifindex, addr), a route by
/// (table, dst, metric).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    Address(u32, Ipv6Addr),
    Route(u32, Ipv6Net, u32),
    Proxy(u32, Ipv6Addr),
}

impl Address {
    pub fn identity(&self) -> Identity {
        Identity::Address(self.ifindex, self.addr)
    }
}

impl Route {
    pub fn identity(&self) -> Identity {
        let (table, dst, metric) = self.slot();
        Identity::Route(table, dst, metric)
    }
}

impl DesiredState {
    /// The routed prefix each desired object (held back or not) is made for, by the
    /// kernel's identity of the object: what names an object found in the kernel.
    pub fn origins(&self) -> std::collections::HashMap<Identity, Origin> {
        let addresses = self.addresses.iter().chain(&self.waiting);
        addresses
            .map(|a| (a.identity(), a.origin.clone()))
            .chain(self.routes.iter().map(|r| (r.identity(), r.origin.clone())))
            .chain(
                self.proxies
                    .iter()
                    .map(|p| (p.identity(), p.origin.clone())),
            )
            .collect()
    }
}

/// A network interface as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// IFF_UP: administratively up.
    pub up: bool,
    /// IFF_LOWER_UP: the carrier is there (a veth whose peer is up, a NIC with link).
    pub lower_up: bool,
    /// IFLA_IFALIAS: how routed6d marks a bridge it created (`workload_bridge_alias`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

impl Link {
    /// Up with a carrier: an address added now is the one the link keeps. One added
    /// to a link that is down is flushed or raced by the OS as it comes back.
    pub fn carries_traffic(&self) -> bool {
        self.up && self.lower_up
    }
}

/// An IPv6 address as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ObservedAddress {
    pub address: Address,
    /// IFA_PROTO; 0 when the kernel set none.
    pub protocol: u8,
}

/// An IPv6 route as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ObservedRoute {
    pub route: Route,
    pub protocol: u8,
}

/// What the kernel holds: one dump.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ObservedState {
    pub links: Vec<Link>,
    /// Every IPv6 address.
    pub addresses: Vec<ObservedAddress>,
    /// IPv6 routes in tables main and local of the kinds routed6d installs (unicast
    /// without gateway, local, unreachable), any protocol: foreign ones are needed to
    /// see conflicts.
    pub routes: Vec<ObservedRoute>,
    /// Current values of the sysctls asked for (key → value).
    pub sysctls: BTreeMap<String, String>,
    /// Every proxy NDP entry (any protocol: a foreign one for an address is used as
    /// it is, never stamped as routed6d's).
    pub proxies: Vec<ObservedProxy>,
    /// The IPv6 neighbour caches, when asked for (`Kernel::observe_neighbours`): what
    /// the workloads behind an on-link prefix use.
    pub neighbours: Vec<Neighbour>,
}

impl ObservedState {
    pub fn link_by_name(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }
}

/// One change to the kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    AddAddress(Address),
    DelAddress(Address),
    AddRoute(Route),
    /// An owned route in the same slot with other attributes: swapped atomically
    /// (NLM_F_REPLACE) so the prefix is never unrouted.
    ReplaceRoute(Route),
    DelRoute(Route),
    SetSysctl {
        key: String,
        value: String,
        was: String,
        why: String,
    },
    /// Create a workload's bridge, up, marked as routed6d's by its alias.
    AddBridge(Bridge),
    /// Delete a bridge routed6d created (its alias says so).
    DelBridge(Bridge),
    /// Answer neighbour solicitations for an address on an interface (proxy NDP).
    AddProxy(Proxy),
    /// Delete a proxy NDP entry routed6d added (its protocol says so).
    DelProxy(Proxy),
}

impl Op {
    /// Short verb for the `OP` journal field.
    pub fn verb(&self) -> &'static str {
        match self {
            Op::AddAddress(_) => "add-address",
            Op::DelAddress(_) => "del-address",
            Op::AddRoute(_) => "add-route",
            Op::ReplaceRoute(_) => "replace-route",
            Op::DelRoute(_) => "del-route",
            Op::SetSysctl { .. } => "set-sysctl",
            Op::AddBridge(_) => "add-bridge",
            Op::DelBridge(_) => "del-bridge",
            Op::AddProxy(_) => "add-proxy",
            Op::DelProxy(_) => "del-proxy",
        }
    }

    pub fn is_removal(&self) -> bool {
        matches!(
            self,
            Op::DelAddress(_) | Op::DelRoute(_) | Op::DelBridge(_) | Op::DelProxy(_)
        )
    }

    /// The kernel's identity of the object the op changes (None: a sysctl).
    pub fn identity(&self) -> Option<Identity> {
        match self {
            Op::AddAddress(a) | Op::DelAddress(a) => Some(a.identity()),
            Op::AddRoute(r) | Op::ReplaceRoute(r) | Op::DelRoute(r) => Some(r.identity()),
            Op::AddProxy(p) | Op::DelProxy(p) => Some(p.identity()),
            Op::SetSysctl { .. } | Op::AddBridge(_) | Op::DelBridge(_) => None,
        }
    }
}

/// One change to the kernel and the routed prefix it serves: the one its object is made
/// for, or (a removal) was made for in the pass before. None: a sysctl, or an object no
/// pass of this process made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Planned {
    pub op: Op,
    pub origin: Option<Origin>,
}

impl Planned {
    pub fn new(op: Op, origin: Option<Origin>) -> Self {
        Planned { op, origin }
    }
}

/// Something in the way that routed6d will not touch because it is not its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// What routed6d wanted (as `ip` text).
    pub wanted: String,
    /// What holds its place.
    pub found: String,
}

/// The difference between desired and observed state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// In the order to apply: additions first, so nothing is left bare mid-change.
    pub ops: Vec<Planned>,
    pub conflicts: Vec<Conflict>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

fn route_type_word(kind: RouteKind) -> &'static str {
    match kind {
        RouteKind::Unicast | RouteKind::Via { .. } => "",
        RouteKind::Local => "local ",
        RouteKind::Unreachable => "unreachable ",
    }
}

fn table_suffix(table: u32) -> String {
    match table {
        TABLE_MAIN => String::new(),
        TABLE_LOCAL => " table local".to_string(),
        other => format!(" table {other}"),
    }
}

/// `ip -6 route` style: `local 2001:db8::/64 dev lo table local metric 1024`.
impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dst.prefix_len() == 0 {
            write!(f, "{}default", route_type_word(self.kind))?;
        } else {
            write!(f, "{}{}", route_type_word(self.kind), self.dst)?;
        }
        if let RouteKind::Via { gateway, .. } = self.kind {
            write!(f, " via {gateway}")?;
        }
        match (&self.ifname, self.ifindex) {
            (Some(name), _) => write!(f, " dev {name}")?,
            (None, Some(index)) => write!(f, " dev if{index}")?,
            (None, None) => {}
        }
        if let RouteKind::Via { src: Some(src), .. } = self.kind {
            write!(f, " src {src}")?;
        }
        write!(f, "{} metric {}", table_suffix(self.table), self.metric)
    }
}

/// `ip -6 neigh` style: `proxy 2001:db8::5 dev eth0`.
impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "proxy {} dev {}", self.addr, self.ifname)
    }
}

/// `ip -6 addr` style: `2001:db8::1/128 dev lo`.
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} dev {}", self.addr, self.prefix_len, self.ifname)?;
        if self.no_prefix_route {
            f.write_str(" noprefixroute")?;
        }
        Ok(())
    }
}

/// One `ip -6 …`-like line per op: this is what `routed6d plan` prints.
impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::AddAddress(a) => write!(f, "ip -6 addr add {a} nodad"),
            Op::DelAddress(a) => write!(f, "ip -6 addr del {a}"),
            Op::AddRoute(r) => write!(f, "ip -6 route add {r}"),
            Op::ReplaceRoute(r) => write!(f, "ip -6 route replace {r}"),
            Op::DelRoute(r) => write!(f, "ip -6 route del {r}"),
            Op::SetSysctl {
                key, value, was, ..
            } => {
                write!(
                    f,
                    "sysctl -w {}={value}  # was {was}",
                    key.replace('/', ".")
                )
            }
            Op::AddBridge(b) => write!(
                f,
                "ip link add {} type bridge alias {:?} up",
                b.name, b.alias
            ),
            Op::DelBridge(b) => write!(f, "ip link del {} type bridge", b.name),
            Op::AddProxy(p) => write!(f, "ip -6 neigh add {p}"),
            Op::DelProxy(p) => write!(f, "ip -6 neigh del {p}"),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for planned in &self.ops {
            writeln!(f, "{}", planned.op)?;
        }
        for c in &self.conflicts {
            writeln!(f, "# not touched: want {} but found {}", c.wanted, c.found)?;
        }
        Ok(())
    }
}
