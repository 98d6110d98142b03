//! In-place SRTP and SRTCP (RFC 3711, RFC 7714) for the two DTLS-SRTP profiles WebRTC
//! endpoints negotiate: `SRTP_AEAD_AES_128_GCM` (on `ring`) and
//! `SRTP_AES128_CM_HMAC_SHA1_80` (on RustCrypto `aes`/`ctr`/`hmac`/`sha1`).
//!
//! Data flow: the DTLS handshake exports `EXTRACTOR-dtls_srtp` keying material;
//! [`SrtpKeys::from_exporter`] splits it per RFC 5764 §4.2 into our (local) and the peer's
//! (remote) master key and salt; one [`SrtpContext`] is built per direction, the local keys
//! protect what we send and the remote keys unprotect what the peer sends. A context serves
//! every SSRC of that direction.
//!
//! Hot path: [`SrtpContext::protect_rtp`], [`SrtpContext::unprotect_rtp`] and their RTCP
//! twins work in the caller's buffer, take no lock and allocate nothing per packet. Session
//! keys, AES key schedules and the keyed HMAC state are computed once in
//! [`SrtpContext::new`]. Per-SSRC state (rollover counter, replay windows, SRTCP index) lives
//! in a vector sorted by SSRC and searched by bisection: it allocates only when an SSRC is
//! seen for the first time (and only after that packet authenticated), and holds at most
//! [`MAX_SSRCS`] entries.
//!
//! Not supported: MKI, key derivation rates other than zero, the `_32` tag profiles, the
//! AES-256 profiles, and RFC 6904 header-extension encryption; none of them is offered by
//! the browsers and SDKs this server talks to.

mod cm;
mod gcm;
mod kdf;
mod replay;
mod streams;
#[cfg(test)]
mod tests;

use cm::CmTransform;
use gcm::GcmTransform;
use replay::estimate_index;
use streams::Streams;

/// The most SSRCs one context keeps state for. A packet for one more SSRC is refused with
/// [`SrtpError::TooManySsrcs`]; [`SrtpContext::remove_ssrc`] makes room.
pub const MAX_SSRCS: usize = 4096;

/// An SRTP protection profile (RFC 5764 §4.1.2, RFC 7714 §14.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SrtpProfile {
    /// `SRTP_AES128_CM_HMAC_SHA1_80`: AES-128 counter mode and an 80-bit HMAC-SHA1 tag.
    Aes128CmHmacSha1_80,
    /// `SRTP_AEAD_AES_128_GCM`: AES-128-GCM with a 128-bit tag.
    AeadAes128Gcm,
}

impl SrtpProfile {
    /// Master key length in bytes.
    pub fn key_len(self) -> usize {
        16
    }

    /// Master salt length in bytes (112 bits for AES-CM, 96 bits for GCM).
    pub fn salt_len(self) -> usize {
        match self {
            SrtpProfile::Aes128CmHmacSha1_80 => 14,
            SrtpProfile::AeadAes128Gcm => 12,
        }
    }

    /// Bytes an SRTP packet carries beyond its RTP packet: the authentication tag.
    pub fn rtp_overhead(self) -> usize {
        match self {
            SrtpProfile::Aes128CmHmacSha1_80 => cm::TAG_LEN,
            SrtpProfile::AeadAes128Gcm => gcm::TAG_LEN,
        }
    }

    /// Bytes an SRTCP packet carries beyond its RTCP packet: the tag and the E flag with the
    /// 31-bit SRTCP index.
    pub fn rtcp_overhead(self) -> usize {
        self.rtp_overhead() + SRTCP_INDEX_LEN
    }

    /// The profile for a DTLS `use_srtp` protection profile id, if we implement it.
    pub fn from_dtls_id(id: u16) -> Option<Self> {
        match id {
            0x0001 => Some(SrtpProfile::Aes128CmHmacSha1_80),
            0x0007 => Some(SrtpProfile::AeadAes128Gcm),
            _ => None,
        }
    }

    /// The DTLS `use_srtp` protection profile id of this profile.
    pub fn dtls_id(self) -> u16 {
        match self {
            SrtpProfile::Aes128CmHmacSha1_80 => 0x0001,
            SrtpProfile::AeadAes128Gcm => 0x0007,
        }
    }
}

