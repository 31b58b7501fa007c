//! Where each emulated IdP keeps its endpoints, and how it words its errors.

use serde::{Deserialize, Serialize};

/// Which IdP the emulator plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// The EmpowerNow IdP as its public docs describe it (the default; docs/profiles.md).
    #[default]
    Empowernow,
    /// Keycloak: realm-scoped paths, `clients-initial-access`, RAT rotation on every use.
    Keycloak,
    /// A plain RFC 7591/7592 server found by discovery (Hydra, node-oidc-provider style).
    Rfc7591,
}

/// A Keycloak version, major and minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeycloakVersion(pub u32, pub u32);

impl KeycloakVersion {
    pub fn parse(s: &str) -> Option<KeycloakVersion> {
        let mut it = s.trim().split('.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next().unwrap_or("0").parse().ok()?;
        Some(KeycloakVersion(major, minor))
    }
}

impl std::fmt::Display for KeycloakVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

pub struct Layout {
    pub profile: Profile,
    /// Issuer path (appended to the base URL).
    pub issuer: String,
    pub discovery: Vec<String>,
    pub register: Vec<String>,
    /// `registration_client_uri` is this prefix plus the client_id.
    pub client_prefix: String,
    pub token: String,
    /// IAT minting (POST), and for Keycloak also `/{id}` for revoke (DELETE).
    pub mint: Option<String>,
    /// Admin re-issue of a registration access token: prefix + `{id}` + suffix.
    pub rat_reissue: Option<(String, String)>,
    pub patch_allowed: bool,
}

impl Layout {
    pub fn new(profile: Profile, realm: &str) -> Layout {
        match profile {
            Profile::Empowernow => Layout {
                profile,
                issuer: "/api/oidc".into(),
                discovery: vec![
                    "/.well-known/openid-configuration".into(),
                    "/api/oidc/.well-known/openid-configuration".into(),
                ],
                register: vec!["/api/oidc/dcr/register".into(), "/api/oidc/register".into()],
                client_prefix: "/api/oidc/register/".into(),
                token: "/api/oidc/token".into(),
                mint: Some("/api/admin/dcr/initial-access-tokens".into()),
                rat_reissue: Some(("/api/admin/dcr/clients/".into(), "/tokens".into())),
                patch_allowed: true,
            },
            Profile::Keycloak => {
                let issuer = format!("/realms/{realm}");
                Layout {
                    profile,
                    discovery: vec![format!("{issuer}/.well-known/openid-configuration")],
                    register: vec![format!("{issuer}/clients-registrations/openid-connect")],
                    client_prefix: format!("{issuer}/clients-registrations/openid-connect/"),
                    token: format!("{issuer}/protocol/openid-connect/token"),
                    mint: Some(format!("/admin/realms/{realm}/clients-initial-access")),
                    rat_reissue: None,
                    patch_allowed: false,
                    issuer,
                }
            }
            Profile::Rfc7591 => Layout {
                profile,
                issuer: String::new(),
                discovery: vec![
                    "/.well-known/openid-configuration".into(),
                    "/.well-known/oauth-authorization-server".into(),
                ],
                register: vec!["/register".into()],
                client_prefix: "/register/".into(),
                token: "/token".into(),
                mint: None,
                rat_reissue: None,
                patch_allowed: false,
            },
        }
    }

    pub fn keycloak(&self) -> bool {
        self.profile == Profile::Keycloak
    }
}
