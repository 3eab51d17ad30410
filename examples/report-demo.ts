/**
 * calmoe report demo: an in-distribution vs shifted evaluation of a Mixture-of-Experts classifier
 * on generated data, with temperature scaling (global and per expert), audits, and a
 * self-contained HTML report.
 *   node dist-tools/examples/report-demo.js [path/to/report.html]
 * Without a path the report goes to the OS temp directory. Everything runs on the native backend
 * (CUDA when a GPU is usable).
 *
 * The generated MoE: rows come from K regions; expert k is accurate on its own region and
 * over-confident everywhere; the router sends a row to its region's expert with some noise. The
 * shift changes how often each region occurs (so how often rows reach each expert), the setting
 * of "Toward Calibrated Mixture-of-Experts Under Distribution Shift"; compare the soft and hard
 * blends' calibration before and after the shift in the printout and the report.
 */
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { audit, calibrate, matrix, metrics, report } from 'calmoe';

const pct = (v: number) => report.formatPercent(v);

const K = 4, C = 5;

function generator(seed: number) {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 4294967296;
  const normal = () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return { u, normal };
}

function softmaxInto(z: ArrayLike<number>, out: Float32Array, offset: number, n: number, scale = 1) {
  let mx = -Infinity;
  for (let j = 0; j < n; j++) mx = Math.max(mx, z[j] * scale);
  let sum = 0;
  const e = new Float64Array(n);
  for (let j = 0; j < n; j++) sum += e[j] = Math.exp(z[j] * scale - mx);
  for (let j = 0; j < n; j++) out[offset + j] = e[j] / sum;
}

/**
 * B rows: regions drawn from `regionWeights`, routing blurred by `routingNoise`. Returns each
 * expert's logits (B x K x C), the routing weights, the labels and each row's region.
 */
function generate(seed: number, B: number, regionWeights: number[], routingNoise: number) {
  const g = generator(seed);
  const logits = new Float32Array(B * K * C), routing = new Float32Array(B * K);
  const labels = new Int32Array(B), region = new Int32Array(B);
  const total = regionWeights.reduce((a, b) => a + b, 0);
  const z = new Float64Array(C), gate = new Float64Array(K);
  for (let i = 0; i < B; i++) {
    let r = g.u() * total, reg = K - 1;
    for (let k = 0; k < K; k++) if ((r -= regionWeights[k]) < 0) { reg = k; break; }
    region[i] = reg;
    // the true class distribution of the row, and its label
    for (let j = 0; j < C; j++) z[j] = 1.4 * g.normal();
    const truth = new Float32Array(C);
    softmaxInto(z, truth, 0, C);
    let v = g.u(), y = C - 1;
    for (let j = 0; j < C; j++) if ((v -= truth[j]) < 0) { y = j; break; }
    labels[i] = y;
    // experts: the truth seen through noise (little on their own region), sharpened 1.8x
    for (let k = 0; k < K; k++) {
      const noise = k === reg ? 0.4 : 1.6;
      for (let j = 0; j < C; j++) logits[(i * K + k) * C + j] = 1.8 * (z[j] + noise * g.normal());
    }
    for (let k = 0; k < K; k++) gate[k] = (k === reg ? 2.5 : 0) + routingNoise * g.normal();
    softmaxInto(gate, routing, i * K, K);
  }
  return { logits, routing, labels, region, rows: B };
}

type Data = ReturnType<typeof generate>;

/** Expert probabilities softmax(z_k / T_k), through the library's temperature scaling. */
function expertProbs(d: Data, temperatures: ArrayLike<number>): Float32Array {
  const out = new Float32Array(d.rows * K * C);
  for (let k = 0; k < K; k++) {
    const slice = new Float32Array(d.rows * C);
    for (let i = 0; i < d.rows; i++) slice.set(d.logits.subarray((i * K + k) * C, (i * K + k + 1) * C), i * C);
    const p = calibrate.applyTemperatureSync(matrix(slice, d.rows, C), temperatures[k]);
    for (let i = 0; i < d.rows; i++) out.set(p.data.subarray(i * C, (i + 1) * C), (i * K + k) * C);
  }
  return out;
}

/** The blend: soft (sum_k r_k p_k) or hard (the top-1 expert's p, routing made one-hot). */
function blend(d: Data, P: Float32Array, mode: 'soft' | 'hard') {
  const mixture = new Float32Array(d.rows * C);
  const routing = mode === 'soft' ? d.routing : new Float32Array(d.rows * K);
  for (let i = 0; i < d.rows; i++) {
    if (mode === 'hard') {
      let top = 0;
      for (let k = 1; k < K; k++) if (d.routing[i * K + k] > d.routing[i * K + top]) top = k;
      routing[i * K + top] = 1;
    }
    for (let j = 0; j < C; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += routing[i * K + k] * P[(i * K + k) * C + j];
      mixture[i * C + j] = s;
    }
  }
  return {
    routing: matrix(routing, d.rows, K),
    expertProbs: audit.expertTensor(P, d.rows, K, C),
    mixture: matrix(mixture, d.rows, C),
    labels: d.labels,
  };
}

const validation = generate(1, 20_000, [1, 1, 1, 1], 0.8);
const inDist = generate(2, 50_000, [1, 1, 1, 1], 0.8);
const shifted = generate(3, 50_000, [0.5, 0.5, 1, 6], 0.8);
const ones = [1, 1, 1, 1];

