// Types of the `tidesync` package entry. The shapes below are the engine's (Rust, serde camelCase)
// exactly: an absent optional value is `null`, never `undefined`, unless the field is marked `?`.

// ---------------------------------------------------------------------------------------------
// Records

/** A JSON value, as records hold them. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** A record's data when no schema is given: a plain, JSON-compatible object. */
export type SyncData = Record<string, unknown>;

/**
 * Your collections and their record types, for typed `get`, `put`, `list`, hooks, ...
 *
 * ```ts
 * interface Progress { cardId: string; grade: 0 | 1 | 2 | 3; lastModified: string }
 * interface Schema { progress: Progress; notes: { title: string; body: string } }
 * const engine = await SyncEngine.open<Schema>({ ... });
 * ```
 *
 * Without one, every collection holds `SyncData`.
 */
export type DefaultSchema = Record<string, SyncData>;

/** The collection names of a schema. */
export type CollectionName<S> = Extract<keyof S, string>;

/** Where a record stands with the server. */
export type RecordSyncStatus =
  /** A local change waits to be sent. */
  | 'pending'
  /** The server holds exactly this record. */
  | 'synced'
  /** A manual conflict waits for the app; this record's writes are paused until it is resolved. */
  | 'conflict'
  /** The last write of this record was dead-lettered (see `deadLetters()`). */
  | 'error';

/** A record with its sync state (`list`, `getRecord`, `put`, ...). */
export interface SyncRecord<T = SyncData, C extends string = string> {
  collection: C;
  id: string;
  data: T;
  /** The server's version of the last state it acknowledged; `null` until the first sync. */
  version: number | null;
  syncStatus: RecordSyncStatus;
  /** Local modification time, ms since the epoch. */
  lastModified: number;
}

/** `'high'` syncs at once, `'medium'` with the next batch, `'low'` in the background. */
export type Priority = 'high' | 'medium' | 'low';

export interface WriteOptions {
  /** Default: the collection's `priority`, else `'medium'`. */
  priority?: Priority;
}

// ---------------------------------------------------------------------------------------------
// Options of SyncEngine.open()

/**
 * Conflict strategies, for the record (`default`) or a field:
 * - `lww`: last write wins, whole: the fields no other strategy names (and each group) come whole
 *   from the side that changed them since the last sync, or from the later write when both did
 *   (the record's `lastModified` field if it has one, else the local write time; clock skew
 *   corrected; equal times pick the same write on every device). Never a mix of two writes.
 * - `server` / `client`: that side wins
 * - `max` / `min`: numbers
 * - `sum`: counters (the local change since the last sync is added to the server's value)
 * - `union`: arrays as sets
 * - `merge3`: field-level 3-way merge (the side that changed wins; both changed: last write wins)
 * - `manual`: the conflict waits in `conflicts()` for the app
 */
export type MergeStrategy = 'lww' | 'server' | 'client' | 'max' | 'min' | 'sum' | 'union' | 'merge3' | 'manual';

export interface MergeOptions<T = SyncData> {
  /** For fields not listed in `fields`. Default `'lww'`. */
  default?: MergeStrategy;
  fields?: { [K in Extract<keyof T, string>]?: MergeStrategy };
  /** Fields that merge as one unit (`[['grade', 'interval', 'nextReview']]`): taken whole from one side. */
  groups?: Extract<keyof T, string>[][];
  /** The server deleted a record we changed: `'recreate'` it with our change (default) or `'accept'` the delete. */
  onDeleted?: 'recreate' | 'accept';
}

/** `'batch'`: the `POST {batchEndpoint}` protocol. `'rest'`: plain CRUD requests per record. */
export type TransportKind = 'batch' | 'rest';

/** REST mode settings of a collection (`transport: 'rest'`). */
export interface RestOptions {
  /**
   * Send updates as `PUT {endpoint}/{id}` of the whole record (default), `PATCH` of the changed
   * fields, or `POST {endpoint}` of the whole record (APIs that upsert by key).
   */
  update?: 'put' | 'patch' | 'post';
  /**
   * Where the server says a record's version: `'etag'` (default: the ETag header, else a `version`
   * field of the record, inside an envelope or not), a field name or dotted path (`'data.version'`;
   * a field name is also where updates send their base version), or `'none'` (no versions: each
   * update first reads the record and is sent only if it is unchanged since our last sync).
   */
  version?: string;
  /** The query parameter that carries the pull cursor. Default `'since'`. */
  pullParam?: string;
}

