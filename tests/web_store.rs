//! Browser suite: the engine on real IndexedDB in headless Chromium, against the reference server
//! and json-server that `scripts/test` starts on loopback (their URLs arrive in
//! `TIDESYNC_TEST_SERVER` and `TIDESYNC_JSON_SERVER`). The sync scenarios run in batch mode, in
//! REST mode, and in REST mode against json-server, which knows nothing of tidesync. The reference
//! server wants a token: engines talking to it sign in as its demo user alice (`--demo-users`).
#![cfg(target_arch = "wasm32")]

use std::cell::Cell;
use std::rc::Rc;

use tidesync::core::engine::{CollectionConfig, Engine, EngineConfig};
use tidesync::core::merge::{MergeSpec, Strategy};
use tidesync::core::op::{Priority, SyncStatus};
use tidesync::core::traits::{Store, Write};
use tidesync::core::value::Value;
use tidesync::json;
use tidesync::net::fetch::FetchTransport;
use tidesync::net::rest::{CollectionWire, VersionSource, Wire};
use tidesync::store::idb::IdbStore;
use tidesync::web::WebClock;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

type WebEngine = Engine<IdbStore, FetchTransport, WebClock>;

// Read at compile time: scripts/test starts the servers and exports their URLs for cargo.
const SERVER: Option<&str> = option_env!("TIDESYNC_TEST_SERVER");
const JSON_SERVER: Option<&str> = option_env!("TIDESYNC_JSON_SERVER");

fn server() -> &'static str {
    SERVER.expect("TIDESYNC_TEST_SERVER is set by scripts/test")
}

/// A backend and how a collection talks to it.
#[derive(Clone)]
struct Backend {
    url: &'static str,
    wire: CollectionWire,
}

fn batch() -> Backend {
    Backend {
        url: server(),
        wire: CollectionWire {
            endpoint: "/api/notes".into(),
            wire: Wire::Batch,
            pull_param: "since".into(),
            ..Default::default()
        },
    }
}

fn rest() -> Backend {
    Backend {
        url: server(),
        wire: CollectionWire {
            endpoint: "/api/notes".into(),
            wire: Wire::Rest,
            pull_param: "since".into(),
            ..Default::default()
        },
    }
}

fn json_server() -> Backend {
    let url = JSON_SERVER.expect("TIDESYNC_JSON_SERVER is set by scripts/test");
    Backend {
        url,
        wire: CollectionWire {
            endpoint: "/notes".into(),
            wire: Wire::Rest,
            version: VersionSource::None,
            pull_param: "since".into(),
            ..Default::default()
        },
    }
}

fn config() -> EngineConfig {
    let mut c = EngineConfig::default();
    c.collections.insert(
        "notes".into(),
        // Field by field: the scenarios below check that both devices' fields survive a merge.
        CollectionConfig {
            merge: MergeSpec { default: Strategy::Merge3, ..MergeSpec::default() },
            priority: Priority::Medium,
        },
    );
    c.retry.base_ms = 10;
    c.retry.jitter_ms = 5;
    c.retry.max_attempts = 5;
    c
}

fn noop() -> js_sys::Function {
    Closure::<dyn FnMut()>::new(|| {}).into_js_value().unchecked_into()
}

/// The engine's `auth` callback: signs in at the reference server as alice, resolves to the token.
fn sign_in() -> js_sys::Function {
    js_sys::Function::new_no_args(&format!(
        "return fetch('{}/auth/token', {{
           method: 'POST', body: JSON.stringify({{ username: 'alice', password: 'alice' }}),
         }}).then((r) => r.json()).then((b) => b.token)",
        server()
    ))
}

/// Engines of the reference server sign in unless the test brings its own `auth`.
async fn open_with(name: &str, b: &Backend, auth: Option<js_sys::Function>, timeout_ms: u32) -> WebEngine {
    let auth = auth.or_else(|| (SERVER == Some(b.url)).then(sign_in));
    let store = IdbStore::open(name, "{}", noop(), noop()).await.expect("open IndexedDB");
    let wires = [("notes".to_string(), b.wire.clone())].into();
    let transport = FetchTransport::new(b.url, "/api/sync/batch", wires, timeout_ms, auth);
    Engine::open(store, transport, WebClock, config()).await.expect("open engine")
}

async fn fresh(name: &str, b: &Backend) -> WebEngine {
    IdbStore::delete_database(name).await.expect("delete old database");
    open_with(name, b, None, 5_000).await
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", js_sys::Date::now() as u64, (js_sys::Math::random() * 1e9) as u64)
}

/// One request, as alice (json-server ignores the token).
async fn http(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let send = js_sys::Function::new_with_args(
        "method, url, body, signIn",
        "return signIn().then((token) => fetch(url, {
            method, body,
            headers: { Authorization: 'Bearer ' + token, ...(body ? { 'Content-Type': 'application/json' } : {}) },
          })).then(async (r) => [r.status, await r.text()])",
    );
    let body = body.map(|b| JsValue::from(b.to_string()));
    let args = js_sys::Array::of4(&method.into(), &url.into(), &body.into(), &sign_in());
    let p: js_sys::Promise = send.apply(&JsValue::NULL, &args).unwrap().unchecked_into();
    let answer: js_sys::Array = wasm_bindgen_futures::JsFuture::from(p).await.expect("fetch").unchecked_into();
    let text = answer.get(1).as_string().unwrap_or_default();
    (answer.get(0).as_f64().unwrap() as u16, tidesync::core::json::parse(&text).unwrap_or(Value::Null))
}

async fn faults(f: Value) {
    let (status, _) = http("POST", &format!("{}/admin/faults", server()), Some(f)).await;
    assert_eq!(status, 200, "setting faults");
}

async fn clear_faults() {
    http("DELETE", &format!("{}/admin/faults", server()), None).await;
}

