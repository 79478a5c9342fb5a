//! The HTTP client every provider shares: one `reqwest::Client` with short timeouts,
//! no redirects and certificate validation always on; bodies read with a hard size cap;
//! `Retry-After` (seconds or HTTP date), rate-limit headers (HostUp's `X-RateLimit-*`
//! with an ISO reset, DigitalOcean's `ratelimit-*` with an epoch reset) and error
//! documents (RFC 7807 problems, HostUp legacy `{error, message, retryAfter}`,
//! DigitalOcean `{id, message, request_id}`) turned into `ProviderError`. The token goes
//! on the wire here and nowhere else, as `Authorization: Bearer` or `X-API-Key`.

use std::error::Error as _;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Url};

use super::ProviderError;
use crate::config::Secret;

/// Connecting may take this long before the attempt counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A whole request (connect, send, headers, body) may take this long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// No provider answer routed6d reads is anywhere near this; a larger body is a fault
/// (or an attack) and is refused before it is all read.
pub const MAX_BODY: usize = 1024 * 1024;

/// Headers providers use for a request id, in the order they are looked for.
const REQUEST_ID_HEADERS: [&str; 3] = ["x-request-id", "request-id", "x-correlation-id"];

/// How a request proves who it is.
#[derive(Clone, Copy, Debug)]
pub enum Auth<'a> {
    /// `Authorization: Bearer <token>` (HostUp v2, DigitalOcean).
    Bearer(&'a Secret),
    /// `X-API-Key: <token>` (HostUp legacy).
    ApiKey(&'a Secret),
    /// Nothing (the droplet metadata service).
    None,
}

/// The shared client. Cheap to clone (reqwest's client is an `Arc` inside).
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: reqwest::Client,
}

/// The rate-limit headers an answer carried, verbatim (HostUp's reset is an ISO
/// timestamp, DigitalOcean's epoch seconds: interpreting them is the caller's business).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: Option<String>,
    pub remaining: Option<String>,
    pub reset: Option<String>,
}

/// A 2xx answer, its body read in full (within `MAX_BODY`).
#[derive(Clone, Debug)]
pub struct HttpResponse {
    /// The request URL as it appears in errors (no credentials).
    pub url: String,
    pub status: u16,
    pub request_id: Option<String>,
    pub retry_after: Option<Duration>,
    pub rate_limit: RateLimit,
    pub body: Bytes,
}

impl HttpResponse {
    /// A `ProviderError::Invalid` for this answer: the body was not what the API documents.
    pub fn invalid(&self, message: impl Into<String>) -> ProviderError {
        ProviderError::Invalid {
            url: self.url.clone(),
            message: message.into(),
            request_id: self.request_id.clone(),
        }
    }
}

