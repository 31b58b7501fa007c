//! The keys of a client that several replicas share (`DCR_SHARED_CLIENT`): each replica
//! publishes its own key and keeps the others' that the IdP holds, until they are retired by
//! the age their kid records, by name (`DCR_RETIRE_KIDS`), or by the bound on how many are
//! kept. Pure functions, no I/O: the read-modify-write loop around them is `job::shared`.

use crate::local::keys::thumbprint;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long other replicas' keys are kept.
#[derive(Debug, Clone)]
pub struct SharedPolicy {
    /// A key whose kid records a creation time older than this is retired (`None`: never by
    /// age). Replicas must be replaced within it: a pod older than this loses its key.
    pub lifetime: Option<Duration>,
    /// At most this many keys of other replicas; the oldest go first.
    pub max_others: usize,
    /// `DCR_RETIRE_KIDS`: retired now, whatever their age.
    pub retire_kids: Vec<String>,
}

/// The creation time a kid records: `<name>-<unix seconds>` or
/// `<name>-<unix seconds>-<suffix>`, as this tool's generated and `keygen` kids are
/// ([`crate::local::keyring::dated_kid`]).
pub fn kid_time(kid: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = kid.rsplitn(3, '-').collect();
    // The stamp is one of the last two parts, and a name comes before it.
    let stamp = parts
        .iter()
        .take(parts.len().saturating_sub(1).min(2))
        .find(|p| p.len() == 10 && p.bytes().all(|b| b.is_ascii_digit()))?;
    Some(UNIX_EPOCH + Duration::from_secs(stamp.parse().ok()?))
}

fn kid(k: &Value) -> &str {
    k.get("kid").and_then(Value::as_str).unwrap_or_default()
}

/// Why a key of another replica is no longer published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retired {
    pub kid: String,
    pub why: &'static str,
}

/// What to publish: our keys first, then the other replicas' keys the IdP holds (newest
/// first), without the retired ones.
pub fn merge(
    ours: &[Value],
    held: &[Value],
    now: SystemTime,
    p: &SharedPolicy,
) -> (Vec<Value>, Vec<Retired>) {
    let mine: Vec<String> = ours.iter().map(thumbprint).collect();
    let mut others: Vec<(Option<SystemTime>, &Value)> = Vec::new();
    let mut retired = Vec::new();
    for k in held {
        let tp = thumbprint(k);
        if mine.contains(&tp) || others.iter().any(|(_, o)| thumbprint(o) == tp) {
            continue;
        }
        let created = kid_time(kid(k));
        let too_old = matches!((created, p.lifetime), (Some(c), Some(life))
            if now.duration_since(c).unwrap_or(Duration::ZERO) > life);
        let why = if p.retire_kids.iter().any(|r| r == kid(k)) {
            Some("named in DCR_RETIRE_KIDS")
        } else if too_old {
            Some("older than BFF_JWK_RETIRE_AFTER_DAYS (by its kid)")
        } else {
            None
        };
        match why {
            Some(why) => retired.push(Retired {
                kid: kid(k).to_string(),
                why,
            }),
            None => others.push((created, k)),
        }
    }
    // Newest first; keys that record no time are the first to go over the bound.
    others.sort_by_key(|(c, _)| std::cmp::Reverse(c.unwrap_or(UNIX_EPOCH)));
    for (_, k) in others.split_off(p.max_others.min(others.len())) {
        retired.push(Retired {
            kid: kid(k).to_string(),
            why: "over DCR_SHARED_MAX_KEYS",
        });
    }
    // Our earlier keys (a rotated-out shared key) retire by name too; the current never.
    let mut publish: Vec<Value> = Vec::new();
    for (i, k) in ours.iter().enumerate() {
        if i > 0 && p.retire_kids.iter().any(|r| r == kid(k)) {
            retired.push(Retired {
                kid: kid(k).to_string(),
                why: "named in DCR_RETIRE_KIDS",
            });
        } else {
            publish.push(k.clone());
        }
    }
    publish.extend(others.into_iter().map(|(_, k)| k.clone()));
    (publish, retired)
}

