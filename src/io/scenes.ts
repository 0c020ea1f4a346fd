// Fashion-MNIST scenes: 64×64 canvases of 2×2 cells holding 1–4 Fashion-MNIST images, each with a caption from
// a fixed grammar ("a bag in the top left, an ankle boot in the bottom right and a coat in the top right") — the
// text-conditional task whose prompt complexity (the number of items n) can be counted.
//
// A scene is a deterministic function of (seed, index): n uniform in 1..4, a uniformly random set of n cells, a
// uniformly random image of the split in each, and the items listed in the caption in random order. Cells are
// numbered 0 top left, 1 top right, 2 bottom left, 3 bottom right; each is 32×32 px and an item sits in it as its
// 28×28 image with 2 px of black padding. Cells not named in the caption are black.

import { loadFashionMnist, type ImageDataset, type Sample } from './datasets.js';
import { mixSeed, Rng } from '../tensor/rng.js';

/** The caption noun of each Fashion-MNIST class 0–9. */
export const SCENE_NOUNS: readonly string[] = ['t-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle boot'];
/** The caption phrase of each cell 0–3. */
export const SCENE_POSITIONS: readonly string[] = ['top left', 'top right', 'bottom left', 'bottom right'];
/** Canvas side (px), cell side (px) and the item's offset inside its cell (px). */
export const SCENE_SIZE = 64;
export const SCENE_CELL = 32;
export const SCENE_ITEM_OFFSET = 2;
/** Empty cell marker in a layout. */
export const EMPTY_CELL = -1;

/** One item of a scene: a class in a cell. */
export interface SceneItem {
  cls: number;
  cell: number;
}

/** Where a scene's items come from: the cells in caption order and the index of each item's image in its split. */
export interface SceneDraw {
  cells: number[];
  images: number[];
}

/** Cells 0–3 → class or EMPTY_CELL. */
export function sceneLayout(items: readonly SceneItem[]): Int32Array {
  const cells = new Int32Array(4).fill(EMPTY_CELL);
  for (const { cls, cell } of items) {
    if (!Number.isInteger(cell) || cell < 0 || cell > 3) throw new Error(`scene item: cell ${cell} is outside 0..3`);
    if (!Number.isInteger(cls) || cls < 0 || cls >= SCENE_NOUNS.length) throw new Error(`scene item: class ${cls} is outside 0..${SCENE_NOUNS.length - 1}`);
    if (cells[cell] !== EMPTY_CELL) throw new Error(`scene: two items in the ${SCENE_POSITIONS[cell]} cell`);
    cells[cell] = cls;
  }
  return cells;
}

// ---------------------------------------------------------------------------------------------
// the caption grammar

function withArticle(noun: string): string {
  return `${/^[aeiou]/.test(noun) ? 'an' : 'a'} ${noun}`;
}

/** The caption of items in the given order: `X`, `X and Y`, `X, Y and Z`, `W, X, Y and Z`. */
export function sceneCaption(items: readonly SceneItem[]): string {
  if (items.length < 1 || items.length > 4) throw new Error(`sceneCaption: a scene has 1 to 4 items, got ${items.length}`);
  sceneLayout(items); // checks classes, cells and that cells are distinct
  const phrases = items.map(({ cls, cell }) => `${withArticle(SCENE_NOUNS[cls])} in the ${SCENE_POSITIONS[cell]}`);
  return phrases.length === 1 ? phrases[0] : `${phrases.slice(0, -1).join(', ')} and ${phrases[phrases.length - 1]}`;
}

/**
 * The items of a caption, in its order (the inverse of sceneCaption: sceneCaption(parseSceneCaption(c)) === c for
 * every caption of the grammar). Anything else is an error naming what is wrong.
 */
export function parseSceneCaption(caption: string): SceneItem[] {
  if (typeof caption !== 'string' || caption.trim() === '') throw new Error('scene caption: empty (a caption names 1 to 4 items, e.g. "a bag in the top left")');
  const parts = caption.split(/, | and /);
  if (parts.length > 4) throw new Error(`scene caption "${caption}": ${parts.length} items, a scene has at most 4`);
  const items = parts.map((part) => {
    const m = /^(a|an) (.+) in the (.+)$/.exec(part);
    if (!m) throw new Error(`scene caption "${caption}": "${part}" is not "<a|an> <noun> in the <position>"`);
    const cls = SCENE_NOUNS.indexOf(m[2]);
    if (cls < 0) throw new Error(`scene caption "${caption}": unknown item "${m[2]}" (known: ${SCENE_NOUNS.join(', ')})`);
    const cell = SCENE_POSITIONS.indexOf(m[3]);
    if (cell < 0) throw new Error(`scene caption "${caption}": unknown position "${m[3]}" (known: ${SCENE_POSITIONS.join(', ')})`);
    return { cls, cell };
  });
  let canonical: string;
  try {
    canonical = sceneCaption(items);
  } catch (err) {
    throw new Error(`scene caption "${caption}": ${(err as Error).message.replace(/^scene(Caption)?: /, '')}`);
  }
  if (canonical !== caption) throw new Error(`scene caption "${caption}" does not follow the grammar; it should read "${canonical}"`);
  return items;
}

