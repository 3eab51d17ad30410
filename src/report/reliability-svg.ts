/**
 * Reliability diagrams as SVG a person can read: accuracy per confidence bin (bars or points),
 * the diagonal of perfect calibration, the gap between accuracy and confidence shaded, a Wilson
 * band per bin, a histogram of the confidences below, axes with ticks and labels, and the ECE in
 * the title. Several diagrams side by side in one SVG (in-distribution vs shifted, soft vs hard).
 *
 * The markup is self-contained: presentation attributes only (no CSS, no ids, no external fonts
 * or links), every user-supplied text escaped, so it renders the same standalone, inline in HTML,
 * or several times on one page.
 */
import { rangeError, typeError } from '../errors.js';
import { escapeXml, fitFontSize, formatNumber, formatPercent, px } from './markup.js';
import { ownProperties } from '../validate.js';
import { type CalibrationLike, type ReliabilityDiagram, reliabilityDiagram } from './reliability-diagram.js';

export type ReliabilityStyle = 'bars' | 'points';

export interface ReliabilitySvgOptions {
  /** Shown before the ECE in the title (escaped). */
  title?: string;
  /** 'bars' (default: accuracy bars over each bin's extent) or 'points' (at each bin's mean confidence). */
  style?: ReliabilityStyle;
  /** Panel width in px (default 360; the height follows). */
  width?: number;
  /** Confidence level of the Wilson bands when a report is given (default 0.95). */
  level?: number;
  /** Draw the confidence histogram (default true). */
  histogram?: boolean;
  /** Draw the legend (default true). */
  legend?: boolean;
  /** Emit xmlns (default true; inline HTML does not need it). */
  xmlns?: boolean;
}

export interface ReliabilityPanel {
  title?: string;
  /** A calibration report (or its bins), or diagram data from {@link reliabilityDiagram}. */
  calibration: CalibrationLike | ReliabilityDiagram;
}

export interface ReliabilityGridOptions extends Omit<ReliabilitySvgOptions, 'title'> {
  /** Panels per row (default: all in one row). */
  columns?: number;
  /** A caption above the panels (escaped). */
  caption?: string;
}

const FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif";
const COLORS = { bar: '#4c78a8', gap: '#e45756', band: '#1f1f1f', diagonal: '#7f7f7f', hist: '#9ecae9', grid: '#e6e6e6', axis: '#333333', text: '#1f1f1f' };

interface Parsed {
  style: ReliabilityStyle;
  width: number;
  level: number;
  histogram: boolean;
  legend: boolean;
  xmlns: boolean;
}

function parse(options: unknown, extra: readonly string[]): Parsed & Record<string, unknown> {
  if (options !== undefined && (options === null || typeof options !== 'object' || Array.isArray(options))) throw typeError('options: expected an object');
  const o = ownProperties(options ?? {});
  const known = ['style', 'width', 'level', 'histogram', 'legend', 'xmlns', ...extra];
  for (const k of Object.keys(o)) if (!known.includes(k)) throw rangeError(`options: unknown option '${k}' (known: ${known.join(', ')})`);
  const style = o.style ?? 'bars';
  if (style !== 'bars' && style !== 'points') throw (typeof style === 'string' ? rangeError : typeError)(`style: expected one of 'bars', 'points', got ${String(style)}`);
  const width = o.width ?? 360;
  if (typeof width !== 'number') throw typeError('width: expected a number');
  if (!(width >= 200 && width <= 4000)) throw rangeError(`width: expected a number in [200, 4000], got ${width}`);
  const level = o.level ?? 0.95;
  if (typeof level !== 'number') throw typeError('level: expected a number');
  if (!(level > 0 && level < 1)) throw rangeError(`level: expected a number in (0, 1), got ${level}`);
  const flag = (k: string) => {
    const v = o[k] ?? true;
    if (typeof v !== 'boolean') throw typeError(`${k}: expected a boolean`);
    return v;
  };
  return Object.assign(o, { style, width, level, histogram: flag('histogram'), legend: flag('legend'), xmlns: flag('xmlns') }) as Parsed & Record<string, unknown>;
}

function isDiagram(x: unknown): x is ReliabilityDiagram {
  return x !== null && typeof x === 'object' && Array.isArray((x as ReliabilityDiagram).bins) && typeof (x as ReliabilityDiagram).level === 'number';
}

