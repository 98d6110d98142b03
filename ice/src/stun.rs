//! STUN Binding messages as ICE uses them (RFC 5389/8489, RFC 8445 §7).
//!
//! Read and written in place, without a general codec: one scan of the raw TLV layout checks
//! the framing and notes where each attribute ICE reads sits (the first of each kind), then
//! FINGERPRINT (CRC-32) and MESSAGE-INTEGRITY (HMAC-SHA1 over the bytes before it, with the
//! header's length as if it ended the message) are checked on those bytes. Nothing is
//! allocated: a check borrows its USERNAME from the datagram, and answers are appended to the
//! caller's buffer. Datagrams that are not STUN, cut short or oversized are refused by the
//! scan, each refusal with its own [`StunError`] variant. Attributes ICE does not read are
//! skipped (SOFTWARE in particular, so that a badly encoded description cannot fail a check).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::StunError;

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
const ATTR_ERROR_CODE: u16 = 0x0009;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
const ATTR_PRIORITY: u16 = 0x0024;
const ATTR_USE_CANDIDATE: u16 = 0x0025;
const ATTR_ICE_CONTROLLED: u16 = 0x8029;
const ATTR_ICE_CONTROLLING: u16 = 0x802a;
/// USERNAME is at most 513 bytes (RFC 5389 §15.3).
const MAX_USERNAME_LEN: usize = 513;
/// ERROR-CODE reason phrases are at most 763 bytes (RFC 5389 §15.6).
const MAX_REASON_LEN: usize = 763;
const INTEGRITY_LEN: usize = 20;

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
    layout.username(buf).ok()
}

/// A binding request that passed its MESSAGE-INTEGRITY and FINGERPRINT checks, borrowing
/// its USERNAME from the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRequest<'a> {
    /// Echoed in the response.
    pub transaction_id: [u8; 12],
    /// USERNAME: `receiver-ufrag:sender-ufrag` (RFC 8445 §7.2.2).
    pub username: &'a str,
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
pub fn parse_binding_request<'a>(
    buf: &'a [u8],
    local_pwd: &str,
) -> Result<BindingRequest<'a>, StunError> {
    check_binding_request(buf, &scan(buf)?, &IntegrityKey::new(local_pwd))
}

