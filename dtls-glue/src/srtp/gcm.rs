//! `AEAD_AES_128_GCM` for SRTP and SRTCP (RFC 7714 §8, §9) on `ring`.

use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};

use super::kdf::{Kdf, Label};
use super::{RTCP_HEADER_LEN, SRTCP_E_FLAG, SRTCP_INDEX_LEN, SrtpError};

/// Authentication tag length: 128 bits.
pub(super) const TAG_LEN: usize = 16;

/// A session key and salt of SRTP or SRTCP, expanded once.
struct SessionKeys {
    key: LessSafeKey,
    /// Session salt (96 bits).
    salt: [u8; 12],
}

impl SessionKeys {
    fn new(key: &[u8; 16], salt: [u8; 12]) -> Result<Self, SrtpError> {
        let key = UnboundKey::new(&AES_128_GCM, key).map_err(|_| SrtpError::Crypto)?;
        Ok(Self {
            key: LessSafeKey::new(key),
            salt,
        })
    }

    /// `salt XOR iv`: the 12-byte nonce (RFC 7714 §8.1, §9.1).
    fn nonce(&self, mut iv: [u8; 12]) -> Nonce {
        for (b, s) in iv.iter_mut().zip(self.salt) {
            *b ^= s;
        }
        Nonce::assume_unique_for_key(iv)
    }
}

/// The RTP IV before salting: `00 00 | SSRC | ROC | SEQ` (RFC 7714 §8.1).
fn rtp_iv(ssrc: u32, index: u64) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    // ROC and SEQ are the low 48 bits of the index.
    iv[6..12].copy_from_slice(&index.to_be_bytes()[2..]);
    iv
}

/// The RTCP IV before salting: `00 00 | SSRC | 00 00 | 0 | SRTCP index` (RFC 7714 §9.1).
fn rtcp_iv(ssrc: u32, index: u32) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[8..12].copy_from_slice(&(index & !SRTCP_E_FLAG).to_be_bytes());
    iv
}

/// AES-128-GCM for SRTP and SRTCP of one direction.
pub(super) struct GcmTransform {
    rtp: SessionKeys,
    rtcp: SessionKeys,
}

impl GcmTransform {
    /// Derives the session keys and salts (RFC 7714 §11: labels 0, 2, 3 and 5; no
    /// authentication keys).
    pub(super) fn derive(kdf: &Kdf) -> Result<Self, SrtpError> {
        Ok(Self {
            rtp: SessionKeys::new(
                &kdf.derive_array(Label::RtpEncryption),
                kdf.derive_array(Label::RtpSalt),
            )?,
            rtcp: SessionKeys::new(
                &kdf.derive_array(Label::RtcpEncryption),
                kdf.derive_array(Label::RtcpSalt),
            )?,
        })
    }

    /// Builds the transform from a session key and salt directly (the RFC 7714 vectors give
    /// those).
    #[cfg(test)]
    pub(super) fn from_session_keys(key: &[u8; 16], salt: [u8; 12]) -> Self {
        Self {
            rtp: SessionKeys::new(key, salt).unwrap(),
            rtcp: SessionKeys::new(key, salt).unwrap(),
        }
    }

    /// Opens the SRTP packet that fills `buf` (`header | ciphertext | tag`, the header being
    /// the associated data); the caller checked `buf` holds `header_len + TAG_LEN` bytes.
    pub(super) fn unprotect_rtp(
        &self,
        buf: &mut [u8],
        header_len: usize,
        ssrc: u32,
        index: u64,
    ) -> Result<usize, SrtpError> {
        let (header, rest) = buf.split_at_mut(header_len);
        let plain = self
            .rtp
            .key
            .open_in_place(
                self.rtp.nonce(rtp_iv(ssrc, index)),
                Aad::from(&*header),
                rest,
            )
            .map_err(|_| SrtpError::AuthFailed)?;
        Ok(header_len + plain.len())
    }

