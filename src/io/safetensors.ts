// Reading and writing safetensors files (strictly validated, tensor by tensor, atomic writes) and converting their tensors to float32 / int32.
//
// Format: 8-byte little-endian u64 header length N, N bytes of UTF-8 JSON
// `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {string: string}}`
// (padded with spaces), then the raw little-endian tensor bytes; offsets are relative to the
// start of that data section. Tensor data is row-major.
import { fs, os } from './node_builtins.js';
import { bfloat16ToFloat32, float16ToFloat32 } from '../tensor/half.js';
import { writeFileAtomic } from './atomic.js';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'U8' | 'BOOL';

/** The typed array holding each dtype's raw values (F16/BF16 as bit patterns, BOOL as 0/1 bytes). */
export type TensorArray = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Uint16Array;

export interface TensorData {
  dtype: SafetensorsDtype;
  shape: number[];
  data: TensorArray;
}

export interface TensorInfo {
  dtype: SafetensorsDtype;
  shape: number[];
  byteLength: number;
  /** Absolute position of the tensor's first byte in the file. */
  fileOffset: number;
}

const DTYPE_BYTES: Record<SafetensorsDtype, number> = {
  F32: 4,
  F16: 2,
  BF16: 2,
  F64: 8,
  I64: 8,
  I32: 4,
  U8: 1,
  BOOL: 1,
};

/** Largest header we accept; the reference implementation uses the same limit. */
const MAX_HEADER_BYTES = 100_000_000;
/** Bytes moved per read/write call (keeps each call well below the 2 GiB syscall limit). */
const IO_CHUNK_BYTES = 1 << 30;

const TRUNCATED_HINT = 'the file is truncated or not a safetensors file; re-download or re-export it';
const CORRUPT_HINT = 'the header is corrupt; re-export the checkpoint';

/** An invalid or unreadable safetensors file; the message names the file, the tensor and the problem. */
export class SafetensorsError extends Error {
  readonly filePath: string;
  readonly tensorName: string | undefined;

  constructor(filePath: string, tensorName: string | undefined, problem: string, hint?: string) {
    const where = tensorName === undefined ? filePath : `${filePath}: tensor '${tensorName}'`;
    super(`${where}: ${problem}${hint ? `; ${hint}` : ''}`);
    this.name = 'SafetensorsError';
    this.filePath = filePath;
    this.tensorName = tensorName;
  }
}

export function isSafetensorsDtype(value: unknown): value is SafetensorsDtype {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_BYTES, value);
}

/** Bytes per element of a dtype. */
export function dtypeByteSize(dtype: SafetensorsDtype): number {
  return DTYPE_BYTES[dtype];
}

/** Number of elements of a shape (1 for a scalar `[]`). */
export function shapeElementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** A typed array of the right kind for `dtype` over `bytes` (which must be suitably aligned). */
function typedArrayOver(dtype: SafetensorsDtype, buffer: ArrayBuffer, byteOffset: number, count: number): TensorArray {
  switch (dtype) {
    case 'F32':
      return new Float32Array(buffer, byteOffset, count);
    case 'F64':
      return new Float64Array(buffer, byteOffset, count);
    case 'F16':
    case 'BF16':
      return new Uint16Array(buffer, byteOffset, count);
    case 'I64':
      return new BigInt64Array(buffer, byteOffset, count);
    case 'I32':
      return new Int32Array(buffer, byteOffset, count);
    case 'U8':
    case 'BOOL':
      return new Uint8Array(buffer, byteOffset, count);
  }
}

/** Whether `data` is the typed-array kind that stores `dtype`. */
function arrayMatchesDtype(dtype: SafetensorsDtype, data: unknown): boolean {
  switch (dtype) {
    case 'F32':
      return data instanceof Float32Array;
    case 'F64':
      return data instanceof Float64Array;
    case 'F16':
    case 'BF16':
      return data instanceof Uint16Array;
    case 'I64':
      return data instanceof BigInt64Array;
    case 'I32':
      return data instanceof Int32Array;
    case 'U8':
    case 'BOOL':
      return data instanceof Uint8Array;
  }
}

function describe(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) return String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

