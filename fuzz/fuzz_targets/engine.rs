//! The media engine (`lkr_sfu::Engine`) driven by a sequence of control-plane commands,
//! datagrams from a handful of addresses (raw, or STUN binding requests signed with the
//! peer's ICE password, which make an address valid and open the DTLS path), and clock
//! advances firing its timer. After every step all transmits and events are drained.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use lkr_fuzz::{certificate, peer_certificate, signed_stun};
use lkr_sfu::{
    ChannelSpec, CodecKind, Command, Engine, ExtIds, MediaKind, PayloadType, PeerConfig, PeerId,
    PublishSpec, RemoteFingerprint, SubscribeSpec, TrackId,
};

const PEERS: u8 = 4;
const TRACKS: u8 = 8;

fn peer_fingerprint() -> &'static RemoteFingerprint {
    static FP: OnceLock<RemoteFingerprint> = OnceLock::new();
    FP.get_or_init(|| {
        let fp = peer_certificate().fingerprint();
        RemoteFingerprint {
            algorithm: fp.algorithm.clone(),
            value: fp.to_sdp_value(),
        }
    })
}

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1 + i % 4], 40_000 + u16::from(i % 3)))
}

fn codec(c: u8) -> CodecKind {
    match c % 7 {
        0 => CodecKind::Opus,
        1 => CodecKind::Red,
        2 => CodecKind::Vp8,
        3 => CodecKind::Vp9,
        4 => CodecKind::H264,
        5 => CodecKind::Av1,
        _ => CodecKind::Other,
    }
}

#[derive(Debug, Arbitrary)]
struct Ext {
    mid: u8,
    rid: u8,
    repaired_rid: u8,
    audio_level: u8,
    transport_cc: u8,
    abs_send_time: u8,
}

#[derive(Debug, Arbitrary)]
enum Op {
    AddPeer {
        peer: u8,
        /// A bad fingerprint value instead of the peer certificate's.
        bad_fingerprint: bool,
        channels: Vec<(String, bool, Option<u16>)>,
    },
    RemovePeer(u8),
    Publish {
        peer: u8,
        track: u8,
        video: bool,
        mid: String,
        rids: Vec<String>,
        ssrcs: Vec<u32>,
        payload_types: Vec<(u8, u8, u32)>,
        ext: Ext,
        rtx: Vec<(u8, u8)>,
        rtx_ssrcs: Vec<(u32, u32)>,
    },
    Unpublish(u8),
    Subscribe {
        peer: u8,
        track: u8,
        ssrc: u32,
        payload_types: Vec<(u8, u8)>,
    },
    Unsubscribe(u8, u8),
    SetPaused(u8, u8, bool),
    SetMaxLayer(u8, u8, u8),
    SetChannelCapacity(u8, u64),
    SendData(u8, bool, Vec<u8>),
    SendDataTrack(u8, Vec<u8>),
    RequestKeyframe(u8),
    /// A binding request from `from` to `peer`, signed with its password unless `unsigned`.
    Stun {
        peer: u8,
        from: u8,
        use_candidate: bool,
        unsigned: bool,
        transaction_id: [u8; 12],
        attrs: Vec<(u16, Vec<u8>)>,
    },
    Datagram {
        from: u8,
        data: Vec<u8>,
    },
    Advance(u16),
}

struct Harness {
    engine: Engine,
    now: Instant,
}

impl Harness {
    fn drain(&mut self) {
        let mut n = 0usize;
        while let Some(t) = self.engine.poll_transmit() {
            n += 1;
            assert!(n < 100_000, "unbounded transmits from one step");
            self.engine.recycle(t.data);
        }
        let mut n = 0usize;
        while self.engine.poll_event().is_some() {
            n += 1;
            assert!(n < 100_000, "unbounded events from one step");
        }
    }

