//! Native scenario tests of the engine over the memory store, a scripted transport and a manual
//! clock: retries and Retry-After, dead letters, the circuit breaker, offline, coalescing across
//! an in-flight flush, conflicts (manual and automatic), integrity and storage failures, and the
//! regressions the simulation found.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use tidesync::core::engine::{Choice, CollectionConfig, Engine, EngineConfig, Event};
use tidesync::core::error::SyncError;
use tidesync::core::merge::{MergeSpec, Strategy};
use tidesync::core::netpolicy::NetInfo;
use tidesync::core::op::{EntityKey, OpKind, Operation, Priority, SyncStatus};
use tidesync::core::retry::{BreakerState, RetryPolicy};
use tidesync::core::traits::{
    Clock, Failure, OpResult, Outcome, PullPage, PushResponse, ServerRecord, Store, Transport,
};
use tidesync::core::value::Value;
use tidesync::json;
use tidesync::store::memory::MemoryStore;

// ---- plumbing ----

fn poll_once<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = poll_once(f.as_mut()) {
            return v;
        }
    }
}

#[derive(Clone)]
struct TestClock {
    now: Rc<Cell<u64>>,
    seq: Rc<Cell<u64>>,
}

impl TestClock {
    fn advance(&self, ms: u64) {
        self.now.set(self.now.get() + ms);
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> u64 {
        self.now.get()
    }
    fn sleep(&self, ms: u64) -> impl Future<Output = ()> {
        let now = self.now.clone();
        async move { now.set(now.get() + ms) }
    }
    fn random_u64(&self) -> u64 {
        // Distinct ids; small numbers keep the jittered backoff small and predictable.
        self.seq.set(self.seq.get() + 1);
        self.seq.get()
    }
}

type Answer = Box<dyn FnOnce(&[Operation]) -> Result<PushResponse, Failure>>;

/// Answers pushes from a script, then accepts everything. Records every request.
#[derive(Clone, Default)]
struct Scripted {
    script: Rc<RefCell<VecDeque<Answer>>>,
    requests: Rc<RefCell<Vec<Vec<Operation>>>>,
    /// Server versions per record, for the default "accept" answer.
    versions: Rc<RefCell<BTreeMap<EntityKey, u64>>>,
    /// While set, a push waits (returns `Pending`) until the test releases it.
    hold: Rc<Cell<bool>>,
    /// What the server holds (version, data), as a full listing answers it: the default "accept"
    /// answer keeps it up to date; tests set it for their scripted answers.
    records: Rc<RefCell<BTreeMap<EntityKey, (u64, Value)>>>,
    /// Listings served, and whether they fail (the network is down).
    pulls: Rc<Cell<u32>>,
    pull_fails: Rc<Cell<bool>>,
    /// When set, pulls answer as a change feed: the entries after the cursor (a sequence number).
    feed: Rc<RefCell<Option<Feed>>>,
}

/// A change feed: (sequence number, record) in order.
type Feed = Vec<(u64, ServerRecord)>;

impl Scripted {
    fn then(&self, a: impl FnOnce(&[Operation]) -> Result<PushResponse, Failure> + 'static) -> &Self {
        self.script.borrow_mut().push_back(Box::new(a));
        self
    }
    fn fail(&self, status: u16, retry_after_ms: Option<u64>) -> &Self {
        self.then(move |_| Err(Failure { error: http(status), retry_after_ms }))
    }
    fn sent(&self) -> Vec<Vec<Operation>> {
        self.requests.borrow().clone()
    }
    fn accept(&self, op: &Operation) -> Outcome {
        let mut v = self.versions.borrow_mut();
        let n = v.entry(op.key()).or_default();
        *n += 1;
        match &op.payload {
            Some(p) => self.records.borrow_mut().insert(op.key(), (*n, p.clone())),
            None => self.records.borrow_mut().remove(&op.key()),
        };
        Outcome::Accepted { version: Some(*n), data: op.payload.clone(), checksum: None }
    }
    fn accept_all(&self, ops: &[Operation]) -> PushResponse {
        PushResponse {
            results: ops.iter().map(|o| OpResult { op_id: o.id.clone(), outcome: self.accept(o) }).collect(),
            server_time_ms: None,
        }
    }
}

struct Hold(Rc<Cell<bool>>);

impl Future for Hold {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0.get() {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }
}

impl Transport for Scripted {
    async fn push(&self, ops: &[Operation], _device: &str) -> Result<PushResponse, Failure> {
        self.requests.borrow_mut().push(ops.to_vec());
        Hold(self.hold.clone()).await;
        let next = self.script.borrow_mut().pop_front();
        match next {
            Some(answer) => answer(ops),
            None => Ok(self.accept_all(ops)),
        }
    }

    /// A full listing of what the server holds (no cursor).
    async fn pull(&self, collection: &str, _cursor: Option<&str>) -> Result<PullPage, Failure> {
        self.pulls.set(self.pulls.get() + 1);
        if self.pull_fails.get() {
            return Err(Failure::new(SyncError::Network("connection refused".into())));
        }
        if let Some(feed) = self.feed.borrow().as_ref() {
            let after: u64 = _cursor.map_or(0, |c| c.parse().unwrap());
            let items: Vec<&(u64, ServerRecord)> = feed.iter().filter(|(seq, _)| *seq > after).collect();
            let cursor = items.last().map_or(after, |(seq, _)| *seq).to_string();
            let items = items.into_iter().map(|(_, r)| r.clone()).collect();
            return Ok(PullPage { items, cursor: Some(cursor), has_more: false });
        }
        let items = self
            .records
            .borrow()
            .iter()
            .filter(|(k, _)| k.collection == collection)
            .map(|(k, (v, d))| ServerRecord {
                id: k.id.clone(),
                version: Some(*v),
                data: Some(d.clone()),
                modified_ms: None,
            })
            .collect();
        Ok(PullPage { items, cursor: None, has_more: false })
    }
}

fn http(status: u16) -> SyncError {
    SyncError::Http { status, message: format!("status {status}") }
}

/// A server answer refusing every op of the batch with a 400.
fn refuse_all(ops: &[Operation]) -> Result<PushResponse, Failure> {
    Ok(PushResponse {
        results: ops.iter().map(|o| result(o, Outcome::Failed(Failure::new(http(400))))).collect(),
        server_time_ms: None,
    })
}

fn result(op: &Operation, outcome: Outcome) -> OpResult {
    OpResult { op_id: op.id.clone(), outcome }
}

type TestEngine = Engine<MemoryStore, Scripted, TestClock>;

struct Env {
    store: MemoryStore,
    net: Scripted,
    clock: TestClock,
    engine: TestEngine,
}

fn config(tweak: impl FnOnce(&mut EngineConfig)) -> EngineConfig {
    let col = |merge: MergeSpec| CollectionConfig { merge, priority: Priority::Medium };
    let mut c = EngineConfig {
        collections: [
            // Field by field: the integrity tests below check that both sides' fields survive a rebase.
            ("notes".to_string(), col(MergeSpec { default: Strategy::Merge3, ..MergeSpec::default() })),
            // The default: whole-record last write wins.
            ("cards".to_string(), col(MergeSpec::default())),
            (
                "stats".to_string(),
                col(MergeSpec { fields: [("xp".to_string(), Strategy::Sum)].into(), ..MergeSpec::default() }),
            ),
            ("docs".to_string(), col(MergeSpec { default: Strategy::Manual, ..MergeSpec::default() })),
        ]
        .into(),
        retry: RetryPolicy { base_ms: 1_000, cap_ms: 30_000, jitter_ms: 0, max_attempts: 5, ..RetryPolicy::default() },
        breaker_threshold: 100,
        ..EngineConfig::default()
    };
    tweak(&mut c);
    c
}

fn env_with(tweak: impl FnOnce(&mut EngineConfig)) -> Env {
    let store = MemoryStore::new();
    let net = Scripted::default();
    let clock = TestClock { now: Rc::new(Cell::new(1_000_000)), seq: Rc::new(Cell::new(0)) };
    let engine = block_on(Engine::open(store.clone(), net.clone(), clock.clone(), config(tweak))).unwrap();
    Env { store, net, clock, engine }
}

fn env() -> Env {
    env_with(|_| {})
}

impl Env {
    fn put(&self, col: &str, id: &str, data: Value) {
        block_on(self.engine.put(col, id, data, None)).unwrap();
    }
    fn flush(&self) -> tidesync::core::engine::FlushReport {
        block_on(self.engine.flush()).unwrap()
    }
    fn queue(&self) -> Vec<Operation> {
        block_on(self.engine.queue()).unwrap()
    }
    fn record(&self, col: &str, id: &str) -> tidesync::core::op::Entity {
        block_on(self.store_entity(col, id)).unwrap()
    }
    async fn store_entity(&self, col: &str, id: &str) -> Option<tidesync::core::op::Entity> {
        self.store.dump().entities.get(&EntityKey::new(col, id)).cloned()
    }
    /// Puts `col/id` on the server at version 1 and syncs it.
    fn synced(&self, col: &str, id: &str, data: Value) {
        self.put(col, id, data);
        let r = self.flush();
        assert_eq!(r.accepted, 1);
    }
}

// ---- retries ----

#[test]
fn retries_503_twice_then_succeeds_honouring_retry_after() {
    let e = env();
    e.net.fail(503, Some(5_000)).fail(503, None);
    e.put("notes", "a", json!({"t": 1}));
    let t0 = e.clock.now_ms();

    let r = e.flush();
    assert_eq!((r.sent, r.retried, r.accepted), (1, 1, 0));
    let op = &e.queue()[0];
    assert_eq!(op.attempts, 1);
    assert_eq!(op.last_status, Some(503));
    // The server asked for 5 s: not earlier.
    assert_eq!(op.next_attempt_at, t0 + 5_000);
    assert_eq!(r.next_attempt_at, Some(t0 + 5_000));
    let id = op.id.clone();

    // Not due yet: nothing is sent.
    e.clock.advance(4_999);
    assert_eq!(e.flush().sent, 0);
    e.clock.advance(1);
    let r = e.flush();
    assert_eq!((r.sent, r.retried), (1, 1));
    let op = &e.queue()[0];
    assert_eq!(op.attempts, 2);
    // Our own backoff: base * 2^1 with full jitter, never past it.
    assert!(op.next_attempt_at <= e.clock.now_ms() + 2_000);

    e.clock.advance(2_000);
    let r = e.flush();
    assert_eq!((r.sent, r.accepted, r.remaining), (1, 1, 0));
    // The same op (same idempotency key) went out three times.
    let sent = e.net.sent();
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|b| b.len() == 1 && b[0].id == id));
    let rec = e.record("notes", "a");
    assert_eq!((rec.sync_status, rec.version), (SyncStatus::Synced, Some(1)));
    let m = block_on(e.engine.metrics()).unwrap();
    assert_eq!(m.retry_histogram[2], 1);
}

