//! Conclusions from evidence: each test puts the program in front of a server whose answers
//! mean something else than one server's words suggest (an emulator quirk modelled on a real
//! server), and shows the program concludes only what the answers prove. docs/interop.md
//! names the server behind each quirk.

use crate::common::*;
use dcr_idp_emulator::{Config, Fault, FaultAction, Quirks};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

const REGISTER: &str = "/api/oidc/dcr/register";

fn quirky(q: Quirks) -> Harness {
    Harness::with(Config {
        quirks: q,
        ..emulator_config()
    })
}

fn secret_env(h: &Harness) -> BTreeMap<String, String> {
    let mut env = h.env();
    env.insert(
        "DCR_TOKEN_ENDPOINT_AUTH_METHOD".into(),
        "client_secret_basic".into(),
    );
    env
}

fn key_env(h: &Harness) -> BTreeMap<String, String> {
    let mut env = h.env();
    env.insert("DCR_SIGNING_KEY".into(), key_path(h).display().to_string());
    env.insert("DCR_KEY_ALG".into(), "ES256".into());
    env
}

fn key_path(h: &Harness) -> std::path::PathBuf {
    h.dir.path().join("keys/bff.pem")
}

/// The proof never reads one server's words: a SATOSA-style front that answers every failed
/// client authentication with `403 unauthorized_client` refuses an expired secret exactly as
/// it refuses a wrong one, so the client is gone and DCR_ON_STALE=reregister registers anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_worded_as_unauthorized_client_is_told_by_the_control_request() {
    let h = quirky(Quirks {
        auth_failure_403_unauthorized_client: true,
        ..Quirks::default()
    });
    let mut env = secret_env(&h);
    h.run(&env).await.assert_code(0);
    let id = h.output_json()["client_id"].as_str().unwrap().to_string();
    h.emu.expire_secrets();
    h.emu.revoke_rat(&id);
    env.remove("BOOTSTRAP_ADMIN_TOKEN");
    env.insert("DCR_IAT".into(), h.emu.mint_iat(Duration::from_secs(60), 1));
    env.insert("DCR_ON_STALE".into(), "reregister".into());
    let run = h.run(&env).await;
    run.assert_code(0);
    assert!(
        run.stderr
            .contains("exactly as it answers wrong credentials"),
        "{}",
        run.stderr
    );
    assert_eq!(h.output_json()["dcr_bootstrap"]["action"], "re-registered");
    assert_ne!(h.output_json()["client_id"], json!(id));
}

/// node-oidc-provider answers a grant the client may not use with `400 invalid_request`
/// after authenticating it; the proof uses the client's own grant and proves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_refused_after_authentication_is_not_mistaken_for_a_missing_endpoint() {
    let h = quirky(Quirks {
        grant_not_allowed_invalid_request: true,
        ..Quirks::default()
    });
    let run = h.run(&secret_env(&h)).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("authenticates at the token endpoint"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("set DCR_TOKEN_ENDPOINT"),
        "{}",
        run.stderr
    );
}

/// A server that judges the code before the client: right and wrong credentials get the same
/// `invalid_grant`. Not proven: a warning, never exit 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_cannot_tell_are_not_proven_and_not_fatal() {
    let h = quirky(Quirks {
        grant_checked_before_auth: true,
        ..Quirks::default()
    });
    let run = h.run(&secret_env(&h)).await;
    run.assert_code(0);
    assert!(run.stderr.contains("not proven"), "{}", run.stderr);
}

/// The assertion's `aud` is the token endpoint as the IdP names it, not the internal URL this
/// container reaches it by: with DCR_REWRITE_PUBLIC_BASE the key is proven and promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assertion_audience_is_the_idps_own_token_endpoint() {
    let h = Harness::with(Config {
        public_base: Some("https://idp.example.com".into()),
        ..emulator_config()
    });
    let mut env = key_env(&h);
    env.insert(
        "DCR_REWRITE_PUBLIC_BASE".into(),
        "https://idp.example.com".into(),
    );
    let run = h.run(&env).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("authenticates at the token endpoint"),
        "{}",
        run.stderr
    );
    assert!(key_path(&h).exists());
    assert!(!h.dir.path().join("keys/bff.pem.next").exists());
}

