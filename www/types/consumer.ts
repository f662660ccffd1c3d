// Type-checks a consumer of the `tidesync` package (scripts/test, js tier: `tsc --noEmit`, strict).
// Uses every public export the way the README shows; compiles only, never runs.
import init, {
  CLEAR_QUEUE_CONFIRMATION,
  DEBUG_EVENT_LOG_SIZE,
  SYNC_ERROR_CODES,
  SyncEngine,
  SyncError,
  buildInfo,
  checksum,
  deleteDatabase,
  isSyncError,
  type AuditEntry,
  type BuildInfo,
  type ConflictOf,
  type DeadLetter,
  type DebugFaults,
  type FlushReport,
  type PendingOp,
  type PullReport,
  type RealtimeStatus,
  type SyncConflict,
  type SyncData,
  type SyncErrorCode,
  type SyncEvent,
  type SyncMetrics,
  type SyncOptions,
  type SyncRecord,
  type SyncStatus,
} from 'tidesync';
import { drain, handleBackgroundSync, userOfTag } from 'tidesync/sw';

// Compile-time assertions.
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function expect<T extends true>(): void {}

interface Progress {
  cardId: string;
  grade: 0 | 1 | 2 | 3;
  lastModified: string;
}
interface Stats {
  totalStudyTime: number;
  totalCardsStudied: number;
  currentStreak: number;
  lastStudyDate: string;
}
interface Note {
  title: string;
  body: string;
}
interface Schema {
  progress: Progress;
  stats: Stats;
  notes: Note;
}

const options: SyncOptions<Schema> = {
  name: 'study',
  userId: 'u1',
  baseUrl: 'https://api.example.com',
  transport: 'batch',
  batchEndpoint: '/api/sync/batch',
  timeoutMs: 10_000,
  auth: async () => 'token',
  retry: { baseMs: 1000, capMs: 30_000, jitterMs: 1000, maxAttempts: 10, maxAgeMs: 86_400_000 },
  network: { good: { intervalMs: 2000, batchSize: 10 } },
  breaker: { threshold: 5, cooldownMs: 30_000 },
  debug: true,
  autoSync: true,
  realtime: { kind: 'sse', url: '/api/sync/stream', backoff: { baseMs: 500, capMs: 10_000 } },
  collections: {
    progress: {
      endpoint: '/api/progress-v2',
      key: 'cardId',
      transport: 'rest',
      rest: { update: 'post', version: 'data.version' },
      merge: { default: 'lww', groups: [['grade', 'lastModified']] },
      priority: 'high',
    },
    stats: {
      endpoint: '/api/stats',
      merge: { default: 'lww', fields: { totalStudyTime: 'max', totalCardsStudied: 'max', currentStreak: 'server' } },
    },
    notes: { endpoint: '/api/notes', merge: { default: 'manual', onDeleted: 'accept' }, transport: 'rest', rest: { update: 'patch', version: 'etag' } },
  },
};

// @ts-expect-error: a field the record type does not have
const badMerge: SyncOptions<Schema>['collections']['stats'] = { endpoint: '/x', merge: { fields: { nope: 'max' } } };
// @ts-expect-error: not a strategy
const badStrategy: SyncOptions<Schema>['collections']['notes'] = { endpoint: '/x', merge: { default: 'newest' } };
// @ts-expect-error: a group names a field the record type does not have
const badGroup: SyncOptions<Schema>['collections']['progress'] = { endpoint: '/x', merge: { groups: [['nope']] } };
// @ts-expect-error: not an update method
const badUpdate: SyncOptions<Schema>['collections']['notes'] = { endpoint: '/x', rest: { update: 'upsert' } };
void badMerge;
void badStrategy;
void badGroup;
void badUpdate;

