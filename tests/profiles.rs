//! The IdPs people run (Keycloak has its own module): any RFC 7591/7592 server by discovery, open registration,
//! an admin token by client credentials, and public-URL rewriting.

use crate::common::*;
use dcr_idp_emulator::{Config, Fault, FaultAction, Profile};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

fn rfc7591(open: bool) -> Harness {
    Harness::with(Config {
        profile: Profile::Rfc7591,
        open_registration: open,
        ..emulator_config()
    })
}

fn rfc7591_env(h: &Harness) -> BTreeMap<String, String> {
    let mut env = h.env();
    env.insert("DCR_PROFILE".into(), "rfc7591".into());
    env.remove("BOOTSTRAP_ADMIN_TOKEN");
    env.insert("DCR_IAT".into(), "none".into());
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc7591_open_registration_by_discovery_then_verify_then_put() {
    let h = rfc7591(true);
    let mut env = rfc7591_env(&h);
    let run = h.run(&env).await;
    run.assert_code(0);
    assert!(run.stderr.contains("discovery at"), "{}", run.stderr);
    let s = h.stats();
    assert_eq!((s.clients_registered, s.iats_minted), (1, 0));
    assert!(s.discovery_served >= 1);
    assert!(
        h.output_json()["registration_client_uri"]
            .as_str()
            .unwrap()
            .contains("/register/")
    );
    h.run(&env).await.assert_code(0);
    assert_eq!(h.stats().clients_registered, 1);
    assert!(h.stats().clients_read >= 1);
    env.insert("DCR_REDIRECT_URIS".into(), "https://new.example/cb".into());
    h.run(&env).await.assert_code(0);
    assert_eq!(h.emu.last_update().unwrap().0, "PUT");
    assert_eq!(
        h.emu.clients()[0].1["redirect_uris"],
        json!(["https://new.example/cb"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc7591_with_a_required_token() {
    let h = rfc7591(false);
    let mut env = rfc7591_env(&h);
    let run = h.run(&env).await;
    run.assert_code(3);
    assert!(run.stderr.contains("requires a token"), "{}", run.stderr);
    env.insert(
        "DCR_IAT".into(),
        h.emu.mint_iat(Duration::from_secs(600), 1),
    );
    h.run(&env).await.assert_code(0);
    assert_eq!(h.stats().clients_registered, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_failures() {
    let well_known = "/.well-known/";
    let cases: Vec<(&str, Vec<Fault>, i32, &str)> = vec![
        (
            "404 on both documents",
            vec![Fault::status(well_known, 404, 2, None)],
            3,
            "no discovery document",
        ),
        (
            "not JSON",
            vec![Fault::action_on(
                well_known,
                1,
                FaultAction::Respond {
                    status: 200,
                    headers: vec![],
                    body: "<html>login</html>".into(),
                },
            )],
            3,
            "not a JSON object",
        ),
        (
            "no registration_endpoint",
            vec![Fault::action_on(
                well_known,
                1,
                FaultAction::OmitFields {
                    fields: vec!["registration_endpoint".into()],
                },
            )],
            3,
            "no registration_endpoint",
        ),
        (
            "503 while the IdP starts",
            vec![Fault::status(well_known, 503, 3, None)],
            0,
            "discovery failed (503",
        ),
        (
            "OIDC document missing, RFC 8414 found",
            vec![Fault::status(
                "/.well-known/openid-configuration",
                404,
                1,
                None,
            )],
            0,
            "oauth-authorization-server",
        ),
    ];
    for (name, faults, code, says) in cases {
        let h = rfc7591(true);
        for f in faults {
            h.emu.push_fault(f);
        }
        let run = h.run(&rfc7591_env(&h)).await;
        assert_eq!(run.code, Some(code), "[{name}] {}", run.stderr);
        assert!(
            run.stderr.contains(says),
            "[{name}] lacks {says:?}: {}",
            run.stderr
        );
        assert_eq!(
            h.stats().clients_registered,
            u64::from(code == 0),
            "[{name}]"
        );
    }
}

fn with_admin_client() -> Harness {
    Harness::with(Config {
        admin_clients: vec![("bootstrap-admin".into(), "admin-client-secret-4711".into())],
        ..emulator_config()
    })
}

fn admin_client_env(h: &Harness, method: &str) -> BTreeMap<String, String> {
    let mut env = h.env();
    env.remove("BOOTSTRAP_ADMIN_TOKEN");
    env.insert("DCR_ADMIN_CLIENT_ID".into(), "bootstrap-admin".into());
    env.insert(
        "DCR_ADMIN_CLIENT_SECRET".into(),
        "admin-client-secret-4711".into(),
    );
    env.insert("DCR_ADMIN_AUTH_METHOD".into(), method.into());
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_by_client_credentials_basic_and_post() {
    for method in ["client_secret_basic", "client_secret_post"] {
        let h = with_admin_client();
        let mut env = admin_client_env(&h, method);
        env.insert(
            "DCR_ADMIN_RESOURCE".into(),
            "https://idp.example/api/admin".into(),
        );
        env.insert("RUST_LOG".into(), "trace".into());
        let run = h.run(&env).await;
        run.assert_code(0);
        // The admin client's requests (the run also proves the new client's credentials).
        let reqs: Vec<_> = h
            .emu
            .token_requests()
            .into_iter()
            .filter(|r| r.client_id == "bootstrap-admin")
            .collect();
        assert_eq!(reqs.len(), 1, "{method}");
        assert_eq!(reqs[0].auth_method, method);
        assert_eq!(reqs[0].client_id, "bootstrap-admin");
        assert_eq!(
            reqs[0].scope.as_deref(),
            Some("admin.api"),
            "empowernow's default scope"
        );
        assert_eq!(
            reqs[0].resource.as_deref(),
            Some("https://idp.example/api/admin")
        );
        assert_eq!(h.stats().clients_registered, 1);
        let mut secrets = h.emu.issued_secrets();
        secrets.push("admin-client-secret-4711".into());
        assert_no_secrets(&run.logs(), &secrets);
    }
    // A wrong secret: exit 3 naming the admin client settings.
    let h = with_admin_client();
    let mut env = admin_client_env(&h, "client_secret_basic");
    env.insert("DCR_ADMIN_CLIENT_SECRET".into(), "wrong".into());
    let run = h.run(&env).await;
    run.assert_code(3);
    assert!(
        run.stderr.contains("DCR_ADMIN_CLIENT_SECRET"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_token_that_expires_during_a_long_wait_is_fetched_again() {
    let h = Harness::with(Config {
        admin_clients: vec![("bootstrap-admin".into(), "admin-client-secret-4711".into())],
        access_token_ttl: Duration::from_secs(1),
        ..emulator_config()
    });
    // The IdP asks to wait 2 s before minting: longer than the admin token lives.
    h.emu.push_fault(Fault::status(
        "/api/admin/dcr/initial-access-tokens",
        503,
        1,
        Some("2"),
    ));
    let run = h.run(&admin_client_env(&h, "client_secret_basic")).await;
    run.assert_code(0);
    let admin_tokens = h
        .emu
        .token_requests()
        .iter()
        .filter(|r| r.client_id == "bootstrap-admin")
        .count();
    assert_eq!(admin_tokens, 2, "{}", run.stderr);
    assert!(run.stderr.contains("fetching a new one"), "{}", run.stderr);
    assert_eq!(h.stats().clients_registered, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_registration_client_uri_is_rewritten_to_the_internal_base() {
    let h = Harness::with(Config {
        public_base: Some("https://idp.example.com".into()),
        ..emulator_config()
    });
    let mut env = h.env();
    env.insert(
        "DCR_REWRITE_PUBLIC_BASE".into(),
        "https://idp.example.com".into(),
    );
    h.run(&env).await.assert_code(0);
    assert!(
        h.output_json()["registration_client_uri"]
            .as_str()
            .unwrap()
            .starts_with("https://idp.example.com/")
    );
    let run = h.run(&env).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("DCR_REWRITE_PUBLIC_BASE"),
        "{}",
        run.stderr
    );
    let reads = h.stats().clients_read;
    assert!(reads >= 1);

    // Without the rewrite the public host is not this IdP: nothing reaches it (DNS fails and
    // the deadline passes, or, where the name resolves, TLS fails).
    env.remove("DCR_REWRITE_PUBLIC_BASE");
    env.insert("DCR_TIMEOUT".into(), "1s".into());
    let run = h.run(&env).await;
    assert!(matches!(run.code, Some(3 | 4)), "{}", run.stderr);
    assert_eq!(
        h.stats().clients_read,
        reads,
        "the unrewritten URL never reached the emulator"
    );
}
