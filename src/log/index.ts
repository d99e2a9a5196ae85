// Structured JSON logs (pino). Secrets never reach the output: fields with
// secret-sounding names are redacted wherever they sit in the first two
// levels, and any byte buffer is replaced by its length — key material only
// ever travels as bytes, so no Buffer is printed, whatever its field name.

import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger } from 'pino';

const SECRET_FIELDS = ['password', 'requirepass', 'token', 'authorization', 'secret', 'kek', 'dek', 'key_bytes', 'wrapped'];

const REDACT_PATHS: string[] = SECRET_FIELDS.flatMap((f) => [f, `*.${f}`]).concat(['req.headers.authorization', 'headers.authorization']);

function scrubBytes(value: unknown, depth: number): unknown {
  if (value instanceof Uint8Array) return `[${value.length} bytes]`;
  if (depth === 0 || typeof value !== 'object' || value === null || value instanceof Error) return value;
  if (Array.isArray(value)) return value.map((v) => scrubBytes(v, depth - 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = scrubBytes(v, depth - 1);
  return out;
}

export interface LogOptions {
  level?: string;
  /** Where lines go; default stdout. Tests pass a stream to read them back. */
  destination?: DestinationStream;
  /** Fields on every line, such as `{ raft_id }`. */
  base?: Record<string, unknown>;
}

export function createLogger(options: LogOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? process.env.SEALKV_LOG_LEVEL ?? 'info',
      base: { pid: process.pid, ...options.base },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      formatters: { log: (object) => scrubBytes(object, 3) as Record<string, unknown> },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination,
  );
}

/** A logger that drops everything (library default when none is given). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
