//! One SCTP association over one DTLS connection, and the data channels on it.

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use sctp_proto::{
    Association, AssociationHandle, ClientConfig, DatagramEvent, Endpoint, EndpointConfig,
    EndpointEvent, Event, Payload, PayloadProtocolIdentifier, ReliabilityType, ServerConfig,
    StreamEvent, TransportConfig,
};

use crate::DataChannelError;
use crate::dcep::{self, NORMAL_PRIORITY, Reliability};

/// The SCTP port both sides use (`a=sctp-port:5000`, RFC 8841 §5).
pub const SCTP_PORT: u16 = 5000;
/// The largest message we accept, and by default send (`a=max-message-size:262144`).
pub const MAX_MESSAGE_SIZE: u32 = 262_144;
/// Stream id 65535 is reserved (RFC 8831 §6.5).
const MAX_STREAM_ID: u16 = 65_534;
/// The longest retransmission timeout, in ms, and so the longest wait between two tries
/// of a message the peer has not acknowledged, however long the path was down.
pub const RTO_MAX_MS: u64 = 3_000;

/// Caps on what the peer can make one association hold. Past them a channel the peer opens
/// is refused (its stream reset, counted) and a message we send is dropped with
/// [`DataChannelError::BufferFull`] (counted); nothing grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SctpLimits {
    /// Channels open at once, opened by either side.
    pub max_channels: usize,
    /// Longest label, and longest sub-protocol, of a channel, in bytes.
    pub max_label_len: usize,
    /// Bytes queued for sending (not yet acknowledged) over all channels.
    pub max_buffered_bytes: usize,
}

impl Default for SctpLimits {
    fn default() -> Self {
        Self {
            max_channels: 16,
            max_label_len: 256,
            max_buffered_bytes: 8 << 20,
        }
    }
}

/// The association runs over one DTLS connection, so the address sctp-proto wants is a
/// placeholder: nothing here routes by it.
const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), SCTP_PORT);

/// What happened on the association.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataChannelEvent {
    /// The association is up; channels may carry messages.
    Established,
    /// A channel became open: the peer opened it with DATA_CHANNEL_OPEN (and we answered
    /// with DATA_CHANNEL_ACK), or the peer acknowledged one we opened.
    ChannelOpen {
        /// The channel's SCTP stream id.
        stream_id: u16,
        /// The channel's label, for example `_reliable`.
        label: String,
    },
    /// A complete message arrived.
    Message {
        /// The channel's SCTP stream id.
        stream_id: u16,
        /// Binary (PPID 53/57) or string (PPID 51/56).
        binary: bool,
        /// The message; empty for the empty-message PPIDs.
        data: Vec<u8>,
    },
    /// The channel was closed (its stream was reset, RFC 8831 §6.7).
    ChannelClosed {
        /// The channel's SCTP stream id.
        stream_id: u16,
    },
    /// The association is gone, and every channel with it.
    Closed,
}

/// A channel's negotiated options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The label from DATA_CHANNEL_OPEN.
    pub label: String,
    /// In-order delivery.
    pub ordered: bool,
    /// Partial reliability by retransmission count (`maxRetransmits`).
    pub max_retransmits: Option<u16>,
    /// Partial reliability by lifetime in milliseconds (`maxPacketLifeTime`).
    pub max_packet_life_time: Option<u16>,
    /// The sub-protocol from DATA_CHANNEL_OPEN.
    pub protocol: String,
    /// Both sides know the channel: we received its OPEN, or our OPEN was acknowledged.
    pub open: bool,
}

#[derive(Debug)]
struct Channel {
    info: ChannelInfo,
    reliability: Reliability,
    /// Opened by us and not yet acknowledged: messages go ordered until the ACK
    /// (RFC 8832 §6).
    awaiting_ack: bool,
    /// We reset the stream; waiting for the reset to finish.
    closing: bool,
}

