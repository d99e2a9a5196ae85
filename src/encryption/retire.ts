// retire-dek's criteria (SPEC §4.2), as a pure decision over what every
// member reports about its own copy (GetRetireFacts), so that the leader
// proposes the retirement only when no member can still need the DEK.
//
// Storage DEK N, on every member: its rewrite sweep for N finished (done
// row), no stored version names N (a scan), no rewrite cursor names N, and
// its GC horizon minRetainedTS is at or above N's `below_ts` (every version
// ever sealed under N has a commit timestamp below it: SUPERSEDED row,
// written at the apply of the rotation that replaced N). Beyond SPEC §4.2:
// its Raft log starts after that rotation entry — a member that catches up
// by replaying older entries (a new or emptied one, from any member that may
// lead) would seal them under N again, after N is gone.
//
// Raft DEK N, on every member: no entry of its own Raft log is a Raft
// envelope naming N — so its log starts above the last index sealed under N
// (a scan of the log; since the leader admits only its active raft DEK and
// every member has applied the rotation, no later entry can name N) — and
// its latest snapshot (the log's compaction point: the state machine's
// state at that index) was taken at or after the rotation entry that
// replaced N.
//
// Both: the DEK is not active on any member, and every member answered.
// No override. Each refusal names every member and reason.

import { sealError, type SealError } from '../errors/index.js';
import type { Purpose } from '../crypto/index.js';
import type { Superseded } from './rows.js';

export const RETIRE_FACTS_METHOD = 'GetRetireFacts';

/** What one member reports about DEK `key_id` on its own copy (JSON over the RPC). */
export interface RetireFacts {
  readonly node: string;
  /** The member's applied actives. */
  readonly active: { storage?: number; raft?: number };
  /** Storage DEK facts (absent for a raft DEK). */
  readonly storage?: {
    readonly sweep_done: boolean;
    readonly cursor: boolean;
    readonly versions: number;
    /** Decimal uint64. */
    readonly min_retained_ts: string;
    readonly log_first_index: number;
  };
  /** Raft DEK facts (absent for a storage DEK). */
  readonly raft?: {
    readonly log_first_index: number;
    readonly snapshot_index: number;
    /** The last entry of this member's log wrapped under the DEK; null when none is left. */
    readonly last_index_sealed: number | null;
  };
}

/** One member's answer: its facts, or why it could not give them. */
export type MemberFacts = { readonly node: string; readonly facts: RetireFacts } | { readonly node: string; readonly error: string };

/** Why one member still holds the DEK back; empty when it does not. */
export function memberReasons(keyId: number, purpose: Purpose, superseded: Superseded | undefined, m: MemberFacts): string[] {
  if ('error' in m) return [`did not answer (${m.error})`];
  const f = m.facts;
  const reasons: string[] = [];
  if (f.active.storage === keyId || f.active.raft === keyId) reasons.push(`DEK ${keyId} is active there`);
  if (purpose === 'storage') {
    const s = f.storage;
    if (s === undefined) return [...reasons, 'no storage facts'];
    if (s.versions > 0) reasons.push(`${s.versions} stored versions under it`);
    if (s.cursor) reasons.push('a rewrite cursor names it');
    if (!s.sweep_done) reasons.push('its rewrite sweep has not finished');
    if (superseded !== undefined && BigInt(s.min_retained_ts) < superseded.belowTs) {
      reasons.push(`minRetainedTS ${s.min_retained_ts} is not past its newest version (below ${superseded.belowTs})`);
    }
    if (superseded !== undefined && s.log_first_index <= superseded.index) {
      reasons.push(`its Raft log (from ${s.log_first_index}) still holds entries applied under it (rotation at ${superseded.index}): a member catching up from it would seal them under it again`);
    }
  } else {
    const r = f.raft;
    if (r === undefined) return [...reasons, 'no raft facts'];
    if (r.last_index_sealed !== null) reasons.push(`its Raft log (from ${r.log_first_index}) still holds entry ${r.last_index_sealed} sealed under it`);
    if (superseded !== undefined && r.snapshot_index < superseded.index) reasons.push(`its latest snapshot (${r.snapshot_index}) was taken before the rotation at ${superseded.index}`);
  }
  return reasons;
}

/**
 * The refusal for DEK `keyId` given every member's answer; undefined when
 * the DEK may be retired. Storage → ErrDEKStillReferenced, raft →
 * ErrRaftDEKWALStillReferences; the message names each member and reason.
 */
export function retireRefusal(keyId: number, purpose: Purpose, superseded: Superseded | undefined, members: readonly MemberFacts[]): SealError | undefined {
  const lines: string[] = [];
  if (superseded === undefined) lines.push(`no record of when DEK ${keyId} stopped being active (it was never replaced by a rotation)`);
  for (const m of members) {
    const reasons = memberReasons(keyId, purpose, superseded, m);
    if (reasons.length > 0) lines.push(`${m.node}: ${reasons.join(', ')}`);
  }
  if (lines.length === 0) return undefined;
  const code = purpose === 'storage' ? 'ErrDEKStillReferenced' : 'ErrRaftDEKWALStillReferences';
  return sealError(code, `retire-dek ${keyId} (${purpose}) refused: ${lines.join('; ')}`);
}

/** Per-member counts for a report: versions (storage) or the last sealed log index (raft). */
export function retireSummary(members: readonly MemberFacts[]): Record<string, unknown> {
  return Object.fromEntries(members.map((m) => [m.node, 'error' in m ? { error: m.error } : (m.facts.storage ?? m.facts.raft ?? {})]));
}

/** The facts an RPC answer carries (`node` names the member), checked; a malformed answer is an error for that member. */
export function parseRetireFacts(node: string, body: unknown): MemberFacts {
  const f = body as Partial<RetireFacts> | null;
  if (typeof f !== 'object' || f === null || typeof f.active !== 'object' || f.active === null || (f.storage === undefined && f.raft === undefined)) {
    return { node, error: 'malformed GetRetireFacts answer' };
  }
  return { node, facts: f as RetireFacts };
}
