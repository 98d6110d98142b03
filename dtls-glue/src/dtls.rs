//! A sans-IO DTLS 1.2 endpoint for one peer, with DTLS-SRTP key export (RFC 5764).
//!
//! [`DtlsEndpoint`] wraps webrtc-rs's `rtc-dtls` state machine. The driver owns the socket and
//! the clock: it passes every datagram from the peer's (ICE-validated) address to
//! [`DtlsEndpoint::handle_receive`], sends whatever [`DtlsEndpoint::poll_transmit`] yields to
//! that address, calls [`DtlsEndpoint::handle_timeout`] when [`DtlsEndpoint::poll_timeout`]
//! comes due, and drains [`DtlsEndpoint::poll_event`] after each of those calls.
//!
//! What the glue adds to the DTLS crate:
//!
//! - **Fingerprint check.** The peer's certificate must hash to the fingerprint from its SDP
//!   (RFC 8122 §5, RFC 5763 §5); otherwise the handshake fails with a `bad_certificate` alert.
//!   A server always requests the client's certificate. `Connected` is only reported once the
//!   check has run and passed.
//! - **Server-preferred SRTP profile.** `rtc-dtls` picks the first profile of the *client's*
//!   `use_srtp` list that it supports, and Chromium lists AES128_CM_HMAC_SHA1_80 first. A
//!   server endpoint therefore waits for the peer's whole first ClientHello, reads the profiles
//!   offered, and configures its DTLS stack with only the best of them by
//!   [`SRTP_PROFILE_PREFERENCE`]. That first ClientHello is not part of the handshake
//!   transcript (RFC 6347 §4.2.1), and the bytes are passed on untouched.
//! - **Lost-flight recovery.** When a flight of ours is lost, the peer repeats its previous
//!   flight; RFC 6347 §4.2.4 says we must then resend ours. `rtc-dtls` 0.21 does not while the
//!   handshake is in progress: it takes the repeated flight for the one it awaits, fails to
//!   parse it, disarms its own retransmission timer and answers nothing, so the handshake
//!   hangs. The endpoint keeps the datagrams of the last flight it sent; a datagram holding
//!   only handshake messages it already has whole (however the peer re-fragmented them) is
//!   answered with that flight, as sent (at most [`MAX_FLIGHT_RESENDS`] times), and is not
//!   passed to the stack, whose own timer thus keeps running and retransmits with fresh record
//!   sequence numbers. After the handshake the stack answers repeats of the final flight
//!   itself.
//! - **Spaced retransmissions.** `rtc-dtls` retransmits an unanswered flight every second
//!   and fails the handshake at its 8th timer firing, with the misleading "invalid state
//!   machine transition": a peer silent for 8 s (a server whose socket overflows during a
//!   join storm) ended a join that the rest of the system still had time for. The endpoint
//!   decides when the stack's timer fires: the 7 retransmissions of a flight go out 1, 1, 2,
//!   2, 3, 3 and 4 intervals apart (at 1, 2, 4, 6, 9, 12 and 16 s), and the 8th firing never
//!   happens: a handshake nobody answers fails at [`HANDSHAKE_TIMEOUT`], as "timed out".
//! - **No panics from peer input.** Datagrams are screened before the stack sees them, and
//!   every call into the stack runs under `catch_unwind`; a panic there fails the association.
//!
//! Errors from [`DtlsEndpoint::handle_receive`] mean "this datagram was dropped and changed
//! nothing"; a handshake or association failure is reported once, as [`DtlsEvent::Failed`].
//!
//! `rtc-dtls` logs through the `log` crate and warns about every ClientHello extension it does
//! not know (Chromium's DTLS 1.3 and key-share extensions): add [`QUIET_LOG_DIRECTIVE`] to the
//! process's log filter.

mod wire;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc_dtls::config::{
    ClientAuthType, ConfigBuilder, ExtendedMasterSecretType, HandshakeConfig,
    VerifyPeerCertificateFn,
};
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_shared::TransportProtocol;
use rustls_pki_types::CertificateDer;

use crate::cert::{Certificate, Fingerprint};

