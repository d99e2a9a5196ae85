// The crypto worker pool's message protocol (SPEC §3.5), shared by the main
// thread (pool.ts) and the workers (workers/crypto-worker.ts).
//
// Tasks (piscina `run`, one per chunk of a batch):
//   seal   { keyId, nonces, flags, values: plaintexts, aads }  → { envelopes }
//   open   { values: envelopes, aads }                          → { values: plaintexts, flags, keyIds, failures }
//   reseal { keyId, nonces, values: envelopes, aads }           → { envelopes, failures }
// Every variable-length list travels packed: one ArrayBuffer of bytes plus
// a Uint32Array of bounds (item i = bytes[bounds[i], bounds[i+1])). Each of
// those buffers is moved with a transfer list, in both directions, so a
// batch is copied once into its packed form and never by postMessage.
//
// Nonces are reserved by the main thread (SPEC §3.3) and travel as a
// NonceRange; a worker only uses them, in item order.
//
// Keys travel on a BroadcastChannel named in the worker data, never with a
// task. A worker that meets a key_id it lacks posts `need`; the main thread
// answers `key` (every worker installs it, so each worker asks at most once
// per key) or `unknown`. `drop` makes every worker forget a retired key.

import { sealError, type ErrorCode, type SealError } from '../errors/index.js';
import type { BackendName } from './backend.js';
import { VALUE_HEADER_BYTES, type AadContext } from './envelope.js';
import type { Purpose } from './keystore.js';
import type { NonceRange } from './nonce.js';

/** `workerData` of every worker of one pool. */
export interface WorkerConfig {
  readonly backend: BackendName | 'auto';
  /** BroadcastChannel name, unique per pool. */
  readonly channel: string;
  /** How long a worker waits for the main thread to answer `need`. */
  readonly keyWaitMs: number;
}

export interface PackedValues {
  readonly bounds: Uint32Array;
  readonly bytes: Uint8Array;
}

/** AAD contexts: kind 0 = raft, 1 = storage with bytes = value_header ‖ store_key. */
export interface PackedAads {
  readonly kinds: Uint8Array;
  readonly parts: PackedValues;
}

export interface WireError {
  readonly code: ErrorCode;
  readonly message: string;
}

export interface ItemFailure extends WireError {
  readonly index: number;
}

export type CryptoTask =
  | { readonly op: 'seal'; readonly keyId: number; readonly nonces: NonceRange; readonly flags: Uint8Array; readonly values: PackedValues; readonly aads: PackedAads }
  | { readonly op: 'open'; readonly values: PackedValues; readonly aads: PackedAads }
  | { readonly op: 'reseal'; readonly keyId: number; readonly nonces: NonceRange; readonly values: PackedValues; readonly aads: PackedAads };

export type CryptoTaskResult =
  | { readonly op: 'error'; readonly error: WireError }
  | { readonly op: 'seal'; readonly envelopes: PackedValues }
  | { readonly op: 'open'; readonly values: PackedValues; readonly flags: Uint8Array; readonly keyIds: Uint32Array; readonly failures: ItemFailure[] }
  | { readonly op: 'reseal'; readonly envelopes: PackedValues; readonly failures: ItemFailure[] };

export type KeyMessage =
  | { readonly type: 'need'; readonly keyId: number }
  | { readonly type: 'key'; readonly keyId: number; readonly purpose: Purpose; readonly key: Uint8Array }
  | { readonly type: 'unknown'; readonly keyId: number }
  | { readonly type: 'drop'; readonly keyId: number };

/** Copies `items` into one buffer. */
export function packValues(items: readonly Uint8Array[]): PackedValues {
  const bounds = new Uint32Array(items.length + 1);
  let total = 0;
  for (let i = 0; i < items.length; i++) {
    total += items[i]!.length;
    if (total > 0xffffffff) throw new RangeError('a packed chunk must stay under 4 GiB');
    bounds[i + 1] = total;
  }
  // Every byte is written below. Above 4 KiB allocUnsafe gives a buffer of
  // its own (transferable); below, a slice of Node's pool, which
  // transferablesOf leaves alone.
  const bytes = Buffer.allocUnsafe(total);
  for (let i = 0; i < items.length; i++) bytes.set(items[i]!, bounds[i]!);
  return { bounds, bytes };
}

/** Views into the packed buffer, one per item (no copy). */
export function unpackValues(packed: PackedValues): Uint8Array[] {
  const { bounds, bytes } = packed;
  const out: Uint8Array[] = new Array(bounds.length - 1);
  for (let i = 0; i < out.length; i++) out[i] = bytes.subarray(bounds[i]!, bounds[i + 1]!);
  return out;
}

export function packAads(aads: readonly AadContext[]): PackedAads {
  const kinds = new Uint8Array(aads.length);
  const parts = aads.map((aad, i) => {
    if (aad.kind === 'raft') return EMPTY;
    if (aad.valueHeader.length !== VALUE_HEADER_BYTES) {
      throw new RangeError(`value header must be ${VALUE_HEADER_BYTES} bytes, got ${aad.valueHeader.length}`);
    }
    kinds[i] = 1;
    const part = new Uint8Array(VALUE_HEADER_BYTES + aad.storeKey.length);
    part.set(aad.valueHeader);
    part.set(aad.storeKey, VALUE_HEADER_BYTES);
    return part;
  });
  return { kinds, parts: packValues(parts) };
}

export function unpackAads(packed: PackedAads): AadContext[] {
  return unpackValues(packed.parts).map((part, i) =>
    packed.kinds[i] === 1
      ? { kind: 'storage', valueHeader: part.subarray(0, VALUE_HEADER_BYTES), storeKey: part.subarray(VALUE_HEADER_BYTES) }
      : { kind: 'raft' },
  );
}

const EMPTY = new Uint8Array(0);

/** The buffers of a task or result, for its transfer list. */
export function transferablesOf(values: readonly (PackedValues | PackedAads | Uint8Array | Uint32Array)[]): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  const add = (view: ArrayBufferView): void => {
    // Only whole, unshared buffers are moved: a view into something the
    // caller still holds would detach it under them.
    if (view.byteOffset === 0 && view.buffer instanceof ArrayBuffer && view.byteLength === view.buffer.byteLength && !out.includes(view.buffer)) {
      out.push(view.buffer);
    }
  };
  for (const value of values) {
    if (ArrayBuffer.isView(value)) add(value);
    else if ('kinds' in value) {
      add(value.kinds);
      add(value.parts.bounds);
      add(value.parts.bytes);
    } else {
      add(value.bounds);
      add(value.bytes);
    }
  }
  return out;
}

export function toWire(error: SealError): WireError {
  return { code: error.code, message: error.message.replace(/^\w+: /, '') };
}

export function fromWire(error: WireError): SealError {
  return sealError(error.code, error.message);
}
