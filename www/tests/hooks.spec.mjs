// tidesync/react in Chromium (www/tests/pages/hooks.tsx, production build): components re-render
// when their own data changes, and only then; other tabs' writes reach them too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { baseUrl, launch, screenshot } from './browser.mjs';
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

test('hooks re-render only the components whose data changed, across tabs too', async (t) => {
  await api('/admin/reset', { method: 'POST' });
  const browser = await launch();
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
    await screenshot(page, 'hooks-render-counts');
  } catch (err) {
    if (browser.logs.length) t.diagnostic(`browser console:\n${browser.logs.join('\n')}`);
    throw err;
  } finally {
    await browser.close();
  }
});
