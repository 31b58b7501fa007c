//! The decision tables of a run, as pure functions of what is known: what a run reports, when
//! a registration may be re-sent, and what to do when the IdP refuses a token or no longer
//! knows the stored client. The flows ask; these answer; the tests below pin every row.

use crate::policy::{ExistingPolicy, StalePolicy};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A new client was registered.
    Registered,
    /// The stored client was confirmed at the IdP (RFC 7592 read) and needed no change.
    Verified,
    /// The stored client has no registration access token, so it was kept unchecked.
    Trusted,
    /// The registration access token is refused and cannot be renewed, but the credentials
    /// are proven at the token endpoint: kept as they are, nothing can be updated.
    Unmanaged,
    /// The stored client was gone or force-replaced, and a new one was registered.
    Reregistered,
    /// `DCR_CLIENT_ID` already existed at the IdP and was taken over through the admin API.
    Adopted,
    /// Drift was corrected with an RFC 7592 update.
    Updated,
    /// A new signing key was published (and the client updated).
    Rotated,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Registered => "registered",
            Action::Verified => "verified",
            Action::Trusted => "trusted",
            Action::Unmanaged => "unmanaged",
            Action::Reregistered => "re-registered",
            Action::Adopted => "adopted",
            Action::Updated => "updated",
            Action::Rotated => "rotated",
        }
    }

    /// The `status` label of the pushed metric.
    pub fn metric_status(self) -> &'static str {
        match self {
            Action::Registered | Action::Reregistered => "registered",
            Action::Verified | Action::Trusted | Action::Unmanaged | Action::Adopted => "verified",
            Action::Updated => "updated",
            Action::Rotated => "rotated",
        }
    }
}

/// What a run that started as `base` reports after reconciling: an adoption stays an
/// adoption; otherwise a key change outranks a metadata update, which outranks the base.
pub fn reported_action(base: Action, updated: bool, keys_changed: bool) -> Action {
    match base {
        Action::Adopted => Action::Adopted,
        _ if keys_changed => Action::Rotated,
        _ if updated => Action::Updated,
        _ => base,
    }
}

/// Whether a registration that may have reached the IdP without a usable answer can be
/// re-sent without risking a duplicate: only when the IdP must refuse the second one, because
/// the first spent the single-use IAT this run minted for it. A requested client_id does not
/// count: a server may assign its own (RFC 7591 §3.2.1), and nothing shows in advance whether
/// this one honours it.
pub fn blind_retry_safe(minted_iat: bool, max_uses: u64) -> bool {
    minted_iat && max_uses == 1
}

