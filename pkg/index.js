// tidesync: the package entry. Wraps the wasm-bindgen output (./tidesync.js) so that
// SyncEngine.open() loads the wasm itself, every rejection is a SyncError, and `debug: true`
// installs globalThis.syncDebug. Types: ./index.d.ts.
import initWasm, * as wasm from './tidesync.js';

/** Every `SyncError.code` (the Rust `SyncError::code()` list; a test keeps them equal). */
export const SYNC_ERROR_CODES = Object.freeze([
  'INVALID_INPUT', 'CONFIG', 'NOT_FOUND', 'QUOTA_EXCEEDED', 'STORAGE', 'CLOSED', 'OFFLINE',
  'NETWORK', 'TIMEOUT', 'HTTP', 'PROTOCOL', 'AUTH', 'INTEGRITY', 'CONFLICT',
]);

/** What `clearQueue()` must be given: it throws away writes the server has not seen. */
export const CLEAR_QUEUE_CONFIRMATION = 'discard pending writes';

/** How many events `syncDebug.events()` keeps. */
export const DEBUG_EVENT_LOG_SIZE = 200;

export class SyncError extends Error {
  constructor(code, message, options) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SyncError';
    this.code = code;
    if (options?.status != null) this.status = options.status;
  }
}

export function isSyncError(e, code) {
  const ok = e instanceof SyncError
    || (e instanceof Error && e.name === 'SyncError' && typeof e.code === 'string');
  return ok && (code === undefined || e.code === code);
}

// The engine throws `Error`s named SyncError; give them the class so `instanceof` works (the
// stack stays the original one).
function toSyncError(e) {
  if (e instanceof Error && e.name === 'SyncError' && !(e instanceof SyncError)) {
    Object.setPrototypeOf(e, SyncError.prototype);
  }
  return e;
}

async function call(f) {
  try {
    return await f();
  } catch (e) {
    throw toSyncError(e);
  }
}

function sync(f) {
  try {
    return f();
  } catch (e) {
    throw toSyncError(e);
  }
}

function invalid(message) {
  return new SyncError('INVALID_INPUT', message);
}

function str(what, v) {
  if (typeof v !== 'string') throw invalid(`${what} must be a string, got ${v === null ? 'null' : typeof v}`);
  return v;
}

let loaded = false;
let loading;

/**
 * Loads the wasm. `SyncEngine.open()` calls it for you; call it yourself only to load the
 * `.wasm` from elsewhere (a CDN URL, a `Response`, bytes or a `WebAssembly.Module`).
 */
export function init(input) {
  loading ??= initWasm(
    input == null || Object.getPrototypeOf(input) === Object.prototype ? input ?? undefined : { module_or_path: input },
  ).then(
    () => { loaded = true; },
    (e) => { loading = undefined; throw e; },
  );
  return loading;
}

function needWasm(what) {
  if (!loaded) throw new SyncError('CONFIG', `${what}() needs the wasm loaded: await init() or SyncEngine.open() first`);
}

/** `{ version, gitSha, schemaVersion }` of the loaded build. */
export function buildInfo() {
  needWasm('buildInfo');
  return wasm.buildInfo();
}

/** SHA-256 (hex) of the value's canonical JSON: what tidesync stores and sends as `checksum`. */
export function checksum(value) {
  needWasm('checksum');
  return sync(() => wasm.checksum(value));
}

/** Deletes the database of `name` and `userId` (sign-out, tests). Close its engines first. */
export async function deleteDatabase(name, userId) {
  await init();
  return call(() => wasm.deleteDatabase(str('name', name), userId ?? undefined));
}

const CREATE = Symbol('SyncEngine.open');

let queries;
const loadQueries = () => (queries ??= import('./query.js'));

export class SyncEngine {
  #raw;
  #name;
  #userId;
  #debugOff = null;
  // The push channel (`realtime` option), when on.
  #live = null;
  #indexes = {};
  // Listeners for the events this wrapper itself emits (deadLetterDiscarded, queueCleared).
  #local = new Set();

  /** Use `SyncEngine.open(options)`. */
  constructor(token, raw, name, userId) {
    if (token !== CREATE) throw new TypeError('use `await SyncEngine.open(options)` to create a SyncEngine');
    this.#raw = raw;
    this.#name = name;
    this.#userId = userId;
  }

