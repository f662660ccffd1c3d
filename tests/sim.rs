//! Deterministic simulation of tidesync: several clients, each with its own store and engine, a
//! simulated server with per-record versions and an idempotency ledger, a simulated clock, and a
//! network that drops, delays, reorders and duplicates requests, loses responses after the server
//! applied them, answers 5xx / 429 with Retry-After and times out. In some seeds the server echoes a
//! wrong checksum for some writes, so the engine fetches the record (a full listing, which the network
//! may drop too) and takes it as authoritative. Clients crash (their engine and any in-flight flush
//! are dropped; the store survives) at random points, also mid-flush.
//!
//! For every seed the run checks, at every step and at the end:
//! - no write a client accepted is lost (per-client records: the last write wins; shared counters:
//!   the sum of all increments, the max of all maxima, the union of all tags; shared lww records:
//!   the latest write among those nothing superseded, and no server version replaced a newer write
//!   its writer had not seen (see `SharedLog`); a manual-policy counter resolved by the app: the sum
//!   of all increments);
//! - no op is applied twice on the server, and an op id is never re-sent with other content;
//! - every op that left a device ends answered by the server or in the dead letters with a reason;
//! - a client's record at a server version holds that version's data;
//! - after the faults stop, every queue drains and every client holds the server's records.
//!
//! `cargo test --test sim` runs 1,000 seeds. `TIDESYNC_SIM_SEEDS=<n>` runs n seeds,
//! `TIDESYNC_SIM_SEED=<s>` runs seed s alone (add `TIDESYNC_SIM_TRACE=1` for a step log), and
//! `TIDESYNC_SIM_FIRST=<s>` starts the range at s. A failure prints its seed.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use tidesync::core::checksum::checksum;
use tidesync::core::engine::{Choice, CollectionConfig, Engine, EngineConfig, FlushReport};
use tidesync::core::error::SyncError;
use tidesync::core::merge::{MergeSpec, OnDeleted, Strategy};
use tidesync::core::netpolicy::NetInfo;
use tidesync::core::op::{EntityKey, OpKind, Operation, Priority, SyncStatus};
use tidesync::core::queue::next_due;
use tidesync::core::retry::RetryPolicy;
use tidesync::core::sorted::VecSet;
use tidesync::core::traits::{
    Clock, Counts, Failure, OpResult, Outcome, PullPage, PushResponse, ServerRecord, Store, Transport, Write,
};
use tidesync::core::value::Value;
use tidesync::json;
use tidesync::store::memory::{MemoryData, MemoryStore};

// ---------------------------------------------------------------------------------------------
// Randomness and a tiny executor

/// splitmix64: small, fast, and good enough to drive a simulation.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    fn upto(&mut self, max: f64) -> f64 {
        self.unit() * max
    }
}

fn poll_once<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

/// Runs a future to completion. The simulated transport and clock yield `Pending` once and are
/// ready on the next poll, so polling in a loop always finishes.
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    for _ in 0..1_000_000 {
        if let Poll::Ready(v) = poll_once(f.as_mut()) {
            return v;
        }
    }
    panic!("a future never finished");
}

/// Pending on the first poll, ready on the second: an await point where the sim may drop us.
#[derive(Default)]
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Clock

#[derive(Clone)]
struct SimClock {
    now: Rc<Cell<u64>>,
    /// This device's clock minus the true time.
    skew: u64,
    rng: Rc<RefCell<Rng>>,
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        self.now.get() + self.skew
    }
    fn sleep(&self, ms: u64) -> impl Future<Output = ()> {
        let now = self.now.clone();
        async move {
            YieldOnce::default().await;
            now.set(now.get() + ms);
        }
    }
    fn random_u64(&self) -> u64 {
        self.rng.borrow_mut().next_u64()
    }
}

// ---------------------------------------------------------------------------------------------
// Faults and statistics

#[derive(Clone, Debug, Default)]
struct Faults {
    drop_request: f64,
    drop_response: f64,
    delay: f64,
    duplicate: f64,
    http_5xx: f64,
    http_429: f64,
    op_500: f64,
    op_400: f64,
    partial: f64,
    crash: f64,
    crash_in_flight: f64,
    store_fail: f64,
    offline: f64,
    /// An accepted write's echoed checksum is wrong (drawn from `Server::integrity_rng`, so seeds
    /// without this fault run exactly as they did before it existed).
    bad_checksum: f64,
}

impl Faults {
    fn roll(rng: &mut Rng) -> Faults {
        match rng.below(20) {
            0 | 1 => Faults::default(),
            // A storm: everything fails often.
            2 | 3 => Faults {
                drop_request: 0.3,
                drop_response: 0.3,
                delay: 0.15,
                duplicate: 0.15,
                http_5xx: 0.2,
                http_429: 0.1,
                op_500: 0.1,
                op_400: 0.03,
                partial: 0.05,
                crash: 0.04,
                crash_in_flight: 0.4,
                store_fail: 0.02,
                offline: 0.02,
                bad_checksum: 0.0,
            },
            _ => Faults {
                drop_request: rng.upto(0.15),
                drop_response: rng.upto(0.15),
                delay: rng.upto(0.1),
                duplicate: rng.upto(0.1),
                http_5xx: rng.upto(0.1),
                http_429: rng.upto(0.05),
                op_500: rng.upto(0.05),
                op_400: rng.upto(0.02),
                partial: rng.upto(0.03),
                crash: rng.upto(0.03),
                crash_in_flight: rng.upto(0.3),
                store_fail: rng.upto(0.01),
                offline: rng.upto(0.01),
                bad_checksum: 0.0,
            },
        }
    }
}

macro_rules! stats {
    ($($field:ident),* $(,)?) => {
        #[derive(Clone, Debug, Default)]
        struct Stats { $($field: u64),* }
        impl Stats {
            fn add(&mut self, o: &Stats) { $(self.$field += o.$field;)* }
            fn lines(&self) -> String {
                let mut s = String::new();
                $(s.push_str(&format!("  {:<24}{}\n", stringify!($field), self.$field));)*
                s
            }
        }
    };
}

stats!(
    seeds,
    steps,
    writes,
    writes_refused_by_store,
    flushes,
    requests,
    dropped_requests,
    dropped_responses,
    delayed_requests,
    duplicated_requests,
    late_deliveries,
    http_5xx,
    http_429,
    timeouts,
    partial_responses,
    op_500,
    op_400,
    ledger_replays,
    bad_checksums,
    record_fetches,
    record_fetches_failed,
    server_conflicts,
    crashes,
    crashes_mid_flush,
    store_failures,
    offline_periods,
    manual_resolutions,
    dead_letters_retried,
    dead_letters_discarded,
    pulls,
    drain_rounds,
    counts_kept,
    counts_recounted,
);

static TOTALS: Mutex<Option<Stats>> = Mutex::new(None);

// ---------------------------------------------------------------------------------------------
// The server

#[derive(Clone, Debug)]
struct Rec {
    version: u64,
    data: Option<Value>,
    modified: u64,
}

struct Server {
    recs: BTreeMap<EntityKey, Rec>,
    /// Every version's data, so a client's `(version, base)` can be checked.
    history: HashMap<(EntityKey, u64), Option<Value>>,
    /// op id -> (what the op said, the first answer).
    ledger: HashMap<String, (String, Outcome)>,
    /// op id -> how many times it changed a record.
    applied: HashMap<String, u32>,
    violations: Vec<String>,
    /// Randomness for the checksum fault and the listings it causes, apart from the network's.
    integrity_rng: Rng,
}

/// What an op says, for the ledger to notice an id re-sent with other content. The payload is
/// represented by its checksum, which `process` verifies before an op is first recorded.
fn fingerprint(op: &Operation) -> String {
    let sum = if op.kind == OpKind::Delete { "-" } else { op.checksum.as_str() };
    format!("{}|{}/{}|{:?}|{sum}", op.kind.as_str(), op.collection, op.entity_id, op.base_version)
}

fn http(status: u16, message: &str) -> SyncError {
    SyncError::Http { status, message: message.into() }
}

