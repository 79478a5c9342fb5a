//! The operator's commands behind `main`: each returns `Ok` or a `Failure` carrying one
//! line of text and a sysexits code.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::config::Config;
use crate::daemon::{self, Agent, Poller, StatusFile};
use crate::kernel::Kernel;
use crate::kernel::netlink::NetlinkKernel;
use crate::lock::{Lock, LockError};
use crate::model::{Assignment, DesiredState, ObservedAddress, ObservedRoute, Planned};
use crate::provider::{AnyProvider, Provider, ProviderError};
use crate::reconcile::{self, Moment};

/// sysexits.h codes routed6d exits with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Some kernel ops failed (the others were applied).
    Partial = 1,
    Usage = 64,
    /// The provider could not be reached or gave no usable answer.
    Unavailable = 69,
    Software = 70,
    OsErr = 71,
    /// Another routed6d is writing with the same protocol right now (`lock`).
    TempFail = 75,
    NoPerm = 77,
    Config = 78,
}

/// A command's failure: what to print and how to exit.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Failure {
            exit,
            message: message.into(),
        }
    }
}

impl From<crate::config::ConfigError> for Failure {
    fn from(e: crate::config::ConfigError) -> Self {
        Failure::new(Exit::Config, e.to_string())
    }
}

impl From<ProviderError> for Failure {
    fn from(e: ProviderError) -> Self {
        let exit = match e {
            // Asked of a provider that has no such thing (release with static routes).
            ProviderError::Unsupported(_) => Exit::Usage,
            // The token file: bad configuration.
            ProviderError::Config(_) => Exit::Config,
            _ => Exit::Unavailable,
        };
        Failure::new(exit, e.to_string())
    }
}

/// Where the provider's answers come from, for humans.
fn api_of(config: &Config) -> String {
    match (config.provider.api(), &config.provider.settings) {
        (Some(api), _) => api.base_url.to_string(),
        (None, crate::config::ProviderSettings::Onlink(Some(prefix))) => {
            format!("no API (on-link {prefix})")
        }
        (None, crate::config::ProviderSettings::Onlink(None)) => format!(
            "no API (on-link: the /64 of {}'s address)",
            config.uplink.interface
        ),
        (None, _) => "no API (routes in the config)".to_string(),
    }
}

impl From<crate::kernel::KernelError> for Failure {
    fn from(e: crate::kernel::KernelError) -> Self {
        let exit = if e.is_permission_denied() {
            Exit::NoPerm
        } else {
            Exit::OsErr
        };
        Failure::new(exit, e.to_string())
    }
}

type CommandResult = Result<(), Failure>;

fn load(path: &Path) -> Result<Config, Failure> {
    Ok(Config::load(path)?)
}

/// How long `run` waits for a one-shot command (`once`, …) holding the lock to finish:
/// a cron `once` as the service starts is not a second daemon.
const ONE_SHOT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Take the lock of the configured protocol in this network namespace for `command`
/// (`lock`). A daemon finding another daemon there is a second instance: exit 78, a
/// conflict of configurations that restarting cannot fix (the unit does not restart
/// on 78). A one-shot command finding a writer there, or a daemon whose one-shot
/// holder outlasts `ONE_SHOT_WAIT`: exit 75, try later.
async fn lock(config: &Config, command: &str) -> Result<Lock, Failure> {
    let protocol = config.daemon.protocol;
    let deadline = tokio::time::Instant::now() + ONE_SHOT_WAIT;
    loop {
        match Lock::take(protocol, command) {
            Ok(lock) => return Ok(lock),
            Err(LockError::Held { holder, .. })
                if command == "run"
                    && holder.is_one_shot()
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e @ LockError::Held { .. }) => {
                let exit = if command == "run" {
                    Exit::Config
                } else {
                    Exit::TempFail
                };
                return Err(Failure::new(exit, e.to_string()));
            }
            Err(e @ LockError::Io { .. }) => {
                let denied = matches!(&e, LockError::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied);
                let exit = if denied { Exit::NoPerm } else { Exit::OsErr };
                return Err(Failure::new(exit, e.to_string()));
            }
        }
    }
}

