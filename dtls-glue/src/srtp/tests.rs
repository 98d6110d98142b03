//! Known-answer tests (RFC 3711 Appendix B, RFC 7714 §16/§17, libsrtp's driver packet),
//! byte-exact interop with `webrtc-srtp` in both directions, and the failure paths.

use webrtc_srtp::context::Context as TheirContext;
use webrtc_srtp::protection_profile::ProtectionProfile as TheirProfile;

use super::cm::CmTransform;
use super::gcm::GcmTransform;
use super::kdf::{Kdf, Label};
use super::streams::Streams;
use super::*;

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    assert_eq!(s.len() % 2, 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const PROFILES: [SrtpProfile; 2] = [SrtpProfile::Aes128CmHmacSha1_80, SrtpProfile::AeadAes128Gcm];

fn their_profile(profile: SrtpProfile) -> TheirProfile {
    match profile {
        SrtpProfile::Aes128CmHmacSha1_80 => TheirProfile::Aes128CmHmacSha1_80,
        SrtpProfile::AeadAes128Gcm => TheirProfile::AeadAes128Gcm,
    }
}

/// A master key and salt of the profile's lengths, from a seed.
fn master(profile: SrtpProfile, seed: u8) -> (Vec<u8>, Vec<u8>) {
    let key = (0..profile.key_len() as u8)
        .map(|i| i.wrapping_mul(29).wrapping_add(seed))
        .collect();
    let salt = (0..profile.salt_len() as u8)
        .map(|i| i.wrapping_mul(71) ^ seed.wrapping_add(0x5a))
        .collect();
    (key, salt)
}

fn context(profile: SrtpProfile, seed: u8) -> SrtpContext {
    let (key, salt) = master(profile, seed);
    SrtpContext::new(profile, &key, &salt).unwrap()
}

fn their_context(profile: SrtpProfile, seed: u8) -> TheirContext {
    let (key, salt) = master(profile, seed);
    TheirContext::new(&key, &salt, their_profile(profile), None, None).unwrap()
}

/// An RTP packet: `csrcs` CSRCs, an optional one-byte-header extension, `payload_len` bytes.
fn rtp_packet(seq: u16, ssrc: u32, csrcs: u8, extension: bool, payload_len: usize) -> Vec<u8> {
    let mut p = vec![0x80 | csrcs, 96, 0, 0];
    if extension {
        p[0] |= 0x10;
    }
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    for c in 0..csrcs {
        p.extend_from_slice(&(0x1000_0000 + u32::from(c)).to_be_bytes());
    }
    if extension {
        // RFC 8285 one-byte form: element id 1 with one byte, then padding to a word.
        p.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, 0x10, 0xaa, 0x00, 0x00]);
    }
    p.extend((0..payload_len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seq as u8)));
    p
}

/// A receiver report with one report block, sender SSRC `ssrc`.
fn rtcp_packet(ssrc: u32, fill: u8) -> Vec<u8> {
    let mut p = vec![0x81, 201, 0x00, 0x07];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&0x0bad_cafe_u32.to_be_bytes());
    p.extend_from_slice(&[fill; 20]);
    p
}

/// Protects `plain` with `ctx` in a fresh buffer with room for the overhead.
fn protect_rtp(ctx: &mut SrtpContext, plain: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = plain.to_vec();
    buf.resize(plain.len() + ctx.profile().rtp_overhead(), 0);
    let n = ctx.protect_rtp(&mut buf, plain.len())?;
    buf.truncate(n);
    Ok(buf)
}

