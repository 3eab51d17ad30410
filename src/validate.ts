/**
 * Input normalisation and checks shared by every public entry point. Typed arrays pass through
 * without copies; plain arrays are converted (documented on each type).
 */
import { rangeError, typeError } from './errors.js';
import { limits } from './limits.js';

export type Device = 'auto' | 'cpu' | 'cuda';
export const DEVICES: readonly Device[] = ['auto', 'cpu', 'cuda'];

/** A row-major float32 matrix: `data[i * cols + j]` is row i, column j. */
export interface Matrix {
  data: Float32Array;
  rows: number;
  cols: number;
}

/** A matrix, or rows of numbers (converted to float32; every row the same length). */
export type MatrixInput = Matrix | ReadonlyArray<ArrayLike<number>>;
/** An integer typed array (labels read from IDX or .npy files come as Uint8Array, Int16Array, ...). */
export type IntegerArray = Int8Array | Uint8Array | Uint8ClampedArray | Int16Array | Uint16Array | Int32Array | Uint32Array | BigInt64Array | BigUint64Array;
/** Integer labels: any integer typed array (converted to Int32Array unless it is one), or numbers (each must be an integer). */
export type LabelsInput = IntegerArray | ReadonlyArray<number>;
/** A classifier's labels: integers, or class names when the model has `classNames`. */
export type ClassLabelsInput = LabelsInput | ReadonlyArray<string>;
/** A float32 vector, or numbers (converted to float32). */
export type VectorInput = Float32Array | ReadonlyArray<number>;

/**
 * An option's type in an options type O (undefined when O leaves it out): for result types that
 * follow the options. By keys, since `{ bins: 15 }` is not assignable to an all-optional object
 * type it shares no key with.
 */
export type OptionOf<O, K extends string> = K extends keyof O ? O[K] : undefined;

/** Wraps a flat Float32Array as a matrix, checking the shape. */
export function matrix(data: Float32Array, rows: number, cols: number): Matrix {
  const m = { data, rows, cols };
  return toMatrix(m, 'matrix');
}

