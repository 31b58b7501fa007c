//! The job: under the output lock, decide from what is stored whether to verify, register or
//! replace, talk to the IdP, and persist the result.

use crate::config::{Config, ExistingPolicy, StalePolicy};
use crate::error::{Error, Result};
use crate::http::Http;
use crate::idp::{Idp, ReadResult, Registration};
use crate::keys::{self, SigningKey};
use crate::retry::{Attempts, Policy};
use crate::store::{self, Stored};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use std::cell::Cell;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A new client was registered.
    Registered,
    /// The stored client was confirmed at the IdP (RFC 7592 read).
    Verified,
    /// The stored client has no registration access token, so it was kept unchecked.
    Trusted,
    /// The stored client was gone or force-replaced, and a new one was registered.
    Reregistered,
    /// `DCR_CLIENT_ID` already existed at the IdP (our own lost registration, or a lost
    /// volume) and was taken over through the admin API.
    Adopted,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Registered => "registered",
            Action::Verified => "verified",
            Action::Trusted => "trusted",
            Action::Reregistered => "re-registered",
            Action::Adopted => "adopted",
        }
    }
}

#[derive(Debug)]
pub struct Outcome {
    pub action: Action,
    pub client_id: String,
    pub attempts: u32,
    pub elapsed: Duration,
}

struct Ctx<'a> {
    cfg: &'a Config,
    idp: Idp<'a>,
}

pub async fn run(cfg: &Config) -> Result<Outcome> {
    let start = Instant::now();
    let t = &cfg.timing;
    let policy = Policy {
        start,
        deadline: start + t.deadline,
        request_timeout: t.request_timeout,
        probe_interval: t.probe_interval,
        backoff_initial: t.backoff_initial,
        backoff_max: t.backoff_max,
        retry_after_max: t.retry_after_max,
    };
    let attempts = Attempts::default();
    let http = Http::new(cfg.ca_file.as_deref(), t.request_timeout)?;
    let ctx = Ctx {
        cfg,
        idp: Idp {
            http: &http,
            policy: &policy,
            attempts: &attempts,
            allow_insecure_http: cfg.allow_insecure_http,
        },
    };
    let out = &cfg.output.path;
    store::ensure_parent_dir(out)?;
    let _lock = store::lock(out, &policy).await?;
    store::sweep_temp_files(out);

    let (action, client_id) = match store::load(out)? {
        None => ctx.register_and_store(Action::Registered).await?,
        Some(stored) if cfg.force_replace => {
            tracing::warn!(
                "DCR_FORCE_REPLACE=true: deleting client {} and registering a new one; this happens on every start while it stays on",
                stored.client_id()
            );
            ctx.delete_stored(&stored).await?;
            ctx.register_and_store(Action::Reregistered).await?
        }
        Some(stored) => ctx.verify_or_replace(&stored).await?,
    };
    Ok(Outcome {
        action,
        client_id,
        attempts: attempts.get(),
        elapsed: start.elapsed(),
    })
}

