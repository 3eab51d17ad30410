/**
 * W4 in PyTorch (CPU): writes W4's rows (bench/w4-data.ts) to a temporary folder and runs
 * torch_w4.py on them at this process's thread count, so calmoe and PyTorch fit the same bits in
 * the same run. Forwards the script's JSON lines; skipped, saying why, without python3 + torch
 * (Debian: apt-get install python3-torch).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getThreads } from 'calmoe';
import { emit, note, type Line } from '../common.js';
import { W4, fashionLikeData } from '../w4-data.js';

export interface TorchW4Options {
  rows?: number;
  epochs?: number;
  /** Also run with torch.set_flush_denormal(True) (default false: PyTorch's default). */
  flushDenormals?: boolean;
}

// the script sits beside this file's source (bench/peers), two folders above the compiled one
const script = resolve(dirname(fileURLToPath(import.meta.url)), '../../../bench/peers/torch_w4.py');

// A Python with torch: $PYTHON, then python3 on the PATH, then Debian's own (python3-torch is
// installed for /usr/bin/python3, which a pyenv or venv python3 on the PATH does not see).
function findPython(): { python: string; version: string } | { missing: string } {
  let why = '';
  for (const python of [process.env.PYTHON, 'python3', '/usr/bin/python3'].filter((p): p is string => !!p)) {
    const r = spawnSync(python, ['-c', 'import torch, numpy; print(torch.__version__)'], { encoding: 'utf8' });
    if (r.status === 0) return { python, version: r.stdout.trim() };
    why = `${python}: ${(r.stderr || String(r.error)).trim().split('\n').pop()}`;
  }
  return { missing: why };
}

export function runTorchW4(o: TorchW4Options): void {
  const py = findPython();
  if ('missing' in py) {
    note(`W4 (PyTorch): skipped: no python3 with torch and numpy (apt-get install python3-torch); ${py.missing}`);
    return;
  }
  const rows = o.rows ?? W4.rows, epochs = o.epochs ?? W4.epochs;
  const { x, y } = fashionLikeData(rows);
  const dir = mkdtempSync(join(tmpdir(), 'calmoe-w4-'));
  try {
    const xf = join(dir, 'x.f32'), yf = join(dir, 'y.i32');
    writeFileSync(xf, new Uint8Array(x.data.buffer, x.data.byteOffset, x.data.byteLength));
    writeFileSync(yf, new Uint8Array(y.buffer, y.byteOffset, y.byteLength));
    note(`W4 (PyTorch ${py.version}, ${py.python}): AdamW fit, soft, ${rows} rows, ${epochs} epochs, ${getThreads()} threads`);
    for (const flush of o.flushDenormals ? [false, true] : [false]) {
      const args = [script, '--x', xf, '--y', yf, '--rows', String(rows), '--d', String(W4.d), '--classes', String(W4.C),
        '--experts', String(W4.K), '--hidden', String(W4.h), '--batch', String(W4.batch), '--epochs', String(epochs),
        '--threads', String(getThreads()), ...(flush ? ['--flush-denormals'] : [])];
      // the BLAS PyTorch calls (OpenBLAS on Debian) gets the same thread count as torch's own pool
      const env = { ...process.env, OMP_NUM_THREADS: String(getThreads()), OPENBLAS_NUM_THREADS: String(getThreads()) };
      const r = spawnSync(py.python, args, { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 });
      if (r.status !== 0) throw new Error(`torch_w4.py failed (exit ${r.status}${r.signal ? `, ${r.signal}` : ''})`);
      for (const l of r.stdout.split('\n').filter((s) => s.startsWith('{'))) emit(JSON.parse(l) as Line);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
