// Types of `tidesync/react`.
import type { ReactNode } from 'react';
import type {
  CollectionName,
  ConflictOf,
  DeadLetterOf,
  DefaultSchema,
  PendingOpOf,
  Query,
  SyncEngine,
  SyncError,
  SyncRecord,
  SyncStatus,
} from './index.js';

export interface SyncProviderProps<S = DefaultSchema> {
  /** The engine the hooks below use; while it is `null` or `undefined`, `fallback` is rendered. */
  engine: SyncEngine<S> | null | undefined;
  fallback?: ReactNode;
  children?: ReactNode;
}

/**
 * ```tsx
 * const engine = await SyncEngine.open({ ... });
 * createRoot(el).render(<SyncProvider engine={engine}><App /></SyncProvider>);
 * ```
 */
export declare function SyncProvider<S = DefaultSchema>(props: SyncProviderProps<S>): ReactNode;

/** The provider's engine. Throws outside a `SyncProvider`. */
export declare function useSyncEngine<S = DefaultSchema>(): SyncEngine<S>;

export interface EntityState<T, C extends string = string> {
  /** The record's data; `undefined` while loading or when there is no such record. */
  data: T | undefined;
  /** The record with its sync state (`syncStatus`, `version`, ...). */
  record: SyncRecord<T, C> | undefined;
  /** Only before the first read. Later reads keep showing the previous data. */
  loading: boolean;
  error: SyncError | undefined;
}

export interface CollectionState<T, C extends string = string> {
  /** Every record, ordered by id. Records that did not change keep their identity. */
  data: SyncRecord<T, C>[];
  loading: boolean;
  error: SyncError | undefined;
}

/** One record, re-rendering only when it changes (in this tab, another tab, or by sync). */
export declare function useEntity<T = DefaultSchema[string]>(collection: string, id: string): EntityState<T>;

/** `useEntity` for Suspense: suspends until the record is read; the record, or `undefined` when there is none. Throws a read's error. */
export declare function useEntitySuspense<T = DefaultSchema[string]>(collection: string, id: string): SyncRecord<T> | undefined;

/**
 * Every record of a collection, re-rendering only when one of them changes. A change event reads
 * that record alone and puts it in place; a burst changing more than one record in twelve reads the
 * list once.
 */
export declare function useCollection<T = DefaultSchema[string]>(collection: string): CollectionState<T>;

/** `useCollection` for Suspense: suspends until the collection is read; its records, in id order. Throws a read's error. */
export declare function useCollectionSuspense<T = DefaultSchema[string]>(collection: string): SyncRecord<T>[];

/**
 * `engine.status()` kept current (pending count, online, last sync, ...), read at most once per
 * animation frame; `undefined` until read.
 */
export declare function useSyncStatus(): SyncStatus | undefined;

/** Conflicts waiting for the app (empty until read). */
export declare function useConflicts<S = DefaultSchema>(): ConflictOf<S>[];

/** Dead-lettered writes (empty until read). */
export declare function useDeadLetters<S = DefaultSchema>(): DeadLetterOf<S>[];

/** Writes waiting for the server, in send order, with attempts, next try and last error (empty until read). */
export declare function useQueue<S = DefaultSchema>(): PendingOpOf<S>[];

/** A live query (`engine.subscribeQuery`): the records, kept current; renders again only when they change. */
export declare function useQuery<T = DefaultSchema[string]>(collection: string, query?: Query<T>): CollectionState<T>;

/** `useQuery` for Suspense: suspends until the first result; throws the query's error. */
export declare function useQuerySuspense<T = DefaultSchema[string]>(collection: string, query?: Query<T>): SyncRecord<T>[];

/** The hooks, typed by your schema. */
export interface SyncHooks<S> {
  useSyncEngine(): SyncEngine<S>;
  useEntity<C extends CollectionName<S>>(collection: C, id: string): EntityState<S[C], C>;
  useEntitySuspense<C extends CollectionName<S>>(collection: C, id: string): SyncRecord<S[C], C> | undefined;
  useCollection<C extends CollectionName<S>>(collection: C): CollectionState<S[C], C>;
  useCollectionSuspense<C extends CollectionName<S>>(collection: C): SyncRecord<S[C], C>[];
  useSyncStatus(): SyncStatus | undefined;
  useConflicts(): ConflictOf<S>[];
  useDeadLetters(): DeadLetterOf<S>[];
  useQueue(): PendingOpOf<S>[];
  useQuery<C extends CollectionName<S>>(collection: C, query?: Query<S[C]>): CollectionState<S[C], C>;
  useQuerySuspense<C extends CollectionName<S>>(collection: C, query?: Query<S[C]>): SyncRecord<S[C], C>[];
}

/**
 * ```ts
 * export const { useEntity, useCollection, useConflicts } = createSyncHooks<Schema>();
 * ```
 */
export declare function createSyncHooks<S = DefaultSchema>(): SyncHooks<S>;
