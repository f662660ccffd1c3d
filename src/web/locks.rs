//! One flusher at a time, across tabs, workers and the service worker: every flush runs inside
//! a Web Lock named after the database. The browser releases a lock when its holder's tab closes,
//! crashes or navigates away, so another context takes over without waiting for a timeout.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

fn lock_manager() -> Option<JsValue> {
    let nav = Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
    let locks = Reflect::get(&nav, &"locks".into()).ok()?;
    (!locks.is_undefined() && !locks.is_null()).then_some(locks)
}

/// Whether this context has Web Locks (all current browsers, in pages and workers).
pub fn available() -> bool {
    lock_manager().is_some()
}

/// Runs `f` while holding the exclusive lock `name`. With `wait == false` it gives up at once
/// (returning `None`) when another context holds the lock. Without Web Locks, `f` just runs.
pub async fn with_lock<F, Fut, T>(name: &str, wait: bool, f: F) -> Option<T>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    let Some(locks) = lock_manager() else { return Some(f().await) };
    let Ok(request) = Reflect::get(&locks, &"request".into()).and_then(|r| r.dyn_into::<Function>()) else {
        return Some(f().await);
    };

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
    if request.call3(&locks, &name.into(), &options, callback.as_ref()).is_err() {
        return Some(f().await);
    }
    let got = JsFuture::from(granted).await.ok().and_then(|v| v.as_bool()).unwrap_or(false);
    drop(callback);
    if !got {
        return None;
    }
    let out = f().await;
    if let Some(r) = release.borrow_mut().take() {
        let _ = r.call0(&JsValue::NULL);
    }
    Some(out)
}
