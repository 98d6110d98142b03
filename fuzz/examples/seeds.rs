//! Writes the seeds that are made by the project's own writers rather than taken from
//! captures: RTP and RTCP packets, a DTLS ClientHello flight, small Ogg/Opus and IVF files.
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example seeds
//!
//! Seeds go to `fuzz/seeds/<target>/`, named by what they hold.

use std::io::Cursor;
use std::path::PathBuf;
use std::time::Instant;

use lkr_dtls_glue::dtls::{DtlsEndpoint, Role};
use lkr_rtp::{ReportBlock, RtpWriter, TwccBuilder};
// Built like the fuzz targets (scripts/fuzz), so it needs the coverage callbacks.
use libfuzzer_sys as _;

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    std::fs::create_dir_all(&dir).expect("seed directory");
    std::fs::write(dir.join(name), data).expect("seed file");
}

fn rtp() {
    let mut buf = [0u8; 1500];
    // VP8 keyframe start with mid, transport-cc and audio-level style one-byte extensions.
    let n = RtpWriter::write_header(
        &mut buf,
        true,
        96,
        1000,
        90_000,
        0x1122_3344,
        &[(1, b"0"), (3, &[0x01, 0x02]), (4, b"f")],
    )
    .unwrap();
    let payload = [0x90, 0x80, 0x81, 0x23, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a];
    buf[n..n + payload.len()].copy_from_slice(&payload);
    let mut seed = vec![0x13];
    seed.extend_from_slice(&buf[..n + payload.len()]);
    write("rtp", "vp8-keyframe-one-byte-ext", &seed);

    // Opus with a two-byte extension block and padding.
    let n =
        RtpWriter::write_header(&mut buf, false, 111, 7, 960, 42, &[(20, &[0x7f; 20])]).unwrap();
    let mut packet = buf[..n].to_vec();
    packet.extend_from_slice(&[0xfc, 0xff, 0xfe, 0, 0, 3]);
    packet[0] |= 0x20;
    let mut seed = vec![0x80];
    seed.extend_from_slice(&packet);
    write("rtp", "opus-two-byte-ext-padding", &seed);

    // RTX: original sequence number before the payload.
    let n = RtpWriter::write_header(&mut buf, false, 97, 5, 3000, 43, &[]).unwrap();
    let mut seed = vec![0x01];
    seed.extend_from_slice(&buf[..n]);
    seed.extend_from_slice(&[0x03, 0xe8, 0x90, 0x00, 0x00]);
    write("rtp", "rtx-no-ext", &seed);
}

fn rtcp() {
    let mut out = vec![0u8; 1500];
    let block = ReportBlock {
        ssrc: 2,
        fraction_lost: 10,
        cumulative_lost: 3,
        highest_seq: 70_000,
        jitter: 5,
        lsr: 6,
        dlsr: 7,
    };
    let mut n =
        lkr_rtp::write_sender_report(&mut out, 1, 1 << 40, 90_000, 10, 1000, &[block]).unwrap();
    n += lkr_rtp::write_sdes_cname(&mut out[n..], 1, "cname-x").unwrap();
    write("rtcp", "sr-sdes", &out[..n]);

    let mut n = lkr_rtp::write_receiver_report(&mut out, 1, &[block]).unwrap();
    n += lkr_rtp::write_nack(&mut out[n..], 1, 2, &[10, 11, 13, 40, 41]).unwrap();
    n += lkr_rtp::write_pli(&mut out[n..], 1, 2).unwrap();
    write("rtcp", "rr-nack-pli", &out[..n]);

    let mut n = lkr_rtp::write_remb(&mut out, 1, 1_500_000, &[2, 3]).unwrap();
    n += lkr_rtp::write_fir(&mut out[n..], 1, 2, 1).unwrap();
    write("rtcp", "remb-fir", &out[..n]);

    let mut twcc = TwccBuilder::new();
    for (i, seq) in [1u16, 2, 3, 5, 8, 9, 200].iter().enumerate() {
        twcc.push(*seq, 1_000_000 + 250 * i as i64 * i as i64);
    }
    let n = twcc.write(&mut out, 1, 2).unwrap().unwrap();
    write("rtcp", "twcc", &out[..n]);
}

fn dtls() {
    let server = lkr_dtls_glue::cert::Certificate::generate().unwrap();
    let client_cert = lkr_fuzz::peer_certificate();
    let now = Instant::now();
    let mut client = DtlsEndpoint::new(
        Role::Client,
        client_cert,
        server.fingerprint(),
        "192.0.2.1:7882".parse().unwrap(),
        now,
    )
    .unwrap();
    let flight: Vec<Vec<u8>> = std::iter::from_fn(|| client.poll_transmit()).collect();
    write(
        "dtls",
        "client-hello",
        &lkr_fuzz::join_frames(flight.iter().map(Vec::as_slice)),
    );
    // The same flight twice with a timer firing between: a repeated ClientHello.
    let mut twice: Vec<&[u8]> = flight.iter().map(Vec::as_slice).collect();
    twice.push(&[]);
    twice.extend(flight.iter().map(Vec::as_slice));
    write(
        "dtls",
        "client-hello-repeated",
        &lkr_fuzz::join_frames(twice),
    );
}

