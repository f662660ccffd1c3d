# Every target is a script in scripts/, so CI and a laptop run the same steps.
.PHONY: setup build test soak demo bench clean

setup:
	scripts/setup

build:
	scripts/build

test:
	scripts/test

# Serves the demo on http://127.0.0.1:$(DEMO_PORT) (default 8080) until Ctrl-C.
# The deterministic simulation over 100,000 seeds (make test runs 1,000). A failure prints its seed;
# TIDESYNC_SIM_SEED=<n> cargo test --test sim reruns it.
soak:
	scripts/setup
	TIDESYNC_SIM_SEEDS=100000 cargo test --release --test sim -- --nocapture

demo:
	scripts/demo

# Benchmarks beside their baselines: writes bench/RESULTS.md and bench/results.json (not part of test).
bench:
	scripts/bench

# Removes the generated package files, the assembled demo and test output, and cargo's target/.
clean:
	rm -rf pkg/snippets pkg/tidesync.js pkg/tidesync.d.ts pkg/tidesync_bg.wasm pkg/tidesync_bg.wasm.d.ts
	rm -rf www/test-results
	cargo clean
