/** Mean and spread over seeds, and the conclusion of a run stated from its own numbers. */

export interface Spread { mean: number; sd: number; values: number[] }

/** Mean and sample standard deviation (0 for one value). */
export function spread(values: number[]): Spread {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const sd = values.length > 1 ? Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / (values.length - 1)) : 0;
  return { mean, sd, values };
}

export const formatSpread = (s: Spread, digits = 4): string => `${s.mean.toFixed(digits)} ± ${s.sd.toFixed(digits)}`;
const signed = (v: number) => `${v >= 0 ? '+' : ''}${v.toFixed(4)}`;

export interface Conclusion {
  /** Which calibrated model's ECE moved less under the route shift; 'neither' when the gap is within the spread over seeds. */
  movedLess: 'hard' | 'soft' | 'neither';
  /** The spread the gap is compared with: the larger sd over seeds of the two ECE changes. */
  noise: number;
  /** The sentence on the route shift. */
  shift: string;
  /** The sentence on route purity and what it implies. */
  purity: string;
  /** The sentence on the tilted variants (null without them). */
  tilt: string | null;
  text: string;
}

/** Tilted minus ERM, both calibrated, per routing (per seed: mean and sd), and the tilts chosen per seed. */
export interface TiltEffect {
  hard: { worstDomainHeavyEce: Spread; difficultEce: Spread; accuracy: Spread; etas: number[] };
  soft: { worstDomainHeavyEce: Spread; difficultEce: Spread; accuracy: Spread; etas: number[] };
}

/** 'lowered' / 'raised', or no measurable change when the mean is within the spread over seeds. */
function moved(d: Spread, what: string): string {
  const n = `${signed(d.mean)}, sd ${d.sd.toFixed(4)}`;
  if (Math.abs(d.mean) <= d.sd) return `did not change the ${what} measurably (${n})`;
  return `${d.mean < 0 ? 'lowered' : 'raised'} the ${what} (${n})`;
}

function tiltSentence(t: TiltEffect): string {
  const one = (name: string, e: TiltEffect['hard']) =>
    `for ${name} routing (eta ${e.etas.join(', ')}) it ${moved(e.worstDomainHeavyEce, 'worst domain-heavy ECE')}, ` +
    `${moved(e.difficultEce, 'difficult-subset ECE')}, and changed in-distribution accuracy by ${signed(e.accuracy.mean)}`;
  return `Tilted training (robust-filtered, 'term' gradient, eta chosen per seed on validation only), against ERM with the same calibration: ` +
    `${one('hard', t.hard)}; ${one('soft', t.soft)}.`;
}

/**
 * `hard` and `soft`: per seed, route-shift ECE minus in-distribution ECE of the calibrated models;
 * `purity`: hard routing's mean route purity with respect to domain.
 */
export function conclude(hard: Spread, soft: Spread, purity: number, seeds: number, tilt: TiltEffect | null = null): Conclusion {
  const noise = Math.max(hard.sd, soft.sd);
  const gap = Math.abs(hard.mean) - Math.abs(soft.mean);
  const movedLess = Math.abs(gap) <= noise ? 'neither' : gap < 0 ? 'hard' : 'soft';
  const verdict = movedLess === 'neither'
    ? `the difference is within the spread over seeds (${noise.toFixed(4)}): neither held its calibration measurably better in this run.`
    : movedLess === 'hard'
      ? 'hard routing held its calibration better, as the paper predicts.'
      : "hard routing did not hold its calibration better here, against the paper's prediction.";
  const shift = `In this run, moving the route mix changed the ECE of hard routing with calibrated experts by ${signed(hard.mean)} ` +
    `(sd ${hard.sd.toFixed(4)}) and that of soft routing with per-expert and aggregate temperatures by ${signed(soft.mean)} ` +
    `(sd ${soft.sd.toFixed(4)}): ${verdict}`;
  const purityText = `Hard routing's route purity with respect to domain is ${purity.toFixed(2)}` + (purity < 0.8
    ? ': routes do not follow the corruption domains, so the domain-heavy shifts also change P(y | route) and lie outside the theorem\'s premise.'
    : ': routes largely follow the domains, so the domain-heavy shifts come close to the theorem\'s premise (P(y | route) kept).');
  const tiltText = tilt ? tiltSentence(tilt) : null;
  return { movedLess, noise, shift, purity: purityText, tilt: tiltText, text: `${shift} ${purityText}${tiltText ? ` ${tiltText}` : ''} (${seeds} seed(s).)` };
}
