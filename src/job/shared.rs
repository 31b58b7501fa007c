//! A client that several replicas share (`DCR_SHARED_CLIENT`). Each replica's key must join
//! the others' at the IdP, never replace them; RFC 7592 has no conditional update, so this is
//! read-modify-write: merge our keys into what the IdP holds ([`keyset::merge`]), write, read
//! back, and after `DCR_SHARED_SETTLE` check once more that our keys are still held, since a
//! replica that read before our write may have written after it. Each replica re-issues the
//! one registration access token as it needs it, which refuses the others' copies: a refused
//! token is renewed and the step retried, with jitter, until the deadline.

use super::managed::{ManagedClient, Refusal, Renew};
use super::session::Session;
use crate::config::SharedClient;
use crate::error::{Error, Result};
use crate::idp::UpdateMethod;
use crate::idp::client::{Read, Update};
use crate::local::keyset;
use crate::reconcile;
use crate::record::ClientRecord;
use serde_json::{Map, Value, json};
use std::time::{Duration, Instant};

/// How many writes in a row may meet a refused token before giving up.
const CONTENDED_WRITES: u32 = 12;

/// Where a shared publication stands.
struct Publishing {
    /// The IdP's view, as last read.
    view: ClientRecord,
    read_at: Instant,
    wrote: bool,
    collisions: u32,
    /// Writes in a row that met a refused token.
    refused: u32,
    /// The pending-update mark is saved.
    marked: bool,
    method: UpdateMethod,
}

impl Publishing {
    fn reread(&mut self, view: ClientRecord) {
        self.view = view;
        self.read_at = Instant::now();
    }
}

