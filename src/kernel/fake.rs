//! An in-memory kernel with the real one's semantics where routed6d depends on them
//! (EEXIST on a taken slot, deletes of routes filtered by protocol), counting writes
//! and able to fail on demand: the reconcile loop is tested against it without root.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

use crate::kernel::{Applied, Kernel, KernelError};
use crate::model::{Link, ObservedAddress, ObservedProxy, ObservedRoute, ObservedState, Op};

#[derive(Debug, Default)]
pub struct FakeKernel {
    pub protocol: u8,
    pub state: ObservedState,
    /// Every op that changed something, in order.
    pub writes: Vec<Op>,
    /// Every op asked for, including no-op ones.
    pub requests: usize,
    pub dumps: usize,
    /// Errors to return for the next ops (one per op, front first).
    pub failures: VecDeque<String>,
    /// Make `observe` fail while set.
    pub dump_error: Option<String>,
    /// Global addresses per interface name, for `interface_addresses`.
    pub interface_ips: BTreeMap<String, Vec<IpAddr>>,
}

impl FakeKernel {
    pub fn new(protocol: u8, links: &[(&str, u32)]) -> Self {
        FakeKernel {
            protocol,
            state: ObservedState {
                links: links
                    .iter()
                    .map(|(name, index)| Link {
                        alias: None,
                        index: *index,
                        name: name.to_string(),
                        up: true,
                        lower_up: true,
                    })
                    .collect(),
                ..ObservedState::default()
            },
            ..FakeKernel::default()
        }
    }

    /// Objects carrying routed6d's protocol, as `ip` text, sorted: what tests compare.
    pub fn owned(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .state
            .addresses
            .iter()
            .filter(|a| a.protocol == self.protocol)
            .map(|a| format!("addr {}", a.address))
            .chain(
                self.state
                    .routes
                    .iter()
                    .filter(|r| r.protocol == self.protocol)
                    .map(|r| format!("route {}", r.route)),
            )
            .chain(
                self.state
                    .proxies
                    .iter()
                    .filter(|p| p.protocol == self.protocol)
                    .map(|p| format!("proxy {} dev {}", p.proxy.addr, p.proxy.ifname)),
            )
            .collect();
        out.sort();
        out
    }

    fn apply(&mut self, op: &Op) -> bool {
        let protocol = self.protocol;
        let state = &mut self.state;
        match op {
            Op::AddAddress(a) => {
                let taken = state
                    .addresses
                    .iter()
                    .any(|o| o.address.ifindex == a.ifindex && o.address.addr == a.addr);
                if taken {
                    return false;
                }
                state.addresses.push(ObservedAddress {
                    address: a.clone(),
                    protocol,
                });
            }
            Op::DelAddress(a) => {
                let before = state.addresses.len();
                state
                    .addresses
                    .retain(|o| !(o.address.ifindex == a.ifindex && o.address.addr == a.addr));
                return state.addresses.len() != before;
            }
            Op::AddRoute(r) => {
                if state.routes.iter().any(|o| o.route.slot() == r.slot()) {
                    return false;
                }
                state.routes.push(ObservedRoute {
                    route: r.clone(),
                    protocol,
                });
            }
            Op::ReplaceRoute(r) => {
                state.routes.retain(|o| o.route.slot() != r.slot());
                state.routes.push(ObservedRoute {
                    route: r.clone(),
                    protocol,
                });
            }
            Op::DelRoute(r) => {
                // As the real request does: the protocol is part of the match.
                let before = state.routes.len();
                state
                    .routes
                    .retain(|o| !(o.route.slot() == r.slot() && o.protocol == protocol));
                return state.routes.len() != before;
            }
            Op::SetSysctl { key, value, .. } => {
                state.sysctls.insert(key.clone(), value.clone());
            }
            // As the kernel does: a name is taken or not; a new link gets the next
            // free index and, being routed6d's, its alias.
            Op::AddBridge(b) => {
                if state.links.iter().any(|l| l.name == b.name) {
                    return false;
                }
                let index = state.links.iter().map(|l| l.index).max().unwrap_or(0) + 1;
                state.links.push(Link {
                    index,
                    name: b.name.clone(),
                    up: true,
                    lower_up: false,
                    alias: Some(b.alias.clone()),
                });
            }
            Op::DelBridge(b) => {
                let Some(index) = state
                    .links
                    .iter()
                    .find(|l| l.name == b.name)
                    .map(|l| l.index)
                else {
                    return false;
                };
                state.links.retain(|l| l.index != index);
                state.addresses.retain(|a| a.address.ifindex != index);
                state.routes.retain(|r| r.route.ifindex != Some(index));
                state.neighbours.retain(|n| n.ifindex != index);
            }
            // The real kernel takes an add over an existing entry (and stamps it):
            // the plan never asks for one, so here it is simply already there.
            Op::AddProxy(p) => {
                if state
                    .proxies
                    .iter()
                    .any(|o| o.proxy.ifindex == p.ifindex && o.proxy.addr == p.addr)
                {
                    return false;
                }
                state.proxies.push(ObservedProxy {
                    proxy: p.clone(),
                    protocol,
                });
            }
            // As the real kernel does: a proxy delete matches no protocol.
            Op::DelProxy(p) => {
                let before = state.proxies.len();
                state
                    .proxies
                    .retain(|o| !(o.proxy.ifindex == p.ifindex && o.proxy.addr == p.addr));
                return state.proxies.len() != before;
            }
        }
        true
    }
}

impl Kernel for FakeKernel {
    async fn observe(&mut self, sysctl_keys: &[String]) -> Result<ObservedState, KernelError> {
        self.dumps += 1;
        if let Some(message) = &self.dump_error {
            return Err(KernelError::Dump {
                what: "routes",
                errno: None,
                message: message.clone(),
            });
        }
        let mut state = self.state.clone();
        state.sysctls.retain(|k, _| sysctl_keys.contains(k));
        Ok(state)
    }

    async fn apply_op(&mut self, op: &Op) -> Result<Applied, KernelError> {
        self.requests += 1;
        if let Some(message) = self.failures.pop_front() {
            return Err(KernelError::Op {
                op: op.to_string(),
                errno: None,
                message,
                hint: String::new(),
            });
        }
        if self.apply(op) {
            self.writes.push(op.clone());
            Ok(Applied::Changed)
        } else {
            Ok(Applied::AlreadyThere)
        }
    }

    async fn interface_addresses(&mut self, name: &str) -> Result<Vec<IpAddr>, KernelError> {
        Ok(self.interface_ips.get(name).cloned().unwrap_or_default())
    }
}
