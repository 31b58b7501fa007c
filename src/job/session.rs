//! What one run shares across its steps: the configuration, the IdP connection (HTTP, retry
//! policy, attempt count), and what is learnt once and then reused (discovered endpoints, a
//! client-credentials admin token). Every command builds exactly one.

use crate::config::{AdminAuth, Config};
use crate::error::{Error, Result};
use crate::idp::Idp;
use crate::idp::admin::Admin;
use crate::idp::discovery::discovery_urls;
use crate::idp::http::Http;
use crate::idp::keycloak::{self, Version as KeycloakVersion};
use crate::idp::profile::Profile;
use crate::idp::retry::Policy;
use crate::local::keys::KeyAlg;
use crate::reconcile::Dialect;
use crate::record::ClientRecord;
use crate::url::check_transport;
use reqwest::Url;
use secrecy::SecretString;
use serde_json::{Map, Value};
use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant, SystemTime};

/// What discovery found.
#[derive(Clone, Default)]
struct Discovered {
    registration: Option<Url>,
    /// The token endpoint to send requests to (rewritten) and as the IdP names it.
    token: Option<(Url, Url)>,
    signing_algs: Option<Vec<String>>,
    auth_methods: Option<Vec<String>>,
}

pub struct Session<'a> {
    pub cfg: &'a Config,
    pub idp: Idp,
    /// The run's notion of "now" for key ages, fixed at the start.
    pub now: SystemTime,
    /// A client-credentials admin token and when to fetch a new one.
    admin_cache: RefCell<Option<(SecretString, Option<Instant>)>>,
    discovered: RefCell<Option<Discovered>>,
    /// Keycloak's version, once asked (`None` inside: not known).
    keycloak_version: RefCell<Option<Option<KeycloakVersion>>>,
    /// The Keycloak scope plan was logged.
    scope_plan_said: Cell<bool>,
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

