//! The token endpoint (`POST /api/oidc/token`, `grant_type=client_credentials`), enough to
//! prove that a registered key really signs: a `private_key_jwt` client assertion (RFC 7523)
//! is verified against the client's registered JWKS with aws-lc-rs, independently of the
//! code that produced the key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The `alg` of a compact JWS's header, if it has one.
pub fn header_alg(jwt: &str) -> Option<String> {
    let h = URL_SAFE_NO_PAD.decode(jwt.split('.').next()?).ok()?;
    let v: Value = serde_json::from_slice(&h).ok()?;
    v.get("alg").and_then(Value::as_str).map(str::to_string)
}

/// A verified assertion's client_id, or why it was refused.
pub fn verify_assertion(
    jwt: &str,
    jwks_of: impl Fn(&str) -> Option<Value>,
    audiences: &[String],
    now: u64,
) -> Result<String, String> {
    let mut parts = jwt.split('.');
    let (h, p, s) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => (h, p, s),
        _ => return Err("client_assertion is not a compact JWS".into()),
    };
    let decode = |x: &str| {
        URL_SAFE_NO_PAD
            .decode(x)
            .map_err(|_| "client_assertion is not base64url".to_string())
    };
    let header: Map<String, Value> =
        serde_json::from_slice(&decode(h)?).map_err(|_| "bad JWS header".to_string())?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&decode(p)?).map_err(|_| "bad JWT claims".to_string())?;
    let sig = decode(s)?;
    let client_id = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or("the assertion has no iss")?
        .to_string();
    if claims.get("sub").and_then(Value::as_str) != Some(client_id.as_str()) {
        return Err("iss and sub must both be the client_id (RFC 7523 §3)".into());
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => audiences.contains(a),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .any(|x| audiences.iter().any(|y| y == x)),
        _ => false,
    };
    if !aud_ok {
        return Err(format!("aud must be one of {audiences:?}"));
    }
    match claims.get("exp").and_then(Value::as_u64) {
        Some(exp) if exp > now && exp <= now + 3600 => {}
        _ => return Err("exp is missing, past, or more than an hour ahead".into()),
    }
    if claims
        .get("jti")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err("the assertion has no jti".into());
    }
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let kid = header.get("kid").and_then(Value::as_str);
    let jwks = jwks_of(&client_id).ok_or("unknown client or no registered jwks")?;
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let candidates: Vec<&Value> = keys
        .iter()
        .filter(|k| kid.is_none_or(|kid| k.get("kid").and_then(Value::as_str) == Some(kid)))
        .collect();
    if candidates.is_empty() {
        return Err(format!("no registered key with kid {kid:?}"));
    }
    let message = format!("{h}.{p}");
    for k in candidates {
        if verify(alg, k, message.as_bytes(), &sig).is_ok() {
            return Ok(client_id);
        }
    }
    Err(format!(
        "the {alg} signature does not verify with the registered key"
    ))
}

fn member(k: &Value, name: &str) -> Result<Vec<u8>, String> {
    k.get(name)
        .and_then(Value::as_str)
        .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
        .ok_or_else(|| format!("jwk member {name} missing"))
}

fn verify(alg: &str, jwk: &Value, msg: &[u8], sig: &[u8]) -> Result<(), String> {
    use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
    let bad = |_| "bad signature".to_string();
    match (alg, jwk.get("kty").and_then(Value::as_str)) {
        ("RS256" | "PS256", Some("RSA")) => {
            let params = if alg == "RS256" {
                &signature::RSA_PKCS1_2048_8192_SHA256
            } else {
                &signature::RSA_PSS_2048_8192_SHA256
            };
            let key = RsaPublicKeyComponents {
                n: member(jwk, "n")?,
                e: member(jwk, "e")?,
            };
            key.verify(params, msg, sig).map_err(bad)
        }
        ("ES256", Some("EC")) => {
            let mut point = vec![4u8];
            point.extend(member(jwk, "x")?);
            point.extend(member(jwk, "y")?);
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(msg, sig)
                .map_err(bad)
        }
        _ => Err(format!("alg {alg} does not fit the key type")),
    }
}
