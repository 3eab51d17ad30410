// Data loaders: CSV (streamed, errors with line numbers), .npy, IDX, labels of every integer type.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { MoEClassifier, io } from '../src/index.js';
import { idxBytes as idx } from './idx-data.js';

const dir = mkdtempSync(join(tmpdir(), 'calmoe-io-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, content: string | Uint8Array) => {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
};

describe('readCsv', () => {
  it('reads a header, features and a label column by name (quotes, CRLF, BOM, blank lines)', async () => {
    const p = file('a.csv', '\ufeffa,"label",b\r\n1.5,2,-3\r\n\r\n"4",0,5e-1\r\n');
    const r = await io.readCsv(p, { label: 'label' });
    expect(r.featureNames).toEqual(['a', 'b']);
    expect(r.x.rows).toBe(2);
    expect(Array.from(r.x.data)).toEqual([1.5, -3, 4, 0.5]);
    expect(r.labels).toBeInstanceOf(Int32Array);
    expect(Array.from(r.labels as Int32Array)).toEqual([2, 0]);
  });

  it('keeps string labels as strings and grows past its first buffer', async () => {
    const lines = ['x,y,species'];
    for (let i = 0; i < 3000; i++) lines.push(`${i},${-i},${i % 3 === 0 ? 'setosa' : 'virginica'}`);
    const r = await io.readCsv(file('big.csv', lines.join('\n')), { label: 'species' });
    expect(r.x.rows).toBe(3000);
    expect(r.x.data[2999 * 2 + 1]).toBe(-2999);
    expect((r.labels as string[]).slice(0, 2)).toEqual(['setosa', 'virginica']);
    const { labels, classNames } = io.encodeLabels(r.labels as string[]);
    expect(classNames).toEqual(['setosa', 'virginica']);
    expect(Array.from(labels.slice(0, 4))).toEqual([0, 1, 1, 0]);
  });

  it('counts lines through quoted line breaks and delimiters', async () => {
    const p = file('quoted.csv', 'a,note,y\n1,"two\nlines, and a comma",cat\n2,"",dog\n3,x,\n');
    const r = io.readCsv(p, { label: 'y', features: ['a'] });
    await expect(r).rejects.toThrow(/quoted\.csv:5: column 'y': the label is empty/);
    const ok = await io.readCsv(file('quoted-ok.csv', 'a,note,y\r\n1,"two\r\nlines, and a comma",cat\r\n2,"",dog\r\n'), { label: 'y', features: ['a'] });
    expect(Array.from(ok.x.data)).toEqual([1, 2]);
    expect(ok.labels).toEqual(['cat', 'dog']);
  });

  it('selects feature columns by name', async () => {
    const r = await io.readCsv(file('sel.csv', 'a,b,c\n1,2,3\n4,5,6\n'), { features: ['c', 'a'] });
    expect(Array.from(r.x.data)).toEqual([3, 1, 6, 4]);
    expect(r.labels).toBeUndefined();
  });

  it('names the file, line and column of a bad value', async () => {
    const p = file('bad.csv', 'a,b,y\n1,2,0\n3,oops,1\n');
    await expect(io.readCsv(p, { label: 'y' })).rejects.toThrow(new RegExp(`${p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3: column 'b': expected a finite number, got 'oops'`));
    await expect(io.readCsv(file('empty-cell.csv', 'a,y\n1,0\n,1\n'), { label: 'y' })).rejects.toThrow(/:3: column 'a'.*got ''/);
    await expect(io.readCsv(file('nolabel.csv', 'a,y\n1,\n'), { label: 'y' })).rejects.toThrow(/:2: column 'y': the label is empty/);
  });

  it('reports a wrong field count with its line, a missing column, an empty file, a missing file', async () => {
    await expect(io.readCsv(file('cols.csv', 'a,b\n1,2\n3,4\n5\n'))).rejects.toThrow(/cols\.csv:4: expected 2 fields like the header, got 1/);
    await expect(io.readCsv(file('nocol.csv', 'a,b\n1,2\n'), { label: 'y' })).rejects.toThrow(/no column named 'y'.*columns: a, b/);
    await expect(io.readCsv(file('empty.csv', ''))).rejects.toThrow(/empty file/);
    await expect(io.readCsv(file('header-only.csv', 'a,b\n'))).rejects.toThrow(/no data rows/);
    await expect(io.readCsv(join(dir, 'missing.csv'))).rejects.toThrow(/missing\.csv: no such file/);
    await expect(io.readCsv(file('x.csv', 'a\n1\n'), { label: 3 as never })).rejects.toThrow(TypeError);
  });
});

// A .npy file as numpy writes it (version 1.0 header padded to 64 bytes).
function npy(descr: string, shape: number[], body: Uint8Array, fortran = false): Uint8Array {
  let h = `{'descr': '${descr}', 'fortran_order': ${fortran ? 'True' : 'False'}, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  h += ' '.repeat(63 - ((10 + h.length) % 64)) + '\n';
  const out = new Uint8Array(10 + h.length + body.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, h.length, true);
  out.set(new TextEncoder().encode(h), 10);
  out.set(body, 10 + h.length);
  return out;
}

describe('.npy', () => {
  it('reads float32, float64, integer and big-endian arrays in C order', () => {
    const f4 = new Float32Array([1, 2, 3, 4, 5, 6]);
    const a = io.parseNpy(npy('<f4', [2, 3], new Uint8Array(f4.buffer)));
    expect(a.dtype).toBe('float32');
    expect(a.shape).toEqual([2, 3]);
    expect(io.npyToMatrix(a)).toEqual({ data: f4, rows: 2, cols: 3 });
    const f8 = io.parseNpy(npy('<f8', [3], new Uint8Array(new Float64Array([0.5, -1, 2]).buffer)));
    expect(Array.from(f8.data as Float64Array)).toEqual([0.5, -1, 2]);
    expect(io.parseNpy(npy('|u1', [3], new Uint8Array([7, 8, 9]))).data).toEqual(new Uint8Array([7, 8, 9]));
    expect(io.parseNpy(npy('<i8', [2], new Uint8Array(new BigInt64Array([5n, -2n]).buffer))).data).toEqual(new BigInt64Array([5n, -2n]));
    const be = new Uint8Array(8);
    new DataView(be.buffer).setInt32(0, 258, false);
    new DataView(be.buffer).setInt32(4, -1, false);
    expect(Array.from(io.parseNpy(npy('>i4', [2], be)).data as Int32Array)).toEqual([258, -1]);
  });

  it('round-trips what formatNpy writes (the CLI output)', () => {
    const data = new Float32Array([0.25, 0.75, 1, 0]);
    const a = io.parseNpy(io.formatNpy(data, [2, 2]));
    expect(a.shape).toEqual([2, 2]);
    expect(a.data).toEqual(data);
    expect(io.parseNpy(io.formatNpy(new Int32Array([3, 1]), [2])).data).toEqual(new Int32Array([3, 1]));
  });

  it('refuses Fortran order, unsupported dtypes and truncated files, saying why', () => {
    const body = new Uint8Array(new Float32Array(4).buffer);
    expect(() => io.parseNpy(npy('<f4', [2, 2], body, true), 'f.npy')).toThrow(/f\.npy: .*Fortran order.*ascontiguousarray/);
    expect(() => io.parseNpy(npy('<c8', [2], body), 'c.npy')).toThrow(/c\.npy: dtype '<c8' is not supported/);
    expect(() => io.parseNpy(npy('<U3', [1], body))).toThrow(/dtype '<U3' is not supported/);
    expect(() => io.parseNpy(npy('<f4', [3, 2], body), 't.npy')).toThrow(/t\.npy: truncated \.npy data: shape \(3, 2\) needs 24 bytes, the file has 16/);
    expect(() => io.parseNpy(new Uint8Array([1, 2, 3]))).toThrow(/not a \.npy file/);
    expect(() => io.npyToMatrix(io.parseNpy(npy('<f4', [2], new Uint8Array(new Float32Array([1, NaN]).buffer))), 'n.npy')).toThrow(/n\.npy: row 1, column 0 is NaN/);
  });

  it('reads a file numpy wrote, when python3 with numpy is here', (ctx) => {
    let ok = true;
    try { execFileSync('python3', ['-c', 'import numpy']); } catch { ok = false; }
    if (!ok) {
      console.warn('SKIPPED: python3 with numpy is not installed (apt-get install python3-numpy)');
      ctx.skip();
    }
    const p = join(dir, 'np.npy'), q = join(dir, 'npf.npy');
    execFileSync('python3', ['-c', `import numpy as np; np.save('${p}', np.arange(12, dtype=np.float64).reshape(3, 4) / 4); np.save('${q}', np.asfortranarray(np.ones((2, 3), np.float32)))`]);
    const m = io.npyToMatrix(io.readNpy(p));
    expect(m.rows).toBe(3);
    expect(m.cols).toBe(4);
    expect(m.data[5]).toBe(1.25);
    expect(() => io.readNpy(q)).toThrow(/Fortran order/);
  });
});

describe('IDX (MNIST family)', () => {
  it('reads images and labels, gzip or not, and big-endian floats', () => {
    const images = idx(0x08, [2, 2, 3], new Uint8Array([0, 1, 2, 3, 4, 5, 250, 251, 252, 253, 254, 255]));
    const p = file('train-images-idx3-ubyte.gz', gzipSync(images));
    const a = io.readIdx(p);
    expect(a.shape).toEqual([2, 2, 3]);
    const m = io.npyToMatrix(a);
    expect([m.rows, m.cols, m.data[11]]).toEqual([2, 6, 255]);
    const lp = file('train-labels-idx1-ubyte', idx(0x08, [2], new Uint8Array([7, 3])));
    expect(io.readLabels(lp)).toEqual(new Int32Array([7, 3]));
    const f = new Uint8Array(8);
    new DataView(f.buffer).setFloat32(0, 1.5, false);
    new DataView(f.buffer).setFloat32(4, -2, false);
    expect(Array.from(io.parseIdx(idx(0x0d, [2], f)).data as Float32Array)).toEqual([1.5, -2]);
  });

  it('refuses a wrong magic, an unknown type and a size that disagrees with the shape', () => {
    expect(() => io.parseIdx(new Uint8Array([1, 0, 8, 1]), 'm')).toThrow(/m: not an IDX file/);
    expect(() => io.parseIdx(idx(0x07, [1], new Uint8Array(1)))).toThrow(/element type 0x7/);
    expect(() => io.parseIdx(idx(0x08, [4], new Uint8Array(3)), 'x-ubyte')).toThrow(/x-ubyte: IDX shape \(4\) needs 4 bytes of data, the file has 3/);
  });

  it('readDataset joins features and a labels file, by extension', async () => {
    const images = file('t10k-images-idx3-ubyte', idx(0x08, [3, 2, 2], new Uint8Array(12).fill(9)));
    const labels = file('t10k-labels-idx1-ubyte', idx(0x08, [3], new Uint8Array([0, 1, 2])));
    const d = await io.readDataset(images, { labelsPath: labels });
    expect([d.x.rows, d.x.cols]).toEqual([3, 4]);
    expect(d.labels).toEqual(new Int32Array([0, 1, 2]));
    const short = file('short-labels-idx1-ubyte', idx(0x08, [2], new Uint8Array([0, 1])));
    await expect(io.readDataset(images, { labelsPath: short })).rejects.toThrow(/2 labels for 3 rows/);
    expect(() => io.fileFormat('data.parquet')).toThrow(/unknown file type/);
  });
});

describe('labels of any integer type and class names', () => {
  const n = 64, d = 3;
  const x = new Float32Array(n * d).map((_, i) => Math.sin(i * 1.7));
  const y32 = Int32Array.from({ length: n }, (_, i) => (x[i * d] > 0 ? 1 : 0));
  const fit = async (y: unknown, classNames?: string[]) => {
    const m = new MoEClassifier({ inputDim: d, classes: 2, experts: 2, seed: 3, device: 'cpu', classNames });
    await m.fit({ data: x, rows: n, cols: d }, y as Int32Array, { epochs: 2, batchSize: 16 });
    return m.parameters;
  };

  it('trains the same from Int32Array, Uint8Array, Int16Array, BigInt64Array and class names', async () => {
    const ref = await fit(y32);
    expect(await fit(Uint8Array.from(y32))).toEqual(ref);
    expect(await fit(Int16Array.from(y32))).toEqual(ref);
    expect(await fit(BigInt64Array.from(y32, (v) => BigInt(v)))).toEqual(ref);
    expect(await fit(Array.from(y32, (v) => (v ? 'yes' : 'no')), ['no', 'yes'])).toEqual(ref);
  });

  it('names what is wrong with labels', async () => {
    const m = new MoEClassifier({ inputDim: d, classes: 2, experts: 2, classNames: ['no', 'yes'] });
    const xm = { data: x, rows: n, cols: d };
    await expect(m.fit(xm, new Uint32Array(n).fill(2 ** 31))).rejects.toThrow(/y\[0\] = 2147483648: expected an integer in the int32 range/);
    await expect(m.fit(xm, Array(n).fill('maybe'))).rejects.toThrow(/y\[0\] = "maybe": not one of the model's classNames/);
    const plain = new MoEClassifier({ inputDim: d, classes: 2, experts: 2 });
    await expect(plain.fit(xm, Array(n).fill('no'))).rejects.toThrow(/string labels need a classifier with classNames/);
    expect(() => new MoEClassifier({ inputDim: d, classes: 2, experts: 2, classNames: ['a'] })).toThrow(/classNames: expected 2 names/);
    expect(() => new MoEClassifier({ inputDim: d, classes: 2, experts: 2, classNames: ['a', 'a'] })).toThrow(/distinct/);
    expect(io.classNamesOf(['10', '9', '100'])).toEqual(['9', '10', '100']);
    expect(() => io.encodeLabels(['a', 'c'], ['a', 'b'])).toThrow(/values\[1\] = "c": not one of the class names/);
  });
});

describe('round trips (property)', async () => {
  const fc = await import('fast-check');
  const matrices = fc.integer({ min: 1, max: 6 }).chain((cols) =>
    fc.array(fc.array(fc.float({ noNaN: true, noDefaultInfinity: true }), { minLength: cols, maxLength: cols }), { minLength: 1, maxLength: 40 }));

  it('a float32 matrix written as CSV (shortest decimal) or .npy reads back bit for bit', async () => {
    let i = 0;
    await fc.assert(fc.asyncProperty(matrices, async (rows) => {
      const cols = rows[0].length, data = Float32Array.from(rows.flat());
      const names = Array.from({ length: cols }, (_, j) => `c${j}`);
      const num = (v: number) => (Object.is(v, -0) ? '-0' : String(v));  // String(-0) is '0'
      const csv = await io.readCsv(file(`rt-${i++ % 3}.csv`, [[...names, 'y'].join(','), ...rows.map((r, k) => [...r.map(num), `"label ${k % 2}"`].join(','))].join('\n') + '\n'), { label: 'y' });
      expect(csv.x).toEqual({ data, rows: rows.length, cols });
      expect(csv.labels).toEqual(rows.map((_, k) => `label ${k % 2}`));
      expect(io.npyToMatrix(io.parseNpy(io.formatNpy(data, [rows.length, cols])))).toEqual({ data, rows: rows.length, cols });
    }), { numRuns: 60, seed: 19 });
  });
});
