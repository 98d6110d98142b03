//! The `join_request` query parameter (base64 of a WrappedJoinRequest, possibly gzip) and the
//! whole join query as `parse_join` reads it behind a valid token.
//!
//! First byte: 0 gives the rest to `decode_join_request` as text; 1 wraps the rest as an
//! uncompressed WrappedJoinRequest (reaching the JoinRequest decoder and what `parse_join`
//! takes from it); 2 wraps the rest as the gzip stream of a WrappedJoinRequest (reaching the
//! decompression and its size limit); anything else appends the rest as the query string of
//! a signalling request carrying a valid token.
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use lkr_proto::pb;
use lkr_signal::join::{SignalPath, decode_join_request, http_headers::HeaderView, parse_join};
use prost::Message;

fn token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(lkr_fuzz::join_token)
}

fn wrapped(body: &[u8], gzip: bool) -> String {
    let compression = if gzip {
        pb::wrapped_join_request::Compression::Gzip
    } else {
        pb::wrapped_join_request::Compression::None
    };
    let w = pb::WrappedJoinRequest {
        compression: compression as i32,
        join_request: body.to_vec(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(w.encode_to_vec())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let keys = lkr_fuzz::keys();
    match mode {
        0 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = decode_join_request(text);
            }
        }
        1 | 2 => {
            let param = wrapped(rest, mode == 2);
            let _ = decode_join_request(&param);
            let query = format!("access_token={}&join_request={param}", token());
            let _ = parse_join(SignalPath::V1, &HeaderView::default(), Some(&query), &keys);
        }
        _ => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let query = format!("access_token={}&{text}", token());
            let path = if mode & 1 == 1 {
                SignalPath::V1
            } else {
                SignalPath::V0
            };
            let _ = parse_join(path, &HeaderView::default(), Some(&query), &keys);
        }
    }
});
