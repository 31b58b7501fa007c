//! Client metadata validation, as strict as a certified provider (node-oidc-provider, Keycloak):
//! the checks a lenient fake would skip are exactly the ones that catch client bugs.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use url::Url;

/// An RFC 7591 §3.2.2 error: `(status, error, error_description)`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataError {
    pub error: &'static str,
    pub description: String,
}

fn meta(description: impl Into<String>) -> MetadataError {
    MetadataError {
        error: "invalid_client_metadata",
        description: description.into(),
    }
}

fn redirect(description: impl Into<String>) -> MetadataError {
    MetadataError {
        error: "invalid_redirect_uri",
        description: description.into(),
    }
}

pub const AUTH_METHODS: &[&str] = &[
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
    "none",
];
pub const GRANT_TYPES: &[&str] = &[
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:token-exchange",
];
pub const RESPONSE_TYPES: &[&str] = &["code"];
/// IdP-side templates (`dcr_config.yaml` `client_profiles`) and the auth method each fixes.
pub const CLIENT_PROFILES: &[(&str, &str)] = &[
    ("code-flow-pkjwt", "private_key_jwt"),
    ("code-flow-secret", "client_secret_basic"),
];

/// Fields a client may never choose, or that only the server sets.
const SERVER_OWNED: &[&str] = &[
    "client_secret",
    "client_secret_expires_at",
    "client_id_issued_at",
    "registration_access_token",
    "registration_client_uri",
];

/// What the validator needs to know about the IdP's policy.
pub struct Policy<'a> {
    pub allowed_scopes: &'a [String],
    pub profile_field: &'a str,
    /// Scopes the IdP grants silently less of: removed from what it stores (RFC 7591 lets a
    /// server substitute values), to exercise a client's read-back checks.
    pub drop_scopes: &'a [String],
}