/// `SRTP_AES128_CM_HMAC_SHA1_80` (RFC 5764 §4.1.2).
pub const SRTP_AES128_CM_HMAC_SHA1_80: u16 = 0x0001;
/// `SRTP_AEAD_AES_128_GCM` (RFC 7714 §14.2).
pub const SRTP_AEAD_AES_128_GCM: u16 = 0x0007;
/// The SRTP protection profiles we support, best first. A client offers them in this order; a
/// server picks the first of these that the client offers, whatever the client's order.
pub const SRTP_PROFILE_PREFERENCE: [u16; 2] = [SRTP_AEAD_AES_128_GCM, SRTP_AES128_CM_HMAC_SHA1_80];

/// A `tracing_subscriber::EnvFilter` / `env_logger` directive that silences `rtc-dtls`'s
/// warnings (one per unknown ClientHello extension from every browser) but keeps its errors.
pub const QUIET_LOG_DIRECTIVE: &str = "rtc_dtls=error";

/// How long a handshake may take from [`DtlsEndpoint::new`] before it fails.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The stack's default retransmission interval (`rtc-dtls`'s `INITIAL_TICKER_INTERVAL`).
const STACK_FLIGHT_INTERVAL: Duration = Duration::from_secs(1);

/// The wait before each retransmission of one flight, in stack intervals. `rtc-dtls` allows
/// a flight 7 retransmissions (its `DEFAULT_MAXIMUM_RETRANSMIT_NUMBER`) and fails the
/// handshake at the next timer firing; so its timer fires this many times per flight, no
/// more.
const RETRANSMIT_BACKOFF: [u32; 7] = [1, 1, 2, 2, 3, 3, 4];

/// How many times one flight of ours is resent because the peer repeated its own.
pub const MAX_FLIGHT_RESENDS: u32 = 8;

/// Resends of a flight closer together than this are skipped: a peer's repeated flight may
/// span several datagrams, and one resend answers all of them.
const MIN_RESEND_GAP: Duration = Duration::from_millis(10);

/// RFC 5764 §4.2: the exporter label for SRTP keying material.
const EXPORTER_LABEL: &str = "EXTRACTOR-dtls_srtp";

/// The DTLS stack's own address for us; it only copies it into its transmits, which we unwrap.
const LOCAL_PLACEHOLDER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// Length of the `EXTRACTOR-dtls_srtp` export for an SRTP profile: client key, server key,
/// client salt, server salt (RFC 5764 §4.2). `None` for profiles we do not support.
pub fn keying_material_len(profile_id: u16) -> Option<usize> {
    match profile_id {
        // 128-bit key, 112-bit salt (RFC 3711 §8.2).
        SRTP_AES128_CM_HMAC_SHA1_80 => Some(2 * (16 + 14)),
        // 128-bit key, 96-bit salt (RFC 7714 §12).
        SRTP_AEAD_AES_128_GCM => Some(2 * (16 + 12)),
        _ => None,
    }
}

/// What went wrong in this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtlsError {
    /// The certificate or its key could not be generated.
    #[error("certificate generation failed: {0}")]
    Certificate(String),
    /// An SDP fingerprint names a hash function we do not implement.
    #[error("unsupported fingerprint hash function {0:?}")]
    UnsupportedFingerprintAlgorithm(String),
    /// An SDP fingerprint value is not well formed.
    #[error("invalid fingerprint: {0}")]
    InvalidFingerprint(String),
    /// The DTLS stack refused the configuration or the remote address.
    #[error("DTLS configuration refused: {0}")]
    Config(String),
    /// A datagram was not well-formed DTLS, or not acceptable now; it was dropped.
    #[error("malformed or unexpected DTLS datagram: {0}")]
    Malformed(&'static str),
    /// The association has closed or failed; nothing more goes through it.
    #[error("the DTLS association is closed")]
    Closed,
    /// Application data cannot be sent before the handshake completes.
    #[error("the DTLS handshake has not completed")]
    NotConnected,
    /// The DTLS stack refused to send application data.
    #[error("DTLS send failed: {0}")]
    Send(String),
    /// The DTLS stack panicked; the association has failed.
    #[error("DTLS stack failure: {0}")]
    Internal(String),
}

/// Which side of the DTLS handshake we take (RFC 5763 §5: `a=setup:passive` makes us the
/// server, `a=setup:active` the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We wait for the peer's ClientHello.
    Server,
    /// We send the first ClientHello.
    Client,
}

