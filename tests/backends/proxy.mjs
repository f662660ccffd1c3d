#!/usr/bin/env node
// The conformance suite's reverse proxy (www/tests/conformance.spec.mjs): the browser talks only to
// it, so every backend is same-origin with the test page (no CORS), and it injects the faults a real
// network has. Node 20, no dependencies, loopback only.
//
// - Static files: `mounts` maps URL prefixes to directories (`/pkg/` -> the npm package, `/conformance/`
//   -> the test page).
// - Backends: `routes` maps URL prefixes to backend URLs; the rest of the path and the query are kept:
//   with `/api/notes` -> `http://127.0.0.1:PORT/notes`, `GET /api/notes/n1?x=1` goes to `/notes/n1?x=1`.
//   The longest matching prefix wins; a prefix matches at a path-segment boundary only.
// - Faults on forwarded requests, set with `POST /__proxy/faults` `{fail5xx, drop, latencyMs, seed}`
//   (omitted fields: off) and read with `GET /__proxy/faults`:
//     latencyMs  every forwarded request waits this long first;
//     fail5xx    this share of requests (0..1) is answered 503 without reaching the backend; every
//                other such answer carries `Retry-After: 0`;
//     drop       this share is forwarded and applied by the backend, then the browser's connection is
//                destroyed before it sees the answer (a "maybe applied" write);
//     seed       the random draws are reproducible from it.
// - `GET /__proxy/log`: every write request (not GET/HEAD) that reached the proxy, in order: method,
//   path, backend path, Idempotency-Key, X-Operation-ID, X-Client-Version, If-Match, X-Device-ID,
//   request body, the backend's status (null when the fault answered instead), the fault, start and
//   end times; and `reads`: the GET/HEAD requests, with the same times, device, status and fault. `DELETE /__proxy/log` clears both.
//
//   node tests/backends/proxy.mjs --port 0 --mount /pkg/=pkg --route /api/notes=http://127.0.0.1:3000/notes
//
// prints `listening on http://127.0.0.1:PORT`. Or `import { startProxy } from './proxy.mjs'`.
import http from 'node:http';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.map': 'application/json; charset=utf-8',
  '.ts': 'text/plain; charset=utf-8',
};

// Hop-by-hop headers (RFC 9110 7.6.1) are the proxy's own on each side.
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host', 'content-length']);

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

function isLoopbackAddress(addr) {
  return addr === '::1' || addr?.startsWith('127.') || addr?.startsWith('::ffff:127.');
}

/** mulberry32: a small seeded PRNG, enough to make fault draws (and the suite's workload) reproducible. */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function normalizePrefix(p) {
  if (!p.startsWith('/')) throw new Error(`prefix ${p} must start with /`);
  return p.length > 1 ? p.replace(/\/+$/, '') : p;
}

/** `prefix` matches `pathname` at a segment boundary. */
function matches(prefix, pathname) {
  return prefix === '/' || pathname === prefix || pathname.startsWith(`${prefix}/`);
}

/**
 * Starts the proxy. `routes`: { prefix: backendUrl }, `mounts`: { prefix: directory }.
 * Resolves to { url, port, server, setFaults, faults(), log, close() }.
 */
