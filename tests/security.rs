//! Attacks on what lies around the binary (docs/security.md): each test reproduces one finding
//! of the adversarial review against the real binary and shows it no longer works.
//! `DCR_TEST_BIN=<old build> cargo test --test tests security::` shows them failing before.

use crate::common::*;
use dcr_idp_emulator::{Config, Emulator, Fault, FaultAction};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const REGISTER: &str = "/api/oidc/dcr/register";

fn set_fields(path: &str, fields: Value) -> Fault {
    Fault::action_on(
        path,
        1,
        FaultAction::SetFields {
            fields: fields.as_object().cloned().unwrap_or_default(),
        },
    )
}

// 1. The stored output must not steer the admin token to another client, nor send tokens to
//    another host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_output_cannot_make_the_admin_token_act_on_another_client() {
    let h = Harness::new();
    // No DCR_CLIENT_ID: the IdP assigns one. The admin re-issue route is set, so that the
    // admin token could act if the program let it.
    let env = h.env_with_rat_endpoint();
    h.run(&env).await.assert_code(0);
    let (victim_id, victim_uri, _) = victim(&h).await;
    let before = h.emu.clients();

    // Whoever can write the volume points our record at the victim.
    let mut doc = h.output_json();
    doc["client_id"] = json!(victim_id);
    doc["registration_client_uri"] = json!(victim_uri);
    doc["registration_access_token"] = json!("a-token-the-idp-refuses");
    write_json(&h.out(), &doc);
    let run = h.run(&env).await;
    run.assert_code(3);
    assert!(run.stderr.contains("not proven"), "{}", run.stderr);
    let s = h.stats();
    assert_eq!(
        s.rats_reissued, 0,
        "the admin token re-issued the victim's token"
    );
    assert_eq!(s.clients_updated, 0);
    assert_eq!(h.emu.clients(), before, "the victim was changed");

    // Same edit, but the URI on another host: nothing is sent there.
    let evil = Emulator::start(loopback(), emulator_config()).unwrap();
    let mut doc = h.output_json();
    doc["client_id"] = json!(victim_id);
    doc["registration_client_uri"] = json!(format!("{}/api/oidc/register/x", evil.base_url()));
    write_json(&h.out(), &doc);
    let run = h.run(&env).await;
    run.assert_code(3);
    assert!(
        run.stderr.contains("not at the IdP's origin"),
        "{}",
        run.stderr
    );
    assert_eq!(evil.stats().requests, 0, "a token went to another host");
}

// 2. IdP values cannot inject variables into the dotenv view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_client_secret_cannot_inject_a_dotenv_variable() {
    let h = Harness::new();
    h.emu.push_fault(set_fields(
        REGISTER,
        json!({"client_secret": "s3' LD_PRELOAD=/opt/evil.so #$(id)"}),
    ));
    let mut env = h.env();
    let dotenv = h.dir.path().join("keys/bff.env");
    env.insert("DCR_ENV_OUTPUT".into(), dotenv.display().to_string());
    env.insert(
        "DCR_TOKEN_ENDPOINT_AUTH_METHOD".into(),
        "client_secret_basic".into(),
    );
    // The hostile value is only in the answer, so the IdP would refuse it at the token
    // endpoint; this test is about the dotenv view.
    env.insert("DCR_VERIFY_CREDENTIALS".into(), "false".into());
    let run = h.run(&env).await;
    run.assert_code(3);
    assert!(run.stderr.contains("DCR_ENV_OUTPUT"), "{}", run.stderr);
    assert!(
        !dotenv.exists(),
        "a dotenv with the hostile value was written"
    );
    // The client is recorded, not orphaned.
    assert_eq!(h.output_json()["client_id"], h.emu.clients()[0].0);

    // A plain value is read back identically by POSIX sh.
    let h = Harness::new();
    let dotenv = h.dir.path().join("keys/bff.env");
    let mut env = h.env();
    env.insert("DCR_ENV_OUTPUT".into(), dotenv.display().to_string());
    env.insert(
        "DCR_TOKEN_ENDPOINT_AUTH_METHOD".into(),
        "client_secret_basic".into(),
    );
    h.run(&env).await.assert_code(0);
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            ". '{}' && printf '%s|%s' \"$AUTH_CLIENT_ID\" \"$AUTH_CLIENT_SECRET\"",
            dotenv.display()
        ))
        .output()
        .unwrap();
    let doc = h.output_json();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "{}|{}",
            doc["client_id"].as_str().unwrap(),
            doc["client_secret"].as_str().unwrap()
        )
    );
}

