//! The dotenv view of a registration (`DCR_ENV_OUTPUT`), for compose `env_file`, `sh .`,
//! python-dotenv and systemd `EnvironmentFile`.
//!
//! Those formats disagree on quoting: compose v1 and `docker --env-file` keep quotes as part
//! of the value, POSIX sh and python-dotenv strip them with different escape rules, systemd
//! has its own. The one form all of them read alike is a bare value of characters none of
//! them treats specially. So values are written bare, and a value with any other character
//! (a quote, a space, a `$`, a newline, ...) is refused rather than written in a form some
//! reader would take for more than one variable. The JSON output always holds every value.

/// Characters every dotenv reader takes literally in a bare value.
fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._~+/=:@%,-".contains(c)
}

/// The file's text: the client id, the secret when one was issued, and the signing key.
/// `Err` names the first variable whose value cannot be written safely.
pub fn render(
    client_id: &str,
    client_secret: Option<&str>,
    kid: Option<&str>,
    key_path: Option<&str>,
) -> Result<String, String> {
    let mut out =
        String::from("# Written by dcr-bootstrap. Regenerated on every run; do not edit.\n");
    for (name, value) in [
        ("AUTH_CLIENT_ID", Some(client_id)),
        ("AUTH_CLIENT_SECRET", client_secret),
        ("BFF_KID", kid),
        ("BFF_JWT_SIGNING_KEY", key_path),
    ] {
        let Some(v) = value else { continue };
        if v.is_empty() || !v.chars().all(is_plain) {
            return Err(format!(
                "{name}'s value has characters that dotenv readers disagree on (only letters, digits and \
                 ._~+/=:@%,- are written)"
            ));
        }
        // POSIX sh expands a `~` at the start of an assignment's value, and after each `:` in
        // it (`sh .` would read `~` as a home directory); other readers take it literally.
        if v.starts_with('~') || v.contains(":~") {
            return Err(format!(
                "{name}'s value has a ~ at its start or after a colon, which POSIX sh expands to a home directory"
            ));
        }
        out.push_str(&format!("{name}={v}\n"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Second review, finding 11: `sh .` tilde-expands these.
    #[test]
    fn a_tilde_sh_would_expand_is_refused() {
        for v in ["~", "~root", "~/x", "a:~", "a:~b"] {
            let e = render("id", Some(v), None, None).unwrap_err();
            assert!(
                e.contains("AUTH_CLIENT_SECRET") && e.contains('~'),
                "{v}: {e}"
            );
        }
        assert!(render("id", Some("a~b:c~"), None, None).is_ok());
    }

    #[test]
    fn plain_values_are_written_bare_and_others_refused() {
        let s = render(
            "bff-server",
            Some("s3cr3t_-.~+/="),
            Some("kid-1"),
            Some("/app/k.pem"),
        )
        .unwrap();
        assert!(s.contains("AUTH_CLIENT_ID=bff-server\n"));
        assert!(s.contains("AUTH_CLIENT_SECRET=s3cr3t_-.~+/=\n"));
        assert!(
            !render("x", None, None, None)
                .unwrap()
                .contains("AUTH_CLIENT_SECRET")
        );
        for bad in [
            "a b",
            "a'b",
            "a\"b",
            "a\nLD_PRELOAD=x",
            "a$b",
            "a`b",
            "a\\b",
            "a#b",
            "",
        ] {
            let e = render("x", Some(bad), None, None).unwrap_err();
            assert!(
                e.contains("AUTH_CLIENT_SECRET") && !e.contains(bad) || bad.is_empty(),
                "{e}"
            );
        }
        assert!(render("x", None, Some("k\nLD_PRELOAD=/opt/evil.so"), None).is_err());
    }
}
