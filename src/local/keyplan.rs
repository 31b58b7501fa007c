//! Which signing keys to publish, as pure steps over the keys in memory: repair (a pending
//! key the IdP already holds becomes current), rotate (a new key when the current one is old
//! or of the wrong type), retire (by age, or because the IdP dropped it), cap (at most
//! `max_keys`). No I/O: `keyring.rs` loads the keys, writes a generated one before it can be
//! published, and makes the files match the plan once the IdP holds it.

use super::keys::{KeyAlg, KeyMaterial};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

const DAY: u64 = 86_400;

#[derive(Debug, Clone)]
pub struct KeyPolicy {
    /// `DCR_KEY_ALG`; `None`: a new key is RS256, and an existing key keeps its type.
    pub alg: Option<KeyAlg>,
    pub rsa_bits: u32,
    /// Rotate when the current key is this many days old; 0 rotates on every run; < 0 never.
    pub rotate_after_days: i64,
    /// Stop publishing earlier keys this many days old; <= 0 keeps them (subject to the cap).
    pub retire_after_days: i64,
    /// Publish at most this many keys; <= 0 means no cap.
    pub max_keys: i64,
    /// `BFF_KID`: the kid of the first key; later keys get `<BFF_KID>-<unix time>`.
    pub kid: Option<String>,
    /// Replicas share the client: every generated key's kid records when it was made and is
    /// unique among replicas (`<BFF_KID or "key">-<unix time>-<thumbprint prefix>`).
    pub dated_kids: bool,
    /// Mode of the key files this ring writes (`DCR_KEY_MODE`).
    pub file_mode: u32,
}

impl KeyPolicy {
    /// The policy as `check` prints it.
    pub fn describe(&self) -> Value {
        serde_json::json!({
            "alg": self.alg.map_or("RS256, or the existing key's own type", KeyAlg::name),
            "rsa_bits": self.rsa_bits,
            "rotate_after_days": self.rotate_after_days,
            "retire_after_days": self.retire_after_days,
            "max_keys": self.max_keys,
            "kid": self.kid,
        })
    }

    /// The algorithm of a new key: `DCR_KEY_ALG`, else the current key's own (a user's EC
    /// key is rotated to another EC key, never silently to RSA), else RS256.
    pub fn new_alg(&self, current: Option<&KeyMaterial>) -> KeyAlg {
        self.alg
            .unwrap_or_else(|| current.map_or(KeyAlg::Rs256, KeyMaterial::natural_alg))
    }
}

/// What the output records about each published key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyRecord {
    pub kid: String,
    pub alg: KeyAlg,
    pub thumbprint: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// The JWK as published (public members, kid, use, alg).
    pub jwk: Value,
    /// Where its private key is kept, if we hold it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pem: Option<PathBuf>,
}

/// A key in memory: its record, when it was made, and its private half if we hold it.
#[derive(Debug, Clone)]
pub struct Key {
    pub record: KeyRecord,
    pub created: SystemTime,
    pub material: Option<KeyMaterial>,
}

impl Key {
    fn age_days(&self, now: SystemTime) -> u64 {
        now.duration_since(self.created)
            .unwrap_or(Duration::ZERO)
            .as_secs()
            / DAY
    }

    fn same(&self, other: &Key) -> bool {
        self.record.thumbprint == other.record.thumbprint
    }
}

/// The keys as loaded: the current one, a pending one (written before it was published),
/// and earlier ones still published.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    pub current: Option<Key>,
    pub pending: Option<Key>,
    pub previous: Vec<Key>,
}

/// The keys the IdP holds, by thumbprint, as it holds them (its JWK, with the kid).
pub type Held = HashMap<String, Value>;

fn held_kid(jwk: &Value) -> &str {
    jwk.get("kid").and_then(Value::as_str).unwrap_or_default()
}

/// Keys as a plan is being made. Planning works on a copy, so that planning twice (a
/// registration that turns into an adoption) gives the same keys.
#[derive(Debug, Clone)]
pub struct Draft {
    pub current: Option<Key>,
    pub pending: Option<Key>,
    previous: Vec<Key>,
    /// Becomes current once the IdP holds it.
    pub promote: Option<Key>,
    /// The key that was current, kept as an earlier one.
    pub demote: Option<Key>,
    pub repaired: bool,
    pub rotated: bool,
}

