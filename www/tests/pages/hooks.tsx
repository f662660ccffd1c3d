// tidesync/react under test: every component counts its renders in data-renders, so the spec can
// tell which ones re-rendered after a write. `window.hooks` has the engine and a render helper.
import { memo, StrictMode, useRef } from 'react';
import { createRoot } from 'react-dom/client';
import { SyncEngine, type SyncRecord } from 'tidesync';
import { SyncProvider, useCollection, useConflicts, useDeadLetters, useEntity, useSyncStatus } from 'tidesync/react';
import { signIn } from '../../app/src/session';

function useRenders(): number {
  const n = useRef(0);
  n.current += 1;
  return n.current;
}

function Entity({ collection, id }: { collection: string; id: string }) {
  const renders = useRenders();
  const { data, record, loading } = useEntity(collection, id);
  return (
    <p data-testid={`entity-${collection}-${id}`} data-renders={renders} data-loading={loading} data-status={record?.syncStatus ?? ''}>
      {data ? JSON.stringify(data) : 'none'}
    </p>
  );
}

const Row = memo(function Row({ record }: { record: SyncRecord }) {
  const renders = useRenders();
  return (
    <li data-testid={`row-${record.collection}-${record.id}`} data-renders={renders}>
      {JSON.stringify(record.data)}
    </li>
  );
});

function Collection({ collection }: { collection: string }) {
  const renders = useRenders();
  const { data, loading } = useCollection(collection);
  return (
    <ul data-testid={`collection-${collection}`} data-renders={renders} data-loading={loading} data-count={data.length}>
      {data.map((r) => (
        <Row key={r.id} record={r} />
      ))}
    </ul>
  );
}

function Status() {
  const renders = useRenders();
  const status = useSyncStatus();
  const conflicts = useConflicts();
  const letters = useDeadLetters();
  return (
    <p
      data-testid="status"
      data-renders={renders}
      data-pending={status?.pending ?? ''}
      data-conflicts={conflicts.length}
      data-dead={letters.length}
    />
  );
}

declare global {
  interface Window {
    hooks: { engine: SyncEngine; ready: Promise<void> };
  }
}

async function main() {
  const name = new URLSearchParams(location.search).get('db') ?? 'hooks';
  const engine = await SyncEngine.open({
    name,
    debug: true,
    autoSync: false,
    auth: () => signIn({ user: 'alice', password: 'alice' }),
    collections: { a: { endpoint: '/api/hooks-a' }, b: { endpoint: '/api/hooks-b' } },
  });
  createRoot(document.getElementById('root') as HTMLElement).render(
    <StrictMode>
      <SyncProvider engine={engine}>
        <Entity collection="a" id="x" />
        <Entity collection="a" id="y" />
        <Entity collection="b" id="x" />
        <Collection collection="a" />
        <Collection collection="b" />
        <Status />
      </SyncProvider>
    </StrictMode>,
  );
  window.hooks.engine = engine as SyncEngine;
}

window.hooks = { engine: undefined as unknown as SyncEngine, ready: main() };
