//! Signing keys for `private_key_jwt`: load a PEM (RSA PKCS#1/PKCS#8, EC P-256 SEC1/PKCS#8) or
//! generate an RSA 2048 key, and publish its public half as a JWK whose default `kid` is the
//! RFC 7638 thumbprint. Crypto is aws-lc-rs, already in the tree through rustls.

use crate::error::{Error, Result};
use crate::secret::secret;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use secrecy::SecretString;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// A key ready to publish. `new_pem` is set when the key was generated in this run and must be
/// written to `path` once the IdP has accepted its public half.
#[derive(Debug)]
pub struct SigningKey {
    pub path: PathBuf,
    pub kid: String,
    pub alg: &'static str,
    pub public_jwk: Value,
    pub new_pem: Option<SecretString>,
}

impl SigningKey {
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.public_jwk] })
    }
}

/// Loads the key at `path`, or generates one when the file does not exist.
pub fn load_or_generate(path: &Path, kid: Option<&str>) -> Result<SigningKey> {
    match std::fs::read(path) {
        Ok(bytes) => load(path, &bytes, kid),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => generate_rsa(path, kid),
        Err(e) => Err(Error::io(
            format!("DCR_SIGNING_KEY: cannot read {}", path.display()),
            e,
        )),
    }
}

fn load(path: &Path, pem: &[u8], kid: Option<&str>) -> Result<SigningKey> {
    let bad = |why: &str| {
        Error::Io(format!(
            "DCR_SIGNING_KEY: {} is not a usable private key ({why}); expected an RSA (>= 2048 bit) or EC P-256 key in PEM",
            path.display()
        ))
    };
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|_| bad("no PEM private key found"))?;
    let (jwk, alg) = match &der {
        PrivateKeyDer::Pkcs1(k) => (
            rsa_jwk(
                &RsaKeyPair::from_der(k.secret_pkcs1_der()).map_err(|_| bad("invalid RSA key"))?,
            ),
            "RS256",
        ),
        PrivateKeyDer::Pkcs8(k) => {
            let bytes = k.secret_pkcs8_der();
            if let Ok(rsa) = RsaKeyPair::from_pkcs8(bytes) {
                (rsa_jwk(&rsa), "RS256")
            } else {
                let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, bytes)
                    .map_err(|_| bad("neither RSA nor EC P-256"))?;
                (ec_jwk(&ec)?, "ES256")
            }
        }
        PrivateKeyDer::Sec1(k) => {
            let ec = EcdsaKeyPair::from_private_key_der(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                k.secret_sec1_der(),
            )
            .map_err(|_| bad("invalid EC P-256 key"))?;
            (ec_jwk(&ec)?, "ES256")
        }
        _ => return Err(bad("unsupported key format")),
    };
    Ok(finish(path, jwk, alg, kid, None))
}

fn generate_rsa(path: &Path, kid: Option<&str>) -> Result<SigningKey> {
    let key = RsaKeyPair::generate(KeySize::Rsa2048)
        .map_err(|_| Error::Io("DCR_SIGNING_KEY: RSA key generation failed".into()))?;
    let der = key
        .as_der()
        .map_err(|_| Error::Io("DCR_SIGNING_KEY: cannot encode the generated key".into()))?;
    let pem = pem_encode("PRIVATE KEY", der.as_ref());
    Ok(finish(path, rsa_jwk(&key), "RS256", kid, Some(secret(pem))))
}

fn finish(
    path: &Path,
    mut jwk: Value,
    alg: &'static str,
    kid: Option<&str>,
    new_pem: Option<SecretString>,
) -> SigningKey {
    let kid = kid.map(str::to_string).unwrap_or_else(|| thumbprint(&jwk));
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    jwk["alg"] = json!(alg);
    SigningKey {
        path: path.to_path_buf(),
        kid,
        alg,
        public_jwk: jwk,
        new_pem,
    }
}

fn rsa_jwk(key: &RsaKeyPair) -> Value {
    let c = PublicKeyComponents::<Vec<u8>>::from(key.public_key());
    json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(&c.n), "e": URL_SAFE_NO_PAD.encode(&c.e)})
}

fn ec_jwk(key: &EcdsaKeyPair) -> Result<Value> {
    // Uncompressed SEC1 point: 0x04 || x (32) || y (32).
    let point = key.public_key().as_ref();
    if point.len() != 65 || point[0] != 4 {
        return Err(Error::Io(
            "DCR_SIGNING_KEY: unexpected EC public key encoding".into(),
        ));
    }
    Ok(json!({
        "kty": "EC",
        "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    }))
}

/// RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace.
pub fn thumbprint(jwk: &Value) -> String {
    let s = |k: &str| {
        jwk.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let canonical = match jwk.get("kty").and_then(Value::as_str) {
        Some("EC") => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            s("crv"),
            s("x"),
            s("y")
        ),
        _ => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, s("e"), s("n")),
    };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 §3.1 example key and its published thumbprint.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint(&jwk),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn generated_key_round_trips_through_pem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let k = load_or_generate(&path, None).unwrap();
        let pem = k.new_pem.as_ref().unwrap().expose_secret().to_string();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        std::fs::write(&path, &pem).unwrap();
        let again = load_or_generate(&path, Some("bff-sig-001")).unwrap();
        assert!(again.new_pem.is_none());
        assert_eq!(again.kid, "bff-sig-001");
        assert_eq!(again.public_jwk["n"], k.public_jwk["n"]);
        assert_eq!(k.kid, thumbprint(&k.public_jwk));
        assert!(k.public_jwk.get("d").is_none());
        assert!(!format!("{k:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn garbage_is_an_io_error_naming_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, "not a key").unwrap();
        let e = load_or_generate(&path, None).unwrap_err();
        assert_eq!(e.exit_code(), 5);
        assert!(e.to_string().contains("DCR_SIGNING_KEY"));
    }
}