/// What to publish now, and the file changes to make once the IdP holds it.
#[derive(Debug)]
pub struct Plan {
    /// Newest first.
    pub publish: Vec<KeyRecord>,
    /// A new key is in `publish`: the pending file becomes current after acceptance.
    pub rotated: bool,
    /// A pending key the IdP already held (a run died after publishing it) was promoted.
    pub repaired: bool,
    pub promote: Option<Key>,
    pub demote: Option<Key>,
    pub retire: Vec<KeyRecord>,
}

impl Plan {
    pub fn jwks(&self) -> Value {
        serde_json::json!({ "keys": self.publish.iter().map(|r| r.jwk.clone()).collect::<Vec<_>>() })
    }
}

/// A kid the IdP hands back is adopted only if it is a plain, short label: it goes into file
/// names, logs and the dotenv view.
pub fn is_safe_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 200
        && kid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._~+=:@%,-".contains(c))
}

fn held_by(idp: Option<&Held>, k: &Key) -> bool {
    idp.is_some_and(|m| m.contains_key(&k.record.thumbprint))
}

impl Draft {
    pub fn new(set: &KeySet) -> Draft {
        Draft {
            current: set.current.clone(),
            pending: set.pending.clone(),
            previous: set.previous.clone(),
            promote: None,
            demote: None,
            repaired: false,
            rotated: false,
        }
    }

    /// Repair: a pending key the IdP already holds was accepted by a run that died before
    /// promoting it. It becomes current, under the kid the IdP published it with.
    pub fn repair(&mut self, idp: Option<&Held>) {
        if !self.pending.as_ref().is_some_and(|p| held_by(idp, p)) {
            return;
        }
        let Some(mut p) = self.pending.take() else {
            return;
        };
        if let Some(kid) = idp
            .and_then(|m| m.get(&p.record.thumbprint))
            .map(held_kid)
            .filter(|k| is_safe_kid(k))
            .map(str::to_string)
        {
            p.record.kid = kid.clone();
            p.record.jwk["kid"] = Value::String(kid.clone());
        }
        self.demote = self.current.replace(p.clone());
        self.promote = Some(p);
        self.repaired = true;
    }

    /// Whether a new key is due: none yet, or the current one is too old or of the wrong
    /// type (not right after a repair: the repaired key is the new one).
    pub fn needs_new_key(&self, p: &KeyPolicy, now: SystemTime) -> bool {
        let Some(c) = &self.current else { return true };
        let too_old = p.rotate_after_days >= 0 && c.age_days(now) >= p.rotate_after_days as u64;
        let wrong_alg = c
            .material
            .as_ref()
            .is_some_and(|m| p.alg.is_some_and(|a| !m.fits(a)));
        (too_old || wrong_alg) && !self.repaired
    }

    /// A pending key that was never published and can sign with `alg`: used rather than
    /// making another, as if made now.
    pub fn take_reusable_pending(&mut self, alg: KeyAlg, now: SystemTime) -> Option<Key> {
        let mut k = self
            .pending
            .take()
            .filter(|k| k.material.as_ref().is_some_and(|m| m.fits(alg)))?;
        k.created = now;
        k.record.created_at = humantime::format_rfc3339_seconds(now).to_string();
        Some(k)
    }

    /// Rotate: `new` becomes the key to promote; the current one is demoted.
    pub fn rotate(&mut self, new: Key) {
        self.rotated = self.current.is_some();
        self.demote = self.current.take().or(self.demote.take());
        self.current = Some(new.clone());
        self.promote = Some(new);
    }

    /// Earlier keys, newest first: the demoted one and the rest, without those retired by
    /// age or dropped at the IdP (a key the IdP no longer holds is not re-added).
    fn retire(
        &self,
        p: &KeyPolicy,
        now: SystemTime,
        idp: Option<&Held>,
    ) -> (Vec<Key>, Vec<KeyRecord>) {
        let mut earlier: Vec<Key> = self
            .demote
            .iter()
            .cloned()
            .chain(self.previous.iter().cloned())
            .collect();
        earlier.sort_by_key(|k| std::cmp::Reverse(k.created));
        let demoted = |k: &Key| self.demote.as_ref().is_some_and(|d| d.same(k));
        let (mut kept, mut retired) = (Vec::new(), Vec::new());
        for k in earlier {
            let by_age = p.retire_after_days > 0 && k.age_days(now) >= p.retire_after_days as u64;
            let dropped_at_idp = idp.is_some() && !held_by(idp, &k) && !demoted(&k);
            // A record whose private half we do not hold says only what someone wrote: it is
            // published again only where the IdP holds exactly that key already.
            let unbacked = k.material.is_none() && !held_by(idp, &k);
            if by_age || dropped_at_idp || unbacked {
                retired.push(k.record);
            } else {
                kept.push(k);
            }
        }
        (kept, retired)
    }