// 3. and 14. IdP ids and tokens with control characters are refused: no forged log line, no
//    NUL in a file, no token that fails every later run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_from_the_idp_are_refused_at_once() {
    let h = Harness::new();
    h.emu.push_fault(set_fields(
        REGISTER,
        json!({"client_id": "evil\n2026-01-01T00:00:00Z  INFO FORGED registered client x"}),
    ));
    let run = h.run(&h.env()).await;
    run.assert_code(3);
    assert!(
        !run.stderr
            .lines()
            .any(|l| l.contains("FORGED") && l.starts_with("2026-01-01")),
        "a forged line: {}",
        run.stderr
    );

    let h = Harness::new();
    h.emu.push_fault(set_fields(
        REGISTER,
        json!({"registration_access_token": "rat\u{0}x"}),
    ));
    let run = h.run(&h.env()).await;
    run.assert_code(3);
    assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);
    assert!(run.stderr.contains("control characters"), "{}", run.stderr);
}

// 4. The scrubber catches JSON-escaped and short secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escaped_and_short_secrets_never_reach_the_logs() {
    for iat in [r#"iat"with\quote-and-backslash"#, "k3y"] {
        let h = Harness::new();
        // An IdP whose error text echoes the token it refused.
        h.emu.push_fault(Fault::action_on(
            REGISTER,
            1,
            FaultAction::Respond {
                status: 400,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: json!({"error": "invalid_client_metadata",
                             "error_description": format!("bad token {iat} here")})
                .to_string(),
            },
        ));
        let mut env = h.env();
        env.remove("BOOTSTRAP_ADMIN_TOKEN");
        env.insert("DCR_IAT".into(), iat.into());
        env.insert("DCR_LOG_FORMAT".into(), "json".into());
        env.insert("RUST_LOG".into(), "trace".into());
        let run = h.run(&env).await;
        run.assert_code(3);
        let escaped = serde_json::to_string(iat).unwrap();
        let escaped = &escaped[1..escaped.len() - 1];
        assert!(run.stderr.contains("bad token"), "{}", run.stderr);
        assert!(
            !run.stderr.contains(escaped) && !run.stderr.contains(iat),
            "{iat:?} leaked: {}",
            run.stderr
        );
    }
}

// 5. The lock file is never followed through a planted link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlinked_lock_file_is_refused_and_nothing_is_created_behind_it() {
    let h = Harness::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("created-through-the-link");
    std::fs::create_dir_all(h.out().parent().unwrap()).unwrap();
    let mut lock = h.out().into_os_string();
    lock.push(".lock");
    std::os::unix::fs::symlink(&target, &lock).unwrap();
    let run = h.run(&h.env()).await;
    run.assert_code(5);
    assert!(run.stderr.contains("symbolic link"), "{}", run.stderr);
    assert!(!target.exists(), "a file was created through the link");
    assert_eq!(h.stats().requests, 0);
}

