//! The configuration file, /etc/routed6d/routed6d.toml: parsed strictly (unknown keys
//! are errors), validated in one place, and turned into a `Config` whose secrets are
//! already read. Every error is one line naming the file, the line and the key.

use std::fmt;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

use crate::model::DEFAULT_PROTOCOL;

/// Where the daemon looks when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/routed6d/routed6d.toml";
/// Where the token lives when neither `token_file` nor systemd credentials say otherwise.
pub const DEFAULT_TOKEN_FILE: &str = "/etc/routed6d/token";
/// Where the daemon leaves its status for `routed6d status`.
pub const DEFAULT_STATUS_FILE: &str = "/run/routed6d/status.json";
/// How long the OS has to put its next hop address back (a flap, a reconfigure)
/// before routed6d stands in: longer than systemd-networkd, ifupdown or a DHCPv6/SLAAC
/// client take after a link comes back.
pub const DEFAULT_NEXT_HOP_GRACE: Duration = Duration::from_secs(10);
/// Where state that must outlive the process is kept (the address record, on kernels
/// without address protocols); systemd's StateDirectory=routed6d.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/routed6d";
/// HostUp's API (v2 and legacy share the host).
pub const HOSTUP_BASE_URL: &str = "https://cloud.hostup.se";
/// DigitalOcean's API.
pub const DIGITALOCEAN_BASE_URL: &str = "https://api.digitalocean.com";
/// The droplet metadata service: link-local, plain http, no auth.
pub const DIGITALOCEAN_METADATA_URL: &str = "http://169.254.169.254";
/// The one address outside loopback a plain-http URL may name: the link-local metadata
/// service, which is reachable only from the droplet itself and offers no https.
const METADATA_ADDR: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 169, 254);
/// The legacy API has no GET: every read is a POST that makes HostUp re-read the VM's
/// address. Once an hour keeps that write-shaped traffic low; SIGHUP or
/// `routed6d once` ask at once.
pub const LEGACY_POLL_INTERVAL: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Token { path: PathBuf, message: String },
    /// The file is well-formed, but the host cannot give what it leaves to the host:
    /// `kind = "onlink"` without `prefix` on an uplink with no global IPv6 address.
    #[error("{path}: {message}")]
    Unmet { path: PathBuf, message: String },
}

/// The token's type lives with the code that reads it; providers name it from here.
pub use crate::token::Secret;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// HostUp API v2 (per-VPS state, or the account's routes with `source = "account"`).
    Hostup,
    /// HostUp's legacy `/api/vm/{vmid}/routed-ipv6` (X-API-Key, POST only).
    HostupLegacy,
    /// DigitalOcean Reserved IPv6.
    #[serde(rename = "digitalocean")]
    DigitalOcean,
    /// Routes written in the config: no API, no network calls.
    Static,
    /// An on-link /64 (the uplink's own, given or detected): no API; workloads get
    /// sub-prefixes of it, answered for on the uplink by proxy NDP. See issue 17.
    Onlink,
}

impl ProviderKind {
    /// The name the config file uses.
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Hostup => "hostup",
            ProviderKind::HostupLegacy => "hostup-legacy",
            ProviderKind::DigitalOcean => "digitalocean",
            ProviderKind::Static => "static",
            ProviderKind::Onlink => "onlink",
        }
    }

    /// The `[provider]` keys that mean something for this kind (`kind` aside).
    fn keys(self) -> &'static [&'static str] {
        match self {
            ProviderKind::Hostup => &[
                "base_url",
                "token_file",
                "vps_id",
                "poll_interval",
                "allocate",
                "refresh_next_hop",
                "source",
                "pool",
                "prefix_length",
                "max_prefixes",
            ],
            ProviderKind::HostupLegacy => &[
                "base_url",
                "token_file",
                "vmid",
                "poll_interval",
                "allocate",
                "max_prefixes",
            ],
            ProviderKind::DigitalOcean => &[
                "base_url",
                "token_file",
                "droplet_id",
                "metadata_url",
                "reserved_ipv6",
                "claim",
                "outbound_source",
                "poll_interval",
                "max_prefixes",
            ],
            ProviderKind::Static => &["routes", "poll_interval", "max_prefixes"],
            ProviderKind::Onlink => &["prefix", "poll_interval"],
        }
    }
}

/// What a HostUp v2 poll reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostupSource {
    /// `GET /api/v2/vps/{id}/routed-ipv6`: the VPS's one allocation.
    Vps,
    /// `GET /api/v2/routed-ipv6`: every active route of the account whose `vpsId` is
    /// this VPS (a /48, /56s and /64s at once).
    Account,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefreshNextHop {
    /// POST refresh_next_hop when the allocation's next hop is stale.
    Auto,
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NextHopPolicy {
    /// Add the next hop as a /128 on the uplink when no address there has it.
    Ensure,
    /// Only report a missing next hop.
    Check,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrefixMode {
    /// Chosen host addresses of each prefix as /128s.
    Addresses,
    /// `local <prefix> dev lo`: every address of the prefix answers here.
    Anyip,
    /// The prefix routed on to another interface (containers, VMs, a bridge).
    Delegate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStop {
    Keep,
    Withdraw,
}

/// How routed6d tells its addresses from others (routes always carry its protocol).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressOwnership {
    /// Probe at start: the address protocol (IFA_PROTO, Linux 5.18+) when the kernel
    /// keeps it, else the record in `state_dir`.
    Auto,
    /// The record, as on a kernel without address protocols (tests of that path).
    Record,
}

/// An https URL, or http to a loopback host (the simulated provider, a local proxy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl(reqwest::Url);

impl BaseUrl {
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::parse_with(text, false)
    }

    /// A metadata-service URL: like `parse`, and plain http is also allowed to
    /// 169.254.169.254 (link-local, only reachable from the host itself, no https).
    pub fn parse_metadata(text: &str) -> Result<Self, String> {
        Self::parse_with(text, true)
    }

    fn parse_with(text: &str, metadata: bool) -> Result<Self, String> {
        let url = reqwest::Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
        let is_metadata = matches!(url.host(), Some(url::Host::Ipv4(a)) if a == METADATA_ADDR);
        match url.scheme() {
            "https" => {}
            "http" if is_loopback_host(&url) => {}
            "http" if metadata && is_metadata => {}
            "http" if metadata => {
                return Err(format!(
                    "plain http:// is allowed only for loopback hosts and {METADATA_ADDR}, not {}",
                    url.host_str().unwrap_or("")
                ));
            }
            "http" => {
                return Err(format!(
                    "plain http:// is allowed only for loopback hosts, not {}; use https://",
                    url.host_str().unwrap_or("")
                ));
            }
            other => return Err(format!("scheme {other}:// is not http(s)")),
        }
        if url.host_str().is_none() {
            return Err("URL has no host".into());
        }
        // Credentials in the URL would be printed by check-config and status and sent
        // beside the token; a query or fragment has no place in a base (issue 15).
        if !url.username().is_empty() || url.password().is_some() {
            return Err("a URL with credentials (user:password@) is refused: the key goes in provider.token_file".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("a base URL has no query (?…) or fragment (#…)".into());
        }
        Ok(BaseUrl(url))
    }

    pub fn url(&self) -> &reqwest::Url {
        &self.0
    }

    /// The URL with `path` appended to the base's path (which may be a prefix).
    pub fn join(&self, path: &str) -> reqwest::Url {
        let mut url = self.0.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}{path}"));
        url
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str().trim_end_matches('/'))
    }
}

