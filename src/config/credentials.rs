//! The tokens a run may use: an IAT (or open registration), and the admin credential, a
//! ready token or a client-credentials client. Secrets come from `NAME` or `NAME_FILE`.

use super::name;
use super::{Target, non_empty};
use crate::cli::TokenArgs;
use crate::error::{Error, Result};
use crate::idp::profile::Profile;
use crate::idp::{ClientAuth, MintSettings};
use crate::seal::Sealer;
use crate::secret::secret;
use secrecy::{ExposeSecret, SecretString};
use std::path::Path;

/// How registration is authorised.
#[derive(Debug, Clone)]
pub enum RegistrationToken {
    /// An IAT (or any bearer token the IdP accepts for registration).
    Given(SecretString),
    /// `DCR_IAT=none`: open registration, no Authorization header.
    Open,
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

/// The tokens a run may use.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub iat: Option<RegistrationToken>,
    pub admin: Option<AdminAuth>,
    pub mint: MintSettings,
    /// Seals stored records: keyed by `DCR_STATE_KEY`, else by the admin credential. `None`
    /// without either (then no admin power exists to protect).
    pub sealer: Option<Sealer>,
    /// With `DCR_STATE_KEY` set, the admin credential's sealer: a record sealed before the
    /// state key was introduced still verifies, and is re-sealed with the state key (the way
    /// to rotate an admin credential afterwards; docs/how-to.md). Both keys are off the volume.
    pub previous_sealer: Option<Sealer>,
    /// `DCR_REGISTRATION_SCOPE`: register with a client-credentials access token of this
    /// scope (the admin client's) instead of an IAT.
    pub registration_scope: Option<String>,
}

impl Credentials {
    /// Whether `record` carries a seal this deployment made: with the sealing key, or with
    /// the admin credential's before `DCR_STATE_KEY` was set.
    pub fn verifies(&self, record: &crate::record::ClientRecord, b: &crate::seal::Binding) -> bool {
        [&self.sealer, &self.previous_sealer]
            .into_iter()
            .flatten()
            .any(|s| s.verify(record, b))
    }
}

