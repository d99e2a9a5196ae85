// One-line renderings of entries and messages for logs, debugging and the
// golden interaction tests (etcd's format, roughly). Payloads hold user keys
// and values: they are shown only as a byte count unless `payloads` is set
// (tests, debugging on scratch data).

import { decodeConfChange } from './confchange.js';
import type { Entry, Message } from './types.js';

const dec = new TextDecoder();

export interface DescribeOptions {
  /** Show normal entries' payloads as text (default: byte count only). */
  payloads?: boolean;
}

function describeData(e: Entry, o: DescribeOptions): string {
  if (e.type === 'confChange') {
    const cc = decodeConfChange(e.data);
    return `${cc.type} ${cc.nodeId}`;
  }
  return o.payloads === true ? JSON.stringify(dec.decode(e.data)) : `<${e.data.length} bytes>`;
}

export function describeEntry(e: Entry, o: DescribeOptions = {}): string {
  return `${e.term}/${e.index} ${e.type === 'normal' ? 'EntryNormal' : 'EntryConfChange'} ${describeData(e, o)}`;
}

export function describeMessage(m: Message, o: DescribeOptions = {}): string {
  let s = `${m.from}->${m.to} ${m.type} Term:${m.term} Log:${m.logTerm}/${m.index}`;
  if (m.commit !== 0) s += ` Commit:${m.commit}`;
  if (m.entries.length > 0) s += ` Entries:[${m.entries.map((e) => describeEntry(e, o)).join(', ')}]`;
  if (m.reject) s += ` Rejected (Hint: ${m.rejectHint})`;
  if (m.snapshot !== undefined) {
    const cs = m.snapshot.confState;
    s += ` Snapshot: Index:${m.snapshot.index} Term:${m.snapshot.term} Voters:[${cs.voters}] Learners:[${cs.learners}]`;
  }
  if (m.context !== undefined && m.context.length > 0) {
    s += o.payloads === true ? ` Context:${JSON.stringify(dec.decode(m.context))}` : ` Context:<${m.context.length} bytes>`;
  }
  return s;
}
