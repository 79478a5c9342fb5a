//! `[[workload]]` (issue 17): each table checked against its kind and the rest of the
//! file, and every workload given its slot (`workload::assign_slots`). Whether a
//! workload fits the routed prefix is known only with the prefix: `workload::carve`
//! says so at `plan` and in the daemon (and in `Config::parse` already for a prefix the
//! file itself names).

use std::path::Path;

use super::{
    ConfigError, PrefixMode, ProviderKind, RawWorkload, WorkloadConfig, WorkloadKind,
    find_array_key_line,
};

/// Docker's own rule for network names, with a length bound: what `docker network
/// create` would refuse is refused here, with the line.
fn docker_network_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The bridge Docker is told to name a docker workload's network when `interface` is
/// not written: `dk-` and the workload's name, cut to the kernel's 15 bytes (names are
/// ASCII). Two names that cut alike are refused as one interface used twice.
pub fn default_docker_bridge(workload: &str) -> String {
    let mut name = format!("dk-{workload}");
    name.truncate(15);
    name
}

/// What a workload is checked against besides its own keys.
pub(super) struct WorkloadContext<'a> {
    pub(super) uplink: &'a str,
    pub(super) prefix_interface: &'a str,
    pub(super) mode: PrefixMode,
    pub(super) kind: ProviderKind,
}

/// `[[workload]]`: names, interfaces and Docker networks unique, lengths sane, each
/// kind's keys, and the slots (`workload::assign_slots`). Whether a workload fits the routed prefix
/// is known only with the prefix: `carve` says so at `plan` and in the daemon (and
/// here already for static routes).
pub(super) fn resolve_workloads(
    raw: Vec<RawWorkload>,
    context: WorkloadContext<'_>,
    text: &str,
    path: &Path,
) -> Result<Vec<WorkloadConfig>, ConfigError> {
    let invalid = |index: usize, key: &str, message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        line: find_array_key_line(text, "workload", index, key),
        message,
    };
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    if context.mode == PrefixMode::Anyip {
        return Err(invalid(
            0,
            "kind",
            "[[workload]] does not go with prefix.mode = \"anyip\": the local route for the whole prefix would answer for every workload's address".into(),
        ));
    }
    if context.kind == ProviderKind::DigitalOcean {
        return Err(invalid(
            0,
            "kind",
            "[[workload]] needs a routed prefix; kind = \"digitalocean\" routes single addresses"
                .into(),
        ));
    }
    let mut out: Vec<WorkloadConfig> = Vec::new();
    for (index, w) in raw.into_iter().enumerate() {
        let field = format!("workload[{index}]");
        let valid_name = !w.name.is_empty()
            && w.name.len() <= 32
            && w.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_name {
            return Err(invalid(
                index,
                "name",
                format!(
                    "{field}.name {:?} is not a name of 1 to 32 letters, digits, '-' or '_'",
                    w.name
                ),
            ));
        }
        if let Some(other) = out.iter().find(|o| o.name == w.name) {
            return Err(invalid(
                index,
                "name",
                format!("{field}.name {:?} is already a workload's name", other.name),
            ));
        }
        let (interface, docker_network) = match (w.kind, w.interface, w.docker_network) {
            (WorkloadKind::Bridge, None, _) => {
                return Err(invalid(
                    index,
                    "kind",
                    format!(
                        "{field}: kind = \"bridge\" needs interface, e.g. interface = \"br-web\""
                    ),
                ));
            }
            (WorkloadKind::Bridge, Some(_), Some(_)) => {
                return Err(invalid(
                    index,
                    "docker_network",
                    format!("{field}.docker_network applies only to kind = \"docker\""),
                ));
            }
            (WorkloadKind::Bridge, Some(i), None) => (i.0, None),
            (WorkloadKind::Docker, _, None) => {
                return Err(invalid(
                    index,
                    "kind",
                    format!(
                        "{field}: kind = \"docker\" needs docker_network, e.g. docker_network = \"web\""
                    ),
                ));
            }
            (WorkloadKind::Docker, interface, Some(network)) => {
                if !docker_network_name(&network) {
                    return Err(invalid(
                        index,
                        "docker_network",
                        format!(
                            "{field}.docker_network {network:?} is not a Docker network name (1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit)"
                        ),
                    ));
                }
                if let Some(other) = out
                    .iter()
                    .find(|o| o.docker_network.as_deref() == Some(network.as_str()))
                {
                    return Err(invalid(
                        index,
                        "docker_network",
                        format!(
                            "{field}.docker_network {network:?} is already workload {:?}'s",
                            other.name
                        ),
                    ));
                }
                // Docker names its bridges br-<network id> unless told; routed6d tells it,
                // so that the bridge is known before the network exists (the neighbour
                // caches behind an on-link prefix are read by interface).
                let interface = interface.map_or_else(|| default_docker_bridge(&w.name), |i| i.0);
                (interface, Some(network))
            }
        };
        if interface == context.uplink || interface == context.prefix_interface || interface == "lo"
        {
            return Err(invalid(
                index,
                "interface",
                format!(
                    "{field}.interface {interface} is the uplink, lo or prefix.interface: a workload needs its own bridge"
                ),
            ));
        }
        if let Some(other) = out.iter().find(|o| o.interface == interface) {
            return Err(invalid(
                index,
                "interface",
                format!(
                    "{field}.interface {interface} is already workload {:?}'s",
                    other.name
                ),
            ));
        }
        let prefix_length = match u8::try_from(w.prefix_length) {
            Ok(n @ 1..=128) => n,
            _ => {
                return Err(invalid(
                    index,
                    "prefix_length",
                    format!("{field}.prefix_length {} is not 1 to 128", w.prefix_length),
                ));
            }
        };
        if context.kind == ProviderKind::Onlink && prefix_length <= 64 {
            return Err(invalid(
                index,
                "prefix_length",
                format!(
                    "{field}.prefix_length {prefix_length} does not fit in the on-link /64 beside the host: write a longer one, such as 80"
                ),
            ));
        }
        out.push(WorkloadConfig {
            name: w.name,
            kind: w.kind,
            interface,
            prefix_length,
            slot: w.slot.unwrap_or(0),
            slot_pinned: w.slot.is_some(),
            docker_network,
        });
    }
    let wanted: Vec<(&str, u8, Option<u64>)> = out
        .iter()
        .map(|w| {
            (
                w.name.as_str(),
                w.prefix_length,
                w.slot_pinned.then_some(w.slot),
            )
        })
        .collect();
    let slots = crate::workload::assign_slots(&wanted).map_err(|e| {
        let name = match &e {
            crate::workload::WorkloadError::Overlap { name, .. }
            | crate::workload::WorkloadError::Beyond { name, .. }
            | crate::workload::WorkloadError::HostSlot { name } => name.clone(),
            _ => String::new(),
        };
        let index = out.iter().position(|w| w.name == name).unwrap_or(0);
        invalid(index, "slot", e.to_string())
    })?;
    for (workload, slot) in out.iter_mut().zip(slots) {
        workload.slot = slot;
    }
    Ok(out)
}
