/**
 * W3: ECE over N x C probabilities (default 10,000,000 x 10), one pass: fused argmax + bin +
 * reduce. calmoe (CPU, and CUDA when present), a plain TypeScript loop and TensorFlow.js
 * (CPU and WASM backends) on the same data in the same run, plus the machine's read bandwidth.
 */
import { backendInfo, matrix, metrics } from 'calmoe';
import { bestTime, emit, nativeBench, note } from './common.js';
import { tf, tfBackends } from './tfjs.js';

export interface W3Options {
  rows: number;
  classes: number;
  repeat: number;
}

export function makeData(rows: number, classes: number) {
  // Seeded LCG; probabilities with a realistic spread of confidences.
  let s = 42;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
  const data = new Float32Array(rows * classes);
  const labels = new Int32Array(rows);
  for (let i = 0; i < rows; i++) {
    let sum = 0;
    for (let j = 0; j < classes; j++) sum += data[i * classes + j] = u() * u() + 1e-3;
    for (let j = 0; j < classes; j++) data[i * classes + j] /= sum;
    labels[i] = Math.floor(u() * classes);
  }
  return { data, labels };
}

/** The plain TypeScript loop a user would write (right-closed bins). */
export function eceLoop(p: Float32Array, y: Int32Array, rows: number, classes: number, bins: number): number {
  const count = new Float64Array(bins), conf = new Float64Array(bins), hit = new Float64Array(bins);
  for (let i = 0; i < rows; i++) {
    const o = i * classes;
    let best = p[o], arg = 0;
    for (let j = 1; j < classes; j++) if (p[o + j] > best) { best = p[o + j]; arg = j; }
    const b = Math.min(bins - 1, Math.max(0, Math.ceil(best * bins) - 1));
    count[b]++;
    conf[b] += best;
    if (arg === y[i]) hit[b]++;
  }
  let ece = 0;
  for (let b = 0; b < bins; b++) ece += Math.abs(hit[b] - conf[b]) / rows;
  return ece;
}

/**
 * Idiomatic TensorFlow.js: max / argMax, the bin index, then per-bin sums as
 * oneHot(bin)^T x [1, conf, correct] (unsortedSegmentSum has no WASM kernel), over 1M-row chunks.
 */
function eceTf(chunks: Array<{ p: tf.Tensor2D; y: tf.Tensor1D }>, rows: number, bins: number): number {
  const sums = tf.tidy(() => {
    let acc: tf.Tensor2D = tf.zeros([bins, 3]);
    for (const { p, y } of chunks) {
      const c = tf.max(p, 1) as tf.Tensor1D;
      const correct = tf.cast(tf.equal(tf.argMax(p, 1), y), 'float32') as tf.Tensor1D;
      const b = tf.cast(tf.clipByValue(tf.sub(tf.ceil(tf.mul(c, bins)), 1), 0, bins - 1), 'int32') as tf.Tensor1D;
      const v = tf.stack([tf.onesLike(c), c, correct], 1) as tf.Tensor2D;
      acc = tf.add(acc, tf.matMul(tf.oneHot(b, bins), v, true, false));
    }
    return acc;
  });
  const v = sums.arraySync();
  sums.dispose();
  let ece = 0;
  for (let b = 0; b < bins; b++) ece += Math.abs(v[b][2] - v[b][1]) / rows;
  return ece;
}

