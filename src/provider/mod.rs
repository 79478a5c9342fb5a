//! Providers: each one turns its API's answers into the provider-neutral `Assignment`.
//! `http` holds what every HTTP API shares (timeouts, size cap, Retry-After, rate-limit
//! headers, error documents); one file per provider does the rest:
//!
//! | kind | file | poll |
//! |---|---|---|
//! | `hostup` | `hostup.rs` | GET per-VPS state, or the account's routes (`source = "account"`) |
//! | `hostup-legacy` | `hostup_legacy.rs` | POST `refresh_next_hop` (the API has no GET) |
//! | `digitalocean` | `digitalocean.rs` | GET reserved IPv6 (+ the metadata service for the droplet id) |
//! | `static` | `static_routes.rs` | the config's routes; no network at all |
//! | `onlink` | `onlink.rs` | the uplink's own /64 (written, or read off its address) |

pub mod allocation;
pub mod digitalocean;
pub mod hostup;
pub mod hostup_legacy;
pub mod http;
pub mod onlink;
pub mod static_routes;

use std::collections::BTreeSet;
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, ConfigError, ProviderSettings, Secret};
use crate::model::Assignment;

/// Why a provider call did not produce an answer. None of these ever carries the token.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Timeout, refused connection, TLS failure, reset: nothing was answered.
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    /// An HTTP error status, with what the problem document said.
    #[error("{url}: HTTP {status}{}", problem_suffix(.code, .request_id, .detail))]
    Status {
        url: String,
        status: u16,
        code: Option<String>,
        request_id: Option<String>,
        detail: Option<String>,
        /// From `Retry-After` (seconds or HTTP date), when the answer had one.
        retry_after: Option<Duration>,
    },
    /// A 2xx answer that is not what the API documents (bad JSON, wrong shape,
    /// inconsistent fields, an address that cannot be a next hop).
    #[error("{url}: unusable answer: {message}{}", problem_suffix(&None, .request_id, &None))]
    Invalid {
        url: String,
        message: String,
        request_id: Option<String>,
    },
    /// The VPS could not be identified (no `vps_id`, and no match for the uplink's IPs).
    #[error("cannot find this VPS at the provider: {0}")]
    NotFound(String),
    /// The provider has no such operation (static routes have no API to release to).
    #[error("{0}")]
    Unsupported(String),
    /// An action the provider accepted did not complete (DigitalOcean `errored`).
    #[error("{0}")]
    ActionFailed(String),
    /// The provider's own answer says this write is not allowed now (a HostUp action
    /// gate such as `canCreateRoute` is closed), or the answer leaves a choice the
    /// config must make: nothing was written.
    #[error("{0}")]
    NotAllowed(String),
    /// A well-formed answer beyond routed6d's bounds (`provider.max_prefixes`
    /// prefixes, `rules::MAX_NEXT_HOPS` distinct next hops): refused as a whole, so
    /// the kernel keeps the last good state. See issue 14, item 9.
    #[error("{0}")]
    Refused(String),
    /// The provider cannot be built: its key file is missing, empty or readable by
    /// others.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

fn problem_suffix(
    code: &Option<String>,
    request_id: &Option<String>,
    detail: &Option<String>,
) -> String {
    let mut out = String::new();
    if let Some(code) = code {
        out.push_str(&format!(" code={code}"));
    }
    if let Some(id) = request_id {
        out.push_str(&format!(" requestId={id}"));
    }
    if let Some(detail) = detail {
        out.push_str(&format!(": {detail}"));
    }
    out
}

impl ProviderError {
    /// How long the provider asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A parsed answer, and what was odd in it but did not stop it from being used (an
/// advisory field that is malformed, a prefix written with host bits): one line each,
/// for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed<T> {
    pub value: T,
    pub warnings: Vec<String>,
}

/// Warnings a provider logs once, not on every poll that repeats them.
#[derive(Debug, Default)]
pub(crate) struct WarnOnce {
    seen: BTreeSet<String>,
}

