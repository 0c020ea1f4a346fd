// Conversion of whole arrays between float32 and the 16-bit float formats (IEEE float16 and bfloat16), stored as Uint16Array bit patterns.
//
// float32 → 16 bit rounds to nearest, ties to even; handles ±0, subnormals, ±Inf and overflow to Inf,
// and keeps NaN a (quiet) NaN with the sign and the top payload bits. 16 bit → float32 is exact.
// Arrays are processed through a Uint32Array view of the float32 data, without per-element allocation.

/** Uint32 view of a Float32Array's bytes (no copy). */
function bitsOf(values: Float32Array): Uint32Array {
  return new Uint32Array(values.buffer, values.byteOffset, values.length);
}

function checkOutputLength(out: ArrayLike<number>, length: number, what: string): void {
  if (out.length !== length) {
    throw new RangeError(`${what}: output has ${out.length} elements, input has ${length}`);
  }
}

/** The float16 bit pattern nearest to the float32 with bit pattern `f` (ties to even). */
function float32BitsToFloat16Bits(f: number): number {
  const sign = (f >>> 16) & 0x8000;
  const abs = f & 0x7fffffff;
  if (abs >= 0x7f800000) {
    // Inf stays Inf; NaN keeps its top payload bits and is made quiet.
    return abs > 0x7f800000 ? sign | 0x7e00 | ((abs >>> 13) & 0x3ff) : sign | 0x7c00;
  }
  if (abs >= 0x477ff000) return sign | 0x7c00; // ≥ 65520 rounds to Inf.
  if (abs >= 0x38800000) {
    // Normal float16: rebias the exponent (127 → 15) and round the 13 dropped mantissa bits.
    let h = (abs - 0x38000000) >>> 13;
    const rest = abs & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1) !== 0)) h++; // a carry into the exponent is correct
    return sign | h;
  }
  if (abs <= 0x33000000) return sign; // ≤ 2^-25 (half the smallest subnormal) rounds to ±0.
  // Subnormal float16: value = mantissa · 2^-24.
  const exponent = abs >>> 23; // 102..112
  const mantissa = (abs & 0x7fffff) | 0x800000;
  const shift = 126 - exponent; // 14..24
  let h = mantissa >>> shift;
  const rest = mantissa & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rest > half || (rest === half && (h & 1) !== 0)) h++; // may carry into the smallest normal: correct
  return sign | h;
}

/** The float32 bit pattern of the float16 with bit pattern `h` (exact). */
function float16BitsToFloat32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exponent = (h >>> 10) & 0x1f;
  let mantissa = h & 0x3ff;
  if (exponent === 0x1f) return (sign | 0x7f800000 | (mantissa << 13)) >>> 0;
  if (exponent !== 0) return (sign | ((exponent + 112) << 23) | (mantissa << 13)) >>> 0;
  if (mantissa === 0) return sign >>> 0;
  // Subnormal: normalise the mantissa.
  let e = 113;
  while ((mantissa & 0x400) === 0) {
    mantissa <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((mantissa & 0x3ff) << 13)) >>> 0;
}

/** The bfloat16 bit pattern nearest to the float32 with bit pattern `f` (ties to even; NaN stays a quiet NaN). */
function float32BitsToBfloat16Bits(f: number): number {
  if ((f & 0x7fffffff) > 0x7f800000) return (f >>> 16) | 0x40;
  return (f + 0x7fff + ((f >>> 16) & 1)) >>> 16; // the sum stays below 2^32; overflow carries into Inf
}

let float16Table: Uint32Array | null = null;

/** float32 bit patterns of all 65536 float16 values, built on first use (256 KiB). */
function float16ToFloat32Table(): Uint32Array {
  if (float16Table === null) {
    const table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) table[h] = float16BitsToFloat32Bits(h);
    float16Table = table;
  }
  return float16Table;
}

/** Rounds float32 values to float16 bit patterns (nearest, ties to even). */
export function float32ToFloat16(values: Float32Array, out: Uint16Array = new Uint16Array(values.length)): Uint16Array {
  checkOutputLength(out, values.length, 'float32ToFloat16');
  const bits = bitsOf(values);
  for (let i = 0; i < bits.length; i++) out[i] = float32BitsToFloat16Bits(bits[i]!);
  return out;
}

/** Expands float16 bit patterns to float32 values (exact). */
export function float16ToFloat32(halves: Uint16Array, out: Float32Array = new Float32Array(halves.length)): Float32Array {
  checkOutputLength(out, halves.length, 'float16ToFloat32');
  const table = float16ToFloat32Table();
  const outBits = bitsOf(out);
  for (let i = 0; i < halves.length; i++) outBits[i] = table[halves[i]!]!;
  return out;
}

/** Rounds float32 values to bfloat16 bit patterns (nearest, ties to even; NaN stays a quiet NaN). */
export function float32ToBfloat16(values: Float32Array, out: Uint16Array = new Uint16Array(values.length)): Uint16Array {
  checkOutputLength(out, values.length, 'float32ToBfloat16');
  const bits = bitsOf(values);
  for (let i = 0; i < bits.length; i++) out[i] = float32BitsToBfloat16Bits(bits[i]!);
  return out;
}

/** Expands bfloat16 bit patterns to float32 values (an exact 16-bit shift). */
export function bfloat16ToFloat32(halves: Uint16Array, out: Float32Array = new Float32Array(halves.length)): Float32Array {
  checkOutputLength(out, halves.length, 'bfloat16ToFloat32');
  const outBits = bitsOf(out);
  for (let i = 0; i < halves.length; i++) outBits[i] = halves[i]! << 16;
  return out;
}

const scalarFloat = new Float32Array(1);
const scalarBits = new Uint32Array(scalarFloat.buffer);

/** float16 bit pattern of one number (first rounded to float32, then to float16). */
export function toFloat16Bits(value: number): number {
  scalarFloat[0] = value;
  return float32BitsToFloat16Bits(scalarBits[0]!);
}

/** The number a float16 bit pattern stands for. */
export function fromFloat16Bits(bits: number): number {
  scalarBits[0] = float16ToFloat32Table()[bits & 0xffff]!;
  return scalarFloat[0]!;
}

/** bfloat16 bit pattern of one number (first rounded to float32, then to bfloat16). */
export function toBfloat16Bits(value: number): number {
  scalarFloat[0] = value;
  return float32BitsToBfloat16Bits(scalarBits[0]!);
}

/** The number a bfloat16 bit pattern stands for. */
export function fromBfloat16Bits(bits: number): number {
  scalarBits[0] = (bits & 0xffff) << 16;
  return scalarFloat[0]!;
}

/** Rounds float32 values in place to the nearest float16 values (as float32). */
export function roundToFloat16InPlace(values: Float32Array): Float32Array {
  const bits = bitsOf(values);
  const table = float16ToFloat32Table();
  for (let i = 0; i < bits.length; i++) bits[i] = table[float32BitsToFloat16Bits(bits[i]!)]!;
  return values;
}

/** Rounds float32 values in place to the nearest bfloat16 values (as float32). */
export function roundToBfloat16InPlace(values: Float32Array): Float32Array {
  const bits = bitsOf(values);
  for (let i = 0; i < bits.length; i++) bits[i] = float32BitsToBfloat16Bits(bits[i]!) << 16;
  return values;
}
