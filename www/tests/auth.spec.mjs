// Signing in, end to end: the engine in Chromium, Firefox and WebKitGTK against the reference server's real token check and
// rate limiter (no injected 401s or 429s). A token that expires in the middle of a flush is replaced
// through `auth()` and the flush goes on; a user over their rate limit gets 429 + Retry-After, the
// engine backs off, and every write arrives exactly once.
import assert from 'node:assert/strict';
import { baseUrl, engineTest, openEngine } from './browser.mjs';
import { api, serverRecords } from './app.mjs';

/**
 * Opens a blank page of the server's origin in a fresh context of `browserName` and runs `source`
 * there with `engine` (autoSync off, batches of `batchSize`) whose `auth()` gets alice a token living
 * `ttlSeconds` (as app.mjs's mintToken does: POST /admin/tokens, the server's admin route, from the
 * page itself: same origin) and records when it was called in `authCalls`.
 */
async function inPage(t, browserName, { ttlSeconds, batchSize }, source) {
  const browser = await openEngine(browserName);
  t.after(() => browser.close());
  const { page } = browser;
  await page.goto(`${baseUrl()}/tests/pages/blank.html`);
  const out = await page.evaluate(
    async ([name, size, body, ttlSeconds]) => {
      const { SyncEngine } = await import('/pkg/index.js');
      const authCalls = [];
      const auth = async () => {
        authCalls.push(Date.now());
        const response = await fetch('/admin/tokens', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ sub: 'alice', ttlSeconds }),
        });
        if (!response.ok) throw new Error(`POST /admin/tokens: ${response.status}`);
        return (await response.json()).token;
      };
      const tier = { intervalMs: 60_000, batchSize: size };
      const engine = await SyncEngine.open({
        name, userId: 'alice', autoSync: false, auth,
        collections: { notes: { endpoint: '/api/notes' } },
        network: { good: tier, fair: tier, poor: tier },
        retry: { baseMs: 50, capMs: 2_000, jitterMs: 10, maxAttempts: 50 },
      });
      try {
        // eslint-disable-next-line no-new-func
        const result = await new Function('engine', `return (async () => { ${body} })()`)(engine);
        return { ...result, authCalls, deadLetters: (await engine.deadLetters()).length };
      } finally {
        engine.close();
      }
    },
    [`auth-${Date.now()}`, batchSize, source, ttlSeconds],
  );
  return out;
}

engineTest('a token that expires in the middle of a flush: the engine asks auth() again, retries, and loses nothing', {}, async (t, engine) => {
  await api('/admin/reset', { method: 'POST' });
  // Every /api/ request takes 700 ms after its token was checked: 5 batches of 2 take 3.5 s, and a
  // 2 s token (exp is whole seconds, so it lives 1 to 2 s) dies before the flush ends.
  await api('/admin/faults', { method: 'POST', body: { latencyMs: 700 } });
  const out = await inPage(t, engine, { ttlSeconds: 2, batchSize: 2 }, `
    for (let i = 0; i < 10; i++) await engine.put('notes', 'n' + i, { i });
    const started = Date.now();
    const report = await engine.flush();
    return { report, started, ended: Date.now() };
  `);
  await api('/admin/faults', { method: 'DELETE' });
  const stats = await api('/admin/stats');
  t.diagnostic(`flush took ${out.ended - out.started} ms; auth() called ${out.authCalls.length} times; ${stats.unauthorized} 401s`);
  assert.equal(out.report.accepted, 10, `one flush delivered everything: ${JSON.stringify(out.report)}`);
  assert.equal(out.report.remaining, 0);
  assert.equal(out.deadLetters, 0);
  assert.ok(stats.unauthorized >= 1, `the server refused the expired token: ${JSON.stringify(stats)}`);
  const during = out.authCalls.filter((at) => at > out.started + 500 && at < out.ended);
  assert.ok(during.length >= 1, `auth() was asked again during the flush: ${JSON.stringify(out)}`);
  assert.equal(out.authCalls.length, 1 + stats.unauthorized, 'one fresh token per refused request');
  const records = await serverRecords('notes');
  assert.equal(records.size, 10);
  const { entries } = await api('/admin/ledger');
  assert.equal(entries.length, 10);
  assert.ok(entries.every((e) => e.deliveries === 1 && e.user === 'alice'), JSON.stringify(entries));
});

engineTest('over its rate limit the engine gets 429 + Retry-After, backs off, and every write arrives once', {}, async (t, engine) => {
  await api('/admin/reset', { method: 'POST' });
  const limits = { user: { perSecond: 2, burst: 2 }, address: { perSecond: 0, burst: 0 } };
  await api('/admin/limits', { method: 'POST', body: limits });
  try {
    const out = await inPage(t, engine, { ttlSeconds: 3600, batchSize: 1 }, `
      for (let i = 0; i < 6; i++) await engine.put('notes', 'r' + i, { i });
      const started = Date.now();
      const first = await engine.flush();
      const flushes = [first];
      while ((await engine.status()).pending > 0 && Date.now() - started < 20_000) {
        await new Promise((r) => setTimeout(r, 200));
        flushes.push(await engine.flush());
      }
      return { first, flushes: flushes.length, took: Date.now() - started, pending: (await engine.status()).pending };
    `);
    const stats = await api('/admin/stats');
    t.diagnostic(`${out.flushes} flushes over ${out.took} ms; ${stats.rateLimited} requests answered 429`);
    assert.equal(out.pending, 0, JSON.stringify(out));
    assert.equal(out.deadLetters, 0);
    assert.ok(out.first.retried >= 1, `the first flush met the limit: ${JSON.stringify(out.first)}`);
    assert.ok(stats.rateLimited >= 1, JSON.stringify(stats));
    // Six writes at 2 a second after a burst of 2: at least 1.5 s however the engine paces them, and
    // Retry-After keeps it from asking again and again in between.
    assert.ok(out.took >= 1_500, `took ${out.took} ms`);
    assert.ok(stats.rateLimited <= 8, `the engine kept hammering: ${stats.rateLimited} requests refused`);
    // Read through the admin routes: a GET of alice's own would count against her limit.
    assert.equal(stats.liveRecords, 6);
    const { entries } = await api('/admin/ledger');
    assert.equal(entries.length, 6);
    assert.ok(entries.every((e) => e.deliveries === 1), JSON.stringify(entries));
  } finally {
    await api('/admin/reset', { method: 'POST' });
  }
});
