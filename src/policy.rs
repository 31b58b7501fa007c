//! The operator's choices about what the IdP holds (`DCR_ON_STALE`, `DCR_ON_EXISTING`,
//! `DCR_REDIRECT_UPDATE_MODE`): closed sets, each a clap `ValueEnum`. The job decides with
//! them (`job::decide`), drift is judged with the redirect mode (`reconcile`).

/// `DCR_ON_STALE`: what to do when the stored client is gone at the IdP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StalePolicy {
    Fail,
    Reregister,
}

/// `DCR_ON_EXISTING`: what to do when the requested client_id is already registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExistingPolicy {
    Adopt,
    Fail,
}

/// `DCR_REDIRECT_UPDATE_MODE`, as the BFF documents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RedirectMode {
    /// Update only when redirect URIs are configured and differ (as a set).
    Auto,
    /// Make the IdP's list exactly the configured one.
    Replace,
    /// Union of the IdP's list and the configured one, order kept, no duplicates.
    Merge,
    /// Never touch redirect URIs.
    None,
}
