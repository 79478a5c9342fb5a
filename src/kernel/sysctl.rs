//! The sysctls routed6d reads and sets (forwarding, accept_ra), as files below
//! /proc/sys of the network namespace the process is in.

use std::io;

use crate::kernel::KernelError;

/// Reject keys that would leave /proc/sys.
fn sysctl_path(key: &str) -> Result<String, KernelError> {
    if key.is_empty() || key.starts_with('/') || key.split('/').any(|part| part == "..") {
        return Err(KernelError::Sysctl {
            key: key.to_string(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a path below /proc/sys"),
        });
    }
    Ok(format!("/proc/sys/{key}"))
}

/// The sysctl's value, trimmed; None when it does not exist (e.g. an interface's key
/// before the interface appears).
pub(crate) fn read(key: &str) -> Result<Option<String>, KernelError> {
    match std::fs::read_to_string(sysctl_path(key)?) {
        Ok(value) => Ok(Some(value.trim().to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(KernelError::Sysctl {
            key: key.to_string(),
            source,
        }),
    }
}

pub(crate) fn write(key: &str, value: &str) -> Result<(), KernelError> {
    std::fs::write(sysctl_path(key)?, value).map_err(|source| KernelError::Sysctl {
        key: key.to_string(),
        source,
    })
}
