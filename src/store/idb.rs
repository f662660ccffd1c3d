//! The IndexedDB `Store`: the only code in tidesync that talks to IndexedDB.
//!
//! Discipline (every method here keeps it):
//! - One method call is one IndexedDB transaction. Inside it we await only IndexedDB requests:
//!   no fetch, no timers, no crypto. Reads are issued together, the engine's pure logic runs, the
//!   writes are issued together, and then we wait for `complete`.
//! - A transaction that does not complete is aborted by the browser: its writes are all undone.
//!   Its error (`QuotaExceededError`, ...) comes from `transaction.error`, which is why this is
//!   written on web-sys directly: wrappers we tried report only "commit failed".
//! - Records are plain JS objects (written through JSON text and `JSON.parse`), readable in devtools.

use std::cell::Cell;
use std::rc::Rc;

use js_sys::{Array, Function, Promise, Reflect};
use serde::Serialize;
use serde_json::Value;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    DomException, IdbDatabase, IdbFactory, IdbIndexParameters, IdbKeyRange, IdbObjectStore, IdbObjectStoreParameters,
    IdbOpenDbRequest, IdbRequest, IdbTransaction, IdbTransactionMode,
};

use crate::core::error::{Result, SyncError};
use crate::core::json;
use crate::core::op::{Conflict, DeadLetter, Entity, EntityKey, Operation};
use crate::core::traits::{Store, Tx, Write, SEQ_META};

/// The schema version. Bump it with a migration in `upgrade`.
pub const SCHEMA_VERSION: u32 = 1;

const ENTITIES: &str = "entities";
const OPS: &str = "ops";
const DEAD_LETTERS: &str = "deadLetters";
const CONFLICTS: &str = "conflicts";
const META: &str = "meta";
const ALL: [&str; 5] = [ENTITIES, OPS, DEAD_LETTERS, CONFLICTS, META];

pub struct IdbStore {
    db: IdbDatabase,
    closed: Rc<Cell<bool>>,
    // Kept alive as long as the database is open.
    _on_version_change: Closure<dyn FnMut(web_sys::Event)>,
}

impl IdbStore {
    /// Opens (creating or upgrading) the database `name`. `on_closed` runs when another tab
    /// upgrades the database: we close ours at once so its upgrade is not blocked, and tell the app.
    /// `on_blocked` runs when our upgrade waits for an old tab to close.
    pub async fn open(name: &str, on_closed: Function, on_blocked: Function) -> Result<IdbStore> {
        let factory = factory()?;
        let req: IdbOpenDbRequest = factory.open_with_u32(name, SCHEMA_VERSION).map_err(js_error)?;
        let upgrade = Closure::<dyn FnMut(web_sys::IdbVersionChangeEvent)>::new({
            let req = req.clone();
            move |e: web_sys::IdbVersionChangeEvent| {
                if let Err(err) = upgrade(&req, e.old_version() as u32) {
                    web_sys::console::error_2(&"tidesync: database upgrade failed".into(), &err);
                }
            }
        });
        req.set_onupgradeneeded(Some(upgrade.as_ref().unchecked_ref()));
        req.set_onblocked(Some(&on_blocked));
        let db: IdbDatabase = request(req.unchecked_ref()).await?.unchecked_into();
        req.set_onupgradeneeded(None);
        req.set_onblocked(None);
        drop(upgrade);

        let closed = Rc::new(Cell::new(false));
        let on_version_change = Closure::<dyn FnMut(web_sys::Event)>::new({
            let db = db.clone();
            let closed = closed.clone();
            move |_e: web_sys::Event| {
                db.close();
                closed.set(true);
                let _ = on_closed.call0(&JsValue::NULL);
            }
        });
        db.set_onversionchange(Some(on_version_change.as_ref().unchecked_ref()));
        Ok(IdbStore { db, closed, _on_version_change: on_version_change })
    }

    pub fn close(&self) {
        self.db.set_onversionchange(None);
        self.db.close();
        self.closed.set(true);
    }

