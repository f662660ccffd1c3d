// Conformance: tidesync against four backends of different shapes, each behind a faulty network.
//
//   1. the reference server (server/, the batch protocol);
//   2. json-server 0.17.4, unchanged (tests/json-server): plain REST, no versions, no idempotency;
//   3. tests/backends/progress/server.mjs: the reference design's "Enhanced Progress API" to the letter
//      (upsert by `cardId` at POST /api/progress-v2, X-Client-Version, `{success, data}` envelopes);
//   4. tests/backends/fastapi/app.py: FastAPI's own defaults (plain arrays, `{"detail": ...}` errors,
//      a `version` field in the body, 204 deletes).
//
// Each backend runs in Chromium, and the reference server in Firefox and WebKitGTK too (see the end).
// Each backend runs behind tests/backends/proxy.mjs (in this process), which serves the test page
// (www/tests/conformance/) and the package (/pkg/) on the same origin and injects faults: 503s (half of
// them with `Retry-After: 0`), dropped answers after the backend applied the write, latency. Two
// devices (two pages, two databases) run a seeded random workload of puts and patches on 8 shared
// records, with flushes and pulls in between, an offline period on one device and a page reload in the
// middle of a flush; then one device deletes a few records; then the faults stop and both devices
// sync until nothing changes. Every write stamps `lastModified` and a `writer` tag (`a#17`).
//
// Checked per backend, each printed as a number (0 is the only pass):
//   converged       records where a device's list() differs from the server's record (app fields only)
//   foreign         final records (server or device) equal to no single write of either device
//   lost            records whose final value is not the write with the latest lastModified (whole-record
//                   last write wins), or deleted records still present anywhere
//   applied twice   from the backend's ledger (reference server, progress API), else from the proxy log:
//                   a write re-applied after another write to the same record, or a create applied twice
//                   (without versions, a write re-sent after a lost answer, checked before the other
//                   write landed, is the versionless gap: reported apart, not failed)
//   pull errors     PROTOCOL errors (events or rejected calls) on either device
//   stalls          pending writes, dead letters and waiting conflicts left on the devices at the end
//
// The seed is printed; TIDESYNC_CONFORMANCE_SEED=<n> replays a run (the network's timing still varies),
// TIDESYNC_CONFORMANCE_STEPS=<n> changes the workload's length, TIDESYNC_CONFORMANCE_ONLY=<key,...> runs
// only some backends (reference, json-server, progress, fastapi), TIDESYNC_CONFORMANCE_DUMP=<dir> writes each
// run's writes, proxy log, events and final records there as JSON.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { engineTest, openEngine } from './browser.mjs';
import { rng, startProxy } from '../../tests/backends/proxy.mjs';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TARGET_DIR = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target');
// The package as the browser loads it: the assembled demo's copy (scripts/test), else pkg/ itself.
const PKG_DIR = process.env.TIDESYNC_DEMO_DIR ? path.join(process.env.TIDESYNC_DEMO_DIR, 'pkg') : path.join(ROOT, 'pkg');
const PAGE_DIR = fileURLToPath(new URL('./conformance/', import.meta.url));
const FASTAPI_PYTHON = process.env.TIDESYNC_FASTAPI_PYTHON || path.join(TARGET_DIR, 'fastapi-venv', 'bin', 'python');

const SEED = Number(process.env.TIDESYNC_CONFORMANCE_SEED || Math.floor(Math.random() * 2 ** 31));
const STEPS = Number(process.env.TIDESYNC_CONFORMANCE_STEPS || 120);
const ONLY = process.env.TIDESYNC_CONFORMANCE_ONLY ? new Set(process.env.TIDESYNC_CONFORMANCE_ONLY.split(',')) : null;
const IDS = Array.from({ length: 8 }, (_, i) => `r${i + 1}`);
const FAULTS = { fail5xx: 0.2, drop: 0.1, latencyMs: 20 };

console.log(`conformance seed ${SEED} (TIDESYNC_CONFORMANCE_SEED=${SEED} to replay), ${STEPS} steps`);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function getJson(url, init) {
  const res = await fetch(url, init);
  const text = await res.text();
  if (!res.ok) throw new Error(`${init?.method ?? 'GET'} ${url}: ${res.status} ${text}`);
  return JSON.parse(text);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * Spawns a backend; resolves to { child, url, output } once `pattern` (its group 1: the URL) shows in
 * its stdout, or once `ready(url)` holds when the URL is known in advance.
 */
function spawnBackend(label, cmd, args, { pattern, url, ready, cwd = ROOT } = {}) {
  const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = [];
  const keep = (s) => {
    output.push(s);
    if (output.length > 500) output.splice(0, output.length - 500);
  };
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (err, value) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        child.kill('SIGKILL');
        reject(err);
      } else resolve(value);
    };
    const timer = setTimeout(() => finish(new Error(`${label} was not ready within 30 s:\n${output.join('')}`)), 30_000);
    let stdout = '';
    child.stdout.on('data', (d) => {
      keep(d.toString());
      stdout += d.toString();
      const m = pattern && stdout.match(pattern);
      if (m) finish(null, { child, url: m[1], output });
    });
    child.stderr.on('data', (d) => keep(d.toString()));
    child.on('error', (err) => finish(new Error(`${label}: ${err.message}`)));
    child.on('exit', (code, signal) => finish(new Error(`${label} exited (${code ?? signal}) before it was ready:\n${output.join('')}`)));
    if (ready) {
      (async () => {
        while (!done) {
          if (await ready(url).catch(() => false)) return finish(null, { child, url, output });
          await sleep(100);
        }
      })();
    }
  });
}

