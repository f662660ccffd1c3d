// Queries and live queries (`query`, `subscribeQuery`) with real IndexedDB, through the package as an
// app imports it. Every result is checked against the same question answered in plain JS over
// `list()`; IndexedDB reads are counted, so "through the index" is observed, not assumed.
import assert from 'node:assert/strict';
import { baseUrl, engineTest, openEngine } from './browser.mjs';
import { tokenFor } from './app.mjs';

/** A blank page with the package loaded, IndexedDB reads counted, and helpers on globalThis. */
async function harness(page) {
  await page.goto(`${baseUrl()}/tests/pages/blank.html`);
  await page.evaluate(async ([origin, token]) => {
    const counts = { indexReads: 0, storeGetAll: 0 };
    globalThis.idbCounts = counts;
    for (const m of ['getAll', 'openCursor']) {
      const real = IDBIndex.prototype[m];
      IDBIndex.prototype[m] = function (...args) {
        if (this.name === 'query') counts.indexReads++;
        return real.apply(this, args);
      };
    }
    const realGetAll = IDBObjectStore.prototype.getAll;
    IDBObjectStore.prototype.getAll = function (...args) {
      if (this.name === 'entities') counts.storeGetAll++;
      return realGetAll.apply(this, args);
    };
    const tidesync = await import(`${origin}/pkg/index.js`);
    globalThis.tidesync = tidesync;
    globalThis.openCards = (name, indexes) => tidesync.SyncEngine.open({
      name, userId: 'alice', autoSync: false, auth: async () => token,
      collections: {
        cards: { endpoint: '/api/cards', ...(indexes ? { indexes } : {}) },
        other: { endpoint: '/api/other' },
      },
    });
    globalThis.sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    globalThis.until = async (what, f, ms = 5000) => {
      const end = performance.now() + ms;
      for (;;) {
        const v = await f();
        if (v) return v;
        if (performance.now() > end) throw new Error(`timed out: ${what}`);
        await globalThis.sleep(10);
      }
    };
    // The documented semantics in plain JS: matching records, ordered by the orderBy fields, ties
    // by id in the last field's direction; booleans compare as 0/1, numbers before strings.
    const part = (v) => (typeof v === 'boolean' ? +v : (typeof v === 'number' && Number.isFinite(v)) || typeof v === 'string' ? v : undefined);
    const cmp = (a, b) => {
      if ((typeof a === 'string') !== (typeof b === 'string')) return typeof a === 'string' ? 1 : -1;
      return a < b ? -1 : a > b ? 1 : 0;
    };
    globalThis.reference = (records, spec) => {
      const order = (spec.orderBy === undefined ? [] : typeof spec.orderBy === 'string' ? [spec.orderBy]
        : typeof spec.orderBy[1] === 'string' && /^(asc|desc)$/.test(spec.orderBy[1]) ? [spec.orderBy] : spec.orderBy)
        .map((o) => (typeof o === 'string' ? [o, 'asc'] : o));
      const ok = (d) => Object.entries(spec.where ?? {}).every(([f, c]) => {
        const v = part(d[f]);
        if (v === undefined) return false;
        const cond = c !== null && typeof c === 'object' ? c : { eq: c };
        return Object.entries(cond).every(([op, q]) => (op === 'in' ? q.some((x) => cmp(v, part(x)) === 0)
          : op === 'prefix' ? typeof v === 'string' && v.startsWith(q)
            : { eq: (x) => x === 0, gt: (x) => x > 0, gte: (x) => x >= 0, lt: (x) => x < 0, lte: (x) => x <= 0 }[op](cmp(v, part(q)))));
      }) && order.every(([f]) => part(d[f]) !== undefined);
      const last = order.length ? order[order.length - 1][1] : 'asc';
      const out = records.filter((r) => ok(r.data)).sort((a, b) => {
        for (const [f, dir] of order) {
          const c = cmp(part(a.data[f]), part(b.data[f]));
          if (c) return dir === 'asc' ? c : -c;
        }
        const c = a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
        return last === 'asc' ? c : -c;
      });
      return spec.limit ? out.slice(0, spec.limit) : out;
    };
    // Deterministic cards: some without a due date, booleans, three tags.
    let seed = 7;
    const rnd = (n) => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    globalThis.cards = (n) => Array.from({ length: n }, (_, i) => {
      const data = { done: rnd(3) === 0, tag: 'abc'[rnd(3)], title: `note ${'abcdefgh'[rnd(8)]}${i}`, priority: 1 + rnd(3) };
      if (rnd(10)) data.due = rnd(60);
      return { id: `c${String(i).padStart(4, '0')}`, data };
    });
  }, [baseUrl(), await tokenFor('alice')]);
}

