/**
 * The array inputs of MoE audits and per-expert calibration, and their checks: routing weights
 * (B x K), every expert's scores (B x K x C), optionally the ids of the active experts (B x K) for
 * the sparse layout where only the k selected experts of each row are given.
 */
import { rangeError, typeError } from '../errors.js';
import { isInt, ownProperties, toLabels, unshared, toMatrix, type LabelsInput, type Matrix, type MatrixInput } from '../validate.js';
import { limits } from '../limits.js';

/**
 * Row-major B x K x C float32 tensor: `data[(i * experts + k) * classes + j]` is row i, expert
 * (slot) k, class j.
 */
export interface ExpertTensor {
  data: Float32Array;
  rows: number;
  experts: number;
  classes: number;
}

/** An {@link ExpertTensor}, or nested arrays [row][expert][class] (converted to float32). */
export type ExpertTensorInput = ExpertTensor | ReadonlyArray<ReadonlyArray<ArrayLike<number>>>;

/**
 * Ids of the active experts, B x K (the sparse layout: slot k of row i holds expert ids[i*K + k],
 * with routing weight routing[i][k] and scores expertScores[i][k]): an Int32Array of B*K ids, or
 * rows of integers.
 */
export type ExpertIdsInput = Int32Array | ReadonlyArray<ArrayLike<number>>;

/** Wraps a flat Float32Array as a B x K x C expert tensor, checking the shape. */
export function expertTensor(data: Float32Array, rows: number, experts: number, classes: number): ExpertTensor {
  return toExpertTensor({ data, rows, experts, classes }, 'expertTensor');
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name}`;
  return typeof v === 'object' ? 'an object' : `${typeof v} ${String(v)}`;
}

export function toExpertTensor(x: unknown, name: string): ExpertTensor {
  if (x !== null && typeof x === 'object' && !Array.isArray(x) && 'data' in x) {
    const t = x as Partial<ExpertTensor>;
    if (!(t.data instanceof Float32Array)) throw typeError(`${name}.data: expected a Float32Array, got ${describe(t.data)}`);
    unshared(t.data, `${name}.data`);
    for (const k of ['rows', 'experts', 'classes'] as const) {
      const v = t[k];
      if (!isInt(v) || v < (k === 'rows' ? 0 : 1)) throw typeError(`${name}.${k}: expected a ${k === 'rows' ? 'non-negative' : 'positive'} integer, got ${describe(v)}`);
    }
    const n = t.rows! * t.experts! * t.classes!;
    if (n > limits().maxElements) throw rangeError(`${name}: ${t.rows} x ${t.experts} x ${t.classes} is larger than supported (${limits().maxElements} elements)`);
    if (t.data.length !== n)
      throw rangeError(`${name}: data has ${t.data.length} elements but rows x experts x classes = ${t.rows} x ${t.experts} x ${t.classes} = ${n}`);
    return t as ExpertTensor;
  }
  if (Array.isArray(x)) {
    const rows = x.length;
    if (rows === 0) throw rangeError(`${name}: expected at least one row, got an empty array`);
    const first = x[0] as unknown;
    if (!Array.isArray(first) || first.length === 0) throw typeError(`${name}[0]: expected a non-empty array of experts' scores, got ${describe(first)}`);
    const experts = first.length;
    const c0 = first[0] as ArrayLike<number>;
    if (c0 === null || typeof c0 !== 'object' || typeof c0.length !== 'number' || c0.length === 0)
      throw typeError(`${name}[0][0]: expected a non-empty array of numbers, got ${describe(c0)}`);
    const classes = c0.length;
    const data = new Float32Array(rows * experts * classes);
    for (let i = 0; i < rows; i++) {
      const row = x[i] as unknown;
      if (!Array.isArray(row) || row.length !== experts) throw rangeError(`${name}[${i}]: expected ${experts} experts like row 0, got ${Array.isArray(row) ? row.length : describe(row)}`);
      for (let k = 0; k < experts; k++) {
        const v = row[k] as ArrayLike<number>;
        if (v === null || typeof v !== 'object' || v.length !== classes)
          throw rangeError(`${name}[${i}][${k}]: expected ${classes} numbers like [0][0], got ${v === null || typeof v !== 'object' ? describe(v) : v.length}`);
        for (let j = 0; j < classes; j++) {
          const s = v[j];
          if (typeof s !== 'number') throw typeError(`${name}[${i}][${k}][${j}]: expected a number, got ${describe(s)}`);
          data[(i * experts + k) * classes + j] = s;
        }
      }
    }
    return { data, rows, experts, classes };
  }
  throw typeError(`${name}: expected { data: Float32Array, rows, experts, classes } or nested arrays [row][expert][class], got ${describe(x)}`);
}

/** Routing weights, B x K, checked against the number of rows and slots of the expert tensor. */
export function toRouting(x: unknown, name: string, rows?: number, slots?: number): Matrix {
  const m = toMatrix(x as MatrixInput, name);
  if (m.rows < 1) throw rangeError(`${name}: expected at least one row`);
  if (rows !== undefined && m.rows !== rows) throw rangeError(`${name}: has ${m.rows} rows but the scores have ${rows}`);
  if (slots !== undefined && m.cols !== slots) throw rangeError(`${name}: has ${m.cols} columns but the scores have ${slots} experts per row`);
  return m;
}

