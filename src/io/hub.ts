// Downloads model repositories from a Hugging Face–style hub into a local cache: resumable (`.part` files and
// HTTP Range), verified (sha256 / git blob sha1 from the hub's ETags, sizes from X-Linked-Size) and atomic.
//
// Cache layout: `<cacheRoot>/<owner>/<name>/<file>`; cacheRoot defaults to `$FLEXTOK_CACHE` or
// `~/.cache/flextok/hub`. The endpoint defaults to `$HF_ENDPOINT` or https://huggingface.co. A token in
// `$HF_TOKEN` (if set) is sent as a bearer token, for gated repositories.
import type { Hash } from 'node:crypto';
import { crypto, fs, os, path } from './node_builtins.js';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';
const MAX_REDIRECTS = 8;
const MANIFEST_NAME = '.flextok-pull.json';

/** A failed hub request or download; the message says what, where and what to do. */
export class HubError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HubError';
  }
}

/** Progress of one file's download (bytes so far and, when known, in total). */
export interface DownloadProgress {
  file: string;
  received: number;
  total: number | null;
  done: boolean;
}

export interface PullOptions {
  revision?: string;
  /** The cache root (repositories live in `<cacheRoot>/<repo-id>`). */
  cacheRoot?: string;
  endpoint?: string;
  /** Only these files (default: every file of the repository). */
  files?: string[];
  /** Re-download files that are already in the cache. */
  force?: boolean;
  onProgress?: (progress: DownloadProgress) => void;
  /** One-line messages (skipped files, resumes). */
  log?: (line: string) => void;
}

export interface PullResult {
  dir: string;
  /** The commit the revision resolved to, when the hub says. */
  commit: string | null;
  files: string[];
  downloaded: string[];
  skipped: string[];
}

/** The cache root: `$FLEXTOK_CACHE` or `~/.cache/flextok/hub`. */
export function defaultCacheRoot(): string {
  const env = process.env.FLEXTOK_CACHE;
  return env && env.length > 0 ? path.resolve(env) : path.join(os.homedir(), '.cache', 'flextok', 'hub');
}

/** The endpoint: `$HF_ENDPOINT` or https://huggingface.co (no trailing slash). */
export function defaultEndpoint(): string {
  const env = process.env.HF_ENDPOINT;
  return (env && env.length > 0 ? env : DEFAULT_ENDPOINT).replace(/\/+$/, '');
}

/** Checks a repository id (`owner/name`) and returns it. */
export function checkRepoId(repoId: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*\/[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(repoId) || repoId.includes('..')) {
    throw new HubError(`invalid repository id '${repoId}': expected 'owner/name' (letters, digits, '-', '_', '.')`);
  }
  return repoId;
}

/** The local folder of a repository in the cache. */
export function repoCacheDir(repoId: string, cacheRoot = defaultCacheRoot()): string {
  return path.join(cacheRoot, ...checkRepoId(repoId).split('/'));
}

/** A file name from the hub, checked so that it stays inside the repository folder. */
function safeRelativePath(file: string): string {
  const parts = file.split('/');
  if (file.length === 0 || file.startsWith('/') || parts.some((p) => p === '' || p === '.' || p === '..' || p.includes('\\'))) {
    throw new HubError(`the hub listed an unsafe file name '${file}'; refusing to write it`);
  }
  return path.join(...parts);
}

function authHeaders(): Record<string, string> {
  const token = process.env.HF_TOKEN;
  return token ? { authorization: `Bearer ${token}` } : {};
}

function encodePath(file: string): string {
  return file.split('/').map(encodeURIComponent).join('/');
}

async function request(url: string, init: RequestInit, what: string): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (err) {
    const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : err instanceof Error ? err.message : String(err);
    throw new HubError(`${what}: cannot reach ${new URL(url).origin} (${cause}); check the network or --endpoint / HF_ENDPOINT`);
  }
}

