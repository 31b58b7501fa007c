//! A client that several replicas share (`DCR_SHARED_CLIENT`). Each replica's key must join
//! the others' at the IdP, never replace them; RFC 7592 has no conditional update, so this is
//! read-modify-write: merge our keys into what the IdP holds ([`keyset::merge`]), write, read
//! back, and after `DCR_SHARED_SETTLE` check once more that our keys are still held, since a
//! replica that read before our write may have written after it. Each replica re-issues the
//! one registration access token as it needs it, which refuses the others' copies: a refused
//! token is renewed and the step retried, with jitter, until the deadline.

use super::output;
use super::session::Session;
use crate::config::SharedClient;
use crate::error::{Error, Result};
use crate::idp::UpdateMethod;
use crate::idp::client::{ReadResult, UpdateResult};
use crate::keyset;
use crate::reconcile;
use crate::record::ClientRecord;
use reqwest::Url;
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use std::time::{Duration, Instant};

/// How many times a refused token is renewed within one step before giving up.
const RENEWALS: u32 = 12;

impl Session<'_> {
    fn shared(&self) -> Result<&SharedClient> {
        self.cfg
            .policies
            .shared
            .as_ref()
            .ok_or_else(|| Error::Config("DCR_SHARED_CLIENT is not set".into()))
    }

    /// A pause of `base` to twice `base`, so that replicas stop colliding.
    async fn jitter(&self, base: Duration) {
        let wait = base.mul_f64(1.0 + fastrand::f64()).min(self.remaining());
        tokio::time::sleep(wait).await;
    }

    /// A refused registration access token: another replica re-issued it. Renews it (the
    /// record is ours: DCR_CLIENT_ID or its seal, checked by the caller's first read).
    pub(super) async fn renew_contended(
        &self,
        id: &str,
        record: &mut ClientRecord,
        rat: &mut SecretString,
        why: &str,
        round: u32,
    ) -> Result<()> {
        if round >= RENEWALS {
            return Err(Error::Rejected(format!(
                "client {id}: the registration access token was refused {RENEWALS} times in a row ({why}); replicas keep \
                 re-issuing it, or it cannot be renewed. Stagger the replicas' starts (DCR_START_JITTER)"
            )));
        }
        self.jitter(self.cfg.timing.backoff_initial).await;
        match self.renew_rat(id, why, true).await? {
            super::renewal::Renewal::Token(t) => {
                output::save_rotated_rat(self.cfg, record, &t)?;
                *rat = t;
                Ok(())
            }
            _ => Err(Error::Rejected(format!(
                "client {id}: the registration access token was refused ({why}) and cannot be renewed here"
            ))),
        }
    }

    /// An RFC 7592 read that renews a token another replica made stale.
    pub(super) async fn read_shared(
        &self,
        id: &str,
        record: &mut ClientRecord,
        rat: &mut SecretString,
        uri: &Url,
    ) -> Result<ClientRecord> {
        for round in 0.. {
            match self.idp.read(uri, rat).await? {
                ReadResult::Current(doc) => {
                    super::existing::same_client(id, &doc)?;
                    output::take_rotated_rat(self.cfg, record, rat, doc.rat())?;
                    return Ok(doc);
                }
                ReadResult::Unauthorized(why) => {
                    self.renew_contended(id, record, rat, &why, round).await?
                }
                ReadResult::Gone(why) => {
                    return Err(Error::Rejected(format!(
                        "client {id} disappeared at {uri} while replicas were updating it ({why}); run again"
                    )));
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// Writes `jwks` (PATCH, or PUT over `view`) once. `false`: not written, because the
    /// token had to be renewed or the method changed; the caller reads again first, since
    /// `view` is stale by then and writing it could drop a key another replica just added.
    #[allow(clippy::too_many_arguments)]
    async fn write_keys(
        &self,
        id: &str,
        record: &mut ClientRecord,
        rat: &mut SecretString,
        uri: &Url,
        view: &ClientRecord,
        jwks: Value,
        method: &mut UpdateMethod,
        renewals: &mut u32,
    ) -> Result<bool> {
        let changes: Map<String, Value> = [("jwks".to_string(), jwks)].into_iter().collect();
        let body = match method {
            UpdateMethod::Patch => changes,
            UpdateMethod::Put => {
                reconcile::put_body(view.fields(), &changes, id, record.client_secret())
            }
        };
        match self.idp.update(uri, rat, *method, &body).await? {
            UpdateResult::Updated(answer) => {
                let answered = ClientRecord::from_map(answer).ok().and_then(|a| a.rat());
                output::take_rotated_rat(self.cfg, record, rat, answered)?;
                *renewals = 0;
                Ok(true)
            }
            UpdateResult::Unauthorized(why) => {
                self.renew_contended(id, record, rat, &why, *renewals)
                    .await?;
                *renewals += 1;
                Ok(false)
            }
            UpdateResult::Unsupported(_) if *method == UpdateMethod::Patch => {
                *method = UpdateMethod::Put;
                Ok(false)
            }
            UpdateResult::Unsupported(why) | UpdateResult::Gone(why) => {
                Err(Error::Rejected(format!(
                    "the IdP refused the {} of the keys of client {id} at {uri} ({why})",
                    method.verb()
                )))
            }
        }
    }

    /// Makes the IdP hold `ours` beside the other replicas' keys it holds (minus the retired
    /// ones), and returns its view once they survived the settle period. `None` inside: the
    /// IdP already held them, nothing was written.
    pub(super) async fn publish_shared(
        &self,
        id: &str,
        record: &mut ClientRecord,
        rat: &mut SecretString,
        uri: &Url,
        current: &ClientRecord,
        ours: &[Value],
    ) -> Result<(ClientRecord, bool)> {
        let shared = self.shared()?;
        let required = keyset::required(ours, &shared.keys);
        let mut view = current.clone();
        let mut wrote = false;
        let mut read_at = Instant::now();
        let mut collisions = 0u32;
        let mut method = self.cfg.policies.update_method;
        let mut renewals = 0u32;
        let mut marked = false;
        loop {
            if self.remaining().is_zero() {
                return Err(Error::Rejected(format!(
                    "client {id}: other replicas kept replacing the keys until the deadline ({collisions} collision(s)); \
                     stagger their starts (DCR_START_JITTER) or raise DCR_TIMEOUT"
                )));
            }
            let held = view.jwks_keys();
            let (merged, retired) = keyset::merge(ours, &held, self.now, &shared.keys);
            if keyset::same_keys(&merged, &held) {
                if !wrote {
                    return Ok((view, false));
                }
                // A replica that read before our write writes within the settle period.
                self.jitter(shared.settle).await;
                view = self.read_shared(id, record, rat, uri).await?;
                if keyset::holds_all(&view.jwks_keys(), &required) {
                    tracing::info!(
                        "client {id} holds this replica's key beside {} other key(s) after {}",
                        view.jwks_keys().len().saturating_sub(required.len()),
                        crate::duration::show(shared.settle)
                    );
                    return Ok((view, true));
                }
                collisions += 1;
                tracing::warn!(
                    "another replica replaced the keys of client {id} after our write; merging again"
                );
                read_at = Instant::now();
                continue;
            }
            if !marked {
                // Before the first write: a lost answer is recognised on the next start.
                output::mark_pending_update(self.cfg, record)?;
                marked = true;
            }
            // The read-to-write window must stay well inside the settle period the other
            // replicas wait: after a slow step, read again first.
            if read_at.elapsed() > shared.settle / 4 {
                view = self.read_shared(id, record, rat, uri).await?;
                read_at = Instant::now();
                continue;
            }
            for r in &retired {
                tracing::info!("retiring key {} of client {id}: {}", r.kid, r.why);
            }
            let merged = json!({ "keys": merged });
            if !self
                .write_keys(
                    id,
                    record,
                    rat,
                    uri,
                    &view,
                    merged,
                    &mut method,
                    &mut renewals,
                )
                .await?
            {
                view = self.read_shared(id, record, rat, uri).await?;
                read_at = Instant::now();
                continue;
            }
            wrote = true;
            view = self.read_shared(id, record, rat, uri).await?;
            read_at = Instant::now();
            if !keyset::holds_all(&view.jwks_keys(), &required) {
                collisions += 1;
                tracing::warn!(
                    "another replica wrote the keys of client {id} at the same time; merging again"
                );
                self.jitter(self.cfg.timing.backoff_initial).await;
                view = self.read_shared(id, record, rat, uri).await?;
                read_at = Instant::now();
            }
        }
    }
}
