//! Keycloak as its source behaves (the emulator's `keycloak` mode, `--keycloak-version`), one
//! test per finding read from Keycloak's source, across the version buckets where behaviour differs:
//! ≤ 23, 24, 25.0–26.7, ≥ 26.8. docs/interop.md maps each to Keycloak's source.

use crate::common::*;
use dcr_idp_emulator::{Config, Effect, Fault, FaultAction, KeycloakVersion, Profile};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const REGISTER: &str = "/realms/demo/clients-registrations/openid-connect";
const DEFAULTS: &[&str] = &["acr", "basic", "email", "profile", "roles", "web-origins"];
/// One release of each bucket.
const VERSIONS: &[&str] = &["23.0", "24.0", "26.0", "26.8"];

fn keycloak(version: &str) -> Harness {
    Harness::with(keycloak_config(version))
}

fn keycloak_config(version: &str) -> Config {
    Config {
        profile: Profile::Keycloak,
        realm: "demo".into(),
        keycloak_version: KeycloakVersion::parse(version).unwrap(),
        ..emulator_config()
    }
}

/// Keycloak whose admin token may view the system, so `/admin/serverinfo` tells the version
/// also from 26.4 on.
fn keycloak_viewing_system(version: &str) -> Harness {
    let mut cfg = keycloak_config(version);
    cfg.quirks.keycloak_view_system = true;
    Harness::with(cfg)
}

fn keycloak_env(h: &Harness) -> BTreeMap<String, String> {
    let mut env = h.env();
    env.insert("DCR_PROFILE".into(), "keycloak".into());
    env.insert("DCR_KEYCLOAK_REALM".into(), "demo".into());
    env
}

fn with_key(h: &Harness, mut env: BTreeMap<String, String>) -> BTreeMap<String, String> {
    env.insert(
        "DCR_SIGNING_KEY".into(),
        h.dir.path().join("keys/bff.pem").display().to_string(),
    );
    env.insert("DCR_CLIENT_PROFILE".into(), "code-flow-pkjwt".into());
    env
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

fn client_id(h: &Harness) -> String {
    h.output_json()["client_id"].as_str().unwrap().to_string()
}

fn puts(h: &Harness) -> usize {
    h.emu
        .request_log()
        .iter()
        .filter(|r| r.method == "PUT")
        .count()
}

/// The README's example: `DCR_SCOPE="openid profile email"` with a signing key registers
/// on every version, keeps the realm's default scopes, and a restart changes nothing (no
/// PUT: Keycloak never reports the inline jwks, and normalises what we sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_example_works_on_every_version_and_restarts_change_nothing() {
    for v in VERSIONS {
        let h = keycloak(v);
        let env = with_key(&h, keycloak_env(&h));
        assert_eq!(env["DCR_SCOPE"], "openid profile email");
        let run = h.run(&env).await;
        run.assert_code(0);
        let id = client_id(&h);
        let (defaults, _) = h.emu.client_scopes(&id).unwrap();
        let mut defaults = defaults.clone();
        defaults.sort();
        assert_eq!(defaults, sorted(DEFAULTS), "{v}: default scopes kept");
        assert!(
            run.logs()
                .contains("openid profile email not sent to Keycloak"),
            "{v}: {}",
            run.logs()
        );
        let rat = h.output_json()["registration_access_token"].clone();
        for restart in 1..=2 {
            let run = h.run(&env).await;
            run.assert_code(0);
            assert_eq!(
                puts(&h),
                0,
                "{v} restart {restart}: no update\n{}",
                run.logs()
            );
        }
        let s = h.stats();
        assert_eq!((s.clients_registered, s.clients_updated), (1, 0), "{v}");
        // Keycloak does not rotate the token on reads (it stopped in 3.x).
        assert_eq!(h.output_json()["registration_access_token"], rat, "{v}");
        assert_eq!(h.emu.current_rat(&id).as_deref(), rat.as_str(), "{v}");
        assert_eq!(s.iats_minted, 1);
        assert_eq!(s.iats_revoked, 1);
    }
}