    /// Cap: at most `max_keys`, never removing the key a running app signs with during a
    /// rotation.
    fn cap(&self, p: &KeyPolicy, publish: &mut Vec<Key>) -> Vec<KeyRecord> {
        if p.max_keys <= 0 {
            return Vec::new();
        }
        let floor = if self.promote.is_some() && self.demote.is_some() {
            2
        } else {
            1
        };
        let keep = (p.max_keys as usize).max(floor).min(publish.len());
        publish
            .split_off(keep)
            .into_iter()
            .map(|k| k.record)
            .collect()
    }

    /// The plan: what to publish (records as they will be after commit: the current key at
    /// `current_path`, a kept demoted key at `previous_path`), and what to retire.
    pub fn finish(
        self,
        p: &KeyPolicy,
        now: SystemTime,
        idp: Option<&Held>,
        current_path: &std::path::Path,
        previous_path: impl Fn(&str) -> PathBuf,
    ) -> Plan {
        let (kept, mut retire) = self.retire(p, now, idp);
        let mut publish: Vec<Key> = self.current.clone().into_iter().chain(kept).collect();
        retire.extend(self.cap(p, &mut publish));
        let demote = self.demote.filter(|d| publish.iter().any(|k| k.same(d)));
        let records = publish
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let mut r = k.record.clone();
                if k.material.is_none()
                    && let Some(held) = idp.and_then(|m| m.get(&r.thumbprint))
                {
                    // Without the private half, the key is republished as the IdP holds it,
                    // never as the record describes it.
                    r.jwk = held.clone();
                }
                if i == 0 {
                    r.pem = Some(current_path.to_path_buf());
                } else if demote.as_ref().is_some_and(|d| d.same(k)) {
                    r.pem = Some(previous_path(&r.kid));
                }
                r
            })
            .collect();
        Plan {
            publish: records,
            rotated: self.rotated,
            repaired: self.repaired,
            promote: self.promote,
            demote,
            retire,
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::local::keys;

    pub fn policy(rotate: i64, retire: i64, max: i64) -> KeyPolicy {
        KeyPolicy {
            alg: Some(KeyAlg::Es256),
            rsa_bits: 2048,
            rotate_after_days: rotate,
            retire_after_days: retire,
            max_keys: max,
            kid: None,
            dated_kids: false,
            file_mode: 0o600,
        }
    }

    pub fn day(n: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + n * DAY)
    }

    fn key(kid: &str, created: SystemTime) -> Key {
        let m = keys::generate(KeyAlg::Es256, 2048).unwrap();
        Key {
            record: KeyRecord {
                jwk: m.labelled_jwk(kid, KeyAlg::Es256),
                kid: kid.into(),
                alg: KeyAlg::Es256,
                thumbprint: m.thumbprint.clone(),
                created_at: humantime::format_rfc3339_seconds(created).to_string(),
                pem: None,
            },
            created,
            material: Some(m),
        }
    }

    fn held(keys: &[&Key]) -> Held {
        keys.iter()
            .map(|k| (k.record.thumbprint.clone(), k.record.jwk.clone()))
            .collect()
    }

    fn finish(d: Draft, p: &KeyPolicy, now: SystemTime, idp: Option<&Held>) -> Plan {
        d.finish(p, now, idp, std::path::Path::new("/k/bff.pem"), |kid| {
            PathBuf::from(format!("/k/bff.{kid}.pem"))
        })
    }

    fn kids(plan: &Plan) -> Vec<&str> {
        plan.publish.iter().map(|r| r.kid.as_str()).collect()
    }

    #[test]
    fn rotation_is_due_at_the_age_and_never_right_after_a_repair() {
        let set = KeySet {
            current: Some(key("a", day(0))),
            ..KeySet::default()
        };
        let p = policy(30, 60, 3);
        assert!(!Draft::new(&set).needs_new_key(&p, day(29)));
        assert!(Draft::new(&set).needs_new_key(&p, day(30)));
        assert!(!Draft::new(&set).needs_new_key(&policy(-1, 0, 3), day(400)));
        assert!(Draft::new(&set).needs_new_key(&policy(0, 0, 3), day(0)));
        assert!(Draft::new(&KeySet::default()).needs_new_key(&p, day(0)));
        let pending = key("b", day(30));
        let set = KeySet {
            pending: Some(pending.clone()),
            ..set
        };
        let mut d = Draft::new(&set);
        d.repair(Some(&held(&[&pending])));
        assert!(d.repaired && !d.needs_new_key(&p, day(30)));
        assert_eq!(d.current.as_ref().map(|k| k.record.kid.as_str()), Some("b"));
    }

    #[test]
    fn retires_by_age_and_keeps_what_is_younger() {
        let (a, b, c) = (key("a", day(0)), key("b", day(10)), key("c", day(20)));
        let set = KeySet {
            current: Some(c.clone()),
            pending: None,
            previous: vec![a.clone(), b.clone()],
        };
        let p = policy(30, 25, 0);
        // Day 24: none is 25 days old.
        let plan = finish(Draft::new(&set), &p, day(24), None);
        assert_eq!(kids(&plan), ["c", "b", "a"]);
        assert!(plan.retire.is_empty());
        // Day 30: the day-0 key is 30 days old and retired, b (20 days) stays.
        let plan = finish(Draft::new(&set), &p, day(30), None);
        assert_eq!(kids(&plan), ["c", "b"]);
        assert_eq!(
            plan.retire
                .iter()
                .map(|r| r.kid.as_str())
                .collect::<Vec<_>>(),
            ["a"]
        );
    }

    #[test]
    fn the_cap_drops_the_oldest_but_never_the_demoted_key_in_a_rotation() {
        let (a, b, c) = (key("a", day(0)), key("b", day(10)), key("c", day(20)));
        let set = KeySet {
            current: Some(c.clone()),
            pending: None,
            previous: vec![a.clone(), b.clone()],
        };
        let plan = finish(Draft::new(&set), &policy(30, 0, 2), day(21), None);
        assert_eq!(kids(&plan), ["c", "b"]);
        assert_eq!(plan.retire.len(), 1);
        // A rotation with a cap of 1 still keeps the key the app signs with now.
        let mut d = Draft::new(&set);
        d.rotate(key("d", day(50)));
        let plan = finish(d, &policy(30, 0, 1), day(50), None);
        assert_eq!(kids(&plan), ["d", "c"]);
        assert!(plan.rotated);
        assert_eq!(plan.publish[1].pem, Some(PathBuf::from("/k/bff.c.pem")));
    }

    #[test]
    fn keys_the_idp_dropped_are_not_re_added_but_the_demoted_one_is_kept() {
        let (a, b) = (key("a", day(0)), key("b", day(10)));
        let set = KeySet {
            current: Some(b.clone()),
            pending: None,
            previous: vec![a.clone()],
        };
        let idp = held(&[&b]);
        let plan = finish(Draft::new(&set), &policy(30, 0, 0), day(11), Some(&idp));
        assert_eq!(kids(&plan), ["b"]);
        assert_eq!(plan.retire[0].kid, "a");
        // Rotating: the demoted key is published beside the new one although the IdP holds
        // it only as its current key.
        let mut d = Draft::new(&set);
        d.rotate(key("c", day(40)));
        let plan = finish(d, &policy(30, 0, 0), day(40), Some(&idp));
        assert_eq!(kids(&plan), ["c", "b"]);
    }

    #[test]
    fn a_reusable_pending_key_must_fit_the_algorithm() {
        let set = KeySet {
            pending: Some(key("p", day(0))),
            ..KeySet::default()
        };
        let mut d = Draft::new(&set);
        assert!(d.take_reusable_pending(KeyAlg::Rs256, day(1)).is_none());
        let mut d2 = Draft::new(&set);
        let k = d2.take_reusable_pending(KeyAlg::Es256, day(1)).unwrap();
        assert_eq!(k.created, day(1));
        assert!(d.pending.is_none() && d2.pending.is_none());
    }
}
