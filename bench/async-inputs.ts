/**
 * The cost of input ownership on the async paths: an async call copies its inputs when it starts
 * (native/addon/call_inputs.h), a sync call reads them in place. W2 (predict 200,000 rows, then
 * ECE) through predict() and predictSync(); W3 (ECE over 10,000,000 x 10) through ece() and
 * eceSync(). The sync figure is the peer measured in the same run: the copy is the difference.
 */
import { metrics } from 'calmoe';
import { bestTime, emit, note } from './common.js';
import { gaussianData, modelFor } from './w1-train.js';
import { makeData } from './w3-ece.js';

export async function runAsyncInputs(o: { w2Rows: number; w3Rows: number; classes: number; repeat: number }): Promise<void> {
  const d = 128, h = 128, C = 10, K = 8;
  const { x, y } = gaussianData(o.w2Rows, d, C, 7);
  note(`async inputs: W2 eval over ${o.w2Rows} rows, W3 ECE over ${o.w3Rows} x ${o.classes}; best of ${o.repeat}`);
  for (const mode of ['soft', 'hard'] as const) {
    const model = modelFor(mode, d, h, C, K);
    const ta = await bestTime(o.repeat, async () => metrics.eceSync((await model.predict(x)).probs, y));
    const ts = await bestTime(o.repeat, () => metrics.eceSync(model.predictSync(x).probs, y));
    emit({ system: 'calmoe', workload: 'w2', mode: `${mode}-async`, metric: 'throughput', value: o.w2Rows / ta, unit: 'rows/s', device: 'cpu' });
    emit({ system: 'calmoe', workload: 'w2', mode: `${mode}-sync`, metric: 'throughput', value: o.w2Rows / ts, unit: 'rows/s', device: 'cpu' });
  }
  const rows = o.w3Rows, classes = o.classes;
  const { data: p, labels } = makeData(rows, classes);
  const m = { data: p, rows, cols: classes };
  const ta = await bestTime(o.repeat, () => metrics.ece(m, labels, { device: 'cpu' }));
  const ts = await bestTime(o.repeat, () => metrics.eceSync(m, labels, { device: 'cpu' }));
  emit({ system: 'calmoe', workload: 'w3', mode: 'ece-async', metric: 'throughput', value: rows / ta, unit: 'rows/s', device: 'cpu' });
  emit({ system: 'calmoe', workload: 'w3', mode: 'ece-sync', metric: 'throughput', value: rows / ts, unit: 'rows/s', device: 'cpu' });
}