// Diagram data given directly reaches the SVG: every field must be a number (NaN allowed where a
// bin is empty), so nothing a caller passes becomes markup.
function checkDiagram(d: ReliabilityDiagram, name: string): ReliabilityDiagram {
  const num = (v: unknown, at: string) => {
    if (typeof v !== 'number') throw typeError(`${name}.${at}: expected a number, got ${typeof v}`);
  };
  for (const k of ['rows', 'ece', 'mce', 'accuracy', 'level'] as const) num(d[k], k);
  d.bins.forEach((b, i) => {
    if (b === null || typeof b !== 'object') throw typeError(`${name}.bins[${i}]: expected a bin object`);
    for (const k of ['lower', 'upper', 'count', 'confidence', 'accuracy', 'gap', 'low', 'high'] as const) num(b[k], `bins[${i}].${k}`);
  });
  return d;
}

function toDiagram(c: unknown, level: number, name: string): ReliabilityDiagram {
  if (c === null || typeof c !== 'object') throw typeError(`${name}: expected a calibration report or reliability-diagram data`);
  return isDiagram(c) ? checkDiagram(c, name) : reliabilityDiagram(c as CalibrationLike, { level });
}

/** Height of a panel of the given width. */
function panelHeight(width: number, histogram: boolean): number {
  const plot = width - 72;
  return 50 + plot + (histogram ? 76 : 0) + 46;
}

