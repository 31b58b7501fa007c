//! The dotenv view of a registration (`DCR_ENV_OUTPUT`), for compose `env_file` and `sh .`.

/// The file's text: the client id, the secret when one was issued, and the signing key.
pub fn render(
    client_id: &str,
    client_secret: Option<&str>,
    kid: Option<&str>,
    key_path: Option<&str>,
) -> String {
    let mut out =
        String::from("# Written by dcr-bootstrap. Regenerated on every run; do not edit.\n");
    out.push_str(&format!("AUTH_CLIENT_ID={}\n", value(client_id)));
    if let Some(s) = client_secret {
        out.push_str(&format!("AUTH_CLIENT_SECRET={}\n", value(s)));
    }
    if let Some(kid) = kid {
        out.push_str(&format!("BFF_KID={kid}\n"));
    }
    if let Some(path) = key_path {
        out.push_str(&format!("BFF_JWT_SIGNING_KEY={path}\n"));
    }
    out
}

/// Bare when the value is plain; single-quoted (literal in compose and POSIX sh) otherwise.
fn value(v: &str) -> String {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._~+/=:@-".contains(c));
    if plain {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_what_needs_it() {
        let s = render("bff-server", Some("a b'c"), None, None);
        assert!(s.contains("AUTH_CLIENT_ID=bff-server\n"));
        assert!(s.contains("AUTH_CLIENT_SECRET='a b'\\''c'\n"));
        assert!(!render("x", None, None, None).contains("AUTH_CLIENT_SECRET"));
    }
}
