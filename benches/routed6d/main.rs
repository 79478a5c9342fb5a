//! `cargo bench --bench routed6d` (as root): routed6d measured against `ip -6 -batch`
//! (iproute2, what an operator would otherwise script) in the same run, each case in a
//! private network namespace, plus the daemon's footprint at rest and the API cost of
//! a fleet. Prints one table and writes it to target/bench/latest.json (the previous
//! run is kept as previous.json and shown next to it).
//!
//! Environment:
//! - `ROUTED6D_BENCH_CASES=1,2,3` runs only those cases (1 bulk, 2 steady state,
//!   3 incremental, 4 convergence, 5 footprint, 6 API cost); default all.
//! - `ROUTED6D_BENCH_N=1000,10000`: route counts for cases 1–3 (the largest is used
//!   for 2 and 3).
//! - `ROUTED6D_BENCH_REST_SECS=600`: the footprint window (the 10 minutes;
//!   60 is enough while iterating).
//! - `ROUTED6D_BENCH_STRACE=FILE`: strace the daemon during the footprint window.
//! - `ROUTED6D_BENCH_FLEET=1`: cases 4 and 5 with `[metrics] listen` and a `[probe]`
//!   every 10 s to the provider's router (README, Monitoring: footprint).
//! - `ROUTED6D_BENCH_BIN`: the daemon binary for cases 4 and 5; by default the bench
//!   builds the shipped one (`cargo build --release`) into target/bench/shipped.
//!
//! Not a libtest harness (`harness = false`): `cargo test --all-targets` compiles it and
//! runs it without `--bench`, which returns at once.

mod api_cost;
mod daemon_cases;
mod kernel_cases;
mod report;

use std::path::PathBuf;

/// Which cases to run, from ROUTED6D_BENCH_CASES.
struct Selection(Vec<u32>);

impl Selection {
    fn from_env() -> Selection {
        let cases = std::env::var("ROUTED6D_BENCH_CASES")
            .ok()
            .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
            .unwrap_or_default();
        Selection(cases)
    }

    fn wants(&self, case: u32) -> bool {
        self.0.is_empty() || self.0.contains(&case)
    }
}

fn sizes() -> Vec<usize> {
    std::env::var("ROUTED6D_BENCH_N")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![1_000, 10_000])
}

/// target/ of this workspace (CARGO_TARGET_DIR when set).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary
    // without it, and a test run must not turn into a 15-minute measurement.
    if !std::env::args().any(|a| a == "--bench") {
        println!("routed6d bench: compiled; run it with `cargo bench --bench routed6d`");
        return;
    }
    if !routed6d_sim::netns::is_root() {
        eprintln!("SKIPPED: the routed6d bench needs root (network namespaces, netlink writes)");
        return;
    }
    let selection = Selection::from_env();
    let sizes = sizes();
    let largest = sizes.iter().copied().max().unwrap_or(10_000);
    let mut rows = Vec::new();
    if selection.wants(1) {
        for &n in &sizes {
            rows.extend(kernel_cases::bulk(n, n == 10_000));
        }
    }
    if selection.wants(2) || selection.wants(3) {
        rows.extend(kernel_cases::steady_and_incremental(
            largest,
            selection.wants(2),
            selection.wants(3),
        ));
    }
    if selection.wants(4) {
        rows.extend(daemon_cases::convergence());
    }
    if selection.wants(5) {
        rows.extend(daemon_cases::footprint());
    }
    if selection.wants(6) {
        rows.extend(api_cost::api_cost());
    }
    report::finish(&rows);
}
