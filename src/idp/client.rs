//! The client's own calls: register (RFC 7591 §3) with an IAT, then read, update and delete
//! (RFC 7592 §2) with the registration access token.

use super::answer::{body_kind, describe, is_already_registered, json_object, parse_client};
use super::http::{Auth, Body, Reply};
use super::keycloak::{is_policy_refusal, policy_hint};
use super::retry::Attempt;
use super::{Call, Idp, UpdateMethod};
use crate::error::{Error, Result};
use crate::record::ClientRecord;
use crate::secret::remember_secrets;
use reqwest::{Method, Url};
use secrecy::SecretString;
use serde_json::{Map, Value};
use std::cell::Cell;

pub enum Registration {
    Created(ClientRecord),
    /// 401 on registration: the IAT is expired, used up or unknown.
    IatRejected(String),
    /// The requested client_id is taken.
    AlreadyExists(String),
}

/// An RFC 7592 answer: the registration access token was accepted, and what the call came
/// to; or the token was refused (401/403, or a 400 that says so). RFC 7592 §2 answers a
/// revoked token and a deleted client alike, so a refusal says nothing about the client.
pub enum Managed<T> {
    Accepted(T),
    TokenRefused(String),
}

/// An RFC 7592 read.
pub enum Read {
    Current(ClientRecord),
    /// 404/410 at the client's own management URL.
    NotFound(String),
}

/// An RFC 7592 update.
pub enum Update {
    /// The members the IdP answered with (possibly partial, possibly a new RAT; empty for 204).
    Answer(Map<String, Value>),
    /// 405/501: the IdP does not update clients with this method.
    Unsupported(String),
    /// 403 without `invalid_token`: the token is good (RFC 6750 §3.1) but the IdP does not
    /// allow this update (pyoidc: "Unsupported operation").
    Forbidden(String),
    /// 404/410: no such client, or (for PATCH) no such route.
    NotFound(String),
}

/// An RFC 7592 delete that the IdP answered with the token accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delete {
    Deleted,
    /// 404/410: it was not there (any more).
    NotFound,
    /// 403 without `invalid_token`: the IdP does not delete clients (pyoidc: "Unsupported
    /// operation"), or not this one.
    Forbidden(String),
}

/// What sets the URL of RFC 7592 calls, for the message about a redirect.
const MANAGED_BY: &str = "DCR_OUTPUT's registration_client_uri";

/// Whether an RFC 7592 answer says the registration access token was refused: 401 or 403
/// (RFC 6750 §3.1), or a 400 whose OAuth error says so (some servers answer every bad, used
/// or revoked token with `400 access_denied` or `invalid_token`). A 403 `insufficient_scope`
/// is not: the token was accepted and a policy said no ([`policy_refusal`]).
pub fn token_refused(r: &Reply) -> bool {
    match r.status {
        401 => true,
        403 => !is_policy_refusal(r),
        400 => json_object(r)
            .and_then(|o| o.get("error").and_then(Value::as_str).map(str::to_string))
            .is_some_and(|e| {
                matches!(
                    e.as_str(),
                    "invalid_token" | "access_denied" | "unauthorized"
                )
            }),
        _ => false,
    }
}

/// Whether an answer names the token as the problem (RFC 6750 §3.1 `invalid_token`).
fn says_invalid_token(r: &Reply) -> bool {
    json_object(r)
        .and_then(|o| o.get("error").and_then(Value::as_str).map(str::to_string))
        .is_some_and(|e| e == "invalid_token")
}

/// A policy refusal (RFC 6750 §3.1 `insufficient_scope`; Keycloak's registration policies)
/// is final, and says nothing about the token or the client: nothing is renewed or
/// registered because of it.
fn policy_refusal(what: &str, uri: &Url, r: &Reply) -> Error {
    let detail = describe(r);
    Error::Rejected(format!(
        "{what} at {uri} was refused by the IdP's policy ({detail}){}; the registration access token was accepted, \
         so nothing was renewed or registered",
        policy_hint(&detail)
    ))
}

/// The name a registration is known by in messages: its client_id or client_name.
pub fn display_name(metadata: &Map<String, Value>) -> String {
    metadata
        .get("client_id")
        .or_else(|| metadata.get("client_name"))
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)")
        .to_string()
}

/// The client_id an unusable answer names, printable, for the "look for an orphan" message.
fn answered_id(r: &Reply) -> Option<String> {
    json_object(r)?.get("client_id")?.as_str().map(|id| {
        format!(
            "{:?} (as the IdP answered it)",
            id.escape_debug().to_string()
        )
    })
}

