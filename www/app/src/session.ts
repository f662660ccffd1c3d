// Signing in to the reference server: POST /auth/token with a user name and password answers a
// short-lived JWT. The engine asks `auth()` for a token when it has none, and once more after a
// 401 (an expired token): each call signs in again, so the page keeps the credentials in memory
// (sessionStorage: this tab only) instead of the token. A real app would use its own identity
// provider's refresh flow here.

export interface Session {
  user: string;
  password: string;
}

/** The demo users the server adds with --demo-users (each password is the user's name). */
export const DEMO_USERS = ['alice', 'bob'] as const;

const KEY = 'tidesync-demo-session';

export class SignInError extends Error {}

/** A fresh token for the session, from the server of this page. */
export async function signIn({ user, password }: Session): Promise<string> {
  const response = await fetch('/auth/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: user, password }),
  });
  const body = (await response.json().catch(() => ({}))) as { token?: string; error?: string };
  if (!response.ok || !body.token) throw new SignInError(body.error ?? `sign-in answered ${response.status}`);
  return body.token;
}

/**
 * The session of this tab: `?user=alice` signs in as that demo user (what the tests and the
 * "open as bob" link use), else the one remembered by the sign-in form, else none.
 */
export function currentSession(): Session | null {
  const user = new URLSearchParams(location.search).get('user');
  if (user) return { user, password: user };
  const saved = sessionStorage.getItem(KEY);
  return saved ? (JSON.parse(saved) as Session) : null;
}

export function remember(session: Session | null) {
  if (session) sessionStorage.setItem(KEY, JSON.stringify(session));
  else sessionStorage.removeItem(KEY);
}
