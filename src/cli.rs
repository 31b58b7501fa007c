//! The command line: every option is a `--flag` and an environment variable, `--help` lists
//! every variable name, and closed sets are `ValueEnum`s. Options come in groups, one per help
//! heading; `config` turns each group into its validated settings. Values clap cannot parse are
//! reported by [`explain`] as "NAME (--flag): expected …", like every other configuration
//! error; secrets are parsed infallibly, so no error can quote one.

use crate::duration;
use crate::idp::profile::Profile;
use crate::idp::{ClientAuth, MaxUsesField, UpdateMethod};
use crate::local::keys::KeyAlg;
use crate::policy::{ExistingPolicy, RedirectMode, StalePolicy};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand};
use secrecy::SecretString;
use std::path::PathBuf;
use std::time::Duration;

/// Bootstraps an OAuth client at an identity provider, then exits: mints a short-lived
/// Initial Access Token with an admin token (or uses one it is given), registers the client
/// with OAuth 2.0 Dynamic Client Registration (RFC 7591), retries with backoff until the IdP
/// is reachable, and writes the registration atomically to a file. Idempotent: a restart
/// verifies the stored registration (RFC 7592) instead of registering again.
///
/// Exit codes: 0 done; 2 configuration; 3 rejected by the IdP; 4 deadline passed with the IdP
/// unreachable or not ready; 5 local I/O; 130/143 interrupted by SIGINT/SIGTERM.
///
/// Most deployments set only: IDP_BASE_URL, BOOTSTRAP_ADMIN_TOKEN_FILE (or
/// DCR_ADMIN_CLIENT_ID and DCR_ADMIN_CLIENT_SECRET_FILE), DCR_CLIENT_NAME, DCR_REDIRECT_URIS,
/// DCR_SCOPE, DCR_OUTPUT, and for private_key_jwt DCR_CLIENT_PROFILE=code-flow-pkjwt with
/// DCR_SIGNING_KEY; DCR_PROFILE=keycloak with DCR_KEYCLOAK_REALM at Keycloak. `-h` is the
/// short form of this help; each command's help shows only what applies to it; every
/// variable with its default is in docs/configuration.md.
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
    /// Delete the client at the IdP (RFC 7592 DELETE) and remove the output and key files,
    /// naming each.
    Deregister {
        /// Say which client would be deleted and which files removed; send and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Only mint an IAT and write it to DCR_IAT_OUTPUT (0600), for a BFF that still registers
    /// itself.
    MintIat,
    /// Generate a private key at DCR_SIGNING_KEY (PEM, 0600; DCR_KEY_ALG, default RS256) for a
    /// Kubernetes Secret that every replica mounts; prints its kid (BFF_KID) and public JWK.
    /// Needs no IdP settings and refuses to overwrite a file.
    Keygen,
    /// Print the version.
    Version,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell), e.g.
    /// `dcr-bootstrap completions bash > /etc/bash_completion.d/dcr-bootstrap`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `dcr-bootstrap man | man -l -`.
    Man,
}

/// The option headings and single options each command reads (the others are hidden from its
/// help, and ignored): `None` for the commands that read them all.
fn reads(command: &str) -> Option<(&'static [&'static str], &'static [&'static str])> {
    match command {
        "keygen" => Some((&["Logging"], &["signing_key", "kid", "key_alg", "rsa_bits"])),
        "mint-iat" => Some((
            &["IdP", "Tokens", "Timing", "Logging"],
            &["iat_output", "output_owner"],
        )),
        "version" | "completions" | "man" => Some((&["Logging"], &[])),
        _ => None,
    }
}

/// The command line as parsed and shown: choices in any case, and each command's help
/// showing only the options it reads.
pub fn command() -> clap::Command {
    let mut cmd = Cli::command().mut_args(|a| a.ignore_case(true));
    cmd.build();
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        let Some((headings, ids)) = reads(&name) else {
            continue;
        };
        cmd = cmd.mut_subcommand(&name, |sc| {
            sc.mut_args(|a| {
                let shown = a.get_help_heading().is_none_or(|h| headings.contains(&h))
                    || ids.contains(&a.get_id().as_str());
                let essential = matches!(a.get_id().as_str(), "help" | "version");
                if shown || essential { a } else { a.hide(true) }
            })
        });
    }
    cmd
}

/// The completion script for `shell`, generated from the command-line definition.
pub fn completions(shell: clap_complete::Shell) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command(), "dcr-bootstrap", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The man page, generated from the command-line definition, with an ENVIRONMENT section
/// (the variables are how most people configure this program; clap_mangen lists flags only).
pub fn man_page() -> Result<String, String> {
    let mut out = Vec::new();
    clap_mangen::Man::new(command())
        .render(&mut out)
        .map_err(|e| format!("cannot render the man page: {e}"))?;
    let mut page = String::from_utf8_lossy(&out).into_owned();
    let roff = |s: &str| s.replace('\\', "\\\\").replace('-', "\\-");
    page.push_str(".SH ENVIRONMENT\n");
    for a in Cli::command().get_arguments() {
        let (Some(env), Some(long)) = (a.get_env(), a.get_long()) else {
            continue;
        };
        let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
        page.push_str(&format!(
            ".TP\n\\fB{}\\fR (\\-\\-{})\n{}\n",
            roff(&env.to_string_lossy()),
            roff(long),
            roff(&help)
        ));
    }
    Ok(page)
}

