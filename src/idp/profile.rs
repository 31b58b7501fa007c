//! Endpoint layouts of the IdPs we know (`DCR_PROFILE`). Explicit endpoint variables always win
//! over a profile's defaults; what a profile cannot know (an RFC 7591 server's endpoints) is
//! found by discovery at run time.

use reqwest::Url;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// EmpowerNow (docs/profiles.md): admin IAT API, `/api/oidc/...`, PATCH updates.
    #[value(name = "empowernow")]
    EmpowerNow,
    /// Keycloak: realm-scoped paths, `clients-initial-access`, PUT updates, its admin API.
    Keycloak,
    /// Any RFC 7591/7592 server, endpoints by discovery, PUT updates.
    #[value(name = "rfc7591")]
    Rfc7591,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::EmpowerNow => "empowernow",
            Profile::Keycloak => "keycloak",
            Profile::Rfc7591 => "rfc7591",
        }
    }
}

/// The shape of the IAT mint request and answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MintStyle {
    /// `{"label", "expires_in", "max_uses"}` → `token`.
    EmpowerNow,
    /// `{"expiration", "count"}` → `token`, `id` (revoked after use).
    Keycloak,
}

/// Where things are, before discovery fills the gaps.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// The issuer, for discovery.
    pub issuer: Url,
    pub iat: Option<Url>,
    pub mint_style: MintStyle,
    /// Revoking a minted IAT after use: `{id}` is replaced (Keycloak).
    pub iat_revoke: Option<String>,
    /// `None`: from discovery.
    pub registration: Option<Url>,
    /// `None`: from discovery (only needed for client-credentials admin tokens).
    pub token: Option<Url>,
    /// Admin re-issue of a registration access token; `{client_id}` is replaced.
    pub rat: Option<String>,
    /// Management URL when the IdP handed none back; `{client_id}` is replaced. `None`:
    /// `{registration endpoint}/{client_id}`.
    pub client_uri: Option<String>,
    /// Keycloak's realm admin API (a registration access token is re-issued there by the
    /// client's internal id, not by a `{client_id}` template).
    pub keycloak: Option<AdminApi>,
}

/// Endpoint variables the operator set.
pub struct Explicit {
    pub issuer: Option<Url>,
    pub iat: Option<Url>,
    pub registration: Option<Url>,
    pub token: Option<Url>,
    pub rat: Option<String>,
}

fn under(base: &Url, path: &str) -> String {
    format!("{}{path}", base.as_str().trim_end_matches('/'))
}

fn url(s: String) -> Option<Url> {
    Url::parse(&s).ok()
}

/// The defaults of `profile` for an IdP at `base`, overridden by what was set explicitly.
pub fn endpoints(profile: Profile, base: &Url, realm: Option<&str>, x: Explicit) -> Endpoints {
    match profile {
        Profile::EmpowerNow => Endpoints {
            issuer: x
                .issuer
                .unwrap_or_else(|| url(under(base, "/api/oidc")).unwrap_or_else(|| base.clone())),
            iat: x
                .iat
                .or_else(|| url(under(base, "/api/admin/dcr/initial-access-tokens"))),
            mint_style: MintStyle::EmpowerNow,
            iat_revoke: None,
            registration: x
                .registration
                .or_else(|| url(under(base, "/api/oidc/dcr/register"))),
            token: x.token.or_else(|| url(under(base, "/api/oidc/token"))),
            // EmpowerNow's public docs name no admin re-issue of a registration access token;
            // `/api/admin/dcr/clients/{client_id}/tokens` is a guess, used only when
            // DCR_RAT_ENDPOINT names it (docs/profiles.md).
            rat: x.rat,
            // The BFF pages' management path (GET/PATCH /api/oidc/register/{client_id}).
            client_uri: Some(under(base, "/api/oidc/register/{client_id}")),
            keycloak: None,
        },
        Profile::Keycloak => {
            let realm = realm.unwrap_or_default();
            let issuer = under(base, &format!("/realms/{realm}"));
            let iat = x.iat.or_else(|| {
                url(under(
                    base,
                    &format!("/admin/realms/{realm}/clients-initial-access"),
                ))
            });
            let registration = x
                .registration
                .or_else(|| url(format!("{issuer}/clients-registrations/openid-connect")));
            Endpoints {
                iat_revoke: iat
                    .as_ref()
                    .map(|u| format!("{}/{{id}}", u.as_str().trim_end_matches('/'))),
                iat,
                mint_style: MintStyle::Keycloak,
                client_uri: registration
                    .as_ref()
                    .map(|r| format!("{}/{{client_id}}", r.as_str().trim_end_matches('/'))),
                registration,
                token: x
                    .token
                    .or_else(|| url(format!("{issuer}/protocol/openid-connect/token"))),
                // Keycloak re-issues a RAT by the client's internal id: `keycloak` looks it up.
                rat: x.rat,
                keycloak: AdminApi::new(base, realm),
                issuer: x
                    .issuer
                    .or_else(|| url(issuer))
                    .unwrap_or_else(|| base.clone()),
            }
        }
        Profile::Rfc7591 => Endpoints {
            issuer: x.issuer.unwrap_or_else(|| base.clone()),
            iat: x.iat,
            mint_style: MintStyle::EmpowerNow,
            iat_revoke: None,
            registration: x.registration,
            token: x.token,
            rat: x.rat,
            client_uri: None,
            keycloak: None,
        },
    }
}

