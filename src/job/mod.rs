//! The job, as a story: take the output lock, load what a previous run stored, decide whether
//! to register, verify, or replace, make the calls, persist the result.
//!
//! `session` holds what the steps share; `register` and `existing` are the two flows, with
//! `update` (drift correction), `renewal` (a refused registration access token), `shared`
//! (replicas sharing one client) and `prove` (credentials at the token endpoint); `decide`
//! the pure decision tables; `output` the crash-safe persistence; `commands` the other
//! subcommands, built on the same session.

mod adopt;
pub mod commands;
mod converge;
pub mod decide;
mod existing;
mod expiry;
mod iat;
mod managed;
mod output;
mod prove;
mod register;
mod renewal;
mod session;
mod shared;
mod update;

pub use decide::Action;
pub use session::Session;

use crate::config::Config;
use crate::error::Result;
use crate::local::keyring::KeyRing;
use crate::local::store;
use crate::record::ClientRecord;
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug)]
pub struct Outcome {
    pub action: Action,
    pub client_id: String,
    /// HTTP requests sent, and how many of them were retries.
    pub requests: u32,
    pub retries: u32,
    pub elapsed: Duration,
}

/// The key ring of `DCR_SIGNING_KEY`, with the key records the previous run stored.
pub fn load_ring(
    cfg: &Config,
    stored: Option<&ClientRecord>,
    now: SystemTime,
) -> Result<Option<KeyRing>> {
    cfg.signing_key
        .as_ref()
        .map(|k| {
            store::ensure_parent_dir(&k.path)?;
            KeyRing::load(
                &k.path,
                k.policy.clone(),
                &output::stored_key_records(stored),
                cfg.output.owner,
                now,
            )
        })
        .transpose()
}

/// A stored record for another client than `DCR_CLIENT_ID` is refused before any request
/// when the admin credential could act on it, unless this program sealed it: whoever wrote
/// it chose which client the run would act on.
fn check_stored_client(cfg: &Config, stored: &ClientRecord) -> Result<()> {
    let configured = cfg
        .metadata
        .fields
        .get("client_id")
        .and_then(serde_json::Value::as_str);
    // A record this program sealed is its own even under another id: the IdP assigned one
    // and ignored the requested DCR_CLIENT_ID (said at WARN when it registered). Without an
    // admin credential nothing but the record's own token can act on its client, so there is
    // nothing to take over.
    let sealed = cfg.credentials.verifies(stored, &cfg.binding());
    let admin = cfg.credentials.admin.is_some();
    match configured {
        Some(id) if id != stored.client_id() && admin && !sealed => {
            Err(crate::error::Error::Io(format!(
                "DCR_OUTPUT {} holds client {}, but DCR_CLIENT_ID is {}: refusing to act on another client than the one \
             configured. Move the file away, or fix DCR_CLIENT_ID",
                cfg.output.path.display(),
                stored.client_id().escape_debug(),
                id.escape_debug()
            )))
        }
        _ => Ok(()),
    }
}

pub async fn run(cfg: &Config) -> Result<Outcome> {
    let start = Instant::now();
    let session = Session::new(cfg)?;
    if !cfg.timing.start_jitter.is_zero() {
        // Spreads the first requests of a fleet that starts at once (DCR_START_JITTER).
        let wait = cfg.timing.start_jitter.mul_f64(fastrand::f64());
        tracing::debug!(
            "waiting {} before the first request (DCR_START_JITTER)",
            crate::duration::show(wait)
        );
        tokio::time::sleep(wait).await;
    }

    // 1. Lock: one run at a time per output; sweep what a killed run left.
    let out = &cfg.output.path;
    store::ensure_parent_dir(out)?;
    let _lock = store::lock(out, session.remaining()).await?;
    for f in cfg.written_files() {
        store::sweep_temp_files(&f);
    }

    // 2. Load what a previous run stored, and the keys.
    let stored = store::load(out, cfg.output.owner)?;
    if let Some(s) = &stored {
        check_stored_client(cfg, s)?;
        if !session.owns(s) && cfg.credentials.sealer.is_some() {
            tracing::warn!(
                "{} is not sealed for this deployment (edited, copied from elsewhere, or written by an older \
                 version): the admin token is not used on client {}; it is managed with its own registration access \
                 token only",
                out.display(),
                s.client_id().escape_debug()
            );
        }
    }
    let mut ring = load_ring(cfg, stored.as_ref(), session.now)?;

    // 3. Decide, call, persist.
    let (action, client_id) = match stored {
        None => {
            session
                .register_flow(Action::Registered, ring.as_mut())
                .await?
        }
        Some(stored) if cfg.policies.force_replace => {
            tracing::warn!(
                "DCR_FORCE_REPLACE=true: deleting client {} and registering a new one; this happens on every start while it stays on",
                stored.client_id()
            );
            session.delete_stored(&stored).await?;
            session
                .register_flow(Action::Reregistered, ring.as_mut())
                .await?
        }
        Some(stored) => session.existing_flow(&stored, ring.as_mut()).await?,
    };
    Ok(Outcome {
        action,
        client_id,
        requests: session.idp.attempts().0,
        retries: session.idp.attempts().1,
        elapsed: start.elapsed(),
    })
}
