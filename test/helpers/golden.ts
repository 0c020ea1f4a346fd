// Where the golden vectors (recorded from the official PyTorch code) live, and what a test does when they
// are not there. They sit in `../shared/golden` relative to the repository root (resolved from this file,
// not from the working directory). When a needed file is missing:
//   - outside CI the test is skipped, with the reason printed (node:test's `skip: reason`);
//   - in CI (`CI` set to anything but '', '0', 'false', 'no') nothing is skipped: the test runs and fails,
//     with the message of `requireGolden` when the test calls it first.
//
// Use:
//   const NEED = ['e2e/model.safetensors', 'e2e/config.json'];
//   describe('…', { skip: goldenSkip(...NEED) }, () => { before(() => requireGolden(...NEED)); … });
//   test('…', { skip: goldenSkip(...NEED) }, () => { requireGolden(...NEED); … });
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (two levels above this file). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The golden folder relative to the repository root (for commands run from the root, such as the CLI). */
export const GOLDEN_REL = '../shared/golden';

/** The golden folder, absolute, resolved from the repository root. */
export const GOLDEN_DIR = path.resolve(REPO_ROOT, GOLDEN_REL);

/** Whether the tests run in CI, where missing golden files are failures rather than skips. */
export const IN_CI = isTruthyEnv(process.env.CI);

export function isTruthyEnv(value: string | undefined): boolean {
  const v = (value ?? '').trim().toLowerCase();
  return v !== '' && v !== '0' && v !== 'false' && v !== 'no';
}

/** A path inside the golden folder (`goldenPath('e2e', 'model.safetensors')`). */
export function goldenPath(...parts: string[]): string {
  return path.join(GOLDEN_DIR, ...parts);
}

/** The given golden files (relative to the golden folder; none: the folder itself) that do not exist. */
export function missingGolden(...files: string[]): string[] {
  const wanted = files.length ? files : ['.'];
  return wanted.filter((f) => !fs.existsSync(path.join(GOLDEN_DIR, f)));
}

function describeMissing(missing: string[]): string {
  const shown = missing.map((f) => (f === '.' ? GOLDEN_DIR : path.join(GOLDEN_DIR, f)));
  return `golden file${shown.length > 1 ? 's' : ''} not found: ${shown.join(', ')} (the golden vectors belong in ${GOLDEN_REL} next to the repository root ${REPO_ROOT})`;
}

/**
 * The `skip` option of a test or describe block that needs these golden files: false when they all exist
 * or when running in CI (the test then fails); otherwise the reason, which node:test prints.
 */
export function goldenSkip(...files: string[]): string | false {
  const missing = missingGolden(...files);
  if (missing.length === 0 || IN_CI) return false;
  return describeMissing(missing);
}

/** Throws a clear error when one of these golden files is missing (so a CI run fails saying why). */
export function requireGolden(...files: string[]): void {
  const missing = missingGolden(...files);
  if (missing.length) throw new Error(`${describeMissing(missing)}${IN_CI ? '; CI is set, so golden tests fail instead of skipping' : ''}`);
}