impl Ctx<'_> {
    fn client_uri(&self, stored: &Stored) -> Result<Url> {
        let raw = match stored.client_uri() {
            Some(u) => u.to_string(),
            // No registration_client_uri stored: the BFF pages' management path.
            None => {
                return self.cfg.endpoint_for(
                    &self.cfg.client_uri_template,
                    "IDP_BASE_URL",
                    stored.client_id(),
                );
            }
        };
        Url::parse(&raw).map_err(|_| {
            Error::Io(format!(
                "DCR_OUTPUT {}: registration_client_uri {raw:?} is not a URL",
                self.cfg.output.path.display()
            ))
        })
    }

    async fn verify_or_replace(&self, stored: &Stored) -> Result<(Action, String)> {
        let id = stored.client_id().to_string();
        self.warn_if_key_missing();
        let Some(rat) = stored.rat() else {
            tracing::warn!(
                "{} holds client {id} without a registration_access_token: keeping it without checking the IdP",
                self.cfg.output.path.display()
            );
            self.write_env_if_missing(stored)?;
            return Ok((Action::Trusted, id));
        };
        let uri = self.client_uri(stored)?;
        match self.idp.read(&uri, &rat).await? {
            ReadResult::Current(current) => {
                let mut merged = stored.doc.clone();
                for (k, v) in current {
                    merged.insert(k, v);
                }
                if merged != stored.doc {
                    // Persist before anything else: the IdP may have rotated the RAT and
                    // invalidated the one we hold.
                    tracing::info!(
                        "the IdP returned changed registration data (e.g. a rotated registration access token); saving it"
                    );
                    self.write_outputs(&mut merged, Action::Verified, None)?;
                } else {
                    self.write_env_if_missing(stored)?;
                }
                Ok((Action::Verified, id))
            }
            ReadResult::Gone(why) => match self.cfg.on_stale {
                StalePolicy::Reregister => {
                    tracing::warn!(
                        "stored client {id} is gone at the IdP ({why}); DCR_ON_STALE=reregister: registering a new client"
                    );
                    self.register_and_store(Action::Reregistered).await
                }
                StalePolicy::Fail => Err(Error::Rejected(format!(
                    "the stored client {id} is gone at the IdP ({why}). Set DCR_ON_STALE=reregister to register a new one \
                     automatically, or DCR_FORCE_REPLACE=true for one run, or move {} away",
                    self.cfg.output.path.display()
                ))),
            },
        }
    }

    fn warn_if_key_missing(&self) {
        if let Some(k) = &self.cfg.signing_key
            && !k.path.exists()
        {
            tracing::warn!(
                "DCR_SIGNING_KEY {} is missing although a registration exists: the registered key cannot be recovered; \
                 the client cannot authenticate with private_key_jwt until it is re-registered (DCR_FORCE_REPLACE=true for one run)",
                k.path.display()
            );
        }
    }

    async fn delete_stored(&self, stored: &Stored) -> Result<()> {
        match stored.rat() {
            Some(rat) => self.idp.delete(&self.client_uri(stored)?, &rat).await,
            None => {
                tracing::warn!(
                    "cannot delete client {} at the IdP: no registration_access_token stored; delete it there by hand",
                    stored.client_id()
                );
                Ok(())
            }
        }
    }

    /// Registers (or adopts) and writes the outputs; returns what was done and the client_id.
    async fn register_and_store(&self, action: Action) -> Result<(Action, String)> {
        let cfg = self.cfg;
        if cfg.iat.is_none() && cfg.admin_token.is_none() {
            return Err(Error::Config(format!(
                "registering a client needs DCR_IAT (an Initial Access Token) or BOOTSTRAP_ADMIN_TOKEN (to mint one); \
                 neither is set and {} holds no usable registration",
                cfg.output.path.display()
            )));
        }
        let key = match &cfg.signing_key {
            Some(k) => Some(keys::load_or_generate(&k.path, k.kid.as_deref())?),
            None => None,
        };
        let mut metadata = cfg.metadata.fields.clone();
        if let Some(k) = &key {
            metadata.insert("jwks".into(), k.jwks());
        }
        let (mut doc, adopted) = self.register(&metadata).await?;
        let id = doc
            .get("client_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let action = if adopted { Action::Adopted } else { action };
        self.check_readback(&metadata, &doc);
        if adopted
            && let Some(k) = &key
            && !jwks_has_kid(&doc, &k.kid)
        {
            tracing::warn!(
                "the adopted client {id} does not list signing key {} in its jwks; private_key_jwt will fail until it does \
                 (DCR_FORCE_REPLACE=true re-registers with this key)",
                k.kid
            );
        }
        self.write_outputs(&mut doc, action, key.as_ref())?;
        Ok((action, id))
    }

    /// Takes over `client_id`, which exists at the IdP but not in our output: a new
    /// registration access token from the admin API, then an RFC 7592 read.
    async fn adopt(&self, client_id: &str, why: &str) -> Result<Map<String, Value>> {
        let cfg = self.cfg;
        let Some(admin) = cfg
            .admin_token
            .as_ref()
            .filter(|_| cfg.on_existing == ExistingPolicy::Adopt)
        else {
            return Err(Error::Rejected(format!(
                "client_id {client_id:?} already exists at the IdP ({why}) and this run holds no registration for it. \
                 Set BOOTSTRAP_ADMIN_TOKEN (with DCR_ON_EXISTING=adopt) to take it over, restore {}, or delete the client at the IdP",
                cfg.output.path.display()
            )));
        };
        let rat_url = cfg.endpoint_for(&cfg.rat_endpoint, "DCR_RAT_ENDPOINT", client_id)?;
        let Some(rat) = self.idp.reissue_rat(&rat_url, admin).await? else {
            return Err(Error::Rejected(format!(
                "client_id {client_id:?} was reported as existing ({why}) but the admin API does not know it ({rat_url} answered 404)"
            )));
        };
        let uri = cfg.endpoint_for(&cfg.client_uri_template, "IDP_BASE_URL", client_id)?;
        match self.idp.read(&uri, &rat).await? {
            ReadResult::Current(mut doc) => {
                tracing::warn!(
                    "client {client_id} already existed at the IdP ({why}); adopted it with a re-issued registration access token"
                );
                doc.entry("registration_access_token")
                    .or_insert_with(|| Value::String(rat.expose_secret().to_string()));
                doc.entry("registration_client_uri")
                    .or_insert_with(|| Value::String(uri.to_string()));
                Ok(doc)
            }
            ReadResult::Gone(gone) => Err(Error::Rejected(format!(
                "adopting client {client_id:?}: reading it with a fresh registration access token failed ({gone})"
            ))),
        }
    }

    async fn mint(&self) -> Result<SecretString> {
        let admin = self.cfg.admin_token.as_ref().ok_or_else(|| {
            Error::Config("BOOTSTRAP_ADMIN_TOKEN is needed to mint an IAT".into())
        })?;
        let iat = self
            .idp
            .mint_iat(&self.cfg.iat_endpoint, admin, &self.cfg.mint)
            .await?;
        tracing::info!(
            "minted an IAT at {} (expires in {}s, {} use(s))",
            self.cfg.iat_endpoint,
            self.cfg.mint.expires_in,
            self.cfg.mint.max_uses
        );
        Ok(iat)
    }

    /// Registers, minting an IAT first when none was given, and once more if the IdP rejects
    /// an IAT we minted (it may have expired while the IdP was restarting). Returns the
    /// registration and whether an existing client was adopted instead.
    async fn register(&self, metadata: &Map<String, Value>) -> Result<(Map<String, Value>, bool)> {
        let cfg = self.cfg;
        let maybe_committed = Cell::new(false);
        let (mut iat, mut minted) = match &cfg.iat {
            Some(i) => (i.clone(), false),
            None => (self.mint().await?, true),
        };
        let mut reminted = false;
        loop {
            // A re-sent registration cannot duplicate the client when the IdP would refuse
            // the second one: a single-use IAT is spent by the first, and a fixed client_id
            // is taken by it.
            let blind_retry_safe =
                metadata.contains_key("client_id") || (minted && cfg.mint.max_uses == 1);
            match self
                .idp
                .register(
                    &cfg.registration_endpoint,
                    &iat,
                    metadata,
                    blind_retry_safe,
                    &maybe_committed,
                )
                .await?
            {
                Registration::Created(doc) => return Ok((doc, false)),
                Registration::AlreadyExists(why) => {
                    let Some(id) = metadata.get("client_id").and_then(Value::as_str) else {
                        return Err(Error::Rejected(format!("registration rejected ({why})")));
                    };
                    return Ok((self.adopt(id, &why).await?, true));
                }
                Registration::IatRejected(why)
                    if maybe_committed.get()
                        && cfg.admin_token.is_some()
                        && cfg.on_existing == ExistingPolicy::Adopt
                        && metadata.contains_key("client_id") =>
                {
                    // Our own earlier attempt most likely created the client and spent the IAT.
                    let id = metadata
                        .get("client_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    return Ok((
                        self.adopt(id, &format!("an earlier attempt got no answer, then {why}"))
                            .await?,
                        true,
                    ));
                }
                Registration::IatRejected(why) if maybe_committed.get() => {
                    let name = metadata
                        .get("client_id")
                        .or_else(|| metadata.get("client_name"))
                        .and_then(Value::as_str)
                        .unwrap_or("(unnamed)");
                    return Err(Error::Rejected(format!(
                        "the IAT was rejected ({why}) after an earlier registration attempt got no answer: \
                         that attempt most likely created the client and spent the IAT. Look for an orphaned client {name:?} \
                         at the IdP, delete it, and run again (with DCR_CLIENT_ID and BOOTSTRAP_ADMIN_TOKEN set, it is adopted instead)"
                    )));
                }

                Registration::IatRejected(why) if cfg.admin_token.is_some() && !reminted => {
                    tracing::warn!("the IdP rejected the IAT ({why}); minting a fresh one");
                    iat = self.mint().await?;
                    minted = true;
                    reminted = true;
                }
                Registration::IatRejected(why) => {
                    return Err(Error::Rejected(if minted {
                        format!(
                            "the IdP rejected a freshly minted IAT ({why}); check that IATs from {} are accepted at {}",
                            cfg.iat_endpoint, cfg.registration_endpoint
                        )
                    } else {
                        format!(
                            "DCR_IAT was rejected by the IdP ({why}): it is expired, used up or unknown. \
                             Mint a fresh IAT, or set BOOTSTRAP_ADMIN_TOKEN so this tool mints one"
                        )
                    }));
                }
            }
        }
    }

    /// RFC 7591 §3.2.1: the server may change what we asked for. Say so when it matters.
    fn check_readback(&self, asked: &Map<String, Value>, got: &Map<String, Value>) {
        for f in [
            "token_endpoint_auth_method",
            "grant_types",
            "scope",
            "redirect_uris",
        ] {
            if let (Some(a), Some(g)) = (asked.get(f), got.get(f))
                && a != g
            {
                tracing::warn!("the IdP registered {f} = {g} although {a} was requested");
            }
        }
    }

    /// Writes, in crash-safe order: the new private key first (so a stored registration never
    /// points at a key that was lost), then the registration, then the dotenv view of it.
    fn write_outputs(
        &self,
        doc: &mut Map<String, Value>,
        action: Action,
        key: Option<&SigningKey>,
    ) -> Result<()> {
        let cfg = self.cfg;
        let out = &cfg.output;
        if let Some(k) = key
            && let Some(pem) = &k.new_pem
        {
            store::ensure_parent_dir(&k.path)?;
            store::write_atomic(&k.path, pem.expose_secret().as_bytes(), 0o600, out.owner)?;
            tracing::info!(
                "wrote the new signing key to {} (kid {})",
                k.path.display(),
                k.kid
            );
        }
        let previous_key = doc
            .get("dcr_bootstrap")
            .and_then(|m| m.get("signing_key"))
            .cloned();
        let mut meta = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "profile": cfg.profile.name(),
            "idp_base_url": cfg.idp_base_url.as_str(),
            "registration_endpoint": cfg.registration_endpoint.as_str(),
            "written_at": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            "action": action.as_str(),
        });
        match (key, previous_key) {
            (Some(k), _) => {
                meta["signing_key"] = json!({"path": k.path, "kid": k.kid, "alg": k.alg})
            }
            (None, Some(prev)) => meta["signing_key"] = prev,
            (None, None) => {}
        }
        doc.insert("dcr_bootstrap".into(), meta);
        let mut bytes = serde_json::to_vec_pretty(&Value::Object(doc.clone()))
            .map_err(|e| Error::Io(format!("cannot encode the registration: {e}")))?;
        bytes.push(b'\n');
        store::write_atomic(&out.path, &bytes, out.mode, out.owner)?;
        if let Some(env) = &out.env_path {
            let stored = Stored { doc: doc.clone() };
            store::ensure_parent_dir(env)?;
            store::write_atomic(
                env,
                store::dotenv(stored.client_id(), stored.client_secret()).as_bytes(),
                out.mode,
                out.owner,
            )?;
        }
        Ok(())
    }

    fn write_env_if_missing(&self, stored: &Stored) -> Result<()> {
        let out = &self.cfg.output;
        if let Some(env) = &out.env_path
            && !env.exists()
        {
            store::ensure_parent_dir(env)?;
            store::write_atomic(
                env,
                store::dotenv(stored.client_id(), stored.client_secret()).as_bytes(),
                out.mode,
                out.owner,
            )?;
        }
        Ok(())
    }
}

fn jwks_has_kid(doc: &Map<String, Value>, kid: &str) -> bool {
    doc.get("jwks")
        .and_then(|j| j.get("keys"))
        .and_then(Value::as_array)
        .is_some_and(|keys| {
            keys.iter()
                .any(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
        })
}
