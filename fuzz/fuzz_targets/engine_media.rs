//! The media engine past the handshake: one publisher and one subscriber peer are added,
//! made valid with signed STUN, and taken through a real DTLS handshake with client
//! endpoints; then the input speaks for the two clients with SRTP-protected RTP and SRTCP
//! (so that the forwarding path, the retransmission cache, NACK/PLI/TWCC handling and the
//! RTCP reports are reached), DTLS application data (SCTP), raw datagrams, control-plane
//! commands and clock advances.
//!
//! The two handshakes cost about a millisecond, ten times the rest of an input, so they run
//! once per process (and again whenever an input ended an association): every input gets a
//! fresh engine with its two peers validated by STUN, and each peer is handed the server
//! endpoint of an association already established (`Engine::adopt_dtls`, the `fuzzing`
//! feature of `lkr-sfu`), with the keys its handshake exported; the SRTP contexts, SCTP
//! association, tracks and everything else start fresh. Only the two DTLS associations
//! (record sequence numbers, replay windows) carry over from one input to the next.
//!
//! Input: steps of an op byte, a big-endian u16 length and that many bytes (see `ops`), so
//! that seeds can carry real media (fuzz/examples/seeds.rs).
#![no_main]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use lkr_dtls_glue::dtls::{DtlsEndpoint, DtlsEvent, Role};
use lkr_dtls_glue::srtp::{SrtpContext, SrtpKeys, SrtpProfile};
use lkr_fuzz::{certificate, peer_certificate, signed_stun};
use lkr_sfu::{
    CodecKind, Command, Engine, ExtIds, MediaKind, PayloadType, PeerConfig, PeerId, PublishSpec,
    RemoteFingerprint, SubscribeSpec, TrackId,
};

const PUB: u8 = 0;
const SUB: u8 = 1;

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 10 + i], 40_000))
}

fn pwd(p: u8) -> String {
    format!("local-password-{p:04}-abcdef")
}

struct Client {
    dtls: DtlsEndpoint,
    srtp: SrtpContext,
    /// What the handshake exported: SRTP profile id and keying material.
    profile_id: u16,
    keying_material: Vec<u8>,
}

/// An association established with an earlier engine: its server end (taken out of that
/// engine) and its client end.
struct Established {
    server: DtlsEndpoint,
    client: DtlsEndpoint,
    profile_id: u16,
    keying_material: Vec<u8>,
}

thread_local! {
    /// The publisher's and the subscriber's associations, carried from one input to the
    /// next; empty when they must be (re)established by handshakes.
    static ESTABLISHED: RefCell<Vec<Established>> = const { RefCell::new(Vec::new()) };
}

/// The client's SRTP context for an association's keys (fresh stream state every input).
fn client_srtp(profile_id: u16, keying_material: &[u8]) -> Option<SrtpContext> {
    let profile = SrtpProfile::from_dtls_id(profile_id)?;
    let keys = SrtpKeys::from_exporter(profile, keying_material, true).ok()?;
    SrtpContext::new(profile, &keys.local_key, &keys.local_salt).ok()
}

struct Harness {
    engine: Engine,
    now: Instant,
    clients: Vec<Client>,
}

