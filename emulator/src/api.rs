//! The emulated EmpowerNow endpoints (see `shared/docs/empowernow-contract.md` §2) plus the
//! `/_emulator/*` control surface. Every handler runs under the state lock and is synchronous,
//! so each request sees and leaves a consistent state.

use crate::faults::Fault;
use crate::http::{Request, Response};
use crate::state::{Client, State, now_epoch};
use crate::validate::{self, Policy};
use serde_json::{Map, Value, json};
use std::time::{Duration, Instant};

use crate::layout::Layout;

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

fn not_found() -> Response {
    // FastAPI's shape, as the real IdP answers unknown routes.
    Response::json(404, &json!({"detail": "Not Found"}))
}

fn method_not_allowed() -> Response {
    Response::json(405, &json!({"detail": "Method Not Allowed"}))
}

/// Parses a JSON object body, insisting on the JSON content type.
fn json_body(req: &Request, error: &str) -> Result<Value, Response> {
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
        return control(state, req, rest);
    }
    if let Some(mint) = &l.mint {
        if path == mint {
            return if m == "POST" {
                if l.keycloak() {
                    mint_keycloak(state, req)
                } else {
                    mint_iat(state, req)
                }
            } else if m == "GET" && l.keycloak() {
                list_keycloak_iats(state, req)
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
                revoke_keycloak_iat(state, req, id)
            } else {
                method_not_allowed()
            };
        }
    }
    if l.register.iter().any(|r| r == path) {
        return if m == "POST" {
            register(state, req, &cx)
        } else {
            method_not_allowed()
        };
    }
    if let Some(id) = path.strip_prefix(l.client_prefix.as_str())
        && !id.is_empty()
        && !id.contains('/')
    {
        return manage(state, req, id, &cx);
    }
    if let Some((prefix, suffix)) = &l.rat_reissue
        && let Some(id) = path
            .strip_prefix(prefix.as_str())
            .and_then(|r| r.strip_suffix(suffix.as_str()))
    {
        return if m == "POST" {
            reissue_rat(state, req, id)
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
            Response::json(200, &discovery(state, &cx))
        } else {
            method_not_allowed()
        };
    }
    if path == l.token {
        return if m == "POST" {
            token(state, req, &cx)
        } else {
            method_not_allowed()
        };
    }
    match (m, path) {
        ("GET", "/health") => Response::json(200, &json!({"status": "ok"})),
        _ => not_found(),
    }
}

fn discovery(state: &State, cx: &Cx) -> Value {
    let base = &cx.base;
    let l = &cx.layout;
    let issuer = format!("{base}{}", l.issuer);
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{base}{}", l.token),
        "jwks_uri": format!("{issuer}/jwks"),
        "registration_endpoint": format!("{base}{}", l.register.last().map(String::as_str).unwrap_or("")),
        "scopes_supported": state.config.allowed_scopes,
        "response_types_supported": validate::RESPONSE_TYPES,
        "grant_types_supported": validate::GRANT_TYPES,
        "token_endpoint_auth_methods_supported": validate::AUTH_METHODS,
    })
}

