//! One client peer connection, sans-IO: controlling ICE, the DTLS client, SRTP/SRTCP and the
//! SCTP data channels, over one local UDP socket.
//!
//! Driver contract: pass every datagram the socket receives to
//! [`PeerConnection::handle_receive`], call [`PeerConnection::handle_timeout`] at
//! [`PeerConnection::poll_timeout`], and after each call send everything
//! [`PeerConnection::poll_transmit`] yields and handle every [`PeerEvent`]. Nothing here reads
//! a clock or touches a socket.
//!
//! Datagrams are told apart by their first byte (RFC 7983): 0..=3 STUN, 20..=63 DTLS,
//! 128..=191 SRTP or SRTCP (RFC 5761 §4 by payload type). DTLS starts once a check has
//! succeeded, to the selected address only; we are always the DTLS client (the server answers
//! `a=setup:passive`, and we answer its `actpass` offers with `active`).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use lkr_datachannel::{DataChannelEvent, SctpTransport};
use lkr_dtls_glue::cert::{Certificate, Fingerprint};
use lkr_dtls_glue::dtls::{DtlsEndpoint, DtlsEvent, Role};
use lkr_dtls_glue::keying::SrtpSession;
use lkr_dtls_glue::srtp::{SrtpContext, SrtpProfile};
use lkr_ice::{AgentInput, AgentState, IceAgent};

use crate::ClientError;
use crate::sdp::LocalTransport;

/// What a peer connection reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// DTLS completed and SRTP keys are in place: media may flow.
    Connected,
    /// A data channel is open in both directions.
    ChannelOpen {
        /// Its label, e.g. `_reliable`.
        label: String,
    },
    /// A data channel message.
    Data {
        /// The channel's label.
        label: String,
        /// The message.
        data: Vec<u8>,
    },
    /// A decrypted RTP packet.
    Rtp(Vec<u8>),
    /// A decrypted compound RTCP packet.
    Rtcp(Vec<u8>),
    /// ICE or DTLS failed; the connection is dead.
    Failed(String),
}

/// What one datagram was, for a driver that keeps its own counters or takes decrypted media
/// in place ([`PeerConnection::receive`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// STUN, and what it was to the ICE agent.
    Stun(AgentInput),
    /// DTLS from the selected address (handed to the handshake), or from elsewhere (ignored).
    Dtls,
    /// DTLS the handshake refused as malformed or unexpected.
    DtlsDropped,
    /// Plain RTP, decrypted in place: the first `n` bytes of the buffer.
    Rtp(usize),
    /// Plain compound RTCP, decrypted in place: the first `n` bytes of the buffer.
    Rtcp(usize),
    /// SRTP or SRTCP that arrived before the keys, or did not authenticate.
    SrtpRefused,
    /// Anything else (RFC 7983 leaves it to nobody here).
    Other,
}

/// The remote side's transport parameters, from its description.
#[derive(Debug, Clone)]
pub struct RemoteParams {
    /// `a=ice-ufrag`.
    pub ufrag: String,
    /// `a=ice-pwd`.
    pub pwd: String,
    /// `a=fingerprint`.
    pub fingerprint: Fingerprint,
}

#[derive(Debug, Clone)]
struct ChannelWanted {
    label: String,
    ordered: bool,
    max_retransmits: Option<u16>,
}

/// A client peer connection. See the module documentation for the driver contract.
pub struct PeerConnection {
    ice: IceAgent,
    cert: Certificate,
    remote_fingerprint: Option<Fingerprint>,
    dtls: Option<DtlsEndpoint>,
    srtp_out: Option<SrtpContext>,
    srtp_in: Option<SrtpContext>,
    sctp: Option<SctpTransport>,
    sctp_wanted: bool,
    wanted_channels: Vec<ChannelWanted>,
    channels: HashMap<u16, String>,
    connected: bool,
    failed: bool,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<PeerEvent>,
}

