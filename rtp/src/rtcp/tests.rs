use super::*;

fn only(buf: &[u8]) -> RtcpPacket<'_> {
    let mut it = rtcp_packets(buf);
    let p = it.next().expect("one packet").expect("parses");
    assert!(it.next().is_none());
    p
}

fn block(n: u32) -> ReportBlock {
    ReportBlock {
        ssrc: 0x1000 + n,
        fraction_lost: 25 + n as u8,
        cumulative_lost: -3 + n as i32,
        highest_seq: 0x0001_FFFF + n,
        jitter: 77 + n,
        lsr: 0xABCD_0000 + n,
        dlsr: 65536 + n,
    }
}

#[test]
fn parses_handmade_receiver_report() {
    // RR from 0x01020304 with one block about 0x0A0B0C0D: 10/256 lost, cumulative -2
    // (0xFFFFFE), highest 0x00010005, jitter 0x20, LSR 0x12345678, DLSR 0x00010000.
    let p = [
        0x81, 201, 0x00, 0x07, 0x01, 0x02, 0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D, 0x0A, 0xFF, 0xFF,
        0xFE, 0x00, 0x01, 0x00, 0x05, 0x00, 0x00, 0x00, 0x20, 0x12, 0x34, 0x56, 0x78, 0x00, 0x01,
        0x00, 0x00,
    ];
    let RtcpPacket::ReceiverReport { ssrc, reports } = only(&p) else {
        panic!("not an RR")
    };
    assert_eq!(ssrc, 0x0102_0304);
    assert_eq!(reports.len(), 1);
    let b = reports.iter().next().unwrap();
    assert_eq!(
        b,
        ReportBlock {
            ssrc: 0x0A0B_0C0D,
            fraction_lost: 10,
            cumulative_lost: -2,
            highest_seq: 0x0001_0005,
            jitter: 0x20,
            lsr: 0x1234_5678,
            dlsr: 0x0001_0000,
        }
    );
}

#[test]
fn sender_report_round_trip() {
    let mut out = [0u8; 256];
    let blocks = [block(0), block(1)];
    let n = write_sender_report(
        &mut out,
        0xDEAD_BEEF,
        0x0102_0304_0506_0708,
        90_000,
        1234,
        567_890,
        &blocks,
    )
    .unwrap();
    assert_eq!(n, 28 + 48);
    let RtcpPacket::SenderReport {
        ssrc,
        ntp,
        rtp_ts,
        packet_count,
        octet_count,
        reports,
    } = only(&out[..n])
    else {
        panic!("not an SR")
    };
    assert_eq!(
        (ssrc, ntp, rtp_ts, packet_count, octet_count),
        (0xDEAD_BEEF, 0x0102_0304_0506_0708, 90_000, 1234, 567_890)
    );
    assert_eq!(reports.into_iter().collect::<Vec<_>>(), blocks);
    assert_eq!(
        write_sender_report(&mut out[..75], 1, 2, 3, 4, 5, &blocks),
        Err(RtcpError::BufferTooSmall {
            needed: 76,
            have: 75
        })
    );
    assert_eq!(
        write_sender_report(&mut out, 1, 2, 3, 4, 5, &[block(0); 32]),
        Err(RtcpError::TooManyItems(32))
    );
}

#[test]
fn receiver_report_round_trip_and_clamps_loss() {
    let mut out = [0u8; 64];
    let mut b = block(3);
    b.cumulative_lost = -10_000_000;
    let n = write_receiver_report(&mut out, 9, &[b]).unwrap();
    let RtcpPacket::ReceiverReport { ssrc, reports } = only(&out[..n]) else {
        panic!()
    };
    assert_eq!(ssrc, 9);
    let got = reports.iter().next().unwrap();
    assert_eq!(got.cumulative_lost, -0x80_0000);
    assert_eq!(got.fraction_lost, b.fraction_lost);
    let n = write_receiver_report(&mut out, 9, &[]).unwrap();
    assert_eq!(n, 8);
    let RtcpPacket::ReceiverReport { reports, .. } = only(&out[..n]) else {
        panic!()
    };
    assert!(reports.is_empty());
}