/// Our keys that must be held: all but earlier ones named in `DCR_RETIRE_KIDS`.
pub fn required(ours: &[Value], p: &SharedPolicy) -> Vec<Value> {
    ours.iter()
        .enumerate()
        .filter(|(i, k)| *i == 0 || !p.retire_kids.iter().any(|r| r == kid(k)))
        .map(|(_, k)| k.clone())
        .collect()
}

/// Whether the IdP holds every one of `wanted` (by thumbprint and kid).
pub fn holds_all(held: &[Value], wanted: &[Value]) -> bool {
    let have: Vec<(String, &str)> = held.iter().map(|k| (thumbprint(k), kid(k))).collect();
    wanted
        .iter()
        .all(|w| have.contains(&(thumbprint(w), kid(w))))
}

/// Whether two key lists hold the same keys, in any order.
pub fn same_keys(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len() && holds_all(a, b) && holds_all(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(kid: &str, x: &str) -> Value {
        json!({"kty": "EC", "crv": "P-256", "x": x, "y": "y", "kid": kid, "use": "sig"})
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn policy() -> SharedPolicy {
        SharedPolicy {
            lifetime: Some(Duration::from_secs(10 * 86_400)),
            max_others: 3,
            retire_kids: Vec::new(),
        }
    }

    #[test]
    fn kid_times() {
        assert_eq!(kid_time("bff-1700000000"), Some(at(1_700_000_000)));
        assert_eq!(kid_time("bff-1700000000-AbC12345"), Some(at(1_700_000_000)));
        assert_eq!(kid_time("bff-sig-001"), None);
        assert_eq!(kid_time("1700000000"), None);
        let k = crate::local::keyring::dated_kid("bff", at(1_700_000_000), "a-b_cdefghijk");
        assert_eq!(k, "bff-1700000000-abcdefgh");
        assert_eq!(kid_time(&k), Some(at(1_700_000_000)));
    }

    #[test]
    fn others_are_kept_until_retired_by_age_name_or_bound() {
        let now = at(2_000_000_000);
        let day = 86_400;
        let ours = vec![key("me-2000000000-aaaaaaaa", "me")];
        let held = vec![
            key("old-1000000000-bbbbbbbb", "old"), // far past lifetime
            key(&format!("live-{}-cccccccc", 2_000_000_000 - day), "live"), // a day old
            key("undated", "undated"),
            key("gone", "gone"),
            ours[0].clone(),
        ];
        let mut p = policy();
        p.retire_kids = vec!["gone".into()];
        let (publish, retired) = merge(&ours, &held, now, &p);
        let kids: Vec<&str> = publish.iter().map(kid).collect();
        assert_eq!(
            kids,
            [
                "me-2000000000-aaaaaaaa",
                "live-1999913600-cccccccc",
                "undated"
            ]
        );
        assert_eq!(retired.len(), 2);
        assert!(holds_all(&publish, &ours));
        // The bound drops keys without a time first, then the oldest.
        p.max_others = 1;
        let (publish, retired) = merge(&ours, &held, now, &p);
        assert_eq!(publish.len(), 2);
        assert!(
            retired
                .iter()
                .any(|r| r.kid == "undated" && r.why.contains("MAX"))
        );
        // Never by age without a lifetime.
        p.lifetime = None;
        p.max_others = 10;
        p.retire_kids.clear();
        assert_eq!(merge(&ours, &held, now, &p).0.len(), 5);
    }

    #[test]
    fn set_comparison_ignores_order_but_not_kids() {
        let a = vec![key("a", "1"), key("b", "2")];
        let b = vec![key("b", "2"), key("a", "1")];
        assert!(same_keys(&a, &b));
        assert!(!same_keys(&a, &[key("a", "1"), key("c", "2")]));
        assert!(!same_keys(&a, &a[..1]));
    }
}
