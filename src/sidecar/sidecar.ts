// The sidecar file `<data-dir>/encryption/keys.json` (SPEC §4.3): the
// node's wrapped DEKs, rollout flags and the Raft index they are current to.
//
// One Sidecar object owns the file for the life of the process. Its state
// changes only through a durable write: the new state is validated, written
// (durable.ts), and only then becomes `state`. Writes are serialised. If a
// write fails the object refuses every later change: the process must stop,
// and start again from whatever the disk holds.
//
// `apply(index, changes)` is idempotent by Raft index (SPEC §6): an entry at
// or below `raft_applied_index` has already changed the file and is skipped,
// so replaying the log after a crash leaves the sidecar alone. The index is
// written in the same file write as the change it records (SPEC §10).

import fs from 'node:fs/promises';
import path from 'node:path';
import { MAX_LOCAL_EPOCH, type Purpose } from '../crypto/index.js';
import { sealError } from '../errors/index.js';
import { nodeDurableFs, writeFileDurably, TMP_SUFFIX, type DurableFs } from './durable.js';
import { EMPTY_SIDECAR_STATE, freezeState, MAX_SIDECAR_BYTES, parseSidecar, serializeSidecar, sidecarTextProblem, type SidecarKey, type SidecarState } from './schema.js';

export const SIDECAR_DIR = 'encryption';
export const SIDECAR_FILE = 'keys.json';
/** Above this local_epoch, starts log a warning: rotate the DEK soon. */
export const LOCAL_EPOCH_WARN = 0xff00;

/** One change carried by an encryption-relevant Raft entry (SPEC §7). */
export type SidecarChange =
  /** A new DEK; `localEpoch` (default 0) for a DEK this node may have used before (repair, SPEC §10). */
  | { readonly type: 'add-key'; readonly keyId: number; readonly purpose: Purpose; readonly wrapped: Uint8Array; readonly kek: string; readonly created: string; readonly localEpoch?: number }
  | { readonly type: 'rewrap-key'; readonly keyId: number; readonly wrapped: Uint8Array; readonly kek: string }
  | { readonly type: 'set-active'; readonly purpose: Purpose; readonly keyId: number }
  | { readonly type: 'retire-key'; readonly keyId: number }
  | { readonly type: 'enable-storage-envelope' }
  /** Records the applying entry's own index as raft_envelope_cutover_index. */
  | { readonly type: 'raft-envelope-cutover' };

export interface EpochBump {
  /** key_id → the local_epoch to use in this process lifetime. */
  readonly epochs: ReadonlyMap<number, number>;
  /** One line per DEK above LOCAL_EPOCH_WARN. */
  readonly warnings: readonly string[];
}

export function sidecarPath(dataDir: string): string {
  return path.join(dataDir, SIDECAR_DIR, SIDECAR_FILE);
}

export class Sidecar {
  readonly file: string;
  readonly #durable: DurableFs;
  #state: SidecarState;
  #present: boolean;
  #queue: Promise<unknown> = Promise.resolve();
  #failed: unknown = undefined;

  private constructor(file: string, state: SidecarState, present: boolean, durable: DurableFs) {
    this.file = file;
    this.#state = state;
    this.#present = present;
    this.#durable = durable;
  }

  static async exists(dataDir: string): Promise<boolean> {
    try {
      await fs.access(sidecarPath(dataDir));
      return true;
    } catch {
      return false;
    }
  }

  /** Reads and validates keys.json (ErrSidecarCorrupt); a leftover keys.json.tmp is discarded, never read. */
  static async load(dataDir: string, durable: DurableFs = nodeDurableFs): Promise<Sidecar> {
    const file = sidecarPath(dataDir);
    const handle = await fs.open(file, 'r');
    let text: string;
    try {
      const { size } = await handle.stat();
      if (size > MAX_SIDECAR_BYTES) throw sealError('ErrSidecarCorrupt', `${file} is ${size} bytes, more than any sidecar (${MAX_SIDECAR_BYTES})`);
      text = await handle.readFile('utf8');
    } finally {
      await handle.close();
    }
    const state = parseSidecar(text, file);
    await fs.rm(file + TMP_SUFFIX, { force: true });
    return new Sidecar(file, state, true, durable);
  }