impl Server {
    fn process(&mut self, op: &Operation, now: u64, faults: &Faults, rng: &mut Rng, stats: &mut Stats) -> Outcome {
        let fp = fingerprint(op);
        if let Some((first, answer)) = self.ledger.get(&op.id) {
            if *first != fp {
                self.violations.push(format!("op {} was re-sent with other content: first {first}, now {fp}", op.id));
            }
            stats.ledger_replays += 1;
            return answer.clone();
        }
        if op.kind != OpKind::Delete {
            let payload = op.payload.clone().unwrap_or(Value::Null);
            if !payload.is_object() || checksum(&payload) != op.checksum {
                self.violations.push(format!("op {} arrived with a payload that does not match its checksum", op.id));
                return Outcome::Failed(Failure::new(http(422, "checksum mismatch")));
            }
        }
        if rng.chance(faults.op_500) {
            // The server's database failed: nothing committed, no ledger row.
            stats.op_500 += 1;
            return Outcome::Failed(Failure::new(http(500, "database busy")));
        }
        if rng.chance(faults.op_400) {
            stats.op_400 += 1;
            let out = Outcome::Failed(Failure::new(http(400, "rejected by validation")));
            self.ledger.insert(op.id.clone(), (fp, out.clone()));
            return out;
        }
        let key = op.key();
        let cur = self.recs.get(&key).cloned();
        let live = cur.clone().filter(|r| r.data.is_some());
        let conflict = |r: &Rec| Outcome::Conflict {
            server_version: Some(r.version),
            server_data: r.data.clone(),
            deleted: r.data.is_none(),
            server_modified_ms: Some(r.modified),
        };
        let next = cur.as_ref().map_or(1, |r| r.version + 1);
        let out = match op.kind {
            OpKind::Create => match &live {
                Some(r) if op.base_version != Some(r.version) => conflict(r),
                _ => self.write(op, next, op.payload.clone(), now, faults, stats),
            },
            OpKind::Update => match (&live, &cur) {
                (None, Some(r)) => conflict(r),
                (None, None) => Outcome::Conflict {
                    server_version: None,
                    server_data: None,
                    deleted: true,
                    server_modified_ms: None,
                },
                (Some(r), _) if op.base_version.is_some_and(|b| b != r.version) => conflict(r),
                (Some(_), _) => self.write(op, next, op.payload.clone(), now, faults, stats),
            },
            OpKind::Delete => match &live {
                None => Outcome::Accepted { version: cur.map(|r| r.version), data: None, checksum: None },
                Some(r) if op.base_version.is_some_and(|b| b != r.version) => conflict(r),
                Some(_) => self.write(op, next, None, now, faults, stats),
            },
        };
        if matches!(out, Outcome::Conflict { .. }) {
            stats.server_conflicts += 1;
        }
        self.ledger.insert(op.id.clone(), (fp, out.clone()));
        out
    }

    fn write(
        &mut self,
        op: &Operation,
        version: u64,
        data: Option<Value>,
        now: u64,
        faults: &Faults,
        stats: &mut Stats,
    ) -> Outcome {
        let key = op.key();
        let n = self.applied.entry(op.id.clone()).or_default();
        *n += 1;
        if *n > 1 {
            self.violations.push(format!("op {} applied {} times", op.id, n));
        }
        self.history.insert((key.clone(), version), data.clone());
        self.recs.insert(key, Rec { version, data: data.clone(), modified: now });
        let mut sum = data.as_ref().map(checksum);
        if sum.is_some() && faults.bad_checksum > 0.0 && self.integrity_rng.chance(faults.bad_checksum) {
            // Stored as sent, but the answer's checksum is wrong: the client must fetch the record.
            stats.bad_checksums += 1;
            sum = Some("0".repeat(64));
        }
        Outcome::Accepted { version: Some(version), checksum: sum, data }
    }

    /// A full listing of `collection`'s live records, for the engine's `Transport::fetch`.
    fn listing(&self, collection: &str) -> PullPage {
        let items = self
            .recs
            .iter()
            .filter(|(k, r)| k.collection == collection && r.data.is_some())
            .map(|(k, r)| ServerRecord {
                id: k.id.clone(),
                version: Some(r.version),
                data: r.data.clone(),
                modified_ms: Some(r.modified),
            })
            .collect();
        PullPage { items, cursor: None, has_more: false }
    }

    fn batch(
        &mut self,
        ops: &[Operation],
        now: u64,
        faults: &Faults,
        rng: &mut Rng,
        stats: &mut Stats,
        trace: bool,
    ) -> PushResponse {
        let mut results: Vec<OpResult> = ops
            .iter()
            .map(|op| {
                let outcome = self.process(op, now, faults, rng, stats);
                if trace {
                    eprintln!(
                        "    server: {} {} {}/{} base {:?} {:?} -> {outcome:?}",
                        &op.id[..8],
                        op.kind.as_str(),
                        op.collection,
                        op.entity_id,
                        op.base_version,
                        op.payload
                    );
                }
                OpResult { op_id: op.id.clone(), outcome }
            })
            .collect();
        if !results.is_empty() && rng.chance(faults.partial) {
            // A malformed answer: one op's result is missing.
            stats.partial_responses += 1;
            let i = rng.below(results.len() as u64) as usize;
            results.remove(i);
        }
        PushResponse { results, server_time_ms: Some(now) }
    }
}

// ---------------------------------------------------------------------------------------------
// The network

struct Delayed {
    at_step: u64,
    ops: Vec<Operation>,
}

struct Net {
    rng: Rng,
    faults: Faults,
    healed: bool,
    server: Server,
    delayed: Vec<Delayed>,
    stats: Stats,
    now: Rc<Cell<u64>>,
    step: u64,
    trace: bool,
}

enum Fate {
    /// Never reached the server; the client sees this error.
    Lost(SyncError),
    /// The server refused the whole request.
    Refused(Failure),
    /// Reached the server, which answered this.
    Answered(PushResponse),
    /// Reaches the server when the client polls again (or later, or never, if it crashed).
    Late,
}

impl Net {
    fn faults(&self) -> Faults {
        if self.healed {
            Faults::default()
        } else {
            self.faults.clone()
        }
    }

    fn deliver(&mut self, ops: &[Operation]) -> PushResponse {
        let faults = self.faults();
        let now = self.now.get();
        self.server.batch(ops, now, &faults, &mut self.rng, &mut self.stats, self.trace)
    }

    fn delay(&mut self, ops: &[Operation]) {
        let at_step = self.step + 1 + self.rng.below(40);
        self.delayed.push(Delayed { at_step, ops: ops.to_vec() });
    }

    /// The request leaves the device.
    fn send(&mut self, ops: &[Operation]) -> Fate {
        self.stats.requests += 1;
        let f = self.faults();
        let r = &mut self.rng;
        if r.chance(f.drop_request) {
            self.stats.dropped_requests += 1;
            return Fate::Lost(if r.chance(0.5) {
                SyncError::Timeout
            } else {
                SyncError::Network("connection reset".into())
            });
        }
        if r.chance(f.delay) {
            // Stuck in the network: the client gives up, the server gets it later.
            self.stats.delayed_requests += 1;
            self.delay(ops);
            return Fate::Lost(SyncError::Timeout);
        }
        if r.chance(f.http_5xx) {
            self.stats.http_5xx += 1;
            let status = [500, 502, 503, 504][r.below(4) as usize];
            return Fate::Refused(Failure::new(http(status, "unavailable")));
        }
        if r.chance(f.http_429) {
            self.stats.http_429 += 1;
            let after = 100 + r.below(3_000);
            return Fate::Refused(Failure { error: http(429, "slow down"), retry_after_ms: Some(after) });
        }
        if r.chance(f.duplicate) {
            self.stats.duplicated_requests += 1;
            self.delay(ops);
        }
        if self.rng.chance(0.5) {
            Fate::Late
        } else {
            Fate::Answered(self.deliver(ops))
        }
    }