export interface CollectionOptions<T = SyncData> {
  /** The collection's REST endpoint: a path under `baseUrl` (`'/api/notes'`) or a URL. */
  endpoint: string;
  /** The field of the backend's records that holds the record id. Default `'id'` (`'cardId'`, `'_id'`, ...). */
  key?: string;
  /** How conflicts are merged. Default: `{ default: 'lww' }`. */
  merge?: MergeOptions<T>;
  /**
   * Your own merge, used instead of `merge`: gets the last state the server acknowledged (`base`),
   * yours and the server's (`null` where there is none) and returns the merged record, or
   * `undefined` to leave the conflict to `conflicts()` / `resolveConflict()`. If it throws, the
   * conflict is queued too and an `error` event says why.
   */
  resolve?: (base: T | null, local: T | null, server: T | null) => T | undefined;
  /** Priority of writes that do not name one. Default `'medium'`. */
  priority?: Priority;
  /** Overrides the engine's `transport` for this collection. */
  transport?: TransportKind;
  rest?: RestOptions;
  /**
   * Query indexes: a field (`'due'`) or a list of fields (`['done', 'updatedAt']`) each. A `query()`
   * whose `where` fixes an index's leading fields, then ranges over the next one and orders by the
   * following ones, reads only its page; any other query reads the whole collection.
   */
  indexes?: Array<(keyof T & string) | (keyof T & string)[]>;
}

/** A key value a query compares: booleans order as 0 and 1, numbers before strings. */
export type QueryValue = string | number | boolean;

/** A condition on one field: a value (equality) or operators, all of which must hold. */
export type QueryCondition =
  | QueryValue
  | { eq?: QueryValue; in?: QueryValue[]; gt?: QueryValue; gte?: QueryValue; lt?: QueryValue; lte?: QueryValue; prefix?: string };

/** `query()`'s question. Records without a value for a `where` or `orderBy` field are not in the result. */
export interface Query<T = SyncData> {
  where?: { [K in keyof T & string]?: QueryCondition };
  /** `'due'`, `['due', 'desc']` or a list of them; ties by id. Default: by id. */
  orderBy?: (keyof T & string) | [keyof T & string, 'asc' | 'desc'] | Array<(keyof T & string) | [keyof T & string, 'asc' | 'desc']>;
  limit?: number;
  /** The last record of the previous page: the page after it. */
  after?: SyncRecord<T>;
}

/** All durations in milliseconds. */
export interface RetryOptions {
  /** Default 1000. */
  baseMs?: number;
  /** Default 30000. */
  capMs?: number;
  /** Extra random delay on top of the jittered backoff. Default 1000. */
  jitterMs?: number;
  /** Dead-letter a write after this many failed attempts. Default 10. */
  maxAttempts?: number;
  /** Dead-letter a write older than this when it fails again. Default 7 days. */
  maxAgeMs?: number;
}

/** How often the background sync runs and how many writes go in one request. */
export interface NetworkTier {
  intervalMs: number;
  batchSize: number;
}

export interface NetworkOptions {
  /** 4g or fast measured round trips. Default `{ intervalMs: 30000, batchSize: 10 }`. */
  good?: Partial<NetworkTier>;
  /** 3g. Default `{ intervalMs: 60000, batchSize: 5 }`. */
  fair?: Partial<NetworkTier>;
  /** 2g. Default `{ intervalMs: 120000, batchSize: 2 }`. */
  poor?: Partial<NetworkTier>;
}

export interface BreakerOptions {
  /** Consecutive failed requests that open the circuit breaker. Default 5. */
  threshold?: number;
  /** How long it stays open before one probe request. Default 30000. */
  cooldownMs?: number;
}

/** A bearer token for `Authorization: Bearer …`; asked again once after a 401. */
export type AuthCallback = () => string | null | undefined | Promise<string | null | undefined>;

