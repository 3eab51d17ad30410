import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { audit, calibrate, matrix, metrics, report } from '../src/index.js';
import { randomProbs, rng } from './reference.js';

const golden = JSON.parse(readFileSync(new URL('./fixtures/report-wilson-golden.json', import.meta.url), 'utf8')) as {
  source: string;
  wilson: Array<{ successes: number; trials: number; level: number; low: number; high: number }>;
  normalQuantile: Array<{ p: number; z: number }>;
};

// ---- a tiny XML well-formedness checker (and an HTML mode for void elements and the doctype) ----

const NAME = /^[A-Za-z_:][-A-Za-z0-9_:.]*$/;
const VOID = new Set(['meta', 'br', 'hr', 'img', 'input', 'link', 'area', 'base', 'col', 'embed', 'source', 'track', 'wbr']);

function checkText(s: string, where: string) {
  const amp = /&([^;\s]*);?/g;
  let m: RegExpExecArray | null;
  while ((m = amp.exec(s))) {
    if (!/^(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+)$/.test(m[1]) || !m[0].endsWith(';')) throw new Error(`bad entity '${m[0]}' in ${where}`);
  }
  if (s.includes('<')) throw new Error(`raw '<' in ${where}`);
}

/** Throws on anything not well-formed; returns the element names in document order. */
function wellFormed(doc: string, html = false): string[] {
  const stack: string[] = [];
  const names: string[] = [];
  let i = 0, roots = 0;
  if (html) {
    if (!doc.startsWith('<!DOCTYPE html>')) throw new Error('missing doctype');
    i = '<!DOCTYPE html>'.length;
  }
  while (i < doc.length) {
    const lt = doc.indexOf('<', i);
    const text = doc.slice(i, lt < 0 ? doc.length : lt);
    if (stack.length === 0 && text.trim()) throw new Error(`text outside the root: ${text.slice(0, 40)}`);
    checkText(text, `text before offset ${lt}`);
    if (lt < 0) break;
    if (doc.startsWith('<!--', lt)) {
      const end = doc.indexOf('-->', lt);
      if (end < 0) throw new Error('unclosed comment');
      i = end + 3;
      continue;
    }
    const gt = doc.indexOf('>', lt);
    if (gt < 0) throw new Error('unclosed tag');
    // '>' inside a quoted attribute value would end the tag early: find the real end
    let end = lt + 1, quote = '';
    for (; end < doc.length; end++) {
      const c = doc[end];
      if (quote) { if (c === quote) quote = ''; }
      else if (c === '"' || c === "'") quote = c;
      else if (c === '>') break;
    }
    const tag = doc.slice(lt + 1, end);
    i = end + 1;
    if (tag.startsWith('/')) {
      const name = tag.slice(1).trim();
      if (stack.pop() !== name) throw new Error(`mismatched </${name}>`);
      continue;
    }
    const selfClosing = tag.endsWith('/');
    const body = selfClosing ? tag.slice(0, -1) : tag;
    const m = /^([^\s/>]+)(.*)$/s.exec(body);
    if (!m || !NAME.test(m[1])) throw new Error(`bad tag name in <${tag.slice(0, 30)}>`);
    const name = m[1];
    names.push(name);
    const attrs = m[2];
    const seen = new Set<string>();
    const re = /\s+([^\s=]+)\s*=\s*("([^"]*)"|'([^']*)')/gy;
    let pos = 0, a: RegExpExecArray | null;
    re.lastIndex = 0;
    while ((a = re.exec(attrs))) {
      if (!NAME.test(a[1])) throw new Error(`bad attribute name ${a[1]}`);
      if (seen.has(a[1])) throw new Error(`duplicate attribute ${a[1]} on <${name}>`);
      seen.add(a[1]);
      checkText(a[3] ?? a[4], `attribute ${a[1]} of <${name}>`);
      pos = re.lastIndex;
    }
    if (attrs.slice(pos).trim()) throw new Error(`bad attributes on <${name}>: ${attrs.slice(pos, pos + 40)}`);
    if (stack.length === 0) roots++;
    if (selfClosing || (html && VOID.has(name))) continue;
    stack.push(name);
  }
  if (stack.length) throw new Error(`unclosed <${stack.join('>, <')}>`);
  if (roots !== 1) throw new Error(`${roots} root elements`);
  return names;
}

