/** The experiment's result as plain text (the CLI's and the demo's printout): what ran, the table, the conclusion. */
import type { ExperimentResult } from './runner.js';
import { formatSpread } from './summary.js';

export function experimentText(r: ExperimentResult): string {
  const d = r.data, s = r.settings;
  return [
    `${d.name}: ${d.train} train, ${d.validation} validation, ${d.testPool} test pool; ${d.domains.length} domains (${d.domains.join(', ')})`,
    `${s.seeds} seed(s), ${s.epochs} epochs, ${s.experts} experts (hidden ${s.expertHidden.join(',') || 'none'}), batch ${s.batchSize}, ` +
      `tilts ${s.etas.join(', ') || 'none'}; ${r.seconds.toFixed(0)} s; mean ± sd over seeds, ECE with 15 bins`,
    '',
    ['model', 'evaluation', 'accuracy', 'ECE', 'NLL', 'Brier'].join(' | '),
    ...r.table.map((t) => [t.model, t.evaluation, formatSpread(t.accuracy), formatSpread(t.ece), formatSpread(t.nll), formatSpread(t.brier)].join(' | ')),
    '',
    r.conclusion.text,
  ].join('\n');
}
