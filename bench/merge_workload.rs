//! The merge benchmark's workload, shared by the native run (`examples/bench_merge.rs`) and the wasm
//! run in headless Chromium (`tests/web_merge_bench.rs`), so both time the very same merges: 100,000
//! conflicting 10-field records through `tidesync::core::merge::merge`, beside a whole-record
//! last-write-wins baseline (cloning the winning side, the least work any resolver must do to
//! produce a record).

use std::hint::black_box;

use tidesync::core::merge::{merge, MergeSpec, OnDeleted, Resolution, Stamps, Strategy};
use tidesync::core::value::Value;
use tidesync::json;

pub const RECORDS: usize = 100_000;
pub const FIELDS: usize = 10;

/// One conflict: both sides changed the record since `base`, some fields on one side only, two on
/// both, so every strategy in the spec has real work (no early "equal sides" exit).
pub fn triple(i: usize) -> (Value, Value, Value) {
    let base = json!({
        "title": format!("note {i}"), "body": "lorem ipsum dolor sit amet", "done": false,
        "priority": i % 3, "tags": ["a", "b"], "count": 10, "best": 5,
        "color": "blue", "due": "2024-05-01", "owner": format!("user-{}", i % 97),
    });
    let mut local = base.clone();
    local["title"] = json!(format!("note {i} (edited here)"));
    local["count"] = json!(12);
    local["tags"] = json!(["a", "b", "local"]);
    local["best"] = json!(7);
    local["color"] = json!("green");
    let mut server = base.clone();
    server["body"] = json!("changed on another device");
    server["count"] = json!(11);
    server["tags"] = json!(["a", "server"]);
    server["best"] = json!(6);
    server["color"] = json!("red");
    (base, local, server)
}

pub fn spec() -> MergeSpec {
    MergeSpec {
        // Field by field, as the benchmark has always measured (`lww` takes the unnamed fields whole).
        default: Strategy::Merge3,
        fields: [("count", Strategy::Sum), ("tags", Strategy::Union), ("best", Strategy::Max)]
            .into_iter()
            .map(|(k, s)| (k.to_string(), s))
            .collect(),
        groups: Vec::new(),
        on_deleted: OnDeleted::Recreate,
    }
}

pub fn stamps() -> Stamps {
    Stamps { local_ms: 2, server_ms: 1 }
}

/// `n` conflicts, checked: a merge that silently stopped merging would make the numbers meaningless.
pub fn data(n: usize) -> Result<Vec<(Value, Value, Value)>, String> {
    let data: Vec<(Value, Value, Value)> = (0..n).map(triple).collect();
    let (spec, stamps) = (spec(), stamps());
    for (b, l, s) in data.iter().step_by((n / 10).max(1)) {
        match merge(&spec, Some(b), Some(l), Some(s), &stamps) {
            Resolution::Merged(Some(v))
                if v["count"] == json!(13)
                    && v["body"] == s["body"]
                    && v["title"] == l["title"]
                    && v["best"] == json!(7)
                    && v["tags"] == json!(["a", "b", "local", "server"]) => {}
            other => return Err(format!("unexpected merge result: {other:?}")),
        }
    }
    Ok(data)
}

/// Times every merge of `data`, then the baseline, with `now_ms` as the clock: (merge ms, clone ms).
pub fn run(data: &[(Value, Value, Value)], now_ms: impl Fn() -> f64) -> (f64, f64) {
    let (spec, stamps) = (spec(), stamps());
    let t = now_ms();
    for (b, l, s) in data {
        black_box(merge(&spec, Some(b), Some(l), Some(s), &stamps));
    }
    let merge_ms = now_ms() - t;
    let t = now_ms();
    for (_, l, s) in data {
        black_box(if stamps.local_ms >= stamps.server_ms { l.clone() } else { s.clone() });
    }
    (merge_ms, now_ms() - t)
}

/// One untimed pass (warm caches; the browser also tiers its wasm code up), then `runs` timed ones:
/// (merge ms per run, clone ms per run).
pub fn runs(data: &[(Value, Value, Value)], now_ms: impl Fn() -> f64, runs: usize) -> (Vec<f64>, Vec<f64>) {
    run(data, &now_ms);
    (0..runs).map(|_| run(data, &now_ms)).unzip()
}
