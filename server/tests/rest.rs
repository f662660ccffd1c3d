//! REST CRUD under `/api/{collection}`: ETags, If-Match, conflicts and idempotency keys.

mod common;

use common::{op, TempDir, TestServer};
use serde_json::{json, Value};

#[tokio::test]
async fn crud_round_trip_with_etags() {
    let dir = TempDir::new("rest-crud");
    let server = TestServer::start(dir.path()).await;

    // A client-sent version is not data: the server owns it.
    let resp = server.post("/api/todos", &json!({"id": "t1", "title": "milk", "tags": ["a"], "version": 42})).await;
    assert_eq!(resp.status, 201);
    assert_eq!(resp.header("etag"), Some("\"1\""));
    assert_eq!(resp.json(), json!({"id": "t1", "version": 1, "title": "milk", "tags": ["a"]}));

    let resp = server.get("/api/todos/t1").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("etag"), Some("\"1\""));
    assert_eq!(resp.json()["title"], "milk");

    let resp = server
        .send_json("PUT", "/api/todos/t1", &[("If-Match", "\"1\"")], &json!({"title": "oat milk", "done": false}))
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("etag"), Some("\"2\""));
    assert_eq!(
        resp.json(),
        json!({"id": "t1", "version": 2, "title": "oat milk", "done": false}),
        "PUT replaces the whole record"
    );

    let resp = server
        .send_json(
            "PATCH",
            "/api/todos/t1",
            &[("If-Match", "2")],
            &json!({"done": true, "title": null, "note": {"k": 1}}),
        )
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("etag"), Some("\"3\""));
    assert_eq!(resp.json(), json!({"id": "t1", "version": 3, "done": true, "note": {"k": 1}}));

    let resp = server.request("DELETE", "/api/todos/t1", &[("If-Match", "\"3\"")], b"").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json(), json!({"success": true, "id": "t1", "version": 4}));

    let resp = server.get("/api/todos/t1").await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json(), json!({"success": false, "error": "Record not found", "code": "NOT_FOUND"}));

    // REST writes share the change sequence, so a pull sees the tombstone.
    let feed = server.get("/api/todos?since=0").await.json();
    assert_eq!(feed["cursor"], 4);
    assert_eq!(feed["items"][0]["deleted"], true);
    assert_eq!(feed["items"][0]["version"], 4);
    server.stop().await;
}

#[tokio::test]
async fn stale_if_match_is_412_with_the_reference_conflict_body() {
    let dir = TempDir::new("rest-412");
    let server = TestServer::start(dir.path()).await;
    server.post("/api/todos", &json!({"id": "t1", "n": 1})).await;
    server.send_json("PUT", "/api/todos/t1", &[], &json!({"n": 2})).await;

    for (method, body) in [("PUT", json!({"n": 3})), ("PATCH", json!({"n": 3})), ("DELETE", Value::Null)] {
        let resp = server.send_json(method, "/api/todos/t1", &[("If-Match", "\"1\"")], &body).await;
        assert_eq!(resp.status, 412, "{method}");
        assert_eq!(resp.header("etag"), Some("\"2\""));
        let mut body = resp.json();
        assert!(body["conflict"]["conflictTimestamp"].is_string());
        body["conflict"]["conflictTimestamp"] = Value::Null;
        assert_eq!(
            body,
            json!({
                "success": false,
                "error": "Version conflict",
                "code": "CONFLICT",
                "conflict": {
                    "type": "version",
                    "serverVersion": 2,
                    "clientVersion": 1,
                    "serverData": {"id": "t1", "version": 2, "n": 2},
                    "conflictTimestamp": null,
                },
            })
        );
    }

    // `*` matches any current version.
    let resp = server.send_json("PATCH", "/api/todos/t1", &[("If-Match", "*")], &json!({"m": 1})).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["version"], 3);
    server.stop().await;
}