const INDEXES = ['due', ['done', 'due'], ['tag', 'title'], 'priority'];

// Each: the question, whether a declared index should answer it, and whether its order is fully
// given (else the result is compared as a set: the order is then the index's).
const QUESTIONS = [
  [{ where: { done: false }, orderBy: 'due', limit: 20 }, true, true],
  [{ where: { done: false }, orderBy: ['due', 'desc'], limit: 20 }, true, true],
  [{ where: { due: { gte: 10, lt: 20 } }, orderBy: 'due' }, true, true],
  [{ orderBy: 'due', limit: 50 }, true, true],
  [{ where: { due: { gt: 55 } } }, true, true],
  [{ where: { tag: 'b', title: { prefix: 'note a' } } }, true, false],
  [{ where: { tag: { in: ['a', 'c'] } }, orderBy: 'priority' }, true, true],
  [{ where: { priority: 2, done: true } }, true, false],
  [{ where: { done: true, due: { lte: 5 } }, orderBy: ['due', 'desc'] }, true, true],
  [{ where: { title: { prefix: 'note' } }, orderBy: [['priority', 'asc'], ['due', 'desc']] }, false, true],
  [{ where: { done: false } }, false, false],
];

{
  engineTest('queries answer as the plain-JS reference does, through the index when one fits, and page with `after`', {}, async (t, engine) => {
    const browser = await openEngine(engine);
    t.after(() => browser.close());
    const page = browser.page;
    await harness(page);
    const out = await page.evaluate(async (questions) => {
      const engine = await globalThis.openCards(`q-${Date.now()}`, [
        'due', ['done', 'due'], ['tag', 'title'], 'priority',
      ]);
      await engine.putMany('cards', globalThis.cards(400));
      await engine.put('other', 'o1', { due: 1, done: false });
      const all = await engine.list('cards');
      const answers = [];
      for (const [spec] of questions) {
        const before = { ...globalThis.idbCounts };
        const got = await engine.query('cards', spec);
        answers.push({
          got: got.map((r) => r.id),
          want: globalThis.reference(all, spec).map((r) => r.id),
          viaIndex: globalThis.idbCounts.indexReads > before.indexReads,
          scanned: globalThis.idbCounts.storeGetAll > before.storeGetAll,
          sameRecords: got.every((r) => JSON.stringify(r) === JSON.stringify(all.find((x) => x.id === r.id))) || JSON.stringify([got[0], all.find((x) => x.id === got[0].id)]),
        });
      }
      // Pages of 7 through `after`, in both directions, make up the whole result.
      const pages = [];
      for (const orderBy of ['due', ['due', 'desc']]) {
        const spec = { where: { done: false }, orderBy, limit: 7 };
        const seen = [];
        let after;
        for (;;) {
          const page = await engine.query('cards', { ...spec, after });
          if (!page.length) break;
          seen.push(...page.map((r) => r.id));
          after = page[page.length - 1];
        }
        pages.push({ seen, want: globalThis.reference(all, { ...spec, limit: undefined }).map((r) => r.id) });
      }
      engine.close();
      return { answers, pages };
    }, QUESTIONS);
    out.answers.forEach((a, i) => {
      const [spec, indexed, ordered] = QUESTIONS[i];
      const what = JSON.stringify(spec);
      if (ordered) assert.deepEqual(a.got, a.want, what);
      else assert.deepEqual([...a.got].sort(), [...a.want].sort(), what);
      assert.ok(a.want.length > 0, `the reference finds something for ${what}`);
      assert.equal(a.viaIndex, indexed, `${what}: through the index`);
      assert.equal(a.scanned, !indexed, `${what}: read the whole collection`);
      assert.equal(a.sameRecords, true, `${what}: records as list() has them`);
    });
    for (const p of out.pages) assert.deepEqual(p.seen, p.want);
  });
}

