//! Many replicas, one client (`DCR_SHARED_CLIENT`): processes standing in for pods, each with
//! its own "emptyDir" (its own DCR_OUTPUT and generated DCR_SIGNING_KEY), the same
//! DCR_CLIENT_ID, against the emulator, whose token endpoint verifies each pod's
//! `private_key_jwt` assertion. A pod counts as working only when its key authenticates.

use crate::common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// A pod: its own directory.
struct Pod {
    dir: PathBuf,
}

impl Pod {
    fn new(h: &Harness, name: &str) -> Pod {
        let dir = h.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Pod { dir }
    }

    fn env(&self, h: &Harness) -> BTreeMap<String, String> {
        let mut env = h.env_with_rat_endpoint();
        env.insert(
            "DCR_OUTPUT".into(),
            self.dir.join("bff_client.json").display().to_string(),
        );
        env.insert(
            "DCR_SIGNING_KEY".into(),
            self.dir.join("bff.pem").display().to_string(),
        );
        env.insert("DCR_CLIENT_PROFILE".into(), "code-flow-pkjwt".into());
        env.insert("DCR_KEY_ALG".into(), "ES256".into());
        env.insert("DCR_CLIENT_ID".into(), "bff-server".into());
        env.insert("DCR_SHARED_CLIENT".into(), "true".into());
        env.insert("DCR_SHARED_SETTLE".into(), "300ms".into());
        env.insert("DCR_TIMEOUT".into(), "60s".into());
        env.insert("RUST_LOG".into(), "info".into());
        env
    }

    fn output(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.join("bff_client.json")).unwrap()).unwrap()
    }

    /// Whether this pod's key authenticates as the client at the token endpoint now.
    async fn authenticates(&self, h: &Harness) -> bool {
        let doc = self.output();
        let kid = doc["dcr_bootstrap"]["signing_key"]["kid"].as_str().unwrap();
        let pem = std::fs::read_to_string(self.dir.join("bff.pem")).unwrap();
        let aud = format!("{}/api/oidc/token", h.emu.base_url());
        let a = client_assertion(&pem, "ES256", kid, "bff-server", &aud);
        assertion_authenticates(&h.emu.base_url(), &a).await
    }
}

fn shared_harness() -> Harness {
    Harness::new()
}

/// Starts every pod at once and waits for all; each must exit 0.
async fn start_all(h: &Harness, pods: &[&Pod]) {
    let running: Vec<_> = pods.iter().map(|p| h.spawn(&p.env(h))).collect();
    for r in running {
        let run = r.finish().await;
        run.assert_code(0);
    }
}

fn published(h: &Harness) -> Vec<Value> {
    h.emu
        .clients()
        .into_iter()
        .find(|(id, _)| id == "bff-server")
        .and_then(|(_, m)| m.get("jwks").and_then(|j| j["keys"].as_array().cloned()))
        .unwrap_or_default()
}