impl<'a> Session<'a> {
    /// A session whose deadline (`DCR_TIMEOUT`) starts now.
    pub fn new(cfg: &'a Config) -> Result<Session<'a>> {
        let t = &cfg.target;
        let http = Http::new(
            t.ca_file.as_deref(),
            cfg.timing.request_timeout,
            t.allow_cleartext_proxy,
        )?;
        let policy = retry_policy(cfg, Instant::now());
        let mut idp = Idp::new(http, policy, t.allow_insecure_http);
        if t.profile == Profile::Keycloak {
            idp.update_500_hint = Some(keycloak::UPDATE_500_HINT);
        }
        // The IdP's origins: its base URL and every endpoint configured explicitly.
        let e = &t.endpoints;
        for u in [Some(&t.idp_base_url), Some(&e.issuer)]
            .into_iter()
            .chain([&e.iat, &e.registration, &e.token].map(Option::as_ref))
            .flatten()
        {
            idp.allow_origin(u);
        }
        for template in [&e.rat, &e.client_uri, &e.iat_revoke].into_iter().flatten() {
            if let Some(u) = crate::url::fill(template, "{client_id}", "x")
                .or_else(|| crate::url::fill(template, "{id}", "x"))
            {
                idp.allow_origin(&u);
            }
        }
        Ok(Session {
            cfg,
            idp,
            now: SystemTime::now(),
            admin_cache: RefCell::new(None),
            discovered: RefCell::new(None),
            keycloak_version: RefCell::new(None),
            scope_plan_said: Cell::new(false),
        })
    }

    /// What the IdP is known to normalise in its answers.
    pub fn dialect(&self) -> Dialect {
        match self.cfg.profile() {
            Profile::Keycloak => Dialect::Keycloak,
            _ => Dialect::Standard,
        }
    }

    /// Keycloak's version: `DCR_KEYCLOAK_VERSION`, else what `/admin/serverinfo` says to the
    /// admin token, asked once and only when something depends on it. `None`: not known.
    pub async fn keycloak_version(&self) -> Option<KeycloakVersion> {
        if let Some(v) = self.cfg.target.keycloak_version {
            return Some(v);
        }
        if let Some(known) = *self.keycloak_version.borrow() {
            return known;
        }
        let api = self.cfg.endpoints().keycloak.as_ref();
        let found = match (api, &self.cfg.credentials.admin) {
            (Some(api), Some(_)) => match self.admin_token().await {
                Ok(admin) => self.idp.keycloak_version(api, &admin).await,
                Err(e) => {
                    tracing::info!(
                        "Keycloak's version is not known ({e}); set DCR_KEYCLOAK_VERSION"
                    );
                    None
                }
            },
            _ => None,
        };
        if let Some(v) = found {
            tracing::info!(
                "Keycloak {v} (from {})",
                api.map(|a| a.serverinfo.as_str()).unwrap_or("")
            );
        }
        *self.keycloak_version.borrow_mut() = Some(found);
        found
    }

    /// The configured metadata as this IdP reads it. At Keycloak `scope` names optional
    /// client scopes: `openid` and the default scopes are never sent, and before 26.8 (or
    /// when the version is unknown) nothing is, since sending any scope there strips the
    /// client's default scopes ([`keycloak::scope_plan`]).
    pub async fn configured_metadata(&self) -> Map<String, Value> {
        let mut m = self.cfg.metadata.fields.clone();
        if self.cfg.profile() != Profile::Keycloak {
            return m;
        }
        let Some(asked) = m.get("scope").and_then(Value::as_str).map(str::to_string) else {
            return m;
        };
        let needs_version = !keycloak::scope_plan(&asked, None).withheld.is_empty();
        let version = if needs_version {
            self.keycloak_version().await
        } else {
            None
        };
        let plan = keycloak::scope_plan(&asked, version);
        match &plan.send {
            Some(s) => m.insert("scope".into(), Value::String(s.clone())),
            None => m.remove("scope"),
        };
        if !self.scope_plan_said.replace(true) {
            self.say_scope_plan(&plan, version);
        }
        m
    }

    fn say_scope_plan(&self, plan: &keycloak::ScopePlan, version: Option<KeycloakVersion>) {
        let var = self.cfg.metadata.origin("scope");
        if !plan.implicit.is_empty() {
            tracing::info!(
                "{var}: {} not sent to Keycloak: openid is not a client scope, and the realm's default client scopes \
                 come with every client",
                plan.implicit.join(" ")
            );
        }
        if plan.withheld.is_empty() {
            return;
        }
        let at = version.map_or_else(|| "of unknown version".to_string(), |v| v.to_string());
        let custom: Vec<&str> = plan
            .withheld
            .iter()
            .map(String::as_str)
            .filter(|s| !keycloak::STOCK_OPTIONAL_SCOPES.contains(s))
            .collect();
        let why = format!(
            "{var}: {} not sent to Keycloak {at}: before 26.8, registering a scope replaces the client's default \
             scopes with 'basic' (its tokens would lose roles, web-origins, acr). Set DCR_KEYCLOAK_VERSION if the \
             server is 26.8 or later",
            plan.withheld.join(" ")
        );
        if custom.is_empty() {
            tracing::info!("{why}; the stock optional scopes come with every new client anyway");
        } else {
            tracing::warn!(
                "{why}; assign {} to the realm's default or optional client scopes so new clients get it",
                custom.join(" ")
            );
        }
    }

    /// What is left of the deadline.
    pub fn remaining(&self) -> Duration {
        self.idp.policy.remaining()
    }

    /// The management URL of a stored client: the one the IdP handed back (rewritten from its
    /// public base when configured), else the profile's layout.
    /// It must be at one of the IdP's origins (the registration endpoint's, typically): the
    /// registration access token, and a re-issued one, go there.
    pub async fn client_uri(&self, stored: &ClientRecord) -> Result<Url> {
        let Some(raw) = stored.client_uri() else {
            return self.management_uri(stored.client_id()).await;
        };
        let url = Url::parse(raw).map(|u| self.cfg.rewrite(&u)).map_err(|_| {
            Error::Io(format!(
                "DCR_OUTPUT {}: registration_client_uri {:?} is not a URL",
                self.cfg.output.path.display(),
                crate::url::redacted(raw)
            ))
        })?;
        if !self.idp.is_allowed(&url) && self.cfg.endpoints().registration.is_none() {
            // A discovered registration endpoint may live at another origin than the issuer.
            self.registration_endpoint().await?;
        }
        if !self.idp.is_allowed(&url) {
            return Err(Error::Rejected(format!(
                "the registration_client_uri of client {} ({}) is not at the IdP's origin; refusing to send it a token. \
                 If the IdP hands back its public URL, set DCR_REWRITE_PUBLIC_BASE; if {} was edited, restore it or move it away",
                stored.client_id().escape_debug(),
                url.origin().ascii_serialization(),
                self.cfg.output.path.display()
            )));
        }
        Ok(url)
    }

    /// Where a client is managed when the IdP did not say: the profile's template, or
    /// `{registration endpoint}/{client_id}`.
    pub async fn management_uri(&self, client_id: &str) -> Result<Url> {
        let template = match &self.cfg.endpoints().client_uri {
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

    /// Discovery, once per run.
    async fn discovery(&self) -> Result<Discovered> {
        if let Some(d) = self.discovered.borrow().clone() {
            return Ok(d);
        }
        let cfg = self.cfg;
        let issuer = &cfg.endpoints().issuer;
        let d = self.idp.discover(&discovery_urls(issuer)).await?;
        // RFC 8414 §3.3, OIDC Discovery §4.3: the document must be the asked issuer's, or its
        // endpoints could send our tokens anywhere.
        let matches = d.issuer.as_deref().is_some_and(|got| {
            let norm = |s: &str| s.trim_end_matches('/').to_string();
            norm(got) == norm(issuer.as_str())
                || Url::parse(got)
                    .is_ok_and(|u| norm(cfg.rewrite(&u).as_str()) == norm(issuer.as_str()))
        });
        if !matches {
            return Err(Error::Rejected(format!(
                "the discovery document at {} is for issuer {:?}, not {issuer} (RFC 8414 §3.3): its endpoints are not used. \
                 Set DCR_ISSUER to the IdP's issuer, or the endpoints explicitly",
                d.source,
                d.issuer.as_deref().unwrap_or("(none)")
            )));
        }
        let fix = |u: Option<Url>, what: &str| -> Result<Option<Url>> {
            let Some(u) = u else { return Ok(None) };
            let u = cfg.rewrite(&u);
            check_transport(
                &format!("the discovered {what}"),
                &u,
                cfg.target.allow_insecure_http,
            )?;
            self.idp.allow_origin(&u);
            Ok(Some(u))
        };
        let published_token = d.token.clone();
        let found = Discovered {
            registration: fix(d.registration, "registration_endpoint")?,
            token: fix(d.token, "token_endpoint")?.zip(published_token),
            signing_algs: d.signing_algs,
            auth_methods: d.auth_methods,
        };
        let show = |u: Option<&Url>| u.map(Url::to_string).unwrap_or("(none)".into());
        tracing::info!(
            "discovery at {}: registration_endpoint {}, token_endpoint {}",
            d.source,
            show(found.registration.as_ref()),
            show(found.token.as_ref().map(|(u, _)| u))
        );
        *self.discovered.borrow_mut() = Some(found.clone());
        Ok(found)
    }

    pub async fn registration_endpoint(&self) -> Result<Url> {
        if let Some(u) = &self.cfg.endpoints().registration {
            return Ok(u.clone());
        }
        self.discovery().await?.registration.ok_or_else(|| {
            Error::Rejected(
                "the IdP's discovery document has no registration_endpoint: dynamic client registration is not enabled \
                 there (or lives elsewhere: set DCR_REGISTRATION_ENDPOINT)"
                    .into(),
            )
        })
    }

    /// The registration endpoint if it is known without a request (configured, or already
    /// discovered), for the record of where a client was registered.
    pub fn known_registration_endpoint(&self) -> Option<Url> {
        self.cfg.endpoints().registration.clone().or_else(|| {
            self.discovered
                .borrow()
                .as_ref()
                .and_then(|d| d.registration.clone())
        })
    }

    /// Refuses a signing key the IdP says it cannot verify (discovery's
    /// `token_endpoint_auth_signing_alg_values_supported`), before anything is registered
    /// with it: such a client could never authenticate. Known only where discovery ran.
    pub fn check_signing_alg(&self, alg: KeyAlg) -> Result<()> {
        let known = self.discovered.borrow();
        let Some(algs) = known.as_ref().and_then(|d| d.signing_algs.as_ref()) else {
            return Ok(());
        };
        let alg = alg.name();
        if algs.iter().any(|a| a == alg) {
            return Ok(());
        }
        Err(Error::Config(format!(
            "{}: the IdP verifies client assertions signed with {} only (discovery's \
             token_endpoint_auth_signing_alg_values_supported), so a {alg} key could never authenticate; set \
             DCR_KEY_ALG to one of them",
            crate::config::name("DCR_KEY_ALG"),
            algs.join(", ")
        )))
    }

    pub async fn token_endpoint(&self) -> Result<Url> {
        Ok(self.token_endpoint_and_audience().await?.0)
    }

    /// The token endpoint to send requests to, and as the IdP itself names it: the `aud` of
    /// a client assertion (RFC 7523 §3), which a server checks against its own URL, not the
    /// one this container reaches it by (`DCR_REWRITE_PUBLIC_BASE`).
    pub async fn token_endpoint_and_audience(&self) -> Result<(Url, Url)> {
        if let Some(u) = &self.cfg.endpoints().token {
            return Ok((u.clone(), self.cfg.unrewrite(u)));
        }
        self.discovery().await?.token.ok_or_else(|| {
            Error::Rejected(
                "the IdP's discovery document has no token_endpoint: set DCR_TOKEN_ENDPOINT".into(),
            )
        })
    }

    /// Refuses an auth method the IdP's discovery does not list in
    /// `token_endpoint_auth_methods_supported`, before anything is registered with it: such a
    /// client could never authenticate. Known only where discovery ran.
    pub fn check_auth_method(&self, method: Option<&str>) -> Result<()> {
        let known = self.discovered.borrow();
        let (Some(methods), Some(method)) =
            (known.as_ref().and_then(|d| d.auth_methods.as_ref()), method)
        else {
            return Ok(());
        };
        if methods.iter().any(|m| m == method) {
            return Ok(());
        }
        Err(Error::Config(format!(
            "{}: the IdP's discovery lists only {} in token_endpoint_auth_methods_supported, so a {method} client \
             could never authenticate there; choose one of them{}",
            self.cfg.metadata.origin("token_endpoint_auth_method"),
            methods.join(", "),
            if method == "private_key_jwt" {
                " (or unset DCR_SIGNING_KEY for a secret)"
            } else {
                ""
            }
        )))
    }

    /// How error messages name the admin credential.
    fn admin_name(&self) -> String {
        match &self.cfg.credentials.admin {
            Some(AdminAuth::ClientCredentials { client_id, .. }) => {
                format!("the admin token of DCR_ADMIN_CLIENT_ID={client_id}")
            }
            _ => "BOOTSTRAP_ADMIN_TOKEN".into(),
        }
    }

    /// The admin token: `BOOTSTRAP_ADMIN_TOKEN`, or one fetched by client credentials when
    /// first needed and again when it has expired.
    pub async fn admin_token(&self) -> Result<SecretString> {
        match &self.cfg.credentials.admin {
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
                    .client_credentials(
                        &endpoint,
                        client_id,
                        secret,
                        *method,
                        scope.as_deref(),
                        resource.as_deref(),
                    )
                    .await?;
                // Fetch a new one a little before the IdP stops accepting it.
                let until = ttl.map(|d| {
                    Instant::now() + d.saturating_sub((d / 10).min(Duration::from_secs(30)))
                });
                tracing::info!(
                    "obtained an admin token for {client_id} from {endpoint} by client credentials{}",
                    ttl.map(|d| format!(" (valid {}s)", d.as_secs()))
                        .unwrap_or_default()
                );
                *self.admin_cache.borrow_mut() = Some((token.clone(), until));
                Ok(token)
            }
        }
    }

    /// Drops a cached client-credentials token after the IdP refused it. True when a new one
    /// can be fetched (a static token cannot be replaced).
    fn forget_admin_token(&self) -> bool {
        matches!(
            self.cfg.credentials.admin,
            Some(AdminAuth::ClientCredentials { .. })
        ) && self.admin_cache.borrow_mut().take().is_some()
    }

    /// Runs an admin-API call. When the IdP refuses a client-credentials admin token (it
    /// expired during a long wait, or was revoked), a new one is fetched and the call made
    /// once more; a refused static token is final.
    pub async fn as_admin<T, F, Fut>(&self, url: &Url, call: F) -> Result<T>
    where
        F: Fn(SecretString) -> Fut,
        Fut: Future<Output = Result<Admin<T>>>,
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
}
