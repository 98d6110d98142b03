//! The embedded TURN server (RFC 8656, formerly RFC 5766), sans-IO.
//!
//! It lets a client that can only reach this node through a TURN relay (UDP blocked, a
//! firewall that allows only TLS, a `relay` ICE policy) reach this node's media port, and
//! nothing else: every permission, channel and Send indication must name the node's own
//! media address ([`TurnConfig::media_addr`]); any other peer is refused with 403 Forbidden
//! or dropped, so an allocation can never be used to reach another host.
//!
//! Credentials are LiveKit-shaped and time-limited ([`credentials`]): the JoinResponse's
//! `ice_servers` carry a username naming the API key, the participant and an expiry, and a
//! password derived from the API secret; the server needs no state to check them.
//!
//! Data flow ([`TurnServer`]): the driver hands every message from a client to
//! `handle_client` (splitting streams with [`frame_len`]) and sends the reply, or relays the
//! payload from the allocation's relay socket to the media address; every datagram that
//! arrives on a relay socket goes to `handle_peer`, whose ChannelData or Data indication goes
//! to the client. Lifetimes run on `handle_timeout`/`poll_timeout`; ended allocations come
//! out of `poll_output` so the driver closes their relay sockets. Nothing here reads a clock
//! or touches a socket. ChannelData, which carries the media once a channel is bound, is
//! parsed in place without allocation.

pub mod credentials;
mod server;

pub use credentials::{CREDENTIAL_TTL, CredentialError, Credentials};
pub use server::{
    Client, Handled, MAX_MESSAGE, Output, REALM, Transport, TurnConfig, TurnError, TurnServer,
    frame_len,
};

#[cfg(test)]
mod tests;
