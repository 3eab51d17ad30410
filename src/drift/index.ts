/**
 * Input-feature drift: per-feature two-sample KS tests (SciPy's ks_2samp semantics), corrections
 * across features, the population stability index, a severity-ranked summary, and a mergeable
 * streaming monitor. Definitions: native/include/calmoe/drift.h.
 */
export { ksTest, ksTestSync, ksPValue, type KsTestOptions, type KsTestResult, type KsPValueResult } from './ks.js';
export { psi, psiSync, type PsiOptions, type PsiResult } from './psi.js';
export { adjustPValues } from './correction.js';
export { driftReport, driftReportSync, type DriftReportOptions } from './report.js';
export { DriftMonitor, type DriftMonitorOptions, type DriftMonitorReportOptions, type DriftMonitorJSON } from './monitor.js';
export type { KsMethod, Correction, FeatureDrift, DriftReport } from './inputs.js';
