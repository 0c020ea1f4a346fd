// The example images `flextok serve` offers the web page (by default assets/fashion-mnist/, the images
// `flextok demo` uses): GET /api/examples lists them, GET /examples/<file>.png serves one.
import * as fs from 'node:fs';

/** What GET /api/examples says about one example image. */
export interface ExampleImage {
  /** e.g. "ankle boot" */
  label: string;
  /** e.g. "/examples/9-ankle-boot.png" */
  url: string;
}

/** The example images (PNG files named `<class index>-<label>.png`, as assets/fashion-mnist/), sorted by name. */
export function listExamples(dir: string): ExampleImage[] {
  let files: string[];
  try {
    files = fs.readdirSync(dir).filter((f) => /^[A-Za-z0-9][A-Za-z0-9._-]*\.png$/.test(f)).sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  } catch {
    return [];
  }
  // "9-ankle-boot.png" → "ankle boot"; a one-letter part keeps its hyphen ("0-t-shirt.png" → "t-shirt")
  const labelOf = (f: string): string => f.replace(/\.png$/, '').replace(/^\d+-/, '').split('-').reduce((acc, part, i, parts) => (i === 0 ? part : `${acc}${parts[i - 1]!.length === 1 ? '-' : ' '}${part}`), '');
  return files.map((f) => ({ label: labelOf(f), url: `/examples/${encodeURIComponent(f)}` }));
}
