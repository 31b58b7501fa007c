//! What heals is retried; what cannot heal fails fast with the documented exit code.

use crate::common::*;
use dcr_idp_emulator::{Fault, FaultAction};
use std::time::Duration;

const REGISTER: &str = "/api/oidc/dcr/register";
const MINT: &str = "/api/admin/dcr/initial-access-tokens";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_an_idp_that_is_not_listening_yet() {
    let mut h = Harness::not_listening(emulator_config());
    let mut run = h.spawn(&h.env());
    // Two refused connections prove it is probing; then the IdP comes up.
    run.wait_for("Connection refused", Duration::from_secs(10))
        .await;
    run.wait_for("Connection refused", Duration::from_secs(10))
        .await;
    h.emu.listen().unwrap();
    let run = run.finish().await;
    run.assert_code(0);
    assert_eq!(h.stats().clients_registered, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_503_then_succeeds() {
    let h = Harness::new();
    h.emu.push_fault(Fault::status(REGISTER, 503, 3, None));
    let run = h.run(&h.env()).await;
    run.assert_code(0);
    let s = h.stats();
    assert_eq!(
        (s.faults_fired, s.clients_registered, s.iats_minted),
        (3, 1, 1)
    );
    assert_eq!(
        run.stderr.matches("register client failed (503").count(),
        3,
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honours_retry_after_seconds() {
    let h = Harness::new();
    h.emu.push_fault(Fault::status(MINT, 429, 1, Some("2")));
    let run = h.run(&h.env()).await;
    run.assert_code(0);
    assert!(run.stderr.contains("Retry-After 2s"), "{}", run.stderr);
    assert!(
        run.elapsed >= Duration::from_secs(2),
        "waited {:?}",
        run.elapsed
    );
    assert_eq!(h.stats().iats_minted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_metadata_fails_fast_without_retry() {
    let h = Harness::new();
    let mut env = h.env();
    // The pkjwt profile conflicts with a secret-based auth method: the IdP says
    // invalid_client_metadata, which no retry can fix.
    env.insert("DCR_CLIENT_PROFILE".into(), "code-flow-pkjwt".into());
    env.insert(
        "DCR_TOKEN_ENDPOINT_AUTH_METHOD".into(),
        "client_secret_basic".into(),
    );
    let run = h.run(&env).await;
    run.assert_code(3);
    assert!(
        run.stderr.contains("invalid_client_metadata"),
        "{}",
        run.stderr
    );
    let s = h.stats();
    assert_eq!((s.registrations_rejected, s.clients_registered), (1, 0));
    assert!(!run.stderr.contains("retry"), "{}", run.stderr);
    assert!(!h.out().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_admin_token_is_exit_3() {
    let h = Harness::new();
    let mut env = h.env();
    env.insert("BOOTSTRAP_ADMIN_TOKEN".into(), "not-the-admin-token".into());
    let run = h.run(&env).await;
    run.assert_code(3);
    assert!(
        run.stderr.contains("BOOTSTRAP_ADMIN_TOKEN was rejected"),
        "{}",
        run.stderr
    );
    assert_eq!(h.stats().iat_mints_rejected, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_minted_iat_is_reminted_once() {
    let h = Harness::new();
    h.emu.push_fault(Fault {
        method: Some("POST".into()),
        path: Some(REGISTER.into()),
        times: 1,
        after: 0,
        effects: vec![],
        action: FaultAction::Respond {
            status: 401,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: r#"{"error":"invalid_token","error_description":"initial access token expired"}"#
                .into(),
        },
    });
    let run = h.run(&h.env()).await;
    run.assert_code(0);
    assert!(run.stderr.contains("minting a fresh one"), "{}", run.stderr);
    let s = h.stats();
    assert_eq!((s.iats_minted, s.clients_registered), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_given_iat_is_fatal_and_says_to_mint_a_fresh_one() {
    let h = Harness::new();
    let iat = h.emu.mint_iat(Duration::from_secs(600), 1);
    h.emu.expire_iats();
    let mut env = h.env();
    env.remove("BOOTSTRAP_ADMIN_TOKEN");
    env.insert("DCR_IAT".into(), iat);
    let run = h.run(&env).await;
    run.assert_code(3);
    assert!(run.stderr.contains("Mint a fresh IAT"), "{}", run.stderr);
    assert!(run.stderr.contains("expired"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_with_the_idp_down_is_exit_4() {
    let h = Harness::not_listening(emulator_config());
    let mut env = h.env();
    env.insert("DCR_TIMEOUT".into(), "1500ms".into());
    let run = h.run(&env).await;
    run.assert_code(4);
    assert!(run.stderr.contains("DCR_TIMEOUT"), "{}", run.stderr);
    assert!(
        run.stderr.contains("Connection refused"),
        "names the last error: {}",
        run.stderr
    );
    assert!(
        run.elapsed < Duration::from_secs(5),
        "took {:?}",
        run.elapsed
    );
    assert!(!h.out().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() {
    let h = Harness::new();
    let elsewhere = Harness::new();
    h.emu.push_fault(Fault::action_on(
        MINT,
        1,
        FaultAction::Redirect {
            status: 307,
            location: format!("{}{MINT}", elsewhere.emu.base_url()),
        },
    ));
    let run = h.run(&h.env()).await;
    run.assert_code(3);
    assert!(run.stderr.contains("redirect"), "{}", run.stderr);
    assert_eq!(elsewhere.stats().requests, 0, "the token went nowhere else");
}

async fn signal_during_backoff(sig: i32, code: i32) {
    let h = Harness::new();
    h.emu.push_fault(Fault::status(MINT, 503, 1000, Some("30")));
    let mut env = h.env();
    env.insert("DCR_TIMEOUT".into(), "5m".into());
    let mut run = h.spawn(&env);
    run.wait_for("Retry-After 30s", Duration::from_secs(10))
        .await;
    let sent = std::time::Instant::now();
    run.signal(sig);
    let run = run.finish().await;
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "took {:?} to stop",
        sent.elapsed()
    );
    run.assert_code(code);
    assert!(!h.out().exists());
    assert!(h.stray_files().is_empty(), "{:?}", h.stray_files());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_backoff_exits_143_within_a_second() {
    signal_during_backoff(libc::SIGTERM, 143).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_during_backoff_exits_130_within_a_second() {
    signal_during_backoff(libc::SIGINT, 130).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_slow_request_exits_within_a_second() {
    let h = Harness::new();
    h.emu
        .push_fault(Fault::action_on(MINT, 1, FaultAction::Delay { ms: 20_000 }));
    let mut run = h.spawn(&h.env());
    run.wait_for("sending", Duration::from_secs(10)).await;
    let sent = std::time::Instant::now();
    run.signal(libc::SIGTERM);
    let run = run.finish().await;
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "took {:?}",
        sent.elapsed()
    );
    run.assert_code(143);
    assert!(!h.out().exists());
}
