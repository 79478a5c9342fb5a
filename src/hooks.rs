//! Hooks (`[[hook]]`): programs run after each change routed6d applied to the kernel
//! (a prefix added, removed or replaced, a next hop moved), and once at start with the
//! state as it is, with the facts in `ROUTED6D_*` environment variables. What a hook
//! is for: keeping something else in step with the routed prefixes (an nftables set, a
//! DNS record), the way keepalived's notify scripts and networkd-dispatcher do.
//!
//! The rules, and why:
//! - **Never in the way of repair.** Hooks run on a task of their own, one at a time
//!   in the order of the changes, while the daemon's loop goes on; the loop only
//!   queues. A change that finds the queue full is not queued (logged): every run
//!   carries the whole current set in `ROUTED6D_PREFIXES`, so the next one catches a
//!   hook up.
//! - **Once per change.** The daemon queues a change when a pass applied a new
//!   provider answer (`changes` compares it with the answer the last pass applied),
//!   never on a repair, a poll with the same answer, or a reload.
//! - **Bounded.** Each run is killed, with its whole process group, after its
//!   `timeout`; at most `MAX_LINES` lines of its output reach the journal.
//! - **No secrets.** The environment is cleared: `PATH` and the `ROUTED6D_*` facts
//!   only (not `CREDENTIALS_DIRECTORY`, which leads to the token).

use std::net::Ipv6Addr;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use ipnet::Ipv6Net;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::config::{Config, HookConfig, PrefixMode};
use crate::model::{Assignment, RoutedPrefix};

/// The `PATH` a hook gets: the system's, nothing inherited.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Jobs waiting for the hook task; past this a new one is not queued.
pub const QUEUE: usize = 32;
/// Output lines of one run that reach the journal; the rest are counted.
pub const MAX_LINES: usize = 50;
/// A longer output line is cut here.
pub const MAX_LINE: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("cannot run: {0}")]
    Spawn(std::io::Error),
    #[error("waiting for it: {0}")]
    Wait(std::io::Error),
}

/// What happened to a routed prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// routed6d started: the state as it is (one run per routed prefix, or one
    /// without a prefix when nothing is routed).
    Start,
    Added,
    Removed,
    /// The provider replaced the one routed prefix with another.
    Replaced,
    /// The prefix stays; its next hop moved.
    NextHop,
}

impl Event {
    /// `ROUTED6D_EVENT`.
    pub fn name(self) -> &'static str {
        match self {
            Event::Start => "start",
            Event::Added => "added",
            Event::Removed => "removed",
            Event::Replaced => "replaced",
            Event::NextHop => "next-hop",
        }
    }
}

/// One change, as a hook is told it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub event: Event,
    pub prefix: Option<RoutedPrefix>,
    pub old: Option<RoutedPrefix>,
}

/// The changes from the answer the last pass applied (`before`; None: this is the
/// first pass since start) to `after`. Pure.
pub fn changes(before: Option<&Assignment>, after: &Assignment) -> Vec<Change> {
    let Some(before) = before else {
        if after.prefixes.is_empty() {
            return vec![Change {
                event: Event::Start,
                prefix: None,
                old: None,
            }];
        }
        return after
            .prefixes
            .iter()
            .map(|p| Change {
                event: Event::Start,
                prefix: Some(p.clone()),
                old: None,
            })
            .collect();
    };
    let find =
        |list: &[RoutedPrefix], prefix: Ipv6Net| list.iter().find(|p| p.prefix == prefix).cloned();
    let removed: Vec<&RoutedPrefix> = before
        .prefixes
        .iter()
        .filter(|p| find(&after.prefixes, p.prefix).is_none())
        .collect();
    let added: Vec<&RoutedPrefix> = after
        .prefixes
        .iter()
        .filter(|p| find(&before.prefixes, p.prefix).is_none())
        .collect();
    let mut changes = Vec::new();
    // One prefix for another in one answer: a move, told as one change so that a
    // hook can swap a record instead of deleting it first.
    if let ([old], [new]) = (removed.as_slice(), added.as_slice()) {
        changes.push(Change {
            event: Event::Replaced,
            prefix: Some((*new).clone()),
            old: Some((*old).clone()),
        });
    } else {
        changes.extend(added.iter().map(|p| Change {
            event: Event::Added,
            prefix: Some((*p).clone()),
            old: None,
        }));
        changes.extend(removed.iter().map(|p| Change {
            event: Event::Removed,
            prefix: None,
            old: Some((*p).clone()),
        }));
    }
    for now in &after.prefixes {
        if let Some(was) = find(&before.prefixes, now.prefix)
            && was.next_hop != now.next_hop
        {
            changes.push(Change {
                event: Event::NextHop,
                prefix: Some(now.clone()),
                old: Some(was),
            });
        }
    }
    changes
}

