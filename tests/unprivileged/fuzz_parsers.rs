//! Fuzzing in the test command (issue 5): proptest over every provider response parser
//! (HostUp v2 per-VPS state, account view, VPS list, release; HostUp legacy POST and
//! DELETE; DigitalOcean reserved IPv6 GET, list page, action, action request, droplet
//! metadata id and JSON; error documents of all three; Retry-After and rate-limit
//! resets; prefixes, next hops, static routes) and the config parser, seeded with the
//! project's fixtures, the shared conformance corpus and provider docs in ../shared
//! (when the checkout sits beside it) and the reference configs.
//!
//! Inputs are seeds mutated byte-wise (flips, insertions, deletions, truncation,
//! splices), seeds mutated as JSON (a leaf replaced by a value of another type, an
//! extreme number, an address of a dangerous kind, a key removed), and arbitrary text.
//! Properties: no parser panics; every answer a parser accepts is safe to program (a
//! network prefix of at least /32, not link-local/multicast/loopback, a global next hop
//! outside its prefix); every config error is one line. Inputs are bounded (the HTTP
//! client caps bodies at 1 MiB before any parser sees them), so allocation is bounded by
//! the input size.
//!
//! `ROUTED6D_FUZZ_CASES` sets the cases per property (default 2000, a few seconds in a
//! debug build); the README records a longer run.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use routed6d::config::Config;
use routed6d::model::Assignment;
use routed6d::provider::{digitalocean, hostup, hostup_legacy, http};
use routed6d::rules::{self, Fields, Leniency, non_global_kind};
use serde_json::Value;

const VPS: &str = "vps_01hxa3b4c5d6e7f8g9h0j1k2m3";

fn cases() -> u32 {
    std::env::var("ROUTED6D_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn runner() -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases: cases(),
        // Failures are reported with the input; shrinking it is not worth the time.
        max_shrink_iters: 64,
        failure_persistence: None,
        ..RunnerConfig::default()
    })
}

/// Every regular file below `dir`, recursively (missing directories are empty).
fn files_below(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_below(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The seed corpus: response bodies and docs. Sorted, so a failure's seed index means
/// the same file on every machine.
fn corpus() -> Vec<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    files_below(&root.join("tests/fixtures"), &mut paths);
    files_below(&root.join("../shared/fixtures"), &mut paths);
    files_below(&root.join("../shared/seeds"), &mut paths);
    paths.sort();
    let mut seeds: Vec<Vec<u8>> = paths
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        // The docs are long; their JSON examples are in the first pages.
        .map(|mut b| {
            b.truncate(64 * 1024);
            b
        })
        .collect();
    assert!(
        seeds.len() >= 30,
        "the fixtures are missing: {}",
        seeds.len()
    );
    seeds.push(Vec::new());
    seeds
}

/// The JSON seeds, parsed.
fn json_corpus() -> Vec<Value> {
    corpus()
        .iter()
        .filter_map(|b| serde_json::from_slice(b).ok())
        .collect()
}

/// The reference config and the examples of every kind.
fn config_corpus() -> Vec<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut paths = vec![root.join("config/routed6d.toml")];
    files_below(&root.join("config/examples"), &mut paths);
    paths.sort();
    let configs: Vec<String> = paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    assert!(configs.len() >= 4, "the example configs are missing");
    configs
}

/// An accepted answer must be safe to program.
fn assert_safe(assignment: &Assignment) {
    assert_safe_but(assignment, &[]);
}

/// `assert_safe`, except that a next hop inside its prefix is allowed when one of
/// `warnings` says so: the legacy API's own documentation routes a /48 to an address
/// inside it, and routed6d accepts that from the legacy API with a warning.
fn assert_safe_but(assignment: &Assignment, warnings: &[String]) {
    // Advisory, but it may become the next hop after a refresh: global or absent.
    if let Some(hop) = assignment.suggested_next_hop {
        assert_eq!(non_global_kind(hop), None, "suggested next hop {hop}");
    }
    for routed in &assignment.prefixes {
        let prefix = routed.prefix;
        assert_eq!(prefix.trunc(), prefix, "host bits in {prefix}");
        assert!(prefix.prefix_len() >= 32, "{prefix} is shorter than /32");
        assert_eq!(
            non_global_kind(prefix.network()),
            None,
            "{prefix} is not global"
        );
        if let Some(hop) = routed.next_hop {
            assert_eq!(non_global_kind(hop), None, "next hop {hop}");
            let warned = warnings.iter().any(|w| w.contains("lies inside"));
            assert!(
                !prefix.contains(&hop) || warned,
                "next hop {hop} inside {prefix}"
            );
        }
    }
}

