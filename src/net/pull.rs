//! Decoding pull responses, in any listing shape `shape` reads: the reference server's change feed
//! (`{items, cursor, hasMore}` of `{entityId, version, data, deleted, updatedAt}`), or records keyed
//! by the collection's `key` (`id` unless configured: `cardId`), in a bare array or an envelope,
//! tombstones included (`{cardId, deleted: true}`).

use super::batch::json_answer;
use super::rest::{CollectionWire, VersionSource};
use super::shape::{id_string, is_deleted, listing, version_at, Next};
use crate::core::error::SyncError;
use crate::core::json::text;
use crate::core::merge::parse_time_ms;
use crate::core::traits::{Failure, PullPage, ServerRecord};
use crate::core::value::{Map, Value};

/// A pull's answer as one page of a listing, and where the listing's next page is when it is a
/// paginated full listing (the transport follows it; a change feed's `cursor` goes to the engine instead).
pub fn decode_pull(
    c: &CollectionWire,
    status: u16,
    body: &str,
    retry_after: Option<&str>,
    now_ms: u64,
) -> Result<(PullPage, Option<Next>), Failure> {
    decode_listing(c, &json_answer(status, body, retry_after, now_ms)?)
}

/// `decode_pull` of an answer already parsed (`batch::json_answer`): the transport parses a large
/// answer in one task and makes it into records in the next.
pub fn decode_listing(c: &CollectionWire, v: &Value) -> Result<(PullPage, Option<Next>), Failure> {
    let l = listing(v).map_err(|m| protocol(format!("{}: {m}", c.endpoint)))?;
    let items = l
        .items
        .iter()
        .enumerate()
        .map(|(i, v)| decode_item(c, v).map_err(|m| protocol(format!("{} items[{i}]: {m}", c.endpoint))))
        .collect::<Result<Vec<_>, _>>()?;
    // A cursor makes it a change feed, whose pages the engine follows; `next` only matters without one.
    let next = if l.cursor.is_some() { None } else { l.next };
    Ok((PullPage { items, cursor: l.cursor, has_more: l.has_more }, next))
}

fn decode_item(c: &CollectionWire, v: &Value) -> Result<ServerRecord, String> {
    let o = v.as_object().ok_or("a pulled record is not an object")?;
    if let (Some(id), false) = (o.get("entityId"), o.contains_key(&c.key)) {
        // The reference server's change feed.
        let deleted = is_deleted(o);
        let data = o.get("data").filter(|d| !d.is_null() && !deleted).cloned();
        if data.as_ref().is_some_and(|d| !d.is_object()) {
            return Err("`data` is not an object".into());
        }
        return Ok(ServerRecord {
            id: id_string(id).ok_or_else(|| format!("`entityId` {} is not a string or number", text(id)))?,
            version: version(c, o)?,
            data,
            modified_ms: o.get("updatedAt").and_then(parse_time_ms),
        });
    }
    let key = &c.key;
    let id = match o.get(key) {
        None | Some(Value::Null) => {
            return Err(format!(
                "no `{key}` (the field that names records: set the collection's `key` if it is another)"
            ))
        }
        Some(id) => id_string(id).ok_or_else(|| format!("`{key}` {} is not a string or number", text(id)))?,
    };
    let deleted = is_deleted(o);
    Ok(ServerRecord {
        id,
        version: version(c, o)?,
        data: (!deleted).then(|| v.clone()),
        modified_ms: ["updatedAt", "lastModified", "updated_at"].iter().find_map(|k| o.get(*k).and_then(parse_time_ms)),
    })
}

/// A listed record's version: `rest.version`'s field, else its `version` field.
fn version(c: &CollectionWire, o: &Map) -> Result<Option<u64>, String> {
    let path = match &c.version {
        VersionSource::None => return Ok(None),
        VersionSource::Etag => "version",
        VersionSource::Field(f) => f,
    };
    version_at(&Value::Null, Some(o), path)
}

fn protocol(m: String) -> Failure {
    Failure::new(SyncError::Protocol(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    fn wire(key: &str) -> CollectionWire {
        CollectionWire { endpoint: "/api/x".into(), key: key.into(), pull_param: "since".into(), ..Default::default() }
    }

    fn decode_pull(status: u16, body: &str, retry_after: Option<&str>, now: u64) -> Result<PullPage, Failure> {
        super::decode_pull(&wire("id"), status, body, retry_after, now).map(|(p, _)| p)
    }

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
    fn reads_the_reference_progress_listing_keyed_by_card_id() {
        let body = r#"{"success": true, "data": [
            {"cardId": "c1", "grade": 2, "version": 3, "lastModified": "2024-01-15T10:30:00Z"},
            {"cardId": "c2", "deleted": true, "version": 5}
        ], "cursor": 12, "hasMore": false}"#;
        let (p, next) = super::decode_pull(&wire("cardId"), 200, body, None, 0).unwrap();
        assert_eq!((p.cursor.as_deref(), next), (Some("12"), None));
        assert_eq!((p.items[0].id.as_str(), p.items[0].version), ("c1", Some(3)));
        assert_eq!(p.items[0].modified_ms, Some(1_705_314_600_000));
        assert_eq!(p.items[1], ServerRecord { id: "c2".into(), version: Some(5), data: None, modified_ms: None });
        // Without the key configured, the error names the field, the item and the endpoint.
        let e = super::decode_pull(&wire("id"), 200, body, None, 0).unwrap_err().error.to_string();
        assert!(e.contains("/api/x items[0]: no `id`"), "{e}");
        let pathed = CollectionWire { version: VersionSource::Field("data.version".into()), ..wire("cardId") };
        assert_eq!(super::decode_pull(&pathed, 200, body, None, 0).unwrap().0.items[0].version, Some(3));
    }

    #[test]
    fn a_paginated_full_listing_says_where_its_next_page_is() {
        let body = r#"{"count": 2, "next": "/api/x?page=2", "previous": null, "results": [{"id": 1}]}"#;
        let (p, next) = super::decode_pull(&wire("id"), 200, body, None, 0).unwrap();
        assert_eq!((p.cursor, next), (None, Some(Next::Url("/api/x?page=2".into()))));
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
