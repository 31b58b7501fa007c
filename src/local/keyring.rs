//! The signing keys a client publishes, and their rotation.
//!
//! Files, all beside `DCR_SIGNING_KEY` and mode 0600:
//! * `DCR_SIGNING_KEY` — the current key, the one the BFF signs with.
//! * `DCR_SIGNING_KEY.next` — a new key, written *before* it is published. It becomes current
//!   (an atomic rename) only once the IdP holds it. A crash at any point leaves either the old
//!   key current and still published, or a `.next` the IdP already holds, which the next run
//!   promotes. The private half of a published key is never lost.
//! * `<stem>.<kid>.pem` — earlier keys, kept until they are retired.
//!
//! Ages come from the creation times recorded in the output (`dcr_bootstrap.signing_keys`); a
//! file's mtime is only a fallback for a key that has no record yet. Keys are identified by
//! their RFC 7638 thumbprint, so a relabelled `kid` never confuses two keys. All decisions take
//! `now` as an argument, so tests can cross day boundaries without waiting.

use super::keys::{self, KeyAlg, KeyMaterial};
use super::store;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const DAY: u64 = 86_400;

/// A kid that records `created`, unique among replicas that share a `base`.
pub fn dated_kid(base: &str, created: SystemTime, thumbprint: &str) -> String {
    let secs = created
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let tag: String = thumbprint
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    format!("{base}-{secs}-{tag}")
}

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
    /// unique among replicas (`<BFF_KID or "key">-<unix time>-<thumbprint prefix>`), so that
    /// any replica can retire it by age.
    pub dated_kids: bool,
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
}

/// What the output records about each published key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyRecord {
    pub kid: String,
    pub alg: String,
    pub thumbprint: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// The JWK as published (public members, kid, use, alg).
    pub jwk: Value,
    /// Where its private key is kept, if we hold it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pem: Option<PathBuf>,
}

#[derive(Debug, Clone)]
struct Key {
    record: KeyRecord,
    created: SystemTime,
    material: Option<KeyMaterial>,
}

impl Key {
    fn age_days(&self, now: SystemTime) -> u64 {
        now.duration_since(self.created)
            .unwrap_or(Duration::ZERO)
            .as_secs()
            / DAY
    }
}

pub struct KeyRing {
    current_path: PathBuf,
    pending_path: PathBuf,
    policy: KeyPolicy,
    owner: Option<(u32, u32)>,
    current: Option<Key>,
    pending: Option<Key>,
    previous: Vec<Key>,
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
    promote: Option<Key>,
    demote: Option<Key>,
    retire: Vec<KeyRecord>,
}

impl Plan {
    pub fn jwks(&self) -> Value {
        Value::Object(
            [(
                "keys".to_string(),
                Value::Array(self.publish.iter().map(|r| r.jwk.clone()).collect()),
            )]
            .into_iter()
            .collect(),
        )
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Path of an earlier key's PEM: `<dir>/<stem>.<kid>.pem`, kid made filename-safe.
fn previous_path(current: &Path, kid: &str) -> PathBuf {
    let stem = current
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "key".into());
    let safe: String = kid
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    current.with_file_name(format!("{stem}.{safe}.pem"))
}

/// Whether `path` is a file this ring may have written for an earlier key: beside the current
/// key, named `<stem>.<kid>.pem`. The records in the output say where earlier keys are, but
/// anyone who can write the output could name any file there; only our own names are read
/// or deleted.
fn is_previous_key_file(current: &Path, path: &Path) -> bool {
    let stem = current
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "key".into());
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.parent() == current.parent()
        && path != current
        && name.len() > stem.len() + 5
        && name.starts_with(&format!("{stem}."))
        && name.ends_with(".pem")
        && name[stem.len() + 1..name.len() - 4]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
}

/// A kid the IdP hands back is adopted only if it is a plain, short label: it goes into file
/// names, logs and the dotenv view.
fn is_safe_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 200
        && kid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._~+=:@%,-".contains(c))
}