impl Channel {
    fn apply_reliability(&self, association: &mut Association, stream_id: u16, ordered: bool) {
        let (kind, value) = match self.reliability {
            Reliability::Reliable => (ReliabilityType::Reliable, 0),
            Reliability::Rexmit(count) => (ReliabilityType::Rexmit, count),
            Reliability::Timed(ms) => (ReliabilityType::Timed, ms),
        };
        if let Ok(mut stream) = association.stream(stream_id) {
            // Only fails for a stream that is gone, which the caller has just looked up.
            let _ = stream.set_reliability_params(!ordered, kind, value);
        }
    }
}

#[derive(Debug)]
struct Live {
    handle: AssociationHandle,
    association: Association,
    /// The endpoint has forgotten this association; it must not be drained twice.
    drained: bool,
}

/// The channels on an association, separate from the association so that both can be
/// borrowed at once.
#[derive(Debug)]
struct Channels {
    is_client: bool,
    map: BTreeMap<u16, Channel>,
    /// Channels opened before the association came up; their OPEN goes out on `Connected`.
    pending_open: Vec<u16>,
    events: VecDeque<DataChannelEvent>,
    next_stream_id: u16,
    established: bool,
    closed: bool,
    max_send_message_size: u32,
    limits: SctpLimits,
    /// Channels the peer tried to open past [`SctpLimits`], and streams it sent data on
    /// without opening a channel: reset, never kept.
    refused_channels: u64,
    /// Messages [`SctpTransport::send`] dropped because the send buffer was full.
    dropped_messages: u64,
}

/// One SCTP association (sctp-proto, sans-IO) over one DTLS connection, with the WebRTC data
/// channels on it: DCEP (RFC 8832) and the PPIDs of RFC 8831.
///
/// Data flow: every DTLS application-data record from the peer goes to
/// [`handle_receive`](Self::handle_receive); every packet from
/// [`poll_transmit`](Self::poll_transmit) goes out as one DTLS application-data record.
/// Drain [`poll_event`](Self::poll_event) and `poll_transmit` after every input, and call
/// [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout).
///
/// Stream ids follow RFC 8832 §6: the DTLS client opens channels on even ids, the DTLS
/// server on odd ones.
pub struct SctpTransport {
    endpoint: Endpoint,
    live: Option<Live>,
    channels: Channels,
    transmits: VecDeque<Bytes>,
}

impl std::fmt::Debug for SctpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SctpTransport")
            .field("is_client", &self.channels.is_client)
            .field("established", &self.channels.established)
            .field("closed", &self.channels.closed)
            .field("channels", &self.channels.map.len())
            .finish()
    }
}

fn transport_config() -> TransportConfig {
    TransportConfig::default()
        .with_max_receive_message_size(MAX_MESSAGE_SIZE)
        .with_max_send_message_size(MAX_MESSAGE_SIZE)
        // DTLS and ICE decide when the peer is gone; SCTP keeps trying meanwhile.
        .with_max_init_retransmits(None)
        .with_max_data_retransmits(None)
        .with_rto_initial_ms(1000)
        .with_rto_min_ms(400)
        // Also the cap on the retransmission timer's backoff: after an outage, what waits
        // is retransmitted at most this long after the path returns (libwebrtc caps its
        // own backoff at 3 s for the same reason).
        .with_rto_max_ms(RTO_MAX_MS)
        .with_local_port(SCTP_PORT)
        .with_remote_port(SCTP_PORT)
}

impl SctpTransport {
    /// A transport for a DTLS connection that has just completed. The client (`is_client`,
    /// the DTLS client) sends INIT at once; the server waits for it.
    ///
    /// sctp-proto starts the client's INIT timer from its own reading of the clock; every
    /// later time comes from the caller.
    pub fn new(is_client: bool, now: Instant) -> Self {
        Self::with_limits(is_client, now, SctpLimits::default())
    }

