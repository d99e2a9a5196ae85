// What the RESP server needs from a node: the Engine. The server turns client
// commands into kv requests (src/kv) and sends consecutive writes as one
// `execute` (one replicated batch, SPEC §7 tag 0x01) and consecutive reads as
// one `read`. Replies come back in request order.
//
// A rejected promise means the whole batch did not happen (no leader, cutover
// barrier, timeout, stopped node): the server answers every command of the
// batch with that error. Per-request failures (INCR on a non-integer) are
// error replies inside a fulfilled result instead.

import type { EncryptionOp, EncryptionOpParams } from '../encryption/index.js';
import type { KvReply, KvRequest } from '../kv/index.js';

export interface ReadOptions {
  /** Wait until the local state includes every write acknowledged before the read started (ReadIndex). */
  linearizable: boolean;
}

/** Facts for INFO and the admin `/status`: flat, JSON- and INFO-printable. */
export type EngineStatus = Record<string, string | number | boolean>;

/**
 * Cluster membership as the admin API drives it (ids are `--raft-id`
 * strings, addresses the member's Raft `host:port`). Resolves with the new
 * membership once applied on this node; rejects with a typed error
 * (ErrNotLeader and friends) when the change cannot be proposed here.
 */
export interface EngineMembership {
  addLearner(id: string, raftAddress: string): Promise<Record<string, unknown>>;
  /** Makes a learner a voter (or adds a voter directly when `raftAddress` is given). */
  promote(id: string, raftAddress?: string): Promise<Record<string, unknown>>;
  remove(id: string): Promise<Record<string, unknown>>;
}

/** The encryption rollout as the admin API drives it (replicated engines). */
export interface EngineEncryption {
  /** Runs an operation cluster-wide (a follower forwards it to the leader); resolves with a JSON-able result. Typed SealErrors on refusal. */
  run(op: EncryptionOp, params: EncryptionOpParams): Promise<Record<string, unknown>>;
  /** GetSidecarState for node `raftId` (SPEC §10), from the leader; JSON-able. */
  sidecarState?(raftId: string): Promise<Record<string, unknown>>;
  /** This node's encryption status (SPEC §12 `encryption status`); `verify` counts versions per key_id by a scan. JSON-able. */
  status(options: { verify: boolean }): Promise<Record<string, unknown>>;
  /** Online rewrite sweeps (SPEC §11), fanned out to every member; answers per member, JSON-able. */
  rewrite?: EngineRewrite;
}

export interface EngineRewrite {
  /** Starts the sweep of `target` ('cleartext' or a decimal key_id) on every member at `rate` MiB/s (null: unthrottled). */
  start(target: string, rate: number | null): Promise<Record<string, unknown>>;
  /** Every member's sweeps and their progress. */
  status(): Promise<Record<string, unknown>>;
}

/** Backups of this node (src/backup), for the admin API's POST /backup. */
export interface EngineBackup {
  /** Writes a consistent backup into `out` (absent or empty, on this node's host); resolves with its summary. */
  create(out: string): Promise<Record<string, unknown>>;
}

export type { EncryptionOp, EncryptionOpParams };

export interface Engine {
  /** Replicates and applies `requests` as one atomic batch; resolves with one reply per request. */
  execute(requests: readonly KvRequest[]): Promise<KvReply[]>;
  /** Runs read-only requests (no writes allowed) against local state. */
  read(requests: readonly KvRequest[], options: ReadOptions): Promise<KvReply[]>;
  status(): EngineStatus;
  close(): Promise<void>;
  /** Present on replicated engines: membership changes for the admin API. */
  readonly membership?: EngineMembership;
  /** Present on replicated engines: the encryption rollout for the admin API. */
  readonly encryption?: EngineEncryption;
  /** Present on replicated engines: backups for the admin API. */
  readonly backup?: EngineBackup;
}
