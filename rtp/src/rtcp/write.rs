//! RTCP writers. Each writes one packet at the start of `out` and returns its length, or
//! fails without a partial write when `out` is too small.

use super::{
    FMT_AFB, FMT_FIR, FMT_NACK, FMT_PLI, PT_BYE, PT_PSFB, PT_RR, PT_RTPFB, PT_SDES, PT_SR,
    REPORT_BLOCK_LEN, ReportBlock, SDES_CNAME,
};
use crate::error::RtcpError;

/// Largest RTCP packet the 16-bit length field can describe.
const MAX_PACKET_LEN: usize = (u16::MAX as usize + 1) * 4;

pub(crate) fn ensure(out: &[u8], needed: usize) -> Result<(), RtcpError> {
    if out.len() < needed {
        Err(RtcpError::BufferTooSmall {
            needed,
            have: out.len(),
        })
    } else {
        Ok(())
    }
}

/// Writes the common header for a packet of `total` bytes (a multiple of 4, at most
/// [`MAX_PACKET_LEN`]).
pub(crate) fn put_header(out: &mut [u8], padding: bool, count: u8, pt: u8, total: usize) {
    out[0] = 0x80 | (u8::from(padding) << 5) | (count & 0x1F);
    out[1] = pt;
    // Callers keep total within MAX_PACKET_LEN, so the word count fits 16 bits.
    out[2..4].copy_from_slice(&((total / 4 - 1) as u16).to_be_bytes());
}

fn put32(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Generic NACK (RFC 4585 §6.2.1) for the lost sequence numbers, packed into PID/BLP pairs:
/// each number within 16 after the current PID sets a BLP bit, any other starts a new pair.
/// Input in ascending sequence order gives the fewest pairs; any order is correct.
pub fn write_nack(
    out: &mut [u8],
    sender_ssrc: u32,
    media_ssrc: u32,
    lost: &[u16],
) -> Result<usize, RtcpError> {
    if lost.is_empty() {
        return Err(RtcpError::Empty);
    }
    let pairs = nack_pairs(lost).count();
    let total = 12 + 4 * pairs;
    if total > MAX_PACKET_LEN {
        return Err(RtcpError::TooManyItems(lost.len()));
    }
    ensure(out, total)?;
    put_header(out, false, FMT_NACK, PT_RTPFB, total);
    put32(out, 4, sender_ssrc);
    put32(out, 8, media_ssrc);
    for (i, (pid, blp)) in nack_pairs(lost).enumerate() {
        let at = 12 + 4 * i;
        out[at..at + 2].copy_from_slice(&pid.to_be_bytes());
        out[at + 2..at + 4].copy_from_slice(&blp.to_be_bytes());
    }
    Ok(total)
}

/// Groups lost sequence numbers into (PID, BLP) pairs without allocating.
fn nack_pairs(lost: &[u16]) -> impl Iterator<Item = (u16, u16)> + '_ {
    let mut i = 0;
    core::iter::from_fn(move || {
        let pid = *lost.get(i)?;
        let mut blp = 0u16;
        i += 1;
        while let Some(&s) = lost.get(i) {
            let d = s.wrapping_sub(pid);
            match d {
                0 => {}
                1..=16 => blp |= 1 << (d - 1),
                _ => break,
            }
            i += 1;
        }
        Some((pid, blp))
    })
}

/// Picture loss indication (RFC 4585 §6.3.1), 12 bytes.
pub fn write_pli(out: &mut [u8], sender_ssrc: u32, media_ssrc: u32) -> Result<usize, RtcpError> {
    ensure(out, 12)?;
    put_header(out, false, FMT_PLI, PT_PSFB, 12);
    put32(out, 4, sender_ssrc);
    put32(out, 8, media_ssrc);
    Ok(12)
}

/// Full intra request (RFC 5104 §4.3.1) with one entry for `media_ssrc`, 20 bytes. The
/// header's media source field is 0 as the RFC requires; the target is in the entry.
pub fn write_fir(
    out: &mut [u8],
    sender_ssrc: u32,
    media_ssrc: u32,
    seq_nr: u8,
) -> Result<usize, RtcpError> {
    ensure(out, 20)?;
    put_header(out, false, FMT_FIR, PT_PSFB, 20);
    put32(out, 4, sender_ssrc);
    put32(out, 8, 0);
    put32(out, 12, media_ssrc);
    out[16] = seq_nr;
    out[17..20].fill(0);
    Ok(20)
}

