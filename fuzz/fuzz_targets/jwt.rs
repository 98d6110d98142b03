//! Access token verification (`lkr_proto::token::verify`) and the claims accessors the server
//! reads after it. Mode byte 0: the rest is the token text. Otherwise the rest is split at
//! the first 0xff byte into header and payload JSON, signed with the known secret, so that
//! claims decoding and the time checks behind the signature are reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lkr_proto::token::verify;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let keys = lkr_fuzz::keys();
    let token = if mode == 0 {
        match std::str::from_utf8(rest) {
            Ok(t) => t.to_owned(),
            Err(_) => return,
        }
    } else {
        let at = rest.iter().position(|&b| b == 0xff).unwrap_or(0);
        let (header, payload) = rest.split_at(at);
        let payload = payload.get(1..).unwrap_or_default();
        let header: &[u8] = if header.is_empty() {
            br#"{"alg":"HS256","typ":"JWT"}"#
        } else {
            header
        };
        lkr_fuzz::sign_jwt(header, payload)
    };
    let Ok(claims) = verify(&token, &keys) else {
        return;
    };
    let video = claims.video();
    let _ = (
        video.can_publish(),
        video.can_subscribe(),
        video.can_publish_data(),
        video.can_update_own_metadata(),
        video.can_subscribe_metrics(),
        video.admins("r1"),
        video.admins(&video.room),
    );
    let _ = claims.identity();
    let _ = claims.room_configuration();
});
