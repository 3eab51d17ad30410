export * from './classifier.js';
export type { MoEOptions, OptimizerOptions, ScheduleOptions, ObjectiveOptions, Routing as RoutingMode, Activation, Precision } from './options.js';
