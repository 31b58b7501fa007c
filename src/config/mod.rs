//! Turns the parsed command line into a validated `Config`, one group at a time. Clap has
//! already parsed every typed value; what is left here are the rules that span values (a
//! secret or its file, URLs and their transport, profile defaults). Every failure is
//! `Error::Config` with a message that names the variable; secret values are never quoted.

mod credentials;
pub mod metadata;

pub use credentials::{AdminAuth, Credentials, RegistrationToken};

use crate::cli::{Cli, IdpArgs, KeyArgs, MetadataArgs, Opts, OutputArgs, PolicyArgs, TimingArgs};
use crate::error::{Error, Result};
use crate::idp::UpdateMethod;
use crate::idp::keycloak::Version as KeycloakVersion;
use crate::idp::profile::{self, Endpoints, Explicit, MintStyle, Profile};
use crate::local::keyring::KeyPolicy;
use crate::local::keys::KeyAlg;
use crate::local::keyset::SharedPolicy;
use crate::policy::{ExistingPolicy, RedirectMode, StalePolicy};
use crate::url::{check_transport, parse_absolute};
use clap::CommandFactory;
use metadata::{DesiredMetadata, MetadataInputs};
use reqwest::Url;
use std::path::PathBuf;
use std::time::Duration;

/// Where the IdP is and how to reach it.
#[derive(Debug, Clone)]
pub struct Target {
    pub idp_base_url: Url,
    pub profile: Profile,
    pub endpoints: Endpoints,
    /// `DCR_REWRITE_PUBLIC_BASE`: URLs the IdP hands back that start with this are rewritten
    /// to `IDP_BASE_URL`.
    pub rewrite_public_base: Option<Url>,
    pub ca_file: Option<PathBuf>,
    pub allow_insecure_http: bool,
    pub allow_cleartext_proxy: bool,
    /// `DCR_KEYCLOAK_VERSION`.
    pub keycloak_version: Option<KeycloakVersion>,
}

#[derive(Debug, Clone)]
pub struct SigningKeySettings {
    pub path: PathBuf,
    pub policy: KeyPolicy,
    /// Register `jwks_uri` (served by the BFF) instead of inline `jwks`.
    pub jwks_uri: Option<Url>,
}

#[derive(Debug, Clone)]
pub struct OutputSettings {
    pub path: PathBuf,
    pub mode: u32,
    pub owner: Option<(u32, u32)>,
    pub env_path: Option<PathBuf>,
    /// Public JWKS of the published keys, for a BFF that serves /.well-known/jwks.json.
    pub jwks_path: Option<PathBuf>,
    /// Where `mint-iat` writes the IAT.
    pub iat_path: Option<PathBuf>,
    pub pushgateway: Option<Url>,
}

/// What to do about what the IdP holds.
#[derive(Debug, Clone)]
pub struct Policies {
    pub on_stale: StalePolicy,
    pub on_existing: ExistingPolicy,
    pub force_replace: bool,
    pub update_method: UpdateMethod,
    pub redirect_mode: RedirectMode,
    pub strict_readback: bool,
    /// `DCR_VERIFY_CREDENTIALS`: prove written credentials at the token endpoint.
    pub verify_credentials: bool,
    /// `DCR_SECRET_RENEW_BEFORE`: how long before its expiry a client secret is renewed.
    pub secret_renew_before: Duration,
    /// `DCR_SHARED_CLIENT`: replicas share the client.
    pub shared: Option<SharedClient>,
}

/// How replicas that share a client treat each other (`DCR_SHARED_*`).
#[derive(Debug, Clone)]
pub struct SharedClient {
    pub settle: Duration,
    pub keys: SharedPolicy,
}

#[derive(Debug, Clone)]
pub struct Timing {
    pub deadline: Duration,
    pub request_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub probe_interval: Duration,
    pub retry_after_max: Duration,
    pub start_jitter: Duration,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub target: Target,
    pub credentials: Credentials,
    pub metadata: DesiredMetadata,
    pub signing_key: Option<SigningKeySettings>,
    pub output: OutputSettings,
    pub policies: Policies,
    pub timing: Timing,
}

