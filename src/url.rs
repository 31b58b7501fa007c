//! URL rules shared by configuration and the protocol: which transports may carry a token,
//! how paths are joined and how an id becomes one path segment.

use crate::error::{Error, Result};
use reqwest::Url;

pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// Whether `url` is plain http to a loopback host (the exemption from
/// `DCR_ALLOW_INSECURE_HTTP`).
pub fn is_loopback_http(url: &Url) -> bool {
    url.scheme() == "http" && url.host_str().is_some_and(is_loopback_host)
}

/// Plain http is refused unless the host is loopback or the operator opted in: a bearer token
/// over cleartext across a real network is a leak.
pub fn check_transport(what: &str, url: &Url, allow_insecure_http: bool) -> Result<()> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_http || is_loopback_http(url) => Ok(()),
        "http" => Err(Error::Config(format!(
            "{what} uses plain http:// to the non-loopback host {:?}; use https, or set \
             DCR_ALLOW_INSECURE_HTTP=true on a trusted internal network (e.g. a compose network)",
            url.host_str().unwrap_or("")
        ))),
        other => Err(Error::Config(format!(
            "{what}: unsupported URL scheme {other:?} (expected https or http)"
        ))),
    }
}

/// Why a configured URL is unusable. Never quotes userinfo, which may hold a password.
pub fn parse_absolute(v: &str) -> std::result::Result<Url, &'static str> {
    let url = Url::parse(v.trim()).map_err(|_| "expected an absolute http(s) URL")?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err("expected an absolute http(s) URL with a host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain user:password@ credentials");
    }
    if url.fragment().is_some() || url.query().is_some() {
        return Err("expected a URL without query or fragment");
    }
    Ok(url)
}

/// `url` without userinfo, query or fragment: safe to print in an error.
pub fn redacted(raw: &str) -> String {
    match Url::parse(raw.trim()) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            let hidden = u.query().is_some() || u.fragment().is_some();
            u.set_query(None);
            u.set_fragment(None);
            if hidden {
                format!("{u}?…")
            } else {
                u.to_string()
            }
        }
        // Not a URL: nothing in it can be told apart from a password (a user-info part
        // that did not parse, a token in a path), so at most the scheme is shown.
        Err(_) => match raw.trim().split_once("://") {
            Some((scheme, _))
                if !scheme.is_empty()
                    && scheme.len() <= 16
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
            {
                format!("{scheme}://…")
            }
            _ => "…".to_string(),
        },
    }
}

/// Joins `path` to the base URL, keeping any path prefix the base has (a reverse proxy mount).
pub fn join(base: &Url, path: &str) -> Url {
    let mut u = base.clone();
    let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
    u.set_path(&joined);
    u
}

/// One URL path segment: RFC 3986 unreserved characters pass, everything else is
/// percent-encoded.
pub fn segment(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Fills `{placeholder}` in an endpoint template with `id` as one path segment. `None` for an
/// id that cannot be one: empty, `.` or `..` (URL parsers resolve them, even percent-encoded,
/// so an admin call would land on another route).
pub fn fill(template: &str, placeholder: &str, id: &str) -> Option<Url> {
    if matches!(id, "" | "." | "..") {
        return None;
    }
    Url::parse(&template.replace(placeholder, &segment(id))).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_cannot_climb() {
        assert!(fill("https://idp/admin/clients/{id}/tokens", "{id}", "..").is_none());
        assert!(fill("https://idp/admin/clients/{id}/tokens", "{id}", ".").is_none());
        let u = fill("https://idp/c/{id}", "{id}", "a/b?c").unwrap();
        assert_eq!(u.as_str(), "https://idp/c/a%2Fb%3Fc");
    }

    #[test]
    fn redaction_hides_userinfo_and_query() {
        let r = redacted("https://user:hunter2@idp.example/x?token=abc");
        assert!(
            !r.contains("hunter2") && !r.contains("abc") && !r.contains("user"),
            "{r}"
        );
        assert!(!redacted("not a url?token=abc").contains("abc"));
    }
}
