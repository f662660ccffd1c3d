// Test page of www/tests/conformance.spec.mjs. Imports the package the way an app without a bundler
// does (its entry, index.js, which loads the wasm and installs window.syncDebug for debug engines),
// opens one engine with `debug: true, autoSync: false`, and exposes helpers as window.conf. The spec
// decides when anything talks to the server.
import { SyncEngine, buildInfo } from '/pkg/index.js';

// Events worth keeping (everything but `change`), kept in sessionStorage so that they survive the
// page reload the spec makes in the middle of a flush.
const EVENTS_KEY = 'conformance:events';
const MAX_EVENTS = 2000;

function keep(entry) {
  const list = JSON.parse(sessionStorage.getItem(EVENTS_KEY) ?? '[]');
  list.push({ at: Date.now(), ...entry });
  sessionStorage.setItem(EVENTS_KEY, JSON.stringify(list.slice(-MAX_EVENTS)));
}

/** An error as plain data. */
function plain(err) {
  return { name: err?.name, code: err?.code ?? null, status: err?.status ?? null, message: String(err?.message ?? err) };
}

const conf = {
  engine: null,
  options: null,
  /** The flush started by startFlush() (the spec reloads the page while it runs). */
  running: null,

  /**
   * Opens the engine with `options` (debug on, autoSync off, whatever the options say). A `token`
   * among them (a backend that wants one) becomes the `auth` callback.
   */
  async open({ token, ...options }) {
    conf.options = { ...options, debug: true, autoSync: false };
    if (token) conf.options.auth = async () => token;
    conf.engine = await SyncEngine.open(conf.options);
    conf.engine.subscribe((e) => {
      if (e.type !== 'change') keep(JSON.parse(JSON.stringify(e)));
    });
    return { deviceId: conf.engine.deviceId, build: buildInfo() };
  },

  /** put or patch, then the record as the engine holds it now (what this write made it). */
  async write(kind, collection, id, data) {
    await conf.engine[kind](collection, id, data);
    return conf.engine.get(collection, id);
  },

  async remove(collection, id) {
    return conf.engine.delete(collection, id);
  },

  async get(collection, id) {
    return conf.engine.get(collection, id);
  },

  /** flush() or pull(): { ok, value } or { ok: false, error }; a rejection is kept as an event too. */
  async call(method, ...args) {
    try {
      return { ok: true, value: await conf.engine[method](...args) };
    } catch (err) {
      const error = plain(err);
      keep({ type: 'rejected', method, ...error });
      return { ok: false, error };
    }
  },

  /** Starts a flush and returns at once (for a reload in the middle of it). */
  startFlush() {
    conf.running = conf.call('flush');
    return true;
  },

  async list(collection) {
    const records = await conf.engine.list(collection);
    return records.map((r) => ({ id: r.id, data: r.data, version: r.version, syncStatus: r.syncStatus }));
  },

  async status() {
    return conf.engine.status();
  },

  async queue() {
    return conf.engine.queue();
  },

  async deadLetters() {
    return conf.engine.deadLetters();
  },

  async conflicts() {
    return conf.engine.conflicts();
  },

  goOffline: () => globalThis.syncDebug.goOffline(),
  goOnline: () => globalThis.syncDebug.goOnline(),

  /** Every kept event (error, deadLetter, conflict, sync reports, rejected calls), oldest first. */
  events() {
    return JSON.parse(sessionStorage.getItem(EVENTS_KEY) ?? '[]');
  },

  plain,
};

window.conf = conf;

const config = new URLSearchParams(location.search).get('config');
try {
  if (config) await conf.open(JSON.parse(config));
  document.body.dataset.ready = 'true';
} catch (err) {
  document.body.dataset.ready = 'error';
  document.body.dataset.error = JSON.stringify(plain(err));
  console.error('conformance page: open failed', err);
}