fn unprotect_rtp(ctx: &mut SrtpContext, wire: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = wire.to_vec();
    let n = ctx.unprotect_rtp(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn protect_rtcp(ctx: &mut SrtpContext, plain: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = plain.to_vec();
    buf.resize(plain.len() + ctx.profile().rtcp_overhead(), 0);
    let n = ctx.protect_rtcp(&mut buf, plain.len())?;
    buf.truncate(n);
    Ok(buf)
}

fn unprotect_rtcp(ctx: &mut SrtpContext, wire: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = wire.to_vec();
    let n = ctx.unprotect_rtcp(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

// RFC 3711 Appendix B.3: key derivation.

const B3_MASTER_KEY: &str = "E1F97A0D3E018BE0D64FA32C06DE4139";
const B3_MASTER_SALT: &str = "0EC675AD498AFEEBB6960B3AABE6";

#[test]
fn rfc3711_b3_key_derivation() {
    let kdf = Kdf::new(&unhex(B3_MASTER_KEY), &unhex(B3_MASTER_SALT));
    let cipher_key: [u8; 16] = kdf.derive_array(Label::RtpEncryption);
    assert_eq!(cipher_key[..], unhex("C61E7A93744F39EE10734AFE3FF7A087"));
    let cipher_salt: [u8; 14] = kdf.derive_array(Label::RtpSalt);
    assert_eq!(cipher_salt[..], unhex("30CBBC08863D8C85D49DB34A9AE1"));
    // The appendix lists 94 bytes of the authentication key stream; SHA1-HMAC uses 20.
    let auth_key: [u8; 94] = kdf.derive_array(Label::RtpAuthentication);
    assert_eq!(
        auth_key[..],
        unhex(
            "CEBE321F6FF7716B6FD4AB49AF256A15 6D38BAA48F0A0ACF3C34E2359E6CDBCE
             E049646C43D9327AD175578EF7227098 6371C10C9A369AC2F94A8C5FBCDDDC25
             6D6E919A48B610EF17C2041E47403576 6B68642C59BBFC2F34DB60DBDFB2"
        )
    );
    // The RTCP labels give different keys.
    let rtcp_key: [u8; 16] = kdf.derive_array(Label::RtcpEncryption);
    assert_ne!(rtcp_key, cipher_key);
}

// RFC 3711 Appendix B.2: AES-CM keystream.

#[test]
fn rfc3711_b2_aes_cm_keystream() {
    let key: [u8; 16] = unhex("2B7E151628AED2A6ABF7158809CF4F3C")
        .try_into()
        .unwrap();
    let salt: [u8; 14] = unhex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").try_into().unwrap();
    let t = CmTransform::from_session_keys(&key, salt, &[0; 20]);
    // SSRC 0 and index 0: a zero payload encrypts to the keystream itself.
    let mut buf = [0u8; 12 + 48 + cm::TAG_LEN];
    buf[0] = 0x80;
    let n = t.protect_rtp(&mut buf, 60, 12, 0, 0).unwrap();
    assert_eq!(n, 70);
    assert_eq!(
        buf[12..60],
        unhex(
            "E03EAD0935C95E80E166B16DD92B4EB4
             D23513162B02D0F72A43A2FE4A5F97AB
             41E95B3BB0A2E8DD477901E4FCA894C0"
        )
    );
}

// libsrtp's srtp_driver AES_CM_128_HMAC_SHA1_80 packet: KDF, keystream and tag together.

#[test]
fn libsrtp_driver_cm80_packet() {
    let plain = unhex("800f1234decafbadcafebabe abababababababababababababababab");
    let wire =
        unhex("800f1234decafbadcafebabe 4e55dc4ce79978d88ca4d215949d2402 b78d6acc99ea179b8dbb");
    let new = || {
        SrtpContext::new(
            SrtpProfile::Aes128CmHmacSha1_80,
            &unhex(B3_MASTER_KEY),
            &unhex(B3_MASTER_SALT),
        )
        .unwrap()
    };
    assert_eq!(protect_rtp(&mut new(), &plain).unwrap(), wire);
    assert_eq!(unprotect_rtp(&mut new(), &wire).unwrap(), plain);
}

// RFC 7714 §16 (SRTP) and §17 (SRTCP), AEAD_AES_128_GCM with the session key and salt given.

const RFC7714_KEY: &str = "000102030405060708090a0b0c0d0e0f";
const RFC7714_SALT: &str = "517569642070726f2071756f";
const RFC7714_RTP: &str = "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973
                           20646976 69736120 696e2070 61727465 73207472 6573";
const RFC7714_SRTP: &str = "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca
                            be633bd5 0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1
                            6a9152cf 765ee439 0cce";
const RFC7714_RTCP: &str = "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930
                            4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef";
const RFC7714_SRTCP: &str = "81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7
                             6c06f32d c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458
                             96cf4d2f c5abf872 45d9eade 800005d4";
/// §17.1 "authenticated only" form: E flag clear, the body in clear, then tag and index.
const RFC7714_SRTCP_AUTH_ONLY: &str = "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a
                                       0000e930 4c756e61 deadbeef deadbeef deadbeef deadbeef
                                       deadbeef 841dd968 3dd78ec9 2ae58790 125f62b3 000005d4";

fn rfc7714_context() -> SrtpContext {
    let key: [u8; 16] = unhex(RFC7714_KEY).try_into().unwrap();
    let salt: [u8; 12] = unhex(RFC7714_SALT).try_into().unwrap();
    SrtpContext {
        profile: SrtpProfile::AeadAes128Gcm,
        transform: Transform::Gcm(Box::new(GcmTransform::from_session_keys(&key, salt))),
        streams: Streams::new(),
    }
}

#[test]
fn rfc7714_16_srtp_encrypt_and_decrypt() {
    let plain = unhex(RFC7714_RTP);
    let wire = unhex(RFC7714_SRTP);
    // First packet of the SSRC: ROC 0, sequence 0xf17b.
    assert_eq!(protect_rtp(&mut rfc7714_context(), &plain).unwrap(), wire);
    assert_eq!(unprotect_rtp(&mut rfc7714_context(), &wire).unwrap(), plain);
    for i in [0, 5, 12, 20, wire.len() - 1] {
        let mut bad = wire.clone();
        bad[i] ^= 0x01;
        assert_eq!(
            unprotect_rtp(&mut rfc7714_context(), &bad),
            Err(SrtpError::AuthFailed),
            "flipped byte {i}"
        );
    }
}

#[test]
fn rfc7714_17_srtcp_encrypt_and_decrypt() {
    let plain = unhex(RFC7714_RTCP);
    let wire = unhex(RFC7714_SRTCP);
    // The vector uses SRTCP index 0x5d4; our counter starts at 1, so it is packet 0x5d4.
    let mut tx = rfc7714_context();
    let mut last = Vec::new();
    for _ in 0..0x5d4 {
        last = protect_rtcp(&mut tx, &plain).unwrap();
    }
    assert_eq!(last, wire);
    let mut rx = rfc7714_context();
    assert_eq!(unprotect_rtcp(&mut rx, &wire).unwrap(), plain);
    assert_eq!(unprotect_rtcp(&mut rx, &wire), Err(SrtpError::Replay));
    let mut bad = wire.clone();
    bad[10] ^= 0x80;
    assert_eq!(
        unprotect_rtcp(&mut rfc7714_context(), &bad),
        Err(SrtpError::AuthFailed)
    );
    // The index word is authenticated too.
    let mut bad = wire.clone();
    *bad.last_mut().unwrap() ^= 0x01;
    assert_eq!(
        unprotect_rtcp(&mut rfc7714_context(), &bad),
        Err(SrtpError::AuthFailed)
    );
}

#[test]
fn rfc7714_17_srtcp_authenticated_only() {
    let plain = unhex(RFC7714_RTCP);
    let wire = unhex(RFC7714_SRTCP_AUTH_ONLY);
    assert_eq!(
        unprotect_rtcp(&mut rfc7714_context(), &wire).unwrap(),
        plain
    );
    let mut bad = wire.clone();
    bad[20] ^= 0x01;
    assert_eq!(
        unprotect_rtcp(&mut rfc7714_context(), &bad),
        Err(SrtpError::AuthFailed)
    );
}

// Interop with webrtc-srtp: byte-exact, and each side decrypts the other.

/// Sequence numbers crossing a rollover (ROC 0 to 1), for one SSRC.
fn rollover_seqs() -> impl Iterator<Item = u16> {
    (65526..=65535).chain(0..10)
}

/// Each side decrypts what the other encrypted, over a rollover, with CSRCs and extensions.
#[test]
fn rtp_matches_webrtc_srtp_across_rollover() {
    for profile in PROFILES {
        let mut ours_tx = context(profile, 1);
        let mut theirs_rx = their_context(profile, 1);
        let mut theirs_tx = their_context(profile, 2);
        let mut ours_rx = context(profile, 2);
        for (n, seq) in rollover_seqs().enumerate() {
            let csrcs = (n % 3) as u8;
            let extension = n % 2 == 0;
            let payload_len = [0, 1, 160, 1188 - 4 * usize::from(csrcs)][n % 4];
            for ssrc in [0x1234_5678, 0xdead_beef] {
                let plain = rtp_packet(seq, ssrc, csrcs, extension, payload_len);
                let ours = protect_rtp(&mut ours_tx, &plain).unwrap();
                let theirs = theirs_tx.encrypt_rtp(&plain).unwrap();
                assert_eq!(ours.len(), plain.len() + profile.rtp_overhead());
                assert_eq!(theirs_rx.decrypt_rtp(&ours).unwrap()[..], plain[..]);
                assert_eq!(unprotect_rtp(&mut ours_rx, &theirs).unwrap(), plain);
            }
        }
    }
}

#[test]
fn rtp_is_byte_exact_with_webrtc_srtp_over_a_stream() {
    for profile in PROFILES {
        let mut ours = context(profile, 7);
        let mut theirs = their_context(profile, 7);
        for (n, seq) in rollover_seqs().enumerate() {
            let plain = rtp_packet(seq, 0x0102_0304, (n % 4) as u8, n % 3 == 0, 100 + n);
            let a = protect_rtp(&mut ours, &plain).unwrap();
            let b = theirs.encrypt_rtp(&plain).unwrap();
            assert_eq!(a, b[..], "{profile:?} seq {seq}");
        }
    }
}

#[test]
fn rtcp_matches_webrtc_srtp() {
    for profile in PROFILES {
        let mut ours_tx = context(profile, 3);
        let mut theirs_tx = their_context(profile, 3);
        let mut theirs_rx = their_context(profile, 3);
        let mut ours_rx = context(profile, 3);
        for n in 0..20u8 {
            let ssrc = if n % 2 == 0 { 0x1111_2222 } else { 0x3333_4444 };
            let plain = rtcp_packet(ssrc, n);
            let ours = protect_rtcp(&mut ours_tx, &plain).unwrap();
            let theirs = theirs_tx.encrypt_rtcp(&plain).unwrap();
            assert_eq!(ours, theirs[..], "{profile:?} packet {n}");
            assert_eq!(ours.len(), plain.len() + profile.rtcp_overhead());
            assert_eq!(theirs_rx.decrypt_rtcp(&ours).unwrap()[..], plain[..]);
            assert_eq!(unprotect_rtcp(&mut ours_rx, &theirs).unwrap(), plain);
        }
    }
}

// Replays, tampering, truncation and malformed input.

#[test]
fn rtp_replays_are_rejected() {
    for profile in PROFILES {
        let mut tx = context(profile, 9);
        let mut rx = context(profile, 9);
        let wires: Vec<Vec<u8>> = (0..100u16)
            .map(|seq| protect_rtp(&mut tx, &rtp_packet(seq, 42, 0, false, 50)).unwrap())
            .collect();
        // Receive 0..=80 except 70.
        for (seq, wire) in wires.iter().enumerate().take(81) {
            if seq != 70 {
                unprotect_rtp(&mut rx, wire).unwrap();
            }
        }
        assert_eq!(unprotect_rtp(&mut rx, &wires[80]), Err(SrtpError::Replay));
        assert_eq!(unprotect_rtp(&mut rx, &wires[75]), Err(SrtpError::Replay));
        // Late but inside the window: accepted once.
        assert!(unprotect_rtp(&mut rx, &wires[70]).is_ok());
        assert_eq!(unprotect_rtp(&mut rx, &wires[70]), Err(SrtpError::Replay));
        // 80 - 16 = 64 behind: outside the window.
        assert_eq!(unprotect_rtp(&mut rx, &wires[16]), Err(SrtpError::Replay));
        // Packets ahead still flow.
        assert!(unprotect_rtp(&mut rx, &wires[99]).is_ok());
    }
}

#[test]
fn rtp_replay_across_rollover() {
    for profile in PROFILES {
        let mut tx = context(profile, 10);
        let mut rx = context(profile, 10);
        let wires: Vec<Vec<u8>> = rollover_seqs()
            .map(|seq| protect_rtp(&mut tx, &rtp_packet(seq, 42, 0, false, 50)).unwrap())
            .collect();
        for wire in &wires {
            unprotect_rtp(&mut rx, wire).unwrap();
        }
        // Sequence 65535 of ROC 0 again, after ROC 1 began.
        assert_eq!(unprotect_rtp(&mut rx, &wires[9]), Err(SrtpError::Replay));
        assert_eq!(unprotect_rtp(&mut rx, &wires[10]), Err(SrtpError::Replay));
    }
}

#[test]
fn rtcp_replays_are_rejected() {
    for profile in PROFILES {
        let mut tx = context(profile, 11);
        let mut rx = context(profile, 11);
        let wires: Vec<Vec<u8>> = (0..1100u32)
            .map(|n| protect_rtcp(&mut tx, &rtcp_packet(5, (n % 251) as u8)).unwrap())
            .collect();
        unprotect_rtcp(&mut rx, &wires[1099]).unwrap();
        assert_eq!(
            unprotect_rtcp(&mut rx, &wires[1099]),
            Err(SrtpError::Replay)
        );
        // Index 76 is 1024 behind index 1100: too old; index 77 is still in the window.
        assert_eq!(unprotect_rtcp(&mut rx, &wires[75]), Err(SrtpError::Replay));
        assert!(unprotect_rtcp(&mut rx, &wires[76]).is_ok());
        assert!(unprotect_rtcp(&mut rx, &wires[400]).is_ok());
        assert_eq!(unprotect_rtcp(&mut rx, &wires[400]), Err(SrtpError::Replay));
    }
}

#[test]
fn tampering_is_detected_and_does_not_consume_the_index() {
    for profile in PROFILES {
        let mut tx = context(profile, 12);
        let plain = rtp_packet(500, 77, 1, true, 64);
        let wire = protect_rtp(&mut tx, &plain).unwrap();
        let mut rx = context(profile, 12);
        for i in 0..wire.len() {
            let mut bad = wire.clone();
            bad[i] ^= 0x04;
            let got = unprotect_rtp(&mut rx, &bad);
            assert!(got.is_err(), "{profile:?}: byte {i} flipped and accepted");
        }
        // A wrong key fails too.
        assert_eq!(
            unprotect_rtp(&mut context(profile, 13), &wire),
            Err(SrtpError::AuthFailed)
        );
        assert_eq!(unprotect_rtp(&mut rx, &wire).unwrap(), plain);

        let plain = rtcp_packet(77, 1);
        let wire = protect_rtcp(&mut tx, &plain).unwrap();
        for i in 0..wire.len() {
            let mut bad = wire.clone();
            bad[i] ^= 0x04;
            assert!(
                unprotect_rtcp(&mut rx, &bad).is_err(),
                "{profile:?}: rtcp byte {i}"
            );
        }
        assert_eq!(unprotect_rtcp(&mut rx, &wire).unwrap(), plain);
    }
}

#[test]
fn truncated_packets_are_errors() {
    for profile in PROFILES {
        let mut tx = context(profile, 14);
        let wire = protect_rtp(&mut tx, &rtp_packet(1, 5, 2, true, 30)).unwrap();
        let rtcp = protect_rtcp(&mut tx, &rtcp_packet(5, 0)).unwrap();
        let mut rx = context(profile, 14);
        for n in 0..wire.len() {
            assert!(
                unprotect_rtp(&mut rx, &wire[..n]).is_err(),
                "rtp prefix {n}"
            );
        }
        for n in 0..rtcp.len() {
            assert!(
                unprotect_rtcp(&mut rx, &rtcp[..n]).is_err(),
                "rtcp prefix {n}"
            );
        }
        assert_eq!(unprotect_rtp(&mut rx, &wire[..5]), Err(SrtpError::TooShort));
        assert_eq!(
            unprotect_rtcp(&mut rx, &rtcp[..7]),
            Err(SrtpError::TooShort)
        );
        assert_eq!(
            unprotect_rtcp(&mut rx, &rtcp[..8 + profile.rtcp_overhead() - 1]),
            Err(SrtpError::TooShort)
        );
        // Nothing was consumed by the failures.
        assert!(unprotect_rtp(&mut rx, &wire).is_ok());
        assert!(unprotect_rtcp(&mut rx, &rtcp).is_ok());
    }
}

#[test]
fn malformed_headers_are_errors() {
    for profile in PROFILES {
        let mut ctx = context(profile, 15);
        // Version 1.
        let mut p = rtp_packet(1, 5, 0, false, 40);
        p[0] = 0x40;
        assert_eq!(unprotect_rtp(&mut ctx, &p), Err(SrtpError::BadVersion));
        assert_eq!(protect_rtp(&mut ctx, &p), Err(SrtpError::BadVersion));
        // Fifteen CSRCs announced, none present.
        let mut p = rtp_packet(1, 5, 0, false, 20);
        p[0] |= 0x0f;
        assert_eq!(unprotect_rtp(&mut ctx, &p), Err(SrtpError::BadHeader));
        assert_eq!(protect_rtp(&mut ctx, &p), Err(SrtpError::BadHeader));
        // Extension length far past the end.
        let mut p = rtp_packet(1, 5, 0, true, 20);
        p[14..16].copy_from_slice(&0xffff_u16.to_be_bytes());
        assert_eq!(unprotect_rtp(&mut ctx, &p), Err(SrtpError::BadHeader));
        // Extension bit with the extension header cut off.
        let mut p = rtp_packet(1, 5, 0, false, 0);
        p[0] |= 0x10;
        assert_eq!(unprotect_rtp(&mut ctx, &p), Err(SrtpError::BadHeader));
        let mut p = rtcp_packet(1, 0);
        p[0] = 0x01;
        assert_eq!(protect_rtcp(&mut ctx, &p), Err(SrtpError::BadVersion));
        p.resize(p.len() + profile.rtcp_overhead(), 0);
        assert_eq!(unprotect_rtcp(&mut ctx, &p), Err(SrtpError::BadVersion));
    }
}

#[test]
fn arbitrary_input_never_panics() {
    // A small xorshift generator keeps the test deterministic without a dependency.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for profile in PROFILES {
        let mut ctx = context(profile, 16);
        let mut buf = [0u8; 256];
        for _ in 0..20_000 {
            let len = (next() % 256) as usize;
            for b in &mut buf[..len] {
                *b = next() as u8;
            }
            if next() % 2 == 0 && len > 0 {
                buf[0] = 0x80 | (buf[0] & 0x3f);
            }
            let _ = ctx.unprotect_rtp(&mut buf[..len]);
            let _ = ctx.unprotect_rtcp(&mut buf[..len]);
            let _ = ctx.protect_rtp(&mut buf, len);
            let _ = ctx.protect_rtcp(&mut buf, len);
        }
    }
}

#[test]
fn protect_needs_room_for_the_trailer() {
    for profile in PROFILES {
        let mut ctx = context(profile, 17);
        let plain = rtp_packet(1, 5, 0, false, 20);
        let mut buf = plain.clone();
        buf.resize(plain.len() + profile.rtp_overhead() - 1, 0);
        assert_eq!(
            ctx.protect_rtp(&mut buf, plain.len()),
            Err(SrtpError::BufferTooSmall {
                needed: plain.len() + profile.rtp_overhead(),
                capacity: buf.len()
            })
        );
        // The buffer was left alone.
        assert_eq!(buf[..plain.len()], plain[..]);
        assert!(matches!(
            ctx.protect_rtp(&mut buf, usize::MAX),
            Err(SrtpError::BufferTooSmall { .. })
        ));
        let plain = rtcp_packet(5, 0);
        let mut buf = plain.clone();
        buf.resize(plain.len() + profile.rtcp_overhead() - 1, 0);
        assert!(matches!(
            ctx.protect_rtcp(&mut buf, plain.len()),
            Err(SrtpError::BufferTooSmall { .. })
        ));
    }
}

#[test]
fn ssrcs_keep_separate_rollover_counters() {
    for profile in PROFILES {
        let mut tx = context(profile, 18);
        let mut rx = context(profile, 18);
        let mut theirs = their_context(profile, 18);
        // SSRC A wraps, SSRC B stays in ROC 0 around sequence 30000.
        for (n, seq) in rollover_seqs().enumerate() {
            for (ssrc, seq) in [(0xaaaa_aaaa, seq), (0xbbbb_bbbb, 30000 + n as u16)] {
                let plain = rtp_packet(seq, ssrc, 0, false, 40);
                let wire = protect_rtp(&mut tx, &plain).unwrap();
                assert_eq!(theirs.decrypt_rtp(&wire).unwrap()[..], plain[..]);
                assert_eq!(unprotect_rtp(&mut rx, &wire).unwrap(), plain);
            }
        }
        rx.remove_ssrc(0xaaaa_aaaa);
        // After removal, ROC restarts at zero: a ROC 1 packet no longer authenticates.
        let wire = protect_rtp(&mut tx, &rtp_packet(10, 0xaaaa_aaaa, 0, false, 40)).unwrap();
        assert_eq!(unprotect_rtp(&mut rx, &wire), Err(SrtpError::AuthFailed));
    }
}

#[test]
fn a_context_holds_at_most_max_ssrcs() {
    let profile = SrtpProfile::AeadAes128Gcm;
    let mut tx = context(profile, 19);
    let mut rx = context(profile, 19);
    for ssrc in 0..MAX_SSRCS as u32 {
        let wire = protect_rtp(&mut tx, &rtp_packet(1, ssrc, 0, false, 4)).unwrap();
        unprotect_rtp(&mut rx, &wire).unwrap();
    }
    let plain = rtp_packet(1, u32::MAX, 0, false, 4);
    assert_eq!(protect_rtp(&mut tx, &plain), Err(SrtpError::TooManySsrcs));
    tx.remove_ssrc(0);
    let wire = protect_rtp(&mut tx, &plain).unwrap();
    assert_eq!(unprotect_rtp(&mut rx, &wire), Err(SrtpError::TooManySsrcs));
}

// Keys and profiles.

#[test]
fn exporter_material_is_split_per_rfc5764() {
    for profile in PROFILES {
        let (k, s) = (profile.key_len(), profile.salt_len());
        let material: Vec<u8> = (0..2 * (k + s) as u8).collect();
        let client = SrtpKeys::from_exporter(profile, &material, true).unwrap();
        let server = SrtpKeys::from_exporter(profile, &material, false).unwrap();
        assert_eq!(client.local_key, material[..k]);
        assert_eq!(client.remote_key, material[k..2 * k]);
        assert_eq!(client.local_salt, material[2 * k..2 * k + s]);
        assert_eq!(client.remote_salt, material[2 * k + s..]);
        assert_eq!(server.local_key, client.remote_key);
        assert_eq!(server.local_salt, client.remote_salt);
        assert_eq!(server.remote_key, client.local_key);
        assert_eq!(server.remote_salt, client.local_salt);
        assert!(!format!("{client:?}").contains("16, 17"));

        // What one side protects, the other unprotects.
        let mut a = SrtpContext::new(profile, &client.local_key, &client.local_salt).unwrap();
        let mut b = SrtpContext::new(profile, &server.remote_key, &server.remote_salt).unwrap();
        let plain = rtp_packet(3, 9, 0, false, 10);
        let wire = protect_rtp(&mut a, &plain).unwrap();
        assert_eq!(unprotect_rtp(&mut b, &wire).unwrap(), plain);

        assert_eq!(
            SrtpKeys::from_exporter(profile, &material[1..], true),
            Err(SrtpError::BadMaterialLength {
                expected: 2 * (k + s),
                got: 2 * (k + s) - 1
            })
        );
    }
}

#[test]
fn profiles_and_key_lengths() {
    use SrtpProfile::*;
    assert_eq!(SrtpProfile::from_dtls_id(0x0001), Some(Aes128CmHmacSha1_80));
    assert_eq!(SrtpProfile::from_dtls_id(0x0007), Some(AeadAes128Gcm));
    for id in [0x0000, 0x0002, 0x0005, 0x0008, 0xffff] {
        assert_eq!(SrtpProfile::from_dtls_id(id), None);
    }
    for p in PROFILES {
        assert_eq!(SrtpProfile::from_dtls_id(p.dtls_id()), Some(p));
    }
    assert_eq!(
        (
            Aes128CmHmacSha1_80.key_len(),
            Aes128CmHmacSha1_80.salt_len()
        ),
        (16, 14)
    );
    assert_eq!(
        (AeadAes128Gcm.key_len(), AeadAes128Gcm.salt_len()),
        (16, 12)
    );
    assert_eq!(Aes128CmHmacSha1_80.rtp_overhead(), 10);
    assert_eq!(Aes128CmHmacSha1_80.rtcp_overhead(), 14);
    assert_eq!(AeadAes128Gcm.rtp_overhead(), 16);
    assert_eq!(AeadAes128Gcm.rtcp_overhead(), 20);

    assert_eq!(
        SrtpContext::new(AeadAes128Gcm, &[0; 15], &[0; 12]).err(),
        Some(SrtpError::BadKeyLength {
            expected: 16,
            got: 15
        })
    );
    assert_eq!(
        SrtpContext::new(AeadAes128Gcm, &[0; 16], &[0; 14]).err(),
        Some(SrtpError::BadSaltLength {
            expected: 12,
            got: 14
        })
    );
    assert_eq!(
        SrtpContext::new(Aes128CmHmacSha1_80, &[0; 16], &[0; 12]).err(),
        Some(SrtpError::BadSaltLength {
            expected: 14,
            got: 12
        })
    );
}
