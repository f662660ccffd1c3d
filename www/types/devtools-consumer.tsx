// Type-checks a consumer of `tidesync/devtools` (compiles only, never runs).
import type { ReactNode } from 'react';
import { createRoot } from 'react-dom/client';
import { SyncEngine, type DebugFaults } from 'tidesync';
import { SyncDevtools, type SyncDevtoolsProps } from 'tidesync/devtools';
import { SyncProvider, createSyncHooks } from 'tidesync/react';

interface Schema {
  notes: { title: string; body: string };
}

const { useQueue } = createSyncHooks<Schema>();

function Pending(): ReactNode {
  const queue = useQueue();
  const title: string | undefined = queue[0]?.payload?.title;
  return <p>{queue.length} pending {title}</p>;
}

export async function main(el: HTMLElement): Promise<void> {
  const engine = await SyncEngine.open<Schema>({ name: 'app', debug: true, collections: { notes: { endpoint: '/api/notes' } } });
  const seen: DebugFaults[] = [];
  createRoot(el).render(
    <SyncProvider engine={engine}>
      <Pending />
      {/* From the provider, with the app's own controls beside the fault buttons. */}
      <SyncDevtools onFaultsChange={(f) => seen.push(f)} className="mine" style={{ maxWidth: 480 }}>
        <button type="button">reset my backend</button>
      </SyncDevtools>
    </SyncProvider>,
  );
  // Without a provider: the engine as a prop; `null` while it opens.
  createRoot(el).render(<SyncDevtools engine={engine} />);
  createRoot(el).render(<SyncDevtools engine={null} />);
  const props: SyncDevtoolsProps<Schema> = { engine };
  createRoot(el).render(<SyncDevtools {...props} />);
  // @ts-expect-error: not an engine
  createRoot(el).render(<SyncDevtools engine={{ name: 'x' }} />);
  // @ts-expect-error: onFaultsChange gets the faults
  createRoot(el).render(<SyncDevtools onFaultsChange={(f: string) => f} />);
}
