//! Why a STUN message was refused or could not be written.

use thiserror::Error;

/// Why a STUN message was refused, or could not be written.
///
/// Every variant names what happened, so that a driver can count dropped datagrams by reason
/// without formatting anything.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum StunError {
    /// The datagram does not start with a STUN header (RFC 5389 §6: two zero bits, the magic
    /// cookie, a 20-byte header).
    #[error("not a STUN message")]
    NotStun,
    /// The datagram is larger than any STUN message ICE exchanges.
    #[error("STUN message too large")]
    TooLarge,
    /// The header length disagrees with the datagram, or is not a multiple of four.
    #[error("STUN length field does not match the datagram")]
    BadLength,
    /// The attributes do not tile the message body, or an attribute has the wrong size.
    #[error("malformed STUN attributes")]
    Malformed,
    /// An attribute other than FINGERPRINT follows MESSAGE-INTEGRITY (RFC 5389 §15.4).
    #[error("attribute after MESSAGE-INTEGRITY")]
    AttributeAfterIntegrity,
    /// The message is not the class or method that was expected here.
    #[error("unexpected STUN message class or method")]
    UnexpectedMessage,
    /// A binding request without USERNAME (RFC 8445 §7.2.2).
    #[error("missing USERNAME")]
    MissingUsername,
    /// USERNAME is not `local:remote`, or names a fragment we do not know.
    #[error("unknown USERNAME")]
    UnknownUsername,
    /// The message carries no MESSAGE-INTEGRITY where ICE requires it.
    #[error("missing MESSAGE-INTEGRITY")]
    MissingIntegrity,
    /// MESSAGE-INTEGRITY does not match the short-term password.
    #[error("MESSAGE-INTEGRITY check failed")]
    BadIntegrity,
    /// The message carries no FINGERPRINT (RFC 8445 §7.2.2 requires it).
    #[error("missing FINGERPRINT")]
    MissingFingerprint,
    /// FINGERPRINT does not match the message's CRC-32.
    #[error("FINGERPRINT check failed")]
    BadFingerprint,
    /// A check whose transaction id was just seen from another source address: a replay,
    /// the peer's or an on-path attacker's fault.
    #[error("check replayed from another address")]
    Replayed,
    /// An ERROR-CODE outside 300..=599 was asked for.
    #[error("invalid STUN error code {0}")]
    InvalidErrorCode(u16),
    /// A value could not be encoded (for example a USERNAME longer than 513 bytes).
    #[error("STUN message could not be encoded")]
    Encode,
}
