//! The `/metrics` endpoint (`[metrics] listen`): hyper's HTTP/1 server on the daemon's
//! own runtime, one short connection per scrape. Without `listen` nothing here runs
//! and no socket is opened.
//!
//! Bounded on purpose, since anyone who can reach the port can talk to it: at most
//! `MAX_CONNECTIONS` at once (more are closed at accept), `CONNECTION_TIME` for a whole
//! exchange (a client that trickles its headers is cut off), no keep-alive (an idle
//! connection would hold a timer, and a scrape every 15 s costs one accept), and GET
//! or HEAD of /metrics only.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use super::{Metrics, MetricsError};

/// Scrapes served at once; one Prometheus needs one (two during a reload).
pub const MAX_CONNECTIONS: usize = 4;
/// A whole exchange, from accept to the last byte.
pub const CONNECTION_TIME: Duration = Duration::from_secs(10);

const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Open the listening socket: a failure here is one line at start, not a daemon
/// that runs without the metrics it was configured to serve.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Listen { addr, source })
}

/// Serve `metrics` on `listener` from a task of the current runtime, until the
/// runtime ends.
pub fn spawn(listener: TcpListener, metrics: Arc<Metrics>) {
    if let Ok(addr) = listener.local_addr() {
        info!("metrics: serving http://{addr}/metrics");
    }
    tokio::spawn(accept(listener, metrics));
}

async fn accept(listener: TcpListener, metrics: Arc<Metrics>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin on the error.
                warn!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!("metrics: {peer} refused: {MAX_CONNECTIONS} scrapes already in progress");
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                std::future::ready(Ok::<_, Infallible>(answer(&metrics, &request)))
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_TIME, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!("metrics: {peer}: {e}"),
                Err(_) => debug!("metrics: {peer}: cut off after {CONNECTION_TIME:?}"),
            }
            drop(slot);
        });
    }
}

fn answer(metrics: &Metrics, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let accept = request
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    respond(metrics, request.method(), request.uri().path(), accept)
}

/// The response to `method path` with this Accept header: pure but for reading the
/// metrics, so it is tested without a socket.
pub fn respond(
    metrics: &Metrics,
    method: &Method,
    path: &str,
    accept: &str,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &'static str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    };
    match (method, path) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            // Prometheus asks for OpenMetrics first; everything else gets the text
            // format every scraper reads.
            let (encoded, content_type) = if accept.contains("application/openmetrics-text") {
                (metrics.openmetrics(), OPENMETRICS)
            } else {
                (metrics.text(), TEXT)
            };
            match encoded {
                Ok(body) => reply(StatusCode::OK, content_type, body),
                Err(e) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    format!("{e}\n"),
                ),
            }
        }
        (_, "/metrics") => {
            let mut response = reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                "GET or HEAD\n".into(),
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            response
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "routed6d: the metrics are at /metrics\n".into(),
        ),
    }
}