/// [`parse_binding_request`] of a datagram already scanned into `layout`.
pub(crate) fn check_binding_request<'a>(
    buf: &'a [u8],
    layout: &Layout,
    local_key: &IntegrityKey,
) -> Result<BindingRequest<'a>, StunError> {
    if layout.message_type != BINDING_REQUEST {
        return Err(StunError::UnexpectedMessage);
    }
    check_fingerprint(buf, layout)?;
    let integrity = layout.integrity.ok_or(StunError::MissingIntegrity)?;
    if layout.username.is_none() {
        return Err(StunError::MissingUsername);
    }
    check_integrity(buf, integrity, local_key)?;
    let username = layout.username(buf)?;
    Ok(BindingRequest {
        transaction_id: transaction_id(buf),
        username,
        use_candidate: layout.use_candidate,
        priority: layout.priority,
        ice_controlling: layout.ice_controlling,
        ice_controlled: layout.ice_controlled,
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
    match layout.integrity {
        Some(at) => check_integrity(buf, at, &IntegrityKey::new(remote_pwd))?,
        None if success => return Err(StunError::MissingIntegrity),
        None => {}
    }
    let tid = transaction_id(buf);
    let mapped = match layout.mapped {
        Some((start, end)) => Some(xor_address(&buf[start..end], &tid)?),
        None => None,
    };
    Ok(BindingResponse {
        transaction_id: tid,
        success,
        mapped,
        error_code: layout.error_code,
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
    sign_binding_success(out, transaction_id, mapped, &IntegrityKey::new(local_pwd))
}

/// [`write_binding_success`] with our password's key.
pub(crate) fn sign_binding_success(
    out: &mut Vec<u8>,
    transaction_id: [u8; 12],
    mapped: SocketAddr,
    local_key: &IntegrityKey,
) -> Result<(), StunError> {
    let start = begin(out, BINDING_SUCCESS, &transaction_id);
    let port = mapped.port() ^ 0x2112;
    match mapped.ip() {
        IpAddr::V4(ip) => {
            attribute_header(out, ATTR_XOR_MAPPED_ADDRESS, 8);
            out.extend_from_slice(&[0, 0x01]);
            out.extend_from_slice(&port.to_be_bytes());
            out.extend(xor(&ip.octets(), &transaction_id));
        }
        IpAddr::V6(ip) => {
            attribute_header(out, ATTR_XOR_MAPPED_ADDRESS, 20);
            out.extend_from_slice(&[0, 0x02]);
            out.extend_from_slice(&port.to_be_bytes());
            out.extend(xor(&ip.octets(), &transaction_id));
        }
    }
    end(out, start, Some(local_key));
    Ok(())
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
    let key = local_pwd.map(IntegrityKey::new);
    sign_binding_error(out, transaction_id, code, key.as_ref())
}

/// [`write_binding_error`] with our password's key.
pub(crate) fn sign_binding_error(
    out: &mut Vec<u8>,
    transaction_id: [u8; 12],
    code: u16,
    local_key: Option<&IntegrityKey>,
) -> Result<(), StunError> {
    if !(300..=599).contains(&code) {
        return Err(StunError::InvalidErrorCode(code));
    }
    let reason = reason_phrase(code).as_bytes();
    let start = begin(out, BINDING_ERROR, &transaction_id);
    attribute_header(out, ATTR_ERROR_CODE, 4 + reason.len());
    // Class (hundreds) and number (the rest), RFC 5389 §15.6; both fit a byte.
    let [class, number] = [code / 100, code % 100].map(|v| u8::try_from(v).unwrap_or(0));
    out.extend_from_slice(&[0, 0, class, number]);
    out.extend_from_slice(reason);
    pad(out);
    end(out, start, local_key);
    Ok(())
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
    let role = (ATTR_ICE_CONTROLLING, tie_breaker);
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
    let role = (ATTR_ICE_CONTROLLED, tie_breaker);
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

/// `role` is the ICE-CONTROLLING or ICE-CONTROLLED attribute type and its tie-breaker.
fn write_check(
    out: &mut Vec<u8>,
    transaction_id: [u8; 12],
    username: &str,
    remote_pwd: &str,
    priority: u32,
    role: (u16, u64),
    use_candidate: bool,
) -> Result<(), StunError> {
    if username.len() > MAX_USERNAME_LEN {
        return Err(StunError::Encode);
    }
    let start = begin(out, BINDING_REQUEST, &transaction_id);
    attribute_header(out, ATTR_USERNAME, username.len());
    out.extend_from_slice(username.as_bytes());
    pad(out);
    attribute_header(out, role.0, 8);
    out.extend_from_slice(&role.1.to_be_bytes());
    attribute_header(out, ATTR_PRIORITY, 4);
    out.extend_from_slice(&priority.to_be_bytes());
    if use_candidate {
        attribute_header(out, ATTR_USE_CANDIDATE, 0);
    }
    end(out, start, Some(&IntegrityKey::new(remote_pwd)));
    Ok(())
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

/// Appends a message header (length zero for now) and returns where the message starts.
fn begin(out: &mut Vec<u8>, message_type: u16, transaction_id: &[u8; 12]) -> usize {
    let start = out.len();
    out.extend_from_slice(&message_type.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&MAGIC_COOKIE);
    out.extend_from_slice(transaction_id);
    start
}

/// Appends an attribute's type and length; the caller appends the value (and its padding).
fn attribute_header(out: &mut Vec<u8>, kind: u16, len: usize) {
    out.extend_from_slice(&kind.to_be_bytes());
    // Callers write values of a few hundred bytes at most (USERNAME is capped).
    out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
}

/// Pads the last attribute's value to a multiple of four bytes with zeros.
fn pad(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(4), 0);
}

/// Sets the header's length to cover what follows it plus `more` bytes still to come.
fn set_length(out: &mut [u8], start: usize, more: usize) {
    let len = out.len() - start - HEADER_LEN + more;
    let len = u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes();
    out[start + 2..start + 4].copy_from_slice(&len);
}

/// Signs (when a password is given) and fingerprints the message that starts at `start`.
fn end(out: &mut Vec<u8>, start: usize, key: Option<&IntegrityKey>) {
    if let Some(key) = key {
        // The length covers MESSAGE-INTEGRITY itself but not FINGERPRINT (RFC 5389 §15.4).
        set_length(out, start, 4 + INTEGRITY_LEN);
        let mut mac = key.mac();
        mac.update(&out[start..]);
        let tag = mac.finalize().into_bytes();
        attribute_header(out, ATTR_MESSAGE_INTEGRITY, INTEGRITY_LEN);
        out.extend_from_slice(&tag);
    }
    set_length(out, start, 8);
    let crc = CRC32.checksum(&out[start..]) ^ FINGERPRINT_XOR;
    attribute_header(out, ATTR_FINGERPRINT, 4);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A short-term password made into its HMAC-SHA1 key once (RFC 5389 §15.4): keying hashes
/// the password's two padded blocks, a third of what signing or checking a consent check
/// costs, so an agent keeps its key for every check instead of its password.
#[derive(Clone)]
pub struct IntegrityKey(Hmac<Sha1>);

impl IntegrityKey {
    /// The key of `pwd`.
    pub fn new(pwd: &str) -> Self {
        // HMAC takes a key of any length.
        Self(Hmac::<Sha1>::new_from_slice(pwd.as_bytes()).unwrap_or_else(|_| unreachable!()))
    }

    fn mac(&self) -> Hmac<Sha1> {
        self.0.clone()
    }
}

impl std::fmt::Debug for IntegrityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IntegrityKey(..)")
    }
}

fn transaction_id(buf: &[u8]) -> [u8; 12] {
    let mut tid = [0; 12];
    tid.copy_from_slice(&buf[8..HEADER_LEN]);
    tid
}

/// An address's bytes XORed with the magic cookie and then the transaction id, as
/// XOR-MAPPED-ADDRESS carries them (RFC 5389 §15.2): the same both ways.
fn xor<'a>(bytes: &'a [u8], tid: &'a [u8; 12]) -> impl Iterator<Item = u8> + 'a {
    bytes
        .iter()
        .zip(MAGIC_COOKIE.iter().chain(tid))
        .map(|(a, b)| a ^ b)
}

/// Decodes an XOR-MAPPED-ADDRESS value (RFC 5389 §15.2).
fn xor_address(value: &[u8], tid: &[u8; 12]) -> Result<SocketAddr, StunError> {
    let port = u16::from_be_bytes([value[2], value[3]]) ^ 0x2112;
    let mut o = [0u8; 16];
    for (o, x) in o.iter_mut().zip(xor(&value[4..], tid)) {
        *o = x;
    }
    let ip = match (value[1], value.len()) {
        (0x01, 8) => IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3])),
        (0x02, 20) => IpAddr::V6(Ipv6Addr::from(o)),
        _ => return Err(StunError::Malformed),
    };
    Ok(SocketAddr::new(ip, port))
}

