// tidesync/devtools: <SyncDevtools />, a debug panel for one engine: its status, fault injection,
// a live chart, the write queue, conflicts side by side, dead letters, the push channel and the event
// log. Plain React.createElement (no build step); the engine comes from the `engine` prop or from
// tidesync/react's <SyncProvider>, and the lists from its hooks (one cache per engine, shared with
// the app's own). Styles: one <style> of rules under the `tidesync-devtools` class. Types: ./devtools.d.ts.
import { createElement as h, useCallback, useEffect, useRef, useState, useSyncExternalStore } from 'react';
import { CLEAR_QUEUE_CONFIRMATION } from './index.js';
import { SyncProvider, useConflicts, useDeadLetters, useQueue, useSyncEngine, useSyncStatus } from './react.js';

const P = 'tidesync-devtools';
const c = (name) => `${P}-${name}`;

const CSS = `
.${P}{font:13px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1c1f2a;display:grid;gap:.45rem;min-width:0}
.${P} *{box-sizing:border-box}
.${P} h2{font-size:1rem;margin:0}
.${c('box')}{background:#fff;border:1px solid #dde;border-radius:6px;padding:.35rem .6rem;min-width:0}
.${c('box')}>summary{font-weight:600;cursor:pointer;margin:0 0 .2rem}
.${P} button{font:inherit;font-size:12px;padding:.15rem .5rem;border:1px solid #bbc;border-radius:4px;background:#fff;color:inherit;cursor:pointer}
.${P} button:hover:not(:disabled){background:#eef1f8}
.${P} button:disabled{opacity:.5;cursor:default}
.${P} button.${c('on')}{background:#fde8e8;border-color:#c53030}
.${P} input{font:inherit;font-size:12px;width:4.2em;padding:.1rem .2rem}
.${c('row')}{display:flex;flex-wrap:wrap;gap:.3rem;align-items:center;margin:.25rem 0}
.${c('muted')}{color:#667;font-size:12px;margin:.2rem 0}
.${c('error')}{color:#c53030;margin:0}
.${c('hint')}{background:#fff6e0;border-radius:4px;padding:.3rem .5rem;margin:.2rem 0;font-size:12px}
.${c('count')}{display:inline-block;min-width:1.4em;text-align:center;border-radius:999px;background:#eef;font-size:11px;font-weight:normal;margin-left:.3rem}
.${c('status')}{display:flex;flex-wrap:wrap;gap:.2rem .8rem;font-size:12px}
.${c('status')} b.${c('off')}{color:#c53030}
.${c('item')}{border-top:1px solid #dde;padding:.3rem 0;font-size:12px}
.${c('item')} p{margin:0 0 .25rem}
.${c('sides')}{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:.3rem}
.${c('sides')} h4{margin:0;font-size:11px;color:#667}
.${P} pre,.${P} textarea{font:11px/1.35 ui-monospace,monospace;background:#f6f7fa;border:1px solid #dde;border-radius:4px;padding:.25rem;margin:.15rem 0;white-space:pre-wrap;word-break:break-word;width:100%;overflow:auto;max-height:12em}
.${P} textarea{min-height:5em;resize:vertical}
.${P} table{width:100%;border-collapse:collapse;font-size:11px}
.${P} th,.${P} td{text-align:left;padding:.1rem .25rem;border-bottom:1px solid #dde;vertical-align:top}
.${c('kv')}{display:grid;grid-template-columns:auto 1fr;gap:.05rem .8rem;margin:0;font-size:12px}
.${c('kv')} dt{color:#667}
.${c('kv')} dd{margin:0;font-family:ui-monospace,monospace;word-break:break-word}
.${c('chart')}{margin:0;max-width:560px}
.${c('chart')} svg{display:block;background:#fafbfd;border:1px solid #dde;border-radius:4px}
.${c('chart')} polyline{fill:none;stroke-width:2}
.${c('chart')} text{font-size:9px}
.${c('chart')} figcaption{font-size:11px}
.${c('pending')}{color:#3867d6;fill:#3867d6}
.${c('requests')}{color:#e67e22;fill:#e67e22}
polyline.${c('pending')}{stroke:#3867d6}
polyline.${c('requests')}{stroke:#e67e22}
.${c('events')}{list-style:none;padding:0;margin:0;font:11px/1.4 ui-monospace,monospace;max-height:16rem;overflow:auto}
.${c('events')} li{border-bottom:1px dotted #dde}
.${c('events')} li.${c('bad')} b{color:#c53030}
.${c('events')} li.${c('warn')} b{color:#c77c02}
`;