/// A literal loopback address. Not `localhost`: a name is whatever NSS resolves it to,
/// and the token would follow (issue 15).
fn is_loopback_host(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(_)) => false,
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    }
}

impl<'de> Deserialize<'de> for BaseUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        BaseUrl::parse(&text).map_err(de::Error::custom)
    }
}

/// `provider.metadata_url`: a `BaseUrl` that may also be http://169.254.169.254.
#[derive(Clone, Debug, PartialEq, Eq)]
struct MetadataUrl(BaseUrl);

impl<'de> Deserialize<'de> for MetadataUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        BaseUrl::parse_metadata(&text)
            .map(MetadataUrl)
            .map_err(de::Error::custom)
    }
}

/// A humane duration ("30s", "5m", "1h 30m"), at least one second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollInterval(pub Duration);

impl<'de> Deserialize<'de> for PollInterval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let duration = humane_duration(&text, "\"60s\" or \"5m\"").map_err(de::Error::custom)?;
        if duration < Duration::from_secs(1) {
            return Err(de::Error::custom(format!(
                "{text:?} is shorter than the minimum of 1s"
            )));
        }
        // A clock plus a duration of centuries overflows: "300000000000y" once made
        // the daemon panic into a restart loop (issue 15). A day is longer than any
        // provider's answer stays useful.
        if duration > POLL_INTERVAL_MAX {
            return Err(de::Error::custom(format!(
                "{text:?} is longer than the maximum of 1d"
            )));
        }
        Ok(PollInterval(duration))
    }
}

/// `text` as a duration ("30s", "5m", "1h 30m"), or a message that says how to write
/// one (`example`).
fn humane_duration(text: &str, example: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration ({e}); write e.g. {example}"))
}

/// The route protocols linux/rtnetlink.h (RTPROT_*) and iproute2's `rt_protos` give to
/// other software (the kernel's own 0-4 are refused apart).
const PROTOCOL_OWNERS: [(u8, &str); 18] = [
    (8, "gated"),
    (9, "the kernel's router advertisements (ra)"),
    (10, "mrt"),
    (11, "zebra"),
    (12, "bird"),
    (13, "dnrouted"),
    (14, "xorp"),
    (15, "ntk"),
    (16, "dhcp"),
    (17, "mrouted"),
    (18, "keepalived"),
    (42, "babel"),
    (99, "openr"),
    (186, "bgp"),
    (187, "isis"),
    (188, "ospf"),
    (189, "rip"),
    (192, "eigrp"),
];

/// Who else uses route protocol `number`, if anyone known.
fn protocol_owner(number: u8) -> Option<&'static str> {
    PROTOCOL_OWNERS
        .iter()
        .find(|(n, _)| *n == number)
        .map(|(_, owner)| *owner)
}

/// How long routed6d leaves the OS's next hop address to the OS after it went
/// (`uplink.next_hop_grace`): a humane duration from 0s to 10 minutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grace(pub Duration);

/// Longer than any network manager takes to put its address back; beyond it a host
/// would stay without its routed prefix for nothing.
const GRACE_MAX: Duration = Duration::from_secs(600);

impl<'de> Deserialize<'de> for Grace {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let duration = humane_duration(&text, "\"10s\"").map_err(de::Error::custom)?;
        if duration > GRACE_MAX {
            return Err(de::Error::custom(format!(
                "{text:?} is longer than the maximum of 10m"
            )));
        }
        Ok(Grace(duration))
    }
}

/// The longest `poll_interval`.
const POLL_INTERVAL_MAX: Duration = Duration::from_secs(86_400);

/// The host part of an address placed in every routed prefix (`::1`, `::53`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostPart(pub Ipv6Addr);

impl<'de> Deserialize<'de> for HostPart {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let addr: Ipv6Addr = text.parse().map_err(|_| {
            de::Error::custom(format!("{text:?} is not an IPv6 host part such as \"::1\""))
        })?;
        if addr.is_unspecified() {
            return Err(de::Error::custom(
                "\"::\" is the subnet-router anycast address, not a host part",
            ));
        }
        Ok(HostPart(addr))
    }
}

/// An interface name as the kernel accepts it (IFNAMSIZ - 1 bytes, no '/', no space).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfName(pub String);

impl<'de> Deserialize<'de> for IfName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        let valid = !name.is_empty()
            && name.len() < 16
            && name != "."
            && name != ".."
            && !name
                .chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace());
        if !valid {
            return Err(de::Error::custom(format!(
                "{name:?} is not a valid interface name"
            )));
        }
        Ok(IfName(name))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    provider: RawProvider,
    uplink: RawUplink,
    #[serde(default)]
    prefix: RawPrefix,
    #[serde(default)]
    daemon: RawDaemon,
    metrics: Option<RawMetrics>,
    probe: Option<RawProbe>,
    #[serde(default)]
    hook: Vec<RawHook>,
    #[serde(default)]
    workload: Vec<RawWorkload>,
    docker: Option<RawDocker>,
}

/// `[docker]`: where the Engine API listens, for `kind = "docker"` workloads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocker {
    socket: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    kind: ProviderKind,
    base_url: Option<BaseUrl>,
    token_file: Option<PathBuf>,
    vps_id: Option<String>,
    poll_interval: Option<PollInterval>,
    allocate: Option<bool>,
    refresh_next_hop: Option<RefreshNextHop>,
    source: Option<HostupSource>,
    pool: Option<String>,
    prefix_length: Option<i64>,
    vmid: Option<u64>,
    droplet_id: Option<u64>,
    metadata_url: Option<MetadataUrl>,
    reserved_ipv6: Option<Vec<String>>,
    claim: Option<bool>,
    outbound_source: Option<bool>,
    routes: Option<Vec<RawStaticRoute>>,
    max_prefixes: Option<i64>,
    prefix: Option<String>,
}