impl Session<'_> {
    fn shared(&self) -> Result<&SharedClient> {
        self.cfg
            .policies
            .shared
            .as_ref()
            .ok_or_else(|| Error::Config("DCR_SHARED_CLIENT is not set".into()))
    }

    /// An RFC 7592 read that renews a token another replica made stale.
    async fn read_shared(&self, client: &mut ManagedClient) -> Result<ClientRecord> {
        match self.read_client(client, Renew::Contended).await? {
            Ok(Read::Current(doc)) => Ok(doc),
            Ok(Read::NotFound(why)) => Err(Error::Rejected(format!(
                "client {} disappeared at {} while replicas were updating it ({why}); run again",
                client.id(),
                client.uri()
            ))),
            Err(Refusal { why, .. }) => Err(Error::Rejected(format!(
                "client {}: the registration access token was refused ({why}) and cannot be renewed here",
                client.id()
            ))),
        }
    }

    /// Writes `jwks` (PATCH, or PUT over `view`) once. `false`: not written, because the
    /// token had to be renewed or the method changed; the caller reads again first, since
    /// `view` is stale by then and writing it could drop a key another replica just added.
    async fn write_keys(
        &self,
        client: &mut ManagedClient,
        view: &ClientRecord,
        jwks: Value,
        method: &mut UpdateMethod,
    ) -> Result<bool> {
        let id = client.id().to_string();
        let changes: Map<String, Value> = [("jwks".to_string(), jwks)].into_iter().collect();
        let body = match method {
            UpdateMethod::Patch => changes,
            UpdateMethod::Put => reconcile::put_body(
                view.fields(),
                &changes,
                &id,
                client.record().client_secret(),
                self.dialect(),
            ),
        };
        // Never re-sent after a renewal: the body would be stale by then.
        match self
            .with_token(client, Renew::Never, async |uri, rat| {
                self.idp.update(uri, rat, *method, &body).await
            })
            .await?
        {
            Ok(Update::Answer(answer)) => {
                let answered = ClientRecord::from_map(answer).ok().and_then(|a| a.rat());
                client.take_rotated(self.cfg, answered)?;
                Ok(true)
            }
            Err(Refusal { why, .. }) => {
                self.jitter(self.cfg.timing.backoff_initial).await;
                if let Err(unrenewed) = self.renew_token(client, &why).await? {
                    return Err(Error::Rejected(format!(
                        "client {id}: the registration access token was refused ({why}) and cannot be renewed here \
                         ({unrenewed:?})"
                    )));
                }
                Ok(false)
            }
            Ok(Update::Unsupported(_)) if *method == UpdateMethod::Patch => {
                *method = UpdateMethod::Put;
                Ok(false)
            }
            Ok(Update::Unsupported(why) | Update::Forbidden(why) | Update::NotFound(why)) => {
                Err(Error::Rejected(format!(
                    "the IdP refused the {} of the keys of client {id} at {} ({why})",
                    method.verb(),
                    client.uri()
                )))
            }
        }
    }

    /// Makes the IdP hold `ours` beside the other replicas' keys it holds (minus the retired
    /// ones), and returns its view once they survived the settle period, and whether it
    /// wrote (`false`: the IdP already held them).
    pub(super) async fn publish_shared(
        &self,
        client: &mut ManagedClient,
        current: &ClientRecord,
        ours: &[Value],
    ) -> Result<(ClientRecord, bool)> {
        let shared = self.shared()?;
        let required = keyset::required(ours, &shared.keys);
        let mut p = Publishing {
            view: current.clone(),
            read_at: Instant::now(),
            wrote: false,
            collisions: 0,
            refused: 0,
            marked: false,
            method: self.cfg.policies.update_method,
        };
        loop {
            if self.remaining().is_zero() {
                return Err(Error::Rejected(format!(
                    "client {}: other replicas kept replacing the keys until the deadline ({} collision(s)); \
                     stagger their starts (DCR_START_JITTER) or raise DCR_TIMEOUT",
                    client.id(),
                    p.collisions
                )));
            }
            let held = p.view.jwks_keys();
            let (merged, retired) = keyset::merge(ours, &held, self.now, &shared.keys);
            if keyset::same_keys(&merged, &held) {
                if !p.wrote {
                    return Ok((p.view, false));
                }
                if self
                    .confirm(client, &mut p, &required, shared.settle)
                    .await?
                {
                    return Ok((p.view, true));
                }
                continue;
            }
            // The read-to-write window must stay well inside the settle period the other
            // replicas wait: after a slow step, read again first.
            if p.read_at.elapsed() > shared.settle / 4 {
                p.reread(self.read_shared(client).await?);
                continue;
            }
            for r in &retired {
                tracing::info!(
                    "retiring key {} of client {}: {}",
                    r.kid,
                    client.id(),
                    r.why
                );
            }
            self.write_merged(client, &mut p, merged, &required).await?;
        }
    }

    /// After our write, and the settle period in which a replica that read before it would
    /// write: whether our keys are still held.
    async fn confirm(
        &self,
        client: &mut ManagedClient,
        p: &mut Publishing,
        required: &[Value],
        settle: Duration,
    ) -> Result<bool> {
        self.jitter(settle).await;
        p.reread(self.read_shared(client).await?);
        if keyset::holds_all(&p.view.jwks_keys(), required) {
            tracing::info!(
                "client {} holds this replica's key beside {} other key(s) after {}",
                client.id(),
                p.view.jwks_keys().len().saturating_sub(required.len()),
                crate::duration::show(settle)
            );
            return Ok(true);
        }
        p.collisions += 1;
        tracing::warn!(
            "another replica replaced the keys of client {} after our write; merging again",
            client.id()
        );
        Ok(false)
    }

    /// Writes the merged keys and reads them back; a refused token or a method the IdP lacks
    /// means reading again before the next write.
    async fn write_merged(
        &self,
        client: &mut ManagedClient,
        p: &mut Publishing,
        merged: Vec<Value>,
        required: &[Value],
    ) -> Result<()> {
        if !p.marked {
            // Before the first write: a lost answer is recognised on the next start.
            client.mark_pending_update(self.cfg)?;
            p.marked = true;
        }
        let view = p.view.clone();
        if !self
            .write_keys(client, &view, json!({ "keys": merged }), &mut p.method)
            .await?
        {
            p.refused += 1;
            if p.refused > CONTENDED_WRITES {
                return Err(Error::Rejected(format!(
                    "client {}: the registration access token was refused {CONTENDED_WRITES} times in a row; \
                     replicas keep re-issuing it. Stagger the replicas' starts (DCR_START_JITTER)",
                    client.id()
                )));
            }
            p.reread(self.read_shared(client).await?);
            return Ok(());
        }
        p.refused = 0;
        p.wrote = true;
        p.reread(self.read_shared(client).await?);
        if !keyset::holds_all(&p.view.jwks_keys(), required) {
            p.collisions += 1;
            tracing::warn!(
                "another replica wrote the keys of client {} at the same time; merging again",
                client.id()
            );
            self.jitter(self.cfg.timing.backoff_initial).await;
            p.reread(self.read_shared(client).await?);
        }
        Ok(())
    }
}
