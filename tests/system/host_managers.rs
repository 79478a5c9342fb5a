//! routed6d never breaks the host's own IPv6 (issue 13), proven against the real
//! network managers: systemd-networkd and ifupdown configure eth0 of a Debian container
//! booted by systemd-nspawn, the .deb's routed6d runs there with the default
//! `next_hop = "ensure"`, and the provider routes the prefix to the OS's own address.
//! The uplink is then flapped, reconfigured, restarted, slowly restored, rebooted,
//! renumbered at the provider and learned by SLAAC, and after each the host must be as
//! its manager made it: the OS's address (its prefix length, not routed6d's protocol),
//! the OS's default route, networkd's `configured`, and the routed prefix answering
//! ping from the provider's router.
//!
//! Topology: a private network namespace plays the provider's router; systemd-nspawn
//! runs inside it with `--network-veth-extra`, so the container's eth0 is a veth whose
//! other end (`r6d-vps`, 2001:db8:1::1/64) is the router's, and a reboot (nspawn started
//! again on the same root) plugs the same cable back in. The router routes the prefix
//! via the next hop, as the provider does; radvd runs there for SLAAC.
//!
//! Each manager gets one container and every scenario runs in it in sequence. A
//! scenario that fails is recorded, the host is put back by hand, and the next one
//! runs: the test fails at the end with a table of every scenario, so one run shows all
//! that is wrong. Needs root; without it, it says SKIPPED loudly.

use crate::nspawn;

use std::io::Write as _;
use std::net::Ipv6Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::Ipv6Net;
use nspawn::{Container, Network, Sim, TOKEN, VPS_ID, step};
use routed6d::model::{DEFAULT_PROTOCOL, ObservedState, RouteKind};
use routed6d_sim::demo::observe_in;
use routed6d_sim::netns::{self, Namespace};

/// The OS's own address on eth0; the provider's next hop in the static scenarios.
const OS_ADDR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
/// The router's end of the uplink, the OS's configured gateway.
const GATEWAY: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
const LINK_NET: &str = "2001:db8:1::/64";
const PREFIX_A: &str = "2001:db8:42:100::/64";
const PREFIX_B: &str = "2001:db8:42:200::/64";
/// The router's end of the container's eth0.
const HOST_SIDE: &str = "r6d-vps";
/// How long the host may take to be whole again after a scenario (issue 13).
const SETTLE: Duration = Duration::from_secs(10);
/// `[uplink] next_hop_grace` where a scenario wants routed6d to stand in quickly.
const SHORT_GRACE: Duration = Duration::from_secs(2);
/// routed6d's default `next_hop_grace`.
const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// A unit that binds a routed address at boot; it fails with EADDRNOTAVAIL when
/// started before routed6d has programmed the address (issue 13, part 5).
const BIND_SOCKET: &str = "[Unit]\nDescription=binds a routed address at boot\n\
    DefaultDependencies=no\nWants=routed6d-online.target\nAfter=routed6d-online.target\n\n\
    [Socket]\nListenStream=[2001:db8:42:100::1]:8080\n\n[Install]\nWantedBy=multi-user.target\n";
const BIND_SERVICE: &str = "[Service]\nExecStart=/bin/sleep infinity\n";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Manager {
    Networkd,
    Ifupdown,
}

/// How the uplink gets its address.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Addressing {
    /// 2001:db8:1::10/64, gateway 2001:db8:1::1.
    Static,
    /// SLAAC from radvd's advertisements; the default route via the router's
    /// link-local address.
    Slaac,
}

/// What the next hop's address must be once a scenario has settled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    /// The OS's: /64, not protocol 126, with the OS's default route.
    Os,
    /// routed6d's stand-in: the OS's prefix length, protocol 126.
    StandIn,
}

/// What may happen at the next hop while a scenario runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Watch {
    /// The manager restores its address within the grace: routed6d never puts
    /// anything there, not even for a moment.
    NoStandIn,
    /// routed6d may stand in, but not before this long after the action started.
    NotBefore(Duration),
    /// Not watched (a reboot changes the namespace under the watcher).
    Nothing,
}

/// A process killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One container with its manager, routed6d, the simulated provider and the router.
/// Fields drop in declaration order: processes first, then namespaces, then the disk.
struct Bed {
    manager: Manager,
    radvd: Option<Guard>,
    sim: Option<Sim>,
    vps: Option<Arc<Namespace>>,
    container: Option<Container>,
    router: Namespace,
    scratch: tempfile::TempDir,
    root: tempfile::TempDir,
    port: u16,
    prefix: Ipv6Net,
    next_hop: Ipv6Addr,
    addressing: Addressing,
    results: Vec<(String, Result<Duration, String>)>,
}

