//! Shared by the integration tests: a real server on 127.0.0.1:0 and a tiny HTTP/1.1 client over
//! a raw socket, so tests see exactly the bytes, status and headers a browser would. The server
//! runs with `--admin` and the demo users; requests go out signed in as alice unless a test picks
//! another user (`as_user`) or none (`anonymous`).

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};
use tidesync_server::{AuthConfig, Config, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A directory removed when the test ends, whatever the outcome.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "tidesync-server-test-{tag}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The signing secret of every test server.
pub const SECRET: &[u8] = b"tidesync test secret, 32 bytes or more";

pub fn auth_config() -> AuthConfig {
    AuthConfig::new(SECRET.to_vec()).expect("secret long enough").with_demo_users()
}

/// A signed token for `user`, valid for an hour.
pub fn token(user: &str) -> String {
    auth_config().mint(user, 3600)
}

pub struct TestServer {
    server: Server,
    pub addr: SocketAddr,
    /// Signed in as alice.
    client: Client,
}

impl TestServer {
    pub async fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, |_| {}).await
    }

    pub async fn start_with_static(data_dir: &Path, static_dir: Option<&Path>) -> Self {
        Self::start_with(data_dir, |config| config.static_dir = static_dir.map(Path::to_path_buf)).await
    }

    /// Admin routes on, the demo users, default limits; `tweak` changes any of it.
    pub async fn start_with(data_dir: &Path, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::new(data_dir.to_path_buf(), auth_config());
        config.admin = true;
        tweak(&mut config);
        let server = Server::start(&config).await.expect("server starts");
        let addr = server.addr();
        Self { server, addr, client: Client { addr, token: Some(token("alice")) } }
    }

    pub async fn stop(self) {
        self.server.stop().await.expect("server stops cleanly");
    }

    /// A client signed in as `user`.
    pub fn as_user(&self, user: &str) -> Client {
        Client { addr: self.addr, token: Some(token(user)) }
    }

    /// A client sending `Authorization: Bearer <token>`, whatever the token is.
    pub fn with_token(&self, token: &str) -> Client {
        Client { addr: self.addr, token: Some(token.to_owned()) }
    }

    /// A client sending no `Authorization` at all.
    pub fn anonymous(&self) -> Client {
        Client { addr: self.addr, token: None }
    }
}

impl Deref for TestServer {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

/// Sends requests to one server as one user (or none).
pub struct Client {
    pub addr: SocketAddr,
    token: Option<String>,
}

impl Client {
    /// Adds the client's bearer token unless `headers` bring an `Authorization` of their own.
    pub async fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let bearer = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut all = headers.to_vec();
        if let Some(bearer) = &bearer {
            if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("authorization")) {
                all.push(("Authorization", bearer));
            }
        }
        request(self.addr, method, path, &all, body).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], b"").await
    }

    pub async fn send_json(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &Value) -> Resp {
        let mut all = vec![("Content-Type", "application/json")];
        all.extend_from_slice(headers);
        self.request(method, path, &all, body.to_string().as_bytes()).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send_json("POST", path, &[], body).await
    }

    /// Sends a batch and returns the decoded 200 response.
    pub async fn batch(&self, operations: Value) -> Value {
        let body = json!({
            "operations": operations,
            "clientTime": "2024-01-01T00:00:00.000Z",
            "deviceId": "test-device",
        });
        let resp = self.post("/api/sync/batch", &body).await;
        assert_eq!(resp.status, 200, "batch failed: {}", resp.text());
        resp.json()
    }

    pub async fn stats(&self) -> Value {
        self.get("/admin/stats").await.json()
    }

    pub async fn set_faults(&self, config: Value) {
        let resp = self.post("/admin/faults", &config).await;
        assert_eq!(resp.status, 200, "fault config rejected: {}", resp.text());
    }
}

pub fn op(id: &str, kind: &str, entity_id: &str, payload: Value, base: Option<i64>) -> Value {
    json!({
        "id": id,
        "type": kind,
        "entityType": "todos",
        "entityId": entity_id,
        "payload": payload,
        "baseVersion": base,
    })
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.text()))
    }
}

pub async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(body).await.expect("write body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read response");
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Resp {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("response has a header block");
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_vec() };
    Resp { status, headers, body }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).expect("chunk size");
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}
