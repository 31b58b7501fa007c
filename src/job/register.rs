//! Registering: mint an IAT (or use the given one), register (RFC 7591), and, when the
//! requested client_id turns out to exist, adopt it with a re-issued registration access token.

use super::decide::{self, Action, IatRejected, OnIatRejected};
use super::managed::{ManagedClient, Refusal};
use super::output;
use super::session::Session;
use crate::config::{AdminAuth, RegistrationToken};
use crate::error::{Error, Result};
use crate::idp::admin::Minted;
use crate::idp::client::{Read, Registration, display_name};
use crate::idp::profile::Profile;
use crate::local::keyring::KeyRing;
use crate::record::ClientRecord;
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use std::cell::Cell;

/// The token a registration is authorised with, and where it came from.
struct IatState {
    /// `None`: open registration.
    token: Option<SecretString>,
    minted: bool,
    reminted: bool,
    /// A minted IAT's id, for revoking it after use (Keycloak).
    id: Option<String>,
}

/// A registration's outcome: the record, and whether an existing client was adopted.
pub(super) struct Registered {
    pub record: ClientRecord,
    pub adopted: bool,
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
        let Registered { record, adopted } = match self.adopt_first(&metadata).await? {
            Some(record) => Registered {
                record,
                adopted: true,
            },
            None => self.register(&metadata, &endpoint).await?,
        };
        if adopted {
            let uri = self.client_uri(&record).await?;
            // Adopted with our own registration access token: make it ours before anything else.
            output::save(cfg, &record)?;
            let current = record.clone();
            let client = ManagedClient::new(record, uri, true, true).ok_or_else(|| {
                Error::Rejected(
                    "the adopted client came without a registration access token".into(),
                )
            })?;
            return self
                .converge(client, &current, ring, Action::Adopted, Some(&current))
                .await;
        }
        let id = record.client_id().to_string();
        if metadata.get("client_id").is_none()
            && std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        {
            tracing::warn!(
                "registered a new client {} with an id the IdP assigned, in Kubernetes: every pod that starts without \
                 {} (an emptyDir, a new node) registers ANOTHER client. Keep it on a volume all pods share, register \
                 once with a Job, or use DCR_CLIENT_ID where the IdP honours it (docs/kubernetes.md)",
                id.escape_debug(),
                cfg.output.path.display()
            );
        }
        if let Some(asked) = metadata.get("client_id").and_then(Value::as_str)
            && asked != id
        {
            tracing::warn!(
                "the IdP ignored the requested client_id {} and assigned {}: a run that loses {} registers another \
                 client (RFC 7591 lets a server choose the id; keep the output on a persistent volume)",
                asked.escape_debug(),
                id.escape_debug(),
                cfg.output.path.display()
            );
        }
        // Recorded first: whatever fails next, the client is never left unrecorded.
        output::save(cfg, &record)?;
        self.prove(&record, ring.as_deref().map(|r| (r, plan.as_ref())))
            .await?;
        let keys = ring.as_deref().zip(plan.as_ref());
        let extra: Map<String, Value> = [
            (
                "asked".to_string(),
                Value::Object(super::converge::asked(&metadata)),
            ),
            (
                "origin".to_string(),
                Value::String(output::ORIGIN_REGISTERED.into()),
            ),
        ]
        .into_iter()
        .collect();
        output::persist(
            cfg,
            record.clone(),
            action,
            keys,
            None,
            extra,
            self.known_registration_endpoint(),
        )?;
        self.check_readback(&metadata, record.fields())?;
        Ok((action, id))
    }

    /// Mints an IAT with the admin token; a refused client-credentials token is fetched
    /// anew once. Returns the IAT and its id (Keycloak revokes by id).
    async fn mint(&self) -> Result<Minted> {
        let cfg = self.cfg;
        let endpoint = cfg.endpoints().iat.clone().ok_or_else(|| {
            Error::Config(format!(
                "DCR_PROFILE={} has no IAT endpoint: set DCR_IAT_ENDPOINT, or DCR_IAT",
                cfg.profile().name()
            ))
        })?;
        let minted = self
            .as_admin(&endpoint, |admin| {
                let endpoint = &endpoint;
                async move {
                    self.idp
                        .mint_iat(endpoint, &admin, &cfg.credentials.mint, cfg.mint_style())
                        .await
                }
            })
            .await?;
        tracing::info!(
            "minted an IAT at {endpoint} (expires in {}s, {} use(s))",
            cfg.credentials.mint.expires_in,
            cfg.credentials.mint.max_uses
        );
        Ok(minted)
    }

    /// An ordinary access token for registering (`DCR_REGISTRATION_SCOPE`): the admin client's
    /// client-credentials token with that scope.
    async fn registration_access(&self, scope: &str) -> Result<SecretString> {
        let Some(AdminAuth::ClientCredentials {
            client_id,
            secret,
            method,
            resource,
            ..
        }) = &self.cfg.credentials.admin
        else {
            return Err(Error::Config(
                "DCR_REGISTRATION_SCOPE needs DCR_ADMIN_CLIENT_ID and DCR_ADMIN_CLIENT_SECRET"
                    .into(),
            ));
        };
        let endpoint = self.token_endpoint().await?;
        let (token, _) = self
            .idp
            .client_credentials(
                &endpoint,
                client_id,
                secret,
                *method,
                Some(scope),
                resource.as_deref(),
            )
            .await?;
        tracing::info!(
            "obtained a registration token for {client_id} (scope {scope}) from {endpoint}"
        );
        Ok(token)
    }

    /// `mint-iat`: one IAT, nothing else.
    pub async fn mint_only(&self) -> Result<SecretString> {
        Ok(self.mint().await?.token)
    }

    /// Revokes a used IAT where the IdP supports it (Keycloak); a failure only warns.
    async fn revoke_iat(&self, id: &str) {
        let Some(template) = &self.cfg.endpoints().iat_revoke else {
            return;
        };
        let outcome = async {
            let url = self.cfg.endpoint_for(
                &template.replace("{id}", "{client_id}"),
                "DCR_IAT_ENDPOINT",
                id,
            )?;
            let admin = self.admin_token().await?;
            Ok::<_, Error>((url.clone(), self.idp.revoke_iat(&url, &admin).await?))
        }
        .await;
        match outcome {
            Ok((url, None)) => tracing::info!("revoked the used IAT at {url}"),
            Ok((url, Some(why))) => tracing::warn!(
                "could not revoke the used IAT at {url} ({why}); it expires on its own"
            ),
            Err(e) => tracing::warn!("could not revoke the used IAT ({e}); it expires on its own"),
        }
    }

    /// Registers, minting an IAT first when none was given, and once more if the IdP rejects
    /// an IAT we minted.
    async fn register(&self, metadata: &Map<String, Value>, endpoint: &Url) -> Result<Registered> {
        let mut token = match &self.cfg.credentials.iat {
            Some(RegistrationToken::Given(t)) => IatState {
                token: Some(t.clone()),
                minted: false,
                reminted: false,
                id: None,
            },
            Some(RegistrationToken::Open) => IatState {
                token: None,
                minted: false,
                reminted: false,
                id: None,
            },
            None => match &self.cfg.credentials.registration_scope {
                Some(scope) => IatState {
                    token: Some(self.registration_access(scope).await?),
                    minted: false,
                    reminted: false,
                    id: None,
                },
                None => {
                    let Minted { token, id } = self.mint().await?;
                    IatState {
                        token: Some(token),
                        minted: true,
                        reminted: false,
                        id,
                    }
                }
            },
        };
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
        let maybe_committed = Cell::new(false);
        let fixed_id = metadata.get("client_id").and_then(Value::as_str);
        let name = display_name(metadata);
        loop {
            // A requested client_id only stops a duplicate where the IdP honours it
            // (EmpowerNow); RFC 7591 lets any other server assign its own.
            let honoured_id = fixed_id.is_some() && cfg.profile() == Profile::EmpowerNow;
            let safe =
                decide::blind_retry_safe(honoured_id, t.minted, cfg.credentials.mint.max_uses);
            let result = self
                .idp
                .register(endpoint, t.token.as_ref(), metadata, safe, &maybe_committed)
                .await?;
            let why = match result {
                Registration::Created(record) => {
                    return Ok(Registered {
                        record,
                        adopted: false,
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
                maybe_committed: maybe_committed.get(),
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
                OnIatRejected::NeedsToken => {
                    return Err(Error::Rejected(format!(
                        "the IdP requires a token to register ({why}); DCR_IAT=none means open registration. \
                         Set DCR_IAT, or an admin token so this tool mints one"
                    )));
                }
                OnIatRejected::AdoptOurOwn => {
                    // Our own earlier attempt most likely created the client and spent the IAT.
                    let why = format!("an earlier attempt got no answer, then {why}");
                    return self.adopted(fixed_id.unwrap_or_default(), &why).await;
                }
                OnIatRejected::LikelyOrphan => {
                    return Err(Error::Rejected(format!(
                        "the IAT was rejected ({why}) after an earlier registration attempt got no answer: \
                         that attempt most likely created the client and spent the IAT. Look for an orphaned client {name:?} \
                         at the IdP, delete it, and run again (with DCR_CLIENT_ID and an admin token set, it is adopted instead)"
                    )));
                }
                OnIatRejected::Remint => {
                    tracing::warn!("the IdP rejected the IAT ({why}); minting a fresh one");
                    let Minted { token, id } = self.mint().await?;
                    if let Some(old) =
                        t.id.replace(id.unwrap_or_default())
                            .filter(|o| !o.is_empty())
                    {
                        self.revoke_iat(&old).await;
                    }
                    t.token = Some(token);
                    t.minted = true;
                    t.reminted = true;
                }
                OnIatRejected::MintedRejected => {
                    return Err(Error::Rejected(format!(
                        "the IdP rejected a freshly minted IAT ({why}); check that IATs from {} are accepted at {endpoint}",
                        cfg.endpoints()
                            .iat
                            .as_ref()
                            .map(Url::as_str)
                            .unwrap_or("the IAT endpoint")
                    )));
                }
                OnIatRejected::GivenRejected if cfg.credentials.registration_scope.is_some() => {
                    return Err(Error::Rejected(format!(
                        "the IdP refused the registration token fetched with DCR_REGISTRATION_SCOPE ({why}): give the \
                         admin client that scope at the IdP, or check which scope its registration endpoint requires"
                    )));
                }
                OnIatRejected::GivenRejected => {
                    return Err(Error::Rejected(format!(
                        "DCR_IAT was rejected by the IdP ({why}): it is expired, used up or unknown. \
                         Mint a fresh IAT, or set an admin token so this tool mints one"
                    )));
                }
            }
        }
    }

    async fn adopted(&self, client_id: &str, why: &str) -> Result<Registered> {
        Ok(Registered {
            record: self.adopt(client_id, why).await?,
            adopted: true,
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
    async fn adopt_first(&self, metadata: &Map<String, Value>) -> Result<Option<ClientRecord>> {
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