    /// Seals `buf[header_len..len]` and appends the tag; the caller checked the room.
    pub(super) fn protect_rtp(
        &self,
        buf: &mut [u8],
        len: usize,
        header_len: usize,
        ssrc: u32,
        index: u64,
    ) -> Result<usize, SrtpError> {
        let (header, rest) = buf.split_at_mut(header_len);
        let payload_len = len - header_len;
        let tag = self
            .rtp
            .key
            .seal_in_place_separate_tag(
                self.rtp.nonce(rtp_iv(ssrc, index)),
                Aad::from(&*header),
                &mut rest[..payload_len],
            )
            .map_err(|_| SrtpError::Crypto)?;
        rest[payload_len..payload_len + TAG_LEN].copy_from_slice(tag.as_ref());
        Ok(len + TAG_LEN)
    }

    /// Opens the SRTCP packet that fills `buf` (`header | ciphertext | tag | E+index`,
    /// RFC 7714 §9.2, §9.3); the caller checked the length.
    pub(super) fn unprotect_rtcp(
        &self,
        buf: &mut [u8],
        ssrc: u32,
        index: u32,
        encrypted: bool,
    ) -> Result<usize, SrtpError> {
        let len = buf.len();
        let trailer_at = len - SRTCP_INDEX_LEN;
        let tag_at = trailer_at - TAG_LEN;
        let nonce = self.rtcp.nonce(rtcp_iv(ssrc, index));
        let mut trailer = [0u8; SRTCP_INDEX_LEN];
        trailer.copy_from_slice(&buf[trailer_at..]);
        if encrypted {
            // AAD = header || E+index; the body and tag are the ciphertext.
            let mut aad = [0u8; RTCP_HEADER_LEN + SRTCP_INDEX_LEN];
            aad[..RTCP_HEADER_LEN].copy_from_slice(&buf[..RTCP_HEADER_LEN]);
            aad[RTCP_HEADER_LEN..].copy_from_slice(&trailer);
            self.rtcp
                .key
                .open_in_place(
                    nonce,
                    Aad::from(&aad),
                    &mut buf[RTCP_HEADER_LEN..trailer_at],
                )
                .map_err(|_| SrtpError::AuthFailed)?;
        } else {
            // Authenticated only: AAD = whole packet || E+index, no ciphertext. Move the
            // index word over the tag so that the AAD is contiguous.
            let mut tag = [0u8; TAG_LEN];
            tag.copy_from_slice(&buf[tag_at..trailer_at]);
            buf[tag_at..tag_at + SRTCP_INDEX_LEN].copy_from_slice(&trailer);
            self.rtcp
                .key
                .open_in_place_separate_tag(
                    nonce,
                    Aad::from(&buf[..tag_at + SRTCP_INDEX_LEN]),
                    Tag::from(tag),
                    &mut [],
                    0..,
                )
                .map_err(|_| SrtpError::AuthFailed)?;
        }
        Ok(tag_at)
    }

    /// Seals `buf[8..len]`, appends the tag and `E=1 | index`; the caller checked the room.
    pub(super) fn protect_rtcp(
        &self,
        buf: &mut [u8],
        len: usize,
        ssrc: u32,
        index: u32,
    ) -> Result<usize, SrtpError> {
        let trailer = (index | SRTCP_E_FLAG).to_be_bytes();
        let mut aad = [0u8; RTCP_HEADER_LEN + SRTCP_INDEX_LEN];
        aad[..RTCP_HEADER_LEN].copy_from_slice(&buf[..RTCP_HEADER_LEN]);
        aad[RTCP_HEADER_LEN..].copy_from_slice(&trailer);
        let tag = self
            .rtcp
            .key
            .seal_in_place_separate_tag(
                self.rtcp.nonce(rtcp_iv(ssrc, index)),
                Aad::from(&aad),
                &mut buf[RTCP_HEADER_LEN..len],
            )
            .map_err(|_| SrtpError::Crypto)?;
        buf[len..len + TAG_LEN].copy_from_slice(tag.as_ref());
        buf[len + TAG_LEN..len + TAG_LEN + SRTCP_INDEX_LEN].copy_from_slice(&trailer);
        Ok(len + TAG_LEN + SRTCP_INDEX_LEN)
    }
}
