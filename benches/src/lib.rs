//! Benchmarks.
//!
//! Criterion micro-benchmarks of the hot paths live in `benches/`; the comparison scripts in
//! `scripts/` drive the release binaries (`livekit-server`, `livekit-cli perf ...`, Janus, a
//! plain UDP relay). `ws-floor` (`src/bin/ws_floor.rs`) measures the floor under an idle
//! participant's signalling cost: a bare WebSocket server, or plain epoll, answering each
//! connection's message every few seconds.
