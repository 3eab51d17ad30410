/**
 * The progress display of `fit({ progress: true })`: on a terminal, a bar (cli-progress) with
 * steps, examples/s, ETA and the running loss; elsewhere (CI logs, pipes) one plain line per
 * epoch, which stays readable in a file.
 */
import cliProgress from 'cli-progress';
import type { NativeBatchLog, NativeEpochLog } from '../native.js';
import { optChoice, readOptions } from '../validate.js';

export interface ProgressOptions {
  /** 'auto' (default): a bar when the stream is a TTY, else lines. */
  mode?: 'auto' | 'bar' | 'lines';
  /** Where to write (default process.stderr). */
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
}

export interface ProgressDisplay {
  batch(log: NativeBatchLog): void;
  epoch(log: NativeEpochLog): void;
  stop(): void;
}

function fmt(v: number | undefined, digits = 4): string {
  return v === undefined ? '-' : v.toFixed(digits);
}

function duration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${s.toFixed(0)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.round((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** The line printed at an epoch's end (both modes). */
export function epochLine(log: NativeEpochLog, epochs: number, etaSeconds: number): string {
  let line = `epoch ${log.epoch + 1}/${epochs}: loss ${fmt(log.loss)} acc ${fmt(log.accuracy)}`;
  if (log.valLoss !== undefined) line += ` | val loss ${fmt(log.valLoss)} acc ${fmt(log.valAccuracy)} ece ${fmt(log.valEce)}`;
  line += ` | ${Math.round(log.examplesPerSecond).toLocaleString('en-US')} ex/s, ${log.seconds.toFixed(1)}s`;
  if (log.epoch + 1 < epochs) line += `, ETA ${duration(etaSeconds)}`;
  return line;
}

export function parseProgress(v: unknown): ProgressOptions | undefined {
  if (v === undefined || v === false) return undefined;
  if (v === true) return {};
  const o = readOptions(v, 'progress', ['mode', 'stream']);
  optChoice(o.mode, 'progress.mode', 'auto', ['auto', 'bar', 'lines'] as const);
  return o as ProgressOptions;
}

/** A display for a fit of `epochs` epochs of `batches` batches of `batchSize` rows. */
export function progressDisplay(options: ProgressOptions, epochs: number, batches: number, batchSize: number): ProgressDisplay {
  const stream = options.stream ?? process.stderr;
  const mode = options.mode ?? 'auto';
  const bar = mode === 'bar' || (mode === 'auto' && stream.isTTY === true);
  const start = Date.now();
  const total = epochs * batches;
  const eta = (done: number) => ((Date.now() - start) / 1000 / Math.max(done, 1)) * (total - done);
  if (!bar) {
    return {
      batch() {},
      epoch(log) { stream.write(epochLine(log, epochs, eta((log.epoch + 1) * batches)) + '\n'); },
      stop() {},
    };
  }
  const b = new cliProgress.SingleBar({
    stream: stream as NodeJS.WritableStream,
    format: 'epoch {epoch} |{bar}| {percentage}% {value}/{total} steps | {rate} ex/s | ETA {eta_formatted} | loss {loss}',
    barsize: 24, hideCursor: true, clearOnComplete: false, etaBuffer: 50, noTTYOutput: !(stream.isTTY === true), notTTYSchedule: 2000,
  }, cliProgress.Presets.shades_classic);
  b.start(total, 0, { epoch: `1/${epochs}`, rate: '-', loss: '-' });
  return {
    batch(log) {
      const elapsed = (Date.now() - start) / 1000;
      b.update(log.step, { epoch: `${log.epoch + 1}/${epochs}`, rate: Math.round((log.step * batchSize) / Math.max(elapsed, 1e-9)).toLocaleString('en-US'), loss: fmt(log.loss) });
    },
    epoch(log) {
      b.update((log.epoch + 1) * batches);
      stream.write('\n' + epochLine(log, epochs, eta((log.epoch + 1) * batches)) + '\n');
    },
    stop() { b.stop(); },
  };
}
