//! STUN Binding messages as ICE uses them (RFC 5389/8489, RFC 8445 §7).
//!
//! Parsing is two-step: a cheap scan of the raw TLV layout first (framing, where USERNAME,
//! MESSAGE-INTEGRITY and FINGERPRINT sit, the CRC-32 of FINGERPRINT), then `stun_codec`
//! decodes the attributes and checks the short-term MESSAGE-INTEGRITY. The scan rejects
//! datagrams that are not STUN, cut short or oversized before any allocation happens, and
//! it gives each refusal its own [`StunError`] variant.

use std::net::SocketAddr;

use bytecodec::{DecodeExt, EncodeExt};
use stun_codec::rfc5245::attributes::{IceControlled, IceControlling, Priority, UseCandidate};
use stun_codec::rfc5389::attributes::{
    ErrorCode, Fingerprint, MessageIntegrity, Username, XorMappedAddress,
};
use stun_codec::rfc5389::methods::BINDING;
use stun_codec::{Message, MessageClass, MessageDecoder, MessageEncoder, TransactionId};

use crate::StunError;

/// The attributes this crate reads or writes. Every other attribute is kept raw by
/// `stun_codec` (so MESSAGE-INTEGRITY still covers its exact bytes) and otherwise ignored;
/// SOFTWARE in particular is left raw so that a badly encoded description cannot make a
/// check fail.
pub(crate) mod attrs {
    use super::{
        ErrorCode, Fingerprint, IceControlled, IceControlling, MessageIntegrity, Priority,
        UseCandidate, Username, XorMappedAddress,
    };

    stun_codec::define_attribute_enums!(
        IceAttribute,
        IceAttributeDecoder,
        IceAttributeEncoder,
        [
            Username,
            MessageIntegrity,
            ErrorCode,
            XorMappedAddress,
            Fingerprint,
            Priority,
            UseCandidate,
            IceControlled,
            IceControlling
        ]
    );
}
pub(crate) use attrs::IceAttribute;

/// The magic cookie, RFC 5389 §6.
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const HEADER_LEN: usize = 20;
/// Binding requests and responses are a few hundred bytes; anything much larger is not ICE.
pub const MAX_MESSAGE_LEN: usize = 2048;
/// XORed into the CRC-32 of FINGERPRINT, RFC 5389 §15.5.
const FINGERPRINT_XOR: u32 = 0x5354_554e;
static CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const ATTR_MESSAGE_INTEGRITY_SHA256: u16 = 0x001c;
const ATTR_FINGERPRINT: u16 = 0x8028;

/// Message types (method and class bits together), RFC 5389 §6.
pub(crate) const BINDING_REQUEST: u16 = 0x0001;
pub(crate) const BINDING_INDICATION: u16 = 0x0011;
pub(crate) const BINDING_SUCCESS: u16 = 0x0101;
pub(crate) const BINDING_ERROR: u16 = 0x0111;

/// Whether `buf` looks like a STUN message: the first byte is 0..=3 (RFC 7983 demultiplexing)
/// and the magic cookie sits at bytes 4..8 of a full 20-byte header.
pub fn is_stun(buf: &[u8]) -> bool {
    buf.len() >= HEADER_LEN && buf[0] <= 3 && buf[4..8] == MAGIC_COOKIE
}

/// The USERNAME of a binding request, unverified.
///
/// The server uses it to find the peer (by the `local:remote` ufrag pair) before the source
/// address is known; the check itself must still pass [`parse_binding_request`].
pub fn stun_username(buf: &[u8]) -> Option<String> {
    stun_username_str(buf).map(str::to_owned)
}

/// [`stun_username`] without the allocation: the USERNAME borrowed from `buf`.
pub fn stun_username_str(buf: &[u8]) -> Option<&str> {
    let layout = scan(buf).ok()?;
    if layout.message_type != BINDING_REQUEST {
        return None;
    }
    let (start, end) = layout.username?;
    std::str::from_utf8(&buf[start..end]).ok()
}

