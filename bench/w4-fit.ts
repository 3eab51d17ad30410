/**
 * W4 (DESIGN.md): a whole AdamW fit at the paper's settings (lr 1e-3, weight decay 1e-4, cosine
 * decay, batch 128, 15 epochs; d = 784, h = 128, K = 8, C = 10, linear router, ERM) on
 * Fashion-MNIST-sized data (bench/w4-data.ts), through MoEClassifier.fit as a user runs it.
 * Examples/s of every epoch (they should stay flat: no epoch below 90% of the first) and overall.
 * Run twice in one process: 'calmoe-ieee' with CALMOE_DENORMALS=keep (IEEE subnormals, the
 * behaviour before flush-to-zero) and 'calmoe' (the default: subnormals flushed in training).
 */
import { MoEClassifier } from 'calmoe';
import { emit, note } from './common.js';
import { W4, fashionLikeData } from './w4-data.js';

export interface W4Options {
  rows?: number;
  epochs?: number;
  modes?: string[];
  /** Which floating-point modes to run: 'keep' (IEEE) and/or 'flush' (default both). */
  denormals?: string[];
}

/** CPU seconds this process has used (every thread). */
export function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

export async function runW4(o: W4Options): Promise<void> {
  const rows = o.rows ?? W4.rows, epochs = o.epochs ?? W4.epochs;
  const modes = o.modes ?? ['soft', 'hard'];
  const { x, y } = fashionLikeData(rows);
  note(`W4: AdamW fit, ${rows} rows x ${W4.d}, C=${W4.C}, K=${W4.K}, h=${W4.h}, batch ${W4.batch}, ${epochs} epochs, cosine; modes ${modes.join(', ')}`);
  const saved = process.env.CALMOE_DENORMALS;
  try {
    for (const mode of modes) {
      for (const dn of o.denormals ?? ['keep', 'flush']) {
        const system = dn === 'keep' ? 'calmoe-ieee' : 'calmoe';
        if (dn === 'keep') process.env.CALMOE_DENORMALS = 'keep';
        else delete process.env.CALMOE_DENORMALS;
        const routing = mode === 'soft' ? 'soft' : mode === 'hard' ? 'hard' : 'topk';
        const model = new MoEClassifier({
          inputDim: W4.d, classes: W4.C, experts: W4.K, expertHidden: [W4.h], routing, ...(routing === 'topk' ? { topK: mode === 'top2' ? 2 : 1 } : {}), seed: 1,
        });
        // CPU seconds of the process per epoch too: on a shared machine the wall-clock rate follows
        // the other load, the CPU-time rate the work per example
        const cpu = [cpuSeconds()];
        const t0 = process.hrtime.bigint();
        const h = await model.fit(x, y, {
          epochs, batchSize: W4.batch, seed: 1, optimizer: { type: 'adamw', lr: 1e-3, weightDecay: 1e-4 }, schedule: { type: 'cosine' },
          onEpochEnd: (l) => {
            cpu.push(cpuSeconds());
            note(`  ${system} ${mode} epoch ${l.epoch + 1}: ${Math.round(l.examplesPerSecond)} examples/s, ${Math.round(rows / (cpu[l.epoch + 1] - cpu[l.epoch]))} examples/cpu-s, loss ${l.loss.toFixed(4)}`);
          },
        });
        const total = Number(process.hrtime.bigint() - t0) / 1e9;
        const perCpu = h.epochs.map((l) => rows / (cpu[l.epoch + 1] - cpu[l.epoch]));
        for (const l of h.epochs) {
          emit({ system, workload: 'w4', mode, metric: 'epoch_throughput', epoch: l.epoch + 1, value: l.examplesPerSecond, unit: 'examples/s', device: 'cpu' });
          emit({ system, workload: 'w4', mode, metric: 'epoch_cpu_throughput', epoch: l.epoch + 1, value: perCpu[l.epoch], unit: 'examples/cpu-s', device: 'cpu' });
        }
        const first = h.epochs[0].examplesPerSecond, slowest = Math.min(...h.epochs.map((l) => l.examplesPerSecond));
        emit({ system, workload: 'w4', mode, metric: 'throughput', value: (rows * epochs) / total, unit: 'examples/s', device: 'cpu' });
        emit({ system, workload: 'w4', mode, metric: 'cpu_throughput', value: (rows * epochs) / (cpu[cpu.length - 1] - cpu[0]), unit: 'examples/cpu-s', device: 'cpu' });
        emit({ system, workload: 'w4', mode, metric: 'slowest_epoch_vs_first', value: slowest / first, unit: 'ratio', device: 'cpu' });
        emit({ system, workload: 'w4', mode, metric: 'slowest_epoch_vs_first_cpu', value: Math.min(...perCpu) / perCpu[0], unit: 'ratio', device: 'cpu' });
      }
    }
  } finally {
    if (saved === undefined) delete process.env.CALMOE_DENORMALS;
    else process.env.CALMOE_DENORMALS = saved;
  }
}
