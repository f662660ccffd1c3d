//! Fault injection, CORS, body limits, static files and the admin endpoints.

mod common;

use std::time::Instant;

use common::{op, TempDir, TestServer};
use serde_json::{json, Value};

#[tokio::test]
async fn fail_next_answers_the_fault_without_touching_the_db() {
    let dir = TempDir::new("fail-next");
    let server = TestServer::start(dir.path()).await;
    server.set_faults(json!({"failNext": 2, "failStatus": 503, "retryAfter": "2"})).await;
    let body = json!({"operations": [op("f-1", "create", "t1", json!({}), None)]});

    for _ in 0..2 {
        let resp = server.post("/api/sync/batch", &body).await;
        assert_eq!(resp.status, 503);
        assert_eq!(resp.header("retry-after"), Some("2"));
        assert_eq!(resp.json(), json!({"success": false, "error": "injected failure", "code": "INJECTED_FAILURE"}));
        // Admin routes are never faulted.
        assert_eq!(server.get("/healthz").await.json(), json!({"ok": true}));
    }
    assert_eq!(server.stats().await["records"], 0);
    assert_eq!(server.get("/admin/faults").await.json()["failNext"], 0);

    let resp = server.post("/api/sync/batch", &body).await;
    assert_eq!(resp.status, 200);
    let stats = server.stats().await;
    assert_eq!(stats["records"], 1);
    assert_eq!(stats["requests"], 3);
    server.stop().await;
}

#[tokio::test]
async fn fail_rate_and_custom_status() {
    let dir = TempDir::new("fail-rate");
    let server = TestServer::start(dir.path()).await;
    server.set_faults(json!({"failRate": 1.0, "failStatus": 429})).await;
    for _ in 0..5 {
        let resp = server.get("/api/todos").await;
        assert_eq!(resp.status, 429);
        assert_eq!(resp.header("retry-after"), None);
    }
    server.set_faults(json!({"failRate": 0.0})).await;
    for _ in 0..5 {
        assert_eq!(server.get("/api/todos").await.status, 200);
    }
    server.stop().await;
}

#[tokio::test]
async fn latency_delays_api_requests_only() {
    let dir = TempDir::new("latency");
    let server = TestServer::start(dir.path()).await;
    server.set_faults(json!({"latencyMs": 300})).await;
    let started = Instant::now();
    assert_eq!(server.get("/api/todos").await.status, 200);
    assert!(started.elapsed().as_millis() >= 300);
    let started = Instant::now();
    assert_eq!(server.get("/admin/stats").await.status, 200);
    assert!(started.elapsed().as_millis() < 300);
    server.stop().await;
}

#[tokio::test]
async fn dropped_response_is_applied_and_the_retry_is_deduplicated() {
    let dir = TempDir::new("drop");
    let server = TestServer::start(dir.path()).await;
    server.set_faults(json!({"dropResponseNext": 1})).await;
    let body = json!({"operations": [op("d-1", "create", "t1", json!({"n": 1}), None)]});

    let lost = server.post("/api/sync/batch", &body).await;
    assert_eq!(lost.status, 504);
    assert_eq!(lost.json(), json!({"success": false, "error": "response dropped", "code": "DROPPED"}));
    assert_eq!(server.get("/api/todos/t1").await.json()["version"], 1);

    let retry = server.post("/api/sync/batch", &body).await.json();
    assert_eq!(retry["results"][0]["data"]["version"], 1);
    let ledger = server.get("/admin/ledger").await.json();
    assert_eq!(ledger["entries"][0]["deliveries"], 2);
    assert_eq!(server.stats().await["cursor"], 1);

    // The same for a keyed REST write.
    server.set_faults(json!({"dropResponseNext": 1})).await;
    let key = [("Idempotency-Key", "rest-drop")];
    let lost = server.send_json("PATCH", "/api/todos/t1", &key, &json!({"n": 2})).await;
    assert_eq!(lost.status, 504);
    let retry = server.send_json("PATCH", "/api/todos/t1", &key, &json!({"n": 2})).await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.json(), json!({"id": "t1", "version": 2, "n": 2}));
    assert_eq!(server.stats().await["cursor"], 2);
    server.stop().await;
}

