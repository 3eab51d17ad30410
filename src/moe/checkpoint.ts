/**
 * Training checkpoints: a model file (model-file.ts, so it also loads as a model) plus the
 * optimiser's moments as tensors `optimizer.m` (SGD momentum buffer / AdamW first moment) and
 * `optimizer.v` (AdamW second moment), each [parameters] and absent when the optimiser has none,
 * and `__metadata__.checkpoint` (JSON): the finished epochs, the optimiser's step count, the
 * shuffle RNG state, the fit options that decide the steps, the number of training rows and the
 * finished epochs' logs. A fit resumed from it continues the checkpointed run bit for bit on the
 * CPU: the native fit replays the finished epochs' shuffles from the seed and checks that the RNG
 * then equals the saved state.
 */
import { rangeError, typeError } from '../errors.js';
import { type NativeEpochLog, type NativeMoEFitOptions, type NativeResumeState, native } from '../native.js';
import { optInt, readOptions } from '../validate.js';
import { type LoadedModel, type ModelFileParts, OPTIMIZER_PREFIX, readModelFile } from './model-file.js';
import { limits } from '../limits.js';

export interface TrainingCheckpointOptions {
  /** The checkpoint file (safetensors), overwritten atomically at each checkpoint. */
  path: string;
  /** Write one after every this many epochs (default 1). */
  everyEpochs?: number;
}

/** The fit options a resumed fit must share with the checkpointed run (they decide every step). */
export const RESUME_KEYS = ['batchSize', 'shuffle', 'seed', 'optimizer', 'schedule', 'clipNorm', 'objective', 'balanceLoss', 'balanceForm'] as const;
type ResumeKey = (typeof RESUME_KEYS)[number];

export interface CheckpointState {
  /** Finished epochs. */
  epoch: number;
  /** Optimiser steps taken. */
  steps: number;
  /** The shuffle RNG state after the last finished epoch (an unsigned 64-bit integer, decimal). */
  rng: string;
  fit: Pick<NativeMoEFitOptions, ResumeKey | 'epochs'>;
  rows: number;
  history: NativeEpochLog[];
}

export interface Checkpoint {
  path: string;
  model: LoadedModel;
  state: CheckpointState;
  /** What the native fit resumes from. */
  resume: NativeResumeState & { epoch: number };
}

export function parseTrainingCheckpoint(v: unknown): { path: string; everyEpochs: number } | undefined {
  if (v === undefined) return undefined;
  const o = readOptions(v, 'checkpoint', ['path', 'everyEpochs']);
  if (typeof o.path !== 'string' || o.path === '') throw typeError('checkpoint.path: expected a file path');
  return { path: o.path, everyEpochs: optInt(o.everyEpochs, 'checkpoint.everyEpochs', 1, 1, limits().maxEpochs) };
}

/** The checkpoint part of a model file: the optimiser tensors and the state. */
export function checkpointParts(state: CheckpointState, m: Float32Array, v: Float32Array): NonNullable<ModelFileParts['checkpoint']> {
  const tensors = [];
  if (m.length > 0) tensors.push({ name: `${OPTIMIZER_PREFIX}m`, shape: [m.length], data: m });
  if (v.length > 0) tensors.push({ name: `${OPTIMIZER_PREFIX}v`, shape: [v.length], data: v });
  return { tensors, state };
}

const isInt = (x: unknown, lo: number): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= lo;

