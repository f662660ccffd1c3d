//! JSON in tidesync: text to `Value` (`parse`), any `Serialize` value to text (`to_string`), and
//! reading JSON objects field by field: the records tidesync stores and the options of `open()`.
//!
//! The readers are hand-written instead of `#[derive(Deserialize)]`: a derived deserializer is
//! generic code instantiated once per type, about 5 KB of wasm each; these share one small
//! non-generic core. Missing fields and `null` read alike (as serde's `Option` does); unknown fields
//! are ignored. The writers stay `#[derive(Serialize)]`, and the tests below read back what they wrote.

mod parse;
mod write;

use crate::core::value::{Map, Value};

pub use parse::{parse, parse_nested, MAX_DEPTH, RECORD_DEPTH};
pub use write::{append, to_string, write_f64, write_pair, write_string, Error};

use super::op::{Conflict, ConflictReason, DeadLetter, Entity, OpKind, Operation, Priority, SyncStatus};

/// `v` as compact JSON text (which cannot fail: a `Value`'s keys are strings).
pub fn text(v: &Value) -> String {
    to_string(v).unwrap_or_default()
}

/// Any `Serialize` value as a `Value`, through its JSON text.
pub fn to_value<T: serde::Serialize + ?Sized>(v: &T) -> Result<Value, String> {
    parse(&to_string(v).map_err(|e| e.to_string())?)
}

/// The fields of one JSON object, taken out one at a time (no copies of payloads).
pub struct Fields {
    map: Map,
    what: &'static str,
}

pub type Read<T> = std::result::Result<T, String>;

impl Fields {
    /// `what` names the object in errors: "`{what}.{field}`: expected ...".
    pub fn new(v: Value, what: &'static str) -> Read<Fields> {
        match v {
            Value::Object(map) => Ok(Fields { map, what }),
            _ => Err(format!("{what}: expected an object")),
        }
    }

    fn bad(&self, k: &str, want: &str) -> String {
        format!("{}.{k}: expected {want}", self.what)
    }

    /// The value of `k`; `None` when missing or `null`.
    pub fn value(&mut self, k: &str) -> Option<Value> {
        self.map.remove(k).filter(|v| !v.is_null())
    }

    pub fn opt_str(&mut self, k: &str) -> Read<Option<String>> {
        match self.value(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.bad(k, "a string")),
        }
    }

    pub fn str(&mut self, k: &str) -> Read<String> {
        self.opt_str(k)?.ok_or_else(|| self.bad(k, "a string"))
    }

    /// A whole number from 0 to `max`.
    pub fn opt_uint(&mut self, k: &str, max: u64) -> Read<Option<u64>> {
        match self.value(k) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n <= max => Ok(Some(n)),
                _ => Err(self.bad(k, &format!("a whole number from 0 to {max}"))),
            },
        }
    }

    pub fn uint(&mut self, k: &str, max: u64) -> Read<u64> {
        self.opt_uint(k, max)?.ok_or_else(|| self.bad(k, "a whole number"))
    }

    pub fn opt_f64(&mut self, k: &str) -> Read<Option<f64>> {
        match self.value(k) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| self.bad(k, "a number")),
        }
    }

    pub fn opt_bool(&mut self, k: &str) -> Read<Option<bool>> {
        match self.value(k) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| self.bad(k, "true or false")),
        }
    }

    pub fn bool(&mut self, k: &str) -> Read<bool> {
        self.opt_bool(k)?.ok_or_else(|| self.bad(k, "true or false"))
    }

    /// A nested object.
    pub fn opt_object(&mut self, k: &str, what: &'static str) -> Read<Option<Fields>> {
        self.value(k).map(|v| Fields::new(v, what)).transpose()
    }

    /// A string naming one of a fixed set of values: `parse` maps each name.
    pub fn name<T>(&mut self, k: &str, expected: &str, parse: fn(&str) -> Option<T>) -> Read<T> {
        let s = self.str(k)?;
        parse(&s).ok_or_else(|| self.bad(k, expected))
    }

    /// What is left: for maps keyed by the app's own names (`collections`, merge `fields`).
    pub fn into_entries(self) -> impl Iterator<Item = (String, Value)> {
        self.map.into_iter()
    }
}

const U16: u64 = u16::MAX as u64;
const U32: u64 = u32::MAX as u64;

