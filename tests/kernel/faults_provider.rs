//! Provider-side faults against the real daemon on a real kernel (issue 5): every way
//! the provider's API can fail or lie, injected into the simulated HostUp API (or, for
//! faults a real HTTP server cannot produce, a hand-written one) while `routed6d run`
//! keeps a programmed prefix. Each test asserts the kernel state afterwards (nothing
//! routed6d owns may change), counts the requests the simulation saw (backoff and
//! Retry-After are respected), and reads the log: one warning per failure streak, one
//! "recovered", no panic, no token. Needs root; without it each test says SKIPPED.

use crate::common;

use std::time::{Duration, Instant};

use common::{
    CONVERGE, FAILED, HOP1, HOP2, Harness, RECOVERED, RawBehaviour, RawServer, VPS_ID, has_owned,
    host, programmed,
};
use routed6d_sim::api::Fault;

/// Where the daemon polls the per-VPS state.
const POLL_PATH: &str = "/api/v2/vps/";

fn skip(test: &str) -> bool {
    common::skip_unless_root("faults_provider", test)
}

/// Lines of the log that are the warning of a failure streak and contain `needle`.
fn failure_lines(h: &Harness, needle: &str) -> Vec<String> {
    h.log()
        .lines()
        .filter(|l| l.contains(FAILED) && l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// Print what the operator saw (`cargo test -- --nocapture` shows it; the README's
/// table quotes these lines).
fn show(h: &Harness, needle: &str) {
    if let Some(line) = failure_lines(h, needle).first() {
        let text = line.split_once(FAILED).map_or(line.as_str(), |(_, t)| t);
        eprintln!("user saw: {FAILED}{text}");
    }
}

/// The common shape of an outage: programmed, then `fault` on every request for at
/// least `polls` polls with the kernel unchanged throughout, then the fault cleared and
/// the recovery logged. Returns the harness for more assertions.
fn outage(tag: &str, fault: Fault, polls: usize, expect_in_log: &str) -> Harness {
    let mut h = Harness::hostup(tag);
    h.start_programmed();
    let before = h.owned();
    let seen = h.requests(POLL_PATH);
    h.sim().set_sticky_fault(fault);
    h.kept_until(&before, CONVERGE, || h.requests(POLL_PATH) >= seen + polls);
    h.sim().clear_faults();
    h.wait_log(RECOVERED, 1);
    assert_eq!(h.owned(), before, "recovery changed nothing either");
    let lines = failure_lines(&h, expect_in_log);
    assert_eq!(
        lines.len(),
        1,
        "one warning naming {expect_in_log:?} for the streak\nlog:\n{}",
        h.log()
    );
    assert_eq!(h.log_count(FAILED), 1, "{}", h.log());
    assert_eq!(h.log_count(RECOVERED), 1, "{}", h.log());
    show(&h, expect_in_log);
    h.assert_healthy();
    h
}

/// A per-VPS state whose allocation has these (JSON) prefix, prefixLength and nextHop.
fn state_body(prefix: &str, length: &str, next_hop: &str) -> String {
    format!(
        r#"{{"available":true,"reason":null,"parentCidr":"2001:db8:42::/48","prefixLength":64,
        "cooldownDays":30,"maxPerVm":1,"suggestedNextHop":null,"created":null,
        "allocation":{{"id":"ripv6_faulty","prefix":{prefix},"prefixLength":{length},
        "nextHop":{next_hop},"status":"active","allocatedAt":"2026-04-27T12:00:00.000Z",
        "releasedAt":null,"cooldownUntil":null,"createdAt":"2026-04-27T12:00:00.000Z",
        "updatedAt":"2026-04-27T12:00:00.000Z"}}}}"#
    )
}

/// A well-formed answer that would misroute traffic: refused (kernel unchanged over
/// several polls), with one warning naming `field` and saying what is wrong with it.
fn refused(tag: &str, body: String, field: &str, what: &str) {
    let h = outage(tag, Fault::body(200, &body), 3, field);
    let line = &failure_lines(&h, field)[0];
    assert!(line.contains(what), "{line}");
    assert!(line.contains("WARN"), "a warning: {line}");
}

