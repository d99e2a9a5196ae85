// JSON logs never carry secrets: secret-named fields are redacted and byte
// buffers are printed as their length only.

import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log/index.js';

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return { lines, logger: createLogger({ destination, base: { raft_id: 'n1' } }) };
}

describe('createLogger', () => {
  it('writes one JSON object per line with level, time, message and base fields', () => {
    const { lines, logger } = capture();
    logger.info({ key_id: 305419896 }, 'rotated');
    const entry = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(entry).toMatchObject({ level: 30, msg: 'rotated', key_id: 305419896, raft_id: 'n1' });
    expect(typeof entry.time).toBe('string');
  });

  it('redacts secret fields and never prints key bytes', () => {
    const { lines, logger } = capture();
    const dek = Buffer.from('00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff', 'hex');
    logger.warn(
      {
        password: 'hunter2',
        token: 'tok-123',
        req: { headers: { authorization: 'Bearer abc' } },
        config: { requirepass: 'pw', kek: 'file:///x' },
        material: dek,
        nested: { key: dek, arr: [dek] },
      },
      'careful',
    );
    const line = lines[0]!;
    for (const secret of ['hunter2', 'tok-123', 'Bearer abc', '"pw"', '00112233', 'ABEiM0RVZneImaq7zN3u']) expect(line).not.toContain(secret);
    const entry = JSON.parse(line) as Record<string, any>;
    expect(entry.password).toBe('[redacted]');
    expect(entry.config.requirepass).toBe('[redacted]');
    expect(entry.material).toBe('[32 bytes]');
    expect(entry.nested.key).toBe('[32 bytes]');
  });
});
