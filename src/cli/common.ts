/**
 * What every `calmoe` subcommand shares: exit codes, errors, reading data sets, printing results.
 */
import { type Command, InvalidArgumentError, Option } from 'commander';
import { type Dataset, readDataset } from '../io/dataset.js';

/** Exit codes: documented in `calmoe --help` and the README. */
export const EXIT = {
  ok: 0,
  /** an unexpected failure (a bug, or the native runtime) */
  failure: 1,
  /** wrong usage: an unknown option, a bad option value */
  usage: 2,
  /** bad input: a missing or malformed data or model file, labels that do not fit the model */
  input: 3,
  /** `drift`: at least one feature drifted */
  drift: 4,
  /** `doctor --require-cuda`: no usable GPU */
  unavailable: 5,
  /** interrupted (Ctrl-C) */
  interrupted: 130,
} as const;

export const EXIT_CODES_HELP = `
Exit codes: 0 ok, 1 unexpected failure, 2 wrong usage, 3 bad input (data or model file),
4 drift found (drift), 5 no usable GPU (doctor --require-cuda), 130 interrupted.`;

/** An error the CLI reports in one line with its exit code. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode: number) {
    super(message);
  }
}

/** The exit code of an error thrown by calmoe or Node. */
export function exitCodeOf(err: unknown): number {
  if (err instanceof CliError) return err.exitCode;
  const e = err as { code?: string; name?: string };
  if (e?.name === 'AbortError') return EXIT.interrupted;
  if (e?.code === 'CALMOE_INVALID_ARG_VALUE' || e?.code === 'CALMOE_INVALID_ARG_TYPE' || e?.code === 'ENOENT' || e?.code === 'EISDIR' || e?.code === 'EACCES')
    return EXIT.input;
  if (e?.code === 'CALMOE_CUDA_UNAVAILABLE') return EXIT.unavailable;
  return EXIT.failure;
}

// option parsers (commander calls them with the raw string)
/** A bound, or a function giving it when an argument is parsed (a core limit: src/limits.ts). */
export type Bound = number | (() => number);
const bound = (b: Bound): number => (typeof b === 'function' ? b() : b);

export function intArg(min: Bound, maxBound: Bound = Number.MAX_SAFE_INTEGER) {
  return (v: string): number => {
    const n = Number(v), lo = bound(min), max = bound(maxBound);
    if (!Number.isInteger(n) || n < lo || n > max) throw new InvalidArgumentError(`expected an integer in [${lo}, ${max}]`);
    return n;
  };
}

export function numArg(minBound: Bound = -Infinity, maxBound: Bound = Infinity) {
  return (v: string): number => {
    const n = Number(v), min = bound(minBound), max = bound(maxBound);
    if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`expected a number in [${min}, ${max}]`);
    return n;
  };
}

/** "64,32" -> [64, 32]; "" or "none" -> []. */
export function listArg(v: string): number[] {
  if (v === '' || v === 'none') return [];
  return v.split(',').map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`expected comma-separated positive integers, got '${v}'`);
    return n;
  });
}

export interface DataOptions {
  label?: string;
  labels?: string;
  /** CSV feature columns by name (a model's featureNames): other columns are ignored, order follows these. */
  features?: readonly string[];
}

/** Reads a data set; labels are required when `needLabels`. */
export async function loadData(path: string, o: DataOptions, needLabels: boolean): Promise<Dataset> {
  if (needLabels && o.label === undefined && o.labels === undefined)
    throw new CliError(`${path}: no labels: name the label column (--label <name>) or give a labels file (--labels <file>)`, EXIT.usage);
  const d = await readDataset(path, { label: o.label, labelsPath: o.labels, features: o.features ? [...o.features] : undefined });
  if (needLabels && !d.labels)
    throw new CliError(`${path}: no labels: name the label column (--label <name>) or give a labels file (--labels <file>)`, EXIT.usage);
  return d;
}

/** Prints `value` as JSON (--json) or as the text `human` gives. */
export function output(json: boolean, value: unknown, human: () => string): void {
  process.stdout.write(json ? JSON.stringify(value, jsonReplacer) + '\n' : human() + '\n');
}

// typed arrays as arrays in --json output
function jsonReplacer(_key: string, v: unknown): unknown {
  return ArrayBuffer.isView(v) && !(v instanceof DataView) ? Array.from(v as unknown as ArrayLike<number>) : v;
}

export function fixed(v: number | undefined, digits = 4): string {
  return v === undefined || Number.isNaN(v) ? '-' : v.toFixed(digits);
}

/** --device and --precision, as every command that runs a model takes them. */
export function deviceOptions(c: Command): Command {
  return c
    .addOption(new Option('--device <device>', "auto: a GPU when one is usable").choices(['auto', 'cpu', 'cuda']).default('auto'))
    .addOption(new Option('--precision <p>', 'CUDA GEMM arithmetic').choices(['tf32', 'fp32', 'bf16']).default('tf32'));
}
