/**
 * Peer: the MoE workloads of DESIGN.md ("Performance") written in TensorFlow.js, on the `cpu` and
 * `wasm` backends, as a competent TF.js user would write them (functional API, `optimizer.minimize`).
 *
 * Model: linear router g = x Wr + br, r = softmax(g); K experts, each
 * softmax(relu(x W1 + b1) W2 + b2); aggregation is a mixture of probabilities. Modes:
 * - soft: every expert runs on every row, p = sum_k r_k p_k;
 * - top2: S = the 2 largest r (tf.topk: ties to the lower index), r~ = r / sum_S r, only the
 *   selected experts run on their rows (tf.gather of the rows per expert), p = sum_S r~_k p_k;
 * - top1: only the chosen expert runs; p = p_k* * r_k* / stopgrad(r_k*) in training (Switch-style
 *   router gradient), p = p_k* in eval.
 * Loss l_i = -log max(p_i[y_i], 1e-12); tilted weights w = softmax(eta l) over the batch, held
 * constant (they are computed from a copy of l's values, which the tape does not see);
 * L = sum_i w_i l_i; plain SGD.
 *
 * Kernel availability decides the sparse combine. tf.gather's gradient is tf.unsortedSegmentSum,
 * which has no WASM kernel (and on the CPU backend loops over every segment: numSegments x N work),
 * and tf.scatterND / tf.gatherND have no gradient at all. So the expert outputs go back to their
 * (row, expert) slots with tf.scatterND inside a tf.customGrad whose backward is tf.gather (both
 * kernels exist on both backends); the gathered inputs x need no gradient. One formulation, both
 * backends.
 *
 * On WASM a second set of rows, 'tfjs-wasm-tuned', measures the same model with two work-arounds a
 * performance-minded user could add (see useUntransposedMatMulGrad and gatherRowsHost). Training
 * needs the gradient functions that '@tensorflow/tfjs' registers (see ensureGradients).
 * bench/peers/README.md has the details and the deviations from the spec.
 */
import { bestTime, emit, note } from '../common.js';
import { tf, tfBackends } from '../tfjs.js';
import { eceLoop } from '../w3-ece.js';

export type MoEMode = 'soft' | 'top2' | 'top1';
export const MOE_MODES: MoEMode[] = ['soft', 'top2', 'top1'];

export interface MoEShape {
  d: number;
  h: number;
  C: number;
  K: number;
}
/** W1 / W2 model of DESIGN.md. */
export const W1_SHAPE: MoEShape = { d: 128, h: 128, C: 10, K: 8 };
export const ETA = 0.5;
export const LR = 0.1;
export const INIT_STD = 0.05;
export const BINS = 15;
/** W2 stops repeating full passes after this many seconds (tfjs-cpu soft takes ~100 s a pass). */
const W2_BUDGET_S = 60;

export interface TfjsW1Options {
  /** rows per training step (W1: 2048) */
  batch: number;
  /** timed steps (best of), after 2 warm-up steps */
  repeat: number;
  /** TF.js backends to run (default: every one that loads) */
  backends?: string[];
  modes?: MoEMode[];
  /** run the correctness self-check first (default true) */
  check?: boolean;
  /** on WASM, also measure with the untransposed matMul gradient and host-gathered expert rows, as 'tfjs-wasm-tuned' (default true) */
  tuned?: boolean;
}

export interface TfjsW2Options {
  /** rows to evaluate (W2: 200,000) */
  rows: number;
  repeat: number;
  /** rows per forward call (default 8192) */
  chunk?: number;
  backends?: string[];
  modes?: MoEMode[];
  check?: boolean;
  /** on WASM, also measure top2/top1 with the expert rows gathered on the host, as 'tfjs-wasm-tuned' (default true) */
  tuned?: boolean;
}

// ---------------------------------------------------------------------------------------------
// gradients

/**
 * tfjs-core's Node bundle (what `import '@tensorflow/tfjs-core'` loads) registers no gradient
 * functions: they ship in its ES-module files, which the umbrella package `@tensorflow/tfjs`
 * bundles and registers when it loads (the usual way to use TF.js). Returns null when the
 * gradients are available, else why not (W1 then skips; W2 needs none).
 */
