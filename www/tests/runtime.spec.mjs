// The browser runtime (src/js/engine.rs, src/web/, src/store/idb.rs and pkg/sw.js) in Chromium,
// Firefox and WebKitGTK against the reference server and its fault injection: tabs sharing one
// database and one flush lock (a Web Lock, or the lease in the `meta` store where Web Locks are
// missing), a tab closed or reloaded in the middle of a flush, offline, the service worker draining
// the queue with the page gone, a storage quota, a database upgrade from another connection, events
// crossing tabs, and a write too large for the server. Each flow runs in every engine with the same
// assertions; where an engine (or its driver) lacks what a flow needs, that run is skipped and says why.
//
// The pages are www/tests/runtime/, served at /tests/runtime/ with the package at /pkg/ by the js
// tier of scripts/test, and loaded through a recording proxy in this process (every batch request:
// which tab or the service worker sent it, its op ids, its outcome; it can hold back the first
// batch's answer). Every test starts from an empty server (POST /admin/reset) and a fresh browser
// profile, and checks what the server applied through /admin/ledger (each op id once, `deliveries` =
// how often it arrived), /admin/stats (`cursor` = how many mutations were applied) and the records.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request as httpRequest } from 'node:http';
import { baseUrl, closeEngines, ENGINES as LAUNCHERS, openEngine, screenshot } from './browser.mjs';
import { api, poll as pollUntil, sleep } from './app.mjs';

const DB = 'tidesync:rt:u1';

after(closeEngines);
const SYNC_TAG = `${DB}:sync`;

// ---- the engines ----

const NO_BACKGROUND_SYNC = 'no Background Sync (SyncManager) in this engine: tidesync flushes from the page instead';
const CHROMIUM_DRIVER_ONLY = (what) => `${what} needs the Chrome DevTools Protocol: Chromium only`;

/**
 * The engines each flow runs in, their launchers (browser.mjs: one page API over Playwright,
 * puppeteer-core and selenium-webdriver) and what each lacks, as a reason to skip the flows that
 * need it.
 */
// Chromium launches a browser of its own per test (a persistent profile: the crash and quota flows
// change it through CDP); Firefox and WebKitGTK start once for the file and give each test a fresh
// context (browser.mjs's openEngine: a BiDi user context, a new WebDriver session; no Playwright
// context, which the flows below take as Chromium).
const ENGINES = {
  Chromium: { launch: LAUNCHERS.Chromium, lacks: {} },
  Firefox: {
    launch: async () => ({ ...(await openEngine('Firefox')), context: undefined }),
    lacks: {
      backgroundSync: NO_BACKGROUND_SYNC,
      crash: CHROMIUM_DRIVER_ONLY('crashing a tab'),
      quota: CHROMIUM_DRIVER_ONLY('setting a storage quota'),
    },
  },
  WebKit: {
    launch: async () => ({ ...(await openEngine('WebKit')), context: undefined }),
    lacks: {
      backgroundSync: NO_BACKGROUND_SYNC,
      offline: 'classic WebDriver cannot take WebKitGTK offline (no network emulation)',
      crash: CHROMIUM_DRIVER_ONLY('crashing a tab'),
      quota: CHROMIUM_DRIVER_ONLY('setting a storage quota'),
    },
  },
};

/**
 * Declares the flow `name` once per engine: `fn(t, engine)`; skipped, with the reason, in an engine
 * that lacks one of `needs` (keys of ENGINES[*].lacks).
 */
function engineTest(name, needs, fn) {
  for (const [engine, { lacks }] of Object.entries(ENGINES)) {
    const reason = needs.map((n) => lacks[n]).find(Boolean);
    test(`${name} (${engine})`, { skip: reason ?? false }, (t) => fn(t, engine));
  }
}

// ---- the server, behind a recording proxy ----

const resetServer = () => api('/admin/reset', { method: 'POST' });
const setFaults = (faults) => api('/admin/faults', { method: 'POST', body: faults });
const ledger = async () => (await api('/admin/ledger')).entries;
const stats = () => api('/admin/stats');

/**
 * An HTTP proxy in front of the server: the pages load from it, so it sees every batch request of
 * every engine, the service worker's too. `batches` lists them ({ source: the tab's name or `sw`,
 * from page.js's header; ops; at; outcome: the status the browser got, or `pending`}). Set `hold`
 * to a promise and the next batch's answer (the server has applied it) is held back until the
 * promise settles.
 */
async function startRecorder() {
  const upstream = new URL(baseUrl());
  const recorder = { batches: [], hold: null };
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      let batch;
      if (req.method === 'POST' && req.url.endsWith('/api/sync/batch')) {
        let operations = [];
        try {
          operations = JSON.parse(body).operations ?? [];
        } catch {} // not JSON: recorded with no ops
        batch = {
          source: req.headers['x-tidesync-test-source'] ?? 'unknown',
          ops: operations.map((o) => ({ id: o.id, entityId: o.entityId, type: o.type })),
          at: Date.now(),
          outcome: 'pending',
        };
        recorder.batches.push(batch);
      }
      const hold = batch && recorder.hold;
      if (hold) recorder.hold = null;
      const headers = { ...req.headers, host: upstream.host };
      delete headers['x-tidesync-test-source'];
      const forward = httpRequest(upstream, { method: req.method, path: req.url, headers }, (answer) => {
        const parts = [];
        answer.on('data', (c) => parts.push(c));
        answer.on('end', async () => {
          if (hold) await hold;
          if (batch) batch.outcome = res.destroyed ? 'no response' : answer.statusCode;
          res.writeHead(answer.statusCode, answer.headers);
          res.end(Buffer.concat(parts));
        });
      });
      forward.on('error', (err) => {
        if (batch && batch.outcome === 'pending') batch.outcome = `failed: ${err.message}`;
        res.destroy();
      });
      // The browser hung up (its tab closed or reloaded, or the browser quit): so does the proxy, as
      // the browser's own connection to the server would have.
      res.on('close', () => {
        if (!res.writableFinished) forward.destroy();
      });
      forward.end(body);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  recorder.url = `http://127.0.0.1:${server.address().port}`;
  recorder.close = () => {
    server.closeAllConnections();
    server.close();
  };
  return recorder;
}

