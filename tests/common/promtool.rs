//! promtool, Prometheus's own checker, for the tests of the Prometheus files: taken
//! from Debian's `prometheus` package without installing it (`apt-get download`, then
//! `dpkg-deb -x` into /var/cache/routed6d-systest), so no Prometheus server is set up
//! or started on the test machine. A `promtool` already on PATH is used as it is.

use std::path::{Path, PathBuf};
use std::process::Command;

const CACHE: &str = "/var/cache/routed6d-systest/promtool";

/// The promtool to run, fetched if needed; None (and a loud SKIPPED) when there is
/// none and this process may not install one.
pub fn promtool(test: &str) -> Option<PathBuf> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let on_path = Command::new("sh")
        .args(["-c", "command -v promtool"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if on_path.is_some() {
        return on_path;
    }
    let cached = Path::new(CACHE).join("usr/bin/promtool");
    if cached.exists() {
        return Some(cached);
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED (needs root to fetch promtool, or promtool on PATH): {test}");
        return None;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let unpacked = work.path().join("root");
    crate::debs::unpack("prometheus", &unpacked);
    std::fs::create_dir_all(Path::new(CACHE).parent().expect("parent")).expect("cache dir");
    // Another test binary may have won the race: its copy is as good.
    if std::fs::rename(&unpacked, CACHE).is_err() && !cached.exists() {
        panic!("cannot put promtool in {CACHE}");
    }
    Some(cached)
}