function decode(s: string): string {
  return s.replace(/&(amp|lt|gt|quot|#39);/g, (_, e: string) => ({ amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'" })[e]!);
}

const count = (s: string, needle: string) => s.split(needle).length - 1;

function calibrationOf(seed: number, rows = 1977, cols = 5, scale = 2.5) {
  const d = randomProbs(seed, rows, cols, scale);
  return metrics.calibrationSync(matrix(d.data, rows, cols), d.labels, { bins: 15 });
}

describe('the well-formedness checker used below', () => {
  it('rejects what is not well-formed', () => {
    expect(() => wellFormed('<a><b></a></b>')).toThrow(/mismatched/);
    expect(() => wellFormed('<a x="1" x="2"/>')).toThrow(/duplicate attribute/);
    expect(() => wellFormed('<a>&foo;</a>')).toThrow(/bad entity/);
    expect(() => wellFormed('<a>AT&T</a>')).toThrow(/bad entity/);
    expect(() => wellFormed('<a>1 < 2</a>')).toThrow();
    expect(() => wellFormed('<a x=1/>')).toThrow(/bad attributes/);
    expect(() => wellFormed('<a/><b/>')).toThrow(/2 root elements/);
    expect(() => wellFormed('<a><b>')).toThrow(/unclosed/);
    expect(() => wellFormed('<a title="x<y"/>')).toThrow(/raw '<'/);
    expect(wellFormed('<a x="1" y=\'2\'><b/>t &amp; &#39; &#x41;</a>')).toEqual(['a', 'b']);
    expect(() => wellFormed('<!DOCTYPE html><html><meta charset="utf-8"><p>x</html>', true)).toThrow(/mismatched/);
    expect(wellFormed('<!DOCTYPE html><html><meta charset="utf-8"><p>x</p></html>', true)).toEqual(['html', 'meta', 'p']);
  });
});

describe('Wilson interval and the normal quantile: golden values', () => {
  it(`match ${golden.source}`, () => {
    for (const g of golden.wilson) {
      const ci = report.wilsonInterval(g.successes, g.trials, g.level);
      expect(Math.abs(ci.low - g.low)).toBeLessThanOrEqual(1e-12);
      expect(Math.abs(ci.high - g.high)).toBeLessThanOrEqual(1e-12);
    }
    for (const q of golden.normalQuantile) {
      expect(Math.abs(report.normalQuantile(q.p) - q.z)).toBeLessThanOrEqual(1e-13 * Math.max(1, Math.abs(q.z)));
    }
  });

  it('match the textbook formula and behave at the edges', () => {
    const z = 1.959963984540054; // Phi^-1(0.975)
    const n = 10, p = 0.3;
    const center = (p + (z * z) / (2 * n)) / (1 + (z * z) / n);
    const half = (z / (1 + (z * z) / n)) * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n));
    const ci = report.wilsonInterval(3, 10);
    expect(ci.low).toBeCloseTo(center - half, 14);
    expect(ci.high).toBeCloseTo(center + half, 14);
    expect(report.wilsonInterval(0, 0)).toEqual({ low: NaN, high: NaN });
    expect(report.wilsonInterval(0, 5).low).toBe(0);
    expect(report.wilsonInterval(5, 5).high).toBe(1);
    expect(report.normalQuantile(0.5)).toBe(0);
    expect(() => report.wilsonInterval(3, 2)).toThrow(/successes: expected an integer in \[0, trials = 2\], got 3/);
    expect(() => report.wilsonInterval(1.5, 2)).toThrow(RangeError);
    expect(() => report.wilsonInterval(1, -2)).toThrow(/trials: expected an integer >= 0/);
    expect(() => report.wilsonInterval(1, 2, 1)).toThrow(/level: expected a number in \(0, 1\)/);
    expect(() => report.wilsonInterval('1' as never, 2)).toThrow(TypeError);
    expect(() => report.normalQuantile(0)).toThrow(/p: expected a probability in \(0, 1\)/);
    expect(() => report.normalQuantile(NaN)).toThrow(RangeError);
    expect(() => report.normalQuantile('0.5' as never)).toThrow(TypeError);
    fc.assert(fc.property(fc.integer({ min: 1, max: 10000 }), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0.5, max: 0.999, noNaN: true }), (n, f, level) => {
      const k = Math.floor(f * n);
      const a = report.wilsonInterval(k, n, level);
      expect(a.low).toBeLessThanOrEqual(k / n + 1e-12);
      expect(a.high).toBeGreaterThanOrEqual(k / n - 1e-12);
      expect(a.low).toBeGreaterThanOrEqual(0);
      expect(a.high).toBeLessThanOrEqual(1);
      const wider = report.wilsonInterval(k, n, Math.min(0.9999, level + 0.0005));
      expect(wider.high - wider.low).toBeGreaterThanOrEqual(a.high - a.low - 1e-12);
    }), { numRuns: 300 });
  });
});

