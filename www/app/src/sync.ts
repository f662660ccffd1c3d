// The demo's records, its engine options and the typed hooks.
import { SyncEngine, type SyncOptions } from 'tidesync';
import { createSyncHooks } from 'tidesync/react';
import { type Session, signIn } from './session';

export type Grade = 0 | 1 | 2 | 3;

/** One card's learning state (the reference design's ProgressRecord). */
export interface Progress {
  cardId: string;
  grade: Grade;
  repetitions: number;
  /** Days until the card is due again. */
  interval: number;
  easeFactor: number;
  studyTimeSeconds: number;
  /** ISO time: what `lww` compares. */
  lastModified: string;
}

export interface Stats {
  totalStudyTime: number;
  totalCardsStudied: number;
  currentStreak: number;
  lastStudyDate: string;
}

export interface Note {
  title: string;
  body: string;
}

export interface Schema {
  progress: Progress;
  stats: Stats;
  notes: Note;
}

/** `?device=b` gives this window its own database: a second device syncing through the server. */
export const device = new URLSearchParams(location.search).get('device') ?? '';

// Short intervals so two windows visibly sync (the defaults are 30/60/120 s).
const network = {
  good: { intervalMs: 2000, batchSize: 10 },
  fair: { intervalMs: 4000, batchSize: 5 },
  poor: { intervalMs: 8000, batchSize: 2 },
};

/** The engine of one signed-in user: their own database on this device, their token on every request. */
export const engineOptions = (session: Session): SyncOptions<Schema> => ({
  name: device ? `study-${device}` : 'study',
  userId: session.user,
  // Asked for a token at start and again after a 401 (the token expired): sign in afresh.
  auth: () => signIn(session),
  baseUrl: location.origin,
  transport: 'batch',
  debug: true,
  network,
  // Another window (or device) sees a write within milliseconds, not at the next poll.
  realtime: true,
  collections: {
    progress: { endpoint: '/api/progress', merge: { default: 'lww' }, priority: 'high' },
    stats: {
      endpoint: '/api/stats',
      merge: { default: 'lww', fields: { totalStudyTime: 'max', totalCardsStudied: 'max', currentStreak: 'server' } },
    },
    notes: { endpoint: '/api/notes', merge: { default: 'manual' } },
  },
});

export const openEngine = (session: Session) => SyncEngine.open<Schema>(engineOptions(session));

export const { useSyncEngine, useEntity, useCollection, useSyncStatus, useConflicts, useDeadLetters } =
  createSyncHooks<Schema>();
