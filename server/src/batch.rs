//! `POST /api/sync/batch`: each operation is applied in its own transaction together with its
//! ledger row, so a retried batch (same op ids) never applies anything twice. Everything happens in
//! the signed-in user's own records and ledger.

use std::sync::Arc;

use crate::store::checksum;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use rusqlite::{Connection, Transaction};
use serde_json::{json, Value};

use crate::auth::User;
use crate::body::read_json;
use crate::error::{json_response, ApiError};
use crate::store::{self, Key, LedgerEntry, LedgerHit, LedgerKind, Record};
use crate::{clock, valid_name, AppState};

pub const MAX_OPERATIONS: usize = 1000;

pub async fn handle(
    State(state): State<Arc<AppState>>,
    Extension(User(user)): Extension<User>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let request = read_json(&headers, body).await?;
    let operations = parse_request(request)?;
    let store = state.store.clone();
    let results = tokio::task::spawn_blocking(move || store.with(|conn| run_batch(conn, &user, &operations))).await?;

    let mut success_count = 0;
    let mut conflict_count = 0;
    let mut error_count = 0;
    for result in &results {
        if result["success"] == Value::Bool(true) {
            success_count += 1;
        } else if result.get("conflict").is_some_and(|c| !c.is_null()) {
            conflict_count += 1;
        } else {
            error_count += 1;
        }
    }
    let body = json!({
        "success": success_count == results.len(),
        "results": results,
        "serverTime": clock::now(),
        "metrics": {
            "processedCount": results.len(),
            "successCount": success_count,
            "conflictCount": conflict_count,
            "errorCount": error_count,
        },
    });
    Ok(json_response(StatusCode::OK, &body, None))
}

fn parse_request(request: Value) -> Result<Vec<Value>, ApiError> {
    let Value::Object(mut map) = request else {
        return Err(ApiError::bad_request("request body must be a JSON object"));
    };
    for field in ["clientTime", "deviceId"] {
        if map.get(field).is_some_and(|v| !v.is_string() && !v.is_null()) {
            return Err(ApiError::bad_request(format!("{field} must be a string")));
        }
    }
    match map.remove("operations") {
        Some(Value::Array(ops)) if ops.len() > MAX_OPERATIONS => {
            Err(ApiError::bad_request(format!("too many operations: {} (max {MAX_OPERATIONS})", ops.len())))
        }
        Some(Value::Array(ops)) => Ok(ops),
        Some(_) => Err(ApiError::bad_request("operations must be an array")),
        None => Err(ApiError::bad_request("missing operations")),
    }
}

fn run_batch(conn: &mut Connection, user: &str, operations: &[Value]) -> Vec<Value> {
    operations
        .iter()
        .map(|op| {
            let op_id = op.get("id").and_then(Value::as_str).filter(|id| valid_name(id));
            apply_logged(conn, user, op, op_id).unwrap_or_else(|err| {
                // Nothing was committed for this op, so a retry may still apply it: no ledger row.
                json!({
                    "operationId": op_id,
                    "success": false,
                    "status": 500,
                    "error": format!("database error: {err}"),
                })
            })
        })
        .collect()
}

fn apply_logged(conn: &mut Connection, user: &str, op: &Value, op_id: Option<&str>) -> rusqlite::Result<Value> {
    let tx = conn.transaction()?;
    if let Some(id) = op_id {
        if let Some(hit) = store::ledger_redeliver(&tx, user, id)? {
            tx.commit()?;
            return Ok(replay(id, hit));
        }
    }
    let now = clock::now();
    let result = evaluate(&tx, user, op, op_id, &now)?;
    if let Some(op_id) = op_id {
        let status = result["status"].as_i64().unwrap_or(500);
        let entry = LedgerEntry { user, op_id, kind: LedgerKind::Batch, result: &result, status };
        store::ledger_put(&tx, &entry, &now)?;
    }
    tx.commit()?;
    Ok(result)
}