engineTest('a live query follows writes, deletes and other tabs from the changes, sends only real changes, and refills a full page', {}, async (t, engine) => {
  const browser = await openEngine(engine);
  t.after(() => browser.close());
  const name = `live-${Date.now()}`;
  const [tab1, tab2] = [browser.page, await browser.newPage()];
  for (const tab of [tab1, tab2]) await harness(tab);
  const out = await tab1.evaluate(async (name) => {
    const engine = await globalThis.openCards(name, ['due', ['done', 'due']]);
    globalThis.engine = engine;
    await engine.putMany('cards', globalThis.cards(60));
    const spec = { where: { done: false }, orderBy: 'due', limit: 5 };
    const results = [];
    globalThis.results = results;
    engine.subscribeQuery('cards', spec, (r) => results.push(r));
    await globalThis.until('first result', () => results.length === 1);
    const steps = [];
    const step = async (label, f, expectChange) => {
      const n = results.length;
      const before = { ...globalThis.idbCounts };
      await f();
      if (expectChange) await globalThis.until(label, () => results.length > n);
      else await globalThis.sleep(200);
      const fresh = (await engine.query('cards', spec)).map((r) => r.id);
      steps.push({
        label, results: results.length - n, ids: results.at(-1).map((r) => r.id), fresh,
        scans: globalThis.idbCounts.storeGetAll - before.storeGetAll,
      });
    };
    await step('a new first card', () => engine.put('cards', 'new', { done: false, due: -1 }), true);
    await step('a write to another collection', () => engine.put('other', 'x', { done: false, due: -2 }), false);
    await step('a card that does not match', () => engine.put('cards', 'nope', { done: true, due: -5 }), false);
    await step('a card past the page', () => engine.put('cards', 'late', { done: false, due: 1000 }), false);
    await step('the first card done: it leaves, the page refills', () => engine.patch('cards', 'new', { done: true }), true);
    const first = results.at(-1)[0].id;
    await step('the first card deleted', () => engine.delete('cards', first), true);
    return { steps, stable: results.at(-2) !== results.at(-1) };
  }, name);
  for (const s of out.steps) {
    assert.deepEqual(s.ids, s.fresh, `${s.label}: the live result is what a fresh query says`);
    assert.equal(s.scans, 0, `${s.label}: no collection read`);
  }
  const [add, other, nomatch, late, done, deleted] = out.steps;
  assert.equal(add.results, 1);
  assert.equal(add.ids[0], 'new');
  assert.equal(other.results, 0, 'another collection: no new result');
  assert.equal(nomatch.results, 0, 'a record that does not match: no new result');
  assert.equal(late.results, 0, 'a record beyond a full page: no new result');
  assert.ok(!done.ids.includes('new') && done.ids.length === 5);
  assert.equal(deleted.ids.length, 5);

  // Another tab's write reaches this tab's live query.
  await tab2.evaluate((name) => globalThis.openCards(name, ['due', ['done', 'due']]).then((e) => e.put('cards', 'from-tab-2', { done: false, due: -9 })), name);
  const heard = await tab1.evaluate(() => globalThis.until('tab 2 write', () => globalThis.results.at(-1)[0].id === 'from-tab-2').then(() => globalThis.results.at(-1)[0].id));
  assert.equal(heard, 'from-tab-2');
});

