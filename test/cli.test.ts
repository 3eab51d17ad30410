// The `calmoe` command line as a user runs it (dist/cli/main.js, built by `npm run prepare`):
// the README's quick start as written, JSON output, exit codes and errors.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { io } from '../src/index.js';
import { writeFlowers } from './cli-data.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'dist', 'cli', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'calmoe-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
writeFlowers(dir);

function calmoe(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: dir, encoding: 'utf8', env: { ...process.env, CALMOE_NUM_THREADS: '1' } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

// Splits a shell line into words (the README's commands use plain words and quotes only).
function words(line: string): string[] {
  return [...line.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]);
}

describe('calmoe CLI', () => {
  it('runs the README quick start as written', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const section = readme.split(/^## /m).find((s) => s.startsWith('Quick start: your CSV with the CLI'));
    expect(section, 'README section "Quick start: your CSV with the CLI"').toBeDefined();
    const block = /```sh\n([\s\S]*?)```/.exec(section!)![1];
    const commands = block.split('\n').filter((l) => l.startsWith('npx calmoe '));
    expect(commands.length).toBeGreaterThanOrEqual(5);
    for (const line of commands) {
      const [command, comment = ''] = line.split(/\s+#\s*/);
      const expected = /exit code (\d+)/.exec(comment)?.[1] ?? '0';
      const r = calmoe(words(command).slice(2));
      expect(r.code, `${line}\n${r.stderr}`).toBe(Number(expected));
    }
    for (const f of ['model.safetensors', 'report.html', 'predictions.csv']) expect(existsSync(join(dir, f)), f).toBe(true);
    const pred = readFileSync(join(dir, 'predictions.csv'), 'utf8').trim().split('\n');
    expect(pred[0]).toBe('p_setosa,p_versicolor,p_virginica,prediction');
    expect(pred).toHaveLength(301);
  });

  it('trains, evaluates and predicts with --json, and the numbers agree with the library', async () => {
    const t = calmoe(['train', 'train.csv', '--label', 'species', '--epochs', '5', '--experts', '3', '--validation', 'val.csv', '--json', '-o', 'j.safetensors', '--best', 'best.safetensors']);
    expect(t.code, t.stderr).toBe(0);
    const tj = JSON.parse(t.stdout);
    expect(tj).toMatchObject({ model: 'j.safetensors', rows: 600, validationRows: 150, features: 4, classes: 3, classNames: ['setosa', 'versicolor', 'virginica'] });
    expect(tj.epochs).toHaveLength(5);
    expect(tj.best).toMatchObject({ monitor: 'valLoss', epoch: expect.any(Number) });
    expect(existsSync(join(dir, 'best.safetensors'))).toBe(true);
    expect(t.stderr).toMatch(/epoch 5\/5: loss/);  // progress: one line per epoch when stderr is not a terminal
    const e = calmoe(['eval', 'j.safetensors', 'test.csv', '--label', 'species', '--json', '--audit']);
    expect(e.code, e.stderr).toBe(0);
    const ej = JSON.parse(e.stdout);
    const { MoEClassifier } = await import('../src/index.js');
    const model = MoEClassifier.load(join(dir, 'j.safetensors'), { device: 'cpu' });
    const test = await io.readCsv(join(dir, 'test.csv'), { label: 'species' });
    const ev = await model.evaluate(test.x, test.labels as string[]);
    expect(ej.accuracy).toBe(ev.accuracy);
    expect(ej.ece).toBe(ev.ece);
    expect(ej.audit.experts.experts).toHaveLength(3);
    const p = calmoe(['predict', 'j.safetensors', 'test.csv', '--label', 'species', '-o', 'p.npy', '--routes', '--json']);
    expect(p.code, p.stderr).toBe(0);
    expect(JSON.parse(p.stdout).written).toEqual(['p.npy', 'p.routes.npy']);
    const probs = io.readNpy(join(dir, 'p.npy'));
    expect(probs.shape).toEqual([300, 3]);
    expect(probs.data).toEqual(model.predictSync(test.x).probs.data);
    expect(io.readNpy(join(dir, 'p.routes.npy')).shape).toEqual([300, 3]);
  });

  it('calibrate writes what the routing needs into the model file: per-expert and aggregate temperatures (soft), per-expert only (hard)', async () => {
    const { MoEClassifier } = await import('../src/index.js');
    for (const routing of ['soft', 'hard']) {
      const file = `cal-${routing}.safetensors`;
      const t = calmoe(['train', 'train.csv', '--label', 'species', '--epochs', '4', '--experts', '3', '--routing', routing, '-o', file]);
      expect(t.code, t.stderr).toBe(0);
      const c = calmoe(['calibrate', file, 'val.csv', '--label', 'species', '--json', '--keep-worse']);
      expect(c.code, c.stderr).toBe(0);
      const cj = JSON.parse(c.stdout);
      expect(cj.scope).toBe(routing === 'soft' ? 'experts+aggregate' : 'experts');
      const model = MoEClassifier.load(join(dir, file), { device: 'cpu' });
      expect(Array.from(model.temperatures)).toEqual(cj.temperatures);
      expect(model.aggregateTemperature).toBe(cj.aggregateTemperature);
      if (routing === 'hard') expect(model.aggregateTemperature).toBe(1);
      else expect(model.aggregateTemperature).not.toBe(1);
    }
  });

  it('reads CSV columns by the names saved with the model: reordered or extra columns predict the same', () => {
    expect(calmoe(['train', 'train.csv', '--label', 'species', '--epochs', '3', '--no-progress', '-o', 'n.safetensors']).code).toBe(0);
    const lines = readFileSync(join(dir, 'test.csv'), 'utf8').trim().split('\n').map((l) => l.split(','));
    // columns reversed, the label dropped, a column the model never saw added
    writeFileSync(join(dir, 'reordered.csv'), lines.map((c, i) => [i ? String(i) : 'row_id', ...c.slice(0, 4).reverse()].join(',')).join('\n') + '\n');
    expect(calmoe(['predict', 'n.safetensors', 'test.csv', '-o', 'a.csv']).code).toBe(0);
    expect(calmoe(['predict', 'n.safetensors', 'reordered.csv', '-o', 'b.csv']).code).toBe(0);
    expect(readFileSync(join(dir, 'b.csv'), 'utf8')).toBe(readFileSync(join(dir, 'a.csv'), 'utf8'));
    writeFileSync(join(dir, 'missing-col.csv'), 'sepal_length,sepal_width,petal_length\n1,2,3\n');
    const r = calmoe(['predict', 'n.safetensors', 'missing-col.csv', '-o', 'c.csv']);
    expect([r.code, r.stderr]).toEqual([3, expect.stringMatching(/no feature column named 'petal_width'/)]);
  });

  it('has --help with examples for every subcommand', () => {
    for (const c of ['train', 'eval', 'predict', 'calibrate', 'drift', 'doctor']) {
      const r = calmoe([c, '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/Examples:\n {2}\$ calmoe /);
    }
    expect(calmoe(['--help']).stdout).toMatch(/Exit codes: 0 ok/);
  });

  it('exit codes: 2 for wrong usage, 3 for bad input, with one line saying what is wrong', () => {
    expect(calmoe(['train', 'train.csv', '--label', 'species', '--epochz', '3']).code).toBe(2);
    expect(calmoe(['train', 'train.csv', '--label', 'species', '--epochs', 'three']).code).toBe(2);
    // options bounded by the core's limits (src/limits.ts): the bound in the message is the addon's
    const experts = calmoe(['train', 'train.csv', '--label', 'species', '--experts', '4097']);
    expect([experts.code, experts.stderr]).toEqual([2, expect.stringMatching(/--experts <n>' argument '4097' is invalid\. expected an integer in \[1, 4096\]/)]);
    expect(calmoe(['frobnicate']).code).toBe(2);
    const nolabel = calmoe(['train', 'train.csv']);
    expect([nolabel.code, nolabel.stderr]).toEqual([2, expect.stringMatching(/no labels: name the label column \(--label <name>\)/)]);
    writeFileSync(join(dir, 'bad.csv'), 'a,b,y\n1,2,x\n3,abc,y\n');
    const bad = calmoe(['train', 'bad.csv', '--label', 'y']);
    expect(bad.code).toBe(3);
    expect(bad.stderr).toMatch(/^calmoe: bad\.csv:3: column 'b': expected a finite number, got 'abc'\n$/);
    const missing = calmoe(['eval', 'nope.safetensors', 'test.csv', '--label', 'species']);
    expect([missing.code, missing.stderr]).toEqual([3, 'calmoe: nope.safetensors: no such model file\n']);
    writeFileSync(join(dir, 'hostile.safetensors'), Buffer.from([255, 255, 255, 255, 255, 255, 255, 127, 0]));
    const hostile = calmoe(['predict', 'hostile.safetensors', 'test.csv', '-o', 'x.csv']);
    expect(hostile.code).toBe(3);
    expect(hostile.stderr).toMatch(/not a valid safetensors file: the header length 9223372036854775807 runs past the end/);
  });

  it('train --checkpoint / --resume: the resumed run saves the model of the uninterrupted one', async () => {
    const args = ['train', 'train.csv', '--label', 'species', '--epochs', '5', '--experts', '3', '--expert-hidden', '8', '--batch-size', '64',
      '--schedule', 'cosine', '--val-split', '0.2', '--seed', '5', '--no-progress'];
    expect(calmoe([...args, '-o', 'straight.safetensors']).code).toBe(0);
    const w = calmoe([...args, '-o', 'ck-run.safetensors', '--checkpoint', 'run.ckpt', '--checkpoint-every', '2']);  // run.ckpt: after epoch 4
    expect(w.code, w.stderr).toBe(0);
    const r = calmoe([...args, '-o', 'resumed.safetensors', '--resume', 'run.ckpt', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).epochs.map((e: { epoch: number }) => e.epoch)).toEqual([0, 1, 2, 3, 4]);
    const { MoEClassifier } = await import('../src/index.js');
    const straight = MoEClassifier.load(join(dir, 'straight.safetensors'));
    expect(MoEClassifier.load(join(dir, 'ck-run.safetensors')).parameters).toEqual(straight.parameters);
    expect(MoEClassifier.load(join(dir, 'resumed.safetensors')).parameters).toEqual(straight.parameters);
    const bad = calmoe([...args.map((a) => (a === '64' ? '32' : a)), '-o', 'x.safetensors', '--resume', 'run.ckpt']);
    expect(bad.code).toBe(3);
    expect(bad.stderr.trim()).toBe("calmoe: batchSize: 32 differs from the checkpointed run's 64 (resumeFrom: run.ckpt); resume with the same batchSize");
    const usage = calmoe([...args, '--checkpoint-every', '2']);
    expect(usage.code).toBe(2);
    expect(usage.stderr.trim()).toBe('calmoe: --checkpoint-every: needs --checkpoint <file>');
  });

  it('output piped into a reader that stops early ends quietly (no EPIPE stack)', () => {
    // `true` reads nothing and exits at once: the help text is written into a closed pipe
    const r = spawnSync('sh', ['-c', `"${process.execPath}" "${bin}" --help | true`], { cwd: dir, encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stderr).not.toMatch(/EPIPE|Unhandled/);
  });

  it('doctor reports the backends', () => {
    const r = calmoe(['doctor', '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ version: expect.any(String), cpuThreads: expect.any(Number), simd: expect.any(String) });
    const cuda = calmoe(['doctor', '--require-cuda']);
    expect(cuda.code).toBe(j.gpuUsable ? 0 : 5);
  });
});