// 6. Credentials files others could have written are refused; too-open modes are narrowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_others_may_write_are_refused_and_wider_ones_narrowed() {
    let h = Harness::new();
    let dotenv = h.dir.path().join("keys/bff.env");
    let mut env = h.env();
    env.insert("DCR_ENV_OUTPUT".into(), dotenv.display().to_string());
    h.run(&env).await.assert_code(0);
    let mode =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();

    // 0644 left by hand: the run narrows it back to 0600, for the output and the dotenv.
    mode(&h.out(), 0o644);
    mode(&dotenv, 0o644);
    h.run(&env).await.assert_code(0);
    assert_eq!(file_mode(&h.out()), 0o600);
    assert_eq!(file_mode(&dotenv), 0o600);

    // Writable by every local user: someone else may have written it; refused before any
    // request. Group-writable by our own group (a kubelet fsGroup pass) is tolerated and
    // narrowed again; by another group it is refused (volume::, needs root for chgrp).
    for f in [h.out(), dotenv.clone()] {
        mode(&f, 0o666);
        let requests = h.stats().requests;
        let run = h.run(&env).await;
        run.assert_code(5);
        assert!(
            run.stderr.contains("every local user may write"),
            "{}",
            run.stderr
        );
        if f == h.out() {
            assert_eq!(h.stats().requests, requests, "a request was made");
        }
        mode(&f, 0o660);
    }
    h.run(&env).await.assert_code(0);
    assert_eq!(file_mode(&h.out()), 0o600);
    assert_eq!(file_mode(&dotenv), 0o600);

    // A world-readable mode needs an explicit opt-in.
    env.insert("DCR_OUTPUT_MODE".into(), "0644".into());
    let run = h.run(&env).await;
    run.assert_code(2);
    assert!(
        run.stderr.contains("DCR_OUTPUT_WORLD_READABLE"),
        "{}",
        run.stderr
    );
    env.insert("DCR_OUTPUT_WORLD_READABLE".into(), "true".into());
    h.run(&env).await.assert_code(0);
    assert_eq!(file_mode(&h.out()), 0o644);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (chown to another uid)"]
async fn an_output_owned_by_another_uid_is_refused() {
    let h = Harness::new();
    h.run(&h.env()).await.assert_code(0);
    std::os::unix::fs::chown(h.out(), Some(4242), None).expect("chown needs root");
    let run = h.run(&h.env()).await;
    run.assert_code(5);
    assert!(run.stderr.contains("owned by uid 4242"), "{}", run.stderr);
}

// 7. Stored key paths cannot make the run delete a file outside its key files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_key_path_outside_the_key_files_is_never_deleted() {
    // Another key, somewhere else on the volume, that must survive.
    let other = Harness::new();
    let other_key = other.dir.path().join("precious.pem");
    let mut env = other.env();
    env.insert("DCR_SIGNING_KEY".into(), other_key.display().to_string());
    env.insert("DCR_KEY_ALG".into(), "ES256".into());
    other.run(&env).await.assert_code(0);
    let other_record = other.output_json()["dcr_bootstrap"]["signing_keys"][0].clone();

    let h = Harness::new();
    let mut env = h.env();
    let key = h.dir.path().join("keys/bff.pem");
    env.insert("DCR_SIGNING_KEY".into(), key.display().to_string());
    env.insert("DCR_KEY_ALG".into(), "ES256".into());
    h.run(&env).await.assert_code(0);
    // The record says an old, long retired key lives at the precious file.
    let mut doc = h.output_json();
    let mut planted = other_record;
    planted["created_at"] = json!("2020-01-01T00:00:00Z");
    planted["pem"] = json!(other_key);
    doc["dcr_bootstrap"]["signing_keys"]
        .as_array_mut()
        .unwrap()
        .push(planted);
    write_json(&h.out(), &doc);
    h.run(&env).await.assert_code(0);
    assert!(
        other_key.exists(),
        "a file outside the key files was deleted"
    );
}

// 8. Local reads are bounded: a FIFO or a device never hangs or floods a run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_or_a_device_as_a_file_input_fails_at_once() {
    let h = Harness::new();
    let fifo = h.dir.path().join("token-fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let cases: [(&str, &str); 3] = [
        ("BOOTSTRAP_ADMIN_TOKEN_FILE", fifo.to_str().unwrap()),
        ("DCR_CA_FILE", "/dev/zero"),
        ("DCR_CLIENT_METADATA_FILE", "/dev/zero"),
    ];
    for (var, path) in cases {
        let mut env = h.env();
        env.remove("BOOTSTRAP_ADMIN_TOKEN");
        env.insert(var.into(), path.into());
        env.insert("DCR_TIMEOUT".into(), "3s".into());
        let run = h.run(&env).await;
        run.assert_code(2);
        assert!(
            run.elapsed < Duration::from_secs(2),
            "{var}: {:?}",
            run.elapsed
        );
        assert!(run.stderr.contains(var), "{}", run.stderr);
    }
}

