//! SQLite storage: records, the global change sequence and the idempotency ledger.
//!
//! One connection behind a mutex: SQLite serialises writers anyway, and a single connection makes
//! "check the ledger, apply, write the ledger" one atomic step without retry loops on `BUSY`.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use serde_json::{json, Map, Value};

pub const DB_FILE: &str = "tidesync.db";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    data TEXT,
    deleted INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL,
    checksum TEXT,
    change_seq INTEGER NOT NULL,
    PRIMARY KEY (collection, id)
);
CREATE INDEX IF NOT EXISTS records_by_seq ON records (collection, change_seq);
CREATE TABLE IF NOT EXISTS ledger (
    op_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    result TEXT NOT NULL,
    status INTEGER NOT NULL,
    applied_at TEXT NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('change_seq', 0);
";

pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    pub fn open(data_dir: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open(data_dir.join(DB_FILE))?;
        // `journal_mode` answers with a row, so it cannot go through `execute_batch`.
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        // In WAL mode NORMAL still survives an application crash; only a power cut can lose the
        // last commits, which is fine for a reference server.
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    /// Runs `f` with the connection held. A panic elsewhere cannot leave a half-applied change
    /// behind (an unfinished `Transaction` rolls back on drop), so a poisoned lock is safe to reuse.
    pub fn with<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut conn)
    }
}

#[derive(Debug, Clone)]
pub struct Record {
    pub collection: String,
    pub id: String,
    pub version: i64,
    pub data: Option<Value>,
    pub deleted: bool,
    pub updated_at: Option<String>,
    pub checksum: Option<String>,
    pub change_seq: i64,
}

impl Record {
    pub fn is_live(&self) -> bool {
        !self.deleted
    }

    /// Stands in for a record the server never had (e.g. deleting an unknown id).
    pub fn absent(collection: &str, id: &str) -> Self {
        Self {
            collection: collection.to_owned(),
            id: id.to_owned(),
            version: 0,
            data: None,
            deleted: true,
            updated_at: None,
            checksum: None,
            change_seq: 0,
        }
    }

    /// The batch/pull shape (`RECORD` in the README).
    pub fn wire(&self) -> Value {
        json!({
            "entityType": self.collection,
            "entityId": self.id,
            "version": self.version,
            "data": self.data,
            "deleted": self.deleted,
            "updatedAt": self.updated_at,
            "checksum": self.checksum,
        })
    }

    /// The REST shape: the data object with the server-owned `id` and `version` on top.
    pub fn representation(&self) -> Value {
        let mut map = match &self.data {
            Some(Value::Object(map)) => map.clone(),
            _ => Map::new(),
        };
        map.insert("id".into(), Value::String(self.id.clone()));
        map.insert("version".into(), Value::from(self.version));
        Value::Object(map)
    }
}

fn json_column(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<Value>> {
    let text: Option<String> = row.get(idx)?;
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|err| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(err)))
    })
    .transpose()
}

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<Record> {
    Ok(Record {
        collection: row.get(0)?,
        id: row.get(1)?,
        version: row.get(2)?,
        data: json_column(row, 3)?,
        deleted: row.get::<_, i64>(4)? != 0,
        updated_at: Some(row.get(5)?),
        checksum: row.get(6)?,
        change_seq: row.get(7)?,
    })
}

const RECORD_COLUMNS: &str = "collection, id, version, data, deleted, updated_at, checksum, change_seq";

pub fn get(conn: &Connection, collection: &str, id: &str) -> rusqlite::Result<Option<Record>> {
    conn.query_row(
        &format!("SELECT {RECORD_COLUMNS} FROM records WHERE collection = ?1 AND id = ?2"),
        params![collection, id],
        record_from_row,
    )
    .optional()
}

pub fn current_seq(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT value FROM meta WHERE key = 'change_seq'", [], |row| row.get(0))
}

fn next_seq(tx: &Transaction<'_>) -> rusqlite::Result<i64> {
    tx.query_row("UPDATE meta SET value = value + 1 WHERE key = 'change_seq' RETURNING value", [], |row| row.get(0))
}

/// Writes a new state of a record (`data: None` is a tombstone) and stamps it with the next
/// change sequence number, so every applied mutation is visible to pulls exactly once.
pub fn write(
    tx: &Transaction<'_>,
    collection: &str,
    id: &str,
    version: i64,
    data: Option<Value>,
    now: &str,
) -> rusqlite::Result<Record> {
    let seq = next_seq(tx)?;
    let text = data.as_ref().map(Value::to_string);
    let sum = data.as_ref().map(checksum);
    let deleted = data.is_none();
    tx.execute(
        "INSERT INTO records (collection, id, version, data, deleted, updated_at, checksum, change_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (collection, id) DO UPDATE SET
            version = excluded.version, data = excluded.data, deleted = excluded.deleted,
            updated_at = excluded.updated_at, checksum = excluded.checksum,
            change_seq = excluded.change_seq",
        params![collection, id, version, text, deleted, now, sum, seq],
    )?;
    Ok(Record {
        collection: collection.to_owned(),
        id: id.to_owned(),
        version,
        data,
        deleted,
        updated_at: Some(now.to_owned()),
        checksum: sum,
        change_seq: seq,
    })
}