/// A binding request that passed its MESSAGE-INTEGRITY and FINGERPRINT checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRequest {
    /// Echoed in the response.
    pub transaction_id: [u8; 12],
    /// USERNAME: `receiver-ufrag:sender-ufrag` (RFC 8445 §7.2.2).
    pub username: String,
    /// USE-CANDIDATE: the controlling agent nominates this pair.
    pub use_candidate: bool,
    /// PRIORITY of the peer-reflexive candidate the sender would learn.
    pub priority: Option<u32>,
    /// ICE-CONTROLLING tie-breaker, when the sender is controlling.
    pub ice_controlling: Option<u64>,
    /// ICE-CONTROLLED tie-breaker, when the sender is controlled.
    pub ice_controlled: Option<u64>,
}

/// A binding response, verified against the password of the agent the request went to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingResponse {
    /// Matches the request this answers.
    pub transaction_id: [u8; 12],
    /// Success response (`true`) or error response.
    pub success: bool,
    /// XOR-MAPPED-ADDRESS: our address as the peer saw it.
    pub mapped: Option<SocketAddr>,
    /// ERROR-CODE of an error response.
    pub error_code: Option<u16>,
}

/// Parses a binding request and checks it: class and method, FINGERPRINT, and
/// MESSAGE-INTEGRITY with the short-term credential `local_pwd` (RFC 8445 §7.3).
pub fn parse_binding_request(buf: &[u8], local_pwd: &str) -> Result<BindingRequest, StunError> {
    let layout = scan(buf)?;
    if layout.message_type != BINDING_REQUEST {
        return Err(StunError::UnexpectedMessage);
    }
    check_fingerprint(buf, &layout)?;
    if !layout.integrity {
        return Err(StunError::MissingIntegrity);
    }
    if layout.username.is_none() {
        return Err(StunError::MissingUsername);
    }
    let message = decode(buf)?;
    check_integrity(&message, local_pwd)?;
    let username = message
        .get_attribute::<Username>()
        .ok_or(StunError::MissingUsername)?
        .name()
        .to_owned();
    Ok(BindingRequest {
        transaction_id: *message.transaction_id().as_bytes(),
        username,
        use_candidate: message.get_attribute::<UseCandidate>().is_some(),
        priority: message.get_attribute::<Priority>().map(Priority::prio),
        ice_controlling: message
            .get_attribute::<IceControlling>()
            .map(IceControlling::prio),
        ice_controlled: message
            .get_attribute::<IceControlled>()
            .map(IceControlled::prio),
    })
}

/// Parses a binding response to one of our requests, checking FINGERPRINT and
/// MESSAGE-INTEGRITY with `remote_pwd` (the password of the agent we sent the request to).
///
/// A success response must carry MESSAGE-INTEGRITY. An error response may lack it (a 400 or
/// 401 cannot be signed when the request could not be authenticated, RFC 5389 §10.1.2); when
/// present it is checked.
pub fn parse_binding_response(buf: &[u8], remote_pwd: &str) -> Result<BindingResponse, StunError> {
    let layout = scan(buf)?;
    let success = match layout.message_type {
        BINDING_SUCCESS => true,
        BINDING_ERROR => false,
        _ => return Err(StunError::UnexpectedMessage),
    };
    check_fingerprint(buf, &layout)?;
    if success && !layout.integrity {
        return Err(StunError::MissingIntegrity);
    }
    let message = decode(buf)?;
    if layout.integrity {
        check_integrity(&message, remote_pwd)?;
    }
    Ok(BindingResponse {
        transaction_id: *message.transaction_id().as_bytes(),
        success,
        mapped: message
            .get_attribute::<XorMappedAddress>()
            .map(XorMappedAddress::address),
        error_code: message.get_attribute::<ErrorCode>().map(ErrorCode::code),
    })
}

