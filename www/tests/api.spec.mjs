// The write API at the JS boundary, in Chromium, Firefox and WebKitGTK with real IndexedDB, through
// the package as an app imports it (/pkg/index.js): what counts as a record, `putMany` (one transaction, all or nothing),
// and how many IndexedDB transactions each write opens.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { baseUrl, closeEngines, ENGINES, openEngine } from './browser.mjs';

// One browser per engine for the whole file, a fresh context per test (browser.mjs's openEngine).
after(closeEngines);
import { api, serverRecords, tokenFor } from './app.mjs';

/**
 * Runs `fn(engine)` in a blank page of the browser `browserName` (a key of ENGINES) with a fresh
 * engine; IndexedDB transactions are counted by mode.
 */
async function inPage(t, browserName, name, fn) {
  const browser = await openEngine(browserName);
  t.after(() => browser.close());
  const { page } = browser;
  await page.goto(`${baseUrl()}/tests/pages/blank.html`);
  await page.evaluate(() => {
    const open = IDBDatabase.prototype.transaction;
    globalThis.idbTransactions = { readonly: 0, readwrite: 0 };
    IDBDatabase.prototype.transaction = function (stores, mode = 'readonly', ...rest) {
      globalThis.idbTransactions[mode] = (globalThis.idbTransactions[mode] ?? 0) + 1;
      return open.call(this, stores, mode, ...rest);
    };
  });
  return page.evaluate(
    async ([origin, name, source, token]) => {
      const { SyncEngine } = await import(`${origin}/pkg/index.js`);
      const engine = await SyncEngine.open({
        name,
        autoSync: false,
        auth: async () => token,
        collections: { notes: { endpoint: '/api/notes' } },
      });
      // Let the start-up work (storage estimate, registering, a first status) settle, so the
      // transaction counts below see only the calls under test.
      await engine.status();
      await new Promise((resolve) => setTimeout(resolve, 500));
      try {
        // eslint-disable-next-line no-new-func
        return await new Function('engine', `return (async () => { ${source} })()`)(engine);
      } finally {
        engine.close();
      }
    },
    [baseUrl(), name, fn, await tokenFor('alice')],
  );
}

for (const browserName of Object.keys(ENGINES)) {
  test(`a record must be a plain JSON object (no cycle, BigInt, Map, Set, bytes or 10,000-deep nesting): anything else is INVALID_INPUT, nothing stored; numbers and cut text survive (${browserName})`, async (t) => {
    const out = await inPage(
      t,
      browserName,
      `api-records-${Date.now()}`,
      `
      const circular = {}; circular.self = circular;
      let deep = {}; for (let i = 0; i < 10000; i++) deep = { deep };
      class Note { constructor() { this.title = 'x'; } }
      const bad = {
        array: [1, 2], string: 'text', number: 7, null: null, undefined: undefined, date: new Date(),
        map: new Map([['a', 1]]), classInstance: new Note(), func: () => 1,
        bigint: { n: 10n }, circular, deep,
        nestedMap: { m: new Map([['a', 1]]) }, nestedSet: { s: new Set([1]) }, bytes: { b: new Uint8Array(2) },
      };
      const codes = {};
      for (const [what, value] of Object.entries(bad)) {
        try { await engine.put('notes', what, value); codes[what] = 'stored'; }
        catch (e) { codes[what] = e.code + ': ' + e.message; }
      }
      // Accepted: a plain object, one without a prototype, nested values, unicode keys.
      const bare = Object.create(null); bare.title = 'bare';
      await engine.put('notes', 'plain', { title: 'ok', tags: ['a'], nested: { 'ключ': 1.5 } });
      await engine.put('notes', 'bare', bare);
      // Numbers come back bit for bit; text cut inside an emoji keeps U+FFFD where the half was.
      const numbers = { price: 19.990000000000002, lng: -122.41941550000001, tiny: 5e-324, big: 1.7976931348623157e308 };
      await engine.put('notes', 'numbers', numbers);
      await engine.put('notes', 'cut', { text: '😀 smile'.slice(1) });
      const back = await engine.get('notes', 'numbers');
      const exact = Object.keys(numbers).every((k) => Object.is(back[k], numbers[k]));
      const cut = (await engine.get('notes', 'cut')).text;
      const status = await engine.status();
      return { codes, pending: status.pending, list: (await engine.list('notes')).map((r) => r.id), exact, cut };
      `,
    );
    for (const [what, code] of Object.entries(out.codes)) {
      assert.match(code, /^INVALID_INPUT: /, `${what}: ${code}`);
    }
    assert.equal(Object.keys(out.codes).length, 15);
    assert.match(out.codes.nestedMap, /'m' is a Map/);
    assert.deepEqual(out.list, ['bare', 'cut', 'numbers', 'plain'], 'only the valid records are stored');
    assert.equal(out.pending, 4);
    assert.equal(out.exact, true, 'numbers are stored exactly');
    assert.equal(out.cut, '\uFFFD smile');
  });
}