/// What the endpoint reports to its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtlsEvent {
    /// The handshake completed and the peer's certificate matched its fingerprint.
    Connected {
        /// The negotiated SRTP protection profile: [`SRTP_AES128_CM_HMAC_SHA1_80`] or
        /// [`SRTP_AEAD_AES_128_GCM`].
        profile_id: u16,
        /// The `EXTRACTOR-dtls_srtp` export, [`keying_material_len`] bytes: client write key,
        /// server write key, client salt, server salt.
        keying_material: Vec<u8>,
        /// Whether we were the DTLS client (our keys are then the client's).
        we_are_client: bool,
    },
    /// Decrypted application data (an SCTP packet) from the peer.
    ApplicationData(Vec<u8>),
    /// The association ended in order: the peer sent `close_notify`, or we called
    /// [`DtlsEndpoint::close`].
    Closed,
    /// The handshake or the association failed; the reason is for logs.
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshaking,
    Connected,
    Closed,
    Failed,
}

/// Settings for the DTLS stack that differ only in tests.
#[derive(Debug, Clone)]
struct StackOptions {
    /// The SRTP profiles a client offers, in order.
    client_profiles: Vec<u16>,
    /// The largest handshake fragment; 0 for the stack's default (1200 bytes).
    mtu: usize,
    /// The initial retransmission timeout; zero for the stack's default (1 s).
    flight_interval: Duration,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            client_profiles: SRTP_PROFILE_PREFERENCE.to_vec(),
            mtu: 0,
            flight_interval: Duration::ZERO,
        }
    }
}

enum Stack {
    /// A server waiting for the whole first ClientHello before configuring the DTLS stack.
    AwaitingClientHello(wire::ClientHelloCollector),
    /// The DTLS stack, holding one association, with `remote`.
    Running(Box<Endpoint>),
    /// Closed or failed.
    Gone,
}

/// One peer's DTLS association. See the module documentation for the driver contract.
pub struct DtlsEndpoint {
    role: Role,
    remote: SocketAddr,
    certificate: Certificate,
    remote_fingerprint: Fingerprint,
    /// Set by the certificate check once the peer's certificate matched its fingerprint.
    peer_verified: Arc<AtomicBool>,
    options: StackOptions,
    stack: Stack,
    phase: Phase,
    handshake_deadline: Instant,
    /// The latest `now` we were given, for calls that take none.
    last_now: Instant,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<DtlsEvent>,
    /// The datagrams of the last flight we sent, as sent.
    last_flight: Vec<Vec<u8>>,
    flight_resends: u32,
    last_resend_at: Option<Instant>,
    /// How many times the stack's timer has fired (retransmitting) since our last flight
    /// that answered the peer.
    retransmits: usize,
    /// The peer's plaintext handshake messages received so far.
    peer_messages: wire::PeerMessages,
    /// Encrypted handshake records the peer sent (see
    /// [`wire::MAX_ENCRYPTED_HANDSHAKE_RECORDS`]).
    encrypted_handshake_records: u32,
}

impl std::fmt::Debug for DtlsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsEndpoint")
            .field("role", &self.role)
            .field("remote", &self.remote)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

/// Runs a call into the DTLS stack, turning a panic into an error message.
fn guard<T>(call: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(call)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|message| (*message).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic in the DTLS stack".to_owned())
    })
}

fn drain(endpoint: &mut Endpoint) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| endpoint.poll_transmit())
        .map(|transmit| Vec::from(transmit.message))
        .collect()
}

fn profile_id(profile: SrtpProtectionProfile) -> Option<u16> {
    match profile {
        SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => Some(SRTP_AES128_CM_HMAC_SHA1_80),
        SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => Some(SRTP_AEAD_AES_128_GCM),
        _ => None,
    }
}

/// The profiles a server configures its stack with, given what the client offered: only the
/// best one by our preference, so that the stack's client-order choice cannot pick another.
fn server_profiles(offered: Option<&[u16]>) -> Vec<u16> {
    offered
        .and_then(|offered| {
            SRTP_PROFILE_PREFERENCE
                .iter()
                .find(|profile| offered.contains(profile))
        })
        .map_or_else(|| SRTP_PROFILE_PREFERENCE.to_vec(), |best| vec![*best])
}

