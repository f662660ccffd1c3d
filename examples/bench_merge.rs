//! Native merge benchmark for `make bench` (issue 8): the workload of `bench/merge_workload.rs`
//! (100,000 conflicting 10-field records through `tidesync::core::merge::merge`, beside a
//! whole-record last-write-wins baseline), which `tests/web_merge_bench.rs` also runs in wasm.
//!
//! Prints one JSON object on stdout: the wall time of every timed pass (after one untimed pass), in
//! ms, for both. `scripts/bench` runs it once per run, alternating with the wasm run, and
//! `bench/run.mjs` turns the runs into medians. Usage: `cargo run --release --example bench_merge [PASSES]`.

use std::time::Instant;

use tidesync::json;

#[path = "../bench/merge_workload.rs"]
mod workload;

fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let data = workload::data(workload::RECORDS).unwrap_or_else(|e| panic!("{e}"));
    let start = Instant::now();
    let now_ms = || start.elapsed().as_secs_f64() * 1e3;
    // After an untimed pass: warm caches, as the wasm run warms its compiled code.
    let (merge_ms, clone_ms) = workload::runs(&data, now_ms, runs);
    println!(
        "{}",
        json!({ "records": workload::RECORDS, "fields": workload::FIELDS, "mergeMs": merge_ms, "lwwCloneMs": clone_ms })
    );
}