/// What is known when the IdP rejects the IAT of a registration.
#[derive(Debug, Clone, Copy, Default)]
pub struct IatRejected {
    /// Registration without a token (`DCR_IAT=none`).
    pub open: bool,
    /// An earlier attempt of this registration got no answer.
    pub maybe_committed: bool,
    /// `DCR_CLIENT_ID` is set.
    pub fixed_client_id: bool,
    /// An admin token is configured.
    pub admin: bool,
    pub on_existing: Option<ExistingPolicy>,
    /// An admin token and an IAT endpoint: a fresh IAT can be minted.
    pub can_mint: bool,
    /// This run minted the rejected IAT.
    pub minted: bool,
    /// This run already minted a replacement once.
    pub reminted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnIatRejected {
    /// Open registration is not allowed here: a token is needed.
    NeedsToken,
    /// Our own unanswered attempt most likely created the client: adopt it.
    AdoptOurOwn,
    /// Our own unanswered attempt most likely created a client we cannot adopt: stop, naming
    /// the likely orphan.
    LikelyOrphan,
    /// Mint a fresh IAT and try once more.
    Remint,
    /// The IAT we were given is dead.
    GivenRejected,
    /// An IAT we minted was refused (twice, or with no way to mint again).
    MintedRejected,
}

pub fn on_iat_rejected(f: IatRejected) -> OnIatRejected {
    if f.open {
        OnIatRejected::NeedsToken
    } else if f.maybe_committed
        && f.fixed_client_id
        && f.admin
        && f.on_existing == Some(ExistingPolicy::Adopt)
    {
        OnIatRejected::AdoptOurOwn
    } else if f.maybe_committed {
        OnIatRejected::LikelyOrphan
    } else if f.can_mint && !f.reminted {
        OnIatRejected::Remint
    } else if f.minted {
        OnIatRejected::MintedRejected
    } else {
        OnIatRejected::GivenRejected
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRatRefused {
    /// Re-issue the registration access token with the admin token.
    Renew,
    /// The admin token could renew it, but the record is not proven ours: do not spend admin
    /// power on a client named by a file anyone on the volume could have written.
    Unproven,
    /// No admin token or re-issue endpoint: find out whether the client still exists (its
    /// credentials at the token endpoint), then apply `DCR_ON_STALE`.
    CannotRenew,
}

/// The IdP refused the stored registration access token (RFC 7592 answers so for a revoked
/// token and for a deleted client alike). `proven`: the record is ours (DCR_CLIENT_ID names
/// its client, its seal verifies, or the IdP just accepted its token for that client).
pub fn on_rat_refused(admin: bool, rat_endpoint: bool, proven: bool) -> OnRatRefused {
    match (admin && rat_endpoint, proven) {
        (true, true) => OnRatRefused::Renew,
        (true, false) => OnRatRefused::Unproven,
        (false, _) => OnRatRefused::CannotRenew,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTokenRefused {
    /// The credentials still authenticate: the app can run with them, and registering
    /// another client would duplicate this one. Keep it, unmanaged, and say so loudly.
    KeepUnmanaged,
    /// The credentials are refused: the client is gone. Register anew (`DCR_ON_STALE`).
    Reregister,
    /// The credentials are refused; stop, naming the admin action (`DCR_ON_STALE=fail`).
    Fail,
    /// Whether the client exists is not proven: keep the stored credentials as they are
    /// (they may well work), say so, and never register a second client.
    NotProven,
}

/// The token was refused and cannot be renewed. `exists`: what a proof at the token
/// endpoint showed of the stored credentials (`Some(true)`: they authenticate; `None`: no
/// proof could tell).
pub fn on_token_refused(exists: Option<bool>, on_stale: StalePolicy) -> OnTokenRefused {
    match (exists, on_stale) {
        (Some(true), _) => OnTokenRefused::KeepUnmanaged,
        (None, _) => OnTokenRefused::NotProven,
        (Some(false), StalePolicy::Reregister) => OnTokenRefused::Reregister,
        (Some(false), StalePolicy::Fail) => OnTokenRefused::Fail,
    }
}

/// Whether an existing `DCR_CLIENT_ID` can be taken over: it needs the admin re-issue
/// endpoint, an admin token, and `DCR_ON_EXISTING=adopt`.
pub fn can_adopt(rat_endpoint: bool, admin: bool, on_existing: ExistingPolicy) -> bool {
    rat_endpoint && admin && on_existing == ExistingPolicy::Adopt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_action_table() {
        use Action::*;
        assert_eq!(reported_action(Verified, false, false), Verified);
        assert_eq!(reported_action(Verified, true, false), Updated);
        assert_eq!(reported_action(Verified, true, true), Rotated);
        assert_eq!(reported_action(Registered, false, true), Rotated);
        assert_eq!(reported_action(Adopted, true, true), Adopted);
        assert_eq!(reported_action(Reregistered, false, false), Reregistered);
    }

    #[test]
    fn blind_retries_only_when_a_duplicate_is_refused() {
        assert!(blind_retry_safe(true, 1));
        assert!(!blind_retry_safe(true, 2));
        assert!(!blind_retry_safe(false, 1));
    }

    #[test]
    fn iat_rejection_table() {
        let base = IatRejected {
            on_existing: Some(ExistingPolicy::Adopt),
            ..IatRejected::default()
        };
        let row = |f: IatRejected| on_iat_rejected(f);
        assert_eq!(
            row(IatRejected {
                open: true,
                can_mint: true,
                ..base
            }),
            OnIatRejected::NeedsToken
        );
        let committed = IatRejected {
            maybe_committed: true,
            fixed_client_id: true,
            admin: true,
            can_mint: true,
            ..base
        };
        assert_eq!(row(committed), OnIatRejected::AdoptOurOwn);
        assert_eq!(
            row(IatRejected {
                on_existing: Some(ExistingPolicy::Fail),
                ..committed
            }),
            OnIatRejected::LikelyOrphan
        );
        assert_eq!(
            row(IatRejected {
                fixed_client_id: false,
                ..committed
            }),
            OnIatRejected::LikelyOrphan
        );
        let mintable = IatRejected {
            can_mint: true,
            minted: true,
            ..base
        };
        assert_eq!(row(mintable), OnIatRejected::Remint);
        assert_eq!(
            row(IatRejected {
                reminted: true,
                ..mintable
            }),
            OnIatRejected::MintedRejected
        );
        assert_eq!(row(base), OnIatRejected::GivenRejected);
    }

    #[test]
    fn refused_rat_table() {
        use OnRatRefused::*;
        assert_eq!(on_rat_refused(true, true, true), Renew);
        assert_eq!(on_rat_refused(true, true, false), Unproven);
        assert_eq!(on_rat_refused(true, false, true), CannotRenew);
        assert_eq!(on_rat_refused(false, true, true), CannotRenew);
    }

    #[test]
    fn a_client_that_still_authenticates_is_never_registered_twice() {
        use OnTokenRefused::*;
        use StalePolicy::{Fail as F, Reregister as R};
        assert_eq!(on_token_refused(Some(true), R), KeepUnmanaged);
        assert_eq!(on_token_refused(Some(true), F), KeepUnmanaged);
        assert_eq!(on_token_refused(Some(false), R), Reregister);
        assert_eq!(on_token_refused(None, R), NotProven);
        assert_eq!(on_token_refused(None, F), NotProven);
        assert_eq!(on_token_refused(Some(false), F), Fail);
    }

    #[test]
    fn adoption_needs_all_three() {
        assert!(can_adopt(true, true, ExistingPolicy::Adopt));
        assert!(!can_adopt(false, true, ExistingPolicy::Adopt));
        assert!(!can_adopt(true, false, ExistingPolicy::Adopt));
        assert!(!can_adopt(true, true, ExistingPolicy::Fail));
    }
}