/// The kernel as the commands read it: the neighbour caches too for an on-link
/// prefix's workloads, as the daemon does.
async fn open_kernel(config: &Config) -> Result<NetlinkKernel, crate::kernel::KernelError> {
    let mut kernel = NetlinkKernel::open(&config.daemon).await?;
    crate::kernel::Kernel::observe_neighbours(
        &mut kernel,
        config.provider.kind() == crate::config::ProviderKind::Onlink,
    );
    Ok(kernel)
}

fn provider_for(config: &Config) -> Result<AnyProvider, Failure> {
    AnyProvider::new(config).map_err(Failure::from)
}

/// Identify (if needed) and fetch, as the daemon does, without refresh or allocate.
async fn fetch(
    kernel: &mut NetlinkKernel,
    provider: &mut AnyProvider,
    config: &Config,
) -> Result<Assignment, ProviderError> {
    if provider.needs_identity() {
        let ips = kernel
            .interface_addresses(&config.uplink.interface)
            .await
            .map_err(|e| ProviderError::NotFound(e.to_string()))?;
        provider.identify(&ips).await?;
    }
    let assignment = provider.fetch().await?;
    crate::provider::check_bounds(&assignment, config.provider.max_prefixes)?;
    Ok(assignment)
}

pub async fn run(path: &Path) -> CommandResult {
    // Reading the key (token::read) makes the process non-dumpable, here and in every
    // other command that holds it.
    let config = load(path)?;
    let provider = provider_for(&config)?;
    let _lock = lock(&config, "run").await?;
    let reload = |old: &Config| -> Result<(Config, AnyProvider), String> {
        let new = Config::load(&old.path).map_err(|e| e.to_string())?;
        if new.daemon.protocol != old.daemon.protocol {
            // The lock and the kernel's stamp are the running protocol's.
            return Err(format!(
                "daemon.protocol {} differs from the running {}: a reload keeps the protocol; restart routed6d to change it",
                new.daemon.protocol, old.daemon.protocol
            ));
        }
        let provider = AnyProvider::new(&new).map_err(|e| e.to_string())?;
        Ok((new, provider))
    };
    daemon::run(config, provider, reload)
        .await
        .map_err(|e| Failure::new(Exit::OsErr, e.to_string()))
}

pub async fn once(path: &Path) -> CommandResult {
    let config = load(path)?;
    let provider = provider_for(&config)?;
    let _lock = lock(&config, "once").await?;
    let kernel = NetlinkKernel::open(&config.daemon).await?;
    let mut agent = Agent::new(config, kernel);
    agent.poll(&mut Poller::new(provider)).await;
    if let Some(error) = &agent.health.last_error {
        return Err(Failure::new(
            Exit::Unavailable,
            format!("nothing changed: {error}"),
        ));
    }
    println!("{}", agent.summary());
    let failed = &agent.pass.failed;
    match failed.first() {
        None => Ok(()),
        Some((_, first)) => Err(Failure::new(
            failed_exit(failed.len(), agent.pass.denied),
            format!("{} kernel change(s) failed, first: {first}", failed.len()),
        )),
    }
}

pub async fn plan(path: &Path) -> CommandResult {
    let config = load(path)?;
    let mut provider = provider_for(&config)?;
    let mut kernel = open_kernel(&config).await?;
    let assignment = fetch(&mut kernel, &mut provider, &config).await?;
    let reconcile::Pass { desired, plan, .. } =
        reconcile::plan(&mut kernel, &config, &assignment, Moment::first()).await?;
    if let Some(error) = &desired.workload_error {
        return Err(Failure::new(
            Exit::Config,
            format!("{}: {error}", config.path.display()),
        ));
    }
    for placed in &desired.workloads {
        println!("# {placed}");
    }
    print!("{}", crate::plan::annotated(&plan));
    if plan.is_empty() && plan.conflicts.is_empty() {
        println!("# nothing to change");
    }
    for name in &desired.missing_interfaces {
        println!("# waiting for interface {name}");
    }
    Ok(())
}

