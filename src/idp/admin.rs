//! Calls made with the admin token: mint an IAT, revoke it (Keycloak), re-issue a client's
//! registration access token; and fetching the admin token itself by client credentials.

use super::answer::{describe, json_object, parse_iat, parse_rat};
use super::http::{Body, Reply, form};
use super::profile::MintStyle;
use super::retry::Attempt;
use super::token::{ClientCredential, client_auth};
use super::{Call, ClientAuth, Idp, MintSettings};
use crate::error::{Error, Result};
use crate::secret::secret;
use reqwest::{Method, Url};
use secrecy::SecretString;
use serde_json::{Value, json};
use std::time::Duration;

/// The answer of an admin-API call: done, or the admin token was refused (401: expired or
/// revoked), which a client-credentials token can recover from by being fetched again.
pub enum Admin<T> {
    Done(T),
    Refused(String),
}

/// A minted IAT.
pub struct Minted {
    pub token: SecretString,
    /// Keycloak's IAT id, for revoking it after use.
    pub id: Option<String>,
}

/// What revoking a used IAT came to.
pub enum Revoked {
    /// Revoked now, or already gone (404).
    Revoked,
    /// The IdP refused; it expires on its own.
    Refused(String),
}

/// The body of an IAT mint request in the profile's style.
pub fn mint_body(s: &MintSettings, style: MintStyle) -> Value {
    match style {
        MintStyle::EmpowerNow => {
            let mut b = json!({"label": s.label, "expires_in": s.expires_in});
            b[s.max_uses_field.name()] = json!(s.max_uses);
            b
        }
        MintStyle::Keycloak => json!({"expiration": s.expires_in, "count": s.max_uses}),
    }
}

impl Idp {
    /// Mints an IAT in the profile's style. A 401 is `Admin::Refused`, so that a
    /// client-credentials admin token can be fetched again and the mint retried. Retrying a
    /// mint is harmless: an unused IAT just expires.
    pub async fn mint_iat(
        &self,
        endpoint: &Url,
        admin: &SecretString,
        s: &MintSettings,
        style: MintStyle,
    ) -> Result<Admin<Minted>> {
        let body = mint_body(s, style);
        let decide = |r: Reply| -> Attempt<Admin<Minted>> {
            if r.is_success() {
                return match parse_iat(&r) {
                    Ok(t) => {
                        let token = secret(t);
                        let id = json_object(&r)
                            .and_then(|o| o.get("id").and_then(Value::as_str).map(str::to_string));
                        Attempt::Done(Admin::Done(Minted { token, id }))
                    }
                    Err(why) => Attempt::Fatal(Error::Rejected(format!(
                        "minting an IAT at {endpoint}: the IdP answered {} but {why}",
                        r.status
                    ))),
                };
            }
            Attempt::Fatal(match r.status {
                401 => return Attempt::Done(Admin::Refused(describe(&r))),
                403 => Error::Rejected(format!(
                    "the admin token may not mint IATs at {endpoint} ({}): grant its client the IAT-minting permission \
                     (EmpowerNow: the admin API scope; Keycloak: manage-clients)",
                    describe(&r)
                )),
                404 | 405 => Error::Rejected(format!(
                    "no IAT endpoint at {endpoint} ({}): check DCR_IAT_ENDPOINT / IDP_BASE_URL / DCR_KEYCLOAK_REALM",
                    describe(&r)
                )),
                _ => Error::Rejected(format!(
                    "the IdP refused to mint an IAT at {endpoint} ({}); check DCR_IAT_* settings{}",
                    describe(&r),
                    if r.status == 400 {
                        " (and DCR_IAT_MAX_USES_FIELD: max_uses or max_usages)"
                    } else {
                        ""
                    }
                )),
            })
        };
        let call = Call::new("mint IAT", "DCR_IAT_ENDPOINT", Method::POST, endpoint)
            .bearer(admin)
            .body(Body::Json(&body));
        self.call(call, None, &decide).await
    }

    /// Revokes a used IAT (Keycloak's `DELETE …/clients-initial-access/{id}`).
    pub async fn revoke_iat(&self, url: &Url, admin: &SecretString) -> Result<Revoked> {
        let decide = |r: Reply| -> Attempt<Revoked> {
            match r.status {
                200..=299 | 404 => Attempt::Done(Revoked::Revoked),
                _ => Attempt::Done(Revoked::Refused(describe(&r))),
            }
        };
        let call = Call::new("revoke IAT", "DCR_IAT_ENDPOINT", Method::DELETE, url).bearer(admin);
        self.call(call, None, &decide).await
    }