async function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  if (await Promise.race([exited.then(() => true), sleep(5000).then(() => false)])) return;
  child.kill('SIGKILL');
  await exited;
}

const isOk = (status) => status >= 200 && status < 300;

/** The record id a logged REST write is about: the body's key for a POST, else the path's last segment. */
const restIdOf = (keyField) => (e) => {
  if (e.method === 'POST') return e.body?.[keyField] ?? null;
  const p = e.path.split('?')[0];
  return decodeURIComponent(p.slice(p.lastIndexOf('/') + 1));
};

/**
 * For backends without idempotency: every write the backend answered 2xx, in the order it answered.
 * A write (one Idempotency-Key) applied again after another write to the same record was applied is an
 * older write re-applied over a newer one; so is a `writer` tag applied again under another key after
 * another write. A POST applied twice (same key) is a create applied twice.
 *
 * With `reads` (a backend without versions), a write re-applied after another device's write is
 * marked `gap: true` when its device had not read the record since that other write landed: the write was sent again
 * after a lost answer, checked by a read made before the other write landed (the versionless gap the
 * README states; see `gap` in runScenario). Re-sent after a read that showed the other write, it is
 * a violation like any other.
 */
function reappliedFromProxyLog(entries, idOf, reads = null) {
  const applied = entries
    .filter((e) => e.status !== null && isOk(e.status))
    .sort((x, y) => x.end - y.end || x.seq - y.seq);
  const perRecord = new Map();
  const creates = new Set();
  const violations = [];
  for (const e of applied) {
    const id = idOf(e);
    const key = e.idempotencyKey ?? e.operationId ?? `unkeyed#${e.seq}`;
    const tag = e.method === 'DELETE' ? null : (e.body?.writer ?? null);
    const s = perRecord.get(id) ?? { last: null, lastKey: null, lastTag: undefined, keys: new Set(), tags: new Map() };
    if (s.keys.has(key) && s.lastKey !== key) {
      const other = s.last;
      // Did the sender read the record after the other write had landed (answered), before this one?
      const sawOther = (r) => r.device === e.device && !r.fault && r.status !== null && idOf(r) === id && r.start > other.end && r.start < e.start;
      // Only another device's write: re-sending one's own older write after one's own newer one is
      // an ordering bug, not the gap.
      const gap = reads !== null && !!e.device && other.device !== e.device && !reads.some(sawOther);
      violations.push({ id, key, seq: e.seq, method: e.method, tag, what: `write ${key} re-applied after ${s.lastKey}`, ...(gap ? { gap } : {}) });
    } else if (tag !== null && s.tags.has(tag) && s.tags.get(tag) !== key && s.lastTag !== tag) {
      violations.push({ id, key, seq: e.seq, method: e.method, tag, what: `${tag} re-applied (first as ${s.tags.get(tag)}) after ${s.lastTag}` });
    }
    if (e.method === 'POST') {
      if (creates.has(key)) violations.push({ id, key, seq: e.seq, method: e.method, tag, what: 'create applied twice' });
      creates.add(key);
    }
    s.keys.add(key);
    if (tag !== null && !s.tags.has(tag)) s.tags.set(tag, key);
    s.last = e;
    s.lastKey = key;
    s.lastTag = tag;
    perRecord.set(id, s);
  }
  return violations;
}

// ---- the backends ----
// Each: { key, title, collection, collections (the engine's options), fields (what the app writes),
// start() -> { routes (for the proxy), records() -> Map id -> data of live records, appliedTwice(proxy)
// -> [violations], stop() } }.

const APP_FIELDS = ['title', 'n', 'writer', 'lastModified'];

