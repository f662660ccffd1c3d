//! `POST /api/sync/batch`, the idempotency ledger and the pull feed, over real sockets.

mod common;

use common::{op, TempDir, TestServer};
use serde_json::{json, Value};

/// tidesync's checksum of a payload (its records are tidesync `Value`s: through the JSON text).
fn checksum(v: &Value) -> String {
    tidesync::core::checksum::checksum(&tidesync::core::json::parse(&v.to_string()).unwrap())
}

#[tokio::test]
async fn create_update_delete_bump_versions() {
    let dir = TempDir::new("crud");
    let server = TestServer::start(dir.path()).await;
    let payload = json!({"title": "milk", "done": false});
    let mut create = op("op-1", "create", "t1", payload.clone(), None);
    create["checksum"] = json!(checksum(&payload));

    let resp = server.batch(json!([create])).await;
    assert_eq!(resp["success"], true);
    assert_eq!(resp["metrics"], json!({"processedCount": 1, "successCount": 1, "conflictCount": 0, "errorCount": 0}));
    let result = &resp["results"][0];
    assert_eq!(result["operationId"], "op-1");
    assert_eq!(result["status"], 200);
    let record = &result["data"];
    assert_eq!(record["entityType"], "todos");
    assert_eq!(record["entityId"], "t1");
    assert_eq!(record["version"], 1);
    assert_eq!(record["data"], payload);
    assert_eq!(record["deleted"], false);
    assert_eq!(record["checksum"], json!(checksum(&payload)));
    assert!(record["updatedAt"].as_str().is_some_and(|t| t.ends_with('Z')));

    let updated = json!({"title": "oat milk", "done": true});
    let resp = server.batch(json!([op("op-2", "update", "t1", updated.clone(), Some(1))])).await;
    assert_eq!(resp["results"][0]["data"]["version"], 2);
    assert_eq!(resp["results"][0]["data"]["data"], updated);

    let resp = server.batch(json!([op("op-3", "delete", "t1", Value::Null, Some(2))])).await;
    let tombstone = &resp["results"][0]["data"];
    assert_eq!(tombstone["version"], 3);
    assert_eq!(tombstone["deleted"], true);
    assert_eq!(tombstone["data"], Value::Null);
    assert_eq!(tombstone["checksum"], Value::Null);

    // Deleting again (or deleting what never existed) succeeds without a new version.
    let resp = server
        .batch(json!(
            [op("op-4", "delete", "t1", Value::Null, None), op("op-5", "delete", "never", Value::Null, None),]
        ))
        .await;
    assert_eq!(resp["success"], true);
    assert_eq!(resp["results"][0]["data"]["version"], 3);
    assert_eq!(resp["results"][1]["data"]["version"], 0);
    assert_eq!(resp["results"][1]["data"]["deleted"], true);

    let stats = server.stats().await;
    assert_eq!(stats["records"], 1);
    assert_eq!(stats["liveRecords"], 0);
    assert_eq!(stats["cursor"], 3, "only applied mutations take a sequence number");
    server.stop().await;
}

#[tokio::test]
async fn create_on_live_record_conflicts_unless_base_version_matches() {
    let dir = TempDir::new("create-conflict");
    let server = TestServer::start(dir.path()).await;
    server.batch(json!([op("c1", "create", "t1", json!({"n": 1}), None)])).await;

    let resp = server.batch(json!([op("c2", "create", "t1", json!({"n": 2}), None)])).await;
    assert_eq!(resp["success"], false);
    assert_eq!(resp["metrics"]["conflictCount"], 1);
    let result = &resp["results"][0];
    assert_eq!(result["status"], 409);
    assert_eq!(result["error"], "Version conflict");
    let conflict = &result["conflict"];
    assert_eq!(conflict["type"], "version");
    assert_eq!(conflict["serverVersion"], 1);
    assert_eq!(conflict["clientVersion"], Value::Null);
    assert_eq!(conflict["serverData"], json!({"n": 1}));
    assert_eq!(conflict["serverRecord"]["version"], 1);
    assert_eq!(conflict["serverRecord"]["entityId"], "t1");
    assert!(conflict["conflictTimestamp"].is_string());

    // A create that knows the current version is an update.
    let resp = server.batch(json!([op("c3", "create", "t1", json!({"n": 3}), Some(1))])).await;
    assert_eq!(resp["results"][0]["data"]["version"], 2);

    // Re-creating after a delete continues the version line instead of restarting at 1.
    server.batch(json!([op("c4", "delete", "t1", Value::Null, None)])).await;
    let resp = server.batch(json!([op("c5", "create", "t1", json!({"n": 5}), None)])).await;
    assert_eq!(resp["results"][0]["data"]["version"], 4);
    assert_eq!(resp["results"][0]["data"]["deleted"], false);
    server.stop().await;
}

