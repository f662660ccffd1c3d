//! The batch protocol (`POST /api/sync/batch`): encoding requests and decoding responses.
//!
//! Pure Rust, so the decoder is tested and fuzzed natively. A response we cannot understand is
//! a `PROTOCOL` failure (retryable), never a panic.

use serde::Serialize;

use crate::core::error::SyncError;
use crate::core::merge::parse_time_ms;
use crate::core::op::Operation;
use crate::core::retry::parse_retry_after;
use crate::core::time::iso_time;
use crate::core::traits::{Failure, OpResult, Outcome, PushResponse};
use crate::core::value::{Map, Value};

pub use super::shape::error_message;

/// Larger bodies are refused unread (a server that sends megabytes is not answering us).
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// The request body for `ops`.
pub fn encode_request(ops: &[Operation], device_id: &str, client_time_ms: u64) -> String {
    let operations = ops
        .iter()
        .map(|o| WireOp {
            base_version: o.base_version,
            checksum: &o.checksum,
            entity_id: &o.entity_id,
            entity_type: &o.collection,
            id: &o.id,
            payload: &o.payload,
            kind: o.kind.as_str(),
        })
        .collect();
    let body = WireRequest { client_time: iso_time(client_time_ms), device_id, operations };
    crate::core::json::to_string(&body).unwrap_or_default()
}

// The batch request as the reference protocol spells it (fields in alphabetical order, as the
// bodies have always been written).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest<'a> {
    client_time: String,
    device_id: &'a str,
    operations: Vec<WireOp<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireOp<'a> {
    base_version: Option<u64>,
    checksum: &'a str,
    entity_id: &'a str,
    entity_type: &'a str,
    id: &'a str,
    payload: &'a Option<Value>,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// Decodes an HTTP answer to a batch request. `retry_after` is the `Retry-After` header, if any.
pub fn decode_response(
    status: u16,
    body: &str,
    retry_after: Option<&str>,
    now_ms: u64,
) -> Result<PushResponse, Failure> {
    let v = json_answer(status, body, retry_after, now_ms)?;
    let obj = v.as_object().ok_or_else(|| protocol("the response is not a JSON object".into()))?;
    let results = obj
        .get("results")
        .and_then(Value::as_array)
        .ok_or_else(|| protocol("the response has no `results` array".into()))?;
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        out.push(decode_result(r)?);
    }
    let server_time_ms = obj.get("serverTime").and_then(parse_time_ms);
    Ok(PushResponse { results: out, server_time_ms })
}

fn decode_result(r: &Value) -> Result<OpResult, Failure> {
    let r = r.as_object().ok_or_else(|| protocol("a result is not an object".into()))?;
    let op_id =
        r.get("operationId").and_then(Value::as_str).ok_or_else(|| protocol("a result has no `operationId`".into()))?;
    let success = r
        .get("success")
        .and_then(Value::as_bool)
        .ok_or_else(|| protocol(format!("result {op_id} has no boolean `success`")))?;
    let outcome = if success {
        let data = r.get("data").and_then(Value::as_object);
        let version = data
            .and_then(|d| d.get("version"))
            .map(as_version)
            .transpose()
            .map_err(|m| protocol(format!("result {op_id}: {m}")))?
            .flatten();
        let record = data.and_then(|d| d.get("data")).filter(|v| !v.is_null()).cloned();
        if record.as_ref().is_some_and(|d| !d.is_object()) {
            return Err(protocol(format!("result {op_id}: `data.data` is not an object")));
        }
        let checksum = data.and_then(|d| d.get("checksum")).and_then(Value::as_str).map(str::to_string);
        Outcome::Accepted { version, data: record, checksum }
    } else if let Some(c) = r.get("conflict").and_then(Value::as_object) {
        decode_conflict(c).map_err(|m| protocol(format!("result {op_id}: {m}")))?
    } else {
        let message = super::shape::message_of(r).unwrap_or_else(|| "the server refused the operation".into());
        let status =
            r.get("status").or_else(|| r.get("statusCode")).and_then(Value::as_u64).and_then(|s| u16::try_from(s).ok());
        let status = status.unwrap_or_else(|| status_from_error(super::shape::error_code(r).unwrap_or(&message)));
        // A 409 or 412 without the server's state stays what it is: the engine retries it (it is
        // a conflict the server will describe next time) and knows the server did not apply it.
        let message = match status {
            409 | 412 => format!("conflict without the server's state: {message}"),
            _ => message,
        };
        Outcome::Failed(Failure::new(SyncError::Http { status, message }))
    };
    Ok(OpResult { op_id: op_id.to_string(), outcome })
}