    pub fn name(&self) -> String {
        self.db.name()
    }

    /// Deletes a whole database (tests, and `SyncEngine.deleteDatabase`).
    pub async fn delete_database(name: &str) -> Result<()> {
        let req = factory()?.delete_database(name).map_err(js_error)?;
        request(req.unchecked_ref()).await.map(|_| ())
    }

    fn tx(&self, stores: &[&str], mode: IdbTransactionMode) -> Result<IdbTransaction> {
        if self.closed.get() {
            return Err(SyncError::Closed);
        }
        let names: Array = stores.iter().map(|s| JsValue::from_str(s)).collect();
        self.db.transaction_with_str_sequence_and_mode(&names, mode).map_err(js_error)
    }
}

fn factory() -> Result<IdbFactory> {
    let f = Reflect::get(&js_sys::global(), &"indexedDB".into()).map_err(js_error)?;
    if f.is_undefined() || f.is_null() {
        return Err(SyncError::Storage("IndexedDB is not available here".into()));
    }
    Ok(f.unchecked_into())
}

/// Creates the stores of each schema version the database has not seen yet.
fn upgrade(req: &IdbOpenDbRequest, old_version: u32) -> std::result::Result<(), JsValue> {
    let db: IdbDatabase = req.result()?.unchecked_into();
    if old_version < 1 {
        let params = IdbObjectStoreParameters::new();
        params.set_key_path(&Array::of2(&"collection".into(), &"id".into()));
        db.create_object_store_with_optional_parameters(ENTITIES, &params)?;

        let params = IdbObjectStoreParameters::new();
        params.set_key_path(&"id".into());
        let ops = db.create_object_store_with_optional_parameters(OPS, &params)?;
        ops.create_index_with_str_sequence_and_optional_parameters(
            "entity",
            &Array::of2(&"collection".into(), &"entityId".into()),
            &IdbIndexParameters::new(),
        )?;

        let params = IdbObjectStoreParameters::new();
        params.set_key_path(&"op.id".into());
        db.create_object_store_with_optional_parameters(DEAD_LETTERS, &params)?;

        let params = IdbObjectStoreParameters::new();
        params.set_key_path(&"id".into());
        db.create_object_store_with_optional_parameters(CONFLICTS, &params)?;

        db.create_object_store(META)?;
    }
    Ok(())
}

/// Awaits an IndexedDB request and returns its result.
async fn request(req: &IdbRequest) -> Result<JsValue> {
    let p = Promise::new(&mut |resolve, reject| {
        req.set_onsuccess(Some(&resolve));
        req.set_onerror(Some(&reject));
    });
    match JsFuture::from(p).await {
        Ok(_) => req.result().map_err(js_error),
        Err(_) => Err(dom_error(req.error().ok().flatten())),
    }
}

/// A promise for the transaction's end, made before any request is issued so no event is missed.
fn completion(tx: &IdbTransaction) -> JsFuture {
    JsFuture::from(Promise::new(&mut |resolve, reject| {
        tx.set_oncomplete(Some(&resolve));
        tx.set_onerror(Some(&reject));
        tx.set_onabort(Some(&reject));
    }))
}

async fn finish(tx: &IdbTransaction, done: JsFuture) -> Result<()> {
    match done.await {
        Ok(_) => Ok(()),
        Err(_) => Err(match tx.error() {
            Some(e) => dom_error(Some(e)),
            None => SyncError::Storage("the transaction was aborted".into()),
        }),
    }
}

pub(crate) fn dom_error(e: Option<DomException>) -> SyncError {
    let Some(e) = e else { return SyncError::Storage("unknown IndexedDB error".into()) };
    let (name, msg) = (e.name(), e.message());
    match name.as_str() {
        "QuotaExceededError" if msg.is_empty() => {
            SyncError::QuotaExceeded("the browser refused to store more data for this site".into())
        }
        "QuotaExceededError" => SyncError::QuotaExceeded(msg),
        "InvalidStateError" => SyncError::Closed,
        _ => SyncError::Storage(format!("{name}: {msg}")),
    }
}