#[tokio::test]
async fn update_and_delete_conflicts() {
    let dir = TempDir::new("update-conflict");
    let server = TestServer::start(dir.path()).await;

    let resp = server.batch(json!([op("u1", "update", "ghost", json!({"a": 1}), None)])).await;
    let result = &resp["results"][0];
    assert_eq!(result["status"], 404);
    assert_eq!(result["error"], "Record deleted");
    assert_eq!(result["conflict"]["type"], "deleted");
    assert_eq!(result["conflict"]["serverVersion"], 0);
    assert_eq!(result["conflict"]["serverData"], Value::Null);
    assert_eq!(result["conflict"]["serverRecord"], Value::Null);

    server
        .batch(json!([
            op("u2", "create", "t1", json!({"a": 1}), None),
            op("u3", "update", "t1", json!({"a": 2}), Some(1)),
        ]))
        .await;
    let resp = server
        .batch(json!([
            op("u4", "update", "t1", json!({"a": 3}), Some(1)),
            op("u5", "delete", "t1", Value::Null, Some(1)),
        ]))
        .await;
    assert_eq!(resp["metrics"]["conflictCount"], 2);
    for result in resp["results"].as_array().expect("results") {
        assert_eq!(result["status"], 409);
        assert_eq!(result["conflict"]["serverVersion"], 2);
        assert_eq!(result["conflict"]["clientVersion"], 1);
        assert_eq!(result["conflict"]["serverData"], json!({"a": 2}));
    }

    // Without a base version the write wins (full replacement).
    let resp = server.batch(json!([op("u6", "update", "t1", json!({"b": true}), None)])).await;
    assert_eq!(resp["results"][0]["data"]["version"], 3);
    assert_eq!(resp["results"][0]["data"]["data"], json!({"b": true}));

    server.batch(json!([op("u7", "delete", "t1", Value::Null, Some(3))])).await;
    let resp = server.batch(json!([op("u8", "update", "t1", json!({"c": 1}), Some(3))])).await;
    let conflict = &resp["results"][0]["conflict"];
    assert_eq!(resp["results"][0]["status"], 404);
    assert_eq!(conflict["type"], "deleted");
    assert_eq!(conflict["serverVersion"], 4);
    assert_eq!(conflict["serverRecord"]["deleted"], true);
    server.stop().await;
}

