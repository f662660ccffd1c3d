// The Node half of `make bench` (scripts/bench builds everything and calls this): starts the reference
// server on loopback serving the bench page, drives headless Chromium through the same launcher as the
// end-to-end specs, repeats every benchmark of bench/page/bench.js, and writes bench/RESULTS.md and
// bench/results.json.
//
//   node bench/run.mjs --server BIN --static DIR --merge FILE --merge-wasm FILE [--out DIR] [--budget BYTES]
//
// BENCH_RUNS=N runs every benchmark N times (default: the RUNS table below); BENCH_ONLY=writes,drain,hooks,...
// runs some sections only (for working on the harness; the committed results come from a full run), and
// with BENCH_UPDATE=1 its rows replace those sections in the existing results.json (the update is noted
// in RESULTS.md, with when and under what load it was measured).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import zlib from 'node:zlib';
import { launch } from '../www/tests/browser.mjs';

const { values: opt } = parseArgs({
  options: {
    server: { type: 'string' },
    static: { type: 'string' },
    merge: { type: 'string' },
    'merge-wasm': { type: 'string' },
    out: { type: 'string', default: fileURLToPath(new URL('.', import.meta.url)) },
    budget: { type: 'string', default: '102400' },
  },
});
for (const k of ['server', 'static', 'merge', 'merge-wasm']) if (!opt[k]) throw new Error(`--${k} is required`);

// Repetitions. The issue asks for 5. One drain run (the engine in REST mode and in batch mode at 100
// and 1,000 per request, raw fetch at both, 10,000 single requests) takes 2 to 6 minutes on a 2-core
// machine shared with other jobs, so the drain repeats while it fits in DRAIN_BUDGET_SEC: at least 2
// runs (a min and a max), at most 5. The 100,000-op cold start gets 3. The table prints each row's count. Seeding
// 10,000 ops through the engine is needed once anyway and is the main-thread "putting" run.
const RUNS = process.env.BENCH_RUNS
  ? Object.fromEntries(['light', 'drainMin', 'drainMax', 'cold100k', 'seed'].map((k) => [k, Number(process.env.BENCH_RUNS)]))
  : { light: 5, drainMin: 2, drainMax: 5, cold100k: 3, seed: 1 };
const DRAIN_BUDGET_SEC = Number(process.env.BENCH_DRAIN_BUDGET_SEC ?? 360);
const ONLY = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',')) : null;
const wanted = (section) => !ONLY || ONLY.has(section);
// The sizes the issue names. Repetitions scale, these do not.
const DRAIN_OPS = 10_000;
const BIG_QUEUE = 100_000;
const thousands = (x) => x.toLocaleString('en-US');

const t0 = Date.now();
const clock = () => new Date(Date.now() - t0).toISOString().slice(14, 19);
const log = (...a) => console.log(`bench: [${clock()}] ${a.join(' ')}`);

// ---- statistics ----

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const spread = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs), runs: xs });

/**
 * One table row. `engine` and `baseline` hold one value per run, measured as a pair. `cost` is how many
 * times longer tidesync takes than its baseline for the same work (>1 = slower), per run: throughputs
 * (`higher` is better) invert, times do not.
 */
function row(section, label, unit, better, engine, baselineLabel, baseline) {
  const cost = engine && baseline && engine.map((e, i) => (better === 'higher' ? baseline[i] / e : e / baseline[i]));
  return {
    section, label, unit, better, baselineLabel,
    tidesync: engine && spread(engine),
    baseline: baseline && spread(baseline),
    cost: cost && cost.every(Number.isFinite) ? spread(cost) : null,
  };
}

const ROWS = [];
// Measured inside the seed and drain runs; printed as section 7.
const MAIN_THREAD = [];
const NOT_AVAILABLE = [];

// ---- the reference server ----

