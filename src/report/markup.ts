/**
 * Text in markup: escaping of user-supplied text for XML/HTML (element content and attribute
 * values alike), and the number formats of the diagrams and tables.
 */

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/**
 * Escapes text for XML and HTML content or (double- or single-quoted) attribute values. Characters
 * XML 1.0 forbids (C0 controls other than tab, newline, carriage return; lone surrogates; U+FFFE,
 * U+FFFF) become U+FFFD, so the output is always well-formed.
 */
export function escapeXml(text: unknown): string {
  // eslint-disable-next-line no-control-regex
  return String(text).replace(/[&<>"']|[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g,
    (c) => ESCAPES[c] ?? '\uFFFD');
}

/** A number for a table cell: '—' for null/NaN, integers as they are, others to `digits` significant decimals. */
export function formatNumber(v: number | null | undefined, digits = 4): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  if (!Number.isFinite(v)) return v > 0 ? '∞' : '−∞';
  if (Number.isInteger(v) && Math.abs(v) < 1e15) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-4 || a >= 1e9)) return v.toExponential(digits - 1);
  return v.toFixed(a < 1 ? digits : Math.max(0, digits - (Math.floor(Math.log10(a)) + 1)));
}

/** A share as a percentage with `decimals` decimals ('—' for NaN). */
export function formatPercent(v: number | null | undefined, decimals = 2): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  return `${(v * 100).toFixed(decimals)}%`;
}

/** A coordinate for SVG: at most 2 decimals, no trailing zeros. */
export function px(v: number): string {
  return String(Math.round(v * 100) / 100);
}

/** An axis tick: 3 significant digits, no trailing zeros. */
export function formatTick(v: number): string {
  return String(Number(v.toPrecision(3)));
}

/**
 * The font size (px) at which a line of text fits `width` px: `fontSize`, or smaller when its
 * estimated width (0.6 em per character, generous for the sans-serif fonts used) would overflow.
 * (A font size works in every renderer; textLength does not.)
 */
export function fitFontSize(text: string, fontSize: number, width: number, emPerChar = 0.6): string {
  const est = text.length * fontSize * emPerChar;
  return px(est > width ? Math.max(6, (fontSize * width) / est) : fontSize);
}
