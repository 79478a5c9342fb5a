//! Bad input and the exact message the user sees (issue 5): every configuration key
//! with a wrong type, unknown keys and sections, keys that conflict, the token file
//! missing, empty, readable by others or a symlink, an interface that does not exist, unknown
//! flags and commands, `release` without `--yes`. Each is refused with exit 78
//! (configuration) or 64 (usage) and exactly one line on stderr naming what is wrong;
//! the tests compare that line in full. No root needed: nothing here reaches the
//! kernel or the network.

use std::path::{Path, PathBuf};
use std::process::Command;

/// sysexits: EX_USAGE and EX_CONFIG.
const USAGE: i32 = 64;
const CONFIG: i32 = 78;

/// A token file and a complete HostUp config beside it, every key set.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = Files { dir };
        files.token("token", "secret-0123", 0o600);
        files
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn token(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(name);
        std::fs::write(&path, text).expect("token");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    /// The reference config: every key of kind hostup, one per line (line numbers
    /// below count on it).
    fn base(&self) -> String {
        format!(
            "[provider]\n\
             kind = \"hostup\"\n\
             source = \"vps\"\n\
             base_url = \"http://127.0.0.1:1\"\n\
             token_file = \"{}\"\n\
             vps_id = \"vps_01hxa3b4c5d6e7f8g9h0j1k2m3\"\n\
             poll_interval = \"60s\"\n\
             allocate = false\n\
             refresh_next_hop = \"auto\"\n\
             [uplink]\n\
             interface = \"lo\"\n\
             next_hop = \"ensure\"\n\
             next_hop_grace = \"10s\"\n\
             keep_accept_ra = true\n\
             [prefix]\n\
             mode = \"addresses\"\n\
             addresses = [\"::1\"]\n\
             interface = \"lo\"\n\
             unreachable = true\n\
             [daemon]\n\
             on_stop = \"keep\"\n\
             protocol = 126\n\
             status_file = \"{}\"\n",
            self.path("token").display(),
            self.path("status.json").display()
        )
    }

    /// Write `text` as the config; its path.
    fn config(&self, text: &str) -> PathBuf {
        let path = self.path("routed6d.toml");
        std::fs::write(&path, text).expect("config");
        path
    }
}

/// `text` with `key = value` in `[section]`: the existing line replaced, or (for keys
/// the base does not set) added right after the header. Returns the text and the line.
fn with_key(text: &str, section: &str, key: &str, value: &str) -> (String, usize) {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let header = lines
        .iter()
        .position(|l| *l == format!("[{section}]"))
        .expect("section");
    let end = lines[header + 1..]
        .iter()
        .position(|l| l.starts_with('['))
        .map_or(lines.len(), |i| header + 1 + i);
    let existing = (header + 1..end).find(|&i| lines[i].starts_with(&format!("{key} =")));
    let index = match existing {
        Some(i) => {
            lines[i] = format!("{key} = {value}");
            i
        }
        None => {
            lines.insert(header + 1, format!("{key} = {value}"));
            header + 1
        }
    };
    (lines.join("\n") + "\n", index + 1)
}

