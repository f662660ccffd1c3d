// tidesync's IndexedDB calls, for src/store/idb.rs. Records cross as JSON text: one JSON.stringify of
// everything a transaction read, one JSON.parse of everything it writes. Every failure rejects with
// the DOMException IndexedDB gave (or a string), which idb.rs turns into a SyncError.
const STORES = ['entities', 'ops', 'deadLetters', 'conflicts', 'meta'];

// JSON text of what a read found; a record no JSON can hold (a BigInt, a cycle: tidesync did not
// write it) fails the read as unreadable.
function text(v) {
  try {
    return JSON.stringify(v);
  } catch (e) {
    throw `unreadable record in IndexedDB: ${e.message}`;
  }
}

const req = (r) =>
  new Promise((ok, no) => {
    r.onsuccess = () => ok(r.result);
    r.onerror = () => no(r.error);
  });

// The stores of each schema version the database has not seen yet.
function upgrade(db, oldVersion, tx) {
  if (oldVersion < 1) {
    db.createObjectStore('entities', { keyPath: ['collection', 'id'] });
    db.createObjectStore('ops', { keyPath: 'id' }).createIndex('entity', ['collection', 'entityId']);
    db.createObjectStore('deadLetters', { keyPath: 'op.id' });
    db.createObjectStore('conflicts', { keyPath: 'id' });
    db.createObjectStore('meta');
  }
  if (oldVersion < 2) {
    // The query indexes: every record keeps, in `ix`, one key per index its collection declares
    // (see `keys`), all in this one index. Declaring an index needs no schema change.
    tx.objectStore('entities').createIndex('query', 'ix', { multiEntry: true });
  }
}

// Each collection's indexes as lists of fields (`'due'` is `['due']`), from the engine's options (JSON
// text); what is not a field name or a list of them is left out (index.js refuses it first).
function declared(text) {
  const out = {};
  for (const [c, spec] of Object.entries(JSON.parse(text || '{}').collections ?? {})) {
    const list = spec?.indexes;
    if (!Array.isArray(list)) continue;
    const ok = list.map((i) => (typeof i === 'string' ? [i] : i))
      .filter((i) => Array.isArray(i) && i.length && i.every((f) => typeof f === 'string' && f));
    if (ok.length) out[c] = ok;
  }
  return out;
}

// A field's value as an index key part: numbers and strings as they are, booleans as 0 and 1;
// anything else (missing, null, objects, arrays) keeps the record out of that index. pkg/query.js
// has the same function (it cannot import this module): change both together.
function part(v) {
  if (typeof v === 'boolean') return +v;
  return (typeof v === 'number' && Number.isFinite(v)) || typeof v === 'string' ? v : undefined;
}

// The index keys of an entity: [collection, 'f1,f2', v1, v2, id] per index of its collection. A
// deleted record (no data) has none.
function keys(indexes, e) {
  const out = [];
  for (const fields of (e.data && indexes[e.collection]) || []) {
    const values = fields.map((f) => part(e.data[f]));
    if (!values.includes(undefined)) out.push([e.collection, fields.join(), ...values, e.id]);
  }
  return out;
}

// An entity as stored: with its index keys in `ix`, or without the field when it has none (a put
// replaces the whole record, so an absent `ix` takes it out of every index).
function withKeys(indexes, e) {
  const ix = keys(indexes, e);
  if (ix.length) e.ix = ix;
  else delete e.ix;
  return e;
}

// Every entity's `ix` recomputed when the declared indexes changed since the last open (the first
// open of a build with indexes, or an app that declared another): a readonly look at what the last
// open declared, and only on a change a cursor over the store, each record written back only when
// its keys differ.
async function reindex(db, indexes) {
  const want = JSON.stringify(indexes);
  const had = await req(db.transaction('meta').objectStore('meta').get('queryIndexes'));
  // The same indexes, or none ever: every record's keys are right.
  if (had === want || (had === undefined && want === '{}')) return;
  const tx = db.transaction(['entities', 'meta'], 'readwrite');
  const done = commit(tx, '[]');
  const r = tx.objectStore('entities').openCursor();
  r.onsuccess = () => {
    const c = r.result;
    if (!c) return;
    const before = JSON.stringify(c.value.ix ?? []);
    const e = withKeys(indexes, c.value);
    if (JSON.stringify(e.ix ?? []) !== before) c.update(e);
    c.continue();
  };
  tx.objectStore('meta').put(want, 'queryIndexes');
  return done;
}

