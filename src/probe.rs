//! The reachability probe (`[probe]`): every interval, an ICMPv6 echo request from an
//! address of each routed prefix to `probe.target`. The request leaves through the
//! uplink like any traffic; the reply is addressed to the routed prefix, so it comes
//! back only if the provider's router routes the prefix to this host. A reply proves
//! what the API and the kernel cannot: that the prefix really answers. The probe only
//! reads: it never changes kernel state.
//!
//! The socket is an ICMPv6 datagram ("ping") socket, not a raw one: the kernel fills
//! in the identifier and checksum and hands the socket only its own replies, and it
//! needs no capability, only a group inside `net.ipv4.ping_group_range` (which also
//! governs IPv6; systemd sets it to every group). A raw socket would need
//! CAP_NET_RAW, and with it the power to forge any packet.

use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use ipnet::Ipv6Net;
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn6, bind, connect, recv,
    send, setsockopt, socket, sockopt,
};
use serde::{Deserialize, Serialize};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

use crate::config::ProbeConfig;
use crate::model::{Assignment, DesiredState, RouteKind};
use crate::timer::PollTimer;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "cannot open an ICMPv6 datagram socket: permission denied: the daemon's group must be within net.ipv4.ping_group_range (Debian's default \"1 0\" allows none; see README, Monitoring)"
    )]
    PingGroup,
    #[error("cannot open an ICMPv6 datagram socket: {0}")]
    Socket(Errno),
    #[error("cannot send from {from}: {errno}")]
    Bind { from: Ipv6Addr, errno: Errno },
    #[error("{0}")]
    Io(Errno),
    #[error("{0}")]
    Reactor(std::io::Error),
    #[error("no echo reply within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error(transparent)]
    Timer(#[from] crate::timer::TimerError),
}

/// Where one echo is sent from: an address of `prefix` on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub prefix: Ipv6Net,
    pub addr: Ipv6Addr,
    /// The address answers through a `local` route (anyip) rather than being an
    /// address of an interface: the socket binds with IP_FREEBIND.
    pub freebind: bool,
}

/// The address of each routed prefix to probe from: the first address routed6d puts
/// in it, or, in anyip mode where the whole prefix is local, its `::1`. A prefix with
/// nothing of its own on this host (none in these modes) is not probed.
pub fn sources(desired: &DesiredState, assignment: Option<&Assignment>) -> Vec<Source> {
    let Some(assignment) = assignment else {
        return Vec::new();
    };
    assignment
        .prefixes
        .iter()
        .filter_map(|routed| {
            let prefix = routed.prefix;
            if let Some(address) = desired.addresses.iter().find(|a| prefix.contains(&a.addr)) {
                return Some(Source {
                    prefix,
                    addr: address.addr,
                    freebind: false,
                });
            }
            desired
                .routes
                .iter()
                .any(|r| r.kind == RouteKind::Local && r.dst == prefix)
                .then(|| Source {
                    prefix,
                    addr: crate::desired::place_host(prefix, Ipv6Addr::LOCALHOST),
                    freebind: true,
                })
        })
        .collect()
}

/// One echo's result: the round-trip time, or why there was no reply.
#[derive(Clone, Debug)]
pub struct Echo {
    pub prefix: Ipv6Net,
    pub source: Ipv6Addr,
    pub result: Result<Duration, String>,
}

/// One probe: an echo from every source, sent together.
#[derive(Clone, Debug)]
pub struct Round {
    pub at: SystemTime,
    pub echoes: Vec<Echo>,
}

impl Round {
    /// Every routed prefix answered. A round with nothing to send from is not.
    pub fn reachable(&self) -> bool {
        !self.echoes.is_empty() && self.echoes.iter().all(|e| e.result.is_ok())
    }

    pub fn slowest(&self) -> Option<Duration> {
        self.echoes
            .iter()
            .filter_map(|e| e.result.as_ref().ok())
            .max()
            .copied()
    }

    pub fn failed(&self) -> impl Iterator<Item = &Echo> {
        self.echoes.iter().filter(|e| e.result.is_err())
    }
}

/// What the journal is told: once when a streak of failed probes starts, once when
/// it ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Turn {
    Unreachable,
    /// Reachable again after this many failed probes.
    Reachable {
        after: u32,
    },
}

