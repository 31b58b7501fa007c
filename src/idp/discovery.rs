//! OpenID Connect Discovery, then RFC 8414: where an RFC 7591 server registers clients and
//! issues tokens.

use super::answer::{body_kind, describe, json_object};
use super::http::Reply;
use super::retry::Attempt;
use super::{Call, Idp};
use crate::error::{Error, Result};
use reqwest::{Method, Url};
use serde_json::Value;

pub struct Discovered {
    /// The document's `issuer`, to be matched against the one asked for.
    pub issuer: Option<String>,
    pub registration: Option<Url>,
    pub token: Option<Url>,
    /// `token_endpoint_auth_signing_alg_values_supported`, when listed.
    pub signing_algs: Option<Vec<String>>,
    /// `token_endpoint_auth_methods_supported`, when listed.
    pub auth_methods: Option<Vec<String>>,
    /// Which document answered.
    pub source: Url,
}

/// Discovery URLs to try for `issuer`, in order: OpenID Connect Discovery
/// (`{issuer}/.well-known/openid-configuration`), then RFC 8414
/// (`/.well-known/oauth-authorization-server` inserted before the issuer's path).
pub fn discovery_urls(issuer: &Url) -> Vec<Url> {
    let mut out = vec![crate::url::join(
        issuer,
        "/.well-known/openid-configuration",
    )];
    let mut rfc8414 = issuer.clone();
    let path = issuer.path().trim_end_matches('/');
    rfc8414.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    out.push(rfc8414);
    out
}

impl Idp {
    /// A 404 tries the next document; an IdP that is still starting (5xx, refused) is waited
    /// for; a document that is not JSON is a permanent error.
    pub async fn discover(&self, urls: &[Url]) -> Result<Discovered> {
        let mut tried = Vec::new();
        for url in urls {
            let decide = |r: Reply| -> Attempt<Option<Discovered>> {
                if r.is_success() {
                    let Some(doc) = json_object(&r) else {
                        return Attempt::Fatal(Error::Rejected(format!(
                            "the discovery document at {url} is not a JSON object ({})",
                            body_kind(&r)
                        )));
                    };
                    let get = |k: &str| {
                        doc.get(k)
                            .and_then(Value::as_str)
                            .and_then(|u| Url::parse(u).ok())
                    };
                    let list = |k: &str| {
                        doc.get(k).and_then(Value::as_array).map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect::<Vec<_>>()
                        })
                    };
                    return Attempt::Done(Some(Discovered {
                        issuer: doc
                            .get("issuer")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        registration: get("registration_endpoint"),
                        signing_algs: list("token_endpoint_auth_signing_alg_values_supported"),
                        auth_methods: list("token_endpoint_auth_methods_supported"),
                        token: get("token_endpoint"),
                        source: url.clone(),
                    }));
                }
                match r.status {
                    404 | 410 => Attempt::Done(None),
                    _ => Attempt::Fatal(Error::Rejected(format!(
                        "discovery at {url} failed ({})",
                        describe(&r)
                    ))),
                }
            };
            let call = Call::new("discovery", "DCR_ISSUER", Method::GET, url);
            match self.call(call, None, &decide).await? {
                Some(d) => return Ok(d),
                None => tried.push(url.to_string()),
            }
        }
        Err(Error::Rejected(format!(
            "no discovery document at {}: set DCR_ISSUER to the IdP's issuer, or DCR_REGISTRATION_ENDPOINT directly",
            tried.join(" or ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8414_inserts_the_well_known_before_the_path() {
        let urls = discovery_urls(&Url::parse("https://idp.example/tenant1").unwrap());
        assert_eq!(
            urls[0].as_str(),
            "https://idp.example/tenant1/.well-known/openid-configuration"
        );
        assert_eq!(
            urls[1].as_str(),
            "https://idp.example/.well-known/oauth-authorization-server/tenant1"
        );
        let urls = discovery_urls(&Url::parse("https://idp.example").unwrap());
        assert_eq!(
            urls[1].as_str(),
            "https://idp.example/.well-known/oauth-authorization-server"
        );
    }
}