#[derive(Serialize)]
struct StatusReport {
    config: String,
    provider: ProviderStatus,
    owned: Vec<Owned>,
    pending: Vec<String>,
    conflicts: Vec<String>,
    /// The workloads placed in the routed prefix, with their slots and sub-prefixes.
    workloads: Vec<crate::workload::Placed>,
    /// Why the workloads do not fit the routed prefix, when they do not.
    workload_error: Option<String>,
    /// The daemon's reachability probe (`[probe]`): `reachable` is null until it has
    /// a verdict, and when no probe is configured or the daemon is not running.
    probe: crate::probe::ProbeStatus,
    daemon: Option<StatusFile>,
}

/// An object routed6d owns in the kernel, and the provider object it serves (allocation
/// id, route id and label, reserved IP, static entry) when the provider still routes it.
#[derive(Serialize)]
struct Owned {
    /// `addr …` or `route …`, as `ip` shows it.
    object: String,
    origin: Option<String>,
}

#[derive(Serialize)]
struct ProviderStatus {
    kind: String,
    base_url: String,
    host_id: Option<String>,
    answer: Option<Assignment>,
    error: Option<String>,
}

/// `offline`: what routed6d owns in the kernel, without the provider (no key read, no
/// request): what the package's removal shows stays behind.
pub async fn status(path: &Path, json: bool, offline: bool) -> CommandResult {
    let config = load(path)?;
    let mut provider = match offline {
        true => None,
        false => Some(provider_for(&config)?),
    };
    let mut kernel = open_kernel(&config).await?;
    let answer = match provider.as_mut() {
        Some(provider) => Some(fetch(&mut kernel, provider, &config).await),
        None => None,
    };
    let observed = kernel.observe(&[]).await?;
    let protocol = config.daemon.protocol;
    let (desired, pending, conflicts) = match &answer {
        Some(Ok(assignment)) => {
            let reconcile::Pass { desired, plan, .. } =
                reconcile::plan(&mut kernel, &config, assignment, Moment::first()).await?;
            let pending = plan
                .ops
                .iter()
                .map(|Planned { op, origin }| match origin {
                    Some(routed) if !op.is_removal() => format!("{op}  # {}", routed.origin),
                    _ => op.to_string(),
                })
                .collect();
            let conflicts = plan
                .conflicts
                .iter()
                .map(|c| format!("want {} but found {}", c.wanted, c.found))
                .collect();
            (desired, pending, conflicts)
        }
        _ => (DesiredState::default(), Vec::new(), Vec::new()),
    };
    let origins = desired.origins();
    let origin_of = |identity| origins.get(&identity).map(|o| o.origin.clone());
    let owned: Vec<Owned> = observed
        .addresses
        .iter()
        .filter(|a| a.protocol == protocol)
        .map(|ObservedAddress { address, .. }| Owned {
            object: format!("addr {address}"),
            origin: origin_of(address.identity()),
        })
        .chain(
            observed
                .routes
                .iter()
                .filter(|r| r.protocol == protocol)
                .map(|ObservedRoute { route, .. }| Owned {
                    object: format!("route {route}"),
                    origin: origin_of(route.identity()),
                }),
        )
        .collect();
    let daemon = daemon::read_status(&config.daemon.status_file);
    let probe = daemon
        .as_ref()
        .and_then(|d| d.probe.clone())
        .unwrap_or_else(|| match &config.probe {
            Some(p) => crate::probe::ProbeStatus::new(p.target, p.tcp_port),
            None => crate::probe::ProbeStatus::default(),
        });
    let report = StatusReport {
        config: config.path.display().to_string(),
        provider: ProviderStatus {
            kind: config.provider.kind().name().to_string(),
            base_url: api_of(&config),
            host_id: provider.as_ref().and_then(|p| p.host_id()),
            error: match &answer {
                Some(answer) => answer.as_ref().err().map(|e| e.to_string()),
                None => Some("not asked (--offline)".into()),
            },
            answer: answer.and_then(Result::ok),
        },
        owned,
        pending,
        conflicts,
        workloads: desired.workloads.clone(),
        workload_error: desired.workload_error.clone(),
        probe,
        daemon,
    };
    if json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Failure::new(Exit::Software, e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", render_status(&report, protocol));
    }
    Ok(())
}

