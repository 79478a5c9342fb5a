use super::*;
use std::time::Duration;

use crate::kernel::fake::FakeKernel;
use crate::model::{DEFAULT_PROTOCOL, RoutedPrefix};

fn routed(prefix: &str, hop: &str) -> Assignment {
    Assignment {
        prefixes: vec![RoutedPrefix {
            workload: None,
            prefix: prefix.parse().expect("prefix"),
            next_hop: Some(hop.parse().expect("hop")),
            origin: "ripv6_1".into(),
        }],
        ..Assignment::default()
    }
}

fn agent(extra: &str) -> Agent<FakeKernel> {
    let mut config = crate::desired::tests::config(extra);
    config.daemon.status_file =
        std::env::temp_dir().join(format!("routed6d-fleet-{}.json", rand::random::<u64>()));
    let mut agent = Agent::new(
        config,
        FakeKernel::new(DEFAULT_PROTOCOL, &[("lo", 1), ("eth0", 2)]),
    );
    agent.publish_status();
    agent
}

/// The value of the first text-format sample line starting with `series`.
fn sample(agent: &Agent<FakeKernel>, series: &str) -> f64 {
    let text = agent.fleet.metrics.text().expect("encode");
    text.lines()
        .find(|l| l.starts_with(series) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

fn drop_owned_address(agent: &mut Agent<FakeKernel>) {
    let addresses = &mut agent.kernel.state.addresses;
    let at = addresses
        .iter()
        .position(|a| a.protocol == DEFAULT_PROTOCOL && a.address.ifname == "lo")
        .expect("an owned address on lo");
    addresses.remove(at);
}

#[tokio::test]
async fn hooks_are_queued_once_per_change_and_once_at_start() {
    let mut agent = agent("[[hook]]\nexec = \"/bin/true\"\n");
    let (hooks, mut jobs) = Hooks::channel();
    agent.fleet.hooks = hooks;
    let first = routed("2001:db8:42:100::/64", "2001:db8:42::1");

    agent.finish_poll(Ok(first.clone()), None).await;
    let start = jobs.try_recv().expect("the start job");
    assert_eq!(start.runs.len(), 1);
    assert!(start.runs[0].contains(&("ROUTED6D_EVENT".into(), "start".into())));

    // The same answer again, a repair after drift, and a reload: no change to tell.
    agent.finish_poll(Ok(first.clone()), None).await;
    drop_owned_address(&mut agent);
    agent.repair().await;
    let config = agent.config.clone();
    agent.reconfigure(config);
    agent.finish_poll(Ok(first.clone()), None).await;
    assert!(jobs.try_recv().is_err(), "a job without a change");

    let moved = routed("2001:db8:42:100::/64", "2001:db8:42::2");
    agent.finish_poll(Ok(moved.clone()), None).await;
    let job = jobs.try_recv().expect("the next hop job");
    assert_eq!(job.runs.len(), 1);
    let env = &job.runs[0];
    assert!(env.contains(&("ROUTED6D_EVENT".into(), "next-hop".into())));
    assert!(env.contains(&("ROUTED6D_OLD_NEXT_HOP".into(), "2001:db8:42::1".into())));
    // Polled again, repaired again: still one job for the one change.
    agent.finish_poll(Ok(moved.clone()), None).await;
    drop_owned_address(&mut agent);
    agent.repair().await;
    assert!(jobs.try_recv().is_err(), "the change was told twice");
}

#[tokio::test]
async fn repairs_count_drift_only_and_failures_count_by_kind() {
    let mut agent = agent("");
    let answer = routed("2001:db8:42:100::/64", "2001:db8:42::1");
    agent.finish_poll(Ok(answer.clone()), None).await;
    // The first pass programmed three objects: writes, not repairs.
    assert_eq!(sample(&agent, "routed6d_repairs_total"), 0.0);
    assert_eq!(
        sample(
            &agent,
            "routed6d_kernel_ops_total{op=\"add-address\",result=\"changed\"}"
        ),
        2.0
    );
    assert!(sample(&agent, "routed6d_last_successful_poll_timestamp_seconds") > 1.7e9);
    assert_eq!(
        sample(
            &agent,
            "routed6d_prefix_info{prefix=\"2001:db8:42:100::/64\",next_hop=\"2001:db8:42::1\",origin=\"ripv6_1\",mode=\"addresses\"}"
        ),
        1.0
    );
    assert_eq!(sample(&agent, "routed6d_online"), 1.0);

    drop_owned_address(&mut agent);
    agent.repair().await;
    assert_eq!(sample(&agent, "routed6d_repairs_total"), 1.0);

    // A reload that wants one more address: its write is the configuration's, not a
    // repair.
    let mut config = agent.config.clone();
    config
        .prefix
        .addresses
        .push("::53".parse().expect("host part"));
    agent.reconfigure(config);
    agent.finish_poll(Ok(answer.clone()), None).await;
    assert_eq!(
        sample(
            &agent,
            "routed6d_kernel_ops_total{op=\"add-address\",result=\"changed\"}"
        ),
        4.0
    );
    assert_eq!(sample(&agent, "routed6d_repairs_total"), 1.0);

    agent
        .finish_poll(
            Err(ProviderError::Transport {
                url: "http://sim".into(),
                message: "connection refused".into(),
            }),
            None,
        )
        .await;
    assert_eq!(
        sample(&agent, "routed6d_poll_failures_total{kind=\"transport\"}"),
        1.0
    );
    assert_eq!(
        sample(
            &agent,
            "routed6d_poll_failures_total{kind=\"server_error\"}"
        ),
        0.0
    );

    // The provider withdraws the prefix: no prefix_info series is left.
    agent.finish_poll(Ok(Assignment::default()), None).await;
    let text = agent.fleet.metrics.text().expect("encode");
    assert!(!text.contains("routed6d_prefix_info{"), "{text}");
    assert_eq!(sample(&agent, "routed6d_repairs_total"), 1.0);
}

#[tokio::test]
async fn the_textfile_follows_every_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("routed6d.prom");
    let mut agent = agent(&format!("[metrics]\ntextfile = \"{}\"\n", file.display()));
    agent
        .finish_poll(Ok(routed("2001:db8:42:100::/64", "2001:db8:42::1")), None)
        .await;
    let text = std::fs::read_to_string(&file).expect("the textfile");
    assert!(
        text.contains("routed6d_prefix_info{prefix=\"2001:db8:42:100::/64\""),
        "{text}"
    );
    agent.finish_poll(Ok(Assignment::default()), None).await;
    let text = std::fs::read_to_string(&file).expect("the textfile");
    assert!(!text.contains("routed6d_prefix_info{"), "{text}");
    // Only the file itself: the temporary file was renamed, not left.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("routed6d.prom")]);
}

#[tokio::test]
async fn a_probe_round_reaches_status_and_the_summary_but_not_the_kernel() {
    let mut agent = agent("[probe]\ntarget = \"2001:db8:ffff::1\"\ninterval = \"10s\"\n");
    agent.fleet.prober =
        Some(Prober::new(agent.config.probe.clone().expect("probe")).expect("prober"));
    agent
        .finish_poll(Ok(routed("2001:db8:42:100::/64", "2001:db8:42::1")), None)
        .await;
    let writes = agent.kernel.writes.len();
    let prefix = "2001:db8:42:100::/64".parse().expect("prefix");
    let source = "2001:db8:42:100::1".parse().expect("source");
    let round = |result: Result<Duration, String>| Round {
        at: SystemTime::now(),
        echoes: vec![probe::Echo {
            prefix,
            source,
            result,
            connect: None,
        }],
    };
    agent.probed(round(Err("no echo reply within 2s".into())));
    let status = agent.status().probe.expect("probe status");
    assert_eq!(status.reachable, Some(false));
    assert_eq!(
        status.unreachable,
        vec!["2001:db8:42:100::/64 from 2001:db8:42:100::1: no echo reply within 2s"]
    );
    assert!(
        agent
            .summary()
            .contains("probe: no reply from 2001:db8:ffff::1 (1 probe(s))"),
        "{}",
        agent.summary()
    );
    assert_eq!(sample(&agent, "routed6d_probe_reachable"), 0.0);
    agent.probed(round(Ok(Duration::from_millis(3))));
    assert_eq!(agent.status().probe.expect("status").reachable, Some(true));
    assert_eq!(sample(&agent, "routed6d_probe_reachable"), 1.0);
    assert_eq!(sample(&agent, "routed6d_probe_rtt_seconds"), 0.003);
    assert_eq!(
        agent.kernel.writes.len(),
        writes,
        "the probe changed the kernel"
    );
}
