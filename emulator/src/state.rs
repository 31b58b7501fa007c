//! What the emulated IdP remembers: IATs, registered clients, fault rules and counters.

use crate::faults::Fault;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Behaviours of real, independently written servers that the emulator otherwise does not
/// have (docs/interop.md says which server showed each). All off by default.
#[derive(Debug, Clone, Default)]
pub struct Quirks {
    /// Answer `token_endpoint_auth_method` as a one-element array.
    pub auth_method_as_array: bool,
    /// Neither store nor echo `scope`.
    pub forget_scope: bool,
    /// Add these grant types to what a client asked for.
    pub add_grant_types: Vec<String>,
    /// Issue a new `client_secret` on every update.
    pub new_secret_on_update: bool,
    /// Ignore a requested `client_id` and assign one (RFC 7591 allows it).
    pub ignore_client_id: bool,
    /// Answer PATCH with this status (404 or 405): no PATCH for clients.
    pub patch_status: Option<u16>,
    /// Answer PATCH with an empty 200 and change nothing.
    pub patch_noop: bool,
    /// Answer refused tokens (IAT, registration access token) with `400 access_denied`.
    pub token_error_400: bool,
    /// Answer 500 (instead of 400) to a `*_uri` member that is not a string.
    pub crash_on_bad_types: bool,
    /// List these in discovery's `token_endpoint_auth_signing_alg_values_supported`, and
    /// refuse client assertions signed otherwise.
    pub signing_algs: Option<Vec<String>>,
    /// Accept as a registration token an access token the token endpoint issued to an admin
    /// client for this scope (glewlwyd's register-client-auth-scope).
    pub registration_scope: Option<String>,
    /// Refuse every registered client's authentication at the token endpoint.
    pub refuse_client_auth: bool,
    /// Answer a failed client authentication with an empty 403 (glewlwyd).
    pub auth_failure_empty_403: bool,
    /// Answer every failed client authentication with `403 unauthorized_client` (a
    /// SATOSA-style front).
    pub auth_failure_403_unauthorized_client: bool,
    /// Answer a grant the client is not registered for with `400 invalid_request` after
    /// authenticating it (node-oidc-provider).
    pub grant_not_allowed_invalid_request: bool,
    /// Check an authorization code or refresh token before authenticating the client, so
    /// that right and wrong credentials get the same `invalid_grant`.
    pub grant_checked_before_auth: bool,
    /// Client secrets expire this long after they are issued (`client_secret_expires_at`);
    /// an expired one no longer authenticates (pyoidc: one day; others: 30 days).
    pub secret_ttl: Option<Duration>,
    /// Keycloak ≥ 26.4: the admin token may view the system (`view-system`), so
    /// `/admin/serverinfo` shows the version to it.
    pub keycloak_view_system: bool,
    /// Answer 405 to every RFC 7592 PUT and PATCH (an OpenID Connect Dynamic Registration 1.0
    /// server without RFC 7592 updates; pyoidc answers 403 "Unsupported operation").
    pub no_updates: bool,
    /// A re-issued registration access token does not revoke the earlier ones.
    pub rat_stays_valid_after_reissue: bool,
    /// List only these in discovery's `token_endpoint_auth_methods_supported`, and refuse
    /// client authentication by any other method at the token endpoint.
    pub auth_methods: Option<Vec<String>>,
}

