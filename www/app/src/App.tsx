import { useEffect, useState } from 'react';
import { useActionError } from './actionError';
import { DebugPanel } from './DebugPanel';
import { FaultsProvider, useFaults } from './faults';
import { ago, useNow } from './live';
import { CARDS, GRADES, gradeCard, type Card } from './study';
import { device, useCollection, useEntity, useSyncEngine, useSyncStatus } from './sync';


export function App({ user, onSignOut }: { user: string; onSignOut: () => void }) {
  const [debugOpen, setDebugOpen] = useState(new URLSearchParams(location.search).get('debug') !== '0');
  useEffect(() => {
    document.body.dataset.ready = 'true';
  }, []);
  const other = device === 'b' ? 'a' : 'b';
  const otherUser = user === 'bob' ? 'alice' : 'bob';
  return (
    <FaultsProvider>
      <header className="top">
        <h1>
          tidesync study <small data-testid="device">{device ? `device ${device}` : 'this browser'}</small>
        </h1>
        <a className="hint" href={`?device=${other}&user=${user}`} target="_blank" rel="noreferrer">
          open device {other} in another window
        </a>
        <span className="hint">
          signed in as <strong data-testid="user">{user}</strong>{' '}
          <a href={`?device=${device}&user=${otherUser}`} target="_blank" rel="noreferrer">
            open as {otherUser}
          </a>{' '}
          <button type="button" data-testid="sign-out" onClick={onSignOut}>
            Sign out
          </button>
        </span>
        <SyncBadge />
        <button type="button" data-testid="toggle-debug" onClick={() => setDebugOpen(!debugOpen)}>
          {debugOpen ? 'Hide' : 'Show'} debug panel
        </button>
      </header>
      <main className={debugOpen ? 'layout with-debug' : 'layout'}>
        <div className="content">
          <Deck />
          <StatsView />
          <Notes />
        </div>
        {debugOpen && <DebugPanel />}
      </main>
    </FaultsProvider>
  );
}

function SyncBadge() {
  const status = useSyncStatus();
  const { faults } = useFaults();
  const now = useNow();
  const online = !!status?.online && !faults.offline;
  const state = !online ? 'offline' : status?.flushing ? 'syncing' : 'online';
  return (
    <div className={`sync-badge ${state}`} data-testid="sync-badge" title={status?.lastError?.message ?? ''}>
      <span className="dot" />
      <strong data-testid="online-state">{state}</strong>
      <span>
        pending <strong data-testid="pending-count">{status?.pending ?? 0}</strong>
      </span>
      {!!status?.conflicts && <span className="warn" data-testid="badge-conflicts">{status.conflicts} conflict(s)</span>}
      {!!status?.deadLetters && <span className="warn" data-testid="badge-dead">{status.deadLetters} failed</span>}
      <span data-testid="last-sync">last sync {ago(status?.lastSyncAt, now)}</span>
    </div>
  );
}

function Deck() {
  const { error, run } = useActionError();
  return (
    <section>
      <h2>Cards</h2>
      <p className="muted">Grade a card: its progress syncs at once, the statistics with the next batch.</p>
      {error && <p role="alert" className="error" data-testid="error">{error}</p>}
      <div className="cards">
        {CARDS.map((card) => (
          <CardView key={card.id} card={card} run={run} />
        ))}
      </div>
    </section>
  );
}

function CardView({ card, run }: { card: Card; run: (f: () => Promise<unknown>) => Promise<void> }) {
  const engine = useSyncEngine();
  const { data, record } = useEntity('progress', card.id);
  return (
    <article className="card" data-testid="card" data-id={card.id}>
      <div className="front" title={card.kana}>
        {card.front}
      </div>
      <div className="back">{card.back}</div>
      <div className="meta">
        <span data-testid="card-grade">{data ? `grade ${data.grade}` : 'not studied'}</span>
        {data && <span>· next in {data.interval} d</span>}
        {record && (
          <span className={`status ${record.syncStatus}`} data-testid="card-status">
            {record.syncStatus}
          </span>
        )}
      </div>
      <div className="grades">
        {GRADES.map(({ grade, label }) => (
          <button
            key={grade}
            type="button"
            data-testid={`grade-${grade}`}
            onClick={() => void run(() => gradeCard(engine, card.id, grade))}
          >
            {grade} {label}
          </button>
        ))}
      </div>
    </article>
  );
}