#[tokio::test]
async fn create_conflicts_ids_and_missing_records() {
    let dir = TempDir::new("rest-create");
    let server = TestServer::start(dir.path()).await;
    server.post("/api/todos", &json!({"id": "t1", "n": 1})).await;

    let resp = server.post("/api/todos", &json!({"id": "t1", "n": 2})).await;
    assert_eq!(resp.status, 409);
    let body = resp.json();
    assert_eq!(body["code"], "CONFLICT");
    assert_eq!(body["conflict"]["serverVersion"], 1);
    assert_eq!(body["conflict"]["clientVersion"], Value::Null);
    assert_eq!(body["conflict"]["serverData"], json!({"id": "t1", "version": 1, "n": 1}));

    let resp = server.post("/api/todos", &json!({"title": "no id"})).await;
    assert_eq!(resp.status, 201);
    let generated = resp.json()["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(generated.len(), 36, "uuid-shaped id: {generated}");
    assert_eq!(server.get(&format!("/api/todos/{generated}")).await.status, 200);

    let resp = server.post("/api/todos", &json!({"id": 7, "n": 7})).await;
    assert_eq!(resp.status, 201);
    assert_eq!(resp.json()["id"], "7");
    assert_eq!(server.get("/api/todos/7").await.json()["n"], 7);

    let resp = server.post("/api/todos", &json!({"id": {"bad": 1}})).await;
    assert_eq!(resp.status, 400);

    for method in ["PUT", "PATCH", "DELETE"] {
        let resp = server.send_json(method, "/api/todos/missing", &[], &json!({"n": 1})).await;
        assert_eq!(resp.status, 404, "{method}");
        assert_eq!(resp.json()["code"], "NOT_FOUND");
    }

    for body in [&b"[1]"[..], b"{oops", b"\"text\""] {
        let resp = server.request("PUT", "/api/todos/t1", &[], body).await;
        assert_eq!(resp.status, 400);
        assert_eq!(resp.json()["success"], false);
    }
    assert_eq!(server.get("/api/todos/t1").await.json()["version"], 1);
    server.stop().await;
}

#[tokio::test]
async fn idempotency_key_replays_the_stored_response() {
    let dir = TempDir::new("rest-idem");
    let server = TestServer::start(dir.path()).await;
    let key = [("Idempotency-Key", "key-1")];

    let first = server.send_json("POST", "/api/todos", &key, &json!({"id": "t1", "n": 1})).await;
    assert_eq!(first.status, 201);
    // Same key, different body: still the first response, nothing applied.
    let again = server.send_json("POST", "/api/todos", &key, &json!({"id": "t1", "n": 99})).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.header("etag"), Some("\"1\""));
    assert_eq!(again.json(), first.json());

    // X-Operation-ID alone works as the key too.
    let op_key = [("X-Operation-ID", "op-7")];
    let patched = server.send_json("PATCH", "/api/todos/t1", &op_key, &json!({"n": 2})).await;
    assert_eq!(patched.json()["version"], 2);
    let replayed = server.send_json("PATCH", "/api/todos/t1", &op_key, &json!({"n": 2})).await;
    assert_eq!(replayed.status, 200);
    assert_eq!(replayed.json(), patched.json());

    // A keyed conflict is replayed as the same conflict.
    let stale = [("Idempotency-Key", "key-2"), ("If-Match", "\"1\"")];
    let conflict = server.send_json("PUT", "/api/todos/t1", &stale, &json!({"n": 3})).await;
    assert_eq!(conflict.status, 412);
    let conflict_again = server.send_json("PUT", "/api/todos/t1", &stale, &json!({"n": 3})).await;
    assert_eq!(conflict_again.status, 412);
    assert_eq!(conflict_again.json(), conflict.json());

    let record = server.get("/api/todos/t1").await.json();
    assert_eq!(record, json!({"id": "t1", "version": 2, "n": 2}));
    let stats = server.stats().await;
    assert_eq!(stats["cursor"], 2);
    assert_eq!(stats["ledgerEntries"], 3);
    let ledger = server.get("/admin/ledger").await.json();
    assert_eq!(ledger["entries"][0]["opId"], "key-1");
    assert_eq!(ledger["entries"][0]["deliveries"], 2);
    assert_eq!(ledger["entries"][0]["status"], 201);

    let long_key = "k".repeat(201);
    let resp = server.send_json("POST", "/api/todos", &[("Idempotency-Key", &long_key)], &json!({"id": "t2"})).await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()["code"], "INVALID_IDEMPOTENCY_KEY");
    assert_eq!(server.get("/api/todos/t2").await.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn rest_and_batch_share_records_and_the_ledger() {
    let dir = TempDir::new("rest-batch");
    let server = TestServer::start(dir.path()).await;
    server.post("/api/todos", &json!({"id": "t1", "title": "rest"})).await;

    let resp = server.batch(json!([op("b-1", "update", "t1", json!({"title": "batch"}), Some(1))])).await;
    assert_eq!(resp["results"][0]["data"]["version"], 2);
    let record = server.get("/api/todos/t1").await;
    assert_eq!(record.header("etag"), Some("\"2\""));
    assert_eq!(record.json(), json!({"id": "t1", "version": 2, "title": "batch"}));

    // A batch op id reused as an Idempotency-Key is the same operation: not applied again.
    let resp =
        server.send_json("PUT", "/api/todos/t1", &[("Idempotency-Key", "b-1")], &json!({"title": "again"})).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("etag"), Some("\"2\""));
    assert_eq!(resp.json()["operationId"], "b-1");
    assert_eq!(server.get("/api/todos/t1").await.json()["version"], 2);
    server.stop().await;
}
