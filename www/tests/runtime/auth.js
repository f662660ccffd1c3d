// Signing in for the runtime pages and their service worker, and marking their batch requests: POST /auth/token as the demo user
// alice (the server runs with --demo-users). Used as the engine's `auth` callback, so every call,
// the first and each one after a 401, gets a fresh token.
export async function signIn(user = 'alice') {
  const response = await fetch('/auth/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: user, password: user }),
  });
  if (!response.ok) throw new Error(`sign-in as ${user} answered ${response.status}`);
  return (await response.json()).token;
}

/** `request` with the header that names its sender (a tab, or `sw`) to the spec's recording proxy. */
export function withSource(request, source) {
  const marked = new Request(request);
  marked.headers.set('x-tidesync-test-source', source);
  return marked;
}
