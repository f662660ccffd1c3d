//! `SyncEngine`, the class apps use.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{future_to_promise, spawn_local};

use super::convert::{open_options, record, to_js_or_undefined, OpenOptions};
use super::errors;
use crate::core::engine::{Choice, Engine, Event};
use crate::core::error::{Result, SyncError};
use crate::core::op::{Entity, Priority};
use crate::core::value::Value;
use crate::net::fetch::FetchTransport;
use crate::store::idb::IdbStore;
use crate::web::env::{in_page, net_info, persist_storage, register_background_sync, storage_estimate};
use crate::web::locks::with_lock;
use crate::web::{clear_timeout, set_timeout, WebClock};

/// The BroadcastChannel the tabs of one database tell each other what changed on.
fn channel_name(db_name: &str) -> String {
    format!("{db_name}#events")
}

pub(crate) type WebEngine = Engine<IdbStore, FetchTransport, WebClock>;

/// A JS callback we keep alive while it is registered.
type Callback = Closure<dyn FnMut()>;
type MessageCallback = Closure<dyn FnMut(web_sys::MessageEvent)>;

/// The pending flush timer: when it fires, the `setTimeout` id, and its callback.
struct Timer {
    due: u64,
    id: JsValue,
    _callback: Callback,
}

pub(crate) struct Inner {
    pub(crate) engine: WebEngine,
    listeners: RefCell<Vec<(u32, Function)>>,
    next_listener: Cell<u32>,
    auto_sync: bool,
    /// Opened with `debug: true`: the devtools methods work.
    pub(crate) debug: bool,
    timer: RefCell<Option<Timer>>,
    /// Browser event listeners (`online`, `offline`, `visibilitychange`, connection `change`),
    /// removed on close.
    dom_listeners: RefCell<Vec<(web_sys::EventTarget, &'static str, Callback)>>,
    /// The database's name: also the name of its flush lock, its channel and its sync tag.
    db_name: String,
    /// Tells the other tabs what changed here, and hears what changed there.
    channel: Option<web_sys::BroadcastChannel>,
    _channel_listener: RefCell<Option<MessageCallback>>,
    /// A Background Sync tag is registered for the current pending writes.
    background_sync_registered: Cell<bool>,
    /// Flushes of this tab running now (a round, or `flush()`; two only where the lease was taken
    /// unguarded).
    round_running: Cell<u32>,
    /// The earliest flush asked for (`schedule`) while it was: the flush may have read the queue
    /// before that write, so the next one follows when it ends.
    asked_during_round: Cell<Option<u64>>,
    /// A push channel (`realtime.js`, in this tab or another) is open: it pulls when the server
    /// says something changed, so the background rounds only push.
    live: Cell<bool>,
}

/// The sync engine: records in IndexedDB, writes queued and pushed to your backend.
///
/// ```ts
/// const engine = await SyncEngine.open({
///   name: 'study', userId: 'u1', baseUrl: 'https://api.example.com',
///   collections: { progress: { endpoint: '/api/progress', merge: { default: 'lww', fields: { xp: 'sum' } } } },
/// });
/// await engine.put('progress', 'card-1', { grade: 3 }, { priority: 'high' });
/// ```
#[wasm_bindgen]
pub struct SyncEngine {
    pub(crate) inner: Rc<Inner>,
}

/// Runs `f` on the engine and turns its result into a Promise; events are delivered after.
pub(crate) fn promise<F, Fut>(inner: &Rc<Inner>, f: F) -> Promise
where
    F: FnOnce(Rc<Inner>) -> Fut + 'static,
    Fut: Future<Output = Result<JsValue>> + 'static,
{
    // `f` only builds the future; nothing runs before the promise is polled.
    settle(inner.clone(), Box::pin(f(inner.clone())))
}

/// The part of every method's promise that is the same for all of them: one instance, not one per
/// method (each was a few hundred bytes of wasm).
fn settle(inner: Rc<Inner>, work: Pin<Box<dyn Future<Output = Result<JsValue>>>>) -> Promise {
    future_to_promise(async move {
        let r = work.await;
        if let Err(e @ SyncError::QuotaExceeded(_)) = &r {
            // The caller gets the error; subscribers (a storage warning in the UI) hear of it too.
            inner.engine.report(e);
        }
        inner.dispatch();
        // A read met a damaged record the server has to restore: a sync round (push, then pull)
        // fetches it now rather than at the next interval.
        if inner.auto_sync && inner.engine.take_repair_request() {
            inner.schedule(0);
        }
        r.map_err(errors::js_error)
    })
}

fn priority_of(options: &JsValue) -> Result<Option<Priority>> {
    if options.is_undefined() || options.is_null() {
        return Ok(None);
    }
    let p = js_sys::Reflect::get(options, &"priority".into()).unwrap_or(JsValue::UNDEFINED);
    match p.as_string() {
        None if p.is_undefined() => Ok(None),
        Some(s) => Priority::parse(&s)
            .map(Some)
            .ok_or_else(|| SyncError::InvalidInput(format!("priority '{s}' (expected high, medium or low)"))),
        None => Err(SyncError::InvalidInput("priority must be 'high', 'medium' or 'low'".into())),
    }
}

fn entity_js(e: Option<Entity>) -> JsValue {
    match e {
        Some(e) if !e.is_deleted() => to_js_or_undefined(&RecordView::from(e)),
        _ => JsValue::UNDEFINED,
    }
}

/// What JS sees of a record.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct RecordView {
    collection: String,
    id: String,
    data: Option<Value>,
    version: Option<u64>,
    sync_status: crate::core::op::SyncStatus,
    last_modified: u64,
}

