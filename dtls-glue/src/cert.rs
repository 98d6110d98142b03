//! The server's DTLS certificate and SDP fingerprints (RFC 8122 §5).
//!
//! WebRTC authenticates a DTLS peer by the hash of its certificate, signalled in SDP as
//! `a=fingerprint:sha-256 AB:CD:...`, not by a CA chain. One self-signed ECDSA P-256
//! certificate is generated per server process and shared by every peer ([`Certificate`] is a
//! cheap `Clone`); each peer's [`crate::dtls::DtlsEndpoint`] checks the certificate the peer
//! presents against the [`Fingerprint`] from that peer's SDP.

use std::fmt;
use std::sync::Arc;

use rtc_dtls::crypto_provider::RTCCryptoProvider;
use sha1::Sha1;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use crate::dtls::DtlsError;

/// The subject alternative name written into generated certificates. Browsers ignore it: only
/// the fingerprint matters.
const CERTIFICATE_NAME: &str = "livekit-rs";

/// A self-signed ECDSA P-256 certificate with its private key, ready for DTLS.
///
/// Cloning shares the key material (an `Arc`), so one certificate generated at start-up can be
/// handed to every peer.
#[derive(Clone)]
pub struct Certificate {
    inner: Arc<CertificateInner>,
}

struct CertificateInner {
    dtls: rtc_dtls::crypto::Certificate,
    fingerprint: Fingerprint,
    provider: Arc<dyn RTCCryptoProvider>,
}

impl Certificate {
    /// Generates a fresh self-signed ECDSA P-256 (SHA-256 signature) certificate.
    ///
    /// # Errors
    ///
    /// [`DtlsError::Certificate`] if the crypto backend cannot produce the key or certificate.
    pub fn generate() -> Result<Self, DtlsError> {
        let provider = rtc_dtls::crypto_provider::default_provider()
            .map_err(|error| DtlsError::Certificate(error.to_string()))?;
        let dtls = rtc_dtls::crypto::Certificate::generate_self_signed_with_alg(
            vec![CERTIFICATE_NAME.to_owned()],
            &rcgen::PKCS_ECDSA_P256_SHA256,
            provider.crypto(),
        )
        .map_err(|error| DtlsError::Certificate(error.to_string()))?;
        let der = dtls
            .certificate
            .first()
            .ok_or_else(|| DtlsError::Certificate("no certificate was generated".to_owned()))?;
        let fingerprint = Fingerprint::of_der(HashAlgorithm::Sha256, der.as_ref());
        Ok(Self {
            inner: Arc::new(CertificateInner {
                dtls,
                fingerprint,
                provider,
            }),
        })
    }

    /// The SHA-256 fingerprint of this certificate, for the SDP `a=fingerprint` line.
    pub fn fingerprint(&self) -> Fingerprint {
        self.inner.fingerprint.clone()
    }

    /// The certificate in the DTLS crate's form.
    pub(crate) fn dtls_certificate(&self) -> &rtc_dtls::crypto::Certificate {
        &self.inner.dtls
    }

    /// The crypto provider the certificate's key was imported into; the handshake must use the
    /// same one.
    pub(crate) fn provider(&self) -> &Arc<dyn RTCCryptoProvider> {
        &self.inner.provider
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("fingerprint", &self.inner.fingerprint)
            .finish_non_exhaustive()
    }
}

/// The hash functions RFC 8122 §5 lets an SDP fingerprint use (MD5 and MD2 are refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HashAlgorithm {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlgorithm {
    /// Matches the SDP token case-insensitively (RFC 8122 §5: "hash-func" is a token, and
    /// implementations write it in either case).
    fn from_name(name: &str) -> Option<Self> {
        let name = name.trim();
        [
            Self::Sha1,
            Self::Sha224,
            Self::Sha256,
            Self::Sha384,
            Self::Sha512,
        ]
        .into_iter()
        .find(|algorithm| algorithm.name().eq_ignore_ascii_case(name))
    }

    fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha-1",
            Self::Sha224 => "sha-224",
            Self::Sha256 => "sha-256",
            Self::Sha384 => "sha-384",
            Self::Sha512 => "sha-512",
        }
    }

    fn digest_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha224 => 28,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => Sha1::digest(data).to_vec(),
            Self::Sha224 => Sha224::digest(data).to_vec(),
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha384 => Sha384::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

