//! One flusher at a time, across tabs, workers and the service worker: every flush runs inside
//! a Web Lock named after the database. The browser releases a lock when its holder's tab closes,
//! crashes or navigates away, so another context takes over without waiting for a timeout.
//!
//! Where Web Locks are missing, a lease in the database's `meta` store does the same job: taken in
//! one IndexedDB transaction (`Lease::take`), renewed by a heartbeat while the flush runs, released
//! when the flush ends or the page goes away (`pagehide`). A holder that dies without releasing it
//! (a crash) is taken over once the lease expires, within `LEASE_TTL_MS`.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;

use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{spawn_local, JsFuture};

use super::{sleep, WebClock};
use crate::core::error::{Result, SyncError};
use crate::core::traits::Clock;
use crate::store::idb::IdbStore;

#[wasm_bindgen]
extern "C" {
    /// `setInterval(handler, ms, arg)`: calls `handler(arg)` every `ms`.
    #[wasm_bindgen(js_name = setInterval)]
    fn set_interval(handler: &Function, ms: i32, arg: bool) -> JsValue;
    #[wasm_bindgen(js_name = clearInterval)]
    fn clear_interval(id: &JsValue);
}

/// How long a lease lasts unless renewed, how often its holder renews it, and how often a waiting
/// context tries to take it.
const LEASE_TTL_MS: f64 = 10_000.0;
const LEASE_RENEW_MS: i32 = 3_000;
const LEASE_RETRY_MS: u64 = 250;

/// `navigator.locks` and its `request` method.
fn lock_manager() -> Option<(JsValue, Function)> {
    let nav = Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
    let locks = Reflect::get(&nav, &"locks".into()).ok().filter(|l| l.is_object())?;
    let request = Reflect::get(&locks, &"request".into()).ok()?.dyn_into::<Function>().ok()?;
    Some((locks, request))
}

/// Runs `f` while holding the exclusive lock `name` (a Web Lock, or else a lease in `store`). With
/// `wait == false` it gives up at once (resolving to `None`) when another context holds the lock.
pub async fn with_lock<F, Fut, T>(name: &str, store: &IdbStore, wait: bool, f: F) -> Result<Option<T>>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    // Only this part is generic: the rest is compiled once, whatever `f` is.
    let Some(_held) = acquire(name, store, wait).await? else { return Ok(None) };
    Ok(Some(f().await))
}

/// A lock we hold; dropping it releases it: `release(false)` resolves the promise a Web Lock's
/// callback returned, or releases our lease. A lease also has its heartbeat `interval` and `pagehide`
/// listener (both `release`) to stop. Nothing at all: unguarded (see `acquire`).
struct Held {
    release: Option<Function>,
    interval: JsValue,
    _tick: Option<Closure<dyn FnMut(JsValue)>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        clear_interval(&self.interval);
        if let Some(release) = &self.release {
            let _ = global().remove_event_listener_with_callback("pagehide", release);
            let _ = release.call1(&JsValue::NULL, &JsValue::FALSE);
        }
    }
}

fn global() -> web_sys::EventTarget {
    js_sys::global().unchecked_into()
}

thread_local! {
    /// Whether the page is going away: `pagehide` came and no `pageshow` since (`None`: not
    /// listening yet).
    static LEAVING: Cell<Option<bool>> = const { Cell::new(None) };
}

/// A page going away takes no lease: it could not release it (its `pagehide` has come and gone),
/// so a flush it starts now (`visibilitychange` fires after `pagehide`) would keep every other tab
/// waiting for the lease to expire.
fn leaving() -> bool {
    LEAVING.get().unwrap_or_else(|| {
        LEAVING.set(Some(false));
        let on = Closure::<dyn FnMut(web_sys::Event)>::new(|e: web_sys::Event| {
            LEAVING.set(Some(e.type_() == "pagehide"));
        });
        for event in ["pagehide", "pageshow"] {
            let _ = global().add_event_listener_with_callback(event, on.as_ref().unchecked_ref());
        }
        on.forget();
        false
    })
}

/// The lock `name`: a Web Lock where the browser has them, else a lease in `store`.
async fn acquire(name: &str, store: &IdbStore, wait: bool) -> Result<Option<Held>> {
    let Some(WebLockRequest { granted, release, _callback }) = request_web_lock(name, wait) else {
        return lease(store, wait).await;
    };
    let got = JsFuture::from(granted).await.ok().and_then(|v| v.as_bool()).unwrap_or(false);
    Ok(got.then(|| held(release.borrow_mut().take())))
}

