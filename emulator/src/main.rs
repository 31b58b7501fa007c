//! Command-line front end of the emulator. Every behaviour switch of the library is a flag.

#![forbid(unsafe_code)]

use clap::Parser;
use dcr_idp_emulator::{Config, Emulator, Fault, FaultAction, Profile};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

/// A strict local emulator of the EmpowerNow IdP: admin IAT minting, RFC 7591 registration,
/// RFC 7592 management, discovery, and fault injection. For tests and dev stacks only.
///
/// Endpoints: POST /api/admin/dcr/initial-access-tokens (admin bearer);
/// POST /api/oidc/dcr/register and /api/oidc/register (IAT bearer);
/// GET|PUT|PATCH|DELETE /api/oidc/register/{client_id} (registration access token);
/// POST /api/admin/dcr/clients/{client_id}/tokens (admin bearer: new RAT);
/// POST /api/oidc/token (client_credentials; client_secret_basic/_post or private_key_jwt);
/// PUT|POST /metrics/job/... (a Pushgateway stand-in);
/// GET /.well-known/openid-configuration, /api/oidc/.well-known/openid-configuration, /health.
/// Control (with `Authorization: Bearer <admin token>`): GET /_emulator/stats, GET /_emulator/clients, POST /_emulator/faults (JSON rule or
/// array), DELETE /_emulator/clients/{id}, POST /_emulator/admin-token/revoke,
/// POST /_emulator/iats/expire.
/// The admin token when none is given: public, so only for loopback.
const DEFAULT_ADMIN_TOKEN: &str = "dev-admin-token";