export async function ensureGradients(): Promise<string | null> {
  if (tf.getGradient('Sum') != null) return null;
  const umbrella = '@tensorflow/tfjs'; // not a literal: type-checks without the package
  try {
    await import(umbrella);
  } catch (err) {
    return `TensorFlow.js gradients unavailable: '@tensorflow/tfjs' (which registers them) does not load (${(err as Error).message.split('\n')[0]}); install it with npm i -D @tensorflow/tfjs@4.22.0`;
  }
  return tf.getGradient('Sum') != null ? null : `TensorFlow.js gradients unavailable: loading '@tensorflow/tfjs' registered none`;
}

// ---------------------------------------------------------------------------------------------
// seeded data

/** mulberry32 uniforms in (0, 1) and Box-Muller normals. */
export function makeRng(seed: number) {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
  let spare = NaN;
  const normal = () => {
    if (!Number.isNaN(spare)) {
      const s = spare;
      spare = NaN;
      return s;
    }
    const r = Math.sqrt(-2 * Math.log(uniform()));
    const th = 2 * Math.PI * uniform();
    spare = r * Math.sin(th);
    return r * Math.cos(th);
  };
  return { uniform, normal };
}

function normals(n: number, std: number, rng: ReturnType<typeof makeRng>): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = std * rng.normal();
  return out;
}

/** Seeded Gaussian x (rows x d) and uniform labels in [0, C). */
export function makeData(rows: number, d: number, C: number, seed: number) {
  const rng = makeRng(seed);
  const x = normals(rows * d, 1, rng);
  const y = new Int32Array(rows);
  for (let i = 0; i < rows; i++) y[i] = Math.min(C - 1, Math.floor(rng.uniform() * C));
  return { x, y };
}

/** Linearly separable data: y = argmax(x V) for a random V (for the loss-decreases check). */
function makeSeparable(rows: number, d: number, C: number, seed: number) {
  const rng = makeRng(seed);
  const x = normals(rows * d, 1, rng);
  const v = normals(d * C, 1, rng);
  const y = new Int32Array(rows);
  for (let i = 0; i < rows; i++) {
    let best = -Infinity;
    for (let c = 0; c < C; c++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += x[i * d + j] * v[j * C + c];
      if (s > best) { best = s; y[i] = c; }
    }
  }
  return { x, y };
}

// ---------------------------------------------------------------------------------------------
// model

interface Expert {
  w1: tf.Variable; // d x h
  b1: tf.Variable; // h
  w2: tf.Variable; // h x C
  b2: tf.Variable; // C
}

/** Routing of one batch, built on the host from tf.topk's result. */
interface Route {
  /** rows of each expert, ascending (views into one array ordered expert by expert) */
  rows: Int32Array[];
  /** every selected (row, expert) pair in the same expert-major order */
  rowsAll: Int32Array;
  /** flat slot row * K + expert of each pair, same order */
  slot: Int32Array;
  /** B x K gate factor: top2 the 0/1 mask of S, top1 mask / r_k* (the stop-gradient copy) */
  gate: Float32Array;
}

function buildRoute(indices: Int32Array, values: Float32Array, B: number, K: number, k: number, mode: MoEMode): Route {
  const counts = new Int32Array(K);
  for (let i = 0; i < B * k; i++) counts[indices[i]]++;
  const start = new Int32Array(K + 1);
  for (let e = 0; e < K; e++) start[e + 1] = start[e] + counts[e];
  const fill = start.slice(0, K);
  const rowsAll = new Int32Array(B * k);
  const slot = new Int32Array(B * k);
  const gate = new Float32Array(B * K);
  for (let i = 0; i < B; i++) {
    for (let s = 0; s < k; s++) {
      const e = indices[i * k + s];
      const j = fill[e]++;
      rowsAll[j] = i;
      slot[j] = i * K + e;
      gate[i * K + e] = mode === 'top1' ? 1 / values[i * k + s] : 1;
    }
  }
  const rows: Int32Array[] = [];
  for (let e = 0; e < K; e++) rows.push(rowsAll.subarray(start[e], start[e + 1]));
  return { rows, rowsAll, slot, gate };
}

