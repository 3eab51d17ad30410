// Model files (safetensors): round trips, atomic writes, a Python reader, and hostile files.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MoEClassifier, io } from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'calmoe-model-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const n = 50, d = 4;
const x = { data: new Float32Array(n * d).map((_, i) => Math.cos(i * 0.37) * 2), rows: n, cols: d };
const y = Int32Array.from({ length: n }, (_, i) => i % 3);

async function trained(routing: 'soft' | 'topk' | 'hard', extra: object = {}) {
  const m = new MoEClassifier({ inputDim: d, classes: 3, experts: 3, expertHidden: [5], routerHidden: [4], routing, seed: 2, device: 'cpu', ...extra });
  await m.fit(x, y, { epochs: 2, batchSize: 16 });
  return m;
}

describe('save and load', () => {
  it('round-trips parameters, temperatures, class names, training summary; no device is saved', async () => {
    const m = await trained('topk', { topK: 2, classNames: ['a', 'b', 'c'], activation: 'gelu' });
    m.setTemperatures([0.5, 1.25, 2]);
    const p = join(dir, 'm.safetensors');
    m.save(p);
    const l = MoEClassifier.load(p);
    expect(l.parameters).toEqual(m.parameters);
    expect(Array.from(l.temperatures)).toEqual([0.5, 1.25, 2]);
    expect(l.classNames).toEqual(['a', 'b', 'c']);
    expect(l.config).toEqual(m.config);
    expect(l.device).toBe('auto');
    expect(l.trainingSummary).toMatchObject({ rows: n, epochs: 2, batchSize: 16 });
    expect(l.predictSync(x).probs.data).toEqual(m.predictSync(x).probs.data);
    const meta = io.readSafetensors(p).metadata;
    expect(meta.format).toBe('calmoe.moe');
    expect(JSON.parse(meta.config)).not.toHaveProperty('device');
    expect(JSON.parse(meta.class_names)).toEqual(['a', 'b', 'c']);
    expect(meta.calmoe_version).toMatch(/^\d+\.\d+\.\d+/);
    expect(MoEClassifier.load(p, { device: 'cpu' }).device).toBe('cpu');
  });

  it('toJSON leaves the device out and fromJSON ignores one saved by older versions', async () => {
    const m = new MoEClassifier({ inputDim: d, classes: 3, experts: 2, device: 'cpu' });
    const j = m.toJSON();
    expect(j.options).not.toHaveProperty('device');
    const old = { ...j, options: { ...j.options, device: 'cuda' } };
    expect(MoEClassifier.fromJSON(old).device).toBe('auto');
  });

  it('writes atomically: a replaced file is whole, a failed write leaves the old file and no temporary', async () => {
    const m = await trained('soft');
    const p = join(dir, 'atomic.safetensors');
    writeFileSync(p, 'old contents');
    m.save(p);
    expect(MoEClassifier.load(p).parameters).toEqual(m.parameters);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    const before = readFileSync(p);
    expect(() => io.writeSafetensors(p, [{ name: 'w', shape: [3], data: new Float32Array(2) }])).toThrow(/shape \[3\] has 3 elements, data has 2/);
    expect(readFileSync(p)).toEqual(before);
    expect(() => m.save(join(dir, 'no-such-dir', 'm.safetensors'))).toThrow(/ENOENT/);
    expect(existsSync(join(dir, 'no-such-dir'))).toBe(false);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('a Python reader (stdlib + numpy) reproduces predict for soft, top-k and hard models', async (ctx) => {
    let ok = true;
    try { execFileSync('python3', ['-c', 'import numpy']); } catch { ok = false; }
    if (!ok) {
      console.warn('SKIPPED: python3 with numpy is not installed (apt-get install python3-numpy); the Python reader is not checked');
      ctx.skip();
    }
    const xp = join(dir, 'x.npy');
    writeFileSync(xp, io.formatNpy(x.data, [n, d]));
    for (const [routing, extra] of [['soft', {}], ['topk', { topK: 2 }], ['hard', { activation: 'gelu' }]] as const) {
      const m = await trained(routing, extra);
      m.setTemperatures([0.7, 1, 1.6]);
      const p = join(dir, `${routing}.safetensors`);
      m.save(p);
      const out = JSON.parse(execFileSync('python3', [join(__dirname, '..', 'examples', 'python', 'calmoe_reader.py'), p, xp]).toString()) as number[][];
      const probs = m.predictSync(x).probs.data;
      let err = 0;
      for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) err = Math.max(err, Math.abs(out[i][c] - probs[i * 3 + c]));
      expect(err, routing).toBeLessThan(2e-5);
    }
  });
});

// Rewrites a valid file's header (and optionally its data) to make hostile variants.
function variant(src: string, name: string, edit: (h: Record<string, any>) => void, data?: (b: Buffer) => Buffer): string {
  const buf = readFileSync(src);
  const n = Number(buf.readBigUInt64LE(0));
  const h = JSON.parse(buf.subarray(8, 8 + n).toString());
  edit(h);
  const text = Buffer.from(JSON.stringify(h));
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(text.length));
  const body = buf.subarray(8 + n);
  const p = join(dir, name);
  writeFileSync(p, Buffer.concat([head, text, data ? data(body) : body]));
  return p;
}