/// The addresses routed6d puts in `prefix` (anyip, delegate: its `::1`; a /128 is the
/// address itself): what a DNS record points at.
fn addresses(prefix: Ipv6Net, config: &Config) -> Vec<Ipv6Addr> {
    if prefix.prefix_len() == 128 {
        return vec![prefix.addr()];
    }
    match config.prefix.mode {
        PrefixMode::Addresses => config
            .prefix
            .addresses
            .iter()
            .map(|host| crate::desired::place_host(prefix, *host))
            .collect(),
        PrefixMode::Anyip | PrefixMode::Delegate => {
            vec![crate::desired::place_host(prefix, Ipv6Addr::LOCALHOST)]
        }
    }
}

fn joined<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The environment of a run for `change`, `now` being the whole answer after it.
/// Variables without a value (no old prefix on `added`) are set empty, so a hook
/// can use `"$ROUTED6D_OLD_PREFIX"` under `set -u`.
pub fn environment(change: &Change, now: &Assignment, config: &Config) -> Vec<(String, String)> {
    let prefix = change.prefix.as_ref();
    let old = change.old.as_ref();
    let hop = |p: Option<&RoutedPrefix>| {
        p.and_then(|p| p.next_hop)
            .map(|h| h.to_string())
            .unwrap_or_default()
    };
    let mode = match config.prefix.mode {
        PrefixMode::Addresses => "addresses",
        PrefixMode::Anyip => "anyip",
        PrefixMode::Delegate => "delegate",
    };
    let vars = [
        ("ROUTED6D_EVENT", change.event.name().to_string()),
        (
            "ROUTED6D_PREFIX",
            prefix.map(|p| p.prefix.to_string()).unwrap_or_default(),
        ),
        (
            "ROUTED6D_ADDRESSES",
            prefix
                .map(|p| joined(addresses(p.prefix, config)))
                .unwrap_or_default(),
        ),
        ("ROUTED6D_NEXT_HOP", hop(prefix)),
        (
            "ROUTED6D_ORIGIN",
            prefix.or(old).map(|p| p.origin.clone()).unwrap_or_default(),
        ),
        (
            "ROUTED6D_OLD_PREFIX",
            old.map(|p| p.prefix.to_string()).unwrap_or_default(),
        ),
        ("ROUTED6D_OLD_NEXT_HOP", hop(old)),
        (
            "ROUTED6D_PREFIXES",
            joined(now.prefixes.iter().map(|p| p.prefix)),
        ),
        ("ROUTED6D_MODE", mode.to_string()),
        ("ROUTED6D_INTERFACE", config.uplink.interface.clone()),
        ("ROUTED6D_PREFIX_INTERFACE", config.prefix.interface.clone()),
    ];
    vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// What a run is about, for the journal: `added 2001:db8:42:100::/64`.
fn about(env: &[(String, String)]) -> String {
    let get = |key: &str| {
        env.iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    };
    let prefix = match get("ROUTED6D_PREFIX") {
        "" => get("ROUTED6D_OLD_PREFIX"),
        prefix => prefix,
    };
    format!("{} {prefix}", get("ROUTED6D_EVENT"))
        .trim_end()
        .to_string()
}

/// Work for the hook task: run every hook, in order, for each change in turn.
#[derive(Debug)]
pub struct Job {
    pub hooks: Vec<HookConfig>,
    /// One environment per change.
    pub runs: Vec<Vec<(String, String)>>,
}

/// The daemon's end of the hook task: where changes are queued. `none()` when no
/// hook is configured (nothing is spawned).
#[derive(Debug, Default)]
pub struct Hooks {
    queue: Option<mpsc::Sender<Job>>,
}

impl Hooks {
    pub fn none() -> Hooks {
        Hooks { queue: None }
    }

    /// Start the hook task on the current runtime.
    pub fn start() -> Hooks {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(serve(rx));
        Hooks { queue: Some(tx) }
    }

    /// Is there a hook task to queue for?
    pub fn is_running(&self) -> bool {
        self.queue.is_some()
    }

    /// A task-less queue whose jobs the caller reads (tests).
    pub fn channel() -> (Hooks, mpsc::Receiver<Job>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Hooks { queue: Some(tx) }, rx)
    }

    /// Queue the hooks of `config` for `changes` (`now`: the answer after them).
    /// Never waits.
    pub fn changed(&self, config: &Config, now: &Assignment, changes: &[Change]) {
        let Some(queue) = &self.queue else {
            return;
        };
        if config.hooks.is_empty() || changes.is_empty() {
            return;
        }
        let job = Job {
            hooks: config.hooks.clone(),
            runs: changes
                .iter()
                .map(|c| environment(c, now, config))
                .collect(),
        };
        if let Err(mpsc::error::TrySendError::Full(job)) = queue.try_send(job) {
            warn!(
                "hooks: {QUEUE} changes already waiting for the hooks: not queueing {} (the next run's ROUTED6D_PREFIXES has the whole set)",
                job.runs
                    .iter()
                    .map(|r| about(r))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
}

async fn serve(mut queue: mpsc::Receiver<Job>) {
    while let Some(job) = queue.recv().await {
        for env in &job.runs {
            for hook in &job.hooks {
                report(hook, env, run(hook, env).await);
            }
        }
    }
}

/// How a run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signalled(i32),
    /// Killed, with its process group, after the timeout.
    TimedOut,
}

/// A run: how it ended, and what it printed (stdout and stderr, at most `MAX_LINES`
/// lines of at most `MAX_LINE` bytes), and how many lines were left out.
#[derive(Debug)]
pub struct Ran {
    pub ended: Ended,
    pub lines: Vec<String>,
    pub dropped: usize,
}

/// What a run printed, as far as it is kept.
#[derive(Debug, Default)]
struct Output {
    lines: Vec<String>,
    dropped: usize,
}

/// Read `reader` to its end, keeping at most `MAX_LINES` lines (shared with the other
/// stream) of at most `MAX_LINE` bytes: the rest is read and thrown away, so that a
/// chatty hook neither blocks on a full pipe nor fills the daemon's memory.
async fn read_lines(reader: Box<dyn AsyncRead + Unpin + Send>, kept: Arc<Mutex<Output>>) {
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(chunk) => chunk,
        };
        let (part, newline) = match chunk.iter().position(|b| *b == b'\n') {
            Some(at) => (&chunk[..at], true),
            None => (chunk, false),
        };
        let room = MAX_LINE.saturating_sub(line.len());
        line.extend_from_slice(&part[..part.len().min(room)]);
        let consumed = part.len() + usize::from(newline);
        reader.consume(consumed);
        if newline {
            keep(&kept, &mut line);
        }
    }
    if !line.is_empty() {
        keep(&kept, &mut line);
    }
}

