//! VP9 payload descriptor keyframe detection (RFC 9628 §4.2, formerly
//! draft-ietf-payload-vp9).
//!
//! ```text
//!  I P L F B E V Z    required
//!  M PictureID        if I (7 or 15 bits)
//!  TID U SID D        if L
//! ```

/// Whether the payload starts a keyframe: P=0 (not inter-picture predicted), B=1 (start of
/// a frame) and, when layer indices are present, spatial layer 0.
pub fn is_keyframe(payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    let inter_predicted = b0 & 0x40 != 0;
    let begins_frame = b0 & 0x08 != 0;
    if inter_predicted || !begins_frame {
        return false;
    }
    if b0 & 0x20 == 0 {
        return true;
    }
    let mut off = 1;
    if b0 & 0x80 != 0 {
        let Some(&p) = payload.get(1) else {
            return false;
        };
        off += if p & 0x80 != 0 { 2 } else { 1 };
    }
    payload.get(off).is_some_and(|&l| (l >> 1) & 0x07 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframes() {
        // B=1, P=0, no layer indices.
        assert!(is_keyframe(&[0x08, 0x00]));
        // P=1.
        assert!(!is_keyframe(&[0x48, 0x00]));
        // B=0.
        assert!(!is_keyframe(&[0x04, 0x00]));
        // I with 15-bit picture id, L with SID 0 / SID 1.
        assert!(is_keyframe(&[0xA8, 0x81, 0x23, 0x00, 0x00]));
        assert!(!is_keyframe(&[0xA8, 0x81, 0x23, 0x02, 0x00]));
        // I with 7-bit picture id, L with TID 2 SID 0.
        assert!(is_keyframe(&[0xAC, 0x05, 0x40]));
        // Truncated.
        assert!(!is_keyframe(&[]));
        assert!(!is_keyframe(&[0xA8]));
        assert!(!is_keyframe(&[0xA8, 0x81, 0x23]));
        assert!(!is_keyframe(&[0x28]));
    }
}
