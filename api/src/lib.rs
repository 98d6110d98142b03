//! The control plane of `livekit-server`.
//!
//! One HTTP port carries the health check (`GET /`), Twirp `livekit.RoomService` and, with
//! the media plane, the signalling WebSocket. Requests are authenticated with LiveKit access
//! tokens and act on the node's [`lkr_room::Rooms`].
//!
//! - [`config`]: LiveKit's YAML configuration, strict, with flag overrides.
//! - [`auth`]: where a request's token is and whether it holds.
//! - [`twirp`]: Twirp framing and errors; [`room_service`]: the RoomService methods;
//!   [`agent_service`]: the AgentDispatchService methods (LiveKit Agents; `/agent` is the
//!   workers' WebSocket).
//! - [`node`]: state shared by handlers; [`http`]: the listener; [`cmd`]: the binary.
//! - [`metrics`]: Prometheus metrics on their own port.
//! - [`webhook`]: room events POSTed to the configured URLs, signed as LiveKit signs them.
//! - [`whip`]: the WHIP ingest and WHEP playback routes.
//! - [`egress`]: Twirp `livekit.Egress`, track egress written to files on this node.
//! - [`node_page`]: the live node page (`/node`): rooms, participants, tracks and their rates.
//! - [`cluster`]: multi-node mode over Redis: this node's record, room routing, relayed
//!   signalling and forwarded Twirp calls.

pub mod agent_service;
pub mod auth;
pub mod cluster;
pub mod cmd;
pub mod config;
pub mod egress;
pub mod http;
pub mod metrics;
pub mod node;
pub mod node_page;
pub mod room_service;
pub mod twirp;
pub mod webhook;
pub mod whip;

pub use cmd::server_main;