/// Where the attributes ICE reads sit in a raw message, and the small ones' values (the
/// first attribute of each kind counts).
#[derive(Debug, Default)]
pub(crate) struct Layout {
    pub(crate) message_type: u16,
    /// Value range of the USERNAME.
    username: Option<(usize, usize)>,
    /// Offset of the MESSAGE-INTEGRITY attribute header.
    integrity: Option<usize>,
    /// Offset of the FINGERPRINT attribute header.
    fingerprint: Option<usize>,
    /// Value range of the XOR-MAPPED-ADDRESS (8 or 20 bytes, checked by the scan).
    mapped: Option<(usize, usize)>,
    error_code: Option<u16>,
    priority: Option<u32>,
    use_candidate: bool,
    ice_controlling: Option<u64>,
    ice_controlled: Option<u64>,
}

impl Layout {
    /// The USERNAME of the message scanned from `buf`.
    pub(crate) fn username<'a>(&self, buf: &'a [u8]) -> Result<&'a str, StunError> {
        let (start, end) = self.username.ok_or(StunError::MissingUsername)?;
        std::str::from_utf8(&buf[start..end]).map_err(|_| StunError::Malformed)
    }
}

/// Checks the framing of a STUN message and notes where ICE's attributes sit.
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
        let value = &buf[value_at..value_at + len];
        // FINGERPRINT is always last (RFC 5389 §15.5).
        if layout.fingerprint.is_some() {
            return Err(StunError::Malformed);
        }
        // Only FINGERPRINT (and its SHA-256 sibling from RFC 8489) may follow
        // MESSAGE-INTEGRITY; anything else would not be covered by the integrity check.
        if layout.integrity.is_some()
            && kind != ATTR_FINGERPRINT
            && kind != ATTR_MESSAGE_INTEGRITY_SHA256
        {
            return Err(StunError::AttributeAfterIntegrity);
        }
        match kind {
            ATTR_USERNAME if layout.username.is_none() => {
                if len > MAX_USERNAME_LEN {
                    return Err(StunError::Malformed);
                }
                layout.username = Some((value_at, value_at + len));
            }
            ATTR_MESSAGE_INTEGRITY => {
                if len != INTEGRITY_LEN {
                    return Err(StunError::Malformed);
                }
                layout.integrity = Some(at);
            }
            ATTR_FINGERPRINT => {
                if len != 4 {
                    return Err(StunError::Malformed);
                }
                layout.fingerprint = Some(at);
            }
            ATTR_XOR_MAPPED_ADDRESS if layout.mapped.is_none() => {
                let family_fits = matches!((value.get(1), len), (Some(0x01), 8) | (Some(0x02), 20));
                if !family_fits {
                    return Err(StunError::Malformed);
                }
                layout.mapped = Some((value_at, value_at + len));
            }
            ATTR_ERROR_CODE if layout.error_code.is_none() => {
                if !(4..=4 + MAX_REASON_LEN).contains(&len) {
                    return Err(StunError::Malformed);
                }
                let (class, number) = (u16::from(value[2] & 0x07), u16::from(value[3]));
                if !(3..=6).contains(&class) || number > 99 {
                    return Err(StunError::Malformed);
                }
                layout.error_code = Some(class * 100 + number);
            }
            ATTR_PRIORITY if layout.priority.is_none() => {
                let v: [u8; 4] = value.try_into().map_err(|_| StunError::Malformed)?;
                layout.priority = Some(u32::from_be_bytes(v));
            }
            ATTR_USE_CANDIDATE => {
                if len != 0 {
                    return Err(StunError::Malformed);
                }
                layout.use_candidate = true;
            }
            ATTR_ICE_CONTROLLING if layout.ice_controlling.is_none() => {
                let v: [u8; 8] = value.try_into().map_err(|_| StunError::Malformed)?;
                layout.ice_controlling = Some(u64::from_be_bytes(v));
            }
            ATTR_ICE_CONTROLLED if layout.ice_controlled.is_none() => {
                let v: [u8; 8] = value.try_into().map_err(|_| StunError::Malformed)?;
                layout.ice_controlled = Some(u64::from_be_bytes(v));
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

/// Checks the MESSAGE-INTEGRITY whose attribute header sits at `at` (RFC 5389 §15.4): the
/// HMAC covers the message before it, with the header's length counting up to its end.
fn check_integrity(buf: &[u8], at: usize, key: &IntegrityKey) -> Result<(), StunError> {
    let len =
        u16::try_from(at + 4 + INTEGRITY_LEN - HEADER_LEN).map_err(|_| StunError::Malformed)?;
    let mut mac = key.mac();
    mac.update(&buf[..2]);
    mac.update(&len.to_be_bytes());
    mac.update(&buf[4..at]);
    mac.verify_slice(&buf[at + 4..at + 4 + INTEGRITY_LEN])
        .map_err(|_| StunError::BadIntegrity)
}
