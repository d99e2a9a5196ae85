// The replication stack of a node: RocksDB store → state machine → Raft
// driver → RaftEngine, opened from a NodeConfig.
//
// Layout under --data-dir: `store/` (RocksDB), `raft/` (log, peers, incoming
// snapshots). Raft node ids are numbers: a `--raft-id` that is a positive
// integer is used as is, any other string maps to the low 48 bits of its
// FNV-1a-64 hash (every node computes the same id from the same string).
//
// Writes are proposed with a random proposal id; a retryable failure
// (dropped, no leader yet, timeout — the outcome may be unknown) is retried
// with the same id until PROPOSE_DEADLINE_MS, and the state machine's dedupe
// applies it once. Leadership is watched every LEADER_POLL_MS: on a new term
// as leader the LeaderClock arms (barrier, fence, ceiling), on losing it
// steps down.

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { capturePoint, createBackup } from '../backup/index.js';
import { Keystore, createBackend, fnv1a64, opensslHardwareAes, type Purpose } from '../crypto/index.js';
import {
  ADMIN_METHOD,
  CAPABILITY_METHOD,
  ENCRYPTION_OPS,
  EncryptionRuntime,
  RETIRE_FACTS_METHOD,
  RolloutController,
  SIDECAR_STATE_METHOD,
  isRaftEnvelope,
  type EncryptionOp,
  type EncryptionOpParams,
  type MemberAnswer,
  type RetireFacts,
  type RolloutRaft,
} from '../encryption/index.js';
import { isSealError, sealError } from '../errors/index.js';
import { EXTENSION_TAGS, HybridClock, LATEST_TS, LeaderClock, StateMachine, fsmStoreOver, type EntryOutcome } from '../fsm/index.js';
import { kvExecutor, type KvRangeReader } from '../kv/index.js';
import type { Logger } from '../log/index.js';
import type { SealkvMetrics } from '../metrics/index.js';
import { RaftNode, type ConfState, type StateMachine as RaftStateMachine } from '../raft/index.js';
import { readSweepState } from '../rewrite/index.js';
import type { Engine, EngineBackup, EngineEncryption, EngineMembership } from '../server/index.js';
import { openKeysAtStart } from '../sidecar/index.js';
import { openStore, type Store } from '../store/index.js';
import { parseHostPort, type NodeConfig } from './config.js';
import { GcScheduler } from './gc.js';
import { RaftEngine, type ReplicatedLog } from './raft-engine.js';
import { NodeSweeps, REWRITE_START_METHOD, REWRITE_STATUS_METHOD, parseTarget } from './sweeps.js';

export const PROPOSE_DEADLINE_MS = 15_000;
const ATTEMPT_TIMEOUT_MS = 5_000;
const LEADER_POLL_MS = 20;
const MIN_SECRET_BYTES = 16;
const REWRITE_RPC_TIMEOUT_MS = 20_000;

/** The numeric Raft id of a `--raft-id` string. */
export function raftNodeId(raftId: string): number {
  if (/^[1-9][0-9]{0,14}$/.test(raftId)) return Number(raftId);
  const id = Number(fnv1a64(raftId) & ((1n << 48n) - 1n));
  return id === 0 ? 1 : id;
}

/** The state machine as the Raft driver calls it. */
export function driverStateMachine(machine: StateMachine, store?: Pick<Store, 'persist'>): RaftStateMachine {
  return {
    ...(store === undefined ? {} : { persist: () => store.persist() }),
    appliedIndex: () => machine.appliedIndex,
    apply: async (entries) => (await machine.applyEntries(entries)).map((r) => r.outcome),
    snapshot: () =>
      (async function* () {
        yield* (await machine.snapshot()).stream;
      })(),
    restore: (data) => machine.restoreSnapshot(data),
  };
}

/**
 * The read path's view of the store as of `readTs` (default: newest
 * versions), wall clock for expiry. Commit timestamps grow with the log and
 * a batch lands in one store write, so a view at the last applied commit
 * timestamp is a consistent snapshot: later applies stay invisible to it.
 */
