//! The sync state machine over the `Store`, `Transport` and `Clock` traits: its types and state
//! here; local writes (`write`), the flush (`flush`), conflicts (`conflict`), dead letters
//! (`dead`), and pulls and repairs (`pull`) in their modules.

mod conflict;
mod dead;
mod flush;
pub mod pull;
mod write;

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
use super::traits::{Clock, Counts, Delta, Failure, Outcome, PushResponse, ServerRecord, Store, Transport, Tx, Write};
use super::value::Value;

/// A collection the app syncs.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectionConfig {
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

impl Event {
    pub(super) fn error(e: &SyncError) -> Self {
        Event::Error { code: e.code().into(), message: e.to_string(), status: e.status() }
    }
}

impl AuditEntry {
    /// The resolution of `c` (`how`: `auto` or `manual`) to `result`.
    pub(super) fn of(c: Conflict, how: &str, at: u64, result: Option<Value>) -> Self {
        AuditEntry {
            at,
            collection: c.collection,
            id: c.entity_id,
            how: how.into(),
            reason: c.reason,
            base: c.base,
            local: c.local,
            server: c.server,
            result,
        }
    }
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
    /// When the next pending write is due, at the earliest: as this engine's last flush read the
    /// queue, brought forward by every write since (a write is due at once). `None` when nothing
    /// is pending, or every pending write waits for the app (`blocked`).
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
    /// The pending ops, dead letters and conflicts in the store, kept from each committed
    /// transaction's `Tx::delta`; `None`: not counted yet, or to be counted again (`Engine::counts`).
    counts: Option<Counts>,
    /// Moves whenever `counts` is dropped: a count begun before it is not kept.
    counts_epoch: u64,
    /// When the next pending op may be due, at the earliest: set from the whole queue by each
    /// flush, brought forward by every op written since (here or, for all we know, in another tab).
    next_due: Option<u64>,
    /// Moves with every delta: a `next_due` read from the queue while one landed is only a bound.
    delta_epoch: u64,
    last_report: FlushReport,
    events: Vec<Event>,
    audit: VecDeque<AuditEntry>,
    /// Resolutions not in the store yet (`save_audit`).
    unsaved_audit: Vec<AuditEntry>,
    /// The earliest time a write the server may have applied is to be resent (`settle`); `Some(0)`
    /// after opening: whatever an earlier session left is looked at on the first flush.
    settle_due: Option<u64>,
    closed: bool,
    /// Records whose stored copy failed its checksum and could not be repaired yet: the server's
    /// copy is needed (a read fetches nothing), the server was unreachable, pending writes hold no
    /// good copy and must be answered first, or a conflict waits for the app. Each pull tries again.
    pub(super) corrupt: VecSet<EntityKey>,
    /// A read left a record that only the server's copy can restore (`take_repair_request`).
    pub(super) repair_requested: bool,
}

/// The meta record holding this device's id.
pub const DEVICE_META: &str = "deviceId";

/// The meta record holding the audit trail: the last `audit_log_size` resolutions, kept across
/// reloads (the reference design's conflict history).
pub const AUDIT_META: &str = "auditLog";

/// An app's own merge for a collection: `(base, local, server)` to the merged record (`Ok(None)`:
/// leave the conflict to the app's queue; `Err`: the resolver failed, and so does the same).
pub type Resolver =
    std::rc::Rc<dyn Fn(Option<&Value>, Option<&Value>, Option<&Value>) -> std::result::Result<Option<Value>, String>>;

pub struct Engine<S, T, C> {
    pub(super) store: S,
    pub(super) transport: T,
    pub(super) clock: C,
    pub(super) config: EngineConfig,
    device_id: String,
    pub(super) state: RefCell<State>,
    resolvers: RefCell<VecMap<String, Resolver>>,
    /// Called when a long call (a pull, a flush) has stored a part and queued its events.
    on_events: RefCell<Option<Box<dyn Fn()>>>,
}

/// At most this many records per store transaction when a pull or a flush stores a page or a
/// batch: the parts are stored one after the other, each once the one before has committed, so the
/// main thread is free in between, and subscribers hear of each part as soon as it is stored.
pub(super) const TX_CHUNK: usize = 250;