/** One diagram's elements, in a width x panelHeight box at the origin. */
function panel(d: ReliabilityDiagram, title: string | undefined, o: Parsed): string {
  const W = o.width;
  const left = 56, top = 50;
  const P = W - 72; // square plot side
  const x = (v: number) => left + v * P;
  const y = (v: number) => top + (1 - v) * P;
  const out: string[] = [];
  const t = (title ? `${title} — ` : '') + `ECE ${formatPercent(d.ece)}`;
  out.push(`<text class="title" x="${px(W / 2)}" y="20" text-anchor="middle" font-size="${fitFontSize(t, 15, W - 12)}" font-weight="600" fill="${COLORS.text}">${escapeXml(t)}</text>`);
  const levelPct = `${formatNumber(d.level * 100, 3)}%`;
  const sub = `n = ${d.rows} · accuracy ${formatPercent(d.accuracy, 1)} · MCE ${formatPercent(d.mce, 1)} · ${levelPct} Wilson bands`;
  out.push(`<text class="subtitle" x="${px(W / 2)}" y="38" text-anchor="middle" font-size="${fitFontSize(sub, 11, W - 12, 0.52)}" fill="#555555">${escapeXml(sub)}</text>`);
  // grid, ticks, frame
  for (let i = 0; i <= 5; i++) {
    const v = i / 5;
    out.push(`<line class="grid" x1="${px(x(v))}" y1="${px(y(0))}" x2="${px(x(v))}" y2="${px(y(1))}" stroke="${COLORS.grid}" stroke-width="1"/>`);
    out.push(`<line class="grid" x1="${px(x(0))}" y1="${px(y(v))}" x2="${px(x(1))}" y2="${px(y(v))}" stroke="${COLORS.grid}" stroke-width="1"/>`);
    out.push(`<text class="tick" x="${px(left - 6)}" y="${px(y(v) + 4)}" text-anchor="end" font-size="10" fill="${COLORS.axis}">${v.toFixed(1)}</text>`);
  }
  out.push(`<line class="diagonal" x1="${px(x(0))}" y1="${px(y(0))}" x2="${px(x(1))}" y2="${px(y(1))}" stroke="${COLORS.diagonal}" stroke-width="1.2" stroke-dasharray="5 4"/>`);
  const nonEmpty = d.bins.filter((b) => b.count > 0);
  const levelText = `${formatNumber(d.level * 100, 3)}% interval`;
  for (const b of nonEmpty) {
    const tip = `<title>${escapeXml(`bin [${formatNumber(b.lower, 3)}, ${formatNumber(b.upper, 3)}]: n = ${b.count}, accuracy ${formatNumber(b.accuracy, 3)} (${levelText} ${formatNumber(b.low, 3)}–${formatNumber(b.high, 3)}), mean confidence ${formatNumber(b.confidence, 3)}`)}</title>`;
    const cx = o.style === 'bars' ? (b.lower + b.upper) / 2 : b.confidence;
    if (o.style === 'bars') {
      const x0 = x(b.lower) + 0.75, w = Math.max(0.5, (b.upper - b.lower) * P - 1.5);
      out.push(`<rect class="bar" x="${px(x0)}" y="${px(y(b.accuracy))}" width="${px(w)}" height="${px(b.accuracy * P)}" fill="${COLORS.bar}" fill-opacity="0.85">${tip}</rect>`);
      const hi = Math.max(b.accuracy, b.confidence), lo = Math.min(b.accuracy, b.confidence);
      if (hi > lo) out.push(`<rect class="gap" x="${px(x0)}" y="${px(y(hi))}" width="${px(w)}" height="${px((hi - lo) * P)}" fill="${COLORS.gap}" fill-opacity="0.35" stroke="${COLORS.gap}" stroke-width="0.8"/>`);
    } else {
      const hi = Math.max(b.accuracy, b.confidence), lo = Math.min(b.accuracy, b.confidence);
      if (hi > lo) out.push(`<rect class="gap" x="${px(x(cx) - 4)}" y="${px(y(hi))}" width="8" height="${px((hi - lo) * P)}" fill="${COLORS.gap}" fill-opacity="0.35"/>`);
    }
    // Wilson band with caps
    out.push(`<g class="band" stroke="${COLORS.band}" stroke-width="1.1"><line x1="${px(x(cx))}" y1="${px(y(b.low))}" x2="${px(x(cx))}" y2="${px(y(b.high))}"/>` +
      `<line x1="${px(x(cx) - 3)}" y1="${px(y(b.low))}" x2="${px(x(cx) + 3)}" y2="${px(y(b.low))}"/><line x1="${px(x(cx) - 3)}" y1="${px(y(b.high))}" x2="${px(x(cx) + 3)}" y2="${px(y(b.high))}"/></g>`);
    if (o.style === 'points')
      out.push(`<circle class="point" cx="${px(x(b.confidence))}" cy="${px(y(b.accuracy))}" r="3.5" fill="${COLORS.bar}" stroke="#ffffff" stroke-width="1">${tip}</circle>`);
  }
  out.push(`<rect class="frame" x="${px(x(0))}" y="${px(y(1))}" width="${px(P)}" height="${px(P)}" fill="none" stroke="${COLORS.axis}" stroke-width="1"/>`);
  out.push(`<text class="axis-label" transform="translate(16 ${px(top + P / 2)}) rotate(-90)" text-anchor="middle" font-size="12" fill="${COLORS.text}">Accuracy</text>`);
  let bottom = top + P;
  if (o.histogram) {
    const H = 60, h0 = bottom + 12;
    const max = Math.max(1, ...nonEmpty.map((b) => b.count));
    out.push(`<rect class="hist-frame" x="${px(x(0))}" y="${px(h0)}" width="${px(P)}" height="${H}" fill="none" stroke="${COLORS.axis}" stroke-width="0.8"/>`);
    for (const b of nonEmpty) {
      const h = (b.count / max) * (H - 2);
      const x0 = x(b.lower) + 0.75, w = Math.max(0.5, (b.upper - b.lower) * P - 1.5);
      out.push(`<rect class="hist" x="${px(x0)}" y="${px(h0 + H - h)}" width="${px(w)}" height="${px(h)}" fill="${COLORS.hist}"><title>n = ${b.count} (${formatPercent(b.count / d.rows, 1)})</title></rect>`);
    }
    out.push(`<text class="tick" x="${px(left - 6)}" y="${px(h0 + 9)}" text-anchor="end" font-size="10" fill="${COLORS.axis}">${max}</text>`);
    out.push(`<text class="tick" x="${px(left - 6)}" y="${px(h0 + H)}" text-anchor="end" font-size="10" fill="${COLORS.axis}">0</text>`);
    out.push(`<text class="axis-label" transform="translate(16 ${px(h0 + H / 2)}) rotate(-90)" text-anchor="middle" font-size="11" fill="${COLORS.text}">Rows</text>`);
    bottom = h0 + H;
  }
  for (let i = 0; i <= 5; i++) {
    const v = i / 5;
    out.push(`<text class="tick" x="${px(x(v))}" y="${px(bottom + 14)}" text-anchor="middle" font-size="10" fill="${COLORS.axis}">${v.toFixed(1)}</text>`);
  }
  out.push(`<text class="axis-label" x="${px(left + P / 2)}" y="${px(bottom + 34)}" text-anchor="middle" font-size="12" fill="${COLORS.text}">Confidence</text>`);
  if (o.legend) {
    const lx = x(0) + 8, ly = y(1) + 8;
    const items = [
      (o.style === 'bars' ? `<rect x="0" y="0" width="10" height="10" fill="${COLORS.bar}" fill-opacity="0.85"/>` : `<circle cx="5" cy="5" r="3.5" fill="${COLORS.bar}"/>`) +
        `<text x="15" y="9" font-size="10" fill="${COLORS.text}">Accuracy</text>`,
      `<rect x="0" y="14" width="10" height="10" fill="${COLORS.gap}" fill-opacity="0.35" stroke="${COLORS.gap}" stroke-width="0.8"/><text x="15" y="23" font-size="10" fill="${COLORS.text}">Gap to confidence</text>`,
      `<line x1="5" y1="28" x2="5" y2="38" stroke="${COLORS.band}" stroke-width="1.1"/><text x="15" y="37" font-size="10" fill="${COLORS.text}">${levelText}</text>`,
      `<line x1="0" y1="47" x2="10" y2="47" stroke="${COLORS.diagonal}" stroke-width="1.2" stroke-dasharray="3 2"/><text x="15" y="51" font-size="10" fill="${COLORS.text}">Perfect calibration</text>`,
    ];
    out.push(`<g class="legend" transform="translate(${px(lx)} ${px(ly)})"><rect x="-4" y="-4" width="118" height="60" fill="#ffffff" fill-opacity="0.85" stroke="${COLORS.grid}"/>${items.join('')}</g>`);
  }
  return out.join('\n');
}

