//! The client metadata we want registered (RFC 7591 §2): a JSON document from
//! `DCR_CLIENT_METADATA(_FILE)`, overridden field by field by the `DCR_*` variables, and checked
//! locally for what servers reject, so that a typo fails in milliseconds with the variable's
//! name instead of after a network round trip with an IdP's terse error.

use crate::error::{Error, Result};
use reqwest::Url;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub struct MetadataInputs<'a> {
    pub json: Option<&'a str>,
    pub file: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub client_name: Option<&'a str>,
    pub redirect_uris: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub grant_types: Option<&'a str>,
    pub response_types: Option<&'a str>,
    pub auth_method: Option<&'a str>,
    pub client_profile: Option<&'a str>,
    pub profile_field: &'a str,
    pub has_signing_key: bool,
}

/// Desired metadata plus, for every field, the variable it came from (for error messages).
#[derive(Debug, Clone, Default)]
pub struct DesiredMetadata {
    pub fields: Map<String, Value>,
    origin: BTreeMap<String, &'static str>,
}

impl DesiredMetadata {
    pub fn origin(&self, field: &str) -> &'static str {
        self.origin.get(field).copied().unwrap_or("client metadata")
    }

    fn set(&mut self, field: &str, value: Value, var: &'static str) {
        self.fields.insert(field.to_string(), value);
        self.origin.insert(field.to_string(), var);
    }

    pub fn auth_method(&self) -> Option<&str> {
        self.fields
            .get("token_endpoint_auth_method")
            .and_then(Value::as_str)
    }
}

/// Fields only the server sets; a client sending them is confused (or leaking a secret).
const SERVER_OWNED: &[&str] = &[
    "client_secret",
    "client_secret_expires_at",
    "client_id_issued_at",
    "registration_access_token",
    "registration_client_uri",
];

const AUTH_METHODS: &[&str] = &[
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt",
    "tls_client_auth",
    "self_signed_tls_client_auth",
    "none",
];

/// Splits a list given as "a,b c" (comma or whitespace), dropping empties and repeats.
pub fn split_list(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in s.split(|c: char| c == ',' || c.is_whitespace()) {
        if !item.is_empty() && !out.iter().any(|x| x == item) {
            out.push(item.to_string());
        }
    }
    out
}

fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().cloned().map(Value::String).collect())
}

/// A bounded read of a regular file named by `var`.
fn read_text(p: &str, var: &str) -> Result<String> {
    let bytes = crate::files::read_regular(std::path::Path::new(p), crate::files::DOCUMENT_CAP)
        .map_err(|why| Error::Config(format!("{var}: {p:?} {why}")))?
        .ok_or_else(|| Error::Config(format!("{var}: {p:?} does not exist")))?;
    String::from_utf8(bytes).map_err(|_| Error::Config(format!("{var}: {p:?} is not UTF-8")))
}

pub fn desired(i: &MetadataInputs) -> Result<DesiredMetadata> {
    let mut d = DesiredMetadata::default();
    from_document(&mut d, i)?;
    from_variables(&mut d, i)?;
    // A signing key means private_key_jwt unless the operator said otherwise.
    if i.has_signing_key && d.auth_method().is_none() {
        d.set(
            "token_endpoint_auth_method",
            Value::String("private_key_jwt".into()),
            "DCR_SIGNING_KEY",
        );
    }
    validate(&d, i.has_signing_key)?;
    Ok(d)
}

/// `DCR_CLIENT_METADATA` or `DCR_CLIENT_METADATA_FILE`, a JSON object.
fn from_document(d: &mut DesiredMetadata, i: &MetadataInputs) -> Result<()> {
    let (text, var) = match (i.json, i.file) {
        (Some(_), Some(_)) => {
            return Err(Error::Config(
                "DCR_CLIENT_METADATA and DCR_CLIENT_METADATA_FILE are both set; set only one"
                    .into(),
            ));
        }
        (Some(j), None) => (j.to_string(), "DCR_CLIENT_METADATA"),
        (None, Some(p)) => (
            read_text(p, "DCR_CLIENT_METADATA_FILE")?,
            "DCR_CLIENT_METADATA_FILE",
        ),
        (None, None) => return Ok(()),
    };
    if text.trim().is_empty() {
        return Ok(());
    }
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Error::Config(format!("{var}: not valid JSON ({e})")))?;
    let Value::Object(map) = v else {
        return Err(Error::Config(format!("{var}: must be a JSON object")));
    };
    for (k, v) in map {
        if SERVER_OWNED.contains(&k.as_str()) {
            return Err(Error::Config(format!(
                "{var}: {k} is set by the IdP and must not be sent"
            )));
        }
        d.set(&k, v, var);
    }
    Ok(())
}

