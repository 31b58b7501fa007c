//! The fault matrix. Every scenario asserts four invariants:
//! (a) the right outcome: success, or the documented exit code, within the deadline;
//! (b) no duplicate registration (emulator counters);
//! (c) the output is absent, or complete, valid JSON with mode 0600; no temp file is left;
//! (d) no secret value anywhere in the captured logs (run at RUST_LOG=trace).

use crate::common::*;
use dcr_idp_emulator::{Effect, Fault, FaultAction};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

const REGISTER: &str = "/api/oidc/dcr/register";
const MINT: &str = "/api/admin/dcr/initial-access-tokens";

fn trace_env(h: &Harness) -> BTreeMap<String, String> {
    let mut env = h.env();
    env.insert("RUST_LOG".into(), "trace".into());
    env
}

fn respond(path: &str, times: u32, status: u16, ct: &str, body: &str) -> Fault {
    Fault::action_on(
        path,
        times,
        FaultAction::Respond {
            status,
            headers: if ct.is_empty() {
                vec![]
            } else {
                vec![("Content-Type".into(), ct.into())]
            },
            body: body.into(),
        },
    )
}

struct Case {
    name: &'static str,
    faults: Vec<Fault>,
    env: Vec<(&'static str, String)>,
    code: i32,
    /// Text the logs must contain (the message an operator would read).
    says: &'static str,
    /// Clients the IdP must hold afterwards.
    clients: u64,
}

fn case(name: &'static str, faults: Vec<Fault>, code: i32, says: &'static str) -> Case {
    Case {
        name,
        faults,
        env: vec![],
        code,
        says,
        clients: u64::from(code == 0),
    }
}

fn http_date_in(secs: u64) -> String {
    httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(secs))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix() {
    let lost = |action| vec![Fault::action_on(REGISTER, 1, action)];
    let cases = vec![
        case(
            "503 x4 then success",
            vec![Fault::status(REGISTER, 503, 4, None)],
            0,
            "register client failed (503",
        ),
        case(
            "429 Retry-After seconds",
            vec![Fault::status(MINT, 429, 1, Some("1"))],
            0,
            "Retry-After 1s",
        ),
        Case {
            // A date ~30 s ahead, capped to 1 s: the cap message proves the date was parsed.
            env: vec![("DCR_RETRY_AFTER_MAX", "1s".into())],
            ..case(
                "429 Retry-After as an HTTP-date",
                vec![Fault::status(MINT, 429, 1, Some(&http_date_in(30)))],
                0,
                "capped to DCR_RETRY_AFTER_MAX 1s",
            )
        },
        Case {
            env: vec![("DCR_RETRY_AFTER_MAX", "1s".into())],
            ..case(
                "Retry-After 86400 is capped",
                vec![Fault::status(MINT, 503, 1, Some("86400"))],
                0,
                "capped to DCR_RETRY_AFTER_MAX 1s",
            )
        },
        Case {
            env: vec![("DCR_TIMEOUT", "3s".into())],
            ..case(
                "Retry-After 86400 within a 3s deadline",
                vec![Fault::status(MINT, 503, 1, Some("86400"))],
                4,
                "DCR_TIMEOUT",
            )
        },
        case(
            "500 with an HTML body",
            vec![respond(
                MINT,
                2,
                500,
                "text/html",
                "<html><body><h1>Internal Server Error</h1></body></html>",
            )],
            0,
            "text/html body",
        ),
        case(
            "502 from a proxy, empty body",
            vec![respond(REGISTER, 2, 502, "", "")],
            0,
            "502 with an empty body",
        ),
        case(
            "connection dropped before an answer (mint)",
            vec![Fault::action_on(MINT, 2, FaultAction::Drop)],
            0,
            "mint IAT failed",
        ),
        case(
            "connection reset before an answer (mint)",
            vec![Fault::action_on(MINT, 2, FaultAction::Reset)],
            0,
            "mint IAT failed",
        ),
        case(
            "connection reset mid-response (mint)",
            vec![Fault::action_on(MINT, 1, FaultAction::ResetMidResponse)],
            0,
            "mint IAT failed",
        ),
        Case {
            env: vec![("DCR_REQUEST_TIMEOUT", "500ms".into())],
            ..case(
                "headers slower than DCR_REQUEST_TIMEOUT",
                vec![Fault::action_on(MINT, 1, FaultAction::Delay { ms: 1500 })],
                0,
                "request timeout",
            )
        },
        Case {
            env: vec![("DCR_REQUEST_TIMEOUT", "700ms".into())],
            ..case(
                "body stalls halfway",
                vec![Fault::action_on(MINT, 1, FaultAction::StallBody)],
                0,
                "request timeout",
            )
        },
        Case {
            clients: 1,
            ..case(
                "2xx with truncated JSON (register)",
                lost(FaultAction::TruncateBody),
                3,
                "orphaned client",
            )
        },
        Case {
            clients: 1,
            ..case(
                "2xx JSON without client_id",
                lost(FaultAction::OmitFields {
                    fields: vec!["client_id".into()],
                }),
                3,
                "no client_id",
            )
        },
        case(
            "2xx with truncated JSON (mint)",
            vec![Fault::action_on(MINT, 1, FaultAction::TruncateBody)],
            3,
            "no \"token\" field",
        ),
        case(
            "2xx with a 50 MB body",
            vec![Fault::action_on(
                MINT,
                1,
                FaultAction::HugeBody {
                    bytes: 50 * 1024 * 1024,
                },
            )],
            3,
            "refusing to read it",
        ),
        case(
            "2xx with the wrong content type",
            vec![Fault::action_on(
                REGISTER,
                1,
                FaultAction::ContentType {
                    value: "text/plain".into(),
                },
            )],
            0,
            "parsed as JSON anyway",
        ),
        case(
            "3xx to another host",
            vec![Fault::action_on(
                MINT,
                1,
                FaultAction::Redirect {
                    status: 302,
                    location: "http://127.0.0.1:9/steal".into(),
                },
            )],
            3,
            "redirects are not followed",
        ),
        case(
            "IAT expired between mint and use",
            vec![
                Fault::action_on(REGISTER, 1, FaultAction::Pass)
                    .with_effects(&[Effect::ExpireIats]),
            ],
            0,
            "minting a fresh one",
        ),
        case(
            "IAT exhausted between mint and use",
            vec![
                Fault::action_on(REGISTER, 1, FaultAction::Pass)
                    .with_effects(&[Effect::ExhaustIats]),
            ],
            0,
            "minting a fresh one",
        ),
        case(
            "admin token revoked mid-run",
            vec![
                Fault::action_on(REGISTER, 1, FaultAction::Pass)
                    .with_effects(&[Effect::ExpireIats, Effect::RevokeAdminToken]),
            ],
            3,
            "BOOTSTRAP_ADMIN_TOKEN was rejected",
        ),
        Case {
            clients: 1,
            ..case(
                "lost response, single-use IAT: no duplicate",
                lost(FaultAction::DropAfterCommit),
                3,
                "orphaned client",
            )
        },
        Case {
            clients: 1,
            ..case(
                "reset mid-response on register: no duplicate",
                lost(FaultAction::ResetMidResponse),
                3,
                "orphaned client",
            )
        },
        Case {
            env: vec![("DCR_CLIENT_ID", "bff-server".into())],
            ..case(
                "lost response with DCR_CLIENT_ID: adopted",
                lost(FaultAction::DropAfterCommit),
                0,
                "adopted it",
            )
        },
        Case {
            env: vec![
                ("DCR_CLIENT_ID", "bff-server".into()),
                ("DCR_ON_EXISTING", "fail".into()),
            ],
            clients: 1,
            ..case(
                "lost response with DCR_CLIENT_ID, adoption off",
                lost(FaultAction::DropAfterCommit),
                3,
                "orphaned client \"bff-server\"",
            )
        },
    ];
    let mut table = String::from(
        "| scenario | expected | observed | time | IdP requests | clients at IdP |\n|---|---|---|---|---|---|\n",
    );
    for c in cases {
        let h = Harness::new();
        for f in c.faults {
            h.emu.push_fault(f);
        }
        let mut env = trace_env(&h);
        for (k, v) in c.env {
            env.insert(k.into(), v);
        }
        if env.contains_key("DCR_CLIENT_ID") {
            // Adoption re-issues the token at the admin API.
            env.insert("DCR_RAT_ENDPOINT".into(), h.rat_endpoint());
        }
        let run = h.run(&env).await;
        check_invariants(c.name, &h, &run, c.code);
        assert!(
            run.logs().contains(c.says),
            "[{}] logs lack {:?}:\n{}",
            c.name,
            c.says,
            run.logs()
        );
        assert_eq!(
            h.stats().clients_live,
            c.clients,
            "[{}] clients at the IdP",
            c.name
        );
        assert!(
            run.elapsed < Duration::from_secs(30),
            "[{}] took {:?}",
            c.name,
            run.elapsed
        );
        let s = h.stats();
        table.push_str(&format!(
            "| {} | exit {} | exit {} | {} ms | {} | {} |\n",
            c.name,
            c.code,
            run.code.unwrap_or(-1),
            run.elapsed.as_millis(),
            s.requests,
            s.clients_live
        ));
    }
    // The observed column of RELIABILITY.md (cargo test --test faults -- --nocapture).
    eprintln!("{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_response_with_a_multi_use_given_iat_is_not_retried() {
    let h = Harness::new();
    let iat = h.emu.mint_iat(Duration::from_secs(600), 5);
    h.emu
        .push_fault(Fault::action_on(REGISTER, 1, FaultAction::DropAfterCommit));
    let mut env = trace_env(&h);
    env.remove("BOOTSTRAP_ADMIN_TOKEN");
    env.insert("DCR_IAT".into(), iat);
    let run = h.run(&env).await;
    check_invariants("multi-use IAT, lost response", &h, &run, 3);
    assert!(run.stderr.contains("Not retrying"), "{}", run.stderr);
    assert_eq!(
        h.stats().clients_registered,
        1,
        "exactly the orphan, no duplicate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50mb_answer_is_refused_without_buffering_it() {
    let h = Harness::new();
    h.emu.push_fault(Fault::action_on(
        MINT,
        1,
        FaultAction::HugeBody {
            bytes: 50 * 1024 * 1024,
        },
    ));
    let (code, maxrss_kib) = run_measuring_rss(&h.env());
    assert_eq!(code, 3, "a 50 MB answer is refused");
    assert!(maxrss_kib < 40 * 1024, "the run peaked at {maxrss_kib} KiB");
}

/// Runs the binary and reaps it with wait4, which reports the peak RSS of that one child
/// (RUSAGE_CHILDREN would mix in every other test's children in this process).
#[allow(clippy::zombie_processes)] // reaped by wait4, not Child::wait
fn run_measuring_rss(env: &BTreeMap<String, String>) -> (i32, i64) {
    let child = std::process::Command::new(&*BIN)
        .env_clear()
        .envs(env)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: wait4 writes into the two locals we pass; the child is ours and not yet reaped.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(rc, pid, "wait4");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        // Killed by a signal: report it as the shell would (128 + signal).
        128 + libc::WTERMSIG(status)
    };
    (code, ru.ru_maxrss)
}

async fn outage(secs: u64) {
    let mut h = Harness::not_listening(emulator_config());
    let mut env = trace_env(&h);
    env.insert("DCR_TIMEOUT".into(), format!("{}s", secs + 20));
    let mut run = h.spawn(&env);
    run.wait_for("Connection refused", Duration::from_secs(10))
        .await;
    // The outage itself: a scenario parameter, not synchronisation.
    tokio::time::sleep(Duration::from_secs(secs)).await;
    h.emu.listen().unwrap();
    let up = std::time::Instant::now();
    let run = run.finish().await;
    eprintln!(
        "not listening for {secs}s: done {} ms after the IdP came up",
        up.elapsed().as_millis()
    );

    check_invariants(&format!("not listening for {secs}s"), &h, &run, 0);
    assert!(
        up.elapsed() < Duration::from_secs(2),
        "noticed recovery after {:?}",
        up.elapsed()
    );
    // A quiet wait: every attempt at DEBUG, at INFO only the first failure, one line per
    // 10 s with the time left, and the recovery.
    let at = |level: &str, needle: &str| {
        run.stderr
            .lines()
            .filter(|l| l.contains(level) && l.contains(needle))
            .count()
    };
    let attempts = at("DEBUG", "failed (");
    let waiting = at(" INFO ", "retrying");
    assert!(
        attempts as u64 >= secs,
        "{attempts} attempts: {}",
        run.stderr
    );
    assert!(
        waiting >= 1 && waiting as u64 <= 1 + (secs + 5) / 10,
        "{waiting} INFO lines for a {secs}s wait of {attempts} attempts: {}",
        run.stderr
    );
    assert!(run.stderr.contains("left"), "no time left figure");
    assert_eq!(at(" INFO ", "succeeded after"), 1, "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_not_listening_for_1s() {
    outage(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_not_listening_for_10s() {
    outage(10).await;
}

/// A symbolic link at DCR_OUTPUT is refused, whether it points at a file or nowhere: whoever
/// planted it chose what the run would read (docs/security.md). Its target is never touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_symlink_is_refused_not_followed() {
    let h = Harness::new();
    let target = h.dir.path().join("elsewhere.json");
    std::fs::write(&target, "do not touch").unwrap();
    std::fs::create_dir_all(h.out().parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&target, h.out()).unwrap();
    let run = h.run(&trace_env(&h)).await;
    run.assert_code(5);
    assert!(run.stderr.contains("symbolic link"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "do not touch");

    std::fs::remove_file(h.out()).unwrap();
    std::os::unix::fs::symlink(h.dir.path().join("missing.json"), h.out()).unwrap();
    let run = h.run(&trace_env(&h)).await;
    run.assert_code(5);
    assert!(run.stderr.contains("symbolic link"), "{}", run.stderr);
    assert_eq!(h.stats().requests, 0, "a request was made");
    assert!(
        !h.dir.path().join("missing.json").exists(),
        "the link's target was written"
    );
}
