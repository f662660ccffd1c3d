// End to end: the demo app (www/app, React + tidesync/react) in Chromium, Firefox and WebKitGTK
// against the reference server. Two windows with ?device=a and ?device=b have their own databases: two devices that see
// each other's edits only through the server (the background round pulls every 2 s).
import assert from 'node:assert/strict';
import { poll, serverRecords, sleep, tid, waitText, withApp } from './app.mjs';
import { engineTest } from './browser.mjs';

const card = (page, id) => `${tid('card', id)}`;

async function grade(page, cardId, g) {
  await page.click(`${card(page, cardId)} ${tid(`grade-${g}`)}`);
}

async function setOffline(page, offline) {
  const button = page.locator(tid('toggle-offline'));
  await button.waitFor();
  if ((await button.textContent()) === (offline ? 'Go offline' : 'Go online')) await button.click();
  await waitText(page, tid('online-state'), (s) => (offline ? s === 'offline' : s !== 'offline'));
}

engineTest('cards graded offline sync to a second device once back online', {}, async (t, engine) => {
  await withApp(t, async ({ open, shot }) => {
    const a = await open('a');
    const b = await open('b');

    await setOffline(a, true);
    await grade(a, 'te-iru', 3);
    await grade(a, 'nagara', 1);
    await waitText(a, `${card(a, 'te-iru')} ${tid('card-grade')}`, 'grade 3');
    await waitText(a, `${card(a, 'nagara')} ${tid('card-grade')}`, 'grade 1');
    await waitText(a, `${card(a, 'te-iru')} ${tid('card-status')}`, 'pending');
    await waitText(a, tid('pending-count'), (n) => Number(n) >= 2);
    await shot('offline');

    // Nothing left device a: the server and device b have no progress yet.
    assert.equal((await serverRecords('progress')).size, 0);
    assert.equal(await b.textContent(`${card(b, 'te-iru')} ${tid('card-grade')}`), 'not studied');

    await setOffline(a, false);
    await waitText(a, tid('pending-count'), '0');
    await waitText(a, `${card(a, 'te-iru')} ${tid('card-status')}`, 'synced');
    const progress = await serverRecords('progress');
    assert.equal(progress.get('te-iru')?.grade, 3);
    assert.equal(progress.get('nagara')?.grade, 1);

    // Device b pulls them in its next background round.
    await waitText(b, `${card(b, 'te-iru')} ${tid('card-grade')}`, 'grade 3');
    await waitText(b, `${card(b, 'nagara')} ${tid('card-grade')}`, 'grade 1');
    await waitText(b, tid('stat-cards'), '2');
    await shot('synced');
  }, engine);
});

engineTest('signed in as bob, the demo never shows alice\'s grades; alice\'s other device does', {}, async (t, engine) => {
  await withApp(t, async ({ open, shot }) => {
    const alice = await open('a');
    const bob = await open('b', { query: '&user=bob' });
    const aliceAgain = await open('c');
    assert.equal(await bob.textContent(tid('user')), 'bob');
    await grade(alice, 'te-iru', 3);
    await waitText(alice, `${card(alice, 'te-iru')} ${tid('card-status')}`, 'synced');
    // Alice's second device pulls it: pulls work, so bob's silence below means something.
    await waitText(aliceAgain, `${card(aliceAgain, 'te-iru')} ${tid('card-grade')}`, 'grade 3');
    await bob.click(tid('force-sync'));
    await sleep(2_500);
    assert.equal(await bob.textContent(`${card(bob, 'te-iru')} ${tid('card-grade')}`), 'not studied');
    assert.equal((await serverRecords('progress', 'alice')).get('te-iru')?.grade, 3);
    assert.equal((await serverRecords('progress', 'bob')).size, 0);
    await shot('two-users');
  }, engine);
});

engineTest('two tabs of one device update each other at once, before the server has anything', {}, async (t, engine) => {
  await withApp(t, async ({ open }) => {
    const tab1 = await open('c');
    const tab2 = await open('c');
    // Only tab1's engine is offline; tab2's may flush the shared queue, so hold it back too.
    await setOffline(tab1, true);
    await setOffline(tab2, true);
    await grade(tab1, 'bakari', 2);
    await waitText(tab2, `${card(tab2, 'bakari')} ${tid('card-grade')}`, 'grade 2', 5_000);
    await waitText(tab2, tid('stat-cards'), '1', 5_000);
    assert.equal((await serverRecords('progress')).size, 0);
  }, engine);
});

