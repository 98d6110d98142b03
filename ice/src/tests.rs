use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use stun_codec::rfc5245::attributes::{IceControlled, Priority};
use stun_codec::rfc5389::attributes::Username;
use stun_codec::rfc5389::methods::BINDING;
use stun_codec::{Message, MessageClass, TransactionId};

use crate::*;

/// `stun_codec`, a general STUN codec, writes the messages the tests need that ours never
/// writes, and reads back what ours wrote: a second, independent judge of the wire format.
mod attrs {
    use stun_codec::rfc5245::attributes::{IceControlled, IceControlling, Priority, UseCandidate};
    use stun_codec::rfc5389::attributes::{
        ErrorCode, Fingerprint, MessageIntegrity, Username, XorMappedAddress,
    };
    stun_codec::define_attribute_enums!(
        IceAttribute,
        IceAttributeDecoder,
        IceAttributeEncoder,
        [
            Username,
            MessageIntegrity,
            ErrorCode,
            XorMappedAddress,
            Fingerprint,
            Priority,
            UseCandidate,
            IceControlled,
            IceControlling
        ]
    );
}
use attrs::IceAttribute;

/// Signs (when a password is given), fingerprints and encodes `message` onto `out`, with
/// `stun_codec`.
fn finish(
    mut message: Message<IceAttribute>,
    pwd: Option<&str>,
    out: &mut Vec<u8>,
) -> Result<(), ()> {
    use bytecodec::EncodeExt;
    use stun_codec::rfc5389::attributes::{Fingerprint, MessageIntegrity};
    if let Some(pwd) = pwd {
        let integrity =
            MessageIntegrity::new_short_term_credential(&message, pwd).map_err(|_| ())?;
        message.add_attribute(integrity);
    }
    let fingerprint = Fingerprint::new(&message).map_err(|_| ())?;
    message.add_attribute(fingerprint);
    let bytes = stun_codec::MessageEncoder::new()
        .encode_into_bytes(message)
        .map_err(|_| ())?;
    out.extend_from_slice(&bytes);
    Ok(())
}

/// Decodes `buf` with `stun_codec` and checks its MESSAGE-INTEGRITY with `pwd`.
fn codec_decode(buf: &[u8], pwd: &str) -> Message<IceAttribute> {
    use bytecodec::DecodeExt;
    use stun_codec::rfc5389::attributes::MessageIntegrity;
    let message = stun_codec::MessageDecoder::<IceAttribute>::new()
        .decode_from_bytes(buf)
        .expect("decodes")
        .expect("a complete message");
    message
        .get_attribute::<MessageIntegrity>()
        .expect("signed")
        .check_short_term_credential(pwd)
        .expect("MESSAGE-INTEGRITY checks out");
    message
}

/// Bytes from a hex dump laid out as in RFC 5769 (whitespace ignored).
fn hex(dump: &str) -> Vec<u8> {
    let digits: Vec<u8> = dump.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).expect("test dump is ASCII");
            u8::from_str_radix(text, 16).expect("test dump is hex")
        })
        .collect()
}

// RFC 5769 §2.1: sample request with short-term authentication.
const RFC5769_REQUEST: &str = "
    00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
    00 24 00 04 6e 00 01 ff
    80 29 00 08 93 2f f9 b1 51 26 3b 36
    00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
    00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
    80 28 00 04 e5 7a 3b cf";

// RFC 5769 §2.2: sample IPv4 response.
const RFC5769_RESPONSE_V4: &str = "
    01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 08 00 01 a1 47 e1 12 a6 43
    00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
    80 28 00 04 c0 7d 4c 96";

// RFC 5769 §2.3: sample IPv6 response.
const RFC5769_RESPONSE_V6: &str = "
    01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
    00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
    80 28 00 04 c8 fb 0b 4c";

const RFC5769_PWD: &str = "VOkJxbRl1RmTxUk/WvJxBt";
const RFC5769_TID: [u8; 12] = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];

/// Recomputes the trailing FINGERPRINT after a test edited the message.
fn refingerprint(buf: &mut [u8]) {
    let at = buf.len() - 8;
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&buf[..at]) ^ 0x5354_554e;
    buf[at + 4..].copy_from_slice(&crc.to_be_bytes());
}

/// Finds the value of the first attribute of type `kind` in a well-formed message.
fn attribute(buf: &[u8], kind: u16) -> Option<&[u8]> {
    let mut at = 20;
    while at + 4 <= buf.len() {
        let ty = u16::from_be_bytes([buf[at], buf[at + 1]]);
        let len = usize::from(u16::from_be_bytes([buf[at + 2], buf[at + 3]]));
        if ty == kind {
            return Some(&buf[at + 4..at + 4 + len]);
        }
        at += 4 + len.next_multiple_of(4);
    }
    None
}

#[test]
fn rfc5769_sample_request_parses_and_verifies() {
    let buf = hex(RFC5769_REQUEST);
    assert!(is_stun(&buf));
    assert_eq!(stun_username(&buf).as_deref(), Some("evtj:h6vY"));
    let request = parse_binding_request(&buf, RFC5769_PWD).unwrap();
    assert_eq!(
        request,
        BindingRequest {
            transaction_id: RFC5769_TID,
            username: "evtj:h6vY",
            use_candidate: false,
            priority: Some(0x6e00_01ff),
            ice_controlling: None,
            ice_controlled: Some(0x932f_f9b1_5126_3b36),
        }
    );
}

