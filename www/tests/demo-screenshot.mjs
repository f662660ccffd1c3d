// Makes docs/demo.png: the demo with its debug panel showing a conflict, a dead letter, queued writes
// and the chart. Not a spec; run it against a served demo (scripts/test's js tier setup, or make demo):
//   TIDESYNC_URL=http://127.0.0.1:8080 node www/tests/demo-screenshot.mjs
import { fileURLToPath } from 'node:url';
import { launch } from './browser.mjs';
import { api, sleep, tid, waitText } from './app.mjs';

const url = process.env.TIDESYNC_URL.replace(/\/$/, '');
await api('/admin/reset', { method: 'POST' });
const browser = await launch();
const open = async (device, page) => {
  page ??= await browser.context.newPage();
  await page.setViewportSize({ width: 1440, height: 900 });
  page.on('dialog', (d) => d.accept());
  await page.goto(`${url}/?device=${device}&user=alice`);
  await page.waitForSelector('body[data-ready="true"]');
  return page;
};
const grade = (page, card, g) => page.click(`${tid('card', card)} ${tid(`grade-${g}`)}`);
const toggleOffline = async (page, want) => {
  await page.click(tid('toggle-offline'));
  await waitText(page, tid('online-state'), (s) => (want ? s === 'offline' : s !== 'offline'));
};
try {
  const a = await open('a', browser.page);
  const b = await open('b');
  for (const [card, g] of [['te-iru', 3], ['nagara', 2], ['bakari', 1], ['ta-koto-ga-aru', 3]]) {
    await grade(a, card, g);
    await sleep(700);
  }
  await a.fill(tid('new-title'), 'Shopping list');
  await a.click(tid('add'));
  const id = await a.locator(tid('note-row'), { hasText: 'Shopping list' }).getAttribute('data-id');
  await waitText(b, `${tid('note-row', id)} ${tid('note-status')}`, 'synced');

  await toggleOffline(a, true);
  await a.fill(`${tid('note-row', id)} ${tid('note-body')}`, 'milk, eggs');
  await a.click(`${tid('note-row', id)} ${tid('note-save')}`);
  await b.fill(`${tid('note-row', id)} ${tid('note-body')}`, 'bread');
  await b.click(`${tid('note-row', id)} ${tid('note-save')}`);
  await waitText(b, `${tid('note-row', id)} ${tid('note-status')}`, 'synced');
  await toggleOffline(a, false);
  await waitText(a, tid('conflict-count'), '1');

  await a.click(tid('toggle-latency'));
  await a.click(tid('reject-next-write'));
  await grade(a, 'sou-da', 2);
  await waitText(a, tid('dead-letter-count'), (n) => n !== '0');
  await sleep(3000);
  await a.click(tid('toggle-latency'));
  await toggleOffline(a, true);
  await grade(a, 'temo-ii', 3);
  await grade(a, 'you-ni-suru', 1);
  await sleep(4000);
  const out = fileURLToPath(new URL('../../docs/demo.png', import.meta.url));
  await a.screenshot({ path: out, fullPage: true });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
}
