/**
 * Data and model files: loading a CSV (calmoe's streamed reader vs reading the whole file and
 * splitting it by hand, the code users write without a loader), a .npy file, and saving/loading a
 * model (safetensors vs the JSON snapshot with base64 parameters, the only way before), and the
 * cost of fit's training checkpoints (a fit with one per epoch vs the same fit without).
 * Files are written to a temporary directory; the OS page cache is warm (best of `repeat`).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MoEClassifier, io } from 'calmoe';
import { bestTime, emit, note } from './common.js';

export async function runIo(o: { repeat: number; rows: number }): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'calmoe-bench-io-'));
  try {
    const rows = o.rows, d = 32;
    let s = 1;
    const rnd = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296;
    const csv = [Array.from({ length: d }, (_, j) => `f${j}`).join(',') + ',label'];
    const x = new Float32Array(rows * d);
    for (let i = 0; i < rows; i++) {
      const r: string[] = [];
      for (let j = 0; j < d; j++) r.push((x[i * d + j] = Math.round(rnd() * 2e4) / 1e4 - 1).toString());
      csv.push(`${r.join(',')},${i % 10}`);
    }
    const csvPath = join(dir, 'data.csv');
    writeFileSync(csvPath, csv.join('\n') + '\n');
    const mb = readFileSync(csvPath).length / 1e6;
    note(`io: ${rows} rows x ${d} features, CSV ${mb.toFixed(1)} MB`);
    const line = (system: string, mode: string, seconds: number, metric = 'rows_per_s', value = rows / seconds, unit = 'rows/s') =>
      emit({ system, workload: 'io', mode, metric, value, unit, threads: 1, device: 'cpu' });

    line('calmoe', 'csv_read', await bestTime(o.repeat, () => io.readCsv(csvPath, { label: 'label' })));
    line('split-by-hand', 'csv_read', await bestTime(o.repeat, () => {
      const text = readFileSync(csvPath, 'utf8').trim().split('\n');
      const out = new Float32Array((text.length - 1) * d), y = new Int32Array(text.length - 1);
      for (let i = 1; i < text.length; i++) {
        const c = text[i].split(',');
        for (let j = 0; j < d; j++) out[(i - 1) * d + j] = Number(c[j]);
        y[i - 1] = Number(c[d]);
      }
    }));
    const npyPath = join(dir, 'x.npy');
    writeFileSync(npyPath, io.formatNpy(x, [rows, d]));
    line('calmoe', 'npy_read', await bestTime(o.repeat, () => io.npyToMatrix(io.readNpy(npyPath))));

    const model = new MoEClassifier({ inputDim: 784, classes: 10, experts: 8, expertHidden: [512], device: 'cpu' });
    const bytes = model.parameterCount * 4 / 1e6;
    const st = join(dir, 'm.safetensors'), js = join(dir, 'm.json');
    const mbps = (system: string, mode: string, t: number) => line(system, mode, t, 'mb_per_s', bytes / t, 'MB/s');
    mbps('calmoe', 'model_save_safetensors', await bestTime(o.repeat, () => model.save(st)));
    mbps('calmoe', 'model_load_safetensors', await bestTime(o.repeat, () => MoEClassifier.load(st)));
    mbps('json-base64', 'model_save_json', await bestTime(o.repeat, () => writeFileSync(js, JSON.stringify(model))));
    mbps('json-base64', 'model_load_json', await bestTime(o.repeat, () => MoEClassifier.fromJSON(JSON.parse(readFileSync(js, 'utf8')))));
    note(`io: model of ${model.parameterCount.toLocaleString('en-US')} parameters (${bytes.toFixed(1)} MB)`);

    // the cost of a training checkpoint (parameters + AdamW's two moments, written at every epoch
    // end) against the same fit without one; 512 rows, so that the write is a visible share
    const n = 512, xs = { data: new Float32Array(n * 784).map(() => rnd() - 0.5), rows: n, cols: 784 }, ys = Int32Array.from({ length: n }, (_, i) => i % 10);
    const fitOnce = (extra: object) => () => new MoEClassifier({ inputDim: 784, classes: 10, experts: 8, expertHidden: [512], device: 'cpu' })
      .fit(xs, ys, { epochs: 2, batchSize: 256, ...extra });
    const epoch = (system: string, mode: string, t: number) => line(system, mode, t / 2, 's_per_epoch', t / 2, 's');
    epoch('calmoe', 'fit_no_checkpoint', await bestTime(Math.min(o.repeat, 3), fitOnce({})));
    epoch('calmoe', 'fit_checkpoint_every_epoch', await bestTime(Math.min(o.repeat, 3), fitOnce({ checkpoint: { path: join(dir, 'c.ckpt') } })));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