#[test]
fn rfc5769_request_with_wrong_password_is_rejected() {
    let buf = hex(RFC5769_REQUEST);
    assert_eq!(
        parse_binding_request(&buf, "VOkJxbRl1RmTxUk/WvJxBT"),
        Err(StunError::BadIntegrity)
    );
}

#[test]
fn rfc5769_request_with_wrong_fingerprint_is_rejected() {
    let mut buf = hex(RFC5769_REQUEST);
    let last = buf.len() - 1;
    buf[last] ^= 0x01;
    assert_eq!(
        parse_binding_request(&buf, RFC5769_PWD),
        Err(StunError::BadFingerprint)
    );
}

#[test]
fn tampered_request_with_fixed_fingerprint_fails_integrity() {
    let mut buf = hex(RFC5769_REQUEST);
    // The PRIORITY value sits at bytes 44..48.
    buf[47] ^= 0x01;
    refingerprint(&mut buf);
    assert_eq!(
        parse_binding_request(&buf, RFC5769_PWD),
        Err(StunError::BadIntegrity)
    );
}

#[test]
fn rfc5769_ipv4_response_parses_and_verifies() {
    let buf = hex(RFC5769_RESPONSE_V4);
    let response = parse_binding_response(&buf, RFC5769_PWD).unwrap();
    assert_eq!(
        response,
        BindingResponse {
            transaction_id: RFC5769_TID,
            success: true,
            mapped: Some("192.0.2.1:32853".parse().unwrap()),
            error_code: None,
        }
    );
    assert_eq!(
        parse_binding_response(&buf, "wrong"),
        Err(StunError::BadIntegrity)
    );
    // A response is not a request.
    assert_eq!(
        parse_binding_request(&buf, RFC5769_PWD),
        Err(StunError::UnexpectedMessage)
    );
    assert_eq!(stun_username(&buf), None);
}

#[test]
fn rfc5769_ipv6_response_parses_and_verifies() {
    let buf = hex(RFC5769_RESPONSE_V6);
    let response = parse_binding_response(&buf, RFC5769_PWD).unwrap();
    assert!(response.success);
    assert_eq!(response.transaction_id, RFC5769_TID);
    assert_eq!(
        response.mapped,
        Some(
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                .parse()
                .unwrap()
        )
    );
    let mut bad = buf.clone();
    bad[30] ^= 0x80;
    assert_eq!(
        parse_binding_response(&bad, RFC5769_PWD),
        Err(StunError::BadFingerprint)
    );
}

#[test]
fn request_round_trip() {
    let mut out = Vec::new();
    let tid = new_transaction_id();
    write_binding_request(
        &mut out,
        tid,
        "srvufrag:cliufrag",
        "remote-password-0123456789",
        candidate_priority(110, 65535, 1),
        0x0123_4567_89ab_cdef,
        true,
    )
    .unwrap();
    assert!(is_stun(&out));
    assert_eq!(stun_username_str(&out), Some("srvufrag:cliufrag"));
    let request = parse_binding_request(&out, "remote-password-0123456789").unwrap();
    assert_eq!(
        request,
        BindingRequest {
            transaction_id: tid,
            username: "srvufrag:cliufrag",
            use_candidate: true,
            priority: Some(candidate_priority(110, 65535, 1)),
            ice_controlling: Some(0x0123_4567_89ab_cdef),
            ice_controlled: None,
        }
    );
    assert_eq!(
        parse_binding_request(&out, "another-password-0123456789"),
        Err(StunError::BadIntegrity)
    );

    let mut plain = Vec::new();
    write_binding_request(&mut plain, tid, "a:b", "pw", 1, 2, false).unwrap();
    assert!(!parse_binding_request(&plain, "pw").unwrap().use_candidate);
}

#[test]
fn success_response_round_trip_ipv4_with_xor_on_the_wire() {
    let tid = new_transaction_id();
    let mapped = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)), 54321);
    let mut out = Vec::new();
    write_binding_success(&mut out, tid, mapped, "local-pwd").unwrap();

    // XOR-MAPPED-ADDRESS (RFC 5389 §15.2): port XOR the cookie's top half, address XOR the
    // cookie.
    let value = attribute(&out, 0x0020).unwrap();
    assert_eq!(value.len(), 8);
    assert_eq!(value[1], 0x01);
    assert_eq!(u16::from_be_bytes([value[2], value[3]]), 54321 ^ 0x2112);
    let cookie = [0x21, 0x12, 0xa4, 0x42];
    let ip: Vec<u8> = value[4..8].iter().zip(cookie).map(|(a, b)| a ^ b).collect();
    assert_eq!(ip, [203, 0, 113, 7]);

    let response = parse_binding_response(&out, "local-pwd").unwrap();
    assert_eq!(
        response,
        BindingResponse {
            transaction_id: tid,
            success: true,
            mapped: Some(mapped),
            error_code: None,
        }
    );
    assert_eq!(
        parse_binding_response(&out, "other-pwd"),
        Err(StunError::BadIntegrity)
    );
}

