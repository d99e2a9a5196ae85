// RaftEngine: the RESP server's Engine (src/server) over the replicated log.
//
// Writes. A batch of write requests becomes one payload (`0x00` for one
// request, `0x01` for several) and is proposed through Raft from whichever
// node the client talks to. On a follower the driver forwards the proposal to
// the leader inside Raft (etcd-style MsgProp forwarding), so clients such as
// ioredis work unchanged against any node — no MOVED redirect. The call
// resolves once the entry has been applied on this node, with the state
// machine's replies.
//
// Timestamps. The leader stamps proposals from its armed LeaderClock (below
// the replicated ceiling, fsm/leader-clock.ts). A follower stamps with its
// wall clock as a hint only: the commit timestamp is decided at apply
// (`max(last + 1, min(proposed, ceiling − 1))`), so a hint can neither break
// uniqueness nor pass the ceiling.
//
// Reads. Linearizable reads wait for a ReadIndex barrier (the leader confirms
// its leadership with a quorum; a follower asks the leader for the index and
// waits to apply it), then run against this node's store with the wall clock
// for expiry. Non-linearizable reads skip the barrier. Each read batch opens
// one read view after the barrier and reads every key of the batch through
// it, so an MGET never sees half of an MSET applied in between (the node's
// view is an MVCC read at the last applied commit timestamp).

import { sealError } from '../errors/index.js';
import { applyRequests, isWriteRequest, type KvRangeReader, type KvReply, type KvRequest } from '../kv/index.js';
import { encodeBatchPayload, encodeRequestPayload, packHlc, type EntryOutcome, type LeaderClock } from '../fsm/index.js';
import type { Engine, EngineBackup, EngineEncryption, EngineMembership, EngineStatus, ReadOptions } from '../server/index.js';

/** What the engine needs from the Raft driver. */
export interface ReplicatedLog {
  /**
   * Proposes a state-machine payload from this node (forwarded to the leader
   * when this node follows); resolves with the outcome of its apply here.
   */
  propose(payload: Uint8Array): Promise<EntryOutcome>;
  /** Resolves once this node has applied everything committed before the call. */
  readBarrier(): Promise<void>;
  status(): EngineStatus;
}

export interface RaftEngineOptions {
  log: ReplicatedLog;
  /**
   * Opens a consistent view of the state machine's current state (the
   * store): every read through it sees the same applied prefix of the log.
   */
  openReader: () => KvRangeReader;
  clock: LeaderClock;
  now?: () => number;
  /** Membership changes for the admin API (absent: none). */
  membership?: EngineMembership;
  /** The encryption rollout for the admin API (absent: none). */
  encryption?: EngineEncryption;
  /** Backups for the admin API (absent: none). */
  backup?: EngineBackup;
  /** Called when the engine closes (stop the driver, close the store). */
  onClose?: () => Promise<void>;
}

export class RaftEngine implements Engine {
  readonly #log: ReplicatedLog;
  readonly #openReader: () => KvRangeReader;
  readonly #clock: LeaderClock;
  readonly #now: () => number;
  readonly #onClose: (() => Promise<void>) | undefined;
  readonly membership: EngineMembership | undefined;
  readonly encryption: EngineEncryption | undefined;
  readonly backup: EngineBackup | undefined;
  #closed = false;

  constructor(options: RaftEngineOptions) {
    this.#log = options.log;
    this.#openReader = options.openReader;
    this.#clock = options.clock;
    this.#now = options.now ?? Date.now;
    this.#onClose = options.onClose;
    this.membership = options.membership;
    this.encryption = options.encryption;
    this.backup = options.backup;
  }

  async execute(requests: readonly KvRequest[]): Promise<KvReply[]> {
    this.#checkOpen();
    if (requests.length === 0) return [];
    const stamp = await this.#stamp();
    const payload = requests.length === 1 ? encodeRequestPayload(requests[0], stamp) : encodeBatchPayload(requests, stamp);
    const outcome = await this.#log.propose(payload);
    if (outcome.kind !== 'request') throw sealError('ErrProposalDropped', `a write applied as a ${outcome.kind} entry`);
    return requests.length === 1 ? [outcome.result as KvReply] : (outcome.result as KvReply[]);
  }

  async read(requests: readonly KvRequest[], options: ReadOptions): Promise<KvReply[]> {
    this.#checkOpen();
    if (requests.some(isWriteRequest)) throw new TypeError('read() was given a write request');
    if (options.linearizable) await this.#log.readBarrier();
    return (await applyRequests(this.#openReader(), requests, this.#now())).replies;
  }

  status(): EngineStatus {
    return { engine: 'raft', raft_wired: true, clock_armed: this.#clock.ready, ...this.#log.status() };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#onClose?.();
  }

  /** The leader's issued timestamp; a wall-clock hint when this node is not (or stops being) an armed leader. */
  async #stamp(): Promise<bigint> {
    if (this.#clock.ready) {
      try {
        return await this.#clock.timestamp();
      } catch {
        // Leadership was lost while stamping: the entry is still valid with a hint.
      }
    }
    return packHlc(this.#now());
  }

  #checkOpen(): void {
    if (this.#closed) throw sealError('ErrRaftStopped', 'the node is shutting down');
  }
}
