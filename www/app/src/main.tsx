import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { SyncProvider } from 'tidesync/react';
import { App } from './App';
import { openEngine } from './sync';

const root = createRoot(document.getElementById('root') as HTMLElement);
try {
  const engine = await openEngine();
  root.render(
    <StrictMode>
      <SyncProvider engine={engine}>
        <App />
      </SyncProvider>
    </StrictMode>,
  );
} catch (err) {
  // SyncError: a stable `code` to branch on, a message for people.
  const e = err as { code?: string; message?: string };
  root.render(<p role="alert" data-testid="error">Could not open the sync engine: {e.code ?? ''} {e.message ?? String(err)}</p>);
  throw err;
}
