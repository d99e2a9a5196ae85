// The leader's side of the rollout (SPEC §8): capability polls, bootstrap,
// Phase 1, Phase 2 with its quiescence barrier, the membership gate, and
// each process's own writer registration at start.
//
// Operations run on the leader; a follower forwards them (EncryptionAdmin
// RPC). Every proposal goes through the Raft driver, which wraps it after
// the cutover; encryption entries carry a proposal id and the state
// machine applies a twice-committed one once, so retries are safe — except
// the cutover itself, which is proposed once and then checked, since a
// second cutover entry would be refused by the leader's admission check.

import crypto from 'node:crypto';
import { DEK_BYTES, nodeId16, type Purpose } from '../crypto/index.js';
import { ERROR_CODES, isSealError, sealError, type ErrorCode } from '../errors/index.js';
import type { EntryOutcome } from '../fsm/index.js';
import { openKekProvider } from '../kek/index.js';
import type { Logger } from '../log/index.js';
import { CAPABILITY_METHOD, decodeCapability, pollCapabilities, type Capability, type CapabilityMember } from './capability.js';
import { encodeEncryptionPayload, type EncryptionPayload, type KeyRecord, type WriterIdentity } from './payload.js';
import { RETIRE_FACTS_METHOD, parseRetireFacts, retireRefusal, retireSummary, type MemberFacts, type RetireFacts } from './retire.js';
import { newKeyId, writerCollision, type ApplyAnswer, type EncryptionRuntime } from './runtime.js';

export type EncryptionOp = 'bootstrap' | 'enable-storage-envelope' | 'enable-raft-envelope' | 'rotate-dek' | 'rewrap-deks' | 'retire-dek';
export const ENCRYPTION_OPS: readonly EncryptionOp[] = ['bootstrap', 'enable-storage-envelope', 'enable-raft-envelope', 'rotate-dek', 'rewrap-deks', 'retire-dek'];
/** Parameters of an operation: `purpose` (rotate-dek), `kek_uri` (rewrap-deks: the KEK to wrap under; default the leader's), `key_id` (retire-dek). */
export type EncryptionOpParams = Readonly<{
  purpose?: string;
  kek_uri?: string;
  key_id?: number;
  /** rotate-dek: only if this key_id is still the active DEK of the purpose (automatic rotation asks once per DEK). */
  if_active?: number;
}>;
export const ADMIN_METHOD = 'EncryptionAdmin';
/** One member's answer to askMembers. */
export type MemberAnswer = { readonly node: string; readonly answer: unknown } | { readonly node: string; readonly error: string };
export const SIDECAR_STATE_METHOD = 'GetSidecarState';

/** What the controller needs of the Raft node (src/node adapts RaftNode to it). */
export interface RolloutRaft {
  readonly selfId: number;
  /** The numeric Raft id of a `--raft-id`. */
  idOf(raftId: string): number;
  isLeader(): boolean;
  /** 0 when no leader is known. */
  leaderId(): number;
  members(): { voters: number[]; learners: number[] };
  peerAddress(id: number): string | undefined;
  /** The leader's own last log index (its progress match). */
  lastIndex(): number;
  appliedIndex(): number;
  electionTimeoutMs(): number;
  /** Proposes with retries under one proposal id; resolves with the local apply's outcome. */
  propose(payload: Uint8Array): Promise<EntryOutcome>;
  /** One attempt, leader only. */
  proposeOnce(payload: Uint8Array, timeoutMs: number): Promise<EntryOutcome>;
  /** Resolves once this node applied everything the leader had committed at the call. */
  readBarrier(): Promise<void>;
  call(to: number, method: string, body: unknown, opts: { addr?: string; timeoutMs: number }): Promise<unknown>;
}

export interface ControllerOptions {
  raft: RolloutRaft;
  runtime: EncryptionRuntime;
  logger: Logger;
  /** A start-up refusal found after Raft started (ErrLocalEpochRollback, ErrNodeIDCollision): the process must exit. */
  onFatal: (err: Error) => void;
  /** Raft-id names of members by numeric id, for messages. */
  nameOf?: (id: number) => string;
  /** --encryption-rotate-on-startup (SPEC §8.5). */
  rotateOnStartup?: boolean;
  /** This node's own GetRetireFacts answer (SPEC §4.2), for retire-dek on the leader. */
  retireFacts?: (keyId: number, purpose: Purpose) => Promise<RetireFacts>;
}

