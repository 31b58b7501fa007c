//! A stored client: read it (RFC 7592), renew a refused registration access token with the
//! admin API, correct drift (PATCH or PUT), rotate keys, delete it.

use super::decide::{self, Action, OnRatRefused, OnTokenRefused};
use super::output;
use super::session::Session;
use crate::error::{Error, Result};
use crate::idp::UpdateMethod;
use crate::idp::client::{ReadResult, UpdateResult};
use crate::idp::token::Proof;
use crate::local::keyring::{KeyRing, Plan};
use crate::reconcile::{self, StalePolicy};
use crate::record::ClientRecord;
use reqwest::Url;
use secrecy::SecretString;
use serde_json::{Map, Value, json};

/// The list members of what we asked for, remembered as `dcr_bootstrap.asked`.
pub(super) fn asked(desired: &Map<String, Value>) -> Map<String, Value> {
    desired
        .iter()
        .filter(|(k, _)| reconcile::ASKED_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// What reading the stored client came to.
enum Read {
    /// The IdP's view, and the token to use next.
    Current(ClientRecord, SecretString),
    /// 404, or the admin API does not know the client.
    Gone,
    /// The token was refused and could not be renewed.
    Refused(String),
}

/// What renewing a refused registration access token came to.
pub(super) enum Renewal {
    Token(SecretString),
    /// The admin API does not know the client.
    NoSuchClient,
    /// No admin token or re-issue endpoint.
    NotPossible,
}

/// What an update came to.
enum Updated {
    /// The IdP's answer (possibly partial, possibly empty).
    Answer(Map<String, Value>),
    /// The IdP has no such method for clients (405/501, or 404 while the client exists).
    Unsupported(String),
}

/// Whether this tool registered the client (`dcr_bootstrap.origin`), rather than finding it
/// made by hand or through an admin API.
fn registered_here(record: &ClientRecord) -> bool {
    record
        .meta()
        .and_then(|m| m.get("origin"))
        .and_then(Value::as_str)
        == Some(super::output::ORIGIN_REGISTERED)
}

/// The IdP's answer to reading `id` must be about `id`: a record that names another client's
/// URI must not make us adopt that client's document.
pub(super) fn same_client(id: &str, doc: &ClientRecord) -> Result<()> {
    if doc.client_id() == id {
        return Ok(());
    }
    Err(Error::Rejected(format!(
        "reading client {} answered with client {}: the stored registration_client_uri does not belong to the stored client",
        id.escape_debug(),
        doc.client_id().escape_debug()
    )))
}

impl Session<'_> {
    /// Whether a stored record is proven to be this tool's record of its client, so that the
    /// admin token may act on that client: `DCR_CLIENT_ID` names it, or its seal verifies.
    pub(super) fn owns(&self, record: &ClientRecord) -> bool {
        let cfg = self.cfg;
        let configured = cfg.metadata.fields.get("client_id").and_then(Value::as_str);
        configured == Some(record.client_id())
            || cfg
                .credentials
                .sealer
                .as_ref()
                .is_some_and(|s| s.verify(record))
    }

    /// What we want registered: the configured metadata plus the keys of the plan.
    pub(super) async fn desired(&self, plan: Option<&Plan>) -> Map<String, Value> {
        let mut m = self.configured_metadata().await;
        if let (Some(k), Some(plan)) = (&self.cfg.signing_key, plan) {
            match &k.jwks_uri {
                Some(u) => m.insert("jwks_uri".into(), Value::String(u.to_string())),
                None => m.insert("jwks".into(), plan.jwks()),
            };
        }
        m
    }

    pub(super) async fn existing_flow(
        &self,
        stored: &ClientRecord,
        ring: Option<&mut KeyRing>,
    ) -> Result<(Action, String)> {
        let cfg = self.cfg;
        let id = stored.client_id().to_string();
        let Some(rat) = stored.rat() else {
            tracing::warn!(
                "{} holds client {id} without a registration_access_token: keeping it without checking the IdP",
                cfg.output.path.display()
            );
            if ring.is_some() {
                tracing::warn!(
                    "without a registration access token the signing keys cannot be published or rotated"
                );
            }
            output::persist(
                cfg,
                stored.clone(),
                Action::Trusted,
                None,
                Some(stored),
                Map::new(),
                self.known_registration_endpoint(),
            )?;
            return Ok((Action::Trusted, id));
        };
        let uri = self.client_uri(stored).await?;
        let gone = match self.read_with_renewal(&id, &uri, rat, stored).await? {
            Read::Current(current, rat) => {
                let mut record = stored.clone();
                record.overlay(current.fields());
                return self
                    .reconcile(
                        record,
                        rat,
                        uri,
                        &current,
                        ring,
                        Action::Verified,
                        Some(stored),
                    )
                    .await;
            }
            Read::Gone => None,
            Read::Refused(why) => Some(why),
        };
        let refused = match gone {
            None => None,
            Some(why) => {
                // Refused and not renewable: is the client still there? Its credentials tell.
                let exists = match self
                    .try_prove(stored, ring.as_deref().map(|r| (r, None)))
                    .await?
                {
                    Some(Proof::Authenticated(_)) => Some(true),
                    Some(Proof::Refused(_)) => Some(false),
                    _ => None,
                };
                match decide::on_token_refused(exists, cfg.policies.on_stale) {
                    OnTokenRefused::Stop => return Err(self.still_exists(stored, &why)),
                    OnTokenRefused::Fail => return Err(self.refused_fail(&id, &why)),
                    OnTokenRefused::Reregister => Some(why),
                }
            }
        };
        match cfg.policies.on_stale {
            StalePolicy::Reregister => {
                match &refused {
                    Some(why) => tracing::warn!(
                        "the registration access token for {id} was refused ({why}) and the client's credentials do not \
                         show it exists; DCR_ON_STALE=reregister: registering a new client"
                    ),
                    None => tracing::warn!(
                        "stored client {id} is gone at the IdP; DCR_ON_STALE=reregister: registering a new client"
                    ),
                }
                self.register_flow(Action::Reregistered, ring).await
            }
            StalePolicy::Fail => Err(Error::Rejected(format!(
                "the stored client {id} is gone at the IdP. Set DCR_ON_STALE=reregister to register a new one \
                 automatically, or DCR_FORCE_REPLACE=true for one run, or move {} away",
                cfg.output.path.display()
            ))),
        }
    }

    /// The error for a client whose token was refused but whose credentials still work.
    fn still_exists(&self, stored: &ClientRecord, why: &str) -> Error {
        let cfg = self.cfg;
        let pending = stored
            .meta()
            .and_then(|m| m.get("pending_update"))
            .and_then(Value::as_str)
            .map(|at| {
                format!(
                    "; an update sent at {at} got no answer, so the IdP most likely rotated the token in that lost answer"
                )
            })
            .unwrap_or_default();
        Error::Rejected(format!(
            "the IdP refused the registration access token of client {} ({why}), but the client exists: its credentials \
             still authenticate at the token endpoint{pending}. Registering another client would duplicate it, so \
             nothing was registered. Admin action: {}; or delete the client at the IdP and move {} away",
            stored.client_id().escape_debug(),
            self.admin_action(stored.client_id()),
            cfg.output.path.display()
        ))
    }

    /// How an operator gets a refused registration access token replaced.
    fn admin_action(&self, id: &str) -> String {
        let cfg = self.cfg;
        if let (None, Some(api)) = (&cfg.endpoints().rat, &cfg.endpoints().keycloak) {
            return format!(
                "re-issue the registration access token (Keycloak admin console: the client's Credentials tab, or \
                 POST {}/clients/{{id}}/registration-access-token) and store it as registration_access_token in {}, \
                 or give this tool an admin token with manage-clients so it does that itself",
                api.realm,
                cfg.output.path.display()
            );
        }
        match &cfg.endpoints().rat {
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
        }
    }

    /// The error for a refused token under `DCR_ON_STALE=fail`, naming the admin action.
    fn refused_fail(&self, id: &str, why: &str) -> Error {
        let how = self.admin_action(id);
        Error::Rejected(format!(
            "the IdP rejected the stored registration access token for client {id} ({why}): the client is gone or the token \
             was revoked. Admin action: {how}; or set DCR_ON_STALE=reregister to register a new client"
        ))
    }

    /// RFC 7592 read; on 401/403 a new registration access token from the admin API, once.
    /// `None`: the client is gone. Returns the IdP's view and the token to use next.
    async fn read_with_renewal(
        &self,
        id: &str,
        uri: &Url,
        rat: SecretString,
        stored: &ClientRecord,
    ) -> Result<Read> {
        match self.idp.read(uri, &rat).await? {
            ReadResult::Current(doc) => {
                same_client(id, &doc)?;
                let rat = doc.rat().unwrap_or(rat);
                Ok(Read::Current(doc, rat))
            }
            ReadResult::Gone(why) => {
                tracing::warn!("reading client {id} at {uri}: {why}");
                Ok(Read::Gone)
            }
            ReadResult::Unauthorized(why) => {
                let proven = self.owns(stored);
                let renewed = match self.renew_rat(id, &why, proven).await? {
                    Renewal::Token(t) => t,
                    Renewal::NoSuchClient => return Ok(Read::Gone),
                    Renewal::NotPossible => return Ok(Read::Refused(why)),
                };
                let mut record = stored.clone();
                output::save_rotated_rat(self.cfg, &mut record, &renewed)?;
                if self.cfg.policies.shared.is_some() {
                    // Other replicas re-issue the same token: renew until a read gets through.
                    let mut rat = renewed;
                    let doc = self.read_shared(id, &mut record, &mut rat, uri).await?;
                    let rat = doc.rat().unwrap_or(rat);
                    return Ok(Read::Current(doc, rat));
                }
                match self.idp.read(uri, &renewed).await? {
                    ReadResult::Current(doc) => {
                        same_client(id, &doc)?;
                        let rat = doc.rat().unwrap_or(renewed);
                        Ok(Read::Current(doc, rat))
                    }
                    ReadResult::Gone(_) => Ok(Read::Gone),
                    ReadResult::Unauthorized(why) => Err(Error::Rejected(format!(
                        "reading client {id} failed even with a freshly re-issued registration access token ({why})"
                    ))),
                }
            }
        }
    }

    /// A new registration access token for `id` from the admin API (`DCR_RAT_ENDPOINT`), where
    /// the record is proven ours; an error when it is not.
    pub(super) async fn renew_rat(&self, id: &str, why: &str, proven: bool) -> Result<Renewal> {
        let cfg = self.cfg;
        let rat_endpoint = &cfg.endpoints().rat;
        let keycloak = cfg
            .endpoints()
            .keycloak
            .as_ref()
            .filter(|_| rat_endpoint.is_none());
        match decide::on_rat_refused(
            cfg.credentials.admin.is_some(),
            rat_endpoint.is_some() || keycloak.is_some(),
            proven,
        ) {
            OnRatRefused::Renew => {}
            OnRatRefused::Unproven => {
                return Err(Error::Rejected(format!(
                    "the IdP refused the registration access token stored for client {} ({why}), and {} is not proven to be \
                     this tool's record of that client (its seal does not verify and DCR_CLIENT_ID does not name it), so the \
                     admin token is not used on it. If the file is genuine (the admin credential changed since it was \
                     written), set DCR_CLIENT_ID to that client or DCR_STATE_KEY to the key it was sealed with; otherwise \
                     move the file away",
                    id.escape_debug(),
                    cfg.output.path.display()
                )));
            }
            OnRatRefused::CannotRenew => {
                tracing::warn!(
                    "the stored registration access token for {id} was rejected ({why})"
                );
                return Ok(Renewal::NotPossible);
            }
        }
        tracing::warn!(
            "the registration access token for {id} was rejected ({why}); re-issuing it with the admin token"
        );
        let reissued = match keycloak {
            Some(api) => {
                self.as_admin(&api.lookup(id), |admin| async move {
                    self.idp.keycloak_reissue_rat(api, id, &admin).await
                })
                .await?
            }
            None => {
                let template = rat_endpoint.as_deref().unwrap_or_default();
                let url = cfg.endpoint_for(template, "DCR_RAT_ENDPOINT", id)?;
                self.reissue(&url).await?
            }
        };
        Ok(match reissued {
            Some(t) => Renewal::Token(t),
            None => Renewal::NoSuchClient,
        })
    }

    /// One RAT re-issue; `None` when the admin API does not know the client.
    pub(super) async fn reissue(&self, url: &Url) -> Result<Option<SecretString>> {
        self.as_admin(url, |admin| async move {
            self.idp.reissue_rat(url, &admin).await
        })
        .await
    }

    /// Brings the IdP's client in line with what we want and persists the result. `record` is
    /// what we hold (the IdP's view over our stored record), `current` the IdP's view alone.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn reconcile(
        &self,
        mut record: ClientRecord,
        mut rat: SecretString,
        uri: Url,
        current: &ClientRecord,
        mut ring: Option<&mut KeyRing>,
        base: Action,
        stored: Option<&ClientRecord>,
    ) -> Result<(Action, String)> {
        let cfg = self.cfg;
        let id = record.client_id().to_string();
        // The IdP may have rotated the token on this read: save it before anything else.
        if stored.is_none_or(|s| !s.holds_rat(&rat)) {
            tracing::info!("the IdP rotated the registration access token; saving it");
            output::save_rotated_rat(cfg, &mut record, &rat)?;
        }
        let inline_keys = cfg
            .signing_key
            .as_ref()
            .is_some_and(|k| k.jwks_uri.is_none());
        // An IdP that never reports its keys (Keycloak) holds unknown keys.
        let reported = current.get("jwks").is_some() || self.dialect().reports_jwks();
        let idp_keys: Option<Vec<Value>> = (inline_keys && reported).then(|| {
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
        if let Some(p) = plan.as_ref().filter(|p| p.rotated)
            && let Some(key) = p.publish.first()
        {
            self.check_signing_alg(&key.alg)?;
        }
        let mut desired = self.desired(plan.as_ref()).await;
        // Replicas sharing the client: our keys join the others' (job::shared); what the IdP
        // then holds is what we want, and the rest is reconciled as usual.
        let mut keys_shared = false;
        let shared_view;
        let current = match (&cfg.policies.shared, plan.as_ref()) {
            (Some(_), Some(p)) if inline_keys => {
                let ours = p.jwks()["keys"].as_array().cloned().unwrap_or_default();
                let (view, wrote) = self
                    .publish_shared(&id, &mut record, &mut rat, &uri, current, &ours)
                    .await?;
                if wrote {
                    record.overlay(view.fields());
                    output::save(cfg, &record)?;
                }
                keys_shared = wrote;
                desired.insert("jwks".into(), json!({ "keys": view.jwks_keys() }));
                shared_view = view;
                &shared_view
            }
            _ => current,
        };
        if cfg.policies.shared.is_none()
            && let (Some(p), Some(held)) = (plan.as_ref(), idp_keys.as_deref())
        {
            self.warn_foreign_keys(&id, held, &p.publish, stored);
        }
        let meta = |k: &str| {
            record
                .meta()
                .and_then(|m| m.get(k))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let (settled, asked_before) = (meta("settled"), meta("asked"));
        let compare = self.compare(&asked_before);
        let mut changes = reconcile::diff(&desired, current.fields(), compare, &settled);
        if !changes.is_empty() && !self.update_can_work(&record, &changes).await? {
            changes.clear();
        }
        let mut extra = Map::new();
        let mut updated = false;
        if !changes.is_empty() {
            let after = self
                .update_and_read_back(
                    &id,
                    &mut record,
                    &mut rat,
                    &uri,
                    current,
                    &changes,
                    &desired,
                    compare,
                )
                .await?;
            // What the IdP did not take: remembered, so it is not sent on every start. Keys an
            // IdP does not report count as taken once it accepted the update.
            let mut accepted = asked_before.clone();
            if !self.dialect().reports_jwks()
                && let Some(j) = desired.get("jwks")
            {
                accepted.insert("jwks".into(), j.clone());
            }
            let left = reconcile::unsettled(
                &desired,
                after.fields(),
                reconcile::Compare {
                    asked_before: &accepted,
                    ..compare
                },
            );
            if left.contains_key("jwks") {
                output::save(cfg, &record)?;
                return Err(Error::Rejected(format!(
                    "client {id}: the IdP did not take the new signing keys (its JWKS after the update differs); \
                     the current key stays in use and nothing was promoted"
                )));
            }
            if !left.is_empty() {
                tracing::warn!(
                    "the IdP keeps {} of client {id} other than asked after an update; not sending that correction again \
                     while it stays so",
                    left.keys()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            updated = changes.keys().any(|k| after.get(k) != current.get(k))
                || (changes.contains_key("jwks") && !self.dialect().reports_jwks());
            if !updated {
                tracing::warn!("the IdP accepted the update of client {id} but changed nothing");
            }
            extra.insert("settled".into(), Value::Object(left));
            self.check_readback(&desired, after.fields())?;
        } else if !settled.is_empty() {
            extra.insert("settled".into(), Value::Object(settled));
        }
        extra.insert("asked".into(), Value::Object(asked(&desired)));
        updated |= keys_shared;
        let keys_changed = plan.as_ref().is_some_and(|p| p.rotated || p.repaired);
        let action = decide::reported_action(base, updated, keys_changed);
        if action != Action::Verified {
            // What changed must work before the run says so (and before a key is promoted).
            self.prove(&record, ring.as_deref().map(|r| (r, plan.as_ref())))
                .await?;
        }
        let keys = ring.as_deref().zip(plan.as_ref());
        output::persist(
            cfg,
            record,
            action,
            keys,
            stored,
            extra,
            self.known_registration_endpoint(),
        )?;
        Ok((action, id))
    }

    /// Without `DCR_SHARED_CLIENT` the keys we publish replace what the IdP holds. Keys there
    /// that this instance never published belong to someone else (another replica, most
    /// likely): say loudly that they are about to be dropped.
    fn warn_foreign_keys(
        &self,
        id: &str,
        held: &[Value],
        publish: &[crate::local::keyring::KeyRecord],
        stored: Option<&ClientRecord>,
    ) {
        let known: Vec<String> = publish
            .iter()
            .map(|k| k.thumbprint.clone())
            .chain(
                output::stored_key_records(stored)
                    .into_iter()
                    .map(|k| k.thumbprint),
            )
            .collect();
        let foreign: Vec<&str> = held
            .iter()
            .filter(|k| !known.contains(&crate::local::keys::thumbprint(k)))
            .map(|k| k.get("kid").and_then(Value::as_str).unwrap_or("(no kid)"))
            .collect();
        if !foreign.is_empty() {
            tracing::warn!(
                "client {id} holds {} key(s) this instance never published ({}); publishing ours REPLACES them, and \
                 whoever signs with them stops authenticating. If several replicas share this client, set \
                 DCR_SHARED_CLIENT=true (docs/kubernetes.md)",
                foreign.len(),
                foreign.join(", ")
            );
        }
    }

    /// Whether an update of this client can work. Keycloak 25.0–26.7 answers 500 to any
    /// RFC 7592 update of a client created through its admin API (keycloak#31586); a client
    /// this tool registered is not affected. There, new keys cannot be published (an error
    /// naming the way out), and other drift is left as is with a warning (an error when
    /// strict).
    async fn update_can_work(
        &self,
        record: &ClientRecord,
        changes: &Map<String, Value>,
    ) -> Result<bool> {
        if self.cfg.profile() != crate::idp::profile::Profile::Keycloak || registered_here(record) {
            return Ok(true);
        }
        let Some(v) = self
            .keycloak_version()
            .await
            .filter(|v| v.breaks_updates_of_admin_created_clients())
        else {
            return Ok(true);
        };
        let id = record.client_id();
        let fields = changes
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let why = format!(
            "client {id} differs at Keycloak in {fields}, but Keycloak {v} answers 500 to every RFC 7592 update of a client \
             created through its admin API (keycloak#31586), so no update is sent. Upgrade Keycloak to 26.8 or later, \
             change the client in the admin console, or let this tool register a new client (move {} away)",
            self.cfg.output.path.display()
        );
        if changes.contains_key("jwks") || changes.contains_key("jwks_uri") {
            return Err(Error::Rejected(format!(
                "{why}. The signing keys cannot be published this way: the current key stays in use"
            )));
        }
        if self.cfg.policies.strict_readback {
            return Err(Error::Rejected(format!("{why} (DCR_STRICT_READBACK=true)")));
        }
        tracing::warn!("{why}");
        Ok(false)
    }

    /// How drift is judged: the redirect mode, `DCR_STRICT_READBACK`, and what the previous
    /// run asked for.
    pub(super) fn compare<'b>(
        &self,
        asked_before: &'b Map<String, Value>,
    ) -> reconcile::Compare<'b> {
        reconcile::Compare {
            dialect: self.dialect(),
            redirects: self.cfg.policies.redirect_mode,
            strict: self.cfg.policies.strict_readback,
            asked_before,
        }
    }

    /// Sends the changes (PATCH falling back to PUT where the IdP has no PATCH, or where a
    /// PATCH changed nothing), then reads the client back: only the read-back says what the
    /// IdP holds. A pending-update mark is saved first, so that a lost answer (which may have
    /// rotated the registration access token) is recognised on the next start.
    #[allow(clippy::too_many_arguments)]
    async fn update_and_read_back(
        &self,
        id: &str,
        record: &mut ClientRecord,
        rat: &mut SecretString,
        uri: &Url,
        current: &ClientRecord,
        changes: &Map<String, Value>,
        desired: &Map<String, Value>,
        compare: reconcile::Compare<'_>,
    ) -> Result<ClientRecord> {
        let cfg = self.cfg;
        let mut method = cfg.policies.update_method;
        loop {
            let body = match method {
                UpdateMethod::Patch => changes.clone(),
                UpdateMethod::Put => {
                    reconcile::put_body(current.fields(), changes, id, record.client_secret())
                }
            };
            tracing::info!(
                "client {id} differs at the IdP in {}; updating with {}",
                changes
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                method.verb()
            );
            output::mark_pending_update(cfg, record)?;
            let answer = match self
                .update_with_renewal(id, record, rat, uri, method, &body)
                .await?
            {
                Updated::Answer(a) => a,
                Updated::Unsupported(why) if method == UpdateMethod::Patch => {
                    tracing::warn!(
                        "the IdP has no PATCH for clients ({why}); using an RFC 7592 PUT (set DCR_UPDATE_METHOD=put to skip the PATCH)"
                    );
                    method = UpdateMethod::Put;
                    continue;
                }
                Updated::Unsupported(why) => {
                    return Err(Error::Rejected(format!(
                        "the IdP refused the {} of client {id} at {uri} ({why})",
                        method.verb()
                    )));
                }
            };
            // A rotated token in the answer: saved before anything else.
            if let Some(new) = ClientRecord::from_map(answer.clone())
                .ok()
                .and_then(|a| a.rat())
                && !record.holds_rat(&new)
            {
                output::save_rotated_rat(cfg, record, &new)?;
                *rat = new;
            }
            let after = self.read_after_update(id, record, rat, uri).await?;
            let took_nothing = changes.iter().all(|(k, _)| after.get(k) == current.get(k))
                && !reconcile::unsettled(desired, after.fields(), compare).is_empty();
            if took_nothing && method == UpdateMethod::Patch {
                tracing::warn!(
                    "the IdP answered the PATCH of client {id} but holds the same as before; trying an RFC 7592 PUT"
                );
                method = UpdateMethod::Put;
                continue;
            }
            record.overlay(after.fields());
            output::save(cfg, record)?;
            return Ok(after);
        }
    }

    /// The RFC 7592 read after an update (a token rotated on read is saved at once).
    async fn read_after_update(
        &self,
        id: &str,
        record: &mut ClientRecord,
        rat: &mut SecretString,
        uri: &Url,
    ) -> Result<ClientRecord> {
        if self.cfg.policies.shared.is_some() {
            return self.read_shared(id, record, rat, uri).await;
        }
        match self.idp.read(uri, rat).await? {
            ReadResult::Current(doc) => {
                same_client(id, &doc)?;
                if let Some(new) = doc.rat()
                    && !record.holds_rat(&new)
                {
                    output::save_rotated_rat(self.cfg, record, &new)?;
                    *rat = new;
                }
                Ok(doc)
            }
            ReadResult::Gone(why) | ReadResult::Unauthorized(why) => Err(Error::Rejected(format!(
                "client {id} was updated, but reading it back failed ({why}); run again to verify it"
            ))),
        }
    }

    /// PATCH or PUT; on a refused token a re-issued registration access token, once.
    async fn update_with_renewal(
        &self,
        id: &str,
        record: &mut ClientRecord,
        rat: &mut SecretString,
        uri: &Url,
        method: UpdateMethod,
        body: &Map<String, Value>,
    ) -> Result<Updated> {
        if self.cfg.policies.shared.is_some() {
            // Other replicas re-issue the same token: renew until the update gets through.
            for round in 0.. {
                match self.idp.update(uri, rat, method, body).await? {
                    UpdateResult::Unauthorized(why) => {
                        self.renew_contended(id, record, rat, &why, round).await?
                    }
                    UpdateResult::Updated(doc) => return Ok(Updated::Answer(doc)),
                    UpdateResult::Unsupported(why) => return Ok(Updated::Unsupported(why)),
                    UpdateResult::Gone(why) => {
                        return Err(Error::Rejected(format!(
                            "the client {id} at {uri} disappeared during the update ({why})"
                        )));
                    }
                }
            }
        }
        match self.idp.update(uri, rat, method, body).await? {
            UpdateResult::Updated(doc) => Ok(Updated::Answer(doc)),
            UpdateResult::Unsupported(why) => Ok(Updated::Unsupported(why)),
            UpdateResult::Gone(why) => {
                // 404 to a PATCH is ambiguous: no such client, or no PATCH route. A read tells.
                match self.idp.read(uri, rat).await? {
                    ReadResult::Current(_) if method == UpdateMethod::Patch => {
                        Ok(Updated::Unsupported(why))
                    }
                    _ => Err(Error::Rejected(format!(
                        "the client {id} at {uri} disappeared during the update ({why}); run again to re-register (DCR_ON_STALE=reregister)"
                    ))),
                }
            }
            UpdateResult::Unauthorized(why) => {
                // The read just before accepted this record's token for this client.
                let renewed = match self.renew_rat(id, &why, true).await? {
                    Renewal::Token(t) => t,
                    Renewal::NoSuchClient => {
                        return Err(Error::Rejected(format!(
                            "updating client {id} was refused ({why}) and the admin API does not know the client"
                        )));
                    }
                    Renewal::NotPossible => {
                        return Err(Error::Rejected(format!(
                            "updating client {id} was refused ({why}) although reading it just worked; set an admin \
                             token and DCR_RAT_ENDPOINT so the registration access token can be renewed"
                        )));
                    }
                };
                output::save_rotated_rat(self.cfg, record, &renewed)?;
                *rat = renewed;
                match self.idp.update(uri, rat, method, body).await? {
                    UpdateResult::Updated(doc) => Ok(Updated::Answer(doc)),
                    UpdateResult::Unsupported(why) => Ok(Updated::Unsupported(why)),
                    UpdateResult::Gone(why) | UpdateResult::Unauthorized(why) => {
                        Err(Error::Rejected(format!(
                            "updating client {id} was refused even with a freshly re-issued registration access token ({why})"
                        )))
                    }
                }
            }
        }
    }

    /// RFC 7591 §3.2.1: the server may change what we asked for. Warn, or fail when strict.
    /// Called once the client is recorded, so a strict failure never leaves it unrecorded.
    pub(super) fn check_readback(
        &self,
        asked: &Map<String, Value>,
        got: &Map<String, Value>,
    ) -> Result<()> {
        let diffs = reconcile::readback_differences(
            asked,
            got,
            self.cfg.policies.strict_readback,
            self.dialect(),
        );
        if diffs.is_empty() {
            return Ok(());
        }
        let id = got.get("client_id").and_then(Value::as_str).unwrap_or("");
        let msg = format!(
            "the IdP registered something else than asked for client {}: {}",
            id.escape_debug(),
            diffs.join("; ")
        );
        if self.cfg.policies.strict_readback {
            return Err(Error::Rejected(format!(
                "{msg} (DCR_STRICT_READBACK=true). The client is recorded in {}; fix the metadata or the IdP's \
                 policy, then run again (it is updated), or deregister it",
                self.cfg.output.path.display()
            )));
        }
        tracing::warn!("{msg}");
        Ok(())
    }

    pub async fn delete_stored(&self, stored: &ClientRecord) -> Result<()> {
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
        match self
            .renew_rat(&id, "delete refused", self.owns(stored))
            .await
        {
            Ok(Renewal::Token(renewed)) => {
                self.idp.delete(&uri, &renewed).await?;
                Ok(())
            }
            Ok(Renewal::NoSuchClient) => Ok(()),
            Ok(Renewal::NotPossible) => {
                tracing::warn!(
                    "client {id} may still exist at the IdP: its registration access token was refused and cannot be renewed"
                );
                Ok(())
            }
            Err(e) => {
                tracing::warn!("client {id} may still exist at the IdP: {e}");
                Ok(())
            }
        }
    }
}
