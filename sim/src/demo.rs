//! `routed6d-demo`: the whole job on a simulated HostUp provider, in throwaway network
//! namespaces — a provider router and a VPS joined by a veth. The simulated API runs
//! on the VPS's loopback and programs the router's route to the prefix through the
//! next hop, as the real provider does; routed6d runs in the VPS namespace as it would
//! on a real VPS. Then the provider moves the next hop, someone deletes an address,
//! and routed6d is stopped; everything is removed at the end.

use std::io::Write as _;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use ipnet::Ipv6Net;

use crate::api as sim;
use crate::netns::{self, Namespace, Testbed};
use routed6d::cli::{Exit, Failure};
use routed6d::model::{DEFAULT_PROTOCOL, ObservedState};

const VPS_ID: &str = "vps_01hxa3b4c5d6e7f8g9h0j1k2m3";
const TOKEN: &str = "demo-token-not-a-secret";
const PREFIX: &str = "2001:db8:42:100::/64";
const FIRST_HOP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
const SECOND_HOP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x20);
/// How long each step may take before the demo calls it a failure.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Names the daemon binary the demo runs; otherwise `routed6d` next to the demo's own.
pub const DAEMON_BIN_ENV: &str = "ROUTED6D_BIN";

/// The routed6d binary the demo runs: the shipped daemon, not a copy of it, so the demo
/// shows exactly what a VPS would run. Built next to the demo by
/// `cargo build --release --workspace`.
fn daemon_binary() -> Result<PathBuf, Failure> {
    let path = match std::env::var_os(DAEMON_BIN_ENV) {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()
            .map_err(fail)?
            .with_file_name("routed6d"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(Failure::new(
            Exit::Unavailable,
            format!(
                "demo needs the routed6d binary at {} (build both: cargo build --release --workspace, or set {DAEMON_BIN_ENV})",
                path.display()
            ),
        ))
    }
}

fn fail(message: impl std::fmt::Display) -> Failure {
    Failure::new(Exit::Software, format!("demo failed: {message}"))
}

/// Observe the kernel of `ns` through routed6d's own netlink layer.
pub fn observe_in(ns: &Namespace) -> Result<ObservedState, String> {
    ns.enter(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            use routed6d::kernel::Kernel;
            let mut kernel = routed6d::kernel::netlink::NetlinkKernel::new(DEFAULT_PROTOCOL)
                .map_err(|e| e.to_string())?;
            kernel.observe(&[]).await.map_err(|e| e.to_string())
        })
    })
    .map_err(|e| e.to_string())?
}

/// What routed6d owns in `state`, as `ip` text.
pub fn owned_lines(state: &ObservedState) -> Vec<String> {
    let addresses = state
        .addresses
        .iter()
        .filter(|a| a.protocol == DEFAULT_PROTOCOL)
        .map(|a| format!("addr  {}", a.address));
    let routes = state
        .routes
        .iter()
        .filter(|r| r.protocol == DEFAULT_PROTOCOL)
        .map(|r| format!("route {}", r.route));
    let proxies = state
        .proxies
        .iter()
        .filter(|p| p.protocol == DEFAULT_PROTOCOL)
        .map(|p| format!("proxy {} dev {}", p.proxy.addr, p.proxy.ifname));
    addresses.chain(routes).chain(proxies).collect()
}

fn has_owned_address(state: &ObservedState, addr: Ipv6Addr) -> bool {
    state
        .addresses
        .iter()
        .any(|a| a.protocol == DEFAULT_PROTOCOL && a.address.addr == addr)
}

/// `addr` is routed6d's and answers: the kernel adds an address's local route only in
/// the work that completes the address's setup, a moment after the address itself
/// shows, and until then a ping meets the prefix's unreachable route.
fn answers_at(state: &ObservedState, addr: Ipv6Addr) -> bool {
    has_owned_address(state, addr)
        && state.routes.iter().any(|r| {
            r.route.table == routed6d::model::TABLE_LOCAL
                && r.route.kind == routed6d::model::RouteKind::Local
                && r.route.dst.addr() == addr
        })
}

