//! routed6d as a system service, proven on a real systemd: the .deb built by
//! packaging/build.sh is installed with dpkg in a Debian container booted by
//! systemd-nspawn (systemd as its PID 1, its own network namespace), configured against
//! the simulated HostUp API running on the container's loopback, and driven with
//! systemctl and journalctl as an operator would.
//!
//! It installs what it needs (debootstrap, systemd-container, cargo-deb) and caches the
//! Debian root in /var/cache/routed6d-systest between runs. Needs root; without it, it
//! says SKIPPED loudly.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use routed6d::demo::observe_in;
use routed6d::model::{DEFAULT_PROTOCOL, ObservedState};
use routed6d::netns::{self, Namespace};

const CACHE: &str = "/var/cache/routed6d-systest";
const SUITE: &str = "bookworm";
/// What the root holds besides minbase: systemd, man-db (`systemd-analyze verify`
/// checks the unit's man: link), and the package's dependencies (the container has no
/// network to fetch them). Part of the cache key.
const INCLUDE: &str = "systemd,systemd-sysv,iproute2,dbus,man-db,ca-certificates";
const VPS_ID: &str = "vps_systest00000000000000001";
const TOKEN: &str = "systest-token-0123456789abcdef";
const PREFIX: &str = "2001:db8:42:100::/64";
const SERVED: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x42, 0x100, 0, 0, 0, 1);
const HOP1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
const HOP2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x20);
const CONVERGE: Duration = Duration::from_secs(15);
/// The unit's `systemd-analyze security` exposure must not exceed this.
const MAX_EXPOSURE: f64 = 2.0;

