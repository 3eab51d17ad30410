/** Loads TensorFlow.js (core + CPU backend, and the WASM backend when it initialises) for peers. */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { note } from './common.js';

export { tf };

/** The backends that work here: 'cpu' always, 'wasm' when its module loads. */
export async function tfBackends(): Promise<string[]> {
  const out = ['cpu'];
  try {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    const require = createRequire(import.meta.url);
    wasm.setWasmPaths(join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + '/');
    if (await tf.setBackend('wasm')) out.push('wasm');
  } catch (err) {
    note(`TensorFlow.js WASM backend unavailable: ${(err as Error).message}`);
  }
  await tf.setBackend('cpu');
  return out;
}
