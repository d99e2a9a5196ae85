// The node part's door: what ties the store, Raft, the state machine and the
// servers into one running sealkv node.

export { RaftEngine, type RaftEngineOptions, type ReplicatedLog } from './raft-engine.js';
export { startNode, startFailureLine, stopOnSignals, type OpenEngine, type RunningNode } from './node.js';
export {
  DEFAULT_ADMIN_LISTEN,
  DEFAULT_DATA_DIR,
  DEFAULT_LISTEN,
  DEFAULT_RAFT_LISTEN,
  DEFAULT_SNAPSHOT_ENTRIES,
  DEV_HOME,
  parseHostPort,
  parsePeers,
  resolveStartConfig,
  type HostPort,
  type NodeConfig,
  type Peer,
  type StartOptions,
} from './config.js';
export { NodeSweeps, type NodeSweepsOptions, type SweepPhase, type SweepReport } from './sweeps.js';
export { DEFAULT_GC_INTERVAL_MS, DEFAULT_GC_RETENTION_MS, GcScheduler, minRetainedTimestamp, type GcSchedulerOptions, type GcTimers } from './gc.js';
export {
  PROPOSE_DEADLINE_MS,
  driverStateMachine,
  openReplicatedEngine,
  raftNodeId,
  storeReader,
  type ReplicationOptions,
} from './replication.js';
