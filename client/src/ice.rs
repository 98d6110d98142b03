//! A controlling full ICE agent for one local host candidate (RFC 8445), sans-IO.
//!
//! The server is ICE-lite: it never sends checks, so we are always controlling and nominate
//! aggressively (USE-CANDIDATE on every check, RFC 8445 §8.1.1). Every remote candidate is
//! paired with our single socket; the first pair whose check succeeds is selected. After that
//! a check goes out every [`CONSENT_INTERVAL`] to keep consent (RFC 7675); without any answer
//! for [`CONSENT_TIMEOUT`] the agent fails. Binding requests from the peer (a full agent) are
//! answered so that it can validate us too.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Time between checks while connecting, doubled up to [`MAX_CHECK_INTERVAL`].
const FIRST_CHECK_INTERVAL: Duration = Duration::from_millis(50);
const MAX_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// Time between consent checks once connected.
pub const CONSENT_INTERVAL: Duration = Duration::from_secs(4);
/// Without an answer for this long the pair has lost consent (RFC 7675 §5.1).
pub const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Checks that have gone unanswered this long are forgotten.
const TRANSACTION_LIFETIME: Duration = Duration::from_secs(5);

/// Where the agent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceState {
    /// Waiting for the remote credentials or a remote candidate.
    New,
    /// Sending checks.
    Checking,
    /// A pair answered; media may flow to [`IceAgent::selected`].
    Connected,
    /// Nothing answered in time, or consent was lost.
    Failed,
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
    tie_breaker: u64,
    priority: u32,
    state: IceState,
    selected: Option<SocketAddr>,
    transactions: Vec<Transaction>,
    next_check: Option<Instant>,
    interval: Duration,
    started: Option<Instant>,
    last_answer: Option<Instant>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
}

