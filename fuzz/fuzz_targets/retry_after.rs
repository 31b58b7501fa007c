//! Retry-After values and configuration durations: parsed or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for now in [SystemTime::now(), UNIX_EPOCH, UNIX_EPOCH + Duration::from_secs(u32::MAX as u64)] {
        let _ = dcr_bootstrap::inputs::parse_retry_after(text, now);
    }
    let _ = dcr_bootstrap::inputs::parse_duration(text);
});