/// A certificate fingerprint as carried in SDP (`a=fingerprint:<algorithm> <value>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// The hash function's SDP name, lower case: `"sha-256"` for the ones we generate.
    pub algorithm: String,
    /// The digest of the DER-encoded certificate.
    pub bytes: Vec<u8>,
}

impl Fingerprint {
    /// Hashes a DER certificate with `algorithm`.
    fn of_der(algorithm: HashAlgorithm, der: &[u8]) -> Self {
        Self {
            algorithm: algorithm.name().to_owned(),
            bytes: algorithm.digest(der),
        }
    }

    /// The value part of the SDP attribute: upper-case hex pairs joined by colons,
    /// `"AB:CD:..."` (RFC 8122 §5).
    pub fn to_sdp_value(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut out = String::with_capacity(self.bytes.len() * 3);
        for (index, byte) in self.bytes.iter().enumerate() {
            if index > 0 {
                out.push(':');
            }
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        out
    }

    /// Parses the two parts of an SDP `a=fingerprint` attribute: the hash name (any case) and
    /// the colon-separated hex value (any case). The value's length must match the hash.
    ///
    /// # Errors
    ///
    /// [`DtlsError::UnsupportedFingerprintAlgorithm`] for a hash other than SHA-1/-224/-256/
    /// -384/-512, [`DtlsError::InvalidFingerprint`] for a malformed value.
    pub fn parse(algorithm: &str, value: &str) -> Result<Self, DtlsError> {
        let hash = HashAlgorithm::from_name(algorithm)
            .ok_or_else(|| DtlsError::UnsupportedFingerprintAlgorithm(algorithm.to_owned()))?;
        let mut bytes = Vec::with_capacity(hash.digest_len());
        for pair in value.trim().split(':') {
            let &[high, low] = pair.as_bytes() else {
                return Err(DtlsError::InvalidFingerprint(format!(
                    "{pair:?} is not a pair of hex digits"
                )));
            };
            let (Some(high), Some(low)) = (hex_value(high), hex_value(low)) else {
                return Err(DtlsError::InvalidFingerprint(format!(
                    "{pair:?} is not a pair of hex digits"
                )));
            };
            bytes.push((high << 4) | low);
        }
        if bytes.len() != hash.digest_len() {
            return Err(DtlsError::InvalidFingerprint(format!(
                "{} bytes for {}, which has {}",
                bytes.len(),
                hash.name(),
                hash.digest_len()
            )));
        }
        Ok(Self {
            algorithm: hash.name().to_owned(),
            bytes,
        })
    }

    /// Checks that the algorithm is one we can compute and the digest has its length, so a
    /// fingerprint built field by field fails early rather than at handshake time.
    pub(crate) fn validate(&self) -> Result<(), DtlsError> {
        let hash = HashAlgorithm::from_name(&self.algorithm)
            .ok_or_else(|| DtlsError::UnsupportedFingerprintAlgorithm(self.algorithm.clone()))?;
        if self.bytes.len() != hash.digest_len() {
            return Err(DtlsError::InvalidFingerprint(format!(
                "{} bytes for {}, which has {}",
                self.bytes.len(),
                hash.name(),
                hash.digest_len()
            )));
        }
        Ok(())
    }

    /// Whether the DER certificate `der` hashes to this fingerprint.
    pub(crate) fn matches_der(&self, der: &[u8]) -> bool {
        HashAlgorithm::from_name(&self.algorithm).is_some_and(|hash| hash.digest(der) == self.bytes)
    }
}

impl fmt::Display for Fingerprint {
    /// The whole attribute value: `sha-256 AB:CD:...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.algorithm, self.to_sdp_value())
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificate_is_ecdsa_p256_with_a_sha256_fingerprint() {
        let cert = Certificate::generate().unwrap();
        let fingerprint = cert.fingerprint();
        assert_eq!(fingerprint.algorithm, "sha-256");
        assert_eq!(fingerprint.bytes.len(), 32);

        let der = cert.dtls_certificate().certificate[0].as_ref();
        assert!(fingerprint.matches_der(der));
        assert_eq!(fingerprint.bytes, Sha256::digest(der).to_vec());
        // id-ecPublicKey (1.2.840.10045.2.1) and prime256v1 (1.2.840.10045.3.1.7), DER-encoded.
        let ec_public_key = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
        let prime256v1 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        assert!(der.windows(ec_public_key.len()).any(|w| w == ec_public_key));
        assert!(der.windows(prime256v1.len()).any(|w| w == prime256v1));
    }

