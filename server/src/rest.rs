//! Plain CRUD under `/api/{collection}`, shaped like a user's own backend, plus the pull listing.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use rusqlite::Connection;
use serde_json::{json, Map, Value};

use crate::auth::User;
use crate::body::read_object;
use crate::error::{error_body, json_response, ApiError};
use crate::store::{self, Key, LedgerEntry, LedgerHit, LedgerKind, Record};
use crate::{clock, valid_name, AppState};

pub const DEFAULT_PULL_LIMIT: i64 = 1000;
pub const MAX_PULL_LIMIT: i64 = 5000;
pub const MAX_KEY_LEN: usize = 200;

fn collection_from(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(collection) = path.map_err(|err| ApiError::bad_request(err.body_text()))?;
    check_name("collection", &collection)?;
    Ok(collection)
}

fn record_path_from(path: Result<Path<(String, String)>, PathRejection>) -> Result<(String, String), ApiError> {
    let Path((collection, id)) = path.map_err(|err| ApiError::bad_request(err.body_text()))?;
    check_name("collection", &collection)?;
    check_name("id", &id)?;
    Ok((collection, id))
}

fn check_name(what: &str, value: &str) -> Result<(), ApiError> {
    if valid_name(value) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!("{what} must be 1 to 200 characters")))
    }
}

/// `GET /api/{collection}`: a snapshot of live records, or with `since` the change feed.
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(User(user)): Extension<User>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let collection = collection_from(path)?;
    let Query(query) = query.map_err(|err| ApiError::bad_request(err.body_text()))?;
    let since = query
        .get("since")
        .map(|s| {
            s.trim().parse::<i64>().map_err(|_| {
                ApiError::new(StatusCode::BAD_REQUEST, "INVALID_CURSOR", "since must be an integer cursor")
            })
        })
        .transpose()?;
    let limit = query
        .get("limit")
        .map(|s| s.trim().parse::<i64>().map_err(|_| ApiError::bad_request("limit must be an integer")))
        .transpose()?
        .unwrap_or(DEFAULT_PULL_LIMIT)
        .clamp(1, MAX_PULL_LIMIT);

    let store = state.store.clone();
    let body = tokio::task::spawn_blocking(move || {
        store.with(|conn| -> rusqlite::Result<Value> {
            match since {
                None => {
                    // The snapshot, a page at a time in change order: a page of `limit` records at
                    // most, so a new device never receives (and parses) a whole large collection in
                    // one answer. Read under one lock so the cursor matches the snapshot exactly.
                    let mut items = store::list_live(conn, &user, &collection, limit + 1)?;
                    let has_more = items.len() as i64 > limit;
                    items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
                    // More to come: the feed from the last record's change brings the rest (and
                    // whatever changed meanwhile). All of it: the global cursor.
                    let cursor = match (has_more, items.last()) {
                        (true, Some(last)) => last.change_seq,
                        _ => store::current_seq(conn, &user)?,
                    };
                    Ok(json!({
                        "items": items.iter().map(Record::wire).collect::<Vec<_>>(),
                        "cursor": cursor,
                        "hasMore": has_more,
                    }))
                }
                Some(since) => {
                    // One extra row tells whether another page follows.
                    let mut items = store::list_since(conn, &user, &collection, since, limit + 1)?;
                    let has_more = items.len() as i64 > limit;
                    items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
                    let cursor = items.last().map_or(since, |r| r.change_seq);
                    Ok(json!({
                        "items": items.iter().map(Record::wire).collect::<Vec<_>>(),
                        "cursor": cursor,
                        "hasMore": has_more,
                    }))
                }
            }
        })
    })
    .await??;
    Ok(json_response(StatusCode::OK, &body, None))
}

