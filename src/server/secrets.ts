// Operator secrets (RESP password, admin token): read from a file or an
// environment variable — the variable is removed from process.env once read
// so that child processes and diagnostics do not inherit it — and compared
// in constant time through their digests.

import crypto from 'node:crypto';
import fs from 'node:fs';
import { sealError } from '../errors/index.js';

export interface SecretSource {
  file?: string;
  env?: string;
}

/** The secret, or undefined when neither source is given/set. Trailing newlines are dropped. */
export function loadSecret(source: SecretSource, what: string): string | undefined {
  let value: string | undefined;
  if (source.file !== undefined) {
    try {
      value = fs.readFileSync(source.file, 'utf8');
    } catch (err) {
      throw sealError('ErrBadRequest', `cannot read the ${what} file ${source.file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  } else if (source.env !== undefined && process.env[source.env] !== undefined) {
    value = process.env[source.env];
    delete process.env[source.env];
  }
  if (value === undefined) return undefined;
  value = value.replace(/\r?\n$/, '');
  if (value.length === 0) throw sealError('ErrBadRequest', `the ${what} is empty`);
  return value;
}

/** A fixed-length digest of a secret, kept instead of the secret for comparisons. */
export function secretDigest(secret: string | Buffer): Buffer {
  return crypto.createHash('sha256').update(secret).digest();
}

/** Constant-time check of a presented secret against a digest from `secretDigest`. */
export function matchesSecret(presented: string | Buffer, digest: Buffer): boolean {
  return crypto.timingSafeEqual(secretDigest(presented), digest);
}