// Opens `name` at `version`, upgrading it. An exception while upgrading is logged and aborts the
// upgrade: the open then fails (AbortError) and nothing of the upgrade stays.
export async function open(name, version, options, onClosed, onBlocked) {
  const f = globalThis.indexedDB;
  if (!f) throw 'IndexedDB is not available here';
  const r = f.open(name, version);
  r.onupgradeneeded = (e) => {
    try {
      upgrade(r.result, e.oldVersion, r.transaction);
    } catch (err) {
      console.error('tidesync: database upgrade failed', err);
      throw err;
    }
  };
  r.onblocked = onBlocked;
  const db = await req(r);
  // Another tab upgrades the database: close ours at once so its upgrade is not blocked.
  db.onversionchange = () => {
    db.close();
    onClosed();
  };
  ixOf.set(db, declared(options));
  await reindex(db, ixOf.get(db));
  return db;
}

// Each open database's declared indexes.
const ixOf = new WeakMap();

export function close(db) {
  db.onversionchange = null;
  db.close();
}

export const remove = async (name) => req(indexedDB.deleteDatabase(name));

// A readwrite transaction over every store (throws InvalidStateError once the database is closed).
export const begin = (db) => db.transaction(STORES, 'readwrite');

// A transaction over thousands of records issues its requests CHUNK at a time, the next chunk from
// a success event (a task of its own, the transaction still active): no long main-thread task.
const CHUNK = 128;

// Issues `n` requests (`make(i)` makes the i-th) a chunk at a time, each when the first request of
// the one before succeeds. Resolves with their results in order; rejects with the first error, or
// what `make` threw (a key or value IndexedDB refuses).
function issue(n, make) {
  return new Promise((ok, no) => {
    const out = new Array(n);
    let left = n;
    const from = (start) => {
      try {
        for (let i = start; i < Math.min(n, start + CHUNK); i++) {
          const r = make(i);
          r.onsuccess = () => {
            out[i] = r.result;
            if (i === start && start + CHUNK < n) from(start + CHUNK);
            if (--left === 0) ok(out);
          };
          r.onerror = () => no(r.error);
        }
      } catch (e) {
        no(e);
      }
    };
    if (n) from(0);
    else ok(out);
  });
}

// The reads of a `transact`: the sequence counter (the meta record `seq`), then each key's entity
// (or null) and its lane of ops, as one JSON array. `keys` is JSON text: [[collection, id], ...].
export async function read(tx, seq, keys) {
  const entities = tx.objectStore('entities');
  const lanes = tx.objectStore('ops').index('entity');
  const list = JSON.parse(keys);
  const found = await issue(1 + 2 * list.length, (i) =>
    i === 0 ? tx.objectStore('meta').get(seq) : i % 2 ? entities.get(list[(i - 1) / 2]) : lanes.getAll(list[i / 2 - 1]),
  );
  return text(found);
}

// Issues `writes` (JSON text: [[store index, key], ...] deletes, [store index, key or null, record]
// puts); resolves when they all succeeded. Throws if the text is not JSON.
function issueWrites(tx, writes) {
  const list = JSON.parse(writes);
  const indexes = ixOf.get(tx.db);
  return issue(list.length, (i) => {
    const [s, key, value] = list[i];
    const store = tx.objectStore(STORES[s]);
    // An entity carries its query index keys.
    if (s === 0 && value && indexes) withKeys(indexes, value);
    if (value === undefined) return store.delete(key);
    return key === null ? store.put(value) : store.put(value, key);
  });
}

// One part of a transaction's writes (as in `commit`), resolving once they succeeded, the
// transaction still active for the next part; a failure aborts the transaction.
export async function stage(tx, writes) {
  try {
    await issueWrites(tx, writes);
  } catch (e) {
    abort(tx);
    throw e;
  }
}

