//! Implementations of the `Store` trait: in memory, and IndexedDB in the browser.

pub mod memory;

#[cfg(target_arch = "wasm32")]
pub mod idb;