describe('hostile model files are errors before any tensor is read', async () => {
  const good = join(dir, 'good.safetensors');
  (await trained('hard')).save(good);
  const raw = readFileSync(good);
  const headerLen = Number(raw.readBigUInt64LE(0));
  const write = (name: string, b: Uint8Array) => {
    const p = join(dir, name);
    writeFileSync(p, b);
    return p;
  };
  const lenTo = (v: bigint) => {
    const b = Buffer.from(raw);
    b.writeBigUInt64LE(v, 0);
    return b;
  };
  const cases: Array<[string, () => string, RegExp]> = [
    ['an empty file', () => write('e', new Uint8Array(0)), /fewer than the 8-byte header length/],
    ['a truncated header', () => write('t', raw.subarray(0, 8 + Math.floor(headerLen / 2))), /header length \d+ runs past the end of the file/],
    ['a header length past the end', () => write('p', lenTo(BigInt(raw.length))), /runs past the end of the file/],
    ['a header length near 2^63', () => write('h', lenTo(2n ** 63n - 1n)), /9223372036854775807 runs past the end/],
    ['a header length of 2^64 - 1', () => write('h2', lenTo(2n ** 64n - 1n)), /runs past the end/],
    ['a header that is not JSON', () => write('j', Buffer.concat([lenTo(8n).subarray(0, 8), Buffer.from('{"a":1,,'), raw.subarray(8, 40)])), /the header is not JSON/],
    ['deeply nested JSON', () => {
      const text = Buffer.from('['.repeat(100_000) + ']'.repeat(100_000));
      const head = Buffer.alloc(8);
      head.writeBigUInt64LE(BigInt(text.length));
      return write('deep', Buffer.concat([head, text]));
    }, /nests 100000 levels deep/],
    ['deeply nested metadata JSON', () => variant(good, 'deepmeta', (h) => { h.__metadata__.config = '['.repeat(10_000) + ']'.repeat(10_000); }), /__metadata__\.config nests too deeply/],
    ['an unknown dtype', () => variant(good, 'dt', (h) => { h['router.0.weight'].dtype = 'Q7'; }), /tensor 'router\.0\.weight' has an unknown dtype "Q7"/],
    ['a dtype calmoe does not read', () => variant(good, 'f16', (h) => {
      const t = h['router.0.weight'];
      t.dtype = 'F16';
      t.shape = [t.shape[0], t.shape[1] * 2];
    }), /is F16; calmoe reads F32 tensors/],
    ['overlapping offsets', () => variant(good, 'ov', (h) => {
      const [a, b] = [h['router.0.bias'], h['router.0.weight']];
      const len = a.data_offsets[1] - a.data_offsets[0];
      a.data_offsets = [b.data_offsets[0], b.data_offsets[0] + len];
    }), /overlaps another tensor's bytes|belong to no tensor/],
    ['offsets past the data', () => variant(good, 'oor', (h) => {
      const t = h['router.0.bias'];
      t.data_offsets = [t.data_offsets[0] + 1e6, t.data_offsets[1] + 1e6];
    }), /ends at byte \d+ of the data, past its end/],
    ['offsets that disagree with the shape', () => variant(good, 'sz', (h) => { h['router.0.bias'].data_offsets[1] -= 4; }), /needs \d+ bytes, data_offsets give/],
    ['malformed offsets', () => variant(good, 'mo', (h) => { h['router.0.bias'].data_offsets = [8, 4]; }), /malformed data_offsets/],
    ['bytes that belong to no tensor', () => variant(good, 'gap', () => {}, (b) => Buffer.concat([b, Buffer.alloc(16)])), /the tensors cover/],
    ['truncated data', () => write('td', raw.subarray(0, raw.length - 4)), /the tensors cover|past its end/],
    ['a shape that disagrees with the configuration', () => variant(good, 'shape', (h) => {
      const t = h['experts.0.0.weight'];
      t.shape = [t.shape[1], t.shape[0]];
    }), /tensor 'experts\.0\.0\.weight' has shape \[5, 4\], the configuration gives \[4, 5\]/],
    ['a configuration that disagrees with the tensors', () => variant(good, 'cfg', (h) => {
      h.__metadata__.config = JSON.stringify({ ...JSON.parse(h.__metadata__.config), expertHidden: [6] });
    }), /has shape \[4, 5\], the configuration gives \[4, 6\]/],
    ['a missing tensor', () => variant(good, 'miss', (h) => { h['other.bias'] = h['experts.2.1.bias']; delete h['experts.2.1.bias']; }), /tensor 'experts\.2\.1\.bias' is missing/],
    ['an invalid configuration', () => variant(good, 'badcfg', (h) => { h.__metadata__.config = '{"inputDim":-1,"classes":3,"experts":3}'; }), /__metadata__\.config: inputDim: expected an integer/],
    ['a huge configuration (no allocation follows)', () => variant(good, 'huge', (h) => { h.__metadata__.config = JSON.stringify({ ...JSON.parse(h.__metadata__.config), inputDim: 2 ** 24, classes: 2 ** 24 }); }), /has shape/],
    ['metadata that is not a string', () => variant(good, 'ms', (h) => { h.__metadata__.config = { inputDim: 4 }; }), /__metadata__\.config is not a string/],
    ['another format', () => variant(good, 'fmt', (h) => { h.__metadata__.format = 'pt'; }), /not a calmoe model file/],
    ['bad temperatures', () => variant(good, 'temp', (h) => { h.__metadata__.temperatures = '{"experts":[1,0,1]}'; }), /__metadata__\.temperatures: expected/],
    ['a non-finite parameter', () => variant(good, 'nan', () => {}, (b) => { const c = Buffer.from(b); c.writeFloatLE(NaN, 0); return c; }), /element 0 is NaN/],
  ];
  for (const [what, make, message] of cases) {
    it(`refuses ${what}`, () => {
      const p = make();
      expect(() => MoEClassifier.load(p)).toThrow(RangeError);
      expect(() => MoEClassifier.load(p)).toThrow(message);
    });
  }
});

describe('model files under random damage (property)', async () => {
  const fc = await import('fast-check');
  const good = join(dir, 'fuzz-good.safetensors');
  (await trained('topk', { topK: 2 })).save(good);
  const raw = readFileSync(good);
  const headerEnd = 8 + Number(raw.readBigUInt64LE(0));

  it('a truncated or byte-damaged file loads or is a RangeError, never another failure', () => {
    let i = 0;
    fc.assert(fc.property(
      fc.integer({ min: 0, max: raw.length }),
      fc.array(fc.tuple(fc.integer({ min: 0, max: headerEnd - 1 }), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
      (cut, edits) => {
        const b = Buffer.from(raw.subarray(0, cut));
        for (const [at, v] of edits) if (at < b.length) b[at] = v;
        const p = join(dir, `fuzz-${i++ % 4}.safetensors`);
        writeFileSync(p, b);
        try {
          const m = MoEClassifier.load(p);
          expect(m.parameterCount).toBeGreaterThan(0);
        } catch (err) {
          expect(err, String(err)).toBeInstanceOf(RangeError);
        }
      }), { numRuns: 300, seed: 19 });
  });
});