impl RawProvider {
    /// The optional keys that are set, by name.
    fn present(&self) -> Vec<&'static str> {
        let set = [
            ("base_url", self.base_url.is_some()),
            ("token_file", self.token_file.is_some()),
            ("vps_id", self.vps_id.is_some()),
            ("poll_interval", self.poll_interval.is_some()),
            ("allocate", self.allocate.is_some()),
            ("refresh_next_hop", self.refresh_next_hop.is_some()),
            ("source", self.source.is_some()),
            ("pool", self.pool.is_some()),
            ("prefix_length", self.prefix_length.is_some()),
            ("vmid", self.vmid.is_some()),
            ("droplet_id", self.droplet_id.is_some()),
            ("metadata_url", self.metadata_url.is_some()),
            ("reserved_ipv6", self.reserved_ipv6.is_some()),
            ("claim", self.claim.is_some()),
            ("outbound_source", self.outbound_source.is_some()),
            ("routes", self.routes.is_some()),
            ("max_prefixes", self.max_prefixes.is_some()),
            ("prefix", self.prefix.is_some()),
        ];
        set.iter()
            .filter(|(_, present)| *present)
            .map(|(key, _)| *key)
            .collect()
    }
}

/// One `[provider] routes` entry of `kind = "static"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStaticRoute {
    prefix: String,
    next_hop: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUplink {
    interface: IfName,
    next_hop: Option<NextHopPolicy>,
    next_hop_grace: Option<Grace>,
    keep_accept_ra: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(Default)]
struct RawPrefix {
    /// None: `addresses` (Option, so that `kind = "onlink"` can tell a key written).
    mode: Option<PrefixMode>,
    addresses: Option<Vec<HostPart>>,
    interface: Option<IfName>,
    unreachable: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    on_stop: Option<OnStop>,
    protocol: Option<u8>,
    protocol_shared: Option<bool>,
    status_file: Option<PathBuf>,
    address_ownership: Option<AddressOwnership>,
    state_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<ListenAddr>,
    textfile: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    target: ProbeTarget,
    interval: Option<PollInterval>,
    timeout: Option<PollInterval>,
    /// Wide, so that 0 and 70000 get this file's message rather than toml's.
    tcp_port: Option<i64>,
}

/// One `[[hook]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHook {
    exec: PathBuf,
    timeout: Option<PollInterval>,
}

/// One `[[workload]]` table (issue 17). Flat, like the rest of the raw layer: the kind's
/// keys are checked against the kind in `resolve_workloads`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    name: String,
    kind: WorkloadKind,
    interface: Option<IfName>,
    docker_network: Option<String>,
    prefix_length: i64,
    slot: Option<u64>,
}

/// What a workload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    /// A Linux bridge: the gateway address, the route and router advertisements on it.
    Bridge,
    /// A Docker network routed6d creates through the Engine API (`docker`).
    Docker,
}

impl WorkloadKind {
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Bridge => "bridge",
            WorkloadKind::Docker => "docker",
        }
    }
}

/// `metrics.listen`: an address and port to serve /metrics on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ListenAddr(std::net::SocketAddr);

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let addr: std::net::SocketAddr = text.parse().map_err(|_| {
            de::Error::custom(format!(
                "{text:?} is not an address and port such as \"[::1]:9626\""
            ))
        })?;
        if addr.port() == 0 {
            return Err(de::Error::custom(format!(
                "{text:?} has port 0: Prometheus needs a fixed port such as 9626"
            )));
        }
        Ok(ListenAddr(addr))
    }
}

/// `probe.target`: an IPv6 address the prefix's traffic can reach through the
/// provider: not one that never leaves the host or the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ProbeTarget(Ipv6Addr);

impl<'de> Deserialize<'de> for ProbeTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let addr: Ipv6Addr = text
            .trim()
            .parse()
            .map_err(|_| de::Error::custom(format!("{text:?} is not an IPv6 address")))?;
        let why = if addr.is_unspecified() || addr.is_loopback() {
            Some("never leaves this host")
        } else if addr.is_multicast() {
            Some("is multicast")
        } else if addr.is_unicast_link_local() {
            Some("is link-local: it never crosses the provider's router")
        } else {
            None
        };
        match why {
            Some(why) => Err(de::Error::custom(format!(
                "{addr} {why}; name an address beyond the provider's router, such as a public DNS resolver"
            ))),
            None => Ok(ProbeTarget(addr)),
        }
    }
}

/// Validated configuration. Cloning is cheap enough; the token is shared.
#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    pub provider: ProviderConfig,
    pub uplink: UplinkConfig,
    pub prefix: PrefixConfig,
    pub daemon: DaemonConfig,
    pub metrics: MetricsConfig,
    /// `[probe]`; None: no probe.
    pub probe: Option<ProbeConfig>,
    /// `[[hook]]`, in the order written.
    pub hooks: Vec<HookConfig>,
    /// `[[workload]]`, in the order written, each with its slot.
    pub workloads: Vec<WorkloadConfig>,
    /// The Docker Engine API's socket (`[docker] socket`), for docker workloads.
    pub docker_socket: PathBuf,
}

/// One `[[workload]]`: a sub-prefix of the routed prefix for containers or VMs behind
/// this host (`workload`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadConfig {
    pub name: String,
    pub kind: WorkloadKind,
    /// The bridge: the workload's own (`kind = "bridge"`), or the one Docker is told to
    /// name its network's (`kind = "docker"`).
    pub interface: String,
    /// The sub-prefix's length.
    pub prefix_length: u8,
    /// Which sub-prefix of that length (`workload::assign_slots`); never 0.
    pub slot: u64,
    /// `slot` was written in the file rather than assigned.
    pub slot_pinned: bool,
    /// The Docker network (`kind = "docker"`).
    pub docker_network: Option<String>,
}

/// The resolved `[provider]` section: how often to ask, and what each kind needs (and
/// nothing it does not).
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    pub poll_interval: Duration,
    /// The most prefixes one answer may route here (`rules::DEFAULT_MAX_PREFIXES`
    /// unless set); an answer with more is refused whole.
    pub max_prefixes: usize,
    pub settings: ProviderSettings,
}

/// One variant per kind of provider, holding that kind's keys with its defaults.
#[derive(Clone, Debug)]
pub enum ProviderSettings {
    Hostup(HostupSettings),
    HostupLegacy(LegacySettings),
    DigitalOcean(DigitalOceanSettings),
    /// The routes, in the order written. No API, no token.
    Static(Vec<StaticRoute>),
    /// The on-link /64: written (`prefix`), or None: the uplink's own, detected from
    /// its global address at every poll. No API, no token.
    Onlink(Option<ipnet::Ipv6Net>),
}

