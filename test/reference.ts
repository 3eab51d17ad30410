/**
 * Naive, obviously-correct reference implementations for the parity tests: plain loops in
 * float64 over the float32 inputs, written from DESIGN.md's definitions and nothing else.
 */

export interface RefCalibration {
  ece: number;
  mce: number;
  rmsce: number;
  accuracy: number;
  nll: number;
  brier: number;
  count: number[];
  positives: number[];
  confSum: number[];
}

export function refBin(c: number, bins: number, edges: 'right-closed' | 'left-closed'): number {
  const t = c * bins; // exact in float64 for float32 c and bins < 2^29
  const b = edges === 'right-closed' ? Math.ceil(t) - 1 : Math.floor(t);
  return Math.min(bins - 1, Math.max(0, b));
}

function summarize(conf: number[], positive: boolean[], bins: number, edges: 'right-closed' | 'left-closed') {
  const count = new Array<number>(bins).fill(0);
  const positives = new Array<number>(bins).fill(0);
  const confSum = new Array<number>(bins).fill(0);
  conf.forEach((c, i) => {
    const b = refBin(c, bins, edges);
    count[b]++;
    positives[b] += positive[i] ? 1 : 0;
    confSum[b] += c;
  });
  const n = conf.length;
  let ece = 0, mce = 0, sq = 0;
  for (let b = 0; b < bins; b++) {
    if (!count[b]) continue;
    const gap = Math.abs(positives[b] / count[b] - confSum[b] / count[b]);
    ece += (count[b] / n) * gap;
    mce = Math.max(mce, gap);
    sq += (count[b] / n) * gap * gap;
  }
  return { ece, mce, rmsce: Math.sqrt(sq), count, positives, confSum };
}

/** Top-label calibration of float32 probabilities (or logits) in row-major order. */
export function refTopLabel(
  scores: Float32Array, rows: number, cols: number, labels: ArrayLike<number>,
  bins: number, edges: 'right-closed' | 'left-closed', input: 'probabilities' | 'logits' = 'probabilities',
): RefCalibration {
  const conf: number[] = [];
  const positive: boolean[] = [];
  let correct = 0, nll = 0, brier = 0;
  for (let i = 0; i < rows; i++) {
    const row = Array.from(scores.subarray(i * cols, (i + 1) * cols));
    let p = row;
    if (input === 'logits') {
      const mx = Math.max(...row);
      const e = row.map((z) => Math.exp(z - mx));
      const s = e.reduce((a, b) => a + b, 0);
      p = e.map((v) => v / s);
    }
    let arg = 0;
    for (let j = 1; j < cols; j++) if (row[j] > row[arg]) arg = j;
    const c = input === 'logits' ? Math.fround(p[arg]) : row[arg];
    conf.push(c);
    positive.push(arg === labels[i]);
    correct += arg === labels[i] ? 1 : 0;
    nll += -Math.log(Math.max(p[labels[i]], 1e-12));
    for (let j = 0; j < cols; j++) brier += (p[j] - (j === labels[i] ? 1 : 0)) ** 2;
  }
  return { ...summarize(conf, positive, bins, edges), accuracy: correct / rows, nll: nll / rows, brier: brier / rows };
}

export function refConfidence(conf: ArrayLike<number>, correct: ArrayLike<number | boolean>, bins: number, edges: 'right-closed' | 'left-closed') {
  const c = Array.from(conf, (v) => Math.fround(v));
  const ok = Array.from(correct, (v) => v === true || v === 1);
  return summarize(c, ok, bins, edges);
}

/** Tilted weights in float64: w = softmax(eta * l). */
export function refTilted(l: ArrayLike<number>, eta: number) {
  const x = Array.from(l, (v) => Math.fround(v));
  const m = Math.max(...x.map((v) => eta * v));
  const e = x.map((v) => Math.exp(eta * v - m));
  const s = e.reduce((a, b) => a + b, 0);
  const w = e.map((v) => v / s);
  const robust = w.reduce((a, wi, i) => a + wi * x[i], 0);
  const mean = x.reduce((a, b) => a + b, 0) / x.length;
  const tilted = eta === 0 ? mean : (m + Math.log(s / x.length)) / eta;
  return { w, robust, mean, tilted, through: w.map((wi, i) => wi * (1 + eta * (x[i] - robust))) };
}

/** Seeded generator (mulberry32) so tests see the same data everywhere. */
export function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
  return { next, normal, int: (n: number) => Math.floor(next() * n) };
}

