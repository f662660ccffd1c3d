// Type-checks a React consumer of `tidesync/react` (compiles only, never runs).
import { memo, type ReactNode } from 'react';
import { createRoot } from 'react-dom/client';
import { SyncEngine, type SyncRecord, type SyncStatus } from 'tidesync';
import {
  SyncProvider,
  createSyncHooks,
  useCollection,
  useConflicts,
  useDeadLetters,
  useEntity,
  useSyncEngine,
  useSyncStatus,
} from 'tidesync/react';

interface Card {
  cardId: string;
  grade: 0 | 1 | 2 | 3;
  lastModified: string;
}
interface Schema {
  progress: Card;
  notes: { title: string };
}

const typed = createSyncHooks<Schema>();

function CardView({ id }: { id: string }): ReactNode {
  const { data, record, loading, error } = typed.useEntity('progress', id);
  if (loading) return <p>loading</p>;
  if (error) return <p>{error.code}</p>;
  const grade: 0 | 1 | 2 | 3 | undefined = data?.grade;
  return <p data-status={record?.syncStatus}>{grade ?? 'not graded'}</p>;
}

const Row = memo(function Row({ record }: { record: SyncRecord<Card> }) {
  return <li>{record.data.cardId}: {record.data.grade}</li>;
});

function Cards(): ReactNode {
  const { data } = typed.useCollection('progress');
  const engine = typed.useSyncEngine();
  return (
    <ul onClick={() => void engine.put('progress', 'c1', { cardId: 'c1', grade: 2, lastModified: new Date().toISOString() })}>
      {data.map((r) => <Row key={r.id} record={r} />)}
    </ul>
  );
}

function Untyped(): ReactNode {
  const note = useEntity<{ title: string }>('notes', 'n1');
  const all = useCollection('notes');
  const status: SyncStatus | undefined = useSyncStatus();
  const conflicts = useConflicts();
  const letters = useDeadLetters();
  const engine: SyncEngine = useSyncEngine();
  return (
    <div>
      {note.data?.title} {all.data.length} {status?.pending} {conflicts.length} {letters.length}
      <button onClick={() => void engine.flush()}>sync</button>
      {conflicts.map((c) => (
        <button key={c.id} onClick={() => void engine.resolveConflict(c.id, 'server')}>{c.entityId}</button>
      ))}
      {letters.map((d) => (
        <button key={d.op.id} onClick={() => void engine.retryDeadLetter(d.op.id)}>{d.code}</button>
      ))}
    </div>
  );
}

export async function main(el: HTMLElement): Promise<void> {
  const engine = await SyncEngine.open<Schema>({
    name: 'study',
    collections: { progress: { endpoint: '/api/progress' }, notes: { endpoint: '/api/notes', merge: { default: 'manual' } } },
  });
  createRoot(el).render(
    <SyncProvider engine={engine} fallback={<p>opening…</p>}>
      <CardView id="c1" />
      <Cards />
      <Untyped />
    </SyncProvider>,
  );
  // The provider renders its fallback while the engine is not open yet.
  createRoot(el).render(<SyncProvider engine={null} fallback="…"><Cards /></SyncProvider>);
}