async function startServer() {
  const logFile = path.join(opt.static, '..', 'server.log');
  // --admin: the page resets the server; --demo-users: it signs in as alice; no rate limits, so a
  // benchmark measures sync and never a limiter's wait.
  const args = ['--admin', '--demo-users', '--rate-limit', 'off', '--address-rate-limit', 'off'];
  const child = spawn(opt.server, ['--host', '127.0.0.1', '--port', '0', '--static', opt.static, ...args], {
    stdio: ['ignore', 'pipe', openSync(logFile, 'w')],
  });
  const lines = createInterface({ input: child.stdout });
  const [first] = await Promise.race([
    once(lines, 'line'),
    once(child, 'exit').then(([code]) => { throw new Error(`server exited (${code}); see ${logFile}`); }),
  ]);
  const url = /^tidesync-server listening on (http:\/\/\S+)/.exec(first)?.[1];
  if (!url) throw new Error(`unexpected first line from the server: ${first}`);
  log(`server ${url} (pid ${child.pid}, log ${logFile})`);
  return { url, stop: () => child.kill('SIGTERM') };
}

// ---- json-server: a backend that lists a whole collection in one answer ----

/** json-server 0.17.4 (tests/json-server, installed by scripts/setup) on loopback, holding `count` notes. */
async function startJsonServer(count) {
  const cli = fileURLToPath(new URL('../tests/json-server/node_modules/json-server/lib/cli/bin.js', import.meta.url));
  if (!existsSync(cli)) return null;
  const db = path.join(opt.static, '..', 'json-server-db.json');
  const notes = Array.from({ length: count }, (_, i) => ({ id: `n${String(i).padStart(5, '0')}`, title: `note ${i}`, body: 'x'.repeat(200), done: i % 3 === 0 }));
  writeFileSync(db, JSON.stringify({ notes }));
  const port = await new Promise((ok, no) => {
    const s = createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => ok(p)); });
    s.on('error', no);
  });
  const child = spawn(process.execPath, [cli, '--host', '127.0.0.1', '--port', String(port), db], { stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}`;
  for (const end = Date.now() + 30_000; ;) {
    try {
      if ((await fetch(`${url}/notes?_limit=1`)).ok) break;
    } catch { /* not up yet */ }
    if (Date.now() > end) { child.kill(); throw new Error('json-server did not start within 30 s'); }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { url, stop: () => child.kill('SIGTERM') };
}

// ---- sections ----

/** Calls `fn` in the page once per run; each result is { engine, baseline }. */
async function runs(page, fn, args, n = RUNS.light) {
  const out = [];
  for (let run = 0; run < n; run++) {
    out.push(await page.evaluate(([f, a]) => window.bench[f](a), [fn, { ...args, run }]));
  }
  return out;
}
const pick = (results, side, key) => results.map((r) => r[side][key]);

async function writesSection(page) {
  for (const [perGroup, groups, batch, label, baseLabel] of [
    [1, 300, false, 'put 1 record', 'raw IDB put, 1 per transaction'],
    [100, 10, true, '100 records: one putMany()', 'raw IDB put, 100 per transaction'],
    [100, 10, false, '100 records: 100 sequential put()', 'raw IDB put, 100 per transaction'],
  ]) {
    log(`writes: ${label}`);
    const r = await runs(page, 'writes', { perGroup, groups, batch });
    const lat = perGroup === 1 ? 'latency per record' : 'latency per 100 records';
    ROWS.push(row('1. Writes', `${label}: throughput`, 'ops/s', 'higher', pick(r, 'engine', 'opsPerSec'), baseLabel, pick(r, 'baseline', 'opsPerSec')));
    ROWS.push(row('1. Writes', `${label}: p50 ${lat}`, 'ms', 'lower', pick(r, 'engine', 'p50Ms'), baseLabel, pick(r, 'baseline', 'p50Ms')));
    ROWS.push(row('1. Writes', `${label}: p99 ${lat}`, 'ms', 'lower', pick(r, 'engine', 'p99Ms'), baseLabel, pick(r, 'baseline', 'p99Ms')));
  }
}

async function seedSection(page, name) {
  const seeds = [];
  for (let run = 0; run < RUNS.seed; run++) {
    // Later runs only repeat the measurement; the first database is the drain template.
    const target = run === 0 ? name : `${name}-again-${run}`;
    log(`main thread: putting ${DRAIN_OPS} ops one by one (seeds ${target})`);
    seeds.push(await page.evaluate((a) => window.bench.seed(a), { name: target, count: DRAIN_OPS }));
    log(`seeded in ${(seeds.at(-1).engine.ms / 1000).toFixed(1)} s`);
  }
  const label = `longest task while putting ${thousands(DRAIN_OPS)} ops, one put() each`;
  MAIN_THREAD.push(row('7. Main thread', label, 'ms', 'lower', pick(seeds, 'engine', 'longestMs'),
    'raw IDB, one put transaction each', pick(seeds, 'baseline', 'longestMs')));
}

async function drainSection(page, template) {
  // One run = REST mode with the per-op baseline, then both batch sizes: every pair close in time.
  const rest = [];
  const batches = { 100: [], 1000: [] };
  const start = Date.now();
  const fits = (run) => {
    const perRun = (Date.now() - start) / run;
    return run < RUNS.drainMin || (run < RUNS.drainMax && Date.now() - start + perRun <= DRAIN_BUDGET_SEC * 1000);
  };
  for (let run = 0; fits(run); run++) {
    log(`drain run ${run + 1}: ${DRAIN_OPS} ops, REST mode and one request per op (baseline)`);
    rest.push(await page.evaluate((a) => window.bench.drainRest(a), { run, template, count: DRAIN_OPS }));
    for (const batchSize of [100, 1000]) {
      log(`drain run ${run + 1}: ${DRAIN_OPS} ops, ${batchSize} per request`);
      const args = { run, template, count: DRAIN_OPS, batchSize };
      batches[batchSize].push(await page.evaluate((a) => window.bench.drain(a), args));
    }
  }
  const perOp = pick(rest, 'baseline', 'opsPerSec');
  const perOpLabel = 'one REST POST per op, in sequence';
  for (const [batchSize, r] of Object.entries(batches)) {
    const label = `flush ${thousands(DRAIN_OPS)} queued ops, batch mode, ${batchSize}/request`;
    const engine = pick(r, 'engine', 'opsPerSec');
    ROWS.push(row('2. Drain', label, 'ops/s', 'higher', engine, `raw fetch, same ops, ${batchSize}/request`, pick(r, 'baseline', 'opsPerSec')));
    ROWS.push(row('2. Drain', label, 'ops/s', 'higher', engine, perOpLabel, perOp));
    MAIN_THREAD.push(row('7. Main thread', `longest task while flushing ${thousands(DRAIN_OPS)} ops, batch mode, ${batchSize}/request`, 'ms', 'lower',
      pick(r, 'engine', 'longestMs'), `raw fetch, ${batchSize}/request`, pick(r, 'baseline', 'longestMs')));
  }
  ROWS.push(row('2. Drain', `flush ${thousands(DRAIN_OPS)} queued ops, REST mode`, 'ops/s', 'higher', pick(rest, 'engine', 'opsPerSec'), perOpLabel, perOp));
}

async function coldStartSection(page, template) {
  log(`building a ${BIG_QUEUE} op queue from ${BIG_QUEUE / DRAIN_OPS} renamed copies of the seeded one`);
  const big = 'seed-100k';
  await page.evaluate((a) => window.bench.replicate(a), { from: template, to: big, times: BIG_QUEUE / DRAIN_OPS, count: BIG_QUEUE });
  for (const [count, name, times] of [[DRAIN_OPS, template, RUNS.light], [BIG_QUEUE, big, RUNS.cold100k]]) {
    log(`cold start: ${count} pending ops`);
    const r = await runs(page, 'coldStart', { template: name, count }, times);
    ROWS.push(row('3. Cold start', `open() until status() has the count, ${thousands(count)} pending ops`, 'ms', 'lower',
      pick(r, 'engine', 'ms'), 'raw IDB open + getAll() of the ops store', pick(r, 'baseline', 'ms')));
  }
}

async function hookReadsSection(page, template) {
  log(`hook reads: status() and a useCollection() update at ${thousands(DRAIN_OPS)} records with pending writes`);
  const r = await runs(page, 'hookReads', { template, count: DRAIN_OPS });
  const n = thousands(DRAIN_OPS);
  ROWS.push(row('11. Hook reads', `status() with ${n} pending writes (counts kept by the engine)`, 'ms', 'lower',
    r.map((x) => x.status.engine.ms), 'the queue scan status() was: every pending op read (queue().length)', r.map((x) => x.status.baseline.ms)));
  ROWS.push(row('11. Hook reads', `status() with ${n} pending writes, after another tab wrote (counted again: IndexedDB count())`, 'ms', 'lower',
    r.map((x) => x.recountMs), 'the queue scan status() was: every pending op read (queue().length)', r.map((x) => x.status.baseline.ms)));
  ROWS.push(row('11. Hook reads', `useCollection() of ${n} records after one put(): the record read alone, put in place`, 'ms', 'lower',
    r.map((x) => x.update.engine.ms), 'list() and the identity-keeping pass (useCollection before)', r.map((x) => x.update.baseline.ms)));
  for (const k of [1, 32, 256, 833, 2500]) {
    ROWS.push(row('11. Hook reads', `${thousands(k)} changed record(s) read alone (getRecord, in parallel)`, 'ms', 'lower',
      r.map((x) => x.reads[k]), `one list() of ${n} records`, r.map((x) => x.listMs)));
  }
}

async function mergeSection() {
  // The same workload (bench/merge_workload.rs) timed natively (examples/bench_merge.rs) and in wasm in
  // headless Chromium (tests/web_merge_bench.rs), each beside a whole-record LWW clone in the same build.
  const native = JSON.parse(await readFile(opt.merge, 'utf8'));
  const wasm = JSON.parse(await readFile(opt['merge-wasm'], 'utf8'));
  const perSec = (m, runsMs) => runsMs.map((t) => (m.records * 1000) / t);
  const what = `merge() of ${thousands(native.records)} conflicting ${native.fields}-field records`;
  ROWS.push(row('4. Merges', `${what}, native`, 'records/s', 'higher',
    perSec(native, native.mergeMs), 'native whole-record LWW (clone the winner)', perSec(native, native.lwwCloneMs)));
  ROWS.push(row('4. Merges', `${what}, wasm in Chromium`, 'records/s', 'higher',
    perSec(wasm, wasm.mergeMs), 'wasm whole-record LWW (clone the winner)', perSec(wasm, wasm.lwwCloneMs)));
  ROWS.push(row('4. Merges', `${what}, wasm in Chromium against native`, 'records/s', 'higher',
    perSec(wasm, wasm.mergeMs), 'the same merge(), native (previous rows)', perSec(native, native.mergeMs)));
}

async function checksumSection(page) {
  for (const bytes of [256, 1024]) {
    log(`checksums: ${bytes} B`);
    const r = await runs(page, 'checksums', { bytes, n: 2000 });
    ROWS.push(row('5. Checksums', `checksum() of a ${bytes} B record`, 'µs/record', 'lower',
      pick(r, 'engine', 'usPerRecord'), 'crypto.subtle.digest SHA-256 of JSON.stringify', pick(r, 'baseline', 'usPerRecord')));
  }
}

async function boundarySection(page) {
  log('boundary: put(object) vs putJson(string)');
  const r = await runs(page, 'boundary', { n: 300 });
  ROWS.push(row('6. Boundary', 'putJson(JSON string), 1 KB record', 'ops/s', 'higher',
    pick(r, 'engine', 'opsPerSec'), 'put(JS object), same records', pick(r, 'baseline', 'opsPerSec')));
}

// ---- 9. real time ----

async function realtimeSection(page) {
  log('real time: a write on A visible on B, push channel vs interval polling');
  const r = await runs(page, 'realtime', { writes: 15, pollMs: 1000 });
  const base = 'interval polling every 1 s (the default is 30 s)';
  ROWS.push(row('9. Real time', 'write on A visible on B (SSE push channel): p50', 'ms', 'lower', pick(r, 'engine', 'p50Ms'), base, pick(r, 'baseline', 'p50Ms')));
  ROWS.push(row('9. Real time', 'write on A visible on B (SSE push channel): p95', 'ms', 'lower', pick(r, 'engine', 'p95Ms'), base, pick(r, 'baseline', 'p95Ms')));
}

// ---- 10. live queries ----

async function liveQuerySection(page) {
  log('pull: a new device pulls 10,000 records');
  const p = await runs(page, 'pullMany', { count: 10_000 }, 3);
  const raw = 'raw fetch + JSON.parse + IndexedDB puts, the same pages (1,000), a transaction each';
  ROWS.push(row('10. Live queries', 'a new device pulls 10,000 records (pull())', 'ms', 'lower', pick(p, 'engine', 'ms'), raw, pick(p, 'baseline', 'ms')));
  ROWS.push(row('10. Live queries', 'longest main-thread task while pulling 10,000 records', 'ms', 'lower', pick(p, 'engine', 'longestMs'), raw, pick(p, 'baseline', 'longestMs')));
  for (const count of [10_000, 100_000]) {
    log(`live queries: ${thousands(count)} records, 100 live queries`);
    const r = await runs(page, 'liveQueries', { count }, count > 10_000 ? 1 : 3);
    const n = thousands(count);
    ROWS.push(row('10. Live queries', `live-query update after one write, ${n} records, 100 live queries: p50`, 'ms', 'lower',
      pick(r, 'engine', 'p50Ms'), 'the same query re-run over a plain JS array', pick(r, 'array', 'p50Ms')));
    ROWS.push(row('10. Live queries', `live-query update after one write, ${n} records, 100 live queries: p50`, 'ms', 'lower',
      pick(r, 'engine', 'p50Ms'), 'the same query re-read through a raw IndexedDB index', pick(r, 'baseline', 'p50Ms')));
    ROWS.push(row('10. Live queries', `live-query update after one write, ${n} records, 100 live queries: p95`, 'ms', 'lower',
      pick(r, 'engine', 'p95Ms'), 'the same query re-read through a raw IndexedDB index', pick(r, 'baseline', 'p95Ms')));
    ROWS.push(row('10. Live queries', `first page (50, by index) right after opening, ${n} records`, 'ms', 'lower',
      pick(r, 'engine', 'firstPageMs'), 'raw IndexedDB: open + index getAll of 50', pick(r, 'baseline', 'firstPageMs')));
    ROWS.push(row('10. Live queries', `JS heap per record held, ${n} records, 100 live queries open`, 'B', 'lower',
      pick(r, 'engine', 'heapPerRecord'), null, null));
    // In this section, not in 7: re-measuring it alone (BENCH_UPDATE) must not replace section 7.
    ROWS.push(row('10. Live queries', `longest main-thread task during the writes and their live-query updates, ${n} records`, 'ms', 'lower',
      pick(r, 'engine', 'longestMs'), 'raw IndexedDB re-reads', pick(r, 'baseline', 'longestMs')));
    ROWS.push(row('10. Live queries', `longest main-thread task while opening and reading the first page, ${n} records`, 'ms', 'lower',
      pick(r, 'engine', 'reopenLongestMs'), null, null));
  }
  log('full listing: json-server answers with all 10,000 records at once');
  const json = await startJsonServer(10_000);
  if (!json) {
    NOT_AVAILABLE.push('Live queries: the full-listing rows need json-server (tests/json-server): run scripts/setup');
  } else {
    try {
      const r = await runs(page, 'fullListing', { url: json.url, count: 10_000 }, 3);
      const at = (side, what, key) => r.map((x) => x[side][what][key]);
      const raw = 'raw fetch + JSON.parse + IndexedDB puts in one transaction';
      for (const [what, label] of [['first', 'a new device pulls'], ['again', 'the device pulls again']]) {
        ROWS.push(row('10. Live queries', `${label} a full listing of 10,000 records (json-server, one answer)`, 'ms', 'lower',
          at('engine', what, 'ms'), raw, at('baseline', what, 'ms')));
        ROWS.push(row('10. Live queries', `longest main-thread task: ${label} a full listing of 10,000 records`, 'ms', 'lower',
          at('engine', what, 'longestMs'), raw, at('baseline', what, 'longestMs')));
      }
      const getAll = 'raw IndexedDB getAll of the same 10,000 records';
      ROWS.push(row('10. Live queries', 'list() of 10,000 records', 'ms', 'lower', at('engine', 'list', 'ms'), getAll, at('baseline', 'list', 'ms')));
      ROWS.push(row('10. Live queries', 'longest main-thread task: list() of 10,000 records', 'ms', 'lower',
        at('engine', 'list', 'longestMs'), getAll, at('baseline', 'list', 'longestMs')));
    } finally {
      json.stop();
    }
  }
  for (const count of [1_000, 5_000]) {
    log(`putMany: ${thousands(count)} records in one call`);
    const r = await runs(page, 'putManyTask', { count }, 1);
    const n = thousands(count);
    const raw = `raw IndexedDB: ${n} puts in one transaction`;
    ROWS.push(row('10. Live queries', `longest main-thread task, one putMany() of ${n} records (3 calls)`, 'ms', 'lower',
      pick(r, 'engine', 'longestMs'), raw, pick(r, 'baseline', 'longestMs')));
    ROWS.push(row('10. Live queries', `one putMany() of ${n} records: median time`, 'ms', 'lower',
      pick(r, 'engine', 'ms'), raw, pick(r, 'baseline', 'ms')));
  }
}

// ---- 8. size ----

async function sizes() {
  const dir = path.join(opt.static, 'pkg');
  const names = (await readdir(dir, { recursive: true })).filter((f) => /\.(wasm|js)$/.test(f)).sort();
  const files = names.map((name) => {
    const data = readFileSync(path.join(dir, name));
    return {
      file: name,
      raw: data.length,
      gzip: zlib.gzipSync(data, { level: 9 }).length,
      brotli: zlib.brotliCompressSync(data, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11 } }).length,
    };
  });
  const total = { file: 'total', raw: 0, gzip: 0, brotli: 0 };
  for (const f of files) for (const k of ['raw', 'gzip', 'brotli']) total[k] += f[k];
  return { files: [...files, total], budgetGzip: Number(opt.budget), withinBudget: total.gzip <= Number(opt.budget) };
}

// ---- output ----

const fmt = (x) => (x >= 100 ? thousands(Math.round(x)) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const cell = (s) => {
  if (!s) return 'not available';
  return s.runs.length > 1 ? `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})` : fmt(s.median);
};
// Two significant digits below 0.1 (a cost of 0.0023× would print as 0.00×).
const ratio = (x) => (x < 0.1 ? x.toPrecision(2) : x.toFixed(2));
const costCell = (s) => {
  if (!s) return '—';
  const range = s.runs.length > 1 ? ` (${ratio(s.min)}–${ratio(s.max)})` : '';
  return `**${ratio(s.median)}×**${range}`;
};
const runsOf = (r) => (r.tidesync ?? r.baseline)?.runs.length ?? '—';

function markdown(results) {
  const m = results.machine;
  const out = [
    '# tidesync benchmarks',
    '',
    `Generated by \`make bench\` on ${results.generatedAt}. Do not edit by hand: rerun it.`,
    '',
    `Machine: ${m.cpus} × ${m.cpuModel}, ${m.memGiB} GiB RAM, ${m.os}; ${m.browser}; Node ${m.node}; ` +
      `load average at start ${m.loadAverage.join(', ')}; the measurements took ${Math.round(results.durationSec / 60)} min. ` +
      'Each figure is the median of its runs (min–max in brackets), tidesync and its baseline measured as a pair in each run, in alternating order.',
    '',
    '**cost ×** = time tidesync takes ÷ time the baseline takes for the same work, per run (throughputs inverted); ' +
      '>1 means tidesync is slower. The machine drifts between runs (other jobs share its cores): compare the cost column, not the absolute numbers across runs.',
    '',
    '| benchmark | unit | runs | tidesync | baseline | baseline figure | cost × |',
    '|---|---|---|---|---|---|---|',
  ];
  let section = '';
  for (const r of results.rows) {
    if (r.section !== section) {
      section = r.section;
      out.push(`| **${section}** | | | | | | |`);
    }
    out.push(`| ${r.label} | ${r.unit} | ${runsOf(r)} | ${cell(r.tidesync)} | ${r.baselineLabel ?? '—'} | ${r.baseline ? cell(r.baseline) : '—'} | ${costCell(r.cost)} |`);
  }
  const s = results.sizes;
  if (s) {
    out.push('', '## 8. Size (the files the package ships: wasm, wasm-bindgen glue, hand-written wrappers)', '',
      '| file | raw bytes | gzip -9 | brotli -q 11 |', '|---|---|---|---|');
    for (const f of s.files) out.push(`| ${f.file} | ${thousands(f.raw)} | ${thousands(f.gzip)} | ${thousands(f.brotli)} |`);
    const total = s.files.at(-1);
    out.push('', `Budget: ${thousands(s.budgetGzip)} bytes gzip for the whole package; this build is ` +
      `${thousands(total.gzip)} (${(total.gzip / s.budgetGzip).toFixed(2)}× the budget): ` +
      `**${s.withinBudget ? 'within budget' : 'OVER BUDGET'}**. (gzip and brotli here are Node's zlib; \`scripts/build\` uses the gzip CLI, whose -9 compresses the wasm about 1% smaller.)`);
  }
  for (const u of results.updates ?? []) {
    out.push('', `**Updated ${u.generatedAt}**: ${u.sections.join(', ')} re-measured alone (\`BENCH_ONLY=${u.only} BENCH_UPDATE=1 make bench\`; ` +
      `load average ${u.loadAverage.join(', ')} when the harness started); every other figure is from the full run above.`);
  }
  out.push('', '## Notes', '',
    `- wasm \`init()\` (compile + instantiate) took ${results.initMs.toFixed(1)} ms in the benchmark page; it is not part of the cold-start figures.`,
    '- Writes: both sides use the browser\'s default IndexedDB durability. tidesync\'s put() is one readwrite transaction over its stores (reads the record, its pending ops and the sequence; writes record, op and sequence); the baseline writes only the record.',
    '- Drain: the server is reset (`POST /admin/reset`) before every measured side, so both apply every op from scratch. The batch baseline sends the very ops the engine holds (ids, payloads, checksums), built and parsed in JS, requests in sequence like the engine. REST mode (`transport: \'rest\'`) flushes 100 ops per pass, one request each; its baseline is the per-op POST sequence.',
    '- Writes: p99 of the 100-record groups is over 10 groups per run, i.e. the slowest group.',
    '- Cold start: "ready to flush" = `SyncEngine.open()` resolved and `status()` returned the pending count (`open()` reads the device id and counts the pending ops, dead letters and conflicts with IndexedDB `count()`, reading none of them; `status()` answers from those counts). Before the counts were kept (#16), `status()` read every pending op without its payload.',
    '- Hook reads: the engine keeps `status()`\'s counts as its transactions commit (IndexedDB `count()` at open and after another tab wrote); the baseline reads the whole queue, as `status()` did before. The `useCollection()` rows time only bringing the list up to date after the `put()` resolved: tidesync/react now reads the changed record alone (`getRecord`) and puts it in place; before, it read the whole `list()` and compared it with the previous one to keep unchanged records\' identity. The `getRecord` rows set where one `list()` becomes cheaper (pkg/react.js `LIST_MIN`, `LIST_RATIO`).',
    '- Main thread: PerformanceObserver `longtask` reports only tasks over 50 ms; 0 means none.',
    '- Merges: one workload (`bench/merge_workload.rs`), timed natively (`examples/bench_merge.rs`) and as wasm in headless Chromium (`tests/web_merge_bench.rs`, a wasm-bindgen test built only in release), both in the release profile (opt-level "z", LTO) the package is built with; records/s = records ÷ the wall time of one pass over all of them. Each run is one timed pass after an untimed one (the browser tiers its wasm code up), native and wasm alternating which goes first.',
  );
  if (results.notAvailable.length) {
    out.push('', '## Not measured', '', ...results.notAvailable.map((n) => `- ${n}`));
  }
  return `${out.join('\n')}\n`;
}

