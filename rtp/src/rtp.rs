//! The RTP fixed header and header extensions (RFC 3550 §5.1, RFC 8285): a borrowed view,
//! in-place rewriting of an accepted packet, and a header writer.

use crate::error::RtpError;

/// Length of the fixed RTP header.
pub const FIXED_HEADER_LEN: usize = 12;
/// "defined by profile" value of the one-byte header extension form (RFC 8285 §4.2).
pub const ONE_BYTE_PROFILE: u16 = 0xBEDE;
/// "defined by profile" value of the two-byte form; the low 4 bits are application bits
/// (RFC 8285 §4.3).
pub const TWO_BYTE_PROFILE: u16 = 0x1000;

/// Which RFC 8285 element format a header extension block uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionForm {
    /// `0xBEDE`: 4-bit id, 4-bit length-minus-one.
    OneByte,
    /// `0x100X`: 8-bit id, 8-bit length.
    TwoByte,
}

impl ExtensionForm {
    fn from_profile(profile: u16) -> Option<Self> {
        if profile == ONE_BYTE_PROFILE {
            Some(Self::OneByte)
        } else if profile & 0xFFF0 == TWO_BYTE_PROFILE {
            Some(Self::TwoByte)
        } else {
            None
        }
    }

    /// Whether `id` can name an element in this form (one-byte: 1..=14, 15 is reserved;
    /// two-byte: 1..=255).
    pub fn allows_id(self, id: u8) -> bool {
        match self {
            Self::OneByte => (1..=14).contains(&id),
            Self::TwoByte => id != 0,
        }
    }
}

/// A parsed, borrowed RTP packet. Parsing checks every length against the buffer once, so
/// the accessors never fail and never panic.
#[derive(Debug, Clone, Copy)]
pub struct RtpView<'a> {
    buf: &'a [u8],
    header_len: usize,
    payload_end: usize,
    ext_profile: u16,
    ext_start: usize,
    ext_end: usize,
    has_ext: bool,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<'a> RtpView<'a> {
    /// Parses an RTP packet: version 2, CSRC list, header extension and padding must all fit
    /// the buffer. The payload may be empty.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        if buf.len() < FIXED_HEADER_LEN {
            return Err(RtpError::TooShort(buf.len()));
        }
        let version = buf[0] >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let csrc_count = buf[0] & 0x0F;
        let mut off = FIXED_HEADER_LEN + 4 * usize::from(csrc_count);
        if off > buf.len() {
            return Err(RtpError::CsrcOverrun(csrc_count));
        }
        let has_ext = buf[0] & 0x10 != 0;
        let (mut ext_profile, mut ext_start, mut ext_end) = (0, 0, 0);
        if has_ext {
            if off + 4 > buf.len() {
                return Err(RtpError::ExtensionOverrun);
            }
            ext_profile = be16(buf, off);
            let words = usize::from(be16(buf, off + 2));
            ext_start = off + 4;
            ext_end = ext_start + 4 * words;
            if ext_end > buf.len() {
                return Err(RtpError::ExtensionOverrun);
            }
            off = ext_end;
        }
        let mut payload_end = buf.len();
        if buf[0] & 0x20 != 0 {
            // RFC 3550 §5.1: the last octet counts the padding octets, itself included.
            let pad = buf[buf.len() - 1];
            if pad == 0 || usize::from(pad) > buf.len() - off {
                return Err(RtpError::BadPadding(pad));
            }
            payload_end -= usize::from(pad);
        }
        Ok(Self {
            buf,
            header_len: off,
            payload_end,
            ext_profile,
            ext_start,
            ext_end,
            has_ext,
        })
    }

    /// The whole packet as given to [`RtpView::parse`].
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The M bit.
    pub fn marker(&self) -> bool {
        self.buf[1] & 0x80 != 0
    }

    /// The 7-bit payload type.
    pub fn payload_type(&self) -> u8 {
        self.buf[1] & 0x7F
    }

    /// The 16-bit sequence number.
    pub fn sequence(&self) -> u16 {
        be16(self.buf, 2)
    }

    /// The RTP timestamp.
    pub fn timestamp(&self) -> u32 {
        be32(self.buf, 4)
    }

    /// The synchronisation source.
    pub fn ssrc(&self) -> u32 {
        be32(self.buf, 8)
    }

    /// Number of contributing sources.
    pub fn csrc_count(&self) -> usize {
        usize::from(self.buf[0] & 0x0F)
    }

    /// The contributing sources in order.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        let end = FIXED_HEADER_LEN + 4 * self.csrc_count();
        self.buf[FIXED_HEADER_LEN..end]
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// Bytes before the payload: fixed header, CSRCs and header extension.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// The payload without padding.
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len..self.payload_end]
    }

    /// Number of padding bytes at the end (0 when the P bit is clear).
    pub fn padding_len(&self) -> usize {
        self.buf.len() - self.payload_end
    }

    /// The header extension's "defined by profile" field and raw data, if the X bit is set.
    pub fn extension_block(&self) -> Option<(u16, &'a [u8])> {
        self.has_ext
            .then(|| (self.ext_profile, &self.buf[self.ext_start..self.ext_end]))
    }

    /// The RFC 8285 form of the extension block, if the X bit is set and the profile is one
    /// of the two RFC 8285 forms.
    pub fn extension_form(&self) -> Option<ExtensionForm> {
        if self.has_ext {
            ExtensionForm::from_profile(self.ext_profile)
        } else {
            None
        }
    }

    /// Iterates the RFC 8285 elements as `(id, data)`. Iteration stops at the first
    /// malformed element or at the reserved one-byte id 15.
    pub fn extensions(&self) -> Extensions<'a> {
        match self.extension_form() {
            Some(form) => Extensions {
                block: &self.buf[self.ext_start..self.ext_end],
                pos: 0,
                form,
            },
            None => Extensions {
                block: &[],
                pos: 0,
                form: ExtensionForm::OneByte,
            },
        }
    }

    /// The data of the first element with this id, in either RFC 8285 form.
    pub fn extension(&self, id: u8) -> Option<&'a [u8]> {
        if id == 0 {
            return None;
        }
        self.extensions().find(|&(i, _)| i == id).map(|(_, d)| d)
    }

    /// Absolute offset range of the first element with this id: (offset of the element's
    /// id byte, data start, data end).
    fn extension_location(&self, id: u8) -> Option<(usize, usize, usize)> {
        if id == 0 {
            return None;
        }
        let mut it = self.extensions();
        while let Some(el) = it.next_element() {
            if el.id == id {
                let base = self.ext_start;
                return Some((base + el.at, base + el.data_start, base + el.data_end));
            }
        }
        None
    }
}

