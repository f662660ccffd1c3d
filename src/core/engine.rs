//! The sync state machine: local writes, the flush cycle and conflict handling, over the
//! `Store`, `Transport` and `Clock` traits.

use std::cell::RefCell;
use std::collections::VecDeque;

use serde::Serialize;

use super::checksum::checksum;
use super::error::{Result, SyncError};
use super::merge::{merge, parse_time_ms, MergeSpec, Resolution, Stamps};
use super::metrics::{ErrorEntry, Metrics, MetricsSnapshot};
use super::netpolicy::{NetDecision, NetInfo, NetPolicy, RttEstimator};
use super::op::{Conflict, ConflictReason, DeadLetter, Entity, EntityKey, OpKind, Operation, Priority, SyncStatus};
use super::queue::{local_write, new_op, next_due, ready_heads, Mutation, WriteEffect};
use super::retry::{classify_status, BreakerState, CircuitBreaker, Class, RetryPolicy};
use super::sorted::{VecMap, VecSet};
use super::traits::{Clock, Failure, Outcome, PushResponse, QueueSummary, ServerRecord, Store, Transport, Tx, Write};
use super::value::Value;

/// A collection the app syncs.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectionConfig {
    /// Path (or URL) of the collection's REST endpoint, e.g. `/api/notes`.
    pub endpoint: String,
    pub merge: MergeSpec,
    /// Priority of writes that do not name one.
    pub priority: Priority,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    pub collections: VecMap<String, CollectionConfig>,
    pub retry: RetryPolicy,
    pub net_policy: NetPolicy,
    pub breaker_threshold: u32,
    pub breaker_cooldown_ms: u64,
    /// How many resolutions the audit log keeps.
    pub audit_log_size: usize,
    /// At most this many ops in one request, whatever the network policy says.
    pub max_batch_size: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            collections: VecMap::new(),
            retry: RetryPolicy::default(),
            net_policy: NetPolicy::default(),
            breaker_threshold: 5,
            breaker_cooldown_ms: 30_000,
            audit_log_size: 200,
            max_batch_size: 1_000,
        }
    }
}

/// What one `flush()` did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlushReport {
    /// Ops sent (a retried op counts each time).
    pub sent: usize,
    pub accepted: usize,
    /// Conflicts met (resolved automatically or queued for the app).
    pub conflicts: usize,
    /// Ops that failed and wait for a retry.
    pub retried: usize,
    pub dead_lettered: usize,
    /// Ops still pending afterwards.
    pub remaining: usize,
    /// When the next pending op is due (ms since the epoch).
    pub next_attempt_at: Option<u64>,
    /// Nothing was sent because the device is offline.
    pub offline: bool,
    /// Nothing more was sent because the circuit breaker is open.
    pub breaker_open: bool,
}

/// One resolved conflict, for the audit trail.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub at: u64,
    pub collection: String,
    pub id: String,
    /// `auto` (by the collection's policy) or `manual` (by the app).
    pub how: String,
    pub reason: ConflictReason,
    pub base: Option<Value>,
    pub local: Option<Value>,
    pub server: Option<Value>,
    pub result: Option<Value>,
}

/// What subscribers hear. Delivered after the call that caused it returns.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Event {
    /// A record changed (by this tab, or by a sync result).
    #[serde(rename_all = "camelCase")]
    Change { collection: String, id: String, sync_status: Option<SyncStatus>, deleted: bool },
    /// A flush finished.
    Sync { report: FlushReport },
    #[serde(rename_all = "camelCase")]
    Error { code: String, message: String, status: Option<u16> },
    /// A conflict waits for the app.
    #[serde(rename_all = "camelCase")]
    Conflict { conflict_id: String, collection: String, id: String },
    /// A conflict was resolved (automatically or by the app).
    Resolved { entry: AuditEntry },
    #[serde(rename_all = "camelCase")]
    DeadLetter { op_id: String, collection: String, id: String, code: String, message: String },
    /// A record's writes stopped: its last write ran out of attempts and the server may have
    /// applied it. tidesync resends it under the same id at `retry_at` (the server's idempotency
    /// answers); `retryDeadLetter(opId)` does it now, `discardDeadLetter(opId)` gives it up.
    #[serde(rename_all = "camelCase")]
    Stalled { op_id: String, collection: String, id: String, message: String, retry_at: Option<u64> },
}

/// A record whose writes wait (`status().blocked`), and what it waits for.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blocked {
    pub collection: String,
    pub id: String,
    /// `conflict`: a conflict waits for `resolveConflict(conflictId)`. `maybeApplied`: a write whose
    /// answer never came (`opId`); tidesync resends it at `retryAt` under the same id.
    pub reason: &'static str,
    pub conflict_id: Option<String>,
    pub op_id: Option<String>,
    pub message: String,
    pub since: u64,
    /// When tidesync settles it itself (`None`: only the app can, the write is older than
    /// `retry.maxAgeMs`).
    pub retry_at: Option<u64>,
}

/// The app's choice in `resolve_conflict`.
#[derive(Clone, Debug, PartialEq)]
pub enum Choice {
    Local,
    Server,
    Merged(Value),
}

/// Sync status at a glance.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub pending: usize,
    pub conflicts: usize,
    pub dead_letters: usize,
    pub online: bool,
    pub flushing: bool,
    pub last_sync_at: Option<u64>,
    pub last_error: Option<ErrorEntry>,
    pub next_attempt_at: Option<u64>,
    pub breaker: BreakerState,
    pub network: NetDecision,
    /// Records whose writes wait, and why: nothing stops silently.
    pub blocked: Vec<Blocked>,
}

pub(super) struct State {
    breaker: CircuitBreaker,
    metrics: Metrics,
    net: NetInfo,
    rtt: RttEstimator,
    /// Server clock minus ours, ms.
    skew_ms: i64,
    flushing: bool,
    flush_again: bool,
    /// Moves on every write to the queue outside a flush pass (a local write, a retried dead
    /// letter, a resolved conflict, another tab's write): the flush's queue snapshot is then read
    /// again, so a new write does not wait behind the whole drain.
    queue_epoch: u64,
    last_report: FlushReport,
    events: Vec<Event>,
    audit: VecDeque<AuditEntry>,
    /// Resolutions not in the store yet (`save_audit`).
    unsaved_audit: Vec<AuditEntry>,
    /// The earliest time a write the server may have applied is to be resent (`settle`); `Some(0)`
    /// after opening: whatever an earlier session left is looked at on the first flush.
    settle_due: Option<u64>,
    closed: bool,
    /// Records whose stored copy failed its checksum and could not be repaired yet (the server was
    /// unreachable, or pending writes must be answered first). The next pull tries again.
    pub(super) corrupt: VecSet<EntityKey>,
}

/// The meta record holding this device's id.
pub const DEVICE_META: &str = "deviceId";

/// The meta record holding the audit trail: the last `audit_log_size` resolutions, kept across
/// reloads (the reference design's conflict history).
pub const AUDIT_META: &str = "auditLog";

/// An app's own merge for a collection: `(base, local, server)` to the merged record (`Ok(None)`:
/// leave the conflict to the app's queue; `Err`: the resolver failed, and so does the same).
pub type Resolver =
    Box<dyn Fn(Option<&Value>, Option<&Value>, Option<&Value>) -> std::result::Result<Option<Value>, String>>;

