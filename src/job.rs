//! The job: under the output lock, decide from what is stored whether to register, adopt,
//! verify or replace; correct drift (RFC 7592 PATCH or PUT); rotate signing keys; persist.

use crate::config::{
    AdminAuth, Config, ExistingPolicy, RegistrationToken, StalePolicy, UpdateMethod,
    check_transport,
};
use crate::error::{Error, Result};
use crate::http::Http;
use crate::idp::{Admin, Idp, Minted, ReadResult, Registration, UpdateResult};
use crate::keyring::{KeyRecord, KeyRing, Plan};
use crate::reconcile;
use crate::retry::{Attempts, Policy};
use crate::secret::secret;
use crate::store::{self, Stored};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A new client was registered.
    Registered,
    /// The stored client was confirmed at the IdP (RFC 7592 read) and needed no change.
    Verified,
    /// The stored client has no registration access token, so it was kept unchecked.
    Trusted,
    /// The stored client was gone or force-replaced, and a new one was registered.
    Reregistered,
    /// `DCR_CLIENT_ID` already existed at the IdP and was taken over through the admin API.
    Adopted,
    /// Drift was corrected with an RFC 7592 update.
    Updated,
    /// A new signing key was published (and the client updated).
    Rotated,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Registered => "registered",
            Action::Verified => "verified",
            Action::Trusted => "trusted",
            Action::Reregistered => "re-registered",
            Action::Adopted => "adopted",
            Action::Updated => "updated",
            Action::Rotated => "rotated",
        }
    }

    /// The `status` label of the pushed metric.
    pub fn metric_status(self) -> &'static str {
        match self {
            Action::Registered | Action::Reregistered => "registered",
            Action::Verified | Action::Trusted | Action::Adopted => "verified",
            Action::Updated => "updated",
            Action::Rotated => "rotated",
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

pub fn retry_policy(cfg: &Config, start: Instant) -> Policy {
    let t = &cfg.timing;
    Policy {
        start,
        deadline: start + t.deadline,
        request_timeout: t.request_timeout,
        probe_interval: t.probe_interval,
        backoff_initial: t.backoff_initial,
        backoff_max: t.backoff_max,
        retry_after_max: t.retry_after_max,
    }
}

/// The key records a previous run stored in the output.
pub fn stored_key_records(stored: Option<&Stored>) -> Vec<KeyRecord> {
    stored
        .and_then(|s| s.doc.get("dcr_bootstrap"))
        .and_then(|m| m.get("signing_keys"))
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

pub fn load_ring(
    cfg: &Config,
    stored: Option<&Stored>,
    now: SystemTime,
) -> Result<Option<KeyRing>> {
    cfg.signing_key
        .as_ref()
        .map(|k| {
            store::ensure_parent_dir(&k.path)?;
            KeyRing::load(
                &k.path,
                k.policy.clone(),
                &stored_key_records(stored),
                cfg.output.owner,
                now,
            )
        })
        .transpose()
}

pub async fn run(cfg: &Config) -> Result<Outcome> {
    let start = Instant::now();
    let policy = retry_policy(cfg, start);
    let attempts = Attempts::default();
    let http = Http::new(cfg.ca_file.as_deref(), cfg.timing.request_timeout)?;
    let job = Job::new(
        cfg,
        Idp {
            http: &http,
            policy: &policy,
            attempts: &attempts,
            allow_insecure_http: cfg.allow_insecure_http,
        },
    );
    if !cfg.timing.start_jitter.is_zero() {
        // Spreads the first requests of a fleet that starts at once (DCR_START_JITTER).
        let wait = cfg.timing.start_jitter.mul_f64(fastrand::f64());
        tracing::debug!(
            "waiting {} before the first request (DCR_START_JITTER)",
            crate::duration::show(wait)
        );
        tokio::time::sleep(wait).await;
    }
    let out = &cfg.output.path;
    store::ensure_parent_dir(out)?;
    let _lock = store::lock(out, &policy).await?;
    for f in cfg.written_files() {
        store::sweep_temp_files(&f);
    }

    let stored = store::load(out)?;
    let mut ring = load_ring(cfg, stored.as_ref(), job.now)?;
    let (action, client_id) = match stored {
        None => job.register_flow(Action::Registered, ring.as_mut()).await?,
        Some(stored) if cfg.force_replace => {
            tracing::warn!(
                "DCR_FORCE_REPLACE=true: deleting client {} and registering a new one; this happens on every start while it stays on",
                stored.client_id()
            );
            job.delete_stored(&stored).await?;
            job.register_flow(Action::Reregistered, ring.as_mut())
                .await?
        }
        Some(stored) => job.existing_flow(&stored, ring.as_mut()).await?,
    };
    Ok(Outcome {
        action,
        client_id,
        attempts: attempts.get(),
        elapsed: start.elapsed(),
    })
}

pub struct Job<'a> {
    pub cfg: &'a Config,
    pub idp: Idp<'a>,
    pub now: SystemTime,
    /// A client-credentials admin token and when to fetch a new one.
    admin_cache: RefCell<Option<(SecretString, Option<Instant>)>>,
    /// Endpoints found by discovery: (registration, token).
    discovered: RefCell<Option<(Option<Url>, Option<Url>)>>,
}

/// The token a registration is authorised with, and where it came from.
struct IatState {
    /// `None`: open registration.
    token: Option<SecretString>,
    minted: bool,
    reminted: bool,
    /// A minted IAT's id, for revoking it after use (Keycloak).
    id: Option<String>,
}

impl IatState {
    fn given(token: Option<SecretString>) -> IatState {
        IatState {
            token,
            minted: false,
            reminted: false,
            id: None,
        }
    }

    fn minted(token: SecretString, id: Option<String>) -> IatState {
        IatState {
            token: Some(token),
            minted: true,
            reminted: false,
            id,
        }
    }
}

/// The registration document plus the credentials to manage it.
struct Managed {
    doc: Map<String, Value>,
    rat: SecretString,
    uri: Url,
}

fn client_id_of(doc: &Map<String, Value>) -> String {
    doc.get("client_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl<'a> Job<'a> {
    pub fn new(cfg: &'a Config, idp: Idp<'a>) -> Job<'a> {
        Job {
            cfg,
            idp,
            now: SystemTime::now(),
            admin_cache: RefCell::new(None),
            discovered: RefCell::new(None),
        }
    }

    /// The management URL of a stored client: the one the IdP handed back (rewritten from its
    /// public base when configured), else the profile's layout.
    pub async fn client_uri(&self, stored: &Stored) -> Result<Url> {
        match stored.client_uri() {
            Some(raw) => Url::parse(raw).map(|u| self.cfg.rewrite(&u)).map_err(|_| {
                Error::Io(format!(
                    "DCR_OUTPUT {}: registration_client_uri {raw:?} is not a URL",
                    self.cfg.output.path.display()
                ))
            }),
            None => self.management_uri(stored.client_id()).await,
        }
    }

    /// Where a client is managed when the IdP did not say: the profile's template, or
    /// `{registration endpoint}/{client_id}`.
    async fn management_uri(&self, client_id: &str) -> Result<Url> {
        let template = match &self.cfg.endpoints.client_uri {
            Some(t) => t.clone(),
            None => format!(
                "{}/{{client_id}}",
                self.registration_endpoint()
                    .await?
                    .as_str()
                    .trim_end_matches('/')
            ),
        };
        self.cfg.endpoint_for(&template, "IDP_BASE_URL", client_id)
    }

    /// Discovery, once per run: (registration_endpoint, token_endpoint).
    async fn discovery(&self) -> Result<(Option<Url>, Option<Url>)> {
        if let Some(d) = self.discovered.borrow().clone() {
            return Ok(d);
        }
        let cfg = self.cfg;
        let urls = crate::profile::discovery_urls(&cfg.endpoints.issuer);
        let d = self.idp.discover(&urls).await?;
        let fix = |u: Option<Url>, what: &str| -> Result<Option<Url>> {
            match u {
                Some(u) => {
                    let u = cfg.rewrite(&u);
                    check_transport(
                        &format!("the discovered {what}"),
                        &u,
                        cfg.allow_insecure_http,
                    )?;
                    Ok(Some(u))
                }
                None => Ok(None),
            }
        };
        let found = (
            fix(d.registration, "registration_endpoint")?,
            fix(d.token, "token_endpoint")?,
        );
        tracing::info!(
            "discovery at {}: registration_endpoint {}, token_endpoint {}",
            d.source,
            found.0.as_ref().map(Url::as_str).unwrap_or("(none)"),
            found.1.as_ref().map(Url::as_str).unwrap_or("(none)")
        );
        *self.discovered.borrow_mut() = Some(found.clone());
        Ok(found)
    }

    pub async fn registration_endpoint(&self) -> Result<Url> {
        if let Some(u) = &self.cfg.endpoints.registration {
            return Ok(u.clone());
        }
        self.discovery().await?.0.ok_or_else(|| {
            Error::Rejected(
                "the IdP's discovery document has no registration_endpoint: dynamic client registration is not enabled \
                 there (or lives elsewhere: set DCR_REGISTRATION_ENDPOINT)"
                    .into(),
            )
        })
    }

    async fn token_endpoint(&self) -> Result<Url> {
        if let Some(u) = &self.cfg.endpoints.token {
            return Ok(u.clone());
        }
        self.discovery().await?.1.ok_or_else(|| {
            Error::Rejected(
                "the IdP's discovery document has no token_endpoint: set DCR_TOKEN_ENDPOINT".into(),
            )
        })
    }

    /// How error messages name the admin credential.
    fn admin_name(&self) -> String {
        match &self.cfg.admin {
            Some(AdminAuth::ClientCredentials { client_id, .. }) => {
                format!("the admin token of DCR_ADMIN_CLIENT_ID={client_id}")
            }
            _ => "BOOTSTRAP_ADMIN_TOKEN".into(),
        }
    }

    /// The admin token: `BOOTSTRAP_ADMIN_TOKEN`, or one fetched by client credentials when
    /// first needed and again when it has expired.
    pub async fn admin_token(&self) -> Result<SecretString> {
        let cfg = self.cfg;
        match &cfg.admin {
            None => Err(Error::Config(
                "this needs an admin token: set BOOTSTRAP_ADMIN_TOKEN or DCR_ADMIN_CLIENT_ID/DCR_ADMIN_CLIENT_SECRET".into(),
            )),
            Some(AdminAuth::Static(t)) => Ok(t.clone()),
            Some(AdminAuth::ClientCredentials {
                client_id,
                secret,
                method,
                scope,
                resource,
            }) => {
                if let Some((t, until)) = self.admin_cache.borrow().as_ref()
                    && until.is_none_or(|u| Instant::now() < u)
                {
                    return Ok(t.clone());
                }
                let endpoint = self.token_endpoint().await?;
                let (token, ttl) = self
                    .idp
                    .client_credentials(&endpoint, client_id, secret, *method, scope.as_deref(), resource.as_deref())
                    .await?;
                // Fetch a new one a little before the IdP stops accepting it.
                let until = ttl.map(|d| Instant::now() + d.saturating_sub((d / 10).min(Duration::from_secs(30))));
                tracing::info!(
                    "obtained an admin token for {client_id} from {endpoint} by client credentials{}",
                    ttl.map(|d| format!(" (valid {}s)", d.as_secs())).unwrap_or_default()
                );
                *self.admin_cache.borrow_mut() = Some((token.clone(), until));
                Ok(token)
            }
        }
    }

    /// Drops a cached client-credentials token after the IdP refused it. True when a new one
    /// can be fetched (a static token cannot be replaced).
    fn forget_admin_token(&self) -> bool {
        matches!(self.cfg.admin, Some(AdminAuth::ClientCredentials { .. }))
            && self.admin_cache.borrow_mut().take().is_some()
    }

    /// What we want registered: the configured metadata plus the keys of the plan.
    fn desired(&self, plan: Option<&Plan>) -> Map<String, Value> {
        let mut m = self.cfg.metadata.fields.clone();
        if let (Some(k), Some(plan)) = (&self.cfg.signing_key, plan) {
            match &k.jwks_uri {
                Some(u) => m.insert("jwks_uri".into(), Value::String(u.to_string())),
                None => m.insert("jwks".into(), plan.jwks()),
            };
        }
        m
    }

    async fn existing_flow(
        &self,
        stored: &Stored,
        ring: Option<&mut KeyRing>,
    ) -> Result<(Action, String)> {
        let id = stored.client_id().to_string();
        let Some(rat) = stored.rat() else {
            tracing::warn!(
                "{} holds client {id} without a registration_access_token: keeping it without checking the IdP",
                self.cfg.output.path.display()
            );
            if ring.is_some() {
                tracing::warn!(
                    "without a registration access token the signing keys cannot be published or rotated"
                );
            }
            self.persist(stored.doc.clone(), Action::Trusted, None, stored)?;
            return Ok((Action::Trusted, id));
        };
        let uri = self.client_uri(stored).await?;
        match self.read_with_renewal(&id, &uri, rat, stored).await? {
            Some((current, rat)) => {
                let mut doc = stored.doc.clone();
                for (k, v) in &current {
                    doc.insert(k.clone(), v.clone());
                }
                let m = Managed { doc, rat, uri };
                self.reconcile(m, &current, ring, Action::Verified, stored)
                    .await
            }
            None => match self.cfg.on_stale {
                StalePolicy::Reregister => {
                    tracing::warn!(
                        "stored client {id} is gone at the IdP; DCR_ON_STALE=reregister: registering a new client"
                    );
                    self.register_flow(Action::Reregistered, ring).await
                }
                StalePolicy::Fail => Err(Error::Rejected(format!(
                    "the stored client {id} is gone at the IdP. Set DCR_ON_STALE=reregister to register a new one \
                     automatically, or DCR_FORCE_REPLACE=true for one run, or move {} away",
                    self.cfg.output.path.display()
                ))),
            },
        }
    }

    /// RFC 7592 read; on 401/403 a new registration access token from the admin API, once.
    /// `None`: the client is gone.
    async fn read_with_renewal(
        &self,
        id: &str,
        uri: &Url,
        rat: SecretString,
        stored: &Stored,
    ) -> Result<Option<(Map<String, Value>, SecretString)>> {
        let rat_of = |doc: &Map<String, Value>, fallback: &SecretString| {
            doc.get("registration_access_token")
                .and_then(Value::as_str)
                .map(|s| secret(s.to_string()))
                .unwrap_or_else(|| fallback.clone())
        };
        match self.idp.read(uri, &rat).await? {
            ReadResult::Current(doc) => {
                let rat = rat_of(&doc, &rat);
                Ok(Some((doc, rat)))
            }
            ReadResult::Gone(why) => {
                tracing::warn!("reading client {id} at {uri}: {why}");
                Ok(None)
            }
            ReadResult::Unauthorized(why) => {
                let Some(renewed) = self.renew_rat(id, &why).await? else {
                    return Ok(None);
                };
                // Persist the renewed token at once: the old one is dead.
                let mut doc = stored.doc.clone();
                doc.insert(
                    "registration_access_token".into(),
                    Value::String(renewed.expose_secret().to_string()),
                );
                self.save_doc(&doc)?;
                match self.idp.read(uri, &renewed).await? {
                    ReadResult::Current(doc) => {
                        let rat = rat_of(&doc, &renewed);
                        Ok(Some((doc, rat)))
                    }
                    ReadResult::Gone(_) => Ok(None),
                    ReadResult::Unauthorized(why) => Err(Error::Rejected(format!(
                        "reading client {id} failed even with a freshly re-issued registration access token ({why})"
                    ))),
                }
            }
        }
    }

    /// A new registration access token for `id` from the admin API (`DCR_RAT_ENDPOINT`).
    /// `None` when the admin API says the client does not exist; an error naming the admin
    /// action when no admin token or endpoint is available.
    async fn renew_rat(&self, id: &str, why: &str) -> Result<Option<SecretString>> {
        let cfg = self.cfg;
        let (true, Some(template)) = (cfg.admin.is_some(), &cfg.endpoints.rat) else {
            if cfg.on_stale == StalePolicy::Reregister {
                tracing::warn!(
                    "the stored registration access token for {id} was rejected ({why})"
                );
                return Ok(None);
            }
            let how = match &cfg.endpoints.rat {
                Some(t) => format!(
                    "re-issue a registration access token (POST {}) and store it as registration_access_token in {}, \
                     or set BOOTSTRAP_ADMIN_TOKEN so this tool does it",
                    t.replace("{client_id}", id),
                    cfg.output.path.display()
                ),
                None => format!(
                    "re-issue a registration access token in the IdP's admin console (Keycloak: the client's \
                     Credentials tab) and store it as registration_access_token in {}, or set DCR_RAT_ENDPOINT",
                    cfg.output.path.display()
                ),
            };
            return Err(Error::Rejected(format!(
                "the IdP rejected the stored registration access token for client {id} ({why}): the client is gone or the token \
                 was revoked. Admin action: {how}; or set DCR_ON_STALE=reregister to register a new client"
            )));
        };
        tracing::warn!(
            "the registration access token for {id} was rejected ({why}); re-issuing it with the admin token"
        );
        let url = cfg.endpoint_for(template, "DCR_RAT_ENDPOINT", id)?;
        self.reissue(&url).await
    }

    /// One RAT re-issue; `None` when the admin API does not know the client.
    async fn reissue(&self, url: &Url) -> Result<Option<SecretString>> {
        self.as_admin(url, |admin| async move {
            self.idp.reissue_rat(url, &admin).await
        })
        .await
    }

    /// Runs an admin-API call. When the IdP refuses a client-credentials admin token (it
    /// expired during a long wait, or was revoked), a new one is fetched and the call made
    /// once more; a refused static token is final.
    async fn as_admin<T, F, Fut>(&self, url: &Url, call: F) -> Result<T>
    where
        F: Fn(SecretString) -> Fut,
        Fut: std::future::Future<Output = Result<Admin<T>>>,
    {
        let mut why = String::new();
        for first in [true, false] {
            match call(self.admin_token().await?).await? {
                Admin::Done(v) => return Ok(v),
                Admin::Refused(w) if first && self.forget_admin_token() => {
                    tracing::warn!("the admin token was refused ({w}); fetching a new one");
                }
                Admin::Refused(w) => {
                    why = w;
                    break;
                }
            }
        }
        Err(Error::Rejected(format!(
            "{} was rejected at {url} ({why}): supply a valid, unexpired admin access token",
            self.admin_name()
        )))
    }

    /// Brings the IdP's client in line with what we want and persists the result.
    async fn reconcile(
        &self,
        mut m: Managed,
        current: &Map<String, Value>,
        mut ring: Option<&mut KeyRing>,
        base: Action,
        stored: &Stored,
    ) -> Result<(Action, String)> {
        let cfg = self.cfg;
        let id = client_id_of(&m.doc);
        // The IdP may have rotated the token on this read: save it before anything else.
        if stored.rat().map(|r| r.expose_secret().to_string())
            != Some(m.rat.expose_secret().to_string())
        {
            m.doc.insert(
                "registration_access_token".into(),
                Value::String(m.rat.expose_secret().to_string()),
            );
            tracing::info!("the IdP rotated the registration access token; saving it");
            self.save_doc(&m.doc)?;
        }
        let inline_keys = cfg
            .signing_key
            .as_ref()
            .is_some_and(|k| k.jwks_uri.is_none());
        let idp_keys: Option<Vec<Value>> = inline_keys.then(|| {
            current
                .get("jwks")
                .and_then(|j| j.get("keys"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        });
        let plan = match ring.as_deref_mut() {
            Some(r) => Some(r.plan(self.now, idp_keys.as_deref())?),
            None => None,
        };
        let desired = self.desired(plan.as_ref());
        let changes = reconcile::diff(&desired, current, cfg.redirect_mode);
        let mut action = base;
        if !changes.is_empty() {
            let fields: Vec<&str> = changes.keys().map(String::as_str).collect();
            let (verb, body) = match cfg.update_method {
                UpdateMethod::Patch => ("PATCH", changes.clone()),
                UpdateMethod::Put => {
                    let secret = m.doc.get("client_secret").and_then(Value::as_str);
                    ("PUT", reconcile::put_body(current, &changes, &id, secret))
                }
            };
            tracing::info!(
                "client {id} differs at the IdP in {}; updating with {verb}",
                fields.join(", ")
            );
            let updated = self.update_with_renewal(&id, &mut m, verb, &body).await?;
            for (k, v) in &updated {
                m.doc.insert(k.clone(), v.clone());
            }
            for (k, v) in &changes {
                if v.is_null() {
                    m.doc.remove(k);
                } else if !updated.contains_key(k) {
                    m.doc.insert(k.clone(), v.clone());
                }
            }
            // A rotated token in the answer: saved before the keys move.
            self.save_doc(&m.doc)?;
            self.check_readback(&desired, &m.doc)?;
            if base != Action::Adopted {
                action = Action::Updated;
            }
        }
        if plan.as_ref().is_some_and(|p| p.rotated || p.repaired) && base != Action::Adopted {
            action = Action::Rotated;
        }
        let keys = ring.as_deref().zip(plan.as_ref());
        self.persist(m.doc, action, keys, stored)?;
        Ok((action, id))
    }

    /// PATCH or PUT; on 401/403 a re-issued registration access token, once.
    async fn update_with_renewal(
        &self,
        id: &str,
        m: &mut Managed,
        verb: &str,
        body: &Map<String, Value>,
    ) -> Result<Map<String, Value>> {
        match self.idp.update(&m.uri, &m.rat, verb, body).await? {
            UpdateResult::Updated(doc) => Ok(doc),
            UpdateResult::Unauthorized(why) => {
                let Some(renewed) = self.renew_rat(id, &why).await? else {
                    return Err(Error::Rejected(format!(
                        "updating client {id} was refused ({why}) and the admin API does not know the client"
                    )));
                };
                m.rat = renewed;
                m.doc.insert(
                    "registration_access_token".into(),
                    Value::String(m.rat.expose_secret().to_string()),
                );
                self.save_doc(&m.doc)?;
                match self.idp.update(&m.uri, &m.rat, verb, body).await? {
                    UpdateResult::Updated(doc) => Ok(doc),
                    UpdateResult::Unauthorized(why) => Err(Error::Rejected(format!(
                        "updating client {id} was refused even with a freshly re-issued registration access token ({why})"
                    ))),
                }
            }
        }
    }

    pub async fn delete_stored(&self, stored: &Stored) -> Result<()> {
        let id = stored.client_id().to_string();
        let Some(rat) = stored.rat() else {
            tracing::warn!(
                "cannot delete client {id} at the IdP: no registration_access_token stored; delete it there by hand"
            );
            return Ok(());
        };
        let uri = self.client_uri(stored).await?;
        if self.idp.delete(&uri, &rat).await? {
            return Ok(());
        }
        // 401/403: the token may have been revoked while the client lives on.
        match self.renew_rat(&id, "delete refused").await {
            Ok(Some(renewed)) => {
                self.idp.delete(&uri, &renewed).await?;
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => {
                tracing::warn!("client {id} may still exist at the IdP: {e}");
                Ok(())
            }
        }
    }

    async fn register_flow(
        &self,
        action: Action,
        mut ring: Option<&mut KeyRing>,
    ) -> Result<(Action, String)> {
        let cfg = self.cfg;
        if cfg.iat.is_none() && cfg.admin.is_none() {
            return Err(Error::Config(format!(
                "registering a client needs DCR_IAT (an Initial Access Token) or BOOTSTRAP_ADMIN_TOKEN (to mint one); \
                 neither is set and {} holds no usable registration (DCR_IAT=none registers without a token)",
                cfg.output.path.display()
            )));
        }
        let plan = match ring.as_deref_mut() {
            Some(r) => Some(r.plan(self.now, None)?),
            None => None,
        };
        let metadata = self.desired(plan.as_ref());
        let (doc, adopted) = self.register(&metadata).await?;
        let empty = Stored { doc: Map::new() };
        if adopted {
            let rat = doc
                .get("registration_access_token")
                .and_then(Value::as_str)
                .map(|s| secret(s.to_string()))
                .ok_or_else(|| {
                    Error::Rejected(
                        "the adopted client came without a registration access token".into(),
                    )
                })?;
            let uri = self.client_uri(&Stored { doc: doc.clone() }).await?;
            let current = doc.clone();
            // Adopted with our own registration access token: make it ours before anything else.
            let adopted_stored = Stored { doc: doc.clone() };
            self.save_doc(&doc)?;
            let m = Managed { doc, rat, uri };
            return self
                .reconcile(m, &current, ring, Action::Adopted, &adopted_stored)
                .await;
        }
        self.check_readback(&metadata, &doc)?;
        let id = client_id_of(&doc);
        let keys = ring.as_deref().zip(plan.as_ref());
        self.persist(doc, action, keys, &empty)?;
        Ok((action, id))
    }

    /// Mints an IAT with the admin token; a refused client-credentials token is fetched
    /// anew once. Returns the IAT and its id (Keycloak revokes by id).
    async fn mint(&self) -> Result<(SecretString, Option<String>)> {
        let cfg = self.cfg;
        let endpoint = cfg.endpoints.iat.clone().ok_or_else(|| {
            Error::Config(format!(
                "DCR_PROFILE={} has no IAT endpoint: set DCR_IAT_ENDPOINT, or DCR_IAT",
                cfg.profile.name()
            ))
        })?;
        let Minted { token, id } = self
            .as_admin(&endpoint, |admin| {
                let endpoint = &endpoint;
                async move {
                    self.idp
                        .mint_iat(endpoint, &admin, &cfg.mint, cfg.endpoints.mint_style)
                        .await
                }
            })
            .await?;
        tracing::info!(
            "minted an IAT at {endpoint} (expires in {}s, {} use(s))",
            cfg.mint.expires_in,
            cfg.mint.max_uses
        );
        Ok((token, id))
    }

    /// Revokes a used IAT where the IdP supports it (Keycloak); a failure only warns.
    async fn revoke_iat(&self, id: &str) {
        let Some(template) = &self.cfg.endpoints.iat_revoke else {
            return;
        };
        let outcome = async {
            let url = self.cfg.endpoint_for(
                &template.replace("{id}", "{client_id}"),
                "DCR_IAT_ENDPOINT",
                id,
            )?;
            let admin = self.admin_token().await?;
            Ok::<_, Error>((url.clone(), self.idp.revoke_iat(&url, &admin).await?))
        }
        .await;
        match outcome {
            Ok((url, None)) => tracing::info!("revoked the used IAT at {url}"),
            Ok((url, Some(why))) => tracing::warn!(
                "could not revoke the used IAT at {url} ({why}); it expires on its own"
            ),
            Err(e) => tracing::warn!("could not revoke the used IAT ({e}); it expires on its own"),
        }
    }

    /// `mint-iat`: one IAT, nothing else.
    pub async fn mint_only(&self) -> Result<SecretString> {
        Ok(self.mint().await?.0)
    }

    /// Registers, minting an IAT first when none was given, and once more if the IdP rejects
    /// an IAT we minted. Returns the registration and whether an existing client was adopted.
    async fn register(&self, metadata: &Map<String, Value>) -> Result<(Map<String, Value>, bool)> {
        let cfg = self.cfg;
        let endpoint = self.registration_endpoint().await?;
        let mut token = match &cfg.iat {
            Some(RegistrationToken::Given(t)) => IatState::given(Some(t.clone())),
            Some(RegistrationToken::Open) => IatState::given(None),
            None => {
                let (t, id) = self.mint().await?;
                IatState::minted(t, id)
            }
        };
        let outcome = self.register_with(metadata, &endpoint, &mut token).await;
        // A minted IAT has done its job (or failed at it): revoke it where the IdP allows.
        if let Some(id) = &token.id {
            self.revoke_iat(id).await;
        }
        outcome
    }

    async fn register_with(
        &self,
        metadata: &Map<String, Value>,
        endpoint: &Url,
        t: &mut IatState,
    ) -> Result<(Map<String, Value>, bool)> {
        let cfg = self.cfg;
        let maybe_committed = Cell::new(false);
        let open = t.token.is_none();
        let can_mint = cfg.admin.is_some() && cfg.endpoints.iat.is_some();
        let fixed_id = metadata.get("client_id").and_then(Value::as_str);
        let name = fixed_id
            .or_else(|| metadata.get("client_name").and_then(Value::as_str))
            .unwrap_or("(unnamed)")
            .to_string();
        loop {
            // A re-sent registration cannot duplicate the client when the IdP would refuse
            // the second one: a single-use IAT is spent by the first, and a fixed client_id
            // is taken by it.
            let blind_retry_safe = fixed_id.is_some() || (t.minted && cfg.mint.max_uses == 1);
            let result = self
                .idp
                .register(
                    endpoint,
                    t.token.as_ref(),
                    metadata,
                    blind_retry_safe,
                    &maybe_committed,
                )
                .await?;
            match result {
                Registration::Created(doc) => return Ok((doc, false)),
                Registration::AlreadyExists(why) => {
                    let Some(id) = fixed_id else {
                        return Err(Error::Rejected(format!("registration rejected ({why})")));
                    };
                    return Ok((self.adopt(id, &why).await?, true));
                }
                Registration::IatRejected(why) if open => {
                    return Err(Error::Rejected(format!(
                        "the IdP requires a token to register ({why}); DCR_IAT=none means open registration. \
                         Set DCR_IAT, or an admin token so this tool mints one"
                    )));
                }
                Registration::IatRejected(why)
                    if maybe_committed.get()
                        && fixed_id.is_some()
                        && cfg.admin.is_some()
                        && cfg.on_existing == ExistingPolicy::Adopt =>
                {
                    // Our own earlier attempt most likely created the client and spent the IAT.
                    let why = format!("an earlier attempt got no answer, then {why}");
                    return Ok((self.adopt(fixed_id.unwrap_or_default(), &why).await?, true));
                }
                Registration::IatRejected(why) if maybe_committed.get() => {
                    return Err(Error::Rejected(format!(
                        "the IAT was rejected ({why}) after an earlier registration attempt got no answer: \
                         that attempt most likely created the client and spent the IAT. Look for an orphaned client {name:?} \
                         at the IdP, delete it, and run again (with DCR_CLIENT_ID and an admin token set, it is adopted instead)"
                    )));
                }
                Registration::IatRejected(why) if can_mint && !t.reminted => {
                    tracing::warn!("the IdP rejected the IAT ({why}); minting a fresh one");
                    let (token, id) = self.mint().await?;
                    if let Some(old) =
                        t.id.replace(id.unwrap_or_default())
                            .filter(|o| !o.is_empty())
                    {
                        self.revoke_iat(&old).await;
                    }
                    t.token = Some(token);
                    t.minted = true;
                    t.reminted = true;
                }
                Registration::IatRejected(why) => {
                    return Err(Error::Rejected(if t.minted {
                        format!(
                            "the IdP rejected a freshly minted IAT ({why}); check that IATs from {} are accepted at {endpoint}",
                            cfg.endpoints
                                .iat
                                .as_ref()
                                .map(Url::as_str)
                                .unwrap_or("the IAT endpoint")
                        )
                    } else {
                        format!(
                            "DCR_IAT was rejected by the IdP ({why}): it is expired, used up or unknown. \
                             Mint a fresh IAT, or set an admin token so this tool mints one"
                        )
                    }));
                }
            }
        }
    }

    /// Takes over `client_id`, which exists at the IdP but not in our output: a new
    /// registration access token from the admin API, then an RFC 7592 read.
    async fn adopt(&self, client_id: &str, why: &str) -> Result<Map<String, Value>> {
        let cfg = self.cfg;
        let template = match (&cfg.endpoints.rat, cfg.admin.is_some(), cfg.on_existing) {
            (Some(t), true, ExistingPolicy::Adopt) => t,
            _ => {
                return Err(Error::Rejected(format!(
                    "client_id {client_id:?} already exists at the IdP ({why}) and this run holds no registration for it. \
                     Set an admin token and DCR_RAT_ENDPOINT (with DCR_ON_EXISTING=adopt) to take it over, restore {}, \
                     or delete the client at the IdP",
                    cfg.output.path.display()
                )));
            }
        };
        let rat_url = cfg.endpoint_for(template, "DCR_RAT_ENDPOINT", client_id)?;
        let Some(rat) = self.reissue(&rat_url).await? else {
            return Err(Error::Rejected(format!(
                "client_id {client_id:?} was reported as existing ({why}) but the admin API does not know it ({rat_url} answered 404)"
            )));
        };
        let uri = self.management_uri(client_id).await?;
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
            ReadResult::Gone(gone) | ReadResult::Unauthorized(gone) => {
                Err(Error::Rejected(format!(
                    "adopting client {client_id:?}: reading it with a fresh registration access token failed ({gone})"
                )))
            }
        }
    }

    /// RFC 7591 §3.2.1: the server may change what we asked for. Warn, or fail when strict.
    fn check_readback(&self, asked: &Map<String, Value>, got: &Map<String, Value>) -> Result<()> {
        let diffs = reconcile::readback_differences(asked, got);
        if diffs.is_empty() {
            return Ok(());
        }
        let msg = format!(
            "the IdP registered something else than asked: {}",
            diffs.join("; ")
        );
        if self.cfg.strict_readback {
            return Err(Error::Rejected(format!("{msg} (DCR_STRICT_READBACK=true)")));
        }
        tracing::warn!("{msg}");
        Ok(())
    }

    /// Writes the registration document as it is (used to save a rotated registration
    /// access token before anything else happens).
    fn save_doc(&self, doc: &Map<String, Value>) -> Result<()> {
        let out = &self.cfg.output;
        let mut bytes = serde_json::to_vec_pretty(&Value::Object(doc.clone()))
            .map_err(|e| Error::Io(format!("cannot encode the registration: {e}")))?;
        bytes.push(b'\n');
        store::write_atomic(&out.path, &bytes, out.mode, out.owner)
    }

    /// Writes everything, in crash-safe order: the registration (with the key records as
    /// they will be), then the key files (the pending key becomes current), then the public
    /// JWKS and the dotenv views. Files whose content would not change are left alone.
    fn persist(
        &self,
        mut doc: Map<String, Value>,
        action: Action,
        keys: Option<(&KeyRing, &Plan)>,
        stored: &Stored,
    ) -> Result<()> {
        let cfg = self.cfg;
        let plan = keys.map(|(_, p)| p);
        let records: Vec<KeyRecord> = match plan {
            Some(p) => p.publish.clone(),
            None => stored_key_records(Some(stored)),
        };
        let mut meta = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "profile": cfg.profile.name(),
            "idp_base_url": cfg.idp_base_url.as_str(),
            "registration_endpoint": cfg
                .endpoints
                .registration
                .clone()
                .or_else(|| self.discovered.borrow().as_ref().and_then(|d| d.0.clone()))
                .map(|u| u.to_string()),
            "written_at": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            "action": action.as_str(),
        });
        if let Some(current) = records.first() {
            meta["signing_key"] =
                json!({"path": current.pem, "kid": current.kid, "alg": current.alg});
            meta["signing_keys"] = serde_json::to_value(&records).unwrap_or_default();
        }
        doc.insert("dcr_bootstrap".into(), meta);
        if differs_beyond_timestamps(&doc, &stored.doc) {
            self.save_doc(&doc)?;
        }
        if let Some((ring, p)) = keys {
            ring.commit(p)?;
            if let Some(path) = &cfg.jwks_output {
                let mut jwks = serde_json::to_vec_pretty(&p.jwks()).unwrap_or_default();
                jwks.push(b'\n');
                write_if_changed(path, &jwks, 0o644, cfg.output.owner)?;
            }
        }
        if let Some(env) = &cfg.output.env_path {
            let stored_view = Stored { doc: doc.clone() };
            let mut text = store::dotenv(stored_view.client_id(), stored_view.client_secret());
            if let Some(current) = records.first() {
                text.push_str(&format!("BFF_KID={}\n", current.kid));
                if let Some(path) = &current.pem {
                    text.push_str(&format!("BFF_JWT_SIGNING_KEY={}\n", path.display()));
                }
            }
            write_if_changed(env, text.as_bytes(), cfg.output.mode, cfg.output.owner)?;
        }
        Ok(())
    }
}

/// Whether two registration documents differ in anything but when and why they were written.
fn differs_beyond_timestamps(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    let strip = |m: &Map<String, Value>| {
        let mut m = m.clone();
        if let Some(Value::Object(meta)) = m.get_mut("dcr_bootstrap") {
            meta.remove("written_at");
            meta.remove("action");
        }
        m
    };
    strip(a) != strip(b)
}

fn write_if_changed(
    path: &std::path::Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    store::ensure_parent_dir(path)?;
    store::write_atomic(path, bytes, mode, owner)
}
