//! The JS API: one file per exported class, plus error and value conversion.

pub mod convert;
pub mod debug;
pub mod engine;
pub mod errors;

use wasm_bindgen::prelude::*;

/// Panics become readable console errors instead of "unreachable". Not in the size-optimised
/// release build, whose panics abort at once (`-Cpanic=immediate-abort`): the hook would never run.
#[cfg(not(panic = "immediate-abort"))]
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// Which build this is: offline apps can run a cached old one.
#[wasm_bindgen(js_name = "buildInfo", unchecked_return_type = "BuildInfo")]
pub fn build_info() -> JsValue {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct BuildInfo {
        version: &'static str,
        git_sha: &'static str,
        schema_version: u32,
    }
    convert::to_js_or_undefined(&BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        git_sha: option_env!("TIDESYNC_GIT_SHA").unwrap_or("unknown"),
        schema_version: crate::store::idb::SCHEMA_VERSION,
    })
}

/// The checksum tidesync stores for a record: SHA-256 (hex) of its canonical JSON (sorted keys,
/// no whitespace, one spelling per number). The server sees the same value in `checksum`.
#[wasm_bindgen]
pub fn checksum(#[wasm_bindgen(unchecked_param_type = "unknown")] value: JsValue) -> Result<String, JsValue> {
    let v: crate::core::value::Value =
        convert::from_js(value, "the value is not JSON-compatible").map_err(errors::js_error)?;
    Ok(crate::core::checksum::checksum(&v))
}
