/**
 * Report tables (and a whole audit section) built from the package's results: calibration
 * reports, temperature fits, per-expert temperatures and the MoE audits.
 */
import type { MoEAudit } from '../audit/moe-audit.js';
import type { ExpertAudit } from '../audit/expert-audit.js';
import type { HardSubsets, SubsetStats } from '../audit/hard-subsets.js';
import type { RoutingStats } from '../audit/routing-stats.js';
import type { ExpertTemperatureResult } from '../calibrate/expert-temperatures.js';
import type { TemperatureFit } from '../calibrate/temperature.js';
import { typeError } from '../errors.js';
import type { CalibrationReport } from '../metrics/calibration.js';
import type { ReportSection, ReportTable } from './html-report.js';
import { formatNumber, formatPercent } from './markup.js';

function entries<T>(x: Readonly<Record<string, T>>, name: string): Array<[string, T]> {
  if (x === null || typeof x !== 'object' || Array.isArray(x)) throw typeError(`${name}: expected an object { name: value }`);
  return Object.entries(x);
}

/**
 * One row per named calibration report: rows, accuracy, ECE, MCE, RMSCE, NLL, Brier.
 *
 * @example
 * calibrationTable({ 'in-distribution': a, shifted: b }, 'Calibration of the blend');
 */
export function calibrationTable(reports: Readonly<Record<string, CalibrationReport>>, caption?: string): ReportTable {
  return {
    caption,
    columns: ['Evaluation', 'Rows', 'Accuracy', 'ECE', 'MCE', 'RMSCE', 'NLL', 'Brier'],
    rows: entries(reports, 'reports').map(([name, r]) => [
      name, r.rows, formatPercent(r.accuracy), formatPercent(r.ece), formatPercent(r.mce), formatPercent(r.rmsce), formatNumber(r.nll), formatNumber(r.brier),
    ]),
  };
}

/** One row per named temperature fit: T, NLL and ECE before and after, iterations. */
export function temperatureTable(fits: Readonly<Record<string, TemperatureFit>>, caption?: string): ReportTable {
  return {
    caption,
    columns: ['Fit', 'Temperature', 'NLL before', 'NLL after', 'ECE before', 'ECE after', 'Evaluations', 'Converged'],
    rows: entries(fits, 'fits').map(([name, f]) => [
      name, formatNumber(f.temperature), formatNumber(f.nllBefore), formatNumber(f.nllAfter), formatPercent(f.eceBefore), formatPercent(f.eceAfter),
      f.iterations, f.converged ? (f.atBound ? `yes (at ${f.atBound})` : 'yes') : 'no',
    ]),
  };
}

/** One row per expert: rows, weight, temperature, NLL before and after. */
export function expertTemperatureTable(r: ExpertTemperatureResult, caption?: string): ReportTable {
  return {
    caption,
    columns: ['Expert', 'Rows', 'Weight', 'Temperature', 'NLL before', 'NLL after', 'Converged'],
    rows: r.experts.map((e) => [
      e.expert, e.rows, formatNumber(e.weight), formatNumber(e.temperature), formatNumber(e.nllBefore), formatNumber(e.nllAfter),
      e.rows === 0 ? 'no rows' : e.converged ? (e.atBound ? `clamped (${e.atBound})` : 'yes') : 'no',
    ]),
  };
}

/** One row per expert: load, own and blended accuracy / ECE / confidence on its top-1 rows. */
export function expertAuditTable(a: ExpertAudit, caption?: string): ReportTable {
  const worst = a.worst.ece;
  return {
    caption,
    columns: ['Expert', 'Top-1 share', 'Mass share', 'Rows', 'Own accuracy', 'Own ECE', 'Own confidence', 'Blend accuracy', 'Blend ECE', 'Temperature'],
    rows: a.experts.map((e) => [
      e.expert, formatPercent(e.top1Share, 1), formatPercent(e.massShare, 1), e.top1Rows,
      formatPercent(e.own.accuracy), formatPercent(e.own.ece), formatNumber(e.own.meanConfidence),
      formatPercent(e.mixture.accuracy), formatPercent(e.mixture.ece), e.temperature === null ? null : formatNumber(e.temperature),
    ]),
    highlight: worst === null ? [] : [worst],
  };
}