/// Why a packet could not be protected or unprotected, or a context not built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    /// The master key does not have the profile's length.
    #[error("master key is {got} bytes, the profile needs {expected}")]
    BadKeyLength { expected: usize, got: usize },
    /// The master salt does not have the profile's length.
    #[error("master salt is {got} bytes, the profile needs {expected}")]
    BadSaltLength { expected: usize, got: usize },
    /// The exported keying material is not `2 * (key + salt)` bytes.
    #[error("keying material is {got} bytes, the profile needs {expected}")]
    BadMaterialLength { expected: usize, got: usize },
    /// The packet is shorter than its header plus the SRTP/SRTCP trailer.
    #[error("packet too short")]
    TooShort,
    /// The first two bits are not RTP/RTCP version 2.
    #[error("not an RTP/RTCP version 2 packet")]
    BadVersion,
    /// The RTP header (CSRC list or header extension) runs past the packet.
    #[error("RTP header runs past the end of the packet")]
    BadHeader,
    /// The caller's buffer has no room for the tag (and SRTCP index).
    #[error("buffer holds {capacity} bytes, protecting needs {needed}")]
    BufferTooSmall { needed: usize, capacity: usize },
    /// The authentication tag did not verify.
    #[error("authentication failed")]
    AuthFailed,
    /// The packet index was already received or is older than the replay window.
    #[error("replayed or too old packet")]
    Replay,
    /// The context already tracks [`MAX_SSRCS`] SSRCs.
    #[error("too many SSRCs in one SRTP context")]
    TooManySsrcs,
    /// The AEAD refused to seal (only for inputs far larger than any datagram).
    #[error("AEAD seal failed")]
    Crypto,
}

/// Length of the SRTCP trailer word: E flag and 31-bit SRTCP index (RFC 3711 §3.4).
const SRTCP_INDEX_LEN: usize = 4;
/// The E flag in the SRTCP trailer word.
const SRTCP_E_FLAG: u32 = 0x8000_0000;
/// Fixed RTP header length (RFC 3550 §5.1).
const RTP_HEADER_LEN: usize = 12;
/// RTCP header plus sender SSRC, left in clear by SRTCP (RFC 3711 §3.4).
const RTCP_HEADER_LEN: usize = 8;

/// Master keys and salts for both directions, split from the DTLS exporter output.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpKeys {
    /// Master key protecting what we send.
    pub local_key: Vec<u8>,
    /// Master salt protecting what we send.
    pub local_salt: Vec<u8>,
    /// Master key of what the peer sends.
    pub remote_key: Vec<u8>,
    /// Master salt of what the peer sends.
    pub remote_salt: Vec<u8>,
}

impl SrtpKeys {
    /// Splits the `EXTRACTOR-dtls_srtp` exporter output (`2 * (key + salt)` bytes) per
    /// RFC 5764 §4.2: `client_key | server_key | client_salt | server_salt`. The DTLS client's
    /// half protects what the client sends.
    pub fn from_exporter(
        profile: SrtpProfile,
        material: &[u8],
        we_are_dtls_client: bool,
    ) -> Result<Self, SrtpError> {
        let k = profile.key_len();
        let s = profile.salt_len();
        let expected = 2 * (k + s);
        if material.len() != expected {
            return Err(SrtpError::BadMaterialLength {
                expected,
                got: material.len(),
            });
        }
        let client_key = &material[..k];
        let server_key = &material[k..2 * k];
        let client_salt = &material[2 * k..2 * k + s];
        let server_salt = &material[2 * k + s..];
        let (local_key, local_salt, remote_key, remote_salt) = if we_are_dtls_client {
            (client_key, client_salt, server_key, server_salt)
        } else {
            (server_key, server_salt, client_key, client_salt)
        };
        Ok(Self {
            local_key: local_key.to_vec(),
            local_salt: local_salt.to_vec(),
            remote_key: remote_key.to_vec(),
            remote_salt: remote_salt.to_vec(),
        })
    }
}

impl std::fmt::Debug for SrtpKeys {
    /// Keys stay out of logs: only their lengths are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpKeys")
            .field("local_key_len", &self.local_key.len())
            .field("local_salt_len", &self.local_salt.len())
            .field("remote_key_len", &self.remote_key.len())
            .field("remote_salt_len", &self.remote_salt.len())
            .finish()
    }
}