impl Bed {
    fn new(manager: Manager, template: &Path, deb: &Path) -> Bed {
        let tag = match manager {
            Manager::Networkd => "nd",
            Manager::Ifupdown => "if",
        };
        let router = Namespace::create(&format!("r6d-mgr-{tag}-{}", std::process::id()))
            .expect("the router's namespace");
        let mut bed = Bed {
            manager,
            radvd: None,
            sim: None,
            vps: None,
            container: None,
            router,
            scratch: tempfile::tempdir().expect("tempdir"),
            root: nspawn::copy_root(template),
            port: 0,
            prefix: PREFIX_A.parse().expect("prefix"),
            next_hop: OS_ADDR,
            addressing: Addressing::Static,
            results: Vec::new(),
        };
        std::fs::write(bed.scratch.path().join("token"), TOKEN).expect("sim token");
        bed.write_manager_config(Addressing::Static, 0);
        step(&format!("{manager:?}: booting the container"));
        bed.boot();
        let c = bed.container();
        if manager == Manager::Networkd {
            // The root is ifupdown's by default; this container is networkd's alone.
            c.sh(
                "systemctl disable --now networking.service && systemctl enable --now \
                 systemd-networkd.socket systemd-networkd.service \
                 systemd-networkd-wait-online.service",
            );
        }
        step(&format!("{manager:?}: dpkg -i and configure routed6d"));
        std::fs::copy(deb, c.path("/root/routed6d.deb")).expect("copy the .deb");
        c.sh("dpkg -i /root/routed6d.deb");
        c.sh(&format!(
            "umask 077 && printf %s '{TOKEN}' > /etc/routed6d/token"
        ));
        bed.write_config(None);
        bed.container().systemctl("start");
        bed
    }

    fn container(&self) -> &Container {
        self.container.as_ref().expect("a running container")
    }

    fn vps(&self) -> &Arc<Namespace> {
        self.vps.as_ref().expect("the container's namespace")
    }

    fn sim(&self) -> &Sim {
        self.sim.as_ref().expect("the simulated provider")
    }

    /// Start nspawn on the root, plug the router's end of the cable in, start the
    /// provider on the container's loopback (on the port routed6d's config names), and
    /// wait until the container has booted.
    fn boot(&mut self) {
        let container = Container::launch(
            self.root.path(),
            Network::VethIn {
                router: &self.router,
                host_side: HOST_SIDE,
            },
        );
        let vps = Arc::new(
            Namespace::attach(&format!("{}-vps", self.router.name), container.leader)
                .expect("name the container's namespace"),
        );
        let plugged = netns::wait_until(Duration::from_secs(10), || {
            self.router.ip(&["link", "set", HOST_SIDE, "up"]).is_ok()
        });
        assert!(
            plugged.is_some(),
            "no {HOST_SIDE} in the router's namespace"
        );
        self.router
            .ip(&[
                "-6",
                "addr",
                "replace",
                &format!("{GATEWAY}/64"),
                "dev",
                HOST_SIDE,
                "nodad",
            ])
            .expect("the router's address");
        let sim = Sim::start_on(
            &container,
            vps.clone(),
            &self.scratch.path().join("token"),
            self.port,
        );
        self.port = sim.addr.port();
        self.container = Some(container);
        self.vps = Some(vps);
        self.sim = Some(sim);
        // Before routed6d's first poll: the provider has answered this from the start.
        self.allocate(self.prefix, self.next_hop);
        self.container().wait_booted();
    }

    /// The provider routes `prefix` to `next_hop`: its API says so and its router
    /// forwards there.
    fn allocate(&mut self, prefix: Ipv6Net, next_hop: Ipv6Addr) {
        self.sim().control(
            "POST",
            &format!("/_sim/vps/{VPS_ID}/allocation"),
            &format!("{{\"prefix\":\"{prefix}\",\"nextHop\":\"{next_hop}\"}}"),
        );
        for old in [self.prefix, prefix] {
            let _ = self.router.ip(&["-6", "route", "del", &old.to_string()]);
        }
        // onlink: the route must exist while the cable is unplugged too.
        self.router
            .ip(&[
                "-6",
                "route",
                "replace",
                &prefix.to_string(),
                "via",
                &next_hop.to_string(),
                "dev",
                HOST_SIDE,
                "onlink",
            ])
            .expect("the router's route to the prefix");
        self.prefix = prefix;
        self.next_hop = next_hop;
    }

    /// The address routed6d serves in the current prefix (`addresses = ["::1"]`).
    fn served(&self) -> Ipv6Addr {
        let mut octets = self.prefix.network().octets();
        octets[15] = 1;
        Ipv6Addr::from(octets)
    }