/// A 500 after the server inserted the client, with the single-use IAT this run minted: the
/// re-sent registration is refused (the IAT is spent), and no fresh IAT is minted after that.
/// One client, exit 3 naming the possible orphan and when it was made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_to_a_registration_is_uncertain_and_never_leads_to_a_second_client() {
    let h = Harness::new();
    h.emu.push_fault(Fault::action_on(
        REGISTER,
        1,
        FaultAction::RespondAfterCommit {
            status: 500,
            body: "Internal Server Error".into(),
        },
    ));
    let run = h.run(&h.env()).await;
    run.assert_code(3);
    assert!(run.stderr.contains("orphaned client"), "{}", run.stderr);
    assert!(run.stderr.contains("the attempt at"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("minting a fresh one"),
        "{}",
        run.stderr
    );
    assert_eq!(h.stats().clients_registered, 1);
    assert_eq!(h.stats().iats_minted, 1);
    // A given, multi-use IAT: not re-sent at all.
    let h = Harness::new();
    h.emu.push_fault(Fault::action_on(
        REGISTER,
        1,
        FaultAction::RespondAfterCommit {
            status: 504,
            body: String::new(),
        },
    ));
    let mut env = h.env();
    env.remove("BOOTSTRAP_ADMIN_TOKEN");
    env.insert("DCR_IAT".into(), h.emu.mint_iat(Duration::from_secs(60), 5));
    let run = h.run(&env).await;
    run.assert_code(3);
    assert!(run.stderr.contains("Not retrying"), "{}", run.stderr);
    assert_eq!(h.stats().clients_registered, 1);
}

/// Replicas sharing a client by DCR_CLIENT_ID at a server that assigns its own ids: the
/// first answer shows it, so the run records the client and stops (exit 3) instead of letting
/// every replica register its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_client_id_the_server_ignores_stops_the_replicas() {
    let h = quirky(Quirks {
        ignore_client_id: true,
        ..Quirks::default()
    });
    let mut env = key_env(&h);
    env.insert("DCR_CLIENT_ID".into(), "bff-server".into());
    env.insert("DCR_SHARED_CLIENT".into(), "true".into());
    let run = h.run(&env).await;
    run.assert_code(3);
    assert!(
        run.stderr.contains("ignored the requested client_id") && run.stderr.contains("Job"),
        "{}",
        run.stderr
    );
    assert_ne!(h.output_json()["client_id"], json!("bff-server"));
    assert_eq!(h.stats().clients_registered, 1);
}

/// A lost answer with DCR_CLIENT_ID and an IAT that may create more than one client: whether
/// the server honours requested ids is not known, so the registration is not re-sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_client_id_does_not_make_a_lost_registration_safe_to_resend() {
    let h = quirky(Quirks {
        ignore_client_id: true,
        ..Quirks::default()
    });
    h.emu
        .push_fault(Fault::action_on(REGISTER, 1, FaultAction::DropAfterCommit));
    let mut env = h.env();
    env.remove("BOOTSTRAP_ADMIN_TOKEN");
    env.insert("DCR_IAT".into(), h.emu.mint_iat(Duration::from_secs(60), 5));
    env.insert("DCR_CLIENT_ID".into(), "bff-server".into());
    let run = h.run(&env).await;
    run.assert_code(3);
    assert_eq!(h.stats().clients_registered, 1, "a silent orphan");
}

/// A 404 at an admin route we were told to use is the route's answer or the client's: the
/// client is not called gone, and DCR_ON_STALE=reregister does not register a second one
/// while the first still authenticates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_at_the_admin_route_is_not_proof_that_the_client_is_gone() {
    let h = Harness::new();
    let mut env = secret_env(&h);
    h.run(&env).await.assert_code(0);
    let id = h.output_json()["client_id"].as_str().unwrap().to_string();
    h.emu.revoke_rat(&id);
    env.insert(
        "DCR_RAT_ENDPOINT".into(),
        format!(
            "{}/api/admin/nowhere/{{client_id}}/tokens",
            h.emu.base_url()
        ),
    );
    env.insert("DCR_ON_STALE".into(), "reregister".into());
    let run = h.run(&env).await;
    run.assert_code(0);
    assert!(run.stderr.contains("not proven"), "{}", run.stderr);
    assert_eq!(h.output_json()["dcr_bootstrap"]["action"], "unmanaged");
    assert_eq!(h.stats().clients_registered, 1);
}

/// deregister reports only what happened: a delete the IdP refused is exit 3, and the files,
/// the only record of a client that lives on, are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_delete_is_exit_3_and_keeps_the_files() {
    let h = Harness::new();
    let mut env = secret_env(&h);
    h.run(&env).await.assert_code(0);
    let id = h.output_json()["client_id"].as_str().unwrap().to_string();
    h.emu.revoke_rat(&id);
    env.remove("BOOTSTRAP_ADMIN_TOKEN");
    let run = h.run_args(&env, &["deregister"]).await;
    run.assert_code(3);
    assert!(run.stderr.contains("not deleted"), "{}", run.stderr);
    assert!(h.out().exists());
    assert_eq!(h.stats().clients_live, 1);
}

