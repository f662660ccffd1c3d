// Grading: SM-2 style scheduling of a card and the study statistics.
import type { SyncEngine } from 'tidesync';
import type { Grade, Progress, Schema, Stats } from './sync';

export interface Card {
  id: string;
  /** Romaji: renders in any font. */
  front: string;
  kana: string;
  back: string;
}

export const CARDS: Card[] = [
  { id: 'te-iru', front: '~te iru', kana: '〜ている', back: 'ongoing action, or a resulting state' },
  { id: 'ta-koto-ga-aru', front: '~ta koto ga aru', kana: '〜たことがある', back: 'have done (experience)' },
  { id: 'nakereba-naranai', front: '~nakereba naranai', kana: '〜なければならない', back: 'must, have to' },
  { id: 'temo-ii', front: '~te mo ii', kana: '〜てもいい', back: 'may, it is all right to' },
  { id: 'sou-da', front: '~sou da', kana: '〜そうだ', back: 'looks like / I hear that' },
  { id: 'you-ni-suru', front: '~you ni suru', kana: '〜ようにする', back: 'make an effort to' },
  { id: 'bakari', front: '~bakari', kana: '〜ばかり', back: 'nothing but / just did' },
  { id: 'nagara', front: '~nagara', kana: '〜ながら', back: 'while doing' },
];

export const GRADES: { grade: Grade; label: string }[] = [
  { grade: 0, label: 'Again' },
  { grade: 1, label: 'Hard' },
  { grade: 2, label: 'Good' },
  { grade: 3, label: 'Easy' },
];

const DAY = 86_400_000;

export function nextProgress(cardId: string, prev: Progress | undefined, grade: Grade, seconds: number, now: Date): Progress {
  const repetitions = grade === 0 ? 0 : (prev?.repetitions ?? 0) + 1;
  const q = 3 - grade;
  const easeFactor = Math.max(1.3, (prev?.easeFactor ?? 2.5) + 0.1 - q * (0.08 + q * 0.02));
  const interval = grade === 0 ? 0 : repetitions === 1 ? 1 : repetitions === 2 ? 3 : Math.round((prev?.interval ?? 1) * easeFactor);
  return {
    cardId,
    grade,
    repetitions,
    interval,
    easeFactor: Math.round(easeFactor * 100) / 100,
    studyTimeSeconds: (prev?.studyTimeSeconds ?? 0) + seconds,
    lastModified: now.toISOString(),
  };
}

export function nextStats(prev: Stats | undefined, seconds: number, now: Date): Stats {
  const last = prev ? Math.floor(Date.parse(prev.lastStudyDate) / DAY) : undefined;
  const today = Math.floor(now.getTime() / DAY);
  const streak = last === today ? (prev?.currentStreak ?? 1) : last === today - 1 ? (prev?.currentStreak ?? 0) + 1 : 1;
  return {
    totalStudyTime: (prev?.totalStudyTime ?? 0) + seconds,
    totalCardsStudied: (prev?.totalCardsStudied ?? 0) + 1,
    currentStreak: streak,
    lastStudyDate: now.toISOString(),
  };
}

let lastActionAt = Date.now();

/** Records a grade: the card's progress syncs at once (high priority), the stats with the next batch. */
export async function gradeCard(engine: SyncEngine<Schema>, cardId: string, grade: Grade): Promise<void> {
  const now = new Date();
  const seconds = Math.min(60, Math.max(1, Math.round((now.getTime() - lastActionAt) / 1000)));
  lastActionAt = now.getTime();
  const prev = await engine.get('progress', cardId);
  await engine.put('progress', cardId, nextProgress(cardId, prev, grade, seconds, now), { priority: 'high' });
  const stats = await engine.get('stats', 'me');
  await engine.put('stats', 'me', nextStats(stats, seconds, now), { priority: 'medium' });
}