/// Where a provider's API is and where its key lies. The key itself is read when the
/// provider is built (`Config::read_token`), not while the file is parsed.
#[derive(Clone, Debug)]
pub struct Api {
    pub base_url: BaseUrl,
    pub token_file: PathBuf,
    /// `token_file` is unset and the key is systemd's credential: where the operator
    /// writes it is the file the unit loads, not the path read.
    pub token_from_credentials: bool,
}

/// `kind = "hostup"`.
#[derive(Clone, Debug)]
pub struct HostupSettings {
    pub api: Api,
    /// None: looked up by the uplink's primary IP on the first poll.
    pub vps_id: Option<String>,
    pub source: HostupSource,
    /// Ask for a prefix when none is allocated.
    pub allocate: bool,
    pub refresh_next_hop: RefreshNextHop,
    /// `source = "account"`: the pool (`ripv6_…`) a route is created from, when the
    /// account has more than one.
    pub pool: Option<String>,
    /// `source = "account"`: the length of the route created (48, 56 or 64), when the
    /// account allows more than one.
    pub prefix_length: Option<u8>,
}

/// The route lengths HostUp's account API documents (`pools[].routes[].prefixLength`).
pub const HOSTUP_ROUTE_LENGTHS: [u8; 3] = [48, 56, 64];

/// `kind = "hostup-legacy"`.
#[derive(Clone, Debug)]
pub struct LegacySettings {
    pub api: Api,
    /// The VM's integer id in HostUp's panel.
    pub vmid: u64,
    pub allocate: bool,
}

/// `kind = "digitalocean"`.
#[derive(Clone, Debug)]
pub struct DigitalOceanSettings {
    pub api: Api,
    /// None: asked of the metadata service.
    pub droplet_id: Option<u64>,
    pub metadata_url: BaseUrl,
    /// The reserved IPv6 addresses to use (empty: every one in the account assigned to
    /// this droplet).
    pub reserved_ipv6: Vec<Ipv6Addr>,
    /// Assign the listed addresses that are unassigned to this droplet.
    pub claim: bool,
    /// Make the (first) reserved IPv6 the source of outgoing traffic, by an owned copy
    /// of the default route with `src` that takes precedence over it.
    pub outbound_source: bool,
}

impl ProviderConfig {
    pub fn kind(&self) -> ProviderKind {
        match self.settings {
            ProviderSettings::Hostup(_) => ProviderKind::Hostup,
            ProviderSettings::HostupLegacy(_) => ProviderKind::HostupLegacy,
            ProviderSettings::DigitalOcean(_) => ProviderKind::DigitalOcean,
            ProviderSettings::Static(_) => ProviderKind::Static,
            ProviderSettings::Onlink(_) => ProviderKind::Onlink,
        }
    }

    /// The API and its key; None for `static`.
    pub fn api(&self) -> Option<&Api> {
        match &self.settings {
            ProviderSettings::Hostup(h) => Some(&h.api),
            ProviderSettings::HostupLegacy(l) => Some(&l.api),
            ProviderSettings::DigitalOcean(d) => Some(&d.api),
            ProviderSettings::Static(_) | ProviderSettings::Onlink(_) => None,
        }
    }

    /// Ask the provider for what is missing: HostUp's `allocate`, DigitalOcean's `claim`.
    pub fn allocate(&self) -> bool {
        match &self.settings {
            ProviderSettings::Hostup(h) => h.allocate,
            ProviderSettings::HostupLegacy(l) => l.allocate,
            ProviderSettings::DigitalOcean(d) => d.claim,
            ProviderSettings::Static(_) | ProviderSettings::Onlink(_) => false,
        }
    }

    /// Only HostUp v2 has a next hop to refresh: the legacy poll is itself a refresh,
    /// DigitalOcean and static routes have none at the provider.
    pub fn refresh_next_hop(&self) -> RefreshNextHop {
        match &self.settings {
            ProviderSettings::Hostup(h) => h.refresh_next_hop,
            _ => RefreshNextHop::Never,
        }
    }

    pub fn outbound_source(&self) -> bool {
        matches!(&self.settings, ProviderSettings::DigitalOcean(d) if d.outbound_source)
    }
}

/// A route written in the config (`kind = "static"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticRoute {
    pub prefix: ipnet::Ipv6Net,
    pub next_hop: Ipv6Addr,
}

#[derive(Clone, Debug)]
pub struct UplinkConfig {
    pub interface: String,
    pub next_hop: NextHopPolicy,
    /// After the OS's next hop address went (or the uplink came back), how long the
    /// OS has to put it back before routed6d stands in (`next_hop`).
    pub next_hop_grace: Duration,
    /// With forwarding on for the uplink, set its accept_ra 1 → 2, so router
    /// advertisements (and the default route they give) keep coming.
    pub keep_accept_ra: bool,
}

#[derive(Clone, Debug)]
pub struct PrefixConfig {
    pub mode: PrefixMode,
    pub addresses: Vec<Ipv6Addr>,
    pub interface: String,
    pub unreachable: bool,
}

#[derive(Clone, Debug)]
pub struct DaemonConfig {
    pub on_stop: OnStop,
    pub protocol: u8,
    pub status_file: PathBuf,
    pub address_ownership: AddressOwnership,
    pub state_dir: PathBuf,
}

/// `[metrics]`: where the metrics go. Both None (the default): nowhere, and no
/// socket is opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` here.
    pub listen: Option<std::net::SocketAddr>,
    /// Write the same metrics here for node_exporter's textfile collector.
    pub textfile: Option<PathBuf>,
}

/// `[probe]`: an ICMPv6 echo from an address of each routed prefix to `target`, and
/// a TCP connect to `tcp_port` beside it when set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    pub target: Ipv6Addr,
    pub interval: Duration,
    /// How long to wait for the reply; shorter than `interval`.
    pub timeout: Duration,
    /// Also connect to `[target]:tcp_port` (1-65535); None: the echo alone.
    pub tcp_port: Option<u16>,
}

/// One `[[hook]]`: a program run after each change routed6d applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookConfig {
    pub exec: PathBuf,
    pub timeout: Duration,
}

/// Where Docker's Engine API listens unless `[docker] socket` says otherwise: Debian's
/// and Docker's own packages (`docker.socket`; /var/run is a link to /run).
pub const DEFAULT_DOCKER_SOCKET: &str = "/run/docker.sock";

