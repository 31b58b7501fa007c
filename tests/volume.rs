//! The volume is not the program's memory (docs/security.md, "State"): whoever can write the
//! output can edit it, and the program must act with admin powers only on what it can verify
//! it wrote itself. Each test reproduces one attack of the second adversarial review against
//! the real binary; `DCR_TEST_BIN=<old build> cargo test --test tests volume::` shows them
//! failing before.

use crate::common::*;
use serde_json::json;

/// The takeover through the seal: the record is pointed at another client and its token
/// removed, saved by one run, then given a bogus token so that the next run "renews" it with
/// the admin token. Nothing may reach the victim, with or without DCR_CLIENT_ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_pointed_at_another_client_never_gets_the_admin_token() {
    for client_id in [None, Some("bff-server")] {
        let h = Harness::new();
        let mut env = h.env_with_rat_endpoint();
        if let Some(id) = client_id {
            env.insert("DCR_CLIENT_ID".into(), id.into());
        }
        let dotenv = h.dir.path().join("keys/bff.env");
        env.insert("DCR_ENV_OUTPUT".into(), dotenv.display().to_string());
        h.run(&env).await.assert_code(0);
        let (victim_id, victim_uri, victim_secret) = victim(&h).await;
        let before = h.emu.clients();
        let reissued = h.stats().rats_reissued;

        let mut doc = h.output_json();
        doc["client_id"] = json!(victim_id);
        doc["registration_client_uri"] = json!(victim_uri);
        doc.as_object_mut()
            .map(|o| o.remove("registration_access_token"));
        doc["dcr_bootstrap"]
            .as_object_mut()
            .map(|o| o.remove("seal"));
        write_json(&h.out(), &doc);
        let first = h.run(&env).await;
        let mut doc = h.output_json();
        doc["registration_access_token"] = json!("any-bogus-token");
        write_json(&h.out(), &doc);
        let second = h.run(&env).await;

        let case = format!("DCR_CLIENT_ID={client_id:?}");
        assert_eq!(
            h.stats().rats_reissued,
            reissued,
            "[{case}] the admin token re-issued the victim's token\n{}\n{}",
            first.stderr,
            second.stderr
        );
        assert_eq!(h.emu.clients(), before, "[{case}] the victim was changed");
        assert_ne!(second.code, Some(0), "[{case}] {}", second.stderr);
        let files = format!(
            "{}{}",
            std::fs::read_to_string(h.out()).unwrap_or_default(),
            std::fs::read_to_string(&dotenv).unwrap_or_default()
        );
        assert!(
            !files.contains(&victim_secret),
            "[{case}] the victim's secret reached our files"
        );
        assert!(
            h.output_json()["dcr_bootstrap"].get("seal").is_none(),
            "[{case}] an edited record was sealed\n{}\n{}\n{}",
            first.stderr,
            second.stderr,
            h.output_json()
        );
        if client_id.is_some() {
            // Refused before any request: a stored record for another client.
            first.assert_code(5);
            assert!(first.stderr.contains(&victim_id), "{}", first.stderr);
        }
    }
}

/// A sealed record copied from another deployment that shares the admin token (here: the same
/// IdP, another output) does not verify, so its client never gets the admin token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_record_from_another_deployment_is_not_ours() {
    let h = Harness::new();
    let other = h.env_with_rat_endpoint();
    h.run(&other).await.assert_code(0);
    let copied = h.output_json();

    let mut ours = other.clone();
    let out = h.dir.path().join("ours/bff_client.json");
    ours.insert("DCR_OUTPUT".into(), out.display().to_string());
    h.run(&ours).await.assert_code(0);
    let before = h.emu.clients();
    let reissued = h.stats().rats_reissued;

    let mut doc = copied.clone();
    doc["registration_access_token"] = json!("any-bogus-token");
    write_json(&out, &doc);
    let run = h.run(&ours).await;
    assert_ne!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains("not sealed for this deployment"),
        "{}",
        run.stderr
    );
    assert_eq!(
        h.stats().rats_reissued,
        reissued,
        "the admin token re-issued the other deployment's token\n{}",
        run.stderr
    );
    assert_eq!(
        h.emu.clients(),
        before,
        "the other deployment's client was changed"
    );
}

