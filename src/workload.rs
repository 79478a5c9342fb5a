//! Pure: where each `[[workload]]` lives inside the routed prefix. A workload is given a
//! slot once, from the configuration alone, and its sub-prefix is the routed prefix's
//! network plus `slot` sub-prefixes of its own length: the same slot across restarts,
//! and the same offset inside whatever prefix the provider routes next. See issue 17.
//!
//! Why slots in config order with an optional explicit `slot`, not a hash of the name:
//! a hash of a /64's worth of slots in a /56 collides within a handful of workloads
//! (256 slots), and a collision would have to be resolved by order anyway. Config order
//! is what an operator reads; `slot = N` pins a workload so that inserting another one
//! above it never moves it, and `plan`/`status` print every slot so it can be copied in.
//! Slot 0 (the first sub-prefix of each length) is the host's: routed6d's own addresses
//! (`::1` of the prefix) and the delegate interface's live there, so it is never given
//! to a workload.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use serde::Serialize;

use crate::config::{Config, PrefixMode, WorkloadConfig};
use crate::desired::place_host;
use crate::model::RoutedPrefix;

/// Why a workload cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadError {
    /// Explicit slots (or lengths) that make two workloads share addresses.
    #[error("workload {name:?} (slot {slot}, /{length}) overlaps workload {other:?}")]
    Overlap {
        name: String,
        slot: u64,
        length: u8,
        other: String,
    },
    #[error(
        "workload {name:?} asks for slot 0, which is the host's own (its addresses live there)"
    )]
    HostSlot { name: String },
    /// A slot whose addresses lie beyond the 128 bits of an IPv6 address.
    #[error("workload {name:?}: slot {slot} of /{length} lies beyond the IPv6 address space")]
    Beyond { name: String, slot: u64, length: u8 },
    #[error(
        "workload {name:?}: prefix_length {length} is not longer than the routed prefix {prefix}: there is no room for the host's slot beside it"
    )]
    TooShort {
        name: String,
        length: u8,
        prefix: Ipv6Net,
    },
    #[error(
        "workload {name:?}: slot {slot} of /{length} does not fit in the routed prefix {prefix} (it has {slots} slot(s) of that length, 1 to {last} free for workloads)"
    )]
    NoRoom {
        name: String,
        slot: u64,
        length: u8,
        prefix: Ipv6Net,
        slots: u128,
        last: u128,
    },
    #[error(
        "workload {name:?}: host address {addr} of prefix.addresses falls in its sub-prefix {sub}"
    )]
    HostInside {
        name: String,
        addr: Ipv6Addr,
        sub: Ipv6Net,
    },
}

/// The offsets (from the routed prefix's network) a slot of `length` covers, as a
/// half-open range; None when it does not fit in 128 bits.
fn span(slot: u64, length: u8) -> Option<(u128, u128)> {
    let size = 1u128.checked_shl(128 - u32::from(length))?;
    let start = u128::from(slot).checked_mul(size)?;
    Some((start, start.checked_add(size)?))
}

