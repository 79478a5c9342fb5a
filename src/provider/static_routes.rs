//! Static routes (`kind = "static"`): for a provider with no API, the routed prefixes
//! and next hops written in the config (e.g. from a welcome e-mail). The "poll" returns
//! them as they are and makes no network call at all — this provider holds no HTTP
//! client. A change is a config edit plus SIGHUP; drift repair works as for every kind.

use std::net::IpAddr;

use super::hostup::{check_routable, parse_net, parse_next_hop};
use super::{Provider, ProviderError, Release};
use crate::config::{ProviderConfig, StaticRoute};
use crate::model::{Assignment, RoutedPrefix};

/// The routes from the config.
#[derive(Clone, Debug)]
pub struct StaticRoutes {
    routes: Vec<StaticRoute>,
}

impl StaticRoutes {
    pub fn new(config: &ProviderConfig) -> Self {
        StaticRoutes {
            routes: config.static_routes.clone(),
        }
    }

    /// The routes as an `Assignment`; origin `static routes[i]` names the config entry.
    pub fn assignment(&self) -> Assignment {
        Assignment {
            prefixes: self
                .routes
                .iter()
                .enumerate()
                .map(|(index, route)| RoutedPrefix {
                    prefix: route.prefix,
                    next_hop: Some(route.next_hop),
                    origin: format!("static routes[{index}]"),
                })
                .collect(),
            unavailable: None,
            suggested_next_hop: None,
        }
    }
}

/// One config entry checked by the same rules as a provider's answer: a network (no
/// host bits), at least a /32, routable, and a next hop outside it. `field` names the
/// entry in messages (`provider.routes[0]`).
pub fn parse_route(field: &str, prefix: &str, next_hop: &str) -> Result<StaticRoute, String> {
    let net = parse_net(&format!("{field}.prefix"), prefix)?;
    if net.trunc() != net {
        return Err(format!(
            "{field}.prefix {net} has host bits set; write the network, {}",
            net.trunc()
        ));
    }
    check_routable(&format!("{field}.prefix"), net)?;
    let hop = parse_next_hop(&format!("{field}.next_hop"), next_hop)?;
    if net.contains(&hop) {
        return Err(format!(
            "{field}.next_hop {hop} lies inside {field}.prefix {net}: the provider's router cannot reach the prefix through it"
        ));
    }
    Ok(StaticRoute {
        prefix: net,
        next_hop: hop,
    })
}

fn no_api(what: &str) -> ProviderError {
    ProviderError::Unsupported(format!(
        "kind = \"static\" has no provider API to {what}; edit provider.routes and reload (SIGHUP)"
    ))
}

impl Provider for StaticRoutes {
    fn host_id(&self) -> Option<String> {
        Some("static".into())
    }
    fn wants_allocation(&self, _assignment: &crate::model::Assignment) -> bool {
        false
    }
    async fn identify(&mut self, _uplink_ips: &[IpAddr]) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn fetch(&mut self) -> Result<Assignment, ProviderError> {
        Ok(self.assignment())
    }
    async fn refresh_next_hop(&mut self) -> Result<Assignment, ProviderError> {
        Err(no_api("refresh a next hop with"))
    }
    async fn allocate(&mut self) -> Result<Assignment, ProviderError> {
        Err(no_api("allocate from"))
    }
    async fn release(&mut self) -> Result<Release, ProviderError> {
        Err(no_api("release to"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_checked_like_provider_answers() {
        let ok = parse_route("provider.routes[0]", "2001:db8:42:100::/64", "2001:db8::10")
            .expect("valid");
        assert_eq!(ok.prefix.to_string(), "2001:db8:42:100::/64");
        for (prefix, hop, expect) in [
            ("2001:db8:42:100::1/64", "2001:db8::10", "host bits set"),
            ("2001::/16", "2001:db8::10", "shorter than /32"),
            ("fe80::/64", "2001:db8::10", "link-local"),
            ("banana", "2001:db8::10", "is not an IPv6 prefix"),
            ("2001:db8:42:100::/64", "fe80::1", "link-local"),
            ("2001:db8:42:100::/64", "2001:db8:42:100::1", "lies inside"),
            (
                "2001:db8:42:100::/64",
                "192.0.2.1",
                "is not an IPv6 address",
            ),
        ] {
            let e = parse_route("provider.routes[3]", prefix, hop).unwrap_err();
            assert!(e.contains(expect), "{prefix} {hop}: {e}");
            assert!(e.starts_with("provider.routes[3]."), "{e}");
        }
    }

    #[tokio::test]
    async fn fetch_returns_the_routes_and_writes_are_refused() {
        let mut p = StaticRoutes {
            routes: vec![
                parse_route("r", "2001:db8:42:100::/64", "2001:db8::10").unwrap(),
                parse_route("r", "2001:db8:43::/48", "2001:db8::11").unwrap(),
            ],
        };
        let a = p.fetch().await.unwrap();
        assert_eq!(a.prefixes.len(), 2);
        assert_eq!(a.prefixes[1].origin, "static routes[1]");
        assert_eq!(
            a.prefixes[1].next_hop,
            Some("2001:db8::11".parse().unwrap())
        );
        assert!(matches!(
            p.release().await,
            Err(ProviderError::Unsupported(m)) if m.contains("no provider API")
        ));
        assert!(p.allocate().await.is_err());
        assert!(p.refresh_next_hop().await.is_err());
        assert!(!p.needs_identity());
    }
}
