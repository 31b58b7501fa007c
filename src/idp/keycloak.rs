//! What is Keycloak's own: its versions and what changes with them, what `scope` means to
//! it, its admin API for a client's registration access token, and its version endpoint.
//! Each rule names the Keycloak source it comes from (keycloak/keycloak, `services/…`);
//! docs/interop.md has the table.

use super::answer::describe;
use super::http::Reply;
use super::profile::AdminApi;
use super::retry::Attempt;
use super::{Call, Idp, admin::Admin};
use crate::error::{Error, Result};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::Value;

/// A Keycloak release, major and minor (`DCR_KEYCLOAK_VERSION`, or `/admin/serverinfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32);

impl Version {
    /// `26`, `26.8`, `26.8.1`, `24.0.5.redhat-00001`: major and minor count.
    pub fn parse(s: &str) -> Option<Version> {
        let mut it = s.trim().split(['.', '-']);
        let major = it.next()?.parse().ok()?;
        let minor = match it.next() {
            Some(m) => m.parse().ok()?,
            None => 0,
        };
        Some(Version(major, minor))
    }

    /// Since 26.8 a registration that names scopes keeps the realm's default client scopes;
    /// before, `DescriptionConverter#toInternal` replaced them with `basic` alone, so the
    /// client's tokens lost roles, web-origins and acr (keycloak#50807, keycloak#50842).
    pub fn keeps_default_scopes(self) -> bool {
        self >= Version(26, 8)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// Added to the error of an update that keeps failing with the same 500.
pub const UPDATE_500_HINT: &str = ". Keycloak 25.0 to 26.7 answers 500 to an RFC 7592 update that carries scope, of a \
     client created through its admin API (keycloak#51311): upgrade to 26.8 or later, let this tool register the \
     client, or set DCR_KEYCLOAK_VERSION so that a scope change is not sent";

/// The client scopes a stock realm attaches to every new client as defaults
/// (`RealmManager`/`DefaultClientScopes`): tokens carry them without asking.
pub const STOCK_DEFAULT_SCOPES: &[&str] =
    &["acr", "basic", "email", "profile", "roles", "web-origins"];
/// The client scopes a stock realm attaches to every new client as optional.
pub const STOCK_OPTIONAL_SCOPES: &[&str] = &[
    "address",
    "microprofile-jwt",
    "offline_access",
    "organization",
    "phone",
];

/// What `DCR_SCOPE` becomes at Keycloak. Keycloak reads a registration's `scope` as the
/// client's *optional client scopes* (`oidc/DescriptionConverter`), and its stock "Allowed
/// Client Scopes" policy refuses anything that is not a client scope of the realm with 403
/// (`policy/impl/ClientScopesClientRegistrationPolicy`): `openid` never is one, and before
/// 25.0 the default scopes were refused too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopePlan {
    /// The `scope` to register, if any.
    pub send: Option<String>,
    /// Asked for, but not client scopes to request: `openid`, and the stock default scopes,
    /// which every client of a stock realm gets without asking.
    pub implicit: Vec<String>,
    /// Asked for, but not sent: on a Keycloak that would drop the default scopes for it.
    /// The stock optional scopes come with every new client anyway; others must be assigned
    /// in the realm.
    pub withheld: Vec<String>,
}

/// The Keycloak meaning of the scopes asked for. `version` is `None` when unknown: then
/// the older behaviour is assumed, which never costs the client its default scopes.
pub fn scope_plan(asked: &str, version: Option<Version>) -> ScopePlan {
    let (mut implicit, mut wanted) = (Vec::new(), Vec::new());
    for s in asked.split_whitespace() {
        let list = if s == "openid" || STOCK_DEFAULT_SCOPES.contains(&s) {
            &mut implicit
        } else {
            &mut wanted
        };
        if !list.iter().any(|x| x == s) {
            list.push(s.to_string());
        }
    }
    if wanted.is_empty() {
        return ScopePlan {
            send: None,
            implicit,
            withheld: Vec::new(),
        };
    }
    if version.is_some_and(Version::keeps_default_scopes) {
        return ScopePlan {
            send: Some(wanted.join(" ")),
            implicit,
            withheld: Vec::new(),
        };
    }
    ScopePlan {
        send: None,
        implicit,
        withheld: wanted,
    }
}

/// Whether an answer is a Keycloak policy refusal (`ClientRegistrationAuth#forbidden`:
/// 403 `insufficient_scope`), as opposed to a refused token (401 `invalid_token`).
pub fn is_policy_refusal(r: &Reply) -> bool {
    r.status == 403
        && super::answer::json_object(r)
            .and_then(|o| o.get("error").and_then(Value::as_str).map(str::to_string))
            .is_some_and(|e| e == "insufficient_scope")
}

/// What to do about a policy refusal, by the policy Keycloak names.
pub fn policy_hint(detail: &str) -> &'static str {
    if detail.contains("Allowed Client Scopes") {
        " (Keycloak's Allowed Client Scopes policy: DCR_SCOPE may name only client scopes of the realm; `openid` is \
         none, and before Keycloak 25 neither are the default scopes)"
    } else if detail.contains("Trusted Hosts") {
        " (Keycloak's Trusted Hosts policy refuses anonymous registration from this host: mint an IAT with an admin \
         token instead of DCR_IAT=none, or add the host to the realm's Trusted Hosts policy)"
    } else if detail.contains("Max Clients") {
        " (Keycloak's Max Clients policy: the realm holds as many clients as it allows)"
    } else if detail.contains("Forbidden") {
        " (the token lacks the realm-management role manage-clients)"
    } else {
        " (a client registration policy of the realm)"
    }
}

