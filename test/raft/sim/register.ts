// The simulator's state machine: a map of registers keyed by string, applied
// from framed proposals, deduplicating proposal ids (Raft may commit the same
// proposal twice when a forward is retried).

export type RegisterOp = { op: 'put'; key: string; value: string } | { op: 'delete'; key: string };

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeRegisterOp(op: RegisterOp): Uint8Array {
  return enc.encode(JSON.stringify(op));
}

export function decodeRegisterOp(b: Uint8Array): RegisterOp {
  return JSON.parse(dec.decode(b)) as RegisterOp;
}

export class RegisterMachine {
  readonly values = new Map<string, string>();
  /** Proposal ids already applied. */
  readonly seen = new Set<bigint>();

  /** Applies a proposal once; false when the id was already applied (a duplicate). */
  apply(id: bigint, payload: Uint8Array): boolean {
    if (this.seen.has(id)) return false;
    this.seen.add(id);
    const op = decodeRegisterOp(payload);
    if (op.op === 'put') this.values.set(op.key, op.value);
    else this.values.delete(op.key);
    return true;
  }

  get(key: string): string | undefined {
    return this.values.get(key);
  }

  clone(): RegisterMachine {
    const c = new RegisterMachine();
    for (const [k, v] of this.values) c.values.set(k, v);
    for (const id of this.seen) c.seen.add(id);
    return c;
  }

  equals(o: RegisterMachine): boolean {
    if (this.values.size !== o.values.size || this.seen.size !== o.seen.size) return false;
    for (const [k, v] of this.values) if (o.values.get(k) !== v) return false;
    for (const id of this.seen) if (!o.seen.has(id)) return false;
    return true;
  }
}
