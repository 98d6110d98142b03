//! `AES_CM_128_HMAC_SHA1_80` (RFC 3711 §4.1.1 AES counter mode, §4.2.1 HMAC-SHA1 with an
//! 80-bit tag).

use aes::Aes128Enc;
use aes::cipher::KeyInit;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use super::kdf::{Kdf, Label, apply_ctr_keystream};
use super::{RTCP_HEADER_LEN, SRTCP_E_FLAG, SRTCP_INDEX_LEN, SrtpError};

/// Authentication tag length: 80 bits.
pub(super) const TAG_LEN: usize = 10;

/// Session keys of SRTP or SRTCP, expanded once.
struct SessionKeys {
    /// AES key schedule of the session encryption key.
    cipher: Aes128Enc,
    /// Session salt (112 bits).
    salt: [u8; 14],
    /// HMAC-SHA1 keyed with the session authentication key, inner and outer pads already
    /// absorbed; cloned on the stack for each packet.
    mac: Hmac<Sha1>,
}

impl SessionKeys {
    fn new(key: &[u8; 16], salt: [u8; 14], auth_key: &[u8; 20]) -> Self {
        Self {
            cipher: Aes128Enc::new(key.into()),
            salt,
            mac: <Hmac<Sha1> as Mac>::new_from_slice(auth_key)
                .expect("HMAC takes keys of any length"),
        }
    }

    /// XORs `data` with the keystream for `ssrc` and packet index `index`: counter blocks
    /// start at `IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (index * 2^16)` (RFC 3711 §4.1.1).
    fn apply_keystream(&self, ssrc: u32, index: u64, data: &mut [u8]) {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        for (b, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
            *b ^= s;
        }
        // The 48-bit index lands in octets 8..14.
        for (b, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
            *b ^= s;
        }
        apply_ctr_keystream(&self.cipher, iv, data);
    }

    /// The 80-bit tag over `data || trailer` (RFC 3711 §4.2).
    fn tag(&self, data: &[u8], trailer: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.mac.clone();
        mac.update(data);
        mac.update(trailer);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }
}

/// AES-CM + HMAC-SHA1-80 for SRTP and SRTCP of one direction.
pub(super) struct CmTransform {
    rtp: SessionKeys,
    rtcp: SessionKeys,
}

impl CmTransform {
    /// Derives the six session keys (RFC 3711 §4.3.2).
    pub(super) fn derive(kdf: &Kdf) -> Self {
        let rtp = SessionKeys::new(
            &kdf.derive_array(Label::RtpEncryption),
            kdf.derive_array(Label::RtpSalt),
            &kdf.derive_array(Label::RtpAuthentication),
        );
        let rtcp = SessionKeys::new(
            &kdf.derive_array(Label::RtcpEncryption),
            kdf.derive_array(Label::RtcpSalt),
            &kdf.derive_array(Label::RtcpAuthentication),
        );
        Self { rtp, rtcp }
    }

    /// Builds the transform from session keys directly (the RFC 3711 B.2 vector gives those).
    #[cfg(test)]
    pub(super) fn from_session_keys(key: &[u8; 16], salt: [u8; 14], auth_key: &[u8; 20]) -> Self {
        Self {
            rtp: SessionKeys::new(key, salt, auth_key),
            rtcp: SessionKeys::new(key, salt, auth_key),
        }
    }

    /// Verifies and decrypts the SRTP packet that fills `buf`; the caller checked that
    /// `buf` holds `header_len + TAG_LEN` bytes at least.
    pub(super) fn unprotect_rtp(
        &self,
        buf: &mut [u8],
        header_len: usize,
        ssrc: u32,
        index: u64,
    ) -> Result<usize, SrtpError> {
        let end = buf.len() - TAG_LEN;
        let roc = roc_bytes(index);
        let expected = self.rtp.tag(&buf[..end], &roc);
        if !bool::from(expected.ct_eq(&buf[end..])) {
            return Err(SrtpError::AuthFailed);
        }
        self.rtp
            .apply_keystream(ssrc, index, &mut buf[header_len..end]);
        Ok(end)
    }

    /// Encrypts `buf[header_len..len]` and appends the tag; the caller checked the room.
    pub(super) fn protect_rtp(
        &self,
        buf: &mut [u8],
        len: usize,
        header_len: usize,
        ssrc: u32,
        index: u64,
    ) -> Result<usize, SrtpError> {
        self.rtp
            .apply_keystream(ssrc, index, &mut buf[header_len..len]);
        let tag = self.rtp.tag(&buf[..len], &roc_bytes(index));
        buf[len..len + TAG_LEN].copy_from_slice(&tag);
        Ok(len + TAG_LEN)
    }

    /// Verifies and, if `encrypted`, decrypts the SRTCP packet that fills `buf`
    /// (`header | body | E+index | tag`, RFC 3711 §3.4); the caller checked the length.
    pub(super) fn unprotect_rtcp(
        &self,
        buf: &mut [u8],
        ssrc: u32,
        index: u32,
        encrypted: bool,
    ) -> Result<usize, SrtpError> {
        let tag_at = buf.len() - TAG_LEN;
        let expected = self.rtcp.tag(&buf[..tag_at], &[]);
        if !bool::from(expected.ct_eq(&buf[tag_at..])) {
            return Err(SrtpError::AuthFailed);
        }
        let end = tag_at - SRTCP_INDEX_LEN;
        if encrypted {
            self.rtcp
                .apply_keystream(ssrc, u64::from(index), &mut buf[RTCP_HEADER_LEN..end]);
        }
        Ok(end)
    }

    /// Encrypts `buf[8..len]`, appends `E=1 | index` and the tag; the caller checked the room.
    pub(super) fn protect_rtcp(
        &self,
        buf: &mut [u8],
        len: usize,
        ssrc: u32,
        index: u32,
    ) -> Result<usize, SrtpError> {
        self.rtcp
            .apply_keystream(ssrc, u64::from(index), &mut buf[RTCP_HEADER_LEN..len]);
        let trailer_end = len + SRTCP_INDEX_LEN;
        buf[len..trailer_end].copy_from_slice(&(index | SRTCP_E_FLAG).to_be_bytes());
        let tag = self.rtcp.tag(&buf[..trailer_end], &[]);
        buf[trailer_end..trailer_end + TAG_LEN].copy_from_slice(&tag);
        Ok(trailer_end + TAG_LEN)
    }
}

/// The rollover counter of a 48-bit index, as the 32 bits appended before authenticating.
fn roc_bytes(index: u64) -> [u8; 4] {
    ((index >> 16) as u32).to_be_bytes()
}
