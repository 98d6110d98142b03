//! Session key derivation with the AES-CM PRF (RFC 3711 §4.3.1, §4.3.3), which RFC 7714 §11
//! reuses for AES-GCM. The key derivation rate is zero, as DTLS-SRTP requires
//! (RFC 5764 §4.1.2), so `index DIV kdr` is zero and each session key is derived once.

use aes::Aes128Enc;
use aes::cipher::{InnerIvInit, KeyInit, StreamCipher, StreamCipherCoreWrapper};

/// Key derivation labels (RFC 3711 §4.3.1, §4.3.2).
#[derive(Clone, Copy, Debug)]
pub(super) enum Label {
    RtpEncryption = 0x00,
    RtpAuthentication = 0x01,
    RtpSalt = 0x02,
    RtcpEncryption = 0x03,
    RtcpAuthentication = 0x04,
    RtcpSalt = 0x05,
}

/// The PRF keyed with one master key and salt.
pub(super) struct Kdf {
    cipher: Aes128Enc,
    /// The master salt, right-padded with zeros to 112 bits (a 96-bit GCM salt is padded the
    /// way libsrtp and other implementations do).
    salt: [u8; 14],
}

impl Kdf {
    /// `master_key` is 16 bytes and `master_salt` at most 14 (the caller checked both).
    pub(super) fn new(master_key: &[u8], master_salt: &[u8]) -> Self {
        let mut salt = [0u8; 14];
        salt[..master_salt.len()].copy_from_slice(master_salt);
        Self {
            cipher: Aes128Enc::new(master_key.into()),
            salt,
        }
    }

    /// Fills `out` with the PRF output for `label`: the AES-CM keystream under the master
    /// key with IV `(master_salt XOR (label << 48)) * 2^16`.
    pub(super) fn derive(&self, label: Label, out: &mut [u8]) {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        // key_id = label || r with r = 0 (48 bits); XORed into the low 56 bits of the salt.
        iv[7] ^= label as u8;
        out.fill(0);
        apply_ctr_keystream(&self.cipher, iv, out);
    }

    /// The PRF output for `label`, `N` bytes long.
    pub(super) fn derive_array<const N: usize>(&self, label: Label) -> [u8; N] {
        let mut out = [0u8; N];
        self.derive(label, &mut out);
        out
    }
}

/// XORs `data` with the AES-128 counter-mode keystream whose first counter block is `iv`
/// (the 128-bit counter is incremented big-endian per block, RFC 3711 §4.1.1). Borrows the
/// expanded key: nothing is copied or allocated.
pub(super) fn apply_ctr_keystream(cipher: &Aes128Enc, iv: [u8; 16], data: &mut [u8]) {
    let core =
        ctr::CtrCore::<&Aes128Enc, ctr::flavors::Ctr128BE>::inner_iv_init(cipher, &iv.into());
    StreamCipherCoreWrapper::from_core(core).apply_keystream(data);
}
