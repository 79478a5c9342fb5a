//! The booted-container harness shared by the system tests (systemd_nspawn.rs,
//! host_managers.rs, cloud_init.rs): the tools they install, the Debian roots cached in
//! /var/cache/routed6d-systest (the shared one, and cloud_init.rs's with cloud-init),
//! the .deb built by packaging/build.sh, a container booted by systemd-nspawn (systemd
//! as its PID 1, its own network namespace) and the simulated HostUp API running in
//! that namespace. Each test file includes it with `#[path]`, so the suites that do not
//! boot containers do not compile it.
//!
//! Everything started here is ended on drop, also when a test fails halfway: a
//! container's systemd is killed with its whole PID namespace, not only nspawn.

// Each test binary uses its own part of the harness.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use routed6d_sim::api::{SimState, SimVps};
use routed6d_sim::netns::{self, Namespace, SimServer};

pub const CACHE: &str = "/var/cache/routed6d-systest";
pub const SUITE: &str = "bookworm";
/// What the root holds besides minbase: systemd, man-db (`systemd-analyze verify`
/// checks the unit's man: link), the package's dependencies (the container has no
/// network to fetch them) and ifupdown (host_managers runs routed6d next to it as well
/// as next to systemd-networkd). Part of the cache key: one root serves every test.
pub const INCLUDE: &str = "systemd,systemd-sysv,iproute2,dbus,man-db,ca-certificates,ifupdown";
pub const VPS_ID: &str = "vps_systest00000000000000001";
pub const TOKEN: &str = "systest-token-0123456789abcdef";

/// A progress line past libtest's capture, named after the test binary.
pub fn step(what: &str) {
    let suite = module_path!().split("::").next().unwrap_or("systest");
    let _ = writeln!(std::io::stderr(), "== {suite}: {what}");
}

pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

pub fn ok(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// apt-get install the Debian packages that provide `commands`, when missing.
pub fn ensure_tools(tools: &[(&str, &str)]) {
    // The tests of a binary start together: a second apt-get would find the first
    // one's lock and fail. One at a time, and the second sees what the first installed.
    static APT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _apt = APT.lock().unwrap_or_else(|p| p.into_inner());
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(command, _)| !Path::new(command).exists())
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return;
    }
    step(&format!("installing {}", missing.join(" ")));
    ok(run("apt-get", &["update", "-qq"]), "apt-get update");
    // Other test binaries may run apt at the same time: wait for their lock.
    let mut args = vec!["install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=600"];
    args.extend(&missing);
    let output = Command::new("apt-get")
        .args(&args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .expect("apt-get");
    ok(output, "apt-get install");
}

/// A Debian root with systemd, made once by debootstrap and kept in the cache.
pub fn debian_root() -> PathBuf {
    bootstrap(INCLUDE)
}

/// What cloud_init.rs's root holds besides INCLUDE: Debian's cloud-init (with its
/// Python), and python3-cffi-backend, which python3-cryptography needs through virtual
/// packages that debootstrap's resolver does not follow.
pub const CLOUD_INIT_INCLUDE: &str = "python3-cffi-backend,cloud-init";

/// The root of `debian_root` plus cloud-init, for cloud_init.rs alone: cloud-init in
/// the shared root would run on every other test's boot. A root of its own, cached
/// under its own key; the container has no network to install it later.
pub fn cloud_init_root() -> PathBuf {
    bootstrap(&format!("{INCLUDE},{CLOUD_INIT_INCLUDE}"))
}

/// debootstrap minbase with `include`, cached under a key made of the packages'
/// initials.
fn bootstrap(include: &str) -> PathBuf {
    // Two test binaries may want it at once: the second waits for the first's
    // debootstrap instead of racing it into the same directory.
    let _lock = CacheLock::take();
    let key: String = include.split(',').map(|p| &p[..1]).collect();
    let root = Path::new(CACHE).join(format!("{SUITE}-{key}-root"));
    if root.join("usr/lib/systemd/systemd").exists() {
        return root;
    }
    step(&format!(
        "debootstrap {SUITE} with {include} (cached for later runs)"
    ));
    let partial = root.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    ok(
        run(
            "debootstrap",
            &[
                "--variant=minbase",
                &format!("--include={include}"),
                SUITE,
                partial.to_str().expect("path"),
                "http://deb.debian.org/debian",
            ],
        ),
        "debootstrap",
    );
    // debootstrap goes on when a package fails to configure (a dependency it could not
    // resolve): dpkg's audit says so.
    let audit = ok(
        run(
            "dpkg",
            &["--root", partial.to_str().expect("path"), "--audit"],
        ),
        "dpkg --audit",
    );
    assert!(
        audit.trim().is_empty(),
        "debootstrap left packages unconfigured:\n{audit}"
    );
    std::fs::rename(&partial, &root).expect("cache the root");
    root
}

/// An exclusive flock on the cache directory, across processes.
struct CacheLock(std::fs::File);

