// Scripted interaction tests with golden output (after etcd's rafttest
// "interaction env"). A script is a list of commands, each followed by
// `----` and the output it must produce:
//
//   propose 1 hello
//   ----
//   ok
//
// `stabilize` prints every Ready handled and every message delivered, so a
// script shows the protocol's exchanges step by step. RAFT_GOLDEN_REWRITE=1
// rewrites the expected output from the actual one (review the diff!).

import {
  MemoryStorage,
  RawNode,
  decodeConfChange,
  describeEntry,
  describeMessage,
  seededRandInt,
  type ConfChangeType,
  type Entry,
  type Message,
  type NodeId,
  type Ready,
} from '../../../src/raft/index.js';

const dec = new TextDecoder();
const show = (e: Entry): string => describeEntry(e, { payloads: true });
const showMsg = (m: Message): string => describeMessage(m, { payloads: true });

function describeReady(rd: Ready): string[] {
  const out = [`Ready MustSync=${rd.mustSync}:`];
  if (rd.softState) out.push(`Lead:${rd.softState.lead} State:${rd.softState.role}`);
  if (rd.hardState) out.push(`HardState Term:${rd.hardState.term} Vote:${rd.hardState.vote} Commit:${rd.hardState.commit}`);
  if (rd.snapshot) out.push(`Snapshot Index:${rd.snapshot.index} Term:${rd.snapshot.term}`);
  if (rd.entries.length > 0) out.push('Entries:', ...rd.entries.map(show));
  if (rd.committedEntries.length > 0) out.push('CommittedEntries:', ...rd.committedEntries.map(show));
  if (rd.messages.length > 0) out.push('Messages:', ...rd.messages.map(showMsg));
  for (const rs of rd.readStates) out.push(`ReadState Index:${rs.index} Ctx:${JSON.stringify(dec.decode(rs.requestCtx))}`);
  return out;
}

interface EnvNode {
  rn: RawNode;
  storage: MemoryStorage;
}

/** Parses `k=v` and `k=(a,b)` arguments. */
function kv(args: string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const a of args) {
    const i = a.indexOf('=');
    if (i > 0) m.set(a.slice(0, i), a.slice(i + 1));
  }
  return m;
}

function ids(v: string | undefined): NodeId[] {
  if (v === undefined) return [];
  return v
    .replace(/[()]/g, '')
    .split(',')
    .filter((x) => x !== '')
    .map(Number);
}

export class InteractionEnv {
  private readonly nodes = new Map<NodeId, EnvNode>();
  private queue: Message[] = [];
  private isolated = new Set<NodeId>();
  private config = { preVote: true, checkQuorum: true };

