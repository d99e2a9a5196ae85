// The WASM crypto core (assembly/, built to build/sealkv.wasm) seen from
// JavaScript: compiles the module once per thread, gives each WasmCore its
// own instance (linear memory and key slots), and runs whole batches of
// envelope seals and opens through it (SPEC §3.1, §3.2, §3.5).
//
// A batch is laid out in the instance's I/O area — records, inputs, AAD
// scratch, outputs and the counter blocks of every value — then the counter
// blocks become keystream in one AES-ECB run per key (in WASM, or through
// node:crypto for the `batch` backend), one WASM call seals or opens every
// value, the results are copied out with one slice, and the I/O area is
// zeroed before returning. Batches are cut into chunks of bounded size so
// the memory stays small whatever the batch holds.
//
// Memory ownership: every Uint8Array returned here is a view into a fresh
// ArrayBuffer owned by the caller; nothing returned aliases WASM memory.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isSealError, sealError, type SealError } from '../errors/index.js';
import { checkAeadArgs, checkPurpose, integrityError, locate, type BackendName, type CryptoBackend, type OpenItem, type OpenResult, type SealItem } from './backend.js';
import { ENVELOPE_OVERHEAD, TAG_BYTES, VALUE_HEADER_BYTES, checkSealFlag, checkValueHeader, envelopeKeyId, parseEnvelope, type AadContext } from './envelope.js';
import type { Dek, KeyLookup } from './keystore.js';
import type { NonceRange } from './nonce.js';

/** ABI version of build/sealkv.wasm this loader speaks. */
export const WASM_ABI_VERSION = 3;

// The slice of the WebAssembly JS API used here (this project's TypeScript
// lib has no DOM typings, which is where WebAssembly's live).
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
/** A compiled build/sealkv.wasm; transferable to worker threads. */
export type WasmModule = object;
interface WasmApi {
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports: object) => { exports: unknown };
}
const wasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/** The functions build/sealkv.wasm exports (see assembly/index.ts). */
export interface WasmCoreExports {
  readonly memory: WasmMemory;
  abiVersion(): number;
  ioBase(): number;
  maxSlots(): number;
  keyInput(): number;
  slotSetKey(slot: number, key: number): void;
  slotClear(slot: number): void;
  scratchClear(): void;
  ecbEncrypt(slot: number, p: number, blocks: number): void;
  aeadSeal(slot: number, aad: number, aadLen: number, pt: number, len: number, out: number, ks: number): void;
  aeadOpen(slot: number, aad: number, aadLen: number, ct: number, len: number, out: number, ks: number): number;
  sealBatch(count: number, hdr: number, recs: number): void;
  openBatch(count: number, recs: number, status: number, aad: number): void;
  writeCounters(count: number, hdr: number, recs: number, open: number): void;
  counterRun(dst: number, nonce: number, blocks: number): void;
}

const HDR_BYTES = 32;
const REC_BYTES = 40;
const NO_SLOT = 0xffffffff;
const STATUS_OK = 0;
const STATUS_NO_KEY = 4;
const STATUS_INTEGRITY = 5;
/** AAD bytes besides the store key: version, flag, key_id, value header. */
const AAD_FIXED = 6 + VALUE_HEADER_BYTES;
/** Bytes of inputs and outputs per chunk of a batch (a value larger than this is a chunk of its own). */
const CHUNK_BYTES = 8 << 20;
const PAGE = 65536;

/**
 * Turns the counter blocks at `mem[offset, offset+length)` into keystream in
 * place (AES-256-ECB under `key`): how the `batch` backend brings its own AES.
 */
export type KeystreamFn = (key: Uint8Array, mem: Uint8Array, offset: number, length: number) => void;

let compiled: WasmModule | undefined;

/** Finds build/sealkv.wasm from here (src/crypto or dist/src/crypto). */
export function wasmPath(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, 'build', 'sealkv.wasm');
    if (fs.existsSync(candidate)) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) throw sealError('ErrCryptoBackend', 'build/sealkv.wasm not found: run `npm run build:wasm`');
    dir = parent;
  }
}

/** The compiled module, compiled on first use (synchronously: it is small). */
export function wasmModule(): WasmModule {
  compiled ??= new wasmApi.Module(fs.readFileSync(wasmPath()));
  return compiled;
}

/** Bump allocator over one batch chunk's layout, 16-byte aligned. */
class Layout {
  size = 0;
  take(bytes: number): number {
    const at = this.size;
    this.size += (bytes + 15) & ~15;
    return at;
  }
}

interface Slot {
  key: Uint8Array | undefined;
  lastUse: number;
}