#[test]
fn nack_round_trip_builds_pairs() {
    let mut out = [0u8; 64];
    // 100 with 101, 103, 116 in its BLP; 117 is 17 after 100 so starts a new pair; then a
    // pair across the wrap.
    let lost = [100, 101, 103, 116, 117, 130, 65535, 0, 5];
    let n = write_nack(&mut out, 1, 2, &lost).unwrap();
    assert_eq!(n, 12 + 4 * 3);
    let RtcpPacket::Nack {
        sender_ssrc,
        media_ssrc,
        pairs,
    } = only(&out[..n])
    else {
        panic!()
    };
    assert_eq!((sender_ssrc, media_ssrc), (1, 2));
    assert_eq!(
        pairs.pairs().collect::<Vec<_>>(),
        [
            (100, 0b1000_0000_0000_0101),
            (117, 1 << 12),
            (65535, (1 << 0) | (1 << 5))
        ]
    );
    assert_eq!(pairs.collect::<Vec<_>>(), lost);
    assert_eq!(write_nack(&mut out, 1, 2, &[]), Err(RtcpError::Empty));
    assert!(matches!(
        write_nack(&mut out[..20], 1, 2, &lost),
        Err(RtcpError::BufferTooSmall { needed: 24, .. })
    ));
}

#[test]
fn nack_long_loss_run() {
    let lost: Vec<u16> = (65500..=65535).chain(0..=40).collect();
    let mut out = [0u8; 64];
    let n = write_nack(&mut out, 1, 2, &lost).unwrap();
    // 77 consecutive numbers: 17 per pair -> 5 pairs.
    assert_eq!(n, 12 + 4 * 5);
    let RtcpPacket::Nack { pairs, .. } = only(&out[..n]) else {
        panic!()
    };
    assert_eq!(pairs.collect::<Vec<_>>(), lost);
}

#[test]
fn nack_unsorted_and_duplicates() {
    let lost = [50, 10, 10, 11, 49];
    let mut out = [0u8; 64];
    let n = write_nack(&mut out, 1, 2, &lost).unwrap();
    let RtcpPacket::Nack { pairs, .. } = only(&out[..n]) else {
        panic!()
    };
    let mut got: Vec<u16> = pairs.collect();
    got.sort_unstable();
    assert_eq!(got, [10, 11, 49, 50]);
}

#[test]
fn pli_fir_round_trip() {
    let mut out = [0u8; 32];
    let n = write_pli(&mut out, 7, 8).unwrap();
    assert_eq!(&out[..4], &[0x81, 206, 0, 2]);
    assert!(matches!(
        only(&out[..n]),
        RtcpPacket::Pli {
            sender_ssrc: 7,
            media_ssrc: 8
        }
    ));
    let n = write_fir(&mut out, 7, 8, 42).unwrap();
    assert_eq!(n, 20);
    let RtcpPacket::Fir {
        sender_ssrc,
        entries,
    } = only(&out[..n])
    else {
        panic!()
    };
    assert_eq!(sender_ssrc, 7);
    assert_eq!(entries.iter().collect::<Vec<_>>(), [(8, 42)]);
    assert!(write_pli(&mut out[..11], 1, 2).is_err());
    assert!(write_fir(&mut out[..19], 1, 2, 3).is_err());
}

#[test]
fn remb_round_trip() {
    let mut out = [0u8; 64];
    for bitrate in [0u64, 1, 262_143, 262_144, 1_500_000, 123_456_789, 1 << 40] {
        let n = write_remb(&mut out, 5, bitrate, &[0xA, 0xB]).unwrap();
        assert_eq!(n, 28);
        let RtcpPacket::Remb {
            sender_ssrc,
            bitrate_bps,
            ssrcs,
        } = only(&out[..n])
        else {
            panic!()
        };
        assert_eq!(sender_ssrc, 5);
        assert_eq!(ssrcs.iter().collect::<Vec<_>>(), [0xA, 0xB]);
        assert!(bitrate_bps <= bitrate);
        // Rounded down to 18 significant bits.
        assert!(
            bitrate - bitrate_bps <= bitrate >> 17,
            "{bitrate} {bitrate_bps}"
        );
    }
    // Known encoding: 1_500_000 = 187_500 << 3.
    write_remb(&mut out, 5, 1_500_000, &[]).unwrap();
    assert_eq!(
        &out[12..20],
        &[b'R', b'E', b'M', b'B', 0, (3 << 2) | 0x02, 0xDC, 0x6C]
    );
    // Largest encodable value saturates instead of overflowing.
    let mut p = [0u8; 20];
    write_remb(&mut p, 5, 0, &[]).unwrap();
    p[17] = 0xFF;
    p[18] = 0xFF;
    p[19] = 0xFF;
    assert!(matches!(
        only(&p),
        RtcpPacket::Remb {
            bitrate_bps: u64::MAX,
            ..
        }
    ));
}