export function storeReader(store: Store, now: () => number = Date.now, readTs: bigint = LATEST_TS): KvRangeReader {
  return {
    get: async (key) => {
      const entry = await store.get(key, readTs, { now: BigInt(now()) });
      return entry === undefined ? undefined : { value: entry.value, expireAt: Number(entry.expireAt) };
    },
    getMany: async (keys) =>
      (await store.getMany(keys, readTs, { now: BigInt(now()) })).map((entry) => (entry === undefined ? undefined : { value: entry.value, expireAt: Number(entry.expireAt) })),
    scan: async (after, limit) => {
      const range = after === null ? {} : { start: Buffer.concat([after, Buffer.from([0])]) };
      const entries = await store.scanAll(range, readTs, { limit, now: BigInt(now()) });
      return entries.map((e) => ({ key: e.key, value: { value: e.value, expireAt: Number(e.expireAt) } }));
    },
  };
}

async function retrying<T>(what: () => Promise<T>, deadline: number): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await what();
    } catch (err) {
      if (!isSealError(err) || !err.retryable || Date.now() >= deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, Math.min(25 * 2 ** attempt, 500)));
    }
  }
}

function replicatedLog(raft: RaftNode): ReplicatedLog {
  return {
    propose: (payload) => {
      const proposalId = crypto.randomBytes(8).readBigUInt64BE(0) || 1n;
      const deadline = Date.now() + PROPOSE_DEADLINE_MS;
      return retrying(async () => (await raft.propose(payload, { proposalId, timeoutMs: ATTEMPT_TIMEOUT_MS })) as EntryOutcome, deadline);
    },
    readBarrier: async () => {
      await retrying(() => raft.readIndex(ATTEMPT_TIMEOUT_MS), Date.now() + PROPOSE_DEADLINE_MS);
    },
    status: () => {
      const s = raft.status(false);
      return { raft_node_id: raft.id, role: s.role, term: s.term, leader: s.lead, commit_index: s.commit, applied_index: raft.appliedIndex() };
    },
  };
}

/** Membership changes; after bootstrap a joining node must pass the encryption gate first (SPEC §8.4). */
function raftMembership(raft: RaftNode, controller: RolloutController): EngineMembership {
  const confState = (c: ConfState): Record<string, unknown> => ({ voters: c.voters, learners: c.learners });
  return {
    addLearner: async (id, addr) => {
      const address = raftAddress(addr);
      await controller.admitMember(id, raftNodeId(id), address);
      return confState(await raft.addLearner(raftNodeId(id), address));
    },
    promote: async (id, addr) => {
      const address = addr === undefined ? undefined : raftAddress(addr);
      await controller.admitMember(id, raftNodeId(id), address);
      return confState(await raft.addVoter(raftNodeId(id), address ?? ''));
    },
    remove: async (id) => confState(await raft.removeNode(raftNodeId(id))),
  };
}

function rolloutRaft(raft: RaftNode, log: ReplicatedLog): RolloutRaft {
  return {
    selfId: raft.id,
    idOf: raftNodeId,
    isLeader: () => raft.isLeader(),
    leaderId: () => raft.status(false).lead,
    members: () => raft.members(),
    peerAddress: (id) => raft.peerAddress(id),
    lastIndex: () => raft.status().progress.get(raft.id)?.match ?? 0,
    appliedIndex: () => raft.appliedIndex(),
    electionTimeoutMs: () => raft.electionTimeoutMs(),
    propose: (payload) => log.propose(payload),
    proposeOnce: async (payload, timeoutMs) => (await raft.propose(payload, { requireLeader: true, timeoutMs })) as EntryOutcome,
    readBarrier: () => log.readBarrier(),
    call: (to, method, body, opts) => raft.callRpc(to, method, body, opts),
  };
}

/** `encryption status --verify`: versions per key_id by a scan of every stored version (0 = cleartext). */
async function versionsPerKeyId(store: Store): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for await (const version of store.versions()) {
    if (version.header.tombstone) continue;
    const id = String(version.keyId);
    counts[id] = (counts[id] ?? 0) + 1;
  }
  return counts;
}

/**
 * This node's GetRetireFacts answer for DEK `keyId` (SPEC §4.2; the
 * criteria are src/encryption/retire.ts): for a storage DEK a scan of every
 * stored version, the sweep rows, the GC horizon and where its Raft log
 * starts; for a raft DEK a scan of this node's own Raft log and its bounds.
 */
