//! Where log lines go: the journal, with tracing fields kept as journal fields, when
//! routed6d runs as a service and the journal socket exists; stderr otherwise, without
//! timestamps when stderr is itself captured by journald (JOURNAL_STREAM).
//!
//! The release build aborts on panic (Cargo.toml), so nothing unwinds and nothing
//! after the panic runs: the panic hook installed here is the one chance to put the
//! panic in the journal, as an error line with its location.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Environment variable for the log level (error, warn, info, debug, trace).
pub const LEVEL_ENV: &str = "ROUTED6D_LOG";

/// Hidden trigger: when set, `routed6d` panics right after logging is set up, so a
/// test can prove a panic reaches the log before the release build aborts.
pub const PANIC_TEST_ENV: &str = "ROUTED6D_PANIC_FOR_TEST";

/// The log line for a panic: `panicked at src/x.rs:1:2: message`.
pub fn panic_line(
    location: Option<&std::panic::Location<'_>>,
    payload: &dyn std::any::Any,
) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    match location {
        Some(at) => format!(
            "panicked at {}:{}:{}: {message}",
            at.file(),
            at.line(),
            at.column()
        ),
        None => format!("panicked: {message}"),
    }
}

/// Log panics through the subscriber (journal or stderr) before the process aborts.
/// Without a subscriber (should not happen after `init`) the line goes to stderr.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let line = panic_line(info.location(), info.payload());
        if tracing::dispatcher::has_been_set() {
            tracing::error!(OP = "panic", "{line}");
        } else {
            eprintln!("routed6d: {line}");
        }
    }));
}

/// Install the global subscriber and the panic hook. `prefer_journal` is true for the
/// daemon; one-shot commands talk to the terminal.
pub fn init(prefer_journal: bool) {
    install_panic_hook();
    let level = std::env::var(LEVEL_ENV)
        .ok()
        .and_then(|v| v.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);

    if prefer_journal
        && std::path::Path::new("/run/systemd/journal/socket").exists()
        && let Ok(journal) = tracing_journald::layer()
    {
        // Changes are "info" to an operator: priority 6, not journald's default 5.
        let mut priorities = tracing_journald::PriorityMappings::new();
        priorities.info = tracing_journald::Priority::Informational;
        priorities.debug = tracing_journald::Priority::Debug;
        let journal = journal
            .with_field_prefix(None)
            .with_syslog_identifier("routed6d".into())
            .with_priority_mappings(priorities);
        tracing_subscriber::registry()
            .with(level)
            .with(journal)
            .init();
        return;
    }

    let to_journal_stream = std::env::var_os("JOURNAL_STREAM").is_some();
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false);
    if to_journal_stream {
        tracing_subscriber::registry()
            .with(level)
            .with(stderr.without_time())
            .init();
    } else {
        tracing_subscriber::registry()
            .with(level)
            .with(stderr)
            .init();
    }
}

#[cfg(test)]
mod tests {
    use super::panic_line;

    #[test]
    fn panic_line_names_location_and_message() {
        let at = std::panic::Location::caller();
        let text = panic_line(Some(at), &"boom");
        assert_eq!(
            text,
            format!(
                "panicked at {}:{}:{}: boom",
                at.file(),
                at.line(),
                at.column()
            )
        );
        assert_eq!(panic_line(None, &String::from("owned")), "panicked: owned");
        assert_eq!(panic_line(None, &42_u8), "panicked: (no message)");
    }
}
