// Proposal framing (SPEC §6): every normal entry a client proposes is
// 0x01 ‖ proposal_id(8 BE) ‖ payload, so the applier can hand the result to
// the proposer and drop a proposal Raft committed twice (a retried forward).

import { sealError } from '../../errors/index.js';

export const PROPOSAL_TAG = 0x01;
export const PROPOSAL_HEADER_BYTES = 9;
const MAX_U64 = (1n << 64n) - 1n;

export function encodeProposal(id: bigint, payload: Uint8Array): Uint8Array {
  if (id < 0n || id > MAX_U64) throw new RangeError('proposal id must fit in 64 unsigned bits');
  const out = new Uint8Array(PROPOSAL_HEADER_BYTES + payload.length);
  out[0] = PROPOSAL_TAG;
  new DataView(out.buffer).setBigUint64(1, id);
  out.set(payload, PROPOSAL_HEADER_BYTES);
  return out;
}

/** Splits a proposal; the payload is a view into `data` (no copy). */
export function decodeProposal(data: Uint8Array): { id: bigint; payload: Uint8Array } {
  if (data.length < PROPOSAL_HEADER_BYTES || data[0] !== PROPOSAL_TAG) {
    throw sealError('ErrRaftLogCorrupt', `entry is not a framed proposal (${data.length} bytes)`);
  }
  const id = new DataView(data.buffer, data.byteOffset, data.byteLength).getBigUint64(1);
  return { id, payload: data.subarray(PROPOSAL_HEADER_BYTES) };
}