    /// routed6d's configuration; `grace` sets `[uplink] next_hop_grace`.
    fn config(&self, grace: Option<Duration>) -> String {
        let grace = grace
            .map(|g| format!("next_hop_grace = \"{}s\"\n", g.as_secs()))
            .unwrap_or_default();
        format!(
            "[provider]\nkind = \"hostup\"\nbase_url = \"http://127.0.0.1:{}\"\n\
             vps_id = \"{VPS_ID}\"\npoll_interval = \"1s\"\n\n[uplink]\ninterface = \"eth0\"\n\
             {grace}\n[prefix]\nmode = \"addresses\"\naddresses = [\"::1\"]\n\n\
             [daemon]\non_stop = \"keep\"\n",
            self.port
        )
    }

    fn write_config(&self, grace: Option<Duration>) {
        // Written in place: the packaged file's mode (0640 root) stays.
        std::fs::write(
            self.root.path().join("etc/routed6d/routed6d.toml"),
            self.config(grace),
        )
        .expect("config");
    }

    /// Write the config and make the running daemon take it; an error when it refuses.
    fn reconfigure_routed6d(&self, grace: Option<Duration>) -> Result<(), String> {
        self.write_config(grace);
        let c = self.container();
        let check = c.exec(&["routed6d", "check-config"]);
        if !check.status.success() {
            return Err(format!(
                "routed6d refuses the config: {}",
                String::from_utf8_lossy(&check.stderr).trim()
            ));
        }
        let reloads = || {
            c.journal()
                .iter()
                .filter(|e| {
                    e.get("MESSAGE")
                        .and_then(|m| m.as_str())
                        .is_some_and(|m| m.starts_with("configuration reloaded"))
                })
                .count()
        };
        let before = reloads();
        c.systemctl("reload");
        netns::wait_until(SETTLE, || reloads() > before)
            .map(|_| ())
            .ok_or_else(|| "routed6d did not reload its configuration".to_string())
    }

    /// The manager's configuration of eth0. `delay`: ifupdown brings the link up and
    /// waits this many seconds before adding its address (a slow manager).
    fn write_manager_config(&self, addressing: Addressing, delay: u32) {
        let root = self.root.path();
        match (self.manager, addressing) {
            (Manager::Networkd, Addressing::Static) => write(
                &root.join("etc/systemd/network/10-eth0.network"),
                &format!(
                    "[Match]\nName=eth0\n\n[Network]\nAddress={OS_ADDR}/64\n\
                     Gateway={GATEWAY}\nIPv6AcceptRA=no\n"
                ),
            ),
            (Manager::Networkd, Addressing::Slaac) => write(
                &root.join("etc/systemd/network/10-eth0.network"),
                "[Match]\nName=eth0\n\n[Network]\nIPv6AcceptRA=yes\n",
            ),
            (Manager::Ifupdown, Addressing::Static) => {
                let slow = if delay > 0 {
                    format!("    pre-up ip link set dev eth0 up\n    pre-up sleep {delay}\n")
                } else {
                    String::new()
                };
                write(
                    &root.join("etc/network/interfaces"),
                    &format!(
                        "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet6 static\n\
                         {slow}    address {OS_ADDR}/64\n    gateway {GATEWAY}\n"
                    ),
                )
            }
            (Manager::Ifupdown, Addressing::Slaac) => write(
                &root.join("etc/network/interfaces"),
                "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet6 auto\n",
            ),
        }
    }

