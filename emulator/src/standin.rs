//! A stand-in for the application that consumes the credentials (the BFF), for compose stacks
//! and tests: it reads what `dcr-bootstrap` wrote, says which client it got, and can prove the
//! credentials at the IdP's token endpoint by signing an RFC 7523 client assertion with the
//! written key. Written independently of the client, like everything in this crate.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the stand-in found in the credentials file.
#[derive(Debug)]
pub struct Credentials {
    pub client_id: String,
    /// The current signing key's path and kid and alg, when the file names one.
    pub key: Option<(String, String, String)>,
}

/// Reads the registration file the way an application would; the error says why it cannot.
pub fn read_credentials(path: &Path) -> Result<Credentials, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let doc: Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    let client_id = doc
        .get("client_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("{} has no client_id", path.display()))?
        .to_string();
    let k = &doc["dcr_bootstrap"]["signing_key"];
    let key = match (k["path"].as_str(), k["kid"].as_str(), k["alg"].as_str()) {
        (Some(p), Some(kid), Some(alg)) => Some((p.to_string(), kid.to_string(), alg.to_string())),
        _ => None,
    };
    Ok(Credentials { client_id, key })
}

/// Signs an RFC 7523 client assertion with a PKCS#8 PEM private key (RS256, PS256, ES256).
pub fn client_assertion(
    pem: &str,
    alg: &str,
    kid: &str,
    client_id: &str,
    aud: &str,
) -> Result<String, String> {
    let der = match PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| e.to_string())? {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        _ => return Err("the key is not PKCS#8".into()),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = serde_json::json!({"alg": alg, "kid": kid, "typ": "JWT"});
    let claims = serde_json::json!({"iss": client_id, "sub": client_id, "aud": aud,
        "exp": now + 60, "iat": now, "jti": format!("jti-{now}-{}", fastrand::u64(..))});
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let rng = SystemRandom::new();
    let bad = |_| "cannot sign with this key".to_string();
    let sig = match alg {
        "ES256" => {
            let k = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                .map_err(|_| "not an EC P-256 key".to_string())?;
            k.sign(&rng, input.as_bytes())
                .map_err(bad)?
                .as_ref()
                .to_vec()
        }
        "RS256" | "PS256" => {
            let k = RsaKeyPair::from_pkcs8(&der).map_err(|_| "not an RSA key".to_string())?;
            let params = if alg == "PS256" {
                &signature::RSA_PSS_SHA256
            } else {
                &signature::RSA_PKCS1_SHA256
            };
            let mut sig = vec![0; k.public_modulus_len()];
            k.sign(params, &rng, input.as_bytes(), &mut sig)
                .map_err(bad)?;
            sig
        }
        other => return Err(format!("unsupported alg {other}")),
    };
    Ok(format!("{input}.{}", B64.encode(sig)))
}

/// The form body of an authorization-code request with a code never issued, authenticated
/// by `assertion`: a code-flow client (the application's kind) may send it, and the IdP
/// judges the code only after authenticating the client, so `invalid_grant` proves the key.
pub fn assertion_form(assertion: &str) -> String {
    format!(
        "grant_type=authorization_code&code=never-issued&client_assertion_type={}&client_assertion={assertion}",
        "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
    )
}

/// Whether a token endpoint's answer to [`assertion_form`] shows the client authenticated.
pub fn authenticated(status: u16, body: &str) -> bool {
    status == 200 || (status == 400 && body.contains("invalid_grant"))
}

/// POSTs a form to a plain-http URL (the compose network) and returns the status: just
/// enough HTTP/1.1 for the proof, no dependency on an HTTP client crate.
pub fn post_form(url: &str, body: &str) -> Result<(u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
    let addr = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let mut s = std::net::TcpStream::connect(&addr).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "POST /{path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    s.take(64 * 1024)
        .read_to_end(&mut answer)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {:?}", text.lines().next()))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, body.to_string()))
}