/// reqwest is built without a crypto provider (Cargo.toml: ring, not aws-lc-rs, for the
/// binary size) and panics when a client is built before one is installed: install
/// ring as the process default. Idempotent; an Err only means one is installed already,
/// which is as good. Anything that builds its own `reqwest::Client` (tests) calls it.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl HttpClient {
    /// The production client: 5 s to connect, 15 s per request.
    pub fn new() -> Result<Self, ProviderError> {
        Self::with_timeouts(CONNECT_TIMEOUT, REQUEST_TIMEOUT)
    }

    /// Same client with other timeouts (tests use short ones against a hanging server).
    pub fn with_timeouts(connect: Duration, total: Duration) -> Result<Self, ProviderError> {
        install_crypto_provider();
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let client = reqwest::Client::builder()
            .connect_timeout(connect)
            .timeout(total)
            // A redirect could carry the Authorization header to another host, and no
            // documented endpoint redirects: a 3xx is an error like any other.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("routed6d/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            // No idle connections kept between polls: a kept connection arms hyper's
            // pool reaper timer and the server's keep-alive close, waking the daemon
            // between polls (issue 6: no wakeups at rest). A poll a minute can afford
            // a fresh connection.
            .pool_max_idle_per_host(0)
            // No proxy taken silently from the environment (HTTPS_PROXY and friends):
            // the token would go through whatever it names (issue 15).
            .no_proxy()
            .build()
            .map_err(|e| ProviderError::Transport {
                url: String::new(),
                message: format!("cannot build the HTTP client: {}", describe_transport(&e)),
            })?;
        Ok(HttpClient { client })
    }

    /// Send one request with `Authorization: Bearer <token>` and an optional JSON body.
    /// A 2xx answer comes back with its body; anything else is a `ProviderError`.
    pub async fn request(
        &self,
        method: Method,
        url: Url,
        token: &Secret,
        json: Option<&serde_json::Value>,
    ) -> Result<HttpResponse, ProviderError> {
        self.send(method, url, Auth::Bearer(token), json).await
    }

    /// `request` with any kind of authentication.
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        auth: Auth<'_>,
        json: Option<&serde_json::Value>,
    ) -> Result<HttpResponse, ProviderError> {
        let shown = display_url(&url);
        // Zeroed when dropped, like the Secret it copies (the HeaderValue hyper keeps
        // for the request is its own copy).
        let credential = match auth {
            Auth::Bearer(token) => Some((
                header::AUTHORIZATION,
                zeroize::Zeroizing::new(format!("Bearer {}", token.expose())),
            )),
            Auth::ApiKey(token) => Some((
                header::HeaderName::from_static("x-api-key"),
                zeroize::Zeroizing::new(token.expose().to_string()),
            )),
            Auth::None => None,
        };
        let mut request = self.client.request(method, url);
        if let Some((name, value)) = credential {
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                // Never echo the value: it is the token.
                ProviderError::Transport {
                    url: shown.clone(),
                    message: "the token holds characters that cannot go in an HTTP header".into(),
                }
            })?;
            // Keeps the value out of reqwest's and hyper's Debug output and out of HPACK tables.
            value.set_sensitive(true);
            request = request.header(name, value);
        }
        if let Some(body) = json {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| ProviderError::Transport {
            url: shown.clone(),
            message: describe_transport(&e),
        })?;

        let status = response.status().as_u16();
        let headers = response.headers();
        let request_id = request_id_header(headers);
        let rate_limit = rate_limit_headers(headers);
        let retry_after = headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()))
            .or_else(|| {
                // A 429 without Retry-After (DigitalOcean's hourly limit): wait for the
                // window the rate-limit headers name.
                (status == 429)
                    .then_some(rate_limit.reset.as_deref())
                    .flatten()
                    .and_then(|reset| parse_rate_limit_reset(reset, SystemTime::now()))
            });
        if rate_limit != RateLimit::default() {
            tracing::debug!(
                url = %shown,
                limit = ?rate_limit.limit,
                remaining = ?rate_limit.remaining,
                reset = ?rate_limit.reset,
                "provider rate limit"
            );
        }

        let body = read_capped(response, MAX_BODY).await;
        let body = match body {
            Ok(body) => body,
            Err(BodyError::TooLarge) => {
                return Err(ProviderError::Invalid {
                    url: shown,
                    message: format!("body larger than {} MiB", MAX_BODY / (1024 * 1024)),
                    request_id,
                });
            }
            Err(BodyError::Transport(e)) if (200..300).contains(&status) => {
                return Err(ProviderError::Transport {
                    url: shown,
                    message: format!("reading the body: {}", describe_transport(&e)),
                });
            }
            // An error status is the news; a broken error body only loses the details.
            Err(BodyError::Transport(_)) => Bytes::new(),
        };

        if !(200..300).contains(&status) {
            return Err(status_error(shown, status, request_id, retry_after, &body));
        }
        Ok(HttpResponse {
            url: shown,
            status,
            request_id,
            retry_after,
            rate_limit,
            body,
        })
    }
}

enum BodyError {
    TooLarge,
    Transport(reqwest::Error),
}

