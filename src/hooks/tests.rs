use super::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn prefix(text: &str, hop: &str, origin: &str) -> RoutedPrefix {
    RoutedPrefix {
        workload: None,
        prefix: text.parse().expect("prefix"),
        next_hop: Some(hop.parse().expect("hop")),
        origin: origin.into(),
    }
}

fn answer<const N: usize>(prefixes: [&RoutedPrefix; N]) -> Assignment {
    Assignment {
        prefixes: prefixes.into_iter().cloned().collect(),
        ..Assignment::default()
    }
}

fn events(changes: &[Change]) -> Vec<(&'static str, String, String)> {
    changes
        .iter()
        .map(|c| {
            let text =
                |p: &Option<RoutedPrefix>| p.as_ref().map(|p| p.describe()).unwrap_or_default();
            (c.event.name(), text(&c.prefix), text(&c.old))
        })
        .collect()
}

fn config(extra: &str) -> Config {
    let text = format!(
        "[provider]\nkind = \"hostup\"\nvps_id = \"vps_1\"\n[uplink]\ninterface = \"eth0\"\n{extra}"
    );
    Config::from_text(Path::new("t.toml"), &text, None).expect("config")
}

#[test]
fn a_change_is_named_by_what_happened_to_each_prefix() {
    let a = prefix("2001:db8:42:100::/64", "2001:db8:1::10", "ripv6_a");
    let a2 = prefix("2001:db8:42:100::/64", "2001:db8:1::20", "ripv6_a");
    let b = prefix("2001:db8:42:200::/64", "2001:db8:1::10", "ripv6_b");
    let c = prefix("2001:db8:42:300::/64", "2001:db8:1::10", "ripv6_c");

    assert_eq!(
        events(&changes(None, &answer([&a, &b]))),
        vec![
            ("start", a.describe(), String::new()),
            ("start", b.describe(), String::new())
        ]
    );
    assert_eq!(
        events(&changes(None, &answer([]))),
        vec![("start", String::new(), String::new())],
        "nothing routed at start is told too"
    );
    let before = answer([&a]);
    assert!(changes(Some(&before), &before.clone()).is_empty());
    assert_eq!(
        events(&changes(Some(&before), &answer([&a2]))),
        vec![("next-hop", a2.describe(), a.describe())]
    );
    assert_eq!(
        events(&changes(Some(&before), &answer([&b]))),
        vec![("replaced", b.describe(), a.describe())]
    );
    assert_eq!(
        events(&changes(Some(&before), &answer([&a, &b, &c]))),
        vec![
            ("added", b.describe(), String::new()),
            ("added", c.describe(), String::new())
        ]
    );
    assert_eq!(
        events(&changes(Some(&answer([&a, &b])), &answer([&a2]))),
        vec![
            ("removed", String::new(), b.describe()),
            ("next-hop", a2.describe(), a.describe())
        ]
    );
    assert_eq!(
        events(&changes(Some(&before), &answer([]))),
        vec![("removed", String::new(), a.describe())]
    );
}

