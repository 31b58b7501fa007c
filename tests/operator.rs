//! What a platform engineer meets in the first thirty minutes: typos, refusals in the
//! configured log format, choices in any case, a closed pipe. Each test runs the real binary.

use crate::common::*;
use serde_json::Value;
use std::process::Stdio;

/// A misspelt variable is named with the one it probably meant; DCR_STRICT_ENV makes it
/// exit 2 before any request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misspelt_variable_is_warned_about_and_strict_mode_refuses_it() {
    let h = Harness::new();
    let mut env = h.env();
    env.insert("DCR_SCOPES".into(), "openid offline_access".into());
    env.insert("DCR_CLIENTNAME".into(), "x".into());
    let run = h.run(&env).await;
    run.assert_code(0);
    for (typo, meant) in [
        ("DCR_SCOPES", "DCR_SCOPE"),
        ("DCR_CLIENTNAME", "DCR_CLIENT_NAME"),
    ] {
        assert!(
            run.stderr.lines().any(|l| l.contains("WARN")
                && l.contains(typo)
                && l.contains(&format!("did you mean {meant}?"))),
            "{}",
            run.stderr
        );
    }
    let requests = h.stats().requests;
    env.insert("DCR_STRICT_ENV".into(), "true".into());
    let run = h.run(&env).await;
    run.assert_code(2);
    assert!(run.stderr.contains("DCR_STRICT_ENV"), "{}", run.stderr);
    assert_eq!(h.stats().requests, requests, "a request was made");
}

/// A value clap refuses is logged like every other error: in JSON when asked for, with its
/// exit code, once (no "got … got"); choices match in any case; bools list their spellings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_of_the_command_line_go_through_the_logger() {
    let h = Harness::new();
    for (var, value, needle) in [
        ("DCR_TIMEOUT", "300", "DCR_TIMEOUT"),
        ("DCR_VERIFY_CREDENTIALS", "maybe", "yes/no"),
        ("DCR_PROFILE", "okta", "DCR_PROFILE"),
    ] {
        let mut env = h.env();
        env.insert("DCR_LOG_FORMAT".into(), "JSON".into());
        env.insert(var.into(), value.into());
        let run = h.run(&env).await;
        run.assert_code(2);
        let line: Value = serde_json::from_str(run.stderr.trim())
            .unwrap_or_else(|e| panic!("{var}: not one JSON line ({e}): {}", run.stderr));
        assert_eq!(line["exit_code"], 2, "{line}");
        assert_eq!(line["level"], "ERROR");
        let msg = line["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{msg}");
        assert_eq!(msg.matches("got ").count(), 1, "{msg}");
    }
    // Any case: a format, a profile, a policy.
    let mut env = h.env();
    env.insert("DCR_LOG_FORMAT".into(), "Json".into());
    env.insert("DCR_PROFILE".into(), "EmpowerNow".into());
    env.insert("DCR_ON_STALE".into(), "Fail".into());
    let run = h.run_args(&env, &["check"]).await;
    run.assert_code(0);
    assert_eq!(h.stats().requests, 0);
}

/// `keygen | head`: a reader that went away is not a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_is_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = std::collections::BTreeMap::new();
    env.insert(
        "DCR_SIGNING_KEY".to_string(),
        dir.path().join("k.pem").display().to_string(),
    );
    let mut cmd = command(&env, &["keygen"]);
    cmd.stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    drop(child.stdout.take()); // the reader is gone before anything is written
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(dir.path().join("k.pem").exists());
}