fn render_status(report: &StatusReport, protocol: u8) -> String {
    let mut out = String::new();
    let p = &report.provider;
    let _ = writeln!(
        out,
        "provider:  {} {} at {}",
        p.kind,
        p.host_id.as_deref().unwrap_or("(host not identified)"),
        p.base_url
    );
    match (&p.answer, &p.error) {
        (Some(a), _) if !a.prefixes.is_empty() => {
            for routed in &a.prefixes {
                let _ = writeln!(out, "routed:    {} ({})", routed.describe(), routed.origin);
            }
            if a.next_hop_is_stale()
                && let Some(s) = a.suggested_next_hop
            {
                let _ = writeln!(out, "stale:     the provider suggests next hop {s}");
            }
        }
        (Some(a), _) => {
            let why = a.unavailable.as_deref().unwrap_or("no allocation");
            let _ = writeln!(out, "routed:    nothing ({why})");
        }
        (None, Some(e)) => {
            let _ = writeln!(out, "routed:    unknown: {e}");
        }
        (None, None) => {}
    }
    let _ = writeln!(
        out,
        "owned:     {} object(s) with protocol {protocol}",
        report.owned.len()
    );
    for Owned { object, origin } in &report.owned {
        match origin {
            Some(origin) => {
                let _ = writeln!(out, "           {object}  # {origin}");
            }
            None => {
                let _ = writeln!(out, "           {object}");
            }
        }
    }
    if report.provider.answer.is_none() {
        let _ = writeln!(out, "pending:   unknown (no answer from the provider)");
    } else if report.pending.is_empty() {
        let _ = writeln!(out, "pending:   nothing (kernel matches the provider)");
    } else {
        for line in &report.pending {
            let _ = writeln!(out, "pending:   {line}");
        }
    }
    for line in &report.conflicts {
        let _ = writeln!(out, "conflict:  {line}");
    }
    for placed in &report.workloads {
        let _ = writeln!(
            out,
            "workload:  {} ({} {}) slot {}: {} gateway {}",
            placed.name, placed.kind, placed.interface, placed.slot, placed.prefix, placed.gateway
        );
    }
    if let Some(error) = &report.workload_error {
        let _ = writeln!(out, "workload:  NOT PLACED: {error}");
    }
    // Without the provider's answer (--offline), the daemon's last placement.
    if report.provider.answer.is_none()
        && let Some(daemon) = &report.daemon
    {
        for line in &daemon.workloads {
            let _ = writeln!(out, "workload:  {line} (the daemon's last pass)");
        }
        if let Some(error) = &daemon.workload_error {
            let _ = writeln!(
                out,
                "workload:  NOT PLACED: {error} (the daemon's last pass)"
            );
        }
    }
    // Docker's side is the daemon's to look at: what its keeper last saw.
    if let Some(daemon) = &report.daemon {
        for line in &daemon.docker {
            let _ = writeln!(out, "docker:    {line}");
        }
    }
    let probe = &report.probe;
    match (probe.target.as_str(), probe.reachable) {
        ("", _) => {}
        (target, None) => {
            let _ = writeln!(out, "probe:     {target}: no verdict yet");
        }
        (target, Some(true)) => {
            let _ = writeln!(
                out,
                "probe:     reachable: {target} answers every routed prefix (slowest {:.1} ms, {})",
                probe.rtt_ms.unwrap_or_default(),
                probe.last.as_deref().unwrap_or("")
            );
        }
        (target, Some(false)) => {
            let _ = writeln!(
                out,
                "probe:     UNREACHABLE: no reply from {target} for {} probe(s) ({})",
                probe.failed_probes,
                probe.last.as_deref().unwrap_or("")
            );
            // With a TCP connect beside the echo, each method's results follow.
            if probe.tcp.is_none() {
                for line in &probe.unreachable {
                    let _ = writeln!(out, "           {line}");
                }
            }
        }
    }
    if let Some(tcp) = probe.tcp.as_ref().filter(|_| probe.reachable.is_some()) {
        let port = tcp.port.map(|p| p.to_string()).unwrap_or_default();
        for line in &probe.icmp.results {
            let _ = writeln!(out, "           icmp:     {line}");
        }
        for line in &tcp.results {
            let _ = writeln!(out, "           tcp/{port:<5} {line}");
        }
    }
    match &report.daemon {
        Some(d) => {
            let _ = writeln!(
                out,
                "daemon:    pid {}, last poll {}, last success {}",
                d.pid,
                d.last_poll.as_deref().unwrap_or("never"),
                d.last_success.as_deref().unwrap_or("never")
            );
            if let Some(e) = &d.last_error {
                let _ = writeln!(
                    out,
                    "           last error ({} in a row): {e}",
                    d.consecutive_failures
                );
            }
        }
        None => {
            let _ = writeln!(out, "daemon:    no status file (not running?)");
        }
    }
    out
}

