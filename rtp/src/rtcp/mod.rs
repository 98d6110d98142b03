//! RTCP (RFC 3550 §6): iteration over compound packets, borrowed views of the packet types
//! the router needs (RFC 4585 feedback, RFC 5104 FIR, REMB, transport-wide congestion
//! control) and writers into caller buffers.

mod twcc;
mod write;

pub use twcc::{TwccBuilder, TwccPackets, TwccView};
pub use write::{
    write_bye, write_fir, write_nack, write_pli, write_receiver_report, write_remb,
    write_sdes_cname, write_sender_report,
};

use crate::error::RtcpError;

/// Sender report.
pub const PT_SR: u8 = 200;
/// Receiver report.
pub const PT_RR: u8 = 201;
/// Source description.
pub const PT_SDES: u8 = 202;
/// Goodbye.
pub const PT_BYE: u8 = 203;
/// Application-defined.
pub const PT_APP: u8 = 204;
/// Transport-layer feedback (RFC 4585 §6.2).
pub const PT_RTPFB: u8 = 205;
/// Payload-specific feedback (RFC 4585 §6.3).
pub const PT_PSFB: u8 = 206;

/// RTPFB format of a generic NACK.
pub const FMT_NACK: u8 = 1;
/// RTPFB format of transport-wide congestion control feedback.
pub const FMT_TWCC: u8 = 15;
/// PSFB format of a picture loss indication.
pub const FMT_PLI: u8 = 1;
/// PSFB format of a full intra request.
pub const FMT_FIR: u8 = 4;
/// PSFB format of application-layer feedback (REMB).
pub const FMT_AFB: u8 = 15;

/// SDES item type of CNAME.
pub const SDES_CNAME: u8 = 1;

pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(crate) fn be24(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([0, b[at], b[at + 1], b[at + 2]])
}

pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// One RTCP packet of a compound packet.
#[derive(Debug, Clone)]
pub enum RtcpPacket<'a> {
    /// SR (RFC 3550 §6.4.1). Profile-specific extensions after the report blocks are ignored.
    SenderReport {
        /// Sender SSRC.
        ssrc: u32,
        /// 64-bit NTP timestamp.
        ntp: u64,
        /// RTP timestamp matching `ntp`.
        rtp_ts: u32,
        /// Sender's packet count.
        packet_count: u32,
        /// Sender's payload octet count.
        octet_count: u32,
        /// Reception report blocks.
        reports: ReportBlocks<'a>,
    },
    /// RR (RFC 3550 §6.4.2).
    ReceiverReport {
        /// Reporter SSRC.
        ssrc: u32,
        /// Reception report blocks.
        reports: ReportBlocks<'a>,
    },
    /// SDES body (chunks); walk it with [`sdes_items`].
    Sdes(&'a [u8]),
    /// BYE (RFC 3550 §6.6); an optional reason after the list is ignored.
    Bye {
        /// Sources leaving.
        ssrcs: SsrcList<'a>,
    },
    /// Generic NACK (RFC 4585 §6.2.1).
    Nack {
        /// Sender of the feedback.
        sender_ssrc: u32,
        /// Media source the lost packets belong to.
        media_ssrc: u32,
        /// Lost sequence numbers, expanded from PID/BLP pairs.
        pairs: NackPairs<'a>,
    },
    /// Picture loss indication (RFC 4585 §6.3.1).
    Pli {
        /// Sender of the feedback.
        sender_ssrc: u32,
        /// Media source that should send a keyframe.
        media_ssrc: u32,
    },
    /// Full intra request (RFC 5104 §4.3.1).
    Fir {
        /// Sender of the feedback.
        sender_ssrc: u32,
        /// `(media ssrc, command sequence number)` entries.
        entries: FirEntries<'a>,
    },
    /// Receiver estimated maximum bitrate (draft-alvestrand-rmcat-remb).
    Remb {
        /// Sender of the estimate.
        sender_ssrc: u32,
        /// Estimated bitrate (saturates at `u64::MAX`).
        bitrate_bps: u64,
        /// Media sources the estimate applies to.
        ssrcs: SsrcList<'a>,
    },
    /// Transport-wide congestion control feedback.
    TransportCc(TwccView<'a>),
    /// Any other packet type or feedback format (APP, XR, unknown feedback).
    Other {
        /// Packet type.
        pt: u8,
        /// Count / format field.
        fmt: u8,
        /// Everything after the 4-byte header, without padding.
        body: &'a [u8],
    },
}

/// Iterates the packets of a compound RTCP datagram. After a framing error (bad version,
/// length or padding) the rest of the datagram cannot be located, so the iterator yields
/// that error and ends; a packet whose body is too short for its type yields an error and
/// iteration continues with the next packet.
pub fn rtcp_packets(buf: &[u8]) -> RtcpIter<'_> {
    RtcpIter { rest: buf }
}

