//! The init-container contract on a real Docker engine: the images from `scripts/image.sh`
//! (built here, FROM scratch) and `compose/docker-compose.yml` run by docker compose, with a
//! real network, a real named volume and real signals. Every scenario asserts exit codes from
//! compose, container states, the emulator's counters and the files in the volume; the stack
//! is torn down (`down -v`) whatever happens.
//!
//! Needs a Docker engine with the two images: `.ci/run` builds them and runs
//! `cargo test --test tests -- --ignored docker::`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

/// `docker compose` where the plugin exists, else the standalone `docker-compose`.
fn compose_cmd() -> Vec<String> {
    let plugin = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if plugin {
        vec!["docker".into(), "compose".into()]
    } else {
        vec!["docker-compose".into()]
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// One compose project: the base stack plus a scenario's override file.
struct Stack {
    project: String,
    files: Vec<PathBuf>,
    dir: tempfile::TempDir,
    /// Where relative paths and `.env` are read from (production.yml's `env_file: .env`).
    project_dir: Option<PathBuf>,
    /// The emulator's admin token, for its control routes (else the dev secret's).
    control_token: Option<String>,
}

impl Stack {
    fn new(name: &str, override_yaml: &str) -> Stack {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("compose/docker-compose.yml");
        // Publish the emulator on a free loopback port, so the test can read its counters.
        let overrides =
            format!("services:\n  idp:\n    ports: [\"127.0.0.1::8002\"]\n{override_yaml}");
        let extra = dir.path().join("override.yml");
        std::fs::write(&extra, overrides).expect("write override");
        let stack = Stack {
            project: format!("dcrtest{name}{}", std::process::id()),
            files: vec![base, extra],
            dir,
            project_dir: None,
            control_token: None,
        };
        // A project left by an earlier crash of this test would confuse the counters.
        stack.compose(&["down", "-v", "-t", "1"]);
        stack
    }

    /// compose/production.yml configured by `env` alone (written as the project's `.env`),
    /// with `extra` adding what a test needs around it (an IdP emulator, a stand-in BFF). The
    /// admin secret is `secret`, in `secrets/admin`.
    fn production(name: &str, env: &str, secret: &str, extra: &str, control: &str) -> Stack {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(".env"), env).expect("write .env");
        std::fs::create_dir_all(dir.path().join("secrets")).expect("secrets dir");
        let s = dir.path().join("secrets/admin");
        std::fs::write(&s, format!("{secret}\n")).expect("write secret");
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("compose/production.yml");
        let override_file = dir.path().join("override.yml");
        std::fs::write(&override_file, extra).expect("write override");
        let stack = Stack {
            project: format!("dcrtest{name}{}", std::process::id()),
            files: vec![base, override_file],
            project_dir: Some(dir.path().to_path_buf()),
            dir,
            control_token: Some(control.to_string()),
        };
        stack.compose(&["down", "-v", "-t", "1"]);
        stack
    }

    fn compose(&self, args: &[&str]) -> Output {
        let cmd = compose_cmd();
        let mut c = Command::new(&cmd[0]);
        c.args(&cmd[1..]).args(["-p", &self.project]);
        if let Some(d) = &self.project_dir {
            c.arg("--project-directory").arg(d);
        }
        for f in &self.files {
            c.arg("-f").arg(f);
        }
        c.args(args).output().expect("run docker compose")
    }

    /// The container of a service (the first one).
    fn container(&self, service: &str) -> Option<String> {
        let o = self.compose(&["ps", "-q", service]);
        let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
        (!id.is_empty()).then_some(id)
    }

    fn inspect(&self, service: &str, format: &str) -> String {
        let Some(id) = self.container(service) else {
            return String::new();
        };
        let o = Command::new("docker")
            .args(["inspect", "-f", format, &id])
            .output()
            .expect("docker inspect");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn status(&self, service: &str) -> String {
        self.inspect(service, "{{.State.Status}}")
    }

    /// Blocks until the service's container exits; its exit code.
    fn wait(&self, service: &str, limit: Duration) -> i32 {
        let id = self.container(service).expect("container exists");
        let start = Instant::now();
        let o = Command::new("timeout")
            .arg(limit.as_secs().to_string())
            .args(["docker", "wait", &id])
            .output()
            .expect("docker wait");
        assert!(
            o.status.success(),
            "{service} still running after {:?}: {}",
            start.elapsed(),
            self.logs(service)
        );
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .expect("exit code")
    }

    fn logs(&self, service: &str) -> String {
        text(&self.compose(&["logs", "--no-color", service]))
    }

    /// Waits until the service's logs contain `needle` (re-reading them; the container's own
    /// output is the event).
    fn wait_for_log(&self, service: &str, needle: &str, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let logs = self.logs(service);
            if logs.contains(needle) {
                return logs;
            }
            assert!(
                start.elapsed() < limit,
                "{service} never logged {needle:?}:\n{logs}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn idp_url(&self) -> String {
        let o = self.compose(&["port", "idp", "8002"]);
        format!("http://{}", String::from_utf8_lossy(&o.stdout).trim())
    }

    fn stats(&self) -> serde_json::Value {
        self.control("stats")
    }

    /// A GET of the emulator's control surface.
    fn control(&self, path: &str) -> serde_json::Value {
        let url = format!("{}/_emulator/{path}", self.idp_url());
        // The control routes need the emulator's admin token (the dev secret's by default).
        let token = self.control_token.clone().unwrap_or_else(|| {
            let file =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("compose/dev-secrets/idp-admin-token");
            std::fs::read_to_string(&file).expect("the dev admin token")
        });
        let auth = format!("Authorization: Bearer {}", token.trim_end());
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "5", "-H", &auth, &url])
            .output()
            .expect("curl");
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{path} at {url}: {}", text(&out)))
    }

    /// The host directory behind the named volume.
    fn volume(&self) -> PathBuf {
        let o = Command::new("docker")
            .args([
                "volume",
                "inspect",
                "-f",
                "{{.Mountpoint}}",
                &format!("{}_bff-keys", self.project),
            ])
            .output()
            .expect("docker volume inspect");
        PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
    }

    /// A file in the scenario's directory, for secrets that differ from the dev one.
    fn secret_file(&self, name: &str, value: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.dir.path().join(name);
        std::fs::write(&p, format!("{value}\n")).expect("write secret");
        // Compose bind-mounts it; the services run as uid 1000.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        p
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.compose(&["down", "-v", "-t", "1"]);
    }
}

/// Docker's timestamps: RFC 3339 with nanoseconds.
fn rfc3339(s: &str) -> SystemTime {
    humantime::parse_rfc3339(s.trim()).unwrap_or_else(|e| panic!("not a timestamp {s:?}: {e}"))
}

fn mode_and_owner(p: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.mode() & 0o777, m.uid())
}

