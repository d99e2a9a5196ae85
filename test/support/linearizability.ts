// Linearizability checker for key-value histories (test code).
//
// Algorithm: Wing & Gong's search as improved by Lowe ("Testing for
// linearizability", 2017) and used by Porcupine: the history is a doubly
// linked list of call and return events in real-time order; the search
// linearizes (lifts out) an operation whose call is reached if the model
// accepts it, backtracks at a return whose operation is not linearized yet,
// and memoizes (set of linearized operations, model state) pairs already
// explored — the pruning that makes it practical. Linearizability is local
// (Herlihy & Wing), so a KV history is checked one key at a time.
//
// Operations whose outcome is unknown (timed out, connection lost) have
// `ret: Infinity`: they may take effect at any point after their call, or
// never (placed after every known event, a write changes nothing observed).

export interface Model<S, I, O> {
  init(): S;
  /** The state after applying `input` with observed `output`, or undefined when that output is impossible. */
  step(state: S, input: I, output: O | undefined): S | undefined;
  /** Key of a state for memoization (equal states, equal keys). */
  key(state: S): string;
}

export interface Operation<I, O> {
  input: I;
  /** undefined when the outcome is unknown. */
  output: O | undefined;
  call: number;
  /** Infinity when the outcome is unknown. */
  ret: number;
}

export type CheckResult = 'ok' | 'illegal' | 'timeout';

interface Node {
  op: number; // index into ops; -1 for the head sentinel
  isCall: boolean;
  match: Node | undefined; // call -> its return
  prev: Node | undefined;
  next: Node | undefined;
}

function buildList<I, O>(ops: Operation<I, O>[]): Node {
  const events: { time: number; isCall: boolean; op: number }[] = [];
  ops.forEach((o, i) => {
    if (!(o.ret >= o.call)) throw new RangeError(`operation ${i}: returns before its call`);
    events.push({ time: o.call, isCall: true, op: i }, { time: o.ret, isCall: false, op: i });
  });
  // At equal times calls come first: the operations then overlap, the
  // permissive reading of a clock tie.
  events.sort((a, b) => a.time - b.time || (a.isCall === b.isCall ? 0 : a.isCall ? -1 : 1));
  const head: Node = { op: -1, isCall: false, match: undefined, prev: undefined, next: undefined };
  const returns = new Map<number, Node>();
  let tail = head;
  const nodes: Node[] = [];
  for (const ev of events) {
    const n: Node = { op: ev.op, isCall: ev.isCall, match: undefined, prev: tail, next: undefined };
    tail.next = n;
    tail = n;
    nodes.push(n);
    if (!ev.isCall) returns.set(ev.op, n);
  }
  for (const n of nodes) if (n.isCall) n.match = returns.get(n.op);
  return head;
}

function lift(call: Node): void {
  call.prev!.next = call.next;
  if (call.next) call.next.prev = call.prev;
  const ret = call.match!;
  ret.prev!.next = ret.next;
  if (ret.next) ret.next.prev = ret.prev;
}

function unlift(call: Node): void {
  const ret = call.match!;
  ret.prev!.next = ret;
  if (ret.next) ret.next.prev = ret;
  call.prev!.next = call;
  if (call.next) call.next.prev = call;
}

/**
 * The set of linearized operations: a bitset with a Zobrist hash (XOR of a
 * fixed random 64-bit value per operation) kept up to date in O(1), so the
 * memo costs O(1) per step plus a bitset copy per new entry.
 */
class OpSet {
  readonly bits: Uint32Array;
  h1 = 0;
  h2 = 0;
  private readonly z1: Uint32Array;
  private readonly z2: Uint32Array;