    /// The answer arrives at the device (or does not).
    fn receive(&mut self, fate: Fate, ops: &[Operation]) -> Result<PushResponse, Failure> {
        let response = match fate {
            Fate::Lost(e) => {
                if e == SyncError::Timeout {
                    self.stats.timeouts += 1;
                }
                return Err(Failure::new(e));
            }
            Fate::Refused(f) => return Err(f),
            Fate::Answered(r) => r,
            Fate::Late => self.deliver(ops),
        };
        let f = self.faults();
        if self.rng.chance(f.drop_response) {
            self.stats.dropped_responses += 1;
            self.stats.timeouts += 1;
            return Err(Failure::new(SyncError::Timeout));
        }
        Ok(response)
    }

    /// Delivers delayed requests that are due (all of them once healed). Their answers go nowhere.
    fn tick(&mut self) {
        let step = self.step;
        let healed = self.healed;
        let (due, rest): (Vec<Delayed>, Vec<Delayed>) =
            std::mem::take(&mut self.delayed).into_iter().partition(|d| healed || d.at_step <= step);
        self.delayed = rest;
        for d in due {
            self.stats.late_deliveries += 1;
            if self.trace {
                eprintln!("    net: late delivery of {:?}", d.ops.iter().map(|o| &o.id[..8]).collect::<Vec<_>>());
            }
            self.deliver(&d.ops);
        }
    }
}

/// Drops a `Late` request whose client stopped waiting: it reaches the server later, or never.
struct InFlight {
    net: Rc<RefCell<Net>>,
    ops: Vec<Operation>,
    armed: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.armed {
            let mut net = self.net.borrow_mut();
            if net.rng.chance(0.5) {
                let ops = std::mem::take(&mut self.ops);
                net.delay(&ops);
            }
        }
    }
}

#[derive(Clone)]
struct SimTransport {
    net: Rc<RefCell<Net>>,
}

impl Transport for SimTransport {
    /// Listings are only asked for when the server echoed a wrong checksum (the simulation's own
    /// `pull` writes the stores directly). The network drops them as often as it drops requests.
    async fn pull(&self, collection: &str, _cursor: Option<&str>) -> Result<PullPage, Failure> {
        YieldOnce::default().await;
        let mut net = self.net.borrow_mut();
        net.stats.record_fetches += 1;
        let drop = net.faults().drop_request;
        if drop > 0.0 && net.server.integrity_rng.chance(drop) {
            net.stats.record_fetches_failed += 1;
            return Err(Failure::new(SyncError::Network("connection reset".into())));
        }
        Ok(net.server.listing(collection))
    }

