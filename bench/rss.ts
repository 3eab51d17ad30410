/**
 * Memory over many calls (issue 18): RSS before and after 10,000 calls each of fit, predict, the
 * metrics (sync and async) and the accumulators, after a warm-up and a GC when exposed
 * (`node --expose-gc`). Flat means no leak per call; the figures are JSON lines in MB.
 */
import { MoEClassifier, drift, metrics } from 'calmoe';
import { emit, note } from './common.js';

const gc = (globalThis as { gc?: () => void }).gc;
const rssMb = () => {
  gc?.();
  return process.memoryUsage().rss / 2 ** 20;
};

export async function runRss(o: { calls: number }): Promise<void> {
  const n = 64, d = 8, C = 3;
  const x = { data: new Float32Array(n * d).map((_, i) => Math.sin(i)), rows: n, cols: d };
  const y = new Int32Array(n).map((_, i) => i % C);
  const probs = { data: new Float32Array(n * C).fill(1 / C), rows: n, cols: C };
  const model = new MoEClassifier({ inputDim: d, classes: C, experts: 4, expertHidden: [8], seed: 1 });
  const mon = drift.DriftMonitor.fromReferenceSync(x, { bins: 4 });
  const kinds: Record<string, () => unknown> = {
    fit: () => model.fit(x, y, { epochs: 1, batchSize: 16 }),
    predict: () => model.predict(x),
    predictSync: () => model.predictSync(x),
    calibration: () => metrics.calibration(probs, y),
    calibrationSync: () => metrics.calibrationSync(probs, y),
    accumulator: async () => {
      const a = new metrics.CalibrationAccumulator();
      await a.update(probs, y);
      a.merge(metrics.CalibrationAccumulator.fromJSON(a.toJSON()));
      return a.result();
    },
    driftMonitor: async () => {
      await mon.update(x);
      return mon.result();
    },
  };
  note(`rss: ${o.calls} calls of each of ${Object.keys(kinds).join(', ')}${gc ? '' : ' (run with --expose-gc for steadier figures)'}`);
  for (const [kind, call] of Object.entries(kinds)) {
    for (let i = 0; i < 200; i++) await call();  // warm-up: pools, JIT, allocator arenas
    const before = rssMb();
    for (let i = 0; i < o.calls; i++) await call();
    const after = rssMb();
    emit({ system: 'calmoe', workload: 'rss', mode: kind, metric: 'rss_before', value: before, unit: 'MB', device: 'cpu' });
    emit({ system: 'calmoe', workload: 'rss', mode: kind, metric: 'rss_after', value: after, unit: 'MB', device: 'cpu' });
    note(`  ${kind}: ${before.toFixed(1)} MB -> ${after.toFixed(1)} MB`);
  }
}
