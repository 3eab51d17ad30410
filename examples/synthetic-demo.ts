/**
 * A demo on generated data: train Mixture-of-Experts classifiers from TypeScript and watch their
 * calibration under a distribution shift.
 *   npm run demo:synthetic [-- path/to/report.html]
 *
 * Data: rows come from K regions of the input space; each region has its own labelling rule and
 * its own label noise, and neighbouring regions overlap, so the router is unsure near the
 * borders. The shift changes how often each region occurs -- how often rows reach each expert --
 * the setting of "Toward Calibrated Mixture-of-Experts Under Distribution Shift".
 *
 * Models: soft routing, hard routing (ERM), and hard routing trained with the tilted (robust)
 * objective; then each is calibrated on held-out data as its routing needs (`calibrate`: hard, the
 * experts' temperatures; soft, those and then the mixture's; reverted when the NLL gets worse).
 * The printout and the HTML report show accuracy and ECE in distribution and after the shift. The numbers are whatever this run measures on this generated data: an illustration of
 * the API and of the question, not evidence for or against the paper.
 */
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { MoEClassifier, backendInfo, matrix, report, type Evaluation, type Matrix } from 'calmoe';

const K = 4, d = 8, C = 3;
const noise = [0.02, 0.08, 0.18, 0.3];  // label noise per region
const trainMix = [0.4, 0.3, 0.2, 0.1], shiftMix = [0.1, 0.2, 0.3, 0.4];

function generator(seed: number) {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 4294967296;
  return { u, normal: () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()) };
}

const rules = (() => {
  const g = generator(7);
  return [...Array(K)].map(() => [...Array(C)].map(() => [...Array(d)].map(() => g.normal())));
})();

function sample(seed: number, n: number, mix: number[]): { x: Matrix; y: Int32Array } {
  const g = generator(seed);
  const x = new Float32Array(n * d), y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let u = g.u(), k = 0;
    while (k < K - 1 && u > mix[k]) u -= mix[k++];
    for (let j = 0; j < d; j++) x[i * d + j] = (j === k ? 2.5 : 0) + g.normal();  // overlapping regions
    let best = 0, bv = -Infinity;
    for (let c = 0; c < C; c++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += rules[k][c][j] * x[i * d + j];
      if (s > bv) { bv = s; best = c; }
    }
    y[i] = g.u() < noise[k] ? Math.floor(g.u() * C) : best;
  }
  return { x: matrix(x, n, d), y };
}

const train = sample(1, 24000, trainMix), valid = sample(2, 6000, trainMix);
const inDist = sample(3, 20000, trainMix), shifted = sample(4, 20000, shiftMix);

const info = backendInfo();
console.log(`calmoe: cpu (${info.cpuThreads} threads, ${info.simd})${info.gpus.length ? `, GPU ${info.gpus[0].name}` : ''}`);
console.log(`data: ${train.x.rows} training rows, d = ${d}, ${C} classes, ${K} regions; shift: region mix ${trainMix.join('/')} -> ${shiftMix.join('/')}\n`);

interface Row { name: string; id: Evaluation; shift: Evaluation }
const rows: Row[] = [];
const variants = [
  { name: 'soft, ERM', routing: 'soft', objective: undefined },
  { name: 'hard, ERM', routing: 'hard', objective: undefined },
  { name: 'hard, robust (tilted, eta 1)', routing: 'hard', objective: { type: 'robust', eta: 1, warmupEpochs: 4 } },
] as const;

for (const v of variants) {
  const model = new MoEClassifier({ inputDim: d, classes: C, experts: K, expertHidden: [32], routing: v.routing, seed: 3 });
  const t0 = performance.now();
  const history = await model.fit(train.x, train.y, {
    epochs: 12, batchSize: 128, optimizer: { type: 'adamw', lr: 3e-3 }, schedule: { type: 'cosine' },
    objective: v.objective, validation: valid, seed: 1,
  });
  const last = history.epochs.at(-1)!;
  console.log(`${v.name}: trained in ${((performance.now() - t0) / 1000).toFixed(1)} s (${Math.round(last.examplesPerSecond).toLocaleString()} rows/s), validation accuracy ${last.valAccuracy.toFixed(3)}, ECE ${last.valEce.toFixed(4)}`);
  rows.push({ name: v.name, id: await model.evaluate(inDist.x, inDist.y), shift: await model.evaluate(shifted.x, shifted.y) });
  const cal = await model.calibrate(valid.x, valid.y);
  console.log(`  calibrate kept ${cal.scope}: per-expert temperatures ${Array.from(model.temperatures, (t) => t.toFixed(2)).join(', ')}` +
    `${v.routing === 'soft' ? `, aggregate ${model.aggregateTemperature.toFixed(2)}` : ''}; validation NLL ${cal.nllBefore.toFixed(4)} -> ${cal.nllAfter.toFixed(4)}`);
  rows.push({ name: `${v.name} + calibrate`, id: await model.evaluate(inDist.x, inDist.y), shift: await model.evaluate(shifted.x, shifted.y) });
}

const f = (v: number) => v.toFixed(4);
console.log(`\n${'model'.padEnd(40)} ${'acc (in dist)'.padStart(13)} ${'acc (shift)'.padStart(11)} ${'ECE (in dist)'.padStart(13)} ${'ECE (shift)'.padStart(11)}`);
for (const r of rows) {
  console.log(`${r.name.padEnd(40)} ${f(r.id.accuracy).padStart(13)} ${f(r.shift.accuracy).padStart(11)} ${f(r.id.ece).padStart(13)} ${f(r.shift.ece).padStart(11)}`);
}

const out = resolve(process.argv[2] ?? join(tmpdir(), 'calmoe-synthetic-demo.html'));
const html = report.htmlReport({
  title: 'calmoe: MoE calibration under a routing shift',
  subtitle: `${train.x.rows} training rows, ${K} experts; region mix ${trainMix.join('/')} -> ${shiftMix.join('/')}`,
  sections: [
    {
      title: 'Accuracy and calibration',
      tables: [{
        columns: ['model', 'accuracy (in dist)', 'accuracy (shift)', 'ECE (in dist)', 'ECE (shift)', 'NLL (shift)'],
        rows: rows.map((r) => [r.name, r.id.accuracy, r.shift.accuracy, r.id.ece, r.shift.ece, r.shift.nll]),
      }],
    },
    ...rows.map((r) => ({
      title: r.name,
      figures: [{ kind: 'reliability' as const, panels: [{ title: 'in distribution', calibration: r.id.calibration }, { title: 'shifted', calibration: r.shift.calibration }] }],
    })),
  ],
  footer: `made by examples/synthetic-demo.ts on ${new Date().toISOString()}`,
});
writeFileSync(out, html);
console.log(`\nreport: ${out}`);
