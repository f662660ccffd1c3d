//! The push channel over real sockets: Server-Sent Events read byte by byte from a raw HTTP/1.1
//! connection, and the WebSocket form through a WebSocket client. Who is poked, with what id,
//! what a reconnecting device hears again, and how channels end.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{op, token, TempDir, TestServer};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// One SSE event: its `event`, `id` and parsed `data`; a comment has only `comment`.
#[derive(Debug, Default)]
struct SseEvent {
    event: Option<String>,
    id: Option<String>,
    data: Option<Value>,
    comment: Option<String>,
}

/// An open `GET /api/sync/stream`, read incrementally (chunked transfer, then SSE lines).
struct Sse {
    stream: TcpStream,
    raw: Vec<u8>,
    text: String,
    status: u16,
}

impl Sse {
    async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Sse {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.expect("write head");
        let mut sse = Sse { stream, raw: Vec::new(), text: String::new(), status: 0 };
        let split = loop {
            if let Some(at) = sse.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            assert!(sse.fill().await, "connection closed before the response head");
        };
        let head = String::from_utf8_lossy(&sse.raw[..split]).into_owned();
        sse.status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
        sse.raw.drain(..split + 4);
        sse
    }

    async fn fill(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        let n = self.stream.read(&mut buf).await.unwrap_or(0);
        self.raw.extend_from_slice(&buf[..n]);
        n > 0
    }

    /// Moves complete chunks from `raw` to `text`; false at the last chunk.
    fn dechunk(&mut self) -> bool {
        loop {
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else { return true };
            let size_text = String::from_utf8_lossy(&self.raw[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.trim(), 16).expect("chunk size");
            if size == 0 {
                return false;
            }
            if self.raw.len() < line_end + 2 + size + 2 {
                return true;
            }
            self.text.push_str(&String::from_utf8_lossy(&self.raw[line_end + 2..line_end + 2 + size]));
            self.raw.drain(..line_end + 2 + size + 2);
        }
    }

    /// The next event or comment; `None` when the server ended the stream.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                let mut ev = SseEvent::default();
                for line in block.lines().filter(|l| !l.is_empty()) {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
                    match field {
                        "" => ev.comment = Some(value),
                        "event" => ev.event = Some(value),
                        "id" => ev.id = Some(value),
                        "data" => ev.data = Some(serde_json::from_str(&value).expect("data is JSON")),
                        _ => {}
                    }
                }
                return Some(ev);
            }
            let more = self.dechunk();
            if self.text.contains("\n\n") {
                continue;
            }
            if !more || !self.fill().await {
                return None;
            }
        }
    }

    /// The next event that is not a heartbeat, within `wait`.
    async fn event(&mut self, wait: Duration) -> Option<SseEvent> {
        timeout(wait, async {
            loop {
                match self.next().await {
                    Some(ev) if ev.comment.is_some() => continue,
                    other => return other,
                }
            }
        })
        .await
        .ok()
        .flatten()
    }
}

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(400);

fn bearer(user: &str) -> String {
    format!("Bearer {}", token(user))
}

