//! What the browser says about the network and storage, and Background Sync registration.
//! Everything is looked up on the global object, so it works in pages, workers and service
//! workers alike, and degrades to "unknown" where an API is missing.

use js_sys::{Function, Promise, Reflect};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::navigator_online;
use crate::core::netpolicy::NetInfo;

fn get(v: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(v, &key.into()).ok().filter(|x| !x.is_undefined() && !x.is_null())
}

pub fn navigator() -> Option<JsValue> {
    get(&js_sys::global(), "navigator")
}

/// `navigator.connection`, where the Network Information API exists.
pub fn connection() -> Option<JsValue> {
    get(&navigator()?, "connection")
}

/// `navigator.onLine` plus `navigator.connection`'s effectiveType, rtt, downlink and saveData.
pub fn net_info() -> NetInfo {
    let mut info = NetInfo { online: navigator_online(), ..NetInfo::default() };
    if let Some(c) = connection() {
        info.effective_type = get(&c, "effectiveType").and_then(|v| v.as_string());
        info.rtt_ms = get(&c, "rtt").and_then(|v| v.as_f64());
        info.downlink_mbps = get(&c, "downlink").and_then(|v| v.as_f64());
        info.save_data = get(&c, "saveData").and_then(|v| v.as_bool()).unwrap_or(false);
    }
    info
}

async fn call_promise(target: &JsValue, method: &str) -> Option<JsValue> {
    let f: Function = get(target, method)?.dyn_into().ok()?;
    let p: Promise = f.call0(target).ok()?.dyn_into().ok()?;
    JsFuture::from(p).await.ok()
}

/// Asks the browser not to evict our data under storage pressure. Resolves to whether it agreed.
pub async fn persist_storage() -> bool {
    let Some(storage) = navigator().and_then(|n| get(&n, "storage")) else { return false };
    if call_promise(&storage, "persisted").await.and_then(|v| v.as_bool()) == Some(true) {
        return true;
    }
    call_promise(&storage, "persist").await.and_then(|v| v.as_bool()).unwrap_or(false)
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageEstimate {
    pub usage: Option<f64>,
    pub quota: Option<f64>,
    pub persisted: Option<bool>,
}

/// `navigator.storage.estimate()` and `persisted()`, where they exist.
pub async fn storage_estimate() -> StorageEstimate {
    let Some(storage) = navigator().and_then(|n| get(&n, "storage")) else { return StorageEstimate::default() };
    let est = call_promise(&storage, "estimate").await;
    StorageEstimate {
        usage: est.as_ref().and_then(|e| get(e, "usage")).and_then(|v| v.as_f64()),
        quota: est.as_ref().and_then(|e| get(e, "quota")).and_then(|v| v.as_f64()),
        persisted: call_promise(&storage, "persisted").await.and_then(|v| v.as_bool()),
    }
}

/// Registers a Background Sync tag with the page's service worker, so the worker drains the
/// queue even after the page is gone. Resolves to whether it was registered (false where there is
/// no service worker or no Background Sync: the page's own triggers then do the work).
pub async fn register_background_sync(tag: &str) -> bool {
    let Some(sw) = navigator().and_then(|n| get(&n, "serviceWorker")) else { return false };
    // Only when a worker controls this page: `ready` would otherwise wait forever.
    if get(&sw, "controller").is_none() {
        return false;
    }
    let Some(ready) = get(&sw, "ready").and_then(|r| r.dyn_into::<Promise>().ok()) else { return false };
    let Ok(reg) = JsFuture::from(ready).await else { return false };
    let Some(sync) = get(&reg, "sync") else { return false };
    let Some(register) = get(&sync, "register").and_then(|f| f.dyn_into::<Function>().ok()) else { return false };
    let Ok(p) = register.call1(&sync, &tag.into()) else { return false };
    match p.dyn_into::<Promise>() {
        Ok(p) => JsFuture::from(p).await.is_ok(),
        Err(_) => false,
    }
}

/// Whether this code runs in a page (a `document` exists), as opposed to a worker.
pub fn in_page() -> bool {
    get(&js_sys::global(), "document").is_some()
}