/// A planted settlement cannot keep an attacker's redirect URI (or key, or grant) at the IdP;
/// a settlement that does suppress a correction is said at WARN on every run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_settlement_never_keeps_a_redirect_uri_and_is_always_said() {
    let h = Harness::new();
    let mut env = h.env();
    env.insert(
        "DCR_GRANT_TYPES".into(),
        "authorization_code,refresh_token".into(),
    );
    h.run(&env).await.assert_code(0);
    let id = h.output_json()["client_id"].as_str().unwrap().to_string();
    let ours = h.output_json()["redirect_uris"].clone();
    // Whoever holds the volume (and so the registration access token) changes the client at
    // the IdP and plants settlements that would keep the changes.
    let evil = json!(["https://attacker.example/cb"]);
    let fewer = json!(["authorization_code"]);
    h.emu.set_client_field(&id, "redirect_uris", evil.clone());
    h.emu.set_client_field(&id, "grant_types", fewer.clone());
    h.emu.set_client_field(&id, "client_name", json!("renamed"));
    let mut doc = h.output_json();
    doc["dcr_bootstrap"]["settled"] = json!({
        "redirect_uris": {"asked": ours, "holds": evil},
        "grant_types": {"asked": ["authorization_code", "refresh_token"], "holds": fewer},
        "client_name": {"asked": "bff-server", "holds": "renamed"},
    });
    write_json(&h.out(), &doc);

    let run = h.run(&env).await;
    run.assert_code(0);
    let client = h
        .emu
        .clients()
        .into_iter()
        .find(|(c, _)| *c == id)
        .unwrap()
        .1;
    assert_eq!(
        client["redirect_uris"],
        json!([
            "https://automate.example/auth/callback",
            "https://authn.example/auth/callback"
        ]),
        "the planted redirect URI stayed\n{}",
        run.stderr
    );
    assert_eq!(
        client["grant_types"],
        json!(["authorization_code", "refresh_token"]),
        "the planted grants stayed\n{}",
        run.stderr
    );
    // What the settlement may cover is kept, and said.
    assert_eq!(client["client_name"], json!("renamed"));
    assert!(
        run.stderr.contains("WARN") && run.stderr.contains("client_name"),
        "{}",
        run.stderr
    );
}

