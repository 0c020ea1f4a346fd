// The tokens.json file written by `flextok tokenize` and read by `flextok detokenize`: token ids per image
// with the model's codebook size, token count and the image sizes they came from.
import * as fs from 'node:fs';
import * as path from 'node:path';

export const TOKENS_FORMAT = 'flextok-tokens/1';

export interface TokenizedImage {
  /** The source image file (as given on the command line). */
  file: string | null;
  /** [height, width] in pixels of the tokenized image. */
  size: [number, number] | null;
  tokens: number[];
  /** adaptive length (tokenize --target-psnr): the token count chosen and its reconstruction PSNR (dB) */
  k?: number;
  psnr?: number;
}

export interface TokensFile {
  format: typeof TOKENS_FORMAT;
  /** The --model value used. */
  model: string;
  codebook_size: number;
  /** Tokens per image of the model (R). */
  num_tokens: number;
  images: TokenizedImage[];
}

export function writeTokensFile(file: string, content: TokensFile): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  // One image per line keeps long token lists readable.
  const body = content.images
    .map((img) => `    {"file": ${JSON.stringify(img.file)}, "size": ${JSON.stringify(img.size)}${img.k !== undefined ? `, "k": ${img.k}, "psnr": ${img.psnr}` : ''}, "tokens": [${img.tokens.join(', ')}]}`)
    .join(',\n');
  const text =
    `{\n  "format": "${TOKENS_FORMAT}",\n  "model": ${JSON.stringify(content.model)},\n  "codebook_size": ${content.codebook_size},\n` +
    `  "num_tokens": ${content.num_tokens},\n  "images": [\n${body}\n  ]\n}\n`;
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

function isIdList(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'number');
}

/**
 * Reads a tokens file: the format above, or a bare JSON list of id lists (`[[...], [...]]`) or one id list.
 * Problems are reported with the file name.
 */
export function readTokensFile(file: string): { images: TokenizedImage[]; codebookSize: number | null } {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message})`);
  }
  if (isIdList(json)) return { images: [{ file: null, size: null, tokens: json }], codebookSize: null };
  if (Array.isArray(json) && json.every(isIdList)) return { images: json.map((tokens) => ({ file: null, size: null, tokens })), codebookSize: null };
  const obj = json as Partial<TokensFile> | null;
  if (obj === null || typeof obj !== 'object' || !Array.isArray(obj.images)) {
    throw new Error(`${file}: not a tokens file (expected {"format": "${TOKENS_FORMAT}", "images": [...]} or a list of token id lists)`);
  }
  if (obj.format !== undefined && obj.format !== TOKENS_FORMAT) throw new Error(`${file}: unknown format '${String(obj.format)}' (expected ${TOKENS_FORMAT})`);
  const images = obj.images.map((img, i) => {
    if (!img || !isIdList(img.tokens)) throw new Error(`${file}: images[${i}].tokens is not a list of token ids`);
    const size = Array.isArray(img.size) && img.size.length === 2 && img.size.every((d) => Number.isInteger(d) && d > 0) ? (img.size as [number, number]) : null;
    return { file: typeof img.file === 'string' ? img.file : null, size, tokens: img.tokens };
  });
  if (images.length === 0) throw new Error(`${file}: the file has no images`);
  return { images, codebookSize: typeof obj.codebook_size === 'number' ? obj.codebook_size : null };
}
