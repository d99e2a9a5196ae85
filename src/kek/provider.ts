// The KEK provider interface of SPEC §4.1 and what every provider shares:
// the wrap context (key_id + purpose), the local wrapping AAD, and timed
// unwrap for the `sealkv_encryption_kek_unwrap_seconds` metric.
//
// A provider holds the KEK (or a handle to it in KMS) and never exposes it:
// describe() names the provider and where the key lives, never key bytes.

import { checkKeyId, DEK_BYTES, type Purpose } from '../crypto/index.js';

/** What a wrapped DEK is bound to: unwrapping under another context fails. */
export interface WrapContext {
  readonly keyId: number;
  readonly purpose: Purpose;
}

export type KekKind = 'aws-kms' | 'file' | 'env';

export interface KekProvider {
  readonly kind: KekKind;
  /** Wraps a 32-byte DEK; the result is opaque and safe to store. */
  wrap(dek: Uint8Array, context: WrapContext): Promise<Uint8Array>;
  /** Unwraps; fails with ErrKEKMismatch when this KEK or context did not wrap it. */
  unwrap(wrapped: Uint8Array, context: WrapContext): Promise<Uint8Array>;
  /** The provider URI without secrets, for logs and the sidecar's `kek` field. */
  describe(): string;
  /** Releases connections and zeroes local key material. */
  close(): void;
}

export function checkWrapArgs(dek: Uint8Array, context: WrapContext): void {
  if (!(dek instanceof Uint8Array) || dek.length !== DEK_BYTES) throw new RangeError(`DEK must be ${DEK_BYTES} bytes`);
  checkContext(context);
}

export function checkContext(context: WrapContext): void {
  checkKeyId(context.keyId);
  if (context.purpose !== 'storage' && context.purpose !== 'raft') {
    throw new RangeError(`unknown DEK purpose ${String(context.purpose)}`);
  }
}

/** Local wrapping AAD: "sealkv-dek" ‖ purpose ‖ key_id (uint32 BE). */
export function localWrapAad(context: WrapContext): Buffer {
  const keyId = Buffer.alloc(4);
  keyId.writeUInt32BE(context.keyId);
  return Buffer.concat([Buffer.from('sealkv-dek', 'ascii'), Buffer.from(context.purpose, 'ascii'), keyId]);
}

/** KMS encryption context naming the key_id and purpose (SPEC §4.1). */
export function kmsEncryptionContext(context: WrapContext): Record<string, string> {
  return { 'sealkv:key_id': String(context.keyId), 'sealkv:purpose': context.purpose };
}

export interface TimedUnwrap {
  readonly dek: Uint8Array;
  readonly seconds: number;
}

/** Unwraps and measures how long the provider took. */
export async function timedUnwrap(provider: KekProvider, wrapped: Uint8Array, context: WrapContext): Promise<TimedUnwrap> {
  const start = process.hrtime.bigint();
  const dek = await provider.unwrap(wrapped, context);
  return { dek, seconds: Number(process.hrtime.bigint() - start) / 1e9 };
}