function svgOpen(width: number, height: number, label: string, xmlns: boolean): string {
  return `<svg${xmlns ? ' xmlns="http://www.w3.org/2000/svg"' : ''} class="calmoe-reliability" width="${px(width)}" height="${px(height)}" viewBox="0 0 ${px(width)} ${px(height)}" role="img" aria-label="${escapeXml(label)}" font-family="${FONT}">\n<title>${escapeXml(label)}</title>\n<rect width="100%" height="100%" fill="#ffffff"/>`;
}

/**
 * One reliability diagram as an SVG document (a string).
 *
 * @example
 * writeFileSync('reliability.svg', reliabilitySvg(await metrics.calibration(probs, labels), { title: 'Test set' }));
 */
export function reliabilitySvg(calibration: CalibrationLike | ReliabilityDiagram, options?: ReliabilitySvgOptions): string {
  const o = parse(options, ['title']);
  if (o.title !== undefined && typeof o.title !== 'string') throw typeError('title: expected a string');
  const d = toDiagram(calibration, o.level, 'calibration');
  const title = o.title as string | undefined;
  const W = o.width, H = panelHeight(W, o.histogram);
  const label = `Reliability diagram${title ? ` of ${title}` : ''}: ECE ${formatPercent(d.ece)}`;
  return `${svgOpen(W, H, label, o.xmlns)}\n${panel(d, title, o)}\n</svg>\n`;
}

/**
 * Several reliability diagrams side by side (rows of `columns` panels) in one SVG.
 *
 * @example
 * reliabilitySvgGrid([{ title: 'in-distribution', calibration: a }, { title: 'shifted', calibration: b }]);
 */
export function reliabilitySvgGrid(panels: ReadonlyArray<ReliabilityPanel>, options?: ReliabilityGridOptions): string {
  if (!Array.isArray(panels)) throw typeError('panels: expected an array of { title, calibration }');
  if (panels.length === 0) throw rangeError('panels: expected at least one panel');
  const o = parse(options, ['columns', 'caption']);
  const columns = o.columns ?? panels.length;
  if (typeof columns !== 'number') throw typeError('columns: expected an integer');
  if (!(Number.isInteger(columns) && columns >= 1)) throw rangeError(`columns: expected an integer >= 1, got ${columns}`);
  if (o.caption !== undefined && typeof o.caption !== 'string') throw typeError('caption: expected a string');
  const caption = o.caption as string | undefined;
  const cols = Math.min(columns, panels.length);
  const rows = Math.ceil(panels.length / cols);
  const W = o.width, H = panelHeight(W, o.histogram);
  const top = caption ? 28 : 0;
  const parts: string[] = [];
  const titles: string[] = [];
  panels.forEach((p, i) => {
    if (p === null || typeof p !== 'object') throw typeError(`panels[${i}]: expected { title, calibration }`);
    if (p.title !== undefined && typeof p.title !== 'string') throw typeError(`panels[${i}].title: expected a string`);
    const d = toDiagram(p.calibration, o.level, `panels[${i}].calibration`);
    titles.push(`${p.title ?? `panel ${i + 1}`} (ECE ${formatPercent(d.ece)})`);
    const gx = (i % cols) * W, gy = top + Math.floor(i / cols) * H;
    parts.push(`<g class="panel" transform="translate(${px(gx)} ${px(gy)})">\n${panel(d, p.title, o)}\n</g>`);
  });
  const label = `${caption ? `${caption}: ` : ''}reliability diagrams of ${titles.join(', ')}`;
  const head = caption ? `\n<text class="caption" x="${px((cols * W) / 2)}" y="20" text-anchor="middle" font-size="16" font-weight="600" fill="${COLORS.text}">${escapeXml(caption)}</text>` : '';
  return `${svgOpen(cols * W, top + rows * H, label, o.xmlns)}${head}\n${parts.join('\n')}\n</svg>\n`;
}