/// The cipher and authentication transform of one profile, with its session keys.
enum Transform {
    Cm(Box<CmTransform>),
    Gcm(Box<GcmTransform>),
}

/// SRTP/SRTCP state for one direction (our outbound, or the peer's inbound) of one peer,
/// covering all of its SSRCs.
pub struct SrtpContext {
    profile: SrtpProfile,
    transform: Transform,
    streams: Streams,
}

impl std::fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpContext")
            .field("profile", &self.profile)
            .field("ssrcs", &self.streams.len())
            .finish_non_exhaustive()
    }
}

/// Where the parts of an RTP packet are.
struct RtpHeader {
    len: usize,
    seq: u16,
    ssrc: u32,
}

/// Parses the RTP header of `packet` far enough to find the payload (RFC 3550 §5.1, §5.3.1).
fn parse_rtp_header(packet: &[u8]) -> Result<RtpHeader, SrtpError> {
    if packet.len() < RTP_HEADER_LEN {
        return Err(SrtpError::TooShort);
    }
    if packet[0] >> 6 != 2 {
        return Err(SrtpError::BadVersion);
    }
    let csrc_count = usize::from(packet[0] & 0x0f);
    let mut len = RTP_HEADER_LEN + 4 * csrc_count;
    if packet[0] & 0x10 != 0 {
        // Header extension: 16-bit profile, 16-bit length in 32-bit words, then the words.
        let ext = packet.get(len..len + 4).ok_or(SrtpError::BadHeader)?;
        let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        len += 4 + 4 * words;
    }
    if len > packet.len() {
        return Err(SrtpError::BadHeader);
    }
    Ok(RtpHeader {
        len,
        seq: u16::from_be_bytes([packet[2], packet[3]]),
        ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
    })
}

/// Checks the RTCP version and returns the sender SSRC of the first packet.
fn parse_rtcp_header(packet: &[u8]) -> Result<u32, SrtpError> {
    if packet.len() < RTCP_HEADER_LEN {
        return Err(SrtpError::TooShort);
    }
    if packet[0] >> 6 != 2 {
        return Err(SrtpError::BadVersion);
    }
    Ok(u32::from_be_bytes([
        packet[4], packet[5], packet[6], packet[7],
    ]))
}

/// Fails unless `buf` can hold `len + overhead` bytes.
fn check_room(buf: &[u8], len: usize, overhead: usize) -> Result<(), SrtpError> {
    let needed = len.saturating_add(overhead);
    if needed > buf.len() {
        return Err(SrtpError::BufferTooSmall {
            needed,
            capacity: buf.len(),
        });
    }
    Ok(())
}

impl SrtpContext {
    /// Builds a context from a master key and salt, deriving the SRTP and SRTCP session keys
    /// with the AES-CM PRF of RFC 3711 §4.3 (key derivation rate zero; RFC 7714 §11 uses the
    /// same KDF for GCM).
    pub fn new(
        profile: SrtpProfile,
        master_key: &[u8],
        master_salt: &[u8],
    ) -> Result<Self, SrtpError> {
        if master_key.len() != profile.key_len() {
            return Err(SrtpError::BadKeyLength {
                expected: profile.key_len(),
                got: master_key.len(),
            });
        }
        if master_salt.len() != profile.salt_len() {
            return Err(SrtpError::BadSaltLength {
                expected: profile.salt_len(),
                got: master_salt.len(),
            });
        }
        let kdf = kdf::Kdf::new(master_key, master_salt);
        let transform = match profile {
            SrtpProfile::Aes128CmHmacSha1_80 => Transform::Cm(Box::new(CmTransform::derive(&kdf))),
            SrtpProfile::AeadAes128Gcm => Transform::Gcm(Box::new(GcmTransform::derive(&kdf)?)),
        };
        Ok(Self {
            profile,
            transform,
            streams: Streams::new(),
        })
    }

    /// The profile this context was built for.
    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    /// Forgets the rollover counter, replay windows and SRTCP index of `ssrc`, for a stream
    /// that ended. A later packet with that SSRC starts over as a new stream.
    pub fn remove_ssrc(&mut self, ssrc: u32) {
        self.streams.remove(ssrc);
    }

