/** Loading the model file a subcommand names, with the CLI's device options. */
import { MoEClassifier } from '../moe/classifier.js';
import { CliError, EXIT } from './common.js';

export function loadModel(path: string, o: { device?: 'auto' | 'cpu' | 'cuda'; precision?: 'tf32' | 'fp32' | 'bf16' }): MoEClassifier {
  try {
    return MoEClassifier.load(path, { device: o.device, precision: o.precision });
  } catch (err) {
    const e = err as { code?: string; message: string };
    if (e.code === 'ENOENT') throw new CliError(`${path}: no such model file`, EXIT.input);
    throw err;
  }
}

/** Labels for the model: names go through its classNames, integers are class ids. */
export function labelsFor(model: MoEClassifier, labels: Int32Array | string[], path: string): Int32Array | string[] {
  if (Array.isArray(labels) && !model.classNames)
    throw new CliError(`${path}: the labels are names, but the model was trained on integer labels (it has no class names)`, EXIT.input);
  return labels;
}
