//! The shared harness of the real-kernel test suites: a provider router and a VPS in
//! private network namespaces (`routed6d_sim::netns::Testbed`, named with the test's tag and
//! the process id), the simulated provider on the VPS's loopback, a config file written
//! for it, the real `routed6d` binary started in the VPS namespace with its log in a
//! file, and the ways to look at the outcome: netlink dumps of the VPS's kernel, the
//! requests the simulation saw, and the daemon's log lines. Everything is removed on
//! drop (daemon first, namespaces last), also when a test fails halfway.
//!
//! Every function waits by polling with a deadline; none sleeps to assert.

// Each test binary uses its own part of the harness.
#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipnet::Ipv6Net;
use routed6d::model::{DEFAULT_PROTOCOL, ObservedState};
use routed6d_sim::api::{SimState, SimVps};
use routed6d_sim::demo::{observe_in, owned_lines};
use routed6d_sim::netns::{self, ProviderSim, Testbed};

pub const VPS_ID: &str = "vps_faultsuite0000000000001";
/// Never to be seen in a log, an error or a command's output.
pub const TOKEN: &str = "faults-SECRET-token-0123456789";
pub const HOP1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
pub const HOP2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x20);
/// How long convergence may take on a loaded 2-core CI machine (the real bound is
/// one poll interval, 1 s, or milliseconds for drift repair).
pub const CONVERGE: Duration = Duration::from_secs(15);
/// The log line of the first failure of a streak (daemon.rs).
pub const FAILED: &str = "provider poll failed, ";
/// The log line that ends a streak.
pub const RECOVERED: &str = "recovered: provider answered";

/// True (and a loud SKIPPED line, past libtest's capture) when not root.
pub fn skip_unless_root(suite: &str, test: &str) -> bool {
    if netns::is_root() {
        return false;
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED (needs root for network namespaces): {suite}::{test}"
    );
    true
}

/// The prefix the simulated provider routes to the VPS.
pub fn prefix() -> Ipv6Net {
    "2001:db8:42:100::/64".parse().expect("prefix")
}

/// Host part `n` of `prefix()`.
pub fn host(n: u16) -> Ipv6Addr {
    routed6d::desired::place_host(prefix(), Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, n))
}

pub fn has_owned(state: &ObservedState, addr: Ipv6Addr) -> bool {
    state
        .addresses
        .iter()
        .any(|a| a.protocol == DEFAULT_PROTOCOL && a.address.addr == addr)
}

pub fn has_address(state: &ObservedState, addr: Ipv6Addr) -> bool {
    state.addresses.iter().any(|a| a.address.addr == addr)
}

pub fn has_owned_route(state: &ObservedState, dst: Ipv6Net) -> bool {
    state
        .routes
        .iter()
        .any(|r| r.protocol == DEFAULT_PROTOCOL && r.route.dst == dst)
}

/// The HostUp v2 setup every fault test starts from: ::1 of the prefix on lo, the next
/// hop on eth0 and the unreachable route, all routed6d's.
pub fn programmed(state: &ObservedState) -> bool {
    has_owned(state, host(1)) && has_owned(state, HOP1) && has_owned_route(state, prefix())
}

/// A testbed, the simulated provider (if any), a config and (once started) the daemon.
pub struct Harness {
    // Field order is drop order: the daemon first, the namespaces last.
    pub daemon: Option<Child>,
    pub sim: Option<ProviderSim>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub testbed: Testbed,
    log_name: String,
}

