// Refusal notices: a leader whose admitProposal refuses a follower's
// forwarded proposal tells that follower which proposal ids it refused and
// why, over the authenticated RPC channel, so the follower's propose() fails
// at once with the leader's error instead of timing out.
//
// Best effort: notices are batched per follower, at most one call is in
// flight per follower, the queue per follower is capped, and a notice that
// cannot be delivered is dropped — the follower's timeout stays the fallback.
// Nothing here ever blocks the caller (the leader's message handler).

import { ERROR_CODES, sealError, type ErrorCode, type SealError } from '../../errors/index.js';
import type { NodeId } from '../core/types.js';

/** The driver-internal RPC method a follower serves for refusal notices. */
export const PROPOSALS_REFUSED_METHOD = 'raft.ProposalsRefused';

/** One refused forwarded proposal: its id (decimal), the leader's error code and message. */
export interface Refusal {
  id: string;
  code: string;
  message: string;
}

/** Refusals queued per follower beyond this are dropped (the follower times out instead). */
const MAX_QUEUED_PER_PEER = 256;
/** A notice the follower has not acknowledged within this is given up. */
export const NOTICE_TIMEOUT_MS = 2_000;
/** Longest error message carried in a notice. */
const MAX_MESSAGE = 200;
const ID_RE = /^\d{1,20}$/;

export function refusal(id: bigint, err: SealError): Refusal {
  return { id: id.toString(), code: err.code, message: err.message.slice(0, MAX_MESSAGE) };
}

/** The leader side: queues refusals per follower and sends them in batches. */
export class RefusalNotices {
  // Invariant: a follower is in `sending` while one flush loop for it runs;
  // its queue, when present, holds at most MAX_QUEUED_PER_PEER refusals.
  private readonly queued = new Map<NodeId, Refusal[]>();
  private readonly sending = new Set<NodeId>();
  private closed = false;
  readonly stats = { sent: 0, dropped: 0 };

  constructor(private readonly send: (to: NodeId, batch: Refusal[]) => Promise<unknown>) {}

  /** Queues a notice to `to`; returns at once. */
  add(to: NodeId, r: Refusal): void {
    if (this.closed) return;
    let q = this.queued.get(to);
    if (q === undefined) {
      q = [];
      this.queued.set(to, q);
    }
    if (q.length >= MAX_QUEUED_PER_PEER) {
      this.stats.dropped++;
      return;
    }
    q.push(r);
    if (this.sending.has(to)) return;
    this.sending.add(to);
    // After the current message is handled, so that one MsgProp's refusals go out together.
    setImmediate(() => void this.flush(to));
  }

  /** Drops everything queued; calls in flight end on their own (the transport is stopping). */
  close(): void {
    this.closed = true;
    this.queued.clear();
  }

  private async flush(to: NodeId): Promise<void> {
    for (;;) {
      const batch = this.queued.get(to);
      this.queued.delete(to);
      if (this.closed || batch === undefined || batch.length === 0) break;
      try {
        await this.send(to, batch);
        this.stats.sent += batch.length;
      } catch {
        // Unreachable or stopped: the follower's proposals time out as before.
        this.stats.dropped += batch.length;
      }
    }
    this.sending.delete(to);
  }
}

/** The follower side: the notice's refusals as (id, error); malformed items are skipped. */
export function parseRefusals(body: unknown, from: NodeId): { id: bigint; err: SealError }[] {
  if (!Array.isArray(body)) throw sealError('ErrBadRequest', 'proposals-refused notice: body is not a list');
  const out: { id: bigint; err: SealError }[] = [];
  for (const item of body.slice(0, MAX_QUEUED_PER_PEER) as unknown[]) {
    if (typeof item !== 'object' || item === null) continue;
    const { id, code, message } = item as Partial<Record<keyof Refusal, unknown>>;
    if (typeof id !== 'string' || !ID_RE.test(id)) continue;
    const known = typeof code === 'string' && Object.hasOwn(ERROR_CODES, code);
    const text = typeof message === 'string' ? message.slice(0, MAX_MESSAGE) : '';
    out.push({
      id: BigInt(id),
      err: sealError(known ? (code as ErrorCode) : 'ErrProposalDropped', `leader ${from} refused the forwarded proposal: ${text}`),
    });
  }
  return out;
}
