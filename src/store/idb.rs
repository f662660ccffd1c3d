//! The IndexedDB `Store`: the only code in tidesync that talks to IndexedDB. The IndexedDB calls
//! themselves are a small JS module beside this file (`idb.js`): a few lines of JS each, where the
//! same calls through web-sys cost the wasm about 20 KB of bindings and glue.
//!
//! Discipline (every method here keeps it):
//! - One method call is one IndexedDB transaction. Inside it we await only IndexedDB requests:
//!   no fetch, no timers, no crypto. Reads are issued together, the engine's pure logic runs, the
//!   writes are issued together, and then we wait for `complete`.
//! - A transaction that does not complete is aborted by the browser: its writes are all undone.
//!   Its error (`QuotaExceededError`, ...) comes from `transaction.error`.
//! - Records are plain JS objects, readable in devtools. They cross the boundary as JSON text: one
//!   `JSON.stringify` of everything a transaction read, one `JSON.parse` of everything it writes.

use js_sys::{Function, Promise, Reflect};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::core::error::{Result, SyncError};
use crate::core::json;
use crate::core::op::{Conflict, DeadLetter, Entity, EntityKey, Operation};
use crate::core::sorted::VecSet;
use crate::core::traits::{Counts, Store, Tx, Write, SEQ_META};
use crate::core::value::Value;

/// The schema version. Bump it with a migration in `idb.js`'s `upgrade`.
pub const SCHEMA_VERSION: u32 = 2;

#[wasm_bindgen(module = "/src/store/idb.js")]
extern "C" {
    fn open(name: &str, version: u32, options: &str, on_closed: &Function, on_blocked: &Function) -> Promise;
    fn close(db: &JsValue);
    fn remove(name: &str) -> Promise;
    #[wasm_bindgen(catch)]
    fn begin(db: &JsValue) -> std::result::Result<JsValue, JsValue>;
    fn read(tx: &JsValue, seq: &str, keys: &str) -> Promise;
    fn commit(tx: &JsValue, writes: &str) -> Promise;
    fn stage(tx: &JsValue, writes: &str) -> Promise;
    fn abort(tx: &JsValue);
    fn write(db: &JsValue, stores: &str, writes: &str) -> Promise;
    fn get(db: &JsValue, store: &str, key: &str) -> Promise;
    #[wasm_bindgen(js_name = getAll)]
    fn get_all(db: &JsValue, store: &str) -> Promise;
    #[wasm_bindgen(catch)]
    fn readonly(db: &JsValue, stores: &str) -> std::result::Result<JsValue, JsValue>;
    fn append(db: &JsValue, name: &str, entries: &str, max: u32) -> Promise;
    fn pager(tx: &JsValue, store: &str, count: u32, collection: Option<&str>) -> Function;
    fn counts(db: &JsValue) -> Promise;
    #[wasm_bindgen(js_name = takeLease)]
    fn take_lease(db: &JsValue, holder: f64, expires: f64) -> Promise;
    #[wasm_bindgen(js_name = dropLease)]
    fn drop_lease(db: &JsValue);
}

/// How many pending ops (`load_queue`) or records (`list_entities`) are read per request: each page
/// is parsed in a task of its own, so reading 10,000 does not hold the main thread for the whole of it.
const PAGE: u32 = 1000;

/// Where each kind of record lives: the index of its store in `idb.js`'s `STORES`.
const ENTITIES: u8 = 0;
const OPS: u8 = 1;
const DEAD_LETTERS: u8 = 2;
const CONFLICTS: u8 = 3;
const META: u8 = 4;

pub struct IdbStore {
    db: JsValue,
}

impl IdbStore {
    /// Opens (creating or upgrading) the database `name`. `on_closed` runs when another tab
    /// upgrades the database: we close ours at once so its upgrade is not blocked, and tell the app.
    /// `on_blocked` runs when our upgrade waits for an old tab to close.
    /// `options` is the engine's options as JSON text: every stored record carries the keys of the
    /// query indexes its collection declares there (`idb.js`).
    pub async fn open(name: &str, options: &str, on_closed: Function, on_blocked: Function) -> Result<IdbStore> {
        let db = wait(open(name, SCHEMA_VERSION, options, &on_closed, &on_blocked)).await?;
        Ok(IdbStore { db })
    }

