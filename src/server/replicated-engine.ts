// ReplicatedEngine: the Engine of a Raft node, written against the narrow
// ports the node provides, so the server side is finished before Raft and
// the store are wired. Writes are proposed as one batch entry (SPEC §7 tag
// 0x01) and answered with the results the state machine computed on apply;
// reads run applyRequests locally over the store, after a ReadIndex barrier
// when linearizable.
//
// Read-side expiry uses the node's clock (`nowMs`), so a key may look
// expired on a read a few milliseconds before the replicated apply agrees;
// writes always decide expiry from the replicated time.

import { applyRequests, isWriteRequest, type KvRangeReader, type KvReply, type KvRequest } from '../kv/index.js';
import type { Engine, EngineStatus, ReadOptions } from './engine.js';

export interface ReplicatedEnginePorts {
  /**
   * Proposes `requests` as one batch (forwarded to the leader on a follower)
   * and resolves with the apply results, one per request. Rejects with a
   * SealError when nothing was applied (ErrNotLeader, ErrTimeout, ...).
   */
  propose(requests: readonly KvRequest[]): Promise<readonly unknown[]>;
  /** Resolves once local apply has reached the commit index current at the call (ReadIndex). */
  readBarrier(): Promise<void>;
  /** The local store as of its applied state; one call must see one consistent state. */
  reader: KvRangeReader;
  nowMs(): number;
  status(): EngineStatus;
  close(): Promise<void>;
}

const REPLY_KINDS: ReadonlySet<string> = new Set(['ok', 'nil', 'bulk', 'int', 'array', 'error']);

export class ReplicatedEngine implements Engine {
  readonly #ports: ReplicatedEnginePorts;

  constructor(ports: ReplicatedEnginePorts) {
    this.#ports = ports;
  }

  async execute(requests: readonly KvRequest[]): Promise<KvReply[]> {
    const results = await this.#ports.propose(requests);
    if (results.length !== requests.length || !results.every((r) => REPLY_KINDS.has((r as { kind?: unknown })?.kind as string))) {
      // A build mismatch or a bug, not a client error: the server logs it and answers `internal error`.
      throw new Error(`apply returned ${results.length} results of unexpected shape for ${requests.length} requests`);
    }
    return results as KvReply[];
  }

  async read(requests: readonly KvRequest[], options: ReadOptions): Promise<KvReply[]> {
    if (requests.some(isWriteRequest)) throw new TypeError('read() was given a write request');
    if (options.linearizable) await this.#ports.readBarrier();
    return (await applyRequests(this.#ports.reader, requests, this.#ports.nowMs())).replies;
  }

  status(): EngineStatus {
    return this.#ports.status();
  }

  close(): Promise<void> {
    return this.#ports.close();
  }
}