pub fn pending_path(current: &Path) -> PathBuf {
    let mut p = current.as_os_str().to_owned();
    p.push(".next");
    PathBuf::from(p)
}

impl KeyRing {
    /// Loads the current and pending keys from disk and earlier keys from `records`.
    pub fn load(
        current_path: &Path,
        policy: KeyPolicy,
        records: &[KeyRecord],
        owner: Option<(u32, u32)>,
        now: SystemTime,
    ) -> Result<KeyRing> {
        let by_tp: HashMap<&str, &KeyRecord> =
            records.iter().map(|r| (r.thumbprint.as_str(), r)).collect();
        let pending_path = pending_path(current_path);
        let mut ring = KeyRing {
            current_path: current_path.to_path_buf(),
            pending_path: pending_path.clone(),
            policy,
            owner,
            current: None,
            pending: None,
            previous: Vec::new(),
        };
        if let Some(m) = keys::load(current_path, owner)? {
            let kid = ring
                .policy
                .kid
                .clone()
                .unwrap_or_else(|| m.thumbprint.clone());
            let created = mtime(current_path).unwrap_or(now);
            ring.current = Some(ring.known_or_new(m, &by_tp, kid, created, current_path));
        }
        match keys::load(&pending_path, owner) {
            Ok(Some(m)) => {
                let created = mtime(&pending_path).unwrap_or(now);
                let kid = ring.new_kid(&m, created);
                let pending = ring.known_or_new(m, &by_tp, kid, created, &pending_path);
                // A pending file identical to the current key is a finished promotion.
                if ring.current.as_ref().map(|c| &c.record.thumbprint)
                    == Some(&pending.record.thumbprint)
                {
                    let _ = std::fs::remove_file(&pending_path);
                } else {
                    ring.pending = Some(pending);
                }
            }
            Ok(None) => {}
            Err(e) => {
                // A torn pending file was never published (it is written before publishing):
                // discard it.
                tracing::warn!("discarding an unusable pending key: {e}");
                let _ = std::fs::remove_file(&pending_path);
            }
        }
        let taken: Vec<String> = [&ring.current, &ring.pending]
            .iter()
            .filter_map(|k| k.as_ref().map(|k| k.record.thumbprint.clone()))
            .collect();
        for r in records.iter().filter(|r| !taken.contains(&r.thumbprint)) {
            let created = humantime::parse_rfc3339(&r.created_at).unwrap_or(now);
            let pem = r.pem.as_ref().filter(|p| {
                let ours = is_previous_key_file(current_path, p);
                if !ours {
                    tracing::warn!(
                        "the output records key {} at {}, which is not a key file of DCR_SIGNING_KEY's; ignoring that path",
                        r.kid.escape_debug(),
                        p.display()
                    );
                }
                ours
            });
            let material = match pem {
                Some(p) => keys::load(p, owner)
                    .ok()
                    .flatten()
                    .filter(|m| m.thumbprint == r.thumbprint),
                None => None,
            };
            ring.previous.push(Key {
                record: KeyRecord {
                    pem: material.as_ref().and(r.pem.clone()),
                    ..r.clone()
                },
                created,
                material,
            });
        }
        Ok(ring)
    }

    fn known_or_new(
        &self,
        m: KeyMaterial,
        by_tp: &HashMap<&str, &KeyRecord>,
        kid: String,
        created: SystemTime,
        path: &Path,
    ) -> Key {
        match by_tp.get(m.thumbprint.as_str()) {
            Some(r) => Key {
                created: humantime::parse_rfc3339(&r.created_at).unwrap_or(created),
                record: KeyRecord {
                    pem: Some(path.to_path_buf()),
                    ..(*r).clone()
                },
                material: Some(m),
            },
            None => {
                let alg = match self.policy.alg {
                    Some(a) if m.fits(a) => a,
                    _ => m.natural_alg(),
                };
                Key {
                    record: KeyRecord {
                        jwk: m.labelled_jwk(&kid, alg.name()),
                        kid,
                        alg: alg.name().into(),
                        thumbprint: m.thumbprint.clone(),
                        created_at: rfc3339(created),
                        pem: Some(path.to_path_buf()),
                    },
                    created,
                    material: Some(m),
                }
            }
        }
    }

