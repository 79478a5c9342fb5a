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
//!
//! With `probe.tcp_port`, each echo has a TCP connect beside it, from the same address
//! to `[target]:tcp_port`: many providers and firewalls drop ICMP while TCP passes.
//! An established connection and a refused one (a reset) both came back to the routed
//! prefix, so both are an answer; the connection is closed at once, nothing sent. A
//! prefix answers when either method does: the point of the second method is that
//! ICMP filtering cannot make a working prefix look broken, and neither answer can
//! come back unless the return path works.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
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
use tokio::net::TcpSocket;
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
    #[error("cannot open a TCP socket: {0}")]
    TcpSocket(std::io::Error),
    #[error("cannot connect from {from}: {source}")]
    TcpBind {
        from: Ipv6Addr,
        source: std::io::Error,
    },
    #[error("TCP connect: {0}")]
    Connect(std::io::Error),
    #[error("no TCP answer within {}", humantime::format_duration(*.0))]
    ConnectTimeout(Duration),
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

/// What one TCP connect found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connect {
    /// The handshake completed after this long (and the connection was closed).
    Established(Duration),
    /// A reset came back after this long (or an ICMPv6 port unreachable, which Linux
    /// reports alike): nothing listens on the port, but the answer reached the prefix.
    Refused(Duration),
    /// No answer: a timeout, an unreachable network or host, or a socket error.
    Failed(String),
}

impl Connect {
    /// How long the answer took; None without one.
    pub fn answer(&self) -> Option<Duration> {
        match self {
            Connect::Established(took) | Connect::Refused(took) => Some(*took),
            Connect::Failed(_) => None,
        }
    }

    /// The `result` label of `routed6d_probe_connects_total`: one of three.
    pub fn label(&self) -> &'static str {
        match self {
            Connect::Established(_) => "established",
            Connect::Refused(_) => "refused",
            Connect::Failed(_) => "none",
        }
    }

    /// For `status`: what came back, or why nothing did.
    pub fn describe(&self) -> String {
        match self {
            Connect::Established(took) => format!("established in {}", millis(*took)),
            Connect::Refused(took) => format!("refused (reset) in {}", millis(*took)),
            Connect::Failed(why) => why.clone(),
        }
    }
}

/// One prefix's part of a probe: the echo's result (the round-trip time, or why
/// there was no reply), and the TCP connect's when `probe.tcp_port` is set.
#[derive(Clone, Debug)]
pub struct Echo {
    pub prefix: Ipv6Net,
    pub source: Ipv6Addr,
    pub result: Result<Duration, String>,
    pub connect: Option<Connect>,
}

