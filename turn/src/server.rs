//! The TURN server state machine: allocations, permissions, channels, lifetimes.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use bytecodec::{DecodeExt, EncodeExt};
use hmac::{Hmac, Mac};
use rustc_hash::FxHashMap;
use sha2::Sha256;
use stun_codec::rfc5389::attributes::{
    ErrorCode, Fingerprint, MessageIntegrity, Nonce, Realm, Software, Username, XorMappedAddress,
};
use stun_codec::rfc5389::methods::BINDING;
use stun_codec::rfc5766::attributes::{
    ChannelNumber, Data, DontFragment, EvenPort, Lifetime, RequestedTransport, ReservationToken,
    XorPeerAddress, XorRelayAddress,
};
use stun_codec::rfc5766::methods::{
    ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, DATA, REFRESH, SEND,
};
use stun_codec::rfc8656::attributes::{AdditionalAddressFamily, RequestedAddressFamily};
use stun_codec::{Message, MessageClass, MessageDecoder, MessageEncoder, TransactionId};

use crate::credentials::Credentials;

pub(crate) mod attrs {
    use super::*;
    stun_codec::define_attribute_enums!(
        TurnAttribute,
        TurnAttributeDecoder,
        TurnAttributeEncoder,
        [
            Username,
            Realm,
            Nonce,
            MessageIntegrity,
            ErrorCode,
            XorMappedAddress,
            Fingerprint,
            Software,
            ChannelNumber,
            Lifetime,
            XorPeerAddress,
            Data,
            XorRelayAddress,
            RequestedTransport,
            DontFragment,
            EvenPort,
            ReservationToken,
            RequestedAddressFamily,
            AdditionalAddressFamily
        ]
    );
}
pub(crate) use attrs::TurnAttribute;

/// The realm of every credential (LiveKit's).
pub const REALM: &str = "livekit";
/// The largest STUN message accepted; relayed media rides in ChannelData.
pub const MAX_MESSAGE: usize = 4096;
/// Permissions last this long unless refreshed (RFC 8656 §9).
const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// Channel bindings last this long unless refreshed (RFC 8656 §12).
const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
/// A nonce is accepted for this long after it was issued.
const NONCE_LIFETIME: u64 = 3600;
/// Channels one allocation may bind (there is only one peer it may reach).
const MAX_CHANNELS: usize = 4;
/// The UDP protocol number, the only REQUESTED-TRANSPORT offered.
const UDP: u8 = 17;

/// How a client reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

/// A client: its transport and address (with the listening port, the 5-tuple).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client {
    pub transport: Transport,
    pub remote: SocketAddr,
}

/// Bounds and addresses of the server.
#[derive(Debug, Clone)]
pub struct TurnConfig {
    /// The one address an allocation may relay to: this node's media address.
    pub media_addr: SocketAddr,
    /// Allocations at once, over every client.
    pub max_allocations: usize,
    /// Allocations one username (one participant) may hold.
    pub max_allocations_per_user: usize,
    /// Lifetime given when the client asks for none or less.
    pub default_lifetime: Duration,
    /// The longest lifetime granted.
    pub max_lifetime: Duration,
}

impl TurnConfig {
    /// RFC 8656's lifetimes and this server's caps, relaying to `media_addr`.
    pub fn new(media_addr: SocketAddr) -> Self {
        Self {
            media_addr,
            max_allocations: 1024,
            max_allocations_per_user: 10,
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
        }
    }
}

/// Why a message was dropped without an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TurnError {
    /// Not STUN and not ChannelData, or cut short (the client's fault).
    #[error("not a TURN message")]
    Malformed,
    /// A message larger than [`MAX_MESSAGE`] (the client's fault).
    #[error("TURN message too large")]
    TooLarge,
    /// ChannelData or a Send indication without a matching allocation, channel or
    /// permission (the client's fault, or state that expired).
    #[error("no allocation, channel or permission for this data")]
    NoRoute,
    /// A message type a server does not take (responses, Data indications).
    #[error("unexpected TURN message")]
    Unexpected,
    /// A response could not be encoded (a bug).
    #[error("TURN response could not be encoded")]
    Encode,
}

/// What one message from a client asks of the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// A response was written to `out`: send it to the client.
    Reply,
    /// Send `input[payload]` from the allocation's relay address `relay` to `peer`.
    Relay {
        relay: SocketAddr,
        peer: SocketAddr,
        payload: Range<usize>,
    },
    /// Nothing to send.
    Nothing,
}