/// How often the probe asks when `probe.interval` is not set.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(10);
/// How long the probe waits for a reply at most when `probe.timeout` is not set
/// (less when the interval is shorter: a probe ends before the next one starts).
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a hook may run when its `timeout` is not set.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(10);

impl Config {
    /// Read, parse and validate: the one way to get a `Config` from a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let credentials_dir = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        Config::from_text(path, &text, credentials_dir.as_deref())
    }

    /// Like `load`, from text already read. No I/O: `credentials_dir` (systemd's
    /// `$CREDENTIALS_DIRECTORY`) only says where the token lies when `token_file` does
    /// not.
    pub fn from_text(
        path: &Path,
        text: &str,
        credentials_dir: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        let invalid = |line: usize, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
            // toml's message for a wrong type says what was wanted but not where; the
            // key it belongs to is what an operator searches the file for.
            let message = one_line(e.message())
                .replace("wanted string or table", "invalid type: expected a string");
            match e.span().and_then(|s| key_at(text, s.start)) {
                Some(key) => invalid(line, format!("{key}: {message}")),
                None => invalid(line, message),
            }
        })?;

        let key_line = |section: &str, key: &str| find_key_line(text, section, key);

        if raw.provider.kind == ProviderKind::Onlink {
            // The /64 is the uplink's own: the host already holds its address there and
            // the provider's router reaches every address of it on the link. Nothing of
            // `[prefix]` (addresses on lo, AnyIP, delegation, the unreachable route) has
            // anything to work on; only the workloads' sub-prefixes are routed6d's.
            let written = [
                ("mode", raw.prefix.mode.is_some()),
                ("addresses", raw.prefix.addresses.is_some()),
                ("interface", raw.prefix.interface.is_some()),
                ("unreachable", raw.prefix.unreachable.is_some()),
            ];
            if let Some((key, _)) = written.iter().find(|(_, set)| *set) {
                return Err(invalid(
                    key_line("prefix", key),
                    format!(
                        "prefix.{key} does not apply to kind = \"onlink\": the /64 is the uplink's own; routed6d places only the workloads' sub-prefixes in it"
                    ),
                ));
            }
            if raw.workload.is_empty() {
                return Err(invalid(
                    key_line("provider", "kind"),
                    "kind = \"onlink\" needs at least one [[workload]]: the uplink's own /64 needs nothing else from routed6d".into(),
                ));
            }
        }
        let mode = raw.prefix.mode.unwrap_or(PrefixMode::Addresses);
        let prefix_interface = raw
            .prefix
            .interface
            .map(|i| i.0)
            .unwrap_or_else(|| match mode {
                PrefixMode::Addresses | PrefixMode::Anyip => "lo".to_string(),
                PrefixMode::Delegate => String::new(),
            });
        match mode {
            PrefixMode::Delegate if prefix_interface.is_empty() => {
                return Err(invalid(
                    key_line("prefix", "mode"),
                    "prefix.mode = \"delegate\" needs prefix.interface (where the prefix is routed)".into(),
                ));
            }
            PrefixMode::Delegate if prefix_interface == raw.uplink.interface.0 => {
                return Err(invalid(
                    key_line("prefix", "interface"),
                    "prefix.interface must not be the uplink in delegate mode: the prefix would be sent back to the provider".into(),
                ));
            }
            PrefixMode::Anyip if prefix_interface != "lo" => {
                return Err(invalid(
                    key_line("prefix", "interface"),
                    "prefix.interface must be \"lo\" in anyip mode (local routes live on lo)"
                        .into(),
                ));
            }
            _ => {}
        }
        if raw.provider.kind == ProviderKind::DigitalOcean {
            // A reserved IPv6 is one address, not a prefix: it goes on prefix.interface
            // as it is; host parts, AnyIP and delegation have nothing to work on.
            if mode != PrefixMode::Addresses {
                return Err(invalid(
                    key_line("prefix", "mode"),
                    "prefix.mode does not apply to kind = \"digitalocean\": each reserved IPv6 is placed as a /128 on prefix.interface".into(),
                ));
            }
            if raw.prefix.addresses.is_some() {
                return Err(invalid(
                    key_line("prefix", "addresses"),
                    "prefix.addresses does not apply to kind = \"digitalocean\": the reserved IPv6 itself is the address".into(),
                ));
            }
        }
        if mode != PrefixMode::Addresses && raw.prefix.addresses.is_some() {
            return Err(invalid(
                key_line("prefix", "addresses"),
                "prefix.addresses applies only to prefix.mode = \"addresses\"".into(),
            ));
        }
        let addresses: Vec<Ipv6Addr> = raw
            .prefix
            .addresses
            .unwrap_or_else(|| vec![HostPart(Ipv6Addr::LOCALHOST)])
            .into_iter()
            .map(|h| h.0)
            .collect();
        if mode == PrefixMode::Addresses && addresses.is_empty() {
            return Err(invalid(
                key_line("prefix", "addresses"),
                "prefix.addresses is empty: name at least one host part such as \"::1\"".into(),
            ));
        }
        let protocol = raw.daemon.protocol.unwrap_or(DEFAULT_PROTOCOL);
        // 0-4 belong to the kernel and to `ip route` defaults (static = 4): owning
        // them would mean deleting routes routed6d never made.
        if protocol <= 4 {
            return Err(invalid(
                key_line("daemon", "protocol"),
                format!(
                    "daemon.protocol {protocol} is reserved (0-4 are the kernel's, boot's and static's); pick an unused number such as {DEFAULT_PROTOCOL}"
                ),
            ));
        }
        // Owning another daemon's number would delete its routes on every pass (with
        // 9, the kernel's router-advertised default route). See issue 15.
        if let Some(owner) = protocol_owner(protocol)
            && raw.daemon.protocol_shared != Some(true)
        {
            return Err(invalid(
                key_line("daemon", "protocol"),
                format!(
                    "daemon.protocol {protocol} belongs to {owner} (iproute2's rt_protos): routed6d would delete its routes; pick an unused number such as {DEFAULT_PROTOCOL}, or set daemon.protocol_shared = true if nothing else on this host uses it"
                ),
            ));
        }

        let state_dir = raw
            .daemon
            .state_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        // Relative, it would follow whatever directory the process started in.
        if !state_dir.is_absolute() {
            return Err(invalid(
                key_line("daemon", "state_dir"),
                format!(
                    "daemon.state_dir {} is not an absolute path",
                    state_dir.display()
                ),
            ));
        }

        let metrics = resolve_metrics(raw.metrics, text, path)?;
        let probe = resolve_probe(raw.probe, text, path)?;
        let hooks = resolve_hooks(raw.hook, text, path)?;
        let docker_socket = match raw.docker {
            Some(docker) if !docker.socket.is_absolute() => {
                return Err(invalid(
                    find_key_line(text, "docker", "socket"),
                    format!(
                        "docker.socket {} is not an absolute path",
                        docker.socket.display()
                    ),
                ));
            }
            Some(docker) => docker.socket,
            None => PathBuf::from(DEFAULT_DOCKER_SOCKET),
        };
        let workloads = workloads::resolve_workloads(
            raw.workload,
            workloads::WorkloadContext {
                uplink: &raw.uplink.interface.0,
                prefix_interface: &prefix_interface,
                mode,
                kind: raw.provider.kind,
            },
            text,
            path,
        )?;
        let provider = resolve_provider(raw.provider, credentials_dir, text, path)?;
        // Static routes and a written on-link prefix are known now: a workload that
        // cannot fit is refused here, not at the first pass.
        let known = match &provider.settings {
            ProviderSettings::Static(routes) => routes.first().map(|r| r.prefix),
            ProviderSettings::Onlink(prefix) => *prefix,
            _ => None,
        };
        if let Some(parent) = known {
            for (index, workload) in workloads.iter().enumerate() {
                crate::workload::carve(workload, parent).map_err(|e| {
                    invalid(
                        find_array_key_line(text, "workload", index, "prefix_length"),
                        e.to_string(),
                    )
                })?;
            }
        }

        Ok(Config {
            path: path.to_path_buf(),
            provider,
            uplink: UplinkConfig {
                interface: raw.uplink.interface.0,
                next_hop: raw.uplink.next_hop.unwrap_or(NextHopPolicy::Ensure),
                next_hop_grace: raw
                    .uplink
                    .next_hop_grace
                    .map_or(DEFAULT_NEXT_HOP_GRACE, |g| g.0),
                keep_accept_ra: raw.uplink.keep_accept_ra.unwrap_or(true),
            },
            prefix: PrefixConfig {
                mode,
                addresses,
                interface: prefix_interface,
                unreachable: raw.prefix.unreachable.unwrap_or(true),
            },
            daemon: DaemonConfig {
                on_stop: raw.daemon.on_stop.unwrap_or(OnStop::Keep),
                protocol,
                status_file: raw
                    .daemon
                    .status_file
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_STATUS_FILE)),
                address_ownership: raw
                    .daemon
                    .address_ownership
                    .unwrap_or(AddressOwnership::Auto),
                state_dir,
            },
            metrics,
            probe,
            hooks,
            workloads,
            docker_socket,
        })
    }

    /// The provider's API key (None for `static`, which has no API), read and checked
    /// by `token::read`.
    pub fn read_token(&self) -> Result<Option<Secret>, ConfigError> {
        let Some(api) = self.provider.api() else {
            return Ok(None);
        };
        crate::token::read(&api.token_file)
            .map(Some)
            .map_err(|e| {
                let message = if e.is_unwritten() && api.token_from_credentials {
                    format!(
                        "provider.token_file is unset and systemd's credential {} {}: the shipped unit loads it from {DEFAULT_TOKEN_FILE}; write the API key there (chmod 600)",
                        api.token_file.display(),
                        if matches!(e, crate::token::TokenError::Empty) { "is empty" } else { "does not exist" }
                    )
                } else {
                    format!("provider.token_file {}: {e}", api.token_file.display())
                };
                ConfigError::Token {
                    path: self.path.clone(),
                    message,
                }
            })
    }

    /// The file the operator writes the API key to (None for `static`): `token_file`,
    /// or for systemd's credential the file the shipped unit loads it from.
    pub fn key_file(&self) -> Option<&Path> {
        let api = self.provider.api()?;
        Some(if api.token_from_credentials {
            Path::new(DEFAULT_TOKEN_FILE)
        } else {
            &api.token_file
        })
    }

    /// The interfaces the config names, uplink first.
    pub fn interfaces(&self) -> Vec<&str> {
        let mut names = vec![self.uplink.interface.as_str()];
        if self.prefix.interface != self.uplink.interface {
            names.push(self.prefix.interface.as_str());
        }
        names
    }
}

