import { type FormEvent, useState } from 'react';
import { DEMO_USERS, type Session, signIn } from './session';

/** The sign-in form: a user name and password checked by the server (POST /auth/token). */
export function SignIn({ onSignedIn }: { onSignedIn: (session: Session) => void }) {
  const [user, setUser] = useState<string>(DEMO_USERS[0]);
  const [password, setPassword] = useState('');
  const [error, setError] = useState('');
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    try {
      // Checked once here so a typo shows at once, not as a failing sync later.
      await signIn({ user, password });
      onSignedIn({ user, password });
    } catch (err) {
      setError(String((err as Error).message ?? err));
    }
  };
  return (
    <form className="sign-in" data-testid="sign-in" onSubmit={submit}>
      <h1>tidesync study: sign in</h1>
      <label>
        user <input data-testid="sign-in-user" value={user} onChange={(e) => setUser(e.target.value)} />
      </label>
      <label>
        password{' '}
        <input data-testid="sign-in-password" type="password" value={password} onChange={(e) => setPassword(e.target.value)} />
      </label>
      <button type="submit" data-testid="sign-in-submit">Sign in</button>
      <p className="hint">Demo users (server started with --demo-users): {DEMO_USERS.map((u) => `${u} / ${u}`).join(', ')}.</p>
      {error && <p role="alert" data-testid="sign-in-error">{error}</p>}
    </form>
  );
}
