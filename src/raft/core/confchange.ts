// Wire form of a membership change inside a confChange entry:
// version(1) ‖ type(1) ‖ nodeId(8 BE) ‖ context.

import type { ConfChange, ConfChangeType } from './types.js';

const VERSION = 0x01;
const TYPES: ConfChangeType[] = ['addNode', 'addLearnerNode', 'removeNode'];

export function encodeConfChange(cc: ConfChange): Uint8Array {
  if (!Number.isSafeInteger(cc.nodeId) || cc.nodeId <= 0) throw new RangeError('conf change: nodeId must be a positive integer');
  const ctx = cc.context ?? new Uint8Array(0);
  const out = new Uint8Array(10 + ctx.length);
  out[0] = VERSION;
  out[1] = TYPES.indexOf(cc.type);
  new DataView(out.buffer).setBigUint64(2, BigInt(cc.nodeId));
  out.set(ctx, 10);
  return out;
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  if (data.length < 10 || data[0] !== VERSION) throw new RangeError('conf change: bad encoding');
  const type = TYPES[data[1]!];
  if (type === undefined) throw new RangeError(`conf change: unknown type ${data[1]}`);
  const nodeId = Number(new DataView(data.buffer, data.byteOffset, data.byteLength).getBigUint64(2));
  const cc: ConfChange = { type, nodeId };
  if (data.length > 10) cc.context = data.slice(10);
  return cc;
}
