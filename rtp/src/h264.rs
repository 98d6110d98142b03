//! H.264 keyframe detection (RFC 6184 §5).

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_STAP_A: u8 = 24;
const NAL_FU_A: u8 = 28;

fn is_key_nal(nal_type: u8) -> bool {
    nal_type == NAL_IDR || nal_type == NAL_SPS
}

/// Whether the payload carries the start of a keyframe: an IDR slice or SPS as a single NAL
/// unit, inside a STAP-A aggregate, or at the start of an FU-A fragmented unit.
pub fn is_keyframe(payload: &[u8]) -> bool {
    let Some(&hdr) = payload.first() else {
        return false;
    };
    match hdr & 0x1F {
        NAL_STAP_A => {
            // 16-bit size, then the NAL unit, repeated (RFC 6184 §5.7.1).
            let mut at = 1;
            while at + 2 < payload.len() {
                let size = usize::from(u16::from_be_bytes([payload[at], payload[at + 1]]));
                at += 2;
                if size == 0 || at + size > payload.len() {
                    return false;
                }
                if is_key_nal(payload[at] & 0x1F) {
                    return true;
                }
                at += size;
            }
            false
        }
        NAL_FU_A => payload
            .get(1)
            .is_some_and(|&fu| fu & 0x80 != 0 && is_key_nal(fu & 0x1F)),
        t => is_key_nal(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_nal() {
        assert!(is_keyframe(&[0x65, 0x88]));
        assert!(is_keyframe(&[0x67, 0x42]));
        assert!(!is_keyframe(&[0x68, 0xCE])); // PPS
        assert!(!is_keyframe(&[0x41, 0x9A])); // non-IDR slice
        assert!(!is_keyframe(&[]));
    }

    #[test]
    fn stap_a() {
        // SPS and PPS aggregated.
        assert!(is_keyframe(&[0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xCE]));
        // Only an SEI and a PPS.
        assert!(!is_keyframe(&[0x78, 0, 2, 0x06, 0x05, 0, 2, 0x68, 0xCE]));
        // IDR in the second unit.
        assert!(is_keyframe(&[0x78, 0, 1, 0x06, 0, 1, 0x65]));
        // A size running past the end.
        assert!(!is_keyframe(&[0x78, 0, 9, 0x67]));
        assert!(!is_keyframe(&[0x78, 0]));
    }

    #[test]
    fn fu_a() {
        assert!(is_keyframe(&[0x7C, 0x85, 0x88]));
        // Middle fragment of an IDR.
        assert!(!is_keyframe(&[0x7C, 0x05, 0x88]));
        // Start of a non-IDR slice.
        assert!(!is_keyframe(&[0x7C, 0x81, 0x9A]));
        assert!(!is_keyframe(&[0x7C]));
    }
}
