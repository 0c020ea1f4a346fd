// Static files for `flextok serve` (the web page's folder and the shipped model files): request paths split into
// checked segments, resolved inside their root (no `..`, encoded traversal, NUL bytes, hidden files or symlinks that
// leave the root), served with a Content-Type by extension, ETag / Last-Modified and Cache-Control.
import * as fs from 'node:fs';
import type * as http from 'node:http';
import * as path from 'node:path';
import { HttpError } from './http.js';

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.htm': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.wasm': 'application/wasm',
  '.safetensors': 'application/octet-stream',
  '.bin': 'application/octet-stream',
  '.woff2': 'font/woff2',
};

/** The Content-Type of a file name by its extension (application/octet-stream when unknown). */
export function contentTypeOf(file: string): string {
  return CONTENT_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

/**
 * The decoded segments of a raw request path ("/a/b%20c" → ["a", "b c"]). Refused with 400: a path that does not
 * start with '/', malformed percent-encoding, NUL bytes, backslashes, encoded slashes, and '.' / '..' segments, whether
 * written plainly or percent-encoded ("%2e%2e").
 */
export function pathSegments(rawPath: string): string[] {
  if (!rawPath.startsWith('/')) throw new HttpError(400, `the request path '${rawPath.slice(0, 80)}' does not start with '/'; request an absolute path such as /api/health`);
  if (rawPath.includes('\0')) throw new HttpError(400, 'the request path contains a NUL byte; remove it');
  const parts = rawPath.slice(1).split('/');
  return parts.map((part, i) => {
    let seg: string;
    try {
      seg = decodeURIComponent(part);
    } catch {
      throw new HttpError(400, `the request path has malformed percent-encoding in '${part.slice(0, 40)}'; encode '%' as %25`);
    }
    if (seg === '.' || seg === '..') {
      throw new HttpError(400, `the request path contains a '${seg}' segment${part !== seg ? ` (encoded as '${part}')` : ''}: path traversal is not allowed; request the file by its path inside the site`);
    }
    if (seg.includes('\0')) throw new HttpError(400, 'the request path contains an encoded NUL byte (%00); remove it');
    if (seg.includes('/') || seg.includes('\\')) throw new HttpError(400, `the request path segment '${part.slice(0, 40)}' contains an encoded slash or a backslash; use plain '/' between folders`);
    if (seg === '' && i < parts.length - 1) throw new HttpError(400, "the request path contains an empty segment ('//'); remove the doubled slash");
    return seg;
  });
}

export interface ResolvedFile {
  /** the real path of the file */
  file: string;
  stat: fs.Stats;
}

/**
 * The regular file `segments` name under `root`, or a 404 / 403 HttpError. Hidden names (starting with '.') are not
 * served; the real path (symlinks resolved) must stay inside the real root. `index` is tried inside a folder; `hint`
 * (where to look) ends the 404 message.
 */
export function resolveInside(root: string, segments: readonly string[], what: string, hint: string, index?: string): ResolvedFile {
  const realRoot = realpathOrNull(root);
  const shown = segments.join('/');
  if (realRoot === null) throw new HttpError(404, `no ${what} here: the folder ${path.basename(root)}/ does not exist on this server`);
  if (segments.some((s) => s.startsWith('.'))) throw new HttpError(404, `'${shown}' is not served: hidden files and folders (names starting with '.') are private`);
  const candidate = path.resolve(realRoot, ...segments.filter((s) => s !== ''));
  if (!isInside(realRoot, candidate)) throw new HttpError(400, `'${shown}' resolves outside the ${what} folder; request a path inside it`);
  let real = realpathOrNull(candidate);
  if (real === null) throw new HttpError(404, `no such ${what}: '${shown}'; check the name (${hint})`);
  if (!isInside(realRoot, real)) throw new HttpError(403, `'${shown}' is a link to a place outside the ${what} folder; it is not served`);
  let stat = fs.statSync(real);
  if (stat.isDirectory() && index !== undefined) {
    const inner = realpathOrNull(path.join(real, index));
    if (inner === null || !isInside(realRoot, inner)) throw new HttpError(404, `no such ${what}: '${shown}' is a folder without ${index}`);
    real = inner;
    stat = fs.statSync(real);
  }
  if (!stat.isFile()) throw new HttpError(404, `no such ${what}: '${shown}' is not a file`);
  return { file: real, stat };
}

function realpathOrNull(p: string): string | null {
  try {
    return fs.realpathSync(p);
  } catch {
    return null;
  }
}

/** Whether `p` is `root` itself or inside it (both absolute and normalised). */
export function isInside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** A strong validator from the file's size and modification time. */
export function etagOf(stat: fs.Stats): string {
  return `"${stat.size.toString(16)}-${Math.floor(stat.mtimeMs).toString(16)}"`;
}

/** Sends a resolved file (HEAD: headers only; If-None-Match with its ETag: 304) with the given Cache-Control. */
export function sendFile(req: http.IncomingMessage, res: http.ServerResponse, resolved: ResolvedFile, cacheControl: string): void {
  const etag = etagOf(resolved.stat);
  const headers: Record<string, string> = {
    ETag: etag,
    'Last-Modified': resolved.stat.mtime.toUTCString(),
    'Cache-Control': cacheControl,
  };
  const ifNoneMatch = req.headers['if-none-match'];
  if (ifNoneMatch !== undefined && ifNoneMatch.split(',').some((t) => t.trim() === etag || t.trim() === `W/${etag}` || t.trim() === '*')) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  res.writeHead(200, { ...headers, 'Content-Type': contentTypeOf(resolved.file), 'Content-Length': String(resolved.stat.size) });
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  const stream = fs.createReadStream(resolved.file);
  stream.on('error', () => res.destroy());
  res.on('close', () => stream.destroy());
  stream.pipe(res);
}
