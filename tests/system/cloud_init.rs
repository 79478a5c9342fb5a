//! The fleet roll-out of issue 18, on a real systemd: `cloud-init/user-data.yaml`'s
//! steps run in a booted Debian container (systemd-nspawn, the harness of
//! systemd_nspawn.rs) in cloud-init's order — `write_files` of the init stage, the
//! packages, the deferred `write_files` and `runcmd` of the final stage — and then the
//! service must be active, the routed prefix programmed, `/metrics` served and the
//! probe answered, all under the shipped unit's sandbox.
//!
//! cloud-init itself does not run: it is not in the cached Debian root, the container
//! has no network to fetch it (with its Python), and a first boot under nspawn has no
//! datasource. So the test reads the user-data and does what cloud-init would, with
//! three substitutions it names: the package comes from the .deb packaging/build.sh
//! built (the apt repository is a placeholder), the token and the API are the
//! simulated provider's, and the probe's target is an address on the container's
//! other veth end (the container has no router behind it). Needs root; without it,
//! SKIPPED.

use crate::nspawn;

use std::io::{Read as _, Write as _};
use std::time::Duration;

use nspawn::{Container, Sim, TOKEN, VPS_ID, build_package, debian_root, ensure_tools, ok, step};
use routed6d_sim::netns::{self, Namespace};
use yaml_rust2::{Yaml, YamlLoader};

const PREFIX: &str = "2001:db8:42:100::/64";
const HOP: &str = "2001:db8:1::10";
/// The probe's stand-in target, on the far end of the container's eth0.
const TARGET: &str = "2001:db8:1::99";

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

/// Write one `write_files` entry as cloud-init does: content, owner, mode.
fn write_file(container: &Container, entry: &Yaml, substitute: &dyn Fn(&str, String) -> String) {
    let path = text(&entry["path"], "path");
    let content = substitute(&path, text(&entry["content"], "content"));
    let owner = text(&entry["owner"], "owner");
    let mode = text(&entry["permissions"], "permissions");
    let inside = container.path(&path);
    std::fs::create_dir_all(inside.parent().expect("dir")).expect("mkdir");
    std::fs::write(&inside, content).expect("write");
    container.sh(&format!("chown {owner} {path} && chmod {mode} {path}"));
}

/// Run one `runcmd` entry: a list is an argv, a string goes to sh.
fn run_command(container: &Container, entry: &Yaml) -> String {
    let argv: Vec<String> = match entry {
        Yaml::Array(items) => items.iter().map(|i| text(i, "runcmd argument")).collect(),
        Yaml::String(script) => vec!["sh".into(), "-c".into(), script.clone()],
        other => panic!("runcmd entry {other:?}"),
    };
    let args: Vec<&str> = argv.iter().map(String::as_str).collect();
    ok(container.exec(&args), &argv.join(" "))
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
    let data = user_data();
    let packages: Vec<String> = data["packages"]
        .as_vec()
        .expect("packages")
        .iter()
        .map(|p| text(p, "package"))
        .collect();
    assert_eq!(packages, ["routed6d"]);
    assert!(
        data["apt"]["sources"]["routed6d"]["source"]
            .as_str()
            .is_some(),
        "no apt source for the package"
    );
    ensure_tools(&[
        ("/usr/sbin/debootstrap", "debootstrap"),
        ("/usr/bin/systemd-nspawn", "systemd-container"),
    ]);
    let template = debian_root();
    let deb = build_package("deb");
    let container = Container::boot(&template);
    let ns = std::sync::Arc::new(
        Namespace::attach(
            &format!("r6d-cloudinit-{}", std::process::id()),
            container.leader,
        )
        .expect("name the container's namespace"),
    );
    // The VPS's uplink, and the far end the probe's stand-in target lives on.
    container.sh(&format!(
        "ip link add eth0 type veth peer name eth0-peer && ip link set eth0-peer up && \
         ip link set eth0 up && ip -6 addr add 2001:db8:1::2/64 dev eth0 nodad && \
         ip -6 addr add {TARGET}/64 dev eth0-peer nodad && ip addr add 192.0.2.10/24 dev eth0"
    ));
    let sim_dir = tempfile::tempdir().expect("tempdir");
    let sim_token = sim_dir.path().join("token");
    std::fs::write(&sim_token, TOKEN).expect("token");
    let sim = Sim::start(&container, ns.clone(), &sim_token);
    sim.control(
        "POST",
        &format!("/_sim/vps/{VPS_ID}/allocation"),
        &format!("{{\"prefix\":\"{PREFIX}\",\"nextHop\":\"{HOP}\"}}"),
    );
    let port = sim.addr.port();
    let substitute = |path: &str, content: String| match path {
        "/etc/routed6d/token" => {
            assert!(content.starts_with("REPLACE-"), "{content}");
            TOKEN.to_string()
        }
        "/etc/routed6d/routed6d.toml" => {
            let hostup = "kind = \"hostup\"\n";
            let target = "target = \"2001:4860:4860::8888\"";
            assert!(
                content.contains(hostup) && content.contains(target),
                "{content}"
            );
            content
                .replace(
                    hostup,
                    &format!(
                        "{hostup}base_url = \"http://127.0.0.1:{port}\"\nvps_id = \"{VPS_ID}\"\n"
                    ),
                )
                .replace(target, &format!("target = \"{TARGET}\"\ninterval = \"1s\""))
        }
        _ => content,
    };
    let files = data["write_files"].as_vec().expect("write_files");
    let deferred = |entry: &Yaml| entry["defer"].as_bool() == Some(true);

    step("cloud-init's init stage: write_files");
    for entry in files.iter().filter(|e| !deferred(e)) {
        write_file(&container, entry, &substitute);
    }
    step("its config stage: packages (the .deb instead of the placeholder repository)");
    std::fs::copy(&deb, container.path("/root/routed6d.deb")).expect("copy the .deb");
    container.sh("DEBIAN_FRONTEND=noninteractive dpkg -i /root/routed6d.deb");
    assert_eq!(
        container.unit_property("ActiveState"),
        "inactive",
        "the package must not start the service before its configuration is written"
    );
    step("its final stage: deferred write_files, runcmd");
    for entry in files.iter().filter(|e| deferred(e)) {
        write_file(&container, entry, &substitute);
    }
    let commands = data["runcmd"].as_vec().expect("runcmd");
    let mut said = Vec::new();
    for entry in commands {
        said.push(run_command(&container, entry));
    }
    assert!(
        said.last()
            .is_some_and(|s| s.starts_with(&format!("online: {PREFIX}"))),
        "wait-online said {said:?}"
    );

    step("the service: active, programmed, /metrics served, the probe answered");
    assert_eq!(container.unit_property("ActiveState"), "active");
    assert_eq!(
        container
            .sh("stat -c '%a %U:%G' /etc/routed6d/routed6d.toml")
            .trim(),
        "640 root:routed6d"
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
