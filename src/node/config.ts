// Options of `sealkv start` (SPEC §12) turned into a validated node
// configuration. Defaults are those of SPEC so that scripts and docs agree:
// RESP 127.0.0.1:6380, Raft 127.0.0.1:7380, admin 127.0.0.1:8380, data in
// ./sealkv-data; `--dev` is a single node with data in ./sealkv-dev/data.

import path from 'node:path';
import { DEFAULT_GC_INTERVAL_MS, DEFAULT_GC_RETENTION_MS } from './gc.js';

export interface HostPort {
  host: string;
  port: number;
}

export interface Peer extends HostPort {
  id: string;
}

export interface NodeConfig {
  dev: boolean;
  dataDir: string;
  raftId: string;
  listen: HostPort;
  raftListen: HostPort;
  adminListen: HostPort;
  /** Every voter of the initial cluster, this node included. */
  peers: Peer[];
  join: string | undefined;
  encryptionEnabled: boolean;
  /** --encryption-rotate-on-startup: rotate each active DEK the first time this process leads (SPEC §8.5). */
  encryptionRotateOnStartup: boolean;
  kekUri: string | undefined;
  kekFile: string | undefined;
  clusterSecretFile: string | undefined;
  adminTokenFile: string | undefined;
  requirepassFile: string | undefined;
  cryptoBackend: 'aesni' | 'batch' | 'wasm' | 'auto';
  compression: 'on' | 'off';
  /** Raft takes a state-machine snapshot and compacts its log every this many applied entries. */
  snapshotEntries: number;
  /** Raft log segment size; compaction deletes whole segments (undefined: the log's default, 64 MiB). */
  raftSegmentBytes: number | undefined;
  /** Store GC runs every this many ms (src/node/gc.ts). */
  gcIntervalMs: number;
  /** Store GC keeps every version a read this many ms behind the last commit sees. */
  gcRetentionMs: number;
}

/** Raw option values as commander hands them over (all strings or booleans). */
export interface StartOptions {
  dev?: boolean;
  dataDir?: string;
  raftId?: string;
  listen?: string;
  raftListen?: string;
  adminListen?: string;
  peers?: string;
  join?: string;
  encryptionEnabled?: boolean;
  encryptionRotateOnStartup?: boolean;
  kekUri?: string;
  kekFile?: string;
  clusterSecretFile?: string;
  adminTokenFile?: string;
  requirepassFile?: string;
  cryptoBackend?: string;
  compression?: string;
  snapshotEntries?: string;
  raftSegmentBytes?: string;
  gcIntervalMs?: string;
  gcRetentionMs?: string;
}

export const DEFAULT_LISTEN = '127.0.0.1:6380';
export const DEFAULT_RAFT_LISTEN = '127.0.0.1:7380';
export const DEFAULT_ADMIN_LISTEN = '127.0.0.1:8380';
export const DEFAULT_DATA_DIR = './sealkv-data';
export const DEV_HOME = './sealkv-dev';
export const DEFAULT_SNAPSHOT_ENTRIES = 10_000;

/** Parses `host:port`, `:port` or `port` (host defaults to 127.0.0.1). */
export function parseHostPort(text: string, what: string): HostPort {
  const at = text.lastIndexOf(':');
  const host = at < 0 ? '127.0.0.1' : text.slice(0, at) || '127.0.0.1';
  const portText = at < 0 ? text : text.slice(at + 1);
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 0 || port > 65535) {
    throw new RangeError(`${what}: "${text}" is not host:port`);
  }
  return { host: host.replace(/^\[(.*)\]$/, '$1'), port };
}

/** Parses `id=host:port,...`. */
export function parsePeers(text: string): Peer[] {
  const peers = text
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part.length > 0)
    .map((part) => {
      const eq = part.indexOf('=');
      if (eq <= 0) throw new RangeError(`--peers: "${part}" is not id=host:port`);
      return { id: part.slice(0, eq), ...parseHostPort(part.slice(eq + 1), `--peers ${part.slice(0, eq)}`) };
    });
  const ids = new Set(peers.map((p) => p.id));
  if (ids.size !== peers.length) throw new RangeError('--peers: a raft id appears twice');
  return peers;
}