// 9. A proxy from the environment never carries a plain-http (token-bearing) request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_proxy_does_not_carry_cleartext_requests() {
    let h = Harness::new();
    let proxy = Emulator::start(loopback(), emulator_config()).unwrap();
    let mut env = h.env();
    env.insert("http_proxy".into(), proxy.base_url());
    env.insert("HTTP_PROXY".into(), proxy.base_url());
    env.insert("ALL_PROXY".into(), proxy.base_url());
    h.run(&env).await.assert_code(0);
    assert_eq!(
        proxy.stats().connections,
        0,
        "the admin token went through the proxy"
    );
    assert_eq!(h.stats().clients_registered, 1);
}

// 10. Discovery is trusted only for the issuer asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovery_document_for_another_issuer_is_not_used() {
    let h = Harness::with(Config {
        profile: dcr_idp_emulator::Profile::Rfc7591,
        ..emulator_config()
    });
    let evil = Emulator::start(loopback(), emulator_config()).unwrap();
    h.emu.push_fault(set_fields(
        "/.well-known/openid-configuration",
        json!({"issuer": evil.base_url(),
               "registration_endpoint": format!("{}/register", evil.base_url())}),
    ));
    let mut env: BTreeMap<String, String> = h.env();
    env.remove("BOOTSTRAP_ADMIN_TOKEN");
    env.insert("DCR_PROFILE".into(), "rfc7591".into());
    env.insert("DCR_IAT".into(), "iat-for-the-real-idp-only".into());
    let run = h.run(&env).await;
    run.assert_code(3);
    assert!(run.stderr.contains("RFC 8414"), "{}", run.stderr);
    assert_eq!(
        evil.stats().requests,
        0,
        "the IAT went to another issuer's endpoint"
    );
}

// 11. Secrets given as flags are warned about, never echoed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_given_as_a_flag_is_warned_about() {
    let h = Harness::new();
    let mut env = h.env();
    env.remove("BOOTSTRAP_ADMIN_TOKEN");
    let run = h.run_args(&env, &["--admin-token", ADMIN_TOKEN]).await;
    run.assert_code(0);
    assert!(
        run.stderr
            .contains("BOOTSTRAP_ADMIN_TOKEN was given as a command-line flag"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(ADMIN_TOKEN));
}

// 12. URL errors never echo userinfo or query tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_errors_do_not_echo_passwords_or_query_tokens() {
    let h = Harness::new();
    for (var, value) in [
        (
            "IDP_BASE_URL",
            "https://user:hunter2@idp.example/x?token=qtok123",
        ),
        ("DCR_ISSUER", "https://idp.example/?access_token=qtok123"),
        (
            "DCR_REDIRECT_URIS",
            "http://user:hunter2@app.example/cb?token=qtok123",
        ),
        (
            "DCR_JWKS_URI",
            "ftp://user:hunter2@bff.example/jwks?token=qtok123",
        ),
        // Unparseable (a port out of range): at most the scheme is shown.
        ("IDP_BASE_URL", "https://admin:hunter2@idp:99999/"),
        ("HTTPS_PROXY", "http://admin:hunter2@proxy:99999/"),
        ("PROM_PUSHGATEWAY_URL", "http://admin:hunter2@push:99999/"),
        ("DCR_REDIRECT_URIS", "https://admin:hunter2@app:99999/cb"),
        ("DCR_JWKS_URI", "https://admin:hunter2@bff:99999/jwks"),
        ("IDP_BASE_URL", "https://admin:hunter2@idp.example:99999/x"),
        ("IDP_BASE_URL", "https://qtok123@[::1"),
    ] {
        let mut env = h.env();
        env.insert(var.into(), value.into());
        if var == "DCR_JWKS_URI" {
            env.insert("DCR_SIGNING_KEY".into(), "/tmp/k.pem".into());
        }
        let run = h.run(&env).await;
        run.assert_code(2);
        assert!(run.stderr.contains(var), "{var}={value}: {}", run.stderr);
        for secret in ["hunter2", "qtok123"] {
            assert!(!run.stderr.contains(secret), "{var}: {}", run.stderr);
        }
    }
}

