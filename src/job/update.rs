//! Correcting drift: PATCH or PUT (falling back to PUT where the IdP has no PATCH), then a
//! read-back, the only word on what the IdP holds; the guards that keep an update from being
//! sent where it cannot work; the check of what the IdP registered against what was asked.

use super::managed::{ManagedClient, Refusal, Unrenewed};
use super::output;
use super::session::Session;
use crate::error::{Error, Result};
use crate::idp::UpdateMethod;
use crate::idp::client::{Read, Update};
use crate::reconcile;
use crate::record::ClientRecord;
use serde_json::{Map, Value};

/// What sending the changes came to.
pub(super) enum Applied {
    /// The IdP's client after the update, read back.
    Read(ClientRecord),
    /// The IdP does not update clients: nothing changed.
    Unsupported,
    /// The token was refused and cannot be renewed (it may have rotated in a lost answer):
    /// nothing more can be changed; why.
    Unmanageable(String),
}

/// What an update came to.
enum Updated {
    /// The IdP took it (its answer, and any token in it, are taken by then).
    Answer,
    /// The token was refused and cannot be renewed: the client cannot be managed now.
    Unmanageable(String),
    /// The IdP has no such method for clients (405/501, or 404 while the client exists).
    Unsupported(String),
}

impl Session<'_> {
    /// Without `DCR_SHARED_CLIENT` the keys we publish replace what the IdP holds. Keys there
    /// that this instance never published belong to someone else (another replica, most
    /// likely): say loudly that they are about to be dropped.
    pub(super) fn warn_foreign_keys(
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
    pub(super) async fn update_and_read_back(
        &self,
        client: &mut ManagedClient,
        current: &ClientRecord,
        changes: &Map<String, Value>,
        desired: &Map<String, Value>,
        compare: reconcile::Compare<'_>,
    ) -> Result<Applied> {
        let cfg = self.cfg;
        let id = client.id().to_string();
        let mut method = cfg.policies.update_method;
        let mut refusals = Vec::new();
        loop {
            let body = match method {
                UpdateMethod::Patch => changes.clone(),
                UpdateMethod::Put => reconcile::put_body(
                    current.fields(),
                    changes,
                    &id,
                    client.record().client_secret(),
                    self.dialect(),
                ),
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
            client.mark_pending_update(cfg)?;
            match self.send_update(client, method, &body).await? {
                Updated::Answer => {}
                Updated::Unsupported(why) if method == UpdateMethod::Patch => {
                    tracing::info!(
                        "the IdP has no PATCH for clients ({why}); using an RFC 7592 PUT (set DCR_UPDATE_METHOD=put to skip the PATCH)"
                    );
                    refusals.push(format!("PATCH: {why}"));
                    method = UpdateMethod::Put;
                    continue;
                }
                Updated::Unsupported(why) => {
                    refusals.push(format!("PUT: {why}"));
                    self.say_no_updates(client, changes, &refusals);
                    return Ok(Applied::Unsupported);
                }
                Updated::Unmanageable(why) => return Ok(Applied::Unmanageable(why)),
            }
            let after = self.read_current(client, "was updated").await?;
            let took_nothing = changes.iter().all(|(k, _)| after.get(k) == current.get(k))
                && !reconcile::diff(desired, after.fields(), compare, &Map::new()).is_empty();
            if took_nothing && method == UpdateMethod::Patch {
                tracing::warn!(
                    "the IdP answered the PATCH of client {id} but holds the same as before; trying an RFC 7592 PUT"
                );
                method = UpdateMethod::Put;
                continue;
            }
            client.overlay(cfg, after.fields())?;
            client.save(cfg)?;
            return Ok(Applied::Read(after));
        }
    }

    /// An IdP without RFC 7592 updates (405/501, or 403 to a token it just accepted): what
    /// differs stays as it is and the current key stays in use. Said once a run, with the
    /// settings that stop the attempts.
    fn say_no_updates(
        &self,
        client: &ManagedClient,
        changes: &Map<String, Value>,
        refusals: &[String],
    ) {
        let fields = changes
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let keys = if changes.contains_key("jwks") || changes.contains_key("jwks_uri") {
            "; the current signing key stays in use (BFF_JWK_ROTATE_AFTER_DAYS=-1 stops rotating it)"
        } else {
            ""
        };
        tracing::warn!(
            "the IdP does not update clients ({}): client {} keeps {fields} as it is{keys}. Make the configuration match \
             the IdP (DCR_REDIRECT_UPDATE_MODE=none leaves redirect URIs alone), or register anew \
             (DCR_FORCE_REPLACE=true for one run)",
            refusals.join("; "),
            client.id()
        );
    }

    /// One PATCH or PUT; a refused token is renewed (once, or contended for by replicas).
    async fn send_update(
        &self,
        client: &mut ManagedClient,
        method: UpdateMethod,
        body: &Map<String, Value>,
    ) -> Result<Updated> {
        let id = client.id().to_string();
        let uri = client.uri().clone();
        match self
            .update_client(client, self.renew_mode(), method, body)
            .await?
        {
            Ok(Update::Answer(_)) => Ok(Updated::Answer),
            Ok(Update::Unsupported(why) | Update::Forbidden(why)) => Ok(Updated::Unsupported(why)),
            Ok(Update::NotFound(why)) => {
                // 404 to a PATCH is ambiguous: no such client, or no PATCH route. A read tells.
                let exists = matches!(
                    self.read_client(client, self.renew_mode()).await?,
                    Ok(Read::Current(_))
                );
                if exists && method == UpdateMethod::Patch {
                    return Ok(Updated::Unsupported(why));
                }
                Err(Error::Rejected(format!(
                    "the client {id} at {uri} disappeared during the update ({why}); run again to re-register (DCR_ON_STALE=reregister)"
                )))
            }
            Err(Refusal {
                why,
                unrenewed: Unrenewed::NoSuchClient,
            }) => Err(Error::Rejected(format!(
                "updating client {id} was refused ({why}) and the admin API does not know the client"
            ))),
            Err(Refusal { why, unrenewed }) => Ok(Updated::Unmanageable(match unrenewed {
                Unrenewed::StillRefused => {
                    format!("the update was refused even with a freshly re-issued token: {why}")
                }
                _ => format!("the update's token was refused and cannot be renewed: {why}"),
            })),
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
}