export interface SyncOptions<S = DefaultSchema> {
  /** The app's name: the database is `tidesync:{name}:{userId}`. */
  name: string;
  /** Whose data this is (one database per user). Default `'anonymous'`. */
  userId?: string;
  /** The backend's origin. Default: `location.origin`. */
  baseUrl?: string;
  collections: { [C in keyof S]: CollectionOptions<S[C]> };
  /** Default `'batch'`. */
  transport?: TransportKind;
  /** Default `'/api/sync/batch'`. */
  batchEndpoint?: string;
  /** Per request. Default 30000. */
  timeoutMs?: number;
  auth?: AuthCallback;
  retry?: RetryOptions;
  network?: NetworkOptions;
  breaker?: BreakerOptions;
  /** Enables `setFaults`, `clearQueue` and `window.syncDebug`. Default `false`. */
  debug?: boolean;
  /**
   * Sync in the background: on writes, every network interval, when the page is hidden and when
   * it comes back online. Default `true`; `false` syncs only when you call `flush()` / `pull()`.
   */
  autoSync?: boolean;
  /**
   * A push channel: the server pokes when a collection changes and this device pulls it at once,
   * instead of at its next poll. `true` is Server-Sent Events at `/api/sync/stream`. One tab per
   * device keeps the connection. Off by default; needs `autoSync`; not opened in a service worker.
   */
  realtime?: boolean | RealtimeOptions;
}

/** The push channel's options (see the README, "Push channel"). */
export interface RealtimeOptions {
  /** `'sse'` (default: plain HTTP, passes proxies) or `'websocket'`. */
  kind?: 'sse' | 'websocket';
  /** Path under `baseUrl` or a full URL. Default `/api/sync/stream` (SSE), `/api/sync/ws` (WebSocket). */
  url?: string;
  /** Reconnection delay: random(0, min(capMs, baseMs · 2ⁿ)) after n failures. Default 1000 / 30000. */
  backoff?: { baseMs?: number; capMs?: number };
}

/** Where the push channel stands (`realtimeStatus()`, the `realtime` event). */
export interface RealtimeStatus {
  kind: 'sse' | 'websocket';
  url: string;
  /**
   * `follower`: another tab of this device keeps the channel (its state is mirrored here once it
   * says). `backoff`: waiting `retryAt` to reconnect, polling meanwhile.
   */
  state: 'follower' | 'connecting' | 'open' | 'backoff' | 'offline' | 'closed';
  /** This tab keeps the connection. */
  leader: boolean;
  /** The last event id heard: what a reconnection resumes from. */
  lastEventId: string | null;
  lastMessage: { type: string; collection: string | null; id: string | null; at: number } | null;
  messages: number;
  /** Pulls the channel started. */
  pulls: number;
  reconnects: number;
  retryAt: number | null;
  /** Why the last connection or pull failed. */
  error: string | null;
}

// ---------------------------------------------------------------------------------------------
// Results

/** What one `flush()` did. */
export interface FlushReport {
  /** Writes sent (a retried write counts each time). */
  sent: number;
  accepted: number;
  /** Conflicts met: merged automatically, or queued in `conflicts()`. */
  conflicts: number;
  /** Writes that failed and wait for a retry. */
  retried: number;
  deadLettered: number;
  /** Writes still pending afterwards. */
  remaining: number;
  /** When the next pending write is due, ms since the epoch. */
  nextAttemptAt: number | null;
  /** Nothing was sent: the device is offline. */
  offline: boolean;
  /** Sending stopped: the circuit breaker is open. */
  breakerOpen: boolean;
}

/** What one `pull()` did. */
export interface PullReport {
  /** Records the server sent. */
  received: number;
  /** Records that took the server's state. */
  applied: number;
  /** Records with pending writes, merged with the server's state. */
  rebased: number;
  deleted: number;
  /** Records left alone: a write is in flight, or a conflict waits. */
  skipped: number;
}

export interface ErrorEntry {
  /** ms since the epoch */
  at: number;
  code: SyncErrorCode;
  message: string;
  status: number | null;
}

export type BreakerState =
  | { state: 'closed'; failures: number }
  | { state: 'open'; until: number }
  | { state: 'halfOpen' };