export class WasmCore {
  readonly #x: WasmCoreExports;
  readonly #io: number;
  readonly #slots: Slot[];
  readonly #keystream: KeystreamFn | null;
  #tick = 0;
  #u8: Uint8Array;
  #dv: DataView;

  /** `keystream` null: AES runs in WASM (ecbEncrypt); else it supplies the keystream. */
  constructor(keystream: KeystreamFn | null = null) {
    this.#keystream = keystream;
    const instance = new wasmApi.Instance(wasmModule(), {
      env: {
        abort: () => {
          throw sealError('ErrCryptoBackend', 'WASM crypto core aborted');
        },
      },
    });
    this.#x = instance.exports as unknown as WasmCoreExports;
    if (this.#x.abiVersion() !== WASM_ABI_VERSION) {
      throw sealError('ErrCryptoBackend', `build/sealkv.wasm has ABI ${this.#x.abiVersion()}, expected ${WASM_ABI_VERSION}: rebuild it`);
    }
    this.#io = this.#x.ioBase();
    this.#slots = Array.from({ length: this.#x.maxSlots() }, () => ({ key: undefined, lastUse: 0 }));
    this.#u8 = new Uint8Array(this.#x.memory.buffer);
    this.#dv = new DataView(this.#x.memory.buffer);
  }

  /** The raw exports, for callers that lay out memory themselves. */
  get exports(): WasmCoreExports {
    return this.#x;
  }

  /** Makes the I/O area at least `bytes` long and returns its address. */
  reserve(bytes: number): number {
    const need = this.#io + bytes;
    const have = this.#x.memory.buffer.byteLength;
    if (need > have) this.#x.memory.grow(Math.ceil((need - have) / PAGE));
    if (this.#u8.buffer !== this.#x.memory.buffer) {
      this.#u8 = new Uint8Array(this.#x.memory.buffer);
      this.#dv = new DataView(this.#x.memory.buffer);
    }
    return this.#io;
  }

