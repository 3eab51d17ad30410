/**
 * Argument errors and async stack handling. Every public entry point validates its arguments
 * here, before native code runs: a TypeError (wrong type) or RangeError (wrong value) that names
 * the argument, with a `code` as the native layer uses.
 */

export type ErrorCode =
  | 'CALMOE_INVALID_ARG_TYPE'
  | 'CALMOE_INVALID_ARG_VALUE'
  | 'CALMOE_CUDA_UNAVAILABLE'
  | 'CALMOE_ADDON_NOT_FOUND'
  | 'CALMOE_ABORTED'
  /** The model is training: predict, the parameter views and setters wait for fit() to settle. */
  | 'CALMOE_BUSY'
  /** The model's parameter array was transferred or resized while fit ran. */
  | 'CALMOE_DETACHED'
  | 'CALMOE_RUNTIME';

export function typeError(message: string): TypeError {
  return Object.assign(new TypeError(message), { code: 'CALMOE_INVALID_ARG_TYPE' as ErrorCode });
}

export function rangeError(message: string): RangeError {
  return Object.assign(new RangeError(message), { code: 'CALMOE_INVALID_ARG_VALUE' as ErrorCode });
}

/**
 * Awaits a native promise and, if it rejects, gives the error the stack of the caller
 * (native rejections otherwise carry no JS frames), as sharp does.
 */
export async function withCallerStack<T>(start: () => Promise<T>): Promise<T> {
  const holder: { stack?: string } = {};
  Error.captureStackTrace(holder, withCallerStack);
  try {
    return await start();
  } catch (err) {
    if (err instanceof Error && holder.stack) {
      const frames = holder.stack.split('\n').slice(1).join('\n');
      err.stack = `${err.name}: ${err.message}\n${frames}`;
    }
    throw err;
  }
}
