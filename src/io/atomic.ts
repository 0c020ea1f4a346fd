// Atomic file writes: the bytes go to `<file>.tmp-<pid>`, are fsynced, and the temp file is renamed over
// `file` (then the folder is fsynced), so a kill at any moment leaves either the old or the new file, plus
// at worst a stale temp file. Used for safetensors files, training checkpoints and run-folder text files.
import { fs, path } from './node_builtins.js';

/** Bytes per write call (large buffers are written in pieces). */
const WRITE_CHUNK_BYTES = 1 << 24;

/** The temp file a write of `file` goes through. */
export function tempPathOf(file: string): string {
  return `${file}.tmp-${process.pid}`;
}

/** Writes the chunks, in order, atomically to `file`. The chunks may come from a generator (nothing is
 * concatenated: a file is never held twice in memory); code the generator runs between two chunks runs
 * with the earlier chunks already in the temp file. */
export function writeFileAtomic(file: string, chunks: Iterable<Uint8Array>): void {
  const tmp = tempPathOf(file);
  let fd: number | null = fs.openSync(tmp, 'w');
  try {
    for (const bytes of chunks) {
      for (let done = 0; done < bytes.length;) done += fs.writeSync(fd, bytes, done, Math.min(WRITE_CHUNK_BYTES, bytes.length - done));
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = null;
    fs.renameSync(tmp, file);
  } catch (err) {
    if (fd !== null) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  syncDirectory(path.dirname(file));
}

/** Best-effort fsync of a folder so a rename survives a crash (not every platform can open or fsync one). */
function syncDirectory(dir: string): void {
  let fd: number | null = null;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // The file itself is synced.
  } finally {
    if (fd !== null) fs.closeSync(fd);
  }
}