impl From<Entity> for RecordView {
    fn from(e: Entity) -> Self {
        RecordView {
            collection: e.collection,
            id: e.id,
            data: e.data,
            version: e.version,
            sync_status: e.sync_status,
            last_modified: e.last_modified,
        }
    }
}

/// Wraps the app's `resolve(base, local, server)`: an object is the merged record, `undefined`
/// leaves the conflict to the app's queue, a throw (or anything else) fails the resolution.
fn resolver(f: Function) -> crate::core::engine::Resolver {
    Rc::new(move |base, local, server| {
        let arg = |v: Option<&Value>| v.map_or(JsValue::NULL, to_js_or_undefined);
        let out = f.call3(&JsValue::NULL, &arg(base), &arg(local), &arg(server)).map_err(|e| {
            e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())).unwrap_or_else(|| "it threw".into())
        })?;
        if out.is_undefined() {
            return Ok(None);
        }
        match record(out) {
            Ok(v) => Ok(Some(v)),
            Err(_) => Err("it must return the merged record (a plain object) or undefined".into()),
        }
    })
}

impl SyncEngine {
    /// Opens the engine (the Rust twin of the JS `open`).
    pub async fn open_with(options: OpenOptions) -> Result<SyncEngine> {
        let weak: Rc<RefCell<Weak<Inner>>> = Rc::new(RefCell::new(Weak::new()));
        let on_closed = {
            let weak = weak.clone();
            Closure::<dyn FnMut()>::new(move || {
                if let Some(inner) = weak.borrow().upgrade() {
                    inner.engine.close();
                    inner.emit_js("closed", "a newer version of this app opened the database in another tab");
                }
            })
            .into_js_value()
        };
        let on_blocked = {
            let weak = weak.clone();
            Closure::<dyn FnMut()>::new(move || {
                if let Some(inner) = weak.borrow().upgrade() {
                    inner.emit_js("blocked", "an older tab keeps the database open; close it to finish the upgrade");
                }
            })
            .into_js_value()
        };
        let store =
            IdbStore::open(&options.db_name, &options.options, on_closed.unchecked_into(), on_blocked.unchecked_into())
                .await?;
        let transport = FetchTransport::new(
            &options.base_url,
            &options.batch_endpoint,
            options.wires,
            options.timeout_ms,
            options.auth,
        );
        let engine = Engine::open(store, transport, WebClock, options.engine).await?;
        // Pulls carry `X-Device-ID` too, as every request does.
        *engine.transport().device_id.borrow_mut() = engine.device_id().to_string();
        for (collection, f) in options.resolvers {
            engine.set_resolver(&collection, resolver(f));
        }
        engine.set_network(net_info());
        let inner = Rc::new(Inner {
            engine,
            listeners: RefCell::new(Vec::new()),
            next_listener: Cell::new(1),
            auto_sync: options.auto_sync,
            debug: options.debug,
            timer: RefCell::new(None),
            dom_listeners: RefCell::new(Vec::new()),
            // Not the database's own name, which older builds used with one event per message: a
            // message now carries an array of events, and a tab of an older build must not misread it.
            channel: web_sys::BroadcastChannel::new(&channel_name(&options.db_name)).ok(),
            db_name: options.db_name,
            _channel_listener: RefCell::new(None),
            background_sync_registered: Cell::new(false),
            round_running: Cell::new(0),
            asked_during_round: Cell::new(None),
            live: Cell::new(false),
        });
        *weak.borrow_mut() = Rc::downgrade(&inner);
        // A pull or flush that stores its work in parts has each part's events delivered as soon
        // as it is stored, not all at once when it returns.
        let parts = Rc::downgrade(&inner);
        inner.engine.on_events(Box::new(move || {
            if let Some(inner) = parts.upgrade() {
                inner.dispatch();
            }
        }));
        inner.listen_channel();
        if inner.auto_sync {
            inner.listen_browser();
            inner.schedule(0);
            if in_page() {
                spawn_local(async {
                    persist_storage().await;
                });
            }
        }
        Ok(SyncEngine { inner })
    }
}