/// Validates a registration (or full update) request and returns the metadata the IdP stores:
/// known fields only (RFC 7591 §2: unknown fields are ignored), defaults filled in.
pub fn validate(input: &Value, policy: &Policy) -> Result<Map<String, Value>, MetadataError> {
    let obj = input
        .as_object()
        .ok_or_else(|| meta("the request body must be a JSON object"))?;
    for f in SERVER_OWNED {
        if obj.contains_key(*f) {
            return Err(meta(format!("{f} cannot be set by the client")));
        }
    }
    let mut out = Map::new();

    if let Some(v) = obj.get("client_id") {
        let id = v
            .as_str()
            .ok_or_else(|| meta("client_id must be a string"))?;
        let ok = !id.is_empty()
            && id.len() <= 128
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c));
        if !ok {
            return Err(meta(
                "client_id must be 1-128 characters of [A-Za-z0-9._:-]",
            ));
        }
        out.insert("client_id".into(), v.clone());
    }

    for f in [
        "client_name",
        "software_id",
        "software_version",
        "id_token_signed_response_alg",
        "token_endpoint_auth_signing_alg",
        "request_object_signing_alg",
    ] {
        if let Some(v) = obj.get(f) {
            let s = v
                .as_str()
                .ok_or_else(|| meta(format!("{f} must be a string")))?;
            if s.is_empty() {
                return Err(meta(format!("{f} must not be empty")));
            }
            out.insert(f.into(), v.clone());
        }
    }
    for f in ["client_uri", "logo_uri", "tos_uri", "policy_uri"] {
        if let Some(v) = obj.get(f) {
            let s = v
                .as_str()
                .ok_or_else(|| meta(format!("{f} must be a string")))?;
            Url::parse(s).map_err(|_| meta(format!("{f} must be an absolute URL")))?;
            out.insert(f.into(), v.clone());
        }
    }
    if let Some(v) = obj.get("contacts") {
        string_array(v, "contacts")?;
        out.insert("contacts".into(), v.clone());
    }
    if let Some(v) = obj.get("application_type") {
        match v.as_str() {
            Some("web") | Some("native") => {
                out.insert("application_type".into(), v.clone());
            }
            _ => return Err(meta("application_type must be web or native")),
        }
    }

    // Profile: an IdP-side template that fixes the auth method.
    let mut profile_method = None;
    if let Some(v) = obj.get(policy.profile_field) {
        let name = v
            .as_str()
            .ok_or_else(|| meta(format!("{} must be a string", policy.profile_field)))?;
        let (_, method) = CLIENT_PROFILES
            .iter()
            .find(|(p, _)| *p == name)
            .ok_or_else(|| meta(format!("unknown client profile {name:?}")))?;
        profile_method = Some(*method);
        out.insert(policy.profile_field.into(), v.clone());
    }

    let method = match obj.get("token_endpoint_auth_method") {
        Some(v) => {
            let m = v
                .as_str()
                .ok_or_else(|| meta("token_endpoint_auth_method must be a string"))?;
            if !AUTH_METHODS.contains(&m) {
                return Err(meta(format!(
                    "unsupported token_endpoint_auth_method {m:?}"
                )));
            }
            if let Some(pm) = profile_method
                && pm != m
            {
                return Err(meta(format!(
                    "token_endpoint_auth_method {m:?} conflicts with the client profile, which requires {pm:?}"
                )));
            }
            m.to_string()
        }
        None => profile_method.unwrap_or("client_secret_basic").to_string(),
    };
    out.insert(
        "token_endpoint_auth_method".into(),
        Value::String(method.clone()),
    );

    let grants = match obj.get("grant_types") {
        Some(v) => {
            let g = string_array(v, "grant_types")?;
            for x in &g {
                if !GRANT_TYPES.contains(&x.as_str()) {
                    return Err(meta(format!("unsupported grant_type {x:?}")));
                }
            }
            g
        }
        None => vec!["authorization_code".to_string()],
    };
    let responses = match obj.get("response_types") {
        Some(v) => {
            let r = string_array(v, "response_types")?;
            for x in &r {
                if !RESPONSE_TYPES.contains(&x.as_str()) {
                    return Err(meta(format!("unsupported response_type {x:?}")));
                }
            }
            r
        }
        None if grants.iter().any(|g| g == "authorization_code") => vec!["code".to_string()],
        None => Vec::new(),
    };
    // RFC 7591 §2.1: grant_types and response_types must agree.
    let has_code_grant = grants.iter().any(|g| g == "authorization_code");
    let has_code_response = responses.iter().any(|r| r == "code");
    if has_code_grant != has_code_response {
        return Err(meta(
            "grant_types authorization_code and response_types code must be used together",
        ));
    }
    if grants.iter().any(|g| g == "refresh_token") && grants.len() == 1 {
        return Err(meta("refresh_token cannot be the only grant type"));
    }
    out.insert("grant_types".into(), to_array(&grants));
    out.insert("response_types".into(), to_array(&responses));

    match obj.get("redirect_uris") {
        Some(v) => {
            let uris = string_array(v, "redirect_uris").map_err(|e| redirect(e.description))?;
            for u in &uris {
                check_redirect(u)?;
            }
            out.insert("redirect_uris".into(), v.clone());
        }
        None if has_code_response => {
            return Err(redirect("redirect_uris is required for response_type code"));
        }
        None => {}
    }
    if let Some(v) = obj.get("post_logout_redirect_uris") {
        for u in string_array(v, "post_logout_redirect_uris")? {
            check_redirect(&u)?;
        }
        out.insert("post_logout_redirect_uris".into(), v.clone());
    }

    if let Some(v) = obj.get("scope") {
        let s = v.as_str().ok_or_else(|| meta("scope must be a string"))?;
        for sc in s.split(' ') {
            if sc.is_empty() {
                return Err(meta("scope must be single-space separated"));
            }
            if !policy.allowed_scopes.iter().any(|a| a == sc) {
                return Err(MetadataError {
                    error: "invalid_scope",
                    description: format!("scope {sc:?} is not in policy.allowed_scopes"),
                });
            }
        }
        let granted: Vec<&str> = s
            .split(' ')
            .filter(|sc| !policy.drop_scopes.iter().any(|d| d == sc))
            .collect();
        out.insert("scope".into(), Value::String(granted.join(" ")));
    }

    let jwks = obj.get("jwks");
    let jwks_uri = obj.get("jwks_uri");
    if jwks.is_some() && jwks_uri.is_some() {
        return Err(meta("jwks and jwks_uri must not both be present"));
    }
    if let Some(v) = jwks {
        check_jwks(v)?;
        out.insert("jwks".into(), v.clone());
    }
    if let Some(v) = jwks_uri {
        let s = v
            .as_str()
            .ok_or_else(|| meta("jwks_uri must be a string"))?;
        let u = Url::parse(s).map_err(|_| meta("jwks_uri must be an absolute URL"))?;
        if u.scheme() != "https" {
            return Err(meta("jwks_uri must use https"));
        }
        out.insert("jwks_uri".into(), v.clone());
    }
    if method == "private_key_jwt" && jwks.is_none() && jwks_uri.is_none() {
        return Err(meta("private_key_jwt requires jwks or jwks_uri"));
    }
    Ok(out)
}

fn string_array(v: &Value, field: &str) -> Result<Vec<String>, MetadataError> {
    let arr = v
        .as_array()
        .ok_or_else(|| meta(format!("{field} must be an array of strings")))?;
    arr.iter()
        .map(|x| {
            x.as_str()
                .map(str::to_string)
                .ok_or_else(|| meta(format!("{field} must be an array of strings")))
        })
        .collect()
}

fn to_array(v: &[String]) -> Value {
    Value::Array(v.iter().cloned().map(Value::String).collect())
}

pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