/// The negotiated profile and its `EXTRACTOR-dtls_srtp` export, once the handshake completed
/// and the peer's certificate was `verified` against its fingerprint.
fn srtp_keys(
    stack: &Endpoint,
    remote: SocketAddr,
    verified: bool,
) -> Result<(u16, Vec<u8>), String> {
    let state = stack
        .get_connection_state(remote)
        .ok_or("the DTLS stack lost the association")?;
    if !verified {
        return Err("peer certificate was never checked against the SDP fingerprint".to_owned());
    }
    let (profile_id, len) = profile_id(state.srtp_protection_profile())
        .and_then(|id| Some((id, keying_material_len(id)?)))
        .ok_or("no SRTP protection profile was negotiated")?;
    let secret = state
        .export_keying_material(EXPORTER_LABEL, &[], len)
        .map_err(|error| format!("SRTP key export failed: {error}"))?;
    Ok((profile_id, secret.into_bytes()))
}

impl DtlsEndpoint {
    /// Creates the endpoint for one peer at `remote`, which must present a certificate matching
    /// `remote_fingerprint`. A [`Role::Client`] endpoint queues its first flight at once.
    ///
    /// # Errors
    ///
    /// A fingerprint we cannot check, or a configuration or address the DTLS stack refuses.
    pub fn new(
        role: Role,
        cert: &Certificate,
        remote_fingerprint: Fingerprint,
        remote: SocketAddr,
        now: Instant,
    ) -> Result<Self, DtlsError> {
        Self::with_options(
            role,
            cert,
            remote_fingerprint,
            remote,
            now,
            &StackOptions::default(),
        )
    }

    /// [`Self::new`] with non-default settings for the DTLS stack.
    fn with_options(
        role: Role,
        cert: &Certificate,
        remote_fingerprint: Fingerprint,
        remote: SocketAddr,
        now: Instant,
        options: &StackOptions,
    ) -> Result<Self, DtlsError> {
        remote_fingerprint.validate()?;
        let mut endpoint = Self {
            role,
            remote,
            certificate: cert.clone(),
            remote_fingerprint,
            peer_verified: Arc::new(AtomicBool::new(false)),
            options: options.clone(),
            stack: Stack::Gone,
            phase: Phase::Handshaking,
            handshake_deadline: now + HANDSHAKE_TIMEOUT,
            last_now: now,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            last_flight: Vec::new(),
            flight_resends: 0,
            last_resend_at: None,
            retransmits: 0,
            peer_messages: wire::PeerMessages::default(),
            encrypted_handshake_records: 0,
        };
        match role {
            Role::Server => {
                endpoint.stack = Stack::AwaitingClientHello(wire::ClientHelloCollector::default());
            }
            Role::Client => {
                let config = endpoint.handshake_config(true, &options.client_profiles)?;
                let mut stack = Box::new(Endpoint::new(
                    LOCAL_PLACEHOLDER,
                    TransportProtocol::UDP,
                    None,
                ));
                guard(|| stack.connect(now, remote, config, None))
                    .map_err(DtlsError::Internal)?
                    .map_err(|error| DtlsError::Config(error.to_string()))?;
                let flight = drain(&mut stack);
                endpoint.stack = Stack::Running(stack);
                endpoint.take_output(flight);
            }
        }
        Ok(endpoint)
    }

    /// The DTLS stack's configuration for this peer, offering `profiles` in that order.
    fn handshake_config(
        &self,
        is_client: bool,
        profiles: &[u16],
    ) -> Result<Arc<HandshakeConfig>, DtlsError> {
        let expected = self.remote_fingerprint.clone();
        let verified = Arc::clone(&self.peer_verified);
        let verify: VerifyPeerCertificateFn = Arc::new(
            move |certificates: &[Vec<u8>], _chains: &[CertificateDer<'static>]| {
                // RFC 5763 §5: the end-entity certificate (the first) must match the SDP.
                match certificates.first() {
                    Some(der) if expected.matches_der(der) => {
                        verified.store(true, Ordering::Release);
                        Ok(())
                    }
                    _ => Err(rtc_shared::error::Error::Other(
                        "peer certificate does not match the SDP fingerprint".to_owned(),
                    )),
                }
            },
        );
        let builder = ConfigBuilder::default()
            .with_crypto_provider(Arc::clone(self.certificate.provider()))
            .with_certificates(vec![self.certificate.dtls_certificate().clone()])
            .with_srtp_protection_profiles(
                profiles
                    .iter()
                    .map(|id| SrtpProtectionProfile::from(*id))
                    .collect(),
            )
            .with_extended_master_secret(ExtendedMasterSecretType::Require)
            // A server must see the client's certificate to check its fingerprint.
            .with_client_auth(ClientAuthType::RequireAnyClientCert)
            // Self-signed certificates have no CA chain; the fingerprint check replaces it.
            .with_insecure_skip_verify(true)
            .with_verify_peer_certificate(Some(verify))
            .with_mtu(self.options.mtu)
            .with_flight_interval(self.options.flight_interval);
        let remote = self.remote;
        let config = guard(move || builder.build(is_client, Some(remote)))
            .map_err(DtlsError::Internal)?
            .map_err(|error| DtlsError::Config(error.to_string()))?;
        Ok(Arc::new(config))
    }