/// Something for the driver that no single input caused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// An allocation ended (expired, released, or its client went away): close its relay
    /// socket.
    Released { relay: SocketAddr },
}

struct Allocation {
    relay: SocketAddr,
    username: String,
    expires: Instant,
    /// The last Allocate's transaction, so that a retransmission gets the same answer.
    txn: [u8; 12],
    /// Permission for the media address, until.
    permission: Option<Instant>,
    channels: Vec<(u16, SocketAddr, Instant)>,
}

/// The sans-IO TURN server.
///
/// The driver owns the listening sockets (UDP, TCP, TLS) and one UDP relay socket per
/// allocation, and feeds this machine: [`handle_client`](Self::handle_client) for every
/// message from a client (datagram, or frame split off a stream with [`frame_len`]),
/// [`handle_peer`](Self::handle_peer) for every datagram arriving on a relay socket,
/// [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout), and
/// drains [`poll_output`](Self::poll_output). Allocations relay only to
/// [`TurnConfig::media_addr`]: permissions and channels for any other address are refused
/// with 403, and data to or from one is dropped.
pub struct TurnServer {
    config: TurnConfig,
    credentials: Credentials,
    allocations: FxHashMap<Client, Allocation>,
    by_relay: FxHashMap<SocketAddr, Client>,
    per_user: FxHashMap<String, usize>,
    nonce_key: [u8; 32],
    out: Vec<Output>,
}

impl TurnServer {
    /// A server checking credentials against `credentials`.
    pub fn new(config: TurnConfig, credentials: Credentials) -> Self {
        Self {
            config,
            credentials,
            allocations: FxHashMap::default(),
            by_relay: FxHashMap::default(),
            per_user: FxHashMap::default(),
            nonce_key: rand::random(),
            out: Vec::new(),
        }
    }

    /// Allocations now.
    pub fn allocation_count(&self) -> usize {
        self.allocations.len()
    }

    /// Whether `client` holds an allocation.
    pub fn has_allocation(&self, client: Client) -> bool {
        self.allocations.contains_key(&client)
    }

