//! IdP answers (IAT mint, registration, RFC 7592 read, RAT re-issue, OAuth error bodies):
//! parsed or refused, never a panic. The first two bytes choose the status.
#![no_main]

use dcr_bootstrap::inputs::{self as idp, Reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let status = 100 + (u16::from_le_bytes([data[0], data[1]]) % 500);
    for content_type in ["application/json", "text/html", ""] {
        let reply = Reply {
            status,
            retry_after: None,
            content_type: content_type.to_string(),
            location: None,
            body: data[2..].to_vec(),
        };
        let _ = idp::parse_iat(&reply);
        let _ = idp::parse_client(&reply);
        let _ = idp::parse_rat(&reply);
        let _ = idp::describe(&reply);
        let _ = idp::is_already_registered(&reply);
        let _ = idp::transient(reply.status);
    }
});