    fn apply(&mut self, op: Op) {
        let now = self.now;
        let cmd = match op {
            Op::AddPeer {
                peer,
                bad_fingerprint,
                channels,
            } => {
                let p = peer % PEERS;
                let mut remote_fingerprint = peer_fingerprint().clone();
                if bad_fingerprint {
                    remote_fingerprint.value.truncate(5);
                }
                Some(Command::AddPeer {
                    peer: PeerId(p.into()),
                    config: PeerConfig {
                        group: 0,
                        local_ufrag: format!("lu{p}"),
                        local_pwd: format!("local-password-{p:04}-abcdef"),
                        remote_ufrag: format!("ru{p}"),
                        remote_pwd: format!("remote-password-{p:04}-abcdef"),
                        remote_fingerprint,
                        open_channels: channels
                            .into_iter()
                            .take(4)
                            .map(|(label, ordered, max_retransmits)| ChannelSpec {
                                label,
                                ordered,
                                max_retransmits,
                            })
                            .collect(),
                    },
                })
            }
            Op::RemovePeer(p) => Some(Command::RemovePeer {
                peer: PeerId((p % PEERS).into()),
            }),
            Op::Publish {
                peer,
                track,
                video,
                mid,
                rids,
                ssrcs,
                payload_types,
                ext,
                rtx,
                rtx_ssrcs,
            } => Some(Command::Publish(PublishSpec {
                peer: PeerId((peer % PEERS).into()),
                track: TrackId((track % TRACKS).into()),
                kind: if video {
                    MediaKind::Video
                } else {
                    MediaKind::Audio
                },
                mid,
                rids: rids.into_iter().take(4).collect(),
                ssrcs: ssrcs.into_iter().take(4).collect(),
                payload_types: payload_types
                    .into_iter()
                    .take(8)
                    .map(|(pt, c, clock_rate)| PayloadType {
                        pt,
                        codec: codec(c),
                        clock_rate,
                    })
                    .collect(),
                ext: ExtIds {
                    mid: ext.mid,
                    rid: ext.rid,
                    repaired_rid: ext.repaired_rid,
                    audio_level: ext.audio_level,
                    transport_cc: ext.transport_cc,
                    abs_send_time: ext.abs_send_time,
                },
                rtx: rtx.into_iter().take(8).collect(),
                rtx_ssrcs: rtx_ssrcs.into_iter().take(4).collect(),
            })),
            Op::Unpublish(t) => Some(Command::Unpublish {
                track: TrackId((t % TRACKS).into()),
            }),
            Op::Subscribe {
                peer,
                track,
                ssrc,
                payload_types,
            } => Some(Command::Subscribe(SubscribeSpec {
                peer: PeerId((peer % PEERS).into()),
                track: TrackId((track % TRACKS).into()),
                ssrc,
                payload_types: payload_types
                    .into_iter()
                    .take(8)
                    .map(|(c, pt)| (codec(c), pt))
                    .collect(),
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
            })),
            Op::Unsubscribe(p, t) => Some(Command::Unsubscribe {
                peer: PeerId((p % PEERS).into()),
                track: TrackId((t % TRACKS).into()),
            }),
            Op::SetPaused(p, t, paused) => Some(Command::SetPaused {
                peer: PeerId((p % PEERS).into()),
                track: TrackId((t % TRACKS).into()),
                paused,
            }),
            Op::SetChannelCapacity(p, bps) => Some(Command::SetChannelCapacity {
                peer: PeerId((p % PEERS).into()),
                bps,
            }),
            Op::SetMaxLayer(p, t, max_layer) => Some(Command::SetMaxLayer {
                peer: PeerId((p % PEERS).into()),
                track: TrackId((t % TRACKS).into()),
                max_layer,
            }),
            Op::SendData(p, reliable, data) => Some(Command::SendData {
                peer: PeerId((p % PEERS).into()),
                reliable,
                data: Bytes::from(data),
            }),
            Op::SendDataTrack(p, data) => Some(Command::SendDataTrack {
                peer: PeerId((p % PEERS).into()),
                data: Bytes::from(data),
            }),
            Op::RequestKeyframe(t) => Some(Command::RequestKeyframe {
                track: TrackId((t % TRACKS).into()),
            }),
            Op::Stun {
                peer,
                from,
                use_candidate,
                unsigned,
                transaction_id,
                attrs,
            } => {
                let p = peer % PEERS;
                let mut attrs: Vec<(u16, Vec<u8>)> = attrs.into_iter().take(4).collect();
                // PRIORITY and ICE-CONTROLLING, as browsers send them.
                attrs.push((0x0024, 0x6e00_1eff_u32.to_be_bytes().to_vec()));
                attrs.push((0x802a, 7u64.to_be_bytes().to_vec()));
                if use_candidate {
                    attrs.push((0x0025, Vec::new()));
                }
                let pwd = format!("local-password-{p:04}-abcdef");
                let mut msg = signed_stun(
                    0x0001,
                    transaction_id,
                    Some(&format!("lu{p}:ru{p}")),
                    &attrs,
                    (!unsigned).then_some(pwd.as_str()),
                );
                self.engine.handle_receive(now, addr(from), &mut msg);
                None
            }
            Op::Datagram { from, mut data } => {
                self.engine.handle_receive(now, addr(from), &mut data);
                None
            }
            Op::Advance(ms) => {
                self.now += Duration::from_millis(u64::from(ms) * 4);
                if self.engine.poll_timeout().is_some_and(|t| t <= self.now) {
                    self.engine.handle_timeout(self.now);
                }
                None
            }
        };
        if let Some(cmd) = cmd {
            self.engine.handle_command(now, cmd);
        }
        self.drain();
        let _ = self.engine.peer_count();
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut h = Harness {
        engine: Engine::new(certificate().clone()),
        now: Instant::now(),
    };
    for op in ops.into_iter().take(128) {
        h.apply(op);
    }
});
