//! Human durations for configuration, parsed by `humantime` (the emulator parses its flags
//! with it too): `500ms`, `10s`, `5m`, `1h`, `30d`, sums like `1m30s`, fractions like `1.5s`.
//! A unit is always required: a bare `10` is ambiguous (seconds? milliseconds?) and refused.

use std::time::Duration;

/// The longest duration any setting takes; anything longer is a typo (`5M` is five months).
const LONGEST: Duration = Duration::from_secs(10 * 365 * 86_400);

pub fn parse(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    let expected = || format!("expected a duration like 500ms, 10s, 5m or 30d, got {input:?}");
    if s.is_empty() {
        return Err(expected());
    }
    let d = humantime::parse_duration(s).map_err(|_| expected())?;
    if d > LONGEST {
        return Err(format!("duration {input:?} is too large"));
    }
    Ok(d)
}

/// Renders a duration compactly for logs: `850ms`, `2.5s`, `4m0s`.
pub fn show(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        let s = d.as_secs_f64();
        if (s - s.round()).abs() < 0.05 {
            format!("{:.0}s", s)
        } else {
            format!("{:.1}s", s)
        }
    } else {
        format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_forms() {
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("30d").unwrap(), Duration::from_secs(30 * 86_400));
    }

    #[test]
    fn refuses_what_is_ambiguous_or_wrong() {
        for bad in ["", "10", "-1s", "s", "1.2.3s", "ms", ".5s", "1e3s", "20y"] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn shows_compactly() {
        assert_eq!(show(Duration::from_millis(850)), "850ms");
        assert_eq!(show(Duration::from_millis(2500)), "2.5s");
        assert_eq!(show(Duration::from_secs(10)), "10s");
        assert_eq!(show(Duration::from_secs(300)), "5m0s");
    }
}
