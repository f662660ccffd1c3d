// tidesync/react: hooks over SyncEngine on useSyncExternalStore. One cache per engine; each
// cached value is re-read only when an event concerns it, and kept (same object) when the new
// read is equal by value, so components re-render only when their data changed.
import { createContext, createElement, useCallback, useContext, useMemo, useSyncExternalStore } from 'react';

const EngineContext = createContext(null);

/** Makes `engine` available to the hooks below it; renders `fallback` while `engine` is null. */
export function SyncProvider({ engine, fallback = null, children }) {
  return engine ? createElement(EngineContext.Provider, { value: engine }, children) : fallback;
}

export function useSyncEngine() {
  const engine = useContext(EngineContext);
  if (!engine) throw new Error('tidesync/react: use the hooks inside <SyncProvider engine={engine}>');
  return engine;
}

// Equal as JSON values.
function equal(a, b) {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && equal(a[k], b[k]));
}

// `next`, reusing every part of `prev` that is equal to its counterpart (array items with an
// `id` are matched by it), so unchanged records keep their identity for React.memo and deps.
function share(prev, next) {
  if (equal(prev, next)) return prev;
  if (typeof prev !== 'object' || typeof next !== 'object' || prev === null || next === null) return next;
  if (Array.isArray(prev) !== Array.isArray(next)) return next;
  if (Array.isArray(next)) {
    const byId = new Map(prev.map((x) => [x?.id, x]));
    return next.map((x, i) => share(x?.id === undefined ? prev[i] : byId.get(x.id), x));
  }
  if (Object.getPrototypeOf(next) !== Object.prototype) return next;
  const out = {};
  for (const k of Object.keys(next)) out[k] = share(prev[k], next[k]);
  return out;
}

const NONE = Object.freeze([]);

// A `change` event finds its record's and its collection's entries by these keys.
const entityKey = (collection, id) => `e\u0000${collection}\u0000${id}`;
const collectionKey = (collection) => `c\u0000${collection}`;

// `f` at the next animation frame, or in 100 ms where frames do not come (a hidden tab).
function nextFrame(f) {
  let done = false;
  const run = () => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    f();
  };
  const timer = setTimeout(run, 100);
  globalThis.requestAnimationFrame?.(run);
}

class Cache {
  constructor(engine) {
    this.engine = engine;
    this.entries = new Map();
    // Entries that hear every `change` (status, queue, ...); the others only their own, by key.
    this.wide = new Set();
    this.dirty = new Set();
    this.framed = new Set();
    // While a burst's re-reads start: their getRecord() promises (a record's entry and its
    // collection's share one read).
    this.reads = null;
    this.off = null;
  }

  entry(key, spec) {
    let e = this.entries.get(key);
    if (!e) {
      e = { key, ...spec, value: spec.initial, listeners: new Set(), loaded: false, busy: false, again: false };
      this.entries.set(key, e);
      if (spec.wide) this.wide.add(e);
      this.dropLater(e);
    }
    return e;
  }

  subscribe(e, listener) {
    e.listeners.add(listener);
    clearTimeout(e.drop);
    this.off ??= this.engine.subscribe((event) => this.onEvent(event));
    if (!e.loaded) this.refresh(e);
    return () => {
      e.listeners.delete(listener);
      if (e.listeners.size) return;
      // Events are not followed without listeners: read again on the next subscribe.
      e.loaded = false;
      this.dropLater(e);
    };
  }

  // Kept a while: React (StrictMode, remounts) often subscribes again at once.
  dropLater(e) {
    clearTimeout(e.drop);
    e.drop = setTimeout(() => {
      if (e.listeners.size || this.entries.get(e.key) !== e) return;
      this.entries.delete(e.key);
      this.wide.delete(e);
      if (this.entries.size === 0) {
        this.off?.();
        this.off = null;
      }
    }, 5000);
  }

  onEvent(event) {
    if (event.type === 'closed') return;
    if (event.type === 'change') {
      this.touch(this.entries.get(entityKey(event.collection, event.id)), event);
      this.touch(this.entries.get(collectionKey(event.collection)), event);
      for (const e of this.wide) this.touch(e, event);
    } else {
      for (const e of this.entries.values()) this.touch(e, event);
    }
  }

  touch(e, event) {
    if (!e?.listeners.size || !e.concerns(event)) return;
    e.note?.(event);
    if (e.frame) {
      if (!this.framed.size) nextFrame(() => this.run(this.framed));
      this.framed.add(e);
    } else {
      // One re-read per burst of events (a flush or a pull reports each record in one go).
      if (!this.dirty.size) queueMicrotask(() => this.run(this.dirty));
      this.dirty.add(e);
    }
  }

  run(set) {
    const due = [...set];
    set.clear();
    this.reads = new Map();
    due.forEach((e) => this.refresh(e));
    this.reads = null;
  }

  getRecord(collection, id) {
    const key = entityKey(collection, id);
    let p = this.reads?.get(key);
    if (!p) {
      p = this.engine.getRecord(collection, id);
      this.reads?.set(key, p);
    }
    return p;
  }