engineTest('indexes declared later are built from the stored records; bad indexes and bad queries are refused with stable codes', {}, async (t, engine) => {
  const browser = await openEngine(engine);
  t.after(() => browser.close());
  await harness(browser.page);
  const out = await browser.page.evaluate(async () => {
    const name = `later-${Date.now()}`;
    const first = await globalThis.openCards(name);
    await first.putMany('cards', globalThis.cards(120));
    const all = await first.list('cards');
    first.close();
    const engine = await globalThis.openCards(name, ['due']);
    const before = { ...globalThis.idbCounts };
    const got = (await engine.query('cards', { orderBy: 'due', limit: 30 })).map((r) => r.id);
    const viaIndex = globalThis.idbCounts.indexReads > before.indexReads && globalThis.idbCounts.storeGetAll === before.storeGetAll;
    const want = globalThis.reference(all, { orderBy: 'due', limit: 30 }).map((r) => r.id);
    const errors = [];
    const attempt = async (f) => {
      try {
        await f();
        errors.push('no error');
      } catch (e) {
        errors.push(`${e.name}:${e.code}:${e instanceof globalThis.tidesync.SyncError}`);
      }
    };
    await attempt(() => globalThis.openCards(`bad-${Date.now()}`, [42]));
    await attempt(() => globalThis.openCards(`bad2-${Date.now()}`, 'due'));
    await attempt(() => engine.query('cards', { where: { due: { near: 3 } } }));
    await attempt(() => engine.query('cards', { where: { due: { gt: {} } } }));
    await attempt(() => engine.query('cards', { limit: 0 }));
    await attempt(() => engine.query('nope', {}));
    engine.close();
    return { got, want, viaIndex, errors };
  });
  assert.deepEqual(out.got, out.want);
  assert.ok(out.viaIndex, 'the reopened engine answered through the index it built');
  assert.deepEqual(out.errors, [
    'SyncError:CONFIG:true', 'SyncError:CONFIG:true',
    'SyncError:INVALID_INPUT:true', 'SyncError:INVALID_INPUT:true', 'SyncError:INVALID_INPUT:true', 'SyncError:INVALID_INPUT:true',
  ]);
});

engineTest('useQuery renders again only when its result changes; useQuerySuspense, useEntitySuspense and useCollectionSuspense suspend until the first result (React StrictMode)', {}, async (t, engine) => {
  const browser = await openEngine(engine);
  t.after(() => browser.close());
  const page = browser.page;
  await page.goto(`${baseUrl()}/tests/pages/query.html?db=q-react-${Date.now()}`);
  // The page's module may still be loading when the navigation returns (WebKitGTK's WebDriver
  // returns at the load event, before a module's top-level await ends).
  await page.waitForFunction(() => window.queries, null, { timeout: 30_000 });
  await page.evaluate(() => window.queries.ready);
  const read = (id) => page.evaluate((id) => {
    const el = document.querySelector(`[data-testid="${id}"]`);
    return { text: el?.textContent, renders: Number(el?.dataset.renders ?? 0) };
  }, id);
  const settle = async (id, text) => {
    for (let i = 0; i < 100; i++) {
      const r = await read(id);
      if (r.text === text) return r;
      await new Promise((res) => setTimeout(res, 20));
    }
    throw new Error(`${id} never showed ${text}: ${JSON.stringify(await read(id))}`);
  };
  const start = await settle('due', 'c1,c3,c5');
  await settle('suspended', 'c5,c4');
  await settle('entity', 'c3:3');
  await settle('collection', 'empty');
  const write = (collection, id, data) => page.evaluate(([c, id, d]) => window.queries.engine.put(c, id, d), [collection, id, data]);

  await write('other', 'o', { done: false, due: 0 });
  await write('cards', 'c9', { done: true, due: 0 });
  await new Promise((res) => setTimeout(res, 300));
  const quiet = await read('due');
  assert.equal(quiet.text, 'c1,c3,c5');
  assert.equal(quiet.renders, start.renders, 'writes that do not change the result do not render');

  await write('cards', 'c0', { done: false, due: 0 });
  const moved = await settle('due', 'c0,c1,c3');
  // StrictMode renders twice per update in development builds; the test pages are built for production.
  assert.equal(moved.renders, start.renders + 1, 'one write that changes the result: one render');
  const suspended = await settle('suspended', 'c5,c4');
  assert.ok(suspended.renders >= 1);
  // The Suspense hooks stay live after their first result: 'other/o' was written above.
  await settle('collection', 'o');
  await write('cards', 'c3', { done: false, due: 30 });
  await settle('entity', 'c3:30');
});