/// Appends a binding success response to `out`: XOR-MAPPED-ADDRESS = `mapped`,
/// MESSAGE-INTEGRITY with `local_pwd`, FINGERPRINT (RFC 8445 §7.3.1.4).
pub fn write_binding_success(
    out: &mut Vec<u8>,
    transaction_id: [u8; 12],
    mapped: SocketAddr,
    local_pwd: &str,
) -> Result<(), StunError> {
    let mut message = Message::new(
        MessageClass::SuccessResponse,
        BINDING,
        TransactionId::new(transaction_id),
    );
    message.add_attribute(XorMappedAddress::new(mapped));
    finish(message, Some(local_pwd), out)
}

/// Appends a binding error response to `out`: ERROR-CODE `code` (400 Bad Request,
/// 401 Unauthorized, 487 Role Conflict, ...), MESSAGE-INTEGRITY when `local_pwd` is given
/// (only for a request that was authenticated), FINGERPRINT.
pub fn write_binding_error(
    out: &mut Vec<u8>,
    transaction_id: [u8; 12],
    code: u16,
    local_pwd: Option<&str>,
) -> Result<(), StunError> {
    if !(300..=599).contains(&code) {
        return Err(StunError::InvalidErrorCode(code));
    }
    let error = ErrorCode::new(code, reason_phrase(code).to_owned())
        .map_err(|_| StunError::InvalidErrorCode(code))?;
    let mut message = Message::new(
        MessageClass::ErrorResponse,
        BINDING,
        TransactionId::new(transaction_id),
    );
    message.add_attribute(error);
    finish(message, local_pwd, out)
}

/// Appends a connectivity check to `out`, as a controlling full agent sends it
/// (RFC 8445 §7.2.2): USERNAME `remote:local`, ICE-CONTROLLING, PRIORITY, USE-CANDIDATE when
/// nominating, MESSAGE-INTEGRITY with the remote password, FINGERPRINT.
pub fn write_binding_request(
    out: &mut Vec<u8>,
    transaction_id: [u8; 12],
    username: &str,
    remote_pwd: &str,
    priority: u32,
    tie_breaker: u64,
    use_candidate: bool,
) -> Result<(), StunError> {
    let role = IceAttribute::IceControlling(IceControlling::new(tie_breaker));
    write_check(
        out,
        transaction_id,
        username,
        remote_pwd,
        priority,
        role,
        use_candidate,
    )
}

/// Appends a check as the controlled agent sends it (a consent check, RFC 7675 §5.1):
/// USERNAME `remote:local`, ICE-CONTROLLED, PRIORITY, MESSAGE-INTEGRITY with the remote
/// password, FINGERPRINT.
pub fn write_controlled_check(
    out: &mut Vec<u8>,
    transaction_id: [u8; 12],
    username: &str,
    remote_pwd: &str,
    priority: u32,
    tie_breaker: u64,
) -> Result<(), StunError> {
    let role = IceAttribute::IceControlled(IceControlled::new(tie_breaker));
    write_check(
        out,
        transaction_id,
        username,
        remote_pwd,
        priority,
        role,
        false,
    )
}

fn write_check(
    out: &mut Vec<u8>,
    transaction_id: [u8; 12],
    username: &str,
    remote_pwd: &str,
    priority: u32,
    role: IceAttribute,
    use_candidate: bool,
) -> Result<(), StunError> {
    let mut message = Message::new(
        MessageClass::Request,
        BINDING,
        TransactionId::new(transaction_id),
    );
    message.add_attribute(Username::new(username.to_owned()).map_err(|_| StunError::Encode)?);
    message.add_attribute(role);
    message.add_attribute(Priority::new(priority));
    if use_candidate {
        message.add_attribute(UseCandidate::new());
    }
    finish(message, Some(remote_pwd), out)
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        420 => "Unknown Attribute",
        487 => "Role Conflict",
        500 => "Server Error",
        _ => "Error",
    }
}

/// Signs (when a password is given), fingerprints and encodes `message` onto `out`.
pub(crate) fn finish(
    mut message: Message<IceAttribute>,
    pwd: Option<&str>,
    out: &mut Vec<u8>,
) -> Result<(), StunError> {
    if let Some(pwd) = pwd {
        let integrity = MessageIntegrity::new_short_term_credential(&message, pwd)
            .map_err(|_| StunError::Encode)?;
        message.add_attribute(integrity);
    }
    let fingerprint = Fingerprint::new(&message).map_err(|_| StunError::Encode)?;
    message.add_attribute(fingerprint);
    let bytes = MessageEncoder::new()
        .encode_into_bytes(message)
        .map_err(|_| StunError::Encode)?;
    out.extend_from_slice(&bytes);
    Ok(())
}

