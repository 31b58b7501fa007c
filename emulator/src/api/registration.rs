//! RFC 7591 registration with an IAT, and RFC 7592 read, update (PUT, EmpowerNow's PATCH) and
//! delete with the registration access token.

use super::{Cx, json_body, keycloak, method_not_allowed, oauth_error};
use crate::http::{Request, Response};
use crate::state::{Client, State, now_epoch};
use crate::validate::{self, Policy};
use serde_json::{Map, Value, json};
use std::time::Instant;

/// Finds the IAT a request presents and checks it is usable, without consuming it. `None`:
/// no token at all, accepted because registration is open.
/// A refused token: 401 `invalid_token`, or with the `token_error_400` quirk the
/// `400 access_denied` some servers answer instead.
fn token_error(state: &State, description: &str) -> Response {
    if state.config.quirks.token_error_400 {
        oauth_error(400, "access_denied", description)
    } else {
        oauth_error(401, "invalid_token", description)
    }
}

fn usable_iat(state: &State, req: &Request, cx: &Cx) -> Result<Option<usize>, Response> {
    let kc = cx.layout.keycloak();
    let msg = |ours: &'static str, keycloak: &'static str| if kc { keycloak } else { ours };
    let Some(token) = req.bearer() else {
        if kc {
            // Anonymous registration: TrustedHostClientRegistrationPolicy decides.
            return keycloak::trusted_hosts(state).map(|()| None);
        }
        if state.config.open_registration {
            return Ok(None);
        }
        return Err(token_error(state, "initial access token required"));
    };
    // ClientRegistrationAuth#requireCreate: an admin bearer token with manage-clients may
    // register too.
    if kc && super::admin::admin_authorized(state, req).is_ok() {
        return Ok(None);
    }
    // An ordinary access token of the registration scope (a glewlwyd-style server).
    if state.config.quirks.registration_scope.is_some() {
        let now = Instant::now();
        if state
            .registration_tokens
            .iter()
            .any(|(t, exp)| t == token && *exp > now)
        {
            return Ok(None);
        }
    }
    let idx = state
        .iats
        .iter()
        .position(|i| i.token == token)
        .ok_or_else(|| {
            token_error(
                state,
                msg(
                    "initial access token not found",
                    "Initial Access Token not found",
                ),
            )
        })?;
    let iat = &state.iats[idx];
    if Instant::now() >= iat.expires_at {
        // An expired IAT is a JWT that no longer verifies (ClientRegistrationTokenUtils).
        return Err(token_error(
            state,
            msg("initial access token expired", "Failed decode token"),
        ));
    }
    if iat.remaining == 0 {
        return Err(token_error(
            state,
            msg(
                "initial access token has no remaining uses",
                "No remaining count on initial access token",
            ),
        ));
    }
    Ok(Some(idx))
}

fn policy(state: &State) -> (Vec<String>, String, Vec<String>) {
    (
        state.config.allowed_scopes.clone(),
        state.config.profile_field.clone(),
        state.config.drop_scopes.clone(),
    )
}

fn validate_body(state: &State, body: &Value) -> Result<Map<String, Value>, Response> {
    if state.config.quirks.crash_on_bad_types
        && body
            .as_object()
            .is_some_and(|o| o.iter().any(|(k, v)| k.ends_with("_uri") && !v.is_string()))
    {
        // A server that does not check a member's type before using it.
        return Err(Response {
            status: 500,
            headers: vec![("Content-Type".into(), "text/html".into())],
            body: b"<html><body><h1>500 Internal Server Error</h1></body></html>".to_vec(),
        });
    }
    let (scopes, field, drop) = policy(state);
    validate::validate(
        body,
        &Policy {
            allowed_scopes: &scopes,
            profile_field: &field,
            drop_scopes: &drop,
        },
    )
    .map_err(|e| oauth_error(400, e.error, &e.description))
}

