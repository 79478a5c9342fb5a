//! Debian packages taken apart, not installed: `apt-get download` and `dpkg-deb -x`,
//! for tests that need a program (promtool, Docker) without its service being set up
//! or started on the test machine.

use std::path::Path;
use std::process::Command;

/// Download `packages` (space-separated) and unpack them all into `root`, which must
/// not exist yet.
pub fn unpack(packages: &str, root: &Path) {
    let work = tempfile::tempdir().expect("tempdir");
    let sh = |script: &str| {
        let out = Command::new("sh")
            .args(["-c", script])
            .current_dir(work.path())
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .expect("sh");
        assert!(
            out.status.success(),
            "{script}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // apt's download user must be able to write there.
    sh(&format!(
        "chmod 777 . && apt-get update -qq && apt-get download -qq {packages}"
    ));
    sh(&format!(
        "for deb in *.deb; do dpkg-deb -x \"$deb\" '{}'; done",
        root.display()
    ));
}
