//! VP8 payload descriptor (RFC 7741 §4.2) and keyframe detection (§4.3).
//!
//! ```text
//!  X R N S R PID      required
//!  I L T K RSV        if X
//!  M PictureID        if I (7 or 15 bits, M selects)
//!  TL0PICIDX          if L
//!  TID Y KEYIDX       if T or K
//! ```

use crate::error::RtpError;

/// The fields of a VP8 payload descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Descriptor {
    /// S: the packet starts a VP8 partition.
    pub start_of_partition: bool,
    /// N: the frame is not used as a reference.
    pub non_reference: bool,
    /// PID: partition index.
    pub partition_id: u8,
    /// PictureID, when I is set.
    pub picture_id: Option<u16>,
    /// Whether the PictureID field is 15 bits (M set) rather than 7.
    pub picture_id_15bit: bool,
    /// TL0PICIDX, when L is set.
    pub tl0picidx: Option<u8>,
    /// Temporal layer index, when T is set.
    pub tid: Option<u8>,
    /// Y: layer sync (meaningful when T is set).
    pub layer_sync: bool,
    /// KEYIDX, when K is set.
    pub keyidx: Option<u8>,
    /// Bytes of descriptor before the VP8 payload header.
    pub header_len: usize,
}

impl Vp8Descriptor {
    fn picture_id_len(&self) -> usize {
        match (self.picture_id, self.picture_id_15bit) {
            (None, _) => 0,
            (Some(_), false) => 1,
            (Some(_), true) => 2,
        }
    }
}

/// Parses the payload descriptor at the start of an RTP payload.
pub fn parse(payload: &[u8]) -> Result<Vp8Descriptor, RtpError> {
    let byte = |i: usize| payload.get(i).copied().ok_or(RtpError::TruncatedDescriptor);
    let b0 = byte(0)?;
    let mut d = Vp8Descriptor {
        start_of_partition: b0 & 0x10 != 0,
        non_reference: b0 & 0x20 != 0,
        partition_id: b0 & 0x07,
        ..Vp8Descriptor::default()
    };
    let mut off = 1;
    if b0 & 0x80 != 0 {
        let x = byte(off)?;
        off += 1;
        if x & 0x80 != 0 {
            let p = byte(off)?;
            if p & 0x80 != 0 {
                d.picture_id = Some(u16::from_be_bytes([p & 0x7F, byte(off + 1)?]));
                d.picture_id_15bit = true;
                off += 2;
            } else {
                d.picture_id = Some(u16::from(p));
                off += 1;
            }
        }
        if x & 0x40 != 0 {
            d.tl0picidx = Some(byte(off)?);
            off += 1;
        }
        if x & 0x30 != 0 {
            let t = byte(off)?;
            off += 1;
            if x & 0x20 != 0 {
                d.tid = Some(t >> 6);
                d.layer_sync = t & 0x20 != 0;
            }
            if x & 0x10 != 0 {
                d.keyidx = Some(t & 0x1F);
            }
        }
    }
    d.header_len = off;
    Ok(d)
}

/// Whether the payload starts a keyframe: S=1, PID=0 and the VP8 payload header's inverse
/// key frame flag P (bit 0 of its first byte, RFC 7741 §4.3) is 0.
pub fn is_keyframe(payload: &[u8]) -> bool {
    let Ok(d) = parse(payload) else {
        return false;
    };
    d.start_of_partition
        && d.partition_id == 0
        && payload.get(d.header_len).is_some_and(|&b| b & 0x01 == 0)
}

/// Overwrites the PictureID in place, keeping the field width: a 7-bit field keeps the low
/// 7 bits of `pid`, a 15-bit one the low 15. Does nothing if the descriptor has no PictureID
/// or the payload is shorter than the descriptor.
pub fn write_picture_id(payload: &mut [u8], d: &Vp8Descriptor, pid: u16) {
    if d.picture_id.is_none() {
        return;
    }
    if d.picture_id_15bit {
        if let Some(b) = payload.get_mut(2..4) {
            b[0] = 0x80 | ((pid >> 8) as u8 & 0x7F);
            b[1] = pid as u8;
        }
    } else if let Some(b) = payload.get_mut(2) {
        *b = pid as u8 & 0x7F;
    }
}

/// Overwrites TL0PICIDX in place. Does nothing if the descriptor has none or the payload is
/// shorter than the descriptor.
pub fn write_tl0picidx(payload: &mut [u8], d: &Vp8Descriptor, v: u8) {
    if d.tl0picidx.is_none() {
        return;
    }
    if let Some(b) = payload.get_mut(2 + d.picture_id_len()) {
        *b = v;
    }
}

