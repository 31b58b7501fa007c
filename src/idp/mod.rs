//! The protocol: mint an IAT (EmpowerNow/Keycloak admin API), register (RFC 7591), read,
//! update and delete (RFC 7592), discovery, and the admin token by client credentials.
//!
//! Every request goes through [`Idp::call`], which owns what they all share: the transport
//! check (no bearer token over cleartext), the retry policy, the sorting of failures, and the
//! answers every operation treats alike (transient statuses are retried, redirects are never
//! followed). Each operation then only sorts the answers that are its own.

pub mod admin;
pub mod answer;
pub mod client;
pub mod discovery;
pub mod http;
pub mod keycloak;
pub mod profile;
pub mod retry;
pub mod retry_after;
pub mod token;

use crate::error::{Error, Result};
use crate::url::check_transport;
use answer::{describe, redirect_error, warn_content_type};
use http::{Auth, Body, Failure, Http, Reply};
use reqwest::{Method, Url};
use retry::{Attempt, Attempts, Policy};
use std::cell::RefCell;
use url::Origin;

/// How a client authenticates at a token endpoint with a secret (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientAuth {
    #[value(name = "client_secret_basic")]
    Basic,
    #[value(name = "client_secret_post")]
    Post,
}

/// How drift is corrected (RFC 7592 §2.2 PUT, or EmpowerNow's PATCH).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UpdateMethod {
    Patch,
    Put,
}

impl UpdateMethod {
    pub fn verb(self) -> &'static str {
        match self {
            UpdateMethod::Patch => "PATCH",
            UpdateMethod::Put => "PUT",
        }
    }
}

/// The IAT mint request.
#[derive(Debug, Clone)]
pub struct MintSettings {
    pub label: String,
    pub expires_in: u64,
    pub max_uses: u64,
    pub max_uses_field: String,
}

/// The IdP, as one run talks to it.
pub struct Idp {
    http: Http,
    pub policy: Policy,
    attempts: Attempts,
    allow_insecure_http: bool,
    /// The IdP's origins: every request goes to one of them, or is not sent.
    origins: RefCell<Vec<Origin>>,
    /// What this IdP is known to answer an update with a 500 for, added to the "same 500"
    /// error of an update.
    pub update_500_hint: Option<&'static str>,
}

/// One request of an operation, re-sent as is on every retry.
pub(crate) struct Call<'a> {
    /// What the logs and errors call the operation.
    pub what: &'a str,
    /// The variable that sets the URL, named when the IdP answers with a redirect.
    pub var: &'a str,
    pub method: Method,
    pub url: &'a Url,
    pub auth: Auth<'a>,
    pub body: Body<'a>,
}

/// What a request that may have reached the server without an answer means for the
/// operation: `Some(error)` stops it, `None` retries it.
pub(crate) type NoAnswer<'a> = &'a dyn Fn(&str) -> Option<Error>;

/// How many identical 500 answers to a write mean "this request fails", not "not ready".
const SAME_500_LIMIT: u32 = 5;

/// Statuses that mean "not now" rather than "no": RFC 9110 and curl's transient set, plus 425.
/// 501 Not Implemented is permanent by definition.
pub fn transient(status: u16) -> bool {
    matches!(status, 408 | 425 | 429) || ((500..600).contains(&status) && status != 501)
}

impl Idp {
    pub fn new(http: Http, policy: Policy, allow_insecure_http: bool) -> Idp {
        Idp {
            http,
            policy,
            attempts: Attempts::default(),
            allow_insecure_http,
            origins: RefCell::new(Vec::new()),
            update_500_hint: None,
        }
    }

    /// Makes `url`'s origin one of the IdP's: `IDP_BASE_URL`, endpoints configured
    /// explicitly, and endpoints from a discovery document whose issuer matched.
    pub fn allow_origin(&self, url: &Url) {
        let o = url.origin();
        let mut all = self.origins.borrow_mut();
        if o.is_tuple() && !all.contains(&o) {
            all.push(o);
        }
    }

