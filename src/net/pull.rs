//! Decoding pull responses: the reference server's change feed (`{items, cursor, hasMore}` of
//! `{entityId, version, data, deleted, updatedAt}`), or a plain REST listing (an array of records
//! with an `id`, or `{items: [...]}` without a cursor).

use super::batch::json_answer;
use crate::core::error::SyncError;
use crate::core::json::text;
use crate::core::merge::parse_time_ms;
use crate::core::traits::{Failure, PullPage, ServerRecord};
use crate::core::value::{Map, Value};

pub fn decode_pull(status: u16, body: &str, retry_after: Option<&str>, now_ms: u64) -> Result<PullPage, Failure> {
    let v = json_answer(status, body, retry_after, now_ms)?;
    let (items, cursor, has_more) = match &v {
        Value::Array(items) => (items, None, false),
        Value::Object(o) => {
            let items = o.get("items").and_then(Value::as_array).ok_or_else(|| protocol("no `items` array".into()))?;
            let cursor = match o.get("cursor") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(n @ Value::Number(_)) => Some(text(n)),
                Some(other) => return Err(protocol(format!("cursor {} is not a string or number", text(other)))),
            };
            (items, cursor, o.get("hasMore").and_then(Value::as_bool).unwrap_or(false))
        }
        _ => return Err(protocol("the response is neither an array nor an object".into())),
    };
    let items = items.iter().map(decode_item).collect::<Result<Vec<_>, _>>()?;
    Ok(PullPage { items, cursor, has_more })
}

fn decode_item(v: &Value) -> Result<ServerRecord, Failure> {
    let o = v.as_object().ok_or_else(|| protocol("a pulled record is not an object".into()))?;
    if let Some(id) = o.get("entityId") {
        // The reference server's change feed.
        let deleted = o.get("deleted").and_then(Value::as_bool).unwrap_or(false);
        let data = o.get("data").filter(|d| !d.is_null() && !deleted).cloned();
        if data.as_ref().is_some_and(|d| !d.is_object()) {
            return Err(protocol("a pulled record's `data` is not an object".into()));
        }
        return Ok(ServerRecord {
            id: id_string(id)?,
            version: version(o)?,
            data,
            modified_ms: o.get("updatedAt").and_then(parse_time_ms),
        });
    }
    let id = o.get("id").ok_or_else(|| protocol("a pulled record has no `id`".into())).and_then(id_string)?;
    let deleted = o.get("deleted").or_else(|| o.get("_deleted")).and_then(Value::as_bool).unwrap_or(false);
    Ok(ServerRecord {
        id,
        version: version(o)?,
        data: (!deleted).then(|| v.clone()),
        modified_ms: o.get("updatedAt").or_else(|| o.get("lastModified")).and_then(parse_time_ms),
    })
}

fn version(o: &Map) -> Result<Option<u64>, Failure> {
    match o.get("version") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            v.as_u64().map(Some).ok_or_else(|| protocol(format!("version {} is not a non-negative integer", text(v))))
        }
    }
}

fn id_string(v: &Value) -> Result<String, Failure> {
    match v {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        Value::Number(_) => Ok(text(v)),
        other => Err(protocol(format!("record id {} is not a string or number", text(other)))),
    }
}

fn protocol(m: String) -> Failure {
    Failure::new(SyncError::Protocol(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    #[test]
    fn reads_the_change_feed_with_tombstones() {
        let body = json!({"items": [
            {"entityType": "notes", "entityId": "a", "version": 2, "data": {"t": 1}, "deleted": false, "updatedAt": "1994-11-06T08:49:37Z"},
            {"entityType": "notes", "entityId": "b", "version": 5, "data": null, "deleted": true}
        ], "cursor": 17, "hasMore": true})
        .to_string();
        let p = decode_pull(200, &body, None, 0).unwrap();
        assert_eq!((p.cursor.as_deref(), p.has_more), (Some("17"), true));
        assert_eq!(
            p.items[0],
            ServerRecord {
                id: "a".into(),
                version: Some(2),
                data: Some(json!({"t": 1})),
                modified_ms: Some(784_111_777_000)
            }
        );
        assert_eq!(p.items[1], ServerRecord { id: "b".into(), version: Some(5), data: None, modified_ms: None });
    }

    #[test]
    fn reads_a_plain_rest_listing() {
        let p = decode_pull(200, r#"[{"id": 1, "title": "x"}, {"id": "2", "version": 3}]"#, None, 0).unwrap();
        assert_eq!(p.cursor, None);
        assert_eq!(p.items[0].id, "1");
        assert_eq!(p.items[0].data, Some(json!({"id": 1, "title": "x"})));
        assert_eq!(p.items[1].version, Some(3));
    }

    #[test]
    fn hostile_listings_are_protocol_errors() {
        for body in [
            "<html>",
            "{}",
            "5",
            r#"[1]"#,
            r#"[{"title": "no id"}]"#,
            r#"{"items": [], "cursor": {}}"#,
            r#"[{"id": "a", "version": "x"}]"#,
        ] {
            assert_eq!(decode_pull(200, body, None, 0).unwrap_err().error.code(), "PROTOCOL", "{body}");
        }
        assert_eq!(decode_pull(503, "", Some("2"), 0).unwrap_err().retry_after_ms, Some(2_000));
    }
}
