/**
 * W1 (DESIGN.md): one MoE training step at B = 2048, d = 128, h = 128 (one hidden layer per
 * expert), C = 10, K = 8, linear router; modes soft, top2, top1 (sparse Switch-style: only the
 * chosen expert runs) and hard (calmoe's competitive estimator: every expert runs in training);
 * tilted loss (eta = 0.5, weights held constant), plain SGD; seeded Gaussian x, uniform labels,
 * parameters ~ N(0, 0.05). Measured through the public API (MoEClassifier.fit: shuffling and
 * gathering included), best of `repeat` runs of `steps` steps after a warm-up.
 *
 * FLOPs per step: 3 x the forward GEMM FLOPs of the rows each expert (and the router) processes.
 */
import { MoEClassifier, getThreads, matrix } from 'calmoe';
import { bestTime, emit, nativeBench, note } from './common.js';

export interface W1Options {
  batch: number;
  repeat: number;
  steps?: number;
  dims?: { d: number; h: number; C: number; K: number };
}

export const W1_MODES = ['soft', 'top2', 'top1', 'hard'] as const;

export function modelFor(mode: (typeof W1_MODES)[number], d: number, h: number, C: number, K: number) {
  const routing = mode === 'soft' ? 'soft' : mode === 'hard' ? 'hard' : 'topk';
  return new MoEClassifier({
    inputDim: d, classes: C, experts: K, expertHidden: [h], routing, ...(routing === 'topk' ? { topK: mode === 'top2' ? 2 : 1 } : {}),
    seed: 1, init: { std: 0.05 },
  });
}

export function gaussianData(rows: number, d: number, C: number, seed: number) {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 4294967296;
  const x = new Float32Array(rows * d), y = new Int32Array(rows);
  for (let i = 0; i < rows * d; i += 2) {
    const r = Math.sqrt(-2 * Math.log(u())), t = 2 * Math.PI * u();
    x[i] = r * Math.cos(t);
    if (i + 1 < rows * d) x[i + 1] = r * Math.sin(t);
  }
  for (let i = 0; i < rows; i++) y[i] = Math.floor(u() * C);
  return { x: matrix(x, rows, d), y };
}

export async function runW1(o: W1Options): Promise<Record<string, number>> {
  const { d, h, C, K } = o.dims ?? { d: 128, h: 128, C: 10, K: 8 };
  const B = o.batch, steps = o.steps ?? 10;
  const { x, y } = gaussianData(B * steps, d, C, 42);
  let peak = 0;
  for (const l of nativeBench(['peak'])) {
    if (l.metric === 'fp32_peak') { peak = l.value; emit({ ...l, workload: 'w1' }); }
  }
  const out: Record<string, number> = {};
  note(`W1: train step B=${B} d=${d} h=${h} C=${C} K=${K}, ${steps} steps per run, best of ${o.repeat}${peak ? `; FP32 peak ${peak.toFixed(1)} GFLOP/s` : ''}`);
  for (const mode of W1_MODES) {
    const model = modelFor(mode, d, h, C, K);
    const fit = { epochs: 1, batchSize: B, optimizer: { type: 'sgd' as const, lr: 0.1, weightDecay: 0 }, objective: { type: 'robust' as const, eta: 0.5, gradient: 'term' as const } };
    const t = await bestTime(o.repeat, () => model.fit(x, y, fit));
    const eps = (B * steps) / t;
    const active = mode === 'soft' || mode === 'hard' ? K : mode === 'top2' ? 2 : 1;
    // forward (router 2dK, each active expert 2dh + 2hC) + backward (every dW again, and the
    // delta into an expert's hidden layer, 2hC; none into x, which is data): calmoe_bench's count
    const flopsPerRow = 4 * d * K + active * (4 * d * h + 6 * h * C);
    const gflops = (eps * flopsPerRow) / 1e9;
    out[mode] = eps;
    emit({ system: 'calmoe', workload: 'w1', mode, metric: 'throughput', value: eps, unit: 'examples/s', device: 'cpu' });
    emit({ system: 'calmoe', workload: 'w1', mode, metric: 'gflops', value: gflops, unit: 'GFLOP/s', device: 'cpu' });
    if (peak) emit({ system: 'calmoe', workload: 'w1', mode, metric: 'fraction_of_peak', value: gflops / peak, unit: 'ratio', device: 'cpu' });
    note(`  calmoe ${mode}: ${Math.round(eps).toLocaleString()} examples/s, ${gflops.toFixed(1)} GFLOP/s${peak ? ` (${((100 * gflops) / peak).toFixed(1)}% of peak)` : ''}, ${getThreads()} threads`);
  }
  return out;
}
