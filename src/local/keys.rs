//! Key material for `private_key_jwt`: load a PEM (RSA PKCS#1/PKCS#8, EC P-256 SEC1/PKCS#8) or
//! generate one (RS256/PS256 with RSA 2048/3072/4096, ES256 with P-256), and describe its
//! public half as a JWK identified by its RFC 7638 thumbprint. Crypto is aws-lc-rs, already in
//! the tree through rustls. Which keys to publish, and when to rotate, is `keyring.rs`.

use crate::error::{Error, Result};
use crate::secret::secret;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::path::Path;

/// The JWS algorithm a key signs client assertions with.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
pub enum KeyAlg {
    #[value(name = "RS256")]
    #[serde(rename = "RS256")]
    Rs256,
    #[value(name = "PS256")]
    #[serde(rename = "PS256")]
    Ps256,
    #[value(name = "ES256")]
    #[serde(rename = "ES256")]
    Es256,
}

impl KeyAlg {
    pub fn name(self) -> &'static str {
        match self {
            KeyAlg::Rs256 => "RS256",
            KeyAlg::Ps256 => "PS256",
            KeyAlg::Es256 => "ES256",
        }
    }

    pub fn is_rsa(self) -> bool {
        self != KeyAlg::Es256
    }
}

/// A private key and the public JWK (`kty` and key parameters only) derived from it.
#[derive(Debug, Clone)]
pub struct KeyMaterial {
    pub pem: SecretString,
    pub public_jwk: Value,
    pub thumbprint: String,
}

impl KeyMaterial {
    pub fn is_rsa(&self) -> bool {
        self.public_jwk["kty"] == "RSA"
    }

    /// The algorithm a key of this type signs with when none is configured.
    pub fn natural_alg(&self) -> KeyAlg {
        if self.is_rsa() {
            KeyAlg::Rs256
        } else {
            KeyAlg::Es256
        }
    }

    /// Whether this key can sign with `alg` (RSA for RS256/PS256, P-256 for ES256).
    pub fn fits(&self, alg: KeyAlg) -> bool {
        self.is_rsa() == alg.is_rsa()
    }

    /// The JWK to publish: the public parameters plus `kid`, `use` and `alg`.
    pub fn labelled_jwk(&self, kid: &str, alg: KeyAlg) -> Value {
        let mut jwk = self.public_jwk.clone();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        jwk["alg"] = json!(alg.name());
        jwk
    }
}

/// Reads the key at `path`; `None` when the file does not exist. Like the output, a key
/// someone else could have written is refused (`owner`: `DCR_OUTPUT_OWNER`).
pub fn load(path: &Path, owner: Option<(u32, u32)>) -> Result<Option<KeyMaterial>> {
    let Some(bytes) = super::store::read_trusted(path, owner, "DCR_SIGNING_KEY")? else {
        return Ok(None);
    };
    parse_pem(&bytes).map(Some).map_err(|why| {
        Error::Io(format!(
            "DCR_SIGNING_KEY: {} is not a usable private key ({why}); expected an RSA (>= 2048 bit) or EC P-256 key in PEM",
            path.display()
        ))
    })
}

pub fn parse_pem(pem: &[u8]) -> std::result::Result<KeyMaterial, &'static str> {
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|_| "no PEM private key found")?;
    let jwk = match &der {
        PrivateKeyDer::Pkcs1(k) => {
            rsa_jwk(&RsaKeyPair::from_der(k.secret_pkcs1_der()).map_err(|_| "invalid RSA key")?)
        }
        PrivateKeyDer::Pkcs8(k) => {
            let bytes = k.secret_pkcs8_der();
            match RsaKeyPair::from_pkcs8(bytes) {
                Ok(rsa) => rsa_jwk(&rsa),
                Err(_) => ec_jwk(
                    &EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, bytes)
                        .map_err(|_| "neither RSA nor EC P-256")?,
                )?,
            }
        }
        PrivateKeyDer::Sec1(k) => ec_jwk(
            &EcdsaKeyPair::from_private_key_der(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                k.secret_sec1_der(),
            )
            .map_err(|_| "invalid EC P-256 key")?,
        )?,
        _ => return Err("unsupported key format"),
    };
    let pem = String::from_utf8_lossy(pem).into_owned();
    Ok(material(secret(pem), jwk))
}

