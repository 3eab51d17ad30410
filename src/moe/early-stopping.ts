/**
 * Tracking the best epoch of a fit by a monitored metric, for early stopping and best
 * checkpoints. The parameters of each epoch end come from the training thread as a copy taken
 * there (FitConfig::snapshot_epochs), so the best model is exactly that epoch's, however far the
 * thread has run on when JavaScript sees it.
 */
import { rangeError, typeError } from '../errors.js';
import type { NativeEpochLog } from '../native.js';
import { optBool, optChoice, optInt, optNumber, readOptions } from '../validate.js';
import { limits } from '../limits.js';

export type Monitor = 'loss' | 'valLoss' | 'valEce' | 'valAccuracy';
const MONITORS = ['loss', 'valLoss', 'valEce', 'valAccuracy'] as const;

export interface EarlyStoppingOptions {
  /** The metric watched (default 'valLoss' with validation data, else 'loss'); valAccuracy is maximised, the others minimised. */
  monitor?: Monitor;
  /** Epochs without an improvement before training stops (default 3). */
  patience?: number;
  /** The least change that counts as an improvement (default 0). */
  minDelta?: number;
  /** Leave the model at its best epoch's parameters (default true). */
  restoreBest?: boolean;
}

export interface CheckpointOptions {
  /** The model file (safetensors) written at every epoch that improves `monitor`. */
  path: string;
  monitor?: Monitor;
}

export interface ParsedStopping {
  monitor: Monitor;
  patience: number;
  minDelta: number;
  restoreBest: boolean;
}

export function parseEarlyStopping(v: unknown, hasValidation: boolean): ParsedStopping | undefined {
  if (v === undefined || v === false) return undefined;
  const o = readOptions(v === true ? {} : v, 'earlyStopping', ['monitor', 'patience', 'minDelta', 'restoreBest']);
  return {
    monitor: monitorOption(o.monitor, 'earlyStopping.monitor', hasValidation),
    patience: optInt(o.patience, 'earlyStopping.patience', 3, 0, limits().maxEpochs),
    minDelta: optNumber(o.minDelta, 'earlyStopping.minDelta', 0, 0, Number.MAX_VALUE),
    restoreBest: optBool(o.restoreBest, 'earlyStopping.restoreBest', true),
  };
}

export function parseCheckpoint(v: unknown, hasValidation: boolean): { path: string; monitor: Monitor } | undefined {
  if (v === undefined) return undefined;
  const o = readOptions(v, 'bestCheckpoint', ['path', 'monitor']);
  if (typeof o.path !== 'string' || o.path === '') throw typeError('bestCheckpoint.path: expected a file path');
  return { path: o.path, monitor: monitorOption(o.monitor, 'bestCheckpoint.monitor', hasValidation) };
}

function monitorOption(v: unknown, name: string, hasValidation: boolean): Monitor {
  const m = optChoice(v, name, hasValidation ? 'valLoss' : 'loss', MONITORS);
  if (m.startsWith('val') && !hasValidation) throw rangeError(`${name}: '${m}' needs validation data (fit's validation option)`);
  return m;
}

/** The best value of one monitored metric so far. */
export class BestTracker {
  best = NaN;
  bestEpoch = -1;
  constructor(readonly monitor: Monitor, readonly minDelta = 0) {}

  /** Records an epoch; true when it improves on the best by more than minDelta. */
  update(log: NativeEpochLog): boolean {
    const v = log[this.monitor] as number;
    const better = this.bestEpoch < 0 || (this.monitor === 'valAccuracy' ? v > this.best + this.minDelta : v < this.best - this.minDelta);
    if (better) [this.best, this.bestEpoch] = [v, log.epoch];
    return better;
  }
}
