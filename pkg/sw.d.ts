// Types of `tidesync/sw`: drain the write queue from a service worker (Background Sync).
import type { DefaultSchema, FlushReport, SyncOptions } from './index.js';

/** The user id a Background Sync tag (`tidesync:{name}:{userId}:sync`) belongs to, or `null` if the tag is not this app's. */
export declare function userOfTag(tag: string, name: string): string | null;

/**
 * Opens the engine (without background sync), flushes until the queue is empty, waiting out
 * retry delays within `budgetMs` (default 25000), and closes it. Rejects while writes are still
 * pending (offline, retries due later), so the browser fires the sync event again.
 */
export declare function drain<S = DefaultSchema>(options: SyncOptions<S>, budgetMs?: number): Promise<FlushReport>;

/**
 * Wires the service worker's `sync` event: each of this app's tags drains that user's queue.
 * Call it at the top level of your service worker; `options` are the page's, without `userId`.
 *
 * ```js
 * import { handleBackgroundSync } from 'tidesync/sw';
 * handleBackgroundSync({ name: 'study', baseUrl: 'https://api.example.com',
 *                        collections: { progress: { endpoint: '/api/progress' } } });
 * ```
 */
export declare function handleBackgroundSync<S = DefaultSchema>(
  options: Omit<SyncOptions<S>, 'userId'>,
  settings?: { budgetMs?: number },
): void;
