// Helpers for the specs that drive the demo app (www/app) and the package pages: a fresh server
// state and browser profile per test, one page per "device" (?device=a gets its own database, so
// two pages are two devices syncing through the server), console logs and screenshots kept in
// www/test-results/ (each test's final screens, and the moments worth seeing).
import assert from 'node:assert/strict';
import { baseUrl, openEngine, screenshot } from './browser.mjs';

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Signs in as a demo user (the server runs with --demo-users: each password is the name). */
export async function signIn(user = 'alice') {
  const response = await fetch(`${baseUrl()}/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: user, password: user }),
  });
  const text = await response.text();
  assert.equal(response.status, 200, `sign-in as ${user}: ${text}`);
  return JSON.parse(text).token;
}

/**
 * A token from the server's admin route (--admin): any user, any lifetime (`ttlSeconds` may be
 * 1 for a token that dies mid-test, or negative for one already expired).
 */
export async function mintToken(sub = 'alice', ttlSeconds) {
  return (await api('/admin/tokens', { method: 'POST', body: { sub, ttlSeconds } })).token;
}

const tokens = new Map();

/** A token for `user`, signed in once per process (tokens live an hour). */
export async function tokenFor(user = 'alice') {
  if (!tokens.has(user)) tokens.set(user, await signIn(user));
  return tokens.get(user);
}

/** Calls the server; `/api/` requests carry `as`'s token (alice's unless told). */
export async function api(path, { method = 'GET', body, as = 'alice' } = {}) {
  const headers = body === undefined ? {} : { 'content-type': 'application/json' };
  if (path.startsWith('/api/')) headers.authorization = `Bearer ${await tokenFor(as)}`;
  const response = await fetch(`${baseUrl()}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
  return JSON.parse(text);
}

/** A user's live records of a collection on the server (alice's unless told): id -> data. */
export async function serverRecords(collection, as = 'alice') {
  const body = await api(`/api/${collection}`, { as });
  return new Map(body.items.map((r) => [r.entityId, r.data]));
}

/** Polls `fn` until it returns something truthy; fails with `what` and the last value at the deadline. */
export async function poll(what, fn, { timeoutMs = 15_000, everyMs = 100 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
    await sleep(everyMs);
  }
}

/** `[data-testid="id"]`, optionally scoped: `tid('card', 'te-iru')` is the card with data-id te-iru. */
export function tid(id, dataId) {
  return dataId === undefined ? `[data-testid="${id}"]` : `[data-testid="${id}"][data-id="${dataId}"]`;
}

/** Waits until the element's text (or an input's value) satisfies `want` (a string or a predicate). */
export async function waitText(page, selector, want, timeoutMs = 15_000) {
  const ok = typeof want === 'function' ? want : (t) => t === want;
  const [text] = await poll(`${selector} to read ${typeof want === 'function' ? 'as expected' : JSON.stringify(want)}`, async () => {
    const t = await page.evaluate((s) => {
      const el = document.querySelector(s);
      return el ? ('value' in el && el.tagName !== 'BUTTON' ? el.value : el.textContent) : null;
    }, selector);
    return t !== null && ok(t) ? [t] : false;
  }, { timeoutMs });
  return text;
}

/**
 * Runs `body(env)` against an empty server with a fresh context of `engine` (browser.mjs's
 * openEngine: Chromium unless told). `env.open(device)` opens the demo as that device in a new
 * window; `env.shot(name)` saves every window's screenshot.
 */
export async function withApp(t, body, engine = 'Chromium') {
  await api('/admin/reset', { method: 'POST' });
  const browser = await openEngine(engine);
  const { context } = browser;
  const logs = [];
  const pages = new Map();
  const slug = (s) => s.replace(/\W+/g, '-');
  const env = {
    context,
    logs,
    async open(device, { query = '', page } = {}) {
      page ??= pages.size === 0 ? browser.page : await context.newPage();
      await page.setViewportSize({ width: 1400, height: 1000 });
      pages.set(device, page);
      page.on('console', (m) => logs.push(`[${device} console.${m.type()}] ${m.text()}`));
      page.on('pageerror', (e) => logs.push(`[${device} pageerror] ${e.stack ?? e}`));
      page.on('dialog', (d) => d.accept());
      // Signed in as alice unless the query names another demo user.
      const user = query.includes('user=') ? '' : '&user=alice';
      await page.goto(`${baseUrl()}/?device=${device}${user}${query}`);
      await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });
      return page;
    },
    async shot(name) {
      for (const [device, page] of pages) await screenshot(page, slug(`${t.name}-${name}-${device}`));
    },
  };
  try {
    await body(env);
    await env.shot('end');
  } catch (err) {
    await env.shot('failed').catch(() => {});
    if (logs.length) t.diagnostic(`browser console:\n${logs.join('\n')}`);
    throw err;
  } finally {
    await browser.close();
  }
}