export async function startProxy({ routes = {}, mounts = {}, port = 0, host = '127.0.0.1' } = {}) {
  if (!LOOPBACK_HOSTS.has(host)) throw new Error(`the proxy listens on loopback only, not ${host}`);
  const routeList = Object.entries(routes).map(([prefix, target]) => {
    const u = new URL(target);
    if (u.protocol !== 'http:' || !LOOPBACK_HOSTS.has(u.hostname)) {
      throw new Error(`backend ${target}: only http:// on a loopback address`);
    }
    return { prefix: normalizePrefix(prefix), target: u };
  });
  routeList.sort((a, b) => b.prefix.length - a.prefix.length);
  const mountList = Object.entries(mounts)
    .map(([prefix, dir]) => ({ prefix: normalizePrefix(prefix), dir: path.resolve(dir) }))
    .sort((a, b) => b.prefix.length - a.prefix.length);

  let faults = { fail5xx: 0, drop: 0, latencyMs: 0, seed: 1 };
  let random = rng(faults.seed);
  let failures = 0;
  const log = [];
  const reads = [];
  const counts = { forwarded: 0, failed5xx: 0, dropped: 0, reads: 0 };

  function setFaults(f = {}) {
    const next = { fail5xx: 0, drop: 0, latencyMs: 0, seed: 1, ...f };
    for (const k of ['fail5xx', 'drop']) {
      if (typeof next[k] !== 'number' || next[k] < 0 || next[k] > 1) throw new Error(`${k} must be a number in 0..1`);
    }
    if (!Number.isInteger(next.latencyMs) || next.latencyMs < 0) throw new Error('latencyMs must be a non-negative integer');
    if (!Number.isInteger(next.seed)) throw new Error('seed must be an integer');
    faults = next;
    random = rng(next.seed);
    failures = 0;
    return faults;
  }

  const json = (res, status, body) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };

  const readBody = (req) =>
    new Promise((resolve, reject) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => resolve(Buffer.concat(chunks)));
      req.on('error', reject);
    });

  async function serveStatic(req, res, pathname) {
    const mount = mountList.find((m) => matches(m.prefix, pathname));
    if (!mount) return json(res, 404, { error: `nothing at ${pathname}` });
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { error: 'static files are read-only' });
    let rel;
    try {
      rel = decodeURIComponent(pathname.slice(mount.prefix === '/' ? 1 : mount.prefix.length + 1));
    } catch {
      return json(res, 400, { error: 'bad path' });
    }
    let file = path.resolve(mount.dir, rel);
    if (file !== mount.dir && !file.startsWith(mount.dir + path.sep)) return json(res, 403, { error: 'outside the mount' });
    let st = await stat(file).catch(() => null);
    if (st?.isDirectory()) {
      if (!pathname.endsWith('/')) {
        res.writeHead(301, { location: `${pathname}/` });
        return res.end();
      }
      file = path.join(file, 'index.html');
      st = await stat(file).catch(() => null);
    }
    if (!st?.isFile()) return json(res, 404, { error: `no file ${pathname}` });
    res.writeHead(200, {
      'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
      'content-length': st.size,
      'cache-control': 'no-store',
    });
    if (req.method === 'HEAD') return res.end();
    createReadStream(file).pipe(res);
  }

  function forward(route, req, body, url) {
    const rest = url.pathname.slice(route.prefix === '/' ? 0 : route.prefix.length);
    const base = route.target.pathname.replace(/\/+$/, '');
    const targetPath = `${base}${rest}` || '/';
    const headers = {};
    for (const [k, v] of Object.entries(req.headers)) if (!HOP.has(k)) headers[k] = v;
    headers.host = route.target.host;
    if (body.length) headers['content-length'] = body.length;
    return new Promise((resolve, reject) => {
      const out = http.request(
        { host: route.target.hostname, port: route.target.port, method: req.method, path: `${targetPath}${url.search}`, headers },
        (answer) => {
          const chunks = [];
          answer.on('data', (c) => chunks.push(c));
          answer.on('end', () => resolve({ status: answer.statusCode, headers: answer.headers, body: Buffer.concat(chunks), targetPath }));
          answer.on('error', reject);
        },
      );
      out.on('error', reject);
      out.end(body);
    });
  }

  async function proxy(route, req, res, url) {
    const body = await readBody(req);
    const write = req.method !== 'GET' && req.method !== 'HEAD';
    let entry = null;
    if (write) {
      let parsed = null;
      try {
        parsed = body.length ? JSON.parse(body.toString('utf8')) : null;
      } catch {
        parsed = body.toString('utf8');
      }
      entry = {
        seq: log.length + 1,
        method: req.method,
        path: url.pathname + url.search,
        backendPath: null,
        idempotencyKey: req.headers['idempotency-key'] ?? null,
        operationId: req.headers['x-operation-id'] ?? null,
        clientVersion: req.headers['x-client-version'] ?? null,
        ifMatch: req.headers['if-match'] ?? null,
        device: req.headers['x-device-id'] ?? null,
        body: parsed,
        status: null,
        fault: null,
        start: Date.now(),
        end: null,
      };
      log.push(entry);
    } else {
      counts.reads += 1;
      entry = {
        seq: reads.length + 1, method: req.method, path: url.pathname + url.search, device: req.headers['x-device-id'] ?? null,
        status: null, fault: null, start: Date.now(), end: null,
      };
      reads.push(entry);
    }
    if (faults.latencyMs) await new Promise((r) => setTimeout(r, faults.latencyMs));
    // Draws in a fixed order per request, so one seed gives one sequence of faults.
    const failDraw = random();
    const dropDraw = random();
    if (failDraw < faults.fail5xx) {
      counts.failed5xx += 1;
      failures += 1;
      const retryAfter = failures % 2 === 0;
      if (entry) Object.assign(entry, { fault: retryAfter ? '503 Retry-After: 0' : '503', end: Date.now() });
      const text = JSON.stringify({ error: 'injected by the conformance proxy' });
      res.writeHead(503, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(text),
        ...(retryAfter ? { 'retry-after': '0' } : {}),
      });
      return res.end(text);
    }
    let answer;
    try {
      answer = await forward(route, req, body, url);
    } catch (err) {
      if (entry) Object.assign(entry, { fault: `backend unreachable: ${err.message}`, end: Date.now() });
      return json(res, 502, { error: `the backend did not answer: ${err.message}` });
    }
    counts.forwarded += 1;
    if (entry) Object.assign(entry, { backendPath: answer.targetPath, status: answer.status, end: Date.now() });
    if (dropDraw < faults.drop) {
      counts.dropped += 1;
      if (entry) entry.fault = 'dropped';
      // The backend did the work; the browser never hears about it.
      req.socket.destroy();
      return;
    }
    const headers = {};
    for (const [k, v] of Object.entries(answer.headers)) if (!HOP.has(k)) headers[k] = v;
    headers['content-length'] = answer.body.length;
    res.writeHead(answer.status, headers);
    res.end(answer.body);
  }

  const server = http.createServer((req, res) => {
    if (!isLoopbackAddress(req.socket.remoteAddress)) {
      req.socket.destroy();
      return;
    }
    const url = new URL(req.url, 'http://proxy');
    (async () => {
      if (url.pathname === '/__proxy/faults') {
        if (req.method === 'GET') return json(res, 200, faults);
        if (req.method === 'POST') {
          const text = (await readBody(req)).toString('utf8');
          try {
            return json(res, 200, setFaults(text ? JSON.parse(text) : {}));
          } catch (err) {
            return json(res, 400, { error: err.message });
          }
        }
        return json(res, 405, { error: 'GET or POST' });
      }
      if (url.pathname === '/__proxy/log') {
        if (req.method === 'GET') return json(res, 200, { entries: log, reads, counts });
        if (req.method === 'DELETE') {
          log.length = 0;
          reads.length = 0;
          return json(res, 200, { ok: true });
        }
        return json(res, 405, { error: 'GET or DELETE' });
      }
      const route = routeList.find((r) => matches(r.prefix, url.pathname));
      if (route) return proxy(route, req, res, url);
      return serveStatic(req, res, url.pathname);
    })().catch((err) => {
      if (!res.headersSent) json(res, 500, { error: String(err?.stack ?? err) });
      else res.destroy();
    });
  });
  // The browser keeps connections alive; a destroyed socket must not take the server down.
  server.on('clientError', (_err, socket) => socket.destroy());
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const actual = server.address().port;
  return {
    url: `http://${host}:${actual}`,
    port: actual,
    server,
    log,
    reads,
    counts,
    setFaults,
    faults: () => faults,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections?.();
      }),
  };
}

async function main() {
  const routes = {};
  const mounts = {};
  let port = 0;
  const args = process.argv.slice(2);
  for (let i = 0; i < args.length; i++) {
    let [name, value] = args[i].split(/=(.*)/s, 2);
    if (value === undefined && !['--help', '-h'].includes(name)) value = args[++i];
    const pair = () => {
      const j = value.indexOf('=');
      if (j < 1) throw new Error(`${name} wants PREFIX=VALUE, got ${value}`);
      return [value.slice(0, j), value.slice(j + 1)];
    };
    if (name === '--port') port = Number(value);
    else if (name === '--route') {
      const [p, t] = pair();
      routes[p] = t;
    } else if (name === '--mount') {
      const [p, d] = pair();
      mounts[p] = d;
    } else {
      console.error('usage: proxy.mjs [--port N] [--mount /prefix/=DIR]... [--route /prefix=http://127.0.0.1:PORT/path]...');
      process.exit(name === '--help' || name === '-h' ? 0 : 2);
    }
  }
  const proxy = await startProxy({ routes, mounts, port });
  process.stdout.write(`listening on ${proxy.url}\n`);
  const stop = () => proxy.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();