pub struct Engine<S, T, C> {
    pub(super) store: S,
    pub(super) transport: T,
    pub(super) clock: C,
    pub(super) config: EngineConfig,
    device_id: String,
    pub(super) state: RefCell<State>,
    resolvers: RefCell<VecMap<String, Resolver>>,
}

impl<S: Store, T: Transport, C: Clock> Engine<S, T, C> {
    /// Opens the engine over `store`, creating this device's id on first use.
    pub async fn open(store: S, transport: T, clock: C, config: EngineConfig) -> Result<Self> {
        if config.collections.is_empty() {
            return Err(SyncError::Config("declare at least one collection".into()));
        }
        let device_id = match store.get_meta(DEVICE_META).await? {
            Some(Value::String(id)) if !id.is_empty() => id,
            _ => {
                let id = uuid(&clock);
                store.put_meta(DEVICE_META, Value::String(id.clone())).await?;
                id
            }
        };
        // The trail as earlier sessions left it; an entry this build cannot read is left out.
        let audit: VecDeque<AuditEntry> = match store.get_meta(AUDIT_META).await? {
            Some(Value::Array(entries)) => entries.into_iter().filter_map(|v| AuditEntry::from_json(v).ok()).collect(),
            _ => VecDeque::new(),
        };
        let state = State {
            breaker: CircuitBreaker::new(config.breaker_threshold, config.breaker_cooldown_ms),
            metrics: Metrics::default(),
            net: NetInfo::default(),
            rtt: RttEstimator::default(),
            skew_ms: 0,
            flushing: false,
            flush_again: false,
            queue_epoch: 0,
            last_report: FlushReport::default(),
            events: Vec::new(),
            audit,
            unsaved_audit: Vec::new(),
            settle_due: Some(0),
            closed: false,
            corrupt: VecSet::new(),
        };
        Ok(Engine {
            store,
            transport,
            clock,
            config,
            device_id,
            state: RefCell::new(state),
            resolvers: RefCell::default(),
        })
    }

    /// Resolves `collection`'s conflicts with the app's own function instead of its merge spec.
    pub fn set_resolver(&self, collection: &str, resolver: Resolver) {
        self.resolvers.borrow_mut().insert(collection.to_string(), resolver);
    }

    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Events since the last call, oldest first.
    pub fn take_events(&self) -> Vec<Event> {
        std::mem::take(&mut self.state.borrow_mut().events)
    }

    /// Marks the engine closed: every later call fails with `CLOSED`.
    pub fn close(&self) {
        self.state.borrow_mut().closed = true;
    }

    pub fn is_closed(&self) -> bool {
        self.state.borrow().closed
    }

