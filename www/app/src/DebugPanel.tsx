// The debug panel: faults, the write queue, conflicts side by side, dead letters, a live chart and
// the event log. Everything here is also in the console as `window.syncDebug`.
import { useEffect, useState } from 'react';
import { CLEAR_QUEUE_CONFIRMATION, type DebugLogEntry, type SyncEvent } from 'tidesync';
import { useActionError } from './actionError';
import { Chart, type Sample } from './Chart';
import { useFaults } from './faults';
import { useRejectNextWrite } from './reject';
import { ago, useLive, useNow } from './live';
import { type Schema, useConflicts, useDeadLetters, useSyncEngine } from './sync';
import type { ConflictOf } from 'tidesync';

export function DebugPanel() {
  const { error, run } = useActionError();
  return (
    <aside className="debug" data-testid="debug-panel">
      <h2>Debug panel</h2>
      {error && <p role="alert" className="error" data-testid="debug-error">{error}</p>}
      <Controls run={run} />
      <LiveChart />
      <Conflicts run={run} />
      <DeadLetters run={run} />
      <Queue />
      <EventLog />
    </aside>
  );
}

type Run = (f: () => Promise<unknown>) => Promise<void>;

function Controls({ run }: { run: Run }) {
  const engine = useSyncEngine();
  const { faults, setFaults } = useFaults();
  const [rejecting, setRejecting] = useRejectNextWrite();
  return (
    <section>
      <h3>Network</h3>
      <div className="buttons">
        <button
          type="button"
          data-testid="toggle-offline"
          className={faults.offline ? 'on' : ''}
          onClick={() =>
            void run(async () => {
              await setFaults({ offline: !faults.offline });
              // Back online: send what waited rather than wait for the next round.
              if (faults.offline) await engine.flush();
            })
          }
        >
          {faults.offline ? 'Go online' : 'Go offline'}
        </button>
        <button
          type="button"
          data-testid="reject-next-write"
          className={rejecting ? 'on' : ''}
          title="The next write request is answered 400, as a validation error of your backend: its writes are dead-lettered"
          onClick={() => setRejecting(!rejecting)}
        >
          {rejecting ? 'Rejecting next write…' : 'Server rejects next write (400)'}
        </button>
        <button
          type="button"
          data-testid="fail-next-503"
          title="The next 3 requests (writes or pulls) fail with 503: writes are retried with backoff"
          onClick={() => void run(() => setFaults({ failNext: 3, failStatus: 503 }))}
        >
          Fail next 3 requests (503)
        </button>
        <button
          type="button"
          data-testid="toggle-latency"
          className={faults.latencyMs ? 'on' : ''}
          onClick={() => void run(() => setFaults({ latencyMs: faults.latencyMs ? 0 : 800 }))}
        >
          {faults.latencyMs ? 'Remove latency' : 'Add 800 ms latency'}
        </button>
        <button type="button" data-testid="force-sync" onClick={() => void run(() => window.syncDebug!.forceSync())}>
          Sync now
        </button>
        <button
          type="button"
          data-testid="clear-queue"
          onClick={() =>
            void run(async () => {
              if (confirm('Discard every pending write? The server will never see them.')) {
                await engine.clearQueue(CLEAR_QUEUE_CONFIRMATION);
              }
            })
          }
        >
          Clear queue
        </button>
      </div>
      {faults.failNext > 0 && (
        <p className="muted" data-testid="armed">
          next {faults.failNext} request(s) fail with {faults.failStatus || 503}
        </p>
      )}
      {rejecting && (
        <p className="muted" data-testid="rejecting">
          the next write request will be answered 400
        </p>
      )}
    </section>
  );
}