pub async fn get_one(
    State(state): State<Arc<AppState>>,
    Extension(User(user)): Extension<User>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (collection, id) = record_path_from(path)?;
    let store = state.store.clone();
    let record =
        tokio::task::spawn_blocking(move || store.with(|conn| store::get(conn, &user, &collection, &id))).await??;
    match record.filter(Record::is_live) {
        Some(record) => Ok(json_response(StatusCode::OK, &record.representation(), Some(record.version))),
        None => Err(ApiError::not_found("Record not found")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    Create,
    Replace,
    Merge,
    Delete,
}

/// A parsed `If-Match`: absent, `*`, or a list of entity tags (a tag that is not an integer
/// version can never match).
#[derive(Debug, Clone)]
enum Precondition {
    None,
    Any,
    Tags(Vec<Option<i64>>),
}

impl Precondition {
    fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let Some(value) = headers.get(header::IF_MATCH) else {
            return Ok(Self::None);
        };
        let text = value.to_str().map_err(|_| ApiError::bad_request("If-Match must be ASCII"))?.trim();
        if text == "*" {
            return Ok(Self::Any);
        }
        let tags = text
            .split(',')
            .map(|tag| {
                let tag = tag.trim();
                let tag = tag.strip_prefix("W/").unwrap_or(tag);
                let tag = tag.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(tag);
                tag.parse::<i64>().ok()
            })
            .collect();
        Ok(Self::Tags(tags))
    }

    fn matches(&self, version: i64) -> bool {
        match self {
            Self::None | Self::Any => true,
            Self::Tags(tags) => tags.contains(&Some(version)),
        }
    }

    fn client_version(&self) -> Option<i64> {
        match self {
            Self::Tags(tags) => tags.iter().flatten().next().copied(),
            _ => None,
        }
    }
}

/// The idempotency key of a write: `Idempotency-Key`, else `X-Operation-ID`.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key").or_else(|| headers.get("x-operation-id")) else {
        return Ok(None);
    };
    let invalid = |message: &str| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_IDEMPOTENCY_KEY", message.to_owned());
    let key = value.to_str().map_err(|_| invalid("idempotency key must be ASCII"))?.trim();
    if key.is_empty() {
        return Err(invalid("idempotency key must not be empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(invalid("idempotency key longer than 200 characters"));
    }
    Ok(Some(key.to_owned()))
}

/// One finished REST response; this is what the ledger stores for a keyed write.
struct Reply {
    status: u16,
    body: Value,
    etag: Option<i64>,
}

impl Reply {
    fn new(status: StatusCode, body: Value, etag: Option<i64>) -> Self {
        Self { status: status.as_u16(), body, etag }
    }

    fn to_ledger(&self) -> Value {
        json!({"status": self.status, "body": self.body, "etag": self.etag})
    }

    /// If the key was first used as a batch op id, the batch result stands in as the body.
    fn from_ledger(hit: LedgerHit) -> Self {
        let status = u16::try_from(hit.status).unwrap_or(500);
        match hit.kind {
            LedgerKind::Rest => Self {
                status,
                etag: hit.result["etag"].as_i64(),
                body: hit.result.get("body").cloned().unwrap_or(Value::Null),
            },
            LedgerKind::Batch => Self { status, etag: hit.result["data"]["version"].as_i64(), body: hit.result },
        }
    }

    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        json_response(status, &self.body, self.etag)
    }
}

fn not_found() -> Reply {
    Reply::new(StatusCode::NOT_FOUND, error_body("Record not found", "NOT_FOUND"), None)
}

fn conflict(status: StatusCode, server: &Record, client_version: Option<i64>, now: &str) -> Reply {
    let body = json!({
        "success": false,
        "error": "Version conflict",
        "code": "CONFLICT",
        "conflict": {
            "type": "version",
            "serverVersion": server.version,
            "clientVersion": client_version,
            "serverData": server.representation(),
            "conflictTimestamp": now,
        },
    });
    Reply::new(status, body, Some(server.version))
}

/// The server owns `id` and `version`; whatever the client sent for them is not data.
fn strip_owned(mut body: Map<String, Value>) -> Map<String, Value> {
    body.remove("id");
    body.remove("version");
    body
}

struct WriteRequest {
    user: String,
    kind: Write,
    collection: String,
    id: String,
    body: Map<String, Value>,
    precondition: Precondition,
    key: Option<String>,
}

fn apply_logged(conn: &mut Connection, req: WriteRequest) -> rusqlite::Result<Reply> {
    let tx = conn.transaction()?;
    if let Some(key) = &req.key {
        if let Some(hit) = store::ledger_redeliver(&tx, &req.user, key)? {
            tx.commit()?;
            return Ok(Reply::from_ledger(hit));
        }
    }
    let now = clock::now();
    let current = store::get(&tx, &req.user, &req.collection, &req.id)?;
    let at = Key { user: &req.user, collection: &req.collection, id: &req.id };
    let live = current.as_ref().filter(|r| r.is_live());
    let reply = match (req.kind, live) {
        (Write::Create, Some(cur)) => conflict(StatusCode::CONFLICT, cur, None, &now),
        (Write::Create, None) => {
            let version = current.as_ref().map_or(0, |r| r.version) + 1;
            let data = Value::Object(strip_owned(req.body));
            let record = store::write(&tx, at, version, Some(data), &now)?;
            Reply::new(StatusCode::CREATED, record.representation(), Some(record.version))
        }
        (_, None) => not_found(),
        (_, Some(cur)) if !req.precondition.matches(cur.version) => {
            conflict(StatusCode::PRECONDITION_FAILED, cur, req.precondition.client_version(), &now)
        }
        (Write::Delete, Some(cur)) => {
            let record = store::write(&tx, at, cur.version + 1, None, &now)?;
            Reply::new(
                StatusCode::OK,
                json!({"success": true, "id": record.id, "version": record.version}),
                Some(record.version),
            )
        }
        (Write::Replace | Write::Merge, Some(cur)) => {
            let data = if req.kind == Write::Merge {
                merge(cur.data.clone(), strip_owned(req.body))
            } else {
                strip_owned(req.body)
            };
            let record = store::write(&tx, at, cur.version + 1, Some(Value::Object(data)), &now)?;
            Reply::new(StatusCode::OK, record.representation(), Some(record.version))
        }
    };
    if let Some(op_id) = &req.key {
        let result = reply.to_ledger();
        let entry = LedgerEntry {
            user: &req.user,
            op_id,
            kind: LedgerKind::Rest,
            result: &result,
            status: i64::from(reply.status),
        };
        store::ledger_put(&tx, &entry, &now)?;
    }
    tx.commit()?;
    Ok(reply)
}

