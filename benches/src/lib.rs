//! Benchmarks.
//!
//! Criterion micro-benchmarks of the hot paths live in `benches/`; the end-to-end
//! load and comparison harness will live here.