const recorder = await startRecorder();
after(() => recorder.close());

/** The server's live notes: id -> RECORD. */
async function serverNotes() {
  const body = await api('/api/notes');
  return new Map(body.items.map((r) => [r.entityId, r]));
}

/** `poll` from app.mjs, with this spec's tighter defaults (10 s deadline, every 50 ms). */
const poll = (what, fn, options) => pollUntil(what, fn, { timeoutMs: 10_000, everyMs: 50, ...options });

// ---- the browser ----

/**
 * Runs `body(env)` with a fresh server state and a fresh profile of `engine`. `env` has the browser,
 * its first page, `newPage`, `load`/`ready`/`open` for test pages, `batches` (every POST
 * /api/sync/batch the browser sent: which tab or the service worker, the op ids in it, its outcome)
 * and `logs`; those two are printed when the test fails. `webLocks: false` loads every test page with
 * `?webLocks=off`, which removes `navigator.locks` before any other script runs (as in a browser
 * without Web Locks): the engine falls back to its lease.
 */
async function withBrowser(t, engine, body, { webLocks = true } = {}) {
  await resetServer();
  const browser = await ENGINES[engine].launch();
  recorder.batches = [];
  recorder.hold = null;
  const logs = [];
  const labels = new Map();
  const pages = new Set();
  const label = (page) => labels.get(page) ?? page.url();
  const watch = (page) => {
    pages.add(page);
    page.on('console', (m) => logs.push(`[${label(page)} console.${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => logs.push(`[${label(page)} pageerror] ${e.stack ?? e}`));
    return page;
  };
  const { context } = browser; // Chromium only: CDP, network emulation, the service worker
  context?.on('serviceworker', (w) => w.on('console', (m) => logs.push(`[sw console.${m.type()}] ${m.text()}`)));

  const env = {
    context,
    page: watch(browser.page ?? (await browser.newPage())),
    get batches() {
      return recorder.batches;
    },
    set batches(list) {
      recorder.batches = list;
    },
    logs,
    /** The recording proxy (its `hold`). */
    recorder,
    /** A new tab. */
    newPage: async () => watch(await browser.newPage()),
    /** Takes the browser offline, or back online (not in WebKit: see ENGINES). */
    setOffline: (offline) => browser.setOffline(offline),
    /** Loads the test page in `page` (a new tab if omitted), names it `name` and waits for the wasm. */
    async load(name, page) {
      page ??= await env.newPage();
      labels.set(page, name);
      await page.goto(`${recorder.url}/tests/runtime/${webLocks ? '' : '?webLocks=off'}`);
      return env.ready(name, page);
    },
    /** Names the page `name` (for `batches` and logs) and waits until its wasm is loaded. */
    async ready(name, page) {
      labels.set(page, name);
      await pollUntil('the test page to load', () => page.evaluate(() => document.body?.dataset.ready === 'true').catch(() => false), {
        timeoutMs: 30_000,
        everyMs: 50,
      });
      await page.evaluate((n) => { rt.source = n; }, name);
      return page;
    },
    /** load() and SyncEngine.open(defaultOptions() + overrides) in it. */
    async open(name, page, overrides = {}) {
      page = await env.load(name, page);
      await page.evaluate((o) => rt.open(o), overrides);
      return page;
    },
  };
  try {
    await body(env);
  } catch (err) {
    for (const p of pages) {
      if (p.screenshot) await screenshot(p, `runtime-${t.name}-${label(p)}`.replace(/\W+/g, '-')).catch(() => {});
    }
    t.diagnostic(`batches sent:\n${env.batches.map((b) => JSON.stringify(b)).join('\n')}`);
    if (logs.length) t.diagnostic(`browser console:\n${logs.join('\n')}`);
    throw err;
  } finally {
    await setFaults({}).catch(() => {});
    await browser.close();
  }
}

/** Runs engine calls in the page, one after the other: [{ method: 'put' | 'patch' | 'flush', args, pauseMs? }]. */
function runWrites(page, writes) {
  return page.evaluate(async (writes) => {
    for (const w of writes) {
      await rt.engine[w.method](...w.args);
      if (w.pauseMs) await new Promise((r) => setTimeout(r, w.pauseMs));
    }
  }, writes);
}

const note = (tab, i) => ({ tab, i, title: `${tab} note ${i}` });
const puts = (tab, n, priority = 'medium') =>
  Array.from({ length: n }, (_, i) => ({ method: 'put', args: ['notes', `${tab}-${i}`, note(tab, i), { priority }] }));

/** Waits until the page's engine has nothing pending (status().pending === 0 and not flushing). */
const settled = (page, timeoutMs = 15_000) => page.evaluate((ms) => rt.settled(ms), timeoutMs);

/**
 * The core check: the server holds exactly `expected` (id -> data), and applied every op exactly once.
 * - the ledger has one entry per op the browser sent (by op id), every one a success;
 * - the server applied exactly one mutation per ledger entry (the global change cursor), and each
 *   record's version is the number of distinct ops sent for it, so no write went in twice under
 *   another op id;
 * - an op id arrived more than once only if it is in `mayRepeat` (a batch whose answer was lost).
 * Returns the ledger.
 */
async function assertAppliedOnce(env, expected, { mayRepeat = new Set() } = {}) {
  const [entries, st, records] = await Promise.all([ledger(), stats(), serverNotes()]);
  assert.deepEqual(
    Object.fromEntries([...records].map(([id, r]) => [id, r.data]).sort(([a], [b]) => a.localeCompare(b))),
    Object.fromEntries([...expected].sort(([a], [b]) => a.localeCompare(b))),
    'the records on the server are what the tabs wrote',
  );

  const sent = new Map(); // op id -> entity id
  for (const b of env.batches) for (const o of b.ops) sent.set(o.id, o.entityId);
  const ledgerIds = entries.map((e) => e.opId);
  assert.equal(new Set(ledgerIds).size, ledgerIds.length, 'the ledger lists each op id once');
  assert.deepEqual([...ledgerIds].sort(), [...sent.keys()].sort(), 'the ledger holds exactly the ops the browser sent');
  for (const e of entries) assert.equal(e.status, 200, `op ${e.opId} was applied with status ${e.status}`);
  assert.equal(st.cursor, entries.length, 'one applied mutation per op (global change cursor)');

  const opsPerRecord = new Map();
  for (const id of sent.values()) opsPerRecord.set(id, (opsPerRecord.get(id) ?? 0) + 1);
  for (const [id, r] of records) {
    assert.equal(r.version, opsPerRecord.get(id), `record ${id}: version ${r.version} = number of ops sent for it`);
  }
  for (const e of entries) {
    if (e.deliveries > 1) {
      assert.ok(mayRepeat.has(e.opId), `op ${e.opId} (${sent.get(e.opId)}) arrived ${e.deliveries} times`);
    }
  }
  return entries;
}

/** The page's records as id -> { data, syncStatus }. */
async function localNotes(page) {
  const list = await page.evaluate(() => rt.engine.list('notes'));
  return new Map(list.map((r) => [r.id, { data: r.data, syncStatus: r.syncStatus }]));
}

function assertLocal(local, expected, what) {
  assert.deepEqual(
    Object.fromEntries([...local].map(([id, r]) => [id, r.data]).sort(([a], [b]) => a.localeCompare(b))),
    Object.fromEntries([...expected].sort(([a], [b]) => a.localeCompare(b))),
    `${what}: local records`,
  );
  for (const [id, r] of local) assert.equal(r.syncStatus, 'synced', `${what}: ${id} is ${r.syncStatus}`);
}

/** Asserts that the page has no Web Locks (`withBrowser(..., { webLocks: false })`). */
async function assertNoWebLocks(page) {
  const seen = await page.evaluate(() => ({ type: typeof navigator.locks, inNavigator: 'locks' in navigator }));
  assert.deepEqual(seen, { type: 'undefined', inNavigator: false }, 'navigator.locks is gone');
}

/**
 * Asserts that no two tabs ever had a batch request in flight at the same time: one flusher at a
 * time. Each page records when its requests went out and when their answers came (page.js), on the
 * clock all tabs share; a flusher lets go of the lock only after its answer, so the next request
 * from another tab starts at or after that answer.
 */
async function assertOneFlusherAtATime(pages) {
  const spans = [];
  for (const [tab, page] of pages.entries()) {
    for (const s of await page.evaluate(() => rt.batchTimes)) spans.push({ tab, ...s, end: s.end ?? Infinity });
  }
  for (const x of spans) {
    for (const y of spans) {
      if (x.tab < y.tab) {
        assert.ok(x.end <= y.start || y.end <= x.start, `tabs ${x.tab} and ${y.tab} had batches in flight at once: ${JSON.stringify([x, y])}`);
      }
    }
  }
  return spans;
}

/**
 * Starts `engine.flush()` in the page without waiting for it. `flushSettled(page)` says whether it
 * has settled; `flushResult(page)` waits for its `rt.call` result, with `at`, when it settled.
 */
const startFlush = (page) => page.evaluate(() => {
  rt.flushed = undefined;
  rt.flushing = rt.call('flush').then((r) => (rt.flushed = { ...r, at: Date.now() }));
});
const flushSettled = (page) => page.evaluate(() => rt.flushed !== undefined);
const flushResult = (page) => page.evaluate(() => rt.flushing);

// ---- the tests ----

for (const webLocks of [true, false]) {
  const how = webLocks ? '' : ' without Web Locks (the lease)';
  engineTest(`two tabs writing concurrently${how}: every op reaches the server exactly once`, [], async (t, engine) => {
    await withBrowser(t, engine, async (env) => {
      const a = await env.open('A', env.page);
      const b = await env.open('B');
      if (!webLocks) await Promise.all([assertNoWebLocks(a), assertNoWebLocks(b)]);
      // Without Web Locks, every lease seen while the tabs write and sync (by its holder).
      const leases = new Set();
      let sampling = !webLocks;
      const sampler = (async () => {
        while (sampling) {
          const lease = await a.evaluate(() => rt.lease()).catch(() => (sampling = false)); // the test failed
          if (lease) leases.add(lease.holder);
          await sleep(20);
        }
      })();

      // Interleaved: some high-priority writes (flush at once) between medium ones, patches of records
      // already written (some sent by then, some not: those coalesce), explicit flushes (they wait for
      // the other tab's), both tabs at the same time.
      const N = 16;
      const ownWrites = (tab) => {
        const w = [];
        for (let i = 0; i < N; i++) {
          w.push({ method: 'put', args: ['notes', `${tab}-${i}`, note(tab, i), { priority: i % 5 === 0 ? 'high' : 'medium' }], pauseMs: 15 });
          if (i % 4 === 3) w.push({ method: 'patch', args: ['notes', `${tab}-${i - 2}`, { edited: true }], pauseMs: 30 });
          if (i % 6 === 5) w.push({ method: 'flush', args: [] });
        }
        return w;
      };
      await Promise.all([runWrites(a, ownWrites('A')), runWrites(b, ownWrites('B'))]);
      // Then each tab edits records of the other tab, while those may still be on their way.
      const crossWrites = (tab, other) => [0, 3, 6, 9, 12, 15].map((i) => ({
        method: 'patch', args: ['notes', `${other}-${i}`, { [`by${tab}`]: true }, { priority: 'high' }], pauseMs: 10,
      }));
      await Promise.all([runWrites(a, crossWrites('A', 'B')), runWrites(b, crossWrites('B', 'A'))]);

      const expected = new Map();
      for (const [tab, other] of [['A', 'B'], ['B', 'A']]) {
        for (let i = 0; i < N; i++) expected.set(`${tab}-${i}`, note(tab, i));
        for (let i = 3; i < N; i += 4) expected.set(`${tab}-${i - 2}`, { ...note(tab, i - 2), edited: true });
        for (const i of [0, 3, 6, 9, 12, 15]) expected.set(`${tab}-${i}`, { ...expected.get(`${tab}-${i}`), [`by${other}`]: true });
      }

      await Promise.all([settled(a), settled(b)]);
      sampling = false;
      await sampler;
      const entries = await assertAppliedOnce(env, expected);
      await assertOneFlusherAtATime([a, b]);
      if (!webLocks) assert.ok(leases.size > 0, 'the tabs took the lease in the meta store');

      // No faults: nothing was sent twice, by the same tab or by the other one.
      const sendings = env.batches.flatMap((x) => x.ops.map((o) => o.id));
      assert.equal(new Set(sendings).size, sendings.length, 'no op id was sent in two batches');
      for (const e of entries) assert.equal(e.deliveries, 1, `op ${e.opId} delivered ${e.deliveries} times`);
      for (const x of env.batches) assert.equal(x.outcome, 200, `batch ${JSON.stringify(x)}`);

      // Both tabs see every record, synced (one database).
      assertLocal(await localNotes(a), expected, 'tab A');
      assertLocal(await localNotes(b), expected, 'tab B');
      t.diagnostic(`${entries.length} ops in ${env.batches.length} batches (A: ${env.batches.filter((x) => x.source === 'A').length}, B: ${env.batches.filter((x) => x.source === 'B').length})${webLocks ? '' : `; ${leases.size} leases seen`}`);
    }, { webLocks });
  });
}

/**
 * Interrupts the first batch the browser sends, in one of two ways:
 * - `slow server`: the server sleeps (POST /admin/faults {latencyMs}) before it applies the batch;
 * - `answer lost`: the batch reaches the server and is applied, but its answer is held back (a
 *   recording proxy), as when a tab dies between the server's commit and the response.
 * `arm()` before the writes; `inFlight()` resolves to the batch once it is where it should be; `release()`
 * after the interruption puts the network back to normal.
 */
function interruption(env, mode) {
  let releaseHeld;
  const held = new Promise((resolve) => { releaseHeld = resolve; });
  return {
    async arm() {
      if (mode === 'slow server') {
        await setFaults({ latencyMs: 1_500 });
        return;
      }
      // Only the first batch's answer is held (the server applies it); later ones pass untouched.
      env.recorder.hold = held;
    },
    async inFlight(source) {
      const batch = await poll(`a batch from ${source ?? 'a tab'} in flight`, () =>
        env.batches.find((x) => (source === undefined || x.source === source) && x.outcome === 'pending'), { everyMs: 10 });
      if (mode === 'slow server') {
        await sleep(300); // the server has it and sleeps on it
      } else {
        await poll('the server applied the batch', async () => {
          const ids = new Set((await ledger()).map((e) => e.opId));
          return batch.ops.every((o) => ids.has(o.id));
        });
      }
      assert.equal(batch.outcome, 'pending', 'the batch still waits for its answer');
      return batch;
    },
    async release() {
      if (mode === 'slow server') {
        await setFaults({});
      } else {
        releaseHeld();
      }
    },
    /**
     * An op of the interrupted batch the server applied arrives again with the resend (a replay from
     * the ledger): at least 2 deliveries.
     */
    checkDeliveries(entries, interrupted) {
      const got = entries.filter((e) => interrupted.has(e.opId)).map((e) => e.deliveries);
      if (mode === 'answer lost') {
        for (const d of got) assert.ok(d >= 2, `applied once, then replayed from the ledger for the resend (${d})`);
      }
      return got;
    },
  };
}

for (const mode of ['slow server', 'answer lost']) {
  engineTest(`the flushing tab closed in the middle of a flush (${mode}): the other tab takes over`, [], async (t, engine) => {
    await withBrowser(t, engine, async (env) => {
      const a = await env.open('A', env.page);
      const b = await env.open('B');
      const cut = interruption(env, mode);
      await cut.arm();

      // Four writes in each tab; A's are urgent, so a flush starts at once (in whichever tab gets the
      // lock first: both tabs flush the shared queue).
      await runWrites(b, puts('B', 4));
      await runWrites(a, puts('A', 4, 'high'));
      const first = await cut.inFlight();
      const [flusher, survivor, survivorName] = first.source === 'A' ? [a, b, 'B'] : [b, a, 'A'];
      await flusher.close();
      await cut.release();

      await settled(survivor, 20_000);
      const interrupted = new Set(first.ops.map((o) => o.id));
      const expected = new Map(['A', 'B'].flatMap((tab) => [0, 1, 2, 3].map((i) => [`${tab}-${i}`, note(tab, i)])));
      const entries = await assertAppliedOnce(env, expected, { mayRepeat: interrupted });

      // The survivor sent the interrupted ops again, under the same ids.
      const resent = new Set(env.batches.filter((x) => x.source === survivorName).flatMap((x) => x.ops.map((o) => o.id)));
      for (const id of interrupted) assert.ok(resent.has(id), `tab ${survivorName} re-sent the interrupted op ${id}`);
      const deliveries = cut.checkDeliveries(entries, interrupted);
      assertLocal(await localNotes(survivor), expected, `tab ${survivorName}`);
      t.diagnostic(`tab ${first.source} closed with ${interrupted.size} ops in flight; their deliveries: ${deliveries.join(', ')}`);
    });
  });

  engineTest(`a reload in the middle of a flush (${mode}): the reloaded page finishes it`, [], async (t, engine) => {
    await withBrowser(t, engine, async (env) => {
      const page = await env.open('before reload', env.page);
      const cut = interruption(env, mode);
      await cut.arm();
      await runWrites(page, puts('R', 6, 'high'));
      const first = await cut.inFlight('before reload');

      await page.reload();
      await cut.release();
      await env.ready('after reload', page);
      await page.evaluate(() => rt.open());
      await settled(page, 20_000);

      const interrupted = new Set(first.ops.map((o) => o.id));
      const expected = new Map([0, 1, 2, 3, 4, 5].map((i) => [`R-${i}`, note('R', i)]));
      const entries = await assertAppliedOnce(env, expected, { mayRepeat: interrupted });
      const resent = new Set(env.batches.filter((x) => x.source === 'after reload').flatMap((x) => x.ops.map((o) => o.id)));
      for (const id of interrupted) assert.ok(resent.has(id), `the reloaded page re-sent the interrupted op ${id}`);
      const deliveries = cut.checkDeliveries(entries, interrupted);
      assertLocal(await localNotes(page), expected, 'after reload');
      t.diagnostic(`reloaded with ${interrupted.size} ops in flight; their deliveries: ${deliveries.join(', ')}`);
    });
  });
}

// ---- without Web Locks: the lease in the `meta` store (src/web/locks.rs) ----

// Closed, the tab releases its lease on `pagehide`; crashed (no `pagehide`), its lease runs out.
for (const ending of ['closed', 'crashed']) {
  engineTest(`without Web Locks, the flushing tab ${ending} in the middle of a flush (slow server): the other tab takes the lease over`, ending === 'crashed' ? ['crash'] : [], async (t, engine) => {
    await withBrowser(t, engine, async (env) => {
      const a = await env.open('A', env.page);
      const b = await env.open('B');
      await assertNoWebLocks(a);
      await assertNoWebLocks(b);
      const cut = interruption(env, 'slow server');
      await cut.arm();

      await runWrites(b, puts('B', 4));
      await runWrites(a, puts('A', 4, 'high'));
      const first = await cut.inFlight();
      const [flusher, survivor, survivorName] = first.source === 'A' ? [a, b, 'B'] : [b, a, 'A'];
      const held = await survivor.evaluate(() => rt.lease());
      assert.ok(held && held.expires > Date.now(), `the flushing tab holds a live lease: ${JSON.stringify(held)}`);

      const gone = Date.now();
      if (ending === 'closed') {
        await flusher.close();
      } else {
        const cdp = await env.context.newCDPSession(flusher);
        const crashed = new Promise((resolve) => flusher.once('crash', resolve));
        cdp.send('Page.crash').catch(() => {}); // never answers: the renderer is gone
        await crashed;
      }
      // The server is still slow: the survivor's resend holds the lease long enough to be seen.
      const taken = await poll('the other tab holds the lease', async () => {
        const lease = await survivor.evaluate(() => rt.lease());
        return lease && lease.holder !== held.holder ? lease : false;
      }, { timeoutMs: 20_000, everyMs: 20 });
      const tookMs = Date.now() - gone;
      await cut.release();
      await settled(survivor, 20_000);
      const resumed = env.batches.find((x) => x.source === survivorName && x.at > gone)?.at;
      assert.ok(resumed, `tab ${survivorName} sent the rest`);
      if (ending === 'closed') {
        // Left to expire, the lease would last at least 7 s more (10 s TTL, renewed every 3 s).
        assert.ok(resumed - gone < 5_000, `released on pagehide: tab ${survivorName} resumed ${resumed - gone} ms after the close`);
      } else {
        assert.ok(resumed >= held.expires, `tab ${survivorName} resumed once the crashed tab's lease expired, ${resumed - held.expires} ms after`);
      }

      const interrupted = new Set(first.ops.map((o) => o.id));
      const expected = new Map(['A', 'B'].flatMap((tab) => [0, 1, 2, 3].map((i) => [`${tab}-${i}`, note(tab, i)])));
      await assertAppliedOnce(env, expected, { mayRepeat: interrupted });
      const resent = new Set(env.batches.filter((x) => x.source === survivorName).flatMap((x) => x.ops.map((o) => o.id)));
      for (const id of interrupted) assert.ok(resent.has(id), `tab ${survivorName} re-sent the interrupted op ${id}`);
      assertLocal(await localNotes(survivor), expected, `tab ${survivorName}`);
      t.diagnostic(`lease taken over ${tookMs} ms and sending resumed ${resumed - gone} ms after the flushing tab ${ending} (holder ${held.holder} -> ${taken.holder})`);
    }, { webLocks: false });
  });
}

