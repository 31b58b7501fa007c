//! The protocol: mint an IAT (EmpowerNow admin API), register (RFC 7591), read and delete
//! (RFC 7592). Each call runs under the retry policy; each answer is sorted into done, retry,
//! or a fatal error whose message says what to do about it.

use crate::config::{ClientAuth, MintSettings, check_transport};
use crate::error::{Error, Result};
use crate::http::form_encode;
use crate::http::{Auth, Body, Failure, Http, Reply};
use crate::profile::MintStyle;
use crate::retry::{Attempt, Attempts, Policy};
use crate::secret::{remember, secret};
use reqwest::{Method, Url};
use secrecy::ExposeSecret;
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use std::cell::Cell;

pub struct Idp<'a> {
    pub http: &'a Http,
    pub policy: &'a Policy,
    pub attempts: &'a Attempts,
    pub allow_insecure_http: bool,
}

/// One request of an operation, re-sent as is on every retry.
struct Call<'a> {
    what: &'a str,
    method: Method,
    url: &'a Url,
    auth: Auth<'a>,
    body: Body<'a>,
}

pub enum Registration {
    Created(Map<String, Value>),
    /// 401 on registration: the IAT is expired, used up or unknown.
    IatRejected(String),
    /// The requested client_id is taken.
    AlreadyExists(String),
}

pub enum ReadResult {
    Current(Map<String, Value>),
    /// 404: the client no longer exists.
    Gone(String),
    /// 401/403: the registration access token was refused (RFC 7592 answers 401 both for a
    /// revoked token and for a deleted client).
    Unauthorized(String),
}

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

pub struct Discovered {
    pub registration: Option<Url>,
    pub token: Option<Url>,
    /// Which document answered.
    pub source: Url,
}

pub enum UpdateResult {
    /// The client as the IdP now holds it (possibly partial, possibly with a new RAT).
    Updated(Map<String, Value>),
    /// 401/403: the registration access token was refused.
    Unauthorized(String),
}

/// Statuses that mean "not now" rather than "no": RFC 9110 and curl's transient set, plus 425.
/// 501 Not Implemented is permanent by definition.
pub fn transient(status: u16) -> bool {
    matches!(status, 408 | 425 | 429) || ((500..600).contains(&status) && status != 501)
}

/// The top-level JSON object of a reply, if it is one.
pub fn json_object(reply: &Reply) -> Option<Map<String, Value>> {
    match serde_json::from_slice(&reply.body) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

/// A short, single-line account of an error answer: the OAuth `error`/`error_description`,
/// FastAPI's `detail`, or the start of whatever else came back.
pub fn describe(reply: &Reply) -> String {
    let status = reply.status;
    if let Some(o) = json_object(reply) {
        let s = |k: &str| o.get(k).and_then(Value::as_str);
        match (s("error"), s("error_description")) {
            (Some(e), Some(d)) => return format!("{status} {e}: {}", clip(d)),
            (Some(e), None) => return format!("{status} {e}"),
            _ => {}
        }
        if let Some(d) = o.get("detail") {
            let text = d
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| d.to_string());
            return format!("{status} {}", clip(&text));
        }
    }
    if reply.body.is_empty() {
        return format!("{status} with an empty body");
    }
    let ct = if reply.content_type.is_empty() {
        "untyped"
    } else {
        reply.content_type.as_str()
    };
    format!(
        "{status} with a {ct} body: {}",
        clip(&String::from_utf8_lossy(&reply.body))
    )
}

fn clip(s: &str) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = one_line.split_whitespace().collect::<Vec<_>>().join(" ");
    if trimmed.chars().count() > 200 {
        format!("{}…", trimmed.chars().take(200).collect::<String>())
    } else {
        trimmed
    }
}

fn redirect_error(what: &str, var: &str, reply: &Reply) -> Error {
    Error::Rejected(format!(
        "{what}: the IdP answered {} with a redirect to {}; redirects are not followed, so the bearer token never goes anywhere else. Set {var} to the final URL",
        reply.status,
        reply.location.as_deref().unwrap_or("(no Location)")
    ))
}

