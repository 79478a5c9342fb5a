//! Case 6: what routed6d costs the provider's API. Requests per steady-state poll are
//! counted against the simulated API for every provider kind (the real clients, the
//! real `Poller`); requests per hour and the load of a fleet of 10 000 hosts are then
//! computed, with the poll jitter (`daemon::next_delay`, ±10 %) simulated to show how
//! it spreads hosts that all started in the same second.

use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::time::Duration;

use ipnet::Ipv6Net;
use routed6d::config::Config;
use routed6d::daemon::{Poller, next_delay};
use routed6d::provider::AnyProvider;
use routed6d_sim::api::{self, SimDigitalOcean, SimRoute, SimState, SimVps};

use crate::report::Row;

const TOKEN: &str = "bench-token-0123456789";
const VPS_ID: &str = "vps_bench000000000000000006";
const DROPLET: u64 = 3164444;
const VMID: u64 = 10048;
/// Hosts in the computed fleet.
const FLEET: usize = 10_000;
/// The poll round by which the jitter should have spread a fleet that started in
/// the same second (an hour at the default 60 s).
const SETTLED: usize = 60;
/// Polls counted per kind after the first (which may identify the host).
const POLLS: usize = 4;

fn v6(s: &str) -> Ipv6Addr {
    s.parse().expect("address")
}

fn net(s: &str) -> Ipv6Net {
    s.parse().expect("prefix")
}

/// The sim with one host known to every kind of API.
fn state() -> SimState {
    let mut state = SimState::new(TOKEN).with_vps(
        SimVps::new(VPS_ID, "bench", "192.0.2.10".parse().expect("ip"))
            .with_suggested_next_hop(v6("2001:db8:1::10")),
    );
    state.legacy_vms.insert(VMID, VPS_ID.into());
    state.account_routes = vec![SimRoute::new(
        "ripv6rt_bench",
        ("ripv6_pool2", net("2001:db8:88::/48")),
        net("2001:db8:88:100::/56"),
        v6("2001:db8:1::10"),
        Some("bench"),
        VPS_ID,
    )];
    state.digitalocean = SimDigitalOcean::default()
        .with_droplet(DROPLET, "bench", Some(v6("2001:db8:1::2")))
        .with_reserved(v6("2001:db8:77::5"), Some(DROPLET));
    state
}

/// (label, provider section) per kind; `{base}` is the sim's URL.
fn kinds(base: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "hostup",
            format!("kind = \"hostup\"\nvps_id = \"{VPS_ID}\"\nbase_url = \"{base}\""),
        ),
        (
            "hostup account",
            format!(
                "kind = \"hostup\"\nsource = \"account\"\nvps_id = \"{VPS_ID}\"\nbase_url = \"{base}\""
            ),
        ),
        (
            "hostup-legacy",
            format!("kind = \"hostup-legacy\"\nvmid = {VMID}\nbase_url = \"{base}\""),
        ),
        (
            "digitalocean",
            format!("kind = \"digitalocean\"\ndroplet_id = {DROPLET}\nbase_url = \"{base}\""),
        ),
        (
            "static",
            "kind = \"static\"\nroutes = [ { prefix = \"2001:db8:42:100::/64\", next_hop = \"2001:db8:1::10\" } ]"
                .to_string(),
        ),
    ]
}

