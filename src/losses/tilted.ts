/**
 * Tilted (adversarially reweighted) loss weights of robust training: w = softmax(eta * l) over a
 * minibatch, stable for any sign and size of eta (eta = 0 gives uniform weights). Definitions:
 * shared/DESIGN.md "Objectives".
 */
import { withCallerStack } from '../errors.js';
import { native } from '../native.js';
import { type Device, type OptionOf, type VectorInput, optBool, optChoice, optDevice, readOptions, toVector } from '../validate.js';
import { rangeError, typeError } from '../errors.js';

/**
 * 'term' (default): weights held constant, the tilted-ERM / KL-DRO gradient, coefficient w_j.
 * 'through': autograd through the weights, as in the paper's code: w_j (1 + eta (l_j - L)).
 */
export type TiltGradient = 'term' | 'through';

export interface TiltedOptions {
  /** Gradient convention for `coefficients` (default 'term'). */
  gradient?: TiltGradient;
  /** Return the weights (default true). */
  weights?: boolean;
  /** Return the per-example gradient coefficients dL/dl_j (default true). */
  coefficients?: boolean;
  device?: Device;
}

export interface TiltedResult {
  /** The robust loss L = sum_i w_i l_i. */
  robustLoss: number;
  /** The tilted empirical risk (1/eta) log mean exp(eta l); mean(l) at eta = 0. */
  tiltedErm: number;
  meanLoss: number;
  maxWeight: number;
  /** 1 / sum w_i^2: how many examples effectively carry the batch. */
  effectiveRows: number;
  weights?: Float32Array;
  coefficients?: Float32Array;
}

// 'weights' / 'coefficients' in a result: there unless the option is false (both when it may be).
type Returned<O, K extends 'weights' | 'coefficients'> =
  [OptionOf<O, K>] extends [true | undefined] ? { [P in K]: Float32Array }
  : [OptionOf<O, K>] extends [false] ? { [P in K]?: undefined }
  : { [P in K]?: Float32Array };

/** The result for options `O`: `weights` and `coefficients` are there unless turned off. */
export type TiltedResultOf<O extends TiltedOptions | undefined = TiltedOptions> =
  Omit<TiltedResult, 'weights' | 'coefficients'> & Returned<O, 'weights'> & Returned<O, 'coefficients'>;

function prepare(losses: unknown, eta: unknown, options: unknown) {
  const l = toVector(losses, 'losses');
  if (typeof eta !== 'number') throw typeError('eta: expected a number');
  if (!Number.isFinite(eta)) throw rangeError(`eta: expected a finite number, got ${eta}`);
  const o = readOptions(options, 'options', ['gradient', 'weights', 'coefficients', 'device']);
  const gradient = optChoice(o.gradient, 'gradient', 'term', ['term', 'through'] as const);
  const flags = { weights: optBool(o.weights, 'weights', true), coefficients: optBool(o.coefficients, 'coefficients', true), device: optDevice(o.device) };
  return { l, eta, gradient, flags };
}

/**
 * Tilted weights and gradient coefficients of a minibatch's per-example losses.
 *
 * @example
 * const { weights, coefficients, robustLoss } = tiltedWeightsSync(losses, 2, { gradient: 'term' });
 */
export function tiltedWeightsSync<O extends TiltedOptions | undefined = undefined>(losses: VectorInput, eta: number, options?: O): TiltedResultOf<O> {
  const p = prepare(losses, eta, options);
  return native().tiltedWeights(p.l, p.eta, p.gradient, p.flags) as TiltedResultOf<O>;
}

/** {@link tiltedWeightsSync} off the event loop, for very large loss vectors. */
export function tiltedWeights<O extends TiltedOptions | undefined = undefined>(losses: VectorInput, eta: number, options?: O): Promise<TiltedResultOf<O>> {
  return withCallerStack(async () => {
    const p = prepare(losses, eta, options);
    return (await native().tiltedWeights(p.l, p.eta, p.gradient, p.flags, true)) as TiltedResultOf<O>;
  });
}
