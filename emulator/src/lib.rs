//! `dcr-idp-emulator`: a strict local stand-in for the EmpowerNow IdP's admin and Dynamic Client
//! Registration API (RFC 7591/7592), with fault injection, for tests, benchmarks and dev stacks.
//!
//! It shares no code with `dcr-bootstrap` on purpose: a shared type would hide a shared
//! misunderstanding of the protocol.

#![forbid(unsafe_code)]

pub mod api;
pub mod faults;
pub mod http;
pub mod layout;
pub mod standin;
pub mod state;
pub mod tls;
pub mod token;
pub mod validate;

pub use faults::{Effect, Fault, FaultAction};
pub use layout::{KeycloakVersion, Profile};
pub use state::{Config, Quirks, Stats};
pub use tls::TestPki;

use http::{ReadError, Response};
use state::State;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// A running (or bound but not yet listening) emulator. Dropping it stops the server.
pub struct Emulator {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    /// Woken after every request, so tests can wait for a state change instead of sleeping.
    changed: Arc<Notify>,
    socket: Option<TcpSocket>,
    task: Option<JoinHandle<()>>,
    tls: Option<TlsAcceptor>,
}

impl Emulator {
    /// Binds the port without listening: connections are refused until [`Emulator::listen`],
    /// exactly like an IdP whose process has not started yet, but the port is already ours.
    pub fn bind(addr: SocketAddr, config: Config) -> io::Result<Emulator> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let tls = match &config.tls {
            Some(pki) => Some(pki.acceptor().map_err(io::Error::other)?),
            None => None,
        };
        let mut state = State::new(config);
        state.restore()?;
        Ok(Emulator {
            addr: socket.local_addr()?,
            state: Arc::new(Mutex::new(state)),
            changed: Arc::new(Notify::new()),
            socket: Some(socket),
            task: None,
            tls,
        })
    }

    /// Starts accepting connections. Must be called from within a Tokio runtime.
    pub fn listen(&mut self) -> io::Result<()> {
        let Some(socket) = self.socket.take() else {
            return Ok(());
        };
        let listener = socket.listen(4096)?;
        let state = self.state.clone();
        let changed = self.changed.clone();
        self.task = Some(tokio::spawn(accept_loop(
            listener,
            state,
            changed,
            self.tls.clone(),
        )));
        Ok(())
    }

    /// Binds and listens on `addr` (port 0 picks a free port).
    pub fn start(addr: SocketAddr, config: Config) -> io::Result<Emulator> {
        let mut emu = Emulator::bind(addr, config)?;
        emu.listen()?;
        Ok(emu)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (or `https://localhost:PORT` with TLS), for `IDP_BASE_URL`.
    pub fn base_url(&self) -> String {
        match self.tls {
            Some(_) => format!("https://localhost:{}", self.addr.port()),
            None => format!("http://{}", self.addr),
        }
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.lock();
        s.refresh_live();
        s.stats.clone()
    }

    pub fn push_fault(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Whether the token endpoint would authenticate `client_id` with these credentials: its
    /// secret, or an assertion signed by `key` (PEM, kid, alg), checked with the emulator's
    /// own verifier against the client's registered JWKS. For tests that judge a run by what
    /// the IdP would really accept.
    pub fn credentials_work(
        &self,
        client_id: &str,
        secret: Option<&str>,
        key: Option<(&str, &str, &str)>,
    ) -> bool {
        let state = self.lock();
        let Some(client) = state.clients.get(client_id) else {
            return false;
        };
        if state.config.quirks.refuse_client_auth {
            return false;
        }
        let now = state::now_epoch();
        if let Some(s) = secret {
            return client.client_secret.as_deref() == Some(s) && !client.secret_expired(now);
        }
        let Some((pem, kid, alg)) = key else {
            return false;
        };
        let aud = "https://emulator.invalid/token";
        let Ok(jwt) = standin::client_assertion(pem, alg, kid, client_id, aud) else {
            return false;
        };
        let jwks = client.metadata.get("jwks").cloned();
        token::verify_assertion(&jwt, |_| jwks.clone(), &[aud.to_string()], now).is_ok()
    }

    /// Makes every client secret expire now.
    pub fn expire_secrets(&self) {
        self.lock().expire_secrets();
    }

    /// Deletes a client behind the bootstrapper's back (an admin cleaning up).
    pub fn remove_client(&self, client_id: &str) -> bool {
        self.lock().remove_client(client_id)
    }

    /// The stored metadata of every live client, keyed by client_id.
    pub fn clients(&self) -> Vec<(String, serde_json::Map<String, serde_json::Value>)> {
        self.lock()
            .clients
            .values()
            .map(|c| (c.client_id.clone(), c.metadata.clone()))
            .collect()
    }

    /// The clients that can still authenticate in some way: a client whose secret expired
    /// is unusable to anyone but an admin.
    pub fn usable_clients(&self) -> Vec<String> {
        let s = self.lock();
        let now = state::now_epoch();
        s.clients
            .values()
            .filter(|c| !c.secret_expired(now))
            .map(|c| c.client_id.clone())
            .collect()
    }

    /// A Keycloak client's default and optional client scopes.
    pub fn client_scopes(&self, client_id: &str) -> Option<(Vec<String>, Vec<String>)> {
        self.lock()
            .clients
            .get(client_id)
            .map(|c| (c.default_scopes.clone(), c.optional_scopes.clone()))
    }

    /// The current registration access token of a client, as the IdP holds it.
    pub fn current_rat(&self, client_id: &str) -> Option<String> {
        self.lock().clients.get(client_id).map(|c| c.rat.clone())
    }

    /// Every token and secret the emulator issued (IATs, RATs, client secrets).
    pub fn issued_secrets(&self) -> Vec<String> {
        self.lock().issued_secrets.clone()
    }

    /// Makes the admin token invalid from now on, as an operator revoking it would.
    pub fn revoke_admin_token(&self) {
        self.lock().revoke_admin_token();
    }

    /// Mints an IAT directly, as an operator would by hand (for runs given `DCR_IAT`).
    pub fn mint_iat(&self, expires_in: Duration, uses: u64) -> String {
        self.lock().mint_iat(expires_in, uses).token
    }

    /// Waits until `cond` holds for the counters, re-checking after every request; false on
    /// timeout.
    pub async fn wait_until(&self, cond: impl Fn(&Stats) -> bool, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if cond(&self.stats()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return cond(&self.stats());
            }
        }
    }

    /// Changes a stored field behind the client's back (an admin editing the client).
    pub fn set_client_field(&self, client_id: &str, field: &str, value: serde_json::Value) -> bool {
        self.lock().set_client_field(client_id, field, value)
    }

    /// Invalidates a client's registration access token without telling anyone.
    pub fn revoke_rat(&self, client_id: &str) {
        self.lock().rotate_rat(client_id);
    }

    /// The method and JSON body of the last RFC 7592 update.
    pub fn last_update(&self) -> Option<(String, serde_json::Value)> {
        self.lock().last_update.clone()
    }

    /// Answers every request with 503 (and `retry_after`, if given) for `duration` from now.
    pub fn set_unavailable(&self, duration: Duration, retry_after: Option<&str>) {
        let mut s = self.lock();
        s.unavailable_until = Some(std::time::Instant::now() + duration);
        s.unavailable_retry_after = retry_after.map(str::to_string);
    }

    /// Every request so far, with its arrival time.
    pub fn request_log(&self) -> Vec<state::RequestRecord> {
        self.lock().request_log.clone()
    }

    /// Seconds since the emulator started (the clock of `request_log`).
    pub fn elapsed(&self) -> f64 {
        self.lock().started.elapsed().as_secs_f64()
    }

    /// What the Pushgateway stand-in received: (path, body).
    pub fn pushes(&self) -> Vec<(String, String)> {
        self.lock().pushes.clone()
    }

    /// How each token request authenticated.
    pub fn token_requests(&self) -> Vec<state::TokenRequest> {
        self.lock().token_requests.clone()
    }

    /// Expires every admin access token issued by the token endpoint.
    pub fn expire_access_tokens(&self) {
        self.lock().expire_access_tokens();
    }

    /// Expires every IAT minted so far.
    pub fn expire_iats(&self) {
        self.lock().expire_iats();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicked handler must not take the whole emulator down with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    tls: Option<TlsAcceptor>,
) {
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            continue;
        };
        lock(&state).stats.connections += 1;
        let state = state.clone();
        let changed = changed.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve(stream, state.clone(), "http", &changed).await,
                Some(acceptor) => {
                    // A failed handshake (the client refused our certificate) just ends here.
                    if let Ok(s) = acceptor.accept(stream).await {
                        serve(s, state.clone(), "https", &changed).await;
                    }
                }
            }
            changed.notify_waiters();
        });
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// A connection: plain TCP or TLS over TCP, with access to the socket for resets.
trait Conn: AsyncRead + AsyncWrite + Unpin + Send {
    fn tcp(&self) -> &TcpStream;
}

