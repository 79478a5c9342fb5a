//! Issue 18 on a real kernel: the real `routed6d run` in the VPS namespace of the test
//! bed, against the simulated HostUp API, with `[metrics]`, `[probe]` and `[[hook]]`
//! configured as an operator would. The metrics are read over HTTP inside the
//! namespace, the probe is judged against the provider's router (which answers, then
//! loses its route to the prefix while the API still says routed; or ignores echo
//! requests, when only `tcp_port`'s connect can tell), and the hooks leave a record
//! of every run. Needs root; without it every test says SKIPPED.

use crate::common;

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{HOP1, HOP2, Harness, TOKEN, VPS_ID, has_owned, host, prefix};
use routed6d_sim::api::Fault;
use routed6d_sim::netns::{self, ROUTER_ADDR};

fn skip_unless_root(test: &str) -> bool {
    common::skip_unless_root("fleet_e2e", test)
}

const METRICS: &str = "[::1]:9626";

/// `GET /metrics` from inside the VPS namespace: (status line, body).
fn scrape(h: &Harness) -> Result<(String, String), String> {
    h.testbed
        .vps
        .enter(|| {
            let mut stream = std::net::TcpStream::connect(METRICS).map_err(|e| e.to_string())?;
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .map_err(|e| e.to_string())?;
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: routed6d\r\n\r\n")
                .map_err(|e| e.to_string())?;
            let mut answer = String::new();
            stream
                .read_to_string(&mut answer)
                .map_err(|e| e.to_string())?;
            let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
            Ok((
                head.lines().next().unwrap_or("").to_string(),
                body.to_string(),
            ))
        })
        .map_err(|e| e.to_string())?
}

/// The value of `series` (name and labels exactly as exposed) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Scrape until `series` satisfies `check`.
fn wait_sample(h: &Harness, series: &str, check: impl Fn(f64) -> bool) -> String {
    let mut last = String::new();
    let seen = netns::wait_until(common::CONVERGE, || {
        last = scrape(h).map(|(_, body)| body).unwrap_or_default();
        sample(&last, series).is_some_and(&check)
    });
    assert!(
        seen.is_some(),
        "{series} never as wanted in\n{last}\nlog:\n{}",
        h.log()
    );
    last
}

/// TCP sockets listening in the daemon's namespace (IPv4 and IPv6).
fn listening(h: &Harness) -> usize {
    ["tcp", "tcp6"]
        .iter()
        .map(|file| {
            std::fs::read_to_string(format!("/proc/{}/net/{file}", h.pid()))
                .unwrap_or_default()
                .lines()
                .skip(1)
                .filter(|l| l.split_whitespace().nth(3) == Some("0A"))
                .count()
        })
        .sum()
}

