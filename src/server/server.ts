// `createFlextokServer`: the HTTP server of `flextok serve` on node:http — routing (the API, the shipped model files,
// the web page's folder), the headers every response carries, JSON errors for every refusal, and a 500 with a
// generic message (the details go to the log) for anything unexpected, so one bad request never stops the server.
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { FlexTokInputError } from '../flextok/model.js';
import { API_ROUTES, DEFAULT_LIMITS, type ApiContext, type ServerLimits } from './api.js';
import { discardRestOfBody, HttpError, ISOLATION_HEADERS, rawErrorResponse, SECURITY_HEADERS, sendError } from './http.js';
import { UploadFolder } from './image_input.js';
import { MODEL_FILE_EXTENSIONS, ModelRegistry } from './models.js';
import { JobCancelled, JobQueue } from './queue.js';
import { pathSegments, resolveInside, sendFile } from './static.js';

export interface FlextokServerOptions {
  /** the repository (package) root: web/ and models/ are looked up in it */
  root: string;
  /** the web page's folder (default <root>/web) */
  webDir?: string;
  /** the model folders (default <root>/models) */
  modelsDir?: string;
  /** the example images the page offers (default <root>/assets/fashion-mnist, the images `flextok demo` uses) */
  examplesDir?: string;
  /** send the cross-origin isolation headers (COOP/COEP) that let the page use threads (default true) */
  isolation?: boolean;
  limits?: Partial<ServerLimits>;
  /** where model loads, failures and (with logRequests) one line per request go; default stderr */
  log?: (line: string) => void;
  logRequests?: boolean;
}

export interface FlextokServer {
  server: http.Server;
  registry: ModelRegistry;
  queue: JobQueue;
  limits: ServerLimits;
  /** Starts listening; resolves to the address (port 0 picks a free port). */
  listen(port: number, host: string): Promise<{ host: string; port: number; url: string }>;
  /** Stops accepting connections, lets running responses finish (at most `graceMs`), then closes every connection. */
  close(graceMs?: number): Promise<void>;
}


/** Where the static parts of the site are, and the headers every response carries. */
interface Site {
  webDir: string;
  examplesDir: string;
  headers: Readonly<Record<string, string>>;
}

const WEB_CACHE = 'no-cache';
const MODEL_CACHE = 'public, max-age=3600';

export function createFlextokServer(options: FlextokServerOptions): FlextokServer {
  const limits: ServerLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const root = path.resolve(options.root);
  const site: Site = {
    webDir: path.resolve(options.webDir ?? path.join(root, 'web')),
    examplesDir: path.resolve(options.examplesDir ?? path.join(root, 'assets', 'fashion-mnist')),
    headers: options.isolation === false ? SECURITY_HEADERS : { ...SECURITY_HEADERS, ...ISOLATION_HEADERS },
  };
  const registry = new ModelRegistry(path.resolve(options.modelsDir ?? path.join(root, 'models')), log);
  const queue = new JobQueue(limits.maxQueue);
  const uploads = new UploadFolder();
  const ctx: ApiContext = { registry, queue, uploads, limits, examplesDir: site.examplesDir };

  const server = http.createServer({
    headersTimeout: limits.headersTimeoutMs,
    // Node's own limit on receiving a whole request: a backstop behind the body timeouts of readBody.
    requestTimeout: limits.headersTimeoutMs + limits.bodyTimeoutMs + 30_000,
  });
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const started = Date.now();
    if (options.logRequests) res.on('finish', () => log(`${req.method} ${(req.url ?? '').slice(0, 200)} ${res.statusCode} ${Date.now() - started} ms`));
    handle(ctx, site, req, res).catch((err: unknown) => {
      try {
        respondError(err, req, res, site, log);
      } catch (inner) {
        log(`flextok serve: cannot send the error response: ${inner instanceof Error ? inner.message : String(inner)}`);
        res.destroy();
      }
    });
  });
  // After listening, a failed accept (e.g. too many open files) is logged; without a listener it would end the process.
  server.on('listening', () => server.on('error', (err) => log(`flextok serve: server error: ${err.message}`)));
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const [status, reason, message] = err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'Request Header Fields Too Large', 'the request headers are too large; send fewer or shorter headers']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'Request Timeout', 'the request did not arrive in time; send it again without pausing']
        : [400, 'Bad Request', 'the request is not valid HTTP/1.1; check the request line and headers'];
    socket.end(rawErrorResponse(status, reason, message));
  });

  return {
    server,
    registry,
    queue,
    limits,
    listen: (port, host) => listen(server, port, host),
    close: async (graceMs = 5000) => {
      await closeServer(server, graceMs);
      uploads.dispose();
    },
  };
}