#[test]
fn the_environment_carries_the_facts_and_the_whole_set() {
    let config = config("[prefix]\naddresses = [\"::1\", \"::53\"]\n");
    let old = prefix("2001:db8:42:100::/64", "2001:db8:1::10", "ripv6_a");
    let new = prefix("2001:db8:42:200::/64", "2001:db8:1::20", "ripv6_b");
    let other = prefix("2001:db8:42:300::/64", "2001:db8:1::20", "ripv6_c");
    let change = Change {
        event: Event::Replaced,
        prefix: Some(new.clone()),
        old: Some(old),
    };
    let env = environment(&change, &answer([&new, &other]), &config);
    let expected = [
        ("ROUTED6D_EVENT", "replaced"),
        ("ROUTED6D_PREFIX", "2001:db8:42:200::/64"),
        (
            "ROUTED6D_ADDRESSES",
            "2001:db8:42:200::1 2001:db8:42:200::53",
        ),
        ("ROUTED6D_NEXT_HOP", "2001:db8:1::20"),
        ("ROUTED6D_ORIGIN", "ripv6_b"),
        ("ROUTED6D_OLD_PREFIX", "2001:db8:42:100::/64"),
        ("ROUTED6D_OLD_NEXT_HOP", "2001:db8:1::10"),
        (
            "ROUTED6D_PREFIXES",
            "2001:db8:42:200::/64 2001:db8:42:300::/64",
        ),
        ("ROUTED6D_MODE", "addresses"),
        ("ROUTED6D_INTERFACE", "eth0"),
        ("ROUTED6D_PREFIX_INTERFACE", "lo"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(env, expected);
    assert_eq!(about(&env), "replaced 2001:db8:42:200::/64");
}

/// A hook script in a fresh directory.
fn script(dir: &Path, body: &str, timeout: Duration) -> HookConfig {
    use std::os::unix::fs::PermissionsExt;
    let exec = dir.join("hook");
    std::fs::write(&exec, format!("#!/bin/sh\n{body}\n")).expect("write");
    std::fs::set_permissions(&exec, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    HookConfig { exec, timeout }
}

#[tokio::test]
async fn a_run_sees_only_path_and_its_facts_and_its_output_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = script(
        dir.path(),
        "env | sort\necho to-stderr >&2\nexit 3",
        Duration::from_secs(10),
    );
    // Stands for what the daemon inherits (CREDENTIALS_DIRECTORY, where the token
    // lies). SAFETY: nothing in this crate reads this variable, from any thread.
    unsafe {
        std::env::set_var(
            "ROUTED6D_TEST_INHERITED",
            "/run/credentials/routed6d.service",
        )
    };
    let env = vec![("ROUTED6D_EVENT".to_string(), "start".to_string())];
    let ran = run(&hook, &env).await.expect("run");
    assert_eq!(ran.ended, Ended::Exited(3));
    assert!(
        ran.lines.contains(&"ROUTED6D_EVENT=start".to_string()),
        "{:?}",
        ran.lines
    );
    assert!(
        ran.lines.contains(&format!("PATH={PATH}")),
        "{:?}",
        ran.lines
    );
    assert!(
        ran.lines.contains(&"to-stderr".to_string()),
        "{:?}",
        ran.lines
    );
    let inherited: Vec<&String> = ran
        .lines
        .iter()
        .filter(|l| l.contains('=') && !l.starts_with("ROUTED6D_EVENT=") && !l.starts_with("PATH="))
        // What sh itself sets.
        .filter(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL=") && !l.starts_with("_="))
        .collect();
    assert!(inherited.is_empty(), "inherited: {inherited:?}");
}

#[tokio::test]
async fn a_run_past_its_timeout_is_killed_with_what_it_started() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("child.pid");
    let hook = script(
        dir.path(),
        &format!("sleep 30 &\necho $! > {}\nwait", pid_file.display()),
        Duration::from_millis(500),
    );
    let started = Instant::now();
    let ran = run(&hook, &[]).await.expect("run");
    assert_eq!(ran.ended, Ended::TimedOut);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let child: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid")
        .trim()
        .parse()
        .expect("number");
    // The backgrounded sleep went with its group (a zombie at most, until reaped).
    let gone = (0..50).any(|_| {
        let state = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        let alive = state.split_whitespace().nth(2).is_some_and(|s| s != "Z");
        if alive {
            std::thread::sleep(Duration::from_millis(20));
        }
        !alive
    });
    assert!(gone, "the hook's child {child} outlived the timeout");
}

#[tokio::test]
async fn output_is_bounded_in_lines_and_length() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = script(
        dir.path(),
        // 80 lines of 600 bytes, then a megabyte without a newline to stderr.
        "i=0; while [ $i -lt 80 ]; do printf '%0600d\\n' $i; i=$((i+1)); done\n\
         head -c 1000000 /dev/zero | tr '\\0' x >&2",
        Duration::from_secs(10),
    );
    let ran = run(&hook, &[]).await.expect("run");
    assert_eq!(ran.ended, Ended::Exited(0));
    assert_eq!(ran.lines.len(), MAX_LINES);
    assert_eq!(ran.dropped, 81 - MAX_LINES);
    assert!(ran.lines.iter().all(|l| l.len() == MAX_LINE));
}

#[tokio::test]
async fn queueing_never_waits_for_the_hooks() {
    let config = config("[[hook]]\nexec = \"/bin/true\"\n");
    let (hooks, mut jobs) = Hooks::channel();
    let now = answer([&prefix("2001:db8:42:100::/64", "2001:db8:1::10", "a")]);
    let change = changes(None, &now);
    // Nobody reads the queue: past its size, changes are dropped, not waited for.
    for _ in 0..QUEUE + 5 {
        hooks.changed(&config, &now, &change);
    }
    let mut queued = 0;
    while jobs.try_recv().is_ok() {
        queued += 1;
    }
    assert_eq!(queued, QUEUE);
    // Without hooks configured nothing is queued.
    let (hooks, mut jobs) = Hooks::channel();
    hooks.changed(&super::tests::config(""), &now, &change);
    assert!(jobs.try_recv().is_err());
}

#[test]
fn a_hook_that_cannot_run_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = script(dir.path(), "true", Duration::from_secs(1));
    assert_eq!(check(&hook), Ok(()));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook.exec, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let e = check(&hook).expect_err("not executable");
    assert!(
        e.ends_with(&format!(
            "not executable; run: chmod +x {}",
            hook.exec.display()
        )),
        "{e}"
    );
    let missing = HookConfig {
        exec: dir.path().join("nope"),
        timeout: Duration::from_secs(1),
    };
    assert!(
        check(&missing)
            .expect_err("missing")
            .contains("No such file")
    );
}