/// A stored key record decides nothing about what is published: the JWK of a key we hold is
/// derived from its private half (an attacker's JWK under our thumbprint is not published), a
/// record without a private half is published only if the IdP already holds that key, and a
/// future creation time is clamped, so rotation resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_record_cannot_publish_a_key_we_do_not_hold() {
    let h = Harness::new();
    let env = key_env(&h, "ES256");
    h.run(&env).await.assert_code(0);
    let doc = h.output_json();
    let id = doc["client_id"].as_str().unwrap().to_string();
    let ours = doc["dcr_bootstrap"]["signing_keys"][0]["jwk"].clone();
    let kid = ours["kid"].as_str().unwrap().to_string();

    // The attacker's own key, made with our keygen.
    let mut evil_env = env.clone();
    let evil_pem = h.dir.path().join("evil.pem");
    evil_env.insert("DCR_SIGNING_KEY".into(), evil_pem.display().to_string());
    let made = h.run_args(&evil_env, &["keygen"]).await;
    made.assert_code(0);
    let evil: serde_json::Value = serde_json::from_str(&made.stdout).unwrap();
    let mut doc = h.output_json();
    let keys = &mut doc["dcr_bootstrap"]["signing_keys"];
    let mut swapped = evil["jwk"].clone();
    swapped["kid"] = json!(kid);
    keys[0]["jwk"] = swapped;
    keys[0]["created_at"] = json!("2099-01-01T00:00:00Z");
    let mut earlier = keys[0].clone();
    earlier["kid"] = json!("evil-old");
    earlier["alg"] = json!("ES256");
    earlier["jwk"] = evil["jwk"].clone();
    earlier["jwk"]["kid"] = json!("evil-old");
    earlier["thumbprint"] = evil["thumbprint"].clone();
    // A day old: nothing but its missing private half retires it.
    let yesterday = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
    earlier["created_at"] = json!(humantime::format_rfc3339_seconds(yesterday).to_string());
    earlier.as_object_mut().map(|o| o.remove("pem"));
    keys.as_array_mut().unwrap().push(earlier.clone());
    write_json(&h.out(), &doc);

    let run = h.run(&env).await;
    run.assert_code(0);
    let client = h
        .emu
        .clients()
        .into_iter()
        .find(|(c, _)| *c == id)
        .unwrap()
        .1;
    let published = client["jwks"]["keys"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !published.is_empty() && published.iter().all(|k| k["x"] == ours["x"]),
        "a key whose private half we do not hold is published: {published:?}\n{}",
        run.stderr
    );
    let pem = std::fs::read_to_string(&evil_pem).unwrap();
    let aud = format!("{}/api/oidc/token", h.emu.base_url());
    for k in [kid.as_str(), "evil-old"] {
        let a = client_assertion(&pem, "ES256", k, &id, &aud);
        assert!(
            !assertion_authenticates(&h.emu.base_url(), &a).await,
            "the attacker's key authenticates as our client (kid {k})"
        );
    }
    run.assert_code(0);
    let created = h.output_json()["dcr_bootstrap"]["signing_keys"][0]["created_at"].clone();
    let created = humantime::parse_rfc3339(created.as_str().unwrap()).unwrap();
    assert!(
        created <= std::time::SystemTime::now(),
        "a future creation time was kept"
    );

    // Where the IdP's keys are not known (jwks_uri mode: the app serves DCR_JWKS_OUTPUT), a
    // record without its private half is not published at all.
    let mut uri_env = env.clone();
    let jwks_out = h.dir.path().join("public/jwks.json");
    uri_env.insert("DCR_JWKS_OUTPUT".into(), jwks_out.display().to_string());
    uri_env.insert(
        "DCR_JWKS_URI".into(),
        "https://bff.example/jwks.json".into(),
    );
    let mut doc = h.output_json();
    doc["dcr_bootstrap"]["signing_keys"]
        .as_array_mut()
        .unwrap()
        .push(earlier);
    write_json(&h.out(), &doc);
    let run = h.run(&uri_env).await;
    run.assert_code(0);
    let served: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&jwks_out).unwrap()).unwrap();
    let served = served["keys"].as_array().cloned().unwrap_or_default();
    assert!(
        !served.is_empty() && served.iter().all(|k| k["x"] == ours["x"]),
        "a recorded key without its private half is served: {served:?}\n{}",
        run.stderr
    );
}

/// Finding 6: a link planted at DCR_OUTPUT (here: to another instance's output, which a root
/// run could read and act on) is refused before any request; so are links at the dotenv view
/// and the signing key, and a directory another uid owns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_links_and_foreign_directories_are_refused() {
    let h = Harness::new();
    let other = h.env();
    h.run(&other).await.assert_code(0);
    let other_file = std::fs::read(h.out()).unwrap();
    let before = h.emu.clients();
    let requests = h.stats().requests;

    let ours_dir = h.dir.path().join("ours");
    std::fs::create_dir_all(&ours_dir).unwrap();
    let ours_out = ours_dir.join("bff_client.json");
    std::os::unix::fs::symlink(h.out(), &ours_out).unwrap();
    let mut ours = other.clone();
    ours.insert("DCR_OUTPUT".into(), ours_out.display().to_string());
    ours.insert(
        "DCR_REDIRECT_URIS".into(),
        "https://ours.example/callback".into(),
    );
    let run = h.run(&ours).await;
    run.assert_code(5);
    assert!(run.stderr.contains("symbolic link"), "{}", run.stderr);
    assert_eq!(h.stats().requests, requests, "a request was made");
    assert_eq!(
        h.emu.clients(),
        before,
        "the other instance's client changed"
    );
    assert_eq!(std::fs::read(h.out()).unwrap(), other_file);

    // The dotenv view and the signing key.
    std::fs::remove_file(&ours_out).unwrap();
    let decoy = h.dir.path().join("decoy");
    std::fs::write(&decoy, "x").unwrap();
    let dotenv = ours_dir.join("bff.env");
    std::os::unix::fs::symlink(&decoy, &dotenv).unwrap();
    let mut with_dotenv = ours.clone();
    with_dotenv.insert("DCR_ENV_OUTPUT".into(), dotenv.display().to_string());
    let run = h.run(&with_dotenv).await;
    assert_ne!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("symbolic link"), "{}", run.stderr);
    std::fs::remove_file(&ours_out).ok();
    let key = ours_dir.join("bff.pem");
    std::os::unix::fs::symlink(&decoy, &key).unwrap();
    let mut with_key = ours.clone();
    with_key.insert("DCR_SIGNING_KEY".into(), key.display().to_string());
    with_key.insert("DCR_CLIENT_PROFILE".into(), "code-flow-pkjwt".into());
    let run = h.run(&with_key).await;
    run.assert_code(5);
    assert!(run.stderr.contains("symbolic link"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&decoy).unwrap(), "x");
}