export interface NetworkDecision {
  quality: 'good' | 'fair' | 'poor';
  intervalMs: number;
  batchSize: number;
  /** Offline: writes are queued, not sent. */
  paused: boolean;
}

/** `navigator.storage.estimate()` and `persisted()`, where the browser has them. */
export interface StorageInfo {
  usage: number | null;
  quota: number | null;
  persisted: boolean | null;
}

/** `status()`: sync state at a glance. */
export interface SyncStatus {
  /** Writes waiting for the server. */
  pending: number;
  conflicts: number;
  deadLetters: number;
  online: boolean;
  flushing: boolean;
  /** ms since the epoch */
  lastSyncAt: number | null;
  lastError: ErrorEntry | null;
  /**
   * When the next pending write is due, at the earliest (ms since the epoch): as this tab's last
   * flush read the queue, brought forward by every write since. `null` when nothing is pending or
   * every pending write waits for you (`blocked`).
   */
  nextAttemptAt: number | null;
  breaker: BreakerState;
  network: NetworkDecision;
  storage: StorageInfo;
  /** Records whose writes wait, and why: nothing stops silently. */
  blocked: BlockedRecord[];
}

/** A record whose writes wait (`status().blocked`). */
export interface BlockedRecord {
  collection: string;
  id: string;
  /**
   * `'conflict'`: a conflict waits for `resolveConflict(conflictId)`. `'maybeApplied'`: a write ran
   * out of attempts and the server may have applied it (`opId`); tidesync resends it under the same
   * id at `retryAt` (the server's idempotency answers), or call `retryDeadLetter(opId)` now or
   * `discardDeadLetter(opId)`.
   */
  reason: 'conflict' | 'maybeApplied';
  conflictId: string | null;
  opId: string | null;
  message: string;
  /** ms since the epoch */
  since: number;
  /** When tidesync settles it itself; `null`: only the app can (older than `retry.maxAgeMs`). */
  retryAt: number | null;
}

/** `metrics()`: the reference design's `SyncMetrics`, plus counters. */
export interface SyncMetrics {
  lastSuccessfulSync: number | null;
  pendingOperations: number;
  conflictsCount: number;
  deadLettersCount: number;
  /** The last 20 errors, oldest first. */
  syncErrors: ErrorEntry[];
  /** Average round trip of sync requests (exponentially weighted), ms. */
  networkLatency: number | null;
  /** Duration of the last flush, ms. */
  syncDuration: number | null;
  /** Accepted writes / (accepted + failed attempts), 0..1. */
  operationSuccessRate: number;
  averageQueueSize: number;
  opsSent: number;
  opsAccepted: number;
  opsFailed: number;
  conflictsResolved: number;
  deadLettered: number;
  /** `retryHistogram[n]`: writes accepted after `n` failed attempts (index 10: 10 or more). */
  retryHistogram: number[];
}

export type OpKind = 'create' | 'update' | 'delete';

/** A write waiting for the server (`queue()`). `id` is its idempotency key. */
export interface PendingOp<T = SyncData, C extends string = string> {
  id: string;
  /** Local order of writes, across tabs. */
  seq: number;
  collection: C;
  entityId: string;
  kind: OpKind;
  /** The whole record for create/update; `null` for delete. */
  payload: T | null;
  /** The server version the write was made against (`If-Match` / `baseVersion`). */
  baseVersion: number | null;
  priority: Priority;
  createdAt: number;
  attempts: number;
  nextAttemptAt: number;
  lastError: string | null;
  lastStatus: number | null;
  checksum: string;
  /** It may have reached the server: it will not change again (later writes queue a new op). */
  sent: boolean;
  /** For an update: the change as a JSON merge patch, for backends updated with `PATCH`. */
  patch?: Partial<T>;
}

/** A write the server refused for good, or that ran out of attempts. */
export interface DeadLetter<T = SyncData, C extends string = string> {
  op: PendingOp<T, C>;
  error: string;
  code: SyncErrorCode;
  status: number | null;
  /** The server may have applied it (it failed in a retryable way); a retry is still safe (same idempotency key). */
  maybeApplied: boolean;
  at: number;
}

export type ConflictReason = 'version' | 'deleted' | 'integrity';

