/**
 * calmoe's size and range limits. Each is defined once, in the native core
 * (native/include/calmoe/limits.h, where a comment says why it has its value), and read here from
 * the addon's frozen `limits` object: every TypeScript validator uses these names, so the
 * TypeScript and native checks cannot disagree. (Limits only TypeScript enforces, such as the
 * size of a safetensors header, are defined once where they are used.)
 */
import { native, type NativeLimits } from './native.js';

export type Limits = NativeLimits;

/** The limits (loads the addon on first use). */
export function limits(): Limits {
  return native().limits;
}
