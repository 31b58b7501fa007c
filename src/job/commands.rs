//! The subcommands besides the job: `check` (offline), `deregister`, `mint-iat`.

use super::{Session, load_ring};
use crate::config::{AdminAuth, Config, KeygenSettings, RegistrationToken};
use crate::error::{Error, Result};
use crate::idp::admin::mint_body;
use crate::local::keyring::pending_path;
use crate::local::keys::KeyAlg;
use crate::local::{keys, store};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use std::path::Path;

/// `check`: everything a run would use, and the bodies it would send, without sending or
/// writing anything. Secrets appear only as "set".
pub fn check(cfg: &Config) -> Result<Value> {
    let t = &cfg.target;
    let o = &cfg.output;
    let mut register_body = cfg.metadata.fields.clone();
    let keys = keys_view(cfg, &mut register_body)?;
    let e = cfg.endpoints();
    Ok(json!({
        "profile": cfg.profile().name(),
        "idp_base_url": t.idp_base_url.as_str(),
        "endpoints": {
            "issuer": e.issuer.as_str(),
            "iat": e.iat.as_ref().map(|u| u.as_str()),
            "iat_revoke": e.iat_revoke,
            "registration": e.registration.as_ref().map(|u| u.as_str()),
            "token": e.token.as_ref().map(|u| u.as_str()),
            "rat_reissue": e.rat,
            "client_management_fallback": e.client_uri,
            "rewrite_public_base": t.rewrite_public_base.as_ref().map(|u| u.as_str()),
        },
        "tokens": tokens_view(cfg),
        "tls": {"ca_file": t.ca_file, "allow_insecure_http": t.allow_insecure_http},
        "output": {
            "path": o.path,
            "mode": format!("{:04o}", o.mode),
            "owner": o.owner.map(|(u, g)| format!("{u}:{g}")),
            "env_output": o.env_path,
            "jwks_output": o.jwks_path,
            "iat_output": o.iat_path,
            "stored": stored_view(cfg),
        },
        "policies": policies_view(cfg),
        "keys": keys,
        "timing": timing_view(cfg),
        "pushgateway": o.pushgateway.as_ref().map(|u| u.as_str()),
        "requests": requests_view(cfg, register_body),
    }))
}