/// The classic mistakes get a hint with the failure, not only after DCR_TIMEOUT: https to a
/// plain-HTTP port, and localhost inside a container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_a_plain_port_and_loopback_in_a_container_are_hinted() {
    let h = Harness::new();
    let mut env = h.env();
    env.insert(
        "IDP_BASE_URL".into(),
        h.emu.base_url().replace("http://", "https://"),
    );
    env.insert("DCR_TIMEOUT".into(), "3s".into());
    env.insert("DCR_REQUEST_TIMEOUT".into(), "1s".into());
    env.insert("RUST_LOG".into(), "info".into());
    let run = h.run(&env).await;
    run.assert_code(4);
    let first = run.stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains("INFO") && first.contains("use an http:// URL"),
        "{}",
        run.stderr
    );

    let h = Harness::not_listening(emulator_config());
    let mut env = h.env();
    env.insert(
        "IDP_BASE_URL".into(),
        h.emu.base_url().replace("127.0.0.1", "localhost"),
    );
    env.insert("KUBERNETES_SERVICE_HOST".into(), "10.96.0.1".into());
    env.insert("DCR_TIMEOUT".into(), "1s".into());
    env.insert("RUST_LOG".into(), "info".into());
    let run = h.run(&env).await;
    run.assert_code(4);
    assert!(
        run.stderr.contains("localhost is the container itself"),
        "{}",
        run.stderr
    );
}

/// A volume the process may not write: the error names the directory's owner and mode, our
/// uid, and the chown that fixes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (runs the binary as another uid)"]
async fn a_permission_error_names_owner_mode_uid_and_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let h = Harness::new();
    std::fs::set_permissions(h.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(h.out().parent().unwrap()).unwrap();
    let cmd = command_as(&h.env(), h.dir.path(), (65532, 65532));
    let run = h.spawn_command(cmd).finish().await;
    run.assert_code(5);
    for needle in [
        "owned by uid 0",
        "mode 0755",
        "runs as uid 65532",
        "chown 65532:65532",
    ] {
        assert!(run.stderr.contains(needle), "{needle}: {}", run.stderr);
    }
}

/// `version`, shell completions and a man page from the command-line definition; `keygen`
/// creates a missing directory like `run` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_completions_man_page_and_keygen_into_a_new_directory() {
    let env = std::collections::BTreeMap::new();
    let v = run_bin(&env, &["version"]).await;
    v.assert_code(0);
    assert_eq!(
        v.stdout.trim(),
        format!("dcr-bootstrap {}", env!("CARGO_PKG_VERSION"))
    );
    let bash = run_bin(&env, &["completions", "bash"]).await;
    bash.assert_code(0);
    assert!(
        bash.stdout.contains("--idp-base-url") && bash.stdout.contains("keygen"),
        "{}",
        bash.stdout
    );
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("c.bash");
    std::fs::write(&script, &bash.stdout).unwrap();
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(syntax.success(), "the bash completion does not parse");
    let man = run_bin(&env, &["man"]).await;
    man.assert_code(0);
    assert!(
        man.stdout.contains(".TH dcr-bootstrap 1") && man.stdout.contains("DCR_TIMEOUT"),
        "{}",
        &man.stdout[..man.stdout.len().min(400)]
    );

    let key = dir.path().join("new/dir/k.pem");
    let mut env = std::collections::BTreeMap::new();
    env.insert("DCR_SIGNING_KEY".to_string(), key.display().to_string());
    run_bin(&env, &["keygen"]).await.assert_code(0);
    assert!(key.exists());
    assert_eq!(file_mode(key.parent().unwrap()), 0o700);
}