#[wasm_bindgen]
impl SyncEngine {
    /// Opens (or creates) the database `tidesync:{name}:{userId}` and starts syncing.
    /// Rejects with a `SyncError` (`CONFIG`, `STORAGE`, ...) when it cannot.
    #[wasm_bindgen(js_name = "open")]
    pub async fn open_js(options: JsValue) -> std::result::Result<SyncEngine, JsValue> {
        let options = open_options(options).map_err(errors::js_error)?;
        SyncEngine::open_with(options).await.map_err(errors::js_error)
    }

    /// Stores `data` as the record `collection/id` (replacing it) and queues it for the server.
    /// Resolves to the stored record. `options.priority`: `'high'` syncs now, `'medium'` with the
    /// next batch, `'low'` in the background.
    #[wasm_bindgen(unchecked_return_type = "Promise<SyncRecord>")]
    pub fn put(&self, collection: String, id: String, data: JsValue, options: JsValue) -> Promise {
        let args = record(data).and_then(|d| Ok((d, priority_of(&options)?)));
        promise(&self.inner, move |inner| async move {
            let (data, priority) = args?;
            let e = inner.engine.put(&collection, &id, data, priority).await?;
            inner.after_write(inner.engine.flush_delay(&collection, priority));
            Ok(entity_js(e))
        })
    }

    /// Like `put`, with the record given as JSON text (saves converting a string you already have).
    #[wasm_bindgen(js_name = "putJson", unchecked_return_type = "Promise<SyncRecord>")]
    pub fn put_json(&self, collection: String, id: String, json: String, options: JsValue) -> Promise {
        let args = crate::core::json::parse_nested(&json, crate::core::json::RECORD_DEPTH, 0)
            .map_err(|e| SyncError::InvalidInput(format!("not JSON: {e}")))
            .and_then(|d| Ok((d, priority_of(&options)?)));
        promise(&self.inner, move |inner| async move {
            let (data, priority) = args?;
            let e = inner.engine.put(&collection, &id, data, priority).await?;
            inner.after_write(inner.engine.flush_delay(&collection, priority));
            Ok(entity_js(e))
        })
    }

    /// Puts many records in ONE IndexedDB transaction: all are stored, or none (the promise rejects).
    /// `records` is an array of `{ id, data }`. Resolves to the stored records, in order.
    #[wasm_bindgen(js_name = "putMany", unchecked_return_type = "Promise<SyncRecord[]>")]
    pub fn put_many(&self, collection: String, records: JsValue, options: JsValue) -> Promise {
        let args = crate::js::convert::records_text(&records).and_then(|r| Ok((r, priority_of(&options)?)));
        promise(&self.inner, move |inner| async move {
            let (texts, priority) = args?;
            let records = crate::js::convert::parse_records(texts)?;
            let stored = inner.engine.put_many(&collection, records, priority).await?;
            inner.after_write(inner.engine.flush_delay(&collection, priority));
            // One JSON text, one JSON.parse (as `list`): not a conversion per record.
            let records: Vec<RecordView> =
                stored.into_iter().flatten().filter(|e| !e.is_deleted()).map(RecordView::from).collect();
            Ok(to_js_or_undefined(&records))
        })
    }