    /// Takes one UDP datagram from the peer (it may hold several DTLS records).
    ///
    /// # Errors
    ///
    /// The datagram was dropped without effect: it is not well-formed DTLS
    /// ([`DtlsError::Malformed`]), or the association is over ([`DtlsError::Closed`]). A
    /// handshake that fails because of it is reported as [`DtlsEvent::Failed`] instead, and a
    /// panic in the DTLS stack as both [`DtlsError::Internal`] and `Failed`.
    pub fn handle_receive(&mut self, now: Instant, datagram: &[u8]) -> Result<(), DtlsError> {
        self.last_now = now;
        if matches!(self.phase, Phase::Closed | Phase::Failed) {
            return Err(DtlsError::Closed);
        }
        let scan = wire::scan(datagram).map_err(DtlsError::Malformed)?;
        // RFC 6347 §4.2.4: a datagram of nothing but handshake messages we already hold whole
        // means the peer is repeating its flight because ours was lost. While the handshake is
        // in progress, answer it with our kept flight, and keep it from the DTLS stack: that
        // stack would take it as the flight it is waiting for, fail to parse it, and disarm its
        // own retransmission timer. Once connected, the stack answers repeats itself.
        let repeat = self.phase == Phase::Handshaking
            && scan.only_plaintext_handshake
            && matches!(self.stack, Stack::Running(_))
            && self.peer_messages.all_complete(&scan.fragments);
        // Fragment caps (wire.rs): past them the datagram is refused whole, before the DTLS
        // stack, which would keep and rescan every fragment, sees any of it.
        self.peer_messages
            .admit(&scan.fragments)
            .map_err(DtlsError::Malformed)?;
        if scan.encrypted_handshake > 0 {
            self.encrypted_handshake_records = self
                .encrypted_handshake_records
                .saturating_add(scan.encrypted_handshake);
            if self.encrypted_handshake_records > wire::MAX_ENCRYPTED_HANDSHAKE_RECORDS {
                return Err(DtlsError::Malformed("too many encrypted handshake records"));
            }
        }
        if repeat {
            self.resend_last_flight(now);
            return Ok(());
        }

        if let Stack::AwaitingClientHello(collector) = &mut self.stack {
            return match collector.push(datagram).map_err(DtlsError::Malformed)? {
                wire::Collected::Pending => Ok(()),
                wire::Collected::Complete {
                    offered_profiles,
                    datagrams,
                } => {
                    let profiles = server_profiles(offered_profiles.as_deref());
                    self.start_server(&profiles)?;
                    for datagram in datagrams {
                        if self.phase != Phase::Handshaking {
                            break;
                        }
                        let scan = wire::scan(&datagram).map_err(DtlsError::Malformed)?;
                        self.feed(now, &datagram, &scan)?;
                    }
                    Ok(())
                }
            };
        }
        self.feed(now, datagram, &scan)
    }

    /// Configures the server's DTLS stack once the first ClientHello is known.
    fn start_server(&mut self, profiles: &[u16]) -> Result<(), DtlsError> {
        match self.handshake_config(false, profiles) {
            Ok(config) => {
                self.stack = Stack::Running(Box::new(Endpoint::new(
                    LOCAL_PLACEHOLDER,
                    TransportProtocol::UDP,
                    Some(config),
                )));
                Ok(())
            }
            Err(error) => {
                self.fail(format!("cannot configure DTLS: {error}"));
                Err(error)
            }
        }
    }

