// End to end, the shortest path: the demo app (www/app, React + tidesync/react) writes a note to
// IndexedDB through tidesync, the engine syncs it to the reference server, and the server has it.
// It signs in through the app's form as alice, one of the two demo users; bob never sees her note.
// In Chromium, Firefox and WebKitGTK.
// The longer stories (offline, two devices, conflicts, dead letters) are in e2e.spec.mjs.
import assert from 'node:assert/strict';
import { api } from './app.mjs';
import { baseUrl, engineTest, openEngine, screenshot } from './browser.mjs';

/** Runs `body(page)` in a fresh context of `engine`; its screenshot and console kept. */
async function withDemo(t, engine, body) {
  const browser = await openEngine(engine);
  try {
    await body(browser.page);
  } finally {
    await screenshot(browser.page, t.name.replace(/\W+/g, '-')).catch(() => {});
    if (browser.logs.length) t.diagnostic(`page console:\n${browser.logs.join('\n')}`);
    await browser.close();
  }
}

// The server's list answer: an array, or an object holding one under `items`; each record carries its
// id and data either on top or as `entityId` / `data`.
function findRecord(body, id) {
  const items = Array.isArray(body) ? body : body.items;
  assert.ok(Array.isArray(items), `unexpected /api/notes answer: ${JSON.stringify(body)}`);
  const record = items.find((r) => (r.entityId ?? r.id) === id);
  return record && { ...record, data: record.data ?? record };
}

engineTest('signed in as alice, a note added in the demo syncs to her records on the server, not bob\'s', {}, (t, engine) => withDemo(t, engine, async (page) => {
  await page.goto(`${baseUrl()}/`);
  await page.waitForSelector('body[data-ready="sign-in"]', { timeout: 30_000 });
  await page.fill('[data-testid="sign-in-user"]', 'alice');
  await page.fill('[data-testid="sign-in-password"]', 'wrong');
  await page.click('[data-testid="sign-in-submit"]');
  await page.waitForSelector('[data-testid="sign-in-error"]', { timeout: 10_000 });
  await page.fill('[data-testid="sign-in-password"]', 'alice');
  await page.click('[data-testid="sign-in-submit"]');
  await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });
  assert.equal(await page.textContent('[data-testid="user"]'), 'alice');

  const title = `first note ${Date.now()}`;
  await page.fill('[data-testid="new-title"]', title);
  await page.click('[data-testid="add"]');

  const row = page.locator('[data-testid="note-row"]', { hasText: title });
  await row.waitFor({ timeout: 10_000 });
  const id = await row.getAttribute('data-id');
  assert.match(id, /^[0-9a-f-]{36}$/);

  await page.waitForFunction(
    (noteId) => document.querySelector(`[data-testid="note-row"][data-id="${noteId}"] [data-testid="note-status"]`)
      ?.textContent === 'synced',
    id,
    { timeout: 30_000 },
  );
  await page.waitForFunction(
    () => document.querySelector('[data-testid="pending-count"]').textContent === '0',
    null,
    { timeout: 10_000 },
  );

  const record = findRecord(await api('/api/notes', { as: 'alice' }), id);
  assert.ok(record, `note ${id} is not on the server`);
  assert.equal(record.data.title, title);
  assert.equal(findRecord(await api('/api/notes', { as: 'bob' }), id), undefined, 'bob must not see alice\'s note');
  const anonymous = await fetch(`${baseUrl()}/api/notes`);
  assert.equal(anonymous.status, 401);
}));
