//! The server's side of one transport for unit tests, built from the same crates the SFU
//! uses: an ICE-lite responder, the DTLS server keyed by `lkr-dtls-glue`, SRTP and SCTP. It
//! records what the client sent and can answer the client's descriptions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use lkr_datachannel::{DataChannelEvent, SctpTransport};
use lkr_dtls_glue::cert::{Certificate, Fingerprint};
use lkr_dtls_glue::dtls::{DtlsEndpoint, DtlsEvent, Role};
use lkr_dtls_glue::keying::SrtpSession;
use lkr_dtls_glue::srtp::SrtpContext;
use lkr_ice::IceLite;
use lkr_sdp::{MediaKind, MediaSection, SessionDescription, Setup, TransportLines};

pub const SERVER_UFRAG: &str = "srvufrag";
pub const SERVER_PWD: &str = "serverpasswordserverpassword";

pub struct LiteServer {
    pub ice: IceLite,
    pub cert: Certificate,
    pub client_fp: Fingerprint,
    pub dtls: Option<DtlsEndpoint>,
    pub srtp_in: Option<SrtpContext>,
    pub srtp_out: Option<SrtpContext>,
    pub sctp: Option<SctpTransport>,
    pub out: Vec<(SocketAddr, Vec<u8>)>,
    pub rtp: Vec<Vec<u8>>,
    pub rtcp: Vec<Vec<u8>>,
    pub messages: Vec<(String, Vec<u8>)>,
    pub labels: HashMap<u16, String>,
}

impl LiteServer {
    /// A server for a client with these ICE credentials and certificate fingerprint.
    pub fn new(client_ufrag: &str, client_pwd: &str, client_fp: Fingerprint) -> Self {
        let mut ice = IceLite::new(SERVER_UFRAG.into(), SERVER_PWD.into());
        ice.set_remote_credentials(client_ufrag.to_owned(), client_pwd.to_owned());
        Self {
            ice,
            cert: Certificate::generate().unwrap(),
            client_fp,
            dtls: None,
            srtp_in: None,
            srtp_out: None,
            sctp: None,
            out: Vec::new(),
            rtp: Vec::new(),
            rtcp: Vec::new(),
            messages: Vec::new(),
            labels: HashMap::new(),
        }
    }

    /// An answer to a client offer as an ICE-lite DTLS server at `candidate` writes it:
    /// every section accepted, media sections receiving with the offered codecs.
    pub fn answer(&self, offer: &str, candidate: SocketAddr) -> String {
        let offer = lkr_sdp::parse(offer).unwrap();
        let mut sd = SessionDescription::webrtc(1, 1);
        sd.ice_lite = true;
        let candidates = vec![format!(
            "1 1 udp 2130706431 {} {} typ host",
            candidate.ip(),
            candidate.port()
        )];
        let fp = self.cert.fingerprint();
        let value = fp.to_sdp_value();
        for om in &offer.media {
            let mid = om.mid.clone().unwrap();
            let mut m = if om.kind == MediaKind::Application {
                MediaSection::data_channel(&mid, 5000, 262_144)
            } else {
                let mut m = MediaSection::rtp(om.kind.clone(), &mid);
                for c in &om.codecs {
                    m.add_codec(c.clone());
                }
                m.direction = Some(om.direction_or_default().reversed());
                m
            };
            m.set_transport(&TransportLines {
                ufrag: SERVER_UFRAG,
                pwd: SERVER_PWD,
                fingerprint: (&fp.algorithm, &value),
                ice_options: None,
                candidates: &candidates,
                end_of_candidates: true,
                setup: Setup::Passive,
            });
            sd.bundle_mids.push(mid);
            sd.media.push(m);
        }
        sd.write()
    }

    pub fn handle(&mut self, now: Instant, from: SocketAddr, buf: &mut [u8]) {
        match buf[0] {
            0..=3 => {
                let mut out = Vec::new();
                let r = self.ice.handle_stun(now, from, buf, &mut out).unwrap();
                if r.response_written {
                    self.out.push((from, out));
                }
            }
            20..=63 => {
                assert!(self.ice.is_valid_source(from));
                let dtls = self.dtls.get_or_insert_with(|| {
                    DtlsEndpoint::new(Role::Server, &self.cert, self.client_fp.clone(), from, now)
                        .unwrap()
                });
                let _ = dtls.handle_receive(now, buf);
                self.pump(now, from);
            }
            _ if lkr_rtp::is_rtcp(buf) => {
                let n = self.srtp_in.as_mut().unwrap().unprotect_rtcp(buf).unwrap();
                self.rtcp.push(buf[..n].to_vec());
            }
            _ => {
                let n = self.srtp_in.as_mut().unwrap().unprotect_rtp(buf).unwrap();
                self.rtp.push(buf[..n].to_vec());
            }
        }
    }

    /// Runs the DTLS and SCTP timers.
    pub fn handle_timeout(&mut self, now: Instant, client: SocketAddr) {
        if let Some(d) = self.dtls.as_mut() {
            if d.poll_timeout().is_some_and(|t| t <= now) {
                d.handle_timeout(now);
            }
            if let Some(s) = self.sctp.as_mut()
                && s.poll_timeout().is_some_and(|t| t <= now)
            {
                s.handle_timeout(now);
            }
            self.pump(now, client);
        }
    }

    /// Protects `packet` (RTP, or RTCP when `rtcp`) with the server's keys, as it goes out.
    pub fn protect(&mut self, packet: &[u8], rtcp: bool) -> Vec<u8> {
        let srtp = self.srtp_out.as_mut().unwrap();
        let mut buf = packet.to_vec();
        buf.resize(packet.len() + 32, 0);
        let n = if rtcp {
            srtp.protect_rtcp(&mut buf, packet.len()).unwrap()
        } else {
            srtp.protect_rtp(&mut buf, packet.len()).unwrap()
        };
        buf.truncate(n);
        buf
    }

    pub fn pump(&mut self, now: Instant, to: SocketAddr) {
        let Some(dtls) = self.dtls.as_mut() else {
            return;
        };
        while let Some(e) = dtls.poll_event() {
            match e {
                DtlsEvent::Connected {
                    profile_id,
                    keying_material,
                    we_are_client,
                } => {
                    assert!(!we_are_client);
                    let keys = SrtpSession::from_dtls(profile_id, &keying_material, false).unwrap();
                    self.srtp_in = Some(keys.inbound);
                    self.srtp_out = Some(keys.outbound);
                    self.sctp = Some(SctpTransport::new(false, now));
                }
                DtlsEvent::ApplicationData(d) => {
                    if let Some(s) = self.sctp.as_mut() {
                        s.handle_receive(now, &d);
                    }
                }
                other => panic!("server DTLS: {other:?}"),
            }
        }
        if let Some(s) = self.sctp.as_mut() {
            while let Some(p) = s.poll_transmit(now) {
                dtls.send_application_data(&p).unwrap();
            }
            while let Some(e) = s.poll_event() {
                match e {
                    DataChannelEvent::ChannelOpen { stream_id, label } => {
                        self.labels.insert(stream_id, label);
                    }
                    DataChannelEvent::Message {
                        stream_id, data, ..
                    } => {
                        self.messages.push((self.labels[&stream_id].clone(), data));
                    }
                    _ => {}
                }
            }
        }
        while let Some(d) = dtls.poll_transmit() {
            self.out.push((to, d));
        }
    }
}
