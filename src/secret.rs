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

/// Below this length a secret is scrubbed only as a whole word, or it would blank out pieces
/// of ordinary words.
const SHORT: usize = 6;

/// Remembers a secret value so that [`scrub`] removes it from any text, in every form this
/// program sends it in or a log line shows it in: as is, JSON-escaped (JSON bodies and logs),
/// Debug-escaped (`{:?}` fields), form-encoded (token requests) and percent-encoded (an IdP
/// that echoes what it received). The Basic form is [`remember_basic`].
pub fn remember(value: &str) {
    if value.is_empty() {
        return;
    }
    let inner = |quoted: String| quoted[1..quoted.len() - 1].to_string();
    let form: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
    let forms = [
        value.to_string(),
        inner(serde_json::Value::String(value.to_string()).to_string()),
        inner(format!("{value:?}")),
        form.replace('+', "%20"),
        form,
    ];
    let mut known = KNOWN.write().unwrap_or_else(|p| p.into_inner());
    for f in forms {
        if !f.is_empty() && !known.contains(&f) {
            known.push(f);
        }
    }
    // Longest first, so a secret that contains another is replaced whole.
    known.sort_by_key(|k| std::cmp::Reverse(k.len()));
}

/// Remembers the HTTP Basic credentials of `id` and `secret` (RFC 6749 §2.3.1: each
/// form-encoded, then `id:secret` in base64, as sent; and without the encoding, as other
/// clients send it).
pub fn remember_basic(id: &str, secret: &str) {
    use base64::Engine;
    let form = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    for pair in [
        format!("{}:{}", form(id), form(secret)),
        format!("{id}:{secret}"),
    ] {
        remember(&base64::engine::general_purpose::STANDARD.encode(pair));
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
        if !out.contains(k.as_str()) {
            continue;
        }
        out = if k.len() >= SHORT {
            out.replace(k.as_str(), "[REDACTED]")
        } else {
            replace_words(&out, k)
        };
    }
    out
}

/// Replaces `word` where it is not part of a longer alphanumeric run.
fn replace_words(text: &str, word: &str) -> String {
    let alnum = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut before_rest: Option<char> = None;
    while let Some(i) = rest.find(word) {
        let before = rest[..i].chars().next_back().or(before_rest);
        let after = rest[i + word.len()..].chars().next();
        out.push_str(&rest[..i]);
        out.push_str(if alnum(before) || alnum(after) {
            word
        } else {
            "[REDACTED]"
        });
        before_rest = word.chars().next_back();
        rest = &rest[i + word.len()..];
    }
    out.push_str(rest);
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
    fn escaped_and_short_secrets_are_scrubbed_too() {
        remember(r#"quo"te\back"#);
        let json = serde_json::json!({"msg": r#"x quo"te\back y"#}).to_string();
        assert!(!scrub(&json).contains("quo"), "{}", scrub(&json));
        assert!(!scrub(&format!("{:?}", r#"quo"te\back"#)).contains("quo"));
        remember("k3y");
        assert_eq!(scrub("token=k3y end"), "token=[REDACTED] end");
        assert_eq!(scrub("monk3ys are safe"), "monk3ys are safe");
    }

    /// Finding 8 of the second review: the forms in which this program sends a secret.
    #[test]
    fn form_percent_and_basic_forms_are_scrubbed() {
        let s = "pa ss+/&=\u{fc}-w0rd";
        remember(s);
        let form: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
        assert!(form.contains('+') && !scrub(&format!("client_secret={form}&x")).contains("w0rd"));
        let pct = form.replace('+', "%20");
        assert!(!scrub(&format!("got {pct} here")).contains("w0rd"));
        remember_basic("cli ent", s);
        use base64::Engine;
        for pair in [format!("cli+ent:{form}"), format!("cli ent:{s}")] {
            let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
            assert_eq!(scrub(&format!("Basic {b64}")), "Basic [REDACTED]");
        }
    }

    #[test]
    fn longer_secrets_win_over_their_prefixes() {
        remember("prefix-secret");
        remember("prefix-secret-longer");
        assert_eq!(scrub("prefix-secret-longer"), "[REDACTED]");
    }
}
