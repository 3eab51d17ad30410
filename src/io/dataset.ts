/**
 * A data set from files, by extension: `.csv`/`.tsv` (a label column by name), `.npy`, IDX
 * (`*-ubyte`, `*.idx`, gzip or not). Labels come from the CSV's label column or a separate file.
 */
import { rangeError, typeError } from '../errors.js';
import type { Matrix } from '../validate.js';
import { readCsv } from './csv.js';
import { readIdx } from './idx.js';
import { type NpyArray, npyToMatrix, readNpy } from './npy.js';

export interface DatasetFiles {
  /** The CSV column holding the labels. */
  label?: string;
  /** A `.npy` or IDX file of labels, one per row of the features. */
  labelsPath?: string;
  /** The CSV's feature columns by name, in this order (default: every column but the label). */
  features?: string[];
}

export interface Dataset {
  x: Matrix;
  /** Integer labels, or names (map them with the model's `classNames`). */
  labels?: Int32Array | string[];
  featureNames?: string[];
}

export type FileFormat = 'csv' | 'tsv' | 'npy' | 'idx';

/** The format a path's name says it has. */
export function fileFormat(path: string): FileFormat {
  const p = path.toLowerCase().replace(/\.gz$/, '');
  if (p.endsWith('.csv')) return 'csv';
  if (p.endsWith('.tsv')) return 'tsv';
  if (p.endsWith('.npy')) return 'npy';
  if (/ubyte$|\.idx\d?$/.test(p)) return 'idx';
  throw rangeError(`${path}: unknown file type (expected .csv, .tsv, .npy or an IDX file: *-ubyte, *.idx)`);
}

function readArray(path: string): NpyArray {
  return fileFormat(path) === 'npy' ? readNpy(path) : readIdx(path);
}

/** Integer labels from a `.npy` or IDX file (one dimension). */
export function readLabels(path: string): Int32Array {
  const a = readArray(path);
  if (a.shape.length !== 1) throw rangeError(`${path}: expected one label per row (a 1-d array), got shape (${a.shape.join(', ')})`);
  if (a.dtype === 'float32' || a.dtype === 'float64') {
    const out = new Int32Array(a.data.length);
    for (let i = 0; i < out.length; i++) {
      const v = a.data[i] as number;
      if (!Number.isInteger(v)) throw rangeError(`${path}: label ${i} is ${v} (expected an integer)`);
      out[i] = v;
    }
    return out;
  }
  const out = new Int32Array(a.data.length);
  for (let i = 0; i < out.length; i++) {
    const v = a.data[i];
    if (v < -(2 ** 31) || v >= 2 ** 31) throw rangeError(`${path}: label ${i} = ${v} is outside the int32 range`);
    out[i] = Number(v);
  }
  return out;
}

/**
 * Reads features (and labels) from files.
 *
 * @example
 * const train = await readDataset('train.csv', { label: 'species' });
 * const mnist = await readDataset('train-images-idx3-ubyte.gz', { labelsPath: 'train-labels-idx1-ubyte.gz' });
 */
export async function readDataset(path: string, files: DatasetFiles = {}): Promise<Dataset> {
  if (typeof path !== 'string') throw typeError(`path: expected a string, got ${typeof path}`);
  const format = fileFormat(path);
  let out: Dataset;
  if (format === 'csv' || format === 'tsv') {
    const c = await readCsv(path, { label: files.label, features: files.features, delimiter: format === 'tsv' ? '\t' : ',' });
    out = { x: c.x, labels: c.labels, featureNames: c.featureNames };
  } else {
    if (files.label !== undefined) throw rangeError(`label: a column name only applies to CSV files; give the labels of ${path} as a file (labelsPath)`);
    out = { x: npyToMatrix(readArray(path), path) };
  }
  if (files.labelsPath !== undefined) {
    if (out.labels) throw rangeError(`labelsPath: ${path} already has a label column`);
    out.labels = readLabels(files.labelsPath);
  }
  if (out.labels && out.labels.length !== out.x.rows)
    throw rangeError(`${files.labelsPath ?? path}: ${out.labels.length} labels for ${out.x.rows} rows of features`);
  return out;
}