/// Read the body chunk by chunk and give up as soon as it passes `cap`: a 10 MB answer
/// costs at most `cap` plus one chunk of memory, and the connection is dropped.
async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Bytes, BodyError> {
    if response
        .content_length()
        .is_some_and(|len| len > cap as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > cap {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The rate-limit headers, HostUp's `X-RateLimit-*` or DigitalOcean's `ratelimit-*`.
fn rate_limit_headers(headers: &HeaderMap) -> RateLimit {
    let either = |name: &str| {
        header_text(headers, &format!("x-ratelimit-{name}"))
            .or_else(|| header_text(headers, &format!("ratelimit-{name}")))
    };
    RateLimit {
        limit: either("limit"),
        remaining: either("remaining"),
        reset: either("reset"),
    }
}

/// When a rate-limit window ends, from its reset header: Unix epoch seconds
/// (DigitalOcean), an ISO 8601 timestamp (HostUp), or — a small number — seconds from
/// now (the IETF draft's form). In the past means now; anything else is ignored.
pub fn parse_rate_limit_reset(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let when = if let Ok(number) = value.parse::<u64>() {
        // Nobody resets a window more than a year ahead; larger numbers are epochs.
        if number < 365 * 86_400 {
            return Some(Duration::from_secs(number));
        }
        // checked: a reset of u64::MAX seconds would overflow SystemTime and panic.
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(number))?
    } else {
        humantime::parse_rfc3339_weak(value).ok()?
    };
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

fn json_text(value: Option<serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(s) if !s.trim().is_empty() => {
            Some(crate::rules::provider_text(&s))
        }
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What a non-2xx answer means, from its body when it is a problem document (any
/// shape is tolerated; a non-JSON body leaves only the status).
pub fn status_error(
    url: String,
    status: u16,
    header_request_id: Option<String>,
    retry_after: Option<Duration>,
    body: &[u8],
) -> ProviderError {
    // Any object shape is read field by field: HostUp v2 problem documents
    // {code, detail, title, requestId}, HostUp legacy {error, message, code, requestId,
    // retryAfter} and DigitalOcean {id, message, request_id}.
    let object = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let first = |keys: &[&str]| keys.iter().find_map(|k| json_text(object.get(*k).cloned()));
    let body_retry_after = object.get("retryAfter").and_then(|v| match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    });
    ProviderError::Status {
        url,
        status,
        code: first(&["code", "id", "error"]),
        request_id: first(&["requestId", "request_id"]).or(header_request_id),
        detail: first(&["detail", "message", "title", "error"]),
        retry_after: retry_after.or(body_retry_after.map(Duration::from_secs)),
    }
}

/// `Retry-After` is either delta-seconds or an HTTP date (RFC 9110 §10.2.3). A date in
/// the past means "now"; anything unparsable is ignored (the caller's backoff applies).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn request_id_header(headers: &HeaderMap) -> Option<String> {
    REQUEST_ID_HEADERS
        .iter()
        .find_map(|name| header_text(headers, name))
}

/// The URL as errors and logs show it: without any user:password a base URL might hold.
pub fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    // Both fail only for URLs that cannot have credentials, which is fine.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// A short, operator-readable reason for a transport failure. Built from the error's
/// kind and its source chain, never from the request (which holds the token).
pub fn describe_transport(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".into();
    }
    let mut io_kind = None;
    let mut chain = Vec::new();
    let mut source = error.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            io_kind.get_or_insert(io.kind());
        }
        chain.push(e.to_string());
        source = e.source();
    }
    let text = chain.join(": ").to_lowercase();
    use std::io::ErrorKind;
    let reason = match io_kind {
        Some(ErrorKind::ConnectionRefused) => Some("connection refused"),
        Some(ErrorKind::ConnectionReset) => Some("connection reset"),
        Some(ErrorKind::TimedOut) => Some("timed out"),
        Some(ErrorKind::HostUnreachable) => Some("host unreachable"),
        Some(ErrorKind::NetworkUnreachable) => Some("network unreachable"),
        _ => None,
    };
    if let Some(reason) = reason {
        return reason.into();
    }
    if text.contains("certificate") || text.contains("tls") || text.contains("handshake") {
        return format!(
            "TLS error: {}",
            chain.last().map(String::as_str).unwrap_or("?")
        );
    }
    if text.contains("dns") || text.contains("resolve") || text.contains("lookup") {
        return "cannot resolve the host name".into();
    }
    if text.contains("connection closed") || text.contains("incomplete message") {
        return "connection closed before a complete answer".into();
    }
    if error.is_connect() {
        return format!(
            "cannot connect: {}",
            chain.last().map(String::as_str).unwrap_or("?")
        );
    }
    match chain.last() {
        Some(last) => format!("request failed: {last}"),
        None => "request failed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2026 07:28:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn problem_documents_of_any_shape() {
        let body = br#"{"type":"https://developer.hostup.se/errors/vps_not_found","title":"VPS not found","status":404,"detail":"No VPS matching the given ID was found.","code":"vps_not_found","requestId":"req_xyz789"}"#;
        match status_error("u".into(), 404, None, None, body) {
            ProviderError::Status {
                status,
                code,
                request_id,
                detail,
                ..
            } => {
                assert_eq!(status, 404);
                assert_eq!(code.as_deref(), Some("vps_not_found"));
                assert_eq!(request_id.as_deref(), Some("req_xyz789"));
                assert_eq!(
                    detail.as_deref(),
                    Some("No VPS matching the given ID was found.")
                );
            }
            other => panic!("{other:?}"),
        }
        for odd in [
            &b"<html>bad gateway</html>"[..],
            b"",
            b"[1,2]",
            b"{\"code\":{\"nested\":1},\"detail\":null}",
            b"null",
        ] {
            match status_error("u".into(), 502, Some("hdr".into()), None, odd) {
                ProviderError::Status {
                    status,
                    code,
                    request_id,
                    detail,
                    ..
                } => {
                    assert_eq!(status, 502);
                    assert_eq!(code, None);
                    assert_eq!(detail, None);
                    assert_eq!(request_id.as_deref(), Some("hdr"));
                }
                other => panic!("{other:?}"),
            }
        }
        // Title stands in for a missing detail.
        match status_error("u".into(), 500, None, None, br#"{"title":"Internal"}"#) {
            ProviderError::Status { detail, .. } => assert_eq!(detail.as_deref(), Some("Internal")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rate_limit_resets_in_every_form() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_372_700_800);
        // DigitalOcean: epoch seconds (godo's test header, 73 s after `now`).
        assert_eq!(
            parse_rate_limit_reset("1372700873", now),
            Some(Duration::from_secs(73))
        );
        assert_eq!(
            parse_rate_limit_reset("1372700000", now),
            Some(Duration::ZERO)
        );
        // HostUp: ISO 8601.
        assert_eq!(
            parse_rate_limit_reset("2013-07-01T17:47:50.000Z", now),
            Some(Duration::from_secs(70))
        );
        // Delta seconds.
        assert_eq!(
            parse_rate_limit_reset("30", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_rate_limit_reset("soon", now), None);
    }

    #[test]
    fn legacy_and_digitalocean_error_shapes() {
        let legacy = br#"{"error":"Too Many Requests","message":"Rate limit exceeded","retryAfter":42,"requestId":"r-1"}"#;
        match status_error("u".into(), 429, None, None, legacy) {
            ProviderError::Status {
                code,
                request_id,
                detail,
                retry_after,
                ..
            } => {
                assert_eq!(code.as_deref(), Some("Too Many Requests"));
                assert_eq!(request_id.as_deref(), Some("r-1"));
                assert_eq!(detail.as_deref(), Some("Rate limit exceeded"));
                assert_eq!(retry_after, Some(Duration::from_secs(42)));
            }
            other => panic!("{other:?}"),
        }
        // A Retry-After header wins over the body.
        match status_error("u".into(), 429, None, Some(Duration::from_secs(5)), legacy) {
            ProviderError::Status { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(5)))
            }
            other => panic!("{other:?}"),
        }
        let digitalocean = br#"{"id":"not_found","message":"The resource you requested could not be found.","request_id":"4851a473"}"#;
        let error = status_error("u".into(), 404, Some("hdr".into()), None, digitalocean);
        let text = error.to_string();
        assert_eq!(
            text,
            "u: HTTP 404 code=not_found requestId=4851a473: The resource you requested could not be found."
        );
    }

    #[test]
    fn urls_lose_credentials() {
        let url =
            Url::parse("https://user:pw@cloud.example/api/v2/vps?primaryIp=192.0.2.1").unwrap();
        assert_eq!(
            display_url(&url),
            "https://cloud.example/api/v2/vps?primaryIp=192.0.2.1"
        );
    }

    /// A chunked body (no Content-Length) is cut off once it passes the cap, while the
    /// server is still sending.
    #[tokio::test]
    async fn chunked_body_is_capped_while_reading() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).await.unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
                .await
                .unwrap();
            let chunk = vec![b' '; 64 * 1024];
            let mut sent = 0usize;
            // 10 MiB offered; the client must hang up long before.
            while sent < 10 * 1024 * 1024 {
                let head = format!("{:x}\r\n", chunk.len());
                if stream.write_all(head.as_bytes()).await.is_err()
                    || stream.write_all(&chunk).await.is_err()
                    || stream.write_all(b"\r\n").await.is_err()
                {
                    break;
                }
                sent += chunk.len();
            }
            sent
        });
        let client =
            HttpClient::with_timeouts(Duration::from_secs(2), Duration::from_secs(5)).unwrap();
        let url = Url::parse(&format!("http://{addr}/big")).unwrap();
        let token = Secret::new("t0ken".into());
        match client.request(Method::GET, url, &token, None).await {
            Err(ProviderError::Invalid { message, .. }) => {
                assert_eq!(message, "body larger than 1 MiB")
            }
            other => panic!("{other:?}"),
        }
        let sent = server.await.unwrap();
        assert!(
            sent < 10 * 1024 * 1024,
            "the server got to send everything ({sent} bytes)"
        );
    }
}
