//! routed6d's command-line definition, in the library so that the man page and the
//! shell completions are generated from the same source as the parser.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::DEFAULT_CONFIG_PATH;

/// The whole command line.
#[derive(Parser, Debug)]
#[command(
    name = "routed6d",
    version,
    about = "Routed IPv6 for a VPS: asks the provider's API what is routed here and keeps the kernel in step",
    long_about = None
)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, short = 'c', global = true, value_name = "PATH", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do (`run` when none is given).
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon (the default).
    Run,
    /// Ask the provider once, make the kernel match, and exit (cron, debugging).
    Once,
    /// Show what would change, as `ip -6 …` lines; changes nothing.
    Plan,
    /// What the provider says, what the kernel has, what routed6d owns.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Only the kernel and the daemon's status file: no API call, no token.
        #[arg(long)]
        offline: bool,
    },
    /// Validate the configuration and the token file, then exit.
    CheckConfig,
    /// Ask the provider to re-read this host's next hop, then reconcile.
    RefreshNextHop,
    /// Give the routed prefix back to the provider and remove what routed6d owns.
    Release {
        /// Confirm: the provider starts a cooldown before another prefix can be had.
        #[arg(long)]
        yes: bool,
    },
    /// Wait until the daemon has programmed the routed prefix (what
    /// routed6d-online.target waits for at boot); exit 69 after the timeout.
    WaitOnline {
        /// How long to wait ("30s", "2m"; at most a day).
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = wait_timeout)]
        timeout: std::time::Duration,
    },
    /// For the unit's ExecCondition=: exit 78 while the provider's API key has not been
    /// written yet (systemd then skips the unit quietly), 0 otherwise; a broken
    /// configuration also exits 0, so that `run` refuses it with its line.
    #[command(hide = true)]
    Configured,
}

/// `wait-online --timeout`: a humane duration of at most a day, so that adding it to
/// the clock cannot overflow.
fn wait_timeout(text: &str) -> Result<std::time::Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration > std::time::Duration::from_secs(86_400) {
        return Err("longer than the maximum of 1d".into());
    }
    Ok(duration)
}
