//! Benchmarks, not timed tests: they print figures and ratios against the baselines measured
//! in the same run, and never fail on a number. Run everything with `bash bench/run.sh`.
//!
//! Sections (BENCH=cold,recovery,backoff,fleet,footprint selects; all by default):
//! - cold: exec to exit with the IdP ready, dcr-bootstrap vs the curl and Python baselines,
//!   alternated; also with RS256 and ES256 key generation.
//! - recovery: the IdP starts listening T s (1-20) after the tool; time from listen() to the
//!   file being written, and connection attempts per second while it was down (strace).
//! - backoff: requests per second a single instance sends to an IdP answering 503.
//! - fleet: 200 instances start together while the IdP answers 503 for 10 s.
//! - footprint: binary size and peak RSS of a full run, against bash + curl + jq.

use dcr_idp_emulator::{Config, Emulator};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_dcr-bootstrap");
const ADMIN: &str = "bench-admin-token-0123456789";
const METADATA: &str = r#"{"client_name":"bff-server","redirect_uris":["https://app.example/cb"]}"#;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tool {
    Dcr,
    /// Another build of dcr-bootstrap (`BENCH_BEFORE_BIN`), measured in the same run: the
    /// "before" row of a change.
    DcrBefore,
    DcrRs256,
    DcrEs256,
    Curl,
    Python,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Dcr => "dcr-bootstrap",
            Tool::DcrBefore => "dcr-bootstrap before (BENCH_BEFORE_BIN)",
            Tool::DcrRs256 => "dcr-bootstrap + RS256 keygen",
            Tool::DcrEs256 => "dcr-bootstrap + ES256 keygen",
            Tool::Curl => "curl script (bash+curl+jq)",
            Tool::Python => "Python requests script",
        }
    }

    /// The command, its environment, and where it writes.
    fn command(self, base: &str, dir: &Path) -> (Vec<String>, BTreeMap<String, String>, PathBuf) {
        let out = dir.join("keys/creds.json");
        let mut env = BTreeMap::new();
        env.insert(
            "PATH".to_string(),
            std::env::var("PATH").unwrap_or_default(),
        );
        env.insert("IDP_BASE_URL".into(), base.into());
        env.insert("BOOTSTRAP_ADMIN_TOKEN".into(), ADMIN.into());
        let argv = match self {
            Tool::Dcr | Tool::DcrBefore | Tool::DcrRs256 | Tool::DcrEs256 => {
                env.insert("DCR_OUTPUT".into(), out.display().to_string());
                env.insert("DCR_CLIENT_METADATA".into(), METADATA.into());
                if matches!(self, Tool::DcrRs256 | Tool::DcrEs256) {
                    env.insert(
                        "DCR_SIGNING_KEY".into(),
                        dir.join("keys/bff.pem").display().to_string(),
                    );
                    env.insert(
                        "DCR_KEY_ALG".into(),
                        if self == Tool::DcrRs256 {
                            "RS256"
                        } else {
                            "ES256"
                        }
                        .into(),
                    );
                }
                if self == Tool::DcrBefore {
                    vec![std::env::var("BENCH_BEFORE_BIN").unwrap_or_else(|_| BIN.to_string())]
                } else {
                    vec![BIN.to_string()]
                }
            }
            Tool::Curl | Tool::Python => {
                env.insert("OUTPUT".into(), out.display().to_string());
                env.insert("CLIENT_METADATA".into(), METADATA.into());
                if self == Tool::Curl {
                    vec![
                        "bash".into(),
                        root()
                            .join("bench/baseline/curl-bootstrap.sh")
                            .display()
                            .to_string(),
                    ]
                } else {
                    vec![
                        "python3".into(),
                        root()
                            .join("bench/baseline/python-bootstrap.py")
                            .display()
                            .to_string(),
                    ]
                }
            }
        };
        (argv, env, out)
    }
}

fn spawn(argv: &[String], env: &BTreeMap<String, String>) -> tokio::process::Child {
    Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"))
}

