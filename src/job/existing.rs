//! A stored client: read it (RFC 7592), renewing a refused registration access token with the
//! admin API (renewal.rs); bring it in line (converge.rs); or, when it is gone, apply
//! `DCR_ON_STALE`. Also deleting it.

use super::decide::{self, Action, OnTokenRefused};
use super::managed::{ManagedClient, Refusal, Unrenewed};
use super::output::{self, Persist, Trust};
use super::session::Session;
use crate::error::{Error, Result};
use crate::idp::client::{Delete, Read};
use crate::idp::token::Proof;
use crate::local::keyring::KeyRing;
use crate::policy::StalePolicy;
use crate::record::ClientRecord;
use serde_json::{Map, Value};

/// What reading the stored client came to, when it did not find it.
enum Missing {
    /// The IdP said so about the client itself: 404 at the management URL it handed back,
    /// or Keycloak's admin API knows no such clientId. The evidence.
    Gone(String),
    /// The token was refused and could not be renewed.
    Refused(String),
    /// 404 at a management URL this tool built (the IdP handed back none): the route's answer
    /// or the client's, not proven which.
    NotProven(String),
}

/// Our notes on a stored record that a run which changes nothing keeps: what was asked, what
/// the IdP settled, an update in flight.
fn carried_notes(stored: &ClientRecord) -> Map<String, Value> {
    ["asked", "settled", "pending_update"]
        .into_iter()
        .filter_map(|k| {
            let v = stored.meta()?.get(k)?;
            Some((k.to_string(), v.clone()))
        })
        .collect()
}

