/** `calmoe calibrate`: the temperatures the model's routing needs, fitted on held-out data and written into the model file. */
import { Command } from 'commander';
import { EXIT_CODES_HELP, deviceOptions, fixed, loadData, output } from './common.js';
import { labelsFor, loadModel } from './model-arg.js';

interface CalibrateArgs { label?: string; labels?: string; output?: string; minRows: string; keepWorse?: boolean; device: 'auto' | 'cpu' | 'cuda';
  precision: 'tf32' | 'fp32' | 'bf16'; json?: boolean }

export function calibrateCommand(): Command {
  return deviceOptions(new Command('calibrate')
    .description('calibrate the model as its routing needs (hard: per-expert temperatures T_k; soft and top-k: per-expert, then the mixture\'s ' +
      'temperature) on held-out labelled data, and write the temperatures into the model file; a calibration that makes the NLL worse is reverted')
    .argument('<model>', 'a model file saved by calmoe train (rewritten in place unless -o)')
    .argument('<data>', 'held-out labelled data: .csv/.tsv with --label, .npy or IDX with --labels')
    .option('-l, --label <column>', 'the CSV column holding the labels')
    .option('--labels <file>', 'labels in a .npy or IDX file')
    .option('-o, --output <file>', 'write the calibrated model here instead of over <model>')
    .option('--min-rows <n>', 'experts routed fewer rows keep T = 1', '20')
    .option('--keep-worse', 'keep the new temperatures even when the NLL gets worse (default: revert them)')
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
      const minRows = Number(o.minRows);
      if (!Number.isFinite(minRows) || minRows < 0) throw new RangeError(`--min-rows: expected a number >= 0, got '${o.minRows}'`);
      const before = await model.evaluate(d.x, y, { device: o.device, precision: o.precision });
      const cal = await model.calibrate(d.x, y, { minRows, ifWorse: o.keepWorse ? 'keep' : 'revert', device: o.device, precision: o.precision });
      const after = await model.evaluate(d.x, y, { device: o.device, precision: o.precision });
      const out = o.output ?? modelPath;
      model.save(out);
      output(!!o.json, { model: out, rows: d.x.rows, scope: cal.scope, kept: cal.kept, temperatures: Array.from(model.temperatures),
        aggregateTemperature: model.aggregateTemperature, experts: cal.experts.experts, warnings: cal.warnings,
        before: { nll: before.nll, ece: before.ece }, after: { nll: after.nll, ece: after.ece } }, () =>
        `wrote ${out} (${cal.scope}): per-expert temperatures ${Array.from(model.temperatures, (t) => t.toFixed(3)).join(', ')}; ` +
        `aggregate temperature ${model.aggregateTemperature.toFixed(3)}\n` +
        `NLL ${fixed(before.nll)} -> ${fixed(after.nll)}, ECE ${fixed(before.ece)} -> ${fixed(after.ece)} on ${d.x.rows} rows` +
        (cal.warnings.length ? `\n${cal.warnings.map((w) => `warning: ${w}`).join('\n')}` : ''));
    });
}
