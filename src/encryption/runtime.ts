// The node-local side of the rollout: the keystore, the sealer and its
// nonce factories, the sidecar, and the replicated encryption state as this
// node has applied it. It applies the encryption entries (tags 0x03..0x05),
// switches the store's sealing, opens and wraps Raft payloads around the
// cutover, and admits proposals on the leader. README.md of this folder has
// the rules; SPEC §3.3, §4, §5.3, §6, §7, §8 and §10 are the source.
//
// Apply order for an entry that changes keys.json (SPEC §10): new DEKs are
// unwrapped first (a KEK failure halts before anything changes), then the
// sidecar is written durably, then the keystore learns the keys, and the
// store rows are staged in the entry's own store batch, which the state
// machine writes right after the handler returns. Decisions (already
// bootstrapped? registration allowed?) come from the store rows only.

import crypto from 'node:crypto';
import { NonceFactory, RAFT_AAD, Sealer, nodeId16, type CryptoBackend, type Keystore, type Purpose } from '../crypto/index.js';
import { isSealError, sealError, type SealError } from '../errors/index.js';
import { TAG_BOOTSTRAP_ENCRYPTION, TAG_HLC_CEILING, TAG_KEY_CHANGE, TAG_WRITER_REGISTRATION, packHlc, type ApplyTx } from '../fsm/index.js';
import { timedUnwrap, type KekProvider } from '../kek/index.js';
import type { Logger } from '../log/index.js';
import type { SealkvMetrics } from '../metrics/index.js';
import type { Sidecar, SidecarChange, SidecarKey, SidecarState } from '../sidecar/index.js';
import type { BatchSealPool, Store } from '../store/index.js';
import type { Capability } from './capability.js';
import { decodeEncryptionPayload, isCutoverPayload, type EncryptionPayload, type KeyRecord, type WriterIdentity, type WriterRegistration } from './payload.js';
import {
  KEY_ROW_PREFIX,
  ROLLOUT_ROW_KEY,
  WRITER_ROW_PREFIX,
  decodeKeyRow,
  decodeRollout,
  decodeSuperseded,
  decodeWriterRow,
  encodeKeyRow,
  encodeRollout,
  encodeSuperseded,
  encodeWriterRow,
  keyIdOfKeyRow,
  keyRowKey,
  supersededRowKey,
  writerRegistryKey,
  writerRowPrefix,
  type Rollout,
  type Superseded,
  type WriterRow,
} from './rows.js';

/** The version string a node reports in its capability. */
export const BUILD = 'sealkv/0.1.0';

/** What an encryption entry's apply answers its proposer (msgpack-able). */
export type ApplyAnswer = { ok: true } | { ok: false; code: string; message: string };

const ENVELOPE_MIN = 34;

/** A Raft envelope, told apart from a cleartext payload without a key: byte 1 is the flag 0x00, never a wire version 0x01. */
export function isRaftEnvelope(payload: Uint8Array): boolean {
  return payload.length >= ENVELOPE_MIN && payload[0] === 0x01 && payload[1] === 0x00;
}

/** Internal payloads pass the cutover barrier (HLC ceiling and encryption admin). */
export function isInternalPayload(payload: Uint8Array): boolean {
  const tag = payload[0];
  return tag === TAG_HLC_CEILING || tag === TAG_WRITER_REGISTRATION || tag === TAG_BOOTSTRAP_ENCRYPTION || tag === TAG_KEY_CHANGE;
}

export interface RuntimeOptions {
  raftId: string;
  store: Store;
  keystore: Keystore;
  backend: CryptoBackend;
  /** Present when --encryption-enabled (keys loaded and epochs bumped by openKeysAtStart). */
  sidecar?: Sidecar;
  kek?: KekProvider;
  compression: boolean;
  logger: Logger;
  metrics?: SealkvMetrics;
  pool?: BatchSealPool;
  /** Seals allowed per (DEK, process); tests lower it. Default 2^32 (SPEC §3.3). */
  writeCeiling?: number;
  /** Called once per DEK when its write count reaches 90% of the ceiling. */
  onNearCeiling?: (keyId: number) => void;
}

function reject(code: string, message: string): ApplyAnswer {
  return { ok: false, code, message };
}

export class EncryptionRuntime {
  readonly fullNodeId: string;
  readonly nodeId16: number;
  readonly keystore: Keystore;
  readonly sealer: Sealer;
  readonly sidecar: Sidecar | undefined;
  readonly kek: KekProvider | undefined;
  readonly #options: RuntimeOptions;
  readonly #store: Store;
  #rollout: Rollout;
  /** Registry rows under this node's node_id16 (any full id), by key_id. */
  #myRows = new Map<number, WriterRow>();
  /**
   * DEKs under which this process's own local_epoch is registered: its own
   * registration entry applied, or the DEK arrived in this process (its
   * epoch is then the one the entry registered). A row loaded from the
   * store never counts: it may be a restored copy's own old epoch.
   */
  readonly #lifetimeRegistered = new Set<number>();
  /** DEKs this process added to the sidecar by applying their entry. */
  readonly #addedThisProcess = new Set<number>();
  /** Cutover seen in apply order before its entry applied (same driver batch). */
  #seenCutover: number | null = null;
  /** Cutover entry present in this node's log (leader's appends or received). */
  #logCutover: number | null = null;
  /** A cutover this leader admitted that has not shown up in the log yet. */
  #gateCutover = false;
  #barrier = false;
  /** Called when keys arrive that this process is not registered under (snapshot install). */
  onRegistrationNeeded: (() => void) | undefined;
  /**
   * Whether this node is a member as of the entry being applied. A node that
   * joined later replays the entries from before its membership without a
   * registry row of its own (the leader registers it only when it joins);
   * the halt of SPEC §5.3 is for members. Undefined (Raft not started yet,
   * or no driver) counts as not a member: every member has a row from
   * bootstrap or from its join, so this only decides for a joiner.
   */
  isMember: (() => boolean) | undefined;