// ---- transport -------------------------------------------------------------------

#[test]
fn connection_refused_keeps_the_state_and_recovers() {
    if skip("connection_refused") {
        return;
    }
    let mut h = Harness::hostup("refused");
    h.start_programmed();
    let before = h.owned();
    let good = std::fs::read_to_string(&h.config).expect("config");
    // Nothing listens on port 1 of the VPS's loopback.
    h.set_base_url("http://127.0.0.1:1");
    h.kill(libc::SIGHUP);
    h.kept_until(&before, CONVERGE, || {
        h.log_count("configuration reloaded") >= 1
            && !failure_lines(&h, "connection refused").is_empty()
    });
    // Retries go on at the poll's pace and stay silent: hold a few seconds of them.
    let until = Instant::now() + Duration::from_secs(3);
    h.kept_until(&before, CONVERGE, || Instant::now() >= until);
    assert_eq!(
        failure_lines(&h, "connection refused").len(),
        1,
        "{}",
        h.log()
    );
    show(&h, "connection refused");
    std::fs::write(&h.config, good).expect("config");
    h.kill(libc::SIGHUP);
    h.wait_log(RECOVERED, 1);
    assert_eq!(h.owned(), before);
    assert!(h.ping(host(1), Duration::from_secs(5)), "still reachable");
    h.assert_healthy();
}

/// Shared by the two hanging-server faults: the request times out after the client's
/// 15 s, the state stays all along, and the failure is logged as a timeout.
fn hanging_server(tag: &str, behaviour: RawBehaviour) {
    let mut h = Harness::hostup(tag);
    h.start_programmed();
    let before = h.owned();
    let server = RawServer::start(&h.testbed.vps, behaviour);
    h.set_base_url(&server.url());
    h.kill(libc::SIGHUP);
    let started = Instant::now();
    h.kept_until(&before, Duration::from_secs(15) + CONVERGE, || {
        !failure_lines(&h, "timed out").is_empty()
    });
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(14),
        "gave up after the request timeout, not before: {took:?}"
    );
    assert!(server.connections() >= 1);
    show(&h, "timed out");
    // Drift repair does not wait for the provider: delete an address while the next
    // request hangs.
    h.delete_address(host(1), "lo");
    h.wait("repaired while the API hangs", |s| has_owned(s, host(1)));
    assert_eq!(h.owned(), before);
    h.assert_healthy();
}

#[test]
fn accept_then_silence_times_out_and_keeps_the_state() {
    if skip("silence") {
        return;
    }
    hanging_server("silent", RawBehaviour::Silence);
}

#[test]
fn a_slow_body_times_out_and_keeps_the_state() {
    if skip("slow_body") {
        return;
    }
    hanging_server("slow", RawBehaviour::Trickle);
}

#[test]
fn a_self_signed_certificate_is_refused_and_the_state_kept() {
    if skip("tls") {
        return;
    }
    common::ensure_tool("openssl", "openssl");
    let mut h = Harness::hostup("tls");
    h.start_programmed();
    let before = h.owned();
    let cert = h.dir.path().join("cert.pem");
    let key = h.dir.path().join("key.pem");
    // Valid for 127.0.0.1 by name and date: the only thing wrong is who signed it.
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl req");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let server = TlsServer(
        h.testbed
            .vps
            .command("openssl")
            .args(["s_server", "-quiet", "-www", "-accept", "127.0.0.1:8443"])
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server"),
    );
    let listening = routed6d_sim::netns::wait_until(CONVERGE, || {
        h.testbed
            .vps
            .enter(|| std::net::TcpStream::connect("127.0.0.1:8443").is_ok())
            .unwrap_or(false)
    });
    assert!(listening.is_some(), "openssl s_server did not start");
    h.set_base_url("https://127.0.0.1:8443");
    h.kill(libc::SIGHUP);
    h.kept_until(&before, CONVERGE, || {
        !failure_lines(&h, "TLS error").is_empty()
    });
    show(&h, "TLS error");
    let line = &failure_lines(&h, "TLS error")[0];
    assert!(
        line.to_lowercase().contains("certificate") || line.contains("UnknownIssuer"),
        "{line}"
    );
    let until = Instant::now() + Duration::from_secs(3);
    h.kept_until(&before, CONVERGE, || Instant::now() >= until);
    assert_eq!(h.log_count(FAILED), 1, "{}", h.log());
    h.assert_healthy();
    drop(server);
}

