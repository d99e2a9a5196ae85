// RESP2 reply encoding. Replies are appended as Buffers to a list that the
// connection writes in one go, so a pipelined batch costs one socket write.

import type { KvReply } from '../../kv/index.js';

const CRLF = Buffer.from('\r\n');
const NIL = Buffer.from('$-1\r\n');
const OK = Buffer.from('+OK\r\n');
const EMPTY_ARRAY = Buffer.from('*0\r\n');
const SMALL_INTS = Array.from({ length: 64 }, (_, i) => Buffer.from(`:${i - 1}\r\n`)); // -1..62

/** A RESP line may not contain CR or LF: they would end it early. */
function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ');
}

export function encodeStatus(text: string): Buffer {
  return text === 'OK' ? OK : Buffer.from(`+${oneLine(text)}\r\n`);
}

/** `prefix` is the error class Redis clients look at: ERR, NOAUTH, TRYAGAIN, ... */
export function encodeError(prefix: string, message: string): Buffer {
  return Buffer.from(`-${prefix} ${oneLine(message)}\r\n`);
}

export function encodeInteger(value: number | bigint): Buffer {
  if (typeof value === 'number' && value >= -1 && value < 63) return SMALL_INTS[value + 1]!;
  return Buffer.from(`:${value}\r\n`);
}

export function pushBulk(out: Buffer[], value: Buffer | string | null): void {
  if (value === null) {
    out.push(NIL);
    return;
  }
  const bytes = typeof value === 'string' ? Buffer.from(value) : value;
  out.push(Buffer.from(`$${bytes.length}\r\n`), bytes, CRLF);
}

export function pushArrayHeader(out: Buffer[], length: number): void {
  out.push(length === 0 ? EMPTY_ARRAY : Buffer.from(`*${length}\r\n`));
}

/** Appends a kv reply; error replies go through `encodeErrorReply` of the caller's mapping. */
export function pushReply(out: Buffer[], reply: KvReply, errorLine: (reply: KvReply & { kind: 'error' }) => Buffer): void {
  switch (reply.kind) {
    case 'ok':
      out.push(OK);
      return;
    case 'status':
      out.push(encodeStatus(reply.text));
      return;
    case 'nil':
      out.push(NIL);
      return;
    case 'bulk':
      pushBulk(out, reply.value);
      return;
    case 'int':
      out.push(encodeInteger(reply.value));
      return;
    case 'array':
      pushArrayHeader(out, reply.items.length);
      for (const item of reply.items) pushReply(out, item, errorLine);
      return;
    case 'error':
      out.push(errorLine(reply));
      return;
  }
}

/** A command as a client sends it (multibulk of bulk strings): for tests, benchmarks and forwarding. */
export function encodeCommand(args: readonly (string | Buffer)[]): Buffer {
  const parts: Buffer[] = [];
  pushArrayHeader(parts, args.length);
  for (const arg of args) pushBulk(parts, arg);
  return Buffer.concat(parts);
}
