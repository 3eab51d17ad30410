/**
 * The experiment's HTML report (one self-contained file, src/report): the conclusion in words
 * from the run's numbers, the table, hard and soft side by side (reliability diagrams in
 * distribution and under the route shift), and route purity with what it implies.
 */
import { htmlReport, type ReportSection } from '../report/html-report.js';
import { calibrationTable } from '../report/report-tables.js';
import { formatSpread } from './summary.js';
import type { ExperimentResult, ModelName } from './runner.js';

const PAIRS: ReadonlyArray<readonly [string, ModelName, ModelName]> = [
  ['calibrated', 'hard + per-expert T', 'soft + per-expert + aggregate T'],
  ['uncalibrated', 'hard uncalibrated', 'soft uncalibrated'],
  ['tilted, calibrated', 'hard tilted + per-expert T', 'soft tilted + per-expert + aggregate T'],
];

export function experimentReport(r: ExperimentResult): string {
  const s = r.settings, d = r.data;
  const sections: ReportSection[] = [
    {
      title: 'Conclusion',
      paragraphs: [r.conclusion.shift, r.conclusion.purity, ...(r.conclusion.tilt ? [r.conclusion.tilt] : [])],
      metrics: [
        ['ECE change under route shift, hard + per-expert T', formatSpread(r.eceChange.hard)],
        ['ECE change under route shift, soft + per-expert + aggregate T', formatSpread(r.eceChange.soft)],
        ['moved less', r.conclusion.movedLess],
        ['route purity (hard, calibrated)', formatSpread(r.purity['hard + per-expert T'], 2)],
      ],
    },
    {
      title: 'Results',
      paragraphs: [`Mean ± sd over ${s.seeds} seed(s); ECE with 15 bins. Shifts are importance weights on the fixed test pool of ${d.testPool} rows: ` +
        'the route shift reverses the model\'s own top-1 route mix (P(y | route) kept); a domain-heavy shift weighs one corruption domain 3 to 1 (the worst of the four is shown); ' +
        'the difficult subset is the top 20% of the pool by the audit\'s expert disagreement, per model (rows per seed: ' +
        Object.entries(r.difficultRows).map(([m, n]) => `${m} ${n.join(', ')}`).join('; ') + ').'],
      tables: [{
        columns: ['Model', 'Evaluation', 'Accuracy', 'ECE', 'NLL', 'Brier'],
        rows: r.table.map((t) => [t.model, t.evaluation, formatSpread(t.accuracy), formatSpread(t.ece), formatSpread(t.nll), formatSpread(t.brier)]),
      }],
    },
    ...PAIRS.filter(([, hard]) => r.models.includes(hard)).map(([what, hard, soft]): ReportSection => ({
      title: `Hard and soft side by side (${what})`,
      paragraphs: [`Seed 1: ${hard} (left) and ${soft} (right), in distribution (top) and under the route shift (bottom).`],
      tables: [calibrationTable({
        [`${hard}, in distribution`]: r.reliability[hard].inDistribution, [`${soft}, in distribution`]: r.reliability[soft].inDistribution,
        [`${hard}, route shift`]: r.reliability[hard].routeShift, [`${soft}, route shift`]: r.reliability[soft].routeShift,
      })],
      figures: [{ kind: 'reliability', columns: 2, panels: [
        { title: `${hard}, in distribution`, calibration: r.reliability[hard].inDistribution },
        { title: `${soft}, in distribution`, calibration: r.reliability[soft].inDistribution },
        { title: `${hard}, route shift`, calibration: r.reliability[hard].routeShift },
        { title: `${soft}, route shift`, calibration: r.reliability[soft].routeShift },
      ] }],
    })),
    {
      title: 'Route purity',
      paragraphs: ['Route purity is the share of each route\'s test rows that come from its most common corruption domain, averaged by load: ' +
        '1 when routes follow the domains, 0.25 when they ignore them (4 domains). The theorem covers shifts that keep P(y | route); ' +
        'a domain-heavy shift does so only when routes follow the domains.', r.conclusion.purity],
      tables: [{
        columns: ['Model', 'Route purity', 'Routes used per seed'],
        rows: Object.entries(r.purity).map(([m, p]) => [m, formatSpread(p, 3), r.routesUsed[m as ModelName].join(', ')]),
      }],
    },
    {
      title: 'Settings',
      metrics: [['data', d.name], ['rows', d.rows], ['train', d.train], ['validation', d.validation], ['test pool', d.testPool],
        ['features', d.features], ['classes', d.classes], ['seeds', s.seeds], ['epochs', s.epochs], ['experts', s.experts],
        ['expert hidden', s.expertHidden.join(', ') || 'none'], ['batch size', s.batchSize], ['tilts tried', s.etas.join(', ') || 'none']],
      paragraphs: [`Domains: ${d.domains.join(', ')} (row r of each split is in domain r mod 4). ERM with AdamW (lr 1e-3, weight decay 1e-4) ` +
        'and a cosine schedule; calibrate() fitted on validation only (hard: per-expert temperatures; soft: per-expert and aggregate).',
        ...r.calibration.map((c) => `seed ${c.seed} ${c.routing}: calibrate kept ${c.scope}${c.warnings.length ? ` (${c.warnings.join('; ')})` : ''}`)],
    },
  ];
  return htmlReport({ title: 'calmoe shift experiment', subtitle: r.conclusion.shift, sections,
    footer: `calmoe experiment: ${s.seeds} seed(s), ${s.epochs} epochs, ${r.seconds.toFixed(1)} s` });
}