  async refresh(e) {
    if (e.busy) {
      e.again = true;
      return;
    }
    e.busy = true;
    do {
      e.again = false;
      let value;
      try {
        value = await e.update(this, e);
      } catch (error) {
        value = share(e.value, e.shape(undefined, error));
      }
      e.loaded = true;
      if (value !== e.value) {
        e.value = value;
        e.listeners.forEach((l) => l());
      }
    } while (e.again);
    e.busy = false;
  }
}

// The usual update: read the whole value again, keep what did not change.
async function reread(cache, e) {
  return share(e.value, e.shape(await e.read(cache.engine), undefined));
}

const caches = new WeakMap();
function cacheOf(engine) {
  let c = caches.get(engine);
  if (!c) caches.set(engine, (c = new Cache(engine)));
  return c;
}

// useSyncExternalStore over one cache entry. `spec` must depend only on `key`.
function useEntry(key, spec) {
  return useEntryOf(key, spec).value;
}

// useEntry, with the cache and the entry behind the value (for the Suspense variants).
function useEntryOf(key, spec) {
  const cache = cacheOf(useSyncEngine());
  const e = cache.entry(key, { update: reread, ...spec });
  const subscribe = useCallback((l) => cache.subscribe(e, l), [cache, e]);
  const get = () => e.value;
  return { value: useSyncExternalStore(subscribe, get, get), cache, e };
}

// useEntry for Suspense: suspends until the entry's first value, then returns it (throws its error).
function useEntrySuspense(key, spec) {
  const { value, cache, e } = useEntryOf(key, spec);
  if (value.loading) {
    // Subscribed from here on, so the value is read even before React commits; kept a few seconds
    // after it arrives, for React's retry to find it without reading again.
    let off;
    throw new Promise((resolve) => (off = cache.subscribe(e, resolve))).finally(() => setTimeout(off, 5000));
  }
  if (value.error) throw value.error;
  return value;
}

const LOADING = Object.freeze({ data: undefined, record: undefined, loading: true, error: undefined });
const LOADING_LIST = Object.freeze({ data: NONE, loading: true, error: undefined });
const isChange = (ev) => ev.type === 'change';

/** One record: `{ data, record, loading, error }`; `data` is `undefined` when there is none. */
export function useEntity(collection, id) {
  return useEntry(entityKey(collection, id), entitySpec(collection, id));
}

const entitySpec = (collection, id) => ({
  update: async (cache, e) => share(e.value, shapeRecord(await cache.getRecord(collection, id))),
  shape: (record, error) => shapeRecord(record, error),
  concerns: (ev) => isChange(ev) && ev.collection === collection && ev.id === id,
  initial: LOADING,
});

const shapeRecord = (record, error) => ({ data: record?.data, record, loading: false, error });

// Changed records are read alone (getRecord, in parallel) and put in place while they are at most
// LIST_MIN or one in LIST_RATIO; past that, one list(). In Chromium (bench/RESULTS.md, section 11)
// list() costs ~0.03 ms per record, a getRecord() among many ~0.16 ms: reading alone wins below
// about one in six; one in twelve leaves a margin of two.
const LIST_MIN = 32;
const LIST_RATIO = 12;

/** Every record of a collection: `{ data: SyncRecord[], loading, error }`. */
export function useCollection(collection) {
  return useEntry(collectionKey(collection), collectionSpec(collection));
}

function collectionSpec(collection) {
  return {
    read: (engine) => engine.list(collection),
    shape: (records, error) => ({ data: records ?? NONE, loading: false, error }),
    concerns: isChange,
    // The ids changed since the last read; `null`: read the whole list.
    ids: null,
    note(ev) {
      this.ids?.add(ev.id);
    },
    async update(cache, e) {
      const ids = e.ids;
      e.ids = new Set();
      const prev = e.value.data;
      if (!e.loaded || !ids || e.value.error || ids.size > Math.max(LIST_MIN, prev.length / LIST_RATIO)) {
        return reread(cache, e);
      }
      let records;
      try {
        records = await Promise.all([...ids].map((id) => cache.getRecord(collection, id)));
      } catch {
        // A record failed its checksum (list() leaves it out and reports it), or worse: read it all.
        return reread(cache, e);
      }
      const data = patch(prev, [...ids], records);
      return data === prev ? e.value : { data, loading: false, error: undefined };
    },
    initial: LOADING_LIST,
  };
}

// `list` (in id order, as list() returns it) with `ids` set to `records` (undefined: removed); the
// same array when nothing changed.
function patch(list, ids, records) {
  let out = list;
  ids.forEach((id, k) => {
    const record = records[k];
    // The first index whose id is not below `id` (JS compares strings as IndexedDB orders them).
    let lo = 0;
    let hi = out.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (out[mid].id < id) lo = mid + 1;
      else hi = mid;
    }
    const old = out[lo]?.id === id ? out[lo] : undefined;
    if (old === undefined && record === undefined) return;
    const next = old && record ? share(old, record) : record;
    if (next === old) return;
    if (out === list) out = list.slice();
    if (!record) out.splice(lo, 1);
    else if (old) out[lo] = next;
    else out.splice(lo, 0, next);
  });
  return out;
}