interface HeaderEntry extends TensorInfo {
  begin: number;
  end: number;
}

interface ParsedHeader {
  metadata: Record<string, string>;
  entries: Map<string, HeaderEntry>;
}

/** Validates the header JSON against the data section length and returns the tensor table. */
function parseHeader(filePath: string, headerBytes: Uint8Array, dataStart: number, dataLength: number): ParsedHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw new SafetensorsError(filePath, undefined, 'header is not valid UTF-8', TRUNCATED_HINT);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new SafetensorsError(filePath, undefined, `header is not valid JSON (${reason})`, TRUNCATED_HINT);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new SafetensorsError(filePath, undefined, `header JSON is not an object (got ${describe(json)})`, TRUNCATED_HINT);
  }

  const metadata: Record<string, string> = {};
  const entries = new Map<string, HeaderEntry>();
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
        throw new SafetensorsError(filePath, undefined, `__metadata__ is not an object of strings (got ${describe(raw)})`, CORRUPT_HINT);
      }
      for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof value !== 'string') {
          throw new SafetensorsError(
            filePath,
            undefined,
            `__metadata__ value of '${key}' is not a string (got ${describe(value)})`,
            'safetensors metadata must map strings to strings; re-export with string values',
          );
        }
        Object.defineProperty(metadata, key, { value, enumerable: true, writable: true, configurable: true });
      }
      continue;
    }
    entries.set(name, parseEntry(filePath, name, raw, dataStart, dataLength));
  }
  checkContiguous(filePath, entries, dataLength);
  return { metadata, entries };
}

function parseEntry(filePath: string, name: string, raw: unknown, dataStart: number, dataLength: number): HeaderEntry {
  const fail = (problem: string, hint = CORRUPT_HINT): never => {
    throw new SafetensorsError(filePath, name, problem, hint);
  };
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail(`entry is not an object (got ${describe(raw)})`);
  const entry = raw as Record<string, unknown>;
  const dtype = entry['dtype'];
  if (!isSafetensorsDtype(dtype)) {
    fail(
      `unknown dtype ${describe(dtype)}`,
      `supported dtypes are ${Object.keys(DTYPE_BYTES).join(', ')}; convert the tensor to one of them`,
    );
  }
  const shape = entry['shape'];
  if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
    fail(`shape ${describe(shape)} is not a list of non-negative integers`);
  }
  const offsets = entry['data_offsets'];
  if (!Array.isArray(offsets) || offsets.length !== 2) {
    fail(`data_offsets ${describe(offsets)} is not a pair [begin, end]`);
  }
  const [begin, end] = offsets as unknown[];
  if (!isNonNegativeInteger(begin) || !isNonNegativeInteger(end)) {
    fail(`data_offsets ${describe(offsets)} must be non-negative integers`);
  }
  const b = begin as number;
  const e = end as number;
  if (b > e) fail(`data_offsets begin ${b} is greater than end ${e}`);
  if (e > dataLength) {
    fail(`data_offsets end ${e} is past the end of the data section (${dataLength} bytes)`, TRUNCATED_HINT);
  }
  const d = dtype as SafetensorsDtype;
  const s = (shape as number[]).slice();
  const expected = shapeElementCount(s) * DTYPE_BYTES[d];
  if (expected !== e - b) {
    fail(`shape [${s.join(', ')}] of dtype ${d} needs ${expected} bytes but data_offsets [${b}, ${e}] span ${e - b} bytes`);
  }
  return { dtype: d, shape: s, byteLength: e - b, fileOffset: dataStart + b, begin: b, end: e };
}

/**
 * The tensors must tile the data section exactly, as the safetensors library requires: sorted by offset, each begins
 * where the previous one ends, the first at 0, the last at the end of the file. An overlap, a hole, or bytes after the
 * last tensor (a polyglot file smuggling other content; the library's `MetadataIncompleteBuffer`) are refused.
 */
