//! Deterministic simulation of whole media sessions against the sans-IO [`lkr_sfu::Engine`].
//!
//! Role: tests and benchmarks that need established peers without sockets, threads or
//! sleeps. A [`Sim`] holds one engine as the server (10.0.0.1:7882 by default), simulated
//! [`Client`]s in the browser's roles, each on our own client's peer connection
//! (`lkr-client`: controlling ICE with USE-CANDIDATE and consent checks, DTLS client, SRTP)
//! with publishers of VP8 and Opus-like RTP that answer PLI and NACK and subscribers that
//! record what arrives and NACK gaps, and a [`Network`] whose links lose, delay and reorder datagrams from seeded generators.
//!
//! Data flow: the [`Clock`] only moves when the simulation does. Each step takes the
//! earliest thing due (a datagram arriving, the engine's `poll_timeout`, a client's timer),
//! hands it to its owner with the virtual `now`, then drains `poll_transmit` of the engine
//! and of every client into the network and records the engine's events. Buffers the engine
//! sent come back to it through `Engine::recycle` once the client has read them.
//!
//! Determinism: every loss, delay, credential, SSRC and sequence base comes from
//! [`SimConfig::seed`]; each link draws from its own generator, so traffic elsewhere never
//! shifts its losses. What the engine and the DTLS stack draw themselves (sequence bases of
//! rewritten streams, handshake randoms) is outside the seed and must not matter to an
//! assertion.
//!
//! ```no_run
//! use std::time::Duration;
//! use lkr_sfu::TrackId;
//! use lkr_sim::{LinkConfig, MediaSource, Sim, SimConfig};
//!
//! let mut sim = Sim::new(SimConfig::seeded(7));
//! let publisher = sim.add_client();
//! let subscriber = sim.add_client();
//! assert!(sim.connect_all(Duration::from_secs(5)));
//! sim.publish(publisher, TrackId(1), MediaSource::video());
//! let ssrc = sim.subscribe(subscriber, TrackId(1));
//! sim.set_uplink(publisher, LinkConfig::lossy(0.05));
//! sim.run_for(Duration::from_secs(10));
//! let stream = sim.client(subscriber).stream(ssrc).unwrap();
//! assert!(stream.gaps().is_empty());
//! ```

pub mod client;
pub mod clock;
pub mod media;
pub mod net;
pub mod rng;
pub mod sim;

pub use client::{Client, ClientConfig, ClientStats, IceCredentials};
pub use clock::Clock;
pub use lkr_dtls_glue::srtp::SrtpProfile;
pub use media::{
    AudioConfig, MediaSource, NackPolicy, PayloadTag, Publisher, PublisherStats, ReceivedStream,
    RecvPacket, StreamStats, VideoConfig,
};
pub use net::{Datagram, Kind, LinkConfig, LinkStats, Network};
pub use rng::Rng;
pub use sim::{ClientId, Sim, SimConfig};