/// `deregister --dry-run` names the client and the files and changes nothing; `deregister`
/// names each file it removes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregister_has_a_dry_run_and_names_its_files() {
    let h = Harness::new();
    let mut env = key_env(&h, "ES256");
    let dotenv = h.dir.path().join("keys/bff.env");
    env.insert("DCR_ENV_OUTPUT".into(), dotenv.display().to_string());
    h.run(&env).await.assert_code(0);
    let id = h.output_json()["client_id"].as_str().unwrap().to_string();
    let requests = h.stats().requests;
    let plan = h.run_args(&env, &["deregister", "--dry-run"]).await;
    plan.assert_code(0);
    let v: Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(v["would_delete_client"], id.as_str());
    let files: Vec<String> = v["would_remove"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    for f in [h.out(), dotenv.clone(), h.dir.path().join("keys/bff.pem")] {
        assert!(
            files.contains(&f.display().to_string()),
            "{f:?} in {files:?}"
        );
        assert!(f.exists(), "the dry run removed {}", f.display());
    }
    assert_eq!(h.stats().requests, requests, "the dry run sent a request");
    assert_eq!(h.stats().clients_deleted, 0);

    let run = h.run_args(&env, &["deregister"]).await;
    run.assert_code(0);
    assert_eq!(h.stats().clients_deleted, 1);
    for f in &files {
        assert!(
            run.stderr.contains(&format!("removed {f}")),
            "{f} not named: {}",
            run.stderr
        );
    }
}

/// `check` on a registered client shows what a run would do from the stored state: the read
/// and the correction of differences, not the registration bodies, and each key's age and
/// when it is rotated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_shows_the_plan_from_the_stored_state_with_key_ages() {
    let h = Harness::new();
    let env = key_env(&h, "ES256");
    let first = h.run_args(&env, &["check"]).await;
    first.assert_code(0);
    let v: Value = serde_json::from_str(&first.stdout).unwrap();
    assert!(v["requests"]["register"].is_object(), "{}", v["requests"]);
    h.run(&env).await.assert_code(0);
    let requests = h.stats().requests;
    let run = h.run_args(&env, &["check"]).await;
    run.assert_code(0);
    assert_eq!(h.stats().requests, requests, "check sent a request");
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    let doc = h.output_json();
    assert!(v["requests"].get("register").is_none(), "{}", v["requests"]);
    assert_eq!(
        v["requests"]["read_client"]["url"],
        doc["registration_client_uri"]
    );
    assert_eq!(v["output"]["stored"]["sealed_for_this_deployment"], true);
    let ages = v["keys"]["ages"].as_array().unwrap();
    assert_eq!(ages.len(), 1, "{ages:?}");
    assert_eq!(ages[0]["current"], true);
    assert_eq!(ages[0]["age_days"], 0);
    let created = humantime::parse_rfc3339(ages[0]["created_at"].as_str().unwrap()).unwrap();
    let rotated = humantime::parse_rfc3339(ages[0]["rotated_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        rotated.duration_since(created).unwrap(),
        std::time::Duration::from_secs(30 * 86_400),
        "the default rotation is 30 days"
    );
}

/// `--help` leads with what most deployments set; each command's help shows only the options
/// it reads (keygen: 4 and logging, not the ~90 of a run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_leads_with_the_few_and_each_command_shows_what_it_reads() {
    let env = std::collections::BTreeMap::new();
    let top = run_bin(&env, &["--help"]).await;
    top.assert_code(0);
    let lead = top.stdout.find("Most deployments set only").unwrap();
    assert!(lead < top.stdout.find("Options:").unwrap(), "not first");
    let options = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.trim_start().strip_prefix("--"))
            .map(|l| l.split([' ', '=']).next().unwrap_or_default().to_string())
            .collect()
    };
    let keygen = run_bin(&env, &["keygen", "--help"]).await;
    keygen.assert_code(0);
    let shown = options(&keygen.stdout);
    for o in ["signing-key", "kid", "key-alg", "rsa-bits", "log-format"] {
        assert!(shown.contains(&o.to_string()), "{o} missing: {shown:?}");
    }
    assert!(shown.len() <= 8, "{shown:?}");
    let mint = run_bin(&env, &["mint-iat", "--help"]).await;
    let shown = options(&mint.stdout);
    assert!(shown.contains(&"iat-output".to_string()), "{shown:?}");
    assert!(!shown.contains(&"redirect-uris".to_string()), "{shown:?}");
    assert!(
        options(&top.stdout).len() > 60,
        "the full help lost options"
    );
}