#[test]
fn success_response_round_trip_ipv6_with_xor_on_the_wire() {
    let tid = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0xff, 0xee];
    let ip = Ipv6Addr::new(0x2001, 0xdb8, 0, 0x42, 0, 0, 0xdead, 0xbeef);
    let mapped = SocketAddr::new(IpAddr::V6(ip), 7882);
    let mut out = Vec::new();
    write_binding_success(&mut out, tid, mapped, "local-pwd").unwrap();

    let value = attribute(&out, 0x0020).unwrap();
    assert_eq!(value.len(), 20);
    assert_eq!(value[1], 0x02);
    assert_eq!(u16::from_be_bytes([value[2], value[3]]), 7882 ^ 0x2112);
    let mut key = vec![0x21, 0x12, 0xa4, 0x42];
    key.extend_from_slice(&tid);
    let raw: Vec<u8> = value[4..20].iter().zip(key).map(|(a, b)| a ^ b).collect();
    assert_eq!(raw, ip.octets());

    let response = parse_binding_response(&out, "local-pwd").unwrap();
    assert_eq!(response.mapped, Some(mapped));
    assert_eq!(response.transaction_id, tid);
}

#[test]
fn error_responses() {
    let tid = new_transaction_id();
    let mut out = Vec::new();
    write_binding_error(&mut out, tid, 487, Some("pwd")).unwrap();
    let response = parse_binding_response(&out, "pwd").unwrap();
    assert_eq!(
        response,
        BindingResponse {
            transaction_id: tid,
            success: false,
            mapped: None,
            error_code: Some(487),
        }
    );
    assert_eq!(
        parse_binding_response(&out, "not-pwd"),
        Err(StunError::BadIntegrity)
    );

    // An unsigned 401 is accepted, whatever password we hold.
    out.clear();
    write_binding_error(&mut out, tid, 401, None).unwrap();
    let response = parse_binding_response(&out, "anything").unwrap();
    assert_eq!(response.error_code, Some(401));
    assert!(!response.success);

    assert_eq!(
        write_binding_error(&mut Vec::new(), tid, 700, None),
        Err(StunError::InvalidErrorCode(700))
    );
    assert_eq!(
        write_binding_error(&mut Vec::new(), tid, 200, None),
        Err(StunError::InvalidErrorCode(200))
    );
}

#[test]
fn unsigned_success_response_is_rejected() {
    let tid = new_transaction_id();
    let mut message: Message<IceAttribute> = Message::new(
        MessageClass::SuccessResponse,
        BINDING,
        TransactionId::new(tid),
    );
    message.add_attribute(stun_codec::rfc5389::attributes::XorMappedAddress::new(
        "192.0.2.1:1000".parse().unwrap(),
    ));
    let mut out = Vec::new();
    finish(message, None, &mut out).unwrap();
    assert_eq!(
        parse_binding_response(&out, "pwd"),
        Err(StunError::MissingIntegrity)
    );
}

#[test]
fn request_without_fingerprint_is_rejected() {
    let mut out = Vec::new();
    write_binding_request(&mut out, [1; 12], "a:b", "pw", 1, 2, false).unwrap();
    out.truncate(out.len() - 8);
    let len = (out.len() - 20) as u16;
    out[2..4].copy_from_slice(&len.to_be_bytes());
    assert_eq!(
        parse_binding_request(&out, "pw"),
        Err(StunError::MissingFingerprint)
    );
}

#[test]
fn attribute_after_integrity_is_rejected() {
    let mut out = Vec::new();
    write_binding_request(&mut out, [1; 12], "a:b", "pw", 1, 2, false).unwrap();
    // Insert USE-CANDIDATE between MESSAGE-INTEGRITY and FINGERPRINT: it would nominate
    // without being covered by the integrity check.
    let at = out.len() - 8;
    out.splice(at..at, [0x00, 0x25, 0x00, 0x00]);
    let len = (out.len() - 20) as u16;
    out[2..4].copy_from_slice(&len.to_be_bytes());
    refingerprint(&mut out);
    assert_eq!(
        parse_binding_request(&out, "pw"),
        Err(StunError::AttributeAfterIntegrity)
    );
}

#[test]
fn framing_errors() {
    assert!(!is_stun(&[]));
    assert!(!is_stun(&[0u8; 19]));
    let mut buf = hex(RFC5769_REQUEST);
    assert_eq!(
        parse_binding_request(&buf[..buf.len() - 4], RFC5769_PWD),
        Err(StunError::BadLength)
    );
    buf[0] = 0x40;
    assert!(!is_stun(&buf));
    assert_eq!(
        parse_binding_request(&buf, RFC5769_PWD),
        Err(StunError::NotStun)
    );
    assert_eq!(
        parse_binding_request(&vec![0u8; MAX_MESSAGE_LEN + 4], "x"),
        Err(StunError::TooLarge)
    );
    // A DTLS record (first byte 22) is not STUN.
    let mut dtls = hex(RFC5769_REQUEST);
    dtls[0] = 22;
    assert!(!is_stun(&dtls));
}

#[test]
fn candidate_priority_and_line() {
    assert_eq!(
        candidate_priority(HOST_TYPE_PREFERENCE, 65535, 1),
        2_130_706_431
    );
    assert_eq!(candidate_priority(0, 0, 256), 0);
    assert_eq!(
        candidate_priority(PEER_REFLEXIVE_TYPE_PREFERENCE, 0, 1),
        (110 << 24) + 255
    );
    // Out-of-range inputs are clamped, never overflow.
    assert_eq!(
        candidate_priority(u32::MAX, u32::MAX, 0),
        candidate_priority(126, 65535, 1)
    );
    assert_eq!(
        host_candidate_line(
            "1",
            IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1)),
            7882,
            2_130_706_431
        ),
        "candidate:1 1 udp 2130706431 10.77.0.1 7882 typ host generation 0"
    );
    assert_eq!(
        host_candidate_line("2", "2001:db8::1".parse().unwrap(), 7882, 5),
        "candidate:2 1 udp 5 2001:db8::1 7882 typ host generation 0"
    );
}