/**
 * BENCH_UPDATE: the existing results.json with the sections measured now in place of the old ones (rows
 * and not-measured notes; the other sections, the machine line and the sizes unless re-measured stay).
 */
async function update(fresh) {
  const old = JSON.parse(await readFile(path.join(opt.out, 'results.json'), 'utf8'));
  // The size table has no rows: it counts as a section when it was measured.
  const sections = [...new Set(fresh.rows.map((r) => r.section).concat(fresh.sizes ? ['8. Size'] : []))];
  const rows = [];
  // Section 7 gathers rows from the seed and the drain runs: a row of it not measured now stays.
  const same = (a, b) => a.section === b.section && a.label === b.label && a.baselineLabel === b.baselineLabel;
  const gathered = (r) => r.section === '7. Main thread' && !fresh.rows.some((x) => same(x, r));
  for (const r of old.rows) {
    if (!sections.includes(r.section) || gathered(r)) rows.push(r);
    else if (!rows.some((x) => x.section === r.section && !gathered(x))) {
      rows.push(...fresh.rows.filter((x) => x.section === r.section));
    }
  }
  rows.push(...fresh.rows.filter((r) => !rows.includes(r) && !old.rows.some((o) => o.section === r.section)));
  // A note names its section without the number ("Merges in wasm: ...").
  const topics = sections.map((s) => s.replace(/^\d+\.\s*/, ''));
  const notes = old.notAvailable.filter((n) => !topics.some((t) => n.startsWith(t))).concat(fresh.notAvailable);
  const entry = { generatedAt: fresh.generatedAt, only: [...ONLY].join(','), sections, loadAverage: fresh.machine.loadAverage };
  return { ...old, rows, notAvailable: notes, sizes: fresh.sizes ?? old.sizes, updates: [...(old.updates ?? []), entry] };
}