/// Kills the TLS server on drop.
struct TlsServer(std::process::Child);

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---- error statuses --------------------------------------------------------------

#[test]
fn status_500_keeps_the_state() {
    if skip("500") {
        return;
    }
    outage("s500", Fault::status(500, "internal_error"), 3, "500");
}

#[test]
fn status_502_keeps_the_state() {
    if skip("502") {
        return;
    }
    outage("s502", Fault::status(502, "bad_gateway"), 3, "502");
}

#[test]
fn status_503_keeps_the_state() {
    if skip("503") {
        return;
    }
    outage("s503", Fault::status(503, "service_unavailable"), 3, "503");
}

#[test]
fn status_401_problem_is_logged_with_its_code_and_request_id() {
    if skip("401") {
        return;
    }
    let h = outage("s401", Fault::status(401, "unauthorized"), 3, "401");
    let line = &failure_lines(&h, "401")[0];
    assert!(
        line.contains("unauthorized") && line.contains("req_sim"),
        "{line}"
    );
}

#[test]
fn status_403_problem_is_logged_with_its_code() {
    if skip("403") {
        return;
    }
    let h = outage("s403", Fault::status(403, "forbidden"), 3, "403");
    let line = &failure_lines(&h, "403")[0];
    assert!(line.contains("forbidden"), "{line}");
}

/// An outage never raises the load on the API: at a 1 s poll, ten seconds of 503 get
/// no more requests than ten seconds of good answers (the sim's clock counts both), and
/// the API's recovery is seen within a poll. A faster retry, multiplied by a fleet, is
/// what keeps a failing API down. The API fails from the start of the outage on, so
/// nothing changes either.
#[test]
fn an_outage_never_raises_the_request_rate() {
    if skip("outage_rate") {
        return;
    }
    let mut h = Harness::hostup("orate");
    h.start_programmed();
    let before = h.owned();
    let window = Duration::from_secs(10);
    let count_from = |h: &Harness, from: Duration| {
        h.request_times(POLL_PATH)
            .iter()
            .filter(|t| **t >= from && **t < from + window)
            .count()
    };
    let steady_from = *h.request_times(POLL_PATH).last().expect("a poll");
    let until = Instant::now() + window + Duration::from_secs(1);
    h.kept_until(&before, CONVERGE, || Instant::now() >= until);
    let steady = count_from(&h, steady_from);

    h.sim()
        .set_sticky_fault(Fault::status(503, "service_unavailable"));
    let outage_from = *h.request_times(POLL_PATH).last().expect("a poll");
    let until = Instant::now() + window + Duration::from_secs(1);
    h.kept_until(&before, CONVERGE, || Instant::now() >= until);
    let during = count_from(&h, outage_from);
    // Jitter moves either count by one; the gaps tell the pace exactly: never under
    // the steady minimum of 0.9 intervals (a backoff from 0.5 s was 12-14 requests).
    assert!(
        during <= steady + 1,
        "{during} requests in {window:?} of outage against {steady} in steady state"
    );
    assert!(during >= 8, "still polling through the outage: {during}");
    let times = h.request_times(POLL_PATH);
    let outage: Vec<&Duration> = times.iter().filter(|t| **t >= outage_from).collect();
    for pair in outage.windows(2) {
        let gap = *pair[1] - *pair[0];
        assert!(
            gap >= Duration::from_millis(870),
            "a retry {gap:?} after the last request: {outage:?}"
        );
    }

    h.sim().clear_faults();
    let back = Instant::now();
    h.wait_log(RECOVERED, 1);
    assert!(
        back.elapsed() <= Duration::from_millis(1100) + Duration::from_millis(300),
        "recovery seen after {:?}",
        back.elapsed()
    );
    assert_eq!(h.log_count(FAILED), 1, "{}", h.log());
    assert_eq!(h.owned(), before);
    h.assert_healthy();
}