// 13. An IdP-chosen id of `..` cannot move an admin call to another route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dot_dot_iat_id_is_not_path_normalised_into_another_route() {
    let h = Harness::with(Config {
        profile: dcr_idp_emulator::Profile::Keycloak,
        ..emulator_config()
    });
    h.emu.push_fault(set_fields(
        "/admin/realms/demo/clients-initial-access",
        json!({"id": ".."}),
    ));
    let mut env = h.env();
    env.insert("DCR_PROFILE".into(), "keycloak".into());
    env.insert("DCR_KEYCLOAK_REALM".into(), "demo".into());
    env.insert("DCR_SCOPE".into(), "profile".into());
    let run = h.run(&env).await;
    run.assert_code(0);
    let deletes: Vec<_> = h
        .emu
        .request_log()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.path)
        .collect();
    // `..` cannot be one path segment (URL parsers resolve it even percent-encoded, and
    // the DELETE would land on /admin/realms/demo): no revocation is sent, the IAT expires.
    assert!(deletes.is_empty(), "{deletes:?}; {}", run.stderr);
    assert!(
        run.stderr.contains("could not revoke the used IAT"),
        "{}",
        run.stderr
    );
}

// Second review, finding 8: an IdP that echoes a credential in the form it received it
// (Basic, form-encoded, percent-encoded), or with the secret where the log line is cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_echoed_in_any_form_we_send_it_in_is_scrubbed() {
    use base64::Engine;
    let secret = "admin~secret+/&=ü-9w0rd";
    let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("registrar:{form}"));
    let echoes = [
        format!("Authorization: Basic {basic}"),
        format!("client_secret={form}"),
        format!("client_secret={}", form.replace('+', "%20")),
        // Where the 200-character clip cuts the line.
        format!("{}{secret}", "x".repeat(190)),
    ];
    for echo in echoes {
        let h = Harness::with(dcr_idp_emulator::Config {
            profile: dcr_idp_emulator::Profile::Rfc7591,
            admin_clients: vec![("registrar".into(), secret.into())],
            quirks: dcr_idp_emulator::Quirks {
                registration_scope: Some("dcr".into()),
                ..Default::default()
            },
            ..emulator_config()
        });
        h.emu.push_fault(Fault::action_on(
            "/token",
            1,
            FaultAction::Respond {
                status: 401,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: json!({"error": "invalid_client", "error_description": echo}).to_string(),
            },
        ));
        let mut env = h.env();
        env.remove("BOOTSTRAP_ADMIN_TOKEN");
        env.insert("DCR_PROFILE".into(), "rfc7591".into());
        env.insert("DCR_ADMIN_CLIENT_ID".into(), "registrar".into());
        env.insert("DCR_ADMIN_CLIENT_SECRET".into(), secret.into());
        env.insert("DCR_REGISTRATION_SCOPE".into(), "dcr".into());
        env.insert("RUST_LOG".into(), "trace".into());
        let run = h.run(&env).await;
        run.assert_code(3);
        assert!(run.stderr.contains("invalid_client"), "{}", run.stderr);
        for piece in ["9w0rd", "admin~se", basic.as_str(), &basic[..20]] {
            assert!(
                !run.stderr.contains(piece),
                "{piece:?} of {echo:?} leaked: {}",
                run.stderr
            );
        }
    }
}

