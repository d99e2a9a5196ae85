// In-memory model of the store as the state machine sees it (src/fsm/ports.ts),
// plus a tiny deterministic request executor, for state-machine tests that
// must not depend on RocksDB or the request model.

import { packValue, unpackValue } from '../../src/fsm/index.js';
import type { KvRangeReader } from '../../src/kv/index.js';
import type { FsmStore, FsmStoreOp, KvReader, KvWrite, RequestExecutor, VisibleValue } from '../../src/fsm/index.js';

interface Version {
  commitTs: bigint;
  value: Buffer | null;
  expireAt: number;
}

export class MemoryFsmStore implements FsmStore {
  #applied = 0;
  // key hex → versions, newest first.
  #versions = new Map<string, Version[]>();
  #internal = new Map<string, Buffer>();
  batches = 0;
  /** When set, the next applyBatch throws this (then clears it). */
  failNextBatch: Error | undefined;

  async appliedIndex(): Promise<number> {
    return this.#applied;
  }

  async getLatest(key: Buffer, nowMs: number): Promise<VisibleValue | undefined> {
    const newest = this.#versions.get(key.toString('hex'))?.[0];
    if (newest === undefined || newest.value === null) return undefined;
    if (newest.expireAt !== 0 && newest.expireAt <= nowMs) return undefined;
    return { value: Buffer.from(newest.value), expireAt: newest.expireAt };
  }

  async getInternal(key: Buffer): Promise<Buffer | undefined> {
    const row = this.#internal.get(key.toString('hex'));
    return row === undefined ? undefined : Buffer.from(row);
  }