/// Nearest-rank percentile of a sorted slice.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// splitmix64, for reproducible random outage lengths.
fn rand01(seed: u64) -> f64 {
    let mut x = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((x ^ (x >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

fn emulator() -> Emulator {
    Emulator::start(
        "127.0.0.1:0".parse().expect("addr"),
        Config {
            admin_token: ADMIN.into(),
            ..Config::default()
        },
    )
    .expect("emulator")
}

fn epoch(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn mtime(path: &Path) -> Option<f64> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .map(epoch)
}

fn valid_output(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["client_id"].is_string())
}

async fn cold(runs: usize) {
    println!("\n## Cold run (IdP ready): exec → exit, {runs} runs each, alternated\n");
    let emu = emulator();
    let base = emu.base_url();
    let tools = [
        Tool::Dcr,
        Tool::Curl,
        Tool::Python,
        Tool::DcrRs256,
        Tool::DcrEs256,
    ];
    let mut times: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for i in 0..runs + 2 {
        for t in tools {
            let dir = tempfile::tempdir().expect("tempdir");
            let (argv, env, out) = t.command(&base, dir.path());
            let start = Instant::now();
            let status = spawn(&argv, &env).wait().await.expect("wait");
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            assert!(
                status.success() && valid_output(&out),
                "{} failed",
                t.name()
            );
            // The first two rounds warm the page cache and the emulator; not counted.
            if i >= 2 {
                times.entry(t.name()).or_default().push(ms);
            }
        }
    }
    let median = |t: Tool| pct(&sorted(times[t.name()].clone()), 50.0);
    let curl = median(Tool::Curl);
    println!("| tool | median ms | p95 ms | × curl script (median) |\n|---|---|---|---|");
    for t in tools {
        let s = sorted(times[t.name()].clone());
        println!(
            "| {} | {:.1} | {:.1} | {:.2} |",
            t.name(),
            pct(&s, 50.0),
            pct(&s, 95.0),
            pct(&s, 50.0) / curl
        );
    }
    println!(
        "\nTarget: dcr-bootstrap ≤ 0.30 × the curl script without key generation: {:.2}×.",
        median(Tool::Dcr) / curl
    );
}

struct Trial {
    latency_ms: f64,
    attempts_down: usize,
    down_s: f64,
}

/// Connection attempts to `port` before `until` (epoch seconds) in an `strace -ttt` log.
fn connects_before(log: &Path, port: u16, until: f64) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let needle = format!("sin_port=htons({port})");
    text.lines()
        .filter(|l| l.contains("connect(") && l.contains(&needle))
        .filter_map(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|t| t.parse::<f64>().ok())
        })
        .filter(|t| *t < until)
        .count()
}

async fn recovery_trial(tool: Tool, seed: u64) -> Trial {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut emu = Emulator::bind(
        "127.0.0.1:0".parse().expect("addr"),
        Config {
            admin_token: ADMIN.into(),
            ..Config::default()
        },
    )
    .expect("bind");
    let (argv, env, out) = tool.command(&emu.base_url(), dir.path());
    let log = dir.path().join("strace.log");
    let mut traced = vec![
        "strace".to_string(),
        "-f".into(),
        "-qq".into(),
        "--seccomp-bpf".into(),
        "-ttt".into(),
        "-e".into(),
        "trace=connect".into(),
        "-o".into(),
        log.display().to_string(),
    ];
    traced.extend(argv);
    let down = Duration::from_secs_f64(1.0 + 19.0 * rand01(seed));
    let mut child = spawn(&traced, &env);
    tokio::time::sleep(down).await;
    let up = SystemTime::now();
    emu.listen().expect("listen");
    let status = child.wait().await.expect("wait");
    assert!(
        status.success() && valid_output(&out),
        "{} failed",
        tool.name()
    );
    let written = mtime(&out).expect("mtime");
    Trial {
        latency_ms: (written - epoch(up)) * 1000.0,
        attempts_down: connects_before(&log, emu.addr().port(), epoch(up)),
        down_s: down.as_secs_f64(),
    }
}

async fn recovery(trials: usize) {
    println!(
        "\n## Time to notice recovery: IdP listens T s after start (T uniform 1–20 s), {trials} trials each\n"
    );
    println!(
        "| tool | p50 ms | p95 ms | max ms | connection attempts/s while down (mean / max) |\n|---|---|---|---|---|"
    );
    for tool in [Tool::Dcr, Tool::Curl] {
        // Trials run concurrently (each has its own emulator and port): they mostly sleep.
        let handles: Vec<_> = (0..trials as u64)
            .map(|i| tokio::spawn(recovery_trial(tool, i + 1000 * tool as u64)))
            .collect();
        let mut lat = Vec::new();
        let mut rates = Vec::new();
        for h in handles {
            let t = h.await.expect("trial");
            lat.push(t.latency_ms);
            rates.push(t.attempts_down as f64 / t.down_s);
        }
        let lat = sorted(lat);
        let rates = sorted(rates);
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.2} / {:.2} |",
            tool.name(),
            pct(&lat, 50.0),
            pct(&lat, 95.0),
            lat.last().copied().unwrap_or(f64::NAN),
            rates.iter().sum::<f64>() / rates.len() as f64,
            rates.last().copied().unwrap_or(f64::NAN)
        );
    }
    println!(
        "\nTargets: p50 ≤ 250 ms, p95 ≤ 1000 ms, ≤ 2 connection attempts/s while the IdP is down."
    );
}

