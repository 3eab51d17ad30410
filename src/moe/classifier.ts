/**
 * MoEClassifier: a Mixture-of-Experts classifier trained and evaluated natively (DESIGN.md
 * "Model" and "Objectives"). Parameters live in one Float32Array owned by the model (readable
 * and writable as named views, so other TypeScript stacks can embed them); training runs on a
 * native thread and never blocks the event loop.
 */
import { rangeError, typeError, withCallerStack } from '../errors.js';
import { type MoEAudit, type MoEAuditOptions, moeAudit } from '../audit/moe-audit.js';
import { expertTensor } from '../audit/moe-outputs.js';
import { fitExpertTemperatures, type ExpertTemperatureResult } from '../calibrate/expert-temperatures.js';
import { applyTemperature, applyTemperatureSync, fitTemperature, type TemperatureFit } from '../calibrate/temperature.js';
import { calibration, calibrationSync, type CalibrationReport } from '../metrics/calibration.js';
import { native, type NativeEpochLog, type NativeMoEConfig, type NativePrediction, type NativeBatchLog } from '../native.js';
import { type ClassLabelsInput, type Device, type Matrix, type MatrixInput, type VectorInput, optBool, optChoice, optDevice, optNumber, ownProperties, readOptions, toLabels,
  toMatrix, toVector } from '../validate.js';
import { BestTracker, type CheckpointOptions, type EarlyStoppingOptions, parseCheckpoint, parseEarlyStopping } from './early-stopping.js';
import { type Checkpoint, type CheckpointState, type TrainingCheckpointOptions, RESUME_KEYS, checkResume, checkpointParts, parseTrainingCheckpoint,
  readCheckpoint } from './checkpoint.js';
import { type ModelFileParts, portableOptions, readModelFile, writeModelFile } from './model-file.js';
import { type ProgressDisplay, type ProgressOptions, parseProgress, progressDisplay } from './progress.js';
import { type MoEOptions, type ObjectiveOptions, type OptimizerOptions, type Precision, type ScheduleOptions, FIT_OPTIONS, PRECISIONS, parseFitOptions,
  parseModelOptions } from './options.js';
import { limits } from '../limits.js';

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
  /** Load-balancing loss weight alpha (default 0: off). */
  balanceLoss?: number;
  /**
   * Its form: 'switch' (default) alpha K sum_k f_k P_k, f_k the share of rows whose top expert is
   * k (held constant), P_k the batch mean of r_k; or 'squared-mean' alpha K sum_k P_k^2 (the
   * squared-mean-gate form; CPU engine only for now).
   */
  balanceForm?: 'switch' | 'squared-mean';
  /** Evaluated at every epoch end: valLoss (NLL), valAccuracy, valEce (15 bins). */
  validation?: { x: MatrixInput; y: ClassLabelsInput };
  /** Show progress on stderr: a bar with rate and ETA on a terminal, a line per epoch otherwise (default off). */
  progress?: boolean | ProgressOptions;
  /** Stop when the monitored metric has not improved for `patience` epochs (and by default keep the best epoch's parameters). */
  earlyStopping?: boolean | EarlyStoppingOptions;
  /** Save the model (safetensors) at every epoch that improves the monitored metric. */
  bestCheckpoint?: CheckpointOptions;
  /** Write a training checkpoint (model, optimiser state, schedule position, shuffle RNG state) every `everyEpochs` epochs, for `resumeFrom`. */
  checkpoint?: TrainingCheckpointOptions;
  /**
   * Continue the run that wrote this checkpoint: the model takes its parameters and temperatures,
   * training starts after its last finished epoch, and the history holds all epochs. The data and
   * the step-deciding options (batchSize, shuffle, seed, optimizer, schedule, clipNorm, objective,
   * balanceLoss, balanceForm) must be the run's (RangeError naming the first that differs); `epochs` is the run's total.
   */
  resumeFrom?: string;
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
  /** With earlyStopping or bestCheckpoint: the best epoch (0-based) by the monitored metric, and its value. */
  best?: { epoch: number; value: number; monitor: string };
  /** With earlyStopping: whether training stopped before its last epoch. */
  stoppedEarly?: boolean;
}

/** Fit options with validation data: the logs carry the validation metrics (ValidatedEpochLog). */
export type ValidatedFitOptions = Omit<FitOptions, 'validation' | 'onEpochEnd'> & {
  validation: { x: MatrixInput; y: ClassLabelsInput };
  onEpochEnd?: (log: ValidatedEpochLog) => void;
};

