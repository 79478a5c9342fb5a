//! The command line as a user meets it: exit codes (sysexits) and one-line messages
//! for bad arguments and bad configuration.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn routed6d(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_routed6d"))
        .args(args)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .expect("run routed6d")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn config_dir(body: &str, token_mode: u32) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, "secret-token-value-77").expect("token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(token_mode)).expect("chmod");
    let config = dir.path().join("routed6d.toml");
    std::fs::write(
        &config,
        format!(
            "[provider]\nkind = \"hostup\"\ntoken_file = \"{}\"\n{body}",
            token.display()
        ),
    )
    .expect("config");
    let path = config.display().to_string();
    (dir, path)
}

#[test]
fn help_and_version_exit_zero() {
    let out = routed6d(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for command in [
        "run",
        "once",
        "plan",
        "status",
        "check-config",
        "refresh-next-hop",
        "release",
        "wait-online",
    ] {
        assert!(help.contains(command), "--help lists {command}");
    }
    assert_eq!(routed6d(&["--version"]).status.code(), Some(0));
}

#[test]
fn check_config_accepts_a_good_file() {
    let (_dir, path) = config_dir("[uplink]\ninterface = \"eth0\"\n", 0o600);
    let out = routed6d(&["check-config", "--config", &path]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"));
}

/// A DigitalOcean config: check-config names the scopes the token needs, droplet:read
/// among them (issue 14, item 5).
#[test]
fn check_config_names_the_digitalocean_scopes() {
    let (_dir, path) = config_dir("[uplink]\ninterface = \"eth0\"\n", 0o600);
    let text = std::fs::read_to_string(&path).expect("config");
    let text = text.replace(
        "kind = \"hostup\"",
        "kind = \"digitalocean\"\ndroplet_id = 7\nreserved_ipv6 = [\"2604:a880::1\"]\nclaim = true",
    );
    std::fs::write(&path, text).expect("config");
    let out = routed6d(&["check-config", "--config", &path]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "note: the DigitalOcean token needs reserved_ip:read, droplet:read, reserved_ip:update, actions:read (droplet:read: "
        ),
        "{stdout}"
    );
}

#[test]
fn every_command_refuses_a_bad_config_with_one_line_and_78() {
    let cases: [(&str, u32, &str); 4] = [
        (
            "[uplink]\ninterface = \"eth0\"\ncolour = \"blue\"\n",
            0o600,
            ":6: uplink.colour: unknown field `colour`",
        ),
        (
            "[uplink]\ninterface = \"eth0\"\n[prefix]\naddresses = [\"nope\"]\n",
            0o600,
            ":7: ",
        ),
        (
            "base_url = \"http://cloud.hostup.se\"\n[uplink]\ninterface = \"eth0\"\n",
            0o600,
            "only for loopback",
        ),
        ("[uplink]\ninterface = \"eth0\"\n", 0o644, "chmod 600"),
    ];
    for (body, mode, expected) in cases {
        let (_dir, path) = config_dir(body, mode);
        for command in [
            "check-config",
            "run",
            "once",
            "plan",
            "status",
            "refresh-next-hop",
        ] {
            let out = routed6d(&[command, "--config", &path]);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(78), "{command} {body:?}: {err}");
            assert_eq!(err.lines().count(), 1, "one line: {err}");
            assert!(err.contains(expected), "{command}: {err}");
            assert!(!err.contains("secret-token-value-77"));
        }
    }
    let out = routed6d(&["check-config", "--config", "/nonexistent/routed6d.toml"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains("/nonexistent/routed6d.toml: cannot read"));
}

#[test]
fn the_shipped_unit_and_protocol_file_agree_with_the_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("systemd/routed6d.service")).expect("unit");
    assert!(unit.contains("RestartPreventExitStatus=78"));
    assert!(unit.contains("Type=notify"));
    let protos = std::fs::read_to_string(root.join("packaging/rt_protos.conf")).expect("rt_protos");
    let line = format!("{}\trouted6d", routed6d::model::DEFAULT_PROTOCOL);
    assert!(
        protos.lines().any(|l| l == line),
        "rt_protos.conf names protocol {}",
        routed6d::model::DEFAULT_PROTOCOL
    );
}

/// A static-routes config routing `prefix`, with one bridge workload.
fn workload_config(prefix: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("routed6d.toml");
    std::fs::write(
        &config,
        format!(
            "[provider]\nkind = \"static\"\nroutes = [ {{ prefix = \"{prefix}\", next_hop = \"2001:db8::10\" }} ]\n[uplink]\ninterface = \"eth0\"\n[[workload]]\nname = \"web\"\nkind = \"bridge\"\ninterface = \"br-web\"\nprefix_length = 64\n"
        ),
    )
    .expect("config");
    let path = config.display().to_string();
    (dir, path)
}

#[test]
fn check_config_shows_workload_slots_and_refuses_one_that_does_not_fit() {
    let (_dir, path) = workload_config("2001:db8:42:100::/56");
    let out = routed6d(&["check-config", "--config", &path]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("workload web: bridge br-web, /64 at slot 1 (next free in config order"),
        "{stdout}"
    );
    let (_dir, path) = workload_config("2001:db8:42:100::/64");
    let out = routed6d(&["check-config", "--config", &path]);
    assert_eq!(out.status.code(), Some(78));
    assert_eq!(
        stderr(&out),
        format!(
            "routed6d: {path}:10: workload \"web\": prefix_length 64 is not longer than the routed prefix 2001:db8:42:100::/64: there is no room for the host's slot beside it\n"
        )
    );
}
