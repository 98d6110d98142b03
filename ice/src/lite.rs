//! The server's ICE-lite responder (RFC 8445 §2.5, §7.3): one per peer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::StunError;
use crate::stun::{
    BINDING_ERROR, BINDING_INDICATION, BINDING_REQUEST, BINDING_SUCCESS, IntegrityKey,
    check_binding_request, parse_binding_response, scan, sign_binding_error, sign_binding_success,
    write_controlled_check,
};

/// Consent expires when no check arrived for this long (RFC 7675 §5.1).
pub const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How many source addresses one peer may hold validated at once. A peer with several
/// interfaces checks from each; the least recently checked one is forgotten beyond this.
pub const MAX_VALID_SOURCES: usize = 8;
/// A check from a new address without USE-CANDIDATE moves the media there once the selected
/// address has had no check for this long: a client whose address changed checks only from
/// the new one, while a client with several interfaces keeps checking the selected address
/// (libwebrtc every 2.5 s, consent checks every 4-6 s, RFC 7675 §5.1) and so is not moved
/// to a backup path it merely validated.
pub const MOVE_AFTER_SILENCE: Duration = Duration::from_secs(8);
/// The selected address silent (no check from the peer) this long: the peer's path may have
/// gone down, so we check it ourselves every [`PROBE_INTERVAL`] until it answers, checks us
/// again, or loses consent. A client whose network comes back then hears from us within
/// that interval, and answering revives its side of the path (libwebrtc checks a connection
/// again at once when it receives a check on it) without waiting for its own backed-off
/// checks or an ICE restart through the signal connection. Clients check the selected
/// address every 2.5-5 s (libwebrtc, RFC 7675), so a healthy peer is never probed.
pub const PROBE_AFTER_SILENCE: Duration = Duration::from_secs(6);
/// Time between our checks of a silent peer.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// Transaction ids of recent checks remembered, so that a check replayed from another
/// address cannot move the peer's media there.
const RECENT_CHECKS: usize = 16;

/// Where the responder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceState {
    /// Nothing heard yet and no remote credentials.
    New,
    /// Remote credentials known or checks arriving, none answered with success yet.
    Checking,
    /// At least one source address has consent (a check within [`CONSENT_TIMEOUT`]).
    Connected,
    /// Was connected; consent has expired on every address.
    Disconnected,
}

/// What one STUN datagram did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IceInput {
    /// A response was appended to `out`; send it back to the source address.
    pub response_written: bool,
    /// This was the first successful check from this source address: it may now reach
    /// DTLS and SRTP.
    pub became_valid: bool,
    /// The check carried USE-CANDIDATE: this address is now the selected one.
    pub nominated: bool,
    /// Media now goes to this source address instead of another one (a nomination, or a
    /// first check from a new address: the peer moved).
    pub moved: bool,
}

#[derive(Debug, Clone, Copy)]
struct Source {
    addr: SocketAddr,
    last_check: Instant,
}

/// Sans-IO ICE-lite responder for one peer: answers its connectivity checks, remembers which
/// source addresses passed one, and tracks consent freshness.
///
/// Data flow: the driver hands every STUN datagram from the peer to
/// [`handle_stun`](Self::handle_stun) with the time and the source address, and sends what
/// was written to `out` back to that address. Only addresses for which
/// [`is_valid_source`](Self::is_valid_source) holds may reach DTLS/SRTP; media goes to
/// [`selected`](Self::selected). The driver calls [`handle_timeout`](Self::handle_timeout) at
/// [`poll_timeout`](Self::poll_timeout).
///
/// A lite agent is always controlled (RFC 8445 §6.1.1) and sends no connectivity checks of
/// its own; it does check a peer that has gone silent ([`PROBE_AFTER_SILENCE`]), as a
/// consent check (RFC 7675), so that a client whose network comes back finds its path alive.
#[derive(Debug)]
pub struct IceLite {
    local_ufrag: String,
    local_pwd: String,
    /// `local_pwd`'s key: every check is verified and answered with it.
    local_key: IntegrityKey,
    remote_ufrag: Option<String>,
    remote_pwd: Option<String>,
    sources: Vec<Source>,
    /// Where media goes: the address of the last nomination, or of a check that found the
    /// selected address silent for [`MOVE_AFTER_SILENCE`] (the peer moved, RFC 7675).
    nominated: Option<SocketAddr>,
    /// Recent checks' transaction ids and sources, oldest overwritten first.
    recent: [([u8; 12], Option<SocketAddr>); RECENT_CHECKS],
    next_recent: usize,
    state: IceState,
    /// When our next check of a silent peer goes out; `None` while the peer is heard.
    probe_at: Option<Instant>,
    /// A check of ours is due ([`IceLite::poll_probe`]).
    probe_due: bool,
    /// Our last check's transaction id: its answer refreshes consent.
    probe_tid: Option<[u8; 12]>,
    tie_breaker: u64,
}