/// The status a failed result without one stands for, from its error code or message. Only an
/// error that says the operation itself is wrong is permanent (400, 403, 404, 413, 422); anything
/// else (an unknown code, a bare "failed") is retried (503): a write is never dropped on a guess.
fn status_from_error(said: &str) -> u16 {
    let said = said.to_ascii_lowercase();
    // Word stems, matched by prefix (no substring search: it costs the wasm a searcher).
    let words: Vec<&str> = said.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let says = |stems: &[&str]| words.iter().any(|w| stems.iter().any(|s| w.starts_with(s)));
    const STATUS: [(u16, &[&str]); 8] = [
        (409, &["conflict", "version", "stale", "precondition"]),
        (429, &["rate", "throttl", "many"]),
        (503, &["unavailable", "timeout", "timed", "internal", "temporar", "retry", "busy", "overload"]),
        (401, &["unauthori", "unauthenti", "token", "expired"]),
        (403, &["forbidden", "permission", "denied"]),
        (404, &["notfound", "found", "missing"]),
        (413, &["large", "payload"]),
        (422, &["valid", "invalid", "required", "malformed", "bad", "must", "schema"]),
    ];
    STATUS.iter().find(|(_, stems)| says(stems)).map_or(503, |(status, _)| *status)
}

/// Reads the reference design's conflict object:
/// `{type, serverVersion, clientVersion, serverData, serverRecord?, conflictTimestamp}`.
pub fn decode_conflict(c: &Map) -> Result<Outcome, String> {
    let deleted = c.get("type").and_then(Value::as_str) == Some("deleted");
    let server_version = c.get("serverVersion").map(as_version).transpose()?.flatten();
    let server_data = c.get("serverData").filter(|v| !v.is_null()).cloned();
    if server_data.as_ref().is_some_and(|d| !d.is_object()) {
        return Err("`conflict.serverData` is not an object".into());
    }
    if server_data.is_none() && !deleted {
        return Err("a version conflict without `serverData`".into());
    }
    let server_modified_ms = c
        .get("serverRecord")
        .and_then(|r| r.get("updatedAt"))
        .and_then(parse_time_ms)
        .or_else(|| c.get("conflictTimestamp").and_then(parse_time_ms));
    Ok(Outcome::Conflict { server_version, server_data, deleted, server_modified_ms })
}

/// A version is a non-negative integer (JSON number or numeric string); `null` means none.
fn as_version(v: &Value) -> Result<Option<u64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("version {} is not a non-negative integer", crate::core::json::text(v))),
        Value::String(s) => s.trim_matches('"').parse().map(Some).map_err(|_| format!("version '{s}' is not a number")),
        other => Err(format!("version {} is not a number", crate::core::json::text(other))),
    }
}

/// The checks every JSON answer goes through: an HTTP error status (with its `Retry-After`), a body
/// over the size limit, a body that is not JSON.
pub fn json_answer(status: u16, body: &str, retry_after: Option<&str>, now_ms: u64) -> Result<Value, Failure> {
    if !(200..300).contains(&status) {
        let message = error_message(body).unwrap_or_else(|| format!("the server answered {status}"));
        return Err(Failure {
            error: SyncError::Http { status, message },
            retry_after_ms: retry_after.and_then(|v| parse_retry_after(v, now_ms)),
        });
    }
    if body.len() > MAX_RESPONSE_BYTES {
        return Err(protocol(format!("the response is {} bytes; the limit is {MAX_RESPONSE_BYTES}", body.len())));
    }
    crate::core::json::parse(body).map_err(|e| protocol(format!("the response is not JSON ({e})")))
}

