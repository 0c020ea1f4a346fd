// Tests of src/io/scenes.ts: the caption grammar (round trip caption → cells → caption, and its errors), the
// drawing of scenes (deterministic, 1–4 items in distinct cells) and their rendering, on a synthetic IDX split.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeIdxGz } from '../src/io/datasets.js';
import {
  drawScene, EMPTY_CELL, loadFashionScenes, mirrorItems, parseSceneCaption, sceneCaption, sceneLayout, SCENE_NOUNS, SCENE_POSITIONS,
  type SceneItem,
} from '../src/io/scenes.js';
import { Rng } from '../src/tensor/rng.js';

function randomItems(rng: Rng): SceneItem[] {
  const n = rng.randint(1, 5);
  const cells = [0, 1, 2, 3].sort(() => rng.uniform() - 0.5).slice(0, n);
  return cells.map((cell) => ({ cls: rng.randint(0, 10), cell }));
}

describe('scene caption grammar', () => {
  test("the issue's example and the four joining forms", () => {
    const items = [{ cls: 8, cell: 0 }, { cls: 9, cell: 3 }, { cls: 4, cell: 1 }];
    assert.equal(sceneCaption(items), 'a bag in the top left, an ankle boot in the bottom right and a coat in the top right');
    assert.equal(sceneCaption([{ cls: 0, cell: 2 }]), 'a t-shirt in the bottom left');
    assert.equal(sceneCaption([{ cls: 1, cell: 2 }, { cls: 7, cell: 0 }]), 'a trouser in the bottom left and a sneaker in the top left');
    assert.equal(
      sceneCaption([{ cls: 9, cell: 0 }, { cls: 9, cell: 1 }, { cls: 3, cell: 2 }, { cls: 5, cell: 3 }]),
      'an ankle boot in the top left, an ankle boot in the top right, a dress in the bottom left and a sandal in the bottom right',
    );
    assert.deepEqual(parseSceneCaption('a bag in the top left, an ankle boot in the bottom right and a coat in the top right'), items);
  });

  test('round trip on 2,000 random scenes: caption → items → caption and items → caption → items', () => {
    const rng = new Rng(7);
    for (let i = 0; i < 2000; i++) {
      const items = randomItems(rng);
      const caption = sceneCaption(items);
      assert.deepEqual(parseSceneCaption(caption), items, caption);
      assert.equal(sceneCaption(parseSceneCaption(caption)), caption);
    }
  });

  test('every noun and position appears; articles follow the first letter', () => {
    for (let c = 0; c < 10; c++) {
      for (let p = 0; p < 4; p++) {
        const caption = sceneCaption([{ cls: c, cell: p }]);
        assert.ok(caption.includes(SCENE_NOUNS[c]!) && caption.endsWith(SCENE_POSITIONS[p]!));
        assert.ok(caption.startsWith(SCENE_NOUNS[c] === 'ankle boot' ? 'an ' : 'a '), caption);
      }
    }
  });

  test('captions outside the grammar are errors that say what is wrong', () => {
    assert.throws(() => parseSceneCaption(''), /empty/);
    assert.throws(() => parseSceneCaption('a hat in the top left'), /unknown item "hat"/);
    assert.throws(() => parseSceneCaption('a bag in the middle'), /unknown position "middle"/);
    assert.throws(() => parseSceneCaption('an bag in the top left'), /should read "a bag in the top left"/);
    assert.throws(() => parseSceneCaption('a bag in the top left and a coat in the top left'), /two items in the top left cell/);
    assert.throws(() => parseSceneCaption('a bag in the top left and a coat in the top right and a dress in the bottom left'), /should read "a bag in the top left, a coat/);
    assert.throws(() => parseSceneCaption('a bag at the top left'), /is not "<a\|an> <noun> in the <position>"/);
    const five = 'a bag in the top left, a bag in the top right, a bag in the bottom left, a bag in the bottom right and a bag in the top left';
    assert.throws(() => parseSceneCaption(five), /5 items, a scene has at most 4/);
  });

  test('layout and mirroring', () => {
    assert.deepEqual(Array.from(sceneLayout([{ cls: 3, cell: 1 }, { cls: 0, cell: 2 }])), [EMPTY_CELL, 3, 0, EMPTY_CELL]);
    assert.deepEqual(mirrorItems([{ cls: 3, cell: 1 }, { cls: 0, cell: 2 }]), [{ cls: 3, cell: 0 }, { cls: 0, cell: 3 }]);
  });
});

describe('scene drawing and rendering', () => {
  let dir: string;
  const n = 30;
  const pixels = new Uint8Array(n * 28 * 28);
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-scenes-'));
    for (let i = 0; i < pixels.length; i++) pixels[i] = 1 + ((i * 13) % 255); // never black
    writeIdxGz(path.join(dir, 't10k-images-idx3-ubyte.gz'), pixels, [n, 28, 28]);
    writeIdxGz(path.join(dir, 't10k-labels-idx1-ubyte.gz'), Uint8Array.from({ length: n }, (_, i) => i % 10), [n]);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('drawScene: deterministic, 1–4 items in distinct cells, every count and cell occurs', () => {
    const counts = [0, 0, 0, 0];
    const cells = [0, 0, 0, 0];
    for (let i = 0; i < 4000; i++) {
      const s = drawScene(1, i, n);
      assert.deepEqual(drawScene(1, i, n), s);
      assert.ok(s.cells.length >= 1 && s.cells.length <= 4);
      assert.equal(new Set(s.cells).size, s.cells.length);
      assert.ok(s.images.every((k) => k >= 0 && k < n));
      counts[s.cells.length - 1]++;
      for (const c of s.cells) cells[c]++;
    }
    for (const c of counts) assert.ok(c > 850 && c < 1150, `n is uniform: ${counts}`);
    for (const c of cells) assert.ok(c > 2300 && c < 2700, `cells are uniform: ${cells}`);
    assert.notDeepEqual(drawScene(0, 5, n), drawScene(1, 5, n));
  });

  test('loadFashionScenes: each item sits in its cell with 2 px of black, empty cells black, caption and label agree', () => {
    const ds = loadFashionScenes('test', { dir, count: 50 });
    assert.deepEqual([ds.size, ds.channels, ds.height, ds.width], [50, 1, 64, 64]);
    assert.throws(() => ds.get(50), /out of range/);
    for (let i = 0; i < 50; i++) {
      const { image, label } = ds.get(i);
      const items = ds.items(i);
      const draw = drawScene(1, i, n);
      assert.equal(label, items.length - 1);
      assert.deepEqual(parseSceneCaption(ds.caption(i)), items);
      const layout = sceneLayout(items);
      for (let cell = 0; cell < 4; cell++) {
        const k = items.findIndex((it) => it.cell === cell);
        for (let y = 0; y < 32; y++) {
          for (let x = 0; x < 32; x++) {
            const v = image[((cell >> 1) * 32 + y) * 64 + (cell & 1) * 32 + x]!;
            const inside = y >= 2 && y < 30 && x >= 2 && x < 30;
            if (layout[cell] === EMPTY_CELL || !inside) assert.equal(v, -1, `scene ${i} cell ${cell} (${x}, ${y}) is black`);
            else {
              const src = draw.images[k]!;
              assert.equal(items[k]!.cls, src % 10);
              assert.ok(Math.abs(v - (pixels[src * 784 + (y - 2) * 28 + x - 2]! * (2 / 255) - 1)) < 1e-6);
            }
          }
        }
      }
    }
  });
});