#[test]
fn random_credentials() {
    let ufrag = random_ufrag();
    let pwd = random_pwd();
    assert_eq!(ufrag.len(), 8);
    assert!(pwd.len() >= 24);
    let ice_char = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
    assert!(ufrag.chars().all(ice_char));
    assert!(pwd.chars().all(ice_char));
    assert_ne!(random_pwd(), random_pwd());
    assert_ne!(new_transaction_id(), new_transaction_id());
}

// ---- IceLite ----

const SERVER_UFRAG: &str = "srvU";
const SERVER_PWD: &str = "server-password-0123456789";
const CLIENT_UFRAG: &str = "cliU";

fn lite() -> IceLite {
    let mut lite = IceLite::new(SERVER_UFRAG.to_owned(), SERVER_PWD.to_owned());
    lite.set_remote_credentials(CLIENT_UFRAG.to_owned(), CLIENT_PWD.to_owned());
    lite
}

fn check(username: &str, pwd: &str, use_candidate: bool) -> (Vec<u8>, [u8; 12]) {
    let tid = new_transaction_id();
    let mut out = Vec::new();
    write_binding_request(&mut out, tid, username, pwd, 12345, 99, use_candidate).unwrap();
    (out, tid)
}

fn server_check(use_candidate: bool) -> (Vec<u8>, [u8; 12]) {
    check(
        &format!("{SERVER_UFRAG}:{CLIENT_UFRAG}"),
        SERVER_PWD,
        use_candidate,
    )
}

fn addr(last: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)), port)
}

#[test]
fn lite_use_candidate_selects_the_address() {
    let mut lite = lite();
    assert_eq!(lite.state(), IceState::Checking);
    let now = Instant::now();
    let from = addr(1, 50000);
    let (request, tid) = server_check(true);
    let mut out = Vec::new();
    let input = lite.handle_stun(now, from, &request, &mut out).unwrap();
    assert_eq!(
        input,
        IceInput {
            response_written: true,
            became_valid: true,
            nominated: true,
            moved: false,
        }
    );
    assert_eq!(lite.selected(), Some(from));
    assert!(lite.is_valid_source(from));
    assert!(!lite.is_valid_source(addr(2, 50000)));
    assert_eq!(lite.state(), IceState::Connected);

    // The response is what a controlling client expects.
    let response = parse_binding_response(&out, SERVER_PWD).unwrap();
    assert_eq!(response.transaction_id, tid);
    assert!(response.success);
    assert_eq!(response.mapped, Some(from));
}

#[test]
fn lite_selects_latest_checked_address_until_nomination() {
    let mut lite = lite();
    let t0 = Instant::now();
    let a = addr(1, 1000);
    let b = addr(2, 2000);
    let c = addr(3, 3000);
    let mut out = Vec::new();

    let input = lite
        .handle_stun(t0, a, &server_check(false).0, &mut out)
        .unwrap();
    assert!(input.became_valid && !input.nominated);
    assert_eq!(lite.selected(), Some(a));

    let input = lite
        .handle_stun(
            t0 + Duration::from_millis(10),
            a,
            &server_check(false).0,
            &mut out,
        )
        .unwrap();
    assert!(input.response_written && !input.became_valid);

    lite.handle_stun(
        t0 + Duration::from_millis(20),
        b,
        &server_check(false).0,
        &mut out,
    )
    .unwrap();
    assert_eq!(lite.selected(), Some(b));

    lite.handle_stun(
        t0 + Duration::from_millis(30),
        a,
        &server_check(true).0,
        &mut out,
    )
    .unwrap();
    assert_eq!(lite.selected(), Some(a));

    // Later checks from an address already valid do not move the selection.
    lite.handle_stun(
        t0 + Duration::from_millis(40),
        b,
        &server_check(false).0,
        &mut out,
    )
    .unwrap();
    assert_eq!(lite.selected(), Some(a));
    // Nor does a first check from another address while the selected one is being checked:
    // a client with several interfaces validates backup paths too.
    let input = lite
        .handle_stun(
            t0 + Duration::from_millis(50),
            c,
            &server_check(false).0,
            &mut out,
        )
        .unwrap();
    assert!(input.became_valid && !input.moved);
    assert_eq!(lite.selected(), Some(a));
    // A nomination from it does, at once.
    let input = lite
        .handle_stun(
            t0 + Duration::from_millis(60),
            c,
            &server_check(true).0,
            &mut out,
        )
        .unwrap();
    assert!(input.moved && input.nominated);
    assert_eq!(lite.selected(), Some(c));
    assert!(lite.is_valid_source(a), "the old address keeps its consent");
}