    /// The kid of a key that is not the first: BFF_KID with a timestamp, or the thumbprint.
    fn new_kid(&self, m: &KeyMaterial, created: SystemTime) -> String {
        if self.policy.dated_kids {
            let base = self.policy.kid.as_deref().unwrap_or("key");
            return dated_kid(base, created, &m.thumbprint);
        }
        match (&self.policy.kid, &self.current) {
            (Some(k), Some(_)) => format!(
                "{k}-{}",
                created
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            ),
            (Some(k), None) => k.clone(),
            (None, _) => m.thumbprint.clone(),
        }
    }

    /// Decides what to publish. `idp_keys` are the keys the IdP holds now (None when unknown:
    /// a first registration, or `jwks_uri` mode). May generate a key and write it to the
    /// pending file before returning, so it exists on disk before anyone can publish it.
    pub fn plan(&mut self, now: SystemTime, idp_keys: Option<&[Value]>) -> Result<Plan> {
        let idp: Option<HashMap<String, String>> = idp_keys.map(|ks| {
            ks.iter()
                .map(|k| {
                    (
                        keys::thumbprint(k),
                        k.get("kid")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    )
                })
                .collect()
        });
        let held = |k: &Key| {
            idp.as_ref()
                .is_some_and(|m| m.contains_key(&k.record.thumbprint))
        };
        // Work on copies: planning twice (a registration that turns into an adoption) must
        // give the same keys. Only a generated key is kept, as the pending one it now is.
        let mut current = self.current.clone();
        let mut pending = self.pending.clone();

        // Repair: a pending key the IdP already holds was accepted by a run that died before
        // promoting it. It becomes current, under the kid the IdP published it with.
        let mut promote = None;
        let mut demote = None;
        let repaired = pending.as_ref().is_some_and(held);
        if repaired && let Some(mut p) = pending.take() {
            if let Some(kid) = idp
                .as_ref()
                .and_then(|m| m.get(&p.record.thumbprint))
                .filter(|k| is_safe_kid(k))
            {
                p.record.kid = kid.clone();
                p.record.jwk["kid"] = Value::String(kid.clone());
            }
            demote = current.replace(p.clone());
            promote = Some(p);
        }

        let p = &self.policy;
        // The algorithm of a new key: DCR_KEY_ALG, else the current key's own (a user's EC
        // key is rotated to another EC key, never silently to RSA), else RS256.
        let new_alg = p.alg.unwrap_or_else(|| {
            current
                .as_ref()
                .and_then(|c| c.material.as_ref())
                .map_or(KeyAlg::Rs256, KeyMaterial::natural_alg)
        });
        let needs_new = match &current {
            None => true,
            Some(c) => {
                let too_old =
                    p.rotate_after_days >= 0 && c.age_days(now) >= p.rotate_after_days as u64;
                let wrong_alg = c
                    .material
                    .as_ref()
                    .is_some_and(|m| p.alg.is_some_and(|a| !m.fits(a)));
                (too_old || wrong_alg) && !repaired
            }
        };
        let mut rotated = false;
        if needs_new {
            let reusable = pending
                .take()
                .filter(|k| k.material.as_ref().is_some_and(|m| m.fits(new_alg)));
            let new = match reusable {
                // A pending key that was never published: use it rather than make another.
                Some(mut k) => {
                    k.created = now;
                    k.record.created_at = rfc3339(now);
                    k
                }
                None => {
                    let m = keys::generate(new_alg, p.rsa_bits)?;
                    let kid = self.new_kid(&m, now);
                    store::write_atomic(
                        &self.pending_path,
                        keys::pem_bytes(&m),
                        0o600,
                        self.owner,
                    )?;
                    let k = Key {
                        record: KeyRecord {
                            jwk: m.labelled_jwk(&kid, new_alg.name()),
                            kid,
                            alg: new_alg.name().into(),
                            thumbprint: m.thumbprint.clone(),
                            created_at: rfc3339(now),
                            pem: Some(self.pending_path.clone()),
                        },
                        created: now,
                        material: Some(m),
                    };
                    self.pending = Some(k.clone());
                    k
                }
            };
            rotated = current.is_some();
            demote = current.take().or(demote);
            current = Some(new.clone());
            promote = Some(new);
        }
        let p = &self.policy;

        // Earlier keys: the demoted one first, then the rest, newest first. Keys the IdP no
        // longer holds are not re-added; keys past their retirement age are dropped.
        let mut earlier: Vec<Key> = demote
            .iter()
            .cloned()
            .chain(self.previous.iter().cloned())
            .collect();
        earlier.sort_by_key(|k| std::cmp::Reverse(k.created));

        let mut retire = Vec::new();
        let mut kept = Vec::new();
        for k in earlier {
            let retired_by_age =
                p.retire_after_days > 0 && k.age_days(now) >= p.retire_after_days as u64;
            let dropped_at_idp = idp.is_some()
                && !held(&k)
                && Some(&k.record.thumbprint) != demote.as_ref().map(|d| &d.record.thumbprint);
            if retired_by_age || dropped_at_idp {
                retire.push(k.record);
            } else {
                kept.push(k);
            }
        }
        let mut publish: Vec<Key> = current.into_iter().chain(kept).collect();
        if p.max_keys > 0 {
            // The cap never removes the key a running BFF signs with during a rotation.
            let floor = if promote.is_some() && demote.is_some() {
                2
            } else {
                1
            };
            let keep = (p.max_keys as usize).max(floor);
            for k in publish.split_off(keep.min(publish.len())) {
                retire.push(k.record);
            }
        }
        let demote = demote.filter(|d| {
            publish
                .iter()
                .any(|k| k.record.thumbprint == d.record.thumbprint)
        });

        // Records as they will be after commit: the current key at DCR_SIGNING_KEY, a kept
        // demoted key at its <stem>.<kid>.pem.
        let records = publish
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let mut r = k.record.clone();
                r.pem = if i == 0 {
                    Some(self.current_path.clone())
                } else if demote
                    .as_ref()
                    .is_some_and(|d| d.record.thumbprint == r.thumbprint)
                {
                    Some(previous_path(&self.current_path, &r.kid))
                } else {
                    r.pem
                };
                r
            })
            .collect();
        Ok(Plan {
            publish: records,
            rotated,
            repaired,
            promote,
            demote,
            retire,
        })
    }

    /// Makes the files match the plan, once the IdP holds `plan.publish` (or at once in
    /// `jwks_uri` mode). Each step is atomic and the order is crash-safe: the earlier key is
    /// copied to its own file first, then the pending key is renamed over the current one.
    pub fn commit(&self, plan: &Plan) -> Result<()> {
        if let Some(d) = &plan.demote
            && let Some(m) = &d.material
        {
            let path = previous_path(&self.current_path, &d.record.kid);
            store::write_atomic(&path, keys::pem_bytes(m), 0o600, self.owner)?;
        }
        if plan.promote.is_some() {
            std::fs::rename(&self.pending_path, &self.current_path).map_err(|e| {
                Error::io(
                    format!(
                        "cannot move the new signing key {} to {}",
                        self.pending_path.display(),
                        self.current_path.display()
                    ),
                    e,
                )
            })?;
            store::sync_dir(&self.current_path)?;
            tracing::info!(
                "signing key {} is now current at {}",
                plan.publish.first().map(|r| r.kid.as_str()).unwrap_or(""),
                self.current_path.display()
            );
        }
        for r in &plan.retire {
            if let Some(p) = &r.pem
                && is_previous_key_file(&self.current_path, p)
            {
                match std::fs::remove_file(p) {
                    Ok(()) => tracing::info!("retired signing key {} ({})", r.kid, p.display()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => tracing::warn!("cannot remove the retired key {}: {e}", p.display()),
                }
            } else {
                tracing::info!("retired signing key {}", r.kid);
            }
        }
        Ok(())
    }

    /// The private key with this thumbprint, if the ring holds it (current, pending or earlier).
    pub fn material(&self, thumbprint: &str) -> Option<&KeyMaterial> {
        [&self.current, &self.pending]
            .into_iter()
            .flatten()
            .chain(self.previous.iter())
            .find(|k| k.record.thumbprint == thumbprint)
            .and_then(|k| k.material.as_ref())
    }

    /// The current key's record and private key, if there is one.
    pub fn current(&self) -> Option<(&KeyRecord, &KeyMaterial)> {
        let c = self.current.as_ref()?;
        Some((&c.record, c.material.as_ref()?))
    }

    /// Every key file this ring manages (for `deregister`).
    pub fn files(&self) -> Vec<PathBuf> {
        let mut v = vec![self.current_path.clone(), self.pending_path.clone()];
        v.extend(self.previous.iter().filter_map(|k| k.record.pem.clone()));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rotate: i64, retire: i64, max: i64) -> KeyPolicy {
        KeyPolicy {
            alg: Some(KeyAlg::Es256),
            rsa_bits: 2048,
            rotate_after_days: rotate,
            retire_after_days: retire,
            max_keys: max,
            kid: None,
            dated_kids: false,
        }
    }

    fn day(n: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + n * DAY)
    }

    /// Runs plan + commit as if the IdP accepted everything, returning the records.
    fn step(
        dir: &Path,
        p: KeyPolicy,
        records: &[KeyRecord],
        now: SystemTime,
    ) -> (Plan, Vec<KeyRecord>) {
        let key = dir.join("bff.pem");
        let mut ring = KeyRing::load(&key, p, records, None, now).unwrap();
        let plan = ring
            .plan(
                now,
                Some(&records.iter().map(|r| r.jwk.clone()).collect::<Vec<_>>()),
            )
            .unwrap();
        ring.commit(&plan).unwrap();
        let recs = plan.publish.clone();
        (plan, recs)
    }

    #[test]
    fn rotates_at_day_30_not_29_and_keeps_the_old_key_published() {
        let dir = tempfile::tempdir().unwrap();
        let (first, recs) = step(dir.path(), policy(30, 60, 3), &[], day(0));
        assert_eq!(first.publish.len(), 1);
        assert!(!first.rotated, "a first key is not a rotation");
        let (p29, recs29) = step(dir.path(), policy(30, 60, 3), &recs, day(29));
        assert!(!p29.rotated && p29.publish.len() == 1);
        let (p30, recs30) = step(dir.path(), policy(30, 60, 3), &recs29, day(30));
        assert!(p30.rotated);
        assert_eq!(p30.publish.len(), 2, "overlap: new and old");
        assert_ne!(recs30[0].thumbprint, recs[0].thumbprint);
        assert_eq!(recs30[1].thumbprint, recs[0].thumbprint);
        let old_pem = recs30[1].pem.clone().unwrap();
        assert!(
            old_pem.exists(),
            "the previous PEM is kept beside the new one"
        );
        let (p31, _) = step(dir.path(), policy(30, 60, 3), &recs30, day(31));
        assert!(!p31.rotated, "the new key is one day old");
        assert_eq!(p31.publish.len(), 2);
    }

    #[test]
    fn retires_by_age_and_by_cap() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut recs) = step(dir.path(), policy(10, 25, 0), &[], day(0));
        for d in [10, 20] {
            recs = step(dir.path(), policy(10, 25, 0), &recs, day(d)).1;
        }
        assert_eq!(recs.len(), 3, "no cap, none 25 days old yet");
        let (p, recs) = step(dir.path(), policy(10, 25, 0), &recs, day(30));
        // day-0 key is 30 days old: retired; its file removed.
        assert!(p.rotated);
        assert_eq!(recs.len(), 3);
        assert!(
            p.retire
                .iter()
                .all(|r| r.pem.as_ref().is_none_or(|f| !f.exists()))
        );
        let (p, recs) = step(dir.path(), policy(10, 0, 2), &recs, day(40));
        assert_eq!(recs.len(), 2, "capped to 2");
        assert!(!p.retire.is_empty());
    }

    #[test]
    fn zero_rotates_now_and_negative_never() {
        let dir = tempfile::tempdir().unwrap();
        let (_, recs) = step(dir.path(), policy(-1, 0, 3), &[], day(0));
        let (p, recs) = step(dir.path(), policy(-1, 0, 3), &recs, day(400));
        assert!(!p.rotated);
        let (p, _) = step(dir.path(), policy(0, 0, 3), &recs, day(400));
        assert!(p.rotated);
    }

    #[test]
    fn a_crash_after_publishing_is_repaired_by_promoting_the_pending_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("bff.pem");
        let (_, recs) = step(dir.path(), policy(30, 60, 3), &[], day(0));
        // Day 30: plan a rotation, "publish" it, then die before commit.
        let mut ring = KeyRing::load(&key, policy(30, 60, 3), &recs, None, day(30)).unwrap();
        let idp_now: Vec<Value> = recs.iter().map(|r| r.jwk.clone()).collect();
        let plan = ring.plan(day(30), Some(&idp_now)).unwrap();
        assert!(plan.rotated && pending_path(&key).exists());
        let published: Vec<Value> = plan.publish.iter().map(|r| r.jwk.clone()).collect();
        drop(ring);
        // Next run: the IdP holds the pending key, so it is promoted, not regenerated.
        let mut ring = KeyRing::load(&key, policy(30, 60, 3), &recs, None, day(30)).unwrap();
        let fix = ring.plan(day(30), Some(&published)).unwrap();
        assert!(fix.repaired && !fix.rotated);
        ring.commit(&fix).unwrap();
        assert_eq!(fix.publish[0].thumbprint, plan.publish[0].thumbprint);
        assert_eq!(fix.publish.len(), 2);
        assert!(!pending_path(&key).exists());
        let current = keys::load(&key, None).unwrap().unwrap();
        assert_eq!(current.thumbprint, plan.publish[0].thumbprint);
    }

    #[test]
    fn only_our_own_key_files_count_as_earlier_keys() {
        let cur = Path::new("/keys/bff.pem");
        assert!(is_previous_key_file(
            cur,
            Path::new("/keys/bff.bff-sig-1700000000.pem")
        ));
        for other in [
            "/keys/bff.pem",
            "/keys/bff.pem.next",
            "/etc/bff.x.pem",
            "/keys/other.x.pem",
            "/keys/bff..pem",
            "/keys/bff.a/b.pem",
            "/keys/../keys/bff.x.pem",
        ] {
            assert!(!is_previous_key_file(cur, Path::new(other)), "{other}");
        }
    }

    #[test]
    fn a_crash_before_publishing_reuses_the_pending_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("bff.pem");
        let mut ring = KeyRing::load(&key, policy(30, 60, 3), &[], None, day(0)).unwrap();
        let first = ring.plan(day(0), None).unwrap();
        drop(ring); // died before the IdP answered
        let mut ring = KeyRing::load(&key, policy(30, 60, 3), &[], None, day(0)).unwrap();
        let again = ring.plan(day(0), None).unwrap();
        assert_eq!(first.publish[0].thumbprint, again.publish[0].thumbprint);
    }
}