const json = (v) => JSON.stringify(v, null, 2);
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const message = (e) => (e && typeof e.code === 'string' ? `${e.code}: ${e.message}` : String(e?.message ?? e));
const time = (ms) => new Date(ms).toLocaleTimeString();

function ago(ms, now) {
  if (ms == null) return 'never';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  return s < 60 ? `${s} s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : time(ms);
}

/** The current time, ticking every second while `active`. */
function useNow(active = true) {
  const [now, setNow] = useState(Date.now);
  useEffect(() => {
    if (!active) return undefined;
    setNow(Date.now());
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, [active]);
  return now;
}

function useEngine() {
  try {
    return useSyncEngine();
  } catch {
    throw new Error('tidesync/devtools: render <SyncDevtools engine={engine} />, or put it inside <SyncProvider engine={engine}>');
  }
}

// A collapsible section. `count` shows beside the title (test id `countId`).
function Box({ title, count, countId, testid, children }) {
  return h(
    'details',
    { className: c('box'), open: true, 'data-testid': testid },
    h('summary', null, title, count === undefined ? null : h('span', { className: c('count'), 'data-testid': countId }, count)),
    children,
  );
}

/**
 * The devtools panel. `engine` (optional inside a <SyncProvider>; `null` renders nothing),
 * `onFaultsChange(faults)` (the faults in force, whenever they change), `children` (the app's own
 * controls, shown with the fault buttons), `className`, `style`.
 */
export function SyncDevtools({ engine, ...props }) {
  if (engine === null) return null;
  const panel = h(Panel, props);
  return engine === undefined ? panel : h(SyncProvider, { engine }, panel);
}

function Panel({ onFaultsChange, children, className, style }) {
  const engine = useEngine();
  const [faults, setFaults] = useFaults(engine, onFaultsChange);
  const [error, setError] = useState('');
  // Runs a user action; its failure is shown at the top (background failures are in the log).
  const run = useCallback(async (f) => {
    setError('');
    try {
      await f();
    } catch (e) {
      setError(message(e));
    }
  }, []);
  return h(
    'div',
    { className: className ? `${P} ${className}` : P, style, role: 'region', 'aria-label': 'tidesync devtools', 'data-testid': 'sync-devtools' },
    h('style', null, CSS),
    h(Status, { engine, faults }),
    error && h('p', { role: 'alert', className: c('error'), 'data-testid': 'debug-error' }, error),
    h(Faults, { engine, run, faults, setFaults }, children),
    h(Chart, { engine }),
    h(Conflicts, { engine, run }),
    h(DeadLetters, { engine, run }),
    h(Queue),
    h(Realtime, { engine }),
    h(EventLog, { engine }),
  );
}

function Status({ engine, faults }) {
  const s = useSyncStatus();
  if (!s) return h('h2', null, 'tidesync');
  // setFaults() sends no event: the offline fault shows at once, status() with the next read.
  const online = s.online && !faults.offline;
  return h(
    'div',
    { className: c('status'), 'data-testid': 'devtools-status' },
    h('h2', null, `tidesync · ${engine.name}`),
    h('b', { className: online ? '' : c('off'), 'data-testid': 'devtools-online' }, online ? (s.flushing ? 'syncing' : 'online') : 'offline'),
    h('span', null, `${s.pending} pending`),
    h('span', null, `last sync ${s.lastSyncAt == null ? 'never' : time(s.lastSyncAt)}`),
    h('span', null, `network ${s.network.quality}, breaker ${s.breaker.state}`),
    s.lastError && h('span', { className: c('error'), title: s.lastError.message }, `last error ${s.lastError.code}`),
  );
}

// ---------------------------------------------------------------------------------------------
// Faults

const NO_FAULTS = Object.freeze({ offline: false, failNext: 0, failStatus: 0, latencyMs: 0 });

// The faults in force. failNext counts down inside the engine and the console (window.syncDebug)
// can change them too, so they are read again after events.
function useFaults(engine, onChange) {
  const [faults, setFaults] = useState(NO_FAULTS);
  const last = useRef(NO_FAULTS);
  const changed = useRef(onChange);
  changed.current = onChange;
  const apply = useCallback((f) => {
    if (same(f, last.current)) return;
    last.current = f;
    setFaults(f);
    changed.current?.(f);
  }, []);
  useEffect(() => {
    if (!engine.debug) return undefined;
    let alive = true;
    let queued = false;
    const read = () => {
      if (queued) return;
      queued = true;
      queueMicrotask(() => {
        queued = false;
        engine.setFaults({}).then((f) => alive && apply(f), () => {});
      });
    };
    read();
    const off = engine.subscribe(read);
    return () => {
      alive = false;
      off();
    };
  }, [engine, apply]);
  const set = useCallback(async (change) => apply(await engine.setFaults(change)), [engine, apply]);
  return [faults, set];
}

function NumberInput({ label, value, set, testid }) {
  return h('label', null, `${label} `, h('input', {
    type: 'number', min: 0, value, 'data-testid': testid, onChange: (e) => set(e.target.value),
  }));
}

function Faults({ engine, run, faults, setFaults, children }) {
  const [count, setCount] = useState('3');
  const [status, setStatus] = useState('503');
  const [latency, setLatency] = useState('800');
  const debug = engine.debug;
  // Back online: send what waited now rather than at the next round.
  const flushIf = async (wasOffline) => {
    if (wasOffline) await engine.flush();
  };
  const button = (testid, label, onClick, { on = false, title, always = false } = {}) =>
    h('button', { type: 'button', 'data-testid': testid, className: on ? c('on') : '', title, disabled: !debug && !always, onClick: () => void run(onClick) }, label);
  return h(
    Box,
    { title: 'Faults', testid: 'faults' },
    !debug && h('p', { className: c('hint'), 'data-testid': 'debug-hint' },
      'Fault injection and clearing the queue need an engine opened with ', h('code', null, 'debug: true'),
      ' (SyncEngine.open({ ..., debug: true })); this one was not.'),
    h('div', { className: c('row') },
      button('toggle-offline', faults.offline ? 'Go online' : 'Go offline', async () => {
        const was = faults.offline;
        await setFaults({ offline: !was });
        await flushIf(was);
      }, { on: faults.offline, title: 'This client\'s requests fail as if the device were offline' }),
      button('toggle-latency', faults.latencyMs ? `Remove latency (${faults.latencyMs} ms)` : `Add ${Number(latency) || 0} ms latency`,
        () => setFaults({ latencyMs: faults.latencyMs ? 0 : Number(latency) || 0 }), { on: !!faults.latencyMs }),
      h(NumberInput, { label: 'ms', value: latency, set: setLatency, testid: 'latency-ms' })),
    h('div', { className: c('row') },
      button('fail-next', `Fail next ${Number(count) || 0} (${Number(status) || 503})`,
        () => setFaults({ failNext: Number(count) || 0, failStatus: Number(status) || 503 }),
        { title: 'The next N requests (writes or pulls) fail with this status' }),
      h(NumberInput, { label: 'N', value: count, set: setCount, testid: 'fail-count' }),
      h(NumberInput, { label: 'status', value: status, set: setStatus, testid: 'fail-status' })),
    h('div', { className: c('row') },
      button('clear-faults', 'Clear faults', async () => {
        const was = faults.offline;
        await setFaults({ offline: false, failNext: 0, latencyMs: 0 });
        await flushIf(was);
      }),
      button('force-sync', 'Sync now', async () => {
        await engine.flush();
        await engine.pull();
      }, { always: true, title: 'Send what is due, then pull' }),
      button('clear-queue', 'Clear queue', async () => {
        if (globalThis.confirm?.('Discard every pending write? The server will never see them.')) {
          await engine.clearQueue(CLEAR_QUEUE_CONFIRMATION);
        }
      }, { title: 'Discard every pending write' })),
    faults.failNext > 0 && h('p', { className: c('muted'), 'data-testid': 'armed' },
      `next ${faults.failNext} request(s) fail with ${faults.failStatus || 503}`),
    children,
  );
}

// ---------------------------------------------------------------------------------------------
// Chart: pending writes and requests per second, sampled every second, in plain SVG.

const W = 340;
const H = 110;
const PAD = 26;
const SAMPLES = 90;

function useSamples(engine) {
  const [samples, setSamples] = useState([]);
  useEffect(() => {
    let alive = true;
    let requests = engine.requestCount;
    let at = Date.now();
    const sample = async () => {
      try {
        const [status, metrics] = await Promise.all([engine.status(), engine.metrics()]);
        const now = Date.now();
        const total = engine.requestCount;
        const perSecond = ((total - requests) * 1000) / Math.max(1, now - at);
        requests = total;
        at = now;
        if (alive) {
          setSamples((s) => [...s.slice(1 - SAMPLES), { at: now, pending: status.pending, requests: perSecond, total, latency: metrics.networkLatency }]);
        }
      } catch {
        // Closed: keep the last samples.
      }
    };
    void sample();
    const t = setInterval(() => void sample(), 1000);
    return () => {
      alive = false;
      clearInterval(t);
    };
  }, [engine]);
  return samples;
}

function Chart({ engine }) {
  const samples = useSamples(engine);
  const end = samples.length ? samples[samples.length - 1].at : Date.now();
  const span = SAMPLES * 1000;
  const maxPending = Math.max(4, ...samples.map((s) => s.pending));
  const maxRequests = Math.max(2, ...samples.map((s) => Math.ceil(s.requests)));
  const x = (at) => PAD + ((at - (end - span)) / span) * (W - 2 * PAD);
  const y = (v, max) => H - PAD / 2 - (v / max) * (H - PAD);
  const points = (key, max) => samples.map((s) => `${x(s.at).toFixed(1)},${y(s[key], max).toFixed(1)}`).join(' ');
  const last = samples[samples.length - 1];
  const text = (cls, tx, ty, v) => h('text', { className: c(cls), x: tx, y: ty }, v);
  return h(
    Box,
    { title: `Pending writes and requests (last ${SAMPLES} s)`, testid: 'chart' },
    h('figure', { className: c('chart') },
      h('svg', { viewBox: `0 0 ${W} ${H}`, width: '100%', role: 'img', 'aria-label': 'pending writes and requests per second over time' },
        h('line', { x1: PAD, y1: H - PAD / 2, x2: W - PAD, y2: H - PAD / 2, stroke: '#ccd' }),
        text('pending', 2, y(maxPending, maxPending) + 4, maxPending),
        text('pending', 2, H - PAD / 2, 0),
        text('requests', W - PAD + 3, y(maxRequests, maxRequests) + 4, `${maxRequests}/s`),
        text('requests', W - PAD + 3, H - PAD / 2, 0),
        h('polyline', { className: c('pending'), points: points('pending', maxPending), 'data-testid': 'chart-pending' }),
        h('polyline', { className: c('requests'), points: points('requests', maxRequests), 'data-testid': 'chart-requests' })),
      h('figcaption', null,
        h('span', { className: c('pending'), 'data-testid': 'chart-pending-now' }, `■ pending: ${last?.pending ?? 0}`), ' ',
        h('span', { className: c('requests') }, `■ requests: ${last ? last.requests.toFixed(1) : 0}/s`),
        h('span', { 'data-testid': 'chart-requests-total' }, ` · ${last?.total ?? engine.requestCount} sent`),
        ` · latency ${last?.latency == null ? '–' : `${Math.round(last.latency)} ms`} (avg)`)),
  );
}

// ---------------------------------------------------------------------------------------------
// Conflicts, dead letters, queue

// A proposal for the merged side: per field, the side that changed since the common base; when both
// changed, both texts (strings) or the local value.
function proposeMerge({ base, local, server }) {
  base ??= {};
  local ??= {};
  server ??= {};
  const out = {};
  for (const k of new Set([...Object.keys(server), ...Object.keys(local)])) {
    const l = local[k];
    const s = server[k];
    if (same(l, s) || same(l, base[k])) out[k] = s;
    else if (same(s, base[k])) out[k] = l;
    else out[k] = typeof l === 'string' && typeof s === 'string' ? `${s}\n${l}` : l;
  }
  return out;
}

function Conflicts({ engine, run }) {
  const conflicts = useConflicts();
  return h(
    Box,
    { title: 'Conflicts', count: conflicts.length, countId: 'conflict-count', testid: 'conflicts' },
    conflicts.length === 0 && h('p', { className: c('muted') }, 'None. Collections merged \'manual\' queue theirs here.'),
    conflicts.map((x) => h(Conflict, { key: x.id, conflict: x, engine, run })),
  );
}

function Conflict({ conflict: x, engine, run }) {
  const [merged, setMerged] = useState(() => json(proposeMerge(x)));
  let parsed;
  try {
    parsed = JSON.parse(merged);
  } catch {
    parsed = undefined;
  }
  const ok = parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed);
  const resolve = (choice) => () => void run(() => engine.resolveConflict(x.id, choice));
  const side = (name, value) => h('div', null, h('h4', null, name), h('pre', { 'data-testid': `conflict-${name}` }, json(value)));
  return h(
    'div',
    { className: c('item'), 'data-testid': 'conflict', 'data-entity': x.entityId, 'data-collection': x.collection },
    h('p', null, h('b', null, `${x.collection}/${x.entityId}`), ` · ${x.reason} conflict · server version ${x.serverVersion ?? '–'} · ${time(x.detectedAt)}`),
    h('div', { className: c('sides') }, side('base', x.base), side('local', x.local), side('server', x.server)),
    h('h4', { style: { margin: '.2rem 0 0', fontSize: 11, color: '#667' } }, 'merged (JSON)'),
    h('textarea', { 'data-testid': 'conflict-merged', value: merged, onChange: (e) => setMerged(e.target.value), 'aria-label': 'merged record (JSON)' }),
    h('div', { className: c('row') },
      h('button', { type: 'button', 'data-testid': 'resolve-local', onClick: resolve('local') }, 'Keep local'),
      h('button', { type: 'button', 'data-testid': 'resolve-server', onClick: resolve('server') }, 'Take server'),
      h('button', { type: 'button', 'data-testid': 'resolve-merged', disabled: !ok, onClick: resolve(parsed) }, ok ? 'Use merged' : 'Merged: not a JSON object')),
  );
}

// `HTTP 400: rejected ...`, without saying the code twice.
function why(d) {
  const head = `${d.code}${d.status ? ` ${d.status}` : ''}`;
  return d.error.startsWith(head) ? d.error : `${head}: ${d.error}`;
}

function DeadLetters({ engine, run }) {
  const letters = useDeadLetters();
  return h(
    Box,
    { title: 'Dead letters', count: letters.length, countId: 'dead-letter-count', testid: 'dead-letters' },
    letters.length === 0 && h('p', { className: c('muted') }, 'None. Writes the server refused for good land here.'),
    letters.length > 1 && h('div', { className: c('row') },
      h('button', { type: 'button', 'data-testid': 'retry-all-dead-letters', onClick: () => void run(async () => {
        for (const d of letters) await engine.retryDeadLetter(d.op.id);
      }) }, `Retry all ${letters.length}`)),
    letters.map((d) => h(
      'div',
      { key: d.op.id, className: c('item'), 'data-testid': 'dead-letter', 'data-entity': d.op.entityId, 'data-collection': d.op.collection },
      h('p', null, h('b', null, `${d.op.kind} ${d.op.collection}/${d.op.entityId}`),
        ` · ${why(d)} · ${d.op.attempts} attempt(s) · ${time(d.at)}`,
        d.maybeApplied ? ' · the server may have applied it' : ''),
      h('div', { className: c('row') },
        h('button', { type: 'button', 'data-testid': 'retry-dead-letter', onClick: () => void run(() => engine.retryDeadLetter(d.op.id)) }, 'Retry'),
        h('button', { type: 'button', 'data-testid': 'discard-dead-letter', onClick: () => void run(() => engine.discardDeadLetter(d.op.id)) }, 'Discard')),
    )),
  );
}

function Queue() {
  const queue = useQueue();
  const now = useNow(queue.length > 0);
  return h(
    Box,
    { title: 'Queue', count: queue.length, countId: 'queue-count', testid: 'queue' },
    queue.length === 0
      ? h('p', { className: c('muted') }, 'Empty: the server has every write.')
      : h('table', null,
        h('thead', null, h('tr', null, ['write', 'priority', 'attempts', 'next try', 'last error'].map((t) => h('th', { key: t }, t)))),
        h('tbody', null, queue.map((op) => h(
          'tr',
          { key: op.id, 'data-testid': 'queue-row', 'data-entity': op.entityId, 'data-collection': op.collection },
          h('td', { title: op.id }, `${op.kind} ${op.collection}/${op.entityId}${op.sent ? ' (sent)' : ''}`),
          h('td', null, op.priority),
          h('td', null, op.attempts),
          h('td', null, op.nextAttemptAt > now ? `in ${Math.ceil((op.nextAttemptAt - now) / 1000)} s` : 'due'),
          h('td', null, op.lastError ? `${op.lastStatus ? `${op.lastStatus} ` : ''}${op.lastError}` : ''),
        )))),
  );
}

// ---------------------------------------------------------------------------------------------
// Push channel: engine.realtimeStatus(), where the engine has one, read again on `realtime` events.

function useRealtime(engine) {
  const [value, setValue] = useState(undefined);
  useEffect(() => {
    let alive = true;
    const read = () => {
      if (typeof engine.realtimeStatus !== 'function') return setValue(undefined);
      let v;
      try {
        v = engine.realtimeStatus();
      } catch (e) {
        v = { error: message(e) };
      }
      // A copy: an engine may hand out the same object, changed.
      Promise.resolve(v).then((s) => alive && setValue(s == null ? undefined : { ...s }), (e) => alive && setValue({ error: message(e) }));
      return undefined;
    };
    read();
    const off = engine.subscribe((ev) => {
      if (ev.type === 'realtime') read();
    });
    return () => {
      alive = false;
      off();
    };
  }, [engine]);
  return value;
}

function show(key, v, now) {
  if (v == null) return '–';
  if (typeof v === 'number' && /At$/.test(key) && v > 1e11) return `${time(v)} (${ago(v, now)})`;
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

function Realtime({ engine }) {
  const status = useRealtime(engine);
  const on = status !== null && typeof status === 'object';
  const now = useNow(on);
  return h(
    Box,
    { title: 'Push channel', testid: 'realtime' },
    on
      ? h('dl', { className: c('kv'), 'data-testid': 'realtime-status', 'data-state': String(status.state ?? '') },
        Object.entries(status).flatMap(([k, v]) => [
          h('dt', { key: `${k}-k` }, k),
          h('dd', { key: `${k}-v`, 'data-testid': `realtime-${k}` }, show(k, v, now)),
        ]))
      : h('p', { className: c('muted'), 'data-testid': 'realtime-off' }, 'not enabled'),
  );
}

// ---------------------------------------------------------------------------------------------
// Event log: every event heard while a panel is open, per engine (kept across remounts), begun
// with window.syncDebug's log when that is this engine's.

const LOG_SIZE = 200;
const logs = new WeakMap();

function logOf(engine) {
  let log = logs.get(engine);
  if (!log) {
    log = { entries: [], listeners: new Set(), off: null };
    log.subscribe = (listener) => {
      log.listeners.add(listener);
      if (!log.off) {
        const dbg = globalThis.syncDebug;
        if (dbg && dbg.name === engine.name && dbg.userId === engine.userId && dbg.deviceId === engine.deviceId) {
          log.entries = dbg.events(LOG_SIZE);
        }
        log.off = engine.subscribe((event) => {
          log.entries = [...log.entries.slice(1 - LOG_SIZE), { at: Date.now(), event }];
          log.listeners.forEach((l) => l());
        });
      }
      return () => {
        log.listeners.delete(listener);
        if (log.listeners.size === 0) {
          log.off();
          log.off = null;
        }
      };
    };
    log.clear = () => {
      log.entries = [];
      log.listeners.forEach((l) => l());
    };
    logs.set(engine, log);
  }
  return log;
}

const BAD = new Set(['error', 'deadLetter', 'closed', 'blocked']);
const WARN = new Set(['conflict', 'stalled']);

function describe(e) {
  switch (e.type) {
    case 'change':
      return `${e.collection}/${e.id} ${e.deleted ? 'deleted' : e.syncStatus}`;
    case 'sync':
      return `sent ${e.report.sent}, accepted ${e.report.accepted}, remaining ${e.report.remaining}${e.report.offline ? ' (offline)' : ''}`;
    case 'error':
      return `${e.code}${e.status ? ` ${e.status}` : ''}: ${e.message}`;
    case 'conflict':
      return `${e.collection}/${e.id}`;
    case 'resolved':
      return `${e.entry.collection}/${e.entry.id} (${e.entry.how})`;
    case 'deadLetter':
      return `${e.collection}/${e.id}: ${e.message}`;
    case 'stalled':
      return e.retryAt ? `${e.message}; resent at ${time(e.retryAt)}` : e.message;
    case 'deadLetterDiscarded':
      return e.opId;
    case 'queueCleared':
      return `${e.discarded} write(s) discarded`;
    case 'closed':
    case 'blocked':
      return e.message;
    default: {
      // Events this version does not know (realtime, ...): their fields.
      const { type, remote, ...rest } = e;
      return JSON.stringify(rest);
    }
  }
}

function EventLog({ engine }) {
  const log = logOf(engine);
  const entries = useSyncExternalStore(log.subscribe, () => log.entries, () => log.entries);
  // Newest first; repeats (a retry loop while offline) folded into their newest line with a count.
  const rows = new Map();
  for (let i = entries.length - 1; i >= 0 && rows.size < 40; i--) {
    const { at, event } = entries[i];
    const text = describe(event);
    const key = `${event.type}${event.remote ? ' remote' : ''} ${text}`;
    const seen = rows.get(key);
    if (seen) seen.count += 1;
    else rows.set(key, { key, at, event, text, count: 1 });
  }
  return h(
    Box,
    { title: 'Events', count: entries.length, countId: 'event-count', testid: 'events' },
    h('div', { className: c('row') },
      h('button', { type: 'button', 'data-testid': 'clear-events', onClick: log.clear }, 'Clear'),
      h('span', { className: c('muted') }, `the last ${LOG_SIZE} events, newest first; repeats folded`)),
    h('ol', { className: c('events'), 'data-testid': 'event-log' },
      [...rows.values()].map(({ key, at, event, text, count }) => h(
        'li',
        { key, 'data-type': event.type, className: BAD.has(event.type) ? c('bad') : WARN.has(event.type) ? c('warn') : '' },
        h('span', { className: c('muted') }, time(at)), ' ', h('b', null, event.type),
        event.remote ? ' (other tab) ' : ' ', text,
        count > 1 ? h('span', { className: c('muted') }, ` ×${count}`) : null,
      ))),
  );
}
