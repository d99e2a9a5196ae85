// CommandQueue: FIFO order across compactions and an exact byte count.

import { describe, expect, it } from 'vitest';
import { CommandQueue } from '../../src/server/command-queue.js';

describe('CommandQueue', () => {
  it('keeps FIFO order and its byte count through interleaved pushes and takes', () => {
    const queue = new CommandQueue();
    let next = 0;
    let expected = 0;
    let bytes = 0;
    for (let round = 0; round < 50; round++) {
      const batch = Array.from({ length: 97 }, () => {
        const id = String(next++);
        bytes += 3 + id.length;
        return [Buffer.from('GET'), Buffer.from(id)];
      });
      queue.push(batch);
      for (let i = 0; i < 60; i++) {
        const command = queue.take()!;
        expect(command[1]!.toString()).toBe(String(expected++));
        bytes -= 3 + command[1]!.length;
      }
      expect(queue.bytes).toBe(bytes);
      expect(queue.length).toBe(next - expected);
    }
    while (queue.length > 0) expect(queue.take()![1]!.toString()).toBe(String(expected++));
    expect(queue.take()).toBeUndefined();
    expect(queue.bytes).toBe(0);
  });
});