// ---- main ----

const loadAtStart = os.loadavg().map((x) => x.toFixed(2));
const server = await startServer();
// gc() in the page, for the memory figures.
const browser = await launch(['--js-flags=--expose-gc']);
let exitCode = 0;
let closing = false;
try {
  const { page, context } = browser;
  // A crashed renderer or a browser killed from outside otherwise shows only as "Target closed".
  page.on('crash', () => console.error('bench: the page crashed'));
  context.on('close', () => closing || console.error('bench: the browser closed under us'));
  await page.goto(`${server.url}/index.html`);
  await page.waitForFunction(() => window.bench, null, { timeout: 60_000 });
  const info = await page.evaluate(() => window.bench.info());
  // The user agent string is frozen at "156.0.0.0"; the DevTools protocol has the full version.
  const { product } = await (await context.newCDPSession(page)).send('Browser.getVersion');

  if (wanted('writes')) await writesSection(page);
  if (wanted('drain') || wanted('cold') || wanted('hooks')) await seedSection(page, 'seed-10k');
  if (wanted('drain')) await drainSection(page, 'seed-10k');
  if (wanted('cold')) await coldStartSection(page, 'seed-10k');
  if (wanted('hooks')) await hookReadsSection(page, 'seed-10k');
  if (wanted('merge')) await mergeSection();
  if (wanted('checksums')) await checksumSection(page);
  if (wanted('boundary')) await boundarySection(page);
  if (wanted('realtime')) await realtimeSection(page);
  if (wanted('live')) await liveQuerySection(page);
  ROWS.push(...MAIN_THREAD);

  const cpus = os.cpus();
  const results = {
    generatedAt: new Date().toISOString(),
    durationSec: Math.round((Date.now() - t0) / 1000),
    runs: RUNS,
    machine: {
      cpus: cpus.length,
      cpuModel: cpus[0]?.model.trim() ?? 'unknown',
      memGiB: Math.round(os.totalmem() / 2 ** 30),
      os: `${os.type()} ${os.release()} ${os.arch()}`,
      browser: `headless Chromium (${product})`,
      hardwareConcurrency: info.hardwareConcurrency,
      node: process.versions.node,
      loadAverage: loadAtStart,
    },
    initMs: info.initMs,
    rows: ROWS,
    sizes: wanted('size') ? await sizes() : null,
    notAvailable: NOT_AVAILABLE,
  };
  const output = process.env.BENCH_UPDATE && ONLY ? await update(results) : results;
  await writeFile(path.join(opt.out, 'results.json'), `${JSON.stringify(output, null, 2)}\n`);
  await writeFile(path.join(opt.out, 'RESULTS.md'), markdown(output));
  log(`wrote ${path.join(opt.out, 'RESULTS.md')} and results.json in ${results.durationSec} s`);
} catch (e) {
  console.error(e);
  if (browser.logs.length) console.error(`page console:\n${browser.logs.join('\n')}`);
  exitCode = 1;
} finally {
  closing = true;
  await browser.close();
  server.stop();
}
process.exit(exitCode);