fn check_redirect(raw: &str) -> Result<(), MetadataError> {
    let u = Url::parse(raw)
        .map_err(|_| redirect(format!("redirect URI {raw:?} is not an absolute URI")))?;
    if u.fragment().is_some() || raw.contains('#') {
        return Err(redirect(format!(
            "redirect URI {raw:?} must not contain a fragment"
        )));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(redirect(format!(
            "redirect URI {raw:?} must not contain userinfo"
        )));
    }
    match u.scheme() {
        "https" => Ok(()),
        "http" if u.host_str().is_some_and(is_loopback_host) => Ok(()),
        _ => Err(redirect(format!(
            "redirect URI {raw:?} must use https (http only for loopback)"
        ))),
    }
}

/// Private JWK members: any of these in a registered JWKS means a private key was published.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

fn check_jwks(v: &Value) -> Result<(), MetadataError> {
    let keys = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| meta("jwks must be an object with a keys array"))?;
    if keys.is_empty() {
        return Err(meta("jwks.keys must not be empty"));
    }
    if keys.len() > 10 {
        return Err(meta("jwks.keys holds more than 10 keys"));
    }
    let mut kids = Vec::new();
    for k in keys {
        let obj = k
            .as_object()
            .ok_or_else(|| meta("every jwks key must be an object"))?;
        for p in PRIVATE_MEMBERS {
            if obj.contains_key(*p) {
                return Err(meta(format!(
                    "jwks contains private key material (member {p:?})"
                )));
            }
        }
        if let Some(kid) = obj.get("kid") {
            let kid = kid.as_str().ok_or_else(|| meta("kid must be a string"))?;
            if kids.contains(&kid) {
                return Err(meta(format!("duplicate kid {kid:?} in jwks")));
            }
            kids.push(kid);
        }
        match obj.get("kty").and_then(Value::as_str) {
            Some("RSA") => {
                let n = b64_member(obj, "n")?;
                b64_member(obj, "e")?;
                let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
                if bits < 2048 {
                    return Err(meta(format!("RSA key of {bits} bits is below 2048")));
                }
            }
            Some("EC") => {
                if obj.get("crv").and_then(Value::as_str) != Some("P-256") {
                    return Err(meta("only EC keys on P-256 are accepted"));
                }
                for c in ["x", "y"] {
                    if b64_member(obj, c)?.len() != 32 {
                        return Err(meta(format!("EC member {c} must be 32 bytes")));
                    }
                }
            }
            _ => return Err(meta("every jwks key needs kty RSA or EC")),
        }
    }
    Ok(())
}

fn b64_member(obj: &Map<String, Value>, name: &str) -> Result<Vec<u8>, MetadataError> {
    let s = obj
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| meta(format!("jwk member {name} is missing")))?;
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| meta(format!("jwk member {name} is not base64url")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> (Vec<String>, String) {
        (
            vec!["openid".into(), "profile".into()],
            "client_profile".into(),
        )
    }

    fn check(v: Value) -> Result<Map<String, Value>, MetadataError> {
        let (scopes, field) = policy();
        validate(
            &v,
            &Policy {
                allowed_scopes: &scopes,
                profile_field: &field,
                drop_scopes: &[],
            },
        )
    }

    #[test]
    fn minimal_code_client_gets_defaults() {
        let m = check(json!({"redirect_uris": ["https://app.example/cb"]})).unwrap();
        assert_eq!(m["grant_types"], json!(["authorization_code"]));
        assert_eq!(m["response_types"], json!(["code"]));
        assert_eq!(m["token_endpoint_auth_method"], "client_secret_basic");
    }

    #[test]
    fn redirect_rules() {
        for bad in [
            "https://app.example/cb#frag",
            "https://user@app.example/cb",
            "http://app.example/cb",
            "/relative",
        ] {
            let e = check(json!({"redirect_uris": [bad]})).unwrap_err();
            assert_eq!(e.error, "invalid_redirect_uri", "{bad}");
        }
        assert!(check(json!({"redirect_uris": ["http://127.0.0.1:8080/cb"]})).is_ok());
    }

    #[test]
    fn pkjwt_needs_keys_and_never_private_parts() {
        let e = check(json!({"redirect_uris": ["https://a/cb"], "token_endpoint_auth_method": "private_key_jwt"}))
            .unwrap_err();
        assert!(e.description.contains("requires jwks"));
        let e = check(json!({"redirect_uris": ["https://a/cb"], "jwks": {"keys": [{"kty":"EC","crv":"P-256","x":"AA","y":"AA","d":"AA"}]}}))
            .unwrap_err();
        assert!(e.description.contains("private key material"));
    }

    #[test]
    fn scope_allow_list() {
        let e =
            check(json!({"redirect_uris": ["https://a/cb"], "scope": "openid admin"})).unwrap_err();
        assert_eq!(e.error, "invalid_scope");
    }

    #[test]
    fn client_may_not_choose_a_secret() {
        let e = check(json!({"client_secret": "x"})).unwrap_err();
        assert_eq!(e.error, "invalid_client_metadata");
    }
}
