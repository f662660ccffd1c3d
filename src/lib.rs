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

/// Talc instead of Rust's default wasm allocator (dlmalloc): about half its size in the wasm, and
/// faster. Single-threaded wasm only (tidesync uses no wasm threads).
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
