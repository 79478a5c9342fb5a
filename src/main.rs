//! routed6d's command line: one binary for the daemon and the operator's commands.
//! `main` turns every failure into one line on stderr and a sysexits code.

use std::process::ExitCode;

use clap::Parser;

use routed6d::args::{Cli, Command};
use routed6d::cli::{self, Exit};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => Exit::Usage as u8,
            };
            if code == 0 {
                let _ = e.print();
            } else {
                // clap's own message is several lines; the first names what is wrong.
                let rendered = e.render().to_string();
                let first = rendered.lines().next().unwrap_or("invalid arguments");
                eprintln!(
                    "routed6d: {} (try 'routed6d --help')",
                    first.trim_start_matches("error: ")
                );
            }
            return ExitCode::from(code);
        }
    };

    let command = cli.command.unwrap_or(Command::Run);
    routed6d::logging::init(matches!(command, Command::Run));
    if std::env::var_os(routed6d::logging::PANIC_TEST_ENV).is_some() {
        // Proves the panic hook (tests/unprivileged/panic_hook.rs; the bench runs it on the
        // release binary, which aborts).
        panic!("deliberate panic ({})", routed6d::logging::PANIC_TEST_ENV);
    }

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("routed6d: cannot start the async runtime: {e}");
            return ExitCode::from(Exit::OsErr as u8);
        }
    };
    let path = cli.config;
    let result = runtime.block_on(async move {
        match command {
            Command::Run => cli::run(&path).await,
            Command::Once => cli::once(&path).await,
            Command::Plan => cli::plan(&path).await,
            Command::Status { json, offline } => cli::status(&path, json, offline).await,
            Command::CheckConfig => cli::check_config(&path),
            Command::Configured => cli::configured(&path),
            Command::RefreshNextHop => cli::refresh_next_hop(&path).await,
            Command::Release { yes } => cli::release(&path, yes).await,
            Command::WaitOnline { timeout } => cli::wait_online(&path, timeout).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("routed6d: {}", failure.message);
            ExitCode::from(failure.exit as u8)
        }
    }
}