#[test]
fn a_400_is_dead_lettered_while_another_entitys_op_goes_through() {
    let e = env();
    e.put("notes", "bad", json!({"t": 1}));
    e.put("notes", "good", json!({"t": 2}));
    e.net.then(|ops| {
        let results = ops
            .iter()
            .map(|o| {
                let outcome = if o.entity_id == "bad" {
                    Outcome::Failed(Failure::new(http(400)))
                } else {
                    Outcome::Accepted { version: Some(1), data: o.payload.clone(), checksum: None }
                };
                result(o, outcome)
            })
            .collect();
        Ok(PushResponse { results, server_time_ms: None })
    });
    let r = e.flush();
    assert_eq!((r.sent, r.accepted, r.dead_lettered, r.remaining), (2, 1, 1, 0));
    assert_eq!(e.record("notes", "good").sync_status, SyncStatus::Synced);
    assert_eq!(e.record("notes", "bad").sync_status, SyncStatus::Error);
    let dead = block_on(e.engine.dead_letters()).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].code.as_str(), dead[0].status, dead[0].maybe_applied), ("HTTP", Some(400), false));
    assert!(dead[0].error.contains("400"));
}

#[test]
fn a_write_refused_for_now_until_attempts_run_out_keeps_its_place_and_no_later_write_overtakes_it() {
    for status in [429, 401] {
        let e = env_with(|c| c.retry.max_attempts = 2);
        e.synced("notes", "a", json!({"t": 0}));
        e.put("notes", "a", json!({"t": 1}));
        e.net.then(move |_| Err(Failure::new(http(status)))).then(move |_| Err(Failure::new(http(status))));
        e.flush();
        e.clock.advance(60_000);
        e.flush();
        let dead = block_on(e.engine.dead_letters()).unwrap();
        assert_eq!(dead.len(), 1, "{status}");
        let want = if status == 401 { "AUTH" } else { "HTTP" };
        assert_eq!((dead[0].code.as_str(), dead[0].status, dead[0].maybe_applied), (want, Some(status), true));
        let blocked = block_on(e.engine.status()).unwrap().blocked;
        assert_eq!(blocked.len(), 1, "{status}");
        assert_eq!(blocked[0].reason, "maybeApplied");
        let stalled = e.engine.take_events().into_iter().find_map(|ev| match ev {
            Event::Stalled { message, retry_at, .. } => Some((message, retry_at)),
            _ => None,
        });
        let (message, retry_at) = stalled.expect("a stalled event");
        assert!(message.contains("refused for now") && retry_at.is_some(), "{message}");
        // A later write waits behind it: sent first, it would be overwritten by the older one.
        e.put("notes", "a", json!({"t": 2}));
        assert_eq!(e.flush().sent, 0, "{status}");
        // One backoff cap later the flush resends it under its id, then the later write.
        e.clock.advance(31_000);
        e.flush();
        let sent: Vec<Value> = e.net.sent().iter().flatten().filter_map(|o| o.payload.clone()).collect();
        assert_eq!(sent[sent.len() - 2..], [json!({"t": 1}), json!({"t": 2})], "{status}");
        assert_eq!(e.record("notes", "a").data, Some(json!({"t": 2})), "{status}");
        assert_eq!(e.record("notes", "a").sync_status, SyncStatus::Synced, "{status}");
    }
}

#[test]
fn a_conflict_without_the_servers_state_until_attempts_run_out_does_not_hold_the_record() {
    let e = env_with(|c| c.retry.max_attempts = 2);
    e.synced("notes", "a", json!({"t": 0}));
    e.put("notes", "a", json!({"t": 1}));
    e.net.then(|_| Err(Failure::new(http(409)))).then(|_| Err(Failure::new(http(409))));
    e.flush();
    e.clock.advance(60_000);
    e.flush();
    let dead = block_on(e.engine.dead_letters()).unwrap();
    assert_eq!((dead.len(), dead[0].status, dead[0].maybe_applied), (1, Some(409), false));
    assert!(block_on(e.engine.status()).unwrap().blocked.is_empty());
    e.put("notes", "a", json!({"t": 2}));
    let r = e.flush();
    assert_eq!((r.accepted, r.remaining), (1, 0));
    assert_eq!(e.record("notes", "a").sync_status, SyncStatus::Synced);
}

#[test]
fn dead_letter_retry_gets_a_fresh_id_when_refused_and_keeps_it_when_maybe_applied() {
    let e = env_with(|c| c.retry.max_attempts = 2);
    // Refused for good: a retry is a new request (the server's ledger would replay the 400).
    e.put("notes", "refused", json!({"t": 1}));
    e.net.then(|ops| {
        Ok(PushResponse {
            results: vec![result(&ops[0], Outcome::Failed(Failure::new(http(422))))],
            server_time_ms: None,
        })
    });
    e.flush();
    let dead = block_on(e.engine.dead_letters()).unwrap();
    let refused = dead[0].op.clone();
    block_on(e.engine.retry_dead_letter(&refused.id)).unwrap();
    let q = e.queue();
    assert_eq!(q.len(), 1);
    assert_ne!(q[0].id, refused.id);
    assert!(!q[0].sent);
    assert_eq!((q[0].attempts, q[0].payload.clone()), (0, refused.payload.clone()));
    e.flush();
    assert_eq!(e.record("notes", "refused").sync_status, SyncStatus::Synced);

    // Timed out until attempts ran out: the server may have it, so the retry keeps the id and
    // everything the server may have seen under it.
    e.synced("notes", "maybe", json!({"t": 1}));
    e.put("notes", "maybe", json!({"t": 2}));
    e.net.then(|_| Err(Failure::new(SyncError::Timeout))).then(|_| Err(Failure::new(SyncError::Timeout)));
    e.flush();
    e.clock.advance(60_000);
    e.flush();
    let dead = block_on(e.engine.dead_letters()).unwrap();
    assert_eq!(dead.len(), 1);
    let maybe = dead[0].op.clone();
    assert!(dead[0].maybe_applied);
    assert_eq!(dead[0].code, "TIMEOUT");
    // Another device writes meanwhile; we learn nothing of it.
    e.net.versions.borrow_mut().insert(EntityKey::new("notes", "maybe"), 7);
    block_on(e.engine.retry_dead_letter(&maybe.id)).unwrap();
    let q = e.queue();
    assert_eq!(q[0].id, maybe.id);
    assert_eq!(q[0].base_version, maybe.base_version, "a kept idempotency key keeps its content");
    assert_eq!(q[0].payload, maybe.payload);
    assert_eq!(q[0].attempts, 0);
    e.flush();
    assert!(e.queue().is_empty());

    // Discard drops the dead letter and the write: a record the server never had is gone.
    e.put("notes", "gone", json!({"t": 3}));
    e.net.then(|ops| {
        Ok(PushResponse {
            results: vec![result(&ops[0], Outcome::Failed(Failure::new(http(400))))],
            server_time_ms: None,
        })
    });
    e.flush();
    let id = block_on(e.engine.dead_letters()).unwrap()[0].op.id.clone();
    block_on(e.engine.discard_dead_letter(&id)).unwrap();
    assert!(block_on(e.engine.dead_letters()).unwrap().is_empty());
    assert_eq!(block_on(e.engine.get("notes", "gone")).unwrap(), None);
    assert_eq!(block_on(e.engine.retry_dead_letter(&id)).unwrap_err().code(), "NOT_FOUND");
}

#[test]
fn discarded_writes_leave_records_as_the_server_last_acknowledged_them() {
    let e = env();
    e.put("notes", "kept", json!({"t": 1}));
    e.flush(); // on the server: {"t": 1}

    // A refused update, discarded: back to the acknowledged state, synced, with a change event.
    e.put("notes", "kept", json!({"t": 2}));
    e.net.then(refuse_all);
    e.flush();
    assert_eq!(e.record("notes", "kept").sync_status, SyncStatus::Error);
    let id = block_on(e.engine.dead_letters()).unwrap()[0].op.id.clone();
    e.engine.take_events();
    block_on(e.engine.discard_dead_letter(&id)).unwrap();
    let kept = e.record("notes", "kept");
    assert_eq!((kept.data, kept.sync_status), (Some(json!({"t": 1})), SyncStatus::Synced));
    let events = e.engine.take_events();
    assert!(events.iter().any(|ev| matches!(ev, Event::Change { id, .. } if id == "kept")), "{events:?}");

    // clearQueue: an update, a delete and a create never sent are all undone.
    e.put("notes", "kept", json!({"t": 3}));
    e.put("notes", "doomed", json!({"d": 1}));
    e.flush();
    block_on(e.engine.delete("notes", "doomed", None)).unwrap();
    e.put("notes", "fresh", json!({"f": 1}));
    e.put("notes", "kept", json!({"t": 4}));
    assert_eq!(block_on(e.engine.clear_queue()).unwrap(), 3);
    assert!(e.queue().is_empty());
    assert_eq!(block_on(e.engine.get("notes", "kept")).unwrap(), Some(json!({"t": 3})), "the update is undone");
    assert_eq!(block_on(e.engine.get("notes", "doomed")).unwrap(), Some(json!({"d": 1})), "the delete is undone");
    assert_eq!(e.record("notes", "doomed").sync_status, SyncStatus::Synced);
    assert_eq!(block_on(e.engine.get("notes", "fresh")).unwrap(), None, "never on the server: gone");
}

