/**
 * safetensors files (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
 * length, a JSON header (`__metadata__` strings and per tensor `dtype`, `shape`, `data_offsets`),
 * then the tensors' bytes. Reading checks the whole header -- its length against the file, JSON
 * nesting depth before parsing, dtypes, shapes, offsets in range, sizes, no overlaps or gaps --
 * and lets the caller check names and shapes, all before a tensor byte is read, so a hostile file
 * is an error, never a crash or a large allocation. Writing is atomic: a temporary file in the
 * same directory, fsync, rename.
 */
import { closeSync, fstatSync, fsyncSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { rangeError, typeError } from '../errors.js';

export interface SafetensorsTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

export interface SafetensorsHeader {
  metadata: Record<string, string>;
  tensors: Array<{ name: string; dtype: string; shape: number[]; begin: number; end: number }>;
}

export interface SafetensorsFile {
  metadata: Record<string, string>;
  tensors: SafetensorsTensor[];
}

/** The largest header read (as the reference implementation: 100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;
/** The deepest JSON nesting a header may have (a valid one has 3). */
export const MAX_HEADER_DEPTH = 8;
const DTYPE_BYTES: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8,
};

function bad(path: string, what: string): RangeError {
  return rangeError(`${path}: not a valid safetensors file: ${what}`);
}

// The nesting depth of a JSON text, strings skipped (so JSON.parse never recurses deeply).
export function jsonDepth(text: string): number {
  let depth = 0, max = 0, inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) max = Math.max(max, ++depth);
    else if (c === 0x7d || c === 0x5d) depth--;
  }
  return max;
}

function parseHeader(path: string, text: string, dataBytes: number): SafetensorsHeader {
  const depth = jsonDepth(text);
  if (depth > MAX_HEADER_DEPTH) throw bad(path, `the header nests ${depth} levels deep (at most ${MAX_HEADER_DEPTH})`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw bad(path, `the header is not JSON (${(err as Error).message})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw bad(path, 'the header is not a JSON object');
  const metadata: Record<string, string> = {};
  const tensors: SafetensorsHeader['tensors'] = [];
  for (const [name, v] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw bad(path, '__metadata__ is not an object');
      for (const [k, s] of Object.entries(v)) {
        if (typeof s !== 'string') throw bad(path, `__metadata__.${k} is not a string`);
        metadata[k] = s;
      }
      continue;
    }
    const t = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (t === null || typeof t !== 'object') throw bad(path, `tensor '${name}' is not an object`);
    if (typeof t.dtype !== 'string' || !(t.dtype in DTYPE_BYTES)) throw bad(path, `tensor '${name}' has an unknown dtype ${JSON.stringify(t.dtype)}`);
    if (!Array.isArray(t.shape) || t.shape.some((d) => !Number.isSafeInteger(d) || d < 0)) throw bad(path, `tensor '${name}' has a malformed shape`);
    const o = t.data_offsets;
    if (!Array.isArray(o) || o.length !== 2 || !o.every((x) => Number.isSafeInteger(x) && x >= 0) || o[0] > o[1])
      throw bad(path, `tensor '${name}' has malformed data_offsets`);
    if (o[1] > dataBytes) throw bad(path, `tensor '${name}' ends at byte ${o[1]} of the data, past its end (${dataBytes} bytes)`);
    let numel = 1;
    for (const d of t.shape as number[]) numel *= d;  // bounded by the check below: numel * size must equal a file range
    if (numel * DTYPE_BYTES[t.dtype] !== o[1] - o[0])
      throw bad(path, `tensor '${name}': shape [${(t.shape as number[]).join(', ')}] of ${t.dtype} needs ${numel * DTYPE_BYTES[t.dtype]} bytes, data_offsets give ${o[1] - o[0]}`);
    tensors.push({ name, dtype: t.dtype, shape: t.shape as number[], begin: o[0], end: o[1] });
  }
  const sorted = [...tensors].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const t of sorted) {
    if (t.begin < at) throw bad(path, `tensor '${t.name}' overlaps another tensor's bytes`);
    if (t.begin > at) throw bad(path, `bytes ${at}-${t.begin} of the data belong to no tensor`);
    at = t.end;
  }
  if (at !== dataBytes) throw bad(path, `the data has ${dataBytes} bytes, the tensors cover ${at}`);
  return { metadata, tensors };
}

/**
 * Reads a safetensors file of F32 tensors. `check` sees the validated header before any tensor is
 * read (to compare names and shapes with what the caller expects) and throws to refuse the file.
 */
export function readSafetensors(path: string, check?: (header: SafetensorsHeader) => void): SafetensorsFile {
  if (typeof path !== 'string') throw typeError(`path: expected a string, got ${typeof path}`);
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(8);
    if (size < 8 || readSync(fd, head, 0, 8, 0) !== 8) throw bad(path, `the file has ${size} bytes, fewer than the 8-byte header length`);
    const n = head.readBigUInt64LE(0);
    if (n > BigInt(size - 8)) throw bad(path, `the header length ${n} runs past the end of the file (${size} bytes)`);
    if (n > BigInt(MAX_HEADER_BYTES)) throw bad(path, `the header length ${n} is over the ${MAX_HEADER_BYTES}-byte limit`);
    const headerBytes = Number(n);
    const text = Buffer.alloc(headerBytes);
    if (readSync(fd, text, 0, headerBytes, 8) !== headerBytes) throw bad(path, 'the header is truncated');
    const dataStart = 8 + headerBytes;
    const header = parseHeader(path, text.toString('utf8'), size - dataStart);
    for (const t of header.tensors) if (t.dtype !== 'F32') throw bad(path, `tensor '${t.name}' is ${t.dtype}; calmoe reads F32 tensors`);
    check?.(header);
    const tensors = header.tensors.map((t) => {
      const data = new Float32Array((t.end - t.begin) / 4);
      const bytes = new Uint8Array(data.buffer);
      if (readSync(fd, bytes, 0, bytes.length, dataStart + t.begin) !== bytes.length) throw bad(path, `tensor '${t.name}' is truncated`);
      return { name: t.name, shape: [...t.shape], data };
    });
    return { metadata: header.metadata, tensors };
  } finally {
    closeSync(fd);
  }
}