    /// Passes a screened datagram to the DTLS stack and handles what comes out.
    fn feed(&mut self, now: Instant, datagram: &[u8], scan: &wire::Scan) -> Result<(), DtlsError> {
        let remote = self.remote;
        let Stack::Running(stack) = &mut self.stack else {
            return Err(DtlsError::Closed);
        };
        let outcome = guard(|| stack.read(now, remote, None, BytesMut::from(datagram)));
        let output = drain(stack);
        match outcome {
            Err(panic) => {
                self.fail(format!("DTLS stack panicked: {panic}"));
                Err(DtlsError::Internal(panic))
            }
            Ok(Err(_)) if self.phase == Phase::Connected && scan.alert.is_none() => {
                // RFC 6347 §4.1.2.7: invalid records are discarded, not fatal; otherwise one
                // forged datagram from the peer's address would end its session.
                Err(DtlsError::Malformed("record rejected after the handshake"))
            }
            Ok(Err(error)) => {
                // The stack may have queued an alert for the peer: send it before giving up.
                self.take_output(output);
                let reason = match scan.alert {
                    Some((2, description)) => format!(
                        "peer sent fatal alert {} ({description})",
                        wire::alert_name(description)
                    ),
                    _ => format!("DTLS handshake failed: {error}"),
                };
                self.fail(reason);
                Ok(())
            }
            Ok(Ok(stack_events)) => {
                if output
                    .iter()
                    .any(|datagram| wire::is_flight_datagram(datagram))
                {
                    // The peer's flight moved the handshake on: our next one starts afresh.
                    self.retransmits = 0;
                }
                self.take_output(output);
                for event in stack_events {
                    match event {
                        EndpointEvent::HandshakeComplete => self.on_handshake_complete(),
                        EndpointEvent::ApplicationData(data) if self.phase == Phase::Connected => {
                            self.events
                                .push_back(DtlsEvent::ApplicationData(Vec::from(data)));
                        }
                        EndpointEvent::PeerClosed => {
                            if self.phase == Phase::Handshaking {
                                self.fail("peer closed the association during the handshake");
                            } else if self.phase == Phase::Connected {
                                self.phase = Phase::Closed;
                                self.stack = Stack::Gone;
                                self.events.push_back(DtlsEvent::Closed);
                            }
                        }
                        _ => {}
                    }
                }
                Ok(())
            }
        }
    }

    /// Queues datagrams from the DTLS stack, remembering them if they form a flight.
    fn take_output(&mut self, output: Vec<Vec<u8>>) {
        if output
            .iter()
            .any(|datagram| wire::is_flight_datagram(datagram))
        {
            self.last_flight.clone_from(&output);
            self.flight_resends = 0;
            self.last_resend_at = None;
        }
        self.transmits.extend(output);
    }

    /// Sends the last flight again, as it was first sent. Records the peer already has are
    /// dropped by its replay window (RFC 6347 §4.1.2.6); the lost ones go through.
    fn resend_last_flight(&mut self, now: Instant) {
        let too_soon = self
            .last_resend_at
            .is_some_and(|last| now < last + MIN_RESEND_GAP);
        if self.last_flight.is_empty() || self.flight_resends >= MAX_FLIGHT_RESENDS || too_soon {
            return;
        }
        self.flight_resends += 1;
        self.last_resend_at = Some(now);
        self.transmits.extend(self.last_flight.iter().cloned());
    }

    /// The stack finished the handshake: check the fingerprint ran, export the SRTP keys.
    fn on_handshake_complete(&mut self) {
        let Stack::Running(stack) = &self.stack else {
            return;
        };
        let verified = self.peer_verified.load(Ordering::Acquire);
        match guard(|| srtp_keys(stack, self.remote, verified)) {
            Ok(Ok((profile_id, keying_material))) => {
                self.phase = Phase::Connected;
                // Only needed during the handshake: repeats are the stack's business from now.
                self.last_flight = Vec::new();
                self.peer_messages = wire::PeerMessages::default();
                self.events.push_back(DtlsEvent::Connected {
                    profile_id,
                    keying_material,
                    we_are_client: self.role == Role::Client,
                });
            }
            Ok(Err(reason)) => self.abort(reason),
            Err(panic) => self.fail(format!("DTLS stack panicked: {panic}")),
        }
    }

    /// Fails after sending `close_notify`, for a handshake the stack finished but we refuse.
    fn abort(&mut self, reason: impl Into<String>) {
        if let Stack::Running(stack) = &mut self.stack {
            let (now, remote) = (self.last_now, self.remote);
            if guard(|| stack.stop(now, remote)).is_ok() {
                let output = drain(stack);
                self.transmits.extend(output);
            }
        }
        self.fail(reason);
    }

