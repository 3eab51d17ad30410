/**
 * The model file: safetensors with one F32 tensor per parameter tensor, named and shaped as
 * `MoEClassifier.tensors()` (weights are [in, out]: y = x W + b), and `__metadata__` strings:
 *   format "calmoe.moe", format_version "1", calmoe_version,
 *   config        JSON: the model's options (no device: a file runs wherever it is loaded),
 *   class_names   JSON: string[] (absent without names),
 *   temperatures  JSON: { experts: number[], aggregate: number } (per-expert T_k: p_k = softmax(z_k / T_k);
 *                 the mixture's T: p^(1/T) renormalised; aggregate absent in older files: 1),
 *   training      JSON: the training summary (absent for an untrained model).
 * A training checkpoint (checkpoint.ts) is a model file with more: `optimizer.*` tensors and
 * `__metadata__.checkpoint`; it loads as a model too.
 * Reading checks the metadata and compares every tensor's name and shape with the layout the
 * configuration implies before a tensor byte is read.
 */
import { rangeError } from '../errors.js';
import { type SafetensorsHeader, MAX_HEADER_DEPTH, jsonDepth, readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { native } from '../native.js';
import { VERSION } from '../version.js';
import { type MoEOptions, parseModelOptions } from './options.js';

export const MODEL_FORMAT = 'calmoe.moe';
export const MODEL_FORMAT_VERSION = '1';
/** Names of a checkpoint's optimiser tensors start with this. */
export const OPTIMIZER_PREFIX = 'optimizer.';

export interface ModelFileParts {
  options: MoEOptions;
  tensors: Array<{ name: string; shape: number[]; data: Float32Array }>;
  temperatures: ArrayLike<number>;
  aggregateTemperature: number;
  training?: unknown;
  /** A training checkpoint's optimiser tensors (named `optimizer.*`) and its state (JSON). */
  checkpoint?: { tensors: Array<{ name: string; shape: number[]; data: Float32Array }>; state: unknown };
}

export interface LoadedModel {
  options: MoEOptions;
  /** Every parameter, flat, in the layout's order. */
  parameters: Float32Array;
  temperatures: number[];
  aggregateTemperature: number;
  training?: Record<string, unknown>;
  calmoeVersion: string;
  /** Present in a checkpoint: its state (JSON, checked by checkpoint.ts) and `optimizer.*` tensors by name. */
  checkpoint?: { state: unknown; tensors: Map<string, Float32Array> };
}

/** The options as saved: without the device (a model trained on a GPU must load on a CPU-only machine) and the class names (their own key). */
export function portableOptions(options: MoEOptions): MoEOptions {
  const { device: _device, classNames: _names, ...rest } = options;
  return rest;
}

export function writeModelFile(path: string, parts: ModelFileParts): void {
  const metadata: Record<string, string> = {
    format: MODEL_FORMAT,
    format_version: MODEL_FORMAT_VERSION,
    calmoe_version: VERSION,
    config: JSON.stringify(portableOptions(parts.options)),
    temperatures: JSON.stringify({ experts: Array.from(parts.temperatures), aggregate: parts.aggregateTemperature }),
  };
  if (parts.options.classNames) metadata.class_names = JSON.stringify(parts.options.classNames);
  if (parts.training !== undefined) metadata.training = JSON.stringify(parts.training);
  if (parts.checkpoint) metadata.checkpoint = JSON.stringify(parts.checkpoint.state);
  writeSafetensors(path, parts.checkpoint ? [...parts.tensors, ...parts.checkpoint.tensors] : parts.tensors, metadata);
}

function metaJson(path: string, meta: Record<string, string>, key: string, required: boolean): unknown {
  const text = meta[key];
  if (text === undefined) {
    if (required) throw rangeError(`${path}: not a calmoe model file: __metadata__.${key} is missing`);
    return undefined;
  }
  if (jsonDepth(text) > MAX_HEADER_DEPTH) throw rangeError(`${path}: __metadata__.${key} nests too deeply`);
  try {
    return JSON.parse(text);
  } catch {
    throw rangeError(`${path}: __metadata__.${key} is not JSON`);
  }
}

export function readModelFile(path: string): LoadedModel {
  let options: MoEOptions | undefined, temperatures: number[] = [], aggregate = 1, training: Record<string, unknown> | undefined;
  let layout: ReturnType<ReturnType<typeof native>['moeLayout']> | undefined;
  let version = '', checkpoint: unknown;
  const file = readSafetensors(path, (h: SafetensorsHeader) => {
    const meta = h.metadata;
    if (meta.format !== MODEL_FORMAT) throw rangeError(`${path}: not a calmoe model file (__metadata__.format is ${JSON.stringify(meta.format)}, expected '${MODEL_FORMAT}')`);
    if (meta.format_version !== MODEL_FORMAT_VERSION)
      throw rangeError(`${path}: model format version ${JSON.stringify(meta.format_version)} is not readable by calmoe ${VERSION} (reads version ${MODEL_FORMAT_VERSION})`);
    version = meta.calmoe_version ?? '';
    const config = metaJson(path, meta, 'config', true) as Record<string, unknown>;
    if (config === null || typeof config !== 'object' || Array.isArray(config) || 'device' in config || 'classNames' in config)
      throw rangeError(`${path}: __metadata__.config is not a model configuration`);
    const names = metaJson(path, meta, 'class_names', false);
    options = { ...(config as unknown as MoEOptions), ...(names === undefined ? {} : { classNames: names as string[] }) };
    let parsed;
    try {
      parsed = parseModelOptions(options);
    } catch (err) {
      throw rangeError(`${path}: __metadata__.config: ${(err as Error).message}`);
    }
    const t = metaJson(path, meta, 'temperatures', true) as { experts?: unknown; aggregate?: unknown };
    if (t === null || typeof t !== 'object' || !Array.isArray(t.experts) || t.experts.length !== parsed.config.experts ||
        t.experts.some((v) => typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)))
      throw rangeError(`${path}: __metadata__.temperatures: expected { experts: [${parsed.config.experts} positive numbers] }`);
    temperatures = t.experts as number[];
    if (t.aggregate !== undefined && (typeof t.aggregate !== 'number' || !(t.aggregate > 0) || !Number.isFinite(t.aggregate)))
      throw rangeError(`${path}: __metadata__.temperatures.aggregate: expected a positive number, got ${JSON.stringify(t.aggregate)}`);
    aggregate = (t.aggregate as number | undefined) ?? 1;
    training = metaJson(path, meta, 'training', false) as Record<string, unknown> | undefined;
    layout = native().moeLayout(parsed.config);
    const have = new Map(h.tensors.map((x) => [x.name, x]));
    for (const want of layout.tensors) {
      const got = have.get(want.name);
      if (!got) throw rangeError(`${path}: tensor '${want.name}' is missing (the configuration has it, shape [${want.shape.join(', ')}])`);
      if (got.shape.length !== want.shape.length || got.shape.some((d, i) => d !== want.shape[i]))
        throw rangeError(`${path}: tensor '${want.name}' has shape [${got.shape.join(', ')}], the configuration gives [${want.shape.join(', ')}]`);
      have.delete(want.name);
    }
    checkpoint = metaJson(path, meta, 'checkpoint', false);
    if (checkpoint !== undefined) for (const name of [...have.keys()]) if (name.startsWith(OPTIMIZER_PREFIX)) have.delete(name);
    if (have.size > 0) throw rangeError(`${path}: tensor '${[...have.keys()][0]}' is not part of this configuration`);
  });
  const parameters = new Float32Array(layout!.total);
  const byName = new Map(file.tensors.map((t) => [t.name, t]));
  for (const want of layout!.tensors) {
    const t = byName.get(want.name)!;
    for (let i = 0; i < t.data.length; i++) {
      if (!Number.isFinite(t.data[i])) throw rangeError(`${path}: tensor '${want.name}' element ${i} is ${t.data[i]} (expected finite values)`);
    }
    parameters.set(t.data, want.offset);
  }
  const loaded: LoadedModel = { options: options!, parameters, temperatures, aggregateTemperature: aggregate, training, calmoeVersion: version };
  if (checkpoint !== undefined)
    loaded.checkpoint = { state: checkpoint, tensors: new Map(file.tensors.filter((t) => t.name.startsWith(OPTIMIZER_PREFIX)).map((t) => [t.name, t.data as Float32Array])) };
  return loaded;
}