#[test]
#[ignore = "needs a Docker engine and the images of scripts/image.sh (.ci/run)"]
fn cold_up_then_second_up_on_the_same_volume() {
    let s = Stack::new("cold", "");
    // 1. Cold: compose starts the BFF only after the init service exited 0.
    let up = s.compose(&["up", "-d"]);
    assert!(up.status.success(), "compose up: {}", text(&up));
    assert_eq!(s.wait("dcr-bootstrap", Duration::from_secs(60)), 0);
    let bff = s.wait_for_log("bff", "accepted at", Duration::from_secs(30));
    assert!(bff.contains("client_id=bff-server"), "{bff}");
    assert_eq!(s.status("bff"), "running");
    let init_done = rfc3339(&s.inspect("dcr-bootstrap", "{{.State.FinishedAt}}"));
    let bff_started = rfc3339(&s.inspect("bff", "{{.State.StartedAt}}"));
    assert!(
        bff_started >= init_done,
        "the BFF started before the init service ended"
    );
    let st = s.stats();
    assert_eq!(st["clients_registered"], 1, "{st}");
    assert_eq!(st["iats_minted"], 1, "{st}");
    let vol = s.volume();
    for f in ["bff_client.json", "bff.env", "bff-sig-001.pem"] {
        assert_eq!(mode_and_owner(&vol.join(f)), (0o600, 1000), "{f}");
    }

    // 7. The init service ran non-root, read-only, without capabilities or privilege gain.
    assert_eq!(s.inspect("dcr-bootstrap", "{{.Config.User}}"), "1000:1000");
    assert_eq!(
        s.inspect("dcr-bootstrap", "{{.HostConfig.ReadonlyRootfs}}"),
        "true"
    );
    assert_eq!(
        s.inspect("dcr-bootstrap", "{{.HostConfig.CapDrop}}"),
        "[ALL]"
    );
    assert!(
        s.inspect("dcr-bootstrap", "{{.HostConfig.SecurityOpt}}")
            .contains("no-new-privileges:true")
    );

    // 4. A second `up` on the same volume verifies and registers nothing.
    let before = std::fs::read(vol.join("bff_client.json")).expect("output");
    let up = s.compose(&["up", "-d"]);
    assert!(up.status.success(), "second up: {}", text(&up));
    assert_eq!(s.wait("dcr-bootstrap", Duration::from_secs(60)), 0);
    let logs = s.logs("dcr-bootstrap");
    assert!(logs.contains("verified client bff-server"), "{logs}");
    let st = s.stats();
    assert_eq!(st["clients_registered"], 1, "{st}");
    assert_eq!(st["iats_minted"], 1, "{st}");
    assert!(st["clients_read"].as_u64() >= Some(1), "{st}");
    assert_eq!(
        std::fs::read(vol.join("bff_client.json")).expect("output"),
        before
    );
}