export interface PredictOptions {
  /** Also return routing weights, selected experts, their gates and each active expert's probabilities. */
  returnRouting?: boolean;
  /** Also return every expert's probabilities (`experts`), active or not: hard and top-k models can then be audited for regret and disagreement. */
  returnExperts?: boolean;
  /**
   * Also return each active expert's logits (routing.expertLogits; implies returnRouting). The
   * CUDA engine does not return them yet: use device 'cpu' for such a call.
   */
  returnExpertLogits?: boolean;
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
  /** rows x active x classes: each active expert's logits z_k, before its temperature (returnExpertLogits). */
  expertLogits?: Float32Array;
}

export interface Prediction {
  probs: Matrix;
  routing?: Routing;
  /** rows x experts x classes: every expert's probabilities softmax(z_k / T_k) (returnExperts). */
  experts?: Float32Array;
}

/** What predict returns with `returnRouting: true`: the routing is there. */
export type PredictionWithRouting = Prediction & { routing: Routing };

export interface Evaluation {
  accuracy: number;
  nll: number;
  brier: number;
  ece: number;
  calibration: CalibrationReport;
  /** Per expert: share of rows (of the weight, when weighted) whose top-1 expert it is, and mean routing weight. */
  expertLoad: { share: Float64Array; routingMass: Float64Array };
}

export interface EvaluateOptions {
  /** Bins of the ECE (default 15). */
  bins?: number;
  device?: Device;
  precision?: Precision;
  /**
   * Per-row weights (e.g. importance weights of a shift): every metric and the expert load become
   * weighted (CalibrationOptions.weights has the definitions).
   */
  weights?: VectorInput;
}

export interface CalibrateOptions {
  /** Experts whose routed weight on the validation rows is below this keep T = 1 (default 20). */
  minRows?: number;
  /**
   * When the validation NLL of the model's predictions is worse after calibration: 'revert'
   * (default) restores the temperatures it had and reports kept: false (calibrate() on a soft or
   * top-k model then refits the aggregate temperature alone and keeps it if that helps); 'keep'
   * keeps them. Either way a warning is emitted (process.emitWarning, code
   * CALMOE_CALIBRATION_WORSE) and returned.
   */
  ifWorse?: 'revert' | 'keep';
  /** Held-out rows on which that NLL is compared (default: the calibration rows themselves). */
  check?: { x: MatrixInput; y: ClassLabelsInput };
  device?: Device;
  precision?: Precision;
}

/** What a model-level calibration did (calibrateExperts and calibrate). */
export interface ModelCalibrationOutcome {
  /** Mean NLL of the model's predictions on the check rows (default: the validation rows), before and after. */
  nllBefore: number;
  nllAfter: number;
  /** False when the NLL got worse and the previous temperatures were restored (ifWorse: 'revert'). */
  kept: boolean;
  /** Experts left at T = 1 for want of rows, and a worse NLL, in words. */
  warnings: string[];
}

export type ExpertCalibration = ExpertTemperatureResult & ModelCalibrationOutcome;

export interface ModelCalibration extends ModelCalibrationOutcome {
  /**
   * What the model keeps: 'experts' (hard routing), 'experts+aggregate' (soft and top-k routing),
   * 'aggregate' (soft/top-k whose per-expert temperatures made the NLL worse: reverted, and the
   * aggregate temperature refitted on the previous experts helped) or 'none' (everything reverted).
   */
  scope: 'experts' | 'experts+aggregate' | 'aggregate' | 'none';
  experts: ExpertTemperatureResult;
  /** The mixture's temperature fit that was kept or tried last (null for hard routing). */
  aggregate: TemperatureFit | null;
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
  #summary: Record<string, unknown> | undefined;
  // the mixture's temperature: predictions are p^(1/T) renormalised (1: off)
  #aggregateTemperature = 1;

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

  /** The class names (options.classNames), or undefined. */
  get classNames(): readonly string[] | undefined {
    return this.#options.classNames;
  }

  /** The input columns' names (options.featureNames), or undefined. */
  get featureNames(): readonly string[] | undefined {
    return this.#options.featureNames;
  }

