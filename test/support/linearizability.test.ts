import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../src/raft/index.js';
import { checkKvHistory, checkOperations, type KvOperation, type Model } from './linearizability.js';

const put = (key: string, value: string, call: number, ret: number): KvOperation => ({
  input: { kind: 'put', key, value },
  output: ret === Infinity ? undefined : null,
  call,
  ret,
});
const del = (key: string, call: number, ret: number): KvOperation => ({ input: { kind: 'delete', key }, output: null, call, ret });
const get = (key: string, output: string | null, call: number, ret: number): KvOperation => ({
  input: { kind: 'get', key },
  output,
  call,
  ret,
});

describe('linearizability checker (KV histories)', () => {
  it('accepts an empty history and a sequential one', () => {
    expect(checkKvHistory([]).result).toBe('ok');
    expect(checkKvHistory([put('a', '1', 1, 2), get('a', '1', 3, 4), del('a', 5, 6), get('a', null, 7, 8)]).result).toBe('ok');
  });

  it('rejects a read of a value never written', () => {
    expect(checkKvHistory([put('a', '1', 1, 2), get('a', '2', 3, 4)]).result).toBe('illegal');
  });

  it('rejects a stale read after a completed write', () => {
    const r = checkKvHistory([put('a', '1', 1, 2), put('a', '2', 3, 4), get('a', '1', 5, 6)]);
    expect(r.result).toBe('illegal');
    expect(r.key).toBe('a');
  });

  it('accepts either value for a read concurrent with a write', () => {
    expect(checkKvHistory([put('a', '1', 1, 2), put('a', '2', 3, 6), get('a', '1', 4, 5)]).result).toBe('ok');
    expect(checkKvHistory([put('a', '1', 1, 2), put('a', '2', 3, 6), get('a', '2', 4, 5)]).result).toBe('ok');
  });

  it('rejects reads that go back in time (new value seen, then old value by a later read)', () => {
    // The write spans both reads, but the second read starts after the
    // first returned: once a read saw '2', no later read may see '1'.
    const h = [put('a', '1', 1, 2), put('a', '2', 3, 20), get('a', '2', 4, 5), get('a', '1', 6, 7)];
    expect(checkKvHistory(h).result).toBe('illegal');
  });

  it('lets an unknown-outcome write take effect late or never', () => {
    expect(checkKvHistory([put('a', '1', 1, 2), put('a', '2', 3, Infinity), get('a', '1', 10, 11)]).result).toBe('ok');
    expect(checkKvHistory([put('a', '1', 1, 2), put('a', '2', 3, Infinity), get('a', '2', 10, 11)]).result).toBe('ok');
    // ...but once observed it cannot be undone
    expect(
      checkKvHistory([put('a', '1', 1, 2), put('a', '2', 3, Infinity), get('a', '2', 10, 11), get('a', '1', 12, 13)]).result,
    ).toBe('illegal');
  });

  it('rejects a read of a value whose write started after the read returned', () => {
    expect(checkKvHistory([get('a', '1', 1, 2), put('a', '1', 3, 4)]).result).toBe('illegal');
  });

  it('checks keys independently', () => {
    const h = [put('a', '1', 1, 10), put('b', '1', 2, 3), get('b', '1', 4, 5), get('a', null, 6, 7), get('a', '1', 11, 12)];
    expect(checkKvHistory(h).result).toBe('ok');
    expect(checkKvHistory([...h, get('b', null, 13, 14)]).result).toBe('illegal');
  });

  it('accepts random histories produced by a real atomic register (property)', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const r = seededRandom(seed);
      // Operations take effect at a random instant inside [call, ret].
      const values = new Map<string, string | null>();
      const events: { at: number; op: KvOperation }[] = [];
      for (let i = 0; i < 40; i++) {
        const key = `k${Math.floor(r() * 2)}`;
        const call = Math.floor(r() * 1000);
        const at = call + 1 + Math.floor(r() * 50);
        const ret = r() < 0.1 ? Infinity : at + 1 + Math.floor(r() * 50);
        const kind = r();
        const op = kind < 0.4 ? put(key, `v${i}`, call, ret) : kind < 0.5 ? del(key, call, ret) : get(key, null, call, ret);
        events.push({ at, op });
      }
      events.sort((a, b) => a.at - b.at);
      const history: KvOperation[] = [];
      for (const { op } of events) {
        const inp = op.input;
        if (inp.kind === 'get') {
          if (op.ret === Infinity) continue; // a read without an answer is not in a history
          op.output = values.get(inp.key) ?? null;
        } else {
          values.set(inp.key, inp.kind === 'put' ? inp.value : null);
        }
        history.push(op);
      }
      expect(checkKvHistory(history).result, `seed ${seed}`).toBe('ok');
    }
  });

  it('gives up with "timeout" past its step budget', () => {
    const model: Model<number, number, number> = {
      init: () => 0,
      step: (s, inp, out) => (out === undefined || out === s + inp ? s + inp : undefined),
      key: (s) => String(s),
    };
    const ops = Array.from({ length: 12 }, (_, i) => ({ input: 1, output: i === 11 ? 99 : undefined, call: 0, ret: 100 }));
    expect(checkOperations(model, ops, 50)).toBe('timeout');
    expect(checkOperations(model, ops)).toBe('illegal');
  });
});
