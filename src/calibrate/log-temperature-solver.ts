/**
 * The 1-D minimiser of a temperature-scaling NLL in s = log T, written once as a generator so
 * that the same steps drive the synchronous and the asynchronous fits: it yields a temperature,
 * receives the objective there ({@link Evaluation}) and finally returns a {@link SolverResult}.
 *
 * The NLL is convex in beta = 1/T, so in s its derivative changes sign at most once (from
 * negative to positive): the minimiser over [log min, log max] is either the one stationary point
 * or a bound. The method is a safeguarded Newton iteration on the derivative (Numerical Recipes'
 * rtsafe): a bracket [a, b] with f'(a) < 0 < f'(b) always holds the minimiser and shrinks with
 * every evaluation; a Newton step is taken when it lands inside the bracket and shrinks the step
 * fast enough, a bisection otherwise. It converges from any start and never leaves [min, max].
 * It returns the point where it stopped (or, if it ran out of evaluations, the best point it
 * evaluated), never one whose NLL is above the NLL at T = 1 when 1 lies in [min, max].
 */

/** The weighted mean NLL at one temperature and its derivatives in log T. */
export interface Evaluation {
  nll: number;
  /** d NLL / d log T */
  d1: number;
  /** d^2 NLL / d (log T)^2 */
  d2: number;
}

export interface SolverOptions {
  /** Starting temperature (clamped into [min, max]). */
  init: number;
  min: number;
  max: number;
  /** Stop when |d NLL / d log T| <= tolerance. */
  tolerance: number;
  /** Most evaluations of the objective, the T = 1 baseline included (at least 2). */
  maxIterations: number;
}

export interface SolverResult {
  temperature: number;
  /** The objective at the returned temperature. */
  at: Evaluation;
  /** The objective at T = 1 (the unscaled model). */
  baseline: Evaluation;
  /** Evaluations of the objective, the T = 1 baseline included. */
  iterations: number;
  converged: boolean;
  /** Set when the minimiser is a bound of [min, max] (the NLL still decreases beyond it). */
  atBound: 'min' | 'max' | null;
}

/** Step tolerance in log T: the bracket is this narrow (about 1e-12 relative in T) at the end. */
const X_TOL = 1e-12;

export function* solveLogTemperature(o: SolverOptions): Generator<number, SolverResult, Evaluation> {
  const lo = Math.log(o.min), hi = Math.log(o.max);
  let iterations = 0;
  let best: { x: number; e: Evaluation } | null = null;
  let last: { x: number; e: Evaluation } | null = null;
  const oneInBounds = 0 >= lo && 0 <= hi;
  // The temperature at s = x: the bounds exactly (exp(log(max)) may round above max).
  const tOf = (x: number) => (x >= hi ? o.max : x <= lo ? o.min : x === 0 ? 1 : Math.exp(x));
  // Evaluates at s = x and keeps the best point.
  function* at(x: number): Generator<number, Evaluation, Evaluation> {
    const e = yield tOf(x);
    iterations++;
    if (!Number.isFinite(e.nll) || !Number.isFinite(e.d1)) throw new Error(`calmoe: temperature objective is not finite at T = ${tOf(x)}`);
    if (best === null || e.nll <= best.e.nll) best = { x, e };
    last = { x, e };
    return e;
  }
  // Converged: the last point (the stationary point or the bound), unless it is above T = 1 (by
  // rounding); otherwise the best point evaluated.
  const finish = (converged: boolean, atBound: 'min' | 'max' | null, baseline: Evaluation): SolverResult => {
    const b = converged && last !== null && !(oneInBounds && last.e.nll > baseline.nll) ? last : best!;
    const bound = atBound === 'min' && b.x !== lo ? null : atBound === 'max' && b.x !== hi ? null : atBound;
    return { temperature: tOf(b.x), at: b.e, baseline, iterations, converged, atBound: bound };
  };

  // The unscaled model: the baseline, and a candidate when T = 1 lies in the bounds.
  const baseline: Evaluation = yield 1;
  iterations++;
  if (oneInBounds) best = last = { x: 0, e: baseline };

  let x = o.init >= o.max ? hi : o.init <= o.min ? lo : Math.log(o.init);
  let e = x === 0 && best !== null ? baseline : yield* at(x);
  if (Math.abs(e.d1) <= o.tolerance) return finish(true, null, baseline);

  // Bracket the minimiser: the far bound is the other end; if the derivative there does not change
  // sign, the minimiser is that bound.
  let a: number, b: number;
  if (e.d1 < 0) {
    if (x === hi) return finish(true, 'max', baseline);
    if (iterations >= o.maxIterations) return finish(false, null, baseline);
    const eb = yield* at(hi);
    if (eb.d1 <= 0) return finish(true, eb.d1 < 0 ? 'max' : null, baseline);
    a = x;
    b = hi;
  } else {
    if (x === lo) return finish(true, 'min', baseline);
    if (iterations >= o.maxIterations) return finish(false, null, baseline);
    const ea = yield* at(lo);
    if (ea.d1 >= 0) return finish(true, ea.d1 > 0 ? 'min' : null, baseline);
    a = lo;
    b = x;
  }

  // rtsafe on the derivative, from the starting point.
  let dxOld = b - a, dx = dxOld;
  while (iterations < o.maxIterations) {
    const newtonOutside = ((x - b) * e.d2 - e.d1) * ((x - a) * e.d2 - e.d1) >= 0;
    const slow = Math.abs(2 * e.d1) > Math.abs(dxOld * e.d2);
    if (newtonOutside || slow || !(e.d2 > 0)) {
      dxOld = dx;
      dx = 0.5 * (b - a);
      x = a + dx;
    } else {
      dxOld = dx;
      dx = e.d1 / e.d2;
      x -= dx;
    }
    if (Math.abs(dx) < X_TOL || b - a < X_TOL) {
      // the step is below resolution: evaluate once more there and stop
      e = yield* at(x);
      return finish(true, null, baseline);
    }
    e = yield* at(x);
    if (Math.abs(e.d1) <= o.tolerance) return finish(true, null, baseline);
    if (e.d1 < 0) a = x;
    else b = x;
  }
  return finish(false, null, baseline);
}

/** Runs the solver with a synchronous objective. */
export function solveSync(o: SolverOptions, evaluate: (temperature: number) => Evaluation): SolverResult {
  const g = solveLogTemperature(o);
  let step = g.next();
  while (!step.done) step = g.next(evaluate(step.value));
  return step.value;
}

/** Runs the solver with an asynchronous objective (each evaluation off the event loop). */
export async function solveAsync(o: SolverOptions, evaluate: (temperature: number) => Promise<Evaluation>): Promise<SolverResult> {
  const g = solveLogTemperature(o);
  let step = g.next();
  while (!step.done) step = g.next(await evaluate(step.value));
  return step.value;
}