    /// As [`new`](Self::new), with caps other than the defaults.
    pub fn with_limits(is_client: bool, now: Instant, limits: SctpLimits) -> Self {
        let transport = Arc::new(transport_config());
        // Both sides accept an INIT: the server to answer the client, the client because
        // some stacks send INIT from both ends and sctp-proto requires a server
        // configuration to look at one. A second association is dropped in
        // `handle_receive`.
        let mut server_config = ServerConfig::new();
        server_config.transport = transport.clone();
        let mut endpoint = Endpoint::new(
            Arc::new(EndpointConfig::default()),
            Some(Arc::new(server_config)),
        );
        let live = if is_client {
            let mut config = ClientConfig::new();
            config.transport = transport;
            // The placeholder address and the SCTP ports are valid, and a fresh endpoint
            // has room, so connecting cannot fail; if it ever did, the transport would stay
            // without an association and report nothing.
            endpoint
                .connect(config, PEER)
                .ok()
                .map(|(handle, association)| Live {
                    handle,
                    association,
                    drained: false,
                })
        } else {
            None
        };
        // sctp-proto reads the clock itself when it arms the INIT timer; `now` keeps this
        // call shaped like every other input.
        let _ = now;
        let mut transport = Self {
            endpoint,
            live,
            channels: Channels {
                is_client,
                map: BTreeMap::new(),
                pending_open: Vec::new(),
                events: VecDeque::new(),
                next_stream_id: if is_client { 0 } else { 1 },
                established: false,
                closed: false,
                max_send_message_size: MAX_MESSAGE_SIZE,
                limits,
                refused_channels: 0,
                dropped_messages: 0,
            },
            transmits: VecDeque::new(),
        };
        transport.pump();
        transport
    }

    /// One DTLS application-data record from the peer (one SCTP packet). Malformed packets
    /// are dropped.
    pub fn handle_receive(&mut self, now: Instant, data: &[u8]) {
        let Some((handle, event)) =
            self.endpoint
                .handle(now, PEER, None, None, Bytes::copy_from_slice(data))
        else {
            return;
        };
        match event {
            DatagramEvent::AssociationEvent(event) => {
                if let Some(live) = &mut self.live
                    && live.handle == handle
                {
                    live.association.handle_event(event);
                }
            }
            DatagramEvent::NewAssociation(association) => {
                let current_is_live = self
                    .live
                    .as_ref()
                    .is_some_and(|live| !live.association.is_closed());
                if current_is_live {
                    // One association per DTLS connection: keep the one we have.
                    let _ = self.endpoint.handle_event(handle, EndpointEvent::drained());
                } else {
                    if let Some(old) = self.live.take() {
                        // The peer restarted after our association died: start from nothing.
                        // (Without an old association, channels opened while waiting for
                        // the INIT stay pending and go out once this one is up.)
                        if !old.drained {
                            let _ = self
                                .endpoint
                                .handle_event(old.handle, EndpointEvent::drained());
                        }
                        self.channels.reset();
                    }
                    let mut association = association;
                    association.set_max_send_message_size(self.channels.max_send_message_size);
                    self.live = Some(Live {
                        handle,
                        association,
                        drained: false,
                    });
                }
            }
        }
        self.pump();
    }

    /// The next SCTP packet to send as one DTLS application-data record.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.transmits.is_empty()
            && let Some(live) = &mut self.live
        {
            while let Some(transmit) = live.association.poll_transmit(now) {
                if let Payload::RawEncode(packets) = transmit.payload {
                    self.transmits.extend(packets);
                }
                if !self.transmits.is_empty() {
                    break;
                }
            }
            self.pump();
        }
        self.transmits.pop_front().map(|packet| packet.to_vec())
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DataChannelEvent> {
        self.channels.events.pop_front()
    }