/// The record as the backend holds it, without the fields a server adds (`id`, `version`).
async fn on_server(b: &Backend, id: &str) -> Option<Value> {
    let (status, v) = http("GET", &format!("{}{}/{}", b.url, b.wire.endpoint, id), None).await;
    if status != 200 {
        return None;
    }
    let mut v = v;
    if let Some(o) = v.as_object_mut() {
        o.remove("id");
        o.remove("version");
    }
    Some(v)
}

// ---- storage ----

/// The checksum's float spelling in the browser (built from `String(f)` and `toPrecision`, with no
/// float formatting in the wasm) against Rust's `{:e}`, which the server uses. The first 24 are
/// doubles whose two nearest 17-digit spellings are equally near, where `String(f)` picks the
/// other one.
#[wasm_bindgen_test]
fn a_checksum_spells_floats_as_the_server_does() {
    let cases: [(u64, &str); 40] = [
        (0xc2ec3d9a05daf814, "-2.4840722126227263e14"),
        (0xc2e9911d565f35b4, "-2.2488842521642963e14"),
        (0x42df3ef751119b48, "1.3742119087473313e14"),
        (0xc2eaa92f6dcfc634, "-2.3451158016772963e14"),
        (0xc30e1ec82141995a, "-1.0597617751949233e15"),
        (0xc306c6e3b4d99402, "-8.013913477085443e14"),
        (0xc2e0e027e3816294, "-1.4843942351950863e14"),
        (0xc30985514c9ae132, "-8.979323302287743e14"),
        (0xc3072dd60e457dc2, "-8.155402312539443e14"),
        (0xc30e406b5f7f3df2, "-1.0643849011465583e15"),
        (0xc30ad17d3429124a, "-9.435856338376413e14"),
        (0xc305aeecda1c3de2, "-7.629133507153243e14"),
        (0xc30aa8c8ed619fe2, "-9.379912905000923e14"),
        (0xc30aabcf28e0b80a, "-9.384069533591053e14"),
        (0x42dae50695b64388, "1.1828384123111813e14"),
        (0xc2efa0c523a91414, "-2.7820290141609663e14"),
        (0xc2d2230d699b5568, "-7.976703272072563e13"),
        (0xc307de54486805e2, "-8.397972547176283e14"),
        (0xc2e4e54955e76fd4, "-1.8380008346303863e14"),
        (0x42ee98c817fcc644, "2.6913232702008213e14"),
        (0xc2da32d02c8208e8, "-1.1522217305910763e14"),
        (0xc308092180639982, "-8.456798667046883e14"),
        (0xc3051bb20b1390c2, "-7.426782518605043e14"),
        (0x42e1bdbeb1e07e64, "1.5605316655614713e14"),
        (0x04ee1b021b8cfadf, "6.326739783961614e-285"),
        (0xbf4ddb6a15eac553, "-9.11166e-4"),
        (0x04e8f0fe1150cc1b, "5.241487298815565e-285"),
        (0xbf3f7be00f0da8cf, "-4.80406e-4"),
        (0xbf1b6b2f3cc84c24, "-1.0459400000000001e-4"),
        (0xbf4a8fd8fb84454a, "-8.10605e-4"),
        (0x4fcee184e7474c94, "2.793568662569452e76"),
        (0x04f2b9e8f97b3d7b, "7.870712100073993e-285"),
        (0xc94bbc927564bb50, "-1.2370941347675451e45"),
        (0x04dd75e13eb126c4, "3.095592344805527e-285"),
        (0x4299c61c8f143c80, "7.084668339471125e12"),
        (0x04ecb6c3ba8d5fb4, "6.034296735200061e-285"),
        (0x40c1bfb978d4fdf4, "9.087449e3"),
        (0x487196a0e6629dd3, "9.576031803661552e40"),
        (0xca8a91ce318f1650, "-1.242606224098428e51"),
        (0xbf41df508802c354, "-5.4542e-4"),
    ];
    for (bits, sci) in cases {
        let f = f64::from_bits(bits);
        assert_eq!(tidesync::core::checksum::canonical_json(&Value::from(f)), sci, "{bits:#x}");
    }
    // 123456789012345.125: `String` writes ...345.12, the server ...345.13.
    let tie = Value::from(f64::from_bits(0x42dc12218377de48));
    assert_eq!(tidesync::core::checksum::canonical_json(&tie), "1.2345678901234513e14");
}

#[wasm_bindgen_test]
async fn records_survive_closing_and_reopening() {
    let name = unique("reopen");
    let down = Backend { url: "http://127.0.0.1:9", ..batch() };
    let engine = fresh(&name, &down).await;
    engine.put("notes", "a", json!({"title": "first"}), None).await.unwrap();
    engine.put("notes", "b", json!({"title": "second"}), None).await.unwrap();
    engine.patch("notes", "a", json!({"body": "more"}), None).await.unwrap();
    assert!(engine.delete("notes", "b", None).await.unwrap());
    let device = engine.device_id().to_string();
    engine.store().close();
    drop(engine);

    let engine = open_with(&name, &down, None, 5_000).await;
    assert_eq!(engine.device_id(), device, "the device id is persisted");
    assert_eq!(engine.get("notes", "a").await.unwrap(), Some(json!({"title": "first", "body": "more"})));
    assert_eq!(engine.get("notes", "b").await.unwrap(), None);
    // a: one coalesced create. b: created and deleted before any sync, so nothing to send.
    let queue = engine.queue().await.unwrap();
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!((queue[0].entity_id.as_str(), queue[0].kind.as_str()), ("a", "create"));
    let list = engine.list("notes").await.unwrap();
    assert_eq!(list.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["a"]);
}

