//! Every parser fed random, truncated and bit-flipped bytes must return, never panic.

use crate::*;

/// xorshift64*: deterministic, seedable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next() as u8;
        }
    }
}

/// Exercises every reader on `buf`, consuming all lazily decoded fields.
fn exercise(buf: &[u8]) -> usize {
    let mut sink = 0usize;
    if let Ok(v) = RtpView::parse(buf) {
        sink += v.payload().len() + v.padding_len() + v.header_len() + v.csrcs().count();
        sink += usize::from(v.sequence()) + v.ssrc() as usize + v.timestamp() as usize;
        sink += usize::from(v.marker()) + usize::from(v.payload_type());
        assert!(v.header_len() + v.payload().len() + v.padding_len() == buf.len());
        for (id, d) in v.extensions() {
            sink += usize::from(id) + d.len();
            sink += parse_audio_level(d).map_or(0, |(_, l)| usize::from(l));
            sink += parse_transport_cc(d).map_or(0, usize::from);
            sink += parse_abs_send_time(d).map_or(0, |v| v as usize);
            sink += parse_str_ext(d).map_or(0, str::len);
        }
        for id in 0..=255u8 {
            sink += v.extension(id).map_or(0, <[u8]>::len);
        }
        let p = v.payload();
        sink += rtx_original_sequence(p).map_or(0, usize::from);
        sink += usize::from(vp8::is_keyframe(p))
            + usize::from(vp9::is_keyframe(p))
            + usize::from(h264::is_keyframe(p))
            + usize::from(av1::is_keyframe(p));
        if let Ok(d) = vp8::parse(p) {
            assert!(d.header_len <= p.len());
        }
        if let Some(l) = vp9::layer(p) {
            assert!(l.descriptor_len <= p.len() && l.sid < 8 && l.tid < 8);
            sink += l.descriptor_len + usize::from(l.spatial_layers.unwrap_or(0));
        }
    }
    for p in [buf, buf.get(12..).unwrap_or_default()] {
        sink += usize::from(vp8::is_keyframe(p))
            + usize::from(vp9::is_keyframe(p))
            + usize::from(h264::is_keyframe(p))
            + usize::from(av1::is_keyframe(p));
        if let Ok(d) = vp8::parse(p) {
            sink += d.header_len;
        }
        sink += sdes_items(p).map(|i| i.value.len()).sum::<usize>();
        if let Ok(t) = TwccView::parse(p) {
            sink += t.packets().count();
        }
    }
    sink += usize::from(is_rtcp(buf));
    for pkt in rtcp_packets(buf) {
        let Ok(pkt) = pkt else {
            sink += 1;
            continue;
        };
        sink += match pkt {
            RtcpPacket::SenderReport { reports, .. }
            | RtcpPacket::ReceiverReport { reports, .. } => {
                reports.iter().map(|r| r.jitter as usize).sum::<usize>()
            }
            RtcpPacket::Sdes(body) => sdes_items(body).count(),
            RtcpPacket::Bye { ssrcs } => ssrcs.iter().count(),
            RtcpPacket::Nack { pairs, .. } => {
                let n = pairs.clone().count();
                assert!(n <= pairs.pairs().count() * 17);
                n
            }
            RtcpPacket::Pli { media_ssrc, .. } => media_ssrc as usize,
            RtcpPacket::Fir { entries, .. } => entries.iter().count(),
            RtcpPacket::Remb {
                ssrcs, bitrate_bps, ..
            } => ssrcs.len() + bitrate_bps as usize,
            RtcpPacket::TransportCc(t) => {
                let n = t.packets().count();
                assert_eq!(n, usize::from(t.status_count()));
                n
            }
            RtcpPacket::Other { body, .. } => body.len(),
        };
    }
    sink
}