impl Echo {
    /// The prefix answered by either method, after the quicker one's time: a reply
    /// to either proves the return path, and only one of them may be filtered.
    pub fn answer(&self) -> Option<Duration> {
        let echo = self.result.as_ref().ok().copied();
        let connect = self.connect.as_ref().and_then(Connect::answer);
        match (echo, connect) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Why neither method answered (meant for an echo without an answer).
    pub fn why(&self) -> String {
        let echo = match &self.result {
            Ok(took) => format!("echo reply in {}", millis(*took)),
            Err(why) => why.clone(),
        };
        match &self.connect {
            Some(connect) => format!("{echo}; {}", connect.describe()),
            None => echo,
        }
    }
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// One probe: an echo (and a connect) from every source, sent together.
#[derive(Clone, Debug)]
pub struct Round {
    pub at: SystemTime,
    pub echoes: Vec<Echo>,
}

impl Round {
    /// Every routed prefix answered, by either method. A round with nothing to send
    /// from is not.
    pub fn reachable(&self) -> bool {
        !self.echoes.is_empty() && self.echoes.iter().all(|e| e.answer().is_some())
    }

    /// The slowest prefix's answer (each prefix's quicker method).
    pub fn slowest(&self) -> Option<Duration> {
        self.echoes.iter().filter_map(Echo::answer).max()
    }

    /// The prefixes that answered neither way.
    pub fn failed(&self) -> impl Iterator<Item = &Echo> {
        self.echoes.iter().filter(|e| e.answer().is_none())
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
    /// The echo's part of the last probe, whatever the connect found.
    pub icmp: MethodStatus,
    /// The TCP connect's part of the last probe; None without `probe.tcp_port`.
    pub tcp: Option<MethodStatus>,
}

/// One method's part of the last probe: what `reachable` would be by it alone, and
/// what each prefix got.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MethodStatus {
    /// The TCP port connected to (absent for the echo).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Every prefix of the last probe answered this way; None: no verdict yet.
    pub answered: Option<bool>,
    /// `prefix from source: what came back`, for each prefix of the last probe.
    pub results: Vec<String>,
}

impl MethodStatus {
    /// This method's verdict on `round`, from each prefix's result by it (None: the
    /// prefix was not probed this way).
    fn note<'a>(&mut self, round: &'a Round, result: impl Fn(&'a Echo) -> Option<(bool, String)>) {
        let mut answered = None;
        self.results.clear();
        for echo in &round.echoes {
            let Some((ok, what)) = result(echo) else {
                continue;
            };
            answered = Some(answered.unwrap_or(true) && ok);
            self.results
                .push(format!("{} from {}: {what}", echo.prefix, echo.source));
        }
        self.answered = answered;
    }
}

impl ProbeStatus {
    pub fn new(target: Ipv6Addr, tcp_port: Option<u16>) -> Self {
        ProbeStatus {
            target: target.to_string(),
            tcp: tcp_port.map(|port| MethodStatus {
                port: Some(port),
                ..MethodStatus::default()
            }),
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
            .map(|e| format!("{} from {}: {}", e.prefix, e.source, e.why()))
            .collect();
        self.icmp.note(round, |e| {
            Some(match &e.result {
                Ok(took) => (true, format!("reply in {}", millis(*took))),
                Err(why) => (false, why.clone()),
            })
        });
        if let Some(tcp) = &mut self.tcp {
            tcp.note(round, |e| {
                let connect = e.connect.as_ref()?;
                Some((connect.answer().is_some(), connect.describe()))
            });
        }
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
            // Worth a word: a firewall on the way drops ICMP.
            true if self.icmp.answered == Some(false) => Some(format!(
                "probe: {} answers (TCP only, no echo reply)",
                self.target
            )),
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
            status: ProbeStatus::new(settings.target, settings.tcp_port),
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
                self.settings.tcp_port,
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

/// Send an echo (and open a connection to `tcp_port`) from every source at once and
/// wait for the answers: a round takes at most `timeout`.
pub async fn round(
    sources: Vec<Source>,
    target: Ipv6Addr,
    tcp_port: Option<u16>,
    timeout: Duration,
) -> Round {
    let mut echoes = tokio::task::JoinSet::new();
    for source in sources {
        echoes.spawn(async move {
            // Side by side, not one after the other: a round still takes at most
            // one timeout.
            let echoing = async {
                echo(&source, target, timeout)
                    .await
                    .map_err(|e| e.to_string())
            };
            let connecting = async {
                match tcp_port {
                    Some(port) => Some(tcp_connect(&source, target, port, timeout).await),
                    None => None,
                }
            };
            let (result, connect) = tokio::join!(echoing, connecting);
            Echo {
                prefix: source.prefix,
                source: source.addr,
                result,
                connect,
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

/// One TCP connect from `source` to `[target]:port`, closed as soon as it is decided.
pub async fn tcp_connect(
    source: &Source,
    target: Ipv6Addr,
    port: u16,
    timeout: Duration,
) -> Connect {
    handshake(source, target, port, timeout)
        .await
        .unwrap_or_else(|e| Connect::Failed(e.to_string()))
}

async fn handshake(
    source: &Source,
    target: Ipv6Addr,
    port: u16,
    timeout: Duration,
) -> Result<Connect, ProbeError> {
    let socket = TcpSocket::new_v6().map_err(ProbeError::TcpSocket)?;
    let bind_error = |source_error| ProbeError::TcpBind {
        from: source.addr,
        source: source_error,
    };
    if source.freebind {
        // As for the echo: an anyip address is no interface's, and bind refuses it
        // without IP_FREEBIND (which needs no capability, unlike IP_TRANSPARENT).
        setsockopt(&socket, sockopt::IpFreebind, &true)
            .map_err(|errno| bind_error(errno.into()))?;
    }
    // Port 0: the kernel picks the source port; the address is what the probe is about.
    socket
        .bind(SocketAddr::V6(SocketAddrV6::new(source.addr, 0, 0, 0)))
        .map_err(bind_error)?;
    let started = Instant::now();
    let to = SocketAddr::V6(SocketAddrV6::new(target, port, 0, 0));
    match tokio::time::timeout(timeout, socket.connect(to)).await {
        // Dropped here: a FIN at once, no data.
        Ok(Ok(_stream)) => Ok(Connect::Established(started.elapsed())),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Ok(Connect::Refused(started.elapsed()))
        }
        // A network or host unreachable (this host's routing, or an ICMPv6 error on
        // the way): no answer from the target, which is what the probe asks for.
        Ok(Err(e)) => Err(ProbeError::Connect(e)),
        // Dropping the pending connect closes the socket; the kernel stops its SYNs.
        Err(_) => Err(ProbeError::ConnectTimeout(timeout)),
    }
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