fn op_kind(s: &str) -> Option<OpKind> {
    Some(match s {
        "create" => OpKind::Create,
        "update" => OpKind::Update,
        "delete" => OpKind::Delete,
        _ => return None,
    })
}

fn sync_status(s: &str) -> Option<SyncStatus> {
    Some(match s {
        "pending" => SyncStatus::Pending,
        "synced" => SyncStatus::Synced,
        "conflict" => SyncStatus::Conflict,
        "error" => SyncStatus::Error,
        _ => return None,
    })
}

fn conflict_reason(s: &str) -> Option<ConflictReason> {
    Some(match s {
        "version" => ConflictReason::Version,
        "deleted" => ConflictReason::Deleted,
        "integrity" => ConflictReason::Integrity,
        _ => return None,
    })
}

impl Operation {
    pub fn from_json(v: Value) -> Read<Operation> {
        let mut f = Fields::new(v, "op")?;
        Ok(Operation {
            id: f.str("id")?,
            seq: f.uint("seq", u64::MAX)?,
            collection: f.str("collection")?,
            entity_id: f.str("entityId")?,
            kind: f.name("kind", "create, update or delete", op_kind)?,
            payload: f.value("payload"),
            base_version: f.opt_uint("baseVersion", u64::MAX)?,
            priority: f.name("priority", "high, medium or low", Priority::parse)?,
            created_at: f.uint("createdAt", u64::MAX)?,
            attempts: f.uint("attempts", U32)? as u32,
            next_attempt_at: f.uint("nextAttemptAt", u64::MAX)?,
            last_error: f.opt_str("lastError")?,
            last_status: f.opt_uint("lastStatus", U16)?.map(|s| s as u16),
            checksum: f.str("checksum")?,
            sent: f.bool("sent")?,
            patch: f.value("patch"),
        })
    }
}

impl Entity {
    pub fn from_json(v: Value) -> Read<Entity> {
        let mut f = Fields::new(v, "record")?;
        Ok(Entity {
            collection: f.str("collection")?,
            id: f.str("id")?,
            data: f.value("data"),
            base: f.value("base"),
            version: f.opt_uint("version", u64::MAX)?,
            last_modified: f.uint("lastModified", u64::MAX)?,
            sync_status: f.name("syncStatus", "pending, synced, conflict or error", sync_status)?,
            checksum: f.opt_str("checksum")?,
        })
    }
}

impl DeadLetter {
    pub fn from_json(v: Value) -> Read<DeadLetter> {
        let mut f = Fields::new(v, "dead letter")?;
        Ok(DeadLetter {
            op: Operation::from_json(f.value("op").unwrap_or(Value::Null))?,
            error: f.str("error")?,
            code: f.str("code")?,
            status: f.opt_uint("status", U16)?.map(|s| s as u16),
            maybe_applied: f.bool("maybeApplied")?,
            at: f.uint("at", u64::MAX)?,
        })
    }
}

impl crate::core::engine::AuditEntry {
    pub fn from_json(v: Value) -> Read<crate::core::engine::AuditEntry> {
        let mut f = Fields::new(v, "audit entry")?;
        Ok(crate::core::engine::AuditEntry {
            at: f.uint("at", u64::MAX)?,
            collection: f.str("collection")?,
            id: f.str("id")?,
            how: f.str("how")?,
            reason: f.name("reason", "version, deleted or integrity", conflict_reason)?,
            base: f.value("base"),
            local: f.value("local"),
            server: f.value("server"),
            result: f.value("result"),
        })
    }
}

impl Conflict {
    pub fn from_json(v: Value) -> Read<Conflict> {
        let mut f = Fields::new(v, "conflict")?;
        Ok(Conflict {
            id: f.str("id")?,
            collection: f.str("collection")?,
            entity_id: f.str("entityId")?,
            local: f.value("local"),
            server: f.value("server"),
            base: f.value("base"),
            server_version: f.opt_uint("serverVersion", u64::MAX)?,
            reason: f.name("reason", "version, deleted or integrity", conflict_reason)?,
            detected_at: f.uint("detectedAt", u64::MAX)?,
        })
    }
}

/// Every element of a JSON array, read by `read`.
pub fn read_all<T>(v: Value, read: fn(Value) -> Read<T>) -> Read<Vec<T>> {
    match v {
        Value::Array(items) => items.into_iter().map(read).collect(),
        _ => Err("expected an array".into()),
    }
}

#[cfg(test)]
mod tests {
    use crate::json;

