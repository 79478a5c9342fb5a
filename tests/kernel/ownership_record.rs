//! Address ownership without kernel address protocols (issue 13, point 3), proven on
//! this kernel by forcing the record (`address_ownership = "record"`): the real
//! `routed6d run` in the harness's VPS namespace removes exactly the addresses it added
//! on a prefix change, on withdraw and after a restart or a SIGKILL, never an address
//! that was there before it (its add found it: EEXIST), and a record of another boot
//! claims nothing. The prefix-change and withdraw tests run in both modes, the kernel's
//! IFA_PROTO ("auto" here) and the record, with the same assertions. Needs root;
//! without it each test says SKIPPED.

use crate::common;

use std::net::Ipv6Addr;

use common::{HOP1, HOP2, Harness, VPS_ID, has_address, host};
use ipnet::Ipv6Net;
use routed6d::config::Config;
use routed6d::kernel::Kernel;
use routed6d::kernel::netlink::NetlinkKernel;
use routed6d::model::DEFAULT_PROTOCOL;

fn skip(test: &str) -> bool {
    common::skip_unless_root("ownership_record", test)
}

/// The prefix the provider moves the VPS to.
fn moved() -> Ipv6Net {
    "2001:db8:43:200::/64".parse().expect("prefix")
}

fn moved_host(n: u16) -> Ipv6Addr {
    routed6d::desired::place_host(moved(), Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, n))
}

/// HostUp v2 with host parts ::1 and ::2, addresses owned per `mode` ("auto" or
/// "record"), the record in the harness's directory.
fn harness(tag: &str, mode: &str) -> Harness {
    let h = Harness::hostup(tag);
    h.edit_config(
        "[prefix]\n",
        "[prefix]\nmode = \"addresses\"\naddresses = [\"::1\", \"::2\"]\n",
    );
    // The record goes in the harness's own state_dir.
    h.add_key("daemon", &format!("address_ownership = \"{mode}\""));
    h
}

/// The addresses routed6d owns as routed6d itself judges them with the harness's
/// config (IFA_PROTO, or the record the daemon keeps), sorted.
fn owned_addresses(h: &Harness) -> Vec<Ipv6Addr> {
    let config = Config::load(&h.config).expect("config");
    let mut owned = h
        .testbed
        .vps
        .enter(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let mut kernel = NetlinkKernel::open(&config.daemon).await.expect("open");
                let state = kernel.observe(&[]).await.expect("observe");
                state
                    .addresses
                    .iter()
                    .filter(|a| a.protocol == DEFAULT_PROTOCOL)
                    .map(|a| a.address.addr)
                    .collect::<Vec<_>>()
            })
        })
        .expect("enter");
    owned.sort();
    owned
}

fn sorted(mut addrs: Vec<Ipv6Addr>) -> Vec<Ipv6Addr> {
    addrs.sort();
    addrs
}

/// Wait until routed6d owns exactly `want`.
fn wait_owned(h: &Harness, what: &str, want: &[Ipv6Addr]) {
    let want = sorted(want.to_vec());
    routed6d_sim::netns::wait_until(common::CONVERGE, || owned_addresses(h) == want)
        .unwrap_or_else(|| {
            panic!(
                "{what}: owned {:?}, want {want:?}\nlog:\n{}",
                owned_addresses(h),
                h.log()
            )
        });
}

/// An address as an operator adds it before routed6d runs (same flags as routed6d's).
fn add_by_hand(h: &Harness, addr: Ipv6Addr, dev: &str) {
    h.testbed
        .vps
        .ip(&[
            "-6",
            "addr",
            "add",
            &format!("{addr}/128"),
            "dev",
            dev,
            "nodad",
        ])
        .expect("ip addr add");
}

/// The provider moves the VPS to `moved()` via HOP2.
fn move_prefix(h: &Harness) {
    h.sim()
        .set_allocation(VPS_ID, moved(), HOP2)
        .expect("allocation");
}

fn record_text(h: &Harness) -> String {
    std::fs::read_to_string(h.dir.path().join("state/addresses.json")).unwrap_or_default()
}

/// With the record, nothing in the kernel carries routed6d's address protocol.
fn assert_unstamped(h: &Harness) {
    let stamped: Vec<Ipv6Addr> = h
        .kernel()
        .addresses
        .iter()
        .filter(|a| a.protocol == DEFAULT_PROTOCOL)
        .map(|a| a.address.addr)
        .collect();
    assert!(
        stamped.is_empty(),
        "IFA_PROTO sent in record mode: {stamped:?}"
    );
}

