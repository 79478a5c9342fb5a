//! The daemon's side of the docker workloads (`docker`): the keeper task started when a
//! configuration has docker workloads, told what is wanted after every pass, and heard
//! back from. What Docker gave the containers joins the next pass (`Moment::in_use`),
//! so an on-link prefix answers for a container's address as soon as Docker gives it.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{error, info};

use super::Agent;
use crate::config::ProviderKind;
use crate::docker::engine::{Keeper, Report};
use crate::kernel::Kernel;

/// How long `on_stop = "withdraw"` waits for Docker to remove the networks.
const WITHDRAW_WITHIN: Duration = Duration::from_secs(20);

impl<K: Kernel> Agent<K> {
    /// Start the keeper when the configuration has docker workloads (or start it again
    /// for another socket or protocol after a reload); stop it when it has none.
    pub fn start_docker(&mut self) {
        let docker = self
            .config
            .workloads
            .iter()
            .any(|w| w.docker_network.is_some());
        let socket = &self.config.docker_socket;
        let protocol = self.config.daemon.protocol;
        match &self.docker {
            Some(keeper) if docker && keeper.serves(socket, protocol) => {}
            _ if docker => {
                self.docker = Some(Keeper::start(socket.clone(), protocol));
                // A pass already made says what is wanted.
                if self.pass.applied.is_some() {
                    self.tell_docker();
                }
            }
            _ => {
                self.docker = None;
                self.docker_report = Report::default();
            }
        }
    }

    /// Tell the keeper what the last pass placed.
    pub(super) fn tell_docker(&self) {
        if let Some(keeper) = &self.docker {
            keeper.update(crate::docker::wanted(
                &self.config,
                &self.pass.desired.workloads,
            ));
        }
    }

    /// The keeper looked: when the containers' addresses changed behind an on-link
    /// prefix, the proxy entries follow in a pass now.
    pub fn docker_reported(&mut self, report: Report, repair_at: &mut Option<Instant>) {
        let moved = report.endpoints != self.docker_report.endpoints;
        self.docker_report = report;
        if moved && self.config.provider.kind() == ProviderKind::Onlink {
            *repair_at = Some(Instant::now());
        }
        self.write_status();
    }

    /// `on_stop = "withdraw"`: routed6d's networks go, their containers disconnected.
    pub(super) async fn withdraw_docker(&mut self) {
        let Some(keeper) = self.docker.take() else {
            return;
        };
        match keeper.withdraw(WITHDRAW_WITHIN).await {
            Ok(n) => info!("stopping: removed {n} Docker network(s) routed6d made"),
            Err(e) => error!("stopping: the Docker networks stay: {e}"),
        }
    }
}
