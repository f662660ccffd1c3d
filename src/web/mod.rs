//! Browser glue shared by the store, the transport and the JS classes: timers, the clock,
//! `navigator.onLine`. Works the same in a page, a worker and a service worker (all through the
//! global object, never `window`).

pub mod env;
pub mod locks;

use js_sys::{Function, Promise, Reflect, JSON};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::core::traits::Clock;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    pub fn set_timeout(handler: &Function, ms: i32) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    pub fn clear_timeout(id: &JsValue);
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues)]
    fn get_random_values(buf: &mut [u8]);
    /// JS `String(f)`: a finite double as `JSON.stringify` spells it (`core::json` calls it for the
    /// numbers that are not small integers).
    #[wasm_bindgen(js_name = String)]
    pub fn number_to_string(f: f64) -> String;
}

/// Rust value -> plain JS value, through JSON text: one native `JSON.parse` instead of an object
/// built field by field across the boundary (and no second serde format in the wasm).
pub fn json_to_js<T: Serialize + ?Sized>(v: &T) -> Result<JsValue, String> {
    let text = crate::core::json::to_string(v).map_err(|e| e.to_string())?;
    JSON::parse(&text).map_err(|_| "JSON.parse refused it".into())
}

/// JS `parseFloat`: correctly rounded, and no float-parsing tables in the wasm (`core::json`'s
/// parser calls it for the numbers its exact fast path cannot read).
pub fn parse_float(text: &str) -> f64 {
    js_sys::parse_float(text)
}

#[wasm_bindgen(inline_js = r#"
export function canonicalDigits(x) {
  const s = String(x);
  let m = s.split('e')[0].replace('-', '').replace('.', '').replace(/^0+/, '');
  if (!s.includes('.')) m = m.replace(/0+$/, '');
  return x.toPrecision(Math.min(100, Math.max(1, m.length)));
}
"#)]
extern "C" {
    /// `f.toPrecision(n)` where `n` is the number of significant digits of `String(f)`: the shortest
    /// digits that read back as `f`, the nearest of them to it, ties away from zero (the checksum's
    /// spelling; `core::checksum`).
    #[wasm_bindgen(js_name = canonicalDigits)]
    pub fn shortest_nearest_digits(f: f64) -> String;
}

/// Resolves after `ms` milliseconds.
pub async fn sleep(ms: u64) {
    let p = Promise::new(&mut |resolve, _| {
        set_timeout(&resolve, ms.min(i32::MAX as u64) as i32);
    });
    let _ = JsFuture::from(p).await;
}

/// `navigator.onLine` (true where the browser does not say).
pub fn navigator_online() -> bool {
    Reflect::get(&js_sys::global(), &"navigator".into())
        .and_then(|n| Reflect::get(&n, &"onLine".into()))
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(true)
}

/// The real clock, and crypto randomness.
#[derive(Clone, Copy, Default)]
pub struct WebClock;

impl Clock for WebClock {
    fn now_ms(&self) -> u64 {
        js_sys::Date::now() as u64
    }

    fn sleep(&self, ms: u64) -> impl std::future::Future<Output = ()> {
        sleep(ms)
    }

    fn random_u64(&self) -> u64 {
        RANDOM.with(|pool| {
            let (bytes, used) = &mut *pool.borrow_mut();
            // One call across the boundary per 32 words (a putMany of 1,000 records takes 4,000).
            if *used + 8 > bytes.len() {
                get_random_values(bytes);
                *used = 0;
            }
            let word = u64::from_le_bytes(bytes[*used..*used + 8].try_into().unwrap_or_default());
            *used += 8;
            word
        })
    }
}

thread_local! {
    /// Crypto random bytes not handed out yet, and how many of them are.
    static RANDOM: std::cell::RefCell<([u8; 256], usize)> = const { std::cell::RefCell::new(([0; 256], 256)) };
}