pub fn list_live(conn: &Connection, collection: &str) -> rusqlite::Result<Vec<Record>> {
    let mut stmt = conn
        .prepare(&format!("SELECT {RECORD_COLUMNS} FROM records WHERE collection = ?1 AND deleted = 0 ORDER BY id"))?;
    let rows = stmt.query_map(params![collection], record_from_row)?;
    rows.collect()
}

pub fn list_since(conn: &Connection, collection: &str, since: i64, limit: i64) -> rusqlite::Result<Vec<Record>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {RECORD_COLUMNS} FROM records WHERE collection = ?1 AND change_seq > ?2
         ORDER BY change_seq LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![collection, since, limit], record_from_row)?;
    rows.collect()
}

/// Whether a ledger entry came from the batch endpoint or from a REST write: the two store
/// different shapes (a batch result vs. a whole HTTP response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerKind {
    Batch,
    Rest,
}

impl LedgerKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Batch => "batch",
            Self::Rest => "rest",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LedgerHit {
    pub kind: LedgerKind,
    pub result: Value,
    pub status: i64,
}

/// Looks an operation up and, if it was seen before, counts this delivery.
pub fn ledger_redeliver(tx: &Transaction<'_>, op_id: &str) -> rusqlite::Result<Option<LedgerHit>> {
    let hit = tx
        .query_row("SELECT kind, result, status FROM ledger WHERE op_id = ?1", params![op_id], |row| {
            let kind: String = row.get(0)?;
            Ok(LedgerHit {
                kind: if kind == "rest" { LedgerKind::Rest } else { LedgerKind::Batch },
                result: json_column(row, 1)?.unwrap_or(Value::Null),
                status: row.get(2)?,
            })
        })
        .optional()?;
    if hit.is_some() {
        tx.execute("UPDATE ledger SET deliveries = deliveries + 1 WHERE op_id = ?1", params![op_id])?;
    }
    Ok(hit)
}

pub fn ledger_put(
    tx: &Transaction<'_>,
    op_id: &str,
    kind: LedgerKind,
    result: &Value,
    status: i64,
    now: &str,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO ledger (op_id, kind, result, status, applied_at, deliveries)
         VALUES (?1, ?2, ?3, ?4, ?5, 1)",
        params![op_id, kind.as_str(), result.to_string(), status, now],
    )?;
    Ok(())
}

pub fn ledger_entries(conn: &Connection) -> rusqlite::Result<Vec<Value>> {
    let mut stmt = conn.prepare("SELECT op_id, status, applied_at, deliveries, kind FROM ledger ORDER BY rowid")?;
    let rows = stmt.query_map([], |row| {
        Ok(json!({
            "opId": row.get::<_, String>(0)?,
            "status": row.get::<_, i64>(1)?,
            "appliedAt": row.get::<_, String>(2)?,
            "deliveries": row.get::<_, i64>(3)?,
            "kind": row.get::<_, String>(4)?,
        }))
    })?;
    rows.collect()
}

pub struct Counts {
    pub records: i64,
    pub live_records: i64,
    pub ledger_entries: i64,
    pub cursor: i64,
}

pub fn counts(conn: &Connection) -> rusqlite::Result<Counts> {
    let (records, live_records) =
        conn.query_row("SELECT COUNT(*), COALESCE(SUM(deleted = 0), 0) FROM records", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
    let ledger_entries = conn.query_row("SELECT COUNT(*) FROM ledger", [], |row| row.get(0))?;
    Ok(Counts { records, live_records, ledger_entries, cursor: current_seq(conn)? })
}

pub fn reset(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute_batch("DELETE FROM records; DELETE FROM ledger; UPDATE meta SET value = 0 WHERE key = 'change_seq';")?;
    tx.commit()
}

/// The SHA-256 of a record's canonical JSON, as tidesync computes it (`tidesync::core::checksum`):
/// the record crosses from serde_json's `Value` to tidesync's through its JSON text.
pub fn checksum(data: &Value) -> String {
    let text = serde_json::to_string(data).unwrap_or_default();
    tidesync::core::json::parse(&text).map(|v| tidesync::core::checksum::checksum(&v)).unwrap_or_default()
}
