//! Writes the man page and the shell completions, generated from the same clap
//! definition the binary parses with, for the packages:
//! `cargo run --example gen_assets -- <dir>` (packaging/build.sh runs it).
//! A dev-only tool: clap_mangen and clap_complete stay out of the daemon's binary.

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;
use routed6d::args::Cli;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .unwrap_or_else(|| "target/assets".into()),
    );
    let completions = dir.join("completions");
    std::fs::create_dir_all(&completions)?;

    let mut command = Cli::command();
    command.build();
    // Section 8 (a daemon and administration command): routed6d(8), and one page per
    // subcommand, routed6d-run(8) …, which the main page refers to.
    let mut pages = vec![("routed6d".to_string(), command.clone())];
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("routed6d-{}", sub.get_name());
        // build() gave each subcommand the display name routed6d-<name>.
        pages.push((name, sub.clone()));
    }
    for (name, page_command) in pages {
        let mut page = Vec::new();
        clap_mangen::Man::new(page_command)
            .section("8")
            .render(&mut page)?;
        std::fs::write(dir.join(format!("{name}.8")), page)?;
    }

    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command, "routed6d", &completions)?;
    }
    println!(
        "wrote the man pages to {} and the completions to {}",
        dir.display(),
        completions.display()
    );
    Ok(())
}