async function retireFactsOf(
  deps: { store: Store; raft: RaftNode; runtime: EncryptionRuntime; gc: GcScheduler; node: string },
  keyId: number,
  purpose: Purpose,
): Promise<RetireFacts> {
  const active = { ...deps.runtime.rollout.active };
  if (purpose === 'storage') {
    const sweep = await readSweepState(deps.store, { keyId });
    return {
      node: deps.node,
      active,
      storage: {
        sweep_done: sweep.done !== undefined,
        cursor: sweep.cursor !== undefined,
        versions: (await versionsPerKeyId(deps.store))[String(keyId)] ?? 0,
        min_retained_ts: deps.gc.minRetainedTS.toString(),
        log_first_index: deps.raft.logBounds().firstIndex,
      },
    };
  }
  const bounds = deps.raft.logBounds();
  const lastSealed = await deps.raft.lastLogEntryWhere((p) => isRaftEnvelope(p) && Buffer.from(p.buffer, p.byteOffset, p.byteLength).readUInt32BE(2) === keyId);
  return { node: deps.node, active, raft: { log_first_index: bounds.firstIndex, snapshot_index: bounds.snapshotIndex, last_index_sealed: lastSealed } };
}

function raftAddress(addr: string): string {
  const { host, port } = parseHostPort(addr, 'raft_address');
  return `${host}:${port}`;
}

function clusterSecret(config: NodeConfig): Buffer {
  if (config.clusterSecretFile !== undefined) {
    const secret = fs.readFileSync(config.clusterSecretFile);
    if (secret.length < MIN_SECRET_BYTES) throw new RangeError(`--cluster-secret-file must hold at least ${MIN_SECRET_BYTES} bytes`);
    return secret;
  }
  if (config.peers.length === 1 && config.join === undefined) return crypto.randomBytes(32);
  throw new RangeError('--cluster-secret-file is required when the node has peers');
}

export interface ReplicationOptions {
  logger: Logger;
  /** Raft gauges (term, commit and applied index, leadership) are kept current here. */
  metrics?: SealkvMetrics;
  /** Called if apply halts (the Raft node has stopped by then). */
  onHalt?: (err: Error) => void;
  /** Called on a start-up refusal found once Raft runs (ErrLocalEpochRollback, ErrNodeIDCollision): exit. */
  onFatal?: (err: Error) => void;
  /** Seals per (DEK, process) before ErrWriteCeilingReached; tests lower it (SPEC §3.3). */
  writeCeiling?: number;
  tickMs?: number;
}

