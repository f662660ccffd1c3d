// tidesync/devtools in Chromium, Firefox and WebKitGTK (www/tests/pages/devtools.tsx, production build, importing
// `tidesync/devtools` as an app would): <SyncDevtools> over an engine syncing with the reference
// server. Every step goes through the panel's own buttons where it has one: the queue while the
// offline fault is on, a manual conflict shown base / local / server and resolved with merged JSON,
// a dead letter retried, the event log, the fault controls, and the push channel section.
import assert from 'node:assert/strict';
import { baseUrl, engineTest, openEngine, screenshot } from './browser.mjs';
import { api, poll, serverRecords, tid, waitText } from './app.mjs';

const NOTES = 'notes';

async function openDevtools(browser, query = '') {
  const { page } = browser;
  page.on('dialog', (d) => d.accept());
  await page.setViewportSize({ width: 900, height: 1400 });
  await page.goto(`${baseUrl()}/tests/pages/devtools.html?db=devtools-${Date.now()}${query}`);
  await page.waitForFunction(() => window.devtools?.engine, null, { timeout: 30_000 });
  await page.waitForSelector(tid('sync-devtools'));
  return page;
}


async function withDevtools(t, engine, query, body) {
  await api('/admin/reset', { method: 'POST' });
  const browser = await openEngine(engine);
  try {
    const page = await openDevtools(browser, query);
    await body(page);
    await screenshot(page, t.name.replace(/\W+/g, '-'));
  } catch (err) {
    await screenshot(browser.page, `${t.name.replace(/\W+/g, '-')}-failed`).catch(() => {});
    if (browser.logs.length) t.diagnostic(`browser console:\n${browser.logs.join('\n')}`);
    throw err;
  } finally {
    await browser.close();
  }
}

