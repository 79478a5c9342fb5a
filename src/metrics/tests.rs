use super::serve::respond;
use super::*;
use crate::probe::{Connect, Echo};
use hyper::{Method, StatusCode};
use std::path::Path;

fn config(extra: &str) -> Config {
    let text = format!(
        "[provider]\nkind = \"hostup\"\nvps_id = \"vps_1\"\n[uplink]\ninterface = \"eth0\"\n{extra}"
    );
    Config::from_text(Path::new("t.toml"), &text, None).expect("config")
}

fn one_prefix() -> Vec<RoutedPrefix> {
    vec![RoutedPrefix {
        workload: None,
        prefix: "2001:db8:42:100::/64".parse().expect("prefix"),
        next_hop: Some("2001:db8:42::1".parse().expect("hop")),
        origin: "ripv6rt_1 \"web \\\"a\\\"\"".into(),
    }]
}

/// The sample lines (not comments) of the text format.
fn samples(metrics: &Metrics) -> Vec<String> {
    metrics
        .text()
        .expect("encode")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// What the README promises a fleet: a host with one prefix and the probe has this
/// many series, after every kind of event, not more as time goes on.
/// A probe round of one prefix with these results.
fn probe_round(result: Result<Duration, String>, connect: Option<Connect>) -> Round {
    Round {
        at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_010),
        echoes: vec![Echo {
            prefix: one_prefix()[0].prefix,
            source: "2001:db8:42:100::1".parse().expect("source"),
            result,
            connect,
        }],
    }
}

