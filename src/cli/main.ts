#!/usr/bin/env node
/**
 * The `calmoe` command line: train, eval, predict, calibrate, drift, experiment, doctor. Arguments are parsed
 * by commander (subcommands, typed option parsers, generated --help); every failure is one line
 * on stderr and an exit code that says what kind it was (EXIT in common.ts).
 */
import { Command, CommanderError } from 'commander';
import { VERSION } from '../version.js';
import { calibrateCommand } from './calibrate.js';
import { EXIT, EXIT_CODES_HELP, exitCodeOf } from './common.js';
import { doctorCommand } from './doctor.js';
import { driftCommand } from './drift.js';
import { evalCommand } from './eval.js';
import { experimentCommand } from './experiment.js';
import { predictCommand } from './predict.js';
import { trainCommand } from './train.js';

export function program(): Command {
  const p = new Command('calmoe')
    .description('Calibrated Mixture-of-Experts classifiers: train on your data, evaluate calibration, predict, watch for drift')
    .version(VERSION)
    .addHelpText('after', `
Quick start:
  $ calmoe train train.csv --label y --val-split 0.2 -o model.safetensors
  $ calmoe eval model.safetensors test.csv --label y --audit
  $ calmoe predict model.safetensors new.csv -o predictions.csv
  $ calmoe experiment --out report.html
Run 'calmoe <command> --help' for a command's options and examples.
${EXIT_CODES_HELP}`);
  for (const c of [trainCommand(), evalCommand(), predictCommand(), calibrateCommand(), driftCommand(), experimentCommand(), doctorCommand()]) p.addCommand(c);
  // every command throws instead of exiting, so main() maps errors to exit codes in one place
  const exitOverride = (c: Command) => {
    c.exitOverride();
    c.commands.forEach(exitOverride);
  };
  exitOverride(p);
  return p;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await program().parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here with exit code 0; usage errors are already printed
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    const e = err as Error;
    process.stderr.write(`calmoe: ${e?.message ?? String(err)}\n`);
    if (process.env.CALMOE_DEBUG) process.stderr.write(`${e?.stack}\n`);
    return exitCodeOf(err);
  }
}

// Output piped into a reader that stops early (`calmoe --help | head`): stop quietly, as Unix tools do.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(EXIT.ok);
    throw err;
  });
}
process.exitCode = await main(process.argv.slice(2));
