//! The panic hook: a panic in `routed6d` is logged (as an error line with its
//! location) before the process dies. The release build aborts on panic, so this
//! line is all an operator would see in the journal.

use std::process::Command;

#[test]
fn a_panic_is_logged_before_the_process_dies() {
    let output = Command::new(env!("CARGO_BIN_EXE_routed6d"))
        .args(["check-config", "--config", "/nonexistent/routed6d.toml"])
        .env(routed6d::logging::PANIC_TEST_ENV, "1")
        .env_remove("JOURNAL_STREAM")
        .output()
        .expect("run routed6d");
    assert!(!output.status.success(), "a panic must not exit 0");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ERROR")
            && stderr.contains("panicked at src/main.rs")
            && stderr.contains("deliberate panic"),
        "the panic is not in the log:\n{stderr}"
    );
}