pub fn check_config(path: &Path) -> CommandResult {
    let config = load(path)?;
    // The key is read when a provider is built; checking the file checks it too.
    config.read_token()?;
    // A hook is run by path, without a shell: it must be an executable file now.
    for (index, hook) in config.hooks.iter().enumerate() {
        crate::hooks::check(hook).map_err(|e| {
            Failure::new(
                Exit::Config,
                format!("{}: hook[{index}].exec {e}", path.display()),
            )
        })?;
    }
    // Not an error: the daemon waits for a missing interface and programs it when it
    // appears (a veth or VLAN created after boot). But an operator checking the file
    // wants to know about a typo now.
    let missing: Vec<&str> = config
        .interfaces()
        .into_iter()
        .filter(|name| !interface_exists(name))
        .collect();
    for name in &missing {
        println!(
            "note: interface {name} does not exist (yet); routed6d run waits for it and programs it when it appears"
        );
    }
    for w in &config.workloads {
        println!(
            "workload {}: {} {}, /{} at slot {}{}",
            w.name,
            w.kind.name(),
            w.interface,
            w.prefix_length,
            w.slot,
            if w.slot_pinned {
                " (pinned)"
            } else {
                " (next free in config order; pin it with slot = N)"
            }
        );
    }
    if let crate::config::ProviderSettings::DigitalOcean(settings) = &config.provider.settings {
        println!(
            "note: {}",
            crate::provider::digitalocean::scopes_needed(settings)
        );
    }
    // An on-link /64 has no [prefix]: only the workloads are placed in it.
    let prefix = if config.provider.kind() == crate::config::ProviderKind::Onlink {
        "the /64 for workloads only".to_string()
    } else {
        format!(
            "prefix mode {:?} on {}",
            config.prefix.mode, config.prefix.interface
        )
    };
    println!(
        "{}: OK (provider {} at {}, uplink {}, {prefix}, protocol {})",
        path.display(),
        config.provider.kind().name(),
        api_of(&config),
        config.uplink.interface,
        config.daemon.protocol
    );
    Ok(())
}

/// `routed6d configured`, the units' ExecCondition=: a host whose API key has not been
/// written yet is not configured, and boots quietly (the unit is skipped) instead of
/// failing at every boot. Static routes need no key. Only the key file's existence is
/// looked at, as the service user (which cannot read root's key, and need not):
/// anything else wrong, an empty or open key file or a broken configuration, is
/// `run`'s to refuse, loudly.
pub fn configured(path: &Path) -> CommandResult {
    let Ok(config) = Config::load(path) else {
        return Ok(());
    };
    let Some(key_file) = config.key_file() else {
        return Ok(());
    };
    match std::fs::symlink_metadata(key_file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Failure::new(
            Exit::Config,
            format!(
                "{}: not configured yet, not starting: no API key in {} (write it there, chmod 600)",
                path.display(),
                key_file.display()
            ),
        )),
        _ => Ok(()),
    }
}

