//! The tests on a real kernel, each in private network namespaces (root; without it
//! each says SKIPPED): the netlink layer, address ownership, routed6d end to end
//! against the simulated providers, and its answer to faults of the host and of the
//! provider. One binary: one link, and the suites overlap on the test threads.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/debs.rs"]
mod debs;
#[path = "../common/docker.rs"]
mod dockerd;

mod docker_e2e;
mod faults_host;
mod faults_provider;
mod fleet_e2e;
mod kernel_netlink;
mod netns_e2e;
mod onlink_e2e;
mod ownership_record;
mod providers_e2e;
mod workloads_e2e;
