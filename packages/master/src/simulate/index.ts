/** `autoscaler simulate`: traces, the load model, the baselines, our engine's adapter, the plot and the report. */
export { parseTrace, sliceTrace, traceError, TRACE_CSV_HEADER, type SliceOptions, type Trace } from "./trace.js";
export {
  simulate,
  mulberry32,
  READING_RETENTION_MS,
  type ClusterView,
  type Controller,
  type ControllerAction,
  type ModelOptions,
  type SimulateDeps,
  type SimulationResult,
  type TimelinePoint,
} from "./model.js";
export {
  createHpaController,
  createStaticController,
  hpaReplicas,
  staticFleetFor,
  DEFAULT_HPA_OPTIONS,
  type HpaOptions,
  type StaticController,
} from "./baselines.js";
export { createEngineController, demandHistoryFrom } from "./ours.js";
export type { DemandHistory } from "../predictive.js";
export { renderPlotSvg, plotSpec, MAX_POINTS, OVERLOAD_CPU, type PlotOptions } from "./plot.js";
export { formatResultsTable, describeRun, resultsJson, type ResultJson, type RunInfo, type SimulationJson } from "./report.js";
