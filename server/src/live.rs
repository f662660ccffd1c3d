//! The push channel: `GET /api/sync/stream` (Server-Sent Events) and `GET /api/sync/ws`
//! (WebSocket) tell a signed-in user's devices which of their collections changed, so that a
//! device pulls within milliseconds of another device's write instead of at its next poll.
//!
//! A message is a poke: `{"type": "poke", "collection": "notes", "cursor": "42"}` with the event id
//! `42`, the user's change sequence number after that collection's newest change. A device that
//! reconnects with `Last-Event-ID: 42` hears of every collection changed after 42 (one poke each,
//! coalesced), so a cut connection loses nothing. Without a usable id (a first connection, or an
//! id from before a reset) the first message is `hello`, and the device pulls everything once.
//! A heartbeat every `heartbeat` keeps proxies from closing an idle stream and lets the client
//! notice a dead one. Changes made by the listening device itself (its `X-Device-ID`) do not poke
//! it: the write's answer already told it.
//!
//! The format is in the crate's README ("Push channel").

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, mpsc, watch};

use crate::auth::User;
use crate::error::ApiError;
use crate::{store, under, AppState};

/// Where the two kinds of channel are served.
pub const STREAM_PATH: &str = "/api/sync/stream";
pub const SOCKET_PATH: &str = "/api/sync/ws";

/// How often an idle channel sends a heartbeat.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);

/// One applied write: whose records changed, and from which device.
#[derive(Debug, Clone)]
struct Change {
    user: Arc<str>,
    device: Option<Arc<str>>,
}

/// The channels' shared state: the writes to tell them of, a switch that closes them all (a
/// server stopping, an admin cut, a reset), and how many are open.
pub struct Hub {
    changes: broadcast::Sender<Change>,
    cut: watch::Sender<u64>,
    open: AtomicU64,
    /// The server is stopping: no channel starts any more.
    closed: AtomicBool,
    heartbeat: Duration,
}

impl Hub {
    pub fn new(heartbeat: Duration) -> Self {
        Self {
            changes: broadcast::channel(1024).0,
            cut: watch::channel(0).0,
            open: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            heartbeat,
        }
    }

    /// Closes every open channel; their devices reconnect (and resume) on their own.
    pub fn cut_all(&self) {
        self.cut.send_modify(|generation| *generation += 1);
    }

    /// Closes every channel for good: a stopping server's graceful shutdown would otherwise wait
    /// for streams that never end.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.cut_all();
    }

    pub fn open_channels(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }
}

/// Counts a channel as open for as long as it lives.
struct OpenGuard<'a>(&'a AtomicU64);

