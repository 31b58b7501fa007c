//! Proving a client's credentials at the token endpoint without reading meaning into one
//! server's error words. Servers disagree on what a refusal looks like: Keycloak answers a
//! wrong secret and a client without a service account alike with `401 unauthorized_client`,
//! a SATOSA-style front answers every failed authentication with `403 unauthorized_client`,
//! glewlwyd with an empty 403. So a proof is a comparison: the real credentials, then (unless
//! a token was issued) a control request with deliberately wrong credentials and the same
//! grant. What the credential changes is what authentication decided ([`judge`]).

use super::answer::{clip, json_object};
use super::http::{Auth, Body, Reply, form};
use super::retry::Attempt;
use super::{Call, Idp};
use crate::error::Result;
use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// How the client authenticates.
#[derive(Clone, Copy)]
pub enum ClientCredential<'a> {
    /// `client_secret_basic`.
    Basic(&'a SecretString),
    /// `client_secret_post`.
    Post(&'a SecretString),
    /// `private_key_jwt`: a signed client assertion (RFC 7523 §2.2).
    Assertion(&'a SecretString),
}

/// The grant a proof asks for: one the client is registered for, so that a client that
/// authenticates gets past client authentication (RFC 6749 §4.1.3: the server authenticates
/// the client before it looks at the code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// RFC 6749 §4.4: a token proves the credentials outright.
    ClientCredentials { scope: Option<String> },
    /// RFC 6749 §4.1.3 with a code that was never issued: `invalid_grant` after
    /// authentication.
    AuthorizationCode { redirect_uri: Option<String> },
    /// RFC 6749 §6 with a refresh token that was never issued.
    RefreshToken,
}

impl Grant {
    pub fn name(&self) -> &'static str {
        match self {
            Grant::ClientCredentials { .. } => "client_credentials",
            Grant::AuthorizationCode { .. } => "authorization_code",
            Grant::RefreshToken => "refresh_token",
        }
    }
}

/// What the token endpoint answered one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAnswer {
    pub status: u16,
    /// A token was issued.
    pub issued: bool,
    /// The OAuth `error` (empty when there is none).
    pub error: String,
    pub description: String,
}

impl std::fmt::Display for TokenAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.issued, self.error.as_str(), self.description.as_str()) {
            (true, ..) => write!(f, "{} with a token", self.status),
            (false, "", _) => write!(f, "{} without an OAuth error", self.status),
            (false, e, "") => write!(f, "{} {e}", self.status),
            (false, e, d) => write!(f, "{} {e}: {d}", self.status),
        }
    }
}

impl TokenAnswer {
    fn of(r: &Reply) -> TokenAnswer {
        let doc = json_object(r).unwrap_or_default();
        let text = |k: &str| {
            doc.get(k)
                .and_then(Value::as_str)
                .map(clip)
                .unwrap_or_default()
        };
        let token = doc.get("access_token").and_then(Value::as_str);
        if let Some(t) = token {
            // Discarded, and remembered as a secret so no log can show it.
            crate::secret::remember(t);
        }
        TokenAnswer {
            status: r.status,
            issued: r.is_success() && token.is_some_and(|t| !t.is_empty()),
            error: text("error"),
            description: text("error_description"),
        }
    }

    /// A refusal by the answer's own standard: 401/403, or an OAuth error that names the
    /// client or its authorisation.
    fn is_auth_failure(&self) -> bool {
        matches!(self.status, 401 | 403)
            || matches!(
                self.error.as_str(),
                "invalid_client" | "unauthorized_client" | "access_denied"
            )
    }
}

/// What a proof showed about the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// The IdP authenticated the client; the evidence.
    Authenticated(String),
    /// The IdP does not accept these credentials; the evidence.
    Refused(String),
    /// The answers do not tell; why.
    NotProven(String),
}

/// The verdict on the real credentials' answer, given the answer to wrong ones (`None` when
/// no control was sent because a token was issued).
pub fn judge(real: &TokenAnswer, control: Option<&TokenAnswer>) -> Proof {
    if real.issued {
        return Proof::Authenticated(format!("{real}"));
    }
    if real.error == "invalid_client" {
        // RFC 6749 §5.2: the protocol's own word for a failed client authentication.
        return Proof::Refused(format!("{real} (RFC 6749 §5.2)"));
    }
    let Some(control) = control else {
        return Proof::NotProven(format!("{real}, and no comparison was made"));
    };
    if (real.status, &real.error) != (control.status, &control.error) {
        return Proof::Authenticated(format!(
            "{real}, where wrong credentials get {control}: the credentials made the difference"
        ));
    }
    if real == control && real.is_auth_failure() {
        return Proof::Refused(format!("{real}, exactly as it answers wrong credentials"));
    }
    if real == control {
        return Proof::NotProven(format!(
            "the IdP answers these and wrong credentials alike ({real}) before telling whether the client \
             authenticated"
        ));
    }
    Proof::NotProven(format!(
        "{real}, where wrong credentials get {control}: they differ only in wording, which proves nothing"
    ))
}

