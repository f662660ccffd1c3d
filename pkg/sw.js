// tidesync/sw: drain the write queue from a service worker (Background Sync).
//
// In your service worker (registered with `{ type: 'module' }`):
//
//   import { handleBackgroundSync } from 'tidesync/sw';
//   handleBackgroundSync({ name: 'study', baseUrl: 'https://api.example.com',
//                          collections: { progress: { endpoint: '/api/progress' } } });
//
// Pages register the tag `tidesync:{name}:{userId}:sync` whenever writes are pending; the tag
// names the user, so the worker opens that user's database without knowing who is signed in.
import init, { SyncEngine } from './tidesync.js';

/** The user id a sync tag belongs to, or `null` if the tag is not this app's. */
export function userOfTag(tag, name) {
  const prefix = `tidesync:${name}:`;
  if (typeof tag !== 'string' || !tag.startsWith(prefix) || !tag.endsWith(':sync')) return null;
  return tag.slice(prefix.length, -':sync'.length);
}

/**
 * Flushes until the queue is empty, waiting out retry delays within `budgetMs`. Rejects when
 * writes are still pending (offline, or retries due later), so the browser retries the sync event.
 */
export async function drain(options, budgetMs = 25_000) {
  await init();
  const engine = await SyncEngine.open({ ...options, autoSync: false });
  const deadline = Date.now() + budgetMs;
  try {
    for (;;) {
      const report = await engine.flush();
      // Nothing left, or only writes paused by conflicts the app has to resolve.
      if (report.remaining === 0 || report.nextAttemptAt == null) return report;
      if (report.offline) throw new Error('tidesync: offline; the browser will retry this sync');
      const wait = Math.max(report.nextAttemptAt - Date.now(), 10);
      if (Date.now() + wait > deadline) {
        throw new Error(`tidesync: ${report.remaining} writes still pending; the browser will retry this sync`);
      }
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  } finally {
    engine.close();
  }
}

/** Wires the `sync` event: each of this app's tags drains that user's queue. */
export function handleBackgroundSync(options, { budgetMs = 25_000 } = {}) {
  self.addEventListener('sync', (event) => {
    const userId = userOfTag(event.tag, options.name);
    if (userId === null) return;
    event.waitUntil(drain({ ...options, userId }, budgetMs));
  });
}
