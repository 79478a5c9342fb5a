//! What the kernel's errno means for an op: the ones that say it already is where the
//! op leads (idempotency), and a hint for the ones an operator can act on. The errno
//! itself stays in the error (`KernelError::errno`), so callers decide by it, not by
//! its text.

use std::io;

use nix::errno::Errno;

use crate::kernel::{Applied, KernelError};
use crate::model::Op;

/// One request's outcome below the `Kernel` API: the errno is in `raw_os_error()`.
pub(super) type NlResult<T> = Result<T, io::Error>;

/// Idempotency: the listed errnos mean the kernel already is where the op leads.
pub(super) fn ignore_errno(result: NlResult<()>, errnos: &[i32]) -> NlResult<Applied> {
    match result {
        Ok(()) => Ok(Applied::Changed),
        Err(e)
            if e.raw_os_error()
                .is_some_and(|errno| errnos.contains(&errno)) =>
        {
            Ok(Applied::AlreadyThere)
        }
        Err(e) => Err(e),
    }
}

pub(super) fn op_error(op: &Op, error: io::Error) -> KernelError {
    let hint = match error.raw_os_error() {
        // addrconf refuses addresses with EACCES when disable_ipv6 is set.
        Some(libc::EACCES) => match op {
            Op::AddAddress(a) => format!(
                " (is IPv6 disabled on {0}? check net.ipv6.conf.{0}.disable_ipv6)",
                a.ifname
            ),
            _ => " (routed6d needs CAP_NET_ADMIN)".to_string(),
        },
        Some(libc::EPERM) => " (routed6d needs CAP_NET_ADMIN)".to_string(),
        Some(libc::ENODEV) => " (interface gone)".to_string(),
        // fib6_nh_init refuses a route out of an interface that is administratively
        // down.
        Some(libc::ENETDOWN) => " (interface is down)".to_string(),
        Some(libc::ENETUNREACH) => {
            " (network unreachable: is the interface up with IPv6 enabled?)".to_string()
        }
        Some(libc::EEXIST) => match op {
            // REPLACE only fails with EEXIST if the slot is held by a route the kernel
            // will not swap (e.g. a different type in a multipath set).
            Op::ReplaceRoute(_) => " (another route holds this slot)".to_string(),
            _ => String::new(),
        },
        Some(libc::ESRCH) | Some(libc::ENOENT) => match op {
            Op::DelRoute(_) | Op::DelAddress(_) => String::new(),
            _ => " (table or interface missing)".to_string(),
        },
        Some(libc::ENOMEM) | Some(libc::ENOBUFS) => " (kernel out of memory)".to_string(),
        Some(libc::EOPNOTSUPP) => " (not supported by this kernel)".to_string(),
        _ => String::new(),
    };
    KernelError::Op {
        op: op.to_string(),
        errno: error.raw_os_error().map(Errno::from_raw),
        message: error.to_string(),
        hint,
    }
}
