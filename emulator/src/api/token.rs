//! The token endpoint: RFC 6749 §4.4 client credentials with client_secret_basic,
//! client_secret_post or private_key_jwt (RFC 7523).

use super::{Cx, oauth_error};
use crate::http::{Request, Response};
use crate::state::{State, now_epoch};
use serde_json::json;
use std::time::Instant;

fn form(req: &Request) -> Result<Vec<(String, String)>, Response> {
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

/// RFC 6749 §4.4 client credentials, with client_secret_basic, client_secret_post or
/// private_key_jwt (RFC 7523) client authentication.
pub(crate) fn token(state: &mut State, req: &Request, cx: &Cx) -> Response {
    let base = &cx.base;
    let outcome = (|| {
        let params = form(req)?;
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if get("grant_type").as_deref() != Some("client_credentials") {
            return Err(oauth_error(
                400,
                "unsupported_grant_type",
                "only client_credentials is supported",
            ));
        }
        let invalid = |d: &str| oauth_error(401, "invalid_client", d);
        let (method, client_id) = if let Some(jwt) = get("client_assertion") {
            if get("client_assertion_type").as_deref() != Some(crate::token::ASSERTION_TYPE) {
                return Err(oauth_error(
                    400,
                    "invalid_request",
                    "unsupported client_assertion_type",
                ));
            }
            let audiences = vec![
                format!("{base}{}", cx.layout.token),
                format!("{base}{}", cx.layout.issuer),
            ];
            let clients = &state.clients;
            let id = crate::token::verify_assertion(
                &jwt,
                |id| {
                    clients
                        .get(id)
                        .and_then(|c| c.metadata.get("jwks").cloned())
                },
                &audiences,
                now_epoch(),
            )
            .map_err(|e| invalid(&e))?;
            if let Some(algs) = &state.config.quirks.signing_algs {
                let alg = crate::token::header_alg(&jwt).unwrap_or_default();
                if !algs.contains(&alg) {
                    return Err(invalid(&format!(
                        "client assertions signed with {alg} are not accepted"
                    )));
                }
            }
            ("private_key_jwt", id)
        } else {
            let (method, id, secret) = match req
                .header("authorization")
                .and_then(|h| h.strip_prefix("Basic "))
            {
                Some(b64) => {
                    use base64::Engine;
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(b64.trim())
                        .map_err(|_| invalid("malformed Basic credentials"))?;
                    let text = String::from_utf8(raw)
                        .map_err(|_| invalid("malformed Basic credentials"))?;
                    let (i, s) = text
                        .split_once(':')
                        .ok_or_else(|| invalid("malformed Basic credentials"))?;
                    let dec = |x: &str| {
                        url::form_urlencoded::parse(format!("x={x}").as_bytes())
                            .next()
                            .map(|(_, v)| v.into_owned())
                            .unwrap_or_default()
                    };
                    ("client_secret_basic", dec(i), dec(s))
                }
                None => match (get("client_id"), get("client_secret")) {
                    (Some(i), Some(s)) => ("client_secret_post", i, s),
                    _ => return Err(invalid("client authentication required")),
                },
            };
            let admin = state
                .config
                .admin_clients
                .iter()
                .any(|(i, s)| *i == id && *s == secret);
            let registered = state
                .clients
                .get(&id)
                .is_some_and(|c| c.client_secret.as_deref() == Some(secret.as_str()));
            if !admin && !registered {
                return Err(invalid("unknown client or wrong secret"));
            }
            (method, id)
        };
        let admin_client = state
            .config
            .admin_clients
            .iter()
            .any(|(i, _)| *i == client_id);
        if state.config.quirks.refuse_client_auth && !admin_client {
            return Err(invalid("client authentication refused"));
        }
        state.token_requests.push(crate::state::TokenRequest {
            auth_method: method.to_string(),
            client_id: client_id.clone(),
            scope: get("scope"),
            resource: get("resource"),
        });
        let ttl = state.config.access_token_ttl;
        let token = state.token("at");
        if admin_client {
            let scope = get("scope").unwrap_or_default();
            let registration = state
                .config
                .quirks
                .registration_scope
                .as_ref()
                .is_some_and(|r| scope.split_whitespace().any(|s| s == r));
            if registration {
                state
                    .registration_tokens
                    .push((token.clone(), Instant::now() + ttl));
            } else {
                state
                    .admin_access_tokens
                    .push((token.clone(), Instant::now() + ttl));
            }
        }
        state.stats.tokens_issued += 1;
        Ok(Response::json(
            200,
            &json!({"access_token": token, "token_type": "Bearer", "expires_in": ttl.as_secs()}),
        ))
    })();
    outcome.unwrap_or_else(|resp| {
        state.stats.token_requests_rejected += 1;
        resp
    })
}