/// Iterator over RFC 8285 header extension elements, yielding `(id, data)`.
#[derive(Debug, Clone)]
pub struct Extensions<'a> {
    block: &'a [u8],
    pos: usize,
    form: ExtensionForm,
}

struct Element {
    at: usize,
    id: u8,
    data_start: usize,
    data_end: usize,
}

impl Extensions<'_> {
    fn next_element(&mut self) -> Option<Element> {
        let b = self.block;
        while self.pos < b.len() {
            let at = self.pos;
            let first = b[at];
            if first == 0 {
                // Padding byte between elements (RFC 8285 §4.2, §4.3).
                self.pos += 1;
                continue;
            }
            let (id, data_start, len) = match self.form {
                ExtensionForm::OneByte => {
                    let id = first >> 4;
                    if id == 15 {
                        // Reserved: stop processing the block (RFC 8285 §4.2).
                        break;
                    }
                    (id, at + 1, usize::from(first & 0x0F) + 1)
                }
                ExtensionForm::TwoByte => {
                    let Some(&len) = b.get(at + 1) else { break };
                    (first, at + 2, usize::from(len))
                }
            };
            let data_end = data_start + len;
            if data_end > b.len() {
                break;
            }
            self.pos = data_end;
            return Some(Element {
                at,
                id,
                data_start,
                data_end,
            });
        }
        self.pos = b.len();
        None
    }
}

impl<'a> Iterator for Extensions<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let el = self.next_element()?;
        Some((el.id, &self.block[el.data_start..el.data_end]))
    }
}

/// RFC 5761 §4: an RTCP packet on a muxed port has a second byte in 192..=223 (RTCP packet
/// types 192..=223), which no dynamic or static RTP payload type with marker can reach when
/// RTP payload types 64..=95 are avoided. Also requires version 2.
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 2 && buf[0] >> 6 == 2 && (192..=223).contains(&buf[1])
}

// In-place rewriting. These take a packet that `RtpView::parse` accepted; on a buffer
// shorter than the fixed header they do nothing rather than panic.