#[derive(Args, Debug, Clone)]
pub struct Opts {
    #[command(flatten)]
    pub idp: IdpArgs,
    #[command(flatten)]
    pub tokens: TokenArgs,
    #[command(flatten)]
    pub metadata: MetadataArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub policies: PolicyArgs,
    #[command(flatten)]
    pub timing: TimingArgs,
    #[command(flatten)]
    pub logging: LogArgs,
}

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "IdP")]
pub struct IdpArgs {
    /// Base URL of the IdP as seen from this container, e.g. http://idp-app:8002 (required).
    #[arg(long, global = true, env = "IDP_BASE_URL", value_name = "URL")]
    pub idp_base_url: Option<String>,

    /// Endpoint layout of the IdP (rfc7591: endpoints by discovery).
    #[arg(long, global = true, env = "DCR_PROFILE", value_name = "NAME", value_enum,
          default_value_t = Profile::EmpowerNow)]
    pub profile: Profile,

    /// IAT minting endpoint [default: {IDP_BASE_URL}/api/admin/dcr/initial-access-tokens].
    #[arg(long, global = true, env = "DCR_IAT_ENDPOINT", value_name = "URL")]
    pub iat_endpoint: Option<String>,

    /// Registration endpoint [default: {IDP_BASE_URL}/api/oidc/dcr/register].
    #[arg(
        long,
        global = true,
        env = "DCR_REGISTRATION_ENDPOINT",
        value_name = "URL"
    )]
    pub registration_endpoint: Option<String>,

    /// Issuer for discovery (rfc7591) [default: IDP_BASE_URL].
    #[arg(long, global = true, env = "DCR_ISSUER", value_name = "URL")]
    pub issuer: Option<String>,

    /// Keycloak realm (required with DCR_PROFILE=keycloak).
    #[arg(long, global = true, env = "DCR_KEYCLOAK_REALM", value_name = "REALM")]
    pub keycloak_realm: Option<String>,

    /// Keycloak release, e.g. 26.8 [default: from /admin/serverinfo with the admin token; when
    /// unknown, what is safe on every release]. Decides how DCR_SCOPE is sent and whether
    /// an update can work (see docs/profiles.md).
    #[arg(
        long,
        global = true,
        env = "DCR_KEYCLOAK_VERSION",
        value_name = "MAJOR.MINOR"
    )]
    pub keycloak_version: Option<String>,

    /// Token endpoint for the admin client-credentials grant [default: by profile, or discovery].
    #[arg(long, global = true, env = "DCR_TOKEN_ENDPOINT", value_name = "URL")]
    pub token_endpoint: Option<String>,

    /// Public base URL the IdP puts in the URLs it hands back (registration_client_uri,
    /// discovery); rewritten to IDP_BASE_URL before use, e.g. https://idp.example.com.
    #[arg(
        long,
        global = true,
        env = "DCR_REWRITE_PUBLIC_BASE",
        value_name = "URL"
    )]
    pub rewrite_public_base: Option<String>,

    /// Extra CA certificate(s) to trust, PEM (for an IdP behind a private CA).
    #[arg(long, global = true, env = "DCR_CA_FILE", value_name = "PATH")]
    pub ca_file: Option<PathBuf>,

    /// Allow plain http:// to a non-loopback host (a compose network such as http://idp-app:8002).
    #[arg(long, global = true, env = "DCR_ALLOW_INSECURE_HTTP", value_name = "BOOL",
          action = ArgAction::Set, value_parser = parse_bool, default_value = "false")]
    pub allow_insecure_http: bool,

    /// Let HTTP_PROXY carry plain-http requests, whose bearer tokens it then sees in cleartext
    /// (https always honours HTTPS_PROXY/ALL_PROXY and NO_PROXY).
    #[arg(long, global = true, env = "DCR_ALLOW_CLEARTEXT_PROXY", value_name = "BOOL",
          action = ArgAction::Set, value_parser = parse_bool, default_value = "false")]
    pub allow_cleartext_proxy: bool,

    /// Admin endpoint that re-issues a client's registration access token; {client_id} is
    /// replaced, e.g. {IDP_BASE_URL}/api/admin/dcr/clients/{client_id}/tokens (a route
    /// EmpowerNow's docs do not document: off unless set). Keycloak's is found by itself.
    #[arg(long, global = true, env = "DCR_RAT_ENDPOINT", value_name = "URL")]
    pub rat_endpoint: Option<String>,
}

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Tokens")]
pub struct TokenArgs {
    /// An Initial Access Token (or any bearer token the IdP accepts for registration) to
    /// register with; minting is skipped. `none` registers without a token (open registration).
    /// Secret.
    #[arg(long, global = true, env = "DCR_IAT", value_name = "TOKEN", hide_env_values = true,
          value_parser = secret_arg)]
    pub iat: Option<SecretString>,

    /// File holding DCR_IAT.
    #[arg(long, global = true, env = "DCR_IAT_FILE", value_name = "PATH")]
    pub iat_file: Option<PathBuf>,

    /// Admin access token used to mint an IAT. Secret.
    #[arg(long, global = true, env = "BOOTSTRAP_ADMIN_TOKEN", value_name = "TOKEN",
          hide_env_values = true, value_parser = secret_arg)]
    pub admin_token: Option<SecretString>,

    /// File holding BOOTSTRAP_ADMIN_TOKEN.
    #[arg(
        long,
        global = true,
        env = "BOOTSTRAP_ADMIN_TOKEN_FILE",
        value_name = "PATH"
    )]
    pub admin_token_file: Option<PathBuf>,

    /// Admin token by client credentials instead of BOOTSTRAP_ADMIN_TOKEN: the client id.
    #[arg(long, global = true, env = "DCR_ADMIN_CLIENT_ID", value_name = "ID")]
    pub admin_client_id: Option<String>,

    /// The admin client's secret. Secret.
    #[arg(long, global = true, env = "DCR_ADMIN_CLIENT_SECRET", value_name = "SECRET",
          hide_env_values = true, value_parser = secret_arg)]
    pub admin_client_secret: Option<SecretString>,

    /// File holding DCR_ADMIN_CLIENT_SECRET.
    #[arg(
        long,
        global = true,
        env = "DCR_ADMIN_CLIENT_SECRET_FILE",
        value_name = "PATH"
    )]
    pub admin_client_secret_file: Option<PathBuf>,

    /// How the admin client authenticates.
    #[arg(long, global = true, env = "DCR_ADMIN_AUTH_METHOD", value_name = "METHOD", value_enum,
          default_value_t = ClientAuth::Basic)]
    pub admin_auth_method: ClientAuth,

    /// Scope of the admin token [default: admin.api for empowernow, none otherwise].
    #[arg(long, global = true, env = "DCR_ADMIN_SCOPE", value_name = "SCOPE")]
    pub admin_scope: Option<String>,

    /// RFC 8707 resource (audience) of the admin token, e.g. https://idp.example/api/admin.
    #[arg(long, global = true, env = "DCR_ADMIN_RESOURCE", value_name = "URI")]
    pub admin_resource: Option<String>,

    /// Key of the seal (an HMAC) on the stored record, which proves a record was written by
    /// this tool before the admin token acts on it [default: derived from the admin
    /// credential]. Set it when the admin token changes between runs. Secret.
    #[arg(long, global = true, env = "DCR_STATE_KEY", value_name = "SECRET",
          hide_env_values = true, value_parser = secret_arg)]
    pub state_key: Option<SecretString>,

    /// File holding DCR_STATE_KEY.
    #[arg(long, global = true, env = "DCR_STATE_KEY_FILE", value_name = "PATH")]
    pub state_key_file: Option<PathBuf>,

    /// Register with an ordinary access token instead of an IAT: fetched by client
    /// credentials (DCR_ADMIN_CLIENT_ID/SECRET) with this scope, e.g. glewlwyd's
    /// register-client-auth-scope.
    #[arg(
        long,
        global = true,
        env = "DCR_REGISTRATION_SCOPE",
        value_name = "SCOPE"
    )]
    pub registration_scope: Option<String>,

    /// Label of the minted IAT.
    #[arg(
        long,
        global = true,
        env = "DCR_IAT_LABEL",
        value_name = "TEXT",
        default_value = "dcr-bootstrap"
    )]
    pub iat_label: String,

    /// Lifetime of the minted IAT, in seconds.
    #[arg(long, global = true, env = "DCR_IAT_EXPIRES_IN", value_name = "SECONDS",
          default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub iat_expires_in: u64,

    /// How many registrations the minted IAT allows.
    #[arg(long, global = true, env = "DCR_IAT_MAX_USES", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub iat_max_uses: u64,

    /// Name of the use-count field in the mint request (the docs disagree).
    #[arg(long, global = true, env = "DCR_IAT_MAX_USES_FIELD", value_name = "FIELD", value_enum,
          default_value_t = MaxUsesField::MaxUses)]
    pub iat_max_uses_field: MaxUsesField,
}

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Client metadata")]
pub struct MetadataArgs {
    /// Client metadata as an inline JSON object (RFC 7591 §2); the DCR_* fields below override it.
    #[arg(long, global = true, env = "DCR_CLIENT_METADATA", value_name = "JSON")]
    pub client_metadata: Option<String>,

