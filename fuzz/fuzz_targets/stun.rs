//! STUN: the unverified USERNAME lookup, binding request and response checks, and the ICE-lite
//! agent, on raw datagrams and on messages correctly signed with the ICE password (which
//! reach the attribute decoding behind MESSAGE-INTEGRITY).
#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use lkr_fuzz::{LOCAL_PWD, LOCAL_UFRAG, REMOTE_PWD, REMOTE_UFRAG, signed_stun};
use lkr_ice::IceLite;

#[derive(Debug, Arbitrary)]
enum Input {
    Raw(Vec<u8>),
    Signed {
        message_type: u16,
        transaction_id: [u8; 12],
        username: Option<String>,
        attrs: Vec<(u16, Vec<u8>)>,
        /// Sign with the local password (0), the remote one (1), or not at all.
        key: u8,
        from_port: u16,
        elapsed_ms: u16,
    },
}

fn check(buf: &[u8], port: u16, elapsed: Duration) {
    let _ = lkr_ice::is_stun(buf);
    let _ = lkr_ice::stun_username(buf);
    let _ = lkr_ice::parse_binding_request(buf, LOCAL_PWD);
    let _ = lkr_ice::parse_binding_response(buf, REMOTE_PWD);

    let now = Instant::now();
    let mut ice = IceLite::new(LOCAL_UFRAG.into(), LOCAL_PWD.into());
    ice.set_remote_credentials(REMOTE_UFRAG.into(), REMOTE_PWD.into());
    let from = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut out = Vec::new();
    if ice.handle_stun(now, from, buf, &mut out).is_ok() && !out.is_empty() {
        // What we answer must be a response our own parser accepts.
        lkr_ice::parse_binding_response(&out, LOCAL_PWD).expect("our own response parses");
    }
    let _ = ice.selected();
    let _ = ice.is_valid_source(from);
    ice.handle_timeout(now + elapsed);
    let _ = ice.poll_timeout();
    let _ = ice.state();
}

fuzz_target!(|input: Input| {
    match input {
        Input::Raw(buf) => check(&buf, 5000, Duration::from_secs(1)),
        Input::Signed {
            message_type,
            transaction_id,
            username,
            attrs,
            key,
            from_port,
            elapsed_ms,
        } => {
            let pwd = match key % 3 {
                0 => Some(LOCAL_PWD),
                1 => Some(REMOTE_PWD),
                _ => None,
            };
            // A right USERNAME most of the time, so the agent looks further.
            let username = username.unwrap_or_else(|| format!("{LOCAL_UFRAG}:{REMOTE_UFRAG}"));
            let msg = signed_stun(message_type, transaction_id, Some(&username), &attrs, pwd);
            check(&msg, from_port, Duration::from_millis(elapsed_ms.into()));
        }
    }
});
