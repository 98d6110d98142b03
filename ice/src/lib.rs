//! ICE for both roles: STUN binding messages, the server's ICE-lite responder, our client's
//! controlling agent, and the candidate lines written into SDP and trickled over signalling.
//!
//! # Data flow
//!
//! The media plane shares one UDP port among all peers. The driver demultiplexes by the first
//! byte (RFC 7983); a datagram for which [`is_stun`] holds comes here:
//!
//! 1. From an address not yet bound to a peer, [`stun_username`] yields the `local:remote`
//!    ufrag pair of a binding request, which names the peer (our ufrag is unique per peer).
//! 2. That peer's [`IceLite`] verifies the check (MESSAGE-INTEGRITY with our short-term
//!    password, FINGERPRINT, the ufrags), appends the success response to the caller's buffer,
//!    and reports whether the source address just became valid and whether it was nominated.
//! 3. Only addresses that passed a check ([`IceLite::is_valid_source`]) may reach DTLS and
//!    SRTP; media goes to [`IceLite::selected`]. Chromium starts DTLS right after its first
//!    successful check, before nominating, so `selected` falls back to the most recent valid
//!    address until USE-CANDIDATE arrives.
//! 4. Consent freshness (RFC 7675): the driver calls [`IceLite::handle_timeout`] at
//!    [`IceLite::poll_timeout`]; without a check for 30 s an address loses consent, and with
//!    none left the state is [`IceState::Disconnected`].
//! 5. A peer whose selected address has sent no check for [`PROBE_AFTER_SILENCE`] (its
//!    owner asks [`IceLite::check_silence`] now and then) gets checks of ours every
//!    [`PROBE_INTERVAL`] ([`IceLite::poll_probe`], a controlled agent's consent check) until
//!    it answers, checks us again or loses consent: a client whose network comes back hears
//!    from us at once and revives the path without an ICE restart.
//!
//! Our own client (and the simulated client of the deterministic simulation) is the other
//! role: [`IceAgent`], a controlling full agent that sends checks with USE-CANDIDATE to the
//! server's candidates, selects the first pair that answers and keeps consent on it.
//!
//! # Driver contract
//!
//! Sans-IO: nothing here reads a clock or touches a socket. Time comes in as `now`, datagrams
//! as byte slices; the responder appends its answers to a `Vec<u8>` the driver owns, the
//! agent queues its checks for `poll_transmit`. Nothing a peer sends can panic this crate; bad input comes back as a [`StunError`] naming the reason, for
//! the driver to count and drop.

mod agent;
mod candidate;
mod credentials;
mod error;
mod lite;
mod stun;

pub use agent::{AgentInput, AgentState, AgentTiming, IceAgent, MAX_PENDING_CHECKS};
pub use candidate::{
    HOST_TYPE_PREFERENCE, PEER_REFLEXIVE_TYPE_PREFERENCE, RELAYED_TYPE_PREFERENCE,
    SERVER_REFLEXIVE_TYPE_PREFERENCE, candidate_priority, host_candidate_line,
};
pub use credentials::{PWD_LEN, UFRAG_LEN, new_transaction_id, random_pwd, random_ufrag};
pub use error::StunError;
pub use lite::{
    CONSENT_TIMEOUT, IceInput, IceLite, IceState, MAX_VALID_SOURCES, MOVE_AFTER_SILENCE,
    PROBE_AFTER_SILENCE, PROBE_INTERVAL,
};
pub use stun::{
    BindingRequest, BindingResponse, MAX_MESSAGE_LEN, is_stun, parse_binding_request,
    parse_binding_response, stun_username, stun_username_str, write_binding_error,
    write_binding_request, write_binding_success, write_controlled_check,
};

#[cfg(test)]
mod tests;
