//! The system tests: Debian booted under systemd-nspawn with routed6d installed from
//! its package, beside systemd-networkd and ifupdown, and the fleet's first boot; the
//! alerting rules under promtool from Debian's package (root; without it each says
//! SKIPPED).

#[path = "../common/debs.rs"]
mod debs;
#[path = "../common/nspawn.rs"]
mod nspawn;
#[path = "../common/promtool.rs"]
mod promtool;

mod cloud_init;
mod host_managers;
mod prometheus;
mod systemd_nspawn;