fn keep(kept: &Mutex<Output>, line: &mut Vec<u8>) {
    let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
    if kept.lines.len() < MAX_LINES {
        let mut text = String::from_utf8_lossy(line).into_owned();
        let mut cut = text.len().min(MAX_LINE);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        kept.lines.push(text);
    } else {
        kept.dropped += 1;
    }
    line.clear();
}

/// Run `hook` with `env` and wait for it, or for its timeout.
pub async fn run(hook: &HookConfig, env: &[(String, String)]) -> Result<Ran, HookError> {
    let mut child = tokio::process::Command::new(&hook.exec)
        .env_clear()
        .env("PATH", PATH)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout ends what it started too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(HookError::Spawn)?;
    let group = child.id().map(|pid| nix::unistd::Pid::from_raw(pid as i32));
    let kept = Arc::new(Mutex::new(Output::default()));
    let mut reading = tokio::task::JoinSet::new();
    let readers = [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn AsyncRead + Unpin + Send>),
    ];
    for reader in readers.into_iter().flatten() {
        reading.spawn(read_lines(reader, kept.clone()));
    }
    let waited = tokio::time::timeout(hook.timeout, async {
        reading.join_all().await;
        child.wait().await
    })
    .await;
    let ended = match waited {
        Ok(status) => {
            let status = status.map_err(HookError::Wait)?;
            match (status.code(), status.signal()) {
                (Some(code), _) => Ended::Exited(code),
                (None, Some(signal)) => Ended::Signalled(signal),
                (None, None) => Ended::Exited(-1),
            }
        }
        Err(_) => {
            if let Some(group) = group {
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            }
            let _ = child.wait().await;
            Ended::TimedOut
        }
    };
    let Output { lines, dropped } =
        std::mem::take(&mut *kept.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Ran {
        ended,
        lines,
        dropped,
    })
}

/// The journal's account of a run: its output at info, one line on how it ended.
fn report(hook: &HookConfig, env: &[(String, String)], ran: Result<Ran, HookError>) {
    let exec = hook.exec.display();
    let about = about(env);
    let ran = match ran {
        Ok(ran) => ran,
        Err(e) => {
            warn!(HOOK = %exec, "hook {exec} ({about}): {e}");
            return;
        }
    };
    for line in &ran.lines {
        info!(HOOK = %exec, "hook {exec}: {line}");
    }
    if ran.dropped > 0 {
        info!(HOOK = %exec, "hook {exec}: {} more line(s) not logged", ran.dropped);
    }
    match ran.ended {
        Ended::Exited(0) => info!(HOOK = %exec, "hook {exec} ({about}): done"),
        Ended::Exited(code) => {
            warn!(HOOK = %exec, "hook {exec} ({about}): exited with status {code}")
        }
        Ended::Signalled(signal) => {
            warn!(HOOK = %exec, "hook {exec} ({about}): killed by signal {signal}")
        }
        Ended::TimedOut => warn!(
            HOOK = %exec,
            "hook {exec} ({about}): still running after {}: killed with its process group",
            humantime::format_duration(hook.timeout)
        ),
    }
}

/// A hook that cannot be run as configured (check-config's and the daemon's check at
/// start): not a regular file, or not executable.
pub fn check(hook: &HookConfig) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let exec = &hook.exec;
    let meta = std::fs::metadata(exec).map_err(|e| format!("{}: {e}", exec.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", exec.display()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!(
            "{}: not executable; run: chmod +x {}",
            exec.display(),
            exec.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