#[wasm_bindgen_test]
async fn a_closed_database_is_a_typed_error() {
    let engine = fresh(&unique("closed"), &batch()).await;
    engine.store().close();
    let err = engine.put("notes", "a", json!({}), None).await.unwrap_err();
    assert_eq!(err.code(), "CLOSED");
}

#[wasm_bindgen_test]
async fn a_queue_longer_than_a_read_page_is_read_whole_and_in_order() {
    // load_queue reads 1,000 ops per request; 2,500 pending ops take three pages.
    let engine = fresh(&unique("pages"), &Backend { url: "http://127.0.0.1:9", ..batch() }).await;
    let records: Vec<(String, Value)> = (0..2_500).map(|i| (format!("n{i:04}"), json!({"i": i}))).collect();
    engine.put_many("notes", records, None).await.unwrap();
    let (ops, conflicts) = engine.store().load_queue().await.unwrap();
    assert!(conflicts.is_empty());
    assert_eq!(ops.len(), 2_500);
    assert!(ops.windows(2).all(|w| w[0].id < w[1].id), "in key order, no op twice");
    let mut ids: Vec<&str> = ops.iter().map(|o| o.entity_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 2_500, "every record's op");
    // The first status() counts them without reading them (IndexedDB's count()), and the engine
    // keeps the counts from then on.
    assert_eq!(engine.kept_counts(), None, "not counted at open");
    assert_eq!(engine.status().await.unwrap().pending, 2_500);
    let counts = engine.store().counts().await.unwrap();
    assert_eq!((counts.pending, counts.dead_letters, counts.conflicts), (2_500, 0, 0));
    assert_eq!(engine.kept_counts(), Some(counts));
}

#[wasm_bindgen_test]
async fn a_collection_longer_than_a_read_page_is_listed_whole_in_order_and_alone() {
    // list() reads 1,000 records per request, in one readonly transaction: 2,500 take three pages,
    // exactly 2,000 two full ones and an empty one. The collections whose names sort just before and
    // just after ("note", "notes2") stay out; an empty collection lists nothing.
    let name = unique("list-pages");
    IdbStore::delete_database(&name).await.expect("delete old database");
    let store = IdbStore::open(&name, "{}", noop(), noop()).await.expect("open IndexedDB");
    let transport = FetchTransport::new("http://127.0.0.1:9", "/api/sync/batch", [].into(), 5_000, None);
    let mut c = config();
    for n in ["note", "notes2", "empty"] {
        c.collections.insert(n.into(), c.collections.get("notes").unwrap().clone());
    }
    let engine = Engine::open(store, transport, WebClock, c).await.expect("open engine");
    let records = |n: usize| (0..n).map(|i| (format!("n{i:04}"), json!({"i": i}))).collect::<Vec<(String, Value)>>();
    engine.put_many("notes", records(2_500), None).await.unwrap();
    engine.put_many("note", records(3), None).await.unwrap();
    engine.put_many("notes2", records(2_000), None).await.unwrap();
    let listed = engine.list("notes").await.unwrap();
    assert_eq!(listed.len(), 2_500);
    assert!(listed.iter().all(|e| e.collection == "notes"), "only the collection asked for");
    assert!(listed.windows(2).all(|w| w[0].id < w[1].id), "in id order, none twice");
    // A record as deep as a server may send (127 levels; an app's may be 120) reads back from its
    // page and with its op, as records wrapped in what the engine stores them in.
    let deep = (1..127).fold(json!({}), |d, _| json!({ "d": d }));
    engine.put("note", "deep", deep.clone(), None).await.unwrap();
    let listed = engine.list("note").await.unwrap();
    assert_eq!(listed.iter().find(|e| e.id == "deep").and_then(|e| e.data.clone()), Some(deep));
    assert_eq!(engine.store().load_queue().await.unwrap().0.len(), 2_000 + 2_500 + 3 + 1);
    for (n, count) in [("note", 4), ("notes2", 2_000), ("empty", 0)] {
        let listed = engine.list(n).await.unwrap();
        assert_eq!(listed.len(), count, "{n}");
        assert!(listed.windows(2).all(|w| w[0].id < w[1].id), "{n}: in id order, none twice");
    }
}

#[wasm_bindgen_test]
async fn a_transaction_in_parts_stores_every_part_or_none() {
    // Each part's writes go to IndexedDB before the next part runs (putMany of thousands); a part
    // that fails still undoes the parts before it.
    let engine = fresh(&unique("parts"), &Backend { url: "http://127.0.0.1:9", ..batch() }).await;
    let store = engine.store();
    let put = |part: usize| Write::PutMeta(format!("part{part}"), json!(part));
    let mut part = 0;
    let failed = store
        .transact_parts(&[], |tx| {
            if part == 3 {
                return Err(tidesync::core::error::SyncError::InvalidInput("part 3 fails".into()));
            }
            tx.write(put(part));
            part += 1;
            Ok(true)
        })
        .await;
    assert_eq!(failed.unwrap_err().code(), "INVALID_INPUT");
    for p in 0..3 {
        assert_eq!(store.get_meta(&format!("part{p}")).await.unwrap(), None, "part {p} was undone");
    }
    let mut part = 0;
    store
        .transact_parts(&[], |tx| {
            tx.write(put(part));
            part += 1;
            Ok(part < 4)
        })
        .await
        .unwrap();
    for p in 0..4 {
        assert_eq!(store.get_meta(&format!("part{p}")).await.unwrap(), Some(json!(p)), "part {p} stored");
    }
}