/// A prefix change removes routed6d's addresses of the old prefix and its old next hop,
/// and leaves ::1, which was on lo before routed6d started (its add found it there).
fn prefix_change_removes_only_what_routed6d_added(tag: &str, mode: &str) {
    let mut h = harness(tag, mode);
    add_by_hand(&h, host(1), "lo");
    h.start();
    wait_owned(&h, "programmed", &[host(2), HOP1]);
    assert!(has_address(&h.kernel(), host(1)));
    let line = if mode == "record" {
        "address ownership: a record at"
    } else {
        "address ownership: kernel address protocols (IFA_PROTO 126)"
    };
    assert_eq!(h.log_count(line), 1, "{}", h.log());
    if mode == "record" {
        assert_unstamped(&h);
        let text = record_text(&h);
        assert!(!text.contains(&format!("\"{}\"", host(1))), "{text}");
    }

    move_prefix(&h);
    wait_owned(&h, "moved", &[moved_host(1), moved_host(2), HOP2]);
    let kernel = h.kernel();
    assert!(!has_address(&kernel, host(2)), "old prefix's address left");
    assert!(!has_address(&kernel, HOP1), "old next hop left");
    assert!(
        has_address(&kernel, host(1)),
        "the address added by hand was removed"
    );
    h.assert_healthy();
}

#[test]
fn kernel_protocols_prefix_change_removes_only_what_routed6d_added() {
    if skip("kernel_prefix_change") {
        return;
    }
    prefix_change_removes_only_what_routed6d_added("ownk", "auto");
}

#[test]
fn record_prefix_change_removes_only_what_routed6d_added() {
    if skip("record_prefix_change") {
        return;
    }
    prefix_change_removes_only_what_routed6d_added("ownr", "record");
}

/// `on_stop = "withdraw"` removes routed6d's addresses and leaves the one added by hand.
fn withdraw_removes_only_what_routed6d_added(tag: &str, mode: &str) {
    let mut h = harness(tag, mode);
    h.add_key("daemon", "on_stop = \"withdraw\"");
    add_by_hand(&h, host(1), "lo");
    h.start();
    wait_owned(&h, "programmed", &[host(2), HOP1]);
    let status = h.stop_with(libc::SIGTERM);
    assert!(status.success(), "{status}\n{}", h.log());
    let kernel = h.kernel();
    assert!(!has_address(&kernel, host(2)), "{}", h.log());
    assert!(!has_address(&kernel, HOP1), "{}", h.log());
    assert!(
        has_address(&kernel, host(1)),
        "the address added by hand was removed"
    );
    if mode == "record" {
        let text = record_text(&h);
        assert!(text.contains("\"addresses\": []"), "{text}");
    }
}

#[test]
fn kernel_protocols_withdraw_removes_only_what_routed6d_added() {
    if skip("kernel_withdraw") {
        return;
    }
    withdraw_removes_only_what_routed6d_added("wdk", "auto");
}

#[test]
fn record_withdraw_removes_only_what_routed6d_added() {
    if skip("record_withdraw") {
        return;
    }
    withdraw_removes_only_what_routed6d_added("wdr", "record");
}

/// Stopped (on_stop = keep) and started again, then killed and started again: each new
/// process reads the record and still removes the addresses the earlier one added.
#[test]
fn record_ownership_survives_a_restart_and_a_sigkill() {
    if skip("record_restart") {
        return;
    }
    let mut h = harness("ownrs", "record");
    h.start();
    wait_owned(&h, "programmed", &[host(1), host(2), HOP1]);
    assert!(h.stop_with(libc::SIGTERM).success());
    assert!(has_address(&h.kernel(), host(1)), "on_stop = keep");
    h.start();
    h.wait_log("address ownership: a record at", 2);
    move_prefix(&h);
    wait_owned(
        &h,
        "moved after a restart",
        &[moved_host(1), moved_host(2), HOP2],
    );
    assert!(!has_address(&h.kernel(), host(1)));

    h.stop_with(libc::SIGKILL);
    h.start();
    h.wait_log("address ownership: a record at", 3);
    h.sim()
        .set_allocation(VPS_ID, common::prefix(), HOP1)
        .expect("allocation");
    wait_owned(&h, "moved back after a SIGKILL", &[host(1), host(2), HOP1]);
    let kernel = h.kernel();
    assert!(!has_address(&kernel, moved_host(1)), "{}", h.log());
    assert!(!has_address(&kernel, HOP2), "{}", h.log());
    h.assert_healthy();
}

/// The record written before a reboot (another boot id) claims nothing: the addresses
/// it names are left in place when the prefix moves.
#[test]
fn a_record_of_another_boot_claims_nothing() {
    if skip("record_other_boot") {
        return;
    }
    let mut h = harness("ownbt", "record");
    h.start();
    wait_owned(&h, "programmed", &[host(1), host(2), HOP1]);
    h.stop_with(libc::SIGKILL);
    let path = h.dir.path().join("state/addresses.json");
    let text = record_text(&h);
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot id");
    assert!(text.contains(boot_id.trim()), "{text}");
    std::fs::write(&path, text.replace(boot_id.trim(), "another-boot")).expect("rewrite");
    h.start();
    h.wait_log("written before the last reboot, so it claims nothing", 1);
    move_prefix(&h);
    wait_owned(&h, "moved", &[moved_host(1), moved_host(2), HOP2]);
    let kernel = h.kernel();
    for addr in [host(1), host(2), HOP1] {
        assert!(has_address(&kernel, addr), "{addr} removed\n{}", h.log());
    }
    h.assert_healthy();
}