  static async open(options) {
    await init();
    // Query indexes are checked (by query.js, loaded only for them) before anything opens.
    const collections = options?.collections;
    const declares = Object.values(collections ?? {}).some((c) => c?.indexes !== undefined);
    const indexes = declares ? (await loadQueries()).indexesOf(collections, (m) => new SyncError('CONFIG', m)) : {};
    for (const c of Object.keys(collections ?? {})) indexes[c] ??= [];
    const raw = await call(() => wasm.SyncEngine.open(options));
    const engine = new SyncEngine(CREATE, raw, options.name, options.userId ?? 'anonymous');
    engine.#indexes = indexes;
    // Not in a service worker (it lives for one event), nor when the app syncs by hand.
    if (options.realtime && options.autoSync !== false && typeof ServiceWorkerGlobalScope === 'undefined') {
      try {
        const { startRealtime } = await import('./realtime.js');
        engine.#live = startRealtime({
          raw, options, dbName: `tidesync:${engine.name}:${engine.userId}`, emit: (e) => engine.#emit(e),
        });
      } catch (e) {
        raw.close();
        throw new SyncError('CONFIG', `realtime: ${e?.message ?? e}`, { cause: e });
      }
    }
    if (raw.debug) engine.#debugOff = installDebugHook(engine);
    return engine;
  }

  get name() { return this.#name; }
  get userId() { return this.#userId; }
  get deviceId() { return this.#raw.deviceId; }
  get debug() { return this.#raw.debug; }
  get requestCount() { return this.#raw.requestCount; }

  put(collection, id, data, options) {
    return call(() => this.#raw.put(str('collection', collection), str('id', id), data, options));
  }
  putJson(collection, id, json, options) {
    return call(() => this.#raw.putJson(str('collection', collection), str('id', id), str('json', json), options));
  }
  putMany(collection, records, options) {
    return call(() => this.#raw.putMany(str('collection', collection), records, options));
  }
  patch(collection, id, fields, options) {
    return call(() => this.#raw.patch(str('collection', collection), str('id', id), fields, options));
  }
  delete(collection, id, options) {
    return call(() => this.#raw.delete(str('collection', collection), str('id', id), options));
  }
  get(collection, id) {
    return call(() => this.#raw.get(str('collection', collection), str('id', id)));
  }
  getRecord(collection, id) {
    return call(() => this.#raw.getRecord(str('collection', collection), str('id', id)));
  }
  list(collection) {
    return call(() => this.#raw.list(str('collection', collection)));
  }
  /** Records of `collection` matching `spec` ({ where, orderBy, limit, after }), through an index when one fits. */
  async query(collection, spec) {
    const q = await this.#queryArgs(collection, spec);
    return call(() => q.module.run(this.#raw.database, collection, q.indexes, q.query));
  }
  /** Calls `listener(records)` with the query's result now and whenever it changes. Returns the unsubscribe. */
  subscribeQuery(collection, spec, listener, onError = (e) => console.error('tidesync: a live query failed', e)) {
    if (typeof listener !== 'function') throw invalid('subscribeQuery() takes a listener function');
    let off = null;
    let stopped = false;
    this.#queryArgs(collection, spec).then((q) => {
      if (!stopped) off = q.module.subscribe(this, this.#raw.database, collection, q.indexes, q.query, listener, (e) => onError(toSyncError(e)));
    }, (e) => onError(e));
    return () => {
      stopped = true;
      off?.();
    };
  }
  async #queryArgs(collection, spec) {
    str('collection', collection);
    const indexes = this.#indexes[collection];
    if (!indexes) throw new SyncError('INVALID_INPUT', `unknown collection '${collection}'`);
    const module = await loadQueries();
    try {
      return { module, indexes, query: module.normalize(spec) };
    } catch (e) {
      throw invalid(`query: ${e.message}`);
    }
  }
  flush() { return call(() => this.#raw.flush()); }
  pull(collection) {
    return call(() => this.#raw.pull(collection == null ? undefined : str('collection', collection)));
  }
  status() { return call(() => this.#raw.status()); }
  metrics() { return call(() => this.#raw.metrics()); }
  queue() { return call(() => this.#raw.queue()); }
  conflicts() { return call(() => this.#raw.conflicts()); }
  resolveConflict(conflictId, choice) {
    return call(() => this.#raw.resolveConflict(str('conflictId', conflictId), choice));
  }
  deadLetters() { return call(() => this.#raw.deadLetters()); }
  retryDeadLetter(opId) { return call(() => this.#raw.retryDeadLetter(str('opId', opId))); }
  async discardDeadLetter(opId) {
    await call(() => this.#raw.discardDeadLetter(str('opId', opId)));
    this.#emit({ type: 'deadLetterDiscarded', opId });
  }
  auditLog() { return sync(() => this.#raw.auditLog()); }
  setFaults(faults) {
    if (typeof faults?.offline === 'boolean') this.#live?.setOffline(faults.offline);
    return call(() => this.#raw.setFaults(faults));
  }
  /** The push channel's state (`realtime` option), or `undefined` when it is off. */
  realtimeStatus() { return this.#live?.status(); }
  async clearQueue(confirm) {
    const discarded = await call(() => this.#raw.clearQueue(confirm));
    this.#emit({ type: 'queueCleared', discarded });
    return discarded;
  }

  subscribe(listener) {
    if (typeof listener !== 'function') throw invalid('subscribe() takes a function');
    const off = this.#raw.subscribe(listener);
    const entry = { listener };
    this.#local.add(entry);
    return () => {
      this.#local.delete(entry);
      off();
    };
  }

  #emit(event) {
    for (const { listener } of [...this.#local]) {
      try {
        listener(event);
      } catch (e) {
        console.error('tidesync: a subscriber threw', e);
      }
    }
  }

  close() {
    this.#live?.close();
    this.#live = null;
    this.#debugOff?.();
    this.#debugOff = null;
    this.#raw.close();
  }
}

// window.syncDebug: the console commands of the reference design, for an engine opened with
// `debug: true`. It holds the engine, never its options (the auth callback stays private).
function installDebugHook(engine) {
  const log = [];
  const unsubscribe = engine.subscribe((event) => {
    log.push({ at: Date.now(), event });
    if (log.length > DEBUG_EVENT_LOG_SIZE) log.shift();
  });
  const hook = Object.freeze({
    name: engine.name,
    userId: engine.userId,
    deviceId: engine.deviceId,
    buildInfo,
    getStatus: () => engine.status(),
    getMetrics: () => engine.metrics(),
    getConflicts: () => engine.conflicts(),
    resolveConflict: (id, choice) => engine.resolveConflict(id, choice),
    inspectQueue: () => engine.queue(),
    clearQueue: (confirm) => engine.clearQueue(confirm),
    forceSync: async () => ({ flush: await engine.flush(), pull: await engine.pull() }),
    getDeadLetters: () => engine.deadLetters(),
    retryDeadLetter: (opId) => engine.retryDeadLetter(opId),
    discardDeadLetter: (opId) => engine.discardDeadLetter(opId),
    retryAllDeadLetters: async () => {
      const letters = await engine.deadLetters();
      for (const d of letters) await engine.retryDeadLetter(d.op.id);
      return letters.length;
    },
    auditLog: () => engine.auditLog(),
    events: (limit = DEBUG_EVENT_LOG_SIZE) => log.slice(-limit),
    clearEvents: () => { log.length = 0; },
    setFaults: (faults) => engine.setFaults(faults),
    realtimeStatus: () => engine.realtimeStatus(),
    goOffline: () => engine.setFaults({ offline: true }),
    goOnline: () => engine.setFaults({ offline: false }),
    failNext: (count = 1, status = 503) => engine.setFaults({ failNext: count, failStatus: status }),
    setLatency: (ms) => engine.setFaults({ latencyMs: ms }),
    clearFaults: () => engine.setFaults({ offline: false, failNext: 0, latencyMs: 0 }),
    help: () => Object.keys(hook).join(', '),
  });
  globalThis.syncDebug = hook;
  return () => {
    unsubscribe();
    if (globalThis.syncDebug === hook) delete globalThis.syncDebug;
  };
}
