//! The command line: every option is a `--flag` and an environment variable, and `--help`
//! lists every variable name. Values are taken as text here and validated in `config.rs`, so
//! that every error names the variable at fault and never echoes a secret.

use crate::secret::SecretArg;
use clap::{Args, Parser, Subcommand};

/// Bootstraps an OAuth client at an identity provider, then exits: mints a short-lived
/// Initial Access Token with an admin token (or uses one it is given), registers the client
/// with OAuth 2.0 Dynamic Client Registration (RFC 7591), retries with backoff until the IdP
/// is reachable, and writes the registration atomically to a file. Idempotent: a restart
/// verifies the stored registration (RFC 7592) instead of registering again.
///
/// Exit codes: 0 done; 2 configuration; 3 rejected by the IdP; 4 deadline passed with the IdP
/// unreachable or not ready; 5 local I/O; 130/143 interrupted by SIGINT/SIGTERM.
///
/// Secrets (admin token, IAT) are best passed as files: every secret variable NAME also
/// accepts NAME_FILE, a path whose content (one trailing newline stripped) is the value.
#[derive(Parser, Debug)]
#[command(name = "dcr-bootstrap", version, max_term_width = 110)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub opts: Opts,
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Register or verify the client, then exit (the default without a subcommand).
    Run,
    /// Validate the configuration and metadata offline; print the effective configuration
    /// (secrets redacted) and the request bodies that would be sent. Sends nothing. Exit 0 or 2.
    Check,
    /// Delete the client at the IdP (RFC 7592 DELETE) and remove the output and key files.
    Deregister,
    /// Only mint an IAT and write it to DCR_IAT_OUTPUT (0600), for a BFF that still registers
    /// itself.
    MintIat,
}

