//! Keycloak as its source code behaves (`--profile keycloak`, `--keycloak-version`), read from
//! keycloak/keycloak's `services/.../clientregistration/` and the admin resources. Each rule
//! names the file it comes from; docs/interop.md has the table. Version buckets: ≤ 23, 24,
//! 25.0–26.7, ≥ 26.8.

use super::{Cx, oauth_error};
use crate::http::{Request, Response};
use crate::layout::KeycloakVersion as Version;
use crate::state::{Client, State};
use serde_json::{Map, Value, json};

/// The realm's default client scopes on a stock realm (always attached, not reported as
/// `scope` by the OIDC representation).
pub const DEFAULT_SCOPES: &[&str] = &["acr", "basic", "email", "profile", "roles", "web-origins"];
/// The realm's optional client scopes on a stock realm.
pub const OPTIONAL_SCOPES: &[&str] = &[
    "address",
    "microprofile-jwt",
    "offline_access",
    "organization",
    "phone",
];

fn version(state: &State) -> Version {
    state.config.keycloak_version
}

/// `ClientRegistrationAuth#forbidden`: a policy refusal is 403 `insufficient_scope`.
fn policy_refusal(policy: &str, details: &str) -> Response {
    oauth_error(
        403,
        "insufficient_scope",
        &format!(
            "Policy '{policy}' rejected request to client-registration service. Details: {details}"
        ),
    )
}

/// `policy/impl/ClientScopesClientRegistrationPolicy` with the stock configuration
/// (`DefaultClientRegistrationPolicies`): a requested scope must be a client scope of the
/// realm; optional scopes are allowed, default scopes only since mid-2024 (25.0). `openid`
/// is not a client scope at all, so it is always refused.
pub fn check_scopes(state: &State, scope: Option<&Value>) -> Result<(), Response> {
    let Some(scope) = scope.and_then(Value::as_str) else {
        return Ok(());
    };
    for s in scope.split_whitespace() {
        let optional = OPTIONAL_SCOPES.contains(&s);
        let default = DEFAULT_SCOPES.contains(&s) && version(state) >= Version(25, 0);
        if !optional && !default {
            return Err(policy_refusal(
                "Allowed Client Scopes",
                "Not permitted to use specified clientScope",
            ));
        }
    }
    Ok(())
}

/// `oidc/DescriptionConverter#toInternal`: `scope` becomes the client's optional client
/// scopes; before 26.8 sending any `scope` also replaced the default scopes with `basic`
/// (the client's tokens lose roles, web-origins, acr).
pub fn assign_scopes(state: &State, client: &mut Client, scope: Option<&Value>) {
    match scope.and_then(Value::as_str) {
        Some(s) => {
            client.optional_scopes = s.split_whitespace().map(str::to_string).collect();
            client.default_scopes = if version(state) < Version(26, 8) {
                vec!["basic".into()]
            } else {
                DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect()
            };
        }
        // A new client without `scope` gets the realm's default and optional client scopes.
        None if client.default_scopes.is_empty() => {
            client.default_scopes = DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect();
            client.optional_scopes = OPTIONAL_SCOPES.iter().map(|s| s.to_string()).collect();
        }
        None => {}
    }
}

/// What the generic metadata checks see of a Keycloak request: `scope` is Keycloak's own
/// business ([`check_scopes`]), and `none` is a response type it accepts beside `code`
/// (`OIDCResponseType.parse`) and answers with anyway.
pub fn as_validated(body: &Value) -> Value {
    let mut b = body.clone();
    if let Some(o) = b.as_object_mut() {
        o.remove("scope");
        if let Some(Value::Array(rt)) = o.get_mut("response_types") {
            rt.retain(|t| t != "none");
        }
    }
    b
}

/// `oidc/DescriptionConverter#toExternalResponse`: how Keycloak answers a client.
pub fn normalise(client: &Client, out: &mut Map<String, Value>) {
    // The whole inline JWKS is kept (`use.jwks.string`) and answered as it was sent; every
    // key in it authenticates. Only the optional scopes are reported.
    out.remove("scope");
    if !client.optional_scopes.is_empty() {
        out.insert("scope".into(), json!(client.optional_scopes.join(" ")));
    }
    // `client_secret_post` is Keycloak's "client-secret" authenticator, reported as basic.
    if out.get("token_endpoint_auth_method") == Some(&json!("client_secret_post")) {
        out.insert(
            "token_endpoint_auth_method".into(),
            json!("client_secret_basic"),
        );
    }
    // response_types gain "none"; the code flow brings refresh tokens.
    if let Some(Value::Array(rt)) = out.get_mut("response_types")
        && !rt.contains(&json!("none"))
    {
        rt.push(json!("none"));
    }
    if let Some(Value::Array(gt)) = out.get_mut("grant_types")
        && gt.contains(&json!("authorization_code"))
        && !gt.contains(&json!("refresh_token"))
    {
        gt.push(json!("refresh_token"));
    }
    // Redirect URIs come from a set: not in the order they were sent.
    if let Some(Value::Array(r)) = out.get_mut("redirect_uris") {
        r.reverse();
    }
}

/// `policy/impl/TrustedHostClientRegistrationPolicy`: anonymous registration is refused
/// unless the request's host is trusted, and the stock policy trusts none.
pub fn trusted_hosts(state: &State) -> Result<(), Response> {
    if state.config.open_registration {
        return Ok(());
    }
    Err(policy_refusal("Trusted Hosts", "Host not trusted."))
}

