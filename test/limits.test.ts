/**
 * Every limit is defined once (native/include/calmoe/limits.h) and exported by the addon; the
 * TypeScript validators read it from there (src/limits.ts). For each limit: the public API at the
 * limit is accepted; just past it, the TypeScript layer refuses it with a RangeError naming the
 * user's argument before any native call; and the raw addon function refuses it too. So neither
 * layer can drift from the other: a TypeScript bound above the core's would reach the addon (caught
 * by the "no native call" check), one below would refuse the value at the limit, and an addon or
 * core bound above it would accept the raw call past it.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MoEClassifier, drift, getThreads, matrix, metrics, setThreads } from '../src/index.js';
import { limits } from '../src/limits.js';
import { native } from '../src/native.js';
import { parseFitOptions, parseModelOptions } from '../src/moe/options.js';

const L = limits();
const addon = native() as unknown as Record<string, unknown>;

/** Runs `fn` with every addon function spied on; returns what it threw (or rejected with) and the calls. */
async function attempt(fn: () => unknown): Promise<{ error: unknown; calls: string[] }> {
  const spies = Object.keys(addon).filter((k) => typeof addon[k] === 'function').map((k) => [k, vi.spyOn(addon as Record<string, () => unknown>, k)] as const);
  let error: unknown;
  try {
    await fn();
  } catch (e) {
    error = e;
  }
  const calls = spies.filter(([, s]) => s.mock.calls.length > 0).map(([k]) => k);
  for (const [, s] of spies) s.mockRestore();
  return { error, calls };
}

/** Past the limit through the public API: a RangeError naming `arg`, thrown before the addon is called. */
async function refusedByTypeScript(fn: () => unknown, arg: RegExp) {
  const { error, calls } = await attempt(fn);
  expect(error).toBeInstanceOf(RangeError);
  expect((error as Error).message).toMatch(arg);
  expect(calls).toEqual([]);
}

/** Past the limit through the raw addon: refused (synchronously or by the promise) with a RangeError naming `arg`. */
async function refusedByAddon(fn: () => unknown, arg: RegExp) {
  const { error } = await attempt(fn);
  expect(error).toBeInstanceOf(RangeError);
  expect((error as Error).message).toMatch(arg);
}

async function accepted(fn: () => unknown) {
  const { error } = await attempt(fn);
  expect(error).toBeUndefined();
}

// A tiny dataset: 4 rows, 2 features, 2 classes.
const x = matrix(Float32Array.of(0, 1, 1, 0, 0.5, 0.5, 1, 1), 4, 2);
const y = Int32Array.of(0, 1, 0, 1);
const probs = { data: Float32Array.of(0.9, 0.1, 0.2, 0.8), rows: 2, cols: 2 };
const labels = Int32Array.of(0, 1);
const small = { inputDim: 2, classes: 2, experts: 2, seed: 1 };

// The native model config and fit options the TypeScript layer would pass, with fields replaced.
const rawConfig = (o: Record<string, unknown>) => ({ ...parseModelOptions({ ...small }).config, ...o });
const rawParams = () => new Float32Array(native().moeParamCount(rawConfig({})));
const rawFit = (edit: (f: Record<string, any>) => void) => {
  const f = parseFitOptions({ epochs: 1, batchSize: 4 }) as unknown as Record<string, any>;
  edit(f);
  const h = native().moeFit(rawConfig({}) as never, rawParams(), undefined, x.data, y, 4, undefined, undefined, 0, f as never, () => {}, 'cpu');
  return h.promise;
};
/** A fit of a new model with options `o` (the model is built before the call under test). */
const fit = (o: Record<string, unknown>) => {
  const m = new MoEClassifier(small);
  return () => m.fit(x, y, { epochs: 1, batchSize: 4, ...o });
};

describe('limits: one definition, exported by the addon', () => {
  it('is the addon\'s frozen object', () => {
    expect(L).toBe(native().limits);
    expect(Object.isFrozen(L)).toBe(true);
    for (const [k, v] of Object.entries(L)) expect(Number.isFinite(v) && v > 0, k).toBe(true);
  });
});

