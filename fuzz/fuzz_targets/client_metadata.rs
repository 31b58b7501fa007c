//! Client metadata from DCR_CLIENT_METADATA plus field overrides: any input is accepted or
//! refused with a configuration error, never a panic.
#![no_main]

use dcr_bootstrap::inputs::{MetadataInputs, desired};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The same text as the JSON document and as each list-valued override.
    let mut mid = text.len() / 2;
    while !text.is_char_boundary(mid) {
        mid -= 1;
    }
    let (json, rest) = text.split_at(mid);

    for has_signing_key in [false, true] {
        let _ = desired(&MetadataInputs {
            json: Some(text),
            file: None,
            client_id: None,
            client_name: None,
            redirect_uris: None,
            scope: None,
            grant_types: None,
            response_types: None,
            auth_method: None,
            client_profile: None,
            profile_field: "client_profile",
            has_signing_key,
        });
        let _ = desired(&MetadataInputs {
            json: Some(json),
            file: None,
            client_id: Some(rest),
            client_name: Some(rest),
            redirect_uris: Some(rest),
            scope: Some(rest),
            grant_types: Some(rest),
            response_types: Some(rest),
            auth_method: Some(rest),
            client_profile: Some(rest),
            profile_field: "client_profile",
            has_signing_key,
        });
    }
    let _ = dcr_bootstrap::inputs::split_list(text);
    let _ = dcr_bootstrap::inputs::check_redirect_uri(text);
});
