//! The emulated endpoints, one module per surface: `admin` (IAT minting and RAT re-issue, as
//! EmpowerNow and Keycloak shape them), `registration` (RFC 7591/7592), `token` (the token
//! endpoint), `control` (the `/_emulator/*` surface and discovery). Every handler runs under
//! the state lock and is synchronous, so each request sees and leaves a consistent state.

mod admin;
mod control;
pub mod keycloak;
mod registration;
mod token;

use crate::http::{Request, Response};
use crate::layout::Layout;
use crate::state::State;
use serde_json::{Value, json};

/// What every handler needs to know about the request's IdP: its public base and layout.
pub struct Cx {
    pub base: String,
    pub layout: Layout,
}

pub fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    let resp = Response::json(
        status,
        &json!({"error": error, "error_description": description}),
    );
    if status == 401 {
        resp.with_header(
            "WWW-Authenticate",
            &format!("Bearer error=\"{error}\", error_description=\"{description}\""),
        )
    } else {
        resp
    }
}

pub(crate) fn not_found() -> Response {
    // FastAPI's shape, as the real IdP answers unknown routes.
    Response::json(404, &json!({"detail": "Not Found"}))
}

pub(crate) fn method_not_allowed() -> Response {
    Response::json(405, &json!({"detail": "Method Not Allowed"}))
}

/// Parses a JSON object body, insisting on the JSON content type.
pub(crate) fn json_body(req: &Request, error: &str) -> Result<Value, Response> {
    let ct = req.header("content-type").unwrap_or("");
    if !ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case("application/json")
    {
        return Err(oauth_error(
            415,
            "invalid_request",
            "Content-Type must be application/json",
        ));
    }
    let v: Value = serde_json::from_slice(&req.body)
        .map_err(|_| oauth_error(400, error, "request body is not valid JSON"))?;
    if !v.is_object() {
        return Err(oauth_error(
            400,
            error,
            "request body must be a JSON object",
        ));
    }
    Ok(v)
}

pub fn base_url(state: &State, req: &Request, scheme: &str) -> String {
    match &state.config.public_base {
        Some(b) => b.trim_end_matches('/').to_string(),
        None => format!("{scheme}://{}", req.header("host").unwrap_or("localhost")),
    }
}

pub fn handle(state: &mut State, req: &Request, scheme: &str) -> Response {
    let cx = Cx {
        base: base_url(state, req, scheme),
        layout: Layout::new(state.config.profile, &state.config.realm),
    };
    let l = &cx.layout;
    let path = req.path.as_str();
    let m = req.method.as_str();
    if let Some(rest) = path.strip_prefix("/_emulator/") {
        // The configured token, not the current one: revoking the admin token (a control
        // route) must not lock the control surface.
        if !state.config.open_control && req.bearer() != Some(state.config.admin_token.as_str()) {
            return oauth_error(
                401,
                "invalid_token",
                "the control routes need the emulator's admin token (or --open-control)",
            );
        }
        return control::control(state, req, rest);
    }
    if l.keycloak()
        && let Some(r) = keycloak::admin(state, req, path, &cx)
    {
        return r;
    }
    if let Some(mint) = &l.mint {
        if path == mint {
            return if m == "POST" {
                if l.keycloak() {
                    admin::mint_keycloak(state, req)
                } else {
                    admin::mint_iat(state, req)
                }
            } else if m == "GET" && l.keycloak() {
                admin::list_keycloak_iats(state, req)
            } else {
                method_not_allowed()
            };
        }
        if l.keycloak()
            && let Some(id) = path
                .strip_prefix(mint.as_str())
                .and_then(|r| r.strip_prefix('/'))
        {
            return if m == "DELETE" {
                admin::revoke_keycloak_iat(state, req, id)
            } else {
                method_not_allowed()
            };
        }
    }
    if l.register.iter().any(|r| r == path) {
        return if m == "POST" {
            registration::register(state, req, &cx)
        } else {
            method_not_allowed()
        };
    }
    if let Some(id) = path.strip_prefix(l.client_prefix.as_str())
        && !id.is_empty()
        && !id.contains('/')
    {
        return registration::manage(state, req, id, &cx);
    }
    if let Some((prefix, suffix)) = &l.rat_reissue
        && let Some(id) = path
            .strip_prefix(prefix.as_str())
            .and_then(|r| r.strip_suffix(suffix.as_str()))
    {
        return if m == "POST" {
            admin::reissue_rat(state, req, id)
        } else {
            method_not_allowed()
        };
    }
    if path.starts_with("/metrics/job/") {
        return if m == "PUT" || m == "POST" {
            state.stats.pushes += 1;
            state.pushes.push((
                path.to_string(),
                String::from_utf8_lossy(&req.body).into_owned(),
            ));
            Response::empty(200)
        } else {
            method_not_allowed()
        };
    }
    if l.discovery.iter().any(|d| d == path) {
        return if m == "GET" {
            state.stats.discovery_served += 1;
            Response::json(200, &control::discovery(state, &cx))
        } else {
            method_not_allowed()
        };
    }
    if path == l.token {
        return if m == "POST" {
            token::token(state, req, &cx)
        } else {
            method_not_allowed()
        };
    }
    match (m, path) {
        ("GET", "/health") => Response::json(200, &json!({"status": "ok"})),
        _ => not_found(),
    }
}
