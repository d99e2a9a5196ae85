// Streaming RESP2 request parser: multibulk (`*N\r\n$L\r\n...`) and inline
// (`SET k v\r\n`, with Redis' quoting rules) commands, fed chunk by chunk.
//
// Memory is bounded by the limits: a header line may not exceed
// `maxInlineBytes` before its newline, a bulk may not exceed `maxBulkBytes`,
// an array `maxArrayLength`, and one command's bulks plus a fixed overhead
// per argument `maxRequestBytes`. Large bulks are copied straight into one
// buffer of their final size, so a slow sender costs O(size), not O(size²).
//
// A framing error (the byte stream can no longer be split into commands) is
// returned once and the parser is dead from then on: the server answers it
// and closes the connection, as Redis does. Everything parsed before the
// error is still returned.

import { sealError, type SealError } from '../../errors/index.js';

export interface RespLimits {
  maxBulkBytes: number;
  maxArrayLength: number;
  maxInlineBytes: number;
  maxRequestBytes: number;
}

export const DEFAULT_RESP_LIMITS: Readonly<RespLimits> = {
  maxBulkBytes: 64 * 1024 * 1024,
  maxArrayLength: 1024 * 1024,
  maxInlineBytes: 64 * 1024,
  maxRequestBytes: 128 * 1024 * 1024,
};

/** Bookkeeping bytes charged per argument, so a million empty bulks still count. */
export const ARG_OVERHEAD_BYTES = 64;
/** Bulks at least this large are assembled in place instead of re-buffered. */
const DIRECT_BULK_BYTES = 64 * 1024;
const EMPTY = Buffer.alloc(0);

export type RespCommand = Buffer[];

function protocolError(message: string): SealError {
  return sealError('ErrBadRequest', `Protocol error: ${message}`);
}

function tooLarge(message: string): SealError {
  return sealError('ErrRequestTooLarge', `Protocol error: ${message}`);
}

/** Parses a strict decimal integer (optional '-'), or NaN. */
function parseLength(buf: Buffer, start: number, end: number): number {
  if (end <= start || end - start > 18) return NaN;
  let i = start;
  const negative = buf[i] === 0x2d;
  if (negative) i++;
  if (i === end) return NaN;
  let n = 0;
  for (; i < end; i++) {
    const d = buf[i]! - 0x30;
    if (d < 0 || d > 9) return NaN;
    n = n * 10 + d;
  }
  return negative ? -n : n;
}

const isSpace = (c: string | undefined): boolean => c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\v' || c === '\f' || c === '\0';
const HEX = /^[0-9a-fA-F]{2}$/;
const ESCAPES: Record<string, string> = { n: '\n', r: '\r', t: '\t', b: '\b', a: '\x07' };

/** Splits an inline command line as Redis' sdssplitargs; null on unbalanced quotes. */
export function splitInline(line: string): Buffer[] | null {
  const args: Buffer[] = [];
  let i = 0;
  for (;;) {
    while (isSpace(line[i])) i++;
    if (i >= line.length) return args;
    let current = '';
    const quote = line[i] === '"' || line[i] === "'" ? line[i] : undefined;
    if (quote !== undefined) i++;
    for (;;) {
      const c = line[i];
      if (quote === undefined) {
        if (c === undefined || isSpace(c)) break;
        current += c;
        i++;
      } else if (c === undefined) {
        return null;
      } else if (quote === '"' && c === '\\' && line[i + 1] === 'x' && HEX.test(line.slice(i + 2, i + 4))) {
        current += String.fromCharCode(parseInt(line.slice(i + 2, i + 4), 16));
        i += 4;
      } else if (c === '\\' && i + 1 < line.length && (quote === '"' || line[i + 1] === "'")) {
        const next = line[i + 1]!;
        current += quote === '"' ? (ESCAPES[next] ?? next) : next;
        i += 2;
      } else if (c === quote) {
        i++;
        // A closing quote must be followed by a space or the end of the line.
        if (i < line.length && !isSpace(line[i])) return null;
        break;
      } else {
        current += c;
        i++;
      }
    }
    args.push(Buffer.from(current, 'latin1'));
  }
}

export class RespParser {
  readonly #limits: RespLimits;
  #buf: Buffer = EMPTY;
  #pos = 0;
  /** Arguments still expected by the multibulk command in progress (0 = none). */
  #remaining = 0;
  #args: Buffer[] = [];
  #requestBytes = 0;
  /** Length of the bulk whose body is awaited, or -1 while expecting a `$` header. */
  #bulkLen = -1;
  /** A large bulk being filled in place (bulk plus CRLF). */
  #direct: Buffer | null = null;
  #directFilled = 0;
  #dead = false;

  constructor(limits: Partial<RespLimits> = {}) {
    this.#limits = { ...DEFAULT_RESP_LIMITS, ...limits };
  }

  /** Bytes held for incomplete input (for memory accounting and tests). */
  get bufferedBytes(): number {
    return this.#buf.length - this.#pos + (this.#direct?.length ?? 0) + this.#requestBytes;
  }