/// A directory owned by another uid is refused: its owner could swap any file in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (chown to another uid)"]
async fn a_directory_another_uid_owns_is_refused() {
    let h = Harness::new();
    let other = h.env();
    let foreign = h.dir.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::os::unix::fs::chown(&foreign, Some(4242), Some(4242)).unwrap();
    let mut there = other.clone();
    there.insert(
        "DCR_OUTPUT".into(),
        foreign.join("bff_client.json").display().to_string(),
    );
    let requests = h.stats().requests;
    let run = h.run(&there).await;
    run.assert_code(5);
    assert!(run.stderr.contains("owned by uid 4242"), "{}", run.stderr);
    assert_eq!(h.stats().requests, requests, "a request was made");
    assert!(!foreign.join("bff_client.json").exists());
}

/// The one link that is followed: a key mounted from a Kubernetes Secret (`key.pem ->
/// ..data/key.pem`) on a read-only mount, where nobody could have planted it. The same layout
/// on a writable directory is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mount namespaces (root with CAP_SYS_ADMIN)"]
async fn a_secret_mounted_key_link_is_followed_only_on_a_read_only_mount() {
    assert_can_mount();
    let h = Harness::new();
    let secret = h.dir.path().join("secret");
    std::fs::create_dir_all(secret.join("..data")).unwrap();
    let mut env = key_env(&h, "ES256");
    env.insert(
        "DCR_SIGNING_KEY".into(),
        secret.join("..data/key.pem").display().to_string(),
    );
    h.run_args(&env, &["keygen"]).await.assert_code(0);
    std::os::unix::fs::symlink("..data/key.pem", secret.join("key.pem")).unwrap();
    env.insert(
        "DCR_SIGNING_KEY".into(),
        secret.join("key.pem").display().to_string(),
    );
    env.insert("BFF_JWK_ROTATE_AFTER_DAYS".into(), "-1".into());

    let run = h.run(&env).await;
    run.assert_code(5);
    assert!(run.stderr.contains("symbolic link"), "{}", run.stderr);

    let mut cmd = tokio::process::Command::new("unshare");
    cmd.args([
        "-m",
        "sh",
        "-c",
        "mount --bind \"$0\" \"$0\" && mount -o remount,bind,ro \"$0\" && exec \"$1\"",
    ])
    .arg(&secret)
    .arg(&*BIN)
    .env_clear()
    .env("PATH", std::env::var("PATH").unwrap_or_default())
    .envs(&env);
    let run = h.spawn_command(cmd).finish().await;
    run.assert_code(0);
    let doc = h.output_json();
    let pem = std::fs::read_to_string(secret.join("..data/key.pem")).unwrap();
    let kid = doc["dcr_bootstrap"]["signing_key"]["kid"].as_str().unwrap();
    let id = doc["client_id"].as_str().unwrap();
    let aud = format!("{}/api/oidc/token", h.emu.base_url());
    let a = client_assertion(&pem, "ES256", kid, id, &aud);
    assert!(assertion_authenticates(&h.emu.base_url(), &a).await);
}

