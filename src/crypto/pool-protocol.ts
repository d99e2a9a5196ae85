// The crypto worker pool's message protocol (SPEC §3.5), shared by the main
// thread (pool.ts) and the workers (workers/crypto-worker.ts).
//
// Tasks (piscina `run`, one per chunk of a batch):
//   seal   { keyId, nonces, flags, values: plaintexts, aads, compress? }  → { envelopes }
//          (compress: the worker runs compressForSeal on each storage item
//          of flag 0 first, SPEC §3.4, so that compression leaves the main
//          thread too)
//   open   { values: envelopes, aads }                          → { values: plaintexts, flags, keyIds, failures }
//   reseal { keyId, nonces, values: envelopes, aads }           → { envelopes, failures }
// Every variable-length list travels packed: one ArrayBuffer of bytes plus
// a Uint32Array of bounds (item i = bytes[bounds[i], bounds[i+1])). Each of
// those buffers is moved with a transfer list, in both directions, so a
// batch is copied once into its packed form and never by postMessage.
//
// The worker moves the task's input buffer back with the result, and the
// pool packs later chunks into it: a fresh megabyte buffer costs its page
// faults on every chunk, which on the main thread cost more than the copy.
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
import { VALUE_HEADER_BYTES, checkValueHeader, type AadContext } from './envelope.js';
import type { Purpose } from './keystore.js';
import type { NonceRange } from './nonce.js';

/** `workerData` of every worker of one pool. */
export interface WorkerConfig {
  readonly backend: BackendName;
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
  | {
      readonly op: 'seal';
      readonly keyId: number;
      readonly nonces: NonceRange;
      readonly flags: Uint8Array;
      readonly values: PackedValues;
      readonly aads: PackedAads;
      readonly compress?: boolean;
    }
  | { readonly op: 'open'; readonly values: PackedValues; readonly aads: PackedAads }
  | { readonly op: 'reseal'; readonly keyId: number; readonly nonces: NonceRange; readonly values: PackedValues; readonly aads: PackedAads };

export type CryptoTaskResult = (
  | { readonly op: 'error'; readonly error: WireError }
  | { readonly op: 'seal'; readonly envelopes: PackedValues }
  | { readonly op: 'open'; readonly values: PackedValues; readonly flags: Uint8Array; readonly keyIds: Uint32Array; readonly failures: ItemFailure[] }
  | { readonly op: 'reseal'; readonly envelopes: PackedValues; readonly failures: ItemFailure[] }
) & {
  /** The task's input bytes buffer, moved back for the main thread to pack the next chunk into. */
  readonly spare?: ArrayBuffer;
};

export type KeyMessage =
  | { readonly type: 'need'; readonly keyId: number }
  | { readonly type: 'key'; readonly keyId: number; readonly purpose: Purpose; readonly key: Uint8Array }
  | { readonly type: 'unknown'; readonly keyId: number }
  | { readonly type: 'drop'; readonly keyId: number };

/** Gives a Uint8Array of exactly `bytes` bytes at offset 0 of a buffer the caller owns whole. */
export type PackAllocator = (bytes: number) => Uint8Array;

const freshBytes: PackAllocator = (bytes) => new Uint8Array(bytes);

/** Copies `items` into one buffer from `alloc`. */
export function packValues(items: readonly Uint8Array[], alloc: PackAllocator = freshBytes): PackedValues {
  const bounds = new Uint32Array(items.length + 1);
  let total = 0;
  for (let i = 0; i < items.length; i++) {
    total += items[i]!.length;
    if (total > 0xffffffff) throw new RangeError('a packed chunk must stay under 4 GiB');
    bounds[i + 1] = total;
  }
  const bytes = alloc(total);
  for (let i = 0; i < items.length; i++) bytes.set(items[i]!, bounds[i]!);
  return { bounds, bytes };
}

/**
 * packValues without the copy when `items` already lie back to back, in
 * order, over the whole of one ArrayBuffer (as a WASM backend's batch
 * output does).
 */
export function packContiguous(items: readonly Uint8Array[]): PackedValues {
  const buffer = items[0]?.buffer;
  let end = 0;
  for (const item of items) {
    if (item.buffer !== buffer || item.byteOffset !== end) return packValues(items);
    end += item.length;
  }
  if (buffer === undefined || !(buffer instanceof ArrayBuffer) || end !== buffer.byteLength) return packValues(items);
  const bounds = new Uint32Array(items.length + 1);
  for (let i = 0; i < items.length; i++) bounds[i + 1] = bounds[i]! + items[i]!.length;
  return { bounds, bytes: new Uint8Array(buffer, 0, end) };
}

/** Views into the packed buffer, one per item (no copy). */
export function unpackValues(packed: PackedValues): Uint8Array[] {
  const { bounds, bytes } = packed;
  const { buffer, byteOffset } = bytes;
  const out: Uint8Array[] = new Array(bounds.length - 1);
  // The constructor, not subarray(): several times cheaper per view, and the
  // pool makes one view per value on the main thread.
  for (let i = 0; i < out.length; i++) out[i] = new Uint8Array(buffer, byteOffset + bounds[i]!, bounds[i + 1]! - bounds[i]!);
  return out;
}

export function packAads(aads: readonly AadContext[]): PackedAads {
  const kinds = new Uint8Array(aads.length);
  const bounds = new Uint32Array(aads.length + 1);
  let total = 0;
  for (let i = 0; i < aads.length; i++) {
    const aad = aads[i]!;
    checkValueHeader(aad);
    if (aad.kind === 'storage') {
      kinds[i] = 1;
      total += VALUE_HEADER_BYTES + aad.storeKey.length;
    }
    bounds[i + 1] = total;
  }
  const bytes = new Uint8Array(total);
  for (let i = 0; i < aads.length; i++) {
    const aad = aads[i]!;
    if (aad.kind === 'raft') continue;
    bytes.set(aad.valueHeader, bounds[i]!);
    bytes.set(aad.storeKey, bounds[i]! + VALUE_HEADER_BYTES);
  }
  return { kinds, parts: { bounds, bytes } };
}

export function unpackAads(packed: PackedAads): AadContext[] {
  return unpackValues(packed.parts).map((part, i) =>
    packed.kinds[i] === 1
      ? { kind: 'storage', valueHeader: part.subarray(0, VALUE_HEADER_BYTES), storeKey: part.subarray(VALUE_HEADER_BYTES) }
      : { kind: 'raft' },
  );
}

/**
 * The buffers of a task or result, for its transfer list. Everything the
 * pack functions make sits at offset 0 of a buffer owned whole by its
 * maker; a view anywhere else belongs to someone else and is copied, not
 * moved (moving would detach it under its owner).
 */
export function transferablesOf(values: readonly (PackedValues | PackedAads | ArrayBufferView | ArrayBuffer)[]): ArrayBuffer[] {
  const out = new Set<ArrayBuffer>();
  const add = (view: ArrayBufferView): void => {
    if (view.byteOffset === 0 && view.buffer instanceof ArrayBuffer) out.add(view.buffer);
  };
  for (const value of values) {
    if (value instanceof ArrayBuffer) out.add(value);
    else if (ArrayBuffer.isView(value)) add(value);
    else if ('kinds' in value) {
      add(value.kinds);
      add(value.parts.bounds);
      add(value.parts.bytes);
    } else {
      add(value.bounds);
      add(value.bytes);
    }
  }
  return [...out];
}

export function toWire(error: SealError): WireError {
  return { code: error.code, message: error.message.replace(/^\w+: /, '') };
}

export function fromWire(error: WireError): SealError {
  return sealError(error.code, error.message);
}