  private constructor(options: RuntimeOptions, rollout: Rollout) {
    this.#options = options;
    this.#store = options.store;
    this.fullNodeId = options.raftId;
    this.nodeId16 = nodeId16(options.raftId);
    this.keystore = options.keystore;
    this.sidecar = options.sidecar;
    this.kek = options.kek;
    this.#rollout = rollout;
    this.sealer = new Sealer({
      keystore: options.keystore,
      backend: options.backend,
      nonceFactory: (dek) =>
        new NonceFactory({
          nodeId: this.nodeId16,
          localEpoch: this.epochOf(dek.keyId),
          ...(options.writeCeiling === undefined ? {} : { ceiling: options.writeCeiling }),
          onNearCeiling: () => options.onNearCeiling?.(dek.keyId),
        }),
    });
  }

  /** Loads the replicated state from the store and hands the store its sealer. */
  static async open(options: RuntimeOptions): Promise<EncryptionRuntime> {
    const runtime = new EncryptionRuntime(options, decodeRollout(await options.store.getInternal(ROLLOUT_ROW_KEY)));
    await runtime.#loadRows();
    runtime.#refresh();
    options.metrics?.encryptionValueOverheadBytes.set(ENVELOPE_MIN);
    return runtime;
  }

  get enabled(): boolean {
    return this.sidecar !== undefined;
  }

  get rollout(): Rollout {
    return this.#rollout;
  }

  get bootstrapped(): boolean {
    return this.#rollout.active.storage !== undefined;
  }

  /** The cutover index this node applied (or met in apply order), null before Phase 2. */
  get cutoverIndex(): number | null {
    return this.#rollout.raftEnvelopeCutoverIndex ?? this.sidecar?.state.raftEnvelopeCutoverIndex ?? this.#seenCutover;
  }

  /** This process's local_epoch for a DEK (sidecar, bumped at start). */
  epochOf(keyId: number): number {
    const key = this.sidecar?.state.keys.get(keyId);
    if (key === undefined) throw sealError('ErrUnknownKeyId', `key_id ${keyId} is not in this node's sidecar`);
    return key.localEpoch;
  }

  isRegisteredThisLifetime(keyId: number): boolean {
    return this.#lifetimeRegistered.has(keyId);
  }