    /// One message from `client`. Responses are written to `out` (cleared first).
    /// `bind_relay` is called when an allocation is granted and returns the relay address
    /// the driver opened for it (`None`: no port free).
    pub fn handle_client(
        &mut self,
        now: Instant,
        unix: u64,
        client: Client,
        msg: &[u8],
        out: &mut Vec<u8>,
        bind_relay: &mut dyn FnMut() -> Option<SocketAddr>,
    ) -> Result<Handled, TurnError> {
        out.clear();
        match msg.first() {
            Some(0x40..=0x4f) => return self.channel_data(now, client, msg),
            Some(0..=3) => {}
            _ => return Err(TurnError::Malformed),
        }
        if msg.len() > MAX_MESSAGE {
            return Err(TurnError::TooLarge);
        }
        let message = match MessageDecoder::<TurnAttribute>::new().decode_from_bytes(msg) {
            Ok(Ok(m)) => m,
            _ => return Err(TurnError::Malformed),
        };
        let method = message.method();
        match message.class() {
            MessageClass::Request => {}
            MessageClass::Indication if method == SEND => {
                return self.send(now, client, &message, msg);
            }
            _ => return Err(TurnError::Unexpected),
        }
        if method == BINDING {
            let mut resp = Message::new(
                MessageClass::SuccessResponse,
                BINDING,
                message.transaction_id(),
            );
            resp.add_attribute(XorMappedAddress::new(client.remote));
            return self.finish(resp, None, out);
        }
        if ![ALLOCATE, REFRESH, CREATE_PERMISSION, CHANNEL_BIND].contains(&method) {
            return self.error(&message, 400, None, out);
        }
        // Long-term credentials (RFC 8656 §9.2.4 of RFC 8489).
        let (Some(user), Some(integrity)) = (
            message.get_attribute::<Username>(),
            message.get_attribute::<MessageIntegrity>(),
        ) else {
            return self.challenge(&message, unix, 401, out);
        };
        if !message
            .get_attribute::<Nonce>()
            .is_some_and(|n| self.nonce_valid(n.value(), unix))
        {
            return self.challenge(&message, unix, 438, out);
        }
        let password = match self.credentials.password_for(user.name(), unix) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(remote = %client.remote, "TURN request refused: {e}");
                return self.challenge(&message, unix, 401, out);
            }
        };
        let realm = Realm::new(REALM.to_owned()).map_err(|_| TurnError::Encode)?;
        if integrity
            .check_long_term_credential(user, &realm, &password)
            .is_err()
        {
            tracing::debug!(remote = %client.remote, "TURN request refused: bad MESSAGE-INTEGRITY");
            return self.challenge(&message, unix, 401, out);
        }
        let auth = Some((user.clone(), realm, password));
        if method == ALLOCATE {
            return self.allocate(now, client, &message, auth, out, bind_relay);
        }
        let username = user.name().to_owned();
        let Some(alloc) = self.allocations.get(&client) else {
            return self.error(&message, 437, auth, out);
        };
        if alloc.username != username {
            return self.error(&message, 441, auth, out);
        }
        match method {
            REFRESH => self.refresh(now, client, &message, auth, out),
            CREATE_PERMISSION => self.create_permission(now, client, &message, auth, out),
            _ => self.channel_bind(now, client, &message, auth, out),
        }
    }

    fn allocate(
        &mut self,
        now: Instant,
        client: Client,
        message: &Message<TurnAttribute>,
        auth: Option<(Username, Realm, String)>,
        out: &mut Vec<u8>,
        bind_relay: &mut dyn FnMut() -> Option<SocketAddr>,
    ) -> Result<Handled, TurnError> {
        let txn = message.transaction_id().as_bytes().to_owned();
        if let Some(a) = self.allocations.get(&client) {
            // A retransmission gets the same answer; anything else is a mismatch.
            if a.txn == txn {
                let (relay, left) = (a.relay, a.expires.saturating_duration_since(now));
                return self.allocated(message, client, relay, left, auth, out);
            }
            return self.error(message, 437, auth, out);
        }
        if message
            .get_attribute::<RequestedTransport>()
            .is_none_or(|t| t.protocol() != UDP)
        {
            return self.error(message, 442, auth, out);
        }
        if message.get_attribute::<ReservationToken>().is_some()
            || message
                .get_attribute::<EvenPort>()
                .is_some_and(EvenPort::is_requested)
        {
            return self.error(message, 508, auth, out);
        }
        let Some((user, _, _)) = auth.clone() else {
            return Err(TurnError::Encode);
        };
        let name = user.name().to_owned();
        if self.per_user.get(&name).copied().unwrap_or(0) >= self.config.max_allocations_per_user {
            return self.error(message, 486, auth, out);
        }
        if self.allocations.len() >= self.config.max_allocations {
            return self.error(message, 508, auth, out);
        }
        let Some(relay) = bind_relay() else {
            return self.error(message, 508, auth, out);
        };
        let lifetime = self.lifetime(message);
        *self.per_user.entry(name.clone()).or_default() += 1;
        self.by_relay.insert(relay, client);
        self.allocations.insert(
            client,
            Allocation {
                relay,
                username: name,
                expires: now + lifetime,
                txn,
                permission: None,
                channels: Vec::new(),
            },
        );
        tracing::debug!(remote = %client.remote, %relay, "TURN allocation");
        self.allocated(message, client, relay, lifetime, auth, out)
    }

    fn allocated(
        &self,
        message: &Message<TurnAttribute>,
        client: Client,
        relay: SocketAddr,
        lifetime: Duration,
        auth: Option<(Username, Realm, String)>,
        out: &mut Vec<u8>,
    ) -> Result<Handled, TurnError> {
        let mut resp = Message::new(
            MessageClass::SuccessResponse,
            ALLOCATE,
            message.transaction_id(),
        );
        resp.add_attribute(XorRelayAddress::new(relay));
        resp.add_attribute(lifetime_attr(lifetime)?);
        resp.add_attribute(XorMappedAddress::new(client.remote));
        self.finish(resp, auth, out)
    }

    fn lifetime(&self, message: &Message<TurnAttribute>) -> Duration {
        message
            .get_attribute::<Lifetime>()
            .map_or(self.config.default_lifetime, |l| {
                l.lifetime()
                    .max(self.config.default_lifetime)
                    .min(self.config.max_lifetime)
            })
    }

    fn refresh(
        &mut self,
        now: Instant,
        client: Client,
        message: &Message<TurnAttribute>,
        auth: Option<(Username, Realm, String)>,
        out: &mut Vec<u8>,
    ) -> Result<Handled, TurnError> {
        let zero = message
            .get_attribute::<Lifetime>()
            .is_some_and(|l| l.lifetime().is_zero());
        let lifetime = if zero {
            self.release(client);
            Duration::ZERO
        } else {
            let lifetime = self.lifetime(message);
            if let Some(a) = self.allocations.get_mut(&client) {
                a.expires = now + lifetime;
            }
            lifetime
        };
        let mut resp = Message::new(
            MessageClass::SuccessResponse,
            REFRESH,
            message.transaction_id(),
        );
        resp.add_attribute(lifetime_attr(lifetime)?);
        self.finish(resp, auth, out)
    }

    fn create_permission(
        &mut self,
        now: Instant,
        client: Client,
        message: &Message<TurnAttribute>,
        auth: Option<(Username, Realm, String)>,
        out: &mut Vec<u8>,
    ) -> Result<Handled, TurnError> {
        let mut peers = message.attributes().filter_map(|a| match a {
            TurnAttribute::XorPeerAddress(p) => Some(p.address()),
            _ => None,
        });
        let media = self.config.media_addr.ip();
        let mut any = false;
        let mut refused = None;
        for p in peers.by_ref() {
            any = true;
            if p.ip() != media {
                refused = Some(p);
            }
        }
        if !any {
            return self.error(message, 400, auth, out);
        }
        if let Some(p) = refused {
            tracing::debug!(remote = %client.remote, peer = %p, "TURN permission refused: not this node's media address");
            return self.error(message, 403, auth, out);
        }
        if let Some(a) = self.allocations.get_mut(&client) {
            a.permission = Some(now + PERMISSION_LIFETIME);
        }
        let resp = Message::new(
            MessageClass::SuccessResponse,
            CREATE_PERMISSION,
            message.transaction_id(),
        );
        self.finish(resp, auth, out)
    }

    fn channel_bind(
        &mut self,
        now: Instant,
        client: Client,
        message: &Message<TurnAttribute>,
        auth: Option<(Username, Realm, String)>,
        out: &mut Vec<u8>,
    ) -> Result<Handled, TurnError> {
        let (Some(number), Some(peer)) = (
            message.get_attribute::<ChannelNumber>().map(|c| c.value()),
            message
                .get_attribute::<XorPeerAddress>()
                .map(|p| p.address()),
        ) else {
            return self.error(message, 400, auth, out);
        };
        if peer != self.config.media_addr {
            tracing::debug!(remote = %client.remote, %peer, "TURN channel refused: not this node's media address");
            return self.error(message, 403, auth, out);
        }
        let Some(a) = self.allocations.get_mut(&client) else {
            return self.error(message, 437, auth, out);
        };
        // A number stays bound to one peer, and a peer to one number (RFC 8656 §12.2).
        if a.channels
            .iter()
            .any(|&(n, p, _)| (n == number) != (p == peer))
        {
            return self.error(message, 400, auth, out);
        }
        if let Some(c) = a.channels.iter_mut().find(|c| c.0 == number) {
            c.2 = now + CHANNEL_LIFETIME;
        } else if a.channels.len() >= MAX_CHANNELS {
            return self.error(message, 508, auth, out);
        } else {
            a.channels.push((number, peer, now + CHANNEL_LIFETIME));
        }
        // A binding installs or refreshes the permission too.
        a.permission = Some(now + PERMISSION_LIFETIME);
        let resp = Message::new(
            MessageClass::SuccessResponse,
            CHANNEL_BIND,
            message.transaction_id(),
        );
        self.finish(resp, auth, out)
    }

    /// A Send indication: relay its DATA to its peer, when permitted.
    fn send(
        &mut self,
        now: Instant,
        client: Client,
        message: &Message<TurnAttribute>,
        raw: &[u8],
    ) -> Result<Handled, TurnError> {
        let (Some(peer), Some(payload)) = (
            message
                .get_attribute::<XorPeerAddress>()
                .map(|p| p.address()),
            data_range(raw),
        ) else {
            return Err(TurnError::Malformed);
        };
        let a = self.allocations.get(&client).ok_or(TurnError::NoRoute)?;
        if peer != self.config.media_addr || a.permission.is_none_or(|t| t <= now) {
            return Err(TurnError::NoRoute);
        }
        Ok(Handled::Relay {
            relay: a.relay,
            peer,
            payload,
        })
    }

    /// ChannelData (RFC 8656 §12.4): relay to the channel's peer.
    fn channel_data(
        &mut self,
        now: Instant,
        client: Client,
        msg: &[u8],
    ) -> Result<Handled, TurnError> {
        let header = msg.get(..4).ok_or(TurnError::Malformed)?;
        let number = u16::from_be_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if 4 + len > msg.len() {
            return Err(TurnError::Malformed);
        }
        let a = self.allocations.get(&client).ok_or(TurnError::NoRoute)?;
        let &(_, peer, until) = a
            .channels
            .iter()
            .find(|c| c.0 == number)
            .ok_or(TurnError::NoRoute)?;
        if until <= now || peer != self.config.media_addr {
            return Err(TurnError::NoRoute);
        }
        Ok(Handled::Relay {
            relay: a.relay,
            peer,
            payload: 4..4 + len,
        })
    }

    /// A datagram from `peer` on relay socket `relay`: written to `out` as ChannelData (padded
    /// for stream transports) or a Data indication, for the client returned. Anything not
    /// from a permitted peer is dropped.
    pub fn handle_peer(
        &mut self,
        now: Instant,
        relay: SocketAddr,
        peer: SocketAddr,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<Client> {
        out.clear();
        let client = *self.by_relay.get(&relay)?;
        let a = self.allocations.get(&client)?;
        if peer != self.config.media_addr || a.permission.is_none_or(|t| t <= now) {
            return None;
        }
        if let Some(&(number, _, _)) = a.channels.iter().find(|c| c.1 == peer && c.2 > now) {
            let len = u16::try_from(payload.len()).ok()?;
            out.extend_from_slice(&number.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(payload);
            if client.transport != Transport::Udp {
                out.resize(out.len().next_multiple_of(4), 0);
            }
            return Some(client);
        }
        let mut ind: Message<TurnAttribute> = Message::new(
            MessageClass::Indication,
            DATA,
            TransactionId::new(rand::random()),
        );
        ind.add_attribute(XorPeerAddress::new(peer));
        ind.add_attribute(Data::new(payload.to_vec()).ok()?);
        let bytes = MessageEncoder::new().encode_into_bytes(ind).ok()?;
        out.extend_from_slice(&bytes);
        Some(client)
    }

    /// A client's connection ended (TCP/TLS): its allocation goes with it (RFC 6062 §3).
    pub fn handle_closed(&mut self, client: Client) {
        self.release(client);
    }

    /// Ends expired allocations, permissions and channels.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<Client> = self
            .allocations
            .iter()
            .filter(|(_, a)| a.expires <= now)
            .map(|(c, _)| *c)
            .collect();
        for c in expired {
            tracing::debug!(remote = %c.remote, "TURN allocation expired");
            self.release(c);
        }
        for a in self.allocations.values_mut() {
            if a.permission.is_some_and(|t| t <= now) {
                a.permission = None;
            }
            a.channels.retain(|c| c.2 > now);
        }
    }

    /// When the next allocation, permission or channel expires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.allocations
            .values()
            .flat_map(|a| {
                std::iter::once(a.expires)
                    .chain(a.permission)
                    .chain(a.channels.iter().map(|c| c.2))
            })
            .min()
    }

    /// The next thing for the driver.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }

    fn release(&mut self, client: Client) {
        if let Some(a) = self.allocations.remove(&client) {
            self.by_relay.remove(&a.relay);
            if let Some(n) = self.per_user.get_mut(&a.username) {
                *n -= 1;
                if *n == 0 {
                    self.per_user.remove(&a.username);
                }
            }
            self.out.push(Output::Released { relay: a.relay });
        }
    }

    fn nonce(&self, unix: u64) -> String {
        format!("{unix:x}-{:016x}", self.nonce_tag(unix))
    }

    fn nonce_tag(&self, issued: u64) -> u64 {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.nonce_key) else {
            return 0;
        };
        mac.update(&issued.to_be_bytes());
        let b = mac.finalize().into_bytes();
        u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    }

    fn nonce_valid(&self, nonce: &str, unix: u64) -> bool {
        let Some((issued, tag)) = nonce.split_once('-') else {
            return false;
        };
        let (Ok(issued), Ok(tag)) = (
            u64::from_str_radix(issued, 16),
            u64::from_str_radix(tag, 16),
        ) else {
            return false;
        };
        tag == self.nonce_tag(issued) && issued <= unix && unix < issued + NONCE_LIFETIME
    }

    /// An error with REALM and a fresh NONCE, unsigned (401 and 438).
    fn challenge(
        &self,
        message: &Message<TurnAttribute>,
        unix: u64,
        code: u16,
        out: &mut Vec<u8>,
    ) -> Result<Handled, TurnError> {
        let mut resp = Message::new(
            MessageClass::ErrorResponse,
            message.method(),
            message.transaction_id(),
        );
        resp.add_attribute(error_code(code)?);
        resp.add_attribute(Realm::new(REALM.to_owned()).map_err(|_| TurnError::Encode)?);
        resp.add_attribute(Nonce::new(self.nonce(unix)).map_err(|_| TurnError::Encode)?);
        self.finish(resp, None, out)
    }

    fn error(
        &self,
        message: &Message<TurnAttribute>,
        code: u16,
        auth: Option<(Username, Realm, String)>,
        out: &mut Vec<u8>,
    ) -> Result<Handled, TurnError> {
        let mut resp = Message::new(
            MessageClass::ErrorResponse,
            message.method(),
            message.transaction_id(),
        );
        resp.add_attribute(error_code(code)?);
        self.finish(resp, auth, out)
    }

    /// Signs (with the request's credentials), fingerprints and encodes a response.
    fn finish(
        &self,
        mut resp: Message<TurnAttribute>,
        auth: Option<(Username, Realm, String)>,
        out: &mut Vec<u8>,
    ) -> Result<Handled, TurnError> {
        if let Some((user, realm, password)) = auth {
            let mi = MessageIntegrity::new_long_term_credential(&resp, &user, &realm, &password)
                .map_err(|_| TurnError::Encode)?;
            resp.add_attribute(mi);
        }
        let fp = Fingerprint::new(&resp).map_err(|_| TurnError::Encode)?;
        resp.add_attribute(fp);
        let bytes = MessageEncoder::new()
            .encode_into_bytes(resp)
            .map_err(|_| TurnError::Encode)?;
        out.extend_from_slice(&bytes);
        Ok(Handled::Reply)
    }
}