/// Iterator returned by [`rtcp_packets`].
#[derive(Debug, Clone)]
pub struct RtcpIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for RtcpIter<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match split_packet(self.rest) {
            Ok(f) => {
                self.rest = f.rest;
                Some(parse_body(f.pt, f.fmt, f.body))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// The first packet of a compound datagram, split off.
struct Framed<'a> {
    pt: u8,
    /// Count or feedback format field.
    fmt: u8,
    /// After the header, without padding.
    body: &'a [u8],
    /// The packets after this one.
    rest: &'a [u8],
}

fn split_packet(buf: &[u8]) -> Result<Framed<'_>, RtcpError> {
    if buf.len() < 4 {
        return Err(RtcpError::TooShort(buf.len()));
    }
    let version = buf[0] >> 6;
    if version != 2 {
        return Err(RtcpError::BadVersion(version));
    }
    let len = (usize::from(be16(buf, 2)) + 1) * 4;
    if len > buf.len() {
        return Err(RtcpError::LengthOverrun {
            declared: len,
            available: buf.len(),
        });
    }
    let (packet, rest) = buf.split_at(len);
    let mut body = &packet[4..];
    if buf[0] & 0x20 != 0 {
        // RFC 3550 §6.4.1: the last octet counts padding octets, itself included.
        let pad = packet[len - 1];
        if pad == 0 || usize::from(pad) > body.len() {
            return Err(RtcpError::BadPadding(pad));
        }
        body = &body[..body.len() - usize::from(pad)];
    }
    Ok(Framed {
        pt: buf[1],
        fmt: buf[0] & 0x1F,
        body,
        rest,
    })
}

fn parse_body(pt: u8, fmt: u8, body: &[u8]) -> Result<RtcpPacket<'_>, RtcpError> {
    let truncated = RtcpError::Truncated { pt, fmt };
    let need = |n: usize| {
        if body.len() < n {
            Err(truncated)
        } else {
            Ok(())
        }
    };
    let blocks = usize::from(fmt) * REPORT_BLOCK_LEN;
    Ok(match (pt, fmt) {
        (PT_SR, _) => {
            need(24 + blocks)?;
            RtcpPacket::SenderReport {
                ssrc: be32(body, 0),
                ntp: (u64::from(be32(body, 4)) << 32) | u64::from(be32(body, 8)),
                rtp_ts: be32(body, 12),
                packet_count: be32(body, 16),
                octet_count: be32(body, 20),
                reports: ReportBlocks {
                    data: &body[24..24 + blocks],
                },
            }
        }
        (PT_RR, _) => {
            need(4 + blocks)?;
            RtcpPacket::ReceiverReport {
                ssrc: be32(body, 0),
                reports: ReportBlocks {
                    data: &body[4..4 + blocks],
                },
            }
        }
        (PT_SDES, _) => RtcpPacket::Sdes(body),
        (PT_BYE, _) => {
            let n = usize::from(fmt) * 4;
            need(n)?;
            RtcpPacket::Bye {
                ssrcs: SsrcList { data: &body[..n] },
            }
        }
        (PT_RTPFB, FMT_NACK) => {
            need(8)?;
            let fci = &body[8..];
            RtcpPacket::Nack {
                sender_ssrc: be32(body, 0),
                media_ssrc: be32(body, 4),
                pairs: NackPairs {
                    data: &fci[..fci.len() / 4 * 4],
                    pos: 0,
                    bit: 0,
                },
            }
        }
        (PT_RTPFB, FMT_TWCC) => RtcpPacket::TransportCc(TwccView::parse(body)?),
        (PT_PSFB, FMT_PLI) => {
            need(8)?;
            RtcpPacket::Pli {
                sender_ssrc: be32(body, 0),
                media_ssrc: be32(body, 4),
            }
        }
        (PT_PSFB, FMT_FIR) => {
            need(8)?;
            let fci = &body[8..];
            RtcpPacket::Fir {
                sender_ssrc: be32(body, 0),
                entries: FirEntries {
                    data: &fci[..fci.len() / 8 * 8],
                },
            }
        }
        (PT_PSFB, FMT_AFB) if body.get(8..12) == Some(b"REMB") => {
            need(16)?;
            let n = usize::from(body[12]) * 4;
            need(16 + n)?;
            let exp = u32::from(body[13] >> 2);
            let mantissa = be24(body, 13) & 0x3_FFFF;
            let bitrate = u128::from(mantissa) << exp;
            RtcpPacket::Remb {
                sender_ssrc: be32(body, 0),
                bitrate_bps: u64::try_from(bitrate).unwrap_or(u64::MAX),
                ssrcs: SsrcList {
                    data: &body[16..16 + n],
                },
            }
        }
        _ => RtcpPacket::Other { pt, fmt, body },
    })
}

