/**
 * IDX files, the format of MNIST, Fashion-MNIST, EMNIST and KMNIST (big-endian; gzip-compressed
 * files, as distributed, are decompressed on the fly).
 */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { rangeError, typeError } from '../errors.js';
import type { NpyArray, NumericArray } from './npy.js';

// type code -> element size, typed array and big-endian reader
const TYPES: Record<number, { dtype: NpyArray['dtype']; bytes: number; make: (n: number) => NumericArray; get: (v: DataView, o: number) => number }> = {
  0x08: { dtype: 'uint8', bytes: 1, make: (n) => new Uint8Array(n), get: (v, o) => v.getUint8(o) },
  0x09: { dtype: 'int8', bytes: 1, make: (n) => new Int8Array(n), get: (v, o) => v.getInt8(o) },
  0x0b: { dtype: 'int16', bytes: 2, make: (n) => new Int16Array(n), get: (v, o) => v.getInt16(o, false) },
  0x0c: { dtype: 'int32', bytes: 4, make: (n) => new Int32Array(n), get: (v, o) => v.getInt32(o, false) },
  0x0d: { dtype: 'float32', bytes: 4, make: (n) => new Float32Array(n), get: (v, o) => v.getFloat32(o, false) },
  0x0e: { dtype: 'float64', bytes: 8, make: (n) => new Float64Array(n), get: (v, o) => v.getFloat64(o, false) },
};

/** Parses an IDX file's bytes (gzip or not). `name` is used in errors (the file's path). */
export function parseIdx(raw: Uint8Array, name = 'idx'): NpyArray {
  const bytes = raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b ? gunzipSync(raw) : raw;
  if (bytes.length < 4 || bytes[0] !== 0 || bytes[1] !== 0) throw rangeError(`${name}: not an IDX file (the magic number starts 0x00 0x00)`);
  const type = TYPES[bytes[2]];
  if (!type) throw rangeError(`${name}: IDX element type 0x${bytes[2].toString(16)} is not one of 0x08, 0x09, 0x0b, 0x0c, 0x0d, 0x0e`);
  const dims = bytes[3];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dims < 1 || bytes.length < 4 + 4 * dims) throw rangeError(`${name}: truncated IDX header (${dims} dimensions)`);
  const shape: number[] = [];
  for (let i = 0; i < dims; i++) shape.push(view.getUint32(4 + 4 * i, false));
  const count = shape.reduce((a, b) => a * b, 1);
  const offset = 4 + 4 * dims;
  if (bytes.length - offset !== count * type.bytes)
    throw rangeError(`${name}: IDX shape (${shape.join(', ')}) needs ${count * type.bytes} bytes of data, the file has ${bytes.length - offset}`);
  const data = type.make(count);
  if (type.bytes === 1) (data as Uint8Array).set(bytes.subarray(offset));
  else for (let i = 0; i < count; i++) data[i] = type.get(view, offset + i * type.bytes);
  return { dtype: type.dtype, shape, data };
}

/** Reads an IDX file (e.g. `train-images-idx3-ubyte.gz`): images as shape (n, 28, 28), labels as (n). */
export function readIdx(path: string): NpyArray {
  if (typeof path !== 'string') throw typeError(`path: expected a string, got ${typeof path}`);
  return parseIdx(readFileSync(path), path);
}
