//! The simulated HostUp API as a process of its own, for tests that run routed6d
//! somewhere a thread of the test cannot reach (a booted container) and for trying
//! routed6d without a provider account. It prints `listening on <addr>` once it serves;
//! everything else is driven through its `/_sim/` control API (see `routed6d_sim::api`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use routed6d_sim::api::{self as sim, SimState, SimVps};

/// Serve a simulated HostUp API v2.
#[derive(Parser, Debug)]
#[command(name = "routed6d-sim", version)]
struct Args {
    /// Where to listen (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// File holding the API token the simulation accepts.
    #[arg(long, value_name = "PATH")]
    token_file: PathBuf,
    /// A VPS of the account, as ID=PRIMARY_IP (repeatable).
    #[arg(long = "vps", value_name = "ID=IP", value_parser = parse_vps)]
    vpses: Vec<(String, IpAddr)>,
}

fn parse_vps(text: &str) -> Result<(String, IpAddr), String> {
    let (id, ip) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected ID=IP"))?;
    let ip = ip.parse().map_err(|e| format!("{ip:?}: {e}"))?;
    Ok((id.to_string(), ip))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let token = match std::fs::read_to_string(&args.token_file) {
        Ok(token) => token.trim().to_string(),
        Err(e) => {
            eprintln!("routed6d-sim: {}: {e}", args.token_file.display());
            return ExitCode::from(66);
        }
    };
    let state = args
        .vpses
        .iter()
        .fold(SimState::new(token), |state, (id, ip)| {
            state.with_vps(SimVps::new(id.clone(), id.clone(), *ip))
        });
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("routed6d-sim: cannot start the async runtime: {e}");
            return ExitCode::from(71);
        }
    };
    runtime.block_on(async {
        let handle = match sim::start_on(args.listen, state).await {
            Ok(handle) => handle,
            Err(e) => {
                eprintln!("routed6d-sim: cannot listen on {}: {e}", args.listen);
                return ExitCode::from(71);
            }
        };
        println!("listening on {}", handle.addr());
        let _ = tokio::signal::ctrl_c().await;
        ExitCode::SUCCESS
    })
}