    /// Ends the association with a failure, once.
    fn fail(&mut self, reason: impl Into<String>) {
        if matches!(self.phase, Phase::Closed | Phase::Failed) {
            return;
        }
        self.phase = Phase::Failed;
        self.stack = Stack::Gone;
        self.events.push_back(DtlsEvent::Failed(reason.into()));
    }

    /// The next datagram to send to the peer.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<DtlsEvent> {
        self.events.pop_front()
    }

    /// Drives retransmissions and the handshake deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now;
        if matches!(self.phase, Phase::Closed | Phase::Failed) {
            return;
        }
        let remote = self.remote;
        let due = self.stack_timer();
        if let Stack::Running(stack) = &mut self.stack
            && due.is_some_and(|due| now >= due)
        {
            if self.phase == Phase::Handshaking {
                self.retransmits += 1;
            }
            let outcome = guard(|| stack.handle_timeout(remote, now));
            let output = drain(stack);
            match outcome {
                Ok(Ok(())) => self.take_output(output),
                Ok(Err(error)) => {
                    self.take_output(output);
                    self.fail(format!("DTLS handshake failed: {error}"));
                }
                Err(panic) => self.fail(format!("DTLS stack panicked: {panic}")),
            }
        }
        if self.phase == Phase::Handshaking && now >= self.handshake_deadline {
            self.fail("DTLS handshake timed out");
        }
    }

    /// When the stack's timer is to fire: during the handshake, the stack's own timer
    /// (armed one interval after it sent) put off by [`RETRANSMIT_BACKOFF`], and never once a
    /// flight had all its retransmissions.
    fn stack_timer(&self) -> Option<Instant> {
        let Stack::Running(stack) = &self.stack else {
            return None;
        };
        let due = stack.poll_timeout(&self.remote)?;
        if self.phase != Phase::Handshaking {
            return Some(due);
        }
        let factor = *RETRANSMIT_BACKOFF.get(self.retransmits)?;
        let interval = if self.options.flight_interval.is_zero() {
            STACK_FLIGHT_INTERVAL
        } else {
            self.options.flight_interval
        };
        Some(due + interval * (factor - 1))
    }

    /// When [`Self::handle_timeout`] is next due, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let stack_timer = self.stack_timer();
        match self.phase {
            Phase::Handshaking => Some(stack_timer.map_or(self.handshake_deadline, |due| {
                due.min(self.handshake_deadline)
            })),
            Phase::Connected => stack_timer,
            Phase::Closed | Phase::Failed => None,
        }
    }

    /// Sends `data` (an SCTP packet) as one DTLS application data record.
    ///
    /// # Errors
    ///
    /// [`DtlsError::NotConnected`] before `Connected`, [`DtlsError::Closed`] after the end,
    /// [`DtlsError::Send`] if the stack refuses (the association stays up).
    pub fn send_application_data(&mut self, data: &[u8]) -> Result<(), DtlsError> {
        match self.phase {
            Phase::Connected => {}
            Phase::Handshaking => return Err(DtlsError::NotConnected),
            Phase::Closed | Phase::Failed => return Err(DtlsError::Closed),
        }
        let (now, remote) = (self.last_now, self.remote);
        let Stack::Running(stack) = &mut self.stack else {
            return Err(DtlsError::Closed);
        };
        let outcome = guard(|| stack.write(now, remote, data));
        let output = drain(stack);
        match outcome {
            Ok(Ok(())) => {
                self.transmits.extend(output);
                Ok(())
            }
            Ok(Err(error)) => Err(DtlsError::Send(error.to_string())),
            Err(panic) => {
                self.fail(format!("DTLS stack panicked: {panic}"));
                Err(DtlsError::Internal(panic))
            }
        }
    }

    /// Whether the handshake has completed and the association is up.
    pub fn is_connected(&self) -> bool {
        self.phase == Phase::Connected
    }

    /// Ends the association: queues `close_notify` (RFC 5246 §7.2.1) and reports
    /// [`DtlsEvent::Closed`]. Does nothing once closed or failed.
    pub fn close(&mut self) {
        if matches!(self.phase, Phase::Closed | Phase::Failed) {
            return;
        }
        let (now, remote) = (self.last_now, self.remote);
        if let Stack::Running(stack) = &mut self.stack
            && guard(|| stack.stop(now, remote)).is_ok()
        {
            let output = drain(stack);
            self.transmits.extend(output);
        }
        self.phase = Phase::Closed;
        self.stack = Stack::Gone;
        self.events.push_back(DtlsEvent::Closed);
    }
}