engineTest('devtools: the queue while offline, a conflict side by side resolved with merged JSON, a dead letter retried, the event log', {}, async (t, engine) => {
  await withDevtools(t, engine, '', async (page) => {
    // The app's own controls (children) sit with the fault buttons; no push channel on this engine.
    await page.waitForSelector(`${tid('faults')} ${tid('app-control')}`);
    await waitText(page, tid('realtime-off'), 'not enabled');

    // A write shows in the queue; "Sync now" sends it.
    await page.evaluate(() => window.devtools.engine.put('notes', 'n1', { title: 'Shopping', body: 'milk' }));
    await waitText(page, tid('queue-count'), '1');
    assert.match(await page.textContent(`${tid('queue-row')}[data-entity="n1"]`), /create notes\/n1/);
    await page.click(tid('force-sync'));
    await waitText(page, tid('queue-count'), '0');
    assert.equal((await serverRecords(NOTES)).get('n1')?.body, 'milk');

    // Offline fault on: the next write waits in the queue, and "Sync now" cannot send it.
    await page.click(tid('toggle-offline'));
    await waitText(page, tid('toggle-offline'), 'Go online');
    await waitText(page, tid('devtools-online'), 'offline');
    assert.equal((await page.evaluate(() => window.devtools.engine.setFaults({}))).offline, true);
    await page.evaluate(() => window.devtools.engine.patch('notes', 'n1', { body: 'milk, eggs' }));
    await waitText(page, tid('queue-count'), '1');
    await page.click(tid('force-sync'));
    await page.waitForSelector(`${tid('event-log')} li[data-type="sync"]`);
    await waitText(page, tid('queue-count'), '1');
    const row = await page.textContent(`${tid('queue-row')}[data-entity="n1"]`);
    assert.match(row, /update notes\/n1/);
    assert.equal((await serverRecords(NOTES)).get('n1')?.body, 'milk', 'an offline write reached the server');
    await screenshot(page, `devtools-offline-queue-${engine}`);

    // Another device changes the note on the server; back online, the write meets it: 'manual'.
    await api(`/api/${NOTES}/n1`, { method: 'PATCH', body: { body: 'bread' } });
    await page.click(tid('toggle-offline'));
    await waitText(page, tid('toggle-offline'), 'Go offline');
    await waitText(page, tid('conflict-count'), '1');
    const conflict = `${tid('conflict')}[data-entity="n1"]`;
    const side = async (name) => JSON.parse(await page.textContent(`${conflict} ${tid(`conflict-${name}`)}`));
    assert.deepEqual(await side('base'), { title: 'Shopping', body: 'milk' });
    assert.deepEqual(await side('local'), { title: 'Shopping', body: 'milk, eggs' });
    assert.deepEqual(await side('server'), { title: 'Shopping', body: 'bread' });
    // The proposal: both changed the body, so both texts.
    assert.deepEqual(JSON.parse(await page.inputValue(`${conflict} ${tid('conflict-merged')}`)), { title: 'Shopping', body: 'bread\nmilk, eggs' });
    await page.waitForSelector(`${tid('event-log')} li[data-type="conflict"]`);
    await screenshot(page, `devtools-conflict-${engine}`);

    // Not JSON: the merged button says so; then the edited record resolves the conflict.
    await page.fill(`${conflict} ${tid('conflict-merged')}`, '{"title": ');
    assert.equal(await page.isDisabled(`${conflict} ${tid('resolve-merged')}`), true);
    await page.fill(`${conflict} ${tid('conflict-merged')}`, JSON.stringify({ title: 'Shopping', body: 'bread, milk, eggs' }));
    await page.click(`${conflict} ${tid('resolve-merged')}`);
    await waitText(page, tid('conflict-count'), '0');
    assert.equal(await page.$(conflict), null);
    await page.waitForSelector(`${tid('event-log')} li[data-type="resolved"]`);
    await page.click(tid('force-sync'));
    await poll('the merged note on the server', async () => (await serverRecords(NOTES)).get('n1')?.body === 'bread, milk, eggs');
    await waitText(page, tid('queue-count'), '0');

    // The next request fails with 400 (set in the panel): the write is dead-lettered.
    await page.fill(tid('fail-count'), '1');
    await page.fill(tid('fail-status'), '400');
    await page.click(tid('fail-next'));
    await waitText(page, tid('armed'), 'next 1 request(s) fail with 400');
    await page.evaluate(() => window.devtools.engine.put('notes', 'n2', { title: 'Refused once', body: '' }));
    await page.click(tid('force-sync'));
    await waitText(page, tid('dead-letter-count'), '1');
    const letter = `${tid('dead-letter')}[data-entity="n2"]`;
    assert.match(await page.textContent(letter), /create notes\/n2.*HTTP 400/);
    await waitText(page, tid('queue-count'), '0');
    assert.equal(await page.$(tid('armed')), null, 'the armed failure was used');
    await page.waitForSelector(`${tid('event-log')} li[data-type="deadLetter"]`);
    assert.equal((await serverRecords(NOTES)).has('n2'), false);
    await screenshot(page, `devtools-dead-letter-${engine}`);

    // Retry: back in the queue, then on the server.
    await page.click(`${letter} ${tid('retry-dead-letter')}`);
    await waitText(page, tid('dead-letter-count'), '0');
    await waitText(page, tid('queue-count'), '1');
    await page.click(tid('force-sync'));
    await waitText(page, tid('queue-count'), '0');
    await poll('n2 on the server', async () => (await serverRecords(NOTES)).get('n2')?.title === 'Refused once');

    // The event log heard all of it; onFaultsChange heard every fault change.
    const types = new Set(await page.$$eval(`${tid('event-log')} li`, (lis) => lis.map((li) => li.dataset.type)));
    for (const type of ['change', 'sync', 'conflict', 'resolved', 'deadLetter']) assert.ok(types.has(type), `no ${type} event in the log`);
    const faults = await page.evaluate(() => window.devtools.faults);
    assert.ok(faults.some((f) => f.offline), JSON.stringify(faults));
    assert.ok(faults.some((f) => f.failNext === 1 && f.failStatus === 400), JSON.stringify(faults));
    assert.deepEqual(faults.at(-1), { offline: false, failNext: 0, failStatus: 400, latencyMs: 0 });

    // The chart sampled the pending writes and the requests sent.
    await poll('requests in the chart', async () => Number((await page.textContent(tid('chart-requests-total'))).match(/\d+/)?.[0]) > 0);
    assert.match(await page.getAttribute(tid('chart-pending'), 'points'), /^[\d.]+,[\d.]+( [\d.]+,[\d.]+)*$/);

    await page.click(tid('clear-events'));
    await waitText(page, tid('event-count'), '0');
  });
});

