//! I/O: the Docker Engine API on its unix socket, through bollard. A task of its own
//! keeps the docker workloads' networks as `docker::step` says, so that a slow or absent
//! Docker never holds up a pass or a repair: the daemon hands it the wanted networks
//! after every pass (`Keeper::update`) and hears back what the containers use
//! (`Report`), which an on-link prefix's proxy entries are made for.
//!
//! It looks again when the wanted networks change and when Docker's event stream
//! tells of one of them (created, destroyed, a container connected or disconnected):
//! a network removed by hand is made again at once, and a container's address is
//! proxied as soon as Docker gives it. Docker that is not running yet (it often starts
//! after routed6d) or restarts is waited for with a backoff, said once.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    EndpointIpamConfig, EndpointSettings, EventMessage, Ipam, IpamConfig, NetworkConnectRequest,
    NetworkCreateRequest, NetworkDisconnectRequest, NetworkInspect,
};
use bollard::query_parameters::{
    EventsOptions, InspectContainerOptions, InspectNetworkOptions, ListNetworksOptions,
};
use futures_util::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use super::{
    Attached, BRIDGE_NAME_OPTION, DockerError, GATEWAY_MODE_OPTION, PROTOCOL_LABEL, SeenNetwork,
    Step, WantedNetwork, endpoints, labels, same_offset, step, unwanted,
};

/// Each Engine API request's limit: a Docker that hangs is a Docker that is down.
const REQUEST_TIMEOUT_SECS: u64 = 30;
/// The wait before asking an absent Docker again doubles from this…
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// …up to this.
const LAST_RETRY: Duration = Duration::from_secs(30);

/// What the keeper found after a look.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The containers' IPv6 addresses in the workloads' sub-prefixes (`docker::endpoints`).
    pub endpoints: Vec<Ipv6Addr>,
    /// One line per docker workload, for `status`.
    pub lines: Vec<String>,
}

