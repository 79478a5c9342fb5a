//! Which IPv6 addresses routed6d added, kept in a file, for kernels that do not keep an
//! address's protocol (IFA_PROTO, Linux 5.18+): there a dump cannot tell routed6d's
//! addresses from anyone else's, and routed6d must remove its own (a stale next hop, a
//! prefix that moved away) without ever removing one it did not add. See issue 13.
//!
//! An entry names one address as the kernel knows it: network namespace, interface
//! index, address, prefix length, flags routed6d set, and the kernel's creation stamp
//! (IFA_CACHEINFO cstamp), all under the boot id. So an address deleted and added
//! again by someone else (a new stamp), an interface recreated (a new index) or a
//! reboot (a new boot id) leaves a stale entry that claims nothing, and routed6d
//! processes in other network namespaces sharing the directory (the demo, containers)
//! neither claim nor drop each other's entries. The file is changed under an exclusive
//! lock by re-reading it and applying one change, so a command run beside the daemon
//! (`routed6d release`, `once`) loses none of the daemon's entries, and written
//! atomically (temporary file, fsync, rename) before the next kernel op.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Write as _};
use std::net::Ipv6Addr;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

/// The record's file name inside `daemon.state_dir`.
pub const RECORD_FILE: &str = "addresses.json";
/// Changes every boot; addresses do not survive one.
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";
/// The calling thread's network namespace (netlink sockets live in the one of the
/// thread that opened them).
const NETNS_PATH: &str = "/proc/thread-self/ns/net";

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot read the boot id from {BOOT_ID_PATH}: {0}")]
    BootId(io::Error),
    #[error("cannot identify the network namespace ({NETNS_PATH}): {0}")]
    Netns(io::Error),
    #[error("cannot read the address record {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write the address record {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// One address routed6d added, as the kernel identifies it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// The inode of the network namespace the address lives in.
    pub netns: u64,
    pub ifindex: u32,
    pub address: Ipv6Addr,
    pub prefix_len: u8,
    /// IFA_F_NOPREFIXROUTE as routed6d set it. A manager that takes the address over
    /// with NLM_F_REPLACE rewrites the flags but keeps the address and its stamp.
    pub no_prefix_route: bool,
    /// IFA_CACHEINFO cstamp: when the kernel created the address, in hundredths of a
    /// second since boot.
    pub created: u32,
}

/// A dumped address as the record judges it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub entry: Entry,
    /// IFA_F_NODAD: routed6d sets it on every address it adds; a takeover by a
    /// manager that does duplicate address detection clears it.
    pub nodad: bool,
}

/// What the file held when it was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contents {
    /// No file yet.
    Missing,
    /// Entries of this boot.
    Current(BTreeSet<Entry>),
    /// Written in an earlier boot: its addresses are gone, it claims nothing.
    OtherBoot(String),
    /// Not a record (hand-edited, truncated by a full disk): claims nothing.
    Unreadable(String),
}