/// Keycloak takes the key of an inline JWKS by `"use": "sig"`
/// (`DescriptionConverter#setPublicKey`, `JWKSUtils.getKeyForUse`): without one, a
/// private_key_jwt client is refused.
pub fn check_jwks_use(body: &Value) -> Result<(), Response> {
    let keys = body
        .get("jwks")
        .and_then(|j| j.get("keys"))
        .and_then(Value::as_array);
    let private_key_jwt = body
        .get("token_endpoint_auth_method")
        .and_then(Value::as_str)
        == Some("private_key_jwt");
    if private_key_jwt
        && keys.is_some_and(|ks| {
            !ks.iter()
                .any(|k| k.get("use").and_then(Value::as_str) == Some("sig"))
        })
    {
        return Err(oauth_error(
            400,
            "invalid_client_metadata",
            "Didn't find key of supported keyType for use sig",
        ));
    }
    Ok(())
}

/// Keycloak 25.0–26.7 (keycloak#51311, fixed in 26.8 by #51635): an RFC 7592 update that
/// carries `scope`, of a client created through the admin API, fails with a 500 (a null
/// pointer while the scopes are resolved, before the request is authenticated). Without
/// `scope` the update works.
pub fn update_breaks(state: &State, client: &Client, body: &Value) -> bool {
    let v = version(state);
    client.admin_created && v >= Version(25, 0) && v < Version(26, 8) && body.get("scope").is_some()
}

/// Keycloak ≤ 23 answers an update with the client's id appended once more to
/// `registration_client_uri`.
pub fn doubled_uri(state: &State) -> bool {
    version(state) <= Version(23, 99)
}

/// 401 texts of `ClientRegistrationAuth`.
pub const VIEW_REFUSED: &str =
    "Not authorized to view client. Not valid token or client credentials provided.";
pub const UPDATE_REFUSED: &str =
    "Not authorized to update client. Maybe missing token or bad token type.";

/// The admin REST API pieces a client needs: find a client's internal id
/// (`GET /admin/realms/{realm}/clients?clientId=`), create one
/// (`POST /admin/realms/{realm}/clients`), re-issue its registration access token
/// (`ClientResource#regenerateRegistrationAccessToken`, answering `registrationAccessToken`),
/// and the server's version (`GET /admin/serverinfo`).
pub fn admin(state: &mut State, req: &Request, path: &str, cx: &Cx) -> Option<Response> {
    let realm = &state.config.realm;
    if path == "/admin/serverinfo" && req.method == "GET" {
        return Some(match super::admin::admin_authorized(state, req) {
            // From 26.4 the version is shown only to admins who may view the system
            // (`view-system`, which a manage-clients service account of a realm lacks).
            Ok(())
                if version(state) >= Version(26, 4)
                    && !state.config.quirks.keycloak_view_system =>
            {
                Response::json(200, &json!({"systemInfo": {}}))
            }
            Ok(()) => Response::json(
                200,
                &json!({"systemInfo": {"version": format!("{}.0", version(state))}}),
            ),
            Err(r) => r,
        });
    }
    let clients = format!("/admin/realms/{realm}/clients");
    let rest = path.strip_prefix(&clients)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    if let Err(r) = super::admin::admin_authorized(state, req) {
        return Some(r);
    }
    let _ = cx;
    if rest.is_empty() && req.method == "GET" {
        let wanted = req.query_param("clientId");
        let list: Vec<Value> = state
            .clients
            .values()
            .filter(|c| wanted.as_deref().is_none_or(|w| w == c.client_id))
            .map(|c| json!({"id": c.internal_id, "clientId": c.client_id}))
            .collect();
        return Some(Response::json(200, &Value::Array(list)));
    }
    if rest.is_empty() && req.method == "POST" {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let Some(id) = body.get("clientId").and_then(Value::as_str) else {
            return Some(oauth_error(400, "invalid_request", "clientId required"));
        };
        if state.clients.contains_key(id) {
            return Some(Response::json(
                409,
                &json!({"errorMessage": format!("Client {id} already exists")}),
            ));
        }
        let internal = state.next_id("uuid");
        let mut client = Client {
            client_id: id.to_string(),
            client_secret: Some(state.token("secret")),
            issued_at: crate::state::now_epoch(),
            rat: String::new(),
            metadata: Map::new(),
            internal_id: internal.clone(),
            admin_created: true,
            default_scopes: Vec::new(),
            optional_scopes: Vec::new(),
            secret_expires_at: 0,
        };
        assign_scopes(state, &mut client, None);
        if let Some(r) = body.get("redirectUris") {
            client.metadata.insert("redirect_uris".into(), r.clone());
        }
        client.metadata.insert(
            "token_endpoint_auth_method".into(),
            json!("client_secret_basic"),
        );
        state.clients.insert(id.to_string(), client);
        state.refresh_live();
        return Some(
            Response::empty(201)
                .with_header("Location", &format!("{}{clients}/{internal}", cx.base)),
        );
    }
    let (uuid, action) = rest.trim_start_matches('/').split_once('/')?;
    if action != "registration-access-token" || req.method != "POST" {
        return None;
    }
    let Some(id) = state
        .clients
        .values()
        .find(|c| c.internal_id == uuid)
        .map(|c| c.client_id.clone())
    else {
        return Some(Response::json(
            404,
            &json!({"error": "Could not find client"}),
        ));
    };
    state.rotate_rat(&id);
    state.stats.rats_reissued += 1;
    let c = &state.clients[&id];
    Some(Response::json(
        200,
        &json!({"id": c.internal_id, "clientId": c.client_id, "registrationAccessToken": c.rat}),
    ))
}