/// One step of the input: an op byte, a big-endian u16 length and that many bytes. The op's
/// high bit picks the client (0 publisher, 1 subscriber), the rest the kind (see `ops`).
#[derive(Debug)]
enum Op<'a> {
    /// An RTP packet from a client, protected with its SRTP keys.
    Rtp {
        client: bool,
        packet: &'a [u8],
    },
    /// An RTP packet built from fields, so that it parses (header extensions: mid id 1,
    /// rid id 2, audio level id 3, transport-cc id 4, repaired rid id 5).
    Media {
        client: bool,
        video: bool,
        marker: bool,
        pt: u8,
        seq: u16,
        ts: u32,
        ssrc_pick: u8,
        exts: Vec<(u8, &'a [u8])>,
        payload: &'a [u8],
    },
    /// A compound RTCP packet from a client, protected with SRTCP.
    Rtcp {
        client: bool,
        packet: &'a [u8],
    },
    /// A DTLS application-data record (an SCTP packet) from a client.
    Sctp {
        client: bool,
        packet: &'a [u8],
    },
    /// Anything, unprotected, from a client's address.
    Datagram {
        client: bool,
        data: &'a [u8],
    },
    Subscribe {
        ssrc: u32,
        vp8_pt: u8,
        opus_pt: u8,
    },
    Unsubscribe,
    SetPaused(bool),
    SetMaxLayer(u8),
    SendData(bool, &'a [u8]),
    RequestKeyframe,
    Unpublish,
    Advance(u16),
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([
        b.get(at).copied().unwrap_or(0),
        b.get(at + 1).copied().unwrap_or(0),
    ])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    (u32::from(u16_at(b, at)) << 16) | u32::from(u16_at(b, at + 2))
}

/// `Media` body: flags (client, video, marker bits), pt, seq (2), ts (4), ssrc pick,
/// extension count, then per extension id, length, bytes; the rest is the payload.
fn media(body: &[u8]) -> Op<'_> {
    let flags = body.first().copied().unwrap_or(0);
    let count = body.get(9).copied().unwrap_or(0);
    let mut at = 10;
    let mut exts = Vec::new();
    for _ in 0..count.min(6) {
        let (Some(&id), Some(&len)) = (body.get(at), body.get(at + 1)) else {
            break;
        };
        let end = (at + 2 + usize::from(len)).min(body.len());
        exts.push((id, &body[at + 2..end]));
        at = end;
    }
    Op::Media {
        client: flags & 1 != 0,
        video: flags & 2 != 0,
        marker: flags & 4 != 0,
        pt: body.get(1).copied().unwrap_or(0),
        seq: u16_at(body, 2),
        ts: u32_at(body, 4),
        ssrc_pick: body.get(8).copied().unwrap_or(0),
        exts,
        payload: body.get(at..).unwrap_or_default(),
    }
}

fn ops(mut data: &[u8]) -> impl Iterator<Item = Op<'_>> {
    std::iter::from_fn(move || {
        let (&op, rest) = data.split_first()?;
        let len = usize::from(u16_at(rest, 0)).min(rest.len().saturating_sub(2));
        let body = rest.get(2..2 + len).unwrap_or_default();
        data = rest.get(2 + len..).unwrap_or_default();
        let client = op & 0x80 != 0;
        Some(match (op & 0x7f) % 13 {
            0 => Op::Rtp {
                client,
                packet: body,
            },
            1 => media(body),
            2 => Op::Rtcp {
                client,
                packet: body,
            },
            3 => Op::Sctp {
                client,
                packet: body,
            },
            4 => Op::Datagram { client, data: body },
            5 => Op::Subscribe {
                ssrc: u32_at(body, 0),
                vp8_pt: body.get(4).copied().unwrap_or(96),
                opus_pt: body.get(5).copied().unwrap_or(111),
            },
            6 => Op::Unsubscribe,
            7 => Op::SetPaused(body.first().is_some_and(|b| b & 1 == 1)),
            8 => Op::SetMaxLayer(body.first().copied().unwrap_or(2)),
            9 => Op::SendData(client, body),
            10 => Op::RequestKeyframe,
            11 => Op::Unpublish,
            _ => Op::Advance(u16_at(body, 0)),
        })
    })
}