function subsetRow(name: string, s: SubsetStats) {
  return [name, s.rows, formatPercent(s.share, 1), formatPercent(s.accuracy), formatPercent(s.ece), formatNumber(s.nll), formatNumber(s.meanConfidence)];
}

const SUBSET_COLUMNS = ['Subset', 'Rows', 'Share', 'Accuracy', 'ECE', 'NLL', 'Mean confidence'];

/** The blend on every hard subset (inside and outside), and on all rows. */
export function hardSubsetTable(h: HardSubsets, caption?: string): ReportTable {
  const rows = [
    subsetRow('All rows', h.overall),
    subsetRow(`Top ${formatPercent(h.disagreement.share, 0)} disagreement`, h.disagreement.inside),
    subsetRow('Other rows', h.disagreement.outside),
    subsetRow(`Regret > ${formatNumber(h.regret.threshold)}`, h.regret.inside),
    subsetRow('No regret', h.regret.outside),
  ];
  if (h.mask) rows.push(subsetRow('Mask', h.mask.inside), subsetRow('Outside the mask', h.mask.outside));
  return { caption, columns: SUBSET_COLUMNS, rows };
}

/** The blend per user group, the worst (by ECE) highlighted. */
export function groupTable(h: HardSubsets, caption?: string): ReportTable | null {
  if (!h.groups) return null;
  const worst = h.groups.worst.ece;
  return {
    caption,
    columns: ['Group', ...SUBSET_COLUMNS.slice(1)],
    rows: h.groups.groups.map((g) => subsetRow(g.name ?? String(g.group), g)),
    highlight: worst === null ? [] : [worst],
  };
}

/** Routing statistics: entropy, top weight, no-dominant share; expert usage. */
export function routingTable(r: RoutingStats, caption?: string): ReportTable {
  const q = r.entropy.quantiles;
  return {
    caption,
    columns: ['Statistic', 'Value'],
    rows: [
      ['Rows', r.rows],
      ['Experts (slots per row)', `${r.experts} (${r.slots})`],
      ['Mean routing entropy (nats)', formatNumber(r.entropy.mean)],
      ['Entropy quantiles 10/50/90%', `${formatNumber(q.p10, 3)} / ${formatNumber(q.p50, 3)} / ${formatNumber(q.p90, 3)}`],
      ['Mean entropy / log K', formatNumber(r.normalizedEntropy)],
      ['Mean top-1 weight', formatNumber(r.maxWeight.mean)],
      [`No dominant expert (top weight < ${formatNumber(r.dominance)})`, formatPercent(r.noDominantShare, 1)],
      ...Array.from(r.usage.top1Share, (s, e) => [`Expert ${e}: top-1 share / mass share`, `${formatPercent(s, 1)} / ${formatPercent(r.usage.massShare[e], 1)}`] as [string, string]),
    ],
  };
}

/**
 * A report section with every table of a MoE audit and the routing-entropy histogram.
 *
 * @example
 * htmlReport({ title: 'Audit', sections: [auditSection('Shifted test set', moeAuditSync(outputs))] });
 */
export function auditSection(title: string, a: MoEAudit, paragraphs?: ReadonlyArray<string>): ReportSection {
  const groups = groupTable(a.subsets, 'User groups (worst ECE highlighted)');
  return {
    title,
    paragraphs,
    metrics: [
      ['Rows', a.rows],
      ['Accuracy', formatPercent(a.subsets.overall.accuracy)],
      ['ECE', formatPercent(a.subsets.overall.ece)],
      ['NLL', formatNumber(a.subsets.overall.nll)],
      ['Rows with regret', formatPercent(a.subsets.regret.inside.share, 1)],
      ['No dominant expert', formatPercent(a.routing.noDominantShare, 1)],
    ],
    tables: [
      expertAuditTable(a.experts, 'Experts on their top-1 rows (worst own ECE highlighted)'),
      hardSubsetTable(a.subsets, 'Hard subsets (the blend)'),
      ...(groups ? [groups] : []),
      routingTable(a.routing, 'Routing'),
    ],
    figures: [{ kind: 'histogram', histogram: a.routing.entropy.histogram, title: 'Routing entropy', xLabel: 'entropy (nats)' }],
  };
}
