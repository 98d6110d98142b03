//! SRTP cost per forwarded packet: one protect and one unprotect of a 1200-byte RTP packet,
//! for AEAD_AES_128_GCM and AES_CM_128_HMAC_SHA1_80, ours (in place) beside `webrtc-srtp`
//! (allocating a new buffer per call) in the same run. Throughput is in pairs per second.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lkr_dtls_glue::srtp::{SrtpContext, SrtpProfile};
use webrtc_srtp::context::Context as TheirContext;
use webrtc_srtp::protection_profile::ProtectionProfile as TheirProfile;

/// RTP packet length, header included.
const PACKET_LEN: usize = 1200;

fn keys(profile: SrtpProfile) -> (Vec<u8>, Vec<u8>) {
    let key = (0..profile.key_len() as u8).map(|i| i ^ 0x3c).collect();
    let salt = (0..profile.salt_len() as u8)
        .map(|i| i.wrapping_mul(17))
        .collect();
    (key, salt)
}

fn rtp_packet() -> Vec<u8> {
    let mut p = vec![0x80, 96, 0, 0, 0, 0, 0x12, 0x34, 0xca, 0xfe, 0xba, 0xbe];
    p.extend((0..PACKET_LEN - p.len()).map(|i| i as u8));
    p
}

fn pairs(c: &mut Criterion) {
    let mut group = c.benchmark_group("srtp_pair_1200");
    group.throughput(Throughput::Elements(1));
    for (name, profile, theirs) in [
        (
            "gcm",
            SrtpProfile::AeadAes128Gcm,
            TheirProfile::AeadAes128Gcm,
        ),
        (
            "cm80",
            SrtpProfile::Aes128CmHmacSha1_80,
            TheirProfile::Aes128CmHmacSha1_80,
        ),
    ] {
        let (key, salt) = keys(profile);

        let mut tx = SrtpContext::new(profile, &key, &salt).unwrap();
        let mut rx = SrtpContext::new(profile, &key, &salt).unwrap();
        let mut buf = rtp_packet();
        buf.resize(PACKET_LEN + profile.rtp_overhead(), 0);
        let mut seq = 0u16;
        group.bench_function(format!("{name}/ours"), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                buf[2..4].copy_from_slice(&seq.to_be_bytes());
                let n = tx.protect_rtp(&mut buf, PACKET_LEN).unwrap();
                black_box(rx.unprotect_rtp(&mut buf[..n]).unwrap())
            })
        });

        let mut tx = TheirContext::new(&key, &salt, theirs, None, None).unwrap();
        let mut rx = TheirContext::new(&key, &salt, theirs, None, None).unwrap();
        let mut plain = rtp_packet();
        let mut seq = 0u16;
        group.bench_function(format!("{name}/webrtc-srtp"), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                plain[2..4].copy_from_slice(&seq.to_be_bytes());
                let wire = tx.encrypt_rtp(&plain).unwrap();
                black_box(rx.decrypt_rtp(&wire).unwrap().len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, pairs);
criterion_main!(benches);
