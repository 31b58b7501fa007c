//! A client secret with an end (`client_secret_expires_at`, RFC 7591 §3.2.1): warned about
//! as it nears, renewed before it where the IdP issues a new secret on an RFC 7592 update
//! (RFC 7592 §2.2 lets it), and named as the cause once it has passed. Python OP servers
//! expire secrets after a day or a month; Keycloak's rotation policy after 30 days.

use super::managed::ManagedClient;
use super::session::Session;
use crate::error::{Error, Result};
use crate::idp::UpdateMethod;
use crate::idp::client::Update;
use crate::reconcile;
use crate::record::ClientRecord;
use serde_json::{Map, Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// When a record's secret stops working; `None`: it has none, or it never expires (0).
pub(super) fn secret_expiry(record: &ClientRecord) -> Option<SystemTime> {
    record.client_secret()?;
    let at = record.get("client_secret_expires_at")?.as_u64()?;
    (at > 0).then(|| UNIX_EPOCH + Duration::from_secs(at))
}

fn show(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A sentence naming an expired secret as the cause of a refusal, or nothing.
pub(super) fn expired_cause(record: &ClientRecord, now: SystemTime) -> String {
    match secret_expiry(record) {
        Some(at) if at <= now => format!(
            "; its client secret expired at {} (client_secret_expires_at)",
            show(at)
        ),
        _ => String::new(),
    }
}

impl Session<'_> {
    /// Renews the secret when its end is within `DCR_SECRET_RENEW_BEFORE`. `true`: a new one
    /// is saved (and is proven before the run says so). An IdP that issues none on update gets
    /// a warning while time is left, and exit 3 once the secret has expired.
    pub(super) async fn keep_secret_fresh(
        &self,
        client: &mut ManagedClient,
        current: &ClientRecord,
    ) -> Result<bool> {
        let Some(at) = secret_expiry(client.record()) else {
            return Ok(false);
        };
        let lead = self.cfg.policies.secret_renew_before;
        let now = SystemTime::now();
        if now + lead < at {
            return Ok(false);
        }
        let old = client.record().client_secret().map(str::to_string);
        let renewed = self.renew_secret(client, current).await?;
        let fresh = client.record().client_secret().map(str::to_string) != old
            && secret_expiry(client.record()).is_none_or(|new| new >= at);
        if renewed && fresh {
            tracing::info!(
                "renewed the client secret of {} before it expired at {}",
                client.id(),
                show(at)
            );
            return Ok(true);
        }
        let id = client.id();
        if at <= now {
            return Err(Error::Rejected(format!(
                "the client secret of {id} expired at {} (client_secret_expires_at) and the IdP issued no new one \
                 on an RFC 7592 update: the client cannot authenticate. Register anew (DCR_FORCE_REPLACE=true for \
                 one run), or issue a new secret at the IdP and store it in {}",
                show(at),
                self.cfg.output.path.display()
            )));
        }
        tracing::warn!(
            "the client secret of {id} expires at {} and the IdP issued no new one on an RFC 7592 update: register \
             anew before then (DCR_FORCE_REPLACE=true for one run), or issue a new secret at the IdP",
            show(at)
        );
        Ok(false)
    }

    /// One update that changes no metadata (PUT: the client as the IdP holds it; PATCH: its
    /// name), read back. `false`: the IdP does not update clients.
    async fn renew_secret(
        &self,
        client: &mut ManagedClient,
        current: &ClientRecord,
    ) -> Result<bool> {
        let method = self.cfg.policies.update_method;
        let body = match method {
            UpdateMethod::Put => reconcile::put_body(
                current.fields(),
                &Map::new(),
                client.id(),
                client.record().client_secret(),
                self.dialect(),
            ),
            UpdateMethod::Patch => {
                let name = current
                    .get("client_name")
                    .cloned()
                    .unwrap_or(json!(client.id()));
                [("client_name".to_string(), name)].into_iter().collect()
            }
        };
        match self
            .update_client(client, self.renew_mode(), method, &body)
            .await?
        {
            Ok(Update::Answer(answer)) => client.overlay(self.cfg, &answer)?,
            Ok(_) | Err(_) => return Ok(false),
        }
        let after = self
            .read_current(client, "was updated for a new secret")
            .await?;
        client.overlay(self.cfg, after.fields())?;
        client.save(self.cfg)?;
        Ok(after.get("client_secret").and_then(Value::as_str).is_some())
    }
}
