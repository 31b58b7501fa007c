//! Reading IdP answers: JSON bodies, one-line accounts of error answers, and the fields each
//! operation needs. Pure functions of a [`Reply`], fuzzed (`fuzz/fuzz_targets/idp_responses.rs`).

use super::http::Reply;
use crate::error::Error;
use crate::record::ClientRecord;
use serde_json::{Map, Value};

/// The top-level JSON object of a reply, if it is one.
pub fn json_object(reply: &Reply) -> Option<Map<String, Value>> {
    match serde_json::from_slice(&reply.body) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

/// A short, single-line account of an error answer: the OAuth `error`/`error_description`,
/// FastAPI's `detail`, or the start of whatever else came back.
pub fn describe(reply: &Reply) -> String {
    let status = reply.status;
    if let Some(o) = json_object(reply) {
        let s = |k: &str| o.get(k).and_then(Value::as_str);
        match (s("error"), s("error_description")) {
            (Some(e), Some(d)) => return format!("{status} {}: {}", clip(e), clip(d)),
            (Some(e), None) => return format!("{status} {}", clip(e)),
            _ => {}
        }
        if let Some(d) = o.get("detail") {
            let text = d
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| d.to_string());
            return format!("{status} {}", clip(&text));
        }
    }
    if reply.body.is_empty() {
        return format!("{status} with an empty body");
    }
    format!(
        "{status} with a {} body: {}",
        content_type(reply),
        clip(&String::from_utf8_lossy(&reply.body))
    )
}

/// One line of at most 200 characters, hidden characters blanked: IdP text goes into logs.
pub fn clip(s: &str) -> String {
    // Scrubbed before it is cut: a secret cut in half no longer matches the scrubber.
    let one_line: String = crate::secret::scrub(s)
        .chars()
        .map(|c| if crate::logging::is_hidden(c) { ' ' } else { c })
        .collect();
    let trimmed = one_line.split_whitespace().collect::<Vec<_>>().join(" ");
    if trimmed.chars().count() > 200 {
        format!("{}…", trimmed.chars().take(200).collect::<String>())
    } else {
        trimmed
    }
}

fn content_type(reply: &Reply) -> &str {
    if reply.content_type.is_empty() {
        "untyped"
    } else {
        reply.content_type.as_str()
    }
}

pub fn body_kind(reply: &Reply) -> String {
    format!("{} bytes, {}", reply.body.len(), content_type(reply))
}

pub fn redirect_error(what: &str, var: &str, reply: &Reply) -> Error {
    Error::Rejected(format!(
        "{what}: the IdP answered {} with a redirect to {}; redirects are not followed, so the bearer token never goes anywhere else. Set {var} to the final URL",
        reply.status,
        reply
            .location
            .as_deref()
            .map(crate::url::redacted)
            .unwrap_or_else(|| "(no Location)".into())
    ))
}

/// RFC 7591 answers are `application/json`. A 2xx of another type that still parses is
/// accepted, with a warning: a proxy may be rewriting answers.
pub fn warn_content_type(what: &str, reply: &Reply) {
    let ct = reply.content_type.to_ascii_lowercase();
    let json = ct.starts_with("application/json")
        || (ct.starts_with("application/") && ct.contains("+json"));
    if !json {
        tracing::warn!(
            "{what}: the IdP answered {} with content type {:?}; parsed as JSON anyway",
            reply.status,
            reply.content_type
        );
    }
}

/// A bearer token as a header can carry it: non-empty, no whitespace or control characters.
pub fn usable_token(t: &str) -> bool {
    !t.is_empty() && !t.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The IAT in a successful mint answer (`token`).
pub fn parse_iat(reply: &Reply) -> Result<String, String> {
    match json_object(reply).as_ref().and_then(|o| o.get("token")) {
        Some(Value::String(t)) if usable_token(t) => Ok(t.clone()),
        Some(_) => Err("its \"token\" field is not a usable token string".into()),
        None => Err(format!(
            "its body has no \"token\" field ({})",
            body_kind(reply)
        )),
    }
}

/// A client information document (RFC 7591 §3.2.1, RFC 7592 §3).
pub fn parse_client(reply: &Reply) -> Result<ClientRecord, String> {
    let doc = json_object(reply)
        .ok_or_else(|| format!("its body is not a JSON object ({})", body_kind(reply)))?;
    ClientRecord::from_map(doc).map_err(|why| format!("its body has {why}"))
}

/// A registration access token from an admin re-issue answer (`registration_access_token`,
/// `token`, or Keycloak's `registrationAccessToken`).
pub fn parse_rat(reply: &Reply) -> Result<String, String> {
    let o = json_object(reply)
        .ok_or_else(|| format!("its body is not a JSON object ({})", body_kind(reply)))?;
    match o
        .get("registration_access_token")
        .or_else(|| o.get("registrationAccessToken"))
        .or_else(|| o.get("token"))
    {
        Some(Value::String(t)) if usable_token(t) => Ok(t.clone()),
        Some(_) => Err("its registration access token is not a usable token string".into()),
        None => Err(
            "its body has no registration_access_token, registrationAccessToken or token field"
                .into(),
        ),
    }
}

/// Did a registration fail because the requested client_id is taken? EmpowerNow's answer is
/// undocumented: a 409, or a 400 whose description says "already", is taken to mean so.
pub fn is_already_registered(reply: &Reply) -> bool {
    reply.status == 409
        || (reply.status == 400
            && json_object(reply)
                .and_then(|o| {
                    o.get("error_description")
                        .and_then(Value::as_str)
                        .map(str::to_ascii_lowercase)
                })
                .is_some_and(|d| d.contains("already")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, ct: &str, body: &str) -> Reply {
        Reply {
            status,
            retry_after: None,
            content_type: ct.into(),
            location: None,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn describes_oauth_fastapi_and_html_errors() {
        assert_eq!(
            describe(&reply(
                400,
                "application/json",
                r#"{"error":"invalid_redirect_uri","error_description":"no"}"#
            )),
            "400 invalid_redirect_uri: no"
        );
        assert_eq!(
            describe(&reply(
                401,
                "application/json",
                r#"{"detail":"Not authenticated"}"#
            )),
            "401 Not authenticated"
        );
        assert_eq!(describe(&reply(502, "", "")), "502 with an empty body");
        let html = format!("<html>\n<body>{}</body></html>", "x".repeat(500));
        let d = describe(&reply(500, "text/html", &html));
        assert!(
            d.starts_with("500 with a text/html body: <html> <body>") && d.chars().count() < 260,
            "{d}"
        );
    }
}