/// Sender report (RFC 3550 §6.4.1) with up to 31 report blocks.
pub fn write_sender_report(
    out: &mut [u8],
    ssrc: u32,
    ntp: u64,
    rtp_ts: u32,
    packets: u32,
    octets: u32,
    reports: &[ReportBlock],
) -> Result<usize, RtcpError> {
    if reports.len() > 31 {
        return Err(RtcpError::TooManyItems(reports.len()));
    }
    let total = 28 + REPORT_BLOCK_LEN * reports.len();
    ensure(out, total)?;
    // At most 31, checked above.
    put_header(out, false, reports.len() as u8, PT_SR, total);
    put32(out, 4, ssrc);
    out[8..16].copy_from_slice(&ntp.to_be_bytes());
    put32(out, 16, rtp_ts);
    put32(out, 20, packets);
    put32(out, 24, octets);
    for (i, r) in reports.iter().enumerate() {
        let at = 28 + REPORT_BLOCK_LEN * i;
        r.write(&mut out[at..at + REPORT_BLOCK_LEN]);
    }
    Ok(total)
}

/// Receiver report (RFC 3550 §6.4.2) with up to 31 report blocks (zero is allowed).
pub fn write_receiver_report(
    out: &mut [u8],
    ssrc: u32,
    reports: &[ReportBlock],
) -> Result<usize, RtcpError> {
    if reports.len() > 31 {
        return Err(RtcpError::TooManyItems(reports.len()));
    }
    let total = 8 + REPORT_BLOCK_LEN * reports.len();
    ensure(out, total)?;
    // At most 31, checked above.
    put_header(out, false, reports.len() as u8, PT_RR, total);
    put32(out, 4, ssrc);
    for (i, r) in reports.iter().enumerate() {
        let at = 8 + REPORT_BLOCK_LEN * i;
        r.write(&mut out[at..at + REPORT_BLOCK_LEN]);
    }
    Ok(total)
}

/// REMB (draft-alvestrand-rmcat-remb §2.2) for up to 255 media sources. The bitrate is
/// encoded as an 18-bit mantissa and 6-bit exponent, rounded down.
pub fn write_remb(
    out: &mut [u8],
    sender_ssrc: u32,
    bitrate_bps: u64,
    ssrcs: &[u32],
) -> Result<usize, RtcpError> {
    if ssrcs.len() > 255 {
        return Err(RtcpError::TooManyItems(ssrcs.len()));
    }
    let total = 20 + 4 * ssrcs.len();
    ensure(out, total)?;
    let mut exp = 0u32;
    while bitrate_bps >> exp >= 1 << 18 {
        exp += 1;
    }
    let mantissa = (bitrate_bps >> exp) as u32;
    put_header(out, false, FMT_AFB, PT_PSFB, total);
    put32(out, 4, sender_ssrc);
    put32(out, 8, 0);
    out[12..16].copy_from_slice(b"REMB");
    // At most 255, checked above; exp <= 46 since bitrate < 2^64.
    out[16] = ssrcs.len() as u8;
    out[17] = ((exp as u8) << 2) | (mantissa >> 16) as u8;
    out[18..20].copy_from_slice(&(mantissa as u16).to_be_bytes());
    for (i, &s) in ssrcs.iter().enumerate() {
        put32(out, 20 + 4 * i, s);
    }
    Ok(total)
}

/// SDES with one chunk holding a CNAME item (RFC 3550 §6.5.1).
pub fn write_sdes_cname(out: &mut [u8], ssrc: u32, cname: &str) -> Result<usize, RtcpError> {
    let text = cname.as_bytes();
    if text.len() > 255 {
        return Err(RtcpError::TextTooLong(text.len()));
    }
    // Chunk: SSRC, type, length, text, then at least one null octet ending the item list,
    // padded to a 32-bit boundary.
    let chunk = (4 + 2 + text.len() + 1).div_ceil(4) * 4;
    let total = 4 + chunk;
    ensure(out, total)?;
    put_header(out, false, 1, PT_SDES, total);
    put32(out, 4, ssrc);
    out[8] = SDES_CNAME;
    // At most 255, checked above.
    out[9] = text.len() as u8;
    out[10..10 + text.len()].copy_from_slice(text);
    out[10 + text.len()..total].fill(0);
    Ok(total)
}

/// BYE (RFC 3550 §6.6) for up to 31 sources, without a reason.
pub fn write_bye(out: &mut [u8], ssrcs: &[u32]) -> Result<usize, RtcpError> {
    if ssrcs.len() > 31 {
        return Err(RtcpError::TooManyItems(ssrcs.len()));
    }
    let total = 4 + 4 * ssrcs.len();
    ensure(out, total)?;
    // At most 31, checked above.
    put_header(out, false, ssrcs.len() as u8, PT_BYE, total);
    for (i, &s) in ssrcs.iter().enumerate() {
        put32(out, 4 + 4 * i, s);
    }
    Ok(total)
}