impl Idp {
    /// The Keycloak version `GET /admin/serverinfo` reports (`systemInfo.version`). `None`
    /// when it does not say: since 2024 only admins who may view the system get it, and the
    /// version is an optimisation, never a reason to fail.
    pub async fn keycloak_version(&self, api: &AdminApi, admin: &SecretString) -> Option<Version> {
        let decide = |r: Reply| -> Attempt<Option<Version>> {
            let found = r
                .is_success()
                .then(|| super::answer::json_object(&r))
                .flatten()
                .and_then(|o| {
                    o.get("systemInfo")?
                        .get("version")?
                        .as_str()
                        .and_then(Version::parse)
                });
            if found.is_none() {
                tracing::info!(
                    "Keycloak's version is not readable at {} ({}); set DCR_KEYCLOAK_VERSION",
                    api.serverinfo,
                    describe(&r)
                );
            }
            Attempt::Done(found)
        };
        let call = Call::new(
            "Keycloak server info",
            "IDP_BASE_URL",
            Method::GET,
            &api.serverinfo,
        )
        .bearer(admin);
        match self.call(call, None, &decide).await {
            Ok(v) => v,
            Err(e) => {
                tracing::info!("Keycloak's version is not known ({e}); set DCR_KEYCLOAK_VERSION");
                None
            }
        }
    }

    /// A new registration access token for `client_id` through Keycloak's admin API: its
    /// internal id from `GET …/clients?clientId=`, then
    /// `POST …/clients/{id}/registration-access-token`, which answers
    /// `registrationAccessToken` (`ClientResource#regenerateRegistrationAccessToken`).
    /// `None` when the realm has no such client.
    pub async fn keycloak_reissue_rat(
        &self,
        api: &AdminApi,
        client_id: &str,
        admin: &SecretString,
    ) -> Result<Admin<Option<SecretString>>> {
        let lookup = api.lookup(client_id);
        let decide = |r: Reply| -> Attempt<Admin<Option<String>>> {
            match r.status {
                200..=299 => {
                    let list: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                    let Some(list) = list.as_array() else {
                        return Attempt::Fatal(Error::Rejected(format!(
                            "looking up client {client_id:?} at {lookup} answered {} but not a JSON array",
                            r.status
                        )));
                    };
                    // clientId is a search there: only an exact match counts.
                    let id = list
                        .iter()
                        .find(|c| c.get("clientId").and_then(Value::as_str) == Some(client_id))
                        .and_then(|c| c.get("id").and_then(Value::as_str))
                        .filter(|id| crate::url::fill("https://x/{id}", "{id}", id).is_some())
                        .map(str::to_string);
                    Attempt::Done(Admin::Done(id))
                }
                401 => Attempt::Done(Admin::Refused(describe(&r))),
                _ => Attempt::Fatal(Error::Rejected(format!(
                    "looking up client {client_id:?} at {lookup} failed ({}): the admin token needs realm-management \
                     view-clients or manage-clients",
                    describe(&r)
                ))),
            }
        };
        let call = Call::new("look up client", "IDP_BASE_URL", Method::GET, &lookup).bearer(admin);
        let internal = match self.call(call, None, &decide).await? {
            Admin::Done(Some(id)) => id,
            Admin::Done(None) => return Ok(Admin::Done(None)),
            Admin::Refused(why) => return Ok(Admin::Refused(why)),
        };
        // `POST …/clients/{id}/registration-access-token`: the admin re-issue every profile
        // makes, answering Keycloak's `registrationAccessToken` (read by `parse_rat`).
        self.reissue_rat(&api.regenerate(&internal), admin).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::Url;

    #[test]
    fn versions() {
        assert_eq!(Version::parse("26.8.1"), Some(Version(26, 8)));
        assert_eq!(Version::parse("24.0.5.redhat-00001"), Some(Version(24, 0)));
        assert_eq!(Version::parse("23"), Some(Version(23, 0)));
        assert_eq!(Version::parse("x"), None);
        assert!(!Version(26, 7).keeps_default_scopes());
        assert!(Version(26, 8).keeps_default_scopes());
        assert!(Version(27, 0).keeps_default_scopes());
    }

    #[test]
    fn openid_and_default_scopes_are_never_sent() {
        let p = scope_plan("openid profile email", Some(Version(26, 8)));
        assert_eq!(p.send, None);
        assert_eq!(p.implicit, ["openid", "profile", "email"]);
        let p = scope_plan(
            "openid profile offline_access offline_access",
            Some(Version(27, 0)),
        );
        assert_eq!(p.send.as_deref(), Some("offline_access"));
        assert!(p.withheld.is_empty());
    }

    #[test]
    fn before_26_8_or_unknown_scopes_are_withheld() {
        for v in [None, Some(Version(23, 0)), Some(Version(26, 7))] {
            let p = scope_plan("openid offline_access app.read", v);
            assert_eq!(p.send, None, "{v:?}");
            assert_eq!(p.withheld, ["offline_access", "app.read"]);
        }
    }

    #[test]
    fn admin_urls_are_encoded() {
        let api = AdminApi::new(&Url::parse("http://kc:8080/").unwrap(), "demo").unwrap();
        assert_eq!(
            api.lookup("a b&c").as_str(),
            "http://kc:8080/admin/realms/demo/clients?clientId=a+b%26c"
        );
        assert_eq!(
            api.regenerate("../x").as_str(),
            "http://kc:8080/admin/realms/demo/clients/..%2Fx/registration-access-token"
        );
    }
}