/// Distinct warnings remembered at most: a provider that words its oddity differently
/// on every answer costs a line per poll, never unbounded memory.
const WARN_ONCE_MAX: usize = 64;

impl WarnOnce {
    /// Log each warning not logged before, prefixed with the provider's name.
    pub(crate) fn warn(&mut self, provider: &str, warnings: Vec<String>) {
        for warning in warnings {
            if self.seen.len() >= WARN_ONCE_MAX {
                self.seen.clear();
            }
            if self.seen.insert(warning.clone()) {
                tracing::warn!("{provider}: {warning}");
            }
        }
    }
}

/// `assignment` within routed6d's bounds: at most `max_prefixes` prefixes
/// (`provider.max_prefixes`) and `rules::MAX_NEXT_HOPS` distinct next hops. Applied to
/// every answer of every provider where it is taken (`daemon::Poller::poll`, and the
/// commands that read one), after the parsers' own ceiling
/// (`rules::MAX_PREFIXES_LIMIT`).
pub fn check_bounds(assignment: &Assignment, max_prefixes: usize) -> Result<(), ProviderError> {
    let what = format!("provider.max_prefixes = {max_prefixes}");
    crate::rules::check_prefix_count(&what, assignment.prefixes.len(), max_prefixes)
        .and_then(|()| {
            crate::rules::check_next_hop_count(
                "the answer",
                assignment.prefixes.iter().filter_map(|p| p.next_hop),
            )
        })
        .map_err(ProviderError::Refused)
}

/// The answer to a release.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Release {
    pub released: bool,
    pub cooldown_days: Option<u64>,
    pub cooldown_until: Option<String>,
}

impl Release {
    /// A release's answer when the provider said there was nothing to release: a
    /// 404 whose code names the allocation (`allocation_not_found`, the legacy API's
    /// documented code), not the VPS or VM, which would be a wrong id. HostUp documents
    /// only the 200 of a release that released; `released: false` and this 404 are
    /// both plausible for "nothing allocated", and both mean the same. Issue 14, item 7.
    pub fn from_failure(error: ProviderError) -> Result<Release, ProviderError> {
        match &error {
            ProviderError::Status {
                status: 404,
                code: Some(code),
                ..
            } if code == "allocation_not_found" => Ok(Release::default()),
            _ => Err(error),
        }
    }
}

/// What routed6d asks of a provider.
pub trait Provider {
    /// The provider's id for this host, once known (for logs and status).
    fn host_id(&self) -> Option<String> {
        None
    }
    /// True while the provider still has to find out which host this is.
    fn needs_identity(&self) -> bool {
        false
    }
    /// Find this host at the provider from the uplink's global addresses.
    fn identify(
        &mut self,
        _uplink_ips: &[IpAddr],
    ) -> impl Future<Output = Result<(), ProviderError>> {
        async { Ok(()) }
    }
    /// Is something missing that `allocate` would ask for (with `allocate`/`claim` set)?
    /// Default: nothing is routed here and the provider did not say it cannot be.
    fn wants_allocation(&self, assignment: &Assignment) -> bool {
        assignment.prefixes.is_empty() && assignment.unavailable.is_none()
    }
    /// Does this failure of `fetch` say that nothing is allocated (so that `allocate`,
    /// when configured, is still asked)? The poll stays a failure unless the
    /// allocation succeeds: the kernel is never changed on this reading alone.
    fn fetch_failure_may_mean_unallocated(&self, _error: &ProviderError) -> bool {
        false
    }
    /// What `wants_allocation` found missing, for the log line.
    fn missing_what(&self) -> String {
        "no routed prefix allocated".into()
    }
    /// Read what is routed here. Never creates or changes anything at the provider.
    fn fetch(&mut self) -> impl Future<Output = Result<Assignment, ProviderError>>;
    /// Ask the provider to re-read this host's address and update the next hop.
    fn refresh_next_hop(&mut self) -> impl Future<Output = Result<Assignment, ProviderError>>;
    /// Ask for a routed prefix (DigitalOcean: assign the configured reserved IPv6
    /// addresses that are unassigned to this droplet).
    fn allocate(&mut self) -> impl Future<Output = Result<Assignment, ProviderError>>;
    /// Give the routed prefix back.
    fn release(&mut self) -> impl Future<Output = Result<Release, ProviderError>>;
}