/// The handle on the keeper task. Dropping it ends the task.
pub struct Keeper {
    socket: PathBuf,
    protocol: u8,
    wanted: watch::Sender<Option<Vec<WantedNetwork>>>,
    reports: mpsc::Receiver<Report>,
    withdraw: mpsc::Sender<oneshot::Sender<Result<usize, DockerError>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Keeper {
    /// Start keeping the networks of instance `protocol` through `socket`. Nothing is
    /// asked of Docker before the first `update`: before the first good answer
    /// routed6d does not know what it wants.
    pub fn start(socket: PathBuf, protocol: u8) -> Keeper {
        let (wanted, wanted_rx) = watch::channel(None);
        let (reports_tx, reports) = mpsc::channel(4);
        let (withdraw, withdraw_rx) = mpsc::channel(1);
        let task = tokio::spawn(keep(
            socket.clone(),
            protocol,
            wanted_rx,
            reports_tx,
            withdraw_rx,
        ));
        Keeper {
            socket,
            protocol,
            wanted,
            reports,
            withdraw,
            task,
        }
    }

    /// Whether this keeper serves `socket` for `protocol` (a reload may change either).
    pub fn serves(&self, socket: &Path, protocol: u8) -> bool {
        self.socket == socket && self.protocol == protocol
    }

    /// The networks wanted after a pass; the keeper looks again only if they changed.
    pub fn update(&self, wanted: Vec<WantedNetwork>) {
        self.wanted.send_if_modified(|current| {
            let changed = current.as_ref() != Some(&wanted);
            if changed {
                *current = Some(wanted);
            }
            changed
        });
    }

    /// Remove every network of routed6d's (`on_stop = "withdraw"`), its containers
    /// disconnected first; how many were removed. Ends the keeper.
    pub async fn withdraw(self, within: Duration) -> Result<usize, DockerError> {
        let (reply, answer) = oneshot::channel();
        let asked = async {
            self.withdraw
                .send(reply)
                .await
                .map_err(|_| DockerError::Timeout(within))?;
            answer.await.map_err(|_| DockerError::Timeout(within))?
        };
        tokio::time::timeout(within, asked)
            .await
            .map_err(|_| DockerError::Timeout(within))?
    }
}

/// The keeper's next report; pending forever without a keeper.
pub async fn next(keeper: Option<&mut Keeper>) -> Report {
    match keeper {
        Some(keeper) => match keeper.reports.recv().await {
            Some(report) => report,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Remove every network of instance `protocol` now, for `routed6d release`: the
/// daemon is not running (it holds the lock), so no keeper does it.
pub async fn withdraw_once(socket: &Path, protocol: u8) -> Result<usize, DockerError> {
    let client = connect(socket).await?;
    withdraw_all(&client, protocol).await
}

/// What was said once and must not be said at every look.
#[derive(Default)]
struct Said {
    unreachable: Option<String>,
    foreign: HashSet<String>,
    kept: HashSet<String>,
}

/// A container taken off a network being made again, to be connected to the new one.
#[derive(Clone, Debug)]
struct Reattach {
    id: String,
    name: String,
    ipv4: Option<Ipv4Addr>,
    /// At the same offset in the new sub-prefix.
    ipv6: Option<Ipv6Addr>,
    was: Option<Ipv6Addr>,
    aliases: Vec<String>,
}

/// What the keeper carries from one look to the next.
#[derive(Default)]
struct Keeping {
    said: Said,
    /// Containers disconnected by a move not connected again yet, by network name: a
    /// move cut short (Docker restarted halfway) finishes at the next look.
    pending: HashMap<String, Vec<Reattach>>,
    last: Option<Report>,
}

type Withdrawals = mpsc::Receiver<oneshot::Sender<Result<usize, DockerError>>>;

async fn keep(
    socket: PathBuf,
    protocol: u8,
    mut wanted: watch::Receiver<Option<Vec<WantedNetwork>>>,
    reports: mpsc::Sender<Report>,
    mut withdrawals: Withdrawals,
) {
    let mut keeping = Keeping::default();
    let mut retry = FIRST_RETRY;
    loop {
        // Nothing is asked before the first pass says what is wanted.
        while wanted.borrow().is_none() {
            tokio::select! {
                changed = wanted.changed() => if changed.is_err() { return },
                Some(reply) = withdrawals.recv() => {
                    let _ = reply.send(Ok(0));
                    return;
                }
            }
        }
        match connect(&socket).await {
            Ok(client) => {
                if keeping.said.unreachable.take().is_some() {
                    info!("docker: reached Docker at {} again", socket.display());
                }
                retry = FIRST_RETRY;
                if let Some(reply) = watch_and_keep(
                    &client,
                    protocol,
                    &mut wanted,
                    &reports,
                    &mut withdrawals,
                    &mut keeping,
                )
                .await
                {
                    let _ = reply.send(withdraw_all(&client, protocol).await);
                    return;
                }
            }
            Err(e) => {
                let text = e.to_string();
                if keeping.said.unreachable.as_deref() != Some(text.as_str()) {
                    warn!(
                        "docker: {text}; the docker workloads wait for it (their sub-prefixes are placed, their networks made once Docker answers)"
                    );
                    keeping.said.unreachable = Some(text);
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(retry) => {}
            changed = wanted.changed() => if changed.is_err() { return },
            Some(reply) = withdrawals.recv() => {
                let _ = reply.send(Err(DockerError::Unreachable {
                    socket: socket.display().to_string(),
                    reason: keeping.said.unreachable.clone().unwrap_or_default(),
                }));
                return;
            }
        }
        retry = (retry * 2).min(LAST_RETRY);
    }
}

/// Look, then look again whenever something calls for it, until Docker goes away (None)
/// or a withdrawal is asked for (its reply, for the caller to answer).
async fn watch_and_keep(
    client: &Docker,
    protocol: u8,
    wanted: &mut watch::Receiver<Option<Vec<WantedNetwork>>>,
    reports: &mpsc::Sender<Report>,
    withdrawals: &mut Withdrawals,
    keeping: &mut Keeping,
) -> Option<oneshot::Sender<Result<usize, DockerError>>> {
    // Subscribed before the first look, so that nothing between the two is missed.
    let mut events = Box::pin(network_events(client));
    loop {
        let want = wanted.borrow_and_update().clone().unwrap_or_default();
        match look(client, protocol, &want, keeping).await {
            Ok(report) => {
                if keeping.last.as_ref() != Some(&report) {
                    keeping.last = Some(report.clone());
                    let _ = reports.send(report).await;
                }
            }
            Err(e) => {
                error!("docker: {e}; looking again when Docker answers");
                return None;
            }
        }
        loop {
            tokio::select! {
                changed = wanted.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    break;
                }
                event = events.next() => match event {
                    Some(Ok(event)) if concerns(&event, &want, &keeping.said.kept) => break,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        warn!("docker: the event stream failed ({e}); connecting again");
                        return None;
                    }
                    None => {
                        warn!("docker: the event stream ended (Docker stopped?); connecting again");
                        return None;
                    }
                },
                Some(reply) = withdrawals.recv() => return Some(reply),
            }
        }
    }
}

/// Docker's network events: created, destroyed, connected, disconnected.
fn network_events(
    client: &Docker,
) -> impl Stream<Item = Result<EventMessage, bollard::errors::Error>> {
    let filters = HashMap::from([("type".to_string(), vec!["network".to_string()])]);
    client.events(Some(EventsOptions {
        filters: Some(filters),
        ..Default::default()
    }))
}

/// A network event about a wanted network, or about one of routed6d's kept only
/// while containers use it.
fn concerns(event: &EventMessage, wanted: &[WantedNetwork], kept: &HashSet<String>) -> bool {
    let name = event
        .actor
        .as_ref()
        .and_then(|a| a.attributes.as_ref())
        .and_then(|a| a.get("name"));
    name.is_some_and(|name| wanted.iter().any(|w| &w.network == name) || kept.contains(name))
}

async fn connect(socket: &Path) -> Result<Docker, DockerError> {
    let unreachable = |reason: String| DockerError::Unreachable {
        socket: socket.display().to_string(),
        reason,
    };
    let path = socket
        .to_str()
        .ok_or_else(|| unreachable("the path is not UTF-8".into()))?;
    let client =
        Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
            .map_err(|e| unreachable(e.to_string()))?;
    // Speak the older of the two versions: Debian's 20.10 knows API 1.41 only.
    client
        .negotiate_version()
        .await
        .map_err(|e| unreachable(e.to_string()))
}

fn refused(what: String) -> impl FnOnce(bollard::errors::Error) -> DockerError {
    move |e| DockerError::Refused {
        what,
        reason: e.to_string(),
    }
}

fn not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// One look: every wanted network made or kept as `step` says, moves finished, the
/// networks no workload names removed when unused.
async fn look(
    client: &Docker,
    protocol: u8,
    wanted: &[WantedNetwork],
    keeping: &mut Keeping,
) -> Result<Report, DockerError> {
    let mut seen_now = Vec::new();
    let mut lines = Vec::new();
    for want in wanted {
        let seen = inspect(client, &want.network).await?;
        let changed = match step(want, seen.as_ref(), protocol) {
            Step::Wait => {
                lines.push(format!(
                    "{} (workload {}): waiting for the workload's sub-prefix",
                    want.network, want.workload
                ));
                continue;
            }
            Step::Foreign => {
                if keeping.said.foreign.insert(want.network.clone()) {
                    error!(
                        WORKLOAD = %want.workload,
                        "docker: a network named {} exists and is not routed6d's (no label {PROTOCOL_LABEL}={protocol}): workload {} is left without one; remove or rename one of them",
                        want.network, want.workload
                    );
                }
                lines.push(format!(
                    "{} (workload {}): NOT routed6d's, left alone",
                    want.network, want.workload
                ));
                continue;
            }
            Step::Keep => false,
            Step::Create => {
                create(client, protocol, want, &[]).await?;
                true
            }
            Step::Recreate { why } => {
                let old = seen.clone().expect("a network to make again was seen");
                recreate(client, protocol, want, old, &why, &mut keeping.pending).await?;
                true
            }
        };
        keeping.said.foreign.remove(&want.network);
        if keeping.pending.contains_key(&want.network) {
            reattach(client, &want.network, &mut keeping.pending).await?;
        }
        let now = if changed || seen.is_none() {
            inspect(client, &want.network).await?
        } else {
            seen
        };
        if let Some(now) = now {
            lines.push(describe(want, &now));
            seen_now.push(now);
        }
    }
    remove_unwanted(client, protocol, wanted, &mut keeping.said).await?;
    Ok(Report {
        endpoints: endpoints(&seen_now, wanted),
        lines,
    })
}

fn describe(want: &WantedNetwork, seen: &SeenNetwork) -> String {
    format!(
        "{} (workload {}): {} on {}, {} container(s)",
        want.network,
        want.workload,
        seen.ipv6_subnets
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        seen.bridge.as_deref().unwrap_or("?"),
        seen.containers.len()
    )
}

/// The network named `name`, if there is one. Docker also answers a name with a
/// network whose id starts with it: that one is not it.
async fn inspect(client: &Docker, name: &str) -> Result<Option<SeenNetwork>, DockerError> {
    match client
        .inspect_network(name, None::<InspectNetworkOptions>)
        .await
    {
        Ok(network) => {
            let seen = read_network(network, name)?;
            Ok((seen.name == name).then_some(seen))
        }
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(refused(format!("inspect network {name}"))(e)),
    }
}

/// A network's inspection, read into what routed6d uses.
fn read_network(network: NetworkInspect, asked: &str) -> Result<SeenNetwork, DockerError> {
    let unreadable = |reason: String| DockerError::Unreadable {
        network: asked.to_string(),
        reason,
    };
    let mut seen = SeenNetwork {
        id: network.id.ok_or_else(|| unreadable("no Id".into()))?,
        name: network.name.unwrap_or_default(),
        labels: network.labels.unwrap_or_default(),
        bridge: network
            .options
            .as_ref()
            .and_then(|o| o.get(BRIDGE_NAME_OPTION).cloned()),
        ..SeenNetwork::default()
    };
    for pool in network.ipam.and_then(|i| i.config).unwrap_or_default() {
        let Some(subnet) = pool.subnet else { continue };
        if subnet.contains(':') {
            let subnet = subnet
                .parse()
                .map_err(|_| unreadable(format!("IPv6 subnet {subnet:?}")))?;
            seen.ipv6_subnets.push(subnet);
        } else {
            seen.ipv4_pools.push((subnet, pool.gateway));
        }
    }
    for (id, endpoint) in network.containers.unwrap_or_default() {
        // "2001:db8::2/80": the address without its length; absent or empty when none.
        fn address<T: std::str::FromStr>(text: Option<String>) -> Option<T> {
            text.and_then(|t| t.split('/').next().and_then(|a| a.parse().ok()))
        }
        seen.containers.push(Attached {
            id,
            name: endpoint.name.unwrap_or_default(),
            ipv4: address(endpoint.ipv4_address),
            ipv6: address(endpoint.ipv6_address),
        });
    }
    seen.containers.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(seen)
}

/// Make `want`'s network, with `ipv4_pools` when they are carried over from the network
/// it replaces (else Docker picks an IPv4 subnet, as for any network).
async fn create(
    client: &Docker,
    protocol: u8,
    want: &WantedNetwork,
    ipv4_pools: &[(String, Option<String>)],
) -> Result<(), DockerError> {
    let (Some(subnet), Some(gateway)) = (want.subnet, want.gateway()) else {
        return Ok(());
    };
    let mut pools: Vec<IpamConfig> = ipv4_pools
        .iter()
        .map(|(subnet, gateway)| IpamConfig {
            subnet: Some(subnet.clone()),
            gateway: gateway.clone(),
            ..Default::default()
        })
        .collect();
    pools.push(IpamConfig {
        subnet: Some(subnet.to_string()),
        gateway: Some(gateway.to_string()),
        ..Default::default()
    });
    let request = NetworkCreateRequest {
        name: want.network.clone(),
        driver: Some("bridge".into()),
        enable_ipv6: Some(true),
        ipam: Some(Ipam {
            driver: Some("default".into()),
            config: Some(pools),
            options: None,
        }),
        options: Some(HashMap::from([
            (BRIDGE_NAME_OPTION.to_string(), want.bridge.clone()),
            (GATEWAY_MODE_OPTION.to_string(), "routed".to_string()),
        ])),
        labels: Some(labels(protocol, &want.workload)),
        ..Default::default()
    };
    client
        .create_network(request)
        .await
        .map_err(refused(format!("create network {}", want.network)))?;
    info!(
        WORKLOAD = %want.workload,
        WORKLOAD_PREFIX = %subnet,
        IFACE = %want.bridge,
        "docker: created network {} with {subnet} (gateway {gateway}) on {}",
        want.network, want.bridge
    );
    Ok(())
}

/// Make `old` again as `want` says: its containers noted (with their aliases, an IPv4
/// address and an IPv6 address at the same offset), disconnected, the network removed
/// and made again with the same IPv4 pools, and the containers connected to it.
async fn recreate(
    client: &Docker,
    protocol: u8,
    want: &WantedNetwork,
    old: SeenNetwork,
    why: &str,
    pending: &mut HashMap<String, Vec<Reattach>>,
) -> Result<(), DockerError> {
    let subnet = want.subnet.expect("recreated only when placed");
    info!(
        WORKLOAD = %want.workload,
        WORKLOAD_PREFIX = %subnet,
        "docker: network {} is made again ({why}); its {} container(s) are moved to it",
        want.network,
        old.containers.len()
    );
    let from = old.ipv6_subnets.first().copied();
    let mut moving = Vec::new();
    for container in &old.containers {
        moving.push(Reattach {
            id: container.id.clone(),
            name: container.name.clone(),
            // Pinned only where the IPv4 pools are carried over (Docker allows fixed
            // addresses in subnets that were asked for, not in ones it picked).
            ipv4: container.ipv4.filter(|_| !old.ipv4_pools.is_empty()),
            ipv6: container
                .ipv6
                .zip(from)
                .map(|(a, from)| same_offset(a, from, subnet)),
            was: container.ipv6,
            aliases: aliases(client, &container.id, &old.name).await?,
        });
    }
    // Noted before the first disconnect: a move cut short is finished later.
    pending
        .entry(want.network.clone())
        .or_default()
        .extend(moving.iter().cloned());
    for container in &moving {
        disconnect(client, &old, &container.id, &container.name).await?;
    }
    match client.remove_network(&old.id).await {
        Ok(()) => {}
        Err(e) if not_found(&e) => {}
        Err(e) => return Err(refused(format!("remove network {}", old.name))(e)),
    }
    create(client, protocol, want, &old.ipv4_pools).await
}

/// Take a container off `network` (forced: a stopped container too); one already gone
/// is no error.
async fn disconnect(
    client: &Docker,
    network: &SeenNetwork,
    id: &str,
    name: &str,
) -> Result<(), DockerError> {
    let request = NetworkDisconnectRequest {
        container: id.to_string(),
        force: Some(true),
    };
    match client.disconnect_network(&network.id, request).await {
        Ok(()) => Ok(()),
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(refused(format!(
            "disconnect container {name} from network {}",
            network.name
        ))(e)),
    }
}

/// A container's aliases on `network` (Compose's service names among them), but the
/// short id Docker gives every container anyway. Only a container's inspection has
/// them: Docker's list of containers leaves them out.
async fn aliases(client: &Docker, id: &str, network: &str) -> Result<Vec<String>, DockerError> {
    let inspected = match client
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
    {
        Ok(inspected) => inspected,
        Err(e) if not_found(&e) => return Ok(Vec::new()),
        Err(e) => return Err(refused(format!("inspect container {id}"))(e)),
    };
    let short = &id[..id.len().min(12)];
    Ok(inspected
        .network_settings
        .and_then(|s| s.networks)
        .and_then(|mut n| n.remove(network))
        .and_then(|e| e.aliases)
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a != short)
        .collect())
}

/// Connect again the containers a move took off `network`.
async fn reattach(
    client: &Docker,
    network: &str,
    pending: &mut HashMap<String, Vec<Reattach>>,
) -> Result<(), DockerError> {
    let Some(waiting) = pending.remove(network) else {
        return Ok(());
    };
    let mut left = Vec::new();
    let mut failure = None;
    for container in waiting {
        let request = NetworkConnectRequest {
            container: container.id.clone(),
            endpoint_config: Some(EndpointSettings {
                ipam_config: Some(EndpointIpamConfig {
                    ipv4_address: container.ipv4.map(|a| a.to_string()),
                    ipv6_address: container.ipv6.map(|a| a.to_string()),
                    link_local_ips: None,
                }),
                aliases: (!container.aliases.is_empty()).then(|| container.aliases.clone()),
                ..Default::default()
            }),
        };
        match client.connect_network(network, request).await {
            Ok(()) => info!(
                "docker: container {} is on network {} again, at {} (was {})",
                container.name,
                network,
                container
                    .ipv6
                    .map_or("an address Docker chose".into(), |a| a.to_string()),
                container.was.map_or("none".into(), |a| a.to_string())
            ),
            // Gone meanwhile: nothing to connect.
            Err(e) if not_found(&e) => {}
            Err(e) => {
                failure.get_or_insert_with(|| {
                    refused(format!(
                        "connect container {} to network {network}",
                        container.name
                    ))(e)
                });
                left.push(container);
            }
        }
    }
    if !left.is_empty() {
        pending.insert(network.to_string(), left);
    }
    failure.map_or(Ok(()), Err)
}

/// routed6d's networks, by label.
async fn ours(client: &Docker, protocol: u8) -> Result<Vec<SeenNetwork>, DockerError> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{PROTOCOL_LABEL}={protocol}")],
    )]);
    let listed = client
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filters),
        }))
        .await
        .map_err(refused("list networks".into()))?;
    let mut out = Vec::new();
    // The list does not show containers: each is inspected.
    for network in listed {
        let Some(name) = network.name else { continue };
        if let Some(seen) = inspect(client, &name).await?
            && seen.is_ours(protocol)
        {
            out.push(seen);
        }
    }
    Ok(out)
}

