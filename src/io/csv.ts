/**
 * CSV files with a header row: features as a float32 matrix, an optional label column chosen by
 * name. Streamed: rows are parsed as they are read (papaparse: quoting, CRLF, delimiters; chosen
 * over csv-parse because it parsed our benchmark's numeric CSV about 8x faster, and both are well
 * kept), so a file is never held twice in memory. Errors name the file, the line and the column.
 */
import { createReadStream } from 'node:fs';
import Papa from 'papaparse';
import { rangeError, typeError } from '../errors.js';
import type { Matrix } from '../validate.js';
import { optChoice, readOptions } from '../validate.js';

export interface CsvOptions {
  /** The label column's name (default: none; every column is a feature). */
  label?: string;
  /** Feature columns by name (default: every column but the label). */
  features?: string[];
  /** Field delimiter (default ','). */
  delimiter?: string;
}

export interface CsvData {
  x: Matrix;
  /** The feature columns' names, in the matrix's column order. */
  featureNames: string[];
  /** The label column: Int32Array when every value is an integer, else the strings (map them with `classNames`). */
  labels?: Int32Array | string[];
}

const INTEGER = /^[+-]?\d+$/;

/**
 * Reads a CSV file with a header row.
 *
 * @example
 * const { x, labels, featureNames } = await readCsv('train.csv', { label: 'species' });
 */
export async function readCsv(path: string, options?: CsvOptions): Promise<CsvData> {
  if (typeof path !== 'string') throw typeError(`path: expected a string, got ${typeof path}`);
  const o = readOptions(options, 'options', ['label', 'features', 'delimiter']);
  if (o.label !== undefined && typeof o.label !== 'string') throw typeError('label: expected a column name (string)');
  if (o.features !== undefined && (!Array.isArray(o.features) || o.features.some((f) => typeof f !== 'string')))
    throw typeError('features: expected an array of column names');
  const delimiter = o.delimiter === undefined ? ',' : optChoice(o.delimiter, 'delimiter', ',', [',', ';', '\t', '|', ' ']);
  let featureCols: number[] = [], featureNames: string[] = [], labelCol = -1, columns = 0;
  let data = new Float32Array(0), rows = 0;
  const labelValues: string[] = [];
  let header = true;

  // One record, starting at line `line`; throws a RangeError naming the line and column.
  const take = (record: string[], line: number) => {
    if (header) {
      header = false;
      const names = record.map((n, i) => (i === 0 ? n.replace(/^\ufeff/, '') : n).trim());
      columns = names.length;
      const index = new Map(names.map((name, i) => [name, i]));
      if (o.label !== undefined) {
        labelCol = index.get(o.label as string) ?? -1;
        if (labelCol < 0) throw rangeError(`${path}: no column named '${o.label}' for the labels (columns: ${names.join(', ')})`);
      }
      featureNames = (o.features as string[] | undefined) ?? names.filter((_, i) => i !== labelCol);
      featureCols = featureNames.map((f) => {
        const i = index.get(f);
        if (i === undefined) throw rangeError(`${path}: no feature column named '${f}' (columns: ${names.join(', ')})`);
        return i;
      });
      if (featureCols.length === 0) throw rangeError(`${path}: no feature columns`);
      data = new Float32Array(1024 * featureCols.length);
      return;
    }
    if (record.length !== columns) throw rangeError(`${path}:${line}: expected ${columns} fields like the header, got ${record.length}`);
    const d = featureCols.length;
    if ((rows + 1) * d > data.length) {
      const grown = new Float32Array(data.length * 2);
      grown.set(data);
      data = grown;
    }
    for (let j = 0; j < d; j++) {
      const s = record[featureCols[j]];
      const v = s.trim() === '' ? NaN : Number(s);
      if (!Number.isFinite(v)) throw rangeError(`${path}:${line}: column '${featureNames[j]}': expected a finite number, got '${s.trim()}'`);
      data[rows * d + j] = v;
    }
    if (labelCol >= 0) {
      const label = record[labelCol].trim();
      if (label === '') throw rangeError(`${path}:${line}: column '${o.label}': the label is empty`);
      labelValues.push(label);
    }
    rows++;
  };

  await new Promise<void>((resolve, reject) => {
    const source = createReadStream(path, 'utf8');
    let failure: unknown, line = 1;  // the line the next record starts on
    source.on('error', (err) => reject((err as { code?: string }).code === 'ENOENT' ? rangeError(`${path}: no such file`) : err));
    Papa.parse<string[]>(source, {
      delimiter, header: false, skipEmptyLines: false, dynamicTyping: false,
      step: (res, parser) => {
        if (failure !== undefined) return;
        const record = res.data, start = line;
        for (const f of record) for (let i = f.indexOf('\n'); i >= 0; i = f.indexOf('\n', i + 1)) line++;  // quoted line breaks
        line++;
        try {
          if (res.errors.length > 0) throw rangeError(`${path}:${start}: ${res.errors[0].message}`);
          if (record.length === 1 && record[0].trim() === '') return;  // a blank line
          take(record, start);
        } catch (err) {
          failure = err;
          parser.abort();
          source.destroy();
        }
      },
      complete: () => (failure === undefined ? resolve() : reject(failure)),
      error: (err) => reject(failure ?? rangeError(`${path}: ${err.message}`)),
    });
  });
  if (header) throw rangeError(`${path}: empty file (expected a header row)`);
  if (rows === 0) throw rangeError(`${path}: no data rows after the header`);
  const out: CsvData = { x: { data: data.slice(0, rows * featureCols.length), rows, cols: featureCols.length }, featureNames };
  if (labelCol >= 0) {
    out.labels = labelValues.every((s) => INTEGER.test(s) && Math.abs(Number(s)) < 2 ** 31)
      ? Int32Array.from(labelValues, Number) : labelValues;
  }
  return out;
}
