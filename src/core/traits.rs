//! The three seams of the engine: where records live (`Store`), how ops reach the server
//! (`Transport`) and what time it is (`Clock`). The browser and the native simulation each
//! provide their own.

use std::future::Future;

use super::error::{Result, SyncError};
use super::op::{Conflict, DeadLetter, Entity, EntityKey, Operation};
use super::sorted::VecMap;
use super::value::Value;

/// What one store transaction saw and what it will write. The engine's pure logic reads the
/// entities and lanes, records writes, and the store applies them atomically with the reads.
#[derive(Debug, Default)]
pub struct Tx {
    /// Every requested key, with its entity if one exists.
    entities: VecMap<EntityKey, Option<Entity>>,
    /// Every requested key's pending ops, ordered by `seq`.
    lanes: VecMap<EntityKey, Vec<Operation>>,
    /// The next local sequence number (persisted; shared by all tabs).
    next_seq: u64,
    seq_used: bool,
    writes: Vec<Write>,
    /// What the writes so far do to the counts (`delta`).
    delta: Delta,
}

/// How many pending ops, dead letters and conflicts a store holds: what `status()` reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub pending: usize,
    pub dead_letters: usize,
    pub conflicts: usize,
}

/// What a transaction's writes do to the `Counts`, as its own reads prove it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    pub pending: isize,
    pub dead_letters: isize,
    pub conflicts: isize,
    /// The earliest `next_attempt_at` of an op it wrote.
    pub due: Option<u64>,
    /// It deleted a dead letter or a conflict read before it began: whether that one was still
    /// there (another call may have taken it meanwhile) is more than the transaction can tell.
    pub unsure: bool,
}

/// One write inside a transaction.
#[derive(Clone, Debug)]
pub enum Write {
    PutEntity(Entity),
    DeleteEntity(EntityKey),
    PutOp(Operation),
    DeleteOp(String),
    PutDeadLetter(DeadLetter),
    DeleteDeadLetter(String),
    PutConflict(Conflict),
    DeleteConflict(String),
    PutMeta(String, Value),
}

impl Tx {
    /// An empty snapshot; the store `add`s what it read for each key.
    pub fn new(next_seq: u64) -> Self {
        Tx { next_seq, ..Tx::default() }
    }

    /// What the store read for `key`: its entity (if any) and its pending ops (any order). A store
    /// adds keys in increasing order (it reads them from a `VecSet`): each insert is then an
    /// append, and building the snapshot is linear.
    pub fn add(&mut self, key: EntityKey, entity: Option<Entity>, mut lane: Vec<Operation>) {
        lane.sort_by_key(|o| o.seq);
        self.entities.insert_last(key.clone(), entity);
        self.lanes.insert_last(key, lane);
    }

    /// The pending ops of every key of the transaction.
    pub fn ops(&self) -> impl Iterator<Item = &Operation> {
        self.lanes.values().flatten()
    }

    /// The lanes as the transaction leaves them (it reads none afterwards).
    pub fn take_lanes(&mut self) -> VecMap<EntityKey, Vec<Operation>> {
        std::mem::take(&mut self.lanes)
    }

    /// The writes recorded so far.
    pub fn writes(&self) -> &[Write] {
        &self.writes
    }

    pub fn entity(&self, key: &EntityKey) -> Option<&Entity> {
        self.entities.get(key).and_then(|e| e.as_ref())
    }

    pub fn lane(&self, key: &EntityKey) -> &[Operation] {
        self.lanes.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Takes the next local sequence number.
    pub fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        self.seq_used = true;
        s
    }

