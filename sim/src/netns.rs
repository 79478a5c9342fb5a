//! Throwaway network namespaces joined by a veth pair — a "provider router" and a
//! "vps" — for `routed6d-demo` and the real-kernel tests. Everything here is removed
//! when the values are dropped, even when a step failed halfway.

use std::fs::File;
use std::io;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use ipnet::Ipv6Net;
use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn6, recv, sendto,
    setsockopt, socket, sockopt,
};
use nix::sys::time::{TimeVal, TimeValLike as _};

use crate::api::{SimHandle, SimState};

/// The router's address on the link to the VPS.
pub const ROUTER_ADDR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
/// The VPS's own (primary) address on its uplink.
pub const VPS_ADDR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// The VPS's primary IPv4 address (providers find a VPS by it).
pub const VPS_ADDR4: &str = "192.0.2.10";
/// The VPS's uplink and the router's end of the veth.
pub const VPS_UPLINK: &str = "eth0";
pub const ROUTER_LINK: &str = "rt0";

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("`{command}` could not start: {source}")]
    Spawn { command: String, source: io::Error },
    #[error("cannot enter network namespace {name}: {source}")]
    Enter { name: String, source: io::Error },
    #[error("simulated provider: {source}")]
    Sim { source: io::Error },
    #[error("ping {addr}: {source}")]
    Ping { addr: Ipv6Addr, source: io::Error },
}