  /** The slot holding `key`, installing it (evicting the least recently used) if needed. */
  slotFor(key: Uint8Array): number {
    const tick = ++this.#tick;
    let victim = 0;
    for (let i = 0; i < this.#slots.length; i++) {
      const slot = this.#slots[i]!;
      if (slot.key !== undefined && equalKey(slot.key, key)) {
        slot.lastUse = tick;
        return i;
      }
      if (slot.lastUse < this.#slots[victim]!.lastUse) victim = i;
    }
    // Staged in WASM scratch, not the I/O area, which may hold a batch; the
    // key schedule zeroes it.
    const at = this.#x.keyInput();
    this.#u8.set(key, at);
    this.#x.slotSetKey(victim, at);
    const slot = this.#slots[victim]!;
    slot.key?.fill(0);
    slot.key = Uint8Array.from(key);
    slot.lastUse = tick;
    return victim;
  }

  /** Zeroes every key slot and the memory this instance used. */
  close(): void {
    for (let i = 0; i < this.#slots.length; i++) {
      const slot = this.#slots[i]!;
      slot.key?.fill(0);
      slot.key = undefined;
      this.#x.slotClear(i);
    }
    this.#u8.fill(0, this.#io);
  }

  aeadSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    checkAeadArgs(key, nonce);
    const slot = this.slotFor(key);
    const len = plaintext.length;
    const plan = new Layout();
    const at = { nonce: plan.take(12), aad: plan.take(aad.length), pt: plan.take(len), out: plan.take(len + TAG_BYTES), ks: plan.take(keystreamBytes(len)) };
    return this.#withIo(plan.size, (base, m) => {
      m.set(nonce, base + at.nonce);
      m.set(aad, base + at.aad);
      m.set(plaintext, base + at.pt);
      this.#x.counterRun(base + at.ks, base + at.nonce, keystreamBytes(len) / 16);
      this.#fillKeystream(key, slot, base + at.ks, keystreamBytes(len));
      this.#x.aeadSeal(slot, base + at.aad, aad.length, base + at.pt, len, base + at.out, base + at.ks);
      return m.slice(base + at.out, base + at.out + len + TAG_BYTES);
    });
  }

  aeadOpen(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Uint8Array {
    checkAeadArgs(key, nonce);
    if (sealed.length < TAG_BYTES) throw integrityError('sealed value shorter than its tag');
    const slot = this.slotFor(key);
    const len = sealed.length - TAG_BYTES;
    const plan = new Layout();
    const at = { nonce: plan.take(12), aad: plan.take(aad.length), ct: plan.take(sealed.length), out: plan.take(len), ks: plan.take(keystreamBytes(len)) };
    const out = this.#withIo(plan.size, (base, m) => {
      m.set(nonce, base + at.nonce);
      m.set(aad, base + at.aad);
      m.set(sealed, base + at.ct);
      this.#x.counterRun(base + at.ks, base + at.nonce, keystreamBytes(len) / 16);
      this.#fillKeystream(key, slot, base + at.ks, keystreamBytes(len));
      const ok = this.#x.aeadOpen(slot, base + at.aad, aad.length, base + at.ct, len, base + at.out, base + at.ks);
      return ok === 1 ? m.slice(base + at.out, base + at.out + len) : undefined;
    });
    if (out === undefined) throw integrityError('authentication tag mismatch');
    return out;
  }

  // Runs `body` over `size` bytes of the I/O area, then zeroes them — and on
  // an exception the WASM scratch too — whatever happens.
  #withIo<T>(size: number, body: (base: number, mem: Uint8Array, view: DataView) => T): T {
    const base = this.reserve(size);
    try {
      return body(base, this.#u8, this.#dv);
    } catch (err) {
      this.#x.scratchClear();
      throw err;
    } finally {
      this.#u8.fill(0, base, base + size);
    }
  }

  // Turns the counter blocks at [offset, offset + length) into keystream.
  #fillKeystream(key: Uint8Array, slot: number, offset: number, length: number): void {
    if (this.#keystream === null) this.#x.ecbEncrypt(slot, offset, length / 16);
    else this.#keystream(key, this.#u8, offset, length);
  }

  /** Seals item i under `dek` with nonce i of `nonces` (SPEC §3.1, §3.2). */
  sealBatch(dek: Dek, nonces: NonceRange, items: readonly SealItem[]): Uint8Array[] {
    if (nonces.count !== items.length) throw new RangeError(`${items.length} items but ${nonces.count} nonces`);
    for (const item of items) {
      checkSealFlag(item.aad, item.flag);
      checkPurpose(dek, item.aad);
      checkValueHeader(item.aad);
    }
    const slot = this.slotFor(dek.key);
    const out: Uint8Array[] = new Array(items.length);
    for (let start = 0; start < items.length; ) {
      const end = chunkEnd(items, start, (item) => item.plaintext.length);
      this.#sealChunk(slot, dek, nonces, items, start, end, out);
      start = end;
    }
    return out;
  }

  #sealChunk(slot: number, dek: Dek, nonces: NonceRange, items: readonly SealItem[], start: number, end: number, out: Uint8Array[]): void {
    const count = end - start;
    const plan = new Layout();
    const hdr = plan.take(HDR_BYTES);
    const recs = plan.take(count * REC_BYTES);
    let maxKey = 0;
    let inBytes = 0;
    let outBytes = 0;
    let ksBytes = 0;
    for (let i = start; i < end; i++) {
      const item = items[i]!;
      const len = item.plaintext.length;
      if (item.aad.kind === 'storage') {
        maxKey = Math.max(maxKey, item.aad.storeKey.length);
        inBytes += len + VALUE_HEADER_BYTES + item.aad.storeKey.length;
      } else {
        inBytes += len;
      }
      outBytes += len + ENVELOPE_OVERHEAD;
      ksBytes += keystreamBytes(len);
    }
    const aad = plan.take(AAD_FIXED + maxKey);
    const input = plan.take(inBytes);
    const output = plan.take(outBytes);
    const ks = plan.take(ksBytes);
    const sealed = this.#withIo(plan.size, (base, m, dv) => {
      dv.setUint32(base + hdr, slot, true);
      dv.setUint32(base + hdr + 4, dek.keyId, true);
      m.set(nonces.prefix, base + hdr + 8);
      dv.setBigUint64(base + hdr + 16, nonces.start + BigInt(start), true);
      dv.setUint32(base + hdr + 24, base + aad, true);

      let inAt = base + input;
      let outAt = base + output;
      let ksAt = base + ks;
      for (let i = start; i < end; i++) {
        const item = items[i]!;
        const r = base + recs + (i - start) * REC_BYTES;
        const len = item.plaintext.length;
        dv.setUint32(r, (item.aad.kind === 'raft' ? 0x100 : 0) | item.flag, true);
        dv.setUint32(r + 4, inAt, true);
        dv.setUint32(r + 8, len, true);
        m.set(item.plaintext, inAt);
        inAt += len;
        inAt = this.#writeLocation(r, item.aad, inAt);
        dv.setUint32(r + 24, outAt, true);
        dv.setUint32(r + 28, ksAt, true);
        outAt += len + ENVELOPE_OVERHEAD;
        ksAt += keystreamBytes(len);
      }
      this.#x.writeCounters(count, base + hdr, base + recs, 0);
      this.#fillKeystream(dek.key, slot, base + ks, ksBytes);
      this.#x.sealBatch(count, base + hdr, base + recs);

      return m.slice(base + output, base + output + outBytes);
    });
    let at = 0;
    for (let i = start; i < end; i++) {
      const size = items[i]!.plaintext.length + ENVELOPE_OVERHEAD;
      out[i] = sealed.subarray(at, at + size);
      at += size;
    }
  }

  // Copies a storage AAD's value header and store key to `at` and points
  // record `r` at them (a raft AAD has neither); returns the next free byte.
  #writeLocation(r: number, aad: AadContext, at: number): number {
    const dv = this.#dv;
    if (aad.kind === 'raft') {
      dv.setUint32(r + 12, 0, true);
      dv.setUint32(r + 16, 0, true);
      dv.setUint32(r + 20, 0, true);
      return at;
    }
    this.#u8.set(aad.valueHeader, at);
    dv.setUint32(r + 12, at, true);
    this.#u8.set(aad.storeKey, at + VALUE_HEADER_BYTES);
    dv.setUint32(r + 16, at + VALUE_HEADER_BYTES, true);
    dv.setUint32(r + 20, aad.storeKey.length, true);
    return at + VALUE_HEADER_BYTES + aad.storeKey.length;
  }

  /** Opens every item; a failure marks only its own item (SPEC §3.1). */
  openBatch(keys: KeyLookup, items: readonly OpenItem[]): OpenResult[] {
    for (const item of items) checkValueHeader(item.aad);
    const results: OpenResult[] = new Array(items.length);
    // Per item: its DEK, or undefined when framing or key lookup fails
    // (WASM re-checks framing, then the error comes from `locate`).
    const deks: (Dek | undefined)[] = new Array(items.length);
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      const keyId = envelopeKeyId(item.envelope);
      if (keyId === undefined) continue;
      const dek = keys.get(keyId);
      deks[i] = dek !== undefined && dek.purpose === item.aad.kind ? dek : undefined;
    }
    for (let start = 0; start < items.length; ) {
      const end = this.#openChunkEnd(items, deks, start);
      this.#openChunk(keys, items, deks, start, end, results);
      start = end;
    }
    return results;
  }

  // A chunk is bounded in bytes and in distinct keys (each needs a slot).
  #openChunkEnd(items: readonly OpenItem[], deks: readonly (Dek | undefined)[], start: number): number {
    const byBytes = chunkEnd(items, start, (item) => item.envelope.length);
    const distinct = new Set<Dek>();
    for (let i = start; i < byBytes; i++) {
      const dek = deks[i];
      if (dek === undefined || distinct.has(dek)) continue;
      if (distinct.size === this.#slots.length) return i;
      distinct.add(dek);
    }
    return byBytes;
  }

  #openChunk(keys: KeyLookup, items: readonly OpenItem[], deks: readonly (Dek | undefined)[], start: number, end: number, results: OpenResult[]): void {
    const count = end - start;
    const plan = new Layout();
    const recs = plan.take(count * REC_BYTES);
    const status = plan.take(count);
    let maxKey = 0;
    let inBytes = 0;
    let outBytes = 0;
    const groups = new Map<Dek, number[]>();
    for (let i = start; i < end; i++) {
      const item = items[i]!;
      if (item.aad.kind === 'storage') {
        maxKey = Math.max(maxKey, item.aad.storeKey.length);
        inBytes += VALUE_HEADER_BYTES + item.aad.storeKey.length;
      }
      inBytes += item.envelope.length;
      outBytes += Math.max(0, item.envelope.length - ENVELOPE_OVERHEAD);
      const dek = deks[i];
      if (dek !== undefined) {
        const group = groups.get(dek);
        if (group === undefined) groups.set(dek, [i]);
        else group.push(i);
      }
    }
    const aad = plan.take(AAD_FIXED + maxKey);
    const input = plan.take(inBytes);
    const output = plan.take(outBytes);
    let ksBytes = 0;
    for (const group of groups.values()) for (const i of group) ksBytes += keystreamBytes(items[i]!.envelope.length - ENVELOPE_OVERHEAD);
    const ks = plan.take(ksBytes);
    const slots = new Map<Dek, number>();
    for (const dek of groups.keys()) slots.set(dek, this.slotFor(dek.key));
    const [plain, codes] = this.#withIo(plan.size, (base, m, dv) => {
      let inAt = base + input;
      let outAt = base + output;
      for (let i = start; i < end; i++) {
        const item = items[i]!;
        const r = base + recs + (i - start) * REC_BYTES;
        const env = item.envelope;
        const dek = deks[i];
        dv.setUint32(r, item.aad.kind === 'raft' ? 1 : 0, true);
        dv.setUint32(r + 4, inAt, true);
        dv.setUint32(r + 8, env.length, true);
        m.set(env, inAt);
        inAt += env.length;
        inAt = this.#writeLocation(r, item.aad, inAt);
        dv.setUint32(r + 24, outAt, true);
        dv.setUint32(r + 28, 0, true);
        dv.setUint32(r + 32, dek === undefined ? NO_SLOT : slots.get(dek)!, true);
        outAt += Math.max(0, env.length - ENVELOPE_OVERHEAD);
      }
      // Keystream is laid out key by key: one AES-ECB run per key.
      const runs: [Dek, number, number][] = [];
      let ksAt = base + ks;
      for (const [dek, group] of groups) {
        const from = ksAt;
        for (const i of group) {
          dv.setUint32(base + recs + (i - start) * REC_BYTES + 28, ksAt, true);
          ksAt += keystreamBytes(items[i]!.envelope.length - ENVELOPE_OVERHEAD);
        }
        runs.push([dek, from, ksAt - from]);
      }
      this.#x.writeCounters(count, 0, base + recs, 1);
      for (const [dek, from, length] of runs) this.#fillKeystream(dek.key, slots.get(dek)!, from, length);
      this.#x.openBatch(count, base + recs, base + status, base + aad);

      return [m.slice(base + output, base + output + outBytes), m.slice(base + status, base + status + count)] as const;
    });
    let at = 0;
    for (let i = start; i < end; i++) {
      const item = items[i]!;
      const len = Math.max(0, item.envelope.length - ENVELOPE_OVERHEAD);
      const code = codes[i - start]!;
      if (code === STATUS_OK) {
        const dek = deks[i]!;
        results[i] = { ok: true, plaintext: plain.subarray(at, at + len), flag: item.envelope[1]!, keyId: dek.keyId };
      } else {
        results[i] = { ok: false, error: failure(keys, item, code) };
      }
      at += len;
    }
  }
}