/// routed6d's networks that no workload names any more: removed when unused, kept
/// (said once) while a container uses one.
async fn remove_unwanted(
    client: &Docker,
    protocol: u8,
    wanted: &[WantedNetwork],
    said: &mut Said,
) -> Result<(), DockerError> {
    let ours = ours(client, protocol).await?;
    let mut kept = HashSet::new();
    for network in unwanted(&ours, wanted) {
        if network.containers.is_empty() {
            client
                .remove_network(&network.id)
                .await
                .map_err(refused(format!("remove network {}", network.name)))?;
            info!(
                "docker: removed network {}: no workload names it any more",
                network.name
            );
        } else {
            if !said.kept.contains(&network.name) {
                warn!(
                    "docker: network {} is routed6d's and no workload names it any more; it stays while {} container(s) use it",
                    network.name,
                    network.containers.len()
                );
            }
            kept.insert(network.name.clone());
        }
    }
    said.kept = kept;
    Ok(())
}

/// Remove every network of routed6d's, disconnecting its containers first.
async fn withdraw_all(client: &Docker, protocol: u8) -> Result<usize, DockerError> {
    let ours = ours(client, protocol).await?;
    for network in &ours {
        for container in &network.containers {
            disconnect(client, network, &container.id, &container.name).await?;
        }
        client
            .remove_network(&network.id)
            .await
            .map_err(refused(format!("remove network {}", network.name)))?;
        info!(
            "docker: removed network {} ({} container(s) disconnected)",
            network.name,
            network.containers.len()
        );
    }
    Ok(ours.len())
}
