//! The controlling full ICE agent of our own client (RFC 8445), sans-IO, for one local socket.
//!
//! The server is ICE-lite: it never sends checks, so the client is always controlling and
//! nominates aggressively (USE-CANDIDATE on every check, RFC 8445 §8.1.1). Every remote
//! candidate is paired with the one local socket; the first pair whose check succeeds is
//! selected. After that a check goes out every [`AgentTiming::consent_interval`] to keep
//! consent (RFC 7675); without any answer for [`AgentTiming::consent_timeout`] the agent
//! fails. Binding requests from a full peer are answered so that it can validate us too.
//!
//! Credentials, the tie-breaker and transaction ids come from a generator the agent owns:
//! seeded from the OS by [`IceAgent::new`], or from a caller's seed by [`IceAgent::seeded`]
//! (the deterministic simulation), so that a seed fixes every byte the agent writes.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use crate::candidate::{PEER_REFLEXIVE_TYPE_PREFERENCE, candidate_priority};
use crate::credentials::{random_pwd, random_ufrag};
use crate::stun::{
    parse_binding_request, parse_binding_response, write_binding_request, write_binding_success,
};

/// Checks that have gone unanswered this long are forgotten.
const TRANSACTION_LIFETIME: Duration = Duration::from_secs(5);
/// The most unanswered checks remembered; the oldest is forgotten beyond this.
pub const MAX_PENDING_CHECKS: usize = 32;

/// When checks go out, and when the agent gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentTiming {
    /// Time between checks while connecting, at first.
    pub first_check_interval: Duration,
    /// The interval doubles after each unanswered round up to this.
    pub max_check_interval: Duration,
    /// Time between consent checks once connected.
    pub consent_interval: Duration,
    /// Without an answer for this long (or no first answer this long after checks began)
    /// the agent fails (RFC 7675 §5.1); `None` never fails.
    pub consent_timeout: Option<Duration>,
}

impl Default for AgentTiming {
    /// 50 ms doubling to 500 ms while connecting, a consent check every 4 s, 30 s to fail.
    fn default() -> Self {
        Self {
            first_check_interval: Duration::from_millis(50),
            max_check_interval: Duration::from_millis(500),
            consent_interval: Duration::from_secs(4),
            consent_timeout: Some(Duration::from_secs(30)),
        }
    }
}

/// Where the agent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentState {
    /// Waiting for the remote credentials or a remote candidate.
    New,
    /// Sending checks.
    Checking,
    /// A pair answered; media may flow to [`IceAgent::selected`].
    Connected,
    /// Nothing answered in time, or consent was lost.
    Failed,
}

/// What one STUN datagram was to the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentInput {
    /// The first successful answer: the agent just connected.
    Connected,
    /// A successful answer once connected: consent refreshed.
    Answered,
    /// An error response to one of our checks.
    Refused,
    /// A verified response to no check we remember.
    Unmatched,
    /// A binding request from the peer; the answer is queued.
    Request,
    /// Not a response verified with the remote password nor a request for us.
    Invalid,
}

#[derive(Debug)]
struct Transaction {
    id: [u8; 12],
    dest: SocketAddr,
    sent_at: Instant,
}

/// The controlling side of ICE for one peer connection.
#[derive(Debug)]
pub struct IceAgent {
    local_ufrag: String,
    local_pwd: String,
    remote: Option<(String, String)>,
    candidates: Vec<SocketAddr>,
    timing: AgentTiming,
    rng: StdRng,
    tie_breaker: u64,
    priority: u32,
    state: AgentState,
    selected: Option<SocketAddr>,
    transactions: VecDeque<Transaction>,
    next_check: Option<Instant>,
    interval: Duration,
    started: Option<Instant>,
    last_answer: Option<Instant>,
    last_check_sent: Option<Instant>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
}

impl IceAgent {
    /// A fresh agent with random credentials and the default timing.
    pub fn new() -> Self {
        Self::build(
            random_ufrag(),
            random_pwd(),
            StdRng::from_os_rng(),
            AgentTiming::default(),
        )
    }

    /// An agent with the given credentials whose tie-breaker and transaction ids come from
    /// `seed`.
    pub fn seeded(ufrag: String, pwd: String, seed: u64, timing: AgentTiming) -> Self {
        Self::build(ufrag, pwd, StdRng::seed_from_u64(seed), timing)
    }