pub(crate) fn js_error(v: JsValue) -> SyncError {
    if let Some(d) = v.dyn_ref::<DomException>() {
        return dom_error(Some(d.clone()));
    }
    let msg = v.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())).or_else(|| v.as_string());
    SyncError::Storage(msg.unwrap_or_else(|| "IndexedDB error".into()))
}

fn to_js<T: Serialize>(v: &T) -> Result<JsValue> {
    crate::web::to_js(v).map_err(|e| SyncError::Storage(format!("cannot store record: {e}")))
}

fn unreadable(e: String) -> SyncError {
    SyncError::Storage(format!("unreadable record in IndexedDB: {e}"))
}

fn from_js<T>(v: JsValue, read: fn(Value) -> json::Read<T>) -> Result<T> {
    crate::web::from_js(&v).and_then(read).map_err(unreadable)
}

/// A `getAll` answer: the whole array in one `JSON.stringify`.
fn all_from_js<T>(v: JsValue, read: fn(Value) -> json::Read<T>) -> Result<Vec<T>> {
    if !Array::is_array(&v) {
        return Err(SyncError::Storage("getAll did not return an array".into()));
    }
    if v.unchecked_ref::<Array>().length() == 0 {
        return Ok(Vec::new());
    }
    crate::web::from_js(&v).and_then(|v| json::read_all(v, read)).map_err(unreadable)
}

fn entity_key(k: &EntityKey) -> JsValue {
    Array::of2(&k.collection.as_str().into(), &k.id.as_str().into()).into()
}

fn store(tx: &IdbTransaction, name: &str) -> Result<IdbObjectStore> {
    tx.object_store(name).map_err(js_error)
}

impl IdbStore {
    /// `Store::transact` without its type parameters: one copy of this code in the wasm, however many
    /// closures call it (a generic copy per call site cost about 5 KB each).
    async fn run(&self, keys: &[EntityKey], f: &mut dyn FnMut(&mut Tx) -> Result<()>) -> Result<()> {
        let tx = self.tx(&ALL, IdbTransactionMode::Readwrite)?;
        let done = completion(&tx);
        let (entities, ops, meta) = (store(&tx, ENTITIES)?, store(&tx, OPS)?, store(&tx, META)?);
        let lanes_index = ops.index("entity").map_err(js_error)?;

        // Issue every read at once; they complete in order.
        let mut reads = Vec::with_capacity(keys.len());
        for k in keys {
            let key = entity_key(k);
            let e = entities.get(&key).map_err(js_error)?;
            let lane = lanes_index.get_all_with_key(&key).map_err(js_error)?;
            reads.push((k, e, lane));
        }
        let seq = meta.get(&SEQ_META.into()).map_err(js_error)?;

        let mut snapshot = Tx::default();
        for (k, e, lane) in reads {
            let e = request(&e).await?;
            let entity = if e.is_undefined() { None } else { Some(from_js(e, Entity::from_json)?) };
            let mut lane = all_from_js(request(&lane).await?, Operation::from_json)?;
            lane.sort_by_key(|o| o.seq);
            snapshot.entities.insert(k.clone(), entity);
            snapshot.lanes.insert(k.clone(), lane);
        }
        snapshot.next_seq = request(&seq).await?.as_f64().map_or(1, |s| s as u64);

        if let Err(e) = f(&mut snapshot) {
            let _ = tx.abort();
            return Err(e);
        }
        let writes = snapshot.into_writes();
        if writes.is_empty() {
            return finish(&tx, done).await;
        }
        let (dead, conflicts) = (store(&tx, DEAD_LETTERS)?, store(&tx, CONFLICTS)?);
        // Every record to put, as one JSON array and one `JSON.parse` (not one per record).
        let mut text = String::from("[");
        for w in &writes {
            // Each record is written straight into the array text.
            let at = text.len();
            if at > 1 {
                text.push(',');
            }
            let put = match w {
                Write::PutEntity(e) => json::append(e, &mut text),
                Write::PutOp(o) => json::append(o, &mut text),
                Write::PutDeadLetter(d) => json::append(d, &mut text),
                Write::PutConflict(c) => json::append(c, &mut text),
                Write::PutMeta(_, v) => json::append(v, &mut text),
                _ => {
                    text.truncate(at);
                    continue;
                }
            };
            put.map_err(|e| SyncError::Storage(format!("cannot store record: {e}")))?;
        }
        text.push(']');
        let records: Array = js_sys::JSON::parse(&text)
            .map_err(|_| SyncError::Storage("cannot store record: JSON.parse refused it".into()))?
            .unchecked_into();
        let mut records = records.iter();
        let mut record = || records.next().unwrap_or_default();
        let issued = writes.iter().try_for_each(|w| -> Result<()> {
            match w {
                Write::PutEntity(_) => entities.put(&record()).map(drop),
                Write::DeleteEntity(k) => entities.delete(&entity_key(k)).map(drop),
                Write::PutOp(_) => ops.put(&record()).map(drop),
                Write::DeleteOp(id) => ops.delete(&id.as_str().into()).map(drop),
                Write::PutDeadLetter(_) => dead.put(&record()).map(drop),
                Write::DeleteDeadLetter(id) => dead.delete(&id.as_str().into()).map(drop),
                Write::PutConflict(_) => conflicts.put(&record()).map(drop),
                Write::DeleteConflict(id) => conflicts.delete(&id.as_str().into()).map(drop),
                Write::PutMeta(k, _) => meta.put_with_key(&record(), &k.as_str().into()).map(drop),
            }
            .map_err(js_error)
        });
        if let Err(e) = issued {
            let _ = tx.abort();
            return Err(e);
        }
        finish(&tx, done).await
    }
}

