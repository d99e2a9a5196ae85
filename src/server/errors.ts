// SealError → RESP error line. Clients key their behaviour on the first word
// of an error (ERR, NOAUTH, WRONGPASS, TRYAGAIN, ...):
//   - ErrBadRequest            → `-ERR <Redis-style text>` (wrong arity, syntax, not an integer)
//   - ErrRequestTooLarge       → `-ERR <text>` (oversized request or bulk)
//   - any retryable code       → `-TRYAGAIN <Code>: <text>` (ErrNotLeader, ErrEnvelopeCutoverInProgress,
//                                ErrProposalDropped, ErrTimeout, ErrWriterNotRegistered, ...):
//                                nothing was applied, the same command may be sent again
//   - any other code           → `-ERR <Code>: <text>` (ErrReservedKey, ErrEncryptedReadIntegrity, ...)
//   - anything not a SealError → `-ERR internal error` (the cause goes to the log, not the client)
// The code is always in the line so that operators and tests can match on it.

import { ERROR_CODES, SealError, type ErrorCode } from '../errors/index.js';
import { encodeError } from './resp/index.js';

const PLAIN_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['ErrBadRequest', 'ErrRequestTooLarge']);

/** The error line for `code` with `detail` (the message without its code prefix). */
export function respErrorLine(code: ErrorCode, detail: string): Buffer {
  if (PLAIN_CODES.has(code)) return encodeError('ERR', detail);
  if (ERROR_CODES[code].retryable) return encodeError('TRYAGAIN', `${code}: ${detail}`);
  return encodeError('ERR', `${code}: ${detail}`);
}

/** The message of a SealError without the `Code: ` prefix its constructor adds. */
export function sealErrorDetail(err: SealError): string {
  const prefix = `${err.code}: `;
  return err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
}

/** The error line for anything thrown; `internal` when it was not a SealError (a bug to log). */
export function respErrorFor(err: unknown): { line: Buffer; label: string; internal: boolean } {
  if (err instanceof SealError) return { line: respErrorLine(err.code, sealErrorDetail(err)), label: err.code, internal: false };
  return { line: encodeError('ERR', 'internal error'), label: 'internal', internal: true };
}
