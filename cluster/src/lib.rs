//! Multi-node mode: several `livekit-server` nodes that share a Redis form one cluster.
//!
//! - [`node`]: a node's record (address, state, load), which it refreshes while it lives;
//! - [`selector`]: LiveKit's `node_selector` (kind and `sort_by`): which node gets a new room;
//! - [`store`]: the records and the room placements in Redis, with the atomic steps as Lua
//!   scripts (two joins racing for a new room on two nodes get the same node).
//!
//! The routing itself (relaying a client's signalling to the room's node, routing Twirp
//! calls) lives in the HTTP front door (`lkr-api`); this crate holds no connection to a client.

pub mod node;
pub mod selector;
pub mod store;

pub use node::{NodeInfo, NodeState, NodeStats};
pub use selector::Selector;
pub use store::{RedisSettings, Store, StoreError};
