/**
 * Confidence intervals for a bin's accuracy: the Wilson score interval (Wilson 1927; Agresti &
 * Coull 1998), and the standard normal quantile it needs (Wichura's AS241 PPND16, accurate to
 * about 1e-16).
 */
import { rangeError, typeError } from '../errors.js';

/** Standard normal quantile Phi^-1(p) for p in (0, 1) (Wichura 1988, algorithm AS241). */
export function normalQuantile(p: number): number {
  if (typeof p !== 'number') throw typeError(`p: expected a number, got ${typeof p}`);
  if (!(p > 0 && p < 1)) throw rangeError(`p: expected a probability in (0, 1), got ${p}`);
  const q = p - 0.5;
  if (Math.abs(q) <= 0.425) {
    const r = 0.180625 - q * q;
    return (q * (((((((2509.0809287301226727 * r + 33430.575583588128105) * r + 67265.770927008700853) * r + 45921.953931549871457) * r +
      13731.693765509461125) * r + 1971.5909503065514427) * r + 133.14166789178437745) * r + 3.387132872796366608)) /
      (((((((5226.495278852545925 * r + 28729.085735721942674) * r + 39307.89580009271061) * r + 21213.794301586595867) * r +
        5394.1960214247511077) * r + 687.1870074920579083) * r + 42.313330701600911252) * r + 1);
  }
  let r = q < 0 ? p : 1 - p;
  r = Math.sqrt(-Math.log(r));
  let x: number;
  if (r <= 5) {
    r -= 1.6;
    x = (((((((7.7454501427834140764e-4 * r + 0.0227238449892691845833) * r + 0.24178072517745061177) * r + 1.27045825245236838258) * r +
      3.64784832476320460504) * r + 5.7694972214606914055) * r + 4.6303378461565452959) * r + 1.42343711074968357734) /
      (((((((1.05075007164441684324e-9 * r + 5.475938084995344946e-4) * r + 0.0151986665636164571966) * r + 0.14810397642748007459) * r +
        0.68976733498510000455) * r + 1.6763848301838038494) * r + 2.05319162663775882187) * r + 1);
  } else {
    r -= 5;
    x = (((((((2.01033439929228813265e-7 * r + 2.71155556874348757815e-5) * r + 0.0012426609473880784386) * r + 0.026532189526576123093) * r +
      0.29656057182850489123) * r + 1.7848265399172913358) * r + 5.4637849111641143699) * r + 6.6579046435011037772) /
      (((((((2.04426310338993978564e-15 * r + 1.4215117583164458887e-7) * r + 1.8463183175100546818e-5) * r + 7.868691311456132591e-4) * r +
        0.0148753612908506148525) * r + 0.13692988092273580531) * r + 0.59983220655588793769) * r + 1);
  }
  return q < 0 ? -x : x;
}

export interface Interval {
  low: number;
  high: number;
}

/**
 * Wilson score interval for a proportion with `successes` out of `trials` at confidence `level`:
 * center (p + z^2/2n) / (1 + z^2/n), half-width z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n), with
 * z = Phi^-1(1 - (1 - level)/2). It stays in [0, 1] and is sensible at p = 0 or 1 and small n,
 * unlike the normal (Wald) interval. NaN bounds when trials = 0.
 *
 * @example
 * wilsonInterval(3, 10, 0.95); // { low: 0.1078..., high: 0.6032... }
 */
export function wilsonInterval(successes: number, trials: number, level = 0.95): Interval {
  if (typeof trials !== 'number' || typeof successes !== 'number') throw typeError('successes, trials: expected numbers');
  if (!(Number.isInteger(trials) && trials >= 0)) throw rangeError(`trials: expected an integer >= 0, got ${trials}`);
  if (!(Number.isInteger(successes) && successes >= 0 && successes <= trials)) throw rangeError(`successes: expected an integer in [0, trials = ${trials}], got ${successes}`);
  if (typeof level !== 'number') throw typeError(`level: expected a number, got ${typeof level}`);
  if (!(level > 0 && level < 1)) throw rangeError(`level: expected a number in (0, 1), got ${level}`);
  if (trials === 0) return { low: NaN, high: NaN };
  const z = normalQuantile(1 - (1 - level) / 2);
  const n = trials, p = successes / n, z2 = z * z;
  const denom = 1 + z2 / n;
  const center = (p + z2 / (2 * n)) / denom;
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / denom;
  return { low: successes === 0 ? 0 : Math.max(0, center - half), high: successes === trials ? 1 : Math.min(1, center + half) };
}