    /// Client metadata from a JSON file (instead of DCR_CLIENT_METADATA).
    #[arg(
        long,
        global = true,
        env = "DCR_CLIENT_METADATA_FILE",
        value_name = "PATH"
    )]
    pub client_metadata_file: Option<PathBuf>,

    /// Requested client_id (EmpowerNow honours it; a stable id makes recovery easier).
    #[arg(long, global = true, env = "DCR_CLIENT_ID", value_name = "ID")]
    pub client_id: Option<String>,

    /// client_name.
    #[arg(long, global = true, env = "DCR_CLIENT_NAME", value_name = "NAME")]
    pub client_name: Option<String>,

    /// redirect_uris, comma or space separated.
    #[arg(long, global = true, env = "DCR_REDIRECT_URIS", value_name = "URIS")]
    pub redirect_uris: Option<String>,

    /// scope, space or comma separated.
    #[arg(long, global = true, env = "DCR_SCOPE", value_name = "SCOPES")]
    pub scope: Option<String>,

    /// grant_types, comma or space separated.
    #[arg(long, global = true, env = "DCR_GRANT_TYPES", value_name = "LIST")]
    pub grant_types: Option<String>,

    /// response_types, comma or space separated.
    #[arg(long, global = true, env = "DCR_RESPONSE_TYPES", value_name = "LIST")]
    pub response_types: Option<String>,

    /// token_endpoint_auth_method: private_key_jwt, client_secret_basic, client_secret_post or none.
    #[arg(
        long,
        global = true,
        env = "DCR_TOKEN_ENDPOINT_AUTH_METHOD",
        value_name = "METHOD"
    )]
    pub token_endpoint_auth_method: Option<String>,

    /// IdP client profile (template), e.g. code-flow-pkjwt.
    #[arg(long, global = true, env = "DCR_CLIENT_PROFILE", value_name = "NAME")]
    pub client_profile: Option<String>,

    /// JSON field that carries DCR_CLIENT_PROFILE (undocumented by the IdP).
    #[arg(
        long,
        global = true,
        env = "DCR_CLIENT_PROFILE_FIELD",
        value_name = "FIELD",
        default_value = "client_profile"
    )]
    pub client_profile_field: String,
}

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Keys")]
pub struct KeyArgs {
    /// PEM private key for private_key_jwt: published as inline jwks; generated (RSA 2048,
    /// RS256) when missing and written only after the IdP accepted it.
    #[arg(long, global = true, env = "DCR_SIGNING_KEY", value_name = "PATH")]
    pub signing_key: Option<PathBuf>,

