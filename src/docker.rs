//! Pure: the Docker networks of `kind = "docker"` workloads (issue 17, item 3). Each
//! is a bridge network whose IPv6 subnet is the workload's sub-prefix, created through
//! the Engine API (`engine`) and marked routed6d's by its labels. What to do with a
//! network is decided here from what Docker shows; `engine` only carries it out.
//!
//! Why the network is recreated when the prefix changes, not edited: Docker cannot
//! change a network's subnet. Its containers are disconnected first and connected
//! again to the new network, each with the same IPv4 address (the IPv4 subnet Docker
//! chose is carried over) and an IPv6 address at the same offset in the new sub-prefix
//! (`same_offset`): a container keeps its place as a workload keeps its slot. Unlike a
//! bridge workload's SLAAC, there is no overlap in which the old address is deprecated:
//! Docker gives a container one address per network.
//!
//! What is routed6d's: a network whose `org.routed6d.protocol` label is this
//! instance's protocol number. Any other network of the same name is left as it is,
//! with one error line; a network of routed6d's that no workload names any more is
//! removed once no container uses it.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::Ipv6Net;

pub mod engine;

/// The label that makes a network routed6d's: the protocol number of the instance
/// that made it, as its kernel objects carry.
pub const PROTOCOL_LABEL: &str = "org.routed6d.protocol";
/// The label naming the workload, for `docker network ls --filter label=…`.
pub const WORKLOAD_LABEL: &str = "org.routed6d.workload";
/// The bridge driver option naming the bridge interface.
pub const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";
/// Docker 27 and later masquerade a network's IPv6 traffic when ip6tables is on, unless
/// told the network is routed; earlier versions keep the option and ignore it.
pub const GATEWAY_MODE_OPTION: &str = "com.docker.network.bridge.gateway_mode_ipv6";

/// What Docker did not do, or answered that routed6d cannot use.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot reach Docker at {socket}: {reason}")]
    Unreachable { socket: String, reason: String },
    #[error("Docker refused to {what}: {reason}")]
    Refused { what: String, reason: String },
    #[error("Docker's answer about network {network} is unreadable: {reason}")]
    Unreadable { network: String, reason: String },
    #[error("withdrawing the Docker networks did not finish within {0:?}")]
    Timeout(std::time::Duration),
}

/// What routed6d wants of one docker workload's network, after a pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedNetwork {
    pub network: String,
    pub workload: String,
    pub bridge: String,
    /// The workload's sub-prefix; None while it is not placed (no routed prefix yet,
    /// or none now): an existing network is then left as it is.
    pub subnet: Option<Ipv6Net>,
}

impl WantedNetwork {
    /// The gateway Docker puts on the bridge: the sub-prefix's `::1`, the address a
    /// bridge workload's gateway has too.
    pub fn gateway(&self) -> Option<Ipv6Addr> {
        self.subnet
            .map(|s| crate::desired::place_host(s, Ipv6Addr::LOCALHOST))
    }
}

/// A container attached to a network, as the network's inspection shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    pub id: String,
    pub name: String,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

/// One Docker network, as routed6d reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeenNetwork {
    pub id: String,
    pub name: String,
    pub labels: HashMap<String, String>,
    pub ipv6_subnets: Vec<Ipv6Net>,
    /// The IPv4 pools (subnet, gateway) Docker chose, carried over when the network is
    /// made again so that containers keep their IPv4 addresses.
    pub ipv4_pools: Vec<(String, Option<String>)>,
    pub bridge: Option<String>,
    pub containers: Vec<Attached>,
}

impl SeenNetwork {
    /// Made by this instance of routed6d.
    pub fn is_ours(&self, protocol: u8) -> bool {
        self.labels.get(PROTOCOL_LABEL) == Some(&protocol.to_string())
    }
}