impl Session<'_> {
    /// Whether a stored record is proven to be this tool's record of its client, so that the
    /// admin token may act on that client: `DCR_CLIENT_ID` names it, or its seal verifies for
    /// this deployment. Nothing else: not a token the IdP accepted, not a file's owner.
    pub(super) fn owns(&self, record: &ClientRecord) -> bool {
        let cfg = self.cfg;
        let configured = cfg.metadata.fields.get("client_id").and_then(Value::as_str);
        configured == Some(record.client_id()) || cfg.credentials.verifies(record, &cfg.binding())
    }

    /// How a stored record is written back: sealed only when it is ours.
    pub(super) fn trust_of(&self, record: &ClientRecord) -> Trust {
        if self.owns(record) {
            Trust::Ours
        } else {
            Trust::NotOurs
        }
    }

    /// The stored client, ready to be managed: its token and management URL.
    pub(super) async fn managed(&self, stored: &ClientRecord) -> Result<Option<ManagedClient>> {
        if stored.rat().is_none() {
            return Ok(None);
        }
        let uri = self.client_uri(stored).await?;
        Ok(ManagedClient::new(
            stored.clone(),
            uri,
            self.owns(stored),
            true,
        ))
    }

    pub(super) async fn existing_flow(
        &self,
        stored: &ClientRecord,
        ring: Option<&mut KeyRing>,
    ) -> Result<(Action, String)> {
        let Some(mut client) = self.managed(stored).await? else {
            return self.keep_unchecked(stored, ring.is_some());
        };
        let missing = match self.read_client(&mut client, self.renew_mode()).await? {
            Ok(Read::Current(current)) => {
                client.overlay(self.cfg, current.fields())?;
                return self
                    .converge(client, &current, ring, Action::Verified, Some(stored))
                    .await;
            }
            Ok(Read::NotFound(why)) if stored.client_uri().is_some() => {
                Missing::Gone(format!("{} answered {why}", client.uri()))
            }
            Ok(Read::NotFound(why)) => Missing::NotProven(format!(
                "{} (a management URL built from the profile, as the IdP handed back none) answered {why}",
                client.uri()
            )),
            Err(Refusal {
                why,
                unrenewed: Unrenewed::NoSuchClient,
            }) => Missing::Gone(format!(
                "its registration access token was refused ({why}) and the admin API knows no such client"
            )),
            Err(Refusal {
                why,
                unrenewed: Unrenewed::NotPossible,
            }) => Missing::Refused(why),
            Err(Refusal {
                why,
                unrenewed: Unrenewed::StillRefused | Unrenewed::NotTried,
            }) => {
                return Err(Error::Rejected(format!(
                    "reading client {} failed even with a freshly re-issued registration access token ({why})",
                    client.id()
                )));
            }
        };
        self.on_missing(stored, missing, ring).await
    }

    /// A stored client without a registration access token: kept as it is, unchecked.
    fn keep_unchecked(&self, stored: &ClientRecord, has_keys: bool) -> Result<(Action, String)> {
        let cfg = self.cfg;
        let id = stored.client_id().to_string();
        tracing::warn!(
            "{} holds client {id} without a registration_access_token: keeping it without checking the IdP",
            cfg.output.path.display()
        );
        if has_keys {
            tracing::warn!(
                "without a registration access token the signing keys cannot be published or rotated"
            );
        }
        output::persist(
            cfg,
            stored.clone(),
            Persist {
                action: Action::Trusted,
                keys: None,
                previous: Some(stored),
                extra: carried_notes(stored),
                registration_endpoint: self.known_registration_endpoint(),
                trust: self.trust_of(stored),
            },
        )?;
        Ok((Action::Trusted, id))
    }

    /// The stored client was not found, or its token was refused and not renewable:
    /// `DCR_ON_STALE` decides once the client is shown gone, by the IdP or by a proof that its
    /// credentials are refused. Credentials that still authenticate are kept; when nothing
    /// tells, nothing is registered.
    async fn on_missing(
        &self,
        stored: &ClientRecord,
        missing: Missing,
        ring: Option<&mut KeyRing>,
    ) -> Result<(Action, String)> {
        let cfg = self.cfg;
        let id = stored.client_id().to_string();
        let (why, from_token) = match missing {
            Missing::Gone(evidence) => {
                return self
                    .gone(stored, "is gone at the IdP", &evidence, ring)
                    .await;
            }
            Missing::NotProven(why) => (why, false),
            Missing::Refused(why) => (why, true),
        };
        // The IdP did not say: is the client still there? Its credentials tell.
        let proof = self
            .try_prove(stored, ring.as_deref().map(|r| (r, None)))
            .await?;
        // An update whose answer was lost may have carried new credentials with the new
        // token: then refused credentials do not show the client is gone. Nothing is
        // registered, and the app cannot start with these: exit 3.
        let pending = stored
            .meta()
            .and_then(|m| m.get("pending_update"))
            .and_then(Value::as_str);
        if let (Some(Proof::Refused(p)), Some(at)) = (&proof, pending) {
            return Err(Error::Rejected(format!(
                "client {} cannot be managed ({why}) and its credentials are refused ({p}), but an update sent at {at} \
                 got no answer, which may have carried new credentials: the client may live on, so nothing was \
                 registered. Admin action: {}; or delete the client at the IdP and move {} away",
                id.escape_debug(),
                self.admin_action(&id),
                cfg.output.path.display()
            )));
        }
        let exists = match &proof {
            Some(Proof::Authenticated(_)) => Some(true),
            Some(Proof::Refused(_)) => Some(false),
            _ => None,
        };
        let gone_why = |outcome: &str| {
            if from_token {
                format!("its registration access token was refused ({why}) and {outcome}")
            } else {
                format!("{why}, and {outcome}")
            }
        };
        match decide::on_token_refused(exists, cfg.policies.on_stale) {
            OnTokenRefused::KeepUnmanaged => self.keep_unmanaged(stored, &why, None),
            OnTokenRefused::NotProven => {
                let proof = match proof {
                    Some(Proof::NotProven(p)) => p,
                    _ => "no proof at the token endpoint was possible".into(),
                };
                self.keep_unmanaged(stored, &why, Some(&proof))
            }
            OnTokenRefused::Fail if from_token => Err(self.refused_fail(&id, &why)),
            OnTokenRefused::Fail | OnTokenRefused::Reregister => {
                let cause = super::expiry::expired_cause(stored, std::time::SystemTime::now());
                self.gone(
                    stored,
                    "can no longer be used",
                    &gone_why(&format!("its credentials are refused too{cause}")),
                    ring,
                )
                .await
            }
        }
    }

    /// A client whose token died during this run (an update's answer was lost, or another
    /// writer re-issued it) and cannot be renewed: its credentials decide. Working, or not
    /// proven either way, they are kept (exit 0, "unmanaged"); refused, exit 3.
    /// `record`: the client as this run last saved it (a token it took, a pending mark).
    pub(super) async fn keep_if_proven(
        &self,
        record: ClientRecord,
        why: &str,
    ) -> Result<(Action, String)> {
        let keep = record.clone();
        match self.try_prove(&record, None).await? {
            Some(Proof::Refused(proof)) => Err(Error::Rejected(format!(
                "client {} cannot be managed ({why}), and the IdP refuses its credentials ({proof}). Admin action: {}",
                record.client_id().escape_debug(),
                self.admin_action(record.client_id())
            ))),
            Some(Proof::Authenticated(_)) => self.keep_unmanaged(&keep, why, None),
            Some(Proof::NotProven(proof)) => self.keep_unmanaged(&keep, why, Some(&proof)),
            None => self.keep_unmanaged(
                &keep,
                why,
                Some("no proof at the token endpoint was possible"),
            ),
        }
    }

    /// The stored client is shown gone: `DCR_ON_STALE` decides.
    /// `state` says what the evidence shows: "is gone at the IdP" only when the IdP said
    /// so about the client itself; "can no longer be used" when its token and credentials are
    /// both refused (deleted, or its credentials revoked or expired: the answers cannot tell).
    async fn gone(
        &self,
        stored: &ClientRecord,
        state: &str,
        evidence: &str,
        ring: Option<&mut KeyRing>,
    ) -> Result<(Action, String)> {
        let cfg = self.cfg;
        let id = stored.client_id();
        match cfg.policies.on_stale {
            StalePolicy::Reregister => {
                tracing::warn!(
                    "stored client {id} {state} ({evidence}); DCR_ON_STALE=reregister: registering a new client"
                );
                self.register_flow(Action::Reregistered, ring).await
            }
            StalePolicy::Fail => Err(Error::Rejected(format!(
                "the stored client {id} {state} ({evidence}). Set DCR_ON_STALE=reregister to register a new one \
                 automatically, or DCR_FORCE_REPLACE=true for one run, or move {} away",
                cfg.output.path.display()
            ))),
        }
    }

    /// The token is refused for good, and the credentials work (or nothing proves they do
    /// not: `not_proven` says why): the app can run with them, and no second client is
    /// registered.
    fn keep_unmanaged(
        &self,
        stored: &ClientRecord,
        why: &str,
        not_proven: Option<&str>,
    ) -> Result<(Action, String)> {
        match not_proven {
            None => tracing::warn!("{}", self.still_exists(stored, why)),
            Some(proof) => tracing::warn!(
                "client {} could not be read ({why}), and whether its credentials still work is not proven: {proof}. \
                 The stored credentials are kept as they are and nothing is registered, so that a live client is never \
                 duplicated. Check the client at the IdP: if it is gone, move {} away (or set DCR_FORCE_REPLACE=true \
                 for one run); else restore its management ({})",
                stored.client_id().escape_debug(),
                self.cfg.output.path.display(),
                self.admin_action(stored.client_id())
            ),
        }
        // Our notes stay (an update in flight when the token died: later runs say why).
        let extra = carried_notes(stored);
        output::persist(
            self.cfg,
            stored.clone(),
            Persist {
                action: Action::Unmanaged,
                keys: None,
                previous: Some(stored),
                extra,
                registration_endpoint: self.known_registration_endpoint(),
                trust: self.trust_of(stored),
            },
        )?;
        Ok((Action::Unmanaged, stored.client_id().to_string()))
    }

    /// Deletes the stored client at the IdP (RFC 7592), renewing a refused token once. Only a
    /// deletion the IdP confirmed (2xx, or 404 at the URL it handed back) is success:
    /// anything else is exit 3, and the caller keeps the files, which are the only record of
    /// a client that may live on.
    pub async fn delete_stored(&self, stored: &ClientRecord) -> Result<()> {
        let id = stored.client_id().escape_debug().to_string();
        let keep = |why: String| {
            Error::Rejected(format!(
                "client {id} was not deleted at the IdP: {why}. {} and the key files are kept: they are the only record \
                 of the client. Delete it at the IdP by hand (then remove the files), or restore its management",
                self.cfg.output.path.display()
            ))
        };
        let Some(mut client) = self.managed(stored).await? else {
            return Err(keep("no registration_access_token is stored".into()));
        };
        match self.delete_client(&mut client).await? {
            Ok(Delete::Deleted) => Ok(()),
            Ok(Delete::NotFound) if stored.client_uri().is_some() => {
                tracing::info!("client {id} was already gone at {}", client.uri());
                Ok(())
            }
            Ok(Delete::NotFound) => Err(keep(format!(
                "{} (a URL built from the profile) answered 404, which does not prove the client is gone",
                client.uri()
            ))),
            Ok(Delete::Forbidden(why)) => Err(keep(format!(
                "the IdP refuses to delete it ({why}); it may not delete clients at all"
            ))),
            Err(Refusal {
                unrenewed: Unrenewed::NoSuchClient,
                ..
            }) => {
                tracing::info!("client {id} was already gone (the admin API knows no such client)");
                Ok(())
            }
            Err(Refusal { why, .. }) => Err(keep(format!(
                "its registration access token was refused ({why}) and could not be renewed"
            ))),
        }
    }
}
