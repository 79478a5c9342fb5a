//! The fleet roll-out of issue 18, on a real systemd and the real cloud-init: a Debian
//! container (systemd-nspawn, the harness of systemd_nspawn.rs) boots for the first
//! time on a root with Debian's cloud-init, which finds `cloud-init/user-data.yaml` as
//! a NoCloud seed and runs it — `write_files`, the package, the deferred `write_files`,
//! the `runcmd`s. cloud-init must then say done (not error), and the service must be
//! active, the routed prefix programmed, `/metrics` served and the probe answered, all
//! under the shipped unit's sandbox.
//!
//! The root is cloud_init.rs's own (`nspawn::cloud_init_root`): cloud-init in the
//! shared root would run on the other tests' boots. Its cloud.cfg.d names NoCloud as
//! the only datasource (the network ones would time out), disables cloud-init's
//! network configuration (its fallback would put eth0 on DHCP under ifupdown, over
//! the addresses the test gives it) and sets the locale the root has (C.UTF-8). The seed is the user-data with three
//! substitutions, each checked against the placeholder it replaces (see `seed`). Needs
//! root; without it, SKIPPED.

use crate::nspawn;

use std::io::{Read as _, Write as _};
use std::sync::Arc;
use std::time::Duration;

use nspawn::{Container, Network, Sim, TOKEN, VPS_ID, build_package, ensure_tools, step};
use routed6d_sim::netns::{self, Namespace};
use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};

const PREFIX: &str = "2001:db8:42:100::/64";
const HOP: &str = "2001:db8:1::10";
/// The probe's stand-in target, on the far end of the container's eth0.
const TARGET: &str = "2001:db8:1::99";
/// The simulated provider's port on the container's own loopback: fixed, because the
/// seed names it before the container (and its network namespace) exists.
const PORT: u16 = 8080;
/// Where the seed's package step finds the .deb, inside the container.
const DEB: &str = "/root/routed6d.deb";
/// cloud_init.rs's cloud.cfg.d: NoCloud alone, the network left to the test, and the
/// one locale a minbase root has (cloud-init's default, en_US.UTF-8, is not generated
/// there, and its locale module would fail).
const CLOUD_CFG: &str =
    "datasource_list: [ NoCloud ]\nnetwork: {config: disabled}\nlocale: C.UTF-8\n";

fn user_data() -> Yaml {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/cloud-init/user-data.yaml");
    let text = std::fs::read_to_string(path).expect("user-data");
    assert!(
        text.starts_with("#cloud-config\n"),
        "cloud-init ignores user-data without #cloud-config"
    );
    YamlLoader::load_from_str(&text)
        .expect("valid YAML")
        .into_iter()
        .next()
        .expect("one document")
}

fn text(yaml: &Yaml, what: &str) -> String {
    yaml.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {yaml:?}"))
        .to_string()
}

fn key(name: &str) -> Yaml {
    Yaml::String(name.to_string())
}

