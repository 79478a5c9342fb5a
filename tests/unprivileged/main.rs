//! The tests that need no root: the command line and the exact line every bad input
//! gets, the provider clients against the simulated APIs, the parsers under fuzzing,
//! and the panic hook. One binary: one link, and the suites share the test threads.

mod bad_input;
mod cli;
mod fuzz_parsers;
mod panic_hook;
mod provider_hostup;
mod provider_parsers;
mod providers_sim;