/** Active-expert ids (B x K), each in [0, numExperts). Returns the ids and the expert count. */
export function toExpertIds(x: unknown, name: string, rows: number, slots: number, numExperts: unknown): { ids: Int32Array; count: number } {
  let ids: Int32Array;
  if (x instanceof Int32Array) {
    if (x.length !== rows * slots) throw rangeError(`${name}: expected ${rows * slots} ids (rows x slots = ${rows} x ${slots}), got ${x.length}`);
    ids = unshared(x, name);
  } else if (Array.isArray(x)) {
    if (x.length !== rows) throw rangeError(`${name}: expected ${rows} rows of ids, got ${x.length}`);
    ids = new Int32Array(rows * slots);
    for (let i = 0; i < rows; i++) {
      const r = x[i] as ArrayLike<unknown>;
      if (r === null || typeof r !== 'object' || r.length !== slots) throw rangeError(`${name}[${i}]: expected ${slots} expert ids`);
      for (let k = 0; k < slots; k++) {
        const v = r[k];
        if (typeof v !== 'number') throw typeError(`${name}[${i}][${k}]: expected an integer, got ${describe(v)}`);
        if (!Number.isInteger(v) || v < 0 || v > limits().maxIds) throw rangeError(`${name}[${i}][${k}] = ${v}: expected an integer in [0, ${limits().maxIds}]`);
        ids[i * slots + k] = v;
      }
    }
  } else throw typeError(`${name}: expected an Int32Array or rows of integers, got ${describe(x)}`);
  let max = -1;
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] < 0) throw rangeError(`${name}: row ${Math.floor(i / slots)}, column ${i % slots} = ${ids[i]}: expected an expert id >= 0`);
    if (ids[i] > max) max = ids[i];
  }
  let count = max + 1;
  if (numExperts !== undefined) {
    if (typeof numExperts !== 'number') throw typeError(`numExperts: expected an integer, got ${describe(numExperts)}`);
    if (!Number.isInteger(numExperts) || numExperts < 1 || numExperts > limits().maxIds) throw rangeError(`numExperts: expected an integer in [1, ${limits().maxIds}], got ${numExperts}`);
    if (max >= numExperts) throw rangeError(`${name}: contains expert ${max} but numExperts is ${numExperts}`);
    count = numExperts;
  }
  return { ids, count };
}

/**
 * What a Mixture-of-Experts produced for B rows: routing weights (B x K; each row sums to 1 — pass
 * the renormalised weights of the active experts in the top-k layout), each expert's probabilities
 * (B x K x C), the blend's probabilities (B x C) and the labels; `experts` (B x K ids) selects the
 * active-expert layout.
 */
export interface MoEOutputs {
  routing: MatrixInput;
  expertProbs?: ExpertTensorInput;
  mixture?: MatrixInput;
  labels?: LabelsInput;
  experts?: ExpertIdsInput;
  numExperts?: number;
}

export interface ParsedOutputs {
  rows: number;
  /** Routing columns (K). */
  slots: number;
  /** Expert count (E = K in the dense layout). */
  experts: number;
  /** Classes (0 when no probabilities were given). */
  classes: number;
  routing: Matrix;
  ids?: Int32Array;
  expertProbs?: ExpertTensor;
  mixture?: Matrix;
  labels?: Int32Array;
}

const OUTPUT_KEYS = ['routing', 'expertProbs', 'mixture', 'labels', 'experts', 'numExperts'] as const;

/** Checks shapes (values are checked natively, in one pass); `need` names the required parts. */
export function parseOutputs(x: unknown, need: ReadonlyArray<'expertProbs' | 'mixture' | 'labels'>, name = 'outputs'): ParsedOutputs {
  if (x === null || typeof x !== 'object' || Array.isArray(x)) throw typeError(`${name}: expected an object { routing, expertProbs, mixture, labels }, got ${describe(x)}`);
  const o = ownProperties(x);
  for (const k of Object.keys(o)) {
    if (!(OUTPUT_KEYS as readonly string[]).includes(k)) throw rangeError(`${name}: unknown field '${k}' (known: ${OUTPUT_KEYS.join(', ')})`);
  }
  for (const k of need) if (o[k] === undefined) throw typeError(`${k}: missing (required by this audit)`);
  if (o.routing === undefined) throw typeError('routing: missing (required by every audit)');
  const routing = toRouting(o.routing, 'routing');
  const B = routing.rows, K = routing.cols;
  let expertProbs: ExpertTensor | undefined;
  let classes = 0;
  if (o.expertProbs !== undefined) {
    expertProbs = toExpertTensor(o.expertProbs, 'expertProbs');
    if (expertProbs.rows !== B) throw rangeError(`expertProbs: has ${expertProbs.rows} rows but routing has ${B}`);
    if (expertProbs.experts !== K) throw rangeError(`expertProbs: has ${expertProbs.experts} experts per row but routing has ${K} columns`);
    classes = expertProbs.classes;
  }
  let mixture: Matrix | undefined;
  if (o.mixture !== undefined) {
    mixture = toMatrix(o.mixture as MatrixInput, 'mixture');
    if (mixture.rows !== B) throw rangeError(`mixture: has ${mixture.rows} rows but routing has ${B}`);
    if (classes && mixture.cols !== classes) throw rangeError(`mixture: has ${mixture.cols} classes but expertProbs has ${classes}`);
    classes = mixture.cols;
  }
  let labels: Int32Array | undefined;
  if (o.labels !== undefined) {
    if (!classes) throw typeError('labels: given without probabilities (expertProbs or mixture) to score');
    labels = toLabels(o.labels, 'labels', B);
  }
  let ids: Int32Array | undefined;
  let experts = K;
  if (o.experts !== undefined) ({ ids, count: experts } = toExpertIds(o.experts, 'experts', B, K, o.numExperts));
  else if (o.numExperts !== undefined && o.numExperts !== K)
    throw rangeError(`numExperts: ${String(o.numExperts)} differs from the ${K} routing columns (pass 'experts' ids for the active-expert layout)`);
  return { rows: B, slots: K, experts, classes, routing, ids, expertProbs, mixture, labels };
}