/// The images are what the README says: FROM scratch, a few MB (scripts/image.sh prints the
/// exact sizes; the README gives no figure that could drift).
#[test]
#[ignore = "needs a Docker engine and the images of scripts/image.sh (.ci/run)"]
fn the_images_are_a_few_megabytes() {
    for image in ["dcr-bootstrap:latest", "dcr-idp-emulator:latest"] {
        let o = Command::new("docker")
            .args(["image", "inspect", "-f", "{{.Size}}", image])
            .output()
            .expect("docker image inspect");
        let bytes: u64 = String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        assert!(
            bytes > 1_000_000 && bytes < 10_000_000,
            "{image}: {bytes} bytes"
        );
    }
}

/// Issue 20: the shipped dev stack survives `stop` then `up`, and `down` then `up`: the init
/// service verifies the one client every time (the emulator keeps it on its volume) and the
/// BFF starts after it every time.
#[test]
#[ignore = "needs a Docker engine and the images of scripts/image.sh (.ci/run)"]
fn the_dev_stack_survives_stop_up_and_down_up() {
    let s = Stack::new("survive", "");
    for (step, before) in [
        ("cold", None),
        ("stop", Some("stop")),
        ("down", Some("down")),
    ] {
        if let Some(cmd) = before {
            let o = s.compose(&[cmd, "-t", "1"]);
            assert!(o.status.success(), "{cmd}: {}", text(&o));
        }
        let up = s.compose(&["up", "-d"]);
        assert!(up.status.success(), "[{step}] up: {}", text(&up));
        assert_eq!(
            s.wait("dcr-bootstrap", Duration::from_secs(60)),
            0,
            "[{step}] {}",
            s.logs("dcr-bootstrap")
        );
        if step != "cold" {
            let logs = s.logs("dcr-bootstrap");
            assert!(
                logs.contains("verified client bff-server"),
                "[{step}] {logs}"
            );
        }
        // The stand-in BFF proves the credentials at the token endpoint on every start (a
        // restarted container keeps its earlier log lines; a new one after `down` does not).
        let started = s.inspect("bff", "{{.State.StartedAt}}");
        let init_done = s.inspect("dcr-bootstrap", "{{.State.FinishedAt}}");
        assert!(
            rfc3339(&started) >= rfc3339(&init_done),
            "[{step}] BFF before init"
        );
        let proofs = if step == "stop" { 2 } else { 1 };
        let start = Instant::now();
        while s.logs("bff").matches("accepted at").count() < proofs {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "[{step}] BFF: {}",
                s.logs("bff")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(s.status("bff"), "running", "[{step}] {}", s.logs("bff"));
    }
    let clients = s.control("clients");
    assert_eq!(
        clients.as_array().map(Vec::len),
        Some(1),
        "one client: {clients}"
    );
}

/// Issue 20: compose/production.yml is pointed at an IdP by `.env` alone, also at a Keycloak
/// (admin client credentials, no DCR_CLIENT_ID, plain http allowed from `.env`). The override
/// only adds the emulator playing the IdP and the stand-in BFF.
#[test]
#[ignore = "needs a Docker engine and the images of scripts/image.sh (.ci/run)"]
fn production_yml_is_configured_by_dot_env_alone() {
    let images = "STACK_BOOTSTRAP_IMAGE=dcr-bootstrap:latest\nSTACK_BFF_IMAGE=dcr-idp-emulator:latest\nSTACK_ADMIN_SECRET_FILE=./secrets/admin\n";
    let common = "DCR_ALLOW_INSECURE_HTTP=true\nDCR_CLIENT_NAME=bff-server\nDCR_REDIRECT_URIS=https://app.example/cb\nDCR_SCOPE=openid profile email\nDCR_CLIENT_PROFILE=code-flow-pkjwt\nDCR_TIMEOUT=2m\nDCR_STRICT_ENV=true\n";
    let around = |idp_args: &str, token_path: &str| {
        format!(
            "services:\n  idp:\n    image: dcr-idp-emulator:latest\n    command: [\"--port\", \"8002\", {idp_args}]\n    ports: [\"127.0.0.1::8002\"]\n  bff:\n    entrypoint: [\"/dcr-idp-emulator\", \"bff-standin\", \"--credentials\", \"/app/keys/bff_client.json\", \"--token-endpoint\", \"http://idp:8002{token_path}\"]\n"
        )
    };
    let cases = [
        (
            "prodempowernow",
            format!(
                "{images}{common}IDP_BASE_URL=http://idp:8002\nBOOTSTRAP_ADMIN_TOKEN_FILE=/run/secrets/idp-admin-secret\nDCR_CLIENT_ID=bff-server\n"
            ),
            "prod-admin-token-0123456789abcdef",
            around(
                "\"--admin-token\", \"prod-admin-token-0123456789abcdef\"",
                "/api/oidc/token",
            ),
            "prod-admin-token-0123456789abcdef",
        ),
        (
            "prodkeycloak",
            format!(
                "{images}{common}IDP_BASE_URL=http://idp:8002\nDCR_PROFILE=keycloak\nDCR_KEYCLOAK_REALM=demo\nDCR_ADMIN_CLIENT_ID=dcr-bootstrap\nDCR_ADMIN_CLIENT_SECRET_FILE=/run/secrets/idp-admin-secret\n"
            ),
            "kc-admin-client-secret-0123456789",
            around(
                "\"--profile\", \"keycloak\", \"--admin-token\", \"unused-admin-token-0123456789abc\", \"--admin-client\", \"dcr-bootstrap:kc-admin-client-secret-0123456789\"",
                "/realms/demo/protocol/openid-connect/token",
            ),
            "unused-admin-token-0123456789abc",
        ),
    ];
    for (name, env, secret, extra, control) in cases {
        let s = Stack::production(name, &env, secret, &extra, control);
        let up = s.compose(&["up", "-d"]);
        assert!(up.status.success(), "[{name}] up: {}", text(&up));
        assert_eq!(
            s.wait("dcr-bootstrap", Duration::from_secs(90)),
            0,
            "[{name}] {}",
            s.logs("dcr-bootstrap")
        );
        let bff = s.wait_for_log("bff", "accepted at", Duration::from_secs(30));
        assert!(bff.contains("accepted at"), "[{name}] {bff}");
        let st = s.stats();
        assert_eq!(st["clients_registered"], 1, "[{name}] {st}");
    }
}

#[test]
#[ignore = "needs a Docker engine and the images of scripts/image.sh (.ci/run)"]
fn an_idp_that_starts_5s_later_is_waited_for() {
    // The IdP's container runs from the start, so its name resolves inside the test network
    // (an unknown name would make Docker's DNS ask the host's resolver), but its process
    // listens only after 5 s: connections are refused until then.
    let s = Stack::new(
        "late",
        "    command: [\"--port\", \"8002\", \"--admin-token-file\", \"/run/secrets/idp-admin-token\", \
         \"--start-delay\", \"5s\"]\n",
    );
    let up = s.compose(&["up", "-d", "--no-deps", "idp", "dcr-bootstrap"]);
    assert!(up.status.success(), "{}", text(&up));
    let logs = s.wait_for_log("dcr-bootstrap", "retry", Duration::from_secs(20));
    assert!(logs.contains("Connection refused"), "{logs}");
    assert!(
        !logs.contains("failed to lookup"),
        "a name lookup left the network: {logs}"
    );
    assert_eq!(s.wait("dcr-bootstrap", Duration::from_secs(60)), 0);
    let up = s.compose(&["up", "-d", "--no-deps", "bff"]);
    assert!(up.status.success(), "{}", text(&up));
    s.wait_for_log("bff", "accepted at", Duration::from_secs(30));
    assert_eq!(s.stats()["clients_registered"], 1);
}

#[test]
#[ignore = "needs a Docker engine and the images of scripts/image.sh (.ci/run)"]
fn an_idp_restarted_while_the_init_service_retries_still_gets_one_client() {
    // The IdP answers its first 3 requests with 503 (Retry-After 2): the init service backs off.
    let s = Stack::new(
        "restart",
        "    command: [\"--port\", \"8002\", \"--admin-token-file\", \"/run/secrets/idp-admin-token\", \
         \"--fail-first\", \"3\", \"--retry-after\", \"2\"]\n",
    );
    let up = s.compose(&["up", "-d", "--no-deps", "idp", "dcr-bootstrap"]);
    assert!(up.status.success(), "{}", text(&up));
    s.wait_for_log("dcr-bootstrap", "503", Duration::from_secs(30));
    let restart = s.compose(&["restart", "-t", "1", "idp"]);
    assert!(restart.status.success(), "{}", text(&restart));
    assert_eq!(s.wait("dcr-bootstrap", Duration::from_secs(90)), 0);
    let st = s.stats();
    assert_eq!(st["clients_registered"], 1, "{st}");
    assert_eq!(st["clients_live"], 1, "{st}");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.volume().join("bff_client.json")).unwrap())
            .unwrap();
    assert_eq!(doc["client_id"], "bff-server");
}

