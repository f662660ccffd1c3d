//! SQLite storage: records, each user's change sequence and the idempotency ledger, all keyed by
//! user, so that one user's ids, cursors and op ids never meet another's.
//!
//! One connection behind a mutex: SQLite serialises writers anyway, and a single connection makes
//! "check the ledger, apply, write the ledger" one atomic step without retry loops on `BUSY`.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use serde_json::{json, Map, Value};

pub const DB_FILE: &str = "tidesync.db";

/// `PRAGMA user_version` of the per-user schema. Version 0 with a `records` table is the schema of
/// servers before sign-in, whose rows belong to no user.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    user TEXT NOT NULL,
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    data TEXT,
    deleted INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL,
    checksum TEXT,
    change_seq INTEGER NOT NULL,
    PRIMARY KEY (user, collection, id)
);
CREATE INDEX IF NOT EXISTS records_by_seq ON records (user, collection, change_seq);
CREATE TABLE IF NOT EXISTS ledger (
    user TEXT NOT NULL,
    op_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    result TEXT NOT NULL,
    status INTEGER NOT NULL,
    applied_at TEXT NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (user, op_id)
);
CREATE TABLE IF NOT EXISTS change_seqs (
    user TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
PRAGMA user_version = 2;
";

/// A database written before records had owners is kept, renamed, and not served: nobody could
/// tell whose its records are.
const SET_ASIDE_UNOWNED: &str = "
ALTER TABLE records RENAME TO unowned_records;
ALTER TABLE ledger RENAME TO unowned_ledger;
DROP INDEX IF EXISTS records_by_seq;
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
        let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        let has_records: bool =
            conn.query_row("SELECT COUNT(*) > 0 FROM sqlite_master WHERE name = 'records'", [], |row| row.get(0))?;
        if version < SCHEMA_VERSION && has_records {
            conn.execute_batch(SET_ASIDE_UNOWNED)?;
        }
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

pub fn get(conn: &Connection, user: &str, collection: &str, id: &str) -> rusqlite::Result<Option<Record>> {
    conn.query_row(
        &format!("SELECT {RECORD_COLUMNS} FROM records WHERE user = ?1 AND collection = ?2 AND id = ?3"),
        params![user, collection, id],
        record_from_row,
    )
    .optional()
}

/// The user's cursor: how many mutations of theirs were applied.
pub fn current_seq(conn: &Connection, user: &str) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COALESCE((SELECT value FROM change_seqs WHERE user = ?1), 0)", params![user], |row| {
        row.get(0)
    })
}

fn next_seq(tx: &Transaction<'_>, user: &str) -> rusqlite::Result<i64> {
    tx.query_row(
        "INSERT INTO change_seqs (user, value) VALUES (?1, 1)
         ON CONFLICT (user) DO UPDATE SET value = value + 1 RETURNING value",
        params![user],
        |row| row.get(0),
    )
}

/// Where a record lives: its owner, collection and id.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    pub user: &'a str,
    pub collection: &'a str,
    pub id: &'a str,
}

/// Writes a new state of a record (`data: None` is a tombstone) and stamps it with the next
/// change sequence number of its owner, so every applied mutation is visible to that user's pulls
/// exactly once.
pub fn write(
    tx: &Transaction<'_>,
    key: Key<'_>,
    version: i64,
    data: Option<Value>,
    now: &str,
) -> rusqlite::Result<Record> {
    let Key { user, collection, id } = key;
    let seq = next_seq(tx, user)?;
    let text = data.as_ref().map(Value::to_string);
    let sum = data.as_ref().map(checksum);
    let deleted = data.is_none();
    tx.execute(
        "INSERT INTO records (user, collection, id, version, data, deleted, updated_at, checksum, change_seq)
         VALUES (?9, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (user, collection, id) DO UPDATE SET
            version = excluded.version, data = excluded.data, deleted = excluded.deleted,
            updated_at = excluded.updated_at, checksum = excluded.checksum,
            change_seq = excluded.change_seq",
        params![collection, id, version, text, deleted, now, sum, seq, user],
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

/// At most `limit` live records of `collection`, oldest change first (a snapshot's page).
pub fn list_live(conn: &Connection, user: &str, collection: &str, limit: i64) -> rusqlite::Result<Vec<Record>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {RECORD_COLUMNS} FROM records WHERE user = ?1 AND collection = ?2 AND deleted = 0
         ORDER BY change_seq LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![user, collection, limit], record_from_row)?;
    rows.collect()
}

pub fn list_since(
    conn: &Connection,
    user: &str,
    collection: &str,
    since: i64,
    limit: i64,
) -> rusqlite::Result<Vec<Record>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {RECORD_COLUMNS} FROM records WHERE user = ?1 AND collection = ?2 AND change_seq > ?3
         ORDER BY change_seq LIMIT ?4"
    ))?;
    let rows = stmt.query_map(params![user, collection, since, limit], record_from_row)?;
    rows.collect()
}