impl IceLite {
    /// A responder with our own credentials (the ones in our SDP).
    pub fn new(local_ufrag: String, local_pwd: String) -> Self {
        Self {
            local_ufrag,
            local_key: IntegrityKey::new(&local_pwd),
            local_pwd,
            remote_ufrag: None,
            remote_pwd: None,
            sources: Vec::new(),
            nominated: None,
            recent: [([0; 12], None); RECENT_CHECKS],
            next_recent: 0,
            state: IceState::New,
            probe_at: None,
            probe_due: false,
            probe_tid: None,
            tie_breaker: rand::random(),
        }
    }

    /// The remote credentials from the peer's SDP. Once known, the second half of every
    /// check's USERNAME (`local:remote`) must match the remote ufrag. The password is kept
    /// for completeness; a lite agent never signs with it.
    pub fn set_remote_credentials(&mut self, ufrag: String, pwd: String) {
        self.remote_ufrag = Some(ufrag);
        self.remote_pwd = Some(pwd);
        if self.state == IceState::New {
            self.state = IceState::Checking;
        }
    }

    /// An ICE restart (RFC 8445 §9): new credentials on both sides. The selected address
    /// keeps serving until checks with the new credentials arrive, so media is not cut.
    pub fn restart(
        &mut self,
        local_ufrag: String,
        local_pwd: String,
        remote_ufrag: String,
        remote_pwd: String,
    ) {
        self.local_ufrag = local_ufrag;
        self.local_key = IntegrityKey::new(&local_pwd);
        self.local_pwd = local_pwd;
        self.remote_ufrag = Some(remote_ufrag);
        self.remote_pwd = Some(remote_pwd);
    }

    /// Our ufrag.
    pub fn local_ufrag(&self) -> &str {
        &self.local_ufrag
    }

    /// Our password.
    pub fn local_pwd(&self) -> &str {
        &self.local_pwd
    }

    /// The peer's ufrag, once its SDP is known.
    pub fn remote_ufrag(&self) -> Option<&str> {
        self.remote_ufrag.as_deref()
    }

    /// The peer's password, once its SDP is known.
    pub fn remote_pwd(&self) -> Option<&str> {
        self.remote_pwd.as_deref()
    }

