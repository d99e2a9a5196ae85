// SCAN cursors. Clients treat a cursor as an opaque string, but some (redis-py)
// parse it as an integer and every client stops at "0". So the cursor is the
// last examined key written as one decimal integer: the bytes 0x01 ‖ key read
// big-endian. It is stateless, so a page can continue on any node and after a
// leader change, and "0" (no marker byte) is never a real position.

import { sealError } from '../errors/index.js';

export const CURSOR_START = '0';

/** The cursor that resumes after `key`. */
export function encodeCursor(key: Buffer): string {
  return BigInt('0x01' + key.toString('hex')).toString(10);
}

/** The key a cursor resumes after (null = from the start); ErrBadRequest if malformed. */
export function decodeCursor(cursor: string): Buffer | null {
  if (cursor === CURSOR_START) return null;
  if (!/^[1-9][0-9]*$/.test(cursor)) throw sealError('ErrBadRequest', 'invalid cursor');
  const hex = BigInt(cursor).toString(16);
  if (hex.length % 2 === 0 || hex[0] !== '1') throw sealError('ErrBadRequest', 'invalid cursor');
  return Buffer.from(hex.slice(1), 'hex');
}
