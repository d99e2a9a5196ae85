// Pending ReadIndex requests at a leader: each waits for a quorum of
// heartbeat acknowledgements carrying its context in the leader's term.

import type { Message, NodeId } from './types.js';

export interface ReadIndexStatus {
  req: Message;
  index: number;
  acks: Set<NodeId>;
}

function ctxKey(ctx: Uint8Array): string {
  return Buffer.from(ctx.buffer, ctx.byteOffset, ctx.byteLength).toString('latin1');
}

export class ReadOnly {
  private readonly pending = new Map<string, ReadIndexStatus>();
  // Invariant: queue holds exactly the keys of `pending`, in arrival order.
  private queue: string[] = [];

  /** Registers a read at commit index `index`; a repeated context is ignored (contexts must be unique). */
  addRequest(index: number, m: Message): void {
    const key = ctxKey(m.context!);
    if (this.pending.has(key)) return;
    this.pending.set(key, { req: m, index, acks: new Set() });
    this.queue.push(key);
  }

  /** Records an ack; returns who acked so far, or undefined for an unknown context. */
  recvAck(id: NodeId, ctx: Uint8Array): Set<NodeId> | undefined {
    const rs = this.pending.get(ctxKey(ctx));
    if (rs === undefined) return undefined;
    rs.acks.add(id);
    return rs.acks;
  }

  /** Removes and returns every request up to and including the one with `ctx` (earlier ones are confirmed too). */
  advance(ctx: Uint8Array): ReadIndexStatus[] {
    const key = ctxKey(ctx);
    const at = this.queue.indexOf(key);
    if (at < 0) return [];
    const done = this.queue.slice(0, at + 1);
    this.queue = this.queue.slice(at + 1);
    const out: ReadIndexStatus[] = [];
    for (const k of done) {
      out.push(this.pending.get(k)!);
      this.pending.delete(k);
    }
    return out;
  }

  lastPendingRequestCtx(): Uint8Array | undefined {
    const key = this.queue[this.queue.length - 1];
    return key === undefined ? undefined : this.pending.get(key)!.req.context;
  }
}
