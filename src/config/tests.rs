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

/// The settings of each kind, from a config known to be of that kind.
fn hostup(c: &Config) -> &HostupSettings {
    match &c.provider.settings {
        ProviderSettings::Hostup(h) => h,
        other => panic!("not hostup: {other:?}"),
    }
}

fn digitalocean(c: &Config) -> &DigitalOceanSettings {
    match &c.provider.settings {
        ProviderSettings::DigitalOcean(d) => d,
        other => panic!("not digitalocean: {other:?}"),
    }
}

/// Parse, then read the token as building the provider does.
fn with_token(result: Result<Config, ConfigError>) -> Result<(Config, Secret), ConfigError> {
    let config = result?;
    let token = config.read_token()?.expect("an API kind");
    Ok((config, token))
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
        hostup(&config).api.base_url.to_string(),
        "https://cloud.hostup.se"
    );
    assert_eq!(config.provider.poll_interval, Duration::from_secs(60));
    assert_eq!(config.provider.refresh_next_hop(), RefreshNextHop::Auto);
    assert!(!config.provider.allocate());
    assert_eq!(hostup(&config).vps_id, None);
    assert_eq!(config.uplink.next_hop, NextHopPolicy::Ensure);
    assert_eq!(config.prefix.mode, PrefixMode::Addresses);
    assert_eq!(config.prefix.addresses, vec![Ipv6Addr::LOCALHOST]);
    assert_eq!(config.prefix.interface, "lo");
    assert!(config.prefix.unreachable);
    assert_eq!(config.daemon.on_stop, OnStop::Keep);
    assert_eq!(config.daemon.protocol, DEFAULT_PROTOCOL);
    assert_eq!(config.daemon.address_ownership, AddressOwnership::Auto);
    assert_eq!(config.daemon.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
    let token = config.read_token().expect("token").expect("hostup has one");
    assert_eq!(token.expose(), TOKEN);
}

