//! Secrets: every token, secret and private key lives in a `SecretString` (redacted `Debug`,
//! no `Display`), and every secret value this process learns is remembered here so the log
//! writer can scrub it from any line, whatever path a value took to get there.

use secrecy::SecretString;
use std::sync::RwLock;

static KNOWN: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Marks a value as secret for log scrubbing and wraps it.
pub fn secret(value: String) -> SecretString {
    remember(&value);
    SecretString::from(value)
}

/// Remembers a secret value so that [`scrub`] removes it from any text.
pub fn remember(value: &str) {
    // Very short values would scrub ordinary words; no real token is this short.
    if value.len() < 6 {
        return;
    }
    let mut known = KNOWN.write().unwrap_or_else(|p| p.into_inner());
    if !known.iter().any(|k| k == value) {
        known.push(value.to_string());
        // Longest first, so a secret that contains another is replaced whole.
        known.sort_by_key(|k| std::cmp::Reverse(k.len()));
    }
}

/// Remembers the secret members of an IdP document (a registration access token, a client
/// secret) the moment it arrives, whatever happens to the document next.
pub fn remember_secrets(doc: &serde_json::Map<String, serde_json::Value>) {
    for k in ["registration_access_token", "client_secret"] {
        if let Some(v) = doc.get(k).and_then(serde_json::Value::as_str) {
            remember(v);
        }
    }
}

/// Replaces every remembered secret value in `text` with `[REDACTED]`.
pub fn scrub(text: &str) -> String {
    let known = KNOWN.read().unwrap_or_else(|p| p.into_inner());
    let mut out = text.to_string();
    for k in known.iter() {
        if out.contains(k.as_str()) {
            out = out.replace(k.as_str(), "[REDACTED]");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn scrubs_remembered_values_and_debug_is_redacted() {
        let s = secret("tok_abcdef123456".to_string());
        assert_eq!(scrub("Bearer tok_abcdef123456 x"), "Bearer [REDACTED] x");
        assert!(!format!("{s:?}").contains("abcdef"));
        assert_eq!(s.expose_secret(), "tok_abcdef123456");
    }

    #[test]
    fn longer_secrets_win_over_their_prefixes() {
        remember("prefix-secret");
        remember("prefix-secret-longer");
        assert_eq!(scrub("prefix-secret-longer"), "[REDACTED]");
    }
}