    /// Records a write and keeps the snapshot in step with it, so later logic in the same
    /// transaction sees its own writes.
    pub fn write(&mut self, w: Write) {
        match &w {
            Write::PutEntity(e) => {
                self.entities.insert(e.key(), Some(e.clone()));
            }
            Write::DeleteEntity(k) => {
                self.entities.insert(k.clone(), None);
            }
            Write::PutOp(op) => {
                let lane = self.lanes.entry_or_default(op.key());
                match lane.iter_mut().find(|o| o.id == op.id) {
                    Some(existing) => *existing = op.clone(),
                    None => {
                        lane.push(op.clone());
                        lane.sort_by_key(|o| o.seq);
                        self.delta.pending += 1;
                    }
                }
                let due = op.next_attempt_at;
                self.delta.due = Some(self.delta.due.map_or(due, |d| d.min(due)));
            }
            Write::DeleteOp(id) => {
                // Every op a transaction deletes is in a lane it read.
                for lane in self.lanes.values_mut() {
                    let before = lane.len();
                    lane.retain(|o| &o.id != id);
                    self.delta.pending -= (before - lane.len()) as isize;
                }
            }
            // A dead letter's op leaves its lane in the same transaction (an op id is never both),
            // and a conflict's id is new: each is one more.
            Write::PutDeadLetter(_) => self.delta.dead_letters += 1,
            Write::PutConflict(_) => self.delta.conflicts += 1,
            Write::DeleteDeadLetter(_) | Write::DeleteConflict(_) => self.delta.unsure = true,
            _ => {}
        }
        self.writes.push(w);
    }

    /// What the writes so far do to the pending, dead-letter and conflict counts.
    pub fn delta(&self) -> Delta {
        self.delta
    }

    /// The writes recorded since the last call, for a store that sends a transaction's writes in
    /// parts (`Store::transact_parts`); the sequence counter's goes with the last (`into_writes`).
    pub fn take_writes(&mut self) -> Vec<Write> {
        std::mem::take(&mut self.writes)
    }

    /// The writes to apply, with the sequence counter's if it moved.
    pub fn into_writes(mut self) -> Vec<Write> {
        if self.seq_used {
            self.writes.push(Write::PutMeta(SEQ_META.into(), Value::from(self.next_seq)));
        }
        self.writes
    }
}

/// The meta record holding the next local sequence number.
pub const SEQ_META: &str = "nextSeq";

/// Where entities, ops, conflicts, dead letters and meta records live. Every method is one atomic
/// transaction; `transact` reads and writes in the same one.
#[allow(async_fn_in_trait)]
pub trait Store {
    /// Loads `keys`' entities and lanes and the sequence counter, runs `f`, and applies its writes,
    /// all in one transaction. If `f` fails nothing is written.
    async fn transact<R>(&self, keys: &[EntityKey], f: impl FnOnce(&mut Tx) -> Result<R>) -> Result<R>;
    /// One transaction as `transact`, its work in parts: `f` runs again while it returns `Ok(true)`.
    /// A store may send each part's writes before the next part runs, so that no part's work and
    /// the next one's share a task (IndexedDB: each part after the success of the one before, the
    /// transaction still active); all are still stored, or none.
    async fn transact_parts(&self, keys: &[EntityKey], mut f: impl FnMut(&mut Tx) -> Result<bool>) -> Result<()> {
        self.transact(keys, |tx| {
            while f(tx)? {}
            Ok(())
        })
        .await
    }
    async fn get_entity(&self, key: &EntityKey) -> Result<Option<Entity>>;
    async fn list_entities(&self, collection: &str) -> Result<Vec<Entity>>;
    /// All pending ops and the keys of entities whose lane is paused by a manual conflict,
    /// in one read.
    async fn load_queue(&self) -> Result<(Vec<Operation>, Vec<Conflict>)>;
    /// How many pending ops, dead letters and conflicts there are, without reading them (IndexedDB
    /// `count()`): the engine counts once at open and after another tab wrote, and keeps the counts
    /// from each transaction's `Tx::delta` otherwise.
    async fn counts(&self) -> Result<Counts>;
    async fn dead_letters(&self) -> Result<Vec<DeadLetter>>;
    async fn conflicts(&self) -> Result<Vec<Conflict>>;
    async fn get_meta(&self, name: &str) -> Result<Option<Value>>;
    async fn put_meta(&self, name: &str, value: Value) -> Result<()>;
    /// Appends `entries` to the array in the meta record `name`, keeping the last `max`, in one
    /// transaction (tabs appending at once lose nothing).
    async fn append_meta(&self, name: &str, entries: Vec<Value>, max: usize) -> Result<()> {
        let mut all = match self.get_meta(name).await? {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        all.extend(entries);
        let skip = all.len().saturating_sub(max);
        self.put_meta(name, Value::Array(all.split_off(skip))).await
    }
}

/// How the server answered one op.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Applied. `data` is the server's record (`None` for a delete or when not echoed).
    Accepted { version: Option<u64>, data: Option<Value>, checksum: Option<String> },
    /// Not applied: the server holds another version (or deleted the record).
    Conflict { server_version: Option<u64>, server_data: Option<Value>, deleted: bool, server_modified_ms: Option<u64> },
    /// Not applied, for the reason given.
    Failed(Failure),
}

