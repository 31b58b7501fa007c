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

pub use super::keyplan::{KeyPolicy, KeyRecord, Plan};

use super::keyplan::{Draft, Held, Key, KeySet, is_safe_kid};
use super::keys::{self, KeyAlg, KeyMaterial};
pub use super::keyset::dated_kid;
use super::store;
use crate::error::{Error, Result};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub struct KeyRing {
    current_path: PathBuf,
    pending_path: PathBuf,
    policy: KeyPolicy,
    owner: Option<(u32, u32)>,
    keys: KeySet,
    /// When the ring was loaded: no time read from a file or a record is later.
    loaded_at: SystemTime,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A key this ring has not recorded yet: its record made from its private half.
fn new_key(m: KeyMaterial, kid: String, alg: KeyAlg, created: SystemTime, path: &Path) -> Key {
    Key {
        record: KeyRecord {
            jwk: m.labelled_jwk(&kid, alg),
            kid,
            alg,
            thumbprint: m.thumbprint.clone(),
            created_at: rfc3339(created),
            pem: Some(path.to_path_buf()),
        },
        created,
        material: Some(m),
    }
}

/// A key we hold, under the kid and algorithm its record gives where they fit: everything
/// published about it is derived from the private half, never taken from the record (whoever
/// can write the output could otherwise publish their own key as ours).
/// `created` is the time to use when the record's is unreadable; none is later than `now`.
fn recorded_key(
    m: KeyMaterial,
    r: &KeyRecord,
    (created, now): (SystemTime, SystemTime),
    path: &Path,
) -> Key {
    let kid = if is_safe_kid(&r.kid) {
        r.kid.clone()
    } else {
        m.thumbprint.clone()
    };
    let alg = if m.fits(r.alg) {
        r.alg
    } else {
        m.natural_alg()
    };
    let created = recorded_time(&r.created_at, now).unwrap_or(created);
    new_key(m, kid, alg, created, path)
}

/// A creation time from a record, never later than `now`: a future time would stop rotation
/// for good.
fn recorded_time(text: &str, now: SystemTime) -> Option<SystemTime> {
    humantime::parse_rfc3339(text).ok().map(|t| t.min(now))
}

/// A key file's modification time, never later than `now`.
fn mtime(path: &Path, now: SystemTime) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_or(now, |t| t.min(now))
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

/// The key files of `current` and of the earlier keys `records` name at their exact names:
/// what `deregister` removes, listed without loading anything.
pub fn files_for(current: &Path, records: &[KeyRecord]) -> Vec<PathBuf> {
    let mut v = vec![current.to_path_buf(), pending_path(current)];
    v.extend(
        records
            .iter()
            .filter_map(|r| r.pem.clone())
            .filter(|p| records.iter().any(|r| *p == previous_path(current, &r.kid)))
            .filter(|p| p != current),
    );
    v.dedup();
    v
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
        let mut ring = KeyRing {
            current_path: current_path.to_path_buf(),
            pending_path: pending_path(current_path),
            policy,
            owner,
            keys: KeySet::default(),
            loaded_at: now,
        };
        if let Some(m) = keys::load(current_path, owner)? {
            let kid = ring
                .policy
                .kid
                .clone()
                .unwrap_or_else(|| m.thumbprint.clone());
            let created = mtime(current_path, now);
            ring.keys.current = Some(ring.known_or_new(m, &by_tp, kid, created, current_path));
        }
        ring.load_pending(&by_tp, now)?;
        let taken: Vec<String> = [&ring.keys.current, &ring.keys.pending]
            .iter()
            .filter_map(|k| k.as_ref().map(|k| k.record.thumbprint.clone()))
            .collect();
        for r in records.iter().filter(|r| !taken.contains(&r.thumbprint)) {
            let key = ring.earlier_key(r, now);
            ring.keys.previous.push(key);
        }
        Ok(ring)
    }

    /// The pending key, if a run left one: a torn file was never published (it is written
    /// before publishing) and is discarded; one identical to the current key is a finished
    /// promotion.
    fn load_pending(&mut self, by_tp: &HashMap<&str, &KeyRecord>, now: SystemTime) -> Result<()> {
        let path = self.pending_path.clone();
        let m = match keys::load(&path, self.owner) {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::warn!("discarding an unusable pending key: {e}");
                let _ = std::fs::remove_file(&path);
                return Ok(());
            }
        };
        let created = mtime(&path, now);
        let kid = self.new_kid(&m, created);
        let pending = self.known_or_new(m, by_tp, kid, created, &path);
        if self.keys.current.as_ref().map(|c| &c.record.thumbprint)
            == Some(&pending.record.thumbprint)
        {
            let _ = std::fs::remove_file(&path);
        } else {
            self.keys.pending = Some(pending);
        }
        Ok(())
    }

    /// An earlier key the output records: with its private half where it is in one of our
    /// own key files and matches, and then published as derived from it. Without, the record
    /// is identified by the thumbprint of the JWK it holds (not by the one it claims), and
    /// [`super::keyplan`] publishes it only where the IdP already holds that key.
    fn earlier_key(&self, r: &KeyRecord, now: SystemTime) -> Key {
        let pem = r.pem.as_ref().filter(|p| {
            let ours = is_previous_key_file(&self.current_path, p);
            if !ours {
                tracing::warn!(
                    "the output records key {} at {}, which is not a key file of DCR_SIGNING_KEY's; ignoring that path",
                    r.kid.escape_debug(),
                    p.display()
                );
            }
            ours
        });
        let material = pem
            .and_then(|p| keys::load(p, self.owner).ok().flatten())
            .filter(|m| m.thumbprint == r.thumbprint);
        match (material, pem) {
            (Some(m), Some(p)) => recorded_key(m, r, (now, now), p),
            _ => Key {
                record: KeyRecord {
                    thumbprint: keys::thumbprint(&r.jwk),
                    pem: None,
                    ..r.clone()
                },
                created: recorded_time(&r.created_at, now).unwrap_or(now),
                material: None,
            },
        }
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
            Some(r) => recorded_key(m, r, (created, self.loaded_at), path),
            None => {
                let alg = match self.policy.alg {
                    Some(a) if m.fits(a) => a,
                    _ => m.natural_alg(),
                };
                new_key(m, kid, alg, created, path)
            }
        }
    }

    /// The kid of a key that is not the first: BFF_KID with a timestamp, or the thumbprint.
    fn new_kid(&self, m: &KeyMaterial, created: SystemTime) -> String {
        if self.policy.dated_kids {
            let base = self.policy.kid.as_deref().unwrap_or("key");
            return dated_kid(base, created, &m.thumbprint);
        }
        match (&self.policy.kid, &self.keys.current) {
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

    /// Decides what to publish ([`super::keyplan`]). `idp_keys` are the keys the IdP holds
    /// now (None when unknown: a first registration, or `jwks_uri` mode). A new key is
    /// generated and written to the pending file before this returns, so that it exists on
    /// disk before anyone can publish it.
    pub fn plan(&mut self, now: SystemTime, idp_keys: Option<&[Value]>) -> Result<Plan> {
        let idp: Option<Held> = idp_keys.map(|ks| {
            ks.iter()
                .map(|k| (keys::thumbprint(k), k.clone()))
                .collect()
        });
        let mut draft = Draft::new(&self.keys);
        draft.repair(idp.as_ref());
        if draft.needs_new_key(&self.policy, now) {
            let alg = self
                .policy
                .new_alg(draft.current.as_ref().and_then(|c| c.material.as_ref()));
            let new = match draft.take_reusable_pending(alg, now) {
                Some(k) => k,
                None => self.stage_new_key(alg, now)?,
            };
            draft.rotate(new);
        }
        let current_path = self.current_path.clone();
        Ok(
            draft.finish(&self.policy, now, idp.as_ref(), &current_path, |kid| {
                previous_path(&current_path, kid)
            }),
        )
    }

    /// Generates a key and writes it to the pending file, where it waits to be published.
    fn stage_new_key(&mut self, alg: KeyAlg, now: SystemTime) -> Result<Key> {
        let m = keys::generate(alg, self.policy.rsa_bits)?;
        let kid = self.new_kid(&m, now);
        store::write_atomic(
            &self.pending_path,
            keys::pem_bytes(&m),
            self.policy.file_mode,
            self.owner,
        )?;
        let k = new_key(m, kid, alg, now, &self.pending_path);
        self.keys.pending = Some(k.clone());
        Ok(k)
    }

    /// Makes the files match the plan, once the IdP holds `plan.publish` (or at once in
    /// `jwks_uri` mode). Each step is atomic and the order is crash-safe: the earlier key is
    /// copied to its own file first, then the pending key is renamed over the current one.
    pub fn commit(&self, plan: &Plan) -> Result<()> {
        if let Some(d) = &plan.demote
            && let Some(m) = &d.material
        {
            let path = previous_path(&self.current_path, &d.record.kid);
            store::write_atomic(&path, keys::pem_bytes(m), self.policy.file_mode, self.owner)?;
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
        self.ensure_modes(plan)?;
        for r in &plan.retire {
            if let Some(p) = self.own_file(r) {
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

    /// Gives the key files this ring writes the configured mode (a key left 0600 becomes 0640
    /// once DCR_OUTPUT_MODE lets the app's group read, and a group-writable one left by a
    /// kubelet `fsGroup` pass is narrowed again). A key linked from a read-only Secret is not
    /// ours to change.
    fn ensure_modes(&self, plan: &Plan) -> Result<()> {
        let earlier = plan.publish.iter().skip(1).filter_map(|r| self.own_file(r));
        for path in std::iter::once(&self.current_path).chain(earlier) {
            let linked = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
            if !linked {
                crate::files::ensure_mode(path, self.policy.file_mode).map_err(|why| {
                    Error::Io(format!("DCR_SIGNING_KEY {}: {why}", path.display()))
                })?;
            }
        }
        Ok(())
    }

    /// Drops the pending key: it was generated for a rotation the IdP could not take, and was
    /// never published. The current key stays.
    pub fn discard_pending(&mut self) {
        if self.keys.pending.take().is_some() {
            match std::fs::remove_file(&self.pending_path) {
                Ok(()) => tracing::info!(
                    "dropped the unpublished key {}",
                    self.pending_path.display()
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("cannot remove {}: {e}", self.pending_path.display()),
            }
        }
    }

    /// The private key with this thumbprint, if the ring holds it (current, pending or earlier).
    pub fn material(&self, thumbprint: &str) -> Option<&KeyMaterial> {
        [&self.keys.current, &self.keys.pending]
            .into_iter()
            .flatten()
            .chain(self.keys.previous.iter())
            .find(|k| k.record.thumbprint == thumbprint)
            .and_then(|k| k.material.as_ref())
    }

    /// The current key's record and private key, if there is one.
    pub fn current(&self) -> Option<(&KeyRecord, &KeyMaterial)> {
        let c = self.keys.current.as_ref()?;
        Some((&c.record, c.material.as_ref()?))
    }

    /// Every key file this ring manages (for `deregister`).
    pub fn files(&self) -> Vec<PathBuf> {
        let mut v = vec![self.current_path.clone(), self.pending_path.clone()];
        v.extend(
            self.keys
                .previous
                .iter()
                .filter_map(|k| self.own_file(&k.record).cloned()),
        );
        v
    }

    /// The file of an earlier key, if it is the very file this ring writes for that key
    /// (`<stem>.<kid>.pem`, by exact name) and holds that key (checked when it was loaded):
    /// only such a file is ever deleted. A record naming another file beside the key, even
    /// one of the same pattern, names nothing this program made.
    fn own_file<'r>(&self, r: &'r KeyRecord) -> Option<&'r PathBuf> {
        r.pem
            .as_ref()
            .filter(|p| **p == previous_path(&self.current_path, &r.kid))
    }
}

#[cfg(test)]
mod tests {
    use super::super::keyplan::tests::{day, policy};
    use super::*;

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