impl Contents {
    /// The entries this boot may trust.
    pub fn entries(self) -> BTreeSet<Entry> {
        match self {
            Contents::Current(entries) => entries,
            _ => BTreeSet::new(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct RecordFile {
    boot_id: String,
    addresses: Vec<Entry>,
}

/// The file's text as entries of `boot_id`.
pub fn parse(text: &str, boot_id: &str) -> Contents {
    match serde_json::from_str::<RecordFile>(text) {
        Ok(file) if file.boot_id == boot_id => {
            Contents::Current(file.addresses.into_iter().collect())
        }
        Ok(file) => Contents::OtherBoot(file.boot_id),
        Err(e) => Contents::Unreadable(e.to_string()),
    }
}

/// The file's text for `entries` of `boot_id`.
pub fn render(boot_id: &str, entries: &BTreeSet<Entry>) -> String {
    let file = RecordFile {
        boot_id: boot_id.to_string(),
        addresses: entries.iter().cloned().collect(),
    };
    let mut text = serde_json::to_string_pretty(&file).expect("a record always serialises");
    text.push('\n');
    text
}

/// Does `seen` carry an entry of `entries`, with the flags routed6d set?
pub fn claims(entries: &BTreeSet<Entry>, seen: &Seen) -> bool {
    seen.nodad && entries.contains(&seen.entry)
}

/// The kernel holds one address per slot: (namespace, ifindex, address).
fn slot(e: &Entry) -> (u64, u32, Ipv6Addr) {
    (e.netns, e.ifindex, e.address)
}

/// Record `entry` as added, replacing any older entry of its slot.
pub fn insert(entries: &mut BTreeSet<Entry>, entry: Entry) {
    entries.retain(|e| slot(e) != slot(&entry));
    entries.insert(entry);
}

/// Forget the slot (netns, ifindex, address): routed6d deleted what was there.
pub fn remove_slot(entries: &mut BTreeSet<Entry>, netns: u64, ifindex: u32, address: Ipv6Addr) {
    entries.retain(|e| slot(e) != (netns, ifindex, address));
}

/// The entries of namespace `netns` in `before` (the record as read before a dump of
/// that namespace) that no address of the dump matched: gone from the kernel. Entries
/// recorded after `before` was read are not in it, so a dump that started earlier
/// cannot drop them.
pub fn missing(before: &BTreeSet<Entry>, matched: &BTreeSet<Entry>, netns: u64) -> Vec<Entry> {
    before
        .difference(matched)
        .filter(|e| e.netns == netns)
        .cloned()
        .collect()
}

/// The record file of one state directory and the entries last read from it.
#[derive(Debug)]
pub struct AddressRecord {
    dir: PathBuf,
    path: PathBuf,
    boot_id: String,
    netns: u64,
    entries: BTreeSet<Entry>,
    /// The file version `entries` came from: `refresh` reads only a new one.
    version: Option<Version>,
}

/// What changes whenever the file does: every write is a rename, so a new inode. (A
/// change missed through inode reuse within one timestamp tick would leave only this
/// process's view stale: entries it lacks claim less, entries removed elsewhere name
/// addresses that are gone.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Version {
    dev: u64,
    ino: u64,
    mtime_nsec: i64,
    len: u64,
}

impl Version {
    fn of(meta: &std::fs::Metadata) -> Version {
        Version {
            dev: meta.dev(),
            ino: meta.ino(),
            mtime_nsec: meta.mtime().saturating_mul(1_000_000_000) + meta.mtime_nsec(),
            len: meta.len(),
        }
    }
}

impl AddressRecord {
    /// Read the record in `dir` (a missing file or directory is an empty record), for
    /// the calling thread's network namespace.
    pub fn open(dir: &Path) -> Result<(AddressRecord, Contents), RecordError> {
        let boot_id = std::fs::read_to_string(BOOT_ID_PATH)
            .map_err(RecordError::BootId)?
            .trim()
            .to_string();
        let netns = std::fs::metadata(NETNS_PATH)
            .map_err(RecordError::Netns)?
            .ino();
        Self::open_for(dir, boot_id, netns)
    }

    /// `open` with the boot id and the namespace given.
    pub fn open_for(
        dir: &Path,
        boot_id: String,
        netns: u64,
    ) -> Result<(AddressRecord, Contents), RecordError> {
        let mut record = AddressRecord {
            dir: dir.to_path_buf(),
            path: dir.join(RECORD_FILE),
            boot_id,
            netns,
            entries: BTreeSet::new(),
            version: None,
        };
        let contents = record.read()?;
        record.entries = contents.clone().entries();
        Ok((record, contents))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The network namespace this record's process observes.
    pub fn netns(&self) -> u64 {
        self.netns
    }

    pub fn entries(&self) -> &BTreeSet<Entry> {
        &self.entries
    }

    /// Catch up with the file: another routed6d process (a command beside the daemon)
    /// may have changed it. Costs a stat when it did not change. A rename replaces it
    /// whole, so no lock is needed to read a complete version.
    pub fn refresh(&mut self) -> Result<(), RecordError> {
        let current = match std::fs::metadata(&self.path) {
            Ok(meta) => Some(Version::of(&meta)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(self.read_error(source)),
        };
        if current.is_none() || current != self.version {
            self.entries = self.read()?.entries();
        }
        Ok(())
    }

    fn read_error(&self, source: io::Error) -> RecordError {
        RecordError::Read {
            path: self.path.clone(),
            source,
        }
    }

    /// The file's contents, remembering which version they are.
    fn read(&mut self) -> Result<Contents, RecordError> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.version = None;
                return Ok(Contents::Missing);
            }
            Err(source) => return Err(self.read_error(source)),
        };
        let mut text = String::new();
        let read = file
            .metadata()
            .and_then(|meta| io::Read::read_to_string(&mut file, &mut text).map(|_| meta));
        match read {
            Ok(meta) => {
                self.version = Some(Version::of(&meta));
                Ok(parse(&text, &self.boot_id))
            }
            // Not UTF-8 is as damaged as bad JSON.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                Ok(Contents::Unreadable(e.to_string()))
            }
            Err(source) => Err(self.read_error(source)),
        }
    }

    /// routed6d added `entry` (the kernel created it).
    pub fn add(&mut self, entry: Entry) -> Result<(), RecordError> {
        self.update(|entries| insert(entries, entry))
    }

    /// routed6d deleted the address in slot (ifindex, address), or found it gone.
    pub fn remove(&mut self, ifindex: u32, address: Ipv6Addr) -> Result<(), RecordError> {
        let netns = self.netns;
        let held = |record: &Self| {
            record
                .entries
                .iter()
                .any(|e| slot(e) == (netns, ifindex, address))
        };
        if !held(self) {
            // Another process may have recorded the slot since the last read.
            self.refresh()?;
            if !held(self) {
                return Ok(());
            }
        }
        self.update(|entries| remove_slot(entries, netns, ifindex, address))
    }

    /// Drop `gone` (entries a dump no longer showed).
    pub fn forget(&mut self, gone: &[Entry]) -> Result<(), RecordError> {
        if gone.is_empty() {
            return Ok(());
        }
        self.update(|entries| entries.retain(|e| !gone.contains(e)))
    }

    /// Under the directory's lock: read the file, apply `change`, write it back when
    /// it changed.
    fn update(&mut self, change: impl FnOnce(&mut BTreeSet<Entry>)) -> Result<(), RecordError> {
        let path = self.path.clone();
        let write_error = |source| RecordError::Write {
            path: path.clone(),
            source,
        };
        let lock = self.lock().map_err(write_error)?;
        let mut entries = self.read()?.entries();
        let before = entries.clone();
        change(&mut entries);
        if entries != before {
            let written = self.write(&lock, &entries).map_err(write_error)?;
            self.version = Some(written);
        }
        self.entries = entries;
        Ok(())
    }

    /// An exclusive flock on the directory (the file itself is replaced by rename, so
    /// a lock on it would not hold), released when the handle is dropped.
    fn lock(&self) -> io::Result<Flock<File>> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&self.dir)?;
        let dir = File::open(&self.dir)?;
        Flock::lock(dir, FlockArg::LockExclusive).map_err(|(_, errno)| errno.into())
    }

    /// Replace the file atomically: the next op starts only once it is on disk.
    /// Returns the version written.
    fn write(&self, dir: &File, entries: &BTreeSet<Entry>) -> io::Result<Version> {
        let tmp = self.path.with_extension("json.tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // Run by root beside a daemon under DynamicUser=: the file stays the state
        // directory owner's, or the daemon could no longer read it.
        let owner = dir.metadata()?;
        if nix::unistd::geteuid().is_root() && file.metadata()?.uid() != owner.uid() {
            std::os::unix::fs::fchown(&file, Some(owner.uid()), Some(owner.gid()))?;
        }
        file.write_all(render(&self.boot_id, entries).as_bytes())?;
        file.sync_all()?;
        let version = Version::of(&file.metadata()?);
        std::fs::rename(&tmp, &self.path)?;
        dir.sync_all()?;
        Ok(version)
    }
}

#[cfg(test)]
mod tests;