engineTest('without Web Locks, a live lease of another context holds back both flushes; once it expires the tab takes over', [], async (t, engine) => {
  await withBrowser(t, engine, async (env) => {
    const slow = { intervalMs: 60_000, batchSize: 4 };
    const page = await env.open('page', env.page, { network: { good: slow, fair: slow, poor: slow } });
    await assertNoWebLocks(page);
    // The start-up sync takes the lease and lets it go.
    await poll('the start-up sync is done', () => page.evaluate(async () => (await rt.lease()) === null && !(await rt.engine.status()).flushing));

    const other = { holder: 1, expires: Date.now() + 60_000 };
    await page.evaluate((lease) => rt.lease(lease), other);
    // High priority: the background flush (it gives up when the lease is taken) runs at once; the
    // explicit flush() waits for the lease.
    await runWrites(page, puts('L', 2, 'high'));
    await startFlush(page);
    await sleep(1_500);
    assert.equal(env.batches.length, 0, 'nothing is sent while another context holds the lease');
    assert.equal(await flushSettled(page), false, 'flush() waits for the lease');
    const status = await page.evaluate(() => rt.engine.status());
    assert.equal(status.pending, 2);
    assert.equal(status.flushing, false, 'no flush runs in this tab');
    assert.deepEqual(await page.evaluate(() => rt.lease()), other, 'the lease is still the other context\'s');

    // The other context died: its lease runs out.
    const expired = await page.evaluate(async (holder) => {
      await rt.lease({ holder, expires: Date.now() - 1 });
      return Date.now();
    }, other.holder);
    const result = await flushResult(page);
    assert.equal(result.ok, true, JSON.stringify(result));
    assert.equal(result.value.accepted, 2, JSON.stringify(result.value));
    assert.ok(result.at - expired < 2_000, `flush() went on ${result.at - expired} ms after the lease expired`);
    await poll('the lease is released after the flush', () => page.evaluate(async () => (await rt.lease()) === null), { timeoutMs: 3_000 });

    const expected = new Map([0, 1].map((i) => [`L-${i}`, note('L', i)]));
    const entries = await assertAppliedOnce(env, expected);
    for (const e of entries) assert.equal(e.deliveries, 1);
  }, { webLocks: false });
});