for (const browserName of Object.keys(ENGINES)) {
  test(`putMany: one readwrite transaction for 100 records and for 600 (stored in parts), all or nothing, then syncs like put (${browserName})`, async (t) => {
    await api('/admin/reset', { method: 'POST' });
    const out = await inPage(
      t,
      browserName,
      `api-many-${Date.now()}`,
      `
      const count = () => ({ ...globalThis.idbTransactions });
      const delta = (a, b) => ({ readonly: b.readonly - a.readonly, readwrite: b.readwrite - a.readwrite });

      let before = count();
      await engine.put('notes', 'single', { n: -1 });
      const put = delta(before, count());

      const records = Array.from({ length: 100 }, (_, i) => ({ id: 'm' + i, data: { n: i } }));
      before = count();
      const stored = await engine.putMany('notes', records);
      const many = delta(before, count());

      // One bad entry: the whole batch is refused, and says which entry.
      let refused;
      try { await engine.putMany('notes', [{ id: 'ok', data: { n: 1 } }, { id: 'bad', data: [1] }]); }
      catch (e) { refused = e.code + ': ' + e.message; }
      let notArray;
      try { await engine.putMany('notes', { id: 'x', data: {} }); } catch (e) { notArray = e.code; }
      let noId;
      try { await engine.putMany('notes', [{ data: {} }]); } catch (e) { noId = e.code + ': ' + e.message; }

      // 600 records: stored in parts of 250 (each part's work in a task of its own), still one
      // transaction. A bad record at index 400 refuses the whole call before any transaction, naming
      // it (a part failing inside the transaction undoes the parts before it: tests/web_store.rs).
      const big = Array.from({ length: 600 }, (_, i) => ({ id: 'b' + i, data: { n: i } }));
      before = count();
      const bigStored = await engine.putMany('notes', big);
      const manyBig = delta(before, count());
      let mapped;
      try {
        await engine.putMany('notes', Array.from({ length: 600 }, (_, i) => ({ id: 'x' + i, data: i === 400 ? { m: new Map() } : { n: i } })));
      } catch (e) { mapped = e.code + ': ' + e.message; }
      const xStored = (await engine.get('notes', 'x0')) !== undefined;
      // The first bad record of the list is named, whatever is wrong with a later one; a hole in a
      // sparse array is a record without an id.
      const code = (p) => p.then(() => 'stored', (e) => e.code + ': ' + e.message);
      const firstBad = await code(engine.putMany('notes', [{ id: 'f0', data: {} }, { id: 'f1', data: { m: new Set() } }, { data: {} }]));
      const hole = await code(engine.putMany('notes', [{ id: 'h0', data: {} }, , { id: 'h2', data: {} }]));
      // A record may nest 120 levels deep, in putMany as in put, and still be read back and sent
      // (the flush below) in what wraps it; 128 was stored once, then could not be read.
      const deep = (n) => { let d = {}; for (let i = 1; i < n; i++) d = { d }; return d; };
      const deepPut = await code(engine.put('notes', 'deep1', deep(120)));
      const deepMany = await code(engine.putMany('notes', [{ id: 'deep2', data: deep(120) }]));
      const tooDeep = [
        await code(engine.put('notes', 'deeper', deep(121))),
        await code(engine.putMany('notes', [{ id: 'deeper', data: deep(121) }])),
        await code(engine.putJson('notes', 'deeper', JSON.stringify(deep(121)))),
        await code(engine.patch('notes', 'deep1', { d: deep(120) })),
      ];
      // Named by its index, before a later record without an id.
      const deepFirst = await code(engine.putMany('notes', [{ id: 'ok2', data: {} }, { id: 'deeper', data: deep(121) }, { data: {} }]));
      // And read back, alone and in a list.
      const deepBack = [(await engine.get('notes', 'deep1'))?.d?.d !== undefined, (await engine.list('notes')).some((r) => r.id === 'deep2')];

      const okStored = (await engine.get('notes', 'ok')) !== undefined;
      const pending = (await engine.status()).pending;
      const report = await engine.flush();
      return {
        put, many, stored: stored.map((r) => [r.id, r.data.n, r.syncStatus]), refused, notArray, noId,
        manyBig, bigStored: [bigStored.length, bigStored[599].id], mapped, xStored, firstBad, hole, deepPut, deepMany, tooDeep, deepFirst, deepBack,
        okStored, pending, pendingAfter: (await engine.status()).pending, report,
      };
      `,
    );
    assert.deepEqual(out.put, { readonly: 0, readwrite: 1 }, 'put: one readwrite transaction');
    assert.deepEqual(out.many, { readonly: 0, readwrite: 1 }, 'putMany of 100: one readwrite transaction');
    assert.equal(out.stored.length, 100);
    assert.deepEqual(out.stored[7], ['m7', 7, 'pending']);
    assert.match(out.refused, /^INVALID_INPUT: .*records\[1\]/);
    assert.equal(out.notArray, 'INVALID_INPUT');
    assert.match(out.noId, /^INVALID_INPUT: .*records\[0\].*id/);
    assert.equal(out.okStored, false, 'the valid entry of a refused batch is not stored');
    assert.deepEqual(out.manyBig, { readonly: 0, readwrite: 1 }, 'putMany of 600, in parts: one readwrite transaction');
    assert.deepEqual(out.bigStored, [600, 'b599']);
    assert.match(out.mapped, /^INVALID_INPUT: .*records\[400\].*Map/);
    assert.equal(out.xStored, false, 'nothing of a refused batch is stored');
    assert.match(out.firstBad, /^INVALID_INPUT: .*records\[1\].*Set/, 'the first bad record, not the later one without an id');
    assert.match(out.hole, /^INVALID_INPUT: .*records\[1\] has no string `id`/);
    assert.deepEqual([out.deepPut, out.deepMany], ['stored', 'stored'], 'as deep in putMany as in put');
    for (const refused of out.tooDeep) assert.match(refused, /^INVALID_INPUT: .*(nested|nests) more than 120/);
    assert.match(out.deepFirst, /^INVALID_INPUT: .*putMany: records\[1\] .*nests more than 120 levels/);
    assert.deepEqual(out.deepBack, [true, true], 'the deepest record the engine takes reads back');
    assert.equal(out.pending, 703);
    assert.equal(out.pendingAfter, 0, JSON.stringify(out.report));
    const onServer = await serverRecords('notes');
    for (const id of ['single', 'm0', 'm99', 'b0', 'b599', 'deep1', 'deep2']) assert.ok(onServer.has(id), `${id} on the server`);
    assert.equal(onServer.get('m42')?.n, 42);
  });
}