describe('reliabilityDiagram', () => {
  it('carries the bins of a calibration report with a Wilson band each', () => {
    const r = calibrationOf(1);
    const d = report.reliabilityDiagram(r, { level: 0.9 });
    expect(d.bins.length).toBe(15);
    expect(d.ece).toBe(r.ece);
    expect(d.rows).toBe(r.rows);
    expect(d.level).toBe(0.9);
    expect(Math.abs(d.accuracy - r.accuracy)).toBeLessThanOrEqual(1e-12);
    for (const b of d.bins) {
      expect(b.count).toBe(r.bins.count[b.index]);
      if (!b.count) {
        expect(b.accuracy).toBeNaN();
        expect(b.low).toBeNaN();
        continue;
      }
      const k = Math.round(b.accuracy * b.count);
      expect(b).toMatchObject(report.wilsonInterval(k, b.count, 0.9));
      expect(b.low).toBeLessThanOrEqual(b.accuracy);
      expect(b.high).toBeGreaterThanOrEqual(b.accuracy);
      expect(b.gap).toBe(b.accuracy - b.confidence);
    }
    // ECE recomputed from the bins when the input has none
    const fromBins = report.reliabilityDiagram({ bins: r.bins });
    expect(Math.abs(fromBins.ece - r.ece)).toBeLessThanOrEqual(1e-12);
    expect(Math.abs(fromBins.mce - r.mce)).toBeLessThanOrEqual(1e-12);
  });

  it('rejects bad input by name', () => {
    const r = calibrationOf(2);
    expect(() => report.reliabilityDiagram(null as never)).toThrow(TypeError);
    expect(() => report.reliabilityDiagram(r, { level: 1 })).toThrow(/level: expected a number in \(0, 1\)/);
    expect(() => report.reliabilityDiagram(r, { level: '0.9' as never })).toThrow(TypeError);
    expect(() => report.reliabilityDiagram(r, { levels: 0.9 } as never)).toThrow(/unknown option 'levels'/);
    expect(() => report.reliabilityDiagram({ bins: { ...r.bins, count: new Float64Array(3) } })).toThrow(/calibration\.bins\.lower: has 15 entries but count has 3/);
    expect(() => report.reliabilityDiagram({ bins: { ...r.bins, accuracy: r.bins.accuracy.map(() => 2) } })).toThrow(RangeError);
    expect(() => report.reliabilityDiagram({ bins: { lower: [] } } as never)).toThrow(/calibration\.bins\.upper: expected an array/);
  });
});

