//! Static routes (`kind = "static"`): for a provider with no API, the routed prefixes
//! and next hops written in the config (e.g. from a welcome e-mail). The "poll" returns
//! them as they are and makes no network call at all — this provider holds no HTTP
//! client. A change is a config edit plus SIGHUP; drift repair works as for every kind.

use std::net::IpAddr;

use super::{Provider, ProviderError, Release};
use crate::config::StaticRoute;
use crate::model::{Assignment, RoutedPrefix};

/// The routes from the config.
#[derive(Clone, Debug)]
pub struct StaticRoutes {
    routes: Vec<StaticRoute>,
}

impl StaticRoutes {
    pub fn new(routes: &[StaticRoute]) -> Self {
        StaticRoutes {
            routes: routes.to_vec(),
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
                    workload: None,
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

    #[tokio::test]
    async fn fetch_returns_the_routes_and_writes_are_refused() {
        let mut p = StaticRoutes {
            routes: vec![
                StaticRoute {
                    prefix: "2001:db8:42:100::/64".parse().unwrap(),
                    next_hop: "2001:db8::10".parse().unwrap(),
                },
                StaticRoute {
                    prefix: "2001:db8:43::/48".parse().unwrap(),
                    next_hop: "2001:db8::11".parse().unwrap(),
                },
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
