// "Server rejects next write": the demo answers this page's next batch request itself with a 400,
// as a backend's validation would. A whole-request 400 is permanent, so tidesync moves every write
// in that request to the dead letters, where the panel can retry or discard them. (Faults from
// engine.setFaults() hit pulls as well as writes; this one waits for a write.)
import { useSyncExternalStore } from 'react';

let armed = false;
const listeners = new Set<() => void>();
const set = (v: boolean) => {
  armed = v;
  listeners.forEach((l) => l());
};

const realFetch = globalThis.fetch.bind(globalThis);
globalThis.fetch = (input: RequestInfo | URL, init?: RequestInit) => {
  // tidesync calls fetch(url, init); other code may pass a Request.
  const url = input instanceof Request ? input.url : String(input);
  const method = input instanceof Request ? input.method : (init?.method ?? 'GET');
  if (armed && method === 'POST' && new URL(url, location.href).pathname.endsWith('/api/sync/batch')) {
    set(false);
    const body = { success: false, error: 'rejected by the demo (simulated validation error)', code: 'INVALID_REQUEST' };
    return Promise.resolve(new Response(JSON.stringify(body), { status: 400, headers: { 'content-type': 'application/json' } }));
  }
  return realFetch(input, init);
};

export function useRejectNextWrite(): [boolean, (on: boolean) => void] {
  const value = useSyncExternalStore(
    (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    () => armed,
  );
  return [value, set];
}
