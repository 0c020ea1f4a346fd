// Training data for the trainers: Fashion-MNIST, Fashion-MNIST scenes, an image folder, or procedural shapes (for tests and
// smoke runs), brought to the training resolution; plus a helper taking the first images as a batch.

import { loadFashionMnist, loadImageFolder, resizeOrPad, type ImageDataset, type Sample } from '../io/datasets.js';
import { loadFashionScenes, SCENE_SIZE } from '../io/scenes.js';
import { mixSeed, Rng } from '../tensor/rng.js';
import { Tensor } from '../tensor/tensor.js';
import type { DataConfig } from './config.js';

/** The Fashion-MNIST scenes source (src/io/scenes.ts): 64×64 captioned scenes of 1–4 items. */
export const FMNIST_SCENES = 'fmnist-scenes';

/** `synthetic` or `synthetic:N`: N procedural images (default 512). */
export function parseSyntheticSource(source: string): number | null {
  const m = /^synthetic(?::(\d+))?$/.exec(source);
  if (!m) return null;
  const n = m[1] === undefined ? 512 : Number(m[1]);
  if (!(n >= 1)) throw new Error(`data source '${source}': the image count must be ≥ 1`);
  return n;
}

/**
 * Procedural grey images: on a black (−1) background, one filled rectangle (label 0) or disc
 * (label 1) of random size, position and brightness. Image i depends only on (seed, i).
 */
export function syntheticShapes(count: number, size: number, seed = 0): ImageDataset {
  return {
    name: `synthetic-${count}`,
    size: count,
    channels: 1,
    height: size,
    width: size,
    numClasses: 2,
    classNames: ['rectangle', 'disc'],
    get(i: number): Sample {
      if (!Number.isInteger(i) || i < 0 || i >= count) throw new RangeError(`synthetic: index ${i} out of range [0, ${count})`);
      const rng = new Rng(mixSeed(seed, i));
      const image = new Float32Array(size * size).fill(-1);
      const label = rng.randint(0, 2);
      const value = -0.2 + 1.2 * rng.uniform();
      const cx = size * (0.3 + 0.4 * rng.uniform());
      const cy = size * (0.3 + 0.4 * rng.uniform());
      const rx = size * (0.12 + 0.2 * rng.uniform());
      const ry = label === 0 ? size * (0.12 + 0.2 * rng.uniform()) : rx;
      for (let y = 0; y < size; y++) {
        for (let x = 0; x < size; x++) {
          const dx = (x + 0.5 - cx) / rx;
          const dy = (y + 0.5 - cy) / ry;
          const inside = label === 0 ? Math.abs(dx) <= 1 && Math.abs(dy) <= 1 : dx * dx + dy * dy <= 1;
          if (inside) image[y * size + x] = value;
        }
      }
      return { image, label };
    },
  };
}

/** The dataset a config names, at the training resolution. Folders have no split (both give the folder). */
export async function openDataset(cfg: DataConfig, split: 'train' | 'test'): Promise<ImageDataset> {
  const limit = cfg.limit ?? undefined;
  const synthetic = parseSyntheticSource(cfg.source);
  if (synthetic !== null) return syntheticShapes(limit === undefined ? synthetic : Math.min(limit, synthetic), cfg.resolution, split === 'train' ? 0 : 1);
  if (cfg.source === FMNIST_SCENES) {
    if (cfg.resolution !== SCENE_SIZE) throw new Error(`data source '${FMNIST_SCENES}' is ${SCENE_SIZE}×${SCENE_SIZE} scenes; set data.resolution to ${SCENE_SIZE} (got ${cfg.resolution})`);
    return loadFashionScenes(split, limit === undefined || split === 'test' ? {} : { count: limit });
  }
  if (cfg.source === 'fashion-mnist') {
    return resizeOrPad(loadFashionMnist(split, split === 'train' ? { limit } : {}), cfg.resolution, cfg.resize_mode);
  }
  const ds = await loadImageFolder(cfg.source, { size: cfg.resolution, channels: cfg.channels, fit: cfg.resize_mode === 'pad' ? 'contain' : 'cover' });
  if (limit === undefined || limit >= ds.size) return ds;
  return { ...viewOf(ds), name: `${ds.name}[:${limit}]`, size: limit };
}

function viewOf(ds: ImageDataset): ImageDataset {
  return { name: ds.name, size: ds.size, channels: ds.channels, height: ds.height, width: ds.width, numClasses: ds.numClasses, classNames: ds.classNames, get: (i) => ds.get(i) };
}

/** The first n images of a dataset as a batch [n, C, H, W] (and their labels). */
export function sampleBatch(ds: ImageDataset, n: number, start = 0): Tensor {
  return sampleBatchWithLabels(ds, n, start).images;
}

export function sampleBatchWithLabels(ds: ImageDataset, n: number, start = 0): { images: Tensor; labels: Int32Array } {
  const per = ds.channels * ds.height * ds.width;
  const count = Math.max(0, Math.min(n, ds.size - start));
  const data = new Float32Array(count * per);
  const labels = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const s = ds.get(start + i);
    data.set(s.image, i * per);
    labels[i] = s.label;
  }
  return { images: new Tensor(data, [count, ds.channels, ds.height, ds.width]), labels };
}
