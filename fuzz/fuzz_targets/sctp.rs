//! SCTP and DCEP as the server meets them: a server transport is brought up by a real client
//! transport (INIT, INIT-ACK, COOKIE-ECHO, COOKIE-ACK); then the input speaks for the client:
//! raw packets, packets of arbitrary chunks with the right ports, verification tag and
//! CRC32c, and DATA chunks with the next TSN (DCEP on PPID 50, messages on 51/53/56/57),
//! mixed with the server's own channel operations and timer firings.
#![no_main]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use lkr_datachannel::SctpTransport;
use lkr_fuzz::sctp_checksum;

#[derive(Debug, Arbitrary)]
struct Chunk {
    ty: u8,
    flags: u8,
    body: Vec<u8>,
}

#[derive(Debug, Arbitrary)]
enum Op {
    /// A packet exactly as given.
    Raw(Vec<u8>),
    /// Chunks in a packet with the right common header.
    Packet(Vec<Chunk>),
    /// One DATA chunk with the next TSN (or one `tsn_skip` further ahead).
    Data {
        stream: u16,
        ppid: u32,
        /// U, B and E bits (low three bits).
        flags: u8,
        ssn: Option<u16>,
        tsn_skip: u8,
        payload: Vec<u8>,
    },
    ServerOpen {
        label: String,
        ordered: bool,
        max_retransmits: Option<u16>,
    },
    ServerSend {
        stream: u16,
        binary: bool,
        data: Vec<u8>,
    },
    ServerClose {
        stream: u16,
    },
    Advance(u16),
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

fn push_chunk(p: &mut Vec<u8>, ty: u8, flags: u8, body: &[u8]) {
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
            Op::Raw(p) => self.deliver(&p),
            Op::Packet(chunks) => {
                let mut p = header(self.tag);
                for c in chunks.iter().take(16) {
                    push_chunk(&mut p, c.ty, c.flags, &c.body);
                }
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
                body.extend_from_slice(&payload);
                let mut p = header(self.tag);
                push_chunk(&mut p, 0, flags & 0x07, &body);
                sctp_checksum(&mut p);
                self.deliver(&p);
            }
            Op::ServerOpen {
                label,
                ordered,
                max_retransmits,
            } => {
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
                let _ = self.server.send(stream, binary, &data);
                self.drain();
            }
            Op::ServerClose { stream } => {
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

fuzz_target!(|ops: Vec<Op>| {
    let Some(mut peer) = connect() else {
        panic!("the SCTP handshake between two fresh transports failed");
    };
    for op in ops.into_iter().take(64) {
        peer.apply(op);
    }
    for id in peer.server.channel_ids().collect::<Vec<_>>() {
        let _ = peer.server.channel(id);
    }
});
