//! What the daemon tells beyond the host (issue 18): the metrics, the reachability
//! probe and the hooks, fed from the agent's passes and polls. Kept apart from the
//! loop: the agent calls in at a few points (a pass absorbed, a poll finished, a fast
//! restore, a probe round) and nothing here touches the kernel.

use std::sync::Arc;
use std::time::SystemTime;

use tracing::{info, warn};

use super::{Agent, DaemonError};
use crate::config::Config;
use crate::hooks::{self, Hooks};
use crate::kernel::Kernel;
use crate::metrics::{self, Metrics};
use crate::model::Assignment;
use crate::probe::{self, ProbeStatus, Prober, Round, Turn};
use crate::provider::ProviderError;
use crate::reconcile::Outcome;

/// The agent's observers: always the metrics (cheap atomics, whether or not anything
/// reads them), and a probe and hooks when configured.
pub struct Fleet {
    pub metrics: Arc<Metrics>,
    pub hooks: Hooks,
    pub prober: Option<Prober>,
    /// The next pass follows a start or a reload: its writes are the configuration's,
    /// not repairs of drift.
    baseline: bool,
    /// The textfile could not be written last time (logged once per streak).
    textfile_failing: std::cell::Cell<bool>,
}

impl Fleet {
    pub fn new(config: &Config) -> Fleet {
        Fleet {
            metrics: Arc::new(Metrics::new(config)),
            hooks: Hooks::none(),
            prober: None,
            baseline: true,
            textfile_failing: std::cell::Cell::new(false),
        }
    }

    /// Start what `config` asks for on the running runtime: the /metrics socket, the
    /// hook task, the probe's timer. A socket that cannot be had stops the start.
    pub async fn start(&mut self, config: &Config) -> Result<(), DaemonError> {
        if let Some(addr) = config.metrics.listen {
            let listener = metrics::serve::bind(addr).await?;
            metrics::serve::spawn(listener, self.metrics.clone());
        }
        for hook in &config.hooks {
            if let Err(e) = hooks::check(hook) {
                warn!("hook {e}: it will fail until this is fixed");
            }
        }
        if !config.hooks.is_empty() {
            self.hooks = Hooks::start();
        }
        if let Some(settings) = &config.probe {
            let connect = settings
                .tcp_port
                .map(|port| format!(" and a TCP connect to port {port}"))
                .unwrap_or_default();
            info!(
                "probe: an ICMPv6 echo{connect} to {} from each routed prefix every {}",
                settings.target,
                humantime::format_duration(settings.interval)
            );
            if let Err(e) = probe::may_open() {
                match settings.tcp_port {
                    Some(port) => warn!(
                        "probe: {e}: every echo will fail until then; the TCP connect to port {port} still probes"
                    ),
                    None => warn!("probe: {e}: every probe will fail until then"),
                }
            }
            self.prober = Some(Prober::new(settings.clone())?);
        }
        Ok(())
    }

    pub fn probe_status(&self) -> Option<ProbeStatus> {
        self.prober.as_ref().map(|p| p.status.clone())
    }
}

impl<K: Kernel> Agent<K> {
    /// A new configuration from a reload. `[metrics]` and `[probe]` keep what they
    /// started with (their socket and timer were opened at start); hooks follow the
    /// new file from the next change.
    pub fn reconfigure(&mut self, config: Config) {
        if config.metrics != self.config.metrics || config.probe != self.config.probe {
            warn!("[metrics] and [probe] changes take effect when routed6d restarts");
        }
        if !config.hooks.is_empty() && !self.fleet.hooks.is_running() {
            self.fleet.hooks = Hooks::start();
        }
        self.fleet.metrics.configured(&config);
        self.fleet.baseline = true;
        self.kernel
            .observe_neighbours(config.provider.kind() == crate::config::ProviderKind::Onlink);
        self.config = config;
    }

    /// A poll finished.
    pub(super) fn polled(&mut self, result: Result<SystemTime, &ProviderError>) {
        match result {
            Ok(at) => self.fleet.metrics.poll_succeeded(at),
            Err(e) => self.fleet.metrics.poll_failed(e),
        }
    }

    /// A pass applied `assignment` (the answer the last pass applied is still in
    /// `self.pass.applied`): count its writes, publish what is programmed, aim the probe,
    /// and queue the hooks when the answer changed.
    pub(super) fn passed(&mut self, outcome: &Outcome, assignment: &Assignment) {
        let unchanged = self.pass.applied.as_ref() == Some(assignment);
        let repair = unchanged && !self.fleet.baseline;
        self.fleet.baseline = false;
        let fleet = &mut self.fleet;
        fleet.metrics.writes(&outcome.writes, repair);
        fleet.metrics.programmed(
            &assignment.prefixes,
            self.config.prefix.mode,
            self.pass.online,
            outcome.plan.conflicts.len(),
        );
        if let Some(prober) = &mut fleet.prober {
            prober.aim(probe::sources(&outcome.desired, Some(assignment)));
        }
        if !unchanged {
            let changes = hooks::changes(self.pass.applied.as_ref(), assignment);
            fleet.hooks.changed(&self.config, assignment, &changes);
        }
    }

    /// A fast restore wrote `outcome`'s ops: repairs all.
    pub(super) fn restored(&mut self, outcome: &Outcome) {
        self.fleet.metrics.writes(&outcome.writes, true);
    }

    /// A probe round ended: note it, tell the journal when a streak starts or ends,
    /// publish it. The kernel is not touched, whatever the round found.
    pub fn probed(&mut self, round: Round) {
        let Some(prober) = &mut self.fleet.prober else {
            return;
        };
        let target = prober.status.target.clone();
        match prober.status.note(&round) {
            Some(Turn::Unreachable) => {
                for echo in round.failed() {
                    let why = echo.why();
                    warn!(
                        OP = "probe",
                        PREFIX = %echo.prefix,
                        "probe: {target} did not answer {} ({}): {why}; the provider may not route {} here, or the way back is broken (the kernel is left as it is)",
                        echo.source, echo.prefix, echo.prefix
                    );
                }
            }
            Some(Turn::Reachable { after }) => info!(
                OP = "probe",
                "probe: reachable again: {target} answers every routed prefix, after {after} failed probe(s)"
            ),
            None => {}
        }
        self.fleet.metrics.probed(&round);
        self.write_status();
    }

    /// Write the textfile, if configured. A failure is logged once per streak.
    pub(super) fn publish(&self) {
        let Some(path) = &self.config.metrics.textfile else {
            return;
        };
        let failing = &self.fleet.textfile_failing;
        match self.fleet.metrics.write_textfile(path) {
            Ok(()) if failing.replace(false) => {
                info!("metrics: writing {} again", path.display());
            }
            Ok(()) => {}
            Err(e) if !failing.replace(true) => {
                warn!("metrics: cannot write the textfile, retrying after every pass: {e}");
            }
            Err(e) => tracing::debug!("{e}"),
        }
    }
}

#[cfg(test)]
mod tests;
