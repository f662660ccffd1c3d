// useQuery and the Suspense hooks (useQuerySuspense, useEntitySuspense, useCollectionSuspense) under test: each component counts its renders in data-renders, so the
// spec can tell which re-rendered after a write. `window.queries` has the engine.
import { StrictMode, Suspense, useRef } from 'react';
import { createRoot } from 'react-dom/client';
import { SyncEngine } from 'tidesync';
import { SyncProvider, createSyncHooks } from 'tidesync/react';

interface Card {
  done: boolean;
  due: number;
}
interface Schema {
  cards: Card;
  other: Card;
}
const { useQuery, useQuerySuspense, useEntitySuspense, useCollectionSuspense } = createSyncHooks<Schema>();

function useRenders(): number {
  const n = useRef(0);
  n.current += 1;
  return n.current;
}

function Due() {
  const renders = useRenders();
  const { data, loading } = useQuery('cards', { where: { done: false }, orderBy: 'due', limit: 3 });
  return <p data-testid="due" data-renders={renders} data-loading={loading}>{data.map((r) => r.id).join(',')}</p>;
}

function DueSuspended() {
  const renders = useRenders();
  const records = useQuerySuspense('cards', { orderBy: ['due', 'desc'], limit: 2 });
  return <p data-testid="suspended" data-renders={renders}>{records.map((r) => r.id).join(',')}</p>;
}

function OneSuspended() {
  const renders = useRenders();
  const record = useEntitySuspense('cards', 'c3');
  return <p data-testid="entity" data-renders={renders}>{record ? `${record.id}:${record.data.due}` : 'none'}</p>;
}

function AllSuspended() {
  const renders = useRenders();
  const records = useCollectionSuspense('other');
  return <p data-testid="collection" data-renders={renders}>{records.map((r) => r.id).join(',') || 'empty'}</p>;
}

declare global {
  interface Window {
    queries: { engine: SyncEngine<Schema>; ready: Promise<void> };
  }
}

async function main() {
  const engine = await SyncEngine.open<Schema>({
    name: new URLSearchParams(location.search).get('db') ?? 'queries',
    autoSync: false,
    collections: {
      cards: { endpoint: '/api/cards', indexes: ['due', ['done', 'due']] },
      other: { endpoint: '/api/other' },
    },
  });
  await engine.putMany('cards', [1, 2, 3, 4, 5].map((i) => ({ id: `c${i}`, data: { done: i % 2 === 0, due: i } })));
  createRoot(document.getElementById('root') as HTMLElement).render(
    <StrictMode>
      <SyncProvider engine={engine}>
        <Due />
        <Suspense fallback={<p data-testid="suspended">loading</p>}>
          <DueSuspended />
        </Suspense>
        <Suspense fallback={<p data-testid="entity">loading</p>}>
          <OneSuspended />
        </Suspense>
        <Suspense fallback={<p data-testid="collection">loading</p>}>
          <AllSuspended />
        </Suspense>
      </SyncProvider>
    </StrictMode>,
  );
  window.queries.engine = engine;
}

window.queries = { engine: undefined as unknown as SyncEngine<Schema>, ready: main() };
