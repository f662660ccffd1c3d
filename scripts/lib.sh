# Shared helpers for scripts/setup, build, test and demo. Source it; don't run it.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
TOOLCHAIN_ENV=$TARGET_DIR/.tidesync-toolchain.env
WASM_TARGET=wasm32-unknown-unknown
# The FastAPI backend of the conformance suite (tests/backends/fastapi) runs in this virtualenv.
FASTAPI_VENV=$TARGET_DIR/fastapi-venv
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver}
export CHROMIUM CHROMEDRIVER
# Firefox ESR (Debian's) and geckodriver (built from crates.io by scripts/setup): the wasm-bindgen
# suites run in Firefox too.
FIREFOX=${FIREFOX:-/usr/lib/firefox-esr/firefox-esr}
GECKODRIVER_VERSION=0.37.1

# `cargo install` puts wasm-bindgen, wasm-bindgen-test-runner and geckodriver here.
CARGO_BIN=${CARGO_HOME:-$HOME/.cargo}/bin
case ":$PATH:" in *":$CARGO_BIN:"*) ;; *) PATH=$CARGO_BIN:$PATH ;; esac
export PATH
GECKODRIVER_BIN=${GECKODRIVER_BIN:-$CARGO_BIN/geckodriver}

say() { printf '%s: %s\n' "$(basename "$0")" "$*"; }
die() { printf '%s: error: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# Reads what scripts/setup chose (the wasm cargo prefix) into this shell.
load_toolchain() {
    [ -f "$TOOLCHAIN_ENV" ] || die "$TOOLCHAIN_ENV is missing: run scripts/setup first"
    # shellcheck source=/dev/null
    . "$TOOLCHAIN_ENV"
}

# wasm_cargo SUBCOMMAND ARGS...: cargo for the wasm32 target. In the Debian fallback this is
# `cargo +debian SUBCOMMAND -Z build-std=...` with RUSTC_BOOTSTRAP and the linker set for this one command
# only, never for native builds. The -Z flag goes after the subcommand: cargo does not hand flags given
# before it to external subcommands such as clippy. The env file's values hold no spaces inside a word,
# so word splitting is what we want here.
wasm_cargo() {
    local sub=$1
    shift
    # shellcheck disable=SC2086
    env $TIDESYNC_WASM_ENV $TIDESYNC_WASM_CARGO "$sub" $TIDESYNC_WASM_ARGS "$@"
}

# Builds the demo app (www/app, React + Vite) into OUT, a static site the server can serve, and puts
# the package beside it at OUT/pkg/ as plain ES modules (what a <script type="module"> imports; the
# README examples and the browser specs load it from there).
assemble_demo() {
    local out=$1
    [ -f "$ROOT/pkg/tidesync.js" ] || die "pkg/tidesync.js is missing: run scripts/build first"
    mkdir -p "$out"
    out=$(cd "$out" && pwd) # Vite runs in www/: a relative OUT would land under www/app/
    rm -rf "$out"
    say "vite build www/app -> $out"
    (cd "$ROOT/www" && TIDESYNC_DEMO_OUT="$out" node_modules/.bin/vite build app --logLevel warn) \
        || die "the demo app (www/app) did not build"
    mkdir -p "$out/pkg"
    cp "$ROOT"/pkg/*.js "$ROOT"/pkg/*.wasm "$out/pkg/"
    if [ -d "$ROOT/pkg/snippets" ]; then cp -R "$ROOT/pkg/snippets" "$out/pkg/"; fi
}

# start_server VAR LOG ARGS...: starts target/debug/tidesync-server with ARGS on a free loopback port,
# its output to the file LOG, waits for its "listening on http://..." line and stores the URL in VAR.
# stop_servers (run it from an EXIT trap) ends every server started this way.
SERVER_PIDS=()
start_server() {
    local var=$1 log=$2 bin=$TARGET_DIR/debug/tidesync-server
    shift 2
    [ -x "$bin" ] || die "$bin is missing: build it with 'cargo build -p tidesync-server'"
    # The log exists before the server does: the background job opens it only once it is scheduled,
    # and the loop below must not read a file that is not there yet.
    : >"$log"
    "$bin" --host 127.0.0.1 --port 0 "$@" >"$log" 2>&1 &
    local pid=$!
    SERVER_PIDS+=("$pid")
    local url="" i
    for ((i = 0; i < 300; i++)); do
        url=$(sed -nE 's#^tidesync-server listening on (http://[^[:space:]]+).*#\1#p' "$log" | head -n 1) || url=""
        [ -n "$url" ] && break
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$log" >&2
            die "tidesync-server exited before it was listening"
        fi
        sleep 0.1
    done
    if [ -z "$url" ]; then
        cat "$log" >&2
        die "tidesync-server did not print 'tidesync-server listening on http://HOST:PORT' within 30 s"
    fi
    say "tidesync-server (pid $pid) listening on $url, log: $log"
    printf -v "$var" '%s' "$url"
}

# start_json_server VAR LOG DB: starts json-server (tests/json-server) on a free loopback port with an
# empty `notes` collection in the file DB, waits until it answers, and stores its URL in VAR.
start_json_server() {
    local var=$1 log=$2 db=$3 port url i
    printf '{"notes": []}\n' >"$db"
    : >"$log"
    port=$(node -e 'const s = require("net").createServer(); s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
    node "$ROOT/tests/json-server/node_modules/json-server/lib/cli/bin.js" --host 127.0.0.1 --port "$port" "$db" >"$log" 2>&1 &
    SERVER_PIDS+=("$!")
    url="http://127.0.0.1:$port"
    answers() { node -e 'fetch(process.argv[1]).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "$url/notes"; }
    for ((i = 0; i < 300; i++)); do
        answers && break
        sleep 0.1
    done
    answers || { cat "$log" >&2; die "json-server did not answer on $url within 30 s"; }
    say "json-server listening on $url, log: $log"
    printf -v "$var" '%s' "$url"
}

stop_servers() {
    local pid
    for pid in "${SERVER_PIDS[@]}"; do
        # The server may already be gone, and `wait` reports the SIGTERM we sent as a failure: neither is
        # an error here, and under `set -e` in an EXIT trap it would replace the script's real status.
        kill "$pid" 2>/dev/null || :
        wait "$pid" 2>/dev/null || :
    done
    SERVER_PIDS=()
}