/// Is this process root (namespaces and netlink writes need it)?
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Run a command, returning its stdout; any non-zero exit is an error with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, NetnsError> {
    let command = format!("{program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| NetnsError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(NetnsError::Command {
            command,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A named network namespace (`ip netns add`), deleted on drop.
#[derive(Debug)]
pub struct Namespace {
    pub name: String,
}

impl Namespace {
    pub fn create(name: &str) -> Result<Self, NetnsError> {
        // A leftover from a killed run would make `add` fail: clear it first.
        let _ = run("ip", &["netns", "del", name]);
        run("ip", &["netns", "add", name])?;
        let ns = Namespace {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Name the network namespace of process `pid` (a container's, say) so that it can
    /// be used like any other; dropping it only removes the name.
    pub fn attach(name: &str, pid: u32) -> Result<Self, NetnsError> {
        let _ = run("ip", &["netns", "del", name]);
        run("ip", &["netns", "attach", name, &pid.to_string()])?;
        Ok(Namespace {
            name: name.to_string(),
        })
    }

    /// `ip -n <name> <args>`.
    pub fn ip(&self, args: &[&str]) -> Result<String, NetnsError> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// A command that runs inside the namespace (`ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Run `f` on a thread that has entered this namespace; sockets it opens stay in
    /// the namespace after it returns.
    pub fn enter<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, NetnsError> {
        let name = self.name.clone();
        let path = format!("/run/netns/{name}");
        let file = File::open(&path).map_err(|source| NetnsError::Enter {
            name: name.clone(),
            source,
        })?;
        std::thread::spawn(move || {
            // On this thread only: the caller's thread stays where it was.
            if let Err(errno) = setns(&file, CloneFlags::CLONE_NEWNET) {
                return Err(NetnsError::Enter {
                    name,
                    source: errno.into(),
                });
            }
            Ok(f())
        })
        .join()
        .map_err(|_| NetnsError::Enter {
            name: self.name.clone(),
            source: io::Error::other("thread panicked"),
        })?
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// The provider's router and a VPS, joined by a veth: router `rt0` 2001:db8:1::1/64,
/// vps `eth0` 2001:db8:1::2/64 (and 192.0.2.10/24) with a default route via the router.
#[derive(Debug)]
pub struct Testbed {
    pub router: Namespace,
    pub vps: Namespace,
}

impl Testbed {
    /// Build the topology. `tag` keeps the testbeds of one process apart; the process
    /// id keeps those of concurrent processes apart.
    pub fn new(tag: &str) -> Result<Self, NetnsError> {
        let pid = std::process::id();
        let router = Namespace::create(&format!("r6d-rt-{tag}-{pid}"))?;
        let vps = Namespace::create(&format!("r6d-vps-{tag}-{pid}"))?;
        let testbed = Testbed { router, vps };
        testbed.create_uplink()?;
        Ok(testbed)
    }

    /// Join the namespaces: the veth between the router and the VPS's uplink, their
    /// addresses and the VPS's default route. `new` does it once; a test that deleted
    /// the uplink calls it again (a new veth, so a new ifindex).
    pub fn create_uplink(&self) -> Result<(), NetnsError> {
        let (router, vps) = (&self.router, &self.vps);
        router.ip(&[
            "link",
            "add",
            ROUTER_LINK,
            "type",
            "veth",
            "peer",
            "name",
            VPS_UPLINK,
            "netns",
            &vps.name,
        ])?;
        let router_cidr = format!("{ROUTER_ADDR}/64");
        let vps_cidr = format!("{VPS_ADDR}/64");
        let vps_cidr4 = format!("{VPS_ADDR4}/24");
        let router_gw = ROUTER_ADDR.to_string();
        // nodad: duplicate detection would hold the addresses tentative for a second.
        router.ip(&[
            "-6",
            "addr",
            "add",
            &router_cidr,
            "dev",
            ROUTER_LINK,
            "nodad",
        ])?;
        router.ip(&["link", "set", ROUTER_LINK, "up"])?;
        vps.ip(&["-6", "addr", "add", &vps_cidr, "dev", VPS_UPLINK, "nodad"])?;
        vps.ip(&["addr", "add", &vps_cidr4, "dev", VPS_UPLINK])?;
        vps.ip(&["link", "set", VPS_UPLINK, "up"])?;
        vps.ip(&[
            "-6", "route", "add", "default", "via", &router_gw, "dev", VPS_UPLINK,
        ])?;
        Ok(())
    }

    /// What the provider's router does with a routed prefix: send it to the next hop.
    /// `None` withdraws the route.
    pub fn route_prefix(
        &self,
        prefix: Ipv6Net,
        next_hop: Option<Ipv6Addr>,
    ) -> Result<(), NetnsError> {
        match next_hop {
            Some(hop) => router_route(&self.router.name, "replace", prefix, Some(hop)).map(drop),
            None => {
                // Already gone is fine: the router's state is what is asked for.
                let _ = router_route(&self.router.name, "del", prefix, None);
                Ok(())
            }
        }
    }

    /// One ICMPv6 echo from the router to `addr`.
    pub fn ping_from_router(
        &self,
        addr: Ipv6Addr,
        timeout: Duration,
    ) -> Result<Duration, NetnsError> {
        self.router
            .enter(move || ping6(addr, timeout))?
            .map_err(|source| NetnsError::Ping { addr, source })
    }
}

/// A simulated provider serving inside a network namespace, from its own thread and
/// runtime (callers may block while it answers). Stops on drop.
pub struct SimServer {
    handle: SimHandle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SimServer {
    /// Serve `state` on `listen` (port 0: any free one) in `ns`'s network namespace.
    pub fn start_in(
        ns: &Namespace,
        listen: std::net::SocketAddr,
        state: SimState,
    ) -> Result<Self, NetnsError> {
        let listener = ns
            .enter(move || std::net::TcpListener::bind(listen))?
            .map_err(|source| NetnsError::Sim { source })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| NetnsError::Sim { source })?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let serve = async {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                let handle = crate::api::serve(listener, state).await?;
                let _ = ready_tx.send(Ok(handle));
                let _ = stop_rx.await;
                io::Result::Ok(())
            };
            let served = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|runtime| runtime.block_on(serve));
            if let Err(e) = served {
                let _ = ready_tx.send(Err(e));
            }
        });
        let handle = ready_rx
            .recv()
            .map_err(|_| NetnsError::Sim {
                source: io::Error::other("the simulation thread stopped"),
            })?
            .map_err(|source| NetnsError::Sim { source })?;
        Ok(SimServer {
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl std::ops::Deref for SimServer {
    type Target = SimHandle;
    fn deref(&self) -> &SimHandle {
        &self.handle
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The simulated provider serving on the VPS's loopback, with the testbed's router
/// following every route the provider makes (allocations, account routes, reserved
/// IPv6) as the real provider's router does. Stops on drop.
pub struct ProviderSim {
    server: SimServer,
}

impl ProviderSim {
    /// Serve `state` on 127.0.0.1 in the VPS namespace; keep the router's routes equal
    /// to `SimState::router_table`, now and whenever it changes.
    pub fn start(testbed: &Testbed, state: SimState) -> Result<Self, NetnsError> {
        // Everything the provider routes: allocations, account routes, and reserved
        // IPv6 addresses (/128s to the droplet's own address, as DigitalOcean does).
        let table = state.router_table();
        let listen = (std::net::Ipv4Addr::LOCALHOST, 0).into();
        let server = SimServer::start_in(&testbed.vps, listen, state)?;
        for (prefix, hop) in &table {
            testbed.route_prefix(*prefix, Some(*hop))?;
        }
        let router = testbed.router.name.clone();
        let routed = std::sync::Mutex::new(table);
        server.on_router_table_change(Box::new(move |table| {
            let mut routed = routed.lock().unwrap_or_else(|p| p.into_inner());
            let mut result = Ok(String::new());
            for (prefix, hop) in table {
                if routed.get(prefix) != Some(hop) {
                    result = result.and(router_route(&router, "replace", *prefix, Some(*hop)));
                }
            }
            for prefix in routed.keys().filter(|p| !table.contains_key(*p)) {
                result = result.and(router_route(&router, "del", *prefix, None));
            }
            *routed = table.clone();
            if let Err(e) = result {
                eprintln!("simulated provider could not program its router: {e}");
            }
        }));
        Ok(ProviderSim { server })
    }
}

/// `ip -n <router> -6 route <verb> <prefix> [via <hop> dev rt0]`.
fn router_route(
    router: &str,
    verb: &str,
    prefix: Ipv6Net,
    hop: Option<Ipv6Addr>,
) -> Result<String, NetnsError> {
    let dst = prefix.to_string();
    let mut args = vec!["-n", router, "-6", "route", verb, &dst];
    let via = hop.map(|h| h.to_string());
    if let Some(via) = &via {
        args.extend_from_slice(&["via", via, "dev", ROUTER_LINK]);
    }
    run("ip", &args)
}

impl std::ops::Deref for ProviderSim {
    type Target = SimHandle;
    fn deref(&self) -> &SimHandle {
        &self.server
    }
}

/// Send one ICMPv6 echo request and wait for its reply; returns the round-trip time.
/// A raw socket (root): the kernel fills in the ICMPv6 checksum (RFC 3542 §3.1).
pub fn ping6(addr: Ipv6Addr, timeout: Duration) -> io::Result<Duration> {
    const ECHO_REQUEST: u8 = 128;
    const ECHO_REPLY: u8 = 129;
    let socket = socket(
        AddressFamily::Inet6,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::IcmpV6,
    )?;
    let ident = (std::process::id() as u16) ^ 0x5236;
    let sequence: u16 = rand::random();
    let mut packet = [0u8; 16];
    packet[0] = ECHO_REQUEST;
    packet[4..6].copy_from_slice(&ident.to_be_bytes());
    packet[6..8].copy_from_slice(&sequence.to_be_bytes());
    packet[8..].copy_from_slice(b"routed6d");

    let dst = SockaddrIn6::from(SocketAddrV6::new(addr, 0, 0, 0));
    let started = Instant::now();
    sendto(socket.as_raw_fd(), &packet, &dst, MsgFlags::empty())?;
    let mut reply = [0u8; 1500];
    loop {
        let left = timeout
            .checked_sub(started.elapsed())
            .filter(|d| !d.is_zero());
        let Some(left) = left else {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no echo reply"));
        };
        // At least a microsecond: a zero SO_RCVTIMEO would wait forever.
        let wait =
            TimeVal::microseconds(i64::try_from(left.as_micros().max(1)).unwrap_or(i64::MAX));
        setsockopt(&socket, sockopt::ReceiveTimeout, &wait)?;
        let n = match recv(socket.as_raw_fd(), &mut reply, MsgFlags::empty()) {
            Ok(n) => n,
            Err(Errno::EAGAIN | Errno::ETIMEDOUT) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no echo reply"));
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if n >= 8
            && reply[0] == ECHO_REPLY
            && reply[4..6] == ident.to_be_bytes()
            && reply[6..8] == sequence.to_be_bytes()
        {
            return Ok(started.elapsed());
        }
        // Destination unreachable quoting our request (8 bytes of ICMPv6, 40 of the
        // original IPv6 header, then our echo header): what an unreachable route answers.
        if n >= 56
            && reply[0] == 1
            && reply[48] == ECHO_REQUEST
            && reply[52..54] == ident.to_be_bytes()
        {
            return Err(io::Error::new(
                io::ErrorKind::HostUnreachable,
                "destination unreachable",
            ));
        }
    }
}

/// Poll `check` every 20 ms until it is true or `timeout` passes; returns the time taken.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    loop {
        if check() {
            return Some(started.elapsed());
        }
        if started.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
