//! dcr-bootstrap: bootstrap an OAuth client at an IdP (IAT mint + RFC 7591 registration, RFC 7592
//! verification), retrying until the IdP is ready, and write the result atomically.
//!
//! Data flows one way: `cli` → `config` (+ `metadata`, `keys`) → `job` (using `store`, `idp`
//! over `http` under `retry`) → exit code. See DESIGN notes in the README.

pub mod app;
pub mod cli;
pub mod commands;
pub mod config;
pub mod duration;
pub mod error;
pub mod http;
pub mod idp;
pub mod job;
pub mod keyring;
pub mod keys;
pub mod logging;
pub mod metadata;
pub mod metrics;
pub mod profile;
pub mod reconcile;
pub mod retry;
pub mod retry_after;
pub mod secret;
pub mod store;
