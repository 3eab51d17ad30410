/**
 * A self-contained HTML report: one file that opens offline (inline CSS and inline SVG; no
 * scripts, fonts, images or links to fetch, and a Content-Security-Policy that forbids any), with
 * the metrics tables and diagrams of an evaluation. Every text is escaped; figures are given as
 * data and drawn here, so no caller-supplied markup reaches the page.
 */
import { rangeError, typeError } from '../errors.js';
import { histogramSvg, type HistogramSvgOptions } from './histogram-svg.js';
import { escapeXml, formatNumber } from './markup.js';
import { reliabilitySvgGrid, type ReliabilityPanel, type ReliabilityStyle } from './reliability-svg.js';

export type ReportCell = string | number | null | undefined;

export interface ReportTable {
  caption?: string;
  columns: ReadonlyArray<string>;
  rows: ReadonlyArray<ReadonlyArray<ReportCell>>;
  /** Indices of rows to emphasise (e.g. the worst group). */
  highlight?: ReadonlyArray<number>;
}

export type ReportFigure =
  | { kind: 'reliability'; panels: ReadonlyArray<ReliabilityPanel>; caption?: string; columns?: number; style?: ReliabilityStyle; level?: number; width?: number }
  | { kind: 'histogram'; histogram: { edges: ArrayLike<number>; counts: ArrayLike<number> }; title?: string; xLabel?: string; width?: number; height?: number };

export interface ReportSection {
  title: string;
  /** Paragraphs of plain text. */
  paragraphs?: ReadonlyArray<string>;
  /** Headline numbers, shown as a definition list. */
  metrics?: ReadonlyArray<readonly [string, ReportCell]> | Readonly<Record<string, ReportCell>>;
  tables?: ReadonlyArray<ReportTable>;
  figures?: ReadonlyArray<ReportFigure>;
}

export interface ReportSpec {
  title: string;
  subtitle?: string;
  sections: ReadonlyArray<ReportSection>;
  /** A line at the bottom (e.g. when and how the report was made). */
  footer?: string;
}

const CSS = `
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif; margin: 0; color: #1f1f1f; background: #f6f7f9; line-height: 1.45; }
header { background: #1f2a44; color: #ffffff; padding: 20px 32px; }
header h1 { margin: 0; font-size: 24px; }
header p { margin: 4px 0 0; color: #d5dbe8; }
nav { padding: 10px 32px; background: #ffffff; border-bottom: 1px solid #e1e4ea; font-size: 14px; }
nav a { margin-right: 16px; color: #2f5597; text-decoration: none; }
main { padding: 8px 32px 32px; }
section { background: #ffffff; border: 1px solid #e1e4ea; border-radius: 6px; margin: 20px 0; padding: 16px 20px; }
section h2 { margin: 0 0 10px; font-size: 19px; }
dl.metrics { display: flex; flex-wrap: wrap; gap: 8px 28px; margin: 8px 0 14px; }
dl.metrics div { min-width: 120px; }
dl.metrics dt { font-size: 12px; color: #5a6272; }
dl.metrics dd { margin: 0; font-size: 18px; font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; margin: 10px 0 18px; font-size: 13px; }
caption { text-align: left; font-weight: 600; padding: 4px 0 6px; }
th, td { border-bottom: 1px solid #e6e8ee; padding: 4px 10px; text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f0f2f6; font-weight: 600; }
th:first-child, td:first-child { text-align: left; }
tr.highlight td { background: #fff1f0; font-weight: 600; }
figure { margin: 10px 0 18px; overflow-x: auto; }
figcaption { font-size: 13px; color: #5a6272; }
footer { padding: 0 32px 24px; font-size: 12px; color: #5a6272; }
`;

function cell(v: ReportCell): string {
  return escapeXml(typeof v === 'number' ? formatNumber(v) : v === null || v === undefined ? '—' : v);
}

function str(v: unknown, name: string, optional = true): string | undefined {
  if (v === undefined && optional) return undefined;
  if (typeof v !== 'string') throw typeError(`${name}: expected a string`);
  return v;
}