/// The IAT in a successful mint answer (`token`).
pub fn parse_iat(reply: &Reply) -> std::result::Result<String, String> {
    match json_object(reply).as_ref().and_then(|o| o.get("token")) {
        Some(Value::String(t))
            if !t.is_empty() && !t.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(t.clone())
        }
        Some(_) => Err("its \"token\" field is not a usable token string".into()),
        None => Err(format!(
            "its body has no \"token\" field ({})",
            body_kind(reply)
        )),
    }
}

/// A client information document (RFC 7591 §3.2.1, RFC 7592 §3): a JSON object with a
/// non-empty string `client_id`, and string credentials where present.
pub fn parse_client_doc(reply: &Reply) -> std::result::Result<Map<String, Value>, String> {
    let doc = json_object(reply)
        .ok_or_else(|| format!("its body is not a JSON object ({})", body_kind(reply)))?;
    match doc.get("client_id") {
        Some(Value::String(id)) if !id.is_empty() => {}
        _ => return Err("its body has no client_id".into()),
    }
    for k in [
        "registration_access_token",
        "client_secret",
        "registration_client_uri",
    ] {
        if doc.get(k).is_some_and(|v| !v.is_string()) {
            return Err(format!("its {k} is not a string"));
        }
    }
    Ok(doc)
}

/// A registration access token from an admin re-issue answer (`registration_access_token`
/// or `token`).
pub fn parse_rat(reply: &Reply) -> std::result::Result<String, String> {
    let o = json_object(reply)
        .ok_or_else(|| format!("its body is not a JSON object ({})", body_kind(reply)))?;
    match o
        .get("registration_access_token")
        .or_else(|| o.get("token"))
    {
        Some(Value::String(t)) if !t.is_empty() => Ok(t.clone()),
        _ => Err("its body has no registration_access_token or token field".into()),
    }
}

fn body_kind(reply: &Reply) -> String {
    let ct = if reply.content_type.is_empty() {
        "untyped"
    } else {
        reply.content_type.as_str()
    };
    format!("{} bytes, {ct}", reply.body.len())
}

/// RFC 7591 answers are `application/json`. A 2xx of another type that still parses is
/// accepted, with a warning: a proxy may be rewriting answers.
fn warn_content_type(what: &str, reply: &Reply) {
    let ct = reply.content_type.to_ascii_lowercase();
    let json = ct.starts_with("application/json")
        || (ct.starts_with("application/") && ct.contains("+json"));
    if !json {
        tracing::warn!(
            "{what}: the IdP answered {} with content type {:?}; parsed as JSON anyway",
            reply.status,
            reply.content_type
        );
    }
}

/// Did a registration fail because the requested client_id is taken? EmpowerNow's answer is
/// undocumented: a 409, or a 400 whose description says "already", is taken to mean so.
pub fn is_already_registered(reply: &Reply) -> bool {
    reply.status == 409
        || (reply.status == 400
            && json_object(reply)
                .and_then(|o| {
                    o.get("error_description")
                        .and_then(Value::as_str)
                        .map(str::to_ascii_lowercase)
                })
                .is_some_and(|d| d.contains("already")))
}

/// Secrets in an IdP document are remembered for log scrubbing the moment they arrive.
pub fn remember_secrets(doc: &Map<String, Value>) {
    for k in ["registration_access_token", "client_secret"] {
        if let Some(v) = doc.get(k).and_then(Value::as_str) {
            remember(v);
        }
    }
}

