//! Registering: mint an IAT (or use the given one), register (RFC 7591), and, when the
//! requested client_id turns out to exist, adopt it with a re-issued registration access token.

use super::converge::asked;
use super::decide::{self, Action, IatRejected, OnIatRejected};
use super::iat::IatState;
use super::output::{self, Persist, Trust};
use super::session::Session;
use crate::error::{Error, Result};
use crate::idp::client::{Registration, Uncertain, display_name};
use crate::local::keyring::KeyRing;
use crate::record::ClientRecord;
use reqwest::Url;
use serde_json::{Map, Value};
use std::cell::Cell;

/// A registration's outcome: the record, and whether an existing client was adopted.
pub(super) struct Registered {
    pub record: ClientRecord,
    pub adopted: bool,
    /// An attempt before the one that registered got no usable answer.
    pub uncertain: Uncertain,
}

impl Session<'_> {
    /// Registers the desired client (with the keys of the ring's plan) and persists it. An
    /// adoption continues as a reconciliation of the adopted client.
    pub(super) async fn register_flow(
        &self,
        action: Action,
        mut ring: Option<&mut KeyRing>,
    ) -> Result<(Action, String)> {
        let cfg = self.cfg;
        if cfg.credentials.iat.is_none() && cfg.credentials.admin.is_none() {
            return Err(Error::Config(format!(
                "registering a client needs DCR_IAT (an Initial Access Token) or BOOTSTRAP_ADMIN_TOKEN (to mint one); \
                 neither is set and {} holds no usable registration (DCR_IAT=none registers without a token)",
                cfg.output.path.display()
            )));
        }
        let plan = match ring.as_deref_mut() {
            Some(r) => Some(r.plan(self.now, None)?),
            None => None,
        };
        let metadata = self.desired(plan.as_ref()).await;
        let endpoint = self.registration_endpoint().await?;
        if let Some(key) = plan.as_ref().and_then(|p| p.publish.first()) {
            self.check_signing_alg(key.alg)?;
        }
        self.check_auth_method(
            metadata
                .get("token_endpoint_auth_method")
                .and_then(Value::as_str),
        )?;
        let Registered {
            record,
            adopted,
            uncertain,
        } = match self.adopt_first(&metadata).await? {
            Some(record) => Registered {
                record,
                adopted: true,
                uncertain: Uncertain::default(),
            },
            None => self.register(&metadata, &endpoint).await?,
        };
        if adopted {
            return self.converge_adopted(record, ring).await;
        }
        // Recorded first, as ours: whatever fails next (a proof, a file), the client is never
        // left unrecorded, and the next run knows this tool made it.
        let mut record = record;
        record.set_meta(serde_json::json!({ "origin": output::ORIGIN_REGISTERED }));
        output::save(cfg, &record, Trust::Ours)?;
        self.check_new_id(&metadata, &record, uncertain)?;
        self.prove(&record, ring.as_deref().map(|r| (r, plan.as_ref())))
            .await?;
        // What the IdP registered other than asked is settled now, like a correction it did
        // not take: the next start does not send it as an update.
        let settled =
            crate::reconcile::unsettled(&metadata, record.fields(), self.compare(&Map::new()));
        let extra: Map<String, Value> = [
            ("asked".to_string(), Value::Object(asked(&metadata))),
            (
                "origin".to_string(),
                Value::String(output::ORIGIN_REGISTERED.into()),
            ),
            ("settled".to_string(), Value::Object(settled)),
        ]
        .into_iter()
        .collect();
        output::persist(
            cfg,
            record.clone(),
            Persist {
                action,
                keys: ring.as_deref().zip(plan.as_ref()),
                previous: None,
                extra,
                registration_endpoint: self.known_registration_endpoint(),
                trust: Trust::Ours,
            },
        )?;
        self.check_readback(&metadata, record.fields())?;
        Ok((action, record.client_id().to_string()))
    }

    /// What a new client's id means: an id the IdP assigned is found again only through the
    /// output; one it assigned in place of the requested `DCR_CLIENT_ID` shows that this IdP
    /// ignores requested ids, so replicas cannot share a client that way (exit 3, once the
    /// client is recorded), and an earlier uncertain attempt may have left an orphan.
    fn check_new_id(
        &self,
        metadata: &Map<String, Value>,
        record: &ClientRecord,
        uncertain: Uncertain,
    ) -> Result<()> {
        let cfg = self.cfg;
        let id = record.client_id().escape_debug().to_string();
        let out = cfg.output.path.display();
        let Some(asked) = metadata.get("client_id").and_then(Value::as_str) else {
            if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
                tracing::warn!(
                    "registered a new client {id} with an id the IdP assigned, in Kubernetes: every pod that starts \
                     without {out} (an emptyDir, a new node) registers ANOTHER client. Keep it on a volume all pods \
                     share, register once with a Job, or use DCR_CLIENT_ID where the IdP honours it (docs/kubernetes.md)"
                );
            }
            return Ok(());
        };
        if asked == record.client_id() {
            return Ok(());
        }
        let asked = asked.escape_debug();
        let orphan = match uncertain.0 {
            Some(_) => format!(
                "; {} got no usable answer and may have left another client {} at the IdP: look for it",
                uncertain.at(),
                display_name(metadata).escape_debug()
            ),
            None => String::new(),
        };
        if cfg.policies.shared.is_some() {
            return Err(Error::Rejected(format!(
                "the IdP ignored the requested client_id {asked} and assigned {id}{orphan}: replicas cannot share a \
                 client by DCR_CLIENT_ID at this IdP, each would register its own. Client {id} is recorded in {out}. \
                 Register once with a Job, or put DCR_OUTPUT on a ReadWriteMany volume (docs/kubernetes.md)"
            )));
        }
        tracing::warn!(
            "the IdP ignored the requested client_id {asked} and assigned {id}{orphan}: a run that loses {out} \
             registers another client (RFC 7591 lets a server choose the id; keep the output on a persistent volume)"
        );
        Ok(())
    }

    /// Registers, minting an IAT first when none was given, and once more if the IdP rejects
    /// an IAT we minted.
    async fn register(&self, metadata: &Map<String, Value>, endpoint: &Url) -> Result<Registered> {
        let mut token = self.registration_token().await?;
        let outcome = self.register_with(metadata, endpoint, &mut token).await;
        // A minted IAT has done its job (or failed at it): revoke it where the IdP allows.
        if let Some(id) = &token.id {
            self.revoke_iat(id).await;
        }
        outcome
    }

    async fn register_with(
        &self,
        metadata: &Map<String, Value>,
        endpoint: &Url,
        t: &mut IatState,
    ) -> Result<Registered> {
        let cfg = self.cfg;
        let uncertain = Cell::new(Uncertain::default());
        let fixed_id = metadata.get("client_id").and_then(Value::as_str);
        loop {
            // A requested client_id does not stop a duplicate: RFC 7591 lets a server assign
            // its own, and whether this one honours it is not known before it answers.
            let safe = decide::blind_retry_safe(t.minted, cfg.credentials.mint.max_uses);
            let result = self
                .idp
                .register(endpoint, t.token.as_ref(), metadata, safe, &uncertain)
                .await?;
            let why = match result {
                Registration::Created(record) => {
                    return Ok(Registered {
                        record,
                        adopted: false,
                        uncertain: uncertain.get(),
                    });
                }
                Registration::AlreadyExists(why) => {
                    let Some(id) = fixed_id else {
                        return Err(Error::Rejected(format!("registration rejected ({why})")));
                    };
                    return self.adopted(id, &why).await;
                }
                Registration::IatRejected(why) => why,
            };
            let facts = IatRejected {
                open: t.token.is_none(),
                maybe_committed: uncertain.get().0.is_some(),
                fixed_client_id: fixed_id.is_some(),
                admin: cfg.credentials.admin.is_some(),
                on_existing: Some(cfg.policies.on_existing),
                can_mint: cfg.credentials.admin.is_some()
                    && cfg.endpoints().iat.is_some()
                    && cfg.credentials.registration_scope.is_none(),
                minted: t.minted,
                reminted: t.reminted,
            };
            match decide::on_iat_rejected(facts) {
                OnIatRejected::AdoptOurOwn => {
                    // Our own earlier attempt most likely created the client and spent the IAT.
                    let why = format!("{} got no usable answer, then {why}", uncertain.get().at());
                    return self.adopted(fixed_id.unwrap_or_default(), &why).await;
                }
                OnIatRejected::Remint => {
                    tracing::warn!("the IdP rejected the IAT ({why}); minting a fresh one");
                    self.remint(t).await?;
                }
                other => {
                    return Err(self.iat_rejected(
                        other,
                        &why,
                        metadata,
                        endpoint,
                        uncertain.get(),
                    ));
                }
            }
        }
    }

    /// The error for a rejected IAT that ends the run.
    fn iat_rejected(
        &self,
        decision: OnIatRejected,
        why: &str,
        metadata: &Map<String, Value>,
        endpoint: &Url,
        uncertain: Uncertain,
    ) -> Error {
        let cfg = self.cfg;
        let name = display_name(metadata);
        Error::Rejected(match decision {
            OnIatRejected::NeedsToken => format!(
                "the IdP requires a token to register ({why}); DCR_IAT=none means open registration. \
                 Set DCR_IAT, or an admin token so this tool mints one"
            ),
            OnIatRejected::LikelyOrphan => format!(
                "the IAT was rejected ({why}) after {} got no usable answer: that attempt most likely created the \
                 client and spent the IAT, so no fresh IAT is minted. Look for an orphaned client {name:?} registered \
                 then at the IdP, delete it, and run again (with DCR_CLIENT_ID, an admin token and DCR_RAT_ENDPOINT \
                 set, it is adopted instead)",
                uncertain.at()
            ),
            OnIatRejected::MintedRejected => format!(
                "the IdP rejected a freshly minted IAT ({why}); check that IATs from {} are accepted at {endpoint}",
                cfg.endpoints()
                    .iat
                    .as_ref()
                    .map(Url::as_str)
                    .unwrap_or("the IAT endpoint")
            ),
            OnIatRejected::GivenRejected if cfg.credentials.registration_scope.is_some() => {
                format!(
                    "the IdP refused the registration token fetched with DCR_REGISTRATION_SCOPE ({why}): give the \
                 admin client that scope at the IdP, or check which scope its registration endpoint requires"
                )
            }
            OnIatRejected::GivenRejected => format!(
                "DCR_IAT was rejected by the IdP ({why}): it is expired, used up or unknown. \
                 Mint a fresh IAT, or set an admin token so this tool mints one"
            ),
            OnIatRejected::AdoptOurOwn | OnIatRejected::Remint => {
                format!("the IAT was rejected ({why})")
            }
        })
    }
}
