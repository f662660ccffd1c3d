//! The server as an attacker meets it: other users' records through every route, forged, expired,
//! oversized and `alg: none` tokens, admin routes of a server started without `--admin`, and a
//! client flooding the server. Real HTTP on loopback.

mod common;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::{op, token, Client, TempDir, TestServer, SECRET};
use serde_json::{json, Value};
use tidesync_server::{AuthConfig, Rate, RateLimits, MAX_TOKEN_BYTES};

const ALICE_SECRET: &str = "alice's diary";

/// Alice's record `todos/t1` (version 1), written by batch, and her op id `a-1`.
async fn alice_writes(server: &TestServer) {
    let created = server.batch(json!([op("a-1", "create", "t1", json!({"text": ALICE_SECRET}), None)])).await;
    assert_eq!(created["results"][0]["success"], true);
}

/// A fresh server where alice has written `todos/t1`.
async fn with_alices_record(tag: &str) -> (TempDir, TestServer) {
    let dir = TempDir::new(tag);
    let server = TestServer::start(dir.path()).await;
    alice_writes(&server).await;
    (dir, server)
}

async fn alice_still_has_her_record(server: &TestServer) {
    let resp = server.get("/api/todos/t1").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json(), json!({"id": "t1", "text": ALICE_SECRET, "version": 1}));
}

fn assert_no_leak(what: &str, text: &str) {
    assert!(!text.contains(ALICE_SECRET), "{what} leaked alice's data: {text}");
}

#[tokio::test]
async fn another_users_batch_ops_never_reach_alices_records_or_ledger() {
    let (_dir, server) = with_alices_record("cross-batch").await;
    let bob = server.as_user("bob");

    // Bob replays alice's op id: he gets no answer of hers, only his own op's fate.
    let replay = bob.batch(json!([op("a-1", "update", "t1", json!({"text": "bob was here"}), None)])).await;
    assert_no_leak("a replayed op id", &replay.to_string());
    assert_eq!(replay["results"][0]["status"], 404, "t1 does not exist for bob: {replay}");
    let attacks = bob
        .batch(json!([
            op("b-1", "update", "t1", json!({"text": "overwritten"}), Some(1)),
            op("b-2", "delete", "t1", Value::Null, Some(1)),
            op("b-3", "delete", "t1", Value::Null, None),
        ]))
        .await;
    assert_no_leak("bob's batch", &attacks.to_string());
    assert_eq!(attacks["results"][0]["status"], 404);
    // A delete of a record bob never had is a no-op success on his side, version 0.
    assert_eq!(attacks["results"][1]["data"]["version"], 0);
    assert_eq!(attacks["results"][2]["data"]["version"], 0);
    alice_still_has_her_record(&server).await;

    // The same id is free for bob: his own record, at his own version 1.
    let own = bob.batch(json!([op("b-4", "create", "t1", json!({"text": "bob's"}), None)])).await;
    assert_eq!(own["results"][0]["data"]["version"], 1);
    alice_still_has_her_record(&server).await;
    assert_eq!(bob.get("/api/todos/t1").await.json()["text"], "bob's");
    // Alice's op id answers her as before, even though bob sent the same id.
    let again = server.batch(json!([op("a-1", "update", "t1", json!({}), None)])).await;
    assert_eq!(again["results"][0]["data"]["data"]["text"], ALICE_SECRET);
    server.stop().await;
}

