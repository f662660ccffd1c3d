import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { SyncProvider } from 'tidesync/react';
import { App } from './App';
import { currentSession, remember, type Session } from './session';
import { SignIn } from './SignIn';
import { openEngine } from './sync';

const root = createRoot(document.getElementById('root') as HTMLElement);

async function start(session: Session) {
  try {
    const engine = await openEngine(session);
    const signOut = () => {
      remember(null);
      engine.close();
      const params = new URLSearchParams(location.search);
      params.delete('user');
      location.search = params.toString();
    };
    root.render(
      <StrictMode>
        <SyncProvider engine={engine}>
          <App user={session.user} onSignOut={signOut} />
        </SyncProvider>
      </StrictMode>,
    );
  } catch (err) {
    // SyncError: a stable `code` to branch on, a message for people.
    const e = err as { code?: string; message?: string };
    root.render(<p role="alert" data-testid="error">Could not open the sync engine: {e.code ?? ''} {e.message ?? String(err)}</p>);
    throw err;
  }
}

const session = currentSession();
if (session) {
  await start(session);
} else {
  const signedIn = (s: Session) => {
    remember(s);
    void start(s);
  };
  root.render(
    <StrictMode>
      <SignIn onSignedIn={signedIn} />
    </StrictMode>,
  );
  document.body.dataset.ready = 'sign-in';
}