/** Opens the store, the state machine and the Raft node, and returns the node's Engine. */
export async function openReplicatedEngine(config: NodeConfig, options: ReplicationOptions): Promise<Engine> {
  const { logger, metrics } = options;
  const secret = clusterSecret(config);
  fs.mkdirSync(config.dataDir, { recursive: true });
  // SPEC §9 refusals that need only flags, the KEK and the sidecar come first.
  const keystore = new Keystore();
  const keys = await openKeysAtStart({
    dataDir: config.dataDir,
    encryptionEnabled: config.encryptionEnabled,
    kek: { ...(config.kekUri === undefined ? {} : { kekUri: config.kekUri }), ...(config.kekFile === undefined ? {} : { kekFile: config.kekFile }) },
    keystore,
    onUnwrap: (seconds) => metrics?.encryptionKekUnwrapSeconds.observe(seconds),
    warn: (message) => logger.warn(message),
  });
  if (config.encryptionEnabled) {
    logger.info({ hardware_aes: opensslHardwareAes(), crypto_backend: config.cryptoBackend, keys: keystore.describe(), kek: keys.kek?.describe() }, 'encryption enabled');
  }
  let store: Store;
  try {
    store = await openStore(path.join(config.dataDir, 'store'));
  } catch (err) {
    keys.kek?.close();
    throw err;
  }
  const hlc = new HybridClock();
  let raft: RaftNode;
  let runtime: EncryptionRuntime;
  let controller: RolloutController | undefined;
  let backup: EngineBackup | undefined;
  let gc: GcScheduler | undefined;
  let log: ReplicatedLog | undefined;
  const sweeps = new NodeSweeps({ store, dataDir: config.dataDir, gate: () => runtime.sweepGate(), logger });
  /** RewriteStart here, once this node applied what the leader committed (a target rotated away just now is inactive here too). */
  const startSweep = async (body: unknown): Promise<unknown> => {
    const { target, rate } = rewriteParams(body);
    await (log ?? notReady()).readBarrier();
    return { node: config.raftId, ...(await sweeps.start(parseTarget(target), rate)) };
  };
  const sweepStatus = async (): Promise<unknown> => ({ node: config.raftId, sweeps: await sweeps.status() });
  const notReady = (): never => {
    throw sealError('ErrNotLeader', 'the node is still starting');
  };
  try {
    runtime = await EncryptionRuntime.open({
      raftId: config.raftId,
      store,
      keystore,
      backend: createBackend(config.cryptoBackend),
      ...(keys.sidecar === undefined ? {} : { sidecar: keys.sidecar }),
      ...(keys.kek === undefined ? {} : { kek: keys.kek }),
      compression: config.compression === 'on',
      logger,
      ...(metrics === undefined ? {} : { metrics }),
      ...(options.writeCeiling === undefined ? {} : { writeCeiling: options.writeCeiling }),
      onNearCeiling: (keyId) => controller?.requestRotation(keyId),
    });
    const rt = runtime;
    await rt.checkAtStart(Number(await store.appliedIndex()));
    const machine = await StateMachine.open(fsmStoreOver(store), kvExecutor, {
      clock: hlc,
      writeGate: (writes) => rt.writeGate(writes),
      snapshotCutover: () => rt.snapshotCutover(),
      afterRestore: (info) => rt.afterRestore(info),
    });
    for (const tag of EXTENSION_TAGS) machine.handlers.register(tag, (payload, tx) => rt.handle(payload, tx));
    backup = nodeBackup(config, store, machine, rt, () => raft.members());
    const self = raftNodeId(config.raftId);
    const peers: Record<number, string> = {};
    for (const peer of config.peers) if (peer.id !== config.raftId) peers[raftNodeId(peer.id)] = `${peer.host}:${peer.port}`;
    raft = await RaftNode.start({
      id: self,
      dir: path.join(config.dataDir, 'raft'),
      secret,
      host: config.raftListen.host,
      port: config.raftListen.port,
      peers,
      ...(config.join === undefined ? { bootstrap: { voters: config.peers.map((p) => raftNodeId(p.id)), learners: [] } } : {}),
      stateMachine: {
        ...driverStateMachine(machine, store),
        // The install replaces the store under the sweeps (rows included): stop them first, resume over
        // the new rows (not after a failed install: the node halts).
        restore: async (data) => {
          await sweeps.pause();
          await machine.restoreSnapshot(data);
          sweeps.resume();
        },
      },
      checkLog: ({ lastIndex }) => rt.checkLogBounds(lastIndex),
      applyHook: (entry, payload) => rt.applyHook(entry, payload),
      wrapProposal: (payload) => rt.wrapProposal(payload),
      admitProposal: (payload) => rt.admitProposal(payload),
      onLogEntries: (entries) => rt.onLogEntries(entries),
      rpcHandlers: {
        [CAPABILITY_METHOD]: async () => rt.capability(),
        [ADMIN_METHOD]: async (body) => {
          const { op, params } = adminOp(body);
          return (controller ?? notReady()).runForwarded(op, params);
        },
        [SIDECAR_STATE_METHOD]: async (body) => rt.sidecarStateFor(nodeParam(body), raft.appliedIndex()),
        [RETIRE_FACTS_METHOD]: async (body) => {
          const { keyId, purpose } = retireParams(body);
          return retireFactsOf({ store, raft, runtime: rt, gc: gc ?? notReady(), node: config.raftId }, keyId, purpose);
        },
        [REWRITE_START_METHOD]: startSweep,
        [REWRITE_STATUS_METHOD]: sweepStatus,
      },
      // Applied entries kept after a compaction, for followers that lag a little.
      snapshotEntries: config.snapshotEntries,
      compactionRetain: Math.max(1, Math.floor(config.snapshotEntries / 10)),
      ...(config.raftSegmentBytes === undefined ? {} : { segmentBytes: config.raftSegmentBytes }),
      onHalt: (err) => {
        logger.error({ err, code: isSealError(err) ? err.code : undefined }, 'apply halted');
        options.onHalt?.(err);
      },
      ...(options.tickMs === undefined ? {} : { tickMs: options.tickMs }),
    });
  } catch (err) {
    await store.close().catch(() => undefined);
    keys.kek?.close();
    throw err;
  }
  // A record cut short or damaged at the very end of the log: a write the crash interrupted (or a damaged last record the peers still hold).
  if (raft.logTailCut !== undefined) logger.warn({ raft_log_tail_cut: raft.logTailCut }, 'raft log: cut a torn or damaged tail record at start');
  runtime.isMember = () => {
    const { voters, learners } = raft.members();
    return voters.includes(raft.id) || learners.includes(raft.id);
  };
  const replicated = (log = replicatedLog(raft));
  // GC at or below the commit timestamp the read views read at (openReader below).
  const collector = (gc = new GcScheduler({ store, lastCommitTs: () => hlc.lastCommitTs, intervalMs: config.gcIntervalMs, retentionMs: config.gcRetentionMs, logger, ...(metrics === undefined ? {} : { metrics }) }));
  const rollout = new RolloutController({
    raft: rolloutRaft(raft, replicated),
    runtime,
    logger,
    onFatal: (err) => options.onFatal?.(err),
    nameOf: (id) => config.peers.find((p) => raftNodeId(p.id) === id)?.id ?? String(id),
    rotateOnStartup: config.encryptionRotateOnStartup,
    retireFacts: (keyId, purpose) => retireFactsOf({ store, raft, runtime, gc: collector, node: config.raftId }, keyId, purpose),
  });
  controller = rollout;
  rollout.ensureRegistered();
  const clock = new LeaderClock(hlc, (payload) => raft.propose(payload, { requireLeader: true, timeoutMs: ATTEMPT_TIMEOUT_MS }));
  let armedTerm = -1;
  const watch = setInterval(() => {
    const { role, term, commit } = raft.status(false);
    options.metrics?.raftTerm.set(term);
    options.metrics?.raftCommitIndex.set(commit);
    options.metrics?.raftAppliedIndex.set(raft.appliedIndex());
    options.metrics?.raftIsLeader.set(role === 'leader' ? 1 : 0);
    if (role !== 'leader') {
      if (armedTerm !== -1) {
        armedTerm = -1;
        clock.stepDown();
        runtime.forgetAdmittedCutover();
        logger.info({ term }, 'no longer leader');
      }
      return;
    }
    if (armedTerm === term) {
      clock.maintain();
      return;
    }
    armedTerm = term;
    rollout.onLeader();
    clock.becomeLeader().then(
      () => logger.info({ term }, 'leader clock armed'),
      (err: unknown) => {
        if (armedTerm === term) armedTerm = -1;
        logger.debug({ err, term }, 'arming the leader clock failed; will retry');
      },
    );
  }, LEADER_POLL_MS);
  const encryption: EngineEncryption = {
    run: (op, params) => rollout.run(op, params),
    sidecarState: async (raftId) => {
      if (raft.isLeader()) return runtime.sidecarStateFor(raftId, raft.appliedIndex());
      const leader = raft.status(false).lead;
      if (leader === 0) throw sealError('ErrNotLeader', 'no leader is known yet; retry');
      return (await raft.callRpc(leader, SIDECAR_STATE_METHOD, { node: raftId }, { timeoutMs: 10_000 })) as Record<string, unknown>;
    },
    status: async ({ verify }) => ({
      ...runtime.status(),
      raft_applied_index: raft.appliedIndex(),
      ...(verify ? { versions_per_key_id: await versionsPerKeyId(store) } : {}),
    }),
    rewrite: {
      start: async (target, rate) => {
        parseTarget(target);
        const body = { target, rate };
        return { target, nodes: byNode(await rollout.askMembers(REWRITE_START_METHOD, body, () => startSweep(body), REWRITE_RPC_TIMEOUT_MS)) };
      },
      status: async () => ({ nodes: byNode(await rollout.askMembers(REWRITE_STATUS_METHOD, {}, sweepStatus, REWRITE_RPC_TIMEOUT_MS)) }),
    },
  };
  const engine = new RaftEngine({
    log: { ...replicated, status: () => ({ ...replicated.status(), ...collector.status() }) },
    membership: raftMembership(raft, rollout),
    encryption,
    ...(backup === undefined ? {} : { backup }),
    // The clock observes a commit timestamp only once its batch is in the store.
    openReader: () => storeReader(store, Date.now, hlc.lastCommitTs),
    clock,
    onClose: async () => {
      clearInterval(watch);
      rollout.stop();
      await sweeps.close();
      clock.stepDown();
      await raft.stop();
      await collector.close();
      await store.close();
      keystore.clear();
      keys.kek?.close();
    },
  });
  sweeps.resumeRequested();
  if (config.dev) {
    try {
      await rollout.devRollout();
    } catch (err) {
      await engine.close().catch(() => undefined);
      throw err;
    }
  }
  return engine;
}