fn ogg() {
    use lkr_cli::media::ogg::OggOpusWriter;
    let mut file = Cursor::new(Vec::new());
    {
        let mut w = OggOpusWriter::new(&mut file, 2).unwrap();
        // TOC 0xfc: CELT 20 ms stereo, one frame.
        for i in 1..=3u64 {
            w.write_packet(&[0xfc, 0xff, 0xfe, i as u8], 960 * i)
                .unwrap();
        }
        w.finish().unwrap();
    }
    let mut seed = vec![0u8];
    seed.extend_from_slice(file.get_ref());
    write("ogg", "opus-3-packets", &seed);
}

fn ivf() {
    use lkr_cli::media::ivf::IvfWriter;
    use lkr_client::Codec;
    for (codec, name, key) in [
        (Codec::Vp8, "vp8", vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a]),
        (Codec::Vp9, "vp9", vec![0x82, 0x49, 0x83, 0x42, 0x00]),
        (Codec::Av1, "av1", vec![0x12, 0x00, 0x0a, 0x0a, 0x00]),
    ] {
        let mut file = Cursor::new(Vec::new());
        {
            let mut w = IvfWriter::new(&mut file, codec, 64, 48, 30).unwrap();
            w.write_frame(&key, 0).unwrap();
            w.write_frame(&[0x31, 0x00, 0x00], 1).unwrap();
            w.write_frame(&key, 2).unwrap();
            w.finish(Some((64, 48))).unwrap();
        }
        write("ivf", name, file.get_ref());
    }
}

/// One step of the sctp target's input.
fn sctp_op(out: &mut Vec<u8>, op: u8, body: &[u8]) {
    out.push(op);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
}

/// A DATA step: stream, PPID, flags (B|E), no TSN skip, payload.
fn sctp_data(out: &mut Vec<u8>, stream: u16, ppid: u32, flags: u8, payload: &[u8]) {
    let mut body = Vec::new();
    body.extend_from_slice(&stream.to_be_bytes());
    body.extend_from_slice(&ppid.to_be_bytes());
    body.extend_from_slice(&[flags, 0]);
    body.extend_from_slice(payload);
    sctp_op(out, 2, &body);
}

/// DATA_CHANNEL_OPEN (RFC 8832 §5.1).
fn dcep_open(channel_type: u8, reliability: u32, label: &str) -> Vec<u8> {
    let mut m = vec![0x03, channel_type, 0x01, 0x00];
    m.extend_from_slice(&reliability.to_be_bytes());
    m.extend_from_slice(&(label.len() as u16).to_be_bytes());
    m.extend_from_slice(&0u16.to_be_bytes());
    m.extend_from_slice(label.as_bytes());
    m
}

fn sctp() {
    // What a LiveKit client does: open `_reliable` and `_lossy`, send on both.
    let mut s = Vec::new();
    sctp_data(&mut s, 0, 50, 0x03, &dcep_open(0x00, 0, "_reliable"));
    sctp_data(&mut s, 2, 50, 0x07, &dcep_open(0x81, 0, "_lossy"));
    sctp_data(&mut s, 0, 53, 0x03, b"\x0a\x03abc");
    sctp_data(&mut s, 2, 51, 0x07, b"hello");
    sctp_data(&mut s, 0, 57, 0x03, &[0]);
    // A message in two fragments.
    sctp_data(&mut s, 0, 53, 0x02, &[1; 300]);
    sctp_data(&mut s, 0, 53, 0x01, &[2; 300]);
    sctp_op(&mut s, 6, &2000u16.to_be_bytes());
    write("sctp", "open-reliable-lossy-and-send", &s);

    // The server opens a channel, the client acknowledges it, then resets the stream
    // (RE-CONFIG with an outgoing SSN reset request for stream 1).
    let mut s = Vec::new();
    let mut open = vec![1u8, 0xff, 0xff];
    open.extend_from_slice(b"_reliable");
    sctp_op(&mut s, 3, &open);
    sctp_data(&mut s, 1, 50, 0x03, &[0x02]);
    sctp_op(&mut s, 4, &[0, 1, 1, 9, 9]);
    let mut reconfig = vec![130, 0, 0, 22, 0, 13, 0, 18];
    reconfig.extend_from_slice(&1u32.to_be_bytes());
    reconfig.extend_from_slice(&0u32.to_be_bytes());
    reconfig.extend_from_slice(&0u32.to_be_bytes());
    reconfig.extend_from_slice(&[0, 1, 0, 0]);
    sctp_op(&mut s, 1, &reconfig);
    sctp_op(&mut s, 5, &1u16.to_be_bytes());
    write("sctp", "server-open-ack-reset", &s);
}