/// When an attempt of a registration may have created the client without this run knowing:
/// it got no answer, or a 5xx (a gateway timeout, a server that failed after inserting).
#[derive(Debug, Clone, Copy, Default)]
pub struct Uncertain(pub Option<std::time::SystemTime>);

impl Uncertain {
    /// "the attempt at 12:00:03Z", for messages that name a possible orphan.
    pub fn at(&self) -> String {
        self.0.map_or_else(String::new, |t| {
            format!("the attempt at {}", humantime::format_rfc3339_seconds(t))
        })
    }
}

/// What an answer to a registration means. `uncertain`: an earlier attempt may have created
/// the client already.
fn sort_registration(
    r: Reply,
    endpoint: &Url,
    name: &str,
    uncertain: Uncertain,
) -> Attempt<Registration> {
    if r.is_success() {
        return match parse_client(&r) {
            Ok(doc) => Attempt::Done(Registration::Created(doc)),
            Err(why) => Attempt::Fatal(Error::Rejected(format!(
                "registration at {endpoint} answered {} but {why}; the client may exist at the IdP \
                 without a usable record here: check for an orphaned client {}",
                r.status,
                answered_id(&r).unwrap_or_else(|| format!("{name:?}"))
            ))),
        };
    }
    if r.status == 401 {
        return Attempt::Done(Registration::IatRejected(describe(&r)));
    }
    if is_already_registered(&r) {
        return Attempt::Done(Registration::AlreadyExists(describe(&r)));
    }
    let detail = describe(&r);
    let hint = if detail.contains("invalid_redirect_uri") {
        " (check DCR_REDIRECT_URIS)"
    } else if detail.contains("invalid_scope") {
        " (check DCR_SCOPE against the IdP's allowed scopes)"
    } else if detail.contains("invalid_client_metadata") {
        " (check redirect_uris, grant_types, response_types, token_endpoint_auth_method and DCR_CLIENT_PROFILE)"
    } else {
        ""
    };
    let orphan = if uncertain.0.is_some() {
        format!(
            "; {} got no usable answer, so it may have created {name:?} at the IdP",
            uncertain.at()
        )
    } else {
        String::new()
    };
    Attempt::Fatal(match r.status {
        403 if is_policy_refusal(&r) => Error::Rejected(format!(
            "registration at {endpoint} refused by the IdP's policy ({detail}){}{orphan}",
            policy_hint(&detail)
        )),
        403 => Error::Rejected(format!(
            "registration at {endpoint} forbidden ({detail}): the IdP's policy or the IAT does not allow this client{orphan}"
        )),
        404 | 405 => Error::Rejected(format!(
            "no registration endpoint at {endpoint} ({detail}): check DCR_REGISTRATION_ENDPOINT / IDP_BASE_URL"
        )),
        _ => Error::Rejected(format!(
            "registration at {endpoint} rejected ({detail}){hint}{orphan}"
        )),
    })
}

impl Idp {
    /// Registers the client. A registration is not idempotent: an attempt that got no answer,
    /// or a 5xx, may have created the client. It is re-sent only when `blind_retry_safe`
    /// (no duplicate can follow: the IAT was single-use), and `uncertain` records when;
    /// otherwise the run stops, naming the possible orphan.
    pub async fn register(
        &self,
        endpoint: &Url,
        iat: Option<&SecretString>,
        metadata: &Map<String, Value>,
        blind_retry_safe: bool,
        uncertain: &Cell<Uncertain>,
    ) -> Result<Registration> {
        let body = Value::Object(metadata.clone());
        let name = display_name(metadata);
        let no_answer = |reason: &str| {
            let now = Uncertain(Some(std::time::SystemTime::now()));
            if uncertain.get().0.is_none() {
                uncertain.set(now);
            }
            if blind_retry_safe {
                return None;
            }
            Some(Error::Rejected(format!(
                "the registration request sent at {} got no usable answer ({reason}); the IdP may have created the \
                 client. Not retrying, because a second registration could create a duplicate: look for an orphaned \
                 client {name:?} at the IdP, delete it if present, and run again. (Retries are safe when this tool \
                 mints a single-use IAT itself.)",
                now.at().trim_start_matches("the attempt at ")
            )))
        };
        let decide = |r: Reply| sort_registration(r, endpoint, &name, uncertain.get());
        let call = Call::new(
            "register client",
            "DCR_REGISTRATION_ENDPOINT",
            Method::POST,
            endpoint,
        )
        .auth(iat.map(Auth::Bearer).unwrap_or(Auth::None))
        .body(Body::Json(&body));
        self.call(call, Some(&no_answer), &decide).await
    }