/// Run routed6d; its exit code and stderr.
fn routed6d(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_routed6d"))
        .args(args)
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .expect("run routed6d");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `check-config` on `config`: the exit code and the one line, which must be all.
fn refused(config: &Path) -> (i32, String) {
    let (code, stderr) = routed6d(&["check-config", "--config", config.to_str().expect("path")]);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line: {stderr:?}");
    (code, lines[0].to_string())
}

#[test]
fn the_reference_config_is_accepted() {
    let files = Files::new();
    let config = files.config(&files.base());
    let (code, stderr) = routed6d(&["check-config", "--config", config.to_str().expect("path")]);
    assert_eq!((code, stderr.as_str()), (0, ""), "{stderr}");
}

/// Every key of every kind, one at a time, with a value of the wrong type: the line
/// names the file, the line, the key (`section.key`) and what was expected.
#[test]
fn every_key_with_a_wrong_type_is_named() {
    let files = Files::new();
    let cases: &[(&str, &str, &str, &str)] = &[
        ("provider", "kind", "5", "invalid type: expected a string"),
        ("provider", "source", "5", "invalid type: expected a string"),
        (
            "provider",
            "base_url",
            "5",
            "invalid type: integer `5`, expected a string",
        ),
        (
            "provider",
            "token_file",
            "5",
            "invalid type: integer `5`, expected path string",
        ),
        (
            "provider",
            "vps_id",
            "5",
            "invalid type: integer `5`, expected a string",
        ),
        (
            "provider",
            "poll_interval",
            "5",
            "invalid type: integer `5`, expected a string",
        ),
        (
            "provider",
            "allocate",
            "\"yes\"",
            "invalid type: string \"yes\", expected a boolean",
        ),
        (
            "provider",
            "refresh_next_hop",
            "true",
            "invalid type: expected a string",
        ),
        (
            "provider",
            "vmid",
            "\"ten\"",
            "invalid type: string \"ten\", expected u64",
        ),
        (
            "provider",
            "droplet_id",
            "\"x\"",
            "invalid type: string \"x\", expected u64",
        ),
        (
            "provider",
            "metadata_url",
            "5",
            "invalid type: integer `5`, expected a string",
        ),
        (
            "provider",
            "reserved_ipv6",
            "\"2001:db8::1\"",
            "invalid type: string \"2001:db8::1\", expected a sequence",
        ),
        (
            "provider",
            "claim",
            "1",
            "invalid type: integer `1`, expected a boolean",
        ),
        (
            "provider",
            "outbound_source",
            "\"no\"",
            "invalid type: string \"no\", expected a boolean",
        ),
        (
            "provider",
            "routes",
            "\"2001:db8::/64\"",
            "invalid type: string \"2001:db8::/64\", expected a sequence",
        ),
        (
            "uplink",
            "interface",
            "5",
            "invalid type: integer `5`, expected a string",
        ),
        ("uplink", "next_hop", "5", "invalid type: expected a string"),
        (
            "uplink",
            "next_hop_grace",
            "5",
            "invalid type: integer `5`, expected a string",
        ),
        (
            "uplink",
            "next_hop_grace",
            "\"1h\"",
            "\"1h\" is longer than the maximum of 10m",
        ),
        (
            "daemon",
            "protocol_shared",
            "\"yes\"",
            "invalid type: string \"yes\", expected a boolean",
        ),
        (
            "uplink",
            "keep_accept_ra",
            "\"yes\"",
            "invalid type: string \"yes\", expected a boolean",
        ),
        ("prefix", "mode", "5", "invalid type: expected a string"),
        (
            "prefix",
            "addresses",
            "\"::1\"",
            "invalid type: string \"::1\", expected a sequence",
        ),
        (
            "prefix",
            "interface",
            "[1]",
            "invalid type: sequence, expected a string",
        ),
        (
            "prefix",
            "unreachable",
            "\"no\"",
            "invalid type: string \"no\", expected a boolean",
        ),
        ("daemon", "on_stop", "1", "invalid type: expected a string"),
        (
            "daemon",
            "protocol",
            "\"x\"",
            "invalid type: string \"x\", expected u8",
        ),
        (
            "daemon",
            "protocol",
            "300",
            "invalid value: integer `300`, expected u8",
        ),
        (
            "daemon",
            "status_file",
            "5",
            "invalid type: integer `5`, expected path string",
        ),
    ];
    for (section, key, value, message) in cases {
        let (text, line) = with_key(&files.base(), section, key, value);
        let config = files.config(&text);
        let (code, got) = refused(&config);
        let want = format!(
            "routed6d: {}:{line}: {section}.{key}: {message}",
            config.display()
        );
        assert_eq!(
            (code, got.as_str()),
            (CONFIG, want.as_str()),
            "{section}.{key} = {value}"
        );
    }
}

#[test]
fn unknown_keys_and_sections_are_named() {
    let files = Files::new();
    for section in ["provider", "uplink", "prefix", "daemon"] {
        let (text, line) = with_key(&files.base(), section, "colour", "\"blue\"");
        let config = files.config(&text);
        let (code, got) = refused(&config);
        let prefix = format!(
            "routed6d: {}:{line}: {section}.colour: unknown field `colour`, expected",
            config.display()
        );
        assert_eq!(code, CONFIG);
        assert!(got.starts_with(&prefix), "{got}\nwanted {prefix}…");
    }
    let config = files.config(&(files.base() + "[extras]\nx = 1\n"));
    let (code, got) = refused(&config);
    assert_eq!(code, CONFIG);
    assert_eq!(
        got,
        format!(
            "routed6d: {}:24: unknown field `extras`, expected one of `provider`, `uplink`, `prefix`, `daemon`, `metrics`, `probe`, `hook`, `workload`, `docker`",
            config.display()
        )
    );
}

#[test]
fn conflicting_keys_are_refused_naming_both() {
    let files = Files::new();
    let cases: &[(&str, &str, &str, usize, &str)] = &[
        (
            "provider",
            "vmid",
            "10048",
            2,
            "provider.vmid does not apply to kind = \"hostup\" (its keys: base_url, token_file, vps_id, poll_interval, allocate, refresh_next_hop, source, pool, prefix_length, max_prefixes)",
        ),
        (
            "prefix",
            "mode",
            "\"anyip\"",
            17,
            "prefix.addresses applies only to prefix.mode = \"addresses\"",
        ),
    ];
    for (section, key, value, line, message) in cases {
        let (text, _) = with_key(&files.base(), section, key, value);
        let config = files.config(&text);
        let (code, got) = refused(&config);
        let want = format!("routed6d: {}:{line}: {message}", config.display());
        assert_eq!(
            (code, got.as_str()),
            (CONFIG, want.as_str()),
            "{section}.{key}"
        );
    }
    // Delegate mode onto the uplink would send the prefix back to the provider.
    let (text, _) = with_key(&files.base(), "prefix", "mode", "\"delegate\"");
    let (text, _) = with_key(&text, "uplink", "interface", "\"dl0\"");
    let (text, _) = with_key(&text, "prefix", "interface", "\"dl0\"");
    let text = text.replace("addresses = [\"::1\"]\n", "");
    let config = files.config(&text);
    let (code, got) = refused(&config);
    assert_eq!(code, CONFIG);
    assert_eq!(
        got,
        format!(
            "routed6d: {}:17: prefix.interface must not be the uplink in delegate mode: the prefix would be sent back to the provider",
            config.display()
        )
    );
}

/// The base config with `provider.token_file` at `token`, and how it is refused.
fn token_file_refused(files: &Files, token: &Path) -> (PathBuf, i32, String) {
    let (text, _) = with_key(
        &files.base(),
        "provider",
        "token_file",
        &format!("\"{}\"", token.display()),
    );
    let config = files.config(&text);
    let (code, got) = refused(&config);
    (config, code, got)
}

#[test]
fn a_missing_token_file_is_refused_saying_where_to_put_it() {
    let files = Files::new();
    let missing = files.path("nope");
    let (config, code, got) = token_file_refused(&files, &missing);
    assert_eq!(code, CONFIG);
    assert_eq!(
        got,
        format!(
            "routed6d: {}: provider.token_file {}: does not exist; write the API key there (chmod 600)",
            config.display(),
            missing.display()
        )
    );
}

#[test]
fn a_token_file_readable_by_others_is_refused_with_the_fix() {
    let files = Files::new();
    let token = files.token("open-token", "secret-0123", 0o644);
    let (config, code, got) = token_file_refused(&files, &token);
    assert_eq!(code, CONFIG);
    assert_eq!(
        got,
        format!(
            "routed6d: {}: provider.token_file {}: is readable by group or others (mode 0644); run: chmod 600 {}",
            config.display(),
            token.display(),
            token.display()
        )
    );
    assert!(!got.contains("secret-0123"), "the token is never shown");
}

#[test]
fn a_token_file_that_is_a_symlink_is_refused() {
    let files = Files::new();
    // Even to a private file: the link's target is whatever its owner points it at.
    let link = files.path("link-token");
    std::os::unix::fs::symlink(files.path("token"), &link).expect("symlink");
    let (config, code, got) = token_file_refused(&files, &link);
    assert_eq!(code, CONFIG);
    assert_eq!(
        got,
        format!(
            "routed6d: {}: provider.token_file {}: is a symbolic link; routed6d reads the key only from a regular file (point token_file at the file itself)",
            config.display(),
            link.display()
        )
    );
}

#[test]
fn an_empty_token_file_is_refused() {
    let files = Files::new();
    let token = files.token("empty-token", " \n", 0o600);
    let (config, code, got) = token_file_refused(&files, &token);
    assert_eq!(code, CONFIG);
    assert_eq!(
        got,
        format!(
            "routed6d: {}: provider.token_file {}: is empty; write the API key there",
            config.display(),
            token.display()
        )
    );
}

/// Decided: an interface that does not exist is not an error (a VLAN or veth may be
/// created after routed6d starts; `run` waits for it and programs it when it appears,
/// as faults_host proves). `check-config` accepts the file and notes it on stdout.
#[test]
fn a_nonexistent_interface_is_accepted_with_a_note() {
    let files = Files::new();
    let (text, _) = with_key(&files.base(), "uplink", "interface", "\"nosuch0\"");
    let config = files.config(&text);
    let out = Command::new(env!("CARGO_BIN_EXE_routed6d"))
        .args(["check-config", "--config", config.to_str().expect("path")])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().next(),
        Some(
            "note: interface nosuch0 does not exist (yet); routed6d run waits for it and programs it when it appears"
        ),
        "{stdout}"
    );
}