/// What to do with one wanted network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// There is none: make it.
    Create,
    /// It is as wanted.
    Keep,
    /// Not placed, and there is none: nothing to make it with.
    Wait,
    /// A network of that name that is not routed6d's: left alone.
    Foreign,
    /// routed6d's, with another subnet or bridge: made again, its containers moved.
    Recreate { why: String },
}

/// The step for `want`, from the network of that name Docker has (if any).
pub fn step(want: &WantedNetwork, seen: Option<&SeenNetwork>, protocol: u8) -> Step {
    let Some(seen) = seen else {
        return if want.subnet.is_some() {
            Step::Create
        } else {
            Step::Wait
        };
    };
    if !seen.is_ours(protocol) {
        return Step::Foreign;
    }
    let Some(subnet) = want.subnet else {
        return Step::Keep;
    };
    if seen.ipv6_subnets != [subnet] {
        let was = match seen.ipv6_subnets.as_slice() {
            [] => "no IPv6 subnet".to_string(),
            subnets => subnets
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        };
        return Step::Recreate {
            why: format!("its subnet is {was}, the workload's sub-prefix is {subnet}"),
        };
    }
    if seen.bridge.as_deref() != Some(want.bridge.as_str()) {
        return Step::Recreate {
            why: format!(
                "its bridge is {}, the workload's is {}",
                seen.bridge.as_deref().unwrap_or("Docker's choice"),
                want.bridge
            ),
        };
    }
    Step::Keep
}

/// routed6d's networks that no wanted network names (a workload taken out of the
/// configuration): removed when no container uses them, else kept and said once.
pub fn unwanted<'a>(
    ours: &'a [SeenNetwork],
    wanted: &[WantedNetwork],
) -> impl Iterator<Item = &'a SeenNetwork> {
    ours.iter()
        .filter(move |n| !wanted.iter().any(|w| w.network == n.name))
}

/// `addr` moved from `from` to `to` at the same offset: its host bits kept, its network
/// bits `to`'s. The lengths are the same for one workload, but a longer `to` would cut
/// the offset to fit.
pub fn same_offset(addr: Ipv6Addr, from: Ipv6Net, to: Ipv6Net) -> Ipv6Addr {
    let host = u128::from(addr) & u128::from(from.hostmask()) & u128::from(to.hostmask());
    Ipv6Addr::from(u128::from(to.network()) | host)
}

/// The labels of a network routed6d makes for `workload`.
pub fn labels(protocol: u8, workload: &str) -> HashMap<String, String> {
    HashMap::from([
        (PROTOCOL_LABEL.to_string(), protocol.to_string()),
        (WORKLOAD_LABEL.to_string(), workload.to_string()),
    ])
}

/// The containers' IPv6 addresses in each wanted network's sub-prefix: the addresses
/// in use downstream that Docker knows before any packet shows them (an on-link
/// prefix's proxy entries are made for them). Sorted, without duplicates.
pub fn endpoints<'a>(
    networks: impl IntoIterator<Item = &'a SeenNetwork>,
    wanted: &[WantedNetwork],
) -> Vec<Ipv6Addr> {
    let mut out: Vec<Ipv6Addr> = networks
        .into_iter()
        .filter_map(|n| {
            let subnet = wanted.iter().find(|w| w.network == n.name)?.subnet?;
            Some((n, subnet))
        })
        .flat_map(|(n, subnet)| {
            n.containers
                .iter()
                .filter_map(|c| c.ipv6)
                .filter(move |a| subnet.contains(a))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The wanted networks for a configuration and the workloads a pass placed: every
/// docker workload, with its sub-prefix when it is placed.
pub fn wanted(
    config: &crate::config::Config,
    placed: &[crate::workload::Placed],
) -> Vec<WantedNetwork> {
    config
        .workloads
        .iter()
        .filter_map(|w| {
            let network = w.docker_network.clone()?;
            Some(WantedNetwork {
                network,
                workload: w.name.clone(),
                bridge: w.interface.clone(),
                subnet: placed.iter().find(|p| p.name == w.name).map(|p| p.prefix),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
