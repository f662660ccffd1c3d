//! REST mode: one plain CRUD request per op, for backends that know nothing of tidesync.
//!
//! create -> `POST {endpoint}`, update -> `PUT {endpoint}/{id}` (or `PATCH` with a JSON merge patch
//! of the changed fields, or `POST {endpoint}` for upsert APIs), delete -> `DELETE {endpoint}/{id}`.
//! Every write carries the op id as `Idempotency-Key` and `X-Operation-ID`, the version it was made
//! on as `X-Client-Version` (0 for a create) and `If-Match`. Records, versions and errors are read
//! wherever the backend puts them (`shape`).
//!
//! No blind writes: an update or delete whose base version is unknown (the create's answer had
//! none) is preceded by a `GET` of the record (`check_request` / `decode_check`). A backend with
//! versions gives it there, and the write becomes a conflict against it (the merge decides). A
//! backend with no versions at all gets a *fingerprint* instead: a hash of the record as the server
//! answered it, stored as the record's version; the write is sent only while the server's record
//! still has the fingerprint the write was made on, and is a conflict otherwise.
//!
//! Pure Rust: the fetch transport sends what `request_for` builds and hands the answer to `decode`.

use serde::Serialize;

use super::batch::{decode_conflict, MAX_RESPONSE_BYTES};
use super::shape::{error_message, record, version_at};
use crate::core::checksum::checksum;
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
    /// `POST {endpoint}` with the whole record: APIs that upsert by the record's key.
    Post,
}

/// Where the server says which version a record is at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum VersionSource {
    /// The `ETag` header (a quoted integer, weak or strong), else a `version` field of the record
    /// (inside an envelope or not).
    #[default]
    Etag,
    /// This field of the body: a name (`rev`) or a dotted path (`data.version`).
    Field(String),
    /// No versions: records are compared by fingerprint before each update.
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
#[derive(Clone, Debug, PartialEq)]
pub struct CollectionWire {
    pub endpoint: String,
    pub wire: Wire,
    pub update: UpdateMethod,
    pub version: VersionSource,
    /// The query parameter carrying the pull cursor (`since`).
    pub pull_param: String,
    /// The field of the backend's records that holds the record id (`id`, `cardId`).
    pub key: String,
}

