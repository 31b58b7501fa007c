//! Proving credentials before exit 0: after registering, updating or rotating, the client
//! authenticates at the token endpoint with exactly what was written (the secret, or an
//! assertion signed by the key about to become current). None of the tools people use today
//! does this; it turns "registered" into "works".

use super::session::Session;
use crate::error::{Error, Result};
use crate::idp::token::{ClientCredential, Proof};
use crate::local::keyring::{KeyRing, Plan};
use crate::record::ClientRecord;
use secrecy::SecretString;
use serde_json::Value;

/// The credential a record authenticates with, prepared for one request.
enum Prepared {
    Basic(SecretString),
    Post(SecretString),
    Assertion(SecretString),
}

impl Session<'_> {
    /// The auth method the client has: what the IdP holds (one-element arrays read as their
    /// element), else what we asked, else RFC 7591's default.
    fn auth_method(&self, record: &ClientRecord) -> String {
        let held = match record.get("token_endpoint_auth_method") {
            Some(Value::Array(a)) if a.len() == 1 => a[0].as_str(),
            Some(v) => v.as_str(),
            None => None,
        };
        held.or_else(|| self.cfg.metadata.auth_method())
            .unwrap_or("client_secret_basic")
            .to_string()
    }

    /// The credential to prove with: the secret, or an assertion signed by the key at the head
    /// of `plan` (the one about to become current), or by the current key. `None`: nothing to
    /// prove with (no secret issued, keys served from jwks_uri, a public client).
    fn credential(
        &self,
        record: &ClientRecord,
        keys: Option<(&KeyRing, Option<&Plan>)>,
        audience: &str,
    ) -> Result<Option<Prepared>> {
        let secret = || {
            record
                .client_secret()
                .map(|s| crate::secret::secret(s.to_string()))
        };
        Ok(match self.auth_method(record).as_str() {
            "client_secret_basic" => secret().map(Prepared::Basic),
            "client_secret_post" => secret().map(Prepared::Post),
            "private_key_jwt" => {
                let jwks_uri = self
                    .cfg
                    .signing_key
                    .as_ref()
                    .is_some_and(|k| k.jwks_uri.is_some());
                let Some((ring, plan)) = keys.filter(|_| !jwks_uri) else {
                    return Ok(None);
                };
                let key = match plan.and_then(|p| p.publish.first()) {
                    Some(r) => ring.material(&r.thumbprint).map(|m| (r, m)),
                    None => ring.current(),
                };
                let Some((rec, material)) = key else {
                    return Ok(None);
                };
                Some(Prepared::Assertion(material.client_assertion(
                    rec.alg,
                    &rec.kid,
                    record.client_id(),
                    audience,
                )?))
            }
            _ => None,
        })
    }

    /// One proof attempt; `None` when there is nothing to prove with or nowhere to prove it.
    pub(super) async fn try_prove(
        &self,
        record: &ClientRecord,
        keys: Option<(&KeyRing, Option<&Plan>)>,
    ) -> Result<Option<Proof>> {
        let endpoint = match self.token_endpoint().await {
            Ok(e) => e,
            Err(e) => {
                tracing::info!("not proving the credentials: no token endpoint ({e})");
                return Ok(None);
            }
        };
        let Some(cred) = self.credential(record, keys, endpoint.as_str())? else {
            return Ok(None);
        };
        let credential = match &cred {
            Prepared::Basic(s) => ClientCredential::Basic(s),
            Prepared::Post(s) => ClientCredential::Post(s),
            Prepared::Assertion(a) => ClientCredential::Assertion(a),
        };
        // A scope the client asked for (or openid): some servers answer a request without one
        // before telling whether the client authenticated.
        let scope = record
            .get("scope")
            .or_else(|| self.cfg.metadata.fields.get("scope"))
            .and_then(Value::as_str)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or("openid")
            .to_string();
        let proof = self
            .idp
            .authenticate(&endpoint, record.client_id(), credential, Some(&scope))
            .await?;
        Ok(Some(proof))
    }

    /// Proves the written credentials (`DCR_VERIFY_CREDENTIALS`). `invalid_client` is exit 3,
    /// before any key is promoted; an answer that says neither yes nor no only warns.
    pub(super) async fn prove(
        &self,
        record: &ClientRecord,
        keys: Option<(&KeyRing, Option<&Plan>)>,
    ) -> Result<()> {
        if !self.cfg.policies.verify_credentials {
            return Ok(());
        }
        let id = record.client_id().escape_debug().to_string();
        match self.try_prove(record, keys).await? {
            None => Ok(()),
            Some(Proof::Authenticated(how)) => {
                tracing::info!(
                    "client {id} authenticates at the token endpoint with the written credentials ({how})"
                );
                Ok(())
            }
            Some(Proof::Unknown(why)) => {
                tracing::warn!(
                    "could not prove client {id}'s credentials at the token endpoint ({why}); set DCR_TOKEN_ENDPOINT, \
                     or DCR_VERIFY_CREDENTIALS=false to skip the proof"
                );
                Ok(())
            }
            Some(Proof::Refused(why)) => Err(Error::Rejected(format!(
                "client {id} is recorded in {}, but the IdP refuses its credentials at the token endpoint ({why}); \
                 no key was promoted. Check the client's auth method and keys at the IdP \
                 (DCR_VERIFY_CREDENTIALS=false skips this proof)",
                self.cfg.output.path.display()
            ))),
        }
    }
}