const REPORT_BLOCK_LEN: usize = 24;

/// A reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// Source this block reports on.
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative number of packets lost, 24-bit signed (duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the last SR's NTP timestamp.
    pub lsr: u32,
    /// Delay since the last SR in 1/65536 s.
    pub dlsr: u32,
}

impl ReportBlock {
    fn parse(b: &[u8]) -> Self {
        // Sign-extend the 24-bit cumulative loss.
        let lost = ((be32(b, 4) << 8) as i32) >> 8;
        Self {
            ssrc: be32(b, 0),
            fraction_lost: b[4],
            cumulative_lost: lost,
            highest_seq: be32(b, 8),
            jitter: be32(b, 12),
            lsr: be32(b, 16),
            dlsr: be32(b, 20),
        }
    }

    pub(crate) fn write(&self, out: &mut [u8]) {
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32 & 0xFF_FFFF;
        out[0..4].copy_from_slice(&self.ssrc.to_be_bytes());
        out[4..8].copy_from_slice(&((u32::from(self.fraction_lost) << 24) | lost).to_be_bytes());
        out[8..12].copy_from_slice(&self.highest_seq.to_be_bytes());
        out[12..16].copy_from_slice(&self.jitter.to_be_bytes());
        out[16..20].copy_from_slice(&self.lsr.to_be_bytes());
        out[20..24].copy_from_slice(&self.dlsr.to_be_bytes());
    }
}

/// The report blocks of an SR or RR.
#[derive(Debug, Clone, Copy)]
pub struct ReportBlocks<'a> {
    data: &'a [u8],
}

impl<'a> ReportBlocks<'a> {
    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.data.len() / REPORT_BLOCK_LEN
    }

    /// Whether there are no blocks.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The blocks in order.
    pub fn iter(&self) -> impl Iterator<Item = ReportBlock> + 'a {
        self.data
            .chunks_exact(REPORT_BLOCK_LEN)
            .map(ReportBlock::parse)
    }
}

impl<'a> IntoIterator for ReportBlocks<'a> {
    type Item = ReportBlock;
    type IntoIter = core::iter::Map<core::slice::ChunksExact<'a, u8>, fn(&[u8]) -> ReportBlock>;

    fn into_iter(self) -> Self::IntoIter {
        self.data
            .chunks_exact(REPORT_BLOCK_LEN)
            .map(ReportBlock::parse as fn(&[u8]) -> ReportBlock)
    }
}

/// A list of 32-bit SSRCs (BYE, REMB).
#[derive(Debug, Clone, Copy)]
pub struct SsrcList<'a> {
    data: &'a [u8],
}