/// Writes records tidesync did not write straight into the database `name`, in a connection of its own.
async fn put_raw(name: &str, script: &str) {
    let put = js_sys::Function::new_with_args(
        "name",
        &format!(
            "return new Promise((ok, no) => {{ const r = indexedDB.open(name); r.onerror = () => no(r.error);
             r.onsuccess = () => {{ const db = r.result, tx = db.transaction(['entities', 'ops'], 'readwrite');
             const entities = tx.objectStore('entities'), ops = tx.objectStore('ops'); {script};
             tx.oncomplete = () => {{ db.close(); ok(); }}; tx.onabort = () => no(tx.error); }}; }})"
        ),
    );
    let p: js_sys::Promise = put.call1(&JsValue::NULL, &name.into()).unwrap().unchecked_into();
    wasm_bindgen_futures::JsFuture::from(p).await.expect("raw IndexedDB write");
}

#[wasm_bindgen_test]
async fn a_record_tidesync_did_not_write_is_a_storage_error_and_the_rest_stays_readable() {
    let name = unique("foreign");
    let engine = fresh(&name, &Backend { url: "http://127.0.0.1:9", ..batch() }).await;
    engine.put("notes", "good", json!({"title": "kept"}), None).await.unwrap();
    put_raw(&name, "entities.put({collection: 'notes', id: 'bad', data: 5})").await;

    let err = engine.get("notes", "bad").await.unwrap_err();
    assert_eq!(err.code(), "STORAGE", "{err:?}");
    assert!(err.to_string().contains("unreadable record in IndexedDB"), "{err}");
    let err = engine.put("notes", "bad", json!({"title": "over it"}), None).await.unwrap_err();
    assert_eq!(err.code(), "STORAGE", "a write over it is refused, not guessed: {err:?}");
    let err = engine.list("notes").await.unwrap_err();
    assert_eq!(err.code(), "STORAGE", "{err:?}");
    assert_eq!(engine.get("notes", "good").await.unwrap(), Some(json!({"title": "kept"})));
    assert_eq!(engine.queue().await.unwrap().len(), 1, "the refused write queued nothing");

    // A value JSON cannot hold at all (IndexedDB can): the read fails as unreadable, not as a TypeError.
    put_raw(&name, "entities.put({collection: 'notes', id: 'big', data: {n: 10n}})").await;
    let err = engine.get("notes", "big").await.unwrap_err();
    assert_eq!(err.code(), "STORAGE", "{err:?}");
    assert!(err.to_string().contains("unreadable record in IndexedDB"), "{err}");

    put_raw(&name, "ops.put({id: 'op-x', collection: 'notes', entityId: 'other', seq: 'first'})").await;
    let err = engine.queue().await.unwrap_err();
    assert_eq!(err.code(), "STORAGE", "{err:?}");
    assert!(err.to_string().contains("seq"), "the message names the field: {err}");
}

// ---- the same sync scenarios on three backends ----

async fn flush_marks_records_synced_and_leaves_no_op(b: Backend) {
    let engine = fresh(&unique("flush"), &b).await;
    let id = unique("note");
    engine.put("notes", &id, json!({"title": "hello"}), None).await.unwrap();
    engine.put("notes", &format!("{id}-2"), json!({"title": "world"}), None).await.unwrap();
    let report = engine.flush().await.unwrap();
    assert_eq!((report.sent, report.accepted, report.remaining), (2, 2, 0), "{report:?}");
    let rec = engine.record("notes", &id).await.unwrap().unwrap();
    assert_eq!(rec.sync_status, SyncStatus::Synced);
    assert!(engine.store().load_queue().await.unwrap().0.is_empty());

    engine.put("notes", &id, json!({"title": "hello again"}), None).await.unwrap();
    engine.flush().await.unwrap();
    assert_eq!(on_server(&b, &id).await, Some(json!({"title": "hello again"})));
    if b.wire.version != VersionSource::None {
        assert_eq!(engine.record("notes", &id).await.unwrap().unwrap().version, Some(2));
    }
    assert!(engine.delete("notes", &id, None).await.unwrap());
    let report = engine.flush().await.unwrap();
    assert_eq!((report.accepted, report.remaining), (1, 0), "{report:?}");
    assert_eq!(on_server(&b, &id).await, None, "deleted on the server");
}

#[wasm_bindgen_test]
async fn flush_batch_mode() {
    flush_marks_records_synced_and_leaves_no_op(batch()).await;
}

#[wasm_bindgen_test]
async fn flush_rest_mode() {
    flush_marks_records_synced_and_leaves_no_op(rest()).await;
}

#[wasm_bindgen_test]
async fn flush_json_server() {
    flush_marks_records_synced_and_leaves_no_op(json_server()).await;
}

async fn second_device_pulls_and_rebases(b: Backend) {
    let a = fresh(&unique("dev-a"), &b).await;
    let dev_b = fresh(&unique("dev-b"), &b).await;
    let (x, y) = (unique("x"), unique("y"));
    a.put("notes", &x, json!({"title": "x1", "n": 1}), None).await.unwrap();
    a.put("notes", &y, json!({"title": "y1"}), None).await.unwrap();
    a.flush().await.unwrap();

    // A new device bootstraps from pull alone.
    let r = dev_b.pull(Some("notes")).await.unwrap();
    assert!(r.applied >= 2, "{r:?}");
    let bx = dev_b.record("notes", &x).await.unwrap().unwrap();
    assert_eq!(
        (bx.data.as_ref().map(|d| (d["title"].clone(), d["n"].clone())), bx.sync_status),
        (Some((json!("x1"), json!(1))), SyncStatus::Synced)
    );

    // A deletes y and edits x's title; B meanwhile edits x's `n` offline.
    a.delete("notes", &y, None).await.unwrap();
    a.patch("notes", &x, json!({"title": "x2"}), None).await.unwrap();
    a.flush().await.unwrap();
    dev_b.patch("notes", &x, json!({"n": 2}), None).await.unwrap();

    let r = dev_b.pull(Some("notes")).await.unwrap();
    assert_eq!((r.deleted, r.rebased), (1, 1), "{r:?}");
    assert_eq!(dev_b.get("notes", &y).await.unwrap(), None, "the deletion reached the other device");
    // The pending edit was rebased: both changes kept.
    let merged = dev_b.get("notes", &x).await.unwrap().unwrap();
    assert_eq!((merged["title"].clone(), merged["n"].clone()), (json!("x2"), json!(2)));
    dev_b.flush().await.unwrap();
    assert_eq!(on_server(&b, &x).await, Some(json!({"title": "x2", "n": 2})));
    a.pull(Some("notes")).await.unwrap();
    let ax = a.get("notes", &x).await.unwrap().unwrap();
    assert_eq!((ax["title"].clone(), ax["n"].clone()), (json!("x2"), json!(2)));
}

