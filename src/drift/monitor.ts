/**
 * Streaming drift monitor for production: fixed per-feature histograms on the reference's quantile
 * cut points, filled window by window and merged across windows, workers or machines.
 *
 * What is exact and what is not:
 * - Counts are integers: updating in any chunking, merging in any order, on any backend, gives
 *   the same state, bit for bit.
 * - PSI is exact: the monitor's PSI over the merged windows equals `psi()` / `driftReport()` with
 *   the same `bins` on the concatenated current rows (the PSI cut points are every
 *   `refinement`-th histogram cut point, the same order statistics the batch functions use).
 * - The KS statistic is evaluated at the bins x refinement - 1 histogram cut points only: a lower
 *   bound on the exact D of the same data (equal when the largest gap falls on a cut point; the
 *   gap between them is at most the reference mass of one fine bin, about 1 / (bins x refinement),
 *   plus the current mass there). Its p-value, computed from that statistic with the exact
 *   reference and window sizes, is therefore an upper bound (conservative): use `driftReport` on
 *   retained samples when the exact test matters.
 */
import { rangeError, typeError, withCallerStack } from '../errors.js';
import { native } from '../native.js';
import { type WordStateJSON, wordsFromJSON, wordsToJSON } from '../word-state.js';
import { type Device, type MatrixInput, optDevice, optInt, readOptions, toMatrix } from '../validate.js';
import {
  type Correction,
  type DriftReport,
  type KsMethod,
  atLeastOneRow,
  optAlpha,
  optCorrection,
  optEpsilon,
  optFeatureNames,
  optMethod,
  toReport,
} from './inputs.js';
import { limits } from '../limits.js';

export interface DriftMonitorOptions {
  /** PSI bins (default 10). */
  bins?: number;
  /** Histogram bins per PSI bin, for the KS statistic (default 10: 100 cut points in all). */
  refinement?: number;
  device?: Device;
}

export interface DriftMonitorReportOptions {
  alpha?: number;
  correction?: Correction;
  method?: KsMethod;
  epsilon?: number;
  featureNames?: readonly string[];
}

export type DriftMonitorJSON = WordStateJSON<'calmoe.drift-monitor'>;

const TOKEN = Symbol('DriftMonitor');

/**
 * @example
 * const monitor = await DriftMonitor.fromReference(trainingFeatures, { bins: 10 });
 * const hour = monitor.emptyCopy();
 * await hour.update(batch);                   // as batches arrive
 * monitor.merge(hour);                        // roll windows up
 * const report = hour.result({ alpha: 0.01 }); // PSI (exact) and histogram KS per feature
 * send(JSON.stringify(hour));                 // DriftMonitor.fromJSON(JSON.parse(...)) elsewhere
 */
export class DriftMonitor {
  readonly features: number;
  readonly bins: number;
  readonly refinement: number;
  readonly referenceRows: number;
  #state: BigUint64Array;

  /** Use {@link DriftMonitor.fromReference}, {@link DriftMonitor.fromReferenceSync} or {@link DriftMonitor.fromJSON}. */
  constructor(token: symbol, state: BigUint64Array) {
    if (token !== TOKEN) throw typeError('DriftMonitor: use DriftMonitor.fromReference(reference) or DriftMonitor.fromJSON(json)');
    const c = native().driftMonitorConfig(state);
    this.features = c.features;
    this.bins = c.bins;
    this.refinement = c.refinement;
    this.referenceRows = c.referenceRows;
    this.#state = state;
  }