#[tokio::test]
async fn each_malformed_kind() {
    let dir = TempDir::new("malformed-kinds");
    let server = TestServer::start(dir.path()).await;
    let batch = json!({"operations": [op("m-1", "create", "t1", json!({}), None)]});

    server.set_faults(json!({"malformedNext": 1, "malformedKind": "html"})).await;
    let resp = server.post("/api/sync/batch", &batch).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("text/html"));
    assert_eq!(resp.text(), "<html><body>Bad Gateway</body></html>");

    server.set_faults(json!({"malformedNext": 1, "malformedKind": "truncated"})).await;
    let resp = server.post("/api/sync/batch", &batch).await;
    assert_eq!(resp.status, 200);
    assert!(resp.text().starts_with('{'));
    assert!(serde_json::from_slice::<Value>(&resp.body).is_err());

    server.set_faults(json!({"malformedNext": 1, "malformedKind": "wrongTypes"})).await;
    let resp = server.post("/api/sync/batch", &batch).await;
    assert_eq!(resp.json(), json!({"success": "yes", "results": 5}));

    server.set_faults(json!({"malformedNext": 1, "malformedKind": "liar"})).await;
    let resp = server.post("/api/sync/batch", &batch).await;
    assert_eq!(resp.json(), json!({"success": true, "results": []}));

    server.set_faults(json!({"malformedNext": 1, "malformedKind": "huge"})).await;
    let resp = server.post("/api/sync/batch", &batch).await;
    assert_eq!(resp.status, 200);
    assert!(resp.body.len() >= 20 * 1024 * 1024);
    assert_eq!(resp.body.first(), Some(&b'"'));

    server.set_faults(json!({"malformedNext": 1, "malformedKind": "redirect"})).await;
    let resp = server.get("/api/todos?since=3").await;
    assert_eq!(resp.status, 302);
    assert_eq!(resp.header("location"), Some("/api/todos?since=3"));

    // None of them touched the database, and the counter ran out.
    assert_eq!(server.stats().await["records"], 0);
    assert_eq!(server.post("/api/sync/batch", &batch).await.status, 200);
    assert_eq!(server.stats().await["records"], 1);
    server.stop().await;
}

#[tokio::test]
async fn fault_config_is_validated_returned_and_cleared() {
    let dir = TempDir::new("fault-config");
    let server = TestServer::start(dir.path()).await;
    for bad in [
        json!({"failNxt": 1}),
        json!({"failRate": 2.0}),
        json!({"failStatus": 42}),
        json!({"failNext": -1}),
        json!({"malformedKind": "gibberish"}),
        json!([]),
    ] {
        let resp = server.post("/admin/faults", &bad).await;
        assert_eq!(resp.status, 400, "{bad}");
        assert_eq!(resp.json()["success"], false);
    }

    server.set_faults(json!({"failNext": 3, "retryAfter": "Wed, 21 Oct 2015 07:28:00 GMT"})).await;
    let config = server.get("/admin/faults").await.json();
    assert_eq!(config["failNext"], 3);
    assert_eq!(config["failStatus"], 503);
    assert_eq!(config["retryAfter"], "Wed, 21 Oct 2015 07:28:00 GMT");
    assert_eq!(config["malformedKind"], "html");

    let resp = server.request("DELETE", "/admin/faults", &[], b"").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["failNext"], 0);
    assert_eq!(server.get("/api/todos").await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn cors_preflight_and_exposed_headers() {
    let dir = TempDir::new("cors");
    let server = TestServer::start(dir.path()).await;
    let resp = server
        .request(
            "OPTIONS",
            "/api/todos/t1",
            &[
                ("Origin", "http://localhost:5173"),
                ("Access-Control-Request-Method", "PATCH"),
                ("Access-Control-Request-Headers", "content-type,if-match,idempotency-key,x-operation-id,x-device-id"),
            ],
            b"",
        )
        .await;
    assert!((200..300).contains(&resp.status), "{}", resp.status);
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
    let methods = resp.header("access-control-allow-methods").unwrap_or_default().to_ascii_uppercase();
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        assert!(methods.contains(method), "{methods}");
    }
    let allowed = resp.header("access-control-allow-headers").unwrap_or_default().to_ascii_lowercase();
    for name in [
        "content-type",
        "authorization",
        "idempotency-key",
        "x-operation-id",
        "x-device-id",
        "x-client-version",
        "if-match",
    ] {
        assert!(allowed.contains(name), "{allowed}");
    }

    server.post("/api/todos", &json!({"id": "t1"})).await;
    let resp = server.request("GET", "/api/todos/t1", &[("Origin", "http://localhost:5173")], b"").await;
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
    let exposed = resp.header("access-control-expose-headers").unwrap_or_default().to_ascii_lowercase();
    assert!(exposed.contains("etag") && exposed.contains("retry-after"));
    // Preflights are not API requests: they are neither faulted nor counted.
    assert_eq!(server.stats().await["requests"], 2);
    server.stop().await;
}