impl<'a> SsrcList<'a> {
    /// The raw big-endian bytes.
    pub fn raw(&self) -> &'a [u8] {
        self.data
    }

    /// Number of SSRCs.
    pub fn len(&self) -> usize {
        self.data.len() / 4
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The SSRCs in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        self.data
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }
}

/// Lost sequence numbers of a generic NACK: each PID followed by PID+i for every set bit i-1
/// of its BLP (RFC 4585 §6.2.1).
#[derive(Debug, Clone)]
pub struct NackPairs<'a> {
    data: &'a [u8],
    pos: usize,
    /// 0: the PID itself is next; 1..=16: the next BLP bit to look at.
    bit: u16,
}

impl<'a> NackPairs<'a> {
    /// The raw `(PID, BLP)` pairs.
    pub fn pairs(&self) -> impl Iterator<Item = (u16, u16)> + 'a {
        self.data.chunks_exact(4).map(|c| (be16(c, 0), be16(c, 2)))
    }
}

impl Iterator for NackPairs<'_> {
    type Item = u16;

    fn next(&mut self) -> Option<u16> {
        while self.pos + 4 <= self.data.len() {
            let pid = be16(self.data, self.pos);
            if self.bit == 0 {
                self.bit = 1;
                return Some(pid);
            }
            let blp = be16(self.data, self.pos + 2);
            while self.bit <= 16 {
                let b = self.bit;
                self.bit += 1;
                if blp & (1 << (b - 1)) != 0 {
                    return Some(pid.wrapping_add(b));
                }
            }
            self.pos += 4;
            self.bit = 0;
        }
        None
    }
}

/// FIR entries `(media ssrc, command sequence number)` (RFC 5104 §4.3.1.1).
#[derive(Debug, Clone, Copy)]
pub struct FirEntries<'a> {
    data: &'a [u8],
}

impl<'a> FirEntries<'a> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.data.len() / 8
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u8)> + 'a {
        self.data.chunks_exact(8).map(|c| (be32(c, 0), c[4]))
    }
}

/// One SDES item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesItem<'a> {
    /// Source the chunk describes.
    pub ssrc: u32,
    /// Item type (1 = CNAME).
    pub kind: u8,
    /// Item text.
    pub value: &'a [u8],
}

/// Walks the chunks of an SDES body (RFC 3550 §6.5) item by item. Stops at the first
/// malformed chunk.
pub fn sdes_items(body: &[u8]) -> SdesItems<'_> {
    SdesItems {
        body,
        pos: 0,
        ssrc: None,
    }
}

/// Iterator returned by [`sdes_items`].
#[derive(Debug, Clone)]
pub struct SdesItems<'a> {
    body: &'a [u8],
    pos: usize,
    /// SSRC of the chunk being walked, or None between chunks.
    ssrc: Option<u32>,
}

impl<'a> Iterator for SdesItems<'a> {
    type Item = SdesItem<'a>;

    fn next(&mut self) -> Option<SdesItem<'a>> {
        loop {
            let b = self.body;
            let Some(ssrc) = self.ssrc else {
                if self.pos + 4 > b.len() {
                    self.pos = b.len();
                    return None;
                }
                self.ssrc = Some(be32(b, self.pos));
                self.pos += 4;
                continue;
            };
            let &kind = b.get(self.pos)?;
            if kind == 0 {
                // End of the item list; the chunk is padded to a 32-bit boundary (the body
                // starts 4 bytes into the packet, so body offsets share the alignment).
                self.ssrc = None;
                self.pos = (self.pos + 1).div_ceil(4) * 4;
                continue;
            }
            let Some(&len) = b.get(self.pos + 1) else {
                self.pos = b.len();
                return None;
            };
            let start = self.pos + 2;
            let end = start + usize::from(len);
            if end > b.len() {
                self.pos = b.len();
                return None;
            }
            self.pos = end;
            return Some(SdesItem {
                ssrc,
                kind,
                value: &b[start..end],
            });
        }
    }
}

#[cfg(test)]
mod tests;