const BACKENDS = [
  {
    key: 'reference',
    title: 'reference server (batch protocol)',
    collection: 'notes',
    collections: { notes: { endpoint: '/api/notes', merge: { default: 'lww' } } },
    fields: APP_FIELDS,
    async start() {
      const bin = path.join(TARGET_DIR, 'debug', 'tidesync-server');
      if (!existsSync(bin)) throw new Error(`${bin} is missing: cargo build -p tidesync-server (scripts/test does)`);
      // --admin for the ledger and stats below; the devices and these checks are the demo user alice.
      const args = ['--host', '127.0.0.1', '--port', '0', '--admin', '--demo-users'];
      const { child, url, output } = await spawnBackend('tidesync-server', bin, args, {
        pattern: /tidesync-server listening on (http:\/\/\S+)/,
      });
      const signIn = { method: 'POST', body: JSON.stringify({ username: 'alice', password: 'alice' }) };
      const { token } = await getJson(`${url}/auth/token`, signIn);
      const asAlice = { headers: { authorization: `Bearer ${token}` } };
      return {
        output,
        token,
        routes: { '/api': `${url}/api` },
        async records() {
          const body = await getJson(`${url}/api/notes`, asAlice);
          return new Map(body.items.map((r) => [r.entityId, r.data]));
        },
        // The ledger holds each op id once; the server applied one mutation per applied op (its global
        // change cursor) and each record's version is at most the number of ops applied for it.
        async appliedTwice(proxy) {
          const [{ entries }, stats, feed] = await Promise.all([
            getJson(`${url}/admin/ledger`),
            getJson(`${url}/admin/stats`),
            getJson(`${url}/api/notes?since=0&limit=5000`, asAlice),
          ]);
          const violations = [];
          const ids = entries.map((e) => e.opId);
          if (new Set(ids).size !== ids.length) violations.push({ what: 'an op id is in the ledger twice' });
          const ok = entries.filter((e) => isOk(e.status));
          if (stats.cursor > ok.length) {
            violations.push({ what: `${stats.cursor} mutations applied for ${ok.length} applied ops` });
          }
          const entityOf = new Map();
          for (const e of proxy.log) {
            for (const o of e.body?.operations ?? []) entityOf.set(o.id, o.entityId);
          }
          const opsPer = new Map();
          for (const e of ok) {
            const entity = entityOf.get(e.opId);
            opsPer.set(entity, (opsPer.get(entity) ?? 0) + 1);
          }
          for (const r of feed.items) {
            if (r.version > (opsPer.get(r.entityId) ?? 0)) {
              violations.push({ id: r.entityId, what: `version ${r.version} after ${opsPer.get(r.entityId) ?? 0} applied ops` });
            }
          }
          this.redeliveries = entries.reduce((n, e) => n + e.deliveries - 1, 0);
          return violations;
        },
        stop: () => stopChild(child),
      };
    },
  },
  {
    key: 'json-server',
    title: 'json-server 0.17.4 (REST, unchanged)',
    // No versions: see `gap` in runScenario.
    versionless: true,
    collection: 'notes',
    collections: { notes: { endpoint: '/api/notes', transport: 'rest' } },
    fields: APP_FIELDS,
    async start() {
      const cli = path.join(ROOT, 'tests/json-server/node_modules/json-server/lib/cli/bin.js');
      if (!existsSync(cli)) throw new Error(`${cli} is missing: run scripts/setup`);
      const dir = await mkdtemp(path.join(tmpdir(), 'tidesync-json-server-'));
      const db = path.join(dir, 'db.json');
      await writeFile(db, '{"notes": []}\n');
      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      const { child, output } = await spawnBackend('json-server', process.execPath, [cli, '--host', '127.0.0.1', '--port', String(port), db], {
        url,
        ready: async (u) => (await fetch(`${u}/notes`)).ok,
      });
      return {
        output,
        routes: { '/api/notes': `${url}/notes` },
        async records() {
          return new Map((await getJson(`${url}/notes`)).map((r) => [String(r.id), r]));
        },
        async appliedTwice(proxy) {
          return reappliedFromProxyLog(proxy.log, restIdOf('id'), proxy.reads);
        },
        async stop() {
          await stopChild(child);
          await rm(dir, { recursive: true, force: true });
        },
      };
    },
  },
  {
    key: 'progress',
    title: 'progress API of the reference design (POST upsert by cardId)',
    collection: 'progress',
    collections: {
      progress: { endpoint: '/api/progress-v2', transport: 'rest', key: 'cardId', rest: { update: 'post' } },
    },
    fields: [...APP_FIELDS, 'cardId', 'grade'],
    async start() {
      const { child, url, output } = await spawnBackend(
        'progress server',
        process.execPath,
        [path.join(ROOT, 'tests/backends/progress/server.mjs'), '--port', '0'],
        { pattern: /listening on (http:\/\/\S+)/ },
      );
      return {
        output,
        routes: { '/api': `${url}/api` },
        async records() {
          const { records } = await getJson(`${url}/__admin/records`);
          return new Map(records.filter((r) => !r.deleted).map((r) => [r.cardId, r]));
        },
        // Its ledger applies each X-Operation-ID once; each record's version counts the writes it
        // applied, so a version above the ledger's count is a write applied without (or past) the ledger;
        // and the writes applied, in order, must not bring back a write after another one.
        async appliedTwice() {
          const [{ entries }, { records }] = await Promise.all([getJson(`${url}/__admin/ledger`), getJson(`${url}/__admin/records`)]);
          const violations = [];
          const appliedPer = new Map();
          for (const e of entries) {
            if (e.applied > 1) violations.push({ id: e.cardId, what: `op ${e.opId} applied ${e.applied} times` });
            appliedPer.set(e.cardId, (appliedPer.get(e.cardId) ?? 0) + e.applied);
          }
          for (const r of records) {
            if (r.version !== (appliedPer.get(r.cardId) ?? 0)) {
              violations.push({ id: r.cardId, what: `version ${r.version} after ${appliedPer.get(r.cardId) ?? 0} ledgered writes` });
            }
          }
          const applied = entries
            .filter((e) => e.applied)
            .map((e, i) => ({
              seq: i,
              end: i,
              method: e.method,
              path: `/api/progress-v2/${encodeURIComponent(e.cardId)}`,
              idempotencyKey: e.opId,
              status: e.status,
              body: e.method === 'POST' ? { cardId: e.cardId, writer: e.answer?.data?.writer } : null,
            }));
          violations.push(...reappliedFromProxyLog(applied, restIdOf('cardId')));
          this.redeliveries = entries.reduce((n, e) => n + e.deliveries - 1, 0);
          return violations;
        },
        stop: () => stopChild(child),
      };
    },
  },
  {
    key: 'fastapi',
    title: "FastAPI's defaults (CRUD at /items, version field, {detail} errors)",
    collection: 'items',
    collections: { items: { endpoint: '/api/items', transport: 'rest', rest: { version: 'version' } } },
    fields: APP_FIELDS,
    async start() {
      if (!existsSync(FASTAPI_PYTHON)) throw new Error(`${FASTAPI_PYTHON} is missing: run scripts/setup (it makes target/fastapi-venv)`);
      const { child, url, output } = await spawnBackend(
        'FastAPI app',
        FASTAPI_PYTHON,
        [path.join(ROOT, 'tests/backends/fastapi/app.py'), '--port', '0'],
        { pattern: /listening on (http:\/\/\S+)/ },
      );
      return {
        output,
        routes: { '/api/items': `${url}/items` },
        async records() {
          return new Map((await getJson(`${url}/items`)).map((r) => [String(r.id), r]));
        },
        async appliedTwice(proxy) {
          return reappliedFromProxyLog(proxy.log, restIdOf('id'));
        },
        stop: () => stopChild(child),
      };
    },
  },
];

