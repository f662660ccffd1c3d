//! Browser glue (wasm32 only).

use wasm_bindgen::prelude::*;

/// Crate version, for checking which build a cached offline app runs.
#[wasm_bindgen(js_name = "version")]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
