//! Turns the raw command line into a validated `Config`. Every failure is `Error::Config` with
//! a message that names the variable (and flag) and says what was expected; secret values are
//! never quoted back.

use crate::cli::Opts;
use crate::duration;
use crate::error::{Error, Result};
use crate::keyring::KeyPolicy;
use crate::keys::KeyAlg;
use crate::metadata::{self, DesiredMetadata, MetadataInputs};
pub use crate::profile::Profile;
use crate::profile::{self as profiles, Endpoints, Explicit};
use crate::reconcile::RedirectMode;
use crate::secret::{SecretArg, secret};
use reqwest::Url;
use secrecy::SecretString;
use std::path::PathBuf;
use std::time::Duration;

/// How registration is authorised.
#[derive(Debug, Clone)]
pub enum RegistrationToken {
    /// An IAT (or any bearer token the IdP accepts for registration).
    Given(SecretString),
    /// `DCR_IAT=none`: open registration, no Authorization header.
    Open,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Basic,
    Post,
}

/// Where the admin token comes from.
#[derive(Debug, Clone)]
pub enum AdminAuth {
    /// `BOOTSTRAP_ADMIN_TOKEN`, used as is.
    Static(SecretString),
    /// Fetched with the client-credentials grant when first needed, and again when it expires.
    ClientCredentials {
        client_id: String,
        secret: SecretString,
        method: ClientAuth,
        scope: Option<String>,
        resource: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StalePolicy {
    Fail,
    Reregister,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExistingPolicy {
    Adopt,
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// How the IAT for a registration is obtained.
#[derive(Debug, Clone)]
pub struct MintSettings {
    pub label: String,
    pub expires_in: u64,
    pub max_uses: u64,
    pub max_uses_field: String,
}

#[derive(Debug, Clone)]
pub struct OutputSettings {
    pub path: PathBuf,
    pub mode: u32,
    pub owner: Option<(u32, u32)>,
    pub env_path: Option<PathBuf>,
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
pub struct SigningKeySettings {
    pub path: PathBuf,
    pub policy: KeyPolicy,
    /// Register `jwks_uri` (served by the BFF) instead of inline `jwks`.
    pub jwks_uri: Option<Url>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMethod {
    Patch,
    Put,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub idp_base_url: Url,
    pub profile: Profile,
    pub endpoints: Endpoints,
    /// `DCR_REWRITE_PUBLIC_BASE`: URLs the IdP hands back that start with this are rewritten
    /// to `IDP_BASE_URL`.
    pub rewrite_public_base: Option<Url>,
    pub ca_file: Option<PathBuf>,
    pub allow_insecure_http: bool,
    pub iat: Option<RegistrationToken>,
    pub admin: Option<AdminAuth>,
    pub mint: MintSettings,
    pub metadata: DesiredMetadata,
    pub signing_key: Option<SigningKeySettings>,
    pub output: OutputSettings,
    pub on_stale: StalePolicy,
    pub on_existing: ExistingPolicy,
    pub force_replace: bool,
    pub timing: Timing,
    pub update_method: UpdateMethod,
    pub redirect_mode: RedirectMode,
    pub strict_readback: bool,
    /// Public JWKS of the published keys, for a BFF that serves /.well-known/jwks.json.
    pub jwks_output: Option<PathBuf>,
    /// Where `mint-iat` writes the IAT.
    pub iat_output: Option<PathBuf>,
    pub pushgateway: Option<Url>,
}

/// `DCR_FOO (--foo)`: how errors name an option.
fn name(var: &str) -> String {
    use clap::CommandFactory;
    // The flag as clap knows it, so messages never drift from --help.
    let cmd = crate::cli::Cli::command();
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

pub fn parse_bool(var: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err(bad(var, "true or false", v)),
    }
}

fn parse_duration(var: &str, v: &str, min: Duration) -> Result<Duration> {
    let d = duration::parse(v).map_err(|e| Error::Config(format!("{}: {e}", name(var))))?;
    if d < min {
        return Err(Error::Config(format!(
            "{}: must be at least {}, got {v:?}",
            name(var),
            duration::show(min)
        )));
    }
    Ok(d)
}

/// A whole number of days (or keys); negative values are allowed and mean "off".
fn parse_days(var: &str, v: &str) -> Result<i64> {
    v.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| (-36_500..=36_500).contains(n))
        .ok_or_else(|| bad(var, "a whole number (0 or less turns it off)", v))
}

fn parse_positive(var: &str, v: &str, max: u64) -> Result<u64> {
    match v.trim().parse::<u64>() {
        Ok(n) if n >= 1 && n <= max => Ok(n),
        _ => Err(bad(var, &format!("an integer from 1 to {max}"), v)),
    }
}

pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// Plain http is refused unless the host is loopback or the operator opted in: a bearer token
/// over cleartext across a real network is a leak.
pub fn check_transport(what: &str, url: &Url, allow_insecure_http: bool) -> Result<()> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_http || url.host_str().is_some_and(is_loopback_host) => Ok(()),
        "http" => Err(Error::Config(format!(
            "{what} uses plain http:// to the non-loopback host {:?}; use https, or set \
             DCR_ALLOW_INSECURE_HTTP=true on a trusted internal network (e.g. a compose network)",
            url.host_str().unwrap_or("")
        ))),
        other => Err(Error::Config(format!(
            "{what}: unsupported URL scheme {other:?} (expected https or http)"
        ))),
    }
}

fn parse_url(var: &str, v: &str) -> Result<Url> {
    let url = Url::parse(v.trim()).map_err(|_| bad(var, "an absolute http(s) URL", v))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad(var, "an absolute http(s) URL with a host", v));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Do not echo: userinfo may hold a password.
        return Err(Error::Config(format!(
            "{}: must not contain user:password@ credentials",
            name(var)
        )));
    }
    if url.fragment().is_some() || url.query().is_some() {
        return Err(bad(var, "a URL without query or fragment", v));
    }
    Ok(url)
}

/// Joins `path` to the base URL, keeping any path prefix the base has (a reverse proxy mount).
pub fn join(base: &Url, path: &str) -> Url {
    let mut u = base.clone();
    let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
    u.set_path(&joined);
    u
}

/// Reads a secret from `NAME` or `NAME_FILE`, never both.
fn read_secret(var: &str, value: Option<&str>, file: Option<&str>) -> Result<Option<SecretString>> {
    let file_var = format!("{var}_FILE");
    match (value, file) {
        (Some(_), Some(_)) => Err(Error::Config(format!(
            "{var} and {file_var} are both set; set only one"
        ))),
        (Some(v), None) => {
            if v.trim().is_empty() {
                return Err(Error::Config(format!("{var} is set but empty")));
            }
            check_token_chars(var, v)?;
            Ok(Some(secret(v.to_string())))
        }
        (None, Some(path)) => {
            let raw = std::fs::read_to_string(path)
                .map_err(|e| Error::Config(format!("{file_var}: cannot read {path:?}: {e}")))?;
            let value = raw
                .strip_suffix("\r\n")
                .or_else(|| raw.strip_suffix('\n'))
                .unwrap_or(&raw);
            if value.trim().is_empty() {
                return Err(Error::Config(format!("{file_var}: {path:?} is empty")));
            }
            check_token_chars(&file_var, value)?;
            Ok(Some(secret(value.to_string())))
        }
        (None, None) => Ok(None),
    }
}

/// A bearer token travels in an HTTP header: whitespace or control characters mean a
/// copy-paste accident (say, a second trailing newline), which is better named here than
/// reported as an obscure header error later.
fn check_token_chars(var: &str, value: &str) -> Result<()> {
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::Config(format!(
            "{var}: the token contains whitespace or control characters \
             (only one trailing newline is stripped from a file)"
        )));
    }
    Ok(())
}