function positiveInt(text: string, what: string): number {
  const n = Number(text);
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(n) || n < 1) throw new RangeError(`${what}: "${text}" is not a positive integer`);
  return n;
}

function nonNegativeInt(text: string, what: string): number {
  const n = Number(text);
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(n)) throw new RangeError(`${what}: "${text}" is not a non-negative integer`);
  return n;
}

function oneOf<T extends string>(value: string, allowed: readonly T[], what: string): T {
  if (!(allowed as readonly string[]).includes(value)) throw new RangeError(`${what}: "${value}" is not one of ${allowed.join(', ')}`);
  return value as T;
}

/** Validates options and applies the defaults (`--dev` defaults where asked). */
export function resolveStartConfig(options: StartOptions, cwd = process.cwd()): NodeConfig {
  const dev = options.dev === true;
  const raftId = options.raftId ?? (dev ? 'dev' : undefined);
  if (raftId === undefined || raftId.length === 0) throw new RangeError('--raft-id is required (or use --dev)');
  const raftListen = parseHostPort(options.raftListen ?? DEFAULT_RAFT_LISTEN, '--raft-listen');
  let peers = options.peers === undefined ? [] : parsePeers(options.peers);
  if (peers.length === 0 && options.join === undefined) peers = [{ id: raftId, ...raftListen }];
  if (options.join !== undefined) {
    parseHostPort(options.join, '--join');
    // The Raft transport reaches members by id: a joining node must know theirs.
    if (peers.length === 0) throw new RangeError('--join needs --peers id=host:port,... of the current members');
  }
  if (options.join === undefined && !peers.some((p) => p.id === raftId)) {
    throw new RangeError(`--peers must include this node's --raft-id "${raftId}"`);
  }
  const dataDir = path.resolve(cwd, options.dataDir ?? (dev ? path.join(DEV_HOME, 'data') : DEFAULT_DATA_DIR));
  return {
    dev,
    dataDir,
    raftId,
    listen: parseHostPort(options.listen ?? DEFAULT_LISTEN, '--listen'),
    raftListen,
    adminListen: parseHostPort(options.adminListen ?? DEFAULT_ADMIN_LISTEN, '--admin-listen'),
    peers,
    join: options.join,
    encryptionEnabled: options.encryptionEnabled === true || dev,
    encryptionRotateOnStartup: options.encryptionRotateOnStartup === true,
    kekUri: options.kekUri,
    kekFile: options.kekFile ?? (dev && options.kekUri === undefined ? path.resolve(cwd, DEV_HOME, 'kek.bin') : undefined),
    clusterSecretFile: options.clusterSecretFile,
    adminTokenFile: options.adminTokenFile,
    requirepassFile: options.requirepassFile,
    cryptoBackend: oneOf(options.cryptoBackend ?? 'auto', ['aesni', 'batch', 'wasm', 'auto'] as const, '--crypto-backend'),
    compression: oneOf(options.compression ?? 'on', ['on', 'off'] as const, '--compression'),
    snapshotEntries: positiveInt(options.snapshotEntries ?? String(DEFAULT_SNAPSHOT_ENTRIES), '--snapshot-entries'),
    raftSegmentBytes: options.raftSegmentBytes === undefined ? undefined : positiveInt(options.raftSegmentBytes, '--raft-segment-bytes'),
    gcIntervalMs: positiveInt(options.gcIntervalMs ?? String(DEFAULT_GC_INTERVAL_MS), '--gc-interval-ms'),
    gcRetentionMs: nonNegativeInt(options.gcRetentionMs ?? String(DEFAULT_GC_RETENTION_MS), '--gc-retention-ms'),
  };
}
