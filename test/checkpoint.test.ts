// Training checkpoints: a resumed CPU fit continues the checkpointed run bit for bit (SGD with
// momentum, AdamW with a cosine schedule and warm-up, shuffling, a robust objective switching on
// after the checkpoint); checkpoints that do not fit the model, data or options are RangeErrors.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type EpochLog, type FitOptions, MoEClassifier } from '../src/index.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';

const dir = mkdtempSync(join(tmpdir(), 'calmoe-ckpt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const n = 240, d = 4;
const x = { data: new Float32Array(n * d).map((_, i) => Math.sin(i * 0.91) * 1.5 + Math.cos(i * 0.37)), rows: n, cols: d };
const y = Int32Array.from({ length: n }, (_, i) => (x.data[i * d] + x.data[i * d + 1] > 0.3 ? 1 : x.data[i * d + 2] > 0 ? 2 : 0));
const options = { inputDim: d, classes: 3, experts: 3, expertHidden: [6], routing: 'topk' as const, topK: 2, seed: 4, device: 'cpu' as const };
const model = () => new MoEClassifier(options);

// the logs without their timings (which differ between any two runs)
const logs = (epochs: EpochLog[]) => epochs.map(({ seconds: _s, examplesPerSecond: _e, ...rest }) => rest);

const runs: Array<[string, FitOptions, object?]> = [
  ['SGD with momentum', { optimizer: { type: 'sgd', lr: 0.05, momentum: 0.9, weightDecay: 1e-3 }, objective: { type: 'robust', eta: 1, warmupEpochs: 4 } }],
  ['AdamW with a cosine schedule', { optimizer: { type: 'adamw', lr: 0.01 }, schedule: { type: 'cosine', warmupSteps: 5, minLrRatio: 0.1 }, clipNorm: 1 }],
  ['Hard routing with the top-1 tilt and squared-mean balancing', { objective: { type: 'robust', eta: 1, tiltLoss: 'top1', warmupEpochs: 2 },
    balanceLoss: 0.01, balanceForm: 'squared-mean' }, { routing: 'hard', topK: undefined }],
];

describe('checkpoints and resume', () => {
  it.each(runs)('%s: a resumed fit equals the uninterrupted run bit for bit', async (name, fitOptions, modelOptions = {}) => {
    const model = () => new MoEClassifier({ ...options, ...modelOptions });
    const path = join(dir, `${name.split(' ')[0]}.safetensors`);
    const common: FitOptions = { ...fitOptions, epochs: 5, batchSize: 36, seed: 7, validation: { x, y } };
    const straight = model();
    const hs = await straight.fit(x, y, common);
    // the same run writing checkpoints after epochs 3 (and 6, never reached): checkpointing changes nothing
    const written = model();
    const hw = await written.fit(x, y, { ...common, checkpoint: { path, everyEpochs: 3 } });
    expect(written.parameters).toEqual(straight.parameters);
    expect(logs(hw.epochs)).toEqual(logs(hs.epochs));
    // a fresh model (other initial parameters) resumed from the checkpoint after epoch 3
    const resumed = new MoEClassifier({ ...options, ...modelOptions, seed: 99 });
    const hr = await resumed.fit(x, y, { ...common, resumeFrom: path });
    expect(resumed.parameters).toEqual(straight.parameters);
    expect(resumed.temperatures).toEqual(straight.temperatures);
    expect(hr.epochs.map((e) => e.epoch)).toEqual([0, 1, 2, 3, 4]);
    expect(logs(hr.epochs)).toEqual(logs(hs.epochs));
    expect(resumed.predictSync(x).probs.data).toEqual(straight.predictSync(x).probs.data);
    // the checkpoint is a model file too: the model after epoch 3
    const loaded = MoEClassifier.load(path);
    expect(loaded.parameterCount).toBe(straight.parameterCount);
    expect(loaded.trainingSummary).toMatchObject({ epochs: 3 });
  });

  it('a resumed fit writes checkpoints that resume again', async () => {
    const common: FitOptions = { optimizer: { type: 'adamw', lr: 0.02 }, schedule: { type: 'cosine' }, epochs: 6, batchSize: 50, seed: 3 };
    const straight = model();
    await straight.fit(x, y, common);
    const a = join(dir, 'a.safetensors'), b = join(dir, 'b.safetensors'), c = join(dir, 'c.safetensors');
    await model().fit(x, y, { ...common, checkpoint: { path: a, everyEpochs: 4 } });  // a: after epoch 4
    const m1 = model();
    await m1.fit(x, y, { ...common, resumeFrom: a, checkpoint: { path: b, everyEpochs: 5 } });  // b: after epoch 5
    const m2 = model();
    const h2 = await m2.fit(x, y, { ...common, resumeFrom: b, checkpoint: { path: c, everyEpochs: 3 } });  // c: after epoch 6
    expect(m1.parameters).toEqual(straight.parameters);
    expect(m2.parameters).toEqual(straight.parameters);
    expect(h2.epochs).toHaveLength(6);
    await expect(model().fit(x, y, { ...common, resumeFrom: c })).rejects.toThrow(/^epochs: the checkpoint .* holds 6 finished epochs; expected epochs > 6/);
  });
});

describe('interrupted runs', () => {
  it('an aborted run resumes from its last checkpoint to the uninterrupted result', async () => {
    // big enough that an epoch (~20 ms) outlasts the abort's way from onEpochEnd to the training thread
    const rows = 3000, cols = 16;
    const bx = { data: new Float32Array(rows * cols).map((_, i) => Math.sin(i * 0.91) * 1.5 + Math.cos(i * 0.37)), rows, cols };
    const by = Int32Array.from({ length: rows }, (_, i) => (bx.data[i * cols] > 0 ? 1 : 0) + (bx.data[i * cols + 1] > 0.5 ? 1 : 0));
    const big = () => new MoEClassifier({ inputDim: cols, classes: 3, experts: 4, expertHidden: [64], seed: 2, device: 'cpu' });
    const common: FitOptions = { optimizer: { type: 'adamw', lr: 0.01 }, schedule: { type: 'cosine', warmupSteps: 30 }, epochs: 16, batchSize: 16, seed: 11 };
    const straight = big();
    const hs = await straight.fit(bx, by, common);
    const path = join(dir, 'aborted.safetensors');
    const ac = new AbortController();
    const err = await big().fit(bx, by, { ...common, checkpoint: { path }, signal: ac.signal, onEpochEnd: () => ac.abort() }).catch((e: unknown) => e);
    expect((err as Error).name).toBe('AbortError');
    const done = (err as { history: { epochs: EpochLog[] } }).history.epochs.length;  // the thread may finish an epoch or two more
    expect(done).toBeGreaterThanOrEqual(1);
    expect(done).toBeLessThan(16);
    const resumed = big();
    const hr = await resumed.fit(bx, by, { ...common, resumeFrom: path });
    expect(resumed.parameters).toEqual(straight.parameters);
    expect(logs(hr.epochs)).toEqual(logs(hs.epochs));
  });

  it('a checkpoint that cannot be written stops the fit with the write error', async () => {
    const err = await model().fit(x, y, { epochs: 3, checkpoint: { path: join(dir, 'no', 'such', 'dir', 'c.safetensors') } }).catch((e: unknown) => e);
    expect((err as NodeJS.ErrnoException).code).toBe('ENOENT');
  });
});

describe('bad checkpoints', () => {
  const common: FitOptions = { optimizer: { type: 'sgd', lr: 0.05, momentum: 0.5 }, epochs: 4, batchSize: 40, seed: 1 };
  const path = join(dir, 'bad-base.safetensors');
  const ready = model().fit(x, y, { ...common, checkpoint: { path, everyEpochs: 3 } });  // holds epoch 3

  const rejects = async (fit: FitOptions, re: RegExp, m = model()) => {
    await ready;
    const before = m.parameters.slice();
    const err = await m.fit(x, y, { ...common, ...fit }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RangeError);
    expect((err as Error).message).toMatch(re);
    expect(m.parameters).toEqual(before);  // nothing was trained or loaded
  };

  it('names the option or data that differ from the checkpointed run', async () => {
    await rejects({ resumeFrom: path, seed: 2 }, /^seed: 2 differs from the checkpointed run's 1 \(resumeFrom: .*\); resume with the same seed$/);
    await rejects({ resumeFrom: path, batchSize: 41 }, /^batchSize: 41 differs/);
    await rejects({ resumeFrom: path, optimizer: { type: 'adamw' } }, /^optimizer: .* differs from the checkpointed run's/);
    await rejects({ resumeFrom: path, shuffle: false }, /^shuffle: false differs/);
    await rejects({ resumeFrom: path, epochs: 2 }, /^epochs: the checkpoint .* holds 3 finished epochs; expected epochs > 3/);
    const fewer = { data: x.data.subarray(0, 200 * d), rows: 200, cols: d };
    const err = await model().fit(fewer, y.subarray(0, 200), { ...common, resumeFrom: path }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/^x: 200 rows, the checkpointed run .* trained on 240; resume on the same data$/);
    await rejects({ resumeFrom: path }, /^resumeFrom: .* holds a model configured .*"experts":3.*; this model is .*"experts":4/,
      new MoEClassifier({ ...options, experts: 4 }));
  });

  it('refuses a cosine schedule over another number of epochs', async () => {
    const p = join(dir, 'cos.safetensors');
    const cos: FitOptions = { ...common, schedule: { type: 'cosine' } };
    await model().fit(x, y, { ...cos, checkpoint: { path: p, everyEpochs: 2 }, epochs: 3 });
    const err = await model().fit(x, y, { ...cos, epochs: 5, resumeFrom: p }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/^epochs: the checkpointed run's cosine schedule spans 3 epochs, got 5; resume with epochs: 3$/);
  });

  it('refuses model files without training state, missing files and damaged state', async () => {
    await ready;
    const plain = join(dir, 'plain.safetensors');
    model().save(plain);
    await rejects({ resumeFrom: plain }, /^resumeFrom: .*plain\.safetensors is a model file without training state/);
    await rejects({ resumeFrom: join(dir, 'nope.safetensors') }, /^resumeFrom: .*nope\.safetensors: no such checkpoint file$/);
    const f = readSafetensors(path);
    const state = JSON.parse(f.metadata.checkpoint);
    const damaged = (name: string, meta: Record<string, unknown>, tensors = f.tensors) => {
      const p = join(dir, name);
      writeSafetensors(p, tensors, { ...f.metadata, checkpoint: JSON.stringify({ ...state, ...meta }) });
      return p;
    };
    await rejects({ resumeFrom: damaged('d1.safetensors', { epoch: 0 }) }, /__metadata__\.checkpoint: epoch: expected an integer >= 1/);
    await rejects({ resumeFrom: damaged('d2.safetensors', { rng: '18446744073709551616' }) }, /rng: expected an unsigned 64-bit integer/);
    await rejects({ resumeFrom: damaged('d3.safetensors', { history: [] }) }, /history: expected 3 epoch logs/);
    const short = f.tensors.map((t) => (t.name === 'optimizer.m' ? { ...t, shape: [3], data: t.data.subarray(0, 3) } : t));
    await rejects({ resumeFrom: damaged('d4.safetensors', {}, short) }, /tensor 'optimizer\.m' has 3 values, the model \d+/);
    // a state the native fit checks: the shuffle RNG must replay to the saved state, the step count must fit the data
    await rejects({ resumeFrom: damaged('d5.safetensors', { rng: '12345' }) }, /^resumeFrom: the data shuffling does not reach the checkpoint's state/);
    await rejects({ resumeFrom: damaged('d6.safetensors', { steps: 7 }) }, /^resumeFrom: the checkpoint's optimiser took 7 steps in 3 epochs; this data and batchSize give 18/);
    const noM = f.tensors.filter((t) => t.name !== 'optimizer.m');
    await rejects({ resumeFrom: damaged('d7.safetensors', {}, noM) }, /^resumeFrom: the checkpoint's optimiser state does not fit this model and optimizer\.type/);
    await expect(model().fit(x, y, { checkpoint: { path: '' } })).rejects.toThrow(TypeError);
    await expect(model().fit(x, y, { checkpoint: { path, everyEpochs: 0 } })).rejects.toThrow(/checkpoint\.everyEpochs: expected an integer in \[1/);
  });
});