impl Store for IdbStore {
    async fn transact<R>(&self, keys: &[EntityKey], f: impl FnOnce(&mut Tx) -> Result<R>) -> Result<R> {
        let (mut f, mut out) = (Some(f), None);
        self.run(keys, &mut |tx| {
            if let Some(f) = f.take() {
                out = Some(f(tx)?);
            }
            Ok(())
        })
        .await?;
        out.ok_or_else(|| SyncError::Storage("the transaction ended before it ran".into()))
    }

    async fn get_entity(&self, key: &EntityKey) -> Result<Option<Entity>> {
        let tx = self.tx(&[ENTITIES], IdbTransactionMode::Readonly)?;
        let v = request(&store(&tx, ENTITIES)?.get(&entity_key(key)).map_err(js_error)?).await?;
        if v.is_undefined() {
            Ok(None)
        } else {
            from_js(v, Entity::from_json).map(Some)
        }
    }

    async fn list_entities(&self, collection: &str) -> Result<Vec<Entity>> {
        let tx = self.tx(&[ENTITIES], IdbTransactionMode::Readonly)?;
        // Every key [collection, id] with a string id sorts between [collection] and [collection, []].
        let lower: JsValue = Array::of1(&collection.into()).into();
        let upper: JsValue = Array::of2(&collection.into(), &Array::new()).into();
        let range = IdbKeyRange::bound(&lower, &upper).map_err(js_error)?;
        all_from_js(
            request(&store(&tx, ENTITIES)?.get_all_with_key(&range).map_err(js_error)?).await?,
            Entity::from_json,
        )
    }

    async fn load_queue(&self) -> Result<(Vec<Operation>, Vec<Conflict>)> {
        let tx = self.tx(&[OPS, CONFLICTS], IdbTransactionMode::Readonly)?;
        let ops = store(&tx, OPS)?.get_all().map_err(js_error)?;
        let conflicts = store(&tx, CONFLICTS)?.get_all().map_err(js_error)?;
        Ok((
            all_from_js(request(&ops).await?, Operation::from_json)?,
            all_from_js(request(&conflicts).await?, Conflict::from_json)?,
        ))
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        let tx = self.tx(&[DEAD_LETTERS], IdbTransactionMode::Readonly)?;
        all_from_js(request(&store(&tx, DEAD_LETTERS)?.get_all().map_err(js_error)?).await?, DeadLetter::from_json)
    }