// ---- rate limits -----------------------------------------------------------------

/// One 429, then the gap until the next request, and the recovery.
fn rate_limited(tag: &str, fault: Fault) -> Duration {
    let mut h = Harness::hostup(tag);
    h.start_programmed();
    let before = h.owned();
    let seen = h.requests(POLL_PATH);
    h.sim().push_fault(fault, 1);
    h.kept_until(&before, CONVERGE, || h.requests(POLL_PATH) >= seen + 2);
    h.wait_log(RECOVERED, 1);
    let times = h.request_times(POLL_PATH);
    let gap = times[seen + 1] - times[seen];
    assert_eq!(failure_lines(&h, "429").len(), 1, "{}", h.log());
    show(&h, "429");
    assert_eq!(h.owned(), before);
    h.assert_healthy();
    gap
}

#[test]
fn a_429_with_retry_after_seconds_is_waited_out() {
    if skip("429_seconds") {
        return;
    }
    let gap = rate_limited("rl-sec", Fault::rate_limited_seconds(3));
    // Without Retry-After the retry would come after at most 1 s.
    assert!(gap >= Duration::from_millis(2950), "retried after {gap:?}");
    assert!(gap < Duration::from_secs(6), "retried after {gap:?}");
}

#[test]
fn a_429_with_a_retry_after_date_is_waited_out() {
    if skip("429_date") {
        return;
    }
    let gap = rate_limited("rl-date", Fault::rate_limited_date(4));
    // An HTTP date has whole seconds: 4 s ahead is between 3 and 4 s away.
    assert!(gap >= Duration::from_millis(2950), "retried after {gap:?}");
    assert!(gap < Duration::from_secs(7), "retried after {gap:?}");
}

/// HostUp's 429 without Retry-After still names the end of the window in
/// `X-RateLimit-Reset` (an ISO timestamp; the sim's is 60 s ahead): no request goes out
/// before it, far past the 1 s poll. A reload asks at once.
#[test]
fn a_429_without_retry_after_waits_for_the_rate_limit_reset() {
    if skip("429_reset") {
        return;
    }
    let mut h = Harness::hostup("rl-reset");
    h.start_programmed();
    let before = h.owned();
    let seen = h.requests(POLL_PATH);
    h.sim().push_fault(Fault::rate_limited(), 1);
    h.wait_requests(POLL_PATH, seen + 1, CONVERGE);
    let limited = h.requests(POLL_PATH);
    // Five polls' worth: not one request, nothing changed.
    let until = Instant::now() + Duration::from_secs(5);
    h.kept_until(&before, CONVERGE, || Instant::now() >= until);
    assert_eq!(
        h.requests(POLL_PATH),
        limited,
        "asked again inside the window"
    );
    h.kill(libc::SIGHUP);
    h.wait_log(RECOVERED, 1);
    assert_eq!(failure_lines(&h, "429").len(), 1, "{}", h.log());
    assert_eq!(h.owned(), before);
    h.assert_healthy();
}

/// A bare 429 (no Retry-After, no rate-limit headers): the next poll as usual.
#[test]
fn a_bare_429_backs_off_normally() {
    if skip("429_bare") {
        return;
    }
    let body = r#"{"code":"rate_limited","status":429,"title":"Too many requests"}"#;
    let gap = rate_limited("rl-bare", Fault::body(429, body));
    // The first retry of a streak: half to all of 1 s.
    assert!(gap >= Duration::from_millis(450), "retried after {gap:?}");
    assert!(gap < Duration::from_secs(3), "retried after {gap:?}");
}

