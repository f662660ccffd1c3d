#!/usr/bin/env node
// A backend that follows the reference design's "Enhanced Progress API" to the letter
// (the reference design sync-architecture.md, "API Specifications"): an upsert by `cardId` at
// POST /api/progress-v2 with X-Device-ID / X-Operation-ID / X-Client-Version headers, 409 with the
// reference conflict body, `{success, data, serverTime}` envelopes. Written for the conformance suite
// (www/tests/conformance.spec.mjs) as a backend tidesync did not shape. Node 20, no dependencies,
// in memory.
//
//   node tests/backends/progress/server.mjs [--port N] [--host 127.0.0.1]
//
// Prints `listening on http://HOST:PORT` (port 0, the default, picks a free one).
//
// Routes:
//   POST   /api/progress-v2            upsert; X-Client-Version = the version the write is based on (0 or
//                                      absent: the client believes the record is new)
//   DELETE /api/progress-v2/:cardId    same headers and version check; leaves a tombstone
//   GET    /api/progress-v2/:cardId    the live record (a tombstone is 404)
//   GET    /api/progress-v2?since=N    records and tombstones changed after change counter N, 50 a page
//   GET    /__admin/ledger             every operation id: times applied, deliveries, its stored answer
//   GET    /__admin/records            every stored record, tombstones included
//   POST   /__admin/reset              forget everything
import http from 'node:http';
import { pathToFileURL } from 'node:url';

const PREFIX = '/api/progress-v2';
const PAGE_SIZE = 50;
const MAX_BODY = 1 << 20;

class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const now = () => new Date().toISOString();