    /// kid of the first key [default: RFC 7638 thumbprint]; rotated keys get "<BFF_KID>-<unix time>".
    #[arg(long, global = true, env = "BFF_KID", value_name = "KID")]
    pub kid: Option<String>,

    /// Algorithm of generated keys (ES256: P-256) [default: RS256].
    #[arg(
        long,
        global = true,
        env = "DCR_KEY_ALG",
        value_name = "ALG",
        value_enum
    )]
    pub key_alg: Option<KeyAlg>,

    /// RSA key size for RS256/PS256.
    #[arg(long, global = true, env = "DCR_RSA_BITS", value_name = "BITS", default_value = "2048",
          value_parser = PossibleValuesParser::new(["2048", "3072", "4096"])
              .map(|s| s.parse::<u32>().unwrap_or(2048)))]
    pub rsa_bits: u32,

    /// File mode of the key files, octal [default: 0600, or 0640 when DCR_OUTPUT_MODE lets the
    /// group read: the app that reads the output also signs with the key].
    #[arg(long, global = true, env = "DCR_KEY_MODE", value_name = "OCTAL",
          value_parser = parse_mode)]
    pub key_mode: Option<u32>,

    /// Rotate the signing key when it is this many days old (0: on this start; negative: never).
    #[arg(long, global = true, env = "BFF_JWK_ROTATE_AFTER_DAYS", value_name = "DAYS",
          default_value_t = 30, allow_negative_numbers = true, value_parser = days())]
    pub rotate_after_days: i64,

    /// Stop publishing earlier keys this many days old (0 or less: off).
    #[arg(long, global = true, env = "BFF_JWK_RETIRE_AFTER_DAYS", value_name = "DAYS",
          default_value_t = 60, allow_negative_numbers = true, value_parser = days())]
    pub retire_after_days: i64,

    /// Publish at most this many keys (0 or less: no cap; never below 2 during a rotation).
    #[arg(long, global = true, env = "BFF_JWK_MAX_KEYS", value_name = "N", default_value_t = 3,
          allow_negative_numbers = true, value_parser = days())]
    pub max_keys: i64,

    /// Register this jwks_uri (served by the BFF) instead of inline jwks.
    #[arg(long, global = true, env = "DCR_JWKS_URI", value_name = "URL")]
    pub jwks_uri: Option<String>,

    /// Also write the public JWKS of the published keys here (for /.well-known/jwks.json).
    #[arg(long, global = true, env = "DCR_JWKS_OUTPUT", value_name = "PATH")]
    pub jwks_output: Option<PathBuf>,

    /// Several replicas (pods) share this client: publish this replica's key beside the
    /// others' instead of replacing them, retire theirs by the age in their kid
    /// (BFF_JWK_RETIRE_AFTER_DAYS), and confirm after DCR_SHARED_SETTLE (docs/kubernetes.md).
    #[arg(long, global = true, env = "DCR_SHARED_CLIENT", value_name = "BOOL",
          action = ArgAction::Set, value_parser = parse_bool, default_value = "false")]
    pub shared_client: bool,

    /// With DCR_SHARED_CLIENT: how long after writing the keys to check they are still held
    /// (longer than any replica's read-to-write window at the IdP).
    #[arg(long, global = true, env = "DCR_SHARED_SETTLE", value_name = "DURATION",
          default_value = "2s", value_parser = at_least_10ms)]
    pub shared_settle: Duration,

    /// With DCR_SHARED_CLIENT: keep at most this many keys of other replicas (oldest go first).
    #[arg(long, global = true, env = "DCR_SHARED_MAX_KEYS", value_name = "N", default_value_t = 20,
          value_parser = clap::value_parser!(u16).range(1..=200))]
    pub shared_max_keys: u16,

    /// Kids to stop publishing now, comma-separated (a rotated-out shared key, a dead pod's key).
    #[arg(long, global = true, env = "DCR_RETIRE_KIDS", value_name = "KIDS")]
    pub retire_kids: Option<String>,
}

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// Where the registration JSON is written (required).
    #[arg(long, global = true, env = "DCR_OUTPUT", value_name = "PATH")]
    pub output: Option<String>,

    /// Alias of DCR_OUTPUT, the BFF's name for it.
    #[arg(long, global = true, env = "BFF_CLIENT_CRED_PATH", value_name = "PATH")]
    pub bff_client_cred_path: Option<String>,

    /// File mode of the written files, octal.
    #[arg(long, global = true, env = "DCR_OUTPUT_MODE", value_name = "OCTAL",
          default_value = "0600", value_parser = parse_mode)]
    pub output_mode: u32,

    /// Allow a DCR_OUTPUT_MODE that lets every local user read the credentials (0644, 0604).
    #[arg(long, global = true, env = "DCR_OUTPUT_WORLD_READABLE", value_name = "BOOL",
          action = ArgAction::Set, value_parser = parse_bool, default_value = "false")]
    pub output_world_readable: bool,

    /// Owner of the written files, uid:gid (e.g. 1000:1000 for a non-root BFF).
    #[arg(long, global = true, env = "DCR_OUTPUT_OWNER", value_name = "UID:GID",
          value_parser = parse_owner)]
    pub output_owner: Option<(u32, u32)>,

    /// Also write a dotenv file with AUTH_CLIENT_ID and, when issued, AUTH_CLIENT_SECRET.
    #[arg(long, global = true, env = "DCR_ENV_OUTPUT", value_name = "PATH")]
    pub env_output: Option<PathBuf>,

    /// Where `mint-iat` writes the IAT (0600).
    #[arg(long, global = true, env = "DCR_IAT_OUTPUT", value_name = "PATH")]
    pub iat_output: Option<PathBuf>,

    /// Push a status metric to this Prometheus Pushgateway (job dcr-bootstrap); failures only warn.
    #[arg(long, global = true, env = "PROM_PUSHGATEWAY_URL", value_name = "URL")]
    pub pushgateway: Option<String>,
}

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Policies")]
pub struct PolicyArgs {
    /// What to do when the stored client is gone at the IdP.
    #[arg(long, global = true, env = "DCR_ON_STALE", value_name = "POLICY", value_enum,
          default_value_t = StalePolicy::Fail)]
    pub on_stale: StalePolicy,

    /// When DCR_CLIENT_ID is already registered (a lost answer, a lost volume): adopt it (needs
    /// BOOTSTRAP_ADMIN_TOKEN to re-issue its registration access token) or fail.
    #[arg(long, global = true, env = "DCR_ON_EXISTING", value_name = "POLICY", value_enum,
          default_value_t = ExistingPolicy::Adopt)]
    pub on_existing: ExistingPolicy,

    /// How drift is corrected: patch (changed fields only) or put (RFC 7592 full replacement)
    /// [default: patch for empowernow, put otherwise].
    #[arg(
        long,
        global = true,
        env = "DCR_UPDATE_METHOD",
        value_name = "METHOD",
        value_enum
    )]
    pub update_method: Option<UpdateMethod>,

    /// Redirect URI updates: auto (when DCR_REDIRECT_URIS is set and differs), replace, merge or none.
    #[arg(long, global = true, env = "DCR_REDIRECT_UPDATE_MODE", value_name = "MODE", value_enum,
          default_value_t = RedirectMode::Auto)]
    pub redirect_update_mode: RedirectMode,

    /// Never remove a redirect URI: forces DCR_REDIRECT_UPDATE_MODE=merge.
    #[arg(long, global = true, env = "DCR_ROTATION_SAFE", value_name = "BOOL",
          action = ArgAction::Set, value_parser = parse_bool, default_value = "false")]
    pub rotation_safe: bool,

    /// Fail (exit 3) instead of warning when the IdP registered another auth method, grants or scopes.
    #[arg(long, global = true, env = "DCR_STRICT_READBACK", value_name = "BOOL",
          action = ArgAction::Set, value_parser = parse_bool, default_value = "false")]
    pub strict_readback: bool,

    /// After registering, updating or rotating, prove the written credentials at the token
    /// endpoint (client credentials with the secret, or a private_key_jwt assertion signed by
    /// the new key) before exit 0; `invalid_client` is exit 3 and nothing is promoted.
    #[arg(long, global = true, env = "DCR_VERIFY_CREDENTIALS", value_name = "BOOL",
          action = ArgAction::Set, value_parser = parse_bool, default_value = "true")]
    pub verify_credentials: bool,

    /// Renew a client secret this long before its client_secret_expires_at (an RFC 7592
    /// update, where the IdP issues a new secret on one), and warn from then on.
    #[arg(long, global = true, env = "DCR_SECRET_RENEW_BEFORE", value_name = "DURATION",
          default_value = "7d", value_parser = any_duration)]
    pub secret_renew_before: Duration,

    /// Delete the stored client and register afresh on every start (hard reset; turn off after).
    #[arg(long, global = true, env = "DCR_FORCE_REPLACE", value_name = "BOOL",
          action = ArgAction::Set, value_parser = parse_bool, default_value = "false")]
    pub force_replace: bool,
}

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Timing")]
pub struct TimingArgs {
    /// Overall deadline of the run.
    #[arg(long, global = true, env = "DCR_TIMEOUT", value_name = "DURATION",
          default_value = "300s", value_parser = at_least_100ms)]
    pub timeout: Duration,

    /// Timeout of a single HTTP request.
    #[arg(long, global = true, env = "DCR_REQUEST_TIMEOUT", value_name = "DURATION",
          default_value = "10s", value_parser = at_least_100ms)]
    pub request_timeout: Duration,

    /// First backoff step after an HTTP-level failure (5xx, 429, timeout); doubles up to DCR_BACKOFF_MAX, full jitter.
    #[arg(long, global = true, env = "DCR_BACKOFF_INITIAL", value_name = "DURATION",
          default_value = "1s", value_parser = at_least_1ms)]
    pub backoff_initial: Duration,

    /// Largest backoff gap: the schedule doubles up to it (1, 3, 7, 15, 31, 63 s ...), as
    /// curl's --retry does, so a long outage costs the IdP no more than a shell script's.
    #[arg(long, global = true, env = "DCR_BACKOFF_MAX", value_name = "DURATION",
          default_value = "64s", value_parser = at_least_1ms)]
    pub backoff_max: Duration,

    /// Interval between connection probes while nothing listens (refused, DNS, connect timeout).
    #[arg(long, global = true, env = "DCR_PROBE_INTERVAL", value_name = "DURATION",
          default_value = "500ms", value_parser = at_least_10ms)]
    pub probe_interval: Duration,

    /// Wait a random time up to this before the first request (0s: none). For large fleets
    /// starting together, so that their first requests do not arrive as one burst.
    #[arg(long, global = true, env = "DCR_START_JITTER", value_name = "DURATION",
          default_value = "0s", value_parser = any_duration)]
    pub start_jitter: Duration,

    /// Longest Retry-After honoured; longer values are capped to this.
    #[arg(long, global = true, env = "DCR_RETRY_AFTER_MAX", value_name = "DURATION",
          default_value = "60s", value_parser = any_duration)]
    pub retry_after_max: Duration,
}

