//! Property tests of the parsers that take operator and peer input.

use dcr_bootstrap::inputs::{parse_duration, parse_retry_after, split_list};
use proptest::prelude::*;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

proptest! {
    #[test]
    fn durations_with_a_unit_parse_exactly(n in 0u64..1_000_000, unit in prop::sample::select(vec!["ms", "s", "m", "h"])) {
        let ms = match unit { "ms" => n, "s" => n * 1000, "m" => n * 60_000, _ => n * 3_600_000 };
        let text = format!("{n}{unit}");
        let parsed = parse_duration(&text);
        if ms <= 10 * 365 * 86_400_000 {
            prop_assert_eq!(parsed, Ok(Duration::from_millis(ms)));
        } else {
            prop_assert!(parsed.is_err());
        }
    }

    #[test]
    fn sums_of_components_add_up(m in 0u64..600, s in 0u64..60, ms in 0u64..1000) {
        prop_assert_eq!(
            parse_duration(&format!("{m}m{s}s{ms}ms")),
            Ok(Duration::from_millis(m * 60_000 + s * 1000 + ms))
        );
    }

    #[test]
    fn unitless_and_negative_durations_are_refused(n in any::<i64>()) {
        prop_assert!(parse_duration(&n.to_string()).is_err());
        let negative = format!("-{}s", n.unsigned_abs());
        prop_assert!(parse_duration(&negative).is_err());

    }

    #[test]
    fn duration_parsing_never_panics(s in ".{0,40}") {
        let _ = parse_duration(&s);
    }

    #[test]
    fn lists_split_on_commas_and_whitespace_keep_order_and_drop_repeats(
        items in prop::collection::vec("[a-z0-9:/._-]{1,12}", 0..8),
        seps in prop::collection::vec(prop::sample::select(vec![",", " ", ", ", "\t", ",,", "\n"]), 8),
    ) {
        let mut text = String::new();
        for (i, item) in items.iter().enumerate() {
            text.push_str(item);
            text.push_str(seps[i % seps.len()]);
        }
        let mut expected: Vec<String> = Vec::new();
        for i in &items {
            if !expected.contains(i) {
                expected.push(i.clone());
            }
        }
        prop_assert_eq!(split_list(&text), expected);
    }

    #[test]
    fn retry_after_seconds(n in 0u32..u32::MAX) {
        prop_assert_eq!(parse_retry_after(&n.to_string(), SystemTime::now()), Some(Duration::from_secs(u64::from(n))));
    }

    #[test]
    fn retry_after_dates_are_relative_to_now(now_s in 1_000_000_000u64..4_000_000_000, ahead in 0u64..100_000) {
        let now = UNIX_EPOCH + Duration::from_secs(now_s);
        let date = httpdate::fmt_http_date(now + Duration::from_secs(ahead));
        prop_assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(ahead)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(ahead + 1));
        prop_assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_never_panics(s in ".{0,60}") {
        let _ = parse_retry_after(&s, SystemTime::now());
    }
}