#[test]
fn lite_follows_a_peer_whose_address_changed() {
    let mut lite = lite();
    let t0 = Instant::now();
    let old = addr(1, 40000);
    let new = addr(9, 61000);
    let mut out = Vec::new();
    lite.handle_stun(t0, old, &server_check(true).0, &mut out)
        .unwrap();
    // Consent checks go on from the old address; then the NAT rebinds after the one at
    // 7.5 s, and checks (without USE-CANDIDATE) come from the new address every 2.5 s.
    for i in 1..4 {
        let at = t0 + Duration::from_millis(2500 * i);
        let input = lite
            .handle_stun(at, old, &server_check(false).0, &mut out)
            .unwrap();
        assert!(!input.moved);
    }
    let last_old = t0 + Duration::from_millis(7500);
    let mut moved_at = None;
    for i in 1..6 {
        let at = last_old + Duration::from_millis(2500 * i);
        let (request, tid) = server_check(false);
        out.clear();
        let input = lite.handle_stun(at, new, &request, &mut out).unwrap();
        // Every check is answered at the address it came from.
        let response = parse_binding_response(&out, SERVER_PWD).unwrap();
        assert_eq!((response.transaction_id, response.mapped), (tid, Some(new)));
        if input.moved {
            moved_at.get_or_insert(at);
        }
        // A retransmission of the check from the same address moves nothing more.
        let again = lite.handle_stun(at, new, &request, &mut out).unwrap();
        assert!(again.response_written && !again.moved);
    }
    // The media followed once the old address had been silent for MOVE_AFTER_SILENCE:
    // at the first check after that (10 s after the last old one).
    assert_eq!(moved_at, Some(last_old + Duration::from_secs(10)));
    assert!(MOVE_AFTER_SILENCE <= Duration::from_secs(10));
    assert_eq!(lite.selected(), Some(new));
    // The old address loses its consent 30 s after its last check; the new one stays.
    lite.handle_timeout(t0 + Duration::from_millis(7500) + CONSENT_TIMEOUT);
    assert!(!lite.is_valid_source(old));
    assert_eq!(lite.selected(), Some(new));
    assert_eq!(lite.state(), IceState::Connected);
}

#[test]
fn a_check_replayed_from_another_address_moves_nothing() {
    let mut lite = lite();
    let t0 = Instant::now();
    let client = addr(1, 40000);
    let attacker = addr(66, 6666);
    let mut out = Vec::new();
    let (request, _) = server_check(true);
    lite.handle_stun(t0, client, &request, &mut out).unwrap();
    out.clear();
    // The same signed check, sent again from elsewhere, nominated or not.
    assert_eq!(
        lite.handle_stun(t0 + Duration::from_millis(5), attacker, &request, &mut out),
        Err(StunError::Replayed)
    );
    assert!(out.is_empty(), "nothing is sent to the replayer");
    assert_eq!(lite.selected(), Some(client));
    assert!(!lite.is_valid_source(attacker));
}

#[test]
fn lite_refuses_unknown_ufrags_and_bad_passwords() {
    let mut lite = lite();
    let now = Instant::now();
    let from = addr(9, 9999);
    let mut out = Vec::new();

    for username in ["other:cliU", "srvU:someoneelse", "srvU", "cliU:srvU"] {
        let (request, _) = check(username, SERVER_PWD, true);
        assert_eq!(
            lite.handle_stun(now, from, &request, &mut out),
            Err(StunError::UnknownUsername),
            "{username}"
        );
    }
    let (request, _) = check("srvU:cliU", "client-password-0123456789", true);
    assert_eq!(
        lite.handle_stun(now, from, &request, &mut out),
        Err(StunError::BadIntegrity)
    );
    assert!(out.is_empty());
    assert!(!lite.is_valid_source(from));
    assert_eq!(lite.selected(), None);
    assert_eq!(lite.state(), IceState::Checking);
}

#[test]
fn lite_accepts_any_remote_ufrag_before_remote_sdp() {
    let mut lite = IceLite::new(SERVER_UFRAG.to_owned(), SERVER_PWD.to_owned());
    assert_eq!(lite.state(), IceState::New);
    let (request, _) = check("srvU:whoever", SERVER_PWD, false);
    let mut out = Vec::new();
    let input = lite
        .handle_stun(Instant::now(), addr(1, 1), &request, &mut out)
        .unwrap();
    assert!(input.became_valid);
    assert_eq!(lite.state(), IceState::Connected);
}

#[test]
fn lite_answers_role_conflict_with_487() {
    let mut lite = lite();
    let tid = new_transaction_id();
    let mut message: Message<IceAttribute> =
        Message::new(MessageClass::Request, BINDING, TransactionId::new(tid));
    message.add_attribute(Username::new("srvU:cliU".to_owned()).unwrap());
    message.add_attribute(IceControlled::new(7));
    message.add_attribute(Priority::new(1));
    let mut request = Vec::new();
    finish(message, Some(SERVER_PWD), &mut request).unwrap();

    let from = addr(1, 1);
    let mut out = Vec::new();
    let input = lite
        .handle_stun(Instant::now(), from, &request, &mut out)
        .unwrap();
    assert!(input.response_written && !input.became_valid && !input.nominated);
    let response = parse_binding_response(&out, SERVER_PWD).unwrap();
    assert_eq!(response.error_code, Some(487));
    assert_eq!(response.transaction_id, tid);
    assert!(!lite.is_valid_source(from));
}

#[test]
fn lite_ignores_indications_and_refuses_responses() {
    let mut lite = lite();
    let mut out = Vec::new();
    let mut indication = hex(RFC5769_REQUEST);
    indication[1] = 0x11;
    assert_eq!(
        lite.handle_stun(Instant::now(), addr(1, 1), &indication, &mut out),
        Ok(IceInput::default())
    );
    let response = hex(RFC5769_RESPONSE_V4);
    assert_eq!(
        lite.handle_stun(Instant::now(), addr(1, 1), &response, &mut out),
        Err(StunError::UnexpectedMessage)
    );
    assert!(out.is_empty());
}

