//! Browser suite: the engine on real IndexedDB in headless Chromium, against the reference
//! server that `scripts/test` starts on loopback (its URL arrives in `TIDESYNC_TEST_SERVER`).
#![cfg(target_arch = "wasm32")]

use serde_json::{json, Value};
use tidesync::core::engine::{CollectionConfig, Engine, EngineConfig};
use tidesync::core::op::{Priority, SyncStatus};
use tidesync::core::traits::Store;
use tidesync::net::fetch::FetchTransport;
use tidesync::store::idb::IdbStore;
use tidesync::web::WebClock;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const SERVER: Option<&str> = option_env!("TIDESYNC_TEST_SERVER");

fn server() -> &'static str {
    SERVER.expect("TIDESYNC_TEST_SERVER is set by scripts/test")
}

fn config() -> EngineConfig {
    let mut c = EngineConfig::default();
    c.collections.insert(
        "notes".into(),
        CollectionConfig { endpoint: "/api/notes".into(), merge: Default::default(), priority: Priority::Medium },
    );
    c.retry.base_ms = 10;
    c.retry.jitter_ms = 5;
    c
}

fn noop() -> js_sys::Function {
    Closure::<dyn FnMut()>::new(|| {}).into_js_value().unchecked_into()
}

async fn open_db(name: &str, base_url: &str) -> Engine<IdbStore, FetchTransport, WebClock> {
    let store = IdbStore::open(name, noop(), noop()).await.expect("open IndexedDB");
    Engine::open(
        store,
        FetchTransport::new(
            base_url,
            "/api/sync/batch",
            [("notes".to_string(), "/api/notes".to_string())].into(),
            5_000,
            None,
        ),
        WebClock,
        config(),
    )
    .await
    .expect("open engine")
}

async fn fresh(name: &str, base_url: &str) -> Engine<IdbStore, FetchTransport, WebClock> {
    IdbStore::delete_database(name).await.expect("delete old database");
    open_db(name, base_url).await
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", js_sys::Date::now() as u64 ^ (js_sys::Math::random() * 1e9) as u64)
}

async fn server_records(collection: &str) -> Value {
    let resp = wasm_bindgen_futures::JsFuture::from(tidesync::web::fetch_request(
        &web_sys::Request::new_with_str(&format!("{}/api/{collection}", server())).unwrap(),
    ))
    .await
    .expect("GET from the reference server");
    let resp: web_sys::Response = resp.unchecked_into();
    let text = wasm_bindgen_futures::JsFuture::from(resp.text().unwrap()).await.unwrap();
    serde_json::from_str(&text.as_string().unwrap()).unwrap()
}