fn step(what: &str) {
    let _ = writeln!(std::io::stderr(), "== systemd_nspawn: {what}");
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn ok(output: Output, what: &str) -> String {
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
fn ensure_tools(tools: &[(&str, &str)]) {
    // The two tests start together: a second apt-get would find the first one's lock
    // and fail. One at a time, and the second sees what the first installed.
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
    let mut args = vec!["install", "-y", "-qq"];
    args.extend(&missing);
    let output = Command::new("apt-get")
        .args(&args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .expect("apt-get");
    ok(output, "apt-get install");
}

/// A Debian root with systemd, made once by debootstrap and kept in the cache.
fn debian_root() -> PathBuf {
    let key: String = INCLUDE.split(',').map(|p| &p[..1]).collect();
    let root = Path::new(CACHE).join(format!("{SUITE}-{key}-root"));
    if root.join("usr/lib/systemd/systemd").exists() {
        return root;
    }
    step(&format!("debootstrap {SUITE} (cached for later runs)"));
    let partial = root.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(CACHE).expect("cache dir");
    ok(
        run(
            "debootstrap",
            &[
                "--variant=minbase",
                &format!("--include={INCLUDE}"),
                SUITE,
                partial.to_str().expect("path"),
                "http://deb.debian.org/debian",
            ],
        ),
        "debootstrap",
    );
    std::fs::rename(&partial, &root).expect("cache the root");
    root
}

/// A package built by `packaging/build.sh <kind>` from this tree (kind: deb or rpm).
fn build_package(kind: &str) -> PathBuf {
    // One build at a time: both write the generated man pages and completions.
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _building = BUILD.lock().unwrap_or_else(|p| p.into_inner());
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

/// A booted container: systemd-nspawn with its own network namespace. Killed on drop.
struct Container {
    nspawn: Child,
    leader: u32,
    root: tempfile::TempDir,
}

impl Container {
    fn boot(template: &Path) -> Container {
        step("booting the container");
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
        let machine = format!("r6d-systest-{}", std::process::id());
        // --keep-unit --register=no: this host's PID 1 is not systemd, there is no bus.
        let nspawn = Command::new("systemd-nspawn")
            .args(["--quiet", "--boot", "--private-network", "--register=no"])
            .args(["--keep-unit", "--console=passive", "--machine", &machine])
            .arg("--directory")
            .arg(root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("systemd-nspawn");
        let nspawn_pid = nspawn.id();
        let leader = netns::wait_until(Duration::from_secs(30), || child_of(nspawn_pid).is_some())
            .and_then(|_| child_of(nspawn_pid))
            .expect("the container's PID 1");
        let container = Container {
            nspawn,
            leader,
            root,
        };
        let booted = netns::wait_until(Duration::from_secs(60), || {
            let state = container.exec(&["systemctl", "is-system-running"]);
            let text = String::from_utf8_lossy(&state.stdout);
            text.starts_with("running") || text.starts_with("degraded")
        });
        assert!(
            booted.is_some(),
            "the container did not finish booting: {}",
            String::from_utf8_lossy(&container.exec(&["systemctl", "--failed"]).stdout)
        );
        container
    }

    /// Run a command inside the container (all its namespaces).
    fn exec(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.leader.to_string(), "-a", "--"])
            .args(args)
            .output()
            .expect("nsenter")
    }

    fn sh(&self, script: &str) -> String {
        ok(self.exec(&["sh", "-c", script]), script)
    }

    /// A path inside the container, seen from the host.
    fn path(&self, inside: &str) -> PathBuf {
        self.root.path().join(inside.trim_start_matches('/'))
    }

    /// `systemctl <verb> routed6d`; on failure, the unit's journal goes in the message.
    fn systemctl(&self, verb: &str) {
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

    fn unit_property(&self, property: &str) -> String {
        self.sh(&format!(
            "systemctl show --value -p {property} routed6d.service"
        ))
        .trim()
        .to_string()
    }

    fn journal(&self) -> Vec<serde_json::Value> {
        self.sh("journalctl -u routed6d -o json --no-pager")
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

/// The container's PID 1: the child of systemd-nspawn that runs systemd (nspawn forks
/// short-lived helpers too).
fn child_of(parent: u32) -> Option<u32> {
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

/// The simulated HostUp API, running in the container's network namespace.
struct Sim {
    process: Child,
    addr: SocketAddr,
    ns: std::sync::Arc<Namespace>,
}

impl Sim {
    fn start(container: &Container, ns: std::sync::Arc<Namespace>, token: &Path) -> Sim {
        let mut process = Command::new("nsenter")
            .args(["-t", &container.leader.to_string(), "-n", "--"])
            .arg(env!("CARGO_BIN_EXE_routed6d-sim"))
            .args(["--listen", "127.0.0.1:0", "--token-file"])
            .arg(token)
            .args(["--vps", &format!("{VPS_ID}=192.0.2.10")])
            .stdout(Stdio::piped())
            .spawn()
            .expect("routed6d-sim");
        let mut line = String::new();
        BufReader::new(process.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("routed6d-sim said {line:?}"));
        Sim { process, addr, ns }
    }

    /// One request to the sim's control API, from inside the container's namespace.
    fn control(&self, method: &str, path: &str, body: &str) {
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

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn config(port: u16, on_stop: &str) -> String {
    format!(
        "[provider]\nkind = \"hostup\"\nbase_url = \"http://127.0.0.1:{port}\"\n\
         vps_id = \"{VPS_ID}\"\npoll_interval = \"1s\"\n\n[uplink]\ninterface = \"eth0\"\n\n\
         [prefix]\nmode = \"addresses\"\naddresses = [\"::1\"]\n\n[daemon]\non_stop = \"{on_stop}\"\n"
    )
}

fn write_config(container: &Container, text: &str) {
    // Written in place: the packaged file's mode (0640 root) stays.
    std::fs::write(container.path("/etc/routed6d/routed6d.toml"), text).expect("config");
}

fn owned(state: &ObservedState) -> Vec<String> {
    let mut lines = routed6d::demo::owned_lines(state);
    lines.sort();
    lines
}

fn has_owned_address(state: &ObservedState, addr: Ipv6Addr) -> bool {
    state
        .addresses
        .iter()
        .any(|a| a.protocol == DEFAULT_PROTOCOL && a.address.addr == addr)
}

fn wait_kernel(ns: &Namespace, what: &str, check: impl Fn(&ObservedState) -> bool) {
    let done = netns::wait_until(CONVERGE, || observe_in(ns).is_ok_and(|state| check(&state)));
    assert!(
        done.is_some(),
        "{what}: not within {CONVERGE:?}; kernel: {:?}",
        observe_in(ns).map(|s| owned(&s))
    );
}

/// A field of a journal entry as text (journald sends binary-unsafe values as arrays).
fn field<'a>(entry: &'a serde_json::Value, name: &str) -> &'a str {
    entry.get(name).and_then(|v| v.as_str()).unwrap_or("")
}

#[test]
fn the_deb_installs_runs_and_purges_under_a_real_systemd() {
    if !netns::is_root() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (needs root for systemd-nspawn and dpkg): systemd_nspawn::the_deb_installs_runs_and_purges_under_a_real_systemd"
        );
        return;
    }
    ensure_tools(&[
        ("/usr/sbin/debootstrap", "debootstrap"),
        ("/usr/bin/systemd-nspawn", "systemd-container"),
    ]);
    let template = debian_root();
    let deb = build_package("deb");
    let container = Container::boot(&template);
    let ns = std::sync::Arc::new(
        Namespace::attach(
            &format!("r6d-systest-{}", std::process::id()),
            container.leader,
        )
        .expect("name the container's namespace"),
    );

    step("dpkg -i");
    std::fs::copy(&deb, container.path("/root/routed6d.deb")).expect("copy the .deb");
    container.sh("dpkg -i /root/routed6d.deb");
    let files: Vec<String> = container
        .sh("dpkg -L routed6d")
        .lines()
        .map(str::to_string)
        .collect();
    for expected in [
        "/usr/bin/routed6d",
        "/lib/systemd/system/routed6d.service",
        "/etc/routed6d/routed6d.toml",
        "/etc/iproute2/rt_protos.d/routed6d.conf",
        "/usr/share/man/man8/routed6d.8.gz",
        "/usr/share/bash-completion/completions/routed6d",
        "/usr/share/doc/routed6d/README.md",
    ] {
        assert!(
            files.iter().any(|f| f == expected),
            "{expected} not packaged"
        );
    }
    assert_eq!(
        container
            .sh("stat -c %a /etc/routed6d/routed6d.toml")
            .trim(),
        "640"
    );
    assert_eq!(
        container.sh("stat -c '%a %G' /etc/routed6d").trim(),
        "750 routed6d"
    );

    step("systemd-analyze verify and security");
    let verify = container.exec(&["systemd-analyze", "verify", "routed6d.service"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        verify.status.success() && said.trim().is_empty(),
        "systemd-analyze verify is not clean:\n{said}"
    );
    let security = container.sh("systemd-analyze security --no-pager routed6d.service");
    let exposure: f64 = security
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for routed6d.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure figure in:\n{security}"));
    // The figure CI prints.
    let _ = writeln!(
        std::io::stderr(),
        "systemd-analyze security routed6d.service: exposure {exposure:.1} (target ≤ {MAX_EXPOSURE})"
    );
    assert!(exposure <= MAX_EXPOSURE, "{security}");

    step("enabled but not started before it is configured");
    assert_eq!(
        container.sh("systemctl is-enabled routed6d || true").trim(),
        "enabled"
    );
    container.systemctl("start");
    assert_eq!(container.unit_property("ActiveState"), "inactive");
    assert_eq!(container.unit_property("ConditionResult"), "no");
    assert_eq!(container.unit_property("Result"), "success");

    step("configure against the simulated API on the container's loopback");
    container.sh(
        "ip link add eth0 type veth peer name eth0-peer && ip link set eth0-peer up && \
         ip link set eth0 up && ip -6 addr add 2001:db8:1::2/64 dev eth0 nodad && \
         ip addr add 192.0.2.10/24 dev eth0",
    );
    let sim_dir = tempfile::tempdir().expect("tempdir");
    let sim_token = sim_dir.path().join("token");
    std::fs::write(&sim_token, TOKEN).expect("token");
    let sim = Sim::start(&container, ns.clone(), &sim_token);
    sim.control(
        "POST",
        &format!("/_sim/vps/{VPS_ID}/allocation"),
        &format!("{{\"prefix\":\"{PREFIX}\",\"nextHop\":\"{HOP1}\"}}"),
    );
    let good = config(sim.addr.port(), "keep");
    write_config(&container, &good);
    container.sh(&format!(
        "umask 077 && printf %s '{TOKEN}' > /etc/routed6d/token"
    ));
    // A short watchdog, to see the daemon ping it.
    std::fs::create_dir_all(container.path("/etc/systemd/system/routed6d.service.d"))
        .expect("drop-in dir");
    std::fs::write(
        container.path("/etc/systemd/system/routed6d.service.d/watchdog.conf"),
        "[Service]\nWatchdogSec=2s\n",
    )
    .expect("drop-in");
    container.sh("systemctl daemon-reload && routed6d check-config");

    step("systemctl start: active once READY=1");
    container.systemctl("start");
    assert_eq!(container.unit_property("ActiveState"), "active");
    assert_eq!(container.unit_property("SubState"), "running");
    let status_text = container.unit_property("StatusText");
    assert!(
        status_text.contains(PREFIX) && status_text.contains(&HOP1.to_string()),
        "STATUS= {status_text:?}"
    );
    wait_kernel(&ns, "routed", |s| {
        has_owned_address(s, SERVED) && has_owned_address(s, HOP1)
    });
    let state = observe_in(&ns).expect("observe");
    assert!(
        owned(&state)
            .iter()
            .any(|l| l == &format!("route unreachable {PREFIX} metric 2147483647")),
        "{:?}",
        owned(&state)
    );

    step("non-root, CAP_NET_ADMIN only");
    let pid = container.unit_property("MainPID");
    let proc_status = container.sh(&format!("cat /proc/{pid}/status"));
    let value = |key: &str| {
        proc_status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let uid = value("Uid:");
    assert!(
        uid.split_whitespace().all(|id| id != "0"),
        "runs as uid {uid}"
    );
    // CAP_NET_ADMIN is capability 12: bit 0x1000.
    assert_eq!(value("CapEff:"), "0000000000001000");
    assert_eq!(value("CapBnd:"), "0000000000001000");

    step("journald: one line per change, with fields");
    let journal = container.journal();
    let change = journal
        .iter()
        .find(|e| field(e, "OP") == "add-address" && field(e, "IFACE") == "lo")
        .unwrap_or_else(|| panic!("no add-address line in the journal: {journal:#?}"));
    assert_eq!(field(change, "PREFIX"), PREFIX);
    assert_eq!(field(change, "NEXT_HOP"), HOP1.to_string());
    assert_eq!(field(change, "PRIORITY"), "6");
    assert!(field(change, "MESSAGE").starts_with("ip -6 addr add"));
    assert!(
        !container
            .sh("journalctl -u routed6d -o verbose --no-pager")
            .contains(TOKEN),
        "the token is in the journal"
    );
    let pinged = netns::wait_until(Duration::from_secs(5), || {
        container.unit_property("WatchdogTimestampMonotonic") != "0"
    });
    assert!(pinged.is_some(), "no WATCHDOG=1 seen");

    step("a change at the provider converges");
    sim.control(
        "POST",
        &format!("/_sim/vps/{VPS_ID}/next-hop"),
        &format!("{{\"nextHop\":\"{HOP2}\"}}"),
    );
    wait_kernel(&ns, "next hop moved", |s| {
        has_owned_address(s, HOP2) && !has_owned_address(s, HOP1) && has_owned_address(s, SERVED)
    });

    step("systemctl reload with a broken config keeps the old state");
    let before = owned(&observe_in(&ns).expect("observe"));
    write_config(&container, &good.replace("[uplink]", "[uplink]\nbogus = 1"));
    container.systemctl("reload");
    let refused = netns::wait_until(CONVERGE, || {
        container.journal().iter().any(|e| {
            field(e, "MESSAGE").contains("refusing the new configuration")
                && field(e, "PRIORITY") == "3"
        })
    });
    assert!(refused.is_some(), "no refusal in the journal");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(owned(&observe_in(&ns).expect("observe")), before);
    assert_eq!(container.unit_property("ActiveState"), "active");

    step("systemctl stop with on_stop = keep, then start adopts");
    write_config(&container, &good);
    container.systemctl("stop");
    assert_eq!(owned(&observe_in(&ns).expect("observe")), before, "keep");
    container.systemctl("start");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(owned(&observe_in(&ns).expect("observe")), before, "adopted");

    step("an upgrade restarts the service and keeps the edited config");
    let before_upgrade = container.unit_property("MainPID");
    container.sh("DEBIAN_FRONTEND=noninteractive dpkg -i /root/routed6d.deb");
    assert_eq!(container.unit_property("ActiveState"), "active");
    assert_ne!(
        container.unit_property("MainPID"),
        before_upgrade,
        "not restarted on upgrade"
    );
    assert_eq!(
        std::fs::read_to_string(container.path("/etc/routed6d/routed6d.toml")).expect("config"),
        good,
        "the upgrade overwrote the configuration"
    );
    assert!(container.path("/etc/routed6d/token").exists());
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        owned(&observe_in(&ns).expect("observe")),
        before,
        "no churn"
    );

    step("systemctl stop with on_stop = withdraw");
    write_config(&container, &config(sim.addr.port(), "withdraw"));
    container.systemctl("reload");
    let reloaded = netns::wait_until(CONVERGE, || {
        container
            .journal()
            .iter()
            .filter(|e| field(e, "MESSAGE").starts_with("configuration reloaded"))
            .count()
            >= 1
    });
    assert!(reloaded.is_some(), "the good config was not reloaded");
    container.systemctl("stop");
    assert!(
        owned(&observe_in(&ns).expect("observe")).is_empty(),
        "withdraw left objects behind"
    );

    step("dpkg --remove keeps the configuration");
    container.sh("systemctl start routed6d && dpkg --remove routed6d");
    assert!(!container.path("/usr/bin/routed6d").exists());
    assert!(container.path("/etc/routed6d/routed6d.toml").exists());
    assert!(container.path("/etc/routed6d/token").exists());
    assert_ne!(
        container.unit_property("ActiveState"),
        "active",
        "still running"
    );
    assert!(
        !container
            .path("/etc/systemd/system/multi-user.target.wants/routed6d.service")
            .exists(),
        "still enabled"
    );

    step("dpkg --purge leaves nothing behind");
    container.sh("rm -r /etc/systemd/system/routed6d.service.d && dpkg --purge routed6d");
    for file in &files {
        let inside = container.path(file);
        assert!(
            !inside.exists() || inside.is_dir(),
            "{file} left behind after purge"
        );
    }
    for gone in [
        "/etc/routed6d",
        "/run/routed6d",
        "/usr/bin/routed6d",
        "/var/lib/routed6d",
        "/var/lib/private/routed6d",
    ] {
        assert!(!container.path(gone).exists(), "{gone} left behind");
    }
    for database in ["passwd", "group"] {
        assert!(
            !container
                .exec(&["getent", database, "routed6d"])
                .status
                .success(),
            "the routed6d {database} entry is left behind"
        );
    }
    let load = container.unit_property("LoadState");
    assert_eq!(load, "not-found", "the unit is still known to systemd");
}

/// The .rpm cannot be installed here (no rpm-based root), so check what rpm itself
/// reads from it: the files, the config marking, the dependency and the hand-written
/// scriptlets.
#[test]
fn the_rpm_carries_the_files_the_config_and_the_scriptlets() {
    if !netns::is_root() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (needs root to install rpm): systemd_nspawn::the_rpm_carries_the_files_the_config_and_the_scriptlets"
        );
        return;
    }
    ensure_tools(&[("/usr/bin/rpm", "rpm")]);
    let rpm = build_package("rpm");
    let rpm = rpm.to_str().expect("path");
    let files = ok(run("rpm", &["-qpl", rpm]), "rpm -qpl");
    for expected in [
        "/usr/bin/routed6d",
        "/usr/lib/systemd/system/routed6d.service",
        "/etc/routed6d/routed6d.toml",
        "/etc/iproute2/rt_protos.d/routed6d.conf",
        "/usr/share/man/man8/routed6d.8.gz",
        "/usr/share/bash-completion/completions/routed6d",
    ] {
        assert!(
            files.lines().any(|f| f == expected),
            "{expected} not in the rpm:\n{files}"
        );
    }
    let config = ok(run("rpm", &["-qpc", rpm]), "rpm -qpc");
    assert!(
        config.lines().any(|f| f == "/etc/routed6d/routed6d.toml"),
        "{config}"
    );
    let requires = ok(run("rpm", &["-qpR", rpm]), "rpm -qpR");
    assert!(requires.contains("ca-certificates"), "{requires}");
    let scripts = ok(run("rpm", &["-qp", "--scripts", rpm]), "rpm --scripts");
    for (scriptlet, does) in [
        ("postinstall", "systemctl enable routed6d.service"),
        ("postinstall", "systemctl try-restart routed6d.service"),
        ("preuninstall", "systemctl stop routed6d.service"),
        ("postuninstall", "systemctl daemon-reload"),
    ] {
        // `rpm --scripts` prints "<name> scriptlet (using /bin/sh):" before each body.
        let mut current = "";
        let body: Vec<&str> = scripts
            .lines()
            .filter(|line| match line.split_once(" scriptlet") {
                Some((name, _)) if !name.contains(' ') => {
                    current = name;
                    false
                }
                _ => current == scriptlet,
            })
            .collect();
        let body = body.join("\n");
        assert!(
            body.contains(does),
            "{scriptlet} does not {does}:\n{scripts}"
        );
    }
}