async fn alice_stream(server: &TestServer, extra: &[(&str, &str)]) -> Sse {
    let auth = bearer("alice");
    let mut headers = vec![("Authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    let sse = Sse::open(server.addr, "/api/sync/stream", &headers).await;
    assert_eq!(sse.status, 200);
    sse
}

/// Alice writes `collection/id` from `device`.
async fn write_from(server: &TestServer, device: &str, collection: &str, id: &str) {
    let body = json!({"id": id, "text": id});
    let resp = server.send_json("POST", &format!("/api/{collection}"), &[("X-Device-ID", device)], &body).await;
    assert!(resp.status == 200 || resp.status == 201, "{}", resp.text());
}

#[tokio::test]
async fn a_device_is_greeted_then_poked_for_another_devices_write() {
    let dir = TempDir::new("live-poke");
    let server = TestServer::start(dir.path()).await;
    let mut sse = alice_stream(&server, &[("X-Device-ID", "phone")]).await;
    let hello = sse.event(WAIT).await.expect("hello");
    assert_eq!(hello.event.as_deref(), Some("hello"));
    assert_eq!(hello.id.as_deref(), Some("0"));

    let batch = server.batch(json!([op("o-1", "create", "t1", json!({"text": "x"}), None)])).await;
    assert_eq!(batch["results"][0]["success"], true);
    let poke = sse.event(WAIT).await.expect("a poke");
    assert_eq!(poke.event.as_deref(), Some("poke"));
    assert_eq!(poke.id.as_deref(), Some("1"));
    assert_eq!(poke.data, Some(json!({"type": "poke", "id": "1", "collection": "todos", "cursor": "1"})));
    assert_eq!(server.stats().await["channels"], 1);
    server.stop().await;
}

#[tokio::test]
async fn a_devices_own_writes_and_other_users_writes_do_not_poke_it() {
    let dir = TempDir::new("live-own");
    let server = TestServer::start(dir.path()).await;
    let mut sse = alice_stream(&server, &[("X-Device-ID", "phone")]).await;
    assert_eq!(sse.event(WAIT).await.expect("hello").event.as_deref(), Some("hello"));

    write_from(&server, "phone", "notes", "n1").await;
    let bob = server.as_user("bob");
    let resp =
        bob.send_json("POST", "/api/notes", &[("X-Device-ID", "laptop")], &json!({"id": "b1", "text": "bob's"})).await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    assert!(sse.event(QUIET).await.is_none(), "poked for its own write or for bob's");

    // The next poke covers everything after what it was told: its own write included.
    write_from(&server, "laptop", "todos", "t1").await;
    let poke = sse.event(WAIT).await.expect("poke");
    let seen: Vec<_> = [poke].into_iter().chain(sse.event(QUIET).await).map(|e| e.data.unwrap()).collect();
    let cursors: Vec<_> = seen.iter().map(|d| (d["collection"].clone(), d["cursor"].clone())).collect();
    assert_eq!(cursors, [(json!("notes"), json!("1")), (json!("todos"), json!("2"))]);
    server.stop().await;
}

#[tokio::test]
async fn a_reconnecting_device_hears_of_every_collection_changed_since_its_last_event() {
    let dir = TempDir::new("live-resume");
    let server = TestServer::start(dir.path()).await;
    write_from(&server, "laptop", "todos", "t1").await; // 1
    write_from(&server, "laptop", "notes", "n1").await; // 2
    write_from(&server, "laptop", "todos", "t2").await; // 3
    write_from(&server, "laptop", "tags", "g1").await; // 4

    let mut sse = alice_stream(&server, &[("Last-Event-ID", "1"), ("X-Device-ID", "phone")]).await;
    let mut heard = Vec::new();
    while let Some(ev) = sse.event(QUIET).await {
        heard.push((ev.event.unwrap(), ev.id.unwrap(), ev.data.unwrap()["collection"].clone()));
    }
    // No hello: it knows where it stands. One poke per collection, oldest first, ids rising.
    assert_eq!(
        heard,
        [
            ("poke".into(), "2".into(), json!("notes")),
            ("poke".into(), "3".into(), json!("todos")),
            ("poke".into(), "4".into(), json!("tags")),
        ]
    );

    // Up to date: nothing to hear, but the body starts at once (a comment), long before the first
    // heartbeat: a client that waits for the body's first bytes knows the channel is open. An id
    // beyond the sequence (from before a reset) or not a number: greeted afresh, to pull everything.
    let mut sse = alice_stream(&server, &[("Last-Event-ID", "4")]).await;
    let first = tokio::time::timeout(WAIT, sse.next()).await.expect("the body starts at once").expect("open");
    assert_eq!(first.comment.as_deref(), Some("open"));
    assert!(sse.event(QUIET).await.is_none());
    for stale in ["99", "abc"] {
        let mut sse = alice_stream(&server, &[("Last-Event-ID", stale)]).await;
        let hello = sse.event(WAIT).await.expect("hello");
        assert_eq!((hello.event.as_deref(), hello.id.as_deref()), (Some("hello"), Some("4")), "{stale}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_channel_needs_a_token_which_may_come_in_its_url_only() {
    let dir = TempDir::new("live-auth");
    let server = TestServer::start(dir.path()).await;
    let sse = Sse::open(server.addr, "/api/sync/stream", &[]).await;
    assert_eq!(sse.status, 401);
    let sse = Sse::open(server.addr, "/api/sync/stream?access_token=forged", &[]).await;
    assert_eq!(sse.status, 401);
    let path = format!("/api/sync/stream?access_token={}&lastEventId=0", token("alice"));
    let mut sse = Sse::open(server.addr, &path, &[]).await;
    assert_eq!(sse.status, 200);
    assert!(sse.event(QUIET).await.is_none(), "resumed from 0 with nothing written: silence");
    // Elsewhere a token in the URL is not accepted.
    let resp = server.anonymous().get(&format!("/api/todos?access_token={}", token("alice"))).await;
    assert_eq!(resp.status, 401);
    server.stop().await;
}

#[tokio::test]
async fn heartbeats_flow_and_a_cut_or_a_stop_ends_every_channel() {
    let dir = TempDir::new("live-end");
    let server = TestServer::start_with(dir.path(), |c| c.heartbeat = Duration::from_millis(100)).await;
    let mut sse = alice_stream(&server, &[]).await;
    let mut comments = 0;
    while comments < 2 {
        let ev = timeout(WAIT, sse.next()).await.expect("in time").expect("open");
        comments += usize::from(ev.comment.as_deref() == Some("heartbeat"));
    }
    let cut = server.post("/admin/streams/cut", &json!({})).await;
    assert_eq!(cut.json(), json!({"cut": 1}));
    assert!(timeout(WAIT, async { while sse.next().await.is_some() {} }).await.is_ok(), "the stream ends");
    assert_eq!(server.stats().await["channels"], 0);

    // A server stopping with a channel open stops, and the channel ends.
    let mut open = alice_stream(&server, &[]).await;
    assert!(timeout(WAIT, server.stop()).await.is_ok(), "the stop waited for the stream");
    assert!(timeout(WAIT, async { while open.next().await.is_some() {} }).await.is_ok());
}

#[tokio::test]
async fn the_websocket_form_sends_the_same_messages() {
    let dir = TempDir::new("live-ws");
    let server = TestServer::start(dir.path()).await;
    let url = format!("ws://{}/api/sync/ws?access_token={}&device=phone", server.addr, token("alice"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("upgrade");
    assert_eq!(next_message(&mut ws).await["type"], "hello");
    write_from(&server, "laptop", "todos", "t1").await;
    assert_eq!(next_message(&mut ws).await, json!({"type": "poke", "id": "1", "collection": "todos", "cursor": "1"}));
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/api/sync/ws", server.addr)).await;
    assert!(refused.is_err(), "no token, no channel");
    server.stop().await;
}

/// The next message of a WebSocket channel that is not a heartbeat.
async fn next_message<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let msg = timeout(WAIT, ws.next()).await.expect("in time").expect("open").expect("frame");
        if let tokio_tungstenite::tungstenite::Message::Text(text) = msg {
            let v: Value = serde_json::from_str(&text).expect("JSON");
            if v["type"] != "heartbeat" {
                return v;
            }
        }
    }
}
