//! AV1 keyframe detection from the RTP aggregation header (AV1 RTP payload specification
//! §4.4): `Z Y W W N - - -`, where N marks the first packet of a coded video sequence.

/// Whether the aggregation header's N bit is set.
pub fn is_keyframe(payload: &[u8]) -> bool {
    payload.first().is_some_and(|&b| b & 0x08 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n_bit() {
        assert!(is_keyframe(&[0x18, 0x0A]));
        assert!(!is_keyframe(&[0x10, 0x0A]));
        assert!(!is_keyframe(&[0xF7]));
        assert!(!is_keyframe(&[]));
    }
}
