//! The seal on a stored record: an HMAC over what decides which client the admin token may
//! act on (`client_id`, `registration_client_uri`, who made the client) and the deployment it
//! belongs to (the IdP, the profile, the output path), keyed from a secret the volume does not
//! hold (`DCR_STATE_KEY`, else the admin credential). Whoever can write the output can change
//! those members, or copy a record from another deployment, but cannot make a seal for them;
//! and a record is sealed only when this program registered or adopted its client, or found
//! it sealed: never because it was read back (docs/security.md). What else the record holds
//! cannot steer a token or a write: published keys come from key material, settlements never
//! cover redirect URIs, keys or grants.

use crate::record::ClientRecord;
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

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

/// The deployment a seal binds a record to: a record sealed for another IdP, profile or
/// output does not verify here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub idp: String,
    pub profile: &'static str,
    pub output: String,
}

/// The member of `dcr_bootstrap` that holds the seal.
const SEAL: &str = "seal";

impl Sealer {
    /// A sealer keyed from `secret`, through a labelled derivation so that the key is not the
    /// secret itself.
    pub fn new(secret: &[u8]) -> Sealer {
        let label = hmac::Key::new(hmac::HMAC_SHA256, b"dcr-bootstrap record seal v2");
        let derived = hmac::sign(&label, secret);
        Sealer {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
        }
    }

    /// What is signed: the binding, then the members that name the client and who made it,
    /// each ended by a NUL (none of them may hold one).
    fn message(record: &ClientRecord, b: &Binding) -> Vec<u8> {
        let origin = record
            .meta()
            .and_then(|m| m.get("origin"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let mut m = b"v2\0".to_vec();
        for part in [
            b.idp.as_str(),
            b.profile,
            b.output.as_str(),
            record.client_id(),
            record.client_uri().unwrap_or(""),
            origin,
        ] {
            m.extend_from_slice(part.as_bytes());
            m.push(0);
        }
        m
    }

    /// The record with a fresh seal over everything it holds.
    pub fn sealed(&self, mut record: ClientRecord, b: &Binding) -> ClientRecord {
        let tag = URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, &Self::message(&record, b)));
        let mut meta = record
            .meta()
            .cloned()
            .unwrap_or_else(|| serde_json::json!({}));
        meta[SEAL] = Value::String(tag);
        record.set_meta(meta);
        record
    }

    /// Whether the record carries a valid seal for this deployment (compared in constant time).
    pub fn verify(&self, record: &ClientRecord, b: &Binding) -> bool {
        let Some(tag) = record
            .meta()
            .and_then(|m| m.get(SEAL))
            .and_then(Value::as_str)
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
        else {
            return false;
        };
        hmac::verify(&self.key, &Self::message(record, b), &tag).is_ok()
    }
}

/// The record without a seal (one that no longer covers what it holds).
pub fn unsealed(mut record: ClientRecord) -> ClientRecord {
    if let Some(mut meta) = record.meta().cloned() {
        if let Some(o) = meta.as_object_mut() {
            o.remove(SEAL);
        }
        record.set_meta(meta);
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(doc: Value) -> ClientRecord {
        ClientRecord::parse(doc.to_string().as_bytes()).unwrap()
    }

    fn here() -> Binding {
        Binding {
            idp: "https://idp".into(),
            profile: "empowernow",
            output: "/keys/out.json".into(),
        }
    }

    #[test]
    fn a_seal_covers_the_client_who_made_it_and_the_deployment() {
        let s = Sealer::new(b"admin-secret");
        let doc = serde_json::json!({"client_id": "ours", "registration_client_uri": "https://idp/c/ours",
            "registration_access_token": "rat", "dcr_bootstrap": {"origin": "registered"}});
        let sealed = s.sealed(record(doc.clone()), &here());
        assert!(s.verify(&sealed, &here()));
        // The client or its URL changed: not ours.
        for (path, value) in [
            ("client_id", serde_json::json!("theirs")),
            (
                "registration_client_uri",
                serde_json::json!("https://idp/c/theirs"),
            ),
        ] {
            let mut d = sealed.fields().clone();
            d.insert(path.into(), value);
            assert!(
                !s.verify(&ClientRecord::from_map(d).unwrap(), &here()),
                "{path}"
            );
        }
        let mut d = sealed.fields().clone();
        d["dcr_bootstrap"]["origin"] = serde_json::json!("adopted");
        assert!(!s.verify(&ClientRecord::from_map(d).unwrap(), &here()));
        // A rotated token keeps the seal: a run without the sealing key may save one.
        let mut d = sealed.fields().clone();
        d.insert(
            "registration_access_token".into(),
            serde_json::json!("rotated"),
        );
        assert!(s.verify(&ClientRecord::from_map(d).unwrap(), &here()));
        // Another deployment, another key, no seal: not ours.
        let elsewhere = Binding {
            output: "/other/out.json".into(),
            ..here()
        };
        assert!(!s.verify(&sealed, &elsewhere));
        assert!(!Sealer::new(b"other").verify(&sealed, &here()));
        assert!(!s.verify(&unsealed(sealed.clone()), &here()));
        assert!(!s.verify(&record(doc), &here()));
        assert!(!format!("{s:?}").contains("admin"));
    }
}
