// A trivial key-value state machine for driver and cluster tests: payloads
// are JSON {k, v}; state and applied index live in an append-only JSON-lines
// file written with each apply (it survives SIGKILL through the page cache;
// the tests do not cut power). Snapshots are the whole map as JSON.

import fs from 'node:fs';
import path from 'node:path';
import type { ApplyEntry, StateMachine } from '../../../src/raft/index.js';

export class KvStateMachine implements StateMachine {
  readonly data = new Map<string, string>();
  private applied = 0;
  private readonly file: string;
  /** Every index handed to apply(), in order (tests check no entry is applied twice). */
  readonly appliedLog: number[] = [];

  constructor(dir: string) {
    fs.mkdirSync(dir, { recursive: true });
    this.file = path.join(dir, 'kv.jsonl');
    if (!fs.existsSync(this.file)) return;
    for (const line of fs.readFileSync(this.file, 'utf8').split('\n')) {
      if (line === '') continue;
      let rec: { i: number; k?: string; v?: string; all?: [string, string][] };
      try {
        rec = JSON.parse(line) as typeof rec;
      } catch {
        break; // a line cut by a kill: it was never reported applied
      }
      if (rec.all !== undefined) {
        this.data.clear();
        for (const [k, v] of rec.all) this.data.set(k, v);
      } else {
        this.data.set(rec.k!, rec.v!);
      }
      this.applied = rec.i;
    }
  }

  appliedIndex(): number {
    return this.applied;
  }

  apply(entries: ApplyEntry[]): unknown[] {
    let lines = '';
    const results: unknown[] = [];
    for (const e of entries) {
      if (e.index <= this.applied) throw new Error(`entry ${e.index} applied twice (applied ${this.applied})`);
      const { k, v } = JSON.parse(Buffer.from(e.payload).toString('utf8')) as { k: string; v: string };
      this.data.set(k, v);
      this.applied = e.index;
      this.appliedLog.push(e.index);
      lines += JSON.stringify({ i: e.index, k, v }) + '\n';
      results.push(e.index);
    }
    fs.appendFileSync(this.file, lines);
    return results;
  }

  async *snapshot(): AsyncIterable<Uint8Array> {
    const body = Buffer.from(JSON.stringify({ i: this.applied, all: [...this.data] }));
    for (let off = 0; off < body.length; off += 64 * 1024) yield body.subarray(off, off + 64 * 1024);
  }

  async restore(stream: AsyncIterable<Uint8Array>): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(Buffer.from(c));
    const text = Buffer.concat(chunks).toString('utf8');
    const rec = JSON.parse(text) as { i: number; all: [string, string][] };
    const tmp = `${this.file}.tmp`;
    fs.writeFileSync(tmp, text + '\n');
    fs.renameSync(tmp, this.file);
    this.data.clear();
    for (const [k, v] of rec.all) this.data.set(k, v);
    this.applied = rec.i;
  }
}

export function kvPayload(k: string, v: string): Uint8Array {
  return Buffer.from(JSON.stringify({ k, v }));
}