  async *scanInternal(prefix: Buffer): AsyncIterable<[Buffer, Buffer]> {
    const keys = [...this.#internal.keys()].filter((hex) => hex.startsWith(prefix.toString('hex'))).sort();
    for (const hex of keys) yield [Buffer.from(hex, 'hex'), Buffer.from(this.#internal.get(hex) as Buffer)];
  }

  async applyBatch(ops: readonly FsmStoreOp[], options: { appliedIndex: number }): Promise<void> {
    if (this.failNextBatch) {
      const err = this.failNextBatch;
      this.failNextBatch = undefined;
      throw err;
    }
    for (const op of ops) {
      const hex = op.key.toString('hex');
      if (op.kind === 'internal-put') this.#internal.set(hex, Buffer.from(op.value));
      else if (op.kind === 'internal-delete') this.#internal.delete(hex);
      else {
        const versions = this.#versions.get(hex) ?? [];
        const version: Version = {
          commitTs: op.commitTs,
          value: op.kind === 'put' ? Buffer.from(op.value) : null,
          expireAt: op.kind === 'put' ? op.expireAt : 0,
        };
        const at = versions.findIndex((v) => v.commitTs <= op.commitTs);
        if (at >= 0 && versions[at]?.commitTs === op.commitTs) versions[at] = version;
        else if (at < 0) versions.push(version);
        else versions.splice(at, 0, version);
        this.#versions.set(hex, versions);
      }
    }
    this.#applied = options.appliedIndex;
    this.batches += 1;
  }

  async *snapshotStream(header: { ceiling: bigint }): AsyncIterable<Uint8Array> {
    yield packValue({ ceiling: header.ceiling, applied: this.#applied });
    for (const [hex, versions] of this.#versions) {
      yield packValue(['v', hex, versions.map((v) => [v.commitTs, v.value, v.expireAt])]);
    }
    for (const [hex, row] of this.#internal) yield packValue(['i', hex, row]);
  }

  async restoreSnapshot(stream: AsyncIterable<Uint8Array>, options: { appliedIndex?: number }): Promise<{ ceiling: bigint }> {
    let ceiling = 0n;
    let applied = 0;
    let first = true;
    this.#versions = new Map();
    this.#internal = new Map();
    for await (const chunk of stream) {
      const item = unpackValue(chunk) as unknown;
      if (first) {
        ({ ceiling, applied } = item as { ceiling: bigint; applied: number });
        first = false;
        continue;
      }
      const [kind, hex, body] = item as [string, string, unknown];
      if (kind === 'i') this.#internal.set(hex, body as Buffer);
      else {
        const versions = (body as [bigint, Buffer | null, number][]).map(([commitTs, value, expireAt]) => ({
          commitTs: BigInt(commitTs),
          value,
          expireAt,
        }));
        this.#versions.set(hex, versions);
      }
    }
    if (options.appliedIndex !== undefined && options.appliedIndex !== applied) throw new Error('snapshot index mismatch');
    this.#applied = applied;
    return { ceiling };
  }

  /** The read path's view (src/kv KvRangeReader): newest versions, live keys in byte order. */
  rangeReader(): KvRangeReader {
    return {
      get: (key) => this.getLatest(key, 0),
      scan: async (after, limit) => {
        const live = [...this.#versions.entries()]
          .filter(([hex, versions]) => versions[0]?.value != null && (after === null || hex > after.toString('hex')))
          .map(([hex]) => hex)
          .sort()
          .slice(0, limit);
        return live.map((hex) => {
          const newest = this.#versions.get(hex)![0]!;
          return { key: Buffer.from(hex, 'hex'), value: { value: Buffer.from(newest.value!), expireAt: newest.expireAt } };
        });
      },
    };
  }

  /** Canonical dump of every version and internal row, for replica comparison. */
  dump(): string {
    const lines: string[] = [`applied=${this.#applied}`];
    for (const hex of [...this.#versions.keys()].sort()) {
      for (const v of this.#versions.get(hex) ?? []) {
        lines.push(`v ${hex} ${v.commitTs} ${v.value === null ? '<tomb>' : v.value.toString('hex')} ${v.expireAt}`);
      }
    }
    for (const hex of [...this.#internal.keys()].sort()) lines.push(`i ${hex} ${this.#internal.get(hex)?.toString('hex')}`);
    return lines.join('\n');
  }
}

/** Requests understood by `TinyExecutor`. */
export type TinyRequest =
  | { op: 'set'; key: string; value: string; px?: number }
  | { op: 'del'; key: string }
  | { op: 'incr'; key: string }
  | { op: 'append'; key: string; value: string };

/** A deterministic executor over string keys: SET [PX], DEL, INCR, APPEND. */
export class TinyExecutor implements RequestExecutor {
  async execute(reader: KvReader, requests: readonly unknown[], nowMs: number): Promise<{ writes: KvWrite[]; results: unknown[] }> {
    const writes: KvWrite[] = [];
    const results: unknown[] = [];
    // Read-your-writes inside one entry.
    const local = new Map<string, VisibleValue | null>();
    const read = async (key: string): Promise<VisibleValue | undefined> => {
      const hit = local.get(key);
      if (hit !== undefined) return hit ?? undefined;
      return reader.get(Buffer.from(key));
    };
    const put = (key: string, value: Buffer, expireAt: number): void => {
      writes.push({ kind: 'put', key: Buffer.from(key), value, expireAt });
      local.set(key, { value, expireAt });
    };
    for (const raw of requests) {
      const req = raw as TinyRequest;
      switch (req.op) {
        case 'set':
          put(req.key, Buffer.from(req.value), req.px === undefined ? 0 : nowMs + req.px);
          results.push('OK');
          break;
        case 'del': {
          const existed = (await read(req.key)) !== undefined;
          if (existed) {
            writes.push({ kind: 'delete', key: Buffer.from(req.key) });
            local.set(req.key, null);
          }
          results.push(existed ? 1 : 0);
          break;
        }
        case 'incr': {
          const current = await read(req.key);
          const n = current === undefined ? 0 : Number(current.value.toString());
          if (!Number.isInteger(n)) {
            results.push({ error: 'ERR value is not an integer' });
            break;
          }
          put(req.key, Buffer.from(String(n + 1)), current?.expireAt ?? 0);
          results.push(n + 1);
          break;
        }
        case 'append': {
          const current = await read(req.key);
          const value = Buffer.concat([current?.value ?? Buffer.alloc(0), Buffer.from(req.value)]);
          put(req.key, value, current?.expireAt ?? 0);
          results.push(value.length);
          break;
        }
        default:
          throw new TypeError(`unknown tiny request ${JSON.stringify(raw)}`);
      }
    }
    return { writes, results };
  }
}