/// `DCR_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Logging")]
pub struct LogArgs {
    /// Log format.
    #[arg(long, global = true, env = "DCR_LOG_FORMAT", value_name = "FORMAT", value_enum,
          default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter (tracing EnvFilter syntax), e.g. info, debug, dcr_bootstrap=trace.
    #[arg(
        long,
        global = true,
        env = "RUST_LOG",
        value_name = "FILTER",
        default_value = "info"
    )]
    pub log: String,

    /// Exit 2 when a DCR_*, BFF_*, BOOTSTRAP_* or IDP_* variable is not one of ours (a typo
    /// such as DCR_SCOPES); without it, such a variable is only warned about.
    #[arg(long, global = true, env = "DCR_STRICT_ENV", value_name = "BOOL",
          action = ArgAction::Set, value_parser = parse_bool, default_value = "false")]
    pub strict_env: bool,
}

/// Prefixes of the variables this program reads; any other variable with one of them is
/// probably a typo.
const OUR_PREFIXES: &[&str] = &["DCR_", "BFF_", "BOOTSTRAP_", "IDP_"];

/// Variables with our prefixes that are someone else's: the app's (the dotenv view writes
/// them for it, and a shared env_file hands them to both).
const THEIRS: &[&str] = &["BFF_JWT_SIGNING_KEY"];