fn overlap(a: (u128, u128), b: (u128, u128)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Give every workload its slot: `explicit[i]` when set, otherwise the smallest slot
/// from 1 up whose addresses no workload before it (in config order, explicit ones
/// first) holds. The input is the configuration alone, so the answer is the same at
/// every start and for every routed prefix. `(name, length, explicit)` per workload.
pub fn assign_slots(workloads: &[(&str, u8, Option<u64>)]) -> Result<Vec<u64>, WorkloadError> {
    let mut taken: Vec<((u128, u128), &str)> = Vec::new();
    let mut slots = vec![0u64; workloads.len()];
    for (index, (name, length, explicit)) in workloads.iter().enumerate() {
        let Some(slot) = explicit else { continue };
        if *slot == 0 {
            return Err(WorkloadError::HostSlot {
                name: name.to_string(),
            });
        }
        let range = span(*slot, *length).ok_or_else(|| WorkloadError::Beyond {
            name: name.to_string(),
            slot: *slot,
            length: *length,
        })?;
        if let Some((_, other)) = taken.iter().find(|(r, _)| overlap(*r, range)) {
            return Err(WorkloadError::Overlap {
                name: name.to_string(),
                slot: *slot,
                length: *length,
                other: other.to_string(),
            });
        }
        taken.push((range, name));
        slots[index] = *slot;
    }
    for (index, (name, length, explicit)) in workloads.iter().enumerate() {
        if explicit.is_some() {
            continue;
        }
        // Free slots exist below the number of workloads plus the widest one's span:
        // the search is bounded by what is taken, not by the address space.
        let mut slot = 1u64;
        loop {
            let Some(range) = span(slot, *length) else {
                return Err(WorkloadError::Beyond {
                    name: name.to_string(),
                    slot,
                    length: *length,
                });
            };
            match taken.iter().find(|(r, _)| overlap(*r, range)) {
                None => {
                    taken.push((range, name));
                    slots[index] = slot;
                    break;
                }
                // Jump past what is in the way rather than stepping one by one.
                Some((r, _)) => {
                    let size = range.1 - range.0;
                    slot = u64::try_from(r.1.div_ceil(size))
                        .unwrap_or(u64::MAX)
                        .max(slot + 1);
                }
            }
        }
    }
    Ok(slots)
}

/// The workload's sub-prefix of `prefix`: its network plus `slot` sub-prefixes of the
/// workload's length, or why it does not fit there.
pub fn carve(workload: &WorkloadConfig, prefix: Ipv6Net) -> Result<Ipv6Net, WorkloadError> {
    let length = workload.prefix_length;
    if length <= prefix.prefix_len() {
        return Err(WorkloadError::TooShort {
            name: workload.name.clone(),
            length,
            prefix,
        });
    }
    // Slots of `length` in `prefix`: 2^(length - prefix_len); slot 0 is the host's.
    let bits = u32::from(length - prefix.prefix_len());
    let slots = 1u128.checked_shl(bits).unwrap_or(u128::MAX);
    if u128::from(workload.slot) >= slots {
        return Err(WorkloadError::NoRoom {
            name: workload.name.clone(),
            slot: workload.slot,
            length,
            prefix,
            slots,
            last: slots - 1,
        });
    }
    let (start, _) = span(workload.slot, length).expect("fits: checked above");
    let network = u128::from(prefix.network()) | start;
    Ok(Ipv6Net::new(Ipv6Addr::from(network), length).expect("length ≤ 128"))
}

/// A workload placed in one routed prefix: what `plan`, `status` and the journal show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Placed {
    pub name: String,
    pub kind: &'static str,
    pub interface: String,
    pub slot: u64,
    pub prefix: Ipv6Net,
    /// The gateway: the sub-prefix's first host address, on `interface`.
    pub gateway: Ipv6Addr,
    /// The routed prefix it is carved from.
    pub routed: Ipv6Net,
}

impl std::fmt::Display for Placed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "workload {} ({} {}): slot {} = {} of {}, gateway {}",
            self.name, self.kind, self.interface, self.slot, self.prefix, self.routed, self.gateway
        )
    }
}

/// The routed prefix workloads are carved from: the first one the provider names that
/// is a prefix routed through a next hop (not a single reserved address). One, so that
/// a workload has one sub-prefix, and its router advertisement one fresh prefix.
pub fn parent(prefixes: &[RoutedPrefix]) -> Option<&RoutedPrefix> {
    prefixes
        .iter()
        .find(|p| p.next_hop.is_some() && p.prefix.prefix_len() < 128)
}

/// Every workload placed in `routed`, or the first that does not fit, with the host's
/// addresses (`prefix.addresses`) kept out of every sub-prefix.
pub fn place_all(config: &Config, routed: Ipv6Net) -> Result<Vec<Placed>, WorkloadError> {
    let mut placed = Vec::new();
    for workload in &config.workloads {
        let prefix = carve(workload, routed)?;
        if config.prefix.mode == PrefixMode::Addresses
            && let Some(addr) = config
                .prefix
                .addresses
                .iter()
                .map(|h| place_host(routed, *h))
                .find(|a| prefix.contains(a))
        {
            return Err(WorkloadError::HostInside {
                name: workload.name.clone(),
                addr,
                sub: prefix,
            });
        }
        placed.push(Placed {
            name: workload.name.clone(),
            kind: workload.kind.name(),
            interface: workload.interface.clone(),
            slot: workload.slot,
            prefix,
            gateway: place_host(prefix, Ipv6Addr::LOCALHOST),
            routed,
        });
    }
    Ok(placed)
}

#[cfg(test)]
mod tests;