describe('reliability SVG', () => {
  it('is well-formed, with one bar, band and histogram bar per non-empty bin and the ECE in the title', () => {
    for (const [seed, bins] of [[3, 15], [4, 7], [5, 1]] as const) {
      const d = randomProbs(seed, 1001, 4, 3);
      const r = metrics.calibrationSync(matrix(d.data, 1001, 4), d.labels, { bins });
      const nonEmpty = Array.from(r.bins.count).filter((c) => c > 0).length;
      const svg = report.reliabilitySvg(r, { title: 'Test set' });
      const names = wellFormed(svg);
      expect(names[0]).toBe('svg');
      expect(svg).toContain('xmlns="http://www.w3.org/2000/svg"');
      expect(count(svg, 'class="bar"')).toBe(nonEmpty);
      expect(count(svg, 'class="band"')).toBe(nonEmpty);
      expect(count(svg, 'class="hist"')).toBe(nonEmpty);
      expect(count(svg, 'class="point"')).toBe(0);
      expect(count(svg, 'class="diagonal"')).toBe(1);
      const title = /<text class="title"[^>]*>([^<]*)<\/text>/.exec(svg)![1];
      expect(decode(title)).toBe(`Test set — ECE ${report.formatPercent(r.ece)}`);
      expect(svg).toContain(`<title>Reliability diagram of Test set: ECE ${report.formatPercent(r.ece)}</title>`);
      expect(svg).toContain('>Confidence</text>');
      expect(svg).toContain('>Accuracy</text>');
      const points = report.reliabilitySvg(r, { style: 'points', histogram: false, legend: false, xmlns: false });
      wellFormed(points);
      expect(count(points, 'class="point"')).toBe(nonEmpty);
      expect(count(points, 'class="bar"')).toBe(0);
      expect(count(points, 'class="hist"')).toBe(0);
      expect(count(points, 'class="legend"')).toBe(0);
      expect(points).not.toContain('http');
    }
  });

  it('escapes user text, and stays well-formed for any title (property)', () => {
    const r = calibrationOf(6);
    const svg = report.reliabilitySvg(r, { title: '<script>alert("x")</script> & \'q\'' });
    wellFormed(svg);
    expect(svg).not.toContain('<script');
    expect(svg).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;');
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 60 }), (title) => {
      const s = report.reliabilitySvg(r, { title });
      wellFormed(s);
      const t = decode(/<text class="title"[^>]*>([^<]*)<\/text>/.exec(s)![1]);
      expect(t.endsWith(`ECE ${report.formatPercent(r.ece)}`)).toBe(true);
    }), { numRuns: 200 });
  });

  it('draws diagram data as given, with its own level', () => {
    const r = calibrationOf(7);
    const d = report.reliabilityDiagram(r, { level: 0.8 });
    const svg = report.reliabilitySvg(d);
    expect(svg).toContain('80% Wilson bands');
    expect(svg).toContain('80% interval');
  });

  it('grid: one panel per diagram, each titled with its ECE', () => {
    const a = calibrationOf(8), b = calibrationOf(9, 1977, 5, 1), c = calibrationOf(10, 500, 3, 4);
    const svg = report.reliabilitySvgGrid([
      { title: 'in-distribution', calibration: a },
      { title: 'shifted', calibration: b },
      { title: 'soft & hard', calibration: report.reliabilityDiagram(c) },
    ], { columns: 2, caption: 'ID <vs> shift' });
    wellFormed(svg);
    expect(count(svg, 'class="panel"')).toBe(3);
    const titles = [...svg.matchAll(/<text class="title"[^>]*>([^<]*)<\/text>/g)].map((m) => decode(m[1]));
    expect(titles).toEqual([
      `in-distribution — ECE ${report.formatPercent(a.ece)}`,
      `shifted — ECE ${report.formatPercent(b.ece)}`,
      `soft & hard — ECE ${report.formatPercent(c.ece)}`,
    ]);
    expect(svg).toContain('ID &lt;vs&gt; shift');
    const nonEmpty = [a, b, c].reduce((s, r) => s + Array.from(r.bins.count).filter((x) => x > 0).length, 0);
    expect(count(svg, 'class="bar"')).toBe(nonEmpty);
    // 2 columns x 2 rows of 360-wide panels
    expect(svg).toMatch(/<svg[^>]* width="720"/);
  });

  it('rejects bad options by name', () => {
    const r = calibrationOf(11);
    expect(() => report.reliabilitySvg(r, { style: 'line' as never })).toThrow(/style: expected one of 'bars', 'points'/);
    expect(() => report.reliabilitySvg(r, { width: 10 })).toThrow(/width: expected a number in \[200, 4000\]/);
    expect(() => report.reliabilitySvg(r, { title: 5 as never })).toThrow(/title: expected a string/);
    expect(() => report.reliabilitySvg(r, { legend: 'no' as never })).toThrow(/legend: expected a boolean/);
    expect(() => report.reliabilitySvg(r, { colour: 'red' } as never)).toThrow(/unknown option 'colour'/);
    expect(() => report.reliabilitySvg(null as never)).toThrow(TypeError);
    expect(() => report.reliabilitySvgGrid([])).toThrow(/panels: expected at least one panel/);
    expect(() => report.reliabilitySvgGrid('x' as never)).toThrow(TypeError);
    expect(() => report.reliabilitySvgGrid([{ calibration: r }], { columns: 0 })).toThrow(/columns: expected an integer >= 1/);
    expect(() => report.reliabilitySvgGrid([{ calibration: 3 as never }])).toThrow(/panels\[0\]\.calibration/);
  });
});