    /// A STUN datagram from `from`: answers a binding request (appending the response to
    /// `out`) and reports what happened.
    ///
    /// Requests that fail authentication (unknown USERNAME, bad MESSAGE-INTEGRITY or
    /// FINGERPRINT) return an error and write nothing: a peer that cannot prove it knows our
    /// password learns nothing and gets no reflected traffic. A check that claims the
    /// controlled role is answered with 487 Role Conflict (RFC 8445 §7.3.1.1), since a lite
    /// agent can never take the controlling role. Binding indications (keepalives) are
    /// accepted and ignored.
    pub fn handle_stun(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<IceInput, StunError> {
        let layout = scan(buf)?;
        match layout.message_type {
            BINDING_REQUEST => {}
            BINDING_INDICATION => return Ok(IceInput::default()),
            BINDING_SUCCESS | BINDING_ERROR => return self.handle_answer(now, from, buf),
            _ => return Err(StunError::UnexpectedMessage),
        }
        // One scan serves the username check and the request's own checks.
        self.check_username(layout.username(buf)?)?;
        let request = check_binding_request(buf, &layout, &self.local_key)?;
        if self.state == IceState::New {
            self.state = IceState::Checking;
        }

        if request.ice_controlled.is_some() {
            sign_binding_error(out, request.transaction_id, 487, Some(&self.local_key))?;
            return Ok(IceInput {
                response_written: true,
                ..IceInput::default()
            });
        }

        // A check seen before from another address is a replay (a retransmission comes
        // from the same address): it must not move the media.
        let tid = request.transaction_id;
        if self
            .recent
            .iter()
            .any(|(t, a)| *t == tid && a.is_some_and(|a| a != from))
        {
            return Err(StunError::Replayed);
        }
        self.recent[self.next_recent] = (tid, Some(from));
        self.next_recent = (self.next_recent + 1) % RECENT_CHECKS;

        sign_binding_success(out, tid, from, &self.local_key)?;
        let before = self.selected();
        let became_valid = self.record_check(now, from);
        // Media follows a nomination at once. A client whose address changed (a NAT
        // rebinding, a network change) goes on checking from the new address only, with or
        // without USE-CANDIDATE: once the selected address has been silent long enough, the
        // media follows the checks, and the old address stops receiving.
        if request.use_candidate {
            self.nominated = Some(from);
        } else if let Some(current) = self.nominated
            && current != from
            && self
                .sources
                .iter()
                .find(|s| s.addr == current)
                .is_none_or(|s| now >= s.last_check + MOVE_AFTER_SILENCE)
        {
            self.nominated = Some(from);
        }
        self.state = IceState::Connected;
        if !self.is_silent(now) {
            self.probe_at = None;
            self.probe_due = false;
        }
        Ok(IceInput {
            response_written: true,
            became_valid,
            nominated: request.use_candidate,
            moved: before.is_some_and(|b| b != from) && self.selected() == Some(from),
        })
    }

    /// An answer to one of our checks of a silent peer: a success from the address we
    /// checked refreshes its consent (RFC 7675 §5.1) and ends the probing.
    fn handle_answer(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &[u8],
    ) -> Result<IceInput, StunError> {
        // Only an answer to our outstanding check, from where it went, is read further.
        let tid = buf.get(8..20).and_then(|t| <[u8; 12]>::try_from(t).ok());
        if tid.is_none() || self.probe_tid != tid || self.selected() != Some(from) {
            return Err(StunError::UnexpectedMessage);
        }
        let pwd = self
            .remote_pwd
            .as_deref()
            .ok_or(StunError::UnexpectedMessage)?;
        let answer = parse_binding_response(buf, pwd)?;
        self.probe_tid = None;
        if answer.success {
            self.record_check(now, from);
            self.probe_at = None;
            self.probe_due = false;
        }
        // An error answer (a restarted or closed agent) leaves consent to expire.
        Ok(IceInput::default())
    }

    /// Whether a check of ours waits in [`IceLite::poll_probe`].
    pub fn probe_due(&self) -> bool {
        self.probe_due
    }

    /// Writes our check of a silent peer to `out` when one is due, and returns where it
    /// goes (the selected address).
    pub fn poll_probe(&mut self, out: &mut Vec<u8>) -> Option<SocketAddr> {
        if !std::mem::take(&mut self.probe_due) {
            return None;
        }
        let to = self.selected()?;
        let pwd = self.remote_pwd.as_deref()?;
        let username = format!("{}:{}", self.remote_ufrag.as_deref()?, self.local_ufrag);
        let tid = crate::new_transaction_id();
        // A host candidate's priority (RFC 8445 §5.1.2.1, type preference 126).
        write_controlled_check(out, tid, &username, pwd, 0x7eff_ffff, self.tie_breaker).ok()?;
        self.probe_tid = Some(tid);
        Some(to)
    }

    /// Whether the selected address has had no check for [`PROBE_AFTER_SILENCE`] (and we
    /// can sign a check of our own).
    fn is_silent(&self, now: Instant) -> bool {
        let Some(selected) = self.selected() else {
            return false;
        };
        self.remote_pwd.is_some()
            && self
                .sources
                .iter()
                .find(|s| s.addr == selected)
                .is_some_and(|s| now >= s.last_check + PROBE_AFTER_SILENCE)
    }

    /// Where media goes: the address of the last nomination or of the last first check from
    /// a new address; when that lost consent, the address with the most recent successful
    /// check (Chromium starts DTLS before it nominates).
    pub fn selected(&self) -> Option<SocketAddr> {
        self.nominated.or_else(|| {
            self.sources
                .iter()
                .max_by_key(|source| source.last_check)
                .map(|source| source.addr)
        })
    }

    /// Whether `addr` passed a check and still has consent: only such addresses may reach
    /// DTLS and SRTP.
    pub fn is_valid_source(&self, addr: SocketAddr) -> bool {
        self.sources.iter().any(|source| source.addr == addr)
    }

    /// Consent freshness (RFC 7675): an address without a check for [`CONSENT_TIMEOUT`]
    /// loses its consent (and its nomination). When no address keeps consent the state
    /// becomes [`IceState::Disconnected`].
    pub fn handle_timeout(&mut self, now: Instant) {
        self.sources
            .retain(|source| now < source.last_check + CONSENT_TIMEOUT);
        if let Some(nominated) = self.nominated
            && !self.is_valid_source(nominated)
        {
            self.nominated = None;
        }
        if self.state == IceState::Connected && self.sources.is_empty() {
            self.state = IceState::Disconnected;
        }
        if let Some(at) = self.probe_at {
            if !self.is_silent(now) {
                self.probe_at = None;
                self.probe_due = false;
            } else if now >= at {
                self.probe_due = true;
                self.probe_at = Some(now + PROBE_INTERVAL);
            }
        }
    }

    /// Starts checking the peer ourselves when its selected address has been silent for
    /// [`PROBE_AFTER_SILENCE`]; true when a check is now due ([`IceLite::poll_probe`]). The
    /// owner calls this now and then (the media core: once a second over its peers) rather
    /// than every peer keeping a timer that its own checks would keep moving; once probing,
    /// the next checks are in [`IceLite::poll_timeout`].
    pub fn check_silence(&mut self, now: Instant) -> bool {
        if self.probe_at.is_some() || !self.is_silent(now) {
            return false;
        }
        self.probe_due = true;
        self.probe_at = Some(now + PROBE_INTERVAL);
        true
    }

    /// Whether we are checking a silent peer ourselves.
    pub fn probing(&self) -> bool {
        self.probe_at.is_some()
    }

    /// When consent next expires on some address, or our next check of a silent peer is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sources
            .iter()
            .map(|source| source.last_check + CONSENT_TIMEOUT)
            .chain(self.probe_at)
            .min()
    }

