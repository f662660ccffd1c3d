// tidesync's push channel (the `realtime` option): the server pokes ("collection X changed, event
// id N") and this device pulls that collection at once, instead of at its next poll.
//
// One connection per device: the tab holding the Web Lock `{db}:live` keeps it; the others hear
// its state on the BroadcastChannel `{db}#live` and the pulled changes on the engine's own channel.
// When that tab goes, the lock passes to another, which connects. Server-Sent Events by default
// (read with `fetch`, so the token goes in `Authorization` and `Last-Event-ID` is ours to send);
// `kind: 'websocket'` for a WebSocket (token as `?access_token=`). The wire format is in the README
// ("Push channel"). Loaded by index.js only for engines opened with `realtime`.

const DEFAULTS = { sse: '/api/sync/stream', websocket: '/api/sync/ws' };

export function startRealtime({ raw, options, dbName, emit }) {
  const given = options.realtime === true ? {} : options.realtime;
  const kind = given.kind ?? 'sse';
  if (!(kind in DEFAULTS)) throw new TypeError(`realtime.kind '${kind}' (expected 'sse' or 'websocket')`);
  const url = new URL(given.url ?? DEFAULTS[kind], (options.baseUrl ?? globalThis.location?.origin) + '/');
  const baseMs = given.backoff?.baseMs ?? 1000;
  const capMs = given.backoff?.capMs ?? 30000;
  const stop = new AbortController();
  const channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel(`${dbName}#live`) : null;
  const status = {
    kind, url: url.href, state: 'connecting', leader: false, lastEventId: null, lastMessage: null,
    messages: 0, pulls: 0, reconnects: 0, retryAt: null, error: null,
  };
  let token = null;
  let offline = false;
  // The attempt in progress (aborted to pause), and what ends the wait before the next one.
  let connection = null;
  let wake = () => {};

  const set = (changes) => {
    Object.assign(status, changes);
    if (status.leader) raw.setLive(status.state === 'open');
    if (status.leader) channel?.postMessage({ ...status });
    emit({ type: 'realtime', status: { ...status } });
  };

  // Followers mirror the leader; a tab that opens asks it to say where it stands.
  if (channel) {
    channel.onmessage = ({ data }) => {
      if (data === 'ask') {
        if (status.leader) channel.postMessage({ ...status });
      } else if (!status.leader && data && typeof data === 'object') {
        raw.setLive(data.state === 'open');
        set({ ...data, leader: false });
      }
    };
    channel.postMessage('ask');
  }

  // Pokes become pulls, coalesced: while one pull runs, later pokes wait and share the next one.
  const wanted = new Set();
  let pulling = false;
  let pullFailures = 0;
  async function drain() {
    pulling = true;
    for (let round = 0; wanted.size && !stop.signal.aborted; round++) {
      // The first poke of a burst pulls at once; a short pause after it lets the rest of the burst
      // share the next pull.
      if (round) await new Promise((resolve) => setTimeout(resolve, 30));
      const all = wanted.has('*');
      const batch = all ? [undefined] : [...wanted];
      wanted.clear();
      for (const c of batch) {
        try {
          await raw.pull(c);
          status.pulls++;
          pullFailures = 0;
        } catch (e) {
          // The server said something changed: try again later rather than drop it.
          wanted.add(c ?? '*');
          status.error = `pull failed: ${e?.message ?? e}`;
          await new Promise((resolve) => setTimeout(resolve, backoff(++pullFailures)));
        }
      }
    }
    pulling = false;
  }
  const want = (collection) => {
    wanted.add(typeof collection === 'string' && collection ? collection : '*');
    if (!pulling) drain();
  };

  // `poke`: that collection changed. `hello`: the server could not resume us, so anything may have
  // changed. Anything else (heartbeats, kinds of a later protocol) is ignored.
  function onMessage(m) {
    if (m.type !== 'poke' && m.type !== 'hello') return;
    if (m.id != null && m.id !== '') status.lastEventId = String(m.id);
    status.messages++;
    status.lastMessage = { type: m.type, collection: m.collection ?? null, id: m.id ?? null, at: Date.now() };
    want(m.type === 'poke' ? m.collection : '*');
    set({});
  }

  const backoff = (n) => Math.random() * Math.min(capMs, baseMs * 2 ** Math.min(n, 20));
  const sleep = (ms) => new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    wake = () => { clearTimeout(t); resolve(); };
  });

  async function auth(refresh) {
    if (!options.auth) return null;
    if (token && !refresh) return token;
    token = (await options.auth()) || null;
    return token;
  }

  // One connection, until it ends. Resolves { opened, status }.
  async function sse(signal, refresh) {
    const headers = { Accept: 'text/event-stream', 'X-Device-ID': raw.deviceId };
    const t = await auth(refresh);
    if (t) headers.Authorization = `Bearer ${t}`;
    if (status.lastEventId != null) headers['Last-Event-ID'] = status.lastEventId;
    const res = await fetch(url, { headers, signal, cache: 'no-store' });
    if (!res.ok || !res.body) return { opened: false, status: res.status };
    set({ state: 'open', retryAt: null, error: null });
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    let event = { data: [] };
    for (;;) {
      const { value, done } = await watch(reader.read(), signal);
      if (done) return { opened: true };
      buffer += value;
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === '') {
          if (event.data.length) {
            try {
              onMessage({ type: event.event, id: event.id, ...JSON.parse(event.data.join('\n')) });
            } catch {
              status.error = 'a push message was not JSON';
            }
          }
          event = { data: [] };
          continue;
        }
        const at = line.indexOf(':');
        const field = at < 0 ? line : line.slice(0, at);
        const text = at < 0 ? '' : line.slice(at + 1).replace(/^ /, '');
        if (field === 'data') event.data.push(text);
        else if (field === 'event' || field === 'id') event[field] = text;
      }
    }
  }

  function socket(signal, refresh) {
    return auth(refresh).then((t) => new Promise((resolve) => {
      const u = new URL(url);
      u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
      if (t) u.searchParams.set('access_token', t);
      u.searchParams.set('device', raw.deviceId);
      if (status.lastEventId != null) u.searchParams.set('lastEventId', status.lastEventId);
      const ws = new WebSocket(u);
      let opened = false;
      let beat;
      const alive = () => {
        clearTimeout(beat);
        beat = setTimeout(() => ws.close(), 45000);
      };
      ws.onopen = () => {
        opened = true;
        alive();
        set({ state: 'open', retryAt: null, error: null });
      };
      ws.onmessage = (e) => {
        alive();
        try {
          onMessage(JSON.parse(e.data));
        } catch {
          status.error = 'a push message was not JSON';
        }
      };
      // A refused handshake (an expired token, or a server down) shows only as a close before
      // opening: the next attempt asks for a fresh token.
      ws.onclose = () => {
        clearTimeout(beat);
        resolve({ opened, stale: !opened });
      };
      signal.addEventListener('abort', () => ws.close(), { once: true });
    }));
  }

  // A read that hears nothing, not even a heartbeat, for 45 s means a dead connection.
  function watch(read, signal) {
    let t;
    const dead = new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error('no heartbeat')), 45000);
    });
    return Promise.race([read, dead]).finally(() => clearTimeout(t)).catch((e) => {
      if (!signal.aborted) throw e;
      return { done: true };
    });
  }

  async function lead() {
    set({ leader: true, state: 'connecting' });
    let failures = 0;
    let refresh = false;
    while (!stop.signal.aborted) {
      if (offline || globalThis.navigator?.onLine === false) {
        set({ state: 'offline' });
        await sleep(60000);
        continue;
      }
      set({ state: 'connecting' });
      const attempt = new AbortController();
      const cancel = () => attempt.abort();
      stop.signal.addEventListener('abort', cancel, { once: true });
      connection = attempt;
      let result;
      try {
        result = await (kind === 'sse' ? sse : socket)(attempt.signal, refresh);
      } catch (e) {
        result = { opened: status.state === 'open', error: e };
      }
      stop.signal.removeEventListener('abort', cancel);
      attempt.abort();
      if (stop.signal.aborted) break;
      // Refused for the token: ask for a fresh one and try again at once, once.
      const retryNow = result.status === 401 && !refresh;
      refresh = retryNow || !!result.stale;
      failures = result.opened ? 0 : failures + 1;
      status.reconnects++;
      const error = result.error?.message ?? (result.status ? `HTTP ${result.status}` : 'closed');
      if (retryNow) {
        set({ state: 'connecting', error });
        continue;
      }
      // Full jitter: after a server restart, devices come back spread over the window, not at once.
      const delay = backoff(failures + 1);
      set({ state: 'backoff', retryAt: Date.now() + Math.round(delay), error });
      await sleep(delay);
    }
  }

  const pause = (off) => {
    offline = off;
    connection?.abort();
    wake();
  };
  const onOnline = () => pause(false);
  const onOffline = () => pause(true);
  globalThis.addEventListener?.('online', onOnline);
  globalThis.addEventListener?.('offline', onOffline);

  const locks = globalThis.navigator?.locks;
  if (locks?.request) {
    set({ state: 'follower' });
    locks.request(`${dbName}:live`, { signal: stop.signal }, lead).catch(() => {});
  } else {
    lead();
  }

  return {
    status: () => ({ ...status }),
    /** The debug tools' offline switch pauses the channel too. */
    setOffline: (off) => (off === offline ? undefined : off ? onOffline() : onOnline()),
    close() {
      stop.abort();
      wake();
      globalThis.removeEventListener?.('online', onOnline);
      globalThis.removeEventListener?.('offline', onOffline);
      if (status.leader) {
        raw.setLive(false);
        channel?.postMessage({ ...status, state: 'closed' });
      }
      channel?.close();
      Object.assign(status, { state: 'closed', leader: false });
    },
  };
}
