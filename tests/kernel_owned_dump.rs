//! Real-kernel test of `observe_owned`: the kernel filters the route dump by
//! protocol (strict checking), so only routed6d's routes come back, while `observe`
//! still sees everyone's. Needs root; says SKIPPED otherwise.

use std::io::Write;
use std::process::Command;

use routed6d::kernel::Kernel;
use routed6d::kernel::netlink::NetlinkKernel;

const PROTO: u8 = 126;

fn ip(args: &str) {
    let output = Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .expect("run ip");
    assert!(
        output.status.success(),
        "ip {args}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn owned_dump_returns_only_our_routes_and_counts_requests() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let _ = writeln!(std::io::stderr(), "SKIPPED (needs root): kernel_owned_dump");
        return;
    }
    std::thread::spawn(|| {
        // SAFETY: unshare(CLONE_NEWNET) only moves this thread to a new namespace.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
        ip("link set lo up");
        ip("link add name v0 type veth peer name v1");
        ip("link set v0 up");
        ip(&format!(
            "-6 route add 2001:db8:1::/64 dev v0 proto {PROTO}"
        ));
        ip("-6 route add 2001:db8:2::/64 dev v0 proto static");
        ip(&format!(
            "-6 route add local 2001:db8:3::/64 dev lo table local proto {PROTO}"
        ));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let mut kernel = NetlinkKernel::new(PROTO).expect("netlink");
            let owned = kernel.observe_owned(&[], PROTO).await.expect("observe");
            let mut dsts: Vec<String> = owned
                .routes
                .iter()
                .map(|r| r.route.dst.to_string())
                .collect();
            dsts.sort();
            assert_eq!(dsts, ["2001:db8:1::/64", "2001:db8:3::/64"]);
            assert!(owned.routes.iter().all(|r| r.protocol == PROTO));
            let all = kernel.observe(&[]).await.expect("observe");
            assert!(
                all.routes
                    .iter()
                    .any(|r| r.route.dst.to_string() == "2001:db8:2::/64")
            );
            let counts = kernel.request_counts();
            assert_eq!(counts.writes, 0, "looking writes nothing");
            assert!(counts.dumps >= 4, "{counts:?}");
        });
    })
    .join()
    .expect("test thread");
}