fn parse_mode(v: &str) -> Result<u32> {
    let digits = v.trim().trim_start_matches("0o");
    let mode = u32::from_str_radix(digits, 8).map_err(|_| {
        bad(
            "DCR_OUTPUT_MODE",
            "an octal file mode such as 0600 or 0640",
            v,
        )
    })?;
    if digits.is_empty() || mode > 0o777 {
        return Err(bad(
            "DCR_OUTPUT_MODE",
            "an octal file mode such as 0600 or 0640",
            v,
        ));
    }
    if mode & 0o400 == 0 {
        return Err(Error::Config(format!(
            "{}: {v:?} does not let the owner read the file; the next run could not verify it",
            name("DCR_OUTPUT_MODE")
        )));
    }
    if mode & 0o002 != 0 {
        return Err(Error::Config(format!(
            "{}: {v:?} makes credentials world-writable",
            name("DCR_OUTPUT_MODE")
        )));
    }
    Ok(mode)
}

fn parse_owner(v: &str) -> Result<(u32, u32)> {
    let expected = "uid:gid with numeric ids, e.g. 1000:1000";
    let (u, g) = v
        .split_once(':')
        .ok_or_else(|| bad("DCR_OUTPUT_OWNER", expected, v))?;
    let uid = u
        .trim()
        .parse()
        .map_err(|_| bad("DCR_OUTPUT_OWNER", expected, v))?;
    let gid = g
        .trim()
        .parse()
        .map_err(|_| bad("DCR_OUTPUT_OWNER", expected, v))?;
    Ok((uid, gid))
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.trim().is_empty())
}