function statusProblem(status: number, what: string, url: string): HubError {
  const hint =
    status === 404
      ? 'not found: check the repository id, the revision and the file name'
      : status === 401 || status === 403
        ? 'access denied: the repository may be private or gated (set HF_TOKEN)'
        : status === 416
          ? 'the server refused the byte range'
          : 'the server failed';
  return new HubError(`${what}: HTTP ${status} from ${url} (${hint})`);
}

interface RepoListing {
  commit: string | null;
  files: Array<{ name: string; sha256: string | null; gitSha1: string | null; size: number | null }>;
}

/** Lists a repository's files via `GET {endpoint}/api/models/{repo}/revision/{rev}`. */
export async function listRepoFiles(repoId: string, opts: { revision?: string; endpoint?: string } = {}): Promise<RepoListing> {
  const endpoint = (opts.endpoint ?? defaultEndpoint()).replace(/\/+$/, '');
  const revision = opts.revision ?? 'main';
  const url = `${endpoint}/api/models/${checkRepoId(repoId)}/revision/${encodeURIComponent(revision)}?blobs=true`;
  const what = `listing ${repoId}@${revision}`;
  const res = await request(url, { headers: { accept: 'application/json', ...authHeaders() } }, what);
  if (!res.ok) {
    await res.body?.cancel();
    throw statusProblem(res.status, what, url);
  }
  let body: unknown;
  try {
    body = await res.json();
  } catch {
    throw new HubError(`${what}: ${url} did not return JSON`);
  }
  const siblings = (body as { siblings?: unknown }).siblings;
  if (!Array.isArray(siblings)) throw new HubError(`${what}: the answer from ${url} has no 'siblings' list`);
  const files: RepoListing['files'] = [];
  for (const s of siblings) {
    const name = (s as { rfilename?: unknown }).rfilename;
    if (typeof name !== 'string') throw new HubError(`${what}: a sibling without 'rfilename' in the answer from ${url}`);
    const lfs = (s as { lfs?: { sha256?: unknown; size?: unknown } }).lfs;
    const size = (s as { size?: unknown }).size;
    const blobId = (s as { blobId?: unknown }).blobId;
    files.push({
      name,
      sha256: lfs && typeof lfs.sha256 === 'string' && /^[0-9a-f]{64}$/.test(lfs.sha256) ? lfs.sha256 : null,
      gitSha1: !lfs && typeof blobId === 'string' && /^[0-9a-f]{40}$/.test(blobId) ? blobId : null,
      size: lfs && typeof lfs.size === 'number' ? lfs.size : typeof size === 'number' ? size : null,
    });
  }
  const sha = (body as { sha?: unknown }).sha;
  return { commit: typeof sha === 'string' ? sha : null, files };
}

/** What the hub tells about a file's content, for verification. */
interface ExpectedContent {
  sha256: string | null;
  gitSha1: string | null;
  size: number | null;
}

function unquoteEtag(etag: string | null): string | null {
  if (etag === null || etag.startsWith('W/')) return null;
  return etag.replace(/^"|"$/g, '').toLowerCase();
}

/** Collects checksums and size from a response's headers (X-Linked-* on the hub's LFS redirects). */
function expectedFromHeaders(headers: Headers, into: ExpectedContent): void {
  for (const tag of [unquoteEtag(headers.get('x-linked-etag')), unquoteEtag(headers.get('etag'))]) {
    if (tag === null) continue;
    if (into.sha256 === null && /^[0-9a-f]{64}$/.test(tag)) into.sha256 = tag;
    else if (into.gitSha1 === null && /^[0-9a-f]{40}$/.test(tag)) into.gitSha1 = tag;
  }
  const linkedSize = headers.get('x-linked-size');
  if (into.size === null && linkedSize !== null && /^\d+$/.test(linkedSize)) into.size = Number(linkedSize);
}

/** Total size from Content-Range (`bytes a-b/total`) or Content-Length plus the resume offset. */
function totalFromResponse(res: Response, offset: number): number | null {
  const range = res.headers.get('content-range');
  const m = range ? /\/(\d+)\s*$/.exec(range) : null;
  if (m) return Number(m[1]);
  const len = res.headers.get('content-length');
  return len !== null && /^\d+$/.test(len) ? Number(len) + offset : null;
}