/// docs/profiles.md's Keycloak example, as written (an admin client by client credentials,
/// a code-flow client with a generated key, the default DCR_VERIFY_CREDENTIALS) on every
/// version: it registers, a restart writes nothing, and a rotation publishes the new key beside
/// the old one, both authenticating (Keycloak keeps the whole inline JWKS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_profiles_example_registers_restarts_and_rotates_on_every_version() {
    for v in ["23.0", "24.0", "25.0", "26.0", "26.7", "26.8"] {
        let h = Harness::with(Config {
            admin_clients: vec![("dcr-bootstrap".into(), "admin-client-secret-99".into())],
            ..keycloak_config(v)
        });
        let mut env = BTreeMap::new();
        let secret = h.dir.path().join("admin-secret");
        std::fs::write(&secret, "admin-client-secret-99\n").unwrap();
        for (k, val) in [
            ("IDP_BASE_URL", h.emu.base_url()),
            ("DCR_PROFILE", "keycloak".into()),
            ("DCR_KEYCLOAK_REALM", "demo".into()),
            ("DCR_ADMIN_CLIENT_ID", "dcr-bootstrap".into()),
            ("DCR_ADMIN_CLIENT_SECRET_FILE", secret.display().to_string()),
            ("DCR_CLIENT_NAME", "bff-server".into()),
            (
                "DCR_REDIRECT_URIS",
                "https://app.example.com/auth/callback".into(),
            ),
            ("DCR_SCOPE", "openid profile email".into()),
            (
                "DCR_SIGNING_KEY",
                h.dir.path().join("keys/bff.pem").display().to_string(),
            ),
            ("DCR_OUTPUT", h.out().display().to_string()),
            ("DCR_TIMEOUT", "30s".into()),
        ] {
            env.insert(k.to_string(), val);
        }
        let run = h.run(&env).await;
        run.assert_code(0);
        assert!(
            run.stderr.contains("authenticates at the token endpoint"),
            "{v}: {}",
            run.stderr
        );
        let written = std::fs::read(h.out()).unwrap();
        let run = h.run(&env).await;
        run.assert_code(0);
        assert_eq!(
            std::fs::read(h.out()).unwrap(),
            written,
            "{v}: a restart wrote"
        );
        assert_eq!(puts(&h), 0, "{v}");
        env.insert("BFF_JWK_ROTATE_AFTER_DAYS".into(), "0".into());
        let run = h.run(&env).await;
        run.assert_code(0);
        assert!(run.stderr.contains("rotated client"), "{v}: {}", run.stderr);
        let (_, meta) = h.emu.clients().pop().unwrap();
        assert_eq!(
            meta["jwks"]["keys"].as_array().unwrap().len(),
            2,
            "{v}: overlap"
        );
        assert_eq!(h.stats().clients_registered, 1);
    }
}

/// an optional scope is sent where Keycloak keeps the default scopes (26.8+), and
/// withheld before (where sending it would replace them with `basic`): the client still has
/// every default scope and the stock optional ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_scope_is_sent_only_where_defaults_survive() {
    for (v, sent) in [
        ("24.0", false),
        ("26.7", false),
        ("26.8", true),
        ("27.0", true),
    ] {
        let h = keycloak_viewing_system(v);
        let mut env = keycloak_env(&h);
        env.insert("DCR_SCOPE".into(), "openid profile offline_access".into());
        let run = h.run(&env).await;
        run.assert_code(0);
        let id = client_id(&h);
        let (defaults, optional) = h.emu.client_scopes(&id).unwrap();
        let mut defaults = defaults.clone();
        defaults.sort();
        assert_eq!(defaults, sorted(DEFAULTS), "{v}");
        assert!(optional.contains(&"offline_access".to_string()), "{v}");
        // Sent: exactly the scope asked; withheld: the realm's stock optional scopes.
        assert_eq!(optional == ["offline_access"], sent, "{v}: {optional:?}");
        assert_eq!(
            run.logs().contains("offline_access not sent to Keycloak"),
            !sent,
            "{v}: {}",
            run.logs()
        );
        // The version came from /admin/serverinfo.
        assert!(
            run.logs().contains(&format!("Keycloak {v}")),
            "{}",
            run.logs()
        );
        h.run(&env).await.assert_code(0);
        assert_eq!(
            h.stats().clients_updated,
            0,
            "{v}: scope reads back as asked"
        );
    }
}

/// From 26.4 `/admin/serverinfo` shows no version to an admin token without view-system: the
/// version is unknown, so an optional scope is withheld (never the default scopes lost), and
/// the log says how to tell it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_26_4_the_version_is_hidden_from_a_realm_admin() {
    let h = keycloak("26.8");
    let mut env = keycloak_env(&h);
    env.insert("DCR_SCOPE".into(), "openid offline_access".into());
    let run = h.run(&env).await;
    run.assert_code(0);
    assert!(
        run.logs()
            .contains("offline_access not sent to Keycloak of unknown version")
            && run.logs().contains("DCR_KEYCLOAK_VERSION"),
        "{}",
        run.logs()
    );
    let (defaults, _) = h.emu.client_scopes(&client_id(&h)).unwrap();
    assert_eq!(defaults.len(), DEFAULTS.len());
    // Told: sent.
    let h = keycloak("26.8");
    let mut env = keycloak_env(&h);
    env.insert("DCR_SCOPE".into(), "openid offline_access".into());
    env.insert("DCR_KEYCLOAK_VERSION".into(), "26.8".into());
    h.run(&env).await.assert_code(0);
    let (_, optional) = h.emu.client_scopes(&client_id(&h)).unwrap();
    assert_eq!(optional, ["offline_access"]);
}

