//! The engine: pure Rust, generic over the `Store`, `Transport` and `Clock` traits, so it runs
//! natively under `cargo test` with a simulated clock, store and network.

pub mod checksum;
