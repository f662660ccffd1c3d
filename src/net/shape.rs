//! Where a backend puts things: the record inside a write's answer, the items, cursor and next page
//! of a listing, a record's id (`collections[n].key`) and version (`rest.version`), tombstones, and the
//! message of an error body. The common shapes are understood without configuration:
//!
//! - a record: the object itself, or inside an envelope (`{success, data: {...}}`, `{data, meta}`);
//! - a listing: a bare array, `{items, cursor, hasMore}`, `{success, data: [...]}`, `{data, pagination}`,
//!   `{results, next}`, `{data, total, skip}`, also nested in a `data` envelope;
//! - a tombstone: the key and `deleted: true` (or `_deleted`, `isDeleted`), nothing else needed;
//! - an error: `{error: "..."}`, `{error: {code, message}}`, `{message}`, `{detail}`.
//!
//! Pure Rust, tested natively: a shape that cannot be read is a `PROTOCOL` error that names the field
//! and where it was looked for.

use crate::core::json::text;
use crate::core::value::{Map, Value};

/// Keys an envelope may have beside its `data`.
const ENVELOPE: [&str; 10] =
    ["success", "message", "meta", "checksum", "serverTime", "links", "status", "statusCode", "error", "timestamp"];

/// The record an answer holds: the `data` of an envelope, else the object itself.
pub fn record(v: &Value) -> Option<&Map> {
    let o = v.as_object()?;
    match o.get("data") {
        Some(Value::Object(d)) if o.keys().all(|k| k == "data" || ENVELOPE.contains(&k.as_str())) => Some(d),
        _ => Some(o),
    }
}

/// The value at a dotted path (`data.version`).
pub fn at_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.as_object()?.get(k)).filter(|v| !v.is_null())
}

/// A version: a non-negative integer, as a number or a numeric string.
pub fn as_version(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim_matches('"').parse().ok()))
}

/// A version read from `path` of `body`: the whole answer first (`data.version`), then the record it
/// holds, then the path's last name in the record (a path written for answers also finds the field
/// in listed records). `Err` names what was there instead of a version.
pub fn version_at(body: &Value, record: Option<&Map>, path: &str) -> Result<Option<u64>, String> {
    let last = path.split('.').fold(path, |_, name| name);
    let found = at_path(body, path)
        .or_else(|| record.and_then(|r| r.get(path)).filter(|v| !v.is_null()))
        .or_else(|| record.and_then(|r| r.get(last)).filter(|v| !v.is_null()));
    match found {
        None => Ok(None),
        Some(v) => as_version(v).map(Some).ok_or_else(|| format!("`{path}` is {}, not a version number", text(v))),
    }
}

/// Whether a record is a tombstone.
pub fn is_deleted(o: &Map) -> bool {
    ["deleted", "_deleted", "isDeleted"].iter().any(|k| o.get(*k).and_then(Value::as_bool) == Some(true))
}

/// A record id: a non-empty string, or a number (as its JSON text).
pub fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(_) => Some(text(v)),
        _ => None,
    }
}

/// Where the next page of a listing is.
#[derive(Clone, Debug, PartialEq)]
pub enum Next {
    /// A URL (absolute, or a path on the same server), as `{results, next}` gives it.
    Url(String),
    /// The same request with this query parameter set (`page=3`, `$skip=50`).
    Param(&'static str, String),
}

/// A listing as read: its items, the change-feed cursor if it has one, and where its next page is.
#[derive(Debug, PartialEq)]
pub struct Listing<'a> {
    pub items: &'a [Value],
    /// Where the next pull starts (a change feed). `None`: the listing is the whole collection.
    pub cursor: Option<String>,
    pub has_more: bool,
    /// A further page of the same listing (a paginated full listing).
    pub next: Option<Next>,
}

/// Reads a listing in any of the shapes this module names.
pub fn listing(v: &Value) -> Result<Listing<'_>, String> {
    let o = match v {
        Value::Array(items) => return Ok(Listing { items, cursor: None, has_more: false, next: None }),
        Value::Object(o) => o,
        _ => return Err("the listing is neither an array nor an object".into()),
    };
    // `{success, data: {items, cursor, ...}}`: the listing is inside the envelope.
    if let Some(inner @ Value::Object(_)) = o.get("data") {
        if o.keys().all(|k| k == "data" || ENVELOPE.contains(&k.as_str())) {
            return listing(inner);
        }
    }
    let items = ["items", "data", "results", "records"]
        .iter()
        .find_map(|k| o.get(*k).and_then(Value::as_array))
        .ok_or("no array of records (looked for a bare array, `items`, `data`, `results` and `records`)")?;
    let pagination = o.get("pagination").or_else(|| o.get("meta")).and_then(Value::as_object);
    let field = |k: &str| o.get(k).or_else(|| pagination?.get(k)).filter(|v| !v.is_null());
    let cursor = match field("cursor").or_else(|| field("nextCursor")) {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(n @ Value::Number(_)) => Some(text(n)),
        Some(other) => return Err(format!("`cursor` is {}, not a string or number", text(other))),
    };
    let has_more = field("hasMore").or_else(|| field("has_more")).and_then(Value::as_bool).unwrap_or(false);
    let number = |k: &str| field(k).and_then(Value::as_u64);
    let next = if let Some(url) = o.get("next").or_else(|| o.get("links")?.get("next")).and_then(Value::as_str) {
        Some(Next::Url(url.to_string()))
    } else if let (Some(page), Some(pages)) = (number("page"), number("totalPages").or_else(|| number("pages"))) {
        (page < pages).then(|| Next::Param("page", (page + 1).to_string()))
    } else if let (Some(skip), Some(total)) = (number("skip"), number("total")) {
        let seen = skip + items.len() as u64;
        (seen < total && !items.is_empty()).then(|| Next::Param("$skip", seen.to_string()))
    } else {
        None
    };
    Ok(Listing { items, cursor, has_more, next })
}