#[test]
fn circuit_breaker_opens_after_n_failures_and_probes_after_cool_down() {
    let e = env_with(|c| {
        c.breaker_threshold = 3;
        c.breaker_cooldown_ms = 10_000;
        c.retry.max_attempts = 100;
    });
    e.put("notes", "a", json!({"t": 1}));
    for _ in 0..3 {
        e.net.fail(503, None);
        e.flush();
        e.clock.advance(2_000);
    }
    let opened_at = e.clock.now_ms() - 2_000;
    assert_eq!(block_on(e.engine.status()).unwrap().breaker, BreakerState::Open { until: opened_at + 10_000 });
    let sent_before = e.net.sent().len();
    // Just before the cool-down ends the breaker is still open, whatever is due.
    e.clock.now.set(opened_at + 9_999);
    e.net.fail(503, None);
    let r = e.flush();
    assert!(r.breaker_open);
    assert_eq!(r.sent, 0);
    assert_eq!(e.net.sent().len(), sent_before);
    assert!(r.next_attempt_at.unwrap() >= opened_at + 10_000);

    // Cool-down over: one probe goes out; it fails, so the breaker opens again at once.
    e.clock.now.set(opened_at + 10_000 + 30_000);
    let r = e.flush();
    assert_eq!(r.sent, 1);
    assert!(matches!(block_on(e.engine.status()).unwrap().breaker, BreakerState::Open { .. }));
    // The next probe succeeds and closes it.
    e.clock.advance(60_000);
    let r = e.flush();
    assert_eq!(r.accepted, 1);
    assert_eq!(block_on(e.engine.status()).unwrap().breaker, BreakerState::Closed { failures: 0 });
}

#[test]
fn offline_pauses_without_counting_attempts() {
    let e = env();
    e.put("notes", "a", json!({"t": 1}));
    e.engine.set_network(NetInfo { online: false, ..NetInfo::default() });
    for _ in 0..5 {
        let r = e.flush();
        assert!(r.offline);
        assert_eq!(r.sent, 0);
    }
    // A transport that finds the device offline does not count an attempt either.
    e.engine.set_network(NetInfo::default());
    e.net.then(|_| Err(Failure::new(SyncError::Offline)));
    e.flush();
    let op = &e.queue()[0];
    assert_eq!(op.attempts, 0);
    assert!(e.net.sent().len() == 1);
    assert_eq!(block_on(e.engine.status()).unwrap().breaker, BreakerState::Closed { failures: 0 });
    e.clock.advance(5_000);
    assert_eq!(e.flush().accepted, 1);
}

#[test]
fn a_write_made_while_the_head_op_is_in_flight_is_a_second_op_and_not_lost() {
    let e = env();
    e.synced("notes", "a", json!({"t": 1}));
    e.put("notes", "a", json!({"t": 2}));
    e.net.hold.set(true);
    let mut flush = Box::pin(e.engine.flush());
    assert!(poll_once(flush.as_mut()).is_pending(), "the push is in flight");
    let in_flight = e.net.sent().last().unwrap()[0].clone();
    assert!(in_flight.sent);

    // The app writes while the request is out: a new op, the sent one is untouched.
    e.put("notes", "a", json!({"t": 3}));
    block_on(e.engine.patch("notes", "a", json!({"u": 1}), None)).unwrap();
    let q = e.queue();
    assert_eq!(q.len(), 2);
    assert_eq!(q[0], in_flight);
    assert_eq!((q[1].kind, q[1].payload.clone()), (OpKind::Update, Some(json!({"t": 3, "u": 1}))));

    e.net.hold.set(false);
    let r = block_on(flush);
    assert!(r.is_ok());
    // The second op was sent in the next pass of the same flush, against the new version.
    let sent = e.net.sent();
    let last = sent.last().unwrap();
    assert_eq!(last[0].payload, Some(json!({"t": 3, "u": 1})));
    assert_eq!(last[0].base_version, Some(2));
    let rec = e.record("notes", "a");
    assert_eq!((rec.data, rec.version, rec.sync_status), (Some(json!({"t": 3, "u": 1})), Some(3), SyncStatus::Synced));
}

// ---- conflicts ----

fn conflict_answer(version: u64, data: Value) -> impl FnOnce(&[Operation]) -> Result<PushResponse, Failure> {
    move |ops| {
        let outcome = Outcome::Conflict {
            server_version: Some(version),
            server_data: Some(data),
            deleted: false,
            server_modified_ms: Some(0),
        };
        Ok(PushResponse { results: vec![result(&ops[0], outcome)], server_time_ms: None })
    }
}

#[test]
fn manual_conflicts_wait_for_the_app_and_resolve_local_server_or_merged() {
    for choice in ["local", "server", "merged"] {
        let e = env();
        e.synced("docs", "d", json!({"title": "base", "body": "x"}));
        e.put("docs", "d", json!({"title": "mine", "body": "x"}));
        e.net.then(conflict_answer(5, json!({"title": "theirs", "body": "x"})));
        let r = e.flush();
        assert_eq!(r.conflicts, 1);
        let cs = block_on(e.engine.conflicts()).unwrap();
        assert_eq!(cs.len(), 1, "{choice}");
        assert_eq!(cs[0].local, Some(json!({"title": "mine", "body": "x"})));
        assert_eq!(cs[0].server, Some(json!({"title": "theirs", "body": "x"})));
        assert_eq!(e.record("docs", "d").sync_status, SyncStatus::Conflict);

        // The lane is paused: a write made meanwhile waits, and nothing is sent.
        e.put("docs", "d", json!({"title": "mine2", "body": "x"}));
        let before = e.net.sent().len();
        e.flush();
        assert_eq!(e.net.sent().len(), before, "{choice}: a paused lane sends nothing");

        let (c, want) = match choice {
            "local" => (Choice::Local, json!({"title": "mine", "body": "x"})),
            "server" => (Choice::Server, json!({"title": "theirs", "body": "x"})),
            _ => (Choice::Merged(json!({"title": "both", "body": "x"})), json!({"title": "both", "body": "x"})),
        };
        block_on(e.engine.resolve_conflict(&cs[0].id, c)).unwrap();
        assert!(block_on(e.engine.conflicts()).unwrap().is_empty());
        e.net.versions.borrow_mut().insert(EntityKey::new("docs", "d"), 5);
        e.flush();
        let rec = e.record("docs", "d");
        assert_eq!((rec.data, rec.sync_status), (Some(want.clone()), SyncStatus::Synced), "{choice}");
        if choice == "server" {
            // The server's state needed no write.
            assert_eq!(rec.version, Some(5));
        } else {
            let last = e.net.sent().last().unwrap()[0].clone();
            assert_eq!((last.payload, last.base_version), (Some(want), Some(5)), "{choice}");
        }
        assert_eq!(e.engine.audit_log().last().unwrap().how, "manual");
    }
}

#[test]
fn an_automatic_merge_is_requeued_under_a_fresh_id_against_the_server_version() {
    let e = env();
    e.synced("stats", "s", json!({"xp": 10, "name": "a"}));
    e.put("stats", "s", json!({"xp": 15, "name": "a"}));
    let first = e.queue()[0].clone();
    e.net.then(conflict_answer(4, json!({"xp": 13, "name": "b"})));
    let r = e.flush();
    assert_eq!((r.conflicts, r.accepted), (1, 1));
    let sent = e.net.sent();
    let requeued = &sent.last().unwrap()[0];
    assert_ne!(requeued.id, first.id);
    assert_eq!(requeued.base_version, Some(4));
    // xp: sum (13 + 5), name: the server changed it, we did not.
    assert_eq!(requeued.payload, Some(json!({"xp": 18, "name": "b"})));
    let audit = e.engine.audit_log();
    assert_eq!((audit[0].how.as_str(), audit[0].result.clone()), ("auto", Some(json!({"xp": 18, "name": "b"}))));
}

#[test]
fn equal_counters_on_both_sides_are_both_kept() {
    // Regression (simulation seed 1): both sides added 1 to 14.
    let e = env();
    e.synced("stats", "s", json!({"xp": 14}));
    e.put("stats", "s", json!({"xp": 15}));
    e.net.then(conflict_answer(2, json!({"xp": 15})));
    e.flush();
    assert_eq!(block_on(e.engine.get("stats", "s")).unwrap(), Some(json!({"xp": 16})));
}

// ---- the reference design's resolution algorithms (sync-architecture.md) ----

/// A server that applies a write only against its current version (else: a conflict with its
/// record), numbering versions as the reference server does: current + 1.
fn versioned_answer(current: u64, server: Value) -> impl FnOnce(&[Operation]) -> Result<PushResponse, Failure> {
    move |ops| {
        let outcome = if ops[0].base_version == Some(current) {
            Outcome::Accepted { version: Some(current + 1), data: ops[0].payload.clone(), checksum: None }
        } else {
            Outcome::Conflict {
                server_version: Some(current),
                server_data: Some(server),
                deleted: false,
                server_modified_ms: Some(0),
            }
        };
        Ok(PushResponse { results: vec![result(&ops[0], outcome)], server_time_ms: None })
    }
}