/// The user-data as the container's cloud-init gets it: `cloud-init/user-data.yaml`
/// with three substitutions, each checked against the placeholder it replaces.
fn seed(mut data: Yaml) -> String {
    let Yaml::Hash(top) = &mut data else {
        panic!("the user-data is not a mapping: {data:?}")
    };
    // 1. The package: the .deb packaging/build.sh built, copied into the root, instead
    //    of the placeholder repository (its key would not import; the container has
    //    no network). apt-get installs a path as it installs a name.
    let apt = top.remove(&key("apt")).expect("an apt section");
    assert!(
        apt["sources"]["routed6d"]["source"]
            .as_str()
            .is_some_and(|s| s.contains("REPLACE-")),
        "no placeholder apt source: {apt:?}"
    );
    let packages = top.get_mut(&key("packages")).expect("packages");
    assert_eq!(*packages, Yaml::Array(vec![key("routed6d")]));
    *packages = Yaml::Array(vec![key(DEB)]);
    // 2. The token and the API: the simulated provider's, on the container's loopback.
    // 3. The probe's target: an address on the far end of eth0 (no router stands
    //    behind it), probed every second.
    let Some(Yaml::Array(files)) = top.get_mut(&key("write_files")) else {
        panic!("no write_files list")
    };
    for file in files {
        let path = text(&file["path"], "path");
        let Yaml::Hash(entry) = file else {
            panic!("write_files entry {file:?}")
        };
        let content = entry.get_mut(&key("content")).expect("content");
        let old = text(content, "content");
        let new = match path.as_str() {
            "/etc/routed6d/token" => {
                assert!(old.starts_with("REPLACE-"), "{old}");
                TOKEN.to_string()
            }
            "/etc/routed6d/routed6d.toml" => {
                let hostup = "kind = \"hostup\"\n";
                let target = "target = \"2001:4860:4860::8888\"";
                assert!(old.contains(hostup) && old.contains(target), "{old}");
                old.replace(
                    hostup,
                    &format!(
                        "{hostup}base_url = \"http://127.0.0.1:{PORT}\"\nvps_id = \"{VPS_ID}\"\n"
                    ),
                )
                .replace(target, &format!("target = \"{TARGET}\"\ninterval = \"1s\""))
            }
            other => panic!("write_files writes {other}, which the test does not know"),
        };
        *content = Yaml::String(new);
    }
    let mut emitted = String::new();
    YamlEmitter::new(&mut emitted)
        .dump(&data)
        .expect("emit the seed");
    format!("#cloud-config\n{emitted}\n")
}