/** Reads and checks a checkpoint; a model file without training state or a malformed state is a RangeError naming `name`. */
export function readCheckpoint(path: string, name = 'resumeFrom'): Checkpoint {
  if (typeof path !== 'string' || path === '') throw typeError(`${name}: expected a checkpoint file path`);
  let model: LoadedModel;
  try {
    model = readModelFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw rangeError(`${name}: ${path}: no such checkpoint file`);
    throw err;
  }
  if (!model.checkpoint) throw rangeError(`${name}: ${path} is a model file without training state (write checkpoints with fit's checkpoint option)`);
  const s = model.checkpoint.state as Partial<CheckpointState> | null;
  const bad = (what: string) => rangeError(`${name}: ${path}: __metadata__.checkpoint: ${what}`);
  if (s === null || typeof s !== 'object' || Array.isArray(s)) throw bad('expected an object');
  if (!isInt(s.epoch, 1)) throw bad('epoch: expected an integer >= 1');
  if (!isInt(s.steps, 0)) throw bad('steps: expected an integer >= 0');
  if (typeof s.rng !== 'string' || !/^[0-9]{1,20}$/.test(s.rng) || BigInt(s.rng) >= 2n ** 64n) throw bad('rng: expected an unsigned 64-bit integer (decimal string)');
  if (!isInt(s.rows, 1)) throw bad('rows: expected an integer >= 1');
  if (s.fit === null || typeof s.fit !== 'object' || !isInt(s.fit.epochs, 1) || RESUME_KEYS.some((k) => !(k in s.fit!))) throw bad(`fit: expected { epochs, ${RESUME_KEYS.join(', ')} }`);
  // the run's last epoch logs: all of them, or the last limits().maxHistory (as a fit keeps them)
  const logs = Math.min(s.epoch, limits().maxHistory);
  if (!Array.isArray(s.history) || s.history.length !== logs) throw bad(`history: expected ${logs} epoch logs`);
  const P = model.parameters.length;
  const moment = (key: string): Float32Array => {
    const t = model.checkpoint!.tensors.get(OPTIMIZER_PREFIX + key) ?? new Float32Array(0);
    if (t.length !== 0 && t.length !== P) throw bad(`tensor '${OPTIMIZER_PREFIX}${key}' has ${t.length} values, the model ${P}`);
    for (let i = 0; i < t.length; i++) if (!Number.isFinite(t[i])) throw bad(`tensor '${OPTIMIZER_PREFIX}${key}' element ${i} is ${t[i]} (expected finite values)`);
    return t;
  };
  for (const k of model.checkpoint.tensors.keys()) if (k !== `${OPTIMIZER_PREFIX}m` && k !== `${OPTIMIZER_PREFIX}v`) throw bad(`tensor '${k}' is not an optimiser tensor`);
  const state = s as CheckpointState;
  return { path, model, state, resume: { epoch: state.epoch, steps: state.steps, m: moment('m'), v: moment('v'), rng: BigUint64Array.of(BigInt(state.rng)) } };
}

/** A resumed fit must take the same steps as the checkpointed run: the same step-deciding options and rows; RangeError naming the first that differs. */
export function checkResume(ck: Checkpoint, fit: NativeMoEFitOptions, rows: number): void {
  const was = ck.state.fit;
  for (const key of RESUME_KEYS) {
    const a = JSON.stringify(fit[key]), b = JSON.stringify(was[key]);
    if (a !== b) throw rangeError(`${key}: ${a} differs from the checkpointed run's ${b} (resumeFrom: ${ck.path}); resume with the same ${key}`);
  }
  if (rows !== ck.state.rows) throw rangeError(`x: ${rows} rows, the checkpointed run (resumeFrom: ${ck.path}) trained on ${ck.state.rows}; resume on the same data`);
  if (fit.epochs <= ck.state.epoch) throw rangeError(`epochs: the checkpoint (resumeFrom: ${ck.path}) holds ${ck.state.epoch} finished epochs; expected epochs > ${ck.state.epoch} (the run's total), got ${fit.epochs}`);
  // the cosine schedule spans the run's epochs: another total would change every later step's rate
  if (fit.schedule.type === 'cosine' && fit.epochs !== was.epochs)
    throw rangeError(`epochs: the checkpointed run's cosine schedule spans ${was.epochs} epochs, got ${fit.epochs}; resume with epochs: ${was.epochs}`);
}
