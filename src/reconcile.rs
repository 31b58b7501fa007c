//! Drift: what we want registered against what the IdP holds, and the policies that say what
//! to do about it. Pure functions, no I/O.

use serde_json::{Map, Value};

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

/// Fields every IdP stores; a difference in them is always drift. Other fields count only
/// when the IdP echoes them (an IdP may ignore unknown metadata, RFC 7591 §2, and updating a
/// field it never stores would repeat on every start).
const CORE: &[&str] = &[
    "redirect_uris",
    "scope",
    "grant_types",
    "response_types",
    "token_endpoint_auth_method",
    "client_name",
    "jwks",
    "jwks_uri",
];

/// Fields a client cannot change after registration.
const FIXED: &[&str] = &["client_id"];

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

fn redirect_change(want: &Value, have: Option<&Value>, mode: RedirectMode) -> Option<Value> {
    let want_list = strings(Some(want));
    let have_list = strings(have);
    let to_value = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
    match mode {
        RedirectMode::None => None,
        RedirectMode::Auto => {
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

/// The fields to change so that the IdP holds what we want: `{field: new value}`, with
/// `null` meaning "remove" (e.g. `jwks` when switching to `jwks_uri`).
pub fn diff(
    desired: &Map<String, Value>,
    current: &Map<String, Value>,
    mode: RedirectMode,
) -> Map<String, Value> {
    let mut changes = Map::new();
    for (k, want) in desired {
        if FIXED.contains(&k.as_str()) {
            continue;
        }
        let have = current.get(k);
        let change = match k.as_str() {
            "redirect_uris" => redirect_change(want, have, mode),
            "scope" => (scope_set(Some(want)) != scope_set(have)).then(|| want.clone()),
            "grant_types" | "response_types" => {
                (as_set(strings(Some(want))) != as_set(strings(have))).then(|| want.clone())
            }
            "jwks" => (jwks_set(Some(want)) != jwks_set(have)).then(|| want.clone()),
            _ if have.is_none() && !CORE.contains(&k.as_str()) => None,
            _ => (have != Some(want)).then(|| want.clone()),
        };
        if let Some(v) = change {
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

/// An RFC 7592 §2.2 full replacement: what the IdP holds, with our changes, plus `client_id`
/// and the `client_secret` we hold; never the server-owned fields.
pub fn put_body(
    current: &Map<String, Value>,
    changes: &Map<String, Value>,
    client_id: &str,
    client_secret: Option<&str>,
) -> Map<String, Value> {
    let mut body = current.clone();
    for f in NOT_IN_PUT.iter().chain(&["client_secret", "dcr_bootstrap"]) {
        body.remove(*f);
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
pub fn readback_differences(asked: &Map<String, Value>, got: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    let show = |v: Option<&Value>| v.map(Value::to_string).unwrap_or_else(|| "(absent)".into());
    if let Some(a) = asked.get("token_endpoint_auth_method")
        && got.get("token_endpoint_auth_method") != Some(a)
    {
        out.push(format!(
            "token_endpoint_auth_method: asked {a}, registered {}",
            show(got.get("token_endpoint_auth_method"))
        ));
    }
    if let Some(a) = asked.get("grant_types")
        && as_set(strings(Some(a))) != as_set(strings(got.get("grant_types")))
    {
        out.push(format!(
            "grant_types: asked {a}, registered {}",
            show(got.get("grant_types"))
        ));
    }
    if let Some(a) = asked.get("scope")
        && scope_set(Some(a)) != scope_set(got.get("scope"))
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

    #[test]
    fn redirect_modes_follow_the_bff_docs() {
        let current = m(json!({"redirect_uris": ["https://a/cb", "https://b/cb"]}));
        let want = |uris: Value| m(json!({ "redirect_uris": uris }));
        // auto: set comparison, replace with the provided list
        assert!(
            diff(
                &want(json!(["https://b/cb", "https://a/cb"])),
                &current,
                RedirectMode::Auto
            )
            .is_empty()
        );
        assert_eq!(
            diff(&want(json!(["https://c/cb"])), &current, RedirectMode::Auto)["redirect_uris"],
            json!(["https://c/cb"])
        );
        // not configured: nothing to compare in auto mode
        assert!(diff(&Map::new(), &current, RedirectMode::Auto).is_empty());
        // replace: exact list, order included
        assert_eq!(
            diff(
                &want(json!(["https://b/cb", "https://a/cb"])),
                &current,
                RedirectMode::Replace
            )["redirect_uris"],
            json!(["https://b/cb", "https://a/cb"])
        );
        // merge: union, existing order first, no duplicates; no change when nothing is new
        assert_eq!(
            diff(
                &want(json!(["https://c/cb", "https://a/cb"])),
                &current,
                RedirectMode::Merge
            )["redirect_uris"],
            json!(["https://a/cb", "https://b/cb", "https://c/cb"])
        );
        assert!(
            diff(
                &want(json!(["https://a/cb"])),
                &current,
                RedirectMode::Merge
            )
            .is_empty()
        );
        // none: never
        assert!(diff(&want(json!(["https://c/cb"])), &current, RedirectMode::None).is_empty());
    }

    #[test]
    fn scope_and_lists_compare_as_sets_and_unknown_fields_only_when_echoed() {
        let current =
            m(json!({"scope": "openid profile", "grant_types": ["a", "b"], "client_name": "x"}));
        let desired = m(
            json!({"scope": "profile  openid", "grant_types": ["b", "a"], "client_name": "x",
                                "software_id": "s", "client_id": "other"}),
        );
        assert!(diff(&desired, &current, RedirectMode::Auto).is_empty());
        let desired = m(json!({"scope": "openid email"}));
        assert_eq!(
            diff(&desired, &current, RedirectMode::Auto)["scope"],
            "openid email"
        );
    }

    #[test]
    fn jwks_drift_is_by_key_not_by_member_order_and_switching_to_jwks_uri_removes_jwks() {
        let k = json!({"kty": "EC", "crv": "P-256", "x": "xx", "y": "yy", "kid": "a"});
        let reordered =
            json!({"kid": "a", "y": "yy", "x": "xx", "crv": "P-256", "kty": "EC", "use": "sig"});
        let current = m(json!({"jwks": {"keys": [k]}}));
        assert!(
            diff(
                &m(json!({"jwks": {"keys": [reordered]}})),
                &current,
                RedirectMode::Auto
            )
            .is_empty()
        );
        let changes = diff(
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
        let body = put_body(&current, &changes, "c", Some("s"));
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
        let d = readback_differences(&asked, &got);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(readback_differences(&asked, &asked).is_empty());
    }
}
