/** `calmoe predict`: class probabilities (and routes) of a saved model, written as CSV or .npy. */
import { Command } from 'commander';
import { formatNpy } from '../io/npy.js';
import { writeFileAtomic } from '../io/safetensors.js';
import { CliError, EXIT, EXIT_CODES_HELP, deviceOptions, loadData, output } from './common.js';
import { loadModel } from './model-arg.js';

interface PredictArgs { output: string; label?: string; routes?: boolean; device: 'auto' | 'cpu' | 'cuda'; precision: 'tf32' | 'fp32' | 'bf16'; json?: boolean }

export function predictCommand(): Command {
  return deviceOptions(new Command('predict')
    .description('predict with a saved model: probabilities, the predicted class and (--routes) the routing, as CSV or .npy')
    .argument('<model>', 'a model file saved by calmoe train')
    .argument('<data>', 'features: .csv/.tsv, .npy or IDX')
    .requiredOption('-o, --output <file>', 'out.csv (a header row: p_<class>..., prediction[, expert, r_<k>...]) or out.npy (rows x classes; --routes adds out.routes.npy, rows x experts)')
    .option('-l, --label <column>', "a CSV column to leave out of the features (not needed when the model has the training CSV's column names)")
    .option('--routes', 'also write each row\'s routing weights and top-1 expert')
    ).option('--json', 'print a JSON summary')
    .addHelpText('after', `
Examples:
  $ calmoe predict iris.safetensors new.csv -o predictions.csv
  $ calmoe predict model.safetensors x.npy -o probs.npy --routes     # probs.npy and probs.routes.npy
${EXIT_CODES_HELP}`)
    .action(async (modelPath: string, data: string, o: PredictArgs) => {
      const model = loadModel(modelPath, o);
      const d = await loadData(data, { label: o.label, features: model.featureNames }, false);
      const p = await model.predict(d.x, { returnRouting: !!o.routes, device: o.device, precision: o.precision });
      const { rows } = d.x, { classes: C, experts: K } = model.config;
      const names = model.classNames ?? Array.from({ length: C }, (_, c) => String(c));
      const pred = new Int32Array(rows);
      for (let i = 0; i < rows; i++) {
        let best = 0;
        for (let c = 1; c < C; c++) if (p.probs.data[i * C + c] > p.probs.data[i * C + best]) best = c;
        pred[i] = best;
      }
      const top1 = (i: number) => {
        const w = p.routing!.weights.data;
        let b = 0;
        for (let k = 1; k < K; k++) if (w[i * K + k] > w[i * K + b]) b = k;
        return b;
      };
      const written = [o.output];
      const lower = o.output.toLowerCase();
      if (lower.endsWith('.npy')) {
        writeFileAtomic(o.output, formatNpy(p.probs.data, [rows, C]));
        if (o.routes) {
          const r = o.output.replace(/\.npy$/i, '.routes.npy');
          writeFileAtomic(r, formatNpy(p.routing!.weights.data, [rows, K]));
          written.push(r);
        }
      } else if (lower.endsWith('.csv')) {
        const quote = (s: string) => (/[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
        const header = [...names.map((n) => quote(`p_${n}`)), 'prediction', ...(o.routes ? ['expert', ...Array.from({ length: K }, (_, k) => `r_${k}`)] : [])];
        const lines = [header.join(',')];
        for (let i = 0; i < rows; i++) {
          const cells = Array.from(p.probs.data.subarray(i * C, (i + 1) * C), String);
          cells.push(quote(names[pred[i]]));
          if (o.routes) cells.push(String(top1(i)), ...Array.from(p.routing!.weights.data.subarray(i * K, (i + 1) * K), String));
          lines.push(cells.join(','));
        }
        writeFileAtomic(o.output, Buffer.from(lines.join('\n') + '\n'));
      } else throw new CliError(`--output ${o.output}: expected a .csv or .npy file name`, EXIT.usage);
      const counts = names.map((n, c) => [n, pred.reduce((a, v) => a + (v === c ? 1 : 0), 0)] as const);
      output(!!o.json, { model: modelPath, data, rows, written, predicted: Object.fromEntries(counts) }, () =>
        `wrote ${written.join(' and ')}: ${rows} rows; predicted ${counts.map(([n, k]) => `${n}: ${k}`).join(', ')}`);
    });
}