/**
 * out[slot[j]] = values[j] (slots distinct; unset rows are 0), differentiable in `values`:
 * tf.scatterND forward, tf.gather backward (see the file comment for why not tf.gather's own
 * gradient or tf.unsortedSegmentSum).
 */
function scatterRows(values: tf.Tensor2D, slot: tf.Tensor1D, n: number): tf.Tensor2D {
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    (args[1] as tf.GradSaveFunc)([slot]); // kept for the backward pass (the forward is tidied)
    return {
      value: tf.scatterND(tf.reshape(slot, [-1, 1]), args[0] as tf.Tensor2D, [n, values.shape[1]]),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.gather(dy, saved[0] as tf.Tensor1D),
    };
  });
  return op(values) as tf.Tensor2D;
}

/**
 * Rows of a host matrix (rows x d) as a tensor: the tuned variant's replacement for tf.gather of
 * the input rows. The GatherV2 kernels copy element by element (measured here on WASM: gathering
 * 2048 rows x 128 took ~3x as long as a 2048x128x128 matMul); a typed-array copy per row is far
 * cheaper. x needs no gradient, so nothing is lost.
 */
function gatherRowsHost(src: Float32Array, d: number, rows: Int32Array): tf.Tensor2D {
  const out = new Float32Array(rows.length * d);
  for (let j = 0; j < rows.length; j++) out.set(src.subarray(rows[j] * d, rows[j] * d + d), j * d);
  return tf.tensor2d(out, [rows.length, d]);
}

export class TfMoE {
  readonly wr: tf.Variable;
  readonly br: tf.Variable;
  readonly experts: Expert[] = [];
  /**
   * Dense layers as tf.fused.matMul (what tfjs-layers' Dense does; the default) or as plain
   * matMul + add + relu (so that useUntransposedMatMulGrad's gradient applies to every product).
   */
  fused = true;

  constructor(readonly shape: MoEShape, seed: number) {
    const { d, h, C, K } = shape;
    const rng = makeRng(seed);
    const v = (n: number, dims: number[]) => tf.variable(tf.tensor(normals(n, INIT_STD, rng), dims));
    this.wr = v(d * K, [d, K]);
    this.br = v(K, [K]);
    for (let e = 0; e < K; e++) this.experts.push({ w1: v(d * h, [d, h]), b1: v(h, [h]), w2: v(h * C, [h, C]), b2: v(C, [C]) });
  }

  variables(): tf.Variable[] {
    return [this.wr, this.br, ...this.experts.flatMap((e) => [e.w1, e.b1, e.w2, e.b2])];
  }

  dispose(): void {
    for (const v of this.variables()) v.dispose();
  }

  private dense(x: tf.Tensor2D, w: tf.Tensor, b: tf.Tensor, relu: boolean): tf.Tensor2D {
    if (this.fused) return tf.fused.matMul({ a: x, b: w as tf.Tensor2D, bias: b, activation: relu ? 'relu' : 'linear' }) as tf.Tensor2D;
    const z = tf.add(tf.matMul(x, w as tf.Tensor2D), b) as tf.Tensor2D;
    return relu ? (tf.relu(z) as tf.Tensor2D) : z;
  }

  router(x: tf.Tensor2D): tf.Tensor2D {
    return tf.softmax(this.dense(x, this.wr, this.br, false)) as tf.Tensor2D;
  }

  /** p_e = softmax(relu(x W1 + b1) W2 + b2). */
  expert(e: number, x: tf.Tensor2D): tf.Tensor2D {
    const { w1, b1, w2, b2 } = this.experts[e];
    return tf.softmax(this.dense(this.dense(x, w1, b1, true), w2, b2, false)) as tf.Tensor2D;
  }

  /** Routing of x (values read back: the per-expert row lists are data-dependent shapes). */
  route(r: tf.Tensor2D, mode: 'top2' | 'top1'): Route {
    const k = mode === 'top2' ? 2 : 1;
    const [B, K] = r.shape;
    const { values, indices } = tf.topk(r, k);
    const route = buildRoute(indices.dataSync() as Int32Array, values.dataSync() as Float32Array, B, K, k, mode);
    values.dispose();
    indices.dispose();
    return route;
  }

