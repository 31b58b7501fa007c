//! Bringing a client we manage in line with what we want, as a story: plan the keys, publish
//! them, find the drift, correct it, settle what the IdP keeps otherwise, prove what changed,
//! persist.

use super::decide::{self, Action};
use super::managed::ManagedClient;
use super::output::{self, Persist};
use super::session::Session;
use super::update::Applied;
use crate::error::{Error, Result};
use crate::local::keyring::{KeyRing, Plan};
use crate::reconcile;
use crate::record::ClientRecord;
use serde_json::{Map, Value, json};

/// The list members of what we asked for, remembered as `dcr_bootstrap.asked`.
pub(super) fn asked(desired: &Map<String, Value>) -> Map<String, Value> {
    desired
        .iter()
        .filter(|(k, _)| reconcile::ASKED_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// One of our own `dcr_bootstrap` members of a record, as an object.
fn meta_object(record: &ClientRecord, member: &str) -> Map<String, Value> {
    record
        .meta()
        .and_then(|m| m.get(member))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// What correcting the drift came to.
#[derive(Default)]
struct Correction {
    /// The IdP holds something else now.
    updated: bool,
    /// What the IdP keeps other than asked (`dcr_bootstrap.settled`).
    settled: Map<String, Value>,
    /// The IdP does not update clients at all: nothing changed there, no key is promoted.
    unsupported: bool,
    /// The token was refused mid-update and cannot be renewed; why.
    unmanageable: Option<String>,
}

impl Session<'_> {
    /// What we want registered: the configured metadata plus the keys of the plan.
    pub(super) async fn desired(&self, plan: Option<&Plan>) -> Map<String, Value> {
        let mut m = self.configured_metadata().await;
        if let (Some(k), Some(plan)) = (&self.cfg.signing_key, plan) {
            match &k.jwks_uri {
                Some(u) => m.insert("jwks_uri".into(), Value::String(u.to_string())),
                None => m.insert("jwks".into(), plan.jwks()),
            };
        }
        m
    }

    /// Brings the client in line and persists the result. `current` is the IdP's view of it;
    /// `base` what the run reports when nothing changes.
    pub(super) async fn converge(
        &self,
        mut client: ManagedClient,
        current: &ClientRecord,
        mut ring: Option<&mut KeyRing>,
        base: Action,
        stored: Option<&ClientRecord>,
    ) -> Result<(Action, String)> {
        let plan = self.plan_keys(current, ring.as_deref_mut())?;
        let mut desired = self.desired(plan.as_ref()).await;
        let (view, keys_shared) = self
            .publish_keys(&mut client, current, plan.as_ref(), &mut desired, stored)
            .await?;
        let current = view.as_ref().unwrap_or(current);
        let asked_before = meta_object(client.record(), "asked");
        let changes = self.drift(&client, current, &desired, &asked_before);
        let corrected = self
            .correct(&mut client, current, &changes, &desired, &asked_before)
            .await?;
        if let Some(why) = &corrected.unmanageable {
            // Nothing more can be changed: keep what works, if it does.
            if let Some(r) = ring.as_deref_mut() {
                r.discard_pending();
            }
            return self.keep_if_proven(client.into_record(), why).await;
        }
        let extra = settle(&client, &desired, &changes, corrected.settled);
        let plan = match (plan, corrected.unsupported) {
            // New keys that could not be published: the pending key is dropped (it was never
            // published) and the files stay as they are.
            (Some(p), true) if p.rotated => {
                if let Some(r) = ring.as_deref_mut() {
                    r.discard_pending();
                }
                None
            }
            (plan, _) => plan,
        };
        let renewed = self.keep_secret_fresh(&mut client, current).await?;
        let keys_changed = plan.as_ref().is_some_and(|p| p.rotated || p.repaired);
        let action = decide::reported_action(
            base,
            corrected.updated || keys_shared || renewed,
            keys_changed,
        );
        let trust = client.trust();
        let record = client.into_record();
        if action != Action::Verified {
            // What changed must work before the run says so (and before a key is promoted).
            self.prove(&record, ring.as_deref().map(|r| (r, plan.as_ref())))
                .await?;
        }
        output::persist(
            self.cfg,
            record.clone(),
            Persist {
                action,
                keys: ring.as_deref().zip(plan.as_ref()),
                previous: stored,
                extra,
                registration_endpoint: self.known_registration_endpoint(),
                trust,
            },
        )?;
        Ok((action, record.client_id().to_string()))
    }

    /// The keys to publish, given the keys the IdP holds (unknown at an IdP that never
    /// reports them, and in `jwks_uri` mode).
    fn plan_keys(
        &self,
        current: &ClientRecord,
        ring: Option<&mut KeyRing>,
    ) -> Result<Option<Plan>> {
        let Some(ring) = ring else { return Ok(None) };
        let plan = ring.plan(self.now, self.idp_keys(current).as_deref())?;
        if plan.rotated
            && let Some(key) = plan.publish.first()
        {
            self.check_signing_alg(key.alg)?;
        }
        Ok(Some(plan))
    }

    /// The inline keys the IdP holds; `None` in `jwks_uri` mode.
    fn idp_keys(&self, current: &ClientRecord) -> Option<Vec<Value>> {
        self.inline_keys().then(|| current.jwks_keys())
    }

    /// Keys are published inline (`jwks`), not served at `DCR_JWKS_URI`.
    pub(super) fn inline_keys(&self) -> bool {
        self.cfg
            .signing_key
            .as_ref()
            .is_some_and(|k| k.jwks_uri.is_none())
    }

    /// Replicas sharing the client: our keys join the others' (job::shared), and what the
    /// IdP then holds is what we want. Otherwise ours replace what is held, said loudly when
    /// that drops keys we never published. Returns the IdP's view after a shared write.
    async fn publish_keys(
        &self,
        client: &mut ManagedClient,
        current: &ClientRecord,
        plan: Option<&Plan>,
        desired: &mut Map<String, Value>,
        stored: Option<&ClientRecord>,
    ) -> Result<(Option<ClientRecord>, bool)> {
        let Some(plan) = plan else {
            return Ok((None, false));
        };
        if self.cfg.policies.shared.is_none() || !self.inline_keys() {
            if let Some(held) = self.idp_keys(current).filter(|_| self.inline_keys()) {
                self.warn_foreign_keys(client.id(), &held, &plan.publish, stored);
            }
            return Ok((None, false));
        }
        let ours = plan.jwks()["keys"].as_array().cloned().unwrap_or_default();
        let (view, wrote) = self.publish_shared(client, current, &ours).await?;
        if wrote {
            client.overlay(self.cfg, view.fields())?;
            client.save(self.cfg)?;
        }
        desired.insert("jwks".into(), json!({ "keys": view.jwks_keys() }));
        Ok((Some(view), wrote))
    }

    /// What differs at the IdP and can be corrected there.
    fn drift(
        &self,
        client: &ManagedClient,
        current: &ClientRecord,
        desired: &Map<String, Value>,
        asked_before: &Map<String, Value>,
    ) -> Map<String, Value> {
        let settled = meta_object(client.record(), "settled");
        let compare = self.compare(asked_before);
        let kept = reconcile::suppressed(desired, current.fields(), compare, &settled);
        if !kept.is_empty() {
            tracing::warn!(
                "client {} differs at the IdP in {} as recorded before: the IdP did not take that correction, so it \
                 is not sent again (dcr_bootstrap.settled in {})",
                client.id(),
                kept.join(", "),
                self.cfg.output.path.display()
            );
        }
        reconcile::diff(desired, current.fields(), compare, &settled)
    }

    /// Sends the changes and reads back what the IdP took. New keys it did not take are an
    /// error (nothing is promoted); anything else it keeps otherwise is settled.
    async fn correct(
        &self,
        client: &mut ManagedClient,
        current: &ClientRecord,
        changes: &Map<String, Value>,
        desired: &Map<String, Value>,
        asked_before: &Map<String, Value>,
    ) -> Result<Correction> {
        if changes.is_empty() {
            return Ok(Correction::default());
        }
        let compare = self.compare(asked_before);
        let after = match self
            .update_and_read_back(client, current, changes, desired, compare)
            .await?
        {
            Applied::Read(after) => after,
            Applied::Unsupported => {
                return Ok(Correction {
                    unsupported: true,
                    ..Correction::default()
                });
            }
            Applied::Unmanageable(why) => {
                return Ok(Correction {
                    unsupported: true,
                    unmanageable: Some(why),
                    ..Correction::default()
                });
            }
        };
        let remaining = reconcile::diff(desired, after.fields(), compare, &Map::new());
        let id = client.id().to_string();
        if remaining.contains_key("jwks") || remaining.contains_key("jwks_uri") {
            client.save(self.cfg)?;
            return Err(Error::Rejected(format!(
                "client {id}: the IdP did not take the new signing keys (its JWKS after the update differs); \
                 the current key stays in use and nothing was promoted"
            )));
        }
        let left = reconcile::unsettled(desired, after.fields(), compare);
        if !remaining.is_empty() {
            tracing::warn!(
                "the IdP keeps {} of client {id} other than asked after an update; {}",
                remaining
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                if remaining.len() == left.len() {
                    "not sending that correction again while it stays so"
                } else {
                    "redirect URIs, keys and grants are corrected on every run, the rest is not sent again while it \
                     stays so"
                }
            );
        }
        let updated = changes.keys().any(|k| after.get(k) != current.get(k));
        if !updated {
            tracing::warn!("the IdP accepted the update of client {id} but changed nothing");
        }
        self.check_readback(desired, after.fields())?;
        Ok(Correction {
            updated,
            settled: left,
            ..Correction::default()
        })
    }
}

/// Our `dcr_bootstrap` members after a convergence: what was asked, and what the IdP keeps
/// otherwise (carried over while no correction was sent).
fn settle(
    client: &ManagedClient,
    desired: &Map<String, Value>,
    changes: &Map<String, Value>,
    settled_now: Map<String, Value>,
) -> Map<String, Value> {
    let settled = if changes.is_empty() {
        meta_object(client.record(), "settled")
    } else {
        settled_now
    };
    let mut extra = Map::new();
    if !settled.is_empty() {
        extra.insert("settled".into(), Value::Object(settled));
    }
    extra.insert("asked".into(), Value::Object(asked(desired)));
    extra
}
