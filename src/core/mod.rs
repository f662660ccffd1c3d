//! The engine: pure Rust, generic over the `Store`, `Transport` and `Clock` traits, so it runs
//! natively under `cargo test` with a simulated clock, store and network.

pub mod checksum;
pub mod engine;
pub mod error;
pub mod json;
pub mod merge;
pub mod metrics;
pub mod netpolicy;
pub mod op;

pub mod queue;
pub mod retry;
pub mod sha256;
pub mod sorted;
pub mod time;
pub mod traits;
pub mod value;

pub use engine::pull;
pub use error::{Result, SyncError};
