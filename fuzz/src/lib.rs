//! Helpers shared by the fuzz targets: signing STUN messages the way a peer that knows the
//! ICE password would, the SCTP checksum, a DTLS certificate made once, and the API key the
//! token targets sign with.
//!
//! The targets live in `fuzz_targets/`; `scripts/fuzz` builds and runs them.

use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use lkr_dtls_glue::cert::Certificate;

/// The API key and secret the token targets know.
pub const API_KEY: &str = "fuzzkey";
/// The secret of [`API_KEY`].
pub const API_SECRET: &str = "fuzzsecret-fuzzsecret-fuzzsecret";

/// The ICE credentials of the local side in the STUN and engine targets.
pub const LOCAL_UFRAG: &str = "lufr";
/// Local ICE password.
pub const LOCAL_PWD: &str = "local-password-0123456789";
/// The peer's ufrag.
pub const REMOTE_UFRAG: &str = "rufr";
/// The peer's ICE password.
pub const REMOTE_PWD: &str = "remote-password-0123456789";

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const ATTR_FINGERPRINT: u16 = 0x8028;
const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// One certificate for the whole run: generating one per input would dominate the time.
pub fn certificate() -> &'static Certificate {
    static CERT: OnceLock<Certificate> = OnceLock::new();
    CERT.get_or_init(|| Certificate::generate().expect("certificate"))
}

/// The peer's certificate, for the fingerprint a server endpoint expects.
pub fn peer_certificate() -> &'static Certificate {
    static CERT: OnceLock<Certificate> = OnceLock::new();
    CERT.get_or_init(|| Certificate::generate().expect("certificate"))
}

fn push_attr(out: &mut Vec<u8>, ty: u16, value: &[u8]) {
    let len = value.len().min(0xffff);
    out.extend_from_slice(&ty.to_be_bytes());
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&value[..len]);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn set_len(msg: &mut [u8], len: usize) {
    msg[2..4].copy_from_slice(&(len as u16).to_be_bytes());
}

/// A STUN message of `message_type` with `attrs` (and a USERNAME first when given), closed by
/// MESSAGE-INTEGRITY with `pwd` (when given) and FINGERPRINT, as RFC 5389 §15.4 and §15.5
/// compute them. Lets a target get past the checks every real request passes.
pub fn signed_stun(
    message_type: u16,
    transaction_id: [u8; 12],
    username: Option<&str>,
    attrs: &[(u16, Vec<u8>)],
    pwd: Option<&str>,
) -> Vec<u8> {
    let mut msg = Vec::with_capacity(256);
    msg.extend_from_slice(&(message_type & 0x3fff).to_be_bytes());
    msg.extend_from_slice(&[0, 0]);
    msg.extend_from_slice(&MAGIC_COOKIE);
    msg.extend_from_slice(&transaction_id);
    if let Some(u) = username {
        push_attr(&mut msg, ATTR_USERNAME, u.as_bytes());
    }
    for (ty, value) in attrs.iter().take(32) {
        push_attr(&mut msg, *ty, value);
        if msg.len() > 60_000 {
            break;
        }
    }
    if let Some(pwd) = pwd {
        let len = msg.len() - 20 + 24;
        set_len(&mut msg, len);
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(pwd.as_bytes()).expect("any key length");
        mac.update(&msg);
        let tag = mac.finalize().into_bytes();
        push_attr(&mut msg, ATTR_MESSAGE_INTEGRITY, &tag);
    }
    let len = msg.len() - 20 + 8;
    set_len(&mut msg, len);
    let crc = CRC32.checksum(&msg) ^ 0x5354_554e;
    push_attr(&mut msg, ATTR_FINGERPRINT, &crc.to_be_bytes());
    msg
}

/// Writes the SCTP CRC32c (RFC 9260 Appendix A) of `packet` into its common header.
pub fn sctp_checksum(packet: &mut [u8]) {
    if packet.len() < 12 {
        return;
    }
    packet[8..12].fill(0);
    let crc = CRC32C.checksum(packet);
    packet[8..12].copy_from_slice(&crc.to_le_bytes());
}

/// An HS256 JWT over the given header and payload bytes, signed with [`API_SECRET`].
pub fn sign_jwt(header: &[u8], payload: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut token = format!("{}.{}", b64.encode(header), b64.encode(payload));
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(API_SECRET.as_bytes()).expect("any key length");
    mac.update(token.as_bytes());
    token.push('.');
    token.push_str(&b64.encode(mac.finalize().into_bytes()));
    token
}

/// A valid join token for room `fuzz`, identity `fuzzer`, valid for a day from now.
pub fn join_token() -> String {
    let now = lkr_proto::token::unix_now();
    let payload = serde_json::json!({
        "iss": API_KEY, "sub": "fuzzer", "nbf": now - 10, "exp": now + 86_400,
        "video": {"roomJoin": true, "room": "fuzz"}
    });
    sign_jwt(
        br#"{"alg":"HS256","typ":"JWT"}"#,
        payload.to_string().as_bytes(),
    )
}

/// The key set the token targets verify against.
pub fn keys() -> std::collections::HashMap<String, String> {
    [(API_KEY.to_owned(), API_SECRET.to_owned())].into()
}

/// Splits `data` into chunks, each prefixed by a big-endian u16 length (the last takes what
/// is left): lets one input carry several datagrams.
pub fn split_frames(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        if rest.len() < 2 {
            let out = rest;
            rest = &[];
            return Some(out);
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let body = &rest[2..];
        let take = len.min(body.len());
        let (frame, tail) = body.split_at(take);
        rest = tail;
        Some(frame)
    })
}

/// Frames `frames` for [`split_frames`].
pub fn join_frames<'a>(frames: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        out.extend_from_slice(&(f.len() as u16).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}