    /// Retransmissions, delayed acknowledgements, heartbeats.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(live) = &mut self.live {
            live.association.handle_timeout(now);
        }
        self.pump();
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.live
            .as_ref()
            .and_then(|live| live.association.poll_timeout())
    }

    /// Opens a channel toward the peer: DATA_CHANNEL_OPEN on the next free stream id of our
    /// parity (even for the DTLS client, odd for the server, RFC 8832 §6). Before the
    /// association is established the OPEN waits and goes out with
    /// [`DataChannelEvent::Established`]. `max_retransmits: None` is fully reliable;
    /// `Some(0)` never retransmits (`_lossy`).
    ///
    /// Messages may be sent at once; until the peer's ACK they go ordered (RFC 8832 §6).
    /// [`DataChannelEvent::ChannelOpen`] reports the ACK.
    pub fn open_channel(
        &mut self,
        label: &str,
        ordered: bool,
        max_retransmits: Option<u16>,
        protocol: &str,
    ) -> Result<u16, DataChannelError> {
        let max_label = self
            .channels
            .limits
            .max_label_len
            .min(usize::from(u16::MAX));
        if label.len() > max_label || protocol.len() > max_label {
            return Err(DataChannelError::LabelTooLong);
        }
        if self.channels.closed {
            return Err(DataChannelError::Closed);
        }
        if self.channels.map.len() >= self.channels.limits.max_channels {
            return Err(DataChannelError::TooManyChannels(
                self.channels.limits.max_channels,
            ));
        }
        let stream_id = self.channels.allocate_stream_id()?;
        let reliability = max_retransmits.map_or(Reliability::Reliable, |count| {
            Reliability::Rexmit(u32::from(count))
        });
        self.channels.map.insert(
            stream_id,
            Channel {
                info: ChannelInfo {
                    label: label.to_owned(),
                    ordered,
                    max_retransmits,
                    max_packet_life_time: None,
                    protocol: protocol.to_owned(),
                    open: false,
                },
                reliability,
                awaiting_ack: true,
                closing: false,
            },
        );
        match &mut self.live {
            Some(live) if self.channels.established => {
                if let Err(error) = self.channels.send_open(&mut live.association, stream_id) {
                    self.channels.map.remove(&stream_id);
                    return Err(error);
                }
            }
            _ => self.channels.pending_open.push(stream_id),
        }
        Ok(stream_id)
    }

    /// Sends one message on a channel: binary (PPID 53) or string (PPID 51); an empty
    /// message goes as PPID 57/56 with one padding byte (RFC 8831 §6.6). SCTP fragments
    /// large messages; ordering and retransmission follow the channel's options.
    pub fn send(
        &mut self,
        stream_id: u16,
        binary: bool,
        data: &[u8],
    ) -> Result<(), DataChannelError> {
        if self.channels.closed {
            return Err(DataChannelError::Closed);
        }
        let channel = self
            .channels
            .map
            .get(&stream_id)
            .ok_or(DataChannelError::UnknownChannel(stream_id))?;
        if channel.closing {
            return Err(DataChannelError::ChannelClosing(stream_id));
        }
        let live = match &mut self.live {
            Some(live) if self.channels.established => live,
            _ => return Err(DataChannelError::NotEstablished),
        };
        let max = self.channels.max_send_message_size as usize;
        if data.len() > max {
            return Err(DataChannelError::MessageTooLarge {
                len: data.len(),
                max,
            });
        }
        // Every channel's queue counts: one association may not hold more than the cap,
        // however a slow or silent peer leaves it unacknowledged.
        let buffered: usize = self
            .channels
            .map
            .keys()
            .map(|id| {
                live.association
                    .stream(*id)
                    .and_then(|s| s.buffered_amount())
                    .unwrap_or(0)
            })
            .sum();
        let limit = self.channels.limits.max_buffered_bytes;
        if buffered.saturating_add(data.len().max(1)) > limit {
            self.channels.dropped_messages += 1;
            return Err(DataChannelError::BufferFull { buffered, limit });
        }
        let (ppi, payload) = match (binary, data.is_empty()) {
            (true, false) => (PayloadProtocolIdentifier::Binary, data),
            (false, false) => (PayloadProtocolIdentifier::String, data),
            (true, true) => (PayloadProtocolIdentifier::BinaryEmpty, &[0u8][..]),
            (false, true) => (PayloadProtocolIdentifier::StringEmpty, &[0u8][..]),
        };
        live.association
            .stream(stream_id)?
            .write_with_ppi(payload, ppi)?;
        self.pump();
        Ok(())
    }

    /// Closes a channel by resetting its stream (RFC 8831 §6.7). The peer resets its side
    /// in turn; [`DataChannelEvent::ChannelClosed`] follows.
    pub fn close_channel(&mut self, stream_id: u16) -> Result<(), DataChannelError> {
        let channel = self
            .channels
            .map
            .get_mut(&stream_id)
            .ok_or(DataChannelError::UnknownChannel(stream_id))?;
        if channel.closing {
            return Ok(());
        }
        if let Some(at) = self
            .channels
            .pending_open
            .iter()
            .position(|id| *id == stream_id)
        {
            // Never announced: nothing to reset.
            self.channels.pending_open.remove(at);
            self.channels.map.remove(&stream_id);
            self.channels
                .events
                .push_back(DataChannelEvent::ChannelClosed { stream_id });
            return Ok(());
        }
        channel.closing = true;
        let live = self.live.as_mut().ok_or(DataChannelError::Closed)?;
        live.association.stream(stream_id)?.close()?;
        self.pump();
        Ok(())
    }

    /// A channel's options and state.
    pub fn channel(&self, stream_id: u16) -> Option<&ChannelInfo> {
        self.channels
            .map
            .get(&stream_id)
            .map(|channel| &channel.info)
    }

    /// The stream ids of all channels, in order.
    pub fn channel_ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.channels.map.keys().copied()
    }

    /// Whether the association is up.
    /// Channels the peer tried to open past the caps, and streams it sent data on without
    /// a channel; each was reset.
    pub fn refused_channels(&self) -> u64 {
        self.channels.refused_channels
    }

    /// Messages [`send`](Self::send) dropped because the send buffer was full.
    pub fn dropped_messages(&self) -> u64 {
        self.channels.dropped_messages
    }

    /// Bytes queued for sending over all channels.
    pub fn buffered_amount(&mut self) -> usize {
        let Some(live) = self.live.as_mut() else {
            return 0;
        };
        self.channels
            .map
            .keys()
            .map(|id| {
                live.association
                    .stream(*id)
                    .and_then(|s| s.buffered_amount())
                    .unwrap_or(0)
            })
            .sum()
    }

    pub fn is_established(&self) -> bool {
        self.channels.established && !self.channels.closed
    }

    /// The peer's `a=max-message-size` (RFC 8841 §6); 0 means no limit. Messages above it
    /// are refused by [`send`](Self::send).
    pub fn set_remote_max_message_size(&mut self, size: u32) {
        let size = if size == 0 { u32::MAX } else { size };
        self.channels.max_send_message_size = size;
        if let Some(live) = &mut self.live {
            live.association.set_max_send_message_size(size);
        }
    }

    /// Moves the association's endpoint and application events along.
    fn pump(&mut self) {
        let Some(live) = &mut self.live else {
            return;
        };
        while let Some(event) = live.association.poll_endpoint_event() {
            if event.is_drained() {
                if live.drained {
                    continue;
                }
                live.drained = true;
            }
            if let Some(event) = self.endpoint.handle_event(live.handle, event) {
                live.association.handle_event(event);
            }
        }
        while let Some(event) = live.association.poll() {
            self.channels.handle_event(&mut live.association, event);
        }
    }
}