/// The variables in `env` with our prefixes that no option reads, each with the known one it
/// most likely meant.
pub fn unknown_variables(env: impl Iterator<Item = String>) -> Vec<(String, Option<String>)> {
    let known: Vec<String> = Cli::command()
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    let mut unknown: Vec<(String, Option<String>)> = env
        .filter(|v| OUR_PREFIXES.iter().any(|p| v.starts_with(p)))
        .filter(|v| !known.contains(v) && !THEIRS.contains(&v.as_str()))
        .map(|v| {
            let meant = known
                .iter()
                .map(|k| (edit_distance(&v, k), k))
                .filter(|(d, k)| *d <= (k.len() / 4).max(2))
                .min()
                .map(|(_, k)| k.clone());
            (v, meant)
        })
        .collect();
    unknown.sort();
    unknown
}

/// Levenshtein distance, for the did-you-mean.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// A secret as clap hands it over: wrapped at once, so no `Debug` or error can show it.
fn secret_arg(s: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(s))
}

pub fn parse_bool(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err("expected true or false (also 1/0, yes/no, on/off, any case)".into()),
    }
}

/// A whole number of days (or keys); negative values are allowed and mean "off".
fn days() -> impl clap::builder::TypedValueParser<Value = i64> {
    clap::value_parser!(i64).range(-36_500..=36_500)
}