    /// RFC 7592 §2.1 read of the stored client.
    pub async fn read(&self, uri: &Url, rat: &SecretString) -> Result<Managed<Read>> {
        let decide = |r: Reply| -> Attempt<Managed<Read>> {
            if r.is_success() {
                return match parse_client(&r) {
                    Ok(doc) => Attempt::Done(Managed::Accepted(Read::Current(doc))),
                    Err(why) => Attempt::Fatal(Error::Rejected(format!(
                        "reading the client at {uri} answered {} but {why}",
                        r.status
                    ))),
                };
            }
            if is_policy_refusal(&r) {
                return Attempt::Fatal(policy_refusal("reading the client", uri, &r));
            }
            if token_refused(&r) {
                return Attempt::Done(Managed::TokenRefused(describe(&r)));
            }
            match r.status {
                404 | 410 => Attempt::Done(Managed::Accepted(Read::NotFound(describe(&r)))),
                _ => Attempt::Fatal(Error::Rejected(format!(
                    "reading the stored client at {uri} failed ({})",
                    describe(&r)
                ))),
            }
        };
        let call = Call::new("read client", MANAGED_BY, Method::GET, uri).bearer(rat);
        self.call(call, None, &decide).await
    }

    /// RFC 7592 §2.2 update: PATCH (changed fields) or PUT (full replacement). Idempotent, so
    /// a lost answer is simply retried.
    pub async fn update(
        &self,
        uri: &Url,
        rat: &SecretString,
        method: UpdateMethod,
        body: &Map<String, Value>,
    ) -> Result<Managed<Update>> {
        let verb = method.verb();
        let body = Value::Object(body.clone());
        let done = |u: Update| Attempt::Done(Managed::Accepted(u));
        let decide = |r: Reply| -> Attempt<Managed<Update>> {
            if r.is_success() {
                // EmpowerNow documents only "PATCH (200)": accept a full document, a partial
                // one, or none at all (204).
                return match json_object(&r) {
                    Some(doc) => {
                        remember_secrets(&doc);
                        done(Update::Answer(doc))
                    }
                    None if r.body.is_empty() => done(Update::Answer(Map::new())),
                    None => Attempt::Fatal(Error::Rejected(format!(
                        "updating the client at {uri} answered {} but {}",
                        r.status,
                        body_kind(&r)
                    ))),
                };
            }
            if is_policy_refusal(&r) {
                return Attempt::Fatal(policy_refusal(
                    &format!("the {verb} of the client"),
                    uri,
                    &r,
                ));
            }
            let detail = describe(&r);
            if r.status == 403 && !says_invalid_token(&r) {
                return done(Update::Forbidden(detail));
            }
            if token_refused(&r) {
                return Attempt::Done(Managed::TokenRefused(detail));
            }
            match r.status {
                404 | 410 => done(Update::NotFound(detail)),
                405 | 501 => done(Update::Unsupported(detail)),
                _ => Attempt::Fatal(Error::Rejected(format!(
                    "the IdP refused the {verb} of the client at {uri} ({detail})"
                ))),
            }
        };
        let http_method = match method {
            UpdateMethod::Put => Method::PUT,
            UpdateMethod::Patch => Method::PATCH,
        };
        let call = Call::new("update client", MANAGED_BY, http_method, uri)
            .bearer(rat)
            .body(Body::Json(&body))
            .same_500_hint(self.update_500_hint.unwrap_or(""));
        self.call(call, None, &decide).await
    }

    /// RFC 7592 §2.3 delete.
    pub async fn delete(&self, uri: &Url, rat: &SecretString) -> Result<Managed<Delete>> {
        let decide = |r: Reply| -> Attempt<Managed<Delete>> {
            if is_policy_refusal(&r) {
                return Attempt::Fatal(policy_refusal("deleting the client", uri, &r));
            }
            if r.status == 403 && !says_invalid_token(&r) {
                return Attempt::Done(Managed::Accepted(Delete::Forbidden(describe(&r))));
            }
            if token_refused(&r) {
                return Attempt::Done(Managed::TokenRefused(describe(&r)));
            }
            match r.status {
                200..=299 => Attempt::Done(Managed::Accepted(Delete::Deleted)),
                404 | 410 => Attempt::Done(Managed::Accepted(Delete::NotFound)),
                _ => Attempt::Fatal(Error::Rejected(format!(
                    "deleting the stored client at {uri} failed ({})",
                    describe(&r)
                ))),
            }
        };
        let call = Call::new("delete client", MANAGED_BY, Method::DELETE, uri).bearer(rat);
        self.call(call, None, &decide).await
    }
}