/**
 * A CryptoBackend over its own WasmCore; `keystream` null runs AES in WASM
 * (the `wasm` backend), else it supplies the keystream (the `batch` backend).
 */
export abstract class WasmCoreBackend implements CryptoBackend {
  abstract readonly name: BackendName;
  readonly #core: WasmCore;

  constructor(keystream: KeystreamFn | null) {
    this.#core = new WasmCore(keystream);
  }

  aeadSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    return this.#core.aeadSeal(key, nonce, aad, plaintext);
  }

  aeadOpen(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Uint8Array {
    return this.#core.aeadOpen(key, nonce, aad, sealed);
  }

  sealBatch(dek: Dek, nonces: NonceRange, items: readonly SealItem[]): Uint8Array[] {
    return this.#core.sealBatch(dek, nonces, items);
  }

  openBatch(keys: KeyLookup, items: readonly OpenItem[]): OpenResult[] {
    return this.#core.openBatch(keys, items);
  }

  close(): void {
    this.#core.close();
  }
}

// The typed error for a failed open, with the same codes and messages as
// the shared envelope code: framing and key failures are re-derived by it.
function failure(keys: KeyLookup, item: OpenItem, code: number): SealError {
  if (code === STATUS_INTEGRITY) return integrityError('authentication tag mismatch');
  try {
    if (code === STATUS_NO_KEY) locate(keys, item);
    else parseEnvelope(item.envelope, item.aad.kind);
  } catch (err) {
    if (isSealError(err)) return err;
    throw err;
  }
  throw sealError('ErrCryptoBackend', `WASM core reported status ${code} for an envelope the JavaScript side accepts`);
}

/** Keystream bytes for a value of `len` bytes: E(K, J0) and one block per 16 bytes. */
function keystreamBytes(len: number): number {
  return (1 + Math.ceil(len / 16)) * 16;
}

/** The end of the chunk starting at `start`: at least one item, at most CHUNK_BYTES of `size`. */
function chunkEnd<T>(items: readonly T[], start: number, size: (item: T) => number): number {
  let bytes = size(items[start]!);
  let end = start + 1;
  while (end < items.length && bytes + size(items[end]!) <= CHUNK_BYTES) bytes += size(items[end++]!);
  return end;
}

function equalKey(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}
