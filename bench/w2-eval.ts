/**
 * W2 (DESIGN.md): evaluation of the W1 model over 200,000 rows: forward + ECE (15 bins), rows/s,
 * for soft, top2 and hard (top-1) routing. Measured through the public API: predict, then the
 * calibration pass (what MoEClassifier.evaluate does, minus the routing read-out).
 */
import { metrics } from 'calmoe';
import { bestTime, emit, note } from './common.js';
import { gaussianData, modelFor } from './w1-train.js';

export async function runW2(o: { rows: number; repeat: number }): Promise<Record<string, number>> {
  const d = 128, h = 128, C = 10, K = 8;
  const { x, y } = gaussianData(o.rows, d, C, 7);
  note(`W2: eval over ${o.rows} rows (d=${d}, h=${h}, C=${C}, K=${K}), best of ${o.repeat}`);
  const out: Record<string, number> = {};
  for (const mode of ['soft', 'top2', 'hard'] as const) {
    const model = modelFor(mode, d, h, C, K);
    let ece = 0;
    const t = await bestTime(o.repeat, async () => {
      const p = await model.predict(x);
      ece = metrics.eceSync(p.probs, y);
    });
    out[mode] = o.rows / t;
    emit({ system: 'calmoe', workload: 'w2', mode, metric: 'throughput', value: o.rows / t, unit: 'rows/s', device: 'cpu' });
    note(`  calmoe ${mode}: ${Math.round(o.rows / t).toLocaleString()} rows/s (ece ${ece.toFixed(4)})`);
  }
  return out;
}