/** A conflict waiting for the app (collections merged `'manual'`). `null`: no record on that side. */
export interface SyncConflict<T = SyncData, C extends string = string> {
  id: string;
  collection: C;
  entityId: string;
  local: T | null;
  server: T | null;
  /** The last state both sides agreed on. */
  base: T | null;
  serverVersion: number | null;
  reason: ConflictReason;
  detectedAt: number;
}

/** One resolved conflict (automatic or manual), from `auditLog()` and `resolved` events. */
export interface AuditEntry<T = SyncData> {
  at: number;
  collection: string;
  id: string;
  how: 'auto' | 'manual';
  reason: ConflictReason;
  base: T | null;
  local: T | null;
  server: T | null;
  result: T | null;
}

/** Injected faults (engines opened with `debug: true`). */
export interface DebugFaults {
  /** Requests fail as if the device were offline. */
  offline: boolean;
  /** The next N requests (writes and pulls) fail with `failStatus`. */
  failNext: number;
  /** HTTP status of injected failures; `0` means 503. */
  failStatus: number;
  /** Added before every request. */
  latencyMs: number;
}

export interface BuildInfo {
  /** The crate (and npm package) version. */
  version: string;
  /** Short git sha of the build, or `'unknown'`. */
  gitSha: string;
  /** The IndexedDB schema version. */
  schemaVersion: number;
}

// One union member per collection, so checking `collection` narrows the record type.
export type RecordOf<S> = { [C in CollectionName<S>]: SyncRecord<S[C], C> }[CollectionName<S>];
export type ConflictOf<S> = { [C in CollectionName<S>]: SyncConflict<S[C], C> }[CollectionName<S>];
export type DeadLetterOf<S> = { [C in CollectionName<S>]: DeadLetter<S[C], C> }[CollectionName<S>];
export type PendingOpOf<S> = { [C in CollectionName<S>]: PendingOp<S[C], C> }[CollectionName<S>];

// ---------------------------------------------------------------------------------------------
// Events

/** Set on events that happened in another tab of the same app and user. */
interface Remote {
  remote?: boolean;
}

/** A record changed: a local write, a sync result or a pull. */
export interface ChangeEvent extends Remote {
  type: 'change';
  collection: string;
  id: string;
  /** `null` when the record is gone. */
  syncStatus: RecordSyncStatus | null;
  deleted: boolean;
}
/** A flush finished. */
export interface SyncDoneEvent extends Remote {
  type: 'sync';
  report: FlushReport;
}
export interface ErrorEvent extends Remote {
  type: 'error';
  code: SyncErrorCode;
  message: string;
  status: number | null;
}
/** A conflict waits for the app. */
export interface ConflictEvent extends Remote {
  type: 'conflict';
  conflictId: string;
  collection: string;
  id: string;
}
/** A conflict was resolved, automatically or by `resolveConflict`. */
export interface ResolvedEvent extends Remote {
  type: 'resolved';
  entry: AuditEntry;
}
export interface DeadLetterEvent extends Remote {
  type: 'deadLetter';
  opId: string;
  collection: string;
  id: string;
  code: SyncErrorCode;
  message: string;
}
/** A record's writes stopped behind a write the server may have applied (see `BlockedRecord`). */
export interface StalledEvent extends Remote {
  type: 'stalled';
  opId: string;
  collection: string;
  id: string;
  message: string;
  retryAt: number | null;
}
/** `discardDeadLetter()` dropped a dead letter (heard in this tab only). */
export interface DeadLetterDiscardedEvent {
  type: 'deadLetterDiscarded';
  opId: string;
}
/** `clearQueue()` discarded the pending writes (heard in this tab only). */
export interface QueueClearedEvent {
  type: 'queueCleared';
  discarded: number;
}
/** A newer version of the app opened the database in another tab: this engine is closed; reload. */
export interface ClosedEvent {
  type: 'closed';
  message: string;
}
/** An older tab keeps the database open and blocks an upgrade. */
export interface BlockedEvent {
  type: 'blocked';
  message: string;
}

/** The push channel changed state or heard a message (this tab; followers mirror the leader). */
export interface RealtimeEvent {
  type: 'realtime';
  status: RealtimeStatus;
}