#[test]
fn reference_progress_resolution_latest_last_modified_wins_with_version_past_both() {
    // "Progress Data Resolution": the record with the later `lastModified` wins; the local winner
    // gets version max(local, server) + 1, the server's winner is taken as it is.
    let t = 1_705_314_600_000u64; // 2024-01-15T10:30:00Z
    let iso = |ms: u64| tidesync::core::time::iso_time(ms);
    for local_later in [true, false] {
        let e = env_with(|c| {
            let lww = CollectionConfig { merge: MergeSpec::default(), priority: Priority::High };
            c.collections.insert("progress".into(), lww);
        });
        let card = |grade: u64, interval: u64, at: u64| json!({"cardId": "c1", "grade": grade, "interval": interval, "easeFactor": 2.5, "lastModified": iso(at)});
        e.synced("progress", "c1", card(1, 1, t));
        let local_version = e.record("progress", "c1").version.unwrap();
        // This device graded the card; another device graded it too, and the server took that.
        let (local_at, server_at) = if local_later { (t + 60_000, t + 30_000) } else { (t + 30_000, t + 60_000) };
        let local = card(3, 6, local_at);
        let server = card(2, 3, server_at);
        e.put("progress", "c1", local.clone());
        let server_version = local_version + 2;
        e.net.then(versioned_answer(server_version, server.clone()));
        e.net.then(versioned_answer(server_version, server.clone()));
        let r = e.flush();
        assert_eq!(r.conflicts, 1, "local later: {local_later}");

        let rec = e.record("progress", "c1");
        assert_eq!(rec.sync_status, SyncStatus::Synced, "local later: {local_later}");
        if local_later {
            assert_eq!(rec.data, Some(local.clone()));
            assert_eq!(rec.version, Some(local_version.max(server_version) + 1));
            let last = e.net.sent().last().unwrap()[0].clone();
            assert_eq!((last.payload, last.base_version), (Some(local), Some(server_version)));
        } else {
            assert_eq!(rec.data, Some(server.clone()));
            assert_eq!(rec.version, Some(server_version));
            assert_eq!(e.net.sent().len(), 2, "the server's record needs no write");
        }
        let audit = e.engine.audit_log();
        assert_eq!(audit.last().unwrap().result, rec.data, "local later: {local_later}");
    }
}

#[test]
fn reference_stats_merge_through_a_conflict() {
    // "Statistics Merge": max of the totals, the server's streak, the latest lastStudyDate (ISO
    // strings, as the reference's toISOString() writes them), whichever side wrote last.
    let fields = [
        ("totalCardsStudied", Strategy::Max),
        ("totalStudyTime", Strategy::Max),
        ("currentStreak", Strategy::Server),
        ("lastStudyDate", Strategy::Max),
    ];
    let stats = |cards: u64, time: u64, streak: u64, date: &str| json!({"totalCardsStudied": cards, "totalStudyTime": time, "currentStreak": streak, "lastStudyDate": date});
    let base = stats(10, 100, 2, "2024-01-13T08:00:00.000Z");
    for (local_date, server_date, latest) in [
        ("2024-01-15T10:30:00.000Z", "2024-01-14T19:00:00.000Z", "2024-01-15T10:30:00.000Z"),
        ("2024-01-14T19:00:00.000Z", "2024-01-15T10:30:00.000Z", "2024-01-15T10:30:00.000Z"),
    ] {
        let e = env_with(|c| {
            let merge = MergeSpec {
                default: Strategy::Lww,
                fields: fields.iter().map(|(k, s)| (k.to_string(), *s)).collect(),
                ..MergeSpec::default()
            };
            c.collections.insert("userStats".into(), CollectionConfig { merge, priority: Priority::High });
        });
        e.synced("userStats", "me", base.clone());
        let local = stats(14, 130, 5, local_date);
        let server = stats(12, 160, 3, server_date);
        e.put("userStats", "me", local);
        // Our write is the later one (the server's record carries an old modification time), so
        // a field left to last-write-wins would come from our side.
        e.net.then(versioned_answer(3, server.clone()));
        e.net.then(versioned_answer(3, server));
        e.flush();
        let want = stats(14, 160, 3, latest);
        let rec = e.record("userStats", "me");
        assert_eq!((rec.data, rec.version, rec.sync_status), (Some(want.clone()), Some(4), SyncStatus::Synced));
        assert_eq!(e.net.sent().last().unwrap()[0].payload, Some(want));
    }
}

// ---- storage ----

// ---- integrity ----

fn corrupt(e: &Env, col: &str, id: &str, data: Value) {
    e.store.tamper(|d| d.entities.get_mut(&EntityKey::new(col, id)).unwrap().data = Some(data));
}

fn integrity_events(e: &Env) -> Vec<String> {
    e.engine
        .take_events()
        .into_iter()
        .filter_map(|ev| match ev {
            Event::Error { code, message, .. } if code == "INTEGRITY" => Some(message),
            _ => None,
        })
        .collect()
}

/// An accepted answer whose checksum is `sum` (and whose record is `data`).
fn accepted_with_checksum(
    version: u64,
    data: Option<Value>,
    sum: &str,
) -> impl FnOnce(&[Operation]) -> Result<PushResponse, Failure> {
    let sum = sum.to_string();
    move |ops| {
        let outcome = Outcome::Accepted { version: Some(version), data, checksum: Some(sum) };
        Ok(PushResponse { results: vec![result(&ops[0], outcome)], server_time_ms: None })
    }
}

