//! Protecting and unprotecting SRTP/SRTCP allocates nothing once an SSRC is known.

use lkr_driver::alloc_count::{Counting, allocations};
use lkr_dtls_glue::srtp::{SrtpContext, SrtpProfile};

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steady_state_protect_and_unprotect_do_not_allocate() {
    // The counter sees allocations at all.
    let probe = allocations();
    drop(std::hint::black_box(vec![0u8; 64]));
    assert!(allocations() > probe);

    for profile in [SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80] {
        let key = [0x11u8; 16];
        let salt = vec![0x22u8; profile.salt_len()];
        let mut tx = SrtpContext::new(profile, &key, &salt).unwrap();
        let mut rx = SrtpContext::new(profile, &key, &salt).unwrap();
        let ssrcs = [0x0102_0304u32, 0x0506_0708, 0x090a_0b0c];
        let mut rtp = [0u8; 1500];
        rtp[0] = 0x80;
        rtp[1] = 96;
        let mut rtcp = [0u8; 200];
        rtcp[..4].copy_from_slice(&[0x81, 201, 0x00, 0x07]);

        // Sequence numbers start near the top so that every SSRC wraps from 65535 to 0.
        let mut sent = 63_000u32;
        let mut run = |count: u32| {
            for n in sent..sent + count {
                let ssrc = ssrcs[n as usize % ssrcs.len()];
                rtp[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                rtp[8..12].copy_from_slice(&ssrc.to_be_bytes());
                let len = tx.protect_rtp(&mut rtp, 1200).unwrap();
                assert_eq!(rx.unprotect_rtp(&mut rtp[..len]).unwrap(), 1200);

                rtcp[4..8].copy_from_slice(&ssrc.to_be_bytes());
                let len = tx.protect_rtcp(&mut rtcp, 32).unwrap();
                assert_eq!(rx.unprotect_rtcp(&mut rtcp[..len]).unwrap(), 32);
            }
            sent += count;
        };
        // The first packet of each SSRC may grow the per-SSRC table.
        run(3);
        let before = allocations();
        run(6_000);
        assert_eq!(allocations() - before, 0, "{profile:?}");
    }
}