engineTest('devtools with the engine as a prop: latency, clear faults, clear the queue', {}, async (t, engine) => {
  await withDevtools(t, engine, '&mode=prop', async (page) => {
    assert.equal(await page.$(tid('app-control')), null);
    await page.click(tid('toggle-latency'));
    await waitText(page, tid('toggle-latency'), 'Remove latency (800 ms)');
    await page.click(tid('toggle-offline'));
    await waitText(page, tid('toggle-offline'), 'Go online');
    for (const id of ['a', 'b']) await page.evaluate((i) => window.devtools.engine.put('notes', i, { title: i, body: '' }), id);
    await waitText(page, tid('queue-count'), '2');
    assert.equal(await page.$$eval(tid('queue-row'), (rows) => rows.length), 2);

    // "Clear queue" asks first (the spec accepts); the writes are gone for good.
    await page.click(tid('clear-queue'));
    await waitText(page, tid('queue-count'), '0');
    await page.waitForSelector(`${tid('event-log')} li[data-type="queueCleared"]`);

    await page.click(tid('clear-faults'));
    await waitText(page, tid('toggle-offline'), 'Go offline');
    await waitText(page, tid('toggle-latency'), 'Add 800 ms latency');
    assert.deepEqual(await page.evaluate(() => window.devtools.engine.setFaults({})), { offline: false, failNext: 0, failStatus: 0, latencyMs: 0 });
    assert.equal((await serverRecords(NOTES)).size, 0);
  });
});

engineTest('devtools without debug: true says why the fault buttons are off; the push channel shows realtimeStatus()', {}, async (t, engine) => {
  await withDevtools(t, engine, '&mode=prop&debug=0&realtime=1', async (page) => {
    await page.waitForSelector(tid('debug-hint'));
    assert.match(await page.textContent(tid('debug-hint')), /debug: true/);
    for (const id of ['toggle-offline', 'fail-next', 'toggle-latency', 'clear-faults', 'clear-queue']) {
      assert.equal(await page.isDisabled(tid(id)), true, `${id} is enabled without debug: true`);
    }
    // Sending does not need debug.
    await page.evaluate(() => window.devtools.engine.put('notes', 'n1', { title: 'x', body: '' }));
    await waitText(page, tid('queue-count'), '1');
    await page.click(tid('force-sync'));
    await waitText(page, tid('queue-count'), '0');

    // Every field realtimeStatus() has, as key and value; read again on each `realtime` event.
    await waitText(page, tid('realtime-state'), 'connecting');
    await waitText(page, tid('realtime-kind'), 'sse');
    await waitText(page, tid('realtime-leader'), 'true');
    assert.equal(await page.$(tid('realtime-off')), null);
    const at = Date.now();
    await page.evaluate((t0) => window.devtools.realtime({ state: 'open', reconnects: 2, lastEventAt: t0, lastMessage: { type: 'changed', collection: 'notes' } }), at);
    await waitText(page, tid('realtime-state'), 'open');
    await waitText(page, tid('realtime-reconnects'), '2');
    assert.equal(await page.textContent(tid('realtime-lastMessage')), '{"type":"changed","collection":"notes"}');
    assert.match(await page.textContent(tid('realtime-lastEventAt')), /\d+:\d+:\d+.*ago/);
    assert.equal(await page.getAttribute(tid('realtime-status'), 'data-state'), 'open');
    await page.waitForSelector(`${tid('event-log')} li[data-type="realtime"]`);
  });
});