export async function runW3(o: W3Options): Promise<void> {
  const { rows, classes, repeat } = o;
  const bins = 15;
  note(`W3: ECE over ${rows} x ${classes} float32 probabilities (${((rows * classes * 4) / 1e9).toFixed(2)} GB), best of ${repeat}`);
  const { data, labels } = makeData(rows, classes);
  const bytes = rows * classes * 4;

  let bw = 0;
  for (const l of nativeBench(['bandwidth', '--repeat', String(repeat)])) {
    emit({ ...l, workload: 'w3' });
    if (l.metric === 'bandwidth') bw = l.value;
  }
  if (bw > 0) emit({ system: 'machine', workload: 'w3', mode: 'memory-read', metric: 'bound_rows_per_s', value: (bw * 1e9) / (classes * 4), unit: 'rows/s', device: 'cpu' });

  const m = matrix(data, rows, classes);
  const devices: Array<'cpu' | 'cuda'> = ['cpu'];
  if (backendInfo().gpus.length > 0 && backendInfo().cudaUnavailableReason === '') devices.push('cuda');
  const results: Record<string, number> = {};
  for (const device of devices) {
    for (const mode of ['ece', 'ece+nll+brier'] as const) {
      let ece = 0;
      const t = await bestTime(repeat, () => {
        ece = mode === 'ece' ? metrics.eceSync(m, labels, { device }) : metrics.calibrationSync(m, labels, { device }).ece;
      });
      results[`calmoe-${device}-${mode}`] = rows / t;
      emit({ system: 'calmoe', workload: 'w3', mode, metric: 'throughput', value: rows / t, unit: 'rows/s', device });
      emit({ system: 'calmoe', workload: 'w3', mode, metric: 'bandwidth', value: bytes / t / 1e9, unit: 'GB/s', device });
      if (device === 'cpu' && bw > 0) emit({ system: 'calmoe', workload: 'w3', mode, metric: 'fraction_of_read_bound', value: bytes / t / 1e9 / bw, unit: 'ratio', device });
      note(`  calmoe ${device} ${mode}: ${(rows / t / 1e6).toFixed(1)} M rows/s (ece ${ece.toFixed(6)})`);
    }
  }
  // async path: the same work off the event loop
  const ta = await bestTime(repeat, () => metrics.ece(m, labels, { device: 'cpu' }));
  emit({ system: 'calmoe', workload: 'w3', mode: 'ece-async', metric: 'throughput', value: rows / ta, unit: 'rows/s', device: 'cpu' });

  let loopEce = 0;
  const tl = await bestTime(Math.min(repeat, 3), () => { loopEce = eceLoop(data, labels, rows, classes, bins); });
  results['ts-loop'] = rows / tl;
  emit({ system: 'typescript-loop', workload: 'w3', mode: 'ece', metric: 'throughput', value: rows / tl, unit: 'rows/s', device: 'cpu', threads: 1 });
  note(`  plain TypeScript loop: ${(rows / tl / 1e6).toFixed(1)} M rows/s (ece ${loopEce.toFixed(6)})`);

  for (const backend of await tfBackends()) {
    await tf.setBackend(backend);
    const chunkRows = 1_000_000;
    const chunks: Array<{ p: tf.Tensor2D; y: tf.Tensor1D }> = [];
    for (let b = 0; b < rows; b += chunkRows) {
      const n = Math.min(chunkRows, rows - b);
      chunks.push({ p: tf.tensor2d(data.subarray(b * classes, (b + n) * classes), [n, classes]), y: tf.tensor1d(Array.from(labels.subarray(b, b + n)), 'int32') });
    }
    let e = 0;
    const tt = await bestTime(Math.min(repeat, 3), () => { e = eceTf(chunks, rows, bins); });
    for (const c of chunks) { c.p.dispose(); c.y.dispose(); }
    results[`tfjs-${backend}`] = rows / tt;
    emit({ system: `tfjs-${backend}`, workload: 'w3', mode: 'ece', metric: 'throughput', value: rows / tt, unit: 'rows/s', device: 'cpu', threads: 1 });
    note(`  TensorFlow.js ${backend}: ${(rows / tt / 1e6).toFixed(1)} M rows/s (ece ${e.toFixed(6)}; tensors built outside the timing)`);
  }
  const ours = results['calmoe-cpu-ece'];
  for (const [k, v] of Object.entries(results)) {
    if (!k.startsWith('calmoe')) emit({ system: 'calmoe', workload: 'w3', mode: 'ece', metric: `speedup_vs_${k}`, value: ours / v, unit: 'ratio', device: 'cpu' });
  }
}
