//! The provider's API key on disk and in memory: read through one open file whose
//! checks are made on that same open file (no symlink, a regular file, private, owned
//! by root or the service user, small), held in a `Secret` that is zeroed when
//! dropped, by a process that cannot be dumped. See issue 15.

use std::fmt;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use zeroize::Zeroizing;

/// The user the shipped unit runs the daemon as. A token file it owns is its own
/// (a custom `token_file` read by the daemon itself), so root may read it too.
pub const SERVICE_USER: &str = "routed6d";

/// An API key is one short word; anything larger is not a key file.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// A secret read from disk. Its Debug and Display never show it, and its memory is
/// zeroed when it is dropped (each clone's own copy too).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(Zeroizing::new(value))
    }
    /// The only way to read the value: at the one place it is put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

// Zeroizing<String> zeroes the whole buffer when dropped; a Secret is nothing else.
impl zeroize::ZeroizeOnDrop for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a token file was refused. Each message completes "provider.token_file PATH: ".
/// None of them carries any of the file's content.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("does not exist; write the API key there (chmod 600)")]
    Missing,
    #[error("is empty; write the API key there")]
    Empty,
    #[error(
        "is a symbolic link; routed6d reads the key only from a regular file (point token_file at the file itself)"
    )]
    Symlink,
    #[error("is not a regular file")]
    NotAFile,
    #[error("is readable by group or others (mode {mode:04o}); run: chmod 600 {path}")]
    Exposed { mode: u32, path: String },
    #[error(
        "is owned by uid {owner}, not by root or {SERVICE_USER}: another user could change the key; run: chown root {path}"
    )]
    Owner { owner: u32, path: String },
    #[error("is larger than {MAX_TOKEN_BYTES} bytes: an API key is one short word")]
    TooLarge,
    #[error("holds more than one token (whitespace or control characters inside)")]
    NotOneWord,
    #[error("is not UTF-8 text")]
    NotText,
    #[error(
        "cannot be read by uid {uid} (permission denied); for the service (user {SERVICE_USER}): chown {SERVICE_USER} {path}, or leave token_file unset and systemd hands /etc/routed6d/token over"
    )]
    Denied { uid: u32, path: String },
    #[error("cannot be read: {0}")]
    Io(#[source] std::io::Error),
}

impl TokenError {
    /// The key has not been written yet: the host is not configured, rather than
    /// misconfigured (the unit is then skipped quietly, not failed).
    pub fn is_unwritten(&self) -> bool {
        matches!(self, TokenError::Missing | TokenError::Empty)
    }
}

/// Read the key at `path`. The file is opened once, without following a symlink, and
/// every check is made on the open file (fstat), so swapping the path between the
/// check and the read changes nothing. Marks the process non-dumpable first: from here
/// on it holds the key.
pub fn read(path: &Path) -> Result<Secret, TokenError> {
    forbid_core_dumps();
    let mut file = open(path)?;
    let meta = file.metadata().map_err(TokenError::Io)?;
    check(&meta, path, effective_uid(), || uid_of(SERVICE_USER))?;
    // One byte more than allowed tells a file that grew since fstat from one that fits.
    // Read by hand into a buffer zeroed on drop: no copy is left behind by a growing
    // buffer or a probe read.
    let mut buffer = Zeroizing::new(vec![0u8; MAX_TOKEN_BYTES + 1]);
    let mut len = 0;
    while len < buffer.len() {
        match file.read(&mut buffer[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(TokenError::Io(e)),
        }
    }
    parse(&buffer[..len])
}

fn open(path: &Path) -> Result<File, TokenError> {
    // O_NOFOLLOW: a symlink as the last component fails with ELOOP instead of leading
    // elsewhere. O_NONBLOCK: a FIFO planted there does not hang the open (fstat then
    // refuses it); it changes nothing for a regular file.
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path);
    opened.map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) => TokenError::Missing,
        Some(libc::ELOOP) => TokenError::Symlink,
        Some(libc::EACCES) => TokenError::Denied {
            uid: effective_uid(),
            path: path.display().to_string(),
        },
        _ => TokenError::Io(e),
    })
}

/// The checks on the open file: a regular file, no bits for group or others, owned by
/// root, by this process's user or by the service user (looked up only when needed),
/// and small. Pure but for `service_uid`.
fn check(
    meta: &Metadata,
    path: &Path,
    euid: u32,
    service_uid: impl FnOnce() -> Option<u32>,
) -> Result<(), TokenError> {
    if !meta.file_type().is_file() {
        return Err(TokenError::NotAFile);
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TokenError::Exposed {
            mode,
            path: path.display().to_string(),
        });
    }
    let owner = meta.uid();
    if owner != 0 && owner != euid && service_uid() != Some(owner) {
        return Err(TokenError::Owner {
            owner,
            path: path.display().to_string(),
        });
    }
    if meta.len() > MAX_TOKEN_BYTES as u64 {
        return Err(TokenError::TooLarge);
    }
    Ok(())
}

/// The file's bytes → the key: one word of text, surrounding whitespace (a trailing
/// newline from an editor or `echo`) ignored.
fn parse(bytes: &[u8]) -> Result<Secret, TokenError> {
    if bytes.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| TokenError::NotText)?;
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenError::Empty);
    }
    if token.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(TokenError::NotOneWord);
    }
    Ok(Secret::new(token.to_owned()))
}

/// Keep the key out of core dumps, and out of reach of ptrace and /proc/<pid>/mem
/// for other processes of the same user. Every command that reads the key passes here
/// first. Best effort: prctl cannot fail for these arguments, and a failure would only
/// lose that protection, so it is logged, not fatal.
fn forbid_core_dumps() {
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(
            "cannot mark the process non-dumpable (the token could end up in a core dump): {e}"
        );
    }
}

fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// The uid of user `name` (NSS), or None when there is no such user.
fn uid_of(name: &str) -> Option<u32> {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|user| user.uid.as_raw())
}

#[cfg(test)]
mod tests;