export function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name}`;
  return typeof v === 'object' ? 'an object' : `${typeof v} ${String(v)}`;
}

/**
 * Typed arrays over a SharedArrayBuffer are refused: another thread may write them while calmoe
 * reads, so there is no one value to compute on (copy them into an ArrayBuffer first).
 */
export function unshared<T extends ArrayBufferView>(a: T, name: string): T {
  if (typeof SharedArrayBuffer === 'function' && a.buffer instanceof SharedArrayBuffer)
    throw typeError(`${name}: expected a ${a.constructor.name} over an ArrayBuffer, got one over a SharedArrayBuffer (copy it: new ${a.constructor.name}(array))`);
  return a;
}

export function toMatrix(x: unknown, name: string): Matrix {
  if (x !== null && typeof x === 'object' && !Array.isArray(x) && 'data' in x) {
    const m = x as Partial<Matrix>;
    if (!(m.data instanceof Float32Array)) throw typeError(`${name}.data: expected a Float32Array, got ${describe(m.data)}`);
    unshared(m.data, `${name}.data`);
    if (!isInt(m.rows) || m.rows < 0) throw typeError(`${name}.rows: expected a non-negative integer, got ${describe(m.rows)}`);
    if (!isInt(m.cols) || m.cols < 1) throw typeError(`${name}.cols: expected a positive integer, got ${describe(m.cols)}`);
    if (m.rows * m.cols > limits().maxElements) throw rangeError(`${name}: ${m.rows} x ${m.cols} is larger than supported (${limits().maxElements} elements)`);
    if (m.data.length !== m.rows * m.cols)
      throw rangeError(`${name}: data has ${m.data.length} elements but rows x cols = ${m.rows} x ${m.cols} = ${m.rows * m.cols}`);
    return m as Matrix;
  }
  if (Array.isArray(x)) {
    const rows = x.length;
    if (rows === 0) throw rangeError(`${name}: expected at least one row, got an empty array`);
    const first = x[0] as unknown;
    if (first === null || typeof first !== 'object' || typeof (first as ArrayLike<number>).length !== 'number')
      throw typeError(`${name}[0]: expected an array of numbers, got ${describe(first)}`);
    const cols = (first as ArrayLike<number>).length;
    if (cols === 0) throw rangeError(`${name}[0]: expected at least one column`);
    const data = new Float32Array(rows * cols);
    for (let i = 0; i < rows; i++) {
      const row = x[i] as ArrayLike<number>;
      if (row === null || typeof row !== 'object' || row.length !== cols)
        throw rangeError(`${name}[${i}]: expected ${cols} numbers like row 0, got ${row === null || typeof row !== 'object' ? describe(row) : row.length}`);
      for (let j = 0; j < cols; j++) {
        const v = row[j];
        if (typeof v !== 'number') throw typeError(`${name}[${i}][${j}]: expected a number, got ${describe(v)}`);
        data[i * cols + j] = v;
      }
    }
    return { data, rows, cols };
  }
  throw typeError(`${name}: expected { data: Float32Array, rows, cols } or an array of rows, got ${describe(x)}`);
}

const INT_ARRAYS = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Uint32Array, BigInt64Array, BigUint64Array];

/** Labels as Int32Array. `classNames`: the model's names, which string labels are mapped by. */
export function toLabels(x: unknown, name: string, n: number, classNames?: readonly string[]): Int32Array {
  let out: Int32Array;
  if (x instanceof Int32Array) out = unshared(x, name);
  else if (INT_ARRAYS.some((T) => x instanceof T)) {
    const a = x as ArrayLike<number | bigint>;
    out = new Int32Array(a.length);
    for (let i = 0; i < a.length; i++) {
      const v = a[i];
      if (v < -(2 ** 31) || v >= 2 ** 31) throw rangeError(`${name}[${i}] = ${v}: expected an integer in the int32 range`);
      out[i] = Number(v);
    }
  } else if (Array.isArray(x) && x.length > 0 && typeof x[0] === 'string') {
    if (!classNames) throw typeError(`${name}: string labels need a classifier with classNames (new MoEClassifier({ classNames, ... })), got ${describe(x[0])}`);
    const ids = new Map(classNames.map((c, i) => [c, i]));
    out = new Int32Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const id = ids.get(x[i] as string);
      if (id === undefined) throw rangeError(`${name}[${i}] = ${JSON.stringify(x[i])}: not one of the model's classNames`);
      out[i] = id;
    }
  } else if (Array.isArray(x)) {
    out = new Int32Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const v = x[i] as unknown;
      if (typeof v !== 'number') throw typeError(`${name}[${i}]: expected an integer, got ${describe(v)}`);
      if (!Number.isInteger(v) || v < -(2 ** 31) || v >= 2 ** 31) throw rangeError(`${name}[${i}] = ${v}: expected an integer`);
      out[i] = v;
    }
  } else throw typeError(`${name}: expected an integer typed array (Int32Array, Uint8Array, ...), an array of integers or of class names, got ${describe(x)}`);
  if (out.length !== n) throw rangeError(`${name}: expected ${n} labels (one per row), got ${out.length}`);
  return out;
}

export function toVector(x: unknown, name: string): Float32Array {
  if (x instanceof Float32Array) return unshared(x, name);
  if (Array.isArray(x)) {
    const out = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const v = x[i] as unknown;
      if (typeof v !== 'number') throw typeError(`${name}[${i}]: expected a number, got ${describe(v)}`);
      out[i] = v;
    }
    return out;
  }
  throw typeError(`${name}: expected a Float32Array or an array of numbers, got ${describe(x)}`);
}