  /**
   * Mixture probabilities (B x C). `train`: the combine is differentiable (the top1 gate is
   * r / stopgrad(r)); otherwise top1 is exactly p_k* (hard routing for eval). `xHost`: x's values
   * in a host array, to build each expert's rows on the host instead of with tf.gather (tuned).
   */
  forward(x: tf.Tensor2D, mode: MoEMode, train: boolean, xHost?: Float32Array): tf.Tensor2D {
    const { C, K } = this.shape;
    const B = x.shape[0];
    const r = this.router(x);
    if (mode === 'soft') {
      const rk = tf.split(r, K, 1);
      return tf.addN(rk.map((g, e) => tf.mul(g, this.expert(e, x)))) as tf.Tensor2D;
    }
    const route = this.route(r, mode);
    const outs: tf.Tensor2D[] = [];
    for (let e = 0; e < K; e++) {
      if (route.rows[e].length === 0) continue;
      const xe = xHost ? gatherRowsHost(xHost, this.shape.d, route.rows[e]) : tf.gather(x, tf.tensor1d(route.rows[e], 'int32'));
      outs.push(this.expert(e, xe));
    }
    const P = outs.length === 1 ? outs[0] : (tf.concat(outs, 0) as tf.Tensor2D); // (B k) x C, expert-major
    if (!train && mode === 'top1') {
      return tf.scatterND(tf.tensor2d(route.rowsAll, [B, 1], 'int32'), P, [B, C]) as tf.Tensor2D;
    }
    const slot = tf.tensor1d(route.slot, 'int32');
    const E = tf.reshape(
      train ? scatterRows(P, slot, B * K) : tf.scatterND(tf.reshape(slot, [-1, 1]), P, [B * K, C]),
      [B, K, C],
    );
    const mask = tf.tensor2d(route.gate, [B, K]);
    let G: tf.Tensor2D;
    if (mode === 'top2') {
      const rs = tf.mul(r, mask);
      G = tf.div(rs, tf.sum(rs, 1, true)) as tf.Tensor2D; // r~, the router gradient flows through it
    } else {
      G = tf.mul(r, mask) as tf.Tensor2D; // r_k* / stopgrad(r_k*) at k*, 0 elsewhere
    }
    return tf.sum(tf.mul(E, tf.expandDims(G, 2)), 1) as tf.Tensor2D;
  }

  /** Dense reference: every expert on every row, combined with the same gates (for the checks). */
  forwardDense(x: tf.Tensor2D, mode: MoEMode): tf.Tensor2D {
    const { K } = this.shape;
    const B = x.shape[0];
    const r = this.router(x);
    let G: tf.Tensor2D = r;
    if (mode !== 'soft') {
      const mask = tf.tensor2d(this.route(r, mode).gate, [B, K]);
      const rs = tf.mul(r, mask) as tf.Tensor2D;
      G = mode === 'top2' ? (tf.div(rs, tf.sum(rs, 1, true)) as tf.Tensor2D) : rs;
    }
    const gk = tf.split(G, K, 1);
    return tf.addN(gk.map((g, e) => tf.mul(g, this.expert(e, x)))) as tf.Tensor2D;
  }
}

/**
 * The WASM backend's BatchMatMul takes its XNNPACK path only when neither operand is transposed
 * (measured here: ~15 GFLOP/s for x W, ~1 GFLOP/s for dy W^T and x^T dy), and TF.js's matMul
 * gradient multiplies by transposed operands. This registers a gradient that transposes
 * explicitly (tf.transpose, fast) and then multiplies untransposed; the values are the same.
 * Returns a function that restores the stock gradient. Used only for the 'tfjs-wasm-tuned' rows.
 */