    /// Merges `fields` into the record (a `null` field is removed). Rejects with `NOT_FOUND`
    /// if the record does not exist.
    #[wasm_bindgen(unchecked_return_type = "Promise<SyncRecord>")]
    pub fn patch(&self, collection: String, id: String, fields: JsValue, options: JsValue) -> Promise {
        let args = record(fields).and_then(|d| Ok((d, priority_of(&options)?)));
        promise(&self.inner, move |inner| async move {
            let (fields, priority) = args?;
            let e = inner.engine.patch(&collection, &id, fields, priority).await?;
            inner.after_write(inner.engine.flush_delay(&collection, priority));
            Ok(entity_js(e))
        })
    }

    /// Deletes the record. Resolves to `false` if there was none.
    #[wasm_bindgen(unchecked_return_type = "Promise<boolean>")]
    pub fn delete(&self, collection: String, id: String, options: JsValue) -> Promise {
        let priority = priority_of(&options);
        promise(&self.inner, move |inner| async move {
            let priority = priority?;
            let existed = inner.engine.delete(&collection, &id, priority).await?;
            inner.after_write(inner.engine.flush_delay(&collection, priority));
            Ok(existed.into())
        })
    }

    /// The record's data, or `undefined`.
    #[wasm_bindgen(unchecked_return_type = "Promise<Record<string, unknown> | undefined>")]
    pub fn get(&self, collection: String, id: String) -> Promise {
        promise(&self.inner, move |inner| async move {
            Ok(inner.engine.get(&collection, &id).await?.map_or(JsValue::UNDEFINED, |v| to_js_or_undefined(&v)))
        })
    }

    /// The record with its sync state, or `undefined`.
    #[wasm_bindgen(js_name = "getRecord", unchecked_return_type = "Promise<SyncRecord | undefined>")]
    pub fn get_record(&self, collection: String, id: String) -> Promise {
        promise(&self.inner, move |inner| async move { Ok(entity_js(inner.engine.record(&collection, &id).await?)) })
    }

    /// Every record of the collection, ordered by id.
    #[wasm_bindgen(unchecked_return_type = "Promise<SyncRecord[]>")]
    pub fn list(&self, collection: String) -> Promise {
        promise(&self.inner, move |inner| async move {
            let mut records = inner.engine.list(&collection).await?.into_iter().map(RecordView::from);
            // Handed over 2,000 to a task: 10,000 records in one piece took ~40 ms of the main thread.
            let mut out = js_sys::Array::new();
            loop {
                let part: Vec<RecordView> = records.by_ref().take(2_000).collect();
                if part.is_empty() {
                    return Ok(out.into());
                }
                if out.length() > 0 {
                    crate::web::sleep(0).await;
                }
                let part = to_js_or_undefined(&part);
                if part.is_undefined() {
                    return Err(SyncError::Storage("the records could not be handed over".into()));
                }
                out = out.concat(part.unchecked_ref::<js_sys::Array>());
            }
        })
    }

    /// Sends every due write now. Resolves to what was done.
    #[wasm_bindgen(unchecked_return_type = "Promise<FlushReport>")]
    pub fn flush(&self) -> Promise {
        promise(&self.inner, move |inner| async move {
            // Waits for another tab's flush to finish rather than racing it.
            let report =
                with_lock(&inner.lock_name(), inner.engine.store(), true, || inner.flushing(inner.engine.flush()))
                    .await?
                    .unwrap_or(Err(SyncError::Closed));
            // A flush that failed has no `sync` event to plan the next one from (`after_flush`).
            if report.is_err() {
                inner.follow_round(None);
            }
            let report = report?;
            Ok(to_js_or_undefined(&report))
        })
    }

