//! Identifiers in LiveKit's shapes.
//!
//! LiveKit ids are a prefix followed by 12 characters of the shortuuid base-57 alphabet
//! (`RM_`, `PA_`, `TR_`); API keys are `API` followed by 12 such characters; API secrets are
//! the base-62 form of 32 random bytes.

use rand::Rng;

/// The shortuuid alphabet: digits and letters without the look-alikes 0, 1, I, O and l.
const BASE57: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Prefix of room ids.
pub const ROOM_PREFIX: &str = "RM_";
/// Prefix of participant ids.
pub const PARTICIPANT_PREFIX: &str = "PA_";
/// Prefix of track ids.
pub const TRACK_PREFIX: &str = "TR_";

fn base57(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| BASE57[rng.random_range(0..BASE57.len())] as char)
        .collect()
}

/// A new id: `prefix` and 12 random base-57 characters.
pub fn new_id(prefix: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + 12);
    s.push_str(prefix);
    s.push_str(&base57(12));
    s
}

/// A new API key, `API` and 12 random base-57 characters.
pub fn new_api_key() -> String {
    new_id("API")
}

/// A new API secret: 32 random bytes written in base 62 (about 43 characters).
pub fn new_api_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    base62(&bytes)
}

/// Base-62 form of a big-endian unsigned number.
fn base62(bytes: &[u8]) -> String {
    let mut num: Vec<u8> = bytes.to_vec();
    let mut out = Vec::new();
    while num.iter().any(|&b| b != 0) {
        let mut rem: u32 = 0;
        for b in num.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 62) as u8;
            rem = cur % 62;
        }
        out.push(BASE62[rem as usize]);
    }
    if out.is_empty() {
        out.push(b'0');
    }
    out.reverse();
    String::from_utf8(out).expect("base-62 digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_prefix_and_length() {
        let id = new_id(ROOM_PREFIX);
        assert!(id.starts_with("RM_"));
        assert_eq!(id.len(), 15);
        assert!(id[3..].bytes().all(|b| BASE57.contains(&b)));
        assert_ne!(new_id(TRACK_PREFIX), new_id(TRACK_PREFIX));
    }

    #[test]
    fn keys_and_secrets_look_like_livekit() {
        let key = new_api_key();
        assert!(key.starts_with("API") && key.len() == 15);
        let secret = new_api_secret();
        assert!((40..=43).contains(&secret.len()), "{secret}");
        assert!(secret.bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn base62_known_values() {
        assert_eq!(base62(&[0]), "0");
        assert_eq!(base62(&[61]), "z");
        assert_eq!(base62(&[62]), "10");
        assert_eq!(base62(&[1, 0]), "48"); // 256 = 4*62 + 8
    }
}