#[test]
fn a_damaged_record_is_reported_never_returned_and_refetched_from_the_server() {
    let e = env();
    e.synced("notes", "a", json!({"t": 1}));
    e.synced("notes", "gone", json!({"t": 2}));
    e.put("notes", "b", json!({"t": 3}));
    // Another device changed `a` since.
    e.net.records.borrow_mut().insert(EntityKey::new("notes", "a"), (4, json!({"t": 1, "by": "other"})));
    corrupt(&e, "notes", "a", json!({"t": 999}));
    e.engine.take_events();

    // The read that meets it fails with the typed error at once: a read does no network I/O.
    let err = block_on(e.engine.get("notes", "a")).unwrap_err();
    assert_eq!(err.code(), "INTEGRITY");
    assert_eq!(e.net.pulls.get(), 0);
    assert!(e.engine.take_repair_request(), "the bindings are asked for a sync round, once");
    assert!(!e.engine.take_repair_request());
    let events = e.engine.take_events();
    assert!(events.iter().any(|ev| matches!(ev, Event::Error { code, .. } if code == "INTEGRITY")), "{events:?}");
    assert_eq!(block_on(e.engine.get("notes", "a")).unwrap_err().code(), "INTEGRITY", "never the damaged copy");
    // The next pull fetches the server's copy first (one request) and the record is whole again.
    block_on(e.engine.pull(Some("notes"))).unwrap();
    let events = e.engine.take_events();
    assert!(events.iter().any(|ev| matches!(ev, Event::Change { id, .. } if id == "a")), "{events:?}");
    assert_eq!(block_on(e.engine.get("notes", "a")).unwrap(), Some(json!({"t": 1, "by": "other"})));
    let rec = e.record("notes", "a");
    assert_eq!((rec.base.clone(), rec.version, rec.sync_status), (rec.data.clone(), Some(4), SyncStatus::Synced));

    // A listing leaves damaged records out and reports them; the next pull repairs them (one
    // fetch for all): a record the server no longer has (it deleted `gone`) is deleted.
    e.net.records.borrow_mut().remove(&EntityKey::new("notes", "gone"));
    corrupt(&e, "notes", "a", json!({"t": -1}));
    corrupt(&e, "notes", "gone", json!({"t": -2}));
    let list = block_on(e.engine.list("notes")).unwrap();
    assert_eq!(list.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["b"]);
    assert_eq!(integrity_events(&e).len(), 2);
    let fetches = e.net.pulls.get();
    block_on(e.engine.pull(Some("notes"))).unwrap();
    assert!(e.net.pulls.get() > fetches);
    let list = block_on(e.engine.list("notes")).unwrap();
    assert_eq!(list.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert!(!e.store.dump().entities.contains_key(&EntityKey::new("notes", "gone")));
}

#[test]
fn a_damaged_record_with_a_pending_write_is_restored_from_that_write() {
    // What the user expects: the write they made last, which is still on its way to the server;
    // not the server's older state.
    let e = env();
    e.synced("notes", "a", json!({"t": 1}));
    e.put("notes", "a", json!({"t": 2}));
    corrupt(&e, "notes", "a", json!({"t": 999}));
    assert_eq!(block_on(e.engine.get("notes", "a")).unwrap_err().code(), "INTEGRITY");
    assert_eq!(e.net.pulls.get(), 0, "the pending write's own copy needs no fetch");
    assert_eq!(block_on(e.engine.get("notes", "a")).unwrap(), Some(json!({"t": 2})));
    assert_eq!(e.record("notes", "a").sync_status, SyncStatus::Pending);

    // A patch never builds on a damaged copy: refused, and the record restored.
    corrupt(&e, "notes", "a", json!({"t": 999, "junk": true}));
    let err = block_on(e.engine.patch("notes", "a", json!({"u": 1}), None)).unwrap_err();
    assert_eq!(err.code(), "INTEGRITY");
    block_on(e.engine.patch("notes", "a", json!({"u": 1}), None)).unwrap();
    e.flush();
    let sent = e.net.sent().last().unwrap()[0].clone();
    assert_eq!(sent.payload, Some(json!({"t": 2, "u": 1})));
    assert_eq!(e.record("notes", "a").sync_status, SyncStatus::Synced);
}

#[test]
fn a_damaged_record_waits_for_the_server_and_the_next_pull_repairs_it() {
    let e = env();
    e.synced("notes", "a", json!({"t": 1}));
    corrupt(&e, "notes", "a", json!({"t": 999}));
    e.net.pull_fails.set(true);
    assert_eq!(block_on(e.engine.get("notes", "a")).unwrap_err().code(), "INTEGRITY");
    assert_eq!(integrity_events(&e).len(), 1);
    // The pull cannot fetch the server's copy: reported, and the record still waits.
    assert!(block_on(e.engine.pull(Some("notes"))).is_err());
    let events = integrity_events(&e);
    assert!(events.iter().any(|m| m.contains("could not be fetched")), "{events:?}");
    assert!(e.engine.take_repair_request());
    // Still damaged: still refused, never used.
    assert_eq!(block_on(e.engine.get("notes", "a")).unwrap_err().code(), "INTEGRITY");
    assert_eq!(integrity_events(&e).len(), 1, "reported again");
    e.net.pull_fails.set(false);
    let pulls = e.net.pulls.get();
    block_on(e.engine.pull(Some("notes"))).unwrap();
    assert!(e.net.pulls.get() > pulls);
    assert_eq!(block_on(e.engine.get("notes", "a")).unwrap(), Some(json!({"t": 1})));
    assert!(integrity_events(&e).is_empty());
}

#[test]
fn a_conflict_never_merges_a_damaged_copy() {
    for good_copy in [true, false] {
        let e = env();
        e.synced("notes", "a", json!({"t": 1, "u": 1}));
        e.put("notes", "a", json!({"t": 2, "u": 1}));
        corrupt(&e, "notes", "a", json!({"t": 999, "u": 1}));
        if !good_copy {
            e.store.tamper(|d| d.ops.values_mut().next().unwrap().payload = Some(json!({"t": 998, "u": 1})));
        }
        e.net.then(conflict_answer(2, json!({"t": 1, "u": 5})));
        e.flush();
        let rec = e.record("notes", "a");
        let audit = e.engine.audit_log();
        if good_copy {
            // Our side is the pending write's own copy: t from us, u from the server.
            assert_eq!(rec.data, Some(json!({"t": 2, "u": 5})));
            assert!(integrity_events(&e).is_empty());
        } else {
            // No good copy of ours is left: the server's state is taken, and the loss reported.
            assert_eq!(rec.data, Some(json!({"t": 1, "u": 5})));
            assert_eq!(audit.last().unwrap().reason, tidesync::core::op::ConflictReason::Integrity);
            assert_eq!(integrity_events(&e).len(), 1);
        }
        assert_eq!(rec.sync_status, SyncStatus::Synced, "good copy: {good_copy}");
    }
}

#[test]
fn a_server_checksum_that_does_not_match_fetches_the_servers_record() {
    let e = env();
    // Without a record in the answer: the server stored something other than what we sent.
    e.put("notes", "a", json!({"t": 1}));
    let stored = json!({"t": 1, "normalised": true});
    e.net.records.borrow_mut().insert(EntityKey::new("notes", "a"), (1, stored.clone()));
    e.net.then(accepted_with_checksum(1, None, "0bad"));
    let r = e.flush();
    assert_eq!((r.accepted, r.remaining), (1, 0));
    assert_eq!(e.net.pulls.get(), 1);
    let rec = e.record("notes", "a");
    assert_eq!(
        (rec.data.clone(), rec.base.clone(), rec.version),
        (Some(stored.clone()), Some(stored.clone()), Some(1))
    );
    assert_eq!(rec.sync_status, SyncStatus::Synced);
    assert_eq!(block_on(e.engine.get("notes", "a")).unwrap(), Some(stored), "stored under a matching checksum");
    let events = integrity_events(&e);
    assert!(events.len() == 1 && events[0].contains("0bad"), "{events:?}");

    // An echoed record that does not match the echoed checksum (damaged on the way): fetched too.
    e.put("notes", "b", json!({"t": 2}));
    e.net.records.borrow_mut().insert(EntityKey::new("notes", "b"), (1, json!({"t": 2})));
    let sum = tidesync::core::checksum::checksum(&json!({"t": 2}));
    e.net.then(accepted_with_checksum(1, Some(json!({"t": 20})), &sum));
    e.flush();
    assert_eq!(e.net.pulls.get(), 2);
    assert_eq!(e.record("notes", "b").data, Some(json!({"t": 2})));

    // An echoed record that matches it needs no fetch, even when the server normalised it.
    e.put("notes", "c", json!({"t": 3}));
    let normalised = json!({"t": 3, "id": "c"});
    let sum = tidesync::core::checksum::checksum(&normalised);
    e.net.then(accepted_with_checksum(1, Some(normalised.clone()), &sum));
    e.flush();
    assert_eq!(e.net.pulls.get(), 2);
    assert_eq!(e.record("notes", "c").data, Some(normalised));
    assert!(integrity_events(&e).len() == 1, "only b's mismatch");
}

#[test]
fn a_mismatch_whose_record_cannot_be_fetched_keeps_the_write_until_it_can() {
    let e = env();
    e.put("notes", "a", json!({"t": 1}));
    let id = e.queue()[0].id.clone();
    e.net.pull_fails.set(true);
    e.net.then(accepted_with_checksum(1, None, "0bad"));
    let r = e.flush();
    assert_eq!((r.accepted, r.retried, r.remaining), (0, 1, 1));
    let q = e.queue();
    assert_eq!((q[0].id.as_str(), q[0].sent, q[0].attempts), (id.as_str(), true, 1));
    assert_eq!(e.record("notes", "a").sync_status, SyncStatus::Pending);
    assert_eq!(integrity_events(&e).len(), 1);
    assert!(q[0].last_error.as_deref().is_some_and(|m| m.contains("could not be fetched")), "{q:?}");

    // The retry (same id: the server's ledger answers it again) finds the server reachable.
    e.net.pull_fails.set(false);
    e.net.records.borrow_mut().insert(EntityKey::new("notes", "a"), (1, json!({"t": 1, "x": 0})));
    e.net.then(accepted_with_checksum(1, None, "0bad"));
    e.clock.advance(60_000);
    let r = e.flush();
    assert_eq!((r.accepted, r.remaining), (1, 0));
    assert_eq!(e.net.sent().last().unwrap()[0].id, id);
    let rec = e.record("notes", "a");
    assert_eq!((rec.data, rec.sync_status), (Some(json!({"t": 1, "x": 0})), SyncStatus::Synced));
}

#[test]
fn a_mismatch_with_a_later_write_queued_rebases_that_write_onto_the_servers_record() {
    let e = env();
    e.put("notes", "a", json!({"t": 1}));
    e.net.hold.set(true);
    let mut flush = Box::pin(e.engine.flush());
    assert!(poll_once(flush.as_mut()).is_pending());
    // Written while the first write is in flight: made on top of it.
    e.put("notes", "a", json!({"t": 1, "u": 2}));
    e.net.records.borrow_mut().insert(EntityKey::new("notes", "a"), (1, json!({"t": 1, "s": 3})));
    e.net.versions.borrow_mut().insert(EntityKey::new("notes", "a"), 1);
    e.net.then(accepted_with_checksum(1, None, "0bad"));
    e.net.hold.set(false);
    block_on(flush).unwrap();
    // Ours (u) and the server's (s) changes since what we sent, both kept, sent against version 1.
    let last = e.net.sent().last().unwrap()[0].clone();
    assert_eq!((last.payload.clone(), last.base_version), (Some(json!({"t": 1, "u": 2, "s": 3})), Some(1)));
    let rec = e.record("notes", "a");
    assert_eq!((rec.data, rec.version, rec.sync_status), (last.payload, Some(2), SyncStatus::Synced));
    assert_eq!(e.engine.audit_log().last().unwrap().reason, tidesync::core::op::ConflictReason::Integrity);
}

#[test]
fn a_quota_failure_leaves_nothing_half_written() {
    let e = env();
    e.synced("notes", "a", json!({"t": 1}));
    let before = e.store.dump();
    e.store.fail_next(1, SyncError::QuotaExceeded("full".into()));
    let err = block_on(e.engine.put("notes", "a", json!({"t": 2}), None)).unwrap_err();
    assert_eq!(err.code(), "QUOTA_EXCEEDED");
    let after = e.store.dump();
    assert_eq!(after.entities, before.entities);
    assert_eq!(after.ops, before.ops);
    assert_eq!(after.meta, before.meta);

    // A failure while applying the server's answer: the op stays queued (sent, same id) and the
    // retry is answered from the server's ledger.
    e.put("notes", "a", json!({"t": 3}));
    let id = e.queue()[0].id.clone();
    e.net.then(|ops| {
        // The server applied it; our store then refuses the write of the answer.
        Ok(PushResponse {
            results: vec![result(
                &ops[0],
                Outcome::Accepted { version: Some(2), data: ops[0].payload.clone(), checksum: None },
            )],
            server_time_ms: None,
        })
    });
    let store = e.store.clone();
    e.net.hold.set(false);
    // Fail the transaction after `mark_sent`: the answer's.
    let mut flush = Box::pin(e.engine.flush());
    e.net.hold.set(true);
    assert!(poll_once(flush.as_mut()).is_pending());
    store.fail_next(1, SyncError::QuotaExceeded("full".into()));
    e.net.hold.set(false);
    assert_eq!(block_on(flush).unwrap_err().code(), "QUOTA_EXCEEDED");
    let q = e.queue();
    assert_eq!((q.len(), q[0].id.as_str(), q[0].sent), (1, id.as_str(), true));
    e.net.then(|ops| {
        Ok(PushResponse {
            results: vec![result(
                &ops[0],
                Outcome::Accepted { version: Some(2), data: ops[0].payload.clone(), checksum: None },
            )],
            server_time_ms: None,
        })
    });
    e.flush();
    let rec = e.record("notes", "a");
    assert_eq!((rec.data, rec.version, rec.sync_status), (Some(json!({"t": 3})), Some(2), SyncStatus::Synced));
}

// ---- regressions found by the simulation ----

#[test]
fn a_dead_lettered_create_does_not_leave_a_blind_update_behind() {
    // Simulation seed 50: the create was refused, the write queued behind it was an update with
    // no base version, and it overwrote another device's record of the same id.
    let e = env();
    e.put("stats", "s", json!({"xp": 1}));
    e.net.hold.set(true);
    let mut flush = Box::pin(e.engine.flush());
    assert!(poll_once(flush.as_mut()).is_pending());
    e.put("stats", "s", json!({"xp": 3}));
    assert_eq!(e.queue()[1].kind, OpKind::Update);
    e.net.then(|ops| {
        Ok(PushResponse {
            results: vec![result(&ops[0], Outcome::Failed(Failure::new(http(400))))],
            server_time_ms: None,
        })
    });
    // The next request: another device created the record; our write must merge with it.
    e.net.then(conflict_answer(1, json!({"xp": 10})));
    e.net.hold.set(false);
    block_on(flush).unwrap();
    // A flush with a failure stops there; the next one sends the queued write.
    e.flush();
    let sent = e.net.sent();
    assert_eq!(sent[1][0].kind, OpKind::Create, "the write behind a refused create creates");
    assert_eq!(sent[1][0].base_version, None);
    // Merged: 10 + 3 (base: nothing).
    assert_eq!(block_on(e.engine.get("stats", "s")).unwrap(), Some(json!({"xp": 13})));
}

#[test]
fn a_delete_is_not_beaten_by_the_devices_own_earlier_write_under_clock_skew() {
    // Simulation seed 63: with the server's clock 2 s behind ours, a delete 1 s after our own
    // write lost to that write (the write's stamp was raw, the delete's skew-corrected).
    let e = env();
    let t = e.clock.now_ms();
    e.net.then(move |ops| {
        Ok(PushResponse {
            results: vec![result(
                &ops[0],
                Outcome::Accepted { version: Some(1), data: ops[0].payload.clone(), checksum: None },
            )],
            server_time_ms: Some(t - 2_000),
        })
    });
    e.put("notes", "a", json!({"v": 1, "lastModified": t}));
    e.flush();
    e.clock.advance(500);
    e.put("notes", "a", json!({"v": 2, "lastModified": t + 500}));
    e.clock.advance(500);
    block_on(e.engine.delete("notes", "a", None)).unwrap();
    // Our v2 reached the server (answer lost); the delete, made against v1, conflicts with it.
    e.net.then(conflict_answer(2, json!({"v": 2, "lastModified": t + 500})));
    e.flush();
    e.flush();
    assert_eq!(block_on(e.engine.get("notes", "a")).unwrap(), None);
    let last = e.net.sent().last().unwrap()[0].clone();
    assert_eq!((last.kind, last.base_version), (OpKind::Delete, Some(2)));
}

#[test]
fn a_recreated_then_deleted_record_is_deleted_on_the_server() {
    // Simulation seed 825: delete sent and dead-lettered, record written again, then deleted:
    // the server's record must still be deleted.
    let e = env();
    e.synced("notes", "a", json!({"v": 1}));
    block_on(e.engine.delete("notes", "a", None)).unwrap();
    e.net.then(|ops| {
        Ok(PushResponse {
            results: vec![result(&ops[0], Outcome::Failed(Failure::new(http(400))))],
            server_time_ms: None,
        })
    });
    e.flush();
    e.put("notes", "a", json!({"v": 2}));
    block_on(e.engine.delete("notes", "a", None)).unwrap();
    let q = e.queue();
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].kind, q[0].base_version), (OpKind::Delete, Some(1)));
    assert_ne!(e.record("notes", "a").sync_status, SyncStatus::Synced);
    e.flush();
    assert!(!e.store.dump().entities.contains_key(&EntityKey::new("notes", "a")));
}