function checkContiguous(filePath: string, entries: Map<string, HeaderEntry>, dataLength: number): void {
  const ranges = [...entries].sort((x, y) => x[1].begin - y[1].begin || x[1].end - y[1].end);
  let expected = 0;
  let prevName: string | null = null;
  for (const [name, cur] of ranges) {
    if (cur.begin < expected) {
      const prev = entries.get(prevName!)!;
      throw new SafetensorsError(filePath, name, `byte range [${cur.begin}, ${cur.end}) overlaps tensor '${prevName}' at [${prev.begin}, ${prev.end})`, CORRUPT_HINT);
    }
    if (cur.begin > expected) {
      throw new SafetensorsError(filePath, name, `byte range [${cur.begin}, ${cur.end}) leaves a hole of ${cur.begin - expected} bytes after ${prevName === null ? 'the header' : `tensor '${prevName}'`} (tensors must be stored back to back)`, CORRUPT_HINT);
    }
    expected = cur.end;
    prevName = name;
  }
  if (expected !== dataLength) {
    throw new SafetensorsError(filePath, undefined, `${dataLength - expected} bytes follow the last tensor (the data section is ${dataLength} bytes, the tensors end at ${expected}): not a valid safetensors file (a polyglot or tampered file?)`, CORRUPT_HINT);
  }
}

/** Reads exactly `length` bytes at `position` into `target`, in chunks; throws on a short read. */
function readExactly(fd: number, target: Uint8Array, position: number, onShort: () => never): void {
  let done = 0;
  while (done < target.length) {
    const want = Math.min(IO_CHUNK_BYTES, target.length - done);
    const got = fs.readSync(fd, target, done, want, position + done);
    if (got <= 0) onShort();
    done += got;
  }
}

/** An open safetensors file; tensors are read one at a time with positioned reads. */
export class SafetensorsFile {
  readonly path: string;
  readonly metadata: Record<string, string>;
  private fd: number | null;
  private readonly entries: Map<string, HeaderEntry>;

  private constructor(filePath: string, fd: number, header: ParsedHeader) {
    this.path = filePath;
    this.fd = fd;
    this.metadata = header.metadata;
    this.entries = header.entries;
  }