impl Channels {
    /// A new association replaces a closed one: start from nothing.
    fn reset(&mut self) {
        self.map.clear();
        self.pending_open.clear();
        self.established = false;
        self.closed = false;
        self.next_stream_id = if self.is_client { 0 } else { 1 };
    }

    fn allocate_stream_id(&mut self) -> Result<u16, DataChannelError> {
        let parity = if self.is_client { 0 } else { 1 };
        let count = (MAX_STREAM_ID - parity) / 2 + 1;
        for _ in 0..count {
            let candidate = self.next_stream_id;
            self.next_stream_id = match candidate.checked_add(2) {
                Some(next) if next <= MAX_STREAM_ID => next,
                _ => parity,
            };
            if !self.map.contains_key(&candidate) {
                return Ok(candidate);
            }
        }
        Err(DataChannelError::NoStreamAvailable)
    }

    /// Sends DATA_CHANNEL_OPEN for a channel we created.
    fn send_open(
        &mut self,
        association: &mut Association,
        stream_id: u16,
    ) -> Result<(), DataChannelError> {
        let channel = self
            .map
            .get(&stream_id)
            .ok_or(DataChannelError::UnknownChannel(stream_id))?;
        let open = dcep::write_open(&dcep::Open {
            ordered: channel.info.ordered,
            reliability: channel.reliability,
            priority: NORMAL_PRIORITY,
            label: channel.info.label.clone(),
            protocol: channel.info.protocol.clone(),
        });
        if association.stream(stream_id).is_err() {
            association.open_stream(stream_id, PayloadProtocolIdentifier::Binary)?;
        }
        // Ordered until the peer acknowledges (RFC 8832 §6): an unordered message could
        // overtake the OPEN and reach a stream the peer knows nothing about.
        channel.apply_reliability(association, stream_id, true);
        association
            .stream(stream_id)?
            .write_with_ppi(&open, PayloadProtocolIdentifier::Dcep)?;
        Ok(())
    }