    /// Decrypts and authenticates an SRTP packet in place; returns the plaintext RTP length.
    /// Tracks ROC per SSRC (RFC 3711 §3.3.1 index estimation) and rejects replays (64-packet
    /// window, RFC 3711 §3.3.2). State changes only once the packet authenticated. On error
    /// the buffer's contents are unspecified.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let tag_len = self.profile.rtp_overhead();
        let header = parse_rtp_header(buf)?;
        if buf.len() < header.len + tag_len {
            return Err(SrtpError::TooShort);
        }
        let slot = self.streams.find(header.ssrc);
        let index = match slot {
            Ok(i) => {
                let rx = &self.streams.get(i).rtp_rx;
                let index = match rx.highest() {
                    Some(highest) => estimate_index(highest, header.seq),
                    None => u64::from(header.seq),
                };
                rx.check(index)?;
                index
            }
            // First packet of an SSRC: ROC starts at zero (RFC 3711 §3.3.1).
            Err(_) => u64::from(header.seq),
        };
        let len = match &self.transform {
            Transform::Cm(t) => t.unprotect_rtp(buf, header.len, header.ssrc, index)?,
            Transform::Gcm(t) => t.unprotect_rtp(buf, header.len, header.ssrc, index)?,
        };
        let i = self.streams.slot(slot, header.ssrc)?;
        self.streams.get_mut(i).rtp_rx.accept(index);
        Ok(len)
    }

    /// Encrypts an RTP packet of length `len` in place; `buf` must have room for the tag
    /// (`len + rtp_overhead`); returns the new length. The ROC follows the highest sequence
    /// number sent per SSRC, so a resent older packet gets the index it had.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        check_room(buf, len, self.profile.rtp_overhead())?;
        let header = parse_rtp_header(&buf[..len])?;
        let slot = self.streams.find(header.ssrc);
        let i = self.streams.slot(slot, header.ssrc)?;
        let index = self.streams.get_mut(i).rtp_tx.next(header.seq);
        match &self.transform {
            Transform::Cm(t) => t.protect_rtp(buf, len, header.len, header.ssrc, index),
            Transform::Gcm(t) => t.protect_rtp(buf, len, header.len, header.ssrc, index),
        }
    }

    /// Authenticates and (when its E flag is set) decrypts an SRTCP packet in place; returns
    /// the plaintext RTCP length. Rejects replays per sender SSRC with a 64-packet window
    /// over the SRTCP index. On error the buffer's contents are unspecified.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let overhead = self.profile.rtcp_overhead();
        let ssrc = parse_rtcp_header(buf)?;
        if buf.len() < RTCP_HEADER_LEN + overhead {
            return Err(SrtpError::TooShort);
        }
        // The E+index word ends the packet under GCM (RFC 7714 §9.2) and precedes the tag
        // under AES-CM (RFC 3711 §3.4).
        let at = match self.profile {
            SrtpProfile::Aes128CmHmacSha1_80 => buf.len() - overhead,
            SrtpProfile::AeadAes128Gcm => buf.len() - SRTCP_INDEX_LEN,
        };
        let word = u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        let encrypted = word & SRTCP_E_FLAG != 0;
        let index = word & !SRTCP_E_FLAG;
        let slot = self.streams.find(ssrc);
        if let Ok(i) = slot {
            self.streams.get(i).rtcp_rx.check(u64::from(index))?;
        }
        let len = match &self.transform {
            Transform::Cm(t) => t.unprotect_rtcp(buf, ssrc, index, encrypted)?,
            Transform::Gcm(t) => t.unprotect_rtcp(buf, ssrc, index, encrypted)?,
        };
        let i = self.streams.slot(slot, ssrc)?;
        self.streams.get_mut(i).rtcp_rx.accept(u64::from(index));
        Ok(len)
    }

    /// Encrypts and authenticates a (compound) RTCP packet of length `len` in place; `buf`
    /// must have room for `len + rtcp_overhead`; returns the new length. Each sender SSRC
    /// has its own SRTCP index counter, starting at 1 as libsrtp does.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        check_room(buf, len, self.profile.rtcp_overhead())?;
        let ssrc = parse_rtcp_header(&buf[..len])?;
        let slot = self.streams.find(ssrc);
        let i = self.streams.slot(slot, ssrc)?;
        let index = self.streams.get_mut(i).next_rtcp_index();
        match &self.transform {
            Transform::Cm(t) => t.protect_rtcp(buf, len, ssrc, index),
            Transform::Gcm(t) => t.protect_rtcp(buf, len, ssrc, index),
        }
    }
}