#[test]
fn sdes_round_trip() {
    let mut out = [0u8; 64];
    for cname in ["", "a", "abc", "abcd", "user@host-1234"] {
        let n = write_sdes_cname(&mut out, 0x55, cname).unwrap();
        assert_eq!(n % 4, 0);
        let RtcpPacket::Sdes(body) = only(&out[..n]) else {
            panic!()
        };
        let items: Vec<_> = sdes_items(body).collect();
        assert_eq!(
            items,
            [SdesItem {
                ssrc: 0x55,
                kind: SDES_CNAME,
                value: cname.as_bytes()
            }]
        );
    }
    let long = "x".repeat(256);
    assert_eq!(
        write_sdes_cname(&mut [0u8; 512], 1, &long),
        Err(RtcpError::TextTooLong(256))
    );
}

#[test]
fn sdes_two_chunks() {
    // Chunk 1: ssrc 1, CNAME "ab", NAME "c", end (+pad); chunk 2: ssrc 2, CNAME "z", end.
    let body = [
        0, 0, 0, 1, 1, 2, b'a', b'b', 2, 1, b'c', 0, 0, 0, 0, 2, 1, 1, b'z', 0,
    ];
    let items: Vec<_> = sdes_items(&body)
        .map(|i| (i.ssrc, i.kind, i.value))
        .collect();
    assert_eq!(
        items,
        [(1, 1, &b"ab"[..]), (1, 2, &b"c"[..]), (2, 1, &b"z"[..])]
    );
}

#[test]
fn bye_round_trip() {
    let mut out = [0u8; 16];
    let n = write_bye(&mut out, &[1, 2]).unwrap();
    let RtcpPacket::Bye { ssrcs } = only(&out[..n]) else {
        panic!()
    };
    assert_eq!(ssrcs.iter().collect::<Vec<_>>(), [1, 2]);
    assert_eq!(ssrcs.len(), 2);
}