engineTest('without Web Locks, the heartbeat keeps the lease through a flush longer than its TTL; the other tab waits', [], async (t, engine) => {
  await withBrowser(t, engine, async (env) => {
    const a = await env.open('A', env.page, { autoSync: false });
    const b = await env.open('B', undefined, { autoSync: false });
    await assertNoWebLocks(a);
    await assertNoWebLocks(b);
    await runWrites(a, puts('H', 8)); // two batches of 4
    await setFaults({ latencyMs: 6_000 }); // 12 s in all: past the lease's 10 s TTL

    await startFlush(a);
    const first = await poll('tab A holds the lease', () => a.evaluate(() => rt.lease()));
    await startFlush(b);
    await sleep(4_000);
    const renewed = await a.evaluate(() => rt.lease());
    assert.equal(renewed?.holder, first.holder, `tab A still holds the lease: ${JSON.stringify(renewed)}`);
    assert.ok(renewed.expires >= first.expires + 2_500, `renewed: ${JSON.stringify([first, renewed])}`);
    assert.equal(await flushSettled(b), false, 'tab B waits for the lease');

    const [ra, rb] = [await flushResult(a), await flushResult(b)];
    await setFaults({}); // the checks below read /api/notes
    assert.equal(ra.ok, true, JSON.stringify(ra));
    assert.equal(ra.value.accepted, 8, JSON.stringify(ra.value));
    assert.equal(rb.ok, true, JSON.stringify(rb));
    assert.equal(rb.value.sent, 0, `tab B found nothing left to send: ${JSON.stringify(rb.value)}`);
    assert.ok(rb.at >= ra.at, 'tab B flushed after tab A');
    const spans = await assertOneFlusherAtATime([a, b]);
    const held = Math.max(...spans.map((x) => x.end)) - Math.min(...spans.map((x) => x.start));
    assert.ok(held > 10_000, `tab A's flush outlasted the TTL (${held} ms)`);
    assert.ok(env.batches.every((x) => x.source === 'A'), 'only tab A sent batches');

    const expected = new Map(Array.from({ length: 8 }, (_, i) => [`H-${i}`, note('H', i)]));
    const entries = await assertAppliedOnce(env, expected);
    for (const e of entries) assert.equal(e.deliveries, 1);
    t.diagnostic(`tab A flushed for ${held} ms under one lease, renewed from ${first.expires} to ${renewed.expires}`);
  }, { webLocks: false });
});

