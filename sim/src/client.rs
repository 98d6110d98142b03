//! A simulated WebRTC client in the roles a browser takes against the server, built on our
//! own client's transport: [`lkr_client::peer::PeerConnection`] (the controlling ICE agent of
//! `lkr-ice` with USE-CANDIDATE and consent checks, the DTLS client, SRTP keyed by
//! `lkr-dtls-glue`) with any number of publishers and receive streams on top, and RTCP
//! feedback (NACK, PLI) as libwebrtc sends it.
//!
//! Sans-IO like the engine: `handle_receive`, `handle_timeout` in; `poll_transmit`,
//! `poll_timeout` out.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lkr_client::peer::{PeerConnection, PeerEvent, Received, RemoteParams};
use lkr_dtls_glue::cert::{Certificate, Fingerprint};
use lkr_dtls_glue::srtp::SrtpProfile;
use lkr_ice::{AgentInput, AgentTiming, IceAgent};
use lkr_rtp::{RtcpPacket, RtpView};
use lkr_sfu::{CodecKind, PeerId, TrackId};

use crate::media::{MediaSource, NackPolicy, Publisher, ReceivedStream};
use crate::net::Kind;
use crate::rng::Rng;

/// The ICE credentials of both ends of one transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    pub client_ufrag: String,
    pub client_pwd: String,
    pub server_ufrag: String,
    pub server_pwd: String,
}

/// How a client behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientConfig {
    /// Retransmission interval of connectivity checks before the first success (fixed, no
    /// back-off).
    pub check_interval: Duration,
    /// Interval of consent freshness checks once connected (RFC 7675 §5.1 suggests 5 s).
    pub consent_interval: Duration,
    pub nack: NackPolicy,
    /// Period of the feedback timer (NACK retries).
    pub feedback_interval: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            check_interval: Duration::from_millis(50),
            consent_interval: Duration::from_secs(5),
            nack: NackPolicy::default(),
            feedback_interval: Duration::from_millis(20),
        }
    }
}

impl ClientConfig {
    /// The agent's timing: a fixed check interval, and no giving up (the server decides
    /// when a transport is gone).
    fn ice_timing(&self) -> AgentTiming {
        AgentTiming {
            first_check_interval: self.check_interval,
            max_check_interval: self.check_interval,
            consent_interval: self.consent_interval,
            consent_timeout: None,
        }
    }
}

/// Counters of one client.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClientStats {
    pub checks_sent: u64,
    pub check_responses: u64,
    pub stun_errors: u64,
    pub dtls_received: u64,
    pub rtp_received: u64,
    pub rtcp_received: u64,
    pub srtp_errors: u64,
    /// RTP for an SSRC nobody subscribed to.
    pub unknown_ssrc: u64,
    pub other_received: u64,
}

/// One simulated client: one transport (one RTCPeerConnection).
#[derive(Debug)]
pub struct Client {
    pub peer: PeerId,
    pub addr: SocketAddr,
    server: SocketAddr,
    config: ClientConfig,
    creds: IceCredentials,
    pc: PeerConnection,
    silent: bool,
    last_check_sent: Option<Instant>,
    dtls_failure: Option<String>,
    connected_at: Option<Instant>,
    publishers: Vec<Publisher>,
    streams: BTreeMap<u32, ReceivedStream>,
    outbox: VecDeque<(SocketAddr, Vec<u8>)>,
    rng: Rng,
    /// Our SSRC as the sender of RTCP feedback.
    feedback_ssrc: u32,
    next_feedback: Instant,
    last_timeout: Option<Instant>,
    scratch: Vec<u16>,
    pub stats: ClientStats,
    /// The transport-cc extension id downstream packets carry (0: not read), and the
    /// transport-wide sequence numbers seen, in arrival order.
    pub twcc_ext: u8,
    pub twcc_seqs: Vec<u16>,
    /// The playout-delay extension id to read (0: none), and the values read, with the
    /// SSRC of each packet.
    pub playout_delay_ext: u8,
    pub playout_delays: Vec<(u32, Vec<u8>)>,
    /// Transport-wide congestion feedback, once asked for ([`Client::send_transport_feedback`]):
    /// the arrivals not yet reported, and the instant their arrival times count from.
    twcc_feedback: Option<(lkr_rtp::TwccBuilder, Instant)>,
    /// Transport-wide feedback packets sent.
    pub twcc_feedback_sent: u64,
    /// Data channels open, by label, in the order they opened.
    pub channels_open: Vec<String>,
    /// Data channel messages received: (label, message), in arrival order.
    pub data: Vec<(String, Vec<u8>)>,
}

