export { startAgent, backoffDelay, BACKOFF_CAP_MS, type AgentDeps, type RunningAgent } from "./agent.js";
export { createSampler, type Sampler } from "./sampler.js";
export { parseKnownHosts, verifyHostKey, fingerprint, keyTypeOf } from "./known-hosts.js";
export { ed25519KeyPair } from "./keygen.js";
export { leaveSocketPath, requestLeave, type LeaveAnswer } from "./leave-socket.js";