function table(t: ReportTable, name: string): string {
  if (t === null || typeof t !== 'object') throw typeError(`${name}: expected { columns, rows }`);
  if (!Array.isArray(t.columns) || t.columns.some((c) => typeof c !== 'string')) throw typeError(`${name}.columns: expected an array of strings`);
  if (!Array.isArray(t.rows)) throw typeError(`${name}.rows: expected an array of rows`);
  const highlight = new Set(t.highlight ?? []);
  const caption = str(t.caption, `${name}.caption`);
  const head = `<tr>${t.columns.map((c) => `<th scope="col">${escapeXml(c)}</th>`).join('')}</tr>`;
  const body = t.rows.map((r, i) => {
    if (!Array.isArray(r)) throw typeError(`${name}.rows[${i}]: expected an array of cells`);
    if (r.length !== t.columns.length) throw rangeError(`${name}.rows[${i}]: has ${r.length} cells but there are ${t.columns.length} columns`);
    r.forEach((v, j) => {
      if (!(v === null || v === undefined || typeof v === 'string' || typeof v === 'number')) throw typeError(`${name}.rows[${i}][${j}]: expected a string, number or null`);
    });
    return `<tr${highlight.has(i) ? ' class="highlight"' : ''}>${r.map((v) => `<td>${cell(v)}</td>`).join('')}</tr>`;
  });
  return `<table>${caption !== undefined ? `<caption>${escapeXml(caption)}</caption>` : ''}<thead>${head}</thead><tbody>${body.join('')}</tbody></table>`;
}

function figure(f: ReportFigure, name: string): string {
  if (f === null || typeof f !== 'object') throw typeError(`${name}: expected a figure { kind, ... }`);
  if (f.kind === 'reliability') {
    const svg = reliabilitySvgGrid(f.panels, { caption: f.caption, columns: f.columns, style: f.style, level: f.level, width: f.width, xmlns: false });
    return `<figure>${svg}</figure>`;
  }
  if (f.kind === 'histogram') {
    const opts: HistogramSvgOptions = { title: f.title, xLabel: f.xLabel, width: f.width, height: f.height, xmlns: false };
    return `<figure>${histogramSvg(f.histogram, opts)}</figure>`;
  }
  throw rangeError(`${name}.kind: expected 'reliability' or 'histogram', got ${String((f as { kind?: unknown }).kind)}`);
}

function metrics(m: ReportSection['metrics'], name: string): string {
  if (m === undefined) return '';
  if (m === null || typeof m !== 'object') throw typeError(`${name}: expected [label, value] pairs or an object`);
  const pairs: Array<readonly [string, ReportCell]> = Array.isArray(m) ? m : Object.entries(m);
  return `<dl class="metrics">${pairs.map(([k, v]) => `<div><dt>${escapeXml(k)}</dt><dd>${cell(v)}</dd></div>`).join('')}</dl>`;
}

/**
 * The report as one HTML document (a string); write it to a file and open it anywhere, offline.
 *
 * @example
 * const html = htmlReport({
 *   title: 'Evaluation',
 *   sections: [{
 *     title: 'Calibration',
 *     tables: [calibrationTable({ 'in-distribution': a, shifted: b })],
 *     figures: [{ kind: 'reliability', panels: [{ title: 'in-distribution', calibration: a }, { title: 'shifted', calibration: b }] }],
 *   }],
 * });
 */
export function htmlReport(spec: ReportSpec): string {
  if (spec === null || typeof spec !== 'object') throw typeError('spec: expected { title, sections }');
  const title = str(spec.title, 'spec.title', false)!;
  const subtitle = str(spec.subtitle, 'spec.subtitle');
  const footer = str(spec.footer, 'spec.footer');
  const sections: ReadonlyArray<ReportSection> = spec.sections;
  if (!Array.isArray(sections)) throw typeError('spec.sections: expected an array of sections');
  const nav: string[] = [];
  const body = sections.map((s: ReportSection, i: number) => {
    const name = `spec.sections[${i}]`;
    if (s === null || typeof s !== 'object') throw typeError(`${name}: expected { title, ... }`);
    const t = str(s.title, `${name}.title`, false)!;
    nav.push(`<a href="#section-${i + 1}">${escapeXml(t)}</a>`);
    const parts = [`<section id="section-${i + 1}"><h2>${escapeXml(t)}</h2>`];
    (s.paragraphs ?? []).forEach((p: string, j: number) => parts.push(`<p>${escapeXml(str(p, `${name}.paragraphs[${j}]`, false))}</p>`));
    parts.push(metrics(s.metrics, `${name}.metrics`));
    (s.tables ?? []).forEach((tb: ReportTable, j: number) => parts.push(table(tb, `${name}.tables[${j}]`)));
    (s.figures ?? []).forEach((f: ReportFigure, j: number) => parts.push(figure(f, `${name}.figures[${j}]`)));
    parts.push('</section>');
    return parts.join('\n');
  });
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeXml(title)}</title>`,
    `<style>${CSS}</style>`,
    '</head>',
    '<body>',
    `<header><h1>${escapeXml(title)}</h1>${subtitle !== undefined ? `<p>${escapeXml(subtitle)}</p>` : ''}</header>`,
    nav.length > 1 ? `<nav>${nav.join('')}</nav>` : '',
    '<main>',
    ...body,
    '</main>',
    footer !== undefined ? `<footer>${escapeXml(footer)}</footer>` : '',
    '</body>',
    '</html>',
    '',
  ].join('\n');
}
