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
    pub max_uses_field: MaxUsesField,
}

/// The name of the use-count member of an EmpowerNow mint request: its docs spell it both
/// ways (`DCR_IAT_MAX_USES_FIELD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MaxUsesField {
    #[value(name = "max_uses")]
    MaxUses,
    #[value(name = "max_usages")]
    MaxUsages,
}

impl MaxUsesField {
    pub fn name(self) -> &'static str {
        match self {
            MaxUsesField::MaxUses => "max_uses",
            MaxUsesField::MaxUsages => "max_usages",
        }
    }
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
    what: &'a str,
    /// The variable that sets the URL, named when the IdP answers with a redirect.
    var: &'a str,
    method: Method,
    url: &'a Url,
    auth: Auth<'a>,
    body: Body<'a>,
    /// Added to the error when a write keeps meeting the same 500 (what this IdP is known
    /// to answer so).
    same_500_hint: &'a str,
}

impl<'a> Call<'a> {
    /// A request without credentials or body; `var` is the variable that sets `url`.
    pub fn new(what: &'a str, var: &'a str, method: Method, url: &'a Url) -> Call<'a> {
        Call {
            what,
            var,
            method,
            url,
            auth: Auth::None,
            body: Body::None,
            same_500_hint: "",
        }
    }

    pub fn auth(mut self, auth: Auth<'a>) -> Call<'a> {
        self.auth = auth;
        self
    }

    pub fn bearer(self, token: &'a secrecy::SecretString) -> Call<'a> {
        self.auth(Auth::Bearer(token))
    }

    pub fn body(mut self, body: Body<'a>) -> Call<'a> {
        self.body = body;
        self
    }

    pub fn same_500_hint(mut self, hint: &'a str) -> Call<'a> {
        self.same_500_hint = hint;
        self
    }
}

/// What a request that may have been processed without a usable answer (none came back, or
/// a 5xx) means for an operation that is not idempotent: `Some(error)` stops it, `None`
/// retries it. Idempotent operations pass none and are retried.
pub(crate) type NoAnswer<'a> = &'a dyn Fn(&str) -> Option<Error>;

/// How many identical 500 answers to a write mean "this request fails", not "not ready".
const SAME_500_LIMIT: u32 = 5;

/// Statuses that mean "not now" rather than "no": RFC 9110 and curl's transient set, plus 425.
/// 501 Not Implemented is permanent by definition.
pub fn transient(status: u16) -> bool {
    matches!(status, 408 | 425 | 429) || ((500..600).contains(&status) && status != 501)
}

/// Counts a write's identical 500 answers in a row.
#[derive(Default)]
struct Same500 {
    last: String,
    count: u32,
}

impl Same500 {
    /// Records a 500 with `reason`; true once the same one has come [`SAME_500_LIMIT`] times.
    fn again(&mut self, reason: &str) -> bool {
        self.count = if self.last == reason {
            self.count + 1
        } else {
            1
        };
        reason.clone_into(&mut self.last);
        self.count >= SAME_500_LIMIT
    }
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
    /// HTTP requests sent so far, and how many of them were retries.
    pub fn attempts(&self) -> (u32, u32) {
        (self.attempts.get(), self.attempts.retries())
    }

    /// Refuses a request to anywhere but the IdP's origins.
    fn check_origin(&self, what: &str, url: &Url) -> Result<()> {
        if self.is_allowed(url) {
            return Ok(());
        }
        Err(Error::Rejected(format!(
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
        )))
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
        // Checked once here for every request: a bearer token never crosses cleartext, and
        // never leaves the IdP's origins.
        check_transport(req.what, req.url, self.allow_insecure_http)?;
        self.check_origin(req.what, req.url)?;
        // A write that meets the very same 500 again and again is failing on what it sends
        // (a server that crashes on a metadata value), not waiting for readiness.
        let same_500 = RefCell::new(Same500::default());
        let req = &req;
        self.policy
            .run(&self.attempts, req.what, |timeout| {
                let same_500 = &same_500;
                async move {
                    let sent = (req.http_send(&self.http, timeout)).await;
                    sort(req, sent, no_answer, decide, same_500)
                }
            })
            .await
    }
}

impl Call<'_> {
    async fn http_send(
        &self,
        http: &Http,
        timeout: std::time::Duration,
    ) -> std::result::Result<Reply, Failure> {
        http.send(self.method.clone(), self.url, self.auth, self.body, timeout)
            .await
    }
}

/// What one attempt's outcome means: done, retry (and on which schedule), or fatal.
fn sort<T>(
    req: &Call<'_>,
    sent: std::result::Result<Reply, Failure>,
    no_answer: Option<NoAnswer<'_>>,
    decide: &dyn Fn(Reply) -> Attempt<T>,
    same_500: &RefCell<Same500>,
) -> Attempt<T> {
    let what = req.what;
    let retry = |reason: String, unreachable: bool, retry_after| Attempt::Retry {
        reason,
        unreachable,
        retry_after,
    };
    match sent {
        Ok(r) if r.is_success() => {
            if !r.body.is_empty() {
                warn_content_type(what, &r);
            }
            decide(r)
        }
        Ok(r) if transient(r.status) => {
            let reason = describe(&r);
            // A 5xx says nothing about whether the request was carried out.
            if r.status >= 500
                && let Some(e) = no_answer.and_then(|f| f(&reason))
            {
                return Attempt::Fatal(e);
            }
            if req.method != Method::GET && r.status == 500 && same_500.borrow_mut().again(&reason)
            {
                return Attempt::Fatal(Error::Rejected(format!(
                    "{what}: the IdP answered the same 500 {SAME_500_LIMIT} times in a row ({reason}): it fails on \
                     this request rather than not being ready. Check what is sent (a mistyped metadata value?) and \
                     the IdP's logs{}",
                    req.same_500_hint
                )));
            }
            retry(reason, false, r.retry_after)
        }
        Ok(r) if (300..400).contains(&r.status) => {
            Attempt::Fatal(redirect_error(what, req.var, &r))
        }
        Ok(r) => decide(r),
        Err(Failure::Unreachable(reason)) => retry(reason, true, None),
        Err(Failure::NoAnswer(reason)) => match no_answer.and_then(|f| f(&reason)) {
            Some(e) => Attempt::Fatal(e),
            None => retry(reason, false, None),
        },
        Err(Failure::Tls(reason)) => Attempt::Fatal(Error::Rejected(format!("{what}: {reason}"))),
        Err(Failure::TooLarge(reason)) => Attempt::Fatal(Error::Rejected(format!(
            "{what}: {reason}; refusing to read it"
        ))),
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