  /** What the last fit did (saved with the model): epochs, final metrics, objective, optimiser. */
  get trainingSummary(): Readonly<Record<string, unknown>> | undefined {
    return this.#summary;
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

  /**
   * The mixture's (aggregate) temperature T_a: predict returns p^(1/T_a) renormalised, where p is
   * the mixture of the experts' probabilities (1 = off; set by calibrate() for soft and top-k
   * routing, saved by toJSON as `aggregateTemperature`). Routing outputs are not affected.
   */
  get aggregateTemperature(): number {
    return this.#aggregateTemperature;
  }

  setAggregateTemperature(value: number): void {
    this.#idle('setAggregateTemperature');
    if (typeof value !== 'number' || !(value > 0) || !Number.isFinite(value)) throw rangeError(`aggregateTemperature: expected a finite number > 0, got ${String(value)}`);
    this.#aggregateTemperature = value;
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
  fit(x: MatrixInput, y: ClassLabelsInput, options: ValidatedFitOptions): Promise<FitHistory<ValidatedEpochLog>>;
  fit(x: MatrixInput, y: ClassLabelsInput, options?: FitOptions): Promise<FitHistory>;
  fit(x: MatrixInput, y: ClassLabelsInput, options?: FitOptions | ValidatedFitOptions): Promise<FitHistory> {
    return withCallerStack(async () => {
      this.#idle('fit');
      const o = readOptions(options, 'options', FIT_OPTIONS);
      const m = this.#input(x, 'x');
      const labels = toLabels(y, 'y', m.rows, this.classNames);
      const fit = parseFitOptions(o);
      let val: { m: Matrix; y: Int32Array } | undefined;
      if (o.validation !== undefined) {
        const v = readOptions(o.validation, 'validation', ['x', 'y']);
        const vm = this.#input(v.x, 'validation.x');
        val = { m: vm, y: toLabels(v.y, 'validation.y', vm.rows, this.classNames) };
      }
      const progress = parseProgress(o.progress);
      const stopping = parseEarlyStopping(o.earlyStopping, val !== undefined);
      const checkpoint = parseCheckpoint(o.bestCheckpoint, val !== undefined);
      const batchSize = Math.min(fit.batchSize, m.rows), batches = Math.ceil(m.rows / batchSize);
      if (progress && o.progressEvery === undefined && !o.onBatchEnd) fit.progressEvery = Math.max(1, Math.floor(batches / 50));
      fit.snapshotEpochs = stopping !== undefined || checkpoint !== undefined;
      const saveEvery = parseTrainingCheckpoint(o.checkpoint);
      if (saveEvery) fit.checkpointEvery = saveEvery.everyEpochs;
      const resume = o.resumeFrom === undefined ? undefined : this.#resumable(readCheckpoint(o.resumeFrom as string), fit, m.rows);
      const signal = o.signal as AbortSignal | undefined;
      if (signal !== undefined && (typeof signal !== 'object' || typeof signal.aborted !== 'boolean')) throw typeError('signal: expected an AbortSignal');
      const onEpochEnd = o.onEpochEnd as FitOptions['onEpochEnd'];
      const onBatchEnd = o.onBatchEnd as FitOptions['onBatchEnd'];
      if (onEpochEnd !== undefined && typeof onEpochEnd !== 'function') throw typeError('onEpochEnd: expected a function');
      if (onBatchEnd !== undefined && typeof onBatchEnd !== 'function') throw typeError('onBatchEnd: expected a function');
      const device = optDevice(o.device ?? this.device);
      const config = this.#callConfig(o.precision);
      if (signal?.aborted) throw abortError(signal, []);

      const prior = resume ? resume.state.history : [];  // the checkpointed run's finished epochs
      // this run's epoch logs, the last limits().maxHistory of them (as the native fit keeps)
      const maxHistory = limits().maxHistory;
      const history: EpochLog[] = [];
      let trained = 0;
      let callbackError: unknown;
      const tracker = stopping ? new BestTracker(stopping.monitor, stopping.minDelta) : undefined;
      const ckTracker = checkpoint ? new BestTracker(checkpoint.monitor) : undefined;
      let bestParams: Float32Array | undefined, stopped = false;
      const display: ProgressDisplay | undefined = progress && progressDisplay(progress, fit.epochs, batches, batchSize);
      const before = resume && { params: this.#params.slice(), temps: this.#temps.slice(), aggregate: this.#aggregateTemperature };
      if (resume) {
        this.#params.set(resume.model.parameters);
        this.#temps.set(resume.model.temperatures);
        this.#aggregateTemperature = resume.model.aggregateTemperature;
      }
      const handle = native().moeFit(config, this.#params, this.#temps, m.data, labels, m.rows,
        val?.m.data, val?.y, val?.m.rows ?? 0, fit, (p) => {
          if (callbackError !== undefined) return;
          const { type, parameters, checkpoint: ck, ...log } = p as typeof p & { parameters?: Float32Array; checkpoint?: { m: Float32Array; v: Float32Array; steps: number; rng: bigint } };
          try {
            if (type === 'epoch') {
              history.push(log as EpochLog);
              trained++;
              if (history.length > maxHistory) history.splice(0, history.length - maxHistory);
              if (ck && saveEvery) {
                const all = [...prior, ...history].slice(-maxHistory);
                const state: CheckpointState = { epoch: (log as EpochLog).epoch + 1, steps: ck.steps, rng: String(ck.rng), rows: m.rows, history: all,
                  fit: Object.fromEntries((['epochs', ...RESUME_KEYS] as const).map((k) => [k, fit[k]])) as CheckpointState['fit'] };
                this.#writeFile(saveEvery.path, parameters!, this.#fitSummary(all, fit, m.rows), checkpointParts(state, ck.m, ck.v));
              }
              display?.epoch(log as EpochLog);
              if (ckTracker?.update(log as EpochLog)) this.#writeFile(checkpoint!.path, parameters!, this.#fitSummary(history, fit, m.rows));
              if (tracker?.update(log as EpochLog)) bestParams = parameters;
              else if (tracker && (log as EpochLog).epoch - tracker.bestEpoch > stopping!.patience && !stopped) {
                stopped = true;
                handle.cancel();
              }
              onEpochEnd?.(log as EpochLog);
            } else {
              display?.batch(log as BatchLog);
              onBatchEnd?.(log as BatchLog);
            }
          } catch (err) {
            callbackError = err;  // stop training and report the callback's error
            handle.cancel();
          }
        }, device);
      const onAbort = () => handle.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#training = true;
      try {
        const r = await handle.promise.catch((err: unknown) => {
          if (before && trained === 0) {  // a resume that trained nothing leaves the model as it was
            this.#params.set(before.params);
            this.#temps.set(before.temps);
            this.#aggregateTemperature = before.aggregate;
          }
          throw err;
        });
        if (callbackError !== undefined) throw callbackError;
        const epochs = [...prior, ...r.epochs].slice(-maxHistory);
        if (r.cancelled && !stopped) throw abortError(signal, epochs);
        if (stopping?.restoreBest && bestParams) this.#params.set(bestParams);
        this.#summary = this.#fitSummary(epochs, fit, m.rows);
        const out: FitHistory = { epochs };
        const best = tracker ?? ckTracker;
        if (best && best.bestEpoch >= 0) out.best = { epoch: best.bestEpoch, value: best.best, monitor: best.monitor };
        if (stopping) out.stoppedEarly = stopped && r.cancelled;  // a stop seen after the last epoch ended is no early stop
        return out;
      } finally {
        this.#training = false;
        display?.stop();
        signal?.removeEventListener('abort', onAbort);
      }
    });
  }

  // The checkpoint must come from a model like this one and a run like this fit (checkpoint.ts).
  #resumable(ck: Checkpoint, fit: ReturnType<typeof parseFitOptions>, rows: number): Checkpoint {
    const saved = parseModelOptions(ck.model.options);
    if (JSON.stringify(saved.config) !== JSON.stringify(this.config))
      throw rangeError(`resumeFrom: ${ck.path} holds a model configured ${JSON.stringify(saved.config)}; this model is ${JSON.stringify(this.config)}`);
    if (JSON.stringify(saved.classNames) !== JSON.stringify(this.classNames))
      throw rangeError(`resumeFrom: ${ck.path} has classNames ${JSON.stringify(saved.classNames)}; this model ${JSON.stringify(this.classNames)}`);
    checkResume(ck, fit, rows);
    fit.resume = ck.resume;
    return ck;
  }

  // The summary saved with the model after a fit.
  #fitSummary(epochs: EpochLog[], fit: ReturnType<typeof parseFitOptions>, rows: number): Record<string, unknown> {
    const last = epochs[epochs.length - 1];
    return {
      rows, epochs: epochs.length, batchSize: fit.batchSize, objective: fit.objective, optimizer: fit.optimizer, schedule: fit.schedule,
      final: last && { loss: last.loss, accuracy: last.accuracy, valLoss: last.valLoss, valAccuracy: last.valAccuracy, valEce: last.valEce },
      seconds: epochs.reduce((a, e) => a + e.seconds, 0), finishedAt: new Date().toISOString(),
    };
  }

  #predictArgs(x: unknown, options: unknown) {
    this.#idle('predict');
    const m = this.#input(x, 'x');
    const o = readOptions(options, 'options', ['returnRouting', 'returnExperts', 'returnExpertLogits', 'device', 'precision']);
    const logits = optBool(o.returnExpertLogits, 'returnExpertLogits', false);
    const r = logits || optBool(o.returnRouting, 'returnRouting', false);
    const requested = optDevice(o.device ?? this.device);
    // expert logits come from the CPU engine for now: 'auto' picks it ('cuda' is refused natively)
    const flags = { routing: r, selected: r, gates: r, expertProbs: r, expertLogits: logits, device: logits && requested === 'auto' ? 'cpu' as const : requested };
    const config = this.#callConfig(o.precision);
    // every expert's probabilities: the soft forward computes them all (the layout does not depend on the routing)
    const experts = optBool(o.returnExperts, 'returnExperts', false)
      ? { config: { ...config, routing: 'soft' as const }, flags: { routing: false, selected: false, gates: false, expertProbs: true, device: requested } }
      : undefined;
    return { m, flags, config, experts };
  }