engineTest('offline: writes queue without a request, and drain when the browser is back online', ['offline'], async (t, engine) => {
  await withBrowser(t, engine, async (env) => {
    // A long interval: only the `online` event can explain a prompt flush after reconnecting.
    const slow = { intervalMs: 60_000, batchSize: 4 };
    const page = await env.open('page', env.page, { network: { good: slow, fair: slow, poor: slow } });
    await env.setOffline(true);
    await poll('navigator.onLine === false', () => page.evaluate(() => !navigator.onLine));

    await runWrites(page, [...puts('O', 3, 'high'), ...puts('P', 3, 'medium')]);
    await sleep(500);
    const status = await page.evaluate(() => rt.engine.status());
    assert.equal(status.pending, 6);
    assert.equal(status.online, false);
    const queue = await page.evaluate(() => rt.engine.queue());
    assert.equal(queue.length, 6);
    for (const op of queue) assert.equal(op.attempts, 0, `offline does not count as a failed attempt: ${JSON.stringify(op)}`);
    assert.equal(env.batches.length, 0, 'no batch request while offline');
    assert.equal((await ledger()).length, 0);

    const back = Date.now();
    await env.setOffline(false);
    await settled(page, 10_000);
    const took = Date.now() - back;
    assert.ok(took < 5_000, `drained ${took} ms after going online (the interval is 60 s)`);

    const expected = new Map([...[0, 1, 2].map((i) => [`O-${i}`, note('O', i)]), ...[0, 1, 2].map((i) => [`P-${i}`, note('P', i)])]);
    const entries = await assertAppliedOnce(env, expected);
    for (const e of entries) assert.equal(e.deliveries, 1);
    assertLocal(await localNotes(page), expected, 'page');
    t.diagnostic(`drained ${took} ms after going online, in ${env.batches.length} batches`);
  });
});