/// The daemon under demonstration; killed if the demo stops early.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_config(dir: &Path, port: u16) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let token = dir.join("token");
    std::fs::write(&token, TOKEN)?;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600))?;
    let config = dir.join("routed6d.toml");
    std::fs::write(
        &config,
        format!(
            "[provider]\nkind = \"hostup\"\nbase_url = \"http://127.0.0.1:{port}\"\n\
             token_file = \"{}\"\nvps_id = \"{VPS_ID}\"\npoll_interval = \"1s\"\n\n\
             [uplink]\ninterface = \"{}\"\n\n[prefix]\nmode = \"addresses\"\naddresses = [\"::1\"]\n\n\
             [daemon]\non_stop = \"withdraw\"\nstatus_file = \"{}\"\nstate_dir = \"{}\"\n",
            token.display(),
            netns::VPS_UPLINK,
            dir.join("status.json").display(),
            dir.join("state").display()
        ),
    )?;
    Ok(config)
}

fn say(line: impl std::fmt::Display) {
    println!("{line}");
    let _ = std::io::stdout().flush();
}

fn show_kernel(vps: &Namespace) -> Result<(), Failure> {
    let state = observe_in(vps).map_err(fail)?;
    say(format!(
        "      the VPS kernel now holds (protocol {DEFAULT_PROTOCOL} = routed6d's):"
    ));
    for line in owned_lines(&state) {
        say(format!("        {line}"));
    }
    Ok(())
}

fn ping(testbed: &Testbed, addr: Ipv6Addr) -> Result<(), Failure> {
    let rtt = testbed
        .ping_from_router(addr, Duration::from_secs(2))
        .map_err(fail)?;
    say(format!(
        "      ping {addr} from the provider router: reply in {:.2} ms",
        rtt.as_secs_f64() * 1000.0
    ));
    Ok(())
}

fn wait_for(what: &str, check: impl FnMut() -> bool) -> Result<Duration, Failure> {
    netns::wait_until(STEP_TIMEOUT, check)
        .ok_or_else(|| fail(format!("{what} did not happen within {STEP_TIMEOUT:?}")))
}

/// The demo with the routed6d binary next to this one (or named by `ROUTED6D_BIN`).
pub async fn run() -> Result<(), Failure> {
    if !netns::is_root() {
        return Err(Failure::new(
            Exit::NoPerm,
            "demo needs root: it creates network namespaces and programs their kernels (try: sudo target/release/routed6d-demo)",
        ));
    }
    run_with(&daemon_binary()?).await
}

