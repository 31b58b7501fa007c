//! The client under management: who it is, what we hold of it, the registration access
//! token and the URL that manage it; and the one rule for a refused token ([`Renew`]): renew
//! it with the admin API where the record is ours, save it at once, call again.

use super::output::{self, Trust};
use super::renewal::Renewal;
use super::session::Session;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::idp::UpdateMethod;
use crate::idp::client::{Delete, Managed, Read, Update};
use crate::record::ClientRecord;
use reqwest::Url;
use secrecy::SecretString;
use serde_json::{Map, Value};

/// How many times a refused token is renewed within one step when replicas contend for it.
const CONTENDED_RENEWALS: u32 = 12;

/// A client we hold a registration access token for. The token in use is always the one in
/// `record`; a new one is saved the moment it arrives (the old one is dead by then).
pub(super) struct ManagedClient {
    record: ClientRecord,
    rat: SecretString,
    uri: Url,
    /// The record is this program's (`DCR_CLIENT_ID` names it, its seal verifies, or this run
    /// registered or adopted it): the admin token may act on the client, and the record is
    /// sealed when saved.
    owned: bool,
    /// The record lives in the output, so a new token is written there at once.
    saved: bool,
}

/// What to do when the IdP refuses the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Renew {
    /// Give the refusal back at once (the caller renews, after rebuilding what it sends).
    Never,
    /// Renew it once and call again.
    Once,
    /// Replicas re-issue the one token and refuse each other's copies: renew, wait a little,
    /// call again, a bounded number of times.
    Contended,
}

/// Why a call ended with the token refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Unrenewed {
    /// Not tried ([`Renew::Never`]).
    NotTried,
    /// No admin token or re-issue endpoint.
    NotPossible,
    /// The admin API does not know the client.
    NoSuchClient,
    /// Refused again with a freshly re-issued token.
    StillRefused,
}

/// A call whose token the IdP refused, and why it could not be renewed.
#[derive(Debug)]
pub(super) struct Refusal {
    pub why: String,
    pub unrenewed: Unrenewed,
}

impl ManagedClient {
    /// `None` when the record holds no registration access token.
    pub fn new(record: ClientRecord, uri: Url, owned: bool, saved: bool) -> Option<Self> {
        let rat = record.rat()?;
        Some(ManagedClient {
            record,
            rat,
            uri,
            owned,
            saved,
        })
    }

    pub fn id(&self) -> &str {
        self.record.client_id()
    }

    pub fn record(&self) -> &ClientRecord {
        &self.record
    }

    pub fn uri(&self) -> &Url {
        &self.uri
    }

    /// How the record is written: sealed when it is ours.
    pub fn trust(&self) -> Trust {
        if self.owned {
            Trust::Ours
        } else {
            Trust::NotOurs
        }
    }

    /// Takes a new token and saves it (where the record lives in the output).
    fn set_rat(&mut self, cfg: &Config, rat: SecretString) -> Result<()> {
        self.record.set_rat(&rat);
        self.rat = rat;
        self.save(cfg)
    }

    /// A token in an answer that is not the one we hold: the IdP rotated it.
    pub fn take_rotated(&mut self, cfg: &Config, answered: Option<SecretString>) -> Result<()> {
        match answered {
            Some(new) if !self.record.holds_rat(&new) => {
                tracing::info!("the IdP rotated the registration access token; saving it");
                self.set_rat(cfg, new)
            }
            _ => Ok(()),
        }
    }

    /// Lays what the IdP answered over what we hold; a token in it is taken first.
    pub fn overlay(&mut self, cfg: &Config, answer: &Map<String, Value>) -> Result<()> {
        let answered = ClientRecord::from_map(answer.clone())
            .ok()
            .and_then(|a| a.rat());
        self.take_rotated(cfg, answered)?;
        self.record.overlay(answer);
        self.record.set_rat(&self.rat);
        Ok(())
    }

    pub fn save(&self, cfg: &Config) -> Result<()> {
        if self.saved {
            output::save(cfg, &self.record, self.trust())?;
        }
        Ok(())
    }

    /// Marks an update in flight, so that a lost answer (and with it a token the IdP
    /// rotated) is recognised on the next start.
    pub fn mark_pending_update(&mut self, cfg: &Config) -> Result<()> {
        let trust = self.trust();
        output::mark_pending_update(cfg, &mut self.record, trust)
    }

    /// The record, from now on kept in the output.
    pub fn into_record(self) -> ClientRecord {
        self.record
    }
}

