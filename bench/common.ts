/** Benchmark plumbing: JSON lines as DESIGN.md defines them, timing, the native bench binary. */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getThreads } from 'calmoe';

export interface Line {
  system: string;
  workload: string;
  mode: string;
  metric: string;
  value: number;
  unit: string;
  threads: number;
  device: string;
  /** W4: the epoch (1-based) a per-epoch figure belongs to. */
  epoch?: number;
}

export const lines: Line[] = [];

export function emit(l: Omit<Line, 'threads'> & { threads?: number }): void {
  const line: Line = { ...l, threads: l.threads ?? getThreads() };
  lines.push(line);
  process.stdout.write(JSON.stringify(line) + '\n');
}

export function note(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

/** Best time in seconds of `repeat` runs after one warm-up. */
export async function bestTime(repeat: number, fn: () => unknown | Promise<unknown>): Promise<number> {
  await fn();
  let best = Infinity;
  for (let r = 0; r < repeat; r++) {
    const t0 = process.hrtime.bigint();
    await fn();
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return best;
}

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Runs the native benchmark executable (built by CMake next to the addon) and returns its JSON lines. */
export function nativeBench(args: string[]): Line[] {
  const exe = join(root, 'build', 'calmoe_bench');
  if (!existsSync(exe)) {
    note(`native benchmark ${exe} not built (node-gyp builds have none); skipping ${args.join(' ')}`);
    return [];
  }
  const r = spawnSync(exe, args, { encoding: 'utf8' });
  if (r.status !== 0) {
    note(`calmoe_bench ${args.join(' ')} failed: ${r.stderr}`);
    return [];
  }
  return r.stdout.split('\n').filter((s) => s.startsWith('{')).map((s) => JSON.parse(s) as Line);
}