/// `DCR_FOO (--foo)`: how errors name an option, taken from clap so they never drift from
/// `--help`.
pub fn name(var: &str) -> String {
    let cmd = Cli::command();
    let flag = cmd
        .get_arguments()
        .find(|a| a.get_env().is_some_and(|e| e == var))
        .and_then(|a| a.get_long())
        .map(|l| format!(" (--{l})"))
        .unwrap_or_default();
    format!("{var}{flag}")
}

fn bad(var: &str, expected: &str, got: &str) -> Error {
    Error::Config(format!("{}: expected {expected}, got {got:?}", name(var)))
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.trim().is_empty())
}

/// A configured URL; errors never echo userinfo or a query (they may hold a password).
fn parse_url(var: &str, v: &str) -> Result<Url> {
    parse_absolute(v).map_err(|why| {
        Error::Config(format!(
            "{}: {why}, got {:?}",
            name(var),
            crate::url::redacted(v)
        ))
    })
}

/// An optional URL whose transport must be safe for a bearer token.
fn token_url(var: &str, v: &Option<String>, allow_insecure_http: bool) -> Result<Option<Url>> {
    let u = non_empty(v).map(|v| parse_url(var, v)).transpose()?;
    if let Some(u) = &u {
        check_transport(var, u, allow_insecure_http)?;
    }
    Ok(u)
}

impl TryFrom<&IdpArgs> for Target {
    type Error = Error;

    fn try_from(a: &IdpArgs) -> Result<Target> {
        let base_raw = non_empty(&a.idp_base_url).ok_or_else(|| {
            Error::Config(format!(
                "{} is required, e.g. http://idp-app:8002",
                name("IDP_BASE_URL")
            ))
        })?;
        let idp_base_url = parse_url("IDP_BASE_URL", base_raw)?;
        let insecure = a.allow_insecure_http;
        let rat = match non_empty(&a.rat_endpoint) {
            Some(v) => {
                if !v.contains("{client_id}") {
                    return Err(bad("DCR_RAT_ENDPOINT", "a URL containing {client_id}", v));
                }
                let probe = parse_url("DCR_RAT_ENDPOINT", &v.replace("{client_id}", "x"))?;
                check_transport("DCR_RAT_ENDPOINT", &probe, insecure)?;
                Some(v.trim().to_string())
            }
            None => None,
        };
        let realm = non_empty(&a.keycloak_realm).map(|r| r.trim().to_string());
        match (a.profile, &realm) {
            (Profile::Keycloak, None) => {
                return Err(Error::Config(format!(
                    "{} is required with DCR_PROFILE=keycloak",
                    name("DCR_KEYCLOAK_REALM")
                )));
            }
            (Profile::Keycloak, Some(r)) if r.contains(['/', '?', '#']) || r == ".." => {
                return Err(bad("DCR_KEYCLOAK_REALM", "a realm name", r));
            }
            _ => {}
        }
        let keycloak_version = match non_empty(&a.keycloak_version) {
            None => None,
            Some(v) if a.profile != Profile::Keycloak => {
                return Err(Error::Config(format!(
                    "{} ({v:?}) is set, but DCR_PROFILE is {}: it only applies to DCR_PROFILE=keycloak",
                    name("DCR_KEYCLOAK_VERSION"),
                    a.profile.name()
                )));
            }
            Some(v) => Some(
                KeycloakVersion::parse(v)
                    .ok_or_else(|| bad("DCR_KEYCLOAK_VERSION", "a version like 26.8", v))?,
            ),
        };
        let endpoints = profile::endpoints(
            a.profile,
            &idp_base_url,
            realm.as_deref(),
            Explicit {
                issuer: token_url("DCR_ISSUER", &a.issuer, insecure)?,
                iat: token_url("DCR_IAT_ENDPOINT", &a.iat_endpoint, insecure)?,
                registration: token_url(
                    "DCR_REGISTRATION_ENDPOINT",
                    &a.registration_endpoint,
                    insecure,
                )?,
                token: token_url("DCR_TOKEN_ENDPOINT", &a.token_endpoint, insecure)?,
                rat,
            },
        );
        check_transport("IDP_BASE_URL", &idp_base_url, insecure)?;
        Ok(Target {
            rewrite_public_base: non_empty(&a.rewrite_public_base)
                .map(|v| parse_url("DCR_REWRITE_PUBLIC_BASE", v))
                .transpose()?,
            ca_file: a.ca_file.clone().filter(|p| !p.as_os_str().is_empty()),
            allow_insecure_http: insecure,
            allow_cleartext_proxy: a.allow_cleartext_proxy,
            idp_base_url,
            profile: a.profile,
            endpoints,
            keycloak_version,
        })
    }
}

