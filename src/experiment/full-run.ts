/**
 * The full run (`calmoe experiment --full`): the paper's protocol on Fashion-MNIST as Debian's
 * `dataset-fashion-mnist` installs it (gzip IDX files, nothing downloaded at run time).
 *
 * It uses the 60,000 training images only: the experiment makes its own seeded 60/20/20 split
 * (36,000 train, 12,000 validation, 12,000 test pool), which is plenty for the shifts' importance
 * weights, and the 10,000 `t10k` images stay the untouched held-out set of the literature.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** Where `apt-get install dataset-fashion-mnist` puts the IDX files. */
export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

/** Overrides FASHION_MNIST_DIR (a copy elsewhere; the tests' fixture files). */
export const FASHION_MNIST_DIR_ENV = 'CALMOE_FASHION_MNIST_DIR';

/** The full run's settings: 5 seeds, 15 epochs, 8 experts of 128 hidden units, batch 128 (threads: all cores, the default). */
export const FULL_RUN = { seeds: 5, epochs: 15, experts: 8, expertHidden: [128], batchSize: 128 } as const;

export interface FashionMnistFiles {
  dir: string;
  images: string;
  labels: string;
  /** The files of the two that are not there (empty when the data are installed). */
  missing: string[];
}

/** The folder the full run reads: the env override when set, else FASHION_MNIST_DIR. */
export const fashionMnistDir = (): string => process.env[FASHION_MNIST_DIR_ENV] || FASHION_MNIST_DIR;

/** The training images and labels in `dir`, and which of them are missing. */
export function fashionMnistFiles(dir = fashionMnistDir()): FashionMnistFiles {
  const images = join(dir, 'train-images-idx3-ubyte.gz'), labels = join(dir, 'train-labels-idx1-ubyte.gz');
  return { dir, images, labels, missing: [images, labels].filter((f) => !existsSync(f)) };
}