/// `routed6d wait-online`: until the daemon's status says the routed prefixes are
/// programmed, or `timeout`. At boot, routed6d-wait-online.service runs it after
/// routed6d.service is up, so that routed6d-online.target is reached only then.
pub async fn wait_online(path: &Path, timeout: std::time::Duration) -> CommandResult {
    let config = load(path)?;
    let file = &config.daemon.status_file;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let status = daemon::read_status(file);
        if let Some(status) = status.as_ref().filter(|s| s.online) {
            println!("online: {}", status.prefixes.join(", "));
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let why = match status {
                None => format!("the daemon is not running (no {})", file.display()),
                Some(s) => s
                    .last_error
                    .or(s.unavailable.map(|u| format!("not available: {u}")))
                    .or((!s.missing_interfaces.is_empty()).then(|| {
                        format!("waiting for interface {}", s.missing_interfaces.join(", "))
                    }))
                    .unwrap_or_else(|| "nothing is routed here yet".into()),
            };
            return Err(Failure::new(
                Exit::Unavailable,
                format!(
                    "no routed prefix programmed within {}: {why}",
                    humantime::format_duration(timeout)
                ),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Does a network interface of this name exist in this network namespace?
fn interface_exists(name: &str) -> bool {
    nix::net::if_::if_nametoindex(name).is_ok()
}

pub async fn refresh_next_hop(path: &Path) -> CommandResult {
    let config = load(path)?;
    let mut provider = provider_for(&config)?;
    let _lock = lock(&config, "refresh-next-hop").await?;
    let mut kernel = open_kernel(&config).await?;
    let before = fetch(&mut kernel, &mut provider, &config).await?;
    let after = provider.refresh_next_hop().await?;
    let hops = |a: &Assignment| {
        a.prefixes
            .iter()
            .filter_map(|p| p.next_hop.map(|hop| hop.to_string()))
            .collect::<Vec<_>>()
            .join(",")
    };
    println!("next hop: {} -> {}", hops(&before), hops(&after));
    // Reconcile at once: the provider now routes to the new next hop. What the old
    // answer called for names what the change removes.
    let previous = reconcile::plan(&mut kernel, &config, &before, Moment::first())
        .await?
        .desired;
    let pass = reconcile::reconcile(&mut kernel, &config, &after, &previous, Moment::first());
    let outcome = pass.await?;
    print!("{}", outcome.plan);
    finish(outcome)
}

pub async fn release(path: &Path, yes: bool) -> CommandResult {
    if !yes {
        return Err(Failure::new(
            Exit::Usage,
            "release gives the routed prefix back and starts the provider's cooldown; run again with --yes to confirm",
        ));
    }
    let config = load(path)?;
    let mut provider = provider_for(&config)?;
    let _lock = lock(&config, "release").await?;
    let mut kernel = open_kernel(&config).await?;
    let before = fetch(&mut kernel, &mut provider, &config).await?;
    // What the released answer called for names what is withdrawn.
    let previous = reconcile::plan(&mut kernel, &config, &before, Moment::first())
        .await?
        .desired;
    let released = provider.release().await?;
    let cooldown = match (released.cooldown_days, &released.cooldown_until) {
        (Some(days), Some(until)) => format!("; cooldown {days} days, until {until}"),
        (Some(days), None) => format!("; cooldown {days} days"),
        (None, Some(until)) => format!("; cooldown until {until}"),
        (None, None) => String::new(),
    };
    println!(
        "released: {}{cooldown}",
        if released.released {
            "yes"
        } else {
            "no (nothing was allocated)"
        }
    );
    let outcome = reconcile::withdraw(&mut kernel, &config, &previous).await?;
    print!("{}", outcome.plan);
    // The docker workloads' networks are carved from the prefix given back: they go
    // too (the daemon, which would keep them, is not running: it holds the lock).
    if config.workloads.iter().any(|w| w.docker_network.is_some()) {
        match crate::docker::engine::withdraw_once(&config.docker_socket, config.daemon.protocol)
            .await
        {
            Ok(n) => println!("docker: removed {n} network(s) routed6d made"),
            Err(e) => eprintln!("routed6d: docker: {e}; its networks stay"),
        }
    }
    finish(outcome)
}

fn finish(outcome: reconcile::Outcome) -> CommandResult {
    match outcome.first_error() {
        None => Ok(()),
        Some(e) => Err(Failure::new(
            failed_exit(outcome.failed.len(), outcome.denied),
            format!(
                "{} of {} kernel change(s) failed, first: {e}",
                outcome.failed.len(),
                outcome.plan.ops.len()
            ),
        )),
    }
}

/// A pass whose every failed change the kernel refused for want of privilege is a
/// permission problem (77); otherwise some changes failed and others went in (1).
fn failed_exit(failed: usize, denied: usize) -> Exit {
    if denied == failed {
        Exit::NoPerm
    } else {
        Exit::Partial
    }
}
