//! routed6d-sim: everything routed6d is tried against and nothing it ships. The
//! simulated provider APIs (`api`), throwaway network namespaces with a provider router
//! and a raw ping (`netns`), and the demo (`demo`, the `routed6d-demo` binary). The
//! daemon crate never depends on this one: its tests and benches do, so the HTTP server
//! and the simulator's unauthenticated control API stay out of the shipped binary.

pub mod api;
pub mod demo;
pub mod netns;