#[test]
fn lite_consent_expires_after_30_seconds_without_checks() {
    let mut lite = lite();
    let t0 = Instant::now();
    let from = addr(1, 1000);
    let mut out = Vec::new();
    assert_eq!(lite.poll_timeout(), None);
    lite.handle_stun(t0, from, &server_check(true).0, &mut out)
        .unwrap();
    assert_eq!(lite.poll_timeout(), Some(t0 + CONSENT_TIMEOUT));

    lite.handle_timeout(t0 + Duration::from_secs(29));
    assert_eq!(lite.state(), IceState::Connected);

    // A consent check at 20 s pushes expiry to 50 s.
    lite.handle_stun(
        t0 + Duration::from_secs(20),
        from,
        &server_check(false).0,
        &mut out,
    )
    .unwrap();
    assert_eq!(lite.poll_timeout(), Some(t0 + Duration::from_secs(50)));
    lite.handle_timeout(t0 + Duration::from_secs(49));
    assert_eq!(lite.state(), IceState::Connected);
    assert_eq!(lite.selected(), Some(from));

    lite.handle_timeout(t0 + Duration::from_secs(50));
    assert_eq!(lite.state(), IceState::Disconnected);
    assert_eq!(lite.selected(), None);
    assert!(!lite.is_valid_source(from));
    assert_eq!(lite.poll_timeout(), None);

    // The peer comes back.
    let input = lite
        .handle_stun(
            t0 + Duration::from_secs(60),
            from,
            &server_check(false).0,
            &mut out,
        )
        .unwrap();
    assert!(input.became_valid);
    assert_eq!(lite.state(), IceState::Connected);
}

#[test]
fn lite_falls_back_when_the_nominated_address_loses_consent() {
    let mut lite = lite();
    let t0 = Instant::now();
    let a = addr(1, 1000);
    let b = addr(2, 2000);
    let mut out = Vec::new();
    lite.handle_stun(t0, a, &server_check(true).0, &mut out)
        .unwrap();
    // `a` keeps being checked; `b` is validated beside it and does not take the media.
    for at in [5, 10, 15] {
        lite.handle_stun(
            t0 + Duration::from_secs(at),
            a,
            &server_check(false).0,
            &mut out,
        )
        .unwrap();
    }
    lite.handle_stun(
        t0 + Duration::from_secs(20),
        b,
        &server_check(false).0,
        &mut out,
    )
    .unwrap();
    assert_eq!(lite.selected(), Some(a));
    // `a` falls silent and loses consent 30 s after its last check: media goes to `b`.
    lite.handle_timeout(t0 + Duration::from_secs(45));
    assert_eq!(lite.selected(), Some(b));
    assert_eq!(lite.state(), IceState::Connected);
    assert!(!lite.is_valid_source(a));
}

#[test]
fn lite_bounds_the_number_of_valid_sources() {
    let mut lite = lite();
    let t0 = Instant::now();
    let mut out = Vec::new();
    let nominated = addr(200, 1);
    lite.handle_stun(t0, nominated, &server_check(true).0, &mut out)
        .unwrap();
    for i in 0..(MAX_VALID_SOURCES as u8 + 3) {
        let at = t0 + Duration::from_millis(u64::from(i) + 1);
        lite.handle_stun(at, addr(i, 2), &server_check(false).0, &mut out)
            .unwrap();
    }
    assert!(lite.is_valid_source(nominated));
    assert_eq!(lite.selected(), Some(nominated));
    // The oldest unnominated ones were forgotten, the newest kept.
    assert!(!lite.is_valid_source(addr(0, 2)));
    assert!(lite.is_valid_source(addr(MAX_VALID_SOURCES as u8 + 2, 2)));
}

// ---- Hostile input ----

fn exercise(buf: &[u8], lite: &mut IceLite, now: Instant) {
    let _ = is_stun(buf);
    let _ = stun_username(buf);
    let _ = parse_binding_request(buf, SERVER_PWD);
    let _ = parse_binding_response(buf, SERVER_PWD);
    let _ = lite.handle_stun(now, addr(7, 7), buf, &mut Vec::new());
}

#[test]
fn random_and_truncated_input_never_panics() {
    let mut rng = StdRng::seed_from_u64(0x1ce);
    let mut lite = lite();
    let now = Instant::now();

    let mut valid = vec![
        hex(RFC5769_REQUEST),
        hex(RFC5769_RESPONSE_V4),
        hex(RFC5769_RESPONSE_V6),
        server_check(true).0,
    ];
    let mut error = Vec::new();
    write_binding_error(&mut error, [3; 12], 401, Some(SERVER_PWD)).unwrap();
    valid.push(error);

    // Every prefix of every valid message.
    for message in &valid {
        for end in 0..message.len() {
            exercise(&message[..end], &mut lite, now);
        }
    }

    // Pure noise, and noise behind a valid STUN header.
    for _ in 0..20_000 {
        let len = rng.random_range(0..200);
        let mut buf: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        exercise(&buf, &mut lite, now);
        if buf.len() >= 20 {
            buf[0] &= 0x01;
            buf[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
            let body = ((buf.len() - 20) & !3) as u16;
            buf.truncate(20 + usize::from(body));
            buf[2..4].copy_from_slice(&body.to_be_bytes());
            exercise(&buf, &mut lite, now);
        }
    }

    // Mutations of valid messages with a repaired FINGERPRINT, so they reach the attribute
    // decoder and the integrity check.
    for _ in 0..20_000 {
        let mut buf = valid[rng.random_range(0..valid.len())].clone();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(20..buf.len() - 8);
            buf[at] = rng.random();
        }
        refingerprint(&mut buf);
        exercise(&buf, &mut lite, now);
    }
}