    /// Whether `url` is at one of the IdP's origins.
    pub fn is_allowed(&self, url: &Url) -> bool {
        self.origins.borrow().contains(&url.origin())
    }

    /// HTTP attempts so far, for the summary line.
    pub fn attempts(&self) -> u32 {
        self.attempts.get()
    }

    /// One operation under the retry policy. A request that may have reached the server without
    /// an answer is retried unless `no_answer` makes it fatal; `decide` sorts the answers that
    /// are neither transient nor redirects.
    pub(crate) async fn call<T>(
        &self,
        req: Call<'_>,
        no_answer: Option<NoAnswer<'_>>,
        decide: &dyn Fn(Reply) -> Attempt<T>,
    ) -> Result<T> {
        let Call {
            what,
            var,
            method,
            url,
            auth,
            body,
        } = req;
        // Checked once here for every request: a bearer token never crosses cleartext, and
        // never leaves the IdP's origins.
        check_transport(what, url, self.allow_insecure_http)?;
        // A write that meets the very same 500 again and again is failing on what it sends
        // (a server that crashes on a metadata value), not waiting for readiness.
        let writes = method != Method::GET;
        let same_500 = &std::cell::Cell::new(0u32);
        let last_500 = &RefCell::new(String::new());
        if !self.is_allowed(url) {
            return Err(Error::Rejected(format!(
                "{what}: refusing to send a request to {}, which is not one of the IdP's origins ({}). Requests go only \
                 to IDP_BASE_URL, to endpoints set explicitly, and to endpoints discovered from a document whose issuer \
                 matches",
                url.origin().ascii_serialization(),
                self.origins
                    .borrow()
                    .iter()
                    .map(Origin::ascii_serialization)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        self.policy
            .run(&self.attempts, what, |timeout| {
                let method = method.clone();
                async move {
                    match self.http.send(method, url, auth, body, timeout).await {
                        Ok(r) if r.is_success() => {
                            if !r.body.is_empty() {
                                warn_content_type(what, &r);
                            }
                            decide(r)
                        }
                        Ok(r) if transient(r.status) => {
                            let reason = describe(&r);
                            if writes && r.status == 500 {
                                let again = *last_500.borrow() == reason;
                                same_500.set(if again { same_500.get() + 1 } else { 1 });
                                *last_500.borrow_mut() = reason.clone();
                                if same_500.get() >= SAME_500_LIMIT {
                                    let hint = self
                                        .update_500_hint
                                        .filter(|_| what == "update client")
                                        .unwrap_or("");
                                    return Attempt::Fatal(Error::Rejected(format!(
                                        "{what}: the IdP answered the same 500 {SAME_500_LIMIT} times in a row ({reason}): it \
                                         fails on this request rather than not being ready. Check what is sent (a mistyped \
                                         metadata value?) and the IdP's logs{hint}"
                                    )));
                                }
                            }
                            Attempt::Retry {
                                reason,
                                unreachable: false,
                                retry_after: r.retry_after,
                            }
                        }
                        Ok(r) if (300..400).contains(&r.status) => {
                            Attempt::Fatal(redirect_error(what, var, &r))
                        }
                        Ok(r) => decide(r),
                        Err(Failure::Unreachable(reason)) => Attempt::Retry {
                            reason,
                            unreachable: true,
                            retry_after: None,
                        },
                        Err(Failure::NoAnswer(reason)) => {
                            match no_answer.and_then(|f| f(&reason)) {
                                Some(e) => Attempt::Fatal(e),
                                None => Attempt::Retry {
                                    reason,
                                    unreachable: false,
                                    retry_after: None,
                                },
                            }
                        }
                        Err(Failure::Tls(reason)) => {
                            Attempt::Fatal(Error::Rejected(format!("{what}: {reason}")))
                        }
                        Err(Failure::TooLarge(reason)) => Attempt::Fatal(Error::Rejected(format!(
                            "{what}: {reason}; refusing to read it"
                        ))),
                    }
                }
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_set() {
        for s in [408, 425, 429, 500, 502, 503, 504, 599] {
            assert!(transient(s), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 501] {
            assert!(!transient(s), "{s}");
        }
    }
}
