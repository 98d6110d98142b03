//! A simulated WebRTC client built from our own crates, in the roles a browser takes against
//! the server: controlling ICE agent (binding requests with USE-CANDIDATE, then consent
//! checks), DTLS client, SRTP from the exported keys, any number of publishers and receive
//! streams, and RTCP feedback (NACK, PLI) as libwebrtc sends it.
//!
//! Sans-IO like the engine: `handle_receive`, `handle_timeout` in; `poll_transmit`,
//! `poll_timeout` out.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lkr_dtls_glue::cert::{Certificate, Fingerprint};
use lkr_dtls_glue::dtls::{DtlsEndpoint, DtlsEvent, Role};
use lkr_dtls_glue::srtp::{SrtpContext, SrtpKeys, SrtpProfile};
use lkr_rtp::{RtcpPacket, RtpView};
use lkr_sfu::{CodecKind, PeerId, TrackId};

use crate::media::{MediaSource, NackPolicy, Publisher, ReceivedStream, SRTP_ROOM};
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
    /// Retransmission interval of connectivity checks before the first success.
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

#[derive(Debug)]
struct IceAgent {
    creds: IceCredentials,
    tie_breaker: u64,
    /// Transaction ids of checks not yet answered (the last few).
    pending: VecDeque<[u8; 12]>,
    connected: bool,
    next_check: Instant,
    last_check_sent: Option<Instant>,
    silent: bool,
}

/// Transactions remembered for matching responses.
const PENDING_CHECKS: usize = 16;