  /**
   * Consumes `chunk`, appending every complete command to `out`. Returns a
   * framing error, after which the parser accepts nothing more.
   */
  feed(chunk: Buffer, out: RespCommand[]): SealError | undefined {
    if (this.#dead) return protocolError('connection is closing');
    let input = chunk;
    if (this.#direct !== null) {
      const n = Math.min(input.length, this.#direct.length - this.#directFilled);
      input.copy(this.#direct, this.#directFilled, 0, n);
      this.#directFilled += n;
      input = input.subarray(n);
      if (this.#directFilled < this.#direct.length) return undefined;
      const bulk = this.#direct;
      this.#direct = null;
      if (bulk[bulk.length - 2] !== 0x0d || bulk[bulk.length - 1] !== 0x0a) return this.#die(protocolError('expected CRLF after bulk'));
      this.#pushArg(bulk.subarray(0, bulk.length - 2), out);
    }
    this.#buf = this.#pos < this.#buf.length ? Buffer.concat([this.#buf.subarray(this.#pos), input]) : input;
    this.#pos = 0;
    const error = this.#parse(out);
    if (this.#pos >= this.#buf.length) {
      this.#buf = EMPTY;
      this.#pos = 0;
    }
    return error === undefined ? undefined : this.#die(error);
  }

  #die(error: SealError): SealError {
    this.#dead = true;
    this.#buf = EMPTY;
    this.#args = [];
    this.#direct = null;
    return error;
  }

  #pushArg(arg: Buffer, out: RespCommand[]): void {
    this.#args.push(arg);
    this.#bulkLen = -1;
    if (--this.#remaining === 0) {
      out.push(this.#args);
      this.#args = [];
      this.#requestBytes = 0;
    }
  }

  #parse(out: RespCommand[]): SealError | undefined {
    const buf = this.#buf;
    const limits = this.#limits;
    while (this.#pos < buf.length) {
      const pos = this.#pos;
      if (this.#remaining === 0) {
        if (buf[pos] !== 0x2a /* * */) {
          const nl = buf.indexOf(0x0a, pos);
          if (nl < 0) return buf.length - pos > limits.maxInlineBytes ? tooLarge('too big inline request') : undefined;
          if (nl - pos > limits.maxInlineBytes) return tooLarge('too big inline request');
          const end = nl > pos && buf[nl - 1] === 0x0d ? nl - 1 : nl;
          this.#pos = nl + 1;
          const args = splitInline(buf.toString('latin1', pos, end));
          if (args === null) return protocolError('unbalanced quotes in request');
          if (args.length > 0) out.push(args);
          continue;
        }
        const cr = buf.indexOf('\r\n', pos);
        if (cr < 0) return buf.length - pos > limits.maxInlineBytes ? tooLarge('too big mbulk count string') : undefined;
        const n = parseLength(buf, pos + 1, cr);
        if (Number.isNaN(n)) return protocolError('invalid multibulk length');
        if (n > limits.maxArrayLength) return tooLarge('invalid multibulk length');
        this.#pos = cr + 2;
        if (n <= 0) continue; // `*0` and `*-1` are empty commands, ignored as Redis does
        this.#remaining = n;
        this.#requestBytes = 0;
        continue;
      }
      if (this.#bulkLen < 0) {
        if (buf[pos] !== 0x24 /* $ */) return protocolError(`expected '$', got '${String.fromCharCode(buf[pos]!).replace(/[^\x20-\x7e]/, '?')}'`);
        const cr = buf.indexOf('\r\n', pos);
        if (cr < 0) return buf.length - pos > limits.maxInlineBytes ? tooLarge('too big bulk count string') : undefined;
        const len = parseLength(buf, pos + 1, cr);
        if (Number.isNaN(len) || len < 0) return protocolError('invalid bulk length');
        if (len > limits.maxBulkBytes) return tooLarge(`invalid bulk length (${len} exceeds the limit of ${limits.maxBulkBytes})`);
        this.#requestBytes += len + ARG_OVERHEAD_BYTES;
        if (this.#requestBytes > limits.maxRequestBytes) return tooLarge(`request exceeds ${limits.maxRequestBytes} bytes`);
        this.#bulkLen = len;
        this.#pos = cr + 2;
        continue;
      }
      const len = this.#bulkLen;
      if (buf.length - pos >= len + 2) {
        if (buf[pos + len] !== 0x0d || buf[pos + len + 1] !== 0x0a) return protocolError('expected CRLF after bulk');
        // A copy: the argument must not pin the whole socket chunk it came in.
        this.#pushArg(Buffer.from(buf.subarray(pos, pos + len)), out);
        this.#pos = pos + len + 2;
        continue;
      }
      if (len + 2 >= DIRECT_BULK_BYTES) {
        this.#direct = Buffer.allocUnsafe(len + 2);
        this.#directFilled = buf.copy(this.#direct, 0, pos);
        this.#pos = buf.length;
      }
      return undefined;
    }
    return undefined;
  }
}