#[test]
fn compound_and_padding() {
    let mut out = [0u8; 128];
    let mut n = write_receiver_report(&mut out, 1, &[block(0)]).unwrap();
    n += write_sdes_cname(&mut out[n..], 1, "cname").unwrap();
    // An APP packet with padding: 8-byte body + 4 bytes of padding.
    let app = [
        0xA0, 204, 0, 3, 1, 2, 3, 4, b'n', b'a', b'm', b'e', 0, 0, 0, 4,
    ];
    out[n..n + app.len()].copy_from_slice(&app);
    n += app.len();
    n += write_pli(&mut out[n..], 1, 2).unwrap();
    let kinds: Vec<_> = rtcp_packets(&out[..n])
        .map(|p| match p.unwrap() {
            RtcpPacket::ReceiverReport { .. } => "rr",
            RtcpPacket::Sdes(_) => "sdes",
            RtcpPacket::Other {
                pt: 204,
                fmt: 0,
                body,
            } => {
                assert_eq!(body, &[1, 2, 3, 4, b'n', b'a', b'm', b'e']);
                "app"
            }
            RtcpPacket::Pli { .. } => "pli",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["rr", "sdes", "app", "pli"]);
}

#[test]
fn framing_errors_end_iteration() {
    // Length overrun.
    let p = [0x80, 201, 0, 5, 0, 0, 0, 1];
    let r: Vec<_> = rtcp_packets(&p).map(Result::err).collect();
    assert_eq!(
        r,
        [Some(RtcpError::LengthOverrun {
            declared: 24,
            available: 8
        })]
    );
    // Bad version after a good packet.
    let mut q = [0u8; 12];
    write_receiver_report(&mut q, 1, &[]).unwrap();
    q[8] = 0x40;
    let r: Vec<_> = rtcp_packets(&q).collect();
    assert!(r[0].is_ok());
    assert_eq!(r[1].as_ref().unwrap_err(), &RtcpError::BadVersion(1));
    assert_eq!(r.len(), 2);
    // Trailing bytes too short for a header.
    let r: Vec<_> = rtcp_packets(&q[..10]).collect();
    assert_eq!(r[1].as_ref().unwrap_err(), &RtcpError::TooShort(2));
    // Zero padding count, and padding larger than the body.
    let z = [0xA0, 204, 0, 1, 0, 0, 0, 0];
    assert_eq!(
        rtcp_packets(&z).next().unwrap().unwrap_err(),
        RtcpError::BadPadding(0)
    );
    let z = [0xA0, 204, 0, 1, 0, 0, 0, 5];
    assert_eq!(
        rtcp_packets(&z).next().unwrap().unwrap_err(),
        RtcpError::BadPadding(5)
    );
}

#[test]
fn truncated_body_continues_with_next_packet() {
    let mut out = [0u8; 32];
    // An RR claiming one report block but carrying none.
    out[..8].copy_from_slice(&[0x81, 201, 0, 1, 0, 0, 0, 1]);
    let n = 8 + write_pli(&mut out[8..], 1, 2).unwrap();
    let r: Vec<_> = rtcp_packets(&out[..n]).collect();
    assert_eq!(
        r[0].as_ref().unwrap_err(),
        &RtcpError::Truncated { pt: 201, fmt: 1 }
    );
    assert!(matches!(r[1], Ok(RtcpPacket::Pli { .. })));
}

/// Packet from the transport-cc draft's structure, built by hand: base 10, 5 statuses
/// (received, received, lost, received large-negative, received), one 2-bit vector chunk.
#[test]
fn parses_handmade_twcc() {
    let chunk: u16 = 0xC000 | (1 << 12) | (1 << 10) | (2 << 6) | (1 << 4);
    let mut p = vec![
        0x8F, 205, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 10, 0, 5, 0, 0, 3, 9,
    ];
    p.extend_from_slice(&chunk.to_be_bytes());
    p.extend_from_slice(&[4, 8]); // two small deltas
    p.extend_from_slice(&(-4i16).to_be_bytes());
    p.push(1); // small delta
    p.push(1); // 27 bytes so far: one byte of padding, holding its own count
    p[0] |= 0x20;
    assert_eq!(p.len() % 4, 0);
    let words = (p.len() / 4 - 1) as u16;
    p[2..4].copy_from_slice(&words.to_be_bytes());
    let RtcpPacket::TransportCc(v) = only(&p) else {
        panic!()
    };
    assert_eq!((v.sender_ssrc(), v.media_ssrc()), (1, 2));
    assert_eq!((v.base_seq(), v.status_count(), v.fb_count()), (10, 5, 9));
    assert_eq!(v.reference_time(), 3);
    assert_eq!(v.reference_time_us(), 192_000);
    assert_eq!(
        v.packets().collect::<Vec<_>>(),
        [
            (10, Some(1000)),
            (11, Some(2000)),
            (12, None),
            (13, Some(-1000)),
            (14, Some(250))
        ]
    );
}

#[test]
fn twcc_rejects_reserved_symbol_and_truncation() {
    let mut body = vec![0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0];
    body.extend_from_slice(&0x6001u16.to_be_bytes()); // run-length of symbol 3
    assert_eq!(
        TwccView::parse(&body).unwrap_err(),
        RtcpError::ReservedStatusSymbol
    );
    body.truncate(16);
    assert!(TwccView::parse(&body).is_err(), "chunk missing");
    body.extend_from_slice(&0x2001u16.to_be_bytes()); // one small delta, delta missing
    assert!(TwccView::parse(&body).is_err());
    body.push(7);
    let v = TwccView::parse(&body).unwrap();
    assert_eq!(v.packets().collect::<Vec<_>>(), [(0, Some(1750))]);
    // Negative reference time.
    body[12..15].copy_from_slice(&[0xFF, 0xFF, 0xFE]);
    assert_eq!(TwccView::parse(&body).unwrap().reference_time(), -2);
}

/// Decodes feedback back into (seq, absolute arrival µs) for the received packets, plus the
/// sequence numbers reported lost.
fn decode(buf: &[u8]) -> (Vec<(u16, i64)>, Vec<u16>, u8) {
    let RtcpPacket::TransportCc(v) = only(buf) else {
        panic!("not transport-cc")
    };
    let mut t = v.reference_time_us();
    let mut got = Vec::new();
    let mut lost = Vec::new();
    for (seq, d) in v.packets() {
        match d {
            Some(d) => {
                t += d;
                got.push((seq, t));
            }
            None => lost.push(seq),
        }
    }
    assert_eq!(got.len() + lost.len(), usize::from(v.status_count()));
    (got, lost, v.fb_count())
}

fn quantize(us: i64) -> i64 {
    us.div_euclid(250) * 250
}

#[test]
fn twcc_builder_round_trip_with_gaps_and_large_deltas() {
    let mut b = TwccBuilder::new();
    let mut sent = Vec::new();
    let mut t = 1_000_000_007i64;
    let mut seq = 65_500u16;
    let mut expect_lost = Vec::new();
    for i in 0..200u32 {
        match i % 23 {
            5 | 6 => {
                // lost
                expect_lost.push(seq);
            }
            _ => {
                sent.push((seq, t));
            }
        }
        seq = seq.wrapping_add(1);
        t += match i % 17 {
            3 => 70_000, // large positive delta
            9 => -1_500, // arrives earlier than the previous one: negative delta
            _ => 1_337,  // small delta
        };
    }
    // Push out of order: swap neighbours.
    let mut order = sent.clone();
    for pair in order.chunks_exact_mut(2).step_by(3) {
        pair.swap(0, 1);
    }
    for &(s, at) in &order {
        b.push(s, at);
    }
    let mut out = [0u8; 1500];
    let n = b.write(&mut out, 0xAAAA, 0xBBBB).unwrap().unwrap();
    assert_eq!(n % 4, 0);
    let (got, lost, fb) = decode(&out[..n]);
    assert_eq!(fb, 0);
    let want: Vec<_> = sent.iter().map(|&(s, at)| (s, quantize(at))).collect();
    assert_eq!(got, want);
    assert_eq!(lost, expect_lost);
    assert_eq!(b.write(&mut out, 0xAAAA, 0xBBBB).unwrap(), None);
    assert_eq!(b.pending(), 0);
}

#[test]
fn twcc_builder_splits_on_small_buffer_and_reports_gap_between_feedbacks() {
    let mut b = TwccBuilder::new();
    let mut want = Vec::new();
    for i in 0..300u16 {
        if i % 10 == 9 {
            continue;
        }
        let at = 5_000 + i64::from(i) * 500 + if i % 4 == 0 { 100_000 } else { 0 };
        b.push(i, at);
        want.push((i, quantize(at)));
    }
    let mut out = [0u8; 64];
    let mut got = Vec::new();
    let mut lost = Vec::new();
    let mut count = 0u8;
    while let Some(n) = b.write(&mut out, 1, 2).unwrap() {
        assert!(n <= 64);
        let (g, l, fb) = decode(&out[..n]);
        assert_eq!(fb, count);
        count += 1;
        got.extend(g);
        lost.extend(l);
    }
    assert!(count > 3, "split into several feedbacks");
    assert_eq!(got, want);
    // 299 was never received and nothing after it was either, so it is not reported yet.
    let want_lost: Vec<u16> = (0..299).filter(|i| i % 10 == 9).collect();
    assert_eq!(lost, want_lost);

    // Next round: the gap since the last feedback is reported as lost, and a late packet
    // from before it is dropped.
    b.push(303, 1_000_000);
    b.push(250, 1_000_100);
    let n = b.write(&mut out, 1, 2).unwrap().unwrap();
    let (g, l, _) = decode(&out[..n]);
    assert_eq!(g, [(303, 1_000_000)]);
    assert_eq!(l, [299, 300, 301, 302]);
}

#[test]
fn twcc_builder_splits_when_delta_exceeds_16_bits() {
    let mut b = TwccBuilder::new();
    b.push(1, 0);
    b.push(2, 10_000_000); // 40000 ticks later: does not fit i16
    b.push(3, 10_000_250);
    let mut out = [0u8; 128];
    let n = b.write(&mut out, 1, 2).unwrap().unwrap();
    assert_eq!(decode(&out[..n]).0, [(1, 0)]);
    let n = b.write(&mut out, 1, 2).unwrap().unwrap();
    let (g, l, fb) = decode(&out[..n]);
    assert_eq!(g, [(2, 10_000_000), (3, 10_000_250)]);
    assert!(l.is_empty());
    assert_eq!(fb, 1);
    assert_eq!(b.write(&mut out, 1, 2).unwrap(), None);
}

#[test]
fn twcc_builder_long_runs_and_duplicates() {
    let mut b = TwccBuilder::new();
    // 40 received with small deltas, a gap of 20000, 40 more, one duplicate.
    let mut want = Vec::new();
    for i in 0..40u16 {
        b.push(i, i64::from(i) * 1000);
        want.push((i, i64::from(i) * 1000));
    }
    b.push(5, 999_999);
    for i in 20_040..20_080u16 {
        b.push(i, i64::from(i) * 10);
        want.push((i, quantize(i64::from(i) * 10)));
    }
    let mut out = [0u8; 1200];
    let n = b.write(&mut out, 1, 2).unwrap().unwrap();
    // Run-length chunks keep it small.
    assert!(n < 200, "{n}");
    let (g, l, _) = decode(&out[..n]);
    assert_eq!(g, want);
    assert_eq!(l.len(), 20_000);
}

#[test]
fn twcc_builder_errors_and_empty() {
    let mut b = TwccBuilder::new();
    let mut out = [0u8; 64];
    assert_eq!(b.write(&mut out, 1, 2).unwrap(), None);
    b.push(7, 100);
    assert!(matches!(
        b.write(&mut out[..20], 1, 2),
        Err(RtcpError::BufferTooSmall { .. })
    ));
    assert_eq!(b.pending(), 1);
    let n = b.write(&mut out[..24], 1, 2).unwrap().unwrap();
    assert_eq!(n, 24);
    assert_eq!(decode(&out[..n]).0, [(7, 0)]);
}

#[test]
fn twcc_chunk_encodings_decode() {
    // Every symbol pattern of length 1..=20 over {lost, small, large} in a few shapes must
    // survive encoding and decoding through the builder.
    let patterns: [&[u8]; 6] = [
        &[1; 20],
        &[1, 0, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 0, 1],
        &[2, 2, 2, 2, 2, 2, 2, 2, 2, 1],
        &[1, 2, 0, 1, 2, 0, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
        &[1, 1, 1, 1, 1, 1, 1, 1, 2],
        &[2],
    ];
    for pat in patterns {
        let mut b = TwccBuilder::new();
        let mut t = 640_000i64;
        let mut want = Vec::new();
        for (i, &s) in pat.iter().enumerate() {
            let seq = 1000 + i as u16;
            match s {
                0 => continue,
                1 => t += 500,
                _ => t += 100_000,
            }
            b.push(seq, t);
            want.push((seq, t));
        }
        let mut out = [0u8; 256];
        let n = b.write(&mut out, 1, 2).unwrap().unwrap();
        assert_eq!(decode(&out[..n]).0, want, "{pat:?}");
    }
}

#[test]
fn twcc_builder_bounds_pending_packets() {
    let mut b = TwccBuilder::new();
    for i in 0..40_000u32 {
        b.push(i as u16, i64::from(i) * 100);
    }
    assert!(b.pending() <= 1 << 14, "{}", b.pending());
    // The newest packets are the ones kept, and feedback still decodes in order.
    let mut out = [0u8; 1500];
    let n = b.write(&mut out, 1, 2).unwrap().unwrap();
    let (g, l, _) = decode(&out[..n]);
    assert!(l.is_empty());
    assert!(g.windows(2).all(|w| w[1].0 == w[0].0.wrapping_add(1)));
    assert!(g[0].0 > 20_000);
}

#[test]
fn twcc_builder_random_round_trips() {
    let mut state = 0x1234_5678_9ABC_DEF1u64;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..200 {
        let mut b = TwccBuilder::new();
        let start = rand() as u16;
        let count = 1 + (rand() % 400) as u16;
        let loss = rand() % 60;
        let mut t = (rand() % 1_000_000_000) as i64;
        let mut received = Vec::new();
        let mut lost = Vec::new();
        for i in 0..count {
            let seq = start.wrapping_add(i);
            t += (rand() % 3_000) as i64;
            if rand() % 100 < loss && i != 0 && i != count - 1 {
                lost.push(seq);
                continue;
            }
            // Occasional jitter spikes, both ways.
            let at = match rand() % 20 {
                0 => t + 200_000,
                1 => t - 50_000,
                _ => t,
            };
            received.push((seq, at));
        }
        let mut order = received.clone();
        for _ in 0..order.len() / 4 {
            let a = (rand() as usize) % order.len();
            let c = (rand() as usize) % order.len();
            order.swap(a, c);
        }
        for &(s, at) in &order {
            b.push(s, at);
        }
        let cap = 24 + (rand() % 400) as usize;
        let mut out = vec![0u8; cap];
        let (mut got, mut got_lost) = (Vec::new(), Vec::new());
        let mut feedbacks = 0;
        while let Some(n) = b.write(&mut out, 1, 2).unwrap() {
            assert!(n <= cap);
            let (g, l, _) = decode(&out[..n]);
            got.extend(g);
            got_lost.extend(l);
            feedbacks += 1;
            assert!(feedbacks < 1000);
        }
        let want: Vec<_> = received.iter().map(|&(s, at)| (s, quantize(at))).collect();
        assert_eq!(got, want, "cap {cap}");
        assert_eq!(got_lost, lost, "cap {cap}");
    }
}