    fn handle_event(&mut self, association: &mut Association, event: Event) {
        match event {
            Event::Connected => {
                self.established = true;
                self.events.push_back(DataChannelEvent::Established);
                for stream_id in std::mem::take(&mut self.pending_open) {
                    if self.send_open(association, stream_id).is_err() {
                        self.map.remove(&stream_id);
                        self.events
                            .push_back(DataChannelEvent::ChannelClosed { stream_id });
                    }
                }
            }
            Event::HandshakeFailed { .. } | Event::AssociationLost { .. } => self.on_lost(),
            Event::Stream(StreamEvent::Opened { .. }) => {
                // Streams are created by the peer's first DATA; the channel exists once its
                // DATA_CHANNEL_OPEN is read. Empty the accept queue so it cannot grow.
                while association.accept_stream().is_some() {}
            }
            Event::Stream(StreamEvent::Readable { id }) => self.read_stream(association, id),
            Event::Stream(StreamEvent::Finished { id }) => self.on_finished(id),
            _ => {}
        }
    }

    /// The association is gone: every channel with it. Reported once.
    fn on_lost(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.established = false;
        self.map.clear();
        self.pending_open.clear();
        self.events.push_back(DataChannelEvent::Closed);
    }

    /// The stream was reset, by us or by the peer; the channel on it is closed.
    fn on_finished(&mut self, stream_id: u16) {
        if self.map.remove(&stream_id).is_some() {
            self.events
                .push_back(DataChannelEvent::ChannelClosed { stream_id });
        }
    }

    fn read_stream(&mut self, association: &mut Association, stream_id: u16) {
        loop {
            let Ok(mut stream) = association.stream(stream_id) else {
                return;
            };
            let chunks = match stream.read_sctp() {
                Ok(Some(chunks)) => chunks,
                _ => return,
            };
            let mut data = vec![0; chunks.len()];
            if chunks.read(&mut data).is_err() {
                continue;
            }
            self.handle_message(association, stream_id, chunks.ppi, data);
        }
    }