#[derive(Parser, Debug)]
#[command(name = "dcr-idp-emulator", version)]
struct Args {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Which IdP to play: empowernow (the EmpowerNow contract), keycloak (realm paths,
    /// clients-initial-access, RAT rotation on every use, Keycloak's error texts), or rfc7591
    /// (a plain RFC 7591/7592 server found by discovery, PUT-only management).
    #[arg(long, value_enum, default_value_t = Profile::Empowernow)]
    profile: Profile,
    /// Keycloak realm (with --profile keycloak).
    #[arg(long, default_value = "demo")]
    realm: String,
    /// Accept registrations without any token (Hydra, Auth0 style).
    #[arg(long)]
    open_registration: bool,
    /// Address to bind.
    #[arg(long, env = "EMULATOR_BIND", default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Port to listen on (0 picks a free one; the chosen URL is printed on stdout).
    #[arg(long, env = "EMULATOR_PORT", default_value_t = 8002)]
    port: u16,
    /// The admin access token the admin API accepts (dev value; never use a real one).
    #[arg(
        long,
        env = "EMULATOR_ADMIN_TOKEN",
        default_value = DEFAULT_ADMIN_TOKEN,
        hide_env_values = true
    )]
    admin_token: String,
    /// Read the admin token from this file instead (one trailing newline stripped), e.g. a
    /// compose secret.
    #[arg(long, env = "EMULATOR_ADMIN_TOKEN_FILE", value_name = "PATH")]
    admin_token_file: Option<std::path::PathBuf>,
    /// Allow listening beyond loopback with the public default admin token. Without it, a
    /// non-loopback --bind needs --admin-token or --admin-token-file.
    #[arg(long)]
    allow_default_admin_token: bool,
    /// Serve the /_emulator/* control routes without a credential. Without it they need
    /// `Authorization: Bearer <the admin token>`.
    #[arg(long)]
    open_control: bool,
    /// Keep the registered clients in this file, so that a restarted emulator still knows
    /// them, as a real IdP does.
    #[arg(long, value_name = "PATH")]
    state_file: Option<std::path::PathBuf>,
    /// Which spelling of the IAT use-count field to honour; the other one is rejected.
    #[arg(long, default_value = "max_uses", value_parser = ["max_uses", "max_usages"])]
    iat_max_uses_field: String,
    /// policy.allowed_scopes, space or comma separated.
    #[arg(
        long,
        default_value = "openid profile email offline_access admin.api application.all dcr.register"
    )]
    allowed_scopes: String,
    /// JSON field carrying the client profile name (e.g. code-flow-pkjwt).
    #[arg(long, default_value = "client_profile")]
    profile_field: String,
    /// Public base URL for URLs handed back (registration_client_uri, discovery);
    /// default: http://{Host header}.
    #[arg(long)]
    public_base: Option<String>,
    /// Rotate the registration access token on every RFC 7592 read.
    #[arg(long)]
    rotate_rat_on_get: bool,
    /// Rotate the registration access token on every update.
    #[arg(long)]
    rotate_rat_on_update: bool,
    /// Which Keycloak release the keycloak profile behaves like (e.g. 23, 24.0, 25.0, 26.8).
    #[arg(long, default_value = "26.8", value_parser = parse_keycloak_version)]
    keycloak_version: dcr_idp_emulator::KeycloakVersion,
    /// Status for management calls on an unknown client (RFC 7592: 401).
    #[arg(long, default_value_t = 401, value_parser = clap::value_parser!(u16).range(401..=404))]
    missing_client_status: u16,
    /// Bind at once but accept connections only after this long (e.g. 2s, 500ms):
    /// clients see "connection refused" meanwhile.
    #[arg(long, value_parser = parse_duration)]
    start_delay: Option<Duration>,
    /// Answer the first N requests with 503 (with Retry-After when --retry-after is set).
    #[arg(long, default_value_t = 0)]
    fail_first: u32,
    /// Answer the first N requests with 429 and Retry-After.
    #[arg(long, default_value_t = 0)]
    rate_limit_first: u32,
    /// Retry-After value sent with --fail-first and --rate-limit-first.
    #[arg(long)]
    retry_after: Option<String>,
    /// Delay every answer to the first N requests by --slow-ms.
    #[arg(long, default_value_t = 0)]
    slow_first: u32,
    /// Delay used by --slow-first, in milliseconds.
    #[arg(long, default_value_t = 0)]
    slow_ms: u64,
    /// Drop the connection of the first N requests without answering.
    #[arg(long, default_value_t = 0)]
    drop_first: u32,
    /// Answer the first N requests with a truncated JSON body.
    #[arg(long, default_value_t = 0)]
    malformed_first: u32,
    /// A confidential admin client, id:secret (repeatable): its client-credentials tokens
    /// from POST /api/oidc/token are accepted by the admin API.
    #[arg(long = "admin-client", value_name = "ID:SECRET")]
    admin_clients: Vec<String>,
    /// Lifetime of access tokens from the token endpoint (e.g. 300s).
    #[arg(long, value_parser = parse_duration, default_value = "300s")]
    access_token_ttl: Duration,
    /// Serve HTTPS with a certificate from a CA generated at start; the CA's PEM is written to
    /// --tls-ca-out (point DCR_CA_FILE at it).
    #[arg(long, requires = "tls_ca_out")]
    tls: bool,
    /// Where --tls writes the generated CA certificate (PEM).
    #[arg(long, value_name = "PATH")]
    tls_ca_out: Option<std::path::PathBuf>,
    /// Names the --tls server certificate is valid for, comma separated.
    #[arg(long, default_value = "localhost,127.0.0.1")]
    tls_hosts: String,
    /// Quirk: answer token_endpoint_auth_method as a one-element array.
    #[arg(long)]
    auth_method_as_array: bool,
    /// Quirk: neither store nor echo scope.
    #[arg(long)]
    forget_scope: bool,
    /// Quirk: add these grant types to what a client asks for (comma separated).
    #[arg(long, value_delimiter = ',')]
    add_grant_types: Vec<String>,
    /// Quirk: issue a new client_secret on every update.
    #[arg(long)]
    new_secret_on_update: bool,
    /// Quirk: ignore a requested client_id and assign one.
    #[arg(long)]
    ignore_client_id: bool,
    /// Quirk: answer PATCH with this status (404 or 405).
    #[arg(long, value_parser = clap::value_parser!(u16).range(404..=405))]
    patch_status: Option<u16>,
    /// Quirk: answer PATCH with an empty 200 and change nothing.
    #[arg(long)]
    patch_noop: bool,
    /// Quirk: answer refused tokens with 400 access_denied instead of 401.
    #[arg(long)]
    token_error_400: bool,
    /// Quirk: answer 500 to a *_uri member that is not a string.
    #[arg(long)]
    crash_on_bad_types: bool,
    /// Quirk: accept only these client-assertion algorithms (and list them in discovery).
    #[arg(long, value_delimiter = ',')]
    signing_algs: Vec<String>,
    /// Quirk: accept admin-client access tokens of this scope as registration tokens.
    #[arg(long)]
    registration_scope: Option<String>,
    /// Quirk: refuse every registered client's authentication at the token endpoint.
    #[arg(long)]
    refuse_client_auth: bool,
    /// Any other quirk of `Quirks`, by name, with a value where it takes one (repeatable),
    /// e.g. --quirk auth-failure-empty-403 --quirk secret-ttl=30s. Names: see
    /// `Quirks::set` (emulator/README.md).
    #[arg(long = "quirk", value_name = "NAME[=VALUE]")]
    quirks: Vec<String>,
    /// A fault rule as JSON (repeatable), e.g.
    /// '{"path":"/api/oidc","times":2,"action":{"kind":"respond","status":502}}'.
    #[arg(long = "fault")]
    faults: Vec<String>,
}