/// `BFF_KID`, checked: it names files and goes into the dotenv view.
fn kid(a: &KeyArgs) -> Result<Option<String>> {
    let kid = non_empty(&a.kid).map(|k| k.trim().to_string());
    if let Some(k) = &kid
        && !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._~+=:@%,-".contains(c))
    {
        return Err(Error::Config(format!(
            "{}: a kid of letters, digits and ._~+=:@%,- only (it names files and goes into the dotenv view)",
            name("BFF_KID")
        )));
    }
    Ok(kid)
}

/// What `keygen` makes: one private key for every replica (a Kubernetes Secret).
#[derive(Debug, Clone)]
pub struct KeygenSettings {
    pub path: PathBuf,
    pub alg: KeyAlg,
    pub rsa_bits: u32,
    /// `BFF_KID`, or `key`: the kid records it with the time and the thumbprint.
    pub kid_base: String,
}

impl KeygenSettings {
    pub fn from_args(a: &KeyArgs) -> Result<KeygenSettings> {
        let path = a
            .signing_key
            .clone()
            .filter(|p| !p.as_os_str().is_empty())
            .ok_or_else(|| {
                Error::Config(format!(
                    "{} is required: where to write the new private key",
                    name("DCR_SIGNING_KEY")
                ))
            })?;
        Ok(KeygenSettings {
            path,
            alg: a.key_alg.unwrap_or(KeyAlg::Rs256),
            rsa_bits: a.rsa_bits,
            kid_base: kid(a)?.unwrap_or_else(|| "key".into()),
        })
    }
}

/// The signing key settings, or `None` without `DCR_SIGNING_KEY` (then no other key option
/// may be set).
fn signing_key(
    a: &KeyArgs,
    allow_insecure_http: bool,
    output_mode: u32,
) -> Result<Option<SigningKeySettings>> {
    let kid = kid(a)?;
    // The app that reads the output signs with the key: the same group may read it. Never
    // every local user.
    let file_mode = a.key_mode.unwrap_or(0o600 | (output_mode & 0o040));
    if file_mode & 0o004 != 0 {
        return Err(Error::Config(format!(
            "{}: {file_mode:04o} lets every local user read the private key; use 0600 or 0640 (group)",
            name("DCR_KEY_MODE")
        )));
    }
    let jwks_uri = match non_empty(&a.jwks_uri) {
        Some(v) => {
            let u = parse_url("DCR_JWKS_URI", v)?;
            // The IdP fetches it: https, or http where plain http is allowed anyway.
            crate::url::check_transport("DCR_JWKS_URI", &u, allow_insecure_http)?;
            Some(u)
        }
        None => None,
    };
    let Some(path) = a.signing_key.clone().filter(|p| !p.as_os_str().is_empty()) else {
        for (var, set) in [
            ("BFF_KID", kid.is_some()),
            ("DCR_JWKS_URI", jwks_uri.is_some()),
            ("DCR_JWKS_OUTPUT", a.jwks_output.is_some()),
        ] {
            if set {
                return Err(Error::Config(format!(
                    "{var} is set but DCR_SIGNING_KEY is not; it describes the signing key"
                )));
            }
        }
        return Ok(None);
    };
    if jwks_uri.is_some() && a.jwks_output.is_none() {
        tracing::warn!(
            "DCR_JWKS_URI is set without DCR_JWKS_OUTPUT: the BFF must serve the public keys at that URI by other means"
        );
    }
    Ok(Some(SigningKeySettings {
        path,
        policy: KeyPolicy {
            alg: a.key_alg,
            rsa_bits: a.rsa_bits,
            rotate_after_days: a.rotate_after_days,
            retire_after_days: a.retire_after_days,
            max_keys: a.max_keys,
            kid,
            dated_kids: a.shared_client,
            file_mode,
        },
        jwks_uri,
    }))
}