    #[test]
    fn clones_share_the_certificate_and_generations_differ() {
        let a = Certificate::generate().unwrap();
        let b = a.clone();
        assert!(Arc::ptr_eq(&a.inner, &b.inner));
        let c = Certificate::generate().unwrap();
        assert_ne!(a.fingerprint(), c.fingerprint());
    }

    #[test]
    fn sdp_value_is_upper_case_colon_separated_hex() {
        let fingerprint = Fingerprint {
            algorithm: "sha-1".to_owned(),
            bytes: vec![0x00, 0x0a, 0xbc, 0xff],
        };
        assert_eq!(fingerprint.to_sdp_value(), "00:0A:BC:FF");
        assert_eq!(fingerprint.to_string(), "sha-1 00:0A:BC:FF");
    }

    #[test]
    fn parse_round_trips_and_accepts_any_case() {
        let cert = Certificate::generate().unwrap();
        let fingerprint = cert.fingerprint();
        let value = fingerprint.to_sdp_value();
        assert_eq!(Fingerprint::parse("sha-256", &value).unwrap(), fingerprint);
        assert_eq!(
            Fingerprint::parse("SHA-256", &value.to_lowercase()).unwrap(),
            fingerprint
        );
    }

    #[test]
    fn parse_checks_the_length_against_the_algorithm() {
        let twenty = vec!["AB"; 20].join(":");
        let parsed = Fingerprint::parse("sha-1", &twenty).unwrap();
        assert_eq!(parsed.bytes, vec![0xab; 20]);
        assert!(matches!(
            Fingerprint::parse("sha-256", &twenty),
            Err(DtlsError::InvalidFingerprint(_))
        ));
        let sixty_four = vec!["01"; 64].join(":");
        assert_eq!(
            Fingerprint::parse("sha-512", &sixty_four).unwrap().bytes,
            vec![1; 64]
        );
    }

    #[test]
    fn parse_rejects_malformed_values_and_unknown_hashes() {
        let good = vec!["AB"; 32].join(":");
        assert!(matches!(
            Fingerprint::parse("md5", &vec!["AB"; 16].join(":")),
            Err(DtlsError::UnsupportedFingerprintAlgorithm(_))
        ));
        for bad in [
            "",
            "AB:CD",
            &good.replacen("AB", "A", 1),
            &good.replacen("AB", "ABC", 1),
            &good.replacen("AB", "G0", 1),
            &good.replacen(':', "::", 1),
            &format!("{good}:"),
            &good.replacen("AB", "é", 1),
        ] {
            assert!(
                matches!(
                    Fingerprint::parse("sha-256", bad),
                    Err(DtlsError::InvalidFingerprint(_))
                ),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn matches_der_uses_the_fingerprint_algorithm() {
        let der = b"not really a certificate";
        let sha384 = Fingerprint {
            algorithm: "sha-384".to_owned(),
            bytes: Sha384::digest(der).to_vec(),
        };
        assert!(sha384.matches_der(der));
        assert!(!sha384.matches_der(b"another one"));
        let unknown = Fingerprint {
            algorithm: "md5".to_owned(),
            bytes: vec![0; 16],
        };
        assert!(!unknown.matches_der(der));
        assert!(unknown.validate().is_err());
        assert!(sha384.validate().is_ok());
    }
}
