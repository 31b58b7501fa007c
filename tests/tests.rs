//! The integration tests, one crate (ripgrep's layout): the real `dcr-bootstrap` binary
//! against the in-process emulator, one module per area. Tests that need more than a Rust
//! toolchain are `#[ignore = "why"]`; `.ci/run` runs them where the machine allows.

#[path = "it/common.rs"]
mod common;

#[path = "it/baseline.rs"]
mod baseline;
#[path = "it/bootstrap.rs"]
mod bootstrap;
#[path = "it/config.rs"]
mod config;
#[path = "it/crash.rs"]
mod crash;
#[path = "it/docker.rs"]
mod docker;
#[path = "it/environment.rs"]
mod environment;
#[path = "it/faults.rs"]
mod faults;
#[path = "it/interop.rs"]
mod interop;
#[path = "it/keycloak.rs"]
mod keycloak;
#[path = "it/profiles.rs"]
mod profiles;
#[path = "it/properties.rs"]
mod properties;
#[path = "it/real_servers.rs"]
mod real_servers;
#[path = "it/reconcile.rs"]
mod reconcile;
#[path = "it/replicas.rs"]
mod replicas;
#[path = "it/retry.rs"]
mod retry;
#[path = "it/secrets.rs"]
mod secrets;
#[path = "it/security.rs"]
mod security;
