//! routed6d: routed IPv6 for a VPS, from the provider's API to the kernel.

pub mod args;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod damping;
pub mod desired;
pub mod docker;
pub mod hooks;
pub mod kernel;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod next_hop;
pub mod plan;
pub mod probe;
pub mod provider;
pub mod ra;
pub mod reconcile;
pub mod rules;
pub mod timer;
pub mod token;
pub mod workload;