/// How `--help` spells a choice (`reregister`, not `Reregister`).
fn choice<T: clap::ValueEnum>(v: T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

fn stored_view(cfg: &Config) -> Value {
    match store::load(&cfg.output.path, cfg.output.owner) {
        Ok(None) => json!({"state": "absent: the first run registers a client"}),
        Ok(Some(s)) => json!({
            "state": "present: a run verifies it (RFC 7592 read) and corrects drift",
            "client_id": s.client_id(),
            "has_registration_access_token": s.rat().is_some(),
            "sealed_for_this_deployment": cfg.credentials.verifies(&s, &cfg.binding()),
        }),
        Err(e) => json!({"state": format!("unusable: {e}")}),
    }
}

/// The signing key as a run would publish it (added to `register_body`).
fn keys_view(cfg: &Config, register_body: &mut serde_json::Map<String, Value>) -> Result<Value> {
    let Some(k) = &cfg.signing_key else {
        return Ok(Value::Null);
    };
    let existing = keys::load(&k.path, cfg.output.owner)?;
    let jwks = match &existing {
        Some(m) => {
            let kid = k.policy.kid.clone().unwrap_or_else(|| m.thumbprint.clone());
            json!({"keys": [m.labelled_jwk(&kid, k.policy.alg.unwrap_or(m.natural_alg()))]})
        }
        None => {
            let alg = k.policy.alg.unwrap_or(KeyAlg::Rs256).name();
            json!({"keys": [format!("(a new {alg} key is generated and published)")]})
        }
    };
    match &k.jwks_uri {
        Some(u) => register_body.insert("jwks_uri".into(), json!(u.as_str())),
        None => register_body.insert("jwks".into(), jwks),
    };
    Ok(json!({
        "path": k.path,
        "exists": existing.is_some(),
        "pending": pending_path(&k.path).exists(),
        "policy": k.policy.describe(),
        "jwks_uri": k.jwks_uri.as_ref().map(|u| u.as_str()),
        "ages": key_ages(cfg, &k.policy, existing.as_ref().map(|m| m.thumbprint.as_str())),
    }))
}

/// Each stored key's age, and when the current one is rotated and the earlier ones retired
/// (from the stored records; a time in the future counts as now, as a run reads it).
fn key_ages(
    cfg: &Config,
    policy: &crate::local::keyring::KeyPolicy,
    current: Option<&str>,
) -> Value {
    let stored = store::load(&cfg.output.path, cfg.output.owner)
        .ok()
        .flatten();
    let now = std::time::SystemTime::now();
    let day = std::time::Duration::from_secs(86_400);
    let date = |t: std::time::SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    let after =
        |t: std::time::SystemTime, days: i64| u32::try_from(days).ok().map(|d| date(t + day * d));
    let ages: Vec<Value> = super::output::stored_key_records(stored.as_ref())
        .iter()
        .map(|r| {
            let created = humantime::parse_rfc3339(&r.created_at)
                .map_or(now, |t| t.min(now));
            let age = now.duration_since(created).unwrap_or_default().as_secs() / 86_400;
            let is_current = current == Some(r.thumbprint.as_str());
            json!({
                "kid": r.kid,
                "current": is_current,
                "created_at": date(created),
                "age_days": age,
                "rotated_at": if is_current { after(created, policy.rotate_after_days) } else { None },
                "retired_at": if is_current { None } else {
                    (policy.retire_after_days > 0).then(|| after(created, policy.retire_after_days)).flatten()
                },
            })
        })
        .collect();
    Value::Array(ages)
}

fn tokens_view(cfg: &Config) -> Value {
    json!({
        "DCR_IAT": match &cfg.credentials.iat {
            Some(RegistrationToken::Open) => "none (open registration)",
            Some(RegistrationToken::Given(_)) => "set (value not shown)",
            None => "not set",
        },
        "admin": match &cfg.credentials.admin {
            Some(AdminAuth::Static(_)) => "BOOTSTRAP_ADMIN_TOKEN set (value not shown)".to_string(),
            Some(AdminAuth::ClientCredentials { client_id, .. }) => {
                format!("client credentials of {client_id} (secret not shown)")
            }
            None => "not set".to_string(),
        },
    })
}

fn policies_view(cfg: &Config) -> Value {
    let p = &cfg.policies;
    json!({
        "on_stale": choice(p.on_stale),
        "on_existing": choice(p.on_existing),
        "force_replace": p.force_replace,
        "update_method": choice(p.update_method),
        "redirect_update_mode": choice(p.redirect_mode),
        "strict_readback": p.strict_readback,
    })
}

fn timing_view(cfg: &Config) -> Value {
    let timing = &cfg.timing;
    let show = crate::duration::show;
    json!({
        "timeout": show(timing.deadline),
        "request_timeout": show(timing.request_timeout),
        "backoff_initial": show(timing.backoff_initial),
        "backoff_max": show(timing.backoff_max),
        "probe_interval": show(timing.probe_interval),
        "retry_after_max": show(timing.retry_after_max),
    })
}

/// What a run would do from the stored state: with a stored client, read it and correct
/// what differs from the desired metadata; without one, the mint (unless an IAT is given)
/// and the registration.
fn requests_view(cfg: &Config, register_body: serde_json::Map<String, Value>) -> Value {
    let e = cfg.endpoints();
    if let Ok(Some(s)) = store::load(&cfg.output.path, cfg.output.owner) {
        return json!({
            "read_client": {
                "method": "GET",
                "url": s.client_uri().map(str::to_string).or_else(|| e.client_uri.clone()),
                "authorization": "Bearer <the stored registration access token>",
            },
            "then": "compare with desired_metadata; send an RFC 7592 update of only what differs; rotate or \
                     retire keys as keys.ages says; register nothing",
            "desired_metadata": register_body,
        });
    }
    let mut requests = serde_json::Map::new();
    if cfg.credentials.iat.is_none() {
        let body = mint_body(&cfg.credentials.mint, e.mint_style);
        requests.insert(
            "mint_iat".into(),
            json!({"method": "POST", "url": e.iat.as_ref().map(|u| u.as_str()), "authorization": "Bearer <admin token>", "body": body}),
        );
    }
    let auth = match &cfg.credentials.iat {
        Some(RegistrationToken::Open) => "(none: open registration)",
        _ => "Bearer <IAT>",
    };
    let url = e
        .registration
        .as_ref()
        .map(|u| u.to_string())
        .unwrap_or_else(|| format!("(from discovery at {})", e.issuer));
    requests.insert(
        "register".into(),
        json!({"method": "POST", "url": url, "authorization": auth, "body": register_body}),
    );
    Value::Object(requests)
}

fn remove(path: &Path) -> bool {
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::info!("removed {}", path.display());
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => {
            tracing::warn!("cannot remove {}: {e}", path.display());
            false
        }
    }
}

