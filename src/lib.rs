//! dcr-bootstrap: bootstrap an OAuth client at an IdP (IAT mint + RFC 7591 registration, RFC
//! 7592 verification), retrying until the IdP is ready, and write the result atomically.
//!
//! The modules, top to bottom (a module only uses the ones below it):
//!
//! ```text
//! app          process wiring: runtime, signals, logging, the summary line, the exit code
//! cli          the command line (clap): flattened groups, ValueEnum choices
//! job          the story of a run, its session, decisions, persistence; the subcommands
//! config       validated configuration, one group at a time; desired client metadata
//! idp          the protocol: one `call` for every request; admin, client, discovery, http
//! local        the volume: atomic store and lock, dotenv, keys, their rotation plan (keyplan)
//!              and the key set replicas share (keyset)
//! reconcile    desired vs registered: drift, PUT bodies, read-back; no I/O
//! record       the client registration document, IdP answer and stored file alike
//! seal         the HMAC that proves a stored record is ours
//! policy       the operator's choices: DCR_ON_STALE, DCR_ON_EXISTING, redirect updates
//! url secret duration error files logging metrics   small helpers every layer may use
//! ```
//!
//! Everything is private but [`main`] and [`inputs`], the parsers of untrusted input that the
//! fuzz targets and property tests drive.

#![forbid(unsafe_code)]

mod app;
mod cli;
mod config;
mod duration;
mod error;
mod files;
mod idp;
mod job;
mod local;
mod logging;
mod metrics;
mod policy;
mod reconcile;
mod record;
mod seal;
mod secret;
mod url;

pub use app::main;

/// The parsers that take operator and peer input, for fuzzing and property tests.
pub mod inputs {
    pub use crate::config::metadata::{MetadataInputs, check_redirect_uri, desired, split_list};
    pub use crate::duration::parse as parse_duration;
    pub use crate::idp::answer::{
        describe, is_already_registered, parse_client, parse_iat, parse_rat,
    };
    pub use crate::idp::http::Reply;
    pub use crate::idp::retry_after::parse as parse_retry_after;
    pub use crate::idp::transient;
    pub use crate::local::keys::{parse_pem, thumbprint};
    pub use crate::record::ClientRecord;
}