impl std::fmt::Debug for PeerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConnection")
            .field("ice", &self.ice.state())
            .field("connected", &self.connected)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl PeerConnection {
    /// A peer connection that will present `cert` in DTLS, with fresh random ICE
    /// credentials.
    pub fn new(cert: Certificate) -> Self {
        Self::with_agent(cert, IceAgent::new())
    }

    /// A peer connection over a given ICE agent (its credentials, seed and timing).
    pub fn with_agent(cert: Certificate, ice: IceAgent) -> Self {
        Self {
            ice,
            cert,
            remote_fingerprint: None,
            dtls: None,
            srtp_out: None,
            srtp_in: None,
            sctp: None,
            sctp_wanted: false,
            wanted_channels: Vec::new(),
            channels: HashMap::new(),
            connected: false,
            failed: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Our ICE ufrag and password, for SDP.
    pub fn ice_credentials(&self) -> (&str, &str) {
        (self.ice.local_ufrag(), self.ice.local_pwd())
    }

    /// Our certificate's fingerprint, for SDP.
    pub fn fingerprint(&self) -> Fingerprint {
        self.cert.fingerprint()
    }

    /// Our side for SDP: credentials, fingerprint and the one host candidate, `ip:port`.
    pub fn local_transport(&self, ip: IpAddr, port: u16) -> LocalTransport {
        let (ufrag, pwd) = self.ice_credentials();
        let fp = self.fingerprint();
        LocalTransport {
            ufrag: ufrag.to_owned(),
            pwd: pwd.to_owned(),
            fingerprint: (fp.algorithm.clone(), fp.to_sdp_value()),
            candidate: Some(lkr_ice::host_candidate_line(
                "1",
                ip,
                port,
                lkr_ice::candidate_priority(lkr_ice::HOST_TYPE_PREFERENCE, 65_535, 1),
            )),
        }
    }

    /// Whether DTLS is done and media may flow.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Whether the connection has failed.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// The address of the selected pair.
    pub fn remote_address(&self) -> Option<SocketAddr> {
        self.ice.selected()
    }

    /// The ICE agent, for its state and timestamps.
    pub fn ice(&self) -> &IceAgent {
        &self.ice
    }

    /// The SRTP profile DTLS negotiated, once connected.
    pub fn srtp_profile(&self) -> Option<SrtpProfile> {
        self.srtp_out.as_ref().map(SrtpContext::profile)
    }

    /// Applies the remote description's transport: ICE credentials and the DTLS fingerprint.
    pub fn set_remote(&mut self, now: Instant, params: &RemoteParams) {
        self.remote_fingerprint = Some(params.fingerprint.clone());
        self.ice
            .set_remote_credentials(now, &params.ufrag, &params.pwd);
        self.poll_ice();
    }

    /// Adds a remote candidate address.
    pub fn add_remote_candidate(&mut self, now: Instant, addr: SocketAddr) {
        self.ice.add_remote_candidate(now, addr);
        self.ice.handle_timeout(now);
        self.poll_ice();
    }

    /// Asks for SCTP (the description has an `application` section). Channels are opened with
    /// [`Self::open_channel`].
    pub fn enable_sctp(&mut self, now: Instant) {
        if self.sctp_wanted {
            return;
        }
        self.sctp_wanted = true;
        if self.connected {
            self.start_sctp(now);
        }
    }

    /// Opens a data channel as soon as SCTP is up: `_reliable` (ordered, reliable) or
    /// `_lossy` (unordered, no retransmissions).
    pub fn open_channel(&mut self, label: &str, ordered: bool, max_retransmits: Option<u16>) {
        let wanted = ChannelWanted {
            label: label.to_owned(),
            ordered,
            max_retransmits,
        };
        if let Some(sctp) = self.sctp.as_mut() {
            match sctp.open_channel(label, ordered, max_retransmits, "") {
                Ok(id) => {
                    self.channels.insert(id, label.to_owned());
                }
                Err(e) => tracing::warn!(label, "data channel not opened: {e}"),
            }
        } else {
            self.wanted_channels.push(wanted);
        }
    }

    /// Sends one binary message on the channel labelled `label`.
    pub fn send_data(&mut self, now: Instant, label: &str, data: &[u8]) -> Result<(), ClientError> {
        let sctp = self.sctp.as_mut().ok_or(ClientError::DataChannel(
            "the data channels are not up yet".into(),
        ))?;
        let id = self
            .channels
            .iter()
            .find(|(_, l)| l.as_str() == label)
            .map(|(id, _)| *id)
            .ok_or_else(|| ClientError::DataChannel(format!("no {label} channel")))?;
        sctp.send(id, true, data)
            .map_err(|e| ClientError::DataChannel(e.to_string()))?;
        self.pump_sctp(now);
        Ok(())
    }

    /// Protects an RTP packet and queues it to the selected address. Dropped silently before
    /// the connection is up.
    pub fn send_rtp(&mut self, packet: &[u8]) -> Result<(), ClientError> {
        self.send_protected(packet, false)
    }

    /// Protects a compound RTCP packet and queues it.
    pub fn send_rtcp(&mut self, packet: &[u8]) -> Result<(), ClientError> {
        self.send_protected(packet, true)
    }

    fn send_protected(&mut self, packet: &[u8], rtcp: bool) -> Result<(), ClientError> {
        let (Some(srtp), Some(dest)) = (self.srtp_out.as_ref(), self.ice.selected()) else {
            return Ok(());
        };
        let room = if rtcp {
            srtp.profile().rtcp_overhead()
        } else {
            srtp.profile().rtp_overhead()
        };
        let mut buf = Vec::with_capacity(packet.len() + room);
        buf.extend_from_slice(packet);
        if let Some(d) = self.protect(buf, rtcp)? {
            self.transmits.push_back((dest, d));
        }
        Ok(())
    }

    /// Protects a plain RTP packet in its own buffer (grown by the SRTP trailer) and returns
    /// it instead of queueing it; `None` before SRTP is keyed.
    pub fn protect_rtp(&mut self, packet: Vec<u8>) -> Result<Option<Vec<u8>>, ClientError> {
        self.protect(packet, false)
    }

    /// Protects a plain compound RTCP packet in its own buffer, as [`Self::protect_rtp`].
    pub fn protect_rtcp(&mut self, packet: Vec<u8>) -> Result<Option<Vec<u8>>, ClientError> {
        self.protect(packet, true)
    }

    fn protect(&mut self, mut buf: Vec<u8>, rtcp: bool) -> Result<Option<Vec<u8>>, ClientError> {
        let Some(srtp) = self.srtp_out.as_mut() else {
            return Ok(None);
        };
        let len = buf.len();
        let n = if rtcp {
            buf.resize(len + srtp.profile().rtcp_overhead(), 0);
            srtp.protect_rtcp(&mut buf, len)
        } else {
            buf.resize(len + srtp.profile().rtp_overhead(), 0);
            srtp.protect_rtp(&mut buf, len)
        }
        .map_err(|e| ClientError::Dtls(e.to_string()))?;
        buf.truncate(n);
        Ok(Some(buf))
    }

    /// One datagram from the socket. Malformed or unexpected datagrams are dropped; media
    /// comes out as [`PeerEvent::Rtp`] and [`PeerEvent::Rtcp`].
    pub fn handle_receive(&mut self, now: Instant, from: SocketAddr, buf: &mut [u8]) {
        match self.receive(now, from, buf) {
            Received::Rtp(n) => self.events.push_back(PeerEvent::Rtp(buf[..n].to_vec())),
            Received::Rtcp(n) => self.events.push_back(PeerEvent::Rtcp(buf[..n].to_vec())),
            _ => {}
        }
    }

    /// One datagram from the socket, with media decrypted in place instead of queued as an
    /// event: the caller reads `buf[..n]` for [`Received::Rtp`] and [`Received::Rtcp`].
    /// Everything else is handled as by [`Self::handle_receive`].
    pub fn receive(&mut self, now: Instant, from: SocketAddr, buf: &mut [u8]) -> Received {
        let Some(&first) = buf.first() else {
            return Received::Other;
        };
        match first {
            0..=3 => {
                let input = self.ice.handle_receive(now, from, buf);
                if input == AgentInput::Connected {
                    self.start_dtls(now);
                }
                self.poll_ice();
                Received::Stun(input)
            }
            20..=63 => {
                if Some(from) != self.ice.selected() {
                    return Received::Dtls;
                }
                let Some(dtls) = self.dtls.as_mut() else {
                    return Received::Dtls;
                };
                let r = dtls.handle_receive(now, buf);
                self.pump_dtls(now);
                match r {
                    Ok(()) => Received::Dtls,
                    Err(e) => {
                        tracing::trace!("DTLS datagram dropped: {e}");
                        Received::DtlsDropped
                    }
                }
            }
            128..=191 => {
                let Some(srtp) = self.srtp_in.as_mut() else {
                    return Received::SrtpRefused;
                };
                if lkr_rtp::is_rtcp(buf) {
                    srtp.unprotect_rtcp(buf)
                        .map_or(Received::SrtpRefused, Received::Rtcp)
                } else {
                    srtp.unprotect_rtp(buf)
                        .map_or(Received::SrtpRefused, Received::Rtp)
                }
            }
            _ => Received::Other,
        }
    }

    /// Runs the timers of ICE, DTLS and SCTP.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.ice.handle_timeout(now);
        self.poll_ice();
        if let Some(dtls) = self.dtls.as_mut() {
            if dtls.poll_timeout().is_some_and(|at| at <= now) {
                dtls.handle_timeout(now);
            }
            self.pump_dtls(now);
        }
        if let Some(sctp) = self.sctp.as_mut()
            && sctp.poll_timeout().is_some_and(|at| at <= now)
        {
            sctp.handle_timeout(now);
            self.pump_sctp(now);
        }
    }

    /// The earliest time [`Self::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.ice.poll_timeout(),
            self.dtls.as_ref().and_then(DtlsEndpoint::poll_timeout),
            self.sctp.as_ref().and_then(SctpTransport::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next datagram to send, and where.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<PeerEvent> {
        self.events.pop_front()
    }

    fn fail(&mut self, reason: String) {
        if !self.failed {
            self.failed = true;
            self.events.push_back(PeerEvent::Failed(reason));
        }
    }

    fn poll_ice(&mut self) {
        while let Some(t) = self.ice.poll_transmit() {
            self.transmits.push_back(t);
        }
        if self.ice.state() == AgentState::Failed {
            self.fail("ICE failed: no answer to connectivity checks".into());
        }
    }

    fn start_dtls(&mut self, now: Instant) {
        if self.dtls.is_some() {
            return;
        }
        let (Some(fp), Some(remote)) = (self.remote_fingerprint.clone(), self.ice.selected())
        else {
            return;
        };
        match DtlsEndpoint::new(Role::Client, &self.cert, fp, remote, now) {
            Ok(dtls) => {
                self.dtls = Some(dtls);
                self.pump_dtls(now);
            }
            Err(e) => self.fail(format!("DTLS could not start: {e}")),
        }
    }

    fn pump_dtls(&mut self, now: Instant) {
        let Some(dtls) = self.dtls.as_mut() else {
            return;
        };
        let dest = self.ice.selected();
        let mut events = Vec::new();
        while let Some(d) = dtls.poll_transmit() {
            if let Some(dest) = dest {
                self.transmits.push_back((dest, d));
            }
        }
        while let Some(e) = dtls.poll_event() {
            events.push(e);
        }
        for e in events {
            match e {
                DtlsEvent::Connected {
                    profile_id,
                    keying_material,
                    we_are_client,
                } => {
                    match SrtpSession::from_dtls(profile_id, &keying_material, we_are_client) {
                        Ok(SrtpSession { inbound, outbound }) => {
                            self.srtp_in = Some(inbound);
                            self.srtp_out = Some(outbound);
                        }
                        Err(e) => {
                            self.fail(e.to_string());
                            continue;
                        }
                    }
                    self.connected = true;
                    self.events.push_back(PeerEvent::Connected);
                    if self.sctp_wanted {
                        self.start_sctp(now);
                    }
                }
                DtlsEvent::ApplicationData(data) => {
                    if let Some(sctp) = self.sctp.as_mut() {
                        sctp.handle_receive(now, &data);
                        self.pump_sctp(now);
                    }
                }
                DtlsEvent::Closed => self.fail("DTLS closed by the peer".into()),
                DtlsEvent::Failed(reason) => self.fail(format!("DTLS failed: {reason}")),
            }
        }
    }

    fn start_sctp(&mut self, now: Instant) {
        if self.sctp.is_some() {
            return;
        }
        let mut sctp = SctpTransport::new(true, now);
        for w in std::mem::take(&mut self.wanted_channels) {
            match sctp.open_channel(&w.label, w.ordered, w.max_retransmits, "") {
                Ok(id) => {
                    self.channels.insert(id, w.label);
                }
                Err(e) => tracing::warn!(label = %w.label, "data channel not opened: {e}"),
            }
        }
        self.sctp = Some(sctp);
        self.pump_sctp(now);
    }

    fn pump_sctp(&mut self, now: Instant) {
        let (Some(sctp), Some(dtls)) = (self.sctp.as_mut(), self.dtls.as_mut()) else {
            return;
        };
        while let Some(packet) = sctp.poll_transmit(now) {
            if let Err(e) = dtls.send_application_data(&packet) {
                tracing::debug!("SCTP packet not sent: {e}");
            }
        }
        while let Some(e) = sctp.poll_event() {
            match e {
                DataChannelEvent::ChannelOpen { stream_id, label } => {
                    self.channels.insert(stream_id, label.clone());
                    self.events.push_back(PeerEvent::ChannelOpen { label });
                }
                DataChannelEvent::Message {
                    stream_id, data, ..
                } => {
                    let label = self.channels.get(&stream_id).cloned().unwrap_or_default();
                    self.events.push_back(PeerEvent::Data { label, data });
                }
                DataChannelEvent::ChannelClosed { stream_id } => {
                    self.channels.remove(&stream_id);
                }
                DataChannelEvent::Established | DataChannelEvent::Closed => {}
            }
        }
        let dest = self.ice.selected();
        while let Some(d) = dtls.poll_transmit() {
            if let Some(dest) = dest {
                self.transmits.push_back((dest, d));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::testserver::{LiteServer, SERVER_PWD, SERVER_UFRAG};

    /// Runs both sides over a perfect virtual network until `done` or 5 virtual seconds.
    fn exchange(
        now: &mut Instant,
        client: &mut PeerConnection,
        server: &mut LiteServer,
        client_addr: SocketAddr,
        server_addr: SocketAddr,
        mut done: impl FnMut(&mut PeerConnection, &LiteServer) -> bool,
    ) {
        let end = *now + Duration::from_secs(5);
        while *now < end {
            client.handle_timeout(*now);
            server.handle_timeout(*now, client_addr);
            let mut moved = true;
            while moved {
                moved = false;
                while let Some((dest, mut d)) = client.poll_transmit() {
                    assert_eq!(dest, server_addr);
                    server.handle(*now, client_addr, &mut d);
                    moved = true;
                }
                for (dest, mut d) in std::mem::take(&mut server.out) {
                    assert_eq!(dest, client_addr);
                    client.handle_receive(*now, server_addr, &mut d);
                    moved = true;
                }
            }
            if done(client, server) {
                return;
            }
            *now += Duration::from_millis(5);
        }
        panic!("no progress: client {client:?}");
    }

    #[test]
    fn connects_to_an_ice_lite_dtls_server_and_carries_media_and_data() {
        let mut now = Instant::now();
        let client_addr: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let server_addr: SocketAddr = "127.0.0.1:7882".parse().unwrap();
        let mut client = PeerConnection::new(Certificate::generate().unwrap());
        let (ufrag, pwd) = client.ice_credentials();
        let mut server = LiteServer::new(ufrag, pwd, client.fingerprint());
        let server_cert = server.cert.clone();
        client.open_channel("_reliable", true, None);
        client.open_channel("_lossy", false, Some(0));
        client.enable_sctp(now);
        client.set_remote(
            now,
            &RemoteParams {
                ufrag: SERVER_UFRAG.into(),
                pwd: SERVER_PWD.into(),
                fingerprint: server_cert.fingerprint(),
            },
        );
        client.add_remote_candidate(now, server_addr);
        let mut events = Vec::new();
        exchange(
            &mut now,
            &mut client,
            &mut server,
            client_addr,
            server_addr,
            |c, _| {
                while let Some(e) = c.poll_event() {
                    events.push(e);
                }
                events
                    .iter()
                    .filter(|e| matches!(e, PeerEvent::ChannelOpen { .. }))
                    .count()
                    == 2
            },
        );
        assert_eq!(events[0], PeerEvent::Connected);
        assert!(client.is_connected());
        assert_eq!(client.remote_address(), Some(server_addr));

        client.send_data(now, "_reliable", b"hello").unwrap();
        let mut rtp = vec![0u8; 12];
        lkr_rtp::RtpWriter::write_header(&mut rtp, true, 96, 7, 1234, 0xabcd, &[]).unwrap();
        rtp.extend_from_slice(b"payload");
        client.send_rtp(&rtp).unwrap();
        exchange(
            &mut now,
            &mut client,
            &mut server,
            client_addr,
            server_addr,
            |_, s| !s.messages.is_empty() && !s.rtp.is_empty(),
        );
        assert_eq!(
            server.messages[0],
            ("_reliable".to_owned(), b"hello".to_vec())
        );
        assert_eq!(server.rtp[0], rtp);

        // Server to client: SRTP with the server's keys comes out as plain RTP.
        let mut down = server.protect(&rtp, false);
        client.handle_receive(now, server_addr, &mut down);
        assert_eq!(client.poll_event(), Some(PeerEvent::Rtp(rtp.clone())));
        // In place: the plain packet is the front of the caller's buffer, no event.
        rtp[3] = 8;
        let mut down = server.protect(&rtp, false);
        let mut replayed = down.clone();
        assert_eq!(
            client.receive(now, server_addr, &mut down),
            Received::Rtp(rtp.len())
        );
        assert_eq!(&down[..rtp.len()], &rtp[..]);
        assert!(client.poll_event().is_none());
        assert_eq!(
            client.receive(now, server_addr, &mut replayed),
            Received::SrtpRefused,
            "a replay does not authenticate twice"
        );
        // Datagrams from elsewhere do not reach DTLS.
        let mut stray = vec![22u8, 254, 253, 0, 0];
        client.handle_receive(now, "127.0.0.1:1".parse().unwrap(), &mut stray);
        assert!(client.poll_event().is_none());
    }
}
