//! SCTP and DCEP as the server meets them: a server transport is brought up by a real client
//! transport (INIT, INIT-ACK, COOKIE-ECHO, COOKIE-ACK); then the input speaks for the client:
//! raw packets, packets of arbitrary chunks with the right ports, verification tag and
//! CRC32c, and DATA chunks with the next TSN (DCEP on PPID 50, messages on 51/53/56/57),
//! mixed with the server's own channel operations and timer firings.
//!
//! Input: steps of an op byte, a big-endian u16 length and that many bytes (see `ops`).
#![no_main]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use lkr_datachannel::SctpTransport;
use lkr_fuzz::sctp_checksum;

/// One step of the input: an op byte, a big-endian u16 length, and that many bytes.
#[derive(Debug)]
enum Op<'a> {
    /// A packet exactly as given.
    Raw(&'a [u8]),
    /// Chunk bytes (type, flags, length, value; as many as fit) in a packet with the right
    /// common header and checksum.
    Chunks(&'a [u8]),
    /// One DATA chunk with the next TSN (or one `tsn_skip` further ahead, not consuming it)
    /// and the stream's next SSN unless one is given.
    Data {
        stream: u16,
        ppid: u32,
        /// U, B and E bits (low three bits).
        flags: u8,
        tsn_skip: u8,
        ssn: Option<u16>,
        payload: &'a [u8],
    },
    ServerOpen {
        ordered: bool,
        max_retransmits: Option<u16>,
        label: &'a [u8],
    },
    ServerSend {
        stream: u16,
        binary: bool,
        data: &'a [u8],
    },
    ServerClose(u16),
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

fn ops(mut data: &[u8]) -> impl Iterator<Item = Op<'_>> {
    std::iter::from_fn(move || {
        let (&op, rest) = data.split_first()?;
        let len = usize::from(u16_at(rest, 0)).min(rest.len().saturating_sub(2));
        let body = rest.get(2..2 + len).unwrap_or_default();
        data = rest.get(2 + len..).unwrap_or_default();
        let tail = |at: usize| body.get(at..).unwrap_or_default();
        Some(match op % 8 {
            0 => Op::Raw(body),
            1 => Op::Chunks(body),
            2 | 7 => {
                let explicit = op % 8 == 7;
                Op::Data {
                    stream: u16_at(body, 0),
                    ppid: u32_at(body, 2),
                    flags: body.get(6).copied().unwrap_or(3),
                    tsn_skip: body.get(7).copied().unwrap_or(0),
                    ssn: explicit.then(|| u16_at(body, 8)),
                    payload: tail(if explicit { 10 } else { 8 }),
                }
            }
            3 => {
                let rtx = u16_at(body, 1);
                Op::ServerOpen {
                    ordered: body.first().is_some_and(|b| b & 1 == 1),
                    max_retransmits: (rtx != u16::MAX).then_some(rtx),
                    label: tail(3),
                }
            }
            4 => Op::ServerSend {
                stream: u16_at(body, 0),
                binary: body.get(2).is_some_and(|b| b & 1 == 1),
                data: tail(3),
            },
            5 => Op::ServerClose(u16_at(body, 0)),
            _ => Op::Advance(u16_at(body, 0)),
        })
    })
}

struct Peer {
    server: SctpTransport,
    now: Instant,
    /// The server's verification tag (from its INIT-ACK).
    tag: [u8; 4],
    next_tsn: u32,
    ssn: HashMap<u16, u16>,
}

fn header(tag: [u8; 4]) -> Vec<u8> {
    let mut p = Vec::with_capacity(64);
    p.extend_from_slice(&5000u16.to_be_bytes());
    p.extend_from_slice(&5000u16.to_be_bytes());
    p.extend_from_slice(&tag);
    p.extend_from_slice(&[0; 4]);
    p
}

fn push_data_chunk(p: &mut Vec<u8>, flags: u8, body: &[u8]) {
    let ty = 0;
    let len = (4 + body.len()).min(0xffff);
    p.push(ty);
    p.push(flags);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p.extend_from_slice(&body[..len - 4]);
    while !p.len().is_multiple_of(4) {
        p.push(0);
    }
}

/// Brings up an association; `None` if the handshake did not complete (it always should).
fn connect() -> Option<Peer> {
    let now = Instant::now();
    let mut client = SctpTransport::new(true, now);
    let mut server = SctpTransport::new(false, now);
    let (mut tag, mut next_tsn) = (None, None);
    for _ in 0..8 {
        while let Some(p) = client.poll_transmit(now) {
            // INIT: initial TSN at 28..32 (after the 12-byte header and the chunk's 16 bytes).
            if p.get(12) == Some(&1) && p.len() >= 32 {
                next_tsn = Some(u32::from_be_bytes([p[28], p[29], p[30], p[31]]));
            }
            server.handle_receive(now, &p);
        }
        while let Some(p) = server.poll_transmit(now) {
            // INIT-ACK: the server's initiate tag at 16..20.
            if p.get(12) == Some(&2) && p.len() >= 20 {
                tag = Some([p[16], p[17], p[18], p[19]]);
            }
            client.handle_receive(now, &p);
        }
    }
    while server.poll_event().is_some() {}
    if !server.is_established() {
        return None;
    }
    Some(Peer {
        server,
        now,
        tag: tag?,
        next_tsn: next_tsn?,
        ssn: HashMap::new(),
    })
}

impl Peer {
    fn deliver(&mut self, packet: &[u8]) {
        self.server.handle_receive(self.now, packet);
        self.drain();
    }

    fn drain(&mut self) {
        // Bounded: a peer that stops here is a peer that keeps the server sending forever.
        for _ in 0..10_000 {
            if self.server.poll_transmit(self.now).is_none() {
                break;
            }
        }
        while self.server.poll_event().is_some() {}
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Raw(p) => self.deliver(p),
            Op::Chunks(chunks) => {
                let mut p = header(self.tag);
                p.extend_from_slice(chunks);
                sctp_checksum(&mut p);
                self.deliver(&p);
            }
            Op::Data {
                stream,
                ppid,
                flags,
                ssn,
                tsn_skip,
                payload,
            } => {
                let tsn = self.next_tsn.wrapping_add(u32::from(tsn_skip));
                if tsn_skip == 0 {
                    self.next_tsn = self.next_tsn.wrapping_add(1);
                }
                let unordered = flags & 0x04 != 0;
                let ssn = ssn.unwrap_or_else(|| {
                    let next = self.ssn.entry(stream).or_default();
                    let s = *next;
                    if !unordered && flags & 0x01 != 0 {
                        *next = next.wrapping_add(1);
                    }
                    s
                });
                let mut body = Vec::with_capacity(12 + payload.len());
                body.extend_from_slice(&tsn.to_be_bytes());
                body.extend_from_slice(&stream.to_be_bytes());
                body.extend_from_slice(&ssn.to_be_bytes());
                body.extend_from_slice(&ppid.to_be_bytes());
                body.extend_from_slice(payload);
                let mut p = header(self.tag);
                push_data_chunk(&mut p, flags & 0x07, &body);
                sctp_checksum(&mut p);
                self.deliver(&p);
            }
            Op::ServerOpen {
                label,
                ordered,
                max_retransmits,
            } => {
                let label = String::from_utf8_lossy(label);
                let _ = self
                    .server
                    .open_channel(&label, ordered, max_retransmits, "");
                self.drain();
            }
            Op::ServerSend {
                stream,
                binary,
                data,
            } => {
                let _ = self.server.send(stream, binary, data);
                self.drain();
            }
            Op::ServerClose(stream) => {
                let _ = self.server.close_channel(stream);
                self.drain();
            }
            Op::Advance(ms) => {
                self.now += Duration::from_millis(ms.into());
                self.server.handle_timeout(self.now);
                self.drain();
            }
        }
        let _ = self.server.poll_timeout();
        let _ = self.server.channel_ids().count();
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(mut peer) = connect() else {
        panic!("the SCTP handshake between two fresh transports failed");
    };
    for op in ops(data).take(64) {
        peer.apply(op);
    }
    for id in peer.server.channel_ids().collect::<Vec<_>>() {
        let _ = peer.server.channel(id);
    }
});