/** 0/1 flags: a Uint8Array, or booleans / 0 / 1. */
export function toFlags(x: unknown, name: string, n: number): Uint8Array {
  let out: Uint8Array;
  if (x instanceof Uint8Array) out = unshared(x, name);
  else if (Array.isArray(x)) {
    out = new Uint8Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const v = x[i] as unknown;
      if (v === true || v === 1) out[i] = 1;
      else if (v === false || v === 0) out[i] = 0;
      else throw rangeError(`${name}[${i}]: expected a boolean or 0/1, got ${describe(v)}`);
    }
  } else throw typeError(`${name}: expected a Uint8Array or an array of booleans, got ${describe(x)}`);
  if (out.length !== n) throw rangeError(`${name}: expected ${n} flags (one per row), got ${out.length}`);
  return out;
}

/**
 * An object's own enumerable properties on a null-prototype object: what an options bag says,
 * never what Object.prototype (polluted or not) adds to it.
 */
export function ownProperties(x: object): Record<string, unknown> {
  const out = Object.create(null) as Record<string, unknown>;
  for (const key of Object.keys(x)) out[key] = (x as Record<string, unknown>)[key];
  return out;
}

/**
 * Reads an options object: rejects unknown keys (a typo should not be silently ignored). Returns
 * the caller's own enumerable properties on a null-prototype object, so a property added to
 * Object.prototype (prototype pollution) never becomes an option.
 */
export function readOptions<K extends string>(x: unknown, name: string, known: readonly K[]): Partial<Record<K, unknown>> {
  if (x === undefined) return Object.create(null) as Partial<Record<K, unknown>>;
  if (x === null || typeof x !== 'object' || Array.isArray(x)) throw typeError(`${name}: expected an object, got ${describe(x)}`);
  for (const key of Object.keys(x)) {
    if (!(known as readonly string[]).includes(key))
      throw rangeError(`${name}: unknown option '${key}' (known: ${known.join(', ')})`);
  }
  return ownProperties(x) as Partial<Record<K, unknown>>;
}

export function optInt(v: unknown, name: string, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  if (typeof v !== 'number') throw typeError(`${name}: expected an integer, got ${describe(v)}`);
  if (!Number.isInteger(v) || v < min || v > max) throw rangeError(`${name}: expected an integer in [${min}, ${max}], got ${v}`);
  return v;
}

export function reqInt(v: unknown, name: string, min: number, max: number): number {
  if (v === undefined) throw typeError(`${name}: missing (expected an integer in [${min}, ${max}])`);
  return optInt(v, name, min, min, max);
}

export function optNumber(v: unknown, name: string, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  if (typeof v !== 'number') throw typeError(`${name}: expected a number, got ${describe(v)}`);
  if (!(v >= min && v <= max)) throw rangeError(`${name}: expected a number in [${min}, ${max}], got ${v}`);
  return v;
}

export function optChoice<T extends string>(v: unknown, name: string, def: T, choices: readonly T[]): T {
  if (v === undefined) return def;
  if (typeof v !== 'string' || !(choices as readonly string[]).includes(v))
    throw (typeof v === 'string' ? rangeError : typeError)(`${name}: expected one of ${choices.map((c) => `'${c}'`).join(', ')}, got ${typeof v === 'string' ? `'${v}'` : describe(v)}`);
  return v as T;
}

export function reqChoice<T extends string>(v: unknown, name: string, choices: readonly T[]): T {
  if (v === undefined) throw typeError(`${name}: missing (expected one of ${choices.map((c) => `'${c}'`).join(', ')})`);
  return optChoice(v, name, choices[0], choices);
}

export function optBool(v: unknown, name: string, def: boolean): boolean {
  if (v === undefined) return def;
  if (typeof v !== 'boolean') throw typeError(`${name}: expected a boolean, got ${describe(v)}`);
  return v;
}

export function optDevice(v: unknown): Device {
  return optChoice(v, 'device', 'auto', DEVICES);
}
