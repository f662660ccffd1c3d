// The tidesync demo: a notes list kept in IndexedDB and synced to the server that serves this page.
import init, { SyncEngine } from './pkg/tidesync.js';

const $ = (testid) => document.querySelector(`[data-testid="${testid}"]`);
const list = $('notes');
const errorBox = $('error');

let engine;
try {
  await init();
  engine = await SyncEngine.open({
    name: 'demo',
    userId: 'local',
    baseUrl: location.origin,
    collections: { notes: { endpoint: '/api/notes' } },
    transport: 'batch',
  });
} catch (err) {
  showError(err);
  throw err;
}
// For poking at it from the console.
window.engine = engine;

function noteRow(note) {
  const li = document.createElement('li');
  li.dataset.testid = 'note-row';
  li.dataset.id = note.id;

  const title = document.createElement('span');
  title.className = 'title';
  title.dataset.testid = 'note-title';
  title.textContent = note.data?.title ?? '';

  const badge = document.createElement('span');
  badge.className = `badge ${note.syncStatus}`;
  badge.dataset.testid = 'note-status';
  badge.textContent = note.syncStatus;

  const rename = document.createElement('button');
  rename.type = 'button';
  rename.dataset.testid = 'rename';
  rename.textContent = 'Rename';
  rename.onclick = () => act(async () => {
    const next = prompt('New title', title.textContent);
    if (next) await engine.patch('notes', note.id, { title: next });
  });

  const remove = document.createElement('button');
  remove.type = 'button';
  remove.dataset.testid = 'delete';
  remove.textContent = 'Delete';
  remove.onclick = () => act(() => engine.delete('notes', note.id));

  li.append(title, badge, rename, remove);
  return li;
}

// Renders are async and events can arrive in bursts: run one at a time, and once more if asked meanwhile.
let rendering = null;
let again = false;
function render() {
  if (rendering) {
    again = true;
    return rendering;
  }
  rendering = (async () => {
    do {
      again = false;
      const [notes, status] = await Promise.all([engine.list('notes'), engine.status()]);
      notes.sort((a, b) => a.lastModified - b.lastModified || a.id.localeCompare(b.id));
      list.replaceChildren(...notes.map(noteRow));
      $('pending-count').textContent = String(status.pending);
    } while (again);
  })().catch(showError).finally(() => { rendering = null; });
  return rendering;
}

function showError(err) {
  errorBox.textContent = err?.code ? `${err.code}: ${err.message}` : String(err?.message ?? err);
}

async function act(fn) {
  errorBox.textContent = '';
  try {
    await fn();
  } catch (err) {
    showError(err);
  }
  await render();
}

$('new-note').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = $('new-title');
  const title = input.value.trim();
  if (!title) return;
  input.value = '';
  act(() => engine.put('notes', crypto.randomUUID(), { title, body: '' }, { priority: 'high' }));
});

$('sync-now').addEventListener('click', () => act(() => engine.flush()));

engine.subscribe((event) => {
  if (event.type === 'error') showError(event);
  render();
});

await render();
document.body.dataset.ready = 'true';
