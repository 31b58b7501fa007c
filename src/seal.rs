//! The seal on a stored record: an HMAC over the fields that steer admin calls (`client_id`,
//! `registration_client_uri`), keyed from a secret the volume does not hold (`DCR_STATE_KEY`,
//! else the admin credential). Whoever can write the output file can change those fields,
//! but cannot make a seal for them; a record without a valid seal never gets the admin token
//! spent on it (see docs/security.md).

use crate::record::ClientRecord;
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub struct Sealer {
    key: hmac::Key,
}

/// `Debug` never shows key material.
impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([REDACTED])")
    }
}

impl Clone for Sealer {
    fn clone(&self) -> Self {
        Sealer {
            key: self.key.clone(),
        }
    }
}

impl Sealer {
    /// A sealer keyed from `secret`, through a labelled derivation so that the key is not the
    /// secret itself.
    pub fn new(secret: &[u8]) -> Sealer {
        let label = hmac::Key::new(hmac::HMAC_SHA256, b"dcr-bootstrap record seal v1");
        let derived = hmac::sign(&label, secret);
        Sealer {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
        }
    }

    fn message(record: &ClientRecord) -> Vec<u8> {
        let mut m = b"v1\0".to_vec();
        m.extend_from_slice(record.client_id().as_bytes());
        m.push(0);
        m.extend_from_slice(record.client_uri().unwrap_or("").as_bytes());
        m
    }

    pub fn seal(&self, record: &ClientRecord) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, &Self::message(record)))
    }

    /// Whether the record carries a valid seal (compared in constant time).
    pub fn verify(&self, record: &ClientRecord) -> bool {
        let Some(tag) = record
            .meta()
            .and_then(|m| m.get("seal"))
            .and_then(|v| v.as_str())
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
        else {
            return false;
        };
        hmac::verify(&self.key, &Self::message(record), &tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, uri: &str, seal: Option<String>) -> ClientRecord {
        let mut doc = serde_json::json!({"client_id": id, "registration_client_uri": uri});
        if let Some(s) = seal {
            doc["dcr_bootstrap"] = serde_json::json!({ "seal": s });
        }
        ClientRecord::parse(doc.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_seal_binds_the_id_and_uri_to_the_key() {
        let s = Sealer::new(b"admin-secret");
        let good = s.seal(&record("ours", "https://idp/c/ours", None));
        assert!(s.verify(&record("ours", "https://idp/c/ours", Some(good.clone()))));
        assert!(!s.verify(&record("theirs", "https://idp/c/ours", Some(good.clone()))));
        assert!(!s.verify(&record("ours", "https://evil/c/ours", Some(good.clone()))));
        assert!(!Sealer::new(b"other").verify(&record("ours", "https://idp/c/ours", Some(good))));
        assert!(!s.verify(&record("ours", "https://idp/c/ours", None)));
        assert!(!format!("{s:?}").contains("admin"));
    }
}