/// Shallow merge with JSON merge-patch's rule that `null` removes a key. Deliberately not
/// recursive: clients send whole changed top-level fields, and a recursive merge would keep keys
/// the client removed from a nested object.
fn merge(current: Option<Value>, patch: Map<String, Value>) -> Map<String, Value> {
    let mut data = match current {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    for (key, value) in patch {
        if value.is_null() {
            data.remove(&key);
        } else {
            data.insert(key, value);
        }
    }
    data
}

async fn run_write(state: &AppState, req: WriteRequest) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let reply = tokio::task::spawn_blocking(move || store.with(|conn| apply_logged(conn, req))).await??;
    Ok(reply.into_response())
}

/// `POST /api/{collection}`
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(User(user)): Extension<User>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let collection = collection_from(path)?;
    let key = idempotency_key(&headers)?;
    let body = read_object(&headers, body).await?;
    let id = match body.get("id") {
        None | Some(Value::Null) => clock::random_id(),
        Some(Value::String(id)) if valid_name(id) => id.clone(),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        Some(_) => return Err(ApiError::bad_request("id must be a string of 1 to 200 characters or an integer")),
    };
    let req = WriteRequest { user, kind: Write::Create, collection, id, body, precondition: Precondition::None, key };
    run_write(&state, req).await
}

async fn update(
    state: Arc<AppState>,
    User(user): User,
    kind: Write,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Option<Body>,
) -> Result<Response, ApiError> {
    let (collection, id) = record_path_from(path)?;
    let key = idempotency_key(&headers)?;
    let precondition = Precondition::from_headers(&headers)?;
    let body = match body {
        Some(body) => read_object(&headers, body).await?,
        None => Map::new(),
    };
    let req = WriteRequest { user, kind, collection, id, body, precondition, key };
    run_write(&state, req).await
}

/// `PUT /api/{collection}/{id}`
pub async fn replace(
    State(state): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    update(state, user, Write::Replace, path, headers, Some(body)).await
}

/// `PATCH /api/{collection}/{id}`
pub async fn patch(
    State(state): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    update(state, user, Write::Merge, path, headers, Some(body)).await
}

/// `DELETE /api/{collection}/{id}`; any request body is ignored.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    update(state, user, Write::Delete, path, headers, None).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn if_match(value: &str) -> Precondition {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_MATCH, HeaderValue::from_str(value).unwrap());
        Precondition::from_headers(&headers).unwrap()
    }

    #[test]
    fn if_match_forms() {
        assert!(if_match("\"3\"").matches(3));
        assert!(!if_match("\"3\"").matches(4));
        assert!(if_match("3").matches(3));
        assert!(if_match("W/\"3\"").matches(3));
        assert!(if_match("*").matches(99));
        assert!(if_match("\"1\", \"2\"").matches(2));
        assert!(!if_match("\"abc\"").matches(0));
        assert_eq!(if_match("\"abc\", \"7\"").client_version(), Some(7));
        assert_eq!(if_match("\"abc\"").client_version(), None);
    }

    #[test]
    fn merge_is_shallow_and_null_removes() {
        let current = json!({"a": 1, "b": {"x": 1, "y": 2}, "c": 3});
        let patch = json!({"b": {"x": 5}, "c": null, "d": 4});
        let Value::Object(patch) = patch else { unreachable!() };
        let merged = merge(Some(current), patch);
        assert_eq!(Value::Object(merged), json!({"a": 1, "b": {"x": 5}, "d": 4}));
    }
}