  /** The writers registered under a DEK (every member that may seal under it). */
  async writersUnder(keyId: number): Promise<{ nodeId16: number; fullNodeId: string }[]> {
    const prefix = writerRowPrefix(keyId);
    return (await this.#store.scanInternal(prefix)).map(({ key, value }) => ({
      nodeId16: Number(key.subarray(prefix.length).toString('latin1')),
      fullNodeId: decodeWriterRow(value).fullNodeId,
    }));
  }

  /** The KEK description recorded for a DEK in the replicated rows. */
  async kekOf(keyId: number): Promise<string | undefined> {
    const row = await this.#store.getInternal(keyRowKey(keyId));
    return row === undefined ? undefined : decodeKeyRow(keyId, row).kek;
  }

  /** When a DEK stopped being active (the rotation that replaced it), as the replicated rows record it. */
  async supersededOf(keyId: number): Promise<Superseded | undefined> {
    const row = await this.#store.getInternal(supersededRowKey(keyId));
    return row === undefined ? undefined : decodeSuperseded(keyId, row);
  }

  /** Unretired DEKs as the replicated rows hold them. */
  storeKeys(): Promise<KeyRecord[]> {
    return this.#storeKeys();
  }

  /** Registry rows under this node's node_id16, by key_id. */
  myRows(): ReadonlyMap<number, WriterRow> {
    return this.#myRows;
  }

  /** DEKs in the sidecar whose local_epoch of this process is not registered yet. */
  unregisteredKeys(): number[] {
    if (this.sidecar === undefined) return [];
    return [...this.sidecar.state.keys.keys()].filter((id) => !this.#lifetimeRegistered.has(id)).sort((a, b) => a - b);
  }

  capability(): Capability {
    let localEpoch = 0;
    for (const key of this.sidecar?.state.keys.values() ?? []) localEpoch = Math.max(localEpoch, key.localEpoch);
    return {
      encryption_capable: this.enabled,
      build: BUILD,
      sidecar_present: this.sidecar?.present ?? false,
      full_node_id: this.fullNodeId,
      local_epoch: localEpoch,
    };
  }

  // ---- start-up checks (SPEC §9, §10) ------------------------------------

  /**
   * Before Raft starts, against the store's replicated rows:
   * - DEKs in the store's rows but no encryption on this node → ErrKEKRequired;
   * - the sidecar's cutover index disagrees with the store's → ErrEnvelopeCutoverDivergence;
   * - the store applied entries the sidecar has not seen, and they changed
   *   the encryption state (keys, wrapping, flags, cutover) → ErrSidecarBehindRaftLog
   *   (checked on the state, so a log compacted past the gap is covered too);
   * - a registry row under this node's node_id16 names another node → ErrNodeIDCollision;
   * - a registry row records this node at or above the epoch it just bumped
   *   to (its sidecar came from an older copy) → ErrLocalEpochRollback.
   */
  async checkAtStart(storeAppliedIndex: number): Promise<void> {
    const keys = await this.#storeKeys();
    const sidecar = this.sidecar;
    if (sidecar === undefined) {
      if (keys.length > 0) {
        throw sealError('ErrKEKRequired', 'the store holds encryption keys (the cluster is bootstrapped) but this node runs without --encryption-enabled and a KEK');
      }
      return;
    }
    const state = sidecar.state;
    const sideCut = state.raftEnvelopeCutoverIndex;
    const storeCut = this.#rollout.raftEnvelopeCutoverIndex;
    if (sideCut !== null && ((storeCut !== null && storeCut !== sideCut) || (storeCut === null && storeAppliedIndex >= sideCut))) {
      throw sealError(
        'ErrEnvelopeCutoverDivergence',
        `keys.json records the raft envelope cutover at ${sideCut} but the store applied ${storeCut === null ? `up to ${storeAppliedIndex} without one there` : `it at ${storeCut}`}: this data dir mixes copies; restore it from one backup or re-add the node as a fresh member`,
      );
    }
    if (storeAppliedIndex > state.raftAppliedIndex) {
      const differs = encryptionStateDiff(state, keys, this.#rollout);
      if (differs !== undefined) {
        throw sealError(
          'ErrSidecarBehindRaftLog',
          `keys.json is current to Raft index ${state.raftAppliedIndex} but the store applied ${storeAppliedIndex}, and encryption changed in between (${differs}); run \`sealkv encryption resync-sidecar\` on this node (see the README's recovery runbook)`,
        );
      }
    }
    for (const key of state.keys.values()) {
      const row = this.#myRows.get(key.keyId);
      if (row === undefined) continue;
      if (row.fullNodeId !== this.fullNodeId) {
        throw sealError('ErrNodeIDCollision', `this node (${this.fullNodeId}) and registered writer ${row.fullNodeId} share node_id16 ${this.nodeId16}; start this node with another --raft-id`);
      }
      if (row.lastSeenLocalEpoch >= key.localEpoch) {
        throw sealError(
          'ErrLocalEpochRollback',
          `DEK ${key.keyId}: local_epoch ${key.localEpoch} is not above the registered ${row.lastSeenLocalEpoch}: keys.json was restored from an older copy; run \`sealkv encryption resync-sidecar\` (see the README's recovery runbook)`,
        );
      }
    }
  }

  /** SPEC §10: a sidecar current to an index past the Raft log's last durable index is corruption. */
  checkLogBounds(lastIndex: number): void {
    const index = this.sidecar?.state.raftAppliedIndex ?? 0;
    if (index > lastIndex) {
      throw sealError('ErrSidecarCorrupt', `keys.json is current to Raft index ${index}, past the Raft log's last index ${lastIndex}: it belongs to another copy of this node, or the log was lost; restore the data dir from one backup`);
    }
  }

  /**
   * GetSidecarState (SPEC §10): what a node whose log was compacted past
   * its sidecar's gap needs — the unretired wrapped DEKs, the flags, the
   * cutover, the applied index, and its own registry epochs.
   */
  async sidecarStateFor(raftId: string, appliedIndex: number): Promise<Record<string, unknown>> {
    const node16 = nodeId16(raftId);
    const registry: Record<string, number> = {};
    for (const { key, value } of await this.#store.scanInternal(WRITER_ROW_PREFIX)) {
      const name = key.toString('latin1');
      if (!name.endsWith(`|${node16}`)) continue;
      const row = decodeWriterRow(value);
      if (row.fullNodeId === raftId) registry[name.slice(WRITER_ROW_PREFIX.length, name.length - `|${node16}`.length)] = row.lastSeenLocalEpoch;
    }
    return {
      raft_applied_index: appliedIndex,
      storage_envelope_active: this.#rollout.storageEnvelopeActive,
      raft_envelope_cutover_index: this.#rollout.raftEnvelopeCutoverIndex,
      active: { ...this.#rollout.active },
      keys: (await this.#storeKeys()).map((k) => ({ key_id: k.keyId, purpose: k.purpose, wrapped: Buffer.from(k.wrapped).toString('base64'), created: k.created, kek: k.kek })),
      registry_for_node: registry,
    };
  }

  // ---- state machine hooks ------------------------------------------------

  /** Applies a 0x03/0x04/0x05 entry (the state machine's extension handler). */
  async handle(payload: Uint8Array, tx: ApplyTx): Promise<ApplyAnswer> {
    const p = decodeEncryptionPayload(payload);
    if (p.kind === 'register') return this.#applyRegister(p.rows, tx);
    const sidecar = this.sidecar;
    if (sidecar === undefined) {
      throw sealError('ErrEncryptionApply', `entry ${tx.index} changes encryption keys but this node runs without --encryption-enabled; restart it with --encryption-enabled and the KEK`);
    }
    const rollout = decodeRollout(await tx.getInternal(ROLLOUT_ROW_KEY));
    const answer = await this.#applyKeyChange(p, tx, rollout, sidecar);
    this.#options.metrics?.encryptionSidecarRaftIndex.set(sidecar.state.raftAppliedIndex);
    return answer;
  }

  /** Before the writes of a request entry: refuse to seal as an unregistered writer (SPEC §5.3). */
  writeGate(writes: number): void {
    if (!this.#rollout.storageEnvelopeActive) return;
    const keyId = this.#rollout.active.storage;
    if (keyId === undefined) return;
    if (this.sidecar === undefined) {
      throw sealError('ErrEncryptionApply', 'the storage envelope is active but this node runs without --encryption-enabled: it cannot seal');
    }
    const row = this.#myRows.get(keyId);
    if (row !== undefined && row.fullNodeId !== this.fullNodeId) {
      throw sealError('ErrEncryptionApply', `node ${this.fullNodeId} shares node_id16 ${this.nodeId16} with registered writer ${row.fullNodeId} under storage DEK ${keyId}: it must not seal`);
    }
    if (row === undefined && this.isMember?.() === true) {
      throw sealError('ErrEncryptionApply', `node ${this.fullNodeId} has no writer-registry row under storage DEK ${keyId}: it must not seal`);
    }
    this.#options.metrics?.encryptionWritesPerDek.inc({ key_id: String(keyId) }, writes);
  }

  /**
   * Before each batch of a rewrite sweep (SPEC §5.3: writes outside apply
   * wait for this process's own registration): this process's local_epoch
   * must be registered under the active storage DEK, else
   * ErrWriterNotRegistered (retryable).
   */
  sweepGate(): void {
    const keyId = this.#rollout.active.storage;
    if (keyId === undefined) throw sealError('ErrEncryptionNotBootstrapped', 'no active storage DEK to re-seal under');
    if (!this.#lifetimeRegistered.has(keyId)) {
      throw sealError('ErrWriterNotRegistered', `node ${this.fullNodeId} is not registered under storage DEK ${keyId} in this process yet`);
    }
  }

  snapshotCutover(): bigint | undefined {
    const cut = this.#rollout.raftEnvelopeCutoverIndex;
    return cut === null ? undefined : BigInt(cut);
  }

  /**
   * After a snapshot install: reload the replicated rows, refuse a cutover
   * that disagrees with the sidecar (ErrEnvelopeCutoverDivergence), and
   * bring the sidecar and keystore up to the snapshot's keys and flags. A
   * DEK new to this node gets local_epoch = max(0, its registry epoch) + 1
   * (SPEC §10), so no nonce it could have used before repeats.
   */
  async afterRestore(info: { appliedIndex: number; cutover: bigint | undefined }): Promise<void> {
    this.#rollout = decodeRollout(await this.#store.getInternal(ROLLOUT_ROW_KEY));
    await this.#loadRows();
    // The log up to the snapshot is gone: a cutover seen there either applied (the rows say so) or was replaced.
    if (this.#logCutover !== null && this.#logCutover <= info.appliedIndex) this.#logCutover = null;
    const snapCut = info.cutover === undefined ? null : Number(info.cutover);
    if (snapCut !== this.#rollout.raftEnvelopeCutoverIndex) {
      throw sealError('ErrEnvelopeCutoverDivergence', `snapshot header cutover ${snapCut ?? 'none'} disagrees with its own rollout row (${this.#rollout.raftEnvelopeCutoverIndex ?? 'none'})`);
    }
    const keys = await this.#storeKeys();
    const sidecar = this.sidecar;
    if (sidecar === undefined) {
      if (keys.length > 0) throw sealError('ErrEncryptionApply', 'an installed snapshot holds encryption keys but this node runs without --encryption-enabled');
      this.#refresh();
      return;
    }
    const sideCut = sidecar.state.raftEnvelopeCutoverIndex;
    if (sideCut !== null && sideCut !== snapCut) {
      throw sealError('ErrEnvelopeCutoverDivergence', `the installed snapshot's cutover index (${snapCut ?? 'none'}) disagrees with this node's sidecar (${sideCut})`);
    }
    const merged = new Map<number, SidecarKey>(sidecar.state.keys);
    const learned: KeyRecord[] = [];
    for (const key of keys) {
      if (merged.has(key.keyId)) continue;
      const registered = this.#myRows.get(key.keyId);
      const localEpoch = Math.max(0, registered?.fullNodeId === this.fullNodeId ? registered.lastSeenLocalEpoch : 0) + 1;
      merged.set(key.keyId, { keyId: key.keyId, purpose: key.purpose, wrapped: key.wrapped, created: key.created, localEpoch, kek: key.kek });
      learned.push(key);
    }
    await this.#unwrapInto(learned);
    await sidecar.overwrite({
      raftAppliedIndex: Math.max(sidecar.state.raftAppliedIndex, info.appliedIndex),
      storageEnvelopeActive: this.#rollout.storageEnvelopeActive || sidecar.state.storageEnvelopeActive,
      raftEnvelopeCutoverIndex: snapCut ?? sideCut,
      active: { ...sidecar.state.active, ...this.#rollout.active },
      keys: merged,
    });
    this.#activate(this.#rollout.active);
    this.#refresh();
    if (learned.length > 0) this.onRegistrationNeeded?.();
  }

  // ---- raft hooks -----------------------------------------------------------

  /** SPEC §6: entries after the cutover are opened before they apply; a failure halts. */
  applyHook(entry: { index: number }, payload: Uint8Array): Uint8Array {
    const cut = this.cutoverIndex;
    if (cut !== null && entry.index > cut) return this.#openRaft(entry.index, payload);
    if (cut === null && isCutoverPayload(payload)) this.#seenCutover = entry.index;
    return payload;
  }

  /** Wrap-on-propose: once this node knows of a cutover, every payload it proposes is a Raft envelope. */
  wrapProposal(payload: Uint8Array): Uint8Array {
    if (!this.#cutoverKnown()) return payload;
    const dek = this.keystore.active('raft');
    // A node catching up (a new learner, a restarted follower) can see the
    // cutover in its log before it applies the entry or installs the
    // snapshot that gives it the raft DEK: retryable, like a registration
    // still in flight.
    if (dek === undefined) throw sealError('ErrWriterNotRegistered', `node ${this.fullNodeId} knows of the raft envelope cutover but has not learned the raft DEK yet (still catching up)`);
    // The registration entry itself is the exception: it is how this process registers.
    if (!this.#lifetimeRegistered.has(dek.keyId) && payload[0] !== TAG_WRITER_REGISTRATION) {
      throw sealError('ErrWriterNotRegistered', `node ${this.fullNodeId} is not registered under raft DEK ${dek.keyId} in this process yet`);
    }
    const envelope = this.sealer.sealOne('raft', payload, 0, RAFT_AAD);
    this.#options.metrics?.encryptionWritesPerDek.inc({ key_id: String(dek.keyId) });
    return envelope;
  }

  /**
   * On the leader, for every proposal about to enter the log: wrapped
   * exactly when the log holds a cutover, and during the cutover barrier
   * only internal payloads (SPEC §8.3).
   */
  admitProposal(payload: Uint8Array): SealError | undefined {
    const wrapped = isRaftEnvelope(payload);
    if (this.#barrier && !wrapped && !isInternalPayload(payload)) {
      return sealError('ErrEnvelopeCutoverInProgress', 'the raft envelope cutover is in progress; retry shortly');
    }
    const cut = this.#cutoverKnown();
    if (wrapped !== cut) {
      return sealError('ErrProposalDropped', wrapped ? 'a wrapped payload before the raft envelope cutover' : 'a cleartext payload after the raft envelope cutover');
    }
    // Only the leader's active raft DEK enters the log: a proposer that has
    // not applied a rotation yet retries under the new DEK, so once every node
    // applied it no new entry names the old one and retire-dek's log check
    // stays true (an entry under a retired DEK would halt every node).
    const active = this.#rollout.active.raft;
    if (wrapped && active !== undefined && Buffer.from(payload).readUInt32BE(2) !== active) {
      return sealError('ErrProposalDropped', `a payload wrapped under raft DEK ${Buffer.from(payload).readUInt32BE(2)}, not the active ${active}; retry`);
    }
    if (!wrapped && isCutoverPayload(payload)) this.#gateCutover = true;
    return undefined;
  }

  /** Which entries entered this node's log: a cutover there decides wrapping before it applies. */
  onLogEntries(entries: readonly { index: number; payload: Uint8Array | null }[]): void {
    for (const e of entries) {
      if (this.#logCutover !== null && e.index <= this.#logCutover) this.#logCutover = null;
      if (e.payload !== null && this.#logCutover === null && isCutoverPayload(e.payload)) {
        this.#logCutover = e.index;
        this.#gateCutover = false;
      }
    }
  }

  beginBarrier(): void {
    this.#barrier = true;
  }

  endBarrier(): void {
    this.#barrier = false;
  }

  /** A cutover this leader admitted did not make it into the log (failed proposal, lost leadership). */
  forgetAdmittedCutover(): void {
    this.#gateCutover = false;
  }

  /** The status of SPEC §12 for this node (without --verify counts). */
  status(): Record<string, unknown> {
    const side = this.sidecar?.state;
    return {
      encryption_enabled: this.enabled,
      full_node_id: this.fullNodeId,
      node_id16: this.nodeId16,
      phase: this.#rollout.raftEnvelopeCutoverIndex !== null ? 'raft-envelope' : this.#rollout.storageEnvelopeActive ? 'storage-envelope' : this.bootstrapped ? 'bootstrapped' : 'cleartext',
      bootstrapped: this.bootstrapped,
      storage_envelope_active: this.#rollout.storageEnvelopeActive,
      raft_envelope_cutover_index: this.#rollout.raftEnvelopeCutoverIndex,
      active: { ...this.#rollout.active },
      keys_present: this.keystore.keyIds(),
      local_epochs: Object.fromEntries([...(side?.keys.values() ?? [])].map((k) => [String(k.keyId), k.localEpoch])),
      registered_this_process: [...this.#lifetimeRegistered].sort((a, b) => a - b),
      sidecar_present: this.sidecar?.present ?? false,
      sidecar_raft_applied_index: side?.raftAppliedIndex ?? null,
    };
  }

  // ---- internals --------------------------------------------------------------

  #cutoverKnown(): boolean {
    return this.cutoverIndex !== null || this.#logCutover !== null || this.#gateCutover;
  }

  #openRaft(index: number, payload: Uint8Array): Uint8Array {
    try {
      const opened = this.sealer.openOne(payload, RAFT_AAD);
      if (this.keystore.get(opened.keyId)?.purpose !== 'raft') throw sealError('ErrEncryptedReadIntegrity', `key_id ${opened.keyId} is not a raft DEK`);
      this.#options.metrics?.encryptionLastProposedIndexPerRaftDek.set({ key_id: String(opened.keyId) }, index);
      return opened.plaintext;
    } catch (err) {
      this.#options.metrics?.encryptionDecryptFailures.inc({ reason: failureReason(err) });
      const why = isSealError(err) ? err.code : 'open failed';
      throw sealError('ErrRaftUnwrapFailed', `raft entry ${index} could not be opened (${why}); apply stopped at the entry before it`, err);
    }
  }

  async #loadRows(): Promise<void> {
    this.#myRows = new Map();
    const suffix = `|${this.nodeId16}`;
    for (const { key, value } of await this.#store.scanInternal(WRITER_ROW_PREFIX)) {
      const name = key.toString('latin1');
      if (!name.endsWith(suffix)) continue;
      const keyId = Number(name.slice(WRITER_ROW_PREFIX.length, name.length - suffix.length));
      if (Number.isInteger(keyId)) this.#noteMyRow(keyId, decodeWriterRow(value));
    }
  }

  async #storeKeys(): Promise<KeyRecord[]> {
    return (await this.#store.scanInternal(KEY_ROW_PREFIX)).map(({ key, value }) => decodeKeyRow(keyIdOfKeyRow(key), value));
  }

  #noteMyRow(keyId: number, row: WriterRow | undefined): void {
    if (row === undefined) {
      this.#myRows.delete(keyId);
      this.#lifetimeRegistered.delete(keyId);
      return;
    }
    this.#myRows.set(keyId, row);
    const epoch = this.sidecar?.state.keys.get(keyId)?.localEpoch;
    if (this.#addedThisProcess.has(keyId) && row.fullNodeId === this.fullNodeId && row.lastSeenLocalEpoch === epoch) this.#lifetimeRegistered.add(keyId);
  }

  /** This process's own registration entry applied for these DEKs (the controller saw it succeed). */
  markRegistered(keyIds: readonly number[]): void {
    for (const keyId of keyIds) {
      const row = this.#myRows.get(keyId);
      if (row !== undefined && row.fullNodeId === this.fullNodeId && row.lastSeenLocalEpoch === this.sidecar?.state.keys.get(keyId)?.localEpoch) this.#lifetimeRegistered.add(keyId);
    }
  }

  /** Store sealing follows the replicated flag and the active storage DEK. */
  #refresh(): void {
    const metrics = this.#options.metrics;
    this.#store.setEncryption({
      sealer: this.sealer,
      active: this.#rollout.storageEnvelopeActive && this.keystore.active('storage') !== undefined,
      compression: this.#options.compression,
      ...(this.#options.pool === undefined ? {} : { pool: this.#options.pool }),
      onOpenFailure: (err) => metrics?.encryptionDecryptFailures.inc({ reason: failureReason(err) }),
    });
    for (const purpose of ['storage', 'raft'] as const) {
      const id = this.#rollout.active[purpose];
      if (id !== undefined) metrics?.encryptionActiveDekId.set({ purpose }, id);
    }
    if (this.sidecar !== undefined) metrics?.encryptionSidecarRaftIndex.set(this.sidecar.state.raftAppliedIndex);
  }

  #activate(active: Rollout['active']): void {
    for (const purpose of ['storage', 'raft'] as const) {
      const id = active[purpose];
      if (id !== undefined && this.keystore.get(id) !== undefined) this.keystore.setActive(purpose, id);
    }
  }

  /** Unwraps DEKs the keystore lacks; any failure halts apply before anything changed. */
  async #unwrapInto(keys: readonly KeyRecord[]): Promise<void> {
    const missing = keys.filter((k) => this.keystore.get(k.keyId) === undefined);
    if (missing.length === 0) return;
    const kek = this.kek;
    if (kek === undefined) throw sealError('ErrEncryptionApply', 'no KEK to unwrap new DEKs with');
    const deks: { key: KeyRecord; dek: Uint8Array }[] = [];
    try {
      for (const key of missing) {
        let unwrapped;
        try {
          unwrapped = await timedUnwrap(kek, key.wrapped, { keyId: key.keyId, purpose: key.purpose });
        } catch (err) {
          throw sealError('ErrEncryptionApply', `DEK ${key.keyId} (${key.purpose}) did not unwrap under this node's KEK (${isSealError(err) ? err.code : 'error'}); fix the KEK and restart: the entry will apply again`, err);
        }
        this.#options.metrics?.encryptionKekUnwrapSeconds.observe(unwrapped.seconds);
        deks.push({ key, dek: unwrapped.dek });
      }
      for (const { key, dek } of deks) this.keystore.install(key.keyId, key.purpose, dek);
    } finally {
      for (const { dek } of deks) dek.fill(0);
    }
  }

  async #applyKeyChange(p: Exclude<EncryptionPayload, { kind: 'register' }>, tx: ApplyTx, rollout: Rollout, sidecar: Sidecar): Promise<ApplyAnswer> {
    const index = tx.index;
    // A refused entry still moves the sidecar's index: it is current to this entry.
    const refuse = async (code: string, message: string): Promise<ApplyAnswer> => {
      await this.#writeSidecar(sidecar, index, p.kind, []);
      return reject(code, message);
    };
    switch (p.kind) {
      case 'bootstrap': {
        if (rollout.active.storage !== undefined) return refuse('ErrEncryptionApply', 'already bootstrapped: a storage DEK exists');
        const storage = p.keys.filter((k) => k.purpose === 'storage');
        const raft = p.keys.filter((k) => k.purpose === 'raft');
        if (storage.length !== 1 || raft.length !== 1) throw sealError('ErrEncryptionApply', `bootstrap entry ${index} must carry one storage and one raft DEK`);
        for (const key of p.keys) {
          if ((await tx.getInternal(keyRowKey(key.keyId))) !== undefined) return refuse('ErrEncryptionApply', `key_id ${key.keyId} already exists`);
        }
        const collision = writerCollision(p.writers);
        if (collision !== undefined) return refuse('ErrNodeIDCollision', collision);
        const active = { storage: storage[0]!.keyId, raft: raft[0]!.keyId };
        await this.#addKeys(index, p.keys, active, sidecar, p.kind);
        const next: Rollout = { ...rollout, active };
        this.#stageKeysAndWriters(tx, p.keys, p.writers, next);
        return { ok: true };
      }
      case 'rotate-dek': {
        if (rollout.active.storage === undefined) return refuse('ErrEncryptionNotBootstrapped', 'rotate-dek before bootstrap');
        if ((await tx.getInternal(keyRowKey(p.key.keyId))) !== undefined) return refuse('ErrEncryptionApply', `key_id ${p.key.keyId} already exists`);
        const active = { ...rollout.active, [p.key.purpose]: p.key.keyId };
        await this.#addKeys(index, [p.key], active, sidecar, p.kind);
        // When the previous DEK stopped being active, for retire-dek: the writes
        // it sealed applied before this entry, so their commit timestamps are at
        // most the last one (whose millisecond is tx.nowMs).
        const previous = rollout.active[p.key.purpose];
        if (previous !== undefined) tx.putInternal(supersededRowKey(previous), encodeSuperseded({ index, belowTs: packHlc(tx.nowMs + 1) }));
        this.#stageKeysAndWriters(tx, [p.key], p.writers, { ...rollout, active });
        return { ok: true };
      }
      case 'rewrap-deks': {
        // Re-wrapped bytes for DEKs this node has; a DEK it lacks (its sidecar
        // fell behind, SPEC §10) is added, unwrapped with this node's KEK, at
        // an epoch above any it is registered with.
        const changes: SidecarChange[] = [];
        const rows: KeyRecord[] = [];
        const missing: KeyRecord[] = [];
        for (const k of p.keys) {
          const row = await tx.getInternal(keyRowKey(k.keyId));
          if (row === undefined) return refuse('ErrUnknownKeyId', `rewrap of unknown key_id ${k.keyId}`);
          const key = { ...decodeKeyRow(k.keyId, row), wrapped: k.wrapped, kek: k.kek };
          rows.push(key);
          if (sidecar.state.keys.has(k.keyId)) changes.push({ type: 'rewrap-key', keyId: k.keyId, wrapped: k.wrapped, kek: k.kek });
          else if (!sidecar.isApplied(index)) missing.push(key);
        }
        await this.#unwrapInto(missing);
        for (const key of missing) {
          const mine = this.#myRows.get(key.keyId);
          const localEpoch = Math.max(0, mine?.fullNodeId === this.fullNodeId ? mine.lastSeenLocalEpoch : 0) + 1;
          changes.push({ type: 'add-key', keyId: key.keyId, purpose: key.purpose, wrapped: key.wrapped, kek: key.kek, created: key.created, localEpoch });
        }
        // The replicated actives, for a sidecar that lost one with its DEK.
        for (const purpose of ['storage', 'raft'] as const) {
          const id = rollout.active[purpose];
          if (id !== undefined && sidecar.state.active[purpose] !== id && (sidecar.state.keys.has(id) || missing.some((k) => k.keyId === id))) {
            changes.push({ type: 'set-active', purpose, keyId: id });
          }
        }
        await this.#writeSidecar(sidecar, index, p.kind, changes);
        this.#activate(rollout.active);
        for (const key of rows) tx.putInternal(keyRowKey(key.keyId), encodeKeyRow(key));
        if (missing.length > 0) this.onRegistrationNeeded?.();
        return { ok: true };
      }
      case 'retire-dek': {
        if (rollout.active.storage === p.keyId || rollout.active.raft === p.keyId) return refuse('ErrEncryptionApply', `key_id ${p.keyId} is active and cannot be retired`);
        if ((await tx.getInternal(keyRowKey(p.keyId))) === undefined) return refuse('ErrUnknownKeyId', `retire of unknown key_id ${p.keyId}`);
        await this.#writeSidecar(sidecar, index, p.kind, sidecar.state.keys.has(p.keyId) ? [{ type: 'retire-key', keyId: p.keyId }] : []);
        this.keystore.remove(p.keyId);
        tx.deleteInternal(keyRowKey(p.keyId));
        tx.deleteInternal(supersededRowKey(p.keyId));
        for (const [key] of await tx.scanInternal(writerRowPrefix(p.keyId))) tx.deleteInternal(key);
        this.#noteMyRow(p.keyId, undefined);
        return { ok: true };
      }
      case 'enable-storage-envelope': {
        if (rollout.active.storage === undefined) return refuse('ErrEncryptionNotBootstrapped', 'enable-storage-envelope before bootstrap');
        await this.#writeSidecar(sidecar, index, p.kind, sidecar.state.storageEnvelopeActive ? [] : [{ type: 'enable-storage-envelope' }]);
        this.#setRollout(tx, { ...rollout, storageEnvelopeActive: true });
        return { ok: true };
      }
      case 'enable-raft-envelope': {
        // The leader proposes the cutover only after bootstrap, and admits one
        // cutover only; the apply hook has already treated this entry as the
        // cutover, so a refusal here would split the two: halt instead.
        if (rollout.active.raft === undefined) throw sealError('ErrEncryptionApply', `cutover entry ${index} before bootstrap`);
        if (rollout.raftEnvelopeCutoverIndex !== null) return refuse('ErrEncryptionApply', `the cutover already happened at ${rollout.raftEnvelopeCutoverIndex}`);
        const sideCut = sidecar.state.raftEnvelopeCutoverIndex;
        if (sideCut !== null && sideCut !== index) {
          throw sealError('ErrEnvelopeCutoverDivergence', `cutover entry ${index} but this node's sidecar records the cutover at ${sideCut}`);
        }
        await this.#writeSidecar(sidecar, index, p.kind, sideCut === null ? [{ type: 'raft-envelope-cutover' }] : []);
        this.#setRollout(tx, { ...rollout, raftEnvelopeCutoverIndex: index });
        this.#seenCutover = null;
        return { ok: true };
      }
    }
  }

  /** New DEKs: unwrap, then the sidecar (durable), then the keystore's actives. Replays skip what is done. */
  async #addKeys(index: number, keys: readonly KeyRecord[], active: Rollout['active'], sidecar: Sidecar, kind: EncryptionPayload['kind']): Promise<void> {
    await this.#unwrapInto(keys);
    const changes: SidecarChange[] = [];
    for (const key of keys) {
      if (!sidecar.state.keys.has(key.keyId)) {
        this.#addedThisProcess.add(key.keyId);
        changes.push({ type: 'add-key', keyId: key.keyId, purpose: key.purpose, wrapped: key.wrapped, kek: key.kek, created: key.created });
      }
    }
    for (const purpose of ['storage', 'raft'] as const) {
      const id = active[purpose];
      if (id !== undefined && sidecar.state.active[purpose] !== id && keys.some((k) => k.keyId === id)) changes.push({ type: 'set-active', purpose, keyId: id });
    }
    await this.#writeSidecar(sidecar, index, kind, changes);
    this.#activate(active);
  }

  /**
   * The sidecar write of an entry (SPEC §10: before its store batch). The
   * crash tests stop the process on either side of it with
   * SEALKV_TEST_FAULT=before-sidecar-write|after-sidecar-write[:<entry kind>]
   * (SIGKILL, as a power cut would); a replay after the restart does not
   * write again and so does not stop again.
   */
  async #writeSidecar(sidecar: Sidecar, index: number, kind: EncryptionPayload['kind'], changes: readonly SidecarChange[]): Promise<void> {
    const writes = !sidecar.isApplied(index);
    if (writes) testFault('before-sidecar-write', kind);
    await sidecar.apply(index, changes);
    if (writes) testFault('after-sidecar-write', kind);
  }

  #stageKeysAndWriters(tx: ApplyTx, keys: readonly KeyRecord[], writers: readonly WriterIdentity[], next: Rollout): void {
    for (const key of keys) {
      tx.putInternal(keyRowKey(key.keyId), encodeKeyRow(key));
      for (const w of writers) {
        const row: WriterRow = { fullNodeId: w.fullNodeId, firstSeenLocalEpoch: w.localEpoch, lastSeenLocalEpoch: w.localEpoch };
        tx.putInternal(writerRegistryKey(key.keyId, w.nodeId16), encodeWriterRow(row));
        if (w.nodeId16 === this.nodeId16) this.#noteMyRow(key.keyId, row);
      }
    }
    this.#setRollout(tx, next);
  }

  #setRollout(tx: ApplyTx, next: Rollout): void {
    tx.putInternal(ROLLOUT_ROW_KEY, encodeRollout(next));
    this.#rollout = next;
    this.#refresh();
  }

  /** SPEC §8.4 apply rules, all rows of an entry or none. */
  async #applyRegister(rows: readonly WriterRegistration[], tx: ApplyTx): Promise<ApplyAnswer> {
    const staged: [WriterRegistration, WriterRow][] = [];
    for (const r of rows) {
      if ((await tx.getInternal(keyRowKey(r.keyId))) === undefined) return reject('ErrUnknownKeyId', `registration under unknown or retired key_id ${r.keyId}`);
      const raw = await tx.getInternal(writerRegistryKey(r.keyId, r.nodeId16));
      const existing = raw === undefined ? undefined : decodeWriterRow(raw);
      if (existing === undefined) {
        staged.push([r, { fullNodeId: r.fullNodeId, firstSeenLocalEpoch: r.localEpoch, lastSeenLocalEpoch: r.localEpoch }]);
      } else if (existing.fullNodeId !== r.fullNodeId) {
        return reject('ErrNodeIDCollision', `node ${r.fullNodeId} and node ${existing.fullNodeId} share node_id16 ${r.nodeId16}; give one of them another --raft-id`);
      } else if (r.localEpoch <= existing.lastSeenLocalEpoch) {
        return reject('ErrLocalEpochRollback', `node ${r.fullNodeId} registers local_epoch ${r.localEpoch} under DEK ${r.keyId}, but ${existing.lastSeenLocalEpoch} is already recorded: its data dir was restored from an older copy`);
      } else {
        staged.push([r, { ...existing, lastSeenLocalEpoch: r.localEpoch }]);
      }
    }
    for (const [r, row] of staged) {
      tx.putInternal(writerRegistryKey(r.keyId, r.nodeId16), encodeWriterRow(row));
      if (r.nodeId16 === this.nodeId16) this.#noteMyRow(r.keyId, row);
    }
    return { ok: true };
  }
}