#[derive(clap::Subcommand, Debug)]
enum Mode {
    /// Play the application instead of the IdP: read the credentials dcr-bootstrap wrote,
    /// print the client_id (exit 1 when the file is missing or unreadable), optionally prove
    /// them at a token endpoint with a private_key_jwt assertion, then stay up until
    /// SIGTERM like a service would (or exit at once with --once).
    BffStandin {
        /// The registration file (DCR_OUTPUT of dcr-bootstrap).
        #[arg(long, env = "BFF_CLIENT_CRED_PATH")]
        credentials: std::path::PathBuf,
        /// Prove the credentials here (plain http): client credentials with a client
        /// assertion signed by the key the file names.
        #[arg(long)]
        token_endpoint: Option<String>,
        /// Exit after reading (and proving) instead of staying up.
        #[arg(long)]
        once: bool,
    },
}

/// The stand-in application: 0 when the credentials are readable (and proven).
async fn bff_standin(
    term: &mut Option<tokio::signal::unix::Signal>,
    path: &std::path::Path,
    token_endpoint: Option<&str>,
    once: bool,
) -> ExitCode {
    use dcr_idp_emulator::standin;
    let creds = match standin::read_credentials(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bff-standin: {e}");
            return ExitCode::from(1);
        }
    };
    println!("bff-standin: client_id={}", creds.client_id);
    if let Some(url) = token_endpoint {
        let Some((key, kid, alg)) = &creds.key else {
            eprintln!(
                "bff-standin: {} names no signing key to prove",
                path.display()
            );
            return ExitCode::from(1);
        };
        let proof = std::fs::read_to_string(key)
            .map_err(|e| format!("cannot read the key {key}: {e}"))
            .and_then(|pem| standin::client_assertion(&pem, alg, kid, &creds.client_id, url))
            .and_then(|jwt| standin::post_form(url, &standin::assertion_form(&jwt)));
        match proof {
            Ok((status, body)) if standin::authenticated(status, &body) => {
                println!("bff-standin: private_key_jwt ({kid}) accepted at {url}")
            }
            Ok((status, body)) => {
                eprintln!("bff-standin: the token endpoint {url} answered {status}: {body}");
                return ExitCode::from(1);
            }
            Err(e) => {
                eprintln!("bff-standin: {e}");
                return ExitCode::from(1);
            }
        }
    }
    if !once {
        wait_for_stop(term).await;
    }
    ExitCode::SUCCESS
}

/// SIGTERM, registered at once: as PID 1 in a container, a signal without a handler is
/// ignored, and `docker stop` would wait for its timeout.
fn term_signal() -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok()
}