/// `[metrics]`: the textfile must be a path node_exporter reads (absolute, `.prom`).
fn resolve_metrics(
    raw: Option<RawMetrics>,
    text: &str,
    path: &Path,
) -> Result<MetricsConfig, ConfigError> {
    let Some(raw) = raw else {
        return Ok(MetricsConfig::default());
    };
    if let Some(file) = &raw.textfile {
        let message = if !file.is_absolute() {
            Some("is not an absolute path")
        } else if file.extension().is_none_or(|e| e != "prom") {
            Some("does not end in .prom (node_exporter's textfile collector reads only *.prom)")
        } else {
            None
        };
        if let Some(message) = message {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                line: find_key_line(text, "metrics", "textfile"),
                message: format!("metrics.textfile {} {message}", file.display()),
            });
        }
    }
    Ok(MetricsConfig {
        listen: raw.listen.map(|l| l.0),
        textfile: raw.textfile,
    })
}

/// `[probe]`: the reply is awaited for less than the interval, so one probe ends
/// before the next starts; `tcp_port` is a port (0 is not one a connect can name).
fn resolve_probe(
    raw: Option<RawProbe>,
    text: &str,
    path: &Path,
) -> Result<Option<ProbeConfig>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let interval = raw.interval.map_or(DEFAULT_PROBE_INTERVAL, |i| i.0);
    let timeout = match raw.timeout {
        Some(t) if t.0 >= interval => {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                line: find_key_line(text, "probe", "timeout"),
                message: format!(
                    "probe.timeout {} is not shorter than probe.interval {}",
                    humantime::format_duration(t.0),
                    humantime::format_duration(interval)
                ),
            });
        }
        Some(t) => t.0,
        None => DEFAULT_PROBE_TIMEOUT.min(interval / 2),
    };
    let tcp_port = match raw.tcp_port {
        None => None,
        Some(n) => match u16::try_from(n) {
            Ok(port) if port != 0 => Some(port),
            _ => {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    line: find_key_line(text, "probe", "tcp_port"),
                    message: format!(
                        "probe.tcp_port {n} is out of range: write 1 to 65535, a port probe.target answers or refuses such as 443"
                    ),
                });
            }
        },
    };
    Ok(Some(ProbeConfig {
        target: raw.target.0,
        interval,
        timeout,
        tcp_port,
    }))
}

/// The longest a hook may be given: a hook is a notification, not a job.
const HOOK_TIMEOUT_MAX: Duration = Duration::from_secs(600);