/// Queued events are handed over in the middle of a long call once there are this many.
const HAND_OVER_AT: usize = 500;

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
            // Counted at the first `status()`, not here: an open with 100,000 pending writes would
            // otherwise wait for IndexedDB to count them before the app's first read.
            counts: None,
            counts_epoch: 0,
            // Whatever an earlier session left may be due already; the first flush says when.
            next_due: Some(clock.now_ms()),
            delta_epoch: 0,
            last_report: FlushReport::default(),
            events: Vec::new(),
            audit,
            unsaved_audit: Vec::new(),
            settle_due: Some(0),
            closed: false,
            corrupt: VecSet::new(),
            repair_requested: false,
        };
        Ok(Engine {
            store,
            transport,
            clock,
            config,
            device_id,
            state: RefCell::new(state),
            resolvers: RefCell::default(),
            on_events: RefCell::default(),
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

    /// Has `f` called when a long call has stored a part of its work and queued its events (they
    /// are then taken at once rather than when the whole call returns).
    pub fn on_events(&self, f: Box<dyn Fn()>) {
        *self.on_events.borrow_mut() = Some(f);
    }

    /// Tells the `on_events` hook that a part is stored, once `HAND_OVER_AT` events are queued:
    /// fewer wait for the end of the call, so a flush of small batches still reaches subscribers
    /// as one burst (one render), while a pull of 10,000 records never delivers them in one task.
    pub(super) fn hand_over(&self) {
        if self.state.borrow().events.len() < HAND_OVER_AT {
            return;
        }
        if let Some(f) = &*self.on_events.borrow() {
            f();
        }
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

    /// Another tab (or a service worker) changed the store: a running flush reads the queue again
    /// (see `State::queue_epoch`), and the counts are counted again at the next `status()`. The JS
    /// layer calls it for every message on the tabs' channel.
    ///
    /// Counted, not adjusted: the other tab's events say which records changed, not how many ops,
    /// dead letters or conflicts it added or removed, and a tab that closes between its commit and
    /// its message says nothing at all. The three IndexedDB `count()`s take about 10 ms at 10,000
    /// pending ops in Chromium (a queue read took 300), once per burst of remote events and only
    /// when something asks (bench/RESULTS.md, section 11).
    pub fn queue_changed(&self) {
        let mut st = self.state.borrow_mut();
        st.queue_epoch += 1;
        st.counts = None;
        st.counts_epoch += 1;
        // Its writes may be due now.
        let now = self.clock.now_ms();
        st.next_due = Some(st.next_due.map_or(now, |t| t.min(now)));
    }

    /// This engine wrote to the queue outside a flush pass (see `State::queue_epoch`).
    pub(super) fn wrote_queue(&self) {
        self.state.borrow_mut().queue_epoch += 1;
    }

    /// `Store::transact`, keeping the counts in step with what the transaction wrote once it is
    /// stored. Every write of the engine goes through it.
    pub(super) async fn transact<R>(&self, keys: &[EntityKey], f: impl FnOnce(&mut Tx) -> Result<R>) -> Result<R> {
        let mut delta = Delta::default();
        let r = self
            .store
            .transact(keys, |tx| {
                let r = f(tx);
                delta = tx.delta();
                r
            })
            .await?;
        self.count(delta);
        Ok(r)
    }

    /// `Store::transact_parts`, keeping the counts in step as `transact` does.
    pub(super) async fn transact_parts(
        &self,
        keys: &[EntityKey],
        mut f: impl FnMut(&mut Tx) -> Result<bool>,
    ) -> Result<()> {
        let mut delta = Delta::default();
        self.store
            .transact_parts(keys, |tx| {
                let more = f(tx);
                delta = tx.delta();
                more
            })
            .await?;
        self.count(delta);
        Ok(())
    }

    fn count(&self, d: Delta) {
        let mut st = self.state.borrow_mut();
        st.delta_epoch += 1;
        let mut due = d.due;
        if d.unsure {
            st.counts = None;
            st.counts_epoch += 1;
            // A conflict or a dead letter that held a record's writes may be gone: they may be due.
            due = Some(due.map_or(self.clock.now_ms(), |t| t.min(self.clock.now_ms())));
        }
        if let Some(c) = &mut st.counts {
            c.pending = c.pending.saturating_add_signed(d.pending);
            c.dead_letters = c.dead_letters.saturating_add_signed(d.dead_letters);
            c.conflicts = c.conflicts.saturating_add_signed(d.conflicts);
        }
        if let Some(t) = due {
            st.next_due = Some(st.next_due.map_or(t, |n| n.min(t)));
        }
    }

    /// Pending ops, dead letters and conflicts: as kept, or counted by the store when they are not
    /// (`queue_changed`, or a transaction that deleted a dead letter or conflict).
    pub async fn counts(&self) -> Result<Counts> {
        let epochs = {
            let st = self.state.borrow();
            if let Some(c) = st.counts {
                return Ok(c);
            }
            (st.counts_epoch, st.delta_epoch)
        };
        let c = self.store.counts().await?;
        let mut st = self.state.borrow_mut();
        // Kept only if no write landed meanwhile: its delta was not applied to counts not kept, and
        // the count may have been taken before it.
        if (st.counts_epoch, st.delta_epoch) == epochs {
            st.counts = Some(c);
        }
        Ok(c)
    }

    /// The counts as kept, without asking the store (`None`: they are to be counted again).
    pub fn kept_counts(&self) -> Option<Counts> {
        self.state.borrow().counts
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

    /// Reports an error that has no caller to reject (background work): an event and a metric.
    pub fn report(&self, e: &SyncError) {
        let mut st = self.state.borrow_mut();
        st.metrics.record_error(ErrorEntry::of(self.clock.now_ms(), e));
        st.events.push(Event::error(e));
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
        self.deliver(out.events);
    }

    /// Queues events for the subscribers (delivered after the current call returns).
    pub(super) fn deliver(&self, events: Vec<Event>) {
        self.state.borrow_mut().events.extend(events);
    }

    // ---- network ----

    /// Tells the engine what the platform knows about the network.
    pub fn set_network(&self, net: NetInfo) {
        self.state.borrow_mut().net = net;
    }

    /// How soon a flush should follow a write to `collection` of priority `given` (else the
    /// collection's): a high-priority write at once, medium with the next batch, low after two.
    pub fn flush_delay(&self, collection: &str, given: Option<Priority>) -> u64 {
        let priority = given.or_else(|| self.config.collections.get(collection).map(|c| c.priority));
        let interval = self.network().interval_ms;
        match priority.unwrap_or_default() {
            Priority::High => 0,
            Priority::Medium => interval,
            Priority::Low => interval.saturating_mul(2),
        }
    }

    /// How soon the next flush should follow one that reported `report` (at least 50 ms), or
    /// `None`: nothing is pending, or the device is offline (coming online starts one).
    pub fn next_flush_in(&self, report: &FlushReport, now: u64) -> Option<u64> {
        if report.remaining == 0 || report.offline {
            return None;
        }
        let due = report.next_attempt_at.map_or(self.network().interval_ms, |t| t.saturating_sub(now));
        Some(due.max(50))
    }

    pub fn network(&self) -> NetDecision {
        let st = self.state.borrow();
        self.config.net_policy.decide(&st.net, st.rtt.average())
    }

    /// The sync status. It reads nothing of the queue: the counts are kept as transactions commit
    /// (`counts`); the conflicts and dead letters are read only when there are some (`blocked`).
    pub async fn status(&self) -> Result<Status> {
        self.check_open()?;
        let counts = self.counts().await?;
        let conflicts = match counts.conflicts {
            0 => Vec::new(),
            _ => self.store.conflicts().await?,
        };
        let dead_letters = match counts.dead_letters {
            0 => Vec::new(),
            _ => self.store.dead_letters().await?,
        };
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
            pending: counts.pending,
            conflicts: counts.conflicts,
            dead_letters: counts.dead_letters,
            blocked,
            online: st.net.online,
            flushing: st.flushing,
            last_sync_at: st.metrics.last_successful_sync,
            last_error: st.metrics.sync_errors.back().cloned(),
            next_attempt_at: st.next_due.filter(|_| counts.pending > 0),
            breaker: st.breaker.state(),
            network,
        })
    }

    pub async fn metrics(&self) -> Result<MetricsSnapshot> {
        self.check_open()?;
        let c = self.counts().await?;
        Ok(self.state.borrow().metrics.snapshot(c.pending, c.conflicts, c.dead_letters))
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
}

/// What applying answers, pulled changes or resolutions did inside one store transaction: counts,
/// errors, resolutions and events, delivered once the transaction is stored.
pub(super) struct Applied {
    /// The time the work is done at.
    pub(super) now: u64,
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

impl Applied {
    pub(super) fn at(now: u64) -> Self {
        Applied {
            now,
            accepted: 0,
            conflicts: 0,
            retried: 0,
            dead: 0,
            attempts_accepted: Vec::new(),
            errors: Vec::new(),
            audit: Vec::new(),
            events: Vec::new(),
            lanes: VecMap::new(),
        }
    }

    /// An error with no caller to reject: a metric entry and an `error` event.
    pub(super) fn error(&mut self, e: &SyncError) {
        self.errors.push(ErrorEntry::of(self.now, e));
        self.events.push(Event::error(e));
    }
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
    uuid_v4(clock.random_u64(), clock.random_u64())
}

/// A version 4 UUID made of two random words (the reference server's ids too).
pub fn uuid_v4(a: u64, b: u64) -> String {
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
