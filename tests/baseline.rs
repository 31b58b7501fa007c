//! The benchmark baselines must really work against the emulator, or the comparison is void.

use crate::common::*;
use dcr_idp_emulator::Fault;
use std::time::Duration;
use tokio::process::Command;

async fn baseline(h: &Harness, argv: &[&str]) -> std::process::Output {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(argv[1]);
    let fut = Command::new(argv[0])
        .arg(script)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("IDP_BASE_URL", h.emu.base_url())
        .env("BOOTSTRAP_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("OUTPUT", h.out())
        .output();
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .expect("baseline hung")
        .expect("spawn the baseline (needs bash, curl, jq, python3 + requests)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bash, curl, jq and Python requests (.ci/run installs them)"]
async fn the_curl_baseline_registers_skips_and_survives_503_pages() {
    let h = Harness::new();
    // A proxy's 503 page with a body on both calls: the bodies must not leak into the result.
    h.emu.push_fault(Fault::action_on(
        "/api/",
        2,
        dcr_idp_emulator::FaultAction::Respond {
            status: 503,
            headers: vec![("Content-Type".into(), "text/html".into())],
            body: "<html>starting</html>".into(),
        },
    ));
    let out = baseline(&h, &["bash", "bench/baseline/curl-bootstrap.sh"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        h.output_json()["client_id"].as_str().map(|s| !s.is_empty()),
        Some(true)
    );
    assert_eq!(file_mode(&h.out()), 0o600);
    assert_eq!(h.stats().clients_registered, 1);
    assert!(h.stray_files().is_empty());
    let again = baseline(&h, &["bash", "bench/baseline/curl-bootstrap.sh"]).await;
    assert!(again.status.success());
    assert_eq!(
        h.stats().clients_registered,
        1,
        "an existing output skips the run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bash, curl, jq and Python requests (.ci/run installs them)"]
async fn the_python_baseline_registers() {
    let h = Harness::new();
    h.emu.push_fault(Fault::status("/api/", 503, 1, None));
    let out = baseline(&h, &["python3", "bench/baseline/python-bootstrap.py"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(h.output_json()["client_id"].is_string());
    assert_eq!(h.stats().clients_registered, 1);
}