export function useUntransposedMatMulGrad(): () => void {
  const stock = tf.getGradient('BatchMatMul');
  if (!stock) throw new Error('BatchMatMul gradient not registered');
  tf.registerGradient({
    kernelName: 'BatchMatMul',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, saved, attrs) => {
      const [a, b] = saved;
      const { transposeA, transposeB } = attrs as unknown as { transposeA: boolean; transposeB: boolean };
      if (transposeA || transposeB || a.rank !== 2 || b.rank !== 2) return stock.gradFunc(dy, saved, attrs);
      const g = dy as tf.Tensor2D;
      return { a: () => tf.matMul(g, tf.transpose(b as tf.Tensor2D)), b: () => tf.matMul(tf.transpose(a as tf.Tensor2D), g) };
    },
  });
  return () => tf.registerGradient(stock);
}

/** Per-example loss l_i = -log max(p_i[y_i], 1e-12). */
function perExampleLoss(p: tf.Tensor2D, yOneHot: tf.Tensor2D): tf.Tensor1D {
  return tf.neg(tf.log(tf.maximum(tf.sum(tf.mul(p, yOneHot), 1), 1e-12))) as tf.Tensor1D;
}

/** Tilted objective with w = softmax(eta l) held constant: w comes from a copy of l's values. */
function tiltedLoss(l: tf.Tensor1D, eta: number): tf.Scalar {
  const w = tf.softmax(tf.mul(tf.tensor1d(l.dataSync() as Float32Array), eta));
  return tf.sum(tf.mul(w, l)) as tf.Scalar;
}

/** One SGD step of the tilted objective; returns the objective's value. */
function trainStep(model: TfMoE, opt: tf.Optimizer, x: tf.Tensor2D, yOneHot: tf.Tensor2D, mode: MoEMode, forward = (xx: tf.Tensor2D) => model.forward(xx, mode, true)): number {
  // (`forward` defaults to the idiomatic path; the tuned variant passes one that gathers on the host)
  return tf.tidy(() => {
    const cost = opt.minimize(() => tiltedLoss(perExampleLoss(forward(x), yOneHot), ETA), true, model.variables());
    return cost!.dataSync()[0];
  });
}

// ---------------------------------------------------------------------------------------------
// self-checks (small sizes, every backend)

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/**
 * 1. sparse forward == dense-masked reference, for values and for every gradient (this checks the
 *    routing plan and the scatter's custom gradient); top1's eval value == the chosen expert's p;
 * 2. the tilted objective decreases over a few SGD steps on separable data, in every mode.
 */
export function selfCheck(): void {
  const shape: MoEShape = { d: 12, h: 16, C: 5, K: 4 };
  const B = 37;
  const { x: xd, y: yd } = makeData(B, shape.d, shape.C, 7);
  const x = tf.tensor2d(xd, [B, shape.d]);
  const y1 = tf.oneHot(tf.tensor1d(yd, 'int32'), shape.C) as tf.Tensor2D;
  const model = new TfMoE(shape, 11);
  for (const mode of MOE_MODES) {
    tf.tidy(() => {
      const vars = model.variables();
      const f = (fwd: () => tf.Tensor2D) => tf.variableGrads(() => tiltedLoss(perExampleLoss(fwd(), y1), ETA), vars);
      const a = f(() => model.forward(x, mode, true));
      const b = f(() => model.forwardDense(x, mode));
      const c = f(() => model.forward(x, mode, true, xd)); // rows gathered on the host (tuned)
      const dv = Math.max(Math.abs(a.value.dataSync()[0] - b.value.dataSync()[0]), Math.abs(a.value.dataSync()[0] - c.value.dataSync()[0]));
      let dg = 0;
      for (const v of vars) dg = Math.max(dg, maxAbsDiff(a.grads[v.name].dataSync(), b.grads[v.name].dataSync()), maxAbsDiff(a.grads[v.name].dataSync(), c.grads[v.name].dataSync()));
      if (!(dv < 1e-5 && dg < 1e-5)) throw new Error(`tfjs-moe self-check (${tf.getBackend()}, ${mode}): sparse vs dense objective differs by ${dv}, gradients by ${dg}`);
    });
  }
  tf.tidy(() => {
    // top1 eval: p must be exactly the chosen expert's probabilities
    const p = model.forward(x, 'top1', false).dataSync();
    const r = model.router(x).arraySync();
    const all = model.experts.map((_, e) => model.expert(e, x).dataSync());
    let diff = 0;
    for (let i = 0; i < B; i++) {
      let ks = 0;
      for (let e = 1; e < shape.K; e++) if (r[i][e] > r[i][ks]) ks = e;
      for (let c = 0; c < shape.C; c++) diff = Math.max(diff, Math.abs(p[i * shape.C + c] - all[ks][i * shape.C + c]));
    }
    if (!(diff < 1e-6)) throw new Error(`tfjs-moe self-check (${tf.getBackend()}, top1): p differs from the chosen expert's probabilities by ${diff}`);
  });
  model.dispose();
  x.dispose();
  y1.dispose();

  const sep = makeSeparable(128, shape.d, shape.C, 3);
  const xs = tf.tensor2d(sep.x, [128, shape.d]);
  const ys = tf.oneHot(tf.tensor1d(sep.y, 'int32'), shape.C) as tf.Tensor2D;
  for (const mode of MOE_MODES) {
    const m = new TfMoE(shape, 5);
    const opt = tf.train.sgd(2);
    const first = trainStep(m, opt, xs, ys, mode);
    let last = first;
    for (let s = 0; s < 40; s++) last = trainStep(m, opt, xs, ys, mode);
    opt.dispose();
    m.dispose();
    if (!(last < 0.7 * first)) throw new Error(`tfjs-moe self-check (${tf.getBackend()}, ${mode}): objective ${first.toFixed(4)} -> ${last.toFixed(4)} after 40 steps on separable data`);
  }
  xs.dispose();
  ys.dispose();
}