async fn backoff(trials: usize) {
    println!(
        "\n## A single instance against an IdP answering 503 for 20 s ({trials} trials each)\n"
    );
    println!(
        "| tool | requests during the 503 phase (mean) | requests/s (mean / max) | done after recovery, ms (median) |\n|---|---|---|---|"
    );
    let mut tools = vec![Tool::Curl];
    if std::env::var_os("BENCH_BEFORE_BIN").is_some() {
        tools.push(Tool::DcrBefore);
    }
    tools.push(Tool::Dcr);
    for tool in tools {
        let handles: Vec<_> = (0..trials)
            .map(|_| {
                tokio::spawn(async move {
                    let emu = emulator();
                    let dir = tempfile::tempdir().expect("tempdir");
                    let (argv, env, out) = tool.command(&emu.base_url(), dir.path());
                    emu.set_unavailable(Duration::from_secs(20), None);
                    let recovered = epoch(SystemTime::now()) + 20.0;
                    let status = spawn(&argv, &env).wait().await.expect("wait");
                    assert!(
                        status.success() && valid_output(&out),
                        "{} failed",
                        tool.name()
                    );
                    let during = emu.request_log().iter().filter(|r| r.unavailable).count();
                    (
                        during,
                        (mtime(&out).unwrap_or(recovered) - recovered) * 1000.0,
                    )
                })
            })
            .collect();
        let mut counts = Vec::new();
        let mut after = Vec::new();
        for h in handles {
            let (c, a) = h.await.expect("trial");
            counts.push(c as f64);
            after.push(a);
        }
        let rates = sorted(counts.iter().map(|c| c / 20.0).collect());
        println!(
            "| {} | {:.1} | {:.2} / {:.2} | {:.0} |",
            tool.name(),
            counts.iter().sum::<f64>() / counts.len() as f64,
            rates.iter().sum::<f64>() / rates.len() as f64,
            rates.last().copied().unwrap_or(f64::NAN),
            pct(&sorted(after), 50.0)
        );
    }
    println!("\nTarget: ≤ 1 request/s to an IdP answering 503.");
}

/// One fleet scenario: `n` instances started at once against an IdP answering 503 for
/// `outage_s` (with `Retry-After: retry_after` when given), then recovering.
struct Outage<'a> {
    n: usize,
    outage_s: u64,
    retry_after: Option<&'a str>,
}

async fn fleet(tool: Tool, o: &Outage<'_>, extra_env: &[(&str, &str)], label: &str) -> String {
    let Outage {
        n,
        outage_s,
        retry_after,
    } = *o;
    let emu = emulator();
    let dirs: Vec<_> = (0..n)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let t0 = emu.elapsed();
    emu.set_unavailable(Duration::from_secs(outage_s), retry_after);
    let recovered_wall = epoch(SystemTime::now()) + outage_s as f64;
    let spawn_start = Instant::now();
    let mut children = Vec::new();
    let mut outs = Vec::new();
    for d in &dirs {
        let (argv, mut env, out) = tool.command(&emu.base_url(), d.path());
        for (k, v) in extra_env {
            env.insert(k.to_string(), v.to_string());
        }
        children.push(spawn(&argv, &env));
        outs.push(out);
    }
    let spawn_ms = spawn_start.elapsed().as_secs_f64() * 1000.0;
    let mut failed = 0;
    for mut c in children {
        if !c.wait().await.map(|s| s.success()).unwrap_or(false) {
            failed += 1;
        }
    }
    let log: Vec<_> = emu
        .request_log()
        .into_iter()
        .filter(|r| r.at >= t0)
        .collect();
    let mut windows: BTreeMap<i64, usize> = BTreeMap::new();
    for r in &log {
        *windows
            .entry(((r.at - t0) * 10.0).floor() as i64)
            .or_default() += 1;
    }
    let peak = windows.values().copied().max().unwrap_or(0);
    let peak_after_1s = windows
        .iter()
        .filter(|(w, _)| **w >= 10)
        .map(|(_, c)| *c)
        .max()
        .unwrap_or(0);
    let during = log.iter().filter(|r| r.unavailable).count();
    // What the proof of the written credentials costs the IdP, in its own column.
    let proofs = log
        .iter()
        .filter(|r| !r.unavailable && r.path.ends_with("/token"))
        .count();
    let last_done = outs
        .iter()
        .filter_map(|o| mtime(o))
        .map(|m| m - recovered_wall)
        .fold(f64::NEG_INFINITY, f64::max);
    let written = outs.iter().filter(|o| valid_output(o)).count();
    let duplicates = emu
        .stats()
        .clients_registered
        .saturating_sub(written as u64);
    format!(
        "| {}{label} | {} | {} | {} | {} | {} | {} | {:.1} | {} | {} | {:.0} |",
        tool.name(),
        log.len(),
        during,
        proofs,
        peak,
        peak_after_1s,
        written,
        last_done,
        duplicates,
        failed,
        spawn_ms
    )
}

