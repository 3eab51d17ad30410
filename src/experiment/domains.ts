/**
 * Corruption domains of the shift experiment: every row of a data set gets one of four domains
 * (clean, pixel noise, low contrast, shifted 3 px), and the data are split, with a seeded
 * permutation, into train / validation / test pool. Features are expected in [0, 1] (pixels);
 * the shift moves a square image 3 px right and down, other rows 3 features along.
 */
import { rangeError } from '../errors.js';
import { matrix, type Matrix } from '../validate.js';

export const DOMAINS = ['clean', 'noise', 'low contrast', 'shifted'] as const;

/** Seeded uniforms (a 32-bit LCG) and Box-Muller normals: the same splits and noise everywhere. */
export function seededRandom(seed: number): { next(): number; normal(): number } {
  let a = seed >>> 0;
  const next = () => ((a = (Math.imul(a, 1664525) + 1013904223) >>> 0) + 0.5) / 4294967296;
  return { next, normal: () => Math.sqrt(-2 * Math.log(next())) * Math.cos(2 * Math.PI * next()) };
}

/** Row `src` of x (d features) in domain `dom`, written to out[o..o+d). */
export function corruptRow(x: Float32Array, d: number, src: number, dom: number, g: { normal(): number }, out: Float32Array, o: number): void {
  const side = Math.round(Math.sqrt(d));
  const square = side * side === d;
  for (let p = 0; p < d; p++) {
    const v = x[src * d + p];
    if (dom === 0) out[o + p] = v;
    else if (dom === 1) out[o + p] = Math.min(1, Math.max(0, v + 0.35 * g.normal()));
    else if (dom === 2) out[o + p] = 0.3 + 0.4 * v;
    else if (square) {
      const sx = (p % side) - 3, sy = Math.floor(p / side) - 3;
      out[o + p] = sx >= 0 && sy >= 0 ? x[src * d + sy * side + sx] : 0;
    } else out[o + p] = p >= 3 ? x[src * d + p - 3] : 0;
  }
}

export interface DomainSplit { x: Matrix; y: Int32Array; domain: Int32Array }
export interface DomainSplits { train: DomainSplit; val: DomainSplit; test: DomainSplit }

/**
 * Shuffles the rows (seeded), keeps the first `rows` of them (all by default), and splits them
 * 60% train / 20% validation / 20% test pool; row r of each split is in domain r mod 4.
 */
export function domainSplits(data: { x: Matrix; y: Int32Array }, options: { rows?: number; seed?: number } = {}): DomainSplits {
  const n = Math.min(options.rows ?? data.y.length, data.y.length);
  if (n < 20) throw rangeError(`rows: expected at least 20 rows for a train / validation / test split, got ${n}`);
  const d = data.x.cols;
  const g = seededRandom(options.seed ?? 2026);
  const order = Int32Array.from({ length: data.y.length }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(g.next() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const make = (from: number, to: number): DomainSplit => {
    const m = to - from, x = new Float32Array(m * d), y = new Int32Array(m), domain = new Int32Array(m);
    for (let r = 0; r < m; r++) {
      domain[r] = r % DOMAINS.length;
      y[r] = data.y[order[from + r]];
      corruptRow(data.x.data, d, order[from + r], domain[r], g, x, r * d);
    }
    return { x: matrix(x, m, d), y, domain };
  };
  const nTrain = Math.round(n * 0.6), nVal = Math.round(n * 0.2);
  return { train: make(0, nTrain), val: make(nTrain, nTrain + nVal), test: make(nTrain + nVal, n) };
}

/** Rescales features to [0, 1] by the data's overall minimum and maximum (for the corruptions), in place. */
export function toUnitRange(x: Matrix): Matrix {
  let lo = Infinity, hi = -Infinity;
  for (const v of x.data) { if (v < lo) lo = v; if (v > hi) hi = v; }
  if (lo >= 0 && hi <= 1) return x;
  const s = hi > lo ? 1 / (hi - lo) : 0;
  for (let i = 0; i < x.data.length; i++) x.data[i] = (x.data[i] - lo) * s;
  return x;
}