impl Config {
    /// Validates everything. `needs_output`: the command writes the registration (all but
    /// `mint-iat`), so `DCR_OUTPUT` is required.
    pub fn from_opts(o: &Opts, needs_output: bool) -> Result<Config> {
        let base_raw = non_empty(&o.idp_base_url).ok_or_else(|| {
            Error::Config(format!(
                "{} is required, e.g. http://idp-app:8002",
                name("IDP_BASE_URL")
            ))
        })?;
        let idp_base_url = parse_url("IDP_BASE_URL", base_raw)?;
        let allow_insecure_http = parse_bool("DCR_ALLOW_INSECURE_HTTP", &o.allow_insecure_http)?;
        let profile = Profile::parse(o.profile.trim())
            .ok_or_else(|| bad("DCR_PROFILE", "empowernow, keycloak or rfc7591", &o.profile))?;
        let opt_url = |var: &str, v: &Option<String>| -> Result<Option<Url>> {
            let u = non_empty(v).map(|v| parse_url(var, v)).transpose()?;
            if let Some(u) = &u {
                check_transport(var, u, allow_insecure_http)?;
            }
            Ok(u)
        };
        let rat = match non_empty(&o.rat_endpoint) {
            Some(v) => {
                if !v.contains("{client_id}") {
                    return Err(bad("DCR_RAT_ENDPOINT", "a URL containing {client_id}", v));
                }
                let probe = parse_url("DCR_RAT_ENDPOINT", &v.replace("{client_id}", "x"))?;
                check_transport("DCR_RAT_ENDPOINT", &probe, allow_insecure_http)?;
                Some(v.trim().to_string())
            }
            None => None,
        };
        let realm = non_empty(&o.keycloak_realm).map(|r| r.trim().to_string());
        match (profile, &realm) {
            (Profile::Keycloak, None) => {
                return Err(Error::Config(format!(
                    "{} is required with DCR_PROFILE=keycloak",
                    name("DCR_KEYCLOAK_REALM")
                )));
            }
            (Profile::Keycloak, Some(r))
                if r.contains('/') || r.contains('?') || r.contains('#') =>
            {
                return Err(bad("DCR_KEYCLOAK_REALM", "a realm name", r));
            }
            _ => {}
        }
        let endpoints = profiles::endpoints(
            profile,
            &idp_base_url,
            realm.as_deref(),
            Explicit {
                issuer: opt_url("DCR_ISSUER", &o.issuer)?,
                iat: opt_url("DCR_IAT_ENDPOINT", &o.iat_endpoint)?,
                registration: opt_url("DCR_REGISTRATION_ENDPOINT", &o.registration_endpoint)?,
                token: opt_url("DCR_TOKEN_ENDPOINT", &o.token_endpoint)?,
                rat,
            },
        );
        check_transport("IDP_BASE_URL", &idp_base_url, allow_insecure_http)?;
        let rewrite_public_base = non_empty(&o.rewrite_public_base)
            .map(|v| parse_url("DCR_REWRITE_PUBLIC_BASE", v))
            .transpose()?;

        let ca_file = non_empty(&o.ca_file).map(PathBuf::from);

        let iat_value = o.iat.as_ref().map(SecretArg::expose);
        let iat = if iat_value.map(str::trim) == Some("none") && o.iat_file.is_none() {
            Some(RegistrationToken::Open)
        } else {
            read_secret("DCR_IAT", iat_value, o.iat_file.as_deref())?.map(RegistrationToken::Given)
        };
        let admin = admin_auth(o, profile)?;
        if admin.is_some() && endpoints.iat.is_none() && iat.is_none() {
            return Err(Error::Config(format!(
                "DCR_PROFILE={} has no standard way to mint an IAT: set DCR_IAT (an IAT or registration \
                 bearer token), DCR_IAT=none for open registration, or DCR_IAT_ENDPOINT",
                profile.name()
            )));
        }

        let max_uses_field = match o.iat_max_uses_field.trim() {
            f @ ("max_uses" | "max_usages") => f.to_string(),
            other => {
                return Err(bad(
                    "DCR_IAT_MAX_USES_FIELD",
                    "max_uses or max_usages",
                    other,
                ));
            }
        };
        if o.iat_label.trim().is_empty() {
            return Err(Error::Config(format!(
                "{} must not be empty",
                name("DCR_IAT_LABEL")
            )));
        }
        let mint = MintSettings {
            label: o.iat_label.clone(),
            expires_in: parse_positive("DCR_IAT_EXPIRES_IN", &o.iat_expires_in, 86_400)?,
            max_uses: parse_positive("DCR_IAT_MAX_USES", &o.iat_max_uses, 1000)?,
            max_uses_field,
        };

        let policy = KeyPolicy {
            alg: KeyAlg::parse(o.key_alg.trim())
                .ok_or_else(|| bad("DCR_KEY_ALG", "RS256, PS256 or ES256", &o.key_alg))?,
            rsa_bits: match o.rsa_bits.trim() {
                "2048" => 2048,
                "3072" => 3072,
                "4096" => 4096,
                other => return Err(bad("DCR_RSA_BITS", "2048, 3072 or 4096", other)),
            },
            rotate_after_days: parse_days("BFF_JWK_ROTATE_AFTER_DAYS", &o.rotate_after_days)?,
            retire_after_days: parse_days("BFF_JWK_RETIRE_AFTER_DAYS", &o.retire_after_days)?,
            max_keys: parse_days("BFF_JWK_MAX_KEYS", &o.max_keys)?,
            kid: non_empty(&o.kid).map(|k| k.trim().to_string()),
        };
        let jwks_uri = match non_empty(&o.jwks_uri) {
            Some(v) => {
                let u = parse_url("DCR_JWKS_URI", v)?;
                if u.scheme() != "https" {
                    return Err(bad("DCR_JWKS_URI", "an https URL (the IdP fetches it)", v));
                }
                Some(u)
            }
            None => None,
        };
        let jwks_output = non_empty(&o.jwks_output).map(PathBuf::from);
        let signing_key = non_empty(&o.signing_key).map(|p| SigningKeySettings {
            path: PathBuf::from(p),
            policy,
            jwks_uri: jwks_uri.clone(),
        });
        if signing_key.is_none() {
            for (var, set) in [
                ("BFF_KID", non_empty(&o.kid).is_some()),
                ("DCR_JWKS_URI", jwks_uri.is_some()),
                ("DCR_JWKS_OUTPUT", jwks_output.is_some()),
            ] {
                if set {
                    return Err(Error::Config(format!(
                        "{var} is set but DCR_SIGNING_KEY is not; it describes the signing key"
                    )));
                }
            }
        }
        if jwks_uri.is_some() && jwks_output.is_none() {
            tracing::warn!(
                "DCR_JWKS_URI is set without DCR_JWKS_OUTPUT: the BFF must serve the public keys at that URI by other means"
            );
        }

        let metadata = metadata::desired(&MetadataInputs {
            json: o.client_metadata.as_deref(),
            file: o.client_metadata_file.as_deref(),
            client_id: non_empty(&o.client_id),
            client_name: non_empty(&o.client_name),
            redirect_uris: o.redirect_uris.as_deref(),
            scope: non_empty(&o.scope),
            grant_types: non_empty(&o.grant_types),
            response_types: non_empty(&o.response_types),
            auth_method: non_empty(&o.token_endpoint_auth_method),
            client_profile: non_empty(&o.client_profile),
            profile_field: o.client_profile_field.trim(),
            has_signing_key: signing_key.is_some(),
        })?;

        if profile == Profile::Keycloak && metadata.fields.contains_key("client_id") {
            return Err(Error::Config(format!(
                "{}: Keycloak's OIDC registration refuses a client-chosen client_id (400 \"Client Identifier \
                 included\"). Leave it unset; for a stable id, create the client with Keycloak's admin API or its \
                 \"default\" registration provider and give this tool its registration access token",
                metadata.origin("client_id")
            )));
        }
        let output_path = match (non_empty(&o.output), non_empty(&o.bff_client_cred_path)) {
            (Some(a), Some(b)) if a != b => {
                return Err(Error::Config(format!(
                    "DCR_OUTPUT ({a:?}) and its alias BFF_CLIENT_CRED_PATH ({b:?}) disagree; set one"
                )));
            }
            (Some(a), _) | (None, Some(a)) => PathBuf::from(a),
            (None, None) if !needs_output => PathBuf::from("unused"),
            (None, None) => {
                return Err(Error::Config(format!(
                    "{} (or BFF_CLIENT_CRED_PATH) is required: where to write the registration, e.g. /app/keys/bff_client.json",
                    name("DCR_OUTPUT")
                )));
            }
        };
        if output_path.file_name().is_none() {
            return Err(bad(
                "DCR_OUTPUT",
                "a file path",
                &output_path.display().to_string(),
            ));
        }
        let output = OutputSettings {
            path: output_path,
            mode: parse_mode(&o.output_mode)?,
            owner: non_empty(&o.output_owner).map(parse_owner).transpose()?,
            env_path: non_empty(&o.env_output).map(PathBuf::from),
        };

        let on_stale = match o.on_stale.trim() {
            "fail" => StalePolicy::Fail,
            "reregister" => StalePolicy::Reregister,
            other => return Err(bad("DCR_ON_STALE", "fail or reregister", other)),
        };
        let on_existing = match o.on_existing.trim() {
            "adopt" => ExistingPolicy::Adopt,
            "fail" => ExistingPolicy::Fail,
            other => return Err(bad("DCR_ON_EXISTING", "adopt or fail", other)),
        };
        let force_replace = parse_bool("DCR_FORCE_REPLACE", &o.force_replace)?;

        let ms = Duration::from_millis;
        let timing = Timing {
            deadline: parse_duration("DCR_TIMEOUT", &o.timeout, ms(100))?,
            request_timeout: parse_duration("DCR_REQUEST_TIMEOUT", &o.request_timeout, ms(100))?,
            backoff_initial: parse_duration("DCR_BACKOFF_INITIAL", &o.backoff_initial, ms(1))?,
            backoff_max: parse_duration("DCR_BACKOFF_MAX", &o.backoff_max, ms(1))?,
            probe_interval: parse_duration("DCR_PROBE_INTERVAL", &o.probe_interval, ms(10))?,
            retry_after_max: parse_duration(
                "DCR_RETRY_AFTER_MAX",
                &o.retry_after_max,
                Duration::ZERO,
            )?,
            start_jitter: parse_duration("DCR_START_JITTER", &o.start_jitter, Duration::ZERO)?,
        };
        if timing.backoff_max < timing.backoff_initial {
            return Err(Error::Config(format!(
                "{} ({}) is smaller than DCR_BACKOFF_INITIAL ({})",
                name("DCR_BACKOFF_MAX"),
                duration::show(timing.backoff_max),
                duration::show(timing.backoff_initial)
            )));
        }

        Ok(Config {
            idp_base_url,
            profile,
            endpoints,
            rewrite_public_base,
            ca_file,
            allow_insecure_http,
            iat,
            admin,
            mint,
            metadata,
            signing_key,
            output,
            on_stale,
            on_existing,
            force_replace,
            timing,
            update_method: match non_empty(&o.update_method).map(str::trim) {
                Some("patch") => UpdateMethod::Patch,
                Some("put") => UpdateMethod::Put,
                Some(other) => return Err(bad("DCR_UPDATE_METHOD", "patch or put", other)),
                // EmpowerNow documents PATCH; RFC 7592 (and Keycloak) use PUT.
                None if profile == Profile::EmpowerNow => UpdateMethod::Patch,
                None => UpdateMethod::Put,
            },
            redirect_mode: if parse_bool("DCR_ROTATION_SAFE", &o.rotation_safe)? {
                // Rotation-safe means never removing a redirect URI a running app may use.
                RedirectMode::Merge
            } else {
                RedirectMode::parse(o.redirect_update_mode.trim()).ok_or_else(|| {
                    bad(
                        "DCR_REDIRECT_UPDATE_MODE",
                        "auto, replace, merge or none",
                        &o.redirect_update_mode,
                    )
                })?
            },
            strict_readback: parse_bool("DCR_STRICT_READBACK", &o.strict_readback)?,
            jwks_output,
            iat_output: non_empty(&o.iat_output).map(PathBuf::from),
            pushgateway: match non_empty(&o.pushgateway) {
                Some(v) => {
                    let u = parse_url("PROM_PUSHGATEWAY_URL", v)?;
                    check_transport("PROM_PUSHGATEWAY_URL", &u, true)?;
                    Some(u)
                }
                None => None,
            },
        })
    }