    /// Asks the admin API for a new registration access token (EmpowerNow's
    /// `/api/admin/dcr/clients/{client_id}/tokens`). `None` when the client does not exist.
    pub async fn reissue_rat(
        &self,
        endpoint: &Url,
        admin: &SecretString,
    ) -> Result<Admin<Option<SecretString>>> {
        let body = json!({});
        let decide = |r: Reply| -> Attempt<Admin<Option<SecretString>>> {
            if r.is_success() {
                return match parse_rat(&r) {
                    Ok(t) => Attempt::Done(Admin::Done(Some(secret(t)))),
                    Err(why) => Attempt::Fatal(Error::Rejected(format!(
                        "re-issuing a registration access token at {endpoint} answered {} but {why}",
                        r.status
                    ))),
                };
            }
            Attempt::Fatal(match r.status {
                404 => return Attempt::Done(Admin::Done(None)),
                401 => return Attempt::Done(Admin::Refused(describe(&r))),
                403 => Error::Rejected(format!(
                    "the admin token may not re-issue registration access tokens at {endpoint} ({}); Keycloak: it needs \
                     realm-management manage-clients",
                    describe(&r)
                )),
                _ => Error::Rejected(format!(
                    "re-issuing a registration access token at {endpoint} failed ({}); check DCR_RAT_ENDPOINT",
                    describe(&r)
                )),
            })
        };
        let call = Call::new(
            "re-issue registration access token",
            "DCR_RAT_ENDPOINT",
            Method::POST,
            endpoint,
        )
        .bearer(admin)
        .body(Body::Json(&body));
        self.call(call, None, &decide).await
    }

    /// The client-credentials grant (RFC 6749 §4.4) for the admin token: the token and its
    /// lifetime, if the IdP said.
    pub async fn client_credentials(
        &self,
        endpoint: &Url,
        client_id: &str,
        secret_value: &SecretString,
        method: ClientAuth,
        scope: Option<&str>,
        resource: Option<&str>,
    ) -> Result<(SecretString, Option<Duration>)> {
        let credential = match method {
            ClientAuth::Basic => ClientCredential::Basic(secret_value),
            ClientAuth::Post => ClientCredential::Post(secret_value),
        };
        let (auth, mut pairs) = client_auth(client_id, credential);
        pairs.push(("grant_type", "client_credentials"));
        pairs.extend(scope.map(|s| ("scope", s)));
        pairs.extend(resource.map(|r| ("resource", r)));
        let form = form(pairs);
        let decide = |r: Reply| -> Attempt<(SecretString, Option<Duration>)> {
            if r.is_success() {
                let doc = json_object(&r).unwrap_or_default();
                return match doc.get("access_token").and_then(Value::as_str) {
                    Some(t) if !t.is_empty() => {
                        let ttl = doc
                            .get("expires_in")
                            .and_then(Value::as_u64)
                            .map(Duration::from_secs);
                        Attempt::Done((secret(t.to_string()), ttl))
                    }
                    _ => Attempt::Fatal(Error::Rejected(format!(
                        "the token endpoint {endpoint} answered {} without an access_token",
                        r.status
                    ))),
                };
            }
            Attempt::Fatal(Error::Rejected(match r.status {
                404 | 405 => format!(
                    "no token endpoint at {endpoint} ({}): check DCR_TOKEN_ENDPOINT (or DCR_ISSUER for discovery)",
                    describe(&r)
                ),
                _ => format!(
                    "the token endpoint {endpoint} refused the admin client DCR_ADMIN_CLIENT_ID={client_id} ({}); \
                     check DCR_ADMIN_CLIENT_SECRET, DCR_ADMIN_AUTH_METHOD, DCR_ADMIN_SCOPE and DCR_ADMIN_RESOURCE",
                    describe(&r)
                ),
            }))
        };
        let call = Call::new("admin token", "DCR_TOKEN_ENDPOINT", Method::POST, endpoint)
            .auth(auth)
            .body(Body::Form(&form));
        self.call(call, None, &decide).await
    }
}