    fn build(local_ufrag: String, local_pwd: String, mut rng: StdRng, timing: AgentTiming) -> Self {
        Self {
            local_ufrag,
            local_pwd,
            remote: None,
            candidates: Vec::new(),
            tie_breaker: rng.random(),
            rng,
            priority: candidate_priority(PEER_REFLEXIVE_TYPE_PREFERENCE, 65_535, 1),
            state: AgentState::New,
            selected: None,
            transactions: VecDeque::new(),
            next_check: None,
            interval: timing.first_check_interval,
            timing,
            started: None,
            last_answer: None,
            last_check_sent: None,
            transmits: VecDeque::new(),
        }
    }

    /// Our username fragment, for `a=ice-ufrag`.
    pub fn local_ufrag(&self) -> &str {
        &self.local_ufrag
    }

    /// Our password, for `a=ice-pwd`.
    pub fn local_pwd(&self) -> &str {
        &self.local_pwd
    }

    /// The state.
    pub fn state(&self) -> AgentState {
        self.state
    }

    /// The address media goes to, once a check succeeded.
    pub fn selected(&self) -> Option<SocketAddr> {
        self.selected
    }

    /// When the last connectivity or consent check was queued.
    pub fn last_check_sent(&self) -> Option<Instant> {
        self.last_check_sent
    }

    /// Sets the remote ufrag and password (from its description). New credentials (an ICE
    /// restart) start checking again.
    pub fn set_remote_credentials(&mut self, now: Instant, ufrag: &str, pwd: &str) {
        if self
            .remote
            .as_ref()
            .is_some_and(|(u, p)| u == ufrag && p == pwd)
        {
            return;
        }
        self.remote = Some((ufrag.to_owned(), pwd.to_owned()));
        if self.state == AgentState::Connected || self.state == AgentState::Failed {
            self.state = AgentState::New;
            self.selected = None;
        }
        self.start(now);
    }

    /// Adds a remote candidate address (from SDP or trickle).
    pub fn add_remote_candidate(&mut self, now: Instant, addr: SocketAddr) {
        if !self.candidates.contains(&addr) {
            self.candidates.push(addr);
            if self.state == AgentState::Checking {
                self.next_check = Some(now);
            }
        }
        self.start(now);
    }

    fn start(&mut self, now: Instant) {
        if self.state == AgentState::New && self.remote.is_some() && !self.candidates.is_empty() {
            self.state = AgentState::Checking;
            self.started = Some(now);
            self.interval = self.timing.first_check_interval;
            self.next_check = Some(now);
        }
    }

    /// Handles a STUN datagram from `from`.
    pub fn handle_receive(&mut self, now: Instant, from: SocketAddr, buf: &[u8]) -> AgentInput {
        if let Some((_, remote_pwd)) = &self.remote
            && let Ok(resp) = parse_binding_response(buf, remote_pwd)
        {
            let Some(i) = self
                .transactions
                .iter()
                .position(|t| t.id == resp.transaction_id)
            else {
                return AgentInput::Unmatched;
            };
            let t = self
                .transactions
                .remove(i)
                .expect("the index was just found");
            if !resp.success {
                tracing::debug!(code = ?resp.error_code, dest = %t.dest, "ICE check refused");
                return AgentInput::Refused;
            }
            self.last_answer = Some(now);
            if self.state == AgentState::Checking {
                self.state = AgentState::Connected;
                self.selected = Some(t.dest);
                self.next_check = Some(now + self.timing.consent_interval);
                return AgentInput::Connected;
            }
            return AgentInput::Answered;
        }
        if let Ok(req) = parse_binding_request(buf, &self.local_pwd) {
            let mut out = Vec::new();
            if write_binding_success(&mut out, req.transaction_id, from, &self.local_pwd).is_ok() {
                self.transmits.push_back((from, out));
            }
            return AgentInput::Request;
        }
        AgentInput::Invalid
    }

