//! The emulator is strict where real IdPs are: these tests pin that down, so a lenient
//! emulator cannot quietly hide client bugs.

use dcr_idp_emulator::{Config, Emulator, Fault, FaultAction};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const ADMIN: &str = "test-admin";

fn start(cfg: Config) -> Emulator {
    Emulator::start(
        "127.0.0.1:0".parse().unwrap(),
        Config {
            admin_token: ADMIN.into(),
            ..cfg
        },
    )
    .unwrap()
}

async fn post(c: &Client, url: String, bearer: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut r = c.post(url).json(&body);
    if let Some(b) = bearer {
        r = r.bearer_auth(b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn mint(c: &Client, emu: &Emulator, body: Value) -> (StatusCode, Value) {
    post(
        c,
        format!("{}/api/admin/dcr/initial-access-tokens", emu.base_url()),
        Some(ADMIN),
        body,
    )
    .await
}

fn client_body() -> Value {
    json!({"client_name": "bff", "redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "client_secret_basic"})
}

#[tokio::test]
async fn mint_requires_the_admin_token_and_rejects_unknown_fields() {
    let emu = start(Config::default());
    let c = Client::new();
    let url = format!("{}/api/admin/dcr/initial-access-tokens", emu.base_url());
    let (s, _) = post(&c, url.clone(), None, json!({})).await;
    assert_eq!(s, 401);
    let (s, _) = post(&c, url.clone(), Some("wrong"), json!({})).await;
    assert_eq!(s, 401);
    let (s, v) = mint(&c, &emu, json!({"label": "x", "max_usages": 1})).await;
    assert_eq!(s, 400, "the other spelling is an unknown field: {v}");
    let (s, v) = mint(
        &c,
        &emu,
        json!({"label": "x", "expires_in": 60, "max_uses": 2}),
    )
    .await;
    assert_eq!(s, 201);
    assert!(v["token"].as_str().unwrap().len() > 20);
    assert_eq!(v["max_uses"], 2);
    let (s, _) = mint(&c, &emu, json!({"expires_in": 0})).await;
    assert_eq!(s, 400);
    // A form body is not JSON.
    let r = c
        .post(url)
        .bearer_auth(ADMIN)
        .body("label=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
}

#[tokio::test]
async fn an_iat_is_limited_in_uses_and_both_register_paths_work() {
    let emu = start(Config::default());
    let c = Client::new();
    let (_, v) = mint(&c, &emu, json!({"max_uses": 2})).await;
    let iat = v["token"].as_str().unwrap().to_string();
    for path in ["/api/oidc/dcr/register", "/api/oidc/register"] {
        let (s, v) = post(
            &c,
            format!("{}{path}", emu.base_url()),
            Some(&iat),
            client_body(),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        assert!(v["client_secret"].is_string() && v["client_secret_expires_at"] == 0);
    }
    let (s, v) = post(
        &c,
        format!("{}/api/oidc/register", emu.base_url()),
        Some(&iat),
        client_body(),
    )
    .await;
    assert_eq!(s, 401);
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("no remaining uses")
    );
    let (s, _) = post(
        &c,
        format!("{}/api/oidc/register", emu.base_url()),
        None,
        client_body(),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(emu.stats().clients_registered, 2);
}

#[tokio::test]
async fn a_taken_client_id_is_refused_and_a_failed_registration_spends_no_use() {
    let emu = start(Config::default());
    let c = Client::new();
    let (_, v) = mint(&c, &emu, json!({"max_uses": 1})).await;
    let iat = v["token"].as_str().unwrap().to_string();
    let url = format!("{}/api/oidc/register", emu.base_url());
    let mut bad = client_body();
    bad["redirect_uris"] = json!(["https://app.example/cb#frag"]);
    let (s, v) = post(&c, url.clone(), Some(&iat), bad).await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str()),
        (400, Some("invalid_redirect_uri"))
    );
    let mut body = client_body();
    body["client_id"] = json!("bff-server");
    let (s, _) = post(&c, url.clone(), Some(&iat), body.clone()).await;
    assert_eq!(s, 201);
    let iat2 = emu.mint_iat(std::time::Duration::from_secs(60), 1);
    let (s, v) = post(&c, url, Some(&iat2), body).await;
    assert_eq!(s, 400);
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("already registered")
    );
}

#[tokio::test]
async fn rfc7592_put_is_strict_patch_is_partial_delete_is_final() {
    let emu = start(Config {
        rotate_rat_on_update: true,
        ..Config::default()
    });
    let c = Client::new();
    let iat = emu.mint_iat(std::time::Duration::from_secs(60), 1);
    let (_, reg) = post(
        &c,
        format!("{}/api/oidc/register", emu.base_url()),
        Some(&iat),
        client_body(),
    )
    .await;
    let uri = reg["registration_client_uri"].as_str().unwrap().to_string();
    let rat = reg["registration_access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let id = reg["client_id"].as_str().unwrap().to_string();

    let get = c.get(&uri).bearer_auth(&rat).send().await.unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(
        c.get(&uri)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // PUT must carry client_id and must not echo server-owned fields.
    let mut put = client_body();
    put["registration_access_token"] = json!(rat);
    put["client_id"] = json!(id);
    let r = c
        .put(&uri)
        .bearer_auth(&rat)
        .json(&put)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .put(&uri)
        .bearer_auth(&rat)
        .json(&client_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "client_id is required in PUT");
    let mut put = client_body();
    put["client_id"] = json!(id);
    put["client_name"] = json!("renamed");
    let r = c
        .put(&uri)
        .bearer_auth(&rat)
        .json(&put)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let rat2 = v["registration_access_token"].as_str().unwrap().to_string();
    assert_ne!(rat, rat2, "rotated on update");
    assert_eq!(
        c.get(&uri).bearer_auth(&rat).send().await.unwrap().status(),
        401,
        "old RAT is dead"
    );

    // PATCH changes only what it names, and never the secret.
    let r = c
        .patch(&uri)
        .bearer_auth(&rat2)
        .json(&json!({"client_secret": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .patch(&uri)
        .bearer_auth(&rat2)
        .json(&json!({"redirect_uris": ["https://new.example/cb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["client_name"], "renamed");
    let rat3 = v["registration_access_token"].as_str().unwrap().to_string();

    assert_eq!(
        c.delete(&uri)
            .bearer_auth(&rat3)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        c.get(&uri)
            .bearer_auth(&rat3)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let s = emu.stats();
    assert_eq!(
        (s.clients_updated, s.clients_deleted, s.clients_live),
        (2, 1, 0)
    );
}

#[tokio::test]
async fn discovery_advertises_the_registration_endpoint() {
    let emu = start(Config::default());
    for path in [
        "/.well-known/openid-configuration",
        "/api/oidc/.well-known/openid-configuration",
    ] {
        let v: Value = reqwest::get(format!("{}{path}", emu.base_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            v["registration_endpoint"],
            format!("{}/api/oidc/register", emu.base_url())
        );
        assert_eq!(v["issuer"], format!("{}/api/oidc", emu.base_url()));
    }
}

#[tokio::test]
async fn faults_fire_the_given_number_of_times_and_drop_after_commit_commits() {
    let emu = start(Config::default());
    let c = Client::new();
    emu.push_fault(Fault::status("/health", 503, 2, Some("1")));
    for expected in [503, 503, 200] {
        let r = c
            .get(format!("{}/health", emu.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), expected);
    }
    let iat = emu.mint_iat(std::time::Duration::from_secs(60), 1);
    emu.push_fault(Fault::action_on(
        "/api/oidc/register",
        1,
        FaultAction::DropAfterCommit,
    ));
    let r = c
        .post(format!("{}/api/oidc/register", emu.base_url()))
        .bearer_auth(&iat)
        .json(&client_body())
        .send()
        .await;
    assert!(r.is_err(), "no answer");
    assert_eq!(emu.stats().clients_registered, 1, "but the client exists");
}

/// The public default admin token never listens beyond loopback unless
/// asked for explicitly.
#[test]
fn the_default_admin_token_is_refused_on_a_non_loopback_address() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let bin = env!("CARGO_BIN_EXE_dcr-idp-emulator");
    let out = Command::new(bin)
        .args(["--bind", "0.0.0.0", "--port", "0"])
        .env_remove("EMULATOR_ADMIN_TOKEN")
        .env_remove("EMULATOR_ADMIN_TOKEN_FILE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("public default admin token"), "{err}");

    // With a token of its own (or the explicit switch) it listens.
    for args in [
        &["--admin-token", "a-real-dev-secret"][..],
        &["--allow-default-admin-token"][..],
    ] {
        let mut child = Command::new(bin)
            .args(["--bind", "0.0.0.0", "--port", "0"])
            .args(args)
            .env_remove("EMULATOR_ADMIN_TOKEN")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("listening on"), "{args:?}: {line}");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// `--state-file`: a restarted emulator still knows the clients (and their registration
/// access tokens), as a real IdP keeps them in its database.
#[tokio::test]
async fn a_state_file_keeps_the_clients_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || Config {
        state_file: Some(dir.path().join("clients.json")),
        ..Config::default()
    };
    let c = Client::new();
    let emu = start(cfg());
    let (_, iat) = mint(&c, &emu, json!({"expires_in": 60, "max_uses": 1})).await;
    let (s, reg) = post(
        &c,
        format!("{}/api/oidc/dcr/register", emu.base_url()),
        iat["token"].as_str(),
        client_body(),
    )
    .await;
    assert_eq!(s, 201, "{reg}");
    drop(emu);

    let again = start(cfg());
    assert_eq!(again.clients().len(), 1);
    let read = c
        .get(format!(
            "{}/api/oidc/register/{}",
            again.base_url(),
            reg["client_id"].as_str().unwrap()
        ))
        .bearer_auth(reg["registration_access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    // Without a state file, a restart forgets them.
    let fresh = start(Config::default());
    assert!(fresh.clients().is_empty());
}