// ---- the devices ----

function pick(data, fields) {
  if (data == null) return null;
  const out = {};
  for (const f of fields) if (f in data) out[f] = data[f];
  return out;
}

/** One device: a page with its own database. Every call goes through window.conf (conformance/page.js). */
class Device {
  constructor(name, page, url, logs) {
    Object.assign(this, { name, page, url, logs });
    page.on('console', (m) => logs.push(`[${name} console.${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => logs.push(`[${name} pageerror] ${e.stack ?? e}`));
  }

  async load() {
    await this.page.goto(this.url);
    await this.page.waitForFunction(() => document.body.dataset.ready !== 'false', null, { timeout: 30_000 });
    const state = await this.page.evaluate(() => ({ ready: document.body.dataset.ready, error: document.body.dataset.error }));
    if (state.ready !== 'true') throw new Error(`${this.name}: the engine did not open: ${state.error}`);
  }

  eval(fn, ...args) {
    return this.page.evaluate(fn, args);
  }

  write(kind, collection, id, data) {
    return this.eval(([k, c, i, d]) => conf.write(k, c, i, d), kind, collection, id, data);
  }
  get(collection, id) {
    return this.eval(([c, i]) => conf.get(c, i), collection, id);
  }
  remove(collection, id) {
    return this.eval(([c, i]) => conf.remove(c, i), collection, id);
  }
  flush() {
    return this.eval(() => conf.call('flush'));
  }
  pull() {
    return this.eval(() => conf.call('pull'));
  }
  status() {
    return this.eval(() => conf.status());
  }
  list(collection) {
    return this.eval(([c]) => conf.list(c), collection);
  }
  events() {
    return this.eval(() => conf.events());
  }
}

/**
 * Flush and pull on every device until two rounds in a row change nothing and nothing is pending
 * (or `rounds` run out). Returns { quiet, rounds }.
 */
async function quiesce(devices, { rounds = 60, deadlineMs = 60_000 } = {}) {
  const deadline = Date.now() + deadlineMs;
  let calm = 0;
  for (let round = 1; round <= rounds && Date.now() < deadline; round++) {
    let changed = false;
    for (const d of devices) {
      const f = await d.flush();
      if (!f.ok || f.value.sent > 0) changed = true;
    }
    for (const d of devices) {
      const p = await d.pull();
      if (!p.ok || p.value.applied + p.value.rebased + p.value.deleted + p.value.skipped > 0) changed = true;
    }
    const statuses = await Promise.all(devices.map((d) => d.status()));
    const busy = statuses.some((s) => s.pending > 0 || s.conflicts > 0);
    if (!changed && !busy) {
      calm += 1;
      if (calm >= 2) return { quiet: true, rounds: round };
    } else calm = 0;
    const next = Math.min(...statuses.map((s) => s.nextAttemptAt ?? Infinity));
    if (busy && Number.isFinite(next)) await sleep(Math.max(0, Math.min(next - Date.now(), 500)));
  }
  return { quiet: false, rounds };
}

// ---- the scenario ----

async function runScenario(t, backend, engine) {
  const random = rng(SEED);
  const pickOf = (list) => list[Math.floor(random() * list.length)];
  const logs = [];
  const server = await backend.start();
  let proxy;
  let browser;
  const devices = [];
  try {
    proxy = await startProxy({ routes: server.routes, mounts: { '/pkg/': PKG_DIR, '/conformance/': PAGE_DIR } });
    browser = await openEngine(engine);
    const options = (device) => ({
      name: `conformance-${backend.key}-${device}`,
      userId: 'u1',
      collections: backend.collections,
      token: server.token,
      timeoutMs: 5_000,
      retry: { baseMs: 20, capMs: 250, jitterMs: 20 },
      breaker: { threshold: 5, cooldownMs: 100 },
    });
    for (const name of ['a', 'b']) {
      const page = name === 'a' ? browser.page : await browser.context.newPage();
      const url = `${proxy.url}/conformance/?config=${encodeURIComponent(JSON.stringify(options(name)))}`;
      const d = new Device(name, page, url, logs);
      await d.load();
      devices.push(d);
    }
    const [a, b] = devices;
    const coll = backend.collection;
    const writes = [];
    let counter = 0;
    let lastStamp = 0;
    const stamp = () => {
      lastStamp = Math.max(Date.now(), lastStamp + 1);
      return new Date(lastStamp).toISOString();
    };
    const counts = { puts: 0, patches: 0, flushes: 0, pulls: 0, reloads: 0, inFlightAtReload: 0, offlineSteps: 0, deletes: 0 };

    async function write(d, id, kind) {
      counter += 1;
      const tag = `${d.name}#${counter}`;
      const have = await d.get(coll, id).catch(() => null);
      if (!have) kind = 'put';
      const data = { n: counter, writer: tag, lastModified: stamp() };
      if (kind === 'put') data.title = `${id} by ${tag}`;
      if (backend.collection === 'progress') {
        data.grade = Math.floor(random() * 4);
        if (kind === 'put') data.cardId = id;
      }
      const after = await d.write(kind, coll, id, data);
      const snapshot = pick(after, backend.fields);
      assert.equal(snapshot?.writer, tag, `${d.name}: ${kind} ${id} did not take effect locally: ${JSON.stringify(after)}`);
      writes.push({ id, device: d.name, tag, kind, snapshot });
      counts[kind === 'put' ? 'puts' : 'patches'] += 1;
    }

    async function reloadMidFlush(d) {
      for (let i = 0; i < 3; i++) await write(d, pickOf(IDS), random() < 0.5 ? 'put' : 'patch');
      const before = proxy.log.length;
      await d.eval(() => conf.startFlush());
      // Reload once the flush's first request is on its way (latency holds it in the proxy).
      const until = Date.now() + 2_000;
      while (proxy.log.length === before && Date.now() < until) await sleep(2);
      await sleep(Math.floor(random() * 15));
      const at = Date.now();
      counts.inFlightAtReload += proxy.log.slice(before).filter((e) => e.end === null || e.end > at).length;
      await d.page.reload();
      await d.page.waitForFunction(() => document.body.dataset.ready !== 'false', null, { timeout: 30_000 });
      const ready = await d.eval(() => document.body.dataset.ready);
      assert.equal(ready, 'true', `${d.name}: the engine did not open again after the reload`);
      counts.reloads += 1;
    }

    // Phase 1: the workload, faults on.
    proxy.setFaults({ ...FAULTS, seed: SEED });
    const offlineAt = Math.floor(STEPS * 0.25);
    const offlineUntil = offlineAt + Math.floor(STEPS * 0.2);
    const reloadAt = Math.floor(STEPS * 0.6);
    for (let step = 0; step < STEPS; step++) {
      if (step === offlineAt) await b.eval(() => conf.goOffline());
      if (step === offlineUntil) await b.eval(() => conf.goOnline());
      if (step >= offlineAt && step < offlineUntil) counts.offlineSteps += 1;
      if (step === reloadAt) await reloadMidFlush(a);
      const d = random() < 0.5 ? a : b;
      const r = random();
      if (r < 0.55) await write(d, pickOf(IDS), random() < 0.6 ? 'put' : 'patch');
      else if (r < 0.72) {
        await d.flush();
        counts.flushes += 1;
      } else if (r < 0.85) {
        await d.pull();
        counts.pulls += 1;
      } else if (r < 0.93) {
        await Promise.all([a.flush(), b.flush()]);
        counts.flushes += 2;
      } else {
        await d.pull();
        await d.flush();
        counts.pulls += 1;
        counts.flushes += 1;
      }
    }
    await b.eval(() => conf.goOnline());

    // Phase 2: deletes by one device, faults still on. Both settle first, so that no write of the
    // other device is still on its way to a record being deleted.
    const settled = await quiesce(devices, { rounds: 40, deadlineMs: 40_000 });
    const pendingOfB = new Set((await b.eval(() => conf.queue())).map((o) => o.entityId));
    const present = (await a.list(coll)).map((r) => r.id).filter((id) => !pendingOfB.has(id));
    const deleted = new Set();
    while (deleted.size < 3 && deleted.size < present.length) deleted.add(pickOf(present));
    for (const id of deleted) {
      await a.remove(coll, id);
      counts.deletes += 1;
    }
    for (let i = 0; i < 8; i++) {
      const d = random() < 0.5 ? a : b;
      if (random() < 0.5) await d.flush();
      else await d.pull();
    }

    // Phase 3: faults off, sync until nothing changes.
    proxy.setFaults({});
    const final = await quiesce(devices, { rounds: 60, deadlineMs: 60_000 });

    // ---- the numbers ----
    const fields = backend.fields;
    const serverRecords = await server.records();
    const deviceRecords = [];
    for (const d of devices) {
      deviceRecords.push({ name: d.name, records: new Map((await d.list(coll)).map((r) => [r.id, r.data])) });
    }
    const norm = (data) => pick(data, fields);

    const diverged = [];
    for (const { name, records } of deviceRecords) {
      for (const id of new Set([...records.keys(), ...serverRecords.keys()])) {
        const mine = norm(records.get(id));
        const theirs = norm(serverRecords.get(id));
        if (!isDeepStrictEqual(mine, theirs)) diverged.push({ device: name, id, device_has: mine, server_has: theirs });
      }
    }

    const byTag = new Map(writes.map((w) => [w.tag, w]));
    // Which writes a record's fields could come from (field -> tags): a record that mixes the fields of
    // two writes (a field-level merge) shows as { title: ['b#58'], n: ['a#62'], ... }.
    const fieldSources = (id, data) =>
      Object.fromEntries(
        Object.entries(data ?? {}).map(([f, v]) => [
          f,
          writes.filter((w) => w.id === id && isDeepStrictEqual(w.snapshot[f], v)).map((w) => w.tag).slice(-3),
        ]),
      );
    const foreign = [];
    const finals = [['server', serverRecords], ...deviceRecords.map((d) => [d.name, d.records])];
    for (const [where, records] of finals) {
      for (const [id, data] of records) {
        const w = byTag.get(data?.writer);
        if (!w || w.id !== id || !isDeepStrictEqual(w.snapshot, norm(data))) {
          foreign.push({ where, id, has: norm(data), tagged_write: w ?? null, fields_from: fieldSources(id, norm(data)) });
        }
      }
    }

    // A backend without versions cannot refuse a write that lands between its sender's read and
    // its write (the one gap the README states for such backends): the other device's later write
    // landed first, then this one, sent with no read of the record in between, replaced it. Such a
    // record is reported (`lost to the gap`), not failed; any other lost record fails.
    const toId = (e, id) => e.path.split('?')[0].endsWith(`/${encodeURIComponent(id)}`) || e.body?.id === id;
    const gap = (id, latestTag, heldTag) => {
      if (!backend.versionless || !heldTag) return false;
      const landed = (tag) =>
        proxy.log.filter((e) => toId(e, id) && e.body?.writer === tag && !e.fault && e.status >= 200 && e.status < 300).at(-1);
      const [latest, held] = [landed(latestTag), landed(heldTag)];
      if (!latest || !held || held.start < latest.start) return false;
      return !proxy.reads.some((e) => toId(e, id) && !e.fault && e.start > latest.start && e.start < held.start);
    };
    const toGap = [];
    const lost = [];
    for (const id of new Set(writes.map((w) => w.id))) {
      if (deleted.has(id)) {
        for (const [where, records] of finals) {
          if (records.has(id)) lost.push({ id, where, what: 'deleted, still present', has: norm(records.get(id)) });
        }
        continue;
      }
      const latest = writes.filter((w) => w.id === id).reduce((x, y) => (y.snapshot.lastModified > x.snapshot.lastModified ? y : x));
      const has = norm(serverRecords.get(id));
      if (!isDeepStrictEqual(has, latest.snapshot)) {
        const entry = { id, where: 'server', what: `expected ${latest.tag} (latest lastModified)`, expected: latest.snapshot, has, fields_from: fieldSources(id, has) };
        (gap(id, latest.tag, has?.writer) ? toGap : lost).push(entry);
      }
    }

    const reapplied = await server.appliedTwice(proxy);
    const appliedTwice = reapplied.filter((v) => !v.gap);
    const resentInGap = reapplied.filter((v) => v.gap);

    const events = [];
    for (const d of devices) for (const e of await d.events()) events.push({ device: d.name, ...e });
    const pullErrors = events.filter((e) => e.code === 'PROTOCOL' && (e.type === 'error' || e.type === 'rejected'));

    const statuses = await Promise.all(devices.map((d) => d.status()));
    const stalls = statuses.reduce((n, s) => n + s.pending + s.deadLetters + s.conflicts, 0);
    const deadLetters = [];
    const stuck = [];
    for (const d of devices) {
      for (const l of await d.eval(() => conf.deadLetters())) {
        const { op, ...rest } = l;
        deadLetters.push({ device: d.name, op: { id: op.id, kind: op.kind, entityId: op.entityId, writer: op.payload?.writer, attempts: op.attempts }, ...rest });
      }
      for (const o of await d.eval(() => conf.queue())) {
        stuck.push({ device: d.name, id: o.id, kind: o.kind, entityId: o.entityId, writer: o.payload?.writer, baseVersion: o.baseVersion, attempts: o.attempts, sent: o.sent, lastStatus: o.lastStatus, lastError: o.lastError });
      }
    }

    const numbers = {
      converged: diverged.length,
      foreign: foreign.length,
      lost: lost.length,
      appliedTwice: appliedTwice.length,
      pullErrors: pullErrors.length,
      stalls,
    };
    const merged = events.filter((e) => e.type === 'sync').reduce((n, e) => n + (e.report?.conflicts ?? 0), 0);
    const c = proxy.counts;
    const summary =
      `${backend.key}: seed ${SEED}; ${writes.length} writes (${counts.puts} puts, ${counts.patches} patches) on ` +
      `${new Set(writes.map((w) => w.id)).size} records, ${counts.deletes} deletes, ${counts.flushes} flushes, ${counts.pulls} pulls, ` +
      `${counts.reloads} reload mid-flush (${counts.inFlightAtReload} writes in flight), ${counts.offlineSteps} steps offline, ${merged} conflicts met; proxy: ${c.forwarded} forwarded, ` +
      `${c.failed5xx} answered 503, ${c.dropped} dropped after the backend answered` +
      (server.redeliveries !== undefined ? `; ledger redeliveries ${server.redeliveries}` : '') +
      `; settled before deletes: ${settled.quiet}, quiescent at the end: ${final.quiet} after ${final.rounds} rounds`;
    const line =
      `${backend.key}: converged ${numbers.converged} differing | foreign ${numbers.foreign} | lost ${numbers.lost} ` +
      `(${toGap.length} more lost to the versionless gap${toGap.length ? `: ${toGap.map((x) => `${x.id} ${x.what}, has ${x.has?.writer}`).join('; ')}` : ''}) | ` +
      `applied twice ${numbers.appliedTwice} (${resentInGap.length} more re-sent through the versionless gap` +
      `${resentInGap.length ? `: ${resentInGap.map((x) => `${x.id} ${x.what}`).join('; ')}` : ''}) | pull errors ${numbers.pullErrors} | stalls ${numbers.stalls} ` +
      `(pending ${statuses.map((s) => s.pending).join('/')}, dead letters ${statuses.map((s) => s.deadLetters).join('/')}, ` +
      `conflicts ${statuses.map((s) => s.conflicts).join('/')})`;
    console.log(summary);
    console.log(line);
    t.diagnostic(summary);
    t.diagnostic(line);

    const evidence = {
      converged: diverged,
      foreign,
      lost,
      appliedTwice,
      resentInGap,
      pullErrors,
      stalls: { statuses: statuses.map((s) => ({ pending: s.pending, deadLetters: s.deadLetters, conflicts: s.conflicts, lastError: s.lastError })), deadLetters, pending: stuck },
    };
    const idsInvolved = new Set([...diverged, ...foreign, ...lost, ...appliedTwice].map((x) => x.id).filter(Boolean));
    if (stalls) for (const x of [...deadLetters.map((l) => l.op), ...stuck]) idsInvolved.add(x.entityId);
    const report = (what) => `${what}: ${JSON.stringify(evidence[what], null, 1).slice(0, 6000)}`;
    // What each device wrote to a record and what went over the wire for it (the proxy's log).
    const history = (id) => {
      const writesTo = writes.filter((w) => w.id === id).map((w) => `${w.tag}(${w.kind} ${w.snapshot.lastModified.slice(17)})`);
      const about = (e) =>
        e.path.split('?')[0].endsWith(`/${encodeURIComponent(id)}`) || e.body?.id === id || e.body?.cardId === id ||
        e.body?.operations?.some((o) => o.entityId === id);
      const what = (e) =>
        e.body?.operations
          ? e.body.operations.filter((o) => o.entityId === id).map((o) => `${o.type}:${o.payload?.writer ?? '-'}@${o.baseVersion}`).join(',')
          : `${e.body?.writer ?? '-'}${e.body?.version !== undefined ? ` body.version=${e.body.version}` : ''}`;
      const reads = proxy.reads.filter((e) => toId(e, id));
      const wire = [...proxy.log.filter(about), ...reads].sort((x, y) => x.start - y.start).map((e) =>
        e.method === 'GET'
          ? `GET ${e.path} -> ${e.status ?? ''}${e.fault ? ` (${e.fault})` : ''}`
          : `#${e.seq} ${e.method} ${e.path} key=${(e.idempotencyKey ?? e.operationId ?? '').slice(0, 8)} ` +
            `X-Client-Version=${e.clientVersion ?? ''} If-Match=${e.ifMatch ?? ''} ${what(e)} -> ${e.status ?? ''}${e.fault ? ` (${e.fault})` : ''}`);
      const shown = wire.length > 40 ? [...wire.slice(0, 15), `... ${wire.length - 40} more ...`, ...wire.slice(-25)] : wire;
      return `${id}: writes ${writesTo.join(' ')}\n  wire (${wire.length} requests):\n    ${shown.join('\n    ')}`;
    };
    if (process.env.TIDESYNC_CONFORMANCE_DUMP) {
      const file = path.join(process.env.TIDESYNC_CONFORMANCE_DUMP, `conformance-${backend.key}-${SEED}.json`);
      const plainMap = (m) => Object.fromEntries(m);
      await writeFile(file, JSON.stringify({
        seed: SEED, numbers, evidence, writes, deleted: [...deleted], proxyLog: proxy.log, proxyReads: proxy.reads, events,
        server: plainMap(serverRecords), devices: Object.fromEntries(deviceRecords.map((d) => [d.name, plainMap(d.records)])),
      }, null, 1));
      t.diagnostic(`dumped to ${file}`);
    }
    const failures = [];
    const check = async (name, key, what) => {
      await t.test(`${name}: ${what}`, () => {
        if (numbers[key] !== 0) failures.push(key);
        assert.equal(numbers[key], 0, `${backend.key}: ${numbers[key]} ${what}\n${report(key)}`);
      });
    };
    await check('converged', 'converged', 'records where a device differs from the server');
    await check('foreign', 'foreign', 'final records that no device wrote');
    await check('lost', 'lost', 'records whose final value is not the latest write (or deleted ones still present)');
    await check('applied twice', 'appliedTwice', 'writes applied twice');
    await check('pull errors', 'pullErrors', 'PROTOCOL errors');
    await check('stalls', 'stalls', 'writes pending, dead-lettered or waiting in conflicts at the end');
    if (failures.length) {
      const tail = (arr, n) => arr.slice(-n).join('\n');
      t.diagnostic(`records involved:\n${[...idsInvolved].sort().map(history).join('\n')}`);
      t.diagnostic(`events (errors, dead letters, rejected calls):\n${tail(events.filter((e) => e.type !== 'sync').map((e) => JSON.stringify(e)), 60)}`);
      t.diagnostic(`browser console:\n${tail(logs, 80)}`);
      t.diagnostic(`backend output:\n${tail(server.output.join('').split('\n'), 40)}`);
    }
  } catch (err) {
    if (logs.length) t.diagnostic(`browser console:\n${logs.slice(-80).join('\n')}`);
    if (server?.output) t.diagnostic(`backend output:\n${server.output.join('').split('\n').slice(-40).join('\n')}`);
    throw err;
  } finally {
    await browser?.close().catch(() => {});
    await proxy?.close().catch(() => {});
    await server.stop().catch(() => {});
  }
}

// Every backend runs in Chromium; Firefox and WebKitGTK run the backends in
// TIDESYNC_CONFORMANCE_ENGINE_BACKENDS (default: the reference server; `all` for every one), which
// keeps the js tier's time down: the engine's browser code is the same whatever the backend speaks.
const OTHER_ENGINE_BACKENDS = (process.env.TIDESYNC_CONFORMANCE_ENGINE_BACKENDS || 'reference').split(',');
for (const backend of BACKENDS) {
  const skip = {};
  for (const engine of ['Chromium', 'Firefox', 'WebKit']) {
    if (ONLY && !ONLY.has(backend.key)) skip[engine] = 'not in TIDESYNC_CONFORMANCE_ONLY';
    else if (engine !== 'Chromium' && !OTHER_ENGINE_BACKENDS.includes('all') && !OTHER_ENGINE_BACKENDS.includes(backend.key)) {
      skip[engine] = `${engine} runs the ${OTHER_ENGINE_BACKENDS.join(', ')} backend(s) only (TIDESYNC_CONFORMANCE_ENGINE_BACKENDS=all for every backend)`;
    }
  }
  engineTest(`conformance: ${backend.title}`, { skip }, (t, engine) => runScenario(t, backend, engine));
}
