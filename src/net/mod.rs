//! Transports: the wire protocols (pure, tested natively) and `fetch` (browser only).

pub mod batch;
pub mod pull;
pub mod rest;
pub mod shape;

#[cfg(target_arch = "wasm32")]
pub mod fetch;