    /// Where the responder stands.
    pub fn state(&self) -> IceState {
        self.state
    }

    /// USERNAME of a check sent to us is `our-ufrag:their-ufrag` (RFC 8445 §7.2.2).
    fn check_username(&self, username: &str) -> Result<(), StunError> {
        let (local, remote) = username.split_once(':').ok_or(StunError::UnknownUsername)?;
        if local != self.local_ufrag {
            return Err(StunError::UnknownUsername);
        }
        if let Some(expected) = &self.remote_ufrag
            && remote != expected
        {
            return Err(StunError::UnknownUsername);
        }
        Ok(())
    }

    /// Records a successful check; true when `addr` was not valid before.
    fn record_check(&mut self, now: Instant, addr: SocketAddr) -> bool {
        if let Some(source) = self.sources.iter_mut().find(|source| source.addr == addr) {
            source.last_check = source.last_check.max(now);
            return false;
        }
        if self.sources.len() >= MAX_VALID_SOURCES {
            let nominated = self.nominated;
            let stalest = self
                .sources
                .iter()
                .enumerate()
                .filter(|(_, source)| Some(source.addr) != nominated)
                .min_by_key(|(_, source)| source.last_check)
                .map(|(index, _)| index);
            if let Some(index) = stalest {
                self.sources.swap_remove(index);
            }
        }
        self.sources.push(Source {
            addr,
            last_check: now,
        });
        true
    }
}
