//! A randomized search for conclusions the evidence does not support: random combinations of
//! emulator quirks (each modelled on a real server) and client settings, driven through
//! register, restart, drift, rotation, a lost answer, a revoked token, a deletion behind the
//! client's back, an expired secret and deregister. After every step the emulator's own state
//! judges the run:
//!
//! 1. never a second live client (one whose secret expired is unusable to anyone: a client
//!    gone in all but name, which a proof cannot tell from a deleted one);
//! 2. never "gone" while the client exists;
//! 3. never exit 3 while the written credentials work (deregister aside: it reports a delete
//!    that did not happen);
//! 4. never exit 0 with credentials the IdP refuses, where a proof could tell.
//!
//! `DCR_INVARIANT_SEED` replays one scenario; `DCR_INVARIANT_SCENARIOS` sets the budget.

use crate::common::*;
use dcr_idp_emulator::{Config, Fault, FaultAction, Quirks};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// Quirks that make real servers differ, drawn at random.
const SWITCHES: &[&str] = &[
    "auth-method-as-array",
    "forget-scope",
    "new-secret-on-update",
    "ignore-client-id",
    "patch-noop",
    "token-error-400",
    "auth-failure-empty-403",
    "auth-failure-403-unauthorized-client",
    "grant-not-allowed-invalid-request",
    "grant-checked-before-auth",
    "no-updates",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Restart,
    DriftAtIdp,
    Rotate,
    LostUpdateAnswer,
    RevokeRat,
    DeleteBehindBack,
    ExpireSecret,
    Deregister,
}

const STEPS: &[Step] = &[
    Step::Restart,
    Step::DriftAtIdp,
    Step::Rotate,
    Step::LostUpdateAnswer,
    Step::RevokeRat,
    Step::DeleteBehindBack,
    Step::ExpireSecret,
    Step::Deregister,
];

struct Scenario {
    seed: u64,
    quirks: Vec<&'static str>,
    rotate_rat_on_update: bool,
    missing_404: bool,
    key: bool,
    fixed_id: bool,
    rat_endpoint: bool,
    reregister: bool,
    steps: Vec<Step>,
}

impl Scenario {
    fn draw(seed: u64) -> Scenario {
        let mut rng = fastrand::Rng::with_seed(seed);
        let quirks = SWITCHES
            .iter()
            .copied()
            .filter(|_| rng.u8(..4) == 0)
            .collect();
        Scenario {
            seed,
            quirks,
            rotate_rat_on_update: rng.bool(),
            missing_404: rng.bool(),
            key: rng.bool(),
            fixed_id: rng.bool(),
            rat_endpoint: rng.bool(),
            reregister: rng.bool(),
            steps: (0..6).map(|_| STEPS[rng.usize(..STEPS.len())]).collect(),
        }
    }

    fn harness(&self) -> Harness {
        let mut quirks = Quirks::default();
        for q in &self.quirks {
            quirks.set(q, "").expect("a known quirk");
        }
        Harness::with(Config {
            quirks,
            rotate_rat_on_update: self.rotate_rat_on_update,
            missing_client_status: if self.missing_404 { 404 } else { 401 },
            ..emulator_config()
        })
    }

    fn env(&self, h: &Harness) -> BTreeMap<String, String> {
        let mut env = if self.rat_endpoint {
            h.env_with_rat_endpoint()
        } else {
            h.env()
        };
        env.insert("RUST_LOG".into(), "info".into());
        if self.key {
            let key = h.dir.path().join("keys/bff.pem");
            env.insert("DCR_SIGNING_KEY".into(), key.display().to_string());
            env.insert("DCR_KEY_ALG".into(), "ES256".into());
        } else {
            env.insert(
                "DCR_TOKEN_ENDPOINT_AUTH_METHOD".into(),
                "client_secret_basic".into(),
            );
        }
        if self.fixed_id {
            env.insert("DCR_CLIENT_ID".into(), "bff-server".into());
        }
        if self.reregister {
            env.insert("DCR_ON_STALE".into(), "reregister".into());
        }
        env
    }

    /// Proofs here can tell right credentials from wrong ones.
    fn proof_can_tell(&self) -> bool {
        !self.quirks.contains(&"grant-checked-before-auth")
    }
}

/// Whether the credentials written at DCR_OUTPUT are accepted by the IdP, judged by the
/// emulator's own state.
fn written_credentials_work(h: &Harness) -> Option<bool> {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(h.out()).ok()?).ok()?;
    let id = doc["client_id"].as_str()?;
    if let Some(secret) = doc["client_secret"].as_str() {
        return Some(h.emu.credentials_work(id, Some(secret), None));
    }
    let k = &doc["dcr_bootstrap"]["signing_key"];
    let pem = std::fs::read_to_string(k["path"].as_str()?).ok()?;
    let key = (pem.as_str(), k["kid"].as_str()?, k["alg"].as_str()?);
    Some(h.emu.credentials_work(id, None, Some(key)))
}