// Second review, finding 11: a secret that `sh .` would tilde-expand is not written to the
// dotenv view (the JSON output still holds it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_sh_would_tilde_expand_is_not_written_to_the_dotenv() {
    for secret in ["~root", "abc:~root"] {
        let h = Harness::new();
        h.emu
            .push_fault(set_fields(REGISTER, json!({ "client_secret": secret })));
        let mut env = h.env();
        let dotenv = h.dir.path().join("keys/bff.env");
        env.insert("DCR_ENV_OUTPUT".into(), dotenv.display().to_string());
        env.insert("DCR_VERIFY_CREDENTIALS".into(), "false".into());
        let run = h.run(&env).await;
        run.assert_code(3);
        assert!(run.stderr.contains("home directory"), "{}", run.stderr);
        assert!(!dotenv.exists(), "{secret}: the dotenv was written");
    }
}

// Second review, finding 11: line separators and bidi overrides from the IdP never reach a
// text log raw, whether in an error text (clipped) or in a value logged as is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separators_and_bidi_overrides_from_the_idp_never_reach_the_log_raw() {
    let hidden = ['\u{2028}', '\u{2029}', '\u{202e}'];
    let h = Harness::new();
    h.emu.push_fault(set_fields(
        REGISTER,
        json!({"client_id": "evil\u{2028}2026-01-01T00:00:00Z  INFO FORGED\u{2029}\u{202e}gpj.exe"}),
    ));
    let run = h.run(&h.env()).await;
    assert!(run.stderr.contains("FORGED"), "{}", run.stderr);
    let h = Harness::new();
    h.emu.push_fault(Fault::action_on(
        REGISTER,
        1,
        FaultAction::Respond {
            status: 400,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: json!({"error": "invalid_client_metadata",
                         "error_description": "no\u{2028}2026-01-01T00:00:00Z INFO FORGED\u{202e}"})
            .to_string(),
        },
    ));
    let refused = h.run(&h.env()).await;
    refused.assert_code(3);
    for text in [&run.stderr, &refused.stderr] {
        assert!(
            !text.contains(hidden),
            "a hidden character reached the log: {text}"
        );
    }
}

// Second review, finding 11: the emulator's control routes (faults, client deletion, every
// secret) need its admin token, also after that token was revoked as an admin credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulators_control_routes_need_its_admin_token() {
    let h = Harness::new();
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}/_emulator/{p}", h.emu.base_url());
    let get = |auth: Option<&str>| {
        let mut r = http.get(url("clients"));
        if let Some(t) = auth {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(get(None).await.unwrap().status(), 401);
    assert_eq!(get(Some("guess")).await.unwrap().status(), 401);
    let fault =
        json!({"method": "POST", "path": REGISTER, "action": {"kind": "respond", "status": 418}});
    let post = |auth: &str| {
        http.post(url("faults"))
            .bearer_auth(auth)
            .header("Content-Type", "application/json")
            .body(fault.to_string())
            .send()
    };
    assert_eq!(post("guess").await.unwrap().status(), 401);
    h.run(&h.env()).await.assert_code(0);
    assert_eq!(
        h.stats().faults_fired,
        0,
        "a fault was added without the token"
    );
    assert_eq!(get(Some(ADMIN_TOKEN)).await.unwrap().status(), 200);
    // The same rule is valid: with the token it is taken.
    assert_eq!(post(ADMIN_TOKEN).await.unwrap().status(), 204);
    h.emu.revoke_admin_token();
    assert_eq!(get(Some(ADMIN_TOKEN)).await.unwrap().status(), 200);

    let open = Harness::with(Config {
        open_control: true,
        ..emulator_config()
    });
    let r = reqwest::get(format!("{}/_emulator/stats", open.emu.base_url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

// Second review, finding 11: keygen takes only kids `run` takes (a newline or `$(…)` would
// make a key no run can use) and writes nothing then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_refuses_kids_that_run_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    for kid in ["a\nb", "bff$(id)", "a b", "x;y"] {
        let mut env = BTreeMap::new();
        env.insert("DCR_SIGNING_KEY".to_string(), key.display().to_string());
        env.insert("BFF_KID".to_string(), kid.to_string());
        let run = run_bin(&env, &["keygen"]).await;
        run.assert_code(2);
        assert!(run.stderr.contains("BFF_KID"), "{}", run.stderr);
        assert!(!key.exists(), "{kid:?}: a key was written");
    }
}