#[test]
fn a_dead_letter_the_server_may_have_applied_pauses_only_its_record() {
    let e = env_with(|c| c.retry.max_attempts = 1);
    e.synced("stats", "s", json!({"xp": 10}));
    e.put("stats", "s", json!({"xp": 15}));
    e.net.then(|_| Err(Failure::new(SyncError::Timeout)));
    e.flush();
    let dead = block_on(e.engine.dead_letters()).unwrap();
    assert!(dead[0].maybe_applied);
    // A later write to the same record waits; another record still flows.
    e.put("stats", "s", json!({"xp": 17}));
    e.put("notes", "other", json!({"t": 1}));
    let before = e.net.sent().len();
    let r = e.flush();
    assert_eq!((r.accepted, r.remaining), (1, 1), "{r:?}");
    assert!(e.net.sent()[before..].iter().flatten().all(|o| o.entity_id == "other"));
    // Retried, the dead letter goes first, under its own id, then the later write.
    block_on(e.engine.retry_dead_letter(&dead[0].op.id)).unwrap();
    let q = e.queue();
    assert_eq!((q[0].id.as_str(), q[0].payload.clone()), (dead[0].op.id.as_str(), Some(json!({"xp": 15}))));
    assert_eq!(q[1].payload, Some(json!({"xp": 17})));
    e.flush();
    assert!(e.queue().is_empty());
    assert_eq!(e.record("stats", "s").base, Some(json!({"xp": 17})));
}

#[test]
fn a_batch_refused_as_too_large_is_split_so_only_the_oversized_write_is_dead_lettered() {
    let e = env();
    e.put("notes", "small-1", json!({"t": 1}));
    e.put("notes", "huge", json!({"t": "x".repeat(1_000)}));
    e.put("notes", "small-2", json!({"t": 2}));
    // The server refuses any request that holds the huge record.
    for _ in 0..3 {
        e.net.then(|ops| {
            if ops.iter().any(|o| o.entity_id == "huge") {
                Err(Failure::new(http(413)))
            } else {
                Ok(PushResponse {
                    results: ops
                        .iter()
                        .map(|o| result(o, Outcome::Accepted { version: Some(1), data: None, checksum: None }))
                        .collect(),
                    server_time_ms: None,
                })
            }
        });
    }
    let r = e.flush();
    assert_eq!((r.accepted, r.dead_lettered, r.remaining), (2, 1, 0), "{r:?}");
    let dead = block_on(e.engine.dead_letters()).unwrap();
    assert_eq!((dead.len(), dead[0].op.entity_id.as_str(), dead[0].status), (1, "huge", Some(413)));
    assert_eq!(e.record("notes", "small-1").sync_status, SyncStatus::Synced);
}

#[test]
fn an_apps_merge_function_resolves_or_leaves_the_conflict_to_the_app() {
    let e = env();
    // Joins the two bodies; leaves the conflict to the app when the titles differ; fails on "boom".
    e.engine.set_resolver(
        "notes",
        std::rc::Rc::new(|base, local, server| {
            let (l, s) = (local.unwrap(), server.unwrap());
            assert_eq!(base, Some(&json!({"title": "t", "body": "base"})));
            if s["body"] == json!("boom") {
                return Err("cannot merge boom".into());
            }
            if l["title"] != s["title"] {
                return Ok(None);
            }
            Ok(Some(json!({"title": l["title"].clone(), "body": format!("{}|{}", s["body"].as_str().unwrap(), l["body"].as_str().unwrap())})))
        }),
    );
    for (server, want) in [("theirs", "merged"), ("boom", "queued"), ("retitled", "queued")] {
        let id = format!("n-{server}");
        e.synced("notes", &id, json!({"title": "t", "body": "base"}));
        e.put("notes", &id, json!({"title": "t", "body": "mine"}));
        let title = if server == "retitled" { "other" } else { "t" };
        e.net.then(conflict_answer(5, json!({"title": title, "body": server})));
        let r = e.flush();
        assert_eq!(r.conflicts, 1, "{server}");
        let queued = block_on(e.engine.conflicts()).unwrap().into_iter().any(|c| c.entity_id == id);
        match want {
            "merged" => {
                assert!(!queued);
                assert_eq!(e.record("notes", &id).data, Some(json!({"title": "t", "body": "theirs|mine"})));
            }
            _ => {
                assert!(queued, "{server}: the conflict waits for the app");
                assert_eq!(e.record("notes", &id).sync_status, SyncStatus::Conflict);
            }
        }
    }
    let errors: Vec<_> = e.engine.take_events().into_iter().filter(|ev| matches!(ev, Event::Error { .. })).collect();
    assert!(format!("{errors:?}").contains("cannot merge boom"), "{errors:?}");
}

#[test]
fn a_local_write_is_one_store_transaction() {
    let e = env();
    for (what, f) in [
        ("put", Box::new(|e: &Env| e.put("notes", "a", json!({"t": 1}))) as Box<dyn Fn(&Env)>),
        ("patch", Box::new(|e: &Env| drop(block_on(e.engine.patch("notes", "a", json!({"u": 2}), None)).unwrap()))),
        ("delete", Box::new(|e: &Env| assert!(block_on(e.engine.delete("notes", "a", None)).unwrap()))),
        ("delete of nothing", Box::new(|e: &Env| assert!(!block_on(e.engine.delete("notes", "a", None)).unwrap()))),
    ] {
        let before = e.store.calls();
        f(&e);
        assert_eq!(e.store.calls() - before, 1, "{what}");
    }
}

#[test]
fn put_many_is_one_transaction_and_all_or_nothing() {
    let e = env();
    e.put("notes", "a", json!({"t": 0}));
    let records = |n: usize| (0..n).map(|i| (format!("m{i}"), json!({"i": i}))).collect::<Vec<_>>();

    let before = e.store.calls();
    let stored = block_on(e.engine.put_many("notes", records(100), None)).unwrap();
    assert_eq!(e.store.calls() - before, 1, "100 records, one transaction");
    assert_eq!(stored.len(), 100);
    assert_eq!(stored[42].as_ref().and_then(|s| s.data.clone()), Some(json!({"i": 42})));
    assert_eq!(e.queue().len(), 101, "one op per new record");

    // A repeated id coalesces into one op holding the last data; an existing record is updated.
    let stored = block_on(e.engine.put_many(
        "notes",
        vec![("r".into(), json!({"v": 1})), ("r".into(), json!({"v": 2})), ("a".into(), json!({"t": 1}))],
        None,
    ))
    .unwrap();
    assert_eq!(stored[1].as_ref().and_then(|s| s.data.clone()), Some(json!({"v": 2})));
    assert_eq!(e.record("notes", "r").data, Some(json!({"v": 2})));
    assert_eq!(e.queue().iter().filter(|o| o.entity_id == "r").count(), 1);

    // One bad record: nothing of the batch is written.
    let queued = e.queue().len();
    let err =
        block_on(e.engine.put_many("notes", vec![("ok".into(), json!({"v": 1})), ("bad".into(), json!([1]))], None))
            .unwrap_err();
    assert_eq!(err.code(), "INVALID_INPUT", "{err}");
    assert!(
        block_on(e.engine.record("notes", "ok")).unwrap().is_none(),
        "the good record of a failed batch is not stored"
    );
    assert_eq!(e.queue().len(), queued);

    // A storage failure (quota) mid-batch: nothing half-written.
    e.store.fail_next(1, SyncError::QuotaExceeded("full".into()));
    let err = block_on(e.engine.put_many("notes", records(3), None)).unwrap_err();
    assert_eq!(err.code(), "QUOTA_EXCEEDED");
    assert_eq!(e.queue().len(), queued);

    // Unknown collection and bad ids are errors even for an empty or partly valid batch.
    assert_eq!(block_on(e.engine.put_many("nope", vec![], None)).unwrap_err().code(), "INVALID_INPUT");
    assert_eq!(
        block_on(e.engine.put_many("notes", vec![("".into(), json!({}))], None)).unwrap_err().code(),
        "INVALID_INPUT"
    );
    assert!(block_on(e.engine.put_many("notes", vec![], None)).unwrap().is_empty());

    // And the batch syncs like single puts: every op of it sent once.
    e.flush();
    assert!(e.queue().is_empty());
    let sent: Vec<String> = e.net.sent().concat().into_iter().map(|o| o.entity_id).collect();
    assert_eq!(sent.len(), 102, "{sent:?}");
    assert_eq!(sent.iter().filter(|id| *id == "r").count(), 1);
}