/** Hashes an existing file prefix into `hash` (used when resuming). */
function hashFilePrefix(file: string, hash: Hash): void {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Downloads one file (`{endpoint}/{repo}/resolve/{rev}/{file}`) to `dest`: into `dest.part`, resuming
 * an existing `.part` with an HTTP Range request, then verifying size and checksum and renaming.
 */
export async function downloadFile(
  repoId: string,
  file: string,
  dest: string,
  opts: { revision?: string; endpoint?: string; expected?: Partial<ExpectedContent>; onProgress?: PullOptions['onProgress']; log?: PullOptions['log'] } = {},
): Promise<void> {
  const endpoint = (opts.endpoint ?? defaultEndpoint()).replace(/\/+$/, '');
  const revision = opts.revision ?? 'main';
  const what = `downloading ${repoId}/${file}`;
  const partPath = `${dest}.part`;
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  let offset = fs.existsSync(partPath) ? fs.statSync(partPath).size : 0;
  const expected: ExpectedContent = { sha256: opts.expected?.sha256 ?? null, gitSha1: opts.expected?.gitSha1 ?? null, size: opts.expected?.size ?? null };
  if (expected.size !== null && offset > expected.size) {
    fs.rmSync(partPath, { force: true });
    offset = 0;
  }

  let url = `${endpoint}/${checkRepoId(repoId)}/resolve/${encodeURIComponent(revision)}/${encodePath(file)}`;
  let res: Response | null = null;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    // The token goes to the hub only, never to the storage hosts it redirects to.
    const sameOrigin = new URL(url).origin === new URL(endpoint).origin;
    const headers: Record<string, string> = { ...(sameOrigin ? authHeaders() : {}), 'accept-encoding': 'identity' };
    if (offset > 0) headers.range = `bytes=${offset}-`;
    const r = await request(url, { headers, redirect: 'manual' }, what);
    expectedFromHeaders(r.headers, expected);
    if (r.status >= 300 && r.status < 400 && r.headers.get('location')) {
      await r.body?.cancel();
      url = new URL(r.headers.get('location')!, url).toString();
      continue;
    }
    res = r;
    break;
  }
  if (res === null) throw new HubError(`${what}: more than ${MAX_REDIRECTS} redirects`);

  if (res.status === 416 && offset > 0 && expected.size !== null && offset === expected.size) {
    // The partial file is already complete.
    await res.body?.cancel();
  } else if (res.status === 416 && offset > 0) {
    // The server refuses the range (the partial file is stale): start over.
    await res.body?.cancel();
    fs.rmSync(partPath, { force: true });
    return downloadFile(repoId, file, dest, opts);
  } else {
    if (!res.ok) {
      await res.body?.cancel();
      throw statusProblem(res.status, what, url);
    }
    if (offset > 0 && res.status !== 206) {
      opts.log?.(`${file}: the server ignored the resume request; downloading from the start`);
      offset = 0;
    } else if (offset > 0) {
      opts.log?.(`${file}: resuming at ${offset} bytes`);
    }
    const total = totalFromResponse(res, offset) ?? expected.size;
    const fd = fs.openSync(partPath, offset > 0 ? 'a' : 'w');
    let received = offset;
    try {
      if (res.body) {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          let written = 0;
          while (written < chunk.length) written += fs.writeSync(fd, chunk, written, chunk.length - written);
          received += chunk.length;
          opts.onProgress?.({ file, received, total, done: false });
        }
      }
      fs.fsyncSync(fd);
    } catch (err) {
      throw new HubError(`${what}: the transfer broke off after ${received} bytes (${err instanceof Error ? err.message : String(err)}); run the command again to resume`);
    } finally {
      fs.closeSync(fd);
    }
    opts.onProgress?.({ file, received, total, done: true });
    if (total !== null && received !== total) {
      throw new HubError(`${what}: got ${received} of ${total} bytes; run the command again to resume`);
    }
  }

  const size = fs.statSync(partPath).size;
  if (expected.size !== null && size !== expected.size) {
    fs.rmSync(partPath, { force: true });
    throw new HubError(`${what}: size mismatch (the hub says ${expected.size} bytes, got ${size}); the partial file was removed, run again`);
  }
  if (expected.sha256 !== null) {
    const hash = crypto.createHash('sha256');
    hashFilePrefix(partPath, hash);
    const actual = hash.digest('hex');
    if (actual !== expected.sha256) {
      fs.rmSync(partPath, { force: true });
      throw new HubError(`${what}: checksum mismatch (sha256 expected ${expected.sha256}, got ${actual}); the download was removed, run again`);
    }
  } else if (expected.gitSha1 !== null && expected.sha256 === null) {
    const hash = crypto.createHash('sha1').update(`blob ${size}\0`);
    hashFilePrefix(partPath, hash);
    const actual = hash.digest('hex');
    if (actual !== expected.gitSha1) {
      fs.rmSync(partPath, { force: true });
      throw new HubError(`${what}: checksum mismatch (git blob sha1 expected ${expected.gitSha1}, got ${actual}); the download was removed, run again`);
    }
  }
  fs.renameSync(partPath, dest);
}