#[test]
fn a_host_with_one_prefix_has_a_bounded_number_of_series() {
    let metrics = Metrics::new(&config(
        "[probe]\ntarget = \"2001:db8:ffff::1\"\ntcp_port = 443\n",
    ));
    metrics.programmed(&one_prefix(), PrefixMode::Addresses, true, 0);
    let verbs = [
        "add-address",
        "del-address",
        "add-route",
        "replace-route",
        "del-route",
        "set-sysctl",
    ];
    let every_write: Vec<(&'static str, bool)> = verbs
        .iter()
        .flat_map(|v| [(*v, true), (*v, false)])
        .collect();
    for _ in 0..100 {
        metrics.writes(&every_write, true);
        metrics.poll_failed(&ProviderError::NotFound("x".into()));
        metrics.programmed(&one_prefix(), PrefixMode::Addresses, true, 1);
        for connect in [
            Connect::Established(Duration::from_millis(1)),
            Connect::Refused(Duration::from_millis(1)),
            Connect::Failed("no TCP answer within 2s".into()),
        ] {
            metrics.probed(&probe_round(Err("x".into()), Some(connect)));
            metrics.probed(&probe_round(Ok(Duration::from_millis(1)), None));
        }
    }
    let lines = samples(&metrics);
    // build 1, prefix 1, last success 1, interval 1, failures 8, ops 6 × 2,
    // repairs 1, conflicts 1, online 1, probe: reachable, rtt, last, echoes 2,
    // connects 3: the most a host with one prefix can have (README, Monitoring).
    assert_eq!(lines.len(), 35, "{lines:#?}");
    for (config_text, fresh_series) in [
        ("", 15),
        ("[probe]\ntarget = \"2001:db8:ffff::1\"\n", 20),
        (
            "[probe]\ntarget = \"2001:db8:ffff::1\"\ntcp_port = 443\n",
            23,
        ),
    ] {
        let fresh = Metrics::new(&config(config_text));
        fresh.programmed(&one_prefix(), PrefixMode::Addresses, true, 0);
        assert_eq!(samples(&fresh).len(), fresh_series, "{config_text}");
    }
}

/// `probe.tcp_port`: each connect counted by its result, beside the echoes; without
/// it, no connect series at all.
#[test]
fn connects_are_counted_by_result_only_with_a_tcp_port() {
    let metrics = Metrics::new(&config(
        "[probe]\ntarget = \"2001:db8:ffff::1\"\ntcp_port = 443\n",
    ));
    // The target drops ICMP; the reset still proves the prefix.
    metrics.probed(&probe_round(
        Err("no echo reply within 2s".into()),
        Some(Connect::Refused(Duration::from_micros(700))),
    ));
    metrics.probed(&probe_round(
        Err("no echo reply within 2s".into()),
        Some(Connect::Established(Duration::from_micros(900))),
    ));
    let lines = samples(&metrics);
    for expected in [
        "routed6d_probe_reachable 1",
        "routed6d_probe_rtt_seconds 0.0009",
        "routed6d_probe_echoes_total{result=\"reply\"} 0",
        "routed6d_probe_echoes_total{result=\"none\"} 2",
        "routed6d_probe_connects_total{result=\"established\"} 1",
        "routed6d_probe_connects_total{result=\"refused\"} 1",
        "routed6d_probe_connects_total{result=\"none\"} 0",
    ] {
        assert!(
            lines.iter().any(|l| l == expected),
            "{expected}\nnot in\n{}",
            lines.join("\n")
        );
    }
    metrics.probed(&probe_round(
        Err("no echo reply within 2s".into()),
        Some(Connect::Failed("no TCP answer within 2s".into())),
    ));
    let lines = samples(&metrics);
    assert!(lines.contains(&"routed6d_probe_reachable 0".to_string()));
    assert!(lines.contains(&"routed6d_probe_connects_total{result=\"none\"} 1".to_string()));

    let icmp_only = Metrics::new(&config("[probe]\ntarget = \"2001:db8:ffff::1\"\n"));
    icmp_only.probed(&probe_round(Ok(Duration::from_millis(1)), None));
    assert!(!icmp_only.text().expect("encode").contains("connects"));
}

#[test]
fn the_contract_series_are_named_as_promised() {
    let metrics = Metrics::new(&config("[probe]\ntarget = \"2001:db8:ffff::1\"\n"));
    metrics.programmed(&one_prefix(), PrefixMode::Anyip, false, 2);
    metrics.poll_succeeded(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    metrics.writes(&[("add-route", true), ("add-route", false)], true);
    metrics.poll_failed(&ProviderError::Status {
        url: "u".into(),
        status: 503,
        code: None,
        request_id: None,
        detail: None,
        retry_after: None,
    });
    metrics.probed(&probe_round(Ok(Duration::from_micros(1500)), None));
    let lines = samples(&metrics);
    for expected in [
        "routed6d_build_info{version=\"0.1.0\"} 1",
        "routed6d_prefix_info{prefix=\"2001:db8:42:100::/64\",next_hop=\"2001:db8:42::1\",origin=\"ripv6rt_1 \\\"web \\\\\\\"a\\\\\\\"\\\"\",mode=\"anyip\"} 1",
        "routed6d_last_successful_poll_timestamp_seconds 1800000000.0",
        "routed6d_poll_interval_seconds 60.0",
        "routed6d_poll_failures_total{kind=\"server_error\"} 1",
        "routed6d_poll_failures_total{kind=\"transport\"} 0",
        "routed6d_kernel_ops_total{op=\"add-route\",result=\"changed\"} 1",
        "routed6d_kernel_ops_total{op=\"add-route\",result=\"failed\"} 1",
        "routed6d_repairs_total 1",
        "routed6d_conflicts 2",
        "routed6d_online 0",
        "routed6d_probe_reachable 1",
        "routed6d_probe_rtt_seconds 0.0015",
        "routed6d_probe_last_timestamp_seconds 1800000010.0",
        "routed6d_probe_echoes_total{result=\"reply\"} 1",
        "routed6d_probe_echoes_total{result=\"none\"} 0",
    ] {
        assert!(
            lines.iter().any(|l| l == expected),
            "{expected}\nnot in\n{}",
            lines.join("\n")
        );
    }
    // Counters are typed as such in the text format (node_exporter keeps the type).
    let text = metrics.text().expect("encode");
    assert!(
        text.contains("# TYPE routed6d_repairs_total counter\n"),
        "{text}"
    );
    assert!(metrics.openmetrics().expect("encode").ends_with("# EOF\n"));
}

#[test]
fn every_failure_kind_is_one_of_the_fixed_set() {
    let status = |status| ProviderError::Status {
        url: "u".into(),
        status,
        code: None,
        request_id: None,
        detail: None,
        retry_after: None,
    };
    let cases = [
        (status(429), "rate_limited"),
        (status(401), "unauthorized"),
        (status(403), "unauthorized"),
        (status(500), "server_error"),
        (status(404), "client_error"),
        (
            ProviderError::Invalid {
                url: "u".into(),
                message: "m".into(),
                request_id: None,
            },
            "invalid_answer",
        ),
        (ProviderError::Unsupported("x".into()), "other"),
    ];
    for (error, kind) in cases {
        assert_eq!(failure_kind(&error), kind, "{error}");
        assert!(FAILURE_KINDS.contains(&kind));
    }
}

#[test]
fn only_get_and_head_of_metrics_are_served() {
    let metrics = Metrics::new(&config(""));
    let ok = respond(&metrics, &Method::GET, "/metrics", "*/*");
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(
        ok.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let open = respond(
        &metrics,
        &Method::GET,
        "/metrics",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    );
    assert!(
        open.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("application/openmetrics-text")
    );
    assert_eq!(
        respond(&metrics, &Method::HEAD, "/metrics", "").status(),
        StatusCode::OK
    );
    let post = respond(&metrics, &Method::POST, "/metrics", "");
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
    assert_eq!(
        respond(&metrics, &Method::GET, "/", "").status(),
        StatusCode::NOT_FOUND
    );
}

#[test]
fn the_textfile_is_replaced_whole_and_readable_by_node_exporter() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("routed6d.prom");
    std::fs::write(&path, "old").expect("write");
    let metrics = Metrics::new(&config(""));
    metrics.programmed(&one_prefix(), PrefixMode::Addresses, true, 0);
    // Under the unit's UMask=0077 a plain create would be 0600.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let written = metrics.write_textfile(&path);
    nix::sys::stat::umask(old);
    written.expect("write");
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        metrics.text().expect("encode")
    );
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    let missing = Metrics::new(&config("")).write_textfile(&dir.path().join("no/such.prom"));
    assert!(
        matches!(&missing, Err(MetricsError::Textfile { path, .. }) if path.ends_with("no/such.prom")),
        "{missing:?}"
    );
}