#[test]
fn the_user_data_installs_configures_and_starts_routed6d_on_first_boot() {
    if !netns::is_root() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (needs root for systemd-nspawn and dpkg): cloud_init::the_user_data_installs_configures_and_starts_routed6d_on_first_boot"
        );
        return;
    }
    let user_data = seed(user_data());
    ensure_tools(&[
        ("/usr/sbin/debootstrap", "debootstrap"),
        ("/usr/bin/systemd-nspawn", "systemd-container"),
    ]);
    let template = nspawn::cloud_init_root();
    let deb = build_package("deb");

    step("seeding cloud-init: NoCloud, the user-data with its substitutions");
    // Declared before the container: dropped after it.
    let root = nspawn::copy_root(&template);
    let inside = |path: &str| root.path().join(path.trim_start_matches('/'));
    std::fs::copy(&deb, inside(DEB)).expect("copy the .deb");
    let nocloud = inside("/var/lib/cloud/seed/nocloud");
    std::fs::create_dir_all(&nocloud).expect("the seed's directory");
    std::fs::write(nocloud.join("user-data"), &user_data).expect("user-data");
    std::fs::write(
        nocloud.join("meta-data"),
        format!("instance-id: routed6d-systest-{}\n", std::process::id()),
    )
    .expect("meta-data");
    std::fs::write(
        inside("/etc/cloud/cloud.cfg.d/99-routed6d-systest.cfg"),
        CLOUD_CFG,
    )
    .expect("cloud.cfg.d");
    let sim_dir = tempfile::tempdir().expect("tempdir");
    let sim_token = sim_dir.path().join("token");
    std::fs::write(&sim_token, TOKEN).expect("token");

    step("first boot: cloud-init runs the user-data");
    let container = Container::launch(root.path(), Network::Private);
    let ns = Arc::new(
        Namespace::attach(
            &format!("r6d-cloudinit-{}", std::process::id()),
            container.leader,
        )
        .expect("name the container's namespace"),
    );
    // The VPS's uplink (the far end holds the probe's stand-in target) and its
    // provider, as the container starts: long before cloud-init's final stage, and
    // `routed6d wait-online` would wait for them anyway.
    for args in [
        &[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0-peer",
        ][..],
        &["link", "set", "eth0-peer", "up"],
        &["link", "set", "eth0", "up"],
        &[
            "-6",
            "addr",
            "add",
            "2001:db8:1::2/64",
            "dev",
            "eth0",
            "nodad",
        ],
        &[
            "-6",
            "addr",
            "add",
            &format!("{TARGET}/64"),
            "dev",
            "eth0-peer",
            "nodad",
        ],
        &["addr", "add", "192.0.2.10/24", "dev", "eth0"],
    ] {
        ns.ip(args)
            .unwrap_or_else(|e| panic!("ip {}: {e}", args.join(" ")));
    }
    let sim = Sim::start_on(&container, ns.clone(), &sim_token, PORT);
    assert_eq!(sim.addr.port(), PORT);
    sim.control(
        "POST",
        &format!("/_sim/vps/{VPS_ID}/allocation"),
        &format!("{{\"prefix\":\"{PREFIX}\",\"nextHop\":\"{HOP}\"}}"),
    );
    // Until systemd has run cloud-init's generator, `status` may say "disabled": wait
    // for the boot to get that far, then for cloud-init's four stages.
    let generated = netns::wait_until(Duration::from_secs(60), || {
        container
            .exec(&["test", "-e", "/run/cloud-init/enabled"])
            .status
            .success()
    });
    let report = || {
        String::from_utf8_lossy(
            &container
                .exec(&[
                    "sh",
                    "-c",
                    "cloud-init status --long; tail -n 40 /var/log/cloud-init-output.log; \
                     grep -E 'WARNING|ERROR|Traceback' /var/log/cloud-init.log | tail -n 20",
                ])
                .stdout,
        )
        .into_owned()
    };
    assert!(
        generated.is_some(),
        "cloud-init was not enabled at boot:\n{}",
        report()
    );
    let waited = container.exec(&["timeout", "300", "cloud-init", "status", "--wait"]);
    let status = container.exec(&["cloud-init", "status", "--long"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        waited.status.code() != Some(124) && status.lines().any(|l| l == "status: done"),
        "cloud-init did not finish well ({}):\n{}",
        waited.status,
        report()
    );
    let output = container.sh("cat /var/log/cloud-init-output.log");
    assert!(
        output.contains(&format!("online: {PREFIX}")),
        "wait-online did not say online:\n{output}"
    );

    step("the service: active, programmed, /metrics served, the probe answered");
    assert_eq!(container.unit_property("ActiveState"), "active");
    let unit = container.unit_property("FragmentPath");
    assert!(
        unit.ends_with("lib/systemd/system/routed6d.service"),
        "not the shipped unit: {unit}"
    );
    assert_eq!(
        container
            .sh("stat -c '%a %U:%G' /etc/routed6d/token /etc/routed6d/routed6d.toml")
            .lines()
            .collect::<Vec<_>>(),
        ["600 root:root", "640 root:routed6d"]
    );
    let gid = container.sh("getent group routed6d | cut -d: -f3");
    assert_eq!(
        container
            .sh("cat /proc/sys/net/ipv4/ping_group_range")
            .split_whitespace()
            .collect::<Vec<_>>(),
        [gid.trim(), gid.trim()]
    );
    let answered = netns::wait_until(Duration::from_secs(15), || {
        let status = container.exec(&["routed6d", "status", "--json"]);
        serde_json::from_slice::<serde_json::Value>(&status.stdout)
            .is_ok_and(|s| s["probe"]["reachable"] == serde_json::json!(true))
    });
    assert!(
        answered.is_some(),
        "the probe never answered under the unit:\n{}",
        container.sh("routed6d status; journalctl -u routed6d --no-pager | tail -20")
    );
    let body = ns
        .enter(|| -> std::io::Result<String> {
            let mut stream = std::net::TcpStream::connect("[::1]:9626")?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: routed6d\r\n\r\n")?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer)?;
            Ok(answer)
        })
        .expect("enter")
        .expect("scrape");
    for series in [
        "HTTP/1.1 200 OK",
        &format!("routed6d_prefix_info{{prefix=\"{PREFIX}\",next_hop=\"{HOP}\""),
        "routed6d_probe_reachable 1",
    ] {
        assert!(body.contains(series), "{series} not in\n{body}");
    }
    assert!(
        !container
            .sh("journalctl -u routed6d -o verbose --no-pager")
            .contains(TOKEN),
        "the token is in the journal"
    );
}
