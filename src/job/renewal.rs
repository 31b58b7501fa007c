//! A refused registration access token: renewed with the admin API where the record is proven
//! ours, else the error that names the admin action. A client whose token is refused but
//! whose credentials still authenticate is never registered twice.

use super::decide::{self, OnRatRefused};
use super::session::Session;
use crate::error::{Error, Result};
use crate::record::ClientRecord;
use reqwest::Url;
use secrecy::SecretString;
use serde_json::Value;

/// What renewing a refused registration access token came to.
pub(super) enum Renewal {
    Token(SecretString),
    /// The admin API does not know the client.
    NoSuchClient,
    /// No admin token or re-issue endpoint.
    NotPossible,
}

impl Session<'_> {
    /// Why a client whose token was refused but whose credentials still work is kept as it
    /// is, and what restores its management.
    pub(super) fn still_exists(&self, stored: &ClientRecord, why: &str) -> String {
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
        format!(
            "client {} cannot be managed ({why}), but the client exists: its credentials still authenticate at the \
             token endpoint{pending}. It is kept as it is: registering another client would \
             duplicate it, and nothing about it (drift, keys, secret) can be updated until its management is restored. \
             Admin action: {}; or delete the client at the IdP and move {} away",
            stored.client_id().escape_debug(),
            self.admin_action(stored.client_id()),
            cfg.output.path.display()
        )
    }

    /// How an operator gets a refused registration access token replaced.
    pub(super) fn admin_action(&self, id: &str) -> String {
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
    pub(super) fn refused_fail(&self, id: &str, why: &str) -> Error {
        let how = self.admin_action(id);
        Error::Rejected(format!(
            "the IdP rejected the stored registration access token for client {id} ({why}): the client is gone or the token \
             was revoked. Admin action: {how}; or set DCR_ON_STALE=reregister to register a new client"
        ))
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
                     written), set DCR_STATE_KEY to the old admin credential for one run (it re-seals the record with that \
                     key; keep DCR_STATE_KEY set from then on), or, where the IdP lets clients choose their id (not \
                     Keycloak), set DCR_CLIENT_ID to that client; otherwise move the file away (docs/how-to.md)",
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
        match keycloak {
            Some(api) => {
                let reissued = self
                    .as_admin(&api.lookup(id), |admin| async move {
                        self.idp.keycloak_reissue_rat(api, id, &admin).await
                    })
                    .await?;
                // Keycloak's documented admin API, asked about this client by its clientId:
                // no match means the realm has no such client.
                Ok(reissued.map_or(Renewal::NoSuchClient, Renewal::Token))
            }
            None => {
                let template = rat_endpoint.as_deref().unwrap_or_default();
                let url = cfg.endpoint_for(template, "DCR_RAT_ENDPOINT", id)?;
                match self.reissue(&url).await? {
                    Some(t) => Ok(Renewal::Token(t)),
                    None => {
                        // A 404 there is the route's answer or the client's: not proven gone.
                        tracing::warn!(
                            "re-issuing the registration access token of {id} at {url} answered 404: the route may \
                             not exist at this IdP, or the client may not; not proven either way"
                        );
                        Ok(Renewal::NotPossible)
                    }
                }
            }
        }
    }

    /// One RAT re-issue; `None` when the admin API does not know the client.
    pub(super) async fn reissue(&self, url: &Url) -> Result<Option<SecretString>> {
        self.as_admin(url, |admin| async move {
            self.idp.reissue_rat(url, &admin).await
        })
        .await
    }
}