async fn wait_for_stop(term: &mut Option<tokio::signal::unix::Signal>) {
    match term {
        Some(term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|_| format!("expected a duration like 500ms, 2s or 5m, got {s:?}"))
}

fn config(args: &Args) -> Result<Config, String> {
    let mut faults = Vec::new();
    // "API requests": everything but the emulator's own control endpoints (never faulted).
    let api = "/";
    let ra = args.retry_after.as_deref();
    if args.slow_first > 0 {
        faults.push(Fault::action_on(
            api,
            args.slow_first,
            FaultAction::Delay { ms: args.slow_ms },
        ));
    }
    if args.drop_first > 0 {
        faults.push(Fault::action_on(api, args.drop_first, FaultAction::Drop));
    }
    if args.fail_first > 0 {
        faults.push(Fault::status(api, 503, args.fail_first, ra));
    }
    if args.rate_limit_first > 0 {
        faults.push(Fault::status(
            api,
            429,
            args.rate_limit_first,
            ra.or(Some("1")),
        ));
    }
    if args.malformed_first > 0 {
        faults.push(Fault::action_on(
            api,
            args.malformed_first,
            FaultAction::TruncateBody,
        ));
    }
    for raw in &args.faults {
        faults.push(serde_json::from_str(raw).map_err(|e| format!("--fault {raw}: {e}"))?);
    }
    let tls = if args.tls {
        let hosts: Vec<&str> = args
            .tls_hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        let pki = dcr_idp_emulator::TestPki::new(&hosts).map_err(|e| format!("--tls: {e}"))?;
        if let Some(path) = &args.tls_ca_out {
            std::fs::write(path, &pki.ca_pem)
                .map_err(|e| format!("--tls-ca-out {}: {e}", path.display()))?;
        }
        Some(pki)
    } else {
        None
    };
    let mut admin_clients = Vec::new();
    for c in &args.admin_clients {
        let (id, secret) = c
            .split_once(':')
            .ok_or_else(|| format!("--admin-client expects ID:SECRET, got {c:?}"))?;
        admin_clients.push((id.to_string(), secret.to_string()));
    }
    let admin_token = match &args.admin_token_file {
        Some(path) => {
            let raw = std::fs::read_to_string(path)
                .map_err(|e| format!("--admin-token-file {}: {e}", path.display()))?;
            let t = raw.strip_suffix('\n').unwrap_or(&raw).to_string();
            if t.is_empty() {
                return Err(format!("--admin-token-file {} is empty", path.display()));
            }
            t
        }
        None => args.admin_token.clone(),
    };
    if admin_token == DEFAULT_ADMIN_TOKEN
        && !args.bind.is_loopback()
        && !args.allow_default_admin_token
    {
        return Err(format!(
            "refusing to listen on {} with the public default admin token {DEFAULT_ADMIN_TOKEN:?}: anyone who can reach \
             the port could mint IATs. Set --admin-token / --admin-token-file (EMULATOR_ADMIN_TOKEN[_FILE]), or \
             --allow-default-admin-token for a throwaway stack",
            args.bind
        ));
    }
    let profile = args.profile;
    let mut quirks = dcr_idp_emulator::Quirks {
        auth_method_as_array: args.auth_method_as_array,
        forget_scope: args.forget_scope,
        add_grant_types: args.add_grant_types.clone(),
        new_secret_on_update: args.new_secret_on_update,
        ignore_client_id: args.ignore_client_id,
        patch_status: args.patch_status,
        patch_noop: args.patch_noop,
        token_error_400: args.token_error_400,
        crash_on_bad_types: args.crash_on_bad_types,
        signing_algs: (!args.signing_algs.is_empty()).then(|| args.signing_algs.clone()),
        registration_scope: args.registration_scope.clone(),
        refuse_client_auth: args.refuse_client_auth,
        ..dcr_idp_emulator::Quirks::default()
    };
    for q in &args.quirks {
        let (name, value) = q.split_once('=').unwrap_or((q, ""));
        quirks
            .set(name, value)
            .map_err(|e| format!("--quirk {q}: {e}"))?;
    }
    Ok(Config {
        tls,
        profile,
        realm: args.realm.clone(),
        open_registration: args.open_registration,
        drop_scopes: Vec::new(),
        admin_clients,
        access_token_ttl: args.access_token_ttl,
        admin_token,
        iat_max_uses_field: args.iat_max_uses_field.clone(),
        allowed_scopes: args
            .allowed_scopes
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        profile_field: args.profile_field.clone(),
        public_base: args.public_base.clone(),
        rotate_rat_on_get: args.rotate_rat_on_get,
        rotate_rat_on_update: args.rotate_rat_on_update,
        keycloak_version: args.keycloak_version,
        open_control: args.open_control,
        state_file: args.state_file.clone(),
        missing_client_status: args.missing_client_status,
        faults,
        quirks,
    })
}

fn parse_keycloak_version(s: &str) -> Result<dcr_idp_emulator::KeycloakVersion, String> {
    dcr_idp_emulator::KeycloakVersion::parse(s)
        .ok_or_else(|| format!("{s:?} is not a MAJOR.MINOR version"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let mut term = term_signal();
    let args = Args::parse();
    if let Some(Mode::BffStandin {
        credentials,
        token_endpoint,
        once,
    }) = &args.mode
    {
        return bff_standin(&mut term, credentials, token_endpoint.as_deref(), *once).await;
    }
    let cfg = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dcr-idp-emulator: {e}");
            return ExitCode::from(2);
        }
    };
    let mut emu = match Emulator::bind(SocketAddr::new(args.bind, args.port), cfg) {
        Ok(e) => e,
        Err(e) => {
            eprintln!(
                "dcr-idp-emulator: cannot bind {}:{}: {e}",
                args.bind, args.port
            );
            return ExitCode::from(1);
        }
    };
    if let Some(d) = args.start_delay {
        eprintln!("dcr-idp-emulator: bound {}, accepting in {d:?}", emu.addr());
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = wait_for_stop(&mut term) => return ExitCode::SUCCESS,
        }
    }
    if let Err(e) = emu.listen() {
        eprintln!("dcr-idp-emulator: cannot listen: {e}");
        return ExitCode::from(1);
    }
    println!("dcr-idp-emulator listening on {}", emu.base_url());
    wait_for_stop(&mut term).await;
    let stats = emu.stats();
    eprintln!(
        "dcr-idp-emulator: stopping; {}",
        serde_json::to_string(&stats).unwrap_or_default()
    );
    ExitCode::SUCCESS
}