    /// Everything wrong with the host right now, for `expect`; empty when it is whole.
    fn problems(&self, state: &ObservedState, expect: Expect) -> Vec<String> {
        let mut problems = Vec::new();
        let Some(eth0) = state.link_by_name("eth0").map(|l| l.index) else {
            return vec!["no eth0".into()];
        };
        let at_hop: Vec<_> = state
            .addresses
            .iter()
            .filter(|a| a.address.addr == self.next_hop)
            .collect();
        let (want_len, mine) = (64, expect == Expect::StandIn);
        match at_hop.as_slice() {
            [] => problems.push(format!("no address {} on eth0", self.next_hop)),
            [a] => {
                if a.address.ifindex != eth0 {
                    problems.push(format!("{} is on {}", self.next_hop, a.address.ifname));
                }
                if a.address.prefix_len != want_len {
                    problems.push(format!(
                        "{}/{} (want /{want_len}, the OS's prefix length)",
                        self.next_hop, a.address.prefix_len
                    ));
                }
                if mine && a.protocol != DEFAULT_PROTOCOL {
                    problems.push(format!(
                        "{} has protocol {} (want routed6d's stand-in, {DEFAULT_PROTOCOL})",
                        self.next_hop, a.protocol
                    ));
                }
                if !mine && a.protocol == DEFAULT_PROTOCOL {
                    problems.push(format!(
                        "{}/{} is routed6d's (protocol {DEFAULT_PROTOCOL}), not the OS's",
                        self.next_hop, a.address.prefix_len
                    ));
                }
            }
            more => problems.push(format!("{} addresses {}", more.len(), self.next_hop)),
        }
        let link_net: Ipv6Net = LINK_NET.parse().expect("net");
        let on_link = state.routes.iter().any(|r| {
            r.route.dst == link_net
                && r.route.kind == RouteKind::Unicast
                && r.route.ifindex == Some(eth0)
        });
        if !on_link {
            problems.push(format!("no on-link route {LINK_NET} dev eth0"));
        }
        if expect == Expect::Os {
            let default = state.routes.iter().any(|r| {
                r.route.dst.prefix_len() == 0
                    && r.route.ifindex == Some(eth0)
                    && match r.route.kind {
                        RouteKind::Via { gateway, .. } => match self.addressing {
                            Addressing::Static => gateway == GATEWAY,
                            Addressing::Slaac => gateway.is_unicast_link_local(),
                        },
                        _ => false,
                    }
            });
            if !default {
                problems.push(match self.addressing {
                    Addressing::Static => format!("no default route via {GATEWAY} dev eth0"),
                    Addressing::Slaac => "no default route via the router's link-local".into(),
                });
            }
        }
        let served = self.served();
        let owned_served: Vec<Ipv6Addr> = state
            .addresses
            .iter()
            .filter(|a| a.protocol == DEFAULT_PROTOCOL && a.address.ifname == "lo")
            .map(|a| a.address.addr)
            .collect();
        if owned_served != [served] {
            problems.push(format!(
                "routed6d's addresses on lo are {owned_served:?}, want [{served}]"
            ));
        }
        if problems.is_empty() && expect == Expect::Os && self.manager == Manager::Networkd {
            let list =
                self.container()
                    .exec(&["networkctl", "list", "--no-pager", "--no-legend", "eth0"]);
            let list = String::from_utf8_lossy(&list.stdout);
            if !list.split_whitespace().any(|w| w == "configured") {
                problems.push(format!("networkctl list: {}", list.trim()));
            }
        }
        if problems.is_empty() {
            let pinged = self
                .router
                .enter(move || netns::ping6(served, Duration::from_millis(500)))
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            if let Err(e) = pinged {
                problems.push(format!("ping {served} from the router: {e}"));
            }
        }
        problems
    }

