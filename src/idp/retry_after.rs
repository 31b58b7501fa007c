//! `Retry-After` (RFC 9110 §10.2.3): delta-seconds or an HTTP-date.

use std::time::{Duration, SystemTime};

/// Parses a Retry-After value relative to `now`. A date in the past means "now" (zero);
/// anything unparseable is ignored (None) rather than trusted.
pub fn parse(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // Saturate absurd values instead of failing; the caller caps them anyway.
        return Some(Duration::from_secs(
            v.parse::<u64>()
                .unwrap_or(u64::MAX / 2)
                .min(u32::MAX as u64),
        ));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(parse("2", now), Some(Duration::from_secs(2)));
        assert_eq!(parse(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse("soon", now), None);
        assert_eq!(parse("-1", now), None);
        assert_eq!(parse("", now), None);
        assert!(parse("99999999999999999999999", now).is_some());
    }
}