interface PullManifest {
  repo: string;
  revision: string;
  commit: string | null;
  files: string[];
}

function readManifest(dir: string): PullManifest | null {
  try {
    const m = JSON.parse(fs.readFileSync(path.join(dir, MANIFEST_NAME), 'utf8')) as PullManifest;
    return Array.isArray(m.files) ? m : null;
  } catch {
    return null;
  }
}

/**
 * Downloads a repository's files into the cache (`<cacheRoot>/<repo-id>/`). Files already there from
 * the same commit are skipped; interrupted downloads resume.
 */
export async function pullRepo(repoId: string, opts: PullOptions = {}): Promise<PullResult> {
  checkRepoId(repoId);
  const revision = opts.revision ?? 'main';
  const endpoint = (opts.endpoint ?? defaultEndpoint()).replace(/\/+$/, '');
  const dir = repoCacheDir(repoId, opts.cacheRoot ?? defaultCacheRoot());
  const listing = await listRepoFiles(repoId, { revision, endpoint });
  let wanted = listing.files;
  if (opts.files) {
    const known = new Set(listing.files.map((f) => f.name));
    const absent = opts.files.filter((f) => !known.has(f));
    if (absent.length) throw new HubError(`${repoId}@${revision} has no file ${absent.map((f) => `'${f}'`).join(', ')} (it has: ${[...known].join(', ')})`);
    wanted = listing.files.filter((f) => opts.files!.includes(f.name));
  }
  fs.mkdirSync(dir, { recursive: true });
  const previous = readManifest(dir);
  const sameCommit = previous !== null && listing.commit !== null && previous.commit === listing.commit;
  const downloaded: string[] = [];
  const skipped: string[] = [];
  for (const f of wanted) {
    const dest = path.join(dir, safeRelativePath(f.name));
    const present = fs.existsSync(dest);
    const sizeMatches = present && f.size !== null && fs.statSync(dest).size === f.size;
    if (!opts.force && present && (sizeMatches || (sameCommit && f.size === null))) {
      skipped.push(f.name);
      opts.log?.(`${f.name}: already in the cache`);
      continue;
    }
    await downloadFile(repoId, f.name, dest, {
      revision,
      endpoint,
      expected: { sha256: f.sha256, gitSha1: f.gitSha1, size: f.size },
      onProgress: opts.onProgress,
      log: opts.log,
    });
    downloaded.push(f.name);
  }
  const manifest: PullManifest = { repo: repoId, revision, commit: listing.commit, files: listing.files.map((f) => f.name) };
  const tmp = path.join(dir, `${MANIFEST_NAME}.tmp-${process.pid}`);
  fs.writeFileSync(tmp, JSON.stringify(manifest, null, 2));
  fs.renameSync(tmp, path.join(dir, MANIFEST_NAME));
  return { dir, commit: listing.commit, files: wanted.map((f) => f.name), downloaded, skipped };
}
