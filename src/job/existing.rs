//! A stored client: read it (RFC 7592), renew a refused registration access token with the
//! admin API (renewal.rs), correct drift (update.rs), rotate keys, delete it.

use super::decide::{self, Action, OnTokenRefused};
use super::output;
use super::renewal::Renewal;
use super::session::Session;
use crate::error::{Error, Result};
use crate::idp::client::ReadResult;
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
