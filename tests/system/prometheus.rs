//! The Prometheus side of the fleet (issue 18), checked with Prometheus's own
//! promtool: the alerting rules load, each alert fires on the series of a troubled
//! host and stays quiet on a healthy one (promtool's rule unit tests), and what
//! routed6d exposes passes `promtool check metrics`.

use crate::promtool;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use routed6d::config::{Config, PrefixMode};
use routed6d::metrics::Metrics;
use routed6d::model::RoutedPrefix;
use routed6d::probe::{Connect, Echo, Round};

fn dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/prometheus"))
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let Some(tool) = promtool::promtool(&format!("prometheus::{}", args[0])) else {
        return (true, String::new());
    };
    let mut child = Command::new(tool)
        .args(args)
        .current_dir(dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn the_alerting_rules_load() {
    let (ok, said) = promtool(&["check", "rules", "routed6d.rules.yml"], None);
    assert!(ok, "{said}");
}

#[test]
fn each_alert_fires_on_a_troubled_host_and_not_on_a_healthy_one() {
    let (ok, said) = promtool(&["test", "rules", "routed6d.rules.test.yml"], None);
    assert!(ok, "{said}");
}

#[test]
fn the_exposition_passes_promtool_check_metrics() {
    let text = "[provider]\nkind = \"hostup\"\nvps_id = \"vps_1\"\n[uplink]\ninterface = \"eth0\"\n\
                [probe]\ntarget = \"2001:db8:ffff::1\"\ntcp_port = 443\n";
    let config = Config::from_text(Path::new("t.toml"), text, None).expect("config");
    let metrics = Metrics::new(&config);
    let routed = RoutedPrefix {
        workload: None,
        prefix: "2001:db8:42:100::/64".parse().expect("prefix"),
        next_hop: Some("2001:db8:1::10".parse().expect("hop")),
        origin: "ripv6rt_1 \"label with \\\"quotes\\\"\"".into(),
    };
    metrics.programmed(
        std::slice::from_ref(&routed),
        PrefixMode::Addresses,
        true,
        0,
    );
    metrics.poll_succeeded(SystemTime::now());
    metrics.writes(&[("add-address", true), ("add-route", false)], true);
    metrics.probed(&Round {
        at: SystemTime::now(),
        echoes: vec![Echo {
            prefix: routed.prefix,
            source: "2001:db8:42:100::1".parse().expect("source"),
            result: Ok(Duration::from_millis(2)),
            connect: Some(Connect::Refused(Duration::from_millis(1))),
        }],
    });
    let exposition = metrics.text().expect("encode");
    let (ok, said) = promtool(&["check", "metrics"], Some(&exposition));
    assert!(ok && said.trim().is_empty(), "{said}\n{exposition}");
}
