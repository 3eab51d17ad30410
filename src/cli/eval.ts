/** `calmoe eval`: metrics, the per-expert audit and an HTML report of a saved model on labelled data. */
import { writeFileSync } from 'node:fs';
import { Command } from 'commander';
import { htmlReport } from '../report/html-report.js';
import { auditSection, calibrationTable } from '../report/report-tables.js';
import { CliError, EXIT, EXIT_CODES_HELP, deviceOptions, fixed, intArg, loadData, output } from './common.js';
import { limits } from '../limits.js';
import { labelsFor, loadModel } from './model-arg.js';

interface EvalArgs { label?: string; labels?: string; bins: number; audit?: boolean; report?: string; device: 'auto' | 'cpu' | 'cuda'; precision: 'tf32' | 'fp32' | 'bf16'; json?: boolean }

export function evalCommand(): Command {
  return deviceOptions(new Command('eval')
    .description('evaluate a saved model: accuracy, NLL, Brier, ECE, expert load; --audit per expert; --report an HTML report')
    .argument('<model>', 'a model file saved by calmoe train')
    .argument('<data>', 'labelled data: .csv/.tsv with --label, .npy or IDX with --labels')
    .option('-l, --label <column>', 'the CSV column holding the labels')
    .option('--labels <file>', 'labels in a .npy or IDX file')
    .option('--bins <n>', 'calibration bins', intArg(1, () => limits().maxCalibrationBins), 15)
    .option('--audit', 'add the per-expert audit (own accuracy and ECE, load, regret and disagreement subsets)')
    .option('--report <file.html>', 'write a self-contained HTML report (reliability diagram, audit)')
    ).option('--json', 'print one JSON object')
    .addHelpText('after', `
Examples:
  $ calmoe eval iris.safetensors test.csv --label species
  $ calmoe eval model.safetensors shifted.csv --label y --audit --report shifted.html --json
${EXIT_CODES_HELP}`)
    .action(async (modelPath: string, data: string, o: EvalArgs) => {
      const model = loadModel(modelPath, o);
      const d = await loadData(data, { ...o, features: model.featureNames }, true);
      const y = labelsFor(model, d.labels!, data);
      const ev = await model.evaluate(d.x, y, { bins: o.bins, device: o.device, precision: o.precision });
      const audit = o.audit || o.report ? await model.audit(d.x, y, { bins: o.bins, device: o.device, precision: o.precision }) : undefined;
      if (o.report) {
        try {
          writeFileSync(o.report, htmlReport({
            title: `calmoe evaluation: ${modelPath} on ${data}`,
            sections: [
              { title: 'Calibration', tables: [calibrationTable({ [data]: ev.calibration })], figures: [{ kind: 'reliability', panels: [{ title: data, calibration: ev.calibration }] }] },
              auditSection('Experts', audit!),
            ],
          }));
        } catch (err) {
          throw new CliError(`--report ${o.report}: ${(err as Error).message}`, EXIT.input);
        }
      }
      const { calibration, ...metrics } = ev;
      output(!!o.json, { model: modelPath, data, rows: d.x.rows, ...metrics, mce: calibration.mce, bins: calibration.bins, ...(audit ? { audit } : {}), ...(o.report ? { report: o.report } : {}) }, () => {
        const lines = [`${d.x.rows} rows: accuracy ${fixed(ev.accuracy)}, NLL ${fixed(ev.nll)}, Brier ${fixed(ev.brier)}, ECE ${fixed(ev.ece)} (${o.bins} bins), MCE ${fixed(calibration.mce)}`];
        lines.push(`expert load (top-1 share): ${Array.from(ev.expertLoad.share, (s, k) => `${k}: ${(s * 100).toFixed(1)}%`).join(', ')}`);
        if (audit) {
          lines.push('expert  rows   own acc  own ECE  mixture acc  temperature');
          for (const e of audit.experts.experts)
            lines.push(`${String(e.expert).padStart(6)}  ${String(e.top1Rows).padStart(5)}  ${fixed(e.own.accuracy).padStart(7)}  ${fixed(e.own.ece).padStart(7)}  ${fixed(e.mixture.accuracy).padStart(11)}  ${fixed(e.temperature ?? undefined, 3).padStart(11)}`);
          const s = audit.subsets;
          lines.push(`hard subsets: top ${(s.disagreement.inside.share * 100).toFixed(0)}% by disagreement: accuracy ${fixed(s.disagreement.inside.accuracy)}, ECE ${fixed(s.disagreement.inside.ece)}; ` +
            `regret > 0 (${s.regret.inside.rows} rows): accuracy ${fixed(s.regret.inside.accuracy)}, ECE ${fixed(s.regret.inside.ece)}`);
        }
        if (o.report) lines.push(`report: ${o.report}`);
        return lines.join('\n');
      });
    });
}
