//! `routed6d-demo` (root): routed6d's whole job on a simulated HostUp provider, in
//! throwaway network namespaces (see `routed6d_sim::demo`). Exits like routed6d: 0, or
//! one line on stderr and a sysexits code.

use std::process::ExitCode;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("routed6d-demo: cannot start the async runtime: {e}");
            return ExitCode::from(routed6d::cli::Exit::OsErr as u8);
        }
    };
    match runtime.block_on(routed6d_sim::demo::run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("routed6d-demo: {}", failure.message);
            ExitCode::from(failure.exit as u8)
        }
    }
}
