//! The configuration file, /etc/routed6d/routed6d.toml: parsed strictly (unknown keys
//! are errors), validated in one place, and turned into a `Config` whose secrets are
//! already read. Every error is one line naming the file, the line and the key.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
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
/// HostUp's API.
pub const HOSTUP_BASE_URL: &str = "https://cloud.hostup.se";

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
}

/// A secret read from disk. Its Debug and Display never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    /// The only way to read the value: at the one place it is put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    Hostup,
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

/// An https URL, or http to a loopback host (the simulated provider, a local proxy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl(reqwest::Url);

impl BaseUrl {
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = reqwest::Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback_host(&url) => {}
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

fn is_loopback_host(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
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

/// A humane duration ("30s", "5m", "1h 30m"), at least one second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollInterval(pub Duration);

impl<'de> Deserialize<'de> for PollInterval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let duration = humantime::parse_duration(&text).map_err(|e| {
            de::Error::custom(format!(
                "{text:?} is not a duration ({e}); write e.g. \"60s\" or \"5m\""
            ))
        })?;
        if duration < Duration::from_secs(1) {
            return Err(de::Error::custom(format!(
                "{text:?} is shorter than the minimum of 1s"
            )));
        }
        Ok(PollInterval(duration))
    }
}

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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    kind: ProviderKind,
    base_url: Option<BaseUrl>,
    token_file: Option<PathBuf>,
    vps_id: Option<String>,
    poll_interval: Option<PollInterval>,
    #[serde(default)]
    allocate: bool,
    refresh_next_hop: Option<RefreshNextHop>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUplink {
    interface: IfName,
    next_hop: Option<NextHopPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrefix {
    #[serde(default = "default_mode")]
    mode: PrefixMode,
    addresses: Option<Vec<HostPart>>,
    interface: Option<IfName>,
    #[serde(default = "yes")]
    unreachable: bool,
}

impl Default for RawPrefix {
    fn default() -> Self {
        RawPrefix {
            mode: default_mode(),
            addresses: None,
            interface: None,
            unreachable: true,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    on_stop: Option<OnStop>,
    protocol: Option<u8>,
    status_file: Option<PathBuf>,
}

fn default_mode() -> PrefixMode {
    PrefixMode::Addresses
}

fn yes() -> bool {
    true
}

/// Validated configuration. Cloning is cheap enough; the token is shared.
#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    pub provider: ProviderConfig,
    pub uplink: UplinkConfig,
    pub prefix: PrefixConfig,
    pub daemon: DaemonConfig,
}

#[derive(Clone, Debug)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    pub base_url: BaseUrl,
    pub token_file: PathBuf,
    pub token: Secret,
    pub vps_id: Option<String>,
    pub poll_interval: Duration,
    pub allocate: bool,
    pub refresh_next_hop: RefreshNextHop,
}

#[derive(Clone, Debug)]
pub struct UplinkConfig {
    pub interface: String,
    pub next_hop: NextHopPolicy,
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
}

impl Config {
    /// Read, parse, validate and resolve secrets: the one way to get a `Config`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let credentials_dir = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        Config::from_text(path, &text, credentials_dir.as_deref())
    }

    /// Like `load`, from text already read (tests, `check-config` on stdin).
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
            invalid(line, one_line(e.message()))
        })?;

        let key_line = |section: &str, key: &str| find_key_line(text, section, key);

        let prefix_interface =
            raw.prefix
                .interface
                .map(|i| i.0)
                .unwrap_or_else(|| match raw.prefix.mode {
                    PrefixMode::Addresses | PrefixMode::Anyip => "lo".to_string(),
                    PrefixMode::Delegate => String::new(),
                });
        match raw.prefix.mode {
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
        if raw.prefix.mode != PrefixMode::Addresses && raw.prefix.addresses.is_some() {
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
        if raw.prefix.mode == PrefixMode::Addresses && addresses.is_empty() {
            return Err(invalid(
                key_line("prefix", "addresses"),
                "prefix.addresses is empty: name at least one host part such as \"::1\"".into(),
            ));
        }
        if let Some(id) = &raw.provider.vps_id
            && (id.is_empty()
                || id.len() > 100
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        {
            return Err(invalid(
                key_line("provider", "vps_id"),
                format!(
                    "provider.vps_id {id:?} is not a VPS id such as \"vps_01hxa3b4c5d6e7f8g9h0j1k2m3\""
                ),
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

        let token_file = match (&raw.provider.token_file, credentials_dir) {
            (Some(file), _) => file.clone(),
            (None, Some(dir)) => dir.join("token"),
            (None, None) => PathBuf::from(DEFAULT_TOKEN_FILE),
        };
        let token = read_token(&token_file).map_err(|message| ConfigError::Token {
            path: path.to_path_buf(),
            message: format!("provider.token_file {}: {message}", token_file.display()),
        })?;

        Ok(Config {
            path: path.to_path_buf(),
            provider: ProviderConfig {
                kind: raw.provider.kind,
                base_url: match raw.provider.base_url {
                    Some(url) => url,
                    None => BaseUrl::parse(HOSTUP_BASE_URL).expect("built-in URL is valid"),
                },
                token_file,
                token,
                vps_id: raw.provider.vps_id,
                poll_interval: raw
                    .provider
                    .poll_interval
                    .map(|p| p.0)
                    .unwrap_or(Duration::from_secs(60)),
                allocate: raw.provider.allocate,
                refresh_next_hop: raw
                    .provider
                    .refresh_next_hop
                    .unwrap_or(RefreshNextHop::Auto),
            },
            uplink: UplinkConfig {
                interface: raw.uplink.interface.0,
                next_hop: raw.uplink.next_hop.unwrap_or(NextHopPolicy::Ensure),
            },
            prefix: PrefixConfig {
                mode: raw.prefix.mode,
                addresses,
                interface: prefix_interface,
                unreachable: raw.prefix.unreachable,
            },
            daemon: DaemonConfig {
                on_stop: raw.daemon.on_stop.unwrap_or(OnStop::Keep),
                protocol,
                status_file: raw
                    .daemon
                    .status_file
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_STATUS_FILE)),
            },
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

/// Read the token: it must exist, be non-empty, and be readable by its owner only
/// (a token readable by others is refused, as ssh refuses such a key).
fn read_token(path: &Path) -> Result<Secret, String> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            "does not exist; write the API key there (chmod 600)".to_string()
        }
        _ => format!("cannot be read: {e}"),
    })?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "is readable by group or others (mode {mode:04o}); run: chmod 600 {}",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot be read: {e}"))?;
    let token = text.trim();
    if token.is_empty() {
        return Err("is empty; write the API key there".into());
    }
    if token.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("holds more than one token (whitespace or control characters inside)".into());
    }
    Ok(Secret::new(token.to_string()))
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

/// Is `addr` usable as a host address to be reached from the Internet?
pub fn is_global_unicast(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => {
            !(a.is_loopback() || a.is_link_local() || a.is_unspecified() || a.is_multicast())
        }
        IpAddr::V6(a) => {
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || a.is_unicast_link_local())
        }
    }
}

#[cfg(test)]
mod tests;
