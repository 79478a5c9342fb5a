use super::*;
use std::os::unix::fs::PermissionsExt;

const TOKEN: &str = "hup_secret_token_value_42";

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("token");
        std::fs::write(&token, format!("{TOKEN}\n")).expect("write token");
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        Dir { dir }
    }
    fn token(&self) -> PathBuf {
        self.dir.path().join("token")
    }
    fn parse(&self, body: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "[provider]\nkind = \"hostup\"\ntoken_file = \"{}\"\n{body}",
            self.token().display()
        );
        Config::from_text(Path::new("/etc/routed6d/routed6d.toml"), &text, None)
    }
}

fn err(result: Result<Config, ConfigError>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn minimal_config_gets_every_default() {
    let dir = Dir::new();
    let config = dir
        .parse("[uplink]\ninterface = \"eth0\"\n")
        .expect("valid");
    assert_eq!(
        config.provider.base_url.to_string(),
        "https://cloud.hostup.se"
    );
    assert_eq!(config.provider.poll_interval, Duration::from_secs(60));
    assert_eq!(config.provider.refresh_next_hop, RefreshNextHop::Auto);
    assert!(!config.provider.allocate);
    assert_eq!(config.provider.vps_id, None);
    assert_eq!(config.uplink.next_hop, NextHopPolicy::Ensure);
    assert_eq!(config.prefix.mode, PrefixMode::Addresses);
    assert_eq!(config.prefix.addresses, vec![Ipv6Addr::LOCALHOST]);
    assert_eq!(config.prefix.interface, "lo");
    assert!(config.prefix.unreachable);
    assert_eq!(config.daemon.on_stop, OnStop::Keep);
    assert_eq!(config.daemon.protocol, DEFAULT_PROTOCOL);
    assert_eq!(config.provider.token.expose(), TOKEN);
}

#[test]
fn shipped_example_config_is_valid_and_complete() {
    let dir = Dir::new();
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/routed6d.toml"))
            .expect("config/routed6d.toml");
    let config = Config::from_text(Path::new("routed6d.toml"), &shipped, Some(dir.dir.path()))
        .expect("shipped config parses");
    assert_eq!(config.uplink.interface, "eth0");
    for key in [
        "kind",
        "base_url",
        "token_file",
        "vps_id",
        "poll_interval",
        "allocate",
        "refresh_next_hop",
        "interface",
        "next_hop",
        "mode",
        "addresses",
        "unreachable",
        "on_stop",
        "protocol",
        "status_file",
    ] {
        assert!(
            shipped.lines().any(|l| l
                .trim_start()
                .trim_start_matches('#')
                .trim_start()
                .starts_with(&format!("{key} ="))),
            "config/routed6d.toml does not document {key}"
        );
    }
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let dir = Dir::new();
    let e = err(dir.parse("[uplink]\ninterface = \"eth0\"\nnexthop = \"ensure\"\n"));
    assert!(
        e.starts_with("/etc/routed6d/routed6d.toml:6: unknown field `nexthop`"),
        "{e}"
    );
    assert!(!e.contains('\n'), "one line: {e}");
}

#[test]
fn wrong_types_are_refused_with_the_line() {
    let dir = Dir::new();
    let e = err(dir.parse("poll_interval = 60\n[uplink]\ninterface = \"eth0\"\n"));
    assert!(e.contains(":4:") && e.contains("invalid type"), "{e}");
    let e = err(dir.parse("allocate = \"yes\"\n[uplink]\ninterface = \"eth0\"\n"));
    assert!(e.contains(":4:"), "{e}");
    let e = err(dir.parse("[uplink]\ninterface = \"eth0\"\n[prefix]\nmode = \"bridge\"\n"));
    assert!(
        e.contains(":7:") && e.contains("unknown variant `bridge`"),
        "{e}"
    );
}

#[test]
fn bad_addresses_and_interfaces_are_refused() {
    let dir = Dir::new();
    let e = err(dir.parse(
        "[uplink]\ninterface = \"eth0\"\n[prefix]\naddresses = [\"::1\", \"2001:zz::1\"]\n",
    ));
    assert!(e.contains(":7:") && e.contains("2001:zz::1"), "{e}");
    let e = err(dir.parse("[uplink]\ninterface = \"a-name-far-too-long\"\n"));
    assert!(
        e.contains(":5:") && e.contains("not a valid interface name"),
        "{e}"
    );
    let e = err(dir.parse("[uplink]\ninterface = \"eth0\"\n[prefix]\naddresses = []\n"));
    assert!(e.contains(":7:") && e.contains("empty"), "{e}");
}

#[test]
fn plain_http_only_to_loopback() {
    let dir = Dir::new();
    let e =
        err(dir.parse("base_url = \"http://cloud.hostup.se\"\n[uplink]\ninterface = \"eth0\"\n"));
    assert!(e.contains(":4:") && e.contains("only for loopback"), "{e}");
    for ok in [
        "http://127.0.0.1:8080",
        "http://[::1]:9",
        "http://localhost",
        "https://api.example.net/prefix",
    ] {
        let config = dir
            .parse(&format!(
                "base_url = \"{ok}\"\n[uplink]\ninterface = \"eth0\"\n"
            ))
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert!(
            config
                .provider
                .base_url
                .to_string()
                .starts_with(ok.trim_end_matches('/'))
        );
    }
    let e = err(dir.parse("base_url = \"ftp://x\"\n[uplink]\ninterface = \"eth0\"\n"));
    assert!(e.contains("ftp"), "{e}");
}

#[test]
fn poll_interval_is_humane_and_at_least_a_second() {
    let dir = Dir::new();
    let config = dir
        .parse("poll_interval = \"5m\"\n[uplink]\ninterface = \"eth0\"\n")
        .expect("5m");
    assert_eq!(config.provider.poll_interval, Duration::from_secs(300));
    let e = err(dir.parse("poll_interval = \"500ms\"\n[uplink]\ninterface = \"eth0\"\n"));
    assert!(e.contains("minimum of 1s"), "{e}");
    let e = err(dir.parse("poll_interval = \"soon\"\n[uplink]\ninterface = \"eth0\"\n"));
    assert!(e.contains("not a duration"), "{e}");
}

#[test]
fn token_file_must_exist_be_private_and_non_empty() {
    let dir = Dir::new();
    std::fs::set_permissions(dir.token(), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let e = err(dir.parse("[uplink]\ninterface = \"eth0\"\n"));
    assert!(
        e.contains("provider.token_file") && e.contains("chmod 600"),
        "{e}"
    );
    assert!(!e.contains(TOKEN));

    std::fs::set_permissions(dir.token(), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::write(dir.token(), "  \n").expect("write");
    let e = err(dir.parse("[uplink]\ninterface = \"eth0\"\n"));
    assert!(e.contains("is empty"), "{e}");

    std::fs::remove_file(dir.token()).expect("rm");
    let e = err(dir.parse("[uplink]\ninterface = \"eth0\"\n"));
    assert!(e.contains("does not exist"), "{e}");
}

#[test]
fn token_defaults_to_systemd_credentials() {
    let dir = Dir::new();
    let text = "[provider]\nkind = \"hostup\"\n[uplink]\ninterface = \"eth0\"\n";
    let config =
        Config::from_text(Path::new("x.toml"), text, Some(dir.dir.path())).expect("credentials");
    assert_eq!(config.provider.token_file, dir.token());
    assert_eq!(config.provider.token.expose(), TOKEN);
}

#[test]
fn token_never_shows_in_debug_output() {
    let dir = Dir::new();
    let config = dir
        .parse("[uplink]\ninterface = \"eth0\"\n")
        .expect("valid");
    let debug = format!("{config:?}");
    assert!(!debug.contains(TOKEN), "{debug}");
    assert!(debug.contains("<redacted>"));
    assert_eq!(config.provider.token.to_string(), "<redacted>");
}

#[test]
fn mode_rules_are_checked() {
    let dir = Dir::new();
    let e = err(dir.parse("[uplink]\ninterface = \"eth0\"\n[prefix]\nmode = \"delegate\"\n"));
    assert!(e.contains("needs prefix.interface"), "{e}");
    let e = err(dir.parse(
        "[uplink]\ninterface = \"eth0\"\n[prefix]\nmode = \"delegate\"\ninterface = \"eth0\"\n",
    ));
    assert!(
        e.contains(":8:") && e.contains("must not be the uplink"),
        "{e}"
    );
    let e = err(dir.parse(
        "[uplink]\ninterface = \"eth0\"\n[prefix]\nmode = \"anyip\"\naddresses = [\"::1\"]\n",
    ));
    assert!(e.contains("only to prefix.mode"), "{e}");
    let config = dir
        .parse(
            "[uplink]\ninterface = \"eth0\"\n[prefix]\nmode = \"delegate\"\ninterface = \"br0\"\n",
        )
        .expect("delegate");
    assert_eq!(config.interfaces(), vec!["eth0", "br0"]);
}

#[test]
fn reserved_protocols_and_bad_ids_are_refused() {
    let dir = Dir::new();
    let e = err(dir.parse("[uplink]\ninterface = \"eth0\"\n[daemon]\nprotocol = 4\n"));
    assert!(e.contains(":7:") && e.contains("reserved"), "{e}");
    let e = err(dir.parse("vps_id = \"../admin\"\n[uplink]\ninterface = \"eth0\"\n"));
    assert!(e.contains(":4:") && e.contains("vps_id"), "{e}");
}

#[test]
fn missing_sections_are_named() {
    let e = err(Config::from_text(
        Path::new("x.toml"),
        "[uplink]\ninterface = \"eth0\"\n",
        None,
    ));
    assert!(e.contains("missing field `provider`"), "{e}");
}
