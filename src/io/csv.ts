/**
 * CSV files with a header row: features as a float32 matrix, an optional label column chosen by
 * name. Streamed: rows are parsed as they are read (csv-parse handles quoting, CRLF and BOMs),
 * so a file is never held twice in memory. Errors name the file, the line and the column.
 */
import { createReadStream } from 'node:fs';
import { parse } from 'csv-parse';
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
  const source = createReadStream(path);
  const parser = parse({ delimiter, bom: true, trim: true, skip_empty_lines: true, info: true });
  source.on('error', (err) => parser.destroy(err));  // pipe() does not forward a read error (a missing file)
  source.pipe(parser);
  let featureCols: number[] = [], featureNames: string[] = [], labelCol = -1;
  let data = new Float32Array(0), rows = 0;
  const labelValues: string[] = [];
  let header = true;
  try {
    for await (const { record, info } of parser as AsyncIterable<{ record: string[]; info: { lines: number } }>) {
      if (header) {
        header = false;
        const index = new Map(record.map((name, i) => [name, i]));
        if (o.label !== undefined) {
          labelCol = index.get(o.label as string) ?? -1;
          if (labelCol < 0) throw rangeError(`${path}: no column named '${o.label}' for the labels (columns: ${record.join(', ')})`);
        }
        featureNames = (o.features as string[] | undefined) ?? record.filter((_, i) => i !== labelCol);
        featureCols = featureNames.map((f) => {
          const i = index.get(f);
          if (i === undefined) throw rangeError(`${path}: no feature column named '${f}' (columns: ${record.join(', ')})`);
          return i;
        });
        if (featureCols.length === 0) throw rangeError(`${path}: no feature columns`);
        data = new Float32Array(1024 * featureCols.length);
        continue;
      }
      const d = featureCols.length;
      if ((rows + 1) * d > data.length) {
        const grown = new Float32Array(data.length * 2);
        grown.set(data);
        data = grown;
      }
      for (let j = 0; j < d; j++) {
        const s = record[featureCols[j]];
        const v = s === '' ? NaN : Number(s);
        if (!Number.isFinite(v)) throw rangeError(`${path}:${info.lines}: column '${featureNames[j]}': expected a finite number, got '${s}'`);
        data[rows * d + j] = v;
      }
      if (labelCol >= 0) {
        if (record[labelCol] === '') throw rangeError(`${path}:${info.lines}: column '${o.label}': the label is empty`);
        labelValues.push(record[labelCol]);
      }
      rows++;
    }
  } catch (err) {
    const e = err as { code?: string; lines?: number; message: string };
    if (typeof e.code === 'string' && e.code.startsWith('CSV_')) throw rangeError(`${path}:${e.lines ?? '?'}: ${e.message}`);
    if (e.code === 'ENOENT') throw rangeError(`${path}: no such file`);
    throw err;
  } finally {
    source.destroy();
    parser.destroy();
  }
  if (header) throw rangeError(`${path}: empty file (expected a header row)`);
  if (rows === 0) throw rangeError(`${path}: no data rows after the header`);
  const out: CsvData = { x: { data: data.slice(0, rows * featureCols.length), rows, cols: featureCols.length }, featureNames };
  if (labelCol >= 0) {
    out.labels = labelValues.every((s) => INTEGER.test(s) && Math.abs(Number(s)) < 2 ** 31)
      ? Int32Array.from(labelValues, Number) : labelValues;
  }
  return out;
}
