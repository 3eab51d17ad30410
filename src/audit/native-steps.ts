/**
 * The native calls an audit makes, as steps a generator yields, so that one implementation of
 * each audit serves both the blocking (`*Sync`) and the promise-returning function: the runner
 * executes every step synchronously or off the event loop.
 */
import { groupCalibration, groupCalibrationSync, type GroupCalibrationOptions, type GroupCalibrationReport } from '../metrics/calibration.js';
import { native, type NativeMoeAuditArgs, type NativeMoeAuditRows } from '../native.js';
import type { Matrix } from '../validate.js';

export type Step =
  | { kind: 'rows'; args: NativeMoeAuditArgs }
  | { kind: 'groups'; scores: Matrix; labels: Int32Array; groups: Int32Array; options: GroupCalibrationOptions };

export type Steps<R> = Generator<Step, R, unknown>;

/** Per-row audit quantities (calmoe/audit.h). */
export function* rowsStep(args: NativeMoeAuditArgs): Steps<NativeMoeAuditRows> {
  return (yield { kind: 'rows', args }) as NativeMoeAuditRows;
}

/** Calibration per group of rows, in one pass ({@link groupCalibration}). */
export function* groupsStep(scores: Matrix, labels: Int32Array, groups: Int32Array, options: GroupCalibrationOptions): Steps<GroupCalibrationReport> {
  return (yield { kind: 'groups', scores, labels, groups, options }) as GroupCalibrationReport;
}

export function runSync<R>(g: Steps<R>): R {
  let s = g.next();
  while (!s.done) {
    const step = s.value;
    s = g.next(step.kind === 'rows' ? native().moeAuditRows(step.args) : groupCalibrationSync(step.scores, step.labels, step.groups, step.options));
  }
  return s.value;
}

export async function runAsync<R>(g: Steps<R>): Promise<R> {
  let s = g.next();
  while (!s.done) {
    const step = s.value;
    s = g.next(step.kind === 'rows' ? await native().moeAuditRows(step.args, true) : await groupCalibration(step.scores, step.labels, step.groups, step.options));
  }
  return s.value;
}