fn error_code(code: u16) -> Result<ErrorCode, TurnError> {
    let reason = match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        437 => "Allocation Mismatch",
        438 => "Stale Nonce",
        441 => "Wrong Credentials",
        442 => "Unsupported Transport Protocol",
        486 => "Allocation Quota Reached",
        508 => "Insufficient Capacity",
        _ => "Error",
    };
    ErrorCode::new(code, reason.to_owned()).map_err(|_| TurnError::Encode)
}

fn lifetime_attr(d: Duration) -> Result<Lifetime, TurnError> {
    Lifetime::new(d).map_err(|_| TurnError::Encode)
}

/// Where the value of the first DATA attribute sits in a raw STUN message.
fn data_range(msg: &[u8]) -> Option<Range<usize>> {
    const DATA: u16 = 0x0013;
    let mut at = 20;
    while at + 4 <= msg.len() {
        let kind = u16::from_be_bytes([msg[at], msg[at + 1]]);
        let len = usize::from(u16::from_be_bytes([msg[at + 2], msg[at + 3]]));
        let value = at + 4..at + 4 + len;
        if value.end > msg.len() {
            return None;
        }
        if kind == DATA {
            return Some(value);
        }
        at = value.end.next_multiple_of(4);
    }
    None
}

/// The length of the first whole message in a stream (STUN or ChannelData, RFC 8656 §12.5:
/// ChannelData padded to four bytes on streams); `None` until the header is in; `Err` for
/// bytes that start neither.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, TurnError> {
    let Some(h) = buf.get(..4) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    match h[0] {
        0..=3 => {
            let n = 20 + len;
            if n > MAX_MESSAGE {
                return Err(TurnError::TooLarge);
            }
            Ok(Some(n))
        }
        0x40..=0x4f => Ok(Some((4 + len).next_multiple_of(4))),
        _ => Err(TurnError::Malformed),
    }
}
