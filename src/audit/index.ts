export { type ExpertTensor, type ExpertTensorInput, type ExpertIdsInput, type MoEOutputs, expertTensor } from './moe-outputs.js';
export { type RowAudit, type RowAuditOptions, rowAudit, rowAuditSync } from './row-audit.js';
export { type Distribution, type Histogram } from './distribution.js';
export { type RoutingStats, type RoutingStatsOptions, type ExpertUsage, routingStats, routingStatsSync } from './routing-stats.js';
export { type ExpertAudit, type ExpertAuditRow, type ExpertAuditOptions, type PredictionStats, expertAudit, expertAuditSync } from './expert-audit.js';
export {
  type HardSubsets, type HardSubsetOptions, type SubsetStats, type SubsetSplit, type GroupSubset, hardSubsets, hardSubsetsSync,
} from './hard-subsets.js';
export { type MoEAudit, type MoEAuditOptions, moeAudit, moeAuditSync } from './moe-audit.js';
