/**
 * MoEClassifier: a Mixture-of-Experts classifier trained and evaluated natively (DESIGN.md
 * "Model" and "Objectives"). Parameters live in one Float32Array owned by the model (readable
 * and writable as named views, so other TypeScript stacks can embed them); training runs on a
 * native thread and never blocks the event loop.
 */
import { rangeError, typeError, withCallerStack } from '../errors.js';
import { fitExpertTemperatures, type ExpertTemperatureResult } from '../calibrate/expert-temperatures.js';
import { calibrationSync, type CalibrationReport } from '../metrics/calibration.js';
import { native, type NativeEpochLog, type NativeMoEConfig, type NativePrediction, type NativeBatchLog } from '../native.js';
import { type Device, type LabelsInput, type Matrix, type MatrixInput, optBool, optChoice, optDevice, readOptions, toLabels, toMatrix } from '../validate.js';
import { type MoEOptions, type ObjectiveOptions, type OptimizerOptions, type Precision, type ScheduleOptions, FIT_OPTIONS, PRECISIONS, parseFitOptions,
  parseModelOptions } from './options.js';

export type EpochLog = NativeEpochLog;
/** The epoch log of a fit given `validation`: its metrics are there. */
export type ValidatedEpochLog = EpochLog & { valLoss: number; valAccuracy: number; valEce: number };
export type BatchLog = NativeBatchLog;

export interface FitOptions {
  epochs?: number;
  batchSize?: number;
  shuffle?: boolean;
  /** Seed of the shuffling (default 0). */
  seed?: number;
  optimizer?: OptimizerOptions;
  schedule?: ScheduleOptions;
  /** Clip the global gradient norm to this value (default 0: off). */
  clipNorm?: number;
  objective?: ObjectiveOptions;
  /** Switch load-balancing loss weight alpha (default 0: off). */
  balanceLoss?: number;
  /** Evaluated at every epoch end: valLoss (NLL), valAccuracy, valEce (15 bins). */
  validation?: { x: MatrixInput; y: LabelsInput };
  /** Stops training between steps; fit() then rejects with an AbortError (its `history` has the finished epochs). */
  signal?: AbortSignal;
  onEpochEnd?: (log: EpochLog) => void;
  onBatchEnd?: (log: BatchLog) => void;
  /** Batches between onBatchEnd calls (default 1 when onBatchEnd is given). */
  progressEvery?: number;
  device?: Device;
  /** GEMM arithmetic on CUDA (default: the model's, 'tf32'). */
  precision?: Precision;
}

export interface FitHistory<L extends EpochLog = EpochLog> {
  epochs: L[];
}

/** Fit options with validation data: the logs carry the validation metrics (ValidatedEpochLog). */
export type ValidatedFitOptions = Omit<FitOptions, 'validation' | 'onEpochEnd'> & {
  validation: { x: MatrixInput; y: LabelsInput };
  onEpochEnd?: (log: ValidatedEpochLog) => void;
};

export interface PredictOptions {
  /** Also return routing weights, selected experts, their gates and each active expert's probabilities. */
  returnRouting?: boolean;
  device?: Device;
  /** GEMM arithmetic on CUDA (default: the model's, 'tf32'). */
  precision?: Precision;
}

export interface Routing {
  /** rows x experts: r = softmax(router logits / routerTemperature). */
  weights: Matrix;
  /** Active experts per row (experts for soft, topK, 1 for hard). */
  active: number;
  /** rows x active: the active experts of each row, ascending. */
  selected: Int32Array;
  /** rows x active: each active expert's weight in the mixture. */
  gates: Float32Array;
  /** rows x active x classes: each active expert's probabilities. */
  expertProbs: Float32Array;
}

export interface Prediction {
  probs: Matrix;
  routing?: Routing;
}

/** What predict returns with `returnRouting: true`: the routing is there. */
export type PredictionWithRouting = Prediction & { routing: Routing };