function LiveChart() {
  const engine = useSyncEngine();
  const [samples, setSamples] = useState<Sample[]>([]);
  useEffect(() => {
    let alive = true;
    const sample = async () => {
      try {
        const [status, metrics] = await Promise.all([engine.status(), engine.metrics()]);
        if (!alive) return;
        setSamples((s) => [...s.slice(-89), { at: Date.now(), queue: status.pending, latency: metrics.networkLatency }]);
      } catch {
        // closed
      }
    };
    void sample();
    const t = setInterval(() => void sample(), 1000);
    return () => {
      alive = false;
      clearInterval(t);
    };
  }, [engine]);
  return (
    <section>
      <h3>Queue and latency (last 90 s)</h3>
      <Chart samples={samples} />
    </section>
  );
}

// A proposal for the merged side: per field, the side that changed since the common base; when
// both changed, both texts.
function proposeMerge(c: ConflictOf<Schema>): Record<string, unknown> {
  const local = (c.local ?? {}) as Record<string, unknown>;
  const server = (c.server ?? {}) as Record<string, unknown>;
  const base = (c.base ?? {}) as Record<string, unknown>;
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  const out: Record<string, unknown> = {};
  for (const k of new Set([...Object.keys(server), ...Object.keys(local)])) {
    const l = local[k];
    const s = server[k];
    if (same(l, s) || same(l, base[k])) out[k] = s;
    else if (same(s, base[k])) out[k] = l;
    else out[k] = typeof l === 'string' && typeof s === 'string' ? `${s}\n${l}` : l;
  }
  return out;
}

const json = (v: unknown) => JSON.stringify(v, null, 2);

function Conflicts({ run }: { run: Run }) {
  const conflicts = useConflicts();
  return (
    <section>
      <h3>
        Conflicts <span className="count" data-testid="conflict-count">{conflicts.length}</span>
      </h3>
      {conflicts.length === 0 && <p className="muted">None. Collections merged &quot;manual&quot; (notes) queue them here.</p>}
      {conflicts.map((c) => (
        <ConflictView key={c.id} conflict={c} run={run} />
      ))}
    </section>
  );
}

function ConflictView({ conflict: c, run }: { conflict: ConflictOf<Schema>; run: Run }) {
  const engine = useSyncEngine();
  const [merged, setMerged] = useState(() => json(proposeMerge(c)));
  // Only notes are merged 'manual' in this demo.
  let parsed: Schema['notes'] | undefined;
  try {
    parsed = JSON.parse(merged) as Schema['notes'];
  } catch {
    parsed = undefined;
  }
  return (
    <div className="conflict" data-testid="conflict" data-entity={c.entityId}>
      <p>
        <strong>
          {c.collection}/{c.entityId}
        </strong>{' '}
        · {c.reason} conflict · server version {c.serverVersion ?? '–'}
      </p>
      <div className="sides">
        <div>
          <h4>local</h4>
          <pre data-testid="conflict-local">{json(c.local)}</pre>
          <button type="button" data-testid="resolve-local" onClick={() => void run(() => engine.resolveConflict(c.id, 'local'))}>
            Keep local
          </button>
        </div>
        <div>
          <h4>server</h4>
          <pre data-testid="conflict-server">{json(c.server)}</pre>
          <button type="button" data-testid="resolve-server" onClick={() => void run(() => engine.resolveConflict(c.id, 'server'))}>
            Take server
          </button>
        </div>
        <div>
          <h4>merged</h4>
          <textarea data-testid="conflict-merged" value={merged} onChange={(e) => setMerged(e.target.value)} />
          <button
            type="button"
            data-testid="resolve-merged"
            disabled={!parsed}
            onClick={() => void run(() => engine.resolveConflict(c.id, parsed!))}
          >
            Use merged
          </button>
        </div>
      </div>
    </div>
  );
}