    /// Fetches the server's changes (of one collection, or of all) and merges them in.
    #[wasm_bindgen(unchecked_return_type = "Promise<PullReport>")]
    pub fn pull(&self, collection: Option<String>) -> Promise {
        promise(&self.inner, move |inner| async move {
            Ok(to_js_or_undefined(&inner.engine.pull(collection.as_deref()).await?))
        })
    }

    /// Pending, conflict and dead-letter counts, network and breaker state.
    #[wasm_bindgen(unchecked_return_type = "Promise<SyncStatus>")]
    pub fn status(&self) -> Promise {
        promise(&self.inner, move |inner| async move {
            let status = to_js_or_undefined(&inner.engine.status().await?);
            let _ = js_sys::Reflect::set(&status, &"storage".into(), &to_js_or_undefined(&storage_estimate().await));
            Ok(status)
        })
    }

    /// Counters, latency and the retry histogram.
    #[wasm_bindgen(unchecked_return_type = "Promise<SyncMetrics>")]
    pub fn metrics(&self) -> Promise {
        promise(&self.inner, move |inner| async move { Ok(to_js_or_undefined(&inner.engine.metrics().await?)) })
    }

    /// Ops waiting for the server, in send order.
    #[wasm_bindgen(unchecked_return_type = "Promise<PendingOp[]>")]
    pub fn queue(&self) -> Promise {
        promise(&self.inner, move |inner| async move { Ok(to_js_or_undefined(&inner.engine.queue().await?)) })
    }

    #[wasm_bindgen(js_name = "deadLetters", unchecked_return_type = "Promise<DeadLetter[]>")]
    pub fn dead_letters(&self) -> Promise {
        promise(&self.inner, move |inner| async move { Ok(to_js_or_undefined(&inner.engine.dead_letters().await?)) })
    }