/// Where the attributes ICE cares about sit in a raw message.
#[derive(Debug, Default)]
pub(crate) struct Layout {
    pub(crate) message_type: u16,
    /// Value range of the first USERNAME.
    username: Option<(usize, usize)>,
    integrity: bool,
    /// Offset of the FINGERPRINT attribute header.
    fingerprint: Option<usize>,
}

/// Checks the framing of a STUN message without decoding attribute values.
pub(crate) fn scan(buf: &[u8]) -> Result<Layout, StunError> {
    if buf.len() > MAX_MESSAGE_LEN {
        return Err(StunError::TooLarge);
    }
    if !is_stun(buf) {
        return Err(StunError::NotStun);
    }
    let body_len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if body_len % 4 != 0 || HEADER_LEN + body_len != buf.len() {
        return Err(StunError::BadLength);
    }
    let mut layout = Layout {
        message_type: u16::from_be_bytes([buf[0], buf[1]]),
        ..Layout::default()
    };
    let mut at = HEADER_LEN;
    while at < buf.len() {
        // Attributes are padded to four bytes and the body length is a multiple of four, so
        // at least a full attribute header remains here.
        let header = buf.get(at..at + 4).ok_or(StunError::Malformed)?;
        let kind = u16::from_be_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let value_at = at + 4;
        let next = value_at + len.next_multiple_of(4);
        if next > buf.len() {
            return Err(StunError::Malformed);
        }
        // FINGERPRINT is always last (RFC 5389 §15.5).
        if layout.fingerprint.is_some() {
            return Err(StunError::Malformed);
        }
        // Only FINGERPRINT (and its SHA-256 sibling from RFC 8489) may follow
        // MESSAGE-INTEGRITY; anything else would not be covered by the integrity check.
        if layout.integrity && kind != ATTR_FINGERPRINT && kind != ATTR_MESSAGE_INTEGRITY_SHA256 {
            return Err(StunError::AttributeAfterIntegrity);
        }
        match kind {
            ATTR_USERNAME if layout.username.is_none() => {
                layout.username = Some((value_at, value_at + len));
            }
            ATTR_MESSAGE_INTEGRITY => {
                if len != 20 {
                    return Err(StunError::Malformed);
                }
                layout.integrity = true;
            }
            ATTR_FINGERPRINT => {
                if len != 4 {
                    return Err(StunError::Malformed);
                }
                layout.fingerprint = Some(at);
            }
            _ => {}
        }
        at = next;
    }
    Ok(layout)
}

/// FINGERPRINT is required on every ICE message (RFC 8445 §7.2.2) and must match.
fn check_fingerprint(buf: &[u8], layout: &Layout) -> Result<(), StunError> {
    let at = layout.fingerprint.ok_or(StunError::MissingFingerprint)?;
    // `scan` checked that the four value bytes follow the attribute header.
    let value = buf.get(at + 4..at + 8).ok_or(StunError::Malformed)?;
    let carried = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
    if CRC32.checksum(&buf[..at]) ^ FINGERPRINT_XOR != carried {
        return Err(StunError::BadFingerprint);
    }
    Ok(())
}

fn check_integrity(message: &Message<IceAttribute>, pwd: &str) -> Result<(), StunError> {
    message
        .get_attribute::<MessageIntegrity>()
        .ok_or(StunError::MissingIntegrity)?
        .check_short_term_credential(pwd)
        .map_err(|_| StunError::BadIntegrity)
}

fn decode(buf: &[u8]) -> Result<Message<IceAttribute>, StunError> {
    match MessageDecoder::<IceAttribute>::new().decode_from_bytes(buf) {
        Ok(Ok(message)) => Ok(message),
        _ => Err(StunError::Malformed),
    }
}