pub(crate) fn register(state: &mut State, req: &Request, cx: &Cx) -> Response {
    let base = &cx.base;
    let outcome = (|| {
        let idx = usable_iat(state, req, cx)?;
        let body = json_body(req, "invalid_client_metadata")?;
        let kc = cx.layout.keycloak();
        if kc && body.get("client_id").is_some() {
            // Keycloak's OIDC provider refuses a caller-chosen id.
            return Err(oauth_error(
                400,
                "invalid_client_metadata",
                "Client Identifier included",
            ));
        }
        if kc {
            keycloak::check_jwks_use(&body)?;
            keycloak::check_scopes(state, body.get("scope"))?;
        }
        let kc_scope = if kc { body.get("scope").cloned() } else { None };
        let mut metadata = if kc {
            validate_body(state, &keycloak::as_validated(&body))?
        } else {
            validate_body(state, &body)?
        };
        let q = &state.config.quirks;
        if q.forget_scope {
            metadata.remove("scope");
        }
        if !q.add_grant_types.is_empty() {
            let mut grants: Vec<Value> = metadata
                .get("grant_types")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_else(|| vec![json!("authorization_code")]);
            for g in &q.add_grant_types {
                if !grants.iter().any(|x| x == g) {
                    grants.push(json!(g));
                }
            }
            metadata.insert("grant_types".into(), Value::Array(grants));
        }
        let requested = metadata.remove("client_id");
        let requested = if state.config.quirks.ignore_client_id {
            None
        } else {
            requested
        };
        let client_id = match requested {
            Some(Value::String(id)) => {
                if state.clients.contains_key(&id) {
                    return Err(oauth_error(
                        400,
                        "invalid_client_metadata",
                        &format!("client_id {id:?} is already registered"),
                    ));
                }
                id
            }
            _ => state.next_id("client"),
        };
        if let Some(idx) = idx {
            state.iats[idx].remaining -= 1;
        }
        let needs_secret = metadata
            .get("token_endpoint_auth_method")
            .and_then(Value::as_str)
            .is_some_and(|m| m.starts_with("client_secret"));
        let mut client = Client {
            secret_expires_at: if needs_secret {
                state.secret_expiry()
            } else {
                0
            },
            client_secret: needs_secret.then(|| state.token("secret")),
            rat: state.token("rat"),
            client_id: client_id.clone(),
            issued_at: now_epoch(),
            metadata,
            internal_id: state.next_id("uuid"),
            admin_created: false,
            default_scopes: Vec::new(),
            optional_scopes: Vec::new(),
        };
        if kc {
            keycloak::assign_scopes(state, &mut client, kc_scope.as_ref());
        }
        let out = representation(state, &client, cx);
        state.clients.insert(client_id, client);
        state.stats.clients_registered += 1;
        state.refresh_live();
        Ok(Response::json(201, &out).with_header(
            "Location",
            &format!(
                "{base}{}{}",
                cx.layout.client_prefix,
                out["client_id"].as_str().unwrap_or("")
            ),
        ))
    })();
    outcome.unwrap_or_else(|resp| {
        state.stats.registrations_rejected += 1;
        resp
    })
}

/// The RFC 7591 §3.2.1 / RFC 7592 §3 client information response.
fn representation(state: &State, client: &Client, cx: &Cx) -> Value {
    let mut out = client.metadata.clone();
    if state.config.quirks.auth_method_as_array
        && let Some(m) = out.get("token_endpoint_auth_method").cloned()
    {
        out.insert("token_endpoint_auth_method".into(), json!([m]));
    }
    if cx.layout.keycloak() {
        keycloak::normalise(client, &mut out);
    }
    out.insert("client_id".into(), json!(client.client_id));
    out.insert("client_id_issued_at".into(), json!(client.issued_at));
    if let Some(s) = &client.client_secret {
        out.insert("client_secret".into(), json!(s));
        out.insert(
            "client_secret_expires_at".into(),
            json!(client.secret_expires_at),
        );
    }
    out.insert("registration_access_token".into(), json!(client.rat));
    out.insert(
        "registration_client_uri".into(),
        json!(format!(
            "{}{}{}",
            cx.base, cx.layout.client_prefix, client.client_id
        )),
    );
    Value::Object(out)
}

pub(crate) fn manage(state: &mut State, req: &Request, id: &str, cx: &Cx) -> Response {
    let kc = cx.layout.keycloak();
    let refused = if !kc {
        "registration access token is invalid"
    } else if req.method == "GET" {
        keycloak::VIEW_REFUSED
    } else {
        keycloak::UPDATE_REFUSED
    };
    let Some(token) = req.bearer().map(str::to_string) else {
        return token_error(state, refused);
    };
    // Keycloak accepts an admin bearer token with manage-clients here too.
    let as_admin = kc && super::admin::admin_authorized(state, req).is_ok();
    let Some(client) = state.clients.get(id) else {
        // RFC 7592 §2.1: an unknown client is answered like a bad token.
        return if state.config.missing_client_status == 404 {
            Response::json(
                404,
                &json!({"error": "invalid_request", "error_description": "client not found"}),
            )
        } else {
            token_error(state, "client not found or token revoked")
        };
    };
    if client.rat != token && !as_admin {
        return token_error(state, refused);
    }
    match req.method.as_str() {
        "GET" => {
            state.stats.clients_read += 1;
            // Keycloak stopped rotating the token on reads in 2017 (3.x); it rotates on updates.
            if state.config.rotate_rat_on_get {
                state.rotate_rat(id);
            }
            let client = &state.clients[id];
            Response::json(200, &representation(state, client, cx))
        }
        "PATCH" | "PUT" if state.config.quirks.no_updates => method_not_allowed(),
        "PATCH" if state.config.quirks.patch_status.is_some() => {
            let status = state.config.quirks.patch_status.unwrap_or(405);
            Response::json(status, &json!({"detail": "Method Not Allowed"}))
        }
        "PATCH" if state.config.quirks.patch_noop => Response::empty(200),
        "PATCH" if cx.layout.patch_allowed => update(state, req, id, cx, false),
        "PUT" => update(state, req, id, cx, true),
        "DELETE" => {
            state.remove_client(id);
            state.stats.clients_deleted += 1;
            Response::empty(204)
        }
        _ => method_not_allowed(),
    }
}