fn duration_at_least(v: &str, min: Duration) -> Result<Duration, String> {
    let d = duration::parse(v)?;
    if d < min {
        return Err(format!("must be at least {}", duration::show(min)));
    }
    Ok(d)
}

fn at_least_100ms(v: &str) -> Result<Duration, String> {
    duration_at_least(v, Duration::from_millis(100))
}

fn at_least_10ms(v: &str) -> Result<Duration, String> {
    duration_at_least(v, Duration::from_millis(10))
}

fn at_least_1ms(v: &str) -> Result<Duration, String> {
    duration_at_least(v, Duration::from_millis(1))
}

fn any_duration(v: &str) -> Result<Duration, String> {
    duration::parse(v)
}

fn parse_mode(v: &str) -> Result<u32, String> {
    let expected = || "expected an octal file mode such as 0600 or 0640".to_string();
    let digits = v.trim().trim_start_matches("0o");
    let mode = u32::from_str_radix(digits, 8).map_err(|_| expected())?;
    if digits.is_empty() || mode > 0o777 {
        return Err(expected());
    }
    if mode & 0o400 == 0 {
        return Err(
            "does not let the owner read the file; the next run could not verify it".into(),
        );
    }
    if mode & 0o022 != 0 {
        return Err(
            "lets others than the owner write the credentials; the next run would refuse its own file".into(),
        );
    }
    Ok(mode)
}

fn parse_owner(v: &str) -> Result<(u32, u32), String> {
    let expected = || "expected uid:gid with numeric ids, e.g. 1000:1000".to_string();
    let (u, g) = v.split_once(':').ok_or_else(expected)?;
    let uid = u.trim().parse().map_err(|_| expected())?;
    let gid = g.trim().parse().map_err(|_| expected())?;
    Ok((uid, gid))
}

/// Parses the command line; a value clap refuses becomes the same "NAME (--flag): expected …"
/// message as every other configuration error. `Err` holds what to print and the exit code.
/// Also returns the secrets that were given as flags, to warn about: every local user can
/// read a command line (`ps`, /proc/PID/cmdline).
pub fn parse() -> Result<(Cli, Vec<&'static str>), (String, i32)> {
    use clap::FromArgMatches;
    let fail = |e: clap::Error| (explain(&e), e.exit_code());
    // Choices (profiles, formats, methods) are matched in any case: `Keycloak` is keycloak.
    let m = command().try_get_matches().map_err(fail)?;
    let cli = Cli::from_arg_matches(&m).map_err(fail)?;
    let on_command_line = [
        ("iat", "DCR_IAT"),
        ("admin_token", "BOOTSTRAP_ADMIN_TOKEN"),
        ("admin_client_secret", "DCR_ADMIN_CLIENT_SECRET"),
        ("state_key", "DCR_STATE_KEY"),
    ]
    .into_iter()
    .filter(|(id, _)| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
    .map(|(_, var)| var)
    .collect();
    Ok((cli, on_command_line))
}

/// The message for a clap error: our own wording for a refused value, clap's for the rest
/// (`--help`, `--version`, an unknown flag).
pub fn explain(e: &clap::Error) -> String {
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return e.render().to_string();
    }
    let ctx = |k: ContextKind| match e.get(k) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let arg = ctx(ContextKind::InvalidArg).unwrap_or_default();
    let long = arg
        .strip_prefix("--")
        .and_then(|a| a.split([' ', '=']).next())
        .unwrap_or_default()
        .to_string();
    let cmd = Cli::command();
    let var = cmd
        .get_arguments()
        .find(|a| a.get_long() == Some(long.as_str()))
        .and_then(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned());
    let who = match var {
        Some(v) => format!("{v} (--{long})"),
        None => arg,
    };
    let got = ctx(ContextKind::InvalidValue).unwrap_or_default();
    let why = match e.get(ContextKind::ValidValue) {
        Some(ContextValue::Strings(valid)) => format!("expected one of {}", valid.join(", ")),
        _ => std::error::Error::source(e)
            .map(|s| s.to_string())
            .unwrap_or_else(|| "invalid value".into()),
    };
    // Our own parsers already quote the value; clap's choices do not.
    if why.contains("got ") {
        format!("configuration error: {who}: {why}")
    } else {
        format!("configuration error: {who}: {why}, got {got:?}")
    }
}

