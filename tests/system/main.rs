//! The system tests: Debian booted under systemd-nspawn with routed6d installed from
//! its package, beside systemd-networkd and ifupdown (root; without it each says
//! SKIPPED).

#[path = "../common/nspawn.rs"]
mod nspawn;

mod host_managers;
mod systemd_nspawn;
