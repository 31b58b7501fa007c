//! dcr-bootstrap against real, independently written RFC 7591/7592 servers, started here on
//! loopback: glewlwyd (C, Debian package `glewlwyd`; tests/interop/glewlwyd.sh configures it
//! through its own admin API), Authlib (Python, PyPI; tests/interop/authlib_server.py is a
//! thin glue around Authlib's own registration, management and token endpoints) and pyoidc
//! (Python, PyPI package `oic`; tests/interop/pyoidc_server.py routes HTTP to its OpenID
//! Provider: Dynamic Registration 1.0 without updates, secrets that expire after a day, and a
//! token endpoint that words a wrong secret and an unknown code alike).
//!
//! For each server: register; unchanged restarts send no update and the application's secret
//! keeps working; drift is updated and read back; a key rotation is proved at the token
//! endpoint; deregister. `.ci/run` installs both servers and runs
//! `cargo test --test tests -- --ignored real_servers::`.

use crate::common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

/// A server process: our child (Authlib), or one a script started (glewlwyd).
enum Process {
    Child(std::process::Child),
    Pid(u32),
}

/// One running server, stopped when dropped.
struct Server {
    name: &'static str,
    base: String,
    /// The environment that points dcr-bootstrap at it and authorises registration.
    env: BTreeMap<String, String>,
    process: Process,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        match &mut self.process {
            Process::Child(c) => {
                let _ = c.kill();
                let _ = c.wait();
            }
            Process::Pid(pid) => {
                let _ = StdCommand::new("kill").arg(pid.to_string()).status();
            }
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

/// Waits until `url` answers (a server starting up is the event waited for).
fn wait_for(url: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let ok = StdCommand::new("curl")
            .args(["-sf", "-o", "/dev/null", "--max-time", "2", url])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{url} never answered");
}

fn base_env(base: &str, issuer: &str) -> BTreeMap<String, String> {
    [
        ("IDP_BASE_URL", base.to_string()),
        ("DCR_PROFILE", "rfc7591".into()),
        ("DCR_ISSUER", issuer.into()),
        ("DCR_CLIENT_NAME", "bff-server".into()),
        (
            "DCR_REDIRECT_URIS",
            "https://app.example/auth/callback".into(),
        ),
        ("DCR_GRANT_TYPES", "client_credentials".into()),
        ("DCR_SCOPE", "openid".into()),
        ("DCR_TIMEOUT", "30s".into()),
        ("RUST_LOG", "info".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn glewlwyd() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let out = StdCommand::new("bash")
        .arg(script("glewlwyd.sh"))
        .arg(dir.path())
        .arg(port.to_string())
        .output()
        .expect("run tests/interop/glewlwyd.sh (needs the glewlwyd package)");
    assert!(
        out.status.success(),
        "glewlwyd did not start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = std::fs::read_to_string(dir.path().join("pid"))
        .expect("pid")
        .trim()
        .parse()
        .expect("pid");
    let base = format!("http://127.0.0.1:{port}");
    let mut env = base_env(&base, &format!("{base}/api/oidc"));
    // glewlwyd registers with an ordinary access token of its register-client-auth-scope.
    env.insert("DCR_ADMIN_CLIENT_ID".into(), "registrar".into());
    env.insert(
        "DCR_ADMIN_CLIENT_SECRET".into(),
        "registrar-secret-123".into(),
    );
    env.insert("DCR_REGISTRATION_SCOPE".into(), "dcr".into());
    Server {
        name: "glewlwyd",
        base,
        env,
        process: Process::Pid(pid),
        _dir: dir,
    }
}

fn authlib() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let iat = "authlib-initial-access-token-7";
    let child = StdCommand::new("python3")
        .arg(script("authlib_server.py"))
        .arg(port.to_string())
        .arg(iat)
        .stdout(std::fs::File::create(dir.path().join("log")).expect("log"))
        .stderr(std::fs::File::create(dir.path().join("err")).expect("log"))
        .spawn()
        .expect("python3 tests/interop/authlib_server.py (needs authlib and flask)");
    let base = format!("http://127.0.0.1:{port}");
    wait_for(&format!("{base}/.well-known/openid-configuration"));
    let mut env = base_env(&base, &base);
    env.insert("DCR_IAT".into(), iat.into());
    Server {
        name: "authlib",
        base,
        env,
        process: Process::Child(child),
        _dir: dir,
    }
}

fn pyoidc() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let child = StdCommand::new("python3")
        .arg(script("pyoidc_server.py"))
        .arg(port.to_string())
        .stdout(std::fs::File::create(dir.path().join("log")).expect("log"))
        .stderr(std::fs::File::create(dir.path().join("err")).expect("log"))
        .spawn()
        .expect("python3 tests/interop/pyoidc_server.py (needs oic)");
    let base = format!("http://127.0.0.1:{port}");
    wait_for(&format!("{base}/.well-known/openid-configuration"));
    let mut env = base_env(&base, &base);
    // Open registration, a code-flow client with a secret.
    env.insert("DCR_IAT".into(), "none".into());
    env.remove("DCR_GRANT_TYPES");
    env.insert(
        "DCR_TOKEN_ENDPOINT_AUTH_METHOD".into(),
        "client_secret_basic".into(),
    );
    Server {
        name: "pyoidc",
        base,
        env,
        process: Process::Child(child),
        _dir: dir,
    }
}

fn out_env(s: &Server, dir: &Path) -> BTreeMap<String, String> {
    let mut env = s.env.clone();
    env.insert(
        "DCR_OUTPUT".into(),
        dir.join("keys/bff_client.json").display().to_string(),
    );
    env
}

fn doc(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("keys/bff_client.json")).expect("output"))
        .expect("JSON")
}

/// The client as the server holds it (RFC 7592 read with the stored token), or the status.
async fn read_back(dir: &Path) -> Result<Value, u16> {
    let d = doc(dir);
    let r = reqwest::Client::new()
        .get(d["registration_client_uri"].as_str().expect("uri"))
        .bearer_auth(d["registration_access_token"].as_str().expect("rat"))
        .send()
        .await
        .expect("read");
    let status = r.status().as_u16();
    if status != 200 {
        return Err(status);
    }
    Ok(serde_json::from_slice(&r.bytes().await.expect("body")).expect("JSON"))
}

/// A client-credentials request as the application would make it; true when the server
/// authenticated the client (a token, or an error that comes after authentication).
async fn authenticates(s: &Server, form: String, basic: Option<(&str, &str)>) -> bool {
    let mut req = reqwest::Client::new()
        .post(token_endpoint(s))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let r = req.send().await.expect("token request");
    let status = r.status().as_u16();
    let body = String::from_utf8_lossy(&r.bytes().await.unwrap_or_default()).into_owned();
    status == 200
        || (status == 400 && (body.contains("scope") || body.contains("unauthorized_client")))
}

fn token_endpoint(s: &Server) -> String {
    match s.name {
        "glewlwyd" => format!("{}/api/oidc/token", s.base),
        _ => format!("{}/token", s.base),
    }
}

async fn secret_authenticates(s: &Server, dir: &Path) -> bool {
    let d = doc(dir);
    let id = d["client_id"].as_str().expect("id").to_string();
    let secret = d["client_secret"].as_str().expect("secret").to_string();
    authenticates(
        s,
        "grant_type=client_credentials&scope=openid".into(),
        Some((&id, &secret)),
    )
    .await
}

async fn key_authenticates(s: &Server, dir: &Path, pem: &Path, kid: &str) -> bool {
    let id = doc(dir)["client_id"].as_str().expect("id").to_string();
    let pem = std::fs::read_to_string(pem).expect("pem");
    let jwt = client_assertion(&pem, "ES256", kid, &id, &token_endpoint(s));
    let form = format!(
        "grant_type=client_credentials&scope=openid&client_assertion_type={}&client_assertion={jwt}",
        "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
    );
    authenticates(s, form, None).await
}

/// Register, restart twice, drift, restart, deregister; a client_secret_basic client.
async fn secret_client_lifecycle(s: &Server) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = out_env(s, dir.path());
    env.insert(
        "DCR_TOKEN_ENDPOINT_AUTH_METHOD".into(),
        "client_secret_basic".into(),
    );
    let name = s.name;
    let run = run_bin(&env, &[]).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("registered client"),
        "{name}: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("authenticates at the token endpoint"),
        "{name}: {}",
        run.stderr
    );
    let secret = doc(dir.path())["client_secret"].clone();

    for restart in 0..2 {
        let run = run_bin(&env, &[]).await;
        run.assert_code(0);
        assert!(
            run.stderr.contains("verified client"),
            "{name}: {}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("updating with"),
            "{name}: restart {restart} sent an update: {}",
            run.stderr
        );
    }
    assert_eq!(
        doc(dir.path())["client_secret"],
        secret,
        "{name}: the secret changed"
    );
    assert!(
        secret_authenticates(s, dir.path()).await,
        "{name}: the app's secret stopped working"
    );

    // Drift: updated, and the server holds it when read back independently.
    env.insert("DCR_CLIENT_NAME".into(), "bff-renamed".into());
    let run = run_bin(&env, &[]).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("updated client"),
        "{name}: {}",
        run.stderr
    );
    let held = read_back(dir.path()).await.expect("read back");
    assert_eq!(held["client_name"], "bff-renamed", "{name}: {held}");
    assert!(
        secret_authenticates(s, dir.path()).await,
        "{name}: the recorded secret does not work after the update"
    );
    let run = run_bin(&env, &[]).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("verified client"),
        "{name}: {}",
        run.stderr
    );

    // Deregister: gone at the server, files removed.
    let rat_doc = doc(dir.path());
    let run = run_bin(&env, &["deregister"]).await;
    run.assert_code(0);
    assert!(!dir.path().join("keys/bff_client.json").exists());
    let status = reqwest::Client::new()
        .get(rat_doc["registration_client_uri"].as_str().unwrap())
        .bearer_auth(rat_doc["registration_access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert!(
        matches!(status, 401 | 403 | 404),
        "{name}: still readable ({status})"
    );
}

