// HTTP plumbing of `flextok serve`: the error type every handler throws, the headers every response carries,
// JSON / bytes responses, and request bodies read as a stream under a size limit and timeouts.
import type * as http from 'node:http';

/** A request the server refuses: `status` (4xx, or 503 for back-pressure) and a message naming the problem and the fix. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** Headers on every response: cross-origin isolation (the web page's WebAssembly threads need it) and no MIME sniffing. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Cross-Origin-Resource-Policy': 'same-origin',
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};

/** The headers that make the page cross-origin isolated (SharedArrayBuffer, so the threaded wasm kernels); on
 * every response unless `flextok serve --no-isolation`. */
export const ISOLATION_HEADERS: Readonly<Record<string, string>> = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

export const JSON_TYPE = 'application/json; charset=utf-8';

/** Sends `body` as JSON (API responses are never cached). */
export function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  sendBytes(res, status, Buffer.from(`${JSON.stringify(body)}\n`, 'utf8'), JSON_TYPE, { 'Cache-Control': 'no-store', ...headers });
}

/** Sends bytes with a content type and length. */
export function sendBytes(res: http.ServerResponse, status: number, body: Buffer, contentType: string, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { ...headers, 'Content-Type': contentType, 'Content-Length': String(body.length) });
  res.end(body);
}

/** Sends the JSON error `{error: message}`. */
export function sendError(res: http.ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
  sendJson(res, status, { error: message }, headers);
}

/** A complete raw HTTP/1.1 error response, for sockets the HTTP parser gave up on (no ServerResponse exists). */
export function rawErrorResponse(status: number, reason: string, message: string): string {
  const body = `${JSON.stringify({ error: message })}\n`;
  const headers = { ...SECURITY_HEADERS, ...ISOLATION_HEADERS, 'Content-Type': JSON_TYPE, 'Content-Length': String(Buffer.byteLength(body)), Connection: 'close' };
  return `HTTP/1.1 ${status} ${reason}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n${body}`;
}

/** The media type of a Content-Type header without parameters, lower-cased ('' when absent). */
export function mediaType(req: http.IncomingMessage): string {
  return (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

export interface BodyLimits {
  /** Most bytes accepted; more is a 413. */
  maxBytes: number;
  /** What the limit is for, in messages ("an image", "a JSON body"). */
  what: string;
  /** 408 when no byte arrives for this long. */
  idleTimeoutMs: number;
  /** 408 when the whole body takes longer than this. */
  totalTimeoutMs: number;
}

function megabytes(n: number): string {
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(n % (1 << 20) === 0 ? 0 : 1)} MiB` : `${Math.round(n / 1024)} KiB`;
}

/**
 * Reads the request body into one buffer, counting bytes as they arrive: past `maxBytes` it stops collecting and
 * rejects with 413 (so an unbounded body is never buffered), and a stalled or slow upload is a 408. Timers are checked
 * once more after pending socket reads (a long synchronous job may have delayed both), so a body that did arrive is
 * never refused for the server's own delay.
 */
export function readBody(req: http.IncomingMessage, limits: BodyLimits): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limits.maxBytes) {
    return Promise.reject(tooLarge(limits, `Content-Length is ${declared} bytes`));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let settled = false;
    const started = Date.now();
    let lastData = started;
    const finish = (err: Error | null, body?: Buffer): void => {
      if (settled) return;
      settled = true;
      clearInterval(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
      if (err) reject(err);
      else resolve(body!);
    };
    const onData = (chunk: Buffer): void => {
      received += chunk.length;
      lastData = Date.now();
      if (received > limits.maxBytes) finish(tooLarge(limits, `the body passed ${received} bytes`));
      else chunks.push(chunk);
    };
    const onEnd = (): void => finish(null, Buffer.concat(chunks, received));
    const onError = (err: Error): void => finish(new HttpError(400, `the request body could not be read (${err.message}); send it again`));
    const onAborted = (): void => finish(new HttpError(400, 'the client closed the connection before the body was complete; send it again'));
    const check = (): void => {
      const now = Date.now();
      const idle = now - lastData >= limits.idleTimeoutMs;
      const total = now - started >= limits.totalTimeoutMs;
      if (!idle && !total) return;
      // Let pending socket reads run first: the delay may be ours (a synchronous job), not the client's.
      setImmediate(() => {
        if (settled) return;
        const later = Date.now();
        if (later - lastData >= limits.idleTimeoutMs) {
          finish(new HttpError(408, `the request body stalled: no data for ${limits.idleTimeoutMs / 1000} s after ${received} bytes; send the whole body without pausing`));
        } else if (later - started >= limits.totalTimeoutMs) {
          finish(new HttpError(408, `the request body took longer than ${limits.totalTimeoutMs / 1000} s to arrive (${received} bytes so far); send a smaller body or use a faster connection`));
        }
      });
    };
    const timer = setInterval(check, Math.max(10, Math.min(limits.idleTimeoutMs, limits.totalTimeoutMs) / 4));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}

function tooLarge(limits: BodyLimits, what: string): HttpError {
  return new HttpError(413, `the request body is too large: ${what}, the limit for ${limits.what} is ${megabytes(limits.maxBytes)} (${limits.maxBytes} bytes); send a smaller one`);
}

/**
 * After an error response to a request whose body was not read to the end: discard what the client is still sending
 * (never stored) so that it can read the response instead of seeing a reset, and keep the connection when the body
 * ends; past `maxBytes` or `maxMs` the connection is closed.
 */
export function discardRestOfBody(req: http.IncomingMessage, maxBytes = 8 << 20, maxMs = 10_000): void {
  if (req.complete || req.socket.destroyed) return;
  let discarded = 0;
  const stop = (): void => {
    clearTimeout(timer);
    req.off('data', onData);
    if (!req.complete) req.socket.destroy();
  };
  const onData = (chunk: Buffer): void => {
    discarded += chunk.length;
    if (discarded > maxBytes) stop();
  };
  const timer = setTimeout(stop, maxMs);
  timer.unref();
  req.on('data', onData);
  req.once('end', () => {
    clearTimeout(timer);
    req.off('data', onData);
  });
  req.resume();
}