    /// Sends due checks and fails the agent when time is up.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.transactions
            .retain(|t| now.saturating_duration_since(t.sent_at) < TRANSACTION_LIFETIME);
        let expired = |since: Option<Instant>| {
            self.timing.consent_timeout.is_some_and(|limit| {
                since.is_some_and(|s| now.saturating_duration_since(s) > limit)
            })
        };
        match self.state {
            AgentState::New | AgentState::Failed => return,
            AgentState::Checking => {
                if expired(self.started) {
                    self.state = AgentState::Failed;
                    return;
                }
            }
            AgentState::Connected => {
                if expired(Some(self.last_answer.unwrap_or(now))) {
                    self.state = AgentState::Failed;
                    self.selected = None;
                    return;
                }
            }
        }
        if self.next_check.is_some_and(|at| at <= now) {
            match (self.state, self.selected) {
                (AgentState::Connected, Some(sel)) => self.send_check(now, sel),
                _ => {
                    for i in 0..self.candidates.len() {
                        self.send_check(now, self.candidates[i]);
                    }
                }
            }
            self.next_check = Some(if self.state == AgentState::Connected {
                now + self.timing.consent_interval
            } else {
                let at = now + self.interval;
                self.interval = (self.interval * 2).min(self.timing.max_check_interval);
                at
            });
        }
    }

    fn send_check(&mut self, now: Instant, dest: SocketAddr) {
        let Some((remote_ufrag, remote_pwd)) = &self.remote else {
            return;
        };
        let id: [u8; 12] = self.rng.random();
        let username = format!("{remote_ufrag}:{}", self.local_ufrag);
        let mut out = Vec::new();
        if write_binding_request(
            &mut out,
            id,
            &username,
            remote_pwd,
            self.priority,
            self.tie_breaker,
            true,
        )
        .is_ok()
        {
            if self.transactions.len() == MAX_PENDING_CHECKS {
                self.transactions.pop_front();
            }
            self.transactions.push_back(Transaction {
                id,
                dest,
                sent_at: now,
            });
            self.last_check_sent = Some(now);
            self.transmits.push_back((dest, out));
        }
    }

    /// The next datagram to send, and where.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// When [`Self::handle_timeout`] should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            AgentState::Checking | AgentState::Connected => self.next_check,
            _ => None,
        }
    }
}

impl Default for IceAgent {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IceLite;

    const SERVER_PWD: &str = "serverpasswordserverpassword";

    /// A server-side responder built from the ICE-lite building blocks: answers a check made
    /// with its credentials.
    fn answer(check: &[u8], from: SocketAddr, pwd: &str) -> Vec<u8> {
        let req = parse_binding_request(check, pwd).expect("a valid check");
        assert!(req.use_candidate, "aggressive nomination");
        assert!(req.ice_controlling.is_some());
        let mut out = Vec::new();
        write_binding_success(&mut out, req.transaction_id, from, pwd).unwrap();
        out
    }

    fn server() -> SocketAddr {
        "127.0.0.1:7882".parse().unwrap()
    }

    #[test]
    fn connects_on_the_first_answer_and_keeps_consent() {
        let t0 = Instant::now();
        let me: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut a = IceAgent::new();
        a.set_remote_credentials(t0, "srvufrag", SERVER_PWD);
        assert_eq!(a.state(), AgentState::New);
        a.add_remote_candidate(t0, server());
        assert_eq!(a.state(), AgentState::Checking);
        a.handle_timeout(t0);
        let (dest, check) = a.poll_transmit().expect("a check");
        assert_eq!(dest, server());
        assert_eq!(a.last_check_sent(), Some(t0));
        assert_eq!(
            crate::stun_username(&check).unwrap(),
            format!("srvufrag:{}", a.local_ufrag())
        );
        let resp = answer(&check, me, SERVER_PWD);
        assert_eq!(a.handle_receive(t0, server(), &resp), AgentInput::Connected);
        assert_eq!(a.state(), AgentState::Connected);
        assert_eq!(a.selected(), Some(server()));
        // A duplicate answer matches no check any more.
        assert_eq!(a.handle_receive(t0, server(), &resp), AgentInput::Unmatched);
        // Consent checks follow, and without answers the agent fails.
        let later = t0 + Duration::from_secs(4);
        a.handle_timeout(later);
        let (_, consent) = a.poll_transmit().expect("a consent check");
        assert_eq!(
            a.handle_receive(later, server(), &answer(&consent, me, SERVER_PWD)),
            AgentInput::Answered
        );
        a.handle_timeout(later + Duration::from_secs(31));
        assert_eq!(a.state(), AgentState::Failed);
        assert_eq!(a.selected(), None);
    }