#[tokio::test]
async fn bodies_over_one_mib_are_413_json() {
    let dir = TempDir::new("limit");
    let server = TestServer::start(dir.path()).await;
    let big = "x".repeat(1024 * 1024 + 16);
    let body = json!({"operations": [op("big", "create", "t1", json!({"blob": big}), None)]});
    let resp = server.post("/api/sync/batch", &body).await;
    assert_eq!(resp.status, 413);
    assert_eq!(resp.json()["code"], "BODY_TOO_LARGE");
    let resp = server.post("/api/todos", &json!({"blob": big})).await;
    assert_eq!(resp.status, 413);

    // Just under the limit is fine.
    let fits = "y".repeat(1000 * 1024);
    let body = json!({"operations": [op("fits", "create", "t1", json!({"blob": fits}), None)]});
    let resp = server.post("/api/sync/batch", &body).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["results"][0]["data"]["version"], 1);
    server.stop().await;
}

#[tokio::test]
async fn static_files_with_index_fallback() {
    let dir = TempDir::new("static-data");
    let site = TempDir::new("static-site");
    std::fs::write(site.path().join("index.html"), "<h1>demo</h1>").expect("write index");
    std::fs::write(site.path().join("app.js"), "console.log(1)").expect("write js");
    let server = TestServer::start_with_static(dir.path(), Some(site.path())).await;
    server.set_faults(json!({"failRate": 1.0, "failStatus": 500})).await;

    let resp = server.get("/").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "<h1>demo</h1>");
    let resp = server.get("/app.js").await;
    assert_eq!(resp.text(), "console.log(1)");
    let resp = server.get("/some/client/route").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "<h1>demo</h1>");

    server.request("DELETE", "/admin/faults", &[], b"").await;
    let resp = server.get("/api/todos/a/b").await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json()["code"], "NOT_FOUND");
    server.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let dir = TempDir::new("routes");
    let server = TestServer::start(dir.path()).await;
    let resp = server.get("/nope").await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json()["code"], "NOT_FOUND");
    let resp = server.request("DELETE", "/api/todos", &[], b"").await;
    assert_eq!(resp.status, 405);
    assert_eq!(resp.json()["code"], "METHOD_NOT_ALLOWED");
    let resp = server.get(&format!("/api/{}", "c".repeat(201))).await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()["success"], false);
    server.stop().await;
}

#[tokio::test]
async fn reset_wipes_records_ledger_faults_and_counters() {
    let dir = TempDir::new("reset");
    let server = TestServer::start(dir.path()).await;
    server.batch(json!([op("r-1", "create", "t1", json!({}), None)])).await;
    server.set_faults(json!({"failNext": 5})).await;
    assert_eq!(server.anonymous().get("/api/todos").await.status, 401);
    assert_eq!(server.stats().await["unauthorized"], 1);
    let resp = server.request("POST", "/admin/reset", &[], b"").await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        server.stats().await,
        json!({
            "records": 0, "liveRecords": 0, "ledgerEntries": 0, "requests": 0, "cursor": 0,
            "unauthorized": 0, "rateLimited": 0, "channels": 0,
        })
    );
    assert_eq!(server.get("/admin/faults").await.json()["failNext"], 0);
    // The op id is forgotten, so it applies again.
    let resp = server.batch(json!([op("r-1", "create", "t1", json!({}), None)])).await;
    assert_eq!(resp["results"][0]["data"]["version"], 1);
    server.stop().await;
}