/// A private_key_jwt client: registered, its key rotated, both proved at the token endpoint.
async fn key_client_rotation(s: &Server) {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("keys/bff.pem");
    let mut env = out_env(s, dir.path());
    env.insert("DCR_SIGNING_KEY".into(), key.display().to_string());
    env.insert("DCR_KEY_ALG".into(), "ES256".into());
    let name = s.name;
    let run = run_bin(&env, &[]).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("authenticates at the token endpoint"),
        "{name}: {}",
        run.stderr
    );
    let first_kid = doc(dir.path())["dcr_bootstrap"]["signing_key"]["kid"]
        .as_str()
        .unwrap()
        .to_string();
    let first_pem = dir.path().join("first.pem");
    std::fs::copy(&key, &first_pem).unwrap();
    assert!(
        key_authenticates(s, dir.path(), &key, &first_kid).await,
        "{name}: the key does not authenticate"
    );

    env.insert("BFF_JWK_ROTATE_AFTER_DAYS".into(), "0".into());
    let run = run_bin(&env, &[]).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("rotated client"),
        "{name}: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("authenticates at the token endpoint"),
        "{name}: {}",
        run.stderr
    );
    let d = doc(dir.path());
    let new_kid = d["dcr_bootstrap"]["signing_key"]["kid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_kid, first_kid);
    let held = read_back(dir.path()).await.expect("read back");
    assert_eq!(
        held["jwks"]["keys"].as_array().map(Vec::len),
        Some(2),
        "{name}: {held}"
    );
    assert!(
        key_authenticates(s, dir.path(), &key, &new_kid).await,
        "{name}: the new key"
    );
    assert!(
        key_authenticates(s, dir.path(), &first_pem, &first_kid).await,
        "{name}: the old key (overlap)"
    );
    let run = run_bin(&env, &["deregister"]).await;
    run.assert_code(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs glewlwyd (Debian package); .ci/run installs it"]
async fn glewlwyd_lifecycle_and_rotation() {
    let s = glewlwyd();
    secret_client_lifecycle(&s).await;
    key_client_rotation(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs glewlwyd (Debian package); .ci/run installs it"]
async fn glewlwyd_answers_patch_with_an_empty_200_so_put_is_used() {
    let s = glewlwyd();
    let dir = tempfile::tempdir().unwrap();
    let mut env = out_env(&s, dir.path());
    env.insert(
        "DCR_TOKEN_ENDPOINT_AUTH_METHOD".into(),
        "client_secret_post".into(),
    );
    env.insert("DCR_UPDATE_METHOD".into(), "patch".into());
    run_bin(&env, &[]).await.assert_code(0);
    env.insert(
        "DCR_REDIRECT_URIS".into(),
        "https://new.example/auth/callback".into(),
    );
    let run = run_bin(&env, &[]).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("trying an RFC 7592 PUT"),
        "{}",
        run.stderr
    );
    let held = read_back(dir.path()).await.expect("read back");
    assert_eq!(
        held["redirect_uris"],
        serde_json::json!(["https://new.example/auth/callback"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Python authlib and flask (PyPI); .ci/run installs them"]
async fn authlib_lifecycle_and_rotation() {
    let s = authlib();
    secret_client_lifecycle(&s).await;
    key_client_rotation(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Python authlib and flask (PyPI); .ci/run installs them"]
async fn authlib_refuses_a_bad_token_with_400_and_ignores_requested_ids() {
    let s = authlib();
    let dir = tempfile::tempdir().unwrap();
    let mut env = out_env(&s, dir.path());
    env.insert(
        "DCR_TOKEN_ENDPOINT_AUTH_METHOD".into(),
        "client_secret_basic".into(),
    );
    env.insert("DCR_CLIENT_ID".into(), "bff-server".into());
    let run = run_bin(&env, &[]).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("ignored the requested client_id"),
        "{}",
        run.stderr
    );
    // A revoked (here: edited) registration access token: Authlib answers 400 access_denied;
    // the client still authenticates, so no second client is registered.
    let mut d = doc(dir.path());
    d["registration_access_token"] = Value::String("not-the-token".into());
    let path = dir.path().join("keys/bff_client.json");
    std::fs::write(&path, serde_json::to_vec(&d).unwrap()).unwrap();
    // The credentials are proven, so the app starts with them (exit 0, "unmanaged").
    env.insert("DCR_ON_STALE".into(), "reregister".into());
    let run = run_bin(&env, &[]).await;
    run.assert_code(0);
    assert!(run.stderr.contains("400 access_denied"), "{}", run.stderr);
    assert!(run.stderr.contains("the client exists"), "{}", run.stderr);
    assert_eq!(doc(dir.path())["dcr_bootstrap"]["action"], "unmanaged");
    // The server's PS256 refusal is known from discovery before anything is registered.
    let dir = tempfile::tempdir().unwrap();
    let mut env = out_env(&s, dir.path());
    env.insert(
        "DCR_SIGNING_KEY".into(),
        dir.path().join("k.pem").display().to_string(),
    );
    env.insert("DCR_KEY_ALG".into(), "PS256".into());
    let run = run_bin(&env, &[]).await;
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("token_endpoint_auth_signing_alg_values_supported"),
        "{}",
        run.stderr
    );
}

/// pyoidc: what the program can know of a server that cannot update or delete clients, whose
/// secrets end after a day, and whose token endpoint words a wrong secret and an unknown code
/// alike. Registration works; the proof says "not proven" and goes on; every restart reads
/// the client at its query-string URI, warns when the secret ends, and sends nothing else;
/// drift is kept with one warning; deregister is exit 3 with the files kept. One client
/// throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Python oic (PyPI); .ci/run installs it"]
async fn pyoidc_no_updates_expiring_secrets_and_ambiguous_refusals() {
    let s = pyoidc();
    let dir = tempfile::tempdir().unwrap();
    let mut env = out_env(&s, dir.path());
    let registered = || async {
        let r = reqwest::get(format!("{}/_stats", s.base)).await.unwrap();
        let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        v["registered"].as_u64().unwrap()
    };
    let run = run_bin(&env, &[]).await;
    run.assert_code(0);
    assert!(run.stderr.contains("not proven"), "{}", run.stderr);
    let d = doc(dir.path());
    assert!(
        d["registration_client_uri"]
            .as_str()
            .unwrap()
            .contains("?client_id=")
    );
    assert!(d["client_secret_expires_at"].as_u64().unwrap() > 0);
    let held = read_back(dir.path()).await.expect("read back");
    assert_eq!(held["client_id"], d["client_id"]);

    // A restart: read back at the query-string URI, the secret's end warned about (the
    // update that would renew it is refused with 403), nothing registered.
    let run = run_bin(&env, &[]).await;
    run.assert_code(0);
    assert!(run.stderr.contains("verified client"), "{}", run.stderr);
    assert!(run.stderr.contains("expires at"), "{}", run.stderr);

    // Drift: pyoidc updates nothing; the client is kept as it is, with one warning.
    env.insert("DCR_CLIENT_NAME".into(), "bff-renamed".into());
    let run = run_bin(&env, &[]).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("does not update clients"),
        "{}",
        run.stderr
    );
    assert_eq!(
        read_back(dir.path()).await.expect("read")["client_name"],
        "bff-server"
    );

    // deregister: the delete is refused, and the files stay.
    let run = run_bin(&env, &["deregister"]).await;
    run.assert_code(3);
    assert!(run.stderr.contains("refuses to delete"), "{}", run.stderr);
    assert!(dir.path().join("keys/bff_client.json").exists());
    assert_eq!(registered().await, 1);
}