  /** Opens and validates `filePath`; the caller must `close()` it. */
  static open(filePath: string): SafetensorsFile {
    let fd: number;
    try {
      fd = fs.openSync(filePath, 'r');
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw new SafetensorsError(filePath, undefined, `cannot open file (${reason})`, 'check the path');
    }
    try {
      return new SafetensorsFile(filePath, fd, SafetensorsFile.readHeader(filePath, fd));
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  private static readHeader(filePath: string, fd: number): ParsedHeader {
    const fileSize = fs.fstatSync(fd).size;
    const truncated = (): never => {
      throw new SafetensorsError(filePath, undefined, 'file ended while reading the header', TRUNCATED_HINT);
    };
    if (fileSize < 8) {
      throw new SafetensorsError(filePath, undefined, `file is only ${fileSize} bytes, shorter than the 8-byte header length`, TRUNCATED_HINT);
    }
    const lengthBytes = new Uint8Array(8);
    readExactly(fd, lengthBytes, 0, truncated);
    const headerLength = new DataView(lengthBytes.buffer).getBigUint64(0, true);
    if (headerLength > BigInt(fileSize - 8)) {
      throw new SafetensorsError(
        filePath,
        undefined,
        `header length ${headerLength} is past the end of the file (${fileSize} bytes)`,
        TRUNCATED_HINT,
      );
    }
    const n = Number(headerLength);
    if (n > MAX_HEADER_BYTES) {
      throw new SafetensorsError(filePath, undefined, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`, TRUNCATED_HINT);
    }
    const headerBytes = new Uint8Array(n);
    readExactly(fd, headerBytes, 8, truncated);
    return parseHeader(filePath, headerBytes, 8 + n, fileSize - 8 - n);
  }

  /** Tensor names in header order. */
  names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  info(name: string): TensorInfo {
    const entry = this.entry(name);
    return { dtype: entry.dtype, shape: entry.shape.slice(), byteLength: entry.byteLength, fileOffset: entry.fileOffset };
  }

  /** Reads one tensor into a fresh, aligned buffer. */
  read(name: string): TensorData {
    const entry = this.entry(name);
    if (this.fd === null) throw new SafetensorsError(this.path, name, 'file is already closed', 'read tensors before close()');
    const buffer = new ArrayBuffer(entry.byteLength);
    readExactly(this.fd, new Uint8Array(buffer), entry.fileOffset, () => {
      throw new SafetensorsError(this.path, name, 'file ended while reading the tensor data', TRUNCATED_HINT);
    });
    const count = entry.byteLength / DTYPE_BYTES[entry.dtype];
    return { dtype: entry.dtype, shape: entry.shape.slice(), data: typedArrayOver(entry.dtype, buffer, 0, count) };
  }

  close(): void {
    if (this.fd !== null) {
      fs.closeSync(this.fd);
      this.fd = null;
    }
  }

  private entry(name: string): HeaderEntry {
    const entry = this.entries.get(name);
    if (entry === undefined) {
      const names = this.names();
      const shown = names.slice(0, 8).map((n) => `'${n}'`).join(', ');
      throw new SafetensorsError(
        this.path,
        name,
        'no such tensor in the file',
        `the file has ${names.length} tensors${names.length ? ` (${shown}${names.length > 8 ? ', ...' : ''})` : ''}`,
      );
    }
    return entry;
  }
}

/** Opens and validates a safetensors file for tensor-by-tensor reading. */
export function openSafetensors(filePath: string): SafetensorsFile {
  return SafetensorsFile.open(filePath);
}

/** Reads a whole safetensors file: its metadata and every tensor (in header order). */
export function readSafetensors(filePath: string): { metadata: Record<string, string>; tensors: Map<string, TensorData> } {
  const file = openSafetensors(filePath);
  try {
    const tensors = new Map<string, TensorData>();
    for (const name of file.names()) tensors.set(name, file.read(name));
    return { metadata: file.metadata, tensors };
  } finally {
    file.close();
  }
}

/** Bytes of a typed array as a Uint8Array view (no copy); little-endian hosts only. */
function bytesOf(data: TensorArray): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function assertLittleEndian(): void {
  if (os.endianness() !== 'LE') throw new Error('safetensors: only little-endian hosts are supported');
}

interface EncodedHeader {
  header: Buffer;
  tensors: Array<[string, TensorData]>;
}

/** Validates tensors and metadata for writing and builds the padded header (plus its 8-byte length). */
function encodeHeader(
  target: string,
  tensors: Record<string, TensorData> | Map<string, TensorData>,
  metadata: Record<string, string> | undefined,
): EncodedHeader {
  assertLittleEndian();
  const list: Array<[string, TensorData]> = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  const define = (key: string, value: unknown) =>
    Object.defineProperty(header, key, { value, enumerable: true, writable: true, configurable: true });
  if (metadata !== undefined) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') {
        throw new SafetensorsError(target, undefined, `__metadata__ value of '${key}' is not a string`, 'convert metadata values to strings');
      }
    }
    define('__metadata__', { ...metadata });
  }
  let offset = 0;
  for (const [name, tensor] of list) {
    if (name === '__metadata__') {
      throw new SafetensorsError(target, name, 'the name __metadata__ is reserved', 'rename the tensor');
    }
    if (!isSafetensorsDtype(tensor.dtype)) {
      throw new SafetensorsError(target, name, `unknown dtype ${describe(tensor.dtype)}`, `use one of ${Object.keys(DTYPE_BYTES).join(', ')}`);
    }
    if (!Array.isArray(tensor.shape) || !tensor.shape.every(isNonNegativeInteger)) {
      throw new SafetensorsError(target, name, `shape ${describe(tensor.shape)} is not a list of non-negative integers`);
    }
    if (!arrayMatchesDtype(tensor.dtype, tensor.data)) {
      throw new SafetensorsError(target, name, `data array ${tensor.data?.constructor?.name} does not store dtype ${tensor.dtype}`);
    }
    const byteLength = shapeElementCount(tensor.shape) * DTYPE_BYTES[tensor.dtype];
    if (tensor.data.byteLength !== byteLength) {
      throw new SafetensorsError(
        target,
        name,
        `shape [${tensor.shape.join(', ')}] of dtype ${tensor.dtype} needs ${byteLength} bytes but the data has ${tensor.data.byteLength}`,
      );
    }
    define(name, { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, offset + byteLength] });
    offset += byteLength;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  const out = Buffer.alloc(8 + padded, 0x20);
  out.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(out, 8);
  return { header: out, tensors: list };
}

/** The bytes of a safetensors file holding `tensors` (in the given order) and `metadata`. */
export function encodeSafetensors(
  tensors: Record<string, TensorData> | Map<string, TensorData>,
  metadata?: Record<string, string>,
): Buffer {
  const { header, tensors: list } = encodeHeader('<memory>', tensors, metadata);
  const parts: Uint8Array[] = [header];
  for (const [, tensor] of list) parts.push(bytesOf(tensor.data));
  return Buffer.concat(parts);
}

/** Decodes safetensors bytes held in memory (same validation as reading a file). */
export function decodeSafetensors(
  bytes: Uint8Array,
  label = '<memory>',
): { metadata: Record<string, string>; tensors: Map<string, TensorData> } {
  if (bytes.length < 8) {
    throw new SafetensorsError(label, undefined, `file is only ${bytes.length} bytes, shorter than the 8-byte header length`, TRUNCATED_HINT);
  }
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (headerLength > BigInt(bytes.length - 8)) {
    throw new SafetensorsError(label, undefined, `header length ${headerLength} is past the end of the file (${bytes.length} bytes)`, TRUNCATED_HINT);
  }
  const n = Number(headerLength);
  const { metadata, entries } = parseHeader(label, bytes.subarray(8, 8 + n), 8 + n, bytes.length - 8 - n);
  const tensors = new Map<string, TensorData>();
  for (const [name, entry] of entries) {
    const copy = new Uint8Array(bytes.subarray(entry.fileOffset, entry.fileOffset + entry.byteLength)); // fresh, aligned copy
    const count = entry.byteLength / DTYPE_BYTES[entry.dtype];
    tensors.set(name, { dtype: entry.dtype, shape: entry.shape.slice(), data: typedArrayOver(entry.dtype, copy.buffer, 0, count) });
  }
  return { metadata, tensors };
}

/** Writes a safetensors file atomically (see io/atomic.ts), tensor by tensor. */
export function writeSafetensors(
  filePath: string,
  tensors: Record<string, TensorData> | Map<string, TensorData>,
  metadata?: Record<string, string>,
): void {
  const { header, tensors: list } = encodeHeader(filePath, tensors, metadata);
  writeFileAtomic(filePath, [header, ...list.map(([, tensor]) => bytesOf(tensor.data))]);
}

/** The tensor's values as float32 (F32 data is returned as is, not copied). */
export function toFloat32(tensor: TensorData): Float32Array {
  const { dtype, data } = tensor;
  switch (dtype) {
    case 'F32':
      return data as Float32Array;
    case 'F16':
      return float16ToFloat32(data as Uint16Array);
    case 'BF16':
      return bfloat16ToFloat32(data as Uint16Array);
    case 'F64':
      return Float32Array.from(data as Float64Array);
    case 'I32':
      return Float32Array.from(data as Int32Array);
    case 'U8':
    case 'BOOL':
      return Float32Array.from(data as Uint8Array);
    case 'I64': {
      const src = data as BigInt64Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = Number(src[i]!);
      return out;
    }
  }
}

/** The tensor's integer values (ids) as int32 (I32 data is returned as is); `name` is used in errors. */
export function toInt32(tensor: TensorData, name = '<tensor>'): Int32Array {
  const { dtype, data } = tensor;
  switch (dtype) {
    case 'I32':
      return data as Int32Array;
    case 'U8':
    case 'BOOL':
      return Int32Array.from(data as Uint8Array);
    case 'I64': {
      const src = data as BigInt64Array;
      const out = new Int32Array(src.length);
      for (let i = 0; i < src.length; i++) {
        const v = src[i]!;
        if (v > 2147483647n || v < -2147483648n) {
          throw new RangeError(`toInt32: ${name}: I64 value ${v} at index ${i} does not fit in int32`);
        }
        out[i] = Number(v);
      }
      return out;
    }
    default:
      throw new TypeError(`toInt32: ${name}: dtype ${dtype} is not an integer dtype (expected I64, I32, U8 or BOOL)`);
  }
}