#[test]
fn metrics_are_served_only_when_configured_and_follow_the_daemon() {
    if skip_unless_root("metrics") {
        return;
    }
    let mut h = Harness::hostup("fmx");
    h.start_programmed();
    // Only the simulated API listens in this namespace: routed6d opened nothing.
    assert_eq!(listening(&h), 1, "a socket without [metrics] listen");
    assert!(scrape(&h).is_err(), "something answers on {METRICS}");
    h.stop_with(libc::SIGTERM);

    let textfile = h.dir.path().join("textfile").join("routed6d.prom");
    std::fs::create_dir(textfile.parent().expect("dir")).expect("mkdir");
    h.edit_config(
        "[daemon]\n",
        &format!(
            "[metrics]\nlisten = \"{METRICS}\"\ntextfile = \"{}\"\n[daemon]\n",
            textfile.display()
        ),
    );
    // The kernel state was kept from the first run: wait for the socket instead.
    h.start_programmed();
    let bound = netns::wait_until(common::CONVERGE, || listening(&h) == 2);
    assert!(bound.is_some(), "{}", h.log());
    let (status, body) = scrape(&h).expect("scrape");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let series = format!(
        "routed6d_prefix_info{{prefix=\"{}\",next_hop=\"{HOP1}\",origin=\"ripv6_",
        prefix()
    );
    assert!(body.contains(&series), "{series} not in\n{body}");
    assert!(
        sample(&body, "routed6d_last_successful_poll_timestamp_seconds").is_some_and(|t| t > 1.7e9),
        "{body}"
    );
    assert_eq!(sample(&body, "routed6d_repairs_total"), Some(0.0), "{body}");
    assert_eq!(sample(&body, "routed6d_online"), Some(1.0), "{body}");
    assert!(!body.contains(TOKEN));

    // Drift: an address of routed6d's deleted by hand is a repair.
    h.delete_address(host(1), "lo");
    wait_sample(&h, "routed6d_repairs_total", |n| n >= 1.0);

    // The provider fails: counted by kind; the last success stays where it was.
    let before = sample(
        &scrape(&h).expect("scrape").1,
        "routed6d_last_successful_poll_timestamp_seconds",
    );
    h.sim()
        .set_sticky_fault(Fault::status(503, "service_unavailable"));
    let body = wait_sample(
        &h,
        "routed6d_poll_failures_total{kind=\"server_error\"}",
        |n| n >= 1.0,
    );
    assert!(
        sample(&body, "routed6d_last_successful_poll_timestamp_seconds") <= before.map(|t| t + 1.5),
        "{body}"
    );
    h.sim().clear_faults();

    // The next hop moves: the info series follows, one per prefix.
    h.sim().set_next_hop(VPS_ID, HOP2).expect("next hop");
    let moved = format!(
        "routed6d_prefix_info{{prefix=\"{}\",next_hop=\"{HOP2}\"",
        prefix()
    );
    let seen = netns::wait_until(common::CONVERGE, || {
        scrape(&h).is_ok_and(|(_, b)| {
            b.contains(&moved) && b.matches("routed6d_prefix_info{").count() == 1
        })
    });
    assert!(seen.is_some(), "{moved}\n{}", h.log());

    // The textfile: the same series, readable by node_exporter's user.
    use std::os::unix::fs::PermissionsExt;
    let written = netns::wait_until(common::CONVERGE, || {
        std::fs::read_to_string(&textfile).is_ok_and(|t| t.contains(&moved))
    });
    assert!(
        written.is_some(),
        "{}",
        std::fs::read_to_string(&textfile).unwrap_or_default()
    );
    let mode = std::fs::metadata(&textfile)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
    let stray: Vec<_> = std::fs::read_dir(textfile.parent().expect("dir"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n != "routed6d.prom")
        .collect();
    assert!(stray.is_empty(), "temporary files left: {stray:?}");
    h.assert_healthy();
}

/// Let the VPS namespace's processes open ICMP datagram sockets (Debian's default
/// range "1 0" allows no group: see README, Monitoring).
fn allow_ping_sockets(h: &Harness, range: &str) {
    let range = range.to_string();
    h.testbed
        .vps
        .enter(move || std::fs::write("/proc/sys/net/ipv4/ping_group_range", range))
        .expect("enter")
        .expect("ping_group_range");
}

/// `probe.reachable` of the daemon's status file.
fn probe_reachable(h: &Harness) -> Option<bool> {
    let text = std::fs::read_to_string(h.dir.path().join("status.json")).ok()?;
    let status: serde_json::Value = serde_json::from_str(&text).ok()?;
    status["probe"]["reachable"].as_bool()
}

#[test]
fn the_probe_sees_the_router_answer_and_lose_its_route_while_the_api_says_routed() {
    if skip_unless_root("probe") {
        return;
    }
    const INTERVAL: Duration = Duration::from_secs(2);
    let mut h = Harness::hostup("fpr");
    h.edit_config(
        "[daemon]\n",
        &format!(
            "[metrics]\nlisten = \"{METRICS}\"\n[probe]\ntarget = \"{ROUTER_ADDR}\"\ninterval = \"2s\"\n[daemon]\n"
        ),
    );

    // Without the sysctl the kernel refuses the socket, and the operator is told why.
    allow_ping_sockets(&h, "1 0");
    h.start_programmed();
    h.wait_log("net.ipv4.ping_group_range", 1);
    h.stop_with(libc::SIGTERM);

    allow_ping_sockets(&h, "0 2147483647");
    h.start_programmed();
    let answered = netns::wait_until(INTERVAL * 3, || probe_reachable(&h) == Some(true));
    assert!(answered.is_some(), "no reply from the router\n{}", h.log());
    wait_sample(&h, "routed6d_probe_reachable", |v| v == 1.0);
    let owned = h.owned();

    // The provider's router forgets the prefix; the API goes on saying it is routed.
    h.testbed.route_prefix(prefix(), None).expect("route del");
    let lost = Instant::now();
    let noticed = netns::wait_until(INTERVAL * 3, || probe_reachable(&h) == Some(false));
    let took = noticed.unwrap_or_else(|| panic!("never unreachable\n{}", h.log()));
    assert!(took <= INTERVAL * 2, "unreachable noticed after {took:?}");
    let body = wait_sample(&h, "routed6d_probe_reachable", |v| v == 0.0);
    assert_eq!(sample(&body, "routed6d_online"), Some(1.0), "{body}");

    // Three more probes: still one warning, and the kernel exactly as it was.
    std::thread::sleep(INTERVAL * 3);
    assert_eq!(
        h.log_count(&format!("probe: {ROUTER_ADDR} did not answer")),
        1,
        "{}",
        h.log()
    );
    assert_eq!(h.owned(), owned, "the probe changed the kernel");
    let out = h.cli(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        status["probe"]["reachable"],
        serde_json::json!(false),
        "{status:#}"
    );
    assert_eq!(
        status["provider"]["answer"]["prefixes"][0]["prefix"],
        serde_json::json!(prefix().to_string()),
        "the API still says routed"
    );
    let text = String::from_utf8_lossy(&h.cli(&["status"]).stdout).into_owned();
    assert!(
        text.contains(&format!(
            "probe:     UNREACHABLE: no reply from {ROUTER_ADDR}"
        )),
        "{text}"
    );
    assert!(lost.elapsed() > INTERVAL * 3);

    h.testbed
        .route_prefix(prefix(), Some(HOP1))
        .expect("route back");
    h.wait_log("probe: reachable again", 1);
    assert_eq!(probe_reachable(&h), Some(true));
    std::thread::sleep(INTERVAL * 2);
    assert_eq!(h.log_count("probe: reachable again"), 1);
    h.assert_healthy();
}

/// The provider's router ignores echo requests, as a firewall that drops ICMP would.
fn router_ignores_echo(h: &Harness) {
    h.testbed
        .router
        .enter(|| std::fs::write("/proc/sys/net/ipv6/icmp/echo_ignore_all", "1"))
        .expect("enter")
        .expect("echo_ignore_all");
}

/// `probe` of the daemon's status file.
fn probe_status(h: &Harness) -> serde_json::Value {
    let text = std::fs::read_to_string(h.dir.path().join("status.json")).unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default()["probe"].clone()
}

#[test]
fn the_probe_connects_over_tcp_to_a_target_that_drops_icmp() {
    if skip_unless_root("probe_tcp") {
        return;
    }
    const INTERVAL: Duration = Duration::from_secs(2);
    const PORT: u16 = 443;
    let mut h = Harness::hostup("ftc");
    allow_ping_sockets(&h, "0 2147483647");
    router_ignores_echo(&h);
    assert!(
        h.testbed
            .ping_from_router(ROUTER_ADDR, Duration::from_millis(500))
            .is_err(),
        "the router still answers echo"
    );

    // The echo alone: the prefix looks unreachable, though it is routed and works.
    h.edit_config(
        "[daemon]\n",
        &format!(
            "[metrics]\nlisten = \"{METRICS}\"\n[probe]\ntarget = \"{ROUTER_ADDR}\"\ninterval = \"2s\"\n[daemon]\n"
        ),
    );
    h.start_programmed();
    let fooled = netns::wait_until(INTERVAL * 3, || probe_reachable(&h) == Some(false));
    assert!(fooled.is_some(), "the echo got a reply\n{}", h.log());
    assert!(probe_status(&h)["tcp"].is_null(), "{:#}", probe_status(&h));
    h.stop_with(libc::SIGTERM);
    let warned = h.log_count("did not answer");

    // With the connect: nothing listens on the port, and the router's reset is the
    // answer that proves the prefix.
    h.edit_config(
        "interval = \"2s\"\n",
        &format!("interval = \"2s\"\ntcp_port = {PORT}\n"),
    );
    h.start_programmed();
    let answered = netns::wait_until(INTERVAL * 3, || probe_reachable(&h) == Some(true));
    assert!(answered.is_some(), "no TCP answer\n{}", h.log());
    let out = h.cli(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let probe = &status["probe"];
    assert_eq!(probe["reachable"], serde_json::json!(true), "{probe:#}");
    assert_eq!(
        probe["icmp"]["answered"],
        serde_json::json!(false),
        "{probe:#}"
    );
    assert_eq!(
        probe["tcp"]["answered"],
        serde_json::json!(true),
        "{probe:#}"
    );
    assert_eq!(probe["tcp"]["port"], serde_json::json!(PORT), "{probe:#}");
    let result = probe["tcp"]["results"][0].as_str().unwrap_or("");
    assert!(
        result.starts_with(&format!(
            "{} from {}: refused (reset) in ",
            prefix(),
            host(1)
        )),
        "{probe:#}"
    );
    let body = wait_sample(
        &h,
        "routed6d_probe_connects_total{result=\"refused\"}",
        |n| n >= 1.0,
    );
    assert_eq!(
        sample(&body, "routed6d_probe_reachable"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "routed6d_probe_echoes_total{result=\"reply\"}"),
        Some(0.0),
        "{body}"
    );
    let text = String::from_utf8_lossy(&h.cli(&["status"]).stdout).into_owned();
    for line in [
        format!("probe:     reachable: {ROUTER_ADDR} answers every routed prefix"),
        format!(
            "icmp:     {} from {}: no echo reply within 1s",
            prefix(),
            host(1)
        ),
        format!(
            "tcp/{PORT}   {} from {}: refused (reset) in ",
            prefix(),
            host(1)
        ),
    ] {
        assert!(text.contains(&line), "{line:?} not in\n{text}");
    }
    assert_eq!(h.log_count("did not answer"), warned, "{}", h.log());

    // A listener on the port: the handshake completes (and is closed at once).
    let listener = h
        .testbed
        .router
        .enter(move || std::net::TcpListener::bind((ROUTER_ADDR, PORT)))
        .expect("enter")
        .expect("listen");
    wait_sample(
        &h,
        "routed6d_probe_connects_total{result=\"established\"}",
        |n| n >= 1.0,
    );
    assert_eq!(probe_reachable(&h), Some(true));
    let owned = h.owned();

    // The router forgets the prefix, the API still says routed: neither the echo nor
    // the connect gets an answer, within two intervals.
    h.testbed.route_prefix(prefix(), None).expect("route del");
    let noticed = netns::wait_until(INTERVAL * 3, || probe_reachable(&h) == Some(false));
    let took = noticed.unwrap_or_else(|| panic!("never unreachable\n{}", h.log()));
    assert!(took <= INTERVAL * 2, "unreachable noticed after {took:?}");
    let probe = probe_status(&h);
    assert_eq!(
        probe["icmp"]["answered"],
        serde_json::json!(false),
        "{probe:#}"
    );
    assert_eq!(
        probe["tcp"]["answered"],
        serde_json::json!(false),
        "{probe:#}"
    );
    wait_sample(&h, "routed6d_probe_connects_total{result=\"none\"}", |n| {
        n >= 1.0
    });
    h.wait_log(
        &format!("probe: {ROUTER_ADDR} did not answer {}", host(1)),
        1,
    );
    assert!(
        h.log()
            .contains("no echo reply within 1s; no TCP answer within 1s"),
        "{}",
        h.log()
    );
    assert_eq!(h.owned(), owned, "the probe changed the kernel");

    h.testbed
        .route_prefix(prefix(), Some(HOP1))
        .expect("route back");
    h.wait_log("probe: reachable again", 1);
    drop(listener);
    h.assert_healthy();
}

/// A hook that appends one line per run to `record` and says hello on stdout.
fn recording_hook(dir: &Path, record: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let exec = dir.join("record-hook");
    std::fs::write(
        &exec,
        format!(
            "#!/bin/sh\n\
             echo \"$ROUTED6D_EVENT|$ROUTED6D_PREFIX|$ROUTED6D_OLD_PREFIX|$ROUTED6D_NEXT_HOP|$ROUTED6D_OLD_NEXT_HOP|$ROUTED6D_PREFIXES|$ROUTED6D_ADDRESSES\" >> {record}\n\
             env >> {record}.env\n\
             echo \"hello from the hook: $ROUTED6D_EVENT\"\n\
             sleep 3\n",
            record = record.display()
        ),
    )
    .expect("hook");
    std::fs::set_permissions(&exec, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    exec
}

fn records(record: &Path) -> Vec<String> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn hooks_run_once_per_change_with_the_facts_and_never_hold_up_repair() {
    if skip_unless_root("hooks") {
        return;
    }
    let mut h = Harness::hostup("fhk");
    let record = h.dir.path().join("runs");
    let exec = recording_hook(h.dir.path(), &record);
    let stuck = h.dir.path().join("stuck-hook");
    std::fs::write(&stuck, "#!/bin/sh\nsleep 60\n").expect("hook");
    std::fs::set_permissions(&stuck, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    h.edit_config(
        "[daemon]\n",
        &format!(
            "[[hook]]\nexec = \"{}\"\n[[hook]]\nexec = \"{}\"\ntimeout = \"1s\"\n[daemon]\n",
            exec.display(),
            stuck.display()
        ),
    );
    h.start_programmed();
    let p = prefix();
    let start = format!("start|{p}||{HOP1}||{p}|{}", host(1));
    let ran = netns::wait_until(common::CONVERGE, || records(&record) == [start.clone()]);
    assert!(ran.is_some(), "{:?}\n{}", records(&record), h.log());

    // The next hop moves while the hooks are busy (3 s, then 1 s until the stuck
    // one is killed): repair is not held up by them.
    h.sim().set_next_hop(VPS_ID, HOP2).expect("next hop");
    h.wait("next hop moved", |s| {
        has_owned(s, HOP2) && !has_owned(s, HOP1)
    });
    h.delete_address(host(1), "lo");
    let repaired = Instant::now();
    h.wait("repaired", |s| has_owned(s, host(1)));
    assert!(
        repaired.elapsed() < Duration::from_secs(1),
        "{:?}",
        repaired.elapsed()
    );

    let moved = format!("next-hop|{p}|{p}|{HOP2}|{HOP1}|{p}|{}", host(1));
    let ran = netns::wait_until(common::CONVERGE, || records(&record).len() == 2);
    assert!(ran.is_some(), "{:?}\n{}", records(&record), h.log());
    assert_eq!(records(&record), [start, moved]);
    // More polls and a repair later: still one run per change.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(records(&record).len(), 2, "{:?}", records(&record));

    h.wait_log("hello from the hook: next-hop", 1);
    h.wait_log("still running after 1s: killed with its process group", 2);
    let env = std::fs::read_to_string(format!("{}.env", record.display())).expect("env");
    assert!(!env.contains(TOKEN));
    for line in env.lines() {
        let name = line.split('=').next().unwrap_or("");
        assert!(
            name.starts_with("ROUTED6D_") || ["PATH", "PWD", "SHLVL", "_"].contains(&name),
            "a hook inherited {line}"
        );
    }
    h.assert_healthy();
}

#[test]
fn a_hook_that_cannot_run_is_refused_by_check_config() {
    if skip_unless_root("check_config") {
        return;
    }
    let h = Harness::hostup("fck");
    let missing = h.dir.path().join("no-such-hook");
    h.edit_config(
        "[daemon]\n",
        &format!("[[hook]]\nexec = \"{}\"\n[daemon]\n", missing.display()),
    );
    let out = h.cli(&["check-config"]);
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        format!(
            "routed6d: {}: hook[0].exec {}: No such file or directory (os error 2)",
            h.config.display(),
            missing.display()
        )
    );
}