export type SyncEvent =
  | RealtimeEvent
  | ChangeEvent
  | SyncDoneEvent
  | ErrorEvent
  | ConflictEvent
  | ResolvedEvent
  | DeadLetterEvent
  | StalledEvent
  | DeadLetterDiscardedEvent
  | QueueClearedEvent
  | ClosedEvent
  | BlockedEvent;

export type SyncEventType = SyncEvent['type'];

// ---------------------------------------------------------------------------------------------
// Errors

/**
 * - `INVALID_INPUT`: a bad argument (not a plain object, not a string id, ...)
 * - `CONFIG`: bad `open()` options, or a debug method on an engine without `debug: true`
 * - `NOT_FOUND`: `patch` of a record that does not exist; an unknown conflict or dead letter
 * - `QUOTA_EXCEEDED`: the browser refused to store more (also sent as an `error` event)
 * - `STORAGE`: IndexedDB failed otherwise
 * - `CLOSED`: the engine was closed (`close()`, or a newer version of the app in another tab)
 * - `OFFLINE`, `NETWORK`, `TIMEOUT`: the request did not get an answer
 * - `HTTP`: an unexpected status (`error.status`)
 * - `PROTOCOL`: the server's answer could not be understood
 * - `AUTH`: the server refused the credentials
 * - `INTEGRITY`: a stored record no longer matches its checksum
 * - `CONFLICT`: a conflict is in the way
 */
export type SyncErrorCode =
  | 'INVALID_INPUT'
  | 'CONFIG'
  | 'NOT_FOUND'
  | 'QUOTA_EXCEEDED'
  | 'STORAGE'
  | 'CLOSED'
  | 'OFFLINE'
  | 'NETWORK'
  | 'TIMEOUT'
  | 'HTTP'
  | 'PROTOCOL'
  | 'AUTH'
  | 'INTEGRITY'
  | 'CONFLICT';

export declare const SYNC_ERROR_CODES: readonly SyncErrorCode[];

/** Every error tidesync rejects with. */
export declare class SyncError<C extends SyncErrorCode = SyncErrorCode> extends Error {
  constructor(code: C, message: string, options?: { status?: number; cause?: unknown });
  readonly name: 'SyncError';
  /** Stable: branch on it. The message is for people. */
  readonly code: C;
  /** The HTTP status, for `HTTP` errors. */
  readonly status?: number;
}

/**
 * Whether `e` is a `SyncError` (with the given code, if one is given).
 *
 * ```ts
 * try { await engine.put('notes', id, note); }
 * catch (e) { if (isSyncError(e, 'QUOTA_EXCEEDED')) showStorageWarning(); else throw e; }
 * ```
 */
export declare function isSyncError<C extends SyncErrorCode = SyncErrorCode>(e: unknown, code?: C): e is SyncError<C>;

// ---------------------------------------------------------------------------------------------
// The engine

/** What `init()` accepts: where the `.wasm` is, its bytes or a compiled module. */
export type InitInput = RequestInfo | URL | Response | BufferSource | WebAssembly.Module;

/**
 * Loads the wasm. `SyncEngine.open()` and `deleteDatabase()` do it for you; call it first only to
 * load `tidesync_bg.wasm` from elsewhere. Safe to call more than once.
 */
export declare function init(input?: InitInput | Promise<InitInput> | { module_or_path: InitInput | Promise<InitInput> }): Promise<void>;
export default init;

/** The loaded build: crate version, git sha, schema version. Throws `CONFIG` before the wasm is loaded. */
export declare function buildInfo(): BuildInfo;

/** SHA-256 (hex) of the value's canonical JSON: the `checksum` tidesync stores and sends. */
export declare function checksum(value: unknown): string;

/** Deletes the database of `name` and `userId` (sign-out, tests). Close its engines first. */
export declare function deleteDatabase(name: string, userId?: string | null): Promise<void>;

/** What `clearQueue()` must be given. */
export declare const CLEAR_QUEUE_CONFIRMATION: 'discard pending writes';

/** How many events `syncDebug.events()` keeps. */
export declare const DEBUG_EVENT_LOG_SIZE: number;