    async fn push(&self, ops: &[Operation], _device_id: &str) -> Result<PushResponse, Failure> {
        let fate = self.net.borrow_mut().send(ops);
        let mut guard = InFlight { net: self.net.clone(), ops: ops.to_vec(), armed: matches!(fate, Fate::Late) };
        YieldOnce::default().await;
        guard.armed = false;
        self.net.borrow_mut().receive(fate, ops)
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

type SimEngine = Engine<MemoryStore, SimTransport, SimClock>;
type FlushFuture = Pin<Box<dyn Future<Output = tidesync::core::Result<FlushReport>>>>;

struct Client {
    idx: usize,
    store: MemoryStore,
    clock: SimClock,
    transport: SimTransport,
    config: EngineConfig,
    engine: Rc<SimEngine>,
    inflight: Option<FlushFuture>,
    online: bool,
}

fn open_engine(store: &MemoryStore, transport: &SimTransport, clock: &SimClock, config: &EngineConfig) -> SimEngine {
    loop {
        // An injected store failure may hit the device-id write: try again, as a reload would.
        if let Ok(e) = block_on(Engine::open(store.clone(), transport.clone(), clock.clone(), config.clone())) {
            return e;
        }
    }
}

impl Client {
    fn crash(&mut self) {
        self.inflight = None;
        self.engine = Rc::new(open_engine(&self.store, &self.transport, &self.clock, &self.config));
        self.apply_network();
    }

    fn apply_network(&self) {
        self.engine.set_network(NetInfo { online: self.online, ..NetInfo::default() });
    }

    /// Polls the in-flight flush once; `true` when it finished.
    fn poll_flush(&mut self) -> bool {
        let Some(f) = self.inflight.as_mut() else { return true };
        if poll_once(f.as_mut()).is_ready() {
            self.inflight = None;
            return true;
        }
        false
    }

    fn start_flush(&mut self) {
        let e = self.engine.clone();
        self.inflight = Some(Box::pin(async move { e.flush().await }));
        self.poll_flush();
    }

    fn finish_flush(&mut self) {
        if let Some(f) = self.inflight.take() {
            let _ = block_on(f);
        }
    }
}

fn sim_config(rng: &mut Rng) -> EngineConfig {
    let mut collections = tidesync::core::sorted::VecMap::new();
    let col = |merge: MergeSpec| CollectionConfig { merge, priority: Priority::Medium };
    collections.insert("notes".into(), col(MergeSpec::default()));
    collections.insert("shared".into(), col(MergeSpec::default()));
    let fields = [("n", Strategy::Sum), ("hi", Strategy::Max), ("tags", Strategy::Union)];
    collections.insert(
        "counters".into(),
        col(MergeSpec {
            default: Strategy::Lww,
            fields: fields.iter().map(|(k, s)| (k.to_string(), *s)).collect(),
            groups: Vec::new(),
            on_deleted: OnDeleted::Recreate,
        }),
    );
    collections.insert("tally".into(), col(MergeSpec { default: Strategy::Manual, ..MergeSpec::default() }));
    EngineConfig {
        collections,
        retry: RetryPolicy {
            base_ms: 100,
            cap_ms: 4_000,
            jitter_ms: 100,
            max_attempts: 3 + rng.below(8) as u32,
            max_age_ms: u64::MAX / 4,
        },
        breaker_threshold: 2 + rng.below(6) as u32,
        breaker_cooldown_ms: 500 + rng.below(3_000),
        max_batch_size: 1 + rng.below(10) as usize,
        ..EngineConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The simulation

/// What the clients wrote, to check nothing was lost.
#[derive(Default)]
struct Expect {
    /// Per-client records: the owner's last accepted write (`None`: deleted).
    notes: BTreeMap<EntityKey, Option<Value>>,
    /// Shared counters: the sum of increments, the max, the tags.
    sums: BTreeMap<String, i64>,
    maxes: BTreeMap<String, i64>,
    tags: BTreeMap<String, BTreeSet<String>>,
    /// Shared lww records: every write and what superseded it.
    shared: BTreeMap<String, SharedLog>,
    /// The manual-policy counter.
    tally: BTreeMap<String, i64>,
}

/// The writes of one shared last-write-wins record, for its oracle.
///
/// Last write wins orders *concurrent* writes by their `lastModified`. A write made on top of
/// another (the writer's device held it when writing) replaces it whatever the two stamps say: the
/// user saw the newer value and changed it, and device clocks are skewed (up to 2 s here), so a
/// causally later write may carry an earlier stamp. The server applies such a write without a
/// conflict (its base version is current), so no merge ever compares the stamps. The oracle is
/// therefore not "the largest stamp wins" but:
/// - every server version replaces the previous one legitimately: the previous value is in the new
///   value's causal past (its chain of parents), or the new value's stamp is not older (it won a
///   last-write-wins merge);
/// - the final value's stamp is the latest among the writes nothing superseded. A write is
///   superseded when a later write was made on top of it (its parent), when a device that held it
///   took another value instead (it lost a merge, or took the server's state), or when the server
///   replaced it with another version.
#[derive(Default)]
struct SharedLog {
    /// Write (its `w` tag) -> its `lastModified` and the value the device held when writing it.
    writes: HashMap<String, (u64, Option<String>)>,
    superseded: HashSet<String>,
    /// Per client: the value its store held when last looked at.
    seen: HashMap<usize, String>,
}

impl SharedLog {
    fn tag(v: Option<&Value>) -> Option<String> {
        v.and_then(|v| v.get("w")).and_then(Value::as_str).map(String::from)
    }

    fn stamp(v: &Value) -> u64 {
        v.get("lastModified").and_then(Value::as_u64).unwrap_or(0)
    }

    /// A client wrote `data` while holding `parent`.
    fn wrote(&mut self, c: usize, data: &Value, parent: Option<String>) {
        let Some(tag) = Self::tag(Some(data)) else { return };
        if let Some(p) = &parent {
            self.superseded.insert(p.clone());
        }
        self.writes.insert(tag.clone(), (Self::stamp(data), parent));
        self.seen.insert(c, tag);
    }

    /// Client `c`'s store holds `data` now: a value it held before and no longer does was superseded.
    /// That must be legitimate: the new value was made on top of the old one, or it is not older (it
    /// won a last-write-wins merge), or the server's history holds both in that order (each of its
    /// steps is checked by `check`). `history`: the server's values of the record, by version.
    fn observe(&mut self, c: usize, data: Option<&Value>, history: impl FnOnce() -> Vec<Option<String>>) -> Check {
        let Some(tag) = Self::tag(data) else { return Ok(()) };
        let Some(old) = self.seen.insert(c, tag.clone()).filter(|old| *old != tag) else { return Ok(()) };
        let stamp = |t: &String| self.writes.get(t).map_or(0, |(lm, _)| *lm);
        let history = history();
        let at = |t: &String| history.iter().position(|h| h.as_ref() == Some(t));
        let later_on_server = matches!((at(&old), at(&tag)), (Some(a), Some(b)) if a < b);
        if !self.in_past(&old, &tag) && stamp(&tag) < stamp(&old) && !later_on_server {
            return Err(format!("client {c} replaced {old} with the older {tag}, which was not made on top of it"));
        }
        self.superseded.insert(old);
        Ok(())
    }

    /// Whether `ancestor` is `tag` or in its chain of parents.
    fn in_past(&self, ancestor: &str, tag: &str) -> bool {
        let mut cur = Some(tag.to_string());
        // The chain cannot loop (a parent is always an earlier write); the bound only guards that.
        for _ in 0..=self.writes.len() {
            match cur {
                Some(t) if t == ancestor => return true,
                Some(t) => cur = self.writes.get(&t).and_then(|(_, p)| p.clone()),
                None => return false,
            }
        }
        false
    }

    /// Checks the server's history of the record (`versions` in order) and its final value.
    fn check(&mut self, id: &str, versions: &[Option<Value>], last: Option<&Value>) -> Check {
        for pair in versions.windows(2) {
            let (Some(x), Some(y)) = (&pair[0], &pair[1]) else { continue };
            let (Some(xt), Some(yt)) = (Self::tag(Some(x)), Self::tag(Some(y))) else { continue };
            if xt == yt {
                continue;
            }
            if !self.in_past(&xt, &yt) && Self::stamp(y) < Self::stamp(x) {
                return Err(format!(
                    "shared/{id}: the server replaced {x} with the older {y}, whose writer had not seen it"
                ));
            }
            self.superseded.insert(xt);
        }
        let Some(last) = last else { return Err(format!("shared/{id}: written, but the server holds nothing")) };
        let frontier: Vec<(&String, u64)> =
            self.writes.iter().filter(|(t, _)| !self.superseded.contains(*t)).map(|(t, (lm, _))| (t, *lm)).collect();
        let newest = frontier.iter().map(|(_, lm)| *lm).max().unwrap_or(0);
        if Self::stamp(last) < newest {
            let want: Vec<&String> = frontier.iter().filter(|(_, lm)| *lm == newest).map(|(t, _)| *t).collect();
            return Err(format!(
                "shared/{id}: the latest write nothing superseded is {want:?} (lastModified {newest}), the server holds {last}"
            ));
        }
        Ok(())
    }
}

struct Sim {
    seed: u64,
    rng: Rng,
    now: Rc<Cell<u64>>,
    net: Rc<RefCell<Net>>,
    clients: Vec<Client>,
    expect: Expect,
    uniq: u64,
    /// Op ids seen leaving a device, and op ids seen in the dead letters.
    sent: HashSet<String>,
    dead_seen: HashSet<String>,
    trace: bool,
    /// `TIDESYNC_SIM_WATCH=collection/id`: print every client's state of that record each step.
    watch: Option<EntityKey>,
}

type Check = Result<(), String>;

fn n_of(v: Option<&Value>, field: &str) -> i64 {
    v.and_then(|v| v.get(field)).and_then(Value::as_i64).unwrap_or(0)
}

impl Sim {
    fn new(seed: u64, trace: bool) -> Sim {
        let mut rng = Rng::new(seed);
        let mut faults = Faults::roll(&mut rng);
        // Drawn apart from `rng`, so every other choice of a seed is what it was before this fault.
        let mut integrity_rng = Rng::new(seed ^ 0x1f7e_c4ec_5a1d_0b0e);
        if integrity_rng.chance(0.3) {
            faults.bad_checksum = integrity_rng.upto(0.1);
        }
        let now = Rc::new(Cell::new(1_700_000_000_000));
        let net = Rc::new(RefCell::new(Net {
            rng: Rng::new(rng.next_u64()),
            faults,
            healed: false,
            server: Server {
                recs: BTreeMap::new(),
                history: HashMap::new(),
                ledger: HashMap::new(),
                applied: HashMap::new(),
                violations: Vec::new(),
                integrity_rng,
            },
            delayed: Vec::new(),
            stats: Stats { seeds: 1, ..Stats::default() },
            now: now.clone(),
            step: 0,
            trace,
        }));
        let config = sim_config(&mut rng);
        let n_clients = 4 + rng.below(3) as usize;
        let mut clients = Vec::new();
        for idx in 0..n_clients {
            let store = MemoryStore::new();
            let clock = SimClock {
                now: now.clone(),
                skew: rng.below(2_000),
                rng: Rc::new(RefCell::new(Rng::new(rng.next_u64()))),
            };
            let transport = SimTransport { net: net.clone() };
            let engine = Rc::new(open_engine(&store, &transport, &clock, &config));
            clients.push(Client {
                idx,
                store,
                clock,
                transport,
                config: config.clone(),
                engine,
                inflight: None,
                online: true,
            });
        }
        if trace {
            eprintln!(
                "seed {seed}: {n_clients} clients, faults {:?}, config retry {:?} breaker {}/{}ms batch {}",
                net.borrow().faults,
                config.retry,
                config.breaker_threshold,
                config.breaker_cooldown_ms,
                config.max_batch_size
            );
        }
        let watch =
            std::env::var("TIDESYNC_SIM_WATCH").ok().and_then(|w| w.split_once('/').map(|(c, i)| EntityKey::new(c, i)));
        Sim {
            seed,
            rng,
            now,
            net,
            clients,
            expect: Expect::default(),
            uniq: 0,
            sent: HashSet::new(),
            dead_seen: HashSet::new(),
            trace,
            watch,
        }
    }

    fn stat(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut self.net.borrow_mut().stats);
    }

    fn log(&self, c: usize, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("[{} t={}] c{c}: {}", self.net.borrow().step, self.now.get(), what());
        }
    }

    fn run(&mut self) -> Check {
        let steps = 120 + self.rng.below(200);
        for step in 0..steps {
            self.net.borrow_mut().step = step;
            self.now.set(self.now.get() + 1 + self.rng.below(300));
            self.net.borrow_mut().tick();
            let c = self.rng.below(self.clients.len() as u64) as usize;
            self.step(c)?;
            self.observe_shared(c)?;
            if let Some(w) = self.watch.clone() {
                for (i, cl) in self.clients.iter().enumerate() {
                    let d = cl.store.dump();
                    let e = d.entities.get(&w);
                    let lane: Vec<String> = d
                        .ops
                        .values()
                        .filter(|o| o.key() == w)
                        .map(|o| {
                            format!("{}:{}:{}:{:?}:sent={}", &o.id[..8], o.seq, o.kind.as_str(), o.base_version, o.sent)
                        })
                        .collect();
                    if e.is_some() || !lane.is_empty() {
                        eprintln!(
                            "    watch c{i}: {:?} v{:?} base {:?} data {:?} lane {lane:?}",
                            e.map(|e| e.sync_status),
                            e.and_then(|e| e.version),
                            e.and_then(|e| e.base.as_ref().map(|b| b["v"].clone())),
                            e.and_then(|e| e.data.as_ref().map(|b| b["v"].clone()))
                        );
                    }
                }
            }
            // Checking costs more than simulating in a debug build: check every other step,
            // and verify checksums every eighth.
            if step % 2 == 0 {
                self.check_client(c, step % 8 == 0)?;
            }
            self.check_server()?;
        }
        self.heal()?;
        self.check_final()
    }

    fn step(&mut self, c: usize) -> Check {
        self.stat(|s| s.steps += 1);
        let f = self.net.borrow().faults.clone();
        if self.rng.chance(f.store_fail) {
            self.stat(|s| s.store_failures += 1);
            self.log(c, || "store: next transaction fails".into());
            self.clients[c].store.fail_next(1, SyncError::QuotaExceeded("simulated quota".into()));
        }
        if self.rng.chance(f.crash) {
            let mid = self.clients[c].inflight.is_some();
            self.stat(|s| {
                s.crashes += 1;
                s.crashes_mid_flush += mid as u64
            });
            self.log(c, || format!("CRASH (mid-flush: {mid})"));
            self.clients[c].crash();
            return Ok(());
        }
        if self.rng.chance(f.offline) || (!self.clients[c].online && self.rng.chance(0.1)) {
            let cl = &mut self.clients[c];
            cl.online = !cl.online;
            cl.apply_network();
            if !cl.online {
                self.stat(|s| s.offline_periods += 1);
            }
            self.log(c, || format!("online = {}", self.clients[c].online));
        }
        let roll = self.rng.below(100);
        match roll {
            0..=44 => self.write(c),
            45..=74 => {
                let cl = &mut self.clients[c];
                if cl.inflight.is_some() {
                    if self.rng.chance(f.crash_in_flight) {
                        self.stat(|s| {
                            s.crashes += 1;
                            s.crashes_mid_flush += 1
                        });
                        self.log(c, || "CRASH mid-flush".into());
                        self.clients[c].crash();
                    } else {
                        let done = self.clients[c].poll_flush();
                        self.log(c, || format!("poll flush -> done {done}"));
                    }
                } else {
                    self.stat(|s| s.flushes += 1);
                    self.log(c, || "flush".into());
                    self.clients[c].start_flush();
                }
                Ok(())
            }
            75..=84 => {
                let done = self.clients[c].poll_flush();
                self.log(c, || format!("poll flush -> done {done}"));
                Ok(())
            }
            85..=89 => self.pull(c),
            90..=94 => self.resolve_conflicts(c),
            _ => self.handle_dead_letters(c),
        }
    }

    fn next_uniq(&mut self) -> u64 {
        self.uniq += 1;
        self.uniq
    }

    fn priority(&mut self) -> Option<Priority> {
        match self.rng.below(6) {
            0 => Some(Priority::High),
            1 => Some(Priority::Low),
            _ => None,
        }
    }

    fn write(&mut self, c: usize) -> Check {
        let idx = self.clients[c].idx;
        let engine = self.clients[c].engine.clone();
        let lm = self.clients[c].clock.now_ms();
        let u = self.next_uniq();
        let prio = self.priority();
        self.stat(|s| s.writes += 1);
        let what = self.rng.below(100);
        let refused = |sim: &Sim, e: SyncError| -> Check {
            match e {
                SyncError::QuotaExceeded(_) => {
                    sim.stat(|s| s.writes_refused_by_store += 1);
                    Ok(())
                }
                SyncError::NotFound(_) => Ok(()),
                other => Err(format!("client {c}: a local write failed: {other}")),
            }
        };
        if what < 40 {
            // A record only this client writes.
            let id = format!("c{idx}-n{}", self.rng.below(3));
            let key = EntityKey::new("notes", id.clone());
            let data = json!({"v": u, "w": format!("{idx}:{u}"), "lastModified": lm});
            let kind = self.rng.below(4);
            let r = match kind {
                0 => block_on(engine.delete("notes", &id, prio)).map(|_| None),
                1 => block_on(engine.patch("notes", &id, data, prio)).map(|e| e.and_then(|e| e.data)),
                _ => block_on(engine.put("notes", &id, data, prio)).map(|e| e.and_then(|e| e.data)),
            };
            self.log(c, || format!("write notes/{id} kind {kind} -> {r:?}"));
            match r {
                Ok(d) => {
                    self.expect.notes.insert(key, d);
                }
                Err(e) => refused(self, e)?,
            }
        } else if what < 65 {
            let id = format!("k{}", self.rng.below(2));
            let d = 1 + self.rng.below(5) as i64;
            let x = self.rng.below(1_000) as i64;
            let t = format!("t{}", self.rng.below(20));
            let cur = block_on(engine.get("counters", &id)).map_err(|e| format!("client {c}: read failed: {e}"))?;
            let r = match &cur {
                Some(v) => {
                    let mut tags: BTreeSet<String> = v["tags"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t.as_str().map(String::from))
                        .collect();
                    tags.insert(t.clone());
                    let patch = json!({"n": n_of(Some(v), "n") + d, "hi": n_of(Some(v), "hi").max(x), "tags": Value::from_iter(tags)});
                    block_on(engine.patch("counters", &id, patch, prio))
                }
                None => block_on(engine.put("counters", &id, json!({"n": d, "hi": x, "tags": [t.clone()]}), prio)),
            };
            self.log(c, || {
                format!(
                    "counters/{id} +{d} max {x} tag {t} -> {:?}",
                    r.as_ref().map(|e| e.as_ref().and_then(|e| e.data.clone()))
                )
            });
            match r {
                Ok(_) => {
                    *self.expect.sums.entry(id.clone()).or_default() += d;
                    let m = self.expect.maxes.entry(id.clone()).or_insert(x);
                    *m = (*m).max(x);
                    self.expect.tags.entry(id).or_default().insert(t);
                }
                Err(e) => refused(self, e)?,
            }
        } else if what < 85 {
            let id = format!("s{}", self.rng.below(2));
            let data = json!({"v": u, "w": format!("{idx}:{u}"), "lastModified": lm});
            // What the device holds when it writes (the store as it is: a read of the app's).
            let held = block_on(engine.store().get_entity(&EntityKey::new("shared", id.clone())))
                .map_err(|e| format!("client {c}: read failed: {e}"))?
                .and_then(|e| SharedLog::tag(e.data.as_ref()));
            let r = block_on(engine.put("shared", &id, data.clone(), prio));
            self.log(c, || format!("shared/{id} = {data} -> ok {}", r.is_ok()));
            match r {
                Ok(_) => self.expect.shared.entry(id).or_default().wrote(c, &data, held),
                Err(e) => refused(self, e)?,
            }
        } else {
            let id = "m0".to_string();
            let d = 1 + self.rng.below(9) as i64;
            let cur = block_on(engine.get("tally", &id)).map_err(|e| format!("client {c}: read failed: {e}"))?;
            let r = match &cur {
                // `by` names the write: two devices' records never look alike by chance, so the
                // manual policy sees every concurrent change.
                Some(v) => block_on(engine.patch(
                    "tally",
                    &id,
                    json!({"n": n_of(Some(v), "n") + d, "by": format!("{idx}:{u}")}),
                    prio,
                )),
                None => block_on(engine.put("tally", &id, json!({"n": d, "by": format!("{idx}:{u}")}), prio)),
            };
            self.log(c, || format!("tally/{id} +{d} -> ok {}", r.is_ok()));
            match r {
                Ok(_) => *self.expect.tally.entry(id).or_default() += d,
                Err(e) => refused(self, e)?,
            }
        }
        Ok(())
    }

    /// What a future `pull` will do: records without pending ops, conflicts or dead letters take
    /// the server's state.
    fn pull(&mut self, c: usize) -> Check {
        self.stat(|s| s.pulls += 1);
        let store = self.clients[c].store.clone();
        let (ops, conflicts) = block_on(store.load_queue()).map_err(|e| e.to_string())?;
        let dead = block_on(store.dead_letters()).map_err(|e| e.to_string())?;
        let busy: BTreeSet<EntityKey> = ops
            .iter()
            .map(Operation::key)
            .chain(conflicts.iter().map(|c| c.key()))
            .chain(dead.iter().map(|d| d.op.key()))
            .collect();
        let recs: Vec<(EntityKey, Rec)> = self
            .net
            .borrow()
            .server
            .recs
            .iter()
            .filter(|(k, _)| !busy.contains(k))
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        let keys: Vec<EntityKey> = recs.iter().map(|(k, _)| k.clone()).collect();
        self.log(c, || format!("pull {} records", keys.len()));
        let r = block_on(store.transact(&keys, |tx| {
            for (k, r) in &recs {
                if !tx.lane(k).is_empty() {
                    continue;
                }
                match &r.data {
                    None => tx.write(Write::DeleteEntity(k.clone())),
                    Some(d) => tx.write(Write::PutEntity(tidesync::core::op::Entity {
                        collection: k.collection.clone(),
                        id: k.id.clone(),
                        data: Some(d.clone()),
                        base: Some(d.clone()),
                        version: Some(r.version),
                        last_modified: r.modified,
                        sync_status: SyncStatus::Synced,
                        checksum: Some(checksum(d)),
                    })),
                }
            }
            Ok(())
        }));
        match r {
            Ok(()) | Err(SyncError::QuotaExceeded(_)) => Ok(()),
            Err(e) => Err(format!("pull failed: {e}")),
        }
    }

    /// The app resolves manual conflicts on the tally counter the way a careful app would: the
    /// server's count plus what this device added since its base, read from the current record
    /// (it may have changed while the conflict waited).
    fn resolve_conflicts(&mut self, c: usize) -> Check {
        let engine = self.clients[c].engine.clone();
        let conflicts = block_on(engine.conflicts()).map_err(|e| e.to_string())?;
        for cf in conflicts {
            if cf.collection != "tally" {
                return Err(format!("client {c}: unexpected manual conflict on {}/{}", cf.collection, cf.entity_id));
            }
            let cur = block_on(engine.store().get_entity(&cf.key())).map_err(|e| e.to_string())?.and_then(|e| e.data);
            let merged = n_of(cf.server.as_ref(), "n") + n_of(cur.as_ref(), "n") - n_of(cf.base.as_ref(), "n");
            let by = format!("merge:{}", self.next_uniq());
            let r = block_on(engine.resolve_conflict(&cf.id, Choice::Merged(json!({"n": merged, "by": by}))));
            self.log(c, || {
                format!(
                    "resolve {} base {:?} local {:?} server {:?} cur {:?} -> n={merged}: {:?}",
                    cf.id,
                    cf.base,
                    cf.local,
                    cf.server,
                    cur,
                    r.as_ref().err()
                )
            });
            match r {
                Ok(_) => self.stat(|s| s.manual_resolutions += 1),
                Err(SyncError::QuotaExceeded(_)) => {}
                Err(e) => return Err(format!("client {c}: resolve_conflict failed: {e}")),
            }
        }
        Ok(())
    }

    /// The app retries a dead letter when it still holds the record's latest state and nothing
    /// newer is queued for it; otherwise a later write superseded it and the app discards it.
    fn handle_dead_letters(&mut self, c: usize) -> Check {
        let engine = self.clients[c].engine.clone();
        let dead = block_on(engine.dead_letters()).map_err(|e| e.to_string())?;
        let (ops, _) = block_on(engine.store().load_queue()).map_err(|e| e.to_string())?;
        for dl in dead {
            self.dead_seen.insert(dl.op.id.clone());
            if dl.error.is_empty() || dl.code.is_empty() || (dl.code == "HTTP" && dl.status.is_none()) {
                return Err(format!("client {c}: dead letter {} has no reason: {dl:?}", dl.op.id));
            }
            let key = dl.op.key();
            let cur = block_on(engine.store().get_entity(&key)).map_err(|e| e.to_string())?.and_then(|e| e.data);
            let latest = cur == dl.op.payload && !ops.iter().any(|o| o.key() == key);
            // An op the server may have applied pauses its record's lane (later writes wait), and
            // retrying it is always safe: it keeps its id, so the server's ledger applies it at most
            // once. Discarding it would leave the record's base unsure of the server's state.
            let r = if latest || dl.maybe_applied {
                block_on(engine.retry_dead_letter(&dl.op.id))
            } else {
                block_on(engine.discard_dead_letter(&dl.op.id))
            };
            self.log(c, || {
                format!(
                    "dead letter {} ({} {}) {} -> {:?}",
                    dl.op.id,
                    dl.code,
                    dl.error,
                    if latest { "retry" } else { "discard" },
                    r.as_ref().err()
                )
            });
            match r {
                Ok(()) if latest => self.stat(|s| s.dead_letters_retried += 1),
                Ok(()) => self.stat(|s| s.dead_letters_discarded += 1),
                Err(SyncError::QuotaExceeded(_)) => {}
                Err(e) => return Err(format!("client {c}: dead letter handling failed: {e}")),
            }
        }
        Ok(())
    }

    /// Notes which value of each shared record client `c`'s store holds now (see `SharedLog`).
    fn observe_shared(&mut self, c: usize) -> Check {
        let store = self.clients[c].store.clone();
        let net = self.net.borrow();
        for (id, log) in &mut self.expect.shared {
            let key = EntityKey::new("shared", id.clone());
            let e = block_on(store.get_entity(&key)).map_err(|e| e.to_string())?;
            let history = || {
                let last = net.server.recs.get(&key).map_or(0, |r| r.version);
                (1..=last)
                    .map(|v| SharedLog::tag(net.server.history.get(&(key.clone(), v)).and_then(Option::as_ref)))
                    .collect()
            };
            log.observe(c, e.and_then(|e| e.data).as_ref(), history)?;
        }
        Ok(())
    }

    // ---- invariants ----

    fn check_server(&self) -> Check {
        let net = self.net.borrow();
        match net.server.violations.first() {
            Some(v) => Err(format!("server: {v}")),
            None => Ok(()),
        }
    }

    /// What must hold at every step for one client's store (`checksums`: also verify every
    /// record's and op's checksum).
    fn check_client(&mut self, c: usize, checksums: bool) -> Check {
        let d = self.clients[c].store.dump();
        let net = self.net.borrow();
        let mut lanes: BTreeMap<EntityKey, Vec<&Operation>> = BTreeMap::new();
        for op in d.ops.values() {
            lanes.entry(op.key()).or_default().push(op);
            if checksums && op.checksum != checksum(op.payload.as_ref().unwrap_or(&Value::Null)) {
                return Err(format!("client {c}: op {} does not match its checksum", op.id));
            }
            if op.sent {
                self.sent.insert(op.id.clone());
            }
        }
        for lane in lanes.values_mut() {
            lane.sort_by_key(|o| o.seq);
            if let Some(o) = lane.iter().skip(1).find(|o| o.sent) {
                return Err(format!("client {c}: op {} was sent but is not its lane's head", o.id));
            }
        }
        for dl in d.dead_letters.values() {
            self.dead_seen.insert(dl.op.id.clone());
        }
        for (k, e) in &d.entities {
            if let Some(data) = e.data.as_ref().filter(|_| checksums) {
                if e.checksum.as_deref() != Some(checksum(data).as_str()) {
                    return Err(format!("client {c}: {k:?} does not match its checksum"));
                }
            }
            if let Some(v) = e.version {
                match net.server.history.get(&(k.clone(), v)) {
                    Some(h) if *h == e.base => {}
                    Some(h) => {
                        return Err(format!(
                            "client {c}: {k:?} holds base {:?} at version {v}, the server had {h:?}",
                            e.base
                        ))
                    }
                    None => return Err(format!("client {c}: {k:?} claims version {v}, which the server never had")),
                }
            }
            if e.sync_status == SyncStatus::Synced {
                if lanes.contains_key(k) {
                    return Err(format!("client {c}: {k:?} is synced with ops pending"));
                }
                if e.data != e.base {
                    return Err(format!(
                        "client {c}: {k:?} is synced but its data {:?} differs from its base {:?}",
                        e.data, e.base
                    ));
                }
            }
        }
        drop(net);
        self.check_counts(c, &d)
    }

    /// `status()`'s counts, which the engine keeps from each transaction's writes (or counts again
    /// when it cannot be sure of them), against a full count of the store; and its `nextAttemptAt`,
    /// never later than the next op is due (or now).
    fn check_counts(&mut self, c: usize, d: &MemoryData) -> Check {
        let engine = self.clients[c].engine.clone();
        let counted = Counts { pending: d.ops.len(), dead_letters: d.dead_letters.len(), conflicts: d.conflicts.len() };
        match engine.kept_counts() {
            Some(kept) if kept != counted => {
                return Err(format!("client {c}: the engine keeps {kept:?}, the store holds {counted:?}"));
            }
            Some(_) => self.stat(|s| s.counts_kept += 1),
            None => {
                self.stat(|s| s.counts_recounted += 1);
                let recounted = block_on(engine.counts()).map_err(|e| e.to_string())?;
                if recounted != counted || engine.kept_counts() != Some(counted) {
                    return Err(format!("client {c}: counted {recounted:?} again, the store holds {counted:?}"));
                }
            }
        }
        let status = block_on(engine.status()).map_err(|e| e.to_string())?;
        let (pending, dead, conflicts) = (status.pending, status.dead_letters, status.conflicts);
        if (pending, dead, conflicts) != (counted.pending, counted.dead_letters, counted.conflicts) {
            return Err(format!("client {c}: status() says {pending}/{dead}/{conflicts}, the store holds {counted:?}"));
        }
        let mut paused: VecSet<EntityKey> = d.conflicts.values().map(|c| c.key()).collect();
        paused.extend(d.dead_letters.values().filter(|d| d.maybe_applied).map(|d| d.op.key()));
        let ops: Vec<Operation> = d.ops.values().cloned().collect();
        let now = self.clients[c].clock.now_ms();
        if let Some(due) = next_due(&ops, &paused) {
            match status.next_attempt_at {
                Some(t) if t <= due.max(now) => {}
                other => {
                    return Err(format!(
                        "client {c}: status() says the next op is due at {other:?}, one is due at {due}"
                    ))
                }
            }
        }
        Ok(())
    }

    /// Faults stop: late requests arrive, clients come online, and the app flushes, retries dead
    /// letters and resolves conflicts until every queue is empty.
    fn heal(&mut self) -> Check {
        self.log(0, || "=== HEAL ===".into());
        {
            let mut net = self.net.borrow_mut();
            net.healed = true;
            net.tick();
        }
        for cl in &mut self.clients {
            // A store failure injected but not yet hit is used up now.
            while block_on(cl.store.transact(&[], |_| Ok(()))).is_err() {}
            cl.finish_flush();
            cl.online = true;
            cl.apply_network();
        }
        for c in 0..self.clients.len() {
            self.observe_shared(c)?;
        }
        for round in 0..30 {
            self.stat(|s| s.drain_rounds += 1);
            self.now.set(self.now.get() + 60_000);
            let mut busy = false;
            for c in 0..self.clients.len() {
                self.resolve_conflicts(c)?;
                self.handle_dead_letters(c)?;
                let engine = self.clients[c].engine.clone();
                let r = block_on(engine.flush()).map_err(|e| format!("client {c}: flush failed after healing: {e}"))?;
                self.observe_shared(c)?;
                self.log(c, || format!("drain round {round}: {r:?}"));
                self.check_client(c, true)?;
                let (ops, conflicts) = block_on(engine.store().load_queue()).map_err(|e| e.to_string())?;
                let dead = block_on(engine.dead_letters()).map_err(|e| e.to_string())?;
                busy |= !ops.is_empty() || !conflicts.is_empty() || !dead.is_empty();
            }
            self.check_server()?;
            if !busy {
                return Ok(());
            }
        }
        Err("the queues did not drain within 30 rounds after the faults stopped".into())
    }

    fn check_final(&mut self) -> Check {
        let server: BTreeMap<EntityKey, Option<Value>> =
            self.net.borrow().server.recs.iter().map(|(k, r)| (k.clone(), r.data.clone())).collect();
        let live = |k: &EntityKey| server.get(k).cloned().flatten();

        // Before anyone pulls: each client's own records are exactly what the server holds.
        for (k, want) in &self.expect.notes {
            if live(k) != *want {
                return Err(format!(
                    "lost write: {k:?}: the owner last wrote {want:?}, the server holds {:?}",
                    live(k)
                ));
            }
            let owner: usize = k.id[1..k.id.find('-').unwrap()].parse().unwrap();
            let mine = block_on(self.clients[owner].engine.get("notes", &k.id)).map_err(|e| e.to_string())?;
            if mine != *want {
                return Err(format!("client {owner}: {k:?} holds {mine:?}, its last write was {want:?}"));
            }
        }
        for (id, sum) in &self.expect.sums {
            let rec = live(&EntityKey::new("counters", id.clone()));
            let n = n_of(rec.as_ref(), "n");
            if n != *sum {
                return Err(format!(
                    "counters/{id}: the increments add up to {sum}, the server holds n = {n} ({rec:?})"
                ));
            }
            let hi = n_of(rec.as_ref(), "hi");
            if hi != self.expect.maxes[id] {
                return Err(format!(
                    "counters/{id}: the max written is {}, the server holds hi = {hi}",
                    self.expect.maxes[id]
                ));
            }
            let tags: BTreeSet<String> = rec
                .as_ref()
                .and_then(|r| r["tags"].as_array())
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(String::from))
                .collect();
            if tags != self.expect.tags[id] {
                return Err(format!(
                    "counters/{id}: the tags written are {:?}, the server holds {tags:?}",
                    self.expect.tags[id]
                ));
            }
        }
        for (id, log) in &mut self.expect.shared {
            let key = EntityKey::new("shared", id.clone());
            let net = self.net.borrow();
            let last = net.server.recs.get(&key).map_or(0, |r| r.version);
            let versions: Vec<Option<Value>> =
                (1..=last).map(|v| net.server.history.get(&(key.clone(), v)).cloned().flatten()).collect();
            log.check(id, &versions, live(&key).as_ref())?;
        }
        for (id, sum) in &self.expect.tally {
            let key = EntityKey::new("tally", id.clone());
            let rec = live(&key);
            let n = n_of(rec.as_ref(), "n");
            if n != *sum {
                return Err(format!("tally/{id}: the increments add up to {sum}, the server holds {rec:?}"));
            }
        }

        // Every op that left a device was answered by the server or dead-lettered.
        {
            let net = self.net.borrow();
            for id in &self.sent {
                if !net.server.ledger.contains_key(id) && !self.dead_seen.contains(id) {
                    return Err(format!("op {id} left a device but was never answered nor dead-lettered"));
                }
            }
        }

        // After a pull, every client holds exactly the server's records.
        for c in 0..self.clients.len() {
            self.pull(c)?;
            self.check_client(c, true)?;
            let d = self.clients[c].store.dump();
            let mine: BTreeMap<EntityKey, Value> =
                d.entities.iter().filter_map(|(k, e)| e.data.clone().map(|v| (k.clone(), v))).collect();
            let theirs: BTreeMap<EntityKey, Value> =
                server.iter().filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v))).collect();
            if mine != theirs {
                let diff: Vec<_> = mine
                    .keys()
                    .chain(theirs.keys())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .filter(|k| mine.get(k) != theirs.get(k))
                    .collect();
                return Err(format!("client {c} does not converge with the server on {diff:?}"));
            }
        }
        Ok(())
    }
}