#[wasm_bindgen_test]
async fn pull_batch_mode() {
    second_device_pulls_and_rebases(batch()).await;
}

#[wasm_bindgen_test]
async fn pull_rest_mode() {
    second_device_pulls_and_rebases(rest()).await;
}

#[wasm_bindgen_test]
async fn pull_json_server() {
    second_device_pulls_and_rebases(json_server()).await;
}

async fn concurrent_edits_merge_on_conflict(b: Backend) {
    let a = fresh(&unique("c-a"), &b).await;
    let dev_b = fresh(&unique("c-b"), &b).await;
    let x = unique("x");
    a.put("notes", &x, json!({"p": 0, "q": 0}), None).await.unwrap();
    a.flush().await.unwrap();
    dev_b.pull(Some("notes")).await.unwrap();
    a.patch("notes", &x, json!({"p": 1}), None).await.unwrap();
    dev_b.patch("notes", &x, json!({"q": 1}), None).await.unwrap();
    a.flush().await.unwrap();
    // B's write was made on version 1; the server is at 2: a 409/412, merged field by field.
    let r = dev_b.flush().await.unwrap();
    assert_eq!((r.conflicts, r.remaining), (1, 0), "{r:?}");
    assert_eq!(on_server(&b, &x).await, Some(json!({"p": 1, "q": 1})));
    assert_eq!(dev_b.record("notes", &x).await.unwrap().unwrap().version, Some(3));
    assert_eq!(dev_b.audit_log().len(), 1);
}

/// json-server keeps no versions and applies any PUT: tidesync reads the record before each update and
/// sends it only if the server still holds what this device last saw of it.
#[wasm_bindgen_test]
async fn json_server_updates_are_never_blind() {
    let b = json_server();
    let a = fresh(&unique("js-a"), &b).await;
    let dev_b = fresh(&unique("js-b"), &b).await;
    let x = unique("x");
    a.put("notes", &x, json!({"p": 0, "q": 0}), None).await.unwrap();
    a.flush().await.unwrap();
    dev_b.pull(Some("notes")).await.unwrap();
    a.patch("notes", &x, json!({"p": 1}), None).await.unwrap();
    let r = a.flush().await.unwrap();
    assert_eq!((r.accepted, r.conflicts), (1, 0), "the server still held A's own write: {r:?}");
    dev_b.patch("notes", &x, json!({"q": 1}), None).await.unwrap();
    // B's write was made on the record before A's change: a conflict, merged, never a blind PUT of p: 0.
    let r = dev_b.flush().await.unwrap();
    assert_eq!((r.conflicts, r.remaining), (1, 0), "{r:?}");
    assert_eq!(on_server(&b, &x).await, Some(json!({"p": 1, "q": 1})));
}

#[wasm_bindgen_test]
async fn conflict_batch_mode() {
    concurrent_edits_merge_on_conflict(batch()).await;
}

#[wasm_bindgen_test]
async fn conflict_rest_mode() {
    concurrent_edits_merge_on_conflict(rest()).await;
}

// ---- failures ----

#[wasm_bindgen_test]
async fn flush_while_the_server_is_down_keeps_every_op() {
    let engine = fresh(&unique("down"), &Backend { url: "http://127.0.0.1:9", ..batch() }).await;
    for i in 0..5 {
        engine.put("notes", &format!("n{i}"), json!({"i": i}), Some(Priority::High)).await.unwrap();
    }
    let report = engine.flush().await.unwrap();
    assert_eq!((report.sent, report.accepted, report.retried, report.remaining), (5, 0, 5, 5), "{report:?}");
    let queue = engine.queue().await.unwrap();
    assert!(queue.iter().all(|o| o.attempts == 1 && o.sent && o.last_error.is_some()), "{queue:?}");
    for i in 0..5 {
        let r = engine.record("notes", &format!("n{i}")).await.unwrap().unwrap();
        assert_eq!((r.data, r.sync_status), (Some(json!({"i": i})), SyncStatus::Pending));
    }
}

#[wasm_bindgen_test]
async fn a_503_twice_then_200_honours_retry_after() {
    for b in [batch(), rest()] {
        let engine = fresh(&unique("503"), &b).await;
        let id = unique("n");
        engine.put("notes", &id, json!({"v": 1}), None).await.unwrap();
        faults(json!({"failNext": 2, "failStatus": 503, "retryAfter": "1"})).await;
        let t0 = js_sys::Date::now() as u64;
        let r = engine.flush().await.unwrap();
        assert_eq!((r.accepted, r.retried), (0, 1), "{r:?}");
        let next = r.next_attempt_at.expect("a retry is scheduled");
        assert!(next >= t0 + 1_000, "Retry-After: 1 is honoured ({} ms)", next - t0);
        tidesync::web::sleep(next.saturating_sub(js_sys::Date::now() as u64) + 5).await;
        let r = engine.flush().await.unwrap();
        assert_eq!((r.accepted, r.retried), (0, 1), "the second 503: {r:?}");
        let next = r.next_attempt_at.unwrap();
        tidesync::web::sleep(next.saturating_sub(js_sys::Date::now() as u64) + 5).await;
        let r = engine.flush().await.unwrap();
        assert_eq!((r.accepted, r.remaining), (1, 0), "{r:?}");
        clear_faults().await;
    }
}