// ---- broken bodies ---------------------------------------------------------------

#[test]
fn truncated_json_keeps_the_state() {
    if skip("truncated") {
        return;
    }
    outage("trunc", Fault::truncated_json(), 3, "bad JSON");
}

#[test]
fn json_of_the_wrong_shape_keeps_the_state() {
    if skip("wrong_shape") {
        return;
    }
    outage("shape", Fault::wrong_shape(), 3, "got an array");
}

#[test]
fn an_empty_200_keeps_the_state() {
    if skip("empty") {
        return;
    }
    outage("empty", Fault::empty_ok(), 3, "empty body");
}

#[test]
fn a_10_mb_body_is_refused_at_the_cap() {
    if skip("huge") {
        return;
    }
    outage("huge", Fault::huge_body(), 2, "body larger than 1 MiB");
}

/// A body without a Content-Length that never ends (1 GiB, chunked): the cap has to
/// work while reading. Without it the read would run into the 15 s timeout; with it
/// the answer is refused within seconds, having read little more than 1 MiB.
#[test]
fn a_10_mb_chunked_body_is_read_only_up_to_the_cap() {
    if skip("huge_chunked") {
        return;
    }
    let mut h = Harness::hostup("chunk");
    h.start_programmed();
    let before = h.owned();
    let total = 1 << 30;
    let server = RawServer::start(&h.testbed.vps, RawBehaviour::Chunked(total));
    h.set_base_url(&server.url());
    let started = Instant::now();
    h.kill(libc::SIGHUP);
    h.kept_until(&before, CONVERGE, || {
        !failure_lines(&h, "body larger than 1 MiB").is_empty()
    });
    let took = started.elapsed();
    show(&h, "body larger");
    assert!(took < Duration::from_secs(10), "refused after {took:?}");
    assert!(
        server.bytes_sent() < 64 << 20,
        "{} bytes sent: the client read on past its cap",
        server.bytes_sent()
    );
    // Let a few more attempts run: the state stays, and they are not logged again.
    let connections = server.connections();
    h.kept_until(&before, CONVERGE, || {
        server.connections() >= connections + 2
    });
    assert_eq!(h.log_count(FAILED), 1, "{}", h.log());
    h.assert_healthy();
}

// ---- well-formed answers that would misroute traffic -----------------------------

#[test]
fn a_prefix_with_host_bits_is_refused_naming_the_field() {
    if skip("host_bits") {
        return;
    }
    let body = state_body("\"2001:db8:42:100::1/64\"", "64", "\"2001:db8:1::10\"");
    refused("hbits", body, "allocation.prefix", "host bits");
}

#[test]
fn a_disagreeing_prefix_length_is_refused_naming_the_field() {
    if skip("prefix_length") {
        return;
    }
    let body = state_body("\"2001:db8:42:100::/64\"", "56", "\"2001:db8:1::10\"");
    refused("plen", body, "allocation.prefixLength", "disagrees");
}

#[test]
fn the_default_route_prefix_is_refused() {
    if skip("slash0") {
        return;
    }
    let body = state_body("\"::/0\"", "0", "\"2001:db8:1::10\"");
    refused("slash0", body, "allocation.prefix", "shorter than /32");
}

#[test]
fn the_whole_global_unicast_range_is_refused() {
    if skip("slash3") {
        return;
    }
    let body = state_body("\"2000::/3\"", "3", "\"2001:db8:1::10\"");
    refused("slash3", body, "allocation.prefix", "shorter than /32");
}

#[test]
fn a_slash_31_is_refused() {
    if skip("slash31") {
        return;
    }
    let body = state_body("\"2001:db8::/31\"", "31", "\"2001:db8:1::10\"");
    refused("slash31", body, "allocation.prefix", "shorter than /32");
}

#[test]
fn a_link_local_next_hop_is_refused() {
    if skip("link_local") {
        return;
    }
    let body = state_body("\"2001:db8:42:100::/64\"", "64", "\"fe80::1\"");
    refused("ll", body, "allocation.nextHop", "link-local");
}