/// The probe's state between rounds: what `status` and STATUS= show.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProbeStatus {
    pub target: String,
    /// None until a probe had something to send from.
    pub reachable: Option<bool>,
    pub last: Option<String>,
    pub rtt_ms: Option<f64>,
    /// `prefix from source: why`, for each echo of the last probe without a reply.
    pub unreachable: Vec<String>,
    /// Probes in a row without a reply from every prefix.
    pub failed_probes: u32,
}

impl ProbeStatus {
    pub fn new(target: Ipv6Addr) -> Self {
        ProbeStatus {
            target: target.to_string(),
            ..ProbeStatus::default()
        }
    }

    /// Take in a round; says whether the journal should hear of it. A round with
    /// nothing to send from (nothing routed yet, or any more) is no verdict: the
    /// reachability is unknown again, and no streak starts or ends.
    pub fn note(&mut self, round: &Round) -> Option<Turn> {
        self.last = Some(humantime::format_rfc3339_seconds(round.at).to_string());
        self.rtt_ms = round.slowest().map(|d| d.as_secs_f64() * 1000.0);
        self.unreachable = round
            .failed()
            .map(|e| {
                let why = e.result.as_ref().err().map_or("", String::as_str);
                format!("{} from {}: {why}", e.prefix, e.source)
            })
            .collect();
        if round.echoes.is_empty() {
            self.reachable = None;
            return None;
        }
        let reachable = round.reachable();
        self.reachable = Some(reachable);
        if reachable {
            let after = std::mem::take(&mut self.failed_probes);
            (after > 0).then_some(Turn::Reachable { after })
        } else {
            self.failed_probes += 1;
            (self.failed_probes == 1).then_some(Turn::Unreachable)
        }
    }

    /// For STATUS=: empty until the probe has a verdict.
    pub fn summary(&self) -> Option<String> {
        match self.reachable? {
            true => Some(format!("probe: {} answers", self.target)),
            false => Some(format!(
                "probe: no reply from {} ({} probe(s))",
                self.target, self.failed_probes
            )),
        }
    }
}

/// A round in flight.
type InFlight = Pin<Box<dyn std::future::Future<Output = Round> + Send>>;

/// The probe's schedule: a timerfd (one wakeup per interval, as the poll timer) and
/// the round in flight, kept here so that `next` is cancel-safe in the daemon's
/// `select!`.
pub struct Prober {
    settings: ProbeConfig,
    timer: PollTimer,
    sources: Vec<Source>,
    round: Option<InFlight>,
    pub status: ProbeStatus,
}

impl Prober {
    /// The first probe one interval from now (the first pass has programmed the
    /// prefix by then). Needs a tokio runtime with I/O enabled.
    pub fn new(settings: ProbeConfig) -> Result<Prober, ProbeError> {
        let mut timer = PollTimer::new()?;
        timer.set(Instant::now() + settings.interval)?;
        Ok(Prober {
            status: ProbeStatus::new(settings.target),
            settings,
            timer,
            sources: Vec::new(),
            round: None,
        })
    }

    /// Where the next round sends from (after every pass).
    pub fn aim(&mut self, sources: Vec<Source>) {
        self.sources = sources;
    }

    /// The next round's result. Cancel-safe: a round started is finished by the next
    /// call, a timer expiry not yet seen is still there.
    pub async fn next(&mut self) -> Round {
        if self.round.is_none() {
            if let Err(e) = self.timer.wait().await {
                tracing::warn!("probe: {e}");
                tokio::time::sleep(self.settings.interval).await;
            }
            if let Err(e) = self.timer.set(Instant::now() + self.settings.interval) {
                tracing::warn!("probe: {e}");
            }
            self.round = Some(Box::pin(round(
                self.sources.clone(),
                self.settings.target,
                self.settings.timeout,
            )));
        }
        let round = match self.round.as_mut() {
            Some(round) => round.await,
            None => unreachable!("a round was just started"),
        };
        self.round = None;
        round
    }
}

/// `Prober::next`, or never when there is no probe (for the daemon's `select!`).
pub async fn next(prober: Option<&mut Prober>) -> Round {
    match prober {
        Some(prober) => prober.next().await,
        None => std::future::pending().await,
    }
}

