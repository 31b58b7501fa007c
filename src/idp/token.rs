//! Proving a client's credentials at the token endpoint (RFC 6749 §4.4 client credentials):
//! the IdP either authenticates the client or answers `invalid_client` (RFC 6749 §5.2).

use super::answer::{describe, json_object};
use super::http::{Auth, Body, Reply, form};
use super::retry::Attempt;
use super::{Call, Idp};
use crate::error::Result;
use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// How the client authenticates.
pub enum ClientCredential<'a> {
    /// `client_secret_basic`.
    Basic(&'a SecretString),
    /// `client_secret_post`.
    Post(&'a SecretString),
    /// `private_key_jwt`: a signed client assertion (RFC 7523 §2.2).
    Assertion(&'a SecretString),
}

/// What the token endpoint said about the credentials.
#[derive(Debug, PartialEq, Eq)]
pub enum Proof {
    /// A token, or an error that comes after authentication (`unauthorized_client`,
    /// `unsupported_grant_type`, `invalid_scope`, ...): the credentials work.
    Authenticated(String),
    /// `invalid_client`: the IdP does not accept these credentials.
    Refused(String),
    /// The answer says neither (no token endpoint there, a malformed request, ...).
    Unknown(String),
}

/// Sorts a token endpoint's answer to a client-credentials request.
pub fn proof_of(r: &Reply) -> Proof {
    if r.is_success() {
        return Proof::Authenticated(format!("{} (a token was issued)", r.status));
    }
    let error = json_object(r)
        .and_then(|o| o.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    match (r.status, error.as_str()) {
        (_, "invalid_client") | (401, _) => Proof::Refused(describe(r)),
        // No OAuth error at all: glewlwyd answers a failed client authentication so.
        (403, "") => Proof::Refused(describe(r)),
        // Errors that come after authentication (`scope_invalid` is glewlwyd's spelling).
        (
            400 | 403,
            "unauthorized_client"
            | "unsupported_grant_type"
            | "invalid_scope"
            | "scope_invalid"
            | "invalid_target"
            | "access_denied",
        ) => Proof::Authenticated(describe(r)),
        _ => Proof::Unknown(describe(r)),
    }
}

/// How a client authenticates at the token endpoint (RFC 6749 §2.3.1, RFC 7523 §2.2): the
/// Authorization header, and the members it adds to the form.
pub fn client_auth<'a>(
    client_id: &'a str,
    credential: ClientCredential<'a>,
) -> (Auth<'a>, Vec<(&'a str, &'a str)>) {
    match credential {
        ClientCredential::Basic(s) => (Auth::Basic(client_id, s), Vec::new()),
        ClientCredential::Post(s) => (
            Auth::None,
            vec![
                ("client_id", client_id),
                ("client_secret", s.expose_secret()),
            ],
        ),
        ClientCredential::Assertion(a) => (
            Auth::None,
            vec![
                ("client_id", client_id),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", a.expose_secret()),
            ],
        ),
    }
}

impl Idp {
    /// One client-credentials request authenticated as `client_id`; the token, if any, is
    /// discarded (it is remembered as a secret so no log can show it).
    /// `scope`: one the client may ask for; some servers (glewlwyd) refuse a request without
    /// one before telling whether the client authenticated.
    pub async fn authenticate(
        &self,
        endpoint: &Url,
        client_id: &str,
        credential: ClientCredential<'_>,
        scope: Option<&str>,
    ) -> Result<Proof> {
        let (auth, mut pairs) = client_auth(client_id, credential);
        pairs.push(("grant_type", "client_credentials"));
        pairs.extend(scope.map(|s| ("scope", s)));
        let form = form(pairs);
        let decide = |r: Reply| -> Attempt<Proof> {
            if let Some(t) = json_object(&r).and_then(|o| {
                o.get("access_token")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            }) {
                crate::secret::remember(&t);
            }
            Attempt::Done(proof_of(&r))
        };
        let call = Call::new(
            "prove the client's credentials",
            "DCR_TOKEN_ENDPOINT",
            Method::POST,
            endpoint,
        )
        .auth(auth)
        .body(Body::Form(&form));
        self.call(call, None, &decide).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            retry_after: None,
            content_type: "application/json".into(),
            location: None,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn invalid_client_is_told_apart_from_every_other_answer() {
        assert!(matches!(
            proof_of(&reply(200, r#"{"access_token":"t"}"#)),
            Proof::Authenticated(_)
        ));
        assert!(matches!(
            proof_of(&reply(401, r#"{"error":"invalid_client"}"#)),
            Proof::Refused(_)
        ));
        assert!(matches!(
            proof_of(&reply(400, r#"{"error":"invalid_client"}"#)),
            Proof::Refused(_)
        ));
        assert!(matches!(
            proof_of(&reply(400, r#"{"error":"unauthorized_client"}"#)),
            Proof::Authenticated(_)
        ));
        assert!(matches!(
            proof_of(&reply(404, r#"{"detail":"Not Found"}"#)),
            Proof::Unknown(_)
        ));
        // glewlwyd: a bad secret is an empty 403; a good one with a scope it does not grant is
        // 400 scope_invalid.
        assert!(matches!(proof_of(&reply(403, "")), Proof::Refused(_)));
        assert!(matches!(
            proof_of(&reply(400, r#"{"error":"scope_invalid"}"#)),
            Proof::Authenticated(_)
        ));
    }
}
