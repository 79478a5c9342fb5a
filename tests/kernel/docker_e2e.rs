//! Docker workloads end to end (issue 17, item 3), against Debian's real Docker engine
//! (`dockerd` 20.10 in the VPS namespace, `common/docker.rs`): static routes to the VPS,
//! a `kind = "docker"` workload, and a busybox container on the network routed6d
//! makes. The container answers a ping from the provider's router with no NAT; a
//! network removed by hand is made again; a network of the same name that routed6d
//! did not make is left alone; a restart keeps the network; a prefix change makes it
//! again with the container moved to the same offset (and its IPv4 address kept); and
//! `on_stop = "withdraw"` removes only routed6d's network. Needs root; without it the
//! test says SKIPPED.

use crate::common;
use crate::dockerd::{Dockerd, IMAGE};

use std::net::Ipv6Addr;
use std::time::Duration;

use crate::onlink_e2e::{heard_unsolicited, listen, owned_proxies};
use common::{CONVERGE, HOP1, Harness};
use ipnet::Ipv6Net;
use routed6d_sim::netns;

const OLD: &str = "2001:db8:42:100::/56";
const NEW: &str = "2001:db8:77:ff00::/56";
/// Slot 1 of each: the workload's sub-prefix.
const OLD_SUB: &str = "2001:db8:42:101::/64";
const NEW_SUB: &str = "2001:db8:77:ff01::/64";
/// The address Docker gives the first container (the gateway is ::1).
const OLD_ADDR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x42, 0x101, 0, 0, 0, 2);
const NEW_ADDR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x77, 0xff01, 0, 0, 0, 2);

fn net(text: &str) -> Ipv6Net {
    text.parse().expect("prefix")
}

fn provider(prefix: &str) -> String {
    format!(
        "kind = \"static\"\nroutes = [ {{ prefix = \"{prefix}\", next_hop = \"{HOP1}\" }} ]\npoll_interval = \"1h\""
    )
}

/// Wait until `docker network inspect` of `name` with `format` (a Go template) holds
/// `want`.
fn wait_network(h: &Harness, docker: &Dockerd, name: &str, format: &str, want: &str) {
    let got = netns::wait_until(CONVERGE, || {
        docker
            .format("network", name, format)
            .is_some_and(|text| text.contains(want))
    });
    assert!(
        got.is_some(),
        "network {name}: {format} is {:?}, not {want:?}\nlog:\n{}\ndockerd:\n{}",
        docker.format("network", name, format),
        h.log(),
        docker.log()
    );
}

const SUBNETS: &str = "{{range .IPAM.Config}}{{.Subnet}} {{end}}";

fn container_address(docker: &Dockerd, network: &str) -> (String, String) {
    let v6 = docker
        .format(
            "container",
            "c1",
            &format!("{{{{(index .NetworkSettings.Networks \"{network}\").GlobalIPv6Address}}}}"),
        )
        .unwrap_or_default();
    let v4 = docker
        .format(
            "container",
            "c1",
            &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
        )
        .unwrap_or_default();
    (v6, v4)
}

