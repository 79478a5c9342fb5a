//! Pure: whose the next hop's place on the uplink is, and when routed6d may fill it.
//!
//! The provider routes the prefix to a next hop, usually the VPS's own address, which
//! the OS configures (systemd-networkd, ifupdown, NetworkManager, SLAAC). routed6d uses
//! that address and never takes its place while the OS may put it back: a link flap,
//! a flush, `networkctl reconfigure` or `ifdown` remove it, and an address routed6d
//! re-added meanwhile would win. The kernel keys IPv6 addresses by (interface,
//! address): networkd's re-add then only updates routed6d's address in place (the
//! prefix length stays routed6d's, so the on-link route and with it the default route
//! never come back), and ifupdown's fails with EEXIST. See issue 13.
//!
//! So routed6d adds a next hop only to an uplink that carries traffic, and where the
//! OS held the address, only once `uplink.next_hop_grace` has passed since the address
//! went or the link came back (whichever is later). It then stands in with the OS's
//! own form (prefix length, prefix route), which keeps the on-link route and which the
//! OS takes back in place when it re-adds its address.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::model::{Address, Link, ObservedState};

/// How an address sits on its interface, beyond its identity (interface, address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Form {
    pub prefix_len: u8,
    /// IFA_F_NOPREFIXROUTE: the address brings no on-link route of its own.
    pub no_prefix_route: bool,
}

impl Form {
    /// A next hop the OS never had: the address alone, claiming no on-link prefix.
    pub const HOST: Form = Form {
        prefix_len: 128,
        no_prefix_route: false,
    };

    fn of(address: &Address) -> Form {
        Form {
            prefix_len: address.prefix_len,
            no_prefix_route: address.no_prefix_route,
        }
    }

    /// `hop` on `link` in this form.
    pub fn address(self, hop: Ipv6Addr, link: &Link) -> Address {
        Address {
            ifindex: link.index,
            addr: hop,
            prefix_len: self.prefix_len,
            ifname: link.name.clone(),
            no_prefix_route: self.no_prefix_route,
        }
    }
}

/// What holds a next hop's place on the uplink in one look at the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    Nobody,
    /// An address of any other protocol: the OS's (or an operator's).
    Os(Form),
    Routed6d(Form),
}

/// One next hop as one look at the kernel found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sighting {
    pub hop: Ipv6Addr,
    pub holder: Holder,
    /// The uplink is up with a carrier.
    pub link_ready: bool,
}

/// What to do about a next hop's place in this pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Held already: keep it as it is (the OS's is used, routed6d's stays in its form).
    Keep(Form),
    /// Add it in this form.
    Add(Form),
    /// Leave it empty for now (it would be added in `form`); look again at `until`
    /// (`None`: when the link comes up).
    Wait { form: Form, until: Option<Instant> },
}

/// The next hops named by `hops` as `observed` holds them on `uplink`.
pub fn sight(
    hops: impl IntoIterator<Item = Ipv6Addr>,
    uplink: &Link,
    observed: &ObservedState,
    protocol: u8,
) -> Vec<Sighting> {
    let mut sightings: Vec<Sighting> = Vec::new();
    for hop in hops {
        if sightings.iter().any(|s| s.hop == hop) {
            continue;
        }
        let found = observed
            .addresses
            .iter()
            .find(|a| a.address.ifindex == uplink.index && a.address.addr == hop);
        let holder = match found {
            None => Holder::Nobody,
            Some(a) if a.protocol == protocol => Holder::Routed6d(Form::of(&a.address)),
            Some(a) => Holder::Os(Form::of(&a.address)),
        };
        sightings.push(Sighting {
            hop,
            holder,
            link_ready: uplink.carries_traffic(),
        });
    }
    sightings
}

/// One pass's judgement of every next hop: what the look found, what to do, and
/// when to look again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Judged {
    pub sightings: Vec<Sighting>,
    pub places: BTreeMap<Ipv6Addr, Place>,
    /// The earliest `Place::Wait` deadline: a pass is due then, event or not.
    pub wake_at: Option<Instant>,
}

/// What routed6d remembers of one next hop between passes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Memory {
    /// How the OS last held it, if it ever did.
    os_form: Option<Form>,
    /// Since when the OS's address has been gone from an uplink carrying traffic.
    gone_since: Option<Instant>,
    /// Who held it at the last look.
    last: Option<Holder>,
    /// routed6d stood in for the OS since the OS last held it (logged once).
    stood_in: bool,
}