#[tokio::test]
async fn another_users_rest_requests_see_nothing_and_change_nothing() {
    let (_dir, server) = with_alices_record("cross-rest").await;
    let key = [("Idempotency-Key", "alice-key")];
    assert_eq!(server.send_json("PATCH", "/api/todos/t2", &key, &json!({})).await.status, 404);
    let bob = server.as_user("bob");

    for (method, body) in [("GET", None), ("PUT", Some(json!({"text": "x"}))), ("PATCH", Some(json!({"text": "x"})))] {
        let resp = match &body {
            Some(body) => bob.send_json(method, "/api/todos/t1", &[("If-Match", "*")], body).await,
            None => bob.get("/api/todos/t1").await,
        };
        assert_eq!(resp.status, 404, "{method}: {}", resp.text());
        assert_no_leak(method, &resp.text());
    }
    let delete = bob.request("DELETE", "/api/todos/t1", &[], b"").await;
    assert_eq!(delete.status, 404);
    // Alice's idempotency key is bob's own key: it replays nothing of hers.
    let replay = bob.send_json("POST", "/api/todos", &key, &json!({"id": "t1", "text": "bob's"})).await;
    assert_eq!(replay.status, 201, "{}", replay.text());
    assert_eq!(replay.json(), json!({"id": "t1", "text": "bob's", "version": 1}));
    alice_still_has_her_record(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn pulls_and_cursors_are_per_user() {
    let (_dir, server) = with_alices_record("cross-pull").await;
    let bob = server.as_user("bob");
    bob.batch(json!([op("b-1", "create", "t9", json!({"n": 1}), None)])).await;

    for path in ["/api/todos", "/api/todos?since=0", "/api/todos?since=-5&limit=5000"] {
        let pull = bob.get(path).await;
        assert_eq!(pull.status, 200);
        assert_no_leak(path, &pull.text());
        let items = pull.json()["items"].clone();
        assert_eq!(items.as_array().map(Vec::len), Some(1), "{path}: {items}");
        assert_eq!(items[0]["entityId"], "t9");
    }
    // Each user's cursor counts their own changes only.
    assert_eq!(bob.get("/api/todos").await.json()["cursor"], 1);
    assert_eq!(server.get("/api/todos?since=0").await.json()["cursor"], 1);
    assert_eq!(server.stats().await["cursor"], 2, "stats adds every user's changes up");
    server.stop().await;
}

fn forge(header: &Value, claims: &Value, signature: &[u8]) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.{}", part(header), part(claims), URL_SAFE_NO_PAD.encode(signature))
}

/// An HS256 token with the server's own secret and whatever claims: only the claims can be wrong.
fn signed(claims: &Value) -> String {
    use hmac::{Hmac, Mac};
    let unsigned = forge(&json!({"alg": "HS256", "typ": "JWT"}), claims, b"");
    let input = unsigned.trim_end_matches('.');
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

/// Tokens that must all be refused with 401, by name.
fn bad_tokens() -> Vec<(&'static str, String)> {
    let far = 9_999_999_999i64;
    let alice = json!({"sub": "alice", "exp": far});
    let other_secret = AuthConfig::new(b"some other secret of 32 bytes or more".to_vec()).unwrap();
    let valid = token("alice");
    let (head, signature) = valid.rsplit_once('.').unwrap();
    let header = head.split('.').next().unwrap();
    let as_bob = URL_SAFE_NO_PAD.encode(json!({"sub": "bob", "exp": far}).to_string());
    vec![
        ("alg none", forge(&json!({"alg": "none", "typ": "JWT"}), &alice, b"")),
        ("alg None, signed", forge(&json!({"alg": "None"}), &alice, b"x")),
        ("HS512 header", forge(&json!({"alg": "HS512"}), &alice, &[0; 64])),
        ("RS256 header", forge(&json!({"alg": "RS256"}), &alice, &[0; 256])),
        ("another secret", other_secret.mint("alice", 3600)),
        ("signature stripped", format!("{head}.")),
        ("alice's signature on bob's claims", format!("{header}.{as_bob}.{signature}")),
        ("expired", AuthConfig::new(SECRET.to_vec()).unwrap().mint("alice", -1)),
        ("no sub", signed(&json!({"exp": far}))),
        ("empty sub", signed(&json!({"sub": "", "exp": far}))),
        ("numeric sub", signed(&json!({"sub": 7, "exp": far}))),
        ("no exp", signed(&json!({"sub": "alice"}))),
        ("exp as text", signed(&json!({"sub": "alice", "exp": far.to_string()}))),
        ("not valid before next year", signed(&json!({"sub": "alice", "exp": far, "nbf": far - 1}))),
        ("oversized", format!("{valid}{}", "A".repeat(MAX_TOKEN_BYTES))),
        ("garbage", "not-a-jwt".into()),
        ("empty", String::new()),
    ]
}

async fn assert_refused(client: &Client, what: &str) {
    let read = client.get("/api/todos").await;
    assert_eq!(read.status, 401, "{what}: {}", read.text());
    assert_eq!(read.json()["code"], "UNAUTHORIZED", "{what}");
    assert_eq!(read.header("www-authenticate"), Some("Bearer"), "{what}");
    let write =
        client.post("/api/sync/batch", &json!({"operations": [op("x", "create", "t1", json!({}), None)]})).await;
    assert_eq!(write.status, 401, "{what}: {}", write.text());
    let rest = client.send_json("PUT", "/api/todos/t1", &[], &json!({"a": 1})).await;
    assert_eq!(rest.status, 401, "{what}");
}

#[tokio::test]
async fn forged_expired_oversized_and_unsigned_tokens_are_401_and_write_nothing() {
    let dir = TempDir::new("bad-tokens");
    let server = TestServer::start(dir.path()).await;
    assert_refused(&server.anonymous(), "no Authorization").await;
    for (what, bad) in bad_tokens() {
        assert_refused(&server.with_token(&bad), what).await;
    }
    // The helper signs like the server: with good claims its token is accepted.
    assert_eq!(
        server.with_token(&signed(&json!({"sub": "alice", "exp": 9_999_999_999i64}))).get("/api/todos").await.status,
        200
    );
    for header in ["Basic YWxpY2U6YWxpY2U=", "Bearer", "bearer  ", &token("alice")] {
        let resp = server.request("GET", "/api/todos", &[("Authorization", header)], b"").await;
        assert_eq!(resp.status, 401, "{header}");
    }
    // Lower-case scheme is fine (RFC 7235: case-insensitive).
    let lower = format!("bearer {}", token("alice"));
    assert_eq!(server.request("GET", "/api/todos", &[("Authorization", &lower)], b"").await.status, 200);
    let stats = server.stats().await;
    assert_eq!((stats["records"].clone(), stats["ledgerEntries"].clone()), (json!(0), json!(0)));
    assert!(stats["unauthorized"].as_u64().unwrap() >= 3 * (bad_tokens().len() as u64 + 1));
    server.stop().await;
}

#[tokio::test]
async fn sign_in_checks_the_password_and_its_token_expires() {
    let dir = TempDir::new("sign-in");
    let server = TestServer::start_with(dir.path(), |c| c.auth.token_ttl_secs = 1).await;
    let anon = server.anonymous();
    for (body, status, code) in [
        (json!({"username": "alice", "password": "bob"}), 401, "INVALID_CREDENTIALS"),
        (json!({"username": "mallory", "password": "mallory"}), 401, "INVALID_CREDENTIALS"),
        (json!({"username": "alice"}), 400, "INVALID_REQUEST"),
        (json!(["alice", "alice"]), 400, "INVALID_REQUEST"),
    ] {
        let resp = anon.post("/auth/token", &body).await;
        assert_eq!((resp.status, resp.json()["code"].clone()), (status, json!(code)), "{body}");
    }
    let resp = anon.post("/auth/token", &json!({"username": "bob", "password": "bob"})).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let body = resp.json();
    assert_eq!(
        (body["tokenType"].clone(), body["expiresIn"].clone(), body["user"].clone()),
        (json!("Bearer"), json!(1), json!("bob"))
    );
    let bob = server.with_token(body["token"].as_str().unwrap());
    assert_eq!(bob.get("/api/todos").await.status, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired = bob.get("/api/todos").await;
    assert_eq!((expired.status, expired.json()["error"].clone()), (401, json!("token expired")));
    server.stop().await;
}

#[tokio::test]
async fn admin_routes_are_absent_without_the_flag() {
    let dir = TempDir::new("no-admin");
    let site = TempDir::new("no-admin-site");
    std::fs::write(site.path().join("index.html"), "<html>app</html>").unwrap();
    let static_dir = site.path().to_path_buf();
    let server = TestServer::start_with(dir.path(), |c| {
        c.admin = false;
        c.static_dir = Some(static_dir);
    })
    .await;
    for (method, path) in [
        ("GET", "/admin/stats"),
        ("GET", "/admin/ledger"),
        ("POST", "/admin/reset"),
        ("POST", "/admin/faults"),
        ("POST", "/admin/tokens"),
        ("POST", "/admin/limits"),
        ("GET", "/admin"),
    ] {
        for client in [server.anonymous(), server.as_user("alice")] {
            let resp = client.send_json(method, path, &[], &json!({"sub": "root", "failNext": 5})).await;
            assert_eq!(resp.status, 404, "{method} {path}: {}", resp.text());
            assert_eq!(resp.json()["code"], "NOT_FOUND");
        }
    }
    // The site and the API still answer.
    assert_eq!(server.anonymous().get("/somewhere").await.text(), "<html>app</html>");
    assert_eq!(server.get("/api/todos").await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn admin_minted_tokens_have_the_asked_lifetime() {
    let dir = TempDir::new("mint");
    let server = TestServer::start(dir.path()).await;
    for (ttl, status) in [(60, 200), (-1, 401)] {
        let minted = server.anonymous().post("/admin/tokens", &json!({"sub": "carol", "ttlSeconds": ttl})).await.json();
        assert_eq!(minted["expiresIn"], ttl);
        assert_eq!(
            server.with_token(minted["token"].as_str().unwrap()).get("/api/todos").await.status,
            status,
            "ttl {ttl}"
        );
    }
    assert_eq!(server.anonymous().post("/admin/tokens", &json!({"sub": ""})).await.status, 400);
    server.stop().await;
}

fn limits(user: Rate, address: Rate) -> RateLimits {
    RateLimits { user, address }
}

/// Sends GETs until one is refused; returns how many passed and the refusal.
async fn until_limited(client: &Client, path: &str, most: usize) -> (usize, common::Resp) {
    for passed in 0..most {
        let resp = client.get(path).await;
        if resp.status != 200 {
            return (passed, resp);
        }
    }
    panic!("{most} requests to {path} and none was limited");
}

#[tokio::test]
async fn a_user_over_their_rate_gets_429_with_retry_after_and_others_go_on() {
    let dir = TempDir::new("rate-user");
    let two = Rate { per_second: 1.0, burst: 2.0 };
    let server = TestServer::start_with(dir.path(), |c| c.limits = limits(two, Rate::OFF)).await;
    let (passed, refused) = until_limited(&server, "/api/todos", 10).await;
    assert_eq!(passed, 2, "the burst");
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(
        refused.json(),
        json!({"success": false, "error": "too many requests; retry in 1 s", "code": "RATE_LIMITED"})
    );
    // Refused before anything ran: a batch is not applied.
    let batch =
        server.post("/api/sync/batch", &json!({"operations": [op("r-1", "create", "t1", json!({}), None)]})).await;
    assert_eq!(batch.status, 429);
    assert_eq!(server.as_user("bob").get("/api/todos").await.status, 200, "bob has his own bucket");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(server.batch(json!([op("r-1", "create", "t1", json!({}), None)])).await["results"][0]["success"], true);
    let stats = server.stats().await;
    assert_eq!((stats["records"].clone(), stats["rateLimited"].clone()), (json!(1), json!(2)));
    server.stop().await;
}

#[tokio::test]
async fn an_address_over_its_rate_is_limited_on_sign_in_too_and_admin_can_change_limits() {
    let dir = TempDir::new("rate-address");
    let three = Rate { per_second: 0.5, burst: 3.0 };
    let server = TestServer::start_with(dir.path(), |c| c.limits = limits(Rate::OFF, three)).await;
    let sign_in = json!({"username": "alice", "password": "wrong"});
    for _ in 0..3 {
        assert_eq!(server.anonymous().post("/auth/token", &sign_in).await.status, 401);
    }
    let refused = server.anonymous().post("/auth/token", &sign_in).await;
    assert_eq!((refused.status, refused.header("retry-after")), (429, Some("2")));
    // Every user from this address shares its bucket.
    assert_eq!(server.as_user("bob").get("/api/todos").await.status, 429);
    let relaxed = json!({"user": {"perSecond": 0.0, "burst": 0.0}, "address": {"perSecond": 1000.0, "burst": 1000.0}});
    assert_eq!(server.post("/admin/limits", &relaxed).await.json(), relaxed);
    assert_eq!(server.as_user("bob").get("/api/todos").await.status, 200);
    let negative = json!({"user": {"perSecond": -1.0, "burst": 1.0}, "address": {"perSecond": 1.0, "burst": 1.0}});
    assert_eq!(server.post("/admin/limits", &negative).await.status, 400);
    server.post("/admin/reset", &json!({})).await;
    assert_eq!(server.get("/admin/limits").await.json()["address"], json!({"perSecond": 0.5, "burst": 3.0}));
    server.stop().await;
}

#[tokio::test]
async fn a_database_from_before_sign_in_is_set_aside_not_served() {
    let dir = TempDir::new("old-schema");
    {
        let conn = rusqlite::Connection::open(dir.path().join(tidesync_server::DB_FILE)).unwrap();
        conn.execute_batch(
            "CREATE TABLE records (collection TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL, data TEXT,
                deleted INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL, checksum TEXT,
                change_seq INTEGER NOT NULL, PRIMARY KEY (collection, id));
             CREATE TABLE ledger (op_id TEXT PRIMARY KEY, kind TEXT NOT NULL, result TEXT NOT NULL,
                status INTEGER NOT NULL, applied_at TEXT NOT NULL, deliveries INTEGER NOT NULL DEFAULT 1);
             INSERT INTO records VALUES ('todos', 't1', 1, '{\"text\": \"old\"}', 0, '2024-01-01T00:00:00.000Z', NULL, 1);",
        )
        .unwrap();
    }
    let server = TestServer::start(dir.path()).await;
    assert_eq!(server.get("/api/todos").await.json()["items"], json!([]));
    alice_writes(&server).await;
    alice_still_has_her_record(&server).await;
    server.stop().await;
    let conn = rusqlite::Connection::open(dir.path().join(tidesync_server::DB_FILE)).unwrap();
    let kept: i64 = conn.query_row("SELECT COUNT(*) FROM unowned_records", [], |r| r.get(0)).unwrap();
    assert_eq!(kept, 1, "the old rows are kept");
}
