// Tests of safetensors reading/writing: roundtrips of every dtype, strict validation messages, and the golden weights.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  SafetensorsError,
  decodeSafetensors,
  encodeSafetensors,
  openSafetensors,
  readSafetensors,
  toFloat32,
  toInt32,
  writeSafetensors,
  type TensorData,
} from '../src/io/safetensors.js';
import { roundToBfloat16InPlace } from '../src/tensor/half.js';
import { goldenPath, goldenSkip, requireGolden } from './helpers/golden.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-safetensors-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Writes a file made of a header (object or raw JSON text) and data bytes, with a correct length prefix. */
function writeRaw(name: string, header: unknown, data: Uint8Array = new Uint8Array(0), lengthOverride?: bigint): string {
  const json =
    header instanceof Uint8Array ? Buffer.from(header) : Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(lengthOverride ?? BigInt(json.length));
  const file = path.join(dir, name);
  fs.writeFileSync(file, Buffer.concat([prefix, json, data]));
  return file;
}

function sampleTensors(): Record<string, TensorData> {
  return {
    'a.f32': { dtype: 'F32', shape: [2, 3], data: new Float32Array([1, -2, 3.5, 0, -0, Infinity]) },
    'b.f16': { dtype: 'F16', shape: [3], data: new Uint16Array([0x3c00, 0xc000, 0x7bff]) },
    'c.bf16': { dtype: 'BF16', shape: [2], data: new Uint16Array([0x3f80, 0xbf00]) },
    'd.u8': { dtype: 'U8', shape: [3], data: new Uint8Array([0, 7, 255]) }, // odd length: later tensors are unaligned
    'e.f64': { dtype: 'F64', shape: [2], data: new Float64Array([Math.PI, -1e300]) },
    'f.i64': { dtype: 'I64', shape: [2, 1], data: new BigInt64Array([-5n, 63999n]) },
    'g.i32': { dtype: 'I32', shape: [], data: new Int32Array([-123456]) },
    'h.bool': { dtype: 'BOOL', shape: [4], data: new Uint8Array([1, 0, 0, 1]) },
    'i.empty': { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
  };
}

test('roundtrip of every dtype with metadata (file and memory)', () => {
  const tensors = sampleTensors();
  const metadata = { format: 'pt', config: "{'a': [1, 2], 'b': None}", 'ünïcode': 'välue' };
  const file = path.join(dir, 'roundtrip.safetensors');
  writeSafetensors(file, tensors, metadata);
  assert.deepEqual(fs.readdirSync(dir).filter((n) => n.includes('.tmp-')), [], 'no temp file left');

  const bytes = fs.readFileSync(file);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  assert.equal(headerLength % 8, 0, 'header padded to a multiple of 8');
  assert.deepEqual(bytes, encodeSafetensors(tensors, metadata), 'file equals the in-memory encoding');

  const check = (got: { metadata: Record<string, string>; tensors: Map<string, TensorData> }) => {
    assert.deepEqual(got.metadata, metadata);
    assert.deepEqual([...got.tensors.keys()], Object.keys(tensors));
    for (const [name, want] of Object.entries(tensors)) {
      const t = got.tensors.get(name)!;
      assert.equal(t.dtype, want.dtype, name);
      assert.deepEqual(t.shape, want.shape, name);
      assert.equal(t.data.constructor, want.data.constructor, name);
      assert.deepEqual(Array.from(t.data as ArrayLike<unknown>), Array.from(want.data as ArrayLike<unknown>), name);
    }
  };
  check(readSafetensors(file));
  check(decodeSafetensors(bytes));

  const f = openSafetensors(file);
  try {
    assert.deepEqual(f.info('e.f64').shape, [2]);
    assert.equal(f.info('e.f64').byteLength, 16);
    assert.equal(f.info('e.f64').dtype, 'F64');
    assert.ok(f.has('a.f32') && !f.has('zzz'));
    assert.throws(() => f.read('zzz'), /roundtrip\.safetensors: tensor 'zzz': no such tensor.*'a\.f32'/);
  } finally {
    f.close();
  }
});

test('toFloat32 and toInt32 conversions', () => {
  const t = sampleTensors();
  assert.deepEqual(Array.from(toFloat32(t['b.f16']!)), [1, -2, 65504]);
  assert.deepEqual(Array.from(toFloat32(t['c.bf16']!)), [1, -0.5]);
  assert.deepEqual(Array.from(toFloat32(t['d.u8']!)), [0, 7, 255]);
  assert.deepEqual(Array.from(toFloat32(t['f.i64']!)), [-5, 63999]);
  assert.deepEqual(Array.from(toFloat32(t['g.i32']!)), [-123456]);
  assert.deepEqual(Array.from(toFloat32(t['h.bool']!)), [1, 0, 0, 1]);
  assert.equal(toFloat32(t['e.f64']!)[0], Math.fround(Math.PI));
  assert.equal(toFloat32(t['a.f32']!), t['a.f32']!.data, 'F32 returned as is');
  assert.deepEqual(Array.from(toInt32(t['f.i64']!)), [-5, 63999]);
  assert.deepEqual(Array.from(toInt32(t['d.u8']!)), [0, 7, 255]);
  assert.throws(
    () => toInt32({ dtype: 'I64', shape: [1], data: new BigInt64Array([2n ** 40n]) }, 'tokens'),
    /tokens: I64 value 1099511627776 at index 0 does not fit in int32/,
  );
  assert.throws(() => toInt32(t['a.f32']!, 'x'), /x: dtype F32 is not an integer dtype/);
});

test('write is atomic: replaces an existing file and rejects inconsistent tensors without touching it', () => {
  const file = path.join(dir, 'atomic.safetensors');
  writeSafetensors(file, { x: { dtype: 'F32', shape: [1], data: new Float32Array([1]) } });
  writeSafetensors(file, { y: { dtype: 'F32', shape: [2], data: new Float32Array([2, 3]) } });
  assert.deepEqual([...readSafetensors(file).tensors.keys()], ['y']);
  assert.throws(
    () => writeSafetensors(file, { z: { dtype: 'F32', shape: [3], data: new Float32Array(2) } }),
    /atomic\.safetensors: tensor 'z': shape \[3\] of dtype F32 needs 12 bytes but the data has 8/,
  );
  assert.throws(
    () => writeSafetensors(file, { z: { dtype: 'F16', shape: [2], data: new Float32Array(2) } as unknown as TensorData }),
    /tensor 'z': data array Float32Array does not store dtype F16/,
  );
  assert.throws(
    () => writeSafetensors(file, {}, { k: 5 as unknown as string }),
    /__metadata__ value of 'k' is not a string/,
  );
  assert.deepEqual([...readSafetensors(file).tensors.keys()], ['y'], 'old file intact');
  assert.deepEqual(fs.readdirSync(dir).filter((n) => n.includes('.tmp-')), []);
});

test('tensor views at odd offsets are read into aligned arrays', () => {
  const file = path.join(dir, 'unaligned.safetensors');
  writeRaw(
    'unaligned.safetensors',
    {
      b: { dtype: 'U8', shape: [1], data_offsets: [0, 1] },
      a: { dtype: 'F64', shape: [1], data_offsets: [1, 9] },
    },
    new Uint8Array([9, ...new Uint8Array(new Float64Array([2.5]).buffer)]),
  );
  const f = openSafetensors(file);
  try {
    assert.deepEqual(Array.from(f.read('a').data as Float64Array), [2.5]);
  } finally {
    f.close();
  }
});

// ---- malformed files: one test per problem ----

test('malformed: file shorter than 8 bytes', () => {
  const file = path.join(dir, 'short.safetensors');
  fs.writeFileSync(file, Buffer.from([1, 2, 3]));
  assert.throws(() => openSafetensors(file), (err: unknown) => {
    assert.ok(err instanceof SafetensorsError);
    assert.match(err.message, /short\.safetensors: file is only 3 bytes, shorter than the 8-byte header length; the file is truncated or not a safetensors file; re-download/);
    return true;
  });
});

test('malformed: header length past the end of the file', () => {
  const file = writeRaw('longheader.safetensors', {}, new Uint8Array(0), 1000n);
  assert.throws(() => openSafetensors(file), /longheader\.safetensors: header length 1000 is past the end of the file \(10 bytes\); the file is truncated/);
  const huge = writeRaw('hugeheader.safetensors', {}, new Uint8Array(0), 2n ** 63n);
  assert.throws(() => openSafetensors(huge), /hugeheader\.safetensors: header length 9223372036854775808 is past the end/);
});

test('malformed: header not valid JSON, or not an object', () => {
  const bad = writeRaw('badjson.safetensors', '{"a": {"dtype": "F32",');
  assert.throws(() => openSafetensors(bad), /badjson\.safetensors: header is not valid JSON \(.*\); the file is truncated or not a safetensors file/);
  const arr = writeRaw('array.safetensors', '[1, 2]');
  assert.throws(() => openSafetensors(arr), /array\.safetensors: header JSON is not an object \(got \[1,2\]\)/);
  const utf = writeRaw('badutf8.safetensors', new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])); // {"\xff":1}
  assert.throws(() => openSafetensors(utf), /badutf8\.safetensors: header is not valid UTF-8/);
  const entry = writeRaw('entry.safetensors', { w: 5 });
  assert.throws(() => openSafetensors(entry), /entry\.safetensors: tensor 'w': entry is not an object \(got 5\)/);
});