// ---------------------------------------------------------------------------------------------
// W1: train step

async function backendsFor(opts: { backends?: string[] }): Promise<string[]> {
  const have = await tfBackends();
  if (!opts.backends) return have;
  for (const b of opts.backends) if (!have.includes(b)) note(`TensorFlow.js backend '${b}' unavailable; skipped`);
  return opts.backends.filter((b) => have.includes(b));
}

export async function runTfjsW1(opts: TfjsW1Options): Promise<void> {
  const B = opts.batch;
  const shape = W1_SHAPE;
  const modes = opts.modes ?? MOE_MODES;
  note(`W1 (TensorFlow.js): train step, B=${B} d=${shape.d} h=${shape.h} C=${shape.C} K=${shape.K}, tilted eta=${ETA}, SGD; best of ${opts.repeat} after 2 warm-up steps`);
  const missing = await ensureGradients();
  if (missing) {
    note(`  skipped: ${missing}`);
    return;
  }
  const { x: xd, y: yd } = makeData(B, shape.d, shape.C, 1);
  for (const backend of await backendsFor(opts)) {
    await tf.setBackend(backend);
    if (opts.check ?? true) {
      selfCheck();
      note(`  tfjs-${backend}: self-check passed (sparse == dense and host-gathered values and gradients; top1 == chosen expert; objective decreases)`);
    }
    const x = tf.tensor2d(xd, [B, shape.d]);
    const y1 = tf.oneHot(tf.tensor1d(yd, 'int32'), shape.C) as tf.Tensor2D;
    // the idiomatic code; on WASM also with the untransposed matMul gradient ('tfjs-wasm-tuned')
    const variants = [{ system: `tfjs-${backend}`, tuned: false }];
    if (backend === 'wasm' && (opts.tuned ?? true)) variants.push({ system: 'tfjs-wasm-tuned', tuned: true });
    for (const { system, tuned } of variants) {
      const restore = tuned ? useTunedGradChecked() : undefined;
      try {
        for (const mode of modes) {
          const model = new TfMoE(shape, 2);
          model.fused = !tuned;
          const opt = tf.train.sgd(LR);
          const fwd = tuned ? (xx: tf.Tensor2D) => model.forward(xx, mode, true, xd) : undefined;
          let cost = trainStep(model, opt, x, y1, mode, fwd); // warm-up (bestTime adds a second one)
          const before = tf.memory().numTensors;
          const t = await bestTime(opts.repeat, () => { cost = trainStep(model, opt, x, y1, mode, fwd); });
          const leaked = tf.memory().numTensors - before;
          opt.dispose();
          model.dispose();
          emit({ system, workload: 'w1', mode, metric: 'throughput', value: B / t, unit: 'examples/s', device: 'cpu', threads: 1 });
          note(`  ${system} ${mode}: ${(B / t).toFixed(0)} examples/s (${(t * 1e3).toFixed(1)} ms/step, objective ${cost.toFixed(4)}${leaked ? `, ${leaked} tensors leaked` : ''})`);
        }
      } finally {
        restore?.();
      }
    }
    x.dispose();
    y1.dispose();
  }
}

