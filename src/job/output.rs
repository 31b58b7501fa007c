//! Persistence of a run: the registration record (with our `dcr_bootstrap` member), the key
//! files, and the public JWKS and dotenv views, written in an order that is safe to crash in.

use super::decide::Action;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::files;
use crate::local::keyring::{KeyRecord, KeyRing, Plan};
use crate::local::{dotenv, store};
use crate::record::ClientRecord;
use reqwest::Url;
use serde_json::{Map, Value, json};
use std::time::SystemTime;

/// `dcr_bootstrap.origin` of a client this tool registered itself.
pub const ORIGIN_REGISTERED: &str = "registered";

/// Whether a record is this program's memory: registered or adopted by it, or found sealed
/// for this deployment. Only such a record is sealed when written; anything else is written
/// without a seal, so that nothing read back from the volume becomes trusted by being saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    Ours,
    NotOurs,
}

/// Writes the record: sealed when it is ours and a sealing key is configured, unsealed when
/// it is not ours. A run without the sealing key (no admin credential) keeps the seal the
/// record carries: it covers only what names the client, which such a run does not change.
pub fn save(cfg: &Config, record: &ClientRecord, trust: Trust) -> Result<()> {
    let out = &cfg.output;
    let record = match (&cfg.credentials.sealer, trust) {
        (Some(sealer), Trust::Ours) => sealer.sealed(record.clone(), &cfg.binding()),
        (Some(_), Trust::NotOurs) => crate::seal::unsealed(record.clone()),
        (None, _) => record.clone(),
    };
    let bytes = record.to_bytes().map_err(Error::Io)?;
    store::write_atomic(&out.path, &bytes, out.mode, out.owner)
}

/// Marks the record as having an update in flight: if its answer is lost (and with it a
/// registration access token the IdP rotated), the next start knows why its token is
/// refused. `persist` writes the record without the mark.
pub fn mark_pending_update(cfg: &Config, record: &mut ClientRecord, trust: Trust) -> Result<()> {
    let mut meta = record.meta().cloned().unwrap_or_else(|| json!({}));
    meta["pending_update"] =
        Value::String(humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
    record.set_meta(meta);
    save(cfg, record, trust)
}

/// The key records a previous run stored in the output.
/// A record that does not parse (an algorithm we do not sign with, a missing member) is left
/// out with a warning: its key is then neither published nor retired by this tool.
pub fn stored_key_records(stored: Option<&ClientRecord>) -> Vec<KeyRecord> {
    let list = stored
        .and_then(|s| s.meta())
        .and_then(|m| m.get("signing_keys"))
        .and_then(Value::as_array);
    list.into_iter()
        .flatten()
        .filter_map(|v| match serde_json::from_value::<KeyRecord>(v.clone()) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!("ignoring a stored key record that is not one of ours ({e})");
                None
            }
        })
        .collect()
}

/// What a run persists beside the record.
pub struct Persist<'a> {
    pub action: Action,
    /// The key ring and the plan the IdP now holds.
    pub keys: Option<(&'a KeyRing, &'a Plan)>,
    /// The record as the run found it (who made the client is carried over from it).
    pub previous: Option<&'a ClientRecord>,
    /// Further members of our `dcr_bootstrap` record (what was asked, what the IdP settled).
    pub extra: Map<String, Value>,
    pub registration_endpoint: Option<Url>,
    pub trust: Trust,
}

/// Writes everything, in crash-safe order: the registration (with the key records as they
/// will be), then the key files (the pending key becomes current), then the public JWKS and
/// the dotenv views. Files whose content would not change are left alone.
pub fn persist(cfg: &Config, mut record: ClientRecord, p: Persist<'_>) -> Result<()> {
    let Persist {
        action,
        keys,
        previous,
        extra,
        registration_endpoint,
        trust,
    } = p;
    let records: Vec<KeyRecord> = match keys {
        Some((_, p)) => p.publish.clone(),
        None => stored_key_records(previous),
    };
    let mut meta = provenance(cfg, &record, action, previous, registration_endpoint);
    for (k, v) in extra {
        if v.as_object().is_none_or(|o| !o.is_empty()) {
            meta[k.as_str()] = v;
        }
    }
    if let Some(current) = records.first() {
        meta["signing_key"] = json!({"path": current.pem, "kid": current.kid, "alg": current.alg});
        meta["signing_keys"] = serde_json::to_value(&records).unwrap_or_default();
    }
    record.set_meta(meta);
    // Compared with the file as it is now, not as the run found it: the run may have saved a
    // token or a pending-update mark since.
    let on_disk = store::load(&cfg.output.path, cfg.output.owner)
        .ok()
        .flatten();
    // A record of ours whose seal is not the sealing key's (made before DCR_STATE_KEY was
    // set) is written again, so that it outlives the admin credential.
    let reseal = |p: &ClientRecord| {
        trust == Trust::Ours
            && cfg
                .credentials
                .sealer
                .as_ref()
                .is_some_and(|s| !s.verify(p, &cfg.binding()))
    };
    if on_disk.is_none_or(|p| differs_beyond_timestamps(&record, &p, action) || reseal(&p)) {
        save(cfg, &record, trust)?;
    }
    // An unchanged file keeps its content, but not a mode wider than configured.
    files::ensure_mode(&cfg.output.path, cfg.output.mode)
        .map_err(|why| Error::Io(format!("DCR_OUTPUT {}: {why}", cfg.output.path.display())))?;
    if let Some((ring, p)) = keys {
        ring.commit(p)?;
        if let Some(path) = &cfg.output.jwks_path {
            let mut jwks = serde_json::to_vec_pretty(&p.jwks()).unwrap_or_default();
            jwks.push(b'\n');
            write_if_changed(path, &jwks, 0o644, cfg.output.owner, "DCR_JWKS_OUTPUT")?;
        }
    }
    write_dotenv(cfg, &record, records.first())
}

