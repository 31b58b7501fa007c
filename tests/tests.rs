//! The integration tests, one crate (ripgrep's layout): the real `dcr-bootstrap` binary
//! against the in-process emulator, one module per area. Tests that need more than a Rust
//! toolchain are `#[ignore = "why"]`; `.ci/run` runs them where the machine allows.

mod common;

mod baseline;
mod bootstrap;
mod config;
mod crash;
mod docker;
mod environment;
mod evidence;
mod faults;
mod interop;
mod invariants;
mod keycloak;
mod operator;
mod profiles;
mod properties;
mod real_servers;
mod reconcile;
mod replicas;
mod retry;
mod secrets;
mod security;
mod volume;
