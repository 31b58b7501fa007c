//! What real, independently written DCR servers do that our emulator otherwise does not
//! (docs/interop.md): each behaviour is an emulator quirk, and each test here
//! pins what dcr-bootstrap does about it. `real_servers.rs` runs the same flows against the
//! servers themselves.

use crate::common::*;
use dcr_idp_emulator::{Config, Fault, FaultAction, Profile, Quirks};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

fn quirky(q: Quirks) -> Harness {
    Harness::with(Config {
        quirks: q,
        ..emulator_config()
    })
}

fn secret_client_env(h: &Harness) -> BTreeMap<String, String> {
    let mut env = h.env();
    env.insert(
        "DCR_TOKEN_ENDPOINT_AUTH_METHOD".into(),
        "client_secret_basic".into(),
    );
    env
}

// 1. Every restart is an update: a one-element array, a scope not echoed, a grant added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normalised_metadata_is_not_drift_and_the_secret_survives_restarts() {
    let h = quirky(Quirks {
        auth_method_as_array: true,
        forget_scope: true,
        add_grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        new_secret_on_update: true,
        ..Quirks::default()
    });
    let env = secret_client_env(&h);
    h.run(&env).await.assert_code(0);
    let secret = h.output_json()["client_secret"].clone();
    for _ in 0..3 {
        let run = h.run(&env).await;
        run.assert_code(0);
        assert!(run.stderr.contains("verified client"), "{}", run.stderr);
    }
    assert_eq!(h.stats().clients_updated, 0, "a restart sent an update");
    assert_eq!(
        h.output_json()["client_secret"],
        secret,
        "the app's secret changed"
    );
    // Real drift goes out as a PUT the server accepts (its one-element array sent back as a
    // string), and the new secret it issues is what the output holds and proves.
    let mut env = env;
    env.insert("DCR_UPDATE_METHOD".into(), "put".into());
    env.insert("DCR_CLIENT_NAME".into(), "renamed".into());
    let run = h.run(&env).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("authenticates at the token endpoint"),
        "{}",
        run.stderr
    );
    assert_ne!(h.output_json()["client_secret"], secret);
    assert_eq!(h.emu.clients()[0].1["client_name"], "renamed");
}

// A value we asked for before and no longer want is still removed; a correction the server
// normalises back is sent once, not on every start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correction_the_server_undoes_is_sent_once() {
    // A server that never keeps the scope email.
    let h2 = Harness::with(Config {
        drop_scopes: vec!["email".into()],
        ..emulator_config()
    });
    let mut env2 = h2.env();
    env2.insert("DCR_SCOPE".into(), "openid profile".into());
    h2.run(&env2).await.assert_code(0);
    env2.insert("DCR_SCOPE".into(), "openid profile email".into());
    let run = h2.run(&env2).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("not sending that correction again"),
        "{}",
        run.stderr
    );
    // The PATCH changed nothing, so that run also tried a PUT: two updates, then none.
    assert_eq!(h2.stats().clients_updated, 2);
    h2.run(&env2).await.assert_code(0);
    h2.run(&env2).await.assert_code(0);
    assert_eq!(
        h2.stats().clients_updated,
        2,
        "the same correction was sent again"
    );
}

// 2. Strict read-back no longer leaves an orphan: recorded first, then exit 3 naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_readback_records_the_client_before_failing() {
    let h = quirky(Quirks {
        add_grant_types: vec!["refresh_token".into()],
        ..Quirks::default()
    });
    let mut env = h.env();
    env.insert("DCR_GRANT_TYPES".into(), "authorization_code".into());
    env.insert("DCR_STRICT_READBACK".into(), "true".into());
    let run = h.run(&env).await;
    run.assert_code(3);
    let id = h.emu.clients()[0].0.clone();
    assert!(
        run.stderr.contains(&id),
        "the message names the client: {}",
        run.stderr
    );
    assert_eq!(h.output_json()["client_id"], id.as_str(), "not recorded");
}

