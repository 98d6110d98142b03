//! Send-side bandwidth estimation for one subscriber's downstream link, and the allocator
//! that fits that subscriber's video subscriptions into the estimate.
//!
//! Role: the media core stamps every packet it sends to a subscriber with a transport-wide
//! sequence number ([`SendHistory::on_send`]); the subscriber's transport-cc feedback comes
//! back as `(sequence, receive delta)` pairs and goes to [`Estimator::on_feedback`]. The
//! estimator combines
//!
//! - a **delay-based** estimate ([`delay`]): packets are grouped into bursts, the growth of
//!   one-way delay between bursts is smoothed and its trend (a least-squares slope over the
//!   last groups) is compared with an adaptive threshold, so a queue that starts to build is
//!   seen as overuse long before it drops anything; the rate ([`rate`]) then falls below
//!   what the link delivered and grows again (multiplicatively far from the last
//!   congestion point, additively near it) while the trend is normal;
//! - a **loss-based** bound ([`loss`]) from the share of packets reported lost;
//! - **probe results** ([`probe`]): a burst of padding at a target rate whose delivered rate,
//!   when the link keeps up, lifts the estimate at once instead of by slow growth.
//!
//! [`allocate`] takes the estimate and every video subscription of the subscriber (layer
//! bitrates, the layer it wants, its priority: screen share and active speaker first, then
//! the larger on screen) and chooses a layer per subscription, pausing those for which even
//! the lowest layer does not fit; it also says whether a probe should precede an upgrade.
//!
//! Everything is sans-IO: time comes in as `Instant` arguments, nothing allocates after
//! construction, and nothing a peer sends can grow memory (the history and every window have
//! fixed sizes; feedback for unknown or stale sequence numbers is ignored).

pub mod allocator;
pub mod delay;
mod estimator;
mod history;
pub mod loss;
pub mod probe;
pub mod rate;

pub use allocator::{Allocation, LayerChoice, Subscription, allocate};
pub use estimator::{Estimator, FeedbackSummary, HEARD_WITHIN};
pub use history::{PacketResult, SendHistory};

#[cfg(test)]
mod tests;