/** A CDP session on a blank tab with the ServiceWorker domain on: registrations and versions. */
async function serviceWorkerWatch(env) {
  const blank = await env.context.newPage();
  const cdp = await env.context.newCDPSession(blank);
  const registrations = new Map();
  const versions = new Map();
  cdp.on('ServiceWorker.workerRegistrationUpdated', (e) => {
    for (const r of e.registrations) registrations.set(r.registrationId, r);
  });
  cdp.on('ServiceWorker.workerVersionUpdated', (e) => {
    for (const v of e.versions) versions.set(v.versionId, v);
  });
  await cdp.send('ServiceWorker.enable');
  return { cdp, registrations, versions };
}

/** Re-opens the page without auto-sync and waits for the queue the worker drained to be empty. */
async function assertQueueEmptyInNewPage(env, expected) {
  const page = await env.open('check', undefined, { autoSync: false });
  await settled(page, 10_000);
  assertLocal(await localNotes(page), expected, 'a new page');
  await page.close();
}

engineTest('the service worker drains the queue after the page is gone (ServiceWorker.dispatchSyncEvent)', ['backgroundSync'], async (t, engine) => {
  await withBrowser(t, engine, async (env) => {
    const sw = await serviceWorkerWatch(env);
    const page = await env.load('page', env.page);
    const reg = await page.evaluate(() => rt.registerServiceWorker());
    assert.equal(reg.hasSync, true, 'Background Sync is available');
    // Without auto-sync the page neither flushes nor registers a sync tag: only our event can drain.
    await page.evaluate(() => rt.open({ autoSync: false }));
    await runWrites(page, puts('S', 5, 'high'));
    assert.deepEqual(await page.evaluate(() => rt.syncTags()), []);
    assert.equal((await page.evaluate(() => rt.engine.queue())).length, 5);
    await page.close();

    const registration = [...sw.registrations.values()].find((r) => r.scopeURL === reg.scope && !r.isDeleted);
    assert.ok(registration, `a registration for ${reg.scope}: ${JSON.stringify([...sw.registrations.values()])}`);
    await poll('the worker controls no page', () => {
      const v = [...sw.versions.values()].filter((x) => x.registrationId === registration.registrationId);
      return v.length > 0 && v.every((x) => x.controlledClients.length === 0);
    });
    assert.equal((await ledger()).length, 0, 'nothing was sent before the sync event');

    await sw.cdp.send('ServiceWorker.dispatchSyncEvent', {
      origin: new URL(registration.scopeURL).origin,
      registrationId: registration.registrationId,
      tag: SYNC_TAG,
      lastChance: false,
    });
    await poll('5 ops on the server', async () => (await ledger()).length >= 5);

    const expected = new Map([0, 1, 2, 3, 4].map((i) => [`S-${i}`, note('S', i)]));
    await assertQueueEmptyInNewPage(env, expected);
    const entries = await assertAppliedOnce(env, expected);
    for (const e of entries) assert.equal(e.deliveries, 1);
    assert.ok(env.batches.length > 0 && env.batches.every((x) => x.source === 'sw'), 'every batch came from the service worker');
    t.diagnostic(`the worker sent ${env.batches.length} batches`);
  });
});