// 3. A lost registration answer with DCR_CLIENT_ID and a reusable IAT at a server that
//    ignores requested ids: never re-sent (that would duplicate), the orphan named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_at_a_server_that_ignores_client_ids_is_not_re_sent() {
    let h = Harness::with(Config {
        profile: Profile::Rfc7591,
        quirks: Quirks {
            ignore_client_id: true,
            ..Quirks::default()
        },
        ..emulator_config()
    });
    h.emu.push_fault(Fault::action_on(
        "/register",
        1,
        FaultAction::DropAfterCommit,
    ));
    let iat = h.emu.mint_iat(Duration::from_secs(600), 5);
    let mut env = h.env();
    env.remove("BOOTSTRAP_ADMIN_TOKEN");
    env.insert("DCR_PROFILE".into(), "rfc7591".into());
    env.insert("DCR_IAT".into(), iat);
    env.insert("DCR_CLIENT_ID".into(), "bff-server".into());
    let run = h.run(&env).await;
    run.assert_code(3);
    assert!(run.stderr.contains("orphaned client"), "{}", run.stderr);
    assert_eq!(
        h.stats().clients_registered,
        1,
        "a duplicate was registered"
    );

    // Without the fault: registered, and the ignored id is said out loud.
    let h = Harness::with(Config {
        profile: Profile::Rfc7591,
        quirks: Quirks {
            ignore_client_id: true,
            ..Quirks::default()
        },
        ..emulator_config()
    });
    let mut env2 = env.clone();
    env2.insert(
        "DCR_IAT".into(),
        h.emu.mint_iat(Duration::from_secs(600), 5),
    );
    env2.insert("IDP_BASE_URL".into(), h.emu.base_url());
    env2.insert("DCR_OUTPUT".into(), h.out().display().to_string());
    let run = h.run(&env2).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("ignored the requested client_id"),
        "{}",
        run.stderr
    );
}

// 4. A user's EC key with DCR_KEY_ALG unset is kept, kid and all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_ec_key_is_kept_when_no_algorithm_is_configured() {
    let other = Harness::new();
    let key = other.dir.path().join("user.pem");
    let mut env = other.env();
    env.insert("DCR_SIGNING_KEY".into(), key.display().to_string());
    env.insert("DCR_KEY_ALG".into(), "ES256".into());
    other.run(&env).await.assert_code(0);
    let thumbprint = other.output_json()["dcr_bootstrap"]["signing_key"]["kid"].clone();

    let h = Harness::new();
    let user_key = h.dir.path().join("keys/bff.pem");
    std::fs::create_dir_all(user_key.parent().unwrap()).unwrap();
    std::fs::copy(&key, &user_key).unwrap();
    let mut env = h.env();
    env.insert("DCR_SIGNING_KEY".into(), user_key.display().to_string());
    h.run(&env).await.assert_code(0);
    let doc = h.output_json();
    assert_eq!(doc["dcr_bootstrap"]["signing_key"]["alg"], "ES256");
    assert_eq!(doc["dcr_bootstrap"]["signing_key"]["kid"], thumbprint);
    assert_eq!(doc["jwks"]["keys"][0]["kty"], "EC");
    assert_eq!(doc["jwks"]["keys"].as_array().unwrap().len(), 1);
}

// 5. No PATCH: 405, 404, or an empty 200 that changes nothing, all end in a PUT that the
//    read-back confirms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_patch_is_updated_with_put() {
    for q in [
        Quirks {
            patch_status: Some(405),
            ..Quirks::default()
        },
        Quirks {
            patch_status: Some(404),
            ..Quirks::default()
        },
        Quirks {
            patch_noop: true,
            ..Quirks::default()
        },
    ] {
        let label = format!("{q:?}");
        let h = quirky(q);
        let mut env = h.env();
        h.run(&env).await.assert_code(0);
        env.insert(
            "DCR_REDIRECT_URIS".into(),
            "https://new.example/auth/callback".into(),
        );
        let run = h.run(&env).await;
        run.assert_code(0);
        assert!(
            run.stderr.contains("updated client"),
            "{label}: {}",
            run.stderr
        );
        let (method, _) = h.emu.last_update().unwrap();
        assert_eq!(method, "PUT", "{label}");
        let held = &h.emu.clients()[0].1["redirect_uris"];
        assert_eq!(
            held,
            &json!(["https://new.example/auth/callback"]),
            "{label}"
        );
    }
}

// 6. A lost update answer at a server that rotates the token on every update: the next start
//    does not call the client gone, and no second client is registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_update_answer_never_leads_to_a_second_client() {
    let h = Harness::with(Config {
        rotate_rat_on_update: true,
        ..emulator_config()
    });
    let mut env = h.env();
    env.insert("DCR_UPDATE_METHOD".into(), "put".into());
    h.run(&env).await.assert_code(0);
    // The update commits and rotates the token, but its answer is lost.
    h.emu.push_fault(Fault {
        method: Some("PUT".into()),
        ..Fault::action_on("/api/oidc/register/", 1, FaultAction::DropAfterCommit)
    });
    env.remove("BOOTSTRAP_ADMIN_TOKEN");
    env.insert("DCR_SCOPE".into(), "openid".into());
    env.insert("DCR_ON_STALE".into(), "reregister".into());
    // The token died in the lost answer, but the credentials are proven: the app can start
    // with them, nothing is registered, and the log says what restores management, on this
    // run and the next.
    let run = h.run(&env).await;
    run.assert_code(0);
    assert!(run.stderr.contains("most likely rotated"), "{}", run.stderr);
    let run = h.run(&env).await;
    run.assert_code(0);
    assert_eq!(h.output_json()["dcr_bootstrap"]["action"], "unmanaged");
    assert!(run.stderr.contains("the client exists"), "{}", run.stderr);
    assert!(run.stderr.contains("most likely rotated"), "{}", run.stderr);
    assert_eq!(h.stats().clients_registered, 1, "a second client");
}

