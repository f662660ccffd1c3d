// tidesync/react in Chromium, Firefox and WebKitGTK (www/tests/pages/hooks.tsx, production build):
// components re-render when their own data changes, and only then; other tabs' writes reach them too.
import assert from 'node:assert/strict';
import { baseUrl, engineTest, openEngine, screenshot } from './browser.mjs';
import { api, poll, sleep } from './app.mjs';

async function openHooks(context, db) {
  const page = await context.newPage();
  await page.goto(`${baseUrl()}/tests/pages/hooks.html?db=${db}`);
  await page.waitForFunction(() => window.hooks?.engine, null, { timeout: 30_000 });
  return page;
}

/** data-renders of every counted component, by test id. */
const renders = (page) =>
  page.evaluate(() => Object.fromEntries([...document.querySelectorAll('[data-renders]')].map((e) => [e.dataset.testid, Number(e.dataset.renders)])));

/** Waits until no component renders for `quietMs`, then returns the counts. */
async function settled(page, quietMs = 400) {
  let last = JSON.stringify(await renders(page));
  for (;;) {
    await sleep(quietMs);
    const now = JSON.stringify(await renders(page));
    if (now === last) return JSON.parse(now);
    last = now;
  }
}

function changed(before, after) {
  return Object.keys(after).filter((k) => before[k] !== after[k]).sort();
}

engineTest('hooks re-render only the components whose data changed, across tabs too', {}, async (t, engine) => {
  await api('/admin/reset', { method: 'POST' });
  const browser = await openEngine(engine);
  const db = `hooks-${Date.now()}`;
  try {
    const page = await openHooks(browser.context, db);
    await poll('first reads', () => page.evaluate(() => document.querySelectorAll('[data-loading="true"]').length === 0));
    assert.equal(await page.textContent('[data-testid="entity-a-x"]'), 'none');
    let before = await settled(page);

    // A write to a/x: its entity, its collection and the status; not a/y, b/x or collection b.
    await page.evaluate(() => window.hooks.engine.put('a', 'x', { v: 1 }));
    await poll('a/x shown', async () => (await page.textContent('[data-testid="entity-a-x"]')) === '{"v":1}');
    let after = await settled(page);
    assert.deepEqual(changed(before, after), ['collection-a', 'entity-a-x', 'row-a-x', 'status']);

    // A second record: row a/x keeps its identity (React.memo skips it).
    before = after;
    await page.evaluate(() => window.hooks.engine.put('a', 'y', { v: 2 }));
    await poll('a/y shown', async () => (await page.textContent('[data-testid="entity-a-y"]')) === '{"v":2}');
    after = await settled(page);
    assert.deepEqual(changed(before, after), ['collection-a', 'entity-a-y', 'row-a-y', 'status']);

    // Collection b is another key: a write there leaves every a-component alone.
    before = after;
    await page.evaluate(() => window.hooks.engine.put('b', 'x', { w: 1 }));
    await poll('b/x shown', async () => (await page.textContent('[data-testid="entity-b-x"]')) === '{"w":1}');
    after = await settled(page);
    assert.deepEqual(changed(before, after), ['collection-b', 'entity-b-x', 'row-b-x', 'status']);
    assert.equal(after['entity-a-x'], before['entity-a-x']);
    assert.equal(after['collection-a'], before['collection-a']);

    // Events that change nothing a component shows do not render it: a flush with nothing to send.
    await page.evaluate(() => window.hooks.engine.flush());
    await settled(page);
    before = await settled(page);
    await page.evaluate(() => window.hooks.engine.flush());
    after = await settled(page);
    assert.deepEqual(changed(before, after), [], 'an empty flush re-rendered something');
    assert.equal(await page.getAttribute('[data-testid="entity-a-x"]', 'data-status'), 'synced');

    // Another tab of the same database: its write arrives as a remote event.
    const other = await openHooks(browser.context, db);
    before = await settled(page);
    await other.evaluate(() => window.hooks.engine.patch('a', 'x', { v: 3 }));
    await poll('the other tab\'s write', async () => (await page.textContent('[data-testid="entity-a-x"]')) === '{"v":3}');
    after = await settled(page);
    assert.ok(changed(before, after).includes('entity-a-x'));
    assert.ok(!changed(before, after).includes('entity-a-y'));
    assert.equal(await page.getAttribute('[data-testid="status"]', 'data-pending'), '1');
    await screenshot(page, `hooks-render-counts-${engine}`);
  } catch (err) {
    if (browser.logs.length) t.diagnostic(`browser console:\n${browser.logs.join('\n')}`);
    throw err;
  } finally {
    await browser.close();
  }
});