    pub(super) fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            Err(SyncError::Closed)
        } else {
            Ok(())
        }
    }

    /// Tells a running flush that the queue changed under it (see `State::queue_epoch`). The JS
    /// layer calls it when another tab says it wrote.
    pub fn queue_changed(&self) {
        self.state.borrow_mut().queue_epoch += 1;
    }

    pub(super) fn emit(&self, e: Event) {
        self.state.borrow_mut().events.push(e);
    }

    /// The configuration of a declared collection of an open engine.
    fn collection(&self, collection: &str) -> Result<&CollectionConfig> {
        self.check_open()?;
        self.config.collections.get(collection).ok_or_else(|| {
            SyncError::InvalidInput(format!("unknown collection '{collection}' (declare it in `collections`)"))
        })
    }

    fn key(&self, collection: &str, id: &str) -> Result<EntityKey> {
        self.collection(collection)?;
        if id.is_empty() || id.len() > 512 {
            return Err(SyncError::InvalidInput("a record id must be 1 to 512 characters".into()));
        }
        Ok(EntityKey::new(collection, id))
    }

    // ---- local writes and reads ----

    /// Stores `data` as the record and queues it for the server, in one store transaction.
    pub async fn put(
        &self,
        collection: &str,
        id: &str,
        data: Value,
        priority: Option<Priority>,
    ) -> Result<Option<Entity>> {
        Ok(self.write_one(collection, id, Mutation::Put(data), priority).await?.entity)
    }

    /// Puts every `(id, data)` of `records` in ONE transaction: all are written, or (on any error,
    /// a quota error included) none. Records are applied in order, so a repeated id ends with its
    /// last data. Returns each record as stored.
    pub async fn put_many(
        &self,
        collection: &str,
        records: Vec<(String, Value)>,
        priority: Option<Priority>,
    ) -> Result<Vec<Option<Entity>>> {
        let writes = records.into_iter().map(|(id, data)| (id, Mutation::Put(data))).collect();
        Ok(self.write(collection, writes, priority).await?.into_iter().map(|e| e.entity).collect())
    }

    /// Merges `fields` into the record (`null` removes a field).
    pub async fn patch(
        &self,
        collection: &str,
        id: &str,
        fields: Value,
        priority: Option<Priority>,
    ) -> Result<Option<Entity>> {
        Ok(self.write_one(collection, id, Mutation::Patch(fields), priority).await?.entity)
    }

    /// Deletes the record; `false` if there was none.
    pub async fn delete(&self, collection: &str, id: &str, priority: Option<Priority>) -> Result<bool> {
        // A delete changes something exactly when the record existed: one transaction, no read first.
        Ok(self.write_one(collection, id, Mutation::Delete, priority).await?.changed)
    }

    /// One write of one record.
    async fn write_one(&self, collection: &str, id: &str, m: Mutation, p: Option<Priority>) -> Result<WriteEffect> {
        let mut effects = self.write(collection, vec![(id.to_string(), m)], p).await?;
        effects.pop().ok_or_else(|| SyncError::Storage("a write had no effect".into()))
    }

    /// Applies `writes` in order in one store transaction (every write of a call, or none).
    async fn write(
        &self,
        collection: &str,
        writes: Vec<(String, Mutation)>,
        priority: Option<Priority>,
    ) -> Result<Vec<WriteEffect>> {
        let priority = priority.unwrap_or(self.collection(collection)?.priority);
        let keys = writes.iter().map(|(id, _)| self.key(collection, id)).collect::<Result<Vec<_>>>()?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.clock.now_ms();
        let mut new_id = || uuid(&self.clock);
        let corrupt: RefCell<Option<Entity>> = RefCell::new(None);
        let result = self
            .store
            .transact(&keys, |tx| {
                keys.iter()
                    .zip(writes)
                    .map(|(key, (_, m))| {
                        // A patch builds on the stored record: never on a copy that fails its checksum.
                        if let (Mutation::Patch(_), Some(e)) = (&m, tx.entity(key).filter(|e| !intact(e))) {
                            *corrupt.borrow_mut() = Some(e.clone());
                            return Err(SyncError::Integrity(format!(
                                "{}/{} does not match its checksum",
                                e.collection, e.id
                            )));
                        }
                        local_write(tx, key, m, now, &mut new_id, priority)
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .await;
        if let Some(e) = corrupt.into_inner() {
            if let Err(err) = self.verify(&e) {
                self.repair(vec![e.key()]).await;
                return Err(err);
            }
        }
        let effects = result?;
        self.queue_changed();
        for (key, eff) in keys.iter().zip(&effects) {
            if eff.changed {
                self.emit(change_event(key, eff.entity.as_ref()));
            }
        }
        Ok(effects)
    }

    /// The record's data, checked against its checksum.
    pub async fn get(&self, collection: &str, id: &str) -> Result<Option<Value>> {
        Ok(self.record(collection, id).await?.and_then(|e| e.data))
    }

    /// The record with its sync state (`None` if absent or deleted). A stored copy that fails its
    /// checksum is never returned: the call fails with `INTEGRITY` (also an `error` event) once the
    /// record has been repaired (`repair`), so reading it again returns the repaired record.
    pub async fn record(&self, collection: &str, id: &str) -> Result<Option<Entity>> {
        let key = self.key(collection, id)?;
        match self.store.get_entity(&key).await? {
            Some(e) if !e.is_deleted() => {
                if let Err(err) = self.verify(&e) {
                    self.repair(vec![key]).await;
                    return Err(err);
                }
                Ok(Some(e))
            }
            _ => Ok(None),
        }
    }

    /// Every live record of the collection, ordered by id. A record that fails its checksum is
    /// left out, reported as an `INTEGRITY` error event and repaired (`repair`) before this returns.
    pub async fn list(&self, collection: &str) -> Result<Vec<Entity>> {
        self.check_open()?;
        if !self.config.collections.contains_key(collection) {
            return Err(SyncError::InvalidInput(format!("unknown collection '{collection}'")));
        }
        let mut out = self.store.list_entities(collection).await?;
        let corrupt: Vec<EntityKey> = out.iter().filter(|e| self.verify(e).is_err()).map(Entity::key).collect();
        out.retain(|e| !e.is_deleted() && intact(e));
        if !corrupt.is_empty() {
            self.repair(corrupt).await;
        }
        Ok(out)
    }

    /// Checks a stored record against its checksum; a mismatch is reported (an `INTEGRITY` error
    /// event) and remembered for `repair`.
    pub(super) fn verify(&self, e: &Entity) -> Result<()> {
        if intact(e) {
            return Ok(());
        }
        let err = SyncError::Integrity(format!(
            "{}/{} does not match its checksum: the stored copy is not used, and the record is restored \
             from its pending write or from the server",
            e.collection, e.id
        ));
        self.report(&err);
        self.state.borrow_mut().corrupt.insert(e.key());
        Err(err)
    }

    // ---- flush ----

    /// Sends every due op, batch by batch, until none is due, the device is offline or the
    /// circuit breaker opens. A flush already running in this engine is joined, not repeated.
    pub async fn flush(&self) -> Result<FlushReport> {
        self.check_open()?;
        let joined = {
            let mut st = self.state.borrow_mut();
            st.flush_again |= st.flushing;
            std::mem::replace(&mut st.flushing, true)
        };
        if joined {
            while self.state.borrow().flushing {
                self.clock.sleep(5).await;
            }
            return Ok(self.state.borrow().last_report.clone());
        }
        let started = self.clock.now_ms();
        let result = match self.settle(started).await {
            Ok(()) => self.flush_passes().await,
            Err(e) => Err(e),
        };
        self.save_audit().await;
        let mut st = self.state.borrow_mut();
        st.flushing = false;
        st.metrics.last_sync_duration_ms = Some(self.clock.now_ms().saturating_sub(started));
        match result {
            Ok(report) => {
                st.last_report = report.clone();
                st.events.push(Event::Sync { report: report.clone() });
                Ok(report)
            }
            Err(e) => {
                st.events.push(Event::Error { code: e.code().into(), message: e.to_string(), status: e.status() });
                Err(e)
            }
        }
    }

    async fn flush_passes(&self) -> Result<FlushReport> {
        let mut report = FlushReport::default();
        // Lowered when the server refuses a batch as too large (413).
        let mut batch_cap = usize::MAX;
        // The queue as of the last pass: read whole once, then only the lanes a pass touched are read
        // again. `None` reads it whole (first pass, a surprise from another tab, or to make sure
        // nothing arrived meanwhile before stopping). Safe to reuse: `mark_sent` sends each lane's
        // head as it is in the store then, not as the snapshot remembers it.
        let mut snapshot: Option<(Vec<Operation>, VecSet<EntityKey>)> = None;
        let mut epoch = self.state.borrow().queue_epoch;
        loop {
            self.state.borrow_mut().flush_again = false;
            let now = self.clock.now_ms();
            let decision = self.network();
            if std::mem::replace(&mut epoch, self.state.borrow().queue_epoch) != epoch {
                snapshot = None;
            }
            let (mut ops, paused, whole) = match snapshot.take() {
                Some((ops, paused)) => (ops, paused, false),
                None => {
                    let (ops, conflicts) = self.store.load_queue().await?;
                    let paused = self.paused_lanes(&conflicts).await?;
                    (ops, paused, true)
                }
            };
            self.state.borrow_mut().metrics.record_queue_size(ops.len());
            report.remaining = ops.len();
            report.next_attempt_at = next_due(&ops, &paused);
            // Stopping: the report's counts come from a whole read of the queue.
            if (decision.paused || !self.state.borrow().breaker.would_allow(now)) && !whole {
                continue;
            }
            if decision.paused {
                report.offline = true;
                return Ok(report);
            }
            if !self.state.borrow_mut().breaker.allow(now) {
                report.breaker_open = true;
                report.next_attempt_at =
                    report.next_attempt_at.map(|t| t.max(self.state.borrow().breaker.reopens_at().unwrap_or(t)));
                return Ok(report);
            }
            let limit = decision.batch_size.min(self.config.max_batch_size).min(batch_cap).max(1);
            let heads: Vec<Operation> = ready_heads(&ops, &paused, now, limit).into_iter().cloned().collect();
            if heads.is_empty() {
                if whole {
                    return Ok(report);
                }
                continue;
            }
            let batch = self.mark_sent(heads).await?;
            if batch.is_empty() {
                continue;
            }
            let t0 = self.clock.now_ms();
            let response = self.transport.push(&batch, &self.device_id).await;
            let t1 = self.clock.now_ms();
            if batch.len() > 1 && response.as_ref().err().and_then(|f| f.error.status()) == Some(413) {
                // Too large as a whole: no op is at fault yet. Send halves, until a single op that
                // is too large on its own is refused (and dead-lettered) alone.
                batch_cap = batch.len() / 2;
                report.sent += batch.len();
                continue;
            }
            let pausing = (report.conflicts, report.dead_lettered);
            let (had_failure, lanes) = self.apply_response(&batch, response, t0, t1, &mut report).await?;
            if had_failure && !self.state.borrow().flush_again {
                let (ops, conflicts) = self.store.load_queue().await?;
                let paused = self.paused_lanes(&conflicts).await?;
                report.remaining = ops.len();
                report.next_attempt_at = next_due(&ops, &paused);
                report.breaker_open = matches!(self.state.borrow().breaker.state(), BreakerState::Open { .. });
                return Ok(report);
            }
            // The batch's lanes as the answers left them; conflicts and dead letters may pause lanes.
            // (Keyed by borrowed names: no allocation per queued op and pass.)
            let touched: VecMap<(&str, &str), &Operation> =
                batch.iter().map(|o| ((o.collection.as_str(), o.entity_id.as_str()), o)).collect();
            ops.retain(|o| !touched.contains_key(&(o.collection.as_str(), o.entity_id.as_str())));
            ops.extend(lanes.into_values().flatten());
            // Only a conflict or a dead letter made by this pass can pause another lane.
            let paused = if (report.conflicts, report.dead_lettered) == pausing {
                paused
            } else {
                self.paused_lanes(&self.store.conflicts().await?).await?
            };
            snapshot = Some((ops, paused));
        }
    }

    /// Lanes that must not send: a conflict waits for the app, or a dead-lettered op may have been
    /// applied by the server (its answer never came). A later write sent on top of the latter would
    /// be merged against a server state that may or may not hold it, counting a `sum` twice; so the
    /// record waits until the app retries that op (same id: the server's ledger deduplicates it) or
    /// discards it.
    async fn paused_lanes(&self, conflicts: &[Conflict]) -> Result<VecSet<EntityKey>> {
        let mut paused: VecSet<EntityKey> = conflicts.iter().map(Conflict::key).collect();
        paused.extend(self.store.dead_letters().await?.iter().filter(|d| d.maybe_applied).map(|d| d.op.key()));
        Ok(paused)
    }

    /// Marks the batch's ops as sent, in one transaction, and returns them as they are now:
    /// another tab may have coalesced a write into one of them since we read the queue.
    async fn mark_sent(&self, heads: Vec<Operation>) -> Result<Vec<Operation>> {
        let keys: Vec<EntityKey> = heads.iter().map(Operation::key).collect();
        self.store
            .transact(&keys, |tx| {
                let mut batch = Vec::with_capacity(heads.len());
                for expected in &heads {
                    // Only the op that is still the lane's head goes out.
                    let Some(head) = tx.lane(&expected.key()).first().cloned() else { continue };
                    if head.id != expected.id {
                        continue;
                    }
                    if !head.sent {
                        let mut h = head.clone();
                        h.sent = true;
                        tx.write(Write::PutOp(h.clone()));
                        batch.push(h);
                    } else {
                        batch.push(head);
                    }
                }
                Ok(batch)
            })
            .await
    }

    /// Applies the server's answers to the batch in one transaction. Returns whether the flush
    /// should stop here (an op waits for a retry), and the batch's lanes as they are now.
    async fn apply_response(
        &self,
        batch: &[Operation],
        response: std::result::Result<PushResponse, Failure>,
        t0: u64,
        t1: u64,
        report: &mut FlushReport,
    ) -> Result<(bool, VecMap<EntityKey, Vec<Operation>>)> {
        let keys: Vec<EntityKey> = batch.iter().map(Operation::key).collect();
        {
            let mut st = self.state.borrow_mut();
            st.metrics.ops_sent += batch.len() as u64;
            report.sent += batch.len();
            match &response {
                Ok(r) => {
                    st.breaker.on_success();
                    st.rtt.record((t1 - t0) as f64);
                    st.metrics.record_latency((t1 - t0) as f64);
                    if let Some(server) = r.server_time_ms {
                        st.skew_ms = server as i64 - ((t0 + t1) / 2) as i64;
                    }
                }
                Err(f) if f.error == SyncError::Offline => {}
                Err(_) => st.breaker.on_failure(t1),
            }
        }
        let now = t1;
        let fetched = match &response {
            Ok(r) => self.fetch_mismatched(batch, r).await,
            Err(_) => Vec::new(),
        };
        let outcome = self
            .store
            .transact(&keys, |tx| {
                let mut out = Applied::default();
                let results: VecMap<&str, &Outcome> = match &response {
                    Ok(r) => r.results.iter().map(|r| (r.op_id.as_str(), &r.outcome)).collect(),
                    Err(_) => VecMap::default(),
                };
                for op in batch {
                    // Only act on the op if it is still queued (another flusher may have finished it).
                    if !tx.lane(&op.key()).iter().any(|o| o.id == op.id) {
                        continue;
                    }
                    match (&response, results.get(op.id.as_str())) {
                        (Err(f), _) => self.on_failure(tx, op, f, now, &mut out),
                        (Ok(_), None) => {
                            let f = Failure::new(SyncError::Protocol(format!(
                                "the server's response has no result for op {}",
                                op.id
                            )));
                            self.on_failure(tx, op, &f, now, &mut out)
                        }
                        (Ok(_), Some(Outcome::Accepted { version, data, .. })) => {
                            match fetched.iter().find(|(id, _)| *id == op.id).map(|(_, r)| r) {
                                None => self.on_accepted(tx, op, *version, data.clone(), None, now, &mut out)?,
                                Some(Ok(server)) => {
                                    self.on_accepted(tx, op, *version, None, Some(server), now, &mut out)?
                                }
                                // Applied, but what the server holds is unknown: the op stays (same id, so
                                // the server's ledger answers its retry) until the record can be fetched.
                                Some(Err(f)) => self.on_failure(tx, op, f, now, &mut out),
                            }
                        }
                        (
                            Ok(_),
                            Some(Outcome::Conflict { server_version, server_data, deleted, server_modified_ms }),
                        ) => {
                            let data = if *deleted { None } else { server_data.clone() };
                            self.on_conflict(tx, op, *server_version, data, *server_modified_ms, now, None, &mut out)?
                        }
                        (Ok(_), Some(Outcome::Failed(f))) => self.on_failure(tx, op, f, now, &mut out),
                    }
                }
                out.lanes = std::mem::take(&mut tx.lanes);
                Ok(out)
            })
            .await?;

        {
            let mut st = self.state.borrow_mut();
            report.accepted += outcome.accepted;
            report.conflicts += outcome.conflicts;
            report.retried += outcome.retried;
            report.dead_lettered += outcome.dead;
            st.metrics.ops_failed += (outcome.retried + outcome.dead) as u64;
            st.metrics.dead_lettered += outcome.dead as u64;
            if outcome.accepted > 0 {
                st.metrics.last_successful_sync = Some(now);
            }
            for a in &outcome.attempts_accepted {
                st.metrics.record_accepted(*a);
            }
            if let Err(f) = &response {
                let e = ErrorEntry {
                    at: now,
                    code: f.error.code().into(),
                    message: f.error.to_string(),
                    status: f.error.status(),
                };
                st.metrics.record_error(e);
            }
            for e in &outcome.errors {
                st.metrics.record_error(e.clone());
            }
        }
        self.remember(outcome.audit);
        let mut st = self.state.borrow_mut();
        for e in &outcome.events {
            if let Event::Stalled { retry_at: Some(t), .. } = e {
                st.settle_due = Some(st.settle_due.map_or(*t, |d| d.min(*t)));
            }
        }
        st.events.extend(outcome.events);
        drop(st);
        // Stop the flush only when something waits for a retry (sending on would spin); a dead
        // letter removed its op, so the next pass makes progress.
        Ok((outcome.retried > 0 || (response.is_err() && outcome.dead == 0), outcome.lanes))
    }

    /// `fetched`: the server echoed a checksum that did not match, and this is its record as
    /// fetched afterwards (`None` inside: it holds none). It is taken instead of the echo.
    #[allow(clippy::too_many_arguments)]
    fn on_accepted(
        &self,
        tx: &mut Tx,
        op: &Operation,
        version: Option<u64>,
        data: Option<Value>,
        fetched: Option<&Option<ServerRecord>>,
        now: u64,
        out: &mut Applied,
    ) -> Result<()> {
        let key = op.key();
        tx.write(Write::DeleteOp(op.id.clone()));
        out.accepted += 1;
        out.attempts_accepted.push(op.attempts);
        let rest: Vec<Operation> = tx.lane(&key).to_vec();
        let (version, server_state) = match fetched {
            None => (version, if op.kind == OpKind::Delete { None } else { data.or_else(|| op.payload.clone()) }),
            Some(r) => (r.as_ref().and_then(|r| r.version).or(version), r.as_ref().and_then(|r| r.data.clone())),
        };
        let Some(mut e) = tx.entity(&key).cloned() else {
            if server_state.is_some() && rest.is_empty() {
                // The record was deleted here while this write's answer was lost (it waited in the
                // dead letters): the server now holds a record we deleted. Delete it there too.
                let tombstone = Entity {
                    collection: key.collection.clone(),
                    id: key.id.clone(),
                    data: None,
                    base: server_state,
                    version,
                    last_modified: self.clock.now_ms(),
                    sync_status: SyncStatus::Pending,
                    checksum: None,
                };
                self.requeue(tx, &key, tombstone, None, true, op.priority, self.clock.now_ms(), out);
            }
            return Ok(());
        };
        if let (Some(server), Some(next)) = (fetched, rest.first().filter(|n| !n.sent)) {
            // Later writes were made on top of what we sent, and the server holds something else:
            // rebase them onto its record as a pull does (a 3-way merge whose base is what we sent,
            // which the server acknowledged).
            e.base = op.payload.clone();
            e.version = version.or(e.version);
            tx.write(Write::PutEntity(e));
            let (next, modified) = (next.clone(), server.as_ref().and_then(|r| r.modified_ms));
            let reason = Some(ConflictReason::Integrity);
            return self.on_conflict(tx, &next, version, server_state, modified, now, reason, out);
        }
        e.base = server_state.clone();
        e.version = version.or(e.version);
        let gone = match fetched {
            Some(_) => server_state.is_none(),
            None => op.kind == OpKind::Delete && e.data.is_none(),
        };
        if rest.is_empty() && gone {
            tx.write(Write::DeleteEntity(key.clone()));
            out.events.push(change_event(&key, None));
            return Ok(());
        }
        if let Some(next) = rest.first() {
            // The next write in the lane was made on top of this one: it now expects the new version.
            let mut next = next.clone();
            next.base_version = e.version;
            tx.write(Write::PutOp(next));
            e.sync_status = SyncStatus::Pending;
        } else {
            // Nothing newer is pending: the server's state (it may have added fields) is ours.
            if server_state.is_some() {
                e.data = server_state;
                e.checksum = e.data.as_ref().map(checksum);
            }
            e.sync_status = SyncStatus::Synced;
        }
        out.events.push(change_event(&key, Some(&e)));
        tx.write(Write::PutEntity(e));
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_conflict(
        &self,
        tx: &mut Tx,
        op: &Operation,
        server_version: Option<u64>,
        server: Option<Value>,
        server_modified_ms: Option<u64>,
        now: u64,
        reason: Option<ConflictReason>,
        out: &mut Applied,
    ) -> Result<()> {
        let key = op.key();
        let entity = tx.entity(&key).cloned();
        // The rejected op and any later ones in the lane are folded into `local` already.
        let lane: Vec<Operation> = tx.lane(&key).to_vec();
        // Our side must be what we wrote, never a stored copy that fails its checksum: the newest
        // pending write holds its own copy (under its own checksum); with no good copy at all, the
        // server's state is taken as authoritative and the loss reported.
        let (local, corrupt) = match entity.as_ref() {
            Some(e) if !intact(e) => newest_copy(&lane).map_or((None, true), |copy| (copy, false)),
            e => (e.and_then(|e| e.data.clone()), false),
        };
        let base = entity.as_ref().and_then(|e| e.base.clone());
        let local_modified = entity.as_ref().map_or(now, |e| e.last_modified);
        for o in &lane {
            tx.write(Write::DeleteOp(o.id.clone()));
        }
        let priority = lane.iter().map(|o| o.priority).min().unwrap_or(op.priority);
        let mut e = entity.unwrap_or_else(|| Entity {
            collection: key.collection.clone(),
            id: key.id.clone(),
            data: None,
            base: None,
            version: None,
            last_modified: now,
            sync_status: SyncStatus::Pending,
            checksum: None,
        });
        e.base = server.clone();
        e.version = server_version.or(e.version);
        if server.is_some() && server == base && !corrupt {
            // The server still holds what we last saw of it (the record read before a write whose
            // version was unknown): no conflict, our state goes out again on the server's version.
            self.requeue(tx, &key, e, local, true, priority, now, out);
            return Ok(());
        }
        out.conflicts += 1;
        let spec = &self.config.collections.get(&op.collection).map(|c| c.merge.clone()).unwrap_or_default();
        let skew = self.state.borrow().skew_ms;
        // Compare times on one clock: two device stamps (the records' own `lastModified`, or our
        // tombstone's write time) as they are; ours against the server's clock skew-corrected.
        let local_raw = record_time(local.as_ref()).unwrap_or(local_modified);
        let (local_ms, server_ms) = match record_time(server.as_ref()) {
            Some(server_ms) => (local_raw, server_ms),
            None => ((local_raw as i64 + skew).max(0) as u64, server_modified_ms.unwrap_or(0)),
        };
        let stamps = Stamps { local_ms, server_ms };
        let reason = match reason {
            _ if corrupt => ConflictReason::Integrity,
            Some(r) => r,
            None if server.is_none() => ConflictReason::Deleted,
            None => ConflictReason::Version,
        };
        let custom = match corrupt {
            true => None,
            false => {
                self.resolvers.borrow().get(&op.collection).map(|f| f(base.as_ref(), local.as_ref(), server.as_ref()))
            }
        };
        let resolution = match custom {
            None if corrupt => {
                let err = SyncError::Integrity(format!(
                    "{}/{} does not match its checksum and no pending write holds a good copy: the server's \
                     state replaces it",
                    key.collection, key.id
                ));
                out.errors.push(ErrorEntry {
                    at: now,
                    code: err.code().into(),
                    message: err.to_string(),
                    status: None,
                });
                out.events.push(Event::Error { code: err.code().into(), message: err.to_string(), status: None });
                Resolution::Merged(server.clone())
            }
            None => merge(spec, base.as_ref(), local.as_ref(), server.as_ref(), &stamps),
            Some(Ok(Some(v))) => Resolution::Merged(Some(v)),
            Some(Ok(None)) => Resolution::Manual,
            Some(Err(message)) => {
                // A resolver that fails must not lose either side: the conflict waits for the app.
                out.errors.push(ErrorEntry {
                    at: now,
                    code: "CONFLICT".into(),
                    message: format!("resolver failed: {message}"),
                    status: None,
                });
                out.events.push(Event::Error {
                    code: "CONFLICT".into(),
                    message: format!("the merge function for '{}' failed: {message}", op.collection),
                    status: None,
                });
                Resolution::Manual
            }
        };
        match resolution {
            Resolution::Manual => {
                let conflict = Conflict {
                    id: format!("{}-{}", op.id, now),
                    collection: key.collection.clone(),
                    entity_id: key.id.clone(),
                    local,
                    server,
                    base,
                    server_version,
                    reason,
                    detected_at: now,
                };
                e.sync_status = SyncStatus::Conflict;
                out.events.push(Event::Conflict {
                    conflict_id: conflict.id.clone(),
                    collection: key.collection.clone(),
                    id: key.id.clone(),
                });
                out.events.push(change_event(&key, Some(&e)));
                tx.write(Write::PutConflict(conflict));
                tx.write(Write::PutEntity(e));
            }
            Resolution::Merged(result) => {
                out.audit.push(AuditEntry {
                    at: now,
                    collection: key.collection.clone(),
                    id: key.id.clone(),
                    how: "auto".into(),
                    reason,
                    base,
                    local,
                    server: server.clone(),
                    result: result.clone(),
                });
                self.requeue(tx, &key, e, result, server.is_some(), priority, now, out);
            }
        }
        Ok(())
    }

    /// Writes `result` as the entity's state on top of the server's (already in `e.base`), and
    /// queues what the server needs to reach it, under a fresh op id (the old id's conflict is in
    /// the server's idempotency ledger).
    #[allow(clippy::too_many_arguments)]
    fn requeue(
        &self,
        tx: &mut Tx,
        key: &EntityKey,
        mut e: Entity,
        result: Option<Value>,
        on_server: bool,
        priority: Priority,
        now: u64,
        out: &mut Applied,
    ) {
        let kind = match (&result, on_server) {
            _ if result == e.base => None,
            (None, _) => Some(OpKind::Delete),
            (Some(_), true) => Some(OpKind::Update),
            (Some(_), false) => Some(OpKind::Create),
        };
        e.data = result;
        e.checksum = e.data.as_ref().map(checksum);
        match kind {
            None if e.data.is_none() => {
                tx.write(Write::DeleteEntity(key.clone()));
                out.events.push(change_event(key, None));
                return;
            }
            None => e.sync_status = SyncStatus::Synced,
            Some(kind) => {
                e.sync_status = SyncStatus::Pending;
                let seq = tx.take_seq();
                let op = new_op(
                    uuid(&self.clock),
                    seq,
                    key,
                    kind,
                    e.data.clone(),
                    e.base.as_ref(),
                    e.version,
                    priority,
                    now,
                );
                tx.write(Write::PutOp(op));
            }
        }
        out.events.push(change_event(key, Some(&e)));
        tx.write(Write::PutEntity(e));
    }

    fn on_failure(&self, tx: &mut Tx, op: &Operation, f: &Failure, now: u64, out: &mut Applied) {
        let Some(mut o) = tx.lane(&op.key()).iter().find(|o| o.id == op.id).cloned() else { return };
        let class = match &f.error {
            SyncError::Http { status, .. } => classify_status(*status, op.kind == OpKind::Create),
            // `Integrity`: the server applied the op but its record could not be fetched to check it.
            SyncError::Network(_)
            | SyncError::Timeout
            | SyncError::Protocol(_)
            | SyncError::Offline
            | SyncError::Integrity(_) => Class::Retryable,
            _ => Class::Permanent,
        };
        let status = f.error.status();
        let code = match status {
            Some(401) | Some(403) => "AUTH".to_string(),
            _ => f.error.code().to_string(),
        };
        let message = f.error.to_string();
        out.errors.push(ErrorEntry { at: now, code: code.clone(), message: message.clone(), status });
        if f.error != SyncError::Offline {
            o.attempts += 1;
        }
        o.last_error = Some(message.clone());
        o.last_status = status;
        // A conflict status without the server's state, or a 401 the transport could not cure
        // with a fresh token: retry later rather than lose the write.
        let retryable = matches!(class, Class::Retryable | Class::Reauth | Class::Conflict);
        let exhausted = o.attempts >= self.config.retry.max_attempts
            || now.saturating_sub(o.created_at) >= self.config.retry.max_age_ms;
        if retryable && !exhausted {
            let (r1, r2) = (self.clock.random_u64(), self.clock.random_u64());
            o.next_attempt_at =
                now + self.config.retry.next_delay(o.attempts.saturating_sub(1), f.retry_after_ms, r1, r2);
            tx.write(Write::PutOp(o));
            out.retried += 1;
            return;
        }
        let key = o.key();
        tx.write(Write::DeleteOp(o.id.clone()));
        if o.kind == OpKind::Create {
            // The writes queued behind a create were made as updates of the record it would
            // create. It will not: an update without a base version would overwrite whatever the
            // server holds blindly, so the next write creates the record instead (a conflict
            // then merges it with another device's record of the same id).
            if let Some(next) =
                tx.lane(&key).first().filter(|n| !n.sent && n.kind == OpKind::Update && n.base_version.is_none())
            {
                let next = Operation { kind: OpKind::Create, ..next.clone() };
                tx.write(Write::PutOp(next));
            }
        }
        out.dead += 1;
        out.events.push(Event::DeadLetter {
            op_id: o.id.clone(),
            collection: key.collection.clone(),
            id: key.id.clone(),
            code: code.clone(),
            message: message.clone(),
        });
        if retryable {
            out.events.push(Event::Stalled {
                op_id: o.id.clone(),
                collection: key.collection.clone(),
                id: key.id.clone(),
                message: format!(
                    "{}/{}: writes wait: the server may have applied {} ({message})",
                    key.collection, key.id, o.id
                ),
                retry_at: self.settle_at(now, o.created_at),
            });
        }
        tx.write(Write::PutDeadLetter(DeadLetter {
            op: o,
            error: message,
            code,
            status,
            maybe_applied: retryable,
            at: now,
        }));
        if let Some(mut e) = tx.entity(&key).cloned() {
            e.sync_status = SyncStatus::Error;
            out.events.push(change_event(&key, Some(&e)));
            tx.write(Write::PutEntity(e));
        }
    }

    /// Reports an error that has no caller to reject (background work): an event and a metric.
    pub fn report(&self, e: &SyncError) {
        let mut st = self.state.borrow_mut();
        let entry =
            ErrorEntry { at: self.clock.now_ms(), code: e.code().into(), message: e.to_string(), status: e.status() };
        st.metrics.record_error(entry);
        st.events.push(Event::Error { code: e.code().into(), message: e.to_string(), status: e.status() });
    }

    /// Adds resolutions to the audit trail in memory, each with a `resolved` event; `save_audit`
    /// stores them.
    pub(super) fn remember(&self, entries: Vec<AuditEntry>) {
        let size = self.config.audit_log_size.max(1);
        let mut st = self.state.borrow_mut();
        st.metrics.conflicts_resolved += entries.len() as u64;
        for entry in entries {
            if st.audit.len() == size {
                st.audit.pop_front();
            }
            st.audit.push_back(entry.clone());
            st.unsaved_audit.push(entry.clone());
            st.events.push(Event::Resolved { entry });
        }
    }

    /// Stores the resolutions `remember` took since the last call (bounded by `audit_log_size`).
    /// A failure loses no write: it is reported (an `error` event), and they stay in memory.
    pub(super) async fn save_audit(&self) {
        let entries = std::mem::take(&mut self.state.borrow_mut().unsaved_audit);
        if entries.is_empty() {
            return;
        }
        let values = entries.iter().filter_map(|e| super::json::to_value(e).ok()).collect();
        if let Err(e) = self.store.append_meta(AUDIT_META, values, self.config.audit_log_size.max(1)).await {
            self.report(&e);
        }
    }

    /// Records the resolutions and events of work done outside a flush (a pull's rebases).
    pub(super) fn absorb(&self, out: Applied) {
        self.remember(out.audit);
        self.state.borrow_mut().events.extend(out.events);
    }

    // ---- network ----

    /// Tells the engine what the platform knows about the network.
    pub fn set_network(&self, net: NetInfo) {
        self.state.borrow_mut().net = net;
    }

    pub fn network(&self) -> NetDecision {
        let st = self.state.borrow();
        self.config.net_policy.decide(&st.net, st.rtt.average())
    }

    // ---- status, metrics, dead letters, conflicts ----

    pub async fn status(&self) -> Result<Status> {
        self.check_open()?;
        let QueueSummary { ops, conflicts, dead_letters } = self.store.queue_summary().await?;
        let mut paused: VecSet<EntityKey> = conflicts.iter().map(Conflict::key).collect();
        let mut blocked: Vec<Blocked> = conflicts
            .iter()
            .map(|c| Blocked {
                collection: c.collection.clone(),
                id: c.entity_id.clone(),
                reason: "conflict",
                conflict_id: Some(c.id.clone()),
                op_id: None,
                message: format!("a {} conflict waits for resolveConflict()", c.reason.as_str()),
                since: c.detected_at,
                retry_at: None,
            })
            .collect();
        for d in dead_letters.iter().filter(|d| d.maybe_applied) {
            paused.insert(d.op.key());
            blocked.push(Blocked {
                collection: d.op.collection.clone(),
                id: d.op.entity_id.clone(),
                reason: "maybeApplied",
                conflict_id: None,
                op_id: Some(d.op.id.clone()),
                message: d.error.clone(),
                since: d.at,
                retry_at: self.settle_at(d.at, d.op.created_at),
            });
        }
        let network = self.network();
        let st = self.state.borrow();
        Ok(Status {
            pending: ops.len(),
            conflicts: conflicts.len(),
            dead_letters: dead_letters.len(),
            blocked,
            online: st.net.online,
            flushing: st.flushing,
            last_sync_at: st.metrics.last_successful_sync,
            last_error: st.metrics.sync_errors.back().cloned(),
            next_attempt_at: next_due(&ops, &paused),
            breaker: st.breaker.state(),
            network,
        })
    }

    pub async fn metrics(&self) -> Result<MetricsSnapshot> {
        self.check_open()?;
        let q = self.store.queue_summary().await?;
        Ok(self.state.borrow().metrics.snapshot(q.ops.len(), q.conflicts.len(), q.dead_letters.len()))
    }

    /// Pending ops in send order (priority, then sequence).
    pub async fn queue(&self) -> Result<Vec<Operation>> {
        self.check_open()?;
        let (mut ops, _) = self.store.load_queue().await?;
        ops.sort_by_key(|o| (o.priority, o.seq));
        Ok(ops)
    }

    pub fn audit_log(&self) -> Vec<AuditEntry> {
        self.state.borrow().audit.iter().cloned().collect()
    }

    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        self.check_open()?;
        self.store.dead_letters().await
    }

    /// When a write the server may have applied (dead-lettered at `at`, made at `created_at`) is
    /// resent by the flush: one backoff cap after it stopped, while it is younger than `maxAgeMs`.
    fn settle_at(&self, at: u64, created_at: u64) -> Option<u64> {
        let r = &self.config.retry;
        let when = at.saturating_add(r.cap_ms.max(r.base_ms));
        (when.saturating_sub(created_at) < r.max_age_ms).then_some(when)
    }

    /// Resends the writes the server may have applied whose time has come (`settle_at`): the op
    /// goes back to the head of its lane under the same id, so the server's idempotency answers it
    /// (REST writes read the record first when their version is unknown). Its age is kept: after
    /// `maxAgeMs` only the app can settle it.
    ///
    /// The dead letters are read only when one may be due (`State::settle_due`): a flush costs no
    /// extra store transaction otherwise.
    async fn settle(&self, now: u64) -> Result<()> {
        if self.network().paused || self.state.borrow().settle_due.is_none_or(|t| t > now) {
            return Ok(());
        }
        let mut next = None;
        for d in self.store.dead_letters().await? {
            match self.settle_at(d.at, d.op.created_at).filter(|_| d.maybe_applied) {
                Some(t) if t <= now => self.put_back(d, false).await?,
                Some(t) => next = Some(next.map_or(t, |n: u64| n.min(t))),
                None => {}
            }
        }
        self.state.borrow_mut().settle_due = next;
        Ok(())
    }

    /// Puts a dead-lettered op back in its lane with a fresh attempt count. If the server may have
    /// applied it, it keeps its id (the server's ledger deduplicates it) and its place at the head
    /// of the lane; if the server refused it, it gets a new id (so the ledger does not replay the
    /// refusal) and goes after the record's later writes.
    pub async fn retry_dead_letter(&self, op_id: &str) -> Result<()> {
        let dl = self.find_dead_letter(op_id).await?;
        self.put_back(dl, true).await
    }

    /// `retry_dead_letter`; `renew`: its age starts again (the app asked), else it is kept.
    async fn put_back(&self, dl: DeadLetter, renew: bool) -> Result<()> {
        let key = dl.op.key();
        let now = self.clock.now_ms();
        let fresh_id = uuid(&self.clock);
        let entity = self
            .store
            .transact(std::slice::from_ref(&key), |tx| {
                let mut op = dl.op.clone();
                if !dl.maybe_applied {
                    op.id = fresh_id;
                    op.sent = false;
                }
                // An op the server may have applied goes back to the head of its lane (its lane
                // was paused behind it): later writes were made on top of it. A refused op is
                // re-made at the end, after them.
                if !dl.maybe_applied {
                    op.seq = tx.take_seq();
                }
                op.attempts = 0;
                op.next_attempt_at = now;
                if renew {
                    op.created_at = now;
                }
                op.last_error = None;
                op.last_status = None;
                // A fresh op is made against the record's current version. An op that keeps its
                // id keeps every field the server may have seen under that id: a retry changes
                // nothing but the attempt bookkeeping (a stale base version is a conflict, and
                // the merge takes care of it).
                if !op.sent && tx.lane(&key).is_empty() {
                    let e = tx.entity(&key);
                    op.base_version = e.and_then(|e| e.version);
                    // An update queued behind a create that never reached the server: nothing
                    // exists there to update.
                    if op.kind == OpKind::Update && e.is_none_or(|e| e.base.is_none()) {
                        op.kind = OpKind::Create;
                    }
                }
                tx.write(Write::DeleteDeadLetter(dl.op.id.clone()));
                tx.write(Write::PutOp(op));
                let e = tx.entity(&key).cloned().map(|mut e| {
                    e.sync_status = SyncStatus::Pending;
                    e
                });
                if let Some(e) = &e {
                    tx.write(Write::PutEntity(e.clone()));
                }
                Ok(e)
            })
            .await?;
        self.queue_changed();
        self.emit(change_event(&key, entity.as_ref()));
        Ok(())
    }

    /// Drops a dead-lettered write. A record with nothing else pending goes back to what the server
    /// last acknowledged (gone, if the server never had it), with a change event.
    pub async fn discard_dead_letter(&self, op_id: &str) -> Result<()> {
        self.check_open()?;
        let dead = self.store.dead_letters().await?;
        let dl = dead.iter().find(|d| d.op.id == op_id).ok_or_else(|| not_a_dead_letter(op_id))?;
        let key = dl.op.key();
        let held = self.held_elsewhere(dead.iter().filter(|d| d.op.id != op_id)).await?;
        let events = self
            .store
            .transact(std::slice::from_ref(&key), |tx| {
                tx.write(Write::DeleteDeadLetter(dl.op.id.clone()));
                Ok(revert_unsent(tx, std::slice::from_ref(&key), &held))
            })
            .await?;
        self.absorb(Applied { events, ..Applied::default() });
        Ok(())
    }

    /// Records another write of theirs still speaks for: one with a dead letter of `dead` or a
    /// conflict waiting for the app. Discarding a write must not undo those.
    async fn held_elsewhere(&self, dead: impl Iterator<Item = &DeadLetter>) -> Result<VecSet<EntityKey>> {
        let mut held: VecSet<EntityKey> = dead.map(|d| d.op.key()).collect();
        held.extend(self.store.conflicts().await?.iter().map(Conflict::key));
        Ok(held)
    }

    async fn find_dead_letter(&self, op_id: &str) -> Result<DeadLetter> {
        self.check_open()?;
        self.store.dead_letters().await?.into_iter().find(|d| d.op.id == op_id).ok_or_else(|| not_a_dead_letter(op_id))
    }

    pub async fn conflicts(&self) -> Result<Vec<Conflict>> {
        self.check_open()?;
        self.store.conflicts().await
    }

    /// Resolves a queued conflict with the app's choice and resumes the record's lane.
    pub async fn resolve_conflict(&self, conflict_id: &str, choice: Choice) -> Result<Option<Entity>> {
        self.check_open()?;
        let c = self
            .store
            .conflicts()
            .await?
            .into_iter()
            .find(|c| c.id == conflict_id)
            .ok_or_else(|| SyncError::NotFound(format!("conflict {conflict_id}")))?;
        let result = match choice {
            Choice::Local => c.local.clone(),
            Choice::Server => c.server.clone(),
            Choice::Merged(v) if v.is_object() => Some(v),
            Choice::Merged(_) => return Err(SyncError::InvalidInput("a merged record must be a plain object".into())),
        };
        let key = c.key();
        let now = self.clock.now_ms();
        let (entity, events) = self
            .store
            .transact(std::slice::from_ref(&key), |tx| {
                let mut out = Applied::default();
                tx.write(Write::DeleteConflict(c.id.clone()));
                // Writes made while the conflict waited are superseded by the app's decision.
                let lane: Vec<Operation> = tx.lane(&key).to_vec();
                for o in &lane {
                    tx.write(Write::DeleteOp(o.id.clone()));
                }
                let e = tx.entity(&key).cloned().unwrap_or(Entity {
                    collection: key.collection.clone(),
                    id: key.id.clone(),
                    data: None,
                    base: c.server.clone(),
                    version: c.server_version,
                    last_modified: now,
                    sync_status: SyncStatus::Pending,
                    checksum: None,
                });
                let on_server = e.base.is_some();
                let priority = lane.iter().map(|o| o.priority).min().unwrap_or(Priority::High);
                self.requeue(
                    tx,
                    &key,
                    Entity { last_modified: now, ..e },
                    result.clone(),
                    on_server,
                    priority,
                    now,
                    &mut out,
                );
                Ok((tx.entity(&key).cloned(), out.events))
            })
            .await?;
        self.queue_changed();
        let entry = AuditEntry {
            at: now,
            collection: c.collection,
            id: c.entity_id,
            how: "manual".into(),
            reason: c.reason,
            base: c.base,
            local: c.local,
            server: c.server,
            result,
        };
        self.state.borrow_mut().events.extend(events);
        self.remember(vec![entry]);
        self.save_audit().await;
        Ok(entity)
    }

    /// Discards every pending op; their records go back to what the server last acknowledged (see
    /// `revert_unsent`). For the debug tools.
    pub async fn clear_queue(&self) -> Result<usize> {
        self.check_open()?;
        let (ops, _) = self.store.load_queue().await?;
        let keys: VecSet<EntityKey> = ops.iter().map(Operation::key).collect();
        let keys: Vec<EntityKey> = keys.into_iter().collect();
        let held = self.held_elsewhere(self.store.dead_letters().await?.iter()).await?;
        let (n, events) = self
            .store
            .transact(&keys, |tx| {
                let ops: Vec<Operation> = tx.lanes.values().flatten().cloned().collect();
                for o in &ops {
                    tx.write(Write::DeleteOp(o.id.clone()));
                }
                Ok((ops.len(), revert_unsent(tx, &keys, &held)))
            })
            .await?;
        self.absorb(Applied { events, ..Applied::default() });
        Ok(n)
    }
}

#[derive(Default)]
pub(super) struct Applied {
    pub(super) accepted: usize,
    pub(super) conflicts: usize,
    pub(super) retried: usize,
    pub(super) dead: usize,
    pub(super) attempts_accepted: Vec<u32>,
    pub(super) errors: Vec<ErrorEntry>,
    pub(super) audit: Vec<AuditEntry>,
    pub(super) events: Vec<Event>,
    /// The touched lanes as the transaction left them (the flush's queue snapshot takes them).
    pub(super) lanes: VecMap<EntityKey, Vec<Operation>>,
}

fn not_a_dead_letter(op_id: &str) -> SyncError {
    SyncError::NotFound(format!("dead letter {op_id}"))
}

/// Records of `keys` left with no pending write, no other dead letter and no conflict waiting for
/// the app (`held`) after their writes were discarded: each goes back to what the server last acknowledged (its `base`), or is
/// removed if the server never had it. Returns the change events.
fn revert_unsent(tx: &mut Tx, keys: &[EntityKey], held: &VecSet<EntityKey>) -> Vec<Event> {
    let mut events = Vec::new();
    for key in keys {
        let Some(mut e) = tx.entity(key).cloned() else { continue };
        let settled = matches!(e.sync_status, SyncStatus::Synced | SyncStatus::Conflict);
        if settled || !tx.lane(key).is_empty() || held.contains(key) {
            continue;
        }
        match e.base.clone() {
            Some(base) => {
                e.checksum = Some(checksum(&base));
                e.data = Some(base);
                e.sync_status = SyncStatus::Synced;
                events.push(change_event(key, Some(&e)));
                tx.write(Write::PutEntity(e));
            }
            None => {
                events.push(change_event(key, None));
                tx.write(Write::DeleteEntity(key.clone()));
            }
        }
    }
    events
}

pub(super) fn change_event(key: &EntityKey, e: Option<&Entity>) -> Event {
    Event::Change {
        collection: key.collection.clone(),
        id: key.id.clone(),
        sync_status: e.map(|e| e.sync_status),
        deleted: e.is_none_or(Entity::is_deleted),
    }
}

/// The newest pending write's own copy of the record (`Some(None)`: a delete), if it matches the
/// op's checksum.
pub(super) fn newest_copy(lane: &[Operation]) -> Option<Option<Value>> {
    let last = lane.last()?;
    match &last.payload {
        _ if last.kind == OpKind::Delete => Some(None),
        Some(p) if checksum(p) == last.checksum => Some(Some(p.clone())),
        _ => None,
    }
}

/// Whether a stored record's data matches its checksum (a deleted record has nothing to check).
pub fn intact(e: &Entity) -> bool {
    e.data.as_ref().is_none_or(|d| e.checksum.as_deref() == Some(checksum(d).as_str()))
}

/// The record's own `lastModified` field, when it has one (the reference design's records do).
fn record_time(v: Option<&Value>) -> Option<u64> {
    parse_time_ms(v?.get("lastModified")?)
}

/// A random (version 4) UUID.
pub fn uuid(clock: &impl Clock) -> String {
    let (a, b) = (clock.random_u64(), clock.random_u64());
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x4000;
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}