// 7. Token errors as 400 access_denied: told apart from a gone client; force-replace does not
//    fail forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_token_error_is_a_refused_token_not_a_gone_client() {
    let h = quirky(Quirks {
        token_error_400: true,
        ..Quirks::default()
    });
    let mut env = secret_client_env(&h);
    h.run(&env).await.assert_code(0);
    let id = h.output_json()["client_id"].as_str().unwrap().to_string();
    h.emu.revoke_rat(&id);
    env.remove("BOOTSTRAP_ADMIN_TOKEN");
    env.insert("DCR_ON_STALE".into(), "reregister".into());
    let run = h.run(&env).await;
    run.assert_code(0);
    assert!(run.stderr.contains("the client exists"), "{}", run.stderr);
    assert_eq!(h.stats().clients_registered, 1);
    // A hard reset of a client that cannot be deleted would leave it live beside a new one:
    // exit 3, the files kept. A 404 at the re-issue route proves nothing about the client.
    env.insert("BOOTSTRAP_ADMIN_TOKEN".into(), ADMIN_TOKEN.into());
    env.insert("DCR_FORCE_REPLACE".into(), "true".into());
    env.insert(
        "DCR_RAT_ENDPOINT".into(),
        format!("{}/nowhere/{{client_id}}", h.emu.base_url()),
    );
    let run = h.run(&env).await;
    run.assert_code(3);
    assert!(run.stderr.contains("not deleted"), "{}", run.stderr);
    assert!(run.stderr.contains("not proven"), "{}", run.stderr);
    assert_eq!(h.output_json()["client_id"], json!(id));
    assert_eq!(h.stats().clients_registered, 1);
}

// 8. Badly typed metadata is refused locally; a write answered by the same 500 again and
//    again is reported as such, quickly, not as an unreachable IdP after the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistyped_metadata_and_a_crashing_write_fail_fast() {
    let h = quirky(Quirks {
        crash_on_bad_types: true,
        ..Quirks::default()
    });
    let mut env = h.env();
    env.insert("DCR_CLIENT_METADATA".into(), r#"{"logo_uri": 5}"#.into());
    let run = h.run(&env).await;
    run.assert_code(2);
    assert!(run.stderr.contains("logo_uri"), "{}", run.stderr);
    assert_eq!(h.stats().requests, 0);

    let h = Harness::new();
    h.emu.push_fault(Fault::action_on(
        "/api/oidc/dcr/register",
        100,
        FaultAction::Respond {
            status: 500,
            headers: vec![],
            body: "Internal Server Error".into(),
        },
    ));
    let mut env = h.env();
    env.insert("DCR_TIMEOUT".into(), "5m".into());
    let run = h.run(&env).await;
    run.assert_code(3);
    assert!(run.stderr.contains("the same 500"), "{}", run.stderr);
    assert!(run.elapsed < Duration::from_secs(30), "{:?}", run.elapsed);
}

// 9. A key the server cannot verify is refused before anything is registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_algorithm_discovery_does_not_list_is_refused() {
    let h = Harness::with(Config {
        profile: Profile::Rfc7591,
        quirks: Quirks {
            signing_algs: Some(vec!["RS256".into(), "ES256".into()]),
            ..Quirks::default()
        },
        ..emulator_config()
    });
    let mut env = h.env();
    env.remove("BOOTSTRAP_ADMIN_TOKEN");
    env.insert("DCR_PROFILE".into(), "rfc7591".into());
    env.insert(
        "DCR_IAT".into(),
        h.emu.mint_iat(Duration::from_secs(600), 1),
    );
    env.insert(
        "DCR_SIGNING_KEY".into(),
        h.dir.path().join("keys/k.pem").display().to_string(),
    );
    env.insert("DCR_KEY_ALG".into(), "PS256".into());
    let run = h.run(&env).await;
    run.assert_code(2);
    assert!(run.stderr.contains("DCR_KEY_ALG"), "{}", run.stderr);
    assert_eq!(h.stats().clients_registered, 0);
    env.insert("DCR_KEY_ALG".into(), "ES256".into());
    h.run(&env).await.assert_code(0);
}