/**
 * POST /backup (src/backup): the store's read view and the sidecar are
 * taken between two applies, so that they agree; the files are written
 * after, while applies go on.
 */
function nodeBackup(config: NodeConfig, store: Store, machine: StateMachine, runtime: EncryptionRuntime, members: () => { voters: number[]; learners: number[] }): EngineBackup {
  return {
    create: async (out) =>
      createBackup(out, {
        mode: 'online',
        dataDir: config.dataDir,
        raftId: config.raftId,
        raftNodeId: raftNodeId(config.raftId),
        members: members(),
        capture: () =>
          machine.atApplyPoint((appliedIndex) =>
            capturePoint(store, {
              appliedIndex,
              ceiling: machine.clock.appliedCeiling,
              cutover: runtime.snapshotCutover(),
              sidecar: runtime.sidecar?.present === true ? runtime.sidecar.state : undefined,
            }),
          ),
      }),
  };
}

function adminOp(body: unknown): { op: EncryptionOp; params: EncryptionOpParams } {
  const { op, params } = (body ?? {}) as { op?: unknown; params?: unknown };
  if (typeof op !== 'string' || !(ENCRYPTION_OPS as readonly string[]).includes(op)) throw sealError('ErrBadRequest', `unknown encryption operation ${JSON.stringify(op)}`);
  const p = (typeof params === 'object' && params !== null ? params : {}) as Record<string, unknown>;
  return {
    op: op as EncryptionOp,
    params: {
      ...(typeof p.purpose === 'string' ? { purpose: p.purpose } : {}),
      ...(typeof p.kek_uri === 'string' ? { kek_uri: p.kek_uri } : {}),
      ...(typeof p.if_active === 'number' ? { if_active: p.if_active } : {}),
      ...(typeof p.key_id === 'number' ? { key_id: p.key_id } : {}),
    },
  };
}

