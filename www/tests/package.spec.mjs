// The npm package as a user gets it: `npm pack` of pkg/, installed into an empty project, imported
// by its exports, type-checked by a strict consumer; and the hand-written entry kept in step with
// the Rust side (error codes, every generated method wrapped, the version).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PKG = path.join(ROOT, 'pkg');
const TSC = path.join(ROOT, 'www/node_modules/.bin/tsc');
const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

test('SYNC_ERROR_CODES and the SyncErrorCode type list exactly the Rust SyncError codes', async () => {
  const rust = await readFile(path.join(ROOT, 'src/core/error.rs'), 'utf8');
  const codes = [...rust.matchAll(/SyncError::\w+(?:\(_\)|\s*\{\s*\.\.\s*\})?\s*=>\s*"([A-Z_]+)"/g)].map((m) => m[1]);
  assert.ok(codes.length >= 10, `found only ${codes.length} codes in error.rs`);
  const { SYNC_ERROR_CODES } = await import(path.join(PKG, 'index.js'));
  assert.deepEqual([...SYNC_ERROR_CODES].sort(), [...new Set(codes)].sort());
  const dts = await readFile(path.join(PKG, 'index.d.ts'), 'utf8');
  const union = dts.match(/export type SyncErrorCode =([^;]+);/)[1];
  assert.deepEqual([...union.matchAll(/'([A-Z_]+)'/g)].map((m) => m[1]).sort(), [...new Set(codes)].sort());
});

test('the wrapper forwards every method and getter of the generated SyncEngine', async () => {
  const generated = await import(path.join(PKG, 'tidesync.js'));
  const wrapper = await import(path.join(PKG, 'index.js'));
  // `setLive` and `database` are for the package's own modules (realtime.js, query.js), not for apps.
  const skip = new Set(['constructor', 'free', '__destroy_into_raw', 'setLive', 'database']);
  const names = Object.getOwnPropertyNames(generated.SyncEngine.prototype).filter((n) => !skip.has(n));
  const missing = names.filter((n) => !(n in wrapper.SyncEngine.prototype));
  assert.deepEqual(missing, []);
  for (const fn of ['buildInfo', 'checksum', 'deleteDatabase']) assert.equal(typeof wrapper[fn], 'function');
});

test('npm pack gives a tarball that installs, imports and type-checks in an empty project', async () => {
  const cargo = await readFile(path.join(ROOT, 'Cargo.toml'), 'utf8');
  const crateVersion = cargo.match(/^version\s*=\s*"([^"]+)"/m)[1];
  const manifest = JSON.parse(await readFile(path.join(PKG, 'package.json'), 'utf8'));
  assert.equal(manifest.version, crateVersion, 'pkg/package.json and Cargo.toml versions differ');

  const dir = await mkdtemp(path.join(tmpdir(), 'tidesync-pack-'));
  try {
    const [packed] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', dir], PKG));
    const files = packed.files.map((f) => f.path).sort();
    for (const f of ['index.js', 'index.d.ts', 'react.js', 'react.d.ts', 'sw.js', 'sw.d.ts', 'devtools.js', 'devtools.d.ts', 'realtime.js', 'query.js', 'tidesync.js', 'tidesync_bg.wasm', 'package.json', 'README.md']) {
      assert.ok(files.includes(f), `${f} is not in the tarball: ${files.join(', ')}`);
    }
    // The entry points, and every target of the exports map is in the tarball.
    assert.deepEqual(Object.keys(manifest.exports).sort(), ['.', './devtools', './package.json', './react', './sw', './tidesync_bg.wasm']);
    for (const entry of Object.values(manifest.exports)) {
      for (const target of typeof entry === 'string' ? [entry] : Object.values(entry)) {
        assert.ok(files.includes(target.replace(/^\.\//, '')), `exports target ${target} is not packed`);
      }
    }

    const app = path.join(dir, 'app');
    await mkdir(app);
    await writeFile(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    run('npm', ['install', '--offline', '--no-audit', '--no-fund', path.join(dir, packed.filename)], app);

    // Node has no IndexedDB, but the wasm loads (from bytes) and reports its build.
    await writeFile(path.join(app, 'main.js'), `
      import { readFile } from 'node:fs/promises';
      import { createRequire } from 'node:module';
      import { init, buildInfo, checksum, isSyncError, SyncError } from 'tidesync';
      import { userOfTag } from 'tidesync/sw';
      const wasm = createRequire(import.meta.url).resolve('tidesync/tidesync_bg.wasm');
      await init(await readFile(wasm));
      console.log(JSON.stringify({
        info: buildInfo(),
        checksum: checksum({ b: 1, a: [1, 2] }),
        guard: isSyncError(new SyncError('OFFLINE', 'x'), 'OFFLINE'),
        user: userOfTag('tidesync:study:u1:sync', 'study'),
      }));`);
    const out = JSON.parse(run('node', ['main.js'], app));
    assert.equal(out.info.version, crateVersion);
    assert.equal(typeof out.info.schemaVersion, 'number');
    assert.match(out.info.gitSha, /^([0-9a-f]{7,}|unknown)$/);
    assert.match(out.checksum, /^[0-9a-f]{64}$/);
    assert.equal(out.guard, true);
    assert.equal(out.user, 'u1');

    await writeFile(path.join(app, 'consumer.ts'), `
      import { SyncEngine, isSyncError, type SyncStatus } from 'tidesync';
      import { handleBackgroundSync } from 'tidesync/sw';
      interface Schema { notes: { title: string } }
      export async function main(): Promise<SyncStatus> {
        const engine = await SyncEngine.open<Schema>({ name: 'n', collections: { notes: { endpoint: '/api/notes' } } });
        try { await engine.put('notes', 'a', { title: 'x' }); } catch (e) { if (!isSyncError(e, 'QUOTA_EXCEEDED')) throw e; }
        handleBackgroundSync({ name: 'n', collections: { notes: { endpoint: '/api/notes' } } });
        return engine.status();
      }`);
    run(TSC, ['--noEmit', '--strict', '--target', 'es2022', '--module', 'esnext', '--moduleResolution', 'bundler',
      '--lib', 'es2022,dom', '--types', '', 'consumer.ts'], app);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