    async fn conflicts(&self) -> Result<Vec<Conflict>> {
        let tx = self.tx(&[CONFLICTS], IdbTransactionMode::Readonly)?;
        all_from_js(request(&store(&tx, CONFLICTS)?.get_all().map_err(js_error)?).await?, Conflict::from_json)
    }

    async fn get_meta(&self, name: &str) -> Result<Option<Value>> {
        let tx = self.tx(&[META], IdbTransactionMode::Readonly)?;
        let v = request(&store(&tx, META)?.get(&name.into()).map_err(js_error)?).await?;
        if v.is_undefined() {
            Ok(None)
        } else {
            from_js(v, Ok).map(Some)
        }
    }

    async fn put_meta(&self, name: &str, value: Value) -> Result<()> {
        let tx = self.tx(&[META], IdbTransactionMode::Readwrite)?;
        let done = completion(&tx);
        store(&tx, META)?.put_with_key(&to_js(&value)?, &name.into()).map_err(js_error)?;
        finish(&tx, done).await
    }
}

// ---- The flush lease: one flusher where Web Locks are missing (src/web/locks.rs) ----

/// The database handle the flush lease works on. It outlives a borrow of the store, so a `pagehide`
/// listener can release the lease.
#[derive(Clone)]
pub struct Lease(IdbDatabase);

/// The lease's key in `meta`.
const LEASE: &str = "flushLease";

impl IdbStore {
    pub fn lease(&self) -> Lease {
        Lease(self.db.clone())
    }
}

impl Lease {
    /// Takes the lease for `holder` until `expires` if it is free (absent, expired, or already
    /// `holder`'s): a compare-and-set of the `meta` record `flushLease` = `{holder, expires}` in one
    /// readwrite transaction (IndexedDB runs overlapping readwrite transactions one after the other,
    /// across tabs and workers). Resolves to whether we hold it now.
    pub async fn take(&self, holder: f64, expires: f64) -> Result<bool> {
        let tx = self.0.transaction_with_str_and_mode(META, IdbTransactionMode::Readwrite).map_err(js_error)?;
        let done = completion(&tx);
        let meta = store(&tx, META)?;
        let key = JsValue::from(LEASE);
        let cur = request(&meta.get(&key).map_err(js_error)?).await?;
        let field = |f: &str| Reflect::get(&cur, &f.into()).ok().and_then(|v| v.as_f64());
        let free = !cur.is_object()
            || field("holder") == Some(holder)
            || field("expires").is_none_or(|t| t < js_sys::Date::now());
        if free {
            let rec = js_sys::Object::new();
            let _ = Reflect::set(&rec, &"holder".into(), &holder.into());
            let _ = Reflect::set(&rec, &"expires".into(), &expires.into());
            meta.put_with_key(&rec, &key).map_err(js_error)?;
        }
        finish(&tx, done).await?;
        Ok(free)
    }

    /// Deletes the lease, committing at once without waiting for anything: the caller knows it is
    /// still its own (not expired). Issued and committed synchronously, so it also completes from a
    /// `pagehide` listener of a closing tab, where a read-then-delete often does not.
    pub fn drop_now(&self) {
        if let Ok(tx) = self.0.transaction_with_str_and_mode(META, IdbTransactionMode::Readwrite) {
            if let Ok(meta) = tx.object_store(META) {
                let _ = meta.delete(&LEASE.into());
            }
            // IndexedDB 3.0, in every current browser (web-sys marks it deprecated all the same);
            // where it is missing the call fails and the transaction commits by itself.
            #[allow(deprecated)]
            let _ = tx.commit();
        }
    }
}
