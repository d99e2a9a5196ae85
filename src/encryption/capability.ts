// Capability (SPEC §8.1, §8.2): every node serves `GetCapability`, and
// before a rollout step the leader polls every member — voters and
// learners — fresh, all within one election timeout. Any member that does
// not answer, answers something malformed or out of range, answers as
// another node, or is not encryption capable fails the whole check with one
// ErrCapabilityCheckFailed that names every failing node and why.
//
// The reply is checked on the receiving side: `local_epoch` above 0xFFFF
// (or not a non-negative integer) is ErrLocalEpochOutOfRange (SPEC §8.1).
// Fields this build does not know are ignored, so a newer node's reply
// still decodes during a rolling upgrade.

import { isSealError, sealError } from '../errors/index.js';

/** What `GetCapability` answers. */
export interface Capability {
  /** The node runs with `--encryption-enabled` (it declares capability; it does not start encrypting). */
  encryption_capable: boolean;
  build: string;
  /** The node has an encryption sidecar (`keys.json`). */
  sidecar_present: boolean;
  /** The node's `--raft-id`. */
  full_node_id: string;
  /** The node's current local epoch (0..0xFFFF). */
  local_epoch: number;
}

export const CAPABILITY_METHOD = 'GetCapability';

/** A member to poll: its Raft numeric id, its name (its `--raft-id`), and where to reach it when known. */
export interface CapabilityMember {
  id: number;
  name: string;
  addr?: string;
  /**
   * Numeric id of a `--raft-id`: when given, a reply matches the member if
   * `idOf(full_node_id) === id` (members whose `--raft-id` the poller does
   * not know, such as learners added later).
   */
  idOf?: (fullNodeId: string) => number;
}

/** One member that failed the check, as carried in the error's `cause`. */
export interface CapabilityFailure {
  id: number;
  name: string;
  reason: string;
}

const MAX_EPOCH = 0xffff;
const MAX_TEXT = 256;

/**
 * Checks a `GetCapability` reply from node `from`. Malformed →
 * ErrCapabilityCheckFailed; `local_epoch` not an integer in 0..0xFFFF →
 * ErrLocalEpochOutOfRange. Both name the node.
 */
export function decodeCapability(raw: unknown, from: string): Capability {
  const r = checkCapability(raw);
  if ('cap' in r) return r.cap;
  throw sealError(r.code, `${from}: ${r.why}`);
}

type Checked = { cap: Capability } | { code: 'ErrCapabilityCheckFailed' | 'ErrLocalEpochOutOfRange'; why: string };

function checkCapability(raw: unknown): Checked {
  const bad = (why: string): Checked => ({ code: 'ErrCapabilityCheckFailed', why: `malformed capability: ${why}` });
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw) || raw instanceof Uint8Array) return bad('not a map');
  const r = raw as Record<string, unknown>;
  for (const f of ['encryption_capable', 'sidecar_present'] as const) {
    if (typeof r[f] !== 'boolean') return bad(`${f} is not a boolean`);
  }
  for (const f of ['build', 'full_node_id'] as const) {
    const v = r[f];
    if (typeof v !== 'string' || v.length > MAX_TEXT || (f === 'full_node_id' && v.length === 0)) {
      return bad(`${f} is not a string of ${f === 'build' ? 0 : 1}..${MAX_TEXT} characters`);
    }
  }
  const epoch = r.local_epoch;
  if (typeof epoch !== 'number' && typeof epoch !== 'bigint') return bad('local_epoch is not a number');
  if (typeof epoch === 'bigint' || !Number.isInteger(epoch) || epoch < 0 || epoch > MAX_EPOCH) {
    return { code: 'ErrLocalEpochOutOfRange', why: `local_epoch ${String(epoch)} is not an integer in 0..0xFFFF` };
  }
  return {
    cap: {
      encryption_capable: r.encryption_capable as boolean,
      build: r.build as string,
      sidecar_present: r.sidecar_present as boolean,
      full_node_id: r.full_node_id as string,
      local_epoch: epoch,
    },
  };
}

/**
 * Polls every member concurrently through `call` (which does the
 * `GetCapability` RPC; it gets the time budget to pass on), with no caching,
 * and settles within `timeoutMs` (one election timeout) whatever the calls
 * do. Resolves with every member's capability by id when all are good;
 * otherwise rejects with one ErrCapabilityCheckFailed naming each failing
 * member and why (`n3: unreachable (...); n4: not encryption capable`),
 * with the failures as a CapabilityFailure[] in its `cause`.
 */
export async function pollCapabilities(
  call: (member: CapabilityMember, timeoutMs: number) => Promise<unknown>,
  members: readonly CapabilityMember[],
  timeoutMs: number,
): Promise<Map<number, Capability>> {
  if (!(timeoutMs > 0)) throw new RangeError(`capability poll timeout must be positive, got ${timeoutMs}`);
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<{ late: true }>((resolve) => {
    timer = setTimeout(() => resolve({ late: true }), timeoutMs);
  });
  const one = async (m: CapabilityMember): Promise<Capability | string> => {
    const answer = Promise.resolve()
      .then(() => call(m, timeoutMs))
      .then(
        (raw) => ({ raw }),
        (error: unknown) => ({ error }),
      );
    const got = await Promise.race([answer, expired]);
    if ('late' in got) return `no answer within ${timeoutMs} ms`;
    if ('error' in got) {
      const e = got.error;
      const message = e instanceof Error ? e.message : String(e);
      return isSealError(e, 'ErrTimeout') ? `unreachable (${message.slice('ErrTimeout: '.length)})` : `capability call failed (${message})`;
    }
    const checked = checkCapability(got.raw);
    if (!('cap' in checked)) return checked.code === 'ErrLocalEpochOutOfRange' ? `${checked.code}: ${checked.why}` : checked.why;
    const cap = checked.cap;
    if (m.idOf !== undefined ? m.idOf(cap.full_node_id) !== m.id : cap.full_node_id !== m.name) return `answers as "${cap.full_node_id}", not "${m.name}"`;
    if (!cap.encryption_capable) return 'not encryption capable';
    return cap;
  };
  let results: (Capability | string)[];
  try {
    results = await Promise.all(members.map(one));
  } finally {
    clearTimeout(timer);
  }
  const caps = new Map<number, Capability>();
  const failures: CapabilityFailure[] = [];
  members.forEach((m, i) => {
    const r = results[i]!;
    if (typeof r === 'string') failures.push({ id: m.id, name: m.name, reason: r });
    else caps.set(m.id, r);
  });
  if (failures.length > 0) {
    const list = failures.map((f) => `${f.name}: ${f.reason}`).join('; ');
    throw sealError('ErrCapabilityCheckFailed', `${failures.length} of ${members.length} members failed the capability check: ${list}`, failures);
  }
  return caps;
}
