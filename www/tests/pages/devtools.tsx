// tidesync/devtools under test, imported as an app would. The query picks the setup:
//   ?db=NAME          the database (one per test)
//   &mode=prop        <SyncDevtools engine={engine} /> without a provider (default: inside <SyncProvider>)
//   &debug=0          an engine opened without `debug: true`
//   &realtime=1       a stand-in for engine.realtimeStatus() and its `realtime` events (the engine has
//                     no push channel yet); window.devtools.realtime(patch) changes it and emits one
// `window.devtools` has the engine and the faults <SyncDevtools onFaultsChange> reported.
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { SyncEngine, type DebugFaults, type SyncEvent } from 'tidesync';
import { SyncDevtools } from 'tidesync/devtools';
import { SyncProvider } from 'tidesync/react';
import { signIn } from '../../app/src/session';

interface Note {
  title: string;
  body: string;
}
interface Schema {
  notes: Note;
}

type RealtimeStatus = Record<string, unknown>;

declare global {
  interface Window {
    devtools: {
      engine: SyncEngine<Schema>;
      faults: DebugFaults[];
      realtime(patch: RealtimeStatus): void;
      ready: Promise<void>;
    };
  }
}

const params = new URLSearchParams(location.search);

// What another engineer's engine will have: realtimeStatus() and `realtime` events. Stood in for on
// this instance: subscribe() hands the listeners a `realtime` event besides the engine's own.
function fakeRealtime(engine: SyncEngine<Schema>) {
  let status: RealtimeStatus = { state: 'connecting', kind: 'sse', lastMessage: null, lastEventAt: null, reconnects: 0, leader: true };
  const listeners = new Set<(e: SyncEvent) => void>();
  const subscribe = engine.subscribe.bind(engine);
  Object.assign(engine, {
    realtimeStatus: () => status,
    subscribe(listener: (e: SyncEvent) => void) {
      listeners.add(listener);
      const off = subscribe(listener);
      return () => {
        listeners.delete(listener);
        off();
      };
    },
  });
  return (patch: RealtimeStatus) => {
    status = { ...status, ...patch };
    const event = { type: 'realtime', state: status.state } as unknown as SyncEvent;
    listeners.forEach((l) => l(event));
  };
}

async function main() {
  const engine = await SyncEngine.open<Schema>({
    name: params.get('db') ?? 'devtools',
    debug: params.get('debug') !== '0',
    // The spec sends with the panel's buttons or flush(): no background round to race its faults.
    autoSync: false,
    auth: () => signIn({ user: 'alice', password: 'alice' }),
    collections: { notes: { endpoint: '/api/notes', merge: { default: 'manual' } } },
  });
  const faults: DebugFaults[] = [];
  const realtime = params.get('realtime') === '1' ? fakeRealtime(engine) : () => {};
  const onFaultsChange = (f: DebugFaults) => faults.push(f);
  createRoot(document.getElementById('root') as HTMLElement).render(
    <StrictMode>
      {params.get('mode') === 'prop' ? (
        <SyncDevtools engine={engine} onFaultsChange={onFaultsChange} />
      ) : (
        <SyncProvider engine={engine}>
          <SyncDevtools onFaultsChange={onFaultsChange}>
            <button type="button" data-testid="app-control">the app's own control</button>
          </SyncDevtools>
        </SyncProvider>
      )}
    </StrictMode>,
  );
  Object.assign(window.devtools, { engine, faults, realtime });
}

window.devtools = { ready: main() } as Window['devtools'];
