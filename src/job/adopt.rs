//! Taking over a client that exists at the IdP but not in our output: the requested
//! `DCR_CLIENT_ID` was taken (a lost answer, a lost volume), or another replica registered it
//! (`DCR_SHARED_CLIENT`). A new registration access token from the admin API, then an RFC
//! 7592 read.

use super::decide::{self, Action};
use super::managed::{ManagedClient, Refusal};
use super::output;
use super::register::Registered;
use super::session::Session;
use crate::error::{Error, Result};
use crate::idp::client::Read;
use crate::local::keyring::KeyRing;
use crate::record::ClientRecord;
use reqwest::Url;
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

impl Session<'_> {
    /// An adopted client, continued as a convergence: it was adopted with our own
    /// registration access token, which is saved before anything else.
    pub(super) async fn converge_adopted(
        &self,
        record: ClientRecord,
        ring: Option<&mut KeyRing>,
    ) -> Result<(Action, String)> {
        let uri = self.client_uri(&record).await?;
        output::save(self.cfg, &record, output::Trust::Ours)?;
        let current = record.clone();
        let client = ManagedClient::new(record, uri, true, true).ok_or_else(|| {
            Error::Rejected("the adopted client came without a registration access token".into())
        })?;
        self.converge(client, &current, ring, Action::Adopted, Some(&current))
            .await
    }

    pub(super) async fn adopted(&self, client_id: &str, why: &str) -> Result<Registered> {
        Ok(Registered {
            record: self.adopt(client_id, why).await?,
            adopted: true,
            uncertain: crate::idp::client::Uncertain::default(),
        })
    }

    /// Takes over `client_id`, which exists at the IdP but not in our output: a new
    /// registration access token from the admin API, then an RFC 7592 read.
    async fn adopt(&self, client_id: &str, why: &str) -> Result<ClientRecord> {
        let cfg = self.cfg;
        let template = match &cfg.endpoints().rat {
            Some(t)
                if decide::can_adopt(
                    true,
                    cfg.credentials.admin.is_some(),
                    cfg.policies.on_existing,
                ) =>
            {
                t
            }
            _ => {
                return Err(Error::Rejected(format!(
                    "client_id {client_id:?} already exists at the IdP ({why}) and this run holds no registration for it. \
                     Set an admin token and DCR_RAT_ENDPOINT (with DCR_ON_EXISTING=adopt) to take it over, restore {}, \
                     or delete the client at the IdP",
                    cfg.output.path.display()
                )));
            }
        };
        let rat_url = cfg.endpoint_for(template, "DCR_RAT_ENDPOINT", client_id)?;
        match self.take_over(client_id, &rat_url, why).await? {
            Some(record) => Ok(record),
            None => Err(Error::Rejected(format!(
                "client_id {client_id:?} was reported as existing ({why}) but the admin API does not know it ({rat_url} answered 404)"
            ))),
        }
    }

    /// A new registration access token for `client_id` from the admin API, then an RFC 7592
    /// read. `None`: the admin API does not know the client. Replicas sharing the client
    /// re-issue the same token, so a refused read is renewed again, a bounded number of times.
    async fn take_over(
        &self,
        client_id: &str,
        rat_url: &Url,
        why: &str,
    ) -> Result<Option<ClientRecord>> {
        let Some(rat) = self.reissue(rat_url).await? else {
            return Ok(None);
        };
        let uri = self.management_uri(client_id).await?;
        let mut known = Map::new();
        known.insert("client_id".into(), Value::String(client_id.to_string()));
        known.insert(
            "registration_client_uri".into(),
            Value::String(uri.to_string()),
        );
        known.insert(
            "registration_access_token".into(),
            Value::String(rat.expose_secret().to_string()),
        );
        let record = ClientRecord::from_map(known)
            .map_err(|e| Error::Rejected(format!("adopting client {client_id:?}: {e}")))?;
        let mut client = ManagedClient::new(record, uri, true, false)
            .ok_or_else(|| Error::Rejected("the re-issued token is empty".into()))?;
        let failed = match self.read_client(&mut client, self.renew_mode()).await? {
            Ok(Read::Current(current)) => {
                tracing::warn!(
                    "client {client_id} already existed at the IdP ({why}); adopted it with a re-issued registration access token"
                );
                client.overlay(self.cfg, current.fields())?;
                return Ok(Some(client.into_record()));
            }
            Ok(Read::NotFound(why)) | Err(Refusal { why, .. }) => why,
        };
        Err(Error::Rejected(format!(
            "adopting client {client_id:?}: reading it with a fresh registration access token failed ({failed})"
        )))
    }

    /// Replicas sharing a requested client_id: a replica that starts without the others'
    /// output takes the existing client over before minting an IAT it would waste. `None`:
    /// not that shape, or the client does not exist yet.
    pub(super) async fn adopt_first(
        &self,
        metadata: &Map<String, Value>,
    ) -> Result<Option<ClientRecord>> {
        let cfg = self.cfg;
        let (Some(_), Some(id), Some(template)) = (
            &cfg.policies.shared,
            metadata.get("client_id").and_then(Value::as_str),
            &cfg.endpoints().rat,
        ) else {
            return Ok(None);
        };
        if !decide::can_adopt(
            true,
            cfg.credentials.admin.is_some(),
            cfg.policies.on_existing,
        ) {
            return Ok(None);
        }
        let rat_url = cfg.endpoint_for(template, "DCR_RAT_ENDPOINT", id)?;
        self.take_over(
            id,
            &rat_url,
            "DCR_SHARED_CLIENT: another replica registered it",
        )
        .await
    }
}