/** How many times each counted component rendered between `before` and `after`. */
const delta = (before, after) => Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - (before[k] ?? 0)]));

engineTest('a write renders its record, its collection and the status once each, and nothing else', {}, async (t, engine) => {
  await api('/admin/reset', { method: 'POST' });
  const browser = await openEngine(engine);
  const db = `hooks-once-${Date.now()}`;
  try {
    const page = await openHooks(browser.context, db);
    await poll('first reads', () => page.evaluate(() => document.querySelectorAll('[data-loading="true"]').length === 0));
    // Counts the status() and list() calls the hooks make from here on.
    await page.evaluate(() => {
      const engine = window.hooks.engine;
      window.calls = { status: 0, list: 0 };
      for (const method of ['status', 'list']) {
        const f = engine[method].bind(engine);
        engine[method] = (...args) => {
          window.calls[method] += 1;
          return f(...args);
        };
      }
    });
    const statusCalls = () => page.evaluate(() => window.calls.status);
    const listCalls = () => page.evaluate(() => window.calls.list);
    // The status renders at most once per write (its storage estimate may move, its counts not).
    const step = async (what, write, shown, { many = false } = {}) => {
      const before = await settled(page);
      await page.evaluate(write);
      await poll(what, () => page.evaluate(shown));
      const d = delta(before, await settled(page));
      if (many) return d;
      assert.ok(d.status <= 1, `${what}: the status rendered ${d.status} times`);
      return { ...d, status: Math.min(d.status, 1) };
    };

    let d = await step('a/x', () => window.hooks.engine.put('a', 'x', { v: 1 }),
      () => document.querySelector('[data-testid="entity-a-x"]').textContent === '{"v":1}');
    assert.deepEqual(d, { 'entity-a-x': 1, 'entity-a-y': 0, 'entity-b-x': 0, 'collection-a': 1, 'collection-b': 0, 'row-a-x': 1, status: 1 });

    // The same record again: once more each; a second record of the collection leaves a/x's row alone.
    // The patch folds into a/x's queued create: the counts stay as they were, so the status renders
    // only if its storage estimate moved (step() allows once). That depends on the engine and the
    // profile (WebKitGTK has no navigator.storage; an in-memory context's estimate may stay put).
    d = await step('a/x patched', () => window.hooks.engine.patch('a', 'x', { v: 2 }),
      () => document.querySelector('[data-testid="entity-a-x"]').textContent === '{"v":2}');
    assert.deepEqual({ ...d, status: 'at most once' }, { 'entity-a-x': 1, 'entity-a-y': 0, 'entity-b-x': 0, 'collection-a': 1, 'collection-b': 0, 'row-a-x': 1, status: 'at most once' });
    d = await step('a/y', () => window.hooks.engine.put('a', 'y', { v: 1 }),
      () => document.querySelector('[data-testid="entity-a-y"]').textContent === '{"v":1}');
    assert.deepEqual(d, { 'entity-a-x': 0, 'entity-a-y': 1, 'entity-b-x': 0, 'collection-a': 1, 'collection-b': 0, 'row-a-x': 0, 'row-a-y': 1, status: 1 });

    // Another collection: nothing of a renders.
    d = await step('b/x', () => window.hooks.engine.put('b', 'x', { w: 1 }),
      () => document.querySelector('[data-testid="entity-b-x"]').textContent === '{"w":1}');
    assert.deepEqual(d, { 'entity-a-x': 0, 'entity-a-y': 0, 'entity-b-x': 1, 'collection-a': 0, 'collection-b': 1, 'row-a-x': 0, 'row-a-y': 0, 'row-b-x': 1, status: 1 });

    // In place and in id order: a record before the others, then one removed.
    const rowIds = (c) => page.evaluate((c) => [...document.querySelectorAll(`[data-testid="collection-${c}"] li`)].map((li) => li.dataset.testid), c);
    d = await step('a/b0', () => window.hooks.engine.put('a', 'b0', { v: 0 }),
      () => document.querySelector('[data-testid="collection-a"]').dataset.count === '3');
    assert.deepEqual(await rowIds('a'), ['row-a-b0', 'row-a-x', 'row-a-y']);
    assert.deepEqual([d['collection-a'], d['row-a-b0'], d['row-a-x'], d['row-a-y'], d['entity-a-x']], [1, 1, 0, 0, 0]);
    d = await step('a/x deleted', () => window.hooks.engine.delete('a', 'x'),
      () => document.querySelector('[data-testid="entity-a-x"]').textContent === 'none');
    assert.deepEqual(await rowIds('a'), ['row-a-b0', 'row-a-y']);
    assert.deepEqual([d['collection-a'], d['entity-a-x'], d['entity-a-y'], d['row-a-b0'], d['row-a-y']], [1, 1, 0, 0, 0]);
    assert.equal(await listCalls(), 0, 'single writes update the lists in place: no list()');

    // A burst: 300 records in one putMany (300 change events at once) is one list() and one
    // render of the collection, one status() call; the a/x row and entity keep theirs.
    let calls = await statusCalls();
    d = await step('300 records', () => window.hooks.engine.putMany('a', Array.from({ length: 300 }, (_, i) => ({ id: `m${String(i).padStart(3, '0')}`, data: { i } }))),
      () => document.querySelector('[data-testid="collection-a"]').dataset.count === '302');
    assert.equal(d['collection-a'], 1, JSON.stringify(d));
    assert.equal(d['entity-a-y'], 0);
    assert.equal(d['row-a-y'], 0);
    assert.equal(d.status, 1);
    assert.equal((await statusCalls()) - calls, 1, 'one status() for the burst');
    assert.equal(await listCalls(), 1, 'one list() for the burst');

    // 100 writes one after the other, each awaited: the status is read at most once per animation
    // frame, not once per write (how many frames pass depends on the machine's load: counted).
    await page.evaluate(() => {
      window.frames_ = 0;
      const tick = () => {
        window.frames_ += 1;
        window.frameLoop = requestAnimationFrame(tick);
      };
      window.frameLoop = requestAnimationFrame(tick);
    });
    calls = await statusCalls();
    d = await step('100 writes', async () => {
      for (let i = 0; i < 100; i++) await window.hooks.engine.put('b', `s${i}`, { i });
    }, () => document.querySelector('[data-testid="collection-b"]').dataset.count === '101', { many: true });
    const statusReads = (await statusCalls()) - calls;
    const frames = await page.evaluate(() => {
      cancelAnimationFrame(window.frameLoop);
      return window.frames_;
    });
    t.diagnostic(`100 sequential writes: ${statusReads} status() calls over ${frames} frames, ${d.status} status renders, ${d['collection-b']} renders of collection b`);
    assert.ok(statusReads <= frames + 1, `${statusReads} status() calls in ${frames} frames`);
    assert.ok(statusReads < 100 || frames >= 100, `${statusReads} status() calls for 100 writes`);
    assert.equal(await page.getAttribute('[data-testid="status"]', 'data-pending'), '403');
    assert.equal(d['collection-a'], 0);
    assert.equal(d['entity-a-y'], 0);
    assert.equal(await listCalls(), 1, 'still one list(): every write of b was read alone');
    const sorted = (ids) => [...ids].sort();
    const [a, b] = [await rowIds('a'), await rowIds('b')];
    assert.equal(b.length, 101);
    assert.deepEqual(b, sorted(b), 'b, put in place one by one, is in id order (s10 before s2)');
    assert.deepEqual(a, sorted(a));

    // A flush answers all 403: every record's syncStatus changes, in one burst per request.
    const before = await settled(page);
    await page.evaluate(() => window.hooks.engine.flush());
    await poll('synced', async () => (await page.getAttribute('[data-testid="entity-a-y"]', 'data-status')) === 'synced');
    d = delta(before, await settled(page));
    const rows = Object.keys(d).filter((k) => k.startsWith('row-'));
    assert.equal(rows.length, 403);
    assert.ok(rows.every((k) => d[k] === 1), 'each row once: its syncStatus changed');
    assert.deepEqual([d['entity-a-y'], d['collection-a'], d['collection-b']], [1, 1, 1]);
    assert.equal(await listCalls(), 3, 'one list() per collection for the flush (403 changes at once)');
    assert.equal(await page.getAttribute('[data-testid="status"]', 'data-pending'), '0');
  } catch (err) {
    if (browser.logs.length) t.diagnostic(`browser console:\n${browser.logs.join('\n')}`);
    throw err;
  } finally {
    await browser.close();
  }
});