/// `deregister`: delete the client at the IdP, then every file we wrote. Returns the
/// client_id, if there was one.
pub async fn deregister(cfg: &Config) -> Result<Option<String>> {
    let session = Session::new(cfg)?;
    let out = &cfg.output.path;
    let lock = store::lock(out, session.remaining()).await?;
    let stored = store::load(out, cfg.output.owner)?;
    let ring = load_ring(cfg, stored.as_ref(), session.now)?;
    let id = match &stored {
        Some(s) => {
            session.delete_stored(s).await?;
            tracing::info!("deleted client {} at the IdP", s.client_id());
            Some(s.client_id().to_string())
        }
        None => {
            tracing::info!(
                "{} holds no registration; removing local files only",
                out.display()
            );
            None
        }
    };
    let mut files = vec![out.clone()];
    files.extend(cfg.output.env_path.clone());
    files.extend(cfg.output.jwks_path.clone());
    if let Some(r) = &ring {
        files.extend(r.files());
    }
    let removed = files.iter().filter(|f| remove(f)).count();
    drop(lock);
    remove(&store::lock_path(out));
    for f in cfg.written_files() {
        store::sweep_temp_files(&f);
    }
    tracing::info!("removed {removed} file(s)");
    Ok(id)
}

/// `deregister --dry-run`: the client that would be deleted and the files that would be
/// removed, from the stored state alone. Sends nothing, takes no lock, changes nothing.
pub fn deregister_plan(cfg: &Config) -> Result<Value> {
    let out = &cfg.output.path;
    let stored = store::load(out, cfg.output.owner)?;
    let mut files = vec![out.clone()];
    files.extend(cfg.output.env_path.clone());
    files.extend(cfg.output.jwks_path.clone());
    if let Some(k) = &cfg.signing_key {
        let records = super::output::stored_key_records(stored.as_ref());
        files.extend(crate::local::keyring::files_for(&k.path, &records));
    }
    files.push(store::lock_path(out));
    let existing: Vec<String> = files
        .iter()
        .filter(|f| std::fs::symlink_metadata(f).is_ok())
        .map(|f| f.display().to_string())
        .collect();
    Ok(json!({
        "dry_run": true,
        "would_delete_client": stored.as_ref().map(|s| s.client_id().to_string()),
        "at": stored.as_ref().and_then(|s| s.client_uri().map(str::to_string)),
        "would_remove": existing,
    }))
}

/// `mint-iat`: mint one IAT and write it to `DCR_IAT_OUTPUT` (0600).
pub async fn mint_iat(cfg: &Config) -> Result<()> {
    let path = cfg.output.iat_path.as_ref().ok_or_else(|| {
        Error::Config("mint-iat needs DCR_IAT_OUTPUT (--iat-output): where to write the IAT".into())
    })?;
    if cfg.credentials.admin.is_none() {
        return Err(Error::Config(
            "mint-iat needs an admin token: BOOTSTRAP_ADMIN_TOKEN (or _FILE) or DCR_ADMIN_CLIENT_ID/_SECRET".into(),
        ));
    }
    let iat = Session::new(cfg)?.mint_only().await?;
    store::ensure_parent_dir(path)?;
    store::write_atomic(
        path,
        format!("{}\n", iat.expose_secret()).as_bytes(),
        0o600,
        cfg.output.owner,
    )?;
    tracing::info!(
        "wrote the IAT to {} (use it as DCR_IAT_FILE)",
        path.display()
    );
    Ok(())
}

/// `keygen`: one private key for every replica (a Kubernetes Secret). Written at
/// `DCR_SIGNING_KEY` with mode 0600, never over an existing file. Its kid records when it was
/// made (`<BFF_KID or "key">-<unix time>-<thumbprint prefix>`), so replicas that share the
/// client retire it by age once a newer key has replaced it (docs/kubernetes.md).
pub fn keygen(k: &KeygenSettings) -> Result<Value> {
    let path = &k.path;
    if std::fs::symlink_metadata(path).is_ok() {
        return Err(Error::Config(format!(
            "{}: {} exists; keygen never overwrites a key (a key in use would be lost). Choose a new path",
            crate::config::name("DCR_SIGNING_KEY"),
            path.display()
        )));
    }
    let alg = k.alg;
    let m = keys::generate(alg, k.rsa_bits)?;
    let kid =
        crate::local::keyring::dated_kid(&k.kid_base, std::time::SystemTime::now(), &m.thumbprint);
    // Like `run`, a missing directory is created (0700).
    store::ensure_parent_dir(path)?;
    // Never over a key: the check above says why; the link makes it hold even against a file
    // created since.
    store::write_new(path, keys::pem_bytes(&m), 0o600, None)?;
    Ok(json!({
        "path": path.display().to_string(),
        "kid": kid,
        "alg": alg.name(),
        "thumbprint": m.thumbprint,
        "jwk": m.labelled_jwk(&kid, alg),
    }))
}