test('malformed: unknown dtype', () => {
  const file = writeRaw('dtype.safetensors', { w: { dtype: 'F8_E4M3', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1));
  assert.throws(() => openSafetensors(file), /dtype\.safetensors: tensor 'w': unknown dtype "F8_E4M3"; supported dtypes are F32, F16, BF16/);
});

test('malformed: shape × dtype size differs from the byte range', () => {
  const file = writeRaw('size.safetensors', { w: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 20] } }, new Uint8Array(24));
  assert.throws(
    () => openSafetensors(file),
    /size\.safetensors: tensor 'w': shape \[2, 3\] of dtype F32 needs 24 bytes but data_offsets \[0, 20\] span 20 bytes/,
  );
  const badShape = writeRaw('shape.safetensors', { w: { dtype: 'F32', shape: [2, -1], data_offsets: [0, 8] } }, new Uint8Array(8));
  assert.throws(() => openSafetensors(badShape), /shape\.safetensors: tensor 'w': shape \[2,-1\] is not a list of non-negative integers/);
});

test('malformed: offsets past the end of the data section', () => {
  const file = writeRaw('pastend.safetensors', { w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, new Uint8Array(12));
  assert.throws(
    () => openSafetensors(file),
    /pastend\.safetensors: tensor 'w': data_offsets end 16 is past the end of the data section \(12 bytes\); the file is truncated/,
  );
});

test('malformed: begin greater than end', () => {
  const file = writeRaw('reversed.safetensors', { w: { dtype: 'U8', shape: [0], data_offsets: [8, 4] } }, new Uint8Array(8));
  assert.throws(() => openSafetensors(file), /reversed\.safetensors: tensor 'w': data_offsets begin 8 is greater than end 4/);
});

test('malformed: negative or non-integer offsets', () => {
  const neg = writeRaw('negative.safetensors', { w: { dtype: 'U8', shape: [4], data_offsets: [-4, 0] } }, new Uint8Array(8));
  assert.throws(() => openSafetensors(neg), /negative\.safetensors: tensor 'w': data_offsets \[-4,0\] must be non-negative integers/);
  const frac = writeRaw('fraction.safetensors', { w: { dtype: 'U8', shape: [4], data_offsets: [0.5, 4.5] } }, new Uint8Array(8));
  assert.throws(() => openSafetensors(frac), /fraction\.safetensors: tensor 'w': data_offsets \[0\.5,4\.5\] must be non-negative integers/);
  const missing = writeRaw('missing.safetensors', { w: { dtype: 'U8', shape: [4] } }, new Uint8Array(8));
  assert.throws(() => openSafetensors(missing), /missing\.safetensors: tensor 'w': data_offsets undefined is not a pair \[begin, end\]/);
});

test('malformed: overlapping byte ranges name both tensors', () => {
  const file = writeRaw(
    'overlap.safetensors',
    {
      first: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      second: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
    },
    new Uint8Array(12),
  );
  assert.throws(
    () => openSafetensors(file),
    /overlap\.safetensors: tensor 'second': byte range \[4, 12\) overlaps tensor 'first' at \[0, 8\); the header is corrupt/,
  );
});

test('malformed: bytes after the last tensor (a polyglot file) and holes between tensors are refused, as the safetensors library does', () => {
  // the library's test_metadata_incomplete_buffer: a valid file with extra bytes appended
  const header = Buffer.from('{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  const polyglot = Buffer.concat([len, header, Buffer.alloc(16), Buffer.from('extra_bogus_data_for_polyglot_file')]);
  const file = path.join(dir, 'polyglot.safetensors');
  fs.writeFileSync(file, polyglot);
  assert.throws(() => openSafetensors(file), /polyglot\.safetensors: 34 bytes follow the last tensor/);
  assert.throws(() => decodeSafetensors(polyglot, 'blob'), /blob: 34 bytes follow the last tensor/);
  assert.equal(decodeSafetensors(polyglot.subarray(0, polyglot.length - 34), 'blob').tensors.get('test')!.shape.join(','), '2,2');
  const hole = writeRaw('hole.safetensors', {
    a: { dtype: 'U8', shape: [4], data_offsets: [0, 4] },
    b: { dtype: 'U8', shape: [4], data_offsets: [8, 12] },
  }, new Uint8Array(12));
  assert.throws(() => openSafetensors(hole), /hole\.safetensors: tensor 'b': byte range \[8, 12\) leaves a hole of 4 bytes after tensor 'a'/);
  const late = writeRaw('late.safetensors', { a: { dtype: 'U8', shape: [4], data_offsets: [4, 8] } }, new Uint8Array(8));
  assert.throws(() => openSafetensors(late), /leaves a hole of 4 bytes after the header/);
});

test('malformed: non-string metadata value', () => {
  const file = writeRaw('meta.safetensors', { __metadata__: { format: 'pt', epoch: 3 } });
  assert.throws(() => openSafetensors(file), /meta\.safetensors: __metadata__ value of 'epoch' is not a string \(got 3\)/);
  const notObject = writeRaw('meta2.safetensors', { __metadata__: ['x'] });
  assert.throws(() => openSafetensors(notObject), /meta2\.safetensors: __metadata__ is not an object of strings/);
});

test('malformed: in-memory decoding uses the same checks', () => {
  assert.throws(() => decodeSafetensors(new Uint8Array(4), 'blob'), /blob: file is only 4 bytes/);
});

test('a missing file gives a clear error', () => {
  assert.throws(() => openSafetensors(path.join(dir, 'nope.safetensors')), /nope\.safetensors: cannot open file/);
});

test('reads the golden tiny weights', { skip: goldenSkip('tiny/weights.safetensors') }, () => {
  requireGolden('tiny/weights.safetensors');
  const file = goldenPath('tiny', 'weights.safetensors');
  const f = openSafetensors(file);
  try {
    const names = f.names();
    assert.ok(names.length > 10);
    for (const name of names) {
      const info = f.info(name);
      assert.equal(info.dtype, 'F32');
      const t = f.read(name);
      assert.equal(t.data.length, info.shape.reduce((a, b) => a * b, 1));
      assert.ok(Array.from(t.data as Float32Array).every(Number.isFinite), name);
    }
    assert.ok(names.some((n) => n.startsWith('encoder.')), 'encoder weights present');
    assert.ok(names.some((n) => n.startsWith('decoder.')), 'decoder weights present');
  } finally {
    f.close();
  }
});

const E2E_CHECKPOINTS = ['e2e/model.safetensors', 'e2e/model_bf16.safetensors'];
test('reads the golden e2e checkpoints (F32 and BF16) with their config metadata', { skip: goldenSkip(...E2E_CHECKPOINTS) }, () => {
  requireGolden(...E2E_CHECKPOINTS);
  const f32 = readSafetensors(goldenPath('e2e', 'model.safetensors'));
  const bf16 = readSafetensors(goldenPath('e2e', 'model_bf16.safetensors'));
  assert.equal(f32.metadata['_target_'], 'flextok.flextok_wrapper.FlexTok');
  assert.deepEqual(Object.keys(f32.metadata).sort(), ['_target_', 'decoder', 'encoder', 'flow_matching_noise_module', 'pipeline', 'regularizer', 'vae']);
  assert.deepEqual([...bf16.tensors.keys()].sort(), [...f32.tensors.keys()].sort());
  // The BF16 file is the F32 one rounded by PyTorch (nearest, ties to even): our rounding must agree bit for bit.
  for (const [name, t] of f32.tensors) {
    const rounded = roundToBfloat16InPlace(Float32Array.from(toFloat32(t)));
    assert.deepEqual(toFloat32(bf16.tensors.get(name)!), rounded, name);
  }
});
