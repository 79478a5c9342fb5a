//! What routed6d tells a fleet's Prometheus: the prefixes it programmed, how its polls
//! and kernel writes go, and what the reachability probe found. Kept in the official
//! client's registry (`prometheus-client`), exposed on `[metrics] listen` (`serve`)
//! and written for node_exporter's textfile collector (`write_textfile`).
//!
//! Every label's values are bounded by something other than time: the prefixes the
//! provider routes here, the six kernel verbs, the eight failure kinds, the three
//! results of a connect. A host has at most 34 series plus one per routed prefix
//! (README, Monitoring), whatever it lives through.

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::config::{Config, PrefixMode};
use crate::model::RoutedPrefix;
use crate::probe::Round;
use crate::provider::ProviderError;

pub mod serve;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics.listen {addr}: cannot listen: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("metrics.textfile {path}: {source}")]
    Textfile {
        path: String,
        source: std::io::Error,
    },
    #[error("encoding the metrics: {0}")]
    Encode(#[from] std::fmt::Error),
}

/// Why a poll failed, as a label: a fixed set, so a fleet's failures can be summed
/// by kind without a series per error text.
pub const FAILURE_KINDS: [&str; 8] = [
    "transport",
    "rate_limited",
    "unauthorized",
    "server_error",
    "client_error",
    "invalid_answer",
    "not_found",
    "other",
];

