//! Where log lines go: the journal, with tracing fields kept as journal fields, when
//! routed6d runs as a service and the journal socket exists; stderr otherwise, without
//! timestamps when stderr is itself captured by journald (JOURNAL_STREAM).

use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Environment variable for the log level (error, warn, info, debug, trace).
pub const LEVEL_ENV: &str = "ROUTED6D_LOG";

/// Install the global subscriber. `prefer_journal` is true for the daemon; one-shot
/// commands talk to the terminal.
pub fn init(prefer_journal: bool) {
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
