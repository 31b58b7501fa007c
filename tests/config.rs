//! Every invalid value is exit 2, names the variable, sends nothing, and echoes no secret.

use crate::common::*;

const SECRET: &str = "super-secret-admin-value-91d2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_invalid_value_is_exit_2_naming_the_variable() {
    let h = Harness::new();
    let cases: &[(&str, &str)] = &[
        ("IDP_BASE_URL", ""),
        ("IDP_BASE_URL", "not a url"),
        ("IDP_BASE_URL", "ftp://idp.example"),
        ("DCR_PROFILE", "okta"),
        ("DCR_IAT_ENDPOINT", "://x"),
        ("DCR_REGISTRATION_ENDPOINT", "relative/path"),
        ("DCR_IAT_EXPIRES_IN", "-5"),
        ("DCR_IAT_EXPIRES_IN", "ten"),
        ("DCR_IAT_MAX_USES", "0"),
        ("DCR_IAT_MAX_USES_FIELD", "uses"),
        ("DCR_CLIENT_METADATA", "{not json"),
        ("DCR_CLIENT_METADATA", "[1,2]"),
        ("DCR_CLIENT_METADATA_FILE", "/nonexistent/metadata.json"),
        ("DCR_REDIRECT_URIS", "https://a.example/cb#frag"),
        ("DCR_REDIRECT_URIS", "http://a.example/cb"),
        ("DCR_TOKEN_ENDPOINT_AUTH_METHOD", "client_secret_magic"),
        ("DCR_TOKEN_ENDPOINT_AUTH_METHOD", "private_key_jwt"),
        ("DCR_OUTPUT_MODE", "rw-------"),
        ("DCR_OUTPUT_MODE", "0200"),
        ("DCR_OUTPUT_OWNER", "bff"),
        ("DCR_ON_STALE", "sometimes"),
        ("DCR_ON_EXISTING", "merge"),
        ("DCR_RAT_ENDPOINT", "https://idp.example/no-placeholder"),
        ("DCR_KEY_ALG", "HS256"),
        ("DCR_RSA_BITS", "1024"),
        ("BFF_JWK_ROTATE_AFTER_DAYS", "soon"),
        ("BFF_JWK_MAX_KEYS", "3.5"),
        ("DCR_JWKS_URI", "http://bff.example/jwks"),
        ("DCR_UPDATE_METHOD", "post"),
        ("DCR_REDIRECT_UPDATE_MODE", "sometimes"),
        ("DCR_STRICT_READBACK", "strict"),
        ("PROM_PUSHGATEWAY_URL", "not a url"),
        ("DCR_ISSUER", "issuer"),
        ("DCR_TOKEN_ENDPOINT", "token"),
        ("DCR_ADMIN_CLIENT_SECRET_FILE", "/nonexistent/secret"),
        ("DCR_FORCE_REPLACE", "perhaps"),
        ("DCR_ALLOW_INSECURE_HTTP", "maybe"),
        ("DCR_TIMEOUT", "10"),
        ("DCR_TIMEOUT", "-1s"),
        ("DCR_REQUEST_TIMEOUT", "soon"),
        ("DCR_BACKOFF_INITIAL", "1 sec ago"),
        ("DCR_BACKOFF_MAX", "1 fortnight"),
        ("DCR_PROBE_INTERVAL", "1ms"),
        ("DCR_RETRY_AFTER_MAX", ""),
        ("DCR_LOG_FORMAT", "xml"),
        ("RUST_LOG", "dcr_bootstrap=loud"),
        ("BOOTSTRAP_ADMIN_TOKEN_FILE", "/nonexistent/token"),
        ("DCR_IAT_FILE", "/nonexistent/iat"),
        ("DCR_CA_FILE", "/nonexistent/ca.pem"),
    ];
    for (var, value) in cases {
        let mut env = h.env();
        env.insert("BOOTSTRAP_ADMIN_TOKEN".into(), SECRET.into());
        if var.ends_with("_FILE") && *var != "DCR_CLIENT_METADATA_FILE" && *var != "DCR_CA_FILE" {
            env.remove(var.trim_end_matches("_FILE"));
        }
        env.insert(var.to_string(), value.to_string());
        let run = h.run(&env).await;
        assert_eq!(run.code, Some(2), "{var}={value:?}: {}", run.logs());
        assert!(
            run.logs().contains(var),
            "{var}={value:?} not named: {}",
            run.logs()
        );
        assert!(!run.logs().contains(SECRET), "{var}: secret echoed");
    }
    assert_eq!(
        h.stats().requests,
        0,
        "nothing was sent for a bad configuration"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_a_remote_host_needs_opt_in() {
    let h = Harness::new();
    let mut env = h.env();
    env.insert("IDP_BASE_URL".into(), "http://idp-app:8002".into());
    let run = h.run(&env).await;
    run.assert_code(2);
    assert!(
        run.logs().contains("DCR_ALLOW_INSECURE_HTTP"),
        "{}",
        run.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_tokens_without_a_stored_registration_is_exit_2() {
    let h = Harness::new();
    let mut env = h.env();
    env.remove("BOOTSTRAP_ADMIN_TOKEN");
    let run = h.run(&env).await;
    run.assert_code(2);
    assert!(run.logs().contains("DCR_IAT") && run.logs().contains("BOOTSTRAP_ADMIN_TOKEN"));
    assert_eq!(h.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_lists_every_variable_and_no_secret_value() {
    let h = Harness::new();
    // Only secrets set: help shows current values of plain variables, never of secrets.
    let mut env = std::collections::BTreeMap::new();
    env.insert("BOOTSTRAP_ADMIN_TOKEN".to_string(), SECRET.to_string());
    env.insert("DCR_IAT".to_string(), SECRET.to_string());
    let run = h.run_args(&env, &["--help"]).await;
    run.assert_code(0);
    assert!(!run.logs().contains(SECRET));
    // Every variable of the reference (itself checked against the code by a unit test).
    let reference = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .unwrap();
    let documented: Vec<String> = reference
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(v, _)| v.to_string()))
        .filter(|v| {
            v.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .collect();
    assert!(documented.len() > 70, "{documented:?}");
    for var in documented {
        assert!(
            run.stdout.contains(&format!("[env: {var}")),
            "{var} missing from --help"
        );
    }
}