impl<'a> OpenGuard<'a> {
    fn new(open: &'a AtomicU64) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self(open)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// After every write request under `/api`, tells the channels that its user's records may have
/// changed. They ask the database what did, so a write that failed or changed nothing costs one
/// query and sends nothing.
pub async fn notify_writes(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let user = req.extensions().get::<User>().map(|u| Arc::<str>::from(u.0.as_str()));
    let device = req.headers().get("x-device-id").and_then(|v| v.to_str().ok()).map(Arc::<str>::from);
    let response = next.run(req).await;
    if let (true, Some(user)) = (write, user) {
        // No receiver (no channel open) is not an error.
        let _ = state.live.changes.send(Change { user, device });
    }
    response
}

/// What a channel sends.
#[derive(Debug, PartialEq)]
enum Out {
    /// The first message when the device's last event id is unknown: pull everything once.
    Hello {
        cursor: i64,
    },
    Poke {
        collection: String,
        cursor: i64,
    },
    Heartbeat,
}

impl Out {
    fn json(&self, heartbeat: Duration) -> String {
        match self {
            Out::Hello { cursor } => json!({
                "type": "hello", "id": cursor.to_string(), "cursor": cursor.to_string(),
                "heartbeatMs": heartbeat.as_millis() as u64,
            }),
            Out::Poke { collection, cursor } => json!({
                "type": "poke", "id": cursor.to_string(), "collection": collection, "cursor": cursor.to_string(),
            }),
            Out::Heartbeat => json!({"type": "heartbeat"}),
        }
        .to_string()
    }

    fn sse(&self, heartbeat: Duration) -> Event {
        let event = match self {
            // `retry` is the reconnection delay for plain `EventSource` clients.
            Out::Hello { cursor } => {
                Event::default().event("hello").id(cursor.to_string()).retry(Duration::from_secs(2))
            }
            Out::Poke { cursor, .. } => Event::default().event("poke").id(cursor.to_string()),
            Out::Heartbeat => return Event::default().comment("heartbeat"),
        };
        event.data(self.json(heartbeat))
    }
}

/// Where a device stands: the last event id it saw and who it is. The query forms exist for
/// clients that cannot set headers (`EventSource`, `WebSocket`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resume {
    last_event_id: Option<String>,
    device: Option<String>,
}

impl Resume {
    fn read(mut self, headers: &HeaderMap) -> (Option<i64>, Option<Arc<str>>) {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        if let Some(id) = header("last-event-id") {
            self.last_event_id = Some(id);
        }
        if let Some(device) = header("x-device-id") {
            self.device = Some(device);
        }
        // An id we did not send (garbage, negative) counts as none: the device pulls everything.
        let last = self.last_event_id.and_then(|id| id.trim().parse::<i64>().ok()).filter(|n| *n >= 0);
        (last, self.device.filter(|d| !d.is_empty()).map(Arc::from))
    }
}

async fn current_seq(state: &AppState, user: &str) -> Result<i64, ApiError> {
    let (store, user) = (state.store.clone(), user.to_owned());
    Ok(tokio::task::spawn_blocking(move || store.with(|conn| store::current_seq(conn, &user))).await??)
}

/// Sends a poke for every collection changed after `seen`; returns the newest id sent.
async fn poke_since(state: &AppState, user: &str, seen: i64, tx: &mpsc::Sender<Out>) -> Option<i64> {
    let (store, owner) = (state.store.clone(), user.to_owned());
    let changed = tokio::task::spawn_blocking(move || store.with(|conn| store::changed_since(conn, &owner, seen)))
        .await
        .ok()?
        .ok()?;
    let mut newest = seen;
    for (collection, cursor) in changed {
        newest = newest.max(cursor);
        tx.send(Out::Poke { collection, cursor }).await.ok()?;
    }
    Some(newest)
}

/// One channel's life: catch up from `last`, then a poke per change until the device goes, the
/// hub cuts it or the server stops.
async fn feed(state: Arc<AppState>, user: String, device: Option<Arc<str>>, last: Option<i64>, tx: mpsc::Sender<Out>) {
    let hub = &state.live;
    let _open = OpenGuard::new(&hub.open);
    // Subscribed before reading where the user stands: a write in between is seen twice, never missed.
    let mut changes = hub.changes.subscribe();
    let mut cut = hub.cut.subscribe();
    if hub.closed.load(Ordering::SeqCst) {
        return;
    }
    let Ok(now) = current_seq(&state, &user).await else { return };
    let mut seen = match last {
        // An id from before a reset (the sequence started again) cannot be resumed from.
        Some(id) if id <= now => id,
        _ => {
            if tx.send(Out::Hello { cursor: now }).await.is_err() {
                return;
            }
            now
        }
    };
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + hub.heartbeat, hub.heartbeat);
    let mut dirty = last.is_some_and(|id| id <= now);
    loop {
        if std::mem::take(&mut dirty) {
            match poke_since(&state, &user, seen, &tx).await {
                Some(newest) => seen = newest,
                None => return,
            }
        }
        tokio::select! {
            _ = cut.changed() => return,
            () = tx.closed() => return,
            _ = beat.tick() => {
                if tx.send(Out::Heartbeat).await.is_err() {
                    return;
                }
            }
            change = changes.recv() => match change {
                Ok(c) if *c.user != *user => {}
                Ok(c) if c.device.is_some() && c.device == device => {}
                // A lagging receiver missed some: the query finds them all anyway.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => dirty = true,
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// `GET /api/sync/stream`: the channel as Server-Sent Events.
pub async fn stream(
    State(state): State<Arc<AppState>>,
    Extension(User(user)): Extension<User>,
    Query(resume): Query<Resume>,
    headers: HeaderMap,
) -> Response {
    let (last, device) = resume.read(&headers);
    let heartbeat = state.live.heartbeat;
    let (tx, mut rx) = mpsc::channel::<Out>(64);
    tokio::spawn(feed(state, user, device, last, tx));
    let events = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|out| out.map(|out| Ok::<_, std::convert::Infallible>(out.sse(heartbeat))))
    });
    // A comment first, at once: a resumed stream with nothing missed has no event to send until the
    // first heartbeat, and some clients (Firefox's fetch) resolve only when the body's first bytes
    // arrive, not with the headers: they would wait that long to learn the channel is open.
    let open = futures_util::stream::once(async { Ok(Event::default().comment("open")) });
    let mut response = Sse::new(futures_util::StreamExt::chain(open, events)).into_response();
    // Proxies that buffer responses (nginx) would hold the events back.
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-transform"));
    response
}

/// `GET /api/sync/ws`: the same channel over a WebSocket, one JSON text message per event.
pub async fn socket(
    State(state): State<Arc<AppState>>,
    Extension(User(user)): Extension<User>,
    Query(resume): Query<Resume>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let (last, device) = resume.read(&headers);
    upgrade.on_upgrade(move |ws| relay(ws, state, user, device, last))
}

async fn relay(mut ws: WebSocket, state: Arc<AppState>, user: String, device: Option<Arc<str>>, last: Option<i64>) {
    let heartbeat = state.live.heartbeat;
    let (tx, mut rx) = mpsc::channel::<Out>(64);
    tokio::spawn(feed(state, user, device, last, tx));
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(out) = out else { break };
                if ws.send(Message::Text(out.json(heartbeat).into())).await.is_err() {
                    return;
                }
            }
            // The device says nothing; anything but a close (or a broken socket) is ignored.
            incoming = ws.recv() => match incoming {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = ws.send(Message::Close(None)).await;
}

/// `POST /admin/streams/cut`: closes every open channel (tests of reconnection and resume).
pub async fn cut(State(state): State<Arc<AppState>>) -> Response {
    let open = state.live.open_channels();
    state.live.cut_all();
    crate::error::json_response(axum::http::StatusCode::OK, &json!({"cut": open}), None)
}

/// Whether a request is for one of the channels (a bearer token may come as `?access_token=`,
/// as RFC 6750 §2.3 allows, since neither `EventSource` nor `WebSocket` can set headers).
pub fn is_channel(path: &str) -> bool {
    under(path, STREAM_PATH) || under(path, SOCKET_PATH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_documented_json_and_sse() {
        let hb = Duration::from_secs(15);
        let poke = Out::Poke { collection: "notes".into(), cursor: 42 };
        let v: serde_json::Value = serde_json::from_str(&poke.json(hb)).unwrap();
        assert_eq!(v, json!({"type": "poke", "id": "42", "collection": "notes", "cursor": "42"}));
        let v: serde_json::Value = serde_json::from_str(&Out::Hello { cursor: 7 }.json(hb)).unwrap();
        assert_eq!(v["type"], "hello");
        assert_eq!(v["heartbeatMs"], 15000);
    }

    #[test]
    fn a_resume_point_comes_from_the_header_before_the_query() {
        let mut headers = HeaderMap::new();
        let query = || Resume { last_event_id: Some("5".into()), device: Some("d-query".into()) };
        assert_eq!(query().read(&headers), (Some(5), Some(Arc::from("d-query"))));
        headers.insert("last-event-id", HeaderValue::from_static("9"));
        headers.insert("x-device-id", HeaderValue::from_static("d-header"));
        assert_eq!(query().read(&headers), (Some(9), Some(Arc::from("d-header"))));
        for bad in ["", "x", "-3", "1.5"] {
            headers.insert("last-event-id", HeaderValue::from_str(bad).unwrap());
            assert_eq!(query().read(&headers).0, None, "{bad:?}");
        }
    }
}