describe('limits: the public API at the limit, just past it, and the raw addon past it', () => {
  afterEach(() => vi.restoreAllMocks());

  it('maxCalibrationBins', async () => {
    const max = L.maxCalibrationBins;
    await accepted(() => metrics.calibrationSync(probs, labels, { bins: max }));
    await accepted(() => new metrics.CalibrationAccumulator({ bins: max }));
    await refusedByTypeScript(() => metrics.calibrationSync(probs, labels, { bins: max + 1 }), /^bins: .*1048576/);
    await refusedByTypeScript(() => new metrics.CalibrationAccumulator({ bins: max + 1 }), /^bins: /);
    await refusedByAddon(() => native().calibStateNew({ kind: 'top-label', bins: max + 1, edges: 'right-closed', extras: true }), /^bins: /);
  });

  it('maxCalibrationCells (bins x classes; the state at the limit is 2 GiB, so only past it)', async () => {
    const bins = L.maxCalibrationCells / 64;
    await refusedByAddon(() => new metrics.CalibrationAccumulator({ mode: 'classwise', classes: 65, bins }), new RegExp(`bins x classes: .* ${L.maxCalibrationCells}$`));
    await refusedByAddon(() => native().calibStateNew({ kind: 'classwise', bins, classes: 65, edges: 'right-closed', extras: true }), /^bins x classes: /);
  });

  it('maxIds (classes, groups, columns: int32 ids; at the limit a histogram each is too large, so the cells bound answers)', async () => {
    const max = L.maxIds;
    await refusedByTypeScript(() => new metrics.CalibrationAccumulator({ mode: 'classwise', classes: max + 1 }), /^classes: /);
    await refusedByTypeScript(() => new metrics.CalibrationAccumulator({ groups: max + 1 }), /^groups: /);
    await refusedByAddon(() => new metrics.CalibrationAccumulator({ groups: max, bins: 1 }), /^bins x classes: /);
    await refusedByAddon(() => native().calibStateNew({ kind: 'classwise', bins: 1, classes: max + 1, edges: 'right-closed', extras: true }), /^classes: /);
    await refusedByAddon(() => native().calibStateNew({ kind: 'top-label', bins: 1, groups: max + 1, edges: 'right-closed', extras: true }), /^groups: /);
    await refusedByAddon(() => native().temperatureApply(new Float32Array(2), 1, max + 1, 1, { input: 'logits', sumTolerance: 1e-3, device: 'cpu' } as never), /^cols: /);
  });

  it('maxDriftBins (PSI bins, and bins x refinement of a monitor)', async () => {
    const max = L.maxDriftBins;
    const ref = matrix(Float32Array.from({ length: 50 }, (_, i) => i), 50, 1);
    await accepted(() => drift.driftReportSync(ref, ref, { bins: max }));
    await accepted(() => drift.DriftMonitor.fromReference(ref, { bins: max, refinement: 1 }));
    await accepted(() => drift.DriftMonitor.fromReference(ref, { bins: 1, refinement: max }));
    await refusedByTypeScript(() => drift.driftReportSync(ref, ref, { bins: max + 1 }), /^bins: /);
    await refusedByTypeScript(() => drift.DriftMonitor.fromReference(ref, { bins: max + 1, refinement: 1 }), /^bins: /);
    await refusedByTypeScript(() => drift.DriftMonitor.fromReference(ref, { bins: 1, refinement: max + 1 }), /^refinement: /);
    await refusedByTypeScript(() => drift.DriftMonitor.fromReference(ref, { bins: 2, refinement: max / 2 + 1 }), /^bins x refinement: /);
    const o = { ks: true, method: 'auto', epsilon: 1e-4, correction: 'bh', alpha: 0.05, device: 'cpu' };
    await refusedByAddon(() => native().driftCompare(ref.data, 50, ref.data, 50, 1, { ...o, bins: max + 1 } as never), /^bins: /);
    await refusedByAddon(() => native().driftMonitorNew(ref.data, 50, 1, { bins: max + 1, refinement: 1, device: 'cpu' }), /^bins: /);
    await refusedByAddon(() => native().driftMonitorNew(ref.data, 50, 1, { bins: 1, refinement: max + 1, device: 'cpu' }), /^refinement: /);
    await refusedByAddon(() => native().driftMonitorNew(ref.data, 50, 1, { bins: 2, refinement: max / 2 + 1, device: 'cpu' }), /^bins x refinement: /);
  });

  it('maxSampleRows (KS sample sizes)', async () => {
    const max = L.maxSampleRows;
    await accepted(() => drift.ksPValue(0.5, max, 1));
    await refusedByTypeScript(() => drift.ksPValue(0.5, max + 1, 1), /^n1: /);
    await refusedByTypeScript(() => drift.ksPValue(0.5, 1, max + 1), /^n2: /);
    await refusedByAddon(() => native().driftKsPValue(0.5, max + 1, 1, 'auto'), /^n1/);
  });

  it('maxElements (rows x columns of an input)', async () => {
    const max = L.maxElements;
    // at the limit the shape passes and the data's length is what is wrong; past it, the shape
    const { error } = await attempt(() => metrics.calibrationSync({ data: new Float32Array(2), rows: max / 2, cols: 2 }, labels));
    expect((error as Error).message).toMatch(/^scores: data has 2 elements/);
    await refusedByTypeScript(() => metrics.calibrationSync({ data: new Float32Array(2), rows: max / 2 + 1, cols: 2 }, labels), /^scores: .* larger than supported/);
    await refusedByAddon(() => native().temperatureApply(new Float32Array(2), max + 1, 1, 1, { input: 'logits', sumTolerance: 1e-3, device: 'cpu' } as never), /^rows: /);
  });

  it('maxWeight (a row weight: checked natively only, so the addon refuses it for the public call too)', async () => {
    const max = L.maxWeight;
    await accepted(() => metrics.calibrationSync(probs, labels, { weights: Float32Array.of(max, 1) }));
    const past = Math.fround(max * (1 + 2 ** -23)); // the next float32 above the limit
    await refusedByAddon(() => metrics.calibrationSync(probs, labels, { weights: Float32Array.of(1, past) }), /^weights\[1\] = 16777218: expected a finite number in \[0, 16777216\]/);
    const state = native().calibStateNew({ kind: 'top-label', bins: 15, edges: 'right-closed', extras: true, weighted: true });
    await refusedByAddon(() => native().calibUpdateRows(state, probs.data, 2, 2, labels, { input: 'probabilities', sumTolerance: 1e-3, device: 'cpu', weights: Float32Array.of(past, 1) }), /^weights\[0\]/);
  });

  it('maxWidth (inputDim, classes, hidden widths)', async () => {
    const max = L.maxWidth;
    await accepted(() => new MoEClassifier({ inputDim: max, classes: 1, experts: 1, expertHidden: [], init: { std: 0 } }));
    for (const [key, v] of [['inputDim', max + 1], ['classes', max + 1], ['expertHidden', [max + 1]], ['routerHidden', [max + 1]]] as const) {
      await refusedByTypeScript(() => new MoEClassifier({ ...small, [key]: v }), new RegExp(`^${key}(\\[0\\])?: `));
      await refusedByAddon(() => native().moeParamCount(rawConfig({ [key]: v }) as never), new RegExp(`^${key}`));
    }
  });

  it('maxExperts (experts and topK)', async () => {
    const max = L.maxExperts;
    await accepted(() => new MoEClassifier({ inputDim: 1, classes: 1, experts: max, routing: 'topk', topK: max }));
    await refusedByTypeScript(() => new MoEClassifier({ ...small, experts: max + 1 }), /^experts: /);
    await refusedByTypeScript(() => new MoEClassifier({ ...small, routing: 'topk', topK: max + 1 }), /^topK: /);
    await refusedByAddon(() => native().moeParamCount(rawConfig({ experts: max + 1 }) as never), /^experts: /);
    await refusedByAddon(() => native().moeParamCount(rawConfig({ experts: max + 1, topK: max + 1 }) as never), /^(experts|topK): /);
  });

  it('maxHiddenLayers', async () => {
    const max = L.maxHiddenLayers;
    await accepted(() => new MoEClassifier({ ...small, expertHidden: new Array(max).fill(1), routerHidden: new Array(max).fill(1) }));
    await refusedByTypeScript(() => new MoEClassifier({ ...small, expertHidden: new Array(max + 1).fill(1) }), /^expertHidden: .*at most 64/);
    await refusedByTypeScript(() => new MoEClassifier({ ...small, routerHidden: new Array(max + 1).fill(1) }), /^routerHidden: .*at most 64/);
    await refusedByAddon(() => native().moeParamCount(rawConfig({ expertHidden: new Array(max + 1).fill(1) }) as never), /^expertHidden: /);
  });

  it('maxParams (only past it: a model at the limit is 64 GiB)', async () => {
    // 2^24 inputs x 1025 experts: just over 2^34 parameters
    const big = { inputDim: L.maxWidth, classes: 1, experts: 1025 };
    // the parameter count is the core's to compute (moeParamCount): the public call is refused there
    await refusedByAddon(() => new MoEClassifier(big), new RegExp(`^model: more than ${L.maxParams} parameters`));
    await refusedByAddon(() => native().moeParamCount(rawConfig(big) as never), /^model: more than/);
  });

  it('maxBatchSize', async () => {
    const max = L.maxBatchSize;
    await accepted(fit({ batchSize: max }));
    await refusedByTypeScript(fit({ batchSize: max + 1 }), /^batchSize: /);
    await refusedByAddon(() => rawFit((f) => { f.batchSize = max + 1; }), /^batchSize: /);
  });

  it('maxEpochs (epochs, warm-up epochs, patience, checkpoint interval)', async () => {
    const max = L.maxEpochs;
    const stop = new AbortController();
    let ran = 0;
    const { error } = await attempt(fit({ epochs: max, signal: stop.signal, onEpochEnd: () => { ran++; stop.abort(); } }));
    expect(error).not.toBeInstanceOf(RangeError); // accepted: it trains until aborted
    expect(ran).toBeGreaterThanOrEqual(1);
    await accepted(fit({ objective: { type: 'robust', warmupEpochs: max } }));
    await refusedByTypeScript(fit({ epochs: max + 1 }), /^epochs: /);
    await refusedByTypeScript(fit({ objective: { type: 'robust', warmupEpochs: max + 1 } }), /^objective\.warmupEpochs: /);
    await refusedByTypeScript(fit({ earlyStopping: { patience: max + 1 } }), /^earlyStopping\.patience: /);
    await refusedByAddon(() => rawFit((f) => { f.epochs = max + 1; }), /^epochs: /);
    await refusedByAddon(() => rawFit((f) => { f.objective.warmupEpochs = max + 1; }), /^objective\.warmupEpochs: /);
  });

  it('maxSteps (warm-up steps, progress interval)', async () => {
    const max = L.maxSteps;
    await accepted(fit({ schedule: { warmupSteps: max } }));
    await refusedByTypeScript(fit({ schedule: { warmupSteps: max + 1 } }), /^schedule\.warmupSteps: /);
    await refusedByTypeScript(fit({ progressEvery: max + 1 }), /^progressEvery: /);
    await refusedByAddon(() => rawFit((f) => { f.schedule.warmupSteps = max + 1; }), /^schedule\.warmupSteps: /);
    await refusedByAddon(() => rawFit((f) => { f.progressEvery = max + 1; }), /^progressEvery: /);
  });

  it('maxEta (|eta| of the robust objectives)', async () => {
    const max = L.maxEta;
    await accepted(fit({ objective: { type: 'robust', eta: max } }));
    await accepted(fit({ objective: { type: 'robust-filtered', eta: -max } }));
    await refusedByTypeScript(fit({ objective: { type: 'robust', eta: max * (1 + 2 ** -50) } }), /^objective\.eta: /);
    await refusedByTypeScript(fit({ objective: { type: 'robust', eta: -max * (1 + 2 ** -50) } }), /^objective\.eta: /);
    await refusedByAddon(() => rawFit((f) => { f.objective.eta = max * (1 + 2 ** -50); }), /^objective\.eta: /);
    await refusedByAddon(() => rawFit((f) => { f.objective.eta = -max * (1 + 2 ** -50); }), /^objective\.eta: /);
  });

  it('maxInitStd', async () => {
    const max = L.maxInitStd;
    await accepted(() => new MoEClassifier({ ...small, init: { std: max } }));
    await refusedByTypeScript(() => new MoEClassifier({ ...small, init: { std: max + 1 } }), /^init\.std: /);
    await refusedByAddon(() => native().moeInit(rawConfig({}) as never, rawParams(), 0, 'normal', max + 1), /^init\.std: /);
  });

  it('maxMomentum (SGD momentum, AdamW betas: the largest float32 below 1)', async () => {
    const max = L.maxMomentum;
    expect(Math.fround(max)).toBe(max);
    expect(Math.fround(0.999999999)).toBe(1); // why: a beta rounded to 1 stops its moment from learning
    await accepted(fit({ optimizer: { betas: [max, max] } }));
    await accepted(fit({ optimizer: { type: 'sgd', momentum: max } }));
    const past = max + 2 ** -30;
    await refusedByTypeScript(fit({ optimizer: { betas: [0.9, past] } }), /^optimizer\.betas\[1\]: /);
    await refusedByTypeScript(fit({ optimizer: { betas: [past, 0.999] } }), /^optimizer\.betas\[0\]: /);
    await refusedByTypeScript(fit({ optimizer: { type: 'sgd', momentum: past } }), /^optimizer\.momentum: /);
    await refusedByAddon(() => rawFit((f) => { f.optimizer.beta2 = past; }), /^optimizer\.betas\[1\]: /);
    await refusedByAddon(() => rawFit((f) => { f.optimizer.beta1 = past; }), /^optimizer\.betas\[0\]: /);
    await refusedByAddon(() => rawFit((f) => { f.optimizer.momentum = past; }), /^optimizer\.momentum: /);
  });

  it('maxFitRows (only past it, on the raw addon: 2^31 rows do not fit a test)', async () => {
    const f = parseFitOptions({ epochs: 1, batchSize: 4 });
    await refusedByAddon(() => native().moeFit(rawConfig({}) as never, rawParams(), undefined, x.data, y, L.maxFitRows + 1, undefined, undefined, 0, f, () => {}, 'cpu'), /^rows: /);
  });

  it('maxThreads', async () => {
    const before = getThreads();
    try {
      await accepted(() => setThreads(L.maxThreads)); // only stored: no pool grows until a call runs
    } finally {
      setThreads(before);
    }
    await refusedByTypeScript(() => setThreads(L.maxThreads + 1), /^threads: /);
    await refusedByAddon(() => native().setThreads(L.maxThreads + 1), /^threads: /);
  });
});