/// Overwrites KEYIDX in place (keeping TID and Y). Does nothing if the descriptor has none.
pub fn write_keyidx(payload: &mut [u8], d: &Vp8Descriptor, v: u8) {
    if d.keyidx.is_none() {
        return;
    }
    let at = 2 + d.picture_id_len() + usize::from(d.tl0picidx.is_some());
    if let Some(b) = payload.get_mut(at) {
        *b = (*b & 0xE0) | (v & 0x1F);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_extension() {
        // S=1, PID=0, then a keyframe payload header (P=0).
        let p = [0x10, 0x9C, 0x01, 0x2A];
        let d = parse(&p).unwrap();
        assert!(d.start_of_partition);
        assert_eq!(d.partition_id, 0);
        assert_eq!(d.picture_id, None);
        assert_eq!(d.header_len, 1);
        assert!(is_keyframe(&p));
        // Interframe: P=1.
        assert!(!is_keyframe(&[0x10, 0x9D]));
        // Not the start of partition 0.
        assert!(!is_keyframe(&[0x00, 0x9C]));
        assert!(!is_keyframe(&[0x11, 0x9C]));
        // Descriptor only, no payload header.
        assert!(!is_keyframe(&[0x10]));
    }

    #[test]
    fn picture_id_7_bit() {
        let p = [0x90, 0x80, 0x25, 0x00];
        let d = parse(&p).unwrap();
        assert_eq!(d.picture_id, Some(0x25));
        assert!(!d.picture_id_15bit);
        assert_eq!(d.header_len, 3);
        assert!(is_keyframe(&p));
    }

    #[test]
    fn picture_id_15_bit_with_all_fields() {
        // X; I L T K; M + 15-bit 0x1234; TL0PICIDX 0x56; TID 2, Y, KEYIDX 7; payload hdr.
        let p = [0xB0, 0xF0, 0x92, 0x34, 0x56, 0xA7, 0x01];
        let d = parse(&p).unwrap();
        assert_eq!(
            d,
            Vp8Descriptor {
                start_of_partition: true,
                non_reference: true,
                partition_id: 0,
                picture_id: Some(0x1234),
                picture_id_15bit: true,
                tl0picidx: Some(0x56),
                tid: Some(2),
                layer_sync: true,
                keyidx: Some(7),
                header_len: 6,
            }
        );
        assert!(!is_keyframe(&p));
    }

    #[test]
    fn tl0_only_and_k_only() {
        let p = [0x80, 0x40, 0x09, 0xFF];
        let d = parse(&p).unwrap();
        assert_eq!(
            (d.picture_id, d.tl0picidx, d.tid, d.header_len),
            (None, Some(9), None, 3)
        );
        let p = [0x83, 0x10, 0x3F];
        let d = parse(&p).unwrap();
        assert_eq!(d.partition_id, 3);
        assert_eq!((d.tid, d.keyidx, d.layer_sync), (None, Some(0x1F), false));
        let p = [0x80, 0x20, 0x40];
        let d = parse(&p).unwrap();
        assert_eq!((d.tid, d.keyidx, d.layer_sync), (Some(1), None, false));
    }

    #[test]
    fn truncated() {
        assert_eq!(parse(&[]), Err(RtpError::TruncatedDescriptor));
        assert!(parse(&[0x80]).is_err());
        assert!(parse(&[0x80, 0x80]).is_err());
        assert!(parse(&[0x80, 0x80, 0x80]).is_err());
        assert!(parse(&[0x80, 0xC0, 0x01]).is_err());
        assert!(parse(&[0x80, 0x20]).is_err());
        assert!(!is_keyframe(&[0x90, 0x80]));
    }

    #[test]
    fn rewrites_keep_width() {
        let mut p = [0x90, 0xF0, 0x92, 0x34, 0x56, 0xA7, 0x00];
        let d = parse(&p).unwrap();
        write_picture_id(&mut p, &d, 0xFFFF);
        write_tl0picidx(&mut p, &d, 0x99);
        write_keyidx(&mut p, &d, 3);
        let e = parse(&p).unwrap();
        assert_eq!(e.picture_id, Some(0x7FFF));
        assert_eq!(e.tl0picidx, Some(0x99));
        assert_eq!(e.keyidx, Some(3));
        assert_eq!((e.tid, e.layer_sync), (Some(2), true));
        assert_eq!(e.header_len, d.header_len);

        let mut q = [0x90, 0xC0, 0x05, 0x11, 0x00];
        let d = parse(&q).unwrap();
        write_picture_id(&mut q, &d, 300);
        write_tl0picidx(&mut q, &d, 0x22);
        let e = parse(&q).unwrap();
        assert_eq!(e.picture_id, Some(300 & 0x7F));
        assert!(!e.picture_id_15bit);
        assert_eq!(e.tl0picidx, Some(0x22));
        assert_eq!(q[4], 0x00, "payload untouched");

        // Absent fields are not written.
        let mut r = [0x10, 0x9C];
        let d = parse(&r).unwrap();
        write_picture_id(&mut r, &d, 5);
        write_tl0picidx(&mut r, &d, 5);
        write_keyidx(&mut r, &d, 5);
        assert_eq!(r, [0x10, 0x9C]);
    }
}