/// Send an echo from every source at once and wait for the replies.
pub async fn round(sources: Vec<Source>, target: Ipv6Addr, timeout: Duration) -> Round {
    let mut echoes = tokio::task::JoinSet::new();
    for source in sources {
        echoes.spawn(async move {
            let result = echo(&source, target, timeout)
                .await
                .map_err(|e| e.to_string());
            Echo {
                prefix: source.prefix,
                source: source.addr,
                result,
            }
        });
    }
    let mut done = echoes.join_all().await;
    done.sort_by_key(|e| e.prefix);
    Round {
        at: SystemTime::now(),
        echoes: done,
    }
}

const ECHO_REQUEST: u8 = 128;
const ECHO_REPLY: u8 = 129;

/// One echo request from `source` to `target`; the round-trip time of its reply.
pub async fn echo(
    source: &Source,
    target: Ipv6Addr,
    timeout: Duration,
) -> Result<Duration, ProbeError> {
    let fd = open(source, target)?;
    // SAFETY: the socket stays open, and is the same fd, until the AsyncFd drops it.
    let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
        .map_err(|e| ProbeError::Reactor(e.into_parts().1))?;
    // The kernel puts the socket's own identifier in; the sequence number tells this
    // request's reply from a late one.
    let sequence: u16 = rand::random();
    let mut request = [0u8; 16];
    request[0] = ECHO_REQUEST;
    request[6..8].copy_from_slice(&sequence.to_be_bytes());
    request[8..].copy_from_slice(b"routed6d");
    let started = Instant::now();
    send(fd.get_ref().as_raw_fd(), &request, MsgFlags::empty()).map_err(ProbeError::Io)?;
    let wait = async {
        let mut reply = [0u8; 256];
        loop {
            let mut ready = fd.readable().await.map_err(ProbeError::Reactor)?;
            match recv(fd.get_ref().as_raw_fd(), &mut reply, MsgFlags::empty()) {
                Ok(n)
                    if n >= 8
                        && reply[0] == ECHO_REPLY
                        && reply[6..8] == sequence.to_be_bytes() =>
                {
                    return Ok(started.elapsed());
                }
                Ok(_) => continue,
                Err(Errno::EAGAIN) => ready.clear_ready(),
                Err(Errno::EINTR) => continue,
                // An ICMPv6 error for the request (no route, unreachable).
                Err(errno) => return Err(ProbeError::Io(errno)),
            }
        }
    };
    tokio::time::timeout(timeout, wait)
        .await
        .unwrap_or(Err(ProbeError::Timeout(timeout)))
}

/// Whether this process may open the probe's socket at all: asked once at start, so
/// that a missing `ping_group_range` is told before the first probe.
pub fn may_open() -> Result<(), ProbeError> {
    ping_socket().map(drop)
}

fn ping_socket() -> Result<OwnedFd, ProbeError> {
    socket(
        AddressFamily::Inet6,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        SockProtocol::IcmpV6,
    )
    .map_err(|errno| match errno {
        Errno::EACCES | Errno::EPERM => ProbeError::PingGroup,
        other => ProbeError::Socket(other),
    })
}

/// A non-blocking ICMPv6 datagram socket bound to `source` and connected to `target`.
fn open(source: &Source, target: Ipv6Addr) -> Result<OwnedFd, ProbeError> {
    let fd = ping_socket()?;
    let bind_error = |errno| ProbeError::Bind {
        from: source.addr,
        errno,
    };
    if source.freebind {
        // An anyip prefix's addresses answer through a local route, not an address
        // of an interface: binding to one needs IP_FREEBIND (it applies to IPv6 too).
        setsockopt(&fd, sockopt::IpFreebind, &true).map_err(bind_error)?;
    }
    let at = |addr| SockaddrIn6::from(SocketAddrV6::new(addr, 0, 0, 0));
    bind(fd.as_raw_fd(), &at(source.addr)).map_err(bind_error)?;
    connect(fd.as_raw_fd(), &at(target)).map_err(ProbeError::Io)?;
    Ok(fd)
}

#[cfg(test)]
mod tests;
