// Where the flextok package (repository or installed copy) lives on disk: the folder of its package.json, found by
// walking up from this module (two levels above src/io/, three above dist/src/io/), for the shipped models and assets.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The flextok package root (the folder of the package.json named "flextok" above this module). */
export function packageRoot(): string {
  const start = path.dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; dir = path.dirname(dir)) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg)) {
      try {
        if ((JSON.parse(fs.readFileSync(pkg, 'utf8')) as { name?: string }).name === 'flextok') return dir;
      } catch {
        // not ours; keep looking
      }
    }
    if (path.dirname(dir) === dir) throw new Error(`cannot find the flextok package root above ${start}`);
  }
}