/// The kind of a failed poll (one of `FAILURE_KINDS`).
pub fn failure_kind(error: &ProviderError) -> &'static str {
    match error {
        ProviderError::Transport { .. } => "transport",
        ProviderError::Status { status: 429, .. } => "rate_limited",
        ProviderError::Status {
            status: 401 | 403, ..
        } => "unauthorized",
        ProviderError::Status { status, .. } if *status >= 500 => "server_error",
        ProviderError::Status { .. } => "client_error",
        ProviderError::Invalid { .. } | ProviderError::Refused(_) => "invalid_answer",
        ProviderError::NotFound(_) => "not_found",
        _ => "other",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PrefixLabels {
    prefix: String,
    next_hop: String,
    origin: String,
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The probe's series, registered only when `[probe]` is configured: an absent
/// series says "not probed", a 0 says "probed and unanswered". `connects` likewise
/// only with `probe.tcp_port`.
#[derive(Debug, Default)]
struct ProbeSeries {
    reachable: Gauge,
    rtt: Gauge<f64, AtomicU64>,
    last: Gauge<f64, AtomicU64>,
    echoes: Family<ResultLabels, Counter>,
    connects: Option<Family<ResultLabels, Counter>>,
}

/// The `result` label of `routed6d_probe_connects_total` (`probe::Connect::label`).
pub const CONNECT_RESULTS: [&str; 3] = ["established", "refused", "none"];

/// Every series routed6d exports. Updated by the daemon's one task; read by the
/// /metrics endpoint's connections (the values are atomics).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    prefix_info: Family<PrefixLabels, Gauge>,
    last_success: Gauge<f64, AtomicU64>,
    poll_interval: Gauge<f64, AtomicU64>,
    poll_failures: Family<KindLabels, Counter>,
    kernel_ops: Family<OpLabels, Counter>,
    repairs: Counter,
    conflicts: Gauge,
    online: Gauge,
    probe: Option<ProbeSeries>,
}

impl Metrics {
    pub fn new(config: &Config) -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::default(),
            prefix_info: Family::default(),
            last_success: Gauge::default(),
            poll_interval: Gauge::default(),
            poll_failures: Family::default(),
            kernel_ops: Family::default(),
            repairs: Counter::default(),
            conflicts: Gauge::default(),
            online: Gauge::default(),
            probe: config.probe.as_ref().map(|p| ProbeSeries {
                connects: p.tcp_port.map(|_| Family::default()),
                ..ProbeSeries::default()
            }),
        };
        metrics.register();
        for kind in FAILURE_KINDS {
            let _ = metrics.poll_failures.get_or_create(&KindLabels { kind });
        }
        if let Some(probe) = &metrics.probe {
            for result in ["reply", "none"] {
                let _ = probe.echoes.get_or_create(&ResultLabels { result });
            }
            for result in CONNECT_RESULTS {
                if let Some(connects) = &probe.connects {
                    let _ = connects.get_or_create(&ResultLabels { result });
                }
            }
        }
        metrics.configured(config);
        metrics
    }

    /// Name every series in the registry (the handles share their values).
    fn register(&mut self) {
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        let registry = &mut self.registry;
        registry.register("routed6d_build_info", "routed6d's version", build);
        registry.register(
            "routed6d_prefix_info",
            "A prefix the provider routes here and routed6d programmed (1 per prefix)",
            self.prefix_info.clone(),
        );
        registry.register(
            "routed6d_last_successful_poll_timestamp_seconds",
            "When the provider last gave a well-formed answer (Unix time; 0: not since start)",
            self.last_success.clone(),
        );
        registry.register(
            "routed6d_poll_interval_seconds",
            "The configured poll interval (provider.poll_interval)",
            self.poll_interval.clone(),
        );
        registry.register(
            "routed6d_poll_failures",
            "Polls that got no usable answer, by kind",
            self.poll_failures.clone(),
        );
        registry.register(
            "routed6d_kernel_ops",
            "Writes to the kernel, by op and result (changed or failed)",
            self.kernel_ops.clone(),
        );
        registry.register(
            "routed6d_repairs",
            "Objects of routed6d's put back after something else changed them (drift)",
            self.repairs.clone(),
        );
        registry.register(
            "routed6d_conflicts",
            "Objects of others in the places routed6d wants (not touched)",
            self.conflicts.clone(),
        );
        registry.register(
            "routed6d_online",
            "1 when the last pass left every address and route of the routed prefixes in the kernel",
            self.online.clone(),
        );
        if let Some(probe) = &self.probe {
            registry.register(
                "routed6d_probe_reachable",
                "1 when the last probe got an answer (echo reply, or TCP connect established or refused) from probe.target to an address of every routed prefix",
                probe.reachable.clone(),
            );
            registry.register(
                "routed6d_probe_rtt_seconds",
                "The slowest round-trip time of the last probe's answers (each prefix's quicker method)",
                probe.rtt.clone(),
            );
            registry.register(
                "routed6d_probe_last_timestamp_seconds",
                "When the last probe ended (Unix time)",
                probe.last.clone(),
            );
            registry.register(
                "routed6d_probe_echoes",
                "Echo requests sent by the probe, by result (reply or none)",
                probe.echoes.clone(),
            );
            if let Some(connects) = &probe.connects {
                registry.register(
                    "routed6d_probe_connects",
                    "TCP connects opened by the probe (probe.tcp_port), by result (established, refused or none)",
                    connects.clone(),
                );
            }
        }
    }

    /// Take in a (re)loaded configuration.
    pub fn configured(&self, config: &Config) {
        self.poll_interval
            .set(config.provider.poll_interval.as_secs_f64());
    }

    pub fn poll_succeeded(&self, at: SystemTime) {
        self.last_success.set(unix_seconds(at));
    }

    pub fn poll_failed(&self, error: &ProviderError) {
        self.poll_failures
            .get_or_create(&KindLabels {
                kind: failure_kind(error),
            })
            .inc();
    }

    /// A pass took place: `writes` are its kernel writes (verb, succeeded); `repair`
    /// says they undid drift rather than followed the provider or the configuration.
    pub fn writes(&self, writes: &[(&'static str, bool)], repair: bool) {
        for (op, ok) in writes {
            let result = if *ok { "changed" } else { "failed" };
            self.kernel_ops
                .get_or_create(&OpLabels { op, result })
                .inc();
        }
        if repair {
            let repaired = writes.iter().filter(|(_, ok)| *ok).count();
            self.repairs.inc_by(repaired as u64);
        }
    }

    /// What the last pass left programmed: the prefixes of the answer it applied.
    pub fn programmed(
        &self,
        prefixes: &[RoutedPrefix],
        mode: PrefixMode,
        online: bool,
        conflicts: usize,
    ) {
        self.prefix_info.clear();
        for routed in prefixes {
            self.prefix_info
                .get_or_create(&PrefixLabels {
                    prefix: routed.prefix.to_string(),
                    next_hop: routed.next_hop.map(|h| h.to_string()).unwrap_or_default(),
                    origin: routed.origin.clone(),
                    mode: mode_name(mode),
                })
                .set(1);
        }
        self.online.set(i64::from(online));
        self.conflicts
            .set(i64::try_from(conflicts).unwrap_or(i64::MAX));
    }

    /// What a probe round found.
    pub fn probed(&self, round: &Round) {
        let Some(probe) = &self.probe else {
            return;
        };
        probe.reachable.set(i64::from(round.reachable()));
        probe
            .rtt
            .set(round.slowest().map_or(0.0, |rtt| rtt.as_secs_f64()));
        probe.last.set(unix_seconds(round.at));
        for echo in &round.echoes {
            let result = if echo.result.is_ok() { "reply" } else { "none" };
            probe.echoes.get_or_create(&ResultLabels { result }).inc();
            if let (Some(connects), Some(connect)) = (&probe.connects, &echo.connect) {
                connects
                    .get_or_create(&ResultLabels {
                        result: connect.label(),
                    })
                    .inc();
            }
        }
    }

    /// The Prometheus text format (0.0.4): what node_exporter's textfile collector and
    /// every Prometheus read.
    pub fn text(&self) -> Result<String, MetricsError> {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// OpenMetrics text, for a scraper that asks for it.
    pub fn openmetrics(&self) -> Result<String, MetricsError> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// Write the text format to `path` for node_exporter: a fresh temporary file in
    /// the same directory renamed over it, so the collector reads the old file or the
    /// new one, never half of one. Mode 0644 whatever the umask (the unit's is 0077):
    /// node_exporter runs as another user.
    pub fn write_textfile(&self, path: &Path) -> Result<(), MetricsError> {
        use std::os::unix::fs::PermissionsExt;
        let failed = |source| MetricsError::Textfile {
            path: path.display().to_string(),
            source,
        };
        let text = self.text()?;
        let dir = path.parent().unwrap_or(Path::new("/"));
        let mut tmp = tempfile::Builder::new()
            .prefix(".routed6d.prom.")
            .tempfile_in(dir)
            .map_err(failed)?;
        tmp.write_all(text.as_bytes()).map_err(failed)?;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(failed)?;
        tmp.persist(path).map_err(|e| failed(e.error))?;
        Ok(())
    }
}

fn mode_name(mode: PrefixMode) -> &'static str {
    match mode {
        PrefixMode::Addresses => "addresses",
        PrefixMode::Anyip => "anyip",
        PrefixMode::Delegate => "delegate",
    }
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

#[cfg(test)]
mod tests;