fn desired_metadata(a: &MetadataArgs, has_signing_key: bool) -> Result<DesiredMetadata> {
    let file = a
        .client_metadata_file
        .as_ref()
        .map(|p| p.display().to_string());
    metadata::desired(&MetadataInputs {
        json: a.client_metadata.as_deref(),
        file: file.as_deref(),
        client_id: non_empty(&a.client_id),
        client_name: non_empty(&a.client_name),
        redirect_uris: a.redirect_uris.as_deref(),
        scope: non_empty(&a.scope),
        grant_types: non_empty(&a.grant_types),
        response_types: non_empty(&a.response_types),
        auth_method: non_empty(&a.token_endpoint_auth_method),
        client_profile: non_empty(&a.client_profile),
        profile_field: a.client_profile_field.trim(),
        has_signing_key,
    })
}

impl OutputSettings {
    /// `needs_output`: the command writes the registration (all but `mint-iat`).
    fn from_args(a: &OutputArgs, k: &KeyArgs, needs_output: bool) -> Result<OutputSettings> {
        let path = match (non_empty(&a.output), non_empty(&a.bff_client_cred_path)) {
            (Some(x), Some(y)) if x != y => {
                return Err(Error::Config(format!(
                    "DCR_OUTPUT ({x:?}) and its alias BFF_CLIENT_CRED_PATH ({y:?}) disagree; set one"
                )));
            }
            (Some(x), _) | (None, Some(x)) => PathBuf::from(x),
            (None, None) if !needs_output => PathBuf::from("unused"),
            (None, None) => {
                return Err(Error::Config(format!(
                    "{} (or BFF_CLIENT_CRED_PATH) is required: where to write the registration, e.g. /app/keys/bff_client.json",
                    name("DCR_OUTPUT")
                )));
            }
        };
        if path.file_name().is_none() {
            return Err(bad(
                "DCR_OUTPUT",
                "a file path",
                &path.display().to_string(),
            ));
        }
        if a.output_mode & 0o004 != 0 && !a.output_world_readable {
            return Err(Error::Config(format!(
                "{}: {:04o} lets every local user read the credentials; use 0600 or 0640 (group), or set \
                 DCR_OUTPUT_WORLD_READABLE=true if that is really meant",
                name("DCR_OUTPUT_MODE"),
                a.output_mode
            )));
        }
        let pushgateway = match non_empty(&a.pushgateway) {
            Some(v) => {
                let u = parse_url("PROM_PUSHGATEWAY_URL", v)?;
                check_transport("PROM_PUSHGATEWAY_URL", &u, true)?;
                Some(u)
            }
            None => None,
        };
        let some_path = |p: &Option<PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
        Ok(OutputSettings {
            path,
            mode: a.output_mode,
            owner: a.output_owner,
            env_path: some_path(&a.env_output),
            jwks_path: some_path(&k.jwks_output),
            iat_path: some_path(&a.iat_output),
            pushgateway,
        })
    }
}

impl Policies {
    fn from_args(a: &PolicyArgs, k: &KeyArgs, profile: Profile) -> Policies {
        let shared = k.shared_client.then(|| SharedClient {
            settle: k.shared_settle,
            keys: SharedPolicy {
                lifetime: (k.retire_after_days > 0)
                    .then(|| Duration::from_secs(k.retire_after_days as u64 * 86_400)),
                max_others: usize::from(k.shared_max_keys),
                retire_kids: list(&k.retire_kids),
            },
        });
        Policies {
            shared,
            on_stale: a.on_stale,
            on_existing: a.on_existing,
            force_replace: a.force_replace,
            // EmpowerNow documents PATCH; RFC 7592 (and Keycloak) use PUT.
            update_method: a.update_method.unwrap_or(match profile {
                Profile::EmpowerNow => UpdateMethod::Patch,
                _ => UpdateMethod::Put,
            }),
            // Rotation-safe means never removing a redirect URI a running app may use.
            redirect_mode: if a.rotation_safe {
                RedirectMode::Merge
            } else {
                a.redirect_update_mode
            },
            strict_readback: a.strict_readback,
            verify_credentials: a.verify_credentials,
            secret_renew_before: a.secret_renew_before,
        }
    }
}