impl CacheLock {
    fn take() -> CacheLock {
        use std::os::fd::AsRawFd;
        std::fs::create_dir_all(CACHE).expect("cache dir");
        let file = std::fs::File::open(CACHE).expect("open the cache dir");
        // SAFETY: flock on a valid open fd; released when the file closes.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(
            locked,
            0,
            "flock {CACHE}: {}",
            std::io::Error::last_os_error()
        );
        CacheLock(file)
    }
}

/// A package built by `packaging/build.sh <kind>` from this tree (kind: deb or rpm),
/// once per test binary: a second build would rewrite the file while another test
/// copies it.
pub fn build_package(kind: &str) -> PathBuf {
    // One build at a time: both write the generated man pages and completions.
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, path)) = built.iter().find(|(k, _)| k == kind) {
        return path.clone();
    }
    let path = build(kind);
    built.push((kind.to_string(), path.clone()));
    path
}

fn build(kind: &str) -> PathBuf {
    step(&format!("packaging/build.sh {kind}"));
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // A target dir of its own: the outer `cargo test` may hold the main one's lock.
    let target = repo.join("target/systest");
    let output = Command::new("bash")
        .arg(repo.join("packaging/build.sh"))
        .arg(kind)
        .current_dir(repo)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("packaging/build.sh");
    ok(output, &format!("packaging/build.sh {kind}"));
    let dir = target.join(if kind == "deb" {
        "debian"
    } else {
        "generate-rpm"
    });
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == kind))
        .unwrap_or_else(|| panic!("no .{kind} in {}", dir.display()))
}

/// A writable copy of the cached root, removed on drop. Outlives the containers booted
/// on it, so that a reboot finds the same disk.
pub fn copy_root(template: &Path) -> tempfile::TempDir {
    let root = tempfile::Builder::new()
        .prefix("routed6d-systest-")
        .tempdir_in(CACHE)
        .expect("root dir");
    ok(
        run(
            "cp",
            &[
                "-a",
                &format!("{}/.", template.display()),
                root.path().to_str().expect("path"),
            ],
        ),
        "copy the Debian root",
    );
    root
}

/// Where a container's network comes from.
pub enum Network<'a> {
    /// `--private-network`: only a loopback.
    Private,
    /// `--network-veth-extra=<host_side>:eth0`, with nspawn started inside `router`: the
    /// container's eth0 is a veth whose other end is `host_side` in that namespace.
    VethIn {
        router: &'a Namespace,
        host_side: &'a str,
    },
}

/// A booted container: systemd-nspawn with its own network namespace. Killed on drop.
pub struct Container {
    nspawn: Child,
    pub leader: u32,
    root: PathBuf,
    /// The copy of the root when the container owns it (`boot`).
    _owned_root: Option<tempfile::TempDir>,
    /// nspawn has exited and been reaped: `leader` may name another process by now.
    exited: bool,
}

impl Container {
    /// A private copy of `template`, booted with `--private-network`; the copy goes
    /// with the container.
    pub fn boot(template: &Path) -> Container {
        step("booting the container");
        let root = copy_root(template);
        let mut container = Container::launch(root.path(), Network::Private);
        container._owned_root = Some(root);
        container.wait_booted();
        container
    }

    /// Start systemd-nspawn on `root` and return once the container's PID 1 exists
    /// (its network namespace with it), before it has booted: see `wait_booted`.
    pub fn launch(root: &Path, network: Network<'_>) -> Container {
        // Unique per boot: nspawn keeps per-machine state under /run/systemd/nspawn.
        static BOOTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let boot = BOOTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let machine = format!("r6d-systest-{}-{boot}", std::process::id());
        let mut command = match &network {
            Network::Private => Command::new("systemd-nspawn"),
            Network::VethIn { router, .. } => {
                // nsenter, not `ip netns exec`: that one also remounts /sys for the
                // namespace, which nspawn does not need.
                let mut command = Command::new("nsenter");
                command
                    .arg(format!("--net=/run/netns/{}", router.name))
                    .args(["--", "systemd-nspawn"]);
                command
            }
        };
        match &network {
            Network::Private => command.arg("--private-network"),
            Network::VethIn { host_side, .. } => {
                command.arg(format!("--network-veth-extra={host_side}:eth0"))
            }
        };
        // --keep-unit --register=no: this host's PID 1 is not systemd, there is no bus.
        let nspawn = command
            .args(["--quiet", "--boot", "--register=no"])
            .args(["--keep-unit", "--console=passive", "--machine", &machine])
            .arg("--directory")
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("systemd-nspawn");
        let nspawn_pid = nspawn.id();
        let mut container = Container {
            nspawn,
            leader: 0,
            root: root.to_path_buf(),
            _owned_root: None,
            exited: false,
        };
        container.leader =
            netns::wait_until(Duration::from_secs(30), || child_of(nspawn_pid).is_some())
                .and_then(|_| child_of(nspawn_pid))
                .expect("the container's PID 1");
        container
    }

