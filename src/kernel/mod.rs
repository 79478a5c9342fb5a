//! The kernel behind a narrow trait: one dump to observe, one idempotent call per op,
//! and a stream of change events. `netlink` is the real one, `fake` the one the
//! reconcile loop is tested against without root. `record` keeps which addresses
//! routed6d added on kernels that do not keep an address's protocol.

#[cfg(test)]
pub mod fake;
pub mod netlink;
pub mod record;
pub mod reflex;
pub mod socket;
mod sysctl;
pub mod watch;

use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::Ipv6Net;
use nix::errno::Errno;

use crate::model::{ObservedProxy, ObservedState, Op};

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("cannot open a netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("netlink dump of {what} failed: {message}")]
    Dump {
        what: &'static str,
        /// The kernel's errno, when it answered one.
        errno: Option<Errno>,
        message: String,
    },
    /// One op failed; `hint` explains well-known errnos (EACCES adding an IPv6 address:
    /// IPv6 disabled on the interface).
    #[error("{op}: {message}{hint}")]
    Op {
        op: String,
        /// The kernel's errno, when it answered one.
        errno: Option<Errno>,
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

impl KernelError {
    /// The errno behind the failure, where there is one.
    pub fn errno(&self) -> Option<Errno> {
        let of = |e: &std::io::Error| e.raw_os_error().map(Errno::from_raw);
        match self {
            KernelError::Socket(e) | KernelError::Sysctl { source: e, .. } => of(e),
            KernelError::Dump { errno, .. } | KernelError::Op { errno, .. } => *errno,
            KernelError::Record { source, .. } => match source {
                record::RecordError::BootId(e)
                | record::RecordError::Netns(e)
                | record::RecordError::Read { source: e, .. }
                | record::RecordError::Write { source: e, .. } => of(e),
            },
        }
    }

    /// Refused for want of privilege: without CAP_NET_ADMIN netlink answers EPERM, and a
    /// file routed6d may not use answers EPERM or EACCES. A netlink EACCES is not one:
    /// addrconf answers it for an address on an interface with IPv6 disabled.
    pub fn is_permission_denied(&self) -> bool {
        match (self, self.errno()) {
            (_, Some(Errno::EPERM)) => true,
            (KernelError::Dump { .. } | KernelError::Op { .. }, _) => false,
            (_, errno) => errno == Some(Errno::EACCES),
        }
    }
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

    /// The IPv6 proxy entries alone (any protocol): the daemon's look between passes on
    /// kernels that announce no change of one (`daemon::proxy_look`). This default
    /// takes them from a full `observe`; the real kernel dumps that one small table.
    fn observe_proxies(&mut self) -> impl Future<Output = Result<Vec<ObservedProxy>, KernelError>> {
        async move { Ok(self.observe(&[]).await?.proxies) }
    }

    /// Whether `observe` also reads the IPv6 neighbour caches (`ObservedState::
    /// neighbours`): only an on-link prefix's workloads need them. Proxy entries are
    /// always read, so that a withdrawal finds routed6d's whatever the configuration.
    fn observe_neighbours(&mut self, _on: bool) {}

    /// Apply one op, stamping owned objects with the kernel's configured protocol.
    /// Idempotent: EEXIST on add and ENOENT/ESRCH/EADDRNOTAVAIL on delete are success,
    /// told apart from a change by `Applied`.
    fn apply_op(&mut self, op: &Op) -> impl Future<Output = Result<Applied, KernelError>>;

    /// The reflexes the event watcher fires (`reflex`); None: this kernel has none,
    /// and removals are put back by the daemon's loop.
    fn reflexes(&self) -> Option<reflex::SharedReflexes> {
        None
    }

    /// `op` (an add) as a whole request the event watcher can send on its own socket,
    /// acknowledged; None when it cannot be a reflex.
    fn reflex_request(&self, _op: &Op) -> Option<Vec<u8>> {
        None
    }

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
    /// An IPv6 neighbour (RTNLGRP_NEIGH): a cache entry on `ifindex` changed state
    /// (`state`, NUD bits) or went (`removed`), or, with `proxy`, a proxy entry was
    /// added or deleted, should the kernel announce those (no Linux release does, up
    /// to 6.19 at least: `daemon::proxy_look` looks at the table instead).
    Neighbour {
        ifindex: u32,
        addr: Ipv6Addr,
        state: u16,
        proxy: bool,
        removed: bool,
    },
    /// An IPv6 interface setting the kernel announces changed (RTM_NEWNETCONF:
    /// forwarding, turned on by routed6d or anyone else).
    Netconf,
    /// The kernel answered a reflex (`reflex`): `object` was put back by the watcher
    /// (errno None), or refused with `errno`.
    Reflex {
        object: crate::damping::Object,
        errno: Option<i32>,
    },
    /// Events may have been lost (socket receive buffer overrun): dump everything.
    Resync,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op_failing(errno: Errno) -> KernelError {
        KernelError::Op {
            op: "ip -6 addr add 2001:db8::1/128 dev lo nodad".into(),
            errno: Some(errno),
            // Whatever the text says: the errno decides.
            message: "refused".into(),
            hint: String::new(),
        }
    }

    #[test]
    fn permission_is_told_by_the_errno_not_the_text() {
        assert!(op_failing(Errno::EPERM).is_permission_denied());
        let dump = KernelError::Dump {
            what: "links",
            errno: Some(Errno::EPERM),
            message: "no".into(),
        };
        assert!(dump.is_permission_denied());
        let text_only = KernelError::Op {
            op: "ip -6 route add 2001:db8::/64 dev lo".into(),
            errno: None,
            message: "Operation not permitted".into(),
            hint: String::new(),
        };
        assert!(!text_only.is_permission_denied());
    }

    #[test]
    fn a_netlink_eacces_is_disabled_ipv6_but_a_file_eacces_is_permission() {
        assert!(!op_failing(Errno::EACCES).is_permission_denied());
        let sysctl = KernelError::Sysctl {
            key: "net/ipv6/conf/all/forwarding".into(),
            source: std::io::Error::from_raw_os_error(libc::EACCES),
        };
        assert!(sysctl.is_permission_denied());
        assert_eq!(sysctl.errno(), Some(Errno::EACCES));
        let record = KernelError::Record {
            op: "address ownership".into(),
            consequence: "",
            source: record::RecordError::Write {
                path: "/var/lib/routed6d/addresses.json".into(),
                source: std::io::Error::from_raw_os_error(libc::EACCES),
            },
        };
        assert!(record.is_permission_denied());
        assert!(!op_failing(Errno::ENODEV).is_permission_denied());
    }
}
