//! One writer per protocol number per network namespace. routed6d owns what carries its
//! protocol and removes such objects that its configuration does not want, so two
//! routed6d processes with one protocol in one network namespace (two units, two
//! configurations, or root's `routed6d once` beside the daemon) would each delete the
//! other's addresses and routes, and each deletion would trigger the other's repair.
//! Every command that writes to the kernel (`run`, `once`, `refresh-next-hop`,
//! `release`) first takes this lock; the ones that only look (`plan`, `status`) do not.
//! See issue 15.
//!
//! The lock is an exclusive `flock` on `/run/routed6d/protocol-<N>.net-<inode>.lock`,
//! where `<inode>` names the network namespace (the inode of `/proc/thread-self/ns/net`,
//! unique among live namespaces): routed6d in another namespace, such as a container
//! with its own network, has its own kernel objects and takes its own lock. `/run` is
//! the host's in every unit and for root's commands alike, and `/run/routed6d` is the
//! unit's `RuntimeDirectory=`, writable under `ProtectSystem=strict` and by nobody but
//! root and the service user (an abstract socket, which is per namespace by itself,
//! could be bound first by any local user, who could then keep routed6d from ever
//! starting). The kernel drops a flock with its holder, so a crash leaves no stale lock;
//! the file says which process holds it, for the refusal's message.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Where the locks live: the unit's RuntimeDirectory.
pub const LOCK_DIR: &str = "/run/routed6d";
/// The most of a lock file read for the holder's description (it is one short line).
const HOLDER_MAX: u64 = 256;

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "protocol {protocol} is already routed6d's in this network namespace: {holder} holds {}; two writers with one protocol delete each other's addresses and routes, so this one stops here (stop the other, or give this configuration another daemon.protocol)",
        path.display()
    )]
    Held {
        protocol: u8,
        holder: Holder,
        path: PathBuf,
    },
    #[error("cannot take the lock {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// Who holds a lock, as its file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: Option<u32>,
    /// The routed6d command (`run`, `once`, …), empty if the file did not say.
    pub command: String,
}

impl Holder {
    /// A command that ends by itself within a request timeout and one pass.
    pub fn is_one_shot(&self) -> bool {
        matches!(
            self.command.as_str(),
            "once" | "refresh-next-hop" | "release"
        )
    }

    fn parse(text: &str) -> Holder {
        let mut words = text.split_whitespace();
        let pid = words.next().and_then(|w| w.parse().ok());
        let command = words
            .next()
            .filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
            .unwrap_or_default()
            .to_string();
        Holder { pid, command }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.command.as_str(), self.pid) {
            ("", Some(pid)) => write!(f, "process {pid}"),
            ("", None) => f.write_str("another process"),
            (command, Some(pid)) => write!(f, "routed6d {command} (pid {pid})"),
            (command, None) => write!(f, "routed6d {command}"),
        }
    }
}

/// A held lock; dropping it removes the file and releases the lock.
#[derive(Debug)]
pub struct Lock {
    /// Unlocked when dropped (after `drop` has removed the file).
    file: Flock<File>,
    path: PathBuf,
}

impl Lock {
    /// Take the lock of `protocol` in this thread's network namespace for `command`,
    /// without waiting.
    pub fn take(protocol: u8, command: &str) -> Result<Lock, LockError> {
        Self::take_in(Path::new(LOCK_DIR), protocol, command)
    }

    /// Like `take`, in `dir`.
    pub fn take_in(dir: &Path, protocol: u8, command: &str) -> Result<Lock, LockError> {
        let path = dir.join(format!(
            "protocol-{protocol}.net-{}.lock",
            network_namespace().map_err(|source| LockError::Io {
                path: "/proc/thread-self/ns/net".into(),
                source,
            })?
        ));
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(io)?;
        // A holder may remove the file between our open and our flock: then we hold a
        // lock on a file nobody else will find, and must start again. Twice in a row
        // would take two other processes racing us; the third try settles it.
        for _ in 0..3 {
            let (file, writable) = open(&path).map_err(io)?;
            let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(locked) => locked,
                Err((mut file, Errno::EWOULDBLOCK)) => {
                    return Err(LockError::Held {
                        protocol,
                        holder: read_holder(&mut file),
                        path,
                    });
                }
                Err((_, errno)) => return Err(io(errno.into())),
            };
            if !same_file(&file, &path).map_err(io)? {
                continue;
            }
            if !writable {
                // Left by a process of another user (root's `once`, killed): ours is
                // the lock now, so the file can go and a fresh one be made.
                std::fs::remove_file(&path).map_err(io)?;
                continue;
            }
            write_holder(&mut file, command).map_err(io)?;
            return Ok(Lock { file, path });
        }
        Err(io(io::Error::new(
            io::ErrorKind::WouldBlock,
            "the lock file kept being replaced",
        )))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Removed while still held: a process that opened it meanwhile finds it gone
        // once it has the flock, and starts again with a new file.
        if same_file(&self.file, &self.path).unwrap_or(false) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The inode of this thread's network namespace.
fn network_namespace() -> io::Result<u64> {
    Ok(std::fs::metadata("/proc/thread-self/ns/net")?.ino())
}

/// Open (or create) the lock file, never through a symlink; read-only when it belongs
/// to another user (a flock needs no write access). Returns whether it is writable.
fn open(path: &Path) -> io::Result<(File, bool)> {
    let mut options = std::fs::OpenOptions::new();
    options
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    match options.open(path) {
        Ok(file) => Ok((file, true)),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(path)?;
            Ok((file, false))
        }
        Err(e) => Err(e),
    }
}

/// Does `path` still name the file `file` has open?
fn same_file(file: &File, path: &Path) -> io::Result<bool> {
    let open = file.metadata()?;
    match std::fs::symlink_metadata(path) {
        Ok(named) => Ok(named.dev() == open.dev() && named.ino() == open.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn write_holder(file: &mut File, command: &str) -> io::Result<()> {
    // Readable by all, whatever the umask (the unit's is 077): the process refused
    // may run as another user, and the line names nothing secret.
    file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{} {command}", std::process::id())
}

fn read_holder(file: &mut File) -> Holder {
    let mut text = String::new();
    let _ = file.take(HOLDER_MAX).read_to_string(&mut text);
    Holder::parse(&text)
}

#[cfg(test)]
mod tests;
