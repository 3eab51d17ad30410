/**
 * A histogram as SVG (e.g. the distribution of routing entropy in an audit): bars over equal-width
 * bins with axes, tick labels and a title. Self-contained markup like the reliability diagrams.
 */
import { rangeError, typeError } from '../errors.js';
import { escapeXml, fitFontSize, formatNumber, formatTick, px } from './markup.js';
import { ownProperties } from '../validate.js';

export interface HistogramSvgOptions {
  /** Title (escaped). */
  title?: string;
  /** Label of the x axis (escaped). */
  xLabel?: string;
  /** Width in px (default 360). */
  width?: number;
  /** Height in px (default 220). */
  height?: number;
  /** Emit xmlns (default true). */
  xmlns?: boolean;
}

const FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif";

/**
 * Bars of `counts` over the bins delimited by `edges` (counts.length + 1 edges).
 *
 * @example
 * histogramSvg(audit.routing.entropy.histogram, { title: 'Routing entropy', xLabel: 'nats' });
 */
export function histogramSvg(hist: { edges: ArrayLike<number>; counts: ArrayLike<number> }, options?: HistogramSvgOptions): string {
  if (hist === null || typeof hist !== 'object') throw typeError('histogram: expected { edges, counts }');
  const { edges, counts } = hist;
  if (!edges || !counts || typeof edges.length !== 'number' || typeof counts.length !== 'number') throw typeError('histogram: expected { edges, counts } arrays');
  if (counts.length < 1 || edges.length !== counts.length + 1) throw rangeError(`histogram: expected counts.length + 1 edges, got ${edges.length} edges for ${counts.length} counts`);
  for (let i = 0; i < counts.length; i++) if (!(counts[i] >= 0 && Number.isFinite(counts[i]))) throw rangeError(`histogram.counts[${i}] = ${counts[i]}: expected a finite number >= 0`);
  for (let i = 0; i < edges.length; i++) if (!Number.isFinite(edges[i])) throw rangeError(`histogram.edges[${i}]: expected a finite number`);
  if (options !== undefined && (options === null || typeof options !== 'object')) throw typeError('options: expected an object');
  const o = ownProperties(options ?? {}) as HistogramSvgOptions;
  for (const k of Object.keys(o)) if (!['title', 'xLabel', 'width', 'height', 'xmlns'].includes(k)) throw rangeError(`options: unknown option '${k}' (known: title, xLabel, width, height, xmlns)`);
  for (const k of ['title', 'xLabel'] as const) if (o[k] !== undefined && typeof o[k] !== 'string') throw typeError(`${k}: expected a string`);
  const W = o.width ?? 360, H = o.height ?? 220;
  if (typeof W !== 'number' || typeof H !== 'number') throw typeError('width, height: expected numbers');
  if (!(W >= 120 && W <= 4000 && H >= 100 && H <= 4000)) throw rangeError('width, height: expected numbers in [120, 4000] and [100, 4000]');
  const left = 52, right = 14, top = o.title ? 34 : 12, bottom = 44;
  const P = W - left - right, Q = H - top - bottom;
  const lo = edges[0], hi = edges[edges.length - 1], span = hi - lo || 1;
  const x = (v: number) => left + ((v - lo) / span) * P;
  let max = 0;
  for (let i = 0; i < counts.length; i++) max = Math.max(max, counts[i]);
  const out: string[] = [];
  const label = `${o.title ?? 'Histogram'}${o.xLabel ? ` (${o.xLabel})` : ''}`;
  out.push(`<svg${o.xmlns === false ? '' : ' xmlns="http://www.w3.org/2000/svg"'} class="calmoe-histogram" width="${px(W)}" height="${px(H)}" viewBox="0 0 ${px(W)} ${px(H)}" role="img" aria-label="${escapeXml(label)}" font-family="${FONT}">`);
  out.push(`<title>${escapeXml(label)}</title>`, '<rect width="100%" height="100%" fill="#ffffff"/>');
  if (o.title) out.push(`<text class="title" x="${px(W / 2)}" y="20" text-anchor="middle" font-size="${fitFontSize(o.title, 14, W - 16)}" font-weight="600" fill="#1f1f1f">${escapeXml(o.title)}</text>`);
  for (let i = 0; i < counts.length; i++) {
    if (!(counts[i] > 0)) continue;
    const h = (counts[i] / max) * Q;
    out.push(`<rect class="bar" x="${px(x(edges[i]) + 0.5)}" y="${px(top + Q - h)}" width="${px(Math.max(0.5, x(edges[i + 1]) - x(edges[i]) - 1))}" height="${px(h)}" fill="#4c78a8"><title>[${formatNumber(edges[i], 3)}, ${formatNumber(edges[i + 1], 3)}]: ${formatNumber(counts[i])}</title></rect>`);
  }
  out.push(`<rect class="frame" x="${left}" y="${top}" width="${px(P)}" height="${px(Q)}" fill="none" stroke="#333333"/>`);
  out.push(`<text class="tick" x="${left - 6}" y="${top + 9}" text-anchor="end" font-size="10" fill="#333333">${formatNumber(max)}</text>`);
  out.push(`<text class="tick" x="${left - 6}" y="${px(top + Q)}" text-anchor="end" font-size="10" fill="#333333">0</text>`);
  for (let i = 0; i <= 4; i++) {
    const v = lo + (span * i) / 4;
    out.push(`<text class="tick" x="${px(x(v))}" y="${px(top + Q + 14)}" text-anchor="middle" font-size="10" fill="#333333">${formatTick(v)}</text>`);
  }
  if (o.xLabel) out.push(`<text class="axis-label" x="${px(left + P / 2)}" y="${px(H - 8)}" text-anchor="middle" font-size="12" fill="#1f1f1f">${escapeXml(o.xLabel)}</text>`);
  out.push(`<text class="axis-label" transform="translate(14 ${px(top + Q / 2)}) rotate(-90)" text-anchor="middle" font-size="11" fill="#1f1f1f">Rows</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}