#[wasm_bindgen_test]
async fn a_400_is_dead_lettered_while_other_records_flow_then_retried_or_discarded() {
    let engine = fresh(&unique("dl"), &batch()).await;
    let (bad, good, bad2) = (unique("bad"), unique("good"), unique("bad2"));
    engine.put("notes", &bad, json!({"v": 1}), None).await.unwrap();
    faults(json!({"failNext": 1, "failStatus": 400})).await;
    let r = engine.flush().await.unwrap();
    assert_eq!(r.dead_lettered, 1, "{r:?}");
    engine.put("notes", &good, json!({"v": 2}), None).await.unwrap();
    let r = engine.flush().await.unwrap();
    assert_eq!(r.accepted, 1, "another record still syncs: {r:?}");
    let dl = engine.dead_letters().await.unwrap();
    assert_eq!((dl.len(), dl[0].status, dl[0].code.as_str()), (1, Some(400), "HTTP"));
    assert_eq!(engine.record("notes", &bad).await.unwrap().unwrap().sync_status, SyncStatus::Error);
    engine.retry_dead_letter(&dl[0].op.id).await.unwrap();
    let r = engine.flush().await.unwrap();
    assert_eq!((r.accepted, r.remaining), (1, 0), "{r:?}");
    assert!(engine.dead_letters().await.unwrap().is_empty());

    engine.put("notes", &bad2, json!({"v": 3}), None).await.unwrap();
    faults(json!({"failNext": 1, "failStatus": 422})).await;
    engine.flush().await.unwrap();
    let dl = engine.dead_letters().await.unwrap();
    engine.discard_dead_letter(&dl[0].op.id).await.unwrap();
    assert!(engine.dead_letters().await.unwrap().is_empty());
    // The refused create is undone: the server never had the record, so it is gone here too.
    assert_eq!(engine.get("notes", &bad2).await.unwrap(), None, "a discarded create leaves nothing");
    assert!(on_server(&batch(), &bad2).await.is_none());
}

#[wasm_bindgen_test]
async fn hostile_responses_are_protocol_errors_and_lose_nothing() {
    for b in [batch(), rest()] {
        for kind in ["html", "truncated", "wrongTypes", "liar", "huge", "redirect"] {
            let engine = fresh(&unique("hostile"), &b).await;
            let id = unique(kind);
            engine.put("notes", &id, json!({"kind": kind}), None).await.unwrap();
            faults(json!({"malformedNext": 1, "malformedKind": kind})).await;
            let r = engine.flush().await.unwrap();
            clear_faults().await;
            let q = engine.queue().await.unwrap();
            // REST's `liar` (a 2xx whose body says it succeeded) is indistinguishable from success:
            // the server did not apply it, and the next pull sets that right. Everything else is a
            // PROTOCOL failure, retried.
            if !(b.wire.wire == Wire::Rest && matches!(kind, "liar" | "wrongTypes")) {
                assert_eq!((r.accepted, r.retried, q.len()), (0, 1, 1), "{kind}: {r:?}");
                let err = q[0].last_error.clone().unwrap_or_default();
                assert!(err.starts_with("unexpected server response"), "{kind}: {err}");
                tidesync::web::sleep(q[0].next_attempt_at.saturating_sub(js_sys::Date::now() as u64) + 5).await;
                let r = engine.flush().await.unwrap();
                assert_eq!((r.accepted, r.remaining), (1, 0), "{kind}: the retry goes through: {r:?}");
            }
            assert_eq!(engine.get("notes", &id).await.unwrap(), Some(json!({"kind": kind})), "{kind}: nothing lost");
        }
    }
}