impl Harness {
    fn drain(&mut self) {
        let mut n = 0usize;
        while let Some(t) = self.engine.poll_transmit() {
            n += 1;
            assert!(n < 100_000, "unbounded transmits from one step");
            if let Some(i) = (0..self.clients.len() as u8).find(|&i| addr(i) == t.dest)
                && let Some(c) = self.clients.get_mut(usize::from(i))
            {
                let _ = c.dtls.handle_receive(self.now, &t.data);
                while c.dtls.poll_transmit().is_some() {}
                while c.dtls.poll_event().is_some() {}
            }
            self.engine.recycle(t.data);
        }
        while self.engine.poll_event().is_some() {}
    }

    fn add_peer(&mut self, p: u8) {
        let fp = peer_certificate().fingerprint();
        self.engine.handle_command(
            self.now,
            Command::AddPeer {
                peer: PeerId(p.into()),
                config: PeerConfig {
                    group: 0,
                    local_ufrag: format!("lu{p}"),
                    local_pwd: pwd(p),
                    remote_ufrag: format!("ru{p}"),
                    remote_pwd: format!("remote-password-{p:04}-abcdef"),
                    remote_fingerprint: RemoteFingerprint {
                        algorithm: fp.algorithm.clone(),
                        value: fp.to_sdp_value(),
                    },
                    open_channels: Vec::new(),
                },
            },
        );
        let mut stun = signed_stun(
            0x0001,
            [p; 12],
            Some(&format!("lu{p}:ru{p}")),
            &[(0x0025, Vec::new()), (0x802a, 7u64.to_be_bytes().to_vec())],
            Some(&pwd(p)),
        );
        self.engine.handle_receive(self.now, addr(p), &mut stun);
        while let Some(t) = self.engine.poll_transmit() {
            self.engine.recycle(t.data);
        }
    }

    /// A DTLS handshake between a client endpoint and the engine over a lossless link.
    fn connect(&mut self, p: u8) -> Option<Client> {
        let (algorithm, value) = self.engine.fingerprint();
        let fp = lkr_dtls_glue::cert::Fingerprint::parse(&algorithm, &value).ok()?;
        let server_addr: SocketAddr = "127.0.0.1:7882".parse().unwrap();
        let mut dtls =
            DtlsEndpoint::new(Role::Client, peer_certificate(), fp, server_addr, self.now).ok()?;
        for _ in 0..16 {
            while let Some(mut d) = dtls.poll_transmit() {
                self.engine.handle_receive(self.now, addr(p), &mut d);
            }
            while let Some(t) = self.engine.poll_transmit() {
                if t.dest == addr(p) {
                    let _ = dtls.handle_receive(self.now, &t.data);
                }
                self.engine.recycle(t.data);
            }
            while let Some(ev) = dtls.poll_event() {
                if let DtlsEvent::Connected {
                    profile_id,
                    keying_material,
                    we_are_client: true,
                } = ev
                {
                    let srtp = client_srtp(profile_id, &keying_material)?;
                    return Some(Client {
                        dtls,
                        srtp,
                        profile_id,
                        keying_material: keying_material.to_vec(),
                    });
                }
            }
        }
        None
    }

    fn send(&mut self, client: bool, packet: &[u8], rtcp: bool) {
        let i = usize::from(client);
        let len = packet.len();
        let mut packet = packet.to_vec();
        packet.resize(len + 32, 0);
        let c = &mut self.clients[i];
        let out = if rtcp {
            c.srtp.protect_rtcp(&mut packet, len)
        } else {
            c.srtp.protect_rtp(&mut packet, len)
        };
        if let Ok(n) = out {
            packet.truncate(n);
            self.engine
                .handle_receive(self.now, addr(i as u8), &mut packet);
        }
    }

    fn command(&mut self, cmd: Command) {
        self.engine.handle_command(self.now, cmd);
    }