export interface Evaluation {
  accuracy: number;
  nll: number;
  brier: number;
  ece: number;
  calibration: CalibrationReport;
  /** Per expert: share of rows whose top-1 expert it is, and mean routing weight. */
  expertLoad: { share: Float64Array; routingMass: Float64Array };
}

export interface TensorView {
  name: string;
  shape: number[];
  /** A view into the model's parameters (writes change the model). */
  data: Float32Array;
}

export class MoEClassifier {
  readonly config: Readonly<NativeMoEConfig>;
  readonly device: Device;
  /** Default GEMM arithmetic of this model's calls on CUDA. */
  readonly precision: Precision;
  readonly #params: Float32Array;
  readonly #temps: Float32Array;
  readonly #layout: Array<{ name: string; offset: number; shape: number[] }>;
  readonly #options: MoEOptions;
  #training = false;

  constructor(options: MoEOptions) {
    const p = parseModelOptions(options);
    this.config = Object.freeze({ ...p.config, expertHidden: [...p.config.expertHidden], routerHidden: [...p.config.routerHidden] });
    this.device = p.device;
    this.precision = p.precision;
    this.#options = { ...options };
    const layout = native().moeLayout(p.config);
    this.#layout = layout.tensors;
    this.#params = new Float32Array(layout.total);
    native().moeInit(p.config, this.#params, p.seed, p.init.kind, p.init.std);
    this.#temps = new Float32Array(p.config.experts).fill(1);
  }

  /** Number of trainable parameters. */
  get parameterCount(): number {
    return this.#params.length;
  }

  /**
   * All parameters, flat (the layout of tensors()). A live view: writes change the model. While
   * fit() runs it throws (code 'CALMOE_BUSY'): the fit trains a private copy and writes it back
   * when it settles, replacing any write made meanwhile through a view taken earlier.
   */
  get parameters(): Float32Array {
    this.#idle('parameters');
    return this.#params;
  }

  /** Named views of the parameters: router.<layer>.weight|bias, experts.<k>.<layer>.weight|bias. */
  tensors(): TensorView[] {
    this.#idle('tensors');
    return this.#layout.map((t) => ({
      name: t.name,
      shape: [...t.shape],
      data: this.#params.subarray(t.offset, t.offset + t.shape.reduce((a, b) => a * b, 1)),
    }));
  }

  /** Replaces every parameter (same length as `parameters`, finite values). */
  setParameters(values: Float32Array | ArrayLike<number>): void {
    this.#idle('setParameters');
    if (!values || typeof (values as ArrayLike<number>).length !== 'number') throw typeError('values: expected a Float32Array or an array of numbers');
    if (values.length !== this.#params.length) throw rangeError(`values: expected ${this.#params.length} parameters, got ${values.length}`);
    for (let i = 0; i < values.length; i++) {
      if (typeof values[i] !== 'number' || !Number.isFinite(values[i])) throw rangeError(`values[${i}]: expected a finite number`);
    }
    this.#params.set(values);
  }

  /** Per-expert temperatures T_k (p_k = softmax(z_k / T_k)); 1 until calibrated. A live view. */
  get temperatures(): Float32Array {
    return this.#temps;
  }

  setTemperatures(values: ArrayLike<number>): void {
    this.#idle('setTemperatures');
    if (!values || values.length !== this.#temps.length) throw rangeError(`temperatures: expected ${this.#temps.length} values (one per expert)`);
    for (let i = 0; i < values.length; i++) {
      if (typeof values[i] !== 'number' || !(values[i] > 0) || !Number.isFinite(values[i])) throw rangeError(`temperatures[${i}]: expected a finite number > 0`);
    }
    this.#temps.set(values);
  }

  #idle(what: string): void {
    if (this.#training) throw Object.assign(new Error(`${what}: the model is training; await fit() first`), { code: 'CALMOE_BUSY' });
  }

  #input(x: unknown, name: string): Matrix {
    const m = toMatrix(x, name);
    if (m.cols !== this.config.inputDim) throw rangeError(`${name}: expected ${this.config.inputDim} columns (inputDim), got ${m.cols}`);
    if (m.rows < 1) throw rangeError(`${name}: expected at least one row`);
    return m;
  }

  /**
   * Trains the model in place on a native thread. Resolves with the epoch logs; rejects with a
   * RangeError naming the step if training diverges (the parameters keep their last finite
   * values), or with an AbortError when `signal` aborts (the model stays at the last finished step).
   *
   * @example
   * const history = await model.fit(x, y, {
   *   epochs: 10, batchSize: 128,
   *   objective: { type: 'robust', eta: 2, warmupEpochs: 1 },
   *   validation: { x: xVal, y: yVal },
   *   onEpochEnd: (log) => console.log(log.epoch, log.loss, log.valEce),
   * });
   */
  fit(x: MatrixInput, y: LabelsInput, options: ValidatedFitOptions): Promise<FitHistory<ValidatedEpochLog>>;
  fit(x: MatrixInput, y: LabelsInput, options?: FitOptions): Promise<FitHistory>;
  fit(x: MatrixInput, y: LabelsInput, options?: FitOptions | ValidatedFitOptions): Promise<FitHistory> {
    return withCallerStack(async () => {
      this.#idle('fit');
      const o = readOptions(options, 'options', FIT_OPTIONS);
      const m = this.#input(x, 'x');
      const labels = toLabels(y, 'y', m.rows);
      const fit = parseFitOptions(o);
      let val: { m: Matrix; y: Int32Array } | undefined;
      if (o.validation !== undefined) {
        const v = readOptions(o.validation, 'validation', ['x', 'y']);
        const vm = this.#input(v.x, 'validation.x');
        val = { m: vm, y: toLabels(v.y, 'validation.y', vm.rows) };
      }
      const signal = o.signal as AbortSignal | undefined;
      if (signal !== undefined && (typeof signal !== 'object' || typeof signal.aborted !== 'boolean')) throw typeError('signal: expected an AbortSignal');
      const onEpochEnd = o.onEpochEnd as FitOptions['onEpochEnd'];
      const onBatchEnd = o.onBatchEnd as FitOptions['onBatchEnd'];
      if (onEpochEnd !== undefined && typeof onEpochEnd !== 'function') throw typeError('onEpochEnd: expected a function');
      if (onBatchEnd !== undefined && typeof onBatchEnd !== 'function') throw typeError('onBatchEnd: expected a function');
      const device = optDevice(o.device ?? this.device);
      const config = this.#callConfig(o.precision);
      if (signal?.aborted) throw abortError(signal, []);

      let callbackError: unknown;
      const handle = native().moeFit(config, this.#params, this.#temps, m.data, labels, m.rows,
        val?.m.data, val?.y, val?.m.rows ?? 0, fit, (p) => {
          if (callbackError !== undefined) return;
          const { type, ...log } = p;
          try {
            if (type === 'epoch') onEpochEnd?.(log as EpochLog);
            else onBatchEnd?.(log as BatchLog);
          } catch (err) {
            callbackError = err;  // stop training and report the callback's error
            handle.cancel();
          }
        }, device);
      const onAbort = () => handle.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#training = true;
      try {
        const r = await handle.promise;
        if (callbackError !== undefined) throw callbackError;
        if (r.cancelled) throw abortError(signal, r.epochs);
        return { epochs: r.epochs };
      } finally {
        this.#training = false;
        signal?.removeEventListener('abort', onAbort);
      }
    });
  }

  #predictArgs(x: unknown, options: unknown) {
    this.#idle('predict');
    const m = this.#input(x, 'x');
    const o = readOptions(options, 'options', ['returnRouting', 'device', 'precision']);
    const r = optBool(o.returnRouting, 'returnRouting', false);
    const flags = { routing: r, selected: r, gates: r, expertProbs: r, device: optDevice(o.device ?? this.device) };
    return { m, flags, config: this.#callConfig(o.precision) };
  }

  // The native config of one call: the model's, with the call's precision.
  #callConfig(precision: unknown): NativeMoEConfig {
    return { ...(this.config as NativeMoEConfig), precision: optChoice(precision ?? this.precision, 'precision', 'tf32', PRECISIONS) };
  }

  #prediction(m: Matrix, p: NativePrediction): Prediction {
    const out: Prediction = { probs: { data: p.probs, rows: m.rows, cols: this.config.classes } };
    if (p.routing) {
      out.routing = {
        weights: { data: p.routing, rows: m.rows, cols: this.config.experts },
        active: p.active,
        selected: p.selected!,
        gates: p.gates!,
        expertProbs: p.expertProbs!,
      };
    }
    return out;
  }

  /** Class probabilities (and, on request, the routing) off the event loop. */
  predict(x: MatrixInput, options: PredictOptions & { returnRouting: true }): Promise<PredictionWithRouting>;
  predict(x: MatrixInput, options?: PredictOptions): Promise<Prediction>;
  predict(x: MatrixInput, options?: PredictOptions): Promise<Prediction> {
    return withCallerStack(async () => {
      const { m, flags, config } = this.#predictArgs(x, options);
      return this.#prediction(m, await native().moePredict(config, this.#params, this.#temps, m.data, m.rows, flags, true));
    });
  }

  /** Synchronous {@link predict}. */
  predictSync(x: MatrixInput, options: PredictOptions & { returnRouting: true }): PredictionWithRouting;
  predictSync(x: MatrixInput, options?: PredictOptions): Prediction;
  predictSync(x: MatrixInput, options?: PredictOptions): Prediction {
    const { m, flags, config } = this.#predictArgs(x, options);
    return this.#prediction(m, native().moePredict(config, this.#params, this.#temps, m.data, m.rows, flags));
  }

  #evaluation(p: PredictionWithRouting, y: Int32Array, bins: number): Evaluation {
    const cal = calibrationSync(p.probs, y, { bins, device: 'cpu' });
    const K = this.config.experts;
    const share = new Float64Array(K), mass = new Float64Array(K);
    const w = p.routing.weights.data;
    const n = p.probs.rows;
    for (let i = 0; i < n; i++) {
      let arg = 0;
      for (let k = 0; k < K; k++) {
        mass[k] += w[i * K + k] / n;
        if (w[i * K + k] > w[i * K + arg]) arg = k;
      }
      share[arg] += 1 / n;
    }
    return { accuracy: cal.accuracy, nll: cal.nll, brier: cal.brier, ece: cal.ece, calibration: cal, expertLoad: { share, routingMass: mass } };
  }

  /** Accuracy, NLL, Brier, ECE (15 bins unless `bins`) and per-expert load, off the event loop. */
  evaluate(x: MatrixInput, y: LabelsInput, options?: { bins?: number; device?: Device; precision?: Precision }): Promise<Evaluation> {
    return withCallerStack(async () => {
      const o = readOptions(options, 'options', ['bins', 'device', 'precision']);
      const p = await this.predict(x, { returnRouting: true, device: o.device as Device | undefined, precision: o.precision as Precision | undefined });
      return this.#evaluation(p, toLabels(y, 'y', p.probs.rows), (o.bins as number | undefined) ?? 15);
    });
  }

  /** Synchronous {@link evaluate}. */
  evaluateSync(x: MatrixInput, y: LabelsInput, options?: { bins?: number; device?: Device; precision?: Precision }): Evaluation {
    const o = readOptions(options, 'options', ['bins', 'device', 'precision']);
    const p = this.predictSync(x, { returnRouting: true, device: o.device as Device | undefined, precision: o.precision as Precision | undefined });
    return this.#evaluation(p, toLabels(y, 'y', p.probs.rows), (o.bins as number | undefined) ?? 15);
  }

  /**
   * Per-expert temperature scaling (the MoCaE baseline): fits each expert's T_k on held-out data,
   * over the rows routed to it (weighted by routing weight for soft and top-k routing; its top-1
   * rows for hard routing), clamped to [0.1, 10], and writes the temperatures into the model.
   * Composes with temperatures already set (the fit is on the current experts' outputs).
   *
   * @example
   * const fit = await model.calibrateExperts(xVal, yVal);
   * fit.experts.map((e) => [e.temperature, e.nllBefore, e.nllAfter]);
   */
  calibrateExperts(x: MatrixInput, y: LabelsInput, options?: { device?: Device; precision?: Precision }): Promise<ExpertTemperatureResult> {
    return withCallerStack(async () => {
      const o = readOptions(options, 'options', ['device', 'precision']);
      const device = optDevice(o.device ?? this.device);
      const p = await this.predict(x, { returnRouting: true, device, precision: o.precision as Precision | undefined });
      const r = p.routing;
      const rows = p.probs.rows, K = this.config.experts;
      const fit = await fitExpertTemperatures(
        { data: r.expertProbs, rows, experts: r.active, classes: this.config.classes },
        { data: r.gates, rows, cols: r.active }, toLabels(y, 'y', rows),
        { mode: this.config.routing === 'hard' ? 'hard' : 'soft', input: 'probabilities', experts: r.selected, numExperts: K, device });
      const next = this.#temps.map((t, k) => Math.min(10, Math.max(0.1, t * fit.temperatures[k])));
      this.setTemperatures(next);
      return fit;
    });
  }

  /** A JSON-safe snapshot: options, parameters (base64 float32, little-endian) and temperatures. */
  toJSON(): { format: 'calmoe.moe'; version: 1; options: MoEOptions; parameters: string; temperatures: number[] } {
    const bytes = new Uint8Array(this.#params.buffer, this.#params.byteOffset, this.#params.byteLength);
    return { format: 'calmoe.moe', version: 1, options: this.#options, parameters: Buffer.from(bytes).toString('base64'), temperatures: Array.from(this.#temps) };
  }

  static fromJSON(json: unknown): MoEClassifier {
    const j = json as { format?: unknown; version?: unknown; options?: unknown; parameters?: unknown; temperatures?: unknown };
    if (j === null || typeof j !== 'object' || j.format !== 'calmoe.moe' || j.version !== 1)
      throw typeError("json: expected the output of MoEClassifier.toJSON() (format 'calmoe.moe', version 1)");
    if (typeof j.parameters !== 'string') throw typeError('json.parameters: expected a base64 string');
    if (!Array.isArray(j.temperatures)) throw typeError('json.temperatures: expected an array of numbers');
    // The sizes the options claim are checked against the payload before anything is allocated
    // or initialised from them: a small hostile document costs no more than its own length.
    const { config } = parseModelOptions(j.options);
    const bytes = 4 * native().moeParamCount(config);
    const got = Buffer.byteLength(j.parameters, 'base64');
    if (got !== bytes) throw rangeError(`json.parameters: expected ${bytes} bytes for this configuration, got ${got}`);
    if (j.temperatures.length !== config.experts) throw rangeError(`json.temperatures: expected ${config.experts} values (one per expert), got ${j.temperatures.length}`);
    const model = new MoEClassifier(j.options as MoEOptions);
    const buf = Buffer.from(j.parameters, 'base64');
    if (buf.length !== model.#params.byteLength) throw rangeError(`json.parameters: expected ${model.#params.byteLength} bytes for this configuration, got ${buf.length}`);
    model.setParameters(new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length)));
    model.setTemperatures(j.temperatures as number[]);
    return model;
  }
}

function abortError(signal: AbortSignal | undefined, epochs: EpochLog[]): Error {
  return Object.assign(new Error('fit: aborted; the model keeps the parameters of its last finished step'), {
    name: 'AbortError', code: 'ABORT_ERR', cause: signal?.reason, history: { epochs },
  });
}