/// Keycloak's admin API for one realm: `{base}/admin/realms/{realm}`.
#[derive(Debug, Clone)]
pub struct AdminApi {
    pub realm: Url,
    pub serverinfo: Url,
}

impl AdminApi {
    pub fn new(base: &Url, realm: &str) -> Option<AdminApi> {
        let base = base.as_str().trim_end_matches('/');
        Some(AdminApi {
            realm: Url::parse(&format!("{base}/admin/realms/{realm}")).ok()?,
            serverinfo: Url::parse(&format!("{base}/admin/serverinfo")).ok()?,
        })
    }

    /// `GET …/clients?clientId=`: the lookup of a client's internal id.
    pub fn lookup(&self, client_id: &str) -> Url {
        let mut u = self.clients();
        u.query_pairs_mut().append_pair("clientId", client_id);
        u
    }

    fn clients(&self) -> Url {
        let mut u = self.realm.clone();
        if let Ok(mut p) = u.path_segments_mut() {
            p.push("clients");
        }
        u
    }

    /// `POST …/clients/{id}/registration-access-token` (`ClientResource`).
    pub fn regenerate(&self, internal_id: &str) -> Url {
        let mut u = self.clients();
        if let Ok(mut p) = u.path_segments_mut() {
            p.push(internal_id).push("registration-access-token");
        }
        u
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> Explicit {
        Explicit {
            issuer: None,
            iat: None,
            registration: None,
            token: None,
            rat: None,
        }
    }

    #[test]
    fn keycloak_defaults() {
        let base = Url::parse("http://kc:8080").unwrap();
        let e = endpoints(Profile::Keycloak, &base, Some("demo"), none());
        assert_eq!(
            e.iat.unwrap().as_str(),
            "http://kc:8080/admin/realms/demo/clients-initial-access"
        );
        assert_eq!(
            e.registration.unwrap().as_str(),
            "http://kc:8080/realms/demo/clients-registrations/openid-connect"
        );
        assert_eq!(
            e.iat_revoke.unwrap(),
            "http://kc:8080/admin/realms/demo/clients-initial-access/{id}"
        );
        assert_eq!(
            e.token.unwrap().as_str(),
            "http://kc:8080/realms/demo/protocol/openid-connect/token"
        );
        assert!(e.rat.is_none());
    }

    #[test]
    fn explicit_endpoints_win() {
        let base = Url::parse("https://idp.example").unwrap();
        let reg = Url::parse("https://other.example/reg").unwrap();
        let e = endpoints(
            Profile::EmpowerNow,
            &base,
            None,
            Explicit {
                registration: Some(reg.clone()),
                ..none()
            },
        );
        assert_eq!(e.registration, Some(reg));
        assert_eq!(
            e.token.unwrap().as_str(),
            "https://idp.example/api/oidc/token"
        );
    }
}