/// Exercises the in-place writers on a copy of `buf`.
fn exercise_mut(buf: &[u8], rng: &mut Rng) {
    let mut m = buf.to_vec();
    let id = rng.next() as u8;
    let new_id = rng.next() as u8;
    let before = RtpView::parse(buf).is_ok();
    rewrite_extension(&mut m, id, new_id);
    if let Some(d) = extension_mut(&mut m, id) {
        d.fill(0xAB);
    }
    set_sequence(&mut m, 1);
    set_timestamp(&mut m, 2);
    set_ssrc(&mut m, 3);
    set_payload_type(&mut m, 4);
    set_marker(&mut m, true);
    // Rewriting never turns an accepted packet into a rejected one.
    assert_eq!(RtpView::parse(&m).is_ok(), before);
    if let Ok(d) = vp8::parse(&m) {
        vp8::write_picture_id(&mut m, &d, 0xFFFF);
        vp8::write_tl0picidx(&mut m, &d, 1);
        vp8::write_keyidx(&mut m, &d, 2);
        assert_eq!(vp8::parse(&m).map(|e| e.header_len), Ok(d.header_len));
    }
    // Descriptors that do not match the buffer must not panic either.
    let fake = vp8::Vp8Descriptor {
        picture_id: Some(1),
        picture_id_15bit: true,
        tl0picidx: Some(1),
        keyidx: Some(1),
        ..Default::default()
    };
    let mut short = [0u8; 3];
    vp8::write_picture_id(&mut short, &fake, 7);
    vp8::write_tl0picidx(&mut short, &fake, 7);
    vp8::write_keyidx(&mut short, &fake, 7);
}

fn valid_samples() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut b = [0u8; 1500];
    let exts: [(u8, &[u8]); 3] = [(1, &[0x90]), (3, &[0, 7]), (4, b"0")];
    let n = RtpWriter::write_header(&mut b, true, 96, 1, 2, 3, &exts).unwrap();
    b[n..n + 6].copy_from_slice(&[0xB0, 0xF0, 0x92, 0x34, 0x56, 0xA7]);
    out.push(b[..n + 6].to_vec());
    let exts: [(u8, &[u8]); 2] = [(20, &[1, 2, 3]), (2, &[])];
    let n = RtpWriter::write_header(&mut b, false, 102, 1, 2, 3, &exts).unwrap();
    b[n..n + 4].copy_from_slice(&[0x78, 0, 1, 0x65]);
    out.push(b[..n + 4].to_vec());

    let mut n = write_sender_report(&mut b, 1, 2, 3, 4, 5, &[ReportBlock::default(); 2]).unwrap();
    n += write_sdes_cname(&mut b[n..], 1, "abc").unwrap();
    n += write_nack(&mut b[n..], 1, 2, &[1, 2, 5, 40, 41]).unwrap();
    n += write_pli(&mut b[n..], 1, 2).unwrap();
    n += write_fir(&mut b[n..], 1, 2, 3).unwrap();
    n += write_remb(&mut b[n..], 1, 1_000_000, &[5, 6]).unwrap();
    n += write_bye(&mut b[n..], &[1]).unwrap();
    out.push(b[..n].to_vec());

    let mut tw = TwccBuilder::new();
    for i in 0..60u16 {
        if i % 5 != 2 {
            tw.push(
                i,
                i64::from(i) * 3_000 + if i % 7 == 0 { 90_000 } else { 0 },
            );
        }
    }
    let n = tw.write(&mut b, 1, 2).unwrap().unwrap();
    out.push(b[..n].to_vec());
    out
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut buf = [0u8; 256];
    for _ in 0..20_000 {
        let len = rng.below(buf.len() + 1);
        rng.fill(&mut buf[..len]);
        // Bias half of the inputs towards version 2 so parsers get past the first check.
        if len > 0 && rng.next() & 1 == 0 {
            buf[0] = (buf[0] & 0x3F) | 0x80;
        }
        exercise(&buf[..len]);
        exercise_mut(&buf[..len], &mut rng);
    }
}

#[test]
fn truncated_and_mutated_valid_packets_never_panic() {
    let mut rng = Rng(42);
    for sample in valid_samples() {
        exercise(&sample);
        for len in 0..=sample.len() {
            exercise(&sample[..len]);
            exercise_mut(&sample[..len], &mut rng);
        }
        let mut m = sample.clone();
        for _ in 0..5_000 {
            m.copy_from_slice(&sample);
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(m.len());
                m[at] ^= 1 << rng.below(8);
            }
            let len = if rng.next() & 3 == 0 {
                rng.below(m.len() + 1)
            } else {
                m.len()
            };
            exercise(&m[..len]);
            exercise_mut(&m[..len], &mut rng);
        }
    }
}

#[test]
fn samples_are_valid() {
    let s = valid_samples();
    assert!(RtpView::parse(&s[0]).is_ok());
    assert!(RtpView::parse(&s[1]).is_ok());
    assert_eq!(rtcp_packets(&s[2]).filter(Result::is_ok).count(), 7);
    assert!(matches!(
        rtcp_packets(&s[3]).next(),
        Some(Ok(RtcpPacket::TransportCc(_)))
    ));
}