impl Conn for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Conn for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

fn apply(state: &mut State, effect: Effect) {
    match effect {
        Effect::ExpireIats => state.expire_iats(),
        Effect::ExhaustIats => state.exhaust_iats(),
        Effect::RevokeAdminToken => state.revoke_admin_token(),
    }
}

/// Counts and logs a request, then decides its fate: `Err` is an answer given without
/// handling it (a timed outage), `Ok` the fault rule that fires, if any.
fn admit(s: &mut State, req: &http::Request) -> Result<Option<FaultAction>, Response> {
    s.stats.requests += 1;
    let now = std::time::Instant::now();
    // The control surface is never faulted: tests must always be able to read counters.
    let control = req.path.starts_with("/_emulator/");
    let unavailable = !control && s.unavailable_until.is_some_and(|u| now < u);
    if s.request_log.len() < 1_000_000 {
        let at = now.duration_since(s.started).as_secs_f64();
        s.request_log.push(state::RequestRecord {
            at,
            method: req.method.clone(),
            path: req.path.clone(),
            unavailable,
        });
    }
    if unavailable {
        let mut resp = Response::json(503, &serde_json::json!({"detail": "Service Unavailable"}));
        if let Some(ra) = s.unavailable_retry_after.clone() {
            resp = resp.with_header("Retry-After", &ra);
        }
        return Err(resp);
    }
    let f = if control {
        None
    } else {
        faults::take(&mut s.faults, &req.method, &req.path)
    };
    if let Some(f) = &f {
        s.stats.faults_fired += 1;
        for e in &f.effects {
            apply(s, *e);
        }
    }
    Ok(f.map(|f| f.action))
}