/// Requests per steady-state poll and the default interval, per kind.
async fn measure() -> Vec<(&'static str, f64, Duration)> {
    let sim = api::start_on("127.0.0.1:0".parse().expect("addr"), state())
        .await
        .expect("sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).expect("token");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let mut out = Vec::new();
    for (label, section) in kinds(&sim.base_url()) {
        let token_line = if label == "static" {
            String::new()
        } else {
            format!("token_file = \"{}\"\n", token.display())
        };
        let text = format!(
            "[provider]\n{section}\n{token_line}[uplink]\ninterface = \"eth0\"\n[daemon]\nstatus_file = \"{}\"\n",
            dir.path().join("status.json").display()
        );
        let path = dir.path().join("routed6d.toml");
        let config = Config::from_text(&path, &text, None).expect("bench config");
        let provider = AnyProvider::new(&config).expect("provider");
        let mut poller = Poller::new(provider);
        let ips = ["192.0.2.10".parse().expect("ip")];
        poller
            .poll(&config.provider, &ips)
            .await
            .expect("first poll");
        sim.clear_requests();
        for _ in 0..POLLS {
            poller.poll(&config.provider, &ips).await.expect("poll");
        }
        let per_poll = sim.requests().len() as f64 / POLLS as f64;
        out.push((label, per_poll, config.provider.poll_interval));
    }
    sim.shutdown();
    out
}

/// Peak requests per bucket of interval/60 (one second at a 60 s poll, a minute at an
/// hourly one) during poll round `round` (1-based), for a fleet that started in the
/// same second, each host's polls `next_delay` apart. Buckets scale with the interval
/// so that "peak ≤ 2× mean" compares like with like: at an hourly poll a one-second
/// bucket holds ~3 requests and its peak is Poisson noise, not synchronisation.
fn peaks(interval: Duration, per_poll: f64, rounds: &[usize]) -> Vec<(usize, f64)> {
    let last = rounds.iter().copied().max().unwrap_or(1);
    let bucket = interval.as_secs_f64() / 60.0;
    let mut at = vec![0.0_f64; FLEET];
    let mut out = Vec::new();
    for round in 1..=last {
        if rounds.contains(&round) {
            let mut buckets: HashMap<u64, usize> = HashMap::new();
            for t in &at {
                *buckets.entry((*t / bucket) as u64).or_default() += 1;
            }
            let peak = buckets.values().copied().max().unwrap_or(0) as f64 * per_poll;
            out.push((round, peak / bucket));
        }
        for t in &mut at {
            *t += next_delay(interval, None, rand::random::<f64>()).as_secs_f64();
        }
    }
    out
}

/// A fleet settled into its jittered pace, then ten minutes of API outage (every poll
/// fails: 503, no Retry-After) and ten minutes after it. Each host's next poll comes
/// `next_delay` after the last, failed or not, as `Agent::finish_poll` computes it.
/// The peak request rate (per bucket of interval/60) in the ten minutes before, during
/// and after the outage.
fn outage_peaks(interval: Duration) -> [f64; 3] {
    let window = 600.0;
    let bucket = interval.as_secs_f64() / 60.0;
    let mut at = vec![0.0_f64; FLEET];
    for _ in 0..SETTLED {
        for t in &mut at {
            *t += next_delay(interval, None, rand::random::<f64>()).as_secs_f64();
        }
    }
    // Windows of ten minutes: before the outage, the outage, after it.
    let start = at.iter().copied().fold(0.0, f64::max);
    let mut buckets: [HashMap<u64, usize>; 3] = Default::default();
    for t in &mut at {
        while *t < start + 3.0 * window {
            if *t >= start {
                let phase = (((*t - start) / window) as usize).min(2);
                *buckets[phase].entry((*t / bucket) as u64).or_default() += 1;
            }
            // A failed poll in the outage (503, no Retry-After) waits what a good
            // one waits: the same `next_delay(interval, None, …)` (the faults test
            // `an_outage_never_raises_the_request_rate` checks the daemon does).
            *t += next_delay(interval, None, rand::random::<f64>()).as_secs_f64();
        }
    }
    buckets.map(|b| b.values().copied().max().unwrap_or(0) as f64 / bucket)
}

pub fn api_cost() -> Vec<Row> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let measured = runtime.block_on(measure());
    let mut rows = Vec::new();
    let minute = Duration::from_secs(60);
    let [before, during, after] = outage_peaks(minute);
    let worst = during.max(after) / before;
    rows.push(
        Row::info(
            "6 fleet through a 10-min API outage: peak vs before",
            format!("{worst:.2}×"),
            worst,
        )
        .target("≤ 1.10× the peak before", worst <= 1.10)
        .note(format!(
            "{FLEET} hosts polling every minute; peak req/s over 1 s buckets: before {before:.0}, during {during:.0}, after {after:.0} (mean {:.1})",
            FLEET as f64 / 60.0
        )),
    );
    for (label, per_poll, interval) in measured {
        let secs = interval.as_secs_f64();
        let per_hour = per_poll * 3600.0 / secs;
        let mean = FLEET as f64 * per_poll / secs;
        let spread = peaks(interval, per_poll, &[1, 2, 10, SETTLED]);
        let settled = spread.last().map_or(0.0, |(_, p)| *p);
        let text: Vec<String> = spread
            .iter()
            .map(|(round, peak)| format!("poll {round}: {peak:.1}/s"))
            .collect();
        let row = Row::info(
            format!("6 API {label}: requests/hour/host"),
            format!("{per_hour:.0}"),
            per_hour,
        )
        .note(format!(
            "{per_poll:.0} req/poll every {}; fleet of {FLEET}: mean {mean:.1} req/s, peak (req/s over interval/60) {}",
            humantime::format_duration(interval),
            text.join(", ")
        ));
        rows.push(if per_poll > 0.0 {
            row.target(
                format!("jitter: peak ≤ 2× mean by poll {SETTLED}"),
                settled <= 2.0 * mean.max(1.0),
            )
        } else {
            row
        });
    }
    rows
}