#[wasm_bindgen_test]
async fn a_response_lost_after_the_server_applied_it_is_not_applied_twice() {
    for b in [batch(), rest()] {
        let engine = fresh(&unique("drop"), &b).await;
        let id = unique("n");
        engine.put("notes", &id, json!({"v": 1}), None).await.unwrap();
        let op_id = engine.queue().await.unwrap()[0].id.clone();
        faults(json!({"dropResponseNext": 1})).await;
        let r = engine.flush().await.unwrap();
        assert_eq!(r.retried, 1, "{r:?}");
        tidesync::web::sleep(50).await;
        let r = engine.flush().await.unwrap();
        assert_eq!((r.accepted, r.remaining), (1, 0), "{r:?}");
        let (_, ledger) = http("GET", &format!("{}/admin/ledger", server()), None).await;
        let entry = ledger["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["opId"] == json!(op_id.as_str()))
            .cloned()
            .expect("in the ledger");
        assert_eq!(entry["deliveries"], json!(2), "sent twice, applied once: {entry}");
        assert_eq!(engine.record("notes", &id).await.unwrap().unwrap().version, Some(1));
    }
}

#[wasm_bindgen_test]
async fn rest_writes_carry_the_op_id_as_idempotency_key() {
    let engine = fresh(&unique("keys"), &rest()).await;
    let id = unique("n");
    engine.put("notes", &id, json!({"v": 1}), None).await.unwrap();
    let op_id = engine.queue().await.unwrap()[0].id.clone();
    engine.flush().await.unwrap();
    let (_, ledger) = http("GET", &format!("{}/admin/ledger", server()), None).await;
    let entry = ledger["entries"].as_array().unwrap().iter().find(|e| e["opId"] == json!(op_id.as_str())).cloned();
    assert_eq!(entry.map(|e| e["kind"].clone()), Some(json!("rest")), "the server saw Idempotency-Key = the op id");
}

#[wasm_bindgen_test]
async fn a_timeout_is_retryable() {
    let b = batch();
    let name = unique("timeout");
    IdbStore::delete_database(&name).await.unwrap();
    let engine = open_with(&name, &b, None, 100).await;
    engine.put("notes", &unique("n"), json!({}), None).await.unwrap();
    faults(json!({"latencyMs": 400})).await;
    let r = engine.flush().await.unwrap();
    clear_faults().await;
    let q = engine.queue().await.unwrap();
    assert_eq!((r.retried, q.len()), (1, 1), "{r:?}");
    assert_eq!(q[0].last_error.as_deref(), Some("request timed out"));
}

#[wasm_bindgen_test]
async fn a_401_asks_auth_for_a_fresh_token_once_and_a_403_dead_letters() {
    let calls = Rc::new(Cell::new(0u32));
    // The first token is refused by the server (401); the second is a real one.
    let auth: js_sys::Function = {
        let calls = calls.clone();
        Closure::<dyn FnMut() -> JsValue>::new(move || {
            calls.set(calls.get() + 1);
            match calls.get() {
                1 => JsValue::from_str("not-a-token"),
                _ => sign_in().call0(&JsValue::NULL).unwrap(),
            }
        })
        .into_js_value()
        .unchecked_into()
    };
    let name = unique("auth");
    IdbStore::delete_database(&name).await.unwrap();
    let engine = open_with(&name, &batch(), Some(auth), 5_000).await;
    engine.put("notes", &unique("n"), json!({}), None).await.unwrap();
    let r = engine.flush().await.unwrap();
    assert_eq!(r.accepted, 1, "retried with a fresh token: {r:?}");
    assert_eq!(calls.get(), 2, "auth() once for the first token, once more after the 401");

    engine.put("notes", &unique("n"), json!({}), None).await.unwrap();
    faults(json!({"failNext": 1, "failStatus": 403})).await;
    let r = engine.flush().await.unwrap();
    clear_faults().await;
    assert_eq!(r.dead_lettered, 1, "{r:?}");
    assert_eq!(engine.dead_letters().await.unwrap()[0].code, "AUTH");
}

#[wasm_bindgen_test]
async fn users_are_isolated() {
    // User A writes offline and signs out.
    let a_name = format!("tidesync:isolation:{}", unique("alice"));
    IdbStore::delete_database(&a_name).await.unwrap();
    let a = open_with(&a_name, &Backend { url: "http://127.0.0.1:9", ..batch() }, None, 5_000).await;
    a.put("notes", &unique("a-note"), json!({"owner": "alice"}), None).await.unwrap();
    let a_op = a.queue().await.unwrap()[0].id.clone();
    a.store().close();
    drop(a);

    // User B signs in on the same browser and syncs: only B's op reaches the server.
    let b = fresh(&format!("tidesync:isolation:{}", unique("bob")), &batch()).await;
    b.put("notes", &unique("b-note"), json!({"owner": "bob"}), None).await.unwrap();
    let b_op = b.queue().await.unwrap()[0].id.clone();
    assert_eq!(b.flush().await.unwrap().accepted, 1);
    let (_, ledger) = http("GET", &format!("{}/admin/ledger", server()), None).await;
    let ids: Vec<&str> = ledger["entries"].as_array().unwrap().iter().filter_map(|e| e["opId"].as_str()).collect();
    assert!(ids.contains(&b_op.as_str()) && !ids.contains(&a_op.as_str()));

    // A comes back and finds the write still queued.
    let a = open_with(&a_name, &batch(), None, 5_000).await;
    assert_eq!(a.queue().await.unwrap()[0].id, a_op);
}

// ---- through the JS API ----

async fn call(p: js_sys::Promise) -> JsValue {
    wasm_bindgen_futures::JsFuture::from(p).await.expect("the promise resolves")
}

fn js(v: Value) -> JsValue {
    js_sys::JSON::parse(&v.to_string()).unwrap()
}

#[wasm_bindgen_test]
async fn an_apps_resolve_function_merges_conflicts() {
    use tidesync::js::engine::SyncEngine;
    let open = |name: String| async move {
        let o = js(json!({"name": name, "userId": "u", "baseUrl": server(), "autoSync": false,
                           "collections": {"notes": {"endpoint": "/api/notes"}}}));
        let notes =
            js_sys::Reflect::get(&js_sys::Reflect::get(&o, &"collections".into()).unwrap(), &"notes".into()).unwrap();
        let resolve = js_sys::Function::new_with_args(
            "base, local, server",
            "return { ...server, body: server.body + '|' + local.body }",
        );
        js_sys::Reflect::set(&notes, &"resolve".into(), &resolve).unwrap();
        js_sys::Reflect::set(&o, &"auth".into(), &sign_in()).unwrap();
        SyncEngine::open_js(o).await.expect("open")
    };
    let (a, b) = (open(unique("ra")).await, open(unique("rb")).await);
    let x = unique("x");
    call(a.put("notes".into(), x.clone(), js(json!({"body": "base"})), JsValue::UNDEFINED)).await;
    call(a.flush()).await;
    call(b.pull(Some("notes".into()))).await;
    call(a.put("notes".into(), x.clone(), js(json!({"body": "A"})), JsValue::UNDEFINED)).await;
    call(a.flush()).await;
    call(b.put("notes".into(), x.clone(), js(json!({"body": "B"})), JsValue::UNDEFINED)).await;
    let report = String::from(js_sys::JSON::stringify(&call(b.flush()).await).unwrap());
    let report: Value = tidesync::core::json::parse(&report).unwrap();
    assert_eq!((report["conflicts"].clone(), report["remaining"].clone()), (json!(1), json!(0)), "{report}");
    assert_eq!(on_server(&batch(), &x).await, Some(json!({"body": "A|B"})));
    a.close();
    b.close();
}

/// `open()`'s options are read field by field: what is given is used, what is missing takes its
/// default (a network tier given in part keeps the default for the rest), and a wrong type names
/// the field.
#[wasm_bindgen_test]
fn open_options_are_read_field_by_field() {
    use tidesync::core::merge::{OnDeleted, Strategy};
    use tidesync::core::op::Priority;
    use tidesync::core::SyncError;
    use tidesync::js::convert::open_options;
    use tidesync::net::rest::UpdateMethod;

    let o = open_options(js(json!({
        "name": "app", "userId": "u1", "baseUrl": "http://example.test", "timeoutMs": 10,
        "autoSync": false, "debug": true, "transport": "rest", "batchEndpoint": "/sync",
        "collections": {
            "notes": {"endpoint": "/api/notes", "priority": "high", "transport": "batch",
                      "merge": {"default": "max", "fields": {"n": "sum"}, "onDeleted": "accept"}},
            "cards": {"endpoint": "/api/cards", "rest": {"update": "patch", "version": "rev", "pullParam": "after"}}
        },
        "retry": {"baseMs": 5, "maxAttempts": 3},
        "network": {"fair": {"batchSize": 3}},
        "breaker": {"threshold": 2}
    })))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (o.db_name.as_str(), o.base_url.as_str(), o.batch_endpoint.as_str()),
        ("tidesync:app:u1", "http://example.test", "/sync")
    );
    assert_eq!((o.timeout_ms, o.auto_sync, o.debug), (10, false, true));
    let notes = o.engine.collections.get("notes").unwrap();
    assert_eq!(
        (notes.priority, notes.merge.default, notes.merge.on_deleted),
        (Priority::High, Strategy::Max, OnDeleted::Accept)
    );
    assert_eq!(notes.merge.fields.get("n"), Some(&Strategy::Sum));
    assert_eq!(o.engine.collections.get("cards").unwrap().priority, Priority::Medium);
    let (nw, cw) = (o.wires.get("notes").unwrap(), o.wires.get("cards").unwrap());
    assert_eq!(
        (nw.wire, cw.wire, cw.update, cw.pull_param.as_str()),
        (Wire::Batch, Wire::Rest, UpdateMethod::Patch, "after")
    );
    assert_eq!(cw.version, VersionSource::Field("rev".into()));
    assert_eq!((o.engine.retry.base_ms, o.engine.retry.max_attempts, o.engine.retry.cap_ms), (5, 3, 30_000));
    assert_eq!((o.engine.net_policy.fair.batch_size, o.engine.net_policy.fair.interval_ms), (3, 60_000));
    assert_eq!((o.engine.breaker_threshold, o.engine.breaker_cooldown_ms), (2, 30_000));

    let base = json!({"name": "app", "baseUrl": "http://example.test", "collections": {"notes": {"endpoint": "/n"}}});
    let refused = |change: Value| {
        let mut v = base.clone();
        for (k, x) in change.as_object().unwrap() {
            v[k.as_str()] = x.clone();
        }
        match open_options(js(v)) {
            Err(SyncError::Config(m)) => m,
            Err(e) => panic!("not a CONFIG error: {e}"),
            Ok(_) => panic!("accepted {change}"),
        }
    };
    assert_eq!(refused(json!({"name": 7})), "options.name: expected a string");
    assert_eq!(refused(json!({"name": ""})), "`name` must not be empty");
    assert_eq!(refused(json!({"timeoutMs": "10"})), "options.timeoutMs: expected a whole number from 0 to 4294967295");
    assert_eq!(refused(json!({"collections": null})), "options.collections: expected an object");
    assert_eq!(refused(json!({"collections": {"notes": {}}})), "collection 'notes' needs an `endpoint`");
    assert_eq!(
        refused(json!({"collections": {"notes": {"endpoint": "/n", "merge": {"fields": {"n": 1}}}}})),
        "merge.fields.n: expected a strategy name"
    );
    assert!(refused(json!({"collections": {"notes": {"endpoint": "/n", "merge": {"default": "newest"}}}}))
        .starts_with("unknown merge strategy 'newest'"));
    assert_eq!(
        refused(json!({"network": {"good": {"batchSize": -1}}})),
        "network.good.batchSize: expected a whole number from 0 to 4294967295"
    );
    assert_eq!(refused(json!({"retry": [1]})), "retry: expected an object");
}