impl Idp<'_> {
    /// One operation under the retry policy. `no_answer` decides what a request that may have
    /// reached the server without an answer means; `decide` sorts the answers.
    async fn call<T>(
        &self,
        req: Call<'_>,
        no_answer: &dyn Fn(&str) -> Option<Error>,
        decide: &dyn Fn(Reply) -> Attempt<T>,
    ) -> Result<T> {
        let Call {
            what,
            method,
            url,
            auth,
            body,
        } = req;
        self.policy
            .run(self.attempts, what, |timeout| {
                let method = method.clone();
                async move {
                    match self.http.send(method, url, auth, body, timeout).await {
                        Ok(reply) => decide(reply),
                        Err(Failure::Unreachable(reason)) => Attempt::Retry {
                            reason,
                            unreachable: true,
                            retry_after: None,
                        },
                        Err(Failure::NoAnswer(reason)) => match no_answer(&reason) {
                            Some(e) => Attempt::Fatal(e),
                            None => Attempt::Retry {
                                reason,
                                unreachable: false,
                                retry_after: None,
                            },
                        },
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

    fn retry<T>(reply: &Reply) -> Attempt<T> {
        Attempt::Retry {
            reason: describe(reply),
            unreachable: false,
            retry_after: reply.retry_after,
        }
    }

    /// Mints an IAT in the profile's style. A 401 is reported as `AdminRejected`, so that a
    /// client-credentials admin token can be fetched again and the mint retried.
    pub async fn mint_iat(
        &self,
        endpoint: &Url,
        admin: &SecretString,
        s: &MintSettings,
        style: MintStyle,
    ) -> Result<Admin<Minted>> {
        let body = match style {
            MintStyle::EmpowerNow => {
                let mut b = json!({"label": s.label, "expires_in": s.expires_in});
                b[s.max_uses_field.as_str()] = json!(s.max_uses);
                b
            }
            MintStyle::Keycloak => json!({"expiration": s.expires_in, "count": s.max_uses}),
        };
        // Retrying a mint is harmless: an unused IAT just expires.
        let decide = |r: Reply| -> Attempt<Admin<Minted>> {
            if r.is_success() {
                return match parse_iat(&r) {
                    Ok(t) => {
                        let token = secret(t);
                        warn_content_type("minting an IAT", &r);
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
            if transient(r.status) {
                return Self::retry(&r);
            }
            Attempt::Fatal(match r.status {
                401 => return Attempt::Done(Admin::Refused(describe(&r))),
                300..=399 => redirect_error("minting an IAT", "DCR_IAT_ENDPOINT", &r),
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
        let call = Call {
            what: "mint IAT",
            method: Method::POST,
            url: endpoint,
            auth: Auth::Bearer(admin),
            body: Body::Json(&body),
        };
        self.call(call, &|_| None, &decide).await
    }

    /// Revokes a used IAT (Keycloak's `DELETE …/clients-initial-access/{id}`).
    pub async fn revoke_iat(&self, url: &Url, admin: &SecretString) -> Result<Option<String>> {
        let decide = |r: Reply| -> Attempt<Option<String>> {
            match r.status {
                200..=299 | 404 => Attempt::Done(None),
                s if transient(s) => Self::retry(&r),
                _ => Attempt::Done(Some(describe(&r))),
            }
        };
        let call = Call {
            what: "revoke IAT",
            method: Method::DELETE,
            url,
            auth: Auth::Bearer(admin),
            body: Body::None,
        };
        self.call(call, &|_| None, &decide).await
    }

    /// OpenID Connect Discovery, then RFC 8414. A 404 tries the next document; an IdP that
    /// is still starting (5xx, refused) is waited for; a document that is not JSON or has no
    /// `registration_endpoint` is a permanent error.
    pub async fn discover(&self, urls: &[Url]) -> Result<Discovered> {
        let mut tried = Vec::new();
        for url in urls {
            let decide = |r: Reply| -> Attempt<Option<Discovered>> {
                if r.is_success() {
                    let Some(doc) = json_object(&r) else {
                        return Attempt::Fatal(Error::Rejected(format!(
                            "the discovery document at {url} is not a JSON object ({})",
                            body_kind(&r)
                        )));
                    };
                    let get = |k: &str| {
                        doc.get(k)
                            .and_then(Value::as_str)
                            .and_then(|u| Url::parse(u).ok())
                    };
                    return Attempt::Done(Some(Discovered {
                        registration: get("registration_endpoint"),
                        token: get("token_endpoint"),
                        source: url.clone(),
                    }));
                }
                if transient(r.status) {
                    return Self::retry(&r);
                }
                match r.status {
                    404 | 410 => Attempt::Done(None),
                    300..=399 => Attempt::Fatal(redirect_error("discovery", "DCR_ISSUER", &r)),
                    _ => Attempt::Fatal(Error::Rejected(format!(
                        "discovery at {url} failed ({})",
                        describe(&r)
                    ))),
                }
            };
            let call = Call {
                what: "discovery",
                method: Method::GET,
                url,
                auth: Auth::None,
                body: Body::None,
            };
            match self.call(call, &|_| None, &decide).await? {
                Some(d) => return Ok(d),
                None => tried.push(url.to_string()),
            }
        }
        Err(Error::Rejected(format!(
            "no discovery document at {}: set DCR_ISSUER to the IdP's issuer, or DCR_REGISTRATION_ENDPOINT directly",
            tried.join(" or ")
        )))
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
    ) -> Result<(SecretString, Option<std::time::Duration>)> {
        let mut form = String::from("grant_type=client_credentials");
        if let Some(s) = scope {
            form.push_str(&format!("&scope={}", form_encode(s)));
        }
        if let Some(r) = resource {
            form.push_str(&format!("&resource={}", form_encode(r)));
        }
        if method == ClientAuth::Post {
            form.push_str(&format!(
                "&client_id={}&client_secret={}",
                form_encode(client_id),
                form_encode(secret_value.expose_secret())
            ));
        }
        let form = secret(form);
        let auth = match method {
            ClientAuth::Basic => Auth::Basic(client_id, secret_value),
            ClientAuth::Post => Auth::None,
        };
        let decide = |r: Reply| -> Attempt<(SecretString, Option<std::time::Duration>)> {
            if r.is_success() {
                let doc = json_object(&r).unwrap_or_default();
                return match doc.get("access_token").and_then(Value::as_str) {
                    Some(t) if !t.is_empty() => {
                        let ttl = doc
                            .get("expires_in")
                            .and_then(Value::as_u64)
                            .map(std::time::Duration::from_secs);
                        Attempt::Done((secret(t.to_string()), ttl))
                    }
                    _ => Attempt::Fatal(Error::Rejected(format!(
                        "the token endpoint {endpoint} answered {} without an access_token",
                        r.status
                    ))),
                };
            }
            if transient(r.status) {
                return Self::retry(&r);
            }
            Attempt::Fatal(match r.status {
                300..=399 => redirect_error("the admin token request", "DCR_TOKEN_ENDPOINT", &r),
                _ => Error::Rejected(format!(
                    "the token endpoint {endpoint} refused the admin client DCR_ADMIN_CLIENT_ID={client_id} ({}); \
                     check DCR_ADMIN_CLIENT_SECRET, DCR_ADMIN_AUTH_METHOD, DCR_ADMIN_SCOPE and DCR_ADMIN_RESOURCE",
                    describe(&r)
                )),
            })
        };
        let call = Call {
            what: "admin token",
            method: Method::POST,
            url: endpoint,
            auth,
            body: Body::Form(&form),
        };
        self.call(call, &|_| None, &decide).await
    }

    /// Registers the client. `blind_retry_safe` says whether a registration that may have
    /// reached the IdP without an answer can be re-sent without risking a duplicate client;
    /// when it is re-sent, `maybe_committed` records it.
    pub async fn register(
        &self,
        endpoint: &Url,
        iat: Option<&SecretString>,
        metadata: &Map<String, Value>,
        blind_retry_safe: bool,
        maybe_committed: &Cell<bool>,
    ) -> Result<Registration> {
        let body = Value::Object(metadata.clone());
        let name = metadata
            .get("client_id")
            .or_else(|| metadata.get("client_name"))
            .and_then(Value::as_str)
            .unwrap_or("(unnamed)")
            .to_string();
        let no_answer = |reason: &str| {
            if blind_retry_safe {
                maybe_committed.set(true);
                None
            } else {
                Some(Error::Rejected(format!(
                    "the registration request was sent but no answer came back ({reason}); the IdP may have created the client. \
                     Not retrying, because a second registration could create a duplicate: look for an orphaned client {name:?} at the IdP, \
                     delete it if present, and run again. (Retries are safe when this tool mints a single-use IAT or DCR_CLIENT_ID is set.)"
                )))
            }
        };
        let decide = |r: Reply| -> Attempt<Registration> {
            if r.is_success() {
                return match parse_client_doc(&r) {
                    Ok(doc) => {
                        remember_secrets(&doc);
                        warn_content_type("registration", &r);
                        Attempt::Done(Registration::Created(doc))
                    }
                    Err(why) => Attempt::Fatal(Error::Rejected(format!(
                        "registration at {endpoint} answered {} but {why}; the client may exist at the IdP \
                         without us knowing its id: check for an orphaned client {name:?}",
                        r.status
                    ))),
                };
            }
            if transient(r.status) {
                return Self::retry(&r);
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
            let orphan = if maybe_committed.get() {
                format!(
                    "; an earlier attempt got no answer, so it may have created {name:?} at the IdP"
                )
            } else {
                String::new()
            };
            Attempt::Fatal(match r.status {
                300..=399 => redirect_error("registration", "DCR_REGISTRATION_ENDPOINT", &r),
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
        };
        let call = Call {
            what: "register client",
            method: Method::POST,
            url: endpoint,
            auth: iat.map(Auth::Bearer).unwrap_or(Auth::None),
            body: Body::Json(&body),
        };
        self.call(call, &no_answer, &decide).await
    }

    /// RFC 7592 §2.1 read of the stored client.
    pub async fn read(&self, uri: &Url, rat: &SecretString) -> Result<ReadResult> {
        check_transport(
            "registration_client_uri from the IdP",
            uri,
            self.allow_insecure_http,
        )?;
        let decide = |r: Reply| -> Attempt<ReadResult> {
            if r.is_success() {
                return match parse_client_doc(&r) {
                    Ok(doc) => {
                        remember_secrets(&doc);
                        warn_content_type("reading the client", &r);
                        Attempt::Done(ReadResult::Current(doc))
                    }
                    Err(why) => Attempt::Fatal(Error::Rejected(format!(
                        "reading the client at {uri} answered {} but {why}",
                        r.status
                    ))),
                };
            }
            if transient(r.status) {
                return Self::retry(&r);
            }
            match r.status {
                401 | 403 => Attempt::Done(ReadResult::Unauthorized(describe(&r))),
                404 | 410 => Attempt::Done(ReadResult::Gone(describe(&r))),
                300..=399 => Attempt::Fatal(redirect_error(
                    "reading the client",
                    "DCR_OUTPUT's registration_client_uri",
                    &r,
                )),
                _ => Attempt::Fatal(Error::Rejected(format!(
                    "reading the stored client at {uri} failed ({})",
                    describe(&r)
                ))),
            }
        };
        let call = Call {
            what: "read client",
            method: Method::GET,
            url: uri,
            auth: Auth::Bearer(rat),
            body: Body::None,
        };
        self.call(call, &|_| None, &decide).await
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
            if transient(r.status) {
                return Self::retry(&r);
            }
            Attempt::Fatal(match r.status {
                404 => return Attempt::Done(Admin::Done(None)),
                401 => return Attempt::Done(Admin::Refused(describe(&r))),
                403 => Error::Rejected(format!(
                    "the admin token may not re-issue registration access tokens at {endpoint} ({})",
                    describe(&r)
                )),
                300..=399 => redirect_error(
                    "re-issuing a registration access token",
                    "DCR_RAT_ENDPOINT",
                    &r,
                ),
                _ => Error::Rejected(format!(
                    "re-issuing a registration access token at {endpoint} failed ({}); check DCR_RAT_ENDPOINT",
                    describe(&r)
                )),
            })
        };
        let call = Call {
            what: "re-issue registration access token",
            method: Method::POST,
            url: endpoint,
            auth: Auth::Bearer(admin),
            body: Body::Json(&body),
        };
        self.call(call, &|_| None, &decide).await
    }

    /// RFC 7592 §2.2 update: PATCH (changed fields) or PUT (full replacement). Idempotent, so
    /// a lost answer is simply retried.
    pub async fn update(
        &self,
        uri: &Url,
        rat: &SecretString,
        verb: &str,
        body: &Map<String, Value>,
    ) -> Result<UpdateResult> {
        check_transport(
            "registration_client_uri from the IdP",
            uri,
            self.allow_insecure_http,
        )?;
        let body = Value::Object(body.clone());
        let decide = |r: Reply| -> Attempt<UpdateResult> {
            if r.is_success() {
                // EmpowerNow documents only "PATCH (200)": accept a full document, a partial
                // one, or none at all (204).
                return match json_object(&r) {
                    Some(doc) => {
                        remember_secrets(&doc);
                        Attempt::Done(UpdateResult::Updated(doc))
                    }
                    None if r.body.is_empty() => Attempt::Done(UpdateResult::Updated(Map::new())),
                    None => Attempt::Fatal(Error::Rejected(format!(
                        "updating the client at {uri} answered {} but {}",
                        r.status,
                        body_kind(&r)
                    ))),
                };
            }
            if transient(r.status) {
                return Self::retry(&r);
            }
            let detail = describe(&r);
            match r.status {
                401 | 403 => Attempt::Done(UpdateResult::Unauthorized(detail)),
                300..=399 => Attempt::Fatal(redirect_error(
                    "updating the client",
                    "DCR_OUTPUT's registration_client_uri",
                    &r,
                )),
                404 | 410 => Attempt::Fatal(Error::Rejected(format!(
                    "the client at {uri} disappeared during the update ({detail}); run again to re-register (DCR_ON_STALE=reregister)"
                ))),
                405 | 501 => Attempt::Fatal(Error::Rejected(format!(
                    "the IdP does not support {verb} at {uri} ({detail}); set DCR_UPDATE_METHOD to the other method"
                ))),
                _ => Attempt::Fatal(Error::Rejected(format!(
                    "the IdP refused the {verb} of the client at {uri} ({detail})"
                ))),
            }
        };
        let method = if verb == "PUT" {
            Method::PUT
        } else {
            Method::PATCH
        };
        let call = Call {
            what: "update client",
            method,
            url: uri,
            auth: Auth::Bearer(rat),
            body: Body::Json(&body),
        };
        self.call(call, &|_| None, &decide).await
    }

    /// RFC 7592 §2.3 delete. `true` when the client is gone (deleted now, or already: 404);
    /// `false` when the registration access token was refused (401/403).
    pub async fn delete(&self, uri: &Url, rat: &SecretString) -> Result<bool> {
        check_transport(
            "registration_client_uri from the IdP",
            uri,
            self.allow_insecure_http,
        )?;
        let decide = |r: Reply| -> Attempt<bool> {
            match r.status {
                200..=299 | 404 | 410 => Attempt::Done(true),
                401 | 403 => {
                    tracing::warn!("deleting {uri} answered {}", describe(&r));
                    Attempt::Done(false)
                }
                s if transient(s) => Self::retry(&r),
                _ => Attempt::Fatal(Error::Rejected(format!(
                    "deleting the stored client at {uri} failed ({})",
                    describe(&r)
                ))),
            }
        };
        let call = Call {
            what: "delete client",
            method: Method::DELETE,
            url: uri,
            auth: Auth::Bearer(rat),
            body: Body::None,
        };
        self.call(call, &|_| None, &decide).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, ct: &str, body: &str) -> Reply {
        Reply {
            status,
            retry_after: None,
            content_type: ct.into(),
            location: None,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn transient_set() {
        for s in [408, 425, 429, 500, 502, 503, 504, 599] {
            assert!(transient(s), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 501] {
            assert!(!transient(s), "{s}");
        }
    }

    #[test]
    fn describes_oauth_fastapi_and_html_errors() {
        assert_eq!(
            describe(&reply(
                400,
                "application/json",
                r#"{"error":"invalid_redirect_uri","error_description":"no"}"#
            )),
            "400 invalid_redirect_uri: no"
        );
        assert_eq!(
            describe(&reply(
                401,
                "application/json",
                r#"{"detail":"Not authenticated"}"#
            )),
            "401 Not authenticated"
        );
        assert_eq!(describe(&reply(502, "", "")), "502 with an empty body");
        let html = format!("<html>\n<body>{}</body></html>", "x".repeat(500));
        let d = describe(&reply(500, "text/html", &html));
        assert!(
            d.starts_with("500 with a text/html body: <html> <body>") && d.chars().count() < 260,
            "{d}"
        );
    }
}
