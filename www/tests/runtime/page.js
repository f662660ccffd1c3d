// Test harness page for www/tests/runtime.spec.mjs. The spec drives everything through window.rt
// with page.evaluate; nothing here runs on its own except loading the wasm.
import init, { SyncEngine } from '/pkg/tidesync.js';
import { signIn, withSource } from './auth.js';

/** The options every test page opens with: one user, one collection, fast retries. */
export function defaultOptions() {
  const tier = { intervalMs: 200, batchSize: 4 };
  return {
    name: 'rt',
    userId: 'u1',
    baseUrl: location.origin,
    auth: () => signIn(),
    collections: { notes: { endpoint: '/api/notes' } },
    autoSync: true,
    // Every tier the same: a slow server raises the measured round trip and would move us to `fair`.
    network: { good: tier, fair: tier, poor: tier },
    retry: { baseMs: 50, capMs: 200, jitterMs: 10, maxAttempts: 50 },
    breaker: { threshold: 1000, cooldownMs: 100 },
  };
}

/** A SyncError (or any error) as plain data the spec can compare. */
function plain(err) {
  return { name: err?.name, code: err?.code, message: String(err?.message ?? err) };
}

const rt = {
  engine: null,
  /** Every event our subscriber heard, in order (local and `remote: true` ones). */
  events: [],

  /** Opens the engine with defaultOptions() overridden (shallowly) by `overrides`. */
  async open(overrides = {}) {
    const options = { ...defaultOptions(), ...overrides };
    rt.engine = await SyncEngine.open(options);
    rt.engine.subscribe((e) => rt.events.push(JSON.parse(JSON.stringify(e))));
    return options;
  },

  /** Calls engine[method](...args); resolves to { ok, value } or { ok: false, error }. */
  async call(method, ...args) {
    try {
      return { ok: true, value: await rt.engine[method](...args) };
    } catch (err) {
      return { ok: false, error: plain(err) };
    }
  },

  /** Waits (polling status()) until nothing is pending, or rejects after `timeoutMs`. */
  async settled(timeoutMs = 15_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = await rt.engine.status();
      if (s.pending === 0 && !s.flushing) return s;
      if (Date.now() > deadline) throw new Error(`still pending after ${timeoutMs} ms: ${JSON.stringify(s)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  },

  /** Registers ./sw.js (a module worker) and waits until it controls this page. */
  async registerServiceWorker() {
    const sw = navigator.serviceWorker;
    const reg = await sw.register(new URL('./sw.js', import.meta.url), { type: 'module', scope: './' });
    await sw.ready;
    if (!sw.controller) {
      await new Promise((resolve) => sw.addEventListener('controllerchange', resolve, { once: true }));
    }
    return { scope: reg.scope, hasSync: 'sync' in reg };
  },

  /** The Background Sync tags registered for this page's worker. */
  async syncTags() {
    const reg = await navigator.serviceWorker.ready;
    return reg.sync.getTags();
  },

  /**
   * The flush lease in the `meta` store (src/store/idb.rs, used where Web Locks are missing), read
   * through a connection of its own (call it once the engine has opened, so the database exists):
   * `{ holder, expires }` or null. With `set`, writes it first (null deletes it).
   */
  async lease(set) {
    const db = await new Promise((resolve, reject) => {
      const req = indexedDB.open('tidesync:rt:u1');
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    try {
      return await new Promise((resolve, reject) => {
        const tx = db.transaction('meta', set === undefined ? 'readonly' : 'readwrite');
        const meta = tx.objectStore('meta');
        if (set === null) meta.delete('flushLease');
        else if (set !== undefined) meta.put(set, 'flushLease');
        const req = meta.get('flushLease');
        tx.oncomplete = () => resolve(req.result ?? null);
        tx.onerror = tx.onabort = () => reject(tx.error);
      });
    } finally {
      db.close();
    }
  },

  plain,
};

// Every batch request this page sends, with when it went out and when its answer came (the clock
// all tabs share): the spec checks that two tabs never have one in flight at the same time. Each
// one says which tab sent it (`rt.source`, named by the spec) in a header the spec's recording proxy
// reads.
rt.batchTimes = [];
rt.source = 'page';
const realFetch = globalThis.fetch;
globalThis.fetch = (input, init) => {
  if (!String(input?.url ?? input).endsWith('/api/sync/batch')) return realFetch(input, init);
  const span = { start: Date.now(), end: null };
  rt.batchTimes.push(span);
  const answer = realFetch(withSource(new Request(input, init), rt.source));
  const done = () => { span.end = Date.now(); };
  answer.then(done, done);
  return answer;
};

window.rt = rt;
window.SyncEngine = SyncEngine;
await init();
document.body.dataset.ready = 'true';