/// Every body parser on one input.
fn parse_everything(body: &[u8]) {
    if let Ok(parsed) = hostup::assignment_from_state(body) {
        assert_safe(&parsed.value);
    }
    if let Ok(a) = hostup::assignment_from_account(body, VPS) {
        assert_safe(&a);
    }
    let _ = hostup::release_from_body(body);
    let _ = hostup::vps_ids_from_list(body, "192.0.2.10".parse().expect("ip"));
    if let Ok(parsed) = hostup_legacy::assignment_from_post(body) {
        assert_safe_but(&parsed.value, &parsed.warnings);
    }
    let _ = hostup_legacy::release_from_delete(body);
    let _ = digitalocean::reserved_from_get(body);
    if let Ok(page) = digitalocean::reserved_page(body) {
        let _ = format!("{page:?}");
    }
    let _ = digitalocean::action_from_body(body);
    let _ = digitalocean::droplet_id_from_text(body);
    let _ = digitalocean::metadata_from_json(body);
    for status in [400, 401, 404, 429, 500] {
        let e = http::status_error("u".into(), status, None, None, body);
        let text = e.to_string();
        assert!(!text.contains('\n'), "an error is one line: {text:?}");
    }
    let text = String::from_utf8_lossy(body);
    parse_text(&text);
}

/// Every text parser on one string.
fn parse_text(text: &str) {
    let now = SystemTime::now();
    let _ = http::parse_retry_after(text, now);
    let _ = http::parse_rate_limit_reset(text, now);
    let _ = hostup_legacy::normalise_timestamp(text);
    if let Ok(hop) = rules::parse_next_hop("f", text) {
        assert_eq!(non_global_kind(hop), None);
    }
    let _ = rules::parse_net("f", text);
    let fields = Fields {
        prefix: "p",
        length: "l",
        next_hop: "h",
    };
    let lenient = Leniency {
        host_bits: true,
        next_hop_inside: true,
    };
    for (prefix, hop) in [
        (text, text),
        (text, "2001:db8::10"),
        ("2001:db8:42:100::/64", text),
    ] {
        for leniency in [Leniency::default(), lenient] {
            if let Ok(checked) = rules::check_routed(fields, prefix, None, hop, leniency) {
                let net = checked.prefix;
                assert_eq!(net.trunc(), net);
                assert!(net.prefix_len() >= rules::MIN_PREFIX_LEN);
                assert_eq!(non_global_kind(checked.next_hop), None);
                assert!(leniency.next_hop_inside || !net.contains(&checked.next_hop));
            }
        }
    }
}

/// Byte-level mutations of a seed.
fn mutate_bytes(seed: &[u8], ops: &[(u8, usize, u8)]) -> Vec<u8> {
    let mut body = seed.to_vec();
    for &(op, at, byte) in ops {
        let at = if body.is_empty() {
            0
        } else {
            at % (body.len() + 1)
        };
        match op % 6 {
            0 if at < body.len() => body[at] ^= byte.max(1),
            1 => body.insert(at, byte),
            2 => {
                let end = (at + usize::from(byte)).min(body.len());
                body.drain(at..end);
            }
            3 => body.truncate(at),
            // A structural character where it hurts most.
            4 => body.insert(at, b"{}[]\",:\\0-e."[usize::from(byte) % 12]),
            _ => {
                let end = (at + usize::from(byte)).min(body.len());
                let copy = body[at..end].to_vec();
                body.splice(at..at, copy);
            }
        }
    }
    body
}

/// Values that break assumptions: other types, extremes, dangerous addresses.
fn nasty_value() -> impl Strategy<Value = Value> {
    let strings = prop::sample::select(vec![
        "",
        " ",
        "null",
        "::",
        "::/0",
        "2000::/3",
        "2001:db8::/31",
        "2001:db8:42:100::1/64",
        "2001:db8:42:100::/64",
        "2001:db8:42:100::/129",
        "2001:db8:42:100::/-1",
        "fe80::1",
        "ff02::1",
        "::1",
        "::ffff:192.0.2.1",
        "2001:db8:42:100::1",
        "2001:db8:1::10/128",
        "2001:db8:1::10/64",
        "192.0.2.1",
        "active",
        "cooldown",
        "1e999",
        "-1",
        "18446744073709551616",
        "2026-02-10 00:00:00.658429+00",
        "Wed, 21 Oct 2015 07:28:00 GMT",
        "\u{0}\u{feff}\u{202e}",
    ])
    .prop_map(|s| Value::String(s.to_string()));
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop::sample::select(vec![
            0i64,
            -1,
            1,
            31,
            32,
            48,
            64,
            128,
            129,
            255,
            256,
            i64::MAX,
            i64::MIN
        ])
        .prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        Just(Value::from(1e300)),
        Just(Value::from(-0.5)),
        strings,
        ".{0,40}".prop_map(Value::String),
        Just(Value::Array(Vec::new())),
        Just(Value::Object(serde_json::Map::new())),
        Just(Value::Array(vec![Value::Null; 3])),
    ]
}