// 10. Registration with an ordinary access token (client credentials, scope dcr).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_with_a_client_credentials_token() {
    let h = Harness::with(Config {
        profile: Profile::Rfc7591,
        admin_clients: vec![("registrar".into(), "registrar-secret-9".into())],
        quirks: Quirks {
            registration_scope: Some("dcr".into()),
            ..Quirks::default()
        },
        ..emulator_config()
    });
    let mut env = h.env();
    env.remove("BOOTSTRAP_ADMIN_TOKEN");
    env.insert("DCR_PROFILE".into(), "rfc7591".into());
    env.insert("DCR_ADMIN_CLIENT_ID".into(), "registrar".into());
    env.insert(
        "DCR_ADMIN_CLIENT_SECRET".into(),
        "registrar-secret-9".into(),
    );
    env.insert("DCR_REGISTRATION_SCOPE".into(), "dcr".into());
    let run = h.run(&env).await;
    run.assert_code(0);
    assert_eq!(h.stats().clients_registered, 1);
    let reqs = h.emu.token_requests();
    assert_eq!(reqs[0].scope.as_deref(), Some("dcr"));
}

// 11. Smaller ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smaller_interop_fixes() {
    // DCR_JWKS_URI over plain http where plain http is allowed.
    let h = Harness::new();
    let mut env = h.env();
    env.insert(
        "DCR_SIGNING_KEY".into(),
        h.dir.path().join("k.pem").display().to_string(),
    );
    env.insert("DCR_JWKS_URI".into(), "http://bff:8000/jwks".into());
    env.insert("DCR_ALLOW_INSECURE_HTTP".into(), "true".into());
    h.run_args(&env, &["check"]).await.assert_code(0);

    // A 404 at the admin token endpoint names DCR_TOKEN_ENDPOINT.
    let h = Harness::with(Config {
        admin_clients: vec![("a".into(), "a-secret-123".into())],
        ..emulator_config()
    });
    let mut env = h.env();
    env.remove("BOOTSTRAP_ADMIN_TOKEN");
    env.insert("DCR_ADMIN_CLIENT_ID".into(), "a".into());
    env.insert("DCR_ADMIN_CLIENT_SECRET".into(), "a-secret-123".into());
    env.insert(
        "DCR_TOKEN_ENDPOINT".into(),
        format!("{}/no/token", h.emu.base_url()),
    );
    let run = h.run(&env).await;
    run.assert_code(3);
    assert!(
        run.stderr.contains("check DCR_TOKEN_ENDPOINT"),
        "{}",
        run.stderr
    );

    // The recorded registration endpoint survives an update (rfc7591: no discovery then).
    let h = Harness::with(Config {
        profile: Profile::Rfc7591,
        ..emulator_config()
    });
    let mut env = h.env();
    env.remove("BOOTSTRAP_ADMIN_TOKEN");
    env.insert("DCR_PROFILE".into(), "rfc7591".into());
    env.insert(
        "DCR_IAT".into(),
        h.emu.mint_iat(Duration::from_secs(600), 1),
    );
    h.run(&env).await.assert_code(0);
    env.insert("DCR_SCOPE".into(), "openid".into());
    env.insert("DCR_CLIENT_NAME".into(), "renamed".into());
    h.run(&env).await.assert_code(0);
    assert!(
        h.output_json()["dcr_bootstrap"]["registration_endpoint"].is_string(),
        "{}",
        h.output_json()
    );

    // An explicit empty redirect_uris for a client-credentials client.
    let h = Harness::new();
    let mut env = secret_client_env(&h);
    env.remove("DCR_REDIRECT_URIS");
    env.insert(
        "DCR_CLIENT_METADATA".into(),
        r#"{"redirect_uris": [], "grant_types": ["client_credentials"], "response_types": []}"#
            .into(),
    );
    let run = h.run(&env).await;
    run.assert_code(0);
}

// Proof: credentials the IdP refuses at the token endpoint are exit 3, and a new key is not
// promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_the_idp_refuses_are_exit_3_and_no_key_is_promoted() {
    let h = quirky(Quirks {
        refuse_client_auth: true,
        ..Quirks::default()
    });
    let mut env = h.env();
    let key = h.dir.path().join("keys/bff.pem");
    env.insert("DCR_SIGNING_KEY".into(), key.display().to_string());
    env.insert("DCR_KEY_ALG".into(), "ES256".into());
    let run = h.run(&env).await;
    run.assert_code(3);
    assert!(
        run.stderr.contains("refuses its credentials"),
        "{}",
        run.stderr
    );
    assert!(!key.exists(), "an unproven key was promoted");
    assert!(h.out().exists(), "the client is recorded");
    // Off switch.
    env.insert("DCR_VERIFY_CREDENTIALS".into(), "false".into());
    h.run(&env).await.assert_code(0);
    assert!(key.exists());
}
