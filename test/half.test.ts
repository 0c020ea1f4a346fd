// Tests of float32 ⇄ float16 / bfloat16 conversion: exhaustive roundtrips, rounding ties, special values.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  bfloat16ToFloat32,
  float16ToFloat32,
  float32ToBfloat16,
  float32ToFloat16,
  fromBfloat16Bits,
  fromFloat16Bits,
  roundToBfloat16InPlace,
  roundToFloat16InPlace,
  toBfloat16Bits,
  toFloat16Bits,
} from '../src/tensor/half.js';

/** float16 value from its fields, computed in doubles (independent of the code under test). */
function float16Reference(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return m === 0 ? sign * Infinity : NaN;
  if (e === 0) return sign * m * 2 ** -24;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** Round-half-even of x to a float format with `mantissaBits` fraction bits, min normal exponent, max finite. */
function roundReference(x: number, mantissaBits: number, minExponent: number, maxFinite: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  const exponent = Math.max(Math.floor(Math.log2(a)), minExponent);
  const ulp = 2 ** (exponent - mantissaBits);
  const q = a / ulp; // exact: power-of-two division
  let r = Math.floor(q);
  const frac = q - r;
  if (frac > 0.5 || (frac === 0.5 && r % 2 === 1)) r++;
  let value = r * ulp;
  if (value > maxFinite) value = Infinity; // rounded up to 2^(maxExponent+1)
  return Math.sign(x) * value;
}

/** A deterministic stream of uint32 values. */
function randomUint32s(count: number, seed: number): Uint32Array {
  const out = new Uint32Array(count);
  let s = seed >>> 0;
  for (let i = 0; i < count; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = s;
  }
  return out;
}

test('float16 → float32 is exact for all 65536 patterns', () => {
  const all = new Uint16Array(65536);
  for (let i = 0; i < 65536; i++) all[i] = i;
  const f = float16ToFloat32(all);
  for (let i = 0; i < 65536; i++) {
    const want = float16Reference(i);
    if (Number.isNaN(want)) assert.ok(Number.isNaN(f[i]), `pattern ${i.toString(16)} should be NaN`);
    else assert.ok(Object.is(f[i], want), `pattern ${i.toString(16)}: ${f[i]} vs ${want}`);
  }
});

test('float16 → float32 → float16 roundtrips all 65536 patterns (NaN stays NaN)', () => {
  const all = new Uint16Array(65536);
  for (let i = 0; i < 65536; i++) all[i] = i;
  const back = float32ToFloat16(float16ToFloat32(all));
  for (let i = 0; i < 65536; i++) {
    const isNaN16 = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
    if (isNaN16) {
      const b = back[i]!;
      assert.ok((b & 0x7c00) === 0x7c00 && (b & 0x3ff) !== 0, `NaN ${i.toString(16)} became ${b.toString(16)}`);
      assert.equal(b & 0x8000, i & 0x8000, 'NaN sign kept');
    } else {
      assert.equal(back[i], i, `pattern ${i.toString(16)}`);
    }
  }
});

test('float32 → float16 rounds midpoints to even and neighbours to nearest, for every finite gap', () => {
  const lo = new Float32Array(1);
  const loBits = new Uint32Array(lo.buffer);
  for (let h = 0; h < 0x7bff; h++) {
    const a = float16Reference(h);
    const b = float16Reference(h + 1);
    const mid = (a + b) / 2; // exactly representable in float32
    const even = h % 2 === 0 ? h : h + 1;
    lo[0] = mid;
    assert.equal(lo[0], mid);
    assert.equal(toFloat16Bits(mid), even, `tie between ${h.toString(16)} and ${(h + 1).toString(16)}`);
    assert.equal(toFloat16Bits(-mid), even | 0x8000, 'negative tie');
    loBits[0] -= 1;
    assert.equal(toFloat16Bits(lo[0]!), h, 'just below the midpoint');
    loBits[0] += 2;
    assert.equal(toFloat16Bits(lo[0]!), h + 1, 'just above the midpoint');
  }
});

test('float32 → float16 matches a double-precision reference on random float32 patterns', () => {
  const bits = randomUint32s(200000, 12345);
  // Bias half of them into the float16 range so subnormals and normals are well covered.
  for (let i = 0; i < bits.length; i += 2) bits[i] = (bits[i]! & 0x80ffffff) | ((0x30 + (bits[i]! >>> 24) % 0x18) << 24) >>> 0;
  const values = new Float32Array(bits.buffer);
  const halves = float32ToFloat16(values);
  const back = float16ToFloat32(halves);
  for (let i = 0; i < values.length; i++) {
    const x = values[i]!;
    if (Number.isNaN(x)) {
      assert.ok(Number.isNaN(back[i]));
      continue;
    }
    const want = roundReference(x, 10, -14, 65504);
    assert.ok(Object.is(back[i], want), `x=${x}: got ${back[i]}, want ${want}`);
  }
});

test('float16 known values, signed zeros, subnormals, infinities and overflow', () => {
  const cases: Array<[number, number]> = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [65504, 0x7bff],
    [65519, 0x7bff],
    [65520, 0x7c00],
    [1e6, 0x7c00],
    [-1e6, 0xfc00],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [2 ** -14, 0x0400],
    [2 ** -24, 0x0001],
    [2 ** -25, 0x0000], // tie with 0 → even (0)
    [-(2 ** -25), 0x8000],
    [1.5 * 2 ** -25, 0x0001],
    [3 * 2 ** -25, 0x0002], // tie between 1 and 2 subnormal units → even
    [1e-10, 0x0000],
    [0.1, 0x2e66],
    [1 / 3, 0x3555],
    [1 + 2 ** -11, 0x3c00], // tie → even
    [1 + 3 * 2 ** -11, 0x3c02], // tie → even (up)
    [(1 - 2 ** -11) * 2 ** -14, 0x0400], // largest subnormal rounds up into the smallest normal
  ];
  for (const [x, h] of cases) assert.equal(toFloat16Bits(x), h, `toFloat16Bits(${x})`);
  assert.ok(Object.is(fromFloat16Bits(0x8000), -0));
  assert.equal(fromFloat16Bits(0x7bff), 65504);
  assert.equal(fromFloat16Bits(0x0001), 2 ** -24);
  assert.ok(Number.isNaN(fromFloat16Bits(0x7e00)));
  const nanBits = toFloat16Bits(NaN);
  assert.ok((nanBits & 0x7c00) === 0x7c00 && (nanBits & 0x3ff) !== 0);
  // A float32 NaN whose payload lives only in the low bits still becomes a NaN, not Inf.
  const oddNaN = new Float32Array(new Uint32Array([0x7f800001]).buffer);
  const h = float32ToFloat16(oddNaN)[0]!;
  assert.ok((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0);
});

test('bfloat16 → float32 is a 16-bit shift and roundtrips all patterns', () => {
  const all = new Uint16Array(65536);
  for (let i = 0; i < 65536; i++) all[i] = i;
  const f = bfloat16ToFloat32(all);
  const fBits = new Uint32Array(f.buffer);
  for (let i = 0; i < 65536; i++) assert.equal(fBits[i], (i << 16) >>> 0);
  const back = float32ToBfloat16(f);
  for (let i = 0; i < 65536; i++) {
    const isNaN16 = (i & 0x7f80) === 0x7f80 && (i & 0x7f) !== 0;
    if (isNaN16) assert.ok(Number.isNaN(fromBfloat16Bits(back[i]!)));
    else assert.equal(back[i], i);
  }
});

test('float32 → bfloat16 matches a double-precision reference, incl. ties and overflow', () => {
  const bits = randomUint32s(200000, 777);
  const values = new Float32Array(bits.buffer);
  const back = bfloat16ToFloat32(float32ToBfloat16(values));
  const maxBf16 = (2 - 2 ** -7) * 2 ** 127;
  for (let i = 0; i < values.length; i++) {
    const x = values[i]!;
    if (Number.isNaN(x)) {
      assert.ok(Number.isNaN(back[i]));
      continue;
    }
    const want = roundReference(x, 7, -126, maxBf16);
    assert.ok(Object.is(back[i], want), `x=${x}: got ${back[i]}, want ${want}`);
  }
  assert.equal(toBfloat16Bits(1), 0x3f80);
  assert.equal(toBfloat16Bits(1 + 2 ** -8), 0x3f80); // tie → even
  assert.equal(toBfloat16Bits(1 + 3 * 2 ** -8), 0x3f82); // tie → even (up)
  assert.equal(toBfloat16Bits(-0), 0x8000);
  assert.equal(toBfloat16Bits(3.4e38), 0x7f80); // overflow → Inf
  assert.equal(toBfloat16Bits(-Infinity), 0xff80);
  assert.ok(Number.isNaN(fromBfloat16Bits(toBfloat16Bits(NaN))));
  const lowNaN = new Float32Array(new Uint32Array([0xff800001]).buffer);
  const nb = float32ToBfloat16(lowNaN)[0]!;
  assert.ok(Number.isNaN(fromBfloat16Bits(nb)) && (nb & 0x8000) !== 0);
});

test('in-place rounding and output arrays', () => {
  const v = new Float32Array([0.1, 1 / 3, 70000, -0]);
  roundToFloat16InPlace(v);
  assert.deepEqual(Array.from(v), [fromFloat16Bits(0x2e66), fromFloat16Bits(0x3555), Infinity, -0]);
  const w = new Float32Array([0.1, 1 + 2 ** -8]);
  roundToBfloat16InPlace(w);
  assert.deepEqual(Array.from(w), [fromBfloat16Bits(toBfloat16Bits(0.1)), 1]);
  const out = new Uint16Array(2);
  assert.equal(float32ToFloat16(new Float32Array([1, 2]), out), out);
  assert.throws(() => float32ToFloat16(new Float32Array(3), out), /output has 2 elements/);
  // Works on a Float32Array that is a view at an offset into a larger buffer.
  const buf = new ArrayBuffer(16);
  const view = new Float32Array(buf, 4, 2);
  view.set([1, -2]);
  assert.deepEqual(Array.from(float32ToFloat16(view)), [0x3c00, 0xc000]);
});