/** Registers the untransposed matMul gradient after checking it gives the stock gradients. */
function useTunedGradChecked(): () => void {
  const shape: MoEShape = { d: 12, h: 16, C: 5, K: 4 };
  const B = 29;
  const { x: xd, y: yd } = makeData(B, shape.d, shape.C, 9);
  const x = tf.tensor2d(xd, [B, shape.d]);
  const y1 = tf.oneHot(tf.tensor1d(yd, 'int32'), shape.C) as tf.Tensor2D;
  const model = new TfMoE(shape, 13);
  model.fused = false;
  const vars = model.variables();
  const grads = () => tf.variableGrads(() => tiltedLoss(perExampleLoss(model.forward(x, 'top2', true), y1), ETA), vars).grads;
  const stock = grads();
  const restore = useUntransposedMatMulGrad();
  const tuned = grads();
  let diff = 0;
  for (const v of vars) diff = Math.max(diff, maxAbsDiff(stock[v.name].dataSync(), tuned[v.name].dataSync()));
  for (const g of [...Object.values(stock), ...Object.values(tuned)]) g.dispose();
  model.dispose();
  x.dispose();
  y1.dispose();
  if (!(diff < 1e-6)) {
    restore();
    throw new Error(`tfjs-moe self-check (${tf.getBackend()}): untransposed matMul gradient differs from the stock one by ${diff}`);
  }
  return restore;
}

// ---------------------------------------------------------------------------------------------
// W2: eval + ECE

/**
 * Per-bin sums [count, sum conf, sum correct] of one chunk's predictions (15 right-closed bins,
 * bin = clamp(ceil(c*15) - 1, 0, 14), c*15 in float32: TF.js has no float64), as in bench/w3-ece.ts:
 * oneHot(bin)^T x [1, conf, correct] (unsortedSegmentSum has no WASM kernel).
 */
function binSums(p: tf.Tensor2D, y: tf.Tensor1D): tf.Tensor2D {
  const c = tf.max(p, 1) as tf.Tensor1D;
  const correct = tf.cast(tf.equal(tf.argMax(p, 1), y), 'float32') as tf.Tensor1D;
  const b = tf.cast(tf.clipByValue(tf.sub(tf.ceil(tf.mul(c, BINS)), 1), 0, BINS - 1), 'int32') as tf.Tensor1D;
  const v = tf.stack([tf.onesLike(c), c, correct], 1) as tf.Tensor2D;
  return tf.matMul(tf.oneHot(b, BINS), v, true, false);
}

function eceFromSums(s: number[][], rows: number): number {
  let ece = 0;
  for (let b = 0; b < BINS; b++) ece += Math.abs(s[b][2] - s[b][1]) / rows;
  return ece;
}

interface EvalChunk {
  x: tf.Tensor2D;
  y: tf.Tensor1D;
  /** the same rows on the host (the tuned variant gathers expert rows from it) */
  xHost: Float32Array;
}

/** Forward over every chunk + ECE; returns the ECE. */
function evalEce(model: TfMoE, chunks: EvalChunk[], rows: number, mode: MoEMode, tuned: boolean): number {
  const sums = tf.tidy(() => {
    let acc = tf.zeros([BINS, 3]) as tf.Tensor2D;
    for (const { x, y, xHost } of chunks) {
      acc = tf.tidy(() => tf.add(acc, binSums(model.forward(x, mode, false, tuned ? xHost : undefined), y)));
    }
    return acc;
  });
  const s = sums.arraySync();
  sums.dispose();
  return eceFromSums(s, rows);
}

