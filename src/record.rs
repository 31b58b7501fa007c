//! The client registration document (RFC 7591 §3.2.1, RFC 7592 §3): what the IdP answers and
//! what the output file stores are the same type, parsed by one validator. Its secrets are
//! remembered for log scrubbing the moment a record exists, whichever way it arrived.
//!
//! The stored file adds one member of our own, `dcr_bootstrap` (key records, provenance).

use crate::secret::{remember_secrets, secret};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

/// The members that must be strings when present.
const STRING_FIELDS: &[&str] = &[
    "registration_access_token",
    "client_secret",
    "registration_client_uri",
];

/// Our own member of the stored document.
pub const META: &str = "dcr_bootstrap";

#[derive(Clone, PartialEq)]
pub struct ClientRecord {
    doc: Map<String, Value>,
}

/// `Debug` shows the client_id only: the document holds the registration access token and
/// maybe a client secret.
impl std::fmt::Debug for ClientRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRecord")
            .field("client_id", &self.client_id())
            .finish_non_exhaustive()
    }
}

impl ClientRecord {
    /// Parses JSON bytes into a record; the reason when they are not one.
    pub fn parse(bytes: &[u8]) -> Result<ClientRecord, &'static str> {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(m)) => ClientRecord::from_map(m),
            Ok(_) => Err("not a JSON object"),
            Err(_) => Err("not valid JSON"),
        }
    }

    /// The one validator: a non-empty string `client_id`, and string credentials where present.
    /// Ids and credentials go into URLs, headers, logs and dotenv files, so control characters
    /// are refused in all of them, and whitespace in the token too.
    pub fn from_map(doc: Map<String, Value>) -> Result<ClientRecord, &'static str> {
        let id = doc.get("client_id").and_then(Value::as_str).unwrap_or("");
        if id.is_empty() {
            return Err("no client_id");
        }
        if id.chars().any(char::is_control) || id.len() > 1024 {
            return Err("a client_id with control characters or over 1024 bytes");
        }
        if STRING_FIELDS
            .iter()
            .any(|k| doc.get(*k).is_some_and(|v| !v.is_string()))
        {
            return Err("a credential field is not a string");
        }
        let text = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or("");
        if STRING_FIELDS
            .iter()
            .any(|k| text(k).chars().any(char::is_control))
        {
            return Err("a credential field with control characters");
        }
        if text("registration_access_token")
            .chars()
            .any(char::is_whitespace)
            || text("registration_client_uri")
                .chars()
                .any(char::is_whitespace)
        {
            return Err("a registration access token or URI with whitespace");
        }
        remember_secrets(&doc);
        Ok(ClientRecord { doc })
    }

    pub fn client_id(&self) -> &str {
        self.str("client_id").unwrap_or_default()
    }

    pub fn rat(&self) -> Option<SecretString> {
        self.str("registration_access_token")
            .filter(|s| !s.is_empty())
            .map(|s| secret(s.to_string()))
    }

    pub fn client_uri(&self) -> Option<&str> {
        self.str("registration_client_uri")
            .filter(|s| !s.is_empty())
    }

    pub fn client_secret(&self) -> Option<&str> {
        self.str("client_secret")
    }

    pub fn get(&self, field: &str) -> Option<&Value> {
        self.doc.get(field)
    }

    fn str(&self, field: &str) -> Option<&str> {
        self.doc.get(field).and_then(Value::as_str)
    }

    /// The metadata members, as the IdP holds them (or as we stored them).
    pub fn fields(&self) -> &Map<String, Value> {
        &self.doc
    }

    /// Our own `dcr_bootstrap` member, if any.
    pub fn meta(&self) -> Option<&Value> {
        self.doc.get(META)
    }

    pub fn set_meta(&mut self, meta: Value) {
        self.doc.insert(META.into(), meta);
    }

    /// Takes a new registration access token. Whoever calls this must save the record next
    /// (`job::managed::ManagedClient` does): the old token is dead.
    pub fn set_rat(&mut self, rat: &SecretString) {
        self.doc.insert(
            "registration_access_token".into(),
            Value::String(rat.expose_secret().to_string()),
        );
    }

    /// The keys of its inline `jwks` (none when absent).
    pub fn jwks_keys(&self) -> Vec<Value> {
        self.get("jwks")
            .and_then(|j| j.get("keys"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    /// Whether this record holds `rat` as its registration access token.
    pub fn holds_rat(&self, rat: &SecretString) -> bool {
        self.str("registration_access_token") == Some(rat.expose_secret())
    }

    /// Lays what the IdP answered over what we hold: its members win, ours stay where it is
    /// silent (a partial answer, an IdP that does not echo the secret).
    /// A `registration_client_uri` that is ours with the client id appended once more is
    /// not taken: Keycloak ≤ 23 answers an update so, and that URI answers 404.
    pub fn overlay(&mut self, answer: &Map<String, Value>) {
        let ours = self.client_uri().map(str::to_string);
        for (k, v) in answer {
            if k != META {
                self.doc.insert(k.clone(), v.clone());
            }
        }
        if let (Some(ours), Some(new)) = (ours, self.client_uri())
            && new.trim_end_matches('/')
                == format!(
                    "{}/{}",
                    ours.trim_end_matches('/'),
                    crate::url::segment(self.client_id())
                )
        {
            self.doc
                .insert("registration_client_uri".into(), Value::String(ours));
        }
    }

    /// Sets or (with `null`) removes one member.
    pub fn apply(&mut self, field: &str, value: &Value) {
        if value.is_null() {
            self.doc.remove(field);
        } else {
            self.doc.insert(field.to_string(), value.clone());
        }
    }

    pub fn set_if_absent(&mut self, field: &str, value: Value) {
        self.doc.entry(field).or_insert(value);
    }

    /// The document as the output stores it: pretty JSON and a final newline. A JSON object
    /// with string keys always serialises; should it ever not, the write fails loudly rather
    /// than storing an empty document.
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let mut bytes = serde_json::to_vec_pretty(&self.doc).map_err(|e| {
            format!(
                "cannot serialise the registration of {}: {e}",
                self.client_id()
            )
        })?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_validator_for_answers_and_files() {
        assert_eq!(
            ClientRecord::parse(b"[1]").unwrap_err(),
            "not a JSON object"
        );
        assert_eq!(ClientRecord::parse(b"{").unwrap_err(), "not valid JSON");
        assert_eq!(
            ClientRecord::parse(b"{\"client_id\":\"\"}").unwrap_err(),
            "no client_id"
        );
        assert_eq!(
            ClientRecord::parse(br#"{"client_id":"a","client_secret":5}"#).unwrap_err(),
            "a credential field is not a string"
        );
        for (doc, why) in [
            (r#"{"client_id":"a\nb"}"#, "control"),
            (
                r#"{"client_id":"a","registration_access_token":"r\u0000t"}"#,
                "control",
            ),
            (
                r#"{"client_id":"a","registration_access_token":"r t"}"#,
                "whitespace",
            ),
            (
                r#"{"client_id":"a","client_secret":"s\u001b[31m"}"#,
                "control",
            ),
        ] {
            let e = ClientRecord::parse(doc.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{doc}: {e}");
        }
        let r = ClientRecord::parse(
            br#"{"client_id":"a","registration_access_token":"rat-value-123456"}"#,
        )
        .unwrap();
        assert_eq!(r.client_id(), "a");
        assert!(!format!("{r:?}").contains("rat-value"));
        assert_eq!(crate::secret::scrub("x rat-value-123456"), "x [REDACTED]");
    }

    #[test]
    fn overlay_keeps_what_the_answer_leaves_out() {
        let mut r =
            ClientRecord::parse(br#"{"client_id":"a","client_secret":"s","scope":"x"}"#).unwrap();
        let answer = serde_json::json!({"client_id":"a","scope":"y","dcr_bootstrap":1});
        r.overlay(answer.as_object().unwrap());
        assert_eq!(r.client_secret(), Some("s"));
        assert_eq!(r.get("scope"), Some(&Value::String("y".into())));
        assert!(r.meta().is_none());
    }

    #[test]
    fn overlay_refuses_a_doubled_client_uri() {
        let mut r = ClientRecord::parse(
            br#"{"client_id":"a1","registration_client_uri":"https://kc/r/a1"}"#,
        )
        .unwrap();
        let answer =
            serde_json::json!({"client_id":"a1","registration_client_uri":"https://kc/r/a1/a1"});
        r.overlay(answer.as_object().unwrap());
        assert_eq!(r.client_uri(), Some("https://kc/r/a1"));
        let moved =
            serde_json::json!({"client_id":"a1","registration_client_uri":"https://kc/s/a1"});
        r.overlay(moved.as_object().unwrap());
        assert_eq!(r.client_uri(), Some("https://kc/s/a1"));
    }
}