#[tokio::test]
async fn same_op_id_returns_first_result_and_applies_once() {
    let dir = TempDir::new("ledger");
    let server = TestServer::start(dir.path()).await;
    let ops = json!([
        op("dup-1", "create", "t1", json!({"v": "first"}), None),
        op("dup-2", "update", "t1", json!({"v": "second"}), Some(7)),
    ]);
    let first = server.batch(ops.clone()).await;
    assert_eq!(first["results"][0]["data"]["version"], 1);
    assert_eq!(first["results"][1]["status"], 409);

    // Make the earlier conflict no longer true: the replay must still return the stored result.
    server.batch(json!([op("other", "update", "t1", json!({"v": "x"}), None)])).await;
    let second = server.batch(ops).await;
    assert_eq!(second["results"], first["results"]);

    let record = server.get("/api/todos/t1").await.json();
    assert_eq!(record["version"], 2, "replayed create must not apply again");
    assert_eq!(record["v"], "x");

    let ledger = server.get("/admin/ledger").await.json();
    let entries = ledger["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["opId"], "dup-1");
    assert_eq!(entries[0]["deliveries"], 2);
    assert_eq!(entries[0]["status"], 200);
    assert_eq!(entries[1]["opId"], "dup-2");
    assert_eq!(entries[1]["status"], 409);
    assert_eq!(entries[1]["deliveries"], 2);
    assert_eq!(entries[2]["deliveries"], 1);
    assert_eq!(server.stats().await["cursor"], 2);
    server.stop().await;
}

#[tokio::test]
async fn ledger_and_records_survive_a_restart() {
    let dir = TempDir::new("restart");
    let ops = json!([op("persist-1", "create", "t1", json!({"kept": true}), None)]);

    let server = TestServer::start(dir.path()).await;
    let first = server.batch(ops.clone()).await;
    assert_eq!(first["results"][0]["data"]["version"], 1);
    server.stop().await;
    assert!(dir.path().join(tidesync_server::DB_FILE).exists());

    let server = TestServer::start(dir.path()).await;
    let again = server.batch(ops).await;
    assert_eq!(again["results"], first["results"]);
    let record = server.get("/api/todos/t1").await;
    assert_eq!(record.status, 200);
    assert_eq!(record.json(), json!({"id": "t1", "version": 1, "kept": true}));
    let stats = server.stats().await;
    assert_eq!(stats["cursor"], 1);
    assert_eq!(stats["ledgerEntries"], 1);
    let ledger = server.get("/admin/ledger").await.json();
    assert_eq!(ledger["entries"][0]["deliveries"], 2);
    server.stop().await;
}

#[tokio::test]
async fn checksum_mismatch_is_422_and_recorded() {
    let dir = TempDir::new("checksum");
    let server = TestServer::start(dir.path()).await;
    let mut bad = op("sum-1", "create", "t1", json!({"a": 1}), None);
    bad["checksum"] = json!(checksum(&json!({"a": 2})));
    // Key order must not matter: the checksum is over canonical JSON.
    let mut good = op("sum-2", "create", "t2", json!({"b": 1, "a": [1, 2]}), None);
    good["checksum"] = json!(checksum(&json!({"a": [1, 2], "b": 1})));
    let mut delete = op("sum-3", "delete", "t3", Value::Null, None);
    delete["checksum"] = json!("not checked for deletes");

    let resp = server.batch(json!([bad, good, delete])).await;
    assert_eq!(resp["results"][0]["status"], 422);
    assert_eq!(resp["results"][0]["error"], "checksum mismatch");
    assert_eq!(resp["results"][0]["success"], false);
    assert_eq!(resp["results"][1]["status"], 200);
    assert_eq!(resp["results"][2]["status"], 200);
    assert_eq!(resp["metrics"]["errorCount"], 1);
    assert_eq!(server.get("/api/todos/t1").await.status, 404);
    let ledger = server.get("/admin/ledger").await.json();
    assert_eq!(ledger["entries"][0]["opId"], "sum-1");
    assert_eq!(ledger["entries"][0]["status"], 422);
    server.stop().await;
}

#[tokio::test]
async fn invalid_operations_get_400_results() {
    let dir = TempDir::new("invalid-ops");
    let server = TestServer::start(dir.path()).await;
    let resp = server
        .batch(json!([
            {"id": "bad-1", "type": "upsert", "entityType": "todos", "entityId": "t1", "payload": {}},
            {"id": "bad-2", "type": "create", "entityType": "todos", "payload": {}},
            {"id": "bad-3", "type": "create", "entityType": "todos", "entityId": "t1", "payload": [1]},
            {"id": "bad-4", "type": "update", "entityType": "todos", "entityId": "t1", "payload": {}, "baseVersion": "1"},
            {"type": "create", "entityType": "todos", "entityId": "t1", "payload": {}},
            {"id": "bad-6", "type": "create", "entityType": "x".repeat(201), "entityId": "t1", "payload": {}},
            "not an object",
            op("ok-1", "create", "t1", json!({}), None),
        ]))
        .await;
    assert_eq!(resp["success"], false);
    assert_eq!(resp["metrics"], json!({"processedCount": 8, "successCount": 1, "conflictCount": 0, "errorCount": 7}));
    let results = resp["results"].as_array().expect("results");
    for result in &results[..7] {
        assert_eq!(result["status"], 400, "{result}");
        assert_eq!(result["success"], false);
        assert!(result["error"].is_string());
    }
    assert_eq!(results[0]["operationId"], "bad-1");
    assert!(results[0]["error"].as_str().is_some_and(|e| e.contains("upsert")));
    assert_eq!(results[4]["operationId"], Value::Null);
    assert_eq!(results[7]["data"]["version"], 1);
    // Ops with an id are in the ledger; the one without cannot be.
    assert_eq!(server.stats().await["ledgerEntries"], 6);
    server.stop().await;
}

#[tokio::test]
async fn malformed_batch_requests_are_json_400s() {
    let dir = TempDir::new("malformed");
    let server = TestServer::start(dir.path()).await;
    let cases: [(&[u8], &str); 5] = [
        (b"{\"operations\": [", "INVALID_JSON"),
        (b"", "INVALID_JSON"),
        (b"[1, 2]", "INVALID_REQUEST"),
        (b"{\"operations\": 5}", "INVALID_REQUEST"),
        (b"{\"operations\": [], \"deviceId\": 7}", "INVALID_REQUEST"),
    ];
    for (body, code) in cases {
        let resp = server.request("POST", "/api/sync/batch", &[("Content-Type", "application/json")], body).await;
        assert_eq!(resp.status, 400, "{}", String::from_utf8_lossy(body));
        assert_eq!(resp.header("content-type"), Some("application/json"));
        let json = resp.json();
        assert_eq!(json["success"], false);
        assert_eq!(json["code"], code);
        assert!(json["error"].is_string());
    }

    let too_many: Vec<Value> =
        (0..1001).map(|i| op(&format!("m{i}"), "create", &format!("t{i}"), json!({}), None)).collect();
    let resp = server.post("/api/sync/batch", &json!({"operations": too_many})).await;
    assert_eq!(resp.status, 400);
    assert!(resp.json()["error"].as_str().is_some_and(|e| e.contains("1001")));
    assert_eq!(server.stats().await["records"], 0);
    server.stop().await;
}

#[tokio::test]
async fn a_full_batch_of_1000_applies() {
    let dir = TempDir::new("full-batch");
    let server = TestServer::start(dir.path()).await;
    let ops: Vec<Value> =
        (0..1000).map(|i| op(&format!("f{i}"), "create", &format!("t{i:04}"), json!({"i": i}), None)).collect();
    let resp = server.batch(Value::Array(ops)).await;
    assert_eq!(resp["success"], true);
    assert_eq!(resp["metrics"]["successCount"], 1000);
    assert_eq!(resp["results"][999]["operationId"], "f999");
    let stats = server.stats().await;
    assert_eq!(stats["liveRecords"], 1000);
    assert_eq!(stats["cursor"], 1000);
    server.stop().await;
}

#[tokio::test]
async fn pull_since_includes_tombstones_and_pages_by_cursor() {
    let dir = TempDir::new("pull");
    let server = TestServer::start(dir.path()).await;
    let mut notes = op("n1", "create", "n1", json!({"other": true}), None);
    notes["entityType"] = json!("notes");
    server
        .batch(json!([
            op("p1", "create", "b", json!({"x": "b"}), None),  // seq 1
            op("p2", "create", "a", json!({"x": "a"}), None),  // seq 2
            notes,                                             // seq 3, other collection
            op("p3", "create", "c", json!({"x": "c"}), None),  // seq 4
            op("p4", "delete", "b", Value::Null, None),        // seq 5
            op("p5", "update", "a", json!({"x": "a2"}), None), // seq 6
        ]))
        .await;

    let snapshot = server.get("/api/todos").await.json();
    assert_eq!(snapshot["cursor"], 6);
    let ids: Vec<&str> =
        snapshot["items"].as_array().expect("items").iter().filter_map(|r| r["entityId"].as_str()).collect();
    assert_eq!(ids, ["c", "a"], "live records only, in change order");
    assert_eq!(snapshot["hasMore"], false);

    // A snapshot larger than `limit` comes a page at a time; the feed from the page's cursor brings
    // the rest of the live records (and the tombstones since).
    let first = server.get("/api/todos?limit=1").await.json();
    let ids: Vec<&str> =
        first["items"].as_array().expect("items").iter().filter_map(|r| r["entityId"].as_str()).collect();
    assert_eq!(ids, ["c"]);
    assert_eq!((first["cursor"].clone(), first["hasMore"].clone()), (json!(4), json!(true)));
    let rest = server.get("/api/todos?since=4").await.json();
    let ids: Vec<&str> =
        rest["items"].as_array().expect("items").iter().filter_map(|r| r["entityId"].as_str()).collect();
    assert_eq!(ids, ["b", "a"], "b's tombstone, then a");
    assert_eq!(rest["hasMore"], false);

    let feed = server.get("/api/todos?since=0").await.json();
    let items = feed["items"].as_array().expect("items");
    let order: Vec<(&str, bool)> =
        items.iter().map(|r| (r["entityId"].as_str().unwrap_or(""), r["deleted"].as_bool().unwrap_or(false))).collect();
    assert_eq!(order, [("c", false), ("b", true), ("a", false)]);
    assert_eq!(items[1]["data"], Value::Null);
    assert_eq!(items[1]["version"], 2);
    assert_eq!(items[2]["data"], json!({"x": "a2"}));
    assert_eq!(feed["cursor"], 6);
    assert_eq!(feed["hasMore"], false);

    let page = server.get("/api/todos?since=0&limit=2").await.json();
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["cursor"], 5);
    assert_eq!(page["hasMore"], true);
    let page = server.get("/api/todos?since=5&limit=2").await.json();
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["items"][0]["entityId"], "a");
    assert_eq!(page["cursor"], 6);
    assert_eq!(page["hasMore"], false);

    let empty = server.get("/api/todos?since=6").await.json();
    assert_eq!(empty, json!({"items": [], "cursor": 6, "hasMore": false}));

    let bad = server.get("/api/todos?since=abc").await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["code"], "INVALID_CURSOR");
    let bad = server.get("/api/todos?since=1&limit=many").await;
    assert_eq!(bad.status, 400);
    server.stop().await;
}
