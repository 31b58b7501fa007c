//! The token a registration is authorised with: an Initial Access Token minted with the
//! admin token (revoked after use where the IdP allows), one given in `DCR_IAT`, none (open
//! registration), or a client-credentials token with `DCR_REGISTRATION_SCOPE`.

use super::session::Session;
use crate::config::{AdminAuth, RegistrationToken};
use crate::error::{Error, Result};
use crate::idp::admin::{Minted, Revoked};
use secrecy::SecretString;

/// The token a registration is authorised with, and where it came from.
pub(super) struct IatState {
    /// `None`: open registration.
    pub token: Option<SecretString>,
    pub minted: bool,
    pub reminted: bool,
    /// A minted IAT's id, for revoking it after use (Keycloak).
    pub id: Option<String>,
}

impl IatState {
    fn given(token: Option<SecretString>) -> IatState {
        IatState {
            token,
            minted: false,
            reminted: false,
            id: None,
        }
    }
}

impl Session<'_> {
    /// The token to register with, minted when none was given.
    pub(super) async fn registration_token(&self) -> Result<IatState> {
        Ok(match &self.cfg.credentials.iat {
            Some(RegistrationToken::Given(t)) => IatState::given(Some(t.clone())),
            Some(RegistrationToken::Open) => IatState::given(None),
            None => match &self.cfg.credentials.registration_scope {
                Some(scope) => IatState::given(Some(self.registration_access(scope).await?)),
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
        })
    }

    /// A fresh IAT in place of one the IdP rejected; the rejected one is revoked.
    pub(super) async fn remint(&self, t: &mut IatState) -> Result<()> {
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
        Ok(())
    }

    /// Mints an IAT with the admin token; a refused client-credentials token is fetched
    /// anew once. Returns the IAT and its id (Keycloak revokes by id).
    pub(super) async fn mint(&self) -> Result<Minted> {
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
    pub(super) async fn revoke_iat(&self, id: &str) {
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
            Ok((url, Revoked::Revoked)) => tracing::info!("revoked the used IAT at {url}"),
            Ok((url, Revoked::Refused(why))) => tracing::warn!(
                "could not revoke the used IAT at {url} ({why}); it expires on its own"
            ),
            Err(e) => tracing::warn!("could not revoke the used IAT ({e}); it expires on its own"),
        }
    }
}
