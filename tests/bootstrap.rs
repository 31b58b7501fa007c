//! The main job end to end: the real binary against the emulator.

use crate::common::*;
use dcr_idp_emulator::{Fault, FaultAction};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mints_registers_and_writes_the_output() {
    let h = Harness::new();
    let run = h.run(&h.env()).await;
    run.assert_code(0);
    let s = h.stats();
    assert_eq!((s.iats_minted, s.clients_registered), (1, 1));

    let doc = h.output_json();
    let id = doc["client_id"].as_str().unwrap();
    let (stored_id, meta) = h.emu.clients().pop().unwrap();
    assert_eq!(id, stored_id);
    assert_eq!(meta["client_name"], "bff-server");
    assert_eq!(
        doc["registration_access_token"].as_str(),
        h.emu.current_rat(id).as_deref()
    );
    assert!(
        doc["registration_client_uri"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/api/oidc/register/{id}"))
    );
    let m = &doc["dcr_bootstrap"];
    assert_eq!(m["idp_base_url"], format!("{}/", h.emu.base_url()));
    assert!(
        m["registration_endpoint"]
            .as_str()
            .unwrap()
            .ends_with("/api/oidc/dcr/register")
    );
    assert!(m["written_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(m["action"], "registered");

    assert_eq!(file_mode(&h.out()), 0o600);
    assert_eq!(
        file_mode(h.out().parent().unwrap()),
        0o700,
        "created parent dir is private"
    );
    assert!(run.stderr.contains("registered client"), "{}", run.stderr);
    assert!(run.stderr.contains(&h.out().display().to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_with_a_given_iat_without_minting() {
    let h = Harness::new();
    let iat = h.emu.mint_iat(Duration::from_secs(600), 1);
    let mut env = h.env();
    env.remove("BOOTSTRAP_ADMIN_TOKEN");
    env.insert("DCR_IAT".into(), iat);
    h.run(&env).await.assert_code(0);
    let s = h.stats();
    assert_eq!(
        (s.iats_minted, s.clients_registered),
        (1, 1),
        "only the test's own IAT was minted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_secrets_from_files() {
    let h = Harness::new();
    let token_file = h.dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n")).unwrap();
    let mut env = h.env();
    env.remove("BOOTSTRAP_ADMIN_TOKEN");
    env.insert(
        "BOOTSTRAP_ADMIN_TOKEN_FILE".into(),
        token_file.display().to_string(),
    );
    h.run(&env).await.assert_code(0);
    assert_eq!(h.stats().clients_registered, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_run_verifies_instead_of_registering() {
    let h = Harness::new();
    h.run(&h.env()).await.assert_code(0);
    let before = std::fs::read_to_string(h.out()).unwrap();
    // No token at all on the second run: verification needs only the stored RAT.
    let mut env = h.env();
    env.remove("BOOTSTRAP_ADMIN_TOKEN");
    let run = h.run(&env).await;
    run.assert_code(0);
    let s = h.stats();
    assert_eq!((s.iats_minted, s.clients_registered), (1, 1));
    assert!(s.clients_read >= 1, "the stored client was read");
    assert!(run.stderr.contains("verified client"), "{}", run.stderr);
    assert_eq!(
        before,
        std::fs::read_to_string(h.out()).unwrap(),
        "unchanged file is not rewritten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_rat_is_saved_on_verification() {
    let h = Harness::with(dcr_idp_emulator::Config {
        rotate_rat_on_get: true,
        ..emulator_config()
    });
    for _ in 0..3 {
        h.run(&h.env()).await.assert_code(0);
        let doc = h.output_json();
        let id = doc["client_id"].as_str().unwrap();
        assert_eq!(
            doc["registration_access_token"].as_str(),
            h.emu.current_rat(id).as_deref()
        );
    }
    let s = h.stats();
    assert_eq!(s.clients_registered, 1);
    assert!(s.clients_read >= 2, "each verifying start reads the client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_client_gone_fails_or_reregisters_as_configured() {
    let h = Harness::new();
    h.run(&h.env()).await.assert_code(0);
    let id = h.output_json()["client_id"].as_str().unwrap().to_string();
    assert!(h.emu.remove_client(&id));

    let run = h.run(&h.env()).await;
    run.assert_code(3);
    assert!(
        run.stderr.contains("DCR_ON_STALE=reregister"),
        "{}",
        run.stderr
    );
    assert_eq!(h.stats().clients_registered, 1);
    assert_eq!(
        h.output_json()["client_id"],
        id.as_str(),
        "file kept on failure"
    );

    let mut env = h.env();
    env.insert("DCR_ON_STALE".into(), "reregister".into());
    let run = h.run(&env).await;
    run.assert_code(0);
    assert_eq!(h.stats().clients_registered, 2);
    assert_ne!(h.output_json()["client_id"], id.as_str());
    assert!(
        run.stderr.contains("re-registered client"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_replace_deletes_exactly_one_client_and_creates_one() {
    let h = Harness::new();
    h.run(&h.env()).await.assert_code(0);
    let old = h.output_json()["client_id"].as_str().unwrap().to_string();
    let mut env = h.env();
    env.insert("DCR_FORCE_REPLACE".into(), "true".into());
    let run = h.run(&env).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("every start"),
        "warns that it repeats: {}",
        run.stderr
    );
    let s = h.stats();
    assert_eq!(
        (s.clients_deleted, s.clients_registered, s.clients_live),
        (1, 2, 1)
    );
    assert_ne!(h.output_json()["client_id"], old.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_runs_register_once() {
    let h = Harness::new();
    // Slow registration so that the two runs overlap.
    h.emu.push_fault(Fault::action_on(
        "/api/oidc/dcr/register",
        1,
        FaultAction::Delay { ms: 700 },
    ));
    let env = h.env();
    let (a, b) = tokio::join!(h.run(&env), h.run(&env));
    a.assert_code(0);
    b.assert_code(0);
    let s = h.stats();
    assert_eq!((s.clients_registered, s.iats_minted), (1, 1));
    // One registered; the other waited for its lock, then verified what it wrote.
    let (first, second) = if a.logs().contains("registered client") {
        (a, b)
    } else {
        (b, a)
    };
    assert!(
        first.logs().contains("registered client"),
        "{}",
        first.logs()
    );
    let waited = second
        .logs()
        .find("another dcr-bootstrap holds")
        .expect("the second run waited for the lock");
    let verified = second
        .logs()
        .find("verified client")
        .expect("the second run verified the client");
    assert!(waited < verified, "{}", second.logs());
    assert!(
        !second.logs().contains("minted an IAT"),
        "{}",
        second.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_key_is_generated_published_and_written_after_acceptance() {
    let h = Harness::new();
    let key = h.dir.path().join("keys").join("bff-sig-001.pem");
    let mut env = h.env();
    env.insert("DCR_SIGNING_KEY".into(), key.display().to_string());
    env.insert("BFF_KID".into(), "bff-sig-001".into());
    env.insert("DCR_CLIENT_PROFILE".into(), "code-flow-pkjwt".into());
    h.run(&env).await.assert_code(0);
    assert_eq!(file_mode(&key), 0o600);
    let pem = std::fs::read_to_string(&key).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let (_, meta) = h.emu.clients().pop().unwrap();
    assert_eq!(meta["token_endpoint_auth_method"], "private_key_jwt");
    let jwk = &meta["jwks"]["keys"][0];
    assert_eq!(jwk["kid"], "bff-sig-001");
    assert!(jwk.get("d").is_none());
    let doc = h.output_json();
    assert_eq!(doc["dcr_bootstrap"]["signing_key"]["kid"], "bff-sig-001");

    // The same key is reused, not regenerated, when registering again.
    let h2 = Harness::new();
    let mut env2 = h2.env();
    env2.insert("DCR_SIGNING_KEY".into(), key.display().to_string());
    h2.run(&env2).await.assert_code(0);
    let (_, meta2) = h2.emu.clients().pop().unwrap();
    assert_eq!(meta2["jwks"]["keys"][0]["n"], jwk["n"]);
    assert_eq!(std::fs::read_to_string(&key).unwrap(), pem);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_registration_writes_no_key() {
    let h = Harness::new();
    let key = h.dir.path().join("keys").join("k.pem");
    let mut env = h.env();
    env.insert("DCR_SIGNING_KEY".into(), key.display().to_string());
    env.insert("DCR_SCOPE".into(), "openid not-allowed".into());
    let run = h.run(&env).await;
    run.assert_code(3);
    assert!(run.stderr.contains("invalid_scope"), "{}", run.stderr);
    assert!(
        !key.exists(),
        "the private key is written only after the IdP accepted it"
    );
    assert!(!h.out().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dotenv_output_carries_id_and_secret() {
    let h = Harness::new();
    let env_file = h.dir.path().join("keys").join("bff.env");
    let mut env = h.env();
    env.insert("DCR_ENV_OUTPUT".into(), env_file.display().to_string());
    env.insert(
        "DCR_TOKEN_ENDPOINT_AUTH_METHOD".into(),
        "client_secret_basic".into(),
    );
    env.insert("DCR_OUTPUT_MODE".into(), "0640".into());
    h.run(&env).await.assert_code(0);
    let doc = h.output_json();
    let text = std::fs::read_to_string(&env_file).unwrap();
    assert!(text.contains(&format!(
        "AUTH_CLIENT_ID={}\n",
        doc["client_id"].as_str().unwrap()
    )));
    assert!(text.contains(&format!(
        "AUTH_CLIENT_SECRET={}\n",
        doc["client_secret"].as_str().unwrap()
    )));
    assert_eq!(file_mode(&env_file), 0o640);
    assert_eq!(file_mode(&h.out()), 0o640);
    // Removed dotenv is recreated on the next (verifying) run.
    std::fs::remove_file(&env_file).unwrap();
    h.run(&env).await.assert_code(0);
    assert_eq!(std::fs::read_to_string(&env_file).unwrap(), text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_output_is_exit_5_and_left_alone() {
    let h = Harness::new();
    std::fs::create_dir_all(h.out().parent().unwrap()).unwrap();
    std::fs::write(h.out(), "{\"client_id\": \"half-writ").unwrap();
    let run = h.run(&h.env()).await;
    run.assert_code(5);
    assert_eq!(
        std::fs::read_to_string(h.out()).unwrap(),
        "{\"client_id\": \"half-writ"
    );
    assert_eq!(h.stats().requests, 0, "nothing sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_without_rat_is_trusted_with_a_warning() {
    let h = Harness::new();
    std::fs::create_dir_all(h.out().parent().unwrap()).unwrap();
    std::fs::write(h.out(), r#"{"client_id":"bff-server"}"#).unwrap();
    let run = h.run(&h.env()).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("without a registration_access_token"),
        "{}",
        run.stderr
    );
    assert_eq!(h.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_max_usages_spelling_is_configurable() {
    let h = Harness::with(dcr_idp_emulator::Config {
        iat_max_uses_field: "max_usages".into(),
        ..emulator_config()
    });
    let run = h.run(&h.env()).await;
    run.assert_code(3);
    assert!(
        run.stderr.contains("DCR_IAT_MAX_USES_FIELD"),
        "{}",
        run.stderr
    );
    let mut env = h.env();
    env.insert("DCR_IAT_MAX_USES_FIELD".into(), "max_usages".into());
    h.run(&env).await.assert_code(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bff_page_register_path_and_a_chosen_client_id() {
    let h = Harness::new();
    let mut env = h.env();
    env.insert(
        "DCR_REGISTRATION_ENDPOINT".into(),
        format!("{}/api/oidc/register", h.emu.base_url()),
    );
    env.insert("DCR_CLIENT_ID".into(), "bff-server".into());
    h.run(&env).await.assert_code(0);
    assert_eq!(h.output_json()["client_id"], "bff-server");
    assert_eq!(h.emu.clients()[0].0, "bff-server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_owner_is_applied() {
    use std::os::unix::fs::MetadataExt;
    let h = Harness::new();
    let mut env = h.env();
    env.insert("DCR_OUTPUT_OWNER".into(), "1000:1001".into());
    let run = h.run(&env).await;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        run.assert_code(0);
        let meta = std::fs::metadata(h.out()).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1000, 1001));
    } else {
        // Only root may give files away: a clear local I/O error, and no partial file.
        run.assert_code(5);
        assert!(run.stderr.contains("DCR_OUTPUT_OWNER"), "{}", run.stderr);
        assert!(!h.out().exists());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_volume_with_a_fixed_client_id_adopts_the_existing_client() {
    let h = Harness::new();
    let mut env = h.env_with_rat_endpoint();
    env.insert("DCR_CLIENT_ID".into(), "bff-server".into());
    h.run(&env).await.assert_code(0);
    std::fs::remove_file(h.out()).unwrap();

    let run = h.run(&env).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("adopted client bff-server"),
        "{}",
        run.stderr
    );
    let s = h.stats();
    assert_eq!(
        (s.clients_registered, s.rats_reissued, s.clients_live),
        (1, 1, 1)
    );
    let doc = h.output_json();
    assert_eq!(doc["dcr_bootstrap"]["action"], "adopted");
    assert_eq!(
        doc["registration_access_token"].as_str(),
        h.emu.current_rat("bff-server").as_deref()
    );
    // And the adopted registration verifies on the next start.
    let run = h.run(&env).await;
    run.assert_code(0);
    assert!(run.stderr.contains("verified client"), "{}", run.stderr);

    std::fs::remove_file(h.out()).unwrap();
    env.insert("DCR_ON_EXISTING".into(), "fail".into());
    let run = h.run(&env).await;
    run.assert_code(3);
    assert!(run.stderr.contains("already exists"), "{}", run.stderr);
}