    fn apply(&mut self, op: Op) {
        let sub = PeerId(SUB.into());
        let video = TrackId(1);
        match op {
            Op::Rtp { client, packet } => self.send(client, packet, false),
            Op::Media {
                client,
                video,
                marker,
                pt,
                seq,
                ts,
                ssrc_pick,
                exts,
                payload,
            } => {
                let ssrc = match ssrc_pick % 4 {
                    0 => 1111,
                    1 => 2222,
                    2 => 3333,
                    _ => u32::from(ssrc_pick) << 8,
                };
                let pt = match (video, pt % 3) {
                    (true, 0) => 96,
                    (true, 1) => 97,
                    (false, 0) => 111,
                    _ => pt,
                };
                let exts: Vec<(u8, &[u8])> = exts.iter().map(|&(id, d)| (id % 6, d)).collect();
                let mut buf = vec![0u8; 2048];
                let Ok(n) = lkr_rtp::RtpWriter::write_header(
                    &mut buf,
                    marker,
                    pt & 0x7f,
                    seq,
                    ts,
                    ssrc,
                    &exts,
                ) else {
                    return;
                };
                let end = (n + payload.len()).min(1400);
                buf[n..end].copy_from_slice(&payload[..end - n]);
                buf.truncate(end);
                self.send(client, &buf, false);
            }
            Op::Rtcp { client, packet } => self.send(client, packet, true),
            Op::Sctp { client, packet } => {
                let c = &mut self.clients[usize::from(client)];
                if c.dtls.send_application_data(packet).is_ok() {
                    while let Some(mut d) = c.dtls.poll_transmit() {
                        self.engine
                            .handle_receive(self.now, addr(u8::from(client)), &mut d);
                    }
                }
            }
            Op::Datagram { client, data } => {
                let mut data = data.to_vec();
                self.engine
                    .handle_receive(self.now, addr(u8::from(client)), &mut data);
            }
            Op::Subscribe {
                ssrc,
                vp8_pt,
                opus_pt,
            } => {
                for (track, pt) in [(TrackId(0), opus_pt), (video, vp8_pt)] {
                    self.command(Command::Subscribe(SubscribeSpec {
                        peer: sub,
                        track,
                        ssrc: ssrc.wrapping_add(track.0 as u32),
                        payload_types: vec![
                            (CodecKind::Opus, pt & 0x7f),
                            (CodecKind::Vp8, pt & 0x7f),
                            (CodecKind::Vp9, (pt ^ 1) & 0x7f),
                        ],
                        transport_cc: 0,
                        rtx: None,
                        priority: 0,
                        // A playout delay under any extension id, one-byte form or two, from the ssrc's bits.
                        playout_delay: (ssrc & 0x100 != 0).then(|| {
                            (
                                ((ssrc >> 9) as u8).max(1),
                                lkr_sfu::playout_delay(ssrc & 0xfff, ssrc >> 12),
                            )
                        }),
                    }));
                }
            }
            Op::Unsubscribe => self.command(Command::Unsubscribe {
                peer: sub,
                track: video,
            }),
            Op::SetPaused(paused) => self.command(Command::SetPaused {
                peer: sub,
                track: video,
                paused,
            }),
            Op::SetMaxLayer(max_layer) => self.command(Command::SetMaxLayer {
                peer: sub,
                track: video,
                max_layer,
            }),
            Op::SendData(reliable, data) => self.command(Command::SendData {
                peer: sub,
                reliable,
                data: Bytes::copy_from_slice(data),
            }),
            Op::RequestKeyframe => self.command(Command::RequestKeyframe { track: video }),
            Op::Unpublish => self.command(Command::Unpublish { track: video }),
            Op::Advance(ms) => {
                self.now += Duration::from_millis(u64::from(ms) * 4);
                if self.engine.poll_timeout().is_some_and(|t| t <= self.now) {
                    self.engine.handle_timeout(self.now);
                }
                for c in &mut self.clients {
                    c.dtls.handle_timeout(self.now);
                    while c.dtls.poll_transmit().is_some() {}
                }
            }
        }
        self.drain();
    }
}