/** `engine.status()`, kept current; `undefined` until first read. */
export function useSyncStatus() {
  return useEntry('status', {
    read: (engine) => engine.status(),
    shape: (status) => status,
    concerns: () => true,
    wide: true,
    // Read once per animation frame, however many events arrive meanwhile.
    frame: true,
    initial: undefined,
  });
}

/** Conflicts waiting for the app (empty while loading). */
export function useConflicts() {
  return useEntry('conflicts', {
    read: (engine) => engine.conflicts(),
    shape: (list) => list ?? NONE,
    wide: true,
    concerns: (ev) => ev.type === 'conflict' || ev.type === 'resolved' || ev.type === 'queueCleared' || isChange(ev),
    initial: NONE,
  });
}

/** Dead-lettered writes (empty while loading). */
export function useDeadLetters() {
  return useEntry('deadLetters', {
    read: (engine) => engine.deadLetters(),
    shape: (list) => list ?? NONE,
    wide: true,
    concerns: (ev) => ev.type === 'deadLetter' || ev.type === 'deadLetterDiscarded' || isChange(ev),
    initial: NONE,
  });
}

/** Writes waiting for the server, in send order (empty while loading). */
export function useQueue() {
  return useEntry('queue', {
    read: (engine) => engine.queue(),
    shape: (list) => list ?? NONE,
    wide: true,
    // Writes, flush results (attempts, next try, last error), dead letters, resolutions, clearQueue.
    concerns: (ev) => ev.type !== 'realtime',
    initial: NONE,
  });
}

// One live query per (engine, collection, question), shared by the components that ask it: the
// first subscriber starts `engine.subscribeQuery`, the last one stops it.
const liveQueries = new WeakMap();

function liveQuery(engine, key) {
  let byKey = liveQueries.get(engine);
  if (!byKey) liveQueries.set(engine, (byKey = new Map()));
  let q = byKey.get(key);
  if (q) return q;
  const [collection, spec] = JSON.parse(key);
  const listeners = new Set();
  let off = null;
  let ready;
  const firstResult = new Promise((resolve) => { ready = resolve; });
  const set = (state) => {
    q.state = state;
    ready();
    listeners.forEach((f) => f());
  };
  q = {
    state: LOADING_LIST,
    firstResult,
    subscribe(listener, graceMs = 0) {
      listeners.add(listener);
      off ??= engine.subscribeQuery(collection, spec, (records) => set({ data: records, loading: false, error: undefined }),
        (error) => set({ data: q.state.data, loading: false, error }));
      return () => {
        listeners.delete(listener);
        if (listeners.size) return;
        // Let a component that re-subscribes at once (a re-render, Strict Mode, Suspense's retry
        // after the first result) keep it.
        setTimeout(() => {
          if (listeners.size || !off) return;
          off();
          off = null;
          byKey.delete(key);
        }, graceMs);
      };
    },
  };
  byKey.set(key, q);
  return q;
}

/**
 * A live query (`engine.query` kept current from the changes): `{ data, loading, error }`. Renders
 * again only when the result changes.
 */
export function useQuery(collection, spec) {
  const engine = useSyncEngine();
  const key = JSON.stringify([collection, spec ?? {}]);
  const q = useMemo(() => liveQuery(engine, key), [engine, key]);
  const get = useCallback(() => q.state, [q]);
  return useSyncExternalStore(q.subscribe, get, get);
}

/** `useQuery` for Suspense: suspends until the first result, then returns the records (throws a query's error). */
export function useQuerySuspense(collection, spec) {
  const engine = useSyncEngine();
  const key = JSON.stringify([collection, spec ?? {}]);
  const q = useMemo(() => liveQuery(engine, key), [engine, key]);
  const get = useCallback(() => q.state, [q]);
  const state = useSyncExternalStore(q.subscribe, get, get);
  if (state.loading) {
    // Subscribed from here on, so the first result arrives even before React commits; kept a few
    // seconds after it, for React's retry to find it.
    const off = q.subscribe(() => {}, 5000);
    throw q.firstResult.finally(off);
  }
  if (state.error) throw state.error;
  return state.data;
}

/** `useEntity` for Suspense: suspends until the record is read; its `SyncRecord`, or `undefined` when there is none. */
export function useEntitySuspense(collection, id) {
  return useEntrySuspense(entityKey(collection, id), entitySpec(collection, id)).record;
}

/** `useCollection` for Suspense: suspends until the collection is read; its records, in id order. */
export function useCollectionSuspense(collection) {
  return useEntrySuspense(collectionKey(collection), collectionSpec(collection)).data;
}

/** The same hooks, typed for a schema: `export const { useEntity, useCollection } = createSyncHooks<Schema>()`. */
export function createSyncHooks() {
  return {
    useSyncEngine, useEntity, useEntitySuspense, useCollection, useCollectionSuspense, useSyncStatus, useConflicts,
    useDeadLetters, useQueue, useQuery, useQuerySuspense,
  };
}