/// JSON numbers read in the wasm are the doubles the browser's `JSON.parse` reads (the fast path
/// and the fallback to the browser's parser), and written back they are what `JSON.stringify`
/// writes.
#[wasm_bindgen_test]
fn numbers_read_and_write_as_the_browser_does() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut texts: Vec<String> = [
        "0.30000000000000004",
        "19.990000000000002",
        "1.7976931348623157e308",
        "5e-324",
        "2.2250738585072014e-308",
        "123456789.123456789",
        "9007199254740993",
        "-0.0",
        "1e21",
        "1.5e-7",
        "0.1",
        "100",
        "-18446744073709551616",
    ]
    .map(String::from)
    .to_vec();
    for _ in 0..2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let f = f64::from_bits(x);
        if f.is_finite() {
            texts.push(format!("{f:e}"));
            texts.push(format!("{:.3}", (x % 1_000_000_007) as f64 / 1000.0));
        }
    }
    for text in &texts {
        let ours = tidesync::core::json::parse(text).unwrap();
        let browser = js_sys::JSON::parse(text).unwrap().as_f64().unwrap();
        let f = ours.as_f64().unwrap();
        assert!(f.to_bits() == browser.to_bits() || (f == 0.0 && browser == 0.0), "{text}: {f:e} vs {browser:e}");
        if ours.is_f64() {
            let written = tidesync::core::json::text(&ours);
            let js = String::from(js_sys::JSON::stringify(&browser.into()).unwrap());
            // The spellings differ only where two are equally near (see core::json::write).
            assert_eq!(written.parse::<f64>().unwrap().to_bits(), js.parse::<f64>().unwrap().to_bits(), "{text}");
        }
    }
}