impl TryFrom<&TimingArgs> for Timing {
    type Error = Error;

    fn try_from(a: &TimingArgs) -> Result<Timing> {
        if a.backoff_max < a.backoff_initial {
            return Err(Error::Config(format!(
                "{} ({}) is smaller than DCR_BACKOFF_INITIAL ({})",
                name("DCR_BACKOFF_MAX"),
                crate::duration::show(a.backoff_max),
                crate::duration::show(a.backoff_initial)
            )));
        }
        Ok(Timing {
            deadline: a.timeout,
            request_timeout: a.request_timeout,
            backoff_initial: a.backoff_initial,
            backoff_max: a.backoff_max,
            probe_interval: a.probe_interval,
            retry_after_max: a.retry_after_max,
            start_jitter: a.start_jitter,
        })
    }
}

fn list(v: &Option<String>) -> Vec<String> {
    v.as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The deployment shape that registers a client per replica, said loudly.
fn shared_checks(metadata: &DesiredMetadata) {
    if !metadata.fields.contains_key("client_id") {
        tracing::warn!(
            "DCR_SHARED_CLIENT without DCR_CLIENT_ID: the IdP assigns the client id, so every replica that does not see \
             the others' DCR_OUTPUT registers ANOTHER client. Put DCR_OUTPUT on a ReadWriteMany volume (the lock \
             serialises replicas), or register once with a Job (docs/kubernetes.md)"
        );
    }
}

/// What Keycloak refuses or changes, said before anything is sent.
fn keycloak_checks(metadata: &DesiredMetadata, credentials: &Credentials) -> Result<()> {
    // Keycloak refuses an inline JWK that does not say `"use": "sig"` (400).
    let keys = metadata
        .fields
        .get("jwks")
        .and_then(|j| j.get("keys"))
        .and_then(serde_json::Value::as_array);
    let for_signing =
        |k: &serde_json::Value| k.get("use").and_then(serde_json::Value::as_str) == Some("sig");
    if keys.is_some_and(|ks| !ks.iter().any(for_signing)) {
        return Err(Error::Config(format!(
            "{}: no key of jwks has \"use\": \"sig\", and Keycloak takes the client's key only from such a key \
             (400 \"Didn't find key of supported keyType for use sig\"); add it",
            metadata.origin("jwks")
        )));
    }
    if matches!(credentials.iat, Some(RegistrationToken::Open)) {
        tracing::warn!(
            "DCR_IAT=none at Keycloak: its Trusted Hosts policy refuses anonymous registration unless this host is \
             trusted, and where it is, Keycloak makes the client consent-required with full scope disabled"
        );
    }
    Ok(())
}

impl Config {
    /// Validates everything. `needs_output`: the command writes the registration (all but
    /// `mint-iat`), so `DCR_OUTPUT` is required.
    pub fn from_opts(o: &Opts, needs_output: bool) -> Result<Config> {
        let target = Target::try_from(&o.idp)?;
        let credentials = Credentials::from_args(&o.tokens, &target)?;
        let signing_key = signing_key(&o.keys, target.allow_insecure_http, o.output.output_mode)?;
        let metadata = desired_metadata(&o.metadata, signing_key.is_some())?;
        if target.profile == Profile::Keycloak && metadata.fields.contains_key("client_id") {
            return Err(Error::Config(format!(
                "{}: Keycloak's OIDC registration refuses a client-chosen client_id (400 \"Client Identifier \
                 included\"). Leave it unset; for a stable id, create the client with Keycloak's admin API or its \
                 \"default\" registration provider and give this tool its registration access token",
                metadata.origin("client_id")
            )));
        }
        if target.profile == Profile::Keycloak {
            keycloak_checks(&metadata, &credentials)?;
        }
        let output = OutputSettings::from_args(&o.output, &o.keys, needs_output)?;
        let policies = Policies::from_args(&o.policies, &o.keys, target.profile);
        if policies.shared.is_some() {
            shared_checks(&metadata);
        }
        let timing = Timing::try_from(&o.timing)?;
        Ok(Config {
            target,
            credentials,
            metadata,
            signing_key,
            output,
            policies,
            timing,
        })
    }

    pub fn profile(&self) -> Profile {
        self.target.profile
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.target.endpoints
    }

    pub fn mint_style(&self) -> MintStyle {
        self.target.endpoints.mint_style
    }

    /// Every file name this run may write, for sweeping temp files a killed run left behind:
    /// the output, the dotenv, the JWKS, and the keys (`<stem>` covers `<stem>.pem`,
    /// `<stem>.pem.next` and `<stem>.<kid>.pem`).
    pub fn written_files(&self) -> Vec<PathBuf> {
        let mut v = vec![self.output.path.clone()];
        v.extend(self.output.env_path.clone());
        v.extend(self.output.jwks_path.clone());
        if let Some(k) = &self.signing_key {
            if let Some(stem) = k.path.file_stem() {
                v.push(k.path.with_file_name(stem));
            }
            v.push(k.path.clone());
        }
        v
    }

    /// A URL the IdP handed back, with `DCR_REWRITE_PUBLIC_BASE` replaced by `IDP_BASE_URL`.
    pub fn rewrite(&self, url: &Url) -> Url {
        let Some(public) = &self.target.rewrite_public_base else {
            return url.clone();
        };
        let from = public.as_str().trim_end_matches('/');
        let to = self.target.idp_base_url.as_str().trim_end_matches('/');
        match url.as_str().strip_prefix(from) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') || rest.starts_with('?') => {
                match Url::parse(&format!("{to}{rest}")) {
                    Ok(u) => {
                        tracing::info!("rewrote {url} to {u} (DCR_REWRITE_PUBLIC_BASE)");
                        u
                    }
                    Err(_) => url.clone(),
                }
            }
            _ => url.clone(),
        }
    }

    /// The deployment a seal binds a stored record to.
    pub fn binding(&self) -> crate::seal::Binding {
        crate::seal::Binding {
            idp: self.target.idp_base_url.to_string(),
            profile: self.profile().name(),
            output: self.output.path.display().to_string(),
        }
    }

    /// The inverse of [`Config::rewrite`]: a URL at `IDP_BASE_URL` as the IdP itself names
    /// it, under `DCR_REWRITE_PUBLIC_BASE`.
    pub fn unrewrite(&self, url: &Url) -> Url {
        let Some(public) = &self.target.rewrite_public_base else {
            return url.clone();
        };
        let from = self.target.idp_base_url.as_str().trim_end_matches('/');
        let to = public.as_str().trim_end_matches('/');
        match url.as_str().strip_prefix(from) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') || rest.starts_with('?') => {
                Url::parse(&format!("{to}{rest}")).unwrap_or_else(|_| url.clone())
            }
            _ => url.clone(),
        }
    }

    /// Fills `{client_id}` (one path segment, percent-encoded) into an endpoint template.
    pub fn endpoint_for(&self, template: &str, var: &str, client_id: &str) -> Result<Url> {
        crate::url::fill(template, "{client_id}", client_id).ok_or_else(|| {
            Error::Config(format!(
                "{var}: no valid URL for client {:?}",
                client_id.escape_debug().to_string()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use secrecy::ExposeSecret;

    /// A working command line, with `args` added (or replacing a default flag).
    fn opts(args: &[&str]) -> Opts {
        let mut all = vec!["dcr-bootstrap"];
        for (flag, default) in [
            ("--idp-base-url", "http://127.0.0.1:8002"),
            ("--output", "/tmp/out.json"),
        ] {
            if !args.contains(&flag) {
                all.extend([flag, default]);
            }
        }
        all.extend_from_slice(args);
        crate::cli::Cli::try_parse_from(all).unwrap().opts
    }

    fn err(args: &[&str]) -> String {
        Config::from_opts(&opts(args), true)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_derive_endpoints_from_the_base() {
        let c = Config::from_opts(&opts(&[]), true).unwrap();
        assert_eq!(
            c.endpoints().iat.as_ref().unwrap().as_str(),
            "http://127.0.0.1:8002/api/admin/dcr/initial-access-tokens"
        );
        assert_eq!(
            c.endpoints().registration.as_ref().unwrap().as_str(),
            "http://127.0.0.1:8002/api/oidc/dcr/register"
        );
        assert_eq!(c.output.mode, 0o600);
    }

    #[test]
    fn base_path_prefix_is_kept() {
        let c = Config::from_opts(
            &opts(&["--idp-base-url", "https://idp.example/tenant/"]),
            true,
        )
        .unwrap();
        assert_eq!(
            c.endpoints().registration.as_ref().unwrap().as_str(),
            "https://idp.example/tenant/api/oidc/dcr/register"
        );
    }

    #[test]
    fn insecure_http_needs_opt_in() {
        assert!(
            err(&["--idp-base-url", "http://idp-app:8002"]).contains("DCR_ALLOW_INSECURE_HTTP")
        );
        let o = opts(&[
            "--idp-base-url",
            "http://idp-app:8002",
            "--allow-insecure-http",
            "true",
        ]);
        assert!(Config::from_opts(&o, true).is_ok());
    }

    #[test]
    fn errors_name_the_variable() {
        let cases: &[(&[&str], &str)] = &[
            (&["--idp-base-url", ""], "IDP_BASE_URL"),
            (&["--idp-base-url", "not a url"], "IDP_BASE_URL"),
            (
                &["--rat-endpoint", "https://idp/tokens"],
                "DCR_RAT_ENDPOINT",
            ),
            (&["--profile", "keycloak"], "DCR_KEYCLOAK_REALM"),
            (&["--admin-client-id", "admin"], "DCR_ADMIN_CLIENT_SECRET"),
            (
                &[
                    "--profile",
                    "keycloak",
                    "--keycloak-realm",
                    "demo",
                    "--client-id",
                    "bff",
                ],
                "DCR_CLIENT_ID",
            ),
            (
                &["--rewrite-public-base", "public"],
                "DCR_REWRITE_PUBLIC_BASE",
            ),
            (&["--output", ""], "DCR_OUTPUT"),
            (&["--backoff-max", "1ms"], "DCR_BACKOFF_MAX"),
            (&["--iat-file", "/nonexistent/iat"], "DCR_IAT_FILE"),
        ];
        for (args, var) in cases {
            let e = err(args);
            assert!(e.contains(var), "{var}: {e}");
        }
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let o = opts(&[
            "--iat",
            "iat-secret-value-1",
            "--admin-token",
            "admin-secret-value-2",
        ]);
        let cfg = Config::from_opts(&o, true).unwrap();
        let reply = crate::idp::http::Reply {
            status: 201,
            retry_after: None,
            content_type: "application/json".into(),
            location: None,
            body: br#"{"token":"iat-secret-value-3"}"#.to_vec(),
        };
        let stored = crate::record::ClientRecord::parse(
            br#"{"client_id":"c","registration_access_token":"rat-secret-value-4","client_secret":"client-secret-5"}"#,
        )
        .unwrap();
        let all = format!("{o:?} {cfg:?} {reply:?} {stored:?}");
        for s in [
            "iat-secret-value-1",
            "admin-secret-value-2",
            "iat-secret-value-3",
            "rat-secret-value-4",
            "client-secret-5",
        ] {
            assert!(!all.contains(s), "{s} in Debug output");
        }
        assert!(all.contains("body_bytes") && all.contains("client_id"));
    }

    #[test]
    fn secret_and_its_file_are_exclusive_and_never_echoed() {
        let e = err(&[
            "--iat",
            "very-secret-iat-value",
            "--iat-file",
            "/etc/hostname",
        ]);
        assert!(e.contains("DCR_IAT") && !e.contains("very-secret"));
    }

    #[test]
    fn secret_file_loses_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, "abc-token-123\n").unwrap();
        let path = p.display().to_string();
        let c = Config::from_opts(&opts(&["--admin-token-file", &path]), true).unwrap();
        let Some(AdminAuth::Static(t)) = c.credentials.admin else {
            panic!("a static admin token")
        };
        assert_eq!(t.expose_secret(), "abc-token-123");
        std::fs::write(&p, "abc-token-123\n\n").unwrap();
        let e = err(&["--admin-token-file", &path]);
        assert!(
            e.contains("BOOTSTRAP_ADMIN_TOKEN_FILE") && !e.contains("abc-token"),
            "{e}"
        );
    }
}