fn publish(engine: &mut Engine, now: Instant) {
    let ext = ExtIds {
        mid: 1,
        rid: 2,
        repaired_rid: 5,
        audio_level: 3,
        transport_cc: 4,
        abs_send_time: 0,
    };
    engine.handle_command(
        now,
        Command::Publish(PublishSpec {
            peer: PeerId(PUB.into()),
            track: TrackId(0),
            kind: MediaKind::Audio,
            mid: "0".into(),
            rids: Vec::new(),
            ssrcs: vec![1111],
            payload_types: vec![PayloadType {
                pt: 111,
                codec: CodecKind::Opus,
                clock_rate: 48_000,
            }],
            ext,
            rtx: Vec::new(),
            rtx_ssrcs: Vec::new(),
        }),
    );
    engine.handle_command(
        now,
        Command::Publish(PublishSpec {
            peer: PeerId(PUB.into()),
            track: TrackId(1),
            kind: MediaKind::Video,
            mid: "1".into(),
            rids: vec!["q".into(), "h".into(), "f".into()],
            ssrcs: Vec::new(),
            // VP8, and VP9 whose descriptors may announce spatial layers (the SVC path).
            payload_types: vec![
                PayloadType {
                    pt: 96,
                    codec: CodecKind::Vp8,
                    clock_rate: 90_000,
                },
                PayloadType {
                    pt: 98,
                    codec: CodecKind::Vp9,
                    clock_rate: 90_000,
                },
            ],
            ext,
            rtx: vec![(97, 96)],
            rtx_ssrcs: vec![(2222, 3333)],
        }),
    );
}

impl Harness {
    /// Connects both peers: with the associations of earlier inputs when there are any,
    /// otherwise by two DTLS handshakes.
    fn establish(&mut self, kept: Vec<Established>) {
        if kept.len() == 2 {
            for (p, e) in [PUB, SUB].into_iter().zip(kept) {
                let Some(srtp) = client_srtp(e.profile_id, &e.keying_material) else {
                    panic!("the kept association's keys make an SRTP context");
                };
                self.engine.adopt_dtls(
                    self.now,
                    PeerId(p.into()),
                    e.server,
                    (e.profile_id, &e.keying_material, false),
                );
                self.clients.push(Client {
                    dtls: e.client,
                    srtp,
                    profile_id: e.profile_id,
                    keying_material: e.keying_material,
                });
            }
            return;
        }
        for p in [PUB, SUB] {
            let Some(c) = self.connect(p) else {
                panic!("the DTLS handshake with the engine failed");
            };
            self.clients.push(c);
        }
    }

    /// The associations to hand to the next input: both, if both ends of both are still up.
    fn keep(mut self) -> Vec<Established> {
        let mut kept = Vec::new();
        for (p, c) in [PUB, SUB]
            .into_iter()
            .zip(std::mem::take(&mut self.clients))
        {
            let Some(mut server) = self.engine.take_dtls(PeerId(p.into())) else {
                return Vec::new();
            };
            let mut client = c.dtls;
            while server.poll_transmit().is_some() || server.poll_event().is_some() {}
            while client.poll_transmit().is_some() || client.poll_event().is_some() {}
            if !server.is_connected() || !client.is_connected() {
                return Vec::new();
            }
            kept.push(Established {
                server,
                client,
                profile_id: c.profile_id,
                keying_material: c.keying_material,
            });
        }
        kept
    }
}

fuzz_target!(|data: &[u8]| {
    let mut h = Harness {
        engine: Engine::new(certificate().clone()),
        now: Instant::now(),
        clients: Vec::new(),
    };
    for p in [PUB, SUB] {
        h.add_peer(p);
    }
    h.establish(ESTABLISHED.with_borrow_mut(std::mem::take));
    h.drain();
    publish(&mut h.engine, h.now);
    for op in ops(data).take(128) {
        h.apply(op);
    }
    let kept = h.keep();
    ESTABLISHED.with_borrow_mut(|e| *e = kept);
});
