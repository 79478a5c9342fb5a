//! routed6d as a system service, proven on a real systemd: the .deb built by
//! packaging/build.sh is installed with dpkg in a Debian container booted by
//! systemd-nspawn (systemd as its PID 1, its own network namespace), configured against
//! the simulated HostUp API running on the container's loopback, and driven with
//! systemctl and journalctl as an operator would.
//!
//! It installs what it needs (debootstrap, systemd-container, cargo-deb) and caches the
//! Debian root in /var/cache/routed6d-systest between runs. Needs root; without it, it
//! says SKIPPED loudly.

use crate::nspawn;

use std::io::Write;
use std::net::Ipv6Addr;
use std::time::Duration;

use nspawn::{
    Container, Sim, TOKEN, VPS_ID, build_package, debian_root, ensure_tools, ok, run, step,
};
use routed6d::model::{DEFAULT_PROTOCOL, ObservedState};
use routed6d_sim::demo::observe_in;
use routed6d_sim::netns::{self, Namespace};

const PREFIX: &str = "2001:db8:42:100::/64";
const SERVED: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x42, 0x100, 0, 0, 0, 1);
const HOP1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
const HOP2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x20);
const CONVERGE: Duration = Duration::from_secs(15);
/// The unit's `systemd-analyze security` exposure must not exceed this (issue 15).
const MAX_EXPOSURE: f64 = 1.5;

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
    let mut lines = routed6d_sim::demo::owned_lines(state);
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

/// The figure in `systemd-analyze security`'s last line.
fn exposure_of(security: &str) -> f64 {
    security
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for routed6d.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure figure in:\n{security}"))
}