const BARRIER_DRAIN_MS = 10_000;
const CUTOVER_TIMEOUT_MS = 10_000;
const REGISTRATION_RETRY_MS = 250;
/** A member's retire-dek facts need a scan of its store or log. */
const RETIRE_FACTS_TIMEOUT_MS = 60_000;

function answerOf(outcome: EntryOutcome, what: string): ApplyAnswer {
  if (outcome.kind !== 'extension') throw sealError('ErrProposalDropped', `${what} applied as a ${outcome.kind} entry`);
  return outcome.result as ApplyAnswer;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class RolloutController {
  readonly #raft: RolloutRaft;
  readonly #runtime: EncryptionRuntime;
  readonly #logger: Logger;
  readonly #onFatal: (err: Error) => void;
  readonly #nameOf: (id: number) => string;
  #running: Promise<unknown> = Promise.resolve();
  #registering: Promise<void> | undefined;
  #stopped = false;
  readonly #rotationRequested = new Set<number>();
  readonly #rotateOnStartup: boolean;
  #rotatedOnStartup = false;
  readonly #retireFacts: ControllerOptions['retireFacts'];

  constructor(options: ControllerOptions) {
    this.#raft = options.raft;
    this.#runtime = options.runtime;
    this.#logger = options.logger;
    this.#onFatal = options.onFatal;
    this.#nameOf = options.nameOf ?? ((id) => String(id));
    this.#rotateOnStartup = options.rotateOnStartup ?? false;
    this.#retireFacts = options.retireFacts;
    options.runtime.onRegistrationNeeded = () => this.ensureRegistered();
  }

  stop(): void {
    this.#stopped = true;
  }

  /** Runs `op` on the leader (forwarding from a follower); one operation at a time per node. */
  run(op: EncryptionOp, params: EncryptionOpParams = {}): Promise<Record<string, unknown>> {
    if (!ENCRYPTION_OPS.includes(op)) return Promise.reject(sealError('ErrBadRequest', `unknown encryption operation "${String(op)}"`));
    const next = this.#running.then(() => this.#runOrForward(op, params));
    this.#running = next.catch(() => undefined);
    return next;
  }

  /** An operation forwarded by a follower: the same one-at-a-time queue as this node's own. */
  runForwarded(op: EncryptionOp, params: EncryptionOpParams): Promise<Record<string, unknown>> {
    const next = this.#running.then(() => this.runAsLeader(op, params));
    this.#running = next.catch(() => undefined);
    return next;
  }

  async #runOrForward(op: EncryptionOp, params: EncryptionOpParams): Promise<Record<string, unknown>> {
    if (!this.#raft.isLeader()) {
      const leader = this.#raft.leaderId();
      if (leader === 0) throw sealError('ErrNotLeader', 'no leader is known yet; retry');
      return (await this.#raft.call(leader, ADMIN_METHOD, { op, params }, { timeoutMs: 60_000 })) as Record<string, unknown>;
    }
    return this.runAsLeader(op, params);
  }

  /** The operation itself (the EncryptionAdmin RPC handler calls this on the leader). */
  async runAsLeader(op: EncryptionOp, params: EncryptionOpParams = {}): Promise<Record<string, unknown>> {
    if (!this.#raft.isLeader()) throw sealError('ErrNotLeader', `node ${this.#runtime.fullNodeId} is not the leader`);
    // An incapable leader is named by the capability poll, like any member (SPEC §8.2).
    if (!this.#runtime.enabled && (op === 'bootstrap' || op === 'enable-storage-envelope' || op === 'enable-raft-envelope')) await this.pollMembers();
    if (!this.#runtime.enabled) throw sealError('ErrKEKRequired', `the leader ${this.#runtime.fullNodeId} runs without --encryption-enabled and a KEK`);
    switch (op) {
      // A step already taken answers at once, without a poll (so it works with a member down).
      case 'bootstrap':
        if (!this.#runtime.bootstrapped) await this.#bootstrap(await this.pollMembers());
        break;
      case 'enable-storage-envelope': {
        if (this.#runtime.rollout.storageEnvelopeActive) break;
        const caps = await this.pollMembers();
        if (!this.#runtime.bootstrapped) await this.#bootstrap(caps);
        if (!this.#runtime.rollout.storageEnvelopeActive) await this.#proposeChecked({ kind: 'enable-storage-envelope' }, 'enable-storage-envelope');
        break;
      }
      case 'enable-raft-envelope':
        await this.#enableRaftEnvelope();
        break;
      case 'rotate-dek': {
        const purpose = purposeParam(params.purpose);
        // An automatic request for a DEK that was rotated meanwhile (by another node's request) is done.
        if (params.if_active !== undefined && this.#runtime.rollout.active[purpose] !== params.if_active) break;
        await this.#rotate(purpose);
        break;
      }
      case 'rewrap-deks':
        await this.#rewrap(params.kek_uri);
        break;
      case 'retire-dek':
        return { ...this.#runtime.status(), retired: await this.#retire(keyIdParam(params.key_id)) };
    }
    return this.#runtime.status();
  }

  /**
   * SPEC §4.2 retire-dek: every member reports on its own copy; any reason
   * on any member refuses (no override); else the DEK and its writer rows go
   * in one entry. Returns the per-member facts the decision was made on.
   */
  async #retire(keyId: number): Promise<Record<string, unknown>> {
    const record = (await this.#runtime.storeKeys()).find((k) => k.keyId === keyId);
    if (record === undefined) throw sealError('ErrUnknownKeyId', `key_id ${keyId} is not an unretired DEK of this cluster`);
    const purpose = record.purpose;
    if (this.#runtime.rollout.active[purpose] === keyId) {
      throw sealError(purpose === 'storage' ? 'ErrDEKStillReferenced' : 'ErrRaftDEKWALStillReferences', `key_id ${keyId} is the active ${purpose} DEK: rotate-dek --purpose=${purpose} first`);
    }
    const superseded = await this.#runtime.supersededOf(keyId);
    const members = await this.#pollRetireFacts(keyId, purpose);
    const refusal = retireRefusal(keyId, purpose, superseded, members);
    if (refusal !== undefined) throw refusal;
    await this.#proposeChecked({ kind: 'retire-dek', keyId }, 'retire-dek');
    this.#logger.info({ key_id: keyId, purpose }, 'DEK retired');
    return { key_id: keyId, purpose, members: retireSummary(members) };
  }

  /** GetRetireFacts from every voter and learner, this node included, in parallel. */
  async #pollRetireFacts(keyId: number, purpose: Purpose): Promise<MemberFacts[]> {
    const own = this.#retireFacts;
    if (own === undefined) throw sealError('ErrBadRequest', 'this node cannot report retire-dek facts');
    const answers = await this.askMembers(RETIRE_FACTS_METHOD, { key_id: keyId, purpose }, () => own(keyId, purpose), RETIRE_FACTS_TIMEOUT_MS);
    return answers.map((a): MemberFacts => ('error' in a ? { node: a.node, error: a.error } : parseRetireFacts(a.node, a.answer)));
  }

  /**
   * Asks every voter and learner (as this node has applied the membership)
   * in parallel: this node through `local`, the others through RPC `method`.
   * One answer per member, by name (the `node` an answer names itself by,
   * else the name this node knows: a learner is not in --peers); a member
   * that fails is an `error` (its code when typed), never a rejection of the
   * whole.
   */
  async askMembers(method: string, body: unknown, local: () => Promise<unknown>, timeoutMs: number): Promise<MemberAnswer[]> {
    const { voters, learners } = this.#raft.members();
    return Promise.all(
      [...new Set([...voters, ...learners])].map(async (id): Promise<MemberAnswer> => {
        const node = this.#nameOf(id);
        try {
          const addr = this.#raft.peerAddress(id);
          const answer = id === this.#raft.selfId ? await local() : await this.#raft.call(id, method, body, { ...(addr === undefined ? {} : { addr }), timeoutMs });
          const named = (answer as { node?: unknown } | null)?.node;
          return { node: typeof named === 'string' && named.length > 0 ? named : node, answer };
        } catch (err) {
          return { node, error: isSealError(err) ? `${err.code}: ${detailOf(err)}` : err instanceof Error ? err.message : String(err) };
        }
      }),
    );
  }

  /**
   * SPEC §4.2 rotate-dek: a new DEK of `purpose`, wrapped under the KEK the
   * current DEKs are wrapped under, active from its entry on; every writer
   * of the current DEK of that purpose is registered under the new one in
   * the same entry (at local_epoch 0: the DEK is new to each of them), so
   * no member seals under it unregistered.
   */
  async #rotate(purpose: Purpose): Promise<void> {
    const current = this.#runtime.rollout.active[purpose];
    if (current === undefined) throw sealError('ErrEncryptionNotBootstrapped', `no active ${purpose} DEK to rotate: bootstrap first`);
    const kek = this.#runtime.kek;
    if (kek === undefined) throw sealError('ErrKEKRequired', 'no KEK on the leader');
    const recorded = await this.#runtime.kekOf(current);
    if (recorded !== undefined && recorded !== kek.describe()) {
      throw sealError('ErrKEKMismatch', `the DEKs are wrapped under ${recorded} but the leader runs with ${kek.describe()}: restart the nodes with that KEK (after rewrap-deks) before rotating`);
    }
    const writers = (await this.#runtime.writersUnder(current)).map((w) => ({ ...w, localEpoch: 0 }));
    const key = await this.#newKey(purpose, new Set((await this.#runtime.storeKeys()).map((k) => k.keyId)));
    await this.#proposeChecked({ kind: 'rotate-dek', key, writers }, 'rotate-dek');
    this.#logger.info({ purpose, key_id: key.keyId, previous_key_id: current }, 'DEK rotated');
  }

  /**
   * SPEC §4.2 rewrap-deks: every unretired DEK wrapped again — under the KEK
   * named by `kekUri` (KEK rotation), or the leader's own (the repair of
   * SPEC §10) — with the same key bytes, in one entry.
   */
  async #rewrap(kekUri: string | undefined): Promise<void> {
    if (!this.#runtime.bootstrapped) throw sealError('ErrEncryptionNotBootstrapped', 'nothing to rewrap: bootstrap first');
    const own = this.#runtime.kek;
    if (own === undefined) throw sealError('ErrKEKRequired', 'no KEK on the leader');
    const target = kekUri === undefined ? own : openKekProvider({ kekUri });
    try {
      const keys = [];
      for (const record of await this.#runtime.storeKeys()) {
        const dek = this.#runtime.keystore.get(record.keyId);
        if (dek === undefined) throw sealError('ErrUnknownKeyId', `the leader does not hold DEK ${record.keyId}`);
        keys.push({ keyId: record.keyId, wrapped: await target.wrap(dek.key, { keyId: record.keyId, purpose: record.purpose }), kek: target.describe() });
      }
      await this.#proposeChecked({ kind: 'rewrap-deks', keys }, 'rewrap-deks');
      this.#logger.info({ key_ids: keys.map((k) => k.keyId), kek: target.describe() }, 'DEKs rewrapped');
    } finally {
      if (target !== own) target.close();
    }
  }

  /**
   * SPEC §3.3: a DEK reached 90% of its per-process write ceiling here; the
   * leader rotates it (a follower asks the leader). Once per DEK per process.
   */
  requestRotation(keyId: number): void {
    if (this.#rotationRequested.has(keyId)) return;
    this.#rotationRequested.add(keyId);
    const purpose = this.#runtime.keystore.get(keyId)?.purpose;
    if (purpose === undefined || this.#runtime.rollout.active[purpose] !== keyId) return;
    this.#logger.warn({ key_id: keyId, purpose }, 'DEK near its write ceiling: proposing rotate-dek');
    const attempt = (left: number): void => {
      if (this.#stopped || this.#runtime.rollout.active[purpose] !== keyId) return;
      this.run('rotate-dek', { purpose, if_active: keyId }).catch((err: unknown) => {
        this.#logger.warn({ err, key_id: keyId }, 'automatic rotate-dek failed; retrying');
        if (left > 0) setTimeout(() => attempt(left - 1), 1000).unref();
      });
    };
    attempt(30);
  }

  /**
   * SPEC §8.5 --encryption-rotate-on-startup: the first time this process
   * leads, one rotation of each active purpose. Called by the leader watch.
   */
  onLeader(): void {
    if (!this.#rotateOnStartup || this.#rotatedOnStartup || !this.#runtime.bootstrapped) return;
    this.#rotatedOnStartup = true;
    void (async () => {
      for (const purpose of ['storage', 'raft'] as const) {
        if (this.#runtime.rollout.active[purpose] === undefined) continue;
        try {
          await this.run('rotate-dek', { purpose });
        } catch (err) {
          this.#logger.warn({ err, purpose }, 'rotate-on-startup failed');
          this.#rotatedOnStartup = false;
          return;
        }
      }
    })();
  }

  /** Polls every voter and learner, this node included, within one election timeout (SPEC §8.1). */
  async pollMembers(): Promise<Map<number, Capability>> {
    const { voters, learners } = this.#raft.members();
    const members: CapabilityMember[] = [...new Set([...voters, ...learners])].map((id) => {
      const addr = this.#raft.peerAddress(id);
      return { id, name: this.#nameOf(id), idOf: (raftId: string) => this.#raft.idOf(raftId), ...(addr === undefined ? {} : { addr }) };
    });
    return pollCapabilities(
      (m, timeoutMs) =>
        m.id === this.#raft.selfId ? Promise.resolve(this.#runtime.capability()) : this.#raft.call(m.id, CAPABILITY_METHOD, {}, { ...(m.addr === undefined ? {} : { addr: m.addr }), timeoutMs }),
      members,
      this.#raft.electionTimeoutMs(),
    );
  }

  async #bootstrap(caps: ReadonlyMap<number, Capability>): Promise<void> {
    if (this.#runtime.bootstrapped) return;
    const writers: WriterIdentity[] = [...caps.values()].map((c) => ({ nodeId16: nodeId16(c.full_node_id), fullNodeId: c.full_node_id, localEpoch: 0 }));
    const collision = writerCollision(writers);
    if (collision !== undefined) throw sealError('ErrNodeIDCollision', collision);
    const taken = new Set<number>();
    const keys: KeyRecord[] = [];
    for (const purpose of ['storage', 'raft'] as const) keys.push(await this.#newKey(purpose, taken));
    await this.#proposeChecked({ kind: 'bootstrap', keys, writers }, 'bootstrap-encryption');
    this.#logger.info({ storage_key_id: keys[0]!.keyId, raft_key_id: keys[1]!.keyId }, 'encryption bootstrapped');
  }

  /** A fresh DEK, wrapped by the KEK at once; the bytes are zeroed before returning. */
  async #newKey(purpose: Purpose, taken: Set<number>): Promise<KeyRecord> {
    const kek = this.#runtime.kek;
    if (kek === undefined) throw sealError('ErrKEKRequired', 'no KEK on the leader');
    for (const id of this.#runtime.keystore.keyIds()) taken.add(id);
    const keyId = newKeyId(taken);
    taken.add(keyId);
    const dek = crypto.randomBytes(DEK_BYTES);
    try {
      const wrapped = await kek.wrap(dek, { keyId, purpose });
      return { keyId, purpose, wrapped, created: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), kek: kek.describe() };
    } finally {
      dek.fill(0);
    }
  }

  async #proposeChecked(p: EncryptionPayload, what: string): Promise<void> {
    const answer = answerOf(await this.#raft.propose(encodeEncryptionPayload(p)), what);
    if (!answer.ok) throw sealError(isCode(answer.code) ? answer.code : 'ErrEncryptionApply', `${what} refused at apply: ${answer.message}`);
  }

  /** SPEC §8.3: poll, barrier, drain, cutover, wait for its apply, unblock. */
  async #enableRaftEnvelope(): Promise<void> {
    if (!this.#runtime.bootstrapped) throw sealError('ErrEncryptionNotBootstrapped', 'enable-raft-envelope needs bootstrap first (run enable-storage-envelope or bootstrap)');
    if (this.#runtime.rollout.raftEnvelopeCutoverIndex !== null) return;
    await this.pollMembers();
    this.#runtime.beginBarrier();
    let cutoverAdmitted = false;
    try {
      const until = Date.now() + BARRIER_DRAIN_MS;
      while (this.#raft.appliedIndex() < this.#raft.lastIndex()) {
        if (Date.now() > until) throw sealError('ErrTimeout', 'accepted proposals did not apply within the cutover barrier');
        if (!this.#raft.isLeader()) throw sealError('ErrNotLeader', 'lost leadership during the cutover barrier');
        await sleep(5);
      }
      cutoverAdmitted = true;
      let outcome: EntryOutcome | undefined;
      try {
        outcome = await this.#raft.proposeOnce(encodeEncryptionPayload({ kind: 'enable-raft-envelope' }), CUTOVER_TIMEOUT_MS);
      } catch (err) {
        // The outcome may be unknown (timeout): the applied state decides.
        await this.#raft.readBarrier().catch(() => undefined);
        if (this.#runtime.rollout.raftEnvelopeCutoverIndex === null) throw err;
      }
      if (outcome !== undefined) {
        const answer = answerOf(outcome, 'enable-raft-envelope');
        if (!answer.ok) throw sealError('ErrEncryptionApply', `enable-raft-envelope refused at apply: ${answer.message}`);
      }
      this.#logger.info({ cutover_index: this.#runtime.rollout.raftEnvelopeCutoverIndex }, 'raft envelope cutover applied');
    } finally {
      if (cutoverAdmitted && this.#runtime.rollout.raftEnvelopeCutoverIndex === null) this.#runtime.forgetAdmittedCutover();
      this.#runtime.endBarrier();
    }
  }

  /**
   * The membership gate (SPEC §8.4): after bootstrap, a node joins only if
   * it reports capability and is registered under every DEK first.
   */
  async admitMember(raftId: string, id: number, addr: string | undefined): Promise<void> {
    if (!this.#runtime.bootstrapped) return;
    let cap: Capability;
    try {
      cap = decodeCapability(await this.#raft.call(id, CAPABILITY_METHOD, {}, { ...(addr === undefined ? {} : { addr }), timeoutMs: this.#raft.electionTimeoutMs() }), raftId);
    } catch (err) {
      throw sealError('ErrPeerNotEncryptionCapable', `${raftId}: capability check failed (${err instanceof Error ? err.message : String(err)})`, err);
    }
    if (!cap.encryption_capable) throw sealError('ErrPeerNotEncryptionCapable', `${raftId} is not encryption capable: start it with --encryption-enabled and the KEK`);
    if (cap.full_node_id !== raftId) throw sealError('ErrPeerNotEncryptionCapable', `${raftId} answered as "${cap.full_node_id}"`);
    const node16 = nodeId16(raftId);
    // Every DEK, at the joiner's reported epoch: the store decides at apply,
    // and a row of the same node at that epoch or above refuses the join.
    const rows = this.#runtime.keystore.keyIds().map((keyId) => ({ keyId, nodeId16: node16, fullNodeId: raftId, localEpoch: cap.local_epoch }));
    if (rows.length === 0) return;
    const answer = answerOf(await this.#raft.propose(encodeEncryptionPayload({ kind: 'register', rows, reason: 'join' })), 'writer registration');
    if (!answer.ok) throw sealError('ErrPeerNotEncryptionRegistered', `${raftId} could not be registered: ${answer.code}: ${answer.message}`);
  }

  /**
   * This process's registration under every DEK it holds (SPEC §8.4):
   * once caught up with the leader, a row at or above the fresh epoch means
   * the data dir was restored from an older copy (ErrLocalEpochRollback);
   * otherwise propose the new epochs. Retries until it succeeds or the node
   * stops; a refusal is fatal.
   */
  ensureRegistered(): void {
    if (this.#registering !== undefined || !this.#runtime.enabled) return;
    this.#registering = this.#registerLoop().finally(() => {
      this.#registering = undefined;
      if (!this.#stopped && this.#runtime.unregisteredKeys().length > 0) setTimeout(() => this.ensureRegistered(), REGISTRATION_RETRY_MS).unref();
    });
  }

  async #registerLoop(): Promise<void> {
    while (!this.#stopped) {
      const keys = this.#runtime.unregisteredKeys();
      if (keys.length === 0) return;
      try {
        await this.#raft.readBarrier();
        const rows = [];
        for (const keyId of this.#runtime.unregisteredKeys()) {
          const epoch = this.#runtime.epochOf(keyId);
          const row = this.#runtime.myRows().get(keyId);
          if (row !== undefined && row.fullNodeId !== this.#runtime.fullNodeId) {
            throw sealError('ErrNodeIDCollision', `this node (${this.#runtime.fullNodeId}) and node ${row.fullNodeId} share node_id16 ${this.#runtime.nodeId16}; start this node with another --raft-id`);
          }
          if (row !== undefined && row.lastSeenLocalEpoch >= epoch) {
            throw sealError('ErrLocalEpochRollback', `DEK ${keyId}: this node's local_epoch ${epoch} is not above the registered ${row.lastSeenLocalEpoch}; the data dir (or its keys.json) was restored from an older copy, and sealing now could reuse nonces`);
          }
          rows.push({ keyId, nodeId16: this.#runtime.nodeId16, fullNodeId: this.#runtime.fullNodeId, localEpoch: epoch });
        }
        if (rows.length === 0) return;
        const answer = answerOf(await this.#raft.propose(encodeEncryptionPayload({ kind: 'register', rows, reason: 'start' })), 'writer registration');
        if (!answer.ok) throw sealError(isCode(answer.code) ? answer.code : 'ErrEncryptionApply', answer.message);
        this.#runtime.markRegistered(rows.map((r) => r.keyId));
        this.#logger.info({ key_ids: rows.map((r) => r.keyId) }, 'writer registration applied');
      } catch (err) {
        if (isSealError(err) && (err.code === 'ErrLocalEpochRollback' || err.code === 'ErrNodeIDCollision')) {
          this.#stopped = true;
          this.#onFatal(err);
          return;
        }
        if (this.#stopped) return;
        this.#logger.debug({ err }, 'writer registration not done yet; retrying');
        await sleep(REGISTRATION_RETRY_MS);
      }
    }
  }

  /** `start --dev`: bootstrap and both phases once this single node leads (SPEC §12). */
  async devRollout(timeoutMs = 30_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!this.#raft.isLeader()) {
      if (Date.now() > until) throw sealError('ErrTimeout', 'the dev node did not become leader');
      await sleep(20);
    }
    for (const op of ['enable-storage-envelope', 'enable-raft-envelope'] as const) {
      for (;;) {
        try {
          await this.run(op);
          break;
        } catch (err) {
          if (!isSealError(err) || !err.retryable || Date.now() > until) throw err;
          await sleep(50);
        }
      }
    }
  }
}

function purposeParam(value: string | undefined): Purpose {
  if (value !== 'storage' && value !== 'raft') throw sealError('ErrBadRequest', `rotate-dek needs --purpose=storage or --purpose=raft (got ${JSON.stringify(value ?? null)})`);
  return value;
}

function keyIdParam(value: number | undefined): number {
  if (value === undefined || !Number.isInteger(value) || value < 1 || value > 0xffffffff) {
    throw sealError('ErrBadRequest', `retire-dek needs --key-id=<uint32 key_id> (got ${JSON.stringify(value ?? null)})`);
  }
  return value;
}

function detailOf(err: Error & { code: string }): string {
  return err.message.startsWith(`${err.code}: `) ? err.message.slice(err.code.length + 2) : err.message;
}

function isCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_CODES, code);
}