/// A change in who holds a next hop, for the daemon's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The OS's address went while the uplink carries traffic: the grace starts.
    OsGone { hop: Ipv6Addr },
    /// The grace passed without the OS: routed6d stands in with the OS's form.
    StandIn { hop: Ipv6Addr, form: Form },
    /// The OS holds it again (after it was gone, or took over routed6d's stand-in).
    OsBack { hop: Ipv6Addr, form: Form },
}

/// The next hops routed6d has seen, and whose they were: what makes it wait for the
/// OS instead of racing it. Lives as long as the daemon; what the OS held outlives a
/// restart within one boot through `daemon::memory`.
#[derive(Clone, Debug, Default)]
pub struct NextHopBook {
    hops: BTreeMap<Ipv6Addr, Memory>,
}

impl NextHopBook {
    pub const fn new() -> Self {
        NextHopBook {
            hops: BTreeMap::new(),
        }
    }

    /// A book that knows `forms` as the OS's: what an earlier routed6d of the same
    /// boot saw (`os_forms`), so a restart while the OS's address is away still waits
    /// for the OS instead of racing it.
    pub fn remembering(forms: impl IntoIterator<Item = (Ipv6Addr, Form)>) -> Self {
        let hops = forms
            .into_iter()
            .map(|(hop, form)| {
                let memory = Memory {
                    os_form: Some(form),
                    ..Memory::default()
                };
                (hop, memory)
            })
            .collect();
        NextHopBook { hops }
    }

    /// The next hops the OS has held, in the form it held them.
    pub fn os_forms(&self) -> Vec<(Ipv6Addr, Form)> {
        self.hops
            .iter()
            .filter_map(|(hop, memory)| memory.os_form.map(|form| (*hop, form)))
            .collect()
    }

    /// Judge every sighting at `now`.
    pub fn judge(&self, sightings: Vec<Sighting>, now: Instant, grace: Duration) -> Judged {
        let places: BTreeMap<Ipv6Addr, Place> = sightings
            .iter()
            .map(|seen| (seen.hop, self.place(seen, now, grace)))
            .collect();
        let wake_at = places
            .values()
            .filter_map(|place| match place {
                Place::Wait { until, .. } => *until,
                _ => None,
            })
            .min();
        Judged {
            sightings,
            places,
            wake_at,
        }
    }

    /// What to do about `seen` at `now`.
    pub fn place(&self, seen: &Sighting, now: Instant, grace: Duration) -> Place {
        match seen.holder {
            Holder::Os(form) | Holder::Routed6d(form) => Place::Keep(form),
            Holder::Nobody => {
                let memory = self.hops.get(&seen.hop).copied().unwrap_or_default();
                if !seen.link_ready {
                    let form = memory.os_form.unwrap_or(Form::HOST);
                    return Place::Wait { form, until: None };
                }
                match memory.os_form {
                    None => Place::Add(Form::HOST),
                    Some(form) => {
                        let until = memory.gone_since.unwrap_or(now) + grace;
                        if now >= until {
                            Place::Add(form)
                        } else {
                            Place::Wait {
                                form,
                                until: Some(until),
                            }
                        }
                    }
                }
            }
        }
    }

    /// Learn from the look whose places were judged with `place` at the same `now`;
    /// hops not sighted (no longer named by the provider) are forgotten.
    pub fn note(&mut self, sightings: &[Sighting], now: Instant, grace: Duration) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut hops = BTreeMap::new();
        for seen in sightings {
            let before = self.hops.get(&seen.hop).copied().unwrap_or_default();
            let mut memory = before;
            memory.last = Some(seen.holder);
            match seen.holder {
                Holder::Os(form) => {
                    let os_was_away = before.os_form.is_some()
                        && !matches!(before.last, Some(Holder::Os(_)) | None);
                    if os_was_away {
                        changes.push(Change::OsBack {
                            hop: seen.hop,
                            form,
                        });
                    }
                    memory.os_form = Some(form);
                    memory.gone_since = None;
                    memory.stood_in = false;
                }
                Holder::Routed6d(_) => memory.gone_since = None,
                // Down or without carrier: the grace starts once the link is back.
                Holder::Nobody if !seen.link_ready => memory.gone_since = None,
                Holder::Nobody => {
                    if let Some(form) = memory.os_form {
                        let since = match memory.gone_since {
                            Some(since) => since,
                            None => {
                                changes.push(Change::OsGone { hop: seen.hop });
                                *memory.gone_since.insert(now)
                            }
                        };
                        if now >= since + grace && !memory.stood_in {
                            memory.stood_in = true;
                            changes.push(Change::StandIn {
                                hop: seen.hop,
                                form,
                            });
                        }
                    }
                }
            }
            hops.insert(seen.hop, memory);
        }
        self.hops = hops;
        changes
    }
}

#[cfg(test)]
mod tests;
