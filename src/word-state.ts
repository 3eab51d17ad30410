/**
 * JSON form of the exact integer states (BigUint64Array) that calmoe's mergeable accumulators
 * keep: { format, version: 1, state: decimal strings }. The native side validates the words
 * themselves (header, lengths) when they are next used.
 */
import { rangeError, typeError } from './errors.js';

export interface WordStateJSON<F extends string> {
  format: F;
  version: 1;
  state: string[];
}

export function wordsToJSON<F extends string>(format: F, words: BigUint64Array): WordStateJSON<F> {
  return { format, version: 1, state: Array.from(words, (v) => v.toString()) };
}

/** Parses {@link wordsToJSON}'s output; `what` names the producer in the error ("DriftMonitor.toJSON()"). */
export function wordsFromJSON(json: unknown, format: string, what: string): BigUint64Array {
  const j = json as { format?: unknown; version?: unknown; state?: unknown };
  if (j === null || typeof j !== 'object' || j.format !== format || j.version !== 1 || !Array.isArray(j.state))
    throw typeError(`json: expected the output of ${what} (format '${format}', version 1)`);
  const words = new BigUint64Array(j.state.length);
  j.state.forEach((v: unknown, i: number) => {
    if (typeof v !== 'string' || !/^\d+$/.test(v)) throw rangeError(`json.state[${i}]: expected a decimal integer string`);
    const b = BigInt(v);
    if (b >= 2n ** 64n) throw rangeError(`json.state[${i}]: out of range`);
    words[i] = b;
  });
  return words;
}
