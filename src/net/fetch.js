// tidesync's HTTP requests, for src/net/fetch.rs: one `fetch` with a timeout, no redirects followed,
// and a cap on the response's size. Resolves to [status, body text, Retry-After, ETag]; rejects with
// [kind, message], kind one of 'timeout', 'protocol' and 'network'.
export async function send(method, url, body, headers, timeoutMs, maxBytes) {
  const c = new AbortController();
  const timer = setTimeout(() => c.abort(), timeoutMs);
  try {
    // `headers` is JSON text: [[name, value], ...].
    const r = await fetch(url, { method, headers: JSON.parse(headers), body, redirect: 'manual', signal: c.signal });
    if (r.type === 'opaqueredirect') throw ['protocol', 'the server answered with a redirect'];
    const h = r.headers;
    const length = +h.get('content-length');
    if (length > maxBytes) throw ['protocol', `the response is ${length} bytes; the limit is ${maxBytes}`];
    return [r.status, await r.text(), h.get('retry-after'), h.get('etag')];
  } catch (e) {
    throw Array.isArray(e) ? e : [c.signal.aborted ? 'timeout' : 'network', String(e?.message ?? e)];
  } finally {
    clearTimeout(timer);
  }
}