impl Idp {
    /// One token request authenticated as `client_id`; the token, if any, is discarded.
    pub async fn token_request(
        &self,
        endpoint: &Url,
        client_id: &str,
        credential: ClientCredential<'_>,
        grant: &Grant,
    ) -> Result<TokenAnswer> {
        let (auth, mut pairs) = client_auth(client_id, credential);
        pairs.push(("grant_type", grant.name()));
        // A value that was never issued: 256 random bits, so no server can have issued it.
        let never_issued = format!(
            "{:016x}{:016x}{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..),
            fastrand::u64(..),
            fastrand::u64(..)
        );
        match grant {
            Grant::ClientCredentials { scope } => {
                pairs.extend(scope.as_deref().map(|s| ("scope", s)))
            }
            Grant::AuthorizationCode { redirect_uri } => {
                pairs.push(("code", &never_issued));
                pairs.extend(redirect_uri.as_deref().map(|u| ("redirect_uri", u)));
            }
            Grant::RefreshToken => pairs.push(("refresh_token", &never_issued)),
        }
        let form = form(pairs);
        let decide = |r: Reply| Attempt::Done(TokenAnswer::of(&r));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, error: &str, description: &str) -> TokenAnswer {
        TokenAnswer {
            status,
            issued: false,
            error: error.into(),
            description: description.into(),
        }
    }

    fn authenticated(p: &Proof) -> bool {
        matches!(p, Proof::Authenticated(_))
    }

    #[test]
    fn a_token_proves_it_and_invalid_client_refutes_it() {
        let token = TokenAnswer {
            issued: true,
            ..answer(200, "", "")
        };
        assert!(authenticated(&judge(&token, None)));
        let refused = answer(401, "invalid_client", "bad secret");
        assert!(matches!(judge(&refused, Some(&refused)), Proof::Refused(_)));
    }

    #[test]
    fn keycloak_a_satosa_front_glewlwyd_and_node_are_told_apart_by_the_control() {
        // Keycloak, a code-flow client: the bogus code is judged after authentication.
        let wrong = answer(
            401,
            "unauthorized_client",
            "Invalid client or Invalid client credentials",
        );
        let real = answer(400, "invalid_grant", "Code not valid");
        assert!(authenticated(&judge(&real, Some(&wrong))));
        // Keycloak, client_credentials without a service account: same status and error as a
        // wrong secret, other words: not proven (a proof never reads the words).
        let no_service_account = answer(
            401,
            "unauthorized_client",
            "Client not enabled to retrieve service account",
        );
        assert!(matches!(
            judge(&no_service_account, Some(&wrong)),
            Proof::NotProven(_)
        ));
        // A SATOSA-style front: an expired secret is answered exactly like a wrong one.
        let satosa = answer(403, "unauthorized_client", "client authentication failed");
        assert!(matches!(judge(&satosa, Some(&satosa)), Proof::Refused(_)));
        // glewlwyd: a wrong secret is an empty 403, a good one with a bogus code is not.
        assert!(authenticated(&judge(
            &answer(400, "invalid_grant", ""),
            Some(&answer(403, "", ""))
        )));
        assert!(matches!(
            judge(&answer(403, "", ""), Some(&answer(403, "", ""))),
            Proof::Refused(_)
        ));
        // node-oidc-provider: a grant the client may not use, after authenticating it.
        assert!(authenticated(&judge(
            &answer(
                400,
                "invalid_request",
                "requested grant type is not allowed for this client"
            ),
            Some(&answer(
                401,
                "invalid_client",
                "client authentication failed"
            ))
        )));
    }

    #[test]
    fn answers_that_come_before_authentication_prove_nothing() {
        // A server that checks the code first: both invalid_grant.
        let both = answer(400, "invalid_grant", "code expired");
        assert!(matches!(judge(&both, Some(&both)), Proof::NotProven(_)));
        // No token endpoint there.
        let missing = answer(404, "", "");
        assert!(
            matches!(
                judge(&missing, Some(&missing)),
                Proof::NotProven(_) | Proof::Refused(_)
            ) && !matches!(judge(&missing, Some(&missing)), Proof::Refused(_))
        );
        assert!(matches!(judge(&both, None), Proof::NotProven(_)));
    }
}