#[test]
#[ignore = "needs a Docker engine and the images of scripts/image.sh (.ci/run)"]
fn a_wrong_admin_token_is_exit_3_and_the_bff_never_starts() {
    let s = Stack::new("wrong", "");
    let wrong = s.secret_file("wrong-token", "not-the-admin-token");
    let extra = format!(
        "  dcr-bootstrap:\n    secrets: [idp-admin-token, wrong-token]\n    environment:\n      \
         BOOTSTRAP_ADMIN_TOKEN_FILE: /run/secrets/wrong-token\nsecrets:\n  wrong-token:\n    file: {}\n",
        wrong.display()
    );
    std::fs::write(
        &s.files[1],
        format!("services:\n  idp:\n    ports: [\"127.0.0.1::8002\"]\n{extra}"),
    )
    .unwrap();
    let up = s.compose(&["up", "-d"]);
    assert!(!up.status.success(), "compose up must fail: {}", text(&up));
    assert_eq!(s.wait("dcr-bootstrap", Duration::from_secs(30)), 3);
    let logs = s.logs("dcr-bootstrap");
    assert!(logs.contains("BOOTSTRAP_ADMIN_TOKEN"), "{logs}");
    assert!(
        !logs.contains("not-the-admin-token"),
        "the token was echoed"
    );
    // Never started: no container, or one that never ran.
    let started = s.inspect("bff", "{{.State.StartedAt}}");
    assert!(
        started.is_empty() || started.starts_with("0001-01-01"),
        "the BFF started at {started}"
    );
    assert_eq!(s.stats()["clients_registered"], 0);
}

