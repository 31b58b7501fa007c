//! A stored client: read it (RFC 7592), renewing a refused registration access token with the
//! admin API (renewal.rs); bring it in line (converge.rs); or, when it is gone, apply
//! `DCR_ON_STALE`. Also deleting it.

use super::decide::{self, Action, OnTokenRefused};
use super::managed::{ManagedClient, Refusal, Unrenewed};
use super::output;
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
    /// 404 at its management URL, or the admin API does not know the client.
    Gone,
    /// The token was refused and could not be renewed.
    Refused(String),
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
            Ok(Read::NotFound(why)) => {
                tracing::warn!("reading client {} at {}: {why}", client.id(), client.uri());
                Missing::Gone
            }
            Err(Refusal {
                unrenewed: Unrenewed::NoSuchClient,
                ..
            }) => Missing::Gone,
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
            Action::Trusted,
            None,
            Some(stored),
            Map::new(),
            self.known_registration_endpoint(),
        )?;
        Ok((Action::Trusted, id))
    }

    /// The stored client was not found, or its token was refused and not renewable:
    /// `DCR_ON_STALE` decides, unless its credentials show that it still exists.
    async fn on_missing(
        &self,
        stored: &ClientRecord,
        missing: Missing,
        ring: Option<&mut KeyRing>,
    ) -> Result<(Action, String)> {
        let cfg = self.cfg;
        let id = stored.client_id();
        let refused = match missing {
            Missing::Gone => None,
            Missing::Refused(why) => {
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
                    OnTokenRefused::Fail => return Err(self.refused_fail(id, &why)),
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

    pub async fn delete_stored(&self, stored: &ClientRecord) -> Result<()> {
        let id = stored.client_id().to_string();
        let Some(mut client) = self.managed(stored).await? else {
            tracing::warn!(
                "cannot delete client {id} at the IdP: no registration_access_token stored; delete it there by hand"
            );
            return Ok(());
        };
        // 401/403: the token may have been revoked while the client lives on: renewed once.
        match self.delete_client(&mut client).await {
            Ok(Ok(Delete::Deleted | Delete::NotFound))
            | Ok(Err(Refusal {
                unrenewed: Unrenewed::NoSuchClient,
                ..
            })) => Ok(()),
            Ok(Err(Refusal { why, .. })) => {
                tracing::warn!(
                    "client {id} may still exist at the IdP: its registration access token was refused ({why}) and cannot be renewed"
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