impl Default for CollectionWire {
    fn default() -> Self {
        CollectionWire {
            endpoint: String::new(),
            wire: Wire::default(),
            update: UpdateMethod::default(),
            version: VersionSource::default(),
            pull_param: "since".into(),
            key: "id".into(),
        }
    }
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

/// `{endpoint}/{id}`.
pub fn item_path(c: &CollectionWire, id: &str) -> String {
    format!("{}/{}", c.endpoint.trim_end_matches('/'), encode_segment(id))
}

/// Fingerprints live above every plausible server version: bit 52 set, below 2^53 (exact in JS).
const FINGERPRINT: u64 = 1 << 52;

/// A version tidesync made up for a backend without versions (never sent as one).
pub fn is_fingerprint(v: u64) -> bool {
    (FINGERPRINT..FINGERPRINT << 1).contains(&v)
}

/// The fingerprint of a record as the server answered it.
pub fn fingerprint(r: &Map) -> u64 {
    let sum = checksum(&Value::Object(r.clone()));
    // The first 13 hex digits (52 bits) of the record's checksum.
    let bits = sum.bytes().take(13).fold(0, |a, b| a << 4 | u64::from(char::from(b).to_digit(16).unwrap_or(0)));
    FINGERPRINT | bits
}

/// The version the server gave the op's base, if it is a real one.
fn base_version(op: &Operation) -> Option<u64> {
    op.base_version.filter(|v| !is_fingerprint(*v))
}

/// The body of a write: the record with its key, and the base version in the version field when
/// the backend reads it from the body (`rest.version: 'version'`).
fn body(v: &Value, op: &Operation, c: &CollectionWire, with_key: bool) -> String {
    let mut v = v.clone();
    if let Value::Object(m) = &mut v {
        if with_key && !m.contains_key(&c.key) {
            m.insert(c.key.clone(), Value::String(op.entity_id.clone()));
        }
        if let (VersionSource::Field(f), Some(base)) = (&c.version, base_version(op)) {
            if !f.contains('.') {
                m.insert(f.clone(), Value::from(base));
            }
        }
    }
    crate::core::json::text(&v)
}

/// The request that carries `op` to a plain REST backend.
pub fn request_for(op: &Operation, c: &CollectionWire) -> RestRequest {
    let empty = Value::Object(Map::new());
    let record = op.payload.as_ref().unwrap_or(&empty);
    let (method, path, body) = match (op.kind, c.update, &op.patch) {
        (OpKind::Create, ..) => ("POST", c.endpoint.clone(), Some(body(record, op, c, true))),
        (OpKind::Update, UpdateMethod::Patch, Some(patch)) => {
            ("PATCH", item_path(c, &op.entity_id), Some(body(patch, op, c, false)))
        }
        (OpKind::Update, UpdateMethod::Post, _) => ("POST", c.endpoint.clone(), Some(body(record, op, c, true))),
        (OpKind::Update, ..) => ("PUT", item_path(c, &op.entity_id), Some(body(record, op, c, true))),
        (OpKind::Delete, ..) => ("DELETE", item_path(c, &op.entity_id), None),
    };
    let mut headers = vec![("Idempotency-Key", op.id.clone()), ("X-Operation-ID", op.id.clone())];
    match (op.kind, base_version(op)) {
        (OpKind::Create, _) => headers.push(("X-Client-Version", "0".into())),
        (_, Some(v)) => {
            headers.push(("X-Client-Version", v.to_string()));
            if c.version != VersionSource::None {
                headers.push(("If-Match", format!("\"{v}\"")));
            }
        }
        (_, None) => {}
    }
    RestRequest { method, path, body, headers }
}

/// Whether `op` must first read the record: an update or delete whose base version the server
/// never told us (or, without versions, whose fingerprint must be compared).
pub fn needs_check(op: &Operation) -> bool {
    op.kind != OpKind::Create && base_version(op).is_none()
}

/// Whether a create the server refused with `f` should look for the record before it is retried
/// or dead-lettered: the answers a backend gives an id it already has (json-server: 500; others:
/// 400 or 422). An unavailable server (502, 503, 504), auth, rate or size say nothing about the
/// record, and a read would only add load.
pub fn may_exist(op: &Operation, f: &Failure) -> bool {
    op.kind == OpKind::Create && matches!(f.error.status(), Some(400 | 422 | 500))
}

/// A version from an `ETag`: `"3"`, `W/"3"` or `3`.
pub fn etag_version(etag: &str) -> Option<u64> {
    let etag = etag.trim();
    etag.strip_prefix("W/").unwrap_or(etag).trim_matches('"').parse().ok()
}

/// The server's version of the record an answer holds: from `rest.version`, else a fingerprint of
/// the record. `Err`: the configured field holds something that is not a version.
fn version_of(c: &CollectionWire, json: &Value, rec: Option<&Map>, etag: Option<&str>) -> Result<Option<u64>, String> {
    let real = match &c.version {
        VersionSource::Etag => match etag.and_then(etag_version) {
            Some(v) => Some(v),
            None => version_at(json, rec, "version")?,
        },
        VersionSource::Field(f) => version_at(json, rec, f)?,
        VersionSource::None => None,
    };
    Ok(real.or_else(|| rec.map(fingerprint)))
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
    match status {
        200..=299 => accepted(op, c, status, body, json.as_ref(), etag),
        // Deleting what is already gone is done.
        404 | 410 if op.kind == OpKind::Delete => Ok(Outcome::Accepted { version: None, data: None, checksum: None }),
        404 | 410 if op.kind == OpKind::Update && c.update != UpdateMethod::Post => {
            Ok(Outcome::Conflict { server_version: None, server_data: None, deleted: true, server_modified_ms: None })
        }
        409 | 412 => conflict_state(c, json.as_ref(), etag),
        _ => {
            let message = error_message(body).unwrap_or_else(|| format!("the server answered {status}"));
            Ok(Outcome::Failed(Failure {
                error: SyncError::Http { status, message },
                retry_after_ms: retry_after.and_then(|v| parse_retry_after(v, now_ms)),
            }))
        }
    }
}

/// A 2xx answer to a write: accepted, with the version it gives (or the record's fingerprint).
fn accepted(
    op: &Operation,
    c: &CollectionWire,
    status: u16,
    body: &str,
    json: Option<&Value>,
    etag: Option<&str>,
) -> Result<Outcome, NeedsFetch> {
    let failed = |error: SyncError| Ok(Outcome::Failed(Failure::new(error)));
    let Some(json) = json.or(body.trim().is_empty().then_some(&Value::Null)) else {
        return failed(SyncError::Protocol("the server answered 2xx with a body that is not JSON".into()));
    };
    if json.get("success").and_then(Value::as_bool) == Some(false) {
        let message = error_message(body).unwrap_or_else(|| "the server said it failed".into());
        return failed(SyncError::Protocol(format!("the server answered {status} but said: {message}")));
    }
    // The record stays as the app wrote it: a REST representation adds server fields (key,
    // version, timestamps) that differ between backends, and a 2xx body may not even be the
    // record; pulls bring the server's fields. The answer gives the version (or, without one,
    // the fingerprint the next update is checked against).
    let rec = record(json).filter(|_| op.kind != OpKind::Delete);
    match version_of(c, json, rec, etag) {
        Ok(version) => Ok(Outcome::Accepted { version, data: None, checksum: None }),
        Err(m) => failed(SyncError::Protocol(format!("{} answered a write with {m}", c.endpoint))),
    }
}

/// A 409 or 412 answer: the server's state from the reference format's `conflict`, else
/// `serverData`, else the body as the record itself; `Err(NeedsFetch)` when it holds none.
fn conflict_state(c: &CollectionWire, json: Option<&Value>, etag: Option<&str>) -> Result<Outcome, NeedsFetch> {
    let obj = json.and_then(Value::as_object);
    if let Some(conflict) = obj.and_then(|o| o.get("conflict")).and_then(Value::as_object) {
        if let Ok(mut outcome) = decode_conflict(conflict) {
            if let Outcome::Conflict { server_version, .. } = &mut outcome {
                *server_version = server_version.or_else(|| etag.and_then(etag_version));
            }
            return Ok(outcome);
        }
    }
    let state = obj.and_then(|o| o.get("serverData")).and_then(Value::as_object).or_else(|| {
        let r = record(json?)?;
        (r.contains_key(&c.key) && !r.contains_key("error")).then_some(r)
    });
    match state {
        Some(data) => Ok(Outcome::Conflict {
            server_version: version_of(c, &Value::Null, Some(data), etag).ok().flatten(),
            server_data: Some(Value::Object(data.clone())),
            deleted: false,
            server_modified_ms: None,
        }),
        None => Err(NeedsFetch),
    }
}

/// A conflict answer without the server's state: fetch the record.
#[derive(Debug, PartialEq)]
pub struct NeedsFetch;

/// The record as a `GET {endpoint}/{id}` found it (made after a conflict answer without the
/// server's state, or before a write whose base version is unknown): a conflict against it.
pub fn decode_fetched(c: &CollectionWire, status: u16, body: &str, etag: Option<&str>) -> Outcome {
    match status {
        404 | 410 => {
            Outcome::Conflict { server_version: None, server_data: None, deleted: true, server_modified_ms: None }
        }
        200..=299 => match crate::core::json::parse(body).ok().as_ref().and_then(|j| Some((j, record(j)?))) {
            Some((json, rec)) => match version_of(c, json, Some(rec), etag) {
                Ok(server_version) => Outcome::Conflict {
                    server_version,
                    server_data: Some(Value::Object(rec.clone())),
                    deleted: false,
                    server_modified_ms: None,
                },
                Err(m) => Outcome::Failed(Failure::new(SyncError::Protocol(format!("{}: {m}", c.endpoint)))),
            },
            None => Outcome::Failed(Failure::new(SyncError::Protocol(format!(
                "the record fetched from {} is not a JSON object",
                c.endpoint
            )))),
        },
        _ => Outcome::Failed(Failure::new(SyncError::Http {
            status,
            message: error_message(body).unwrap_or_else(|| format!("reading the record before writing it: {status}")),
        })),
    }
}

/// The check before a write whose base version is unknown (`needs_check`), from the record as a
/// `GET` found it: `None` to send the write now (the server still holds the record the write was
/// made on, by fingerprint), or the outcome to report instead (a conflict against the server's
/// record and version, or the GET's failure).
pub fn decode_check(
    op: &Operation,
    c: &CollectionWire,
    status: u16,
    body: &str,
    etag: Option<&str>,
) -> Option<Outcome> {
    match decode_fetched(c, status, body, etag) {
        // Deleting what is already gone is done.
        Outcome::Conflict { deleted: true, .. } if op.kind == OpKind::Delete => {
            Some(Outcome::Accepted { version: None, data: None, checksum: None })
        }
        Outcome::Conflict { server_version: Some(v), .. } if is_fingerprint(v) && op.base_version == Some(v) => None,
        other => Some(other),
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
        assert_eq!((r.method, r.body, r.headers.len()), ("DELETE", None, 3));
        assert!(!r.headers.iter().any(|(k, _)| *k == "If-Match"));
    }

    #[test]
    fn headers_and_bodies_of_the_reference_progress_api() {
        // Keyed by `cardId`, updates are upserts by POST, X-Client-Version is the base version.
        let progress = CollectionWire { key: "cardId".into(), update: UpdateMethod::Post, ..wire() };
        let create = request_for(&op(OpKind::Create, Some(json!({"grade": 2})), None), &progress);
        assert_eq!((create.method, create.path.as_str()), ("POST", "/api/todos"));
        assert_eq!(
            crate::core::json::parse(create.body.as_deref().unwrap()).unwrap(),
            json!({"grade": 2, "cardId": "a b"})
        );
        assert!(create.headers.contains(&("X-Client-Version", "0".into())));
        let update = request_for(&op(OpKind::Update, Some(json!({"grade": 3})), Some(7)), &progress);
        assert_eq!((update.method, update.path.as_str()), ("POST", "/api/todos"));
        assert!(update.headers.contains(&("X-Client-Version", "7".into())));
        assert!(update.headers.contains(&("If-Match", "\"7\"".into())));
        // A backend that reads the version from the body gets the base version there.
        let body_version = CollectionWire { version: VersionSource::Field("version".into()), ..wire() };
        let r = request_for(&op(OpKind::Update, Some(json!({"t": 1, "version": 2})), Some(7)), &body_version);
        assert_eq!(
            crate::core::json::parse(r.body.as_deref().unwrap()).unwrap(),
            json!({"t": 1, "version": 7, "id": "a b"})
        );
        // A fingerprint is never sent as a version.
        let fp = fingerprint(json!({"t": 1}).as_object().unwrap());
        let r = request_for(&op(OpKind::Update, Some(json!({"t": 2})), Some(fp)), &body_version);
        assert!(!r.headers.iter().any(|(k, _)| *k == "If-Match" || *k == "X-Client-Version"));
        assert_eq!(crate::core::json::parse(r.body.as_deref().unwrap()).unwrap(), json!({"t": 2, "id": "a b"}));
    }

    #[test]
    fn envelopes_carry_the_version_and_the_record() {
        let upd = op(OpKind::Update, Some(json!({"grade": 3})), Some(3));
        let progress = CollectionWire { key: "cardId".into(), ..wire() };
        let answer = r#"{"success":true,"data":{"cardId":"a b","grade":3,"version":4,"syncedAt":"2024-01-15T10:30:00Z"},"serverTime":"2024-01-15T10:30:00Z"}"#;
        // The version from inside the envelope; the record stays as the app wrote it.
        assert_eq!(
            decode(&upd, &progress, 200, answer, None, None, 0),
            Ok(Outcome::Accepted { version: Some(4), data: None, checksum: None })
        );
        let pathed = CollectionWire { version: VersionSource::Field("data.version".into()), ..progress.clone() };
        assert!(matches!(
            decode(&upd, &pathed, 200, answer, None, None, 0),
            Ok(Outcome::Accepted { version: Some(4), .. })
        ));
        // A version field that is not a number is a protocol error that names it.
        let bad = r#"{"success":true,"data":{"cardId":"a b","version":"four"}}"#;
        match decode(&upd, &pathed, 200, bad, None, None, 0) {
            Ok(Outcome::Failed(f)) => assert!(f.error.to_string().contains("`data.version`"), "{f:?}"),
            other => panic!("{other:?}"),
        }
        // The reference error body.
        let e = r#"{"success":false,"error":{"code":"VALIDATION_ERROR","message":"grade must be 0-3"}}"#;
        match decode(&upd, &progress, 400, e, None, None, 0) {
            Ok(Outcome::Failed(f)) => assert_eq!(
                f.error,
                SyncError::Http { status: 400, message: "VALIDATION_ERROR: grade must be 0-3".into() }
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_blind_writes_without_a_known_version() {
        let none = CollectionWire { version: VersionSource::None, ..wire() };
        let server = r#"{"id":"a b","t":1}"#;
        let fp = fingerprint(crate::core::json::parse(server).unwrap().as_object().unwrap());
        assert!(is_fingerprint(fp) && fp < 1 << 53);
        // A create's answer without a version gives the record's fingerprint.
        let create = op(OpKind::Create, Some(json!({"t": 1})), None);
        assert!(
            matches!(decode(&create, &none, 201, server, None, None, 0), Ok(Outcome::Accepted { version: Some(v), .. }) if v == fp)
        );
        // The next update reads the record first; the same record: send it.
        let upd = op(OpKind::Update, Some(json!({"t": 2})), Some(fp));
        assert!(needs_check(&upd) && !needs_check(&op(OpKind::Update, None, Some(3))));
        assert_eq!(decode_check(&upd, &none, 200, server, None), None);
        // Another device changed it meanwhile: a conflict against its record, never a blind write.
        match decode_check(&upd, &none, 200, r#"{"id":"a b","t":9}"#, None) {
            Some(Outcome::Conflict { server_version: Some(v), server_data: Some(d), .. }) => {
                assert!(is_fingerprint(v) && v != fp);
                assert_eq!(d, json!({"id": "a b", "t": 9}));
            }
            other => panic!("{other:?}"),
        }
        // A backend with versions gives the real one: a conflict against it (the merge decides, and
        // the write goes out again with If-Match).
        let unknown = op(OpKind::Update, Some(json!({"t": 2})), None);
        assert!(matches!(
            decode_check(&unknown, &wire(), 200, r#"{"success":true,"data":{"id":"a b","version":5}}"#, None),
            Some(Outcome::Conflict { server_version: Some(5), .. })
        ));
        // Gone: an update is a delete conflict, a delete is done; a failed read is retried.
        assert!(matches!(
            decode_check(&unknown, &wire(), 404, "", None),
            Some(Outcome::Conflict { deleted: true, .. })
        ));
        let del = op(OpKind::Delete, None, None);
        assert!(matches!(decode_check(&del, &wire(), 404, "", None), Some(Outcome::Accepted { .. })));
        assert!(matches!(decode_check(&unknown, &wire(), 503, "", None), Some(Outcome::Failed(_))));
    }

    #[test]
    fn a_refused_create_looks_for_its_record() {
        let create = op(OpKind::Create, Some(json!({"t": 1})), None);
        let refused = |status| Failure::new(SyncError::Http { status, message: String::new() });
        // json-server answers a duplicate id with 500; a validation error may hide one too.
        assert!(may_exist(&create, &refused(500)) && may_exist(&create, &refused(400)));
        assert!(!may_exist(&create, &refused(429)) && !may_exist(&create, &refused(401)));
        assert!(!may_exist(&create, &refused(503)), "an unavailable server is not asked again at once");
        assert!(!may_exist(&create, &Failure::new(SyncError::Timeout)));
        assert!(!may_exist(&op(OpKind::Update, None, Some(1)), &refused(500)));
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