/// The `DCR_*` metadata variables, each over the same member of the document.
fn from_variables(d: &mut DesiredMetadata, i: &MetadataInputs) -> Result<()> {
    let text = |v: &str| Value::String(v.trim().to_string());
    let list = |v: &str| strings(&split_list(v));
    let singles = [
        ("client_id", i.client_id, "DCR_CLIENT_ID"),
        (
            "token_endpoint_auth_method",
            i.auth_method,
            "DCR_TOKEN_ENDPOINT_AUTH_METHOD",
        ),
    ];
    for (field, v, var) in singles {
        if let Some(v) = v {
            d.set(field, text(v), var);
        }
    }
    if let Some(v) = i.client_name {
        d.set(
            "client_name",
            Value::String(v.to_string()),
            "DCR_CLIENT_NAME",
        );
    }
    // An explicitly empty DCR_REDIRECT_URIS is ignored rather than registering no URIs.
    if let Some(v) = i.redirect_uris.filter(|v| !v.trim().is_empty()) {
        d.set("redirect_uris", list(v), "DCR_REDIRECT_URIS");
    }
    if let Some(v) = i.scope {
        d.set("scope", Value::String(split_list(v).join(" ")), "DCR_SCOPE");
    }
    for (field, v, var) in [
        ("grant_types", i.grant_types, "DCR_GRANT_TYPES"),
        ("response_types", i.response_types, "DCR_RESPONSE_TYPES"),
    ] {
        if let Some(v) = v {
            d.set(field, list(v), var);
        }
    }
    if let Some(v) = i.client_profile {
        if i.profile_field.is_empty() {
            return Err(Error::Config(
                "DCR_CLIENT_PROFILE_FIELD must not be empty".into(),
            ));
        }
        d.set(i.profile_field, text(v), "DCR_CLIENT_PROFILE");
    }
    Ok(())
}

fn field_err(d: &DesiredMetadata, field: &str, msg: impl std::fmt::Display) -> Error {
    Error::Config(format!("{}: {field} {msg}", d.origin(field)))
}

fn string_list<'a>(d: &'a DesiredMetadata, field: &str) -> Result<Option<Vec<&'a str>>> {
    match d.fields.get(field) {
        None => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .ok_or_else(|| field_err(d, field, "must be an array of strings"))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(_) => Err(field_err(d, field, "must be an array of strings")),
    }
}

/// The JSON type of each metadata member RFC 7591 §2 and OIDC Registration §2 define. A
/// mistyped member (`"logo_uri": 5`) makes some servers answer 500 on every attempt; refused
/// here, it fails in milliseconds and names the field.
fn check_types(d: &DesiredMetadata) -> Result<()> {
    const LISTS: &[&str] = &[
        "redirect_uris",
        "grant_types",
        "response_types",
        "contacts",
        "request_uris",
        "default_acr_values",
        "post_logout_redirect_uris",
    ];
    for (k, v) in &d.fields {
        let ok = if crate::reconcile::STRING_MEMBERS.contains(&k.as_str()) {
            v.is_string()
        } else if LISTS.contains(&k.as_str()) {
            v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
        } else {
            match k.as_str() {
                "default_max_age" => v.as_u64().is_some(),
                "require_auth_time" => v.is_boolean(),
                "jwks" => v.is_object(),
                _ => true,
            }
        };
        if !ok {
            let want = if crate::reconcile::STRING_MEMBERS.contains(&k.as_str()) {
                "a string"
            } else if LISTS.contains(&k.as_str()) {
                "an array of strings"
            } else if k == "default_max_age" {
                "a non-negative integer"
            } else if k == "require_auth_time" {
                "a boolean"
            } else {
                "an object"
            };
            return Err(field_err(
                d,
                k,
                format!("must be {want} (RFC 7591 §2), got {v}"),
            ));
        }
    }
    Ok(())
}