/// One simulated client: one transport (one RTCPeerConnection).
#[derive(Debug)]
pub struct Client {
    pub peer: PeerId,
    pub addr: SocketAddr,
    server: SocketAddr,
    config: ClientConfig,
    ice: IceAgent,
    cert: Certificate,
    server_fp: Fingerprint,
    dtls: Option<DtlsEndpoint>,
    dtls_failure: Option<String>,
    srtp_in: Option<SrtpContext>,
    srtp_out: Option<SrtpContext>,
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
        let tie_breaker = rng.next_u64();
        let feedback_ssrc = rng.next_u32() | 1;
        Self {
            peer,
            addr,
            server,
            config,
            ice: IceAgent {
                creds,
                tie_breaker,
                pending: VecDeque::new(),
                connected: false,
                next_check: now,
                last_check_sent: None,
                silent: false,
            },
            cert,
            server_fp,
            dtls: None,
            dtls_failure: None,
            srtp_in: None,
            srtp_out: None,
            connected_at: None,
            publishers: Vec::new(),
            streams: BTreeMap::new(),
            outbox: VecDeque::new(),
            rng,
            feedback_ssrc,
            next_feedback: now,
            last_timeout: None,
            scratch: Vec::new(),
            stats: ClientStats::default(),
        }
    }

    /// The ICE credentials (the server needs the same ones).
    pub fn credentials(&self) -> &IceCredentials {
        &self.ice.creds
    }

    /// Whether a check has been answered.
    pub fn ice_connected(&self) -> bool {
        self.ice.connected
    }

    /// When the last connectivity or consent check went out.
    pub fn last_check_sent(&self) -> Option<Instant> {
        self.ice.last_check_sent
    }

    /// Whether DTLS is up and SRTP keyed.
    pub fn is_connected(&self) -> bool {
        self.srtp_out.is_some()
    }

    /// The SRTP profile DTLS negotiated.
    pub fn srtp_profile(&self) -> Option<SrtpProfile> {
        self.srtp_out.as_ref().map(SrtpContext::profile)
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
    /// should let the transport go.
    pub fn set_silent(&mut self, silent: bool, now: Instant) {
        if self.ice.silent && !silent {
            self.ice.next_check = now;
        }
        self.ice.silent = silent;
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
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        if !self.ice.silent {
            consider(Some(self.ice.next_check));
        }
        if let Some(d) = &self.dtls {
            consider(d.poll_timeout());
        }
        if self.is_connected() {
            consider(Some(self.next_feedback));
            for p in &self.publishers {
                consider(p.poll_timeout());
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
        if !self.ice.silent && self.ice.next_check <= now {
            self.send_check();
            self.ice.last_check_sent = Some(now);
            let interval = if self.ice.connected {
                self.config.consent_interval
            } else {
                self.config.check_interval
            };
            self.ice.next_check = now + interval;
        }
        if let Some(d) = self.dtls.as_mut()
            && d.poll_timeout().is_some_and(|t| t <= now)
        {
            d.handle_timeout(now);
            self.pump_dtls(now);
        }
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
    }

    /// A datagram from `from`.
    pub fn handle_receive(&mut self, now: Instant, from: SocketAddr, data: &mut [u8]) {
        match Kind::of(data) {
            Kind::Stun => self.handle_stun(now, data),
            Kind::Dtls => {
                self.stats.dtls_received += 1;
                if from != self.server {
                    return;
                }
                if let Some(d) = self.dtls.as_mut() {
                    if d.handle_receive(now, data).is_err() {
                        self.stats.other_received += 1;
                    }
                    self.pump_dtls(now);
                }
            }
            Kind::Rtp => {
                self.stats.rtp_received += 1;
                self.handle_rtp(now, data);
            }
            Kind::Rtcp => {
                self.stats.rtcp_received += 1;
                self.handle_rtcp(data);
            }
            Kind::Other => self.stats.other_received += 1,
        }
    }

    fn send_check(&mut self) {
        let mut txid = [0u8; 12];
        self.rng.fill(&mut txid);
        let ice = &mut self.ice;
        let username = format!("{}:{}", ice.creds.server_ufrag, ice.creds.client_ufrag);
        let priority =
            lkr_ice::candidate_priority(lkr_ice::PEER_REFLEXIVE_TYPE_PREFERENCE, 65_535, 1);
        let mut out = Vec::new();
        if lkr_ice::write_binding_request(
            &mut out,
            txid,
            &username,
            &ice.creds.server_pwd,
            priority,
            ice.tie_breaker,
            true,
        )
        .is_err()
        {
            self.stats.stun_errors += 1;
            return;
        }
        if ice.pending.len() == PENDING_CHECKS {
            ice.pending.pop_front();
        }
        ice.pending.push_back(txid);
        self.stats.checks_sent += 1;
        self.outbox.push_back((self.server, out));
    }

    fn handle_stun(&mut self, now: Instant, data: &[u8]) {
        let Ok(resp) = lkr_ice::parse_binding_response(data, &self.ice.creds.server_pwd) else {
            self.stats.stun_errors += 1;
            return;
        };
        let Some(i) = self
            .ice
            .pending
            .iter()
            .position(|t| *t == resp.transaction_id)
        else {
            self.stats.stun_errors += 1;
            return;
        };
        self.ice.pending.remove(i);
        if !resp.success {
            self.stats.stun_errors += 1;
            return;
        }
        self.stats.check_responses += 1;
        if !self.ice.connected {
            self.ice.connected = true;
            self.ice.next_check = now + self.config.consent_interval;
        }
        if self.dtls.is_none() && self.dtls_failure.is_none() {
            match DtlsEndpoint::new(
                Role::Client,
                &self.cert,
                self.server_fp.clone(),
                self.server,
                now,
            ) {
                Ok(d) => self.dtls = Some(d),
                Err(e) => self.dtls_failure = Some(e.to_string()),
            }
            self.pump_dtls(now);
        }
    }

    fn pump_dtls(&mut self, now: Instant) {
        let Some(d) = self.dtls.as_mut() else { return };
        while let Some(out) = d.poll_transmit() {
            self.outbox.push_back((self.server, out));
        }
        while let Some(ev) = d.poll_event() {
            match ev {
                DtlsEvent::Connected {
                    profile_id,
                    keying_material,
                    we_are_client,
                } => {
                    let keyed = SrtpProfile::from_dtls_id(profile_id)
                        .ok_or_else(|| format!("unknown SRTP profile {profile_id:#06x}"))
                        .and_then(|profile| {
                            let k =
                                SrtpKeys::from_exporter(profile, &keying_material, we_are_client)
                                    .map_err(|e| e.to_string())?;
                            let rx = SrtpContext::new(profile, &k.remote_key, &k.remote_salt)
                                .map_err(|e| e.to_string())?;
                            let tx = SrtpContext::new(profile, &k.local_key, &k.local_salt)
                                .map_err(|e| e.to_string())?;
                            Ok((rx, tx))
                        });
                    match keyed {
                        Ok((rx, tx)) => {
                            self.srtp_in = Some(rx);
                            self.srtp_out = Some(tx);
                            self.connected_at = Some(now);
                            self.next_feedback = now;
                            for p in &mut self.publishers {
                                if p.is_sending() {
                                    p.set_sending(false, now);
                                    p.set_sending(true, now);
                                }
                            }
                        }
                        Err(e) => self.dtls_failure = Some(e),
                    }
                }
                DtlsEvent::Failed(reason) => self.dtls_failure = Some(reason),
                DtlsEvent::ApplicationData(_) | DtlsEvent::Closed => {}
            }
        }
    }

    /// Protects a plain RTP packet (with or without room behind it); `None` before SRTP is
    /// keyed.
    pub fn protect_rtp(&mut self, mut packet: Vec<u8>) -> Option<Vec<u8>> {
        let srtp = self.srtp_out.as_mut()?;
        let len = packet.len();
        packet.resize(len + SRTP_ROOM, 0);
        let n = srtp.protect_rtp(&mut packet, len).ok()?;
        packet.truncate(n);
        Some(packet)
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
        if let Some(buf) = self.rtcp_datagram(write) {
            self.outbox.push_back((self.server, buf));
        }
    }

    /// The protected datagram `send_rtcp` would send, for a test to hand over itself: any
    /// RTCP `write` puts (up to 1400 bytes in all) behind an empty receiver report.
    pub fn rtcp_datagram(
        &mut self,
        write: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<Vec<u8>> {
        let srtp = self.srtp_out.as_mut()?;
        let mut buf = vec![0u8; 1500];
        let rr = lkr_rtp::write_receiver_report(&mut buf, self.feedback_ssrc, &[]).ok()?;
        let n = write(&mut buf[rr..1400])?;
        let m = srtp.protect_rtcp(&mut buf, rr + n).ok()?;
        buf.truncate(m);
        Some(buf)
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

    /// NACK retries, give-ups and PLIs of every receive stream.
    fn send_feedback(&mut self, now: Instant) {
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

    fn handle_rtp(&mut self, now: Instant, data: &mut [u8]) {
        let Some(srtp) = self.srtp_in.as_mut() else {
            self.stats.srtp_errors += 1;
            return;
        };
        let Ok(n) = srtp.unprotect_rtp(data) else {
            self.stats.srtp_errors += 1;
            return;
        };
        let Ok(view) = RtpView::parse(&data[..n]) else {
            self.stats.other_received += 1;
            return;
        };
        let policy = self.config.nack;
        let ssrc = view.ssrc();
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

    fn handle_rtcp(&mut self, data: &mut [u8]) {
        let Some(srtp) = self.srtp_in.as_mut() else {
            self.stats.srtp_errors += 1;
            return;
        };
        let Ok(n) = srtp.unprotect_rtcp(data) else {
            self.stats.srtp_errors += 1;
            return;
        };
        let mut resend: Vec<(usize, u16)> = Vec::new();
        for pkt in lkr_rtp::rtcp_packets(&data[..n]) {
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