async fn serve<S: Conn>(
    mut stream: S,
    state: Arc<Mutex<State>>,
    scheme: &'static str,
    changed: &Notify,
) {
    let req = match http::read_request(&mut stream).await {
        Ok(r) => r,
        Err(ReadError::Closed) => return,
        Err(ReadError::Bad(status, msg)) => {
            let resp = api::oauth_error(status, "invalid_request", msg);
            let _ = http::write_response(&mut stream, &resp).await;
            return;
        }
    };
    let fault = admit(&mut lock(&state), &req);
    let fault = match fault {
        Ok(f) => f,
        Err(unavailable) => {
            let _ = http::write_response(&mut stream, &unavailable).await;
            return;
        }
    };
    let handle = || {
        let mut s = lock(&state);
        let resp = api::handle(&mut s, &req, scheme);
        s.persist();
        resp
    };
    let resp = match fault {
        None | Some(FaultAction::Pass) => handle(),
        Some(FaultAction::Respond {
            status,
            headers,
            body,
        }) => Response {
            status,
            headers,
            body: body.into_bytes(),
        },
        Some(FaultAction::Redirect { status, location }) => {
            Response::empty(status).with_header("Location", &location)
        }
        Some(FaultAction::Drop) => return,
        Some(FaultAction::Reset) => {
            reset(stream.tcp());
            return;
        }
        Some(FaultAction::Delay { ms }) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            handle()
        }
        Some(FaultAction::CommitThenDelay { ms }) => {
            let real = handle();
            // The state change is visible to waiters before the answer goes out.
            changed.notify_waiters();
            tokio::time::sleep(Duration::from_millis(ms)).await;
            real
        }
        Some(post) => {
            let real = handle();
            match post {
                FaultAction::DropAfterCommit => return,
                FaultAction::RespondAfterCommit { status, body } => Response {
                    status,
                    headers: vec![("Content-Type".into(), "text/plain".into())],
                    body: body.into_bytes(),
                },
                FaultAction::ResetMidResponse => {
                    use tokio::io::AsyncWriteExt;
                    let mut bytes = real.head_bytes();
                    bytes.extend_from_slice(&real.body);
                    let _ = stream.write_all(&bytes[..bytes.len() / 2]).await;
                    let _ = stream.flush().await;
                    reset(stream.tcp());
                    return;
                }
                FaultAction::StallBody => {
                    http::write_stalled(&mut stream, &real).await;
                    return;
                }
                FaultAction::TruncateBody => {
                    let half = real.body.len() / 2;
                    Response {
                        body: real.body[..half].to_vec(),
                        ..real
                    }
                }
                FaultAction::HugeBody { bytes } => {
                    let mut body = b"{\"client_id\":\"".to_vec();
                    body.resize(bytes.saturating_sub(2), b'x');
                    body.extend_from_slice(b"\"}");
                    Response { body, ..real }
                }
                FaultAction::ContentType { value } => {
                    let mut r = real;
                    r.headers
                        .retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
                    r.with_header("Content-Type", &value)
                }
                FaultAction::SetFields { fields } => {
                    let mut v: serde_json::Value =
                        serde_json::from_slice(&real.body).unwrap_or_default();
                    if let Some(o) = v.as_object_mut() {
                        o.extend(fields);
                    }
                    Response {
                        body: serde_json::to_vec(&v).unwrap_or_default(),
                        ..real
                    }
                }
                FaultAction::OmitFields { fields } => {
                    let mut v: serde_json::Value =
                        serde_json::from_slice(&real.body).unwrap_or_default();
                    if let Some(o) = v.as_object_mut() {
                        for f in &fields {
                            o.remove(f);
                        }
                    }
                    Response {
                        body: serde_json::to_vec(&v).unwrap_or_default(),
                        ..real
                    }
                }
                _ => real,
            }
        }
    };
    let _ = http::write_response(&mut stream, &resp).await;
}

/// Closes with RST instead of FIN: SO_LINGER with a zero timeout; the drop that follows resets.
fn reset(stream: &TcpStream) {
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
}
