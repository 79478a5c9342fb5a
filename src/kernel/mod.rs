//! The kernel behind a narrow trait: one dump to observe, one idempotent call per op,
//! and a stream of change events. `netlink` is the real one, `fake` the one the
//! reconcile loop is tested against without root. `record` keeps which addresses
//! routed6d added on kernels that do not keep an address's protocol.

#[cfg(test)]
pub mod fake;
pub mod netlink;
pub mod record;
pub mod socket;
pub mod watch;

use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::Ipv6Net;

use crate::model::{ObservedState, Op};

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("cannot open a netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("netlink dump of {what} failed: {message}")]
    Dump { what: &'static str, message: String },
    /// One op failed; `hint` explains well-known errnos (EACCES adding an IPv6 address:
    /// IPv6 disabled on the interface).
    #[error("{op}: {message}{hint}")]
    Op {
        op: String,
        message: String,
        hint: String,
    },
    #[error("sysctl {key}: {source}")]
    Sysctl { key: String, source: std::io::Error },
    /// The record of routed6d's addresses (kernels without IFA_PROTO) could not be read
    /// at start, or not be updated after `op` changed the kernel.
    #[error("{op}{consequence}: {source}")]
    Record {
        op: String,
        consequence: &'static str,
        source: record::RecordError,
    },
}

/// What the daemon needs from the kernel.
pub trait Kernel {
    /// One dump: links, every IPv6 address, the IPv6 routes of the kinds routed6d
    /// installs (any protocol), and the named sysctls (paths below /proc/sys).
    fn observe(
        &mut self,
        sysctl_keys: &[String],
    ) -> impl Future<Output = Result<ObservedState, KernelError>>;

    /// Like `observe`, with only the routes carrying `protocol` (routed6d's own). The
    /// real kernel filters them itself (strict dump checking), so foreign routes cost
    /// nothing; this default filters a full `observe`.
    fn observe_owned(
        &mut self,
        sysctl_keys: &[String],
        protocol: u8,
    ) -> impl Future<Output = Result<ObservedState, KernelError>> {
        async move {
            let mut state = self.observe(sysctl_keys).await?;
            state.routes.retain(|r| r.protocol == protocol);
            Ok(state)
        }
    }

    /// Apply one op, stamping owned objects with the kernel's configured protocol.
    /// Idempotent: EEXIST on add and ENOENT/ESRCH/EADDRNOTAVAIL on delete are success,
    /// told apart from a change by `Applied`.
    fn apply_op(&mut self, op: &Op) -> impl Future<Output = Result<Applied, KernelError>>;

    /// Global-scope addresses (IPv4 and IPv6) of interface `name`, primary first:
    /// how a provider that keys VPSes by primary IP finds this one.
    fn interface_addresses(
        &mut self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<IpAddr>, KernelError>>;
}

/// What a successful op found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The kernel changed.
    Changed,
    /// The kernel already was where the op leads: an add found its slot taken
    /// (EEXIST), a delete found nothing to delete.
    AlreadyThere,
}

/// A change the kernel announced (RTNLGRP_LINK, RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV6_ROUTE).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelEvent {
    Link {
        index: u32,
        name: String,
        up: bool,
        removed: bool,
    },
    Address {
        ifindex: u32,
        addr: Ipv6Addr,
        protocol: u8,
        removed: bool,
    },
    Route {
        dst: Ipv6Net,
        table: u32,
        protocol: u8,
        removed: bool,
    },
    /// An IPv6 interface setting the kernel announces changed (RTM_NEWNETCONF:
    /// forwarding, turned on by routed6d or anyone else).
    Netconf,
    /// Events may have been lost (socket receive buffer overrun): dump everything.
    Resync,
}