    fn handle_message(
        &mut self,
        association: &mut Association,
        stream_id: u16,
        ppi: PayloadProtocolIdentifier,
        data: Vec<u8>,
    ) {
        let (binary, data) = match ppi {
            PayloadProtocolIdentifier::Dcep => {
                match dcep::parse(&data) {
                    Some(dcep::Message::Open(open)) => {
                        self.handle_open(association, stream_id, open);
                    }
                    Some(dcep::Message::Ack) => self.handle_ack(association, stream_id),
                    None => {}
                }
                return;
            }
            PayloadProtocolIdentifier::String => (false, data),
            PayloadProtocolIdentifier::Binary => (true, data),
            PayloadProtocolIdentifier::StringEmpty => (false, Vec::new()),
            PayloadProtocolIdentifier::BinaryEmpty => (true, Vec::new()),
            _ => return,
        };
        if !self.map.contains_key(&stream_id) {
            // Data on a stream no DATA_CHANNEL_OPEN announced: no channel to deliver to, and
            // the stream is reset so that the peer cannot make us keep stream state.
            self.refuse_stream(association, stream_id);
            return;
        }
        // A message from the peer on a channel we opened means it saw our OPEN, ACK or not.
        self.handle_ack(association, stream_id);
        self.events.push_back(DataChannelEvent::Message {
            stream_id,
            binary,
            data,
        });
    }

    /// The peer opened a channel: configure our side of the stream, acknowledge, report.
    fn handle_open(&mut self, association: &mut Association, stream_id: u16, open: dcep::Open) {
        if self.map.contains_key(&stream_id) {
            // A second OPEN on a stream in use; RFC 8832 §6 leaves it unanswered.
            return;
        }
        if self.map.len() >= self.limits.max_channels
            || open.label.len() > self.limits.max_label_len
            || open.protocol.len() > self.limits.max_label_len
        {
            // Unanswered and reset: to the peer the channel simply closes (RFC 8831 §6.7).
            self.refuse_stream(association, stream_id);
            return;
        }
        let (max_retransmits, max_packet_life_time) = match open.reliability {
            Reliability::Reliable => (None, None),
            Reliability::Rexmit(count) => (Some(saturate(count)), None),
            Reliability::Timed(ms) => (None, Some(saturate(ms))),
        };
        let channel = Channel {
            info: ChannelInfo {
                label: open.label,
                ordered: open.ordered,
                max_retransmits,
                max_packet_life_time,
                protocol: open.protocol,
                open: true,
            },
            reliability: open.reliability,
            awaiting_ack: false,
            closing: false,
        };
        channel.apply_reliability(association, stream_id, open.ordered);
        let acked = association.stream(stream_id).and_then(|mut stream| {
            stream.write_with_ppi(&dcep::ACK, PayloadProtocolIdentifier::Dcep)
        });
        if acked.is_err() {
            return;
        }
        self.events.push_back(DataChannelEvent::ChannelOpen {
            stream_id,
            label: channel.info.label.clone(),
        });
        self.map.insert(stream_id, channel);
    }

    /// Resets a stream that carries no channel of ours, and counts it.
    fn refuse_stream(&mut self, association: &mut Association, stream_id: u16) {
        self.refused_channels += 1;
        if let Ok(mut stream) = association.stream(stream_id) {
            // Fails only when the stream is already going away, which is the goal anyway.
            let _ = stream.close();
        }
    }

    /// The peer acknowledged a channel we opened (explicitly, or by sending on it).
    fn handle_ack(&mut self, association: &mut Association, stream_id: u16) {
        let Some(channel) = self.map.get_mut(&stream_id) else {
            return;
        };
        if !channel.awaiting_ack {
            return;
        }
        channel.awaiting_ack = false;
        channel.info.open = true;
        channel.apply_reliability(association, stream_id, channel.info.ordered);
        self.events.push_back(DataChannelEvent::ChannelOpen {
            stream_id,
            label: channel.info.label.clone(),
        });
    }
}

fn saturate(value: u32) -> u16 {
    u16::try_from(value).unwrap_or(u16::MAX)
}