#[test]
fn a_write_made_during_a_long_flush_is_sent_with_the_next_batch() {
    let e = env_with(|c| c.max_batch_size = 10);
    for i in 0..30 {
        e.put("notes", &format!("n{i:02}"), json!({"i": i}));
    }
    e.net.hold.set(true);
    let mut flush = Box::pin(e.engine.flush());
    for _ in 0..100 {
        if e.net.sent().len() == 1 {
            break;
        }
        assert!(poll_once(flush.as_mut()).is_pending());
    }
    assert_eq!(e.net.sent().len(), 1, "the first batch is in flight");
    block_on(e.engine.put("notes", "urgent", json!({"u": 1}), Some(Priority::High))).unwrap();
    e.net.hold.set(false);
    let report = block_on(flush).unwrap();
    let batches: Vec<Vec<String>> =
        e.net.sent().iter().map(|b| b.iter().map(|o| o.entity_id.clone()).collect()).collect();
    assert!(batches[1].contains(&"urgent".to_string()), "the next batch carries it: {batches:?}");
    assert_eq!((report.remaining, batches.concat().len()), (0, 31), "{report:?}");
}

#[test]
fn discarding_one_dead_letter_keeps_a_later_one_of_the_same_record() {
    let e = env();
    e.put("notes", "r", json!({"v": 1}));
    e.flush();
    e.put("notes", "r", json!({"v": 2}));
    e.net.then(refuse_all);
    e.flush();
    e.put("notes", "r", json!({"v": 3}));
    e.net.then(refuse_all);
    e.flush();
    let dead = block_on(e.engine.dead_letters()).unwrap();
    assert_eq!(dead.len(), 2);
    let first = dead.iter().find(|d| d.op.payload == Some(json!({"v": 2}))).unwrap().op.id.clone();
    block_on(e.engine.discard_dead_letter(&first)).unwrap();
    assert_eq!(block_on(e.engine.get("notes", "r")).unwrap(), Some(json!({"v": 3})), "the later write stays");
    let last = block_on(e.engine.dead_letters()).unwrap()[0].op.id.clone();
    block_on(e.engine.discard_dead_letter(&last)).unwrap();
    assert_eq!(block_on(e.engine.get("notes", "r")).unwrap(), Some(json!({"v": 1})), "then back to the server's");
}

#[test]
fn numbers_survive_json_text_exactly() {
    // What a record goes through at the JS boundary and on the wire: text, parsed, written again.
    for text in ["19.990000000000002", "-122.41941550000001", "0.30000000000000004", "1e-7", "123456789012345680000"] {
        let v: Value = tidesync::core::json::parse(text).unwrap();
        let back: f64 = tidesync::core::json::text(&v).parse().unwrap();
        assert_eq!(back.to_bits(), text.parse::<f64>().unwrap().to_bits(), "{text}");
    }
}

#[test]
fn a_write_the_server_may_have_applied_stalls_visibly_and_settles_itself() {
    let e = env_with(|c| c.retry.max_attempts = 1);
    e.synced("stats", "s", json!({"xp": 10}));
    e.put("stats", "s", json!({"xp": 15}));
    e.net.then(|_| Err(Failure::new(SyncError::Timeout)));
    e.engine.take_events();
    e.flush();
    let dead = block_on(e.engine.dead_letters()).unwrap();
    assert!(dead[0].maybe_applied);
    let settle_at = e.clock.now_ms() + 30_000;
    // An event says so, and status() names the record, the op, why and when it settles.
    let stalled: Vec<Event> =
        e.engine.take_events().into_iter().filter(|ev| matches!(ev, Event::Stalled { .. })).collect();
    assert_eq!(
        stalled,
        vec![Event::Stalled {
            op_id: dead[0].op.id.clone(),
            collection: "stats".into(),
            id: "s".into(),
            message: format!("stats/s: writes wait: the server may have applied {} (request timed out)", dead[0].op.id),
            retry_at: Some(settle_at),
        }]
    );
    e.put("stats", "s", json!({"xp": 17}));
    let status = block_on(e.engine.status()).unwrap();
    assert_eq!((status.pending, status.dead_letters, status.blocked.len()), (1, 1, 1), "{status:?}");
    let b = &status.blocked[0];
    assert_eq!(
        (b.reason, b.op_id.as_deref(), b.retry_at),
        ("maybeApplied", Some(dead[0].op.id.as_str()), Some(settle_at))
    );
    // Before its time nothing of that record is sent.
    let before = e.net.sent().len();
    e.flush();
    assert_eq!(e.net.sent().len(), before);
    // Then the flush resends it under the same id (the server's ledger answers), and the later write follows.
    e.clock.advance(30_000);
    let r = e.flush();
    assert_eq!((r.accepted, r.remaining), (2, 0), "{r:?}");
    let sent: Vec<String> = e.net.sent()[before..].iter().flatten().map(|o| o.id.clone()).collect();
    assert_eq!(sent[0], dead[0].op.id);
    let status = block_on(e.engine.status()).unwrap();
    assert_eq!((status.pending, status.dead_letters, status.blocked.len()), (0, 0, 0), "{status:?}");
    assert_eq!(e.record("stats", "s").base, Some(json!({"xp": 17})));
}

#[test]
fn a_stalled_write_past_its_age_waits_for_the_app_and_says_so() {
    let e = env_with(|c| {
        c.retry.max_attempts = 1;
        c.retry.max_age_ms = 20_000;
    });
    e.put("notes", "n", json!({"t": 1}));
    e.net.then(|_| Err(Failure::new(SyncError::Timeout)));
    e.flush();
    let status = block_on(e.engine.status()).unwrap();
    assert_eq!(status.blocked[0].retry_at, None, "older than maxAgeMs by then: only the app settles it");
    e.clock.advance(120_000);
    let before = e.net.sent().len();
    e.flush();
    assert_eq!(e.net.sent().len(), before, "not resent on its own");
    assert_eq!(block_on(e.engine.status()).unwrap().blocked.len(), 1);
}

#[test]
fn the_default_lww_takes_the_later_record_whole() {
    let iso = |ms: u64| tidesync::core::time::iso_time(ms);
    let t = 1_705_314_600_000u64;
    for local_later in [true, false] {
        let e = env();
        let card =
            |grade: u64, interval: u64, at: u64| json!({"grade": grade, "interval": interval, "lastModified": iso(at)});
        e.synced("cards", "c", card(1, 1, t));
        let version = e.record("cards", "c").version.unwrap();
        // This device changed the grade; another changed the interval.
        let (l, s) = if local_later { (t + 60_000, t + 30_000) } else { (t + 30_000, t + 60_000) };
        let (local, server) = (card(3, 1, l), card(1, 4, s));
        e.put("cards", "c", local.clone());
        e.net.then(versioned_answer(version + 1, server.clone()));
        e.flush();
        // Never {grade: 3, interval: 4}: a record no device wrote.
        let want = if local_later { local } else { server };
        assert_eq!(e.record("cards", "c").data, Some(want), "local later: {local_later}");
    }
}

#[test]
fn a_version_refresh_against_an_unchanged_server_record_is_no_conflict() {
    // A REST write whose version was unknown reads the record first; the server still holds what we
    // last saw: our write goes out on its version, with no conflict counted or logged.
    let e = env();
    e.synced("cards", "c", json!({"grade": 1}));
    e.put("cards", "c", json!({"grade": 2}));
    e.net.then(conflict_answer(7, json!({"grade": 1})));
    let r = e.flush();
    assert_eq!((r.conflicts, r.accepted, r.remaining), (0, 1, 0), "{r:?}");
    assert!(e.engine.audit_log().is_empty());
    let last = e.net.sent().last().unwrap()[0].clone();
    assert_eq!((last.payload, last.base_version), (Some(json!({"grade": 2})), Some(7)));
}

#[test]
fn the_audit_trail_survives_a_reload_and_stays_bounded() {
    let e = env_with(|c| c.audit_log_size = 2);
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        e.synced("cards", id, json!({"grade": 1}));
        e.put("cards", id, json!({"grade": 2}));
        e.net.then(conflict_answer(5 + i as u64, json!({"grade": 3})));
        e.flush();
    }
    let kept: Vec<String> = e.engine.audit_log().iter().map(|a| a.id.clone()).collect();
    assert_eq!(kept, ["b", "c"]);
    // Another session over the same database reads the trail back, the newest last.
    let reopened =
        block_on(Engine::open(e.store.clone(), e.net.clone(), e.clock.clone(), config(|c| c.audit_log_size = 2)))
            .unwrap();
    assert_eq!(reopened.audit_log(), e.engine.audit_log());
    assert_eq!(reopened.audit_log()[1].server, Some(json!({"grade": 3})));
}