  constructor(n: number) {
    this.bits = new Uint32Array((n + 31) >>> 5);
    this.z1 = new Uint32Array(n);
    this.z2 = new Uint32Array(n);
    let s = 0x9e3779b9;
    const next = (): number => {
      s = (s + 0x9e3779b9) | 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    for (let i = 0; i < n; i++) {
      this.z1[i] = next();
      this.z2[i] = next();
    }
  }

  flip(i: number): void {
    this.bits[i >>> 5]! ^= 1 << (i & 31);
    this.h1 = (this.h1 ^ this.z1[i]!) >>> 0;
    this.h2 = (this.h2 ^ this.z2[i]!) >>> 0;
  }

  equals(other: Uint32Array): boolean {
    for (let i = 0; i < other.length; i++) if (this.bits[i] !== other[i]) return false;
    return true;
  }
}

/** Checks one partition (e.g. one key) of a history against a sequential model. */
export function checkOperations<S, I, O>(
  model: Model<S, I, O>,
  ops: Operation<I, O>[],
  maxSteps = 5_000_000,
): CheckResult {
  const head = buildList(ops);
  const linearized = new OpSet(ops.length);
  // (hash of the linearized set, state) -> the exact sets seen with it
  const seen = new Map<string, Uint32Array[]>();
  const calls: { node: Node; state: S }[] = [];
  let state = model.init();
  let entry = head.next;
  let steps = 0;
  while (head.next !== undefined) {
    if (++steps > maxSteps) return 'timeout';
    const e = entry!;
    if (e.isCall) {
      const o = ops[e.op]!;
      const next = model.step(state, o.input, o.output);
      if (next !== undefined) {
        linearized.flip(e.op);
        const memo = `${linearized.h1}:${linearized.h2}|${model.key(next)}`;
        let sets = seen.get(memo);
        if (sets === undefined || !sets.some((b) => linearized.equals(b))) {
          if (sets === undefined) seen.set(memo, (sets = []));
          sets.push(linearized.bits.slice());
          calls.push({ node: e, state });
          state = next;
          lift(e);
          entry = head.next;
          continue;
        }
        linearized.flip(e.op);
      }
      entry = e.next;
    } else {
      // A return whose operation is not linearized yet: undo the last choice.
      const top = calls.pop();
      if (top === undefined) return 'illegal';
      state = top.state;
      linearized.flip(top.node.op);
      unlift(top.node);
      entry = top.node.next;
    }
  }
  return 'ok';
}

// ---- key-value histories --------------------------------------------------

export type KvInput = { kind: 'get'; key: string } | { kind: 'put'; key: string; value: string } | { kind: 'delete'; key: string };

/** A get's output is the value read, or null when the key was absent; writes output null. */
export type KvOutput = string | null;

export interface KvOperation extends Operation<KvInput, KvOutput> {
  /** Caller's label, reported with a failure. */
  client?: number;
}

/** One key's register: state is the value, or null when absent. */
const registerModel: Model<string | null, KvInput, KvOutput> = {
  init: () => null,
  step(state, input, output) {
    switch (input.kind) {
      case 'get':
        // An unknown read outcome constrains nothing.
        return output === undefined || output === state ? state : undefined;
      case 'put':
        return input.value;
      case 'delete':
        return null;
    }
  },
  key: (s) => (s === null ? '\u0000' : `=${s}`),
};

export interface KvCheckResult {
  result: CheckResult;
  /** The first key whose history is not linearizable (or timed out). */
  key?: string;
  ops?: KvOperation[];
}

/** Checks a key-value history key by key. */
export function checkKvHistory(history: KvOperation[], maxStepsPerKey?: number): KvCheckResult {
  const byKey = new Map<string, KvOperation[]>();
  for (const op of history) {
    let list = byKey.get(op.input.key);
    if (list === undefined) byKey.set(op.input.key, (list = []));
    list.push(op);
  }
  let timedOut: KvCheckResult | undefined;
  for (const [key, ops] of byKey) {
    const r = checkOperations(registerModel, ops, maxStepsPerKey);
    if (r === 'illegal') return { result: 'illegal', key, ops };
    if (r === 'timeout' && timedOut === undefined) timedOut = { result: 'timeout', key, ops };
  }
  return timedOut ?? { result: 'ok' };
}

/** Renders a failing history for a test message, one operation a line in call order. */
export function describeKvHistory(ops: KvOperation[]): string {
  return [...ops]
    .sort((a, b) => a.call - b.call)
    .map((o) => {
      const what = o.input.kind === 'put' ? `put(${o.input.key}, ${o.input.value})` : `${o.input.kind}(${o.input.key})`;
      const out = o.output === undefined ? '?' : JSON.stringify(o.output);
      const ret = o.ret === Infinity ? '∞' : String(o.ret);
      return `  [${o.call}, ${ret}] ${o.client === undefined ? '' : `c${o.client} `}${what} -> ${out}`;
    })
    .join('\n');
}