/// A batch result for an op id seen before. If that id was first used as a REST idempotency key,
/// the stored HTTP response is translated into the batch result shape.
fn replay(op_id: &str, hit: LedgerHit) -> Value {
    if hit.kind == LedgerKind::Batch {
        return hit.result;
    }
    let body = &hit.result["body"];
    if (200..300).contains(&hit.status) {
        json!({"operationId": op_id, "success": true, "status": hit.status, "data": body})
    } else {
        let mut result = json!({
            "operationId": op_id,
            "success": false,
            "status": hit.status,
            "error": body.get("error").cloned().unwrap_or(Value::Null),
        });
        if let Some(conflict) = body.get("conflict") {
            result["conflict"] = conflict.clone();
        }
        result
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpType {
    Create,
    Update,
    Delete,
}

struct Operation<'a> {
    op_type: OpType,
    collection: &'a str,
    entity_id: String,
    payload: &'a Value,
    checksum: Option<&'a str>,
    base_version: Option<i64>,
}

fn parse_operation(op: &Value) -> Result<Operation<'_>, String> {
    let Value::Object(map) = op else {
        return Err("operation must be an object".into());
    };
    match map.get("id") {
        Some(Value::String(id)) if valid_name(id) => {}
        _ => return Err("id must be a non-empty string of at most 200 characters".into()),
    }
    let op_type = match map.get("type").and_then(Value::as_str) {
        Some("create") => OpType::Create,
        Some("update") => OpType::Update,
        Some("delete") => OpType::Delete,
        Some(other) => return Err(format!("unknown operation type: {other}")),
        None => return Err("type must be \"create\", \"update\" or \"delete\"".into()),
    };
    let collection = match map.get("entityType") {
        Some(Value::String(c)) if valid_name(c) => c.as_str(),
        _ => return Err("entityType must be a non-empty string of at most 200 characters".into()),
    };
    let entity_id = match map.get("entityId") {
        Some(Value::String(id)) if valid_name(id) => id.clone(),
        // Numeric ids (json-server style) are accepted and stored as their decimal string.
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        _ => return Err("entityId must be a non-empty string of at most 200 characters or an integer".into()),
    };
    let payload = map.get("payload").unwrap_or(&Value::Null);
    if op_type != OpType::Delete && !payload.is_object() {
        return Err("payload must be an object for create and update".into());
    }
    let checksum = match map.get("checksum") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err("checksum must be a string".into()),
    };
    let base_version = match map.get("baseVersion") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64() {
            Some(n) => Some(n),
            None => return Err("baseVersion must be an integer or null".into()),
        },
    };
    Ok(Operation { op_type, collection, entity_id, payload, checksum, base_version })
}

fn failure(op_id: Option<&str>, status: u16, error: &str) -> Value {
    json!({"operationId": op_id, "success": false, "status": status, "error": error})
}

fn success(op_id: &str, record: &Record) -> Value {
    json!({"operationId": op_id, "success": true, "status": 200, "data": record.wire()})
}

#[derive(Debug, Clone, Copy)]
enum ConflictType {
    Version,
    Deleted,
}

fn conflict(op_id: &str, kind: ConflictType, server: Option<&Record>, client_version: Option<i64>, now: &str) -> Value {
    let (status, error, type_name) = match kind {
        ConflictType::Version => (409, "Version conflict", "version"),
        ConflictType::Deleted => (404, "Record deleted", "deleted"),
    };
    json!({
        "operationId": op_id,
        "success": false,
        "status": status,
        "error": error,
        "conflict": {
            "type": type_name,
            "serverVersion": server.map_or(0, |r| r.version),
            "clientVersion": client_version,
            "serverData": server.and_then(|r| r.data.clone()),
            "serverRecord": server.map(Record::wire),
            "conflictTimestamp": now,
        },
    })
}

fn evaluate(tx: &Transaction<'_>, user: &str, op: &Value, op_id: Option<&str>, now: &str) -> rusqlite::Result<Value> {
    let parsed = match parse_operation(op) {
        Ok(parsed) => parsed,
        Err(message) => return Ok(failure(op_id, 400, &message)),
    };
    // parse_operation only succeeds with a valid id.
    let op_id = op_id.unwrap_or_default();
    if parsed.op_type != OpType::Delete {
        if let Some(claimed) = parsed.checksum {
            if !claimed.eq_ignore_ascii_case(&checksum(parsed.payload)) {
                return Ok(failure(Some(op_id), 422, "checksum mismatch"));
            }
        }
    }

    let (collection, id) = (parsed.collection, parsed.entity_id.as_str());
    let key = Key { user, collection, id };
    let current = store::get(tx, user, collection, id)?;
    let live = current.as_ref().filter(|r| r.is_live());
    let base = parsed.base_version;

    let result = match parsed.op_type {
        OpType::Create => match live {
            Some(cur) if base != Some(cur.version) => conflict(op_id, ConflictType::Version, Some(cur), base, now),
            _ => {
                let version = current.as_ref().map_or(0, |r| r.version) + 1;
                let record = store::write(tx, key, version, Some(parsed.payload.clone()), now)?;
                success(op_id, &record)
            }
        },
        OpType::Update => match live {
            None => conflict(op_id, ConflictType::Deleted, current.as_ref(), base, now),
            Some(cur) if base.is_some_and(|b| b != cur.version) => {
                conflict(op_id, ConflictType::Version, Some(cur), base, now)
            }
            Some(cur) => {
                let record = store::write(tx, key, cur.version + 1, Some(parsed.payload.clone()), now)?;
                success(op_id, &record)
            }
        },
        OpType::Delete => match (live, current.as_ref()) {
            (None, Some(tombstone)) => success(op_id, tombstone),
            (None, None) => success(op_id, &Record::absent(collection, id)),
            (Some(cur), _) if base.is_some_and(|b| b != cur.version) => {
                conflict(op_id, ConflictType::Version, Some(cur), base, now)
            }
            (Some(cur), _) => {
                let record = store::write(tx, key, cur.version + 1, None, now)?;
                success(op_id, &record)
            }
        },
    };
    Ok(result)
}
