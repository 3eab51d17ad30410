export { type Interval, normalQuantile, wilsonInterval } from './wilson.js';
export { escapeXml, formatNumber, formatPercent } from './markup.js';
export {
  type CalibrationLike, type ReliabilityBin, type ReliabilityDiagram, type ReliabilityDiagramOptions, reliabilityDiagram,
} from './reliability-diagram.js';
export {
  type ReliabilityStyle, type ReliabilitySvgOptions, type ReliabilityPanel, type ReliabilityGridOptions, reliabilitySvg, reliabilitySvgGrid,
} from './reliability-svg.js';
export { type HistogramSvgOptions, histogramSvg } from './histogram-svg.js';
export { type ReportCell, type ReportTable, type ReportFigure, type ReportSection, type ReportSpec, htmlReport } from './html-report.js';
export {
  calibrationTable, temperatureTable, expertTemperatureTable, expertAuditTable, hardSubsetTable, groupTable, routingTable, auditSection,
} from './report-tables.js';