#[derive(Args, Debug, Default, Clone)]
pub struct Opts {
    // ---- IdP ----
    /// Base URL of the IdP as seen from this container, e.g. http://idp-app:8002 (required).
    #[arg(
        long,
        global = true,
        env = "IDP_BASE_URL",
        value_name = "URL",
        help_heading = "IdP"
    )]
    pub idp_base_url: Option<String>,

    /// Endpoint layout of the IdP: empowernow, keycloak, or rfc7591 (endpoints by discovery).
    #[arg(
        long,
        global = true,
        env = "DCR_PROFILE",
        value_name = "NAME",
        default_value = "empowernow",
        help_heading = "IdP"
    )]
    pub profile: String,

    /// IAT minting endpoint [default: {IDP_BASE_URL}/api/admin/dcr/initial-access-tokens].
    #[arg(
        long,
        global = true,
        env = "DCR_IAT_ENDPOINT",
        value_name = "URL",
        help_heading = "IdP"
    )]
    pub iat_endpoint: Option<String>,

    /// Registration endpoint [default: {IDP_BASE_URL}/api/oidc/dcr/register].
    #[arg(
        long,
        global = true,
        env = "DCR_REGISTRATION_ENDPOINT",
        value_name = "URL",
        help_heading = "IdP"
    )]
    pub registration_endpoint: Option<String>,

    /// Issuer for discovery (rfc7591) [default: IDP_BASE_URL].
    #[arg(
        long,
        global = true,
        env = "DCR_ISSUER",
        value_name = "URL",
        help_heading = "IdP"
    )]
    pub issuer: Option<String>,

    /// Keycloak realm (required with DCR_PROFILE=keycloak).
    #[arg(
        long,
        global = true,
        env = "DCR_KEYCLOAK_REALM",
        value_name = "REALM",
        help_heading = "IdP"
    )]
    pub keycloak_realm: Option<String>,

    /// Token endpoint for the admin client-credentials grant [default: by profile, or discovery].
    #[arg(
        long,
        global = true,
        env = "DCR_TOKEN_ENDPOINT",
        value_name = "URL",
        help_heading = "IdP"
    )]
    pub token_endpoint: Option<String>,

    /// Public base URL the IdP puts in the URLs it hands back (registration_client_uri,
    /// discovery); rewritten to IDP_BASE_URL before use, e.g. https://idp.example.com.
    #[arg(
        long,
        global = true,
        env = "DCR_REWRITE_PUBLIC_BASE",
        value_name = "URL",
        help_heading = "IdP"
    )]
    pub rewrite_public_base: Option<String>,

    /// Extra CA certificate(s) to trust, PEM (for an IdP behind a private CA).
    #[arg(
        long,
        global = true,
        env = "DCR_CA_FILE",
        value_name = "PATH",
        help_heading = "IdP"
    )]
    pub ca_file: Option<String>,

    /// Allow plain http:// to a non-loopback host (a compose network such as http://idp-app:8002).
    #[arg(
        long,
        global = true,
        env = "DCR_ALLOW_INSECURE_HTTP",
        value_name = "BOOL",
        default_value = "false",
        help_heading = "IdP"
    )]
    pub allow_insecure_http: String,

    /// Admin endpoint that re-issues a client's registration access token; {client_id} is
    /// replaced [default: {IDP_BASE_URL}/api/admin/dcr/clients/{client_id}/tokens].
    #[arg(
        long,
        global = true,
        env = "DCR_RAT_ENDPOINT",
        value_name = "URL",
        help_heading = "IdP"
    )]
    pub rat_endpoint: Option<String>,

    // ---- Tokens ----
    /// An Initial Access Token (or any bearer token the IdP accepts for registration) to
    /// register with; minting is skipped. `none` registers without a token (open registration).
    /// Secret.
    #[arg(
        long,
        global = true,
        env = "DCR_IAT",
        value_name = "TOKEN",
        hide_env_values = true,
        help_heading = "Tokens"
    )]
    pub iat: Option<SecretArg>,

    /// File holding DCR_IAT.
    #[arg(
        long,
        global = true,
        env = "DCR_IAT_FILE",
        value_name = "PATH",
        help_heading = "Tokens"
    )]
    pub iat_file: Option<String>,

    /// Admin access token used to mint an IAT. Secret.
    #[arg(
        long,
        global = true,
        env = "BOOTSTRAP_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        help_heading = "Tokens"
    )]
    pub admin_token: Option<SecretArg>,

    /// File holding BOOTSTRAP_ADMIN_TOKEN.
    #[arg(
        long,
        global = true,
        env = "BOOTSTRAP_ADMIN_TOKEN_FILE",
        value_name = "PATH",
        help_heading = "Tokens"
    )]
    pub admin_token_file: Option<String>,

    /// Admin token by client credentials instead of BOOTSTRAP_ADMIN_TOKEN: the client id.
    #[arg(
        long,
        global = true,
        env = "DCR_ADMIN_CLIENT_ID",
        value_name = "ID",
        help_heading = "Tokens"
    )]
    pub admin_client_id: Option<String>,

    /// The admin client's secret. Secret.
    #[arg(
        long,
        global = true,
        env = "DCR_ADMIN_CLIENT_SECRET",
        value_name = "SECRET",
        hide_env_values = true,
        help_heading = "Tokens"
    )]
    pub admin_client_secret: Option<SecretArg>,

    /// File holding DCR_ADMIN_CLIENT_SECRET.
    #[arg(
        long,
        global = true,
        env = "DCR_ADMIN_CLIENT_SECRET_FILE",
        value_name = "PATH",
        help_heading = "Tokens"
    )]
    pub admin_client_secret_file: Option<String>,

    /// How the admin client authenticates: client_secret_basic or client_secret_post.
    #[arg(
        long,
        global = true,
        env = "DCR_ADMIN_AUTH_METHOD",
        value_name = "METHOD",
        default_value = "client_secret_basic",
        help_heading = "Tokens"
    )]
    pub admin_auth_method: String,

    /// Scope of the admin token [default: admin.api for empowernow, none otherwise].
    #[arg(
        long,
        global = true,
        env = "DCR_ADMIN_SCOPE",
        value_name = "SCOPE",
        help_heading = "Tokens"
    )]
    pub admin_scope: Option<String>,

    /// RFC 8707 resource (audience) of the admin token, e.g. https://idp.example/api/admin.
    #[arg(
        long,
        global = true,
        env = "DCR_ADMIN_RESOURCE",
        value_name = "URI",
        help_heading = "Tokens"
    )]
    pub admin_resource: Option<String>,

    /// Label of the minted IAT.
    #[arg(
        long,
        global = true,
        env = "DCR_IAT_LABEL",
        value_name = "TEXT",
        default_value = "dcr-bootstrap",
        help_heading = "Tokens"
    )]
    pub iat_label: String,

    /// Lifetime of the minted IAT, in seconds.
    #[arg(
        long,
        global = true,
        env = "DCR_IAT_EXPIRES_IN",
        value_name = "SECONDS",
        default_value = "600",
        help_heading = "Tokens"
    )]
    pub iat_expires_in: String,

    /// How many registrations the minted IAT allows.
    #[arg(
        long,
        global = true,
        env = "DCR_IAT_MAX_USES",
        value_name = "N",
        default_value = "1",
        help_heading = "Tokens"
    )]
    pub iat_max_uses: String,

    /// Name of the use-count field in the mint request: max_uses or max_usages (the docs disagree).
    #[arg(
        long,
        global = true,
        env = "DCR_IAT_MAX_USES_FIELD",
        value_name = "FIELD",
        default_value = "max_uses",
        help_heading = "Tokens"
    )]
    pub iat_max_uses_field: String,

    // ---- Client metadata ----
    /// Client metadata as an inline JSON object (RFC 7591 §2); the DCR_* fields below override it.
    #[arg(
        long,
        global = true,
        env = "DCR_CLIENT_METADATA",
        value_name = "JSON",
        help_heading = "Client metadata"
    )]
    pub client_metadata: Option<String>,

    /// Client metadata from a JSON file (instead of DCR_CLIENT_METADATA).
    #[arg(
        long,
        global = true,
        env = "DCR_CLIENT_METADATA_FILE",
        value_name = "PATH",
        help_heading = "Client metadata"
    )]
    pub client_metadata_file: Option<String>,

    /// Requested client_id (EmpowerNow honours it; a stable id makes recovery easier).
    #[arg(
        long,
        global = true,
        env = "DCR_CLIENT_ID",
        value_name = "ID",
        help_heading = "Client metadata"
    )]
    pub client_id: Option<String>,

    /// client_name.
    #[arg(
        long,
        global = true,
        env = "DCR_CLIENT_NAME",
        value_name = "NAME",
        help_heading = "Client metadata"
    )]
    pub client_name: Option<String>,

    /// redirect_uris, comma or space separated.
    #[arg(
        long,
        global = true,
        env = "DCR_REDIRECT_URIS",
        value_name = "URIS",
        help_heading = "Client metadata"
    )]
    pub redirect_uris: Option<String>,

    /// scope, space or comma separated.
    #[arg(
        long,
        global = true,
        env = "DCR_SCOPE",
        value_name = "SCOPES",
        help_heading = "Client metadata"
    )]
    pub scope: Option<String>,

    /// grant_types, comma or space separated.
    #[arg(
        long,
        global = true,
        env = "DCR_GRANT_TYPES",
        value_name = "LIST",
        help_heading = "Client metadata"
    )]
    pub grant_types: Option<String>,

    /// response_types, comma or space separated.
    #[arg(
        long,
        global = true,
        env = "DCR_RESPONSE_TYPES",
        value_name = "LIST",
        help_heading = "Client metadata"
    )]
    pub response_types: Option<String>,

    /// token_endpoint_auth_method: private_key_jwt, client_secret_basic, client_secret_post or none.
    #[arg(
        long,
        global = true,
        env = "DCR_TOKEN_ENDPOINT_AUTH_METHOD",
        value_name = "METHOD",
        help_heading = "Client metadata"
    )]
    pub token_endpoint_auth_method: Option<String>,

    /// IdP client profile (template), e.g. code-flow-pkjwt.
    #[arg(
        long,
        global = true,
        env = "DCR_CLIENT_PROFILE",
        value_name = "NAME",
        help_heading = "Client metadata"
    )]
    pub client_profile: Option<String>,

    /// JSON field that carries DCR_CLIENT_PROFILE (undocumented by the IdP).
    #[arg(
        long,
        global = true,
        env = "DCR_CLIENT_PROFILE_FIELD",
        value_name = "FIELD",
        default_value = "client_profile",
        help_heading = "Client metadata"
    )]
    pub client_profile_field: String,

    // ---- Keys ----
    /// PEM private key for private_key_jwt: published as inline jwks; generated (RSA 2048,
    /// RS256) when missing and written only after the IdP accepted it.
    #[arg(
        long,
        global = true,
        env = "DCR_SIGNING_KEY",
        value_name = "PATH",
        help_heading = "Keys"
    )]
    pub signing_key: Option<String>,

    /// kid of the first key [default: RFC 7638 thumbprint]; rotated keys get "<BFF_KID>-<unix time>".
    #[arg(
        long,
        global = true,
        env = "BFF_KID",
        value_name = "KID",
        help_heading = "Keys"
    )]
    pub kid: Option<String>,

    /// Algorithm of generated keys: RS256, PS256 or ES256 (P-256).
    #[arg(
        long,
        global = true,
        env = "DCR_KEY_ALG",
        value_name = "ALG",
        default_value = "RS256",
        help_heading = "Keys"
    )]
    pub key_alg: String,

    /// RSA key size for RS256/PS256: 2048, 3072 or 4096.
    #[arg(
        long,
        global = true,
        env = "DCR_RSA_BITS",
        value_name = "BITS",
        default_value = "2048",
        help_heading = "Keys"
    )]
    pub rsa_bits: String,

    /// Rotate the signing key when it is this many days old (0: on this start; negative: never).
    #[arg(
        long,
        global = true,
        env = "BFF_JWK_ROTATE_AFTER_DAYS",
        value_name = "DAYS",
        default_value = "30",
        help_heading = "Keys"
    )]
    pub rotate_after_days: String,

    /// Stop publishing earlier keys this many days old (0 or less: off).
    #[arg(
        long,
        global = true,
        env = "BFF_JWK_RETIRE_AFTER_DAYS",
        value_name = "DAYS",
        default_value = "60",
        help_heading = "Keys"
    )]
    pub retire_after_days: String,

    /// Publish at most this many keys (0 or less: no cap; never below 2 during a rotation).
    #[arg(
        long,
        global = true,
        env = "BFF_JWK_MAX_KEYS",
        value_name = "N",
        default_value = "3",
        help_heading = "Keys"
    )]
    pub max_keys: String,

    /// Register this jwks_uri (served by the BFF) instead of inline jwks.
    #[arg(
        long,
        global = true,
        env = "DCR_JWKS_URI",
        value_name = "URL",
        help_heading = "Keys"
    )]
    pub jwks_uri: Option<String>,

    /// Also write the public JWKS of the published keys here (for /.well-known/jwks.json).
    #[arg(
        long,
        global = true,
        env = "DCR_JWKS_OUTPUT",
        value_name = "PATH",
        help_heading = "Keys"
    )]
    pub jwks_output: Option<String>,

    // ---- Output ----
    /// Where the registration JSON is written (required).
    #[arg(
        long,
        global = true,
        env = "DCR_OUTPUT",
        value_name = "PATH",
        help_heading = "Output"
    )]
    pub output: Option<String>,

    /// Alias of DCR_OUTPUT, the BFF's name for it.
    #[arg(
        long,
        global = true,
        env = "BFF_CLIENT_CRED_PATH",
        value_name = "PATH",
        help_heading = "Output"
    )]
    pub bff_client_cred_path: Option<String>,

    /// File mode of the written files, octal.
    #[arg(
        long,
        global = true,
        env = "DCR_OUTPUT_MODE",
        value_name = "OCTAL",
        default_value = "0600",
        help_heading = "Output"
    )]
    pub output_mode: String,

    /// Owner of the written files, uid:gid (e.g. 1000:1000 for a non-root BFF).
    #[arg(
        long,
        global = true,
        env = "DCR_OUTPUT_OWNER",
        value_name = "UID:GID",
        help_heading = "Output"
    )]
    pub output_owner: Option<String>,

    /// Also write a dotenv file with AUTH_CLIENT_ID and, when issued, AUTH_CLIENT_SECRET.
    #[arg(
        long,
        global = true,
        env = "DCR_ENV_OUTPUT",
        value_name = "PATH",
        help_heading = "Output"
    )]
    pub env_output: Option<String>,

    /// What to do when the stored client is gone at the IdP: fail or reregister.
    #[arg(
        long,
        global = true,
        env = "DCR_ON_STALE",
        value_name = "POLICY",
        default_value = "fail",
        help_heading = "Output"
    )]
    pub on_stale: String,

    /// When DCR_CLIENT_ID is already registered (a lost answer, a lost volume): adopt it (needs
    /// BOOTSTRAP_ADMIN_TOKEN to re-issue its registration access token) or fail.
    #[arg(
        long,
        global = true,
        env = "DCR_ON_EXISTING",
        value_name = "POLICY",
        default_value = "adopt",
        help_heading = "Output"
    )]
    pub on_existing: String,

    /// How drift is corrected: patch (changed fields only) or put (RFC 7592 full replacement)
    /// [default: patch for empowernow, put otherwise].
    #[arg(
        long,
        global = true,
        env = "DCR_UPDATE_METHOD",
        value_name = "METHOD",
        help_heading = "Output"
    )]
    pub update_method: Option<String>,

    /// Redirect URI updates: auto (when DCR_REDIRECT_URIS is set and differs), replace, merge or none.
    #[arg(
        long,
        global = true,
        env = "DCR_REDIRECT_UPDATE_MODE",
        value_name = "MODE",
        default_value = "auto",
        help_heading = "Output"
    )]
    pub redirect_update_mode: String,

    /// Never remove a redirect URI: forces DCR_REDIRECT_UPDATE_MODE=merge.
    #[arg(
        long,
        global = true,
        env = "DCR_ROTATION_SAFE",
        value_name = "BOOL",
        default_value = "false",
        help_heading = "Output"
    )]
    pub rotation_safe: String,

    /// Fail (exit 3) instead of warning when the IdP registered another auth method, grants or scopes.
    #[arg(
        long,
        global = true,
        env = "DCR_STRICT_READBACK",
        value_name = "BOOL",
        default_value = "false",
        help_heading = "Output"
    )]
    pub strict_readback: String,

    /// Where `mint-iat` writes the IAT (0600).
    #[arg(
        long,
        global = true,
        env = "DCR_IAT_OUTPUT",
        value_name = "PATH",
        help_heading = "Output"
    )]
    pub iat_output: Option<String>,

    /// Push a status metric to this Prometheus Pushgateway (job dcr-bootstrap); failures only warn.
    #[arg(
        long,
        global = true,
        env = "PROM_PUSHGATEWAY_URL",
        value_name = "URL",
        help_heading = "Output"
    )]
    pub pushgateway: Option<String>,

    /// Delete the stored client and register afresh on every start (hard reset; turn off after).
    #[arg(
        long,
        global = true,
        env = "DCR_FORCE_REPLACE",
        value_name = "BOOL",
        default_value = "false",
        help_heading = "Output"
    )]
    pub force_replace: String,

    // ---- Timing ----
    /// Overall deadline of the run.
    #[arg(
        long,
        global = true,
        env = "DCR_TIMEOUT",
        value_name = "DURATION",
        default_value = "300s",
        help_heading = "Timing"
    )]
    pub timeout: String,

    /// Timeout of a single HTTP request.
    #[arg(
        long,
        global = true,
        env = "DCR_REQUEST_TIMEOUT",
        value_name = "DURATION",
        default_value = "10s",
        help_heading = "Timing"
    )]
    pub request_timeout: String,

    /// First backoff step after an HTTP-level failure (5xx, 429, timeout); doubles up to DCR_BACKOFF_MAX, full jitter.
    #[arg(
        long,
        global = true,
        env = "DCR_BACKOFF_INITIAL",
        value_name = "DURATION",
        default_value = "1s",
        help_heading = "Timing"
    )]
    pub backoff_initial: String,

    /// Largest backoff step.
    #[arg(
        long,
        global = true,
        env = "DCR_BACKOFF_MAX",
        value_name = "DURATION",
        default_value = "8s",
        help_heading = "Timing"
    )]
    pub backoff_max: String,

    /// Interval between connection probes while nothing listens (refused, DNS, connect timeout).
    #[arg(
        long,
        global = true,
        env = "DCR_PROBE_INTERVAL",
        value_name = "DURATION",
        default_value = "500ms",
        help_heading = "Timing"
    )]
    pub probe_interval: String,

    /// Wait a random time up to this before the first request (0s: none). For large fleets
    /// starting together, so that their first requests do not arrive as one burst.
    #[arg(
        long,
        global = true,
        env = "DCR_START_JITTER",
        value_name = "DURATION",
        default_value = "0s",
        help_heading = "Timing"
    )]
    pub start_jitter: String,

    /// Longest Retry-After honoured; longer values are capped to this.
    #[arg(
        long,
        global = true,
        env = "DCR_RETRY_AFTER_MAX",
        value_name = "DURATION",
        default_value = "60s",
        help_heading = "Timing"
    )]
    pub retry_after_max: String,

    // ---- Logging ----
    /// Log format: text or json.
    #[arg(
        long,
        global = true,
        env = "DCR_LOG_FORMAT",
        value_name = "FORMAT",
        default_value = "text",
        help_heading = "Logging"
    )]
    pub log_format: String,

    /// Log filter (tracing EnvFilter syntax), e.g. info, debug, dcr_bootstrap=trace.
    #[arg(
        long,
        global = true,
        env = "RUST_LOG",
        value_name = "FILTER",
        default_value = "info",
        help_heading = "Logging"
    )]
    pub log: String,
}