fn stored_id(h: &Harness) -> Option<String> {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(h.out()).ok()?).ok()?;
    doc["client_id"].as_str().map(str::to_string)
}

/// Sets the IdP up for a step; what the run's environment adds for it.
fn prepare(h: &Harness, step: Step, env: &mut BTreeMap<String, String>) -> Vec<&'static str> {
    let id = stored_id(h);
    match (step, id) {
        (Step::DriftAtIdp, Some(id)) => {
            h.emu
                .set_client_field(&id, "redirect_uris", json!(["https://drift.example/cb"]));
        }
        (Step::Rotate, _) => {
            env.insert("BFF_JWK_ROTATE_AFTER_DAYS".into(), "0".into());
        }
        (Step::LostUpdateAnswer, _) => {
            env.insert(
                "DCR_REDIRECT_URIS".into(),
                "https://moved.example/auth/callback".into(),
            );
            for method in ["PUT", "PATCH"] {
                h.emu.push_fault(Fault {
                    method: Some(method.into()),
                    ..Fault::action_on("/api/oidc/register/", 1, FaultAction::DropAfterCommit)
                });
            }
        }
        (Step::RevokeRat, Some(id)) => h.emu.revoke_rat(&id),
        (Step::DeleteBehindBack, Some(id)) => {
            h.emu.remove_client(&id);
        }
        (Step::ExpireSecret, _) => h.emu.expire_secrets(),
        (Step::Deregister, _) => return vec!["deregister"],
        _ => {}
    }
    Vec::new()
}

/// The four invariants after one run; `Err` says which broke.
/// `existed`: the stored client existed at the IdP when the run started.
fn judge(s: &Scenario, h: &Harness, step: Step, existed: bool, run: &Run) -> Result<(), String> {
    let usable = h.emu.usable_clients();
    let live = h
        .emu
        .clients()
        .iter()
        .filter(|(id, m)| m.get("client_name") == Some(&json!("bff-server")) && usable.contains(id))
        .count();
    if live > 1 {
        return Err(format!("{live} live clients"));
    }
    if existed && run.stderr.contains("is gone at the IdP") {
        return Err("called the client gone while it exists".into());
    }
    let works = written_credentials_work(h);
    if run.code == Some(3) && step != Step::Deregister && works == Some(true) {
        return Err("exit 3 while the written credentials work".into());
    }
    if run.code == Some(0) && step != Step::Deregister && s.proof_can_tell() && works == Some(false)
    {
        return Err("exit 0 with credentials the IdP refuses".into());
    }
    Ok(())
}

async fn play(s: &Scenario) -> Result<(), String> {
    let h = s.harness();
    let mut trace = Vec::new();
    let first = h.run(&s.env(&h)).await;
    trace.push(format!("register -> {:?}", first.code));
    judge(s, &h, Step::Restart, false, &first).map_err(|e| explain(s, &trace, &e, &first))?;
    for &step in &s.steps {
        let mut env = s.env(&h);
        let args = prepare(&h, step, &mut env);
        let existed = stored_id(&h).is_some_and(|id| h.emu.clients().iter().any(|(c, _)| *c == id));
        let run = h.run_args(&env, &args).await;
        trace.push(format!("{step:?} -> {:?}", run.code));
        judge(s, &h, step, existed, &run).map_err(|e| explain(s, &trace, &e, &run))?;
    }
    Ok(())
}

fn explain(s: &Scenario, trace: &[String], broke: &str, run: &Run) -> String {
    format!(
        "seed {} broke an invariant: {broke}\nquirks {:?}, key {}, fixed id {}, rat endpoint {}, reregister {}, \
         rotate on update {}, 404 for missing {}\nsteps: {}\nreplay: DCR_INVARIANT_SEED={} cargo test --test tests \
         invariants::\nlast run:\n{}",
        s.seed,
        s.quirks,
        s.key,
        s.fixed_id,
        s.rat_endpoint,
        s.reregister,
        s.rotate_rat_on_update,
        s.missing_404,
        trace.join(", "),
        s.seed,
        run.logs()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_random_server_and_history_makes_the_program_conclude_what_it_cannot_know() {
    let seeds: Vec<u64> = match std::env::var("DCR_INVARIANT_SEED") {
        Ok(s) => vec![s.parse().expect("DCR_INVARIANT_SEED is a number")],
        Err(_) => {
            let n = std::env::var("DCR_INVARIANT_SCENARIOS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(24u64);
            (0..n).map(|i| 20_261_208 + i).collect()
        }
    };
    let started = std::time::Instant::now();
    for seed in &seeds {
        let s = Scenario::draw(*seed);
        if let Err(e) = play(&s).await {
            panic!("{e}");
        }
    }
    eprintln!(
        "{} scenarios of {} steps held every invariant in {:?}",
        seeds.len(),
        1 + 6,
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(600));
}