  static #request(reference: unknown, options: unknown) {
    const o = readOptions(options, 'options', ['bins', 'refinement', 'device']);
    const r = atLeastOneRow(toMatrix(reference, 'reference'), 'reference');
    const max = limits().maxDriftBins;
    const bins = optInt(o.bins, 'bins', 10, 1, max);
    const refinement = optInt(o.refinement, 'refinement', 10, 1, max);
    if (bins * refinement > max) throw rangeError(`bins x refinement: ${bins * refinement} histogram bins per feature is more than the supported ${max}`);
    return { r, opts: { bins, refinement, device: optDevice(o.device) } };
  }

  /** A monitor for `reference` (rows x features) with an empty window, built off the event loop. */
  static fromReference(reference: MatrixInput, options?: DriftMonitorOptions): Promise<DriftMonitor> {
    return withCallerStack(async () => {
      const { r, opts } = DriftMonitor.#request(reference, options);
      return new DriftMonitor(TOKEN, await native().driftMonitorNew(r.data, r.rows, r.cols, opts, true));
    });
  }

  /** Synchronous {@link DriftMonitor.fromReference}. */
  static fromReferenceSync(reference: MatrixInput, options?: DriftMonitorOptions): DriftMonitor {
    const { r, opts } = DriftMonitor.#request(reference, options);
    return new DriftMonitor(TOKEN, native().driftMonitorNew(r.data, r.rows, r.cols, opts));
  }

  /** Current rows in the window. */
  get rows(): number {
    return native().driftMonitorConfig(this.#state).currentRows;
  }

  /** Non-empty chunks added (merges add the other monitor's). */
  get chunks(): number {
    return native().driftMonitorConfig(this.#state).chunks;
  }

  #chunk(current: unknown, options: unknown) {
    const o = readOptions(options, 'options', ['device']);
    const device = optDevice(o.device);
    if (Array.isArray(current) && current.length === 0) return null;  // an empty chunk: nothing to add
    const m = toMatrix(current, 'current');
    if (m.cols !== this.features) throw rangeError(`current: has ${m.cols} columns (features) but the monitor's reference has ${this.features}`);
    return m.rows === 0 ? null : { m, device };
  }

  /**
   * Adds a chunk of current rows (rows x features) off the event loop. A chunk with a NaN is
   * rejected whole (RangeError naming the row and column) and leaves the monitor unchanged; an
   * empty chunk is a no-op. Do not modify the array until the promise settles.
   */
  update(current: MatrixInput, options?: { device?: Device }): Promise<void> {
    return withCallerStack(async () => {
      const c = this.#chunk(current, options);
      if (c) await native().driftMonitorUpdate(this.#state, c.m.data, c.m.rows, c.m.cols, { device: c.device }, true);
    });
  }

  /** Synchronous {@link update}. */
  updateSync(current: MatrixInput, options?: { device?: Device }): void {
    const c = this.#chunk(current, options);
    if (c) native().driftMonitorUpdate(this.#state, c.m.data, c.m.rows, c.m.cols, { device: c.device });
  }

  /** Adds another window of the same reference (same cut points and bins); exact. */
  merge(other: DriftMonitor): this {
    if (!(other instanceof DriftMonitor)) throw typeError('other: expected a DriftMonitor');
    native().driftMonitorMerge(this.#state, other.#state);
    return this;
  }

  /** A monitor with the same reference and an empty window (e.g. the next hour). */
  emptyCopy(): DriftMonitor {
    const s = new BigUint64Array(this.#state);
    native().driftMonitorReset(s);
    return new DriftMonitor(TOKEN, s);
  }

  /** Empties the window (the reference is kept). */
  reset(): void {
    native().driftMonitorReset(this.#state);
  }

  /** The drift report of the window (RangeError when it is empty). `statistic` is 'histogram'. */
  result(options?: DriftMonitorReportOptions): DriftReport {
    const o = readOptions(options, 'options', ['alpha', 'correction', 'method', 'epsilon', 'featureNames']);
    const opts = { method: optMethod(o.method), epsilon: optEpsilon(o.epsilon), correction: optCorrection(o.correction), alpha: optAlpha(o.alpha) };
    const names = optFeatureNames(o.featureNames, this.features);
    return toReport(native().driftMonitorReport(this.#state, opts), { ...opts, names });
  }

  /** A JSON-safe snapshot (the exact integer state as decimal strings). */
  toJSON(): DriftMonitorJSON {
    return wordsToJSON('calmoe.drift-monitor', this.#state);
  }

  /** Restores a monitor from {@link toJSON}'s output (validated: header, lengths, counts, cut points). */
  static fromJSON(json: unknown): DriftMonitor {
    const words = wordsFromJSON(json, 'calmoe.drift-monitor', 'DriftMonitor.toJSON()');
    return new DriftMonitor(TOKEN, words);
  }
}