async fn fleets(n: usize) {
    let header = "| fleet | requests | answered 503 | proof requests (token endpoint) | peak req / 100 ms | peak after the first 1 s | credentials written | last done, s after recovery | duplicate registrations | failed | spawn ms |\n|---|---|---|---|---|---|---|---|---|---|---|";
    let outages: Vec<(u64, Option<&str>)> = std::env::var("BENCH_OUTAGES")
        .unwrap_or_else(|_| "10,10ra,1,120".into())
        .split(',')
        .filter_map(|s| match s.trim() {
            "10ra" => Some((10, Some("2"))),
            s => s.parse().ok().map(|v| (v, None)),
        })
        .collect();
    for (outage_s, retry_after) in outages {
        let ra = retry_after
            .map(|r| format!(", each 503 with Retry-After: {r}"))
            .unwrap_or_default();
        println!(
            "\n## A fleet of {n} against an IdP answering 503 for {outage_s} s{ra}, then recovering\n"
        );
        println!("{header}");
        let o = Outage {
            n,
            outage_s,
            retry_after,
        };
        // All in the same run, the baseline first.
        println!("{}", fleet(Tool::Curl, &o, &[], "").await);
        if std::env::var_os("BENCH_BEFORE_BIN").is_some() {
            println!("{}", fleet(Tool::DcrBefore, &o, &[], "").await);
        }
        println!("{}", fleet(Tool::Dcr, &o, &[], " (defaults)").await);
    }
    println!(
        "\nTargets (issue 21): with defaults, 503 answers and requests during the outage ≤ the curl script's, \
         the last instance done no later than the curl script's, and (10 s) the peak per 100 ms after the first \
         second ≤ 0.5× the curl script's; no duplicates."
    );
}

fn max_rss_kb(argv: &[String], env: &BTreeMap<String, String>) -> Option<u64> {
    let out = std::process::Command::new("/usr/bin/time")
        .arg("-v")
        .args(argv)
        .env_clear()
        .envs(env)
        .stdout(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .find(|l| l.contains("Maximum resident set size"))
        .and_then(|l| l.rsplit(':').next())
        .and_then(|v| v.trim().parse().ok())
}

async fn footprint() {
    println!("\n## Footprint\n");
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let bin = Path::new(BIN);
    println!("| artefact | bytes | MiB |\n|---|---|---|");
    println!(
        "| dcr-bootstrap (release, stripped, glibc dynamic) | {} | {:.2} |",
        size(bin),
        size(bin) as f64 / 1048576.0
    );
    let static_bin = root().join("target/static/x86_64-unknown-linux-gnu/release/dcr-bootstrap");
    if static_bin.exists() {
        println!(
            "| dcr-bootstrap (release, stripped, static glibc: crt-static) | {} | {:.2} |",
            size(&static_bin),
            size(&static_bin) as f64 / 1048576.0
        );
    }
    for tool in ["/usr/bin/curl", "/usr/bin/jq", "/usr/bin/bash"] {
        let p = Path::new(tool);
        println!(
            "| {tool} (plus its shared libraries) | {} | {:.2} |",
            size(p),
            size(p) as f64 / 1048576.0
        );
    }
    let emu = emulator();
    println!("\n| full run (IdP ready) | peak RSS KiB (`/usr/bin/time -v`) |\n|---|---|");
    for tool in [Tool::Dcr, Tool::DcrRs256, Tool::Curl, Tool::Python] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (argv, env, _) = tool.command(&emu.base_url(), dir.path());
        let rss = tokio::task::spawn_blocking(move || max_rss_kb(&argv, &env))
            .await
            .ok()
            .flatten();
        println!(
            "| {} | {} |",
            tool.name(),
            rss.map(|r| r.to_string()).unwrap_or_else(|| "n/a".into())
        );
    }
    println!(
        "\n(For the curl script the figure is its largest single process, as getrusage reports it.)"
    );
}

fn main() {
    let sections =
        std::env::var("BENCH").unwrap_or_else(|_| "cold,recovery,backoff,fleet,footprint".into());
    let n = |var: &str, default: usize| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "# dcr-bootstrap benchmarks\n\nMachine: {} cores, {:.0} GiB; {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| m
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok()))
            .unwrap_or(0.0)
            / 1048576.0,
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |c| c.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_string())
            )
            .unwrap_or_default()
    );
    rt.block_on(async {
        for s in sections.split(',') {
            match s.trim() {
                "cold" => cold(n("BENCH_RUNS", 30)).await,
                "recovery" => recovery(n("BENCH_TRIALS", 30)).await,
                "backoff" => backoff(n("BENCH_BACKOFF_TRIALS", 5)).await,
                "fleet" => fleets(n("BENCH_FLEET", 200)).await,
                "footprint" => footprint().await,
                "" => {}
                other => eprintln!("unknown section {other}"),
            }
        }
    });
}