#[test]
fn a_docker_workload_is_routed_without_nat_and_follows_the_prefix() {
    if common::skip_unless_root("docker_e2e", "docker_workload") {
        return;
    }
    let mut h = Harness::new("dkr", None, |_| provider(OLD));
    h.testbed
        .route_prefix(net(OLD), Some(HOP1))
        .expect("router route");
    let docker = Dockerd::start(&h.testbed.vps);
    let text = std::fs::read_to_string(&h.config).expect("config");
    std::fs::write(
        &h.config,
        format!(
            "{text}[docker]\nsocket = \"{}\"\n[[workload]]\nname = \"web\"\nkind = \"docker\"\ndocker_network = \"web\"\nprefix_length = 64\n",
            docker.socket.display()
        ),
    )
    .expect("config");

    h.start();
    wait_network(&h, &docker, "web", SUBNETS, OLD_SUB);
    assert_eq!(
        docker
            .format(
                "network",
                "web",
                "{{index .Labels \"org.routed6d.protocol\"}} {{index .Options \"com.docker.network.bridge.name\"}} {{.EnableIPv6}}"
            )
            .as_deref(),
        Some("126 dk-web true"),
        "labelled routed6d's, on the bridge routed6d named"
    );
    let network_id = docker.format("network", "web", "{{.Id}}").expect("id");
    docker.docker(&[
        "run",
        "-d",
        "--name",
        "c1",
        "--network",
        "web",
        "--network-alias",
        "www",
        IMAGE,
        "sleep",
        "3600",
    ]);
    let (v6, _) = container_address(&docker, "web");
    assert_eq!(v6, OLD_ADDR.to_string());
    // Reached from the provider's side at its own address: routed, not translated.
    h.testbed
        .ping_from_router(OLD_ADDR, Duration::from_secs(10))
        .unwrap_or_else(|e| {
            panic!(
                "router → container {OLD_ADDR}: {e}\nvps:\n{}\n{}\nlog:\n{}",
                h.testbed.vps.ip(&["-6", "addr"]).unwrap_or_default(),
                h.testbed.vps.ip(&["-6", "route"]).unwrap_or_default(),
                h.log()
            )
        });
    let status = h.cli(&["status", "--offline"]);
    let status = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(
        status.contains("workload:  workload web (docker dk-web): slot 1 = 2001:db8:42:101::/64"),
        "{status}"
    );
    let shown = netns::wait_until(CONVERGE, || {
        let status = h.cli(&["status", "--offline"]);
        String::from_utf8_lossy(&status.stdout).contains(
            "docker:    web (workload web): 2001:db8:42:101::/64 on dk-web, 1 container(s)",
        )
    });
    assert!(
        shown.is_some(),
        "{}",
        String::from_utf8_lossy(&h.cli(&["status", "--offline"]).stdout)
    );

    // Drift: the network removed by hand (its container taken off first, as Docker
    // insists) is made again at once, from Docker's event, not at the next poll (1 h).
    docker.docker(&["network", "disconnect", "web", "c1"]);
    docker.docker(&["network", "rm", "web"]);
    wait_network(&h, &docker, "web", SUBNETS, OLD_SUB);
    docker.docker(&["network", "connect", "--alias", "www", "web", "c1"]);
    let network_id = {
        let again = docker.format("network", "web", "{{.Id}}").expect("id");
        assert_ne!(again, network_id, "made again");
        again
    };

    // A network of the name of a second workload that routed6d did not make: left
    // alone, said once.
    docker.docker(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "2001:db8:9999::/64",
        "db",
    ]);
    let foreign_id = docker.format("network", "db", "{{.Id}}").expect("id");
    let foreign = || docker.format("network", "db", &format!("{{{{.Id}}}} {SUBNETS}"));
    let foreign_before = foreign();
    let text = std::fs::read_to_string(&h.config).expect("config");
    std::fs::write(
        &h.config,
        text + "[[workload]]\nname = \"db\"\nkind = \"docker\"\ndocker_network = \"db\"\nprefix_length = 64\n",
    )
    .expect("config");
    h.kill(libc::SIGHUP);
    h.wait_log("a network named db exists and is not routed6d's", 1);
    assert_eq!(
        foreign(),
        foreign_before,
        "the operator's network is untouched"
    );

    // A restart keeps the network as it is: same id, no second "created".
    h.stop_with(libc::SIGTERM);
    assert_eq!(
        docker.format("network", "web", "{{.Id}}").as_deref(),
        Some(network_id.as_str()),
        "on_stop = keep leaves the network"
    );
    let created = h.log_count("docker: created network web");
    h.start();
    h.wait_log("a network named db exists and is not routed6d's", 2);
    assert_eq!(h.log_count("docker: created network web"), created);
    assert_eq!(
        docker.format("network", "web", "{{.Id}}").as_deref(),
        Some(network_id.as_str())
    );

    // The provider's prefix changes: the network is made again in the new sub-prefix,
    // the container moved to the same offset with the same IPv4 address.
    let old_v4_subnet = v4_subnet(&docker);
    let (_, v4) = container_address(&docker, "web");
    h.edit_config(OLD, NEW);
    h.testbed
        .route_prefix(net(NEW), Some(HOP1))
        .expect("router route");
    h.kill(libc::SIGHUP);
    wait_network(
        &h,
        &docker,
        "web",
        "{{range .IPAM.Config}}{{.Subnet}} {{end}}{{len .Containers}}",
        &format!("{old_v4_subnet} {NEW_SUB} 1"),
    );
    let (new_v6, new_v4) = container_address(&docker, "web");
    assert_eq!(
        new_v6,
        NEW_ADDR.to_string(),
        "the same offset in the new sub-prefix"
    );
    assert_eq!(new_v4, v4, "the IPv4 address is kept");
    let aliases = docker
        .format(
            "container",
            "c1",
            "{{json (index .NetworkSettings.Networks \"web\").Aliases}}",
        )
        .unwrap_or_default();
    assert!(aliases.contains("\"www\""), "the alias is kept: {aliases}");
    h.testbed
        .ping_from_router(NEW_ADDR, Duration::from_secs(10))
        .unwrap_or_else(|e| {
            panic!(
                "router → moved container {NEW_ADDR}: {e}\nlog:\n{}",
                h.log()
            )
        });
    assert!(
        h.log().contains("docker: container c1 is on network web again, at 2001:db8:77:ff01::2 (was 2001:db8:42:101::2)"),
        "{}",
        h.log()
    );

    // Withdrawing removes routed6d's network (its container disconnected, still
    // running) and leaves the operator's.
    let reloads = h.log_count("configuration reloaded");
    h.add_key("daemon", "on_stop = \"withdraw\"");
    h.kill(libc::SIGHUP);
    h.wait_log("configuration reloaded", reloads + 1);
    h.stop_with(libc::SIGTERM);
    assert_eq!(
        docker.format("network", "web", "{{.Id}}"),
        None,
        "{}",
        h.log()
    );
    assert_eq!(foreign(), foreign_before, "the operator's network stays");
    assert!(foreign_before.is_some_and(|f| f.starts_with(&foreign_id)));
    assert_eq!(
        docker
            .format("container", "c1", "{{.State.Running}}")
            .as_deref(),
        Some("true")
    );
    assert!(
        h.log()
            .contains("stopping: removed 1 Docker network(s) routed6d made"),
        "{}",
        h.log()
    );
}