/// Our `dcr_bootstrap` member: who wrote the record, where the client was registered, and
/// who made it (the seal is added when the record is saved).
fn provenance(
    cfg: &Config,
    record: &ClientRecord,
    action: Action,
    previous: Option<&ClientRecord>,
    registration_endpoint: Option<Url>,
) -> Value {
    let same_client = previous.filter(|p| p.client_id() == record.client_id());
    let previous_meta = |k: &str| previous.and_then(|p| p.meta()).and_then(|m| m.get(k));
    // Where the client was registered: known now, or as the previous run recorded it.
    let registration_endpoint = registration_endpoint.map(|u| u.to_string()).or_else(|| {
        previous_meta("registration_endpoint")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let mut meta = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "profile": cfg.profile().name(),
        "idp_base_url": cfg.target.idp_base_url.as_str(),
        "registration_endpoint": registration_endpoint,
        "written_at": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        "action": action.as_str(),
    });
    // Who made the client is known only when it was made: carried over from then, and the
    // seal with it (a run that cannot seal keeps the one it found; `save` decides).
    if let Some(origin) = same_client
        .and_then(|p| p.meta())
        .and_then(|m| m.get("origin"))
    {
        meta["origin"] = origin.clone();
    }
    if let Some(seal) = same_client
        .filter(|p| p.client_uri() == record.client_uri())
        .and_then(|p| p.meta())
        .and_then(|m| m.get("seal"))
    {
        meta["seal"] = seal.clone();
    }
    meta
}

/// The dotenv view (`DCR_ENV_OUTPUT`), when configured.
fn write_dotenv(cfg: &Config, record: &ClientRecord, current: Option<&KeyRecord>) -> Result<()> {
    let Some(env) = &cfg.output.env_path else {
        return Ok(());
    };
    let key_path = current
        .and_then(|c| c.pem.as_ref())
        .map(|p| p.display().to_string());
    let text = dotenv::render(
        record.client_id(),
        record.client_secret(),
        current.map(|c| c.kid.as_str()),
        key_path.as_deref(),
    )
    .map_err(|why| {
        Error::Rejected(format!(
            "client {} is registered and recorded in {}, but DCR_ENV_OUTPUT {} is not written: {why}. \
             Read the JSON output instead, or unset DCR_ENV_OUTPUT",
            record.client_id().escape_debug(),
            cfg.output.path.display(),
            env.display()
        ))
    })?;
    write_if_changed(
        env,
        text.as_bytes(),
        cfg.output.mode,
        cfg.output.owner,
        "DCR_ENV_OUTPUT",
    )
}

/// Whether two records differ in anything but when they were written. A run that found
/// everything as recorded (`verified`) leaves the file alone; any other action is a state the
/// file must show (an operator reads `unmanaged` or `trusted` there), written once.
fn differs_beyond_timestamps(a: &ClientRecord, b: &ClientRecord, action: Action) -> bool {
    let strip = |r: &ClientRecord| {
        let mut m = r.fields().clone();
        if let Some(Value::Object(meta)) = m.get_mut(crate::record::META) {
            meta.remove("written_at");
            meta.remove("seal");
            if action == Action::Verified {
                meta.remove("action");
            }
        }
        m
    };
    strip(a) != strip(b)
}

/// Writes a view file unless it already holds `bytes` (and then fixes only its mode). An
/// existing file someone else could have written is refused, not trusted as unchanged.
fn write_if_changed(
    path: &std::path::Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
    var: &str,
) -> Result<()> {
    if store::read_trusted(path, owner, var)?.is_some_and(|old| old == bytes) {
        return files::ensure_mode(path, mode)
            .map_err(|why| Error::Io(format!("{var} {}: {why}", path.display())));
    }
    store::ensure_parent_dir(path)?;
    store::write_atomic(path, bytes, mode, owner)
}