    /// The `IDBDatabase`, for the JS that reads the query indexes.
    pub fn handle(&self) -> JsValue {
        self.db.clone()
    }

    /// Closes the database; every later call fails with `CLOSED`.
    pub fn close(&self) {
        close(&self.db);
    }

    /// Deletes a whole database (tests, and `SyncEngine.deleteDatabase`).
    pub async fn delete_database(name: &str) -> Result<()> {
        wait(remove(name)).await.map(drop)
    }
}

/// Awaits one of `idb.js`'s promises; a rejection becomes a `SyncError`.
async fn wait(p: Promise) -> Result<JsValue> {
    JsFuture::from(p).await.map_err(js_error)
}

/// The text one of `idb.js`'s reads resolved to.
async fn wait_text(p: Promise) -> Result<Option<String>> {
    Ok(wait(p).await?.as_string())
}

/// What one of `idb.js`'s reads resolved to, parsed (`null` when it resolved to no text).
async fn read_json(p: Promise) -> Result<Value> {
    parsed(wait_text(p).await?)
}

/// The records of one store, as a read found them, read by `read`.
fn records<T>(v: Value, read: fn(Value) -> json::Read<T>) -> Result<Vec<T>> {
    json::read_all(v, read).map_err(unreadable)
}

/// An IndexedDB failure (a `DOMException`, or a string from `idb.js`) as a `SyncError`.
pub(crate) fn js_error(v: JsValue) -> SyncError {
    if let Some(s) = v.as_string() {
        return SyncError::Storage(s);
    }
    let field = |f: &str| Reflect::get(&v, &f.into()).ok().and_then(|s| s.as_string());
    let Some(name) = field("name") else { return SyncError::Storage("unknown IndexedDB error".into()) };
    let msg = field("message").unwrap_or_default();
    match name.as_str() {
        "QuotaExceededError" if msg.is_empty() => {
            SyncError::QuotaExceeded("the browser refused to store more data for this site".into())
        }
        "QuotaExceededError" => SyncError::QuotaExceeded(msg),
        "InvalidStateError" => SyncError::Closed,
        _ => SyncError::Storage(format!("{name}: {msg}")),
    }
}

fn unreadable(e: String) -> SyncError {
    SyncError::Storage(format!("unreadable record in IndexedDB: {e}"))
}

/// Parses the JSON text of a read. A record as deep as any reader takes (a server's may be) is wrapped
/// in up to three levels here (a page, a dead letter, its op): they do not count.
fn parsed(text: Option<String>) -> Result<Value> {
    json::parse_nested(text.as_deref().unwrap_or("null"), json::MAX_DEPTH, 3).map_err(unreadable)
}

/// The JSON text of an entity's key, `[collection, id]`.
fn push_key(k: &EntityKey, out: &mut String) {
    json::write_pair(&k.collection, &k.id, out);
}

/// `writes` as `idb.js`'s `commit` takes them: `[store, key]` deletes, `[store, key or null, record]`
/// puts, every record written straight into the one text.
fn writes_text(writes: &[Write]) -> Result<String> {
    let mut out = String::from("[");
    for w in writes {
        if out.len() > 1 {
            out.push(',');
        }
        out.push('[');
        let (store, key, record): (u8, Option<&str>, Option<&dyn Erased>) = match w {
            Write::PutEntity(e) => (ENTITIES, None, Some(e)),
            Write::PutOp(o) => (OPS, None, Some(o)),
            Write::PutDeadLetter(d) => (DEAD_LETTERS, None, Some(d)),
            Write::PutConflict(c) => (CONFLICTS, None, Some(c)),
            Write::PutMeta(k, v) => (META, Some(k), Some(v)),
            Write::DeleteEntity(k) => {
                out.push_str("0,");
                push_key(k, &mut out);
                out.push(']');
                continue;
            }
            Write::DeleteOp(id) => (OPS, Some(id), None),
            Write::DeleteDeadLetter(id) => (DEAD_LETTERS, Some(id), None),
            Write::DeleteConflict(id) => (CONFLICTS, Some(id), None),
        };
        out.push(char::from(b'0' + store));
        out.push(',');
        match key {
            Some(k) => json::write_string(k, &mut out),
            None => out.push_str("null"),
        }
        if let Some(r) = record {
            out.push(',');
            r.append(&mut out).map_err(|e| SyncError::Storage(format!("cannot store record: {e}")))?;
        }
        out.push(']');
    }
    out.push(']');
    Ok(out)
}

