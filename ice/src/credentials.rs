//! Random transaction ids and ICE credentials.

use rand::Rng;
use rand::distr::Alphanumeric;

/// Length of the ufrags we generate (RFC 8839 allows 4..=256 ice-chars).
pub const UFRAG_LEN: usize = 8;
/// Length of the passwords we generate (RFC 8839 requires at least 22 ice-chars); 32
/// alphanumerics carry about 190 bits.
pub const PWD_LEN: usize = 32;

/// A fresh random STUN transaction id (RFC 5389 §6: uniformly random, 96 bits).
pub fn new_transaction_id() -> [u8; 12] {
    rand::rng().random()
}

/// A random ICE username fragment of [`UFRAG_LEN`] characters.
pub fn random_ufrag() -> String {
    random_ice_chars(UFRAG_LEN)
}

/// A random ICE password of [`PWD_LEN`] characters.
pub fn random_pwd() -> String {
    random_ice_chars(PWD_LEN)
}

/// Letters and digits only: a subset of the ice-char set (ALPHA / DIGIT / "+" / "/",
/// RFC 8839 §5.4) that needs no escaping anywhere the value travels.
fn random_ice_chars(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}