/** rows x cols probabilities (softmax of Gaussian logits) and uniform labels. */
export function randomProbs(seed: number, rows: number, cols: number, scale = 2) {
  const r = rng(seed);
  const data = new Float32Array(rows * cols);
  const labels = new Int32Array(rows);
  for (let i = 0; i < rows; i++) {
    let s = 0;
    const e = new Float64Array(cols);
    for (let j = 0; j < cols; j++) s += (e[j] = Math.exp(scale * r.normal()));
    for (let j = 0; j < cols; j++) data[i * cols + j] = e[j] / s;
    labels[i] = r.int(cols);
  }
  return { data, rows, cols, labels };
}

/** Weighted mean NLL of softmax(z / T) over rows (float64, log-sum-exp), the temperature objective. */
export function refTemperatureNll(z: ArrayLike<number>, rows: number, cols: number, y: ArrayLike<number>, T: number, w?: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < rows; i++) {
    const wi = w ? w[i] : 1;
    if (wi === 0) continue;
    let m = -Infinity;
    for (let j = 0; j < cols; j++) m = Math.max(m, z[i * cols + j] / T);
    let s = 0;
    for (let j = 0; j < cols; j++) s += Math.exp(z[i * cols + j] / T - m);
    num += wi * (m + Math.log(s) - z[i * cols + y[i]] / T);
    den += wi;
  }
  return num / den;
}

/** Brute force: the grid point of `points` log-spaced temperatures in [min, max] with the least NLL. */
export function refGridTemperature(z: ArrayLike<number>, rows: number, cols: number, y: ArrayLike<number>, min: number, max: number, points: number, w?: ArrayLike<number>) {
  let best = { T: NaN, nll: Infinity };
  const step = Math.log(max / min) / (points - 1);
  for (let g = 0; g < points; g++) {
    const T = min * Math.exp(g * step);
    const nll = refTemperatureNll(z, rows, cols, y, T, w);
    if (nll < best.nll) best = { T, nll };
  }
  return { ...best, step };
}

/**
 * Weighted top-label calibration, naively in float64 (the definition in CalibrationOptions.weights):
 * W_b = sum of the weights in bin b, acc_b / conf_b weighted means, ECE = sum_b (W_b / W) |acc_b -
 * conf_b|, MCE over bins with W_b > 0, RMSCE; accuracy, NLL (p floored at 1e-12) and Brier weighted.
 */
export function refWeightedCalibration(p: ArrayLike<number>, rows: number, C: number, y: ArrayLike<number>, w: ArrayLike<number>, bins: number,
  edges: 'right-closed' | 'left-closed' = 'right-closed') {
  const W_b = new Array<number>(bins).fill(0), A_b = new Array<number>(bins).fill(0), S_b = new Array<number>(bins).fill(0);
  const count = new Array<number>(bins).fill(0);
  let W = 0, acc = 0, nll = 0, brier = 0;
  for (let i = 0; i < rows; i++) {
    let arg = 0;
    for (let j = 1; j < C; j++) if (p[i * C + j] > p[i * C + arg]) arg = j;
    const conf = Math.fround(p[i * C + arg]), correct = arg === y[i] ? 1 : 0;
    const b = refBin(conf, bins, edges);
    const wi = Math.fround(w[i]);
    count[b]++;
    W_b[b] += wi;
    A_b[b] += wi * correct;
    S_b[b] += wi * conf;
    W += wi;
    acc += wi * correct;
    nll += wi * -Math.log(Math.max(Math.fround(p[i * C + y[i]]), 1e-12));
    let br = 0;
    for (let j = 0; j < C; j++) br += (Math.fround(p[i * C + j]) - (j === y[i] ? 1 : 0)) ** 2;
    brier += wi * br;
  }
  let ece = 0, mce = 0, sq = 0;
  for (let b = 0; b < bins; b++) {
    if (!(W_b[b] > 0)) continue;
    const gap = Math.abs(A_b[b] / W_b[b] - S_b[b] / W_b[b]);
    ece += (W_b[b] / W) * gap;
    mce = Math.max(mce, gap);
    sq += (W_b[b] / W) * gap * gap;
  }
  return {
    weight: W, accuracy: acc / W, nll: nll / W, brier: brier / W, ece, mce, rmsce: Math.sqrt(sq), count,
    binWeight: W_b, binAccuracy: W_b.map((v, b) => (v > 0 ? A_b[b] / v : NaN)), binConfidence: W_b.map((v, b) => (v > 0 ? S_b[b] / v : NaN)),
  };
}