/// The records a transaction writes, behind one call (`json::append` is generic).
trait Erased {
    fn append(&self, out: &mut String) -> std::result::Result<(), json::Error>;
}

impl<T: Serialize> Erased for T {
    fn append(&self, out: &mut String) -> std::result::Result<(), json::Error> {
        json::append(self, out)
    }
}

impl IdbStore {
    /// `Store::transact` without its type parameters: one copy of this code in the wasm, however many
    /// closures call it (a generic copy per call site cost about 5 KB each).
    async fn run(&self, keys: &[EntityKey], f: &mut dyn FnMut(&mut Tx) -> Result<bool>) -> Result<()> {
        // In key order, each once: the snapshot is then built in one pass.
        let keys: VecSet<EntityKey> = keys.iter().cloned().collect();
        let tx = begin(&self.db).map_err(js_error)?;
        let mut key_text = String::from("[");
        for k in keys.iter() {
            if key_text.len() > 1 {
                key_text.push(',');
            }
            push_key(k, &mut key_text);
        }
        key_text.push(']');
        // [nextSeq, entity or null, lane, entity or null, lane, ...]
        let Value::Array(read) = read_json(read(&tx, SEQ_META, &key_text)).await? else {
            return Err(unreadable("the reads are not an array".into()));
        };
        let mut read = read.into_iter();
        let mut snapshot = Tx::new(read.next().and_then(|s| s.as_u64()).unwrap_or(1));
        for k in keys {
            let entity = match read.next() {
                Some(Value::Null) | None => None,
                Some(e) => Some(Entity::from_json(e).map_err(unreadable)?),
            };
            let lane = records(read.next().unwrap_or_default(), Operation::from_json)?;
            snapshot.add(k, entity, lane);
        }

        // Each part's writes are issued before the next part runs, the next part from their
        // success events: a task of its own, with the transaction still active.
        while f(&mut snapshot).inspect_err(|_| abort(&tx))? {
            let text = writes_text(&snapshot.take_writes()).inspect_err(|_| abort(&tx))?;
            wait(stage(&tx, &text)).await?;
        }
        let text = writes_text(&snapshot.into_writes()).inspect_err(|_| abort(&tx))?;
        wait(commit(&tx, &text)).await.map(drop)
    }

    /// Every record of the store `name`, in one readonly transaction, read by `read`.
    async fn all<T>(&self, name: &str, read: fn(Value) -> json::Read<T>) -> Result<Vec<T>> {
        records(read_json(get_all(&self.db, name)).await?, read)
    }

    /// One record by key (JSON text), `None` when absent.
    async fn one(&self, store: &str, key: &str) -> Result<Option<Value>> {
        match wait_text(get(&self.db, store, key)).await? {
            None => Ok(None),
            text => parsed(text).map(Some),
        }
    }
}

impl IdbStore {
    /// Every pending op and every conflict, in one readonly transaction.
    async fn queue(&self) -> Result<(Vec<Operation>, Vec<Conflict>)> {
        let tx = readonly(&self.db, "ops,conflicts").map_err(js_error)?;
        // A future at once: its rejection is handled even if reading the ops fails first.
        let conflicts = JsFuture::from(next(&pager(&tx, "conflicts", u32::MAX, None)));
        let ops = records(pages(&tx, "ops", None).await?, Operation::from_json)?;
        let conflicts = parsed(conflicts.await.map_err(js_error)?.as_string())?;
        Ok((ops, records(conflicts, Conflict::from_json)?))
    }
}

/// The next page of a `pager`: a promise of its JSON text, or of undefined after the last.
fn next(pager: &Function) -> Promise {
    pager.call0(&JsValue::NULL).map_or_else(|e| Promise::reject(&e), JsCast::unchecked_into)
}