/// Local checks of what any strict server rejects (RFC 7591 §2, OIDC DCR §2, RFC 6749 §3.1.2).
pub fn validate(d: &DesiredMetadata, has_signing_key: bool) -> Result<()> {
    check_types(d)?;
    check_redirects(d)?;
    string_list(d, "response_types")?;
    for f in ["client_id", "client_name", "scope", "jwks_uri"] {
        if let Some(v) = d.fields.get(f) {
            match v.as_str() {
                Some(s) if !s.trim().is_empty() => {}
                _ => return Err(field_err(d, f, "must be a non-empty string")),
            }
        }
    }
    check_keys(d, has_signing_key)
}

/// Redirect URIs: none only for a client without a redirecting grant, each one well formed.
fn check_redirects(d: &DesiredMetadata) -> Result<()> {
    let grants = string_list(d, "grant_types")?;
    let Some(uris) = string_list(d, "redirect_uris")? else {
        return Ok(());
    };
    // RFC 7591 §2: grant_types defaults to authorization_code, which needs a redirect URI;
    // a client-credentials-only client may say `"redirect_uris": []`.
    let redirecting = grants.as_ref().is_none_or(|g| {
        g.iter()
            .any(|g| *g == "authorization_code" || *g == "implicit")
    });
    if uris.is_empty() && redirecting {
        return Err(field_err(
            d,
            "redirect_uris",
            "must not be empty for the authorization_code or implicit grant",
        ));
    }
    for u in uris {
        check_redirect_uri(u).map_err(|m| {
            field_err(
                d,
                "redirect_uris",
                format!("{:?} {m}", crate::url::redacted(u)),
            )
        })?;
    }
    Ok(())
}

/// The auth method and the keys it needs: one of jwks, jwks_uri or DCR_SIGNING_KEY, public
/// keys only, jwks_uri over https.
fn check_keys(d: &DesiredMetadata, has_signing_key: bool) -> Result<()> {
    let method = match d.fields.get("token_endpoint_auth_method") {
        None => None,
        Some(Value::String(m)) if AUTH_METHODS.contains(&m.as_str()) => Some(m.as_str()),
        Some(other) => {
            return Err(field_err(
                d,
                "token_endpoint_auth_method",
                format!("{other} is not one of {}", AUTH_METHODS.join(", ")),
            ));
        }
    };
    let has_jwks = d.fields.contains_key("jwks");
    let has_jwks_uri = d.fields.contains_key("jwks_uri");
    if has_jwks && has_jwks_uri {
        return Err(field_err(
            d,
            "jwks",
            "and jwks_uri must not both be set (RFC 7591 §2)",
        ));
    }
    if has_signing_key && (has_jwks || has_jwks_uri) {
        return Err(Error::Config(format!(
            "DCR_SIGNING_KEY publishes the key as jwks; remove jwks/jwks_uri from {}",
            d.origin(if has_jwks { "jwks" } else { "jwks_uri" })
        )));
    }
    if let Some(jwks) = d.fields.get("jwks") {
        check_public_jwks(jwks).map_err(|m| field_err(d, "jwks", m))?;
    }
    if let Some(uri) = d.fields.get("jwks_uri").and_then(Value::as_str)
        && Url::parse(uri).map_or(true, |u| u.scheme() != "https")
    {
        return Err(field_err(
            d,
            "jwks_uri",
            format!(
                "{:?} must be an absolute https URL",
                crate::url::redacted(uri)
            ),
        ));
    }
    if method == Some("private_key_jwt") && !(has_jwks || has_jwks_uri || has_signing_key) {
        return Err(Error::Config(format!(
            "{}: private_key_jwt needs keys: set DCR_SIGNING_KEY (a PEM path; generated when missing) or jwks/jwks_uri in DCR_CLIENT_METADATA",
            d.origin("token_endpoint_auth_method")
        )));
    }
    Ok(())
}

/// RFC 6749 §3.1.2 and OAuth security BCP: absolute, no fragment, no userinfo, and https
/// except for loopback (native apps and local development).
pub fn check_redirect_uri(raw: &str) -> std::result::Result<(), &'static str> {
    if raw.contains('#') {
        return Err("must not contain a fragment");
    }
    let u = Url::parse(raw).map_err(|_| "is not an absolute URI")?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err("must not contain userinfo (user@)");
    }
    match u.scheme() {
        "https" => Ok(()),
        "http" if u.host_str().is_some_and(crate::url::is_loopback_host) => Ok(()),
        "http" => Err("must use https (plain http only for loopback hosts)"),
        _ => Err("must use https"),
    }
}