engineTest('a page offline registers a Background Sync tag; back online, the worker drains the queue without the page', ['backgroundSync', 'offline'], async (t, engine) => {
  await withBrowser(t, engine, async (env) => {
    await serviceWorkerWatch(env); // keeps a (blank) tab open once the page is closed
    const page = await env.load('page', env.page);
    await page.evaluate(() => rt.registerServiceWorker());
    const slow = { intervalMs: 60_000, batchSize: 4 };
    await page.evaluate((network) => rt.open({ network }), { good: slow, fair: slow, poor: slow });
    await env.setOffline(true);
    await poll('navigator.onLine === false', () => page.evaluate(() => !navigator.onLine));

    await runWrites(page, [...puts('W', 2, 'high'), ...puts('X', 2, 'medium')]);
    await poll(`the sync tag ${SYNC_TAG}`, async () => (await page.evaluate(() => rt.syncTags())).includes(SYNC_TAG));
    assert.equal((await page.evaluate(() => rt.engine.status())).pending, 4);
    await page.close();
    await sleep(200);
    assert.equal(env.batches.length, 0, 'nothing was sent while offline');

    // Chromium fires the pending sync event itself when the (emulated) network comes back.
    await env.setOffline(false);
    await poll('4 ops on the server', async () => (await ledger()).length >= 4);

    const expected = new Map([...[0, 1].map((i) => [`W-${i}`, note('W', i)]), ...[0, 1].map((i) => [`X-${i}`, note('X', i)])]);
    await assertQueueEmptyInNewPage(env, expected);
    const entries = await assertAppliedOnce(env, expected);
    for (const e of entries) assert.equal(e.deliveries, 1);
    assert.ok(env.batches.every((x) => x.source === 'sw'), 'every batch came from the service worker');
  });
});

engineTest('quota: a write that does not fit is QUOTA_EXCEEDED; earlier writes stay intact and sync', ['quota'], async (t, engine) => {
  await withBrowser(t, engine, async (env) => {
    const cdp = await env.context.newCDPSession(env.page);
    // Chromium compresses IndexedDB values: only incompressible data uses quota as it grows.
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: recorder.url, quotaSize: 300_000 });
    const page = await env.open('page', env.page, { autoSync: false });
    const { quota } = await cdp.send('Storage.getUsageAndQuota', { origin: recorder.url });
    assert.equal(quota, 300_000, 'the quota override is in force');

    const result = await page.evaluate(async () => {
      const random = (n) => Array.from({ length: n }, () => String.fromCharCode(97 + Math.floor(Math.random() * 26))).join('');
      const small = [0, 1, 2].map((i) => ({ i, text: random(2_000) }));
      for (const [i, data] of small.entries()) await rt.engine.put('notes', `q-${i}`, data);
      const big = await rt.call('put', 'notes', 'too-big', { text: random(1_000_000) });
      const after = await rt.call('put', 'notes', 'after', { text: 'still writable' });
      return { small, big, after };
    });
    assert.equal(result.big.ok, false, 'the 1 MB write fails');
    assert.equal(result.big.error.name, 'SyncError');
    assert.equal(result.big.error.code, 'QUOTA_EXCEEDED');
    assert.equal(result.after.ok, true, `a small write after it works: ${JSON.stringify(result.after)}`);

    const events = await page.evaluate(() => rt.events);
    assert.ok(events.some((e) => e.type === 'error' && e.code === 'QUOTA_EXCEEDED'), `subscribers hear it: ${JSON.stringify(events)}`);
    const expected = new Map([...result.small.map((d, i) => [`q-${i}`, d]), ['after', { text: 'still writable' }]]);
    const queue = await page.evaluate(() => rt.engine.queue());
    assert.deepEqual(queue.map((o) => o.entityId).sort(), [...expected.keys()].sort(), 'the failed write queued nothing');
    assert.equal(await page.evaluate(() => rt.engine.get('notes', 'too-big')), undefined);

    const report = await page.evaluate(() => rt.engine.flush());
    assert.equal(report.accepted, 4, JSON.stringify(report));
    assert.equal(report.remaining, 0);
    await assertAppliedOnce(env, expected);
    assertLocal(await localNotes(page), expected, 'page');
  });
});