    /// Puts a dead-lettered write back in its queue with a fresh attempt count.
    #[wasm_bindgen(js_name = "retryDeadLetter", unchecked_return_type = "Promise<void>")]
    pub fn retry_dead_letter(&self, op_id: String) -> Promise {
        promise(&self.inner, move |inner| async move {
            inner.engine.retry_dead_letter(&op_id).await?;
            inner.after_write(0);
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Drops a dead-lettered write for good.
    #[wasm_bindgen(js_name = "discardDeadLetter", unchecked_return_type = "Promise<void>")]
    pub fn discard_dead_letter(&self, op_id: String) -> Promise {
        promise(&self.inner, move |inner| async move {
            inner.engine.discard_dead_letter(&op_id).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Conflicts waiting for the app (collections whose merge policy is `manual`).
    #[wasm_bindgen(unchecked_return_type = "Promise<SyncConflict[]>")]
    pub fn conflicts(&self) -> Promise {
        promise(&self.inner, move |inner| async move { Ok(to_js_or_undefined(&inner.engine.conflicts().await?)) })
    }

    /// Resolves a conflict with `'local'`, `'server'` or a merged record, and resumes syncing it.
    #[wasm_bindgen(js_name = "resolveConflict", unchecked_return_type = "Promise<SyncRecord | undefined>")]
    pub fn resolve_conflict(
        &self,
        conflict_id: String,
        #[wasm_bindgen(unchecked_param_type = "'local' | 'server' | Record<string, unknown>")] choice: JsValue,
    ) -> Promise {
        let choice = match choice.as_string().as_deref() {
            Some("local") => Ok(Choice::Local),
            Some("server") => Ok(Choice::Server),
            Some(other) => {
                Err(SyncError::InvalidInput(format!("choice '{other}' (expected 'local', 'server' or a record)")))
            }
            None => record(choice).map(Choice::Merged),
        };
        promise(&self.inner, move |inner| async move {
            let e = inner.engine.resolve_conflict(&conflict_id, choice?).await?;
            inner.after_write(0);
            Ok(entity_js(e))
        })
    }

    /// The last automatic and manual conflict resolutions, oldest first.
    #[wasm_bindgen(js_name = "auditLog", unchecked_return_type = "AuditEntry[]")]
    pub fn audit_log(&self) -> JsValue {
        to_js_or_undefined(&self.inner.engine.audit_log())
    }

    /// Calls `listener` with every `SyncEvent`; returns a function that unsubscribes.
    /// Works with React's `useSyncExternalStore`.
    #[wasm_bindgen(unchecked_return_type = "() => void")]
    pub fn subscribe(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(event: SyncEvent) => void")] listener: Function,
    ) -> JsValue {
        let id = self.inner.next_listener.get();
        self.inner.next_listener.set(id + 1);
        self.inner.listeners.borrow_mut().push((id, listener));
        let weak = Rc::downgrade(&self.inner);
        Closure::<dyn FnMut()>::new(move || {
            if let Some(inner) = weak.upgrade() {
                inner.listeners.borrow_mut().retain(|(i, _)| *i != id);
            }
        })
        .into_js_value()
    }

    /// Whether a push channel is open (set by `realtime.js`): while it is, the background rounds
    /// push but do not poll. While it is down they poll again at the interval (not at once: a
    /// server restart would make every device poll together).
    #[wasm_bindgen(js_name = "setLive", skip_typescript)]
    pub fn set_live(&self, on: bool) {
        self.inner.live.set(on);
    }

    /// The IndexedDB database (`query.js` reads the query indexes through it; nothing writes).
    #[wasm_bindgen(getter, skip_typescript)]
    pub fn database(&self) -> JsValue {
        self.inner.engine.store().handle()
    }

    /// This device's id (sent as `X-Device-ID`).
    #[wasm_bindgen(getter, js_name = "deviceId")]
    pub fn device_id(&self) -> String {
        self.inner.engine.device_id().to_string()
    }

    /// Stops syncing and closes the database. Later calls reject with `CLOSED`.
    pub fn close(&self) {
        self.inner.shutdown();
    }
}

impl Inner {
    /// Delivers queued events to the listeners. Runs after the engine call returned, or between
    /// the parts a pull or flush stores, with no engine state borrowed; a listener that throws is
    /// reported and the others still run.
    pub(crate) fn dispatch(self: &Rc<Self>) {
        let events = self.engine.take_events();
        if events.is_empty() {
            return;
        }
        for e in &events {
            if let Event::Sync { report } = e {
                self.after_flush(report);
            }
        }
        // Every event in one conversion (a flush of 10,000 ops makes 10,000 `change` events); one
        // by one only if that fails, so one event that cannot be converted loses no other.
        let all = to_js_or_undefined(&events);
        let js: Vec<JsValue> = if js_sys::Array::is_array(&all) {
            all.unchecked_into::<js_sys::Array>().iter().collect()
        } else {
            events.iter().map(to_js_or_undefined).collect()
        };
        // Other tabs first (before a listener can change an event, or close the engine), in one
        // message: an array of events. They hear about changes to shared records; errors are ours.
        if let Some(ch) = &self.channel {
            let shared: js_sys::Array = events
                .iter()
                .zip(&js)
                .filter(|(e, js)| !matches!(e, Event::Error { .. }) && !js.is_undefined())
                .map(|(_, js)| js)
                .collect();
            if shared.length() > 0 {
                let _ = ch.post_message(&shared);
            }
        }
        self.notify(js.iter().filter(|js| !js.is_undefined()));
    }

    fn emit_js(&self, kind: &str, message: &str) {
        let ev = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&ev, &"type".into(), &kind.into());
        let _ = js_sys::Reflect::set(&ev, &"message".into(), &message.into());
        self.notify(std::iter::once(&ev.into()));
    }

    /// Calls every listener with each event. The listeners are copied first: one may subscribe or
    /// unsubscribe while it runs. One that throws is logged; the others still hear the event.
    fn notify<'a>(&self, events: impl Iterator<Item = &'a JsValue>) {
        let listeners: Vec<Function> = self.listeners.borrow().iter().map(|(_, f)| f.clone()).collect();
        for ev in events {
            for f in &listeners {
                if let Err(err) = f.call1(&JsValue::NULL, ev) {
                    web_sys::console::error_2(&"tidesync: a subscriber threw".into(), &err);
                }
            }
        }
    }

    /// After a write: registers the Background Sync tag, and schedules a flush in `delay_ms`.
    fn after_write(self: &Rc<Self>, delay_ms: u64) {
        if !self.auto_sync {
            return;
        }
        if !self.background_sync_registered.replace(true) {
            let tag = self.sync_tag();
            spawn_local(async move {
                register_background_sync(&tag).await;
            });
        }
        self.schedule(delay_ms);
    }

    fn after_flush(self: &Rc<Self>, report: &crate::core::engine::FlushReport) {
        if report.remaining == 0 {
            self.background_sync_registered.set(false);
        }
        if !self.auto_sync {
            return;
        }
        self.follow_round(self.engine.next_flush_in(report, js_sys::Date::now() as u64));
    }

    /// Runs `work` as a flush of this tab: a flush asked for meanwhile is remembered
    /// (`asked_during_round`), since `work` may have read the queue before that write.
    async fn flushing<T>(&self, work: impl Future<Output = T>) -> T {
        self.round_running.set(self.round_running.get() + 1);
        let out = work.await;
        self.round_running.set(self.round_running.get() - 1);
        out
    }

    /// Plans the next flush once one of this tab's ended: in `delay` ms, or sooner if a flush was
    /// asked for while it ran.
    fn follow_round(self: &Rc<Self>, delay: Option<u64>) {
        let asked = self.asked_during_round.take().map(|t| t.saturating_sub(js_sys::Date::now() as u64));
        if let Some(delay) = delay.into_iter().chain(asked).min() {
            self.schedule(delay);
        }
    }

    /// Remembers a flush asked for at `due` while this tab flushes (see `follow_round`).
    fn ask_after_round(&self, due: u64) {
        if self.round_running.get() > 0 {
            self.asked_during_round.set(Some(self.asked_during_round.get().map_or(due, |t| t.min(due))));
        }
    }

    /// Arranges a flush in `delay_ms`, unless one is already due sooner.
    pub(crate) fn schedule(self: &Rc<Self>, delay_ms: u64) {
        if self.engine.is_closed() {
            return;
        }
        let due = js_sys::Date::now() as u64 + delay_ms;
        self.ask_after_round(due);
        if self.timer.borrow().as_ref().is_some_and(|t| t.due <= due) {
            return;
        }
        if let Some(t) = self.timer.borrow_mut().take() {
            clear_timeout(&t.id);
        }
        let weak = Rc::downgrade(self);
        let cb = Closure::<dyn FnMut()>::new(move || {
            let Some(inner) = weak.upgrade() else { return };
            // Take the timer out first: the flush may schedule the next one.
            let fired = inner.timer.borrow_mut().take();
            spawn_local(async move {
                let _keep_alive = fired;
                inner.sync_tick().await;
            });
        });
        let id = set_timeout(cb.as_ref().unchecked_ref(), delay_ms.min(i32::MAX as u64) as i32);
        *self.timer.borrow_mut() = Some(Timer { due, id, _callback: cb });
    }

    /// One background round: push what is due, pull what changed, and plan the next round.
    async fn sync_tick(self: &Rc<Self>) {
        let me = self.clone();
        // Another tab (or the service worker) flushing right now has it covered.
        let locked = with_lock(&self.lock_name(), self.engine.store(), false, || async move {
            me.flushing(async {
                let flushed = me.engine.flush().await;
                if flushed.as_ref().is_ok_and(|r| !r.offline) && !me.live.get() {
                    if let Err(e) = me.engine.pull(None).await {
                        me.engine.report(&e);
                    }
                }
            })
            .await
        })
        .await;
        let ran = matches!(locked, Ok(Some(())));
        match locked {
            Ok(_) | Err(SyncError::Closed) => {}
            Err(e) => self.engine.report(&e),
        }
        self.dispatch();
        if !self.engine.is_closed() {
            let interval = self.engine.network().interval_ms;
            if ran {
                // A write made while the round ran had its timer fire into the lock this round held,
                // and the round's flush may have read the queue before it: it is due now.
                self.follow_round(Some(interval));
            } else {
                // The lock's holder (a round of this tab, or another tab) plans what comes after it.
                self.schedule(interval);
            }
        }
    }

    /// What the browser says about the network, unless the debug tools made us offline.
    fn net_info(&self) -> crate::core::netpolicy::NetInfo {
        let mut net = net_info();
        net.online = net.online && !self.engine.transport().faults.borrow().offline;
        net
    }

    /// The Web Lock one tab holds while it flushes.
    pub(crate) fn lock_name(&self) -> String {
        format!("{}:flush", self.db_name)
    }

    /// The Background Sync tag the service worker (`tidesync/sw`) listens for.
    pub(crate) fn sync_tag(&self) -> String {
        format!("{}:sync", self.db_name)
    }

    fn on(self: &Rc<Self>, target: web_sys::EventTarget, name: &'static str, f: impl Fn(&Rc<Inner>) + 'static) {
        let weak = Rc::downgrade(self);
        let cb = Closure::<dyn FnMut()>::new(move || {
            if let Some(inner) = weak.upgrade() {
                f(&inner);
            }
        });
        if target.add_event_listener_with_callback(name, cb.as_ref().unchecked_ref()).is_ok() {
            self.dom_listeners.borrow_mut().push((target, name, cb));
        }
    }

    /// Flush triggers: back online, the page going to the background, a network change.
    fn listen_browser(self: &Rc<Self>) {
        let global: web_sys::EventTarget = js_sys::global().unchecked_into();
        self.on(global.clone(), "online", |inner| {
            inner.engine.set_network(inner.net_info());
            inner.schedule(0);
        });
        self.on(global.clone(), "offline", |inner| inner.engine.set_network(inner.net_info()));
        if let Some(doc) = js_sys::Reflect::get(&global, &"document".into()).ok().filter(|d| d.is_object()) {
            self.on(doc.clone().unchecked_into(), "visibilitychange", move |inner| {
                let hidden = js_sys::Reflect::get(&doc, &"visibilityState".into()).ok().and_then(|v| v.as_string());
                if hidden.as_deref() == Some("hidden") {
                    inner.schedule(0);
                }
            });
        }
        if let Some(conn) = crate::web::env::connection() {
            self.on(conn.unchecked_into(), "change", |inner| inner.engine.set_network(inner.net_info()));
        }
    }

    /// Events from other tabs go to our subscribers, marked `remote: true`.
    fn listen_channel(self: &Rc<Self>) {
        let Some(ch) = &self.channel else { return };
        let weak = Rc::downgrade(self);
        let cb = MessageCallback::new(move |m: web_sys::MessageEvent| {
            let Some(inner) = weak.upgrade() else { return };
            // An array of events (one message per dispatch).
            let data = m.data();
            if !js_sys::Array::is_array(&data) {
                return;
            }
            // Another tab wrote: a flush running here reads the queue again, and, since it may have
            // read it before that write (whose own timer finds our lock taken), another follows it.
            inner.engine.queue_changed();
            inner.ask_after_round(js_sys::Date::now() as u64);
            let events: Vec<JsValue> =
                data.unchecked_into::<js_sys::Array>().iter().filter(JsValue::is_object).collect();
            for ev in &events {
                let _ = js_sys::Reflect::set(ev, &"remote".into(), &true.into());
            }
            inner.notify(events.iter());
        });
        ch.set_onmessage(Some(cb.as_ref().unchecked_ref()));
        *self._channel_listener.borrow_mut() = Some(cb);
    }

    pub(crate) fn shutdown(&self) {
        self.engine.close();
        self.engine.store().close();
        if let Some(t) = self.timer.borrow_mut().take() {
            clear_timeout(&t.id);
        }
        for (target, name, cb) in self.dom_listeners.borrow_mut().drain(..) {
            let _ = target.remove_event_listener_with_callback(name, cb.as_ref().unchecked_ref());
        }
        if let Some(ch) = &self.channel {
            ch.set_onmessage(None);
            ch.close();
        }
    }
}

/// Deletes the database of `name` and `userId` (for sign-out flows and tests).
#[wasm_bindgen(js_name = "deleteDatabase", unchecked_return_type = "Promise<void>")]
pub fn delete_database(name: String, user_id: Option<String>) -> Promise {
    future_to_promise(async move {
        let db = format!("tidesync:{}:{}", name, user_id.unwrap_or_else(|| "anonymous".into()));
        IdbStore::delete_database(&db).await.map(|_| JsValue::UNDEFINED).map_err(errors::js_error)
    })
}