#[test]
fn plain_http_off_loopback_is_refused() {
    let files = Files::new();
    let (text, line) = with_key(
        &files.base(),
        "provider",
        "base_url",
        "\"http://192.0.2.1\"",
    );
    let config = files.config(&text);
    let (code, got) = refused(&config);
    assert_eq!(code, CONFIG);
    assert_eq!(
        got,
        format!(
            "routed6d: {}:{line}: provider.base_url: plain http:// is allowed only for loopback hosts, not 192.0.2.1; use https://",
            config.display()
        )
    );
}

#[test]
fn a_missing_config_file_is_refused() {
    let files = Files::new();
    let path = files.path("absent.toml");
    let (code, got) = refused(&path);
    assert_eq!(code, CONFIG);
    assert_eq!(
        got,
        format!(
            "routed6d: {}: cannot read: No such file or directory (os error 2)",
            path.display()
        )
    );
}

#[test]
fn unknown_flags_and_commands_are_usage_errors() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--frobnicate"],
            "routed6d: unexpected argument '--frobnicate' found (try 'routed6d --help')",
        ),
        (
            &["frobnicate"],
            "routed6d: unrecognized subcommand 'frobnicate' (try 'routed6d --help')",
        ),
        (
            &["status", "--yaml"],
            "routed6d: unexpected argument '--yaml' found (try 'routed6d --help')",
        ),
        (
            &["wait-online", "--timeout", "300000000000y"],
            "routed6d: invalid value '300000000000y' for '--timeout <DURATION>': longer than the maximum of 1d (try 'routed6d --help')",
        ),
    ];
    for (args, want) in cases {
        let (code, stderr) = routed6d(args);
        assert_eq!(
            (code, stderr.as_str()),
            (USAGE, format!("{want}\n").as_str()),
            "{args:?}"
        );
    }
}

