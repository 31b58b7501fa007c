//! Keeping the client right on every start: drift correction, redirect modes, RAT rotation and
//! renewal, signing-key rotation with crash repair, the commands and the status metric.

use crate::common::*;
use dcr_idp_emulator::{Config, Fault, FaultAction};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

fn client_id(h: &Harness) -> String {
    h.output_json()["client_id"].as_str().unwrap().to_string()
}

fn idp_field(h: &Harness, field: &str) -> Value {
    let (_, meta) = h.emu.clients().pop().expect("a client");
    meta.get(field).cloned().unwrap_or(Value::Null)
}

const A: &str = "https://a.example/cb";
const B: &str = "https://b.example/cb";
const C: &str = "https://c.example/cb";

async fn registered(uris: &str) -> (Harness, BTreeMap<String, String>) {
    let h = Harness::new();
    let mut env = h.env_with_rat_endpoint();
    env.insert("DCR_REDIRECT_URIS".into(), uris.into());
    h.run(&env).await.assert_code(0);
    (h, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_drift_under_each_mode() {
    // (mode, rotation_safe, configured now, IdP list afterwards, updated?)
    let cases: Vec<(&str, bool, &str, Vec<&str>, bool)> = vec![
        (
            "auto",
            false,
            "https://b.example/cb,https://a.example/cb",
            vec![A, B],
            false,
        ),
        (
            "auto",
            false,
            "https://a.example/cb https://c.example/cb",
            vec![A, C],
            true,
        ),
        (
            "replace",
            false,
            "https://b.example/cb,https://a.example/cb",
            vec![B, A],
            true,
        ),
        (
            "merge",
            false,
            "https://c.example/cb,https://a.example/cb",
            vec![A, B, C],
            true,
        ),
        ("merge", false, "https://a.example/cb", vec![A, B], false),
        ("none", false, "https://c.example/cb", vec![A, B], false),
        ("replace", true, "https://c.example/cb", vec![A, B, C], true),
    ];
    for (mode, safe, now, expect, updated) in cases {
        let (h, mut env) = registered(&format!("{A},{B}")).await;
        env.insert("DCR_REDIRECT_UPDATE_MODE".into(), mode.into());
        env.insert("DCR_ROTATION_SAFE".into(), safe.to_string());
        env.insert("DCR_REDIRECT_URIS".into(), now.into());
        let run = h.run(&env).await;
        run.assert_code(0);
        let name = format!("{mode} (rotation_safe={safe}) with {now}");
        assert_eq!(idp_field(&h, "redirect_uris"), json!(expect), "{name}");
        assert_eq!(h.stats().clients_updated, u64::from(updated), "{name}");
        if updated {
            assert!(
                run.stderr.contains("updated client"),
                "{name}: {}",
                run.stderr
            );
            assert_eq!(
                h.output_json()["redirect_uris"],
                json!(expect),
                "{name}: output follows"
            );
        }
        // A second start with the same configuration changes nothing.
        h.run(&env).await.assert_code(0);
        assert_eq!(
            h.stats().clients_updated,
            u64::from(updated),
            "{name}: idempotent"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mode_without_configured_uris_leaves_them_alone() {
    let (h, mut env) = registered(&format!("{A},{B}")).await;
    env.remove("DCR_REDIRECT_URIS");
    h.run(&env).await.assert_code(0);
    assert_eq!(h.stats().clients_updated, 0);
    assert_eq!(idp_field(&h, "redirect_uris"), json!([A, B]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_drift_is_patched_with_only_the_changed_field() {
    let (h, env) = registered(A).await;
    let id = client_id(&h);
    h.emu.set_client_field(&id, "scope", json!("openid"));
    let run = h.run(&env).await;
    run.assert_code(0);
    assert_eq!(idp_field(&h, "scope"), "openid profile email");
    let (method, body) = h.emu.last_update().unwrap();
    assert_eq!(method, "PATCH");
    assert_eq!(
        body,
        json!({"scope": "openid profile email"}),
        "PATCH carries only the drift"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_is_a_full_replacement_without_server_owned_fields() {
    let (h, mut env) = registered(A).await;
    let id = client_id(&h);
    h.emu
        .set_client_field(&id, "client_name", json!("renamed-by-an-admin"));
    env.insert("DCR_UPDATE_METHOD".into(), "put".into());
    env.insert(
        "DCR_TOKEN_ENDPOINT_AUTH_METHOD".into(),
        "client_secret_basic".into(),
    );
    let run = h.run(&env).await;
    run.assert_code(0);
    let (method, body) = h.emu.last_update().unwrap();
    assert_eq!(method, "PUT");
    assert_eq!(body["client_id"], id.as_str());
    assert_eq!(body["client_name"], "bff-server");
    assert_eq!(
        body["redirect_uris"],
        json!([A]),
        "unchanged fields are carried over"
    );
    for f in [
        "registration_access_token",
        "registration_client_uri",
        "client_secret_expires_at",
        "client_id_issued_at",
        "dcr_bootstrap",
    ] {
        assert!(body.get(f).is_none(), "PUT echoed {f}");
    }
    assert_eq!(idp_field(&h, "client_name"), "bff-server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_rats_on_read_and_on_update_survive_restarts() {
    let h = Harness::with(Config {
        rotate_rat_on_get: true,
        rotate_rat_on_update: true,
        ..emulator_config()
    });
    let mut env = h.env();
    h.run(&env).await.assert_code(0);
    for (i, scope) in ["openid profile", "openid profile email", "openid"]
        .iter()
        .enumerate()
    {
        env.insert("DCR_SCOPE".into(), scope.to_string());
        let run = h.run(&env).await;
        run.assert_code(0);
        let id = client_id(&h);
        assert_eq!(
            h.output_json()["registration_access_token"].as_str(),
            h.emu.current_rat(&id).as_deref(),
            "restart {i}: the stored token is the IdP's current one"
        );
    }
    let s = h.stats();
    assert_eq!(
        (s.clients_registered, s.clients_updated, s.rats_reissued),
        (1, 3, 0)
    );
    // Three starts read the client, and each of the three updates is read back: only the
    // read-back says what the IdP holds.
    assert!(s.clients_read >= 6, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_rat_is_renewed_with_the_admin_token_and_the_update_succeeds() {
    let (h, mut env) = registered(A).await;
    let id = client_id(&h);
    h.emu.revoke_rat(&id);
    env.insert("DCR_SCOPE".into(), "openid".into());
    let run = h.run(&env).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("re-issuing it with the admin token"),
        "{}",
        run.stderr
    );
    let s = h.stats();
    assert_eq!(
        (s.rats_reissued, s.clients_updated, s.clients_registered),
        (1, 1, 1)
    );
    assert_eq!(idp_field(&h, "scope"), "openid");
    assert_eq!(
        h.output_json()["registration_access_token"].as_str(),
        h.emu.current_rat(&id).as_deref()
    );

    // Without an admin token the token cannot be renewed, but the credentials are proven:
    // the app starts with them, and the log names the admin action that restores management.
    h.emu.revoke_rat(&id);
    env.remove("BOOTSTRAP_ADMIN_TOKEN");
    let run = h.run(&env).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("Admin action") && run.stderr.contains("/tokens"),
        "{}",
        run.stderr
    );
    assert_eq!(
        h.output_json()["dcr_bootstrap"]["action"],
        "unmanaged",
        "{}",
        run.stderr
    );
    assert_eq!(h.stats().clients_registered, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_readback_fails_when_the_idp_grants_less() {
    let h = Harness::with(Config {
        drop_scopes: vec!["email".into()],
        ..emulator_config()
    });
    let mut env = h.env();
    let run = h.run(&env).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("registered something else than asked"),
        "{}",
        run.stderr
    );
    std::fs::remove_file(h.out()).unwrap();
    env.insert("DCR_STRICT_READBACK".into(), "true".into());
    let run = h.run(&env).await;
    run.assert_code(3);
    assert!(run.stderr.contains("DCR_STRICT_READBACK"), "{}", run.stderr);
}

fn published_kids(h: &Harness) -> Vec<String> {
    idp_field(h, "jwks")["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

/// Rewrites the recorded creation time of every key to `days` ago.
fn age_keys(h: &Harness, days: u64) {
    let mut doc = h.output_json();
    let when = std::time::SystemTime::now() - Duration::from_secs(days * 86_400 + 60);
    let stamp = humantime::format_rfc3339_seconds(when).to_string();
    for k in doc["dcr_bootstrap"]["signing_keys"].as_array_mut().unwrap() {
        k["created_at"] = json!(stamp);
    }
    std::fs::write(h.out(), serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_sign_assertions_the_idp_verifies_for_every_algorithm() {
    for alg in ["RS256", "PS256", "ES256"] {
        let h = Harness::new();
        let env = key_env(&h, alg);
        h.run(&env).await.assert_code(0);
        let doc = h.output_json();
        let id = doc["client_id"].as_str().unwrap();
        let kid = doc["dcr_bootstrap"]["signing_key"]["kid"].as_str().unwrap();
        assert_eq!(doc["dcr_bootstrap"]["signing_key"]["alg"], alg);
        let pem = std::fs::read_to_string(h.dir.path().join("keys/bff.pem")).unwrap();
        let aud = format!("{}/api/oidc/token", h.emu.base_url());
        let good = client_assertion(&pem, alg, kid, id, &aud);
        assert!(
            assertion_authenticates(&h.emu.base_url(), &good).await,
            "{alg}"
        );
        // A signature by another key is refused: the check is real.
        let other = Harness::new();
        other.run(&key_env(&other, alg)).await.assert_code(0);
        let other_pem = std::fs::read_to_string(other.dir.path().join("keys/bff.pem")).unwrap();
        let forged = client_assertion(&other_pem, alg, kid, id, &aud);
        assert!(
            !assertion_authenticates(&h.emu.base_url(), &forged).await,
            "{alg}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_at_day_29_30_31_overlaps_keys_and_keeps_the_old_pem() {
    let h = Harness::new();
    let env = key_env(&h, "ES256");
    h.run(&env).await.assert_code(0);
    let first = published_kids(&h);
    assert_eq!(first.len(), 1);

    age_keys(&h, 29);
    h.run(&env).await.assert_code(0);
    assert_eq!(published_kids(&h), first, "29 days: no rotation");

    age_keys(&h, 30);
    let run = h.run(&env).await;
    run.assert_code(0);
    assert!(run.stderr.contains("rotated client"), "{}", run.stderr);
    let after = published_kids(&h);
    assert_eq!(after.len(), 2, "the new key next to the old one");
    assert_eq!(after[1], first[0]);
    let doc = h.output_json();
    assert_eq!(
        doc["dcr_bootstrap"]["signing_key"]["kid"],
        after[0].as_str()
    );
    let old_pem = doc["dcr_bootstrap"]["signing_keys"][1]["pem"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        std::path::Path::new(&old_pem).exists(),
        "previous PEM kept beside the new one"
    );
    // The BFF's new key works at the IdP right away.
    let pem = std::fs::read_to_string(h.dir.path().join("keys/bff.pem")).unwrap();
    let id = client_id(&h);
    let a = client_assertion(
        &pem,
        "ES256",
        &after[0],
        &id,
        &format!("{}/api/oidc/token", h.emu.base_url()),
    );
    assert!(assertion_authenticates(&h.emu.base_url(), &a).await);

    // Day 31 (one day after the rotation): nothing to do.
    h.run(&env).await.assert_code(0);
    assert_eq!(published_kids(&h), after);
    assert_eq!(h.stats().clients_updated, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retirement_by_age_and_cap_removes_keys_and_their_files() {
    let h = Harness::new();
    let mut env = key_env(&h, "ES256");
    env.insert("BFF_JWK_MAX_KEYS".into(), "2".into());
    h.run(&env).await.assert_code(0);
    for _ in 0..3 {
        age_keys(&h, 30);
        h.run(&env).await.assert_code(0);
    }
    assert_eq!(published_kids(&h).len(), 2, "capped at 2");
    let pems: Vec<_> = std::fs::read_dir(h.dir.path().join("keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pem"))
        .collect();
    assert_eq!(pems.len(), 2, "retired PEMs are removed: {pems:?}");

    // Age-based: everything but the current key is 61 days old → retired.
    let mut doc = h.output_json();
    let old = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() - Duration::from_secs(61 * 86_400),
    )
    .to_string();
    doc["dcr_bootstrap"]["signing_keys"][1]["created_at"] = json!(old);
    std::fs::write(h.out(), serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    h.run(&env).await.assert_code(0);
    assert_eq!(published_kids(&h).len(), 1, "retired after 60 days");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_after_the_idp_accepted_a_new_jwks_is_repaired_and_the_old_key_stays_valid() {
    let h = Harness::new();
    let env = key_env(&h, "ES256");
    h.run(&env).await.assert_code(0);
    let id = client_id(&h);
    let key_path = h.dir.path().join("keys/bff.pem");
    let old_pem = std::fs::read_to_string(&key_path).unwrap();
    let old_kid = published_kids(&h)[0].clone();
    let aud = format!("{}/api/oidc/token", h.emu.base_url());
    let old_key_works = || client_assertion(&old_pem, "ES256", &old_kid, &id, &aud);

    age_keys(&h, 30);
    // The IdP commits the new JWKS, then holds the answer; we kill the client in that window.
    h.emu.push_fault(
        Fault::action_on(
            "/api/oidc/register/",
            1,
            FaultAction::CommitThenDelay { ms: 30_000 },
        )
        .with_method("PATCH"),
    );
    let run = h.spawn(&env);
    assert!(
        h.emu
            .wait_until(|s| s.clients_updated == 1, Duration::from_secs(20))
            .await
    );
    run.signal(libc::SIGKILL);
    run.finish().await;
    let kids = published_kids(&h);
    assert_eq!(kids.len(), 2, "the IdP holds old and new");
    assert!(kids.contains(&old_kid));
    assert_eq!(
        std::fs::read_to_string(&key_path).unwrap(),
        old_pem,
        "the PEM was not yet replaced"
    );
    assert!(
        assertion_authenticates(&h.emu.base_url(), &old_key_works()).await,
        "the BFF's key still works"
    );

    let run = h.run(&env).await;
    run.assert_code(0);
    assert!(run.stderr.contains("rotated client"), "{}", run.stderr);
    let new_pem = std::fs::read_to_string(&key_path).unwrap();
    assert_ne!(new_pem, old_pem, "the pending key was promoted");
    let new_kid = h.output_json()["dcr_bootstrap"]["signing_key"]["kid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        published_kids(&h),
        kids,
        "no third key: the published one was reused"
    );
    assert!(kids.contains(&new_kid));
    let fresh = client_assertion(&new_pem, "ES256", &new_kid, &id, &aud);
    assert!(assertion_authenticates(&h.emu.base_url(), &fresh).await);
    assert!(
        assertion_authenticates(&h.emu.base_url(), &old_key_works()).await,
        "overlap continues"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_output_and_jwks_uri_mode() {
    let h = Harness::new();
    let mut env = key_env(&h, "RS256");
    let jwks_out = h.dir.path().join("public/jwks.json");
    env.insert("DCR_JWKS_OUTPUT".into(), jwks_out.display().to_string());
    env.insert(
        "DCR_JWKS_URI".into(),
        "https://bff.example/.well-known/jwks.json".into(),
    );
    h.run(&env).await.assert_code(0);
    assert_eq!(
        idp_field(&h, "jwks_uri"),
        "https://bff.example/.well-known/jwks.json"
    );
    assert_eq!(idp_field(&h, "jwks"), Value::Null);
    let jwks: Value = serde_json::from_str(&std::fs::read_to_string(&jwks_out).unwrap()).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert!(jwks["keys"][0].get("d").is_none());
    // Switching to inline jwks removes jwks_uri at the IdP.
    env.remove("DCR_JWKS_URI");
    h.run(&env).await.assert_code(0);
    assert_eq!(idp_field(&h, "jwks_uri"), Value::Null);
    assert_eq!(
        idp_field(&h, "jwks")["keys"][0]["kid"],
        jwks["keys"][0]["kid"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_sends_nothing_and_prints_the_bodies() {
    let h = Harness::new();
    let mut env = key_env(&h, "ES256");
    env.insert(
        "BOOTSTRAP_ADMIN_TOKEN".into(),
        "secret-admin-for-check-77".into(),
    );
    let run = h.run_args(&env, &["check"]).await;
    run.assert_code(0);
    assert_eq!(h.stats().requests, 0);
    let report: Value = serde_json::from_str(&run.stdout).expect("check prints JSON");
    assert_eq!(
        report["requests"]["register"]["body"]["client_name"],
        "bff-server"
    );
    assert_eq!(report["requests"]["mint_iat"]["body"]["max_uses"], 1);
    assert!(!run.logs().contains("secret-admin-for-check-77"));
    assert!(!h.dir.path().join("keys").exists(), "check writes nothing");
    let mut bad = env.clone();
    bad.insert("DCR_REDIRECT_URIS".into(), "http://a.example/cb".into());
    h.run_args(&bad, &["check"]).await.assert_code(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregister_leaves_no_client_and_no_files() {
    let h = Harness::new();
    let mut env = key_env(&h, "ES256");
    env.insert(
        "DCR_ENV_OUTPUT".into(),
        h.dir.path().join("keys/bff.env").display().to_string(),
    );
    env.insert(
        "DCR_JWKS_OUTPUT".into(),
        h.dir.path().join("keys/jwks.json").display().to_string(),
    );
    h.run(&env).await.assert_code(0);
    age_keys(&h, 30);
    h.run(&env).await.assert_code(0); // a previous key file exists too
    let run = h.run_args(&env, &["deregister"]).await;
    run.assert_code(0);
    assert_eq!(h.stats().clients_live, 0);
    let left: Vec<_> = std::fs::read_dir(h.dir.path().join("keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "files left: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mint_iat_writes_a_usable_iat_and_nothing_else() {
    let h = Harness::new();
    let mut env = h.env();
    let iat_file = h.dir.path().join("secrets/iat");
    env.remove("DCR_OUTPUT");
    env.insert("DCR_IAT_OUTPUT".into(), iat_file.display().to_string());
    let run = h.run_args(&env, &["mint-iat"]).await;
    run.assert_code(0);
    assert_eq!(file_mode(&iat_file), 0o600);
    assert_eq!(
        (h.stats().iats_minted, h.stats().clients_registered),
        (1, 0)
    );
    assert_no_secrets(&run.logs(), &h.emu.issued_secrets());
    // The IAT registers a client.
    let mut env = h.env();
    env.remove("BOOTSTRAP_ADMIN_TOKEN");
    env.insert("DCR_IAT_FILE".into(), iat_file.display().to_string());
    h.run(&env).await.assert_code(0);
    assert_eq!(
        (h.stats().iats_minted, h.stats().clients_registered),
        (1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_metric_is_pushed_and_a_dead_gateway_is_not_fatal() {
    let h = Harness::new();
    let mut env = h.env();
    env.insert("PROM_PUSHGATEWAY_URL".into(), h.emu.base_url());
    h.run(&env).await.assert_code(0);
    env.insert("DCR_SCOPE".into(), "openid".into());
    h.run(&env).await.assert_code(0);
    let pushes = h.emu.pushes();
    assert_eq!(pushes.len(), 2);
    // One group per instance (the host name), so that replicas do not overwrite each other.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(
        pushes[0].0,
        format!("/metrics/job/dcr-bootstrap/instance/{}", host.trim())
    );
    assert!(
        pushes[0]
            .1
            .contains("dcr_bootstrap_status{status=\"registered\"} 1"),
        "{}",
        pushes[0].1
    );
    assert!(
        pushes[1]
            .1
            .contains("dcr_bootstrap_status{status=\"updated\"} 1")
    );
    assert!(pushes[1].1.contains("dcr_bootstrap_duration_seconds "));
    // A failed run pushes "failed"; a gateway that is down only warns.
    h.emu.remove_client(&client_id(&h));
    let run = h.run(&env).await;
    run.assert_code(3);
    assert!(h.emu.pushes()[2].1.contains("status=\"failed\""));
    let dead = Harness::not_listening(emulator_config());
    env.insert("PROM_PUSHGATEWAY_URL".into(), dead.emu.base_url());
    env.insert("DCR_ON_STALE".into(), "reregister".into());
    let run = h.run(&env).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("cannot push the status metric"),
        "{}",
        run.stderr
    );
}