  private node(id: NodeId): EnvNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }

  private newNode(id: NodeId, storage: MemoryStorage): void {
    const rn = new RawNode({ id, storage, electionTick: 10, heartbeatTick: 1, rand: seededRandInt(id), ...this.config });
    this.nodes.set(id, { rn, storage });
  }

  /** Runs one command; returns its output lines. */
  run(cmd: string, args: string[]): string[] {
    const n = (i: number): number => Number(args[i]);
    switch (cmd) {
      case 'add-nodes': {
        const opts = kv(args.slice(1));
        const voters = opts.has('voters') ? ids(opts.get('voters')) : Array.from({ length: n(0) }, (_, i) => i + 1);
        const learners = ids(opts.get('learners'));
        this.config = { preVote: opts.get('prevote') !== 'false', checkQuorum: opts.get('checkquorum') !== 'false' };
        for (const id of [...voters, ...learners]) this.newNode(id, MemoryStorage.bootstrap({ voters, learners }));
        return ['ok'];
      }
      case 'add-node':
        this.newNode(n(0), new MemoryStorage());
        return ['ok'];
      case 'campaign':
        this.node(n(0)).rn.campaign();
        return ['ok'];
      case 'propose':
        return this.attempt(() => this.node(n(0)).rn.propose(new TextEncoder().encode(args[1] ?? '')));
      case 'propose-conf-change':
        return this.attempt(() =>
          this.node(n(0)).rn.proposeConfChange({ type: args[1] as ConfChangeType, nodeId: n(2) }),
        );
      case 'read-index':
        return this.attempt(() => this.node(n(0)).rn.readIndex(new TextEncoder().encode(args[1] ?? '')));
      case 'transfer-leader':
        this.node(n(0)).rn.transferLeader(n(1));
        return ['ok'];
      case 'tick': {
        const times = args[1] === undefined ? 1 : n(1);
        for (let i = 0; i < times; i++) this.node(n(0)).rn.tick();
        return ['ok'];
      }
      case 'isolate':
        this.isolated.add(n(0));
        return ['ok'];
      case 'heal':
        this.isolated.clear();
        return ['ok'];
      case 'compact': {
        const node = this.node(n(0));
        const applied = node.rn.status().applied;
        node.storage.createSnapshot(applied, node.rn.confState());
        node.storage.compact(applied);
        return [`compacted to ${applied}`];
      }
      case 'stabilize':
        return this.stabilize();
      case 'status':
        return this.status(n(0));
      case 'raft-log': {
        const s = this.node(n(0)).storage;
        const ents = s.lastIndex() >= s.firstIndex() ? s.entries(s.firstIndex(), s.lastIndex() + 1, Infinity) : [];
        return ents.length === 0 ? [`(empty, snapshot at ${s.firstIndex() - 1})`] : ents.map(show);
      }
      default:
        throw new Error(`unknown command ${cmd}`);
    }
  }

  private attempt(f: () => void): string[] {
    try {
      f();
      return ['ok'];
    } catch (err) {
      return [`error: ${(err as { code?: string }).code ?? String(err)}`];
    }
  }

  private status(id: NodeId): string[] {
    const st = this.node(id).rn.status();
    const out = [`${id} ${st.role} term:${st.term} vote:${st.vote} lead:${st.lead} commit:${st.commit} applied:${st.applied}`];
    for (const [pid, p] of [...st.progress].sort((a, b) => a[0] - b[0])) {
      out.push(`  ${pid}: ${p.state} match=${p.match} next=${p.next}${p.isLearner ? ' learner' : ''}`);
    }
    return out;
  }

  private handleReady(id: NodeId, out: string[]): boolean {
    const { rn, storage } = this.node(id);
    if (!rn.hasReady()) return false;
    const rd = rn.ready();
    out.push(`> ${id} handling Ready`, ...describeReady(rd).map((l) => `  ${l}`));
    if (rd.snapshot) storage.applySnapshot(rd.snapshot);
    storage.append(rd.entries);
    if (rd.hardState) storage.setHardState(rd.hardState);
    this.queue.push(...rd.messages);
    for (const e of rd.committedEntries) {
      if (e.type === 'confChange') rn.applyConfChange(decodeConfChange(e.data));
    }
    rn.advance(rd);
    return true;
  }

  private stabilize(): string[] {
    const out: string[] = [];
    for (let round = 0; round < 100; round++) {
      let moved = false;
      const order = [...this.nodes.keys()].sort((a, b) => a - b);
      for (const id of order) moved = this.handleReady(id, out) || moved;
      const q = this.queue;
      this.queue = [];
      for (const id of order) {
        const mine = q.filter((m) => m.to === id);
        if (mine.length === 0) continue;
        moved = true;
        out.push(`> ${id} receiving messages`);
        for (const m of mine) {
          const cut = this.isolated.has(m.from) !== this.isolated.has(m.to);
          out.push(`  ${showMsg(m)}${cut ? ' DROPPED' : ''}`);
          if (cut) continue;
          this.node(id).rn.step(m);
          if (m.type === 'MsgSnap') this.node(m.from).rn.reportSnapshot(id, true);
        }
      }
      if (!moved) return out.length === 0 ? ['ok'] : out;
    }
    throw new Error('stabilize: no fixpoint');
  }
}

export interface Block {
  comments: string[];
  command: string;
  expected: string[];
}

/** Splits a script into blocks: comment lines, a command line, `----`, expected lines up to a blank line. */
export function parseScript(text: string): Block[] {
  const lines = text.split('\n');
  const blocks: Block[] = [];
  let comments: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '') continue;
    if (line.startsWith('#')) {
      comments.push(line);
      continue;
    }
    if (lines[i + 1] !== '----') throw new Error(`line ${i + 1}: command without ---- after it`);
    const expected: string[] = [];
    i += 2;
    for (; i < lines.length && lines[i] !== ''; i++) expected.push(lines[i]!);
    blocks.push({ comments, command: line, expected });
    comments = [];
  }
  return blocks;
}

export function renderScript(blocks: Block[]): string {
  return blocks.map((b) => [...b.comments, b.command, '----', ...b.expected].join('\n')).join('\n\n') + '\n';
}