  // The native config of one call: the model's, with the call's precision.
  #callConfig(precision: unknown): NativeMoEConfig {
    return { ...(this.config as NativeMoEConfig), precision: optChoice(precision ?? this.precision, 'precision', 'tf32', PRECISIONS) };
  }

  // The mixture with the aggregate temperature applied (p^(1/T) renormalised; T = 1: as it is).
  #scaled(m: Matrix, p: NativePrediction, aggregate = this.#aggregateTemperature): Float32Array {
    if (aggregate === 1) return p.probs;
    return applyTemperatureSync({ data: p.probs, rows: m.rows, cols: this.config.classes }, aggregate, { input: 'probabilities', device: 'cpu' }).data;
  }

  #prediction(m: Matrix, p: NativePrediction, probs: Float32Array, all?: NativePrediction): Prediction {
    const C = this.config.classes;
    const out: Prediction = { probs: { data: probs, rows: m.rows, cols: C } };
    if (all) out.experts = all.expertProbs!;
    if (p.routing) {
      out.routing = {
        weights: { data: p.routing, rows: m.rows, cols: this.config.experts },
        active: p.active,
        selected: p.selected!,
        gates: p.gates!,
        expertProbs: p.expertProbs!,
      };
      if (p.expertLogits) out.routing.expertLogits = p.expertLogits;
    }
    return out;
  }

  /** Class probabilities (and, on request, the routing) off the event loop. */
  predict(x: MatrixInput, options: PredictOptions & ({ returnRouting: true } | { returnExpertLogits: true })): Promise<PredictionWithRouting>;
  predict(x: MatrixInput, options?: PredictOptions): Promise<Prediction>;
  predict(x: MatrixInput, options?: PredictOptions): Promise<Prediction> {
    return withCallerStack(async () => {
      const { m, flags, config, experts } = this.#predictArgs(x, options);
      const p = await native().moePredict(config, this.#params, this.#temps, m.data, m.rows, flags, true);
      const all = experts && await native().moePredict(experts.config, this.#params, this.#temps, m.data, m.rows, experts.flags, true);
      const T = this.#aggregateTemperature;
      // off the event loop too
      const probs = T === 1 ? p.probs : (await applyTemperature({ data: p.probs, rows: m.rows, cols: this.config.classes }, T, { input: 'probabilities', device: 'cpu' })).data;
      return this.#prediction(m, p, probs, all);
    });
  }

  /** Synchronous {@link predict}. */
  predictSync(x: MatrixInput, options: PredictOptions & ({ returnRouting: true } | { returnExpertLogits: true })): PredictionWithRouting;
  predictSync(x: MatrixInput, options?: PredictOptions): Prediction;
  predictSync(x: MatrixInput, options?: PredictOptions): Prediction {
    const { m, flags, config, experts } = this.#predictArgs(x, options);
    const all = experts && native().moePredict(experts.config, this.#params, this.#temps, m.data, m.rows, experts.flags);
    const p = native().moePredict(config, this.#params, this.#temps, m.data, m.rows, flags);
    return this.#prediction(m, p, this.#scaled(m, p), all);
  }

  #evaluation(p: PredictionWithRouting, y: Int32Array, bins: number, weights: unknown): Evaluation {
    // weighted metrics (and load) when row weights are given: importance weights of a shift
    const cal = calibrationSync(p.probs, y, { bins, device: 'cpu', weights: weights as VectorInput | undefined });
    const rw = weights === undefined ? undefined : toVector(weights, 'weights');
    const K = this.config.experts;
    const share = new Float64Array(K), mass = new Float64Array(K);
    const w = p.routing.weights.data;
    const n = p.probs.rows, total = cal.weight;
    for (let i = 0; i < n; i++) {
      const wi = rw ? rw[i] : 1;
      let arg = 0;
      for (let k = 0; k < K; k++) {
        mass[k] += (wi * w[i * K + k]) / total;
        if (w[i * K + k] > w[i * K + arg]) arg = k;
      }
      share[arg] += wi / total;
    }
    return { accuracy: cal.accuracy, nll: cal.nll, brier: cal.brier, ece: cal.ece, calibration: cal, expertLoad: { share, routingMass: mass } };
  }

  /** Accuracy, NLL, Brier, ECE (15 bins unless `bins`) and per-expert load, off the event loop. */
  evaluate(x: MatrixInput, y: ClassLabelsInput, options?: EvaluateOptions): Promise<Evaluation> {
    return withCallerStack(async () => {
      const o = readOptions(options, 'options', ['bins', 'device', 'precision', 'weights']);
      const p = await this.predict(x, { returnRouting: true, device: o.device as Device | undefined, precision: o.precision as Precision | undefined });
      return this.#evaluation(p, toLabels(y, 'y', p.probs.rows, this.classNames), (o.bins as number | undefined) ?? 15, o.weights);
    });
  }

  /** Synchronous {@link evaluate}. */
  evaluateSync(x: MatrixInput, y: ClassLabelsInput, options?: EvaluateOptions): Evaluation {
    const o = readOptions(options, 'options', ['bins', 'device', 'precision', 'weights']);
    const p = this.predictSync(x, { returnRouting: true, device: o.device as Device | undefined, precision: o.precision as Precision | undefined });
    return this.#evaluation(p, toLabels(y, 'y', p.probs.rows, this.classNames), (o.bins as number | undefined) ?? 15, o.weights);
  }

  // Mean NLL of the model's predictions (aggregate temperature `aggregate`) on x, y.
  async #nll(m: Matrix, y: Int32Array, device: Device, precision: unknown, aggregate = this.#aggregateTemperature): Promise<{ nll: number; mixture: Matrix }> {
    const config = this.#callConfig(precision);
    const raw = await native().moePredict(config, this.#params, this.#temps, m.data, m.rows, { routing: false, selected: false, gates: false, expertProbs: false, device }, true);
    const probs = { data: this.#scaled(m, raw, aggregate), rows: m.rows, cols: this.config.classes };
    return { nll: (await calibration(probs, y, { device: 'cpu' })).nll, mixture: { data: raw.probs, rows: m.rows, cols: this.config.classes } };
  }

  #calibrateArgs(x: unknown, y: unknown, options: unknown) {
    this.#idle('calibrate');
    const o = readOptions(options, 'options', ['minRows', 'ifWorse', 'check', 'device', 'precision']);
    const m = this.#input(x, 'x');
    const labels = toLabels(y, 'y', m.rows, this.classNames);
    let check = { m, labels };
    if (o.check !== undefined) {
      const c = readOptions(o.check, 'check', ['x', 'y']);
      const cm = this.#input(c.x, 'check.x');
      check = { m: cm, labels: toLabels(c.y, 'check.y', cm.rows, this.classNames) };
    }
    return {
      m, labels, check,
      minRows: optNumber(o.minRows, 'minRows', 20, 0, Number.MAX_VALUE),
      ifWorse: optChoice(o.ifWorse, 'ifWorse', 'revert', ['revert', 'keep'] as const),
      device: optDevice(o.device ?? this.device),
      precision: o.precision,
    };
  }

  // Per-expert temperatures fitted on the experts' logits (absolute, not composed with the current ones).
  async #fitExperts(m: Matrix, labels: Int32Array, minRows: number, precision: unknown): Promise<ExpertTemperatureResult> {
    // expert logits come from the CPU engine (the CUDA engine does not return them yet)
    const p = await native().moePredict(this.#callConfig(precision), this.#params, this.#temps, m.data, m.rows,
      { routing: false, selected: true, gates: true, expertProbs: false, expertLogits: true, device: 'cpu' }, true);
    return fitExpertTemperatures(
      { data: p.expertLogits!, rows: m.rows, experts: p.active, classes: this.config.classes },
      { data: p.gates!, rows: m.rows, cols: p.active }, labels,
      { mode: this.config.routing === 'hard' ? 'hard' : 'soft', input: 'logits', experts: p.selected, numExperts: this.config.experts, minRows, device: 'cpu' });
  }

  // The first step of calibrateExperts and calibrate: what to restore, the NLL before, and the
  // per-expert temperatures fitted and written into the model.
  async #calibrateExpertsStep(x: unknown, y: unknown, options: unknown) {
    const a = this.#calibrateArgs(x, y, options);
    const saved = { temps: Float32Array.from(this.#temps), aggregate: this.#aggregateTemperature };
    const before = (await this.#nll(a.check.m, a.check.labels, a.device, a.precision)).nll;
    const experts = await this.#fitExperts(a.m, a.labels, a.minRows, a.precision);
    this.#temps.set(experts.temperatures);
    return { a, saved, before, experts, warnings: skippedWarnings(experts) };
  }

  // Keeps or restores the state after a calibration, by its validation NLL.
  #settle(before: number, after: number, saved: { temps: Float32Array; aggregate: number }, ifWorse: 'revert' | 'keep', warnings: string[], what: string): ModelCalibrationOutcome {
    let kept = true;
    if (after > before) {
      const msg = `${what}: the validation NLL got worse (${before.toPrecision(6)} -> ${after.toPrecision(6)}); ` +
        (ifWorse === 'revert' ? 'the previous temperatures are kept (ifWorse: \'revert\')' : 'the new temperatures are kept anyway (ifWorse: \'keep\')');
      warnings.push(msg);
      process.emitWarning(msg, { code: 'CALMOE_CALIBRATION_WORSE' });
      if (ifWorse === 'revert') {
        this.#temps.set(saved.temps);
        this.#aggregateTemperature = saved.aggregate;
        kept = false;
      }
    }
    return { nllBefore: before, nllAfter: kept ? after : before, kept, warnings };
  }

  /**
   * Per-expert temperature scaling (the MoCaE baseline): fits each expert's T_k on held-out data
   * on the expert's logits, over the rows routed to it (weighted by routing weight for soft and
   * top-k routing; its top-1 rows for hard routing), clamped to [0.1, 10], and writes the
   * temperatures into the model. Experts with a routed weight below `minRows` (default 20) keep
   * T = 1 (listed in `warnings`). If the model's validation NLL gets worse, the previous
   * temperatures are restored (`ifWorse: 'revert'`, the default) and a warning is emitted.
   * The aggregate temperature is left as it is; {@link calibrate} fits both as the routing needs.
   *
   * @example
   * const fit = await model.calibrateExperts(xVal, yVal);
   * fit.experts.map((e) => [e.temperature, e.skipped, e.nllBefore, e.nllAfter]);
   */
  calibrateExperts(x: MatrixInput, y: ClassLabelsInput, options?: CalibrateOptions): Promise<ExpertCalibration> {
    return withCallerStack(async () => {
      const { a, saved, before, experts, warnings } = await this.#calibrateExpertsStep(x, y, options);
      const after = (await this.#nll(a.check.m, a.check.labels, a.device, a.precision)).nll;
      return { ...experts, ...this.#settle(before, after, saved, a.ifWorse, warnings, 'calibrateExperts') };
    });
  }

  /**
   * Calibrates the model as its routing needs, on held-out data: hard routing gets per-expert
   * temperatures only (calibrated experts keep a hard-routed model calibrated under shifts of the
   * route mix); soft and top-k routing get per-expert temperatures and then the mixture's
   * temperature (`aggregateTemperature`), fitted on the mixture's probabilities. If the
   * validation NLL ends up worse than before, everything is restored (`ifWorse: 'revert'`) and a
   * warning is emitted.
   *
   * @example
   * const cal = await model.calibrate(xVal, yVal);
   * console.log(cal.scope, cal.nllBefore, '->', cal.nllAfter, model.aggregateTemperature);
   */
  calibrate(x: MatrixInput, y: ClassLabelsInput, options?: CalibrateOptions): Promise<ModelCalibration> {
    return withCallerStack(async () => {
      const { a, saved, before, experts, warnings } = await this.#calibrateExpertsStep(x, y, options);
      const soft = this.config.routing !== 'hard';
      // the mixture's temperature, fitted on the calibration rows with the experts as they are now
      const fitAggregate = async () => {
        const { mixture } = await this.#nll(a.m, a.labels, a.device, a.precision, 1);
        const fit = await fitTemperature(mixture, a.labels, { input: 'probabilities', device: 'cpu' });
        this.#aggregateTemperature = fit.temperature;
        return fit;
      };
      let aggregate: TemperatureFit | null = null;
      if (soft) aggregate = await fitAggregate();
      else this.#aggregateTemperature = 1;
      const after = (await this.#nll(a.check.m, a.check.labels, a.device, a.precision)).nll;
      const outcome = this.#settle(before, after, saved, a.ifWorse, warnings, 'calibrate');
      if (outcome.kept) return { scope: soft ? 'experts+aggregate' : 'experts', experts, aggregate, ...outcome };
      if (soft) {
        // the previous experts with a refitted aggregate temperature, kept only if it helps
        aggregate = await fitAggregate();
        const alone = (await this.#nll(a.check.m, a.check.labels, a.device, a.precision)).nll;
        if (alone < before) {
          warnings.push(`calibrate: kept the aggregate temperature alone (${aggregate.temperature.toPrecision(4)}): NLL ${before.toPrecision(6)} -> ${alone.toPrecision(6)}`);
          return { scope: 'aggregate', experts, aggregate, ...outcome, nllAfter: alone };
        }
        this.#aggregateTemperature = saved.aggregate;
      }
      return { scope: 'none', experts, aggregate, ...outcome };
    });
  }

  /**
   * The per-expert audit of this model on labelled data, without glue: every expert's
   * probabilities (also for hard and top-k routing), the full routing weights, the model's
   * prediction as the mixture; regret and disagreement are over all experts.
   *
   * @example
   * const a = await model.audit(xVal, yVal);
   * a.experts.experts.map((e) => e.own.ece); a.subsets.regret.inside.accuracy;
   */
  audit(x: MatrixInput, y: ClassLabelsInput, options?: Omit<MoEAuditOptions, 'temperatures' | 'device'> & { device?: Device; precision?: Precision }): Promise<MoEAudit> {
    return withCallerStack(async () => {
      const { device, precision, ...rest } = ownProperties(options ?? {}) as { device?: Device; precision?: Precision } & MoEAuditOptions;
      const p = await this.predict(x, { returnRouting: true, returnExperts: true, device, precision });
      const rows = p.probs.rows, { experts: K, classes: C } = this.config;
      return moeAudit({ routing: p.routing.weights, expertProbs: expertTensor(p.experts!, rows, K, C), mixture: p.probs, labels: toLabels(y, 'y', rows, this.classNames) },
        { ...rest, temperatures: this.#temps, device: device ?? this.device });
    });
  }

  #writeFile(path: string, params: Float32Array, training: unknown, checkpoint?: ModelFileParts['checkpoint']): void {
    const tensors = this.#layout.map((t) => ({ name: t.name, shape: [...t.shape], data: params.subarray(t.offset, t.offset + t.shape.reduce((a, b) => a * b, 1)) }));
    writeModelFile(path, { options: this.#options, tensors, temperatures: this.#temps, aggregateTemperature: this.#aggregateTemperature, training, checkpoint });
  }

  /**
   * Saves the model as a safetensors file (atomically: an interrupted save leaves the old file):
   * the parameter tensors, and in its metadata the configuration, class names, temperatures,
   * training summary and calmoe version. The device is not saved.
   *
   * @example
   * model.save('model.safetensors');
   * const same = MoEClassifier.load('model.safetensors');
   */
  save(path: string): void {
    this.#idle('save');
    if (typeof path !== 'string' || path === '') throw typeError('path: expected a file path');
    this.#writeFile(path, this.#params, this.#summary);
  }

  /** Loads a model saved by {@link save}; a malformed or hostile file is a RangeError naming what is wrong. `device` and `precision` are this process's choice. */
  static load(path: string, options?: { device?: Device; precision?: Precision }): MoEClassifier {
    if (typeof path !== 'string' || path === '') throw typeError('path: expected a file path');
    const o = readOptions(options, 'options', ['device', 'precision']);
    const f = readModelFile(path);
    const model = new MoEClassifier({ ...f.options, ...(o.device === undefined ? {} : { device: o.device as Device }),
      ...(o.precision === undefined ? {} : { precision: o.precision as Precision }) });
    model.#params.set(f.parameters);
    model.#temps.set(f.temperatures);
    model.#aggregateTemperature = f.aggregateTemperature;
    model.#summary = f.training;
    return model;
  }

  /** A JSON-safe snapshot: options (without the device), parameters (base64 float32, little-endian), temperatures and the aggregate temperature. */
  toJSON(): { format: 'calmoe.moe'; version: 1; options: MoEOptions; parameters: string; temperatures: number[]; aggregateTemperature: number } {
    const bytes = new Uint8Array(this.#params.buffer, this.#params.byteOffset, this.#params.byteLength);
    const { classNames } = this.#options;
    return { format: 'calmoe.moe', version: 1, options: { ...portableOptions(this.#options), ...(classNames ? { classNames } : {}) },
      parameters: Buffer.from(bytes).toString('base64'), temperatures: Array.from(this.#temps), aggregateTemperature: this.#aggregateTemperature };
  }

  static fromJSON(json: unknown): MoEClassifier {
    const j = json as { format?: unknown; version?: unknown; options?: unknown; parameters?: unknown; temperatures?: unknown; aggregateTemperature?: unknown };
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
    // the device is this process's choice (files written before it was left out may name 'cuda')
    const { device: _device, ...options } = (j.options ?? {}) as MoEOptions;
    const model = new MoEClassifier(options);
    const buf = Buffer.from(j.parameters, 'base64');
    if (buf.length !== model.#params.byteLength) throw rangeError(`json.parameters: expected ${model.#params.byteLength} bytes for this configuration, got ${buf.length}`);
    model.setParameters(new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length)));
    model.setTemperatures(j.temperatures as number[]);
    // absent in snapshots written before the aggregate temperature existed: 1 (off)
    if (j.aggregateTemperature !== undefined) {
      if (typeof j.aggregateTemperature !== 'number') throw typeError('json.aggregateTemperature: expected a number');
      model.setAggregateTemperature(j.aggregateTemperature);
    }
    return model;
  }
}

function skippedWarnings(fit: ExpertTemperatureResult): string[] {
  return fit.experts.filter((e) => e.skipped === 'too-few-rows').map((e) =>
    `expert ${e.expert}: routed weight ${e.weight.toPrecision(4)} on ${e.rows} rows is below minRows = ${fit.minRows}; its temperature is 1`);
}

function abortError(signal: AbortSignal | undefined, epochs: EpochLog[]): Error {
  return Object.assign(new Error('fit: aborted; the model keeps the parameters of its last finished step'), {
    name: 'AbortError', code: 'ABORT_ERR', cause: signal?.reason, history: { epochs },
  });
}
