//! On-link providers (`kind = "onlink"`): Vultr, Hetzner Cloud, Linode and most KVM
//! hosts put a /64 on the VPS's link instead of routing one to it. There is no API:
//! the prefix is the written `provider.prefix`, or the uplink's own /64, read from its
//! global address (SLAAC or static) at every poll, so a renumbered uplink is followed.
//! The "assignment" is that one /64 with no next hop; `desired` carves the workloads'
//! sub-prefixes out of it and answers for their addresses on the uplink by proxy NDP.
//! See issue 17, item 4.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::Ipv6Net;

use std::path::PathBuf;

use super::{Provider, ProviderError, Release};
use crate::config::ConfigError;
use crate::model::{Assignment, RoutedPrefix};

/// The on-link /64, written or read off the uplink.
#[derive(Clone, Debug)]
pub struct OnLink {
    /// `provider.prefix`; None: detected.
    written: Option<Ipv6Net>,
    uplink: String,
    /// The config file, named by the error of a /64 that cannot be detected.
    path: PathBuf,
    /// The uplink's global addresses as last read (detection only).
    seen: Vec<IpAddr>,
}

impl OnLink {
    pub fn new(written: Option<Ipv6Net>, uplink: &str, path: &std::path::Path) -> Self {
        OnLink {
            written,
            uplink: uplink.to_string(),
            path: path.to_path_buf(),
            seen: Vec::new(),
        }
    }

    /// The assignment: the written /64, or the one detected from `seen`.
    pub fn assignment(&self) -> Result<Assignment, ProviderError> {
        let (prefix, origin) = match self.written {
            Some(prefix) => (prefix, format!("on-link {prefix} (provider.prefix)")),
            None => {
                // A configuration error to `check-config`'s siblings (`plan`, `once`:
                // exit 78); a failed poll to the daemon, which asks again at the next
                // (SLAAC may simply not be done yet at boot).
                let addr = detect(&self.seen).ok_or_else(|| {
                    ProviderError::Config(ConfigError::Unmet {
                        path: self.path.clone(),
                        message: format!(
                            "kind = \"onlink\": no global IPv6 address on {} to read the on-link /64 from; wait for SLAAC or write provider.prefix",
                            self.uplink
                        ),
                    })
                })?;
                let prefix = Ipv6Net::new(addr, 64).expect("64 ≤ 128").trunc();
                (
                    prefix,
                    format!("on-link {prefix} of {} ({addr})", self.uplink),
                )
            }
        };
        Ok(Assignment {
            prefixes: vec![RoutedPrefix {
                prefix,
                next_hop: None,
                origin,
                workload: None,
            }],
            unavailable: None,
            suggested_next_hop: None,
        })
    }
}

/// The address the on-link /64 is read from: the uplink's first global unicast IPv6
/// address (the kernel lists the primary first; deprecated and temporary ones are left
/// out by `Kernel::interface_addresses`), a unique local one only when there is nothing
/// else.
pub fn detect(addresses: &[IpAddr]) -> Option<Ipv6Addr> {
    let v6 = || {
        addresses.iter().filter_map(|a| match a {
            IpAddr::V6(a)
                if !a.is_loopback()
                    && !a.is_multicast()
                    && !a.is_unspecified()
                    && !a.is_unicast_link_local() =>
            {
                Some(*a)
            }
            _ => None,
        })
    };
    let unique_local = |a: &Ipv6Addr| a.segments()[0] & 0xfe00 == 0xfc00;
    v6().find(|a| !unique_local(a)).or_else(|| v6().next())
}

fn no_api(what: &str) -> ProviderError {
    ProviderError::Unsupported(format!(
        "kind = \"onlink\" has no provider API to {what}: the prefix is the uplink's own /64"
    ))
}

impl Provider for OnLink {
    fn host_id(&self) -> Option<String> {
        Some("onlink".into())
    }
    /// Detection reads the uplink's addresses before every poll.
    fn needs_identity(&self) -> bool {
        self.written.is_none()
    }
    fn wants_allocation(&self, _assignment: &Assignment) -> bool {
        false
    }
    async fn identify(&mut self, uplink_ips: &[IpAddr]) -> Result<(), ProviderError> {
        self.seen = uplink_ips.to_vec();
        Ok(())
    }
    async fn fetch(&mut self) -> Result<Assignment, ProviderError> {
        self.assignment()
    }
    async fn refresh_next_hop(&mut self) -> Result<Assignment, ProviderError> {
        Err(no_api("refresh a next hop with"))
    }
    async fn allocate(&mut self) -> Result<Assignment, ProviderError> {
        Err(no_api("allocate from"))
    }
    /// Nothing to give back (the /64 is the uplink's own): `routed6d release` goes on
    /// to withdraw what routed6d added for the workloads, proxy entries included.
    async fn release(&mut self) -> Result<Release, ProviderError> {
        Ok(Release::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn the_first_global_address_names_the_prefix() {
        let seen = [
            ip("192.0.2.10"),
            ip("fd00::5"),
            ip("2001:db8:1::2"),
            ip("2001:db8:9::2"),
        ];
        assert_eq!(detect(&seen), Some("2001:db8:1::2".parse().unwrap()));
        assert_eq!(
            detect(&[ip("192.0.2.10"), ip("fd00::5")]),
            Some("fd00::5".parse().unwrap()),
            "a unique local address only when there is nothing else"
        );
        assert_eq!(detect(&[ip("192.0.2.10"), ip("fe80::1")]), None);
    }

    #[tokio::test]
    async fn detected_or_written_and_writes_are_refused() {
        let path = std::path::Path::new("/etc/routed6d/routed6d.toml");
        let mut p = OnLink::new(None, "eth0", path);
        assert!(p.needs_identity());
        let e = p.fetch().await.unwrap_err().to_string();
        assert!(
            e.starts_with(
                "/etc/routed6d/routed6d.toml: kind = \"onlink\": no global IPv6 address on eth0"
            ),
            "{e}"
        );
        p.identify(&[ip("2001:db8:1:0:5054:ff:fe12:3456")])
            .await
            .unwrap();
        let a = p.fetch().await.unwrap();
        assert_eq!(a.prefixes.len(), 1);
        assert_eq!(a.prefixes[0].prefix, "2001:db8:1::/64".parse().unwrap());
        assert_eq!(a.prefixes[0].next_hop, None);
        assert!(
            a.prefixes[0].origin.contains("eth0"),
            "{}",
            a.prefixes[0].origin
        );

        let mut p = OnLink::new(Some("2001:db8:5::/64".parse().unwrap()), "eth0", path);
        assert!(!p.needs_identity());
        let a = p.fetch().await.unwrap();
        assert_eq!(a.prefixes[0].prefix, "2001:db8:5::/64".parse().unwrap());
        assert_eq!(p.release().await.unwrap(), Release::default());
        assert!(p.allocate().await.is_err());
    }
}