#[test]
fn a_change_pulled_while_our_write_is_in_flight_comes_again_after_the_answer() {
    let e = env();
    e.synced("notes", "a", json!({"t": 1}));
    e.put("notes", "a", json!({"t": 2}));
    e.net.fail(503, None);
    e.flush();
    assert!(e.queue()[0].sent, "in flight: it may have reached the server");
    // Another device's change arrives on the feed meanwhile: held back, and the cursor stays.
    let theirs = ServerRecord { id: "a".into(), version: Some(3), data: Some(json!({"t": 9})), modified_ms: None };
    *e.net.feed.borrow_mut() = Some(vec![(1, theirs)]);
    let r = block_on(e.engine.pull(Some("notes"))).unwrap();
    assert_eq!((r.received, r.skipped), (1, 1), "{r:?}");
    assert_eq!(block_on(e.store.get_meta("cursor:notes")).unwrap(), None);
    // Our write is answered (at version 2: before their change), then the next pull brings theirs.
    e.clock.advance(60_000);
    e.flush();
    assert_eq!(e.record("notes", "a").version, Some(2));
    let r = block_on(e.engine.pull(Some("notes"))).unwrap();
    assert_eq!((r.received, r.applied), (1, 1), "{r:?}");
    let rec = e.record("notes", "a");
    assert_eq!((rec.data, rec.version), (Some(json!({"t": 9})), Some(3)));
    assert_eq!(block_on(e.store.get_meta("cursor:notes")).unwrap(), Some(json!("1")));
}

#[test]
fn a_flush_reads_the_dead_letters_for_settling_only_when_one_may_be_due() {
    let e = env();
    let flush_calls = |e: &Env| {
        let before = e.store.calls();
        e.flush();
        e.store.calls() - before
    };
    // The first flush looks at what an earlier session may have left; later ones do not.
    let first = flush_calls(&e);
    let empty = flush_calls(&e);
    assert_eq!((first, empty), (empty + 1, 2), "an empty flush: the queue and the paused lanes");
    assert_eq!(flush_calls(&e), empty);
}

#[test]
fn status_reads_no_queue_and_counts_again_after_another_tab_wrote() {
    let e = env();
    for i in 0..50 {
        e.put("notes", &format!("n{i}"), json!({"i": i}));
    }
    // Counted once, at the first status() (not at open); then kept as transactions commit:
    // status() costs no store call at all while there is no conflict or dead letter to list.
    let before = e.store.calls();
    assert_eq!(block_on(e.engine.status()).unwrap().pending, 50);
    assert_eq!(e.store.calls() - before, 1, "one count");
    e.put("notes", "n50", json!({"i": 50}));
    let before = e.store.calls();
    let s = block_on(e.engine.status()).unwrap();
    assert_eq!((s.pending, s.conflicts, s.dead_letters, e.store.calls() - before), (51, 0, 0, 0));
    assert_eq!(s.next_attempt_at, Some(e.clock.now_ms()), "the writes are due now");

    // Another tab: a second engine over the same database, whose writes this one does not see.
    let other = block_on(Engine::open(e.store.clone(), e.net.clone(), e.clock.clone(), config(|_| {}))).unwrap();
    block_on(other.put("notes", "from-the-other-tab", json!({}), None)).unwrap();
    block_on(other.delete("notes", "n0", None)).unwrap();
    block_on(other.put("notes", "another", json!({}), None)).unwrap();
    assert_eq!(block_on(e.engine.status()).unwrap().pending, 51, "kept, not counted: it has not heard yet");
    // Its message arrives: the next status() counts once (the store's count(), no queue read), and
    // keeps the counts again.
    e.engine.queue_changed();
    assert_eq!(e.engine.kept_counts(), None);
    let before = e.store.calls();
    assert_eq!(block_on(e.engine.status()).unwrap().pending, 52);
    assert_eq!(block_on(e.engine.status()).unwrap().pending, 52);
    assert_eq!(e.store.calls() - before, 1, "one count for two status() calls");
    assert!(e.engine.kept_counts().is_some());

    // A flush answers them all; the queue is empty and nothing is due.
    e.clock.advance(1);
    let r = e.flush();
    assert_eq!((r.accepted, r.remaining), (52, 0));
    let s = block_on(e.engine.status()).unwrap();
    assert_eq!((s.pending, s.next_attempt_at), (0, None));
}

#[test]
fn counts_stay_exact_through_conflicts_dead_letters_and_their_resolution() {
    let e = env_with(|c| c.retry.max_attempts = 1);
    let check = |what: &str| {
        let d = e.store.dump();
        let s = block_on(e.engine.status()).unwrap();
        assert_eq!(
            (s.pending, s.dead_letters, s.conflicts),
            (d.ops.len(), d.dead_letters.len(), d.conflicts.len()),
            "{what}"
        );
        s
    };
    e.synced("docs", "d", json!({"title": "base"}));
    e.put("docs", "d", json!({"title": "mine"}));
    e.put("notes", "a", json!({"t": 1}));
    check("two writes");
    // One batch: the server holds another version of the doc, and refuses the note for good.
    e.net.then(|ops| {
        let outcome = |o: &Operation| match o.collection.as_str() {
            "docs" => Outcome::Conflict {
                server_version: Some(5),
                server_data: Some(json!({"title": "theirs"})),
                deleted: false,
                server_modified_ms: Some(0),
            },
            _ => Outcome::Failed(Failure::new(http(400))),
        };
        Ok(PushResponse { results: ops.iter().map(|o| result(o, outcome(o))).collect(), server_time_ms: None })
    });
    assert_eq!(e.flush().sent, 2);
    let s = check("a manual conflict and a dead letter");
    assert_eq!((s.conflicts, s.dead_letters, s.blocked.len()), (1, 1, 1));
    let id = block_on(e.engine.conflicts()).unwrap()[0].id.clone();
    block_on(e.engine.resolve_conflict(&id, Choice::Server)).unwrap();
    check("resolved");
    let op = block_on(e.engine.dead_letters()).unwrap()[0].op.id.clone();
    block_on(e.engine.retry_dead_letter(&op)).unwrap();
    check("retried");
    e.clock.advance(60_000);
    e.flush();
    assert_eq!(check("flushed").pending, 0);
}

// ---- long calls stored in parts ----

/// An engine over `e`'s store, server and clock whose `on_events` hook takes the queued events, as
/// the browser's does, recording how many each stored part queued.
fn probed(e: &Env, tweak: impl FnOnce(&mut EngineConfig)) -> (Rc<TestEngine>, Rc<RefCell<Vec<usize>>>) {
    let engine =
        Rc::new(block_on(Engine::open(e.store.clone(), e.net.clone(), e.clock.clone(), config(tweak))).unwrap());
    let seen = Rc::new(RefCell::new(Vec::new()));
    let (s, weak) = (seen.clone(), Rc::downgrade(&engine));
    engine.on_events(Box::new(move || {
        let n = weak
            .upgrade()
            .map_or(0, |en| en.take_events().iter().filter(|ev| matches!(ev, Event::Change { .. })).count());
        s.borrow_mut().push(n);
    }));
    (engine, seen)
}

#[test]
fn a_page_larger_than_a_transaction_is_stored_in_parts_and_its_cursor_with_the_last() {
    let e = env();
    e.synced("notes", "r0499", json!({"t": 1}));
    e.put("notes", "r0499", json!({"t": 2}));
    e.net.fail(503, None);
    e.flush(); // in flight now: the pulled change to r0499 is held back
    let record = |i: u64| ServerRecord {
        id: format!("r{i:04}"),
        version: Some(5),
        data: Some(json!({"i": i})),
        modified_ms: None,
    };
    *e.net.feed.borrow_mut() = Some((0..2_600).map(|i| (i + 1, record(i))).collect());
    let (engine, parts) = probed(&e, |_| {});
    let r = block_on(engine.pull(Some("notes"))).unwrap();
    assert_eq!((r.received, r.applied, r.skipped), (2_600, 2_599, 1), "{r:?}");
    // Eleven transactions of 250 (the last 100); the changes are handed over whenever 500 or more
    // are queued (after the third part: 749; then every second one), the rest when pull() returns.
    assert_eq!(*parts.borrow(), [749, 500, 500, 500]);
    let rest = engine.take_events().iter().filter(|ev| matches!(ev, Event::Change { .. })).count();
    assert_eq!(rest, 350);
    assert_eq!(block_on(e.store.get_meta("cursor:notes")).unwrap(), None, "a record was held: the page comes again");
    assert_eq!(e.record("notes", "r2599").data, Some(json!({"i": 2599})));

    // Answered, the page comes again: what is stored already is unchanged, the held record taken.
    e.clock.advance(60_000);
    e.flush();
    parts.borrow_mut().clear();
    let r = block_on(engine.pull(Some("notes"))).unwrap();
    assert_eq!((r.received, r.applied), (2_600, 1), "{r:?}");
    assert!(parts.borrow().is_empty(), "one change: delivered when pull() returns");
    assert_eq!(block_on(e.store.get_meta("cursor:notes")).unwrap(), Some(json!("2600")));
}

#[test]
fn a_batch_larger_than_a_transaction_is_answered_in_parts() {
    let tier = tidesync::core::netpolicy::Tier { interval_ms: 1_000, batch_size: 1_000 };
    let big = |c: &mut EngineConfig| {
        c.net_policy = tidesync::core::netpolicy::NetPolicy { good: tier, fair: tier, poor: tier }
    };
    let e = env_with(big);
    for i in 0..2_600 {
        e.put("cards", &format!("c{i:04}"), json!({"i": i}));
    }
    let (engine, parts) = probed(&e, big);
    let r = block_on(engine.flush()).unwrap();
    assert_eq!((r.sent, r.accepted), (2_600, 2_600), "{r:?}");
    assert_eq!(e.net.sent().len(), 3, "1,000 per request");
    // Each request's answers are stored in parts of 250; their changes are handed over at 500.
    assert_eq!(*parts.borrow(), [500, 500, 500, 500, 500]);
    assert!(e.queue().is_empty());
}
