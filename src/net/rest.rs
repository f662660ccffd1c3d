//! REST mode: one plain CRUD request per op, for backends that know nothing of tidesync.
//!
//! create -> `POST {endpoint}`, update -> `PUT {endpoint}/{id}` (or `PATCH` with a JSON merge
//! patch of the changed fields), delete -> `DELETE {endpoint}/{id}`. Every write carries the op id
//! as `Idempotency-Key` and `X-Operation-ID`, and `If-Match` when the record's version is known.
//! Pure Rust: the fetch transport sends what `request_for` builds and hands the answer to `decode`.

use serde::Serialize;

use super::batch::{decode_conflict, error_message, MAX_RESPONSE_BYTES};
use crate::core::error::SyncError;
use crate::core::op::{OpKind, Operation};
use crate::core::retry::parse_retry_after;
use crate::core::traits::{Failure, Outcome};
use crate::core::value::{Map, Value};

/// How a collection talks to its server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Wire {
    /// The batch protocol (`POST /api/sync/batch`).
    #[default]
    Batch,
    /// Plain CRUD requests.
    Rest,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdateMethod {
    #[default]
    Put,
    Patch,
}

/// Where the server says which version a record is at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum VersionSource {
    /// The `ETag` header (a quoted integer, weak or strong), else a `version` field of the body.
    #[default]
    Etag,
    /// This field of the body.
    Field(String),
    /// No versions: last write wins on the server; no `If-Match`.
    None,
}

impl VersionSource {
    pub fn parse(s: &str) -> VersionSource {
        match s {
            "etag" => VersionSource::Etag,
            "none" => VersionSource::None,
            field => VersionSource::Field(field.to_string()),
        }
    }
}

/// One collection's wire settings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CollectionWire {
    pub endpoint: String,
    pub wire: Wire,
    pub update: UpdateMethod,
    pub version: VersionSource,
    /// The query parameter carrying the pull cursor (`since`).
    pub pull_param: String,
}

/// An HTTP request to make.
#[derive(Clone, Debug, PartialEq)]
pub struct RestRequest {
    pub method: &'static str,
    /// Path (or URL) relative to the base URL.
    pub path: String,
    pub body: Option<String>,
    pub headers: Vec<(&'static str, String)>,
}

/// Percent-encodes a path segment.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn with_id(payload: &Option<Value>, id: &str) -> String {
    let mut v = payload.clone().unwrap_or_else(|| Value::Object(Map::new()));
    if let Value::Object(m) = &mut v {
        if !m.contains_key("id") {
            m.insert("id".into(), Value::String(id.to_string()));
        }
    }
    crate::core::json::text(&v)
}

/// The request that carries `op` to a plain REST backend.
pub fn request_for(op: &Operation, c: &CollectionWire) -> RestRequest {
    let item = format!("{}/{}", c.endpoint.trim_end_matches('/'), encode_segment(&op.entity_id));
    let (method, path, body) = match op.kind {
        OpKind::Create => ("POST", c.endpoint.clone(), Some(with_id(&op.payload, &op.entity_id))),
        OpKind::Update => match (c.update, &op.patch) {
            (UpdateMethod::Patch, Some(patch)) => ("PATCH", item, Some(crate::core::json::text(patch))),
            _ => ("PUT", item, Some(with_id(&op.payload, &op.entity_id))),
        },
        OpKind::Delete => ("DELETE", item, None),
    };
    let mut headers = vec![("Idempotency-Key", op.id.clone()), ("X-Operation-ID", op.id.clone())];
    if let (Some(v), false) = (op.base_version, c.version == VersionSource::None) {
        if op.kind != OpKind::Create {
            headers.push(("If-Match", format!("\"{v}\"")));
        }
    }
    RestRequest { method, path, body, headers }
}

/// A version from an `ETag`: `"3"`, `W/"3"` or `3`.
pub fn etag_version(etag: &str) -> Option<u64> {
    let etag = etag.trim();
    etag.strip_prefix("W/").unwrap_or(etag).trim_matches('"').parse().ok()
}