#[test]
#[ignore = "needs a Docker engine and the images of scripts/image.sh (.ci/run)"]
fn compose_stop_during_the_wait_ends_with_143_within_1s() {
    // The IdP's container runs (its name resolves inside the test network) but does not
    // listen during the test: the init service is waiting when it is stopped.
    let s = Stack::new(
        "stop",
        "    command: [\"--port\", \"8002\", \"--admin-token-file\", \"/run/secrets/idp-admin-token\", \
         \"--start-delay\", \"120s\"]\n",
    );
    let up = s.compose(&["up", "-d", "--no-deps", "idp", "dcr-bootstrap"]);
    assert!(up.status.success(), "{}", text(&up));
    s.wait_for_log("dcr-bootstrap", "retry", Duration::from_secs(20));
    let sent = SystemTime::now();
    let stop = s.compose(&["stop", "-t", "10", "dcr-bootstrap"]);
    assert!(stop.status.success(), "{}", text(&stop));
    assert_eq!(s.inspect("dcr-bootstrap", "{{.State.ExitCode}}"), "143");
    let finished = rfc3339(&s.inspect("dcr-bootstrap", "{{.State.FinishedAt}}"));
    let took = finished.duration_since(sent).unwrap_or_default();
    assert!(
        took < Duration::from_secs(1),
        "SIGTERM took {took:?} as PID 1"
    );
}