// Issues `writes` (as above) and resolves when the transaction has committed. A write the browser
// refuses, or a commit that fails (QuotaExceededError), aborts the transaction: none of its writes
// happen.
export function commit(tx, writes) {
  return new Promise((ok, no) => {
    tx.oncomplete = () => ok();
    tx.onabort = () => no(tx.error || 'the transaction was aborted');
    const failed = (e) => {
      abort(tx);
      no(e);
    };
    try {
      issueWrites(tx, writes).catch(failed);
    } catch (e) {
      failed(e);
    }
  });
}

export function abort(tx) {
  try {
    tx.onabort = null;
    tx.abort();
  } catch {
    // Already finished: nothing was left to undo.
  }
}

// A readwrite transaction of its own for `writes` (as in `commit`) on the stores named in `names`.
export const write = async (db, names, writes) => commit(db.transaction(names.split(','), 'readwrite'), writes);

// Appends `entries` (JSON text of an array) to the array in the meta record `name`, keeping the
// last `max`, in one readwrite transaction: two tabs appending at once both keep theirs.
export async function append(db, name, entries, max) {
  const tx = db.transaction('meta', 'readwrite');
  const store = tx.objectStore('meta');
  const done = commit(tx, '[]');
  const old = await req(store.get(name));
  store.put((Array.isArray(old) ? old : []).concat(JSON.parse(entries)).slice(-max), name);
  return done;
}

// One readonly read as JSON text: `get` of `key` (JSON text) in `name`, undefined when absent.
export async function get(db, name, key) {
  const v = await req(db.transaction(name).objectStore(name).get(JSON.parse(key)));
  return v === undefined ? v : text(v);
}

// Every record of the store `name` in a readonly transaction of its own, as JSON text.
export async function getAll(db, name) {
  return text(await req(db.transaction(name).objectStore(name).getAll()));
}

// A readonly transaction over the stores named in `names` (comma-separated), for `pager` reads.
export const readonly = (db, names) => db.transaction(names.split(','));

// Reads the store `name` of `tx` (with `collection`, only that collection's entities) `count`
// records at a time: each call of the function returned resolves to the next page as JSON text,
// then to undefined after the last. Each page arrives in a task of its own, so a long queue or
// collection is read without one long main-thread task; ask for the next page as soon as one
// arrives, or the transaction ends.
export function pager(tx, name, count, collection) {
  const store = tx.objectStore(name);
  const path = store.keyPath;
  // Every key [collection, id] with a string id sorts between [collection] and [collection, []].
  let [from, after, done] = [collection === undefined ? undefined : [collection], false, false];
  return async () => {
    if (done) return undefined;
    const range = collection !== undefined ? IDBKeyRange.bound(from, [collection, []], after)
      : after ? IDBKeyRange.lowerBound(from, true) : undefined;
    const rows = await req(store.getAll(range, count));
    done = rows.length < count;
    const last = rows[rows.length - 1];
    if (last) [from, after] = [Array.isArray(path) ? path.map((k) => last[k]) : last[path], true];
    return text(rows);
  };
}

// How many pending ops, dead letters and conflicts there are: IndexedDB counts them, in one
// readonly transaction, without reading a record.
export function counts(db) {
  const tx = db.transaction(['ops', 'deadLetters', 'conflicts']);
  return Promise.all(['ops', 'deadLetters', 'conflicts'].map((s) => req(tx.objectStore(s).count())));
}

// The flush lease (see src/web/locks.rs): takes `flushLease` = {holder, expires} in `meta` if it is
// absent, expired or already `holder`'s, in one readwrite transaction. Resolves to whether we hold it.
export async function takeLease(db, holder, expires) {
  const tx = db.transaction('meta', 'readwrite');
  const meta = tx.objectStore('meta');
  const cur = await req(meta.get('flushLease'));
  const free = cur?.holder === holder || !(cur?.expires >= Date.now());
  if (free) meta.put({ holder, expires }, 'flushLease');
  await commit(tx, '[]');
  return free;
}

// Deletes the lease and commits at once, without waiting: it also completes from the `pagehide`
// listener of a closing tab, where a read-then-delete often does not.
export function dropLease(db) {
  try {
    const tx = db.transaction('meta', 'readwrite');
    tx.objectStore('meta').delete('flushLease');
    // IndexedDB 3.0; where it is missing the transaction commits by itself.
    tx.commit?.();
  } catch {
    // The database is closed: the lease expires by itself.
  }
}
