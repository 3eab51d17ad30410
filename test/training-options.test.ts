import { describe, expect, it } from 'vitest';
import { MoEClassifier, matrix } from '../src/index.js';
import { rng } from './reference.js';

function data(seed: number, n = 256, d = 6, C = 3) {
  const r = rng(seed);
  const x = new Float32Array(n * d), y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) x[i * d + j] = r.normal() + (j === i % 3 ? 2 : 0);
    y[i] = x[i * d] + x[i * d + 1] > 1 ? 2 : x[i * d + 2] > 0 ? 1 : 0;
  }
  return { x: matrix(x, n, d), y };
}

describe('fit options: load-balancing form', () => {
  it("'squared-mean' adds alpha K sum_k P_k^2 (>= alpha, = alpha only when balanced) and balances the routing", async () => {
    const { x, y } = data(1);
    const alpha = 0.5;
    const mass = async (balance: number) => {
      const m = new MoEClassifier({ inputDim: 6, classes: 3, experts: 4, expertHidden: [8], seed: 2, init: { std: 0.8 } });
      const h = await m.fit(x, y, { epochs: 20, batchSize: 64, optimizer: { lr: 1e-2 }, balanceLoss: balance, balanceForm: 'squared-mean' });
      for (const e of h.epochs) expect(e.objective - e.loss).toBeGreaterThanOrEqual(balance * (1 - 1e-5));
      const r = m.predictSync(x, { returnRouting: true }).routing!.weights.data;
      const P = [0, 0, 0, 0];
      for (let i = 0; i < y.length; i++) for (let k = 0; k < 4; k++) P[k] += r[i * 4 + k] / y.length;
      return { spread: Math.max(...P) - Math.min(...P), h };
    };
    const free = await mass(0), balanced = await mass(alpha);
    expect(free.h.epochs.every((e) => e.objective === e.loss)).toBe(true);
    expect(balanced.spread).toBeLessThan(free.spread);
    expect(balanced.spread).toBeLessThan(0.1);
  });

  it('the two forms train differently; bad names are refused', async () => {
    const { x, y } = data(2);
    const run = async (balanceForm: 'switch' | 'squared-mean') => {
      const m = new MoEClassifier({ inputDim: 6, classes: 3, experts: 3, seed: 5 });
      await m.fit(x, y, { epochs: 2, batchSize: 64, balanceLoss: 1, balanceForm });
      return m.parameters;
    };
    expect(await run('switch')).not.toEqual(await run('squared-mean'));
    const m = new MoEClassifier({ inputDim: 6, classes: 3, experts: 3, seed: 5 });
    await expect(m.fit(x, y, { balanceLoss: 1, balanceForm: 'square' as never })).rejects.toThrow(/balanceForm/);
  });
});

describe('fit options: hard routing tilt', () => {
  it("tiltLoss 'top1' reweights by the routed expert's loss: a different fit from 'competitive'", async () => {
    const { x, y } = data(3);
    const run = async (tiltLoss: 'competitive' | 'top1') => {
      const m = new MoEClassifier({ inputDim: 6, classes: 3, experts: 3, routing: 'hard', seed: 7, init: { std: 0.5 } });
      const h = await m.fit(x, y, { epochs: 3, batchSize: 64, objective: { type: 'robust', eta: 2, tiltLoss } });
      for (const e of h.epochs) expect(Number.isFinite(e.objective)).toBe(true);
      return m.parameters;
    };
    const a = await run('competitive'), b = await run('top1');
    expect(a).not.toEqual(b);
    expect(await run('competitive')).toEqual(a);  // the default is the competitive loss
  });

  it("'top1' is refused where it has no meaning", async () => {
    const { x, y } = data(4);
    const soft = new MoEClassifier({ inputDim: 6, classes: 3, experts: 3, seed: 1 });
    await expect(soft.fit(x, y, { objective: { type: 'robust', tiltLoss: 'top1' } })).rejects.toThrow(/tiltLoss: 'top1' applies to routing 'hard'/);
    const hard = new MoEClassifier({ inputDim: 6, classes: 3, experts: 3, routing: 'hard', seed: 1 });
    await expect(hard.fit(x, y, { objective: { type: 'robust', gradient: 'through', tiltLoss: 'top1' } })).rejects.toThrow(/needs gradient 'term'/);
    await expect(hard.fit(x, y, { objective: { type: 'erm', tiltLoss: 'top1' } })).rejects.toThrow(/objective 'robust' only/);
    await expect(hard.fit(x, y, { objective: { type: 'robust', tiltLoss: 'best' as never } })).rejects.toThrow(/tiltLoss/);
  });
});