    use super::*;

    fn op(n: u64) -> Operation {
        Operation {
            id: format!("op-{n}"),
            seq: n,
            collection: "notes".into(),
            entity_id: format!("n{n}"),
            kind: [OpKind::Create, OpKind::Update, OpKind::Delete][n as usize % 3],
            payload: (n % 3 != 2).then(|| json!({"title": "t", "n": n, "tags": ["a"], "nested": {"x": null}})),
            base_version: (n & 1 == 1).then_some(n * 7),
            priority: [Priority::High, Priority::Medium, Priority::Low][n as usize % 3],
            created_at: 1_763_900_000_000 + n,
            attempts: n as u32,
            next_attempt_at: u64::MAX - n,
            last_error: (n & 1 == 0).then(|| "the server answered 503".into()),
            last_status: (n & 1 == 0).then_some(503),
            checksum: "ab".repeat(32),
            sent: n & 1 == 0,
            patch: (n % 4 == 1).then(|| json!({"title": null})),
        }
    }

    /// What `#[derive(Serialize)]` writes, this reads back as it was.
    #[test]
    fn reads_back_what_serialize_wrote() {
        for n in 0..12 {
            let o = op(n);
            assert_eq!(Operation::from_json(crate::core::json::to_value(&o).unwrap()), Ok(o.clone()));
            let e = Entity {
                collection: "notes".into(),
                id: format!("n{n}"),
                data: o.payload.clone(),
                base: (n & 1 == 0).then(|| json!({"title": "base"})),
                version: o.base_version,
                last_modified: o.created_at,
                sync_status: [SyncStatus::Pending, SyncStatus::Synced, SyncStatus::Conflict, SyncStatus::Error]
                    [n as usize % 4],
                checksum: (n % 3 == 0).then(|| "cd".repeat(32)),
            };
            assert_eq!(Entity::from_json(crate::core::json::to_value(&e).unwrap()), Ok(e));
            let d = DeadLetter {
                op: o.clone(),
                error: "gone".into(),
                code: "HTTP".into(),
                status: o.last_status,
                maybe_applied: n & 1 == 1,
                at: 5 + n,
            };
            assert_eq!(DeadLetter::from_json(crate::core::json::to_value(&d).unwrap()), Ok(d));
            let c = Conflict {
                id: format!("c{n}"),
                collection: "notes".into(),
                entity_id: o.entity_id.clone(),
                local: o.payload.clone(),
                server: (n & 1 == 0).then(|| json!({"title": "server"})),
                base: None,
                server_version: o.base_version,
                reason: [ConflictReason::Version, ConflictReason::Deleted, ConflictReason::Integrity][n as usize % 3],
                detected_at: 9,
            };
            assert_eq!(Conflict::from_json(crate::core::json::to_value(&c).unwrap()), Ok(c));
        }
    }

    #[test]
    fn a_record_that_does_not_fit_says_which_field() {
        let mut v = crate::core::json::to_value(&op(1)).unwrap();
        v["attempts"] = json!(-1);
        assert_eq!(
            Operation::from_json(v.clone()).unwrap_err(),
            "op.attempts: expected a whole number from 0 to 4294967295"
        );
        v["attempts"] = json!(1);
        v["kind"] = json!("upsert");
        assert_eq!(Operation::from_json(v.clone()).unwrap_err(), "op.kind: expected create, update or delete");
        v.as_object_mut().unwrap().remove("kind");
        assert_eq!(Operation::from_json(v).unwrap_err(), "op.kind: expected a string");
        assert_eq!(Entity::from_json(json!([1])).unwrap_err(), "record: expected an object");
        assert_eq!(read_all(json!({}), Entity::from_json).unwrap_err(), "expected an array");
        let d = json!({"op": null, "error": "x", "code": "HTTP", "maybeApplied": false, "at": 1});
        assert_eq!(DeadLetter::from_json(d).unwrap_err(), "op: expected an object");
    }

    #[test]
    fn missing_and_null_read_alike_and_unknown_fields_are_ignored() {
        let mut v = crate::core::json::to_value(&op(0)).unwrap();
        let m = v.as_object_mut().unwrap();
        m.insert("lastError".into(), Value::Null);
        m.remove("lastStatus");
        m.insert("addedLater".into(), json!({"any": 1}));
        let o = Operation::from_json(v).unwrap();
        assert_eq!((o.last_error, o.last_status), (None, None));
    }
}