export async function typed(): Promise<void> {
  await init();
  const info: BuildInfo = buildInfo();
  const sum: string = checksum({ a: 1 });
  void info;
  void sum;

  const engine = await SyncEngine.open<Schema>(options);
  const name: string = engine.name;
  const device: string = engine.deviceId;
  const debug: boolean = engine.debug;
  const requests: number = engine.requestCount;
  void [name, device, debug, requests];

  const rec = await engine.put('progress', 'card-1', { cardId: 'card-1', grade: 3, lastModified: new Date().toISOString() }, { priority: 'high' });
  expect<Equal<typeof rec, SyncRecord<Progress, 'progress'>>>();
  const grade: 0 | 1 | 2 | 3 = rec.data.grade;
  void grade;
  // @ts-expect-error: grade 4 is not a Progress
  await engine.put('progress', 'card-1', { cardId: 'card-1', grade: 4, lastModified: '' });
  // @ts-expect-error: unknown collection
  await engine.put('cards', 'x', { a: 1 });

  await engine.patch('stats', 'me', { totalStudyTime: 30 });
  await engine.patch('notes', 'n1', { body: null });
  await engine.putJson('notes', 'n2', '{"title":"t","body":""}');
  const deleted: boolean = await engine.delete('notes', 'n2');
  void deleted;

  const note = await engine.get('notes', 'n1');
  expect<Equal<typeof note, Note | undefined>>();
  const noteRecord = await engine.getRecord('notes', 'n1');
  if (noteRecord) {
    const status: 'pending' | 'synced' | 'conflict' | 'error' = noteRecord.syncStatus;
    const version: number | null = noteRecord.version;
    void [status, version];
  }
  const all = await engine.list('stats');
  const total: number = all.reduce((n, r) => n + r.data.totalStudyTime, 0);
  void total;

  const flush: FlushReport = await engine.flush();
  const next: number | null = flush.nextAttemptAt;
  const pull: PullReport = await engine.pull();
  await engine.pull('progress');
  void [next, pull];

  const status: SyncStatus = await engine.status();
  const lastSync: number | null = status.lastSyncAt;
  const errorCode: SyncErrorCode | undefined = status.lastError?.code;
  if (status.breaker.state === 'open') {
    const until: number = status.breaker.until;
    void until;
  }
  const quota: number | null = status.storage.quota;
  for (const b of status.blocked) {
    const why: 'conflict' | 'maybeApplied' = b.reason;
    void [why, b.collection, b.id, b.conflictId, b.opId, b.message, b.since, b.retryAt];
  }
  const quality: 'good' | 'fair' | 'poor' = status.network.quality;
  void [lastSync, errorCode, quota, quality];

  const metrics: SyncMetrics = await engine.metrics();
  const latency: number | null = metrics.networkLatency;
  const histogram: number[] = metrics.retryHistogram;
  void [latency, histogram];

  const queue = await engine.queue();
  for (const op of queue) {
    if (op.collection === 'progress' && op.payload) {
      const g: number = op.payload.grade; // narrowed by collection
      void g;
    }
    const kind: 'create' | 'update' | 'delete' = op.kind;
    void kind;
  }
  const untypedQueue: PendingOp[] = await (engine as unknown as SyncEngine).queue();
  void untypedQueue;

  const conflicts: ConflictOf<Schema>[] = await engine.conflicts();
  for (const c of conflicts) {
    if (c.collection === 'notes') {
      const local: Note | null = c.local;
      const server: Note | null = c.server;
      const merged: Note = { title: server?.title ?? local?.title ?? '', body: `${local?.body ?? ''}\n${server?.body ?? ''}` };
      await engine.resolveConflict(c.id, merged);
    } else {
      await engine.resolveConflict(c.id, c.reason === 'deleted' ? 'server' : 'local');
    }
  }
  const plainConflict: SyncConflict = { id: 'c', collection: 'notes', entityId: 'n', local: null, server: { title: 'x' }, base: null, serverVersion: 2, reason: 'version', detectedAt: 0 };
  void plainConflict;

  const letters = await engine.deadLetters();
  for (const d of letters) {
    const code: SyncErrorCode = d.code;
    const httpStatus: number | null = d.status;
    void [code, httpStatus];
    if (d.maybeApplied) await engine.retryDeadLetter(d.op.id);
    else await engine.discardDeadLetter(d.op.id);
  }
  const plainLetter: DeadLetter | undefined = undefined;
  void plainLetter;

  const audit: AuditEntry[] = engine.auditLog();
  const how: 'auto' | 'manual' | undefined = audit[0]?.how;
  void how;

  const off = engine.subscribe((event: SyncEvent) => {
    switch (event.type) {
      case 'change': {
        const s: string | null = event.syncStatus;
        const remote: boolean | undefined = event.remote;
        void [s, remote, event.collection, event.id, event.deleted];
        break;
      }
      case 'sync': {
        const report: FlushReport = event.report;
        void report;
        break;
      }
      case 'error': {
        const code: SyncErrorCode = event.code;
        void [code, event.message, event.status];
        break;
      }
      case 'conflict':
        void [event.conflictId, event.collection, event.id];
        break;
      case 'resolved': {
        const result: SyncData | null = event.entry.result;
        void result;
        break;
      }
      case 'deadLetter':
        void [event.opId, event.code, event.message];
        break;
      case 'stalled': {
        const retryAt: number | null = event.retryAt;
        void [event.opId, event.collection, event.id, event.message, retryAt];
        break;
      }
      case 'deadLetterDiscarded':
        void event.opId;
        break;
      case 'queueCleared': {
        const n: number = event.discarded;
        void n;
        break;
      }
      case 'closed':
      case 'blocked':
        void event.message;
        break;
      case 'realtime': {
        const s: RealtimeStatus = event.status;
        const state: 'follower' | 'connecting' | 'open' | 'backoff' | 'offline' | 'closed' = s.state;
        void [state, s.leader, s.lastEventId, s.lastMessage?.collection, s.pulls, s.retryAt];
        break;
      }
      default: {
        const never: never = event;
        void never;
      }
    }
  });
  off();

  const faults: DebugFaults = await engine.setFaults({ offline: true });
  await engine.setFaults({ failNext: 1, failStatus: 400, latencyMs: 200 });
  const discarded: number = await engine.clearQueue(CLEAR_QUEUE_CONFIRMATION);
  await engine.clearQueue('discard pending writes');
  // @ts-expect-error: the confirmation is not optional
  await engine.clearQueue();
  void [faults, discarded];

  // window.syncDebug
  const dbg = window.syncDebug;
  if (dbg) {
    const m: SyncMetrics = await dbg.getMetrics();
    const q: PendingOp[] = await dbg.inspectQueue();
    const forced: { flush: FlushReport; pull: PullReport } = await dbg.forceSync();
    const events = dbg.events(10);
    const firstType: SyncEvent['type'] | undefined = events[0]?.event.type;
    await dbg.failNext(1, 400);
    await dbg.goOffline();
    await dbg.goOnline();
    await dbg.setLatency(100);
    await dbg.clearFaults();
    await dbg.retryAllDeadLetters();
    const log: number = DEBUG_EVENT_LOG_SIZE;
    void [m, q, forced, firstType, log, dbg.help(), dbg.getConflicts(), dbg.getDeadLetters()];
  }

  engine.close();
  await deleteDatabase('study', 'u1');
}

