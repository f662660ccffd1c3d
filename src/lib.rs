//! tidesync: an offline-first sync engine for web apps.
//!
//! `core` is the engine in pure Rust (no browser bindings); `store`, `net`, `web` and `js` adapt it
//! to IndexedDB, `fetch`, the browser's events and JavaScript.

pub mod core;
pub mod net;
pub mod store;

#[cfg(target_arch = "wasm32")]
pub mod js;
#[cfg(target_arch = "wasm32")]
pub mod web;