/**
 * The sync engine: records in IndexedDB, writes queued and pushed to your backend, the server's
 * changes pulled back, conflicts merged.
 *
 * ```ts
 * const engine = await SyncEngine.open({
 *   name: 'study', userId: 'u1', baseUrl: 'https://api.example.com',
 *   collections: { progress: { endpoint: '/api/progress', merge: { default: 'lww' } } },
 * });
 * await engine.put('progress', 'card-1', { grade: 3 }, { priority: 'high' });
 * ```
 */
export declare class SyncEngine<S = DefaultSchema> {
  private constructor();

  /**
   * Loads the wasm if needed, opens (or creates) the database `tidesync:{name}:{userId}` and
   * starts syncing. Rejects with a `SyncError` (`CONFIG`, `STORAGE`, ...).
   */
  static open<S = DefaultSchema>(options: SyncOptions<NoInfer<S>>): Promise<SyncEngine<S>>;

  readonly name: string;
  readonly userId: string;
  /** This device's id (sent as `X-Device-ID`). */
  readonly deviceId: string;
  /** Opened with `debug: true`. */
  readonly debug: boolean;
  /** HTTP requests this engine has sent. */
  readonly requestCount: number;

  /** Stores `data` as the record (replacing it) and queues it for the server. */
  put<C extends CollectionName<S>>(collection: C, id: string, data: S[C], options?: WriteOptions): Promise<SyncRecord<S[C], C>>;
  /** Like `put`, with the record as JSON text. */
  putJson<C extends CollectionName<S>>(collection: C, id: string, json: string, options?: WriteOptions): Promise<SyncRecord<S[C], C>>;
  /**
   * Puts many records in ONE IndexedDB transaction: all are stored and queued, or none is (the
   * promise rejects, e.g. `INVALID_INPUT` naming the bad entry, or `QUOTA_EXCEEDED`). A repeated id
   * ends with its last data. Resolves to the stored records, in order.
   */
  putMany<C extends CollectionName<S>>(collection: C, records: ReadonlyArray<{ id: string; data: S[C] }>, options?: WriteOptions): Promise<SyncRecord<S[C], C>[]>;
  /** Merges `fields` into the record (`null` removes a field). Rejects with `NOT_FOUND` if there is none. */
  patch<C extends CollectionName<S>>(collection: C, id: string, fields: { [K in keyof S[C]]?: S[C][K] | null }, options?: WriteOptions): Promise<SyncRecord<S[C], C>>;
  /** Deletes the record. Resolves to `false` if there was none. */
  delete<C extends CollectionName<S>>(collection: C, id: string, options?: WriteOptions): Promise<boolean>;
  /** The record's data, or `undefined`. */
  get<C extends CollectionName<S>>(collection: C, id: string): Promise<S[C] | undefined>;
  /** The record with its sync state, or `undefined`. */
  getRecord<C extends CollectionName<S>>(collection: C, id: string): Promise<SyncRecord<S[C], C> | undefined>;
  /** Every record of the collection, ordered by id. */
  list<C extends CollectionName<S>>(collection: C): Promise<SyncRecord<S[C], C>[]>;
  /**
   * The records matching `query`, through a declared index when one fits (see the collection's
   * `indexes`). Rejects with `INVALID_INPUT` for a malformed query or an unknown collection.
   */
  query<C extends CollectionName<S>>(collection: C, query?: Query<S[C]>): Promise<SyncRecord<S[C], C>[]>;
  /**
   * A live query: `listener` gets the result now and again whenever a change (a write here or in
   * another tab, a pull, a merge, a resolution) changes it; unchanged results are not sent again.
   * Returns the unsubscribe function.
   */
  subscribeQuery<C extends CollectionName<S>>(
    collection: C,
    query: Query<S[C]> | undefined,
    listener: (records: SyncRecord<S[C], C>[]) => void,
    onError?: (error: SyncError) => void,
  ): () => void;

  /** Sends every due write now (waits for another tab's flush rather than racing it). */
  flush(): Promise<FlushReport>;
  /** Fetches the server's changes (of one collection, or all) and merges them in. */
  pull(collection?: CollectionName<S>): Promise<PullReport>;
  status(): Promise<SyncStatus>;
  metrics(): Promise<SyncMetrics>;
  /** Writes waiting for the server, in send order. */
  queue(): Promise<PendingOpOf<S>[]>;