/** Routes one request; every refusal is thrown as an HttpError. */
async function handle(ctx: ApiContext, site: Site, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  for (const [k, v] of Object.entries(site.headers)) res.setHeader(k, v);
  const raw = req.url ?? '/';
  const qi = raw.indexOf('?');
  const rawPath = qi < 0 ? raw : raw.slice(0, qi);
  const query = qi < 0 ? '' : raw.slice(qi + 1);
  const segments = pathSegments(rawPath);
  const method = req.method ?? 'GET';

  if (segments[0] === 'api') {
    const route = API_ROUTES[`/${segments.join('/')}`];
    if (route === undefined) {
      throw new HttpError(404, `no API route ${rawPath.slice(0, 80)}; the routes are ${Object.entries(API_ROUTES).map(([p, r]) => `${r.methods[0]} ${p}`).join(', ')}`);
    }
    allowMethods(method, route.methods, rawPath);
    let gone = false;
    res.on('close', () => {
      if (!res.writableFinished) gone = true;
    });
    await route.handle(ctx, { req, res, query, cancelled: () => gone || req.socket.destroyed });
    return;
  }
  allowMethods(method, ['GET', 'HEAD'], rawPath);
  if (segments[0] === 'models') {
    const rest = segments.slice(1);
    if (rest.length < 2 || rest[rest.length - 1] === '') {
      throw new HttpError(404, 'GET /models/<name>/<file> serves one file of a model folder; GET /api/models lists the models and their files');
    }
    if (!MODEL_FILE_EXTENSIONS.includes(path.extname(rest[rest.length - 1]!).toLowerCase())) {
      throw new HttpError(404, `'${rest.join('/')}' is not served: model folders serve ${MODEL_FILE_EXTENSIONS.join(', ')} files`);
    }
    sendFile(req, res, resolveInside(ctx.registry.modelsDir, rest, 'model file', 'GET /api/models lists the models and their files'), MODEL_CACHE);
    return;
  }
  if (segments[0] === 'examples') {
    const rest = segments.slice(1);
    if (rest.length !== 1 || path.extname(rest[0]!).toLowerCase() !== '.png') {
      throw new HttpError(404, 'GET /examples/<file>.png serves one example image; GET /api/examples lists them');
    }
    sendFile(req, res, resolveInside(site.examplesDir, rest, 'example image', 'GET /api/examples lists them'), MODEL_CACHE);
    return;
  }
  sendFile(req, res, resolveInside(site.webDir, segments, 'page', 'the page is at /, the API at /api', 'index.html'), WEB_CACHE);
}

function allowMethods(method: string, allowed: readonly string[], rawPath: string): void {
  if (allowed.includes(method)) return;
  throw new HttpError(405, `${method} is not allowed on ${rawPath.slice(0, 80)}; use ${allowed.join(' or ')}`, { Allow: allowed.join(', ') });
}

/** Turns any failure into a JSON error response (or nothing when the client is gone); unexpected ones are logged. */
function respondError(err: unknown, req: http.IncomingMessage, res: http.ServerResponse, site: Site, log: (line: string) => void): void {
  if (err instanceof JobCancelled) return;
  let status = 500;
  let message = 'internal error: the server could not complete this request (the details are in its log); try again or report it';
  let headers: Record<string, string> = {};
  if (err instanceof HttpError) {
    ({ status, message, headers } = err);
    if (status >= 500) log(`flextok serve: ${req.method} ${(req.url ?? '').slice(0, 200)}: ${message}`);
  } else if (err instanceof FlexTokInputError) {
    status = 400;
    message = err.message;
  } else {
    log(`flextok serve: ${req.method} ${(req.url ?? '').slice(0, 200)}: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  }
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (status === 408) headers = { ...headers, Connection: 'close' };
  for (const [k, v] of Object.entries(site.headers)) res.setHeader(k, v);
  sendError(res, status, message, headers);
  if (status !== 408) discardRestOfBody(req);
}

function listen(server: http.Server, port: number, host: string): Promise<{ host: string; port: number; url: string }> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      server.off('listening', onListening);
      if (err.code === 'EADDRINUSE') reject(new Error(`port ${port} on ${host} is in use: pick another with --port N (or --port 0 for a free one)`));
      else if (err.code === 'EACCES') reject(new Error(`no permission to listen on port ${port}: use a port above 1023`));
      else if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND') reject(new Error(`cannot listen on host '${host}': it is not an address of this machine (use 127.0.0.1, or 0.0.0.0 for every interface)`));
      else reject(err);
    };
    const onListening = (): void => {
      server.off('error', onError);
      const addr = server.address() as AddressInfo;
      const shownHost = addr.family === 'IPv6' || addr.address.includes(':') ? `[${addr.address}]` : addr.address;
      resolve({ host: addr.address, port: addr.port, url: `http://${shownHost}:${addr.port}/` });
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port, host);
  });
}

function closeServer(server: http.Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    const timer = setTimeout(() => server.closeAllConnections(), graceMs);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}
