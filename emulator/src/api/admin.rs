//! The admin API: IAT minting (EmpowerNow and Keycloak shapes), Keycloak's IAT list and revoke,
//! and the re-issue of a client's registration access token.

use super::{json_body, oauth_error};
use crate::http::{Request, Response};
use crate::state::{State, now_epoch};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

pub(crate) fn admin_authorized(state: &State, req: &Request) -> Result<(), Response> {
    let now = Instant::now();
    let issued = |t: &str| {
        state
            .admin_access_tokens
            .iter()
            .any(|(tok, exp)| tok == t && *exp > now)
    };
    match req.bearer() {
        Some(t) if t == state.admin_token || issued(t) => Ok(()),
        Some(_) => Err(oauth_error(
            401,
            "invalid_token",
            "admin access token is invalid or revoked",
        )),
        None => Err(oauth_error(
            401,
            "invalid_token",
            "admin access token required",
        )),
    }
}

pub(crate) fn mint_iat(state: &mut State, req: &Request) -> Response {
    let outcome = (|| {
        admin_authorized(state, req)?;
        let body = json_body(req, "invalid_request")?;
        let obj = body.as_object().cloned().unwrap_or_default();
        let uses_field = state.config.iat_max_uses_field.clone();
        for k in obj.keys() {
            if k != "label" && k != "expires_in" && *k != uses_field {
                return Err(oauth_error(
                    400,
                    "invalid_request",
                    &format!("unknown field {k:?}"),
                ));
            }
        }
        if let Some(l) = obj.get("label")
            && !l.as_str().is_some_and(|s| !s.is_empty() && s.len() <= 200)
        {
            return Err(oauth_error(
                400,
                "invalid_request",
                "label must be a string of 1-200 characters",
            ));
        }
        let expires_in = match obj.get("expires_in") {
            None => 3600,
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=86_400).contains(n))
                .ok_or_else(|| {
                    oauth_error(
                        400,
                        "invalid_request",
                        "expires_in must be an integer between 1 and 86400",
                    )
                })?,
        };
        let uses = match obj.get(&uses_field) {
            None => 1,
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| {
                    oauth_error(
                        400,
                        "invalid_request",
                        &format!("{uses_field} must be an integer between 1 and 1000"),
                    )
                })?,
        };
        let iat = state.mint_iat(Duration::from_secs(expires_in), uses);
        let mut out = json!({
            "id": iat.id,
            "token": iat.token,
            "label": obj.get("label").cloned().unwrap_or(Value::Null),
            "expires_in": expires_in,
            "expires_at": now_epoch() + expires_in,
        });
        out[uses_field.as_str()] = json!(uses);
        Ok(Response::json(201, &out))
    })();
    outcome.unwrap_or_else(|resp| {
        state.stats.iat_mints_rejected += 1;
        resp
    })
}

pub(crate) fn reissue_rat(state: &mut State, req: &Request, id: &str) -> Response {
    if let Err(r) = admin_authorized(state, req) {
        return r;
    }
    if !state.clients.contains_key(id) {
        return Response::json(
            404,
            &json!({"error": "invalid_request", "error_description": "client not found"}),
        );
    }
    state.rotate_rat(id);
    state.stats.rats_reissued += 1;
    Response::json(
        201,
        &json!({"client_id": id, "registration_access_token": state.clients[id].rat}),
    )
}

/// Keycloak's `POST /admin/realms/{realm}/clients-initial-access` with
/// `{"expiration": seconds (0 = never), "count": n}`; 201 with `id`, `token`, `timestamp`,
/// `expiration`, `count`, `remainingCount`.
pub(crate) fn mint_keycloak(state: &mut State, req: &Request) -> Response {
    let outcome = (|| {
        admin_authorized(state, req)?;
        let body = json_body(req, "invalid_request")?;
        let n = |k: &str| match body.get(k) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                oauth_error(
                    400,
                    "invalid_request",
                    &format!("{k} must be a non-negative integer"),
                )
            }),
        };
        let expiration = n("expiration")?.unwrap_or(0);
        let count = n("count")?.unwrap_or(1).max(1);
        let iat = state.mint_iat(Duration::from_secs(expiration), count);
        Ok(Response::json(
            201,
            &json!({"id": iat.id, "token": iat.token, "timestamp": now_epoch(),
                    "expiration": expiration, "count": count, "remainingCount": count}),
        ))
    })();
    outcome.unwrap_or_else(|resp| {
        state.stats.iat_mints_rejected += 1;
        resp
    })
}

pub(crate) fn list_keycloak_iats(state: &State, req: &Request) -> Response {
    if let Err(r) = admin_authorized(state, req) {
        return r;
    }
    let list: Vec<Value> = state
        .iats
        .iter()
        .map(|i| json!({"id": i.id, "remainingCount": i.remaining}))
        .collect();
    Response::json(200, &Value::Array(list))
}

pub(crate) fn revoke_keycloak_iat(state: &mut State, req: &Request, id: &str) -> Response {
    if let Err(r) = admin_authorized(state, req) {
        return r;
    }
    let before = state.iats.len();
    state.iats.retain(|i| i.id != id);
    if state.iats.len() == before {
        return Response::json(
            404,
            &json!({"error": "Could not find initial access token"}),
        );
    }
    state.stats.iats_revoked += 1;
    Response::empty(204)
}
