// The crypto backend interface (SPEC §3.5) and the envelope logic every
// backend shares.
//
// All backends produce identical bytes for identical (key, nonce, AAD,
// plaintext). A backend does AES-256-GCM on raw inputs (aeadSeal/aeadOpen,
// which the test vectors drive) and seals or opens whole batches of
// envelopes (sealBatch/openBatch), where batch backends amortise per-call
// overhead. Nonces arrive as a reserved range (SPEC §3.3); a backend never
// makes one up.

import { isSealError, sealError, type SealError } from '../errors/index.js';
import {
  HEADER_BYTES,
  TAG_BYTES,
  buildAad,
  checkSealFlag,
  parseEnvelope,
  writeEnvelopeHeader,
  type AadContext,
} from './envelope.js';
import type { Dek, KeyLookup } from './keystore.js';
import { nonceAt, type NonceRange } from './nonce.js';

/** Every backend createBackend makes (and a CryptoPool's workers accept). */
export const BACKEND_NAMES = ['aesni', 'batch', 'wasm', 'noble', 'auto'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

export function isBackendName(name: unknown): name is BackendName {
  return (BACKEND_NAMES as readonly unknown[]).includes(name);
}

export interface SealItem {
  readonly plaintext: Uint8Array;
  /** Storage flag bits (bit 0 = compressed); 0 for raft envelopes. */
  readonly flag: number;
  readonly aad: AadContext;
}

export interface OpenItem {
  readonly envelope: Uint8Array;
  readonly aad: AadContext;
}

export type OpenResult =
  | { readonly ok: true; readonly plaintext: Uint8Array; readonly flag: number; readonly keyId: number }
  | { readonly ok: false; readonly error: SealError };

export interface CryptoBackend {
  readonly name: BackendName;
  /** AES-256-GCM with a 96-bit nonce: returns ciphertext ‖ 16-byte tag. */
  aeadSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array;
  /** Checks the tag, then returns the plaintext; ErrEncryptedReadIntegrity on failure. */
  aeadOpen(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Uint8Array;
  /** Seals item i under `dek` with nonce i of `nonces`; returns envelopes in order. */
  sealBatch(dek: Dek, nonces: NonceRange, items: readonly SealItem[]): Uint8Array[];
  /** Opens every item; one failure marks only that item. */
  openBatch(keys: KeyLookup, items: readonly OpenItem[]): OpenResult[];
  /** Releases what the backend holds (WASM memory, workers). */
  close?(): void;
}

export function checkAeadArgs(key: Uint8Array, nonce: Uint8Array): void {
  if (key.length !== 32) throw new RangeError(`AES-256 key must be 32 bytes, got ${key.length}`);
  if (nonce.length !== 12) throw new RangeError(`GCM nonce must be 12 bytes, got ${nonce.length}`);
}

export function integrityError(detail: string): SealError {
  return sealError('ErrEncryptedReadIntegrity', detail);
}

/** Writes ciphertext ‖ tag for one value into `envelope` at `offset`. */
export type SealIntoFn = (nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, envelope: Uint8Array, offset: number) => void;

/**
 * Batch seal for one-call-per-value backends: frames each envelope and lets
 * `sealInto` write its body in place.
 */
export function sealBatchWith(dek: Dek, nonces: NonceRange, items: readonly SealItem[], sealInto: SealIntoFn): Uint8Array[] {
  if (nonces.count !== items.length) throw new RangeError(`${items.length} items but ${nonces.count} nonces`);
  const out: Uint8Array[] = new Array(items.length);
  for (let i = 0; i < items.length; i++) {
    const item = items[i]!;
    checkSealFlag(item.aad, item.flag);
    checkPurpose(dek, item.aad);
    const nonce = nonceAt(nonces, i);
    // Every byte is written below: header, then body and tag.
    const envelope = Buffer.allocUnsafe(HEADER_BYTES + item.plaintext.length + TAG_BYTES);
    writeEnvelopeHeader(envelope, 0, item.flag, dek.keyId, nonce);
    sealInto(nonce, buildAad(item.aad, item.flag, dek.keyId), item.plaintext, envelope, HEADER_BYTES);
    out[i] = envelope;
  }
  return out;
}

/** sealInto over a backend's aeadSeal, for backends with no in-place path. */
export function sealIntoVia(backend: Pick<CryptoBackend, 'aeadSeal'>, key: Uint8Array): SealIntoFn {
  return (nonce, aad, plaintext, envelope, offset) => envelope.set(backend.aeadSeal(key, nonce, aad, plaintext), offset);
}

/** Batch open in terms of aeadOpen. */
export function openBatchWith(backend: Pick<CryptoBackend, 'aeadOpen'>, keys: KeyLookup, items: readonly OpenItem[]): OpenResult[] {
  return items.map((item) => {
    try {
      const { dek, parsed } = locate(keys, item);
      const plaintext = backend.aeadOpen(dek.key, parsed.nonce, buildAad(item.aad, parsed.flag, dek.keyId), parsed.body);
      return { ok: true, plaintext, flag: parsed.flag, keyId: dek.keyId };
    } catch (err) {
      if (isSealError(err)) return { ok: false, error: err };
      throw err;
    }
  });
}

/** Parses an envelope and finds its DEK, with the typed errors of SPEC §3.1. */
export function locate(keys: KeyLookup, item: OpenItem): { dek: Dek; parsed: ReturnType<typeof parseEnvelope> } {
  const parsed = parseEnvelope(item.envelope, item.aad.kind);
  const dek = keys.get(parsed.keyId);
  if (dek === undefined) throw sealError('ErrUnknownKeyId', `no DEK with key_id ${parsed.keyId} is loaded`);
  // A ciphertext sealed under a DEK of the other purpose is out of place: the
  // same answer as any other tampering.
  if (dek.purpose !== item.aad.kind) throw integrityError(`key_id ${parsed.keyId} is a ${dek.purpose} DEK, found in a ${item.aad.kind} envelope`);
  if (parsed.body.length < TAG_BYTES) throw sealError('ErrEnvelopeShort', 'envelope body shorter than its tag');
  return { dek, parsed };
}

/** A DEK seals only envelopes of its own purpose (raft or storage). */
export function checkPurpose(dek: Dek, aad: AadContext): void {
  if (dek.purpose !== aad.kind) throw new RangeError(`cannot seal a ${aad.kind} envelope with ${dek.purpose} DEK ${dek.keyId}`);
}
