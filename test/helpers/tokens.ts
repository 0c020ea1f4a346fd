// A small token-dataset folder for stage-2 tests (train.safetensors + test.safetensors, as `flextok
// tokenize-dataset` writes them), recorded as made by the shipped tokenizer models/fmnist-default: each
// class's sequences follow a simple pattern (with some noise), so a generator has something to learn.
import * as path from 'node:path';
import { sha256OfFile, writeTokenDataset } from '../../src/io/token_dataset.js';
import { Rng } from '../../src/tensor/rng.js';
import { FASHION_MNIST_CLASSES } from '../../src/io/datasets.js';
import { sceneCaption } from '../../src/io/scenes.js';

export const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
export const SHIPPED_TOKENIZER = path.join(root, 'models/fmnist-default');
export const SHIPPED_TOKENIZER_WEIGHTS = path.join(SHIPPED_TOKENIZER, 'model.safetensors');

/** Writes `dir`/train.safetensors (nTrain rows) and `dir`/test.safetensors (nTest rows) of R = 32 tokens; with
 * `captions`, each row also gets a scene caption naming its class in one of the four cells (a text-conditional
 * task: the caption determines the pattern). */
export function writeSyntheticTokens(dir: string, nTrain = 64, nTest = 16, seed = 1, captions = false): void {
  const sha = sha256OfFile(SHIPPED_TOKENIZER_WEIGHTS);
  const r = 32;
  const rng = new Rng(seed);
  for (const [split, n] of [['train', nTrain], ['test', nTest]] as const) {
    const tokens = new Int32Array(n * r);
    const labels = new Int32Array(n);
    const caps: string[] = [];
    for (let i = 0; i < n; i++) {
      const c = i % 10;
      labels[i] = c;
      caps.push(sceneCaption([{ cls: c, cell: i % 4 }]));
      for (let t = 0; t < r; t++) tokens[i * r + t] = rng.uniform() < 0.1 ? Math.floor(rng.uniform() * 64000) : (c * 6007 + t * 131) % 64000;
    }
    writeTokenDataset(path.join(dir, `${split}.safetensors`), {
      tokenizerPath: 'models/fmnist-default', tokenizerFile: SHIPPED_TOKENIZER_WEIGHTS, tokenizerSha256: sha,
      codebookSize: 64000, numTokens: r, data: 'synthetic (test)', split, augment: 'none', classNames: FASHION_MNIST_CLASSES,
      created: '2026-01-01T00:00:00.000Z', tokens, labels, index: Int32Array.from({ length: n }, (_, i) => i), flipped: new Uint8Array(n),
      ...(captions ? { captions: caps } : {}),
    });
  }
}
