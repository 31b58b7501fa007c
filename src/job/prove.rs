//! Proving credentials before exit 0: after registering, updating or rotating, the client
//! authenticates at the token endpoint with exactly what was written (the secret, or an
//! assertion signed by the key about to become current). The verdict rests on a comparison
//! with deliberately wrong credentials, never on one server's wording (`idp::token::judge`):
//! when the answers do not tell, the proof says "not proven" and the run goes on with a
//! warning.

use super::session::Session;
use crate::error::{Error, Result};
use crate::idp::token::{ClientCredential, Grant, Proof, judge};
use crate::local::keyring::{KeyRing, Plan};
use crate::record::ClientRecord;
use secrecy::SecretString;
use serde_json::Value;

/// The credential a record authenticates with, prepared for one proof: the real one and the
/// control (the same kind, deliberately wrong).
enum Prepared {
    Basic(SecretString, SecretString),
    Post(SecretString, SecretString),
    Assertion(SecretString, SecretString),
}

impl Prepared {
    fn real(&self) -> ClientCredential<'_> {
        match self {
            Prepared::Basic(s, _) => ClientCredential::Basic(s),
            Prepared::Post(s, _) => ClientCredential::Post(s),
            Prepared::Assertion(a, _) => ClientCredential::Assertion(a),
        }
    }

    fn control(&self) -> ClientCredential<'_> {
        match self {
            Prepared::Basic(_, s) => ClientCredential::Basic(s),
            Prepared::Post(_, s) => ClientCredential::Post(s),
            Prepared::Assertion(_, a) => ClientCredential::Assertion(a),
        }
    }
}

/// A secret no client has: 256 random bits.
fn wrong_secret() -> SecretString {
    SecretString::from(format!(
        "not-the-secret-{:016x}{:016x}{:016x}{:016x}",
        fastrand::u64(..),
        fastrand::u64(..),
        fastrand::u64(..),
        fastrand::u64(..)
    ))
}

/// A list member of the record (the IdP's view), else of the configuration.
fn strings(record: &ClientRecord, configured: Option<&Value>, field: &str) -> Vec<String> {
    record
        .get(field)
        .or(configured)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
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

    /// The grant to prove with: client credentials where the client is registered for it (a
    /// token is proof enough), else the code or refresh grant it has, with a value never
    /// issued. RFC 7591 §2: no `grant_types` means authorization_code.
    fn proof_grant(&self, record: &ClientRecord) -> Grant {
        let fields = &self.cfg.metadata.fields;
        let grants = strings(record, fields.get("grant_types"), "grant_types");
        let has = |g: &str| {
            grants.iter().any(|x| x == g) || (grants.is_empty() && g == "authorization_code")
        };
        if has("client_credentials") {
            // A scope the client asked for (or openid): some servers answer a request
            // without one before telling whether the client authenticated.
            let scope = record
                .get("scope")
                .or_else(|| fields.get("scope"))
                .and_then(Value::as_str)
                .and_then(|s| s.split_whitespace().next())
                .unwrap_or("openid")
                .to_string();
            return Grant::ClientCredentials { scope: Some(scope) };
        }
        if has("authorization_code") {
            let redirect_uri = strings(record, fields.get("redirect_uris"), "redirect_uris")
                .into_iter()
                .next();
            return Grant::AuthorizationCode { redirect_uri };
        }
        if has("refresh_token") {
            return Grant::RefreshToken;
        }
        Grant::ClientCredentials { scope: None }
    }

    /// The credential to prove with, and its control: the secret, or an assertion signed by
    /// the key at the head of `plan` (the one about to become current), or by the current
    /// key. `None`: nothing to prove with (no secret issued, keys served from jwks_uri, a
    /// public client).
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
            "client_secret_basic" => secret().map(|s| Prepared::Basic(s, wrong_secret())),
            "client_secret_post" => secret().map(|s| Prepared::Post(s, wrong_secret())),
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
                let Some((rec, m)) = key else {
                    return Ok(None);
                };
                let id = record.client_id();
                Some(Prepared::Assertion(
                    m.client_assertion(rec.alg, &rec.kid, id, audience)?,
                    m.spoiled_assertion(rec.alg, &rec.kid, id, audience)?,
                ))
            }
            _ => None,
        })
    }

    /// One proof; `None` when there is nothing to prove with or nowhere to prove it.
    pub(super) async fn try_prove(
        &self,
        record: &ClientRecord,
        keys: Option<(&KeyRing, Option<&Plan>)>,
    ) -> Result<Option<Proof>> {
        let (endpoint, audience) = match self.token_endpoint_and_audience().await {
            Ok(e) => e,
            Err(e) => {
                tracing::info!("not proving the credentials: no token endpoint ({e})");
                return Ok(None);
            }
        };
        let Some(cred) = self.credential(record, keys, audience.as_str())? else {
            return Ok(None);
        };
        let grant = self.proof_grant(record);
        let id = record.client_id();
        let real = self
            .idp
            .token_request(&endpoint, id, cred.real(), &grant)
            .await?;
        let control = if real.issued || real.error == "invalid_client" {
            None
        } else {
            Some(
                self.idp
                    .token_request(&endpoint, id, cred.control(), &grant)
                    .await?,
            )
        };
        let proof = judge(&real, control.as_ref());
        tracing::debug!(
            grant = grant.name(),
            "proof of client {}: {proof:?}",
            id.escape_debug()
        );
        Ok(Some(proof))
    }

    /// Proves the written credentials (`DCR_VERIFY_CREDENTIALS`). Refused is exit 3, before
    /// any key is promoted; not proven only warns.
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
            Some(Proof::NotProven(why)) => {
                tracing::warn!(
                    "client {id}'s credentials are not proven at the token endpoint: {why}. Going on; \
                     DCR_VERIFY_CREDENTIALS=false skips the proof"
                );
                Ok(())
            }
            Some(Proof::Refused(why)) => Err(Error::Rejected(format!(
                "client {id} is recorded in {}, but the IdP refuses its credentials at the token endpoint ({why}){}; \
                 no key was promoted. Check the client's auth method and keys at the IdP \
                 (DCR_VERIFY_CREDENTIALS=false skips this proof)",
                self.cfg.output.path.display(),
                super::expiry::expired_cause(record, std::time::SystemTime::now())
            ))),
        }
    }
}
