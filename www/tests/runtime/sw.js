// The module service worker of www/tests/runtime: drains tidesync's queue on Background Sync
// (tags `tidesync:rt:{userId}:sync`), with the same fast retry settings as page.js.
import { handleBackgroundSync } from '/pkg/sw.js';
import { signIn, withSource } from './auth.js';

// The worker's batch requests say so to the spec's recording proxy.
const realFetch = self.fetch;
self.fetch = (input, init) => {
  const request = new Request(input, init);
  return realFetch(request.url.endsWith('/api/sync/batch') ? withSource(request, 'sw') : request);
};

const tier = { intervalMs: 200, batchSize: 4 };
handleBackgroundSync(
  {
    name: 'rt',
    baseUrl: self.location.origin,
    // The worker has no access to the page's memory: it signs in itself.
    auth: () => signIn(),
    collections: { notes: { endpoint: '/api/notes' } },
    network: { good: tier, fair: tier, poor: tier },
    retry: { baseMs: 50, capMs: 200, jitterMs: 10, maxAttempts: 50 },
    breaker: { threshold: 1000, cooldownMs: 100 },
  },
  { budgetMs: 10_000 },
);

// Take over the page that registered us at once, so its writes can register sync tags.
self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));