    #[test]
    fn a_wrong_password_is_not_an_answer() {
        let t0 = Instant::now();
        let mut a = IceAgent::new();
        a.set_remote_credentials(t0, "u", SERVER_PWD);
        a.add_remote_candidate(t0, server());
        a.handle_timeout(t0);
        let (_, check) = a.poll_transmit().unwrap();
        let req = parse_binding_request(&check, SERVER_PWD).unwrap();
        let mut forged = Vec::new();
        write_binding_success(&mut forged, req.transaction_id, server(), "otherpassword").unwrap();
        assert_eq!(a.handle_receive(t0, server(), &forged), AgentInput::Invalid);
        assert_eq!(a.state(), AgentState::Checking);
    }

    #[test]
    fn checks_back_off_while_unanswered() {
        let t0 = Instant::now();
        let mut a = IceAgent::new();
        a.set_remote_credentials(t0, "u", SERVER_PWD);
        a.add_remote_candidate(t0, "127.0.0.1:1".parse().unwrap());
        a.handle_timeout(t0);
        let first = a.poll_timeout().unwrap() - t0;
        a.handle_timeout(t0 + first);
        let second = a.poll_timeout().unwrap() - (t0 + first);
        assert!(second > first);
        a.handle_timeout(t0 + Duration::from_secs(31));
        assert_eq!(a.state(), AgentState::Failed);
    }

    #[test]
    fn fixed_interval_without_a_timeout_keeps_checking() {
        let t0 = Instant::now();
        let step = Duration::from_millis(50);
        let timing = AgentTiming {
            first_check_interval: step,
            max_check_interval: step,
            consent_interval: Duration::from_secs(5),
            consent_timeout: None,
        };
        let mut a = IceAgent::seeded("cu".into(), "clientpasswordclientpass".into(), 1, timing);
        a.set_remote_credentials(t0, "su", SERVER_PWD);
        a.add_remote_candidate(t0, server());
        let mut at = t0;
        let mut sent = 0;
        while at < t0 + Duration::from_secs(60) {
            a.handle_timeout(at);
            while a.poll_transmit().is_some() {
                sent += 1;
            }
            let next = a.poll_timeout().expect("still checking");
            assert_eq!(next - at, step);
            at = next;
        }
        assert_eq!(sent, 1200);
        assert_eq!(a.state(), AgentState::Checking);
        // Only the most recent checks are remembered.
        assert_eq!(a.transactions.len(), MAX_PENDING_CHECKS);
    }

    #[test]
    fn the_same_seed_writes_the_same_checks() {
        let t0 = Instant::now();
        let checks = |seed| {
            let mut a = IceAgent::seeded(
                "cu".into(),
                "clientpasswordclientpass".into(),
                seed,
                AgentTiming::default(),
            );
            a.set_remote_credentials(t0, "su", SERVER_PWD);
            a.add_remote_candidate(t0, server());
            a.handle_timeout(t0);
            a.poll_transmit().unwrap().1
        };
        assert_eq!(checks(7), checks(7));
        assert_ne!(checks(7), checks(8));
    }

    #[test]
    fn answers_the_checks_of_a_full_peer() {
        let t0 = Instant::now();
        let mut a = IceAgent::new();
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        // An ICE-lite responder's building blocks verify what the agent answers.
        let mut req = Vec::new();
        let user = format!("{}:peer", a.local_ufrag());
        write_binding_request(&mut req, [3; 12], &user, a.local_pwd(), 1, 2, false).unwrap();
        assert_eq!(a.handle_receive(t0, peer, &req), AgentInput::Request);
        let (dest, resp) = a.poll_transmit().expect("an answer");
        assert_eq!(dest, peer);
        let back = parse_binding_response(&resp, a.local_pwd()).unwrap();
        assert!(back.success);
        assert_eq!(back.transaction_id, [3; 12]);
        // And the server's responder accepts the agent's checks.
        let mut lite = IceLite::new("su".into(), SERVER_PWD.into());
        lite.set_remote_credentials(a.local_ufrag().into(), a.local_pwd().into());
        a.set_remote_credentials(t0, "su", SERVER_PWD);
        a.add_remote_candidate(t0, server());
        a.handle_timeout(t0);
        let (_, check) = a.poll_transmit().unwrap();
        let mut out = Vec::new();
        let r = lite.handle_stun(t0, peer, &check, &mut out).unwrap();
        assert!(r.response_written && r.nominated);
        assert_eq!(a.handle_receive(t0, server(), &out), AgentInput::Connected);
    }
}
