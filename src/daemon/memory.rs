//! What the daemon keeps across a restart within one boot: the next hops the OS held
//! on the uplink, and in what form. Without it, a routed6d restarted while the OS's
//! address is away (a flap, a reconfigure) would take the OS for absent and race it
//! (issue 13). Addresses do not outlive a boot, and a file of another network
//! namespace speaks of other interfaces: such a file is read as empty.

use std::io::{self, Write};
use std::net::Ipv6Addr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::next_hop::Form;

const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

#[derive(Debug, Serialize, Deserialize)]
struct File {
    boot_id: String,
    /// The inode of the network namespace the forms were seen in.
    netns: u64,
    next_hops: Vec<Held>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Held {
    hop: Ipv6Addr,
    form: Form,
}

/// Where this process is: its boot and its network namespace.
fn here() -> io::Result<(String, u64)> {
    let boot_id = std::fs::read_to_string(BOOT_ID_PATH)?.trim().to_string();
    let netns = std::fs::metadata("/proc/self/ns/net")?.ino();
    Ok((boot_id, netns))
}

/// The forms an earlier routed6d of this boot and namespace saw; none when there is
/// no such file, or it is of another boot or namespace, or unreadable.
pub fn load(path: &Path) -> Vec<(Ipv6Addr, Form)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let (Ok(file), Ok((boot_id, netns))) = (serde_json::from_str::<File>(&text), here()) else {
        return Vec::new();
    };
    if file.boot_id != boot_id || file.netns != netns {
        return Vec::new();
    }
    file.next_hops
        .into_iter()
        .map(|h| (h.hop, h.form))
        .collect()
}

/// Keep `forms` for a later routed6d of this boot: written whole and renamed into
/// place, so a crash leaves the old file or the new one.
pub fn save(path: &Path, forms: &[(Ipv6Addr, Form)]) -> io::Result<()> {
    let (boot_id, netns) = here()?;
    let file = File {
        boot_id,
        netns,
        next_hops: forms
            .iter()
            .map(|(hop, form)| Held {
                hop: *hop,
                form: *form,
            })
            .collect(),
    };
    let text = serde_json::to_vec_pretty(&file).map_err(io::Error::other)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut out = std::fs::File::create(&tmp)?;
    out.write_all(&text)?;
    out.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests;