/// The demo, running `exe` as the daemon. Every step checks what it shows and fails
/// the demo when the kernel does not get there within `STEP_TIMEOUT`.
pub async fn run_with(exe: &Path) -> Result<(), Failure> {
    let prefix: Ipv6Net = PREFIX.parse().map_err(fail)?;
    let served = routed6d::desired::place_host(prefix, Ipv6Addr::LOCALHOST);
    let unused = routed6d::desired::place_host(prefix, Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0x99));

    say("routed6d-demo: a simulated HostUp provider and a VPS, in two network namespaces\n");
    let testbed = Testbed::new("demo").map_err(fail)?;
    say(format!(
        "[1/6] provider router ({} {}/64) <-veth-> vps ({} {}/64, default via the router)",
        netns::ROUTER_LINK,
        netns::ROUTER_ADDR,
        netns::VPS_UPLINK,
        netns::VPS_ADDR
    ));

    // The API listens on the VPS's own loopback, as a provider's API is reachable from
    // the VPS; its router follows the allocation.
    let vps_addr4: std::net::IpAddr = netns::VPS_ADDR4.parse().map_err(fail)?;
    let state = sim::SimState::new(TOKEN).with_vps(sim::SimVps::new(VPS_ID, "demo", vps_addr4));
    let sim = netns::ProviderSim::start(&testbed, state).map_err(fail)?;
    sim.set_allocation(VPS_ID, prefix, FIRST_HOP)
        .map_err(fail)?;
    let allocation_id = sim
        .vps(VPS_ID)
        .and_then(|v| v.allocation)
        .map(|a| a.id)
        .unwrap_or_default();
    say(format!(
        "[2/6] simulated HostUp API on http://{} (inside the vps namespace): {allocation_id} routes {prefix} to next hop {FIRST_HOP}",
        sim.addr()
    ));

    let dir = tempfile::tempdir().map_err(fail)?;
    let config = write_config(dir.path(), sim.addr().port()).map_err(fail)?;
    say("[3/6] starting `routed6d run` in the vps namespace (poll every 1s, on_stop = withdraw)");
    let child = testbed
        .vps
        .command(&exe.display().to_string())
        .args(["run", "--config"])
        .arg(&config)
        .env("ROUTED6D_LOG", "info")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(fail)?;
    let mut daemon = Daemon(child);
    // The daemon's own log, indented under the step that caused it.
    if let Some(log) = daemon.0.stderr.take() {
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(log).lines().map_while(Result::ok) {
                say(format!("        routed6d| {line}"));
            }
        });
    }
    let took = wait_for("routing the prefix", || {
        observe_in(&testbed.vps)
            .is_ok_and(|s| has_owned_address(&s, served) && has_owned_address(&s, FIRST_HOP))
    })?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    say(format!(
        "      converged {:.0} ms after start",
        took.as_secs_f64() * 1000.0
    ));
    show_kernel(&testbed.vps)?;
    ping(&testbed, served)?;
    match testbed.ping_from_router(unused, Duration::from_secs(2)) {
        Err(netns::NetnsError::Ping { source, .. })
            if source.kind() == std::io::ErrorKind::HostUnreachable =>
        {
            say(format!(
                "      ping {unused} (unused): ICMPv6 destination unreachable, no loop back to the provider"
            ))
        }
        other => {
            return Err(fail(format!(
                "unused address {unused}: expected unreachable, got {other:?}"
            )));
        }
    }

    say(format!(
        "[4/6] the provider moves the next hop: {FIRST_HOP} -> {SECOND_HOP}"
    ));
    sim.set_next_hop(VPS_ID, SECOND_HOP).map_err(fail)?;
    let took = wait_for("the next-hop change", || {
        observe_in(&testbed.vps)
            .is_ok_and(|s| has_owned_address(&s, SECOND_HOP) && !has_owned_address(&s, FIRST_HOP))
    })?;
    say(format!(
        "      converged in {:.0} ms (poll interval 1s)",
        took.as_secs_f64() * 1000.0
    ));
    show_kernel(&testbed.vps)?;
    ping(&testbed, served)?;

    say(format!(
        "[5/6] someone deletes {served}/128 from lo by hand"
    ));
    testbed
        .vps
        .ip(&["-6", "addr", "del", &format!("{served}/128"), "dev", "lo"])
        .map_err(fail)?;
    let took = wait_for("the repair", || {
        observe_in(&testbed.vps).is_ok_and(|s| answers_at(&s, served))
    })?;
    say(format!(
        "      routed6d put it back in {:.0} ms, without asking the API",
        took.as_secs_f64() * 1000.0
    ));
    ping(&testbed, served)?;

    say("[6/6] stopping routed6d (SIGTERM, on_stop = withdraw)");
    let pid = nix::unistd::Pid::from_raw(daemon.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).map_err(fail)?;
    let status = daemon.0.wait().map_err(fail)?;
    let left = owned_lines(&observe_in(&testbed.vps).map_err(fail)?);
    say(format!(
        "      routed6d exited ({status}); objects it still owns: {}",
        left.len()
    ));
    drop(daemon);
    drop(sim);
    drop(testbed);
    say("\ndone: namespaces and temporary files removed.");
    if !status.success() || !left.is_empty() {
        return Err(fail("routed6d did not stop cleanly"));
    }
    Ok(())
}