impl KeyMaterial {
    /// Signs `msg` with this key as `alg` demands (RS256/PS256 PKCS#1/PSS, ES256 fixed r||s).
    fn sign(&self, alg: KeyAlg, msg: &[u8]) -> std::result::Result<Vec<u8>, &'static str> {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature;
        let der = PrivateKeyDer::from_pem_slice(self.pem.expose_secret().as_bytes())
            .map_err(|_| "no PEM private key found")?;
        let rng = SystemRandom::new();
        if alg == KeyAlg::Es256 {
            let k = match &der {
                PrivateKeyDer::Pkcs8(k) => {
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, k.secret_pkcs8_der())
                }
                PrivateKeyDer::Sec1(k) => EcdsaKeyPair::from_private_key_der(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    k.secret_sec1_der(),
                ),
                _ => return Err("not an EC key"),
            }
            .map_err(|_| "not an EC P-256 key")?;
            return k
                .sign(&rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| "signing failed");
        }
        let k = match &der {
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            _ => return Err("not an RSA key"),
        }
        .map_err(|_| "not an RSA key")?;
        let params = if alg == KeyAlg::Ps256 {
            &signature::RSA_PSS_SHA256
        } else {
            &signature::RSA_PKCS1_SHA256
        };
        let mut sig = vec![0; k.public_modulus_len()];
        k.sign(params, &rng, msg, &mut sig)
            .map_err(|_| "signing failed")?;
        Ok(sig)
    }

    /// An RFC 7523 client assertion for `private_key_jwt`: iss = sub = the client, aud = the
    /// token endpoint, a minute to live, a random jti. It is a secret as long as it lives.
    pub fn client_assertion(
        &self,
        alg: KeyAlg,
        kid: &str,
        client_id: &str,
        audience: &str,
    ) -> Result<SecretString> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let header = json!({"alg": alg.name(), "kid": kid, "typ": "JWT"});
        let claims = json!({"iss": client_id, "sub": client_id, "aud": audience, "iat": now,
                            "exp": now + 60, "jti": format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self.sign(alg, input.as_bytes()).map_err(|why| {
            Error::Io(format!(
                "DCR_SIGNING_KEY: cannot sign a client assertion: {why}"
            ))
        })?;
        Ok(secret(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))))
    }

    /// An assertion like [`KeyMaterial::client_assertion`]'s (same header and claims, its own
    /// jti) whose signature is spoiled: what a client holding the wrong key would send. The
    /// control request of a credential proof.
    pub fn spoiled_assertion(
        &self,
        alg: KeyAlg,
        kid: &str,
        client_id: &str,
        audience: &str,
    ) -> Result<SecretString> {
        let good = self.client_assertion(alg, kid, client_id, audience)?;
        let text = good.expose_secret();
        let (input, sig) = text.rsplit_once('.').unwrap_or((text, ""));
        let mut bytes = URL_SAFE_NO_PAD.decode(sig).unwrap_or_default();
        bytes.iter_mut().for_each(|b| *b ^= 0x5a);
        Ok(secret(format!("{input}.{}", URL_SAFE_NO_PAD.encode(bytes))))
    }
}

/// Generates a key for `alg` (RSA of `rsa_bits` bits for RS256/PS256).
pub fn generate(alg: KeyAlg, rsa_bits: u32) -> Result<KeyMaterial> {
    let fail = |what: &str| Error::Io(format!("DCR_SIGNING_KEY: {what} failed"));
    let (der, jwk) = if alg.is_rsa() {
        let size = match rsa_bits {
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            _ => KeySize::Rsa2048,
        };
        let key = RsaKeyPair::generate(size).map_err(|_| fail("RSA key generation"))?;
        let der = key.as_der().map_err(|_| fail("encoding the RSA key"))?;
        (der.as_ref().to_vec(), rsa_jwk(&key))
    } else {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| fail("EC key generation"))?;
        let der = key.to_pkcs8v1().map_err(|_| fail("encoding the EC key"))?;
        let jwk = ec_jwk(&key).map_err(|_| fail("reading the EC public key"))?;
        (der.as_ref().to_vec(), jwk)
    };
    Ok(material(secret(pem_encode("PRIVATE KEY", &der)), jwk))
}

fn material(pem: SecretString, public_jwk: Value) -> KeyMaterial {
    KeyMaterial {
        pem,
        thumbprint: thumbprint(&public_jwk),
        public_jwk,
    }
}

fn rsa_jwk(key: &RsaKeyPair) -> Value {
    let c = PublicKeyComponents::<Vec<u8>>::from(key.public_key());
    json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(&c.n), "e": URL_SAFE_NO_PAD.encode(&c.e)})
}

fn ec_jwk(key: &EcdsaKeyPair) -> std::result::Result<Value, &'static str> {
    // Uncompressed SEC1 point: 0x04 || x (32) || y (32).
    let point = key.public_key().as_ref();
    if point.len() != 65 || point[0] != 4 {
        return Err("unexpected EC public key encoding");
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

/// The PEM text of a key, for writing it out.
pub fn pem_bytes(k: &KeyMaterial) -> &[u8] {
    k.pem.expose_secret().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn generated_keys_round_trip_through_pem() {
        for (alg, kty) in [
            (KeyAlg::Rs256, "RSA"),
            (KeyAlg::Ps256, "RSA"),
            (KeyAlg::Es256, "EC"),
        ] {
            let k = generate(alg, 2048).unwrap();
            assert!(
                k.pem
                    .expose_secret()
                    .starts_with("-----BEGIN PRIVATE KEY-----")
            );
            let again = parse_pem(pem_bytes(&k)).unwrap();
            assert_eq!(again.thumbprint, k.thumbprint);
            assert_eq!(k.public_jwk["kty"], kty);
            assert!(k.fits(alg));
            assert!(k.public_jwk.get("d").is_none());
            assert!(!format!("{k:?}").contains("PRIVATE KEY"));
        }
    }

    #[test]
    fn larger_rsa_keys() {
        let k = generate(KeyAlg::Rs256, 3072).unwrap();
        let n = URL_SAFE_NO_PAD
            .decode(k.public_jwk["n"].as_str().unwrap())
            .unwrap();
        assert_eq!(n.len() * 8, 3072);
    }

    #[test]
    fn garbage_is_an_io_error_naming_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, "not a key").unwrap();
        let e = load(&path, None).unwrap_err();
        assert_eq!(e.exit_code(), 5);
        assert!(e.to_string().contains("DCR_SIGNING_KEY"));
        assert!(
            load(&dir.path().join("missing.pem"), None)
                .unwrap()
                .is_none()
        );
    }
}
