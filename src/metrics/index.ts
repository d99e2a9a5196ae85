// SealkvMetrics: the node's Prometheus registry (its own, never prom-client's
// global one, so several nodes can live in one process in tests). It declares
// the metrics of SPEC §12 so every part updates the same instruments; labels
// name key_ids and reasons, never key bytes.

import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Reasons of `sealkv_encryption_decrypt_failures_total` (SPEC §12). */
export const DECRYPT_FAILURE_REASONS = ['tag_mismatch', 'unknown_key_id', 'truncated', 'bad_version'] as const;
export type DecryptFailureReason = (typeof DECRYPT_FAILURE_REASONS)[number];

export class SealkvMetrics {
  readonly registry = new Registry();

  // Encryption (SPEC §12)
  readonly encryptionActiveDekId = new Gauge({
    name: 'sealkv_encryption_active_dek_id',
    help: 'key_id of the active DEK per purpose (0 = none)',
    labelNames: ['purpose'] as const,
    registers: [this.registry],
  });
  readonly encryptionDecryptFailures = new Counter({
    name: 'sealkv_encryption_decrypt_failures_total',
    help: 'Envelopes that failed to open, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly encryptionWritesPerDek = new Counter({
    name: 'sealkv_encryption_writes_per_dek',
    help: 'Seals performed by this process per DEK',
    labelNames: ['key_id'] as const,
    registers: [this.registry],
  });
  readonly encryptionLastProposedIndexPerRaftDek = new Gauge({
    name: 'sealkv_encryption_last_proposed_index_per_raft_dek',
    help: 'Last Raft index proposed sealed under each raft DEK',
    labelNames: ['key_id'] as const,
    registers: [this.registry],
  });
  readonly encryptionValueOverheadBytes = new Gauge({
    name: 'sealkv_encryption_value_overhead_bytes',
    help: 'Bytes an envelope adds to each stored value',
    registers: [this.registry],
  });
  readonly encryptionKekUnwrapSeconds = new Histogram({
    name: 'sealkv_encryption_kek_unwrap_seconds',
    help: 'Latency of unwrapping a DEK with the KEK provider',
    buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 2, 10],
    registers: [this.registry],
  });
  readonly encryptionSidecarRaftIndex = new Gauge({
    name: 'sealkv_encryption_sidecar_raft_index',
    help: 'raft_applied_index recorded in the sidecar',
    registers: [this.registry],
  });

  // Raft (set by the node driver)
  readonly raftTerm = new Gauge({ name: 'sealkv_raft_term', help: 'Current Raft term', registers: [this.registry] });
  readonly raftCommitIndex = new Gauge({ name: 'sealkv_raft_commit_index', help: 'Raft commit index', registers: [this.registry] });
  readonly raftAppliedIndex = new Gauge({ name: 'sealkv_raft_applied_index', help: 'Raft applied index', registers: [this.registry] });
  readonly raftIsLeader = new Gauge({ name: 'sealkv_raft_is_leader', help: '1 while this node is the Raft leader', registers: [this.registry] });

  // Client requests (RESP server)
  readonly requests = new Counter({
    name: 'sealkv_requests_total',
    help: 'Client commands answered, by command',
    labelNames: ['command'] as const,
    registers: [this.registry],
  });
  readonly requestErrors = new Counter({
    name: 'sealkv_request_errors_total',
    help: 'Client commands answered with an error, by error class',
    labelNames: ['command', 'error'] as const,
    registers: [this.registry],
  });
  readonly requestBatchSeconds = new Histogram({
    name: 'sealkv_request_batch_seconds',
    help: 'Latency of one engine call (a run of pipelined reads or writes)',
    labelNames: ['path'] as const,
    buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [this.registry],
  });
  readonly requestBatchSize = new Histogram({
    name: 'sealkv_request_batch_size',
    help: 'Commands per engine call',
    labelNames: ['path'] as const,
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 1024],
    registers: [this.registry],
  });
  readonly connections = new Gauge({ name: 'sealkv_connections', help: 'Open client connections', registers: [this.registry] });
  readonly connectionsAccepted = new Counter({
    name: 'sealkv_connections_accepted_total',
    help: 'Client connections accepted',
    registers: [this.registry],
  });
  readonly connectionsClosedByServer = new Counter({
    name: 'sealkv_connections_closed_by_server_total',
    help: 'Client connections the server refused or closed: max_connections, idle_timeout, protocol_error',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  // Store garbage collection (set by the node's GC scheduler, src/node/gc.ts)
  readonly storeMinRetainedTs = new Gauge({
    name: 'sealkv_store_min_retained_ts',
    help: 'GC horizon of the last completed store GC (HLC timestamp, logical counter 0): reads at or above it are whole',
    registers: [this.registry],
  });
  readonly storeGcRemoved = new Counter({
    name: 'sealkv_store_gc_removed_total',
    help: 'Versions removed by store GC',
    registers: [this.registry],
  });

  constructor() {
    for (const reason of DECRYPT_FAILURE_REASONS) this.encryptionDecryptFailures.inc({ reason }, 0);
  }

  /** Prometheus text exposition of every metric. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