  /** A sidecar with no keys that is not on disk yet: its first apply creates the file. */
  static empty(dataDir: string, durable: DurableFs = nodeDurableFs): Sidecar {
    return new Sidecar(sidecarPath(dataDir), EMPTY_SIDECAR_STATE, false, durable);
  }

  get state(): SidecarState {
    return this.#state;
  }

  /** Whether keys.json exists on disk. */
  get present(): boolean {
    return this.#present;
  }

  /** True when the entry at `raftIndex` has already changed the sidecar. */
  isApplied(raftIndex: number): boolean {
    return raftIndex <= this.#state.raftAppliedIndex;
  }

  /**
   * Applies one encryption-relevant entry's changes and writes them durably,
   * together with `raftIndex`. Returns false (and writes nothing) when the
   * entry was already applied. Changes that do not fit the state (a key_id
   * that exists, an unknown key, retiring an active key) are ErrEncryptionApply.
   */
  async apply(raftIndex: number, changes: readonly SidecarChange[]): Promise<boolean> {
    if (!Number.isSafeInteger(raftIndex) || raftIndex < 1) throw new RangeError(`raft index ${raftIndex} is not a positive integer`);
    return this.#serialise(async () => {
      if (this.isApplied(raftIndex)) return false;
      const next = applySidecarChanges(this.#state, raftIndex, changes);
      await this.#write(next, 'ErrEncryptionApply');
      return true;
    });
  }

  /**
   * The per-start bump (SPEC §4.3): local_epoch += 1 for every DEK, durable
   * before returning. ErrLocalEpochExhausted if any DEK is already at 0xFFFF
   * (only rotation recovers), and then nothing is written.
   */
  async bumpLocalEpochs(): Promise<EpochBump> {
    return this.#serialise(async () => {
      const keys = new Map<number, SidecarKey>();
      const epochs = new Map<number, number>();
      const warnings: string[] = [];
      checkEpochsLeft(this.#state);
      for (const key of this.#state.keys.values()) {
        // An exhausted DEK that is no longer active never seals again: it keeps its epoch.
        if (key.localEpoch >= MAX_LOCAL_EPOCH) {
          keys.set(key.keyId, key);
          epochs.set(key.keyId, key.localEpoch);
          continue;
        }
        const localEpoch = key.localEpoch + 1;
        if (localEpoch > LOCAL_EPOCH_WARN) {
          warnings.push(`DEK ${key.keyId} (${key.purpose}) is at local_epoch ${localEpoch} of ${MAX_LOCAL_EPOCH}: ${MAX_LOCAL_EPOCH - localEpoch} restarts left; rotate it (rotate-dek --purpose=${key.purpose})`);
        }
        keys.set(key.keyId, { ...key, localEpoch });
        epochs.set(key.keyId, localEpoch);
      }
      if (keys.size > 0) await this.#write(freezeState({ ...this.#state, keys }), 'ErrSidecarCorrupt');
      return { epochs, warnings };
    });
  }

  /** Replaces the whole state (resync-sidecar from the leader's GetSidecarState, SPEC §10). */
  async overwrite(state: SidecarState): Promise<void> {
    await this.#serialise(() => this.#write(freezeState(state), 'ErrSidecarCorrupt'));
  }

  async #write(next: SidecarState, invalidCode: 'ErrEncryptionApply' | 'ErrSidecarCorrupt'): Promise<void> {
    // Never write what the next start could not read: validate the very text.
    const text = serializeSidecar(next);
    const problem = sidecarTextProblem(text);
    if (problem !== undefined) throw sealError(invalidCode, `refusing to write ${this.file}: ${problem}`);
    try {
      await fs.mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
      await writeFileDurably(this.file, text, this.#durable);
    } catch (err) {
      this.#failed = err;
      throw err;
    }
    this.#state = next;
    this.#present = true;
  }

  #serialise<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(() => {
      if (this.#failed !== undefined) {
        throw new Error(`${this.file}: an earlier write failed; restart the process to reload the sidecar`, { cause: this.#failed });
      }
      return task();
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }
}