export async function runTfjsW2(opts: TfjsW2Options): Promise<void> {
  const rows = opts.rows;
  const chunk = Math.min(opts.chunk ?? 8192, rows);
  const shape = W1_SHAPE;
  const modes = opts.modes ?? MOE_MODES;
  note(`W2 (TensorFlow.js): eval forward + ECE over ${rows} rows (d=${shape.d} h=${shape.h} C=${shape.C} K=${shape.K}), chunks of ${chunk}, best of ${opts.repeat} passes (fewer past ${W2_BUDGET_S} s)`);
  const { x: xd, y: yd } = makeData(rows, shape.d, shape.C, 3);
  for (const backend of await backendsFor(opts)) {
    await tf.setBackend(backend);
    const model = new TfMoE(shape, 4);
    const chunks: EvalChunk[] = [];
    for (let b = 0; b < rows; b += chunk) {
      const n = Math.min(chunk, rows - b);
      const xHost = xd.subarray(b * shape.d, (b + n) * shape.d);
      chunks.push({ x: tf.tensor2d(xHost, [n, shape.d]), y: tf.tensor1d(yd.subarray(b, b + n), 'int32'), xHost });
    }
    if (opts.check ?? true) {
      // the TF.js ECE equals the plain loop's on the same predictions (first chunk); the host
      // gather gives the same predictions as tf.gather
      for (const mode of modes) {
        const { x, y, xHost } = chunks[0];
        const n = x.shape[0];
        const p = tf.tidy(() => model.forward(x, mode, false));
        const pd = p.dataSync() as Float32Array;
        const ph = tf.tidy(() => model.forward(x, mode, false, xHost).dataSync()) as Float32Array;
        const ref = eceLoop(pd, yd.subarray(0, n), n, shape.C, BINS);
        const s = tf.tidy(() => binSums(p, y));
        const got = eceFromSums(s.arraySync(), n);
        p.dispose();
        s.dispose();
        if (!(Math.abs(got - ref) < 1e-4)) throw new Error(`tfjs-moe W2 self-check (${backend}, ${mode}): ECE ${got} vs loop ${ref}`);
        if (maxAbsDiff(pd, ph) !== 0) throw new Error(`tfjs-moe W2 self-check (${backend}, ${mode}): host-gathered rows give different predictions`);
      }
      note(`  tfjs-${backend}: W2 self-check passed (ECE == plain loop; host gather == tf.gather)`);
    }
    const variants = [{ system: `tfjs-${backend}`, tuned: false }];
    if (backend === 'wasm' && (opts.tuned ?? true)) variants.push({ system: 'tfjs-wasm-tuned', tuned: true });
    for (const { system, tuned } of variants) {
      for (const mode of modes) {
        if (tuned && mode === 'soft') continue; // no gather in soft: the same code as untuned
        // warm-up on one chunk, then full passes: best of `repeat`, fewer when passes are slow
        tf.tidy(() => binSums(model.forward(chunks[0].x, mode, false, tuned ? chunks[0].xHost : undefined), chunks[0].y).dataSync());
        let ece = 0, t = Infinity, passes = 0;
        const start = process.hrtime.bigint();
        do {
          const t0 = process.hrtime.bigint();
          ece = evalEce(model, chunks, rows, mode, tuned);
          t = Math.min(t, Number(process.hrtime.bigint() - t0) / 1e9);
          passes++;
        } while (passes < opts.repeat && Number(process.hrtime.bigint() - start) / 1e9 < W2_BUDGET_S);
        emit({ system, workload: 'w2', mode, metric: 'throughput', value: rows / t, unit: 'rows/s', device: 'cpu', threads: 1 });
        note(`  ${system} ${mode}: ${(rows / t).toFixed(0)} rows/s (${(t * 1e3).toFixed(0)} ms, best of ${passes}, ece ${ece.toFixed(6)})`);
      }
    }
    for (const c of chunks) { c.x.dispose(); c.y.dispose(); }
    model.dispose();
  }
}