/// Overwrites the sequence number.
pub fn set_sequence(buf: &mut [u8], v: u16) {
    if let Some(b) = buf.get_mut(2..4) {
        b.copy_from_slice(&v.to_be_bytes());
    }
}

/// Overwrites the timestamp.
pub fn set_timestamp(buf: &mut [u8], v: u32) {
    if let Some(b) = buf.get_mut(4..8) {
        b.copy_from_slice(&v.to_be_bytes());
    }
}

/// Overwrites the SSRC.
pub fn set_ssrc(buf: &mut [u8], v: u32) {
    if let Some(b) = buf.get_mut(8..12) {
        b.copy_from_slice(&v.to_be_bytes());
    }
}

/// Overwrites the payload type (low 7 bits of `pt`), keeping the marker.
pub fn set_payload_type(buf: &mut [u8], pt: u8) {
    if let Some(b) = buf.get_mut(1) {
        *b = (*b & 0x80) | (pt & 0x7F);
    }
}

/// Sets or clears the marker bit, keeping the payload type.
pub fn set_marker(buf: &mut [u8], m: bool) {
    if let Some(b) = buf.get_mut(1) {
        *b = (*b & 0x7F) | (u8::from(m) << 7);
    }
}

/// Renames the first header extension element with id `id` to `new_id`, in place (both
/// RFC 8285 forms). Returns false, changing nothing, if the packet does not parse, has no such
/// element, or `new_id` is not valid in the packet's form (one-byte: 1..=14).
pub fn rewrite_extension(buf: &mut [u8], id: u8, new_id: u8) -> bool {
    let Ok(view) = RtpView::parse(buf) else {
        return false;
    };
    let Some(form) = view.extension_form() else {
        return false;
    };
    if !form.allows_id(new_id) {
        return false;
    }
    let Some((at, _, _)) = view.extension_location(id) else {
        return false;
    };
    match form {
        ExtensionForm::OneByte => buf[at] = (new_id << 4) | (buf[at] & 0x0F),
        ExtensionForm::TwoByte => buf[at] = new_id,
    }
    true
}

/// Mutable access to the data of the first header extension element with id `id`, for
/// rewriting values in place (a transport-wide sequence number, abs-send-time).
pub fn extension_mut(buf: &mut [u8], id: u8) -> Option<&mut [u8]> {
    let (_, start, end) = RtpView::parse(buf).ok()?.extension_location(id)?;
    Some(&mut buf[start..end])
}

/// Writes RTP headers into caller buffers.
#[derive(Debug, Clone, Copy, Default)]
pub struct RtpWriter;