const CLIENT_PWD: &str = "client-password-0123456789";

/// A responder whose peer nominated `addr(1, 1000)` at the returned instant.
fn nominated() -> (IceLite, Instant, SocketAddr) {
    let mut lite = lite();
    let (t0, from) = (Instant::now(), addr(1, 1000));
    lite.handle_stun(t0, from, &server_check(true).0, &mut Vec::new())
        .unwrap();
    (lite, t0, from)
}

/// A success answer to our check `tid`, signed as the client signs it.
fn client_answer(tid: [u8; 12], to: SocketAddr) -> Vec<u8> {
    let mut out = Vec::new();
    write_binding_success(&mut out, tid, to, CLIENT_PWD).unwrap();
    out
}

#[test]
fn lite_checks_a_silent_peer_every_500_ms_until_it_answers() {
    let (mut lite, t0, from) = nominated();
    let mut out = Vec::new();
    out.clear();

    // Checked 5 s ago: not silent yet.
    assert!(!lite.check_silence(t0 + Duration::from_secs(5)));
    assert_eq!(lite.poll_probe(&mut out), None);
    assert_eq!(lite.poll_timeout(), Some(t0 + CONSENT_TIMEOUT));

    let t1 = t0 + PROBE_AFTER_SILENCE;
    assert!(lite.check_silence(t1));
    assert!(lite.probing());
    assert_eq!(lite.poll_probe(&mut out), Some(from));
    // A controlled agent's check, signed with the client's password, named `client:server`.
    let first_check = out.clone();
    let first = parse_binding_request(&first_check, CLIENT_PWD).unwrap();
    assert_eq!(first.username, format!("{CLIENT_UFRAG}:{SERVER_UFRAG}"));
    assert!(first.ice_controlled.is_some() && first.ice_controlling.is_none());
    assert!(!first.use_candidate);
    assert!(parse_binding_request(&out, SERVER_PWD).is_err());
    out.clear();
    assert_eq!(lite.poll_probe(&mut out), None, "one check per due time");
    assert!(
        !lite.check_silence(t1 + Duration::from_millis(100)),
        "already checking"
    );
    assert_eq!(lite.poll_timeout(), Some(t1 + PROBE_INTERVAL));

    lite.handle_timeout(t1 + PROBE_INTERVAL);
    assert_eq!(lite.poll_probe(&mut out), Some(from));
    let second_check = out.clone();
    let second = parse_binding_request(&second_check, CLIENT_PWD).unwrap();
    assert_ne!(second.transaction_id, first.transaction_id);
    out.clear();

    // An answer to the earlier check, or from elsewhere, is refused; the answer to the last
    // one refreshes consent and ends the checking.
    let at = t1 + Duration::from_millis(600);
    assert_eq!(
        lite.handle_stun(
            at,
            from,
            &client_answer(first.transaction_id, from),
            &mut out
        ),
        Err(StunError::UnexpectedMessage)
    );
    assert_eq!(
        lite.handle_stun(
            at,
            addr(2, 1000),
            &client_answer(second.transaction_id, from),
            &mut out
        ),
        Err(StunError::UnexpectedMessage)
    );
    let mut forged = Vec::new();
    write_binding_success(&mut forged, second.transaction_id, from, "not-the-password").unwrap();
    assert!(lite.handle_stun(at, from, &forged, &mut out).is_err());
    assert!(lite.probing());
    assert_eq!(
        lite.handle_stun(
            at,
            from,
            &client_answer(second.transaction_id, from),
            &mut out
        ),
        Ok(IceInput::default())
    );
    assert!(out.is_empty(), "an answer is not answered");
    assert!(!lite.probing());
    assert_eq!(lite.poll_timeout(), Some(at + CONSENT_TIMEOUT));
    assert!(!lite.check_silence(at + Duration::from_secs(5)));
    assert!(lite.check_silence(at + PROBE_AFTER_SILENCE));
}

#[test]
fn lite_stops_checking_a_peer_that_checks_again() {
    let (mut lite, t0, from) = nominated();
    let mut out = Vec::new();
    let t1 = t0 + PROBE_AFTER_SILENCE;
    assert!(lite.check_silence(t1));
    lite.handle_stun(
        t1 + Duration::from_millis(200),
        from,
        &server_check(false).0,
        &mut out,
    )
    .unwrap();
    assert!(!lite.probing());
    lite.handle_timeout(t1 + PROBE_INTERVAL);
    out.clear();
    assert_eq!(lite.poll_probe(&mut out), None);
}

#[test]
fn lite_checks_an_unanswering_peer_only_until_consent_expires() {
    let (mut lite, t0, _) = nominated();
    let mut out = Vec::new();
    assert!(lite.check_silence(t0 + PROBE_AFTER_SILENCE));
    let mut checks = 0;
    let mut now = t0;
    while let Some(next) = lite.poll_timeout() {
        out.clear();
        if lite.poll_probe(&mut out).is_some() {
            checks += 1;
        }
        assert!(next >= now && checks < 100);
        now = next;
        lite.handle_timeout(now);
    }
    // From 6 s to 30 s of silence, one every 500 ms; then nothing is left to check.
    let expected =
        ((CONSENT_TIMEOUT - PROBE_AFTER_SILENCE).as_millis() / PROBE_INTERVAL.as_millis()) as usize;
    assert!((expected..=expected + 1).contains(&checks), "{checks}");
    assert_eq!(lite.state(), IceState::Disconnected);
    assert!(!lite.probing());
    assert!(!lite.check_silence(now + Duration::from_secs(10)));
}