engineTest('another connection upgrading the database closes ours and emits `closed`', [], async (t, engine) => {
  await withBrowser(t, engine, async (env) => {
    const a = await env.open('A', env.page, { autoSync: false });
    await runWrites(a, puts('V', 1));
    // A newer app version in another tab opens the same database at a higher version.
    const b = await env.load('B');
    const upgrade = await b.evaluate((name) => new Promise((resolve) => {
      const req = indexedDB.open(name, 3); // above the schema version (src/store/idb.rs)
      req.onblocked = () => resolve('blocked');
      req.onerror = () => resolve(`error: ${req.error}`);
      req.onsuccess = () => {
        req.result.close();
        resolve('upgraded');
      };
    }), DB);
    assert.equal(upgrade, 'upgraded', 'the upgrade was not blocked by our open connection');

    const events = await a.evaluate(() => rt.events);
    assert.ok(events.some((e) => e.type === 'closed'), `a \`closed\` event: ${JSON.stringify(events)}`);
    const after = await a.evaluate(() => rt.call('put', 'notes', 'V-late', { late: true }));
    assert.equal(after.ok, false);
    assert.equal(after.error.code, 'CLOSED', JSON.stringify(after));
  });
});

engineTest("a subscriber in tab B hears tab A's changes, marked remote", [], async (t, engine) => {
  await withBrowser(t, engine, async (env) => {
    const a = await env.open('A', env.page, { autoSync: false });
    const b = await env.open('B', undefined, { autoSync: false });
    await runWrites(a, [{ method: 'put', args: ['notes', 'shared', { from: 'A' }] }]);
    const heard = await poll('tab B hears the change', async () => {
      const events = await b.evaluate(() => rt.events);
      return events.find((e) => e.type === 'change' && e.id === 'shared');
    }, { timeoutMs: 5_000 });
    assert.equal(heard.remote, true);
    assert.equal(heard.syncStatus, 'pending');
    assert.deepEqual(await b.evaluate(() => rt.engine.get('notes', 'shared')), { from: 'A' });
    const own = (await a.evaluate(() => rt.events)).filter((e) => e.type === 'change' && e.id === 'shared');
    assert.equal(own.length, 1);
    assert.equal(own[0].remote, undefined, 'tab A hears its own change as local');

    await a.evaluate(() => rt.engine.flush());
    const synced = await poll('tab B hears the sync', async () => {
      const events = await b.evaluate(() => rt.events);
      return events.find((e) => e.type === 'change' && e.id === 'shared' && e.syncStatus === 'synced');
    }, { timeoutMs: 5_000 });
    assert.equal(synced.remote, true);
    const sync = (await b.evaluate(() => rt.events)).find((e) => e.type === 'sync');
    assert.equal(sync?.remote, true);
    assert.equal(sync.report.accepted, 1);
    await assertAppliedOnce(env, new Map([['shared', { from: 'A' }]]));
  });
});

// The server refuses a batch whose body is over 1 MiB with 413 for the whole request. The engine
// splits the batch until the write that is too large on its own is refused alone: the small writes
// queued beside it sync, and only the oversized one is dead-lettered.
engineTest('a write too large for the server is dead-lettered alone; the rest of its batch syncs', [], async (t, engine) => {
  await withBrowser(t, engine, async (env) => {
    const page = await env.open('page', env.page, { autoSync: false });
    const dead = await page.evaluate(async () => {
      await rt.engine.put('notes', 'small-1', { text: 'a' });
      await rt.engine.put('notes', 'huge', { text: 'y'.repeat(1_100_000) }); // over the server's 1 MiB
      await rt.engine.put('notes', 'small-2', { text: 'b' });
      for (let i = 0; i < 5 && (await rt.engine.status()).pending > 0; i++) await rt.engine.flush();
      const { deadLetters, pending } = await rt.engine.status();
      return { ids: (await rt.engine.deadLetters()).map((d) => d.op.entityId).sort(), deadLetters, pending };
    });
    assert.deepEqual(dead, { ids: ['huge'], deadLetters: 1, pending: 0 }, 'status() counts the dead letter');
    // A 413 is refused before the server reads the batch: those requests never reach its ledger.
    // The harness records each answer's outcome when the route settles: wait for the last one.
    const refused = await poll('both 413 answers are recorded', async () => {
      const r = env.batches.filter((b) => b.outcome === 413);
      return r.length === 2 ? r : undefined;
    }, { timeoutMs: 5_000 });
    assert.deepEqual(refused.map((b) => b.ops.length), [3, 1], 'the whole batch, then the huge write alone');
    env.batches = env.batches.filter((b) => b.outcome !== 413);
    await assertAppliedOnce(env, new Map([['small-1', { text: 'a' }], ['small-2', { text: 'b' }]]));
  });
});
