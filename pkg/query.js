// tidesync's queries and live queries, loaded by index.js on the first `query()`/`subscribeQuery()`.
//
// Every stored record carries one key per index its collection declares, [collection, 'f1,f2',
// v1, v2, id], in the multiEntry IndexedDB index `query` (src/store/idb.js keeps them as it writes).
// A query the indexes can answer reads only its page through that index; any other reads the whole
// collection and filters and sorts it here. A live query is kept from the changes themselves: each
// changed record is read once (for all live queries of its collection) and put in or taken out of
// every result it concerns; only a result that loses a record from a full page reads its page again.

const req = (r) => new Promise((ok, no) => {
  r.onsuccess = () => ok(r.result);
  r.onerror = () => no(r.error);
});

// As src/store/idb.js's `part` (this module cannot import that one: change both together): the key
// part of a field's value, undefined when it has none.
function part(v) {
  if (typeof v === 'boolean') return +v;
  return (typeof v === 'number' && Number.isFinite(v)) || typeof v === 'string' ? v : undefined;
}

// IndexedDB's order of key parts: numbers before strings, each in its own order.
function cmpPart(a, b) {
  const ta = typeof a === 'string';
  if (ta !== (typeof b === 'string')) return ta ? 1 : -1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Each collection's declared indexes as lists of fields (`'due'` is `['due']`); `fail(message)` for bad ones. */
export function indexesOf(collections, fail) {
  const out = {};
  for (const [c, spec] of Object.entries(collections ?? {})) {
    const list = spec?.indexes ?? [];
    if (!Array.isArray(list)) throw fail(`collections.${c}.indexes: expected an array`);
    out[c] = list.map((i) => {
      const fields = typeof i === 'string' ? [i] : i;
      if (!Array.isArray(fields) || !fields.length || !fields.every((f) => typeof f === 'string' && f)) {
        throw fail(`collections.${c}.indexes: each index is a field name or a list of them`);
      }
      return fields;
    });
  }
  return out;
}

const OPS = ['eq', 'in', 'gt', 'gte', 'lt', 'lte', 'prefix'];
const RANGE = ['gt', 'gte', 'lt', 'lte', 'prefix'];

/** Checks a query; returns it as { where: [[field, {op: value}]], order: [[field, dir]], limit, after }. */
export function normalize(spec = {}) {
  const bad = (m) => { throw new TypeError(m); };
  if (spec === null || typeof spec !== 'object') bad('a query is an object { where, orderBy, limit, after }');
  const where = Object.entries(spec.where ?? {}).map(([field, c]) => {
    const cond = c !== null && typeof c === 'object' && !Array.isArray(c) ? c : { eq: c };
    for (const [op, v] of Object.entries(cond)) {
      if (!OPS.includes(op)) bad(`where.${field}: unknown operator '${op}' (expected ${OPS.join(', ')})`);
      const ok = op === 'in' ? Array.isArray(v) && v.every((x) => part(x) !== undefined)
        : op === 'prefix' ? typeof v === 'string' : part(v) !== undefined;
      if (!ok) bad(`where.${field}.${op}: expected ${op === 'in' ? 'an array of strings, numbers or booleans' : op === 'prefix' ? 'a string' : 'a string, number or boolean'}`);
    }
    return [field, cond];
  });
  const order = (spec.orderBy === undefined ? [] : typeof spec.orderBy === 'string' || (Array.isArray(spec.orderBy) && typeof spec.orderBy[1] === 'string' && /^(asc|desc)$/.test(spec.orderBy[1]))
    ? [spec.orderBy] : spec.orderBy).map((o) => {
    const [field, dir = 'asc'] = typeof o === 'string' ? [o] : Array.isArray(o) ? o : [];
    if (typeof field !== 'string' || (dir !== 'asc' && dir !== 'desc')) bad(`orderBy: expected 'field', ['field', 'asc' | 'desc'] or a list of them`);
    return [field, dir];
  });
  const limit = spec.limit ?? Infinity;
  if (limit !== Infinity && !(Number.isInteger(limit) && limit > 0)) bad('limit: expected a positive integer');
  if (spec.after != null && (typeof spec.after !== 'object' || typeof spec.after.id !== 'string')) bad('after: expected a record of the previous page');
  return { where, order, limit, after: spec.after ?? null };
}

/** Whether `data` meets every condition. */
function matches(where, data) {
  return where.every(([f, cond]) => {
    const v = part(data[f]);
    if (v === undefined) return false;
    return Object.entries(cond).every(([op, q]) => {
      if (op === 'in') return q.some((x) => cmpPart(v, part(x)) === 0);
      if (op === 'prefix') return typeof v === 'string' && v.startsWith(q);
      const c = cmpPart(v, part(q));
      return op === 'eq' ? c === 0 : op === 'gt' ? c > 0 : op === 'gte' ? c >= 0 : op === 'lt' ? c < 0 : c <= 0;
    });
  });
}

/** The result order: the orderBy fields, then the id (in the last field's direction, as an index runs). */
function comparator(order) {
  const last = order.length ? order[order.length - 1][1] : 'asc';
  return (a, b) => {
    for (const [f, dir] of order) {
      const c = cmpPart(part(a.data[f]), part(b.data[f]));
      if (c) return dir === 'asc' ? c : -c;
    }
    const c = a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
    return last === 'asc' ? c : -c;
  };
}

/** A record belongs to a result when it meets `where`, has every orderBy field, and comes after `after`. */
function belongs(q, cmp, r) {
  return r.data != null && matches(q.where, r.data) && q.order.every(([f]) => part(r.data[f]) !== undefined)
    && (!q.after || cmp(r, q.after) > 0);
}

/**
 * How an index answers `q`: an index over fields the query names only, whose leading fields `where`
 * fixes, then (optionally) one field in a range, then the orderBy fields, all in one direction.
 * Conditions it does not cover are checked on each record it yields. `null`: no declared index fits.
 */
export function plan(indexes, q) {
  const eq = new Map(q.where.filter(([, c]) => 'eq' in c).map(([f, c]) => [f, c.eq]));
  const dirs = new Set(q.order.map(([, d]) => d));
  if (dirs.size > 1) return null;
  // A record lacking a field is not in an index over it: only an index over fields the query
  // needs anyway (in `where`, or in `orderBy`) leaves out no record that belongs.
  const needed = new Set([...q.where.map(([f]) => f), ...q.order.map(([f]) => f)]);
  let best = null;
  for (const fields of indexes) {
    if (!fields.every((f) => needed.has(f))) continue;
    let p = 0;
    while (p < fields.length && eq.has(fields[p])) p++;
    const rangeCond = q.where.find(([f, c]) => f === fields[p] && RANGE.some((op) => op in c));
    let rest = fields.slice(p);
    // The orderBy fields must be the index's next fields (a field fixed by `where` may be skipped).
    const order = q.order.map(([f]) => f).filter((f) => !(eq.has(f) && fields.indexOf(f) < p));
    if (!order.every((f, i) => rest[i] === f)) continue;
    const score = p * 2 + (rangeCond ? 1 : 0) + (order.length ? 0.5 : 0);
    if (score === 0 && !order.length) continue;
    if (!best || score > best.score) {
      best = { fields, eq: fields.slice(0, p).map((f) => part(eq.get(f))), range: rangeCond?.[1] ?? null, score };
    }
  }
  return best && { ...best, dir: dirs.has('desc') ? 'prev' : 'next' };
}

/** The IDBKeyRange of a plan, starting after `q.after` when given. */
function keyRange(collection, p, q) {
  const prefix = [collection, p.fields.join(), ...p.eq];
  let lo = prefix;
  let hi = [...prefix, []];
  let hiOpen = false;
  const r = p.range ?? {};
  if ('prefix' in r) [lo, hi] = [[...prefix, r.prefix], [...prefix, `${r.prefix}\uffff`, []]];
  if ('gte' in r) lo = [...prefix, part(r.gte)];
  if ('gt' in r) lo = [...prefix, part(r.gt), []];
  if ('lte' in r) hi = [...prefix, part(r.lte), []];
  if ('lt' in r) [hi, hiOpen] = [[...prefix, part(r.lt)], true];
  let loOpen = false;
  if (q.after) {
    const at = [collection, p.fields.join(), ...p.fields.map((f) => part(q.after.data?.[f])), q.after.id];
    if (at.includes(undefined)) throw new TypeError('after: the record has no value for a field of the index');
    if (p.dir === 'next' && indexedDB.cmp(at, lo) >= 0) [lo, loOpen] = [at, true];
    if (p.dir === 'prev' && indexedDB.cmp(at, hi) <= 0) [hi, hiOpen] = [at, true];
  }
  return indexedDB.cmp(lo, hi) > 0 ? null : IDBKeyRange.bound(lo, hi, loOpen, hiOpen);
}

// What apps see of a stored record (as list() returns it).
const view = (e) => ({
  collection: e.collection, id: e.id, data: e.data, version: e.version ?? null,
  syncStatus: e.syncStatus, lastModified: e.lastModified,
});

/**
 * The plan of `q` and its order. An index orders by all its fields after the fixed ones, then the
 * id: results read through it, and live results, are in exactly that order.
 */
export function prepare(indexes, q) {
  const p = plan(indexes, q);
  const dir = p?.dir === 'prev' ? 'desc' : 'asc';
  const order = p ? p.fields.slice(p.eq.length).map((f) => [f, dir]) : q.order;
  return { p, q: { ...q, order }, cmp: comparator(order) };
}

/** Runs `q` on `collection`; resolves to its records, in order. */
export async function run(db, collection, indexes, query) {
  const { p, q, cmp } = prepare(indexes, query);
  const store = db.transaction('entities').objectStore('entities');
  if (!p) {
    // No index fits: the whole collection, filtered and sorted here.
    const all = await req(store.getAll(IDBKeyRange.bound([collection], [collection, []])));
    const out = all.filter((e) => belongs(q, cmp, e)).sort(cmp);
    return (q.limit === Infinity ? out : out.slice(0, q.limit)).map(view);
  }
  const range = keyRange(collection, p, q);
  if (!range) return [];
  const index = store.index('query');
  const residual = (e) => e.data != null && matches(q.where, e.data);
  const inKey = ([f, c]) => (p.fields.indexOf(f) > -1 && p.fields.indexOf(f) < p.eq.length && Object.keys(c).join() === 'eq')
    || (c === p.range && Object.keys(c).every((op) => RANGE.includes(op)));
  if (p.dir === 'next' && q.where.every(inKey)) {
    // Everything is in the key: one getAll of the page.
    return (await req(index.getAll(range, q.limit === Infinity ? undefined : q.limit))).map(view);
  }
  const out = [];
  await new Promise((ok, no) => {
    const r = index.openCursor(range, p.dir);
    r.onerror = () => no(r.error);
    r.onsuccess = () => {
      const c = r.result;
      if (!c) return ok();
      if (residual(c.value)) out.push(view(c.value));
      if (out.length >= q.limit) return ok();
      c.continue();
    };
  });
  return out;
}

/**
 * One engine's live queries: one subscription for all of them; each changed record is read once per
 * burst of events and offered to every live query of its collection.
 */
class Hub {
  constructor(engine) {
    Object.assign(this, { engine, queries: new Set(), changed: new Map(), timer: null });
    this.off = engine.subscribe((e) => {
      if (e.type !== 'change') return;
      let ids = this.changed.get(e.collection);
      if (!ids) this.changed.set(e.collection, (ids = new Map()));
      ids.set(e.id, !!e.deleted);
      this.timer ??= setTimeout(() => this.apply(), 0);
    });
  }

  async apply() {
    this.timer = null;
    const changed = this.changed;
    this.changed = new Map();
    for (const [collection, ids] of changed) {
      const live = [...this.queries].filter((l) => l.collection === collection);
      if (!live.length) continue;
      // Past a few hundred changed records, reading each page again is cheaper than each record.
      if (ids.size > 200) {
        live.forEach((l) => l.refresh());
        continue;
      }
      const records = await Promise.all([...ids].map(([id, deleted]) => (deleted
        ? { id, data: null } : this.engine.getRecord(collection, id).then((r) => r ?? { id, data: null }, () => ({ id, data: null })))));
      live.forEach((l) => l.offer(records));
    }
  }
}

const hubs = new WeakMap();

/** Keeps `q` on `collection` up to date; `listener(records)` hears every new result. Returns the unsubscribe. */
export function subscribe(engine, db, collection, indexes, query, listener, onError) {
  let hub = hubs.get(engine);
  if (!hub) hubs.set(engine, (hub = new Hub(engine)));
  const { q, cmp } = prepare(indexes, query);
  let result = null;
  let generation = 0;
  const publish = (next) => {
    const same = result && next.length === result.length && next.every((r, i) => r === result[i]);
    if (!same) {
      result = next;
      listener(next);
    }
  };
  const live = {
    collection,
    async refresh() {
      const g = ++generation;
      try {
        const next = await run(db, collection, indexes, query);
        if (g === generation && hub.queries.has(live)) publish(next);
      } catch (e) {
        onError(e);
      }
    },
    offer(records) {
      if (!result) return;
      const gone = new Set(records.map((r) => r.id));
      let next = result.filter((r) => !gone.has(r.id));
      const lost = next.length < result.length;
      let added = false;
      for (const r of records) {
        if (!belongs(q, cmp, r)) continue;
        const at = next.findIndex((x) => cmp(r, x) < 0);
        next.splice(at < 0 ? next.length : at, 0, r.collection ? r : view(r));
        added = true;
      }
      const full = result.length >= q.limit;
      if (next.length > q.limit) next = next.slice(0, q.limit);
      // A full page that lost a record: the one after it is not in memory.
      if (full && lost && next.length < q.limit) return live.refresh();
      if (added || lost) publish(next);
    },
  };
  hub.queries.add(live);
  live.refresh();
  return () => {
    hub.queries.delete(live);
    if (!hub.queries.size) {
      hub.off();
      hubs.delete(engine);
    }
  };
}