/** askMembers answers keyed by member name: the answer, or `{error}`. */
function byNode(answers: readonly MemberAnswer[]): Record<string, unknown> {
  return Object.fromEntries(answers.map((a) => [a.node, 'error' in a ? { error: a.error } : a.answer]));
}

function retireParams(body: unknown): { keyId: number; purpose: Purpose } {
  const { key_id: keyId, purpose } = (body ?? {}) as { key_id?: unknown; purpose?: unknown };
  if (typeof keyId !== 'number' || !Number.isInteger(keyId) || keyId < 1 || keyId > 0xffffffff) throw sealError('ErrBadRequest', 'GetRetireFacts needs a key_id');
  if (purpose !== 'storage' && purpose !== 'raft') throw sealError('ErrBadRequest', 'GetRetireFacts needs the purpose');
  return { keyId, purpose };
}

function rewriteParams(body: unknown): { target: string; rate: number | null } {
  const { target, rate } = (body ?? {}) as { target?: unknown; rate?: unknown };
  if (typeof target !== 'string') throw sealError('ErrBadRequest', 'RewriteStart needs a target');
  if (rate !== null && typeof rate !== 'number') throw sealError('ErrBadRequest', 'RewriteStart needs a rate (MiB/s) or null');
  return { target, rate };
}

function nodeParam(body: unknown): string {
  const node = (body as { node?: unknown } | null)?.node;
  if (typeof node !== 'string' || node.length === 0) throw sealError('ErrBadRequest', 'GetSidecarState needs the node\'s --raft-id');
  return node;
}
