//! No secret value (admin token, IAT, registration access token, client secret, private key)
//! appears in any output, at any log level, in any format.

use crate::common::*;
use dcr_idp_emulator::Fault;

fn all_secrets(h: &Harness, extra: &[String]) -> Vec<String> {
    let mut s = h.emu.issued_secrets();
    s.push(ADMIN_TOKEN.to_string());
    s.extend_from_slice(extra);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_logs_at_trace_in_either_format() {
    for format in ["text", "json"] {
        let h = Harness::new();
        let key = h.dir.path().join("keys").join("k.pem");
        let mut env = h.env();
        env.insert("RUST_LOG".into(), "trace".into());
        env.insert("DCR_LOG_FORMAT".into(), format.into());
        env.insert(
            "DCR_TOKEN_ENDPOINT_AUTH_METHOD".into(),
            "client_secret_post".into(),
        );
        env.insert(
            "DCR_ENV_OUTPUT".into(),
            h.dir.path().join("keys/bff.env").display().to_string(),
        );
        // Retries and a re-mint put tokens through every logging path there is.
        h.emu
            .push_fault(Fault::status("/api/oidc/dcr/register", 503, 2, Some("0")));
        let first = h.run(&env).await;
        first.assert_code(0);
        let second = h.run(&env).await;
        second.assert_code(0);
        // A rejection path too: the stored client vanishes.
        let id = h.output_json()["client_id"].as_str().unwrap().to_string();
        h.emu.remove_client(&id);
        let third = h.run(&env).await;
        third.assert_code(3);

        // The pkjwt variant, whose private key must not leak either.
        let h2 = Harness::new();
        let mut env2 = h2.env();
        env2.insert("RUST_LOG".into(), "trace".into());
        env2.insert("DCR_LOG_FORMAT".into(), format.into());
        env2.insert("DCR_SIGNING_KEY".into(), key.display().to_string());
        let fourth = h2.run(&env2).await;
        fourth.assert_code(0);
        let pem = std::fs::read_to_string(&key).unwrap();
        let key_body: Vec<String> = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::to_string)
            .collect();

        let secrets = all_secrets(&h, &all_secrets(&h2, &key_body));
        let doc = h.dir.path().join("keys/bff_client.json");
        let stored = std::fs::read_to_string(doc).unwrap();
        assert!(
            stored.contains("client_secret"),
            "the test exercised a client secret"
        );
        assert!(first.stderr.lines().count() > 20, "trace logging was on");
        for run in [&first, &second, &third, &fourth] {
            assert_no_secrets(&run.logs(), &secrets);
        }
        let dotenv = std::fs::read_to_string(h.dir.path().join("keys/bff.env")).unwrap();
        let comments: String = dotenv.lines().filter(|l| l.starts_with('#')).collect();
        assert_no_secrets(&comments, &secrets);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_given_iat_never_appears_even_when_rejected() {
    let h = Harness::new();
    let iat = h.emu.mint_iat(std::time::Duration::from_secs(600), 1);
    h.emu.expire_iats();
    let mut env = h.env();
    env.remove("BOOTSTRAP_ADMIN_TOKEN");
    env.insert("DCR_IAT".into(), iat.clone());
    env.insert("RUST_LOG".into(), "trace".into());
    let run = h.run(&env).await;
    run.assert_code(3);
    assert_no_secrets(&run.logs(), &[iat]);
}