/// Whether logs are JSON, read before the command line is parsed, so that a refusal of the
/// command line is logged in the configured format too (`--log-format` or `DCR_LOG_FORMAT`,
/// any case).
pub fn early_log_format_json() -> bool {
    let mut args = std::env::args().skip(1);
    let mut flag = None;
    while let Some(a) = args.next() {
        if let Some(v) = a.strip_prefix("--log-format=") {
            flag = Some(v.to_string());
        } else if a == "--log-format" {
            flag = args.next();
        }
    }
    flag.or_else(|| std::env::var("DCR_LOG_FORMAT").ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/configuration.md cannot drift from the command line: its variable table lists
    /// exactly the variables the program reads (a `NAME (+_FILE)` row stands for both), and
    /// each default clap applies is the one the table gives. `.ci/run` runs this test.
    #[test]
    fn the_configuration_reference_matches_the_command_line() {
        let doc = include_str!("../docs/configuration.md");
        let mut documented = std::collections::BTreeMap::new();
        for line in doc.lines() {
            let Some(rest) = line.strip_prefix("| `") else {
                continue;
            };
            let Some((var, rest)) = rest.split_once('`') else {
                continue;
            };
            if !var
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                continue; // a command, not a variable
            }
            let with_file = rest.starts_with(" (+`_FILE`)");
            let default = rest
                .split('|')
                .nth(1)
                .unwrap_or_default()
                .trim()
                .to_string();
            if with_file {
                documented.insert(format!("{var}_FILE"), String::new());
            }
            documented.insert(var.to_string(), default);
        }
        let cmd = Cli::command();
        let mut read = std::collections::BTreeMap::new();
        for a in cmd.get_arguments() {
            if let Some(env) = a.get_env() {
                let defaults: Vec<String> = a
                    .get_default_values()
                    .iter()
                    .map(|d| d.to_string_lossy().into_owned())
                    .collect();
                read.insert(env.to_string_lossy().into_owned(), defaults.join(","));
            }
        }
        let missing: Vec<&String> = read
            .keys()
            .filter(|v| !documented.contains_key(*v))
            .collect();
        let extra: Vec<&String> = documented
            .keys()
            .filter(|v| !read.contains_key(*v))
            .collect();
        assert!(
            missing.is_empty(),
            "not in docs/configuration.md: {missing:?}"
        );
        assert!(
            extra.is_empty(),
            "in docs/configuration.md but not read: {extra:?}"
        );
        for (var, default) in &read {
            if !default.is_empty() {
                assert!(
                    documented[var].contains(&format!("`{default}`")),
                    "{var}: the code's default is {default}, the reference says {:?}",
                    documented[var]
                );
            }
        }
    }

    #[test]
    fn a_typo_is_named_with_the_variable_it_meant() {
        let env = [
            "DCR_SCOPES",
            "DCR_CLIENTNAME",
            "DCR_REDIRECT_URI",
            "DCR_SCOPE",
            "BFF_JWT_SIGNING_KEY",
            "PATH",
            "DCR_NOTHING_LIKE_ANYTHING_WE_READ",
        ]
        .map(String::from);
        let found = unknown_variables(env.into_iter());
        let meant = |v: &str| found.iter().find(|(u, _)| u == v).map(|(_, m)| m.clone());
        assert_eq!(meant("DCR_SCOPES"), Some(Some("DCR_SCOPE".into())));
        assert_eq!(
            meant("DCR_CLIENTNAME"),
            Some(Some("DCR_CLIENT_NAME".into()))
        );
        assert_eq!(
            meant("DCR_REDIRECT_URI"),
            Some(Some("DCR_REDIRECT_URIS".into()))
        );
        assert_eq!(meant("DCR_NOTHING_LIKE_ANYTHING_WE_READ"), Some(None));
        assert_eq!(found.len(), 4, "{found:?}");
    }

    #[test]
    fn every_argument_has_an_environment_variable_and_a_group() {
        let cmd = Cli::command();
        for a in cmd.get_arguments() {
            if matches!(a.get_id().as_str(), "help" | "version") {
                continue;
            }
            assert!(a.get_env().is_some(), "{} has no env", a.get_id());
            assert!(
                a.get_help_heading().is_some(),
                "{} has no heading",
                a.get_id()
            );
        }
    }

    #[test]
    fn refused_values_name_the_variable_and_the_choices() {
        let e = Cli::try_parse_from(["dcr-bootstrap", "--profile", "okta"]).unwrap_err();
        let m = explain(&e);
        assert!(
            m.contains("DCR_PROFILE (--profile)") && m.contains("keycloak"),
            "{m}"
        );
        let e = Cli::try_parse_from(["dcr-bootstrap", "--timeout", "10"]).unwrap_err();
        let m = explain(&e);
        assert!(
            m.contains("DCR_TIMEOUT (--timeout)") && m.contains("500ms"),
            "{m}"
        );
    }
}
