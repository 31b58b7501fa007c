//! What a previous run (or anyone) left at DCR_OUTPUT: parsed or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(stored) = dcr_bootstrap::inputs::ClientRecord::parse(data) {
        let _ = stored.client_id();
        let _ = stored.client_uri();
        let _ = stored.client_secret();
        let _ = stored.rat();
    }
});