    /// Run one scenario: `action` while the next hop is watched, then wait until the
    /// host is as `expect` says (within SETTLE, plus the grace for a stand-in).
    fn scenario(
        &mut self,
        name: &str,
        expect: Expect,
        watch: Watch,
        action: impl FnOnce(&Bed) -> Result<(), String> + Send,
    ) -> bool {
        step(&format!("{:?}: {name}", self.manager));
        let started = Instant::now();
        let mut seen: Option<(Duration, String)> = None;
        let outcome = std::thread::scope(|scope| {
            let this = &*self;
            let acting = scope.spawn(move || action(this));
            // Sample the next hop while the action runs: a stand-in that the manager
            // later merges away is invisible once everything has settled.
            while !acting.is_finished() {
                if watch != Watch::Nothing {
                    self.note_stand_in(started, &mut seen);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let acted = acting
                .join()
                .unwrap_or_else(|_| Err("the action panicked".into()));
            let limit = match expect {
                Expect::Os => SETTLE,
                Expect::StandIn => SETTLE + SHORT_GRACE.max(DEFAULT_GRACE),
            };
            let settle_start = Instant::now();
            let mut last = Vec::new();
            loop {
                if let Ok(state) = observe_in(self.vps()) {
                    if watch != Watch::Nothing {
                        record_stand_in(&state, self.next_hop, started, &mut seen);
                    }
                    last = self.problems(&state, expect);
                    if last.is_empty() {
                        break;
                    }
                }
                if settle_start.elapsed() > limit {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let mut failures = Vec::new();
            if let Err(e) = acted {
                failures.push(format!("the action failed: {e}"));
            }
            if !last.is_empty() {
                failures.push(format!("not within {limit:?}: {}", last.join("; ")));
            }
            match (watch, &seen) {
                (Watch::NoStandIn, Some((at, what))) => failures.push(format!(
                    "routed6d put {what} at the OS's address {at:.1?} into the scenario"
                )),
                (Watch::NotBefore(grace), Some((at, what)))
                    if *at + Duration::from_millis(300) < grace =>
                {
                    failures.push(format!(
                        "routed6d stood in with {what} after {at:.1?}, before the grace \
                         of {grace:?}"
                    ))
                }
                _ => {}
            }
            if failures.is_empty() {
                Ok(settle_start.elapsed())
            } else {
                Err(failures.join("\n      "))
            }
        });
        let passed = outcome.is_ok();
        match &outcome {
            Ok(took) => step(&format!("  ok, settled {took:.1?} after the action")),
            Err(e) => {
                step(&format!("  FAILED: {e}"));
                self.dump();
            }
        }
        self.results
            .push((format!("{:?}: {name}", self.manager), outcome));
        passed
    }

    fn note_stand_in(&self, started: Instant, seen: &mut Option<(Duration, String)>) {
        if let Ok(state) = observe_in(self.vps()) {
            record_stand_in(&state, self.next_hop, started, seen);
        }
    }

    /// What the kernel and the manager show, for a failed scenario's report.
    fn dump(&self) {
        let mut text = String::from("      kernel (netlink):\n");
        if let Ok(state) = observe_in(self.vps()) {
            for a in &state.addresses {
                if a.address.ifname == "eth0" || a.protocol == DEFAULT_PROTOCOL {
                    text += &format!(
                        "        addr {}/{} dev {} proto {}\n",
                        a.address.addr, a.address.prefix_len, a.address.ifname, a.protocol
                    );
                }
            }
            for r in &state.routes {
                if r.route.table == 254 {
                    text += &format!("        route {} proto {}\n", r.route, r.protocol);
                }
            }
        }
        let c = self.container();
        let show = |args: &[&str]| {
            let out = c.exec(args);
            String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
        };
        if self.manager == Manager::Networkd {
            text += &format!(
                "      networkctl list:\n{}",
                show(&["networkctl", "list", "--no-pager"])
            );
        }
        text += &format!(
            "      routed6d's journal (last lines):\n{}",
            show(&[
                "journalctl",
                "-u",
                "routed6d",
                "-n",
                "12",
                "--no-pager",
                "-o",
                "cat"
            ])
        );
        let _ = writeln!(std::io::stderr(), "{text}");
    }

    /// Put the host back after a failed scenario, as an operator would: routed6d
    /// stopped (keeping its objects), the manager's address cleared and configured
    /// afresh, routed6d started. False when even that does not make it whole.
    fn reset(&mut self) -> bool {
        step(&format!(
            "{:?}: putting the host back by hand",
            self.manager
        ));
        let c = self.container();
        let _ = c.exec(&["systemctl", "stop", "routed6d.service"]);
        let script = match (self.manager, self.addressing) {
            // A restart clears networkd's `failed` state of the link.
            (Manager::Networkd, _) => {
                "ip -6 addr flush dev eth0 scope global; systemctl restart systemd-networkd; \
                 networkctl reconfigure eth0"
            }
            (Manager::Ifupdown, _) => {
                "ifdown --force eth0; ip -6 addr flush dev eth0 scope global; ifup eth0"
            }
        };
        let _ = c.exec(&["sh", "-c", script]);
        let _ = c.exec(&["systemctl", "start", "routed6d.service"]);
        let whole = netns::wait_until(SETTLE + DEFAULT_GRACE, || {
            observe_in(self.vps()).is_ok_and(|s| self.problems(&s, Expect::Os).is_empty())
        });
        if whole.is_none() {
            step("  the host could not be put back; the remaining scenarios are skipped");
            self.dump();
        }
        whole.is_some()
    }

    /// Run a scenario; after a failure, put the host back so the next one starts from
    /// a whole host. False when the host cannot be put back (stop there).
    fn run(
        &mut self,
        name: &str,
        expect: Expect,
        watch: Watch,
        action: impl FnOnce(&Bed) -> Result<(), String> + Send,
    ) -> bool {
        self.scenario(name, expect, watch, action) || self.reset()
    }

    /// A clean reboot of the container and a fresh boot of the same root.
    fn reboot(&mut self) {
        self.sim = None;
        if let Some(container) = self.container.take() {
            container.reboot();
        }
        self.vps = None;
        self.boot();
    }

    /// radvd on the router's end of the cable, advertising the link's /64.
    fn start_radvd(&mut self) {
        let conf = self.scratch.path().join("radvd.conf");
        write(
            &conf,
            &format!(
                "interface {HOST_SIDE} {{\n  AdvSendAdvert on;\n  MinRtrAdvInterval 3;\n  \
                 MaxRtrAdvInterval 6;\n  prefix {LINK_NET} {{\n    AdvOnLink on;\n    \
                 AdvAutonomous on;\n  }};\n}};\n"
            ),
        );
        // A router that does not forward advertises itself as no default router.
        self.router
            .command("sysctl")
            .args(["-qw", "net.ipv6.conf.all.forwarding=1"])
            .status()
            .expect("sysctl");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.router.name))
            .args([
                "--",
                "radvd",
                "--nodaemon",
                "--logmethod",
                "stderr",
                "--config",
            ])
            .arg(&conf)
            .arg("--pidfile")
            .arg(self.scratch.path().join("radvd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("radvd");
        self.radvd = Some(Guard(child));
    }

    /// The address SLAAC makes on eth0 (EUI-64 of its MAC, the default of the kernel
    /// and of networkd).
    fn slaac_address(&self) -> Ipv6Addr {
        let mac = self.container().sh("cat /sys/class/net/eth0/address");
        let bytes: Vec<u8> = mac
            .trim()
            .split(':')
            .map(|b| u8::from_str_radix(b, 16).expect("MAC"))
            .collect();
        let mut octets = LINK_NET.parse::<Ipv6Net>().expect("net").network().octets();
        octets[8] = bytes[0] ^ 0x02;
        octets[9] = bytes[1];
        octets[10] = bytes[2];
        octets[11] = 0xff;
        octets[12] = 0xfe;
        octets[13] = bytes[3];
        octets[14] = bytes[4];
        octets[15] = bytes[5];
        Ipv6Addr::from(octets)
    }

    /// The table printed at the end, and whether every scenario passed.
    fn report(&self) -> (String, bool) {
        let mut text = String::new();
        for (name, outcome) in &self.results {
            match outcome {
                Ok(took) => text += &format!("  PASS  {name} (settled in {took:.1?})\n"),
                Err(e) => text += &format!("  FAIL  {name}\n      {e}\n"),
            }
        }
        (text, self.results.iter().all(|(_, o)| o.is_ok()))
    }
}

/// Remember the first time a routed6d-owned address sits at the next hop.
fn record_stand_in(
    state: &ObservedState,
    next_hop: Ipv6Addr,
    started: Instant,
    seen: &mut Option<(Duration, String)>,
) {
    if seen.is_some() {
        return;
    }
    if let Some(a) = state
        .addresses
        .iter()
        .find(|a| a.address.addr == next_hop && a.protocol == DEFAULT_PROTOCOL)
    {
        *seen = Some((
            started.elapsed(),
            format!("{}/{}", a.address.addr, a.address.prefix_len),
        ));
    }
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("dir");
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Run `script` in the container; an error with its output when it fails.
fn sh(bed: &Bed, script: &str) -> Result<(), String> {
    let out = bed.container().exec(&["sh", "-c", script]);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{script}`: {}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Wait (in an action) until routed6d has programmed `addr` on lo: it reconciled.
fn wait_served(bed: &Bed, addr: Ipv6Addr) -> Result<(), String> {
    netns::wait_until(SETTLE, || {
        observe_in(bed.vps()).is_ok_and(|s| {
            s.addresses
                .iter()
                .any(|a| a.protocol == DEFAULT_PROTOCOL && a.address.addr == addr)
        })
    })
    .map(|_| ())
    .ok_or_else(|| format!("routed6d did not program {addr} within {SETTLE:?}"))
}

fn ensure_everything() -> (std::path::PathBuf, std::path::PathBuf) {
    nspawn::ensure_tools(&[
        ("/usr/sbin/debootstrap", "debootstrap"),
        ("/usr/bin/systemd-nspawn", "systemd-container"),
        ("/usr/sbin/radvd", "radvd"),
    ]);
    (nspawn::debian_root(), nspawn::build_package("deb"))
}

/// One container at a time: each is timing-sensitive and the machine has two cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn skipped(test: &str) -> bool {
    if netns::is_root() {
        return false;
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED (needs root for systemd-nspawn and network namespaces): host_managers::{test}"
    );
    true
}

/// The scenarios that restore the OS's address, then the reboot, a renumbering at the
/// provider during a flap, and SLAAC: the manager-specific parts are the closures.
fn common_tail(bed: &mut Bed, flap_down: &'static str, flap_up: &'static str) -> bool {
    // Part 5: a unit that binds the routed address at boot, ordered after
    // routed6d-online.target.
    write(
        &bed.root
            .path()
            .join("etc/systemd/system/bind-routed.socket"),
        BIND_SOCKET,
    );
    write(
        &bed.root
            .path()
            .join("etc/systemd/system/bind-routed.service"),
        BIND_SERVICE,
    );
    bed.container()
        .sh("systemctl daemon-reload && systemctl enable bind-routed.socket");
    step(&format!("{:?}: rebooting the container", bed.manager));
    bed.reboot();
    let rebooted = bed.scenario("reboot", Expect::Os, Watch::Nothing, |_| Ok(()));
    let c = bed.container();
    let socket = c.exec(&["systemctl", "is-active", "bind-routed.socket"]);
    let socket = String::from_utf8_lossy(&socket.stdout).trim().to_string();
    let target = c.exec(&["systemctl", "is-active", "routed6d-online.target"]);
    let target = String::from_utf8_lossy(&target.stdout).trim().to_string();
    let bound = if socket == "active" {
        Ok(Duration::ZERO)
    } else {
        let status = c.exec(&["systemctl", "status", "--no-pager", "bind-routed.socket"]);
        Err(format!(
            "bind-routed.socket is {socket:?} after the reboot (routed6d-online.target: \
             {target:?}):\n{}",
            String::from_utf8_lossy(&status.stdout)
        ))
    };
    step(&format!(
        "  bind-routed.socket {socket}, routed6d-online.target {target}"
    ));
    bed.results.push((
        format!(
            "{:?}: reboot: a unit bound to the routed address is active",
            bed.manager
        ),
        bound,
    ));
    if !rebooted && !bed.reset() {
        return false;
    }

    let (a, b): (Ipv6Net, Ipv6Net) = (
        PREFIX_A.parse().expect("prefix"),
        PREFIX_B.parse().expect("prefix"),
    );
    let served_b = {
        let mut octets = b.network().octets();
        octets[15] = 1;
        Ipv6Addr::from(octets)
    };
    sh(bed, flap_down).expect("take the uplink down");
    bed.allocate(b, OS_ADDR);
    let renumbered = bed.run(
        "the provider renumbers to 2001:db8:42:200::/64 during the flap",
        Expect::Os,
        Watch::NoStandIn,
        |bed| {
            wait_served(bed, served_b)?;
            sh(bed, flap_up)
        },
    );
    if !renumbered {
        return false;
    }
    // Back to the first prefix, for what follows.
    bed.allocate(a, OS_ADDR);
    if !bed.run(
        "the provider moves back",
        Expect::Os,
        Watch::NoStandIn,
        |bed| wait_served(bed, bed.served()),
    ) {
        return false;
    }

    // SLAAC: the uplink's address from radvd's advertisements, and the provider's next
    // hop that address. routed6d is stopped while the host is renumbered: the OS's
    // static address goes for good, which is the next scenario's business, not this one.
    step(&format!("{:?}: SLAAC from radvd", bed.manager));
    bed.container().systemctl("stop");
    bed.start_radvd();
    let script = match bed.manager {
        Manager::Networkd => {
            bed.write_manager_config(Addressing::Slaac, 0);
            "ip -6 addr flush dev eth0 scope global && networkctl reload && \
             networkctl reconfigure eth0"
        }
        Manager::Ifupdown => {
            sh(bed, "ifdown eth0").expect("ifdown");
            bed.write_manager_config(Addressing::Slaac, 0);
            "ifup eth0"
        }
    };
    sh(bed, script).expect("switch to SLAAC");
    let slaac = bed.slaac_address();
    let learned = netns::wait_until(Duration::from_secs(20), || {
        observe_in(bed.vps()).is_ok_and(|s| {
            s.addresses
                .iter()
                .any(|a| a.address.addr == slaac && a.address.prefix_len == 64)
        })
    });
    if learned.is_none() {
        bed.results.push((
            format!("{:?}: SLAAC address {slaac} learned", bed.manager),
            Err(format!(
                "no {slaac}/64 on eth0 within 20 s: {:?}",
                observe_in(bed.vps()).map(|s| s
                    .addresses
                    .iter()
                    .map(|a| format!("{}/{}", a.address.addr, a.address.prefix_len))
                    .collect::<Vec<_>>())
            )),
        ));
        return false;
    }
    bed.addressing = Addressing::Slaac;
    bed.sim().control(
        "POST",
        &format!("/_sim/vps/{VPS_ID}/next-hop"),
        &format!("{{\"nextHop\":\"{slaac}\"}}"),
    );
    bed.allocate(a, slaac);
    bed.run(
        "SLAAC: routed6d starts on a learned next hop",
        Expect::Os,
        Watch::NoStandIn,
        |bed| {
            bed.container().systemctl("start");
            Ok(())
        },
    ) && bed.run(
        "SLAAC: ip link set eth0 down; up",
        Expect::Os,
        Watch::NoStandIn,
        |bed| sh(bed, "ip link set eth0 down && ip link set eth0 up"),
    )
}

fn finish(bed: Bed) {
    let (table, passed) = bed.report();
    let _ = writeln!(std::io::stderr(), "{:?} scenarios:\n{table}", bed.manager);
    drop(bed);
    assert!(passed, "some scenarios failed:\n{table}");
}

#[test]
fn routed6d_keeps_the_host_whole_next_to_systemd_networkd() {
    if skipped("routed6d_keeps_the_host_whole_next_to_systemd_networkd") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (template, deb) = ensure_everything();
    let mut bed = Bed::new(Manager::Networkd, &template, &deb);
    networkd_scenarios(&mut bed);
    finish(bed);
}

/// Every scenario next to systemd-networkd, in order; false once the host cannot be
/// put back.
fn networkd_scenarios(bed: &mut Bed) -> bool {
    bed.run("routed6d starts", Expect::Os, Watch::NoStandIn, |_| Ok(()))
        && bed.run(
            "ip link set eth0 down; up",
            Expect::Os,
            Watch::NoStandIn,
            |bed| sh(bed, "ip link set eth0 down && ip link set eth0 up"),
        )
        && bed.run(
            "networkctl reconfigure eth0",
            Expect::Os,
            Watch::NoStandIn,
            |bed| sh(bed, "networkctl reconfigure eth0"),
        )
        && bed.run(
            "systemctl restart systemd-networkd",
            Expect::Os,
            Watch::NoStandIn,
            |bed| sh(bed, "systemctl restart systemd-networkd"),
        )
        && [1, 5].into_iter().all(|delay| {
            bed.run(
                &format!("networkd re-adds its address only after {delay} s"),
                Expect::Os,
                Watch::NoStandIn,
                move |bed| {
                    // The socket too: netlink traffic would start it again.
                    sh(
                        bed,
                        &format!(
                            "systemctl stop systemd-networkd.socket systemd-networkd && \
                             ip -6 addr flush dev eth0 scope global && sleep {delay} && \
                             systemctl start systemd-networkd.socket systemd-networkd"
                        ),
                    )
                },
            )
        })
        && no_restore_networkd(bed)
        && common_tail(bed, "ip link set eth0 down", "ip link set eth0 up")
}

/// The OS does not restore its address (deleted by hand; networkd does not react):
/// routed6d stands in after the grace, and hands the address back when networkd
/// configures it again.
fn no_restore_networkd(bed: &mut Bed) -> bool {
    if let Err(e) = bed.reconfigure_routed6d(Some(SHORT_GRACE)) {
        bed.results
            .push(("Networkd: next_hop_grace = \"2s\"".into(), Err(e)));
        return true;
    }
    let stood_in = bed.run(
        "ip addr del by hand: routed6d stands in after the grace",
        Expect::StandIn,
        Watch::NotBefore(SHORT_GRACE),
        |bed| sh(bed, &format!("ip -6 addr del {OS_ADDR}/64 dev eth0")),
    );
    let handed_back = stood_in
        && bed.run(
            "networkctl reconfigure eth0 takes the address back",
            Expect::Os,
            Watch::Nothing,
            |bed| sh(bed, "networkctl reconfigure eth0"),
        );
    let _ = handed_back;
    bed.reconfigure_routed6d(None).is_ok()
}

#[test]
fn routed6d_keeps_the_host_whole_next_to_ifupdown() {
    if skipped("routed6d_keeps_the_host_whole_next_to_ifupdown") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (template, deb) = ensure_everything();
    let mut bed = Bed::new(Manager::Ifupdown, &template, &deb);
    let _ = bed.run("routed6d starts", Expect::Os, Watch::NoStandIn, |_| Ok(()))
        && no_restore_ifupdown(&mut bed)
        && bed.run(
            "ifdown eth0 && ifup eth0",
            Expect::Os,
            Watch::NoStandIn,
            |bed| sh(bed, "ifdown eth0 && ifup eth0"),
        )
        && bed.run(
            "systemctl restart networking",
            Expect::Os,
            Watch::NoStandIn,
            |bed| sh(bed, "systemctl restart networking"),
        )
        && [1, 5].into_iter().all(|delay| {
            // The old stanza takes the address down, the slow one brings it back.
            let run = bed.run(
                &format!("ifupdown re-adds its address only after {delay} s"),
                Expect::Os,
                Watch::NoStandIn,
                move |bed| {
                    sh(bed, "ifdown eth0")?;
                    bed.write_manager_config(Addressing::Static, delay);
                    sh(bed, "ifup eth0")
                },
            );
            let _ = sh(&bed, "ifdown eth0");
            bed.write_manager_config(Addressing::Static, 0);
            let _ = sh(&bed, "ifup eth0");
            run
        })
        && common_tail(&mut bed, "ifdown eth0", "ifup eth0");
    finish(bed);
}

/// ifupdown has no daemon: after `ip link set eth0 down; up` nothing restores its
/// address or its default route. routed6d stands in after the grace, and `ifdown eth0
/// && ifup eth0` gives the address back to ifupdown.
fn no_restore_ifupdown(bed: &mut Bed) -> bool {
    if let Err(e) = bed.reconfigure_routed6d(Some(SHORT_GRACE)) {
        bed.results
            .push(("Ifupdown: next_hop_grace = \"2s\"".into(), Err(e)));
        return true;
    }
    let stood_in = bed.run(
        "ip link set eth0 down; up (no manager reacts): routed6d stands in",
        Expect::StandIn,
        Watch::NotBefore(SHORT_GRACE),
        |bed| sh(bed, "ip link set eth0 down && ip link set eth0 up"),
    );
    let _ = stood_in
        && bed.run(
            "ifdown eth0 && ifup eth0 takes the address back",
            Expect::Os,
            Watch::Nothing,
            |bed| sh(bed, "ifdown eth0 && ifup eth0"),
        );
    bed.reconfigure_routed6d(None).is_ok()
}