/// The message of an error body: `error` (a string, or `{code, message}`), `message` or `detail`.
pub fn error_message(body: &str) -> Option<String> {
    message_of(crate::core::json::parse(body).ok()?.as_object()?)
}

/// `error_message` of an error object already parsed (a batch result).
pub fn message_of(o: &Map) -> Option<String> {
    let said = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Object(e) => {
                let message = e.get("message").or_else(|| e.get("msg")).and_then(Value::as_str);
                match (e.get("code").and_then(Value::as_str), message) {
                    (Some(code), Some(m)) => Some(format!("{code}: {m}")),
                    (code, m) => m.or(code).map(str::to_string),
                }
            }
            Value::Array(items) => {
                items.iter().find_map(|i| i.get("msg").or_else(|| i.get("message"))?.as_str().map(str::to_string))
            }
            _ => None,
        }
    };
    ["error", "message", "detail"].iter().find_map(|k| o.get(*k).and_then(said)).map(|s| s.chars().take(500).collect())
}

/// The error code of an error object (`{error: {code}}`, `{code}`), for results that carry no status.
pub fn error_code(o: &Map) -> Option<&str> {
    o.get("error").and_then(|e| e.get("code")).or_else(|| o.get("code")).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    #[test]
    fn records_inside_envelopes_and_out() {
        let env = json!({"success": true, "data": {"cardId": "c1", "version": 4}, "serverTime": "x"});
        assert_eq!(record(&env).unwrap().get("version"), Some(&json!(4)));
        // An object with its own `data` field beside others is the record itself.
        let own = json!({"id": "n1", "data": {"x": 1}, "title": "t"});
        assert_eq!(record(&own).unwrap().get("title"), Some(&json!("t")));
        assert_eq!(version_at(&env, record(&env), "data.version"), Ok(Some(4)));
        assert_eq!(version_at(&env, record(&env), "version"), Ok(Some(4)));
        assert_eq!(version_at(&json!({"rev": "7"}), None, "rev"), Ok(Some(7)));
        assert!(version_at(&json!({"rev": "seven"}), None, "rev").unwrap_err().contains("`rev`"));
    }

    #[test]
    fn listings_of_every_common_shape() {
        let bare = json!([{"id": 1}]);
        assert_eq!(listing(&bare).unwrap().items.len(), 1);
        let feed = json!({"items": [], "cursor": 17, "hasMore": true});
        let l = listing(&feed).unwrap();
        assert_eq!((l.cursor.as_deref(), l.has_more, l.next), (Some("17"), true, None));
        let env = json!({"success": true, "data": [{"cardId": "a"}], "cursor": "9", "hasMore": false});
        assert_eq!(listing(&env).unwrap().cursor.as_deref(), Some("9"));
        let nested = json!({"success": true, "data": {"items": [{"id": "a"}], "cursor": 3}});
        assert_eq!(listing(&nested).unwrap().cursor.as_deref(), Some("3"));
        let paged = json!({"success": true, "data": [{"id": "a"}], "pagination": {"page": 1, "limit": 1, "total": 2, "totalPages": 2}});
        assert_eq!(listing(&paged).unwrap().next, Some(Next::Param("page", "2".into())));
        let last = json!({"data": [{"id": "b"}], "pagination": {"page": 2, "totalPages": 2}});
        assert_eq!(listing(&last).unwrap().next, None);
        let drf = json!({"count": 3, "next": "http://h/api/x/?page=2", "previous": null, "results": [{"id": 1}]});
        assert_eq!(listing(&drf).unwrap().next, Some(Next::Url("http://h/api/x/?page=2".into())));
        let feathers = json!({"total": 3, "limit": 2, "skip": 0, "data": [{"id": 1}, {"id": 2}]});
        assert_eq!(listing(&feathers).unwrap().next, Some(Next::Param("$skip", "2".into())));
        for bad in [json!({}), json!(5), json!({"items": {}}), json!({"items": [], "cursor": {}})] {
            assert!(listing(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn error_bodies_of_every_common_shape() {
        assert_eq!(error_message(r#"{"error": "busy"}"#).as_deref(), Some("busy"));
        let rest = r#"{"success": false, "error": {"code": "VALIDATION_ERROR", "message": "Invalid input data"}}"#;
        assert_eq!(error_message(rest).as_deref(), Some("VALIDATION_ERROR: Invalid input data"));
        assert_eq!(error_message(r#"{"detail": "Not Found"}"#).as_deref(), Some("Not Found"));
        let fastapi = r#"{"detail": [{"loc": ["body"], "msg": "field required", "type": "missing"}]}"#;
        assert_eq!(error_message(fastapi).as_deref(), Some("field required"));
        assert_eq!(error_message("<html>"), None);
        let rate = json!({"error": {"code": "RATE_LIMITED"}});
        assert_eq!(error_code(rate.as_object().unwrap()), Some("RATE_LIMITED"));
    }
}