fn run_seed(seed: u64, trace: bool) -> (Check, Stats) {
    let mut sim = Sim::new(seed, trace);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.run()));
    let stats = sim.net.borrow().stats.clone();
    match r {
        Ok(check) => (check.map_err(|e| format!("seed {}: {e}", sim.seed)), stats),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            (Err(format!("seed {seed}: panicked: {msg}")), stats)
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Runs this part's share of the seeds (the seeds are split over two tests so both cores work).
fn run_part(part: u64, parts: u64) {
    let trace = std::env::var("TIDESYNC_SIM_TRACE").is_ok_and(|v| v != "0");
    let seeds: Vec<u64> = match env_u64("TIDESYNC_SIM_SEED") {
        Some(s) if part == 0 => vec![s],
        Some(_) => vec![],
        None => {
            let first = env_u64("TIDESYNC_SIM_FIRST").unwrap_or(0);
            let n = env_u64("TIDESYNC_SIM_SEEDS").unwrap_or(1_000);
            (first..first + n).filter(|s| s % parts == part).collect()
        }
    };
    let started = std::time::Instant::now();
    let mut stats = Stats::default();
    let mut failures = Vec::new();
    for &seed in &seeds {
        let (r, s) = run_seed(seed, trace);
        stats.add(&s);
        if let Err(e) = r {
            eprintln!("FAILED {e}\n  rerun: TIDESYNC_SIM_SEED={seed} TIDESYNC_SIM_TRACE=1 cargo test --test sim -- --nocapture");
            failures.push(e);
            if failures.len() >= 5 {
                break;
            }
        }
    }
    eprintln!("sim part {part}/{parts}: {} seeds in {:.1?}", seeds.len(), started.elapsed());
    {
        let mut t = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
        let t = t.get_or_insert_with(Stats::default);
        t.add(&stats);
        if t.seeds > stats.seeds || parts == 1 {
            eprintln!("sim totals so far (all parts finished):\n{}", t.lines());
        }
    }
    assert!(failures.is_empty(), "{} seed(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn simulation_part_0() {
    run_part(0, 2);
}

#[test]
fn simulation_part_1() {
    run_part(1, 2);
}

// ---------------------------------------------------------------------------------------------
// Property tests of the merge policies (random cases from the same PRNG, many per test)

mod merge_properties {
    use super::Rng;
    use tidesync::core::merge::{merge, MergeSpec, OnDeleted, Resolution, Stamps, Strategy};
    use tidesync::core::value::{Map, Value};
    use tidesync::json;

    const CASES: u64 = 2_000;

    fn value(r: &mut Rng, depth: u32) -> Value {
        match r.below(if depth == 0 { 3 } else { 4 }) {
            0 => json!(r.below(5)),
            1 => json!(format!("s{}", r.below(4))),
            2 => json!([r.below(3), r.below(3)]),
            _ => object(r, depth - 1),
        }
    }

    fn object(r: &mut Rng, depth: u32) -> Value {
        let mut m = Map::new();
        for k in ["a", "b", "c", "d"] {
            if r.chance(0.7) {
                m.insert(k.into(), value(r, depth));
            }
        }
        Value::Object(m)
    }

    fn stamps(r: &mut Rng) -> Stamps {
        Stamps { local_ms: r.below(10), server_ms: r.below(10) }
    }

    fn merged(r: Resolution) -> Value {
        match r {
            Resolution::Merged(Some(v)) => v,
            other => panic!("expected a record, got {other:?}"),
        }
    }

    fn spec(default: Strategy, fields: &[(&str, Strategy)]) -> MergeSpec {
        MergeSpec {
            default,
            fields: fields.iter().map(|(k, s)| (k.to_string(), *s)).collect(),
            groups: Vec::new(),
            on_deleted: OnDeleted::Recreate,
        }
    }

    #[test]
    fn lww_makes_no_record_that_no_side_wrote_and_agrees_across_devices() {
        let mut r = Rng::new(0x3a6);
        let sp = spec(Strategy::Lww, &[]);
        for case in 0..CASES {
            let (o, a, b, st) = (object(&mut r, 2), object(&mut r, 2), object(&mut r, 2), stamps(&mut r));
            let ab = merged(merge(&sp, Some(&o), Some(&a), Some(&b), &st));
            assert!(ab == a || ab == b, "case {case}: {ab:?} is neither {a:?} nor {b:?}");
            // The other device sees the same two writes the other way round, with its clock's view.
            let mirrored = Stamps { local_ms: st.server_ms, server_ms: st.local_ms };
            let ba = merged(merge(&sp, Some(&o), Some(&b), Some(&a), &mirrored));
            assert_eq!(ab, ba, "case {case}: the two devices disagree");
        }
    }

    #[test]
    fn merge3_with_one_side_unchanged_returns_the_other() {
        let mut r = Rng::new(0x3a3);
        for case in 0..CASES {
            let (base, other, st) = (object(&mut r, 2), object(&mut r, 2), stamps(&mut r));
            for default in [Strategy::Merge3, Strategy::Lww, Strategy::Manual] {
                let sp = spec(default, &[]);
                let a = merged(merge(&sp, Some(&base), Some(&base), Some(&other), &st));
                assert_eq!(a, other, "case {case} {default:?}: local unchanged");
                let b = merged(merge(&sp, Some(&base), Some(&other), Some(&base), &st));
                assert_eq!(b, other, "case {case} {default:?}: server unchanged");
            }
        }
    }

    #[test]
    fn max_and_union_are_commutative_and_idempotent() {
        let mut r = Rng::new(0x3a4);
        let sp = spec(Strategy::Lww, &[("m", Strategy::Max), ("u", Strategy::Union)]);
        let record = |r: &mut Rng| {
            let tags: Vec<Value> = (0..r.below(4)).map(|_| json!(format!("t{}", r.below(5)))).collect();
            json!({"m": r.below(100), "u": tags})
        };
        for case in 0..CASES {
            let (o, a, b, st) = (record(&mut r), record(&mut r), record(&mut r), stamps(&mut r));
            let ab = merged(merge(&sp, Some(&o), Some(&a), Some(&b), &st));
            let ba = merged(merge(&sp, Some(&o), Some(&b), Some(&a), &st));
            assert_eq!((&ab["m"], &ab["u"]), (&ba["m"], &ba["u"]), "case {case}: commutative");
            assert_eq!(ab["m"].as_u64(), a["m"].as_u64().max(b["m"].as_u64()), "case {case}: max");
            // Merging the result with either side again changes nothing.
            for side in [&a, &b] {
                let again = merged(merge(&sp, Some(&o), Some(&ab), Some(side), &st));
                assert_eq!((&again["m"], &again["u"]), (&ab["m"], &ab["u"]), "case {case}: idempotent");
            }
            // The union holds every element of both sides, once.
            let u: Vec<&Value> = ab["u"].as_array().unwrap().iter().collect();
            for t in a["u"].as_array().unwrap().iter().chain(b["u"].as_array().unwrap()) {
                assert_eq!(u.iter().filter(|x| **x == t).count(), 1, "case {case}: {t} in {u:?}");
            }
        }
    }

    #[test]
    fn sum_never_loses_either_sides_increment() {
        let mut r = Rng::new(0x3a5);
        let sp = spec(Strategy::Lww, &[("n", Strategy::Sum)]);
        for case in 0..CASES {
            let o = r.below(50) as i64 - 10;
            let (dl, ds) = (r.below(7) as i64 - 3, r.below(7) as i64 - 3);
            let st = stamps(&mut r);
            let base = json!({"n": o});
            let (l, s) = (json!({"n": o + dl}), json!({"n": o + ds}));
            let m = merged(merge(&sp, Some(&base), Some(&l), Some(&s), &st));
            assert_eq!(m["n"], json!(o + dl + ds), "case {case}: base {o}, local +{dl}, server +{ds}");
            // A record created on both sides: the base is nothing, both counts add up.
            let m = merged(merge(&sp, None, Some(&l), Some(&s), &st));
            assert_eq!(m["n"], json!(2 * o + dl + ds), "case {case}: both created");
        }
    }
}