    /// Every file name this run may write, for sweeping temp files a killed run left behind:
    /// the output, the dotenv, the JWKS, and the keys (`<stem>` covers `<stem>.pem`,
    /// `<stem>.pem.next` and `<stem>.<kid>.pem`).
    pub fn written_files(&self) -> Vec<PathBuf> {
        let mut v = vec![self.output.path.clone()];
        v.extend(self.output.env_path.clone());
        v.extend(self.jwks_output.clone());
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
        let Some(public) = &self.rewrite_public_base else {
            return url.clone();
        };
        let from = public.as_str().trim_end_matches('/');
        let to = self.idp_base_url.as_str().trim_end_matches('/');
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

    /// Fills `{client_id}` (percent-encoded) into an endpoint template.
    pub fn endpoint_for(&self, template: &str, var: &str, client_id: &str) -> Result<Url> {
        // RFC 3986 unreserved characters pass; everything else is percent-encoded.
        let id: String = client_id
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        Url::parse(&template.replace("{client_id}", &id))
            .map_err(|_| Error::Config(format!("{var}: no valid URL for client {client_id:?}")))
    }
}

/// `BOOTSTRAP_ADMIN_TOKEN(_FILE)` or the `DCR_ADMIN_CLIENT_*` client-credentials settings.
fn admin_auth(o: &Opts, profile: Profile) -> Result<Option<AdminAuth>> {
    let token = read_secret(
        "BOOTSTRAP_ADMIN_TOKEN",
        o.admin_token.as_ref().map(SecretArg::expose),
        o.admin_token_file.as_deref(),
    )?;
    let secret = read_secret(
        "DCR_ADMIN_CLIENT_SECRET",
        o.admin_client_secret.as_ref().map(SecretArg::expose),
        o.admin_client_secret_file.as_deref(),
    )?;
    let id = non_empty(&o.admin_client_id).map(|s| s.trim().to_string());
    match (token, id, secret) {
        (Some(_), Some(_), _) => Err(Error::Config(
            "BOOTSTRAP_ADMIN_TOKEN and DCR_ADMIN_CLIENT_ID are both set; use one way to get the admin token".into(),
        )),
        (Some(t), None, None) => Ok(Some(AdminAuth::Static(t))),
        (Some(_), None, Some(_)) => Err(Error::Config(
            "DCR_ADMIN_CLIENT_SECRET is set without DCR_ADMIN_CLIENT_ID".into(),
        )),
        (None, Some(_), None) => Err(Error::Config(format!(
            "{} is set but DCR_ADMIN_CLIENT_SECRET (or _FILE) is not",
            name("DCR_ADMIN_CLIENT_ID")
        ))),
        (None, None, Some(_)) => Err(Error::Config(
            "DCR_ADMIN_CLIENT_SECRET is set without DCR_ADMIN_CLIENT_ID".into(),
        )),
        (None, Some(client_id), Some(secret)) => Ok(Some(AdminAuth::ClientCredentials {
            client_id,
            secret,
            method: match o.admin_auth_method.trim() {
                "client_secret_basic" => ClientAuth::Basic,
                "client_secret_post" => ClientAuth::Post,
                other => {
                    return Err(bad(
                        "DCR_ADMIN_AUTH_METHOD",
                        "client_secret_basic or client_secret_post",
                        other,
                    ));
                }
            },
            scope: match non_empty(&o.admin_scope) {
                Some(s) => Some(s.trim().to_string()),
                None if profile == Profile::EmpowerNow => Some("admin.api".into()),
                None => None,
            },
            resource: non_empty(&o.admin_resource).map(|r| r.trim().to_string()),
        })),
        (None, None, None) => Ok(None),
    }
}

/// Parsed before everything else, so that configuration errors are logged in the right format.
pub fn log_format(o: &Opts) -> Result<LogFormat> {
    match o.log_format.trim() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(bad("DCR_LOG_FORMAT", "text or json", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Opts {
        Opts {
            idp_base_url: Some("http://127.0.0.1:8002".into()),
            profile: "empowernow".into(),
            allow_insecure_http: "false".into(),
            iat_label: "x".into(),
            iat_expires_in: "600".into(),
            iat_max_uses: "1".into(),
            iat_max_uses_field: "max_uses".into(),
            client_profile_field: "client_profile".into(),
            output: Some("/tmp/out.json".into()),
            output_mode: "0600".into(),
            on_stale: "fail".into(),
            on_existing: "adopt".into(),
            force_replace: "false".into(),
            timeout: "300s".into(),
            request_timeout: "10s".into(),
            backoff_initial: "500ms".into(),
            start_jitter: "0s".into(),
            backoff_max: "8s".into(),
            probe_interval: "500ms".into(),
            retry_after_max: "60s".into(),
            log_format: "text".into(),
            log: "info".into(),
            key_alg: "RS256".into(),
            rsa_bits: "2048".into(),
            rotate_after_days: "30".into(),
            retire_after_days: "60".into(),
            max_keys: "3".into(),
            admin_auth_method: "client_secret_basic".into(),
            redirect_update_mode: "auto".into(),
            rotation_safe: "false".into(),
            strict_readback: "false".into(),
            ..Opts::default()
        }
    }

    fn err(o: Opts) -> String {
        Config::from_opts(&o, true).unwrap_err().to_string()
    }

    #[test]
    fn defaults_derive_endpoints_from_the_base() {
        let c = Config::from_opts(&opts(), true).unwrap();
        assert_eq!(
            c.endpoints.iat.unwrap().as_str(),
            "http://127.0.0.1:8002/api/admin/dcr/initial-access-tokens"
        );
        assert_eq!(
            c.endpoints.registration.unwrap().as_str(),
            "http://127.0.0.1:8002/api/oidc/dcr/register"
        );
        assert_eq!(c.output.mode, 0o600);
    }

    #[test]
    fn base_path_prefix_is_kept() {
        let mut o = opts();
        o.idp_base_url = Some("https://idp.example/tenant/".into());
        let c = Config::from_opts(&o, true).unwrap();
        assert_eq!(
            c.endpoints.registration.unwrap().as_str(),
            "https://idp.example/tenant/api/oidc/dcr/register"
        );
    }

    #[test]
    fn insecure_http_needs_opt_in() {
        let mut o = opts();
        o.idp_base_url = Some("http://idp-app:8002".into());
        assert!(err(o.clone()).contains("DCR_ALLOW_INSECURE_HTTP"));
        o.allow_insecure_http = "true".into();
        assert!(Config::from_opts(&o, true).is_ok());
    }

    #[test]
    fn errors_name_the_variable() {
        type Case = (fn(&mut Opts), &'static str);
        let cases: Vec<Case> = vec![
            (|o| o.idp_base_url = None, "IDP_BASE_URL"),
            (
                |o| o.idp_base_url = Some("not a url".into()),
                "IDP_BASE_URL",
            ),
            (|o| o.timeout = "10".into(), "DCR_TIMEOUT"),
            (|o| o.request_timeout = "-1s".into(), "DCR_REQUEST_TIMEOUT"),
            (|o| o.output_mode = "rw".into(), "DCR_OUTPUT_MODE"),
            (|o| o.output_mode = "0999".into(), "DCR_OUTPUT_MODE"),
            (|o| o.output_owner = Some("bff".into()), "DCR_OUTPUT_OWNER"),
            (|o| o.iat_max_uses = "0".into(), "DCR_IAT_MAX_USES"),
            (
                |o| o.iat_max_uses_field = "uses".into(),
                "DCR_IAT_MAX_USES_FIELD",
            ),
            (|o| o.on_stale = "maybe".into(), "DCR_ON_STALE"),
            (|o| o.on_existing = "merge".into(), "DCR_ON_EXISTING"),
            (
                |o| o.rat_endpoint = Some("https://idp/tokens".into()),
                "DCR_RAT_ENDPOINT",
            ),
            (|o| o.force_replace = "perhaps".into(), "DCR_FORCE_REPLACE"),
            (|o| o.profile = "okta".into(), "DCR_PROFILE"),
            (|o| o.profile = "keycloak".into(), "DCR_KEYCLOAK_REALM"),
            (
                |o| o.admin_client_id = Some("admin".into()),
                "DCR_ADMIN_CLIENT_SECRET",
            ),
            (
                |o| {
                    o.admin_client_id = Some("admin".into());
                    o.admin_client_secret = Some("admin-secret".into());
                    o.admin_auth_method = "private_key_jwt".into();
                },
                "DCR_ADMIN_AUTH_METHOD",
            ),
            (
                |o| {
                    o.profile = "keycloak".into();
                    o.keycloak_realm = Some("demo".into());
                    o.client_id = Some("bff-server".into());
                },
                "DCR_CLIENT_ID",
            ),
            (
                |o| o.rewrite_public_base = Some("public".into()),
                "DCR_REWRITE_PUBLIC_BASE",
            ),
            (|o| o.output = None, "DCR_OUTPUT"),
            (|o| o.backoff_max = "1ms".into(), "DCR_BACKOFF_MAX"),
            (
                |o| o.iat_file = Some("/nonexistent/iat".into()),
                "DCR_IAT_FILE",
            ),
        ];
        for (mutate, var) in cases {
            let mut o = opts();
            mutate(&mut o);
            let e = err(o);
            assert!(e.contains(var), "{var}: {e}");
        }
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let mut o = opts();
        o.iat = Some("iat-secret-value-1".into());
        o.admin_token = Some("admin-secret-value-2".into());
        let cfg = Config::from_opts(&o, true).unwrap();
        let reply = crate::http::Reply {
            status: 201,
            retry_after: None,
            content_type: "application/json".into(),
            location: None,
            body: br#"{"token":"iat-secret-value-3"}"#.to_vec(),
        };
        let stored = crate::store::parse_stored(
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
        let mut o = opts();
        o.iat = Some("very-secret-iat-value".into());
        o.iat_file = Some("/etc/hostname".into());
        let e = err(o);
        assert!(e.contains("DCR_IAT") && !e.contains("very-secret"));
    }

    #[test]
    fn secret_file_loses_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, "abc-token-123\n").unwrap();
        let mut o = opts();
        o.admin_token_file = Some(p.display().to_string());
        let c = Config::from_opts(&o.clone(), true).unwrap();
        use secrecy::ExposeSecret;
        let Some(AdminAuth::Static(t)) = c.admin else {
            panic!("a static admin token")
        };
        assert_eq!(t.expose_secret(), "abc-token-123");
        std::fs::write(&p, "abc-token-123\n\n").unwrap();
        let e = err(o);
        assert!(
            e.contains("BOOTSTRAP_ADMIN_TOKEN_FILE") && !e.contains("abc-token"),
            "{e}"
        );
    }
}
