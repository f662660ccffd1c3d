//! The records tidesync keeps: entities, operations, dead letters, conflicts.
//!
//! Field names are camelCase because these structs are what IndexedDB stores and what JS reads.

use serde::Serialize;

use super::value::Value;

/// Identifies one record: a collection name and the record's id within it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct EntityKey {
    pub collection: String,
    pub id: String,
}

impl EntityKey {
    pub fn new(collection: impl Into<String>, id: impl Into<String>) -> Self {
        EntityKey { collection: collection.into(), id: id.into() }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Create,
    Update,
    Delete,
}

impl OpKind {
    /// The op that takes the server to a record that `exists` (or is deleted), given whether the
    /// server holds it now.
    pub fn taking(exists: bool, on_server: bool) -> Self {
        match (exists, on_server) {
            (false, _) => OpKind::Delete,
            (true, true) => OpKind::Update,
            (true, false) => OpKind::Create,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Create => "create",
            OpKind::Update => "update",
            OpKind::Delete => "delete",
        }
    }
}

/// Lower sorts first: high-priority ops are sent before medium, medium before low.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    #[default]
    Medium,
    Low,
}

impl Priority {
    pub fn parse(s: &str) -> Option<Priority> {
        match s {
            "high" => Some(Priority::High),
            "medium" => Some(Priority::Medium),
            "low" => Some(Priority::Low),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncStatus {
    /// A local change waits to be sent.
    Pending,
    /// The server holds exactly this record.
    Synced,
    /// A manual conflict waits for the app; the entity's lane is paused.
    Conflict,
    /// The last op for this record was dead-lettered.
    Error,
}

/// A pending write. `id` is the idempotency key: it never changes once the op may have been sent.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    pub id: String,
    /// Local monotonic sequence: the order of writes, across tabs.
    pub seq: u64,
    pub collection: String,
    pub entity_id: String,
    pub kind: OpKind,
    /// The full record for create/update; `None` for delete.
    pub payload: Option<Value>,
    /// The server version the write was made against (`If-Match` / `baseVersion`).
    pub base_version: Option<u64>,
    pub priority: Priority,
    pub created_at: u64,
    pub attempts: u32,
    pub next_attempt_at: u64,
    pub last_error: Option<String>,
    pub last_status: Option<u16>,
    pub checksum: String,
    /// Set before the op leaves the device. A sent op is never changed again (a retry must carry
    /// the same payload under the same idempotency key); later writes start a new op instead.
    pub sent: bool,
    /// For an update: the change as a JSON merge patch (RFC 7386) against the state the server
    /// holds when the op applies, for backends updated with `PATCH`. `None`: send the whole record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<Value>,
}

impl Operation {
    pub fn key(&self) -> EntityKey {
        EntityKey::new(self.collection.clone(), self.entity_id.clone())
    }
}

/// A record as the app sees it, plus what sync needs to know about it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entity {
    pub collection: String,
    pub id: String,
    /// The local state; `None` while a local delete is pending (a tombstone).
    pub data: Option<Value>,
    /// The last state the server acknowledged: the shadow for the 3-way merge.
    pub base: Option<Value>,
    /// The server's version of `base`.
    pub version: Option<u64>,
    pub last_modified: u64,
    pub sync_status: SyncStatus,
    /// Checksum of `data` (canonical JSON, SHA-256), checked on every read.
    pub checksum: Option<String>,
}

impl Entity {
    /// The server's record (`data` at `version`, changed at `modified_ms`) as stored when nothing
    /// of ours is pending: synced, its data also its base.
    pub fn from_server(key: &EntityKey, data: Value, version: Option<u64>, modified_ms: u64) -> Self {
        Entity {
            checksum: Some(crate::core::checksum::checksum(&data)),
            base: Some(data.clone()),
            data: Some(data),
            version,
            sync_status: SyncStatus::Synced,
            ..Entity::empty(key, modified_ms)
        }
    }

    /// A record with no data, never on the server, pending: what a write starts from when the store
    /// holds nothing for `key`.
    pub fn empty(key: &EntityKey, now: u64) -> Self {
        Entity {
            collection: key.collection.clone(),
            id: key.id.clone(),
            data: None,
            base: None,
            version: None,
            last_modified: now,
            sync_status: SyncStatus::Pending,
            checksum: None,
        }
    }

    pub fn key(&self) -> EntityKey {
        EntityKey::new(self.collection.clone(), self.id.clone())
    }
    pub fn is_deleted(&self) -> bool {
        self.data.is_none()
    }
}

/// An op the server refused for good (or that ran out of attempts), kept for the app to inspect.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub op: Operation,
    pub error: String,
    /// The stable error code (`HTTP`, `PROTOCOL`, `AUTH`, `NETWORK`, ...).
    pub code: String,
    pub status: Option<u16>,
    /// The op keeps the head of its record's lane (later writes wait behind it) and is resent
    /// under its id when due: its answer never came, so the server may have applied it (the
    /// idempotency ledger prevents a second application), or the server refused it only for now
    /// (401, 408, 425, 429; `status` says which). `false`: refused for good, or a conflict.
    pub maybe_applied: bool,
    pub at: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConflictReason {
    Version,
    Deleted,
    Integrity,
}

impl ConflictReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictReason::Version => "version",
            ConflictReason::Deleted => "deleted",
            ConflictReason::Integrity => "integrity",
        }
    }
}

/// A conflict waiting for the app (the `manual` strategy).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conflict {
    pub id: String,
    pub collection: String,
    pub entity_id: String,
    pub local: Option<Value>,
    pub server: Option<Value>,
    pub base: Option<Value>,
    pub server_version: Option<u64>,
    pub reason: ConflictReason,
    pub detected_at: u64,
}

impl Conflict {
    pub fn key(&self) -> EntityKey {
        EntityKey::new(self.collection.clone(), self.entity_id.clone())
    }
}