#[test]
fn what_we_write_a_general_codec_reads_and_verifies() {
    use stun_codec::rfc5245::attributes::{IceControlling, UseCandidate};
    use stun_codec::rfc5389::attributes::{ErrorCode, XorMappedAddress};
    let tid = [7; 12];

    let mut out = Vec::new();
    write_binding_request(
        &mut out,
        tid,
        "remote:local",
        "a-password",
        99,
        0xfeed,
        true,
    )
    .unwrap();
    let m = codec_decode(&out, "a-password");
    assert_eq!(m.class(), MessageClass::Request);
    assert_eq!(m.method(), BINDING);
    assert_eq!(m.transaction_id(), TransactionId::new(tid));
    assert_eq!(
        m.get_attribute::<Username>().unwrap().name(),
        "remote:local"
    );
    assert_eq!(m.get_attribute::<Priority>().unwrap().prio(), 99);
    assert_eq!(m.get_attribute::<IceControlling>().unwrap().prio(), 0xfeed);
    assert!(m.get_attribute::<UseCandidate>().is_some());

    out.clear();
    // A USERNAME whose length is not a multiple of four is padded.
    write_controlled_check(&mut out, tid, "abc:de", "other", 5, 6).unwrap();
    let m = codec_decode(&out, "other");
    assert_eq!(m.get_attribute::<Username>().unwrap().name(), "abc:de");
    assert_eq!(m.get_attribute::<IceControlled>().unwrap().prio(), 6);
    assert!(m.get_attribute::<UseCandidate>().is_none());

    for mapped in ["198.51.100.9:4000", "[2001:db8::7]:65535"] {
        let mapped: SocketAddr = mapped.parse().unwrap();
        out.clear();
        write_binding_success(&mut out, tid, mapped, "pw").unwrap();
        let m = codec_decode(&out, "pw");
        assert_eq!(m.class(), MessageClass::SuccessResponse);
        assert_eq!(
            m.get_attribute::<XorMappedAddress>().unwrap().address(),
            mapped
        );
    }

    out.clear();
    write_binding_error(&mut out, tid, 487, Some("pw")).unwrap();
    let m = codec_decode(&out, "pw");
    assert_eq!(m.class(), MessageClass::ErrorResponse);
    assert_eq!(m.get_attribute::<ErrorCode>().unwrap().code(), 487);
    assert_eq!(
        m.get_attribute::<ErrorCode>().unwrap().reason_phrase(),
        "Role Conflict"
    );
}

#[test]
fn what_a_general_codec_writes_we_read() {
    use stun_codec::rfc5245::attributes::{IceControlling, UseCandidate};
    let tid = [3; 12];
    let mut message: Message<IceAttribute> =
        Message::new(MessageClass::Request, BINDING, TransactionId::new(tid));
    message.add_attribute(Username::new("srv:cli".to_owned()).unwrap());
    message.add_attribute(IceControlling::new(42));
    message.add_attribute(Priority::new(1234));
    message.add_attribute(UseCandidate::new());
    let mut buf = Vec::new();
    finish(message, Some("pw"), &mut buf).unwrap();
    assert_eq!(
        parse_binding_request(&buf, "pw").unwrap(),
        BindingRequest {
            transaction_id: tid,
            username: "srv:cli",
            use_candidate: true,
            priority: Some(1234),
            ice_controlling: Some(42),
            ice_controlled: None,
        }
    );
}

#[test]
fn attributes_of_the_wrong_size_are_refused() {
    // PRIORITY (0x0024) must be 4 bytes, USE-CANDIDATE (0x0025) empty, ICE-CONTROLLING
    // (0x802a) 8 bytes, XOR-MAPPED-ADDRESS (0x0020) 8 or 20 bytes by family.
    let cases: [(u16, u8, &[u8]); 4] = [
        (0x0001, 0x24, &[0, 0, 1]),
        (0x0001, 0x25, &[1, 0, 0, 0]),
        (0x0001, 0x2a, &[0; 4]),
        (0x0101, 0x20, &[0, 2, 0, 0, 1, 2, 3, 4]),
    ];
    for (message_type, low, value) in cases {
        let kind = if low == 0x2a { 0x802a } else { u16::from(low) };
        let mut buf = Vec::new();
        buf.extend_from_slice(&message_type.to_be_bytes());
        buf.extend_from_slice(&[0, 0, 0x21, 0x12, 0xa4, 0x42]);
        buf.extend_from_slice(&[1; 12]);
        buf.extend_from_slice(&kind.to_be_bytes());
        buf.extend_from_slice(&(value.len() as u16).to_be_bytes());
        buf.extend_from_slice(value);
        buf.resize(buf.len().next_multiple_of(4), 0);
        let len = (buf.len() - 20) as u16;
        buf[2..4].copy_from_slice(&len.to_be_bytes());
        let refused = if message_type == 0x0001 {
            parse_binding_request(&buf, "pw").err()
        } else {
            parse_binding_response(&buf, "pw").err()
        };
        assert_eq!(refused, Some(StunError::Malformed), "attribute {kind:#06x}");
    }
}
