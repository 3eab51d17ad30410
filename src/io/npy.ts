/**
 * NumPy `.npy` files (format versions 1-3): read into typed arrays, and float32 matrices written
 * (what `calmoe predict` outputs). C order only: a Fortran-ordered array is an error naming the
 * fix, since reading it row by row would silently transpose it.
 */
import { readFileSync } from 'node:fs';
import { rangeError, typeError } from '../errors.js';
import type { Matrix } from '../validate.js';

export type NpyDtype = 'float32' | 'float64' | 'int8' | 'uint8' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'int64' | 'uint64' | 'bool';
export type NumericArray = Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array | BigInt64Array | BigUint64Array;

export interface NpyArray {
  dtype: NpyDtype;
  shape: number[];
  data: NumericArray;
}

// descr kind + size -> dtype and typed array
const KINDS: Record<string, { dtype: NpyDtype; make: (b: ArrayBuffer) => NumericArray; bytes: number; get: (v: DataView, o: number, le: boolean) => number | bigint }> = {
  f4: { dtype: 'float32', make: (b) => new Float32Array(b), bytes: 4, get: (v, o, le) => v.getFloat32(o, le) },
  f8: { dtype: 'float64', make: (b) => new Float64Array(b), bytes: 8, get: (v, o, le) => v.getFloat64(o, le) },
  i1: { dtype: 'int8', make: (b) => new Int8Array(b), bytes: 1, get: (v, o) => v.getInt8(o) },
  u1: { dtype: 'uint8', make: (b) => new Uint8Array(b), bytes: 1, get: (v, o) => v.getUint8(o) },
  b1: { dtype: 'bool', make: (b) => new Uint8Array(b), bytes: 1, get: (v, o) => v.getUint8(o) },
  i2: { dtype: 'int16', make: (b) => new Int16Array(b), bytes: 2, get: (v, o, le) => v.getInt16(o, le) },
  u2: { dtype: 'uint16', make: (b) => new Uint16Array(b), bytes: 2, get: (v, o, le) => v.getUint16(o, le) },
  i4: { dtype: 'int32', make: (b) => new Int32Array(b), bytes: 4, get: (v, o, le) => v.getInt32(o, le) },
  u4: { dtype: 'uint32', make: (b) => new Uint32Array(b), bytes: 4, get: (v, o, le) => v.getUint32(o, le) },
  i8: { dtype: 'int64', make: (b) => new BigInt64Array(b), bytes: 8, get: (v, o, le) => v.getBigInt64(o, le) },
  u8: { dtype: 'uint64', make: (b) => new BigUint64Array(b), bytes: 8, get: (v, o, le) => v.getBigUint64(o, le) },
};

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/** Parses a `.npy` file's bytes. `name` is used in errors (the file's path). */
export function parseNpy(bytes: Uint8Array, name = 'npy'): NpyArray {
  if (bytes.length < 10 || MAGIC.some((m, i) => bytes[i] !== m)) throw rangeError(`${name}: not a .npy file (no \\x93NUMPY magic)`);
  const major = bytes[6];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerLen: number, start: number;
  if (major === 1) [headerLen, start] = [view.getUint16(8, true), 10];
  else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw rangeError(`${name}: truncated .npy header`);
    [headerLen, start] = [view.getUint32(8, true), 12];
  } else throw rangeError(`${name}: .npy format version ${major} is not supported (1, 2 or 3)`);
  if (start + headerLen > bytes.length) throw rangeError(`${name}: truncated .npy header (${headerLen} bytes announced, ${bytes.length - start} present)`);
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(start, start + headerLen));
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) throw rangeError(`${name}: malformed .npy header: ${header.trim()}`);
  if (fortran === 'True') throw rangeError(`${name}: the array is in Fortran order; save it in C order (numpy.ascontiguousarray(a)) and retry`);
  const m = /^([<>|=])([a-z])(\d+)$/.exec(descr);
  const kind = m ? KINDS[m[2] + m[3]] : undefined;
  if (!m || !kind) throw rangeError(`${name}: dtype '${descr}' is not supported (float32/64, int8-64, uint8-64, bool)`);
  const shape = shapeText.split(',').map((s) => s.trim()).filter((s) => s !== '').map((s) => {
    const v = Number(s);
    if (!Number.isSafeInteger(v) || v < 0) throw rangeError(`${name}: malformed .npy shape (${shapeText})`);
    return v;
  });
  const count = shape.reduce((a, b) => a * b, 1);
  const offset = start + headerLen;
  if (bytes.length - offset < count * kind.bytes)
    throw rangeError(`${name}: truncated .npy data: shape (${shape.join(', ')}) needs ${count * kind.bytes} bytes, the file has ${bytes.length - offset}`);
  const little = m[1] !== '>';
  const buf = new ArrayBuffer(count * kind.bytes);
  if (little || kind.bytes === 1) new Uint8Array(buf).set(bytes.subarray(offset, offset + count * kind.bytes));
  const data = kind.make(buf);
  if (!little && kind.bytes > 1) for (let i = 0; i < count; i++) data[i] = kind.get(view, offset + i * kind.bytes, false) as never;
  return { dtype: kind.dtype, shape, data };
}

/** Reads a `.npy` file. */
export function readNpy(path: string): NpyArray {
  if (typeof path !== 'string') throw typeError(`path: expected a string, got ${typeof path}`);
  return parseNpy(readFileSync(path), path);
}

/** An array of 1 or 2+ dimensions as a float32 matrix (rows = the first dimension, the rest flattened). */
export function npyToMatrix(a: NpyArray, name = 'npy'): Matrix {
  if (a.shape.length < 1) throw rangeError(`${name}: expected an array with rows, got a scalar`);
  const rows = a.shape[0], cols = a.shape.length === 1 ? 1 : a.shape.slice(1).reduce((x, y) => x * y, 1);
  if (cols < 1) throw rangeError(`${name}: expected at least one column, got shape (${a.shape.join(', ')})`);
  const data = a.data instanceof Float32Array ? a.data : Float32Array.from(a.data as ArrayLike<number | bigint>, Number);
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) throw rangeError(`${name}: row ${Math.floor(i / cols)}, column ${i % cols} is ${data[i]} (expected a finite number)`);
  }
  return { data, rows, cols };
}

/** Serialises a float32 matrix (or a vector, `cols` = 0) as `.npy` version 1.0 bytes. */
export function formatNpy(data: Float32Array | Int32Array, shape: number[]): Uint8Array {
  const descr = data instanceof Float32Array ? '<f4' : '<i4';
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n'; // data starts 64-byte aligned
  const out = new Uint8Array(10 + header.length + data.byteLength);
  out.set(MAGIC);
  out[6] = 1;
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 10 + header.length);
  return out;
}
