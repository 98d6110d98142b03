//! Values carried in header extension elements, and the RTX original sequence number.

/// RFC 6464 client-to-mixer audio level: `(voice activity, level in -dBov 0..=127)`.
pub fn parse_audio_level(ext: &[u8]) -> Option<(bool, u8)> {
    let &b = ext.first()?;
    Some((b & 0x80 != 0, b & 0x7F))
}

/// Transport-wide sequence number (draft-holmer-rmcat-transport-wide-cc-extensions-01 §2):
/// the first two bytes, big-endian. Version 2 of the extension appends request fields, which
/// are ignored.
pub fn parse_transport_cc(ext: &[u8]) -> Option<u16> {
    match ext {
        [a, b, ..] => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

/// abs-send-time: 24-bit 6.18 fixed-point seconds, wrapping every 64 s.
pub fn parse_abs_send_time(ext: &[u8]) -> Option<u32> {
    match ext {
        [a, b, c, ..] => Some(u32::from_be_bytes([0, *a, *b, *c])),
        _ => None,
    }
}

/// Encodes a time in microseconds as abs-send-time (6.18 fixed-point seconds mod 64 s).
pub fn abs_send_time(now_us: u64) -> [u8; 3] {
    // 2^18 units per second; reduce modulo 64 s first so the shift cannot overflow.
    let us = now_us % 64_000_000;
    let v = ((us << 18) / 1_000_000) as u32;
    let b = v.to_be_bytes();
    [b[1], b[2], b[3]]
}

/// A text element (mid RFC 8843 §15.1, rid and repaired-rid RFC 8852 §3.3): printable ASCII,
/// at least one character. Trailing NUL bytes (some senders pad) are ignored.
pub fn parse_str_ext(ext: &[u8]) -> Option<&str> {
    let end = ext.iter().rposition(|&b| b != 0)? + 1;
    let s = &ext[..end];
    if !s.iter().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    core::str::from_utf8(s).ok()
}

/// RFC 4588 §4: an RTX payload starts with the original sequence number.
pub fn rtx_original_sequence(payload: &[u8]) -> Option<u16> {
    match payload {
        [a, b, ..] => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_level() {
        assert_eq!(parse_audio_level(&[0x80 | 30]), Some((true, 30)));
        assert_eq!(parse_audio_level(&[127, 0]), Some((false, 127)));
        assert_eq!(parse_audio_level(&[]), None);
    }

    #[test]
    fn transport_cc() {
        assert_eq!(parse_transport_cc(&[0x12, 0x34]), Some(0x1234));
        assert_eq!(parse_transport_cc(&[0xFF, 0xFE, 0x80]), Some(0xFFFE));
        assert_eq!(parse_transport_cc(&[1]), None);
    }

    #[test]
    fn abs_send_time_round_trip() {
        assert_eq!(parse_abs_send_time(&[0x12, 0x34, 0x56]), Some(0x12_3456));
        assert_eq!(parse_abs_send_time(&[1, 2]), None);
        // 1.5 s = 1.5 * 2^18 = 0x060000
        assert_eq!(abs_send_time(1_500_000), [0x06, 0x00, 0x00]);
        // wraps at 64 s
        assert_eq!(abs_send_time(65_500_000), abs_send_time(1_500_000));
        assert_eq!(abs_send_time(63_999_999), [0xFF, 0xFF, 0xFF]);
        assert_eq!(parse_abs_send_time(&abs_send_time(250_000)), Some(1 << 16));
    }

    #[test]
    fn strings() {
        assert_eq!(parse_str_ext(b"0"), Some("0"));
        assert_eq!(parse_str_ext(b"q\0\0"), Some("q"));
        assert_eq!(parse_str_ext(b"audio-mid_1"), Some("audio-mid_1"));
        assert_eq!(parse_str_ext(b""), None);
        assert_eq!(parse_str_ext(b"\0"), None);
        assert_eq!(parse_str_ext(b"a b"), None);
        assert_eq!(parse_str_ext(&[0xC3, 0xA9]), None);
    }

    #[test]
    fn rtx() {
        assert_eq!(rtx_original_sequence(&[0xAB, 0xCD, 1, 2]), Some(0xABCD));
        assert_eq!(rtx_original_sequence(&[0xAB]), None);
    }
}