/// The provider the config names. An enum rather than `dyn`: the trait's async
/// methods are not object-safe, and the set of providers is closed.
pub enum AnyProvider {
    HostUp(hostup::HostUp),
    HostUpLegacy(hostup_legacy::HostUpLegacy),
    DigitalOcean(digitalocean::DigitalOcean),
    Static(static_routes::StaticRoutes),
    OnLink(onlink::OnLink),
}

impl AnyProvider {
    /// Build the configured provider, reading its key. Makes no network call: a host
    /// that must be found by its addresses (or the metadata service) is identified on
    /// the first poll.
    pub fn new(config: &Config) -> Result<Self, ProviderError> {
        // Every kind but `static` and `onlink` has an API, and so a key.
        let key = || -> Result<Secret, ProviderError> {
            let token = config.read_token()?;
            Ok(token.expect("an API kind has a token file"))
        };
        Ok(match &config.provider.settings {
            ProviderSettings::Hostup(s) => AnyProvider::HostUp(hostup::HostUp::new(s, key()?)?),
            ProviderSettings::HostupLegacy(s) => {
                AnyProvider::HostUpLegacy(hostup_legacy::HostUpLegacy::new(s, key()?)?)
            }
            ProviderSettings::DigitalOcean(s) => {
                AnyProvider::DigitalOcean(digitalocean::DigitalOcean::new(s, key()?)?)
            }
            ProviderSettings::Static(routes) => {
                AnyProvider::Static(static_routes::StaticRoutes::new(routes))
            }
            ProviderSettings::Onlink(prefix) => AnyProvider::OnLink(onlink::OnLink::new(
                *prefix,
                &config.uplink.interface,
                &config.path,
            )),
        })
    }
}

/// Call the same method on whichever provider this is.
macro_rules! each {
    ($self:expr, $p:ident => $body:expr) => {
        match $self {
            AnyProvider::HostUp($p) => $body,
            AnyProvider::HostUpLegacy($p) => $body,
            AnyProvider::DigitalOcean($p) => $body,
            AnyProvider::Static($p) => $body,
            AnyProvider::OnLink($p) => $body,
        }
    };
}

impl Provider for AnyProvider {
    fn host_id(&self) -> Option<String> {
        each!(self, p => p.host_id())
    }
    fn needs_identity(&self) -> bool {
        each!(self, p => p.needs_identity())
    }
    fn wants_allocation(&self, assignment: &Assignment) -> bool {
        each!(self, p => p.wants_allocation(assignment))
    }
    fn missing_what(&self) -> String {
        each!(self, p => p.missing_what())
    }
    fn fetch_failure_may_mean_unallocated(&self, error: &ProviderError) -> bool {
        each!(self, p => p.fetch_failure_may_mean_unallocated(error))
    }
    async fn identify(&mut self, uplink_ips: &[IpAddr]) -> Result<(), ProviderError> {
        each!(self, p => p.identify(uplink_ips).await)
    }
    async fn fetch(&mut self) -> Result<Assignment, ProviderError> {
        each!(self, p => p.fetch().await)
    }
    async fn refresh_next_hop(&mut self) -> Result<Assignment, ProviderError> {
        each!(self, p => p.refresh_next_hop().await)
    }
    async fn allocate(&mut self) -> Result<Assignment, ProviderError> {
        each!(self, p => p.allocate().await)
    }
    async fn release(&mut self) -> Result<Release, ProviderError> {
        each!(self, p => p.release().await)
    }
}