/// The IPv4 subnet Docker chose for `web` (the first of IPAM.Config).
fn v4_subnet(docker: &Dockerd) -> String {
    docker
        .format(
            "network",
            "web",
            "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
        )
        .unwrap_or_default()
        .split_whitespace()
        .find(|s| !s.contains(':'))
        .unwrap_or_default()
        .to_string()
}

/// The on-link testbed's /64 (the router holds 2001:db8:1::1/64 on the link) and slot 1
/// of /80 in it.
const ONLINK_SUB: &str = "2001:db8:1:0:1::/80";
const ONLINK_ADDR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 1, 0, 0, 2);

#[test]
fn an_on_link_docker_container_is_answered_for_from_dockers_word() {
    if common::skip_unless_root("docker_e2e", "on_link_docker") {
        return;
    }
    // A poll an hour away: what follows comes from Docker's events, not from polls.
    let mut h = Harness::new("dko", None, |_| {
        "kind = \"onlink\"\npoll_interval = \"1h\"".to_string()
    });
    // Docker starts after routed6d, as it often does at boot: the socket the config
    // names appears only then (a link to the engine's own).
    let socket = h.dir.path().join("docker.sock");
    let text = std::fs::read_to_string(&h.config).expect("config");
    std::fs::write(
        &h.config,
        format!(
            "{text}[docker]\nsocket = \"{}\"\n[[workload]]\nname = \"web\"\nkind = \"docker\"\ndocker_network = \"web\"\nprefix_length = 80\n",
            socket.display()
        ),
    )
    .expect("config");
    h.start();
    h.wait_log("docker: cannot reach Docker at", 1);
    let docker = Dockerd::start(&h.testbed.vps);
    std::os::unix::fs::symlink(&docker.socket, &socket).expect("socket link");
    // Asked again after 1, 2, 4, 8 s: well within CONVERGE.
    wait_network(&h, &docker, "web", SUBNETS, ONLINK_SUB);
    assert_eq!(
        h.log_count("docker: cannot reach Docker at"),
        1,
        "said once while waiting\n{}",
        h.log()
    );
    assert_eq!(h.log_count("docker: reached Docker at"), 1, "{}", h.log());
    assert!(
        owned_proxies(&h.kernel()).is_empty(),
        "nobody uses an address yet"
    );

    // The container says nothing from its address: Docker's word alone gets it a proxy
    // entry, announced to the router unsolicited.
    let router_ears = listen(&h.testbed.router);
    docker.docker(&[
        "run",
        "-d",
        "--name",
        "c1",
        "--network",
        "web",
        IMAGE,
        "sleep",
        "3600",
    ]);
    assert_eq!(container_address(&docker, "web").0, ONLINK_ADDR.to_string());
    h.wait("a proxy entry for the container's address", |s| {
        owned_proxies(s) == [ONLINK_ADDR]
    });
    assert!(
        heard_unsolicited(&router_ears, ONLINK_ADDR, Duration::from_secs(5)),
        "the router heard no unsolicited advertisement for {ONLINK_ADDR}\nlog:\n{}",
        h.log()
    );
    h.testbed
        .ping_from_router(ONLINK_ADDR, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("router → container {ONLINK_ADDR}: {e}\nlog:\n{}", h.log()));

    // The container goes: so does its entry, on Docker's word (the bridge's neighbour
    // cache holds the address from the ping for minutes more).
    docker.docker(&["rm", "-f", "c1"]);
    h.wait("the proxy entry is withdrawn with the container", |s| {
        owned_proxies(s).is_empty()
    });
    h.assert_healthy();
}