/// PUT is RFC 7592 §2.2 full replacement; PATCH is EmpowerNow's partial update
/// (`jwks`, `redirect_uris`, ...; `null` removes a field; never `client_secret`).
fn update(state: &mut State, req: &Request, id: &str, cx: &Cx, put: bool) -> Response {
    state.last_update = Some((
        req.method.clone(),
        serde_json::from_slice(&req.body).unwrap_or(Value::Null),
    ));
    let body = match json_body(req, "invalid_client_metadata") {
        Ok(b) => b,
        Err(r) => return r,
    };
    let kc = cx.layout.keycloak();
    if kc {
        if keycloak::update_breaks(state, &state.clients[id], &body) {
            return Response::json(500, &json!({"error": "unknown_error"}));
        }
        if let Err(r) = keycloak::check_jwks_use(&body)
            .and_then(|()| keycloak::check_scopes(state, body.get("scope")))
        {
            return r;
        }
    }
    let mut obj = body.as_object().cloned().unwrap_or_default();
    let client = state.clients[id].clone();
    let candidate = if put {
        for f in [
            "registration_access_token",
            "registration_client_uri",
            "client_secret_expires_at",
            "client_id_issued_at",
        ] {
            if obj.contains_key(f) {
                return oauth_error(
                    400,
                    "invalid_request",
                    &format!("{f} must not be sent in an update (RFC 7592 §2.2)"),
                );
            }
        }
        match obj.remove("client_id") {
            Some(Value::String(c)) if c == id => {}
            _ => {
                return oauth_error(
                    400,
                    "invalid_request",
                    "client_id must be present and match the client being updated",
                );
            }
        }
        if let Some(s) = obj.remove("client_secret")
            && client.client_secret.as_deref() != s.as_str()
        {
            return oauth_error(400, "invalid_request", "client_secret does not match");
        }
        obj.retain(|_, v| !v.is_null());
        Value::Object(obj)
    } else {
        for f in ["client_id", "client_secret"] {
            if obj.contains_key(f) {
                return oauth_error(
                    400,
                    "invalid_client_metadata",
                    &format!("{f} cannot be changed with PATCH"),
                );
            }
        }
        let mut merged = client.metadata.clone();
        for (k, v) in obj {
            if v.is_null() {
                merged.remove(&k);
            } else {
                merged.insert(k, v);
            }
        }
        Value::Object(merged)
    };
    let kc_scope = if kc {
        candidate.get("scope").cloned()
    } else {
        None
    };
    let checked = if kc {
        validate_body(state, &keycloak::as_validated(&candidate))
    } else {
        validate_body(state, &candidate)
    };
    let metadata = match checked {
        Ok(m) => m,
        Err(r) => return r,
    };
    let needs_secret = metadata
        .get("token_endpoint_auth_method")
        .and_then(Value::as_str)
        .is_some_and(|m| m.starts_with("client_secret"));
    let new_secret = (needs_secret
        && (client.client_secret.is_none() || state.config.quirks.new_secret_on_update))
        .then(|| state.token("secret"));
    let mut updated = state.clients[id].clone();
    updated.metadata = metadata;
    if new_secret.is_some() {
        updated.client_secret = new_secret;
        updated.secret_expires_at = state.secret_expiry();
    }
    if kc {
        keycloak::assign_scopes(state, &mut updated, kc_scope.as_ref());
    }
    state.clients.insert(id.to_string(), updated);
    state.stats.clients_updated += 1;
    if state.config.rotate_rat_on_update || kc {
        state.rotate_rat(id);
    }
    let mut out = representation(state, &state.clients[id], cx);
    if kc && keycloak::doubled_uri(state) {
        // Keycloak ≤ 23 appends the id once more to the URI it answers an update with.
        let uri = out["registration_client_uri"]
            .as_str()
            .unwrap_or("")
            .to_string();
        out["registration_client_uri"] = json!(format!("{uri}/{id}"));
    }
    Response::json(200, &out)
}