    /// Wait until systemd in the container says it has finished booting.
    pub fn wait_booted(&self) {
        let booted = netns::wait_until(Duration::from_secs(90), || {
            let state = self.exec(&["systemctl", "is-system-running"]);
            let text = String::from_utf8_lossy(&state.stdout);
            text.starts_with("running") || text.starts_with("degraded")
        });
        assert!(
            booted.is_some(),
            "the container did not finish booting: {}\n{}",
            String::from_utf8_lossy(&self.exec(&["systemctl", "--failed"]).stdout),
            String::from_utf8_lossy(&self.exec(&["systemctl", "list-jobs"]).stdout)
        );
    }

    /// A clean reboot from inside (`systemctl reboot`): systemd stops every unit, then
    /// nspawn exits (it does not restart the container itself). Boot the same root
    /// again with `launch`.
    pub fn reboot(mut self) {
        // The command's own process may be killed by the shutdown: its status says
        // nothing.
        let _ = self.exec(&["systemctl", "reboot"]);
        let gone = netns::wait_until(Duration::from_secs(60), || {
            matches!(self.nspawn.try_wait(), Ok(Some(_)))
        });
        assert!(gone.is_some(), "the container did not shut down for reboot");
        self.exited = true;
    }

    /// Run a command inside the container (all its namespaces).
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.leader.to_string(), "-a", "--"])
            .args(args)
            .output()
            .expect("nsenter")
    }

    pub fn sh(&self, script: &str) -> String {
        ok(self.exec(&["sh", "-c", script]), script)
    }

    /// A path inside the container, seen from the host.
    pub fn path(&self, inside: &str) -> PathBuf {
        self.root.join(inside.trim_start_matches('/'))
    }

    /// `systemctl <verb> routed6d`; on failure, the unit's journal goes in the message.
    pub fn systemctl(&self, verb: &str) {
        let output = self.exec(&["systemctl", verb, "routed6d.service"]);
        if !output.status.success() {
            let journal = self.exec(&["journalctl", "-u", "routed6d", "--no-pager"]);
            panic!(
                "systemctl {verb} routed6d failed: {}\n{}",
                String::from_utf8_lossy(&output.stderr),
                String::from_utf8_lossy(&journal.stdout)
            );
        }
    }

    pub fn unit_property(&self, property: &str) -> String {
        self.sh(&format!(
            "systemctl show --value -p {property} routed6d.service"
        ))
        .trim()
        .to_string()
    }

    pub fn journal(&self) -> Vec<serde_json::Value> {
        self.sh("journalctl -u routed6d -o json --no-pager")
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if !self.exited {
            // Killing the container's PID 1 ends its whole PID namespace; killing
            // nspawn alone has left a booted systemd running. While nspawn has not
            // been reaped, `leader` (its child) cannot have been reused.
            // SAFETY: kill(2) on a pid; no memory involved.
            unsafe { libc::kill(self.leader as libc::pid_t, libc::SIGKILL) };
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

/// The container's PID 1: the child of systemd-nspawn that runs systemd (nspawn forks
/// short-lived helpers too).
pub fn child_of(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the parenthesised command: state, ppid, …
        let after = stat.rsplit_once(')')?.1;
        let ppid: u32 = after.split_whitespace().nth(1)?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (ppid == parent && comm.trim() == "systemd").then_some(pid)
    })
}

/// The simulated HostUp API, serving from a thread of the test inside the container's
/// network namespace (the container reaches it on its own loopback, as a VPS reaches
/// its provider's API).
pub struct Sim {
    _server: SimServer,
    pub addr: SocketAddr,
    ns: Arc<Namespace>,
}

impl Sim {
    /// On any free port of the container's loopback.
    pub fn start(container: &Container, ns: Arc<Namespace>, token: &Path) -> Sim {
        Sim::start_on(container, ns, token, 0)
    }

    /// On `port` of the container's loopback (0: any free one): after a reboot, on the
    /// port the configuration names.
    pub fn start_on(_container: &Container, ns: Arc<Namespace>, token: &Path, port: u16) -> Sim {
        // A container that has not booted yet has its loopback still down.
        let _ = ns.ip(&["link", "set", "lo", "up"]);
        let token = std::fs::read_to_string(token).expect("the sim's token");
        let state = SimState::new(token.trim()).with_vps(SimVps::new(
            VPS_ID,
            VPS_ID,
            "192.0.2.10".parse().expect("address"),
        ));
        let listen = (std::net::Ipv4Addr::LOCALHOST, port).into();
        let server = SimServer::start_in(&ns, listen, state).expect("start the simulated API");
        let addr = server.addr();
        Sim {
            _server: server,
            addr,
            ns,
        }
    }

    /// One request to the sim's control API, from inside the container's namespace.
    pub fn control(&self, method: &str, path: &str, body: &str) {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let addr = self.addr;
        let response = self
            .ns
            .enter(move || -> std::io::Result<String> {
                let mut stream = TcpStream::connect(addr)?;
                stream.write_all(request.as_bytes())?;
                let mut response = String::new();
                stream.read_to_string(&mut response)?;
                Ok(response)
            })
            .expect("enter")
            .expect("sim control");
        assert!(
            response.starts_with("HTTP/1.1 2"),
            "{method} {path}: {response}"
        );
    }
}
