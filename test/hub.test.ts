// Tests of the hub downloader against a local node:http server laid out like the Hugging Face hub.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { HubError, pullRepo, repoCacheDir } from '../src/io/hub.js';

const COMMIT = 'a'.repeat(40);
const config = Buffer.from('{"hello": "world"}\n');
const weights = Buffer.alloc(200_000);
for (let i = 0; i < weights.length; i++) weights[i] = (i * 7919) & 255;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const gitSha1 = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');

interface ServerLog {
  ranges: string[];
  /** Break the next transfer of the weights (then reset to null): send exactly `bytes` bytes of the body
   * (the Content-Length promises them all), wait for `beforeDrop`, then drop the connection. */
  breakAfter: { bytes: number; beforeDrop: () => Promise<void> } | null;
}

/** Resolves once `file` holds `bytes` bytes (gives up after 10 s; the test's size check then fails). */
async function untilFileSize(file: string, bytes: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (fs.existsSync(file) && fs.statSync(file).size >= bytes) return;
    await new Promise((r) => setTimeout(r, 5));
  }
}

function startServer(log: ServerLog): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const p = url.pathname;
    const listing = (files: string[]) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 'x', sha: COMMIT, siblings: files.map((rfilename) => ({ rfilename })) }));
    };
    if (p === '/api/models/org/good/revision/main') return listing(['config.json', 'model.safetensors']);
    if (p === '/api/models/org/bad/revision/main') return listing(['model.safetensors']);
    if (p === '/org/good/resolve/main/config.json') {
      res.writeHead(200, { etag: `"${gitSha1(config)}"`, 'content-length': config.length });
      return res.end(config);
    }
    if (p === '/org/good/resolve/main/model.safetensors' || p === '/org/bad/resolve/main/model.safetensors') {
      const linked = p.includes('/bad/') ? sha256(Buffer.from('something else')) : sha256(weights);
      res.writeHead(302, { location: '/cdn/weights', 'x-linked-etag': `"${linked}"`, 'x-linked-size': String(weights.length) });
      return res.end();
    }
    if (p === '/cdn/weights') {
      const range = req.headers.range;
      let start = 0;
      if (range) {
        log.ranges.push(range);
        start = Number(/^bytes=(\d+)-$/.exec(range)![1]);
        res.writeHead(206, { 'content-length': weights.length - start, 'content-range': `bytes ${start}-${weights.length - 1}/${weights.length}` });
      } else {
        res.writeHead(200, { 'content-length': weights.length });
      }
      if (log.breakAfter !== null) {
        const { bytes, beforeDrop } = log.breakAfter;
        log.breakAfter = null;
        // Drop only once the bytes are flushed and the client has them: how many bytes the partial file
        // holds then does not depend on timing (a stream error may discard chunks not yet consumed).
        res.write(weights.subarray(start, start + bytes), () => void beforeDrop().then(() => res.destroy()));
        return;
      }
      return res.end(weights.subarray(start));
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('Repository not found');
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

describe('hub download', () => {
  let server: http.Server;
  let endpoint: string;
  let cacheRoot: string;
  const log: ServerLog = { ranges: [], breakAfter: null };

  before(async () => {
    server = await startServer(log);
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    cacheRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-hub-'));
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    fs.rmSync(cacheRoot, { recursive: true, force: true });
  });

  it('downloads every file of a repository, verifying checksums', async () => {
    const progress: number[] = [];
    const r = await pullRepo('org/good', { endpoint, cacheRoot, onProgress: (p) => progress.push(p.received) });
    assert.equal(r.dir, repoCacheDir('org/good', cacheRoot));
    assert.deepEqual(r.downloaded.sort(), ['config.json', 'model.safetensors']);
    assert.deepEqual(fs.readFileSync(path.join(r.dir, 'config.json')), config);
    assert.deepEqual(fs.readFileSync(path.join(r.dir, 'model.safetensors')), weights);
    assert.ok(progress.length > 0);
    assert.ok(!fs.existsSync(path.join(r.dir, 'model.safetensors.part')));
    // A second pull of the same commit skips everything.
    const again = await pullRepo('org/good', { endpoint, cacheRoot });
    assert.deepEqual(again.downloaded, []);
    assert.equal(again.skipped.length, 2);
  });

  it('resumes a partial download with an HTTP Range request', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-hub-'));
    try {
      const dir = repoCacheDir('org/good', root);
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'model.safetensors.part'), weights.subarray(0, 12_345));
      log.ranges.length = 0;
      await pullRepo('org/good', { endpoint, cacheRoot: root, files: ['model.safetensors'] });
      assert.deepEqual(log.ranges, ['bytes=12345-']);
      assert.deepEqual(fs.readFileSync(path.join(dir, 'model.safetensors')), weights);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('a broken transfer leaves a .part file with exactly the bytes received, and the next pull resumes there', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-hub-'));
    try {
      const sent = 50_001;
      const part = path.join(repoCacheDir('org/good', root), 'model.safetensors.part');
      log.breakAfter = { bytes: sent, beforeDrop: () => untilFileSize(part, sent) };
      log.ranges.length = 0;
      await assert.rejects(pullRepo('org/good', { endpoint, cacheRoot: root, files: ['model.safetensors'] }), (err: Error) => {
        assert.ok(err instanceof HubError, err.message);
        assert.match(err.message, new RegExp(`broke off after ${sent} bytes|got ${sent} of ${weights.length} bytes`));
        return true;
      });
      assert.deepEqual(log.ranges, [], 'the first request starts from byte 0');
      assert.deepEqual(fs.readFileSync(part), weights.subarray(0, sent), 'the .part file holds exactly the bytes sent');
      const logged: string[] = [];
      await pullRepo('org/good', { endpoint, cacheRoot: root, files: ['model.safetensors'], log: (l) => logged.push(l) });
      assert.deepEqual(log.ranges, [`bytes=${sent}-`]);
      assert.ok(logged.includes(`model.safetensors: resuming at ${sent} bytes`), logged.join('\n'));
      assert.deepEqual(fs.readFileSync(path.join(repoCacheDir('org/good', root), 'model.safetensors')), weights);
      assert.ok(!fs.existsSync(part));
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('a checksum mismatch is an error and leaves no file', async () => {
    await assert.rejects(pullRepo('org/bad', { endpoint, cacheRoot }), (err: Error) => {
      assert.ok(err instanceof HubError);
      assert.match(err.message, /checksum mismatch/);
      assert.match(err.message, /model\.safetensors/);
      return true;
    });
    const dir = repoCacheDir('org/bad', cacheRoot);
    assert.ok(!fs.existsSync(path.join(dir, 'model.safetensors')));
    assert.ok(!fs.existsSync(path.join(dir, 'model.safetensors.part')));
  });

  it('404 gives a clear error', async () => {
    await assert.rejects(pullRepo('org/missing', { endpoint, cacheRoot }), /HTTP 404.*not found: check the repository id/);
  });

  it('rejects malformed repository ids', async () => {
    await assert.rejects(pullRepo('../etc', { endpoint, cacheRoot }), /invalid repository id/);
  });
});
