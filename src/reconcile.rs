//! Drift: what we want registered against what the IdP holds. Pure functions, no I/O.

use crate::policy::RedirectMode;
use serde_json::{Map, Value};

/// Fields a client cannot change after registration.
const FIXED: &[&str] = &["client_id"];

/// Members RFC 7591 §2 and OIDC Registration §2 define as single strings: checked as such
/// before sending, and sent back as strings in a PUT when a server answered an array.
pub const STRING_MEMBERS: &[&str] = &[
    "client_id",
    "client_name",
    "client_uri",
    "logo_uri",
    "tos_uri",
    "policy_uri",
    "jwks_uri",
    "software_id",
    "software_version",
    "software_statement",
    "token_endpoint_auth_method",
    "token_endpoint_auth_signing_alg",
    "application_type",
    "sector_identifier_uri",
    "subject_type",
    "id_token_signed_response_alg",
    "id_token_encrypted_response_alg",
    "id_token_encrypted_response_enc",
    "userinfo_signed_response_alg",
    "userinfo_encrypted_response_alg",
    "userinfo_encrypted_response_enc",
    "request_object_signing_alg",
    "request_object_encryption_alg",
    "request_object_encryption_enc",
    "initiate_login_uri",
    "scope",
];

/// Server-owned fields an RFC 7592 §2.2 PUT must not contain.
const NOT_IN_PUT: &[&str] = &[
    "registration_access_token",
    "registration_client_uri",
    "client_secret_expires_at",
    "client_id_issued_at",
];

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn as_set(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

fn scope_set(v: Option<&Value>) -> Vec<String> {
    as_set(
        v.and_then(Value::as_str)
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    )
}

/// Keys compared by (kid, thumbprint): a relabelled kid matters to the BFF, member order not.
fn jwks_set(v: Option<&Value>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = v
        .and_then(|j| j.get("keys"))
        .and_then(Value::as_array)
        .map(|ks| {
            ks.iter()
                .map(|k| {
                    (
                        k.get("kid")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        crate::local::keys::thumbprint(k),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn redirect_change(
    want: &Value,
    have: Option<&Value>,
    mode: RedirectMode,
    ordered: bool,
) -> Option<Value> {
    let want_list = strings(Some(want));
    let have_list = strings(have);
    let to_value = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
    match mode {
        RedirectMode::None => None,
        RedirectMode::Auto => {
            (as_set(want_list.clone()) != as_set(have_list)).then(|| want.clone())
        }
        RedirectMode::Replace if !ordered => {
            (as_set(want_list.clone()) != as_set(have_list)).then(|| want.clone())
        }
        RedirectMode::Replace => (want_list != have_list).then(|| want.clone()),
        RedirectMode::Merge => {
            let mut merged = have_list.clone();
            for w in want_list {
                if !merged.contains(&w) {
                    merged.push(w);
                }
            }
            (merged != have_list).then(|| to_value(merged))
        }
    }
}

/// What an IdP is known to normalise in every answer, so that it is never read as drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    #[default]
    Standard,
    /// Keycloak (`oidc/DescriptionConverter#toExternalResponse`): `client_secret_post` is its
    /// "client-secret" authenticator, reported as `client_secret_basic` (and both work);
    /// `response_types` gain `none`; the code flow gains `refresh_token`; redirect URIs are
    /// a set, answered in any order.
    Keycloak,
}

impl Dialect {
    /// Values this IdP adds to a list on its own.
    fn additions(self, field: &str) -> &'static [&'static str] {
        match (self, field) {
            (Dialect::Keycloak, "response_types") => &["none"],
            (Dialect::Keycloak, "grant_types") => &["refresh_token"],
            _ => &[],
        }
    }

    /// Whether two values of a single-valued member mean the same client here.
    fn same(self, field: &str, a: Option<&Value>, b: Option<&Value>) -> bool {
        let a = scalar(a);
        let b = scalar(b);
        if a == b {
            return true;
        }
        let secret_auth = |v: Option<&Value>| {
            matches!(
                v.and_then(Value::as_str),
                Some("client_secret_post" | "client_secret_basic")
            )
        };
        self == Dialect::Keycloak
            && field == "token_endpoint_auth_method"
            && secret_auth(a)
            && secret_auth(b)
    }

    /// Whether this IdP keeps the order of redirect URIs.
    fn ordered_redirects(self) -> bool {
        self != Dialect::Keycloak
    }
}

/// How strictly what the IdP holds is compared with what we asked.
#[derive(Debug, Clone, Copy)]
pub struct Compare<'a> {
    /// What the IdP is known to normalise.
    pub dialect: Dialect,
    pub redirects: RedirectMode,
    /// `DCR_STRICT_READBACK`: values the IdP adds (a grant, a scope) count as drift too.
    pub strict: bool,
    /// What the previous run asked for (`dcr_bootstrap.asked`): a value the IdP holds that we
    /// asked for then but no longer do is ours to remove, not one the IdP added.
    pub asked_before: &'a Map<String, Value>,
}

/// The members whose history matters ([`Compare::asked_before`]): the lists.
pub const ASKED_FIELDS: &[&str] = &["scope", "grant_types", "response_types"];

/// One-element arrays read as their element: some servers answer
/// `"token_endpoint_auth_method": ["client_secret_basic"]`.
fn scalar(v: Option<&Value>) -> Option<&Value> {
    match v {
        Some(Value::Array(a)) if a.len() == 1 => a.first(),
        other => other,
    }
}

/// A list we asked for differs from what the IdP holds when something we asked is missing,
/// or something we asked for before (and no longer do) is still there; what the IdP added
/// itself counts only when strict.
fn list_differs(want: Vec<String>, have: Vec<String>, before: Vec<String>, strict: bool) -> bool {
    if strict {
        return as_set(want) != as_set(have);
    }
    !want.iter().all(|w| have.contains(w))
        || have.iter().any(|h| !want.contains(h) && before.contains(h))
}

/// What the IdP holds in a list, without what it adds on its own (unless we asked for it).
fn held(k: &str, have: Option<&Value>, wanted: &[String], dialect: Dialect) -> Vec<String> {
    let added = dialect.additions(k);
    listed(k, have)
        .into_iter()
        .filter(|h| wanted.contains(h) || !added.contains(&h.as_str()))
        .collect()
}

fn listed(k: &str, v: Option<&Value>) -> Vec<String> {
    if k == "scope" {
        scope_set(v)
    } else {
        strings(v)
    }
}

/// The corrected value of a list member, if it needs one. Unless strict, only what we asked
/// for is ours to add or remove: what the IdP added on its own stays in the value sent.
fn list_change(k: &str, want: &Value, have: Option<&Value>, c: Compare<'_>) -> Option<Value> {
    let wanted = listed(k, Some(want));
    let before = listed(k, c.asked_before.get(k));
    let held = held(k, have, &wanted, c.dialect);
    if !list_differs(wanted.clone(), held.clone(), before.clone(), c.strict) {
        return None;
    }
    let theirs: Vec<String> = held
        .into_iter()
        .filter(|h| !wanted.contains(h) && !before.contains(h))
        .collect();
    if c.strict || theirs.is_empty() {
        return Some(want.clone());
    }
    Some(match want {
        Value::String(s) => Value::String(
            s.split_whitespace()
                .map(str::to_string)
                .chain(theirs)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => Value::Array(
            strings(Some(want))
                .into_iter()
                .chain(theirs)
                .map(Value::String)
                .collect(),
        ),
    })
}

/// Whether one field we want differs from what the IdP holds. A member the IdP does not echo
/// is not drift (RFC 7591 §2 lets a server ignore metadata, and correcting it would repeat on
/// every start), except the keys (`jwks`, `jwks_uri`), without which the client cannot
/// authenticate, and `scope`, without which it gets no token of the scopes it needs. A server
/// that drops them again after an update is remembered (`settled`), not corrected forever.
fn field_differs(k: &str, want: &Value, have: Option<&Value>, c: Compare<'_>) -> Option<Value> {
    if have.is_none() && !matches!(k, "jwks" | "jwks_uri" | "scope") {
        return None;
    }
    // A scope we already asked for that the IdP does not report: it does not echo scope
    // (glewlwyd), not a change to make. One asked for since (DCR_SCOPE set later) is drift.
    if have.is_none() && k == "scope" && c.asked_before.get(k) == Some(want) {
        return None;
    }
    match k {
        "redirect_uris" => redirect_change(want, have, c.redirects, c.dialect.ordered_redirects()),
        "scope" | "grant_types" | "response_types" => list_change(k, want, have, c),
        "jwks" => (jwks_set(Some(want)) != jwks_set(have)).then(|| want.clone()),
        _ => (!c.dialect.same(k, have, Some(want))).then(|| want.clone()),
    }
}

/// The fields to change so that the IdP holds what we want: `{field: new value}`, with
/// `null` meaning "remove" (e.g. `jwks` when switching to `jwks_uri`). `settled` holds the
/// corrections the IdP already normalised back (`{field: {"asked", "holds"}}`): they are not
/// sent again while both sides stay the same.
pub fn diff(
    desired: &Map<String, Value>,
    current: &Map<String, Value>,
    c: Compare<'_>,
    settled: &Map<String, Value>,
) -> Map<String, Value> {
    let mut changes = Map::new();
    for (k, want) in desired {
        if FIXED.contains(&k.as_str()) {
            continue;
        }
        let have = current.get(k);
        if is_settled(k, want, have, settled) {
            continue;
        }
        if let Some(v) = field_differs(k, want, have, c) {
            changes.insert(k.clone(), v);
        }
    }
    for (ours, other) in [("jwks_uri", "jwks"), ("jwks", "jwks_uri")] {
        if desired.contains_key(ours) && current.contains_key(other) {
            changes.insert(other.to_string(), Value::Null);
        }
    }
    changes
}

/// Members a settlement never covers: who may sign in where (`redirect_uris`), with which
/// keys (`jwks`, `jwks_uri`) and by which grants. A difference in them is corrected on every
/// run, whatever the stored record says was settled: a planted settlement must not keep an
/// attacker's redirect URI or key at the IdP.
pub const NEVER_SETTLED: &[&str] = &["redirect_uris", "jwks", "jwks_uri", "grant_types"];

fn is_settled(k: &str, want: &Value, have: Option<&Value>, settled: &Map<String, Value>) -> bool {
    !NEVER_SETTLED.contains(&k) && settled.get(k) == Some(&settlement(want, have))
}

/// The members whose correction a settlement suppresses on this run (said at WARN, so that
/// no difference is kept silently).
pub fn suppressed(
    desired: &Map<String, Value>,
    current: &Map<String, Value>,
    c: Compare<'_>,
    settled: &Map<String, Value>,
) -> Vec<String> {
    desired
        .iter()
        .filter(|(k, want)| {
            is_settled(k, want, current.get(k.as_str()), settled)
                && field_differs(k, want, current.get(k.as_str()), c).is_some()
        })
        .map(|(k, _)| k.clone())
        .collect()
}

/// What is remembered about a correction the IdP normalised back.
fn settlement(asked: &Value, holds: Option<&Value>) -> Value {
    serde_json::json!({"asked": asked, "holds": holds.cloned().unwrap_or(Value::Null)})
}

/// After an update, the corrections the IdP did not take (read back from it): remembered so
/// that the next start does not send them again.
pub fn unsettled(
    desired: &Map<String, Value>,
    after: &Map<String, Value>,
    c: Compare<'_>,
) -> Map<String, Value> {
    diff(desired, after, c, &Map::new())
        .into_iter()
        .filter(|(k, v)| !v.is_null() && !NEVER_SETTLED.contains(&k.as_str()))
        .map(|(k, v)| {
            let s = settlement(&v, after.get(&k));
            (k, s)
        })
        .collect()
}

/// An RFC 7592 §2.2 full replacement: what the IdP holds, with our changes, plus `client_id`
/// and the `client_secret` we hold; never the server-owned fields.
pub fn put_body(
    current: &Map<String, Value>,
    changes: &Map<String, Value>,
    client_id: &str,
    client_secret: Option<&str>,
    dialect: Dialect,
) -> Map<String, Value> {
    let mut body = current.clone();
    for f in NOT_IN_PUT.iter().chain(&["client_secret", "dcr_bootstrap"]) {
        body.remove(*f);
    }
    // Keycloak: a PUT without `scope` leaves the client's scopes as they are, and one that
    // carries it fails on 25.0-26.7 for clients made in its admin API (keycloak#51311).
    if dialect == Dialect::Keycloak && !changes.contains_key("scope") {
        body.remove("scope");
    }
    // What the IdP answered as a one-element array goes back as the string RFC 7591 defines
    // (glewlwyd answers `["client_secret_basic"]` and refuses it in a PUT).
    for f in STRING_MEMBERS {
        if let Some(Value::Array(a)) = body.get(*f)
            && a.len() == 1
            && a[0].is_string()
        {
            let v = a[0].clone();
            body.insert(f.to_string(), v);
        }
    }
    for (k, v) in changes {
        if v.is_null() {
            body.remove(k);
        } else {
            body.insert(k.clone(), v.clone());
        }
    }
    body.insert("client_id".into(), Value::String(client_id.to_string()));
    if let Some(s) = client_secret {
        body.insert("client_secret".into(), Value::String(s.to_string()));
    }
    body
}

/// What the IdP registered differently from what we asked, among the fields that decide how
/// the client authenticates and what it may do (RFC 7591 §3.2.1 lets a server substitute).
pub fn readback_differences(
    asked: &Map<String, Value>,
    got: &Map<String, Value>,
    strict: bool,
    dialect: Dialect,
) -> Vec<String> {
    let mut out = Vec::new();
    let show = |v: Option<&Value>| v.map(Value::to_string).unwrap_or_else(|| "(absent)".into());
    if let Some(a) = asked.get("token_endpoint_auth_method")
        && !dialect.same(
            "token_endpoint_auth_method",
            got.get("token_endpoint_auth_method"),
            Some(a),
        )
    {
        out.push(format!(
            "token_endpoint_auth_method: asked {a}, registered {}",
            show(got.get("token_endpoint_auth_method"))
        ));
    }
    if let Some(a) = asked.get("grant_types")
        && list_differs(
            strings(Some(a)),
            held(
                "grant_types",
                got.get("grant_types"),
                &strings(Some(a)),
                dialect,
            ),
            Vec::new(),
            strict,
        )
    {
        out.push(format!(
            "grant_types: asked {a}, registered {}",
            show(got.get("grant_types"))
        ));
    }
    if let Some(a) = asked.get("scope")
        && list_differs(
            scope_set(Some(a)),
            scope_set(got.get("scope")),
            Vec::new(),
            strict,
        )
    {
        out.push(format!(
            "scope: asked {a}, registered {}",
            show(got.get("scope"))
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn d(
        desired: &Map<String, Value>,
        current: &Map<String, Value>,
        mode: RedirectMode,
    ) -> Map<String, Value> {
        let none = Map::new();
        let c = Compare {
            dialect: Dialect::Standard,
            redirects: mode,
            strict: false,
            asked_before: &none,
        };
        diff(desired, current, c, &Map::new())
    }

    #[test]
    fn what_servers_normalise_is_not_drift() {
        let want = m(json!({"token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["client_credentials"], "client_name": "x", "software_id": "s"}));
        // A one-element array, a member the server does not echo, a grant it adds.
        let have = m(
            json!({"token_endpoint_auth_method": ["client_secret_basic"],
            "grant_types": ["client_credentials", "authorization_code"], "client_name": "x"}),
        );
        assert!(d(&want, &have, RedirectMode::Auto).is_empty());
        // A scope the IdP does not hold is drift: the client would get no token of it. A
        // server that drops it again after the update is remembered, not corrected forever.
        let scoped = m(json!({"scope": "openid"}));
        assert_eq!(d(&scoped, &have, RedirectMode::Auto), scoped);
        let none = Map::new();
        let c = Compare {
            dialect: Dialect::Standard,
            redirects: RedirectMode::Auto,
            strict: false,
            asked_before: &none,
        };
        let settled = unsettled(&scoped, &have, c);
        assert!(diff(&scoped, &have, c, &settled).is_empty());
        let none = Map::new();
        let strict = Compare {
            dialect: Dialect::Standard,
            redirects: RedirectMode::Auto,
            strict: true,
            asked_before: &none,
        };
        assert_eq!(
            diff(&want, &have, strict, &Map::new())
                .keys()
                .collect::<Vec<_>>(),
            vec!["grant_types"]
        );
        // Keys must be held: an IdP that does not echo them is drift.
        let keys =
            m(json!({"jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b"}]}}));
        assert!(d(&keys, &Map::new(), RedirectMode::Auto).contains_key("jwks"));
    }

    #[test]
    fn a_value_we_asked_for_before_is_ours_to_remove() {
        let want = m(json!({"scope": "openid"}));
        let have = m(json!({"scope": "openid profile offline_access"}));
        let before = m(json!({"scope": "openid profile"}));
        let c = Compare {
            dialect: Dialect::Standard,
            redirects: RedirectMode::Auto,
            strict: false,
            asked_before: &before,
        };
        // profile was ours: removed; offline_access the IdP added: kept.
        assert_eq!(
            diff(&want, &have, c, &Map::new()),
            m(json!({"scope": "openid offline_access"}))
        );
        let grants = m(json!({"grant_types": ["authorization_code"]}));
        let held = m(json!({"grant_types": ["authorization_code", "refresh_token", "implicit"]}));
        let grants_before = m(json!({"grant_types": ["authorization_code", "implicit"]}));
        assert_eq!(
            diff(
                &grants,
                &held,
                Compare {
                    asked_before: &grants_before,
                    ..c
                },
                &Map::new()
            ),
            m(json!({"grant_types": ["authorization_code", "refresh_token"]}))
        );
        // Strict: the IdP's own additions go too.
        assert_eq!(
            diff(&want, &have, Compare { strict: true, ..c }, &Map::new()),
            want
        );
        let c = Compare {
            asked_before: &want,
            ..c
        };
        assert!(diff(&want, &have, c, &Map::new()).is_empty());
    }

    #[test]
    fn a_correction_the_idp_normalised_back_is_not_sent_again() {
        let want = m(json!({"scope": "openid email"}));
        let after = m(json!({"scope": "openid"}));
        let none = Map::new();
        let c = Compare {
            dialect: Dialect::Standard,
            redirects: RedirectMode::Auto,
            strict: false,
            asked_before: &none,
        };
        let settled = unsettled(&want, &after, c);
        assert!(settled.contains_key("scope"));
        assert!(diff(&want, &after, c, &settled).is_empty());
        // Asking for something else sends it again.
        let other = m(json!({"scope": "openid profile"}));
        assert!(diff(&other, &after, c, &settled).contains_key("scope"));
    }

    #[test]
    fn redirect_modes_follow_the_bff_docs() {
        let current = m(json!({"redirect_uris": ["https://a/cb", "https://b/cb"]}));
        let want = |uris: Value| m(json!({ "redirect_uris": uris }));
        // auto: set comparison, replace with the provided list
        assert!(
            d(
                &want(json!(["https://b/cb", "https://a/cb"])),
                &current,
                RedirectMode::Auto
            )
            .is_empty()
        );
        assert_eq!(
            d(&want(json!(["https://c/cb"])), &current, RedirectMode::Auto)["redirect_uris"],
            json!(["https://c/cb"])
        );
        // not configured: nothing to compare in auto mode
        assert!(d(&Map::new(), &current, RedirectMode::Auto).is_empty());
        // replace: exact list, order included
        assert_eq!(
            d(
                &want(json!(["https://b/cb", "https://a/cb"])),
                &current,
                RedirectMode::Replace
            )["redirect_uris"],
            json!(["https://b/cb", "https://a/cb"])
        );
        // merge: union, existing order first, no duplicates; no change when nothing is new
        assert_eq!(
            d(
                &want(json!(["https://c/cb", "https://a/cb"])),
                &current,
                RedirectMode::Merge
            )["redirect_uris"],
            json!(["https://a/cb", "https://b/cb", "https://c/cb"])
        );
        assert!(
            d(
                &want(json!(["https://a/cb"])),
                &current,
                RedirectMode::Merge
            )
            .is_empty()
        );
        // none: never
        assert!(d(&want(json!(["https://c/cb"])), &current, RedirectMode::None).is_empty());
    }

    #[test]
    fn scope_and_lists_compare_as_sets_and_unknown_fields_only_when_echoed() {
        let current =
            m(json!({"scope": "openid profile", "grant_types": ["a", "b"], "client_name": "x"}));
        let desired = m(
            json!({"scope": "profile  openid", "grant_types": ["b", "a"], "client_name": "x",
                                "software_id": "s", "client_id": "other"}),
        );
        assert!(d(&desired, &current, RedirectMode::Auto).is_empty());
        // profile was never asked for (no history): the IdP's, kept in the correction.
        let desired = m(json!({"scope": "openid email"}));
        assert_eq!(
            d(&desired, &current, RedirectMode::Auto)["scope"],
            "openid email profile"
        );
    }

    #[test]
    fn jwks_drift_is_by_key_not_by_member_order_and_switching_to_jwks_uri_removes_jwks() {
        let k = json!({"kty": "EC", "crv": "P-256", "x": "xx", "y": "yy", "kid": "a"});
        let reordered =
            json!({"kid": "a", "y": "yy", "x": "xx", "crv": "P-256", "kty": "EC", "use": "sig"});
        let current = m(json!({"jwks": {"keys": [k]}}));
        assert!(
            d(
                &m(json!({"jwks": {"keys": [reordered]}})),
                &current,
                RedirectMode::Auto
            )
            .is_empty()
        );
        let changes = d(
            &m(json!({"jwks_uri": "https://bff/jwks"})),
            &current,
            RedirectMode::Auto,
        );
        assert_eq!(changes["jwks"], Value::Null);
        assert_eq!(changes["jwks_uri"], "https://bff/jwks");
    }

    #[test]
    fn put_body_is_a_full_replacement_without_server_owned_fields() {
        let current = m(
            json!({"client_id": "c", "client_name": "x", "registration_access_token": "r",
            "registration_client_uri": "u", "client_secret_expires_at": 0, "client_id_issued_at": 1,
            "client_secret": "s", "jwks": {"keys": []}}),
        );
        let changes = m(json!({"client_name": "y", "jwks": null, "jwks_uri": "https://j"}));
        let body = put_body(&current, &changes, "c", Some("s"), Dialect::Standard);
        for f in NOT_IN_PUT {
            assert!(!body.contains_key(*f), "{f}");
        }
        assert_eq!(body["client_id"], "c");
        assert_eq!(body["client_secret"], "s");
        assert_eq!(body["client_name"], "y");
        assert!(!body.contains_key("jwks"));
        assert_eq!(body["jwks_uri"], "https://j");
    }

    #[test]
    fn readback_flags_substituted_auth_method_grants_and_scope() {
        let asked = m(
            json!({"token_endpoint_auth_method": "private_key_jwt", "grant_types": ["authorization_code"], "scope": "openid admin"}),
        );
        let got = m(
            json!({"token_endpoint_auth_method": "client_secret_basic", "grant_types": ["authorization_code"], "scope": "openid"}),
        );
        let d = readback_differences(&asked, &got, false, Dialect::Standard);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(readback_differences(&asked, &asked, false, Dialect::Standard).is_empty());
    }

    #[test]
    fn keycloak_normalisation_is_not_drift_even_when_strict() {
        let want = m(json!({"token_endpoint_auth_method": "client_secret_post",
            "response_types": ["code"], "grant_types": ["authorization_code"],
            "redirect_uris": ["https://a/cb", "https://b/cb"]}));
        let have = m(json!({"token_endpoint_auth_method": "client_secret_basic",
            "response_types": ["code", "none"], "grant_types": ["authorization_code", "refresh_token"],
            "redirect_uris": ["https://b/cb", "https://a/cb"]}));
        let none = Map::new();
        let c = Compare {
            dialect: Dialect::Keycloak,
            redirects: RedirectMode::Replace,
            strict: true,
            asked_before: &none,
        };
        assert!(diff(&want, &have, c, &Map::new()).is_empty());
        assert!(readback_differences(&want, &have, true, Dialect::Keycloak).is_empty());
        // The same answers from any other server are drift.
        let c = Compare {
            dialect: Dialect::Standard,
            ..c
        };
        assert_eq!(diff(&want, &have, c, &Map::new()).len(), 4);
        assert_eq!(
            readback_differences(&want, &have, true, Dialect::Standard).len(),
            2
        );
        // A different method is drift at Keycloak too.
        let jwt = m(json!({"token_endpoint_auth_method": "private_key_jwt"}));
        let c = Compare {
            dialect: Dialect::Keycloak,
            ..c
        };
        assert!(!diff(&jwt, &have, c, &Map::new()).is_empty());
    }
}
