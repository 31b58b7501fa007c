//! The `/_emulator/*` control surface (counters, fault rules, clients, revocations) and the
//! discovery document.

use super::{Cx, not_found, oauth_error};
use crate::faults::Fault;
use crate::http::{Request, Response};
use crate::state::State;
use crate::validate;
use serde_json::{Value, json};

pub(crate) fn control(state: &mut State, req: &Request, rest: &str) -> Response {
    match (req.method.as_str(), rest) {
        ("GET", "stats") => {
            state.refresh_live();
            Response::json(200, &json!(state.stats))
        }
        ("POST", "faults") => {
            let parsed: Result<Vec<Fault>, _> = serde_json::from_slice::<Vec<Fault>>(&req.body)
                .or_else(|_| serde_json::from_slice::<Fault>(&req.body).map(|f| vec![f]));
            match parsed {
                Ok(f) => {
                    state.faults.extend(f);
                    Response::empty(204)
                }
                Err(e) => oauth_error(400, "invalid_request", &format!("bad fault rule: {e}")),
            }
        }
        ("GET", "clients") => {
            let list: Vec<Value> = state
                .clients
                .values()
                .map(|c| json!({"client_id": c.client_id, "metadata": c.metadata}))
                .collect();
            Response::json(200, &Value::Array(list))
        }
        ("POST", "admin-token/revoke") => {
            state.revoke_admin_token();
            Response::empty(204)
        }
        ("POST", "iats/expire") => {
            state.expire_iats();
            Response::empty(204)
        }
        ("DELETE", r) if r.starts_with("clients/") => {
            let existed = state.remove_client(&r["clients/".len()..]);
            Response::empty(if existed { 204 } else { 404 })
        }
        _ => not_found(),
    }
}

pub(crate) fn discovery(state: &State, cx: &Cx) -> Value {
    let base = &cx.base;
    let l = &cx.layout;
    let issuer = format!("{base}{}", l.issuer);
    let mut doc = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{base}{}", l.token),
        "jwks_uri": format!("{issuer}/jwks"),
        "registration_endpoint": format!("{base}{}", l.register.last().map(String::as_str).unwrap_or("")),
        "scopes_supported": state.config.allowed_scopes,
        "response_types_supported": validate::RESPONSE_TYPES,
        "grant_types_supported": validate::GRANT_TYPES,
        "token_endpoint_auth_methods_supported": validate::AUTH_METHODS,
    });
    if let Some(algs) = &state.config.quirks.signing_algs {
        doc["token_endpoint_auth_signing_alg_values_supported"] = json!(algs);
    }
    if let Some(methods) = &state.config.quirks.auth_methods {
        doc["token_endpoint_auth_methods_supported"] = json!(methods);
    }
    doc
}
