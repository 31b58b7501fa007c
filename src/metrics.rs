//! The optional status metric, pushed to a Prometheus Pushgateway (`PROM_PUSHGATEWAY_URL`):
//! `dcr_bootstrap_status{status="..."} 1` and `dcr_bootstrap_duration_seconds`, job
//! `dcr-bootstrap`. A PUT replaces the group, so an earlier status does not linger. A push
//! that fails is logged and never changes the exit code.

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

pub async fn push(http: &Http, gateway: &Url, status: &str, elapsed: Duration) {
    let url = join(gateway, "/metrics/job/dcr-bootstrap");
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
    fn exposition_format() {
        let b = super::body("rotated", std::time::Duration::from_millis(1234));
        assert!(b.contains("dcr_bootstrap_status{status=\"rotated\"} 1\n"));
        assert!(b.contains("dcr_bootstrap_duration_seconds 1.234\n"));
    }
}