/// Scopes with the version unknown (no admin token to ask with): the scope is withheld, and a
/// custom scope gets a warning naming what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_version_never_costs_the_default_scopes() {
    let h = keycloak("24.0");
    let mut env = keycloak_env(&h);
    env.remove("BOOTSTRAP_ADMIN_TOKEN");
    env.insert(
        "DCR_IAT".into(),
        h.emu.mint_iat(Duration::from_secs(600), 1),
    );
    env.insert("DCR_SCOPE".into(), "openid app.read".into());
    env.insert("RUST_LOG".into(), "info".into());
    let run = h.run(&env).await;
    run.assert_code(0);
    let (defaults, _) = h.emu.client_scopes(&client_id(&h)).unwrap();
    assert_eq!(defaults.len(), DEFAULTS.len());
    assert!(
        run.stderr
            .contains("app.read not sent to Keycloak of unknown version")
            && run.stderr.contains("assign app.read"),
        "{}",
        run.stderr
    );
}

/// A scope the realm's Allowed Client Scopes policy refuses is a 403 policy
/// refusal with the policy named, exit 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_refusal_names_the_policy() {
    let h = keycloak_viewing_system("26.8");
    let mut env = keycloak_env(&h);
    env.insert("DCR_SCOPE".into(), "openid app.read".into());
    let run = h.run(&env).await;
    run.assert_code(3);
    assert!(
        run.stderr.contains("Allowed Client Scopes") && run.stderr.contains("DCR_SCOPE"),
        "{}",
        run.stderr
    );
    assert_eq!(h.stats().clients_registered, 0);
}

/// a 403 `insufficient_scope` on the RFC 7592 read is a policy refusal, not a dead
/// token: with `DCR_ON_STALE=reregister` nothing is registered and no token re-issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_policy_answer_is_not_a_dead_token() {
    let h = keycloak("26.8");
    let mut env = keycloak_env(&h);
    h.run(&env).await.assert_code(0);
    let id = client_id(&h);
    h.emu.push_fault(
        Fault::action_on(
            &format!("{REGISTER}/{id}"),
            1,
            FaultAction::Respond {
                status: 403,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: json!({"error": "insufficient_scope",
                    "error_description": "Policy 'Consent Required' rejected request to client-registration service. Details: x"})
                .to_string(),
            },
        )
        .with_method("GET"),
    );
    env.insert("DCR_ON_STALE".into(), "reregister".into());
    let run = h.run(&env).await;
    run.assert_code(3);
    assert!(
        run.stderr.contains("refused by the IdP's policy")
            && run.stderr.contains("nothing was renewed or registered"),
        "{}",
        run.stderr
    );
    let s = h.stats();
    assert_eq!((s.clients_registered, s.rats_reissued), (1, 0));
}

/// Keycloak's normalisation (`client_secret_post` answered as basic, `none` and
/// `refresh_token` added, redirect URIs reordered) is not drift, even strict and in replace
/// mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normalisation_is_not_drift_even_strict() {
    let h = keycloak("26.8");
    let mut env = keycloak_env(&h);
    env.insert(
        "DCR_TOKEN_ENDPOINT_AUTH_METHOD".into(),
        "client_secret_post".into(),
    );
    env.insert("DCR_STRICT_READBACK".into(), "true".into());
    env.insert("DCR_REDIRECT_UPDATE_MODE".into(), "replace".into());
    let run = h.run(&env).await;
    run.assert_code(0);
    let doc = h.output_json();
    assert_eq!(doc["token_endpoint_auth_method"], "client_secret_basic");
    assert!(
        doc["response_types"]
            .as_array()
            .unwrap()
            .contains(&json!("none"))
    );
    let uris: Vec<&str> = doc["redirect_uris"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        uris,
        [
            "https://authn.example/auth/callback",
            "https://automate.example/auth/callback"
        ],
        "the emulator answers in another order than sent"
    );
    let run = h.run(&env).await;
    run.assert_code(0);
    assert_eq!(h.stats().clients_updated, 0, "{}", run.logs());
}

