//! Native micro-benchmarks of the engine core. Run in release:
//!
//! ```sh
//! cargo run --release --example bench_core
//! ```
//!
//! 1. Enqueue with coalescing: 100,000 local writes over 10,000 records (each record written
//!    ten times, so every write after the first coalesces into the record's unsent op), measured
//!    through the pure queue logic (`local_write` in one transaction snapshot) and through
//!    `Engine::put` on the memory store (one store transaction per write).
//! 2. Choosing the ready lane heads among 100,000 pending ops over 10,000 records
//!    (`ready_heads`, batch of 10), in microseconds per pick.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use tidesync::core::sorted::VecSet;

use tidesync::core::engine::{CollectionConfig, Engine, EngineConfig};
use tidesync::core::op::{EntityKey, OpKind, Operation, Priority};
use tidesync::core::queue::{local_write, ready_heads, Mutation};
use tidesync::core::traits::{Clock, Failure, PushResponse, Transport, Tx};
use tidesync::json;
use tidesync::store::memory::MemoryStore;

const WRITES: usize = 100_000;
const RECORDS: usize = 10_000;

fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            return v;
        }
    }
}

struct Counter(std::cell::Cell<u64>);

impl Clock for Counter {
    fn now_ms(&self) -> u64 {
        1_700_000_000_000
    }
    async fn sleep(&self, _ms: u64) {}
    fn random_u64(&self) -> u64 {
        // splitmix64 over a counter: distinct op ids.
        let mut z = self.0.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.0.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

struct NoNet;

impl Transport for NoNet {
    async fn push(&self, _ops: &[Operation], _device: &str) -> Result<PushResponse, Failure> {
        Ok(PushResponse::default())
    }
}

fn record(i: usize, n: usize) -> tidesync::core::value::Value {
    json!({"title": format!("card {i}"), "grade": n % 5, "reviews": n, "tags": ["a", "b"]})
}

fn bench_local_write() -> f64 {
    let mut tx = Tx::default();
    let started = Instant::now();
    for n in 0..WRITES {
        let i = n % RECORDS;
        let key = EntityKey::new("cards", format!("c{i}"));
        let m = if n < RECORDS { Mutation::Put(record(i, n)) } else { Mutation::Patch(json!({"reviews": n})) };
        local_write(&mut tx, &key, m, 0, &mut || format!("op{n}"), Priority::Medium).unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let ops: usize = tx.ops().count();
    assert_eq!(ops, RECORDS, "every record's writes coalesced into one op");
    WRITES as f64 / secs
}

fn bench_engine_put() -> f64 {
    let mut config = EngineConfig::default();
    config
        .collections
        .insert("cards".into(), CollectionConfig { merge: Default::default(), priority: Priority::Medium });
    let store = MemoryStore::new();
    let engine = block_on(Engine::open(store.clone(), NoNet, Counter(0.into()), config)).unwrap();
    let started = Instant::now();
    for n in 0..WRITES {
        let i = n % RECORDS;
        let id = format!("c{i}");
        if n < RECORDS {
            block_on(engine.put("cards", &id, record(i, n), None)).unwrap();
        } else {
            block_on(engine.patch("cards", &id, json!({"reviews": n}), None)).unwrap();
        }
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(store.dump().ops.len(), RECORDS);
    WRITES as f64 / secs
}

fn bench_ready_heads() -> (f64, usize) {
    let mut ops = Vec::with_capacity(WRITES);
    for seq in 0..WRITES as u64 {
        let i = (seq as usize * 7_919) % RECORDS;
        ops.push(Operation {
            id: format!("op{seq}"),
            seq,
            collection: "cards".into(),
            entity_id: format!("c{i}"),
            kind: OpKind::Update,
            payload: Some(json!({"n": seq})),
            base_version: Some(1),
            priority: [Priority::High, Priority::Medium, Priority::Low][(seq % 3) as usize],
            created_at: 0,
            attempts: 0,
            // A third of the heads are backing off.
            next_attempt_at: if seq % 3 == 0 { 10_000 } else { 0 },
            last_error: None,
            last_status: None,
            checksum: String::new(),
            sent: false,
            patch: None,
        });
    }
    let paused: VecSet<EntityKey> = (0..100).map(|i| EntityKey::new("cards", format!("c{i}"))).collect();
    let rounds = 50;
    let mut picked = 0;
    let started = Instant::now();
    for _ in 0..rounds {
        picked = ready_heads(&ops, &paused, 5_000, 10).len();
    }
    (started.elapsed().as_secs_f64() * 1e6 / rounds as f64, picked)
}

fn main() {
    let pure = bench_local_write();
    println!("enqueue with coalescing, local_write only: {WRITES} writes over {RECORDS} records: {pure:>12.0} ops/s");
    let engine = bench_engine_put();
    println!("enqueue with coalescing, Engine::put on MemoryStore:                  {engine:>12.0} ops/s");
    let (us, picked) = bench_ready_heads();
    println!("ready heads among {WRITES} pending ops over {RECORDS} records (batch {picked}): {us:>10.0} µs per pick");
}
