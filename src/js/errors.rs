//! `SyncError` at the JS boundary: a real `Error` with `name = "SyncError"`, a stable `code` and,
//! for HTTP errors, the `status`.

use js_sys::Reflect;
use wasm_bindgen::JsValue;

use crate::core::error::SyncError;

pub fn js_error(e: SyncError) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    err.set_name("SyncError");
    let _ = Reflect::set(&err, &"code".into(), &e.code().into());
    if let Some(status) = e.status() {
        let _ = Reflect::set(&err, &"status".into(), &status.into());
    }
    err.into()
}