/// Rounds of the concurrent case: `DCR_REPLICA_ROUNDS` (CI runs 50), else 3.
fn rounds() -> usize {
    std::env::var("DCR_REPLICA_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_pods_started_together_all_authenticate_with_one_client() {
    let (mut iats, mut reissued, mut starts) = (0, 0, 0);
    for round in 0..rounds() {
        let h = shared_harness();
        let pods: Vec<Pod> = (0..3).map(|i| Pod::new(&h, &format!("pod{i}"))).collect();
        start_all(&h, &pods.iter().collect::<Vec<_>>()).await;
        for (i, p) in pods.iter().enumerate() {
            assert!(
                p.authenticates(&h).await,
                "round {round}: pod {i} cannot authenticate"
            );
        }
        let s = h.stats();
        assert_eq!(h.emu.clients().len(), 1, "round {round}: one client");
        assert_eq!(published(&h).len(), 3, "round {round}: three keys");
        iats += s.iats_minted;
        reissued += s.rats_reissued;
        starts += 3;
    }
    eprintln!(
        "replicas: {} rounds of 3 concurrent pods: {:.2} IATs minted and {:.2} RATs re-issued per pod start",
        rounds(),
        iats as f64 / starts as f64,
        reissued as f64 / starts as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_starts_lose_no_key() {
    for round in 0..rounds().div_ceil(10) {
        let h = shared_harness();
        let pods: Vec<Pod> = (0..10).map(|i| Pod::new(&h, &format!("pod{i}"))).collect();
        start_all(&h, &pods.iter().collect::<Vec<_>>()).await;
        for (i, p) in pods.iter().enumerate() {
            assert!(
                p.authenticates(&h).await,
                "round {round}: pod {i} cannot authenticate"
            );
        }
        assert_eq!(h.emu.clients().len(), 1);
        assert_eq!(published(&h).len(), 10);
        let s = h.stats();
        eprintln!(
            "replicas: 10 concurrent pods, round {round}: {} IATs minted, {} RATs re-issued, {} key updates, {} requests",
            s.iats_minted, s.rats_reissued, s.clients_updated, s.requests
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_keeps_every_live_pod_working() {
    let h = shared_harness();
    let old: Vec<Pod> = (0..3).map(|i| Pod::new(&h, &format!("old{i}"))).collect();
    start_all(&h, &old.iter().collect::<Vec<_>>()).await;
    let (iats_at_start, rats_at_start) = (h.stats().iats_minted, h.stats().rats_reissued);
    let mut live: Vec<&Pod> = old.iter().collect();
    let new: Vec<Pod> = (0..3).map(|i| Pod::new(&h, &format!("new{i}"))).collect();
    for (step, pod) in new.iter().enumerate() {
        // maxSurge 1: the new pod starts while every old one still runs, then one old goes.
        start_all(&h, &[pod]).await;
        live.push(pod);
        for p in &live {
            assert!(
                p.authenticates(&h).await,
                "step {step}: {:?} cannot authenticate",
                p.dir
            );
        }
        live.remove(0);
    }
    assert_eq!(h.emu.clients().len(), 1);
    let s = h.stats();
    assert_eq!(
        s.iats_minted, iats_at_start,
        "a pod that finds the client adopts it and mints no IAT"
    );
    assert_eq!(
        s.rats_reissued - rats_at_start,
        3,
        "one re-issue per pod that starts alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_pods_that_are_gone_are_retired_by_age_and_by_name() {
    let h = shared_harness();
    // Two "old" pods whose keys were made 10 days ago (keygen's dated kid), one made by hand
    // without a date.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut gone = Vec::new();
    for (i, base) in ["old", "old", "handmade"].iter().enumerate() {
        let pod = Pod::new(&h, &format!("gone{i}"));
        let mut env = pod.env(&h);
        env.insert("BFF_KID".into(), base.to_string());
        let run = h.run_args(&env, &["keygen"]).await;
        run.assert_code(0);
        let printed: Value = serde_json::from_str(&run.stdout).unwrap();
        let kid = printed["kid"].as_str().unwrap();
        assert!(
            kid.starts_with(&format!("{base}-{}", &now.to_string()[..5])),
            "{kid}"
        );
        // The dated ones stand for keys made 10 days ago: the kid's form with an earlier time
        // (its tag stays the key's thumbprint, which is what makes the time count).
        let kid = match *base {
            "old" => format!(
                "old-{}-{}",
                now - 10 * 86_400,
                kid.rsplit('-').next().unwrap()
            ),
            _ => base.to_string(),
        };
        env.insert("BFF_KID".into(), kid);
        h.run(&env).await.assert_code(0);
        gone.push(pod);
    }
    assert_eq!(published(&h).len(), 3, "{:?}", published(&h));
    // A new pod with a 7-day lifetime for others' keys, and the undated one named.
    let pod = Pod::new(&h, "new");
    let mut env = pod.env(&h);
    env.insert("BFF_JWK_RETIRE_AFTER_DAYS".into(), "7".into());
    env.insert("DCR_RETIRE_KIDS".into(), "handmade".into());
    let run = h.run(&env).await;
    run.assert_code(0);
    assert!(run.stderr.contains("retiring key old-"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("retiring key handmade of client bff-server: named in DCR_RETIRE_KIDS"),
        "{}",
        run.stderr
    );
    let kids: Vec<String> = published(&h)
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kids.len(), 1, "{kids:?}");
    assert!(pod.authenticates(&h).await);
    for p in &gone {
        assert!(
            !p.authenticates(&h).await,
            "a retired key no longer authenticates"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_shared_mode_an_adoption_warns_before_replacing_keys() {
    let h = shared_harness();
    let a = Pod::new(&h, "a");
    let b = Pod::new(&h, "b");
    let mut env_a = a.env(&h);
    env_a.remove("DCR_SHARED_CLIENT");
    let mut env_b = b.env(&h);
    env_b.remove("DCR_SHARED_CLIENT");
    h.run(&env_a).await.assert_code(0);
    let run = h.run(&env_b).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("never published") && run.stderr.contains("DCR_SHARED_CLIENT=true"),
        "{}",
        run.stderr
    );
    // What the warning says happened: a's key was replaced.
    assert!(!a.authenticates(&h).await);
    assert!(b.authenticates(&h).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_for_all_replicas_from_keygen_and_its_rotation() {
    let h = shared_harness();
    let secret = h.dir.path().join("secret");
    std::fs::create_dir_all(&secret).unwrap();
    let keygen = |path: PathBuf| {
        let mut env = BTreeMap::new();
        env.insert("DCR_SIGNING_KEY".to_string(), path.display().to_string());
        env.insert("DCR_KEY_ALG".to_string(), "ES256".to_string());
        env.insert("BFF_KID".to_string(), "bff".to_string());
        env
    };
    let v1 = secret.join("v1.pem");
    let run = run_bin(&keygen(v1.clone()), &["keygen"]).await;
    run.assert_code(0);
    assert_eq!(file_mode(&v1), 0o600);
    // Only the public half is printed.
    assert!(!run.stdout.contains("PRIVATE KEY"), "{}", run.stdout);
    let printed: Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(printed["jwk"].get("d").is_none() && printed["jwk"]["x"].is_string());
    let kid1 = serde_json::from_str::<Value>(&run.stdout).unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_string();
    // Never over an existing key.
    let again = run_bin(&keygen(v1.clone()), &["keygen"]).await;
    again.assert_code(2);
    assert!(
        again.stderr.contains("never overwrites"),
        "{}",
        again.stderr
    );
    // Three pods mounting the same Secret.
    let pods: Vec<Pod> = (0..3).map(|i| Pod::new(&h, &format!("pod{i}"))).collect();
    let with_secret = |p: &Pod, pem: &PathBuf, kid: &str| {
        let mut env = p.env(&h);
        env.insert("DCR_SIGNING_KEY".into(), pem.display().to_string());
        env.insert("BFF_KID".into(), kid.to_string());
        env
    };
    let running: Vec<_> = pods
        .iter()
        .map(|p| h.spawn(&with_secret(p, &v1, &kid1)))
        .collect();
    for r in running {
        r.finish().await.assert_code(0);
    }
    assert_eq!(published(&h).len(), 1, "one key for all");
    // Rotation: a new Secret version; pods restart one by one and publish v2 beside v1.
    let v2 = secret.join("v2.pem");
    let run = run_bin(&keygen(v2.clone()), &["keygen"]).await;
    run.assert_code(0);
    let kid2 = serde_json::from_str::<Value>(&run.stdout).unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_string();
    h.run(&with_secret(&pods[0], &v2, &kid2))
        .await
        .assert_code(0);
    assert_eq!(published(&h).len(), 2, "both keys during the overlap");
    // Retire v1 once no pod signs with it.
    for p in &pods[1..] {
        h.run(&with_secret(p, &v2, &kid2)).await.assert_code(0);
    }
    let mut env = with_secret(&pods[0], &v2, &kid2);
    env.insert("DCR_RETIRE_KIDS".into(), kid1.clone());
    h.run(&env).await.assert_code(0);
    let kids: Vec<String> = published(&h)
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kids, [kid2]);
}

/// Finding 4 of the second review: keys at the IdP whose kids are dated in the future, or
/// foreign kids that merely hold ten digits, neither push a live pod's key out over
/// DCR_SHARED_MAX_KEYS nor get it retired as old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn future_dated_or_foreign_kids_never_evict_a_live_pod() {
    let h = shared_harness();
    let live = Pod::new(&h, "live");
    h.run(&live.env(&h)).await.assert_code(0);
    let mut keys = published(&h);
    for i in 0..3 {
        let pod = Pod::new(&h, &format!("evil{i}"));
        let run = h.run_args(&pod.env(&h), &["keygen"]).await;
        run.assert_code(0);
        let printed: Value = serde_json::from_str(&run.stdout).unwrap();
        let tag = printed["kid"].as_str().unwrap().rsplit('-').next().unwrap();
        for kid in [
            format!("evil-999999999{i}-{tag}"),
            format!("foreign-100000000{i}"),
        ] {
            let mut jwk = printed["jwk"].clone();
            if kid.starts_with("foreign") {
                // Another key, so that both kinds are held at once.
                jwk["x"] = Value::String(format!("{}{i}", &jwk["x"].as_str().unwrap()[..10]));
            }
            jwk["kid"] = Value::String(kid);
            keys.push(jwk);
        }
    }
    assert!(
        h.emu
            .set_client_field("bff-server", "jwks", serde_json::json!({ "keys": keys }))
    );
    let pod = Pod::new(&h, "new");
    let mut env = pod.env(&h);
    env.insert("DCR_SHARED_MAX_KEYS".into(), "2".into());
    env.insert("BFF_JWK_RETIRE_AFTER_DAYS".into(), "7".into());
    let run = h.run(&env).await;
    run.assert_code(0);
    assert!(pod.authenticates(&h).await);
    assert!(
        live.authenticates(&h).await,
        "the live pod's key was evicted\n{}",
        run.stderr
    );
    assert!(!run.stderr.contains("older than"), "{}", run.stderr);
}