#[test]
fn address_ownership_and_state_dir_are_read_and_checked() {
    let dir = Dir::new();
    let config = dir
        .parse("[uplink]\ninterface = \"eth0\"\n[daemon]\naddress_ownership = \"record\"\nstate_dir = \"/srv/r6d\"\n")
        .expect("valid");
    assert_eq!(config.daemon.address_ownership, AddressOwnership::Record);
    assert_eq!(config.daemon.state_dir, PathBuf::from("/srv/r6d"));
    let e = err(
        dir.parse("[uplink]\ninterface = \"eth0\"\n[daemon]\naddress_ownership = \"kernel\"\n")
    );
    assert!(
        e.starts_with("/etc/routed6d/routed6d.toml:7: daemon.address_ownership: unknown variant"),
        "{e}"
    );
    let e = err(dir.parse("[uplink]\ninterface = \"eth0\"\n[daemon]\nstate_dir = \"var/lib\"\n"));
    assert_eq!(
        e,
        "/etc/routed6d/routed6d.toml:7: daemon.state_dir var/lib is not an absolute path"
    );
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
        "source",
        "interface",
        "next_hop",
        "mode",
        "addresses",
        "unreachable",
        "on_stop",
        "protocol",
        "status_file",
        "address_ownership",
        "state_dir",
        "docker_network",
        "socket",
        "target",
        "tcp_port",
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
fn a_wrong_type_names_the_key() {
    let dir = Dir::new();
    let e = err(dir.parse("[uplink]\ninterface = \"eth0\"\nnext_hop = 5\n"));
    assert!(
        e.starts_with("/etc/routed6d/routed6d.toml:6: uplink.next_hop: invalid type"),
        "{e}"
    );
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let dir = Dir::new();
    let e = err(dir.parse("[uplink]\ninterface = \"eth0\"\nnexthop = \"ensure\"\n"));
    assert!(
        e.starts_with("/etc/routed6d/routed6d.toml:6: uplink.nexthop: unknown field `nexthop`"),
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
    for (bad, why) in [
        ("http://localhost", "only for loopback"),
        ("https://user:pw@api.example.net", "credentials"),
        ("https://user@api.example.net", "credentials"),
        ("https://api.example.net/?key=x", "no query"),
        ("https://api.example.net/#x", "fragment"),
    ] {
        let e = err(dir.parse(&format!(
            "base_url = \"{bad}\"\n[uplink]\ninterface = \"eth0\"\n"
        )));
        assert!(e.contains(":4:") && e.contains(why), "{bad}: {e}");
        assert!(!e.contains("pw"), "the password is not repeated: {e}");
    }
    for ok in [
        "http://127.0.0.1:8080",
        "http://[::1]:9",
        "https://api.example.net/prefix",
    ] {
        let config = dir
            .parse(&format!(
                "base_url = \"{ok}\"\n[uplink]\ninterface = \"eth0\"\n"
            ))
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert!(
            hostup(&config)
                .api
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
    let err = |result| match with_token(result) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    };
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
    // Parsing reads no file: the missing key is found when the provider is built.
    let parsed = dir.parse("[uplink]\ninterface = \"eth0\"\n");
    assert!(parsed.is_ok(), "{parsed:?}");
    let e = err(parsed);
    assert!(e.contains("does not exist"), "{e}");
    assert!(
        e.starts_with("/etc/routed6d/routed6d.toml: provider.token_file "),
        "{e}"
    );
}

#[test]
fn token_defaults_to_systemd_credentials() {
    let dir = Dir::new();
    let text = "[provider]\nkind = \"hostup\"\n[uplink]\ninterface = \"eth0\"\n";
    let (config, token) = with_token(Config::from_text(
        Path::new("x.toml"),
        text,
        Some(dir.dir.path()),
    ))
    .expect("credentials");
    assert_eq!(hostup(&config).api.token_file, dir.token());
    assert_eq!(token.expose(), TOKEN);
}

#[test]
fn a_missing_credential_names_the_file_the_unit_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "[provider]\nkind = \"hostup\"\n[uplink]\ninterface = \"eth0\"\n";
    let config = Config::from_text(Path::new("x.toml"), text, Some(dir.path())).expect("valid");
    assert_eq!(config.key_file(), Some(Path::new("/etc/routed6d/token")));
    let e = config.read_token().expect_err("no credential");
    assert_eq!(
        e.to_string(),
        format!(
            "x.toml: provider.token_file is unset and systemd's credential {} does not exist: the shipped unit loads it from /etc/routed6d/token; write the API key there (chmod 600)",
            dir.path().join("token").display()
        )
    );
}

#[test]
fn token_never_shows_in_debug_output() {
    let dir = Dir::new();
    let (config, token) = with_token(dir.parse("[uplink]\ninterface = \"eth0\"\n")).expect("valid");
    let debug = format!("{config:?} {token:?}");
    assert!(!debug.contains(TOKEN), "{debug}");
    assert!(debug.contains("<redacted>"));
    assert_eq!(token.to_string(), "<redacted>");
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

/// A config of `kind` with `provider` lines (token_file added for the kinds that read one).
fn kind_config(dir: &Dir, provider: &str, rest: &str) -> Result<Config, ConfigError> {
    let token = if provider.contains("\"static\"") {
        String::new()
    } else {
        format!("token_file = \"{}\"\n", dir.token().display())
    };
    let text = format!("[provider]\n{provider}\n{token}[uplink]\ninterface = \"eth0\"\n{rest}");
    Config::from_text(Path::new("/etc/routed6d/routed6d.toml"), &text, None)
}

#[test]
fn every_kind_gets_its_defaults() {
    let dir = Dir::new();
    let c = kind_config(&dir, "kind = \"hostup\"\nsource = \"account\"", "").expect("account");
    assert_eq!(hostup(&c).source, HostupSource::Account);
    let c = kind_config(&dir, "kind = \"hostup-legacy\"\nvmid = 10048", "").expect("legacy");
    let ProviderSettings::HostupLegacy(legacy) = &c.provider.settings else {
        panic!("{c:?}")
    };
    assert_eq!(legacy.vmid, 10048);
    assert_eq!(c.provider.poll_interval, LEGACY_POLL_INTERVAL);
    assert_eq!(legacy.api.base_url.to_string(), HOSTUP_BASE_URL);
    assert_eq!(c.provider.refresh_next_hop(), RefreshNextHop::Never);
    let c = kind_config(&dir, "kind = \"digitalocean\"", "").expect("digitalocean");
    let d = digitalocean(&c);
    assert_eq!(d.api.base_url.to_string(), DIGITALOCEAN_BASE_URL);
    assert_eq!(d.metadata_url.to_string(), "http://169.254.169.254");
    assert_eq!(d.droplet_id, None);
    assert!(d.reserved_ipv6.is_empty() && !c.provider.allocate());
    let c = kind_config(
        &dir,
        "kind = \"digitalocean\"\ndroplet_id = 7\nreserved_ipv6 = [\"2604:A880:0800:0014:0000:0000:42C3:D000\"]\nclaim = true",
        "",
    )
    .expect("claim");
    assert_eq!(
        digitalocean(&c).reserved_ipv6,
        vec!["2604:a880:800:14::42c3:d000".parse::<Ipv6Addr>().unwrap()]
    );
    assert!(c.provider.allocate(), "claim is the provider's allocate");
    let c = kind_config(
        &dir,
        "kind = \"static\"\nroutes = [ { prefix = \"2001:db8:42:100::/64\", next_hop = \"2001:db8::10\" } ]",
        "",
    )
    .expect("static");
    let ProviderSettings::Static(routes) = &c.provider.settings else {
        panic!("{c:?}")
    };
    assert_eq!(routes.len(), 1);
    assert!(
        c.read_token().expect("no token").is_none(),
        "static reads no token"
    );
}

#[test]
fn keys_of_another_kind_are_refused_with_their_line() {
    let dir = Dir::new();
    for (provider, key, kind) in [
        ("kind = \"hostup\"\nvmid = 3", "vmid", "hostup"),
        ("kind = \"hostup\"\nclaim = true", "claim", "hostup"),
        (
            "kind = \"hostup-legacy\"\nvmid = 3\nvps_id = \"vps_1\"",
            "vps_id",
            "hostup-legacy",
        ),
        (
            "kind = \"hostup-legacy\"\nvmid = 3\nsource = \"account\"",
            "source",
            "hostup-legacy",
        ),
        (
            "kind = \"digitalocean\"\nrefresh_next_hop = \"auto\"",
            "refresh_next_hop",
            "digitalocean",
        ),
        (
            "kind = \"digitalocean\"\nallocate = true",
            "allocate",
            "digitalocean",
        ),
        (
            "kind = \"static\"\nroutes = []\nbase_url = \"https://x.example\"",
            "base_url",
            "static",
        ),
        (
            "kind = \"static\"\nroutes = []\ntoken_file = \"/x\"",
            "token_file",
            "static",
        ),
    ] {
        let e = err(kind_config(&dir, provider, ""));
        let line = provider.lines().count() + 1;
        assert!(
            e.contains(&format!(
                ":{line}: provider.{key} does not apply to kind = \"{kind}\""
            )),
            "{provider}: {e}"
        );
        assert!(!e.contains('\n'));
    }
}

#[test]
fn per_kind_values_are_checked() {
    let dir = Dir::new();
    for (provider, rest, expect) in [
        ("kind = \"hostup-legacy\"", "", "needs provider.vmid"),
        (
            "kind = \"hostup-legacy\"\nvmid = 0",
            "",
            "provider.vmid must be 1 or more",
        ),
        ("kind = \"hostup-legacy\"\nvmid = -3", "", "invalid value"),
        (
            "kind = \"hostup-legacy\"\nvmid = \"10048\"",
            "",
            "invalid type",
        ),
        (
            "kind = \"digitalocean\"\ndroplet_id = 0",
            "",
            "droplet_id must be 1 or more",
        ),
        (
            "kind = \"digitalocean\"\nreserved_ipv6 = [\"nope\"]",
            "",
            "reserved_ipv6[0] \"nope\" is not an IPv6 address",
        ),
        (
            "kind = \"digitalocean\"\nreserved_ipv6 = [\"fe80::1\"]",
            "",
            "link-local",
        ),
        (
            "kind = \"digitalocean\"\nreserved_ipv6 = [\"2604:a880::1\", \"2604:A880::1\"]",
            "",
            "listed twice",
        ),
        (
            "kind = \"digitalocean\"\nclaim = true",
            "",
            "claim = true needs provider.reserved_ipv6",
        ),
        (
            "kind = \"hostup\"\noutbound_source = true",
            "",
            "provider.outbound_source does not apply to kind = \"hostup\"",
        ),
        (
            "kind = \"digitalocean\"\nmetadata_url = \"http://10.0.0.1\"",
            "",
            "only for loopback hosts and 169.254.169.254",
        ),
        (
            "kind = \"digitalocean\"\nbase_url = \"http://169.254.169.254\"",
            "",
            "only for loopback hosts, not",
        ),
        (
            "kind = \"digitalocean\"",
            "[prefix]\nmode = \"anyip\"\n",
            "prefix.mode does not apply",
        ),
        (
            "kind = \"digitalocean\"",
            "[prefix]\naddresses = [\"::1\"]\n",
            "prefix.addresses does not apply",
        ),
        ("kind = \"static\"", "", "needs provider.routes"),
        (
            "kind = \"static\"\nroutes = [ { prefix = \"2001:db8:42:100::1/64\", next_hop = \"2001:db8::10\" } ]",
            "",
            "provider.routes[0].prefix 2001:db8:42:100::1/64 has host bits set",
        ),
        (
            "kind = \"static\"\nroutes = [ { prefix = \"2001:db8:42:100::/64\", next_hop = \"2001:db8::10\" }, { prefix = \"2001:db8:42:100::/64\", next_hop = \"2001:db8::11\" } ]",
            "",
            "already provider.routes[0]",
        ),
        (
            "kind = \"static\"\nroutes = [ { prefix = \"2001:db8:42:100::/64\", via = \"2001:db8::10\" } ]",
            "",
            "unknown field `via`",
        ),
        ("kind = \"ovh\"", "", "unknown variant `ovh`"),
    ] {
        let e = err(kind_config(&dir, provider, rest));
        assert!(e.contains(expect), "{provider}: {e}");
        assert!(e.starts_with("/etc/routed6d/routed6d.toml:"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
    // The metadata service's address and loopback are fine as plain http.
    for ok in ["http://169.254.169.254", "http://127.0.0.1:8080"] {
        kind_config(
            &dir,
            &format!("kind = \"digitalocean\"\nmetadata_url = \"{ok}\""),
            "",
        )
        .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

/// Every example in config/examples/ loads as `routed6d check-config` would load it.
#[test]
fn shipped_examples_are_valid() {
    let dir = Dir::new();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&examples).expect("config/examples") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        // Point token_file at a real private file; keep everything else as shipped.
        let text = text.replace("/etc/routed6d/token", &dir.token().display().to_string());
        let config =
            Config::from_text(&path, &text, Some(dir.dir.path())).unwrap_or_else(|e| panic!("{e}"));
        seen.push((
            path.file_name().unwrap().to_string_lossy().to_string(),
            config.provider.kind(),
            match &config.provider.settings {
                ProviderSettings::Hostup(h) => h.source,
                _ => HostupSource::Vps,
            },
        ));
        assert!(
            text.lines()
                .filter(|l| l.trim_start().starts_with('#'))
                .count()
                >= 5,
            "{}: commented",
            path.display()
        );
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        vec![
            (
                "digitalocean.toml".into(),
                ProviderKind::DigitalOcean,
                HostupSource::Vps
            ),
            (
                "hostup-account.toml".into(),
                ProviderKind::Hostup,
                HostupSource::Account
            ),
            (
                "hostup-legacy.toml".into(),
                ProviderKind::HostupLegacy,
                HostupSource::Vps
            ),
            (
                "onlink.toml".into(),
                ProviderKind::Onlink,
                HostupSource::Vps
            ),
            (
                "static.toml".into(),
                ProviderKind::Static,
                HostupSource::Vps
            ),
        ]
    );
}

#[test]
fn account_pool_and_prefix_length() {
    let dir = Dir::new();
    let c = kind_config(
        &dir,
        "kind = \"hostup\"\nsource = \"account\"\npool = \"ripv6_pool3\"\nprefix_length = 56",
        "",
    )
    .expect("account with pool");
    assert_eq!(hostup(&c).pool.as_deref(), Some("ripv6_pool3"));
    assert_eq!(hostup(&c).prefix_length, Some(56));
    for (provider, line, wanted) in [
        (
            "kind = \"hostup\"\nsource = \"account\"\nprefix_length = 60",
            4,
            "provider.prefix_length 60 is not 48, 56 or 64",
        ),
        (
            "kind = \"hostup\"\nsource = \"account\"\nprefix_length = -1",
            4,
            "provider.prefix_length -1 is not 48, 56 or 64",
        ),
        (
            "kind = \"hostup\"\nsource = \"account\"\npool = \"../x\"",
            4,
            "provider.pool \"../x\" is not a pool id",
        ),
        (
            "kind = \"hostup\"\npool = \"ripv6_a\"",
            3,
            "provider.pool applies only to source = \"account\"",
        ),
        (
            "kind = \"hostup-legacy\"\nvmid = 3\nprefix_length = 64",
            4,
            "does not apply to kind = \"hostup-legacy\"",
        ),
    ] {
        let message = err(kind_config(&dir, provider, ""));
        assert!(message.contains(&format!(":{line}: ")), "{message}");
        assert!(message.contains(wanted), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }
}

/// `provider.max_prefixes`: 64 unless set, for every kind; 1 to 1024, anything else
/// one line naming the key and its line. Static routes are held to it (and to the
/// next-hop bound) when the file is read (issue 14, item 9).
#[test]
fn max_prefixes_defaults_applies_to_every_kind_and_is_bounded() {
    let dir = Dir::new();
    let c = kind_config(&dir, "kind = \"hostup\"", "").expect("default");
    assert_eq!(c.provider.max_prefixes, 64);
    for provider in [
        "kind = \"hostup\"",
        "kind = \"hostup-legacy\"\nvmid = 3",
        "kind = \"digitalocean\"",
        "kind = \"static\"\nroutes = [ { prefix = \"2001:db8:42:100::/64\", next_hop = \"2001:db8::10\" } ]",
    ] {
        for (value, max) in [(1, 1), (8, 8), (1024, 1024)] {
            let c = kind_config(&dir, &format!("{provider}\nmax_prefixes = {value}"), "")
                .unwrap_or_else(|e| panic!("{provider}: {e}"));
            assert_eq!(c.provider.max_prefixes, max, "{provider}");
        }
    }
    for (value, wanted) in [
        (
            "0",
            "provider.max_prefixes 0 is out of range: write 1 to 1024 (default 64)",
        ),
        (
            "-3",
            "provider.max_prefixes -3 is out of range: write 1 to 1024 (default 64)",
        ),
        (
            "1025",
            "provider.max_prefixes 1025 is out of range: write 1 to 1024 (default 64)",
        ),
        (
            "\"many\"",
            "provider.max_prefixes: invalid type: string \"many\", expected i64",
        ),
    ] {
        let message = err(kind_config(
            &dir,
            &format!("kind = \"hostup\"\nmax_prefixes = {value}"),
            "",
        ));
        assert_eq!(
            message,
            format!("/etc/routed6d/routed6d.toml:3: {wanted}"),
            "max_prefixes = {value}"
        );
    }

    let route = |i: usize, hop: &str| {
        format!("{{ prefix = \"2001:db8:42:{i:x}::/64\", next_hop = \"{hop}\" }}")
    };
    let routes = |n: usize, hop: &dyn Fn(usize) -> String| {
        (0..n)
            .map(|i| route(i, &hop(i)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let same = |_: usize| "2001:db8::10".to_string();
    let own = |i: usize| format!("2001:db8::{:x}", 0x10 + i);
    let c = kind_config(
        &dir,
        &format!(
            "kind = \"static\"\nmax_prefixes = 3\nroutes = [ {} ]",
            routes(3, &same)
        ),
        "",
    )
    .expect("three routes, three allowed");
    assert!(matches!(c.provider.settings, ProviderSettings::Static(ref r) if r.len() == 3));
    let message = err(kind_config(
        &dir,
        &format!(
            "kind = \"static\"\nmax_prefixes = 3\nroutes = [ {} ]",
            routes(4, &same)
        ),
        "",
    ));
    assert_eq!(
        message,
        "/etc/routed6d/routed6d.toml:4: provider.routes has 4 routes, more than provider.max_prefixes = 3"
    );
    kind_config(
        &dir,
        &format!("kind = \"static\"\nroutes = [ {} ]", routes(8, &own)),
        "",
    )
    .expect("eight next hops");
    let message = err(kind_config(
        &dir,
        &format!("kind = \"static\"\nroutes = [ {} ]", routes(9, &own)),
        "",
    ));
    assert_eq!(
        message,
        "/etc/routed6d/routed6d.toml:3: provider.routes: more than 8 distinct next hops; refusing it"
    );
}

#[test]
fn metrics_probe_and_hooks_are_off_unless_configured() {
    let dir = Dir::new();
    let config = dir
        .parse("[uplink]\ninterface = \"eth0\"\n")
        .expect("valid");
    assert_eq!(config.metrics, MetricsConfig::default());
    assert_eq!(config.probe, None);
    assert!(config.hooks.is_empty());
}

#[test]
fn metrics_probe_and_hooks_are_read_with_their_defaults() {
    let dir = Dir::new();
    let config = dir
        .parse(
            "[uplink]\ninterface = \"eth0\"\n\
             [metrics]\nlisten = \"[::1]:9626\"\ntextfile = \"/var/lib/prometheus/node-exporter/routed6d.prom\"\n\
             [probe]\ntarget = \"2001:4860:4860::8888\"\n\
             [[hook]]\nexec = \"/usr/local/lib/routed6d/nft-set\"\n\
             [[hook]]\nexec = \"/usr/local/lib/routed6d/dns\"\ntimeout = \"30s\"\n",
        )
        .expect("valid");
    assert_eq!(
        config.metrics.listen,
        Some("[::1]:9626".parse().expect("addr"))
    );
    assert_eq!(
        config.metrics.textfile.as_deref(),
        Some(Path::new("/var/lib/prometheus/node-exporter/routed6d.prom"))
    );
    let probe = config.probe.expect("probe");
    assert_eq!(
        probe.target,
        "2001:4860:4860::8888".parse::<Ipv6Addr>().expect("ip")
    );
    assert_eq!(probe.interval, DEFAULT_PROBE_INTERVAL);
    assert_eq!(probe.timeout, DEFAULT_PROBE_TIMEOUT);
    assert_eq!(
        probe.tcp_port, None,
        "the echo alone unless tcp_port is set"
    );
    assert_eq!(
        config.hooks,
        vec![
            HookConfig {
                exec: "/usr/local/lib/routed6d/nft-set".into(),
                timeout: DEFAULT_HOOK_TIMEOUT
            },
            HookConfig {
                exec: "/usr/local/lib/routed6d/dns".into(),
                timeout: Duration::from_secs(30)
            },
        ]
    );
    // A short interval shortens the default timeout with it.
    let short = dir
        .parse("[uplink]\ninterface = \"eth0\"\n[probe]\ntarget = \"2001:db8:1::1\"\ninterval = \"1s\"\n")
        .expect("valid");
    assert_eq!(
        short.probe.expect("probe").timeout,
        Duration::from_millis(500)
    );
}

/// `probe.tcp_port`: the TCP connect beside the echo, on any port from 1 to 65535.
#[test]
fn the_probe_connects_over_tcp_only_when_a_port_is_given() {
    let dir = Dir::new();
    for port in [1u16, 443, 65535] {
        let config = dir
            .parse(&format!(
                "[uplink]\ninterface = \"eth0\"\n[probe]\ntarget = \"2001:db8:1::1\"\ntcp_port = {port}\n"
            ))
            .expect("valid");
        let probe = config.probe.expect("probe");
        assert_eq!(probe.tcp_port, Some(port));
        assert_eq!(probe.timeout, DEFAULT_PROBE_TIMEOUT, "one timeout for both");
    }
}

#[test]
fn bad_metrics_probe_and_hook_keys_are_named_with_their_line() {
    let dir = Dir::new();
    // Lines: 1-3 [provider], 4 [uplink], 5 interface, then the body's own lines.
    let cases = [
        (
            "[metrics]\nlisten = \"9626\"\n",
            "7: metrics.listen: \"9626\" is not an address and port such as \"[::1]:9626\"",
        ),
        (
            "[metrics]\nlisten = \"[::1]:0\"\n",
            "7: metrics.listen: \"[::1]:0\" has port 0: Prometheus needs a fixed port such as 9626",
        ),
        (
            "[metrics]\ntextfile = \"routed6d.prom\"\n",
            "7: metrics.textfile routed6d.prom is not an absolute path",
        ),
        (
            "[metrics]\ntextfile = \"/var/lib/x/routed6d.txt\"\n",
            "7: metrics.textfile /var/lib/x/routed6d.txt does not end in .prom (node_exporter's textfile collector reads only *.prom)",
        ),
        (
            "[metrics]\nport = 9626\n",
            "7: metrics.port: unknown field `port`, expected `listen` or `textfile`",
        ),
        (
            "[probe]\ntarget = \"fe80::1\"\n",
            "7: probe.target: fe80::1 is link-local: it never crosses the provider's router; name an address beyond the provider's router, such as a public DNS resolver",
        ),
        (
            "[probe]\ntarget = \"8.8.8.8\"\n",
            "7: probe.target: \"8.8.8.8\" is not an IPv6 address",
        ),
        ("[probe]\ninterval = \"10s\"\n", "6: missing field `target`"),
        (
            "[probe]\ntarget = \"2001:db8:1::1\"\ninterval = \"5s\"\ntimeout = \"5s\"\n",
            "9: probe.timeout 5s is not shorter than probe.interval 5s",
        ),
        (
            "[probe]\ntarget = \"2001:db8:1::1\"\ntcp_port = 0\n",
            "8: probe.tcp_port 0 is out of range: write 1 to 65535, a port probe.target answers or refuses such as 443",
        ),
        (
            "[probe]\ntarget = \"2001:db8:1::1\"\ninterval = \"5s\"\ntcp_port = 65536\n",
            "9: probe.tcp_port 65536 is out of range: write 1 to 65535, a port probe.target answers or refuses such as 443",
        ),
        (
            "[probe]\ntarget = \"2001:db8:1::1\"\ntcp_port = -443\n",
            "8: probe.tcp_port -443 is out of range: write 1 to 65535, a port probe.target answers or refuses such as 443",
        ),
        (
            "[probe]\ntarget = \"2001:db8:1::1\"\ntcp_port = \"https\"\n",
            "8: probe.tcp_port: invalid type: string \"https\", expected i64",
        ),
        (
            "[[hook]]\nexec = \"/bin/true\"\n[[hook]]\nexec = \"hook.sh\"\n",
            "9: hook[1].exec hook.sh is not an absolute path",
        ),
        (
            "[[hook]]\nexec = \"/bin/true\"\ntimeout = \"1h\"\n",
            "8: hook[0].timeout 1h is longer than the maximum of 10m",
        ),
        (
            "[[hook]]\nexec = \"/bin/true\"\ntimeout = 10\n",
            "8: hook.timeout: invalid type: integer `10`, expected a string",
        ),
        (
            "[[hook]]\nexec = \"/bin/true\"\nargs = [\"x\"]\n",
            "8: hook.args: unknown field `args`, expected `exec` or `timeout`",
        ),
    ];
    for (body, want) in cases {
        let got = err(dir.parse(&format!("[uplink]\ninterface = \"eth0\"\n{body}")));
        assert_eq!(got, format!("/etc/routed6d/routed6d.toml:{want}"), "{body}");
    }
}

/// `[[workload]]` tables after a HostUp `[uplink]`.
fn workloads(dir: &Dir, body: &str) -> Result<Config, ConfigError> {
    dir.parse(&format!("[uplink]\ninterface = \"eth0\"\n{body}"))
}

#[test]
fn workloads_parse_with_the_contract_keys_and_get_slots() {
    let dir = Dir::new();
    let c = workloads(
        &dir,
        "[[workload]]\nname = \"web\"\nkind = \"bridge\"\ninterface = \"br-web\"\nprefix_length = 64\n[[workload]]\nname = \"db\"\nkind = \"bridge\"\ninterface = \"br-db\"\nprefix_length = 64\nslot = 9\n",
    )
    .expect("config");
    assert_eq!(
        c.workloads,
        vec![
            WorkloadConfig {
                name: "web".into(),
                kind: WorkloadKind::Bridge,
                interface: "br-web".into(),
                prefix_length: 64,
                slot: 1,
                slot_pinned: false,
                docker_network: None,
            },
            WorkloadConfig {
                name: "db".into(),
                kind: WorkloadKind::Bridge,
                interface: "br-db".into(),
                prefix_length: 64,
                slot: 9,
                slot_pinned: true,
                docker_network: None,
            },
        ]
    );
    assert!(workloads(&dir, "").expect("config").workloads.is_empty());
}

#[test]
fn docker_workloads_parse_with_their_network_and_a_bridge_name() {
    let dir = Dir::new();
    let c = workloads(
        &dir,
        "[docker]\nsocket = \"/srv/docker.sock\"\n[[workload]]\nname = \"web\"\nkind = \"docker\"\ndocker_network = \"web\"\nprefix_length = 80\n[[workload]]\nname = \"a-very-long-name\"\nkind = \"docker\"\ndocker_network = \"db.net\"\ninterface = \"br-db\"\nprefix_length = 80\n",
    )
    .expect("config");
    assert_eq!(
        c.docker_socket,
        std::path::PathBuf::from("/srv/docker.sock")
    );
    let got: Vec<(&str, Option<&str>, u64)> = c
        .workloads
        .iter()
        .map(|w| (w.interface.as_str(), w.docker_network.as_deref(), w.slot))
        .collect();
    assert_eq!(
        got,
        vec![("dk-web", Some("web"), 1), ("br-db", Some("db.net"), 2)]
    );
    assert_eq!(
        workloads(&dir, "").expect("config").docker_socket,
        std::path::PathBuf::from("/run/docker.sock")
    );
    // Two workloads on one network, or two names that cut to one bridge name.
    let path = "/etc/routed6d/routed6d.toml";
    let one = "[[workload]]\nname = \"web\"\nkind = \"docker\"\ndocker_network = \"web\"\nprefix_length = 80\n";
    assert_eq!(
        err(workloads(
            &dir,
            &format!(
                "{one}[[workload]]\nname = \"api\"\nkind = \"docker\"\ndocker_network = \"web\"\nprefix_length = 80\n"
            ),
        )),
        format!("{path}:14: workload[1].docker_network \"web\" is already workload \"web\"'s")
    );
    assert_eq!(
        err(workloads(
            &dir,
            "[[workload]]\nname = \"frontend-one-a\"\nkind = \"docker\"\ndocker_network = \"a\"\nprefix_length = 80\n[[workload]]\nname = \"frontend-one-b\"\nkind = \"docker\"\ndocker_network = \"b\"\nprefix_length = 80\n",
        )),
        format!(
            "{path}:11: workload[1].interface dk-frontend-one is already workload \"frontend-one-a\"'s"
        )
    );
    assert_eq!(
        err(workloads(&dir, "[docker]\nsocket = \"docker.sock\"\n")),
        format!("{path}:7: docker.socket docker.sock is not an absolute path")
    );
}

#[test]
fn bad_workloads_are_refused_with_their_line() {
    let dir = Dir::new();
    let w = |body: &str| {
        err(workloads(
            &dir,
            &format!("[[workload]]\nname = \"web\"\n{body}"),
        ))
    };
    let path = "/etc/routed6d/routed6d.toml";
    assert_eq!(
        w("kind = \"bridge\"\ninterface = \"br-web\"\nprefix_length = 0\n"),
        format!("{path}:10: workload[0].prefix_length 0 is not 1 to 128")
    );
    assert_eq!(
        w("kind = \"bridge\"\nprefix_length = 64\n"),
        format!(
            "{path}:8: workload[0]: kind = \"bridge\" needs interface, e.g. interface = \"br-web\""
        )
    );
    assert_eq!(
        w("kind = \"bridge\"\ninterface = \"eth0\"\nprefix_length = 64\n"),
        format!(
            "{path}:9: workload[0].interface eth0 is the uplink, lo or prefix.interface: a workload needs its own bridge"
        )
    );
    assert_eq!(
        w("kind = \"docker\"\nprefix_length = 80\n"),
        format!(
            "{path}:8: workload[0]: kind = \"docker\" needs docker_network, e.g. docker_network = \"web\""
        )
    );
    assert_eq!(
        w("kind = \"docker\"\ndocker_network = \"-web\"\nprefix_length = 80\n"),
        format!(
            "{path}:9: workload[0].docker_network \"-web\" is not a Docker network name (1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit)"
        )
    );
    assert_eq!(
        w(
            "kind = \"bridge\"\ninterface = \"br-web\"\ndocker_network = \"web\"\nprefix_length = 80\n"
        ),
        format!("{path}:10: workload[0].docker_network applies only to kind = \"docker\"")
    );
    assert_eq!(
        w("kind = \"bridge\"\ninterface = \"br-web\"\nprefix_length = 64\nslot = 0\n"),
        format!(
            "{path}:11: workload \"web\" asks for slot 0, which is the host's own (its addresses live there)"
        )
    );
    assert!(
        w("kind = \"bridge\"\ninterface = \"br-web\"\nprefix_length = 64\ncolour = 1\n")
            .contains("unknown field `colour`")
    );
    let twice = err(workloads(
        &dir,
        "[[workload]]\nname = \"web\"\nkind = \"bridge\"\ninterface = \"br-a\"\nprefix_length = 64\n[[workload]]\nname = \"web\"\nkind = \"bridge\"\ninterface = \"br-b\"\nprefix_length = 64\n",
    ));
    assert_eq!(
        twice,
        format!("{path}:12: workload[1].name \"web\" is already a workload's name")
    );
    let anyip = err(dir.parse(
        "[uplink]\ninterface = \"eth0\"\n[prefix]\nmode = \"anyip\"\n[[workload]]\nname = \"web\"\nkind = \"bridge\"\ninterface = \"br-web\"\nprefix_length = 64\n",
    ));
    assert!(
        anyip.contains("does not go with prefix.mode = \"anyip\""),
        "{anyip}"
    );
}

#[test]
fn static_routes_refuse_a_workload_that_does_not_fit_at_check_config() {
    let text = |length: u8| {
        format!(
            "[provider]\nkind = \"static\"\nroutes = [ {{ prefix = \"2001:db8:42:100::/{length}\", next_hop = \"2001:db8::10\" }} ]\n[uplink]\ninterface = \"eth0\"\n[[workload]]\nname = \"web\"\nkind = \"bridge\"\ninterface = \"br-web\"\nprefix_length = 64\n"
        )
    };
    let path = Path::new("/etc/routed6d/routed6d.toml");
    assert!(Config::from_text(path, &text(56), None).is_ok());
    let e = Config::from_text(path, &text(64), None).expect_err("does not fit");
    assert_eq!(
        e.to_string(),
        "/etc/routed6d/routed6d.toml:10: workload \"web\": prefix_length 64 is not longer than the routed prefix 2001:db8:42:100::/64: there is no room for the host's slot beside it"
    );
}

/// An on-link config: `provider` lines after `kind = "onlink"`, then `rest`.
fn onlink(provider: &str, rest: &str) -> Result<Config, ConfigError> {
    let text = format!(
        "[provider]\nkind = \"onlink\"\n{provider}\n[uplink]\ninterface = \"eth0\"\n{rest}"
    );
    Config::from_text(Path::new("/etc/routed6d/routed6d.toml"), &text, None)
}

const WEB80: &str =
    "[[workload]]\nname = \"web\"\nkind = \"bridge\"\ninterface = \"br-web\"\nprefix_length = 80\n";

#[test]
fn onlink_takes_a_written_or_detected_64_and_needs_no_token() {
    let c = onlink("prefix = \"2001:db8:1::/64\"", WEB80).expect("config");
    assert!(matches!(
        c.provider.settings,
        ProviderSettings::Onlink(Some(p)) if p == "2001:db8:1::/64".parse().unwrap()
    ));
    assert!(c.provider.api().is_none());
    assert!(c.read_token().unwrap().is_none());
    assert_eq!(c.workloads[0].slot, 1);
    let c = onlink("", WEB80).expect("config");
    assert!(matches!(
        c.provider.settings,
        ProviderSettings::Onlink(None)
    ));
}

#[test]
fn onlink_bad_combinations_are_one_line_each() {
    let cases = [
        (
            onlink("prefix = \"2001:db8:1::/56\"", WEB80),
            ":3: provider.prefix 2001:db8:1::/56 is not a /64",
        ),
        (
            onlink("prefix = \"2001:db8:1::5/64\"", WEB80),
            "has host bits set; write its network, 2001:db8:1::/64",
        ),
        (
            onlink("prefix = \"fe80::/64\"", WEB80),
            "is not a prefix of global unicast addresses",
        ),
        (onlink("prefix = \"nope\"", WEB80), "is not an IPv6 prefix"),
        (
            onlink("token_file = \"/etc/t\"", WEB80),
            "provider.token_file does not apply to kind = \"onlink\"",
        ),
        (
            onlink("", ""),
            "kind = \"onlink\" needs at least one [[workload]]",
        ),
        (
            onlink("", &format!("[prefix]\nmode = \"anyip\"\n{WEB80}")),
            "prefix.mode does not apply to kind = \"onlink\"",
        ),
        (
            onlink("", &format!("[prefix]\nunreachable = false\n{WEB80}")),
            "prefix.unreachable does not apply to kind = \"onlink\"",
        ),
        (
            onlink("", &WEB80.replace("= 80", "= 64")),
            "workload[0].prefix_length 64 does not fit in the on-link /64 beside the host",
        ),
        (
            onlink("", &format!("{WEB80}slot = 0\n")),
            "slot 0, which is the host's own",
        ),
        (
            onlink(
                "prefix = \"2001:db8:1::/64\"",
                &WEB80
                    .replace("= 80", "= 66")
                    .replace("br-web\"\n", "br-web\"\nslot = 4\n"),
            ),
            "slot 4 of /66 does not fit in the routed prefix 2001:db8:1::/64",
        ),
    ];
    for (result, wanted) in cases {
        let message = err(result);
        assert!(message.contains(wanted), "{message:?} lacks {wanted:?}");
        assert!(!message.contains('\n'), "{message:?}");
    }
}
