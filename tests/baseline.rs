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

/// The advisory snapshot is cloned again when the bundle changes (a stale clone would hide
/// new advisories), and left alone when it does not.
#[test]
fn the_advisory_db_follows_its_bundle() {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(["-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "git {args:?}: {o:?}");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/advisory-db.sh");
    let db = dir.path().join("dbs/advisory-db-x");
    let head_of_db = || {
        let o = Command::new("git")
            .args(["-C", db.to_str().unwrap(), "rev-parse", "HEAD"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let sync = || {
        let s = Command::new("bash")
            .arg(&script)
            .arg(dir.path().join("db.bundle"))
            .arg(&db)
            .status()
            .unwrap();
        assert!(s.success());
    };
    git(&["init", "-q", "src"]);
    for n in ["1", "2"] {
        std::fs::write(dir.path().join("src/advisory"), n).unwrap();
        git(&["-C", "src", "add", "."]);
        git(&["-C", "src", "commit", "-qm", n]);
        git(&[
            "-C",
            "src",
            "bundle",
            "create",
            "-q",
            "../db.bundle",
            "HEAD",
            "main",
        ]);
        sync();
        assert_eq!(
            head_of_db(),
            git(&["-C", "src", "rev-parse", "HEAD"]),
            "snapshot {n}"
        );
    }
    // Unchanged bundle: the clone stays (a mark left in it survives).
    std::fs::write(db.join("mark"), "x").unwrap();
    sync();
    assert!(db.join("mark").exists(), "re-cloned an unchanged bundle");
}
