//! Fault injection: rules matched against each request, each firing a fixed number of times.
//! Rules are JSON so they can be given on the command line (`--fault '{...}'`), posted to
//! `/_emulator/faults` at run time, or pushed from a test through the library API.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Fault {
    /// Only requests with this method (any when absent).
    #[serde(default)]
    pub method: Option<String>,
    /// Only requests whose path starts with this (any when absent).
    #[serde(default)]
    pub path: Option<String>,
    /// How many matching requests this rule affects; it is discarded afterwards.
    #[serde(default = "one")]
    pub times: u32,
    /// Skip this many matching requests before firing.
    #[serde(default)]
    pub after: u32,
    /// State changes applied when the rule fires, before its action.
    #[serde(default)]
    pub effects: Vec<Effect>,
    pub action: FaultAction,
}

/// Things that happen at the IdP between two calls of a client.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Every IAT minted so far expires now.
    ExpireIats,
    /// Every IAT minted so far has no uses left.
    ExhaustIats,
    /// The admin token stops working.
    RevokeAdminToken,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultAction {
    /// Answer with this status, headers and body instead of handling the request.
    Respond {
        status: u16,
        #[serde(default)]
        headers: Vec<(String, String)>,
        #[serde(default)]
        body: String,
    },
    /// Wait this long before handling the request normally (slow headers).
    Delay { ms: u64 },
    /// Close the connection without answering and without handling the request.
    Drop,
    /// Reset the connection (RST) without answering and without handling the request.
    Reset,
    /// Handle the request normally (useful with `effects`).
    Pass,
    /// Handle the request (commit), then wait this long before answering: the window in
    /// which a client can die after the IdP accepted its change.
    CommitThenDelay { ms: u64 },
    /// Handle the request (commit any state change), then close without answering:
    /// the classic lost response.
    DropAfterCommit,
    /// Handle the request (commit), then answer this status instead of the real answer: a
    /// gateway 504 after the upstream did the work, or a server that fails after inserting.
    RespondAfterCommit {
        status: u16,
        #[serde(default)]
        body: String,
    },
    /// Handle the request, send half of the answer, then reset the connection.
    ResetMidResponse,
    /// Handle the request, send the head and half of the body, then stall.
    StallBody,
    /// Handle the request, then send the real status with a truncated JSON body.
    TruncateBody,
    /// Handle the request, then replace the body with this many bytes of JSON-ish filler.
    HugeBody { bytes: usize },
    /// Handle the request, then send the real body with this content type.
    ContentType { value: String },
    /// Handle the request, then send the real body but drop these top-level JSON fields.
    OmitFields { fields: Vec<String> },
    /// Handle the request, then send the real body with these top-level JSON fields set (an
    /// IdP that answers something else than it stored: quirky or hostile values).
    SetFields {
        fields: serde_json::Map<String, serde_json::Value>,
    },
    /// Answer with a redirect to this location without handling the request.
    Redirect { status: u16, location: String },
}

impl Fault {
    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.path.as_deref().is_none_or(|p| path.starts_with(p))
    }

    /// Convenience: `n` answers of `status` (with optional Retry-After) to requests on `path`.
    pub fn status(path: &str, status: u16, times: u32, retry_after: Option<&str>) -> Fault {
        let mut headers = Vec::new();
        if let Some(ra) = retry_after {
            headers.push(("Retry-After".to_string(), ra.to_string()));
        }
        Fault {
            method: None,
            path: Some(path.to_string()),
            times,
            after: 0,
            effects: Vec::new(),
            action: FaultAction::Respond {
                status,
                headers,
                body: String::new(),
            },
        }
    }

    pub fn action_on(path: &str, times: u32, action: FaultAction) -> Fault {
        Fault {
            method: None,
            path: Some(path.to_string()),
            times,
            after: 0,
            effects: Vec::new(),
            action,
        }
    }

    /// Restricts the rule to one HTTP method.
    pub fn with_method(mut self, method: &str) -> Fault {
        self.method = Some(method.to_string());
        self
    }

    /// Adds state changes applied when the rule fires.
    pub fn with_effects(mut self, effects: &[Effect]) -> Fault {
        self.effects = effects.to_vec();
        self
    }
}

/// Picks the first live rule matching the request and consumes one use of it.
pub fn take(rules: &mut Vec<Fault>, method: &str, path: &str) -> Option<Fault> {
    let idx = rules.iter().position(|r| r.matches(method, path))?;
    let rule = &mut rules[idx];
    if rule.after > 0 {
        rule.after -= 1;
        return None;
    }
    let fired = rule.clone();
    rule.times = rule.times.saturating_sub(1);
    if rule.times == 0 {
        rules.remove(idx);
    }
    Some(fired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_fires_the_given_number_of_times() {
        let mut rules = vec![Fault::status("/api/oidc", 503, 2, None)];
        assert!(take(&mut rules, "POST", "/api/oidc/register").is_some());
        assert!(take(&mut rules, "POST", "/health").is_none());
        assert!(take(&mut rules, "GET", "/api/oidc/x").is_some());
        assert!(take(&mut rules, "GET", "/api/oidc/x").is_none());
    }

    #[test]
    fn after_skips_matching_requests() {
        let mut rules = vec![Fault {
            after: 1,
            ..Fault::status("/", 500, 1, None)
        }];
        assert!(take(&mut rules, "GET", "/").is_none());
        assert!(take(&mut rules, "GET", "/").is_some());
        assert!(rules.is_empty());
    }

    #[test]
    fn parses_from_json() {
        let f: Fault = serde_json::from_str(
            r#"{"path":"/api","times":3,"action":{"kind":"respond","status":429,"headers":[["Retry-After","2"]]}}"#,
        )
        .unwrap();
        assert_eq!(f.times, 3);
        assert!(matches!(f.action, FaultAction::Respond { status: 429, .. }));
        let f: Fault = serde_json::from_str(
            r#"{"path":"/api","effects":["expire_iats"],"action":{"kind":"pass"}}"#,
        )
        .unwrap();
        assert_eq!(f.effects, vec![Effect::ExpireIats]);
    }
}