/// `[ -w ]` for each file under /proc/sys/net/ipv6/conf, seen from inside the
/// service's own mount namespace: "all/forwarding rw", "default/forwarding ro", …
fn writable_in_service(container: &Container, files: &[&str]) -> Vec<String> {
    let pid = container.unit_property("MainPID");
    let script = files
        .iter()
        .map(|f| {
            format!(
                "if [ -w /proc/sys/net/ipv6/conf/{f} ]; then echo '{f} rw'; else echo '{f} ro'; fi"
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    container
        .sh(&format!("nsenter -t {pid} -m sh -c \"{script}\""))
        .lines()
        .map(str::to_string)
        .collect()
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
        "/lib/systemd/system/routed6d-wait-online.service",
        "/lib/systemd/system/routed6d-online.target",
        "/etc/routed6d/routed6d.toml",
        "/etc/iproute2/rt_protos.d/routed6d.conf",
        "/usr/lib/sysusers.d/routed6d.conf",
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
    // The system user as packaging/sysusers.conf describes it.
    let user = container.sh("getent passwd routed6d");
    let user: Vec<&str> = user.trim().split(':').collect();
    assert_eq!(
        (user[4], user[5], user[6]),
        ("routed6d daemon", "/nonexistent", "/usr/sbin/nologin"),
        "{user:?}"
    );

    step("systemd-analyze verify and security");
    let verify = container.exec(&[
        "systemd-analyze",
        "verify",
        "routed6d.service",
        "routed6d-wait-online.service",
        "routed6d-online.target",
    ]);
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
    let exposure = exposure_of(&security);
    // The figure CI prints.
    let _ = writeln!(
        std::io::stderr(),
        "systemd-analyze security routed6d.service: exposure {exposure:.1} (target ≤ {MAX_EXPOSURE})"
    );
    assert!(exposure <= MAX_EXPOSURE, "{security}");

    step("resource and restart limits, the system-call filter");
    for (property, value) in [
        ("MemoryMax", "134217728"),
        ("TasksMax", "16"),
        ("StartLimitIntervalUSec", "10min"),
        ("StartLimitBurst", "5"),
        ("LogRateLimitIntervalUSec", "30s"),
        ("LogRateLimitBurst", "1000"),
        ("SystemCallErrorNumber", "1"),
    ] {
        assert_eq!(container.unit_property(property), value, "{property}");
    }
    // The allow-list, once @privileged and @resources are taken out of it.
    let allowed = container.unit_property("SystemCallFilter");
    for call in [
        "setuid",
        "setgroups",
        "chown",
        "setrlimit",
        "sched_setaffinity",
    ] {
        assert!(
            !allowed.split_whitespace().any(|c| c == call),
            "{call} is allowed: {allowed}"
        );
    }
    for call in ["socket", "sendmsg", "prctl", "openat"] {
        assert!(
            allowed.split_whitespace().any(|c| c == call),
            "{call} is not allowed"
        );
    }

    step("enabled but skipped, quietly, before the API key is written");
    assert_eq!(
        container.sh("systemctl is-enabled routed6d || true").trim(),
        "enabled"
    );
    container.systemctl("start");
    assert_eq!(container.unit_property("ActiveState"), "inactive");
    assert_eq!(container.unit_property("Result"), "exec-condition");
    assert!(
        container.journal().iter().any(|e| field(e, "MESSAGE")
            .contains("not configured yet, not starting: no API key in /etc/routed6d/token")),
        "no word on why it was skipped"
    );

    container.sh(
        "ip link add eth0 type veth peer name eth0-peer && ip link set eth0-peer up && \
         ip link set eth0 up && ip -6 addr add 2001:db8:1::2/64 dev eth0 nodad && \
         ip addr add 192.0.2.10/24 dev eth0 && \
         ip link add lan0 type veth peer name lan0-peer && ip link set lan0 up",
    );

    step("kind = static starts without a token file; delegate mode's sysctls");
    write_config(
        &container,
        &format!(
            "[provider]\nkind = \"static\"\nroutes = [ {{ prefix = \"{PREFIX}\", next_hop = \"{HOP1}\" }} ]\n\
             [uplink]\ninterface = \"eth0\"\n[prefix]\nmode = \"delegate\"\ninterface = \"lan0\"\n\
             [daemon]\non_stop = \"withdraw\"\n"
        ),
    );
    assert!(!container.path("/etc/routed6d/token").exists());
    let sysctls =
        "cat /proc/sys/net/ipv6/conf/all/forwarding /proc/sys/net/ipv6/conf/eth0/accept_ra";
    assert_eq!(
        container.sh(sysctls).split_whitespace().collect::<Vec<_>>(),
        ["0", "1"]
    );
    container.systemctl("start");
    assert_eq!(container.unit_property("ActiveState"), "active");
    wait_kernel(&ns, "delegated", |s| has_owned_address(s, HOP1));
    // Forwarding on, and the uplink keeps its router advertisements.
    assert_eq!(
        container.sh(sysctls).split_whitespace().collect::<Vec<_>>(),
        ["1", "2"]
    );
    // Only what delegate mode writes is writable: all/forwarding and the per-interface
    // directories (the uplink's accept_ra), not the host-wide all/ and default/.
    assert_eq!(
        writable_in_service(
            &container,
            &[
                "all/forwarding",
                "all/disable_ipv6",
                "all/accept_ra",
                "default/forwarding",
                "default/accept_ra",
                "eth0/accept_ra",
            ]
        ),
        [
            "all/forwarding rw",
            "all/disable_ipv6 ro",
            "all/accept_ra ro",
            "default/forwarding ro",
            "default/accept_ra ro",
            "eth0/accept_ra rw",
        ]
    );
    container.systemctl("stop");
    assert!(
        owned(&observe_in(&ns).expect("observe")).is_empty(),
        "withdraw left objects behind"
    );

    step("configure against the simulated API on the container's loopback");
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

    step("an admin's disable survives an upgrade");
    container.sh("systemctl disable routed6d");
    container.sh("DEBIAN_FRONTEND=noninteractive dpkg -i /root/routed6d.deb");
    assert_eq!(
        container.sh("systemctl is-enabled routed6d || true").trim(),
        "disabled"
    );
    container.sh("systemctl enable routed6d");

    step("a token_file of its own, owned by the service user");
    container.sh(
        "mv /etc/routed6d/token /etc/routed6d/hostup.key && chown routed6d /etc/routed6d/hostup.key",
    );
    write_config(
        &container,
        &good.replace(
            "poll_interval",
            "token_file = \"/etc/routed6d/hostup.key\"\npoll_interval",
        ),
    );
    container.systemctl("restart");
    assert_eq!(container.unit_property("ActiveState"), "active");
    let status_text = container.unit_property("StatusText");
    assert!(
        status_text.contains(PREFIX) && !status_text.contains("failed"),
        "STATUS= {status_text:?}"
    );
    container
        .sh("mv /etc/routed6d/hostup.key /etc/routed6d/token && chown root /etc/routed6d/token");
    write_config(&container, &good);
    container.systemctl("restart");
    assert_eq!(container.unit_property("ActiveState"), "active");

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

    step("dpkg --remove with on_stop = keep says what stays in the kernel");
    write_config(&container, &good);
    container.systemctl("start");
    wait_kernel(&ns, "programmed again", |s| has_owned_address(s, SERVED));
    let kept = owned(&observe_in(&ns).expect("observe"));
    let removal = container.sh("dpkg --remove routed6d");
    assert!(
        removal.contains(&format!(
            "routed6d: {} object(s) of routed6d (addresses and routes) stay in the kernel until the next reboot (on_stop = \"keep\"):",
            kept.len()
        )) && removal.contains(&format!("addr {SERVED}/128 dev lo")),
        "{removal}"
    );
    assert_eq!(owned(&observe_in(&ns).expect("observe")), kept, "kept");
    assert!(!container.path("/usr/bin/routed6d").exists());
    assert!(container.path("/etc/routed6d/routed6d.toml").exists());
    assert!(container.path("/etc/routed6d/token").exists());
    assert_ne!(
        container.unit_property("ActiveState"),
        "active",
        "still running"
    );
    // Whether it was enabled is kept for a reinstall, as deb-systemd-helper does.
    let wants = container.path("/etc/systemd/system/multi-user.target.wants/routed6d.service");
    assert!(
        wants.symlink_metadata().is_ok(),
        "the enablement was forgotten"
    );

    step("a reinstall after remove comes back enabled");
    container.sh("DEBIAN_FRONTEND=noninteractive dpkg -i /root/routed6d.deb");
    assert_eq!(
        container.sh("systemctl is-enabled routed6d || true").trim(),
        "enabled"
    );
    container.sh("dpkg --remove routed6d");

    step("dpkg --purge leaves nothing behind but the locked user");
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
    assert!(
        wants.symlink_metadata().is_err(),
        "the enablement link is left behind"
    );
    // The user and its group stay (a uid handed to another user later would own what
    // routed6d's left), locked and expired.
    let shadow = container.sh("getent shadow routed6d");
    let shadow: Vec<&str> = shadow.trim().split(':').collect();
    assert!(shadow[1].starts_with('!'), "not locked: {shadow:?}");
    assert_eq!(shadow[7], "1", "not expired: {shadow:?}");
    assert!(
        container
            .exec(&["getent", "group", "routed6d"])
            .status
            .success()
    );
    let load = container.unit_property("LoadState");
    assert_eq!(load, "not-found", "the unit is still known to systemd");
}

/// An image built offline: the .deb installed with dpkg in a chroot (no systemd
/// running) must boot with the service enabled, its user created, and skipped quietly
/// until the API key is written.
#[test]
fn the_deb_installed_in_a_chroot_comes_up_enabled() {
    if !netns::is_root() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (needs root for chroot and systemd-nspawn): systemd_nspawn::the_deb_installed_in_a_chroot_comes_up_enabled"
        );
        return;
    }
    ensure_tools(&[
        ("/usr/sbin/debootstrap", "debootstrap"),
        ("/usr/bin/systemd-nspawn", "systemd-container"),
    ]);
    let template = debian_root();
    let deb = build_package("deb");
    let root = nspawn::copy_root(&template);

    step("dpkg -i in a chroot");
    std::fs::copy(&deb, root.path().join("root/routed6d.deb")).expect("copy the .deb");
    let root_dir = root.path().to_str().expect("path");
    ok(
        run("chroot", &[root_dir, "dpkg", "-i", "/root/routed6d.deb"]),
        "dpkg -i in the chroot",
    );
    assert!(
        root.path()
            .join("etc/systemd/system/multi-user.target.wants/routed6d.service")
            .symlink_metadata()
            .is_ok(),
        "not enabled in the image"
    );

    step("booted: enabled, skipped quietly without the key");
    let container = Container::launch(root.path(), nspawn::Network::Private);
    container.wait_booted();
    assert_eq!(
        container.sh("systemctl is-enabled routed6d || true").trim(),
        "enabled"
    );
    assert!(
        container
            .exec(&["getent", "passwd", "routed6d"])
            .status
            .success()
    );
    assert_eq!(container.unit_property("Result"), "exec-condition");
    assert_eq!(container.unit_property("ActiveState"), "inactive");
    assert_eq!(
        container
            .sh("systemctl --failed --no-legend --plain | grep routed6d || true")
            .trim(),
        "",
        "failed at boot"
    );
    drop(container);
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
        "/usr/lib/systemd/system/routed6d-wait-online.service",
        "/usr/lib/systemd/system/routed6d-online.target",
        "/etc/routed6d/routed6d.toml",
        "/etc/iproute2/rt_protos.d/routed6d.conf",
        "/usr/lib/sysusers.d/routed6d.conf",
        "/usr/lib/systemd/system-preset/90-routed6d.preset",
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
    // %pre creates the user from the same line as the sysusers.d file.
    let sysusers = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/sysusers.conf"
    ))
    .expect("sysusers.conf");
    let user_line = sysusers
        .lines()
        .find(|l| l.starts_with("u "))
        .expect("a u line");
    for (scriptlet, does) in [
        ("preinstall", user_line),
        (
            "preinstall",
            "systemd-sysusers --replace=/usr/lib/sysusers.d/routed6d.conf -",
        ),
        (
            "postinstall",
            "systemctl --no-reload preset routed6d.service",
        ),
        ("postinstall", "install-system-units routed6d.service"),
        ("preuninstall", "disable --now routed6d.service"),
        ("preuninstall", "routed6d status --offline"),
        ("postuninstall", "systemctl daemon-reload"),
        ("postuninstall", "systemctl try-restart routed6d.service"),
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

/// The shipped unit's exposure as `systemd-analyze security --offline=true` rates the
/// file itself, without booting anything (the booted test above rates it installed).
#[test]
fn the_unit_rates_at_most_the_target_exposure() {
    if !std::path::Path::new("/usr/bin/systemd-analyze").exists() {
        if !netns::is_root() {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED (needs systemd-analyze, or root to install it): systemd_nspawn::the_unit_rates_at_most_the_target_exposure"
            );
            return;
        }
        ensure_tools(&[("/usr/bin/systemd-analyze", "systemd")]);
    }
    let unit = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/routed6d.service");
    let security = ok(
        run(
            "systemd-analyze",
            &["security", "--offline=true", "--no-pager", unit],
        ),
        "systemd-analyze security --offline=true",
    );
    let exposure = exposure_of(&security);
    let _ = writeln!(
        std::io::stderr(),
        "systemd-analyze security --offline=true systemd/routed6d.service: exposure {exposure:.1} (target ≤ {MAX_EXPOSURE})"
    );
    assert!(exposure <= MAX_EXPOSURE, "{security}");
}