/** How the store's replicated encryption state differs from a sidecar's; undefined when they agree. */
function encryptionStateDiff(side: SidecarState, keys: readonly KeyRecord[], rollout: Rollout): string | undefined {
  if (side.storageEnvelopeActive !== rollout.storageEnvelopeActive) return 'storage envelope flag';
  if (side.raftEnvelopeCutoverIndex !== rollout.raftEnvelopeCutoverIndex) return 'raft envelope cutover';
  for (const purpose of ['storage', 'raft'] as const) if (side.active[purpose] !== rollout.active[purpose]) return `active ${purpose} DEK`;
  if (keys.length !== side.keys.size) return 'set of DEKs';
  for (const key of keys) {
    const mine = side.keys.get(key.keyId);
    if (mine === undefined) return `DEK ${key.keyId} missing`;
    if (Buffer.compare(Buffer.from(mine.wrapped), Buffer.from(key.wrapped)) !== 0) return `DEK ${key.keyId} wrapping`;
  }
  return undefined;
}

/** Two writers with one node_id16 but different ids, named; undefined when none. */
export function writerCollision(writers: readonly { nodeId16: number; fullNodeId: string }[]): string | undefined {
  const seen = new Map<number, string>();
  for (const w of writers) {
    const other = seen.get(w.nodeId16);
    if (other !== undefined && other !== w.fullNodeId) return `nodes ${other} and ${w.fullNodeId} share node_id16 ${w.nodeId16}; give one of them another --raft-id`;
    seen.set(w.nodeId16, w.fullNodeId);
  }
  return undefined;
}

function failureReason(err: unknown): 'tag_mismatch' | 'unknown_key_id' | 'truncated' | 'bad_version' {
  if (isSealError(err, 'ErrUnknownKeyId')) return 'unknown_key_id';
  if (isSealError(err, 'ErrEnvelopeShort')) return 'truncated';
  if (isSealError(err, 'ErrEnvelopeVersion') || isSealError(err, 'ErrEnvelopeFlag')) return 'bad_version';
  return 'tag_mismatch';
}

const TEST_FAULT = process.env.SEALKV_TEST_FAULT;

/** Test-only fault injection (see #writeSidecar): SIGKILL this process at a named point. */
function testFault(point: string, kind: string): void {
  if (TEST_FAULT === undefined) return;
  const [want, wantKind] = TEST_FAULT.split(':');
  if (want === point && (wantKind === undefined || wantKind === kind)) process.kill(process.pid, 'SIGKILL');
}

/** A CSPRNG key_id: non-zero, unused (SPEC §4.1). */
export function newKeyId(taken: ReadonlySet<number>): number {
  for (;;) {
    const id = crypto.randomBytes(4).readUInt32BE(0);
    if (id !== 0 && !taken.has(id)) return id;
  }
}

export type { Purpose };