/// Finding 7: a key record cannot get a file deleted that this program did not write for it:
/// not another `<stem>.<x>.pem` beside the signing key (the exact name for the record's kid
/// is `<stem>.<kid>.pem`), nor one at that name holding another key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_record_deletes_only_the_file_made_for_its_key() {
    let h = Harness::new();
    let env = key_env(&h, "ES256");
    h.run(&env).await.assert_code(0);
    // An operator's key beside ours, in the same name pattern.
    let precious = h.dir.path().join("keys/bff.precious.pem");
    let mut other = env.clone();
    other.insert("DCR_SIGNING_KEY".into(), precious.display().to_string());
    let made = h.run_args(&other, &["keygen"]).await;
    made.assert_code(0);
    let printed: serde_json::Value = serde_json::from_str(&made.stdout).unwrap();
    let record = |kid: &str| {
        json!({
            "kid": kid, "alg": "ES256", "thumbprint": printed["thumbprint"],
            "created_at": "2020-01-01T00:00:00Z", "jwk": printed["jwk"], "pem": precious,
        })
    };
    let mut doc = h.output_json();
    let keys = doc["dcr_bootstrap"]["signing_keys"].as_array_mut().unwrap();
    keys.push(record("long-retired"));
    write_json(&h.out(), &doc);
    let run = h.run(&env).await;
    run.assert_code(0);
    assert!(
        precious.exists(),
        "the operator's key was deleted\n{}",
        run.stderr
    );
}

/// Finding 9: a guessable sealing key is refused (exit 2); a seal keyed by a short admin
/// token is said at WARN; a strong key works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sealing_key_needs_128_bits() {
    let h = Harness::new();
    for weak in ["a", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "0123456"] {
        let mut env = h.env();
        env.insert("DCR_STATE_KEY".into(), weak.into());
        let run = h.run(&env).await;
        run.assert_code(2);
        assert!(
            run.stderr.contains("DCR_STATE_KEY") && run.stderr.contains("128"),
            "{}",
            run.stderr
        );
        assert!(
            weak.len() < 4 || !run.stderr.contains(weak),
            "the key was printed"
        );
    }
    assert_eq!(h.stats().requests, 0);
    let mut env = h.env();
    env.insert("DCR_STATE_KEY".into(), "q8Zk1vX3nR7tY2mB5cW9pL4hD6".into());
    let run = h.run(&env).await;
    run.assert_code(0);
    assert!(!run.stderr.contains("guessed"), "{}", run.stderr);

    let h = Harness::with(dcr_idp_emulator::Config {
        admin_token: "short-admin".into(),
        ..emulator_config()
    });
    let mut env = h.env();
    env.insert("BOOTSTRAP_ADMIN_TOKEN".into(), "short-admin".into());
    let run = h.run(&env).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("WARN") && run.stderr.contains("DCR_STATE_KEY"),
        "{}",
        run.stderr
    );
}

/// Finding 10, as in deploy/kubernetes/job.yaml: the writer runs as 65532:65532 with
/// DCR_OUTPUT_MODE=0640 and the app as uid 65533 in group 65532. The app reads every file it
/// needs (the key too); after a kubelet-style `fsGroup` pass (group 65532, g+rw) the rerun
/// works and narrows the modes again; a group-writable mode is refused at configuration, and
/// a file group-writable by a group the writer is not in is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (runs the binary and cat as other uids, chgrp)"]
async fn the_app_uid_reads_every_file_also_after_an_fs_group_pass() {
    use std::os::unix::fs::PermissionsExt;
    let h = Harness::new();
    let set_mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    set_mode(h.dir.path(), 0o755);
    let keys = h.dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::os::unix::fs::chown(&keys, Some(65532), Some(65532)).unwrap();
    let mut env = key_env(&h, "ES256");
    env.insert(
        "DCR_ENV_OUTPUT".into(),
        keys.join("bff.env").display().to_string(),
    );
    env.insert("DCR_OUTPUT_MODE".into(), "0640".into());
    let files = [h.out(), keys.join("bff.env"), keys.join("bff.pem")];
    let as_writer = |env: &std::collections::BTreeMap<String, String>| {
        h.spawn_command(command_as(env, h.dir.path(), (65532, 65532)))
    };
    let app_reads = |p: &std::path::Path| {
        std::process::Command::new("cat")
            .arg(p)
            .uid(65533)
            .gid(65532)
            .output()
            .is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
    };
    use std::os::unix::process::CommandExt;

    as_writer(&env).finish().await.assert_code(0);
    for f in &files {
        assert!(app_reads(f), "the app cannot read {}", f.display());
    }

    // The kubelet's fsGroup pass: group 65532, group read and write, setgid directory.
    for f in &files {
        std::os::unix::fs::chown(f, None, Some(65532)).unwrap();
        set_mode(f, file_mode(f) | 0o060);
    }
    set_mode(&keys, 0o2770);
    let run = as_writer(&env).finish().await;
    run.assert_code(0);
    for f in &files {
        assert_eq!(file_mode(f), 0o640, "{} not narrowed again", f.display());
        assert!(app_reads(f), "the app cannot read {}", f.display());
    }

    // A group-writable mode is refused at configuration; a foreign writable group at once.
    let mut wide = env.clone();
    wide.insert("DCR_OUTPUT_MODE".into(), "0660".into());
    let run = as_writer(&wide).finish().await;
    run.assert_code(2);
    assert!(run.stderr.contains("DCR_OUTPUT_MODE"), "{}", run.stderr);
    std::os::unix::fs::chown(h.out(), None, Some(4242)).unwrap();
    set_mode(&h.out(), 0o660);
    let run = as_writer(&env).finish().await;
    run.assert_code(5);
    assert!(run.stderr.contains("group 4242"), "{}", run.stderr);
}

