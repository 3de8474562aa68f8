export { startMaster, type MasterDeps, type RunningMaster } from "./master.js";
export { callControl, controlSocketPath, setPausedWithoutMaster } from "./control.js";
export { createRegistry, type Registry, type NodeRecord } from "./registry.js";
export { resolveRole, type Role } from "./role.js";
export { buildStatus, windowAverage, type MasterStatus, type NodeStatus } from "./status.js";
export { leavingNodes } from "./leaving.js";
export type { PolicyStatus, ScheduleStatus } from "./scaler.js";
export { buildInstances, buildInventory, hostVars, renderInventoryIni, type Instance, type Inventory, type HostVars } from "./fleet.js";