/// Keycloak ≤ 23 answers a PUT with the client id appended once more to
/// `registration_client_uri`; the stored URI stays the working one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doubled_registration_client_uri_is_not_stored() {
    let h = keycloak("23.0");
    let mut env = keycloak_env(&h);
    h.run(&env).await.assert_code(0);
    let uri = h.output_json()["registration_client_uri"].clone();
    env.insert(
        "DCR_REDIRECT_URIS".into(),
        "https://automate.example/auth/callback".into(),
    );
    env.insert("DCR_REDIRECT_UPDATE_MODE".into(), "replace".into());
    h.run(&env).await.assert_code(0);
    assert_eq!(h.stats().clients_updated, 1);
    assert_eq!(h.output_json()["registration_client_uri"], uri);
    let run = h.run(&env).await;
    run.assert_code(0);
    // Reads: the update's read-back, then this start's, all at the stored URI.
    let path = url::Url::parse(uri.as_str().unwrap())
        .unwrap()
        .path()
        .to_string();
    let reads: Vec<String> = h
        .emu
        .request_log()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.contains("/clients-registrations/"))
        .map(|r| r.path)
        .collect();
    assert!(reads.len() >= 2, "{reads:?}");
    assert!(
        reads.iter().all(|p| *p == path),
        "{reads:?}; {}",
        run.logs()
    );
}

/// Keycloak rotates the token on every PUT; when that answer is lost, the token is
/// recovered through Keycloak's admin API (client lookup, then
/// `registration-access-token`, answering `registrationAccessToken`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_put_answer_is_recovered_through_the_admin_api() {
    for v in ["24.0", "26.8"] {
        let h = keycloak(v);
        let mut env = keycloak_env(&h);
        h.run(&env).await.assert_code(0);
        let id = client_id(&h);
        h.emu.push_fault(
            Fault::action_on(&format!("{REGISTER}/{id}"), 1, FaultAction::DropAfterCommit)
                .with_method("PUT"),
        );
        env.insert(
            "DCR_REDIRECT_URIS".into(),
            "https://automate.example/auth/callback".into(),
        );
        env.insert("DCR_REDIRECT_UPDATE_MODE".into(), "replace".into());
        let run = h.run(&env).await;
        run.assert_code(0);
        let s = h.stats();
        assert_eq!(
            (s.clients_registered, s.rats_reissued),
            (1, 1),
            "{v}: {}",
            run.logs()
        );
        assert_eq!(
            h.output_json()["registration_access_token"].as_str(),
            h.emu.current_rat(&id).as_deref(),
            "{v}"
        );
        h.run(&env).await.assert_code(0);
        assert_eq!(h.stats().rats_reissued, 1, "{v}: nothing more to recover");
    }
}

