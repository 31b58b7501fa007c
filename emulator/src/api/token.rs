//! The token endpoint: client authentication (client_secret_basic, client_secret_post,
//! private_key_jwt per RFC 7523), then the grant (RFC 6749): client credentials issues a token
//! to a client registered for that grant; an authorization code or refresh token is never
//! valid here (the emulator has no authorization endpoint), so those grants answer
//! `invalid_grant` after authenticating the client, as RFC 6749 §4.1.3 orders.
//!
//! How a server words a refusal differs, and a client must not read meaning into one
//! server's words: the Keycloak profile answers as `TokenEndpoint#checkClient` and
//! `ClientCredentialsGrantType` do, and quirks reproduce other servers' orders and wordings.

use super::{Cx, oauth_error};
use crate::http::{Request, Response};
use crate::state::{State, now_epoch};
use serde_json::{Value, json};
use std::time::Instant;

type Params = Vec<(String, String)>;

fn form(req: &Request) -> Result<Params, Response> {
    let ct = req.header("content-type").unwrap_or("");
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return Err(oauth_error(
            400,
            "invalid_request",
            "the token endpoint takes application/x-www-form-urlencoded",
        ));
    }
    Ok(url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect())
}

fn param<'a>(params: &'a Params, k: &str) -> Option<&'a str> {
    params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// How this server refuses a client that did not authenticate.
fn auth_refused(state: &State, cx: &Cx, description: &str) -> Response {
    let q = &state.config.quirks;
    if q.auth_failure_empty_403 {
        // glewlwyd: an empty 403.
        return Response::empty(403);
    }
    if q.auth_failure_403_unauthorized_client {
        // A SATOSA-style front: every failed client authentication is 403 unauthorized_client.
        return oauth_error(403, "unauthorized_client", "client authentication failed");
    }
    if cx.layout.keycloak() {
        return oauth_error(
            401,
            "unauthorized_client",
            "Invalid client or Invalid client credentials",
        );
    }
    oauth_error(401, "invalid_client", description)
}

/// Authenticates the client; the auth method and the client_id, or the refusal.
fn authenticate(
    state: &State,
    req: &Request,
    params: &Params,
    cx: &Cx,
) -> Result<(&'static str, String), Response> {
    let refused = |d: &str| auth_refused(state, cx, d);
    if let Some(jwt) = param(params, "client_assertion") {
        if param(params, "client_assertion_type") != Some(crate::token::ASSERTION_TYPE) {
            return Err(oauth_error(
                400,
                "invalid_request",
                "unsupported client_assertion_type",
            ));
        }
        let audiences = vec![
            format!("{}{}", cx.base, cx.layout.token),
            format!("{}{}", cx.base, cx.layout.issuer),
        ];
        let clients = &state.clients;
        let id = crate::token::verify_assertion(
            jwt,
            |id| {
                clients
                    .get(id)
                    .and_then(|c| c.metadata.get("jwks").cloned())
            },
            &audiences,
            now_epoch(),
        )
        .map_err(|e| refused(&e))?;
        if let Some(algs) = &state.config.quirks.signing_algs {
            let alg = crate::token::header_alg(jwt).unwrap_or_default();
            if !algs.contains(&alg) {
                return Err(refused(&format!(
                    "client assertions signed with {alg} are not accepted"
                )));
            }
        }
        return Ok(("private_key_jwt", id));
    }
    let (method, id, secret) = match req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Basic "))
    {
        Some(b64) => {
            let (i, s) = basic(b64).ok_or_else(|| refused("malformed Basic credentials"))?;
            ("client_secret_basic", i, s)
        }
        None => match (param(params, "client_id"), param(params, "client_secret")) {
            (Some(i), Some(s)) => ("client_secret_post", i.to_string(), s.to_string()),
            _ => return Err(refused("client authentication required")),
        },
    };
    let admin = state
        .config
        .admin_clients
        .iter()
        .any(|(i, s)| *i == id && *s == secret);
    let client = state.clients.get(&id);
    let registered = client.is_some_and(|c| c.client_secret.as_deref() == Some(secret.as_str()));
    if !admin && !registered {
        return Err(refused("unknown client or wrong secret"));
    }
    if !admin && client.is_some_and(|c| c.secret_expired(now_epoch())) {
        return Err(refused("client secret expired"));
    }
    Ok((method, id))
}

