//! Test harness: an in-process emulator (so tests can inject faults and read its counters) and
//! the real `dcr-bootstrap` binary run as a child process with a clean environment.

use dcr_idp_emulator::{Config, Emulator, Stats};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// The binary under test. `DCR_TEST_BIN` points the tests at another build (for example the
/// one before a fix, to see a test fail for the right reason).
pub static BIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    std::env::var("DCR_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_dcr-bootstrap").into())
});
pub const ADMIN_TOKEN: &str = "admin-token-for-tests-3f9c2a";

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

pub fn emulator_config() -> Config {
    Config {
        admin_token: ADMIN_TOKEN.to_string(),
        ..Config::default()
    }
}

pub struct Harness {
    pub emu: Emulator,
    pub dir: tempfile::TempDir,
}

/// What a finished run left behind.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    /// The signal that ended the process, when one did (before its handlers were installed).
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn logs(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) {
        assert_eq!(self.code, Some(code), "exit code; logs:\n{}", self.logs());
    }
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with(emulator_config())
    }

    pub fn with(cfg: Config) -> Harness {
        Harness {
            emu: Emulator::start(loopback(), cfg).expect("start emulator"),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// An emulator that holds its port but refuses connections until `emu.listen()`.
    pub fn not_listening(cfg: Config) -> Harness {
        Harness {
            emu: Emulator::bind(loopback(), cfg).expect("bind emulator"),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn out(&self) -> PathBuf {
        self.dir.path().join("keys").join("bff_client.json")
    }

    pub fn stats(&self) -> Stats {
        self.emu.stats()
    }

    /// A working configuration: mint with the admin token, register a code-flow client.
    pub fn env(&self) -> BTreeMap<String, String> {
        let mut e = BTreeMap::new();
        for (k, v) in [
            ("IDP_BASE_URL", self.emu.base_url()),
            ("BOOTSTRAP_ADMIN_TOKEN", ADMIN_TOKEN.to_string()),
            ("DCR_OUTPUT", self.out().display().to_string()),
            ("DCR_CLIENT_NAME", "bff-server".to_string()),
            (
                "DCR_REDIRECT_URIS",
                "https://automate.example/auth/callback,https://authn.example/auth/callback"
                    .to_string(),
            ),
            ("DCR_SCOPE", "openid profile email".to_string()),
            ("DCR_TIMEOUT", "30s".to_string()),
            ("DCR_REQUEST_TIMEOUT", "5s".to_string()),
            ("DCR_BACKOFF_INITIAL", "50ms".to_string()),
            ("DCR_BACKOFF_MAX", "400ms".to_string()),
            ("DCR_PROBE_INTERVAL", "100ms".to_string()),
            ("RUST_LOG", "debug".to_string()),
        ] {
            e.insert(k.to_string(), v);
        }
        e
    }

    /// The emulator's admin re-issue route for registration access tokens (EmpowerNow's
    /// docs name none, so it is used only when `DCR_RAT_ENDPOINT` is set).
    pub fn rat_endpoint(&self) -> String {
        format!(
            "{}/api/admin/dcr/clients/{{client_id}}/tokens",
            self.emu.base_url()
        )
    }

    /// [`Harness::env`] with the admin re-issue route set.
    pub fn env_with_rat_endpoint(&self) -> BTreeMap<String, String> {
        let mut e = self.env();
        e.insert("DCR_RAT_ENDPOINT".into(), self.rat_endpoint());
        e
    }

    pub fn command(&self, env: &BTreeMap<String, String>, args: &[&str]) -> Command {
        command(env, args)
    }

    pub async fn run(&self, env: &BTreeMap<String, String>) -> Run {
        self.run_args(env, &[]).await
    }

    pub async fn run_args(&self, env: &BTreeMap<String, String>, args: &[&str]) -> Run {
        run_bin(env, args).await
    }

    pub fn spawn(&self, env: &BTreeMap<String, String>) -> Running {
        self.spawn_command(self.command(env, &[]))
    }

    /// Spawns a prepared command (e.g. the binary wrapped in `unshare`).
    pub fn spawn_command(&self, mut cmd: Command) -> Running {
        let start = Instant::now();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn");

        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        Running {
            child,
            log,
            lines: rx,
            start,
        }
    }

    /// The stored registration document.
    pub fn output_json(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.out()).expect("read output");
        serde_json::from_str(&text).expect("output is JSON")
    }

    /// Files in the output directory other than the expected ones: temp files left behind.
    pub fn stray_files(&self) -> Vec<String> {
        let dir = self.out().parent().unwrap().to_path_buf();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }
}

/// The binary with exactly `env` (and PATH) and `args`.
/// [`command`] as another uid and gid. The binary is copied into `dir` (made traversable),
/// since the build directory may be private to its owner (a `mktemp -d` clone in CI).
pub fn command_as(env: &BTreeMap<String, String>, dir: &Path, (uid, gid): (u32, u32)) -> Command {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("dcr-bootstrap-bin");
    if !bin.exists() {
        std::fs::copy(&*BIN, &bin).expect("copy the binary");
    }
    for p in [dir, bin.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let mut cmd = Command::new(&bin);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .uid(uid)
        .gid(gid);
    cmd
}

pub fn command(env: &BTreeMap<String, String>, args: &[&str]) -> Command {
    let mut cmd = Command::new(&*BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs the binary to the end (at most 120 s).
pub async fn run_bin(env: &BTreeMap<String, String>, args: &[&str]) -> Run {
    let start = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(120), command(env, args).output())
        .await
        .expect("dcr-bootstrap hung for 120s")
        .expect("spawn dcr-bootstrap");
    use std::os::unix::process::ExitStatusExt;
    Run {
        code: out.status.code(),
        signal: out.status.signal(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: start.elapsed(),
    }
}

pub struct Running {
    pub child: Child,
    log: Arc<Mutex<String>>,
    lines: mpsc::UnboundedReceiver<String>,
    pub start: Instant,
}

impl Running {
    /// Waits until the binary logs a line containing `needle` (synchronisation on an event,
    /// not on time). Panics with the log so far after `limit`.
    pub async fn wait_for(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) if line.contains(needle) => return line,
                Ok(Some(_)) => {}
                Ok(None) => panic!(
                    "dcr-bootstrap exited before logging {needle:?}; log:\n{}",
                    self.log()
                ),
                Err(_) => panic!("no {needle:?} within {limit:?}; log:\n{}", self.log()),
            }
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn signal(&self, sig: i32) {
        let pid = self.child.id().expect("child running") as i32;
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    pub async fn finish(mut self) -> Run {
        let status = tokio::time::timeout(Duration::from_secs(120), self.child.wait())
            .await
            .expect("dcr-bootstrap hung for 120s")
            .expect("wait");
        // Let the reader task drain what is left of stderr.
        while self.lines.recv().await.is_some() {}
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            use tokio::io::AsyncReadExt;
            let _ = out.read_to_string(&mut stdout).await;
        }
        use std::os::unix::process::ExitStatusExt;
        Run {
            code: status.code(),
            signal: status.signal(),

            stdout,
            stderr: self.log(),
            elapsed: self.start.elapsed(),
        }
    }
}

/// Asserts that none of `secrets` appears anywhere in `text`.
#[track_caller]
pub fn assert_no_secrets(text: &str, secrets: &[String]) {
    for s in secrets {
        assert!(
            !text.contains(s.as_str()),
            "secret {}… leaked into the logs:\n{text}",
            &s[..s.len().min(8)]
        );
    }
}

pub fn file_mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

/// Signs an RFC 7523 client assertion with a PEM private key, independently of the code
/// under test (the emulator's stand-in application does it with aws-lc-rs directly).
pub fn client_assertion(pem: &str, alg: &str, kid: &str, client_id: &str, aud: &str) -> String {
    dcr_idp_emulator::standin::client_assertion(pem, alg, kid, client_id, aud).expect("sign")
}

/// Whether the emulator's token endpoint authenticates a client by this assertion: an
/// authorization-code request with a code never issued answers `invalid_grant` only after
/// the client authenticated (RFC 6749 §4.1.3), and `invalid_client` when it did not.
pub async fn assertion_authenticates(base: &str, assertion: &str) -> bool {
    let body = format!(
        "grant_type=authorization_code&code=never-issued&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={assertion}"
    );
    let bytes = reqwest::Client::new()
        .post(format!("{base}/api/oidc/token"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("token request")
        .bytes()
        .await
        .expect("an answer");
    let answer: serde_json::Value = serde_json::from_slice(&bytes).expect("a JSON answer");
    match answer["error"].as_str() {
        Some("invalid_grant") => true,
        Some("invalid_client") => false,
        other => panic!("the token endpoint answered {other:?}: {answer}"),
    }
}

/// The four invariants of every fault scenario (RELIABILITY.md): the exit code; no
/// duplicate registration; the output absent, or complete, valid and 0600, with no temp file
/// left; and no issued secret in the logs.
#[track_caller]
pub fn check_invariants(name: &str, h: &Harness, run: &Run, code: i32) {
    assert_eq!(
        run.code,
        Some(code),
        "[{name}] exit code; logs:\n{}",
        run.logs()
    );
    let s = h.stats();
    assert!(
        s.clients_registered <= 1,
        "[{name}] duplicate registration: {s:?}"
    );
    if h.out().exists() {
        let text = std::fs::read_to_string(h.out()).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("[{name}] partial output ({e}): {text}"));
        assert!(
            doc["client_id"].as_str().is_some_and(|s| !s.is_empty()),
            "[{name}] {text}"
        );
        assert_eq!(file_mode(&h.out()), 0o600, "[{name}] mode");
    } else {
        assert_ne!(code, 0, "[{name}] exit 0 without an output file");
    }
    assert!(
        h.stray_files().is_empty(),
        "[{name}] temp files left: {:?}",
        h.stray_files()
    );
    let mut secrets = h.emu.issued_secrets();
    secrets.push(ADMIN_TOKEN.to_string());
    for s in &secrets {
        assert!(
            !run.logs().contains(s.as_str()),
            "[{name}] a secret leaked into the logs"
        );
    }
}

pub fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

/// A client registered behind our back (another team's), with its own registration token:
/// its id, registration URI and secret.
pub async fn victim(h: &Harness) -> (String, String, String) {
    let iat = h.emu.mint_iat(Duration::from_secs(60), 1);
    let body = json!({"client_name": "victim", "redirect_uris": ["https://victim.example/cb"]});
    let bytes = reqwest::Client::new()
        .post(format!("{}/api/oidc/dcr/register", h.emu.base_url()))
        .bearer_auth(iat)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let r: Value = serde_json::from_slice(&bytes).unwrap();
    (
        r["client_id"].as_str().unwrap().to_string(),
        r["registration_client_uri"].as_str().unwrap().to_string(),
        r["client_secret"].as_str().unwrap().to_string(),
    )
}

/// [`Harness::env`] for a `private_key_jwt` client whose key (of `alg`) is generated at
/// `keys/bff.pem`.
pub fn key_env(h: &Harness, alg: &str) -> BTreeMap<String, String> {
    let mut env = h.env();
    env.insert(
        "DCR_SIGNING_KEY".into(),
        h.dir.path().join("keys/bff.pem").display().to_string(),
    );
    env.insert("DCR_KEY_ALG".into(), alg.into());
    env.insert("DCR_CLIENT_PROFILE".into(), "code-flow-pkjwt".into());
    env
}

/// Tests that need mount namespaces (root with CAP_SYS_ADMIN) are `#[ignore]`d; `.ci/run`
/// runs them as root. One that runs without the rights fails rather than passing unseen.
pub fn assert_can_mount() {
    let ok = std::process::Command::new("unshare")
        .args(["-m", "true"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "needs mount namespaces (root with CAP_SYS_ADMIN); run with --ignored"
    );
}