function StatsView() {
  const { data: stats, record } = useEntity('stats', 'me');
  return (
    <section>
      <h2>
        Statistics{' '}
        {record && <span className={`status ${record.syncStatus}`}>{record.syncStatus}</span>}
      </h2>
      <p className="muted">
        Merged by field: study time and cards studied take the maximum, the streak is the server's.
      </p>
      <dl className="stats" data-testid="stats">
        <dt>cards studied</dt>
        <dd data-testid="stat-cards">{stats?.totalCardsStudied ?? 0}</dd>
        <dt>study time</dt>
        <dd data-testid="stat-time">{stats?.totalStudyTime ?? 0} s</dd>
        <dt>streak</dt>
        <dd data-testid="stat-streak">{stats?.currentStreak ?? 0} d</dd>
      </dl>
    </section>
  );
}

function Notes() {
  const engine = useSyncEngine();
  const { data: notes } = useCollection('notes');
  const { error, run } = useActionError();
  const [title, setTitle] = useState('');
  return (
    <section>
      <h2>Notes</h2>
      <p className="muted">
        Merged <code>manual</code>: edit the same note in two windows (one offline) and resolve the conflict in the debug
        panel.
      </p>
      {error && <p role="alert" className="error" data-testid="error">{error}</p>}
      <form
        data-testid="new-note"
        onSubmit={(e) => {
          e.preventDefault();
          const t = title.trim();
          if (!t) return;
          setTitle('');
          void run(() => engine.put('notes', crypto.randomUUID(), { title: t, body: '' }, { priority: 'high' }));
        }}
      >
        <input data-testid="new-title" value={title} onChange={(e) => setTitle(e.target.value)} placeholder="New note title" />
        <button data-testid="add">Add</button>
      </form>
      <ul className="notes" data-testid="notes">
        {notes.map((n) => (
          <NoteRow key={n.id} id={n.id} title={n.data.title} body={n.data.body} syncStatus={n.syncStatus} run={run} />
        ))}
      </ul>
    </section>
  );
}

function NoteRow(props: {
  id: string;
  title: string;
  body: string;
  syncStatus: string;
  run: (f: () => Promise<unknown>) => Promise<void>;
}) {
  const engine = useSyncEngine();
  const [draft, setDraft] = useState(props.body);
  const [editing, setEditing] = useState(false);
  // Changes from other windows show up unless the user is typing.
  useEffect(() => {
    if (!editing) setDraft(props.body);
  }, [props.body, editing]);
  return (
    <li data-testid="note-row" data-id={props.id}>
      <div className="note-head">
        <span className="title" data-testid="note-title">{props.title}</span>
        <span className={`status ${props.syncStatus}`} data-testid="note-status">{props.syncStatus}</span>
        <button type="button" data-testid="delete" onClick={() => void props.run(() => engine.delete('notes', props.id))}>
          Delete
        </button>
      </div>
      <textarea
        data-testid="note-body"
        value={draft}
        placeholder="Body"
        onFocus={() => setEditing(true)}
        onBlur={() => setEditing(draft !== props.body)}
        onChange={(e) => setDraft(e.target.value)}
      />
      <button
        type="button"
        data-testid="note-save"
        disabled={draft === props.body}
        onClick={() =>
          void props.run(async () => {
            await engine.patch('notes', props.id, { body: draft }, { priority: 'high' });
            setEditing(false);
          })
        }
      >
        Save
      </button>
    </li>
  );
}
