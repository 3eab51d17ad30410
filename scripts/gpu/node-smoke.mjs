// Node smoke test of the TypeScript API on 'cuda' (run by scripts/gpu-verify.sh on a GPU machine;
// needs dist/ and an addon built with CUDA, e.g. carried from a build machine). Exit 0: the CUDA
// results match the CPU's (calibration and tilted weights: the same bits; MoE in exact FP32:
// within 1e-5).
import * as calmoe from '../../dist/index.js';

const info = calmoe.backendInfo();
console.log(JSON.stringify(info));
if (info.gpus.length === 0) throw new Error(`no GPU: ${info.cudaUnavailableReason}`);

// calibration: CPU and CUDA give the same report
const n = 100003, C = 10;
const probs = new Float32Array(n * C), y = new Int32Array(n);
let s = 12345;
const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 4294967296);
for (let i = 0; i < n; ++i) {
  let t = 0;
  for (let j = 0; j < C; ++j) t += probs[i * C + j] = rnd() ** 4;
  for (let j = 0; j < C; ++j) probs[i * C + j] /= t;
  y[i] = Math.floor(rnd() * C);
}
const m = calmoe.matrix(probs, n, C);
const a = calmoe.metrics.calibrationSync(m, y, { device: 'cpu' });
const b = calmoe.metrics.calibrationSync(m, y, { device: 'cuda' });
if (a.ece !== b.ece || a.nll !== b.nll) throw new Error(`calibration: cpu ${a.ece} / ${a.nll}, cuda ${b.ece} / ${b.nll}`);
console.log('calibration ok', a.ece);

// tilted weights: the same bits on both backends (one tree of sums, one float64 exp)
const losses = probs.subarray(0, n).map((p) => -Math.log(p + 1e-3));
const tc = calmoe.losses.tiltedWeightsSync(losses, 2, { device: 'cpu', gradient: 'through' });
const tg = calmoe.losses.tiltedWeightsSync(losses, 2, { device: 'cuda', gradient: 'through' });
const sameBits = (u, v) => u.length === v.length && u.every((x, i) => Object.is(x, v[i]));
if (tc.robustLoss !== tg.robustLoss || !sameBits(tc.weights, tg.weights) || !sameBits(tc.coefficients, tg.coefficients)) {
  throw new Error(`tilted: cpu ${tc.robustLoss}, cuda ${tg.robustLoss}; weights ${sameBits(tc.weights, tg.weights) ? 'same' : 'differ'}`);
}
console.log('tilted ok', tc.robustLoss);

// MoE: a short fit on the GPU in exact FP32 from the same start as one on the CPU
const d = 16, rows = 2048;
const x = new Float32Array(rows * d).map(() => rnd() * 2 - 1), labels = new Int32Array(rows).map(() => Math.floor(rnd() * 4));
const opts = { inputDim: d, classes: 4, experts: 4, expertHidden: [32], routing: 'topk', topK: 2, seed: 7, precision: 'fp32' };
const cpu = new calmoe.MoEClassifier(opts), gpu = new calmoe.MoEClassifier(opts);
const fit = { epochs: 2, batchSize: 256, seed: 1, objective: { type: 'robust', eta: 1 } };
const hc = await cpu.fit({ data: x, rows, cols: d }, labels, { ...fit, device: 'cpu' });
const hg = await gpu.fit({ data: x, rows, cols: d }, labels, { ...fit, device: 'cuda' });
const pc = cpu.predictSync({ data: x, rows, cols: d }, { device: 'cpu' }).probs.data;
const pg = gpu.predictSync({ data: x, rows, cols: d }, { device: 'cuda' }).probs.data;
let worst = 0;
for (let i = 0; i < pc.length; ++i) worst = Math.max(worst, Math.abs(pc[i] - pg[i]));
console.log('moe losses cpu', hc.epochs.map((e) => e.loss), 'cuda', hg.epochs.map((e) => e.loss), 'max |p_cpu - p_cuda|', worst);
if (!(worst <= 1e-5)) throw new Error(`moe: predictions differ by ${worst}`);
// the default precision (TF32) runs too
const t = gpu.predictSync({ data: x, rows, cols: d }, { device: 'cuda', precision: 'tf32' }).probs.data;
console.log('moe ok; tf32 max |p_tf32 - p_fp32|', t.reduce((w, v, i) => Math.max(w, Math.abs(v - pg[i])), 0));