fn protocol(m: String) -> Failure {
    Failure::new(SyncError::Protocol(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::op::{OpKind, Priority};
    use crate::json;

    fn op(id: &str) -> Operation {
        Operation {
            id: id.into(),
            seq: 1,
            collection: "notes".into(),
            entity_id: "n1".into(),
            kind: OpKind::Update,
            payload: Some(json!({"t": 1})),
            base_version: Some(2),
            priority: Priority::High,
            created_at: 0,
            attempts: 0,
            next_attempt_at: 0,
            last_error: None,
            last_status: None,
            checksum: "abc".into(),
            sent: true,
            patch: None,
        }
    }

    #[test]
    fn encodes_the_reference_shape() {
        let body: Value = crate::core::json::parse(&encode_request(&[op("o1")], "dev", 784_111_777_000)).unwrap();
        assert_eq!(
            body,
            json!({"operations": [{"id": "o1", "type": "update", "entityType": "notes", "entityId": "n1",
                    "payload": {"t": 1}, "checksum": "abc", "baseVersion": 2}],
                   "clientTime": "1994-11-06T08:49:37.000Z", "deviceId": "dev"})
        );
        // Byte for byte the text the body had when it was built as a `Value` (sorted keys, compact).
        let mut none = op("o2");
        (none.payload, none.base_version) = (None, None);
        let text = encode_request(&[op("o1"), none], "dev", 0);
        let value: Value = crate::core::json::parse(&text).unwrap();
        assert_eq!(text, value.to_string());
        assert!(text.contains(r#""baseVersion":null,"checksum":"abc","entityId":"n1","entityType":"notes","id":"o2","payload":null,"type":"update"}"#), "{text}");
    }

    #[test]
    fn decodes_accepted_conflict_and_failed() {
        let body = json!({"success": false, "serverTime": "1994-11-06T08:49:37.000Z", "results": [
            {"operationId": "a", "success": true, "data": {"version": 3, "data": {"t": 1}, "checksum": "x"}},
            {"operationId": "b", "success": false, "status": 409, "error": "Version conflict",
             "conflict": {"type": "version", "serverVersion": 7, "serverData": {"t": 9}, "conflictTimestamp": "1994-11-06T08:49:38Z"}},
            {"operationId": "c", "success": false, "status": 404, "conflict": {"type": "deleted", "serverVersion": 4, "serverData": null}},
            {"operationId": "d", "success": false, "status": 422, "error": "checksum mismatch"}
        ]})
        .to_string();
        let r = decode_response(200, &body, None, 0).unwrap();
        assert_eq!(r.server_time_ms, Some(784_111_777_000));
        assert_eq!(
            r.results[0].outcome,
            Outcome::Accepted { version: Some(3), data: Some(json!({"t": 1})), checksum: Some("x".into()) }
        );
        assert_eq!(
            r.results[1].outcome,
            Outcome::Conflict {
                server_version: Some(7),
                server_data: Some(json!({"t": 9})),
                deleted: false,
                server_modified_ms: Some(784_111_778_000)
            }
        );
        assert!(matches!(
            r.results[2].outcome,
            Outcome::Conflict { deleted: true, server_data: None, server_version: Some(4), .. }
        ));
        assert_eq!(
            r.results[3].outcome,
            Outcome::Failed(Failure::new(SyncError::Http { status: 422, message: "checksum mismatch".into() }))
        );
    }

    #[test]
    fn a_failed_result_without_status_is_classified_from_its_error() {
        let body = json!({"success": false, "results": [
            {"operationId": "v", "success": false, "error": {"code": "VALIDATION_ERROR", "message": "grade must be 0-3"}},
            {"operationId": "u", "success": false, "error": "something went wrong"},
            {"operationId": "r", "success": false, "error": {"code": "RATE_LIMITED"}},
            {"operationId": "c", "success": false, "error": "Version conflict"}
        ]})
        .to_string();
        let r = decode_response(200, &body, None, 0).unwrap();
        let status = |i: usize| match &r.results[i].outcome {
            Outcome::Failed(f) => f.error.status(),
            other => panic!("{other:?}"),
        };
        // Invalid input is permanent; an unknown error is retried, never dropped on a guess; a
        // conflict without the server's state is retried until the server says more.
        assert_eq!((status(0), status(1), status(2), status(3)), (Some(422), Some(503), Some(429), Some(409)));
        match &r.results[0].outcome {
            Outcome::Failed(f) => assert!(f.error.to_string().contains("VALIDATION_ERROR: grade must be 0-3")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn http_errors_carry_status_and_retry_after() {
        let f = decode_response(503, r#"{"error":"down"}"#, Some("7"), 0).unwrap_err();
        assert_eq!(f.error, SyncError::Http { status: 503, message: "down".into() });
        assert_eq!(f.retry_after_ms, Some(7_000));
        let f = decode_response(429, "<html>", None, 0).unwrap_err();
        assert_eq!(f.error.status(), Some(429));
    }

    #[test]
    fn hostile_bodies_are_protocol_errors() {
        for body in [
            "<html><body>Bad Gateway</body></html>",
            r#"{"success": true, "results": [{"operationId": "a", "succ"#,
            r#"{"success": "yes", "results": 5}"#,
            r#"{"success": true}"#,
            r#"[1,2,3]"#,
            r#"{"results": [{"operationId": 5, "success": true}]}"#,
            r#"{"results": [{"operationId": "a", "success": true, "data": {"version": -1}}]}"#,
            r#"{"results": [{"operationId": "a", "success": true, "data": {"version": 1, "data": [1]}}]}"#,
            r#"{"results": [{"operationId": "a", "success": false, "conflict": {"type": "version"}}]}"#,
            "",
        ] {
            let f = decode_response(200, body, None, 0).unwrap_err();
            assert_eq!(f.error.code(), "PROTOCOL", "{body}");
        }
        let huge = format!("\"{}\"", "x".repeat(MAX_RESPONSE_BYTES));
        assert_eq!(decode_response(200, &huge, None, 0).unwrap_err().error.code(), "PROTOCOL");
    }

    #[test]
    fn iso_time_round_trips() {
        for ms in [0, 784_111_777_123, 1_700_000_000_000, 4_102_444_800_000] {
            assert_eq!(parse_time_ms(&Value::String(iso_time(ms))), Some(ms));
        }
    }
}
