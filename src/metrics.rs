//! The optional status metric, pushed to a Prometheus Pushgateway (`PROM_PUSHGATEWAY_URL`):
//! `dcr_bootstrap_status{status="..."} 1` and `dcr_bootstrap_duration_seconds`, job
//! `dcr-bootstrap`, instance the host name (a pod's name), so that replicas do not overwrite
//! each other's status. A PUT replaces the group, so an earlier status does not linger. A
//! push that fails is logged and never changes the exit code.

use crate::idp::http::Http;
use crate::url::join;
use reqwest::Url;
use std::time::Duration;

pub fn body(status: &str, elapsed: Duration) -> String {
    format!(
        "# TYPE dcr_bootstrap_status gauge\n\
         dcr_bootstrap_status{{status=\"{status}\"}} 1\n\
         # TYPE dcr_bootstrap_duration_seconds gauge\n\
         dcr_bootstrap_duration_seconds {:.3}\n",
        elapsed.as_secs_f64()
    )
}

/// The grouping key's path: job and instance, the instance in the Pushgateway's base64 form
/// when it holds anything but letters, digits, `.`, `_` and `-`.
pub fn group_path(instance: &str) -> String {
    use base64::Engine;
    let plain = !instance.is_empty()
        && instance
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if plain {
        format!("/metrics/job/dcr-bootstrap/instance/{instance}")
    } else {
        let b64 = base64::engine::general_purpose::URL_SAFE.encode(instance);
        format!("/metrics/job/dcr-bootstrap/instance@base64/{b64}")
    }
}

/// This host's name: a pod's name in Kubernetes, the container id in compose.
fn instance() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

pub async fn push(http: &Http, gateway: &Url, status: &str, elapsed: Duration) {
    let url = join(gateway, &group_path(&instance()));
    match http
        .put_text(
            &url,
            &body(status, elapsed),
            "text/plain; version=0.0.4",
            Duration::from_secs(3),
        )
        .await
    {
        Ok(s) if (200..300).contains(&s) => tracing::debug!("pushed status {status} to {url}"),
        Ok(s) => tracing::warn!(
            "the Pushgateway at {url} answered {s}; the status metric was not recorded"
        ),
        Err(e) => tracing::warn!("cannot push the status metric to {url}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_instance_is_in_the_grouping_key() {
        assert_eq!(
            super::group_path("bff-7d9f-x2"),
            "/metrics/job/dcr-bootstrap/instance/bff-7d9f-x2"
        );
        assert_eq!(
            super::group_path("a/b"),
            "/metrics/job/dcr-bootstrap/instance@base64/YS9i"
        );
    }

    #[test]
    fn exposition_format() {
        let b = super::body("rotated", std::time::Duration::from_millis(1234));
        assert!(b.contains("dcr_bootstrap_status{status=\"rotated\"} 1\n"));
        assert!(b.contains("dcr_bootstrap_duration_seconds 1.234\n"));
    }
}