/// The id and secret of RFC 6749 §2.3.1 Basic credentials (each form-encoded).
fn basic(b64: &str) -> Option<(String, String)> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (i, s) = text.split_once(':')?;
    let dec = |x: &str| {
        url::form_urlencoded::parse(format!("x={x}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((dec(i), dec(s)))
}

/// The grants a client is registered for (RFC 7591 §2: authorization_code by default).
fn registered_grants(state: &State, client_id: &str) -> Vec<String> {
    state
        .clients
        .get(client_id)
        .and_then(|c| c.metadata.get("grant_types"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_else(|| vec!["authorization_code".into()])
}

/// A grant the authenticated client may not use.
fn grant_not_allowed(state: &State, cx: &Cx, grant: &str) -> Response {
    if cx.layout.keycloak() && grant == "client_credentials" {
        return oauth_error(
            401,
            "unauthorized_client",
            "Client not enabled to retrieve service account",
        );
    }
    if state.config.quirks.grant_not_allowed_invalid_request {
        // node-oidc-provider's wording.
        return oauth_error(
            400,
            "invalid_request",
            "requested grant type is not allowed for this client",
        );
    }
    oauth_error(
        400,
        "unauthorized_client",
        &format!("the client is not registered for the {grant} grant"),
    )
}

/// The code or refresh token of a request: never valid here.
fn invalid_grant(cx: &Cx, grant: &str) -> Response {
    let description = match (cx.layout.keycloak(), grant) {
        (true, "authorization_code") => "Code not valid",
        (true, _) => "Invalid refresh token",
        (false, "authorization_code") => "authorization code is invalid or expired",
        (false, _) => "refresh token is invalid or expired",
    };
    oauth_error(400, "invalid_grant", description)
}

/// RFC 6749 §4.4 client credentials, §4.1.3 authorization code, §6 refresh token.
pub(crate) fn token(state: &mut State, req: &Request, cx: &Cx) -> Response {
    let outcome = grant(state, req, cx);
    outcome.unwrap_or_else(|resp| {
        state.stats.token_requests_rejected += 1;
        resp
    })
}

fn grant(state: &mut State, req: &Request, cx: &Cx) -> Result<Response, Response> {
    let params = form(req)?;
    let grant = param(&params, "grant_type").unwrap_or_default().to_string();
    let known = ["client_credentials", "authorization_code", "refresh_token"];
    let code_grant = grant == "authorization_code" || grant == "refresh_token";
    if code_grant && state.config.quirks.grant_checked_before_auth {
        // A server that looks at the code before it authenticates the client.
        return Err(invalid_grant(cx, &grant));
    }
    let (method, client_id) = authenticate(state, req, &params, cx)?;
    if let Some(methods) = &state.config.quirks.auth_methods
        && !methods.iter().any(|m| m == method)
    {
        return Err(auth_refused(
            state,
            cx,
            &format!("{method} is not supported"),
        ));
    }
    if !known.contains(&grant.as_str()) {
        return Err(oauth_error(
            400,
            "unsupported_grant_type",
            "only client_credentials, authorization_code and refresh_token are supported",
        ));
    }
    let admin_client = state
        .config
        .admin_clients
        .iter()
        .any(|(i, _)| *i == client_id);
    if state.config.quirks.refuse_client_auth && !admin_client {
        return Err(auth_refused(state, cx, "client authentication refused"));
    }
    if !admin_client && !registered_grants(state, &client_id).contains(&grant) {
        return Err(grant_not_allowed(state, cx, &grant));
    }
    if code_grant {
        return Err(invalid_grant(cx, &grant));
    }
    state.token_requests.push(crate::state::TokenRequest {
        auth_method: method.to_string(),
        client_id: client_id.clone(),
        scope: param(&params, "scope").map(str::to_string),
        resource: param(&params, "resource").map(str::to_string),
    });
    let ttl = state.config.access_token_ttl;
    let token = state.token("at");
    if admin_client {
        let scope = param(&params, "scope").unwrap_or_default();
        let registration = state
            .config
            .quirks
            .registration_scope
            .as_ref()
            .is_some_and(|r| scope.split_whitespace().any(|s| s == r));
        let list = if registration {
            &mut state.registration_tokens
        } else {
            &mut state.admin_access_tokens
        };
        list.push((token.clone(), Instant::now() + ttl));
    }
    state.stats.tokens_issued += 1;
    Ok(Response::json(
        200,
        &json!({"access_token": token, "token_type": "Bearer", "expires_in": ttl.as_secs()}),
    ))
}
