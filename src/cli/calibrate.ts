/** `calmoe calibrate`: per-expert temperatures fitted on held-out data, written into the model file. */
import { Command } from 'commander';
import { fitTemperature } from '../calibrate/temperature.js';
import { toLabels } from '../validate.js';
import { EXIT_CODES_HELP, deviceOptions, fixed, loadData, output } from './common.js';
import { labelsFor, loadModel } from './model-arg.js';

interface CalibrateArgs { label?: string; labels?: string; output?: string; device: 'auto' | 'cpu' | 'cuda'; precision: 'tf32' | 'fp32' | 'bf16'; json?: boolean }

export function calibrateCommand(): Command {
  return deviceOptions(new Command('calibrate')
    .description('fit per-expert temperatures T_k on held-out labelled data and write them into the model file; also reports the aggregate temperature fit')
    .argument('<model>', 'a model file saved by calmoe train (rewritten in place unless -o)')
    .argument('<data>', 'held-out labelled data: .csv/.tsv with --label, .npy or IDX with --labels')
    .option('-l, --label <column>', 'the CSV column holding the labels')
    .option('--labels <file>', 'labels in a .npy or IDX file')
    .option('-o, --output <file>', 'write the calibrated model here instead of over <model>')
    ).option('--json', 'print one JSON object')
    .addHelpText('after', `
Examples:
  $ calmoe calibrate model.safetensors val.csv --label y
  $ calmoe calibrate model.safetensors val.npy --labels val-labels.npy -o calibrated.safetensors --json
${EXIT_CODES_HELP}`)
    .action(async (modelPath: string, data: string, o: CalibrateArgs) => {
      const model = loadModel(modelPath, o);
      const d = await loadData(data, { ...o, features: model.featureNames }, true);
      const y = labelsFor(model, d.labels!, data);
      const before = await model.evaluate(d.x, y, { device: o.device, precision: o.precision });
      const fit = await model.calibrateExperts(d.x, y, { device: o.device, precision: o.precision });
      const after = await model.evaluate(d.x, y, { device: o.device, precision: o.precision });
      // the aggregate temperature on the calibrated mixture, reported (the model file keeps per-expert temperatures)
      const p = await model.predict(d.x, { device: o.device, precision: o.precision });
      const aggregate = await fitTemperature(p.probs, toLabels(y, 'labels', d.x.rows, model.classNames), { input: 'probabilities' });
      const out = o.output ?? modelPath;
      model.save(out);
      output(!!o.json, { model: out, rows: d.x.rows, temperatures: Array.from(model.temperatures), experts: fit.experts,
        before: { nll: before.nll, ece: before.ece }, after: { nll: after.nll, ece: after.ece }, aggregate: { ...aggregate, writtenToModel: false } }, () =>
        `wrote ${out}: per-expert temperatures ${Array.from(model.temperatures, (t) => t.toFixed(3)).join(', ')}\n` +
        `NLL ${fixed(before.nll)} -> ${fixed(after.nll)}, ECE ${fixed(before.ece)} -> ${fixed(after.ece)} on ${d.x.rows} rows\n` +
        `aggregate temperature of the calibrated mixture: ${aggregate.temperature.toFixed(3)} (NLL ${fixed(aggregate.nllBefore)} -> ${fixed(aggregate.nllAfter)}; reported, not written into the model)`);
    });
}