/// Every record of the store `name` (with `collection`, that collection's entities) in the readonly
/// transaction `tx`, `PAGE` per request: each page arrives, and is parsed, in a task of its own.
async fn pages(tx: &JsValue, name: &str, collection: Option<&str>) -> Result<Value> {
    let (pager, mut out) = (pager(tx, name, PAGE, collection), Vec::new());
    while let Some(text) = wait_text(next(&pager)).await? {
        match parsed(Some(text))? {
            Value::Array(page) => out.extend(page),
            _ => return Err(SyncError::Storage(format!("a page of {name} was not a list"))),
        }
    }
    Ok(Value::Array(out))
}

impl Store for IdbStore {
    async fn transact<R>(&self, keys: &[EntityKey], f: impl FnOnce(&mut Tx) -> Result<R>) -> Result<R> {
        let (mut f, mut out) = (Some(f), None);
        self.run(keys, &mut |tx| {
            if let Some(f) = f.take() {
                out = Some(f(tx)?);
            }
            Ok(false)
        })
        .await?;
        out.ok_or_else(|| SyncError::Storage("the transaction ended before it ran".into()))
    }

    async fn transact_parts(&self, keys: &[EntityKey], mut f: impl FnMut(&mut Tx) -> Result<bool>) -> Result<()> {
        self.run(keys, &mut f).await
    }

    async fn get_entity(&self, key: &EntityKey) -> Result<Option<Entity>> {
        let mut k = String::new();
        push_key(key, &mut k);
        match self.one("entities", &k).await? {
            Some(e) => Entity::from_json(e).map(Some).map_err(unreadable),
            None => Ok(None),
        }
    }

    async fn list_entities(&self, collection: &str) -> Result<Vec<Entity>> {
        let tx = readonly(&self.db, "entities").map_err(js_error)?;
        records(pages(&tx, "entities", Some(collection)).await?, Entity::from_json)
    }

    async fn load_queue(&self) -> Result<(Vec<Operation>, Vec<Conflict>)> {
        self.queue().await
    }

    async fn counts(&self) -> Result<Counts> {
        // [ops, dead letters, conflicts], counted by IndexedDB in one readonly transaction.
        let n = js_sys::Array::from(&wait(counts(&self.db)).await?);
        let at = |i| n.get(i).as_f64().unwrap_or(0.0) as usize;
        Ok(Counts { pending: at(0), dead_letters: at(1), conflicts: at(2) })
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        self.all("deadLetters", DeadLetter::from_json).await
    }

    async fn conflicts(&self) -> Result<Vec<Conflict>> {
        self.all("conflicts", Conflict::from_json).await
    }

    async fn get_meta(&self, name: &str) -> Result<Option<Value>> {
        let mut k = String::new();
        json::write_string(name, &mut k);
        self.one("meta", &k).await
    }

    async fn put_meta(&self, name: &str, value: Value) -> Result<()> {
        let text = writes_text(&[Write::PutMeta(name.into(), value)])?;
        wait(write(&self.db, "meta", &text)).await.map(drop)
    }

    async fn append_meta(&self, name: &str, entries: Vec<Value>, max: usize) -> Result<()> {
        let text = json::text(&Value::Array(entries));
        wait(append(&self.db, name, &text, max.min(u32::MAX as usize) as u32)).await.map(drop)
    }
}

// ---- The flush lease: one flusher where Web Locks are missing (src/web/locks.rs) ----

/// The database handle the flush lease works on. It outlives a borrow of the store, so a `pagehide`
/// listener can release the lease.
#[derive(Clone)]
pub struct Lease(JsValue);

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
        Ok(wait(take_lease(&self.0, holder, expires)).await?.is_truthy())
    }

    /// Deletes the lease, committing at once without waiting for anything: the caller knows it is
    /// still its own (not expired). Issued and committed synchronously, so it also completes from a
    /// `pagehide` listener of a closing tab, where a read-then-delete often does not.
    pub fn drop_now(&self) {
        drop_lease(&self.0);
    }
}