  /** Conflicts waiting for the app (collections merged `'manual'`). */
  conflicts(): Promise<ConflictOf<S>[]>;
  /** Resolves a conflict with the local side, the server's, or a merged record; syncing resumes. */
  resolveConflict(conflictId: string, choice: 'local' | 'server' | S[CollectionName<S>]): Promise<RecordOf<S> | undefined>;
  deadLetters(): Promise<DeadLetterOf<S>[]>;
  /** Queues a dead-lettered write again with a fresh attempt count. */
  retryDeadLetter(opId: string): Promise<void>;
  /**
   * Drops a dead-lettered write for good. A record with nothing else pending goes back to what the
   * server last acknowledged (or is removed if the server never had it).
   */
  discardDeadLetter(opId: string): Promise<void>;
  /** The last automatic and manual conflict resolutions, oldest first. */
  auditLog(): AuditEntry[];

  /**
   * Calls `listener` with every event of this engine, and of other tabs (`remote: true`).
   * Returns the unsubscribe function (React's `useSyncExternalStore` shape).
   */
  subscribe(listener: (event: SyncEvent) => void): () => void;

  /** Debug engines only: injects faults into this client's requests. Resolves to the faults in force. */
  setFaults(faults: Partial<DebugFaults>): Promise<DebugFaults>;
  /** Debug engines only: discards every pending write. Pass `'discard pending writes'`. Resolves to how many. */
  clearQueue(confirm: typeof CLEAR_QUEUE_CONFIRMATION): Promise<number>;

  /** The push channel's state, or `undefined` when the engine was opened without `realtime`. */
  realtimeStatus(): RealtimeStatus | undefined;

  /** Stops syncing and closes the database; later calls reject with `CLOSED`. */
  close(): void;
}

// ---------------------------------------------------------------------------------------------
// window.syncDebug

/** One entry of `syncDebug.events()`. */
export interface DebugLogEntry {
  /** When it was heard, ms since the epoch. */
  at: number;
  event: SyncEvent;
}

/** `window.syncDebug`, installed by `SyncEngine.open({ ..., debug: true })`. */
export interface SyncDebug {
  readonly name: string;
  readonly userId: string;
  readonly deviceId: string;
  buildInfo(): BuildInfo;
  getStatus(): Promise<SyncStatus>;
  getMetrics(): Promise<SyncMetrics>;
  getConflicts(): Promise<SyncConflict[]>;
  resolveConflict(conflictId: string, choice: 'local' | 'server' | SyncData): Promise<SyncRecord | undefined>;
  /** The pending writes, in send order. */
  inspectQueue(): Promise<PendingOp[]>;
  /** Discards every pending write: `syncDebug.clearQueue('discard pending writes')`. */
  clearQueue(confirm: typeof CLEAR_QUEUE_CONFIRMATION): Promise<number>;
  /** Sends what is due, then pulls. */
  forceSync(): Promise<{ flush: FlushReport; pull: PullReport }>;
  getDeadLetters(): Promise<DeadLetter[]>;
  retryDeadLetter(opId: string): Promise<void>;
  discardDeadLetter(opId: string): Promise<void>;
  /** Retries every dead letter; resolves to how many. */
  retryAllDeadLetters(): Promise<number>;
  auditLog(): AuditEntry[];
  /** The last events (at most `DEBUG_EVENT_LOG_SIZE`), oldest first. */
  events(limit?: number): DebugLogEntry[];
  clearEvents(): void;
  setFaults(faults: Partial<DebugFaults>): Promise<DebugFaults>;
  goOffline(): Promise<DebugFaults>;
  goOnline(): Promise<DebugFaults>;
  /** The next `count` requests fail with `status` (default 503). */
  failNext(count?: number, status?: number): Promise<DebugFaults>;
  setLatency(ms: number): Promise<DebugFaults>;
  clearFaults(): Promise<DebugFaults>;
  /** The push channel's state, or `undefined` without `realtime`. */
  realtimeStatus(): RealtimeStatus | undefined;
  /** The command names. */
  help(): string;
}

declare global {
  /** Installed by an engine opened with `debug: true` (the last one opened). */
  var syncDebug: SyncDebug | undefined;
}
