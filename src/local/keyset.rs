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

/// A kid that records `created`, unique among replicas that share a `base`:
/// `<base>-<unix seconds>-<first 8 letters and digits of the key's RFC 7638 thumbprint>`.
pub fn dated_kid(base: &str, created: SystemTime, thumbprint: &str) -> String {
    let secs = created
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{base}-{secs}-{}", kid_tag(thumbprint))
}

fn kid_tag(thumbprint: &str) -> String {
    thumbprint
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect()
}

/// When a key of another replica was made, as far as its kid shows it: only a kid in
/// [`dated_kid`]'s form whose tag is the key's own thumbprint counts (a foreign kid that
/// happens to hold ten digits is not a date), and a time after `now` is no date at all (a
/// future-dated kid would otherwise outrank every live key). `None`: the age is unknown, and
/// such a key is never retired by age, and is the first to go over the bound.
pub fn key_time(k: &Value, now: SystemTime) -> Option<SystemTime> {
    let mut parts = kid(k).rsplitn(3, '-');
    let (tag, stamp, name) = (parts.next()?, parts.next()?, parts.next()?);
    if name.is_empty() || stamp.len() != 10 || !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if tag.is_empty() || tag != kid_tag(&thumbprint(k)) {
        return None;
    }
    let t = UNIX_EPOCH + Duration::from_secs(stamp.parse().ok()?);
    (t <= now).then_some(t)
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
        let created = key_time(k, now);
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

    /// A key of another replica whose kid records `secs` in our form.
    fn dated(name: &str, secs: u64, x: &str) -> Value {
        let mut k = key("", x);
        k["kid"] = json!(dated_kid(name, at(secs), &thumbprint(&k)));
        k
    }

    #[test]
    fn only_a_kid_in_our_form_for_its_own_key_and_not_in_the_future_is_a_date() {
        let now = at(2_000_000_000);
        assert_eq!(
            dated_kid("bff", at(1_700_000_000), "a-b_cdefghijk"),
            "bff-1700000000-abcdefgh"
        );
        let k = dated("bff", 1_700_000_000, "x1");
        assert_eq!(key_time(&k, now), Some(at(1_700_000_000)));
        // The same kid on another key: its tag is not that key's thumbprint.
        let mut other = key("", "x2");
        other["kid"] = k["kid"].clone();
        assert_eq!(key_time(&other, now), None);
        // Foreign kids that hold ten digits, and a future date.
        for kid in [
            "bff-1700000000",
            "1700000000",
            "bff-sig-001",
            "a-1700000000-",
        ] {
            assert_eq!(key_time(&key(kid, "x1"), now), None, "{kid}");
        }
        assert_eq!(key_time(&dated("bff", 9_999_999_999, "x1"), now), None);
        assert_eq!(key_time(&dated("bff", 2_000_000_000, "x1"), now), Some(now));
    }

    #[test]
    fn others_are_kept_until_retired_by_age_name_or_bound() {
        let now = at(2_000_000_000);
        let day = 86_400;
        let ours = vec![dated("me", 2_000_000_000, "me")];
        let old = dated("old", 1_000_000_000, "old"); // far past lifetime
        let live = dated("live", 2_000_000_000 - day, "live"); // a day old
        let held = vec![
            old.clone(),
            live.clone(),
            key("undated", "undated"),
            key("gone", "gone"),
            ours[0].clone(),
        ];
        let mut p = policy();
        p.retire_kids = vec!["gone".into()];
        let (publish, retired) = merge(&ours, &held, now, &p);
        let kids: Vec<&str> = publish.iter().map(kid).collect();
        assert_eq!(kids, [kid(&ours[0]), kid(&live), "undated"]);
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

    /// Finding 4: future-dated kids, or foreign kids with ten digits, neither evict live
    /// replicas' keys over the bound nor get those keys retired as old.
    #[test]
    fn future_or_foreign_dates_never_evict_a_live_key() {
        let now = at(2_000_000_000);
        let ours = vec![dated("me", 2_000_000_000, "me")];
        let live = dated("live", 2_000_000_000 - 3_600, "live");
        let mut held = vec![ours[0].clone(), live.clone()];
        for i in 0..5 {
            held.push(dated("evil", 9_999_999_990 + i, &format!("f{i}")));
            held.push(key(&format!("foreign-100000000{i}"), &format!("g{i}")));
        }
        let p = SharedPolicy {
            max_others: 2,
            ..policy()
        };
        let (publish, retired) = merge(&ours, &held, now, &p);
        assert!(
            holds_all(&publish, std::slice::from_ref(&live)),
            "{retired:?}"
        );
        assert!(
            retired
                .iter()
                .all(|r| r.why.contains("MAX") && r.kid != kid(&live))
        );
        // A foreign kid holding an old-looking number is not retired as old.
        assert!(!retired.iter().any(|r| r.why.contains("older")));
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