/// `[[hook]]`: an absolute path (the daemon runs it without a shell or a search
/// path) and a timeout of at most 10 minutes.
fn resolve_hooks(
    raw: Vec<RawHook>,
    text: &str,
    path: &Path,
) -> Result<Vec<HookConfig>, ConfigError> {
    let invalid = |index: usize, key: &str, message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        line: find_array_key_line(text, "hook", index, key),
        message,
    };
    raw.into_iter()
        .enumerate()
        .map(|(index, hook)| {
            if !hook.exec.is_absolute() {
                return Err(invalid(
                    index,
                    "exec",
                    format!(
                        "hook[{index}].exec {} is not an absolute path",
                        hook.exec.display()
                    ),
                ));
            }
            let timeout = hook.timeout.map_or(DEFAULT_HOOK_TIMEOUT, |t| t.0);
            if timeout > HOOK_TIMEOUT_MAX {
                return Err(invalid(
                    index,
                    "timeout",
                    format!(
                        "hook[{index}].timeout {} is longer than the maximum of 10m",
                        humantime::format_duration(timeout)
                    ),
                ));
            }
            Ok(HookConfig {
                exec: hook.exec,
                timeout,
            })
        })
        .collect()
}

/// Check the `[provider]` keys against the kind and apply the kind's defaults. Errors
/// name the key and its line. Reads nothing: the token is read when the provider is
/// built.
fn resolve_provider(
    raw: RawProvider,
    credentials_dir: Option<&Path>,
    text: &str,
    path: &Path,
) -> Result<ProviderConfig, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        line: find_key_line(text, "provider", key),
        message,
    };
    let kind = raw.kind;
    for key in raw.present() {
        if !kind.keys().contains(&key) {
            return Err(invalid(
                key,
                format!(
                    "provider.{key} does not apply to kind = \"{}\" (its keys: {})",
                    kind.name(),
                    kind.keys().join(", ")
                ),
            ));
        }
    }
    if let Some(id) = &raw.vps_id
        && !crate::rules::is_path_id(id)
    {
        return Err(invalid(
            "vps_id",
            format!(
                "provider.vps_id {id:?} is not a VPS id such as \"vps_01hxa3b4c5d6e7f8g9h0j1k2m3\""
            ),
        ));
    }
    // Which pool and length only mean something where routed6d creates routes itself.
    for key in ["pool", "prefix_length"] {
        if raw.present().contains(&key) && raw.source != Some(HostupSource::Account) {
            return Err(invalid(
                key,
                format!("provider.{key} applies only to source = \"account\""),
            ));
        }
    }
    if let Some(pool) = &raw.pool
        && !(pool.starts_with("ripv6_") && crate::rules::is_path_id(pool))
    {
        return Err(invalid(
            "pool",
            format!(
                "provider.pool {pool:?} is not a pool id such as \"ripv6_01hxa3b4c5d6e7f8g9h0j1k2m3\""
            ),
        ));
    }
    let prefix_length = match raw.prefix_length {
        None => None,
        Some(n) => match u8::try_from(n) {
            Ok(length) if HOSTUP_ROUTE_LENGTHS.contains(&length) => Some(length),
            _ => {
                return Err(invalid(
                    "prefix_length",
                    format!("provider.prefix_length {n} is not 48, 56 or 64"),
                ));
            }
        },
    };
    let max_prefixes = match raw.max_prefixes {
        None => crate::rules::DEFAULT_MAX_PREFIXES,
        Some(n) => match usize::try_from(n) {
            Ok(max) if (1..=crate::rules::MAX_PREFIXES_LIMIT).contains(&max) => max,
            _ => {
                return Err(invalid(
                    "max_prefixes",
                    format!(
                        "provider.max_prefixes {n} is out of range: write 1 to {} (default {})",
                        crate::rules::MAX_PREFIXES_LIMIT,
                        crate::rules::DEFAULT_MAX_PREFIXES
                    ),
                ));
            }
        },
    };
    for (key, value) in [("vmid", raw.vmid), ("droplet_id", raw.droplet_id)] {
        if value == Some(0) {
            return Err(invalid(key, format!("provider.{key} must be 1 or more")));
        }
    }
    let mut reserved_ipv6 = Vec::new();
    for (index, text_ip) in raw.reserved_ipv6.iter().flatten().enumerate() {
        let field = format!("provider.reserved_ipv6[{index}]");
        let addr: Ipv6Addr = text_ip.trim().parse().map_err(|_| {
            invalid(
                "reserved_ipv6",
                format!("{field} {text_ip:?} is not an IPv6 address"),
            )
        })?;
        crate::rules::check_reserved(&field, addr).map_err(|m| invalid("reserved_ipv6", m))?;
        if reserved_ipv6.contains(&addr) {
            return Err(invalid(
                "reserved_ipv6",
                format!("{field} {addr} is listed twice"),
            ));
        }
        reserved_ipv6.push(addr);
    }
    if raw.claim == Some(true) && reserved_ipv6.is_empty() {
        return Err(invalid(
            "claim",
            "provider.claim = true needs provider.reserved_ipv6: routed6d claims only addresses it is told to".into(),
        ));
    }
    let mut static_routes: Vec<StaticRoute> = Vec::new();
    if kind == ProviderKind::Static {
        let Some(routes) = &raw.routes else {
            return Err(invalid(
                "kind",
                "kind = \"static\" needs provider.routes, e.g. routes = [ { prefix = \"2001:db8:42:100::/64\", next_hop = \"2001:db8::10\" } ]".into(),
            ));
        };
        // The bounds every provider's answer is held to (`provider::check_bounds`),
        // said here with the file's line rather than at every poll; the count first,
        // so the duplicate search below stays small.
        if routes.len() > max_prefixes {
            return Err(invalid(
                "routes",
                format!(
                    "provider.routes has {} routes, more than provider.max_prefixes = {max_prefixes}",
                    routes.len()
                ),
            ));
        }
        for (index, route) in routes.iter().enumerate() {
            let field = format!("provider.routes[{index}]");
            let prefix = static_route(&field, &route.prefix, &route.next_hop)
                .map_err(|m| invalid("routes", m))?;
            if let Some(other) = static_routes.iter().position(|r| r.prefix == prefix.prefix) {
                return Err(invalid(
                    "routes",
                    format!(
                        "{field}.prefix {} is already provider.routes[{other}]",
                        prefix.prefix
                    ),
                ));
            }
            static_routes.push(prefix);
        }
        crate::rules::check_next_hop_count(
            "provider.routes",
            static_routes.iter().map(|r| r.next_hop),
        )
        .map_err(|m| invalid("routes", m))?;
    }

    let (token_file, token_from_credentials) = match (&raw.token_file, credentials_dir) {
        (Some(file), _) => (file.clone(), false),
        (None, Some(dir)) => (dir.join("token"), true),
        (None, None) => (PathBuf::from(DEFAULT_TOKEN_FILE), false),
    };
    let api = |default_base: &str| Api {
        base_url: raw
            .base_url
            .clone()
            .unwrap_or_else(|| BaseUrl::parse(default_base).expect("built-in URL is valid")),
        token_file: token_file.clone(),
        token_from_credentials,
    };
    let default_interval = match kind {
        ProviderKind::HostupLegacy => LEGACY_POLL_INTERVAL,
        _ => Duration::from_secs(60),
    };
    let settings = match kind {
        ProviderKind::Hostup => ProviderSettings::Hostup(HostupSettings {
            api: api(HOSTUP_BASE_URL),
            vps_id: raw.vps_id,
            source: raw.source.unwrap_or(HostupSource::Vps),
            allocate: raw.allocate.unwrap_or(false),
            refresh_next_hop: raw.refresh_next_hop.unwrap_or(RefreshNextHop::Auto),
            pool: raw.pool,
            prefix_length,
        }),
        ProviderKind::HostupLegacy => ProviderSettings::HostupLegacy(LegacySettings {
            api: api(HOSTUP_BASE_URL),
            vmid: raw.vmid.ok_or_else(|| {
                invalid(
                    "kind",
                    "kind = \"hostup-legacy\" needs provider.vmid (the VM's integer id in HostUp's panel)"
                        .into(),
                )
            })?,
            allocate: raw.allocate.unwrap_or(false),
        }),
        ProviderKind::DigitalOcean => ProviderSettings::DigitalOcean(DigitalOceanSettings {
            api: api(DIGITALOCEAN_BASE_URL),
            droplet_id: raw.droplet_id,
            metadata_url: raw.metadata_url.map(|m| m.0).unwrap_or_else(|| {
                BaseUrl::parse_metadata(DIGITALOCEAN_METADATA_URL).expect("built-in URL is valid")
            }),
            reserved_ipv6,
            claim: raw.claim.unwrap_or(false),
            outbound_source: raw.outbound_source.unwrap_or(false),
        }),
        ProviderKind::Static => ProviderSettings::Static(static_routes),
        ProviderKind::Onlink => ProviderSettings::Onlink(match &raw.prefix {
            Some(text) => Some(onlink_prefix(text).map_err(|m| invalid("prefix", m))?),
            None => None,
        }),
    };
    Ok(ProviderConfig {
        poll_interval: raw.poll_interval.map(|p| p.0).unwrap_or(default_interval),
        max_prefixes,
        settings,
    })
}