engineTest('a conflict between two devices is resolved in the debug panel', {}, async (t, engine) => {
  await withApp(t, async ({ open, shot }) => {
    const a = await open('a');
    const b = await open('b');

    await a.fill(tid('new-title'), 'Shared note');
    await a.click(tid('add'));
    const rowA = a.locator(tid('note-row'), { hasText: 'Shared note' });
    await rowA.waitFor();
    const id = await rowA.getAttribute('data-id');
    await waitText(a, `${tid('note-row', id)} ${tid('note-status')}`, 'synced');
    await waitText(b, `${tid('note-row', id)} ${tid('note-status')}`, 'synced');

    // Device a edits offline; device b edits the same note and syncs first.
    await setOffline(a, true);
    await a.fill(`${tid('note-row', id)} ${tid('note-body')}`, 'milk (from a)');
    await a.click(`${tid('note-row', id)} ${tid('note-save')}`);
    await waitText(a, `${tid('note-row', id)} ${tid('note-status')}`, 'pending');
    await b.fill(`${tid('note-row', id)} ${tid('note-body')}`, 'bread (from b)');
    await b.click(`${tid('note-row', id)} ${tid('note-save')}`);
    await waitText(b, `${tid('note-row', id)} ${tid('note-status')}`, 'synced');

    // Back online, a's write meets b's: notes are merged 'manual', so the panel asks.
    await setOffline(a, false);
    await waitText(a, tid('conflict-count'), '1');
    const conflict = `${tid('conflict')}[data-entity="${id}"]`;
    assert.match(await a.textContent(`${conflict} ${tid('conflict-local')}`), /milk \(from a\)/);
    assert.match(await a.textContent(`${conflict} ${tid('conflict-server')}`), /bread \(from b\)/);
    const merged = JSON.parse(await a.inputValue(`${conflict} ${tid('conflict-merged')}`));
    assert.equal(merged.body, 'bread (from b)\nmilk (from a)');
    await waitText(a, `${tid('note-row', id)} ${tid('note-status')}`, 'conflict');
    await waitText(a, tid('badge-conflicts'), (s) => s.startsWith('1'));
    await shot('conflict');

    await a.click(`${conflict} ${tid('resolve-merged')}`);
    await waitText(a, tid('conflict-count'), '0');
    await waitText(a, `${tid('note-row', id)} ${tid('note-status')}`, 'synced');
    await poll('the merged note on the server', async () => (await serverRecords('notes')).get(id)?.body === merged.body);
    await waitText(b, `${tid('note-row', id)} ${tid('note-body')}`, merged.body);
    const audit = await a.evaluate(() => window.syncDebug.auditLog());
    assert.ok(audit.some((e) => e.how === 'manual' && e.id === id && e.result.body === merged.body), JSON.stringify(audit));
  }, engine);
});

engineTest('a write the server refused is retried from the dead-letter list', {}, async (t, engine) => {
  await withApp(t, async ({ open, shot }) => {
    const a = await open('a');
    const b = await open('b');
    // The demo answers the next write request with a 400 (a validation error of the backend).
    await a.click(tid('reject-next-write'));
    await a.waitForSelector(tid('rejecting'));
    const rejected = 'sou-da';
    await grade(a, rejected, 2);
    await waitText(a, `${card(a, rejected)} ${tid('card-status')}`, 'error');
    const letter = `${tid('dead-letter')}[data-entity="${rejected}"]`;
    await a.waitForSelector(letter);
    assert.match(await a.textContent(letter), /HTTP 400/);
    assert.equal(await a.$(tid('rejecting')), null);
    await waitText(a, tid('badge-dead'), (s) => /failed/.test(s));
    assert.equal((await serverRecords('progress')).has(rejected), false);
    await shot('dead-letter');

    // Retry every dead letter (the stats write may have been in the same request).
    for (;;) {
      const retry = a.locator(`${tid('dead-letter')} ${tid('retry-dead-letter')}`).first();
      if ((await retry.count()) === 0) break;
      await retry.click();
      await sleep(200);
    }
    await waitText(a, tid('dead-letter-count'), '0');
    await waitText(a, `${card(a, rejected)} ${tid('card-status')}`, 'synced');
    assert.equal((await serverRecords('progress')).get(rejected)?.grade, 2);
    await waitText(b, `${card(b, rejected)} ${tid('card-grade')}`, 'grade 2');
  }, engine);
});