/// How many places (values and keys) a JSON value has, depth first.
fn places(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(places).sum(),
        Value::Object(map) => map.values().map(places).sum(),
        _ => 0,
    }
}

/// Replace (or, with `remove`, delete from its parent) the `target`-th place.
fn edit(value: &mut Value, target: &mut usize, new: &Value, remove: bool) -> bool {
    if *target == 0 {
        *value = new.clone();
        return true;
    }
    *target -= 1;
    match value {
        Value::Array(items) => {
            for i in 0..items.len() {
                if *target == 0 && remove {
                    items.remove(i);
                    return true;
                }
                if edit(&mut items[i], target, new, remove) {
                    return true;
                }
            }
            false
        }
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if *target == 0 && remove {
                    map.remove(&key);
                    return true;
                }
                if let Some(child) = map.get_mut(&key)
                    && edit(child, target, new, remove)
                {
                    return true;
                }
            }
            false
        }
        _ => false,
    }
}

/// Found by this harness: a rate-limit reset of u64::MAX epoch seconds overflowed
/// `SystemTime` and panicked the daemon on one response header.
#[test]
fn an_absurd_rate_limit_reset_is_ignored_not_a_panic() {
    let now = SystemTime::now();
    assert_eq!(
        http::parse_rate_limit_reset("18446744073709551615", now),
        None
    );
    assert!(http::parse_rate_limit_reset("99999999999", now).is_some());
}

#[test]
fn every_seed_parses_without_panicking() {
    for seed in corpus() {
        parse_everything(&seed);
    }
}

#[test]
fn byte_mutated_seeds_never_panic_and_accepted_answers_are_safe() {
    let seeds = corpus();
    let strategy = (
        0..seeds.len(),
        prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..8),
    );
    runner()
        .run(&strategy, |(index, ops)| {
            parse_everything(&mutate_bytes(&seeds[index], &ops));
            Ok(())
        })
        .unwrap();
}

#[test]
fn json_mutated_seeds_never_panic_and_accepted_answers_are_safe() {
    let seeds = json_corpus();
    assert!(seeds.len() >= 20, "{} JSON seeds", seeds.len());
    let strategy = (
        0..seeds.len(),
        prop::collection::vec((any::<usize>(), nasty_value(), any::<bool>()), 1..5),
    );
    runner()
        .run(&strategy, |(index, edits)| {
            let mut value = seeds[index].clone();
            for (place, new, remove) in &edits {
                let mut target = place % places(&value);
                edit(&mut value, &mut target, new, *remove && *place % 3 == 0);
            }
            let body = serde_json::to_vec(&value).expect("serialise");
            parse_everything(&body);
            Ok(())
        })
        .unwrap();
}

#[test]
fn arbitrary_text_never_panics_the_text_parsers() {
    runner()
        .run(&any::<String>(), |text| {
            parse_text(&text);
            parse_everything(text.as_bytes());
            Ok(())
        })
        .unwrap();
}

/// The config parser on mutated reference configs: never a panic, and every refusal
/// is one line (what the operator sees).
#[test]
fn mutated_configs_never_panic_and_errors_are_one_line() {
    let configs = config_corpus();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("routed6d.toml");
    // A token to find, so that mutations get past the token check now and then.
    let token = dir.path().join("token");
    std::fs::write(&token, "fuzz-token").expect("token");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let configs: Vec<String> = configs
        .into_iter()
        .map(|c| {
            c.replace(
                "[provider]\n",
                &format!("[provider]\ntoken_file = \"{}\"\n", token.display()),
            )
        })
        .collect();
    let strategy = (
        0..configs.len(),
        prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..6),
    );
    let accepted = std::cell::Cell::new(0u32);
    runner()
        .run(&strategy, |(index, ops)| {
            let bytes = mutate_bytes(configs[index].as_bytes(), &ops);
            let text = String::from_utf8_lossy(&bytes);
            match Config::from_text(&path, &text, None) {
                Ok(_) => accepted.set(accepted.get() + 1),
                Err(e) => {
                    let line = e.to_string();
                    prop_assert!(!line.contains('\n'), "more than one line: {line:?}");
                    prop_assert!(!line.contains("fuzz-token"), "the token leaked: {line}");
                }
            }
            Ok(())
        })
        .unwrap();
    // Mutations are small: some configs must still be valid, or the harness is
    // fuzzing nothing past the first error.
    if cases() >= 200 {
        assert!(accepted.get() > 0, "no mutated config was accepted");
    }
}

#[test]
fn the_corpus_holds_every_provider() {
    // Guards the fuzzing above from silently running on an empty or partial corpus.
    let seeds = corpus();
    let has = |needle: &str| {
        seeds
            .iter()
            .any(|s| String::from_utf8_lossy(s).contains(needle))
    };
    for needle in [
        "allocation",
        "pools",
        "prefix_length",
        "reserved_ipv6",
        "droplet_id",
    ] {
        assert!(has(needle), "no seed with {needle}");
    }
}