#[test]
fn a_multicast_next_hop_is_refused() {
    if skip("multicast") {
        return;
    }
    let body = state_body("\"2001:db8:42:100::/64\"", "64", "\"ff02::1\"");
    refused("mcast", body, "allocation.nextHop", "multicast");
}

#[test]
fn a_next_hop_inside_the_prefix_is_refused() {
    if skip("hop_inside") {
        return;
    }
    let body = state_body("\"2001:db8:42:100::/64\"", "64", "\"2001:db8:42:100::1\"");
    refused("inside", body, "allocation.nextHop", "inside");
}

// ---- a provider that changes its mind ----------------------------------------------

/// The allocation's next hop alternates between two addresses on every poll: the
/// kernel follows each time, adding the new next hop before removing the old one, so
/// the prefix's address and a next hop are present in every sample taken meanwhile.
#[test]
fn a_flapping_next_hop_is_followed_without_a_gap() {
    if skip("flapping") {
        return;
    }
    let mut h = Harness::hostup("flap");
    h.start_programmed();
    let flips = 6;
    let mut seen = h.requests(POLL_PATH);
    let mut current = HOP1;
    for _ in 0..flips {
        current = if current == HOP1 { HOP2 } else { HOP1 };
        h.sim().set_next_hop(VPS_ID, current).expect("next hop");
        // Until the daemon has converged on `current`, sample the kernel.
        let deadline = Instant::now() + CONVERGE;
        loop {
            let state = h.kernel();
            assert!(has_owned(&state, host(1)), "{:#?}", h.owned());
            assert!(
                has_owned(&state, HOP1) || has_owned(&state, HOP2),
                "a next hop at every moment: {:#?}",
                h.owned()
            );
            let other = if current == HOP1 { HOP2 } else { HOP1 };
            if has_owned(&state, current) && !has_owned(&state, other) {
                break;
            }
            assert!(Instant::now() < deadline, "did not follow\n{}", h.log());
            std::thread::sleep(Duration::from_millis(10));
        }
        // One poll per flip: the provider flaps "every poll".
        h.wait_requests(POLL_PATH, seen + 1, CONVERGE);
        seen = h.requests(POLL_PATH);
    }
    let owned = h.owned();
    assert_eq!(
        owned.iter().filter(|l| l.contains("2001:db8:1::")).count(),
        1,
        "exactly one next hop in the end: {owned:?}"
    );
    let added = h.log_count("ip -6 addr add 2001:db8:1::");
    assert!(
        added >= flips,
        "{added} next-hop additions for {flips} flips"
    );
    assert_eq!(h.log_count(FAILED), 0, "{}", h.log());
    assert!(programmed(&h.kernel()) || has_owned(&h.kernel(), HOP2));
    h.assert_healthy();
}

/// A long streak of different faults is still one warning and one "recovered".
#[test]
fn a_mixed_streak_is_logged_once_and_recovers_once() {
    if skip("mixed_streak") {
        return;
    }
    let mut h = Harness::hostup("mixed");
    h.start_programmed();
    let before = h.owned();
    let seen = h.requests(POLL_PATH);
    let faults = [
        Fault::status(503, "service_unavailable"),
        Fault::truncated_json(),
        Fault::Close,
        Fault::rate_limited_seconds(1),
        Fault::status(500, "internal_error"),
        Fault::empty_ok(),
    ];
    for fault in &faults {
        h.sim().push_fault(fault.clone(), 1);
    }
    h.kept_until(&before, Duration::from_secs(30), || {
        h.requests(POLL_PATH) > seen + faults.len()
    });
    h.wait_log(RECOVERED, 1);
    assert_eq!(h.log_count(FAILED), 1, "{}", h.log());
    assert_eq!(h.log_count(RECOVERED), 1, "{}", h.log());
    assert!(
        h.log()
            .contains(&format!("after {} failed poll(s)", faults.len())),
        "{}",
        h.log()
    );
    assert_eq!(h.owned(), before);
    h.assert_healthy();
}