/// A `Media` step of the engine_media target.
#[allow(clippy::too_many_arguments)]
fn media_op(
    out: &mut Vec<u8>,
    flags: u8,
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc_pick: u8,
    exts: &[(u8, &[u8])],
    payload: &[u8],
) {
    let mut body = vec![flags, pt];
    body.extend_from_slice(&seq.to_be_bytes());
    body.extend_from_slice(&ts.to_be_bytes());
    body.extend_from_slice(&[ssrc_pick, exts.len() as u8]);
    for (id, d) in exts {
        body.extend_from_slice(&[*id, d.len() as u8]);
        body.extend_from_slice(d);
    }
    body.extend_from_slice(payload);
    sctp_op(out, 1, &body);
}

fn engine_media() {
    const VIDEO: u8 = 2;
    const MARKER: u8 = 4;
    const SUBSCRIBER: u8 = 0x80;
    let vp8_key = [
        0x90, 0x80, 0x81, 0x23, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01,
    ];
    let vp8_delta = [0x90, 0x80, 0x81, 0x24, 0x11, 0x00, 0x00];
    let opus = [0xfc, 0xff, 0xfe];
    let mut s = Vec::new();
    // Subscribe first so that the keyframes below are forwarded at once.
    let mut sub = 5000u32.to_be_bytes().to_vec();
    sub.extend_from_slice(&[96, 111]);
    sctp_op(&mut s, 5, &sub);
    for i in 0..3u16 {
        let tcc = (10 + 4 * i).to_be_bytes();
        media_op(
            &mut s,
            MARKER,
            0,
            100 + i,
            960 * u32::from(i),
            0,
            &[(1, b"0"), (3, &[0x85]), (4, &tcc)],
            &opus,
        );
        // One keyframe per simulcast layer (q, h, f on SSRCs 768, 1792, 2816).
        for (layer, (rid, pick)) in [(&b"q"[..], 3u8), (b"h", 7), (b"f", 11)].iter().enumerate() {
            let tcc = (11 + 4 * i + layer as u16).to_be_bytes();
            let payload: &[u8] = if i == 0 { &vp8_key } else { &vp8_delta };
            media_op(
                &mut s,
                VIDEO | MARKER,
                0,
                200 + i,
                3000 * u32::from(i),
                *pick,
                &[(1, b"1"), (2, rid), (4, &tcc)],
                payload,
            );
        }
        sctp_op(&mut s, 12, &25u16.to_be_bytes());
    }
    // A gap (seq 203 lost), then the subscriber asks for retransmission and a keyframe.
    media_op(
        &mut s,
        VIDEO | MARKER,
        0,
        204,
        12_000,
        3,
        &[(1, b"1"), (2, b"q")],
        &vp8_delta,
    );
    let mut rtcp = vec![0u8; 256];
    let mut n = lkr_rtp::write_nack(&mut rtcp, 9, 5001, &[1, 2]).unwrap();
    n += lkr_rtp::write_pli(&mut rtcp[n..], 9, 5001).unwrap();
    sctp_op(&mut s, 2 | SUBSCRIBER, &rtcp[..n]);
    // The publisher's sender report and an RTX packet (pt 97 on SSRC 3333).
    let n = lkr_rtp::write_sender_report(&mut rtcp, 768, 1 << 40, 9000, 3, 300, &[]).unwrap();
    sctp_op(&mut s, 2, &rtcp[..n]);
    let mut rtx = 203u16.to_be_bytes().to_vec();
    rtx.extend_from_slice(&vp8_delta);
    media_op(&mut s, VIDEO, 1, 7, 9000, 2, &[(1, b"1"), (5, b"q")], &rtx);
    // Layer cap, pause and resume, a second later (reports, TWCC feedback, audio levels).
    sctp_op(&mut s, 8, &[0]);
    sctp_op(&mut s, 7, &[1]);
    sctp_op(&mut s, 7, &[0]);
    sctp_op(&mut s, 12, &250u16.to_be_bytes());
    write("engine_media", "publish-subscribe-nack-pli", &s);
}

/// The `twcc` target's steps: a first sequence number, then signed steps (`0x80kk`: a jump of
/// `kk` × 128), each with an arrival advance (top bit: write feedback first).
fn twcc_steps() {
    let steps: [(u16, u16); 12] = [
        (65530, 4),
        (1, 4),
        (1, 4),
        (2, 8),            // a loss
        (-1i16 as u16, 2), // the lost one, late
        (2, 4),
        (1, 0x8000 | 4), // feedback, then on
        (2, 4),          // across the wrap
        (1, 4),
        (0, 4),        // a duplicate
        (0x8047, 400), // a gap of 9,088: longer than a run-length chunk
        (1, 0x8000 | 4),
    ];
    let mut s = Vec::new();
    for (seq, advance) in steps {
        s.extend_from_slice(&seq.to_be_bytes());
        s.extend_from_slice(&advance.to_be_bytes());
    }
    write("twcc", "ascending-gap-reorder-wrap", &s);
}

fn main() {
    twcc_steps();
    engine_media();
    sctp();
    rtp();
    rtcp();
    dtls();
    ogg();
    ivf();
}