/**
 * ErrLocalEpochExhausted when an active DEK has no local_epoch left to bump
 * to. A DEK that was rotated away only opens, so its epoch does not matter:
 * rotating the exhausted DEK (from another node) is what lets this node start.
 */
export function checkEpochsLeft(state: SidecarState): void {
  const active = new Set(Object.values(state.active));
  for (const key of state.keys.values()) {
    if (active.has(key.keyId) && key.localEpoch >= MAX_LOCAL_EPOCH) {
      throw sealError('ErrLocalEpochExhausted', `DEK ${key.keyId} (${key.purpose}) has used every local_epoch on this node; rotate it (rotate-dek --purpose=${key.purpose}) from another node, then restart this one`);
    }
  }
}

/**
 * The state after one entry's changes, without writing anything (apply()
 * writes it; resync-sidecar replays many entries, then writes once).
 * Changes that do not fit the state are ErrEncryptionApply.
 */
export function applySidecarChanges(state: SidecarState, raftIndex: number, changes: readonly SidecarChange[]): SidecarState {
  const keys = new Map(state.keys);
  const active = { ...state.active };
  let storageEnvelopeActive = state.storageEnvelopeActive;
  let cutover = state.raftEnvelopeCutoverIndex;
  const refuse = (reason: string) => sealError('ErrEncryptionApply', `entry ${raftIndex}: ${reason}`);
  const existing = (keyId: number): SidecarKey => {
    const key = keys.get(keyId);
    if (key === undefined) throw refuse(`key_id ${keyId} is not in the sidecar`);
    return key;
  };
  for (const change of changes) {
    switch (change.type) {
      case 'add-key':
        if (!Number.isInteger(change.keyId) || change.keyId < 1 || change.keyId > 0xffffffff) throw refuse(`key_id ${change.keyId} is not a non-zero uint32`);
        if (keys.has(change.keyId)) throw refuse(`key_id ${change.keyId} already exists`);
        keys.set(change.keyId, {
          keyId: change.keyId,
          purpose: change.purpose,
          wrapped: Uint8Array.from(change.wrapped),
          created: change.created,
          localEpoch: change.localEpoch ?? 0,
          kek: change.kek,
        });
        break;
      case 'rewrap-key':
        keys.set(change.keyId, { ...existing(change.keyId), wrapped: Uint8Array.from(change.wrapped), kek: change.kek });
        break;
      case 'set-active': {
        const key = existing(change.keyId);
        if (key.purpose !== change.purpose) throw refuse(`key_id ${change.keyId} is a ${key.purpose} key, not ${change.purpose}`);
        active[change.purpose] = change.keyId;
        break;
      }
      case 'retire-key': {
        const key = existing(change.keyId);
        if (active[key.purpose] === change.keyId) throw refuse(`key_id ${change.keyId} is the active ${key.purpose} key and cannot be retired`);
        keys.delete(change.keyId);
        break;
      }
      case 'enable-storage-envelope':
        storageEnvelopeActive = true;
        break;
      case 'raft-envelope-cutover':
        if (cutover !== null) throw refuse(`the raft envelope cutover already happened at ${cutover}`);
        cutover = raftIndex;
        break;
    }
  }
  return freezeState({ raftAppliedIndex: raftIndex, storageEnvelopeActive, raftEnvelopeCutoverIndex: cutover, active, keys });
}