/// The `section.key` whose line holds byte `offset` of `text` (None when that line is
/// not a `key = value` line, e.g. a section header for a missing key).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let (key, _) = text[start..end].split_once('=')?;
    let key = key.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('#') || key.starts_with('[') {
        return None;
    }
    let section = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| is_table_header(l))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    Some(match section {
        Some(section) => format!("{section}.{key}"),
        None => key.to_string(),
    })
}

/// `[section]` or `[[array]]` (not a line of a multi-line array value).
fn is_table_header(line: &str) -> bool {
    let inner = line
        .strip_prefix("[[")
        .and_then(|l| l.strip_suffix("]]"))
        .or_else(|| line.strip_prefix('[').and_then(|l| l.strip_suffix(']')));
    inner.is_some_and(|name| {
        let name = name.trim();
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    })
}

/// The line where `key` is set in the `index`th `[[array]]` table, or that table's
/// header line, or 0.
fn find_array_key_line(text: &str, array: &str, index: usize, key: &str) -> usize {
    let header = format!("[[{array}]]");
    let (mut count, mut inside, mut header_line) = (0, false, 0);
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if is_table_header(trimmed) {
            if inside {
                break;
            }
            if trimmed == header {
                inside = count == index;
                if inside {
                    header_line = number + 1;
                }
                count += 1;
            }
            continue;
        }
        if inside
            && let Some((k, _)) = trimmed.split_once('=')
            && k.trim() == key
        {
            return number + 1;
        }
    }
    header_line
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// toml messages can span lines; an operator's error is one line.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The line where `key` is set inside `[section]`, or the section header's line, or 0.
fn find_key_line(text: &str, section: &str, key: &str) -> usize {
    let mut current = String::new();
    let mut section_line = 0;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix('[') {
            current = rest.trim_end_matches(']').trim().to_string();
            if current == section {
                section_line = index + 1;
            }
            continue;
        }
        if current == section
            && let Some((k, _)) = trimmed.split_once('=')
            && k.trim() == key
        {
            return index + 1;
        }
    }
    section_line
}

/// `provider.prefix` of `kind = "onlink"`: a /64 of global unicast addresses, written as
/// its network. A /64 because that is what a provider puts on the link (and what hosts
/// configure by SLAAC); anything else is a routed prefix, `kind = "static"`'s.
fn onlink_prefix(text: &str) -> Result<ipnet::Ipv6Net, String> {
    let prefix: ipnet::Ipv6Net = text.trim().parse().map_err(|_| {
        format!("provider.prefix {text:?} is not an IPv6 prefix such as \"2001:db8:1::/64\"")
    })?;
    if prefix.prefix_len() != 64 {
        return Err(format!(
            "provider.prefix {prefix} is not a /64: kind = \"onlink\" takes the /64 the provider puts on the uplink's link"
        ));
    }
    if prefix.addr() != prefix.network() {
        return Err(format!(
            "provider.prefix {prefix} has host bits set; write its network, {}",
            prefix.trunc()
        ));
    }
    let addr = prefix.network();
    if addr.is_unspecified()
        || addr.is_loopback()
        || addr.is_multicast()
        || addr.is_unicast_link_local()
    {
        return Err(format!(
            "provider.prefix {prefix} is not a prefix of global unicast addresses"
        ));
    }
    Ok(prefix)
}

/// One `[provider] routes` entry, checked by the same rules as a provider's answer.
/// `field` names the entry in messages (`provider.routes[0]`).
fn static_route(field: &str, prefix: &str, next_hop: &str) -> Result<StaticRoute, String> {
    let (prefix_field, hop_field) = (format!("{field}.prefix"), format!("{field}.next_hop"));
    let fields = crate::rules::Fields {
        prefix: &prefix_field,
        length: "",
        next_hop: &hop_field,
    };
    let checked = crate::rules::check_routed(fields, prefix, None, next_hop, Default::default())?;
    Ok(StaticRoute {
        prefix: checked.prefix,
        next_hop: checked.next_hop,
    })
}

mod workloads;
pub use workloads::default_docker_bridge;

#[cfg(test)]
mod tests;