#[wasm_bindgen_test]
async fn records_survive_closing_and_reopening() {
    let name = unique("reopen");
    let engine = fresh(&name, "http://127.0.0.1:9").await;
    engine.put("notes", "a", json!({"title": "first"}), None).await.unwrap();
    engine.put("notes", "b", json!({"title": "second"}), None).await.unwrap();
    engine.patch("notes", "a", json!({"body": "more"}), None).await.unwrap();
    assert!(engine.delete("notes", "b", None).await.unwrap());
    let device = engine.device_id().to_string();
    engine.store().close();
    drop(engine);

    let engine = open_db(&name, "http://127.0.0.1:9").await;
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
async fn flush_marks_records_synced_and_leaves_no_op() {
    let name = unique("flush");
    let engine = fresh(&name, server()).await;
    let id = unique("note");
    engine.put("notes", &id, json!({"title": "hello"}), None).await.unwrap();
    engine.put("notes", &format!("{id}-2"), json!({"title": "world"}), None).await.unwrap();
    let report = engine.flush().await.unwrap();
    assert_eq!((report.sent, report.accepted, report.remaining), (2, 2, 0), "{report:?}");
    let rec = engine.record("notes", &id).await.unwrap().unwrap();
    assert_eq!(rec.sync_status, SyncStatus::Synced);
    assert_eq!(rec.version, Some(1));
    assert_eq!(rec.base, Some(json!({"title": "hello"})));
    assert!(engine.store().load_queue().await.unwrap().0.is_empty());

    // An update goes out against the server's version.
    engine.put("notes", &id, json!({"title": "hello again"}), None).await.unwrap();
    assert_eq!(engine.queue().await.unwrap()[0].base_version, Some(1));
    engine.flush().await.unwrap();
    assert_eq!(engine.record("notes", &id).await.unwrap().unwrap().version, Some(2));

    let listed = server_records("notes").await;
    let on_server = listed["items"].as_array().unwrap().iter().find(|r| r["entityId"] == json!(id)).cloned();
    assert_eq!(
        on_server.map(|r| (r["data"].clone(), r["version"].clone())),
        Some((json!({"title": "hello again"}), json!(2)))
    );
}

#[wasm_bindgen_test]
async fn flush_while_the_server_is_down_keeps_every_op() {
    let name = unique("down");
    // Nothing listens on port 9 of loopback: every request fails at the network level.
    let engine = fresh(&name, "http://127.0.0.1:9").await;
    for i in 0..5 {
        engine.put("notes", &format!("n{i}"), json!({"i": i}), Some(Priority::High)).await.unwrap();
    }
    let report = engine.flush().await.unwrap();
    assert_eq!((report.sent, report.accepted, report.retried, report.remaining), (5, 0, 5, 5), "{report:?}");
    let queue = engine.queue().await.unwrap();
    assert_eq!(queue.len(), 5);
    assert!(queue.iter().all(|o| o.attempts == 1 && o.sent && o.last_error.is_some()), "{queue:?}");
    for i in 0..5 {
        let r = engine.record("notes", &format!("n{i}")).await.unwrap().unwrap();
        assert_eq!((r.data, r.sync_status), (Some(json!({"i": i})), SyncStatus::Pending));
    }
}

#[wasm_bindgen_test]
async fn a_second_device_pulls_changes_tombstones_and_rebases_pending_edits() {
    let a = fresh(&unique("dev-a"), server()).await;
    let b = fresh(&unique("dev-b"), server()).await;
    let (x, y) = (unique("x"), unique("y"));
    a.put("notes", &x, json!({"title": "x1", "n": 1}), None).await.unwrap();
    a.put("notes", &y, json!({"title": "y1"}), None).await.unwrap();
    a.flush().await.unwrap();

    // A new device bootstraps from pull alone.
    let r = b.pull(Some("notes")).await.unwrap();
    assert!(r.applied >= 2, "{r:?}");
    let bx = b.record("notes", &x).await.unwrap().unwrap();
    assert_eq!(
        (bx.data, bx.version, bx.sync_status),
        (Some(json!({"title": "x1", "n": 1})), Some(1), SyncStatus::Synced)
    );

    // A deletes y and edits x's title; B meanwhile edits x's `n` offline.
    a.delete("notes", &y, None).await.unwrap();
    a.patch("notes", &x, json!({"title": "x2"}), None).await.unwrap();
    a.flush().await.unwrap();
    b.patch("notes", &x, json!({"n": 2}), None).await.unwrap();

    let r = b.pull(Some("notes")).await.unwrap();
    assert_eq!((r.deleted, r.rebased), (1, 1), "{r:?}");
    assert_eq!(b.get("notes", &y).await.unwrap(), None, "the tombstone deleted y");
    // The pending edit was rebased: both changes kept, re-queued against the server's version 2.
    assert_eq!(b.get("notes", &x).await.unwrap(), Some(json!({"title": "x2", "n": 2})));
    let q = b.queue().await.unwrap();
    assert_eq!((q.len(), q[0].base_version), (1, Some(2)), "{q:?}");
    b.flush().await.unwrap();
    a.pull(Some("notes")).await.unwrap();
    assert_eq!(a.get("notes", &x).await.unwrap(), Some(json!({"title": "x2", "n": 2})));
    assert_eq!(a.record("notes", &x).await.unwrap().unwrap().version, Some(3));
}
