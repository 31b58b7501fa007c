//! Secrets: every token, secret and private key lives in a `SecretString` (redacted `Debug`,
//! no `Display`), and every secret value this process learns is remembered here so the log
//! writer can scrub it from any line, whatever path a value took to get there.

use secrecy::SecretString;
use std::sync::RwLock;

pub use secrecy::ExposeSecret;

static KNOWN: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// A secret as given on the command line or in the environment, before validation: parsed
/// by clap like a string, but its `Debug` never shows the value.
#[derive(Clone, Default)]
pub struct SecretArg(String);

impl SecretArg {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for SecretArg {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SecretArg(s.to_string()))
    }
}

impl std::fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl From<&str> for SecretArg {
    fn from(s: &str) -> Self {
        SecretArg(s.to_string())
    }
}

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