impl Harness {
    /// A testbed, the sim serving `state` (if any), and a config with `[provider]` from
    /// `provider(base_url)` (plus `token_file` when the kind reads one), `[uplink]` on
    /// eth0, an empty `[prefix]`, and `[daemon]` with a private status file. Every
    /// section header is there so that tests can add keys with `add_key`.
    pub fn new(tag: &str, state: Option<SimState>, provider: impl Fn(&str) -> String) -> Harness {
        let testbed = Testbed::new(tag).expect("testbed");
        let sim = state.map(|s| ProviderSim::start(&testbed, s).expect("sim"));
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("token");
        write_private(&token, TOKEN);
        let base = sim
            .as_ref()
            .map(|s| format!("http://{}", s.addr()))
            .unwrap_or_default();
        let section = provider(&base);
        let token_line =
            if section.contains("kind = \"static\"") || section.contains("kind = \"onlink\"") {
                String::new()
            } else {
                format!("token_file = \"{}\"\n", token.display())
            };
        let config = dir.path().join("routed6d.toml");
        std::fs::write(
            &config,
            format!(
                "[provider]\n{section}\n{token_line}[uplink]\ninterface = \"eth0\"\n[prefix]\n[daemon]\nstatus_file = \"{}\"\nstate_dir = \"{}\"\n",
                dir.path().join("status.json").display(),
                dir.path().join("state").display()
            ),
        )
        .expect("config");
        Harness {
            daemon: None,
            sim,
            dir,
            config,
            testbed,
            log_name: "routed6d.log".into(),
        }
    }

    /// HostUp v2, one VPS with `prefix()` routed via `HOP1`, polled every second.
    pub fn hostup(tag: &str) -> Harness {
        let addr4: std::net::IpAddr = netns::VPS_ADDR4.parse().expect("address");
        let state = SimState::new(TOKEN).with_vps(SimVps::new(VPS_ID, "faults", addr4));
        let h = Harness::new(tag, Some(state), |base| {
            format!(
                "kind = \"hostup\"\nbase_url = \"{base}\"\nvps_id = \"{VPS_ID}\"\npoll_interval = \"1s\""
            )
        });
        h.sim()
            .set_allocation(VPS_ID, prefix(), HOP1)
            .expect("allocation");
        h
    }

    pub fn sim(&self) -> &ProviderSim {
        self.sim.as_ref().expect("a simulated provider")
    }

    /// Add `line` right after the `[section]` header.
    pub fn add_key(&self, section: &str, line: &str) {
        self.edit_config(&format!("[{section}]\n"), &format!("[{section}]\n{line}\n"));
    }