describe('histogram SVG', () => {
  it('one bar per non-empty bin, well-formed, escaped', () => {
    const svg = report.histogramSvg({ edges: [0, 0.5, 1, 1.5], counts: [3, 0, 7] }, { title: 'H <1>', xLabel: 'nats & more' });
    wellFormed(svg);
    expect(count(svg, 'class="bar"')).toBe(2);
    expect(svg).toContain('H &lt;1&gt;');
    expect(svg).toContain('nats &amp; more');
    expect(() => report.histogramSvg({ edges: [0, 1], counts: [1, 2] })).toThrow(/expected counts\.length \+ 1 edges/);
    expect(() => report.histogramSvg({ edges: [0, 1], counts: [-1] })).toThrow(/histogram\.counts\[0\] = -1/);
    expect(() => report.histogramSvg({ edges: [0, 1], counts: [1] }, { bins: 3 } as never)).toThrow(/unknown option 'bins'/);
  });
});

describe('HTML report', () => {
  function evaluation() {
    const id = calibrationOf(12), shifted = calibrationOf(13, 1977, 5, 1);
    const B = 500, K = 3, C = 4;
    const r = rng(14);
    const routing = new Float32Array(B * K), P = new Float32Array(B * K * C), p = new Float32Array(B * C), y = new Int32Array(B);
    for (let i = 0; i < B; i++) {
      const g = [r.next(), r.next(), r.next()];
      const s = g[0] + g[1] + g[2];
      for (let k = 0; k < K; k++) routing[i * K + k] = g[k] / s;
      for (let k = 0; k < K; k++) {
        const e = Array.from({ length: C }, () => Math.exp(2 * r.normal()));
        const t = e.reduce((a, b) => a + b, 0);
        for (let j = 0; j < C; j++) P[(i * K + k) * C + j] = e[j] / t;
      }
      for (let j = 0; j < C; j++) for (let k = 0; k < K; k++) p[i * C + j] += routing[i * K + k] * P[(i * K + k) * C + j];
      y[i] = r.int(C);
    }
    const outputs = { routing: matrix(routing, B, K), expertProbs: audit.expertTensor(P, B, K, C), mixture: matrix(p, B, C), labels: y };
    const a = audit.moeAuditSync(outputs, { groups: Int32Array.from(y, (v) => v % 2), groupNames: ['even <labels>', 'odd & "labels"'] });
    const logits = Float32Array.from(p, (v) => Math.log(v));
    const fit = calibrate.fitTemperatureSync(matrix(logits, B, C), y);
    return { id, shifted, a, fit };
  }

  it('is self-contained: no network references, no scripts, every text escaped', () => {
    const { id, shifted, a, fit } = evaluation();
    const html = report.htmlReport({
      title: 'Eval <b>bold</b> & co',
      subtitle: 'see https://example.com/x for "details"',
      sections: [
        {
          title: 'Calibration',
          paragraphs: ['Two <sets>.'],
          metrics: { 'ECE (ID)': id.ece, 'Rows': id.rows, note: null },
          tables: [report.calibrationTable({ 'in-distribution': id, 'shifted <x>': shifted }), report.temperatureTable({ global: fit })],
          figures: [
            { kind: 'reliability', panels: [{ title: 'ID', calibration: id }, { title: 'shift', calibration: shifted }], caption: 'ID vs shift' },
            { kind: 'reliability', panels: [{ title: 'points', calibration: id }], style: 'points', level: 0.9 },
          ],
        },
        report.auditSection('Audit <1>', a, ['An audit.']),
        { title: 'Custom', tables: [{ columns: ['a', 'b'], rows: [['<td>', 1.23456789], [null, NaN]], highlight: [1], caption: 'c & d' }] },
      ],
      footer: 'made <today>',
    });
    wellFormed(html, true);
    // the only URL is the user's subtitle text, escaped; nothing is fetched
    const withoutUserText = html.replace('see https://example.com/x for &quot;details&quot;', '');
    expect(withoutUserText).not.toMatch(/https?:\/\//);
    expect(html).not.toMatch(/<script|<link|<img|<iframe|\ssrc=|url\(|@import|@font-face/i);
    expect(html).toContain("default-src 'none'");
    expect(html).toContain('<title>Eval &lt;b&gt;bold&lt;/b&gt; &amp; co</title>');
    expect(html).not.toContain('<b>');
    expect(html).toContain('shifted &lt;x&gt;');
    expect(html).toContain('even &lt;labels&gt;');
    expect(html).toContain('odd &amp; &quot;labels&quot;');
    expect(html).toContain('<td>&lt;td&gt;</td><td>1.235</td>');
    expect(html).toContain('<tr class="highlight"><td>—</td><td>—</td></tr>');
    expect(html).toContain(`ECE ${report.formatPercent(id.ece)}`);
    // 2 + 1 reliability panels and the audit's entropy histogram, inline
    expect(count(html, 'class="panel"')).toBe(3);
    expect(count(html, 'class="calmoe-histogram"')).toBe(1);
    expect(count(html, '<section')).toBe(3);
    expect(count(html, '<table>')).toBe(2 + 4 + 1);
    expect(html).toContain('href="#section-2"');
  });

  it('tables from results carry their numbers', () => {
    const { id, a, fit } = evaluation();
    const t = report.calibrationTable({ x: id });
    expect(t.columns).toEqual(['Evaluation', 'Rows', 'Accuracy', 'ECE', 'MCE', 'RMSCE', 'NLL', 'Brier']);
    expect(t.rows[0]).toEqual(['x', id.rows, report.formatPercent(id.accuracy), report.formatPercent(id.ece), report.formatPercent(id.mce), report.formatPercent(id.rmsce), report.formatNumber(id.nll), report.formatNumber(id.brier)]);
    const e = report.expertAuditTable(a.experts);
    expect(e.rows.length).toBe(3);
    expect(e.highlight).toEqual([a.experts.worst.ece]);
    expect(report.temperatureTable({ f: fit }).rows[0][1]).toBe(report.formatNumber(fit.temperature));
    expect(report.groupTable(a.subsets)!.rows.map((r) => r[0])).toEqual(['even <labels>', 'odd & "labels"']);
    const h = report.hardSubsetTable(a.subsets);
    expect(h.rows[0][1]).toBe(500);
    expect(report.routingTable(a.routing).rows.length).toBe(7 + 3);
    expect(() => report.calibrationTable([id] as never)).toThrow(/reports: expected an object/);
    expect(() => report.temperatureTable(null as never)).toThrow(TypeError);
  });

  it('rejects bad specs by name', () => {
    expect(() => report.htmlReport(null as never)).toThrow(TypeError);
    expect(() => report.htmlReport({ sections: [] } as never)).toThrow(/spec\.title: expected a string/);
    expect(() => report.htmlReport({ title: 't', sections: 'x' } as never)).toThrow(/spec\.sections: expected an array/);
    expect(() => report.htmlReport({ title: 't', sections: [{}] } as never)).toThrow(/spec\.sections\[0\]\.title: expected a string/);
    expect(() => report.htmlReport({ title: 't', sections: [{ title: 's', tables: [{ columns: ['a'], rows: [[1, 2]] }] }] })).toThrow(/spec\.sections\[0\]\.tables\[0\]\.rows\[0\]: has 2 cells but there are 1 columns/);
    expect(() => report.htmlReport({ title: 't', sections: [{ title: 's', tables: [{ columns: ['a'], rows: [[{}]] }] }] } as never)).toThrow(/rows\[0\]\[0\]: expected a string, number or null/);
    expect(() => report.htmlReport({ title: 't', sections: [{ title: 's', figures: [{ kind: 'pie' }] }] } as never)).toThrow(/figures\[0\]\.kind: expected 'reliability' or 'histogram'/);
    expect(() => report.htmlReport({ title: 't', sections: [{ title: 's', paragraphs: [3] }] } as never)).toThrow(/paragraphs\[0\]: expected a string/);
  });
});

describe('markup helpers', () => {
  it('escapeXml replaces markup characters and characters XML forbids', () => {
    expect(report.escapeXml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
    expect(report.escapeXml('a\u0000b\u0007c\td\ne')).toBe('a\uFFFDb\uFFFDc\td\ne');
    expect(report.escapeXml('x\uD800y')).toBe('x\uFFFDy');
    expect(report.escapeXml('😀')).toBe('😀');
    expect(report.escapeXml(12)).toBe('12');
  });

  it('formatNumber and formatPercent', () => {
    expect(report.formatNumber(null)).toBe('—');
    expect(report.formatNumber(NaN)).toBe('—');
    expect(report.formatNumber(42)).toBe('42');
    expect(report.formatNumber(0.0321456)).toBe('0.0321');
    expect(report.formatNumber(1.466289)).toBe('1.466');
    expect(report.formatNumber(123.456)).toBe('123.5');
    expect(report.formatNumber(1.5e-7)).toBe('1.500e-7');
    expect(report.formatPercent(0.03214)).toBe('3.21%');
    expect(report.formatPercent(NaN)).toBe('—');
  });
});