#[test]
fn release_without_yes_is_a_usage_error_before_anything_is_read() {
    let files = Files::new();
    let config = files.config(&files.base());
    let want = "routed6d: release gives the routed prefix back and starts the provider's cooldown; run again with --yes to confirm\n";
    // With a good configuration, and with none at all: refused before reading it.
    for config in [config.to_str().expect("path"), "/nonexistent.toml"] {
        let (code, stderr) = routed6d(&["release", "--config", config]);
        assert_eq!((code, stderr.as_str()), (USAGE, want), "{config}");
    }
}

/// Values that were accepted and then hurt: a protocol number that is another
/// daemon's (its routes would be deleted on every pass), a poll interval so long that
/// adding it to the clock overflowed (a panic and a restart loop). See issue 15.
#[test]
fn another_daemons_protocol_and_absurd_durations_are_refused() {
    let files = Files::new();
    for (key, value, message) in [
        (
            "protocol",
            "9",
            "daemon.protocol 9 belongs to the kernel's router advertisements (ra) (iproute2's rt_protos): routed6d would delete its routes; pick an unused number such as 126, or set daemon.protocol_shared = true if nothing else on this host uses it",
        ),
        (
            "protocol",
            "186",
            "daemon.protocol 186 belongs to bgp (iproute2's rt_protos): routed6d would delete its routes; pick an unused number such as 126, or set daemon.protocol_shared = true if nothing else on this host uses it",
        ),
    ] {
        let (text, line) = with_key(&files.base(), "daemon", key, value);
        let config = files.config(&text);
        assert_eq!(
            refused(&config),
            (
                CONFIG,
                format!("routed6d: {}:{line}: {message}", config.display())
            ),
            "{key} = {value}"
        );
    }
    // Forced: accepted.
    let (text, _) = with_key(&files.base(), "daemon", "protocol", "18");
    let (text, _) = with_key(&text, "daemon", "protocol_shared", "true");
    let config = files.config(&text);
    let (code, stderr) = routed6d(&["check-config", "--config", config.to_str().expect("path")]);
    assert_eq!((code, stderr.as_str()), (0, ""), "{stderr}");

    let (text, line) = with_key(
        &files.base(),
        "provider",
        "poll_interval",
        "\"300000000000y\"",
    );
    let config = files.config(&text);
    assert_eq!(
        refused(&config),
        (
            CONFIG,
            format!(
                "routed6d: {}:{line}: provider.poll_interval: \"300000000000y\" is longer than the maximum of 1d",
                config.display()
            )
        )
    );
}