impl IceAgent {
    /// A fresh agent with new random credentials.
    pub fn new() -> Self {
        Self {
            local_ufrag: lkr_ice::random_ufrag(),
            local_pwd: lkr_ice::random_pwd(),
            remote: None,
            candidates: Vec::new(),
            tie_breaker: rand::random(),
            priority: lkr_ice::candidate_priority(
                lkr_ice::PEER_REFLEXIVE_TYPE_PREFERENCE,
                65_535,
                1,
            ),
            state: IceState::New,
            selected: None,
            transactions: Vec::new(),
            next_check: None,
            interval: FIRST_CHECK_INTERVAL,
            started: None,
            last_answer: None,
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
    pub fn state(&self) -> IceState {
        self.state
    }

    /// The address media goes to, once a check succeeded.
    pub fn selected(&self) -> Option<SocketAddr> {
        self.selected
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
        if self.state == IceState::Connected || self.state == IceState::Failed {
            self.state = IceState::New;
            self.selected = None;
        }
        self.start(now);
    }

    /// Adds a remote candidate address (from SDP or trickle).
    pub fn add_remote_candidate(&mut self, now: Instant, addr: SocketAddr) {
        if !self.candidates.contains(&addr) {
            self.candidates.push(addr);
            if self.state == IceState::Checking {
                self.next_check = Some(now);
            }
        }
        self.start(now);
    }

    fn start(&mut self, now: Instant) {
        if self.state == IceState::New && self.remote.is_some() && !self.candidates.is_empty() {
            self.state = IceState::Checking;
            self.started = Some(now);
            self.interval = FIRST_CHECK_INTERVAL;
            self.next_check = Some(now);
        }
    }

    /// Handles a STUN datagram from `from`. Returns whether the agent just connected.
    pub fn handle_receive(&mut self, now: Instant, from: SocketAddr, buf: &[u8]) -> bool {
        if let Some((_, remote_pwd)) = &self.remote
            && let Ok(resp) = lkr_ice::parse_binding_response(buf, remote_pwd)
        {
            let Some(i) = self
                .transactions
                .iter()
                .position(|t| t.id == resp.transaction_id)
            else {
                return false;
            };
            let t = self.transactions.swap_remove(i);
            if !resp.success {
                tracing::debug!(code = ?resp.error_code, dest = %t.dest, "ICE check refused");
                return false;
            }
            self.last_answer = Some(now);
            if self.state == IceState::Checking {
                self.state = IceState::Connected;
                self.selected = Some(t.dest);
                self.next_check = Some(now + CONSENT_INTERVAL);
                return true;
            }
            return false;
        }
        if let Ok(req) = lkr_ice::parse_binding_request(buf, &self.local_pwd) {
            let mut out = Vec::new();
            if lkr_ice::write_binding_success(&mut out, req.transaction_id, from, &self.local_pwd)
                .is_ok()
            {
                self.transmits.push_back((from, out));
            }
        }
        false
    }

    /// Sends due checks and fails the agent when time is up.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.transactions
            .retain(|t| now.saturating_duration_since(t.sent_at) < TRANSACTION_LIFETIME);
        match self.state {
            IceState::New | IceState::Failed => return,
            IceState::Checking => {
                if self
                    .started
                    .is_some_and(|s| now.saturating_duration_since(s) > CONSENT_TIMEOUT)
                {
                    self.state = IceState::Failed;
                    return;
                }
            }
            IceState::Connected => {
                let last = self.last_answer.unwrap_or(now);
                if now.saturating_duration_since(last) > CONSENT_TIMEOUT {
                    self.state = IceState::Failed;
                    self.selected = None;
                    return;
                }
            }
        }
        if self.next_check.is_some_and(|at| at <= now) {
            let targets: Vec<SocketAddr> = match (self.state, self.selected) {
                (IceState::Connected, Some(sel)) => vec![sel],
                _ => self.candidates.clone(),
            };
            for dest in targets {
                self.send_check(now, dest);
            }
            self.next_check = Some(if self.state == IceState::Connected {
                now + CONSENT_INTERVAL
            } else {
                let at = now + self.interval;
                self.interval = (self.interval * 2).min(MAX_CHECK_INTERVAL);
                at
            });
        }
    }

    fn send_check(&mut self, now: Instant, dest: SocketAddr) {
        let Some((remote_ufrag, remote_pwd)) = &self.remote else {
            return;
        };
        let id = lkr_ice::new_transaction_id();
        let username = format!("{remote_ufrag}:{}", self.local_ufrag);
        let mut out = Vec::new();
        if lkr_ice::write_binding_request(
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
            self.transactions.push(Transaction {
                id,
                dest,
                sent_at: now,
            });
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
            IceState::Checking | IceState::Connected => self.next_check,
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

    /// A server-side responder built from the ICE-lite building blocks: answers a check made
    /// with its credentials.
    fn answer(check: &[u8], from: SocketAddr, pwd: &str) -> Vec<u8> {
        let req = lkr_ice::parse_binding_request(check, pwd).expect("a valid check");
        assert!(req.use_candidate, "aggressive nomination");
        assert!(req.ice_controlling.is_some());
        let mut out = Vec::new();
        lkr_ice::write_binding_success(&mut out, req.transaction_id, from, pwd).unwrap();
        out
    }

    #[test]
    fn connects_on_the_first_answer_and_keeps_consent() {
        let t0 = Instant::now();
        let server: SocketAddr = "127.0.0.1:7882".parse().unwrap();
        let me: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut a = IceAgent::new();
        a.set_remote_credentials(t0, "srvufrag", "serverpasswordserverpassword");
        assert_eq!(a.state(), IceState::New);
        a.add_remote_candidate(t0, server);
        assert_eq!(a.state(), IceState::Checking);
        a.handle_timeout(t0);
        let (dest, check) = a.poll_transmit().expect("a check");
        assert_eq!(dest, server);
        assert_eq!(
            lkr_ice::stun_username(&check).unwrap(),
            format!("srvufrag:{}", a.local_ufrag())
        );
        let resp = answer(&check, me, "serverpasswordserverpassword");
        assert!(a.handle_receive(t0, server, &resp));
        assert_eq!(a.state(), IceState::Connected);
        assert_eq!(a.selected(), Some(server));
        // A duplicate answer changes nothing.
        assert!(!a.handle_receive(t0, server, &resp));
        // Consent checks follow, and without answers the agent fails.
        let later = t0 + CONSENT_INTERVAL;
        a.handle_timeout(later);
        assert!(a.poll_transmit().is_some());
        a.handle_timeout(t0 + CONSENT_TIMEOUT + Duration::from_secs(1));
        assert_eq!(a.state(), IceState::Failed);
    }

    #[test]
    fn a_wrong_password_is_not_an_answer() {
        let t0 = Instant::now();
        let server: SocketAddr = "127.0.0.1:7882".parse().unwrap();
        let mut a = IceAgent::new();
        a.set_remote_credentials(t0, "u", "serverpasswordserverpassword");
        a.add_remote_candidate(t0, server);
        a.handle_timeout(t0);
        let (_, check) = a.poll_transmit().unwrap();
        let req = lkr_ice::parse_binding_request(&check, "serverpasswordserverpassword").unwrap();
        let mut forged = Vec::new();
        lkr_ice::write_binding_success(&mut forged, req.transaction_id, server, "otherpassword")
            .unwrap();
        assert!(!a.handle_receive(t0, server, &forged));
        assert_eq!(a.state(), IceState::Checking);
    }

    #[test]
    fn checks_back_off_while_unanswered() {
        let t0 = Instant::now();
        let mut a = IceAgent::new();
        a.set_remote_credentials(t0, "u", "serverpasswordserverpassword");
        a.add_remote_candidate(t0, "127.0.0.1:1".parse().unwrap());
        a.handle_timeout(t0);
        let first = a.poll_timeout().unwrap() - t0;
        a.handle_timeout(t0 + first);
        let second = a.poll_timeout().unwrap() - (t0 + first);
        assert!(second > first);
        a.handle_timeout(t0 + CONSENT_TIMEOUT + Duration::from_secs(1));
        assert_eq!(a.state(), IceState::Failed);
    }
}