export async function untyped(): Promise<void> {
  // No schema: every collection holds plain objects.
  const engine = await SyncEngine.open({ name: 'demo', collections: { notes: { endpoint: '/api/notes' } } });
  await engine.put('notes', crypto.randomUUID(), { title: 'Groceries', tags: ['a'] });
  const data = await engine.get('notes', 'x');
  expect<Equal<typeof data, Record<string, unknown> | undefined>>();
  const records: SyncRecord[] = await engine.list('anything');
  void records;
}

export function errors(e: unknown): string {
  const codes: readonly SyncErrorCode[] = SYNC_ERROR_CODES;
  void codes;
  if (e instanceof SyncError) {
    const code: SyncErrorCode = e.code;
    const status: number | undefined = e.status;
    return `${code} ${status ?? ''} ${e.message}`;
  }
  if (isSyncError(e, 'QUOTA_EXCEEDED')) {
    expect<Equal<typeof e.code, 'QUOTA_EXCEEDED'>>();
    return 'storage full';
  }
  if (isSyncError(e)) return e.code;
  const mine = new SyncError('OFFLINE', 'no network');
  return mine.name;
}

// In a service worker.
export function serviceWorker(): void {
  handleBackgroundSync<Schema>({ name: 'study', collections: options.collections }, { budgetMs: 20_000 });
  const user: string | null = userOfTag('tidesync:study:u1:sync', 'study');
  const report: Promise<FlushReport> = drain({ ...options, userId: user ?? 'anonymous' });
  void report;
}