// ---------------------------------------------------------------------------------------------
// drawing scenes

/** The cells (in caption order) and source images of scene `index` of a split of `splitSize` images, from `seed`. */
export function drawScene(seed: number, index: number, splitSize: number): SceneDraw {
  const rng = new Rng(mixSeed(seed, index));
  const n = rng.randint(1, 5);
  const cells = [0, 1, 2, 3];
  for (let i = 3; i > 0; i--) {
    const j = rng.randint(0, i + 1);
    [cells[i], cells[j]] = [cells[j], cells[i]];
  }
  // the first n cells of a uniform permutation: a uniform n-set, listed in uniform random order
  const chosen = cells.slice(0, n);
  return { cells: chosen, images: chosen.map(() => rng.randint(0, splitSize)) };
}

/** The scene mirrored left ↔ right: each item moves to the mirrored cell (its image is flipped when drawn). */
export function mirrorItems(items: readonly SceneItem[]): SceneItem[] {
  return items.map(({ cls, cell }) => ({ cls, cell: cell ^ 1 }));
}

/**
 * Renders items onto a 64×64 canvas in [-1, 1] (black = −1): `itemImage(k)` gives item k's 28×28 image in [-1, 1];
 * `flip` mirrors each item image horizontally (for mirrored scenes).
 */
export function renderScene(items: readonly SceneItem[], itemImage: (k: number) => Float32Array, flip = false): Float32Array {
  const out = new Float32Array(SCENE_SIZE * SCENE_SIZE).fill(-1);
  const side = SCENE_CELL - 2 * SCENE_ITEM_OFFSET;
  items.forEach(({ cell }, k) => {
    const img = itemImage(k);
    if (img.length !== side * side) throw new Error(`renderScene: item ${k} has ${img.length} pixels, expected ${side}×${side}`);
    const y0 = (cell >> 1) * SCENE_CELL + SCENE_ITEM_OFFSET;
    const x0 = (cell & 1) * SCENE_CELL + SCENE_ITEM_OFFSET;
    for (let y = 0; y < side; y++) {
      for (let x = 0; x < side; x++) out[(y0 + y) * SCENE_SIZE + x0 + x] = img[y * side + (flip ? side - 1 - x : x)];
    }
  });
  return out;
}

/** A scene dataset also gives each image's caption and layout. */
export interface SceneDataset extends ImageDataset {
  /** the items of scene i in caption order */
  items(i: number): SceneItem[];
  caption(i: number): string;
}

export const SCENE_COUNTS = { train: 60_000, test: 10_000 } as const;
/** Each split has its own seed, so train and test scenes are drawn independently (from their own images). */
export const SCENE_SEEDS = { train: 0, test: 1 } as const;

/**
 * The Fashion-MNIST scenes of a split (train scenes from train images, test scenes from test images): 1×64×64 in
 * [-1, 1], label = the number of items − 1 (class names '1 item' … '4 items'). `count` defaults to 60,000 / 10,000.
 */
export function loadFashionScenes(split: 'train' | 'test', opts: { count?: number; dir?: string } = {}): SceneDataset {
  const source = loadFashionMnist(split, { dir: opts.dir });
  const count = opts.count ?? SCENE_COUNTS[split];
  if (!Number.isInteger(count) || count < 1) throw new Error(`fmnist-scenes: the scene count must be a positive integer, got ${count}`);
  const seed = SCENE_SEEDS[split];
  const scene = (i: number): { items: SceneItem[]; images: number[] } => {
    if (!Number.isInteger(i) || i < 0 || i >= count) throw new RangeError(`fmnist-scenes-${split}: index ${i} out of range [0, ${count})`);
    const s = drawScene(seed, i, source.size);
    const items = s.cells.map((cell, k) => ({ cls: source.labels[s.images[k]], cell }));
    return { items, images: s.images };
  };
  return {
    name: `fmnist-scenes-${split}`,
    size: count,
    channels: 1,
    height: SCENE_SIZE,
    width: SCENE_SIZE,
    numClasses: 4,
    classNames: ['1 item', '2 items', '3 items', '4 items'],
    get(i: number): Sample {
      const { items, images } = scene(i);
      return { image: renderScene(items, (k) => source.get(images[k]).image), label: items.length - 1 };
    },
    items: (i) => scene(i).items,
    caption: (i) => sceneCaption(scene(i).items),
  };
}
