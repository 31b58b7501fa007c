//! The HTTP transport: one reqwest client with rustls (aws-lc-rs), Mozilla's roots plus an
//! optional private CA, no redirects (a redirect would carry our bearer token elsewhere), and
//! bounded response bodies. Failures are sorted by what they mean for a retry, not by where
//! in the stack they happened.

use super::retry_after;
use crate::error::{Error, Result};
use reqwest::{Method, Url};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The largest response body we read; IdP answers are a few KiB. Anything larger is refused
/// before it is buffered, so a broken or hostile peer cannot balloon our memory.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

pub struct Http {
    client: reqwest::Client,
}

/// How a request authenticates.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    None,
    Bearer(&'a SecretString),
    /// RFC 6749 §2.3.1 HTTP Basic with the form-encoded client id and secret.
    Basic(&'a str, &'a SecretString),
}

/// What a request carries.
#[derive(Clone, Copy)]
pub enum Body<'a> {
    None,
    Json(&'a Value),
    /// An already encoded `application/x-www-form-urlencoded` body (it may hold a secret).
    Form(&'a SecretString),
}

fn sensitive(value: String) -> std::result::Result<reqwest::header::HeaderValue, Failure> {
    let mut v = reqwest::header::HeaderValue::from_str(&value)
        .map_err(|_| Failure::NoAnswer("a credential is not a valid header value".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

/// Form-encodes one value (RFC 6749 §2.3.1 Basic credentials).
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// An `application/x-www-form-urlencoded` body, kept as a secret: it may carry one.
pub fn form<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> SecretString {
    let mut body = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        body.append_pair(k, v);
    }
    crate::secret::secret(body.finish())
}

/// `Debug` shows the size of the body, never the body: a mint answer carries an IAT.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub content_type: String,
    pub location: Option<String>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why no usable answer came back.
#[derive(Debug, Clone)]
pub enum Failure {
    /// Nothing reached the server: DNS failure, connection refused, connect timeout.
    Unreachable(String),
    /// The request may have reached the server, but no complete answer came back
    /// (timeout after connecting, reset, truncated body).
    NoAnswer(String),
    /// TLS verification failed. A wrong CA or a wrong host never heals by retrying.
    Tls(String),
    /// The answer was larger than [`MAX_RESPONSE_BYTES`].
    TooLarge(String),
}

impl Http {
    /// `allow_cleartext_proxy`: let `http_proxy` carry plain-http requests too (they carry
    /// bearer tokens in cleartext to the proxy); without it only https goes through a proxy.
    pub fn new(
        ca_file: Option<&Path>,
        request_timeout: Duration,
        allow_cleartext_proxy: bool,
    ) -> Result<Http> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = ca_file {
            let pem = crate::files::read_regular(path, crate::files::DOCUMENT_CAP)
                .map_err(|why| Error::Config(format!("DCR_CA_FILE: {} {why}", path.display())))?
                .ok_or_else(|| {
                    Error::Config(format!("DCR_CA_FILE: {} does not exist", path.display()))
                })?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| {
                    Error::Config(format!(
                        "DCR_CA_FILE: cannot read certificates from {}: {e}",
                        path.display()
                    ))
                })?;
            if certs.is_empty() {
                return Err(Error::Config(format!(
                    "DCR_CA_FILE: {} holds no PEM certificate",
                    path.display()
                )));
            }
            for c in certs {
                roots.add(c).map_err(|e| {
                    Error::Config(format!(
                        "DCR_CA_FILE: {} holds an unusable certificate: {e}",
                        path.display()
                    ))
                })?;
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("TLS setup failed: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = proxies(reqwest::Client::builder().no_proxy(), allow_cleartext_proxy)?
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(request_timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("dcr-bootstrap/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("HTTP client setup failed: {e}")))?;
        Ok(Http { client })
    }

    pub async fn send(
        &self,
        method: Method,
        url: &Url,
        auth: Auth<'_>,
        body: Body<'_>,
        timeout: Duration,
    ) -> std::result::Result<Reply, Failure> {
        let req = self
            .client
            .request(method, url.clone())
            .timeout(timeout)
            .header("Accept", "application/json");
        let req = with_body(with_auth(req, auth)?, body);
        let resp = req.send().await.map_err(classify)?;
        read_reply(url, resp).await
    }
}

fn with_auth(
    req: reqwest::RequestBuilder,
    auth: Auth<'_>,
) -> std::result::Result<reqwest::RequestBuilder, Failure> {
    use base64::Engine;
    let value = match auth {
        Auth::None => return Ok(req),
        Auth::Bearer(token) => format!("Bearer {}", token.expose_secret()),
        Auth::Basic(id, secret) => {
            crate::secret::remember_basic(id, secret.expose_secret());
            let pair = format!(
                "{}:{}",
                form_encode(id),
                form_encode(secret.expose_secret())
            );
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        }
    };
    Ok(req.header(reqwest::header::AUTHORIZATION, sensitive(value)?))
}

fn with_body(req: reqwest::RequestBuilder, body: Body<'_>) -> reqwest::RequestBuilder {
    match body {
        Body::None => req,
        Body::Json(b) => req
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(b).unwrap_or_default()),
        Body::Form(f) => req
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(f.expose_secret().to_string()),
    }
}

/// The status, the headers we use, and the body, refused past [`MAX_RESPONSE_BYTES`].
async fn read_reply(url: &Url, mut resp: reqwest::Response) -> std::result::Result<Reply, Failure> {
    let status = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let retry_after =
        header("retry-after").and_then(|v| retry_after::parse(&v, std::time::SystemTime::now()));
    let content_type = header("content-type").unwrap_or_default();
    let location = header("location");
    if let Some(len) = resp.content_length()
        && len > MAX_RESPONSE_BYTES as u64
    {
        return Err(Failure::TooLarge(format!(
            "{url} answered {status} with a {len}-byte body (limit {MAX_RESPONSE_BYTES})"
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(classify)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(Failure::TooLarge(format!(
                "{url} answered {status} with a body over {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Reply {
        status,
        retry_after,
        content_type,
        location,
        body,
    })
}

impl Http {
    /// A single plain-text PUT (the metric push): no retries, status or a short reason.
    pub async fn put_text(
        &self,
        url: &Url,
        body: &str,
        content_type: &str,
        timeout: Duration,
    ) -> std::result::Result<u16, String> {
        self.client
            .put(url.clone())
            .timeout(timeout)
            .header("Content-Type", content_type)
            .body(body.to_string())
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| match classify(e) {
                Failure::Unreachable(m)
                | Failure::NoAnswer(m)
                | Failure::Tls(m)
                | Failure::TooLarge(m) => m,
            })
    }
}

/// The proxies of the environment, on our terms: `HTTPS_PROXY` (or `ALL_PROXY`) for https
/// requests; `HTTP_PROXY` for plain http only when allowed, because those requests carry
/// bearer tokens in cleartext (loopback http is exempt from DCR_ALLOW_INSECURE_HTTP, and a
/// proxy would carry it off the machine). `NO_PROXY` is honoured.
fn proxies(mut b: reqwest::ClientBuilder, allow_cleartext: bool) -> Result<reqwest::ClientBuilder> {
    let env = |names: &[&str]| {
        names.iter().find_map(|n| {
            std::env::var(n)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| (n.to_string(), v))
        })
    };
    let bad = |var: &str, v: &str| {
        Error::Config(format!(
            "{var}: not a proxy URL: {:?}",
            crate::url::redacted(v)
        ))
    };
    if let Some((var, v)) = env(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]) {
        let p = reqwest::Proxy::https(&v).map_err(|_| bad(&var, &v))?;
        b = b.proxy(p.no_proxy(reqwest::NoProxy::from_env()));
    }
    match env(&["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]) {
        Some((var, v)) if allow_cleartext => {
            let p = reqwest::Proxy::http(&v).map_err(|_| bad(&var, &v))?;
            b = b.proxy(p.no_proxy(reqwest::NoProxy::from_env()));
        }
        Some((var, _)) => tracing::debug!(
            "{var} is set but not used for plain-http requests (set DCR_ALLOW_CLEARTEXT_PROXY=true to use it)"
        ),
        None => {}
    }
    Ok(b)
}

fn classify(e: reqwest::Error) -> Failure {
    if let Some(tls) = tls_error(&e) {
        return Failure::Tls(format!("{tls} ({})", url_of(&e)));
    }
    if e.is_connect() {
        Failure::Unreachable(format!("{}{}", describe(&e), loopback_hint(e.url())))
    } else if e.is_timeout() {
        let plain = if e.url().is_some_and(|u| u.scheme() == "https") {
            "; if that port speaks plain HTTP, the TLS handshake waits for nothing: use an http:// URL"
        } else {
            ""
        };
        Failure::NoAnswer(format!(
            "no complete answer within the request timeout ({}){plain}",
            url_of(&e)
        ))
    } else {
        Failure::NoAnswer(describe(&e))
    }
}

/// Inside a container, a loopback address is the container itself: an IdP published on the
/// host's `localhost:8002` is not there. Said with the failure, so nobody waits out
/// DCR_TIMEOUT for it.
fn loopback_hint(url: Option<&reqwest::Url>) -> &'static str {
    let loopback = url.is_some_and(|u| match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    });
    if loopback && in_a_container() {
        "; this process runs in a container, where localhost is the container itself: use the IdP's \
         service or host name (e.g. http://idp:8002)"
    } else {
        ""
    }
}

/// Docker (`/.dockerenv`), Podman (`/run/.containerenv`) or Kubernetes (its service
/// variables).
fn in_a_container() -> bool {
    std::path::Path::new("/.dockerenv").exists()
        || std::path::Path::new("/run/.containerenv").exists()
        || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
}

fn url_of(e: &reqwest::Error) -> String {
    e.url().map(|u| u.to_string()).unwrap_or_default()
}

/// The innermost cause is the informative one ("Connection refused", "failed to lookup ...").
fn describe(e: &reqwest::Error) -> String {
    let mut root: &dyn std::error::Error = e;
    while let Some(next) = root.source() {
        root = next;
    }
    let url = url_of(e);
    if url.is_empty() {
        root.to_string()
    } else {
        format!("{root} ({url})")
    }
}

/// The TLS error behind a request failure, explained.
fn tls_error(e: &reqwest::Error) -> Option<String> {
    find_rustls(e).map(explain_tls)
}

/// Finds a rustls error anywhere in the chain. `io::Error::source` skips its own payload
/// (which may be another io::Error wrapping the rustls error), so io::Errors are descended
/// through their payload instead.
fn find_rustls<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        let inner: &(dyn std::error::Error + 'static) = io.get_ref()?;
        return find_rustls(inner);
    }
    e.source().and_then(find_rustls)
}

fn explain_tls(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => {
            let why = match c {
                C::UnknownIssuer => "it is signed by a CA we do not trust".to_string(),
                C::BadSignature => {
                    "it is signed by a CA we do not trust (a CA of the same name, but another key)"
                        .to_string()
                }

                C::Expired | C::ExpiredContext { .. } => "it has expired".to_string(),
                C::NotValidYet | C::NotValidYetContext { .. } => "it is not valid yet".to_string(),
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    "it is not valid for this host name".to_string()
                }
                other => format!("{other:?}"),
            };
            format!(
                "the IdP's TLS certificate was rejected: {why}. A certificate problem does not heal by retrying; \
                 if the IdP uses a private CA, point DCR_CA_FILE at that CA's PEM certificate"
            )
        }
        other => format!("TLS failure: {other}"),
    }
}