/// The exit-5 rule refuses a stored record for another client than DCR_CLIENT_ID only where
/// this program cannot show it is its own: a server that assigns its own id and ignores the
/// requested one (Authlib does) leaves a sealed record under another id, which later runs
/// verify with the admin token configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_record_under_an_id_the_idp_assigned_is_ours() {
    let h = Harness::with(dcr_idp_emulator::Config {
        quirks: dcr_idp_emulator::Quirks {
            ignore_client_id: true,
            ..Default::default()
        },
        ..emulator_config()
    });
    let mut env = h.env();
    env.insert("DCR_CLIENT_ID".into(), "bff-server".into());
    h.run(&env).await.assert_code(0);
    assert_ne!(h.output_json()["client_id"], "bff-server");
    let run = h.run(&env).await;
    run.assert_code(0);
    assert_eq!(h.stats().clients_registered, 1, "{}", run.stderr);
    // The same record without its seal is refused before any request.
    let mut doc = h.output_json();
    doc["dcr_bootstrap"]
        .as_object_mut()
        .map(|o| o.remove("seal"));
    write_json(&h.out(), &doc);
    let requests = h.stats().requests;
    h.run(&env).await.assert_code(5);
    assert_eq!(h.stats().requests, requests);
}

/// Rotating the admin token of a client whose id the IdP assigned: one run with DCR_STATE_KEY
/// and the old token re-seals the record with the state key, and from then on the record
/// stays ours under another admin token (the renewal is attempted with it). Without that
/// step, the record is not the new token's to act on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_token_rotation_keeps_the_record_ours_once_a_state_key_is_set() {
    let state_key = "q8Zk1vX3nR7tY2mB5cW9pL4hD6";
    for with_state_key in [true, false] {
        let h = Harness::new();
        let mut env = h.env_with_rat_endpoint();
        h.run(&env).await.assert_code(0);
        let sealed_by_token = h.output_json()["dcr_bootstrap"]["seal"].clone();
        if with_state_key {
            env.insert("DCR_STATE_KEY".into(), state_key.into());
            h.run(&env).await.assert_code(0);
            assert_ne!(
                h.output_json()["dcr_bootstrap"]["seal"],
                sealed_by_token,
                "not re-sealed with DCR_STATE_KEY"
            );
        }
        // The admin token is rotated (the emulator knows only the old one, so the renewal
        // is refused; what matters is whether it is attempted) and the stored token dies.
        env.insert(
            "BOOTSTRAP_ADMIN_TOKEN".into(),
            "the-rotated-admin-token-5b8e1f0c".into(),
        );
        let id = h.output_json()["client_id"].as_str().unwrap().to_string();
        h.emu.revoke_rat(&id);
        let run = h.run(&env).await;
        let renewal_tried = h
            .emu
            .request_log()
            .iter()
            .any(|r| r.path.ends_with(&format!("/clients/{id}/tokens")));
        assert_eq!(renewal_tried, with_state_key, "{}", run.stderr);
        assert_eq!(
            run.stderr.contains("not proven to be"),
            !with_state_key,
            "{}",
            run.stderr
        );
    }
}
