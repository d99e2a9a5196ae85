// Frame parsing: frames split at every byte boundary, several frames in one
// chunk, and the size limit checked from the prefix alone.

import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { describe, expect, it } from 'vitest';
import { FrameConn, encodeFrame, type Frame } from '../../../src/raft/transport/frame.js';
import { makeMessage } from '../../../src/raft/index.js';

function fakeSocket(): net.Socket & EventEmitter {
  const s = new EventEmitter() as net.Socket & EventEmitter & { destroyed: boolean };
  Object.assign(s, { setNoDelay: () => s, write: () => true, destroy: () => void s.emit('close') });
  return s;
}

describe('FrameConn', () => {
  const frames: Frame[] = [
    { k: 'msgs', ms: [makeMessage({ type: 'MsgApp', from: 1, to: 2, entries: [{ index: 5, term: 2, type: 'normal', data: new Uint8Array([1, 2, 3]) }] })] },
    { k: 'snapChunk', d: new Uint8Array(1000).fill(7) },
    { k: 'snapEnd', bytes: 1000 },
  ];
  const wire = Buffer.concat(frames.map(encodeFrame));

  it('decodes frames delivered one byte at a time, and all at once', () => {
    for (const step of [1, 3, wire.length]) {
      const got: Frame[] = [];
      const s = fakeSocket();
      new FrameConn(s, 1 << 20, (f) => got.push(f), () => {});
      for (let i = 0; i < wire.length; i += step) s.emit('data', wire.subarray(i, i + step));
      expect(got.map((f) => f.k)).toEqual(['msgs', 'snapChunk', 'snapEnd']);
      const m = (got[0] as Extract<Frame, { k: 'msgs' }>).ms[0]!;
      expect(m.entries[0]!.index).toBe(5);
      expect([...m.entries[0]!.data]).toEqual([1, 2, 3]);
      expect((got[1] as Extract<Frame, { k: 'snapChunk' }>).d.length).toBe(1000);
    }
  });

  it('closes on a length over the limit before the body arrives', () => {
    const s = fakeSocket();
    let reason = '';
    new FrameConn(s, 100, () => {}, (r) => (reason = r));
    const big = encodeFrame({ k: 'snapChunk', d: new Uint8Array(500) });
    s.emit('data', big.subarray(0, 2));
    expect(reason).toBe('');
    s.emit('data', big.subarray(2, 6));
    expect(reason).toContain('over the limit');
  });
});
