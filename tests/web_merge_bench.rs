//! The merge benchmark in wasm, in headless Chromium: the workload of `bench/merge_workload.rs`
//! (100,000 conflicting 10-field records), the very code `examples/bench_merge.rs` times natively.
//!
//! Only in optimised builds: `scripts/bench` runs it with `--release` (the profile the package is
//! built with), once per run alternating with the native run, and reads the `TIDESYNC_MERGE_BENCH
//! {json}` line it prints. `TIDESYNC_BENCH_MERGE_RUNS` (read at compile time: the browser has no
//! environment) sets the timed passes per page, default 1, after one untimed pass. In debug builds
//! (`make test`'s wasm tier) this file holds no test, so the tier does not start a browser for it.
#![cfg(all(target_arch = "wasm32", not(debug_assertions)))]

use tidesync::json;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;

#[path = "../bench/merge_workload.rs"]
mod workload;

wasm_bindgen_test_configure!(run_in_browser);

const RUNS: Option<&str> = option_env!("TIDESYNC_BENCH_MERGE_RUNS");

/// `performance.now()` (sub-millisecond), else `Date.now()`.
fn now_ms() -> f64 {
    let global = js_sys::global();
    js_sys::Reflect::get(&global, &"performance".into())
        .ok()
        .and_then(|perf| {
            let now = js_sys::Reflect::get(&perf, &"now".into()).ok()?.dyn_into::<js_sys::Function>().ok()?;
            now.call0(&perf).ok()?.as_f64()
        })
        .unwrap_or_else(js_sys::Date::now)
}

#[wasm_bindgen_test]
fn merge_benchmark() {
    let runs: usize = RUNS.and_then(|r| r.trim().parse().ok()).unwrap_or(1).max(1);
    let records = workload::RECORDS;
    let data = workload::data(records).unwrap_or_else(|e| panic!("{e}"));
    // After an untimed pass: the browser compiles wasm in tiers, and the timed passes should run the
    // optimised code, as a page that merges often does.
    let (merge_ms, clone_ms) = workload::runs(&data, now_ms, runs);
    assert!(merge_ms.iter().chain(&clone_ms).all(|m| m.is_finite() && *m > 0.0), "{merge_ms:?} {clone_ms:?}");
    let out = json!({"records": records, "fields": workload::FIELDS, "mergeMs": merge_ms, "lwwCloneMs": clone_ms});
    console_log!("TIDESYNC_MERGE_BENCH {out}");
}