impl Session<'_> {
    /// How a refused token is handled in this run: replicas sharing the client contend for
    /// it.
    pub(super) fn renew_mode(&self) -> Renew {
        if self.cfg.policies.shared.is_some() {
            Renew::Contended
        } else {
            Renew::Once
        }
    }

    /// A pause of `base` to twice `base`, so that replicas stop colliding.
    pub(super) async fn jitter(&self, base: std::time::Duration) {
        let wait = base.mul_f64(1.0 + fastrand::f64()).min(self.remaining());
        tokio::time::sleep(wait).await;
    }

    /// Calls `op` with the client's token. When the IdP refuses it: renew it with the admin
    /// API (where the record is ours), save the new one, and call again, as `renew` allows.
    pub(super) async fn with_token<T>(
        &self,
        c: &mut ManagedClient,
        renew: Renew,
        op: impl AsyncFn(&Url, &SecretString) -> Result<Managed<T>>,
    ) -> Result<std::result::Result<T, Refusal>> {
        let mut renewals = 0u32;
        loop {
            let why = match op(&c.uri, &c.rat).await? {
                Managed::Accepted(v) => return Ok(Ok(v)),
                Managed::TokenRefused(why) => why,
            };
            match renew {
                Renew::Never => {
                    return Ok(Err(Refusal {
                        why,
                        unrenewed: Unrenewed::NotTried,
                    }));
                }
                Renew::Once if renewals >= 1 => {
                    return Ok(Err(Refusal {
                        why,
                        unrenewed: Unrenewed::StillRefused,
                    }));
                }
                Renew::Contended if renewals >= CONTENDED_RENEWALS => {
                    return Err(Error::Rejected(format!(
                        "client {}: the registration access token was refused {CONTENDED_RENEWALS} times in a row \
                         ({why}); replicas keep re-issuing it. Stagger the replicas' starts (DCR_START_JITTER)",
                        c.id()
                    )));
                }
                Renew::Contended => self.jitter(self.cfg.timing.backoff_initial).await,
                Renew::Once => {}
            }
            if let Err(unrenewed) = self.renew_token(c, &why).await? {
                return Ok(Err(Refusal { why, unrenewed }));
            }
            renewals += 1;
        }
    }

    /// One renewal of a refused token: the new one is saved and in use.
    pub(super) async fn renew_token(
        &self,
        c: &mut ManagedClient,
        why: &str,
    ) -> Result<std::result::Result<(), Unrenewed>> {
        let id = c.id().to_string();
        match self.renew_rat(&id, why, c.owned).await? {
            Renewal::Token(t) => {
                c.set_rat(self.cfg, t)?;
                Ok(Ok(()))
            }
            Renewal::NoSuchClient => Ok(Err(Unrenewed::NoSuchClient)),
            Renewal::NotPossible => Ok(Err(Unrenewed::NotPossible)),
        }
    }

    /// RFC 7592 read; a token rotated on the read is saved at once. The answer must be about
    /// this client: a record that names another client's URI must not make us adopt that
    /// client's document.
    pub(super) async fn read_client(
        &self,
        c: &mut ManagedClient,
        renew: Renew,
    ) -> Result<std::result::Result<Read, Refusal>> {
        let read = self
            .with_token(c, renew, async |uri, rat| self.idp.read(uri, rat).await)
            .await?;
        if let Ok(Read::Current(doc)) = &read {
            same_client(c.id(), doc)?;
            c.take_rotated(self.cfg, doc.rat())?;
        }
        Ok(read)
    }

    /// A read that must find the client: anything else is an error saying `when`.
    pub(super) async fn read_current(
        &self,
        c: &mut ManagedClient,
        when: &str,
    ) -> Result<ClientRecord> {
        match self.read_client(c, self.renew_mode()).await? {
            Ok(Read::Current(doc)) => Ok(doc),
            Ok(Read::NotFound(why)) | Err(Refusal { why, .. }) => Err(Error::Rejected(format!(
                "client {} {when}, but reading it back failed ({why}); run again to verify it",
                c.id()
            ))),
        }
    }

    /// RFC 7592 update; a token in the answer is saved at once.
    pub(super) async fn update_client(
        &self,
        c: &mut ManagedClient,
        renew: Renew,
        method: UpdateMethod,
        body: &Map<String, Value>,
    ) -> Result<std::result::Result<Update, Refusal>> {
        let update = self
            .with_token(c, renew, async |uri, rat| {
                self.idp.update(uri, rat, method, body).await
            })
            .await?;
        if let Ok(Update::Answer(a)) = &update {
            let answered = ClientRecord::from_map(a.clone()).ok().and_then(|r| r.rat());
            c.take_rotated(self.cfg, answered)?;
        }
        Ok(update)
    }

    /// RFC 7592 delete.
    pub(super) async fn delete_client(
        &self,
        c: &mut ManagedClient,
    ) -> Result<std::result::Result<Delete, Refusal>> {
        self.with_token(c, Renew::Once, async |uri, rat| {
            self.idp.delete(uri, rat).await
        })
        .await
    }
}

/// The IdP's answer to reading `id` must be about `id`.
pub(super) fn same_client(id: &str, doc: &ClientRecord) -> Result<()> {
    if doc.client_id() == id {
        return Ok(());
    }
    Err(Error::Rejected(format!(
        "reading client {} answered with client {}: the stored registration_client_uri does not belong to the stored client",
        id.escape_debug(),
        doc.client_id().escape_debug()
    )))
}