/// A plain holder: released by `release` (a Web Lock) or by nothing (no lock could be kept).
fn held(release: Option<Function>) -> Held {
    Held { release, interval: JsValue::UNDEFINED, _tick: None }
}

/// A Web Lock asked for: `granted` resolves to whether we got it (false: another context holds it
/// and we did not wait); the lock is then held until `release` is called.
struct WebLockRequest {
    granted: Promise,
    release: Rc<RefCell<Option<Function>>>,
    /// Called by the browser once: kept alive until then.
    _callback: Closure<dyn FnMut(JsValue) -> JsValue>,
}

/// Asks for the Web Lock `name`; `None` where the browser has no Web Locks.
fn request_web_lock(name: &str, wait: bool) -> Option<WebLockRequest> {
    let (locks, request) = lock_manager()?;
    // `granted` settles when the browser calls our callback; the lock is held until `release`
    // resolves the promise that callback returned.
    let release: Rc<RefCell<Option<Function>>> = Rc::default();
    let granted_resolve: Rc<RefCell<Option<Function>>> = Rc::default();
    let granted = Promise::new(&mut |resolve, _| *granted_resolve.borrow_mut() = Some(resolve));
    let callback = Closure::once({
        let release = release.clone();
        move |lock: JsValue| -> JsValue {
            let got = !lock.is_null();
            if let Some(g) = granted_resolve.borrow_mut().take() {
                let _ = g.call1(&JsValue::NULL, &got.into());
            }
            if !got {
                return JsValue::UNDEFINED;
            }
            Promise::new(&mut |resolve, _| *release.borrow_mut() = Some(resolve)).into()
        }
    });
    let options = Object::new();
    let _ = Reflect::set(&options, &"ifAvailable".into(), &(!wait).into());
    let _ = Reflect::set(&options, &"mode".into(), &"exclusive".into());
    request.call3(&locks, &name.into(), &options, callback.as_ref()).ok()?;
    Some(WebLockRequest { granted, release, _callback: callback })
}

/// The lease in `store`, renewed while held, where the browser has no Web Locks.
async fn lease(store: &IdbStore, wait: bool) -> Result<Option<Held>> {
    // The lease. Each acquisition is its own holder (53 random bits: exact as a JS number), as each
    // Web Lock request is: two engines in one tab exclude each other too.
    let lease = store.lease();
    let holder = (WebClock.random_u64() >> 11) as f64;
    let expires = loop {
        if leaving() {
            return Ok(None);
        }
        let expires = js_sys::Date::now() + LEASE_TTL_MS;
        match lease.take(holder, expires).await {
            Ok(true) => break expires,
            Ok(false) if wait => sleep(LEASE_RETRY_MS).await,
            Ok(false) => return Ok(None),
            // A full disk refuses even the lease record, and flushing is what frees space: run
            // unguarded (the server applies each op id once, so an overlap repeats no write).
            Err(SyncError::QuotaExceeded(_)) => return Ok(Some(held(None))),
            Err(e) => return Err(e),
        }
    };
    // Until when the lease is surely ours (0 once released). `tick(true)` renews it: the heartbeat.
    // Anything else releases it: the drop, and `pagehide` (a closing tab). Only a lease still ours
    // is deleted; one that expired (a holder frozen past the TTL) may be someone else's by now, and
    // is free for the taking anyway.
    let ours = Rc::new(Cell::new(expires));
    let tick = Closure::<dyn FnMut(JsValue)>::new(move |renew: JsValue| {
        if renew.as_bool() != Some(true) {
            if js_sys::Date::now() < ours.replace(0.0) {
                lease.drop_now();
            }
            return;
        }
        let (lease, ours) = (lease.clone(), ours.clone());
        spawn_local(async move {
            let expires = js_sys::Date::now() + LEASE_TTL_MS;
            if ours.get() > 0.0 && lease.take(holder, expires).await == Ok(true) {
                ours.set(expires);
            }
        });
    });
    let release: &Function = tick.as_ref().unchecked_ref();
    let interval = set_interval(release, LEASE_RENEW_MS, true);
    let _ = global().add_event_listener_with_callback("pagehide", release);
    Ok(Some(Held { release: Some(release.clone()), interval, _tick: Some(tick) }))
}
