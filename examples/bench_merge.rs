//! Native merge benchmark for `make bench` (issue 8): 100,000 conflicting 10-field records through
//! `tidesync::core::merge::merge`, beside a whole-record last-write-wins baseline (cloning the
//! winning side, the least work any resolver must do to produce a record).
//!
//! Prints one JSON object on stdout: the wall time of every run, in ms, for both. `bench/run.mjs`
//! turns them into medians. Usage: `cargo run --release --example bench_merge [RUNS]`.

use std::hint::black_box;
use std::time::Instant;

use serde_json::{json, Value};
use tidesync::core::merge::{merge, MergeSpec, OnDeleted, Resolution, Stamps, Strategy};

const RECORDS: usize = 100_000;

/// One conflict: both sides changed the record since `base`, some fields on one side only, two on
/// both, so every strategy in the spec has real work (no early "equal sides" exit).
fn triple(i: usize) -> (Value, Value, Value) {
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

fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let spec = MergeSpec {
        default: Strategy::Lww,
        fields: [("count", Strategy::Sum), ("tags", Strategy::Union), ("best", Strategy::Max)]
            .into_iter()
            .map(|(k, s)| (k.to_string(), s))
            .collect(),
        on_deleted: OnDeleted::Recreate,
    };
    let stamps = Stamps { local_ms: 2, server_ms: 1, local_device: "a".into(), server_device: "b".into() };
    let data: Vec<(Value, Value, Value)> = (0..RECORDS).map(triple).collect();

    // Guards against a merge that silently stops merging: the numbers would be meaningless.
    match merge(&spec, Some(&data[0].0), Some(&data[0].1), Some(&data[0].2), &stamps) {
        Resolution::Merged(Some(v)) if v["count"] == json!(13) && v["body"] == data[0].2["body"] => {}
        other => panic!("unexpected merge result: {other:?}"),
    }

    let (mut merge_ms, mut clone_ms) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        for (b, l, s) in &data {
            black_box(merge(&spec, Some(b), Some(l), Some(s), &stamps));
        }
        merge_ms.push(t.elapsed().as_secs_f64() * 1e3);

        let t = Instant::now();
        for (_, l, s) in &data {
            black_box(if stamps.local_ms >= stamps.server_ms { l.clone() } else { s.clone() });
        }
        clone_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!("{}", json!({ "records": RECORDS, "fields": 10, "mergeMs": merge_ms, "lwwCloneMs": clone_ms }));
}