    /// Replace `from` with `to` in the config file (which must hold `from`).
    pub fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        assert!(text.contains(from), "{from:?} not in the config:\n{text}");
        std::fs::write(&self.config, text.replacen(from, to, 1)).expect("write config");
    }

    /// Point `base_url` somewhere else.
    pub fn set_base_url(&self, url: &str) {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        let text: Vec<String> = text
            .lines()
            .map(|l| {
                if l.starts_with("base_url = ") {
                    format!("base_url = \"{url}\"")
                } else {
                    l.to_string()
                }
            })
            .collect();
        std::fs::write(&self.config, text.join("\n") + "\n").expect("write config");
    }

    /// Start `routed6d run` in the VPS namespace, debug log to a file.
    pub fn start(&mut self) {
        assert!(self.daemon.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log");
        let child = self
            .testbed
            .vps
            .command(env!("CARGO_BIN_EXE_routed6d"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("ROUTED6D_LOG", "debug")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn routed6d");
        self.daemon = Some(child);
    }

    /// Start the daemon and wait for the HostUp setup to be programmed.
    pub fn start_programmed(&mut self) {
        self.start();
        self.wait("programmed", programmed);
    }

    pub fn pid(&self) -> libc::pid_t {
        self.daemon.as_ref().expect("running").id() as libc::pid_t
    }

    /// Send `signal` without waiting (to our own child, not reaped yet).
    pub fn kill(&self, signal: libc::c_int) {
        let signal = nix::sys::signal::Signal::try_from(signal).expect("a signal");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).expect("kill");
    }

    /// Send `signal` and wait (bounded) for the daemon to exit.
    pub fn stop_with(&mut self, signal: libc::c_int) -> std::process::ExitStatus {
        self.kill(signal);
        let mut child = self.daemon.take().expect("running");
        let deadline = Instant::now() + CONVERGE;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("routed6d did not exit within {CONVERGE:?}\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Has the daemon exited on its own? (It must not, whatever the provider does.)
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.daemon
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Run a routed6d command in the VPS namespace with the harness's config.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let out = self
            .testbed
            .vps
            .command(env!("CARGO_BIN_EXE_routed6d"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .output()
            .expect("run routed6d");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains(TOKEN), "the token leaked: {text}");
        out
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(&self.log_name)
    }

    /// The daemon's log so far (every run of this harness, appended).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// How many log lines contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// Wait until `needle` has been logged at least `times` times.
    pub fn wait_log(&self, needle: &str, times: usize) {
        self.wait_log_within(needle, times, CONVERGE);
    }

    pub fn wait_log_within(&self, needle: &str, times: usize, within: Duration) {
        netns::wait_until(within, || self.log_count(needle) >= times).unwrap_or_else(|| {
            panic!(
                "{needle:?} not logged {times} time(s) within {within:?}\nlog:\n{}",
                self.log()
            )
        });
    }

    /// The VPS's kernel state, from one netlink dump in its namespace.
    pub fn kernel(&self) -> ObservedState {
        observe_in(&self.testbed.vps).expect("observe")
    }

    /// What routed6d owns, as sorted `addr …` / `route …` lines.
    pub fn owned(&self) -> Vec<String> {
        let mut lines = owned_lines(&self.kernel());
        lines.sort();
        lines
    }

    /// Delete an address by hand in the VPS, as an operator or networkd would.
    pub fn delete_address(&self, addr: Ipv6Addr, dev: &str) {
        let cidr = format!("{addr}/128");
        self.testbed
            .vps
            .ip(&["-6", "addr", "del", &cidr, "dev", dev])
            .expect("ip addr del");
    }

    /// Delete routed6d's unreachable route for `prefix` by hand in the VPS.
    pub fn delete_unreachable_route(&self, prefix: Ipv6Net) {
        let dst = prefix.to_string();
        self.testbed
            .vps
            .ip(&[
                "-6",
                "route",
                "del",
                "unreachable",
                &dst,
                "metric",
                "2147483647",
            ])
            .expect("ip route del");
    }

    /// Wait until `check` holds for the VPS's kernel.
    pub fn wait(&self, what: &str, mut check: impl FnMut(&ObservedState) -> bool) -> Duration {
        netns::wait_until(CONVERGE, || check(&self.kernel())).unwrap_or_else(|| {
            panic!(
                "{what}: not within {CONVERGE:?}\nowned: {:#?}\nlog:\n{}",
                self.owned(),
                self.log()
            )
        })
    }

    /// Assert that what routed6d owns stays exactly `before` while `until` is false,
    /// checked every 50 ms for at most `within` (`until` must then have become true).
    pub fn kept_until(&self, before: &[String], within: Duration, mut until: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        loop {
            let now = self.owned();
            assert_eq!(now, before, "the kernel changed\nlog:\n{}", self.log());
            if until() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "condition not reached within {within:?}\nlog:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Number of API requests the sim saw whose path starts with `path` (any method).
    pub fn requests(&self, path: &str) -> usize {
        self.sim()
            .requests()
            .iter()
            .filter(|r| r.path.starts_with(path))
            .count()
    }

    /// Wait until the sim has seen at least `n` requests under `path`.
    pub fn wait_requests(&self, path: &str, n: usize, within: Duration) {
        netns::wait_until(within, || self.requests(path) >= n).unwrap_or_else(|| {
            panic!(
                "{} of {n} requests to {path} within {within:?}\nlog:\n{}",
                self.requests(path),
                self.log()
            )
        });
    }

    /// The times (since the sim started) of the requests under `path`.
    pub fn request_times(&self, path: &str) -> Vec<Duration> {
        self.sim()
            .requests()
            .iter()
            .filter(|r| r.path.starts_with(path))
            .map(|r| Duration::from_millis(r.at_ms))
            .collect()
    }

    /// A real `ping` from the provider's router: true once one echo reply arrives
    /// within `deadline`.
    pub fn ping(&self, addr: Ipv6Addr, deadline: Duration) -> bool {
        ensure_tool("ping", "iputils-ping");
        let once = || {
            Command::new("ip")
                .args(["netns", "exec", &self.testbed.router.name])
                .args(["ping", "-6", "-n", "-q", "-c", "1", "-W", "1"])
                .arg(addr.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        netns::wait_until(deadline, once).is_some()
    }

    /// Common end of every test: the daemon is still running, never panicked, and the
    /// token appears nowhere in its log.
    pub fn assert_healthy(&mut self) {
        let log = self.log();
        assert!(self.exited().is_none(), "routed6d exited\n{log}");
        assert!(!log.contains("panicked"), "routed6d panicked\n{log}");
        assert!(!log.contains(TOKEN), "the token is in the log\n{log}");
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Write a file readable by its owner only (a token file must be).
pub fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// Install a Debian package when a tool the tests need is missing (CI is root).
pub fn ensure_tool(tool: &str, package: &str) {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let present = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return;
    }
    let ok = Command::new("sh")
        .args([
            "-c",
            &format!(
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {package}"
            ),
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{tool} is needed and {package} could not be installed");
}

/// What a hand-written HTTP server in the VPS namespace does with each connection.
#[derive(Clone, Copy, Debug)]
pub enum RawBehaviour {
    /// Accept the connection, read nothing, answer nothing.
    Silence,
    /// Send a 200 with headers at once, then the body one byte per second, forever.
    Trickle,
    /// Send a 200 with a chunked (length-less) body of this many bytes: the client
    /// cannot refuse it from a Content-Length and must stop reading at its cap.
    Chunked(usize),
}

/// A minimal TCP server on 127.0.0.1 in a namespace, for faults the simulation (a real
/// HTTP server) cannot produce. Counts connections and body bytes sent; stops on drop.
pub struct RawServer {
    pub port: u16,
    pub connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub bytes_sent: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl RawServer {
    pub fn start(ns: &netns::Namespace, behaviour: RawBehaviour) -> RawServer {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let listener = ns
            .enter(|| std::net::TcpListener::bind("127.0.0.1:0"))
            .expect("enter")
            .expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let bytes_sent = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, b, s) = (connections.clone(), bytes_sent.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        c.fetch_add(1, Ordering::Relaxed);
                        let (b, s) = (b.clone(), s.clone());
                        match behaviour {
                            // Keep it open (and unread) until the server stops.
                            RawBehaviour::Silence => held.push(stream),
                            _ => {
                                std::thread::spawn(move || serve_raw(stream, behaviour, &b, &s));
                            }
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        RawServer {
            port,
            connections,
            bytes_sent,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn bytes_sent(&self) -> usize {
        self.bytes_sent.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn serve_raw(
    mut stream: std::net::TcpStream,
    behaviour: RawBehaviour,
    sent: &std::sync::atomic::AtomicUsize,
    stop: &std::sync::atomic::AtomicBool,
) {
    use std::sync::atomic::Ordering;
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    // Read the request head (the daemon's GET has no body).
    let mut head = Vec::new();
    let mut byte = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&byte[..n]),
        }
    }
    match behaviour {
        RawBehaviour::Silence => {}
        RawBehaviour::Trickle => {
            let headers = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n";
            if stream.write_all(headers.as_bytes()).is_err() {
                return;
            }
            while !stop.load(Ordering::Relaxed) {
                if stream.write_all(b" ").is_err() {
                    return;
                }
                sent.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        RawBehaviour::Chunked(total) => {
            let headers = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
            if stream.write_all(headers.as_bytes()).is_err() {
                return;
            }
            let chunk = vec![b' '; 64 * 1024];
            let mut left = total;
            while left > 0 && !stop.load(Ordering::Relaxed) {
                let n = left.min(chunk.len());
                let framed = [format!("{n:x}\r\n").as_bytes(), &chunk[..n], b"\r\n"].concat();
                if stream.write_all(&framed).is_err() {
                    // The client hung up: what it read is what was sent so far.
                    return;
                }
                sent.fetch_add(n, Ordering::Relaxed);
                left -= n;
            }
            let _ = stream.write_all(b"0\r\n\r\n");
        }
    }
}