function DeadLetters({ run }: { run: Run }) {
  const engine = useSyncEngine();
  const letters = useDeadLetters();
  return (
    <section>
      <h3>
        Dead letters <span className="count" data-testid="dead-letter-count">{letters.length}</span>
      </h3>
      {letters.length === 0 && <p className="muted">None. Writes the server refused for good land here.</p>}
      {letters.map((d) => (
        <div className="dead-letter" key={d.op.id} data-testid="dead-letter" data-entity={d.op.entityId}>
          <p>
            <strong>
              {d.op.kind} {d.op.collection}/{d.op.entityId}
            </strong>{' '}
            · {d.code}
            {d.status ? ` ${d.status}` : ''} · {d.error}
          </p>
          <button type="button" data-testid="retry-dead-letter" onClick={() => void run(() => engine.retryDeadLetter(d.op.id))}>
            Retry
          </button>
          <button type="button" data-testid="discard-dead-letter" onClick={() => void run(() => engine.discardDeadLetter(d.op.id))}>
            Discard
          </button>
        </div>
      ))}
    </section>
  );
}

function Queue() {
  const queue = useLive((e) => e.queue(), [], 1000);
  const now = useNow();
  return (
    <section>
      <h3>
        Queue <span className="count" data-testid="queue-count">{queue.length}</span>
      </h3>
      {queue.length === 0 ? (
        <p className="muted">Empty: the server has every write.</p>
      ) : (
        <table className="queue">
          <thead>
            <tr>
              <th>write</th>
              <th>priority</th>
              <th>attempts</th>
              <th>next try</th>
              <th>last error</th>
            </tr>
          </thead>
          <tbody>
            {queue.map((op) => (
              <tr key={op.id} data-testid="queue-row">
                <td>
                  {op.kind} {op.collection}/{op.entityId}
                </td>
                <td>{op.priority}</td>
                <td>{op.attempts}</td>
                <td>{op.nextAttemptAt > now ? `in ${Math.ceil((op.nextAttemptAt - now) / 1000)} s` : 'due'}</td>
                <td>{op.lastError ?? ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function describe(e: SyncEvent): string {
  switch (e.type) {
    case 'change':
      return `${e.collection}/${e.id} ${e.deleted ? 'deleted' : e.syncStatus}`;
    case 'sync':
      return `sent ${e.report.sent}, accepted ${e.report.accepted}, remaining ${e.report.remaining}`;
    case 'error':
      return `${e.code}${e.status ? ` ${e.status}` : ''}: ${e.message}`;
    case 'conflict':
      return `${e.collection}/${e.id}`;
    case 'resolved':
      return `${e.entry.collection}/${e.entry.id} (${e.entry.how})`;
    case 'deadLetter':
      return `${e.collection}/${e.id}: ${e.message}`;
    case 'stalled':
      return e.retryAt ? `${e.message}; resent at ${new Date(e.retryAt).toLocaleTimeString()}` : e.message;
    case 'deadLetterDiscarded':
      return e.opId;
    case 'queueCleared':
      return `${e.discarded} write(s) discarded`;
    case 'closed':
    case 'blocked':
      return e.message;
  }
}

function EventLog() {
  const events = useLive<DebugLogEntry[]>(() => window.syncDebug?.events(60) ?? [], []);
  const now = useNow();
  // Newest first; repeats (a retry loop while offline) folded into their newest line with a count.
  const byKey = new Map<string, { at: number; event: SyncEvent; text: string; count: number }>();
  for (const { at, event } of [...events].reverse()) {
    const text = describe(event);
    const key = `${event.type} ${text}`;
    const seen = byKey.get(key);
    if (seen) seen.count += 1;
    else byKey.set(key, { at, event, text, count: 1 });
  }
  const rows = [...byKey.values()];
  return (
    <section>
      <h3>Events</h3>
      <ol className="events" data-testid="event-log">
        {rows.slice(0, 15).map(({ at, event, text, count }, i) => (
          <li key={`${i}-${at}`} className={event.type}>
            <span className="when">{ago(at, now)}</span> <strong>{event.type}</strong>
            {'remote' in event && event.remote ? ' (other tab)' : ''} {text}
            {count > 1 && <span className="repeat"> ×{count}</span>}
          </li>
        ))}
      </ol>
    </section>
  );
}
