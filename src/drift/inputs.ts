/**
 * Inputs shared by the drift entry points: the reference / current matrix pair and the options
 * every drift function reads (checked here, before native code runs, with named errors).
 */
import { rangeError, typeError } from '../errors.js';
import type { NativeCorrection, NativeDriftReport, NativeKsMethod } from '../native.js';
import { type Matrix, optChoice, optInt, optNumber, toMatrix } from '../validate.js';
import { limits } from '../limits.js';

/** 'auto' (SciPy's default: exact when max(n1, n2) <= 10000, else asymptotic), 'exact', 'asymp'. */
export type KsMethod = NativeKsMethod;
/**
 * Multiple-testing correction across features: 'bh' (Benjamini-Hochberg, default), 'by'
 * (Benjamini-Yekutieli), 'bonferroni', or 'none'.
 */
export type Correction = NativeCorrection;

export const KS_METHODS: readonly KsMethod[] = ['auto', 'exact', 'asymp'];
export const CORRECTIONS: readonly Correction[] = ['bh', 'by', 'bonferroni', 'none'];

export interface Pair {
  reference: Matrix;
  current: Matrix;
}

export function atLeastOneRow(m: Matrix, name: string): Matrix {
  if (m.rows < 1) throw rangeError(`${name}: expected at least one row, got 0`);
  return m;
}

/** The reference and current matrices: at least one row each, the same features (columns). */
export function toPair(reference: unknown, current: unknown): Pair {
  const r = atLeastOneRow(toMatrix(reference, 'reference'), 'reference');
  const c = atLeastOneRow(toMatrix(current, 'current'), 'current');
  if (c.cols !== r.cols) throw rangeError(`current: has ${c.cols} columns (features) but reference has ${r.cols}`);
  return { reference: r, current: c };
}

export const optMethod = (v: unknown): KsMethod => optChoice(v, 'method', 'auto', KS_METHODS);
export const optCorrection = (v: unknown): Correction => optChoice(v, 'correction', 'bh', CORRECTIONS);
export const optAlpha = (v: unknown): number => optNumber(v, 'alpha', 0.05, 0, 1);
export const optBins = (v: unknown): number => optInt(v, 'bins', 10, 1, limits().maxDriftBins);

export function optEpsilon(v: unknown): number {
  const e = optNumber(v, 'epsilon', 1e-4, 0, 1);
  if (e === 0) throw rangeError('epsilon: expected a number in (0, 1], got 0');
  return e;
}

export function optFeatureNames(v: unknown, features: number): string[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) throw typeError('featureNames: expected an array of strings');
  if (v.length !== features) throw rangeError(`featureNames: expected ${features} names (one per feature), got ${v.length}`);
  v.forEach((n: unknown, i: number) => {
    if (typeof n !== 'string') throw typeError(`featureNames[${i}]: expected a string`);
  });
  return v as string[];
}

/** One feature's drift. */
export interface FeatureDrift {
  /** Column index in the input matrices. */
  feature: number;
  /** From `featureNames`, when given. */
  name?: string;
  /**
   * KS statistic D = max |F_ref - F_cur|. In a DriftMonitor's report it is evaluated at the
   * histogram cut points only: a lower bound on the exact D.
   */
  statistic: number;
  /** +1 when the largest gap has F_ref above F_cur (the reference tends lower), else -1. */
  sign: 1 | -1;
  /** Two-sided p-value (SciPy's ks_2samp semantics). */
  pValue: number;
  /** The method used for this feature's p-value. */
  method: 'exact' | 'asymp';
  /** After the multiple-testing correction across features. */
  adjustedPValue: number;
  /** Population stability index on the reference's quantile bins. */
  psi: number;
  /** adjustedPValue <= alpha. */
  drifted: boolean;
}

/** A drift summary: every feature, most severe first. */
export interface DriftReport {
  referenceRows: number;
  currentRows: number;
  alpha: number;
  correction: Correction;
  /** The method requested ('auto' unless given); each feature says which one it used. */
  method: KsMethod;
  /** PSI bins. */
  bins: number;
  /** 'exact': D from the full samples; 'histogram': from a DriftMonitor's cut points. */
  statistic: 'exact' | 'histogram';
  /** How many features drifted (adjusted p-value <= alpha). */
  drifted: number;
  /**
   * Sorted by severity: adjusted p-value ascending, then statistic descending, then PSI
   * descending, then feature index.
   */
  features: FeatureDrift[];
}

export function toReport(r: NativeDriftReport, o: { alpha: number; correction: Correction; method: KsMethod; names?: string[] }): DriftReport {
  const features: FeatureDrift[] = Array.from(r.order, (f) => {
    const e: FeatureDrift = {
      feature: f,
      statistic: r.statistic[f],
      sign: r.sign[f] < 0 ? -1 : 1,
      pValue: r.pValue[f],
      method: r.method[f] === 'exact' ? 'exact' : 'asymp',
      adjustedPValue: r.adjustedPValue[f],
      psi: r.psi[f],
      drifted: r.drifted[f] === 1,
    };
    if (o.names) e.name = o.names[f];
    return e;
  });
  return {
    referenceRows: r.referenceRows,
    currentRows: r.currentRows,
    alpha: o.alpha,
    correction: o.correction,
    method: o.method,
    bins: r.psiBins,
    statistic: r.histogram ? 'histogram' : 'exact',
    drifted: features.reduce((n, f) => n + (f.drifted ? 1 : 0), 0),
    features,
  };
}