/// The collections of `user` changed after `since`, each with its newest change's sequence number,
/// oldest first: what a push channel tells a device that has seen everything up to `since`.
pub fn changed_since(conn: &Connection, user: &str, since: i64) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare(
        "SELECT collection, MAX(change_seq) AS seq FROM records WHERE user = ?1 AND change_seq > ?2
         GROUP BY collection ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![user, since], |row| Ok((row.get(0)?, row.get(1)?)))?;
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

/// Looks one of `user`'s operations up and, if it was seen before, counts this delivery.
pub fn ledger_redeliver(tx: &Transaction<'_>, user: &str, op_id: &str) -> rusqlite::Result<Option<LedgerHit>> {
    let hit = tx
        .query_row(
            "SELECT kind, result, status FROM ledger WHERE user = ?1 AND op_id = ?2",
            params![user, op_id],
            |row| {
                let kind: String = row.get(0)?;
                Ok(LedgerHit {
                    kind: if kind == "rest" { LedgerKind::Rest } else { LedgerKind::Batch },
                    result: json_column(row, 1)?.unwrap_or(Value::Null),
                    status: row.get(2)?,
                })
            },
        )
        .optional()?;
    if hit.is_some() {
        tx.execute(
            "UPDATE ledger SET deliveries = deliveries + 1 WHERE user = ?1 AND op_id = ?2",
            params![user, op_id],
        )?;
    }
    Ok(hit)
}

/// One ledger row: whose operation, its id and kind, and the answer to replay.
pub struct LedgerEntry<'a> {
    pub user: &'a str,
    pub op_id: &'a str,
    pub kind: LedgerKind,
    pub result: &'a Value,
    pub status: i64,
}

pub fn ledger_put(tx: &Transaction<'_>, entry: &LedgerEntry<'_>, now: &str) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO ledger (user, op_id, kind, result, status, applied_at, deliveries)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1)",
        params![entry.user, entry.op_id, entry.kind.as_str(), entry.result.to_string(), entry.status, now],
    )?;
    Ok(())
}

pub fn ledger_entries(conn: &Connection) -> rusqlite::Result<Vec<Value>> {
    let mut stmt =
        conn.prepare("SELECT op_id, status, applied_at, deliveries, kind, user FROM ledger ORDER BY rowid")?;
    let rows = stmt.query_map([], |row| {
        Ok(json!({
            "opId": row.get::<_, String>(0)?,
            "status": row.get::<_, i64>(1)?,
            "appliedAt": row.get::<_, String>(2)?,
            "deliveries": row.get::<_, i64>(3)?,
            "kind": row.get::<_, String>(4)?,
            "user": row.get::<_, String>(5)?,
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
    // Every user's cursor added up: all mutations applied since the start or the last reset.
    let cursor = conn.query_row("SELECT COALESCE(SUM(value), 0) FROM change_seqs", [], |row| row.get(0))?;
    Ok(Counts { records, live_records, ledger_entries, cursor })
}

pub fn reset(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute_batch("DELETE FROM records; DELETE FROM ledger; DELETE FROM change_seqs;")?;
    tx.commit()
}

/// The SHA-256 of a record's canonical JSON, as tidesync computes it (`tidesync::core::checksum`):
/// the record crosses from serde_json's `Value` to tidesync's through its JSON text.
pub fn checksum(data: &Value) -> String {
    let text = serde_json::to_string(data).unwrap_or_default();
    tidesync::core::json::parse(&text).map(|v| tidesync::core::checksum::checksum(&v)).unwrap_or_default()
}