impl Quirks {
    /// Every switch by name (`--quirk NAME[=VALUE]`), so that tests and dev stacks can set
    /// any of them, and a randomized test can draw them.
    pub const SWITCHES: &'static [&'static str] = &[
        "auth-method-as-array",
        "forget-scope",
        "new-secret-on-update",
        "ignore-client-id",
        "patch-noop",
        "token-error-400",
        "refuse-client-auth",
        "auth-failure-empty-403",
        "auth-failure-403-unauthorized-client",
        "grant-not-allowed-invalid-request",
        "grant-checked-before-auth",
        "keycloak-view-system",
        "no-updates",
        "rat-stays-valid-after-reissue",
    ];

    /// Sets one quirk by name; `value` for those that take one.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let flag = |f: &mut bool| {
            *f = !matches!(value, "false" | "0" | "off");
            Ok(())
        };
        match name {
            "auth-method-as-array" => flag(&mut self.auth_method_as_array),
            "forget-scope" => flag(&mut self.forget_scope),
            "new-secret-on-update" => flag(&mut self.new_secret_on_update),
            "ignore-client-id" => flag(&mut self.ignore_client_id),
            "patch-noop" => flag(&mut self.patch_noop),
            "token-error-400" => flag(&mut self.token_error_400),
            "crash-on-bad-types" => flag(&mut self.crash_on_bad_types),
            "refuse-client-auth" => flag(&mut self.refuse_client_auth),
            "auth-failure-empty-403" => flag(&mut self.auth_failure_empty_403),
            "auth-failure-403-unauthorized-client" => {
                flag(&mut self.auth_failure_403_unauthorized_client)
            }
            "grant-not-allowed-invalid-request" => {
                flag(&mut self.grant_not_allowed_invalid_request)
            }
            "grant-checked-before-auth" => flag(&mut self.grant_checked_before_auth),
            "keycloak-view-system" => flag(&mut self.keycloak_view_system),
            "no-updates" => flag(&mut self.no_updates),
            "rat-stays-valid-after-reissue" => flag(&mut self.rat_stays_valid_after_reissue),
            "patch-status" => {
                self.patch_status = Some(value.parse().map_err(|_| "expects a status")?);
                Ok(())
            }
            "secret-ttl" => {
                let d = humantime::parse_duration(value).map_err(|e| e.to_string())?;
                self.secret_ttl = Some(d);
                Ok(())
            }
            "add-grant-types" => {
                self.add_grant_types = value.split(',').map(str::to_string).collect();
                Ok(())
            }
            "signing-algs" => {
                self.signing_algs = Some(value.split(',').map(str::to_string).collect());
                Ok(())
            }
            "auth-methods" => {
                self.auth_methods = Some(value.split(',').map(str::to_string).collect());
                Ok(())
            }
            "registration-scope" => {
                self.registration_scope = Some(value.to_string());
                Ok(())
            }
            other => Err(format!("no quirk named {other:?}")),
        }
    }
}

/// How the emulator behaves; every field has a command-line flag in `main.rs`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The bearer token the admin API accepts.
    pub admin_token: String,
    /// The spelling of the IAT use-count field this IdP honours (`max_uses` or `max_usages`);
    /// the other spelling is rejected as an unknown field.
    pub iat_max_uses_field: String,
    /// `policy.allowed_scopes` of `dcr_config.yaml`.
    pub allowed_scopes: Vec<String>,
    /// The JSON field that carries the client profile name.
    pub profile_field: String,
    /// Base URL used in URLs the IdP hands back; defaults to `http://{Host header}`.
    pub public_base: Option<String>,
    /// Issue a fresh registration access token on every RFC 7592 read.
    pub rotate_rat_on_get: bool,
    /// Issue a fresh registration access token on every update (PUT/PATCH).
    pub rotate_rat_on_update: bool,
    /// Status for RFC 7592 calls on a client that does not exist (RFC 7592 says 401).
    pub missing_client_status: u16,
    /// Fault rules active from the start.
    pub faults: Vec<Fault>,
    /// Serve HTTPS with this certificate instead of plain HTTP.
    pub tls: Option<crate::tls::TestPki>,
    /// Confidential clients (id, secret) whose client-credentials tokens the admin API accepts.
    pub admin_clients: Vec<(String, String)>,
    /// Lifetime of access tokens from the token endpoint.
    pub access_token_ttl: Duration,
    /// Scopes stored silently without (a server that grants less than asked).
    pub drop_scopes: Vec<String>,
    /// Which IdP to play.
    pub profile: crate::layout::Profile,
    /// Keycloak realm name.
    pub realm: String,
    /// Accept registrations without any token (Hydra, Auth0 style).
    pub open_registration: bool,
    /// Behaviours of real servers (off by default).
    pub quirks: Quirks,
    /// The Keycloak version played (`--profile keycloak`).
    pub keycloak_version: crate::layout::KeycloakVersion,
    /// Serve `/_emulator/*` without a credential (`--open-control`). Off, those routes need
    /// the configured admin token: they can add faults, delete clients and read every secret.
    pub open_control: bool,
    /// Keep the registered clients in this file (`--state-file`), so that a restarted
    /// emulator still knows them, as a real IdP does (the dev compose stack survives
    /// `stop`/`start` and `down`/`up`).
    pub state_file: Option<std::path::PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            admin_token: "emulator-admin-token".into(),
            iat_max_uses_field: "max_uses".into(),
            allowed_scopes: [
                "openid",
                "profile",
                "email",
                "offline_access",
                "admin.api",
                "application.all",
                "dcr.register",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            profile_field: "client_profile".into(),
            public_base: None,
            rotate_rat_on_get: false,
            rotate_rat_on_update: false,
            missing_client_status: 401,
            faults: Vec::new(),
            tls: None,
            admin_clients: Vec::new(),
            access_token_ttl: Duration::from_secs(300),
            drop_scopes: Vec::new(),
            profile: crate::layout::Profile::Empowernow,
            realm: "demo".into(),
            open_registration: false,
            quirks: Quirks::default(),
            keycloak_version: crate::layout::KeycloakVersion(26, 8),
            open_control: false,
            state_file: None,
        }
    }
}

