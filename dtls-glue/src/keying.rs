//! DTLS→SRTP keying: once the handshake reports `Connected`, the negotiated protection
//! profile and the `EXTRACTOR-dtls_srtp` export become one [`SrtpSession`], an inbound and an
//! outbound [`SrtpContext`]. Both roles (the server's engine and our own client) key here.
//!
//! RFC 5764 §4.2: the export is `client_key | server_key | client_salt | server_salt`; the
//! DTLS client's half protects what the client sends, so which half is ours depends only on
//! the DTLS role, never on who offered or answered.

use crate::srtp::{SrtpContext, SrtpError, SrtpKeys, SrtpProfile};

/// Why the SRTP contexts could not be built from a completed handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyingError {
    /// The handshake negotiated a `use_srtp` profile we do not implement.
    #[error("unknown SRTP profile {0:#06x}")]
    UnknownProfile(u16),
    /// The keying material does not fit the profile, or a context refused its keys.
    #[error(transparent)]
    Srtp(#[from] SrtpError),
}

/// Both SRTP directions of one transport, keyed from one DTLS handshake.
#[derive(Debug)]
pub struct SrtpSession {
    /// Unprotects what the peer sends (the peer's keys).
    pub inbound: SrtpContext,
    /// Protects what we send (our keys).
    pub outbound: SrtpContext,
}

impl SrtpSession {
    /// Keys both directions from the fields of `DtlsEvent::Connected`: the DTLS
    /// `use_srtp` profile id, the exported keying material, and whether we were the DTLS
    /// client.
    pub fn from_dtls(
        profile_id: u16,
        keying_material: &[u8],
        we_are_client: bool,
    ) -> Result<Self, KeyingError> {
        let profile =
            SrtpProfile::from_dtls_id(profile_id).ok_or(KeyingError::UnknownProfile(profile_id))?;
        let keys = SrtpKeys::from_exporter(profile, keying_material, we_are_client)?;
        Ok(Self {
            inbound: SrtpContext::new(profile, &keys.remote_key, &keys.remote_salt)?,
            outbound: SrtpContext::new(profile, &keys.local_key, &keys.local_salt)?,
        })
    }

    /// The negotiated profile.
    pub fn profile(&self) -> SrtpProfile {
        self.outbound.profile()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTP: [u8; 16] = [
        0x80, 0x60, 0x00, 0x07, 0x00, 0x00, 0x04, 0xd2, 0x00, 0x00, 0xab, 0xcd, 1, 2, 3, 4,
    ];

    fn material(profile: SrtpProfile) -> Vec<u8> {
        let len = 2 * (profile.key_len() + profile.salt_len());
        (0..len).map(|i| i as u8).collect()
    }

    /// One side protects, the other unprotects, in each direction.
    fn carries_both_ways(profile: SrtpProfile) {
        let m = material(profile);
        let mut client = SrtpSession::from_dtls(profile.dtls_id(), &m, true).unwrap();
        let mut server = SrtpSession::from_dtls(profile.dtls_id(), &m, false).unwrap();
        assert_eq!(client.profile(), profile);
        let one_way = |from: &mut SrtpSession, to: &mut SrtpSession| {
            let mut buf = RTP.to_vec();
            buf.resize(RTP.len() + profile.rtp_overhead(), 0);
            let n = from.outbound.protect_rtp(&mut buf, RTP.len()).unwrap();
            assert_ne!(&buf[12..16], &RTP[12..16], "the payload is encrypted");
            let plain = to.inbound.unprotect_rtp(&mut buf[..n]).unwrap();
            assert_eq!(&buf[..plain], &RTP);
        };
        one_way(&mut client, &mut server);
        one_way(&mut server, &mut client);
    }

    #[test]
    fn client_and_server_halves_match_for_gcm_and_cm() {
        carries_both_ways(SrtpProfile::AeadAes128Gcm);
        carries_both_ways(SrtpProfile::Aes128CmHmacSha1_80);
    }

    #[test]
    fn the_same_role_on_both_ends_does_not_authenticate() {
        let p = SrtpProfile::AeadAes128Gcm;
        let m = material(p);
        let mut a = SrtpSession::from_dtls(p.dtls_id(), &m, true).unwrap();
        let mut b = SrtpSession::from_dtls(p.dtls_id(), &m, true).unwrap();
        let mut buf = RTP.to_vec();
        buf.resize(RTP.len() + p.rtp_overhead(), 0);
        let n = a.outbound.protect_rtp(&mut buf, RTP.len()).unwrap();
        assert_eq!(
            b.inbound.unprotect_rtp(&mut buf[..n]),
            Err(SrtpError::AuthFailed)
        );
    }

    #[test]
    fn unknown_profiles_and_short_material_are_refused() {
        assert_eq!(
            SrtpSession::from_dtls(0x0002, &[0; 60], true).unwrap_err(),
            KeyingError::UnknownProfile(2)
        );
        assert_eq!(
            KeyingError::UnknownProfile(2).to_string(),
            "unknown SRTP profile 0x0002"
        );
        assert!(matches!(
            SrtpSession::from_dtls(SrtpProfile::AeadAes128Gcm.dtls_id(), &[0; 10], false),
            Err(KeyingError::Srtp(SrtpError::BadMaterialLength { .. }))
        ));
    }
}
