/**
 * calmoe demo: calibration metrics on generated classifier outputs.
 *   npm run demo
 * Generates an over-confident 10-class classifier's probabilities, measures its calibration
 * (ECE, MCE, reliability bins, NLL, Brier), shows the streaming accumulator and the tilted loss
 * weights of robust training. Everything runs on the native backend (CUDA when a GPU is usable).
 */
import { backendInfo, losses, matrix, metrics } from 'calmoe';

const rows = 200_000, classes = 10;

// Outputs of a classifier that is calibrated by construction: each label is drawn from the
// probabilities it reports. Sharpening the reported probabilities (logits x temperature > 1)
// keeps the accuracy and makes it over-confident.
function outputs(seed: number, temperature: number) {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 4294967296;
  const probs = new Float32Array(rows * classes);
  const labels = new Int32Array(rows);
  const z = new Float64Array(classes), p = new Float64Array(classes);
  const softmax = (scale: number) => {
    const mx = Math.max(...z);
    let sum = 0;
    for (let j = 0; j < classes; j++) sum += p[j] = Math.exp((z[j] - mx) * scale);
    for (let j = 0; j < classes; j++) p[j] /= sum;
  };
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < classes; j++) z[j] = 1.5 * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
    softmax(1);
    let r = u(), y = classes - 1;
    for (let j = 0; j < classes; j++) if ((r -= p[j]) < 0) { y = j; break; }
    labels[i] = y;
    softmax(temperature);
    for (let j = 0; j < classes; j++) probs[i * classes + j] = p[j];
  }
  return { probs: matrix(probs, rows, classes), labels };
}

function bar(x: number, width = 30): string {
  return '#'.repeat(Math.round(Math.max(0, Math.min(1, x)) * width)).padEnd(width, '.');
}

const info = backendInfo();
console.log(`calmoe backends: cpu (${info.cpuThreads} threads, ${info.simd})` +
  (info.gpus.length ? `, cuda (${info.gpus[0].name})` : `; no GPU: ${info.cudaUnavailableReason}`));

for (const [name, temperature] of [['calibrated', 1.0], ['over-confident', 2.5]] as const) {
  const { probs, labels } = outputs(7, temperature);
  const t0 = performance.now();
  const r = await metrics.calibration(probs, labels, { bins: 15 });
  const ms = performance.now() - t0;
  console.log(`\n${name} classifier, ${rows} rows x ${classes} classes (${ms.toFixed(1)} ms):`);
  console.log(`  accuracy ${r.accuracy.toFixed(4)}  ECE ${r.ece.toFixed(4)}  MCE ${r.mce.toFixed(4)}  RMSCE ${r.rmsce.toFixed(4)}  NLL ${r.nll.toFixed(4)}  Brier ${r.brier.toFixed(4)}`);
  console.log('  reliability (bin: accuracy vs confidence, rows):');
  for (let b = 0; b < r.bins.count.length; b++) {
    if (!r.bins.count[b]) continue;
    console.log(`   (${r.bins.lower[b].toFixed(2)}, ${r.bins.upper[b].toFixed(2)}]  acc ${bar(r.bins.accuracy[b])} ${r.bins.accuracy[b].toFixed(3)}  conf ${r.bins.meanConfidence[b].toFixed(3)}  n=${r.bins.count[b]}`);
  }
  const adaptive = await metrics.calibration(probs, labels, { bins: 15, binning: 'equal-mass' });
  const left = await metrics.calibration(probs, labels, { bins: 15, edges: 'left-closed' });
  const cw = await metrics.classwiseCalibration(probs, labels, { bins: 15 });
  console.log(`  equal-mass ECE ${adaptive.ece.toFixed(4)}  left-closed ECE ${left.ece.toFixed(4)}  classwise ECE ${cw.ece.toFixed(4)}`);
}

// Streaming: four "workers" each accumulate a shard; merging gives exactly the one-shot result.
const { probs, labels } = outputs(11, 2.5);
const shards = 4, per = rows / shards;
const parts = await Promise.all(Array.from({ length: shards }, async (_, k) => {
  const acc = new metrics.CalibrationAccumulator({ bins: 15 });
  await acc.update(matrix(probs.data.subarray(k * per * classes, (k + 1) * per * classes), per, classes), labels.subarray(k * per, (k + 1) * per));
  return acc;
}));
const merged = parts.reduce((a, b) => a.merge(b)).result();
const oneShot = await metrics.calibration(probs, labels, { bins: 15 });
console.log(`\nstreaming: ${shards} merged shards ECE ${merged.ece} vs one shot ${oneShot.ece} (identical: ${merged.ece === oneShot.ece})`);

// Robust training's tilted weights on a minibatch of per-example losses.
const batch = new Float32Array(128);
for (let i = 0; i < batch.length; i++) batch[i] = -Math.log(Math.max(1e-12, probs.data[i * classes + labels[i]]));
for (const eta of [0, 0.5, 2]) {
  const t = losses.tiltedWeightsSync(batch, eta);
  console.log(`tilted weights eta=${eta}: robust loss ${t.robustLoss.toFixed(4)} (mean ${t.meanLoss.toFixed(4)}), max weight ${t.maxWeight.toFixed(4)}, effective rows ${t.effectiveRows.toFixed(1)} of ${batch.length}`);
}