/// Counters served at `GET /_emulator/stats`.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Stats {
    pub connections: u64,
    pub requests: u64,
    pub iats_minted: u64,
    pub iats_revoked: u64,
    pub discovery_served: u64,
    pub iat_mints_rejected: u64,
    pub clients_registered: u64,
    pub registrations_rejected: u64,
    pub clients_read: u64,
    pub clients_updated: u64,
    pub clients_deleted: u64,
    pub rats_reissued: u64,
    pub faults_fired: u64,
    pub tokens_issued: u64,
    pub token_requests_rejected: u64,
    pub pushes: u64,
    /// Clients that exist right now.
    pub clients_live: u64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct TokenRequest {
    pub auth_method: String,
    pub client_id: String,
    pub scope: Option<String>,
    pub resource: Option<String>,
}

/// One request as it arrived.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct RequestRecord {
    /// Seconds since the emulator started.
    pub at: f64,
    pub method: String,
    pub path: String,
    /// Answered 503 because of a timed outage.
    pub unavailable: bool,
}

#[derive(Debug, Clone)]
pub struct Iat {
    pub id: String,
    pub token: String,
    pub expires_at: Instant,
    pub remaining: u64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Client {
    pub client_id: String,
    pub client_secret: Option<String>,
    pub issued_at: u64,
    pub rat: String,
    pub metadata: Map<String, Value>,
    /// Keycloak's internal id (the admin API addresses clients by it).
    pub internal_id: String,
    /// Created through Keycloak's admin API rather than by registration.
    pub admin_created: bool,
    /// Keycloak: the client's default and optional client scopes.
    pub default_scopes: Vec<String>,
    pub optional_scopes: Vec<String>,
    /// When the secret stops authenticating (epoch seconds); 0: never.
    pub secret_expires_at: u64,
}

impl Client {
    pub fn secret_expired(&self, now: u64) -> bool {
        self.secret_expires_at != 0 && now >= self.secret_expires_at
    }
}

pub struct State {
    pub config: Config,
    pub admin_token: String,
    pub iats: Vec<Iat>,
    pub clients: BTreeMap<String, Client>,
    /// The clients as last written to `config.state_file`.
    saved: String,
    pub faults: Vec<Fault>,
    pub stats: Stats,
    /// Every secret value this IdP ever handed out, so tests can prove none leaked into logs.
    pub issued_secrets: Vec<String>,
    /// Admin access tokens issued by the token endpoint, with their expiry.
    pub admin_access_tokens: Vec<(String, Instant)>,
    /// Access tokens issued for `quirks.registration_scope`, with their expiry.
    pub registration_tokens: Vec<(String, Instant)>,
    /// How each token request authenticated: (auth method, client_id, scope, resource).
    pub token_requests: Vec<TokenRequest>,
    /// Bodies pushed to the Pushgateway stand-in: (path, body).
    pub pushes: Vec<(String, String)>,
    /// The method and JSON body of the last RFC 7592 update.
    pub last_update: Option<(String, serde_json::Value)>,
    /// When the emulator started, the zero of `request_log`.
    pub started: Instant,
    /// Arrival time of every request (capped at 1,000,000 entries), for load measurements.
    pub request_log: Vec<RequestRecord>,
    /// Until then every request is answered 503 (a restarting IdP behind a proxy).
    pub unavailable_until: Option<Instant>,
    /// Retry-After sent with those 503s.
    pub unavailable_retry_after: Option<String>,
    counter: u64,
}

impl State {
    /// Loads the clients from `config.state_file`, when it exists.
    pub fn restore(&mut self) -> std::io::Result<()> {
        let Some(path) = &self.config.state_file else {
            return Ok(());
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                self.clients = serde_json::from_slice(&bytes).map_err(|e| {
                    std::io::Error::other(format!("--state-file {}: {e}", path.display()))
                })?;
                self.saved = String::from_utf8_lossy(&bytes).into_owned();
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Writes the clients to `config.state_file` when they changed (temp file and rename).
    pub fn persist(&mut self) {
        let Some(path) = self.config.state_file.clone() else {
            return;
        };
        let text = serde_json::to_string(&self.clients).unwrap_or_default();
        if text == self.saved {
            return;
        }
        let tmp = path.with_extension("tmp");
        match std::fs::write(&tmp, &text).and_then(|()| std::fs::rename(&tmp, &path)) {
            Ok(()) => self.saved = text,
            Err(e) => eprintln!(
                "dcr-idp-emulator: cannot write --state-file {}: {e}",
                path.display()
            ),
        }
    }

    pub fn new(config: Config) -> State {
        State {
            saved: String::new(),
            admin_token: config.admin_token.clone(),
            faults: config.faults.clone(),
            config,
            iats: Vec::new(),
            clients: BTreeMap::new(),
            stats: Stats::default(),
            issued_secrets: Vec::new(),
            admin_access_tokens: Vec::new(),
            registration_tokens: Vec::new(),
            token_requests: Vec::new(),
            pushes: Vec::new(),
            last_update: None,
            started: Instant::now(),
            request_log: Vec::new(),
            unavailable_until: None,
            unavailable_retry_after: None,
            counter: 0,
        }
    }

    /// A fresh random token with a recognisable prefix. The emulator is a test double, so
    /// fastrand (not a CSPRNG) is enough; uniqueness comes from the counter.
    pub fn token(&mut self, prefix: &str) -> String {
        self.counter += 1;
        let mut s = format!("{prefix}{:x}", self.counter);
        s.push('_');
        for _ in 0..32 {
            s.push(fastrand::alphanumeric());
        }
        self.issued_secrets.push(s.clone());
        s
    }

    pub fn next_id(&mut self, prefix: &str) -> String {
        self.counter += 1;
        let mut s = format!("{prefix}-{}-", self.counter);
        for _ in 0..8 {
            s.push(fastrand::lowercase());
        }
        s
    }

    /// Mints an IAT; `expires_in` zero means it never expires (Keycloak's `expiration: 0`).
    pub fn mint_iat(&mut self, expires_in: Duration, uses: u64) -> Iat {
        let never = Instant::now() + Duration::from_secs(100 * 365 * 86_400);
        let iat = Iat {
            id: self.next_id("iat"),
            token: self.token("iat"),
            expires_at: if expires_in.is_zero() {
                never
            } else {
                Instant::now() + expires_in
            },
            remaining: uses,
        };
        self.iats.push(iat.clone());
        self.stats.iats_minted += 1;
        iat
    }

    pub fn refresh_live(&mut self) {
        self.stats.clients_live = self.clients.len() as u64;
    }

    /// Issues a client a fresh registration access token; the old one stops working.
    pub fn rotate_rat(&mut self, id: &str) {
        let rat = self.token("rat");
        if let Some(c) = self.clients.get_mut(id) {
            c.rat = rat;
        }
    }

    /// Deletes a client (RFC 7592 DELETE, or an admin behind the client's back).
    pub fn remove_client(&mut self, id: &str) -> bool {
        let existed = self.clients.remove(id).is_some();
        self.refresh_live();
        existed
    }

    /// Makes the admin token invalid from now on, as an operator revoking it would.
    pub fn revoke_admin_token(&mut self) {
        self.admin_token = self.token("revoked-admin");
    }

    /// Expires every IAT minted so far.
    pub fn expire_iats(&mut self) {
        let now = Instant::now();
        self.iats.iter_mut().for_each(|i| i.expires_at = now);
    }

    /// Uses up every IAT minted so far.
    pub fn exhaust_iats(&mut self) {
        self.iats.iter_mut().for_each(|i| i.remaining = 0);
    }

    /// Makes every client secret expire now (`client_secret_expires_at` passes).
    pub fn expire_secrets(&mut self) {
        let past = now_epoch().saturating_sub(1);
        self.clients
            .values_mut()
            .filter(|c| c.client_secret.is_some())
            .for_each(|c| c.secret_expires_at = past);
    }

    /// Expires every access token issued by the token endpoint.
    pub fn expire_access_tokens(&mut self) {
        let now = Instant::now();
        self.admin_access_tokens.iter_mut().for_each(|t| t.1 = now);
    }

    /// When a secret issued now expires (0: never).
    pub fn secret_expiry(&self) -> u64 {
        self.config
            .quirks
            .secret_ttl
            .map_or(0, |ttl| now_epoch() + ttl.as_secs().max(1))
    }

    /// Changes a stored field behind the client's back (an admin editing the client).
    pub fn set_client_field(&mut self, id: &str, field: &str, value: Value) -> bool {
        match self.clients.get_mut(id) {
            Some(c) => {
                c.metadata.insert(field.to_string(), value);
                true
            }
            None => false,
        }
    }
}

pub fn now_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