impl Client {
    /// A client at `addr` that will connect to `server` with `creds`, presenting `cert` and
    /// expecting the server's certificate to match `server_fp`. It sends its first check at
    /// `now`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        peer: PeerId,
        addr: SocketAddr,
        server: SocketAddr,
        config: ClientConfig,
        creds: IceCredentials,
        cert: Certificate,
        server_fp: Fingerprint,
        seed: u64,
        now: Instant,
    ) -> Self {
        let mut rng = Rng::new(seed);
        let ice_seed = rng.next_u64();
        let feedback_ssrc = rng.next_u32() | 1;
        let agent = IceAgent::seeded(
            creds.client_ufrag.clone(),
            creds.client_pwd.clone(),
            ice_seed,
            config.ice_timing(),
        );
        let mut pc = PeerConnection::with_agent(cert, agent);
        pc.set_remote(
            now,
            &RemoteParams {
                ufrag: creds.server_ufrag.clone(),
                pwd: creds.server_pwd.clone(),
                fingerprint: server_fp,
            },
        );
        pc.add_remote_candidate(now, server);
        let mut client = Self {
            peer,
            addr,
            server,
            config,
            creds,
            pc,
            silent: false,
            last_check_sent: None,
            dtls_failure: None,
            connected_at: None,
            publishers: Vec::new(),
            streams: BTreeMap::new(),
            outbox: VecDeque::new(),
            rng,
            feedback_ssrc,
            next_feedback: now,
            last_timeout: None,
            scratch: Vec::new(),
            twcc_ext: 0,
            twcc_seqs: Vec::new(),
            playout_delay_ext: 0,
            playout_delays: Vec::new(),
            twcc_feedback: None,
            twcc_feedback_sent: 0,
            channels_open: Vec::new(),
            data: Vec::new(),
            stats: ClientStats::default(),
        };
        client.drain(now);
        client
    }

    /// Starts SCTP and opens the `_reliable` channel (ordered, reliable), as a LiveKit client
    /// does; until then the client has no data channel.
    pub fn open_reliable_channel(&mut self, now: Instant) {
        self.pc.enable_sctp(now);
        self.pc.open_channel("_reliable", true, None);
        self.drain(now);
    }

    /// The ICE credentials (the server needs the same ones).
    pub fn credentials(&self) -> &IceCredentials {
        &self.creds
    }

    /// Whether a check has been answered.
    pub fn ice_connected(&self) -> bool {
        self.pc.remote_address().is_some()
    }

    /// When the last connectivity or consent check went out.
    pub fn last_check_sent(&self) -> Option<Instant> {
        self.last_check_sent
    }

    /// Whether DTLS is up and SRTP keyed.
    pub fn is_connected(&self) -> bool {
        self.pc.is_connected()
    }

    /// The SRTP profile DTLS negotiated.
    pub fn srtp_profile(&self) -> Option<SrtpProfile> {
        self.pc.srtp_profile()
    }

    /// When DTLS completed.
    pub fn connected_at(&self) -> Option<Instant> {
        self.connected_at
    }

    /// Why DTLS failed, if it did.
    pub fn dtls_failure(&self) -> Option<&str> {
        self.dtls_failure.as_deref()
    }

    /// Stops (or resumes) sending STUN, consent checks included: after 30 s the server
    /// should let the transport go. The agent keeps its schedule; its checks are dropped
    /// while silent, and the next one after resuming goes out.
    pub fn set_silent(&mut self, silent: bool, _now: Instant) {
        self.silent = silent;
    }

    /// Adds a publisher; its first frame goes out at `now` once connected.
    pub fn add_publisher(&mut self, track: TrackId, ssrc: u32, source: MediaSource, now: Instant) {
        let first_seq = (self.rng.next_u32() & 0x7FFF) as u16;
        let ts_base = self.rng.next_u32();
        self.publishers
            .push(Publisher::new(track, ssrc, source, first_seq, ts_base, now));
    }

    pub fn publisher(&self, track: TrackId) -> Option<&Publisher> {
        self.publishers.iter().find(|p| p.track == track)
    }

    pub fn publisher_mut(&mut self, track: TrackId) -> Option<&mut Publisher> {
        self.publishers.iter_mut().find(|p| p.track == track)
    }

    pub fn publishers(&self) -> &[Publisher] {
        &self.publishers
    }

    /// Announces an incoming stream (a subscription), so that its codec is known.
    pub fn expect_stream(&mut self, ssrc: u32, track: TrackId, codec: CodecKind) {
        self.streams
            .entry(ssrc)
            .or_insert_with(|| ReceivedStream::new(ssrc, Some(track), codec));
    }

    pub fn stream(&self, ssrc: u32) -> Option<&ReceivedStream> {
        self.streams.get(&ssrc)
    }

    /// The receive stream of a subscribed track.
    pub fn stream_of(&self, track: TrackId) -> Option<&ReceivedStream> {
        self.streams.values().find(|s| s.track == Some(track))
    }

    pub fn streams(&self) -> impl Iterator<Item = &ReceivedStream> {
        self.streams.values()
    }

    /// Sets how lost packets are asked for.
    pub fn set_nack_policy(&mut self, policy: NackPolicy) {
        self.config.nack = policy;
    }

    /// The next datagram to send, with its destination.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.outbox.pop_front()
    }

    /// When [`Client::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.pc.poll_timeout();
        if self.is_connected() {
            for t in std::iter::once(Some(self.next_feedback))
                .chain(self.publishers.iter().map(Publisher::poll_timeout))
                .flatten()
            {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        // A timer that handling did not move (the DTLS stack may report one in the past)
        // waits a millisecond, so that time always advances.
        match (next, self.last_timeout) {
            (Some(t), Some(last)) if t <= last => Some(last + Duration::from_millis(1)),
            (t, _) => t,
        }
    }

    /// Timers: checks, DTLS retransmissions, frames, NACK retries.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_timeout = Some(now);
        self.pc.handle_timeout(now);
        self.after_transport(now);
        if !self.is_connected() {
            return;
        }
        let mut packets = Vec::new();
        for i in 0..self.publishers.len() {
            self.publishers[i].handle_timeout(now, &mut packets);
            for p in packets.drain(..) {
                self.send_rtp(p);
            }
        }
        if self.next_feedback <= now {
            self.next_feedback = now + self.config.feedback_interval;
            self.send_feedback(now);
        }
        self.drain(now);
    }

    /// A datagram from `from`.
    pub fn handle_receive(&mut self, now: Instant, from: SocketAddr, data: &mut [u8]) {
        match self.pc.receive(now, from, data) {
            Received::Stun(AgentInput::Connected | AgentInput::Answered) => {
                self.stats.check_responses += 1;
            }
            Received::Stun(_) => self.stats.stun_errors += 1,
            Received::Dtls => self.stats.dtls_received += 1,
            Received::DtlsDropped => {
                self.stats.dtls_received += 1;
                self.stats.other_received += 1;
            }
            Received::Rtp(n) => {
                self.stats.rtp_received += 1;
                self.handle_rtp(now, &data[..n]);
            }
            Received::Rtcp(n) => {
                self.stats.rtcp_received += 1;
                self.handle_rtcp(&data[..n]);
            }
            Received::SrtpRefused => {
                if Kind::of(data) == Kind::Rtcp {
                    self.stats.rtcp_received += 1;
                } else {
                    self.stats.rtp_received += 1;
                }
                self.stats.srtp_errors += 1;
            }
            Received::Other => self.stats.other_received += 1,
        }
        self.after_transport(now);
    }

    /// Reacts to what the peer connection reported, then queues what it sends.
    fn after_transport(&mut self, now: Instant) {
        while let Some(e) = self.pc.poll_event() {
            match e {
                PeerEvent::Connected => {
                    self.connected_at = Some(now);
                    self.next_feedback = now;
                    for p in &mut self.publishers {
                        if p.is_sending() {
                            p.set_sending(false, now);
                            p.set_sending(true, now);
                        }
                    }
                }
                PeerEvent::Failed(reason) => {
                    self.dtls_failure.get_or_insert(reason);
                }
                PeerEvent::ChannelOpen { label } => self.channels_open.push(label),
                PeerEvent::Data { label, data } => self.data.push((label, data)),
                PeerEvent::Rtp(_) | PeerEvent::Rtcp(_) => {}
            }
        }
        self.drain(now);
    }

    /// Moves what the peer connection sends into the outbox; while silent, STUN stays home.
    fn drain(&mut self, now: Instant) {
        while let Some((dest, data)) = self.pc.poll_transmit() {
            if Kind::of(&data) == Kind::Stun {
                if self.silent {
                    continue;
                }
                self.stats.checks_sent += 1;
                self.last_check_sent = Some(now);
            }
            self.outbox.push_back((dest, data));
        }
    }

    /// Protects a plain RTP packet (with or without room behind it); `None` before SRTP is
    /// keyed.
    pub fn protect_rtp(&mut self, packet: Vec<u8>) -> Option<Vec<u8>> {
        self.pc.protect_rtp(packet).ok().flatten()
    }

    /// The next packet of `track`'s publisher, protected, returned instead of sent (for
    /// benchmarks and tests that drive the engine directly). Advances the publisher.
    pub fn next_media_datagram(&mut self, track: TrackId) -> Option<Vec<u8>> {
        let p = self.publishers.iter_mut().find(|p| p.track == track)?;
        let packet = p.next_packet();
        self.protect_rtp(packet)
    }

    fn send_rtp(&mut self, packet: Vec<u8>) {
        if let Some(d) = self.protect_rtp(packet) {
            self.outbox.push_back((self.server, d));
        }
    }

    /// Protects and queues one RTCP packet written by `write` behind an empty receiver
    /// report (RFC 3550 §6.1: a compound packet starts with a report).
    fn send_rtcp(&mut self, write: impl FnOnce(&mut [u8]) -> Option<usize>) {
        if let Some(buf) = self.rtcp_datagram(&[], write) {
            self.outbox.push_back((self.server, buf));
        }
    }

    /// One protected compound RTCP packet: a receiver report with `blocks`, then what
    /// `write` adds; returned instead of sent (for tests that drive the engine directly).
    pub fn rtcp_datagram(
        &mut self,
        blocks: &[lkr_rtp::ReportBlock],
        write: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<Vec<u8>> {
        if !self.is_connected() {
            return None;
        }
        let mut buf = vec![0u8; 1500];
        let rr = lkr_rtp::write_receiver_report(&mut buf, self.feedback_ssrc, blocks).ok()?;
        let n = write(&mut buf[rr..1400])?;
        buf.truncate(rr + n);
        self.pc.protect_rtcp(buf).ok().flatten()
    }

    /// A consent check to the server (as the agent sends every few seconds), returned
    /// instead of sent (for tests that drive the engine directly).
    pub fn consent_check(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let username = format!("{}:{}", self.creds.server_ufrag, self.creds.client_ufrag);
        let tid = std::array::from_fn(|_| self.rng.next_u32() as u8);
        lkr_ice::write_binding_request(
            &mut out,
            tid,
            &username,
            &self.creds.server_pwd,
            0x6e00_01ff,
            self.rng.next_u64(),
            false,
        )
        .expect("a check encodes");
        out
    }

    /// Sends a PLI for an incoming stream.
    pub fn send_pli(&mut self, media_ssrc: u32) {
        let sender = self.feedback_ssrc;
        self.send_rtcp(|out| lkr_rtp::write_pli(out, sender, media_ssrc).ok());
        if let Some(s) = self.streams.get_mut(&media_ssrc) {
            s.stats.plis_sent += 1;
        }
    }

    fn send_nack(&mut self, media_ssrc: u32, lost: &[u16]) {
        let sender = self.feedback_ssrc;
        // 64 numbers per packet keeps it well under the MTU whatever their spread.
        for chunk in lost.chunks(64) {
            self.send_rtcp(|out| lkr_rtp::write_nack(out, sender, media_ssrc, chunk).ok());
            if let Some(s) = self.streams.get_mut(&media_ssrc) {
                s.stats.nack_packets_sent += 1;
                s.stats.nacks_sent += chunk.len() as u64;
            }
        }
    }

    /// From `now` on, reports the arrival of every downstream packet carrying a
    /// transport-wide sequence number (`twcc_ext` must be set) back to the server with
    /// each feedback tick, as a browser does every 50-100 ms.
    pub fn send_transport_feedback(&mut self, now: Instant) {
        self.twcc_feedback = Some((lkr_rtp::TwccBuilder::new(), now));
    }

    fn send_twcc(&mut self) {
        let Some((mut builder, epoch)) = self.twcc_feedback.take() else {
            return;
        };
        let sender = self.feedback_ssrc;
        let media = self.streams.keys().next().copied().unwrap_or(0);
        // One packet per call at most covers what fits; a few rounds empty the builder.
        for _ in 0..8 {
            if builder.pending() == 0 {
                break;
            }
            let before = self.outbox.len();
            self.send_rtcp(|out| builder.write(out, sender, media).ok().flatten());
            if self.outbox.len() == before {
                break;
            }
            self.twcc_feedback_sent += 1;
        }
        self.twcc_feedback = Some((builder, epoch));
    }

    /// Transport-wide feedback (once asked for), then NACK retries, give-ups and PLIs of
    /// every receive stream.
    fn send_feedback(&mut self, now: Instant) {
        self.send_twcc();
        let policy = self.config.nack;
        let ssrcs: Vec<u32> = self.streams.keys().copied().collect();
        let mut lost = std::mem::take(&mut self.scratch);
        for ssrc in ssrcs {
            let Some(s) = self.streams.get_mut(&ssrc) else {
                continue;
            };
            s.due_nacks(now, &policy, &mut lost);
            let pli = s.take_pli_due();
            if !lost.is_empty() {
                self.send_nack(ssrc, &lost);
            }
            if pli {
                self.send_pli(ssrc);
            }
        }
        self.scratch = lost;
    }

    /// Plain RTP, already unprotected by the peer connection.
    fn handle_rtp(&mut self, now: Instant, data: &[u8]) {
        let Ok(view) = RtpView::parse(data) else {
            self.stats.other_received += 1;
            return;
        };
        let policy = self.config.nack;
        let ssrc = view.ssrc();
        if self.twcc_ext != 0
            && let Some(seq) = view
                .extension(self.twcc_ext)
                .and_then(lkr_rtp::parse_transport_cc)
        {
            self.twcc_seqs.push(seq);
            if let Some((builder, epoch)) = self.twcc_feedback.as_mut() {
                builder.push(
                    seq,
                    now.saturating_duration_since(*epoch).as_micros() as i64,
                );
            }
        }
        if self.playout_delay_ext != 0
            && let Some(v) = view.extension(self.playout_delay_ext)
        {
            self.playout_delays.push((ssrc, v.to_vec()));
        }
        let Some(stream) = self.streams.get_mut(&ssrc) else {
            self.stats.unknown_ssrc += 1;
            let mut s = ReceivedStream::new(ssrc, None, CodecKind::Other);
            s.on_packet(now, &view, &policy);
            self.streams.insert(ssrc, s);
            return;
        };
        if stream.on_packet(now, &view, &policy) {
            // libwebrtc NACKs a new gap at once; retries follow on the feedback timer.
            let mut lost = std::mem::take(&mut self.scratch);
            stream.due_nacks(now, &policy, &mut lost);
            if !lost.is_empty() {
                self.send_nack(ssrc, &lost);
            }
            self.scratch = lost;
        }
    }

    /// Plain compound RTCP, already unprotected by the peer connection.
    fn handle_rtcp(&mut self, data: &[u8]) {
        let mut resend: Vec<(usize, u16)> = Vec::new();
        for pkt in lkr_rtp::rtcp_packets(data) {
            let Ok(pkt) = pkt else { break };
            match pkt {
                RtcpPacket::Pli { media_ssrc, .. } => {
                    if let Some(p) = self.publishers.iter_mut().find(|p| p.ssrc == media_ssrc) {
                        p.stats.plis_received += 1;
                        p.request_keyframe();
                    }
                }
                RtcpPacket::Fir { entries, .. } => {
                    for (ssrc, _) in entries.iter() {
                        if let Some(p) = self.publishers.iter_mut().find(|p| p.ssrc == ssrc) {
                            p.stats.plis_received += 1;
                            p.request_keyframe();
                        }
                    }
                }
                RtcpPacket::Nack {
                    media_ssrc, pairs, ..
                } => {
                    if let Some(i) = self.publishers.iter().position(|p| p.ssrc == media_ssrc) {
                        self.publishers[i].stats.nack_packets_received += 1;
                        for seq in pairs {
                            resend.push((i, seq));
                        }
                    }
                }
                _ => {}
            }
        }
        for (i, seq) in resend {
            let p = &mut self.publishers[i];
            p.stats.nacks_received += 1;
            match p.history(seq).map(<[u8]>::to_vec) {
                Some(packet) => {
                    p.stats.retransmitted += 1;
                    self.send_rtp(packet);
                }
                None => p.stats.nack_misses += 1,
            }
        }
    }
}