impl RtpWriter {
    /// Writes a version-2 header without CSRCs or padding, followed by the given header
    /// extension elements, and returns its length (where the payload goes).
    ///
    /// Elements use the one-byte form when every id is 1..=14 and every length 1..=16, and
    /// the two-byte form otherwise (ids 1..=255, lengths 0..=255). The block is zero-padded
    /// to a 32-bit boundary. With no elements the X bit is clear.
    pub fn write_header(
        out: &mut [u8],
        marker: bool,
        pt: u8,
        seq: u16,
        ts: u32,
        ssrc: u32,
        exts: &[(u8, &[u8])],
    ) -> Result<usize, RtpError> {
        let one_byte = exts
            .iter()
            .all(|&(id, d)| (1..=14).contains(&id) && (1..=16).contains(&d.len()));
        let mut ext_len = 0;
        for &(id, d) in exts {
            if id == 0 {
                return Err(RtpError::BadExtensionId(id));
            }
            if d.len() > 255 {
                return Err(RtpError::ExtensionTooLong(d.len()));
            }
            ext_len += d.len() + if one_byte { 1 } else { 2 };
        }
        let ext_padded = ext_len.div_ceil(4) * 4;
        if ext_padded / 4 > usize::from(u16::MAX) {
            return Err(RtpError::ExtensionTooLong(ext_len));
        }
        let total = FIXED_HEADER_LEN + if exts.is_empty() { 0 } else { 4 + ext_padded };
        if out.len() < total {
            return Err(RtpError::BufferTooSmall {
                needed: total,
                have: out.len(),
            });
        }
        let x = if exts.is_empty() { 0 } else { 0x10 };
        out[0] = 0x80 | x;
        out[1] = (u8::from(marker) << 7) | (pt & 0x7F);
        out[2..4].copy_from_slice(&seq.to_be_bytes());
        out[4..8].copy_from_slice(&ts.to_be_bytes());
        out[8..12].copy_from_slice(&ssrc.to_be_bytes());
        if exts.is_empty() {
            return Ok(total);
        }
        let profile = if one_byte {
            ONE_BYTE_PROFILE
        } else {
            TWO_BYTE_PROFILE
        };
        out[12..14].copy_from_slice(&profile.to_be_bytes());
        // Checked above: ext_padded / 4 fits 16 bits.
        out[14..16].copy_from_slice(&((ext_padded / 4) as u16).to_be_bytes());
        let mut at = 16;
        for &(id, d) in exts {
            if one_byte {
                // 1..=16 checked above, so len - 1 fits 4 bits.
                out[at] = (id << 4) | (d.len() - 1) as u8;
                at += 1;
            } else {
                out[at] = id;
                // <= 255 checked above.
                out[at + 1] = d.len() as u8;
                at += 2;
            }
            out[at..at + d.len()].copy_from_slice(d);
            at += d.len();
        }
        out[at..total].fill(0);
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// V=2, P=1, X=1, CC=2, M=1, PT=96, seq 0x1234, ts 0xDEADBEEF, ssrc 0x01020304,
    /// CSRCs 0xAABBCCDD and 0x11223344, one-byte extensions (id 1 len 1, padding byte, id 3
    /// len 2), payload "hello", 3 bytes of padding.
    fn sample() -> Vec<u8> {
        let mut p = vec![
            0xB2, 0xE0, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF, 0x01, 0x02, 0x03, 0x04, // fixed
            0xAA, 0xBB, 0xCC, 0xDD, 0x11, 0x22, 0x33, 0x44, // csrcs
            0xBE, 0xDE, 0x00, 0x02, // one-byte profile, 2 words
            0x10, 0x7F, 0x00, 0x31, 0xAB, 0xCD, 0x00, 0x00, // elements
        ];
        p.extend_from_slice(b"hello");
        p.extend_from_slice(&[0, 0, 3]);
        p
    }

    #[test]
    fn parses_full_header() {
        let p = sample();
        let v = RtpView::parse(&p).unwrap();
        assert!(v.marker());
        assert_eq!(v.payload_type(), 96);
        assert_eq!(v.sequence(), 0x1234);
        assert_eq!(v.timestamp(), 0xDEAD_BEEF);
        assert_eq!(v.ssrc(), 0x0102_0304);
        assert_eq!(v.csrcs().collect::<Vec<_>>(), [0xAABB_CCDD, 0x1122_3344]);
        assert_eq!(v.header_len(), 32);
        assert_eq!(v.payload(), b"hello");
        assert_eq!(v.padding_len(), 3);
        assert_eq!(v.extension_form(), Some(ExtensionForm::OneByte));
        assert_eq!(v.extension(1), Some(&[0x7F][..]));
        assert_eq!(v.extension(3), Some(&[0xAB, 0xCD][..]));
        assert_eq!(v.extension(2), None);
        assert_eq!(v.extension(0), None);
        assert_eq!(v.extensions().count(), 2);
    }

    #[test]
    fn parses_minimal_header() {
        let p = [0x80, 0x6F, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 9, 9];
        let v = RtpView::parse(&p).unwrap();
        assert!(!v.marker());
        assert_eq!(v.payload_type(), 111);
        assert_eq!(v.header_len(), 12);
        assert_eq!(v.payload(), &[9, 9]);
        assert_eq!(v.padding_len(), 0);
        assert!(v.extension_block().is_none());
        assert_eq!(v.extensions().count(), 0);
        assert_eq!(v.extension(1), None);
    }

    #[test]
    fn parses_two_byte_extensions() {
        let mut p = vec![0x90, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        // 0x1000 profile, 3 words: id 20 len 0, id 5 len 3, padding, id 200 len 2
        p.extend_from_slice(&[0x10, 0x00, 0x00, 0x03]);
        p.extend_from_slice(&[20, 0, 5, 3, b'a', b'b', b'c', 0, 200, 2, 7, 8]);
        p.push(0x55);
        let v = RtpView::parse(&p).unwrap();
        assert_eq!(v.extension_form(), Some(ExtensionForm::TwoByte));
        assert_eq!(v.extension(20), Some(&[][..]));
        assert_eq!(v.extension(5), Some(&b"abc"[..]));
        assert_eq!(v.extension(200), Some(&[7, 8][..]));
        assert_eq!(v.payload(), &[0x55]);
    }

    #[test]
    fn one_byte_id_15_stops_iteration() {
        let mut p = vec![0x90, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        p.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, 1, 0xF0, 0x20]);
        let v = RtpView::parse(&p).unwrap();
        assert_eq!(v.extension(1), Some(&[1][..]));
        assert_eq!(v.extension(2), None);
    }

    #[test]
    fn unknown_profile_has_no_elements() {
        let mut p = vec![0x90, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        p.extend_from_slice(&[0x12, 0x34, 0, 1, 0x10, 1, 0, 0]);
        let v = RtpView::parse(&p).unwrap();
        assert_eq!(v.extension_form(), None);
        assert_eq!(v.extension(1), None);
        assert_eq!(v.extension_block(), Some((0x1234, &[0x10, 1, 0, 0][..])));
        assert_eq!(v.header_len(), 20);
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(
            RtpView::parse(&[0x80; 11]).unwrap_err(),
            RtpError::TooShort(11)
        );
        let mut p = [0u8; 12];
        p[0] = 0x40;
        assert_eq!(RtpView::parse(&p).unwrap_err(), RtpError::BadVersion(1));
        p[0] = 0x81;
        assert_eq!(RtpView::parse(&p).unwrap_err(), RtpError::CsrcOverrun(1));
        p[0] = 0x90;
        assert_eq!(RtpView::parse(&p).unwrap_err(), RtpError::ExtensionOverrun);
        let mut q = vec![
            0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xBE, 0xDE, 0, 2, 0, 0, 0, 0,
        ];
        assert_eq!(RtpView::parse(&q).unwrap_err(), RtpError::ExtensionOverrun);
        q[15] = 1;
        assert!(RtpView::parse(&q).is_ok());
        // Padding: zero count, and count larger than what follows the header.
        let mut r = vec![0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        assert_eq!(RtpView::parse(&r).unwrap_err(), RtpError::BadPadding(0));
        r[13] = 3;
        assert_eq!(RtpView::parse(&r).unwrap_err(), RtpError::BadPadding(3));
        r[13] = 2;
        let v = RtpView::parse(&r).unwrap();
        assert_eq!(v.payload(), &[] as &[u8]);
        assert_eq!(v.padding_len(), 2);
        // P bit on a header-only packet has no room for the count.
        let s = [0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
        assert!(RtpView::parse(&s).is_err());
    }

    #[test]
    fn truncated_element_stops_iteration() {
        let mut p = vec![0x90, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        // id 1 len 1 ok, then id 2 claims 4 bytes with only 2 left in the block.
        p.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, 9, 0x23, 1]);
        let v = RtpView::parse(&p).unwrap();
        assert_eq!(v.extensions().collect::<Vec<_>>(), [(1, &[9][..])]);
        // Two-byte element whose length byte is missing.
        let mut q = vec![0x90, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        q.extend_from_slice(&[0x10, 0x00, 0, 1, 0, 0, 0, 7]);
        assert_eq!(RtpView::parse(&q).unwrap().extensions().count(), 0);
    }

    #[test]
    fn rtcp_demux() {
        assert!(is_rtcp(&[0x80, 200, 0, 6]));
        assert!(is_rtcp(&[0x81, 205, 0, 2]));
        assert!(is_rtcp(&[0x81, 223]));
        assert!(!is_rtcp(&[0x80, 224]));
        assert!(!is_rtcp(&[0x80, 191]));
        assert!(!is_rtcp(&[0x80, 96]));
        assert!(!is_rtcp(&[0x80, 0xE0]));
        assert!(!is_rtcp(&[0x40, 200]));
        assert!(!is_rtcp(&[0x80]));
    }

    #[test]
    fn setters_then_reparse() {
        let mut p = sample();
        set_sequence(&mut p, 0xFFFF);
        set_timestamp(&mut p, 7);
        set_ssrc(&mut p, 0xCAFE_BABE);
        set_payload_type(&mut p, 0xFF);
        set_marker(&mut p, false);
        let v = RtpView::parse(&p).unwrap();
        assert_eq!(v.sequence(), 0xFFFF);
        assert_eq!(v.timestamp(), 7);
        assert_eq!(v.ssrc(), 0xCAFE_BABE);
        assert_eq!(v.payload_type(), 127);
        assert!(!v.marker());
        assert_eq!(v.payload(), b"hello");
        set_payload_type(&mut p, 100);
        set_marker(&mut p, true);
        let v = RtpView::parse(&p).unwrap();
        assert_eq!(v.payload_type(), 100);
        assert!(v.marker());
        assert_eq!(v.csrc_count(), 2);
        // Short buffers are left alone.
        let mut short = [0x80u8, 0, 0];
        set_ssrc(&mut short, 1);
        set_timestamp(&mut short, 1);
        set_sequence(&mut short, 1);
        assert_eq!(short, [0x80, 0, 0]);
    }

    #[test]
    fn rewrites_extension_ids() {
        let mut p = sample();
        assert!(rewrite_extension(&mut p, 3, 9));
        let v = RtpView::parse(&p).unwrap();
        assert_eq!(v.extension(9), Some(&[0xAB, 0xCD][..]));
        assert_eq!(v.extension(3), None);
        assert_eq!(v.extension(1), Some(&[0x7F][..]));
        assert!(!rewrite_extension(&mut p, 3, 4), "no element 3 any more");
        assert!(
            !rewrite_extension(&mut p, 9, 15),
            "15 is reserved in one-byte form"
        );
        assert!(!rewrite_extension(&mut p, 9, 0));

        let mut two = vec![0x90, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        two.extend_from_slice(&[0x10, 0x00, 0, 1, 5, 1, 0xEE, 0]);
        assert!(rewrite_extension(&mut two, 5, 250));
        let v = RtpView::parse(&two).unwrap();
        assert_eq!(v.extension(250), Some(&[0xEE][..]));
        assert!(!rewrite_extension(&mut [0u8; 4], 1, 2));
    }

    #[test]
    fn extension_mut_rewrites_value() {
        let mut p = sample();
        extension_mut(&mut p, 3).unwrap().copy_from_slice(&[1, 2]);
        assert_eq!(RtpView::parse(&p).unwrap().extension(3), Some(&[1, 2][..]));
        assert!(extension_mut(&mut p, 7).is_none());
    }

    #[test]
    fn writer_round_trips() {
        let mut out = [0u8; 64];
        let n = RtpWriter::write_header(&mut out, true, 111, 65535, 48000, 42, &[]).unwrap();
        assert_eq!(n, 12);
        let v = RtpView::parse(&out[..n]).unwrap();
        assert!(v.marker());
        assert_eq!(
            (v.payload_type(), v.sequence(), v.timestamp(), v.ssrc()),
            (111, 65535, 48000, 42)
        );
        assert!(v.extension_block().is_none());

        let exts: [(u8, &[u8]); 3] = [(1, &[0x80]), (4, b"mid0"), (14, &[1, 2, 3])];
        let n = RtpWriter::write_header(&mut out, false, 96, 1, 2, 3, &exts).unwrap();
        // 12 + 4 + (2 + 5 + 4 = 11 -> 12)
        assert_eq!(n, 28);
        let v = RtpView::parse(&out[..n]).unwrap();
        assert_eq!(v.extension_form(), Some(ExtensionForm::OneByte));
        for (id, d) in exts {
            assert_eq!(v.extension(id), Some(d));
        }
        assert_eq!(v.payload(), &[] as &[u8]);

        // Id 15 and an empty element force the two-byte form.
        let exts: [(u8, &[u8]); 2] = [(15, &[9; 20]), (2, &[])];
        let n = RtpWriter::write_header(&mut out, false, 96, 1, 2, 3, &exts).unwrap();
        assert_eq!(n, 12 + 4 + 24);
        let v = RtpView::parse(&out[..n]).unwrap();
        assert_eq!(v.extension_form(), Some(ExtensionForm::TwoByte));
        for (id, d) in exts {
            assert_eq!(v.extension(id), Some(d));
        }
    }

    #[test]
    fn writer_errors() {
        let mut out = [0u8; 15];
        assert_eq!(
            RtpWriter::write_header(&mut out, false, 96, 1, 2, 3, &[(1, &[1])]),
            Err(RtpError::BufferTooSmall {
                needed: 20,
                have: 15
            })
        );
        let mut big = [0u8; 600];
        assert_eq!(
            RtpWriter::write_header(&mut big, false, 96, 1, 2, 3, &[(0, &[1])]),
            Err(RtpError::BadExtensionId(0))
        );
        assert_eq!(
            RtpWriter::write_header(&mut big, false, 96, 1, 2, 3, &[(1, &[0; 256])]),
            Err(RtpError::ExtensionTooLong(256))
        );
    }
}