const PRIVATE_JWK_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

fn check_public_jwks(v: &Value) -> std::result::Result<(), String> {
    let keys = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("must be an object with a keys array")?;
    for k in keys {
        let obj = k.as_object().ok_or("keys must be JSON objects")?;
        if let Some(m) = PRIVATE_JWK_MEMBERS.iter().find(|m| obj.contains_key(**m)) {
            return Err(format!(
                "holds private key material (member {m:?}); publish only public keys"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> MetadataInputs<'static> {
        MetadataInputs {
            json: None,
            file: None,
            client_id: None,
            client_name: None,
            redirect_uris: None,
            scope: None,
            grant_types: None,
            response_types: None,
            auth_method: None,
            client_profile: None,
            profile_field: "client_profile",
            has_signing_key: false,
        }
    }

    #[test]
    fn env_overrides_json_field_by_field() {
        let d = desired(&MetadataInputs {
            json: Some(
                r#"{"client_name":"a","scope":"openid","grant_types":["authorization_code"]}"#,
            ),
            client_name: Some("bff-server"),
            redirect_uris: Some("https://a.example/cb, https://b.example/cb https://a.example/cb"),
            ..inputs()
        })
        .unwrap();
        assert_eq!(d.fields["client_name"], "bff-server");
        assert_eq!(d.fields["scope"], "openid");
        assert_eq!(
            d.fields["redirect_uris"],
            serde_json::json!(["https://a.example/cb", "https://b.example/cb"])
        );
        assert_eq!(d.origin("client_name"), "DCR_CLIENT_NAME");
        assert_eq!(d.origin("scope"), "DCR_CLIENT_METADATA");
    }

    #[test]
    fn redirect_uri_rules_name_the_variable() {
        for (uri, why) in [
            ("https://a.example/cb#x", "fragment"),
            ("https://u@a.example/cb", "userinfo"),
            ("http://a.example/cb", "https"),
            ("cb", "absolute"),
        ] {
            let e = desired(&MetadataInputs {
                redirect_uris: Some(uri),
                ..inputs()
            })
            .unwrap_err()
            .to_string();
            assert!(e.contains("DCR_REDIRECT_URIS") && e.contains(why), "{e}");
        }
        assert!(
            desired(&MetadataInputs {
                redirect_uris: Some("http://localhost:3000/cb http://[::1]/cb"),
                ..inputs()
            })
            .is_ok()
        );
    }

    #[test]
    fn key_rules() {
        let e = desired(&MetadataInputs {
            auth_method: Some("private_key_jwt"),
            ..inputs()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("DCR_SIGNING_KEY"), "{e}");
        let e = desired(&MetadataInputs {
            json: Some(r#"{"jwks":{"keys":[]},"jwks_uri":"https://x/jwks"}"#),
            ..inputs()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("must not both"), "{e}");
        let e = desired(&MetadataInputs {
            json: Some(r#"{"jwks":{"keys":[{"kty":"RSA","n":"x","e":"AQAB","d":"secret"}]}}"#),
            ..inputs()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("private key material"), "{e}");
        let d = desired(&MetadataInputs {
            has_signing_key: true,
            ..inputs()
        })
        .unwrap();
        assert_eq!(d.auth_method(), Some("private_key_jwt"));
    }

    #[test]
    fn rejects_unknown_auth_method_and_server_owned_fields() {
        let e = desired(&MetadataInputs {
            auth_method: Some("client_secret_magic"),
            ..inputs()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("DCR_TOKEN_ENDPOINT_AUTH_METHOD"), "{e}");
        let e = desired(&MetadataInputs {
            json: Some(r#"{"client_secret":"s3cr3t-value"}"#),
            ..inputs()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("client_secret") && !e.contains("s3cr3t"), "{e}");
    }

    #[test]
    fn invalid_json_is_a_config_error() {
        let e = desired(&MetadataInputs {
            json: Some("{not json"),
            ..inputs()
        })
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("DCR_CLIENT_METADATA"));
    }
}