// Per-expert temperature scaling on the validation set (MoCaE), soft and hard assignment.
const logitsTensor = audit.expertTensor(validation.logits, validation.rows, K, C);
const softT = await calibrate.fitExpertTemperatures(logitsTensor, matrix(validation.routing, validation.rows, K), validation.labels, { mode: 'soft' });
const hardT = await calibrate.fitExpertTemperatures(logitsTensor, matrix(validation.routing, validation.rows, K), validation.labels, { mode: 'hard' });
// A single temperature on the soft blend's probabilities (p^(1/T) renormalised).
const valSoft = blend(validation, expertProbs(validation, ones), 'soft');
const globalT = await calibrate.fitTemperature(valSoft.mixture, validation.labels, { input: 'probabilities' });

console.log('per-expert temperatures (soft):', Array.from(softT.temperatures, (t) => t.toFixed(3)).join(' '));
console.log('per-expert temperatures (hard):', Array.from(hardT.temperatures, (t) => t.toFixed(3)).join(' '));
console.log(`global temperature on the soft blend: ${globalT.temperature.toFixed(3)}  NLL ${globalT.nllBefore.toFixed(4)} -> ${globalT.nllAfter.toFixed(4)}  ECE ${pct(globalT.eceBefore)} -> ${pct(globalT.eceAfter)}`);

const evals: Record<string, metrics.CalibrationReport> = {};
const diagrams: Record<string, metrics.CalibrationReport> = {};
const audits: Record<string, audit.MoEAudit> = {};
const regionNames = Array.from({ length: K }, (_, k) => `region ${k}`);
for (const [setName, d] of [['in-distribution', inDist], ['shifted', shifted]] as const) {
  for (const mode of ['soft', 'hard'] as const) {
    const raw = blend(d, expertProbs(d, ones), mode);
    const temps = mode === 'soft' ? softT.temperatures : hardT.temperatures;
    const cal = blend(d, expertProbs(d, temps), mode);
    evals[`${mode}, ${setName}, raw`] = await metrics.calibration(raw.mixture, d.labels);
    const calibrated = await metrics.calibration(cal.mixture, d.labels);
    evals[`${mode}, ${setName}, per-expert T`] = calibrated;
    diagrams[`${mode}, ${setName}`] = calibrated;
    audits[`${mode}, ${setName}`] = await audit.moeAudit(cal, { temperatures: temps, groups: d.region, groupNames: regionNames });
  }
  const g = await calibrate.applyTemperature(blend(d, expertProbs(d, ones), 'soft').mixture, globalT.temperature, { input: 'probabilities' });
  evals[`soft, ${setName}, global T`] = await metrics.calibration(g, d.labels);
}

console.log('\ncalibration (accuracy / ECE):');
for (const [name, r] of Object.entries(evals)) console.log(`  ${name.padEnd(36)} ${pct(r.accuracy)}  ${pct(r.ece)}`);

for (const [name, a] of Object.entries(audits)) {
  console.log(`\naudit: ${name}`);
  for (const e of a.experts.experts) {
    console.log(`  expert ${e.expert}: top-1 ${pct(e.top1Share)}  mass ${pct(e.massShare)}  own accuracy ${pct(e.own.accuracy)} ECE ${pct(e.own.ece)}  blend ECE ${pct(e.mixture.ece)}  T ${e.temperature?.toFixed(3)}`);
  }
  const s = a.subsets;
  console.log(`  top ${report.formatPercent(s.disagreement.share, 0)} disagreement: ${s.disagreement.inside.rows} rows, ECE ${pct(s.disagreement.inside.ece)} (others ${pct(s.disagreement.outside.ece)})`);
  console.log(`  regret > ${s.regret.threshold}: ${s.regret.inside.rows} rows, ECE ${pct(s.regret.inside.ece)}`);
  const worst = s.groups?.worst.ece;
  if (worst !== null && worst !== undefined) console.log(`  worst region by ECE: ${regionNames[worst]} (${pct(s.groups!.groups[worst].ece)})`);
  console.log(`  routing entropy ${a.routing.entropy.mean.toFixed(3)} nats (of ${a.routing.maxEntropy.toFixed(3)}), no dominant expert in ${pct(a.routing.noDominantShare)} of rows`);
}

const html = report.htmlReport({
  title: 'calmoe: in-distribution vs shifted evaluation',
  subtitle: `A generated ${K}-expert, ${C}-class MoE; per-expert temperature scaling fitted on ${validation.rows} validation rows.`,
  sections: [
    {
      title: 'Calibration',
      paragraphs: ['The blend under soft and hard routing, before and after temperature scaling, on the in-distribution and the shifted test sets.'],
      tables: [report.calibrationTable(evals, 'Calibration of the blend')],
      figures: [
        {
          kind: 'reliability', caption: 'Soft routing with per-expert temperatures: in-distribution vs shifted',
          panels: [{ title: 'in-distribution', calibration: diagrams['soft, in-distribution'] }, { title: 'shifted', calibration: diagrams['soft, shifted'] }],
        },
        {
          kind: 'reliability', caption: 'Under shift: soft vs hard routing', style: 'points',
          panels: [{ title: 'soft', calibration: diagrams['soft, shifted'] }, { title: 'hard', calibration: diagrams['hard, shifted'] }],
        },
      ],
    },
    {
      title: 'Temperatures',
      tables: [
        report.temperatureTable({ 'global (soft blend)': globalT }, 'A single temperature on the soft blend'),
        report.expertTemperatureTable(softT, 'Per-expert temperatures, soft assignment'),
        report.expertTemperatureTable(hardT, 'Per-expert temperatures, hard assignment'),
      ],
    },
    ...Object.entries(audits).map(([name, a]) => report.auditSection(`Audit: ${name}`, a)),
  ],
  footer: 'Made by examples/report-demo.ts with calmoe.',
});
const path = resolve(process.argv[2] ?? join(tmpdir(), 'calmoe-report.html'));
writeFileSync(path, html);
console.log(`\nreport written to ${path} (${(html.length / 1024).toFixed(0)} KiB, self-contained)`);