/// Reads a secret from `NAME` or `NAME_FILE`, never both.
fn read_secret(
    var: &str,
    value: Option<&SecretString>,
    file: Option<&Path>,
) -> Result<Option<SecretString>> {
    let file_var = format!("{var}_FILE");
    match (value, file) {
        (Some(_), Some(_)) => Err(Error::Config(format!(
            "{var} and {file_var} are both set; set only one"
        ))),
        (Some(v), None) => {
            let v = v.expose_secret();
            if v.trim().is_empty() {
                return Err(Error::Config(format!("{var} is set but empty")));
            }
            check_token_chars(var, v)?;
            Ok(Some(secret(v.to_string())))
        }
        (None, Some(path)) => {
            let cannot = |why: String| {
                Error::Config(format!("{file_var}: cannot read {}: {why}", path.display()))
            };
            let bytes = crate::files::read_regular(path, crate::files::SECRET_CAP)
                .map_err(&cannot)?
                .ok_or_else(|| cannot("no such file".into()))?;
            let raw = String::from_utf8(bytes).map_err(|_| cannot("not UTF-8 text".into()))?;
            let value = raw
                .strip_suffix("\r\n")
                .or_else(|| raw.strip_suffix('\n'))
                .unwrap_or(&raw);
            if value.trim().is_empty() {
                return Err(Error::Config(format!(
                    "{file_var}: {} is empty",
                    path.display()
                )));
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

impl Credentials {
    pub(super) fn from_args(a: &TokenArgs, target: &Target) -> Result<Credentials> {
        let open = a
            .iat
            .as_ref()
            .is_some_and(|t| t.expose_secret().trim() == "none")
            && a.iat_file.is_none();
        let iat = if open {
            Some(RegistrationToken::Open)
        } else {
            read_secret("DCR_IAT", a.iat.as_ref(), a.iat_file.as_deref())?
                .map(RegistrationToken::Given)
        };
        let admin = admin_auth(a, target.profile)?;
        let registration_scope = non_empty(&a.registration_scope).map(|s| s.trim().to_string());
        if registration_scope.is_some()
            && !matches!(admin, Some(AdminAuth::ClientCredentials { .. }))
        {
            return Err(Error::Config(format!(
                "{} needs a client to fetch the registration token with: set DCR_ADMIN_CLIENT_ID and \
                 DCR_ADMIN_CLIENT_SECRET (or _FILE)",
                name("DCR_REGISTRATION_SCOPE")
            )));
        }
        if admin.is_some()
            && target.endpoints.iat.is_none()
            && iat.is_none()
            && registration_scope.is_none()
        {
            return Err(Error::Config(format!(
                "DCR_PROFILE={} has no standard way to mint an IAT: set DCR_IAT (an IAT or registration \
                 bearer token), DCR_IAT=none for open registration, DCR_IAT_ENDPOINT, or DCR_REGISTRATION_SCOPE \
                 (a client-credentials token)",
                target.profile.name()
            )));
        }
        if a.iat_label.trim().is_empty() {
            return Err(Error::Config(format!(
                "{} must not be empty",
                name("DCR_IAT_LABEL")
            )));
        }
        let state_key = read_secret(
            "DCR_STATE_KEY",
            a.state_key.as_ref(),
            a.state_key_file.as_deref(),
        )?;
        let sealer = match (&state_key, &admin) {
            (Some(k), _) => {
                strong_enough(k.expose_secret()).map_err(|why| {
                    Error::Config(format!(
                        "{} {why}: it keys the seal that decides which client the admin token may act on. \
                         Use at least 128 random bits, e.g. `openssl rand -base64 32`",
                        name("DCR_STATE_KEY")
                    ))
                })?;
                Some(Sealer::new(k.expose_secret().as_bytes()))
            }
            (None, Some(AdminAuth::Static(t))) => {
                warn_if_weak("the admin token", t.expose_secret());
                Some(Sealer::new(t.expose_secret().as_bytes()))
            }
            (
                None,
                Some(AdminAuth::ClientCredentials {
                    client_id, secret, ..
                }),
            ) => {
                warn_if_weak("DCR_ADMIN_CLIENT_SECRET", secret.expose_secret());
                Some(Sealer::new(
                    format!("{client_id}\0{}", secret.expose_secret()).as_bytes(),
                ))
            }
            (None, None) => None,
        };
        let previous_sealer = match (&state_key, &admin) {
            (Some(_), Some(AdminAuth::Static(t))) => {
                Some(Sealer::new(t.expose_secret().as_bytes()))
            }
            (
                Some(_),
                Some(AdminAuth::ClientCredentials {
                    client_id, secret, ..
                }),
            ) => Some(Sealer::new(
                format!("{client_id}\0{}", secret.expose_secret()).as_bytes(),
            )),
            _ => None,
        };
        Ok(Credentials {
            registration_scope,
            sealer,
            previous_sealer,
            iat,
            admin,
            mint: MintSettings {
                label: a.iat_label.clone(),
                expires_in: a.iat_expires_in,
                max_uses: a.iat_max_uses,
                max_uses_field: a.iat_max_uses_field,
            },
        })
    }
}

/// Whether a sealing key can hold about 128 bits: at least 22 characters (16 random bytes in
/// base64) of at least 8 different ones. A guessable key lets whoever reads one stored seal
/// recover it offline (the review recovered `DCR_STATE_KEY=a` in 0.27 s) and seal any record.
fn strong_enough(key: &str) -> std::result::Result<(), String> {
    let distinct = key.chars().collect::<std::collections::HashSet<_>>().len();
    if key.chars().count() < 22 || distinct < 8 {
        return Err(format!(
            "is too weak ({} characters, {distinct} different; at least 22 and 8 are needed)",
            key.chars().count()
        ));
    }
    Ok(())
}

/// Without DCR_STATE_KEY the seal is keyed by the admin credential; a short one is said.
fn warn_if_weak(what: &str, key: &str) {
    if strong_enough(key).is_err() {
        tracing::warn!(
            "stored records are sealed with {what}, which is short enough to be guessed from one stored seal: set \
             DCR_STATE_KEY to at least 128 random bits (e.g. `openssl rand -base64 32`)"
        );
    }
}

/// `BOOTSTRAP_ADMIN_TOKEN(_FILE)` or the `DCR_ADMIN_CLIENT_*` client-credentials settings.
fn admin_auth(a: &TokenArgs, profile: Profile) -> Result<Option<AdminAuth>> {
    let token = read_secret(
        "BOOTSTRAP_ADMIN_TOKEN",
        a.admin_token.as_ref(),
        a.admin_token_file.as_deref(),
    )?;
    let secret = read_secret(
        "DCR_ADMIN_CLIENT_SECRET",
        a.admin_client_secret.as_ref(),
        a.admin_client_secret_file.as_deref(),
    )?;
    let id = non_empty(&a.admin_client_id).map(|s| s.trim().to_string());
    match (token, id, secret) {
        (Some(_), Some(_), _) => Err(Error::Config(
            "BOOTSTRAP_ADMIN_TOKEN and DCR_ADMIN_CLIENT_ID are both set; use one way to get the admin token".into(),
        )),
        (Some(t), None, None) => Ok(Some(AdminAuth::Static(t))),
        (Some(_), None, Some(_)) | (None, None, Some(_)) => Err(Error::Config(
            "DCR_ADMIN_CLIENT_SECRET is set without DCR_ADMIN_CLIENT_ID".into(),
        )),
        (None, Some(_), None) => Err(Error::Config(format!(
            "{} is set but DCR_ADMIN_CLIENT_SECRET (or _FILE) is not",
            name("DCR_ADMIN_CLIENT_ID")
        ))),
        (None, Some(client_id), Some(secret)) => Ok(Some(AdminAuth::ClientCredentials {
            client_id,
            secret,
            method: a.admin_auth_method,
            scope: match non_empty(&a.admin_scope) {
                Some(s) => Some(s.trim().to_string()),
                None if profile == Profile::EmpowerNow => Some("admin.api".into()),
                None => None,
            },
            resource: non_empty(&a.admin_resource).map(|r| r.trim().to_string()),
        })),
        (None, None, None) => Ok(None),
    }
}
