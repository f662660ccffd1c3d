//! The devtools methods behind `window.syncDebug`. They work only on an engine opened with
//! `debug: true`; otherwise they reject with `CONFIG`. None of them reveals the auth token.

use js_sys::{Promise, Reflect};
use wasm_bindgen::prelude::*;

use super::convert::to_js_or_undefined;
use super::engine::{promise, SyncEngine};
use crate::core::error::SyncError;

/// What `clearQueue` must be given, since it throws away writes the server has not seen.
pub const CLEAR_QUEUE_CONFIRMATION: &str = "discard pending writes";

fn number(v: &JsValue, key: &str) -> Result<Option<u32>, SyncError> {
    let x = Reflect::get(v, &key.into()).unwrap_or(JsValue::UNDEFINED);
    if x.is_undefined() {
        return Ok(None);
    }
    match x.as_f64() {
        Some(n) if n >= 0.0 && n <= f64::from(u32::MAX) && n.fract() == 0.0 => Ok(Some(n as u32)),
        _ => Err(SyncError::InvalidInput(format!("`{key}` must be a non-negative integer"))),
    }
}

#[wasm_bindgen]
impl SyncEngine {
    /// Injects faults into this client's requests (debug engines only):
    /// `{ offline?: boolean, failNext?: number, failStatus?: number, latencyMs?: number }`.
    /// Resolves to the faults now in force.
    #[wasm_bindgen(js_name = "setFaults", unchecked_return_type = "Promise<DebugFaults>")]
    pub fn set_faults(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Partial<DebugFaults>")] faults: JsValue,
    ) -> Promise {
        let parsed = (|| -> Result<_, SyncError> {
            if !faults.is_object() {
                return Err(SyncError::InvalidInput("setFaults takes an object".into()));
            }
            let offline = Reflect::get(&faults, &"offline".into()).ok().and_then(|v| v.as_bool());
            Ok((offline, number(&faults, "failNext")?, number(&faults, "failStatus")?, number(&faults, "latencyMs")?))
        })();
        promise(&self.inner, move |inner| async move {
            if !inner.debug {
                return Err(SyncError::Config("setFaults needs an engine opened with `debug: true`".into()));
            }
            let (offline, fail_next, fail_status, latency) = parsed?;
            let transport = inner.engine.transport();
            let mut f = transport.faults.borrow_mut();
            if let Some(o) = offline {
                // Like the browser going offline: flushes pause (no attempt counted) and status
                // says so, until `setFaults({offline: false})`.
                f.offline = o;
                let mut net = crate::web::env::net_info();
                net.online = net.online && !o;
                inner.engine.set_network(net);
                if !o {
                    inner.schedule(0);
                }
            }
            if let Some(n) = fail_next {
                f.fail_next = n;
            }
            if let Some(s) = fail_status {
                if !(100..=599).contains(&s) {
                    return Err(SyncError::InvalidInput("`failStatus` must be an HTTP status".into()));
                }
                f.fail_status = s as u16;
            }
            if let Some(l) = latency {
                f.latency_ms = l;
            }
            Ok(to_js_or_undefined(&*f))
        })
    }

    /// Discards every pending write (debug engines only). Pass the string
    /// `'discard pending writes'` to confirm. Resolves to how many were discarded.
    #[wasm_bindgen(js_name = "clearQueue", unchecked_return_type = "Promise<number>")]
    pub fn clear_queue(&self, confirm: Option<String>) -> Promise {
        promise(&self.inner, move |inner| async move {
            if !inner.debug {
                return Err(SyncError::Config("clearQueue needs an engine opened with `debug: true`".into()));
            }
            if confirm.as_deref() != Some(CLEAR_QUEUE_CONFIRMATION) {
                return Err(SyncError::InvalidInput(format!(
                    "clearQueue discards writes the server has not seen; confirm with clearQueue('{CLEAR_QUEUE_CONFIRMATION}')"
                )));
            }
            Ok(JsValue::from(inner.engine.clear_queue().await? as u32))
        })
    }

    /// Whether this engine was opened with `debug: true`.
    #[wasm_bindgen(getter)]
    pub fn debug(&self) -> bool {
        self.inner.debug
    }

    /// The number of HTTP requests this engine has sent.
    #[wasm_bindgen(getter, js_name = "requestCount")]
    pub fn request_count(&self) -> f64 {
        self.inner.engine.transport().requests.get() as f64
    }
}
