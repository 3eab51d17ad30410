/**
 * W4 in TensorFlow.js: the AdamW fit of bench/w4-fit.ts (soft routing only: TF.js's sparse top1
 * peer trains only the chosen expert, calmoe's hard mode trains every expert) on the same kind of
 * data, written as a TF.js user would: the TfMoE model of tfjs-moe.ts (tf.fused.matMul layers),
 * `optimizer.minimize` with tf.train.adam plus decoupled weight decay after each step (TF.js has
 * no AdamW), the cosine learning rate set on the optimiser per step, shuffled batches copied
 * from the host. Examples/s of every epoch and overall; single-threaded (see README.md here).
 */
import { emit, note } from '../common.js';
import { tf, tfBackends } from '../tfjs.js';
import { W4, fashionLikeData } from '../w4-data.js';
import { cpuSeconds } from '../w4-fit.js';
import { TfMoE, ensureGradients, makeRng } from './tfjs-moe.js';

export interface TfjsW4Options {
  rows?: number;
  epochs?: number;
  backends?: string[];
}

export async function runTfjsW4(o: TfjsW4Options): Promise<void> {
  const rows = o.rows ?? 6000, epochs = o.epochs ?? 2;
  const missing = await ensureGradients();
  if (missing) {
    note(`W4 (TensorFlow.js): skipped: ${missing}`);
    return;
  }
  const { x, y } = fashionLikeData(rows);
  const B = W4.batch, d = W4.d, C = W4.C, lr0 = 1e-3, wd = 1e-4;
  const steps = Math.ceil(rows / B) * epochs;
  const have = await tfBackends();
  for (const backend of o.backends ?? ['wasm']) {
    if (!have.includes(backend) || !(await tf.setBackend(backend))) {
      note(`W4 (TensorFlow.js): backend '${backend}' unavailable; skipped`);
      continue;
    }
    const system = `tfjs-${backend}`;
    note(`W4 (TensorFlow.js ${backend}): AdamW fit, soft, ${rows} rows x ${d}, batch ${B}, ${epochs} epochs (a reduced run: the full one takes hours here)`);
    const model = new TfMoE({ d, h: W4.h, C, K: W4.K }, 1);
    const opt = tf.train.adam(lr0, 0.9, 0.999, 1e-8);
    const vars = model.variables();
    const rng = makeRng(7);
    const order = Int32Array.from({ length: rows }, (_, i) => i);
    const xb = new Float32Array(B * d), yb = new Int32Array(B);
    let step = 0;
    const t0 = process.hrtime.bigint();
    for (let e = 0; e < epochs; e++) {
      for (let i = rows - 1; i > 0; i--) {
        const j = Math.floor(rng.uniform() * (i + 1));
        [order[i], order[j]] = [order[j], order[i]];
      }
      const e0 = process.hrtime.bigint(), c0 = cpuSeconds();
      let lossSum = 0;
      for (let b0 = 0; b0 < rows; b0 += B) {
        const n = Math.min(B, rows - b0);
        for (let r = 0; r < n; r++) {
          xb.set(x.data.subarray(order[b0 + r] * d, order[b0 + r] * d + d), r * d);
          yb[r] = y[order[b0 + r]];
        }
        const lr = 0.5 * lr0 * (1 + Math.cos((Math.PI * step) / steps));
        (opt as unknown as { learningRate: number }).learningRate = lr;
        lossSum += n * tf.tidy(() => {
          const xt = tf.tensor2d(xb.subarray(0, n * d), [n, d]);
          const y1 = tf.oneHot(tf.tensor1d(yb.subarray(0, n), 'int32'), C) as tf.Tensor2D;
          const cost = opt.minimize(() => {
            const p = model.forward(xt, 'soft', true);
            return tf.mean(tf.neg(tf.log(tf.maximum(tf.sum(tf.mul(p, y1), 1), 1e-12)))) as tf.Scalar;
          }, true, vars);
          for (const v of vars) v.assign(tf.mul(v, 1 - lr * wd));  // decoupled weight decay
          return cost!.dataSync()[0];
        });
        step++;
      }
      const secs = Number(process.hrtime.bigint() - e0) / 1e9, cpuSecs = cpuSeconds() - c0;
      emit({ system, workload: 'w4', mode: 'soft', metric: 'epoch_throughput', epoch: e + 1, value: rows / secs, unit: 'examples/s', device: 'cpu', threads: 1 });
      emit({ system, workload: 'w4', mode: 'soft', metric: 'epoch_cpu_throughput', epoch: e + 1, value: rows / cpuSecs, unit: 'examples/cpu-s', device: 'cpu', threads: 1 });
      note(`  ${system} soft epoch ${e + 1}: ${Math.round(rows / secs)} examples/s, ${Math.round(rows / cpuSecs)} examples/cpu-s, loss ${(lossSum / rows).toFixed(4)}`);
    }
    emit({ system, workload: 'w4', mode: 'soft', metric: 'throughput', value: (rows * epochs) / (Number(process.hrtime.bigint() - t0) / 1e9), unit: 'examples/s', device: 'cpu', threads: 1 });
    opt.dispose();
    model.dispose();
  }
}
