// fit's progress display, early stopping, best checkpoints; predict's returnExperts; model.audit.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { MoEClassifier, audit } from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'calmoe-fit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const n = 240, d = 4;
const x = { data: new Float32Array(n * d).map((_, i) => Math.sin(i * 0.91) * 1.5), rows: n, cols: d };
const y = Int32Array.from({ length: n }, (_, i) => (x.data[i * d] + x.data[i * d + 1] > 0 ? 1 : 0));
const model = (routing: 'soft' | 'topk' | 'hard' = 'soft') =>
  new MoEClassifier({ inputDim: d, classes: 2, experts: 3, expertHidden: [6], routing, seed: 4, device: 'cpu' });

function sink(isTTY: boolean): Writable & { isTTY: boolean; text: () => string } {
  const chunks: string[] = [];
  const w = new Writable({ write(c, _e, cb) { chunks.push(String(c)); cb(); } }) as Writable & { isTTY: boolean; text: () => string };
  w.isTTY = isTTY;
  w.text = () => chunks.join('');
  return w;
}

describe('fit progress', () => {
  it('prints one line per epoch when the stream is not a terminal', async () => {
    const s = sink(false);
    await model().fit(x, y, { epochs: 3, batchSize: 32, validation: { x, y }, progress: { stream: s } });
    const lines = s.text().trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^epoch 1\/3: loss \d\.\d{4} acc \d\.\d{4} \| val loss \d\.\d{4} acc \d\.\d{4} ece \d\.\d{4} \| [\d,]+ ex\/s, [\d.]+s, ETA \d+s$/);
    expect(lines[2]).not.toMatch(/ETA/);
  });

  it('draws a bar with steps, rate and ETA on a terminal', async () => {
    const s = sink(true);
    await model().fit(x, y, { epochs: 2, batchSize: 16, progress: { stream: s } });
    expect(s.text()).toMatch(/30\/30 steps \| [\d,]+ ex\/s \| ETA/);
    expect(s.text()).toMatch(/epoch 2\/2: loss/);
  });

  it('is off by default and checks its options', async () => {
    const spy = vi.spyOn(process.stderr, 'write');
    await model().fit(x, y, { epochs: 2, validation: { x, y } });
    expect(spy.mock.calls.filter((c) => /epoch/.test(String(c[0])))).toEqual([]);
    spy.mockRestore();
    await expect(model().fit(x, y, { progress: { mode: 'fancy' as never } })).rejects.toThrow(/progress\.mode: expected one of 'auto', 'bar', 'lines'/);
    await expect(model().fit(x, y, { earlyStopping: { monitor: 'valLoss' } })).rejects.toThrow(/earlyStopping\.monitor: 'valLoss' needs validation data/);
    await expect(model().fit(x, y, { bestCheckpoint: {} as never })).rejects.toThrow(/bestCheckpoint\.path: expected a file path/);
  });
});

describe('early stopping and best checkpoints', () => {
  it('stops after `patience` epochs without improvement and restores the best epoch exactly', async () => {
    // minDelta larger than any change: epoch 0 stays best, so the model must equal a 1-epoch fit
    const m = model();
    const h = await m.fit(x, y, { epochs: 50, batchSize: 8, validation: { x, y }, earlyStopping: { monitor: 'valAccuracy', minDelta: 2, patience: 1 } });
    expect(h.stoppedEarly).toBe(true);
    expect(h.best).toMatchObject({ epoch: 0, monitor: 'valAccuracy' });
    expect(h.epochs.length).toBeLessThan(50);
    const once = model();
    await once.fit(x, y, { epochs: 1, batchSize: 8 });
    expect(m.parameters).toEqual(once.parameters);
  });

  it('saves the best epoch to a file as it trains (a snapshot taken on the training thread)', async () => {
    // validation labels flipped: the better the model learns, the worse valLoss, so epoch 0 is best
    const flipped = y.map((v) => 1 - v);
    const m = model('hard');
    const p = join(dir, 'best.safetensors');
    const logs: number[] = [];
    const h = await m.fit(x, y, { epochs: 4, batchSize: 32, validation: { x, y: flipped }, bestCheckpoint: { path: p }, onEpochEnd: (l) => logs.push(l.valLoss!) });
    const bestEpoch = logs.indexOf(Math.min(...logs));
    expect(h.best).toEqual({ epoch: bestEpoch, value: logs[bestEpoch], monitor: 'valLoss' });
    expect(bestEpoch).toBeLessThan(3);
    // with a constant schedule the first e + 1 epochs of a run are an (e + 1)-epoch run
    const upTo = model('hard');
    await upTo.fit(x, y, { epochs: bestEpoch + 1, batchSize: 32 });
    expect(MoEClassifier.load(p).parameters).toEqual(upTo.parameters);
    expect(m.parameters).not.toEqual(upTo.parameters);
  });
});

describe('returnExperts and audit', () => {
  it('returns every expert: the active experts of topk and hard models match routing.expertProbs', async () => {
    for (const routing of ['soft', 'topk', 'hard'] as const) {
      const m = model(routing);
      await m.fit(x, y, { epochs: 1 });
      const p = m.predictSync(x, { returnRouting: true, returnExperts: true });
      const C = 2, K = 3, a = p.routing.active;
      expect(p.experts).toHaveLength(n * K * C);
      for (let i = 0; i < n; i++) {
        for (let s = 0; s < a; s++) {
          const k = p.routing.selected[i * a + s];
          for (let c = 0; c < C; c++) expect(p.experts![(i * K + k) * C + c]).toBe(p.routing.expertProbs[(i * a + s) * C + c]);
        }
      }
      const async = await m.predict(x, { returnExperts: true });
      expect(async.experts).toEqual(p.experts);
      expect(async.probs.data).toEqual(p.probs.data);
    }
  });

  it('model.audit equals moeAudit on the same outputs, and is not degenerate for hard routing', async () => {
    const m = model('hard');
    await m.fit(x, y, { epochs: 2 });
    const a = await m.audit(x, y);
    const p = m.predictSync(x, { returnRouting: true, returnExperts: true });
    const ref = audit.moeAuditSync({ routing: p.routing.weights, expertProbs: audit.expertTensor(p.experts!, n, 3, 2), mixture: p.probs, labels: y }, { temperatures: m.temperatures });
    expect(a).toEqual(ref);
    expect(a.subsets.disagreement.inside.rows).toBeGreaterThan(0);
  });
});