export function createProgressServer() {
  /** cardId -> { record, seq } ; a tombstone's record is { cardId, deleted: true, version }. */
  let records = new Map();
  /** op id -> { opId, method, cardId, applied, deliveries, status, body, firstAt } */
  let ledger = new Map();
  let counter = 0;

  const reset = () => {
    records = new Map();
    ledger = new Map();
    counter = 0;
  };

  function send(res, status, body) {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  const errorBody = (code, message) => ({ success: false, error: { code, message } });

  function readBody(req) {
    return new Promise((resolve, reject) => {
      const chunks = [];
      let size = 0;
      req.on('data', (c) => {
        size += c.length;
        if (size > MAX_BODY) {
          reject(new HttpError(413, 'BODY_TOO_LARGE', `the body is over ${MAX_BODY} bytes`));
          req.destroy();
        } else chunks.push(c);
      });
      req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      req.on('error', reject);
    });
  }

  function clientVersion(req) {
    const raw = req.headers['x-client-version'];
    if (raw === undefined || raw.trim() === '') return 0;
    if (!/^\d+$/.test(raw.trim())) {
      throw new HttpError(400, 'INVALID_CLIENT_VERSION', `X-Client-Version must be a record version (an integer), got ${JSON.stringify(raw)}`);
    }
    return Number(raw.trim());
  }

  /** The 409 of the reference design, or null when `client` is the stored version. */
  function versionConflict(stored, client) {
    const serverVersion = stored ? stored.record.version : 0;
    if (serverVersion === client) return null;
    const gone = !stored || stored.record.deleted === true;
    return {
      success: false,
      error: 'Version conflict',
      conflict: {
        type: gone ? 'deleted' : 'version',
        serverVersion,
        clientVersion: client,
        serverData: gone ? null : stored.record,
        conflictTimestamp: now(),
      },
    };
  }

  function store(cardId, record) {
    counter += 1;
    records.set(cardId, { record, seq: counter });
  }

  /** Runs `apply` once per operation id: a repeated id gets the stored answer back. */
  function idempotent(req, cardId, apply) {
    const opId = req.headers['x-operation-id'];
    if (opId) {
      const seen = ledger.get(opId);
      if (seen) {
        seen.deliveries += 1;
        return [seen.status, seen.body];
      }
    }
    const [status, body, applied] = apply();
    if (opId) {
      ledger.set(opId, {
        opId,
        method: req.method,
        cardId,
        deviceId: req.headers['x-device-id'] ?? null,
        clientVersion: req.headers['x-client-version'] ?? null,
        applied: applied ? 1 : 0,
        deliveries: 1,
        status,
        body,
        firstAt: now(),
      });
    }
    return [status, body];
  }

  function upsert(req, text) {
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      throw new HttpError(400, 'INVALID_JSON', 'the body is not JSON');
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw new HttpError(400, 'INVALID_REQUEST', 'the body must be a JSON object');
    }
    const { cardId } = body;
    if (typeof cardId !== 'string' || cardId === '') {
      throw new HttpError(400, 'INVALID_REQUEST', 'cardId is required (a non-empty string)');
    }
    const client = clientVersion(req);
    return idempotent(req, cardId, () => {
      const stored = records.get(cardId);
      const conflict = versionConflict(stored, client);
      if (conflict) return [409, conflict, false];
      const time = now();
      const record = {
        ...body,
        cardId,
        version: (stored ? stored.record.version : 0) + 1,
        lastModified: typeof body.lastModified === 'string' ? body.lastModified : time,
        syncedAt: time,
      };
      store(cardId, record);
      return [200, { success: true, data: record, serverTime: time }, true];
    });
  }

  function remove(req, cardId) {
    const client = clientVersion(req);
    if (!records.has(cardId)) {
      throw new HttpError(404, 'NOT_FOUND', `no progress record for card ${cardId}`);
    }
    return idempotent(req, cardId, () => {
      const stored = records.get(cardId);
      const conflict = versionConflict(stored, client);
      if (conflict) return [409, conflict, false];
      if (stored.record.deleted) {
        // Deleting a tombstone at its own version: already done, nothing changes.
        return [200, { success: true, data: stored.record, serverTime: now() }, false];
      }
      const tombstone = { cardId, deleted: true, version: stored.record.version + 1 };
      store(cardId, tombstone);
      return [200, { success: true, data: tombstone, serverTime: now() }, true];
    });
  }

  function listing(url) {
    const raw = url.searchParams.get('since');
    let since = 0;
    if (raw !== null) {
      if (!/^\d+$/.test(raw)) throw new HttpError(400, 'INVALID_CURSOR', `since must be a change counter (an integer), got ${JSON.stringify(raw)}`);
      since = Number(raw);
    }
    const changed = [...records.values()].filter((r) => r.seq > since).sort((a, b) => a.seq - b.seq);
    const page = changed.slice(0, PAGE_SIZE);
    return {
      success: true,
      data: page.map((r) => r.record),
      cursor: page.length ? page[page.length - 1].seq : since,
      hasMore: changed.length > page.length,
      serverTime: now(),
    };
  }

  async function route(req, res) {
    const url = new URL(req.url, 'http://localhost');
    const path = url.pathname;
    if (path === '/__admin/ledger' && req.method === 'GET') {
      return send(res, 200, { entries: [...ledger.values()].map(({ body, ...e }) => ({ ...e, answer: body })) });
    }
    if (path === '/__admin/records' && req.method === 'GET') {
      return send(res, 200, { records: [...records.values()].map((r) => ({ ...r.record, _seq: r.seq })), counter });
    }
    if (path === '/__admin/reset' && req.method === 'POST') {
      reset();
      return send(res, 200, { success: true });
    }
    if (path === PREFIX) {
      if (req.method === 'GET') return send(res, 200, listing(url));
      if (req.method === 'POST') {
        const [status, body] = upsert(req, await readBody(req));
        return send(res, status, body);
      }
      throw new HttpError(405, 'METHOD_NOT_ALLOWED', `${req.method} ${PREFIX} is not allowed`);
    }
    if (path.startsWith(`${PREFIX}/`)) {
      const segment = path.slice(PREFIX.length + 1);
      if (segment === '' || segment.includes('/')) throw new HttpError(404, 'NOT_FOUND', `no route ${path}`);
      let cardId;
      try {
        cardId = decodeURIComponent(segment);
      } catch {
        throw new HttpError(400, 'INVALID_REQUEST', 'the card id is not valid percent-encoding');
      }
      if (req.method === 'GET') {
        const stored = records.get(cardId);
        if (!stored || stored.record.deleted) throw new HttpError(404, 'NOT_FOUND', `no progress record for card ${cardId}`);
        return send(res, 200, { success: true, data: stored.record });
      }
      if (req.method === 'DELETE') {
        await readBody(req);
        const [status, body] = remove(req, cardId);
        return send(res, status, body);
      }
      throw new HttpError(405, 'METHOD_NOT_ALLOWED', `${req.method} ${PREFIX}/:cardId is not allowed`);
    }
    throw new HttpError(404, 'NOT_FOUND', `no route ${req.method} ${path}`);
  }

  const server = http.createServer((req, res) => {
    route(req, res).catch((err) => {
      if (res.headersSent) return res.destroy();
      if (err instanceof HttpError) return send(res, err.status, errorBody(err.code, err.message));
      console.error(err);
      send(res, 500, errorBody('INTERNAL_ERROR', String(err?.message ?? err)));
    });
  });
  return server;
}

async function main() {
  const args = process.argv.slice(2);
  const opt = (name, dflt) => {
    const i = args.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
    if (i < 0) return dflt;
    return args[i].includes('=') ? args[i].slice(args[i].indexOf('=') + 1) : args[i + 1];
  };
  const host = opt('host', '127.0.0.1');
  const port = Number(opt('port', '0'));
  const server = createProgressServer();
  server.listen(port, host, () => {
    const { port: actual } = server.address();
    process.stdout.write(`listening on http://${host}:${actual}\n`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();