fn body_version(body: Option<&Map>, field: &str) -> Option<u64> {
    let v = body?.get(field)?;
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// What the answer to one REST request means for its op. `Err(())` from a conflict answer means
/// the body does not hold the server's state: the caller fetches the record (`GET`) and calls
/// `decode_fetched`.
pub fn decode(
    op: &Operation,
    c: &CollectionWire,
    status: u16,
    body: &str,
    etag: Option<&str>,
    retry_after: Option<&str>,
    now_ms: u64,
) -> Result<Outcome, NeedsFetch> {
    let failed = |error: SyncError| Ok(Outcome::Failed(Failure::new(error)));
    if body.len() > MAX_RESPONSE_BYTES {
        return failed(SyncError::Protocol(format!(
            "the response is {} bytes; the limit is {MAX_RESPONSE_BYTES}",
            body.len()
        )));
    }
    let json: Option<Value> = if body.trim().is_empty() { None } else { crate::core::json::parse(body).ok() };
    let obj = json.as_ref().and_then(Value::as_object);
    let version = |obj: Option<&Map>| match &c.version {
        VersionSource::Etag => etag.and_then(etag_version).or_else(|| body_version(obj, "version")),
        VersionSource::Field(f) => body_version(obj, f),
        VersionSource::None => None,
    };
    match status {
        200..=299 => {
            if !body.trim().is_empty() && json.is_none() {
                return failed(SyncError::Protocol("the server answered 2xx with a body that is not JSON".into()));
            }
            if obj.and_then(|o| o.get("success")).and_then(Value::as_bool) == Some(false) {
                let message = error_message(body).unwrap_or_else(|| "the server said it failed".into());
                return failed(SyncError::Protocol(format!("the server answered {status} but said: {message}")));
            }
            // The record stays as the app wrote it: a REST representation adds server fields
            // (`id`, `version`, timestamps) that differ between backends; pulls bring those.
            Ok(Outcome::Accepted { version: version(obj), data: None, checksum: None })
        }
        // Deleting what is already gone is done.
        404 if op.kind == OpKind::Delete => Ok(Outcome::Accepted { version: None, data: None, checksum: None }),
        404 if op.kind == OpKind::Update => {
            Ok(Outcome::Conflict { server_version: None, server_data: None, deleted: true, server_modified_ms: None })
        }
        409 | 412 => {
            // The reference format first, then `serverData`, then the body as the record itself.
            if let Some(conflict) = obj.and_then(|o| o.get("conflict")).and_then(Value::as_object) {
                if let Ok(mut outcome) = decode_conflict(conflict) {
                    if let Outcome::Conflict { server_version, .. } = &mut outcome {
                        *server_version = server_version.or_else(|| etag.and_then(etag_version));
                    }
                    return Ok(outcome);
                }
            }
            if let Some(data) = obj.and_then(|o| o.get("serverData")).filter(|d| d.is_object()) {
                let server_version = etag.and_then(etag_version).or_else(|| body_version(data.as_object(), "version"));
                return Ok(Outcome::Conflict {
                    server_version,
                    server_data: Some(data.clone()),
                    deleted: false,
                    server_modified_ms: None,
                });
            }
            match obj {
                Some(o) if o.contains_key("id") && !o.contains_key("error") => Ok(Outcome::Conflict {
                    server_version: version(obj),
                    server_data: Some(Value::Object(o.clone())),
                    deleted: false,
                    server_modified_ms: None,
                }),
                _ => Err(NeedsFetch),
            }
        }
        _ => {
            let message = error_message(body).unwrap_or_else(|| format!("the server answered {status}"));
            Ok(Outcome::Failed(Failure {
                error: SyncError::Http { status, message },
                retry_after_ms: retry_after.and_then(|v| parse_retry_after(v, now_ms)),
            }))
        }
    }
}

/// A conflict answer without the server's state: fetch the record.
#[derive(Debug, PartialEq)]
pub struct NeedsFetch;

/// The conflict, from a `GET {endpoint}/{id}` made after a conflict answer without data.
pub fn decode_fetched(c: &CollectionWire, status: u16, body: &str, etag: Option<&str>) -> Outcome {
    match status {
        404 | 410 => {
            Outcome::Conflict { server_version: None, server_data: None, deleted: true, server_modified_ms: None }
        }
        200..=299 => match crate::core::json::parse(body) {
            Ok(Value::Object(o)) => {
                let server_version = match &c.version {
                    VersionSource::Etag => etag.and_then(etag_version).or_else(|| body_version(Some(&o), "version")),
                    VersionSource::Field(f) => body_version(Some(&o), f),
                    VersionSource::None => None,
                };
                Outcome::Conflict {
                    server_version,
                    server_data: Some(Value::Object(o)),
                    deleted: false,
                    server_modified_ms: None,
                }
            }
            _ => Outcome::Failed(Failure::new(SyncError::Protocol(
                "the record fetched after a conflict is not a JSON object".into(),
            ))),
        },
        _ => Outcome::Failed(Failure::new(SyncError::Http {
            status,
            message: format!("fetching the record after a conflict: {status}"),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::op::Priority;
    use crate::json;

    fn op(kind: OpKind, payload: Option<Value>, base_version: Option<u64>) -> Operation {
        Operation {
            id: "op-1".into(),
            seq: 1,
            collection: "todos".into(),
            entity_id: "a b".into(),
            kind,
            payload,
            base_version,
            priority: Priority::Medium,
            created_at: 0,
            attempts: 0,
            next_attempt_at: 0,
            last_error: None,
            last_status: None,
            checksum: String::new(),
            sent: true,
            patch: Some(json!({"done": true})),
        }
    }

    fn wire() -> CollectionWire {
        CollectionWire {
            endpoint: "/api/todos".into(),
            wire: Wire::Rest,
            pull_param: "since".into(),
            ..Default::default()
        }
    }

    #[test]
    fn requests_follow_crud_conventions() {
        let r = request_for(&op(OpKind::Create, Some(json!({"t": 1})), None), &wire());
        assert_eq!((r.method, r.path.as_str()), ("POST", "/api/todos"));
        assert_eq!(crate::core::json::parse(r.body.as_deref().unwrap()).unwrap(), json!({"t": 1, "id": "a b"}));
        assert!(!r.headers.iter().any(|(k, _)| *k == "If-Match"));
        let r = request_for(&op(OpKind::Update, Some(json!({"t": 2, "done": true})), Some(3)), &wire());
        assert_eq!((r.method, r.path.as_str()), ("PUT", "/api/todos/a%20b"));
        assert!(r.headers.contains(&("If-Match", "\"3\"".into())));
        assert!(r.headers.contains(&("Idempotency-Key", "op-1".into())));
        assert!(r.headers.contains(&("X-Operation-ID", "op-1".into())));
        let patch = CollectionWire { update: UpdateMethod::Patch, ..wire() };
        let r = request_for(&op(OpKind::Update, Some(json!({"t": 2, "done": true})), Some(3)), &patch);
        assert_eq!((r.method, r.body.as_deref()), ("PATCH", Some(r#"{"done":true}"#)));
        let r =
            request_for(&op(OpKind::Delete, None, Some(4)), &CollectionWire { version: VersionSource::None, ..wire() });
        assert_eq!((r.method, r.body, r.headers.len()), ("DELETE", None, 2));
    }

    #[test]
    fn answers_map_to_outcomes() {
        let upd = op(OpKind::Update, Some(json!({"t": 2})), Some(3));
        let ok = decode(&upd, &wire(), 200, r#"{"id":"a b","t":2,"version":4}"#, Some("W/\"4\""), None, 0).unwrap();
        assert_eq!(ok, Outcome::Accepted { version: Some(4), data: None, checksum: None });
        let field = CollectionWire { version: VersionSource::Field("rev".into()), ..wire() };
        assert!(matches!(
            decode(&upd, &field, 200, r#"{"rev":"9"}"#, None, None, 0),
            Ok(Outcome::Accepted { version: Some(9), .. })
        ));
        assert!(matches!(
            decode(&upd, &wire(), 204, "", None, None, 0),
            Ok(Outcome::Accepted { version: None, data: None, .. })
        ));
        let del = op(OpKind::Delete, None, Some(3));
        assert!(matches!(decode(&del, &wire(), 404, "", None, None, 0), Ok(Outcome::Accepted { .. })));
        assert!(matches!(decode(&upd, &wire(), 404, "", None, None, 0), Ok(Outcome::Conflict { deleted: true, .. })));
        let f = decode(&upd, &wire(), 503, r#"{"error":"busy"}"#, None, Some("2"), 0).unwrap();
        assert_eq!(
            f,
            Outcome::Failed(Failure {
                error: SyncError::Http { status: 503, message: "busy".into() },
                retry_after_ms: Some(2_000)
            })
        );
    }

    #[test]
    fn conflicts_find_the_server_state_wherever_it_is() {
        let upd = op(OpKind::Update, Some(json!({"t": 2})), Some(3));
        let reference = r#"{"success":false,"error":"Version conflict","conflict":{"type":"version","serverVersion":5,"clientVersion":3,"serverData":{"t":9},"conflictTimestamp":"2024-01-15T10:30:00Z"}}"#;
        assert!(matches!(
            decode(&upd, &wire(), 409, reference, None, None, 0),
            Ok(Outcome::Conflict { server_version: Some(5), .. })
        ));
        let server_data = r#"{"error":"stale","serverData":{"t":8,"version":6}}"#;
        assert!(matches!(
            decode(&upd, &wire(), 412, server_data, None, None, 0),
            Ok(Outcome::Conflict { server_version: Some(6), .. })
        ));
        let itself = r#"{"id":"a b","t":7}"#;
        assert!(matches!(
            decode(&upd, &wire(), 409, itself, Some("\"8\""), None, 0),
            Ok(Outcome::Conflict { server_version: Some(8), .. })
        ));
        assert_eq!(decode(&upd, &wire(), 412, r#"{"error":"precondition failed"}"#, None, None, 0), Err(NeedsFetch));
        assert!(matches!(
            decode_fetched(&wire(), 200, r#"{"t":1}"#, Some("\"2\"")),
            Outcome::Conflict { server_version: Some(2), .. }
        ));
        assert!(matches!(decode_fetched(&wire(), 404, "", None), Outcome::Conflict { deleted: true, .. }));
    }

    #[test]
    fn hostile_answers_are_protocol_errors() {
        let upd = op(OpKind::Update, Some(json!({"t": 2})), Some(3));
        for body in ["<html>Bad Gateway</html>", r#"{"id": "a", "t""#, r#"{"success": false, "error": "nope"}"#] {
            match decode(&upd, &wire(), 200, body, None, None, 0) {
                Ok(Outcome::Failed(f)) => assert_eq!(f.error.code(), "PROTOCOL", "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        let huge = "x".repeat(MAX_RESPONSE_BYTES + 1);
        assert!(matches!(decode(&upd, &wire(), 200, &huge, None, None, 0), Ok(Outcome::Failed(_))));
    }
}
