/**
 * Naive, obviously-correct references for the drift tests (plain loops over the float32 inputs,
 * from the definitions in native/include/calmoe/drift.h), and the fixture data generator shared
 * with scripts/fixtures/drift_golden.py (xorshift32; values rounded to float32 the same way).
 */
import { matrix, type Matrix } from '../src/index.js';

export type Spec = ['uniform' | 'normalish' | 'integers', number, number] | ['constant', number];

/** The generator of scripts/fixtures/drift_golden.py, bit for bit. */
export function generate(seed: number, rows: number, specs: Spec[]): Matrix {
  let x = seed >>> 0;
  const next = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  const u = () => (next() >>> 8) / 16777216;
  const d = specs.length;
  const out = new Float32Array(rows * d);
  for (let r = 0; r < rows; r++) {
    specs.forEach((s, f) => {
      let v: number;
      switch (s[0]) {
        case 'uniform': v = u() * s[1] + s[2]; break;
        case 'normalish': { let t = 0; for (let k = 0; k < 4; k++) t += u(); v = (t - 2.0) * s[1] + s[2]; break; }
        case 'integers': v = Math.floor(u() * s[1]) + s[2]; break;
        case 'constant': v = s[1]; break;
      }
      out[r * d + f] = v;
    });
  }
  return matrix(out, rows, d);
}

export function column(m: Matrix, f: number): number[] {
  return Array.from({ length: m.rows }, (_, r) => m.data[r * m.cols + f]);
}

/** KS numerators by merging sorted copies: max (i n2 - j n1) and max (j n1 - i n2). */
export function refKs(a: number[], b: number[]): { statistic: number; plus: number; minus: number } {
  const x = [...a].sort((p, q) => p - q), y = [...b].sort((p, q) => p - q);
  const n1 = x.length, n2 = y.length;
  let i = 0, j = 0, plus = 0, minus = 0;
  while (i < n1 || j < n2) {
    const v = Math.min(i < n1 ? x[i] : Infinity, j < n2 ? y[j] : Infinity);
    while (i < n1 && x[i] === v) i++;
    while (j < n2 && y[j] === v) j++;
    plus = Math.max(plus, i * n2 - j * n1);
    minus = Math.max(minus, j * n1 - i * n2);
  }
  return { statistic: Math.max(plus, minus) / (n1 * n2), plus, minus };
}

/** Exact two-sided p-value by enumerating every arrangement of the pooled sample (tiny sizes). */
export function refExactP(n1: number, n2: number, statistic: number): number {
  const N = n1 + n2;
  let total = 0, hit = 0;
  const thr = Math.round(statistic * n1 * n2);
  for (let mask = 0; mask < 1 << N; mask++) {
    let bits = 0;
    for (let s = 0; s < N; s++) bits += (mask >> s) & 1;
    if (bits !== n1) continue;
    total++;
    let i = 0, j = 0, best = 0;
    for (let s = 0; s < N; s++) {
      if ((mask >> s) & 1) i++;
      else j++;
      best = Math.max(best, Math.abs(i * n2 - j * n1));
    }
    if (best >= thr) hit++;
  }
  return hit / total;
}

/** PSI with the documented definition (cut points: ranks ceil(k n / B); right-closed bins). */
export function refPsi(a: number[], b: number[], bins: number, eps = 1e-4): { psi: number; cuts: number[] } {
  const s = [...a].sort((p, q) => p - q);
  const n1 = a.length;
  const cuts: number[] = [];
  for (let k = 1; k < bins; k++) cuts.push(s[Math.floor((k * n1 + bins - 1) / bins) - 1]);
  const bin = (v: number) => cuts.reduce((c, e) => c + (e < v ? 1 : 0), 0);
  const p = new Array<number>(bins).fill(0), q = new Array<number>(bins).fill(0);
  for (const v of a) p[bin(v)]++;
  for (const v of b) q[bin(v)]++;
  let psi = 0;
  for (let k = 0; k < bins; k++) {
    const pp = p[k] ? p[k] / n1 : eps, qq = q[k] ? q[k] / b.length : eps;
    psi += (qq - pp) * Math.log(qq / pp);
  }
  return { psi, cuts };
}

/** Benjamini-Hochberg by its definition: q_i = min over ranks r >= rank(i) of p_(r) m / r, capped at 1. */
export function refBh(p: number[]): number[] {
  const m = p.length;
  const o = p.map((_, i) => i).sort((a, b) => p[a] - p[b] || a - b);
  const q = new Array<number>(m);
  o.forEach((idx, r) => {
    let best = 1;
    for (let k = r; k < m; k++) best = Math.min(best, (p[o[k]] * m) / (k + 1));
    q[idx] = best;
  });
  return q;
}