/** The bytes of a safetensors file: tensors in the given order, the header padded to 8 bytes. */
export function formatSafetensors(tensors: readonly SafetensorsTensor[], metadata: Record<string, string> = {}): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let at = 0;
  for (const t of tensors) {
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (numel !== t.data.length) throw rangeError(`tensor '${t.name}': shape [${t.shape.join(', ')}] has ${numel} elements, data has ${t.data.length}`);
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [at, at + t.data.byteLength] };
    at += t.data.byteLength;
  }
  let text = JSON.stringify(header);
  text += ' '.repeat((8 - (Buffer.byteLength(text) % 8)) % 8);
  const headerBytes = Buffer.from(text, 'utf8');
  const out = Buffer.alloc(8 + headerBytes.length + at);
  out.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  headerBytes.copy(out, 8);
  let o = 8 + headerBytes.length;
  for (const t of tensors) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), o);
    o += t.data.byteLength;
  }
  return out;
}

/**
 * Writes `bytes` to `path` atomically: into a temporary file beside it, flushed to disk, then
 * renamed over `path`, so an interrupted write leaves the old file (or none), never half of one.
 */
export function writeFileAtomic(path: string, bytes: Uint8Array): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
  const fd = openSync(tmp, 'wx', 0o644);
  try {
    try {
      for (let o = 0; o < bytes.length;) o += writeSync(fd, bytes, o, bytes.length - o);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch { /* already renamed or never created */ }
    throw err;
  }
  try {  // make the rename itself durable (not possible on every platform, e.g. Windows)
    const dir = openSync(dirname(path), 'r');
    try { fsyncSync(dir); } finally { closeSync(dir); }
  } catch { /* best effort */ }
}

/** Writes F32 tensors and string metadata as a safetensors file, atomically. */
export function writeSafetensors(path: string, tensors: readonly SafetensorsTensor[], metadata: Record<string, string> = {}): void {
  if (typeof path !== 'string') throw typeError(`path: expected a string, got ${typeof path}`);
  writeFileAtomic(path, formatSafetensors(tensors, metadata));
}