/// A client made through Keycloak's admin API, recorded by hand as the docs describe: its
/// registration access token from `POST …/clients/{id}/registration-access-token`.
async fn admin_created_client(h: &Harness) -> String {
    let base = h.emu.base_url();
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{base}/admin/realms/demo/clients"))
        .bearer_auth(ADMIN_TOKEN)
        .header("Content-Type", "application/json")
        .body(json!({"clientId": "bff-server", "redirectUris": ["https://automate.example/auth/callback"]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let internal = created.headers()["location"]
        .to_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let rat = http
        .post(format!(
            "{base}/admin/realms/demo/clients/{internal}/registration-access-token"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rat: Value = serde_json::from_str(&rat).unwrap();
    let doc = json!({
        "client_id": "bff-server",
        "registration_access_token": rat["registrationAccessToken"],
        "registration_client_uri": format!("{base}{REGISTER}/bff-server"),
    });
    std::fs::create_dir_all(h.out().parent().unwrap()).unwrap();
    std::fs::write(h.out(), doc.to_string()).unwrap();
    "bff-server".into()
}

/// Keycloak 25.0–26.7 answers 500 to an update that carries `scope`, of a client created in
/// its admin API (keycloak#51311). A PUT there never carries an unchanged scope, so keys and
/// other drift reach such a client on every version, with the version known or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_created_client_is_updated_on_every_version() {
    for v in ["24.0", "25.0", "26.7", "26.8"] {
        // Keys to publish, and (with the token it was given only) the version unknown.
        for admin in [true, false] {
            let h = keycloak(v);
            admin_created_client(&h).await;
            let mut env = with_key(&h, keycloak_env(&h));
            if !admin {
                env.remove("BOOTSTRAP_ADMIN_TOKEN");
            }
            let run = h.run(&env).await;
            run.assert_code(0);
            assert_eq!(h.stats().clients_updated, 1, "{v}: {}", run.logs());
            let (_, body) = h.emu.last_update().unwrap();
            assert!(body.get("scope").is_none(), "{v}: {body}");
            let (_, meta) = h.emu.clients().pop().unwrap();
            assert_eq!(meta["jwks"]["keys"].as_array().unwrap().len(), 1, "{v}");
            assert_eq!(h.stats().clients_registered, 0);
        }
    }
    // The emulator does model the 500: a PUT with the scope fails there.
    let h = keycloak("26.0");
    let id = admin_created_client(&h).await;
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(h.out()).unwrap()).unwrap();
    let status = reqwest::Client::new()
        .put(format!("{}{REGISTER}/{id}", h.emu.base_url()))
        .bearer_auth(doc["registration_access_token"].as_str().unwrap())
        .header("Content-Type", "application/json")
        .body(json!({"client_id": id, "scope": "offline_access", "redirect_uris": ["https://a.example/cb"]}).to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 500);
}

/// anonymous registration (`DCR_IAT=none`) meets the Trusted Hosts policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_registration_meets_trusted_hosts() {
    let h = keycloak("26.8");
    let mut env = keycloak_env(&h);
    env.remove("BOOTSTRAP_ADMIN_TOKEN");
    env.insert("DCR_IAT".into(), "none".into());
    let run = h.run(&env).await;
    run.assert_code(3);
    assert!(
        run.stderr.contains("Trusted Hosts") && run.stderr.contains("mint an IAT"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("consent-required"), "{}", run.stderr);
}

/// an expired IAT reads "Failed decode token", a used-up one "No remaining count";
/// both exit 3 with Keycloak's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_iat_is_exit_3_with_keycloaks_words() {
    for (effect, message) in [
        (Effect::ExpireIats, "Failed decode token"),
        (
            Effect::ExhaustIats,
            "No remaining count on initial access token",
        ),
    ] {
        let h = keycloak("26.8");
        let iat = h.emu.mint_iat(Duration::from_secs(600), 1);
        h.emu
            .push_fault(Fault::action_on(REGISTER, 1, FaultAction::Pass).with_effects(&[effect]));
        let mut env = keycloak_env(&h);
        env.remove("BOOTSTRAP_ADMIN_TOKEN");
        env.insert("DCR_IAT".into(), iat);
        let run = h.run(&env).await;
        run.assert_code(3);
        assert!(run.stderr.contains(message), "{message}: {}", run.stderr);
        assert_eq!(h.stats().clients_registered, 0);
    }
}

/// an inline JWK without `"use": "sig"` is refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_key_without_use_sig_is_a_configuration_error() {
    let h = keycloak("26.8");
    let mut env = keycloak_env(&h);
    env.insert(
        "DCR_CLIENT_METADATA".into(),
        json!({"token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0", "kid": "k1"}]}})
        .to_string(),
    );
    let run = h.run(&env).await;
    run.assert_code(2);
    assert!(
        run.stderr.contains("DCR_CLIENT_METADATA") && run.stderr.contains("\"use\": \"sig\""),
        "{}",
        run.stderr
    );
    assert_eq!(h.stats().requests, 0);
}

/// Keycloak's OIDC registration refuses a caller-chosen client_id: a configuration error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_is_a_configuration_error() {
    let h = keycloak("26.8");
    let mut env = keycloak_env(&h);
    env.insert("DCR_CLIENT_ID".into(), "bff-server".into());
    let run = h.run(&env).await;
    run.assert_code(2);
    assert!(
        run.stderr.contains("Client Identifier included"),
        "{}",
        run.stderr
    );
    assert_eq!(h.stats().requests, 0);
}

/// A version that does not parse, or set for another profile, names the variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_keycloak_version_names_the_variable() {
    let h = keycloak("26.8");
    let mut env = keycloak_env(&h);
    env.insert("DCR_KEYCLOAK_VERSION".into(), "latest".into());
    let run = h.run(&env).await;
    run.assert_code(2);
    assert!(
        run.stderr.contains("DCR_KEYCLOAK_VERSION"),
        "{}",
        run.stderr
    );
    let mut env = h.env();
    env.insert("DCR_KEYCLOAK_VERSION".into(), "26.8".into());
    let run = h.run(&env).await;
    run.assert_code(2);
    assert!(
        run.stderr.contains("only applies to DCR_PROFILE=keycloak"),
        "{}",
        run.stderr
    );
}
