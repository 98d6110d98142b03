//! The media driver: the only media code that knows about clocks, sockets and threads.
//!
//! [`lkr_sfu::Engine`] is sans-IO; this crate owns the UDP socket, moves datagrams in
//! batches (`recvmmsg`/`sendmmsg` on Linux, [`batch`]), passes the engine the time, the
//! datagrams and the control plane's commands, and hands the engine's events back.
//!
//! The control plane talks to a running core through a [`MediaHandle`]: a bounded command
//! channel (a send never waits; a full channel is reported) and a bounded event channel
//! (the media thread never waits on it either: events that can be lost are dropped and
//! counted, state events wait in a local queue that is drained first). [`MediaStats`]
//! counts what the core dropped. Local sinks ([`sink`]) hand one track's packets to a
//! consumer thread on this node (track egress) through a bounded channel per sink.
//!
//! ICE-TCP ([`tcp`]): a thread owns the passive TCP port and its connections, de-frames
//! RFC 4571 packets into the owning shard's ring and frames what the shard sends back.
//!
//! This is the one crate of the workspace allowed to use `unsafe`: the system calls in
//! [`batch`] and [`cputime`] and the counting allocator in [`alloc_count`]. Each block says
//! why it is sound.

pub mod alloc_count;
pub mod batch;
pub mod cputime;
mod driver;
pub mod ring;
mod router;
mod routes;
pub mod sink;
mod stats;
pub mod tcp;
pub mod turn;
mod wake;

pub use driver::{
    DriverConfig, EVENT_DATA_BYTES, EventHook, IDLE_POLL_WAKEUPS, Media, MediaHandle, Outbound,
    SendError, spawn,
};
pub use router::{DEFAULT_SPILL, MAX_SHARDS};
pub use sink::{SINK_CAPACITY, SinkPacket, SinkReceiver, SinkSender, sink_channel};
pub use stats::{LATENCY_BUCKETS_US, Latency, MediaStats, StatsSnapshot, TcpCounters, TcpSnapshot};
pub use tcp::TcpConfig;