/// A secret with an end is renewed before it, where the IdP issues a new one on an update;
/// where it does not, a warning says when it ends, and once it has, the cause is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_is_renewed_before_it_expires() {
    let h = quirky(Quirks {
        secret_ttl: Some(Duration::from_secs(3 * 86_400)),
        new_secret_on_update: true,
        ..Quirks::default()
    });
    let env = secret_env(&h);
    h.run(&env).await.assert_code(0);
    let first = h.output_json();
    // Three days left, seven days of lead: renewed, proven, and later.
    let run = h.run(&env).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("renewed the client secret"),
        "{}",
        run.stderr
    );
    let renewed = h.output_json();
    assert_ne!(renewed["client_secret"], first["client_secret"]);
    assert!(
        renewed["client_secret_expires_at"].as_u64() >= first["client_secret_expires_at"].as_u64()
    );
    assert!(
        run.stderr.contains("authenticates at the token endpoint"),
        "{}",
        run.stderr
    );

    // No new secret on update: a warning while time is left; exit 3 naming the cause after.
    let h = quirky(Quirks {
        secret_ttl: Some(Duration::from_secs(3 * 86_400)),
        ..Quirks::default()
    });
    let env = secret_env(&h);
    h.run(&env).await.assert_code(0);
    let run = h.run(&env).await;
    run.assert_code(0);
    assert!(run.stderr.contains("expires at"), "{}", run.stderr);
    h.emu.expire_secrets();
    let run = h.run(&env).await;
    run.assert_code(3);
    assert!(run.stderr.contains("expired at"), "{}", run.stderr);
}

/// A server without RFC 7592 updates: a due rotation keeps the current key (the unpublished
/// one is dropped, no pending mark stays), exit 0, and one warning with the settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_updates_keeps_the_current_key() {
    let h = quirky(Quirks {
        no_updates: true,
        ..Quirks::default()
    });
    let mut env = key_env(&h);
    h.run(&env).await.assert_code(0);
    let key = std::fs::read_to_string(key_path(&h)).unwrap();
    env.insert("BFF_JWK_ROTATE_AFTER_DAYS".into(), "0".into());
    let run = h.run(&env).await;
    run.assert_code(0);
    assert_eq!(std::fs::read_to_string(key_path(&h)).unwrap(), key);
    assert!(!h.dir.path().join("keys/bff.pem.next").exists());
    assert!(
        h.output_json()["dcr_bootstrap"]
            .get("pending_update")
            .is_none()
    );
    assert_eq!(
        run.stderr.matches("does not update clients").count(),
        1,
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("BFF_JWK_ROTATE_AFTER_DAYS"),
        "{}",
        run.stderr
    );
}

/// An auth method the IdP's discovery does not list is refused before anything is
/// registered (exit 2), like a signing algorithm it does not list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_method_discovery_does_not_list_is_refused_before_registering() {
    let h = quirky(Quirks {
        auth_methods: Some(vec!["client_secret_basic".into()]),
        ..Quirks::default()
    });
    let mut env = key_env(&h);
    env.insert("DCR_PROFILE".into(), "rfc7591".into());
    env.insert(
        "DCR_ISSUER".into(),
        format!("{}/api/oidc", h.emu.base_url()),
    );
    env.insert("DCR_IAT".into(), h.emu.mint_iat(Duration::from_secs(60), 1));
    let run = h.run(&env).await;
    run.assert_code(2);
    assert!(
        run.stderr.contains("token_endpoint_auth_methods_supported"),
        "{}",
        run.stderr
    );
    assert_eq!(h.stats().clients_registered, 0);
}

/// A scope configured after registration, which the IdP does not hold, is drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_added_later_is_corrected() {
    let h = Harness::new();
    let mut env = secret_env(&h);
    env.remove("DCR_SCOPE");
    h.run(&env).await.assert_code(0);
    assert!(h.emu.clients()[0].1.get("scope").is_none());
    env.insert("DCR_SCOPE".into(), "openid profile".into());
    let run = h.run(&env).await;
    run.assert_code(0);
    assert_eq!(
        h.emu.clients()[0].1.get("scope"),
        Some(&json!("openid profile")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("updated client"), "{}", run.stderr);
}

/// Who made the client is recorded with the first save, before the proof: a client this run
/// registered is known as ours even when the proof (or anything after it) fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_is_recorded_before_the_proof() {
    let h = quirky(Quirks {
        refuse_client_auth: true,
        ..Quirks::default()
    });
    let run = h.run(&secret_env(&h)).await;
    run.assert_code(3);
    assert_eq!(
        h.output_json()["dcr_bootstrap"]["origin"],
        json!("registered")
    );
}