for (const browserName of Object.keys(ENGINES)) {
  test(`list() of 4,500 records: read 1,000 per request in one readonly transaction, handed over in parts, all in id order (${browserName})`, async (t) => {
    const out = await inPage(
      t,
      browserName,
      `api-list-${Date.now()}`,
      `
      const ids = Array.from({ length: 4_500 }, (_, i) => 'r' + String(i).padStart(4, '0'));
      // Written in another order than the ids'; one record deleted, one patched.
      await engine.putMany('notes', [...ids].reverse().map((id, i) => ({ id, data: { i } })));
      await engine.delete('notes', 'r0007');
      await engine.patch('notes', 'r4499', { patched: true });
      const before = { ...globalThis.idbTransactions };
      const listed = await engine.list('notes');
      return {
        readonly: globalThis.idbTransactions.readonly - before.readonly,
        count: listed.length,
        inOrder: listed.every((r, k) => k === 0 || listed[k - 1].id < r.id),
        deleted: listed.some((r) => r.id === 'r0007'),
        last: listed.at(-1),
        expected: ids.filter((id) => id !== 'r0007').join() === listed.map((r) => r.id).join(),
      };
      `,
    );
    assert.equal(out.count, 4_499);
    assert.equal(out.inOrder, true);
    assert.equal(out.deleted, false, 'a deleted record is not listed');
    assert.equal(out.expected, true, 'every record, once');
    assert.deepEqual([out.last.id, out.last.data.patched, out.last.data.i], ['r4499', true, 0]);
    assert.equal(out.readonly, 1, 'one readonly transaction for the five pages');
  });
}