/// A failed request or op: what went wrong, the HTTP status if any, and the server's
/// `Retry-After` in milliseconds if it sent one.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub error: super::error::SyncError,
    pub retry_after_ms: Option<u64>,
}

impl Failure {
    pub fn new(error: super::error::SyncError) -> Self {
        Failure { error, retry_after_ms: None }
    }
}

/// The server's answer for one op of a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct OpResult {
    pub op_id: String,
    pub outcome: Outcome,
}

/// What a push returned: per-op results, and the server's clock if it sent one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PushResponse {
    pub results: Vec<OpResult>,
    pub server_time_ms: Option<u64>,
}

/// Sends ops to the server.
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// Sends `ops` (all ready, at most one per entity). `Err` means the request as a whole failed
    /// (no per-op answer); ops missing from `results` count as failed with a protocol error.
    async fn push(&self, ops: &[Operation], device_id: &str) -> std::result::Result<PushResponse, Failure>;

    /// Fetches the server's changes to `collection` since `cursor` (everything when `None`).
    async fn pull(&self, collection: &str, cursor: Option<&str>) -> std::result::Result<PullPage, Failure> {
        let _ = cursor;
        Err(Failure::new(super::error::SyncError::Config(format!("this transport cannot pull '{collection}'"))))
    }

    /// The server's current state of the records `ids` of `collection`, to take as authoritative:
    /// the server echoed a checksum that does not match what it says it holds, or our stored copy
    /// failed its checksum. An id missing from the answer (or a tombstone) has no live record there.
    ///
    /// The default reads the collection's full listing (`pull` from no cursor, following its pages)
    /// and keeps the ids asked for: every backend that can pull can answer, at the cost of a listing.
    async fn fetch(&self, collection: &str, ids: &[String]) -> std::result::Result<Vec<ServerRecord>, Failure> {
        let mut found: Vec<ServerRecord> = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..FETCH_MAX_PAGES {
            let page = self.pull(collection, cursor.as_deref()).await?;
            for r in page.items.into_iter().filter(|r| ids.contains(&r.id)) {
                // A later page holds a later state: it replaces an earlier one.
                found.retain(|f| f.id != r.id);
                found.push(r);
            }
            if !page.has_more {
                return Ok(found);
            }
            // An incomplete listing must not pass for a complete one: an id missing from it would
            // be read as deleted on the server.
            if page.cursor.is_none() || page.cursor == cursor {
                return Err(Failure::new(SyncError::Protocol(format!(
                    "the listing of '{collection}' says it has more but gives no new cursor"
                ))));
            }
            cursor = page.cursor;
        }
        Err(Failure::new(SyncError::Protocol(format!(
            "the listing of '{collection}' did not end within {FETCH_MAX_PAGES} pages"
        ))))
    }
}

/// At most this many pages in the default `Transport::fetch`.
const FETCH_MAX_PAGES: usize = 1_000;

/// One record as the server holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerRecord {
    pub id: String,
    pub version: Option<u64>,
    /// `None`: the record was deleted (a tombstone).
    pub data: Option<Value>,
    /// When the server last changed it, ms (for last-write-wins), if it says.
    pub modified_ms: Option<u64>,
}

/// A page of the server's changes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PullPage {
    pub items: Vec<ServerRecord>,
    /// Where the next pull starts. `None`: the server has no change feed, and `items` is the full
    /// listing (records missing from it were deleted).
    pub cursor: Option<String>,
    pub has_more: bool,
}

/// Time and chance: a real clock and crypto randomness in the browser, simulated ones in tests.
#[allow(async_fn_in_trait)]
pub trait Clock {
    fn now_ms(&self) -> u64;
    fn sleep(&self, ms: u64) -> impl Future<Output = ()>;
    /// A uniformly random 64-bit number (op ids, jitter).
    fn random_u64(&self) -> u64;
}