fn admin_authorized(state: &State, req: &Request) -> Result<(), Response> {
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

fn mint_iat(state: &mut State, req: &Request) -> Response {
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

/// Finds the IAT a request presents and checks it is usable, without consuming it. `None`:
/// no token at all, accepted because registration is open.
fn usable_iat(state: &State, req: &Request, cx: &Cx) -> Result<Option<usize>, Response> {
    let kc = cx.layout.keycloak();
    let msg = |ours: &'static str, keycloak: &'static str| if kc { keycloak } else { ours };
    let Some(token) = req.bearer() else {
        if state.config.open_registration {
            return Ok(None);
        }
        return Err(oauth_error(
            401,
            "invalid_token",
            msg("initial access token required", "No access token"),
        ));
    };
    let idx = state
        .iats
        .iter()
        .position(|i| i.token == token)
        .ok_or_else(|| {
            oauth_error(
                401,
                "invalid_token",
                msg(
                    "initial access token not found",
                    "Initial Access Token not found",
                ),
            )
        })?;
    let iat = &state.iats[idx];
    if Instant::now() >= iat.expires_at {
        return Err(oauth_error(
            401,
            "invalid_token",
            msg(
                "initial access token expired",
                "Expired initial access token",
            ),
        ));
    }
    if iat.remaining == 0 {
        return Err(oauth_error(
            401,
            "invalid_token",
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

fn register(state: &mut State, req: &Request, cx: &Cx) -> Response {
    let base = &cx.base;
    let outcome = (|| {
        let idx = usable_iat(state, req, cx)?;
        let body = json_body(req, "invalid_client_metadata")?;
        if cx.layout.keycloak() && body.get("client_id").is_some() {
            // Keycloak's OIDC provider refuses a caller-chosen id.
            return Err(oauth_error(
                400,
                "invalid_client_metadata",
                "Client Identifier included",
            ));
        }
        let mut metadata = validate_body(state, &body)?;
        let client_id = match metadata.remove("client_id") {
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
        let client = Client {
            client_secret: needs_secret.then(|| state.token("secret")),
            rat: state.token("rat"),
            client_id: client_id.clone(),
            issued_at: now_epoch(),
            metadata,
        };
        let out = representation(&client, cx);
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
fn representation(client: &Client, cx: &Cx) -> Value {
    let mut out = client.metadata.clone();
    out.insert("client_id".into(), json!(client.client_id));
    out.insert("client_id_issued_at".into(), json!(client.issued_at));
    if let Some(s) = &client.client_secret {
        out.insert("client_secret".into(), json!(s));
        out.insert("client_secret_expires_at".into(), json!(0));
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

fn manage(state: &mut State, req: &Request, id: &str, cx: &Cx) -> Response {
    let Some(token) = req.bearer().map(str::to_string) else {
        return oauth_error(401, "invalid_token", "registration access token required");
    };
    let Some(client) = state.clients.get(id) else {
        // RFC 7592 §2.1: an unknown client is answered like a bad token.
        return if state.config.missing_client_status == 404 {
            Response::json(
                404,
                &json!({"error": "invalid_request", "error_description": "client not found"}),
            )
        } else {
            oauth_error(401, "invalid_token", "client not found or token revoked")
        };
    };
    if client.rat != token {
        return oauth_error(401, "invalid_token", "registration access token is invalid");
    }
    match req.method.as_str() {
        "GET" => {
            state.stats.clients_read += 1;
            // Keycloak rotates the registration access token on every use.
            if state.config.rotate_rat_on_get || cx.layout.keycloak() {
                rotate_rat(state, id);
            }
            let client = &state.clients[id];
            Response::json(200, &representation(client, cx))
        }
        "PATCH" if cx.layout.patch_allowed => update(state, req, id, cx, false),
        "PUT" => update(state, req, id, cx, true),
        "DELETE" => {
            state.clients.remove(id);
            state.stats.clients_deleted += 1;
            state.refresh_live();
            Response::empty(204)
        }
        _ => method_not_allowed(),
    }
}

fn rotate_rat(state: &mut State, id: &str) {
    let rat = state.token("rat");
    if let Some(c) = state.clients.get_mut(id) {
        c.rat = rat;
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
    let metadata = match validate_body(state, &candidate) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let needs_secret = metadata
        .get("token_endpoint_auth_method")
        .and_then(Value::as_str)
        .is_some_and(|m| m.starts_with("client_secret"));
    let new_secret =
        (needs_secret && client.client_secret.is_none()).then(|| state.token("secret"));
    if let Some(c) = state.clients.get_mut(id) {
        c.metadata = metadata;
        if new_secret.is_some() {
            c.client_secret = new_secret;
        }
    }
    state.stats.clients_updated += 1;
    if state.config.rotate_rat_on_update || cx.layout.keycloak() {
        rotate_rat(state, id);
    }
    Response::json(200, &representation(&state.clients[id], cx))
}

fn reissue_rat(state: &mut State, req: &Request, id: &str) -> Response {
    if let Err(r) = admin_authorized(state, req) {
        return r;
    }
    if !state.clients.contains_key(id) {
        return Response::json(
            404,
            &json!({"error": "invalid_request", "error_description": "client not found"}),
        );
    }
    rotate_rat(state, id);
    state.stats.rats_reissued += 1;
    Response::json(
        201,
        &json!({"client_id": id, "registration_access_token": state.clients[id].rat}),
    )
}

fn control(state: &mut State, req: &Request, rest: &str) -> Response {
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
            state.admin_token = state.token("revoked-admin");
            Response::empty(204)
        }
        ("POST", "iats/expire") => {
            let now = Instant::now();
            for i in &mut state.iats {
                i.expires_at = now;
            }
            Response::empty(204)
        }
        ("DELETE", r) if r.starts_with("clients/") => {
            let id = &r["clients/".len()..];
            let existed = state.clients.remove(id).is_some();
            state.refresh_live();
            Response::empty(if existed { 204 } else { 404 })
        }
        _ => not_found(),
    }
}

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
fn token(state: &mut State, req: &Request, cx: &Cx) -> Response {
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
        state.token_requests.push(crate::state::TokenRequest {
            auth_method: method.to_string(),
            client_id: client_id.clone(),
            scope: get("scope"),
            resource: get("resource"),
        });
        let ttl = state.config.access_token_ttl;
        let token = state.token("at");
        if state
            .config
            .admin_clients
            .iter()
            .any(|(i, _)| *i == client_id)
        {
            state
                .admin_access_tokens
                .push((token.clone(), Instant::now() + ttl));
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

/// Keycloak's `POST /admin/realms/{realm}/clients-initial-access` with
/// `{"expiration": seconds (0 = never), "count": n}`; 201 with `id`, `token`, `timestamp`,
/// `expiration`, `count`, `remainingCount`.
fn mint_keycloak(state: &mut State, req: &Request) -> Response {
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

fn list_keycloak_iats(state: &State, req: &Request) -> Response {
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

fn revoke_keycloak_iat(state: &mut State, req: &Request, id: &str) -> Response {
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
