/**
 * Class names <-> class ids. Names are sorted (numerically when every name is a number), so the
 * same set of names gives the same ids whatever order the rows come in.
 */
import { rangeError, typeError } from '../errors.js';

/** The distinct names of `values`, in class-id order. */
export function classNamesOf(values: readonly string[]): string[] {
  if (!Array.isArray(values) || values.some((v) => typeof v !== 'string')) throw typeError('values: expected an array of strings');
  const names = [...new Set(values)];
  const numeric = names.every((n) => n.trim() !== '' && Number.isFinite(Number(n)));
  return numeric ? names.sort((a, b) => Number(a) - Number(b)) : names.sort();
}

/**
 * Maps names to ids in [0, classNames.length); with no `classNames`, they are `classNamesOf(values)`.
 *
 * @example
 * const { labels, classNames } = encodeLabels(['cat', 'dog', 'cat']); // [0, 1, 0], ['cat', 'dog']
 */
export function encodeLabels(values: readonly string[], classNames?: readonly string[]): { labels: Int32Array; classNames: string[] } {
  const names = classNames ? [...classNames] : classNamesOf(values);
  const ids = new Map(names.map((n, i) => [n, i]));
  const labels = new Int32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const id = ids.get(values[i]);
    if (id === undefined) throw rangeError(`values[${i}] = ${JSON.stringify(values[i])}: not one of the class names (${names.slice(0, 10).join(', ')}${names.length > 10 ? ', ...' : ''})`);
    labels[i] = id;
  }
  return { labels, classNames: names };
}
